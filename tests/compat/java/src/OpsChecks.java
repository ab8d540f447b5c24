import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.File;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.stream.Collectors;
import java.util.function.Consumer;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * Kafka's operability tools against laminar (called by ToolsSuite): LogDirsCommand
 * (kafka-log-dirs --describe), ConfigCommand on brokers and broker-loggers, FeatureCommand
 * (kafka-features describe / upgrade), TopicCommand --describe paged by
 * DescribeTopicPartitions, ConfigCommand on client-metrics (ListConfigResources), and the Admin
 * calls under them (describeLogDirs, describeFeatures, describeConfigs of the broker,
 * listConfigResources). Each check compares what the tool prints with what laminar
 * holds: partition sizes with the segment files in the log dir, logger levels with what was
 * set. test_java.py checks in the broker's log that the level set through broker-loggers took
 * effect (DEBUG lines between the two markers printed here).
 */
final class OpsChecks {
    private OpsChecks() {}

    static final int RECORDS = 200;
    static final int VALUE_BYTES = 1000;

    static ToolResult tool(Consumer<String[]> main, String... args) {
        return ToolRunner.run("", main, args);
    }

    static ToolResult configs(String bootstrap, String... args) {
        List<String> a = new ArrayList<>(List.of("--bootstrap-server", bootstrap));
        a.addAll(List.of(args));
        return tool(kafka.admin.ConfigCommand::main, a.toArray(new String[0]));
    }

    /* A partition's size as Kafka's UnifiedLog.size counts it: the bytes of its segments'
     * batches (each a 12-byte header of base offset and length, then length bytes); a walk
     * stops at zeros, the space laminar preallocates ahead of the log's end. */
    static long segmentBytes(File dir) throws java.io.IOException {
        long total = 0;
        File[] files = dir.listFiles();
        if (files == null) return -1;
        for (File f : files) {
            if (!f.getName().matches("[0-9]+\\.log")) continue;
            java.nio.ByteBuffer b = java.nio.ByteBuffer.wrap(java.nio.file.Files.readAllBytes(
                    f.toPath()));
            int pos = 0;
            while (pos + 12 <= b.limit()) {
                int length = b.getInt(pos + 8);
                if (length <= 0 || (long) pos + 12 + length > b.limit()) break;
                pos += 12 + length;
            }
            total += pos;
        }
        return total;
    }

    static void logDirs(String bootstrap, int nodeId, Admin admin) throws Exception {
        String topic = "ops-logdirs";
        admin.createTopics(List.of(new NewTopic(topic, 2, (short) 1))).all().get();
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, "none");
        try (KafkaProducer<byte[], byte[]> pr = new KafkaProducer<>(p, new ByteArraySerializer(),
                new ByteArraySerializer())) {
            byte[] v = new byte[VALUE_BYTES];
            for (int i = 0; i < RECORDS; i++) {
                v[0] = (byte) i;
                pr.send(new ProducerRecord<>(topic, 0, null, v)).get();
            }
        }
        ToolResult r = tool(org.apache.kafka.tools.LogDirsCommand::main, "--bootstrap-server",
                bootstrap, "--describe", "--topic-list", topic);
        String json = r.out.lines().filter(l -> l.startsWith("{")).findFirst().orElse("{}");
        JsonNode root = new ObjectMapper().readTree(json);
        JsonNode broker = root.path("brokers").path(0);
        JsonNode dir = broker.path("logDirs").path(0);
        long size0 = -1, size1 = -1;
        boolean lagFuture = true;
        for (JsonNode part : dir.path("partitions")) {
            lagFuture &= part.path("offsetLag").asLong(-1) == 0
                    && !part.path("isFuture").asBoolean(true);
            String name = part.path("partition").asText();
            if (name.equals(topic + "-0")) size0 = part.path("size").asLong();
            if (name.equals(topic + "-1")) size1 = part.path("size").asLong();
        }
        String logDir = dir.path("logDir").asText("");
        long onDisk = segmentBytes(new File(logDir, topic + "-0"));
        // Each record costs its value plus a few varint bytes; each batch a 61-byte header.
        long payload = (long) RECORDS * VALUE_BYTES;
        long bound = payload + (long) RECORDS * (20 + 61);
        ToolsSuite.check(r.status == 0 && broker.path("broker").asInt() == nodeId
                && dir.path("error").isNull() && lagFuture && size0 == onDisk
                && size0 >= payload && size0 <= bound && size1 == 0,
                "log-dirs --describe: " + topic + "-0 is " + size0 + " bytes (batches in the segment files "
                        + onDisk + ", produced " + payload + "), -1 is " + size1);

