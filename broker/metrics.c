/* Broker metrics: the Prometheus exposition and its HTTP endpoint (see metrics.h). */
#define _GNU_SOURCE
#include "broker/metrics.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "broker/console/console.h"
#include "broker/console/http_req.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"

#define HTTP_REQUEST_BYTES_MAX 8192
#define HTTP_IO_TIMEOUT_MS     5000
#define HTTP_PENDING_MAX       32

void broker_metrics_printf(struct broker_metrics_out *o, const char *fmt, ...)
{
    if (o->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        size_t room = o->cap - o->len;
        int n = vsnprintf(o->buf != NULL ? o->buf + o->len : NULL, room, fmt, ap);
        va_end(ap);
        if (n < 0) {
            o->failed = true;
            return;
        }
        if ((size_t)n < room) {
            o->len += (size_t)n;
            return;
        }
        size_t ncap = o->cap ? o->cap * 2 : 16384;
        while (ncap - o->len <= (size_t)n)
            ncap *= 2;
        char *b = realloc(o->buf, ncap);
        if (b == NULL) {
            o->failed = true;
            return;
        }
        o->buf = b;
        o->cap = ncap;
    }
}

static uint64_t ld(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

uint64_t *broker_metrics_topic_counters(struct broker_shard_metrics *m, const char *topic,
                                        size_t len)
{
    if (len == 0 || len >= BROKER_TOPIC_NAME_BYTES)
        return m->topic_other;
    uint32_t h = 2166136261u; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)topic[i]) * 16777619u;
    for (uint32_t k = 0; k < BROKER_TOPIC_SLOTS; k++) {
        struct broker_topic_slot *t = &m->topics[(h + k) & (BROKER_TOPIC_SLOTS - 1)];
        if (!t->ready) {
            /* this shard alone writes the table: claim the slot, then publish its name */
            memcpy(t->name, topic, len);
            t->name[len] = 0;
            t->len = (uint8_t)len;
            __atomic_store_n(&t->ready, 1, __ATOMIC_RELEASE);
        } else if (t->len != len || memcmp(t->name, topic, len) != 0) {
            continue;
        }
        return t->c;
    }
    return m->topic_other;
}

void broker_metrics_topic_add(struct broker_shard_metrics *m, const char *topic, size_t len,
                              enum broker_counter c, uint64_t n)
{
    LM_ASSERT((int)c < BROKER_TOPIC_COUNTERS);
    broker_metric_add(&broker_metrics_topic_counters(m, topic, len)[c], n);
}

/* Kafka's request names (RequestMetrics' request tag) from the generated API table. */
static const char *api_name(int16_t key)
{
    const struct kafka_api_info *api = kafka_api_lookup(key);
    return api != NULL ? api->name : NULL;
}

static double bucket_le_seconds(int i)
{
    return 0.0001 * (double)(1u << i);
}

