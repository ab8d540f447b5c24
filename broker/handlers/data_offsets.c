/* ListOffsets (v1-11), OffsetForLeaderEpoch (v2-4) and DeleteRecords (v0-2): per-partition
 * questions answered by the shard that owns the partition's log. */
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "protocol/kafka_delete_records.h"
#include "protocol/kafka_list_offsets.h"
#include "protocol/kafka_offset_for_leader_epoch.h"

/* ListOffsets special timestamps (Kafka's ListOffsetsRequest): latest, earliest, max timestamp
 * (KIP-734), earliest local (KIP-405), latest tiered (KIP-1005), earliest pending upload
 * (KIP-1023). */
#define TS_LATEST                  (-1)
#define TS_EARLIEST                (-2)
#define TS_MAX_TIMESTAMP           (-3)
#define TS_EARLIEST_LOCAL          (-4)
#define TS_LATEST_TIERED           (-5)
#define TS_EARLIEST_PENDING_UPLOAD (-6)

/* ListOffsetsRequest.CONSUMER_REPLICA_ID: only consumers are bounded by the high watermark (or
 * the last stable offset); replicas and the debugging id (-2) see the log end. */
#define LO_CONSUMER_REPLICA_ID (-1)

/* Whether a negative timestamp may be asked at this version: each special value needs the
 * version that introduced it, and any other negative value is never valid. Kafka 4.x's
 * ReplicaManager.isListOffsetsTimestampUnsupported answers both with UNSUPPORTED_VERSION for
 * the partition (timestampMinSupportedVersion: -1/-2 v1, -3 v7, -4 v8, -5 v9, -6 v11). */
static bool lo_timestamp_supported(int64_t ts, int16_t version)
{
    if (ts >= 0)
        return true;
    int16_t min;
    switch (ts) {
    case TS_LATEST:
    case TS_EARLIEST:
        min = 1;
        break;
    case TS_MAX_TIMESTAMP:
        min = 7;
        break;
    case TS_EARLIEST_LOCAL:
        min = 8;
        break;
    case TS_LATEST_TIERED:
        min = 9;
        break;
    case TS_EARLIEST_PENDING_UPLOAD:
        min = 11;
        break;
    default:
        return false;
    }
    return version >= min;
}

static void close_nomem(struct broker_req *req)
{
    BLOG_WARN_LIMITED("api %d: request arena exhausted, closing", req->api_key);
    broker_req_close_after(req);
    broker_req_respond_none(req);
}

/* Fills w's routing from the shard's view: a topic the principal may not perform op on
 * (TOPIC_AUTHORIZATION_FAILED, checked first as KafkaApis does) and an unknown topic/partition
 * are answered here. */
static void route(struct broker_req *req, struct hshard *hs, struct hwork *w, int8_t op,
                  struct kafka_str topic, int32_t partition)
{
    w->topic = topic.ptr;
    w->topic_len = topic.len > 0 ? (size_t)topic.len : 0;
    w->partition = partition;
    if (!h_allowed_k(req, op, AUTHZ_RES_TOPIC, topic)) {
        w->error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
        w->owner = HWORK_DONE;
        return;
    }
    struct htopic *t = topic.len > 0 ? hs_topic(hs, topic.ptr, (size_t)topic.len) : NULL;
    if (t == NULL || partition < 0 || partition >= t->meta->partition_count) {
        w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        w->owner = HWORK_DONE;
        return;
    }
    w->owner = hs_owner(hs, w->topic, w->topic_len, partition);
}

/* The three APIs answer request topics[].partitions[] in request order, one fan item per
 * partition, run on the shard that owns it. Their generated structs name every member of that
 * shape alike but the topic name (NAME) and the partition index (PART), so the shape is written
 * once here.
 *
 * FAN_ITEMS defines `static bool fn(req, c, &items, &n)`: allocates c->resp.topics[].partitions[]
 * (each answered by DEFAULTS(o) until an op runs) and one routed item per partition, each
 * topic authorized for ACL operation OP; false when the arena is exhausted. */
