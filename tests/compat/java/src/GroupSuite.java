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
import java.util.function.Consumer;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.GroupState;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Consumer groups and the idempotent producer with the Java client, in one JVM (issue 5):
 *   1. a producer with DEFAULT settings (idempotent, acks=all) writes while a group of
 *      consumers scales 1 -> 3 -> 1, once with the eager RangeAssignor and once with the
 *      CooperativeStickyAssignor: every record is consumed, the three members hold disjoint
 *      thirds at the peak, committed offsets end at the log end;
 *   2. Admin: DescribeProducers shows the producer; offsets with metadata round-trip through
 *      alterConsumerGroupOffsets / listConsumerGroupOffsets; deleteConsumerGroupOffsets;
 *   3. Kafka's ConsumerGroupCommand (kafka-consumer-groups): --list, --describe,
 *      --reset-offsets --to-earliest --execute, --delete.
 * Usage: GroupSuite BOOTSTRAP. Exit 0 only when every check passed.
 */
public class GroupSuite {
    static final String TOPIC = "jgroups";
    static final int PARTS = 6;
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

    /** One consumer on its own thread; its assignment and the values it saw are shared. */
    static final class Member implements Runnable {
        final KafkaConsumer<String, String> c;
        final Set<String> seen;
        final Set<Integer> owned = ConcurrentHashMap.newKeySet();
        final AtomicBoolean stop = new AtomicBoolean();
        final Thread t;
        volatile Throwable error;

