import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.RebalanceInProgressException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Mixed groups (Kafka 4: classic members in a consumer group, online upgrade) with the Java
 * client 4.1, in one JVM:
 *   1. a consumer-protocol consumer and a classic consumer (group.protocol=classic) share one
 *      group: they split the topic's partitions (none held by both), every record is read,
 *      Admin describeConsumerGroups shows a consumer group whose classic member is not
 *      "upgraded" and whose other member is; when the consumer-protocol member leaves, the
 *      group is a classic group again (downgrade) and the classic member reads on;
 *   2. an online upgrade: a classic group of two consumers reads and commits, then each is
 *      restarted with group.protocol=consumer, one after the other; the group becomes a
 *      consumer group, the restarted consumers go on from the committed offsets
 *      (auto.offset.reset=none: a lost offset fails them) and every record is read.
 * Usage: MixedGroupSuite BOOTSTRAP. Exit 0 only when every check passed.
 */
public class MixedGroupSuite {
    static final int PARTS = 4;
    static String bootstrap;
    static int failures = 0;

    static void check(boolean ok, String what) {
        System.out.println((ok ? "ok: " : "FAIL: ") + what);
        if (!ok) failures++;
    }

    static void waitFor(BooleanSupplier cond, long timeoutMs, String what) throws Exception {
        long deadline = System.currentTimeMillis() + timeoutMs;
        while (!cond.getAsBoolean()) {
            if (System.currentTimeMillis() > deadline) {
                check(false, "timed out waiting for " + what);
                throw new IllegalStateException("timeout: " + what);
            }
            Thread.sleep(50);
        }
    }

