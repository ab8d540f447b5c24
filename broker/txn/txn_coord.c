/* Transaction coordinator state machine (see txn_coord.h). The rules of each request follow
 * Kafka's TransactionCoordinator (handleInitProducerId, handleAddPartitionsToTransaction,
 * handleVerifyPartitionsInTransaction, handleEndTransaction, abortTimedOutTransactions) and
 * TransactionMetadata (prepareIncrementProducerEpoch, prepareProducerIdRotation,
 * prepareFenceProducerEpoch, prepareAbortOrCommit, prepareComplete, prepareDead). */
#include "broker/txn/txn_coord.h"

#include <stdlib.h>
#include <string.h>

#include "broker/group/group_records.h"
#include "broker/txn/txn_records.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"
#include "common/lm_hash.h"
#include "protocol/kafka_errors.h"

#define TXN_BUCKETS    4096 /* power of two */
#define OFFSETS_TOPIC  "__consumer_offsets"
#define MARK_TO_SEND   0
#define MARK_IN_FLIGHT 1
#define MARK_ACKED     2

enum part_load { PART_NOT_OWNED = 0, PART_LOADING, PART_OWNED };

/* The persisted part of a transactional id's metadata (one TransactionLogValue). Partitions
 * are sorted by (topic, partition), unique; their topic strings are owned. */
struct txn_md {
    int64_t pid;
    int64_t prev_pid; /* the id before the last rotation (KIP-360 retries) */
    int64_t next_pid; /* tv2, in Prepare*: the id the Complete* record moves to (overflow) */
    bool tv2;         /* the client uses transaction version 2 (KIP-890 part 2) */
    int16_t epoch;
    int16_t last_epoch;
    int32_t timeout_ms;
    uint8_t state;
    int64_t start_ts_ms;
    int64_t update_ts_ms;
    int32_t n_parts;
    int32_t cap_parts;
    struct lm_txn_topic_partition *parts;
};

/* An implicit add waiting for the change in flight, or for the markers of the transaction
 * before it (its partitions and topics owned). A partition leader adds the partitions of each
 * Produce before appending it; answering the adds of one id in their order keeps a producer's
 * batches in order (a later batch never passes an earlier one refused for a retry), as Kafka
 * gets by handling one request of a connection at a time. A transaction version 2 producer
 * starts its next transaction as soon as EndTxn answers, while the markers are still out:
 * its first adds wait for the Complete record instead of failing (Kafka's partition leaders
 * retry CONCURRENT_TRANSACTIONS themselves for these adds). */
struct parked {
    uint64_t token;
    int64_t since_ms; /* when it came: answered CONCURRENT_TRANSACTIONS after
                       * LM_TXN_PARKED_TIMEOUT_MS (the Produce is retried) */
    int64_t pid;
    int16_t epoch;
    int32_t n;
    struct lm_txn_topic_partition *parts;
};

struct txn_entry {
    char *tid; /* owned, tid_len bytes */
    int32_t tid_len;
    int32_t log_part;
    size_t dense_idx; /* position in coord->dense */
    struct txn_entry *next_in_bucket;
    struct txn_md cur;
    /* a state change being written: next is applied when write_id is committed */
    bool pending;
    uint8_t pending_state; /* the target state; PREPARE_EPOCH_FENCE for a fencing abort */
    uint64_t write_id;
    struct txn_md next;
    /* the request that waits for the write, its response built ahead */
    bool has_waiter;
    struct lm_txn_resp waiter;
    /* markers, one per cur.parts entry, while cur.state is PrepareCommit/PrepareAbort */
    uint8_t *mark;
    int64_t *mark_retry_ms;
    uint64_t *mark_id; /* the id of the latest send */
    /* implicit adds (tv2) that came while a change was being written, in arrival order */
    struct parked *park;
    size_t n_park, cap_park;
};

struct lm_txn_coord {
    struct lm_txn_config cfg;
    uint8_t part_load[LM_TXN_PARTITIONS_MAX];
    int32_t coord_epoch[LM_TXN_PARTITIONS_MAX];
    struct txn_entry *buckets[TXN_BUCKETS];
    struct txn_entry **dense;
    size_t n_dense, cap_dense;
    uint64_t next_write_id;
    uint64_t next_marker_id;
    int64_t last_abort_check_ms;
    int64_t last_expire_check_ms;
    /* the ready being assembled */
    struct lm_txn_write *writes;
    size_t n_writes, cap_writes;
    struct lm_txn_marker *markers;
    char **marker_bufs; /* marker_bufs[i] owns the strings of markers[i] */
    size_t n_markers, cap_markers, cap_marker_bufs;
    struct lm_txn_resp *resps;
    size_t n_resps, cap_resps;
};

const char *lm_txn_state_name(int state)
{
    static const char *const names[] = {"Empty",        "Ongoing",          "PrepareCommit",
                                        "PrepareAbort", "CompleteCommit",   "CompleteAbort",
                                        "Dead",         "PrepareEpochFence"};
    if (state < 0 || (size_t)state >= LM_ARRAY_LEN(names))
        return "Unknown";
    return names[state];
}

void lm_txn_config_default(struct lm_txn_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->state_partitions = 50;
    cfg->offsets_partitions = 50;
    cfg->max_timeout_ms = 900000;
    cfg->id_expiration_ms = 604800000;
    cfg->abort_check_interval_ms = 10000;
    cfg->expiration_check_interval_ms = 3600000;
}

/* ---- small helpers ---- */

static bool epoch_exhausted(int16_t e)
{
    return e >= INT16_MAX - 1;
}

static int str_cmp(struct kafka_str a, struct kafka_str b)
{
    int32_t n = a.len < b.len ? a.len : b.len;
    int c = n > 0 ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (c != 0)
        return c;
    return (a.len > b.len) - (a.len < b.len);
}

static int tp_cmp(struct kafka_str topic, int32_t partition, const struct lm_txn_topic_partition *b)
{
    int c = str_cmp(topic, b->topic);
    if (c != 0)
        return c;
    return (partition > b->partition) - (partition < b->partition);
}

/* md_find returns the index of (topic, partition) in md's sorted parts, or -(insert point)-1. */
static int32_t md_find(const struct txn_md *md, struct kafka_str topic, int32_t partition)
{
    int32_t lo = 0, hi = md->n_parts;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = tp_cmp(topic, partition, &md->parts[mid]);
        if (c == 0)
            return mid;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -lo - 1;
}

static void md_clear_parts(struct txn_md *md)
{
    for (int32_t i = 0; i < md->n_parts; i++)
        free((void *)md->parts[i].topic.ptr);
    md->n_parts = 0;
}

static void md_deinit(struct txn_md *md)
{
    md_clear_parts(md);
    free(md->parts);
    md->parts = NULL;
    md->cap_parts = 0;
}

/* md_add inserts (topic, partition) if absent; the topic is copied. */
static int md_add(struct txn_md *md, struct kafka_str topic, int32_t partition)
{
    int32_t at = md_find(md, topic, partition);
    if (at >= 0)
        return 0;
    at = -at - 1;
    if (md->n_parts >= LM_TXN_PARTS_PER_TXN_MAX)
        return LM_E_TOO_LARGE;
    LM_TRY(LM_GROW(md->parts, md->cap_parts, md->n_parts + 1, 8));
    char *copy = malloc(topic.len > 0 ? (size_t)topic.len : 1);
    if (copy == NULL)
        return LM_E_NOMEM;
    if (topic.len > 0)
        memcpy(copy, topic.ptr, (size_t)topic.len);
    memmove(&md->parts[at + 1], &md->parts[at], (size_t)(md->n_parts - at) * sizeof(*md->parts));
    md->parts[at] = (struct lm_txn_topic_partition){{copy, topic.len}, partition};
    md->n_parts++;
    LM_ASSERT(md->n_parts <= md->cap_parts);
    return 0;
}

