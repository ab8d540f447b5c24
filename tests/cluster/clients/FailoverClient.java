// The Java client (kafka-clients) for test_clients.py: a producer or a group consumer speaking
// the line protocol described in pyclients.py. Compiled at test time against
// tests/compat/java/lib.
//
//   java FailoverClient produce BOOTSTRAP TOPIC PREFIX   (idempotent, acks=all, ~100 records/s)
//   java FailoverClient consume BOOTSTRAP TOPIC GROUP    (commitSync after each non-empty poll)
//
// Both finish when stdin closes.
import java.io.PrintStream;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.atomic.AtomicBoolean;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.ConsumerRecords;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.consumer.OffsetAndMetadata;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;

public final class FailoverClient {
  private static final PrintStream OUT = System.out;

  private static synchronized void out(String line) {
    OUT.println(line);
    OUT.flush();
  }

  /** Set when stdin reaches EOF: the driver asks the client to finish. */
  private static AtomicBoolean watchStdin() {
    AtomicBoolean done = new AtomicBoolean();
    Thread t = new Thread(() -> {
      try {
        while (System.in.read() >= 0) {
          // the driver never writes; EOF is the signal
        }
      } catch (Exception e) {
        // closed
      }
      done.set(true);
    });
    t.setDaemon(true);
    t.start();
    return done;
  }

  static void produce(String bootstrap, String topic, String prefix, AtomicBoolean done)
      throws Exception {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("acks", "all");
    p.put("enable.idempotence", "true");
    p.put("linger.ms", "5");
    p.put("delivery.timeout.ms", "120000");
    p.put("metadata.max.age.ms", "1000");
    p.put("key.serializer", StringSerializer.class.getName());
    p.put("value.serializer", StringSerializer.class.getName());
    int seq = 0;
    try (KafkaProducer<String, String> producer = new KafkaProducer<>(p)) {
      while (!done.get()) {
        String v = String.format("%s-%07d", prefix, seq++);
        producer.send(new ProducerRecord<>(topic, v, v), (md, e) -> {
          if (e == null) {
            out("ACK " + v + " " + md.partition() + " " + md.offset());
          } else {
            out("NACK " + v + " " + e.toString().replace('\n', ' '));
          }
        });
        Thread.sleep(10);
      }
      producer.flush();
    }
    out("DONE sent=" + seq);
  }

  static void consume(String bootstrap, String topic, String group, AtomicBoolean done) {
    Properties p = new Properties();
    p.put("bootstrap.servers", bootstrap);
    p.put("group.id", group);
    p.put("auto.offset.reset", "earliest");
    p.put("enable.auto.commit", "false");
    p.put("session.timeout.ms", "10000");
    p.put("heartbeat.interval.ms", "500");
    p.put("metadata.max.age.ms", "1000");
    p.put("key.deserializer", StringDeserializer.class.getName());
    p.put("value.deserializer", StringDeserializer.class.getName());
    Map<TopicPartition, OffsetAndMetadata> pending = new HashMap<>();
    try (KafkaConsumer<String, String> c = new KafkaConsumer<>(p)) {
      c.subscribe(List.of(topic));
      while (!done.get()) {
        ConsumerRecords<String, String> recs = c.poll(Duration.ofMillis(200));
        for (ConsumerRecord<String, String> r : recs) {
          out("READ " + r.value() + " " + r.partition() + " " + r.offset());
          pending.put(new TopicPartition(topic, r.partition()), new OffsetAndMetadata(r.offset() + 1));
        }
        if (!recs.isEmpty()) {
          commit(c, pending);
        }
      }
      if (!pending.isEmpty()) {
        commit(c, pending);
      }
    }
    out("DONE");
  }

  /** Commits pending synchronously; clears it once acknowledged. */
  private static void commit(KafkaConsumer<String, String> c,
      Map<TopicPartition, OffsetAndMetadata> pending) {
    try {
      c.commitSync(pending, Duration.ofSeconds(15));
      for (Map.Entry<TopicPartition, OffsetAndMetadata> e : pending.entrySet()) {
        out("COMMITTED " + e.getKey().partition() + " " + e.getValue().offset());
      }
      pending.clear();
    } catch (Exception e) {
      out("COMMITFAIL " + e.toString().replace('\n', ' '));
    }
  }

  public static void main(String[] args) throws Exception {
    AtomicBoolean done = watchStdin();
    if (args[0].equals("produce")) {
      produce(args[1], args[2], args[3], done);
    } else {
      consume(args[1], args[2], args[3], done);
    }
  }
}
