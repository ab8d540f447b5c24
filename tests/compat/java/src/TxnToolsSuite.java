import java.time.Duration;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.consumer.ConsumerConfig;
import org.apache.kafka.clients.consumer.ConsumerRecord;
import org.apache.kafka.clients.consumer.KafkaConsumer;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.serialization.StringDeserializer;
import org.apache.kafka.common.serialization.StringSerializer;
import org.apache.kafka.tools.TransactionsCommand;

/**
 * Kafka's kafka-transactions tool (TransactionsCommand) against laminar's transaction
 * coordinator and partitions. A child JVM (this class with "open") begins a transaction on
 * tt-0 and tt-1 with a 10-minute timeout and is SIGKILLed with it open; then:
 * list and describe show it Ongoing with both partitions, describe-producers shows its open
 * transaction's start offset, find-hanging does not report it (its coordinator still tracks
 * it), abort --start-offset aborts it on tt-0 long before the timeout so tt-0's last stable
 * offset reaches the high watermark while tt-1's stays at the transaction's start;
 * forceTerminateTransaction then fences the producer, which aborts the rest at the
 * coordinator; a new producer with the same transactional.id commits new records, which a
 * read_committed consumer sees alone. Given the producer id of a hanging transaction the test
 * script wrote on th-0, find-hanging reports it and abort ends it first. Exits 0 when every
 * check passed.
 *
 *     java -cp lib/*:classes TxnToolsSuite host:port [run hangingProducerId]
 */
public class TxnToolsSuite {
    static String bootstrap;

    static void check(boolean cond, String what) {
        if (!cond)
            throw new AssertionError(what);
    }

