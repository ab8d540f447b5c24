/* librdkafka (C) against laminar: for each codec (none, gzip, snappy, lz4, zstd) N records with
 * keys, values, two headers and explicit timestamps into a 16-partition topic, read back by an
 * assign-based consumer and compared record by record in per-partition order; acks 0/1/all;
 * a 10 MiB record must be refused by the broker (MESSAGE_TOO_LARGE).
 *
 *   rdk_compat <bootstrap> <records per codec> */
#include <inttypes.h>
#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PARTITIONS 16
#define TS_BASE    INT64_C(1700000000000)

static const char *bootstrap;
static int delivered_ok, delivered_err;
static rd_kafka_resp_err_t last_err;

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "FAIL: " __VA_ARGS__);                                                     \
        fprintf(stderr, "\n");                                                                     \
        exit(1);                                                                                   \
    } while (0)

static size_t value_of(int64_t i, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "v%" PRId64 "-", i);
    size_t len = (size_t)n + (size_t)(i * 7 % 97);
    for (size_t j = (size_t)n; j < len && j < cap; j++)
        buf[j] = (char)('a' + (i + (int64_t)j) % 26);
    return len;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    (void)opaque;
    if (m->err) {
        delivered_err++;
        last_err = m->err;
    } else {
        delivered_ok++;
    }
}

static rd_kafka_t *producer(const char *codec, const char *acks, const char *max_bytes)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "compression.codec", codec, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "acks", acks, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "linger.ms", "5", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "enable.idempotence", "false", err, sizeof(err)) ||
        rd_kafka_conf_set(c, "message.max.bytes", max_bytes, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "queue.buffering.max.messages", "1000000", err, sizeof(err)))
        FAIL("producer conf: %s", err);
    rd_kafka_conf_set_dr_msg_cb(c, dr_cb);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, c, err, sizeof(err));
    if (rk == NULL)
        FAIL("producer: %s", err);
    return rk;
}

static void produce_all(const char *topic, const char *codec, const char *acks, int64_t n)
{
    rd_kafka_t *rk = producer(codec, acks, "1000000");
    delivered_ok = delivered_err = 0;
    char key[32], val[256], idx[32];
    for (int64_t i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "k%" PRId64, i);
        size_t vlen = value_of(i, val, sizeof(val));
        snprintf(idx, sizeof(idx), "%" PRId64, i);
        rd_kafka_headers_t *h = rd_kafka_headers_new(2);
        rd_kafka_header_add(h, "idx", -1, idx, -1);
        rd_kafka_header_add(h, "codec", -1, codec, -1);
        rd_kafka_resp_err_t e;
        for (;;) {
            e = rd_kafka_producev(
                rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION((int32_t)(i % PARTITIONS)),
                RD_KAFKA_V_KEY(key, strlen(key)), RD_KAFKA_V_VALUE(val, vlen),
                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(TS_BASE + i),
                RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END);
            if (e != RD_KAFKA_RESP_ERR__QUEUE_FULL)
                break;
            rd_kafka_poll(rk, 10);
        }
        if (e)
            FAIL("producev: %s", rd_kafka_err2str(e));
        rd_kafka_poll(rk, 0);
    }
    if (rd_kafka_flush(rk, 120000) != RD_KAFKA_RESP_ERR_NO_ERROR)
        FAIL("flush timed out (%s)", topic);
    rd_kafka_destroy(rk);
    if (delivered_ok != n || delivered_err != 0)
        FAIL("%s acks=%s: %d delivered, %d failed (%s)", topic, acks, delivered_ok, delivered_err,
             rd_kafka_err2str(last_err));
}

static const void *header(const rd_kafka_message_t *m, const char *name, size_t *len)
{
    rd_kafka_headers_t *h = NULL;
    const void *v = NULL;
    if (rd_kafka_message_headers(m, &h) || rd_kafka_header_get_last(h, name, &v, len))
        return NULL;
    return v;
}

