/* Broker metrics (Prometheus text format at /metrics on laminar.http.listener).
 *
 * Each shard owns a struct broker_shard_metrics that only its thread writes (relaxed atomic
 * stores, no read-modify-write across threads); a scrape reads every shard's with relaxed loads
 * and sums them, so the data path pays one load and one store per counter. The handler layer
 * adds node-wide gauges through broker_dispatch.metrics_gauges. Names follow Kafka's JMX
 * metrics where one exists (broker/README.md has the table). */
#ifndef LAMINAR_BROKER_METRICS_H
#define LAMINAR_BROKER_METRICS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/runtime.h"

#define BROKER_METRICS_VERSIONS    24 /* request versions 0..22 counted apart, 23 = larger */
#define BROKER_METRICS_LAT_BUCKETS 16 /* request time: <= 0.1 ms * 2^i, the last is +Inf */

/* Counters the handlers add to (broker_shard_counter_add). */
enum broker_counter {
    BROKER_C_MESSAGES_IN = 0,   /* records appended by Produce (Kafka MessagesInPerSec) */
    BROKER_C_BYTES_IN,          /* record batch bytes appended by Produce (BytesInPerSec) */
    BROKER_C_BYTES_OUT,         /* record bytes sent by Fetch (BytesOutPerSec) */
    BROKER_C_PRODUCE_FAILED,    /* partitions of Produce answered with an error */
    BROKER_C_FETCH_FAILED,      /* partitions of Fetch answered with an error */
    BROKER_C_PRODUCE_THROTTLED, /* Produce responses throttled by a client quota */
    BROKER_C_FETCH_THROTTLED,   /* Fetch responses throttled by a client quota (sent empty) */
    BROKER_C_REQUEST_THROTTLED, /* responses throttled by a request_percentage quota */
    BROKER_C_COUNT
};

/* The BrokerTopicMetrics counters kept per topic: the first BROKER_TOPIC_COUNTERS of enum
 * broker_counter. */
enum { BROKER_TOPIC_COUNTERS = BROKER_C_FETCH_FAILED + 1 };

/* A request time histogram: buckets of <= 0.1 ms * 2^i and the sum in microseconds. */
struct broker_latency {
    uint64_t buckets[BROKER_METRICS_LAT_BUCKETS];
    uint64_t us_sum;
};

/* The parts of a request's time (Kafka's RequestMetrics): local = its handler ran on the shard
 * until it returned or answered; remote = answered later (acks=all replication, a Fetch
 * long-poll, a call to another shard or node); send = from the answer until its last byte left
 * (Kafka's ResponseQueueTime + ResponseSendTime: a response waits behind the earlier ones of its
 * connection). laminar has no request queue: a request's handler runs as its frame completes. */
enum {
    BROKER_LAT_TOTAL = 0,
    BROKER_LAT_LOCAL,
    BROKER_LAT_REMOTE,
    BROKER_LAT_SEND,
    BROKER_LAT_KINDS
};

/* Per-topic counters of one shard: an open-addressed table filled on first use and never
 * emptied (a deleted topic keeps its slot until restart); the topics past its capacity are
 * summed in `other`. Only the owning shard writes; a slot's name is published by a release
 * store of `ready` before any counter in it moves. */
enum { BROKER_TOPIC_SLOTS = 128, BROKER_TOPIC_NAME_BYTES = 256 };
struct broker_topic_slot {
    uint8_t ready;
    uint8_t len;
    char name[BROKER_TOPIC_NAME_BYTES];
    uint64_t c[BROKER_TOPIC_COUNTERS];
};

struct broker_shard_metrics {
    uint64_t requests[BROKER_API_KEYS_MAX][BROKER_METRICS_VERSIONS];
    struct broker_latency lat[BROKER_LAT_KINDS][BROKER_API_KEYS_MAX];
    uint64_t conns_created[BROKER_LISTENERS_MAX];
    uint64_t conns_closed[BROKER_LISTENERS_MAX];
    uint64_t net_bytes_in, net_bytes_out;
    uint64_t counters[BROKER_C_COUNT];
    uint64_t idle_us; /* time the shard's loop blocked waiting for events */
    /* loop turns, and the submissions (io_uring SQEs) and completions (CQEs, epoll events)
     * of all turns: their rates give the ring's depth per turn */
    uint64_t loop_turns, loop_submitted, loop_completed;
    struct broker_topic_slot topics[BROKER_TOPIC_SLOTS];
    uint64_t topic_other[BROKER_TOPIC_COUNTERS];
};