/* md_copy makes dst (deinitialised or empty) a deep copy of src. */
static int md_copy(struct txn_md *dst, const struct txn_md *src)
{
    md_clear_parts(dst);
    struct lm_txn_topic_partition *keep = dst->parts;
    int32_t keep_cap = dst->cap_parts;
    *dst = *src;
    dst->parts = keep;
    dst->cap_parts = keep_cap;
    dst->n_parts = 0;
    for (int32_t i = 0; i < src->n_parts; i++)
        LM_TRY(md_add(dst, src->parts[i].topic, src->parts[i].partition));
    LM_ASSERT(dst->n_parts == src->n_parts);
    return 0;
}

/* ---- the id table ---- */

static size_t bucket_of(struct kafka_str tid)
{
    return (size_t)(lm_fnv1a64(tid.ptr, tid.len > 0 ? (size_t)tid.len : 0) & (TXN_BUCKETS - 1));
}

static struct txn_entry *entry_find(const struct lm_txn_coord *c, struct kafka_str tid)
{
    for (struct txn_entry *e = c->buckets[bucket_of(tid)]; e != NULL; e = e->next_in_bucket)
        if (e->tid_len == tid.len && memcmp(e->tid, tid.ptr, (size_t)tid.len) == 0)
            return e;
    return NULL;
}

static struct kafka_str entry_tid(const struct txn_entry *e)
{
    return (struct kafka_str){e->tid, e->tid_len};
}

static int entry_new(struct lm_txn_coord *c, struct kafka_str tid, struct txn_entry **out)
{
    LM_ASSERT(tid.len > 0);
    if (c->n_dense >= LM_TXN_IDS_MAX)
        return LM_E_FULL;
    LM_TRY(LM_GROW(c->dense, c->cap_dense, c->n_dense + 1, 64));
    struct txn_entry *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return LM_E_NOMEM;
    e->tid = malloc((size_t)tid.len);
    if (e->tid == NULL) {
        free(e);
        return LM_E_NOMEM;
    }
    memcpy(e->tid, tid.ptr, (size_t)tid.len);
    e->tid_len = tid.len;
    e->log_part = lm_txn_partition_of(c, tid);
    e->cur.pid = LM_TXN_NO_PRODUCER_ID;
    e->cur.prev_pid = LM_TXN_NO_PRODUCER_ID;
    e->cur.next_pid = LM_TXN_NO_PRODUCER_ID;
    e->cur.epoch = LM_TXN_NO_PRODUCER_EPOCH;
    e->cur.last_epoch = LM_TXN_NO_PRODUCER_EPOCH;
    e->cur.start_ts_ms = -1;
    size_t b = bucket_of(tid);
    e->next_in_bucket = c->buckets[b];
    c->buckets[b] = e;
    e->dense_idx = c->n_dense;
    c->dense[c->n_dense++] = e;
    *out = e;
    return 0;
}

static void marks_free(struct txn_entry *e)
{
    free(e->mark);
    free(e->mark_retry_ms);
    free(e->mark_id);
    e->mark = NULL;
    e->mark_retry_ms = NULL;
    e->mark_id = NULL;
}

static void resp_free(struct lm_txn_resp *r)
{
    for (int32_t i = 0; i < r->n_parts; i++)
        free((void *)r->parts[i].topic.ptr);
    free(r->parts);
    r->parts = NULL;
    r->n_parts = 0;
}

static void parked_free(struct parked *p)
{
    for (int32_t i = 0; i < p->n; i++)
        free((void *)p->parts[i].topic.ptr);
    free(p->parts);
    p->parts = NULL;
    p->n = 0;
}

static void entry_remove(struct lm_txn_coord *c, struct txn_entry *e)
{
    size_t b = bucket_of(entry_tid(e));
    struct txn_entry **pp = &c->buckets[b];
    while (*pp != e) {
        LM_ASSERT(*pp != NULL);
        pp = &(*pp)->next_in_bucket;
    }
    *pp = e->next_in_bucket;
    LM_ASSERT(e->dense_idx < c->n_dense && c->dense[e->dense_idx] == e);
    c->dense[e->dense_idx] = c->dense[c->n_dense - 1];
    c->dense[e->dense_idx]->dense_idx = e->dense_idx;
    c->n_dense--;
    if (e->has_waiter)
        resp_free(&e->waiter);
    for (size_t i = 0; i < e->n_park; i++)
        parked_free(&e->park[i]);
    free(e->park);
    md_deinit(&e->cur);
    md_deinit(&e->next);
    marks_free(e);
    free(e->tid);
    free(e);
}

/* ---- outputs ---- */

static int push_resp(struct lm_txn_coord *c, const struct lm_txn_resp *r)
{
    LM_TRY(LM_GROW(c->resps, c->cap_resps, c->n_resps + 1, 16));
    c->resps[c->n_resps++] = *r;
    return 0;
}

/* resp_init builds a response for a request; ADD copies the request's partitions. */
static int resp_init(struct lm_txn_resp *r, uint64_t token, uint8_t kind, int32_t n_parts,
                     const struct lm_txn_topic_partition *parts)
{
    memset(r, 0, sizeof(*r));
    r->token = token;
    r->kind = kind;
    r->producer_id = LM_TXN_NO_PRODUCER_ID;
    r->producer_epoch = LM_TXN_NO_PRODUCER_EPOCH;
    if (n_parts <= 0)
        return 0;
    r->parts = calloc((size_t)n_parts, sizeof(*r->parts));
    if (r->parts == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n_parts; i++) {
        int32_t len = parts[i].topic.len;
        char *copy = malloc(len > 0 ? (size_t)len : 1);
        if (copy == NULL) {
            resp_free(r);
            return LM_E_NOMEM;
        }
        if (len > 0)
            memcpy(copy, parts[i].topic.ptr, (size_t)len);
        r->parts[i] = (struct lm_txn_part_result){{copy, len}, parts[i].partition, 0};
        r->n_parts = i + 1;
    }
    return 0;
}

static void resp_set_error(struct lm_txn_resp *r, int16_t err)
{
    r->error_code = err;
    for (int32_t i = 0; i < r->n_parts; i++)
        r->parts[i].error_code = err;
}

/* answer_now queues a response with one error for everything. */
static int answer_now(struct lm_txn_coord *c, uint64_t token, uint8_t kind, int16_t err,
                      int32_t n_parts, const struct lm_txn_topic_partition *parts)
{
    struct lm_txn_resp r;
    LM_TRY(resp_init(&r, token, kind, n_parts, parts));
    resp_set_error(&r, err);
    int rc = push_resp(c, &r);
    if (rc != 0)
        resp_free(&r);
    return rc;
}

/* push_write encodes md (or a tombstone when md is NULL) for e and returns its write id. */
static int push_write(struct lm_txn_coord *c, const struct txn_entry *e, const struct txn_md *md,
                      uint64_t *write_id)
{
    LM_TRY(LM_GROW(c->writes, c->cap_writes, c->n_writes + 1, 16));
    struct kafka_str tid = entry_tid(e);
    size_t klen = lm_tr_key_size(tid);
    struct lm_tr_value v = {0};
    size_t vlen = 0;
    if (md != NULL) {
        v = (struct lm_tr_value){.version = md->tv2 ? 1 : 0,
                                 .producer_id = md->pid,
                                 .previous_producer_id = md->prev_pid,
                                 .next_producer_id = md->tv2 ? md->next_pid : -1,
                                 .client_tv = md->tv2 ? 2 : 0,
                                 .producer_epoch = md->epoch,
                                 .timeout_ms = md->timeout_ms,
                                 .status = (int8_t)md->state,
                                 .n_partitions = md->n_parts,
                                 .partitions = md->parts,
                                 .update_ts_ms = md->update_ts_ms,
                                 .start_ts_ms = md->start_ts_ms};
        vlen = lm_tr_value_size(&v);
    }
    uint8_t *buf = malloc(klen + vlen);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t got;
    int rc = lm_tr_key_encode(tid, buf, klen, &got);
    LM_ASSERT(rc == 0 && got == klen);
    struct kafka_bytes value = KAFKA_BYTES_NULL;
    if (md != NULL) {
        rc = lm_tr_value_encode(&v, buf + klen, vlen, &got);
        LM_ASSERT(rc == 0 && got == vlen);
        value = (struct kafka_bytes){buf + klen, (int32_t)vlen};
    }
    *write_id = ++c->next_write_id;
    c->writes[c->n_writes++] = (struct lm_txn_write){
        *write_id, e->log_part, (struct kafka_bytes){buf, (int32_t)klen}, value};
    return 0;
}

