/* Setup, the served-version table, ApiVersions, the dispatcher, per-shard state and the
 * reconciliation of a shard's partition logs with the metadata store (handlers.h). */
#include "broker/handlers/handlers.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>

#include "broker/handlers/group_internal.h"
#include "broker/handlers/handlers_internal.h"
#include "common/lm_hash.h"
#include "broker/log.h"
#include "broker/producer/producer_state.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_messages.h"

/* ---- codec helpers ------------------------------------------------------------------------ */

void *h_alloc(struct broker_req *req, size_t n, size_t size)
{
    return kafka_arena_alloc_array(&req->arena, n ? n : 1, size, 16);
}

char *h_strdup(struct broker_req *req, struct kafka_str s)
{
    if (s.len < 0)
        return NULL;
    char *p = kafka_arena_alloc(&req->arena, (size_t)s.len + 1, 1);
    if (p != NULL && s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    return p;
}

void h_close(struct broker_req *req, const char *why)
{
    BLOG_WARN_LIMITED("api %d v%d (correlation id %d): %s, closing", req->api_key, req->api_version,
                      req->correlation_id, why);
    broker_req_close_after(req);
    broker_req_respond_none(req);
}

bool h_decode(struct broker_req *req, void *msg)
{
    const struct kafka_api_info *api = kafka_api_lookup(req->api_key);
    LM_ASSERT(api != NULL);
    struct kafka_reader r;
    kafka_reader_init(&r, req->body, req->body_len);
    int rc = api->request.decode(&r, req->api_version, msg, &req->arena);
    if (rc != 0) {
        /* Kafka closes the connection on a request it cannot parse. */
        h_close(req, lm_strerror(rc));
        return false;
    }
    return true;
}

bool h_encode(struct broker_req *req, const void *msg, const uint8_t **out, size_t *out_len)
{
    const struct kafka_api_info *api = kafka_api_lookup(req->api_key);
    LM_ASSERT(api != NULL);
    size_t n = api->response.size(req->api_version, msg);
    uint8_t *buf = kafka_arena_alloc(&req->arena, n, 16);
    if (buf == NULL)
        return false;
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    int rc = api->response.encode(&w, req->api_version, msg);
    LM_ASSERT(rc != 0 || w.pos == n);
    if (rc != 0)
        return false;
    *out = buf;
    *out_len = n;
    return true;
}

void h_respond(struct broker_req *req, const void *msg)
{
    const uint8_t *buf;
    size_t n;
    if (h_encode(req, msg, &buf, &n))
        broker_req_respond(req, buf, n);
    else
        h_close(req, "response encoding failed (arena exhausted)");
}

int16_t h_storage_error(int rc)
{
    switch (rc) {
    case 0:
        return KAFKA_NONE;
    case LM_E_OUT_OF_RANGE:
        return KAFKA_OFFSET_OUT_OF_RANGE;
    case LM_E_CRC:
    case LM_E_TRUNCATED:
    case LM_E_CORRUPT:
    case LM_E_COMPRESSION:
        return KAFKA_CORRUPT_MESSAGE;
    case LM_E_MAGIC:
    case LM_E_SEQUENCE: /* a client batch whose offset range and record count disagree */
        return KAFKA_INVALID_RECORD;
    case LM_E_TOO_LARGE:
        return KAFKA_RECORD_LIST_TOO_LARGE;
    case LM_E_NOMEM:
        return KAFKA_UNKNOWN_SERVER_ERROR;
    default:
        /* Everything else from the storage layer is the disk's doing, not the request's: a
         * full or read-only file system, an I/O error, a log failed by an earlier fsync
         * (LM_E_STATE), and any storage code added later. KAFKA_STORAGE_ERROR is retriable,
         * so producers retry while the partition recovers (Kafka answers a failed log dir
         * the same way). */
        return KAFKA_KAFKA_STORAGE_ERROR;
    }
}

bool h_topic_internal(const char *name, size_t len)
{
    static const char *const internal[] = {"__consumer_offsets", "__transaction_state"};
    for (size_t i = 0; i < sizeof(internal) / sizeof(internal[0]); i++)
        if (name != NULL && strlen(internal[i]) == len && memcmp(internal[i], name, len) == 0)
            return true;
    return false;
}

/* ---- unsupported versions ------------------------------------------------------------------ */

/* Responses with a top-level error_code, from the generated structs: where it sits and from
 * which version it is on the wire. */
struct top_error {
    int16_t key;
    int16_t min_version;
    size_t offset;
};
static const struct top_error top_errors[] = {
    {KAFKA_ADD_OFFSETS_TO_TXN_KEY, 0,
     offsetof(struct kafka_add_offsets_to_txn_response, error_code)},
    {KAFKA_ADD_PARTITIONS_TO_TXN_KEY, 4,
     offsetof(struct kafka_add_partitions_to_txn_response, error_code)},
    {KAFKA_CONSUMER_GROUP_HEARTBEAT_KEY, 0,
     offsetof(struct kafka_consumer_group_heartbeat_response, error_code)},
    {KAFKA_DESCRIBE_ACLS_KEY, 0, offsetof(struct kafka_describe_acls_response, error_code)},
    {KAFKA_DESCRIBE_CLUSTER_KEY, 0, offsetof(struct kafka_describe_cluster_response, error_code)},
    {KAFKA_END_TXN_KEY, 0, offsetof(struct kafka_end_txn_response, error_code)},
    {KAFKA_FETCH_KEY, 7, offsetof(struct kafka_fetch_response, error_code)},
    {KAFKA_FIND_COORDINATOR_KEY, 0, offsetof(struct kafka_find_coordinator_response, error_code)},
    {KAFKA_HEARTBEAT_KEY, 0, offsetof(struct kafka_heartbeat_response, error_code)},
    {KAFKA_INIT_PRODUCER_ID_KEY, 0, offsetof(struct kafka_init_producer_id_response, error_code)},
    {KAFKA_JOIN_GROUP_KEY, 0, offsetof(struct kafka_join_group_response, error_code)},
    {KAFKA_LEAVE_GROUP_KEY, 0, offsetof(struct kafka_leave_group_response, error_code)},
    {KAFKA_LIST_GROUPS_KEY, 0, offsetof(struct kafka_list_groups_response, error_code)},
    {KAFKA_LIST_TRANSACTIONS_KEY, 0, offsetof(struct kafka_list_transactions_response, error_code)},
    {KAFKA_OFFSET_DELETE_KEY, 0, offsetof(struct kafka_offset_delete_response, error_code)},
    {KAFKA_OFFSET_FETCH_KEY, 2, offsetof(struct kafka_offset_fetch_response, error_code)},
    {KAFKA_SASL_AUTHENTICATE_KEY, 0, offsetof(struct kafka_sasl_authenticate_response, error_code)},
    {KAFKA_SASL_HANDSHAKE_KEY, 0, offsetof(struct kafka_sasl_handshake_response, error_code)},
    {KAFKA_SYNC_GROUP_KEY, 0, offsetof(struct kafka_sync_group_response, error_code)},
};

static void api_versions_fill(struct broker_req *req, struct kafka_api_versions_response *resp);

void handlers_respond_unsupported(struct broker_req *req)
{
    const struct kafka_api_info *api = kafka_api_lookup(req->api_key);
    if (req->api_key == KAFKA_API_VERSIONS_KEY) {
        /* KIP-511: error 35 and our ranges in a v0 body (response header v0 as always). */
        struct kafka_api_versions_response resp;
        kafka_api_versions_response_init(&resp);
        api_versions_fill(req, &resp);
        resp.error_code = KAFKA_UNSUPPORTED_VERSION;
        size_t n = kafka_api_versions_response_size(0, &resp);
        uint8_t *buf = kafka_arena_alloc(&req->arena, n, 16);
        struct kafka_writer w;
        kafka_writer_init(&w, buf, n);
        if (buf == NULL || kafka_api_versions_response_encode(&w, 0, &resp) != 0) {
            h_close(req, "ApiVersions error response failed");
            return;
        }
        broker_req_respond(req, buf, n);
        return;
    }
    if (api == NULL || req->api_version < api->min_version || req->api_version > api->max_version) {
        h_close(req, "unsupported api version (outside the codec's range)");
        return;
    }
    for (size_t i = 0; i < sizeof(top_errors) / sizeof(top_errors[0]); i++) {
        if (top_errors[i].key != req->api_key || req->api_version < top_errors[i].min_version)
            continue;
        void *m = kafka_arena_alloc(&req->arena, api->response.struct_size, 16);
        if (m == NULL) {
            h_close(req, "arena exhausted");
            return;
        }
        api->response.init(m);
        int16_t code = KAFKA_UNSUPPORTED_VERSION;
        memcpy((uint8_t *)m + top_errors[i].offset, &code, sizeof(code));
        BLOG_DEBUG("api %s v%d not served: UNSUPPORTED_VERSION", api->name, req->api_version);
        h_respond(req, m);
        return;
    }
    h_close(req, "unsupported api version (no top-level error code to say so)");
}

/* ---- ApiVersions ----------------------------------------------------------------------------- */

static void api_versions_fill(struct broker_req *req, struct kafka_api_versions_response *resp)
{
    const struct handlers_ctx *h = h_node(req);
    int32_t n = 0;
    for (int k = 0; k < BROKER_API_KEYS_MAX; k++)
        n += h->served[k].max_version >= 0;
    resp->api_keys = h_alloc(req, (size_t)n, sizeof(*resp->api_keys));
    if (resp->api_keys == NULL) {
        resp->api_keys_count = 0;
        return;
    }
    int32_t i = 0;
    for (int k = 0; k < BROKER_API_KEYS_MAX; k++) {
        if (h->served[k].max_version < 0)
            continue;
        resp->api_keys[i].api_key = (int16_t)k;
        resp->api_keys[i].min_version = h->served[k].min_version;
        resp->api_keys[i].max_version = h->served[k].max_version;
        i++;
    }
    LM_ASSERT(i == n);
    resp->api_keys_count = n;
    resp->throttle_time_ms = 0;
}

static void api_versions(struct broker_req *req)
{
    struct kafka_api_versions_request rq;
    kafka_api_versions_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    struct kafka_api_versions_response resp;
    kafka_api_versions_response_init(&resp);
    api_versions_fill(req, &resp);
    /* The feature levels (KIP-584, admin_features.c): tagged fields, sent from v3. */
    if (handlers_admin_features_fill(req, &resp) != 0) {
        h_close(req, "arena exhausted");
        return;
    }
    h_respond(req, &resp);
}

/* ---- dispatch ------------------------------------------------------------------------------ */

/* Every request goes through here: refresh the shard's metadata view (one atomic load when
 * nothing changed), check the served range, then the API's handler. */
static void handlers_dispatch(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    const struct handlers_ctx *h = hs->node;
    hs_refresh(hs);
    int16_t key = req->api_key;
    LM_ASSERT(key >= 0 && key < BROKER_API_KEYS_MAX);
    if (h->fns[key] == NULL || req->api_version < h->served[key].min_version ||
        req->api_version > h->served[key].max_version) {
        handlers_respond_unsupported(req);
        return;
    }
    h->fns[key](req);
}

int handlers_serve(struct broker_dispatch *d, int16_t api_key, int16_t min_version,
                   int16_t max_version, broker_handler_fn fn)
{
    const struct kafka_api_info *api = kafka_api_lookup(api_key);
    if (api == NULL || fn == NULL || min_version < api->min_version ||
        max_version > api->max_version || min_version > max_version || d->ctx == NULL)
        return LM_E_INVALID;
    int rc = broker_dispatch_register(d, api_key, handlers_dispatch, api->first_flexible);
    if (rc != 0)
        return rc;
    struct handlers_ctx *h = d->ctx;
    h->served[api_key].min_version = min_version;
    h->served[api_key].max_version = max_version;
    h->fns[api_key] = fn;
    return 0;
}

/* ---- per-shard topic table --------------------------------------------------------------- */

struct hshard *hs_of(struct broker_shard *s)
{
    struct hshard *hs = broker_shard_user(s);
    LM_ASSERT(hs != NULL);
    return hs;
}

struct handlers_ctx *h_node(const struct broker_req *req)
{
    return hs_of(req->shard)->node;
}

/* ---- leader epochs ------------------------------------------------------------------------- */

/* Epochs other than HANDLERS_LEADER_EPOCH_FIRST, shared by the node's shards (Metadata and
 * DescribeTopicPartitions answer on the request's shard). Almost every partition is at the
 * first term, so the table holds only the exceptions (logs from older terms, a quorum-state
 * from a later one) and is looked up only while it holds any. */
#define EPOCH_BUCKETS HANDLERS_PART_BUCKETS

struct hepoch {
    uint8_t id[16];
    int32_t partition;
    int32_t epoch;
    struct hepoch *next;
};

static size_t epoch_bucket(const uint8_t id[16], int32_t partition)
{
    return (lm_fnv1a64(id, 16) ^ ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ull)) %
           EPOCH_BUCKETS;
}

