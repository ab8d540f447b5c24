/* The transaction coordinator's shard side (txn_internal.h): the transaction configs and
 * __transaction_state, loading its partitions, writing what the coordinator hands out before
 * its answers leave, the timer, the cross-shard calls, and the marker sender that appends
 * transaction markers on the shards owning the partitions (Kafka's
 * TransactionMarkerChannelManager, with the partitions of this node). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/group_internal.h"
#include "broker/handlers/txn_internal.h"
#include "broker/log.h"
#include "broker/txn/txn_added.h"
#include "broker/group/group_records.h"
#include "broker/txn/txn_records.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_messages.h"
#include "protocol/records.h"

/* How often the coordinator ticks: marker retries (LM_TXN_MARKER_RETRY_MS) and the timeout
 * and expiration checks, whose own intervals are longer. */
#define TXN_TICK_MS 100
/* Bound of one decompressed __transaction_state batch when loading. */
#define TXN_LOAD_BATCH_BYTES_MAX ((size_t)64 << 20)

struct twait;
struct tmark;

struct tshard {
    struct hshard *hs;
    struct lm_txn_coord *coord;
    struct broker_timer timer;
    bool timer_armed;
    bool stopping;
    struct twait *waits;  /* appends to __transaction_state not committed yet */
    struct tmark *marks;  /* markers out on other shards (or this one), or to other nodes */
    struct tmark *failed; /* markers whose send failed in a flush: answered RETRY after it */
    /* A cluster: which owned __transaction_state partitions are loaded (this node leads them)
     * and at which leader epoch (the coordinator epoch of their markers). */
    bool *cluster_loaded;
    bool *cluster_loading; /* led here, waiting for a commit of its term */
    int32_t *cluster_epoch;
    /* Connections to the other nodes for WriteTxnMarkers (Kafka's marker channel). */
    struct tpeer *peers;
    size_t n_peers;
    /* Partitions this shard saw added to transaction version 2 transactions (allocated on
     * the first Produce v12 that needs it). */
    struct txn_added *added;
};

struct tpeer {
    int32_t node;
    struct broker_peer *peer;
    uint64_t retry_at_ms;
};

/* One __transaction_state append waiting for its commit. */
struct twait {
    struct hsync_wait sync;
    struct tshard *ts; /* NULL once the shard stopped: the completion only frees */
    uint64_t write_id;
    struct twait *prev, *next;
};

/* One marker carried to the shard owning its partition and back. */
struct tmark {
    struct broker_xcall x;
    struct hsync_wait sync;
    /* remote: one WriteTxnMarkers v1 request to the partition's leader */
    struct broker_call call;
    struct broker_resp_part part;
    uint8_t *req_buf;
    struct tshard *ts; /* NULL once the shard stopped */
    struct tmark *prev, *next;
    uint64_t marker_id;
    int64_t producer_id;
    int16_t producer_epoch;
    bool commit;
    int32_t coordinator_epoch;
    int32_t partition;
    enum lm_txn_marker_outcome outcome;
    int16_t error;
    int32_t tid_len, topic_len;
    char *tid, *topic; /* in buf */
    char buf[];
};

static void coord_flush(struct tshard *ts);
static struct broker_peer *peer_for(struct tshard *ts, int32_t node);
static void op_fail(struct top *op, int16_t err);

uint32_t txn_owner_of(struct hshard *hs, struct kafka_str tid)
{
    if (tid.len < 0)
        tid = (struct kafka_str){"", 0};
    int32_t p = lm_gr_partition_for(tid, hs->node->txn_cfg.state_partitions);
    return broker_partition_shard(TXN_STATE_TOPIC, TXN_STATE_TOPIC_LEN, p, hs->count);
}

int32_t txn_coordinator_node(struct hshard *hs, struct kafka_str tid)
{
    int32_t self = hs->node->cfg->node_id;
    if (!hs_cluster(hs->node))
        return self;
    if (hs->snap == NULL)
        return -1;
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, TXN_STATE_TOPIC);
    if (t == NULL)
        return -1;
    int32_t p = lm_gr_partition_for(tid.len < 0 ? (struct kafka_str){"", 0} : tid,
                                    hs->node->txn_cfg.state_partitions);
    if (p >= t->partition_count)
        return -1;
    return lm_meta_state_partition_leader(&hs->snap->state, t, p, self);
}

/* ---- the Produce check sent to a coordinator on another node -----------------------------------
 */

struct tverify {
    struct broker_call call;
    struct broker_resp_part part;
    struct top *op;
    uint8_t buf[];
};

/* Fills op's partition errors from an AddPartitionsToTxn v4 response (false: unreadable). */
static bool verify_errors(struct top *op, const uint8_t *resp, size_t len)
{
    struct kafka_arena a;
    kafka_arena_init(&a, 1u << 20);
    struct kafka_reader r;
    kafka_reader_init(&r, resp, len);
    struct kafka_add_partitions_to_txn_response rs;
    kafka_add_partitions_to_txn_response_init(&rs);
    int16_t version = op->in.add.verify_only ? 4 : 5;
    bool ok = kafka_add_partitions_to_txn_response_decode(&r, version, &rs, &a) == 0;
    const struct lm_txn_add_req *in = &op->in.add;
    for (int32_t i = 0; ok && i < in->n_partitions; i++) {
        int16_t e = rs.error_code != KAFKA_NONE ? rs.error_code : KAFKA_UNKNOWN_SERVER_ERROR;
        for (int32_t x = 0; rs.error_code == KAFKA_NONE && x < rs.results_by_transaction_count; x++)
            for (int32_t t = 0; t < rs.results_by_transaction[x].topic_results_count; t++) {
                const struct kafka_add_partitions_to_txn_add_partitions_to_txn_topic_result *tr =
                    &rs.results_by_transaction[x].topic_results[t];
                if (tr->name.len != in->partitions[i].topic.len ||
                    memcmp(tr->name.ptr, in->partitions[i].topic.ptr, (size_t)tr->name.len) != 0)
                    continue;
                for (int32_t j = 0; j < tr->results_by_partition_count; j++)
                    if (tr->results_by_partition[j].partition_index == in->partitions[i].partition)
                        e = tr->results_by_partition[j].partition_error_code;
            }
        op->part_errors[i] = e;
    }
    kafka_arena_deinit(&a);
    return ok;
}