static void render_requests(struct broker_metrics_out *o,
                            const struct broker_shard_metrics *const *m, uint32_t n)
{
    broker_metrics_printf(o, "# HELP kafka_network_requests_total Requests received, by API and "
                             "version (kafka.network RequestMetrics RequestsPerSec).\n"
                             "# TYPE kafka_network_requests_total counter\n");
    for (int k = 0; k < BROKER_API_KEYS_MAX; k++) {
        const char *name = api_name((int16_t)k);
        for (int v = 0; v < BROKER_METRICS_VERSIONS; v++) {
            uint64_t sum = 0;
            for (uint32_t s = 0; s < n; s++)
                sum += ld(&m[s]->requests[k][v]);
            if (sum == 0)
                continue;
            if (name != NULL)
                broker_metrics_printf(
                    o, "kafka_network_requests_total{request=\"%s\",version=\"%s%d\"} %llu\n", name,
                    v == BROKER_METRICS_VERSIONS - 1 ? ">=" : "", v, (unsigned long long)sum);
            else
                broker_metrics_printf(
                    o, "kafka_network_requests_total{request=\"%d\",version=\"%d\"} %llu\n", k, v,
                    (unsigned long long)sum);
        }
    }
    static const char *const kinds[BROKER_LAT_KINDS][2] = {
        {"total", "Time from a request's arrival to its response leaving (TotalTimeMs)."},
        {"local", "Time its handler ran on the shard until it returned or answered "
                  "(LocalTimeMs)."},
        {"remote", "Time from the handler's return to the answer: replication, long-polls, "
                   "other shards or nodes (RemoteTimeMs)."},
        {"send", "Time from the answer until its last byte left, behind earlier responses of "
                 "the connection included (ResponseQueueTimeMs + ResponseSendTimeMs)."},
    };
    for (int kind = 0; kind < BROKER_LAT_KINDS; kind++) {
        broker_metrics_printf(o,
                              "# HELP kafka_network_request_%s_time_seconds %s\n"
                              "# TYPE kafka_network_request_%s_time_seconds histogram\n",
                              kinds[kind][0], kinds[kind][1], kinds[kind][0]);
        for (int k = 0; k < BROKER_API_KEYS_MAX; k++) {
            uint64_t b[BROKER_METRICS_LAT_BUCKETS] = {0}, count = 0, us = 0;
            for (uint32_t s = 0; s < n; s++) {
                const struct broker_latency *l = &m[s]->lat[kind][k];
                for (int i = 0; i < BROKER_METRICS_LAT_BUCKETS; i++)
                    b[i] += ld(&l->buckets[i]);
                us += ld(&l->us_sum);
            }
            for (int i = 0; i < BROKER_METRICS_LAT_BUCKETS; i++)
                count += b[i];
            if (count == 0)
                continue;
            const char *name = api_name((int16_t)k);
            char label[64];
            if (name != NULL)
                snprintf(label, sizeof(label), "request=\"%s\"", name);
            else
                snprintf(label, sizeof(label), "request=\"%d\"", k);
            uint64_t cum = 0;
            for (int i = 0; i < BROKER_METRICS_LAT_BUCKETS; i++) {
                cum += b[i];
                if (i == BROKER_METRICS_LAT_BUCKETS - 1)
                    broker_metrics_printf(
                        o, "kafka_network_request_%s_time_seconds_bucket{%s,le=\"+Inf\"} %llu\n",
                        kinds[kind][0], label, (unsigned long long)cum);
                else
                    broker_metrics_printf(
                        o, "kafka_network_request_%s_time_seconds_bucket{%s,le=\"%g\"} %llu\n",
                        kinds[kind][0], label, bucket_le_seconds(i), (unsigned long long)cum);
            }
            broker_metrics_printf(o, "kafka_network_request_%s_time_seconds_sum{%s} %.6f\n",
                                  kinds[kind][0], label, (double)us / 1e6);
            broker_metrics_printf(o, "kafka_network_request_%s_time_seconds_count{%s} %llu\n",
                                  kinds[kind][0], label, (unsigned long long)count);
        }
    }
}

/* One BrokerTopicMetrics family by topic: the shards' tables merged by name, the topics past a
 * table's capacity under topic="(other)" (parentheses cannot be in a topic name). */
static void render_topic_counter(struct broker_metrics_out *o,
                                 const struct broker_shard_metrics *const *m, uint32_t n,
                                 enum broker_counter c, const char *name, const char *help)
{
    broker_metrics_printf(o, "# HELP %s %s\n# TYPE %s counter\n", name, help, name);
    uint64_t other = 0;
    for (uint32_t s = 0; s < n; s++) {
        other += ld(&m[s]->topic_other[c]);
        for (uint32_t i = 0; i < BROKER_TOPIC_SLOTS; i++) {
            const struct broker_topic_slot *t = &m[s]->topics[i];
            if (!__atomic_load_n(&t->ready, __ATOMIC_ACQUIRE))
                continue;
            /* written once, by the first shard (in index order) that has this topic */
            bool seen = false;
            for (uint32_t s2 = 0; s2 < s && !seen; s2++)
                for (uint32_t i2 = 0; i2 < BROKER_TOPIC_SLOTS && !seen; i2++) {
                    const struct broker_topic_slot *t2 = &m[s2]->topics[i2];
                    seen = __atomic_load_n(&t2->ready, __ATOMIC_ACQUIRE) && t2->len == t->len &&
                           memcmp(t2->name, t->name, t->len) == 0;
                }
            if (seen)
                continue;
            uint64_t sum = 0;
            for (uint32_t s2 = s; s2 < n; s2++)
                for (uint32_t i2 = 0; i2 < BROKER_TOPIC_SLOTS; i2++) {
                    const struct broker_topic_slot *t2 = &m[s2]->topics[i2];
                    if (__atomic_load_n(&t2->ready, __ATOMIC_ACQUIRE) && t2->len == t->len &&
                        memcmp(t2->name, t->name, t->len) == 0)
                        sum += ld(&t2->c[c]);
                }
            broker_metrics_printf(o, "%s{topic=\"%.*s\"} %llu\n", name, (int)t->len, t->name,
                                  (unsigned long long)sum);
        }
    }
    broker_metrics_printf(o, "%s{topic=\"(other)\"} %llu\n", name, (unsigned long long)other);
}