    static KafkaProducer<String, String> producer(String tid) {
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 30000);
        if (tid != null) {
            p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, tid);
            p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 600000);
        }
        KafkaProducer<String, String> pr = new KafkaProducer<>(p);
        if (tid != null)
            pr.initTransactions();
        return pr;
    }

    static KafkaConsumer<String, String> consumer(String isolation) {
        Properties c = new Properties();
        c.put(ConsumerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        c.put(ConsumerConfig.ISOLATION_LEVEL_CONFIG, isolation);
        c.put(ConsumerConfig.KEY_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        c.put(ConsumerConfig.VALUE_DESERIALIZER_CLASS_CONFIG, StringDeserializer.class.getName());
        return new KafkaConsumer<>(c);
    }

    /** End offsets of tt-0 and tt-1: the high watermark or, read_committed, the LSO. */
    static List<Long> ends(String isolation) {
        return ends("tt", 2, isolation);
    }

    static List<Long> ends(String topic, int partitions, String isolation) {
        try (KafkaConsumer<String, String> c = consumer(isolation)) {
            List<TopicPartition> tps = new ArrayList<>();
            for (int p = 0; p < partitions; p++)
                tps.add(new TopicPartition(topic, p));
            Map<TopicPartition, Long> m = c.endOffsets(tps, Duration.ofSeconds(10));
            List<Long> out = new ArrayList<>();
            for (TopicPartition tp : tps)
                out.add(m.get(tp));
            return out;
        }
    }

    /** Waits up to 20 s for tt's last stable offsets and high watermarks to be lso and hw. */
    static void waitEnds(List<Long> lso, List<Long> hw, String what) throws Exception {
        long until = System.currentTimeMillis() + 20000;
        while (!(ends("read_committed").equals(lso) && ends("read_uncommitted").equals(hw))) {
            check(System.currentTimeMillis() < until, what + ": lso " + ends("read_committed")
                                                          + " hw " + ends("read_uncommitted"));
            Thread.sleep(100);
        }
    }

    /**
     * The hanging transaction the test script wrote on th-0 (producer hangPid, two records at
     * offsets 0-1, never added to a transaction at the coordinator): find-hanging reports it,
     * abort --start-offset 0 ends it, the LSO reaches the high watermark.
     */
    static void hangingTxn(String hangPid) throws Exception {
        check(ends("th", 1, "read_committed").equals(List.of(0L)), "th lso before abort");
        ToolResult r = tool("find-hanging", "--topic", "th", "--max-transaction-timeout", "0");
        check(r.status == 0, "find-hanging th: exit " + r.status);
        List<String[]> l = rows(r, 0, "th");
        check(l.size() == 1 && l.get(0)[1].equals("0") && l.get(0)[2].equals(hangPid)
                  && l.get(0)[5].equals("0"),
              "find-hanging did not report the hanging transaction");
        // --broker-id searches every partition the broker holds
        r = tool("find-hanging", "--broker-id", "1", "--max-transaction-timeout", "0");
        check(r.status == 0, "find-hanging --broker-id: exit " + r.status);
        check(rows(r, 0, "th").size() == 1, "find-hanging --broker-id: th-0 not reported");
        r = tool("abort", "--topic", "th", "--partition", "0", "--start-offset", "0");
        check(r.status == 0, "abort th-0: exit " + r.status);
        check(ends("th", 1, "read_committed").equals(List.of(3L))
                  && ends("th", 1, "read_uncommitted").equals(List.of(3L)),
              "th after abort: lso " + ends("th", 1, "read_committed"));
        r = tool("find-hanging", "--topic", "th", "--max-transaction-timeout", "0");
        check(r.status == 0 && rows(r, 0, "th").isEmpty(), "find-hanging after abort");
        System.out.println("ok: hanging transaction found and aborted (th-0's LSO advanced)");
    }

    static List<String> readCommitted(int expect) {
        List<String> out = new ArrayList<>();
        try (KafkaConsumer<String, String> c = consumer("read_committed")) {
            List<TopicPartition> tps = List.of(new TopicPartition("tt", 0),
                                               new TopicPartition("tt", 1));
            c.assign(tps);
            c.seekToBeginning(tps);
            long deadline = System.currentTimeMillis() + 20000;
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

    static ToolResult tool(String... args) {
        String[] full = new String[args.length + 2];
        full[0] = "--bootstrap-server";
        full[1] = bootstrap;
        System.arraycopy(args, 0, full, 2, args.length);
        return ToolRunner.run("kafka-transactions ", a -> {
            try {
                TransactionsCommand.main(a);
            } catch (RuntimeException e) {
                throw e; // ToolRunner's exit trap
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        }, full);
    }

    /** The rows of a tool's table (tab-separated cells) whose cell `column` is `value`. */
    static List<String[]> rows(ToolResult r, int column, String value) {
        List<String[]> out = new ArrayList<>();
        for (String line : r.out.split("\n")) {
            String[] cells = line.split("\t");
            for (int i = 0; i < cells.length; i++)
                cells[i] = cells[i].trim();
            if (cells.length > column && cells[column].equals(value))
                out.add(cells);
        }
        return out;
    }

    /** The child: opens a transaction on both partitions, reports, waits to be killed. */
    static void openTxn() throws Exception {
        KafkaProducer<String, String> p = producer("tools-killed");
        p.beginTransaction();
        for (int i = 0; i < 4; i++)
            p.send(new ProducerRecord<>("tt", i % 2, null, "killed-" + i)).get();
        System.out.println("OPEN");
        System.out.flush();
        Thread.sleep(600000);
    }

    public static void main(String[] args) throws Exception {
        bootstrap = args[0];
        if (args.length > 1 && args[1].equals("open")) {
            openTxn();
            return;
        }
        String hangPid = args.length > 2 ? args[2] : null;
        ToolRunner.trapExit(false);
        if (hangPid != null)
            hangingTxn(hangPid);
        Properties ap = new Properties();
        ap.put("bootstrap.servers", bootstrap);
        try (Admin admin = Admin.create(ap)) {
            admin.createTopics(List.of(new NewTopic("tt", 2, (short) 1))).all().get();
        }
        // three committed records before the open transaction: it starts at offset 3 on tt-0
        // (two records and a commit marker) and 2 on tt-1 (one record and a marker)
        try (KafkaProducer<String, String> p = producer("tools-first")) {
            p.beginTransaction();
            for (int i = 0; i < 3; i++)
                p.send(new ProducerRecord<>("tt", i % 2, null, "first-" + i));
            p.commitTransaction();
        }
        String cp = System.getProperty("java.class.path");
        Process child = new ProcessBuilder("java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
                                           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                                           "-cp", cp, "TxnToolsSuite", bootstrap, "open")
                            .redirectErrorStream(true)
                            .start();
        var in = new java.io.BufferedReader(new java.io.InputStreamReader(child.getInputStream()));
        String line;
        boolean open = false;
        while ((line = in.readLine()) != null) {
            System.out.println("  child: " + line);
            if (line.equals("OPEN")) {
                open = true;
                break;
            }
        }
        check(open, "the child producer did not open its transaction");
        child.destroyForcibly(); // SIGKILL
        check(child.waitFor(20, TimeUnit.SECONDS), "child not dead");
        System.out.println("ok: child producer SIGKILLed with its transaction open");

        // the first transaction's markers may still be on their way (EndTxn does not wait)
        waitEnds(List.of(3L, 2L), List.of(5L, 4L), "with the transaction open");

        ToolResult r = tool("list");
        check(r.status == 0, "list: exit " + r.status);
        List<String[]> l = rows(r, 0, "tools-killed");
        check(l.size() == 1 && l.get(0)[3].equals("Ongoing"), "list: tools-killed not Ongoing");
        String pid = l.get(0)[2];
        check(rows(r, 0, "tools-first").size() == 1, "list: tools-first missing");

        r = tool("describe", "--transactional-id", "tools-killed");
        check(r.status == 0, "describe: exit " + r.status);
        l = rows(r, 1, "tools-killed");
        check(l.size() == 1, "describe: no row");
        String[] d = l.get(0);
        check(d[2].equals(pid) && d[4].equals("Ongoing") && d[5].equals("600000"),
              "describe: " + String.join("|", d));
        check(d[8].contains("tt-0") && d[8].contains("tt-1"), "describe partitions: " + d[8]);
        check(!d[6].equals("None") && Long.parseLong(d[7]) >= 0, "describe start time: " + d[6]);

        r = tool("describe", "--transactional-id", "no-such-id");
        check(r.status == 1, "describe of an unknown id: exit " + r.status);

        r = tool("describe-producers", "--topic", "tt", "--partition", "0");
        check(r.status == 0, "describe-producers: exit " + r.status);
        l = rows(r, 0, pid);
        check(l.size() == 1 && l.get(0)[5].equals("3"),
              "describe-producers: the killed producer's start offset");
        String epoch = l.get(0)[1];

        // the coordinator still tracks the transaction (it would abort it on timeout): Kafka's
        // tool calls it hanging only when the coordinator does not list the partition
        r = tool("find-hanging", "--topic", "tt", "--max-transaction-timeout", "0");
        check(r.status == 0, "find-hanging: exit " + r.status);
        check(rows(r, 0, "tt").isEmpty(), "find-hanging reported a tracked transaction");

        r = tool("abort", "--topic", "tt", "--partition", "0", "--start-offset", "7");
        check(r.status == 1, "abort at an offset with no transaction: exit " + r.status);
        r = tool("abort", "--topic", "tt", "--partition", "0", "--start-offset", "3");
        check(r.status == 0, "abort: exit " + r.status);
        // tt-0: the aborted records and the abort marker; tt-1 still open
        check(ends("read_committed").equals(List.of(6L, 2L)), "lso " + ends("read_committed"));
        check(ends("read_uncommitted").equals(List.of(6L, 4L)), "hw " + ends("read_uncommitted"));
        r = tool("describe-producers", "--topic", "tt", "--partition", "0");
        l = rows(r, 0, pid);
        check(l.size() == 1 && l.get(0)[5].equals("None"),
              "describe-producers after abort: transaction still open on tt-0");
        r = tool("describe-producers", "--topic", "tt", "--partition", "1");
        l = rows(r, 0, pid);
        check(l.size() == 1 && l.get(0)[5].equals("2") && l.get(0)[1].equals(epoch),
              "describe-producers tt-1");
        System.out.println("ok: kafka-transactions abort (tt-0's LSO advanced)");

        // forceTerminateTransaction fences the producer (an epoch bump through InitProducerId)
        // and so aborts what is left of its transaction at the coordinator: tt-1 too
        r = tool("forceTerminateTransaction", "--transactionalId", "tools-killed");
        check(r.status == 0, "forceTerminateTransaction: exit " + r.status);
        long deadline = System.currentTimeMillis() + 20000;
        while (!ends("read_committed").equals(ends("read_uncommitted"))) {
            check(System.currentTimeMillis() < deadline,
                  "after forceTerminateTransaction: lso " + ends("read_committed") + " hw "
                      + ends("read_uncommitted"));
            Thread.sleep(100);
        }
        r = tool("describe", "--transactional-id", "tools-killed");
        l = rows(r, 1, "tools-killed");
        // aborted with the epoch bumped twice (the fence, then the end of a transaction
        // version 2 transaction), then the fencing InitProducerId's own bump: Empty
        check(l.size() == 1 && l.get(0)[4].equals("Empty")
                  && Integer.parseInt(l.get(0)[3]) == Integer.parseInt(epoch) + 3,
              "describe after forceTerminateTransaction: " + r.out);
        System.out.println("ok: kafka-transactions forceTerminateTransaction (tt-1's LSO advanced)");

        // a new instance of the id starts from there
        try (KafkaProducer<String, String> p = producer("tools-killed")) {
            p.beginTransaction();
            p.send(new ProducerRecord<>("tt", 0, null, "next-0"));
            p.send(new ProducerRecord<>("tt", 1, null, "next-1"));
            p.commitTransaction();
        }
        // commitTransaction returns once the coordinator has logged PrepareCommit; the markers
        // follow. Each partition ends with: tt-0 the first transaction (3), the killed
        // producer's records (2), the tool's abort marker, the coordinator's abort marker,
        // next-0 and its commit marker; tt-1 likewise without the tool's marker.
        waitEnds(List.of(9L, 7L), List.of(9L, 7L), "after the commit");
        List<String> got = readCommitted(5);
        check(got.equals(List.of("first-0", "first-1", "first-2", "next-0", "next-1")),
              "read_committed saw " + got);
        r = tool("describe", "--transactional-id", "tools-killed");
        l = rows(r, 1, "tools-killed");
        // the successor's InitProducerId bump, then its commit's (transaction version 2, as a
        // new cluster finalizes it: every EndTxn bumps the epoch)
        check(l.size() == 1 && l.get(0)[4].equals("CompleteCommit")
                  && Integer.parseInt(l.get(0)[3]) == Integer.parseInt(epoch) + 5,
              "describe after the successor: " + r.out);
        System.out.println("TxnToolsSuite: all ok");
    }
}