/* Adds one request time of us microseconds to a histogram of the calling shard. */
static inline void broker_metric_latency(struct broker_latency *l, uint64_t us)
{
    /* the first bucket b with us <= 100 << b: ceil(log2(ceil(us / 100))) */
    uint64_t q = (us + 99) / 100;
    int b = q <= 1 ? 0 : 64 - __builtin_clzll(q - 1);
    if (b > BROKER_METRICS_LAT_BUCKETS - 1)
        b = BROKER_METRICS_LAT_BUCKETS - 1;
    __atomic_store_n(&l->buckets[b], __atomic_load_n(&l->buckets[b], __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    __atomic_store_n(&l->us_sum, __atomic_load_n(&l->us_sum, __ATOMIC_RELAXED) + us,
                     __ATOMIC_RELAXED);
}

/* The per-topic counters (BROKER_TOPIC_COUNTERS of them) of a topic in the calling shard's
 * table, its slot claimed on first use; the table's `other` counters when the name does not fit
 * or the table is full. A slot is never given up, so the pointer stays valid as long as m. */
uint64_t *broker_metrics_topic_counters(struct broker_shard_metrics *m, const char *topic,
                                        size_t len);

/* Adds n to a per-topic counter (c < BROKER_TOPIC_COUNTERS) of the calling shard's table. */
void broker_metrics_topic_add(struct broker_shard_metrics *m, const char *topic, size_t len,
                              enum broker_counter c, uint64_t n);

/* Adds n to a counter only the calling thread writes. */
static inline void broker_metric_add(uint64_t *c, uint64_t n)
{
    __atomic_store_n(c, __atomic_load_n(c, __ATOMIC_RELAXED) + n, __ATOMIC_RELAXED);
}

/* The handlers' counters of the calling shard (no-op when laminar.metrics.enable=false). */
void broker_shard_counter_add(struct broker_shard *s, enum broker_counter c, uint64_t n);
/* A BrokerTopicMetrics counter (c < BROKER_TOPIC_COUNTERS) of one topic on the calling shard. */
void broker_shard_topic_add(struct broker_shard *s, const char *topic, size_t len,
                            enum broker_counter c, uint64_t n);
/* The calling shard's per-topic counters of a topic (broker_metrics_topic_counters), for a
 * caller that adds to them often and keeps the pointer (a partition on its owner shard); NULL
 * when laminar.metrics.enable=false. */
uint64_t *broker_shard_topic_counters(struct broker_shard *s, const char *topic, size_t len);

/* A scrape's output: a growable text buffer. */
struct broker_metrics_out {
    char *buf;
    size_t len, cap;
    bool failed; /* out of memory: the scrape answers 500 */
};
void broker_metrics_printf(struct broker_metrics_out *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Renders the exposition of n shards' metrics (and the process' RSS and open files) into o.
 * mailbox_depth[i]: items queued towards shard i (NULL: none known). */
void broker_metrics_render(struct broker_metrics_out *o,
                           const struct broker_shard_metrics *const *m, uint32_t n,
                           const struct broker_config *cfg, const uint32_t *mailbox_depth);

/* The HTTP endpoint: a thread serving GET /metrics, and the web console (console.h) at / and
 * /api/ when console is not NULL, one connection at a time with a bounded request head read
 * under one deadline. render is called per scrape on that thread. */
struct broker_http;
struct console;
typedef void (*broker_http_render_fn)(void *ctx, struct broker_metrics_out *o);
/* Starts listening on host:port (port 0: any; *bound_port gets the port). Returns 0 or an
 * LM_E_* (LM_E_IO with errno kept for EADDRINUSE). */
int broker_http_start(const char *host, uint16_t port, broker_http_render_fn render, void *ctx,
                      const struct console *console, struct broker_http **out,
                      uint16_t *bound_port);
void broker_http_stop(struct broker_http *h);

#endif
