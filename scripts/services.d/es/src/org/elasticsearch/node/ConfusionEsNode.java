package org.elasticsearch.node;

import confusionstream.es.LocalDevPlugin;
import org.elasticsearch.common.logging.LogConfigurator;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.env.Environment;
import org.elasticsearch.http.HttpServerTransport;
import org.elasticsearch.plugins.ClasspathPluginsService;
import org.elasticsearch.plugins.Plugin;
import org.elasticsearch.plugins.PluginsLoader;
import org.elasticsearch.plugins.PluginsService;
import org.elasticsearch.transport.netty4.Netty4Plugin;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;

/**
 * Minimal launcher for a single embedded Elasticsearch node, used by
 * {@code scripts/services} because no Elasticsearch distribution can be downloaded here,
 * only the server jars from Maven Central.
 *
 * <p>Usage: {@code java -cp <es jars>:<this> org.elasticsearch.node.ConfusionEsNode <config dir>}.
 * Settings are read from {@code <config dir>/elasticsearch.yml}, which the script writes.
 *
 * <p>It has to live in {@code org.elasticsearch.node}: {@link NodeConstruction} and
 * {@link NodeServiceProvider} are package-private, and overriding
 * {@code NodeServiceProvider#newPluginService} is the only way to hand the node plugins
 * that are not laid out on disk the way the real distribution does it.
 */
public final class ConfusionEsNode extends Node {
    /**
     * Netty4 is the HTTP/transport layer; LocalDevPlugin supplies {@code GET /} and the
     * zero-replica default. Deliberately no painless, reindex, ingest, data streams or
     * x-pack: the project does not use them.
     */
    private static final List<Class<? extends Plugin>> PLUGINS = List.of(Netty4Plugin.class, LocalDevPlugin.class);

    private ConfusionEsNode(Environment environment, PluginsLoader emptyLoader) {
        super(NodeConstruction.prepareConstruction(environment, emptyLoader, new NodeServiceProvider() {
            @Override
            PluginsService newPluginService(Environment env, PluginsLoader loader) {
                return new ClasspathPluginsService(env.settings(), loader, PLUGINS);
            }
        }, true));
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length != 1) {
            System.err.println("usage: ConfusionEsNode <config dir containing elasticsearch.yml>");
            System.exit(2);
        }
        // The node's own threads are not enough to keep the JVM alive, so main() blocks on
        // this latch; SIGTERM runs the shutdown hook, which closes the node cleanly
        // (flushes shards, releases the data dir lock) before releasing the latch.
        CountDownLatch stopped = new CountDownLatch(1);
        try {
            ConfusionEsNode node = create(Path.of(args[0]).toAbsolutePath());
            Runtime.getRuntime().addShutdownHook(new Thread(() -> {
                try {
                    node.close();
                    node.awaitClose(20, TimeUnit.SECONDS);
                } catch (Exception e) {
                    e.printStackTrace();
                } finally {
                    stopped.countDown();
                }
            }, "confusion-es-shutdown"));
            node.start();
            var http = node.injector().getInstance(HttpServerTransport.class).boundAddress().publishAddress();
            System.out.println("confusion-es: node started, http on " + http);
        } catch (Throwable t) {
            // E.g. a bad setting or a port already taken. Exit rather than linger
            // half-started: non-daemon threads would keep this JVM alive until the
            // script's readiness timeout.
            t.printStackTrace();
            System.exit(1);
        }
        stopped.await();
    }

    private static ConfusionEsNode create(Path configDir) throws IOException {
        Settings settings = Settings.builder().loadFromPath(configDir.resolve("elasticsearch.yml")).build();
        // Route org.elasticsearch.logging through log4j; the log4j2 configuration itself
        // comes from -Dlog4j2.configurationFile set by the script.
        LogConfigurator.configureESLogging();
        LogConfigurator.setNodeName(Node.NODE_NAME_SETTING.get(settings));
        PluginsLoader emptyLoader = PluginsLoader.createPluginsLoader(Set.of(), Set.of(), Map.of(), false);
        return new ConfusionEsNode(new Environment(settings, configDir), emptyLoader);
    }
}