static void verify_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct tverify *v = call->arg;
    struct top *op = v->op;
    if (rc != 0 || !verify_errors(op, call->resp, call->resp_len))
        op_fail(op, KAFKA_COORDINATOR_NOT_AVAILABLE); /* the Produce retries */
    free(v);
    op->finish(op);
}

int txn_remote_verify(struct top *op, int32_t node)
{
    struct tshard *ts = hs_of(op->req->shard)->txn;
    LM_ASSERT(op->kind == TOP_ADD && op->in.add.verify_only != op->in.add.tv2);
    int16_t version = op->in.add.verify_only ? 4 : 5;
    struct broker_peer *peer = ts != NULL ? peer_for(ts, node) : NULL;
    if (peer == NULL)
        return LM_E_CLOSED;
    const struct lm_txn_add_req *in = &op->in.add;
    /* one topic entry per partition: the coordinator reads them as one set */
    struct kafka_add_partitions_to_txn_add_partitions_to_txn_topic *topics =
        h_alloc(op->req, (size_t)in->n_partitions, sizeof(*topics));
    int32_t *ids = h_alloc(op->req, (size_t)in->n_partitions, sizeof(*ids));
    if (topics == NULL || ids == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < in->n_partitions; i++) {
        ids[i] = in->partitions[i].partition;
        topics[i] = (struct kafka_add_partitions_to_txn_add_partitions_to_txn_topic){
            .name = in->partitions[i].topic, .partitions = &ids[i], .partitions_count = 1};
    }
    struct kafka_add_partitions_to_txn_request_add_partitions_to_txn_transaction x = {
        .transactional_id = in->transactional_id,
        .producer_id = in->producer_id,
        .producer_epoch = in->producer_epoch,
        .verify_only = in->verify_only,
        .topics = topics,
        .topics_count = in->n_partitions};
    struct kafka_add_partitions_to_txn_request rq;
    kafka_add_partitions_to_txn_request_init(&rq);
    rq.transactions = &x;
    rq.transactions_count = 1;
    size_t n = kafka_add_partitions_to_txn_request_size(version, &rq);
    struct tverify *v = calloc(1, sizeof(*v) + n);
    if (v == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, v->buf, n);
    int rc = kafka_add_partitions_to_txn_request_encode(&w, version, &rq);
    LM_ASSERT(rc != 0 || w.pos == n);
    if (rc == 0) {
        v->op = op;
        v->part = (struct broker_resp_part){.mem = v->buf, .fd = -1, .len = n};
        v->call = (struct broker_call){.api_key = KAFKA_ADD_PARTITIONS_TO_TXN_KEY,
                                       .api_version = version,
                                       .flexible = true,
                                       .parts = &v->part,
                                       .nparts = 1,
                                       .done = verify_done,
                                       .arg = v};
        rc = broker_peer_send(peer, &v->call);
    }
    if (rc != 0)
        free(v);
    return rc;
}

/* ---- producer ids --------------------------------------------------------------------------- */

static int alloc_pid(void *ctx, int64_t *pid)
{
    struct tshard *ts = ctx;
    return producer_alloc_id(ts->hs, pid);
}

/* ---- loading ------------------------------------------------------------------------------- */

struct load_ctx {
    struct lm_txn_coord *coord;
    int32_t partition;
    int64_t n_bad, n_records;
};

static int load_batch(void *ctx, const uint8_t *batch, size_t len,
                      const struct kafka_batch_header *h)
{
    struct load_ctx *l = ctx;
    if (h->attributes & KAFKA_BATCH_ATTR_CONTROL)
        return 0;
    struct kafka_batch_reader r;
    if (kafka_batch_reader_open(&r, batch, len, TXN_LOAD_BATCH_BYTES_MAX) != 0) {
        l->n_bad++;
        return 0;
    }
    struct kafka_record_iter it;
    kafka_batch_reader_iter(&r, &it);
    struct kafka_record rec;
    int rc;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1) {
        struct kafka_bytes key = {rec.key, rec.key_len};
        struct kafka_bytes value = {rec.value, rec.value_len};
        int lr = rec.key_len < 0 ? LM_E_CORRUPT
                                 : lm_txn_coord_load_record(l->coord, l->partition, key, value);
        if (lr == LM_E_NOMEM) {
            rc = lr;
            break;
        }
        /* a record that does not decode is skipped, as Kafka's loader does */
        if (lr != 0)
            l->n_bad++;
        else
            l->n_records++;
    }
    kafka_batch_reader_close(&r);
    return rc < 0 ? rc : 0;
}

