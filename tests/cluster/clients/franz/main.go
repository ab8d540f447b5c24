// franz-go for test_clients.py: a producer or a group consumer speaking the line protocol
// described in ../pyclients.py.
//
//	franz_failover produce BOOTSTRAP TOPIC PREFIX  (franz-go's default idempotent producer, acks=all)
//	franz_failover consume BOOTSTRAP TOPIC GROUP   (CommitUncommittedOffsets after each poll)
//
// Both finish when stdin closes.
package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var outMu sync.Mutex
var out = bufio.NewWriter(os.Stdout)

func say(format string, args ...any) {
	outMu.Lock()
	defer outMu.Unlock()
	fmt.Fprintf(out, format+"\n", args...)
	out.Flush()
}

// watchStdin returns a channel closed when stdin reaches EOF (the driver asks us to finish).
func watchStdin() chan struct{} {
	done := make(chan struct{})
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	return done
}

func oneLine(err error) string { return strings.ReplaceAll(err.Error(), "\n", " ") }

func produce(seeds []string, topic, prefix string, done chan struct{}) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(5*time.Millisecond), kgo.RecordDeliveryTimeout(120*time.Second),
		kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		say("FATAL %v", err)
		os.Exit(2)
	}
	seq := 0
	tick := time.NewTicker(10 * time.Millisecond)
loop:
	for {
		select {
		case <-done:
			break loop
		case <-tick.C:
		}
		v := fmt.Sprintf("%s-%07d", prefix, seq)
		seq++
		cl.Produce(context.Background(), &kgo.Record{Topic: topic, Key: []byte(v), Value: []byte(v)},
			func(r *kgo.Record, err error) {
				if err != nil {
					say("NACK %s %s", v, oneLine(err))
				} else {
					say("ACK %s %d %d", v, r.Partition, r.Offset)
				}
			})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	if err := cl.Flush(ctx); err != nil {
		say("FLUSHFAIL %s", oneLine(err))
	}
	cl.Close()
	say("DONE sent=%d", seq)
}

func consume(seeds []string, topic, group string, done chan struct{}) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...), kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(10*time.Second), kgo.HeartbeatInterval(500*time.Millisecond),
		kgo.MetadataMinAge(250*time.Millisecond), kgo.MetadataMaxAge(time.Second))
	if err != nil {
		say("FATAL %v", err)
		os.Exit(2)
	}
	for {
		select {
		case <-done:
			commit(cl)
			cl.LeaveGroup()
			cl.Close()
			say("DONE")
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		fs := cl.PollFetches(ctx)
		cancel()
		fs.EachError(func(t string, p int32, err error) {
			if err != context.DeadlineExceeded {
				say("INFO fetch error %s %d %s", t, p, oneLine(err))
			}
		})
		n := 0
		fs.EachRecord(func(r *kgo.Record) {
			say("READ %s %d %d", r.Value, r.Partition, r.Offset)
			n++
		})
		if n > 0 {
			commit(cl)
		}
	}
}

// commit commits what was polled and waits; prints each partition the coordinator
// acknowledged (COMMITTED) or refused (COMMITFAIL).
func commit(cl *kgo.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cl.CommitOffsetsSync(ctx, cl.UncommittedOffsets(),
		func(_ *kgo.Client, req *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse,
			err error) {
			if err != nil {
				say("COMMITFAIL %s", oneLine(err))
				return
			}
			sent := map[int32]int64{}
			for _, t := range req.Topics {
				for _, p := range t.Partitions {
					sent[p.Partition] = p.Offset
				}
			}
			for _, t := range resp.Topics {
				for _, p := range t.Partitions {
					if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
						say("COMMITFAIL %d %s", p.Partition, oneLine(e))
					} else {
						say("COMMITTED %d %d", p.Partition, sent[p.Partition])
					}
				}
			}
		})
}

func main() {
	mode, seeds, topic, arg := os.Args[1], strings.Split(os.Args[2], ","), os.Args[3], os.Args[4]
	done := watchStdin()
	if mode == "produce" {
		produce(seeds, topic, arg, done)
	} else {
		consume(seeds, topic, arg, done)
	}
}