int32_t h_partition_epoch(const struct handlers_ctx *node, const uint8_t topic_id[16],
                          int32_t partition)
{
    struct handlers_ctx *h = (struct handlers_ctx *)node; /* the lock, not the table */
    if (__atomic_load_n(&h->epoch_count, __ATOMIC_ACQUIRE) == 0)
        return HANDLERS_LEADER_EPOCH_FIRST;
    int32_t epoch = HANDLERS_LEADER_EPOCH_FIRST;
    pthread_mutex_lock(&h->epoch_lock);
    for (struct hepoch *e = h->epoch_buckets[epoch_bucket(topic_id, partition)]; e != NULL;
         e = e->next)
        if (e->partition == partition && memcmp(e->id, topic_id, 16) == 0) {
            epoch = e->epoch;
            break;
        }
    pthread_mutex_unlock(&h->epoch_lock);
    return epoch;
}

/* Records p's epoch for the other shards (HANDLERS_LEADER_EPOCH_FIRST: no entry). */
static void part_set_epoch(struct hpart *p, int32_t epoch)
{
    struct handlers_ctx *h = p->hs->node;
    size_t b = epoch_bucket(p->topic_id, p->partition);
    pthread_mutex_lock(&h->epoch_lock);
    struct hepoch **e = &h->epoch_buckets[b];
    while (*e != NULL &&
           !((*e)->partition == p->partition && memcmp((*e)->id, p->topic_id, 16) == 0))
        e = &(*e)->next;
    if (*e != NULL && epoch == HANDLERS_LEADER_EPOCH_FIRST) {
        struct hepoch *gone = *e;
        *e = gone->next;
        free(gone);
        __atomic_sub_fetch(&h->epoch_count, 1, __ATOMIC_RELEASE);
    } else if (*e != NULL) {
        (*e)->epoch = epoch;
    } else if (epoch != HANDLERS_LEADER_EPOCH_FIRST) {
        struct hepoch *n = calloc(1, sizeof(*n));
        if (n != NULL) { /* without memory Metadata shows the first epoch: clients refresh */
            memcpy(n->id, p->topic_id, 16);
            n->partition = p->partition;
            n->epoch = epoch;
            n->next = h->epoch_buckets[b];
            h->epoch_buckets[b] = n;
            __atomic_add_fetch(&h->epoch_count, 1, __ATOMIC_RELEASE);
        }
    }
    pthread_mutex_unlock(&h->epoch_lock);
}

/* ---- offline partitions ------------------------------------------------------------------ */

/* Partitions whose log failed, shared by the node's shards: Metadata is answered on the
 * request's shard, the log lives on the owner. A chained hash under one lock, taken only while
 * some partition is offline (offline_count is checked first). */
#define OFFLINE_BUCKETS HANDLERS_PART_BUCKETS

struct hoffline {
    uint8_t id[16];
    int32_t partition;
    struct hoffline *next;
};

static size_t offline_bucket(const uint8_t id[16], int32_t partition)
{
    return (lm_fnv1a64(id, 16) ^ ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ull)) %
           OFFLINE_BUCKETS;
}

bool h_partition_offline(const struct handlers_ctx *node, const uint8_t topic_id[16],
                         int32_t partition)
{
    struct handlers_ctx *h = (struct handlers_ctx *)node; /* the lock, not the table */
    if (__atomic_load_n(&h->offline_count, __ATOMIC_ACQUIRE) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock(&h->offline_lock);
    for (struct hoffline *o = h->offline_buckets[offline_bucket(topic_id, partition)]; o != NULL;
         o = o->next)
        if (o->partition == partition && memcmp(o->id, topic_id, 16) == 0) {
            found = true;
            break;
        }
    pthread_mutex_unlock(&h->offline_lock);
    return found;
}

static void part_set_offline(struct hpart *p, bool offline)
{
    if (p->offline == offline)
        return;
    struct handlers_ctx *h = p->hs->node;
    size_t b = offline_bucket(p->topic_id, p->partition);
    pthread_mutex_lock(&h->offline_lock);
    if (offline) {
        struct hoffline *o = calloc(1, sizeof(*o));
        if (o != NULL) {
            memcpy(o->id, p->topic_id, 16);
            o->partition = p->partition;
            o->next = h->offline_buckets[b];
            h->offline_buckets[b] = o;
            __atomic_add_fetch(&h->offline_count, 1, __ATOMIC_RELEASE);
            p->offline = true;
        }
    } else {
        for (struct hoffline **o = &h->offline_buckets[b]; *o != NULL; o = &(*o)->next) {
            if ((*o)->partition == p->partition && memcmp((*o)->id, p->topic_id, 16) == 0) {
                struct hoffline *gone = *o;
                *o = gone->next;
                free(gone);
                __atomic_sub_fetch(&h->offline_count, 1, __ATOMIC_RELEASE);
                break;
            }
        }
        p->offline = false;
    }
    pthread_mutex_unlock(&h->offline_lock);
}

/* The next attempt after a failed open: HANDLERS_RETRY_MIN_MS, doubling up to
 * HANDLERS_RETRY_MAX_MS while it keeps failing. */
static void part_schedule_retry(struct hpart *p)
{
    p->retry_ms = p->retry_ms == 0                          ? HANDLERS_RETRY_MIN_MS
                  : p->retry_ms * 2 > HANDLERS_RETRY_MAX_MS ? HANDLERS_RETRY_MAX_MS
                                                            : p->retry_ms * 2;
    p->retry_at_ms = broker_now_ms() + p->retry_ms;
}

struct htopic *hs_topic(struct hshard *hs, const char *name, size_t len)
{
    if (hs->bucket_count == 0 || name == NULL)
        return NULL;
    struct htopic *t = hs->buckets[lm_fnv1a64(name, len) % hs->bucket_count];
    for (; t != NULL; t = t->next)
        if (strlen(t->meta->name) == len && memcmp(t->meta->name, name, len) == 0)
            return t;
    return NULL;
}

struct htopic *hs_topic_by_id(struct hshard *hs, const uint8_t id[16])
{
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            if (memcmp(t->meta->id, id, 16) == 0)
                return t;
    return NULL;
}

static bool part_ensure_open(struct hpart *p);
static void oq_remove(struct hshard *hs, struct hpart *p);
static void part_open_log(struct hpart *p);

struct hpart *hs_part(struct hshard *hs, const char *topic, size_t len, int32_t partition)
{
    struct htopic *t = hs_topic(hs, topic, len);
    if (t == NULL || partition < 0 || partition >= t->meta->partition_count ||
        partition >= t->part_cap)
        return NULL;
    struct hpart *p = t->parts[partition];
    if (p != NULL && p->open_pending) {
        /* A request needs it now: open it ahead of its turn in the work queue. */
        oq_remove(hs, p);
        part_open_log(p);
    } else if (p != NULL && (p->log != NULL || p->idle_closed)) {
        part_ensure_open(p);
    }
    return p;
}

uint32_t hs_owner(struct hshard *hs, const char *topic, size_t len, int32_t partition)
{
    return broker_partition_shard(topic, len, partition, hs->count);
}

static void storage_report(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level > 0)
        BLOG_WARN("storage: %s", msg);
    else
        BLOG_INFO("storage: %s", msg);
}

