import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AlterConfigOp;
import org.apache.kafka.clients.admin.ConfigEntry;
import org.apache.kafka.clients.admin.NewPartitions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.RecordsToDelete;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

/**
 * The Java client's requests for fuzzwire's capture (capture.py runs it against the recording
 * proxy): the Admin calls the Python clients lack (DescribeCluster, DescribeProducers,
 * partition reassignments, client quotas,
 * DeleteRecords, OffsetDelete, IncrementalAlterConfigs, ListOffsets), an idempotent producer per
 * codec and a group consumer that seeks with a leader epoch (OffsetForLeaderEpoch, KIP-320).
 * Each step that fails is reported and the next one runs: the capture checks API coverage.
 */
public final class CaptureJava {
    private CaptureJava() {}

    interface Step {
        void run() throws Exception;
    }

    static int failures = 0;

    static void step(String what, Step s) {
        try {
            s.run();
            System.out.println("ok   " + what);
        } catch (Exception e) {
            failures++;
            System.out.println("FAIL " + what + ": " + e);
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        String topic = "fw-java";
        TopicPartition tp = new TopicPartition(topic, 0);
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            step("createTopics", () -> admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1),
                    new NewTopic("fw-java-doomed", 1, (short) 1))).all().get());
            step("describeCluster", () -> admin.describeCluster().nodes().get());
            step("createPartitions", () -> admin.createPartitions(
                    Map.of("fw-java-doomed", NewPartitions.increaseTo(2))).all().get());
            for (String codec : new String[] {"none", "gzip", "snappy", "lz4", "zstd"}) {
                step("produce " + codec, () -> produce(bootstrap, topic, codec));
            }
            step("consume group", () -> consume(bootstrap, topic, tp));
            step("describeProducers", () -> admin.describeProducers(List.of(tp)).all().get());
            step("listOffsets", () -> admin.listOffsets(Map.of(tp, OffsetSpec.earliest())).all()
                    .get());
            step("listOffsets latest", () -> admin.listOffsets(Map.of(tp, OffsetSpec.latest()))
                    .all().get());
            step("listOffsets maxTimestamp", () -> admin.listOffsets(
                    Map.of(tp, OffsetSpec.maxTimestamp())).all().get());
            step("describeConfigs", () -> admin.describeConfigs(List.of(
                    new ConfigResource(ConfigResource.Type.TOPIC, topic),
                    new ConfigResource(ConfigResource.Type.BROKER, ""))).all().get());
            Map<ConfigResource, Collection<AlterConfigOp>> ops = Map.of(
                    new ConfigResource(ConfigResource.Type.TOPIC, topic),
                    List.of(new AlterConfigOp(new ConfigEntry("retention.ms", "86400000"),
                            AlterConfigOp.OpType.SET),
                            new AlterConfigOp(new ConfigEntry("cleanup.policy", "compact"),
                                    AlterConfigOp.OpType.APPEND),
                            new AlterConfigOp(new ConfigEntry("segment.ms", ""),
                                    AlterConfigOp.OpType.DELETE)));
            step("incrementalAlterConfigs", () -> admin.incrementalAlterConfigs(ops).all().get());
            step("listGroups", () -> admin.listConsumerGroups().all().get());
            step("describeGroups", () -> admin.describeConsumerGroups(List.of("fw-java-group"))
                    .all().get());
            step("listConsumerGroupOffsets", () -> admin.listConsumerGroupOffsets("fw-java-group")
                    .all().get());
            step("deleteConsumerGroupOffsets", () -> admin.deleteConsumerGroupOffsets(
                    "fw-java-group", Set.of(tp)).all().get());
            step("deleteConsumerGroups", () -> admin.deleteConsumerGroups(List.of("fw-java-group"))
                    .all().get());
            step("deleteRecords", () -> admin.deleteRecords(
                    Map.of(tp, RecordsToDelete.beforeOffset(2))).all().get());
            step("alterUserScramCredentials", () -> admin.alterUserScramCredentials(List.of(
                    new org.apache.kafka.clients.admin.UserScramCredentialUpsertion("fw-user",
                            new org.apache.kafka.clients.admin.ScramCredentialInfo(
                                    org.apache.kafka.clients.admin.ScramMechanism.SCRAM_SHA_256,
                                    4096),
                            "fw-password"))).all().get());
            step("describeUserScramCredentials", () -> admin.describeUserScramCredentials()
                    .all().get());
            // A single node: ELECTION_NOT_NEEDED; the frame is what the corpus needs.
            try {
                admin.electLeaders(org.apache.kafka.common.ElectionType.PREFERRED, Set.of(tp))
                        .all().get();
                System.out.println("ok   electLeaders");
            } catch (Exception e) {
                System.out.println("ok   electLeaders (refused: " + e.getCause() + ")");
            }
            step("deleteTopics", () -> admin.deleteTopics(List.of("fw-java-doomed")).all().get());
            step("describeLogDirs", () -> {
                int node = admin.describeCluster().nodes().get().iterator().next().id();
                admin.describeLogDirs(List.of(node)).allDescriptions().get();
            });
            step("describeFeatures", () -> admin.describeFeatures().featureMetadata().get());
            // Refused (a level the node does not have): the frame is what the corpus needs.
            try {
                admin.updateFeatures(Map.of("group.version",
                        new org.apache.kafka.clients.admin.FeatureUpdate((short) 1,
                                org.apache.kafka.clients.admin.FeatureUpdate.UpgradeType.UPGRADE)),
                        new org.apache.kafka.clients.admin.UpdateFeaturesOptions()).all().get();
            } catch (Exception e) {
                System.out.println("ok   updateFeatures refused: " + e.getCause());
            }
            step("describeTopics (DescribeTopicPartitions)", () -> admin.describeTopics(
                    List.of(topic), new org.apache.kafka.clients.admin.DescribeTopicsOptions()
                            .partitionSizeLimitPerResponse(1)).allTopicNames().get());
            step("listPartitionReassignments",
                    () -> admin.listPartitionReassignments().reassignments().get());
            // A single node answers the move with an error: the frame is what the corpus needs.
            try {
                int node = admin.describeCluster().nodes().get().iterator().next().id();
                admin.alterPartitionReassignments(Map.of(tp, java.util.Optional.of(
                        new org.apache.kafka.clients.admin.NewPartitionReassignment(
                                List.of(node))))).all().get();
                System.out.println("ok   alterPartitionReassignments");
            } catch (Exception e) {
                System.out.println("ok   alterPartitionReassignments refused: " + e.getCause());
            }
            org.apache.kafka.common.quota.ClientQuotaEntity qe =
                    new org.apache.kafka.common.quota.ClientQuotaEntity(
                            Map.of(org.apache.kafka.common.quota.ClientQuotaEntity.CLIENT_ID,
                                    "fw-client"));
            step("alterClientQuotas", () -> admin.alterClientQuotas(List.of(
                    new org.apache.kafka.common.quota.ClientQuotaAlteration(qe, List.of(
                            new org.apache.kafka.common.quota.ClientQuotaAlteration.Op(
                                    "producer_byte_rate", 1048576.0))))).all().get());
            step("describeClientQuotas", () -> admin.describeClientQuotas(
                    org.apache.kafka.common.quota.ClientQuotaFilter.all()).entities().get());
            step("share group", () -> share(bootstrap, admin, topic, tp));
        }
        System.out.println("java capture: " + failures + " failed steps");
        System.exit(0);
    }

    static void produce(String bootstrap, String topic, String codec) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("compression.type", codec);
        p.put("linger.ms", "5");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p)) {
            for (int i = 0; i < 6; i++) {
                prod.send(new ProducerRecord<>(topic, 0, ("k" + i).getBytes(),
                        ("java-" + codec + "-value-" + i + "-repeated-repeated").getBytes()));
            }
            prod.flush();
        }
    }

    /* A KafkaShareConsumer (ShareGroupHeartbeat, ShareFetch with acknowledgements, and
     * ShareAcknowledge on commitSync), then the share-group admin calls: ShareGroupDescribe,
     * DescribeShareGroupOffsets, and with the group empty AlterShareGroupOffsets and
     * DeleteShareGroupOffsets. */
    static void share(String bootstrap, Admin admin, String topic, TopicPartition tp)
            throws Exception {
        String group = "fw-java-share";
        // records written before the member's first fetch are delivered (earliest)
        admin.incrementalAlterConfigs(Map.of(
                new ConfigResource(ConfigResource.Type.GROUP, group),
                List.of(new AlterConfigOp(new ConfigEntry("share.auto.offset.reset", "earliest"),
                        AlterConfigOp.OpType.SET)))).all().get();
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("share.acknowledgement.mode", "explicit");
        p.put("key.deserializer", ByteArrayDeserializer.class.getName());
        p.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (org.apache.kafka.clients.consumer.KafkaShareConsumer<byte[], byte[]> sc =
                new org.apache.kafka.clients.consumer.KafkaShareConsumer<>(p)) {
            sc.subscribe(List.of(topic));
            int got = 0;
            long deadline = System.currentTimeMillis() + 20000;
            while (got < 4 && System.currentTimeMillis() < deadline) {
                for (org.apache.kafka.clients.consumer.ConsumerRecord<byte[], byte[]> r :
                        sc.poll(Duration.ofMillis(200))) {
                    sc.acknowledge(r, got++ % 2 == 0
                            ? org.apache.kafka.clients.consumer.AcknowledgeType.ACCEPT
                            : org.apache.kafka.clients.consumer.AcknowledgeType.RELEASE);
                }
                sc.commitSync();
            }
            if (got == 0) {
                throw new IllegalStateException("no records delivered to the share group");
            }
            admin.describeShareGroups(List.of(group)).all().get();
        }
        admin.listShareGroupOffsets(Map.of(group,
                new org.apache.kafka.clients.admin.ListShareGroupOffsetsSpec()))
                .partitionsToOffsetAndMetadata(group).get();
        admin.alterShareGroupOffsets(group, Map.of(tp, 0L)).all().get();
        admin.deleteShareGroupOffsets(group, Set.of(topic)).all().get();
    }

    static void consume(String bootstrap, String topic, TopicPartition tp) throws Exception {
        Properties c = new Properties();
        c.put("bootstrap.servers", bootstrap);
        c.put("group.id", "fw-java-group");
        c.put("auto.offset.reset", "earliest");
        c.put("enable.auto.commit", "false");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> cons = new KafkaConsumer<>(c)) {
            cons.subscribe(List.of(topic));
            int got = 0;
            long deadline = System.currentTimeMillis() + 20000;
            while (got < 10 && System.currentTimeMillis() < deadline) {
                ConsumerRecords<byte[], byte[]> recs = cons.poll(Duration.ofMillis(200));
                got += recs.count();
            }
            if (got == 0) {
                throw new IllegalStateException("no records consumed");
            }
            cons.commitSync();
            cons.committed(Set.of(tp));
            // A position carrying a leader epoch is validated with OffsetForLeaderEpoch (KIP-320).
            cons.seek(tp, new OffsetAndMetadata(1, Optional.of(0), ""));
            List<Integer> sizes = new ArrayList<>();
            for (int i = 0; i < 5; i++) {
                sizes.add(cons.poll(Duration.ofMillis(200)).count());
            }
            cons.commitSync();
        }
    }
}
