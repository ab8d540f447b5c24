/* Codec throughput: decode and encode of a ~1 MiB Produce request (v9, flexible) carrying
 * 1 KiB records, in MB/s, against memcpy of the same bytes measured in the same run.
 * Two shapes: 1024 partitions with one 1 KiB record set each (per-partition codec work), and
 * one partition with a 1 MiB record set (1024 records of 1 KiB). Records are opaque bytes to
 * the codec (zero copy on decode), so the figure is the cost of the framing around them.
 * Usage: bench_codec_rt [seconds per measurement, default 0.5] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/lm_assert.h"
#include "protocol/kafka_api.h"

#define RECORD_BYTES       1024
#define TOTAL_RECORD_BYTES (1024 * 1024)
#define VERSION            9

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static volatile uint8_t g_sink;

struct shape {
    const char *name;
    int partitions;
};

static void build(struct kafka_produce_request *req, int partitions, uint8_t *records)
{
    kafka_produce_request_init(req);
    req->acks = -1;
    req->timeout_ms = 30000;
    static struct kafka_produce_request_topic_produce_data topic;
    memset(&topic, 0, sizeof(topic));
    topic.name = KAFKA_STR("bench-topic");
    topic.partition_data = calloc((size_t)partitions, sizeof(*topic.partition_data));
    LM_ASSERT(topic.partition_data != NULL);
    topic.partition_data_count = partitions;
    int32_t per = TOTAL_RECORD_BYTES / partitions;
    for (int p = 0; p < partitions; p++) {
        topic.partition_data[p].index = p;
        topic.partition_data[p].records = (struct kafka_bytes){records + (size_t)p * per, per};
    }
    req->topic_data = &topic;
    req->topic_data_count = 1;
}

static void run(const struct shape *s, double secs, uint8_t *records)
{
    struct kafka_produce_request req;
    build(&req, s->partitions, records);
    size_t n = kafka_produce_request_size(VERSION, &req);
    uint8_t *buf = malloc(n), *copy = malloc(n);
    LM_ASSERT(buf != NULL && copy != NULL);
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    LM_ASSERT(kafka_produce_request_encode(&w, VERSION, &req) == 0 && w.pos == n);

    /* reference: memcpy of the same bytes */
    long iters = 0;
    double t0 = now_s(), t;
    do {
        memcpy(copy, buf, n);
        g_sink ^= copy[iters % n];
        iters++;
    } while ((t = now_s()) - t0 < secs);
    double memcpy_mbs = (double)n * (double)iters / (t - t0) / 1e6;

    /* decode (arena reset per request, as the broker does) */
    struct kafka_arena arena;
    kafka_arena_init(&arena, 1u << 24);
    struct kafka_produce_request out;
    iters = 0;
    t0 = now_s();
    do {
        struct kafka_reader r;
        kafka_reader_init(&r, buf, n);
        int rc = kafka_produce_request_decode(&r, VERSION, &out, &arena);
        LM_ASSERT(rc == 0 && r.pos == n);
        kafka_arena_reset(&arena);
        iters++;
    } while ((t = now_s()) - t0 < secs);
    double dec_mbs = (double)n * (double)iters / (t - t0) / 1e6;
    double dec_us = (t - t0) / (double)iters * 1e6;

    /* encode (size + encode, as a sender would) */
    iters = 0;
    t0 = now_s();
    do {
        size_t sz = kafka_produce_request_size(VERSION, &req);
        LM_ASSERT(sz == n);
        kafka_writer_init(&w, copy, sz);
        int rc = kafka_produce_request_encode(&w, VERSION, &req);
        LM_ASSERT(rc == 0);
        iters++;
    } while ((t = now_s()) - t0 < secs);
    double enc_mbs = (double)n * (double)iters / (t - t0) / 1e6;
    double enc_us = (t - t0) / (double)iters * 1e6;
    LM_ASSERT(memcmp(copy, buf, n) == 0);

    printf("%-34s %8zu bytes | memcpy %9.0f MB/s | decode %9.0f MB/s (%7.1f us, %.2fx memcpy)"
           " | encode %9.0f MB/s (%7.1f us, %.2fx memcpy)\n",
           s->name, n, memcpy_mbs, dec_mbs, dec_us, dec_mbs / memcpy_mbs, enc_mbs, enc_us,
           enc_mbs / memcpy_mbs);
    kafka_arena_deinit(&arena);
    free(req.topic_data[0].partition_data);
    free(buf);
    free(copy);
}

int main(int argc, char **argv)
{
    double secs = argc > 1 ? atof(argv[1]) : 0.5;
    if (secs <= 0)
        secs = 0.5;
    uint8_t *records = malloc(TOTAL_RECORD_BYTES);
    LM_ASSERT(records != NULL);
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < TOTAL_RECORD_BYTES; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        records[i] = (uint8_t)x;
    }
    printf("bench_codec_rt: Produce v%d request, 1 KiB records, 1 MiB of records per request\n",
           VERSION);
    static const struct shape shapes[] = {
        {"1024 partitions x 1 KiB records", 1024},
        {"1 partition x 1024 records of 1 KiB", 1},
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
        run(&shapes[i], secs, records);
    free(records);
    return 0;
}