/* Kafka's "never" for flush.messages / flush.ms is Long.MAX_VALUE; storage says -1. */
static int64_t flush_policy(int64_t v)
{
    return v <= 0 || v >= INT64_MAX / 2 ? -1 : v;
}

static void storage_cfg_of(const struct lm_topic_settings *st, struct storage_config *c)
{
    storage_config_default(c);
    c->segment_bytes = st->segment_bytes > 0 ? (uint64_t)st->segment_bytes : c->segment_bytes;
    c->segment_ms = st->segment_ms > 0 ? st->segment_ms : -1;
    if (st->index_interval_bytes > 0)
        c->index_interval_bytes = (uint32_t)st->index_interval_bytes;
    c->retention_bytes = st->retention_bytes;
    c->retention_ms = st->retention_ms;
    if (!st->cleanup_delete) {
        /* cleanup.policy=compact alone: Kafka deletes no segment by time or size; the cleaner
         * keeps the latest record per key instead. */
        c->retention_bytes = -1;
        c->retention_ms = -1;
    }
    c->flush_messages = flush_policy(st->flush_messages);
    c->flush_ms = flush_policy(st->flush_ms);
    c->log_append_time = st->timestamp_log_append;
    c->external_sync = true; /* fsyncs run off the shard thread (hs_sync_wait) */
    c->report = storage_report;
}

static bool storage_cfg_same(const struct storage_config *a, const struct storage_config *b)
{
    return a->segment_bytes == b->segment_bytes && a->segment_ms == b->segment_ms &&
           a->index_interval_bytes == b->index_interval_bytes &&
           a->retention_bytes == b->retention_bytes && a->retention_ms == b->retention_ms &&
           a->flush_messages == b->flush_messages && a->flush_ms == b->flush_ms &&
           a->log_append_time == b->log_append_time;
}

/* A partition directory: log dir + "/" + topic (<= 249) + "-" + partition. */
#define H_DIR_BYTES (BROKER_PATH_BYTES_MAX + 300)
/* A file in it. */
#define H_FILE_BYTES (H_DIR_BYTES + 300)

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[H_FILE_BYTES];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        if (unlink(path) != 0)
            BLOG_WARN("cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) != 0)
        BLOG_WARN("cannot remove %s: %s", dir, strerror(errno));
}

static int part_dir(const struct hpart *p, char *out, size_t cap)
{
    return storage_partition_dir(out, cap, p->hs->node->cfg->log_dirs[0], p->topic, p->partition);
}

