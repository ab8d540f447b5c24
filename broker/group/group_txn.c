/* Transactional offset commits (see group.h): TxnOffsetCommit writes the offsets as the
 * producer's transactional records and keeps them pending per producer (Kafka
 * GroupMetadata.pendingTransactionalOffsetCommits); the producer's commit marker in the group's
 * __consumer_offsets partition makes them the group's committed offsets, an abort marker drops
 * them (GroupMetadata.completePendingTxnOffsetCommit). A load replays transactional batches and
 * markers the same way, so pending offsets of a transaction still open stay pending. */
#include "broker/group/group.h"
#include <stdlib.h>
#include <string.h>
#include "broker/group/group_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"
#include "protocol/kafka_errors.h"

static int32_t txn_find(const struct group *g, int64_t producer_id, struct kafka_str topic,
                        int32_t partition)
{
    for (int32_t i = 0; i < g->n_txn; i++) {
        const struct txn_offset *t = &g->txn[i];
        if (t->producer_id == producer_id && t->e.partition == partition &&
            gr_str_eq(t->e.topic, topic))
            return i;
    }
    return -1;
}

/* The pending entry of (producer, topic, partition), made empty when new. */
static struct offset_entry *txn_put(struct group *g, int64_t producer_id, struct kafka_str topic,
                                    int32_t partition)
{
    int32_t i = txn_find(g, producer_id, topic, partition);
    if (i >= 0) {
        gr_sfree(&g->txn[i].e.metadata);
        return &g->txn[i].e;
    }
    if (g->n_txn == g->cap_txn) {
        int grc = LM_GROW(g->txn, g->cap_txn, (size_t)g->n_txn + 1, 4);
        LM_ASSERT(grc == 0);
    }
    struct txn_offset *t = &g->txn[g->n_txn++];
    memset(t, 0, sizeof(*t));
    t->producer_id = producer_id;
    t->e.topic = gr_sdup(topic);
    t->e.partition = partition;
    t->e.leader_epoch = -1;
    t->e.expire_ts_ms = -1;
    return &t->e;
}

static void txn_remove_at(struct group *g, int32_t i)
{
    LM_ASSERT(i >= 0 && i < g->n_txn);
    gr_offset_entry_free(&g->txn[i].e);
    memmove(&g->txn[i], &g->txn[i + 1], (size_t)(g->n_txn - i - 1) * sizeof(*g->txn));
    g->n_txn--;
}

void gr_txn_free(struct group *g)
{
    for (int32_t i = 0; i < g->n_txn; i++)
        gr_offset_entry_free(&g->txn[i].e);
    free(g->txn);
    g->txn = NULL;
    g->n_txn = g->cap_txn = 0;
}

bool gr_txn_pending(const struct group *g, struct kafka_str topic, int32_t partition)
{
    for (int32_t i = 0; i < g->n_txn; i++)
        if (g->txn[i].e.partition == partition && gr_str_eq(g->txn[i].e.topic, topic))
            return true;
    return false;
}

/* Kafka GroupCoordinator.doTxnCommitOffsets (KIP-447 member checks when a member is named). */
static int16_t txn_commit_check(const struct group *g, const struct lm_group_commit_req *req)
{
    if (g->state == LM_GROUP_DEAD)
        return KAFKA_COORDINATOR_NOT_AVAILABLE;
    if (gr_static_member_fenced(g, req->group_instance_id, req->member_id))
        return KAFKA_FENCED_INSTANCE_ID;
    if (req->member_id.len > 0 && !gr_member_find(g, req->member_id))
        return KAFKA_UNKNOWN_MEMBER_ID;
    if (req->generation_id >= 0 && req->generation_id != g->generation)
        return KAFKA_ILLEGAL_GENERATION;
    return KAFKA_NONE;
}