static int push_marker(struct lm_txn_coord *c, struct txn_entry *e, int32_t i)
{
    LM_TRY(LM_GROW(c->markers, c->cap_markers, c->n_markers + 1, 16));
    LM_TRY(LM_GROW(c->marker_bufs, c->cap_marker_bufs, c->n_markers + 1, 16));
    const struct lm_txn_topic_partition *tp = &e->cur.parts[i];
    size_t tlen = tp->topic.len > 0 ? (size_t)tp->topic.len : 0;
    char *buf = malloc((size_t)e->tid_len + tlen + 1);
    if (buf == NULL)
        return LM_E_NOMEM;
    memcpy(buf, e->tid, (size_t)e->tid_len);
    if (tlen > 0)
        memcpy(buf + e->tid_len, tp->topic.ptr, tlen);
    c->marker_bufs[c->n_markers] = buf;
    e->mark_id[i] = ++c->next_marker_id;
    c->markers[c->n_markers++] =
        (struct lm_txn_marker){.marker_id = e->mark_id[i],
                               .transactional_id = {buf, e->tid_len},
                               .producer_id = e->cur.pid,
                               .producer_epoch = e->cur.epoch,
                               .commit = e->cur.state == LM_TXN_PREPARE_COMMIT,
                               .coordinator_epoch = c->coord_epoch[e->log_part],
                               .topic = {buf + e->tid_len, tp->topic.len},
                               .partition = tp->partition};
    return 0;
}

/* ---- transitions ---- */

/* begin_transit makes e->next a copy of cur to be edited, for a change to state `target`. */
static int begin_transit(struct txn_entry *e, uint8_t target, int64_t now_ms)
{
    LM_ASSERT(!e->pending);
    LM_TRY(md_copy(&e->next, &e->cur));
    e->next.update_ts_ms = now_ms;
    e->pending_state = target;
    return 0;
}

/* commit_transit writes e->next; the waiter (if any) is answered when it is committed. */
static int commit_transit(struct lm_txn_coord *c, struct txn_entry *e, bool tombstone)
{
    LM_ASSERT(!e->pending);
    LM_TRY(push_write(c, e, tombstone ? NULL : &e->next, &e->write_id));
    e->pending = true;
    return 0;
}

static int start_markers(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms);

/* write_complete writes CompleteCommit/CompleteAbort once every marker is acknowledged. */
static int write_complete(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms)
{
    LM_ASSERT(e->cur.state == LM_TXN_PREPARE_COMMIT || e->cur.state == LM_TXN_PREPARE_ABORT);
    uint8_t target =
        e->cur.state == LM_TXN_PREPARE_COMMIT ? LM_TXN_COMPLETE_COMMIT : LM_TXN_COMPLETE_ABORT;
    LM_TRY(begin_transit(e, target, now_ms));
    e->next.state = target;
    if (e->cur.next_pid != LM_TXN_NO_PRODUCER_ID) {
        /* tv2 over an exhausted epoch: the producer continues as the new id at epoch 0 */
        e->next.prev_pid = e->cur.pid;
        e->next.pid = e->cur.next_pid;
        e->next.epoch = 0;
        e->next.next_pid = LM_TXN_NO_PRODUCER_ID;
    }
    md_clear_parts(&e->next);
    return commit_transit(c, e, false);
}

static bool all_marked(const struct txn_entry *e)
{
    for (int32_t i = 0; i < e->cur.n_parts; i++)
        if (e->mark[i] != MARK_ACKED)
            return false;
    return true;
}

/* send_due_markers hands out the markers of e whose (re)send time has come. */
static int send_due_markers(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms)
{
    LM_ASSERT(e->mark != NULL);
    for (int32_t i = 0; i < e->cur.n_parts; i++) {
        if (e->mark[i] == MARK_ACKED || e->mark_retry_ms[i] > now_ms)
            continue;
        /* to send, or in flight without an answer for too long (an answer lost with its
         * connection): send it (again) */
        LM_TRY(push_marker(c, e, i));
        e->mark[i] = MARK_IN_FLIGHT;
        e->mark_retry_ms[i] = now_ms + LM_TXN_MARKER_TIMEOUT_MS;
    }
    return 0;
}

/* start_markers begins the marker phase of a committed PrepareCommit/PrepareAbort. */
static int start_markers(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms)
{
    LM_ASSERT(e->cur.state == LM_TXN_PREPARE_COMMIT || e->cur.state == LM_TXN_PREPARE_ABORT);
    marks_free(e);
    size_t n = e->cur.n_parts > 0 ? (size_t)e->cur.n_parts : 1;
    e->mark = calloc(n, sizeof(*e->mark));
    e->mark_retry_ms = calloc(n, sizeof(*e->mark_retry_ms));
    e->mark_id = calloc(n, sizeof(*e->mark_id));
    if (e->mark == NULL || e->mark_retry_ms == NULL || e->mark_id == NULL) {
        marks_free(e);
        return LM_E_NOMEM;
    }
    if (e->cur.n_parts == 0)
        return write_complete(c, e, now_ms);
    return send_due_markers(c, e, now_ms);
}

/* fence_abort aborts e's ongoing transaction with the epoch bumped (Kafka's
 * prepareFenceProducerEpoch then endTransaction(ABORT) from the coordinator itself): the
 * markers carry the new epoch, so the old producer's later writes are refused. A transaction
 * version 2 transaction gets the end-of-transaction bump on top of the fencing one
 * (prepareAbortOrCommit after the fence), so the fenced producer's own EndTxn at its old epoch
 * is not taken for a retry of this abort: it is PRODUCER_FENCED. Neither bump passes
 * Short.MaxValue. */
static int fence_abort(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms)
{
    LM_ASSERT(e->cur.state == LM_TXN_ONGOING && !e->pending);
    LM_TRY(begin_transit(e, LM_TXN_PREPARE_EPOCH_FENCE, now_ms));
    if (e->next.epoch < INT16_MAX)
        e->next.epoch = (int16_t)(e->next.epoch + 1);
    e->next.last_epoch = LM_TXN_NO_PRODUCER_EPOCH;
    if (e->cur.tv2) {
        e->next.last_epoch = e->next.epoch;
        if (e->next.epoch < INT16_MAX)
            e->next.epoch = (int16_t)(e->next.epoch + 1);
    }
    e->next.state = LM_TXN_PREPARE_ABORT;
    return commit_transit(c, e, false);
}

/* ---- ownership ---- */

int32_t lm_txn_partition_of(const struct lm_txn_coord *c, struct kafka_str transactional_id)
{
    return lm_gr_partition_for(transactional_id, c->cfg.state_partitions);
}

bool lm_txn_coord_owns(const struct lm_txn_coord *c, int32_t partition)
{
    return partition >= 0 && partition < c->cfg.state_partitions &&
           c->part_load[partition] == PART_OWNED;
}

