import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.*;
import java.util.concurrent.ExecutionException;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.clients.consumer.*;
import org.apache.kafka.clients.producer.*;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.*;
import org.apache.kafka.common.serialization.*;

/**
 * SASL against laminar with the Java client and kafka-configs (KIP-554): as the PLAIN admin,
 * kafka-configs creates the SCRAM-SHA-512 user alice; Admin describes it; a producer and a
 * consumer authenticate as alice with SCRAM-SHA-512 and read back what they wrote, across a
 * re-authentication (connections.max.reauth.ms, KIP-368); a wrong password, an unknown user and
 * a mechanism the listener does not enable each fail with the client's authentication error and
 * write nothing; kafka-configs deletes the credential and alice can no longer log in.
 * Usage: SaslSuite BOOTSTRAP TMPDIR. Exit 0 only when everything held.
 */
public class SaslSuite {
    static final String PLAIN = "org.apache.kafka.common.security.plain.PlainLoginModule";
    static final String SCRAM = "org.apache.kafka.common.security.scram.ScramLoginModule";

    static Properties sasl(String bootstrap, String mech, String user, String pw) {
        Properties p = new Properties();
        p.put("bootstrap.servers", bootstrap);
        p.put("security.protocol", "SASL_PLAINTEXT");
        p.put("sasl.mechanism", mech);
        String module = mech.equals("PLAIN") ? PLAIN : SCRAM;
        p.put("sasl.jaas.config",
                module + " required username=\"" + user + "\" password=\"" + pw + "\";");
        return p;
    }

    static void check(boolean ok, String what) {
        if (!ok) throw new AssertionError(what);
        System.out.println("ok: " + what);
    }

    /** A producer that must fail to authenticate; returns the exception's class. */
    static Throwable failedSend(Properties p, String topic) throws Exception {
        p.put("max.block.ms", "10000");
        p.put("enable.idempotence", "false");
        try (Producer<String, String> pr =
                     new KafkaProducer<>(p, new StringSerializer(), new StringSerializer())) {
            pr.send(new ProducerRecord<>(topic, "k", "should-not-exist")).get();
        } catch (ExecutionException e) {
            return e.getCause();
        } catch (KafkaException e) {
            return e;
        }
        return null;
    }

