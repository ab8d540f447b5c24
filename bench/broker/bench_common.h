// Shared pieces of the broker benchmark tools (bench_produce, bench_consume, bench_e2e): option
// parsing, librdkafka configuration, topic preparation and the result line. The tools talk Kafka
// over TCP to any bootstrap address and know nothing of laminar's internals.
#ifndef LAMINAR_BENCH_BROKER_COMMON_H
#define LAMINAR_BENCH_BROKER_COMMON_H

#include <librdkafka/rdkafka.h>
#include <stdbool.h>
#include <stdint.h>

#define BENCH_CONF_MAX 32

// Options every tool accepts; each tool fills the defaults before bench_opts_parse().
struct bench_opts {
    const char *bootstrap; // -b host:port (required)
    const char *topic;     // -t topic
    const char *label;     // -l label of the target in the RESULT line (laminar, null, kafka)
    int partitions;        // -p partitions of the topic (created if missing)
    int replicas;          // -R replication factor of a topic the tool creates (0: 1)
    int64_t records;       // -n records to produce / expect (0: no count limit)
    double duration_s;     // -d seconds to produce for (0: no time limit)
    int size_bytes;        // -s record value size
    const char *acks;      // -a 1, all or -1, 0
    int64_t rate_per_s;    // -r records per second (bench_e2e)
    double warmup_s;       // -w seconds of samples discarded at the start (bench_e2e)
    double timeout_s;      // -T hard bound on the whole run; exceeding it is a failure
    bool no_create;        // --no-create: do not try CreateTopics, rely on auto-creation
    int verbose;           // -v
    int conf_count;
    const char *conf[BENCH_CONF_MAX][2]; // -X key=value passed to librdkafka
};

// Parses argv into *o (which holds the defaults). usage_extra describes the tool. Exits with a
// usage message on bad input.
void bench_opts_parse(struct bench_opts *o, int argc, char **argv, const char *tool,
                      const char *usage_extra);

// A new librdkafka configuration with bootstrap.servers, quiet logging and every -X pair
// applied after the tool's own settings (given as a NULL-terminated key, value list). Exits on
// a bad key. Caller owns the result (or hands it to rd_kafka_new).
rd_kafka_conf_t *bench_conf_new(const struct bench_opts *o, const char *const *kv);

// Makes sure o->topic exists with o->partitions partitions (replication factor -R, 1 by default):
// CreateTopics through rk's Admin API, or directly in librdkafka's mock cluster when rk runs one
// (an existing topic is fine; a broker without CreateTopics falls back on auto-creation), then
// Metadata until every partition has a leader. Returns the partition count the broker reports
// (may differ from the request if the topic pre-existed), or -1 with a message on stderr.
// Waits at most timeout_ms, and never more than 30 s.
int bench_topic_prepare(rd_kafka_t *rk, const struct bench_opts *o, int timeout_ms);

// CLOCK_MONOTONIC in nanoseconds.
int64_t bench_now_ns(void);

// Seconds left before the run's deadline (started at bench_opts_parse()).
double bench_left_s(const struct bench_opts *o);

// Prints a message to stderr and exits with status 1.
void bench_die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

#endif