static void hex_id(const uint8_t id[16], char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

/* partition.metadata holds the topic id (as Kafka's does), so a directory left by a deleted
 * topic is never taken for a new topic of the same name, even after a crash. */
enum part_id { PART_ID_NONE, PART_ID_MATCH, PART_ID_OTHER, PART_ID_UNREADABLE };

static enum part_id part_id_check(const char *dir, const uint8_t id[16])
{
    char path[H_FILE_BYTES], want[33], got[64] = {0};
    if (snprintf(path, sizeof(path), "%s/partition.metadata", dir) >= (int)sizeof(path))
        return PART_ID_UNREADABLE;
    hex_id(id, want);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? PART_ID_NONE : PART_ID_UNREADABLE;
    bool parsed = fscanf(f, "version: 0\ntopic_id: %40s", got) == 1 && strlen(got) == 32;
    fclose(f);
    if (!parsed)
        return PART_ID_UNREADABLE;
    return strcmp(got, want) == 0 ? PART_ID_MATCH : PART_ID_OTHER;
}

static bool part_id_matches(const char *dir, const uint8_t id[16], bool *exists)
{
    enum part_id r = part_id_check(dir, id);
    *exists = r != PART_ID_NONE;
    return r == PART_ID_MATCH;
}

/* Written to a temporary name and renamed: a full disk or a crash leaves either the whole
 * file or none, never an empty one that would look like another topic's directory. */
static int part_id_write(const char *dir, const uint8_t id[16])
{
    char path[H_FILE_BYTES], tmp[H_FILE_BYTES + 8], hex[33];
    if (snprintf(path, sizeof(path), "%s/partition.metadata", dir) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return LM_E_TOO_LARGE;
    hex_id(id, hex);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return LM_E_IO;
    char buf[80];
    int n = snprintf(buf, sizeof(buf), "version: 0\ntopic_id: %s\n", hex);
    bool ok = write(fd, buf, (size_t)n) == n && fdatasync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return LM_E_IO;
    }
    return 0;
}

/* Open failures logged as errors per shard per tick: a large CreateTopics on a full disk
 * would otherwise log one line per partition at once; the rest are counted and the tick
 * reports how many. */
#define OPEN_FAILURES_LOGGED_PER_TICK 8

/* ---- open-log budget (LRU of open partition logs) ----------------------------------------- */

static void lru_unlink(struct hpart *p)
{
    struct hshard *hs = p->hs;
    if (hs == NULL || (p->lru_prev == NULL && hs->lru_head != p))
        return; /* not on the list */
    if (p->lru_prev != NULL)
        p->lru_prev->lru_next = p->lru_next;
    else
        hs->lru_head = p->lru_next;
    if (p->lru_next != NULL)
        p->lru_next->lru_prev = p->lru_prev;
    else
        hs->lru_tail = p->lru_prev;
    p->lru_prev = p->lru_next = NULL;
    LM_ASSERT(hs->open_logs > 0);
    hs->open_logs--;
}

static void lru_push_head(struct hpart *p)
{
    struct hshard *hs = p->hs;
    p->lru_prev = NULL;
    p->lru_next = hs->lru_head;
    if (hs->lru_head != NULL)
        hs->lru_head->lru_prev = p;
    else
        hs->lru_tail = p;
    hs->lru_head = p;
    hs->open_logs++;
}

/* Marks p's log as just used. */
static void lru_touch(struct hpart *p)
{
    if (p->hs == NULL || p->hs->lru_head == p)
        return;
    lru_unlink(p);
    lru_push_head(p);
}

/* Closes the least recently used idle logs while the shard is over its open-log budget.
 * Bounded: looks at a few candidates per call. */
static void lru_enforce(struct hshard *hs, const struct hpart *keep)
{
    uint32_t looked = 0;
    struct hpart *v = hs->lru_tail;
    while (hs->open_logs > hs->open_logs_max && v != NULL && looked++ < 32) {
        struct hpart *prev = v->lru_prev;
        /* Idle: no fsync in flight and no fetch parked on it (its acks=all and persisted
         * waiters only exist while an fsync runs or is due). */
        if (v == keep || v->sync.busy || v->dead || v->failed || v->reopen_pending ||
            v->waiters != NULL || v->part == NULL || h_topic_internal(v->topic, strlen(v->topic))) {
            v = prev;
            continue;
        }
        /* Closed without a flush (acks=1 appends of a lone voter are not fsynced): the bytes
         * stay in the page cache and the next open recovers them, as after a crash of the
         * process. A partition that cannot close so (compaction running, segments pinned)
         * stays open for now. */
        if (partition_close_unsynced(v->part) != 0) {
            v = prev;
            continue;
        }
        v->part = NULL;
        v->log = NULL;
        v->idle_closed = true;
        lru_unlink(v);
        if (hs->idle_closes++ % 10000 == 0)
            BLOG_INFO("shard %u: open-log budget %u reached: idle logs closed (%llu so "
                      "far), reopened when used",
                      hs->id, hs->open_logs_max, (unsigned long long)hs->idle_closes);
        v = prev;
    }
}

static void part_open_log(struct hpart *p);

/* The log of p, opened again if the budget closed it; false when it cannot be opened (p is
 * then offline and retried by the tick). */
static bool part_ensure_open(struct hpart *p)
{
    if (p->log != NULL) {
        lru_touch(p);
        return true;
    }
    if (!p->idle_closed)
        return false;
    /* Every append starts its partition's fsync, and a partition stays open while that runs:
     * one request touching hundreds of idle partitions keeps them all open for a moment.
     * Past a quarter over the budget, a reopen waits (retriable KAFKA_STORAGE_ERROR) for the
     * fsyncs to end and free their logs, rather than run the process out of descriptors. */
    struct hshard *hs = p->hs;
    if (hs != NULL && hs->open_logs >= hs->open_logs_max + hs->open_logs_max / 4) {
        lru_enforce(hs, NULL);
        if (hs->open_logs >= hs->open_logs_max + hs->open_logs_max / 4)
            return false;
    }
    p->idle_closed = false;
    part_open_log(p);
    return p->log != NULL;
}

static void part_env_sync(void *ctx, struct partition *part, const int *fds, const bool *full,
                          uint32_t n);

static void part_open_log(struct hpart *p)
{
    char dir[H_DIR_BYTES];
    p->failed = false;
    if (part_dir(p, dir, sizeof(dir)) != 0) {
        BLOG_ERROR("partition %s-%d: bad directory name", p->topic, p->partition);
        part_set_offline(p, true);
        p->retry_ms = HANDLERS_RETRY_MAX_MS;
        p->retry_at_ms = UINT64_MAX; /* never opens: the name cannot change */
        return;
    }
    enum part_id pid = part_id_check(dir, p->topic_id);
    if (pid == PART_ID_OTHER) {
        BLOG_WARN("partition %s-%d: directory belongs to an older topic of that name; removed",
                  p->topic, p->partition);
        rm_dir(dir);
        pid = PART_ID_NONE;
    } else if (pid == PART_ID_UNREADABLE) {
        /* Damaged or unreadable (not another topic's id): keep the data, write it again. */
        BLOG_WARN_LIMITED("partition %s-%d: partition.metadata unreadable; rewriting it", p->topic,
                          p->partition);
    }
    /* A one-voter Raft group over the partition's log (broker/partition/README.md). */
    struct partition_config pc;
    partition_config_default(&pc);
    pc.dir = dir;
    pc.storage = p->scfg;
    int32_t node = p->hs->node->cfg->node_id;
    pc.node_id = node > 0 ? (uint32_t)node : 1;
    pc.voters.n_voters = 1;
    pc.voters.voters[0] = pc.node_id;
    pc.internal_topic = h_topic_internal(p->topic, strlen(p->topic));
    pc.tick_ms = HANDLERS_TICK_MS;
    pc.election_ticks = 10;
    pc.heartbeat_ticks = 1;
    /* Bounds of acks=all produces and persisted waiters in flight on one partition (grown on
     * demand): well above what max.in.flight.requests per producer brings. */
    pc.waiters_max = 1u << 16;
    pc.watchers_max = 1u << 16;
    struct partition_env env = {.ctx = p, .sync = part_env_sync, .send = NULL};
    p->part = NULL;
    p->log = NULL;
    int rc = partition_open(&pc, &env, (int64_t)broker_now_ms(), &p->part);
    if (rc == 0)
        p->log = partition_storage(p->part);
    if (rc == 0 && pid != PART_ID_MATCH)
        rc = part_id_write(dir, p->topic_id);
    if (rc != 0) {
        /* The first failure is an error; the retries every few seconds are not news. */
        if (p->open_failures++ == 0 &&
            ++p->hs->open_failures_this_tick <= OPEN_FAILURES_LOGGED_PER_TICK)
            BLOG_ERROR("partition %s-%d: cannot open log in %s: %s; offline, retrying", p->topic,
                       p->partition, dir, lm_strerror(rc));
        else
            BLOG_DEBUG("partition %s-%d: reopen %u failed: %s", p->topic, p->partition,
                       p->open_failures, lm_strerror(rc));
        if (p->part != NULL)
            partition_close(p->part);
        p->part = NULL;
        p->log = NULL;
        part_set_offline(p, true);
        part_schedule_retry(p);
        return;
    }
    if (p->offline)
        BLOG_INFO("partition %s-%d: log open again (after %u failed attempts); online", p->topic,
                  p->partition, p->open_failures);
    part_set_offline(p, false);
    p->open_failures = 0;
    p->retry_ms = 0;
    if (p->hs != NULL) {
        lru_push_head(p);
        lru_enforce(p->hs, p);
    }
    /* The raft term (one voter: kept across reopens, partition.h). */
    p->leader_epoch = partition_leader_epoch(p->part);
    part_set_epoch(p, p->leader_epoch);
}

/* ---- asynchronous flush (group commit) ---------------------------------------------------- */

static void part_free(struct hshard *hs, struct hpart *p, bool delete_dir);
static void oq_remove(struct hshard *hs, struct hpart *p);
static void dir_remove_or_queue(struct hshard *hs, const char *dir, const uint8_t id[16],
                                bool dead);

static void part_reopen(struct hshard *hs, struct hpart *p);

/* After any input to p's partition: a failure takes p offline, a moved high watermark wakes
 * the parked fetches, and a close or reopen deferred while an fsync ran happens now. */
void hs_part_kick(struct hshard *hs, struct hpart *p)
{
    if (p->sync.in_done)
        return; /* the fsync completion kicks once partition_sync_done has returned */
    if (p->part != NULL) {
        int failed = partition_failed(p->part);
        if (failed)
            hs_part_failed(hs, p, failed);
    }
    hs_wake_fired(hs, p);
    if (p->sync.busy)
        return; /* closing or reopening waits for the fsync's end */
    if (p->dead) {
        part_free(hs, p, p->dead_delete_dir);
        return;
    }
    if (p->part == NULL)
        return;
    if (p->reopen_pending) {
        p->reopen_pending = false;
        part_reopen(hs, p);
    }
    /* Partitions left open over the budget because their fsync ran close once it ended. */
    if (hs->open_logs > hs->open_logs_max && !p->sync.busy)
        lru_enforce(hs, p->sync.in_done ? NULL : p);
}

static void sync_fsync_done(struct broker_shard *s, struct broker_fsync *f, int rc)
{
    (void)s;
    struct hpart *p = f->arg;
    struct hpart_sync *ps = &p->sync;
    LM_ASSERT(ps->busy && ps->pending > 0);
    if (rc != 0 && ps->rc == 0)
        ps->rc = rc;
    if (--ps->pending > 0)
        return;
    ps->busy = false;
    ps->in_done = true; /* partition_sync_done may hand out the next step at once */
    if (p->part != NULL)
        partition_sync_done(p->part, ps->rc);
    ps->in_done = false;
    hs_part_kick(p->hs, p);
}

/* partition_env.sync: the partition's group-commit fsyncs, off the shard thread
 * (broker_shard_fsync: the ring or the sync worker). */
static void part_env_sync(void *ctx, struct partition *part, const int *fds, const bool *full,
                          uint32_t n)
{
    struct hpart *p = ctx;
    struct hpart_sync *ps = &p->sync;
    LM_ASSERT(!ps->busy && n <= STORAGE_SYNC_FDS_MAX);
    if (n == 0) {
        partition_sync_done(part, 0);
        return;
    }
    ps->busy = true;
    ps->rc = 0;
    ps->pending = n;
    for (uint32_t i = 0; i < n; i++)
        broker_shard_fsync(p->hs->shard, &ps->fs[i], fds[i], !full[i], sync_fsync_done, p);
}

static void sync_wait_fired(void *user, int err, int64_t hw)
{
    (void)hw;
    struct hsync_wait *w = user;
    struct hpart *p = w->p_;
    w->done(p->hs, p, w, err);
}

void hs_sync_wait(struct hshard *hs, struct hpart *p, struct hsync_wait *w)
{
    LM_ASSERT(p->hs == hs && w->done != NULL);
    w->next = NULL;
    w->p_ = p;
    if (p->part == NULL) {
        w->done(hs, p, w, LM_E_STATE);
        return;
    }
    int rc = partition_wait_persisted(p->part, w->offset, sync_wait_fired, w);
    if (rc != 0)
        w->done(hs, p, w, rc); /* not queued (partition.h) */
    hs_part_kick(hs, p);
}

static void append_fired(void *user, int err, const struct partition_append_info *info)
{
    struct hsync_wait *w = user;
    struct hpart *p = w->p_;
    if (err == 0)
        w->offset = info->last_offset + 1;
    w->done(p->hs, p, w, err);
}

int hs_append(struct hshard *hs, struct hpart *p, enum partition_origin origin, uint8_t *buf,
              size_t len, int acks, struct hsync_wait *w)
{
    LM_ASSERT(p->hs == hs && w->done != NULL);
    if (p->part == NULL || p->failed)
        return LM_E_STATE;
    w->next = NULL;
    w->p_ = p;
    int rc = partition_append(p->part, origin, buf, len, acks, append_fired, w);
    /* A log storage failed answers LM_E_STATE to every append (storage.h): offline. */
    if (rc == LM_E_STATE && partition_is_leader(p->part))
        hs_part_failed(hs, p, rc);
    hs_part_kick(hs, p);
    return rc;
}

void hs_part_failed(struct hshard *hs, struct hpart *p, int rc)
{
    (void)hs;
    if (p->failed || p->log == NULL)
        return;
    BLOG_ERROR("partition %s-%d: storage failed (%s); offline until its log reopens", p->topic,
               p->partition, lm_strerror(rc));
    p->failed = true;
    part_set_offline(p, true);
    p->retry_ms = 0;
    p->retry_at_ms = 0; /* the next tick reopens it (recovery from the checkpoint) */
}

/* Closes p's partition (waiters fail with LM_E_CLOSED) and its open-log slot. */
static void part_close_log(struct hpart *p)
{
    if (p->part == NULL)
        return;
    LM_ASSERT(!p->sync.busy);
    lru_unlink(p);
    int rc = partition_close(p->part);
    if (rc != 0)
        BLOG_DEBUG("partition %s-%d: close: %s", p->topic, p->partition, lm_strerror(rc));
    p->part = NULL;
    p->log = NULL;
}

/* Storage settings changed: close and open again (storage reads its config at open). */
static void part_reopen(struct hshard *hs, struct hpart *p)
{
    hs_wake_waiters(hs, p);
    part_close_log(p);
    p->idle_closed = false;
    part_open_log(p);
}

/* Reopens the log of p after a storage failure (the tick, at p->retry_at_ms). */
static void part_retry(struct hshard *hs, struct hpart *p)
{
    LM_ASSERT(!p->sync.busy && !p->dead);
    hs_wake_waiters(hs, p);
    part_close_log(p);
    part_open_log(p);
    if (p->log == NULL)
        return;
    hs_wake_waiters(hs, p);
    group_partition_reopened(hs, p);
}

static void part_close(struct hshard *hs, struct hpart *p, bool delete_dir)
{
    /* Parked fetches waiting here are woken so they answer (with UNKNOWN_TOPIC...). */
    hs_wake_waiters(hs, p);
    if (p->sync.busy) {
        /* Its fsyncs hold the segment files: close and free when the sync ends. */
        p->dead = true;
        p->dead_delete_dir = delete_dir;
        return;
    }
    part_free(hs, p, delete_dir);
}

static void part_free(struct hshard *hs, struct hpart *p, bool delete_dir)
{
    LM_ASSERT(!p->sync.busy);
    if (p->open_pending)
        oq_remove(hs, p);
    hs_wake_waiters(hs, p);
    part_close_log(p);
    if (delete_dir) {
        char dir[H_DIR_BYTES];
        if (part_dir(p, dir, sizeof(dir)) == 0)
            dir_remove_or_queue(hs, dir, p->topic_id, p->dead);
        BLOG_DEBUG("partition %s-%d deleted", p->topic, p->partition);
    }
    part_set_offline(p, false);
    part_set_epoch(p, HANDLERS_LEADER_EPOCH_FIRST);
    free(p->topic);
    free(p);
}

static struct hpart *part_new(const struct htopic *t, int32_t partition)
{
    struct hpart *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->topic = strdup(t->meta->name);
    if (p->topic == NULL) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    memcpy(p->topic_id, t->meta->id, 16);
    p->leader_epoch = HANDLERS_LEADER_EPOCH_FIRST;
    storage_cfg_of(&t->settings, &p->scfg);
    return p;
}

/* ---- budgeted background work: opening partitions, removing deleted directories --------- */

static void work_run(struct broker_shard *s, struct broker_timer *t);

static void work_arm(struct hshard *hs)
{
    if (hs->stopping || hs->work.heap_index_ != UINT32_MAX)
        return;
    if (broker_timer_start(hs->shard, &hs->work, 1, work_run, hs) != 0)
        BLOG_ERROR("shard %u: cannot arm the partition work timer", hs->id);
}

/* True while the current step may still do a synchronous open or removal. */
static bool step_has_budget(const struct hshard *hs)
{
    return hs->step_ops < HANDLERS_STEP_OPS_MIN || broker_now_ms() < hs->step_deadline_ms;
}

static void oq_remove(struct hshard *hs, struct hpart *p)
{
    LM_ASSERT(p->open_pending && hs->oq_len > 0);
    if (p->oq_prev != NULL)
        p->oq_prev->oq_next = p->oq_next;
    else
        hs->oq_head = p->oq_next;
    if (p->oq_next != NULL)
        p->oq_next->oq_prev = p->oq_prev;
    else
        hs->oq_tail = p->oq_prev;
    p->oq_prev = p->oq_next = NULL;
    p->open_pending = false;
    hs->oq_len--;
}

/* Opens p now when the step's budget allows (or it is an internal topic's, which its
 * coordinator loads at once), else queues it for the work timer. */
static void part_open_or_queue(struct hshard *hs, struct hpart *p)
{
    if (step_has_budget(hs) || h_topic_internal(p->topic, strlen(p->topic))) {
        hs->step_ops++;
        part_open_log(p);
        return;
    }
    p->open_pending = true;
    part_set_offline(p, true);
    p->oq_prev = hs->oq_tail;
    p->oq_next = NULL;
    if (hs->oq_tail != NULL)
        hs->oq_tail->oq_next = p;
    else
        hs->oq_head = p;
    hs->oq_tail = p;
    hs->oq_len++;
    work_arm(hs);
}

/* Removes dir now when the budget allows, else queues the removal. `dead`: the partition's
 * close was deferred (its sync was running), so a topic of the same name may own the
 * directory by now: remove it only while it is still this topic's. */
static void dir_remove_or_queue(struct hshard *hs, const char *dir, const uint8_t id[16], bool dead)
{
    bool exists = false;
    if (step_has_budget(hs) || hs->stopping) {
        hs->step_ops++;
        if (!dead || part_id_matches(dir, id, &exists) || !exists)
            rm_dir(dir);
        return;
    }
    size_t len = strlen(dir);
    struct hdir_removal *r = malloc(sizeof(*r) + len + 1);
    if (r == NULL) {
        rm_dir(dir); /* no memory to defer it: do it now */
        return;
    }
    r->next = NULL;
    memcpy(r->topic_id, id, 16);
    memcpy(r->dir, dir, len + 1);
    if (hs->rm_tail != NULL)
        hs->rm_tail->next = r;
    else
        hs->rm_head = r;
    hs->rm_tail = r;
    work_arm(hs);
}

static void work_run(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct hshard *hs = t->arg;
    hs->step_deadline_ms = broker_now_ms() + HANDLERS_STEP_BUDGET_MS;
    hs->step_ops = HANDLERS_STEP_OPS_MIN; /* the timer's steps are bounded by time alone */
    uint32_t done = 0;
    /* Removals first: a name deleted and created again gets its old directory out of the way
     * (an old directory found at open is removed by its topic-id check anyway). */
    while (hs->rm_head != NULL && (done++ < 8 || step_has_budget(hs))) {
        struct hdir_removal *r = hs->rm_head;
        hs->rm_head = r->next;
        if (hs->rm_head == NULL)
            hs->rm_tail = NULL;
        bool exists = false;
        if (part_id_matches(r->dir, r->topic_id, &exists) || !exists)
            rm_dir(r->dir);
        free(r);
    }
    while (hs->oq_head != NULL && (done++ < 8 || step_has_budget(hs))) {
        struct hpart *p = hs->oq_head;
        oq_remove(hs, p);
        part_open_log(p);
        if (p->log != NULL)
            hs_wake_waiters(hs, p);
    }
    hs->step_deadline_ms = 0;
    if (hs->rm_head != NULL || hs->oq_head != NULL)
        work_arm(hs);
    else
        BLOG_DEBUG("shard %u: partition work queue empty", hs->id);
}

static void topic_free(struct hshard *hs, struct htopic *t, bool delete_dirs)
{
    for (int32_t i = 0; i < t->part_cap; i++)
        if (t->parts[i] != NULL)
            part_close(hs, t->parts[i], delete_dirs);
    free(t->parts);
    free(t);
}

/* Opens the owned partitions of t below its partition count that are not open yet, and
 * reopens logs whose storage settings changed. */
static void topic_sync_parts(struct hshard *hs, struct htopic *t)
{
    int32_t n = t->meta->partition_count;
    if (n > t->part_cap) {
        struct hpart **np = realloc(t->parts, (size_t)n * sizeof(*np));
        if (np == NULL) {
            BLOG_ERROR("topic %s: out of memory growing partitions", t->meta->name);
            return;
        }
        memset(np + t->part_cap, 0, (size_t)(n - t->part_cap) * sizeof(*np));
        t->parts = np;
        t->part_cap = n;
    }
    size_t name_len = strlen(t->meta->name);
    for (int32_t i = 0; i < n; i++) {
        if (hs_owner(hs, t->meta->name, name_len, i) != hs->id)
            continue;
        struct hpart *p = t->parts[i];
        if (p != NULL && (p->open_pending || p->idle_closed)) {
            storage_cfg_of(&t->settings, &p->scfg); /* read when its turn to open comes */
            continue;
        }
        if (p != NULL) {
            struct storage_config c;
            storage_cfg_of(&t->settings, &c);
            if (storage_cfg_same(&c, &p->scfg) && p->log != NULL)
                continue;
            /* Storage reads its config at open: reopen (recovery from the checkpoint). */
            p->scfg = c;
            if (p->sync.busy) {
                p->reopen_pending = true; /* when the sync ends */
                continue;
            }
            part_reopen(hs, p);
            continue;
        }
        t->parts[i] = part_new(t, i);
        if (t->parts[i] == NULL) {
            BLOG_ERROR("partition %s-%d: out of memory", t->meta->name, i);
        } else {
            t->parts[i]->hs = hs;
            part_open_or_queue(hs, t->parts[i]);
        }
    }
}

static void settings_of(const struct handlers_ctx *h, const struct lm_meta_topic *m,
                        struct lm_topic_settings *st)
{
    if (lm_topic_settings_resolve(m->configs, m->config_count, h->broker_topic_configs,
                                  h->broker_topic_config_count, st) != 0) {
        BLOG_WARN("topic %s: invalid config, using defaults", m->name);
        lm_topic_settings_resolve(NULL, 0, h->broker_topic_configs, h->broker_topic_config_count,
                                  st);
    }
}

void hs_refresh(struct hshard *hs)
{
    struct lm_meta_store *meta = hs->node->meta;
    uint64_t v = lm_meta_store_version(meta);
    if (v == hs->version && hs->snap != NULL)
        return;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(meta);
    const struct lm_meta_state *st = &snap->state;
    /* Opens and directory removals beyond one step's budget go to the work timer. */
    hs->step_deadline_ms = broker_now_ms() + HANDLERS_STEP_BUDGET_MS;
    hs->step_ops = 0;
    size_t nb = st->topic_count * 2 + 16;
    struct htopic **nbk = calloc(nb, sizeof(*nbk));
    if (nbk == NULL) {
        lm_meta_snapshot_release(snap);
        BLOG_ERROR("out of memory refreshing metadata");
        return;
    }
    /* 1: mark the topics that survive (same name and id). */
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            t->seen = false;
    for (size_t i = 0; i < st->topic_count; i++) {
        const struct lm_meta_topic *m = &st->topics[i];
        struct htopic *t = hs_topic(hs, m->name, strlen(m->name));
        if (t != NULL && memcmp(t->meta->id, m->id, 16) == 0)
            t->seen = true;
    }
    /* 2: delete the others first, so a topic deleted and created again under the same name
     * gets a fresh directory. */
    for (size_t b = 0; b < hs->bucket_count; b++) {
        struct htopic **pt = &hs->buckets[b];
        while (*pt != NULL) {
            struct htopic *t = *pt;
            if (t->seen) {
                pt = &t->next;
                continue;
            }
            *pt = t->next;
            BLOG_INFO("topic %s (shard %u): deleted", t->meta->name, hs->id);
            topic_free(hs, t, true);
        }
    }
    /* 3: build the new table, opening the partitions this shard owns. */
    for (size_t i = 0; i < st->topic_count; i++) {
        const struct lm_meta_topic *m = &st->topics[i];
        size_t len = strlen(m->name);
        struct htopic *t = hs_topic(hs, m->name, len);
        if (t == NULL) {
            /* New: not in the old chains, so it goes straight into the new table. */
            if ((t = calloc(1, sizeof(*t))) == NULL) {
                BLOG_ERROR("topic %s: out of memory", m->name);
                continue;
            }
            uint64_t h = lm_fnv1a64(m->name, len) % nb;
            t->next = nbk[h];
            nbk[h] = t;
        }
        t->meta = m;
        settings_of(hs->node, m, &t->settings);
        topic_sync_parts(hs, t);
    }
    /* Relink every topic into the new buckets (the old chains are read before relinking). */
    struct htopic *all = NULL;
    for (size_t b = 0; b < hs->bucket_count; b++) {
        struct htopic *t = hs->buckets[b];
        while (t != NULL) {
            struct htopic *next = t->next;
            t->next = all;
            all = t;
            t = next;
        }
    }
    free(hs->buckets);
    hs->buckets = nbk;
    hs->bucket_count = nb;
    while (all != NULL) {
        struct htopic *next = all->next;
        uint64_t h = lm_fnv1a64(all->meta->name, strlen(all->meta->name)) % nb;
        all->next = nbk[h];
        nbk[h] = all;
        all = next;
    }
    hs->topic_count = st->topic_count;
    if (hs->snap != NULL)
        lm_meta_snapshot_release(hs->snap);
    hs->snap = snap;
    hs->version = v;
}

int hs_create_topic(struct hshard *hs, const char *name, int32_t partitions)
{
    struct lm_meta_record r = {0};
    r.type = LM_META_TOPIC_CREATE;
    r.topic = name;
    r.partition_count = partitions;
    int rc = lm_meta_new_topic_id(r.topic_id);
    if (rc == 0)
        rc = lm_meta_store_commit(hs->node->meta, &r);
    if (rc == 0)
        BLOG_INFO("topic %s auto-created with %d partitions", name, partitions);
    hs_refresh(hs);
    return rc;
}

/* ---- log compaction (cleanup.policy=compact, storage/compact.c) ---------------------------- */

/* Reading budget of one compaction step per shard tick: a pass over a large partition is spread
 * over many ticks so the shard never stalls for long (DESIGN.md §2). */
#define HANDLERS_COMPACT_BUDGET_BYTES (4u << 20)
/* How often (ticks) a shard without a running pass looks for a partition that is due (Kafka's
 * log.cleaner.backoff.ms is 15 s; the check here only walks segment lists). */
#define HANDLERS_COMPACT_CHECK_TICKS 5

static double topic_config_double(const struct handlers_ctx *h, const struct htopic *tp,
                                  const char *name, double dflt)
{
    const char *v = NULL;
    enum lm_config_source src;
    if (lm_topic_config_effective(name, tp->meta->configs, tp->meta->config_count,
                                  h->broker_topic_configs, h->broker_topic_config_count, &v,
                                  &src) != 0 ||
        v == NULL)
        return dflt;
    char *end;
    double d = strtod(v, &end);
    return end == v ? dflt : d;
}

static void compact_cfg_of(const struct handlers_ctx *h, const struct htopic *tp,
                           struct storage_compact_config *cc)
{
    storage_compact_config_default(cc);
    cc->min_cleanable_dirty_ratio = topic_config_double(h, tp, "min.cleanable.dirty.ratio", 0.5);
    double max_lag = topic_config_double(h, tp, "max.compaction.lag.ms", -1);
    cc->max_compaction_lag_ms = max_lag <= 0 || max_lag >= 9e18 ? -1 : (int64_t)max_lag;
    cc->min_compaction_lag_ms = tp->settings.min_compaction_lag_ms;
    cc->delete_retention_ms = tp->settings.delete_retention_ms;
}

static void compact_step(struct hshard *hs, const struct htopic *tp, struct hpart *p)
{
    struct storage_compact_config cc;
    compact_cfg_of(hs->node, tp, &cc);
    bool busy;
    int rc = storage_log_compact_step(p->log, &cc, storage_log_high_watermark(p->log),
                                      HANDLERS_COMPACT_BUDGET_BYTES, &busy, NULL);
    /* LM_E_FULL (a batch with more keys than the dedupe buffer) would repeat every check. */
    if (rc != 0 && rc != LM_E_STATE &&
        (rc != LM_E_FULL || hs->ticks % HANDLERS_RETENTION_TICKS == 0))
        BLOG_WARN("partition %s-%d: compaction: %s", p->topic, p->partition, lm_strerror(rc));
}

static void compact_flush_done(struct hshard *hs, struct hpart *p, struct hsync_wait *w, int rc)
{
    (void)hs;
    (void)rc; /* a failed sync marks the log failed; compaction then stays off */
    p->compact_flush_waiting = false;
    free(w);
}

/* Only flushed records supersede older ones in compaction: when that alone keeps a pass from
 * being due, start the partition's asynchronous flush (none in flight, no waiters queued, so
 * the waiter list stays ordered). */
static void compact_flush(struct hshard *hs, struct hpart *p,
                          const struct storage_compact_config *cc)
{
    if (p->sync.busy || p->compact_flush_waiting)
        return;
    int64_t want = storage_log_compact_flush_wanted(p->log, cc, storage_log_high_watermark(p->log));
    if (want < 0)
        return;
    struct hsync_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return; /* tried again at the next check */
    w->offset = want;
    w->done = compact_flush_done;
    p->compact_flush_waiting = true;
    hs_sync_wait(hs, p, w);
}

/* Steps the shard's running compaction pass or, every few ticks when none runs, starts one on
 * the first compacted partition that is due (dirty ratio, max.compaction.lag.ms). One pass per
 * shard at a time: one dedupe buffer of memory, bounded work per tick. */
static void compact_tick(struct hshard *hs)
{
    bool check = hs->ticks % HANDLERS_COMPACT_CHECK_TICKS == 0;
    struct hpart *due = NULL;
    const struct htopic *due_topic = NULL;
    for (size_t b = 0; b < hs->bucket_count; b++) {
        for (struct htopic *tp = hs->buckets[b]; tp != NULL; tp = tp->next) {
            for (int32_t i = 0; i < tp->part_cap; i++) {
                struct hpart *p = tp->parts[i];
                if (p == NULL || p->log == NULL || p->dead || p->failed)
                    continue;
                if (!tp->settings.cleanup_compact) {
                    if (storage_log_compacting(p->log))
                        storage_log_compact_abort(p->log); /* policy changed mid-pass */
                    continue;
                }
                if (storage_log_compacting(p->log)) {
                    compact_step(hs, tp, p);
                    return;
                }
                if (check && due == NULL) {
                    struct storage_compact_config cc;
                    compact_cfg_of(hs->node, tp, &cc);
                    if (storage_log_compact_due(p->log, &cc, storage_log_high_watermark(p->log))) {
                        due = p;
                        due_topic = tp;
                    } else {
                        compact_flush(hs, p, &cc);
                    }
                }
            }
        }
    }
    if (due != NULL)
        compact_step(hs, due_topic, due);
}

/* ---- shard hooks --------------------------------------------------------------------------- */

static void shard_tick(struct broker_shard *s, struct broker_timer *t)
{
    struct hshard *hs = t->arg;
    if (hs->open_failures_this_tick > OPEN_FAILURES_LOGGED_PER_TICK)
        BLOG_ERROR("shard %u: %u more partitions could not open their logs; offline, retrying",
                   hs->id, hs->open_failures_this_tick - OPEN_FAILURES_LOGGED_PER_TICK);
    hs->open_failures_this_tick = 0;
    hs_refresh(hs);
    bool retention = ++hs->ticks % HANDLERS_RETENTION_TICKS == 0;
    uint64_t now = broker_now_ms();
    /* Reopening offline partitions is bounded per tick like any open (thousands of them may
     * be failing together, e.g. on a full disk); those left wait for the next tick. */
    hs->step_deadline_ms = now + HANDLERS_STEP_BUDGET_MS;
    hs->step_ops = HANDLERS_STEP_OPS_MIN;
    for (size_t b = 0; b < hs->bucket_count; b++) {
        for (struct htopic *tp = hs->buckets[b]; tp != NULL; tp = tp->next) {
            for (int32_t i = 0; i < tp->part_cap; i++) {
                struct hpart *p = tp->parts[i];
                if (p == NULL || p->idle_closed)
                    continue;
                /* Waiters of fetches that have answered by timeout are dropped (one-shot). */
                struct hwaiter **w = &p->waiters;
                while (*w != NULL) {
                    if ((*w)->deadline_ms + 1000 < now)
                        hs_waiter_drop(p, w);
                    else
                        w = &(*w)->next;
                }
                if ((p->log == NULL || p->failed) && !p->dead && !p->sync.busy &&
                    !p->open_pending && !hs->stopping && now >= p->retry_at_ms &&
                    step_has_budget(hs))
                    part_retry(hs, p);
                if (p->log == NULL || p->failed)
                    continue;
                /* flush.ms and retention (log.retention.check.interval.ms, coarser) are the
                 * partition's; between retention checks only its drive step runs (flush.ms). */
                int rc = retention ? partition_tick(p->part, (int64_t)now)
                                   : partition_clock(p->part, (int64_t)now);
                if (rc != 0)
                    BLOG_WARN("partition %s-%d: tick: %s", p->topic, p->partition, lm_strerror(rc));
                hs_part_kick(hs, p);
            }
        }
    }
    hs->step_deadline_ms = 0;
    data_produce_scratch_trim(hs, now);
    if (!hs->stopping)
        compact_tick(hs);
    if (!hs->stopping && broker_timer_start(s, t, HANDLERS_TICK_MS, shard_tick, hs) != 0)
        BLOG_ERROR("shard %u: cannot re-arm the tick timer", hs->id);
}

static int shard_start(struct broker_shard *s, void *ctx)
{
    struct handlers_ctx *node = ctx;
    struct hshard *hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return LM_E_NOMEM;
    hs->shard = s;
    hs->node = node;
    hs->id = broker_shard_id(s);
    hs->count = broker_shard_count(s);
    hs->fetch_id_next = 1;
    hs->tick.heap_index_ = UINT32_MAX;
    hs->work.heap_index_ = UINT32_MAX;
    /* Three fifths of the descriptors for partition logs, shared by the shards; the rest for
     * connections, segment rolls, dup'd read fds and the process itself. */
    uint64_t fds = node->cfg->fd_limit ? node->cfg->fd_limit : 1024;
    uint64_t per_shard = fds * 3 / 5 / HANDLERS_LOG_FDS / (hs->count ? hs->count : 1);
    hs->open_logs_max = per_shard < 64           ? 64
                        : per_shard > UINT32_MAX ? UINT32_MAX
                                                 : (uint32_t)per_shard;
    if (getrandom(hs->zc_nonce, sizeof(hs->zc_nonce), 0) != (ssize_t)sizeof(hs->zc_nonce)) {
        uint64_t t = broker_now_ms() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)hs;
        memcpy(hs->zc_nonce, &t, sizeof(t));
    }
    broker_shard_set_user(s, hs);
    hs_refresh(hs);
    int rc = group_shard_start(hs); /* loads the owned __consumer_offsets partitions */
    if (rc != 0)
        return rc;
    return broker_timer_start(s, &hs->tick, HANDLERS_TICK_MS, shard_tick, hs);
}

