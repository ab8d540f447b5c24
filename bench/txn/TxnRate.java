/*
 * A transactional producer in a closed loop, one transaction after the other, for bench/txn/run.
 *
 *     java -cp 'bench/kafka-ref/lib/*:BUILD' TxnRate --bootstrap HOST:PORT --topic T
 *          [--shape a|b] [--seconds D | --txns N] [--warmup W] [--partitions 4] [--size 1024]
 *          [--linger 0] [--tid ID] [--create] [--flush] [--label NAME] [--max-aborts 100]
 *          [--prop KEY=VALUE]...
 *
 * Shapes: a = 1 record of --size bytes per transaction, to partition 0; b = 100 records of
 * --size bytes per transaction, round-robin over partitions 0..--partitions-1 (25 each with 4);
 * iN = a commit interval of N ms: records of --size bytes sent as fast as the client takes them,
 * round-robin over the partitions, and the transaction committed once N ms have passed since
 * it began (records= counts what was committed; the issue's "transactional throughput at 1, 10,
 * 100 ms commit intervals").
 * The producer: transactional.id (default: txbench-<shape>-<random>), enable.idempotence=true,
 * acks=all, linger.ms=--linger (0), byte[] values, no keys, the client's defaults otherwise
 * (--prop adds or overrides any producer setting).
 *
 * With --create the topic is created first (--partitions partitions, replication factor 1; an
 * existing one is kept). The broker's finalized transaction.version (Admin.describeFeatures) is
 * printed; a Java client 4.x uses version 2 (KIP-890 part 2) when the broker finalizes it.
 * initTransactions, then --warmup seconds of transactions that are not counted, then the
 * measured window: --seconds of transactions (or --txns transactions). Per transaction the time
 * from beginTransaction() to commitTransaction() returning ("txn", sends included), and the
 * time commitTransaction() alone took ("commit": the flush of the last sends and EndTxn). With
 * --flush, producer.flush() comes before commitTransaction(), which is then EndTxn alone: the
 * Java client 4.1 can otherwise send EndTxn before a transaction's first batches when its
 * sender thread checks for incomplete batches just before the application appends them and
 * commits (seen against laminar, whose fast answers make that window likely: EndTxn then meets
 * the previous transaction's state and is refused as INVALID_TXN_STATE or PRODUCER_FENCED).
 * Prints one line
 *
 *     RESULT label=.. shape=a txns=N records=R seconds=S txn_s=.. records_s=.. txn_p50_ms=..
 *            txn_p99_ms=.. txn_max_ms=.. commit_p50_ms=.. commit_p99_ms=.. commit_max_ms=..
 *            aborted=0 attempts=.. open_partitions=0 tv=2 producer_id=.. epoch=..
 *
 * (attempts: transactions begun, warm-up included; open_partitions: partitions whose last stable
 * offset, ListOffsets with read_committed, is still below their end offset 10 s after the
 * producer closed, i.e. a transaction left open: an LSO line each; producer_id and epoch as
 * describeTransactions shows them after the window: with transaction.version 2 the coordinator
 * bumps the epoch at every EndTxn). A failed transaction (a send's callback or
 * commitTransaction throwing) prints EXCEPTION lines with the cause chain. An abortable one (as
 * the client classes it: OutOfOrderSequenceException is abortable for a transactional producer)
 * is aborted and counted (aborted=, warm-up included), and the loop goes on, up to --max-aborts (100) of them; a
 * fatal one (ProducerFencedException, InvalidTxnStateException, an authorization error, an
 * unsupported version: abortTransaction then throws too), or more aborts than that, ends the
 * loop: the RESULT line then says status=failed and the exit status is 2. The figures of a run
 * with aborts count committed transactions only, over the whole window. A figure, not a test:
 * nothing is asserted.
 */
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;
import java.util.UUID;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;

