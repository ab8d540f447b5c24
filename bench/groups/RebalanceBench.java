import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Collection;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.TreeSet;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRebalanceListener;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.serialization.ByteArrayDeserializer;

/**
 * The client side of bench/groups/rebalance: consumers in threads of one JVM, driven by commands
 * on stdin, reporting on stdout (one line each; times are System.nanoTime(), one clock for all):
 *
 *   topic BOOTSTRAP NAME PARTITIONS  -> "TOPIC NAME" once it exists
 *   add ID BOOTSTRAP GROUP PROTOCOL TOPIC HEARTBEAT_MS
 *        PROTOCOL: classic (the client's default assignors: range, cooperative-sticky),
 *        classic-coop (cooperative-sticky only) or consumer (KIP-848, broker-side assignment)
 *        -> "START ID T" just before subscribe(); then "OWN ID T p,p,..." after every rebalance
 *        callback (its whole assignment; "-" when empty)
 *   close ID -> "CLOSED ID T_CALL T_RETURN" once close() returned
 *   quit
 * Errors: "ERROR ID message" (a consumer's poll loop failed).
 */
public class RebalanceBench {
  static final Map<String, Member> members = new ConcurrentHashMap<>();

  static synchronized void out(String line) {
    System.out.println(line);
    System.out.flush();
  }

  static final class Member implements ConsumerRebalanceListener, Runnable {
    final String id;
    final KafkaConsumer<byte[], byte[]> consumer;
    final String topic;
    final TreeSet<Integer> owned = new TreeSet<>();
    volatile boolean closing = false;
    final Thread thread;

    Member(String id, String bootstrap, String group, String protocol, String topic, int hbMs) {
      this.id = id;
      this.topic = topic;
      Properties p = new Properties();
      p.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
      p.put(ConsumerConfig.GROUP_ID_CONFIG, group);
      p.put(ConsumerConfig.CLIENT_ID_CONFIG, id);
      p.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
      p.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, ByteArrayDeserializer.class.getName());
      p.put(ConsumerConfig.ENABLE_AUTO_COMMIT_CONFIG, "false");
      p.put(ConsumerConfig.AUTO_OFFSET_RESET_CONFIG, "earliest");
      if (protocol.equals("consumer")) {
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "consumer");
      } else {
        p.put(ConsumerConfig.GROUP_PROTOCOL_CONFIG, "classic");
        p.put(ConsumerConfig.HEARTBEAT_INTERVAL_MS_CONFIG, String.valueOf(hbMs));
        p.put(ConsumerConfig.SESSION_TIMEOUT_MS_CONFIG, "45000");
        if (protocol.equals("classic-coop"))
          p.put(ConsumerConfig.PARTITION_ASSIGNMENT_STRATEGY_CONFIG,
                "org.apache.kafka.clients.consumer.CooperativeStickyAssignor");
        else if (!protocol.equals("classic"))
          throw new IllegalArgumentException("protocol " + protocol);
      }
      consumer = new KafkaConsumer<>(p);
      thread = new Thread(this, "member-" + id);
    }

    void report() {
      StringBuilder sb = new StringBuilder();
      for (int q : owned) {
        if (sb.length() > 0) sb.append(',');
        sb.append(q);
      }
      out("OWN " + id + " " + System.nanoTime() + " " + (sb.length() == 0 ? "-" : sb));
    }

    @Override
    public void onPartitionsRevoked(Collection<TopicPartition> parts) {
      for (TopicPartition tp : parts) owned.remove(tp.partition());
      report();
    }

    @Override
    public void onPartitionsLost(Collection<TopicPartition> parts) {
      for (TopicPartition tp : parts) owned.remove(tp.partition());
      report();
    }

    @Override
    public void onPartitionsAssigned(Collection<TopicPartition> parts) {
      for (TopicPartition tp : parts) owned.add(tp.partition());
      report();
    }

    @Override
    public void run() {
      try {
        out("START " + id + " " + System.nanoTime());
        consumer.subscribe(Collections.singletonList(topic), this);
        while (!closing) {
          consumer.poll(Duration.ofMillis(100));
        }
        long t0 = System.nanoTime();
        consumer.close();
        out("CLOSED " + id + " " + t0 + " " + System.nanoTime());
      } catch (Throwable t) {
        out("ERROR " + id + " " + t.toString().replace('\n', ' '));
      }
    }
  }

  public static void main(String[] args) throws Exception {
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    String line;
    while ((line = in.readLine()) != null) {
      String[] w = line.trim().split("\\s+");
      if (w.length == 0 || w[0].isEmpty()) continue;
      try {
        switch (w[0]) {
          case "topic": {
            Properties p = new Properties();
            p.put("bootstrap.servers", w[1]);
            try (Admin admin = Admin.create(p)) {
              try {
                admin.createTopics(List.of(new NewTopic(w[2], Integer.parseInt(w[3]), (short) 1)))
                    .all().get();
              } catch (ExecutionException e) {
                if (!(e.getCause() instanceof TopicExistsException)) throw e;
              }
            }
            out("TOPIC " + w[2]);
            break;
          }
          case "add": {
            Member m = new Member(w[1], w[2], w[3], w[4], w[5], Integer.parseInt(w[6]));
            members.put(m.id, m);
            m.thread.start();
            break;
          }
          case "close": {
            Member m = members.remove(w[1]);
            m.closing = true; // the poll loop returns within 100 ms and closes
            break;
          }
          case "quit": {
            List<Member> left = new ArrayList<>(members.values());
            for (Member m : left) {
              m.closing = true;
            }
            for (Member m : left) m.thread.join(60000);
            return;
          }
          default:
            out("ERROR - unknown command " + w[0]);
        }
      } catch (Exception e) {
        out("ERROR - " + line + ": " + e.toString().replace('\n', ' '));
      }
    }
  }
}
