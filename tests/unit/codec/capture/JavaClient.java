// Throwaway Java client for capture.py: one produce, one fetch from offset 0 (kafka-clients 4.x).
import java.time.Duration;
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class JavaClient {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.servers", args[0]);
        p.put("client.id", "golden-java");
        p.put("acks", "1");
        p.put("linger.ms", "0");
        p.put("enable.idempotence", "false"); // no InitProducerId: we answer only 4 apis
        p.put("max.block.ms", "10000");
        p.put("key.serializer", ByteArraySerializer.class.getName());
        p.put("value.serializer", ByteArraySerializer.class.getName());
        try (KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p)) {
            prod.send(new ProducerRecord<>("golden", 0, "golden-key".getBytes(),
                                           "golden-value".getBytes())).get();
        }
        Properties c = new Properties();
        c.put("bootstrap.servers", args[0]);
        c.put("client.id", "golden-java");
        c.put("enable.auto.commit", "false");
        c.put("fetch.max.wait.ms", "200");
        c.put("key.deserializer", ByteArrayDeserializer.class.getName());
        c.put("value.deserializer", ByteArrayDeserializer.class.getName());
        try (KafkaConsumer<byte[], byte[]> cons = new KafkaConsumer<>(c)) {
            TopicPartition tp = new TopicPartition("golden", 0);
            cons.assign(List.of(tp));
            cons.seek(tp, 0);
            cons.poll(Duration.ofMillis(1500));
        }
    }
}
