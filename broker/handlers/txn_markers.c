/* WriteTxnMarkers (key 27, v0-1): the transaction coordinator ends a producer's transaction on
 * the partitions this node leads by appending a transaction marker to each (Kafka's
 * KafkaApis.handleWriteTxnMarkersRequest and ReplicaManager.appendRecords with origin
 * COORDINATOR and acks=-1). The answer comes once every marker is committed (for a replicated
 * partition: Raft's commit; for one voter: the group-commit fsync), per partition
 * NOT_LEADER_OR_FOLLOWER, UNKNOWN_TOPIC_OR_PARTITION, KAFKA_STORAGE_ERROR,
 * INVALID_PRODUCER_EPOCH or TRANSACTION_COORDINATOR_FENCED as Kafka answers them.
 *
 * A marker (control batch: attributes control | transactional, the producer's id and epoch, one
 * record with key {0, type} and value {0, coordinator epoch}) closes the producer's open
 * transaction in the log (storage/txn.c: the last stable offset moves, an abort enters the
 * segment's .txnindex) and in the producer state (producer_marker_appended). The check against
 * the producer state (producer_marker_check) runs on the owner shard right before the append,
 * so no other append of the partition comes between them. */
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/group_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "protocol/kafka_messages.h"
#include "protocol/records.h"

struct mout {
    const struct kafka_write_txn_markers_request_writable_txn_marker *marker;
    struct hsync_wait sync;
    struct hwork *w;
};

struct mctx {
    struct kafka_write_txn_markers_request rq;
    struct kafka_write_txn_markers_response resp;
};

static void marker_committed(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    struct mout *o = sw->arg;
    struct hwork *w = o->w;
    if (rc != 0) {
        w->error = rc == LM_E_STATE ? KAFKA_NOT_LEADER_OR_FOLLOWER : KAFKA_KAFKA_STORAGE_ERROR;
        BLOG_INFO_LIMITED("partition %s-%d: transaction marker not committed: %s", p->topic,
                          p->partition, lm_strerror(rc));
    } else {
        /* Kafka GroupCoordinator.onTransactionCompleted, once the marker is committed */
        group_txn_marker(hs, p, o->marker->producer_id, o->marker->transaction_result);
    }
    hfan_release(hs, w);
}

