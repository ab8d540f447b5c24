#include "bench_common.h"

#include <librdkafka/rdkafka_mock.h>

#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t bench_start_ns;

int64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double bench_left_s(const struct bench_opts *o)
{
    return o->timeout_s - (double)(bench_now_ns() - bench_start_ns) / 1e9;
}

void bench_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

static void bench_usage(const char *tool, const char *usage_extra, int status)
{
    fprintf(status ? stderr : stdout,
            "usage: %s -b HOST:PORT [options]\n"
            "  -b, --bootstrap HOST:PORT  bootstrap broker (loopback)\n"
            "  -t, --topic NAME           topic (default: a fresh name)\n"
            "  -l, --label NAME           target label in the RESULT line\n"
            "  -p, --partitions N         partitions (default 16)\n"
            "  -R, --replication-factor N replication factor of a created topic (default 1)\n"
            "  -n, --records N            record count\n"
            "  -d, --duration S           seconds\n"
            "  -s, --size BYTES           record value size (default 1024)\n"
            "  -a, --acks 0|1|all         producer acks\n"
            "  -r, --rate N               records per second (bench_e2e)\n"
            "  -w, --warmup S             seconds of samples discarded (bench_e2e)\n"
            "  -T, --timeout S            bound on the whole run (failure when exceeded)\n"
            "      --no-create            rely on auto-creation, no CreateTopics\n"
            "  -X key=value               librdkafka property (repeatable)\n"
            "  -v                         librdkafka logs\n"
            "%s",
            tool, usage_extra);
    exit(status);
}