/* owner_error returns 0 when the id's partition is served, else the Kafka error. */
static int16_t owner_error(const struct lm_txn_coord *c, struct kafka_str tid)
{
    int32_t p = lm_txn_partition_of(c, tid);
    switch (c->part_load[p]) {
    case PART_OWNED:
        return 0;
    case PART_LOADING:
        return KAFKA_COORDINATOR_LOAD_IN_PROGRESS;
    default:
        return KAFKA_NOT_COORDINATOR;
    }
}

/* ---- life cycle ---- */

int lm_txn_coord_new(const struct lm_txn_config *cfg, struct lm_txn_coord **out)
{
    if (cfg->state_partitions <= 0 || cfg->state_partitions > LM_TXN_PARTITIONS_MAX ||
        cfg->offsets_partitions <= 0 || cfg->max_timeout_ms <= 0 || cfg->alloc_pid == NULL)
        return LM_E_CONFIG;
    struct lm_txn_coord *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LM_E_NOMEM;
    c->cfg = *cfg;
    c->last_abort_check_ms = INT64_MIN;
    c->last_expire_check_ms = INT64_MIN;
    *out = c;
    return 0;
}

static void release_outputs(struct lm_txn_coord *c)
{
    for (size_t i = 0; i < c->n_writes; i++)
        free((void *)c->writes[i].key.ptr);
    c->n_writes = 0;
    for (size_t i = 0; i < c->n_markers; i++)
        free(c->marker_bufs[i]);
    c->n_markers = 0;
    for (size_t i = 0; i < c->n_resps; i++)
        resp_free(&c->resps[i]);
    c->n_resps = 0;
}

void lm_txn_coord_free(struct lm_txn_coord *c)
{
    if (c == NULL)
        return;
    release_outputs(c);
    while (c->n_dense > 0)
        entry_remove(c, c->dense[c->n_dense - 1]);
    free(c->dense);
    free(c->writes);
    free(c->markers);
    free(c->marker_bufs);
    free(c->resps);
    free(c);
}

void lm_txn_coord_ready(struct lm_txn_coord *c, struct lm_txn_ready *out)
{
    *out = (struct lm_txn_ready){c->n_writes, c->writes,  c->n_markers,
                                 c->markers,  c->n_resps, c->resps};
}

void lm_txn_coord_advance(struct lm_txn_coord *c)
{
    release_outputs(c);
}

/* ---- InitProducerId ---- */

/* valid_expected_pid is Kafka's TransactionMetadata.isValidProducerId (KIP-360): the producer
 * id a producer names must be the current one, or the previous one with an exhausted epoch (a
 * retry of a rotation whose answer was lost), unless the metadata was just created. */
static bool valid_expected_pid(const struct txn_md *md, int64_t pid, int16_t epoch)
{
    return md->epoch == LM_TXN_NO_PRODUCER_EPOCH || pid == md->pid ||
           (pid == md->prev_pid && epoch_exhausted(epoch));
}

int lm_txn_init_pid(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                    const struct lm_txn_init_req *req)
{
    const uint8_t kind = LM_TXN_RESP_INIT;
    struct kafka_str tid = req->transactional_id;
    if (tid.len <= 0)
        return answer_now(c, token, kind, KAFKA_INVALID_REQUEST, 0, NULL);
    bool expected = req->producer_id != LM_TXN_NO_PRODUCER_ID;
    if (expected != (req->producer_epoch != LM_TXN_NO_PRODUCER_EPOCH))
        return answer_now(c, token, kind, KAFKA_INVALID_REQUEST, 0, NULL);
    if (req->timeout_ms <= 0 || req->timeout_ms > c->cfg.max_timeout_ms)
        return answer_now(c, token, kind, KAFKA_INVALID_TRANSACTION_TIMEOUT, 0, NULL);
    int16_t err = owner_error(c, tid);
    if (err != 0)
        return answer_now(c, token, kind, err, 0, NULL);
    struct txn_entry *e = entry_find(c, tid);
    if (e == NULL) {
        int64_t pid;
        int rc = c->cfg.alloc_pid(c->cfg.alloc_ctx, &pid);
        if (rc != 0)
            return answer_now(c, token, kind, KAFKA_COORDINATOR_NOT_AVAILABLE, 0, NULL);
        rc = entry_new(c, tid, &e);
        if (rc == LM_E_FULL)
            return answer_now(c, token, kind, KAFKA_COORDINATOR_NOT_AVAILABLE, 0, NULL);
        LM_TRY(rc);
        e->cur.pid = pid;
        e->cur.timeout_ms = req->timeout_ms;
        e->cur.state = LM_TXN_EMPTY;
        e->cur.update_ts_ms = now_ms;
    }
    if (e->pending)
        return answer_now(c, token, kind, KAFKA_CONCURRENT_TRANSACTIONS, 0, NULL);
    if (expected && !valid_expected_pid(&e->cur, req->producer_id, req->producer_epoch))
        return answer_now(c, token, kind, KAFKA_PRODUCER_FENCED, 0, NULL);

    struct lm_txn_resp r;
    LM_TRY(resp_init(&r, token, kind, 0, NULL));
    switch (e->cur.state) {
    case LM_TXN_PREPARE_COMMIT:
    case LM_TXN_PREPARE_ABORT:
        return answer_now(c, token, kind, KAFKA_CONCURRENT_TRANSACTIONS, 0, NULL);
    case LM_TXN_ONGOING:
        /* abort the open transaction first, fencing its producer; the caller retries */
        LM_TRY(fence_abort(c, e, now_ms));
        r.error_code = KAFKA_CONCURRENT_TRANSACTIONS;
        break;
    case LM_TXN_EMPTY:
    case LM_TXN_COMPLETE_COMMIT:
    case LM_TXN_COMPLETE_ABORT:
        LM_TRY(begin_transit(e, LM_TXN_EMPTY, now_ms));
        if (epoch_exhausted(e->cur.epoch) && (!expected || req->producer_epoch == e->cur.epoch)) {
            /* prepareProducerIdRotation: a new producer id at epoch 0 */
            int64_t pid;
            if (c->cfg.alloc_pid(c->cfg.alloc_ctx, &pid) != 0)
                return answer_now(c, token, kind, KAFKA_COORDINATOR_NOT_AVAILABLE, 0, NULL);
            e->next.prev_pid = e->cur.pid;
            e->next.pid = pid;
            e->next.epoch = 0;
            e->next.last_epoch = expected ? e->cur.epoch : LM_TXN_NO_PRODUCER_EPOCH;
        } else {
            /* prepareIncrementProducerEpoch */
            int16_t bumped = (int16_t)(e->cur.epoch + 1);
            if (!expected) {
                e->next.epoch = bumped;
                e->next.last_epoch = LM_TXN_NO_PRODUCER_EPOCH;
            } else if (e->cur.epoch == LM_TXN_NO_PRODUCER_EPOCH ||
                       req->producer_epoch == e->cur.epoch) {
                e->next.epoch = bumped;
                e->next.last_epoch = e->cur.epoch;
            } else if (req->producer_epoch == e->cur.last_epoch) {
                /* a retry of a bump whose answer was lost: same epoch again */
                e->next.epoch = e->cur.epoch;
                e->next.last_epoch = e->cur.last_epoch;
            } else {
                return answer_now(c, token, kind, KAFKA_PRODUCER_FENCED, 0, NULL);
            }
        }
        e->next.state = LM_TXN_EMPTY;
        e->next.timeout_ms = req->timeout_ms;
        e->next.start_ts_ms = -1;
        md_clear_parts(&e->next);
        LM_TRY(commit_transit(c, e, false));
        break;
    default:
        LM_UNREACHABLE();
    }
    e->has_waiter = true;
    e->waiter = r;
    return 0;
}

/* ---- AddPartitionsToTxn, AddOffsetsToTxn ---- */