static void render_counter(struct broker_metrics_out *o,
                           const struct broker_shard_metrics *const *m, uint32_t n,
                           enum broker_counter c, const char *name, const char *help)
{
    uint64_t sum = 0;
    for (uint32_t s = 0; s < n; s++)
        sum += ld(&m[s]->counters[c]);
    broker_metrics_printf(o, "# HELP %s %s\n# TYPE %s counter\n%s %llu\n", name, help, name, name,
                          (unsigned long long)sum);
}

static void render_process(struct broker_metrics_out *o)
{
    long pages = 0, rss = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f != NULL) {
        if (fscanf(f, "%ld %ld", &pages, &rss) != 2)
            rss = 0;
        fclose(f);
    }
    long fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d != NULL) {
        for (struct dirent *e; (e = readdir(d)) != NULL;)
            fds += e->d_name[0] != '.';
        closedir(d);
        fds--; /* the directory's own descriptor */
    }
    broker_metrics_printf(o,
                          "# HELP process_resident_memory_bytes Resident memory.\n"
                          "# TYPE process_resident_memory_bytes gauge\n"
                          "process_resident_memory_bytes %lld\n"
                          "# HELP process_open_fds Open file descriptors.\n"
                          "# TYPE process_open_fds gauge\nprocess_open_fds %ld\n",
                          (long long)rss * sysconf(_SC_PAGESIZE), fds);
}

