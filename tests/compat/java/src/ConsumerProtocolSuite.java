import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.BooleanSupplier;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.GroupType;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * KIP-848 consumer groups (group.protocol=consumer) with the Java client, in one JVM:
 *   1. a group scales 1 -> 3 -> 1 over a 6-partition topic while an idempotent producer
 *      writes: every record consumed, each partition owned by one member at a time (checked
 *      in the rebalance listeners), the three members hold 2/2/2, committed offsets end at the
 *      log end;
 *   2. Admin describeConsumerGroups (ConsumerGroupDescribe) shows the members, their
 *      assignments and the group's type; listGroups shows the type; kafka-consumer-groups
 *      --list / --describe (--members, --state) work on it;
 *   3. a classic-protocol consumer and a consumer-protocol consumer (server assignor "range")
 *      in two groups on the same broker both read every record;
 *   4. a static member (group.instance.id) leaves and comes back under a new member id: same
 *      partitions, same group epoch; a broker-side regex subscription (SubscriptionPattern)
 *      picks up a topic created later.
 * Usage: ConsumerProtocolSuite BOOTSTRAP. Exit 0 only when every check passed.
 */
public class ConsumerProtocolSuite {
    static final String TOPIC = "k848";
    static final int PARTS = 6;
    static String bootstrap;
    static int failures = 0;
    /** partition -> member holding it now, per the listeners of the scaling group */
    static final Map<Integer, String> holder = new ConcurrentHashMap<>();
    static final AtomicInteger doubleOwned = new AtomicInteger();

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

