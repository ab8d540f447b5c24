// bench_e2e: end-to-end latency at a fixed rate. A producer thread sends fixed-size records (1 KiB
// by default) at -r records/s (50k by default) round-robin over the partitions, each stamped with
// its send time (CLOCK_MONOTONIC, same process); the main thread consumes every partition
// directly (no group) and records now - stamp. Samples from the first -w seconds are discarded.
// The producer starts once the consumer has reached the end of every (empty, fresh) partition, so
// consumer start-up is not measured. Each value carries a sequence number: a record read twice
// is counted as a duplicate and sampled once. Prints p50/p99/p999/max (ms), the sample count and
// the producer's acknowledgement latency; a delivery error, a lost record or exceeding the time
// bound is a failure (exit 1).
//
//   bench_e2e -b 127.0.0.1:9092 -r 50000 -d 5 -l laminar
#include "bench_common.h"
#include "bench_stats.h"

#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define E2E_MAGIC 0x6c616d696e617231ull // "laminar1": marks our records in the value
#define E2E_BATCH 1024

struct e2e_state {
    const struct bench_opts *o;
    rd_kafka_t *producer;
    rd_kafka_topic_t *rkt;
    int partitions;
    int64_t start_ns;   // producer start
    int64_t measure_ns; // samples with a stamp before this are warm-up
    _Atomic int64_t sent;
    _Atomic bool producer_done;
    _Atomic int64_t delivery_errors;
    rd_kafka_resp_err_t first_err;
    int producer_status;
    int64_t *acks_ns; // send-to-acknowledgement time of each measured record (publish latency)
    size_t acks_count, acks_cap;
};

static uint64_t e2e_get_u64(const char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof(v));
    return v;
}

static void e2e_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct e2e_state *st = opaque;
    if (m->err) {
        if (atomic_fetch_add(&st->delivery_errors, 1) == 0)
            st->first_err = m->err;
        return;
    }
    // Delivery reports are served by the producer thread only (rd_kafka_poll and flush there).
    int64_t sent_ns = (int64_t)e2e_get_u64((const char *)m->payload + 8);
    if (sent_ns < st->measure_ns)
        return;
    if (st->acks_count == st->acks_cap) {
        st->acks_cap = st->acks_cap ? st->acks_cap * 2 : 65536;
        int64_t *a = realloc(st->acks_ns, st->acks_cap * sizeof(*a));
        if (!a)
            bench_die("out of memory");
        st->acks_ns = a;
    }
    st->acks_ns[st->acks_count++] = bench_now_ns() - sent_ns;
}

static void e2e_put_u64(char *p, uint64_t v)
{
    memcpy(p, &v, sizeof(v)); // host order: the same process reads it back
}

