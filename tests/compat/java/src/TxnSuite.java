import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's transactional producer against laminar's transaction coordinator:
 * commits and aborts read exactly by a read_committed consumer, a zombie fenced
 * (ProducerFencedException), consume-transform-produce with sendOffsetsToTransaction, and the
 * Admin client's listTransactions / describeTransactions. Exits 0 when every check passed.
 *
 *     java -cp lib/*:classes TxnSuite host:port
 */
public class TxnSuite {
    static String bootstrap;

    static void check(boolean cond, String what) {
        if (!cond)
            throw new AssertionError(what);
    }

    static KafkaProducer<String, String> producer(String tid) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, tid);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
        KafkaProducer<String, String> pr = new KafkaProducer<>(p);
        pr.initTransactions();
        return pr;
    }

    static KafkaConsumer<String, String> consumer(String group, String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.GROUP_ID_CONFIG, group);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        c.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    /** Every value of topic's partitions, read until `expect` arrived and a second passed. */
    static List<String> readAll(String topic, int partitions, String isolation, int expect) {
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer("reader-" + topic + "-" + isolation,
                                                        isolation)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++)
                tps.add(new TopicPartition(topic, p));
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 30000;
            long quiet = System.currentTimeMillis();
            while (System.currentTimeMillis() < deadline) {
                int n = 0;
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(200))) {
                    out.add(r.value());
                    n++;
                }
                if (n > 0)
                    quiet = System.currentTimeMillis();
                else if (out.size() >= expect && System.currentTimeMillis() - quiet > 1000)
                    break;
            }
        }
        Collections.sort(out);
        return out;
    }

    static void commitAbort(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("jca", 3, (short) 1))).all().get();
        List<String> committed = new ArrayList<>();
        int total = 0;
        try (KafkaProducer<String, String> p = producer("java-ca")) {
            for (int round = 0; round < 5; round++) {
                p.beginTransaction();
                List<String> vals = new ArrayList<>();
                for (int i = 0; i < 7; i++) {
                    String v = "r" + round + "-" + i;
                    vals.add(v);
                    p.send(new ProducerRecord<>("jca", i % 3, null, v));
                }
                total += vals.size();
                if (round % 2 == 0) {
                    p.commitTransaction();
                    committed.addAll(vals);
                } else {
                    p.flush();
                    p.abortTransaction();
                }
            }
        }
        Collections.sort(committed);
        List<String> got = readAll("jca", 3, "read_committed", committed.size());
        check(got.equals(committed), "read_committed saw " + got + ", expected " + committed);
        List<String> all = readAll("jca", 3, "read_uncommitted", total);
        check(all.size() == total, "read_uncommitted saw " + all.size() + " of " + total);
        System.out.println("ok: commit/abort, " + committed.size() + " committed of " + total);
    }

    static void zombie(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("jzz", 1, (short) 1))).all().get();
        KafkaProducer<String, String> old = producer("java-zombie");
        old.beginTransaction();
        old.send(new ProducerRecord<>("jzz", "zombie-0")).get();
        try (KafkaProducer<String, String> fresh = producer("java-zombie")) {
            fresh.beginTransaction();
            fresh.send(new ProducerRecord<>("jzz", "fresh-0"));
            fresh.send(new ProducerRecord<>("jzz", "fresh-1"));
            fresh.commitTransaction();
        }
        boolean fenced = false;
        try {
            old.send(new ProducerRecord<>("jzz", "zombie-1"));
            old.commitTransaction();
        } catch (ProducerFencedException e) {
            fenced = true;
        } catch (org.apache.kafka.common.KafkaException e) {
            fenced = e.getCause() instanceof ProducerFencedException
                     || e instanceof org.apache.kafka.common.errors.InvalidProducerEpochException;
            if (!fenced)
                throw e;
        } finally {
            old.close(Duration.ofSeconds(5));
        }
        check(fenced, "the zombie was not fenced");
        List<String> got = readAll("jzz", 1, "read_committed", 2);
        check(got.equals(List.of("fresh-0", "fresh-1")), "read_committed saw " + got);
        System.out.println("ok: zombie fenced");
    }

    static void consumeTransformProduce(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("jin", 2, (short) 1),
                                   new NewTopic("jout", 2, (short) 1))).all().get();
        Properties sp = new Properties();
        sp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        sp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        sp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> src = new KafkaProducer<>(sp)) {
            for (int i = 0; i < 20; i++)
                src.send(new ProducerRecord<>("jin", i % 2, null, "in-" + i));
        }
        int seen = 0;
        try (KafkaConsumer<String, String> c = consumer("jctp", "read_committed");
             KafkaProducer<String, String> p = producer("java-ctp")) {
            c.subscribe(List.of("jin"));
            long deadline = System.currentTimeMillis() + 60000;
            while (seen < 20 && System.currentTimeMillis() < deadline) {
                var recs = c.poll(Duration.ofMillis(500));
                if (recs.isEmpty())
                    continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
                for (ConsumerRecord<String, String> r : recs) {
                    p.send(new ProducerRecord<>("jout", r.partition(), null,
                                                r.value().replace("in", "out")));
                    offs.put(new TopicPartition(r.topic(), r.partition()),
                             new OffsetAndMetadata(r.offset() + 1));
                    seen++;
                }
                p.sendOffsetsToTransaction(offs, c.groupMetadata());
                p.commitTransaction();
            }
        }
        check(seen == 20, "consumed " + seen + " of 20");
        List<String> got = readAll("jout", 2, "read_committed", 20);
        TreeSet<String> want = new TreeSet<>();
        for (int i = 0; i < 20; i++)
            want.add("out-" + i);
        check(got.equals(new ArrayList<>(want)), "output " + got);
        try (KafkaConsumer<String, String> c = consumer("jctp", "read_committed")) {
            var committed = c.committed(
                java.util.Set.of(new TopicPartition("jin", 0), new TopicPartition("jin", 1)));
            long sum = 0;
            for (OffsetAndMetadata o : committed.values())
                sum += o == null ? 0 : o.offset();
            check(sum == 20, "committed offsets sum " + sum + " " + committed);
        }
        System.out.println("ok: consume-transform-produce with sendOffsetsToTransaction");
    }

    static void adminViews(Admin admin) throws Exception {
        KafkaProducer<String, String> p = producer("java-open");
        p.beginTransaction();
        p.send(new ProducerRecord<>("jzz", "open")).get();
        Collection<TransactionListing> list = admin.listTransactions().all().get();
        boolean listed = false;
        for (TransactionListing l : list)
            if (l.transactionalId().equals("java-open"))
                listed = l.state().toString().equals("Ongoing");
        check(listed, "listTransactions: java-open not Ongoing in " + list);
        TransactionDescription d =
            admin.describeTransactions(List.of("java-open")).all().get().get("java-open");
        check(d.state().toString().equals("Ongoing"), "describe state " + d.state());
        check(d.topicPartitions().contains(new TopicPartition("jzz", 0)),
              "describe partitions " + d.topicPartitions());
        p.abortTransaction();
        p.close();
        System.out.println("ok: listTransactions / describeTransactions");
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            commitAbort(admin);
            zombie(admin);
            consumeTransformProduce(admin);
            adminViews(admin);
        }
        System.out.println("TxnSuite: all ok");
    }
}