static void load_partition(struct tshard *ts, int32_t p, int32_t coordinator_epoch)
{
    struct hpart *hp = hs_part(ts->hs, TXN_STATE_TOPIC, TXN_STATE_TOPIC_LEN, p);
    if (hp == NULL || hp->log == NULL) {
        BLOG_ERROR("%s-%d: log not open; its transactional ids answer NOT_COORDINATOR",
                   TXN_STATE_TOPIC, p);
        return;
    }
    int rc = lm_txn_coord_load_begin(ts->coord, p, coordinator_epoch);
    LM_ASSERT(rc == 0);
    struct load_ctx l = {ts->coord, p, 0, 0};
    rc = group_log_scan(hp->log, 0, load_batch, &l);
    if (rc != 0) {
        BLOG_ERROR("%s-%d: loading: %s; its transactional ids answer NOT_COORDINATOR",
                   TXN_STATE_TOPIC, p, lm_strerror(rc));
        lm_txn_coord_unload(ts->coord, p);
        return;
    }
    rc = lm_txn_coord_load_end(ts->coord, group_now_ms(ts->hs), p);
    if (rc != 0) {
        BLOG_ERROR("%s-%d: loading: %s", TXN_STATE_TOPIC, p, lm_strerror(rc));
        lm_txn_coord_unload(ts->coord, p);
        return;
    }
    if (l.n_bad > 0)
        BLOG_WARN("%s-%d: loaded %lld records, skipped %lld bad records", TXN_STATE_TOPIC, p,
                  (long long)l.n_records, (long long)l.n_bad);
    else if (l.n_records > 0)
        BLOG_INFO("%s-%d: loaded %lld records", TXN_STATE_TOPIC, p, (long long)l.n_records);
}

/* ---- writes to __transaction_state ------------------------------------------------------------
 */

static void wait_unlink(struct tshard *ts, struct twait *w)
{
    if (w->prev != NULL)
        w->prev->next = w->next;
    else
        ts->waits = w->next;
    if (w->next != NULL)
        w->next->prev = w->prev;
}

/* The Kafka error a failed append gives the waiting request (TransactionStateManager's
 * mapping: leadership lost -> NOT_COORDINATOR, else COORDINATOR_NOT_AVAILABLE). */
static int16_t append_error(int rc)
{
    return rc == LM_E_STATE ? KAFKA_NOT_COORDINATOR : KAFKA_COORDINATOR_NOT_AVAILABLE;
}

static void write_committed(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    (void)hs;
    (void)p;
    struct twait *w = sw->arg;
    struct tshard *ts = w->ts;
    if (ts == NULL) {
        free(w);
        return;
    }
    wait_unlink(ts, w);
    int r = lm_txn_coord_write_done(ts->coord, group_now_ms(ts->hs), w->write_id,
                                    rc == 0 ? KAFKA_NONE : append_error(rc));
    if (r != 0)
        BLOG_ERROR("transaction coordinator: %s", lm_strerror(r));
    free(w);
    coord_flush(ts);
}

/* Appends one record (acks=-1); returns 0 with the wait linked, or an LM_E_*. */
static int write_record(struct tshard *ts, const struct lm_txn_write *wr)
{
    struct hpart *hp = hs_part(ts->hs, TXN_STATE_TOPIC, TXN_STATE_TOPIC_LEN, wr->partition);
    if (hp == NULL || hp->log == NULL || hp->failed)
        return LM_E_NOT_FOUND;
    int64_t now = group_now_ms(ts->hs);
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, now);
    int rc = kafka_batch_builder_append(&b, now, wr->key.ptr, wr->key.len, wr->value.ptr,
                                        wr->value.len, NULL, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len);
    kafka_batch_builder_deinit(&b);
    if (rc != 0)
        return rc;
    struct twait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        free(buf);
        return LM_E_NOMEM;
    }
    w->ts = ts;
    w->write_id = wr->write_id;
    w->sync.done = write_committed;
    w->sync.arg = w;
    w->next = ts->waits;
    if (ts->waits != NULL)
        ts->waits->prev = w;
    ts->waits = w;
    rc = hs_append(ts->hs, hp, PARTITION_ORIGIN_COORDINATOR, buf, len, -1, &w->sync);
    free(buf);
    if (rc != 0) {
        wait_unlink(ts, w);
        free(w);
        BLOG_WARN_LIMITED("%s-%d: append: %s", TXN_STATE_TOPIC, wr->partition, lm_strerror(rc));
    }
    return rc;
}

/* ---- markers ------------------------------------------------------------------------------- */

static void mark_unlink(struct tshard *ts, struct tmark *m)
{
    if (m->prev != NULL)
        m->prev->next = m->next;
    else
        ts->marks = m->next;
    if (m->next != NULL)
        m->next->prev = m->prev;
}

/* Kafka's TransactionMarkerRequestCompletionHandler: retry while the partition has no leader
 * here or its log is unavailable; a partition of a deleted topic is dropped; a producer epoch
 * the partition has already seen passed (a newer coordinator wrote its markers) ends the
 * attempt for that partition. */
static enum lm_txn_marker_outcome marker_outcome(int16_t err)
{
    switch (err) {
    case KAFKA_NONE:
        return LM_TXN_MARKER_ACKED;
    case KAFKA_UNKNOWN_TOPIC_OR_PARTITION:
    case KAFKA_INVALID_PRODUCER_EPOCH:
    case KAFKA_TRANSACTION_COORDINATOR_FENCED:
        return LM_TXN_MARKER_DROPPED;
    default:
        return LM_TXN_MARKER_RETRY;
    }
}

static void mark_committed(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    struct tmark *m = sw->arg;
    if (rc != 0)
        m->error = rc == LM_E_STATE ? KAFKA_NOT_LEADER_OR_FOLLOWER : KAFKA_KAFKA_STORAGE_ERROR;
    else /* a __consumer_offsets partition: the group's transactional offsets settle */
        group_txn_marker(hs, p, m->producer_id, m->commit);
    broker_xcall_return(hs->shard, &m->x);
}

