import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.Future;
import org.apache.kafka.clients.producer.KafkaProducer;
import org.apache.kafka.clients.producer.ProducerConfig;
import org.apache.kafka.clients.producer.ProducerRecord;
import org.apache.kafka.clients.producer.RecordMetadata;
import org.apache.kafka.common.KafkaException;
import org.apache.kafka.common.errors.AuthorizationException;
import org.apache.kafka.common.errors.OutOfOrderSequenceException;
import org.apache.kafka.common.errors.ProducerFencedException;
import org.apache.kafka.common.errors.TimeoutException;
import org.apache.kafka.common.serialization.StringSerializer;

/**
 * The Java client's transactional producer committing transactions in a loop while the test
 * kills a node (the transaction coordinator's) under it. Every record's value is a number,
 * counted up over the whole run (an aborted attempt's numbers are not used again); value v goes
 * to partition v % partitions. Each transaction: begin, perTxn records, flush (the records are
 * in the partitions' logs), "OPEN first last", pauseMs, commit. Error handling as the
 * KafkaProducer documentation says: ProducerFencedException, OutOfOrderSequenceException and
 * AuthorizationException are fatal (close, exit 2); any other KafkaException aborts the
 * transaction and the loop tries again with new numbers. A TimeoutException from
 * commitTransaction (or abortTransaction, initTransactions) is retried with the same call, as
 * the client requires.
 *
 * stdout, one line per event:
 *   OPEN first last          a transaction's records are all acknowledged, not yet committed
 *   COMMIT first last        commitTransaction returned: values first..last are committed
 *   ABORT first last error   abortTransaction returned after error: first..last are aborted
 *   RETRY call error         a call timed out and is tried again
 *   DONE commits aborts      exit 0
 *   FATAL error              exit 2 (3 when abortTransaction itself failed)
 *
 *     java -cp lib/*:classes TxnKill host:port[,...] topic transactionalId txns perTxn
 *          partitions pauseMs
 */
public class TxnKill {
    static void say(String s) {
        System.out.println(s);
        System.out.flush();
    }

    static boolean fatal(Throwable e) {
        return e instanceof ProducerFencedException || e instanceof OutOfOrderSequenceException
            || e instanceof AuthorizationException;
    }

    public static void main(String[] args) throws Exception {
        String topic = args[1];
        int txns = Integer.parseInt(args[3]);
        int perTxn = Integer.parseInt(args[4]);
        int parts = Integer.parseInt(args[5]);
        long pauseMs = Long.parseLong(args[6]);
        Properties p = new Properties();
        p.put(ProducerConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
        p.put(ProducerConfig.TRANSACTIONAL_ID_CONFIG, args[2]);
        p.put(ProducerConfig.TRANSACTION_TIMEOUT_CONFIG, 60000);
        p.put(ProducerConfig.MAX_BLOCK_MS_CONFIG, 20000);
        p.put(ProducerConfig.LINGER_MS_CONFIG, 0);
        p.put(ProducerConfig.KEY_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        p.put(ProducerConfig.VALUE_SERIALIZER_CLASS_CONFIG, StringSerializer.class.getName());
        KafkaProducer<String, String> producer = new KafkaProducer<>(p);
        for (int tries = 1; ; tries++) {
            try {
                producer.initTransactions();
                break;
            } catch (TimeoutException e) {
                if (tries == 10)
                    throw e;
                say("RETRY initTransactions " + e);
            }
        }
        long seq = 0;
        int commits = 0, aborts = 0;
        while (commits < txns) {
            long first = seq, last = seq + perTxn - 1;
            seq += perTxn;
            try {
                producer.beginTransaction();
                List<Future<RecordMetadata>> sent = new ArrayList<>();
                for (long v = first; v <= last; v++)
                    sent.add(producer.send(new ProducerRecord<>(topic, (int) (v % parts), null,
                                                                Long.toString(v))));
                producer.flush();
                for (Future<RecordMetadata> f : sent) {
                    try {
                        f.get();
                    } catch (ExecutionException e) {
                        Throwable c = e.getCause();
                        throw c instanceof KafkaException ? (KafkaException) c
                                                          : new KafkaException(c);
                    }
                }
                say("OPEN " + first + " " + last);
                if (pauseMs > 0)
                    Thread.sleep(pauseMs);
                for (int tries = 1; ; tries++) {
                    try {
                        producer.commitTransaction();
                        break;
                    } catch (TimeoutException e) {
                        if (tries == 10)
                            throw e;
                        say("RETRY commitTransaction " + e);
                    }
                }
                commits++;
                say("COMMIT " + first + " " + last);
            } catch (KafkaException e) {
                if (fatal(e) || fatal(e.getCause())) {
                    say("FATAL " + e + (e.getCause() != null ? " cause " + e.getCause() : ""));
                    producer.close();
                    System.exit(2);
                }
                try {
                    for (int tries = 1; ; tries++) {
                        try {
                            producer.abortTransaction();
                            break;
                        } catch (TimeoutException t) {
                            if (tries == 10)
                                throw t;
                            say("RETRY abortTransaction " + t);
                        }
                    }
                } catch (KafkaException a) {
                    say("FATAL abortTransaction after " + e + ": " + a);
                    producer.close();
                    System.exit(3);
                }
                aborts++;
                say("ABORT " + first + " " + last + " " + e.toString().replace('\n', ' '));
            }
        }
        producer.close();
        say("DONE " + commits + " " + aborts);
        System.exit(0);
    }
}
