// null_sink: the ceiling of the produce benchmark. A TCP server that speaks just enough of the
// Kafka protocol for a producer to run at full speed against it, and stores nothing:
//   ApiVersions 0-3, Metadata 0-9 (itself as the only broker, leader of every partition of any
//   topic asked; a topic "exists" as soon as it is named), Produce 3-9 (counts records per
//   partition and answers with the base offset it counted; acks=0 gets no response),
//   InitProducerId 0-1 (for an idempotent producer).
// Fetch 4 is advertised only because librdkafka enables record-batch v2 (its MsgVer2 feature)
// when the broker lists Produce v3 and Fetch v4 (rdkafka_feature.c); a real broker gets v2
// batches, so the ceiling must too. A Fetch, or any other request, closes the connection, the
// way Kafka treats a request it cannot parse.
//
// It is a benchmark tool, not part of the broker: the encoders here are written by hand for the
// versions listed above and share nothing with protocol/. One thread per connection, blocking
// I/O: producers open one connection per broker, so a handful of threads at most.
//
//   null_sink [--listen 127.0.0.1:PORT] [--partitions N] [--verbose]
// Port 0 picks a free port; the first stdout line is "null_sink: listening on 127.0.0.1:PORT".
// SIGTERM/SIGINT print the totals and exit.

#define _GNU_SOURCE // accept4
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define NS_FRAME_BYTES_MAX (64u << 20) // larger than any producer request we expect
#define NS_TOPICS_MAX      1024
#define NS_TOPIC_NAME_MAX  249 // Kafka's limit on topic names
#define NS_PARTITIONS_MAX  1024
#define NS_CONNECTIONS_MAX 256
#define NS_NODE_ID         1

// Kafka API keys and error codes used here (Kafka protocol guide).
enum {
    NS_API_PRODUCE = 0,
    NS_API_FETCH = 1,
    NS_API_METADATA = 3,
    NS_API_API_VERSIONS = 18,
    NS_API_INIT_PRODUCER_ID = 22,
};
enum {
    NS_ERR_NONE = 0,
    NS_ERR_CORRUPT_MESSAGE = 2,
    NS_ERR_UNKNOWN_TOPIC_OR_PARTITION = 3,
    NS_ERR_INVALID_TOPIC = 17,
    NS_ERR_UNSUPPORTED_VERSION = 35,
};

// What ApiVersions advertises; first_flexible is the first version using KIP-482 encodings.
struct ns_api {
    int16_t key, min, max, first_flexible;
};
static const struct ns_api ns_apis[] = {
    // Fetch: feature detection only, see the top comment.
    {NS_API_PRODUCE, 3, 9, 9},      {NS_API_FETCH, 4, 4, 12},           {NS_API_METADATA, 0, 9, 9},
    {NS_API_API_VERSIONS, 0, 3, 3}, {NS_API_INIT_PRODUCER_ID, 0, 1, 2},
};
#define NS_APIS_COUNT     (sizeof(ns_apis) / sizeof(ns_apis[0]))
#define NS_APIS_COUNT_MAX 8
_Static_assert(NS_APIS_COUNT <= NS_APIS_COUNT_MAX, "grow NS_APIS_COUNT_MAX");

struct ns_topic {
    char name[NS_TOPIC_NAME_MAX + 1];
    _Atomic int64_t *next_offset; // one counter per partition
};

static struct {
    int partitions;
    uint16_t port;
    pthread_mutex_t lock; // guards topic creation only; counters are atomic
    struct ns_topic topics[NS_TOPICS_MAX];
    _Atomic int topics_count;
    _Atomic int connections;
    _Atomic int64_t produce_requests;
    _Atomic int64_t records;
    _Atomic int64_t record_bytes;
    _Atomic int64_t next_producer_id;
    volatile sig_atomic_t stop;
    bool verbose;                             // --verbose: log each API version first used
    _Atomic bool seen[NS_APIS_COUNT_MAX][16]; // [api index][version] seen, for --verbose
} ns;

// ---- reading a request ----------------------------------------------------------------------

struct ns_rd {
    const uint8_t *p, *end;
    bool bad; // set on the first out-of-bounds or malformed read; later reads return 0
};