import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.AdminClientConfig;
import org.apache.kafka.clients.admin.FinalizedVersionRange;
import org.apache.kafka.clients.admin.ListOffsetsResult;
import org.apache.kafka.clients.admin.ListOffsetsOptions;
import org.apache.kafka.clients.admin.NewTopic;
import org.apache.kafka.clients.admin.OffsetSpec;
import org.apache.kafka.clients.admin.TransactionDescription;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.TopicPartition;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.InvalidTxnStateException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TopicExistsException;
import org.apache.kafka.common.errors.UnsupportedVersionException;
import org.apache.kafka.common.serialization.ByteArraySerializer;

public class TxnRate {
    static String bootstrap, topic, shape = "a", tid, label = "?";
    static double seconds = 10, warmup = 0;
    static long txnLimit = 0, maxAborts = 100;
    static int partitions = 4, size = 1024, linger = 0;
    static boolean create, flush;
    static final List<String[]> props = new ArrayList<>();

    /* Nanosecond samples, growable. */
    static final class Samples {
        long[] v = new long[1 << 14];
        int n;

        void add(long x) {
            if (n == v.length)
                v = Arrays.copyOf(v, n * 2);
            v[n++] = x;
        }

        /* Nearest-rank percentile in milliseconds; -1 when empty. */
        double pct(double p) {
            if (n == 0)
                return -1;
            long[] s = Arrays.copyOf(v, n);
            Arrays.sort(s);
            int i = (int) Math.ceil(p / 100.0 * n) - 1;
            return s[Math.max(0, Math.min(n - 1, i))] / 1e6;
        }
    }

    static void usage(String why) {
        System.err.println("TxnRate: " + why);
        System.err.println("usage: TxnRate --bootstrap HOST:PORT --topic T [--shape a|b] [--seconds D | --txns N]"
                           + " [--warmup W] [--partitions P] [--size B] [--linger MS] [--tid ID] [--create] [--flush]"
                           + " [--label NAME] [--max-aborts N] [--prop KEY=VALUE]...");
        System.exit(64);
    }

    static void parse(String[] args) {
        for (int i = 0; i < args.length; i++) {
            String a = args[i];
            if (a.equals("--create")) {
                create = true;
                continue;
            }
            if (a.equals("--flush")) {
                flush = true;
                continue;
            }
            if (i + 1 >= args.length)
                usage(a + " needs a value");
            String v = args[++i];
            switch (a) {
            case "--bootstrap": bootstrap = v; break;
            case "--topic": topic = v; break;
            case "--shape": shape = v; break;
            case "--seconds": seconds = Double.parseDouble(v); break;
            case "--txns": txnLimit = Long.parseLong(v); break;
            case "--warmup": warmup = Double.parseDouble(v); break;
            case "--partitions": partitions = Integer.parseInt(v); break;
            case "--size": size = Integer.parseInt(v); break;
            case "--linger": linger = Integer.parseInt(v); break;
            case "--tid": tid = v; break;
            case "--label": label = v; break;
            case "--max-aborts": maxAborts = Long.parseLong(v); break;
            case "--prop": {
                int eq = v.indexOf('=');
                if (eq <= 0)
                    usage("--prop wants KEY=VALUE, not " + v);
                props.add(new String[] {v.substring(0, eq), v.substring(eq + 1)});
                break;
            }
            default: usage("unknown option " + a);
            }
        }
        if (bootstrap == null || topic == null)
            usage("--bootstrap and --topic are required");
        if (!shape.equals("a") && !shape.equals("b") && !shape.matches("i[1-9][0-9]*"))
            usage("--shape is a, b or iN (a commit interval of N ms)");
        if (partitions < 1 || size < 0 || (seconds <= 0 && txnLimit <= 0) || warmup < 0)
            usage("bad --partitions/--size/--seconds/--txns/--warmup");
        if (tid == null)
            tid = "txbench-" + shape + "-" + UUID.randomUUID().toString().substring(0, 8);
    }

    static int transactionVersion(Admin admin) throws Exception {
        Map<String, FinalizedVersionRange> f = admin.describeFeatures().featureMetadata().get(30, TimeUnit.SECONDS)
                                                    .finalizedFeatures();
        FinalizedVersionRange r = f.get("transaction.version");
        return r == null ? 0 : r.maxVersionLevel();
    }