/* txn_check is the common prefix of AddPartitions/AddOffsets/verify/EndTxn: the id's owner,
 * its producer id and epoch, and no change in flight. Returns 0 or the Kafka error. */
static int16_t txn_check_id(struct lm_txn_coord *c, struct kafka_str tid, int64_t pid,
                            int16_t epoch, bool pending_ok, struct txn_entry **out);

static int16_t txn_check(struct lm_txn_coord *c, struct kafka_str tid, int64_t pid, int16_t epoch,
                         struct txn_entry **out)
{
    return txn_check_id(c, tid, pid, epoch, false, out);
}

/* txn_check with pending_ok: a change in flight is no refusal (the state checked is the one
 * written so far). */
static int16_t txn_check_id(struct lm_txn_coord *c, struct kafka_str tid, int64_t pid,
                            int16_t epoch, bool pending_ok, struct txn_entry **out)
{
    *out = NULL;
    if (tid.len <= 0)
        return KAFKA_INVALID_REQUEST;
    int16_t err = owner_error(c, tid);
    if (err != 0)
        return err;
    struct txn_entry *e = entry_find(c, tid);
    if (e == NULL || e->cur.pid != pid)
        return KAFKA_INVALID_PRODUCER_ID_MAPPING;
    if (e->cur.epoch != epoch)
        return KAFKA_PRODUCER_FENCED;
    if (e->pending && !pending_ok)
        return KAFKA_CONCURRENT_TRANSACTIONS;
    *out = e;
    return 0;
}

static int add_parts(struct lm_txn_coord *c, int64_t now_ms, uint64_t token, uint8_t kind,
                     struct kafka_str tid, int64_t pid, int16_t epoch, int32_t n,
                     const struct lm_txn_topic_partition *parts, bool tv2)
{
    int32_t n_resp = kind == LM_TXN_RESP_ADD ? n : 0;
    struct txn_entry *e;
    int16_t err = txn_check(c, tid, pid, epoch, &e);
    if (err == 0 && (e->cur.state == LM_TXN_PREPARE_COMMIT || e->cur.state == LM_TXN_PREPARE_ABORT))
        err = KAFKA_CONCURRENT_TRANSACTIONS;
    if (err == 0 && n <= 0)
        err = KAFKA_INVALID_REQUEST;
    if (err != 0)
        return answer_now(c, token, kind, err, n_resp, parts);
    bool all_in = e->cur.state == LM_TXN_ONGOING;
    for (int32_t i = 0; all_in && i < n; i++)
        all_in = md_find(&e->cur, parts[i].topic, parts[i].partition) >= 0;
    if (all_in)
        return answer_now(c, token, kind, 0, n_resp, parts);

    LM_TRY(begin_transit(e, LM_TXN_ONGOING, now_ms));
    for (int32_t i = 0; i < n; i++) {
        int rc = md_add(&e->next, parts[i].topic, parts[i].partition);
        if (rc == LM_E_TOO_LARGE)
            return answer_now(c, token, kind, KAFKA_INVALID_REQUEST, n_resp, parts);
        LM_TRY(rc);
    }
    if (e->cur.state != LM_TXN_ONGOING)
        e->next.start_ts_ms = now_ms;
    e->next.state = LM_TXN_ONGOING;
    /* the transaction version is the client's, learnt from how it adds partitions (a
     * transaction that saw an implicit add stays version 2) */
    e->next.tv2 = e->cur.state == LM_TXN_ONGOING ? (e->cur.tv2 || tv2) : tv2;
    struct lm_txn_resp r;
    LM_TRY(resp_init(&r, token, kind, n_resp, parts));
    int rc = commit_transit(c, e, false);
    if (rc != 0) {
        resp_free(&r);
        return rc;
    }
    e->has_waiter = true;
    e->waiter = r;
    return 0;
}

/* verify_parts is AddPartitionsToTxn verify_only (KIP-890 part 1): a partition leader asks
 * whether each partition was added to the producer's ongoing transaction. Nothing changes. As
 * Kafka's handleVerifyPartitionsInTransaction, a change in flight (an add of other partitions,
 * say) is not waited for: the answer is what was written so far (a partition counts once its
 * add is written), and the append's producer-state check has the last word. Refusing with
 * CONCURRENT_TRANSACTIONS instead made the Produce fail with NOT_ENOUGH_REPLICAS whenever the
 * producer's next AddPartitionsToTxn was in flight, which franz-go retries only after its next
 * metadata refresh (seconds). */
static int verify_parts(struct lm_txn_coord *c, uint64_t token, const struct lm_txn_add_req *req)
{
    struct txn_entry *e;
    int16_t err =
        txn_check_id(c, req->transactional_id, req->producer_id, req->producer_epoch, true, &e);
    if (err == 0 && (e->cur.state == LM_TXN_PREPARE_COMMIT || e->cur.state == LM_TXN_PREPARE_ABORT))
        err = KAFKA_CONCURRENT_TRANSACTIONS;
    struct lm_txn_resp r;
    LM_TRY(resp_init(&r, token, LM_TXN_RESP_ADD, req->n_partitions, req->partitions));
    if (err != 0) {
        resp_set_error(&r, err);
    } else {
        for (int32_t i = 0; i < r.n_parts; i++) {
            bool in = e->cur.state == LM_TXN_ONGOING &&
                      md_find(&e->cur, req->partitions[i].topic, req->partitions[i].partition) >= 0;
            r.parts[i].error_code = in ? 0 : KAFKA_INVALID_TXN_STATE;
        }
    }
    int rc = push_resp(c, &r);
    if (rc != 0)
        resp_free(&r);
    return rc;
}

/* park_add queues an implicit add behind the change in flight (CONCURRENT_TRANSACTIONS when
 * the queue is full). */
static int park_add(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms, uint64_t token,
                    const struct lm_txn_add_req *req)
{
    if (e->n_park >= LM_TXN_PARKED_MAX || req->n_partitions <= 0)
        return answer_now(c, token, LM_TXN_RESP_ADD, KAFKA_CONCURRENT_TRANSACTIONS,
                          req->n_partitions, req->partitions);
    LM_TRY(LM_GROW(e->park, e->cap_park, e->n_park + 1, 4));
    struct parked p = {token, now_ms, req->producer_id, req->producer_epoch, 0, NULL};
    p.parts = calloc((size_t)req->n_partitions, sizeof(*p.parts));
    if (p.parts == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < req->n_partitions; i++) {
        struct kafka_str t = req->partitions[i].topic;
        char *copy = malloc(t.len > 0 ? (size_t)t.len : 1);
        if (copy == NULL) {
            parked_free(&p);
            return LM_E_NOMEM;
        }
        if (t.len > 0)
            memcpy(copy, t.ptr, (size_t)t.len);
        p.parts[i] = (struct lm_txn_topic_partition){{copy, t.len}, req->partitions[i].partition};
        p.n = i + 1;
    }
    e->park[e->n_park++] = p;
    return 0;
}

/* must_wait tells whether an implicit add of e waits: a change in flight, adds before it, or
 * a transaction whose markers are out. */
static bool must_wait(const struct txn_entry *e)
{
    return e->pending || e->n_park > 0 || e->cur.state == LM_TXN_PREPARE_COMMIT ||
           e->cur.state == LM_TXN_PREPARE_ABORT;
}

/* drain_parked runs the parked adds of e in order while nothing holds them. */
static int drain_parked(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms)
{
    while (!e->pending && e->n_park > 0 && e->cur.state != LM_TXN_PREPARE_COMMIT &&
           e->cur.state != LM_TXN_PREPARE_ABORT) {
        struct parked p = e->park[0];
        memmove(&e->park[0], &e->park[1], (e->n_park - 1) * sizeof(*e->park));
        e->n_park--;
        int rc = add_parts(c, now_ms, p.token, LM_TXN_RESP_ADD, entry_tid(e), p.pid, p.epoch, p.n,
                           p.parts, true);
        parked_free(&p);
        LM_TRY(rc);
    }
    return 0;
}

