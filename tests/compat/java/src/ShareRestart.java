import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * A KIP-932 share consumer across a broker crash (tests/compat/share/test_share_restart.py):
 *   before BOOTSTRAP TOPIC GROUP N ACCEPT: creates TOPIC, joins GROUP (share.auto.offset.reset
 *     latest, the default) and fetches once so the share partition starts at the empty log's
 *     end, produces N records, accepts the first ACCEPT or a few more (whole polls), acquires
 *     the next poll without acknowledging it, prints "ACCEPTED v..." and "HELD v..." and halts
 *     without closing (as a crash would);
 *   mixed BOOTSTRAP TOPIC GROUP N [FROM]: as before (TOPIC may exist already; the records are
 *     "rFROM".."r(FROM+N-1)", FROM 0 by default), then acknowledges every record of its polls by
 *     its number i (value "ri"): ACCEPT when i % 3 == 0, REJECT when i % 3 == 1, and in its
 *     last poll RELEASE when i % 3 == 2 (ACCEPT before, so that nothing comes back before the
 *     crash); stops after the poll in which it has seen N / 2 records, commits, prints
 *     "ACCEPTED v...", "REJECTED v...", "RELEASED v..." and halts (records the client fetched
 *     beyond its polls stay acquired);
 *   after BOOTSTRAP TOPIC GROUP WANT: a new member of GROUP accepts whatever comes for up to
 *     20 s (until WANT records) and prints "GOT v...", "DUP n" and "COUNT v:deliveryCount...".
 */