/* On the shard owning the partition: the append WriteTxnMarkers makes (txn_markers.c). */
static void mark_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct tmark *m = x->arg;
    struct hshard *hs = hs_of(target);
    m->error = KAFKA_NONE;
    if (hs_topic(hs, m->topic, (size_t)m->topic_len) == NULL) {
        m->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION; /* deleted: dropped */
        broker_xcall_return(target, x);
        return;
    }
    struct hpart *p = hs_part(hs, m->topic, (size_t)m->topic_len, m->partition);
    if (p == NULL || p->log == NULL || p->failed || p->part == NULL ||
        (p->replicated && (!partition_is_leader(p->part) || partition_transferring(p->part)))) {
        m->error = KAFKA_NOT_LEADER_OR_FOLLOWER; /* not open or not led here: again */
        broker_xcall_return(target, x);
        return;
    }
    int16_t e =
        producer_marker_check(hs, p, m->producer_id, m->producer_epoch, m->coordinator_epoch);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = 0;
    if (e == KAFKA_NONE)
        rc = kafka_txn_marker_build(m->producer_id, m->producer_epoch,
                                    m->commit ? KAFKA_CONTROL_COMMIT : KAFKA_CONTROL_ABORT,
                                    m->coordinator_epoch, group_now_ms(hs), &buf, &len);
    if (e == KAFKA_NONE && rc != 0)
        e = KAFKA_UNKNOWN_SERVER_ERROR;
    if (e != KAFKA_NONE) {
        m->error = e;
        broker_xcall_return(target, x);
        return;
    }
    m->sync.done = mark_committed;
    m->sync.arg = m;
    rc = hs_append(hs, p, PARTITION_ORIGIN_COORDINATOR, buf, len, -1, &m->sync);
    free(buf);
    if (rc != 0) {
        m->error = h_storage_error(rc);
        broker_xcall_return(target, x);
        return;
    }
    producer_marker_appended(hs, p, m->producer_id, m->producer_epoch, m->coordinator_epoch);
}

static void mark_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    struct tmark *m = x->arg;
    struct tshard *ts = m->ts;
    if (ts == NULL) {
        free(m);
        return;
    }
    mark_unlink(ts, m);
    if (m->error != KAFKA_NONE)
        BLOG_INFO_LIMITED("transaction marker for %.*s-%d (producer %lld epoch %d): %s",
                          (int)m->topic_len, m->topic, m->partition, (long long)m->producer_id,
                          m->producer_epoch, kafka_error_name(m->error));
    int rc = lm_txn_coord_marker_done(
        ts->coord, group_now_ms(ts->hs), m->marker_id, (struct kafka_str){m->tid, m->tid_len},
        (struct kafka_str){m->topic, m->topic_len}, m->partition, marker_outcome(m->error));
    if (rc != 0)
        BLOG_ERROR("transaction coordinator: %s", lm_strerror(rc));
    free(m);
    coord_flush(ts);
}

/* ---- markers to other nodes (WriteTxnMarkers v1) ------------------------------------------------
 */

/* The node leading the marker's partition in this shard's metadata: self on a single node or
 * when unknown (the local path then answers NOT_LEADER_OR_FOLLOWER and the marker is retried,
 * or UNKNOWN_TOPIC_OR_PARTITION for a deleted topic and the partition is dropped). */
static int32_t marker_leader(struct tshard *ts, const struct tmark *m)
{
    struct hshard *hs = ts->hs;
    int32_t self = hs->node->cfg->node_id;
    if (!hs_cluster(hs->node) || hs->snap == NULL)
        return self;
    char name[256];
    if ((size_t)m->topic_len >= sizeof(name))
        return self;
    memcpy(name, m->topic, (size_t)m->topic_len);
    name[m->topic_len] = 0;
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, name);
    if (t == NULL || m->partition < 0 || m->partition >= t->partition_count)
        return self;
    int32_t leader = lm_meta_state_partition_leader(&hs->snap->state, t, m->partition, self);
    return leader >= 0 ? leader : self;
}

static struct broker_peer *peer_for(struct tshard *ts, int32_t node)
{
    struct hshard *hs = ts->hs;
    struct tpeer *pe = NULL;
    for (size_t i = 0; i < ts->n_peers; i++)
        if (ts->peers[i].node == node)
            pe = &ts->peers[i];
    if (pe == NULL) {
        struct tpeer *np = realloc(ts->peers, (ts->n_peers + 1) * sizeof(*np));
        if (np == NULL)
            return NULL;
        ts->peers = np;
        pe = &ts->peers[ts->n_peers++];
        *pe = (struct tpeer){.node = node};
    }
    return hs_inter_broker_peer(hs, node, &pe->peer, &pe->retry_at_ms, ts->stopping,
                                "laminar-txn-markers");
}

/* The partition's error in a WriteTxnMarkers response, NETWORK_EXCEPTION when unreadable. */
static int16_t remote_error(const struct tmark *m, const uint8_t *resp, size_t len)
{
    struct kafka_arena a;
    kafka_arena_init(&a, 1u << 20);
    struct kafka_reader r;
    kafka_reader_init(&r, resp, len);
    struct kafka_write_txn_markers_response rs;
    kafka_write_txn_markers_response_init(&rs);
    int16_t err = KAFKA_NETWORK_EXCEPTION;
    if (kafka_write_txn_markers_response_decode(&r, 1, &rs, &a) == 0)
        for (int32_t i = 0; i < rs.markers_count; i++)
            for (int32_t t = 0; t < rs.markers[i].topics_count; t++) {
                const struct kafka_write_txn_markers_response_writable_txn_marker_topic_result *tr =
                    &rs.markers[i].topics[t];
                if (tr->name.len != m->topic_len ||
                    memcmp(tr->name.ptr, m->topic, (size_t)m->topic_len) != 0)
                    continue;
                for (int32_t j = 0; j < tr->partitions_count; j++)
                    if (tr->partitions[j].partition_index == m->partition)
                        err = tr->partitions[j].error_code;
            }
    kafka_arena_deinit(&a);
    return err;
}

static void remote_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct tmark *m = call->arg;
    struct tshard *ts = m->ts;
    if (ts != NULL) {
        m->error = rc == 0 ? remote_error(m, call->resp, call->resp_len) : KAFKA_NETWORK_EXCEPTION;
        /* UNKNOWN_TOPIC_OR_PARTITION from a leader means its metadata lags: retried (Kafka);
         * only the local check of a topic gone from the metadata drops a partition */
        if (m->error == KAFKA_UNKNOWN_TOPIC_OR_PARTITION)
            m->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
    }
    free(m->req_buf);
    m->req_buf = NULL;
    mark_done(NULL, &m->x);
}

