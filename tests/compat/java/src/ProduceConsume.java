import java.time.Duration;
import java.util.*;
import java.util.concurrent.Future;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.header.Header;
import org.apache.kafka.common.serialization.*;

/**
 * The Java client (kafka-clients 4.x) against laminar: creates a topic with the Admin API,
 * produces N records with keys and headers (enable.idempotence=false, acks=all, the codec given),
 * reads them back with assign + seekToBeginning, and checks every record in per-partition order.
 * Usage: ProduceConsume BOOTSTRAP TOPIC N CODEC. Exit 0 only when everything matched.
 */
public class ProduceConsume {
    public static void main(String[] args) throws Exception {
        String bootstrap = args[0], topic = args[1];
        int n = Integer.parseInt(args[2]);
        String codec = args.length > 3 ? args[3] : "none";
        int partitions = 3;

        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get();
            Map<String, TopicDescription> d = admin.describeTopics(List.of(topic)).allTopicNames().get();
            if (d.get(topic).partitions().size() != partitions) {
                throw new AssertionError("describe: wrong partition count " + d);
            }
        }

        Properties pp = new Properties();
        pp.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        pp.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "false");
        pp.put(ProducerConfig.ACKS_CONFIG, "all");
        pp.put(ProducerConfig.COMPRESSION_TYPE_CONFIG, codec);
        pp.put(ProducerConfig.LINGER_MS_CONFIG, "5");
        Map<Integer, List<String>> sent = new HashMap<>();
        try (Producer<String, String> producer =
                     new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
            List<Future<RecordMetadata>> futures = new ArrayList<>();
            for (int i = 0; i < n; i++) {
                int p = i % partitions;
                ProducerRecord<String, String> r =
                        new ProducerRecord<>(topic, p, 1_700_000_000_000L + i, "k" + i, "v" + i);
                r.headers().add("h", ("x" + i).getBytes());
                futures.add(producer.send(r));
                sent.computeIfAbsent(p, x -> new ArrayList<>()).add("k" + i);
            }
            for (Future<RecordMetadata> f : futures) f.get();
        }

        Properties cp = new Properties();
        cp.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        cp.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
        Map<Integer, List<String>> got = new HashMap<>();
        int total = 0;
        try (Consumer<String, String> consumer =
                     new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++) tps.add(new TopicPartition(topic, p));
            consumer.assign(tps);
            consumer.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 60_000;
            while (total < n && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : consumer.poll(Duration.ofMillis(500))) {
                    int i = Integer.parseInt(r.key().substring(1));
                    if (!r.value().equals("v" + i)) throw new AssertionError("value " + r);
                    if (r.timestamp() != 1_700_000_000_000L + i) throw new AssertionError("ts " + r);
                    Header h = r.headers().lastHeader("h");
                    if (h == null || !new String(h.value()).equals("x" + i)) throw new AssertionError("header " + r);
                    got.computeIfAbsent(r.partition(), x -> new ArrayList<>()).add(r.key());
                    total++;
                }
            }
        }
        if (!got.equals(sent)) {
            throw new AssertionError("read back " + total + " of " + n + " records, or out of order");
        }
        System.out.println("ProduceConsume: " + n + " records back in order (" + codec + ")");
    }
}