#define FAN_ITEMS(fn, ctx_t, NAME, PART, DEFAULTS, OP)                                             \
    static bool fn(struct broker_req *req, struct ctx_t *c, struct hwork **items_out,              \
                   size_t *n_out)                                                                  \
    {                                                                                              \
        struct hshard *hs = hs_of(req->shard);                                                     \
        int32_t nt = c->rq.topics_count > 0 ? c->rq.topics_count : 0;                              \
        size_t n = 0;                                                                              \
        for (int32_t i = 0; i < nt; i++)                                                           \
            n += c->rq.topics[i].partitions_count > 0 ? (size_t)c->rq.topics[i].partitions_count   \
                                                      : 0;                                         \
        c->resp.topics = h_alloc(req, (size_t)nt, sizeof(*c->resp.topics));                        \
        struct hwork *items = h_alloc(req, n, sizeof(*items));                                     \
        if (c->resp.topics == NULL || items == NULL)                                               \
            return false;                                                                          \
        c->resp.topics_count = nt;                                                                 \
        size_t k = 0;                                                                              \
        for (int32_t i = 0; i < nt; i++) {                                                         \
            const __typeof__(c->rq.topics[0]) *ti = &c->rq.topics[i];                              \
            __typeof__(c->resp.topics[0]) *to = &c->resp.topics[i];                                \
            int32_t np = ti->partitions_count > 0 ? ti->partitions_count : 0;                      \
            to->NAME = ti->NAME;                                                                   \
            to->partitions = h_alloc(req, (size_t)np, sizeof(*to->partitions));                    \
            if (to->partitions == NULL)                                                            \
                return false;                                                                      \
            to->partitions_count = np;                                                             \
            for (int32_t j = 0; j < np; j++, k++) {                                                \
                to->partitions[j].PART = ti->partitions[j].PART;                                   \
                DEFAULTS(&to->partitions[j]);                                                      \
                items[k].in = &ti->partitions[j];                                                  \
                items[k].out = &to->partitions[j];                                                 \
                route(req, hs, &items[k], OP, ti->NAME, ti->partitions[j].PART);                   \
            }                                                                                      \
        }                                                                                          \
        *items_out = items;                                                                        \
        *n_out = n;                                                                                \
        return true;                                                                               \
    }

/* FAN_FINISH defines the hfan_finish of ctx_t: each item's error into its response partition
 * (items are in request order), then the response. */
#define FAN_FINISH(fn, ctx_t)                                                                      \
    static void fn(struct hfan *f)                                                                 \
    {                                                                                              \
        struct ctx_t *c = f->ctx;                                                                  \
        size_t k = 0;                                                                              \
        for (int32_t i = 0; i < c->resp.topics_count; i++)                                         \
            for (int32_t j = 0; j < c->resp.topics[i].partitions_count; j++, k++)                  \
                c->resp.topics[i].partitions[j].error_code = f->items[k].error;                    \
        LM_ASSERT(k == f->count);                                                                  \
        h_respond(f->req, &c->resp);                                                               \
    }

/* Partition p without a log to read: unknown here, or its log failed to open. */
static bool no_log(const struct hpart *p, struct hwork *w)
{
    if (p != NULL && p->replicated && p->part != NULL && !partition_is_leader(p->part)) {
        /* a follower's replica: these requests are the leader's to answer, as in Kafka */
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        return true;
    }
    if (p != NULL && p->log != NULL)
        return false;
    w->error = p == NULL ? KAFKA_UNKNOWN_TOPIC_OR_PARTITION : KAFKA_KAFKA_STORAGE_ERROR;
    return true;
}

/* ---- ListOffsets ---------------------------------------------------------------------------- */

struct lo_ctx {
    struct kafka_list_offsets_request rq;
    struct kafka_list_offsets_response resp;
    int16_t version;
};

/* How long a ListOffsets waits for a woken leader's lease (it has no max_wait of its own). */
#define LO_LEASE_WAIT_MS 500

