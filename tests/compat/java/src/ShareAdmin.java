import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.GroupIdNotFoundException;
import org.apache.kafka.common.errors.GroupNotEmptyException;
import org.apache.kafka.common.errors.UnknownTopicOrPartitionException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Share group offsets administration with the 4.1.1 Java Admin and kafka-share-groups
 * (tests/compat/share/test_share_admin.py):
 *   suite BOOTSTRAP: Admin alterShareGroupOffsets (AlterShareGroupOffsets) refused while the
 *     group has a member (NON_EMPTY_GROUP), for an unknown group (GROUP_ID_NOT_FOUND) and an
 *     unknown partition; on the empty group it moves the start offset back (every record is
 *     delivered again, delivery count 1) and forward (only the records from it on);
 *     listShareGroupOffsets and kafka-share-groups --describe show each start offset;
 *     kafka-share-groups --delete-offsets (DeleteShareGroupOffsets) drops the group's state on
 *     the topic, a second time answers that there is none; a start offset of -1 drops the
 *     state; the id of a classic group is GROUP_ID_NOT_FOUND ("is not a share group") for both
 *     APIs; kafka-share-groups --delete
 *     (DeleteGroups) of the empty group drops its share state too.
 *   produce BOOTSTRAP TOPIC N: creates TOPIC (1 partition) and writes v0..v(N-1);
 *   join BOOTSTRAP TOPIC GROUP: a member joins and fetches for 3 s (share partition at the log
 *     end: share.auto.offset.reset latest), then closes (leaves);
 *   reset BOOTSTRAP TOPIC GROUP OFFSET: alterShareGroupOffsets of partition 0;
 *   describe BOOTSTRAP TOPIC GROUP: prints "START s" (listShareGroupOffsets, -1: none);
 *   consume BOOTSTRAP TOPIC GROUP WANT: accepts what comes for up to 20 s (until WANT records),
 *     prints "GOT v..." and "DUP n" (records seen twice), then closes.
 * Exit 0 only when every check passed.
 */
public class ShareAdmin {
    static String bootstrap;
    static int failures = 0;

    static void check(boolean ok, String what) {
        System.out.println((ok ? "ok: " : "FAIL: ") + what);
        if (!ok) failures++;
    }

    static Admin admin() {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        return Admin.create(p);
    }