public class ShareRestart {
    static Properties consumerProps(String bootstrap, String group) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("group.id", group);
        p.put("key.deserializer", StringDeserializer.class.getName());
        p.put("value.deserializer", StringDeserializer.class.getName());
        p.put("share.acknowledgement.mode", "explicit");
        p.put("max.poll.records", "5");
        return p;
    }

    static String join(Iterable<String> vs) {
        StringBuilder b = new StringBuilder();
        for (String v : vs)
            b.append(b.length() > 0 ? "," : "").append(v);
        return b.toString();
    }

    public static void main(String[] args) throws Exception {
        String mode = args[0], bootstrap = args[1], topic = args[2], group = args[3];
        if (mode.equals("mixed")) {
            int n = Integer.parseInt(args[4]);
            int from = args.length > 5 ? Integer.parseInt(args[5]) : 0;
            Properties ap = new Properties();
            ap.put("bootstrap.servers", bootstrap);
            try (Admin admin = Admin.create(ap)) {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
            } catch (java.util.concurrent.ExecutionException e) {
                // made beforehand (a cluster test makes it replicated)
                if (!(e.getCause() instanceof org.apache.kafka.common.errors.TopicExistsException))
                    throw e;
            }
            KafkaShareConsumer<String, String> sc =
                new KafkaShareConsumer<>(consumerProps(bootstrap, group));
            sc.subscribe(List.of(topic));
            // the first fetches start the share partition (at the log's end, unless it started
            // before: then records may come at once, handled below)
            ConsumerRecords<String, String> first = null;
            long until = System.currentTimeMillis() + 3000;
            while (first == null && System.currentTimeMillis() < until) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                if (!recs.isEmpty())
                    first = recs;
            }
            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
                for (int i = from; i < from + n; i++)
                    prod.send(new ProducerRecord<>(topic, "k" + i, "r" + i));
                prod.flush();
            }
            List<String> accepted = new ArrayList<>(), rejected = new ArrayList<>(),
                         released = new ArrayList<>();
            int seen = 0;
            until = System.currentTimeMillis() + 20000;
            while (seen < n / 2 && System.currentTimeMillis() < until) {
                ConsumerRecords<String, String> recs =
                    first != null ? first : sc.poll(Duration.ofMillis(200));
                first = null;
                boolean last = seen + recs.count() >= n / 2;
                for (ConsumerRecord<String, String> r : recs) {
                    int i = Integer.parseInt(r.value().substring(1));
                    AcknowledgeType t = i % 3 == 0 ? AcknowledgeType.ACCEPT
                                        : i % 3 == 1 ? AcknowledgeType.REJECT
                                        : last ? AcknowledgeType.RELEASE : AcknowledgeType.ACCEPT;
                    sc.acknowledge(r, t);
                    (t == AcknowledgeType.ACCEPT ? accepted
                     : t == AcknowledgeType.REJECT ? rejected : released).add(r.value());
                    seen++;
                }
                if (!recs.isEmpty()) {
                    Map<org.apache.kafka.common.TopicIdPartition, Exception> errs = new java.util.HashMap<>();
                    sc.commitSync().forEach((tp, e) -> e.ifPresent(x -> errs.put(tp, (Exception) x)));
                    if (!errs.isEmpty())
                        System.out.println("COMMIT-ERRORS " + errs);
                }
            }
            System.out.println("ACCEPTED " + join(accepted));
            System.out.println("REJECTED " + join(rejected));
            System.out.println("RELEASED " + join(released));
            System.out.flush();
            Runtime.getRuntime().halt(0);
        }
        if (mode.equals("before")) {
            int n = Integer.parseInt(args[4]), accept = Integer.parseInt(args[5]);
            Properties ap = new Properties();
            ap.put("bootstrap.servers", bootstrap);
            try (Admin admin = Admin.create(ap)) {
                admin.createTopics(List.of(new NewTopic(topic, 1, (short) 1))).all().get();
            }
            KafkaShareConsumer<String, String> sc =
                new KafkaShareConsumer<>(consumerProps(bootstrap, group));
            sc.subscribe(List.of(topic));
            // the first fetches start the share partition at the (empty) log's end
            long until = System.currentTimeMillis() + 3000;
            while (System.currentTimeMillis() < until)
                sc.poll(Duration.ofMillis(200));
            Properties pp = new Properties();
            pp.put("bootstrap.servers", bootstrap);
            pp.put("key.serializer", StringSerializer.class.getName());
            pp.put("value.serializer", StringSerializer.class.getName());
            try (KafkaProducer<String, String> prod = new KafkaProducer<>(pp)) {
                for (int i = 0; i < n; i++)
                    prod.send(new ProducerRecord<>(topic, "k" + i, "r" + i));
                prod.flush();
            }
            List<String> accepted = new ArrayList<>(), held = new ArrayList<>();
            until = System.currentTimeMillis() + 20000;
            while (accepted.size() < accept && System.currentTimeMillis() < until) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                    accepted.add(r.value());
                }
                if (!recs.isEmpty())
                    sc.commitSync();
            }
            until = System.currentTimeMillis() + 10000;
            while (held.isEmpty() && System.currentTimeMillis() < until)
                for (ConsumerRecord<String, String> r : sc.poll(Duration.ofMillis(200)))
                    held.add(r.value());
            Thread.sleep(1000); // the broker's tick writes its checkpoint meanwhile
            System.out.println("ACCEPTED " + join(accepted));
            System.out.println("HELD " + join(held));
            System.out.flush();
            Runtime.getRuntime().halt(0); // no close: the session is never closed
        }
        int want = Integer.parseInt(args[4]);
        TreeSet<String> got = new TreeSet<>();
        List<String> counts = new ArrayList<>();
        int dup = 0;
        try (KafkaShareConsumer<String, String> sc =
                 new KafkaShareConsumer<>(consumerProps(bootstrap, group))) {
            sc.subscribe(List.of(topic));
            long until = System.currentTimeMillis() + 20000;
            while (got.size() < want && System.currentTimeMillis() < until) {
                ConsumerRecords<String, String> recs = sc.poll(Duration.ofMillis(200));
                for (ConsumerRecord<String, String> r : recs) {
                    if (!got.add(r.value()))
                        dup++;
                    counts.add(r.value() + ":" + r.deliveryCount().orElse((short) -1));
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                }
                if (!recs.isEmpty())
                    sc.commitSync();
            }
            // anything else that comes now would be a record delivered again
            for (int i = 0; i < 5; i++)
                for (ConsumerRecord<String, String> r : sc.poll(Duration.ofMillis(200))) {
                    if (!got.add(r.value()))
                        dup++;
                    sc.acknowledge(r, AcknowledgeType.ACCEPT);
                }
            sc.commitSync();
        }
        System.out.println("GOT " + join(got));
        System.out.println("DUP " + dup);
        System.out.println("COUNT " + join(counts));
    }
}