static void list_offsets_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct lo_ctx *c = f->ctx;
    const struct kafka_list_offsets_request_partition *in = w->in;
    struct kafka_list_offsets_response_partition *o = w->out;
    o->timestamp = -1;
    o->offset = -1;
    o->leader_epoch = -1;
    if (!lo_timestamp_supported(in->timestamp, c->version)) {
        w->error = KAFKA_UNSUPPORTED_VERSION;
        return;
    }
    if (no_log(p, w))
        return;
    if ((w->error = h_check_epoch(p, in->current_leader_epoch)) != KAFKA_NONE)
        return;
    if (p->replicated && p->part != NULL && !partition_hw_known(p->part)) {
        /* Kafka's answer while a new leader's high watermark is below its epoch's start */
        w->error = KAFKA_OFFSET_NOT_AVAILABLE;
        return;
    }
    if (p->replicated && p->part != NULL &&
        !partition_lease_valid(p->part, (int64_t)broker_now_ms())) {
        /* A leader without its lease (cut off from its followers) may have been succeeded by
         * one that exposed a higher high watermark. One this read just woke from quiescence
         * has its lease a round trip away: the read waits for it. Otherwise, or past the wait,
         * LEADER_NOT_AVAILABLE, which librdkafka retries for ListOffsets (after a metadata
         * refresh) and the Java client too; it does not retry OFFSET_NOT_AVAILABLE. */
        if (!hs_lease_park(hs, p, w, f, LO_LEASE_WAIT_MS, KAFKA_LEADER_NOT_AVAILABLE))
            w->error = KAFKA_LEADER_NOT_AVAILABLE;
        return;
    }
    int64_t start = storage_log_start_offset(p->log);
    /* Kafka's Partition.fetchOffsetForTimestamp: consumers are bounded by the high watermark
     * (read_uncommitted) or the last stable offset (read_committed: the earliest open
     * transaction when below the high watermark); replicas by the log end. */
    int64_t last_fetchable = c->rq.replica_id == LO_CONSUMER_REPLICA_ID
                                 ? storage_log_high_watermark(p->log)
                                 : storage_log_end_offset(p->log);
    int64_t first_unstable = storage_log_first_unstable_offset(p->log);
    if (c->rq.replica_id == LO_CONSUMER_REPLICA_ID && c->rq.isolation_level == 1 &&
        first_unstable >= 0 && first_unstable < last_fetchable)
        last_fetchable = first_unstable;
    int rc = 0;
    switch (in->timestamp) {
    case TS_EARLIEST:
    case TS_EARLIEST_LOCAL:
        /* Without tiered storage the local log is the whole log (UnifiedLog
         * .fetchOffsetByTimestamp treats -4 as -2 when remote storage is off). */
        o->offset = start;
        break;
    case TS_LATEST:
        o->offset = last_fetchable;
        break;
    case TS_LATEST_TIERED:
    case TS_EARLIEST_PENDING_UPLOAD:
        /* Nothing is tiered on this broker: Kafka answers NONE with offset, timestamp and
         * leader epoch all -1 (UnifiedLog without remote storage). */
        return;
    case TS_MAX_TIMESTAMP:
        rc = storage_log_max_timestamp(p->log, &o->offset, &o->timestamp);
        if (rc == 0 && o->offset >= 0 && o->offset < start) {
            /* Never an offset below the log start (DeleteRecords moved it past the record). */
            o->offset = -1;
            o->timestamp = -1;
        }
        break;
    default:
        LM_ASSERT(in->timestamp >= 0); /* lo_timestamp_supported refused the others */
        rc = storage_log_offset_for_timestamp(p->log, in->timestamp, &o->offset, &o->timestamp);
        if (rc == 0 && o->offset >= 0 && o->offset < start)
            o->offset = start; /* the first record at or after ts that still exists */
        break;
    }
    if (rc != 0) {
        o->offset = -1;
        o->timestamp = -1;
        w->error = h_storage_error(rc);
        return;
    }
    /* ReplicaManager.fetchOffset: a record found at or beyond the last fetchable offset is not
     * visible yet, answered NONE with offset and timestamp -1 (max timestamp and timestamp
     * lookups; the earliest and latest offsets are never beyond it). */
    if (in->timestamp != TS_LATEST && in->timestamp != TS_EARLIEST &&
        in->timestamp != TS_EARLIEST_LOCAL && o->offset >= last_fetchable) {
        o->offset = -1;
        o->timestamp = -1;
    }
    LM_ASSERT(o->offset >= -1);
    o->leader_epoch = o->offset >= 0 ? p->leader_epoch : -1;
}

