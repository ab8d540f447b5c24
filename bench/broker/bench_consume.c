// bench_consume: reads a topic from the beginning, every partition assigned directly (no consumer
// group, so no coordinator is needed), until each partition reports end-of-partition and, with
// -n, at least that many records arrived. The clock runs from the start of the fetches to the
// last record. Fetch errors and a short read are failures (exit 1). Prints one RESULT line for
// scripts and one line for people.
//
//   bench_consume -b 127.0.0.1:9092 -t bench-produce-... -n 200000 -l laminar
#include "bench_common.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONSUME_BATCH 1024

int main(int argc, char **argv)
{
    struct bench_opts o = {.partitions = 16, .size_bytes = 1024, .timeout_s = 120};
    bench_opts_parse(&o, argc, argv, "consume",
                     "Reads -t TOPIC from the beginning (-t is required here); -n is the record\n"
                     "count expected (a smaller count at the end of every partition fails).\n");
    if (strncmp(o.topic, "bench-consume-", 14) == 0)
        bench_die("consume: give the topic to read with -t");

    // The legacy (simple) consumer API: partitions are started explicitly, nothing group-related
    // is sent. Fetch settings follow librdkafka's defaults except a larger local queue.
    const char *kv[] = {"enable.partition.eof",
                        "true",
                        "queued.max.messages.kbytes",
                        "262144",
                        "fetch.max.bytes",
                        "52428800",
                        "fetch.message.max.bytes",
                        "1048576",
                        "enable.auto.commit",
                        "false",
                        NULL};
    rd_kafka_conf_t *conf = bench_conf_new(&o, kv);
    char err[512];
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof(err));
    if (!rk)
        bench_die("consumer: %s", err);
    o.no_create = true; // reading: the topic must be there already
    int partitions = bench_topic_prepare(rk, &o, (int)(bench_left_s(&o) * 1000));
    if (partitions < 0)
        bench_die("consume: topic %s not found on %s", o.topic, o.bootstrap);
    rd_kafka_topic_conf_t *tconf = rd_kafka_topic_conf_new();
    if (rd_kafka_topic_conf_set(tconf, "auto.offset.reset", "error", err, sizeof(err)) !=
        RD_KAFKA_CONF_OK)
        bench_die("topic configuration: %s", err);
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o.topic, tconf);
    if (!rkt)
        bench_die("topic: %s", rd_kafka_err2str(rd_kafka_last_error()));
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);

    bool *at_end = calloc((size_t)partitions, sizeof(*at_end));
    rd_kafka_message_t **msgs = calloc(CONSUME_BATCH, sizeof(*msgs));
    if (!at_end || !msgs)
        bench_die("out of memory");
    int64_t start_ns = bench_now_ns();
    for (int p = 0; p < partitions; p++)
        if (rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q) == -1)
            bench_die("consume start %s [%d]: %s", o.topic, p,
                      rd_kafka_err2str(rd_kafka_last_error()));

    int64_t records = 0, bytes = 0, last_ns = start_ns;
    int ended = 0, status = 0;
    while (ended < partitions || (o.records > 0 && records < o.records)) {
        if (bench_left_s(&o) <= 0) {
            fprintf(stderr, "consume: run exceeded its %.0f s bound (%" PRId64 " records read)\n",
                    o.timeout_s, records);
            status = 1;
            break;
        }
        ssize_t n = rd_kafka_consume_batch_queue(q, 100, msgs, CONSUME_BATCH);
        if (n < 0)
            bench_die("consume: %s", rd_kafka_err2str(rd_kafka_last_error()));
        for (ssize_t i = 0; i < n; i++) {
            rd_kafka_message_t *m = msgs[i];
            if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
                // End of what the partition holds now; more may arrive only if producers run.
                if (m->partition >= 0 && m->partition < partitions && !at_end[m->partition]) {
                    at_end[m->partition] = true;
                    ended++;
                }
            } else if (m->err) {
                fprintf(stderr, "consume: %s [%d]: %s\n", o.topic, m->partition,
                        rd_kafka_message_errstr(m));
                status = 1;
            } else {
                records++;
                bytes += (int64_t)m->len;
                last_ns = bench_now_ns();
            }
            rd_kafka_message_destroy(m);
        }
        if (status)
            break;
        // All partitions at their end yet fewer records than expected: nothing more will come.
        if (ended == partitions && o.records > 0 && records < o.records) {
            fprintf(stderr,
                    "consume: every partition ended after %" PRId64 " of %" PRId64 " records\n",
                    records, o.records);
            status = 1;
            break;
        }
    }
    for (int p = 0; p < partitions; p++)
        rd_kafka_consume_stop(rkt, p);

    double secs = (double)(last_ns - start_ns) / 1e9;
    double mb_s = secs > 0 ? (double)bytes / secs / 1e6 : 0;
    double rec_s = secs > 0 ? (double)records / secs : 0;
    printf("RESULT bench=consume label=%s partitions=%d records=%" PRId64 " bytes=%" PRId64
           " secs=%.3f mb_s=%.1f rec_s=%.0f ok=%d\n",
           o.label, partitions, records, bytes, secs, mb_s, rec_s, status == 0);
    printf("consume %-8s %" PRId64 " records (%.1f MB) from %d partitions in %.2f s: %.1f MB/s, "
           "%.0f records/s%s\n",
           o.label, records, (double)bytes / 1e6, partitions, secs, mb_s, rec_s,
           status ? " (FAILED)" : "");
    fflush(stdout);

    free(msgs);
    free(at_end);
    rd_kafka_queue_destroy(q);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
    return status;
}