/* Sends m as a WriteTxnMarkers v1 request to node. Returns 0 (remote_done runs later) or an
 * LM_E_* (nothing sent). */
static int remote_send(struct tshard *ts, struct tmark *m, int32_t node)
{
    struct broker_peer *peer = peer_for(ts, node);
    if (peer == NULL)
        return LM_E_CLOSED;
    int32_t part = m->partition;
    struct kafka_write_txn_markers_request_writable_txn_marker_topic topic = {
        .name = {m->topic, m->topic_len}, .partition_indexes = &part, .partition_indexes_count = 1};
    struct kafka_write_txn_markers_request_writable_txn_marker mk = {
        .producer_id = m->producer_id,
        .producer_epoch = m->producer_epoch,
        .transaction_result = m->commit,
        .topics = &topic,
        .topics_count = 1,
        .coordinator_epoch = m->coordinator_epoch};
    struct kafka_write_txn_markers_request rq;
    kafka_write_txn_markers_request_init(&rq);
    rq.markers = &mk;
    rq.markers_count = 1;
    size_t n = kafka_write_txn_markers_request_size(1, &rq);
    m->req_buf = malloc(n);
    if (m->req_buf == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, m->req_buf, n);
    int rc = kafka_write_txn_markers_request_encode(&w, 1, &rq);
    LM_ASSERT(rc != 0 || w.pos == n);
    if (rc == 0) {
        m->part = (struct broker_resp_part){.mem = m->req_buf, .fd = -1, .len = n};
        m->call = (struct broker_call){.api_key = KAFKA_WRITE_TXN_MARKERS_KEY,
                                       .api_version = 1,
                                       .flexible = true,
                                       .parts = &m->part,
                                       .nparts = 1,
                                       .done = remote_done,
                                       .arg = m};
        m->x.arg = m;
        rc = broker_peer_send(peer, &m->call);
    }
    if (rc != 0) {
        free(m->req_buf);
        m->req_buf = NULL;
    }
    return rc;
}

static int send_marker(struct tshard *ts, const struct lm_txn_marker *mk)
{
    size_t tl = (size_t)mk->transactional_id.len, pl = (size_t)mk->topic.len;
    struct tmark *m = calloc(1, sizeof(*m) + tl + pl + 2);
    if (m == NULL)
        return LM_E_NOMEM;
    m->ts = ts;
    m->marker_id = mk->marker_id;
    m->producer_id = mk->producer_id;
    m->producer_epoch = mk->producer_epoch;
    m->commit = mk->commit;
    m->coordinator_epoch = mk->coordinator_epoch;
    m->partition = mk->partition;
    m->tid = m->buf;
    m->tid_len = (int32_t)tl;
    memcpy(m->tid, mk->transactional_id.ptr, tl);
    m->topic = m->buf + tl + 1;
    m->topic_len = (int32_t)pl;
    memcpy(m->topic, mk->topic.ptr, pl);
    m->next = ts->marks;
    if (ts->marks != NULL)
        ts->marks->prev = m;
    ts->marks = m;
    int32_t leader = marker_leader(ts, m);
    if (leader >= 0 && leader != ts->hs->node->cfg->node_id) {
        if (remote_send(ts, m, leader) != 0) {
            /* answered RETRY once the flush is over */
            mark_unlink(ts, m);
            m->next = ts->failed;
            ts->failed = m;
        }
        return 0;
    }
    m->x.run = mark_run;
    m->x.done = mark_done;
    m->x.arg = m;
    broker_shard_call(ts->hs->shard, hs_owner(ts->hs, m->topic, pl, m->partition), &m->x);
    return 0;
}

/* ---- the coordinator's outputs -----------------------------------------------------------------
 */

static void timer_fire(struct broker_shard *s, struct broker_timer *t);

static void timer_arm(struct tshard *ts)
{
    /* no id kept, nothing to time out, expire or retry: no timer until a request comes */
    if (ts->stopping || ts->timer_armed || lm_txn_coord_count(ts->coord) == 0)
        return;
    ts->timer_armed =
        broker_timer_start(ts->hs->shard, &ts->timer, TXN_TICK_MS, timer_fire, ts) == 0;
    if (!ts->timer_armed)
        BLOG_ERROR("shard %u: cannot arm the transaction timer", ts->hs->id);
}

/* Answers op with err for everything (on the owner shard). */
static void op_fail(struct top *op, int16_t err)
{
    op->error_code = err;
    if (op->kind == TOP_ADD)
        for (int32_t i = 0; i < op->in.add.n_partitions; i++)
            op->part_errors[i] = err;
}

/* Answers op with the coordinator's response r (on the owner shard). */
static void op_fill(struct top *op, const struct lm_txn_resp *r)
{
    op->error_code = r->error_code;
    op->producer_id = r->producer_id;
    op->producer_epoch = r->producer_epoch;
    if (op->kind == TOP_ADD) {
        LM_ASSERT(r->n_parts == op->in.add.n_partitions);
        for (int32_t i = 0; i < r->n_parts; i++)
            op->part_errors[i] = r->parts[i].error_code;
    }
}

/* Hands out what the coordinator has ready: records are appended (their requests answered
 * when committed, by write_committed), markers sent, responses returned to their shards.
 * Failures found while handing out are reported after advance, which may queue more. */