int lm_txn_add_partitions(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                          const struct lm_txn_add_req *req)
{
    LM_ASSERT(req->n_partitions >= 0);
    if (req->verify_only)
        return verify_parts(c, token, req);
    if (req->tv2) {
        struct txn_entry *e =
            req->transactional_id.len > 0 && owner_error(c, req->transactional_id) == 0
                ? entry_find(c, req->transactional_id)
                : NULL;
        if (e != NULL && must_wait(e))
            return park_add(c, e, now_ms, token, req);
    }
    return add_parts(c, now_ms, token, LM_TXN_RESP_ADD, req->transactional_id, req->producer_id,
                     req->producer_epoch, req->n_partitions, req->partitions, req->tv2);
}

int lm_txn_add_offsets(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                       const struct lm_txn_add_offsets_req *req)
{
    if (req->group_id.len < 0)
        return answer_now(c, token, LM_TXN_RESP_ADD_OFFSETS, KAFKA_INVALID_REQUEST, 0, NULL);
    /* the group's __consumer_offsets partition joins the transaction, as in Kafka */
    struct lm_txn_topic_partition tp = {
        KAFKA_STR(OFFSETS_TOPIC), lm_gr_partition_for(req->group_id, c->cfg.offsets_partitions)};
    return add_parts(c, now_ms, token, LM_TXN_RESP_ADD_OFFSETS, req->transactional_id,
                     req->producer_id, req->producer_epoch, 1, &tp, false);
}

/* ---- EndTxn ---- */

/* end_answer queues an EndTxn response; tv2 answers carry the id and epoch to use next. */
static int end_answer(struct lm_txn_coord *c, uint64_t token, int16_t err, int64_t pid,
                      int16_t epoch)
{
    struct lm_txn_resp r;
    LM_TRY(resp_init(&r, token, LM_TXN_RESP_END, 0, NULL));
    r.error_code = err;
    if (err == 0) {
        r.producer_id = pid;
        r.producer_epoch = epoch;
    }
    int rc = push_resp(c, &r);
    if (rc != 0)
        resp_free(&r);
    return rc;
}

/* prepare_end writes PrepareCommit/PrepareAbort; tv2 bumps the epoch (and, when it would
 * overflow, names the next producer id), as TransactionMetadata.prepareAbortOrCommit does.
 * An abort with no partition added (tv2: from Empty or Complete*) starts its transaction now. */
static int prepare_end(struct lm_txn_coord *c, struct txn_entry *e, int64_t now_ms, uint64_t token,
                       bool commit, bool tv2)
{
    uint8_t target = commit ? LM_TXN_PREPARE_COMMIT : LM_TXN_PREPARE_ABORT;
    int64_t next_pid = LM_TXN_NO_PRODUCER_ID;
    if (tv2 && epoch_exhausted(e->cur.epoch) && c->cfg.alloc_pid(c->cfg.alloc_ctx, &next_pid) != 0)
        return answer_now(c, token, LM_TXN_RESP_END, KAFKA_COORDINATOR_NOT_AVAILABLE, 0, NULL);
    LM_TRY(begin_transit(e, target, now_ms));
    if (e->cur.state != LM_TXN_ONGOING) {
        LM_ASSERT(tv2 && !commit);
        md_clear_parts(&e->next);
        e->next.start_ts_ms = now_ms;
    }
    e->next.state = target;
    if (tv2) {
        /* an epoch at Short.MaxValue (a timeout abort's bump of Short.MaxValue - 1) cannot
         * grow: its markers carry it again and the producer moves to the next id */
        e->next.tv2 = true;
        e->next.last_epoch = e->cur.epoch;
        e->next.epoch = e->cur.epoch < INT16_MAX ? (int16_t)(e->cur.epoch + 1) : INT16_MAX;
        e->next.next_pid = next_pid;
    }
    struct lm_txn_resp r;
    LM_TRY(resp_init(&r, token, LM_TXN_RESP_END, 0, NULL));
    int rc = commit_transit(c, e, false);
    if (rc != 0) {
        resp_free(&r);
        return rc;
    }
    e->has_waiter = true;
    e->waiter = r;
    return 0;
}

/* end_tv2 is EndTxn v5+ (TransactionCoordinator.endTransaction with a client on transaction
 * version 2): the epoch a request may carry depends on the state, since the previous EndTxn
 * already bumped it; a retry of the EndTxn that completed the transaction is answered again
 * with the id and epoch it gave. */
static int end_tv2(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_txn_end_req *req)
{
    const uint8_t kind = LM_TXN_RESP_END;
    struct kafka_str tid = req->transactional_id;
    if (tid.len <= 0)
        return answer_now(c, token, kind, KAFKA_INVALID_REQUEST, 0, NULL);
    int16_t err = owner_error(c, tid);
    if (err != 0)
        return answer_now(c, token, kind, err, 0, NULL);
    struct txn_entry *e = entry_find(c, tid);
    if (e == NULL)
        return answer_now(c, token, kind, KAFKA_INVALID_PRODUCER_ID_MAPPING, 0, NULL);
    /* a change in flight first: it may be the rotation the producer asks about */
    if (e->pending)
        return answer_now(c, token, kind, KAFKA_CONCURRENT_TRANSACTIONS, 0, NULL);
    const struct txn_md *md = &e->cur;
    bool retry_overflow = md->prev_pid == req->producer_id && md->prev_pid != md->pid &&
                          req->producer_epoch == INT16_MAX - 1 && md->epoch == 0;
    bool retry_bump = md->pid == req->producer_id && req->producer_epoch >= 0 &&
                      md->epoch == req->producer_epoch + 1;
    if (md->pid != req->producer_id && !retry_overflow)
        return answer_now(c, token, kind, KAFKA_INVALID_PRODUCER_ID_MAPPING, 0, NULL);
    /* Markers out: the transaction is completing (Kafka's pending CompleteCommit/CompleteAbort,
     * checked before the epoch since KAFKA-18464), and every EndTxn is asked to come again,
     * whatever its epoch. The Java client sends the next transaction's EndTxn, under the bumped
     * epoch this one answered, as soon as it has nothing left to send; refused as fenced, that
     * was fatal to it (bench/txn, a transaction a few milliseconds long). Once complete, the
     * epoch decides: a retry gets the answer again, a stale epoch PRODUCER_FENCED. */
    if (md->state == LM_TXN_PREPARE_COMMIT || md->state == LM_TXN_PREPARE_ABORT)
        return answer_now(c, token, kind, KAFKA_CONCURRENT_TRANSACTIONS, 0, NULL);
    bool same = md->pid == req->producer_id && md->epoch == req->producer_epoch;
    bool valid;
    switch (md->state) {
    case LM_TXN_COMPLETE_COMMIT:
    case LM_TXN_COMPLETE_ABORT:
        valid = retry_bump || retry_overflow || same;
        break;
    default:
        valid = same;
        break;
    }
    if (!valid)
        return answer_now(c, token, kind, KAFKA_PRODUCER_FENCED, 0, NULL);
    bool retry = retry_bump || retry_overflow;
    bool commit = req->commit;
    /* a commit of a transaction with nothing added yet, under the current epoch (not a
     * retry): its batches may be just behind it (LM_TXN_EARLY_END_MS) */
    int16_t empty_commit = now_ms - md->update_ts_ms < LM_TXN_EARLY_END_MS
                               ? KAFKA_CONCURRENT_TRANSACTIONS
                               : KAFKA_INVALID_TXN_STATE;
    switch (md->state) {
    case LM_TXN_ONGOING:
        return prepare_end(c, e, now_ms, token, commit, true);
    case LM_TXN_COMPLETE_COMMIT:
        if (commit)
            return retry ? end_answer(c, token, 0, md->pid, md->epoch)
                         : answer_now(c, token, kind, empty_commit, 0, NULL);
        if (retry)
            return answer_now(c, token, kind, KAFKA_INVALID_TXN_STATE, 0, NULL);
        return prepare_end(c, e, now_ms, token, false, true);
    case LM_TXN_COMPLETE_ABORT:
        if (!commit)
            return retry ? end_answer(c, token, 0, md->pid, md->epoch)
                         : prepare_end(c, e, now_ms, token, false, true);
        return answer_now(c, token, kind, retry ? KAFKA_INVALID_TXN_STATE : empty_commit, 0, NULL);
    case LM_TXN_EMPTY:
        /* tv2 lets a producer abort a transaction it never added a partition to */
        if (!commit)
            return prepare_end(c, e, now_ms, token, false, true);
        return answer_now(c, token, kind, empty_commit, 0, NULL);
    default:
        return answer_now(c, token, kind, KAFKA_INVALID_TXN_STATE, 0, NULL);
    }
}

