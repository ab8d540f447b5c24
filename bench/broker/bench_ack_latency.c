// bench_ack_latency: produce acknowledgement latency at a fixed rate, producer only. Sends -r
// records/s (5000 by default) of -s bytes round-robin over the partitions for -w s of warm-up
// and -d s of measurement; each record's latency runs from its scheduled send time (start +
// seq / rate, so a producer that falls behind its schedule is charged for it rather than
// hiding it) to its delivery report. A second thread serves delivery reports, so a report is
// timed when librdkafka has it, not at the next turn of the send loop.
//
// The rate is "sustained" when the acknowledgements that arrived during the measured window
// number at least 97% of the asked rate times the window (a broker that falls behind answers
// fewer per second than asked while its backlog grows) and, at the window's end, less than one
// second's worth of records is still unacknowledged (a broker still draining the warm-up's
// backlog answers more than asked while far behind). Both backlogs, at the window's start and
// end, are printed in seconds of the rate, and so is the sender's worst lag behind its schedule
// (send_lag_max_ms: the client's own share, e.g. a busy machine, which the latencies include
// since they start at the scheduled time). Percentiles are printed either way; a caller must
// not present them as the latency at the asked rate when sustained=0. A delivery error or
// exceeding -T is a failure (exit 1).
//
//   bench_ack_latency -b 127.0.0.1:9092 -a all -r 20000 -d 10 -w 2 -t TOPIC -l laminar
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

#define ACK_SUSTAIN_SHARE     0.97
#define ACK_BACKLOG_END_S_MAX 1.0

struct ack_state {
    const struct bench_opts *o;
    rd_kafka_t *rk;
    int64_t start_ns; // scheduled send time of record 0
    int64_t total;    // records to send
    int64_t *lat_ns;  // per record: acknowledgement latency, -1 until acknowledged
    _Atomic int64_t acked;
    _Atomic int64_t acked_before_window; // acknowledgements that arrived before it
    _Atomic int64_t acked_in_window;     // acknowledgements that arrived inside the measured window
    _Atomic int64_t errors;
    _Atomic int first_err;
    _Atomic bool stop_poller;
    int64_t window_start_ns, window_end_ns;
};

static int64_t ack_scheduled_ns(const struct ack_state *st, int64_t seq)
{
    return st->start_ns + (int64_t)((double)seq * 1e9 / (double)st->o->rate_per_s);
}

// Delivery report (poller thread only): the latency of record seq (its msg opaque).
static void ack_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct ack_state *st = opaque;
    int64_t now = bench_now_ns();
    if (m->err) {
        if (atomic_fetch_add(&st->errors, 1) == 0)
            atomic_store(&st->first_err, (int)m->err);
        return;
    }
    int64_t seq = (int64_t)(intptr_t)m->_private;
    if (seq == -1)
        return; // a priming record, sent before the clock starts
    if (seq < 0 || seq >= st->total)
        bench_die("ack: delivery report for unknown record %" PRId64, seq);
    st->lat_ns[seq] = now - ack_scheduled_ns(st, seq);
    atomic_fetch_add(&st->acked, 1);
    if (now < st->window_start_ns)
        atomic_fetch_add(&st->acked_before_window, 1);
    else if (now < st->window_end_ns)
        atomic_fetch_add(&st->acked_in_window, 1);
}

static void *ack_poller(void *arg)
{
    struct ack_state *st = arg;
    while (!atomic_load(&st->stop_poller))
        rd_kafka_poll(st->rk, 50);
    return NULL;
}