static void shard_drain(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs != NULL) {
        data_fetch_drain(hs);
        group_shard_drain(hs);
    }
}

static void shard_flush(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs == NULL)
        return;
    group_shard_flush(hs); /* producer-state snapshots, before the logs' final flush */
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            for (int32_t i = 0; i < t->part_cap; i++)
                if (t->parts[i] != NULL && t->parts[i]->log != NULL) {
                    int rc = storage_log_flush(t->parts[i]->log, true);
                    if (rc != 0)
                        BLOG_WARN("partition %s-%d: final flush: %s", t->parts[i]->topic,
                                  t->parts[i]->partition, lm_strerror(rc));
                }
}

static void shard_stop(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs == NULL)
        return;
    hs->stopping = true;
    broker_timer_cancel(s, &hs->tick);
    if (hs->work.heap_index_ != UINT32_MAX)
        broker_timer_cancel(s, &hs->work);
    while (hs->rm_head != NULL) { /* left for the next start's orphan sweep */
        struct hdir_removal *r = hs->rm_head;
        hs->rm_head = r->next;
        free(r);
    }
    hs->rm_tail = NULL;
    group_shard_stop(hs);
    for (size_t b = 0; b < hs->bucket_count; b++) {
        struct htopic *t = hs->buckets[b];
        while (t != NULL) {
            struct htopic *next = t->next;
            topic_free(hs, t, false);
            t = next;
        }
    }
    free(hs->buckets);
    if (hs->snap != NULL)
        lm_meta_snapshot_release(hs->snap);
    free(hs->scratch);
    broker_shard_set_user(s, NULL);
    free(hs);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int cluster_id_load(struct handlers_ctx *h)
{
    char path[BROKER_PATH_BYTES_MAX + 64];
    snprintf(path, sizeof(path), "%s/__laminar_metadata/cluster.id", h->cfg->log_dirs[0]);
    FILE *f = fopen(path, "r");
    if (f != NULL) {
        bool ok = fscanf(f, "%31s", h->cluster_id) == 1 && strlen(h->cluster_id) == 22;
        fclose(f);
        if (ok)
            return 0;
        BLOG_WARN("%s is malformed; writing a new cluster id", path);
    }
    uint8_t id[16];
    int rc = lm_meta_new_topic_id(id); /* 16 random bytes */
    if (rc != 0)
        return rc;
    /* Kafka's cluster ids are a uuid in base64url without padding (22 characters). */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0, o = 0;
    for (int i = 0; i < 16; i++) {
        acc = (acc << 8) | id[i];
        bits += 8;
        while (bits >= 6) {
            h->cluster_id[o++] = b64[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    h->cluster_id[o++] = b64[(acc << (6 - bits)) & 63];
    h->cluster_id[o] = 0;
    LM_ASSERT(o == 22);
    char tmp[BROKER_PATH_BYTES_MAX + 80];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return LM_E_IO;
    bool ok = write(fd, h->cluster_id, 22) == 22 && write(fd, "\n", 1) == 1 && fsync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0)
        return LM_E_IO;
    return 0;
}

static int broker_topic_configs_load(struct handlers_ctx *h)
{
    /* lm_topic_settings_resolve and lm_topic_config_effective look broker values up by their
     * server.properties key (the synonym, e.g. log.roll.ms), plus the keys in other units
     * that stand for one (log.retention.hours, log.roll.hours, ...). */
    static const char *const unit_keys[] = {"log.retention.minutes", "log.retention.hours",
                                            "log.roll.hours", "log.roll.jitter.hours"};
    size_t n = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&n);
    size_t cap = n + sizeof(unit_keys) / sizeof(unit_keys[0]);
    h->broker_topic_configs = calloc(cap, sizeof(*h->broker_topic_configs));
    if (h->broker_topic_configs == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < cap; i++) {
        const char *key = i < n ? defs[i].broker_synonym : unit_keys[i - n];
        if (key == NULL)
            continue;
        const char *v = broker_config_get(h->cfg, key);
        if (v == NULL)
            continue;
        broker_config_mark_used(h->cfg, key);
        struct lm_config_entry *e = &h->broker_topic_configs[h->broker_topic_config_count];
        e->name = (char *)key;
        e->value = (char *)v;
        h->broker_topic_config_count++;
    }
    return 0;
}

/* A crash between a topic's deletion in the metadata and its shards removing the directories
 * leaves directories no topic owns: remove them at start. Only directories named
 * <topic>-<partition> that hold our partition.metadata are touched. */
static void sweep_orphans(const struct handlers_ctx *h)
{
    const char *root = h->cfg->log_dirs[0];
    DIR *d = opendir(root);
    if (d == NULL)
        return;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(h->meta);
    struct dirent *e;
    char name[LM_TOPIC_NAME_MAX + 1], dir[H_DIR_BYTES], marker[H_FILE_BYTES];
    while ((e = readdir(d)) != NULL) {
        const char *dash = strrchr(e->d_name, '-');
        size_t len = dash != NULL ? (size_t)(dash - e->d_name) : 0;
        if (len == 0 || len > LM_TOPIC_NAME_MAX || dash[1] == 0 ||
            strspn(dash + 1, "0123456789") != strlen(dash + 1))
            continue;
        memcpy(name, e->d_name, len);
        name[len] = 0;
        if (lm_meta_state_find(&snap->state, name) != NULL)
            continue;
        if (snprintf(dir, sizeof(dir), "%s/%s", root, e->d_name) >= (int)sizeof(dir) ||
            snprintf(marker, sizeof(marker), "%s/partition.metadata", dir) >= (int)sizeof(marker) ||
            access(marker, F_OK) != 0)
            continue;
        BLOG_WARN("removing %s: its topic no longer exists", dir);
        rm_dir(dir);
    }
    closedir(d);
    lm_meta_snapshot_release(snap);
}

/* max.broker.partitions (KIP-578's name; Kafka 4 has no per-node bound): client requests that
 * would take the node's partitions above it are refused (admin_topics.c, Metadata
 * auto-create). The default is the size of the largest topic we accept
 * (LM_META_PARTITIONS_MAX): one request can no longer exhaust the node by accident, and an
 * operator who wants more raises it; -1 or 0 means no bound. */
#define HANDLERS_MAX_BROKER_PARTITIONS_DEFAULT 100000

static int partition_limit_load(struct handlers_ctx *h)
{
    long long limit = HANDLERS_MAX_BROKER_PARTITIONS_DEFAULT;
    const char *v = broker_config_get(h->cfg, "max.broker.partitions");
    if (v != NULL) {
        broker_config_mark_used(h->cfg, "max.broker.partitions");
        char *end = NULL;
        errno = 0;
        limit = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != 0 || limit < -1) {
            BLOG_ERROR("max.broker.partitions=%s: expected -1 or a non-negative integer", v);
            return LM_E_CONFIG;
        }
    }
    lm_meta_store_set_partition_limit(h->meta, limit);
    return 0;
}