    static List<String> readAll(Properties p, String topic, int want) {
        p.put("enable.auto.commit", "false");
        List<String> got = new ArrayList<>();
        try (Consumer<String, String> c =
                     new KafkaConsumer<>(p, new StringDeserializer(), new StringDeserializer())) {
            TopicPartition tp = new TopicPartition(topic, 0);
            c.assign(List.of(tp));
            c.seekToBeginning(List.of(tp));
            long deadline = System.currentTimeMillis() + 30000;
            while (got.size() < want && System.currentTimeMillis() < deadline) {
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500)))
                    got.add(r.value());
            }
            // keep polling past a session lifetime: the client re-authenticates (KIP-368)
            long end = System.currentTimeMillis() + 6000;
            while (System.currentTimeMillis() < end)
                for (ConsumerRecord<String, String> r : c.poll(Duration.ofMillis(500)))
                    got.add(r.value());
        }
        return got;
    }

    public static void main(String[] args) throws Exception {
        String bootstrap = args[0];
        Path tmp = Path.of(args[1]);
        ToolRunner.trapExit(false);
        Path adminCfg = tmp.resolve("admin.properties");
        Files.writeString(adminCfg, "security.protocol=SASL_PLAINTEXT\nsasl.mechanism=PLAIN\n"
                + "sasl.jaas.config=" + PLAIN
                + " required username=\"admin\" password=\"admin-secret\";\n");

        ToolResult r = ToolRunner.run("kafka-configs ", kafka.admin.ConfigCommand::main,
                "--bootstrap-server", bootstrap, "--command-config", adminCfg.toString(),
                "--alter", "--add-config", "SCRAM-SHA-512=[password=alice-secret]",
                "--entity-type", "users", "--entity-name", "alice");
        check(r.status == 0 && r.out.contains("Completed updating config for user alice"),
                "kafka-configs created the SCRAM-SHA-512 user alice");

        Properties ap = sasl(bootstrap, "PLAIN", "admin", "admin-secret");
        try (Admin admin = Admin.create(ap)) {
            UserScramCredentialsDescription d =
                    admin.describeUserScramCredentials(List.of("alice")).description("alice").get();
            check(d.credentialInfos().size() == 1
                            && d.credentialInfos().get(0).mechanism() == ScramMechanism.SCRAM_SHA_512
                            && d.credentialInfos().get(0).iterations() == 4096,
                    "describeUserScramCredentials: alice has SCRAM-SHA-512, 4096 iterations");
            try {
                admin.describeUserScramCredentials(List.of("nobody")).description("nobody").get();
                check(false, "describe of an unknown user fails");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof ResourceNotFoundException,
                        "describe of an unknown user: ResourceNotFoundException");
            }
            try {
                admin.alterUserScramCredentials(List.of(new UserScramCredentialUpsertion("carol",
                        new ScramCredentialInfo(ScramMechanism.SCRAM_SHA_256, 1000), "pw")))
                        .all().get();
                check(false, "too few iterations refused");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof UnacceptableCredentialException,
                        "1000 iterations: UnacceptableCredentialException");
            }
            try {
                admin.alterUserScramCredentials(List.of(new UserScramCredentialDeletion("nobody",
                        ScramMechanism.SCRAM_SHA_256))).all().get();
                check(false, "deleting a missing credential refused");
            } catch (ExecutionException e) {
                check(e.getCause() instanceof ResourceNotFoundException,
                        "deleting a missing credential: ResourceNotFoundException");
            }
            admin.createTopics(List.of(new NewTopic("sasl-java", 1, (short) 1))).all().get();
        }

        Properties pp = sasl(bootstrap, "SCRAM-SHA-512", "alice", "alice-secret");
        pp.put("acks", "all");
        List<String> sent = new ArrayList<>();
        try (Producer<String, String> pr =
                     new KafkaProducer<>(pp, new StringSerializer(), new StringSerializer())) {
            for (int i = 0; i < 50; i++) {
                pr.send(new ProducerRecord<>("sasl-java", 0, "k" + i, "v" + i)).get();
                sent.add("v" + i);
            }
        }
        check(true, "alice produced 50 records with SCRAM-SHA-512 (idempotent, acks=all)");
        List<String> got = readAll(sasl(bootstrap, "SCRAM-SHA-512", "alice", "alice-secret"),
                "sasl-java", sent.size());
        check(got.equals(sent), "alice read back the 50 records across a re-authentication");

        Throwable t = failedSend(sasl(bootstrap, "SCRAM-SHA-512", "alice", "wrong"), "sasl-java");
        check(t instanceof SaslAuthenticationException, "wrong password: " + t);
        t = failedSend(sasl(bootstrap, "SCRAM-SHA-512", "mallory", "x"), "sasl-java");
        check(t instanceof SaslAuthenticationException, "unknown user: " + t);
        Properties ob = sasl(bootstrap, "OAUTHBEARER", "alice", "x");
        ob.put("sasl.jaas.config", "org.apache.kafka.common.security.oauthbearer."
                + "OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"alice\";");
        t = failedSend(ob, "sasl-java");
        check(t instanceof UnsupportedSaslMechanismException, "mechanism not enabled: " + t);
        got = readAll(sasl(bootstrap, "PLAIN", "admin", "admin-secret"), "sasl-java", sent.size());
        check(got.equals(sent), "the failed clients wrote nothing");

        r = ToolRunner.run("kafka-configs ", kafka.admin.ConfigCommand::main,
                "--bootstrap-server", bootstrap, "--command-config", adminCfg.toString(),
                "--alter", "--delete-config", "SCRAM-SHA-512",
                "--entity-type", "users", "--entity-name", "alice");
        check(r.status == 0, "kafka-configs deleted alice's SCRAM-SHA-512 credential");
        t = failedSend(sasl(bootstrap, "SCRAM-SHA-512", "alice", "alice-secret"), "sasl-java");
        check(t instanceof SaslAuthenticationException, "deleted user cannot log in: " + t);
        System.out.println("SaslSuite: passed");
        System.exit(0);
    }
}
