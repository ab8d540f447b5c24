// franz_etl: franz-go's transactional ETL (consume-transform-produce with exactly-once) against
// laminar, the way franz-go's own EOS example does it: a kgo.GroupTransactSession with a
// transactional id, a consumer group, read_committed fetches and RequireStableFetchOffsets
// (KIP-447). Each poll (at most -batch records) is one transaction: Begin, one output record per
// input record (same key, value "out-" + the input value), End(ctx, TryCommit), which sends the
// consumed offsets to the transaction and commits (or aborts when the group rebalanced or a
// produce failed; the session then rewinds to the committed offsets and the input is read again).
//
//	franz_etl etl BOOTSTRAP[,BOOTSTRAP...] [-in T] [-out T] [-group G] [-txn-id ID] [-batch N]
//	          [-abort-every K] [-pause-ms MS] [-txn-timeout-s S] [-deadline-s S] [-debug]
//	          [-end-offsets O0,O1,...]
//
// -abort-every K ends every K-th transaction with TryAbort on purpose (its records are in the
// output log, flushed, but must stay invisible to read_committed, and its input is processed
// again). -pause-ms sleeps between flushing a transaction's records and ending it, so a SIGKILL
// sent on the "open" line lands in an open transaction. -debug: franz-go's debug log on stderr.
//
// It stops when the group's committed offsets (OffsetFetch, from the broker) reach the end
// offsets the input had when it started (or those given with -end-offsets), or fails at the deadline. One JSON line per event on
// stdout: {"event":"open"|"commit"|"abort"|"done", ...}; a "FAIL: ..." line and exit 1 on an
// error.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

func emit(ev map[string]any) {
	b, err := json.Marshal(ev)
	if err != nil {
		panic(err)
	}
	fmt.Println(string(b))
}

func must(err error, what string) {
	if err != nil {
		fmt.Printf("FAIL: %s: %v\n", what, err)
		os.Exit(1)
	}
}

// caughtUp says whether group's committed offsets on topic are at ends (every partition).
func caughtUp(ctx context.Context, adm *kadm.Client, group, topic string,
	ends map[int32]int64) bool {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return false
	}
	for p, end := range ends {
		o, found := offs.Lookup(topic, p)
		if !found || o.Err != nil || o.At != end {
			return false
		}
	}
	return true
}