static void register_unserved(struct broker_dispatch *d)
{
    /* Known APIs without a handler are answered like unsupported versions instead of closing
     * the connection (UNSUPPORTED_VERSION where the response can say so). */
    for (size_t i = 0; i < kafka_api_count; i++) {
        const struct kafka_api_info *api = &kafka_api_table[i];
        if (api->key < 0 || api->key >= BROKER_API_KEYS_MAX || d->apis[api->key].fn != NULL)
            continue;
        int rc = broker_dispatch_register(d, api->key, handlers_dispatch, api->first_flexible);
        LM_ASSERT(rc == 0);
    }
}

/* Frees the node (dispatch teardown): after its shards stopped, or when setup failed. */
static void node_free(void *ctx)
{
    struct handlers_ctx *h = ctx;
    if (h == NULL)
        return;
    if (h->meta != NULL)
        lm_meta_store_close(h->meta);
    free(h->broker_topic_configs);
    for (size_t b = 0; b < HANDLERS_PART_BUCKETS; b++) {
        while (h->epoch_buckets[b] != NULL) {
            struct hepoch *e = h->epoch_buckets[b];
            h->epoch_buckets[b] = e->next;
            free(e);
        }
        while (h->offline_buckets[b] != NULL) {
            struct hoffline *o = h->offline_buckets[b];
            h->offline_buckets[b] = o->next;
            free(o);
        }
    }
    pthread_mutex_destroy(&h->epoch_lock);
    pthread_mutex_destroy(&h->offline_lock);
    free(h);
}