        Map<Integer, Map<String, LogDirDescription>> d =
                admin.describeLogDirs(List.of(nodeId)).allDescriptions().get();
        LogDirDescription desc = d.get(nodeId) == null ? null : d.get(nodeId).get(logDir);
        ToolsSuite.check(desc != null && desc.error() == null
                && desc.totalBytes().isPresent() && desc.usableBytes().isPresent()
                && desc.usableBytes().getAsLong() <= desc.totalBytes().getAsLong()
                && desc.replicaInfos().get(new org.apache.kafka.common.TopicPartition(topic, 0))
                        .size() == size0,
                "Admin describeLogDirs: total/usable bytes and the partition size");
    }

    static void brokerConfigs(String bootstrap, String node, Admin admin) throws Exception {
        ToolResult r = configs(bootstrap, "--entity-type", "brokers", "--entity-name", node,
                "--describe");
        ToolsSuite.check(r.status == 0 && r.out.contains("Dynamic configs for broker " + node)
                && !r.out.contains("STATIC_BROKER_CONFIG"),
                "configs --describe on the broker (dynamic only: none)");
        r = configs(bootstrap, "--entity-type", "brokers", "--entity-name", node, "--describe",
                "--all");
        ToolsSuite.check(r.status == 0
                && r.out.contains("node.id=" + node + " sensitive=false synonyms={"
                        + "STATIC_BROKER_CONFIG:node.id=" + node)
                && r.out.contains("num.partitions=1 sensitive=false "
                        + "synonyms={DEFAULT_CONFIG:num.partitions=1}"),
                "configs --describe --all on the broker: sources and synonyms");
        r = configs(bootstrap, "--entity-type", "brokers", "--entity-default", "--describe");
        ToolsSuite.check(r.status == 0, "configs --describe --entity-default on brokers");

        ConfigResource res = new ConfigResource(ConfigResource.Type.BROKER, node);
        Config c = admin.describeConfigs(List.of(res)).all().get().get(res);
        ConfigEntry id = c.get("node.id"), np = c.get("num.partitions");
        ToolsSuite.check(id != null && node.equals(id.value())
                && id.source() == ConfigEntry.ConfigSource.STATIC_BROKER_CONFIG && id.isReadOnly()
                && np != null && np.source() == ConfigEntry.ConfigSource.DEFAULT_CONFIG,
                "Admin describeConfigs(BROKER): node.id static, num.partitions default");
    }

    static void brokerLoggers(String bootstrap, String node, Admin admin) throws Exception {
        ToolResult r = configs(bootstrap, "--entity-type", "broker-loggers", "--entity-name",
                node, "--describe");
        ToolsSuite.check(r.status == 0 && r.out.contains("root=INFO"),
                "configs --describe on broker-loggers: root=INFO");
        r = configs(bootstrap, "--entity-type", "broker-loggers", "--entity-name", node,
                "--alter", "--add-config", "root=DEBUG");
        ToolsSuite.check(r.status == 0
                && r.out.contains("Completed updating config for broker-logger " + node),
                "configs --alter broker-loggers root=DEBUG");
        r = configs(bootstrap, "--entity-type", "broker-loggers", "--entity-name", node,
                "--describe");
        ToolsSuite.check(r.status == 0 && r.out.contains("root=DEBUG"),
                "configs --describe on broker-loggers after the change: root=DEBUG");
        // More connections while DEBUG is on: the broker logs each (test_java.py checks).
        admin.describeCluster().nodes().get();
        r = configs(bootstrap, "--entity-type", "broker-loggers", "--entity-name", node,
                "--alter", "--add-config", "root=INFO");
        ToolsSuite.check(r.status == 0, "configs --alter broker-loggers root=INFO");
        r = configs(bootstrap, "--entity-type", "broker-loggers", "--entity-name", node,
                "--alter", "--add-config", "root=LOUD");
        ToolsSuite.check(r.status != 0 && r.out.contains("InvalidConfigurationException")
                && r.out.contains("not a supported log level"),
                "configs --alter broker-loggers with a bad level fails");
        r = configs(bootstrap, "--entity-type", "broker-loggers", "--entity-name", node,
                "--alter", "--delete-config", "root");
        ToolsSuite.check(r.status != 0 && r.out.contains("Removing the log level of the root"),
                "configs --alter --delete-config root on broker-loggers fails");
        ConfigResource res = new ConfigResource(ConfigResource.Type.BROKER_LOGGER, node);
        ConfigEntry e = admin.describeConfigs(List.of(res)).all().get().get(res).get("root");
        ToolsSuite.check(e != null && "INFO".equals(e.value())
                && e.source() == ConfigEntry.ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG,
                "Admin describeConfigs(BROKER_LOGGER): root=INFO again");
    }

    static void features(String bootstrap, Admin admin) throws Exception {
        ToolResult r = tool(org.apache.kafka.tools.FeatureCommand::main, "--bootstrap-server",
                bootstrap, "describe");
        ToolsSuite.check(r.status == 0 && r.out.contains("Feature: metadata.version\t"
                + "SupportedMinVersion: 3.3-IV3\tSupportedMaxVersion: 4.1-IV1\t"
                + "FinalizedVersionLevel: 4.1-IV1"),
                "features describe: metadata.version 3.3-IV3..4.1-IV1, finalized 4.1-IV1");
        // transaction.version: 2 on a new cluster; downgrade to 1 and upgrade back (KIP-890)
        r = tool(org.apache.kafka.tools.FeatureCommand::main, "--bootstrap-server", bootstrap,
                "upgrade", "--feature", "transaction.version=3");
        ToolsSuite.check(r.status != 0 && r.out.contains("Invalid update version"),
                "features upgrade transaction.version=3 is refused");
        r = tool(org.apache.kafka.tools.FeatureCommand::main, "--bootstrap-server", bootstrap,
                "downgrade", "--feature", "transaction.version=1");
        ToolsSuite.check(r.status == 0, "features downgrade transaction.version=1");
        FinalizedVersionRange tv = admin.describeFeatures().featureMetadata().get()
                .finalizedFeatures().get("transaction.version");
        ToolsSuite.check(tv != null && tv.maxVersionLevel() == 1,
                "after the downgrade transaction.version is " + tv);
        r = tool(org.apache.kafka.tools.FeatureCommand::main, "--bootstrap-server", bootstrap,
                "upgrade", "--feature", "transaction.version=2");
        ToolsSuite.check(r.status == 0, "features upgrade transaction.version=2");
        FeatureMetadata fm = admin.describeFeatures().featureMetadata().get();
        FinalizedVersionRange mv = fm.finalizedFeatures().get("metadata.version");
        SupportedVersionRange smv = fm.supportedFeatures().get("metadata.version");
        FinalizedVersionRange tv2 = fm.finalizedFeatures().get("transaction.version");
        SupportedVersionRange stv = fm.supportedFeatures().get("transaction.version");
        ToolsSuite.check(mv != null && mv.maxVersionLevel() == 27 && smv != null
                && smv.minVersion() == 7 && smv.maxVersion() == 27
                && fm.finalizedFeaturesEpoch().isPresent()
                && tv2 != null && tv2.maxVersionLevel() == 2 && stv != null
                && stv.minVersion() == 0 && stv.maxVersion() == 2,
                "Admin describeFeatures: metadata.version 27, transaction.version 2 finalized, "
                + fm);
    }

    static Set<String> names(Collection<ConfigResource> rs, ConfigResource.Type type) {
        return rs.stream().filter(r -> r.type() == type).map(ConfigResource::name)
                .collect(Collectors.toSet());
    }

    /**
     * ListConfigResources (KIP-1142): every topic (internal ones too) as listTopics shows them,
     * this node as broker and broker logger, no groups (laminar keeps no group configs) and no
     * client metrics; a filter keeps only its types. ConfigCommand lists client-metrics through
     * it and says a named one does not exist.
     */
    @SuppressWarnings("deprecation")
    static void configResources(String bootstrap, String node, Admin admin) throws Exception {
        Set<String> topics = admin.listTopics(new ListTopicsOptions().listInternal(true)).names()
                .get();
        Collection<ConfigResource> all = admin.listConfigResources().all().get();
        ToolsSuite.check(names(all, ConfigResource.Type.TOPIC).equals(topics)
                && names(all, ConfigResource.Type.BROKER).equals(Set.of(node))
                && names(all, ConfigResource.Type.BROKER_LOGGER).equals(Set.of(node))
                && all.size() == topics.size() + 2 && topics.contains("__consumer_offsets"),
                "Admin listConfigResources(): " + topics.size() + " topics, broker and broker "
                        + "logger " + node + ", nothing else: " + all);
        Collection<ConfigResource> some = admin.listConfigResources(
                Set.of(ConfigResource.Type.BROKER_LOGGER, ConfigResource.Type.TOPIC),
                new ListConfigResourcesOptions()).all().get();
        ToolsSuite.check(some.size() == topics.size() + 1
                && names(some, ConfigResource.Type.TOPIC).equals(topics)
                && names(some, ConfigResource.Type.BROKER_LOGGER).equals(Set.of(node)),
                "Admin listConfigResources(BROKER_LOGGER, TOPIC)");
        Collection<ConfigResource> none = admin.listConfigResources(
                Set.of(ConfigResource.Type.GROUP, ConfigResource.Type.CLIENT_METRICS),
                new ListConfigResourcesOptions()).all().get();
        ToolsSuite.check(none.isEmpty(), "Admin listConfigResources(GROUP, CLIENT_METRICS): none");
        Collection<ClientMetricsResourceListing> cm =
                admin.listClientMetricsResources().all().get();
        ToolsSuite.check(cm.isEmpty(), "Admin listClientMetricsResources: none");

        ToolResult r = configs(bootstrap, "--entity-type", "client-metrics", "--describe");
        ToolsSuite.check(r.status == 0 && !r.out.contains("Exception")
                && !r.out.contains("Dynamic configs for client-metric"),
                "configs --describe --entity-type client-metrics: none listed");
        r = configs(bootstrap, "--entity-type", "client-metrics", "--entity-name", "no-such-sub",
                "--describe");
        ToolsSuite.check(r.status == 0
                && r.out.contains("The client-metric 'no-such-sub' doesn't exist"),
                "configs --describe of a missing client-metrics subscription says so");
        // A group that neither exists nor has configs (listGroups and
        // listConfigResources(GROUP) both without it): said so, nothing described.
        r = configs(bootstrap, "--entity-type", "groups", "--entity-name", "no-such-group",
                "--describe");
        ToolsSuite.check(r.status == 0
                && r.out.contains("The group 'no-such-group' doesn't exist"),
                "configs --describe of a missing group says so");
    }

    /** TopicCommand.main() catches everything execute() throws; call execute() (ToolsSuite). */
    static void topicsPaged(String bootstrap, String topic, int partitions) throws Exception {
        ToolResult r = ToolsSuite.topics("--describe", "--topic", topic,
                "--partition-size-limit-per-response", "2");
        ToolsSuite.check(r.status == 0 && r.out.contains("PartitionCount: " + partitions)
                && ToolsSuite.countLines(r.out, "Topic: " + topic + "\tPartition:") == partitions,
                "topics --describe paged by 2 partitions: " + partitions + " partitions");
        r = ToolsSuite.topics("--describe", "--partition-size-limit-per-response", "1");
        ToolsSuite.check(r.status == 0
                && ToolsSuite.countLines(r.out, "Topic: " + topic + "\tPartition:") == partitions
                && ToolsSuite.countLines(r.out, "Topic: ops-logdirs\tPartition:") == 2,
                "topics --describe of every topic, one partition per response");
        r = ToolsSuite.topics("--describe", "--topic", "no-such-topic");
        ToolsSuite.check(r.status != 0 && r.out.contains("no-such-topic"),
                "topics --describe of a missing topic fails");
    }

    static void run(String bootstrap, int nodeId, String topic, int partitions) {
        String node = Integer.toString(nodeId);
        Properties p = new Properties();
        p.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(p)) {
            logDirs(bootstrap, nodeId, admin);
            brokerConfigs(bootstrap, node, admin);
            brokerLoggers(bootstrap, node, admin);
            features(bootstrap, admin);
            configResources(bootstrap, node, admin);
            topicsPaged(bootstrap, topic, partitions);
        } catch (Exception e) {
            e.printStackTrace(System.out);
            ToolsSuite.check(false, "operability checks: " + e);
        }
    }
}