void broker_metrics_render(struct broker_metrics_out *o,
                           const struct broker_shard_metrics *const *m, uint32_t n,
                           const struct broker_config *cfg, const uint32_t *mailbox_depth)
{
    render_requests(o, m, n);
    broker_metrics_printf(o, "# HELP laminar_shard_idle_seconds_total Time each shard's loop "
                             "waited for events (1 - its rate is the shard's busy fraction; "
                             "Kafka: NetworkProcessorAvgIdlePercent).\n"
                             "# TYPE laminar_shard_idle_seconds_total counter\n");
    for (uint32_t s = 0; s < n; s++)
        broker_metrics_printf(o, "laminar_shard_idle_seconds_total{shard=\"%u\"} %.6f\n", s,
                              (double)ld(&m[s]->idle_us) / 1e6);
    static const char *const loop[3][2] = {
        {"laminar_shard_loop_turns_total", "Turns of each shard's event loop."},
        {"laminar_shard_ring_submitted_total",
         "io_uring submissions handed to the kernel (per turn: the ring's submission depth)."},
        {"laminar_shard_ring_completed_total",
         "Completions (io_uring CQEs, epoll events) ready when a turn's wait returned (per turn: "
         "the completion depth)."}};
    for (int k = 0; k < 3; k++) {
        broker_metrics_printf(o, "# HELP %s %s\n# TYPE %s counter\n", loop[k][0], loop[k][1],
                              loop[k][0]);
        for (uint32_t s = 0; s < n; s++) {
            const uint64_t *v = k == 0   ? &m[s]->loop_turns
                                : k == 1 ? &m[s]->loop_submitted
                                         : &m[s]->loop_completed;
            broker_metrics_printf(o, "%s{shard=\"%u\"} %llu\n", loop[k][0], s,
                                  (unsigned long long)ld(v));
        }
    }
    if (mailbox_depth != NULL) {
        broker_metrics_printf(o, "# HELP laminar_shard_mailbox_depth Cross-shard messages "
                                 "queued towards each shard.\n"
                                 "# TYPE laminar_shard_mailbox_depth gauge\n");
        for (uint32_t s = 0; s < n; s++)
            broker_metrics_printf(o, "laminar_shard_mailbox_depth{shard=\"%u\"} %u\n", s,
                                  mailbox_depth[s]);
    }
    broker_metrics_printf(o, "# HELP kafka_server_socket_server_connections Open client "
                             "connections per listener.\n"
                             "# TYPE kafka_server_socket_server_connections gauge\n");
    for (uint32_t l = 0; l < cfg->listeners_count; l++) {
        uint64_t created = 0, closed = 0;
        for (uint32_t s = 0; s < n; s++) {
            created += ld(&m[s]->conns_created[l]);
            closed += ld(&m[s]->conns_closed[l]);
        }
        broker_metrics_printf(o, "kafka_server_socket_server_connections{listener=\"%s\"} %llu\n",
                              cfg->listeners[l].name,
                              (unsigned long long)(created >= closed ? created - closed : 0));
    }
    broker_metrics_printf(o,
                          "# HELP kafka_server_socket_server_connection_creation_total "
                          "Connections accepted per listener.\n"
                          "# TYPE kafka_server_socket_server_connection_creation_total counter\n");
    for (uint32_t l = 0; l < cfg->listeners_count; l++) {
        uint64_t created = 0;
        for (uint32_t s = 0; s < n; s++)
            created += ld(&m[s]->conns_created[l]);
        broker_metrics_printf(
            o, "kafka_server_socket_server_connection_creation_total{listener=\"%s\"} %llu\n",
            cfg->listeners[l].name, (unsigned long long)created);
    }
    uint64_t in = 0, out = 0;
    for (uint32_t s = 0; s < n; s++) {
        in += ld(&m[s]->net_bytes_in);
        out += ld(&m[s]->net_bytes_out);
    }
    broker_metrics_printf(o,
                          "# HELP laminar_network_received_bytes_total Bytes read from client "
                          "connections.\n# TYPE laminar_network_received_bytes_total counter\n"
                          "laminar_network_received_bytes_total %llu\n"
                          "# HELP laminar_network_sent_bytes_total Bytes written to client "
                          "connections.\n# TYPE laminar_network_sent_bytes_total counter\n"
                          "laminar_network_sent_bytes_total %llu\n",
                          (unsigned long long)in, (unsigned long long)out);
    render_topic_counter(o, m, n, BROKER_C_MESSAGES_IN,
                         "kafka_server_brokertopicmetrics_messages_in_total",
                         "Records appended by Produce (BrokerTopicMetrics MessagesInPerSec).");
    render_topic_counter(o, m, n, BROKER_C_BYTES_IN,
                         "kafka_server_brokertopicmetrics_bytes_in_total",
                         "Record batch bytes appended by Produce (BrokerTopicMetrics "
                         "BytesInPerSec).");
    render_topic_counter(o, m, n, BROKER_C_BYTES_OUT,
                         "kafka_server_brokertopicmetrics_bytes_out_total",
                         "Record bytes returned by Fetch (BrokerTopicMetrics BytesOutPerSec).");
    render_topic_counter(o, m, n, BROKER_C_PRODUCE_FAILED,
                         "kafka_server_brokertopicmetrics_failed_produce_requests_total",
                         "Partitions of Produce answered with an error "
                         "(FailedProduceRequestsPerSec).");
    render_topic_counter(o, m, n, BROKER_C_FETCH_FAILED,
                         "kafka_server_brokertopicmetrics_failed_fetch_requests_total",
                         "Partitions of Fetch answered with an error (FailedFetchRequestsPerSec).");
    render_counter(o, m, n, BROKER_C_PRODUCE_THROTTLED, "laminar_quota_produce_throttled_total",
                   "Produce responses throttled by a producer_byte_rate client quota.");
    render_counter(o, m, n, BROKER_C_FETCH_THROTTLED, "laminar_quota_fetch_throttled_total",
                   "Fetch responses throttled (sent empty) by a consumer_byte_rate client quota.");
    render_counter(o, m, n, BROKER_C_REQUEST_THROTTLED, "laminar_quota_request_throttled_total",
                   "Responses throttled by a request_percentage client quota (request time).");
    render_process(o);
}

/* ---- HTTP ----------------------------------------------------------------------------------- */

/* A connection whose request head is still arriving. */
struct http_pending {
    int fd;
    size_t have;
    uint64_t deadline_ms;
    char head[HTTP_REQUEST_BYTES_MAX];
};