static int node_setup(struct broker_dispatch *d, struct handlers_ctx *h)
{
    struct broker_config *cfg = h->cfg;
    if (mkdir(cfg->log_dirs[0], 0755) != 0 && errno != EEXIST) {
        BLOG_ERROR("cannot create log dir %s: %s", cfg->log_dirs[0], strerror(errno));
        return LM_E_IO;
    }
    int rc = lm_meta_store_open(cfg->log_dirs[0], &h->meta);
    if (rc != 0) {
        BLOG_ERROR("cannot open the metadata store in %s: %s", cfg->log_dirs[0], lm_strerror(rc));
        return rc;
    }
    if ((rc = cluster_id_load(h)) != 0 || (rc = broker_topic_configs_load(h)) != 0) {
        BLOG_ERROR("setup: %s", lm_strerror(rc));
        return rc;
    }
    sweep_orphans(h);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(h->meta);
    BLOG_INFO("cluster id %s, node id %d, %zu topics", h->cluster_id, cfg->node_id,
              snap->state.topic_count);
    lm_meta_snapshot_release(snap);
    d->shard_start = shard_start;
    d->shard_drain = shard_drain;
    d->shard_flush = shard_flush;
    d->shard_stop = shard_stop;
    if ((rc = handlers_serve(d, KAFKA_API_VERSIONS_KEY, 0, 4, api_versions)) != 0 ||
        (rc = handlers_data_register(d)) != 0 || (rc = handlers_admin_register(d)) != 0 ||
        (rc = handlers_group_register(d)) != 0) {
        BLOG_ERROR("registering handlers: %s", lm_strerror(rc));
        return rc;
    }
    register_unserved(d);
    /* Set after registration: the coordinator's own __consumer_offsets is always created. */
    return partition_limit_load(h);
}