static bool ns_rd_need(struct ns_rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static int16_t ns_rd_i16(struct ns_rd *r)
{
    if (!ns_rd_need(r, 2))
        return 0;
    int16_t v = (int16_t)((r->p[0] << 8) | r->p[1]);
    r->p += 2;
    return v;
}

static int32_t ns_rd_i32(struct ns_rd *r)
{
    if (!ns_rd_need(r, 4))
        return 0;
    uint32_t v =
        ((uint32_t)r->p[0] << 24) | ((uint32_t)r->p[1] << 16) | ((uint32_t)r->p[2] << 8) | r->p[3];
    r->p += 4;
    return (int32_t)v;
}

static uint32_t ns_rd_uvarint(struct ns_rd *r)
{
    uint32_t v = 0;
    for (int shift = 0; shift <= 28; shift += 7) {
        if (!ns_rd_need(r, 1))
            return 0;
        uint8_t b = *r->p++;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            return v;
    }
    r->bad = true; // more than 5 bytes
    return 0;
}

static void ns_rd_skip(struct ns_rd *r, size_t n)
{
    if (ns_rd_need(r, n))
        r->p += n;
}

// A string or bytes field: classic (i16 / i32 length, -1 = null) or compact (uvarint N+1, 0 =
// null). Returns the length, -1 for null; *out points into the request.
static int64_t ns_rd_blob(struct ns_rd *r, bool flexible, bool wide, const uint8_t **out)
{
    int64_t len;
    if (flexible)
        len = (int64_t)ns_rd_uvarint(r) - 1;
    else
        len = wide ? ns_rd_i32(r) : ns_rd_i16(r);
    *out = NULL;
    if (r->bad || len < 0)
        return len < -1 ? (r->bad = true, -1) : -1;
    *out = r->p;
    ns_rd_skip(r, (size_t)len);
    return r->bad ? -1 : len;
}

// Array count: classic i32 (-1 = null) or compact uvarint N+1 (0 = null).
static int32_t ns_rd_count(struct ns_rd *r, bool flexible)
{
    int64_t n = flexible ? (int64_t)ns_rd_uvarint(r) - 1 : ns_rd_i32(r);
    if (n < -1 || n > (int64_t)(r->end - r->p)) { // every element takes at least a byte
        r->bad = true;
        return -1;
    }
    return (int32_t)n;
}

// KIP-482 tagged-field section: every tag is skipped (we know none).
static void ns_rd_tags(struct ns_rd *r)
{
    uint32_t n = ns_rd_uvarint(r);
    for (uint32_t i = 0; i < n && !r->bad; i++) {
        (void)ns_rd_uvarint(r);
        ns_rd_skip(r, ns_rd_uvarint(r));
    }
}

// ---- writing a response ---------------------------------------------------------------------

struct ns_wr {
    uint8_t *buf;
    size_t len, cap;
};

static void ns_wr_room(struct ns_wr *w, size_t n)
{
    if (w->len + n <= w->cap)
        return;
    size_t cap = w->cap ? w->cap : 4096;
    while (cap < w->len + n)
        cap *= 2;
    uint8_t *b = realloc(w->buf, cap);
    if (!b) {
        fprintf(stderr, "null_sink: out of memory\n");
        exit(1);
    }
    w->buf = b;
    w->cap = cap;
}

static void ns_wr_bytes(struct ns_wr *w, const void *p, size_t n)
{
    ns_wr_room(w, n);
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void ns_wr_i8(struct ns_wr *w, int8_t v)
{
    ns_wr_bytes(w, &v, 1);
}

static void ns_wr_i16(struct ns_wr *w, int16_t v)
{
    uint16_t be = htons((uint16_t)v);
    ns_wr_bytes(w, &be, 2);
}

static void ns_wr_i32(struct ns_wr *w, int32_t v)
{
    uint32_t be = htonl((uint32_t)v);
    ns_wr_bytes(w, &be, 4);
}

static void ns_wr_i64(struct ns_wr *w, int64_t v)
{
    ns_wr_i32(w, (int32_t)((uint64_t)v >> 32));
    ns_wr_i32(w, (int32_t)(uint32_t)v);
}

static void ns_wr_uvarint(struct ns_wr *w, uint32_t v)
{
    while (v >= 0x80) {
        ns_wr_i8(w, (int8_t)((v & 0x7f) | 0x80));
        v >>= 7;
    }
    ns_wr_i8(w, (int8_t)v);
}

// Nullable string (s == NULL writes null), classic or compact.
static void ns_wr_str(struct ns_wr *w, bool flexible, const char *s, size_t len)
{
    if (flexible)
        ns_wr_uvarint(w, s ? (uint32_t)len + 1 : 0);
    else
        ns_wr_i16(w, s ? (int16_t)len : -1);
    if (s)
        ns_wr_bytes(w, s, len);
}

static void ns_wr_count(struct ns_wr *w, bool flexible, int32_t n)
{
    if (flexible)
        ns_wr_uvarint(w, (uint32_t)(n + 1));
    else
        ns_wr_i32(w, n);
}

static void ns_wr_no_tags(struct ns_wr *w, bool flexible)
{
    if (flexible)
        ns_wr_uvarint(w, 0);
}

// ---- topics ---------------------------------------------------------------------------------

// Finds or "creates" a topic; NULL when the name is invalid or the table is full.
static struct ns_topic *ns_topic_get(const uint8_t *name, int64_t len)
{
    if (len <= 0 || len > NS_TOPIC_NAME_MAX)
        return NULL;
    int count = atomic_load(&ns.topics_count);
    for (int i = 0; i < count; i++) {
        struct ns_topic *t = &ns.topics[i];
        if (strlen(t->name) == (size_t)len && memcmp(t->name, name, (size_t)len) == 0)
            return t;
    }
    pthread_mutex_lock(&ns.lock);
    struct ns_topic *found = NULL;
    count = atomic_load(&ns.topics_count);
    for (int i = 0; i < count && !found; i++) {
        struct ns_topic *t = &ns.topics[i];
        if (strlen(t->name) == (size_t)len && memcmp(t->name, name, (size_t)len) == 0)
            found = &ns.topics[i];
    }
    if (!found && count < NS_TOPICS_MAX) {
        found = &ns.topics[count];
        memcpy(found->name, name, (size_t)len);
        found->name[len] = '\0';
        found->next_offset = calloc((size_t)ns.partitions, sizeof(*found->next_offset));
        if (!found->next_offset) {
            fprintf(stderr, "null_sink: out of memory\n");
            exit(1);
        }
        atomic_store(&ns.topics_count, count + 1); // publish after the entry is complete
    }
    pthread_mutex_unlock(&ns.lock);
    return found;
}

// ---- handlers -------------------------------------------------------------------------------

// ApiVersions v0-3. A version above ours gets UNSUPPORTED_VERSION with a v0 body (KIP-511); the
// response header is always v0.
static void ns_api_versions(int16_t version, struct ns_wr *w)
{
    bool flexible = version >= 3;
    if (version > 3) {
        flexible = false;
        version = 0;
        ns_wr_i16(w, NS_ERR_UNSUPPORTED_VERSION);
    } else {
        ns_wr_i16(w, NS_ERR_NONE);
    }
    ns_wr_count(w, flexible, (int32_t)NS_APIS_COUNT);
    for (size_t i = 0; i < NS_APIS_COUNT; i++) {
        ns_wr_i16(w, ns_apis[i].key);
        ns_wr_i16(w, ns_apis[i].min);
        ns_wr_i16(w, ns_apis[i].max);
        ns_wr_no_tags(w, flexible);
    }
    if (version >= 1)
        ns_wr_i32(w, 0); // throttle_time_ms
    ns_wr_no_tags(w, flexible);
}

static void ns_metadata_topic(struct ns_wr *w, int16_t version, bool flexible, const uint8_t *name,
                              int64_t name_len, struct ns_topic *t)
{
    ns_wr_i16(w, t ? NS_ERR_NONE : NS_ERR_INVALID_TOPIC);
    ns_wr_str(w, flexible, (const char *)name, (size_t)name_len);
    if (version >= 1)
        ns_wr_i8(w, 0); // is_internal
    int32_t partitions = t ? ns.partitions : 0;
    ns_wr_count(w, flexible, partitions);
    for (int32_t p = 0; p < partitions; p++) {
        ns_wr_i16(w, NS_ERR_NONE);
        ns_wr_i32(w, p);
        ns_wr_i32(w, NS_NODE_ID); // leader
        if (version >= 7)
            ns_wr_i32(w, 0);         // leader_epoch
        ns_wr_count(w, flexible, 1); // replicas
        ns_wr_i32(w, NS_NODE_ID);
        ns_wr_count(w, flexible, 1); // isr
        ns_wr_i32(w, NS_NODE_ID);
        if (version >= 5)
            ns_wr_count(w, flexible, 0); // offline_replicas
        ns_wr_no_tags(w, flexible);
    }
    if (version >= 8)
        ns_wr_i32(w, INT32_MIN); // topic_authorized_operations: not requested / unknown
    ns_wr_no_tags(w, flexible);
}

// Metadata v0-9: this node is the only broker, the controller and every partition's leader.
static int ns_metadata(struct ns_rd *r, int16_t version, const char *host, struct ns_wr *w)
{
    bool flexible = version >= 9;
    int32_t n = ns_rd_count(r, flexible);
    // v0: an empty array means all topics; v1+: null means all, empty means none.
    bool all = (version == 0 && n == 0) || n < 0;
    const uint8_t *names[NS_TOPICS_MAX];
    int64_t lens[NS_TOPICS_MAX];
    if (n > NS_TOPICS_MAX)
        return -1;
    for (int32_t i = 0; i < n; i++) {
        lens[i] = ns_rd_blob(r, flexible, false, &names[i]);
        if (flexible)
            ns_rd_tags(r);
    }
    // allow_auto_topic_creation (v4+) and the authorized-operations flags (v8+) are ignored:
    // every topic asked for exists here.
    if (r->bad)
        return -1;

    if (version >= 3)
        ns_wr_i32(w, 0);         // throttle_time_ms
    ns_wr_count(w, flexible, 1); // brokers
    ns_wr_i32(w, NS_NODE_ID);
    ns_wr_str(w, flexible, host, strlen(host));
    ns_wr_i32(w, ns.port);
    if (version >= 1)
        ns_wr_str(w, flexible, NULL, 0); // rack
    ns_wr_no_tags(w, flexible);
    if (version >= 2)
        ns_wr_str(w, flexible, "null-sink", 9); // cluster_id
    if (version >= 1)
        ns_wr_i32(w, NS_NODE_ID); // controller_id
    if (all) {
        int count = atomic_load(&ns.topics_count);
        ns_wr_count(w, flexible, count);
        for (int i = 0; i < count; i++) {
            struct ns_topic *t = &ns.topics[i];
            ns_metadata_topic(w, version, flexible, (const uint8_t *)t->name,
                              (int64_t)strlen(t->name), t);
        }
    } else {
        ns_wr_count(w, flexible, n);
        for (int32_t i = 0; i < n; i++) {
            if (!names[i])
                return -1; // a null topic name is only valid with topic ids (v10+)
            struct ns_topic *t = ns_topic_get(names[i], lens[i]);
            ns_metadata_topic(w, version, flexible, names[i], lens[i], t);
        }
    }
    if (version >= 8)
        ns_wr_i32(w, INT32_MIN); // cluster_authorized_operations (v8-10)
    ns_wr_no_tags(w, flexible);
    return 0;
}

// Walks the v2 record batches of one partition's records field (layout in PROTOCOL-NOTES.md):
// returns the record count, or -1 when a batch header is malformed. No CRC check: the ceiling
// does no work a client would not notice.
static int64_t ns_count_records(const uint8_t *p, int64_t len)
{
    int64_t records = 0;
    while (len > 0) {
        if (len < 61)
            return -1;
        int32_t batch_len = (int32_t)(((uint32_t)p[8] << 24) | ((uint32_t)p[9] << 16) |
                                      ((uint32_t)p[10] << 8) | p[11]);
        if (p[16] != 2 || batch_len < 49 || batch_len > len - 12)
            return -1;
        int32_t count = (int32_t)(((uint32_t)p[57] << 24) | ((uint32_t)p[58] << 16) |
                                  ((uint32_t)p[59] << 8) | p[60]);
        if (count < 0)
            return -1;
        records += count;
        p += 12 + batch_len;
        len -= 12 + batch_len;
    }
    return records;
}

// Produce v3-9. Sets *respond to false for acks=0, which gets no response at all.
static int ns_produce(struct ns_rd *r, int16_t version, struct ns_wr *w, bool *respond)
{
    bool flexible = version >= 9;
    const uint8_t *s;
    (void)ns_rd_blob(r, flexible, false, &s); // transactional_id
    int16_t acks = ns_rd_i16(r);
    (void)ns_rd_i32(r); // timeout_ms
    int32_t topics = ns_rd_count(r, flexible);
    if (r->bad || topics < 0)
        return -1;
    *respond = acks != 0;
    atomic_fetch_add(&ns.produce_requests, 1);

    ns_wr_count(w, flexible, topics);
    for (int32_t i = 0; i < topics; i++) {
        const uint8_t *name;
        int64_t name_len = ns_rd_blob(r, flexible, false, &name);
        int32_t parts = ns_rd_count(r, flexible);
        if (r->bad || !name || parts < 0)
            return -1;
        struct ns_topic *t = ns_topic_get(name, name_len);
        ns_wr_str(w, flexible, (const char *)name, (size_t)name_len);
        ns_wr_count(w, flexible, parts);
        for (int32_t j = 0; j < parts; j++) {
            int32_t index = ns_rd_i32(r);
            const uint8_t *records;
            int64_t records_len = ns_rd_blob(r, flexible, true, &records);
            if (flexible)
                ns_rd_tags(r);
            if (r->bad)
                return -1;
            int16_t err = NS_ERR_NONE;
            int64_t base = -1;
            int64_t count = records ? ns_count_records(records, records_len) : 0;
            if (!t || index < 0 || index >= ns.partitions)
                err = NS_ERR_UNKNOWN_TOPIC_OR_PARTITION;
            else if (count < 0)
                err = NS_ERR_CORRUPT_MESSAGE;
            else {
                base = atomic_fetch_add(&t->next_offset[index], count);
                atomic_fetch_add(&ns.records, count);
                atomic_fetch_add(&ns.record_bytes, records_len);
            }
            ns_wr_i32(w, index);
            ns_wr_i16(w, err);
            ns_wr_i64(w, base);
            ns_wr_i64(w, -1); // log_append_time_ms: CreateTime topics
            if (version >= 5)
                ns_wr_i64(w, 0); // log_start_offset
            if (version >= 8) {
                ns_wr_count(w, flexible, 0);     // record_errors
                ns_wr_str(w, flexible, NULL, 0); // error_message
            }
            ns_wr_no_tags(w, flexible);
        }
        if (flexible)
            ns_rd_tags(r);
        ns_wr_no_tags(w, flexible);
    }
    ns_wr_i32(w, 0); // throttle_time_ms
    ns_wr_no_tags(w, flexible);
    return r->bad ? -1 : 0;
}

// InitProducerId v0-1: a fresh producer id, epoch 0.
static int ns_init_producer_id(struct ns_rd *r, struct ns_wr *w)
{
    const uint8_t *s;
    (void)ns_rd_blob(r, false, false, &s); // transactional_id
    (void)ns_rd_i32(r);                    // transaction_timeout_ms
    if (r->bad)
        return -1;
    ns_wr_i32(w, 0); // throttle_time_ms
    ns_wr_i16(w, NS_ERR_NONE);
    ns_wr_i64(w, atomic_fetch_add(&ns.next_producer_id, 1));
    ns_wr_i16(w, 0); // producer_epoch
    return 0;
}

// ---- connections ----------------------------------------------------------------------------

static int ns_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static const struct ns_api *ns_api_find(int16_t key)
{
    for (size_t i = 0; i < NS_APIS_COUNT; i++)
        if (ns_apis[i].key == key)
            return &ns_apis[i];
    return NULL;
}

// Serves one request frame (without its length prefix). Returns -1 to close the connection.
static int ns_serve_frame(const uint8_t *frame, size_t len, const char *host, struct ns_wr *w)
{
    struct ns_rd r = {frame, frame + len, false};
    int16_t key = ns_rd_i16(&r);
    int16_t version = ns_rd_i16(&r);
    int32_t correlation_id = ns_rd_i32(&r);
    const uint8_t *client_id;
    (void)ns_rd_blob(&r, false, false, &client_id); // header v1+ keeps a classic string
    if (r.bad)
        return -1;
    const struct ns_api *api = ns_api_find(key);
    bool ok_version = api && version >= api->min && version <= api->max;
    if (!api || key == NS_API_FETCH || (!ok_version && key != NS_API_API_VERSIONS)) {
        fprintf(stderr, "null_sink: closing on request key %d v%d (not served)\n", key, version);
        return -1;
    }
    bool flexible = version >= api->first_flexible;
    if (flexible)
        ns_rd_tags(&r); // request header v2
    if (ns.verbose && version >= 0 && version < 16 &&
        !atomic_exchange(&ns.seen[api - ns_apis][version], true))
        fprintf(stderr, "null_sink: first request key %d v%d\n", key, version);

    w->len = 0;
    ns_wr_i32(w, 0); // length, patched below
    ns_wr_i32(w, correlation_id);
    // Response header v1 (tagged fields) for flexible versions, except ApiVersions (always v0).
    if (flexible && key != NS_API_API_VERSIONS)
        ns_wr_no_tags(w, true);
    bool respond = true;
    int rc = 0;
    switch (key) {
    case NS_API_API_VERSIONS:
        ns_api_versions(version, w);
        break;
    case NS_API_METADATA:
        rc = ns_metadata(&r, version, host, w);
        break;
    case NS_API_PRODUCE:
        rc = ns_produce(&r, version, w, &respond);
        break;
    case NS_API_INIT_PRODUCER_ID:
        rc = ns_init_producer_id(&r, w);
        break;
    default:
        return -1;
    }
    if (rc < 0) {
        fprintf(stderr, "null_sink: malformed request key %d v%d, closing\n", key, version);
        return -1;
    }
    if (!respond) {
        w->len = 0; // acks=0: the producer expects nothing back
        return 0;
    }
    uint32_t be = htonl((uint32_t)(w->len - 4));
    memcpy(w->buf, &be, 4);
    return 0;
}

struct ns_conn {
    int fd;
};

static void *ns_conn_main(void *arg)
{
    struct ns_conn *c = arg;
    int fd = c->fd;
    free(c);
    struct sockaddr_in local;
    socklen_t local_len = sizeof(local);
    char host[INET_ADDRSTRLEN] = "127.0.0.1";
    // Advertise the address the client reached us on, so it connects back to the same one.
    if (getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
        inet_ntop(AF_INET, &local.sin_addr, host, sizeof(host));

    size_t cap = 1u << 20, have = 0;
    uint8_t *buf = malloc(cap);
    struct ns_wr w = {0};
    if (!buf) {
        fprintf(stderr, "null_sink: out of memory\n");
        exit(1);
    }
    for (;;) {
        // Serve every complete frame in the buffer, then read more.
        size_t off = 0;
        int rc = 0;
        while (have - off >= 4) {
            uint32_t be;
            memcpy(&be, buf + off, 4);
            uint32_t flen = ntohl(be);
            if (flen < 8 || flen > NS_FRAME_BYTES_MAX) {
                fprintf(stderr, "null_sink: bad frame length %u, closing\n", flen);
                rc = -1;
                break;
            }
            if (have - off - 4 < flen) {
                if (flen + 4 > cap) {
                    size_t ncap = cap;
                    while (ncap < flen + 4)
                        ncap *= 2;
                    uint8_t *nb = realloc(buf, ncap);
                    if (!nb) {
                        fprintf(stderr, "null_sink: out of memory\n");
                        exit(1);
                    }
                    buf = nb;
                    cap = ncap;
                }
                break;
            }
            w.len = 0;
            rc = ns_serve_frame(buf + off + 4, flen, host, &w);
            if (rc == 0 && w.len > 0)
                rc = ns_write_all(fd, w.buf, w.len);
            if (rc < 0)
                break;
            off += 4 + flen;
        }
        if (rc < 0)
            break;
        memmove(buf, buf + off, have - off);
        have -= off;
        ssize_t k = recv(fd, buf + have, cap - have, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        have += (size_t)k;
    }
    close(fd);
    free(buf);
    free(w.buf);
    atomic_fetch_sub(&ns.connections, 1);
    return NULL;
}

static void ns_on_signal(int sig)
{
    (void)sig;
    ns.stop = 1;
}

static int ns_parse_listen(const char *s, struct sockaddr_in *sa)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof(host))
        return -1;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return -1;
    memset(sa, 0, sizeof(*sa));
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        return -1;
    // Loopback only: this tool never listens on a routable address.
    if ((ntohl(sa->sin_addr.s_addr) >> 24) != 127)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    const char *listen_at = "127.0.0.1:0";
    ns.partitions = 16;
    static const struct option opts[] = {{"listen", required_argument, NULL, 'l'},
                                         {"partitions", required_argument, NULL, 'p'},
                                         {"verbose", no_argument, NULL, 'v'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "l:p:vh", opts, NULL)) != -1) {
        switch (o) {
        case 'l':
            listen_at = optarg;
            break;
        case 'p':
            ns.partitions = atoi(optarg);
            break;
        case 'v':
            ns.verbose = true;
            break;
        default:
            fprintf(stderr, "usage: null_sink [--listen 127.0.0.1:PORT] [--partitions N]"
                            " [--verbose]\n");
            return o == 'h' ? 0 : 2;
        }
    }
    if (ns.partitions < 1 || ns.partitions > NS_PARTITIONS_MAX) {
        fprintf(stderr, "null_sink: --partitions must be 1..%d\n", NS_PARTITIONS_MAX);
        return 2;
    }
    struct sockaddr_in sa;
    if (ns_parse_listen(listen_at, &sa) < 0) {
        fprintf(stderr, "null_sink: --listen wants 127.x.y.z:PORT, got %s\n", listen_at);
        return 2;
    }
    pthread_mutex_init(&ns.lock, NULL);
    atomic_store(&ns.next_producer_id, 1000);

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(lfd, 128) < 0) {
        fprintf(stderr, "null_sink: cannot listen on %s: %s\n", listen_at, strerror(errno));
        return 1;
    }
    socklen_t sl = sizeof(sa);
    if (getsockname(lfd, (struct sockaddr *)&sa, &sl) < 0) {
        perror("null_sink: getsockname");
        return 1;
    }
    ns.port = ntohs(sa.sin_port);
    char host[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &sa.sin_addr, host, sizeof(host));
    printf("null_sink: listening on %s:%u (%d partitions per topic)\n", host, ns.port,
           ns.partitions);
    fflush(stdout);

    struct sigaction act = {0};
    act.sa_handler = ns_on_signal;
    sigaction(SIGTERM, &act, NULL);
    sigaction(SIGINT, &act, NULL);
    signal(SIGPIPE, SIG_IGN);

    while (!ns.stop) {
        struct pollfd pfd = {.fd = lfd, .events = POLLIN};
        int n = poll(&pfd, 1, 200);
        if (n <= 0)
            continue;
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        if (atomic_load(&ns.connections) >= NS_CONNECTIONS_MAX) {
            close(fd);
            continue;
        }
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        struct ns_conn *c = malloc(sizeof(*c));
        pthread_t th;
        pthread_attr_t attr;
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        atomic_fetch_add(&ns.connections, 1);
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, ns_conn_main, c) != 0) {
            atomic_fetch_sub(&ns.connections, 1);
            close(fd);
            free(c);
        }
        pthread_attr_destroy(&attr);
    }
    printf(
        "null_sink: %" PRId64 " produce requests, %" PRId64 " records, %" PRId64 " record bytes\n",
        atomic_load(&ns.produce_requests), atomic_load(&ns.records), atomic_load(&ns.record_bytes));
    return 0;
}
