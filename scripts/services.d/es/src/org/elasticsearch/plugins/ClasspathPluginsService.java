package org.elasticsearch.plugins;

import org.elasticsearch.Version;
import org.elasticsearch.common.settings.Settings;

import java.util.ArrayList;
import java.util.List;

/**
 * A {@link PluginsService} whose plugins are plain classes already on the JVM classpath.
 *
 * <p>A real Elasticsearch install loads each module from its own directory into a
 * separate module layer. We only have jars from Maven Central on one flat classpath,
 * so instead we instantiate the plugin classes directly and give them a synthetic
 * descriptor. It lives in this package because {@code loadPlugin},
 * {@code loadExtensions} and {@code LoadedPlugin} are package-private.
 */
public final class ClasspathPluginsService extends PluginsService {
    private final List<LoadedPlugin> loaded;

    public ClasspathPluginsService(Settings settings, PluginsLoader emptyLoader, List<Class<? extends Plugin>> pluginClasses) {
        // The loader has no bundles, so the super constructor discovers nothing on disk.
        super(settings, null, emptyLoader);
        List<LoadedPlugin> plugins = new ArrayList<>();
        for (Class<? extends Plugin> pluginClass : pluginClasses) {
            Plugin instance = loadPlugin(pluginClass, settings, null);
            PluginDescriptor descriptor = new PluginDescriptor(
                pluginClass.getSimpleName(),            // name
                "loaded from the classpath by confusion-stream scripts/services",
                "NA",                                   // plugin version
                Version.CURRENT.toString(),             // elasticsearch version
                Runtime.version().feature() + "",      // java version
                pluginClass.getName(),                  // classname
                null,                                   // module name: not modular here
                List.of(),                              // extended plugins
                false,                                  // has native controller
                false,                                  // licensed
                false,                                  // modular
                false,                                  // is stable
                PluginDescriptor.DeploymentTarget.ALL);
            plugins.add(new LoadedPlugin(descriptor, instance, pluginClass.getClassLoader()));
        }
        loadExtensions(plugins);
        this.loaded = List.copyOf(plugins);
    }

    @Override
    protected List<LoadedPlugin> plugins() {
        return loaded;
    }
}