int broker_handlers_setup(struct broker_dispatch *d, struct broker_config *cfg)
{
    LM_ASSERT(d->ctx == NULL);
    if (cfg->log_dirs_count == 0) {
        BLOG_ERROR("no log.dirs configured");
        return LM_E_CONFIG;
    }
    struct handlers_ctx *h = calloc(1, sizeof(*h));
    if (h == NULL)
        return LM_E_NOMEM;
    h->cfg = cfg;
    h->producer_expiration_ms = LM_PRODUCER_EXPIRATION_MS_DEFAULT;
    pthread_mutex_init(&h->epoch_lock, NULL);
    pthread_mutex_init(&h->offline_lock, NULL);
    for (int k = 0; k < BROKER_API_KEYS_MAX; k++)
        h->served[k].min_version = h->served[k].max_version = -1;
    d->ctx = h;
    d->teardown = node_free;
    int rc = node_setup(d, h);
    if (rc != 0) {
        node_free(h);
        d->ctx = NULL;
        d->teardown = NULL;
    }
    return rc;
}

int handlers_data_register(struct broker_dispatch *d)
{
    int rc;
    /* Produce is advertised from v0 as Kafka 4 does (older librdkafka enables compression only
     * then); v0-2 are answered UNSUPPORTED_VERSION by the handler (PROTOCOL-NOTES). */
    if ((rc = handlers_serve(d, KAFKA_PRODUCE_KEY, 0, 11, data_produce)) != 0 ||
        (rc = handlers_serve(d, KAFKA_FETCH_KEY, 4, 17, data_fetch)) != 0 ||
        (rc = handlers_serve(d, KAFKA_LIST_OFFSETS_KEY, 1, 11, data_list_offsets)) != 0 ||
        (rc = handlers_serve(d, KAFKA_METADATA_KEY, 0, 12, data_metadata)) != 0 ||
        (rc = handlers_serve(d, KAFKA_OFFSET_FOR_LEADER_EPOCH_KEY, 2, 4,
                             data_offset_for_leader_epoch)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DELETE_RECORDS_KEY, 0, 2, data_delete_records)) != 0)
        return rc;
    return 0;
}
