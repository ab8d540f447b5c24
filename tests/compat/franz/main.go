// franz-go against laminar (issue 5): the default producer (idempotent) writes keyed records,
// then for each balancer (cooperative-sticky, franz-go's default, and range) two consumers of
// one group read every record, each owning a share of the partitions; offsets committed
// (kadm.FetchOffsets = log end), DescribeGroups while Stable, DeleteGroups at the end.
// Usage: franz_check BOOTSTRAP. Exit 0 only when every check passed.
package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

const (
	topic = "franz-topic"
	parts = 4
	n     = 400
)

var failures int

func check(ok bool, what string) {
	if ok {
		fmt.Println("ok: " + what)
	} else {
		fmt.Println("FAIL: " + what)
		failures++
	}
}

func must(err error, what string) {
	if err != nil {
		fmt.Printf("FAIL: %s: %v\n", what, err)
		os.Exit(1)
	}
}

type member struct {
	cl    *kgo.Client
	mu    sync.Mutex
	owned map[int32]bool
}

func group(ctx context.Context, bootstrap string, adm *kadm.Client, name string,
	balancer kgo.GroupBalancer) {
	var mu sync.Mutex
	seen := map[string]bool{}
	var members []*member
	for i := 0; i < 2; i++ {
		m := &member{owned: map[int32]bool{}}
		cl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.ConsumerGroup(name),
			kgo.ConsumeTopics(topic), kgo.Balancers(balancer), kgo.DisableAutoCommit(),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.HeartbeatInterval(500*time.Millisecond),
			kgo.OnPartitionsAssigned(func(_ context.Context, _ *kgo.Client, a map[string][]int32) {
				m.mu.Lock()
				for _, p := range a[topic] {
					m.owned[p] = true
				}
				m.mu.Unlock()
			}),
			kgo.OnPartitionsRevoked(func(ctx context.Context, c *kgo.Client, r map[string][]int32) {
				_ = c.CommitUncommittedOffsets(ctx)
				m.mu.Lock()
				for _, p := range r[topic] {
					delete(m.owned, p)
				}
				m.mu.Unlock()
			}))
		must(err, "consumer client")
		m.cl = cl
		members = append(members, m)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for _, m := range members {
		wg.Add(1)
		go func(m *member) {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				pctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				fs := m.cl.PollFetches(pctx)
				cancel()
				fs.EachRecord(func(r *kgo.Record) {
					mu.Lock()
					seen[string(r.Value)] = true
					mu.Unlock()
				})
			}
		}(m)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		mu.Lock()
		got := len(seen)
		mu.Unlock()
		shared := true
		total := 0
		for _, m := range members {
			m.mu.Lock()
			shared = shared && len(m.owned) > 0
			total += len(m.owned)
			m.mu.Unlock()
		}
		if got == n && shared && total == parts {
			break
		}
		if time.Now().After(deadline) {
			check(false, fmt.Sprintf("%s: read %d of %d, shared=%v total=%d", name, got, n,
				shared, total))
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	check(len(seen) == n, fmt.Sprintf("%s: read all %d records with two members", name, n))
	described, err := adm.DescribeGroups(ctx, name)
	must(err, "DescribeGroups")
	d := described[name]
	check(d.State == "Stable" && len(d.Members) == 2,
		fmt.Sprintf("%s: DescribeGroups %s with %d members", name, d.State, len(d.Members)))
	close(stop)
	wg.Wait()
	for _, m := range members {
		must(m.cl.CommitUncommittedOffsets(ctx), "commit")
		m.cl.Close()
	}
	offs, err := adm.FetchOffsets(ctx, name)
	must(err, "FetchOffsets")
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	check(sum == n, fmt.Sprintf("%s: committed offsets sum %d == %d", name, sum, n))
	del, err := adm.DeleteGroups(ctx, name)
	must(err, "DeleteGroups")
	check(del[name].Err == nil, fmt.Sprintf("%s: DeleteGroups", name))
}

func main() {
	bootstrap := os.Args[1]
	ctx := context.Background()
	admCl, err := kgo.NewClient(kgo.SeedBrokers(bootstrap))
	must(err, "admin client")
	adm := kadm.NewClient(admCl)
	_, err = adm.CreateTopic(ctx, parts, 1, nil, topic)
	must(err, "CreateTopic")

	// Every producer option at its default: idempotent writes, acks=all.
	prod, err := kgo.NewClient(kgo.SeedBrokers(bootstrap), kgo.DefaultProduceTopic(topic))
	must(err, "producer client")
	recs := make([]*kgo.Record, 0, n)
	for i := 0; i < n; i++ {
		recs = append(recs, &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i)),
			Value: []byte(fmt.Sprintf("v%d", i))})
	}
	must(prod.ProduceSync(ctx, recs...).FirstErr(), "ProduceSync")
	prod.Close()
	check(true, fmt.Sprintf("idempotent ProduceSync of %d records", n))
	ends, err := adm.ListEndOffsets(ctx, topic)
	must(err, "ListEndOffsets")
	var total int64
	ends.Each(func(o kadm.ListedOffset) { total += o.Offset })
	check(total == n, fmt.Sprintf("log end offsets sum %d == %d (no duplicates)", total, n))

	group(ctx, bootstrap, adm, "franz-coop", kgo.CooperativeStickyBalancer())
	group(ctx, bootstrap, adm, "franz-range", kgo.RangeBalancer())
	admCl.Close()
	if failures == 0 {
		fmt.Println("ALL OK")
		os.Exit(0)
	}
	fmt.Printf("%d FAILURES\n", failures)
	os.Exit(1)
}