static void coord_flush(struct tshard *ts)
{
    for (uint32_t turns = 0; turns < 1000; turns++) {
        struct lm_txn_ready rd;
        lm_txn_coord_ready(ts->coord, &rd);
        if (rd.n_writes == 0 && rd.n_markers == 0 && rd.n_resps == 0)
            break;
        uint64_t *failed_w = calloc(rd.n_writes + 1, sizeof(*failed_w));
        int16_t *failed_e = calloc(rd.n_writes + 1, sizeof(*failed_e));
        size_t nfw = 0;
        for (size_t i = 0; i < rd.n_writes; i++) {
            int rc = write_record(ts, &rd.writes[i]);
            if (rc != 0 && failed_w != NULL && failed_e != NULL) {
                failed_w[nfw] = rd.writes[i].write_id;
                failed_e[nfw++] = append_error(rc);
            }
        }
        /* a marker that cannot be sent (no memory) is sent again after the coordinator's
         * LM_TXN_MARKER_TIMEOUT_MS */
        for (size_t i = 0; i < rd.n_markers; i++)
            if (send_marker(ts, &rd.markers[i]) != 0)
                BLOG_WARN_LIMITED("transaction marker: out of memory");
        for (size_t i = 0; i < rd.n_resps; i++) {
            struct top *op = (struct top *)(uintptr_t)rd.resps[i].token;
            LM_ASSERT(op != NULL);
            op_fill(op, &rd.resps[i]);
            broker_xcall_return(ts->hs->shard, &op->x);
        }
        lm_txn_coord_advance(ts->coord);
        int64_t now = group_now_ms(ts->hs);
        while (ts->failed != NULL) {
            struct tmark *m = ts->failed;
            ts->failed = m->next;
            if (lm_txn_coord_marker_done(ts->coord, now, m->marker_id,
                                         (struct kafka_str){m->tid, m->tid_len},
                                         (struct kafka_str){m->topic, m->topic_len}, m->partition,
                                         LM_TXN_MARKER_RETRY) != 0)
                BLOG_ERROR("transaction coordinator: out of memory");
            free(m);
        }
        for (size_t i = 0; i < nfw; i++)
            if (lm_txn_coord_write_done(ts->coord, now, failed_w[i], failed_e[i]) != 0)
                BLOG_ERROR("transaction coordinator: out of memory");
        free(failed_w);
        free(failed_e);
    }
    timer_arm(ts);
}

static void timer_fire(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct tshard *ts = t->arg;
    ts->timer_armed = false;
    if (ts->stopping)
        return;
    int rc = lm_txn_coord_tick(ts->coord, group_now_ms(ts->hs));
    if (rc != 0)
        BLOG_ERROR("shard %u: transaction tick: %s", ts->hs->id, lm_strerror(rc));
    coord_flush(ts);
}

/* ---- cross-shard calls -------------------------------------------------------------------------
 */

/* DescribeTransactions/ListTransactions read the coordinator directly (no state change). */
static struct kafka_str adup(struct top *op, struct kafka_str s)
{
    if (s.len <= 0)
        return (struct kafka_str){"", 0};
    char *p = kafka_arena_alloc(&op->req->arena, (size_t)s.len, 1);
    if (p == NULL) {
        op->nomem = true;
        return (struct kafka_str){"", 0};
    }
    memcpy(p, s.ptr, (size_t)s.len);
    return (struct kafka_str){p, s.len};
}

static void describe_run(struct tshard *ts, struct top *op)
{
    struct kafka_str tid = op->in.end.transactional_id;
    int32_t p = lm_txn_partition_of(ts->coord, tid);
    op->found = false;
    if (!lm_txn_coord_owns(ts->coord, p)) {
        op->error_code = KAFKA_NOT_COORDINATOR;
        return;
    }
    struct lm_txn_info in;
    if (!lm_txn_coord_describe(ts->coord, tid, &in))
        return;
    op->found = true;
    op->info = in;
    op->info.transactional_id = adup(op, in.transactional_id);
    struct lm_txn_topic_partition *parts =
        in.n_partitions > 0 ? h_alloc(op->req, (size_t)in.n_partitions, sizeof(*parts)) : NULL;
    if (in.n_partitions > 0 && parts == NULL) {
        op->nomem = true;
        op->info.n_partitions = 0;
        return;
    }
    for (int32_t i = 0; i < in.n_partitions; i++)
        parts[i] = (struct lm_txn_topic_partition){adup(op, in.partitions[i].topic),
                                                   in.partitions[i].partition};
    op->info.partitions = parts;
}

static void op_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct top *op = x->arg;
    struct tshard *ts = hs_of(target)->txn;
    if (ts == NULL || ts->stopping) {
        op_fail(op, KAFKA_COORDINATOR_NOT_AVAILABLE);
        broker_xcall_return(target, x);
        return;
    }
    int64_t now = group_now_ms(ts->hs);
    uint64_t tok = (uint64_t)(uintptr_t)op;
    int rc = 0;
    switch (op->kind) {
    case TOP_INIT:
        rc = lm_txn_init_pid(ts->coord, now, tok, &op->in.init);
        break;
    case TOP_ADD:
        rc = lm_txn_add_partitions(ts->coord, now, tok, &op->in.add);
        break;
    case TOP_ADD_OFFSETS:
        rc = lm_txn_add_offsets(ts->coord, now, tok, &op->in.add_offsets);
        break;
    case TOP_END:
        rc = lm_txn_end(ts->coord, now, tok, &op->in.end);
        break;
    case TOP_DESCRIBE:
        describe_run(ts, op);
        broker_xcall_return(target, x);
        return;
    case TOP_LIST:
        for (size_t i = 0; i < lm_txn_coord_count(ts->coord); i++) {
            struct lm_txn_info in;
            lm_txn_coord_info_at(ts->coord, i, &in);
            op->list_fn(op, &in);
        }
        broker_xcall_return(target, x);
        return;
    default:
        LM_UNREACHABLE();
    }
    if (rc != 0) {
        BLOG_WARN("transaction coordinator call failed: %s", lm_strerror(rc));
        op_fail(op, KAFKA_UNKNOWN_SERVER_ERROR);
        broker_xcall_return(target, x);
    }
    coord_flush(ts);
}