int lm_txn_end(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
               const struct lm_txn_end_req *req)
{
    if (req->tv2)
        return end_tv2(c, now_ms, token, req);
    const uint8_t kind = LM_TXN_RESP_END;
    struct txn_entry *e;
    int16_t err = txn_check(c, req->transactional_id, req->producer_id, req->producer_epoch, &e);
    if (err != 0)
        return answer_now(c, token, kind, err, 0, NULL);
    bool commit = req->commit;
    switch (e->cur.state) {
    case LM_TXN_ONGOING:
        break;
    case LM_TXN_COMPLETE_COMMIT:
        return answer_now(c, token, kind, commit ? 0 : KAFKA_INVALID_TXN_STATE, 0, NULL);
    case LM_TXN_COMPLETE_ABORT:
        return answer_now(c, token, kind, commit ? KAFKA_INVALID_TXN_STATE : 0, 0, NULL);
    case LM_TXN_PREPARE_COMMIT:
        return answer_now(c, token, kind,
                          commit ? KAFKA_CONCURRENT_TRANSACTIONS : KAFKA_INVALID_TXN_STATE, 0,
                          NULL);
    case LM_TXN_PREPARE_ABORT:
        return answer_now(c, token, kind,
                          commit ? KAFKA_INVALID_TXN_STATE : KAFKA_CONCURRENT_TRANSACTIONS, 0,
                          NULL);
    default:
        return answer_now(c, token, kind, KAFKA_INVALID_TXN_STATE, 0, NULL);
    }
    /* a transaction version 1 client ending a transaction opened by implicit adds */
    return prepare_end(c, e, now_ms, token, commit, false);
}

/* ---- write and marker completions ---- */

static struct txn_entry *entry_by_write(const struct lm_txn_coord *c, uint64_t write_id)
{
    for (size_t i = 0; i < c->n_dense; i++)
        if (c->dense[i]->pending && c->dense[i]->write_id == write_id)
            return c->dense[i];
    return NULL;
}

static int answer_waiter(struct lm_txn_coord *c, struct txn_entry *e, int16_t err)
{
    if (!e->has_waiter)
        return 0;
    e->has_waiter = false;
    struct lm_txn_resp r = e->waiter;
    memset(&e->waiter, 0, sizeof(e->waiter));
    if (err != 0) {
        resp_set_error(&r, err);
        r.producer_id = LM_TXN_NO_PRODUCER_ID;
        r.producer_epoch = LM_TXN_NO_PRODUCER_EPOCH;
    } else if (r.kind == LM_TXN_RESP_INIT && r.error_code == 0) {
        r.producer_id = e->cur.pid;
        r.producer_epoch = e->cur.epoch;
    } else if (r.kind == LM_TXN_RESP_END && r.error_code == 0) {
        /* what the Complete* record will hold: the next id at epoch 0 after an overflow */
        bool rotate = e->cur.next_pid != LM_TXN_NO_PRODUCER_ID;
        r.producer_id = rotate ? e->cur.next_pid : e->cur.pid;
        r.producer_epoch = rotate ? 0 : e->cur.epoch;
    }
    int rc = push_resp(c, &r);
    if (rc != 0)
        resp_free(&r);
    return rc;
}

int lm_txn_coord_write_done(struct lm_txn_coord *c, int64_t now_ms, uint64_t write_id,
                            int16_t error_code)
{
    struct txn_entry *e = entry_by_write(c, write_id);
    if (e == NULL)
        return 0;
    LM_ASSERT(e->pending);
    e->pending = false;
    if (error_code != 0) {
        /* memory keeps the last committed state; the request learns why */
        md_clear_parts(&e->next);
        LM_TRY(answer_waiter(c, e, error_code));
        return drain_parked(c, e, now_ms);
    }
    if (e->pending_state == LM_TXN_DEAD) {
        LM_ASSERT(!e->has_waiter);
        /* adds that came during the tombstone's write find the id gone */
        for (size_t k = 0; k < e->n_park; k++)
            LM_TRY(answer_now(c, e->park[k].token, LM_TXN_RESP_ADD,
                              KAFKA_INVALID_PRODUCER_ID_MAPPING, e->park[k].n, e->park[k].parts));
        entry_remove(c, e);
        return 0;
    }
    LM_ASSERT(e->next.epoch >= e->cur.epoch || e->next.pid != e->cur.pid);
    struct txn_md old = e->cur;
    e->cur = e->next;
    e->next = old;
    md_clear_parts(&e->next);
    LM_TRY(answer_waiter(c, e, 0));
    if (e->cur.state == LM_TXN_PREPARE_COMMIT || e->cur.state == LM_TXN_PREPARE_ABORT)
        LM_TRY(start_markers(c, e, now_ms));
    else
        marks_free(e);
    return drain_parked(c, e, now_ms);
}

int lm_txn_coord_marker_done(struct lm_txn_coord *c, int64_t now_ms, uint64_t marker_id,
                             struct kafka_str transactional_id, struct kafka_str topic,
                             int32_t partition, enum lm_txn_marker_outcome outcome)
{
    if (transactional_id.len <= 0)
        return 0;
    struct txn_entry *e = entry_find(c, transactional_id);
    if (e == NULL || e->mark == NULL ||
        (e->cur.state != LM_TXN_PREPARE_COMMIT && e->cur.state != LM_TXN_PREPARE_ABORT))
        return 0;
    int32_t i = md_find(&e->cur, topic, partition);
    if (i < 0 || e->mark[i] != MARK_IN_FLIGHT || e->mark_id[i] != marker_id)
        return 0;
    if (outcome == LM_TXN_MARKER_RETRY) {
        e->mark[i] = MARK_TO_SEND;
        e->mark_retry_ms[i] = now_ms + LM_TXN_MARKER_RETRY_MS;
        return 0;
    }
    e->mark[i] = MARK_ACKED;
    if (!e->pending && all_marked(e))
        return write_complete(c, e, now_ms);
    return 0;
}

/* ---- timeouts, expiration, retries ---- */

/* expire_parked answers every parked add of e CONCURRENT_TRANSACTIONS (in order: the
 * Produces are retried by their producers). */
static int expire_parked(struct lm_txn_coord *c, struct txn_entry *e)
{
    for (size_t k = 0; k < e->n_park; k++) {
        LM_TRY(answer_now(c, e->park[k].token, LM_TXN_RESP_ADD, KAFKA_CONCURRENT_TRANSACTIONS,
                          e->park[k].n, e->park[k].parts));
        parked_free(&e->park[k]);
    }
    e->n_park = 0;
    return 0;
}

