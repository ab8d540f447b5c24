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
import org.apache.kafka.clients.admin.FeatureUpdate;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.admin.TransactionListing;
import org.apache.kafka.clients.admin.UpdateFeaturesOptions;
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
 * Everything runs twice: first with transaction.version 2 as a new cluster finalizes it
 * (KIP-890 part 2: the client adds no partitions itself and the coordinator bumps the epoch at
 * every EndTxn, which describeTransactions shows), then after Admin.updateFeatures (what
 * kafka-features does) downgraded it to 1, where the epoch stays.
 *
 *     java -cp lib/*:classes TxnSuite host:port
 */
public class TxnSuite {
    static String bootstrap;
    static String sfx = ""; /* topic, id and group suffix of the current pass */
    static int tv;          /* the transaction.version of the current pass */

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
        admin.createTopics(List.of(new NewTopic("jca" + sfx, 3, (short) 1))).all().get();
        List<String> committed = new ArrayList<>();
        int total = 0;
        try (KafkaProducer<String, String> p = producer("java-ca" + sfx)) {
            for (int round = 0; round < 5; round++) {
                p.beginTransaction();
                List<String> vals = new ArrayList<>();
                for (int i = 0; i < 7; i++) {
                    String v = "r" + round + "-" + i;
                    vals.add(v);
                    p.send(new ProducerRecord<>("jca" + sfx, i % 3, null, v));
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
        List<String> got = readAll("jca" + sfx, 3, "read_committed", committed.size());
        check(got.equals(committed), "read_committed saw " + got + ", expected " + committed);
        List<String> all = readAll("jca" + sfx, 3, "read_uncommitted", total);
        check(all.size() == total, "read_uncommitted saw " + all.size() + " of " + total);
        /* transaction version 2 bumps the epoch at each of the 5 EndTxn; version 1 never */
        TransactionDescription d = admin.describeTransactions(List.of("java-ca" + sfx))
                                       .all()
                                       .get()
                                       .get("java-ca" + sfx);
        int want = tv >= 2 ? 5 : 0;
        check(d.producerEpoch() == want, "transaction.version " + tv + ": epoch "
                                             + d.producerEpoch() + " after 5 transactions, want "
                                             + want);
        System.out.println("ok: commit/abort, " + committed.size() + " committed of " + total);
    }

    static void zombie(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("jzz" + sfx, 1, (short) 1))).all().get();
        KafkaProducer<String, String> old = producer("java-zombie" + sfx);
        old.beginTransaction();
        old.send(new ProducerRecord<>("jzz" + sfx, "zombie-0")).get();
        try (KafkaProducer<String, String> fresh = producer("java-zombie" + sfx)) {
            fresh.beginTransaction();
            fresh.send(new ProducerRecord<>("jzz" + sfx, "fresh-0"));
            fresh.send(new ProducerRecord<>("jzz" + sfx, "fresh-1"));
            fresh.commitTransaction();
        }
        boolean fenced = false;
        try {
            old.send(new ProducerRecord<>("jzz" + sfx, "zombie-1"));
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
        List<String> got = readAll("jzz" + sfx, 1, "read_committed", 2);
        check(got.equals(List.of("fresh-0", "fresh-1")), "read_committed saw " + got);
        System.out.println("ok: zombie fenced");
    }

    static void consumeTransformProduce(Admin admin) throws Exception {
        admin.createTopics(List.of(new NewTopic("jin" + sfx, 2, (short) 1),
                                   new NewTopic("jout" + sfx, 2, (short) 1))).all().get();
        Properties sp = new Properties();
        sp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        sp.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        sp.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        try (KafkaProducer<String, String> src = new KafkaProducer<>(sp)) {
            for (int i = 0; i < 20; i++)
                src.send(new ProducerRecord<>("jin" + sfx, i % 2, null, "in-" + i));
        }
        int seen = 0;
        try (KafkaConsumer<String, String> c = consumer("jctp" + sfx, "read_committed");
             KafkaProducer<String, String> p = producer("java-ctp" + sfx)) {
            c.subscribe(List.of("jin" + sfx));
            long deadline = System.currentTimeMillis() + 60000;
            while (seen < 20 && System.currentTimeMillis() < deadline) {
                var recs = c.poll(Duration.ofMillis(500));
                if (recs.isEmpty())
                    continue;
                p.beginTransaction();
                Map<TopicPartition, OffsetAndMetadata> offs = new HashMap<>();
                for (ConsumerRecord<String, String> r : recs) {
                    p.send(new ProducerRecord<>("jout" + sfx, r.partition(), null,
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
        List<String> got = readAll("jout" + sfx, 2, "read_committed", 20);
        TreeSet<String> want = new TreeSet<>();
        for (int i = 0; i < 20; i++)
            want.add("out-" + i);
        check(got.equals(new ArrayList<>(want)), "output " + got);
        try (KafkaConsumer<String, String> c = consumer("jctp" + sfx, "read_committed")) {
            var committed = c.committed(
                java.util.Set.of(new TopicPartition("jin" + sfx, 0),
                                 new TopicPartition("jin" + sfx, 1)));
            long sum = 0;
            for (OffsetAndMetadata o : committed.values())
                sum += o == null ? 0 : o.offset();
            check(sum == 20, "committed offsets sum " + sum + " " + committed);
        }
        System.out.println("ok: consume-transform-produce with sendOffsetsToTransaction");
    }

    static void adminViews(Admin admin) throws Exception {
        KafkaProducer<String, String> p = producer("java-open" + sfx);
        p.beginTransaction();
        p.send(new ProducerRecord<>("jzz" + sfx, "open")).get();
        Collection<TransactionListing> list = admin.listTransactions().all().get();
        boolean listed = false;
        for (TransactionListing l : list)
            if (l.transactionalId().equals("java-open" + sfx))
                listed = l.state().toString().equals("Ongoing");
        check(listed, "listTransactions: java-open not Ongoing in " + list);
        TransactionDescription d =
            admin.describeTransactions(List.of("java-open" + sfx))
                .all()
                .get()
                .get("java-open" + sfx);
        check(d.state().toString().equals("Ongoing"), "describe state " + d.state());
        check(d.topicPartitions().contains(new TopicPartition("jzz" + sfx, 0)),
              "describe partitions " + d.topicPartitions());
        p.abortTransaction();
        p.close();
        System.out.println("ok: listTransactions / describeTransactions");
    }

    static short finalizedTv(Admin admin) throws Exception {
        FinalizedVersionRange r = admin.describeFeatures()
                                      .featureMetadata()
                                      .get()
                                      .finalizedFeatures()
                                      .get("transaction.version");
        return r == null ? 0 : r.maxVersionLevel();
    }

    static void pass(Admin admin) throws Exception {
        System.out.println("-- transaction.version " + tv);
        commitAbort(admin);
        zombie(admin);
        consumeTransformProduce(admin);
        adminViews(admin);
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            tv = finalizedTv(admin);
            check(tv == 2, "a new cluster finalizes transaction.version " + tv + ", want 2");
            pass(admin);
            admin
                .updateFeatures(Map.of("transaction.version",
                                       new FeatureUpdate((short) 1,
                                                         FeatureUpdate.UpgradeType.SAFE_DOWNGRADE)),
                                new UpdateFeaturesOptions())
                .all()
                .get();
            tv = finalizedTv(admin);
            check(tv == 1, "after the downgrade transaction.version is " + tv);
            sfx = "-tv1";
            pass(admin);
        }
        System.out.println("TxnSuite: all ok");
    }
}