int main(int argc, char **argv)
{
    struct bench_opts o = {.partitions = 16,
                           .size_bytes = 1024,
                           .acks = "all",
                           .rate_per_s = 5000,
                           .warmup_s = 2,
                           .timeout_s = 120};
    bench_opts_parse(&o, argc, argv, "ack_latency", "Defaults: -r 5000 -d 10 -w 2, acks=all.\n");
    if (o.rate_per_s <= 0)
        bench_die("ack_latency: -r must be positive");
    if (o.duration_s <= 0)
        o.duration_s = 10;

    struct ack_state st = {.o = &o};
    st.total = (int64_t)((double)o.rate_per_s * (o.warmup_s + o.duration_s));
    st.lat_ns = malloc((size_t)st.total * sizeof(*st.lat_ns));
    if (!st.lat_ns)
        bench_die("out of memory");
    for (int64_t i = 0; i < st.total; i++)
        st.lat_ns[i] = -1;

    char timeout_ms[32];
    snprintf(timeout_ms, sizeof(timeout_ms), "%d", (int)(o.timeout_s * 1000));
    // The latency settings of bench_e2e: linger.ms=1 (OpenMessaging Benchmark's Kafka driver),
    // at most 5 requests in flight per connection (the Java producer's default), large batches
    // so a backlog grows batches rather than queueing tiny requests, no compression.
    const char *kv[] = {"acks",
                        o.acks,
                        "linger.ms",
                        "1",
                        "max.in.flight",
                        "5",
                        "batch.size",
                        "1048576",
                        "queue.buffering.max.messages",
                        "1000000",
                        "queue.buffering.max.kbytes",
                        "2097151",
                        "compression.type",
                        "none",
                        "enable.idempotence",
                        "false",
                        "message.timeout.ms",
                        timeout_ms,
                        NULL};
    rd_kafka_conf_t *conf = bench_conf_new(&o, kv);
    rd_kafka_conf_set_dr_msg_cb(conf, ack_on_delivery);
    rd_kafka_conf_set_opaque(conf, &st);
    char err[512];
    st.rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!st.rk)
        bench_die("producer: %s", err);
    int partitions = bench_topic_prepare(st.rk, &o, (int)(bench_left_s(&o) * 1000));
    if (partitions < 0)
        bench_die("ack_latency: topic %s could not be prepared on %s", o.topic, o.bootstrap);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(st.rk, o.topic, NULL);
    if (!rkt)
        bench_die("topic: %s", rd_kafka_err2str(rd_kafka_last_error()));
    // Every partition's leader connection is up before the clock starts (topic_prepare's
    // Metadata only reached the bootstrap broker): one unmeasured record per partition.
    char *value = malloc((size_t)o.size_bytes);
    if (!value)
        bench_die("out of memory");
    for (int i = 0; i < o.size_bytes; i++)
        value[i] = (char)(i * 131 + 7);
    for (int p = 0; p < partitions; p++)
        if (rd_kafka_produce(rkt, p, RD_KAFKA_MSG_F_COPY, value, (size_t)o.size_bytes, NULL, 0,
                             (void *)(intptr_t)-1) == -1)
            bench_die("produce: %s", rd_kafka_err2str(rd_kafka_last_error()));
    if (rd_kafka_flush(st.rk, 30000) != 0)
        bench_die("ack_latency: the first record of each partition was not acknowledged in 30 s");

    st.start_ns = bench_now_ns();
    st.window_start_ns = st.start_ns + (int64_t)(o.warmup_s * 1e9);
    st.window_end_ns = st.window_start_ns + (int64_t)(o.duration_s * 1e9);
    pthread_t poller;
    if (pthread_create(&poller, NULL, ack_poller, &st) != 0)
        bench_die("pthread_create failed");

    int status = 0;
    int64_t sent = 0, send_lag_max_ns = 0;
    while (sent < st.total && atomic_load(&st.errors) == 0) {
        if (bench_left_s(&o) <= 0) {
            fprintf(stderr, "ack_latency: run exceeded its %.0f s bound while sending\n",
                    o.timeout_s);
            status = 1;
            break;
        }
        int64_t now = bench_now_ns();
        while (sent < st.total && ack_scheduled_ns(&st, sent) <= now) {
            int64_t lag = now - ack_scheduled_ns(&st, sent);
            if (lag > send_lag_max_ns)
                send_lag_max_ns = lag;
            if (rd_kafka_produce(rkt, (int32_t)(sent % partitions), RD_KAFKA_MSG_F_COPY, value,
                                 (size_t)o.size_bytes, NULL, 0, (void *)(intptr_t)sent) == -1) {
                rd_kafka_resp_err_t e = rd_kafka_last_error();
                if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                    bench_die("produce: %s", rd_kafka_err2str(e));
                break; // the local queue is full: try again at the next turn
            }
            sent++;
        }
        struct timespec ts = {0, 200000}; // 0.2 ms: the schedule's resolution
        nanosleep(&ts, NULL);
    }
    // Wait for the rest; whatever is still unacknowledged at the bound is a failure.
    while (atomic_load(&st.acked) + atomic_load(&st.errors) < sent && bench_left_s(&o) > 0) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&st.stop_poller, true);
    pthread_join(poller, NULL);
    double left_s = bench_left_s(&o);
    if (rd_kafka_flush(st.rk, left_s > 0 ? (int)(left_s * 1000) : 0) != 0 ||
        atomic_load(&st.acked) + atomic_load(&st.errors) < sent) {
        fprintf(stderr,
                "ack_latency: %" PRId64 " of %" PRId64 " records acknowledged within the "
                "%.0f s bound\n",
                atomic_load(&st.acked), sent, o.timeout_s);
        status = 1;
    }
    int64_t errors = atomic_load(&st.errors);
    if (errors) {
        fprintf(stderr, "ack_latency: %" PRId64 " delivery errors, first: %s\n", errors,
                rd_kafka_err2str((rd_kafka_resp_err_t)atomic_load(&st.first_err)));
        status = 1;
    }

    // Samples: records scheduled inside the measured window (warm-up records left out).
    int64_t first = (int64_t)((double)o.rate_per_s * o.warmup_s);
    size_t n = 0;
    for (int64_t i = first; i < sent; i++)
        if (st.lat_ns[i] >= 0)
            st.lat_ns[n++] = st.lat_ns[i];
    qsort(st.lat_ns, n, sizeof(*st.lat_ns), bench_cmp_i64);
    double p50 = bench_pct_ms(st.lat_ns, n, 0.50), p99 = bench_pct_ms(st.lat_ns, n, 0.99);
    double p999 = bench_pct_ms(st.lat_ns, n, 0.999);
    double max = n ? (double)st.lat_ns[n - 1] / 1e6 : 0;
    double acked_rate = (double)atomic_load(&st.acked_in_window) / o.duration_s;
    // Records scheduled by a time minus those acknowledged by then, in seconds of the rate.
    int64_t before = atomic_load(&st.acked_before_window);
    double backlog_start_s = ((double)first - (double)before) / (double)o.rate_per_s;
    double backlog_end_s =
        ((double)st.total - (double)(before + atomic_load(&st.acked_in_window))) /
        (double)o.rate_per_s;
    bool sustained = status == 0 && sent == st.total &&
                     acked_rate >= ACK_SUSTAIN_SHARE * (double)o.rate_per_s &&
                     backlog_end_s < ACK_BACKLOG_END_S_MAX;
    printf("RESULT bench=ack_latency label=%s acks=%s partitions=%d size=%d rate=%" PRId64
           " acked_rate=%.0f sustained=%d backlog_start_s=%.3f backlog_end_s=%.3f"
           " send_lag_max_ms=%.1f samples=%zu p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f"
           " ok=%d\n",
           o.label, o.acks, partitions, o.size_bytes, o.rate_per_s, acked_rate, sustained,
           backlog_start_s, backlog_end_s, (double)send_lag_max_ns / 1e6, n, p50, p99, p999, max,
           status == 0);
    printf("latency %-8s %" PRId64 " rec/s asked, %.0f acknowledged/s, backlog %.2f s at the"
           " window's end (%s), acks=%s: p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, max %.2f ms over"
           " %zu samples; sender lag max %.1f ms%s\n",
           o.label, o.rate_per_s, acked_rate, backlog_end_s,
           sustained ? "sustained" : "NOT sustained", o.acks, p50, p99, p999, max, n,
           (double)send_lag_max_ns / 1e6, status ? " (FAILED)" : "");
    fflush(stdout);

    free(value);
    free(st.lat_ns);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(st.rk);
    return status;
}