struct broker_http {
    struct http_pending pending[HTTP_PENDING_MAX];
    uint32_t npending;
    int fd;
    int wake[2]; /* a pipe: stop writes one byte */
    pthread_t thread;
    broker_http_render_fn render;
    void *ctx;
    const struct console *console; /* NULL: /metrics alone */
};

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void respond(int fd, const char *status, const char *type, const char *extra,
                    const char *body, size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, type, len, extra);
    if (write_all(fd, head, (size_t)n) == 0 && len > 0)
        (void)write_all(fd, body, len);
}

static void respond_text(int fd, int status, const char *msg)
{
    char line[64];
    snprintf(line, sizeof(line), "%d %s", status,
             status == 400   ? "Bad Request"
             : status == 404 ? "Not Found"
             : status == 405 ? "Method Not Allowed"
             : status == 414 ? "URI Too Long"
             : status == 431 ? "Request Header Fields Too Large"
                             : "Error");
    respond(fd, line, "text/plain", "", msg, strlen(msg));
}

static const char *status_text(int status)
{
    switch (status) {
    case 200:
        return "200 OK";
    case 400:
        return "400 Bad Request";
    case 401:
        return "401 Unauthorized";
    case 403:
        return "403 Forbidden";
    case 404:
        return "404 Not Found";
    case 416:
        return "416 Range Not Satisfiable";
    case 502:
        return "502 Bad Gateway";
    case 503:
        return "503 Service Unavailable";
    default:
        return "500 Internal Server Error";
    }
}

/* Answers one complete request head (the socket is blocking, with a send timeout). */
static void serve_one(struct broker_http *h, int fd, const char *head, size_t n)
{
    struct http_request req;
    enum http_parse_err pe = http_parse_request(head, n, &req);
    if (pe != HTTP_OK) {
        respond_text(fd, (int)pe, "bad request\n");
        return;
    }
    bool is_head = strcmp(req.method, "HEAD") == 0;
    if (strcmp(req.method, "GET") != 0 && !is_head) {
        respond_text(fd, 405, "method not allowed\n");
        return;
    }
    if (strcmp(req.path, "/metrics") == 0) {
        struct broker_metrics_out o = {0};
        h->render(h->ctx, &o);
        if (o.failed)
            respond_text(fd, 500, "out of memory\n");
        else
            respond(fd, "200 OK", "text/plain; version=0.0.4; charset=utf-8", "",
                    is_head ? "" : o.buf, is_head ? 0 : o.len);
        free(o.buf);
        return;
    }
    if (h->console == NULL) {
        respond_text(fd, 404, "not found: laminar serves /metrics\n");
        return;
    }
    struct console_response r;
    console_serve(h->console, &req, &r);
    if (r.body.failed) {
        respond_text(fd, 500, "out of memory\n");
    } else {
        const char *extra = r.status == 401 ? "WWW-Authenticate: Basic realm=\"laminar\", "
                                              "charset=\"UTF-8\"\r\n"
                                            : "";
        respond(fd, status_text(r.status), r.type != NULL ? r.type : "text/plain", extra,
                is_head ? "" : r.body.buf, is_head ? 0 : r.body.len);
    }
    free(r.body.buf);
}

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

static void pending_drop(struct broker_http *h, uint32_t i)
{
    close(h->pending[i].fd);
    h->pending[i] = h->pending[--h->npending];
}

/* Reads what pending connection i has sent; answers it once its head is complete (or too long)
 * and drops it then, or when it closed. */
