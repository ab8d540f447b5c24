import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicIdPartition;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.config.ConfigResource;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * KIP-932 share groups with the Java client 4.1.1 (KafkaShareConsumer), in one JVM:
 *   1. three share consumers of one group on a one-partition topic, explicit acknowledgement:
 *      every record is delivered and accepted exactly once (delivery count 1), while a producer
 *      keeps writing; Admin describeShareGroups (ShareGroupDescribe) shows the three members,
 *      each assigned partition 0, and listGroups shows the group with type SHARE;
 *   2. a consumer acquires records and is abandoned without acknowledging or closing (its
 *      client still heartbeats, as a hung process would): once the acquisition lock (the
 *      group's share.record.lock.duration.ms, 2 s; the broker's is 30 s) runs out, another member of the
 *      group gets those records again with delivery count 2, and accepts them; nothing is
 *      delivered twice after it;
 *   3. transactions (a transactional producer commits, aborts, commits): a group with
 *      share.isolation.level=read_committed gets the committed records only, a group with the
 *      default read_uncommitted the aborted ones too; neither is handed a transaction marker,
 *      and once every record is accepted both groups' share-partition start offsets are the
 *      log's end (the markers, archived by the broker, hold nothing back).
 * Usage: ShareGroupSuite BOOTSTRAP. Exit 0 only when every check passed.
 */
public class ShareGroupSuite {
    static String bootstrap;
    static int failures = 0;

    static void check(boolean ok, String what) {
        System.out.println((ok ? "ok: " : "FAIL: ") + what);
        if (!ok) failures++;
    }