/* Reads every partition from the beginning and checks n records in per-partition order. */
static void consume_check(const char *topic, const char *codec, int64_t n, int full_check)
{
    char err[512];
    rd_kafka_conf_t *c = rd_kafka_conf_new();
    if (rd_kafka_conf_set(c, "bootstrap.servers", bootstrap, err, sizeof(err)) ||
        rd_kafka_conf_set(c, "fetch.wait.max.ms", "100", err, sizeof(err)))
        FAIL("consumer conf: %s", err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, c, err, sizeof(err));
    if (rk == NULL)
        FAIL("consumer: %s", err);
    /* The legacy (group-less) consumer: groups are another issue; every partition from the
     * beginning into one queue. */
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    for (int p = 0; p < PARTITIONS; p++)
        if (rd_kafka_consume_start_queue(rkt, p, RD_KAFKA_OFFSET_BEGINNING, q) != 0)
            FAIL("consume_start %s[%d]: %s", topic, p, rd_kafka_err2str(rd_kafka_last_error()));
    int64_t next[PARTITIONS];
    for (int p = 0; p < PARTITIONS; p++)
        next[p] = p;
    int64_t got = 0;
    time_t deadline = time(NULL) + 180;
    char val[256];
    while (got < n) {
        if (time(NULL) > deadline)
            FAIL("%s: timed out with %" PRId64 " of %" PRId64 " records", topic, got, n);
        rd_kafka_message_t *m = rd_kafka_consume_queue(q, 200);
        if (m == NULL)
            continue;
        if (m->err) {
            if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                FAIL("%s: consume error %s", topic, rd_kafka_message_errstr(m));
            rd_kafka_message_destroy(m);
            continue;
        }
        int p = m->partition;
        if (p < 0 || p >= PARTITIONS)
            FAIL("partition %d", p);
        int64_t i = next[p];
        if (m->offset != i / PARTITIONS)
            FAIL("%s[%d]: offset %" PRId64 ", expected %" PRId64, topic, p, m->offset,
                 i / PARTITIONS);
        if (full_check) {
            char key[32], idx[32];
            snprintf(key, sizeof(key), "k%" PRId64, i);
            snprintf(idx, sizeof(idx), "%" PRId64, i);
            size_t vlen = value_of(i, val, sizeof(val));
            rd_kafka_timestamp_type_t tt;
            int64_t ts = rd_kafka_message_timestamp(m, &tt);
            size_t hl = 0, cl = 0;
            const void *hv = header(m, "idx", &hl);
            const void *cv = header(m, "codec", &cl);
            if (m->key_len != strlen(key) || memcmp(m->key, key, m->key_len) != 0)
                FAIL("%s[%d]@%" PRId64 ": key", topic, p, m->offset);
            if (m->len != vlen || memcmp(m->payload, val, vlen) != 0)
                FAIL("%s[%d]@%" PRId64 ": value", topic, p, m->offset);
            if (hv == NULL || hl != strlen(idx) || memcmp(hv, idx, hl) != 0 || cv == NULL ||
                cl != strlen(codec) || memcmp(cv, codec, cl) != 0)
                FAIL("%s[%d]@%" PRId64 ": headers", topic, p, m->offset);
            if (tt != RD_KAFKA_TIMESTAMP_CREATE_TIME || ts != TS_BASE + i)
                FAIL("%s[%d]@%" PRId64 ": timestamp %" PRId64 " type %d", topic, p, m->offset, ts,
                     (int)tt);
        }
        next[p] += PARTITIONS;
        got++;
        rd_kafka_message_destroy(m);
    }
    for (int p = 0; p < PARTITIONS; p++)
        rd_kafka_consume_stop(rkt, p);
    rd_kafka_queue_destroy(q);
    rd_kafka_topic_destroy(rkt);
    rd_kafka_destroy(rk);
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: %s <bootstrap> <records per codec>\n", argv[0]);
        return 2;
    }
    bootstrap = argv[1];
    int64_t n = atoll(argv[2]);
    static const char *codecs[] = {"none", "gzip", "snappy", "lz4", "zstd"};
    for (size_t c = 0; c < sizeof(codecs) / sizeof(codecs[0]); c++) {
        char topic[64];
        snprintf(topic, sizeof(topic), "codec-%s", codecs[c]);
        double t0 = now_s();
        produce_all(topic, codecs[c], "all", n);
        double t1 = now_s();
        consume_check(topic, codecs[c], n, 1);
        printf("codec %-6s %" PRId64 " records: produce %.2f s, consume+check %.2f s\n", codecs[c],
               n, t1 - t0, now_s() - t1);
        fflush(stdout);
    }
    static const char *acks[] = {"0", "1", "all"};
    int64_t na = n < 20000 ? n : 20000;
    for (size_t a = 0; a < 3; a++) {
        char topic[64];
        snprintf(topic, sizeof(topic), "acks-%s", acks[a]);
        produce_all(topic, "lz4", acks[a], na);
        consume_check(topic, "lz4", na, 1);
        printf("acks=%s: %" PRId64 " records back\n", acks[a], na);
    }
    /* 10 MiB value: the producer is allowed to send it, the broker must refuse it. */
    rd_kafka_t *rk = producer("none", "all", "20000000");
    size_t big = 10u << 20;
    char *v = calloc(1, big);
    delivered_ok = delivered_err = 0;
    rd_kafka_resp_err_t e = rd_kafka_producev(
        rk, RD_KAFKA_V_TOPIC("big"), RD_KAFKA_V_PARTITION(0), RD_KAFKA_V_VALUE(v, big),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_END);
    free(v);
    if (e)
        FAIL("producev big: %s", rd_kafka_err2str(e));
    rd_kafka_flush(rk, 60000);
    rd_kafka_destroy(rk);
    if (delivered_ok != 0 || delivered_err != 1 || last_err != RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE)
        FAIL("10 MiB record: ok=%d err=%d (%s), expected MSG_SIZE_TOO_LARGE from the broker",
             delivered_ok, delivered_err, rd_kafka_err2str(last_err));
    printf("10 MiB record refused: %s\n", rd_kafka_err2str(last_err));
    printf("PASS librdkafka\n");
    return 0;
}