    static KafkaShareConsumer<String, String> consumer(String group) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("share.acknowledgement.mode", "explicit");
        p.put("max.poll.records", "50");
        return new KafkaShareConsumer<>(p);
    }

    static void produce(String topic, int n) throws Exception {
        try (Admin admin = admin()) {
            admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
        }
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
            for (int i = 0; i < n; i++)
                prod.send(new ProducerRecord<>(topic, "k" + i, "v" + i));
            prod.flush();
        }
    }

    /** A member that joins, fetches for ms and stays (the caller closes it). */
    static KafkaShareConsumer<String, String> member(String topic, String group, long ms) {
        KafkaShareConsumer<String, String> sc = consumer(group);
        sc.subscribe(List.of(topic));
        long until = System.currentTimeMillis() + ms;
        while (System.currentTimeMillis() < until)
            for (ConsumerRecord<String, String> r : sc.poll(Duration.ofMillis(200)))
                sc.acknowledge(r, AcknowledgeType.RELEASE);
        return sc;
    }

    /** Accepts what comes for up to 20 s (until want records); the values, in order. */
    static List<String> consume(String topic, String group, int want, int[] dupOut, int[] countOut) {
        List<String> got = new ArrayList<>();
        Set<String> seen = new java.util.HashSet<>();
        int dup = 0, notFirst = 0;
        try (KafkaShareConsumer<String, String> sc = consumer(group)) {
            sc.subscribe(List.of(topic));
            long until = System.currentTimeMillis() + 20000;
            while (got.size() < want && System.currentTimeMillis() < until) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                    if (!seen.add(r.value()))
                        dup++;
                    if (r.deliveryCount().orElse((short) 1) != 1)
                        notFirst++;
                    got.add(r.value());
                }
                if (!recs.isEmpty())
                    sc.commitSync();
            }
            // anything more would show up now
            long more = System.currentTimeMillis() + 1000;
            while (System.currentTimeMillis() < more) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                    if (!seen.add(r.value()))
                        dup++;
                    got.add(r.value());
                }
                if (!recs.isEmpty())
                    sc.commitSync();
            }
        }
        if (dupOut != null) dupOut[0] = dup;
        if (countOut != null) countOut[0] = notFirst;
        return got;
    }

    static long start(Admin admin, String topic, String group) throws Exception {
        Map<TopicPartition, OffsetAndMetadata> offs = admin.listShareGroupOffsets(
            Map.of(group, new ListShareGroupOffsetsSpec())).partitionsToOffsetAndMetadata(group).get();
        OffsetAndMetadata om = offs.get(new TopicPartition(topic, 0));
        return om == null ? -1 : om.offset();
    }

    static Throwable alter(Admin admin, String group, Map<TopicPartition, Long> offsets) {
        try {
            admin.alterShareGroupOffsets(group, offsets).all().get();
            return null;
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (Exception e) {
            return e;
        }
    }

    static List<String> range(int from, int to) {
        List<String> l = new ArrayList<>();
        for (int i = from; i < to; i++)
            l.add("v" + i);
        return l;
    }

    static ToolResult tool(String... args) {
        String[] all = new String[args.length + 2];
        all[0] = "--bootstrap-server";
        all[1] = bootstrap;
        System.arraycopy(args, 0, all, 2, args.length);
        return ToolRunner.run("kafka-share-groups ",
            org.apache.kafka.tools.consumer.group.ShareGroupCommand::main, all);
    }

    static void suite() throws Exception {
        final String topic = "share-adm", group = "share-ga";
        final int n = 30;
        final TopicPartition tp = new TopicPartition(topic, 0);
        produce(topic, n);
        ToolRunner.trapExit(false);
        try (Admin admin = admin()) {
            // a member: the share partition starts at the log end (latest); refused meanwhile
            KafkaShareConsumer<String, String> sc = member(topic, group, 3000);
            Throwable t = alter(admin, group, Map.of(tp, 0L));
            check(t instanceof GroupNotEmptyException,
                  "alterShareGroupOffsets with a member: NON_EMPTY_GROUP (" + t + ")");
            ToolResult tr = tool("--delete-offsets", "--group", group, "--topic", topic);
            check(tr.out.contains("not empty") || tr.out.contains("NonEmpty") || tr.status != 0
                      || tr.out.contains("GroupNotEmpty"),
                  "kafka-share-groups --delete-offsets with a member is refused");
            check(start(admin, topic, group) == n, "start offset at the log end: " + n);
            sc.close();
            t = alter(admin, "share-nope", Map.of(tp, 0L));
            check(t instanceof GroupIdNotFoundException,
                  "alterShareGroupOffsets of an unknown group: GROUP_ID_NOT_FOUND (" + t + ")");
            t = alter(admin, group, Map.of(new TopicPartition(topic, 5), 0L));
            check(t instanceof UnknownTopicOrPartitionException,
                  "alterShareGroupOffsets of an unknown partition: UNKNOWN_TOPIC_OR_PARTITION (" + t + ")");
            // back to 0: every record again, each with delivery count 1
            t = alter(admin, group, Map.of(tp, 0L));
            check(t == null, "alterShareGroupOffsets to 0 on the empty group (" + t + ")");
            check(start(admin, topic, group) == 0, "listShareGroupOffsets: start offset 0");
            tr = tool("--describe", "--group", group);
            check(tr.status == 0 && tr.out.matches("(?s).*" + group + "\\s+" + topic + "\\s+0\\s+0\\b.*"),
                  "kafka-share-groups --describe: " + topic + " 0 starts at 0");
            int[] dup = {0}, again = {0};
            List<String> got = consume(topic, group, n, dup, again);
            check(got.equals(range(0, n)) && dup[0] == 0 && again[0] == 0,
                  "after the reset to 0 a consumer gets v0..v29 once, delivery count 1 (" + got.size() + ", dup "
                      + dup[0] + ", count>1 " + again[0] + ")");
            check(start(admin, topic, group) == n, "start offset back at " + n);
            // forward to 25: only v25..v29
            t = alter(admin, group, Map.of(tp, 25L));
            check(t == null && start(admin, topic, group) == 25, "alterShareGroupOffsets to 25 (" + t + ")");
            got = consume(topic, group, 5, dup, again);
            check(got.equals(range(25, n)) && dup[0] == 0, "after the reset to 25: v25..v29 " + got);
            // DeleteShareGroupOffsets through the tool, twice
            tr = tool("--delete-offsets", "--group", group, "--topic", topic);
            check(tr.status == 0 && tr.out.contains("Successful"),
                  "kafka-share-groups --delete-offsets: Successful");
            check(start(admin, topic, group) == -1, "listShareGroupOffsets: no start offset after it");
            tr = tool("--delete-offsets", "--group", group, "--topic", topic);
            check(tr.out.contains("no offset information"),
                  "kafka-share-groups --delete-offsets again: no offset information to delete");
            // a start offset of -1 (Kafka's uninitialized) drops the state
            t = alter(admin, group, Map.of(tp, 12L));
            check(t == null && start(admin, topic, group) == 12, "alterShareGroupOffsets to 12 (" + t + ")");
            t = alter(admin, group, Map.of(tp, -1L));
            check(t == null && start(admin, topic, group) == -1,
                  "alterShareGroupOffsets to -1 drops the start offset (" + t + ")");
            // the id of a classic group (offsets committed, no member) is not a share group
            admin.alterConsumerGroupOffsets("share-classic", Map.of(tp, new OffsetAndMetadata(3))).all().get();
            t = alter(admin, "share-classic", Map.of(tp, 0L));
            check(t instanceof GroupIdNotFoundException,
                  "alterShareGroupOffsets of a classic group: GROUP_ID_NOT_FOUND (" + t + ")");
            try {
                admin.deleteShareGroupOffsets("share-classic", Set.of(topic)).all().get();
                t = null;
            } catch (ExecutionException e) {
                t = e.getCause();
            }
            check(t instanceof GroupIdNotFoundException && t.getMessage().contains("is not a share group"),
                  "deleteShareGroupOffsets of a classic group: GROUP_ID_NOT_FOUND, not a share group (" + t + ")");
            // state again, then DeleteGroups of the empty group takes it along
            t = alter(admin, group, Map.of(tp, 10L));
            check(t == null && start(admin, topic, group) == 10, "alterShareGroupOffsets to 10 (" + t + ")");
            tr = tool("--delete", "--group", group);
            check(tr.status == 0 && tr.out.contains("Deletion of requested share groups ('" + group + "') was successful"),
                  "kafka-share-groups --delete of the empty group");
            check(start(admin, topic, group) == -1, "listShareGroupOffsets: no start offset after DeleteGroups");
            t = alter(admin, group, Map.of(tp, 0L));
            check(t instanceof GroupIdNotFoundException,
                  "alterShareGroupOffsets of the deleted group: GROUP_ID_NOT_FOUND (" + t + ")");
        }
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0];
        bootstrap = args[1];
        switch (mode) {
            case "suite":
                suite();
                break;
            case "produce":
                produce(args[2], Integer.parseInt(args[3]));
                break;
            case "join":
                member(args[2], args[3], 3000).close();
                break;
            case "reset": {
                try (Admin admin = admin()) {
                    Throwable t = alter(admin, args[3],
                                        Map.of(new TopicPartition(args[2], 0), Long.parseLong(args[4])));
                    check(t == null, "alterShareGroupOffsets " + args[3] + " " + args[2] + "-0 to " + args[4]
                              + " (" + t + ")");
                }
                break;
            }
            case "describe":
                try (Admin admin = admin()) {
                    System.out.println("START " + start(admin, args[2], args[3]));
                }
                break;
            case "consume": {
                int[] dup = {0};
                List<String> got = consume(args[2], args[3], Integer.parseInt(args[4]), dup, null);
                System.out.println("GOT " + String.join(",", got));
                System.out.println("DUP " + dup[0]);
                break;
            }
            default:
                throw new IllegalArgumentException(mode);
        }
        System.out.println(failures == 0 ? "PASS" : "FAILURES " + failures);
        System.exit(failures == 0 ? 0 : 1);
    }
}
