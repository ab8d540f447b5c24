/* Setup, the served-version table, ApiVersions, the dispatcher, per-shard state and the
 * reconciliation of a shard's partition logs with the metadata store (handlers.h). */
#include "broker/handlers/handlers.h"
#include "broker/handlers/txn_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>

#include "broker/handlers/group_internal.h"
#include "broker/cluster/controller.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/handlers/sasl_api.h"
#include "common/lm_hash.h"
#include "broker/log.h"
#include "broker/metrics.h"
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
    const struct kafka_api_info *api = kafka_api_lookup(req->api_key);
    if (api != NULL && api->response.throttle_offset >= 0) {
        int32_t ms = h_request_quota(req);
        /* the message is the handler's own (const only for the encoder): its throttle time
         * becomes the larger of the quotas' */
        int32_t *t = (int32_t *)((uint8_t *)(uintptr_t)msg + api->response.throttle_offset);
        if (ms > *t)
            *t = ms;
    }
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
    {KAFKA_SHARE_ACKNOWLEDGE_KEY, 1, offsetof(struct kafka_share_acknowledge_response, error_code)},
    {KAFKA_SHARE_FETCH_KEY, 1, offsetof(struct kafka_share_fetch_response, error_code)},
    {KAFKA_SHARE_GROUP_HEARTBEAT_KEY, 1,
     offsetof(struct kafka_share_group_heartbeat_response, error_code)},
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
        BLOG_INFO_LIMITED("api %s v%d not served: UNSUPPORTED_VERSION", api->name,
                          req->api_version);
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
    if (h->ctl != NULL && key != KAFKA_API_VERSIONS_KEY && !controller_caught_up(h->ctl)) {
        /* a node that has not replayed the metadata log yet would answer from a partial
         * image (topics unknown, nodes missing): clients reconnect, to it or another node */
        BLOG_INFO_LIMITED("api %d: closing the connection: the metadata log is not caught up "
                          "yet",
                          key);
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
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

/* ---- setup ---------------------------------------------------------------------------------- */

/* A cluster's id must be the same on every node: cluster.id when set, else derived from
 * controller.quorum.voters (the same string on every node of one cluster). */
static void cluster_id_encode(const uint8_t id[16], char out[23])
{
    /* Kafka's cluster ids are a uuid in base64url without padding (22 characters). */
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0, o = 0;
    for (int i = 0; i < 16; i++) {
        acc = (acc << 8) | id[i];
        bits += 8;
        while (bits >= 6) {
            out[o++] = b64[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    out[o++] = b64[(acc << (6 - bits)) & 63];
    out[o] = 0;
    LM_ASSERT(o == 22);
}

static int cluster_id_of_cluster(struct handlers_ctx *h)
{
    const char *set = broker_config_get(h->cfg, "cluster.id");
    if (set != NULL && strlen(set) == 22) {
        snprintf(h->cluster_id, sizeof(h->cluster_id), "%s", set);
        return 0;
    }
    const char *v = broker_config_get(h->cfg, "controller.quorum.voters");
    uint8_t id[16];
    uint64_t a = lm_fnv1a64("laminar-cluster:", 16), b = 0x84222325cbf29ce4ull;
    for (const char *p = v; *p; p++) {
        if (*p == ' ')
            continue;
        a = (a ^ (uint8_t)*p) * 0x100000001b3ull;
        b = (b ^ (uint8_t)*p) * 0x100000001b3ull + 0x9e3779b97f4a7c15ull;
    }
    for (int i = 0; i < 8; i++) {
        id[i] = (uint8_t)(a >> (8 * i));
        id[8 + i] = (uint8_t)(b >> (8 * i));
    }
    cluster_id_encode(id, h->cluster_id);
    return 0;
}

static int cluster_id_load(struct handlers_ctx *h)
{
    if (h->ctl != NULL)
        return cluster_id_of_cluster(h);
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
    cluster_id_encode(id, h->cluster_id);
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
        hs_rm_dir(dir);
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
    controller_destroy(h->ctl);
    handlers_sasl_free(h->sasl);
    if (h->meta != NULL)
        lm_meta_store_close(h->meta);
    free(h->broker_topic_configs);
    for (int i = 0; i < HANDLERS_GAUGE_SHARDS; i++)
        free(h->part_gauges[i]);
    hs_registry_clear(h);
    pthread_mutex_destroy(&h->epoch_lock);
    pthread_mutex_destroy(&h->offline_lock);
    if (h->mutation_quota.sensors != NULL)
        lm_quota_table_deinit(&h->mutation_quota);
    pthread_mutex_destroy(&h->mutation_lock);
    free(h);
}

/* The group-commit fsync times as a Prometheus histogram (cumulative buckets); sum_us is the
 * total time of kafka_log_logflushstats_flush_seconds_total. */
static void flush_hist_render(struct broker_metrics_out *o,
                              const uint64_t hist[HANDLERS_FLUSH_BUCKETS], uint64_t sum_us)
{
    static const uint64_t bounds[] = {HANDLERS_FLUSH_BOUNDS_US};
    broker_metrics_printf(o, "# HELP laminar_log_flush_seconds Group-commit fsync rounds of "
                             "partition logs by time, from hand-out to the last fsync's end "
                             "(Kafka: LogFlushRateAndTimeMs).\n"
                             "# TYPE laminar_log_flush_seconds histogram\n");
    uint64_t cum = 0;
    for (uint32_t b = 0; b < HANDLERS_FLUSH_BUCKETS; b++) {
        cum += hist[b];
        if (b < HANDLERS_FLUSH_BUCKETS - 1)
            broker_metrics_printf(o, "laminar_log_flush_seconds_bucket{le=\"%g\"} %llu\n",
                                  (double)bounds[b] / 1e6, (unsigned long long)cum);
        else
            broker_metrics_printf(o, "laminar_log_flush_seconds_bucket{le=\"+Inf\"} %llu\n",
                                  (unsigned long long)cum);
    }
    broker_metrics_printf(
        o, "laminar_log_flush_seconds_sum %.6f\nlaminar_log_flush_seconds_count %llu\n",
        (double)sum_us / 1e6, (unsigned long long)cum);
}

/* The per-partition series of the shards' tables (handlers_ctx.part_gauges): slots written at
 * their shard's last two ticks (a partition gone since then stops being shown). */
static void part_gauges_render(struct handlers_ctx *h, uint32_t shards,
                               struct broker_metrics_out *o)
{
    static const char *const names[4][2] = {
        {"laminar_partition_leader_epoch", "The partition's Raft term (leader epoch)."},
        {"laminar_partition_leader", "The partition's leader (node id, -1: none)."},
        {"laminar_partition_commit_lag_records",
         "Records appended but not committed (log end - high watermark)."},
        {"laminar_partition_last_election_timestamp_seconds",
         "Wall-clock time this node first saw the partition's current leader epoch (its last "
         "election as seen here, or this node's first look at it)."}};
    uint64_t untracked = 0;
    for (int m = 0; m < 4; m++) {
        broker_metrics_printf(o, "# HELP %s %s\n# TYPE %s gauge\n", names[m][0], names[m][1],
                              names[m][0]);
        for (uint32_t s = 0; s < shards && s < HANDLERS_GAUGE_SHARDS; s++) {
            const struct handlers_part_gauges *pg =
                __atomic_load_n(&h->part_gauges[s], __ATOMIC_ACQUIRE);
            if (pg == NULL)
                continue;
            if (m == 0)
                untracked += __atomic_load_n(&pg->untracked, __ATOMIC_RELAXED);
            uint32_t tick = __atomic_load_n(&pg->tick, __ATOMIC_ACQUIRE);
            uint32_t used = __atomic_load_n(&pg->used, __ATOMIC_ACQUIRE);
            for (uint32_t i = 0; i < used && i < HANDLERS_PART_GAUGES_MAX; i++) {
                const struct handlers_part_slot *sl = &pg->slots[i];
                if (!__atomic_load_n(&sl->ready, __ATOMIC_ACQUIRE) ||
                    tick - __atomic_load_n(&sl->tick, __ATOMIC_RELAXED) > 1)
                    continue;
                if (m == 3) {
                    broker_metrics_printf(
                        o, "%s{topic=\"%.*s\",partition=\"%d\"} %.3f\n", names[m][0],
                        (int)sl->topic_len, sl->topic, sl->partition,
                        (double)__atomic_load_n(&sl->epoch_since_ms, __ATOMIC_RELAXED) / 1e3);
                    continue;
                }
                long long v = m == 0   ? __atomic_load_n(&sl->leader_epoch, __ATOMIC_RELAXED)
                              : m == 1 ? __atomic_load_n(&sl->leader, __ATOMIC_RELAXED)
                                       : __atomic_load_n(&sl->commit_lag, __ATOMIC_RELAXED);
                broker_metrics_printf(o, "%s{topic=\"%.*s\",partition=\"%d\"} %lld\n", names[m][0],
                                      (int)sl->topic_len, sl->topic, sl->partition, v);
            }
        }
    }
    broker_metrics_printf(o,
                          "# HELP laminar_partition_untracked Partitions past the per-shard "
                          "table of per-partition series (%d per shard).\n"
                          "# TYPE laminar_partition_untracked gauge\n"
                          "laminar_partition_untracked %llu\n",
                          HANDLERS_PART_GAUGES_MAX, (unsigned long long)untracked);
}

/* The node's gauges for a /metrics scrape (on the HTTP thread): the metadata snapshot and
 * the offline count are safe to read from any thread. Names as Kafka's JMX beans. */
static void node_gauges(void *ctx, struct broker_metrics_out *o)
{
    struct handlers_ctx *h = ctx;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(h->meta);
    uint64_t partitions = 0;
    for (size_t i = 0; i < snap->state.topic_count; i++)
        partitions += (uint64_t)snap->state.topics[i].partition_count;
    size_t topics = snap->state.topic_count;
    size_t fenced = 0;
    for (size_t i = 0; i < snap->state.broker_count; i++)
        fenced += snap->state.brokers[i].fenced;
    size_t brokers = snap->state.broker_count;
    lm_meta_snapshot_release(snap);
    if (h->ctl != NULL) {
        int32_t leader = controller_leader(h->ctl);
        broker_metrics_printf(
            o,
            "# HELP kafka_controller_kafkacontroller_activecontrollercount 1 on the controller "
            "group's leader.\n"
            "# TYPE kafka_controller_kafkacontroller_activecontrollercount gauge\n"
            "kafka_controller_kafkacontroller_activecontrollercount %d\n"
            "# HELP laminar_controller_leader_id The controller group's leader as this node "
            "knows it (-1: none).\n"
            "# TYPE laminar_controller_leader_id gauge\n"
            "laminar_controller_leader_id %d\n"
            "# HELP kafka_controller_kafkacontroller_activebrokercount Registered nodes not "
            "fenced.\n"
            "# TYPE kafka_controller_kafkacontroller_activebrokercount gauge\n"
            "kafka_controller_kafkacontroller_activebrokercount %zu\n"
            "# HELP kafka_controller_kafkacontroller_fencedbrokercount Registered nodes fenced.\n"
            "# TYPE kafka_controller_kafkacontroller_fencedbrokercount gauge\n"
            "kafka_controller_kafkacontroller_fencedbrokercount %zu\n",
            leader == h->cfg->node_id ? 1 : 0, leader, brokers - fenced, fenced);
        uint32_t swim[4];
        controller_swim_counts(h->ctl, swim);
        broker_metrics_printf(o,
                              "# HELP laminar_swim_members SWIM members by state, this node "
                              "included.\n# TYPE laminar_swim_members gauge\n"
                              "laminar_swim_members{state=\"alive\"} %u\n"
                              "laminar_swim_members{state=\"suspect\"} %u\n"
                              "laminar_swim_members{state=\"dead\"} %u\n"
                              "laminar_swim_members{state=\"left\"} %u\n",
                              swim[0], swim[1], swim[2], swim[3]);
    }
    uint64_t offline = __atomic_load_n(&h->offline_count, __ATOMIC_ACQUIRE);
    uint64_t replicas = 0, leaders = 0, under_replicated = 0, under_min_isr = 0, quiescent = 0;
    uint64_t segments = 0, log_bytes = 0, lag = 0, lag_max = 0, open_us = 0, opens = 0,
             compactions = 0, flushes = 0, flush_us = 0;
    uint64_t flush_hist[HANDLERS_FLUSH_BUCKETS] = {0};
    uint64_t fsessions = 0, fsess_parts = 0, fsess_evictions = 0, producer_ids = 0;
    uint64_t txn_asked = 0, txn_skipped = 0;
    uint64_t apps_zc = 0, bytes_zc = 0, apps_copy = 0, bytes_copy = 0;
    uint32_t shards = __atomic_load_n(&h->shard_count, __ATOMIC_ACQUIRE);
    for (uint32_t i = 0; i < shards && i < HANDLERS_GAUGE_SHARDS; i++) {
        const struct handlers_shard_gauges *g = &h->shard_gauges[i];
        replicas += __atomic_load_n(&g->replicas, __ATOMIC_RELAXED);
        leaders += __atomic_load_n(&g->leaders, __ATOMIC_RELAXED);
        under_replicated += __atomic_load_n(&g->under_replicated, __ATOMIC_RELAXED);
        under_min_isr += __atomic_load_n(&g->under_min_isr, __ATOMIC_RELAXED);
        quiescent += __atomic_load_n(&g->quiescent, __ATOMIC_RELAXED);
        segments += __atomic_load_n(&g->segments, __ATOMIC_RELAXED);
        log_bytes += __atomic_load_n(&g->log_bytes, __ATOMIC_RELAXED);
        lag += __atomic_load_n(&g->commit_lag, __ATOMIC_RELAXED);
        uint64_t m = __atomic_load_n(&g->commit_lag_max, __ATOMIC_RELAXED);
        lag_max = m > lag_max ? m : lag_max;
        open_us += __atomic_load_n(&g->open_us, __ATOMIC_RELAXED);
        opens += __atomic_load_n(&g->opens, __ATOMIC_RELAXED);
        compactions += __atomic_load_n(&g->compact_steps, __ATOMIC_RELAXED);
        flushes += __atomic_load_n(&g->flushes, __ATOMIC_RELAXED);
        flush_us += __atomic_load_n(&g->flush_us, __ATOMIC_RELAXED);
        for (uint32_t b = 0; b < HANDLERS_FLUSH_BUCKETS; b++)
            flush_hist[b] += __atomic_load_n(&g->flush_hist[b], __ATOMIC_RELAXED);
        fsessions += __atomic_load_n(&g->fetch_sessions, __ATOMIC_RELAXED);
        fsess_parts += __atomic_load_n(&g->fetch_session_partitions, __ATOMIC_RELAXED);
        fsess_evictions += __atomic_load_n(&g->fetch_session_evictions, __ATOMIC_RELAXED);
        producer_ids += __atomic_load_n(&g->producer_ids, __ATOMIC_RELAXED);
        txn_asked += __atomic_load_n(&g->txn_checks_asked, __ATOMIC_RELAXED);
        txn_skipped += __atomic_load_n(&g->txn_checks_skipped, __ATOMIC_RELAXED);
        apps_zc += __atomic_load_n(&g->repl_apps_zc, __ATOMIC_RELAXED);
        bytes_zc += __atomic_load_n(&g->repl_bytes_zc, __ATOMIC_RELAXED);
        apps_copy += __atomic_load_n(&g->repl_apps_copy, __ATOMIC_RELAXED);
        bytes_copy += __atomic_load_n(&g->repl_bytes_copy, __ATOMIC_RELAXED);
    }
    broker_metrics_printf(o,
                          "# HELP laminar_replication_appends_total Append messages carrying "
                          "batches that partition leaders here sent to followers: zero_copy = "
                          "as slices of the log files (sendfile/splice), copy = read first "
                          "(control batches, a cluster secret or peer TLS, "
                          "laminar.replication.zero.copy=false).\n"
                          "# TYPE laminar_replication_appends_total counter\n"
                          "laminar_replication_appends_total{path=\"zero_copy\"} %llu\n"
                          "laminar_replication_appends_total{path=\"copy\"} %llu\n"
                          "# HELP laminar_replication_append_bytes_total Their batch bytes.\n"
                          "# TYPE laminar_replication_append_bytes_total counter\n"
                          "laminar_replication_append_bytes_total{path=\"zero_copy\"} %llu\n"
                          "laminar_replication_append_bytes_total{path=\"copy\"} %llu\n",
                          (unsigned long long)apps_zc, (unsigned long long)apps_copy,
                          (unsigned long long)bytes_zc, (unsigned long long)bytes_copy);
    broker_metrics_printf(o,
                          "# HELP laminar_txn_partition_checks_total Partitions of transactional "
                          "Produce v12+ batches: asked = the transaction coordinator was asked "
                          "to add them, skipped = already added to that producer's transaction "
                          "(Kafka's hasOngoingTransaction).\n"
                          "# TYPE laminar_txn_partition_checks_total counter\n"
                          "laminar_txn_partition_checks_total{outcome=\"asked\"} %llu\n"
                          "laminar_txn_partition_checks_total{outcome=\"skipped\"} %llu\n",
                          (unsigned long long)txn_asked, (unsigned long long)txn_skipped);
    broker_metrics_printf(o,
                          "# HELP kafka_server_replicamanager_produceridcount Idempotent and "
                          "transactional producers whose state the partitions here hold "
                          "(ReplicaManager ProducerIdCount).\n"
                          "# TYPE kafka_server_replicamanager_produceridcount gauge\n"
                          "kafka_server_replicamanager_produceridcount %llu\n",
                          (unsigned long long)producer_ids);
    part_gauges_render(h, shards, o);
    broker_metrics_printf(o,
                          "# HELP kafka_log_logflushstats_flushes_total Group-commit fsyncs of "
                          "partition logs completed (LogFlushStats LogFlushRateAndTimeMs "
                          "count).\n# TYPE kafka_log_logflushstats_flushes_total counter\n"
                          "kafka_log_logflushstats_flushes_total %llu\n"
                          "# HELP kafka_log_logflushstats_flush_seconds_total Their time, from "
                          "hand-out to the last fsync's end.\n"
                          "# TYPE kafka_log_logflushstats_flush_seconds_total counter\n"
                          "kafka_log_logflushstats_flush_seconds_total %.6f\n",
                          (unsigned long long)flushes, (double)flush_us / 1e6);
    flush_hist_render(o, flush_hist, flush_us);
    broker_metrics_printf(
        o,
        "# HELP kafka_log_log_numlogsegments Log segments of the open partitions (Log "
        "NumLogSegments, summed).\n# TYPE kafka_log_log_numlogsegments gauge\n"
        "kafka_log_log_numlogsegments %llu\n"
        "# HELP kafka_log_log_size Bytes of the open partitions' logs (Log Size, summed).\n"
        "# TYPE kafka_log_log_size gauge\nkafka_log_log_size %llu\n"
        "# HELP laminar_raft_commit_lag_records Records appended but not committed yet (log end "
        "- high watermark), summed over partitions.\n"
        "# TYPE laminar_raft_commit_lag_records gauge\nlaminar_raft_commit_lag_records %llu\n"
        "# HELP laminar_raft_commit_lag_records_max The largest commit lag of one partition.\n"
        "# TYPE laminar_raft_commit_lag_records_max gauge\n"
        "laminar_raft_commit_lag_records_max %llu\n"
        "# HELP laminar_log_open_seconds_total Time spent opening partition logs, recovery "
        "included (Kafka: LogManager's log loading).\n"
        "# TYPE laminar_log_open_seconds_total counter\nlaminar_log_open_seconds_total %.6f\n"
        "# HELP laminar_log_opens_total Partition logs opened.\n"
        "# TYPE laminar_log_opens_total counter\nlaminar_log_opens_total %llu\n"
        "# HELP laminar_log_cleaner_steps_total Compaction steps run (each bounded in bytes; "
        "Kafka: LogCleaner).\n# TYPE laminar_log_cleaner_steps_total counter\n"
        "laminar_log_cleaner_steps_total %llu\n",
        (unsigned long long)segments, (unsigned long long)log_bytes, (unsigned long long)lag,
        (unsigned long long)lag_max, (double)open_us / 1e6, (unsigned long long)opens,
        (unsigned long long)compactions);
    if (h->ctl == NULL) {
        /* one node: every partition is here and led here unless offline (at once, not as of
         * the shards' last tick) */
        replicas = partitions;
        leaders = partitions >= offline ? partitions - offline : 0;
    }
    broker_metrics_printf(
        o,
        "# HELP kafka_server_replicamanager_underreplicatedpartitions Partitions led here with "
        "fewer replicas in sync than assigned.\n"
        "# TYPE kafka_server_replicamanager_underreplicatedpartitions gauge\n"
        "kafka_server_replicamanager_underreplicatedpartitions %llu\n"
        "# HELP kafka_server_replicamanager_underminisrpartitioncount Partitions led here with "
        "fewer replicas in sync than min.insync.replicas.\n"
        "# TYPE kafka_server_replicamanager_underminisrpartitioncount gauge\n"
        "kafka_server_replicamanager_underminisrpartitioncount %llu\n",
        (unsigned long long)under_replicated, (unsigned long long)under_min_isr);
    broker_metrics_printf(o,
                          "# HELP laminar_raft_quiescent_groups Replicated partitions on this "
                          "node whose Raft group is quiescent (no heartbeats, no election "
                          "timer: laminar.raft.quiesce), as of the shards' last tick.\n"
                          "# TYPE laminar_raft_quiescent_groups gauge\n"
                          "laminar_raft_quiescent_groups %llu\n",
                          (unsigned long long)quiescent);
    broker_metrics_printf(
        o,
        "# HELP kafka_server_fetchsessioncache_numincrementalfetchsessions Incremental fetch "
        "sessions cached.\n"
        "# TYPE kafka_server_fetchsessioncache_numincrementalfetchsessions gauge\n"
        "kafka_server_fetchsessioncache_numincrementalfetchsessions %llu\n"
        "# HELP kafka_server_fetchsessioncache_numincrementalfetchpartitionscached Partitions "
        "the incremental fetch sessions cache.\n"
        "# TYPE kafka_server_fetchsessioncache_numincrementalfetchpartitionscached gauge\n"
        "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached %llu\n"
        "# HELP kafka_server_fetchsessioncache_incrementalfetchsessionevictions_total Sessions "
        "evicted to make room for new ones.\n"
        "# TYPE kafka_server_fetchsessioncache_incrementalfetchsessionevictions_total counter\n"
        "kafka_server_fetchsessioncache_incrementalfetchsessionevictions_total %llu\n",
        (unsigned long long)fsessions, (unsigned long long)fsess_parts,
        (unsigned long long)fsess_evictions);
    broker_metrics_printf(
        o,
        "# HELP kafka_controller_kafkacontroller_globaltopiccount Topics.\n"
        "# TYPE kafka_controller_kafkacontroller_globaltopiccount gauge\n"
        "kafka_controller_kafkacontroller_globaltopiccount %zu\n"
        "# HELP kafka_server_replicamanager_partitioncount Partitions with a replica here.\n"
        "# TYPE kafka_server_replicamanager_partitioncount gauge\n"
        "kafka_server_replicamanager_partitioncount %llu\n"
        "# HELP kafka_server_replicamanager_leadercount Partitions led here.\n"
        "# TYPE kafka_server_replicamanager_leadercount gauge\n"
        "kafka_server_replicamanager_leadercount %llu\n"
        "# HELP kafka_controller_kafkacontroller_offlinepartitionscount Partitions without a "
        "live leader (their log failed).\n"
        "# TYPE kafka_controller_kafkacontroller_offlinepartitionscount gauge\n"
        "kafka_controller_kafkacontroller_offlinepartitionscount %llu\n",
        topics, (unsigned long long)replicas, (unsigned long long)leaders,
        (unsigned long long)offline);
}

static size_t node_states(void *ctx, int32_t *ids, uint8_t *states, size_t cap)
{
    struct handlers_ctx *h = ctx;
    return h->ctl != NULL ? controller_swim_states(h->ctl, ids, states, cap) : 0;
}

/* Node-to-node requests on an SSL listener with the ACL authorizer on: the sender's principal
 * (its client certificate's subject through ssl.principal.mapping.rules) must be a super user,
 * as Kafka's controller demands CLUSTER_ACTION of its peers; another principal (a client
 * certificate signed by a trusted CA but not a node's, or none) is refused and its connection
 * closed. laminar.cluster.secret's MAC is checked after this, when set. */
static bool controller_peer_allowed(struct broker_req *req)
{
    const struct handlers_ctx *h = h_node(req);
    const struct broker_config *cfg = h->cfg;
    if (!h->authz.enabled || req->listener >= cfg->listeners_count ||
        !cfg->listener_tls[req->listener] || cfg->listener_sasl[req->listener])
        return true;
    const struct authz_config *ac = NULL;
    struct authz_subject who;
    h_subject(req, &ac, &who);
    if (authz_is_super(ac, who.principal))
        return true;
    BLOG_WARN_LIMITED("controller: node-to-node request from %s on listener %s refused: principal "
                      "%s is not in super.users; closing the connection",
                      who.host, cfg->listeners[req->listener].name, who.principal);
    broker_req_close_after(req);
    broker_req_respond_none(req);
    return false;
}

static void h_controller(struct broker_req *req)
{
    if (controller_peer_allowed(req))
        controller_handle(h_node(req)->ctl, req);
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
    h->meta_fresh = lm_meta_store_version(h->meta) == 0;
    const char *why = NULL;
    if (authz_config_parse(&h->authz, broker_config_get(cfg, "authorizer.class.name"),
                           broker_config_get(cfg, "super.users"),
                           broker_config_get(cfg, "allow.everyone.if.no.acl.found"), &why) != 0) {
        BLOG_ERROR("config: %s", why);
        return LM_E_UNSUPPORTED;
    }
    if (h->authz.enabled)
        BLOG_INFO("ACL authorizer on: %u super users, allow.everyone.if.no.acl.found=%s",
                  h->authz.super_count, h->authz.allow_if_no_acl ? "true" : "false");
    if (controller_configured(cfg)) {
        if ((rc = controller_create(cfg, h->meta, &h->ctl)) != 0)
            return rc;
        controller_set_partition_handler(h->ctl, hs_partition_recv, h);
        /* and on the client listeners: a broker-only node has no controller listener and
         * replicates over its own (Kafka's inter-broker listener); not advertised in
         * ApiVersions; laminar.cluster.secret guards it */
        if ((rc = broker_dispatch_register(d, CONTROLLER_API_KEY, h_controller, -1)) != 0)
            return rc;
        for (uint32_t i = 0; i < cfg->controller_listener_names_count; i++) {
            bool listening = false; /* a broker-only node has none of them */
            for (uint32_t l = 0; l < cfg->listeners_count; l++)
                listening |=
                    strcasecmp(cfg->listeners[l].name, cfg->controller_listener_names[i]) == 0;
            if (!listening)
                continue;
            /* the controller listeners serve laminar's internal API alone */
            struct broker_api_table *t =
                broker_dispatch_listener_table(d, cfg->controller_listener_names[i]);
            if (t == NULL ||
                (rc = broker_api_table_register(t, CONTROLLER_API_KEY, h_controller, -1)) != 0) {
                BLOG_ERROR("setup: cannot serve controller listener %s",
                           cfg->controller_listener_names[i]);
                return rc != 0 ? rc : LM_E_CONFIG;
            }
        }
        if (cfg->controller_listener_names_count == 0) {
            BLOG_ERROR("config: controller.quorum.voters is set but controller.listener.names "
                       "is not (node-to-node traffic has no listener)");
            return LM_E_CONFIG;
        }
    }
    if ((rc = cluster_id_load(h)) != 0 || (rc = broker_topic_configs_load(h)) != 0) {
        BLOG_ERROR("setup: %s", lm_strerror(rc));
        return rc;
    }
    /* In a cluster the image fills from the controller's log after start: nothing is known
     * to be an orphan yet. */
    if (h->ctl == NULL)
        sweep_orphans(h);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(h->meta);
    BLOG_INFO("cluster id %s, node id %d, %zu topics", h->cluster_id, cfg->node_id,
              snap->state.topic_count);
    lm_meta_snapshot_release(snap);
    d->shard_start = hs_shard_start;
    d->shard_drain = hs_shard_drain;
    d->conn_closing = hs_conn_closing;
    d->conn_closed = hs_conn_closed;
    d->handoff_begin = hs_handoff_begin;
    d->handoff_done = hs_handoff_done;
    d->shard_flush = hs_shard_flush;
    d->shard_stop = hs_shard_stop;
    d->metrics_gauges = node_gauges;
    d->node_states = node_states;
    if ((rc = handlers_serve(d, KAFKA_API_VERSIONS_KEY, 0, 4, api_versions)) != 0 ||
        (rc = handlers_data_register(d)) != 0 || (rc = handlers_admin_register(d)) != 0 ||
        (rc = handlers_group_register(d)) != 0 || (rc = txn_api_register(d)) != 0 ||
        (rc = share_fetch_register(d)) != 0 ||
        (rc = handlers_serve(d, KAFKA_ELECT_LEADERS_KEY, 0, 2, hs_elect_leaders)) != 0) {
        BLOG_ERROR("registering handlers: %s", lm_strerror(rc));
        return rc;
    }
    if ((rc = handlers_sasl_setup(d, h)) != 0)
        return rc; /* logged */
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
    h->producer_checkpoint_bytes = HANDLERS_PRODUCER_CHECKPOINT_BYTES;
    pthread_mutex_init(&h->epoch_lock, NULL);
    pthread_mutex_init(&h->offline_lock, NULL);
    pthread_mutex_init(&h->mutation_lock, NULL);
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
    if ((rc = handlers_serve(d, KAFKA_PRODUCE_KEY, 0, 12, data_produce)) != 0 ||
        (rc = handlers_serve(d, KAFKA_FETCH_KEY, 4, 17, data_fetch)) != 0 ||
        (rc = handlers_serve(d, KAFKA_LIST_OFFSETS_KEY, 1, 11, data_list_offsets)) != 0 ||
        (rc = handlers_serve(d, KAFKA_METADATA_KEY, 0, 12, data_metadata)) != 0 ||
        (rc = handlers_serve(d, KAFKA_OFFSET_FOR_LEADER_EPOCH_KEY, 2, 4,
                             data_offset_for_leader_epoch)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DELETE_RECORDS_KEY, 0, 2, data_delete_records)) != 0)
        return rc;
    return 0;
}