static void marker_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    (void)f;
    struct mout *o = w->out;
    const struct kafka_write_txn_markers_request_writable_txn_marker *m = o->marker;
    if (p == NULL) {
        w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    if (p->replicated && p->part != NULL &&
        (!partition_is_leader(p->part) || partition_transferring(p->part))) {
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        return;
    }
    if (p->log == NULL || p->failed || p->part == NULL) {
        w->error = KAFKA_KAFKA_STORAGE_ERROR;
        return;
    }
    int16_t e =
        producer_marker_check(hs, p, m->producer_id, m->producer_epoch, m->coordinator_epoch);
    if (e != KAFKA_NONE) {
        BLOG_INFO_LIMITED("partition %s-%d: transaction marker of producer %lld epoch %d "
                          "(coordinator epoch %d) refused: %s",
                          p->topic, p->partition, (long long)m->producer_id, m->producer_epoch,
                          m->coordinator_epoch, kafka_error_name(e));
        w->error = e;
        return;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    int16_t type = m->transaction_result ? KAFKA_CONTROL_COMMIT : KAFKA_CONTROL_ABORT;
    int rc = kafka_txn_marker_build(m->producer_id, m->producer_epoch, type, m->coordinator_epoch,
                                    group_now_ms(hs), &buf, &len);
    if (rc != 0) {
        w->error = rc == LM_E_INVALID ? KAFKA_INVALID_REQUEST : KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    o->sync.done = marker_committed;
    o->sync.arg = o;
    o->w = w;
    hfan_hold(w);
    rc = hs_append(hs, p, PARTITION_ORIGIN_COORDINATOR, buf, len, -1, &o->sync);
    free(buf);
    if (rc != 0) {
        hfan_release(hs, w);
        w->error = h_storage_error(rc);
        BLOG_WARN_LIMITED("partition %s-%d: transaction marker append: %s", p->topic, p->partition,
                          lm_strerror(rc));
        return;
    }
    /* In the log now: later appends see the transaction closed (Kafka updates the producer
     * state at append, the last stable offset moves with the commit). */
    producer_marker_appended(hs, p, m->producer_id, m->producer_epoch, m->coordinator_epoch);
}

static void markers_finish(struct hfan *f)
{
    struct mctx *c = f->ctx;
    size_t k = 0;
    for (int32_t i = 0; i < c->resp.markers_count; i++) {
        struct kafka_write_txn_markers_response_writable_txn_marker_result *mr =
            &c->resp.markers[i];
        for (int32_t t = 0; t < mr->topics_count; t++)
            for (int32_t j = 0; j < mr->topics[t].partitions_count; j++, k++)
                mr->topics[t].partitions[j].error_code = f->items[k].error;
    }
    LM_ASSERT(k == f->count);
    h_respond(f->req, &c->resp);
}

static void write_txn_markers(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct mctx *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    if (c == NULL || f == NULL)
        goto nomem;
    kafka_write_txn_markers_request_init(&c->rq);
    if (!h_decode(req, &c->rq))
        return;
    kafka_write_txn_markers_response_init(&c->resp);
    /* KafkaApis: CLUSTER_ACTION on the cluster, else every partition is refused */
    bool denied = !h_allowed_cluster(req, AUTHZ_OP_CLUSTER_ACTION);
    int32_t nm = c->rq.markers_count > 0 ? c->rq.markers_count : 0;
    size_t n = 0;
    for (int32_t i = 0; i < nm; i++)
        for (int32_t t = 0; t < c->rq.markers[i].topics_count; t++)
            if (c->rq.markers[i].topics[t].partition_indexes_count > 0)
                n += (size_t)c->rq.markers[i].topics[t].partition_indexes_count;
    struct hwork *items = h_alloc(req, n, sizeof(*items));
    struct mout *outs = h_alloc(req, n, sizeof(*outs));
    c->resp.markers = h_alloc(req, (size_t)nm, sizeof(*c->resp.markers));
    if ((n > 0 && (items == NULL || outs == NULL)) || (nm > 0 && c->resp.markers == NULL))
        goto nomem;
    c->resp.markers_count = nm;
    size_t k = 0;
    for (int32_t i = 0; i < nm; i++) {
        const struct kafka_write_txn_markers_request_writable_txn_marker *m = &c->rq.markers[i];
        struct kafka_write_txn_markers_response_writable_txn_marker_result *mr =
            &c->resp.markers[i];
        int32_t nt = m->topics_count > 0 ? m->topics_count : 0;
        mr->producer_id = m->producer_id;
        mr->topics = h_alloc(req, (size_t)nt, sizeof(*mr->topics));
        if (nt > 0 && mr->topics == NULL)
            goto nomem;
        mr->topics_count = nt;
        for (int32_t t = 0; t < nt; t++) {
            const struct kafka_write_txn_markers_request_writable_txn_marker_topic *mt =
                &m->topics[t];
            int32_t np = mt->partition_indexes_count > 0 ? mt->partition_indexes_count : 0;
            mr->topics[t].name = mt->name;
            mr->topics[t].partitions = h_alloc(req, (size_t)np, sizeof(*mr->topics[t].partitions));
            if (np > 0 && mr->topics[t].partitions == NULL)
                goto nomem;
            mr->topics[t].partitions_count = np;
            struct htopic *ht =
                mt->name.len > 0 ? hs_topic(hs, mt->name.ptr, (size_t)mt->name.len) : NULL;
            for (int32_t j = 0; j < np; j++, k++) {
                int32_t part = mt->partition_indexes[j];
                mr->topics[t].partitions[j].partition_index = part;
                struct hwork *w = &items[k];
                memset(w, 0, sizeof(*w));
                memset(&outs[k], 0, sizeof(outs[k]));
                outs[k].marker = m;
                w->topic = mt->name.ptr;
                w->topic_len = mt->name.len > 0 ? (size_t)mt->name.len : 0;
                w->partition = part;
                w->out = &outs[k];
                if (denied) {
                    w->error = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
                    w->owner = HWORK_DONE;
                } else if (ht == NULL || part < 0 || part >= ht->meta->partition_count) {
                    w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                    w->owner = HWORK_DONE;
                } else {
                    w->owner = hs_owner(hs, w->topic, w->topic_len, part);
                }
            }
        }
    }
    LM_ASSERT(k == n);
    if (!hfan_init(f, req, items, n, marker_op, markers_finish, c))
        goto nomem;
    hfan_start(f);
    return;
nomem:
    h_close(req, "arena exhausted");
}

int txn_markers_register(struct broker_dispatch *d)
{
    return handlers_serve(d, KAFKA_WRITE_TXN_MARKERS_KEY, 0, 1, write_txn_markers);
}