    static Properties consumerProps(String group, String clientId) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("client.id", clientId);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("share.acknowledgement.mode", "explicit");
        p.put("max.poll.records", "20");
        return p;
    }

    static KafkaProducer<String, String> producer() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("key.serializer", StringSerializer.class.getName());
        p.put("value.serializer", StringSerializer.class.getName());
        p.put("linger.ms", "0");
        return new KafkaProducer<>(p);
    }

    static void setup(Admin admin, String topic, String group, String lockMs) throws Exception {
        admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
        // share.auto.offset.reset=earliest: records written before a member's first fetch count
        ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, group);
        List<AlterConfigOp> ops = new ArrayList<>(List.of(new AlterConfigOp(
            new ConfigEntry("share.auto.offset.reset", "earliest"), AlterConfigOp.OpType.SET)));
        if (lockMs != null) // the group's own acquisition lock duration
            ops.add(new AlterConfigOp(new ConfigEntry("share.record.lock.duration.ms", lockMs),
                                      AlterConfigOp.OpType.SET));
        admin.incrementalAlterConfigs(Map.of(g, ops)).all().get();
    }

    /** Scenario 1: three members, one partition, every record accepted exactly once. */
    static void happyPath(Admin admin) throws Exception {
        final String topic = "share-happy", group = "share-g1";
        final int total = 600;
        setup(admin, topic, group, null);
        Map<String, AtomicInteger> seen = new ConcurrentHashMap<>();
        Map<String, AtomicInteger> perMember = new ConcurrentHashMap<>();
        AtomicInteger redelivered = new AtomicInteger();
        AtomicInteger ackErrors = new AtomicInteger();
        AtomicBoolean stop = new AtomicBoolean();
        List<Thread> threads = new ArrayList<>();
        for (int c = 0; c < 3; c++) {
            final String cid = "share-happy-" + c;
            perMember.put(cid, new AtomicInteger());
            Thread t = new Thread(() -> {
                try (KafkaShareConsumer<String, String> sc =
                         new KafkaShareConsumer<>(consumerProps(group, cid))) {
                    sc.subscribe(List.of(topic));
                    while (!stop.get()) {
                        ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                        for (ConsumerRecord<String, String> r : recs) {
                            seen.computeIfAbsent(r.value(), k -> new AtomicInteger()).incrementAndGet();
                            perMember.get(cid).incrementAndGet();
                            if (r.deliveryCount().orElse((short) 0) != 1)
                                redelivered.incrementAndGet();
                            sc.acknowledge(r, AcknowledgeType.ACCEPT);
                        }
                        if (!recs.isEmpty()) {
                            for (Optional<KafkaException> e : sc.commitSync().values())
                                if (e.isPresent()) {
                                    System.out.println("ack error: " + e.get());
                                    ackErrors.incrementAndGet();
                                }
                        }
                    }
                } catch (Exception e) {
                    System.out.println("FAIL: consumer " + cid + ": " + e);
                    ackErrors.incrementAndGet();
                }
            });
            t.setDaemon(true);
            t.start();
            threads.add(t);
        }
        // the three members join before the records arrive
        long deadline = System.currentTimeMillis() + 30000;
        int members = 0;
        while (System.currentTimeMillis() < deadline) {
            ShareGroupDescription d;
            try {
                d = admin.describeShareGroups(List.of(group)).all().get().get(group);
            } catch (Exception e) { // GROUP_ID_NOT_FOUND until the first member joined
                Thread.sleep(100);
                continue;
            }
            members = d.members().size();
            boolean assigned = members == 3;
            for (ShareMemberDescription m : d.members())
                assigned &= m.assignment().topicPartitions().size() == 1;
            if (assigned)
                break;
            Thread.sleep(100);
        }
        check(members == 3, "describeShareGroups shows 3 members (" + members + ")");
        // kafka-share-groups (ShareGroupCommand) on the live group
        ToolResult tr = ToolRunner.run("kafka-share-groups ",
            org.apache.kafka.tools.consumer.group.ShareGroupCommand::main, "--bootstrap-server",
            bootstrap, "--describe", "--group", group, "--state");
        check(tr.status == 0 && tr.out.contains("Stable") && tr.out.matches("(?s).*Stable\\s+3\\s.*"),
              "kafka-share-groups --describe --state: Stable, 3 members");
        tr = ToolRunner.run("kafka-share-groups ",
            org.apache.kafka.tools.consumer.group.ShareGroupCommand::main, "--bootstrap-server",
            bootstrap, "--describe", "--group", group, "--members");
        check(tr.status == 0 && tr.out.split(topic + ":0", -1).length == 4,
              "kafka-share-groups --describe --members: 3 members on " + topic + ":0");
        try (KafkaProducer<String, String> prod = producer()) {
            for (int i = 0; i < total; i++) {
                prod.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
                if (i % 50 == 49) {
                    prod.flush();
                    Thread.sleep(20);
                }
            }
            prod.flush();
        }
        deadline = System.currentTimeMillis() + 30000;
        while (seen.size() < total && System.currentTimeMillis() < deadline)
            Thread.sleep(50);
        Thread.sleep(500); // anything delivered twice would show up now
        ShareGroupDescription d = admin.describeShareGroups(List.of(group)).all().get().get(group);
        check(d.members().size() == 3,
              "share group described: state " + d.groupState() + ", " + d.members().size()
                  + " members, each on " + topic + "-0");
        boolean allP0 = true;
        for (ShareMemberDescription m : d.members())
            allP0 &= m.assignment().topicPartitions().stream().allMatch(tp -> tp.partition() == 0);
        check(allP0 && d.members().size() == 3, "every member is assigned the one partition");
        boolean listed = false;
        for (GroupListing l : admin.listGroups().all().get())
            if (l.groupId().equals(group))
                listed = l.type().orElse(null) == GroupType.SHARE;
        check(listed, "listGroups shows the group with type SHARE");
        stop.set(true);
        for (Thread t : threads)
            t.join(20000);
        int dup = 0;
        for (AtomicInteger n : seen.values())
            if (n.get() != 1)
                dup++;
        check(seen.size() == total, "every record delivered (" + seen.size() + "/" + total + ")");
        check(dup == 0, "no record delivered twice (" + dup + ")");
        check(redelivered.get() == 0, "every delivery count is 1 (" + redelivered.get() + " not)");
        check(ackErrors.get() == 0, "no acknowledgement error (" + ackErrors.get() + ")");
        System.out.println("per member: " + perMember);
        // DescribeShareGroupOffsets: the share-partition start offset is past every record
        Map<TopicPartition, OffsetAndMetadata> offs = admin.listShareGroupOffsets(
            Map.of(group, new ListShareGroupOffsetsSpec())).partitionsToOffsetAndMetadata(group).get();
        OffsetAndMetadata om = offs.get(new TopicPartition(topic, 0));
        check(offs.size() == 1 && om != null && om.offset() == total,
              "listShareGroupOffsets (all topics): " + topic + "-0 starts at " + total + " " + offs);
        ToolResult tr2 = ToolRunner.run("kafka-share-groups ",
            org.apache.kafka.tools.consumer.group.ShareGroupCommand::main, "--bootstrap-server",
            bootstrap, "--describe", "--group", group);
        check(tr2.status == 0 && tr2.out.matches("(?s).*" + group + "\\s+" + topic + "\\s+0\\s+" + total + ".*"),
              "kafka-share-groups --describe: " + topic + " 0 starts at " + total);
        tr2 = ToolRunner.run("kafka-share-groups ",
            org.apache.kafka.tools.consumer.group.ShareGroupCommand::main, "--bootstrap-server",
            bootstrap, "--list");
        check(tr2.status == 0 && tr2.out.contains(group), "kafka-share-groups --list shows " + group);
    }

    /** Scenario 2: an abandoned member's records come back after the lock timeout. */
    static void lockTimeout(Admin admin) throws Exception {
        final String topic = "share-lock", group = "share-g2";
        final int total = 30;
        setup(admin, topic, group, "2000");
        try (KafkaProducer<String, String> prod = producer()) {
            for (int i = 0; i < total; i++)
                prod.send(new ProducerRecord<>(topic, "k" + i, "w" + i));
            prod.flush();
        }
        // the victim acquires records and then never polls, acknowledges or closes again
        Properties vp = consumerProps(group, "share-victim");
        vp.put("max.poll.records", "10");
        KafkaShareConsumer<String, String> victim = new KafkaShareConsumer<>(vp);
        victim.subscribe(List.of(topic));
        List<String> held = new ArrayList<>();
        long deadline = System.currentTimeMillis() + 20000;
        while (held.isEmpty() && System.currentTimeMillis() < deadline)
            for (ConsumerRecord<String, String> r : victim.poll(Duration.ofMillis(200)))
                held.add(r.value());
        check(!held.isEmpty(), "the victim acquired records (" + held.size() + ")");
        long acquiredAt = System.currentTimeMillis();
        Map<String, Short> got = new ConcurrentHashMap<>();
        int dup = 0;
        try (KafkaShareConsumer<String, String> sc =
                 new KafkaShareConsumer<>(consumerProps(group, "share-rescuer"))) {
            sc.subscribe(List.of(topic));
            deadline = System.currentTimeMillis() + 30000;
            long firstHeldAt = 0;
            while (got.size() < total && System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    if (got.put(r.value(), r.deliveryCount().orElse((short) 0)) != null)
                        dup++;
                    if (held.contains(r.value()) && firstHeldAt == 0)
                        firstHeldAt = System.currentTimeMillis();
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                }
                if (!recs.isEmpty())
                    sc.commitSync();
            }
            // nothing comes again once everything is accepted
            for (int i = 0; i < 5; i++)
                for (ConsumerRecord<String, String> r : sc.poll(Duration.ofMillis(200))) {
                    dup++;
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                }
            check(got.size() == total, "the other member got every record (" + got.size() + "/"
                                           + total + ")");
            boolean counts = true;
            for (Map.Entry<String, Short> e : got.entrySet())
                counts &= e.getValue() == (held.contains(e.getKey()) ? 2 : 1);
            check(counts, "the abandoned records came back with delivery count 2, the others 1"
                              + (counts ? "" : " (held " + held + ", got " + got + ")"));
            check(firstHeldAt == 0 || firstHeldAt - acquiredAt >= 1500,
                  "the abandoned records came back only after the lock timeout ("
                      + (firstHeldAt - acquiredAt) + " ms)");
            check(dup == 0, "no record delivered twice to the rescuer (" + dup + ")");
        }
        TopicPartition tp = new TopicPartition(topic, 0);
        Map<TopicPartition, OffsetAndMetadata> offs = admin.listShareGroupOffsets(
            Map.of(group, new ListShareGroupOffsetsSpec().topicPartitions(List.of(tp))))
            .partitionsToOffsetAndMetadata(group).get();
        check(offs.get(tp) != null && offs.get(tp).offset() == total,
              "listShareGroupOffsets (one partition): " + tp + " starts at " + total + " " + offs);
        victim.close(Duration.ofSeconds(5));
    }

    static void setGroupConfig(Admin admin, String group, String name, String value)
        throws Exception {
        ConfigResource g = new ConfigResource(ConfigResource.Type.GROUP, group);
        admin.incrementalAlterConfigs(Map.of(g, List.of(new AlterConfigOp(
            new ConfigEntry(name, value), AlterConfigOp.OpType.SET)))).all().get();
    }

    /** A member of group accepts what comes for up to 20 s (until want records, then 1 s
     *  more): the values it got, in order; a value delivered twice, or with a delivery count
     *  other than 1, is reported as a failure. */
    static List<String> acceptAll(String topic, String group, int want) throws Exception {
        List<String> got = new ArrayList<>();
        int bad = 0;
        try (KafkaShareConsumer<String, String> sc =
                 new KafkaShareConsumer<>(consumerProps(group, group + "-m"))) {
            sc.subscribe(List.of(topic));
            long deadline = System.currentTimeMillis() + 20000;
            while (System.currentTimeMillis() < deadline) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    if (got.contains(r.value()) || r.deliveryCount().orElse((short) 0) != 1)
                        bad++;
                    got.add(r.value());
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                }
                if (!recs.isEmpty())
                    sc.commitSync();
                if (got.size() >= want && deadline > System.currentTimeMillis() + 1000)
                    deadline = System.currentTimeMillis() + 1000;
            }
        }
        check(bad == 0, group + ": no record delivered twice or with a delivery count above 1");
        return got;
    }

    /** Scenario 3: transactions and share.isolation.level. */
    static void transactions(Admin admin) throws Exception {
        final String topic = "share-txn";
        setup(admin, topic, "share-g3", null);
        setGroupConfig(admin, "share-g3", "share.isolation.level", "read_committed");
        setGroupConfig(admin, "share-g4", "share.auto.offset.reset", "earliest");
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        pp.put("transactional.id", "share-txn-p");
        List<String> committed = new ArrayList<>(), all = new ArrayList<>();
        try (KafkaProducer<String, String> tp = new KafkaProducer<>(pp)) {
            tp.initTransactions();
            for (int t = 0; t < 3; t++) { // committed c0-c4, aborted a0-a4, committed c5-c9
                tp.beginTransaction();
                for (int i = 0; i < 5; i++) {
                    String v = t == 1 ? "a" + i : "c" + (t == 2 ? i + 5 : i);
                    tp.send(new ProducerRecord<>(topic, "k", v));
                    all.add(v);
                    if (t != 1)
                        committed.add(v);
                }
                tp.flush();
                if (t == 1)
                    tp.abortTransaction();
                else
                    tp.commitTransaction();
            }
        }
        List<String> rc = acceptAll(topic, "share-g3", committed.size());
        check(rc.size() == committed.size() && rc.containsAll(committed),
              "read_committed: exactly the committed records " + rc);
        List<String> ru = acceptAll(topic, "share-g4", all.size());
        check(ru.size() == all.size() && ru.containsAll(all),
              "read_uncommitted: every record, the aborted ones too " + ru);
        TopicPartition tp = new TopicPartition(topic, 0);
        for (String group : List.of("share-g3", "share-g4")) {
            Map<TopicPartition, OffsetAndMetadata> offs = admin.listShareGroupOffsets(
                Map.of(group, new ListShareGroupOffsetsSpec().topicPartitions(List.of(tp))))
                .partitionsToOffsetAndMetadata(group).get();
            check(offs.get(tp) != null && offs.get(tp).offset() == all.size() + 3,
                  group + ": the start offset is the log's end, " + (all.size() + 3)
                      + " (15 records, 3 markers): " + offs);
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        ToolRunner.trapExit(false); // the tools call Exit.exit
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            happyPath(admin);
            lockTimeout(admin);
            transactions(admin);
        } catch (Exception e) {
            e.printStackTrace(System.out);
            check(false, "exception: " + e);
        }
        System.out.println(failures == 0 ? "ALL PASSED" : failures + " FAILED");
        System.exit(failures == 0 ? 0 : 1);
    }
}
