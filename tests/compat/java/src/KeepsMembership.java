import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.HashSet;
import java.util.List;
import java.util.Properties;
import java.util.Set;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicInteger;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * Two consumers of one KIP-848 group (group.protocol=consumer) across a restart of the broker,
 * which the driver (test_kip848_restart.py) makes between the lines READY and RESTARTED on
 * stdin/stdout. The consumers keep polling; afterwards each must have the same member id, the
 * same member epoch (generation) and the same partitions, and its rebalance listener must have
 * seen no partition lost or revoked (the group came back from __consumer_offsets); records
 * produced after the restart are all consumed, once.
 * With a fourth argument "classic" the second consumer uses the classic protocol (a mixed group:
 * a classic member of a consumer group keeps its member id, generation and partitions too).
 * Usage: KeepsMembership BOOTSTRAP TOPIC PARTITIONS [classic]. Exit 0 only when every check
 * passed.
 */
public class KeepsMembership {
    static int failures = 0;

    static void check(boolean ok, String what) {
        System.out.println((ok ? "ok: " : "FAIL: ") + what);
        System.out.flush();
        if (!ok) failures++;
    }

    static class Member implements ConsumerRebalanceListener, Runnable {
        final KafkaConsumer<String, String> consumer;
        final Set<TopicPartition> owned = new HashSet<>();
        final AtomicInteger lost = new AtomicInteger(), revoked = new AtomicInteger();
        final AtomicInteger consumed = new AtomicInteger();
        final AtomicBoolean stop = new AtomicBoolean();
        final List<String> errors = new ArrayList<>();
        volatile String memberId = "";
        volatile int epoch = -1;
        volatile Set<TopicPartition> assignment = new HashSet<>();

        Member(String bootstrap, String topic, String protocol) {
            Properties p = new Properties();
            p.put("bootstrap.servers", bootstrap);
            p.put("group.id", "keeps");
            p.put("group.protocol", protocol);
            p.put("auto.offset.reset", "earliest");
            p.put("key.deserializer", StringDeserializer.class.getName());
            p.put("value.deserializer", StringDeserializer.class.getName());
            consumer = new KafkaConsumer<>(p);
            consumer.subscribe(List.of(topic), this);
        }

        public void onPartitionsRevoked(Collection<TopicPartition> ps) {
            if (!ps.isEmpty()) revoked.incrementAndGet();
        }

        public void onPartitionsAssigned(Collection<TopicPartition> ps) {}

        public void onPartitionsLost(Collection<TopicPartition> ps) {
            if (!ps.isEmpty()) lost.incrementAndGet();
        }

        public void run() {
            while (!stop.get()) {
                try {
                    ConsumerRecords<String, String> rs = consumer.poll(Duration.ofMillis(100));
                    consumed.addAndGet(rs.count());
                    memberId = consumer.groupMetadata().memberId();
                    epoch = consumer.groupMetadata().generationId();
                    assignment = new HashSet<>(consumer.assignment());
                } catch (Exception e) {
                    synchronized (errors) {
                        errors.add(e.toString());
                    }
                }
            }
            consumer.close(Duration.ofSeconds(5));
        }
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int parts = Integer.parseInt(args[2]);
        /* "classic": the second member uses the classic protocol (a mixed group) */
        String second = args.length > 3 ? args[3] : "consumer";
        Member a = new Member(bootstrap, topic, "consumer");
        Thread ta = new Thread(a);
        ta.start();
        long joinBy = System.currentTimeMillis() + 30000;
        while (second.equals("classic") && a.assignment.isEmpty() && System.currentTimeMillis() < joinBy)
            Thread.sleep(100); /* the consumer-protocol member makes the group a consumer group */
        Member b = new Member(bootstrap, topic, second);
        Thread tb = new Thread(b);
        tb.start();
        long deadline = System.currentTimeMillis() + 60000;
        while (a.assignment.size() + b.assignment.size() != parts || a.assignment.isEmpty() ||
               b.assignment.isEmpty()) {
            if (System.currentTimeMillis() > deadline) {
                check(false, "both members hold partitions within 60 s");
                System.exit(1);
            }
            Thread.sleep(100);
        }
        Thread.sleep(3000); /* the group settles: both at the target epoch */
        String ida = a.memberId, idb = b.memberId;
        int ea = a.epoch, eb = b.epoch;
        Set<TopicPartition> pa = a.assignment, pb = b.assignment;
        int lostBefore = a.lost.get() + b.lost.get(), revokedBefore = a.revoked.get() + b.revoked.get();
        System.out.println("READY " + ida + " " + ea + " " + pa + " " + idb + " " + eb + " " + pb);
        System.out.flush();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line = in.readLine();
        check("RESTARTED".equals(line), "the driver restarted the broker");
        /* records after the restart: both members must be back at their partitions */
        Properties pp = new Properties();
        pp.put("bootstrap.servers", bootstrap);
        pp.put("key.serializer", StringSerializer.class.getName());
        pp.put("value.serializer", StringSerializer.class.getName());
        int n = 200;
        int before = a.consumed.get() + b.consumed.get();
        try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
            for (int i = 0; i < n; i++)
                prod.send(new ProducerRecord<>(topic, i % parts, "k" + i, "v" + i));
            prod.flush();
        }
        deadline = System.currentTimeMillis() + 30000;
        while (a.consumed.get() + b.consumed.get() - before < n && System.currentTimeMillis() < deadline)
            Thread.sleep(100);
        Thread.sleep(3000); /* a few heartbeats after the restart */
        check(a.consumed.get() + b.consumed.get() - before == n,
              "the " + n + " records produced after the restart consumed once (" +
                  (a.consumed.get() + b.consumed.get() - before) + ")");
        check(a.memberId.equals(ida) && b.memberId.equals(idb), "the same member ids");
        check(a.epoch == ea && b.epoch == eb,
              "the same member epochs (" + ea + "/" + eb + " -> " + a.epoch + "/" + b.epoch + ")");
        check(a.assignment.equals(pa) && b.assignment.equals(pb), "the same partitions");
        check(a.lost.get() + b.lost.get() == lostBefore, "no partition lost");
        check(a.revoked.get() + b.revoked.get() == revokedBefore, "no partition revoked");
        a.stop.set(true);
        b.stop.set(true);
        ta.join();
        tb.join();
        System.out.println(failures == 0 ? "ALL OK" : failures + " FAILURE(S)");
        System.exit(failures == 0 ? 0 : 1);
    }
}