int lm_txn_coord_tick(struct lm_txn_coord *c, int64_t now_ms)
{
    bool abort_due = c->last_abort_check_ms == INT64_MIN ||
                     now_ms - c->last_abort_check_ms >= c->cfg.abort_check_interval_ms;
    bool expire_due = c->last_expire_check_ms == INT64_MIN ||
                      now_ms - c->last_expire_check_ms >= c->cfg.expiration_check_interval_ms;
    if (abort_due)
        c->last_abort_check_ms = now_ms;
    if (expire_due)
        c->last_expire_check_ms = now_ms;
    /* walk by index: an expired entry is only removed once its tombstone is written */
    for (size_t i = 0; i < c->n_dense; i++) {
        struct txn_entry *e = c->dense[i];
        if (e->n_park > 0 && e->park[0].since_ms + LM_TXN_PARKED_TIMEOUT_MS <= now_ms)
            LM_TRY(expire_parked(c, e));
        if (!lm_txn_coord_owns(c, e->log_part) || e->pending)
            continue;
        switch (e->cur.state) {
        case LM_TXN_ONGOING:
            /* abortTimedOutTransactions: txnStartTimestamp + timeout < now */
            if (abort_due && e->cur.start_ts_ms + e->cur.timeout_ms < now_ms)
                LM_TRY(fence_abort(c, e, now_ms));
            break;
        case LM_TXN_PREPARE_COMMIT:
        case LM_TXN_PREPARE_ABORT:
            if (e->mark == NULL)
                LM_TRY(start_markers(c, e, now_ms));
            else if (all_marked(e))
                LM_TRY(write_complete(c, e, now_ms)); /* an earlier Complete write failed */
            else
                LM_TRY(send_due_markers(c, e, now_ms));
            break;
        case LM_TXN_EMPTY:
        case LM_TXN_COMPLETE_COMMIT:
        case LM_TXN_COMPLETE_ABORT:
            if (expire_due && e->cur.update_ts_ms + c->cfg.id_expiration_ms <= now_ms) {
                /* prepareDead: a tombstone, the id is forgotten once it is written */
                LM_TRY(begin_transit(e, LM_TXN_DEAD, now_ms));
                e->next.state = LM_TXN_DEAD;
                LM_TRY(commit_transit(c, e, true));
            }
            break;
        default:
            LM_UNREACHABLE();
        }
    }
    return 0;
}

/* ---- loading ---- */

int lm_txn_coord_load_begin(struct lm_txn_coord *c, int32_t partition, int32_t coordinator_epoch)
{
    if (partition < 0 || partition >= c->cfg.state_partitions)
        return LM_E_INVALID;
    if (c->part_load[partition] != PART_NOT_OWNED)
        LM_TRY(lm_txn_coord_unload(c, partition));
    c->part_load[partition] = PART_LOADING;
    c->coord_epoch[partition] = coordinator_epoch;
    return 0;
}

int lm_txn_coord_load_record(struct lm_txn_coord *c, int32_t partition, struct kafka_bytes key,
                             struct kafka_bytes value)
{
    LM_ASSERT(partition >= 0 && partition < c->cfg.state_partitions);
    LM_ASSERT(c->part_load[partition] == PART_LOADING);
    struct kafka_str tid;
    LM_TRY(lm_tr_key_decode(key, &tid));
    if (tid.len <= 0 || lm_txn_partition_of(c, tid) != partition)
        return LM_E_CORRUPT;
    struct txn_entry *e = entry_find(c, tid);
    if (value.len < 0) {
        if (e != NULL)
            entry_remove(c, e);
        return 0;
    }
    struct kafka_arena arena;
    kafka_arena_init(&arena, 1u << 20);
    struct lm_tr_value v;
    int rc = lm_tr_value_decode(value, &arena, &v);
    if (rc == 0 && (v.status == LM_TXN_DEAD || v.status == LM_TXN_PREPARE_EPOCH_FENCE))
        rc = LM_E_CORRUPT; /* Kafka never writes these two */
    if (rc == 0 && e == NULL)
        rc = entry_new(c, tid, &e);
    if (rc == 0) {
        md_clear_parts(&e->cur);
        marks_free(e);
        e->cur.pid = v.producer_id;
        e->cur.prev_pid = v.previous_producer_id;
        e->cur.next_pid = v.next_producer_id;
        e->cur.tv2 = v.client_tv >= 2;
        e->cur.epoch = v.producer_epoch;
        e->cur.last_epoch = LM_TXN_NO_PRODUCER_EPOCH;
        e->cur.timeout_ms = v.timeout_ms;
        e->cur.state = (uint8_t)v.status;
        e->cur.start_ts_ms = v.start_ts_ms;
        e->cur.update_ts_ms = v.update_ts_ms;
        for (int32_t i = 0; rc == 0 && i < v.n_partitions; i++)
            rc = md_add(&e->cur, v.partitions[i].topic, v.partitions[i].partition);
    }
    kafka_arena_deinit(&arena);
    return rc;
}

int lm_txn_coord_load_end(struct lm_txn_coord *c, int64_t now_ms, int32_t partition)
{
    LM_ASSERT(partition >= 0 && partition < c->cfg.state_partitions);
    LM_ASSERT(c->part_load[partition] == PART_LOADING);
    c->part_load[partition] = PART_OWNED;
    /* recovery: transactions found prepared are completed (their markers sent again) */
    for (size_t i = 0; i < c->n_dense; i++) {
        struct txn_entry *e = c->dense[i];
        if (e->log_part != partition)
            continue;
        if (e->cur.state == LM_TXN_PREPARE_COMMIT || e->cur.state == LM_TXN_PREPARE_ABORT)
            LM_TRY(start_markers(c, e, now_ms));
    }
    return 0;
}

int lm_txn_coord_unload(struct lm_txn_coord *c, int32_t partition)
{
    if (partition < 0 || partition >= c->cfg.state_partitions)
        return LM_E_INVALID;
    for (size_t i = c->n_dense; i > 0; i--) {
        struct txn_entry *e = c->dense[i - 1];
        if (e->log_part != partition)
            continue;
        LM_TRY(answer_waiter(c, e, KAFKA_NOT_COORDINATOR));
        for (size_t k = 0; k < e->n_park; k++)
            LM_TRY(answer_now(c, e->park[k].token, LM_TXN_RESP_ADD, KAFKA_NOT_COORDINATOR,
                              e->park[k].n, e->park[k].parts));
        entry_remove(c, e);
    }
    c->part_load[partition] = PART_NOT_OWNED;
    return 0;
}

/* ---- views ---- */

static void fill_info(const struct txn_entry *e, struct lm_txn_info *out)
{
    *out = (struct lm_txn_info){.transactional_id = entry_tid(e),
                                .state = (enum lm_txn_state)e->cur.state,
                                .producer_id = e->cur.pid,
                                .producer_epoch = e->cur.epoch,
                                .last_producer_epoch = e->cur.last_epoch,
                                .timeout_ms = e->cur.timeout_ms,
                                .start_ts_ms = e->cur.start_ts_ms,
                                .update_ts_ms = e->cur.update_ts_ms,
                                .pending = e->pending,
                                .n_partitions = e->cur.n_parts,
                                .partitions = e->cur.parts,
                                .tv2 = e->cur.tv2,
                                .next_producer_id = e->cur.next_pid};
}

bool lm_txn_coord_describe(const struct lm_txn_coord *c, struct kafka_str transactional_id,
                           struct lm_txn_info *out)
{
    if (transactional_id.len <= 0)
        return false;
    const struct txn_entry *e = entry_find(c, transactional_id);
    if (e == NULL)
        return false;
    fill_info(e, out);
    return true;
}

size_t lm_txn_coord_count(const struct lm_txn_coord *c)
{
    return c->n_dense;
}

void lm_txn_coord_info_at(const struct lm_txn_coord *c, size_t i, struct lm_txn_info *out)
{
    LM_ASSERT(i < c->n_dense);
    fill_info(c->dense[i], out);
}