void bench_opts_parse(struct bench_opts *o, int argc, char **argv, const char *tool,
                      const char *usage_extra)
{
    static const struct option opts[] = {{"bootstrap", required_argument, NULL, 'b'},
                                         {"topic", required_argument, NULL, 't'},
                                         {"label", required_argument, NULL, 'l'},
                                         {"partitions", required_argument, NULL, 'p'},
                                         {"replication-factor", required_argument, NULL, 'R'},
                                         {"records", required_argument, NULL, 'n'},
                                         {"duration", required_argument, NULL, 'd'},
                                         {"size", required_argument, NULL, 's'},
                                         {"acks", required_argument, NULL, 'a'},
                                         {"rate", required_argument, NULL, 'r'},
                                         {"warmup", required_argument, NULL, 'w'},
                                         {"timeout", required_argument, NULL, 'T'},
                                         {"no-create", no_argument, NULL, 'N'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    bench_start_ns = bench_now_ns();
    int c;
    while ((c = getopt_long(argc, argv, "b:t:l:p:R:n:d:s:a:r:w:T:X:vh", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            o->bootstrap = optarg;
            break;
        case 't':
            o->topic = optarg;
            break;
        case 'l':
            o->label = optarg;
            break;
        case 'p':
            o->partitions = atoi(optarg);
            break;
        case 'R':
            o->replicas = atoi(optarg);
            break;
        case 'n':
            o->records = strtoll(optarg, NULL, 10);
            break;
        case 'd':
            o->duration_s = atof(optarg);
            break;
        case 's':
            o->size_bytes = atoi(optarg);
            break;
        case 'a':
            o->acks = optarg;
            break;
        case 'r':
            o->rate_per_s = strtoll(optarg, NULL, 10);
            break;
        case 'w':
            o->warmup_s = atof(optarg);
            break;
        case 'T':
            o->timeout_s = atof(optarg);
            break;
        case 'N':
            o->no_create = true;
            break;
        case 'v':
            o->verbose++;
            break;
        case 'X': {
            char *eq = strchr(optarg, '=');
            if (!eq || o->conf_count == BENCH_CONF_MAX)
                bench_usage(tool, usage_extra, 2);
            *eq = '\0';
            o->conf[o->conf_count][0] = optarg;
            o->conf[o->conf_count][1] = eq + 1;
            o->conf_count++;
            break;
        }
        case 'h':
            bench_usage(tool, usage_extra, 0);
            break;
        default:
            bench_usage(tool, usage_extra, 2);
        }
    }
    if (!o->bootstrap || optind != argc)
        bench_usage(tool, usage_extra, 2);
    if (o->replicas == 0)
        o->replicas = 1;
    if (o->partitions < 1 || o->replicas < 1 || o->size_bytes < 24 || o->timeout_s <= 0 ||
        o->records < 0)
        bench_die("%s: bad option value (partitions >= 1, replication factor >= 1, size >= 24, "
                  "timeout > 0)",
                  tool);
    if (!o->topic) {
        // A fresh topic per run, so runs never read each other's records.
        static char name[96];
        snprintf(name, sizeof(name), "bench-%s-%ld-%lld", tool, (long)getpid(),
                 (long long)(bench_start_ns / 1000000 % 100000000));
        o->topic = name;
    }
    if (!o->label)
        o->label = "target";
}

rd_kafka_conf_t *bench_conf_new(const struct bench_opts *o, const char *const *kv)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char err[512];
    if (rd_kafka_conf_set(conf, "bootstrap.servers", o->bootstrap, err, sizeof(err)) !=
            RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "log_level", o->verbose ? "7" : "3", err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
        bench_die("librdkafka configuration: %s", err);
    if (o->verbose > 1 && rd_kafka_conf_set(conf, "debug", "broker,protocol,msg,fetch", err,
                                            sizeof(err)) != RD_KAFKA_CONF_OK)
        bench_die("librdkafka configuration: %s", err);
    for (int i = 0; kv && kv[i]; i += 2)
        if (rd_kafka_conf_set(conf, kv[i], kv[i + 1], err, sizeof(err)) != RD_KAFKA_CONF_OK)
            bench_die("librdkafka configuration %s=%s: %s", kv[i], kv[i + 1], err);
    for (int i = 0; i < o->conf_count; i++)
        if (rd_kafka_conf_set(conf, o->conf[i][0], o->conf[i][1], err, sizeof(err)) !=
            RD_KAFKA_CONF_OK)
            bench_die("librdkafka configuration %s=%s: %s", o->conf[i][0], o->conf[i][1], err);
    return conf;
}

// CreateTopics through the Admin API. Returns 0 when the topic exists afterwards (or the broker
// cannot create topics this way, so Metadata auto-creation is the remaining path), -1 otherwise.
static int bench_topic_create(rd_kafka_t *rk, const struct bench_opts *o, int timeout_ms)
{
    char err[512];
    rd_kafka_NewTopic_t *nt =
        rd_kafka_NewTopic_new(o->topic, o->partitions, o->replicas, err, sizeof(err));
    if (!nt) {
        fprintf(stderr, "%s: NewTopic: %s\n", o->topic, err);
        return -1;
    }
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *ao = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    if (rd_kafka_AdminOptions_set_request_timeout(ao, timeout_ms, err, sizeof(err)) ||
        rd_kafka_AdminOptions_set_operation_timeout(ao, timeout_ms, err, sizeof(err)))
        bench_die("AdminOptions: %s", err);
    rd_kafka_CreateTopics(rk, &nt, 1, ao, q);
    rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 2000);
    int rc = 0;
    if (!ev) {
        fprintf(stderr, "CreateTopics %s: no answer in time\n", o->topic);
        rc = -1;
    } else if (rd_kafka_event_error(ev)) {
        rd_kafka_resp_err_t e = rd_kafka_event_error(ev);
        if (e != RD_KAFKA_RESP_ERR__UNSUPPORTED_FEATURE) {
            fprintf(stderr, "CreateTopics %s: %s\n", o->topic, rd_kafka_event_error_string(ev));
            rc = -1;
        } else if (o->verbose) {
            fprintf(stderr, "CreateTopics not supported by the broker; using auto-creation\n");
        }
    } else {
        size_t n;
        const rd_kafka_CreateTopics_result_t *res = rd_kafka_event_CreateTopics_result(ev);
        const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
        for (size_t i = 0; i < n; i++) {
            rd_kafka_resp_err_t e = rd_kafka_topic_result_error(tr[i]);
            if (e != RD_KAFKA_RESP_ERR_NO_ERROR && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                fprintf(stderr, "CreateTopics %s: %s\n", o->topic,
                        rd_kafka_topic_result_error_string(tr[i]) ?: rd_kafka_err2str(e));
                rc = -1;
            }
        }
    }
    if (ev)
        rd_kafka_event_destroy(ev);
    rd_kafka_AdminOptions_destroy(ao);
    rd_kafka_queue_destroy(q);
    rd_kafka_NewTopic_destroy(nt);
    return rc;
}

int bench_topic_prepare(rd_kafka_t *rk, const struct bench_opts *o, int timeout_ms)
{
    // A broker that cannot get a topic ready in 30 s will not be measured: fail early rather
    // than spend the whole run's bound.
    if (timeout_ms > 30000)
        timeout_ms = 30000;
    // librdkafka's mock cluster (-X test.mock.num.brokers=N) answers no CreateTopics (the admin
    // client waits for a controller it never names) and auto-creates topics with 4 partitions:
    // create the topic in the mock directly. Its replicas are metadata only (the mock does not
    // replicate), and librdkafka before 2.2 ignores the factor asked for: every partition gets
    // min(3, N) replicas there.
    rd_kafka_mock_cluster_t *mock = rd_kafka_handle_mock_cluster(rk);
    if (mock && !o->no_create) {
        rd_kafka_resp_err_t e =
            rd_kafka_mock_topic_create(mock, o->topic, o->partitions, o->replicas);
        if (e && e != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
            fprintf(stderr, "mock topic %s: %s\n", o->topic, rd_kafka_err2str(e));
            return -1;
        }
    } else if (!o->no_create && bench_topic_create(rk, o, timeout_ms) < 0) {
        return -1;
    }
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, o->topic, NULL);
    if (!rkt) {
        fprintf(stderr, "topic %s: %s\n", o->topic, rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    // Metadata for the topic until every partition has a leader (auto-creation and a new
    // topic's leader election both take a moment on a real broker).
    int64_t deadline = bench_now_ns() + (int64_t)timeout_ms * 1000000;
    int partitions = -1;
    const char *why = "no answer";
    while (partitions < 0 && bench_now_ns() < deadline) {
        const struct rd_kafka_metadata *md;
        rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, 2000);
        if (e) {
            why = rd_kafka_err2str(e);
        } else {
            if (md->topic_cnt == 1 && md->topics[0].err == 0 && md->topics[0].partition_cnt > 0) {
                int ok = 1;
                for (int i = 0; i < md->topics[0].partition_cnt; i++)
                    if (md->topics[0].partitions[i].err || md->topics[0].partitions[i].leader < 0)
                        ok = 0;
                if (ok)
                    partitions = md->topics[0].partition_cnt;
                else
                    why = "a partition has no leader yet";
            } else if (md->topic_cnt == 1) {
                why = rd_kafka_err2str(md->topics[0].err);
            }
            rd_kafka_metadata_destroy(md);
        }
        if (partitions < 0)
            usleep(100 * 1000);
    }
    rd_kafka_topic_destroy(rkt);
    if (partitions < 0) {
        fprintf(stderr, "topic %s not ready: %s\n", o->topic, why);
        return -1;
    }
    if (partitions != o->partitions)
        fprintf(stderr, "note: topic %s has %d partitions (asked for %d)\n", o->topic, partitions,
                o->partitions);
    return partitions;
}