// Producer thread: sends whatever is due by the schedule (rate x elapsed), then sleeps 1 ms.
static void *e2e_produce(void *arg)
{
    struct e2e_state *st = arg;
    const struct bench_opts *o = st->o;
    char *value = malloc((size_t)o->size_bytes);
    if (!value)
        bench_die("out of memory");
    for (int i = 24; i < o->size_bytes; i++)
        value[i] = (char)(i * 131 + 7);
    int64_t total = (int64_t)((double)o->rate_per_s * (o->warmup_s + o->duration_s));
    int64_t sent = 0;
    while (sent < total && atomic_load(&st->delivery_errors) == 0) {
        int64_t now = bench_now_ns();
        if (bench_left_s(o) <= 0) {
            fprintf(stderr, "e2e: producer ran out of time\n");
            st->producer_status = 1;
            break;
        }
        int64_t due = (int64_t)((double)(now - st->start_ns) * (double)o->rate_per_s / 1e9) + 1;
        if (due > total)
            due = total;
        while (sent < due) {
            e2e_put_u64(value, E2E_MAGIC);
            e2e_put_u64(value + 16, (uint64_t)sent);
            e2e_put_u64(value + 8, (uint64_t)bench_now_ns());
            if (rd_kafka_produce(st->rkt, (int32_t)(sent % st->partitions), RD_KAFKA_MSG_F_COPY,
                                 value, (size_t)o->size_bytes, NULL, 0, NULL) == -1) {
                rd_kafka_resp_err_t e = rd_kafka_last_error();
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    bench_die("e2e produce: %s", rd_kafka_err2str(e));
                rd_kafka_poll(st->producer, 1);
                break;
            }
            sent++;
        }
        atomic_store(&st->sent, sent);
        rd_kafka_poll(st->producer, 0);
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    double left_s = bench_left_s(o);
    if (rd_kafka_flush(st->producer, left_s > 0 ? (int)(left_s * 1000) : 0) != 0) {
        fprintf(stderr, "e2e: producer flush did not finish in time\n");
        st->producer_status = 1;
    }
    atomic_store(&st->sent, sent);
    atomic_store(&st->producer_done, true);
    free(value);
    return NULL;
}

int main(int argc, char **argv)
{
    struct bench_opts o = {.partitions = 16,
                           .size_bytes = 1024,
                           .acks = "1",
                           .rate_per_s = 50000,
                           .warmup_s = 1,
                           .timeout_s = 120};
    bench_opts_parse(&o, argc, argv, "e2e",
                     "Defaults: -r 50000 -d 5 -w 1, acks=1; -n N means -d N/rate.\n");
    if (o.rate_per_s <= 0)
        bench_die("e2e: -r must be positive");
    if (o.records > 0)
        o.duration_s = (double)o.records / (double)o.rate_per_s;
    if (o.duration_s <= 0)
        o.duration_s = 5;

    struct e2e_state st = {.o = &o};
    char timeout_ms[32];
    snprintf(timeout_ms, sizeof(timeout_ms), "%d", (int)(o.timeout_s * 1000));
    // linger.ms=1 as OpenMessaging Benchmark's Kafka driver uses for latency runs, and at most 5
    // requests in flight per connection, the Java producer's default (librdkafka's is 10^6): with
    // a backlog, batches then grow instead of tiny requests queueing up at the broker, which a
    // broker serving one request per connection at a time (Kafka) suffers from most.
    const char *pkv[] = {"acks",
                         o.acks,
                         "linger.ms",
                         "1",
                         "max.in.flight",
                         "5",
                         "batch.size",
                         "1048576",
                         "compression.type",
                         "none",
                         "enable.idempotence",
                         "false",
                         "message.timeout.ms",
                         timeout_ms,
                         NULL};
    rd_kafka_conf_t *pconf = bench_conf_new(&o, pkv);
    rd_kafka_conf_set_dr_msg_cb(pconf, e2e_on_delivery);
    rd_kafka_conf_set_opaque(pconf, &st);
    char err[512];
    st.producer = rd_kafka_new(RD_KAFKA_PRODUCER, pconf, err, sizeof(err));
    if (!st.producer)
        bench_die("producer: %s", err);
    st.partitions = bench_topic_prepare(st.producer, &o, (int)(bench_left_s(&o) * 1000));
    if (st.partitions < 0)
        bench_die("e2e: topic %s could not be prepared on %s", o.topic, o.bootstrap);
    st.rkt = rd_kafka_topic_new(st.producer, o.topic, NULL);
    if (!st.rkt)
        bench_die("topic: %s", rd_kafka_err2str(rd_kafka_last_error()));

    // The consumer waits for records with a short fetch wait, as a latency-minded consumer would.
    const char *ckv[] = {"enable.partition.eof",
                         "true",
                         "fetch.wait.max.ms",
                         "100",
                         "fetch.error.backoff.ms",
                         "10",
                         "enable.auto.commit",
                         "false",
                         NULL};
    rd_kafka_t *consumer =
        rd_kafka_new(RD_KAFKA_CONSUMER, bench_conf_new(&o, ckv), err, sizeof(err));
    if (!consumer)
        bench_die("consumer: %s", err);
    rd_kafka_topic_t *crkt = rd_kafka_topic_new(consumer, o.topic, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(consumer);
    if (!crkt || !q)
        bench_die("consumer topic: %s", rd_kafka_err2str(rd_kafka_last_error()));
    for (int p = 0; p < st.partitions; p++)
        if (rd_kafka_consume_start_queue(crkt, p, RD_KAFKA_OFFSET_BEGINNING, q) == -1)
            bench_die("consume start [%d]: %s", p, rd_kafka_err2str(rd_kafka_last_error()));

    size_t cap = (size_t)((double)o.rate_per_s * (o.duration_s + 1)) + 1024, count = 0;
    int64_t *samples = malloc(cap * sizeof(*samples));
    rd_kafka_message_t **msgs = calloc(E2E_BATCH, sizeof(*msgs));
    bool *ready = calloc((size_t)st.partitions, sizeof(*ready));
    int64_t total = (int64_t)((double)o.rate_per_s * (o.warmup_s + o.duration_s));
    uint8_t *seen = calloc((size_t)total / 8 + 1, 1); // one bit per record sequence number
    int64_t duplicates = 0;
    if (!samples || !msgs || !ready || !seen)
        bench_die("out of memory");

    int status = 0, ready_count = 0;
    int64_t received = 0, drain_deadline = 0;
    bool started = false;
    pthread_t producer_thread;
    for (;;) {
        if (bench_left_s(&o) <= 0) {
            fprintf(stderr, "e2e: run exceeded its %.0f s bound\n", o.timeout_s);
            status = 1;
            break;
        }
        // Start producing once every partition has been fetched up to its (empty) end.
        if (!started && ready_count == st.partitions) {
            started = true;
            st.start_ns = bench_now_ns();
            st.measure_ns = st.start_ns + (int64_t)(o.warmup_s * 1e9);
            if (pthread_create(&producer_thread, NULL, e2e_produce, &st) != 0)
                bench_die("pthread_create failed");
        }
        if (started && atomic_load(&st.producer_done)) {
            if (received >= atomic_load(&st.sent))
                break;
            int64_t now = bench_now_ns();
            if (drain_deadline == 0)
                drain_deadline = now + 10 * 1000000000ll;
            else if (now > drain_deadline) {
                fprintf(stderr, "e2e: %" PRId64 " of %" PRId64 " records came back\n", received,
                        atomic_load(&st.sent));
                status = 1;
                break;
            }
        }
        ssize_t n = rd_kafka_consume_batch_queue(q, 10, msgs, E2E_BATCH);
        if (n < 0)
            bench_die("e2e consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
        int64_t now = bench_now_ns();
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                if (m->partition >= 0 && m->partition < st.partitions && !ready[m->partition]) {
                    ready[m->partition] = true;
                    ready_count++;
                }
            } else if (m->err) {
                fprintf(stderr, "e2e consume [%d]: %s\n", m->partition, rd_kafka_message_errstr(m));
                status = 1;
            } else if (m->len >= 24 && e2e_get_u64(m->payload) == E2E_MAGIC) {
                int64_t sent_ns = (int64_t)e2e_get_u64((const char *)m->payload + 8);
                uint64_t seq = e2e_get_u64((const char *)m->payload + 16);
                if (seq >= (uint64_t)total) {
                    fprintf(stderr, "e2e: record with sequence %" PRIu64 " never sent\n", seq);
                    status = 1;
                    rd_kafka_message_destroy(m);
                    continue;
                }
                // A record seen twice (a producer retry or a re-fetch) counts once.
                if (seen[seq / 8] & (1u << (seq % 8))) {
                    duplicates++;
                    rd_kafka_message_destroy(m);
                    continue;
                }
                seen[seq / 8] |= (uint8_t)(1u << (seq % 8));
                received++;
                if (sent_ns >= st.measure_ns) {
                    if (count == cap) {
                        cap *= 2;
                        int64_t *ns = realloc(samples, cap * sizeof(*samples));
                        if (!ns)
                            bench_die("out of memory");
                        samples = ns;
                    }
                    samples[count++] = now - sent_ns;
                }
            }
            rd_kafka_message_destroy(m);
        }
        if (status)
            break;
    }
    if (started)
        pthread_join(producer_thread, NULL);
    if (st.producer_status)
        status = 1;
    int64_t errors = atomic_load(&st.delivery_errors);
    if (errors) {
        fprintf(stderr, "e2e: %" PRId64 " delivery errors, first: %s\n", errors,
                rd_kafka_err2str(st.first_err));
        status = 1;
    }
    for (int p = 0; p < st.partitions; p++)
        rd_kafka_consume_stop(crkt, p);

    qsort(samples, count, sizeof(*samples), bench_cmp_i64);
    double p50 = bench_pct_ms(samples, count, 0.50), p99 = bench_pct_ms(samples, count, 0.99);
    double p999 = bench_pct_ms(samples, count, 0.999);
    double max = count ? (double)samples[count - 1] / 1e6 : 0;
    double achieved = (double)atomic_load(&st.sent) / (o.warmup_s + o.duration_s);
    qsort(st.acks_ns, st.acks_count, sizeof(*st.acks_ns), bench_cmp_i64);
    double ack50 = bench_pct_ms(st.acks_ns, st.acks_count, 0.50);
    double ack99 = bench_pct_ms(st.acks_ns, st.acks_count, 0.99);
    printf("RESULT bench=e2e label=%s acks=%s partitions=%d size=%d rate=%" PRId64
           " sent_rate=%.0f samples=%zu p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f"
           " ack_p50_ms=%.3f ack_p99_ms=%.3f duplicates=%" PRId64 " ok=%d\n",
           o.label, o.acks, st.partitions, o.size_bytes, o.rate_per_s, achieved, count, p50, p99,
           p999, max, ack50, ack99, duplicates, status == 0);
    printf("e2e     %-8s %" PRId64
           " rec/s x %d B, acks=%s: p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, "
           "max %.2f ms over %zu samples (produce ack p50 %.2f ms, p99 %.2f ms; %" PRId64
           " duplicates)%s%s\n",
           o.label, o.rate_per_s, o.size_bytes, o.acks, p50, p99, p999, max, count, ack50, ack99,
           duplicates, achieved < 0.95 * (double)o.rate_per_s ? " (rate not reached)" : "",
           status ? " (FAILED)" : "");
    fflush(stdout);

    free(seen);
    free(st.acks_ns);
    free(ready);
    free(msgs);
    free(samples);
    rd_kafka_queue_destroy(q);
    rd_kafka_topic_destroy(crkt);
    rd_kafka_destroy(consumer);
    rd_kafka_topic_destroy(st.rkt);
    rd_kafka_destroy(st.producer);
    return status;
}