FAN_FINISH(list_offsets_finish, lo_ctx)

static void list_offsets_defaults(struct kafka_list_offsets_response_partition *o)
{
    o->timestamp = -1;
    o->offset = -1;
    o->leader_epoch = -1;
}

FAN_ITEMS(list_offsets_items, lo_ctx, name, partition_index, list_offsets_defaults,
          AUTHZ_OP_DESCRIBE)

static int lo_item_cmp(const void *x, const void *y)
{
    const struct hwork *a = *(const struct hwork *const *)x;
    const struct hwork *b = *(const struct hwork *const *)y;
    size_t n = a->topic_len < b->topic_len ? a->topic_len : b->topic_len;
    int c = n > 0 ? memcmp(a->topic, b->topic, n) : 0;
    if (c != 0)
        return c;
    if (a->topic_len != b->topic_len)
        return a->topic_len < b->topic_len ? -1 : 1;
    return (a->partition > b->partition) - (a->partition < b->partition);
}

/* A partition asked for more than once in one request is answered INVALID_REQUEST at each
 * place, looked up nowhere (ListOffsetsRequest.duplicatePartitions, checked first by
 * ReplicaManager.fetchOffset). Sorted, so a request with many partitions costs O(n log n).
 * False when the arena is exhausted. */
static bool lo_mark_duplicates(struct broker_req *req, struct hwork *items, size_t n)
{
    if (n < 2)
        return true;
    struct hwork **order = h_alloc(req, n, sizeof(*order));
    if (order == NULL)
        return false;
    for (size_t i = 0; i < n; i++)
        order[i] = &items[i];
    qsort(order, n, sizeof(*order), lo_item_cmp);
    for (size_t i = 0; i + 1 < n; i++) {
        if (lo_item_cmp(&order[i], &order[i + 1]) != 0)
            continue;
        for (size_t k = i; k < i + 2; k++) {
            order[k]->error = KAFKA_INVALID_REQUEST;
            order[k]->owner = HWORK_DONE;
        }
    }
    return true;
}

void data_list_offsets(struct broker_req *req)
{
    struct lo_ctx *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    if (c == NULL || f == NULL)
        return close_nomem(req);
    kafka_list_offsets_request_init(&c->rq);
    if (!h_decode(req, &c->rq))
        return;
    c->version = req->api_version;
    kafka_list_offsets_response_init(&c->resp);
    struct hwork *items;
    size_t n;
    if (!list_offsets_items(req, c, &items, &n) || !lo_mark_duplicates(req, items, n) ||
        !hfan_init(f, req, items, n, list_offsets_op, list_offsets_finish, c))
        return close_nomem(req);
    hfan_start(f);
}

/* ---- OffsetForLeaderEpoch ------------------------------------------------------------------- */

struct ole_ctx {
    struct kafka_offset_for_leader_epoch_request rq;
    struct kafka_offset_for_leader_epoch_response resp;
};

static void ole_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    (void)hs;
    (void)f;
    const struct kafka_offset_for_leader_epoch_request_partition *in = w->in;
    struct kafka_offset_for_leader_epoch_response_epoch_end_offset *o = w->out;
    o->leader_epoch = -1;
    o->end_offset = -1;
    if (no_log(p, w))
        return;
    if ((w->error = h_check_epoch(p, in->current_leader_epoch)) != KAFKA_NONE)
        return;
    /* KIP-101/KIP-279 from the leader-epoch cache. A log that has no batch yet is at the
     * leader's epoch with its end offset, as Kafka's cache answers for the latest epoch. */
    if (storage_log_latest_epoch(p->log) < 0 && in->leader_epoch == p->leader_epoch) {
        o->leader_epoch = p->leader_epoch;
        o->end_offset = storage_log_end_offset(p->log);
        return;
    }
    storage_log_epoch_end_offset(p->log, in->leader_epoch, &o->leader_epoch, &o->end_offset);
}

