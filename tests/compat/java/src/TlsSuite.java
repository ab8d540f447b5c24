import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.SslAuthenticationException;
import org.apache.kafka.common.serialization.*;

/**
 * TLS against laminar with the Java client: security.protocol=SSL with a PEM truststore
 * (ssl.truststore.type=PEM, hostname verification on: the broker's certificate names
 * IP:127.0.0.1); the idempotent producer writes 200 records and a consumer reads them back in
 * order; the same client trusting another CA fails with SslAuthenticationException; on a listener
 * with ssl.client.auth=required, a client with a PEM keystore (ssl.keystore.type=PEM: key and
 * certificate in one file) writes and reads, and one without a keystore is refused.
 * Usage: TlsSuite BOOTSTRAP CA_PEM WRONG_CA_PEM MTLS_BOOTSTRAP CLIENT_STORE_PEM.
 * Exit 0 only when everything held.
 */
public class TlsSuite {
    static Properties ssl(String bootstrap, String ca) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SSL");
        p.put("ssl.truststore.type", "PEM");
        p.put("ssl.truststore.location", ca);
        return p;
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
        System.out.println("ok: " + what);
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        try (Admin admin = Admin.create(ssl(bootstrap, args[1]))) {
            admin.createTopics(List.of(new NewTopic("tls-java", 1, (short) 1))).all().get();
        }
        check(true, "Admin created tls-java over SSL");
        Properties pp = ssl(bootstrap, args[1]);
        pp.put("acks", "all");
        List<String> sent = new ArrayList<>();
        try (Producer<String, String> pr =
                     new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
            List<java.util.concurrent.Future<RecordMetadata>> fs = new ArrayList<>();
            for (int i = 0; i < 200; i++) {
                String v = "v" + i + "-" + "x".repeat(i * 37);
                fs.add(pr.send(new ProducerRecord<>("tls-java", 0, "k" + i, v)));
                sent.add(v);
            }
            for (var f : fs)
                f.get();
        }
        check(true, "idempotent producer wrote 200 records over SSL");
        Properties cp = ssl(bootstrap, args[1]);
        cp.put("enable.auto.commit", "false");
        List<String> got = new ArrayList<>();
        try (Consumer<String, String> c =
                     new KafkaConsumer<>(cp, new StringDeserializer(), new StringDeserializer())) {
            TopicPartition tp = new TopicPartition("tls-java", 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + 30000;
            while (got.size() < sent.size() && System.currentTimeMillis() < deadline)
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500)))
                    got.add(r.value());
        }
        check(got.equals(sent), "consumer read the 200 records back in order over SSL");
        Properties bad = ssl(bootstrap, args[2]);
        bad.put("default.api.timeout.ms", "10000");
        bad.put("request.timeout.ms", "5000");
        try (Admin admin = Admin.create(bad)) {
            admin.listTopics().names().get();
            check(false, "a client trusting another CA must fail");
        } catch (ExecutionException e) {
            check(e.getCause() instanceof SslAuthenticationException,
                    "a client trusting another CA: " + e.getCause().getClass().getSimpleName());
        } catch (KafkaException e) {
            check(false, "unexpected " + e);
        }
        Properties mp = ssl(args[3], args[1]);
        mp.put("ssl.keystore.type", "PEM");
        mp.put("ssl.keystore.location", args[4]);
        mp.put("acks", "all");
        try (Producer<String, String> pr =
                     new KafkaProducer<>(mp, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < 10; i++)
                pr.send(new ProducerRecord<>("tls-java-mtls", 0, "k" + i, "m" + i)).get();
        }
        check(true, "a client with a PEM keystore wrote 10 records on the ssl.client.auth=required "
                + "listener");
        Properties nocert = ssl(args[3], args[1]);
        nocert.put("default.api.timeout.ms", "10000");
        nocert.put("request.timeout.ms", "5000");
        try (Admin admin = Admin.create(nocert)) {
            admin.listTopics().names().get();
            check(false, "a client without a certificate must be refused");
        } catch (ExecutionException e) {
            check(e.getCause() instanceof SslAuthenticationException,
                    "a client without a certificate: " + e.getCause().getClass().getSimpleName());
        }
        System.out.println("TlsSuite passed");
    }
}