int lm_group_txn_commit(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                        const struct lm_group_txn_commit_req *treq)
{
    LM_ASSERT(c != NULL && treq != NULL);
    const struct lm_group_commit_req *req = &treq->commit;
    LM_ASSERT(req->n_topics >= 0 && (req->n_topics == 0 || req->topics != NULL));
    int16_t err = gr_group_status(c, req->group_id, false);
    struct group *g = NULL;
    if (err == KAFKA_NONE && treq->producer_id < 0)
        err = KAFKA_INVALID_PRODUCER_ID_MAPPING;
    if (err == KAFKA_NONE) {
        g = gr_group_find(c, req->group_id);
        if (g)
            gr_group_timers(c, g, now_ms);
        else /* Kafka adds the group (Empty) for a transaction's first commit */
            g = gr_group_create(c, req->group_id, now_ms);
        err = txn_commit_check(g, req);
    }
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_COMMIT);
    size_t ri = c->n_resps - 1;
    struct lm_group_topic_errors *ts = gr_oalloc(c, (size_t)req->n_topics * sizeof(*ts));
    for (int32_t t = 0; t < req->n_topics; t++) {
        const struct lm_group_commit_topic *rt = &req->topics[t];
        LM_ASSERT(rt->n_partitions >= 0 && (rt->n_partitions == 0 || rt->partitions));
        ts[t].name = gr_ostr(c, rt->name);
        ts[t].n_partitions = rt->n_partitions;
        ts[t].partitions = gr_oalloc(c, (size_t)rt->n_partitions * sizeof(*ts[t].partitions));
        for (int32_t p = 0; p < rt->n_partitions; p++) {
            const struct lm_group_commit_part *rp = &rt->partitions[p];
            int16_t e = err;
            if (e == KAFKA_NONE && rp->metadata.len > c->cfg.offset_metadata_max_bytes)
                e = KAFKA_OFFSET_METADATA_TOO_LARGE;
            ts[t].partitions[p].partition = rp->partition;
            ts[t].partitions[p].error_code = e;
            if (e != KAFKA_NONE)
                continue;
            struct offset_entry *oe = txn_put(g, treq->producer_id, rt->name, rp->partition);
            oe->offset = rp->offset;
            oe->leader_epoch = rp->leader_epoch;
            oe->metadata = gr_sdup(rp->metadata.len < 0 ? gr_cstr("") : rp->metadata);
            oe->commit_ts_ms = now_ms;
            oe->expire_ts_ms = -1;
            gr_emit_txn_offset_record(c, g, oe, treq->producer_id, treq->producer_epoch);
        }
    }
    r = &c->resps[ri];
    r->u.commit.n_topics = req->n_topics;
    r->u.commit.topics = ts;
    return 0;
}

int lm_group_txn_complete(struct lm_group_coord *c, int32_t partition, int64_t producer_id,
                          bool commit)
{
    LM_ASSERT(c != NULL);
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions)
        return LM_E_INVALID;
    for (size_t b = 0; b < c->n_buckets; b++) {
        for (struct group *g = c->buckets[b]; g != NULL; g = g->next) {
            if (g->partition != partition)
                continue;
            for (int32_t i = 0; i < g->n_txn;) {
                struct txn_offset *t = &g->txn[i];
                if (t->producer_id != producer_id) {
                    i++;
                    continue;
                }
                if (commit && g->state != LM_GROUP_DEAD) {
                    struct offset_entry *e = gr_offset_put(g, t->e.topic, t->e.partition);
                    gr_sfree(&e->metadata);
                    struct kafka_str topic = e->topic;
                    *e = t->e;
                    e->topic = topic;
                    e->partition = t->e.partition;
                    t->e.metadata = KAFKA_STR_NULL; /* moved */
                }
                txn_remove_at(g, i);
            }
        }
    }
    return 0;
}

int lm_group_coord_replay_txn(struct lm_group_coord *c, int32_t partition, int64_t producer_id,
                              struct kafka_bytes key, struct kafka_bytes value, int64_t *n_bad)
{
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions || !c->loading[partition])
        return LM_E_STATE;
    struct lm_gr_key k;
    int rc = key.len > 0 ? lm_gr_key_decode(key.ptr, (size_t)key.len, &k) : LM_E_TRUNCATED;
    if (rc == 0 && (k.version == LM_GR_KEY_GROUP ||
                    lm_gr_partition_for(k.group, c->cfg.offsets_topic_partitions) != partition))
        rc = LM_E_CORRUPT; /* a transaction writes offset commits of its partition's groups */
    struct offset_entry tmp = {0};
    if (rc == 0 && !gr_offset_value_load(&tmp, value))
        rc = LM_E_CORRUPT;
    if (rc != 0) {
        if (n_bad)
            (*n_bad)++;
        return 0;
    }
    struct group *g = gr_group_find(c, k.group);
    if (!g)
        g = gr_group_create(c, k.group, -1);
    struct offset_entry *e = txn_put(g, producer_id, k.topic, k.partition);
    struct kafka_str topic = e->topic;
    *e = tmp;
    e->topic = topic;
    e->partition = k.partition;
    return 0;
}

int lm_group_coord_replay_marker(struct lm_group_coord *c, int32_t partition, int64_t producer_id,
                                 bool commit)
{
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions || !c->loading[partition])
        return LM_E_STATE;
    return lm_group_txn_complete(c, partition, producer_id, commit);
}