static void pending_read(struct broker_http *h, uint32_t i)
{
    struct http_pending *p = &h->pending[i];
    ssize_t r = recv(p->fd, p->head + p->have, sizeof(p->head) - 1 - p->have, 0);
    if (r < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (r <= 0) {
        pending_drop(h, i);
        return;
    }
    p->have += (size_t)r;
    bool done = memmem(p->head, p->have, "\r\n\r\n", 4) != NULL ||
                memmem(p->head, p->have, "\n\n", 2) != NULL;
    if (!done && p->have + 1 < sizeof(p->head))
        return;
    int fl = fcntl(p->fd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(p->fd, F_SETFL, fl & ~O_NONBLOCK);
    struct timeval tv = {HTTP_IO_TIMEOUT_MS / 1000, (HTTP_IO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(p->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    if (done)
        serve_one(h, p->fd, p->head, p->have);
    else
        respond_text(p->fd, 431, "request head too large\n");
    pending_drop(h, i);
}

/* The HTTP thread: up to HTTP_PENDING_MAX connections read their request heads at once (each
 * within HTTP_IO_TIMEOUT_MS of its accept; a new connection beyond the bound drops the oldest),
 * so idle or trickling clients cannot hold the endpoint; complete requests are answered one at
 * a time. */
static void *http_thread(void *arg)
{
    struct broker_http *h = arg;
    struct pollfd p[2 + HTTP_PENDING_MAX];
    for (;;) {
        uint64_t now = mono_ms();
        int timeout = -1;
        for (uint32_t i = 0; i < h->npending;) {
            if (h->pending[i].deadline_ms <= now) {
                pending_drop(h, i); /* silent or too slow: closed without an answer */
                continue;
            }
            int left = (int)(h->pending[i].deadline_ms - now);
            if (timeout < 0 || left < timeout)
                timeout = left;
            i++;
        }
        p[0] = (struct pollfd){h->fd, POLLIN, 0};
        p[1] = (struct pollfd){h->wake[0], POLLIN, 0};
        uint32_t n = h->npending;
        for (uint32_t i = 0; i < n; i++)
            p[2 + i] = (struct pollfd){h->pending[i].fd, POLLIN, 0};
        int r = poll(p, 2 + n, timeout);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 || (p[1].revents & POLLIN))
            break;
        /* newest first, so dropping (which moves the last entry into the hole) skips nothing */
        for (uint32_t i = n; i-- > 0;)
            if (p[2 + i].revents != 0)
                pending_read(h, i);
        if (!(p[0].revents & POLLIN))
            continue;
        int fd = accept4(h->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE)
                usleep(100000); /* out of descriptors: do not spin */
            continue;
        }
        if (h->npending == HTTP_PENDING_MAX) {
            uint32_t oldest = 0;
            for (uint32_t i = 1; i < h->npending; i++)
                if (h->pending[i].deadline_ms < h->pending[oldest].deadline_ms)
                    oldest = i;
            pending_drop(h, oldest);
        }
        h->pending[h->npending++] = (struct http_pending){
            .fd = fd, .have = 0, .deadline_ms = mono_ms() + HTTP_IO_TIMEOUT_MS};
    }
    while (h->npending > 0)
        pending_drop(h, 0);
    return NULL;
}

int broker_http_start(const char *host, uint16_t port, broker_http_render_fn render, void *ctx,
                      const struct console *console, struct broker_http **out, uint16_t *bound_port)
{
    *out = NULL;
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    if (getaddrinfo(host[0] != 0 ? host : NULL, ps, &hints, &res) != 0 || res == NULL)
        return LM_E_CONFIG;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    int rc = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
        bind(fd, res->ai_addr, res->ai_addrlen) != 0 || listen(fd, 64) != 0)
        rc = LM_E_IO;
    freeaddrinfo(res);
    if (rc != 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        errno = e;
        return rc;
    }
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    if (bound_port != NULL && getsockname(fd, (struct sockaddr *)&ss, &sl) == 0)
        *bound_port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                     : ((struct sockaddr_in *)&ss)->sin_port);
    struct broker_http *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        close(fd);
        return LM_E_NOMEM;
    }
    h->fd = fd;
    h->render = render;
    h->ctx = ctx;
    h->console = console;
    if (pipe2(h->wake, O_CLOEXEC) != 0) {
        close(fd);
        free(h);
        return LM_E_IO;
    }
    if (pthread_create(&h->thread, NULL, http_thread, h) != 0) {
        close(h->wake[0]);
        close(h->wake[1]);
        close(fd);
        free(h);
        return LM_E_IO;
    }
    *out = h;
    return 0;
}

void broker_http_stop(struct broker_http *h)
{
    if (h == NULL)
        return;
    char b = 1;
    ssize_t w = write(h->wake[1], &b, 1);
    (void)w;
    pthread_join(h->thread, NULL);
    close(h->wake[0]);
    close(h->wake[1]);
    close(h->fd);
    free(h);
}
