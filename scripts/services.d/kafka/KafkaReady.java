import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TopicDescription;

import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.UUID;
import java.util.concurrent.TimeUnit;

/**
 * Readiness probe for the local Kafka broker, run by {@code scripts/services}.
 *
 * <p>Usage: {@code KafkaReady <bootstrap> <timeout seconds> [--metadata-only]}. Exit 0 once
 * the broker answers metadata requests and (unless {@code --metadata-only}) a scratch topic
 * can be created, gets a leader, and is deleted again. An open port or a metadata answer
 * alone is not enough: right after startup the controller may not yet accept topic
 * creation, and that is the first thing tests do. Exit 1 with the last error on timeout.
 *
 * <p>Written in Java (run with the broker's own jars) so the script does not depend on the
 * project's Python environment.
 */
public final class KafkaReady {
    private KafkaReady() {
    }

    public static void main(String[] args) throws InterruptedException {
        if (args.length < 2) {
            System.err.println("usage: KafkaReady <bootstrap> <timeout seconds> [--metadata-only]");
            System.exit(2);
        }
        String bootstrap = args[0];
        long deadline = System.nanoTime() + TimeUnit.SECONDS.toNanos(Long.parseLong(args[1]));
        boolean metadataOnly = args.length > 2 && args[2].equals("--metadata-only");

        Properties props = new Properties();
        props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        props.put(AdminClientConfig.CLIENT_ID_CONFIG, "confusion-services-probe");
        props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, 3000);
        props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, 5000);
        props.put(AdminClientConfig.RECONNECT_BACKOFF_MAX_MS_CONFIG, 500);

        Exception last = null;
        try (Admin admin = Admin.create(props)) {
            while (System.nanoTime() < deadline) {
                try {
                    probe(admin, metadataOnly);
                    return;
                } catch (Exception e) {
                    last = e;
                    Thread.sleep(300);
                }
            }
        }
        System.err.println("kafka not ready at " + bootstrap + ": " + (last == null ? "timeout" : last));
        System.exit(1);
    }

    private static void probe(Admin admin, boolean metadataOnly) throws Exception {
        int brokers = admin.describeCluster().nodes().get(5, TimeUnit.SECONDS).size();
        if (brokers == 0) {
            throw new IllegalStateException("no brokers in cluster metadata");
        }
        if (metadataOnly) {
            return;
        }
        String topic = "__confusion_ready_" + UUID.randomUUID();
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get(10, TimeUnit.SECONDS);
        try {
            Map<String, TopicDescription> described =
                admin.describeTopics(Set.of(topic)).allTopicNames().get(5, TimeUnit.SECONDS);
            if (described.get(topic).partitions().get(0).leader() == null) {
                throw new IllegalStateException("scratch topic has no leader yet");
            }
        } finally {
            admin.deleteTopics(Set.of(topic)).all().get(10, TimeUnit.SECONDS);
        }
    }
}
