// bench_produce: max-rate produce of fixed-size records (1 KiB by default) to a topic with N
// partitions (16 by default), round-robin over the partitions, for a record count or a duration.
// The clock runs from the first produce call to the last delivery report. Any delivery error is
// a failure (exit 1). Prints one RESULT line for scripts and one line for people.
//
//   bench_produce -b 127.0.0.1:9092 -a all -n 200000 -l laminar
#include "bench_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct produce_state {
    int64_t delivered;
    int64_t failed;
    rd_kafka_resp_err_t first_err;
};

// Delivery report: counts successes and keeps the first error to report it.
static void produce_on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    struct produce_state *st = opaque;
    if (m->err) {
        if (st->failed++ == 0)
            st->first_err = m->err;
    } else {
        st->delivered++;
    }
}

int main(int argc, char **argv)
{
    struct bench_opts o = {.partitions = 16, .size_bytes = 1024, .acks = "1", .timeout_s = 120};
    bench_opts_parse(&o, argc, argv, "produce",
                     "Defaults: -n 200000 unless -d is given, acks=1.\n");
    if (o.records == 0 && o.duration_s <= 0)
        o.records = 200000;

    struct produce_state st = {0};
    char timeout_ms[32];
    snprintf(timeout_ms, sizeof(timeout_ms), "%d", (int)(o.timeout_s * 1000));
    // Throughput settings close to what OpenMessaging Benchmark uses for Kafka: large batches,
    // a short linger, no compression, no idempotence (the plain produce path).
    const char *kv[] = {"acks",
                        o.acks,
                        "linger.ms",
                        "5",
                        "batch.num.messages",
                        "10000",
                        "batch.size",
                        "1048576",
                        "queue.buffering.max.messages",
                        "200000",
                        "queue.buffering.max.kbytes",
                        "1048576",
                        "compression.type",
                        "none",
                        "enable.idempotence",
                        "false",
                        "message.timeout.ms",
                        timeout_ms,
                        NULL};
    rd_kafka_conf_t *conf = bench_conf_new(&o, kv);
    rd_kafka_conf_set_dr_msg_cb(conf, produce_on_delivery);
    rd_kafka_conf_set_opaque(conf, &st);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
    if (!rk)
        bench_die("producer: %s", err);

    int partitions = bench_topic_prepare(rk, &o, (int)(bench_left_s(&o) * 1000));
    if (partitions < 0)
        bench_die("produce: topic %s could not be prepared on %s", o.topic, o.bootstrap);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o.topic, NULL);
    if (!rkt)
        bench_die("topic: %s", rd_kafka_err2str(rd_kafka_last_error()));

    // One payload for every record (librdkafka does not copy it: no RD_KAFKA_MSG_F_COPY), filled
    // with varied bytes so nothing on the path can shortcut on a pattern.
    char *payload = malloc((size_t)o.size_bytes);
    if (!payload)
        bench_die("out of memory");
    uint32_t x = 2463534242u;
    for (int i = 0; i < o.size_bytes; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        payload[i] = (char)x;
    }

    int64_t start_ns = bench_now_ns();
    int64_t stop_ns = o.duration_s > 0 ? start_ns + (int64_t)(o.duration_s * 1e9) : INT64_MAX;
    int64_t sent = 0;
    bool timed_out = false;
    while ((o.records == 0 || sent < o.records) && st.failed == 0) {
        if ((sent & 1023) == 0) {
            int64_t now = bench_now_ns();
            if (now >= stop_ns)
                break;
            if (bench_left_s(&o) <= 0) {
                timed_out = true;
                break;
            }
        }
        if (rd_kafka_produce(rkt, (int32_t)(sent % partitions), 0, payload, (size_t)o.size_bytes,
                             NULL, 0, NULL) == -1) {
            rd_kafka_resp_err_t e = rd_kafka_last_error();
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                bench_die("produce: %s", rd_kafka_err2str(e));
            rd_kafka_poll(rk, 1); // the local queue is full: let deliveries drain it
            if (bench_left_s(&o) <= 0) {
                timed_out = true;
                break;
            }
            continue;
        }
        sent++;
        if ((sent & 1023) == 0)
            rd_kafka_poll(rk, 0);
    }
    double left_s = bench_left_s(&o);
    rd_kafka_resp_err_t fe = rd_kafka_flush(rk, left_s > 0 ? (int)(left_s * 1000) : 0);
    int64_t end_ns = bench_now_ns();
    rd_kafka_poll(rk, 0);

    int status = 0;
    if (timed_out || fe == RD_KAFKA_RESP_ERR__TIMED_OUT) {
        fprintf(stderr,
                "produce: run exceeded its %.0f s bound (%" PRId64 " of %" PRId64
                " records delivered)\n",
                o.timeout_s, st.delivered, sent);
        status = 1;
    }
    if (st.failed) {
        fprintf(stderr, "produce: %" PRId64 " delivery errors, first: %s\n", st.failed,
                rd_kafka_err2str(st.first_err));
        status = 1;
    }
    if (status == 0 && st.delivered != sent) {
        fprintf(stderr, "produce: %" PRId64 " sent but %" PRId64 " delivered\n", sent,
                st.delivered);
        status = 1;
    }
    double secs = (double)(end_ns - start_ns) / 1e9;
    double bytes = (double)st.delivered * o.size_bytes;
    double mb_s = secs > 0 ? bytes / secs / 1e6 : 0;
    double rec_s = secs > 0 ? (double)st.delivered / secs : 0;
    printf("RESULT bench=produce label=%s acks=%s partitions=%d size=%d records=%" PRId64
           " secs=%.3f mb_s=%.1f rec_s=%.0f ok=%d\n",
           o.label, o.acks, partitions, o.size_bytes, st.delivered, secs, mb_s, rec_s, status == 0);
    printf("produce %-8s acks=%-3s %" PRId64 " x %d B to %d partitions in %.2f s: %.1f MB/s, "
           "%.0f records/s%s\n",
           o.label, o.acks, st.delivered, o.size_bytes, partitions, secs, mb_s, rec_s,
           status ? " (FAILED)" : "");
    fflush(stdout);

    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    free(payload);
    return status;
}