static void op_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    struct top *op = x->arg;
    op->finish(op);
}

void txn_call(struct top *op)
{
    memset(&op->x, 0, sizeof(op->x));
    op->x.run = op_run;
    op->x.done = op_done;
    op->x.arg = op;
    broker_shard_call(op->req->shard, op->owner, &op->x);
}

/* ---- shard lifecycle ------------------------------------------------------------------------- */

int txn_shard_start(struct hshard *hs)
{
    struct tshard *ts = calloc(1, sizeof(*ts));
    if (ts == NULL)
        return LM_E_NOMEM;
    ts->hs = hs;
    ts->timer.heap_index_ = UINT32_MAX;
    struct lm_txn_config cfg = hs->node->txn_cfg;
    cfg.alloc_pid = alloc_pid;
    cfg.alloc_ctx = ts;
    int rc = lm_txn_coord_new(&cfg, &ts->coord);
    if (rc != 0) {
        free(ts);
        return rc;
    }
    hs->txn = ts;
    /* Loaded as this node comes to lead them (a single node: once the topic exists and its
     * partitions are open), at each shard tick (txn_cluster_sync). */
    ts->cluster_loaded = calloc((size_t)cfg.state_partitions, sizeof(bool));
    ts->cluster_loading = calloc((size_t)cfg.state_partitions, sizeof(bool));
    ts->cluster_epoch = calloc((size_t)cfg.state_partitions, sizeof(int32_t));
    if (ts->cluster_loaded == NULL || ts->cluster_loading == NULL || ts->cluster_epoch == NULL)
        return LM_E_NOMEM;
    txn_cluster_sync(hs);
    coord_flush(ts);
    return 0;
}

int txn_state_topic_create(struct hshard *hs, bool *created)
{
    *created = false;
    hs_refresh(hs);
    if (lm_meta_state_find(&hs->snap->state, TXN_STATE_TOPIC) != NULL)
        return 0;
    struct txn_topic_scratch sc;
    struct lm_meta_record r;
    int rc = txn_state_topic_record(hs->node, 1, &sc, &r);
    if (rc == 0)
        rc = lm_meta_store_commit(hs->node->meta, &r);
    if (rc == LM_E_EXISTS) /* another shard created it meanwhile */
        return 0;
    if (rc != 0)
        return rc;
    BLOG_INFO("created %s with %d partitions", TXN_STATE_TOPIC, r.partition_count);
    *created = true;
    hs_refresh(hs);
    return 0;
}

void txn_cluster_sync(struct hshard *hs)
{
    struct tshard *ts = hs->txn;
    if (ts == NULL || ts->stopping || ts->cluster_loaded == NULL || hs->snap == NULL)
        return;
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, TXN_STATE_TOPIC);
    int32_t n = hs->node->txn_cfg.state_partitions;
    bool changed = false;
    for (int32_t p = 0; p < n; p++) {
        if (broker_partition_shard(TXN_STATE_TOPIC, TXN_STATE_TOPIC_LEN, p, hs->count) != hs->id)
            continue;
        bool local = t != NULL && p < t->partition_count && hs_local_replica(hs->node, t, p);
        struct hpart *hp = local ? hs_part(hs, TXN_STATE_TOPIC, TXN_STATE_TOPIC_LEN, p) : NULL;
        /* Kafka's coordinator follows the partition's leadership: loaded once this node leads
         * it and has committed an entry of its term (its log then holds every commit an
         * earlier leader acknowledged), unloaded when it no longer does; loaded again when the
         * epoch changed between two looks (another leader may have written meanwhile). */
        int32_t epoch = 0;
        bool leads = false;
        if (hp != NULL && hp->replicated) {
            leads = hp->part != NULL && partition_is_leader(hp->part);
            local = leads && partition_hw_known(hp->part);
            epoch = local ? partition_leader_epoch(hp->part) : 0;
            if (local && ts->cluster_loaded[p] && ts->cluster_epoch[p] != epoch) {
                lm_txn_coord_unload(ts->coord, p);
                ts->cluster_loaded[p] = false;
                changed = true;
            }
            /* led here, no commit in its term yet: its ids answer
             * COORDINATOR_LOAD_IN_PROGRESS (clients retry here) rather than NOT_COORDINATOR */
            if (leads && !local && !ts->cluster_loaded[p] && !ts->cluster_loading[p]) {
                lm_txn_coord_load_begin(ts->coord, p, partition_leader_epoch(hp->part));
                ts->cluster_loading[p] = true;
            }
        }
        if (!leads && ts->cluster_loading[p]) { /* no longer led here: NOT_COORDINATOR */
            lm_txn_coord_unload(ts->coord, p);
            ts->cluster_loading[p] = false;
            changed = true;
        }
        if (local && !ts->cluster_loaded[p]) {
            if (hp == NULL || hp->log == NULL)
                continue; /* not open yet: the next tick */
            load_partition(ts, p, epoch);
            ts->cluster_loading[p] = false;
            ts->cluster_loaded[p] = lm_txn_coord_owns(ts->coord, p);
            ts->cluster_epoch[p] = epoch;
            changed = true;
        } else if (!local && ts->cluster_loaded[p]) {
            lm_txn_coord_unload(ts->coord, p);
            ts->cluster_loaded[p] = false;
            changed = true;
        }
    }
    if (changed)
        coord_flush(ts);
}

void txn_shard_drain(struct hshard *hs)
{
    struct tshard *ts = hs->txn;
    if (ts == NULL)
        return;
    for (int32_t p = 0; p < hs->node->txn_cfg.state_partitions; p++)
        if (lm_txn_coord_owns(ts->coord, p))
            lm_txn_coord_unload(ts->coord, p);
    coord_flush(ts);
}