    static Properties consumerProps(String group, String protocol, String assignor) {
        Properties p = new Properties();
        p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, protocol);
        p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "200");
        if (assignor != null) p.put(ConsumerConfig.GROUP_REMOTE_ASSIGNOR_CONFIG, assignor);
        if (protocol.equals("classic")) p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
        p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
        return p;
    }

    /** One consumer on its own thread; its assignment and the values it saw are shared. */
    static final class Member implements Runnable {
        final String name;
        final KafkaConsumer<String, String> c;
        final Set<String> seen;
        final Set<Integer> owned = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        final boolean track;
        final Thread t;
        volatile Throwable error;

        Member(String name, Properties p, Set<String> seen, boolean track) {
            this.name = name;
            c = new KafkaConsumer<>(p);
            this.seen = seen;
            this.track = track;
            t = new Thread(this);
            t.start();
        }

        void drop(Collection<TopicPartition> ps) {
            for (TopicPartition tp : ps) {
                owned.remove(tp.partition());
                if (track) holder.remove(tp.partition(), name);
            }
        }

        public void run() {
            try {
                c.subscribe(List.of(TOPIC), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                        c.commitSync();
                        drop(ps);
                    }

                    public void onPartitionsLost(Collection<TopicPartition> ps) {
                        drop(ps);
                    }

                    public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                        for (TopicPartition tp : ps) {
                            if (track) {
                                String prev = holder.putIfAbsent(tp.partition(), name);
                                if (prev != null && !prev.equals(name)) {
                                    doubleOwned.incrementAndGet();
                                    System.out.println("FAIL: partition " + tp.partition()
                                            + " assigned to " + name + " while " + prev
                                            + " holds it");
                                }
                            }
                            owned.add(tp.partition());
                        }
                    }
                });
                while (!stop.get()) {
                    for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(100)))
                        seen.add(r.value());
                }
                c.commitSync();
            } catch (Throwable e) {
                error = e;
                e.printStackTrace();
            } finally {
                c.close();
                if (track) owned.forEach(p -> holder.remove(p, name));
            }
        }

        void close() throws InterruptedException {
            stop.set(true);
            t.join();
        }
    }

    static Properties producerProps() {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class);
        p.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        return p;
    }

    static ToolResult groups(String... args) {
        List<String> a = new ArrayList<>(List.of("--bootstrap-server", bootstrap));
        a.addAll(Arrays.asList(args));
        return ToolRunner.run("kafka-consumer-groups ",
                org.apache.kafka.tools.consumer.group.ConsumerGroupCommand::main,
                a.toArray(new String[0]));
    }

    static long logEnd(Admin admin) throws Exception {
        long end = 0;
        for (int q = 0; q < PARTS; q++) {
            TopicPartition tp = new TopicPartition(TOPIC, q);
            end += admin.listOffsets(Map.of(tp, OffsetSpec.latest())).all().get().get(tp)
                    .offset();
        }
        return end;
    }

    static void scale(Admin admin, String group) throws Exception {
        Set<String> seen = ConcurrentHashMap.newKeySet();
        AtomicInteger sent = new AtomicInteger();
        AtomicBoolean stopProducing = new AtomicBoolean();
        Thread producer = new Thread(() -> {
            try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
                for (int i = 0; !stopProducing.get(); i++) {
                    p.send(new ProducerRecord<>(TOPIC, "k" + i, "v" + i)).get();
                    sent.incrementAndGet();
                    if (i % 20 == 0) Thread.sleep(5);
                }
            } catch (Exception e) {
                e.printStackTrace();
                check(false, "producer: " + e);
            }
        });
        producer.start();
        long t0 = System.currentTimeMillis();
        Member m1 = new Member("m1", consumerProps(group, "consumer", null), seen, true);
        waitFor(() -> m1.owned.size() == PARTS, 30000, "m1 owns all");
        System.out.println("m1 owns all 6 after " + (System.currentTimeMillis() - t0) + " ms");
        long t1 = System.currentTimeMillis();
        Member m2 = new Member("m2", consumerProps(group, "consumer", null), seen, true);
        Member m3 = new Member("m3", consumerProps(group, "consumer", null), seen, true);
        List<Member> all = List.of(m1, m2, m3);
        waitFor(() -> {
            Set<Integer> u = new HashSet<>();
            for (Member m : all) {
                if (m.owned.size() != PARTS / 3) return false;
                u.addAll(m.owned);
            }
            return u.size() == PARTS;
        }, 60000, "2/2/2 over three members");
        System.out.println("scaled 1 -> 3 in " + (System.currentTimeMillis() - t1) + " ms");
        check(true, "three members with disjoint thirds");

        // Admin: ConsumerGroupDescribe while the three members are stable.
        waitFor(() -> {
            try {
                ConsumerGroupDescription d = admin.describeConsumerGroups(List.of(group)).all()
                        .get().get(group);
                return d.groupState() == GroupState.STABLE && d.members().size() == 3;
            } catch (Exception e) {
                return false;
            }
        }, 30000, "describeConsumerGroups Stable with 3 members");
        ConsumerGroupDescription d =
                admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        Set<TopicPartition> described = new HashSet<>();
        int sum = 0;
        for (MemberDescription m : d.members()) {
            described.addAll(m.assignment().topicPartitions());
            sum += m.assignment().topicPartitions().size();
        }
        check(d.type() == GroupType.CONSUMER && described.size() == PARTS && sum == PARTS
                && d.partitionAssignor().equals("uniform") && d.groupEpoch().orElse(-1) > 0
                && d.targetAssignmentEpoch().equals(d.groupEpoch()),
                "describeConsumerGroups: type " + d.type() + ", assignor "
                + d.partitionAssignor() + ", epoch " + d.groupEpoch() + "/"
                + d.targetAssignmentEpoch() + ", members " + d.members());
        Collection<GroupListing> listed = admin.listGroups().all().get();
        check(listed.stream().anyMatch(g -> g.groupId().equals(group)
                && g.type().orElse(null) == GroupType.CONSUMER
                && g.groupState().orElse(null) == GroupState.STABLE),
                "listGroups shows a Stable consumer group: " + listed);
        ToolResult r = groups("--describe", "--group", group, "--members");
        check(r.status == 0 && r.out.split("\n").length >= 4 && r.out.contains(group),
                "kafka-consumer-groups --describe --members:\n" + r.out);
        r = groups("--describe", "--group", group, "--state");
        check(r.status == 0 && r.out.contains("Stable") && r.out.contains("uniform"),
                "kafka-consumer-groups --describe --state:\n" + r.out);
        r = groups("--describe", "--group", group);
        check(r.status == 0 && r.out.contains(TOPIC) && !r.out.contains("has no active"),
                "kafka-consumer-groups --describe:\n" + r.out);
        r = groups("--list");
        check(r.status == 0 && r.out.contains(group), "kafka-consumer-groups --list");

        int atPeak = sent.get();
        waitFor(() -> sent.get() > atPeak + 200, 30000, "more records at the peak");
        long t2 = System.currentTimeMillis();
        m2.close();
        m3.close();
        waitFor(() -> m1.owned.size() == PARTS, 60000, "m1 alone again");
        System.out.println("scaled 3 -> 1 in " + (System.currentTimeMillis() - t2) + " ms");
        int afterShrink = sent.get();
        waitFor(() -> sent.get() > afterShrink + 200, 30000, "records after");
        stopProducing.set(true);
        producer.join();
        int n = sent.get();
        waitFor(() -> seen.size() >= n, 60000, "every record consumed");
        m1.close();
        Set<String> want = new HashSet<>();
        for (int i = 0; i < n; i++) want.add("v" + i);
        check(seen.equals(want), "consumed exactly the " + n + " records produced");
        check(doubleOwned.get() == 0, "no partition owned by two members at once");
        for (Member m : all) check(m.error == null, m.name + ": error " + m.error);
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        long end = logEnd(admin);
        check(total == end && end == n, "committed offsets sum " + total + " == log end " + end);
        d = admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        check(d.groupState() == GroupState.EMPTY && d.type() == GroupType.CONSUMER,
                "group Empty after the last member left, is " + d.groupState());
    }

    /** A classic group and a consumer-protocol group read the topic side by side. */
    static void sideBySide(Admin admin) throws Exception {
        long end = logEnd(admin);
        Set<String> seenClassic = ConcurrentHashMap.newKeySet();
        Set<String> seenNew = ConcurrentHashMap.newKeySet();
        Member classic = new Member("classic", consumerProps("k848-classic", "classic", null),
                seenClassic, false);
        Member fresh = new Member("new", consumerProps("k848-new", "consumer", "range"), seenNew,
                false);
        waitFor(() -> seenClassic.size() >= end && seenNew.size() >= end, 60000,
                "both groups read every record");
        ConsumerGroupDescription dc = admin.describeConsumerGroups(List.of("k848-classic")).all()
                .get().get("k848-classic");
        ConsumerGroupDescription dn = admin.describeConsumerGroups(List.of("k848-new")).all()
                .get().get("k848-new");
        check(dc.type() == GroupType.CLASSIC && dc.members().size() == 1,
                "classic group described as CLASSIC with one member: " + dc);
        check(dn.type() == GroupType.CONSUMER && dn.members().size() == 1
                && dn.partitionAssignor().equals("range")
                && dn.members().iterator().next().assignment().topicPartitions().size() == PARTS,
                "consumer group with the range assignor holds all partitions: " + dn);
        ListGroupsResult onlyConsumer = admin.listGroups(
                ListGroupsOptions.forConsumerGroups().withTypes(Set.of(GroupType.CONSUMER)));
        Collection<GroupListing> lc = onlyConsumer.all().get();
        check(lc.stream().anyMatch(g -> g.groupId().equals("k848-new"))
                && lc.stream().noneMatch(g -> g.groupId().equals("k848-classic")),
                "listGroups with the consumer type filter: " + lc);
        classic.close();
        fresh.close();
        check(classic.error == null && fresh.error == null,
                "no errors: " + classic.error + " / " + fresh.error);
        Map<TopicPartition, OffsetAndMetadata> cn =
                admin.listConsumerGroupOffsets("k848-new").partitionsToOffsetAndMetadata().get();
        check(cn.values().stream().mapToLong(OffsetAndMetadata::offset).sum() == end,
                "the consumer-protocol group committed the log end: " + cn);
    }

    static ConsumerGroupDescription describe(Admin admin, String group) throws Exception {
        return admin.describeConsumerGroups(List.of(group)).all().get().get(group);
    }

    /** Static membership and a broker-side regex subscription. */
    static void staticAndRegex(Admin admin) throws Exception {
        Properties p = consumerProps("k848-static", "consumer", null);
        p.put(ConsumerConfig.GROUP_INSTANCE_ID_CONFIG, "inst-1");
        Set<String> seen = ConcurrentHashMap.newKeySet();
        Member s1 = new Member("s1", p, seen, false);
        waitFor(() -> s1.owned.size() == PARTS, 30000, "static member owns all");
        ConsumerGroupDescription before = describe(admin, "k848-static");
        String firstId = before.members().iterator().next().consumerId();
        s1.close();
        ConsumerGroupDescription gone = describe(admin, "k848-static");
        check(gone.members().size() == 1
                && gone.members().iterator().next().memberEpoch().orElse(0) == -2,
                "a closed static member stays with epoch -2: " + gone.members());
        Member s2 = new Member("s2", p, seen, false);
        waitFor(() -> s2.owned.size() == PARTS, 30000, "the instance back owns all");
        ConsumerGroupDescription after = describe(admin, "k848-static");
        MemberDescription md = after.members().iterator().next();
        check(after.members().size() == 1 && !md.consumerId().equals(firstId)
                && after.groupEpoch().equals(before.groupEpoch())
                && md.groupInstanceId().orElse("").equals("inst-1"),
                "static member back under a new id, no new group epoch: " + before.groupEpoch()
                + " -> " + after.groupEpoch() + ", " + firstId + " -> " + md.consumerId());
        s2.close();
        check(s1.error == null && s2.error == null, "static members: no errors");

        Properties rp = consumerProps("k848-regex", "consumer", null);
        KafkaConsumer<String, String> rc = new KafkaConsumer<>(rp);
        try {
            rc.subscribe(new SubscriptionPattern("k848(-re[0-9]+)?"));
            long deadline = System.currentTimeMillis() + 30000;
            while (rc.assignment().size() < PARTS && System.currentTimeMillis() < deadline)
                rc.poll(Duration.ofMillis(100));
            check(rc.assignment().size() == PARTS, "regex subscription: " + rc.assignment());
            admin.createTopics(List.of(new NewTopic("k848-re1", 2, (short) 1))).all().get();
            deadline = System.currentTimeMillis() + 30000;
            while (rc.assignment().size() < PARTS + 2 && System.currentTimeMillis() < deadline)
                rc.poll(Duration.ofMillis(100));
            check(rc.assignment().size() == PARTS + 2,
                    "regex subscription picks up k848-re1: " + rc.assignment());
            MemberDescription m = describe(admin, "k848-regex").members().iterator().next();
            check(m.assignment().topicPartitions().size() == PARTS + 2,
                    "described regex member: " + m);
        } finally {
            rc.close();
        }
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        ToolRunner.trapExit(false);
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(TOPIC, PARTS, (short) 1))).all().get();
            scale(admin, "k848-scale");
            sideBySide(admin);
            staticAndRegex(admin);
        }
        System.out.println(failures == 0 ? "ALL OK" : failures + " FAILURES");
        System.exit(failures == 0 ? 0 : 1);
    }
}