        Member(String group, String assignor, Set<String> seen) {
            Properties p = new Properties();
            p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
            p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
            p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
            p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG, assignor);
            p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, "500");
            p.put(ConsumerConfig.MAX_POLL_RECORDS_CONFIG, "200");
            p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class);
            c = new KafkaConsumer<>(p);
            this.seen = seen;
            t = new Thread(this);
            t.start();
        }

        public void run() {
            try {
                c.subscribe(List.of(TOPIC), new ConsumerRebalanceListener() {
                    public void onPartitionsRevoked(Collection<TopicPartition> ps) {
                        c.commitSync();
                        ps.forEach(tp -> owned.remove(tp.partition()));
                    }

                    public void onPartitionsAssigned(Collection<TopicPartition> ps) {
                        ps.forEach(tp -> owned.add(tp.partition()));
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
        return p; // everything else default: enable.idempotence=true, acks=all
    }

    static void scale(Admin admin, String assignor, String group, int base) throws Exception {
        Set<String> seen = ConcurrentHashMap.newKeySet();
        AtomicInteger sent = new AtomicInteger();
        AtomicBoolean stopProducing = new AtomicBoolean();
        Thread producer = new Thread(() -> {
            try (KafkaProducer<String, String> p = new KafkaProducer<>(producerProps())) {
                for (int i = base; !stopProducing.get(); i++) {
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
        Member m1 = new Member(group, assignor, seen);
        waitFor(() -> m1.owned.size() == PARTS, 30000, assignor + ": m1 owns all");
        Member m2 = new Member(group, assignor, seen), m3 = new Member(group, assignor, seen);
        List<Member> all = List.of(m1, m2, m3);
        waitFor(() -> {
            Set<Integer> u = new HashSet<>();
            for (Member m : all) {
                if (m.owned.size() != PARTS / 3) return false;
                u.addAll(m.owned);
            }
            return u.size() == PARTS;
        }, 60000, assignor + ": 2/2/2 over three members");
        check(true, assignor + ": three members with disjoint thirds");
        int atPeak = sent.get();
        waitFor(() -> sent.get() > atPeak + 200, 30000, assignor + ": more records at the peak");
        m2.close();
        m3.close();
        waitFor(() -> m1.owned.size() == PARTS, 60000, assignor + ": m1 alone again");
        int afterShrink = sent.get();
        waitFor(() -> sent.get() > afterShrink + 200, 30000, assignor + ": records after");
        stopProducing.set(true);
        producer.join();
        int n = sent.get();
        // A new group starts from the earliest offset: it reads the records of earlier runs too.
        waitFor(() -> seen.size() >= base + n, 60000, assignor + ": every record consumed");
        m1.close();
        Set<String> want = new HashSet<>();
        for (int i = 0; i < base + n; i++) want.add("v" + i);
        check(seen.equals(want), assignor + ": consumed exactly the " + (base + n)
                + " records in the topic");
        for (Member m : all) check(m.error == null, assignor + ": member error " + m.error);
        Map<TopicPartition, OffsetAndMetadata> committed =
                admin.listConsumerGroupOffsets(group).partitionsToOffsetAndMetadata().get();
        long total = committed.values().stream().mapToLong(OffsetAndMetadata::offset).sum();
        check(total == base + n, assignor + ": committed offsets sum " + total + " == "
                + (base + n) + " (log end)");
        ConsumerGroupDescription d =
                admin.describeConsumerGroups(List.of(group)).all().get().get(group);
        check(d.groupState() == GroupState.EMPTY, assignor + ": group Empty, is "
                + d.groupState());
    }

    static ToolResult groups(String... args) {
        List<String> a = new ArrayList<>(List.of("--bootstrap-server", bootstrap));
        a.addAll(Arrays.asList(args));
        return ToolRunner.run("kafka-consumer-groups ",
                org.apache.kafka.tools.consumer.group.ConsumerGroupCommand::main,
                a.toArray(new String[0]));
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        ToolRunner.trapExit(false);
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(TOPIC, PARTS, (short) 1))).all().get();

            // 1. scaling groups while an idempotent producer writes.
            scale(admin, "org.apache.kafka.clients.consumer.RangeAssignor", "jg-eager", 0);
            long end = 0;
            for (int q = 0; q < PARTS; q++) {
                end += admin.listOffsets(Map.of(new TopicPartition(TOPIC, q),
                        OffsetSpec.latest())).all().get()
                        .get(new TopicPartition(TOPIC, q)).offset();
            }
            scale(admin, "org.apache.kafka.clients.consumer.CooperativeStickyAssignor",
                    "jg-coop", (int) end);

            // 2. Admin: producers, offsets with metadata, offset deletion.
            DescribeProducersResult dp = admin.describeProducers(
                    List.of(new TopicPartition(TOPIC, 0)));
            List<ProducerState> states = dp.partitionResult(new TopicPartition(TOPIC, 0)).get()
                    .activeProducers();
            check(!states.isEmpty() && states.get(0).producerId() >= 0
                    && states.get(0).lastSequence() >= 0,
                    "DescribeProducers: " + states);
            TopicPartition tp0 = new TopicPartition(TOPIC, 0), tp1 = new TopicPartition(TOPIC, 1);
            admin.alterConsumerGroupOffsets("jg-meta", Map.of(
                    tp0, new OffsetAndMetadata(5, "meta-\u00e9"),
                    tp1, new OffsetAndMetadata(7, ""))).all().get();
            Map<TopicPartition, OffsetAndMetadata> got =
                    admin.listConsumerGroupOffsets("jg-meta").partitionsToOffsetAndMetadata().get();
            check(got.get(tp0).offset() == 5 && got.get(tp0).metadata().equals("meta-\u00e9")
                    && got.get(tp1).offset() == 7, "offset metadata round trip: " + got);
            // Several groups in one OffsetFetch (v8+, KIP-709), on their own coordinators.
            ListConsumerGroupOffsetsSpec spec = new ListConsumerGroupOffsetsSpec();
            ListConsumerGroupOffsetsResult multi = admin.listConsumerGroupOffsets(
                    Map.of("jg-meta", spec, "jg-coop", spec, "jg-none", spec));
            Map<TopicPartition, OffsetAndMetadata> meta = multi.partitionsToOffsetAndMetadata(
                    "jg-meta").get();
            Map<TopicPartition, OffsetAndMetadata> coop = multi.partitionsToOffsetAndMetadata(
                    "jg-coop").get();
            Map<TopicPartition, OffsetAndMetadata> none = multi.partitionsToOffsetAndMetadata(
                    "jg-none").get();
            check(meta.get(tp0).offset() == 5 && coop.size() == PARTS && none.isEmpty(),
                    "OffsetFetch of three groups at once: " + meta.size() + "/" + coop.size()
                    + "/" + none.size());
            admin.deleteConsumerGroupOffsets("jg-meta", Set.of(tp1)).all().get();
            got = admin.listConsumerGroupOffsets("jg-meta").partitionsToOffsetAndMetadata().get();
            check(got.containsKey(tp0) && !got.containsKey(tp1), "OffsetDelete: " + got);

            // Transactions are served: a transactional producer initialises at once.
            Properties tp = producerProps();
            tp.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, "jg-txn");
            tp.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, "30000");
            long t0 = System.currentTimeMillis();
            String txnError = null;
            try (KafkaProducer<String, String> p = new KafkaProducer<>(tp)) {
                p.initTransactions();
            } catch (Exception e) {
                txnError = e.toString();
            }
            long took = System.currentTimeMillis() - t0;
            check(txnError == null && took < 20000,
                    "transactional producer initialised in " + took + " ms: " + txnError);

            // 3. kafka-consumer-groups.
            ToolResult r = groups("--list");
            check(r.status == 0 && r.out.contains("jg-eager") && r.out.contains("jg-coop")
                    && r.out.contains("jg-meta"), "--list shows the groups");
            r = groups("--describe", "--group", "jg-eager");
            check(r.status == 0 && r.out.contains(TOPIC) && r.out.contains("has no active"),
                    "--describe an empty group with committed offsets");
            r = groups("--describe", "--group", "jg-eager", "--state");
            check(r.status == 0 && r.out.contains("Empty"), "--describe --state");
            r = groups("--reset-offsets", "--group", "jg-eager", "--topic", TOPIC,
                    "--to-earliest", "--execute");
            Map<TopicPartition, OffsetAndMetadata> reset =
                    admin.listConsumerGroupOffsets("jg-eager").partitionsToOffsetAndMetadata()
                            .get();
            check(r.status == 0 && reset.size() == PARTS
                    && reset.values().stream().allMatch(o -> o.offset() == 0),
                    "--reset-offsets --to-earliest --execute: " + reset);
            r = groups("--delete", "--group", "jg-eager");
            check(r.status == 0 && r.out.contains("successful"), "--delete");
            r = groups("--list");
            check(r.status == 0 && !r.out.contains("jg-eager") && r.out.contains("jg-coop"),
                    "--list after --delete");
        }
        System.out.println(failures == 0 ? "ALL OK" : failures + " FAILURES");
        System.exit(failures == 0 ? 0 : 1);
    }
}