void txn_shard_stop(struct hshard *hs)
{
    struct tshard *ts = hs->txn;
    if (ts == NULL)
        return;
    ts->stopping = true;
    if (ts->timer_armed)
        broker_timer_cancel(hs->shard, &ts->timer);
    /* completions still to come only free their structs */
    for (struct twait *w = ts->waits; w != NULL; w = w->next)
        w->ts = NULL;
    for (struct tmark *m = ts->marks; m != NULL; m = m->next)
        m->ts = NULL;
    for (size_t i = 0; i < ts->n_peers; i++)
        if (ts->peers[i].peer != NULL)
            broker_peer_close(ts->peers[i].peer);
    free(ts->peers);
    lm_txn_coord_free(ts->coord);
    hs->txn = NULL;
    free(ts->cluster_loaded);
    free(ts->cluster_loading);
    free(ts->cluster_epoch);
    free(ts->added);
    free(ts);
}

void txn_shard_added_counts(struct hshard *hs, uint64_t *asked, uint64_t *skipped)
{
    struct tshard *ts = hs->txn;
    if (ts != NULL && ts->added != NULL) {
        *asked = ts->added->misses;
        *skipped = ts->added->hits;
    }
}

struct txn_added *txn_shard_added(struct hshard *hs)
{
    struct tshard *ts = hs->txn;
    if (ts == NULL || ts->stopping)
        return NULL;
    if (ts->added == NULL) {
        ts->added = malloc(sizeof(*ts->added));
        if (ts->added != NULL)
            txn_added_init(ts->added);
    }
    return ts->added;
}

/* ---- setup ------------------------------------------------------------------------------------
 */

int txn_state_topic_record(const struct handlers_ctx *node, int16_t rf,
                           struct txn_topic_scratch *sc, struct lm_meta_record *r)
{
    /* transaction.state.log.min.isr (Kafka's default 2), at most the replicas it gets */
    const char *v = broker_config_get(node->cfg, "transaction.state.log.min.isr");
    long min_isr = v != NULL ? strtol(v, NULL, 10) : 2;
    if (min_isr < 1)
        min_isr = 1;
    if (min_isr > rf)
        min_isr = rf;
    snprintf(sc->min_isr, sizeof(sc->min_isr), "%ld", min_isr);
    sc->configs[0] = (struct lm_config_entry){(char *)"cleanup.policy", (char *)"compact"};
    sc->configs[1] = (struct lm_config_entry){(char *)"retention.ms", (char *)"-1"};
    sc->configs[2] = (struct lm_config_entry){(char *)"retention.bytes", (char *)"-1"};
    sc->configs[3] = (struct lm_config_entry){(char *)"min.insync.replicas", sc->min_isr};
    memset(r, 0, sizeof(*r));
    r->type = LM_META_TOPIC_CREATE;
    r->topic = TXN_STATE_TOPIC;
    r->partition_count = node->txn_cfg.state_partitions;
    r->configs = sc->configs;
    r->config_count = 4;
    return lm_meta_new_topic_id(r->topic_id);
}

int txn_setup(struct handlers_ctx *node)
{
    struct lm_txn_config *c = &node->txn_cfg;
    lm_txn_config_default(c);
    c->offsets_partitions = node->group_cfg.offsets_topic_partitions;
    int64_t v;
    int rc = 0;
    v = c->state_partitions;
    if ((rc = group_config_i64(node->cfg, "transaction.state.log.num.partitions", 1,
                               LM_TXN_PARTITIONS_MAX, &v)) != 0)
        return rc;
    c->state_partitions = (int32_t)v;
    v = c->max_timeout_ms;
    if ((rc = group_config_i64(node->cfg, "transaction.max.timeout.ms", 1, INT32_MAX, &v)) != 0)
        return rc;
    c->max_timeout_ms = (int32_t)v;
    if ((rc = group_config_i64(node->cfg, "transactional.id.expiration.ms", 1, INT32_MAX,
                               &c->id_expiration_ms)) != 0 ||
        (rc = group_config_i64(node->cfg,
                               "transaction.abort.timed.out.transaction.cleanup.interval.ms", 1,
                               INT32_MAX, &c->abort_check_interval_ms)) != 0 ||
        (rc = group_config_i64(node->cfg,
                               "transaction.remove.expired.transaction.cleanup.interval.ms", 1,
                               INT32_MAX, &c->expiration_check_interval_ms)) != 0)
        return rc;
    node->txn_verify_partitions = true;
    const char *verify = broker_config_get(node->cfg, "transaction.partition.verification.enable");
    if (verify != NULL) {
        broker_config_mark_used(node->cfg, "transaction.partition.verification.enable");
        if (strcmp(verify, "true") != 0 && strcmp(verify, "false") != 0) {
            BLOG_ERROR("transaction.partition.verification.enable=%s: expected true or false",
                       verify);
            return LM_E_CONFIG;
        }
        node->txn_verify_partitions = strcmp(verify, "true") == 0;
    }
    /* the topic's replication settings: checked here, read when a cluster creates it */
    int64_t ignored = 0;
    if ((rc = group_config_i64(node->cfg, "transaction.state.log.replication.factor", 1, INT16_MAX,
                               &ignored)) != 0 ||
        (rc = group_config_i64(node->cfg, "transaction.state.log.min.isr", 1, INT16_MAX,
                               &ignored)) != 0)
        return rc;
    int32_t have = 0;
    /* created at the first FindCoordinator of a transactional id, as Kafka does
     * (txn_state_topic_create) */
    if ((rc = group_internal_topic_ensure(node->meta, TXN_STATE_TOPIC,
                                          "transaction.state.log.num.partitions",
                                          c->state_partitions, false, &have)) != 0) {
        BLOG_ERROR("cannot create %s: %s", TXN_STATE_TOPIC, lm_strerror(rc));
        return rc;
    }
    if (have > LM_TXN_PARTITIONS_MAX)
        return LM_E_CONFIG;
    c->state_partitions = have;
    return 0;
}