    static void printCause(String what, Throwable t) {
        System.out.println("EXCEPTION " + what + ": " + t);
        for (Throwable c = t.getCause(); c != null && c != c.getCause(); c = c.getCause())
            System.out.println("EXCEPTION   caused by: " + c);
        System.out.flush();
    }

    static boolean fatal(Throwable t) {
        for (Throwable c = t; c != null; c = c.getCause() == c ? null : c.getCause())
            if (c instanceof ProducerFencedException || c instanceof InvalidTxnStateException
                || c instanceof AuthorizationException || c instanceof UnsupportedVersionException)
                return true;
        return false;
    }

    /* After the producer closed every transaction is complete, so each partition's last stable offset
     * (ListOffsets latest with read_committed) reaches its end (read_uncommitted). Waits up to 10 s
     * for the last markers; prints an LSO line per partition still behind and returns their count. */
    static int openPartitions(Admin admin, int nparts) throws Exception {
        long deadline = System.nanoTime() + 10_000_000_000L;
        while (true) {
            Map<TopicPartition, OffsetSpec> q = new HashMap<>();
            for (int i = 0; i < nparts; i++)
                q.put(new TopicPartition(topic, i), OffsetSpec.latest());
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> leo =
                admin.listOffsets(q, new ListOffsetsOptions(IsolationLevel.READ_UNCOMMITTED)).all().get(30, TimeUnit.SECONDS);
            Map<TopicPartition, ListOffsetsResult.ListOffsetsResultInfo> lso =
                admin.listOffsets(q, new ListOffsetsOptions(IsolationLevel.READ_COMMITTED)).all().get(30, TimeUnit.SECONDS);
            int behind = 0;
            for (TopicPartition tp : q.keySet())
                if (lso.get(tp).offset() < leo.get(tp).offset())
                    behind++;
            if (behind == 0 || System.nanoTime() > deadline) {
                for (TopicPartition tp : q.keySet())
                    if (lso.get(tp).offset() < leo.get(tp).offset())
                        System.out.println("LSO " + tp + ": last stable offset " + lso.get(tp).offset()
                                           + " < end offset " + leo.get(tp).offset() + " 10 s after the producer closed");
                return behind;
            }
            Thread.sleep(200);
        }
    }