FAN_FINISH(ole_finish, ole_ctx)

static void ole_defaults(struct kafka_offset_for_leader_epoch_response_epoch_end_offset *o)
{
    o->leader_epoch = -1;
    o->end_offset = -1;
}

FAN_ITEMS(ole_items, ole_ctx, topic, partition, ole_defaults, AUTHZ_OP_DESCRIBE)

void data_offset_for_leader_epoch(struct broker_req *req)
{
    struct ole_ctx *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    if (c == NULL || f == NULL)
        return close_nomem(req);
    kafka_offset_for_leader_epoch_request_init(&c->rq);
    if (!h_decode(req, &c->rq))
        return;
    kafka_offset_for_leader_epoch_response_init(&c->resp);
    struct hwork *items;
    size_t n;
    if (!ole_items(req, c, &items, &n) || !hfan_init(f, req, items, n, ole_op, ole_finish, c))
        return close_nomem(req);
    hfan_start(f);
}

/* ---- DeleteRecords -------------------------------------------------------------------------- */

struct dr_ctx {
    struct kafka_delete_records_request rq;
    struct kafka_delete_records_response resp;
};

static void dr_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    (void)hs;
    (void)f;
    const struct kafka_delete_records_request_delete_records_partition *in = w->in;
    struct kafka_delete_records_response_delete_records_partition_result *o = w->out;
    o->low_watermark = -1;
    /* Kafka's ReplicaManager: "Cannot delete records of internal topic" (the group
     * coordinator's offsets would go with them). */
    if (h_topic_internal(w->topic, w->topic_len)) {
        w->error = KAFKA_INVALID_TOPIC_EXCEPTION;
        return;
    }
    if (no_log(p, w))
        return;
    int64_t hw = storage_log_high_watermark(p->log);
    /* -1 means "up to the high watermark" (Kafka's DeleteRecordsRequest.HIGH_WATERMARK). */
    int64_t target = in->offset == -1 ? hw : in->offset;
    if (target < 0 || target > hw) {
        w->error = KAFKA_OFFSET_OUT_OF_RANGE;
        o->low_watermark = storage_log_start_offset(p->log);
        return;
    }
    if (target > storage_log_start_offset(p->log)) {
        int rc = partition_advance_start(p->part, target); /* raft's log start follows */
        if (rc != 0) {
            w->error = h_storage_error(rc);
            BLOG_WARN("partition %s-%d: delete records: %s", p->topic, p->partition,
                      lm_strerror(rc));
        } else if (p->replicated) { /* and the followers' (hs_log_start_sync) */
            p->start_sync = target;
            p->start_acked = 0;
            p->start_sync_at_ms = 0;
        }
    }
    o->low_watermark = storage_log_start_offset(p->log);
}

FAN_FINISH(dr_finish, dr_ctx)

static void dr_defaults(struct kafka_delete_records_response_delete_records_partition_result *o)
{
    o->low_watermark = -1;
}

FAN_ITEMS(dr_items, dr_ctx, name, partition_index, dr_defaults, AUTHZ_OP_DELETE)

void data_delete_records(struct broker_req *req)
{
    struct dr_ctx *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    if (c == NULL || f == NULL)
        return close_nomem(req);
    kafka_delete_records_request_init(&c->rq);
    if (!h_decode(req, &c->rq))
        return;
    kafka_delete_records_response_init(&c->resp);
    struct hwork *items;
    size_t n;
    if (!dr_items(req, c, &items, &n) || !hfan_init(f, req, items, n, dr_op, dr_finish, c))
        return close_nomem(req);
    hfan_start(f);
}