func main() {
	if len(os.Args) < 3 || os.Args[1] != "etl" {
		fmt.Println("usage: franz_etl etl BOOTSTRAP [flags]")
		os.Exit(2)
	}
	// a comma-separated list: every node of a cluster as seeds (any one may be down)
	bootstrap := strings.Split(os.Args[2], ",")
	fl := flag.NewFlagSet("etl", flag.ExitOnError)
	in := fl.String("in", "etl-in", "input topic")
	out := fl.String("out", "etl-out", "output topic")
	group := fl.String("group", "etl-group", "consumer group")
	txnID := fl.String("txn-id", "etl-txn", "transactional id")
	batch := fl.Int("batch", 50, "records per transaction at most")
	abortEvery := fl.Int("abort-every", 0, "abort every K-th transaction (0: never)")
	pauseMs := fl.Int("pause-ms", 0, "sleep between flushing and ending a transaction")
	txnTimeoutS := fl.Int("txn-timeout-s", 60, "transaction timeout")
	deadlineS := fl.Int("deadline-s", 120, "give up after this long")
	debug := fl.Bool("debug", false, "franz-go's debug log on stderr")
	endOffsets := fl.String("end-offsets", "", "the input's end offset of each partition, "+
		"comma-separated (default: its end offsets at the start)")
	must(fl.Parse(os.Args[3:]), "flags")

	ctx := context.Background()
	t0 := time.Now()
	deadline := t0.Add(time.Duration(*deadlineS) * time.Second)

	admCl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap...))
	must(err, "admin client")
	defer admCl.Close()
	adm := kadm.NewClient(admCl)
	ends := map[int32]int64{}
	if *endOffsets != "" {
		// given: on a cluster a partition's later end may be past its last record (a new
		// leader's control batch), where the group's committed offset never goes
		for i, o := range strings.Split(*endOffsets, ",") {
			n, err := strconv.ParseInt(o, 10, 64)
			must(err, "-end-offsets")
			ends[int32(i)] = n
		}
	} else {
		listed, err := adm.ListEndOffsets(ctx, *in)
		must(err, "ListEndOffsets")
		must(listed.Error(), "ListEndOffsets")
		listed.Each(func(e kadm.ListedOffset) { ends[e.Partition] = e.Offset })
	}

	opts := []kgo.Opt{
		kgo.SeedBrokers(bootstrap...),
		kgo.TransactionalID(*txnID),
		kgo.TransactionTimeout(time.Duration(*txnTimeoutS) * time.Second),
		kgo.DefaultProduceTopic(*out),
		kgo.ConsumerGroup(*group),
		kgo.ConsumeTopics(*in),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.RequireStableFetchOffsets(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6 * time.Second),
		kgo.HeartbeatInterval(500 * time.Millisecond),
		kgo.FetchMaxWait(500 * time.Millisecond),
	}
	if *debug {
		opts = append(opts, kgo.WithLogger(kgo.BasicLogger(os.Stderr, kgo.LogLevelDebug, nil)))
	}
	sess, err := kgo.NewGroupTransactSession(opts...)
	must(err, "NewGroupTransactSession")
	defer sess.Close()

	var txns, commits, aborts, records, beginRetries int
	for {
		if time.Now().After(deadline) {
			fmt.Printf("FAIL: deadline: %d transactions committed, %d aborted, %d records\n",
				commits, aborts, records)
			os.Exit(1)
		}
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		fs := sess.PollRecords(pctx, *batch)
		cancel()
		if fs.IsClientClosed() {
			fmt.Println("FAIL: client closed")
			os.Exit(1)
		}
		for _, fe := range fs.Errors() {
			if !errors.Is(fe.Err, context.DeadlineExceeded) {
				emit(map[string]any{"event": "fetch_error", "topic": fe.Topic,
					"partition": fe.Partition, "error": fe.Err.Error()})
			}
		}
		n := fs.NumRecords()
		if n == 0 {
			if caughtUp(ctx, adm, *group, *in, ends) {
				break
			}
			continue
		}
		// The first Begin initializes the producer id (InitProducerID). A predecessor's open
		// transaction makes the coordinator abort it and answer CONCURRENT_TRANSACTIONS, as
		// Kafka does; franz-go returns that from Begin and tries again on the next Begin.
		for tries := 1; ; tries++ {
			err := sess.Begin()
			if err == nil {
				break
			}
			if !errors.Is(err, kerr.ConcurrentTransactions) || tries == 100 {
				must(err, fmt.Sprintf("Begin (try %d)", tries))
			}
			beginRetries++
			time.Sleep(100 * time.Millisecond)
		}
		txns++
		e := kgo.AbortingFirstErrPromise(sess.Client())
		fs.EachRecord(func(r *kgo.Record) {
			v := append([]byte("out-"), r.Value...)
			sess.Produce(ctx, &kgo.Record{Key: r.Key, Value: v}, e.Promise())
		})
		// The records reach the output log before the transaction ends: an aborted (or killed)
		// transaction leaves them there, where only read_uncommitted may see them.
		must(sess.Client().Flush(ctx), "Flush")
		emit(map[string]any{"event": "open", "txn": txns, "records": n})
		if *pauseMs > 0 {
			time.Sleep(time.Duration(*pauseMs) * time.Millisecond)
		}
		asked := *abortEvery > 0 && txns%*abortEvery == 0
		try := kgo.TryCommit
		if asked || e.Err() != nil {
			try = kgo.TryAbort
		}
		committed, err := sess.End(ctx, try)
		must(err, "End")
		if committed {
			commits++
			records += n
			emit(map[string]any{"event": "commit", "txn": txns, "records": n,
				"total": records})
		} else {
			aborts++
			perr := ""
			if e.Err() != nil {
				perr = e.Err().Error()
			}
			emit(map[string]any{"event": "abort", "txn": txns, "records": n, "asked": asked,
				"produce_error": perr})
		}
	}
	secs := time.Since(t0).Seconds()
	emit(map[string]any{"event": "done", "commits": commits, "aborts": aborts,
		"records": records, "begin_retries": beginRetries, "seconds": secs})
}