    public static void main(String[] args) throws Exception {
        parse(args);
        Properties ap = new Properties();
        ap.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        int tv;
        try (Admin admin = Admin.create(ap)) {
            if (create) {
                try {
                    admin.createTopics(List.of(new NewTopic(topic, partitions, (short) 1))).all().get(60, TimeUnit.SECONDS);
                } catch (ExecutionException e) {
                    if (!(e.getCause() instanceof TopicExistsException))
                        throw e;
                }
            }
            tv = transactionVersion(admin);
        }
        System.out.println("FEATURES transaction.version=" + tv + " (finalized by the broker; the client uses 2 when it is 2)");

        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, bootstrap);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, tid);
        p.put(ProducerConfig.ENABLE_IDEMPOTENCE_CONFIG, "true");
        p.put(ProducerConfig.ACKS_CONFIG, "all");
        p.put(ProducerConfig.LINGER_MS_CONFIG, Integer.toString(linger));
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, ByteArraySerializer.class.getName());
        for (String[] kv : props)
            p.put(kv[0], kv[1]);

        int perTxn = shape.equals("a") ? 1 : 100;
        long intervalNs = shape.startsWith("i") ? Long.parseLong(shape.substring(1)) * 1_000_000L : 0;
        int nparts = shape.equals("a") ? 1 : partitions;
        byte[] value = new byte[size];
        for (int i = 0; i < size; i++)
            value[i] = (byte) ('a' + i % 26);

        Samples txnLat = new Samples(), commitLat = new Samples();
        long txns = 0, aborted = 0, attempts = 0, records = 0;
        long winStart = 0, winEnd = 0;
        String status = "ok";
        AtomicReference<Exception> sendError = new AtomicReference<>();
        KafkaProducer<byte[], byte[]> prod = new KafkaProducer<>(p);
        try {
            prod.initTransactions();
            long now = System.nanoTime();
            long warmEnd = now + (long) (warmup * 1e9);
            boolean measuring = warmup == 0;
            if (measuring)
                winStart = now;
            long winDeadline = measuring && seconds > 0 ? winStart + (long) (seconds * 1e9) : Long.MAX_VALUE;
            int part = 0;
            while (true) {
                now = System.nanoTime();
                if (!measuring && now >= warmEnd) {
                    measuring = true;
                    winStart = now;
                    winDeadline = seconds > 0 ? winStart + (long) (seconds * 1e9) : Long.MAX_VALUE;
                }
                if (measuring && (now >= winDeadline || (txnLimit > 0 && txns >= txnLimit)))
                    break;
                long t0 = System.nanoTime();
                attempts++;
                long sent = 0;
                try {
                    prod.beginTransaction();
                    for (int i = 0; intervalNs > 0 ? System.nanoTime() - t0 < intervalNs : i < perTxn; i++) {
                        prod.send(new ProducerRecord<>(topic, part, null, value), (md, e) -> {
                            if (e != null)
                                sendError.compareAndSet(null, e);
                        });
                        part = (part + 1) % nparts;
                        sent++;
                    }
                    if (flush)
                        prod.flush();
                    long t1 = System.nanoTime();
                    prod.commitTransaction();
                    long t2 = System.nanoTime();
                    if (measuring) {
                        txns++;
                        records += sent;
                        txnLat.add(t2 - t0);
                        commitLat.add(t2 - t1);
                        winEnd = t2;
                    }
                } catch (KafkaException e) {
                    Exception se = sendError.getAndSet(null);
                    printCause("transaction " + attempts + (measuring ? " (measured: " + (txns + aborted + 1) + ")" : " (warm-up)"), e);
                    if (se != null)
                        printCause("first failed send", se);
                    if (fatal(e) || (se != null && fatal(se))) {
                        status = "failed";
                        break;
                    }
                    try {
                        prod.abortTransaction();
                        aborted++;
                    } catch (KafkaException e2) {
                        printCause("abortTransaction", e2);
                        status = "failed";
                        break;
                    }
                    if (aborted > maxAborts) {
                        System.out.println("EXCEPTION more than " + maxAborts + " transactions aborted: giving up");
                        status = "failed";
                        break;
                    }
                }
            }
        } catch (KafkaException e) {
            printCause("producer", e);
            status = "failed";
        } finally {
            prod.close(java.time.Duration.ofSeconds(10));
        }

        String pid = "?", epoch = "?";
        int open = -1;
        try (Admin admin = Admin.create(ap)) {
            open = openPartitions(admin, nparts);
        } catch (Exception e) {
            printCause("listOffsets", e);
        }
        try (Admin admin = Admin.create(ap)) {
            TransactionDescription d = admin.describeTransactions(List.of(tid)).all().get(30, TimeUnit.SECONDS).get(tid);
            pid = Long.toString(d.producerId());
            epoch = Integer.toString(d.producerEpoch());
        } catch (Exception e) {
            printCause("describeTransactions", e);
        }

        double secs = winEnd > winStart ? (winEnd - winStart) / 1e9 : 0;
        System.out.printf("RESULT label=%s shape=%s status=%s txns=%d records=%d seconds=%.3f txn_s=%.1f records_s=%.1f"
                          + " txn_p50_ms=%.3f txn_p99_ms=%.3f txn_max_ms=%.3f commit_p50_ms=%.3f commit_p99_ms=%.3f"
                          + " commit_max_ms=%.3f aborted=%d attempts=%d open_partitions=%d tv=%d tid=%s producer_id=%s epoch=%s%n",
                          label, shape, status, txns, records, secs, secs > 0 ? txns / secs : 0.0,
                          secs > 0 ? records / secs : 0.0, txnLat.pct(50), txnLat.pct(99), txnLat.pct(100),
                          commitLat.pct(50), commitLat.pct(99), commitLat.pct(100), aborted, attempts, open, tv, tid, pid, epoch);
        System.out.flush();
        System.exit(status.equals("ok") ? 0 : 2);
    }
}