    static Properties consumerProps(String group, String protocol, String reset) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, reset);
        p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "100");
        if (protocol.equals("classic")) {
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "300");
            p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "10000");
        }
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return p;
    }

    /** One consumer on its own thread, committing what it read after each poll. */
    static final class Member implements Runnable {
        final String name;
        final String topic;
        final KafkaConsumer<String, String> c;
        final Map<String, Integer> seen;
        final Set<Integer> owned = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        final Thread t;
        volatile Throwable error;

        Member(String name, String topic, Properties p, Map<String, Integer> seen) {
            this.name = name;
            this.topic = topic;
            c = new KafkaConsumer<>(p);
            this.seen = seen;
            t = new Thread(this);
            t.start();
        }

        void commit() {
            try {
                c.commitSync();
            } catch (RebalanceInProgressException | CommitFailedException e) {
                /* a rebalance took the partitions: their next owner reads from the last
                 * commit (duplicates, never a loss) */
            }
        }

        public void run() {
            try {
                c.subscribe(List.of(topic), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                        commit();
                        for (TopicPartition tp : ps) owned.remove(tp.partition());
                    }

                    public void onPartitionsLost(Collection<TopicPartition> ps) {
                        for (TopicPartition tp : ps) owned.remove(tp.partition());
                    }

                    public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                        for (TopicPartition tp : ps) owned.add(tp.partition());
                    }
                });
                while (!stop.get()) {
                    ConsumerRecords<String, String> rs = c.poll(Duration.ofMillis(100));
                    for (ConsumerRecord<String, String> r : rs) seen.merge(r.value(), 1, Integer::sum);
                    if (!rs.isEmpty()) commit();
                }
                commit();
            } catch (Throwable e) {
                error = e;
                e.printStackTrace();
            } finally {
                c.close();
            }
        }

        void close() throws InterruptedException {
            stop.set(true);
            t.join();
            check(error == null, name + " ran without error" + (error != null ? ": " + error : ""));
        }
    }

    static void produce(String topic, int from, int n) throws Exception {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        try (KafkaProducer<String, String> pr = new KafkaProducer<>(p)) {
            for (int i = from; i < from + n; i++)
                pr.send(new ProducerRecord<>(topic, i % PARTS, "k" + i, "v" + i));
            pr.flush();
        }
    }

    static boolean allSeen(Map<String, Integer> seen, int n) {
        for (int i = 0; i < n; i++)
            if (!seen.containsKey("v" + i)) return false;
        return true;
    }

    static boolean split(Member a, Member b) {
        Set<Integer> all = new HashSet<>(a.owned);
        all.addAll(b.owned);
        Set<Integer> both = new HashSet<>(a.owned);
        both.retainAll(b.owned);
        return !a.owned.isEmpty() && !b.owned.isEmpty() && both.isEmpty() && all.size() == PARTS;
    }

    static ConsumerGroupDescription describe(Admin admin, String group) throws Exception {
        return admin.describeConsumerGroups(List.of(group)).describedGroups().get(group).get();
    }

    /** 1. a classic and a consumer-protocol consumer in one consumer group */
    static void mixed(Admin admin) throws Exception {
        String topic = "mixed", group = "mixed-g";
        admin.createTopics(List.of(new NewTopic(topic, PARTS, (short) 1))).all().get();
        produce(topic, 0, 400);
        Map<String, Integer> seen = new ConcurrentHashMap<>();
        Member modern = new Member("modern", topic, consumerProps(group, "consumer", "earliest"), seen);
        waitFor(() -> modern.owned.size() == PARTS, 20000, "the consumer-protocol member holds all");
        Member classic = new Member("classic", topic, consumerProps(group, "classic", "earliest"), seen);
        waitFor(() -> split(modern, classic), 30000, "the two members split the partitions");
        check(true, "split: modern " + modern.owned + ", classic " + classic.owned);
        produce(topic, 400, 400);
        waitFor(() -> allSeen(seen, 800), 30000, "every record read by the mixed group");
        check(split(modern, classic), "still split after reading everything");
        ConsumerGroupDescription d = describe(admin, group);
        check(d.type() == GroupType.CONSUMER, "the mixed group is a consumer group: " + d.type());
        check(d.members().size() == 2, "two members: " + d.members());
        int classicMembers = 0, modernMembers = 0;
        for (MemberDescription m : d.members()) {
            if (m.upgraded().equals(java.util.Optional.of(false))) classicMembers++;
            if (m.upgraded().equals(java.util.Optional.of(true))) modernMembers++;
        }
        check(classicMembers == 1 && modernMembers == 1,
                "one classic member and one consumer-protocol member (MemberType)");
        /* the consumer-protocol member leaves: a classic group again (downgrade) */
        modern.close();
        waitFor(() -> classic.owned.size() == PARTS, 30000, "the classic member holds all");
        ConsumerGroupDescription c = describe(admin, group);
        check(c.type() == GroupType.CLASSIC && c.members().size() == 1,
                "downgraded to a classic group of one: " + c);
        produce(topic, 800, 100);
        waitFor(() -> allSeen(seen, 900), 30000, "every record read after the downgrade");
        classic.close();
    }

    /** 2. online upgrade: classic members restarted one by one with group.protocol=consumer */
    static void upgrade(Admin admin) throws Exception {
        String topic = "upgrade", group = "upgrade-g";
        admin.createTopics(List.of(new NewTopic(topic, PARTS, (short) 1))).all().get();
        produce(topic, 0, 400);
        Map<String, Integer> seen = new ConcurrentHashMap<>();
        Member a = new Member("classic-a", topic, consumerProps(group, "classic", "earliest"), seen);
        Member b = new Member("classic-b", topic, consumerProps(group, "classic", "earliest"), seen);
        waitFor(() -> allSeen(seen, 400) && split(a, b), 30000, "the classic group read everything");
        check(describe(admin, group).type() == GroupType.CLASSIC, "a classic group first");
        a.close();
        Member a2 = new Member("consumer-a", topic, consumerProps(group, "consumer", "none"), seen);
        waitFor(() -> !a2.owned.isEmpty() && !b.owned.isEmpty(), 30000,
                "the restarted consumer-protocol member and the classic one hold partitions");
        ConsumerGroupDescription up = describe(admin, group);
        int kept = 0;
        for (MemberDescription m : up.members())
            kept += m.upgraded().equals(java.util.Optional.of(false)) ? 1 : 0;
        check(up.type() == GroupType.CONSUMER && up.members().size() == 2 && kept == 1,
                "the group became a consumer group keeping its classic member: " + up);
        produce(topic, 400, 200);
        b.close();
        Member b2 = new Member("consumer-b", topic, consumerProps(group, "consumer", "none"), seen);
        waitFor(() -> split(a2, b2), 30000, "the two consumer-protocol members split the partitions");
        produce(topic, 600, 200);
        waitFor(() -> allSeen(seen, 800), 30000, "every record read across the upgrade");
        int again = 0;
        for (int v : seen.values()) again += v > 1 ? 1 : 0;
        check(again < 400, "committed offsets kept: " + again + " records read more than once");
        ConsumerGroupDescription d = describe(admin, group);
        check(d.type() == GroupType.CONSUMER && d.members().size() == 2,
                "an upgraded consumer group of two: " + d);
        for (MemberDescription m : d.members())
            check(m.upgraded().equals(java.util.Optional.of(true)), "member upgraded: " + m);
        a2.close();
        b2.close();
        Map<TopicPartition, OffsetAndMetadata> offs =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        long sum = 0;
        for (OffsetAndMetadata o : offs.values()) sum += o.offset();
        check(sum == 800, "committed offsets at the log end: " + offs);
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            mixed(admin);
            upgrade(admin);
        } catch (Exception e) {
            e.printStackTrace();
            failures++;
        }
        System.out.println(failures == 0 ? "PASS" : "FAILURES: " + failures);
        System.exit(failures == 0 ? 0 : 1);
    }
}
