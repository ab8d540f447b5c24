/* Group offsets and administration (see group.h): OffsetCommit, OffsetFetch, DescribeGroups,
 * ListGroups, DeleteGroups, OffsetDelete and offset retention (KIP-211). */
#include "broker/group/group.h"
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "broker/group/group_internal.h"
#include "broker/group/group_records.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"
#include "protocol/kafka_errors.h"
#include "common/lm_grow.h"

/* ---- OffsetCommit ---- */

/* Kafka GroupCoordinator.validateOffsetCommit (non-transactional) plus the state checks of
 * doCommitOffsets. */
static int16_t commit_check(const struct group *g, const struct lm_group_commit_req *req)
{
    if (g->state == LM_GROUP_DEAD)
        return KAFKA_COORDINATOR_NOT_AVAILABLE;
    if (req->generation_id >= 0 || req->member_id.len > 0 || req->group_instance_id.len >= 0) {
        if (gr_static_member_fenced(g, req->group_instance_id, req->member_id))
            return KAFKA_FENCED_INSTANCE_ID;
        if (!gr_member_find(g, req->member_id))
            return KAFKA_UNKNOWN_MEMBER_ID;
        if (req->generation_id != g->generation)
            return KAFKA_ILLEGAL_GENERATION;
    } else if (g->state != LM_GROUP_EMPTY) {
        /* a simple commit (generation -1, no member) only into a group without members */
        return KAFKA_UNKNOWN_MEMBER_ID;
    }
    if (g->state == LM_GROUP_COMPLETING_REBALANCE)
        return KAFKA_REBALANCE_IN_PROGRESS;
    return KAFKA_NONE;
}

int lm_group_commit(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                    const struct lm_group_commit_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_topics >= 0 && (req->n_topics == 0 || req->topics != NULL));
    int16_t err = gr_group_status(c, req->group_id, false);
    struct group *g = NULL;
    if (err == KAFKA_NONE) {
        g = gr_group_find(c, req->group_id);
        if (g)
            gr_group_timers(c, g, now_ms);
        if (!g && req->generation_id >= 0)
            err = KAFKA_ILLEGAL_GENERATION; /* a group we do not know: an old generation */
        else if (!g)
            g = gr_group_create(c, req->group_id, now_ms); /* simple consumer using Kafka storage */
        if (g)
            err = commit_check(g, req);
        if (err == KAFKA_NONE && g->state != LM_GROUP_EMPTY) {
            struct member *m = gr_member_find(g, req->member_id);
            LM_ASSERT(m != NULL);
            m->hb_deadline_ms = now_ms + m->session_ms; /* a commit counts as a heartbeat */
        }
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
            struct offset_entry *oe = gr_offset_put(g, rt->name, rp->partition);
            oe->offset = rp->offset;
            oe->leader_epoch = rp->leader_epoch;
            gr_sset(&oe->metadata, rp->metadata.len < 0 ? gr_cstr("") : rp->metadata);
            oe->commit_ts_ms = now_ms;
            oe->expire_ts_ms = req->retention_ms >= 0 ? now_ms + req->retention_ms : -1;
            gr_emit_offset_record(c, g, oe, false);
        }
    }
    r = &c->resps[ri];
    r->u.commit.n_topics = req->n_topics;
    r->u.commit.topics = ts;
    return 0;
}

/* ---- OffsetFetch ---- */

static struct lm_group_fetch_part fetch_part(struct lm_group_coord *c, const struct group *g,
                                             struct kafka_str topic, int32_t partition, int16_t err,
                                             bool require_stable)
{
    struct lm_group_fetch_part fp = {.partition = partition,
                                     .offset = -1,
                                     .leader_epoch = -1,
                                     .metadata = gr_cstr(""),
                                     .error_code = err};
    if (err != KAFKA_NONE || !g || g->state == LM_GROUP_DEAD)
        return fp;
    if (require_stable && gr_txn_pending(g, topic, partition)) {
        /* Kafka handleFetchOffsets: a transaction's offset for it is not settled yet */
        fp.error_code = KAFKA_UNSTABLE_OFFSET_COMMIT;
        return fp;
    }
    int32_t i = gr_offset_search(g, topic, partition);
    if (i >= 0) {
        fp.offset = g->offsets[i].offset;
        fp.leader_epoch = g->offsets[i].leader_epoch;
        fp.metadata = gr_ostr(c, g->offsets[i].metadata);
    }
    return fp;
}

int lm_group_fetch(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_group_fetch_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_groups >= 0 && (req->n_groups == 0 || req->groups != NULL));
    (void)now_ms; /* reads only */
    struct lm_group_fetch_group_resp *gs = gr_oalloc(c, (size_t)req->n_groups * sizeof(*gs));
    for (int32_t gi = 0; gi < req->n_groups; gi++) {
        const struct lm_group_fetch_group *rg = &req->groups[gi];
        int16_t err = gr_group_status(c, rg->group_id, false);
        const struct group *g = err == KAFKA_NONE ? gr_group_find(c, rg->group_id) : NULL;
        gs[gi].group_id = gr_ostr(c, rg->group_id);
        gs[gi].error_code = err;
        if (rg->n_topics >= 0) {
            gs[gi].n_topics = rg->n_topics;
            gs[gi].topics = gr_oalloc(c, (size_t)rg->n_topics * sizeof(*gs[gi].topics));
            for (int32_t t = 0; t < rg->n_topics; t++) {
                const struct lm_group_fetch_topic *rt = &rg->topics[t];
                struct lm_group_fetch_topic_resp *ot = &gs[gi].topics[t];
                ot->name = gr_ostr(c, rt->name);
                ot->n_partitions = rt->n_partitions;
                ot->partitions = gr_oalloc(c, (size_t)rt->n_partitions * sizeof(*ot->partitions));
                for (int32_t p = 0; p < rt->n_partitions; p++)
                    ot->partitions[p] =
                        fetch_part(c, g, rt->name, rt->partitions[p], err, req->require_stable);
            }
        } else if (err == KAFKA_NONE && g && g->state != LM_GROUP_DEAD && g->n_offsets > 0) {
            /* every offset, grouped by topic: the entries are sorted by (topic, partition) */
            int32_t n_topics = 0;
            for (int32_t i = 0; i < g->n_offsets; i++)
                n_topics += i == 0 || !gr_str_eq(g->offsets[i].topic, g->offsets[i - 1].topic);
            gs[gi].topics = gr_oalloc(c, (size_t)n_topics * sizeof(*gs[gi].topics));
            int32_t t = -1;
            for (int32_t i = 0; i < g->n_offsets; i++) {
                const struct offset_entry *e = &g->offsets[i];
                if (i == 0 || !gr_str_eq(e->topic, g->offsets[i - 1].topic)) {
                    t++;
                    int32_t n = 0;
                    while (i + n < g->n_offsets && gr_str_eq(g->offsets[i + n].topic, e->topic))
                        n++;
                    gs[gi].topics[t].name = gr_ostr(c, e->topic);
                    gs[gi].topics[t].partitions =
                        gr_oalloc(c, (size_t)n * sizeof(*gs[gi].topics[t].partitions));
                }
                struct lm_group_fetch_topic_resp *ot = &gs[gi].topics[t];
                ot->partitions[ot->n_partitions++] =
                    fetch_part(c, g, e->topic, e->partition, 0, req->require_stable);
            }
            LM_ASSERT(t + 1 == n_topics);
            gs[gi].n_topics = n_topics;
        }
    }
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_FETCH);
    r->u.fetch.n_groups = req->n_groups;
    r->u.fetch.groups = gs;
    return 0;
}

/* ---- DescribeGroups / ListGroups ---- */

int lm_group_describe(struct lm_group_coord *c, int64_t now_ms, uint64_t token, int32_t n_groups,
                      const struct kafka_str *group_ids)
{
    LM_ASSERT(c != NULL && n_groups >= 0 && (n_groups == 0 || group_ids != NULL));
    struct lm_group_describe_group *ds = gr_oalloc(c, (size_t)n_groups * sizeof(*ds));
    for (int32_t i = 0; i < n_groups; i++) {
        struct lm_group_describe_group *d = &ds[i];
        int16_t err = gr_group_status(c, group_ids[i], false);
        struct group *g = err == KAFKA_NONE ? gr_group_find(c, group_ids[i]) : NULL;
        if (g)
            gr_group_timers(c, g, now_ms);
        d->error_code = err;
        d->group_id = gr_ostr(c, group_ids[i]);
        d->protocol_type = gr_cstr("");
        d->protocol_data = gr_cstr("");
        /* Kafka's GroupCoordinator.DeadGroup for an unknown group: NONE, "Dead", no members */
        d->state = gr_cstr(err == KAFKA_NONE ? "Dead" : "");
        if (!g || g->state == LM_GROUP_DEAD)
            continue;
        d->found = true;
        d->state = gr_cstr(lm_group_state_name(g->state));
        d->protocol_type = gr_ostr(c, g->protocol_type.len < 0 ? gr_cstr("") : g->protocol_type);
        bool stable = g->state == LM_GROUP_STABLE;
        if (stable)
            d->protocol_data = gr_ostr(c, g->protocol_name);
        d->n_members = g->n_members;
        d->members = gr_oalloc(c, (size_t)g->n_members * sizeof(*d->members));
        for (int32_t k = 0; k < g->n_members; k++) {
            const struct member *m = g->members[k];
            struct lm_group_describe_member *dm = &d->members[k];
            dm->member_id = gr_ostr(c, m->id);
            dm->group_instance_id = gr_ostr(c, m->instance_id);
            dm->client_id = gr_ostr(c, m->client_id);
            dm->client_host = gr_ostr(c, m->client_host);
            dm->metadata = (struct kafka_bytes){(const uint8_t *)"", 0};
            dm->assignment = (struct kafka_bytes){(const uint8_t *)"", 0};
            if (stable) {
                const struct mproto *p = gr_member_protocol(m, g->protocol_name);
                if (p)
                    dm->metadata = gr_obytes(c, p->metadata);
                if (m->assignment.len > 0)
                    dm->assignment = gr_obytes(c, m->assignment);
            }
        }
    }
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_DESCRIBE);
    r->u.describe.n_groups = n_groups;
    r->u.describe.groups = ds;
    return 0;
}

static bool list_match(const struct group *g, const struct lm_group_list_req *req)
{
    bool ok = req->n_states == 0;
    for (int32_t i = 0; !ok && i < req->n_states; i++)
        ok = gr_str_ieq(req->states[i], lm_group_state_name(g->state));
    if (!ok)
        return false;
    ok = req->n_types == 0;
    for (int32_t i = 0; !ok && i < req->n_types; i++)
        ok = gr_str_ieq(req->types[i], "classic");
    return ok;
}

int lm_group_list(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_list_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    (void)now_ms;
    int16_t err = KAFKA_NONE;
    for (int32_t p = 0; p < c->cfg.offsets_topic_partitions; p++)
        if (c->owned[p] && c->loading[p])
            err = KAFKA_COORDINATOR_LOAD_IN_PROGRESS; /* Kafka: listing while loading */
    size_t n = 0;
    for (size_t b = 0; b < c->n_buckets; b++)
        for (struct group *g = c->buckets[b]; g; g = g->next)
            n += g->state != LM_GROUP_DEAD && !c->loading[g->partition] && list_match(g, req);
    struct lm_group_list_entry *es = gr_oalloc(c, n * sizeof(*es));
    size_t k = 0;
    for (size_t b = 0; b < c->n_buckets; b++) {
        for (struct group *g = c->buckets[b]; g; g = g->next) {
            if (g->state == LM_GROUP_DEAD || c->loading[g->partition] || !list_match(g, req))
                continue;
            es[k].group_id = gr_ostr(c, g->id);
            es[k].protocol_type =
                gr_ostr(c, g->protocol_type.len < 0 ? gr_cstr("") : g->protocol_type);
            es[k].state = gr_cstr(lm_group_state_name(g->state));
            es[k].type = gr_cstr("classic");
            k++;
        }
    }
    LM_ASSERT(k == n);
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_LIST);
    r->u.list.error_code = err;
    r->u.list.n_groups = (int32_t)n;
    r->u.list.groups = es;
    return 0;
}

/* ---- DeleteGroups / OffsetDelete ---- */

/* Kafka cleanupGroupMetadata for a group going Dead: tombstones for every offset, then for
 * the group metadata, then the group is forgotten. */
static void group_delete_with_tombstones(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    gr_set_state(g, LM_GROUP_DEAD, now_ms);
    for (int32_t i = 0; i < g->n_offsets; i++)
        gr_emit_offset_record(c, g, &g->offsets[i], true);
    gr_emit_group_tombstone(c, g);
    for (int32_t i = 0; i < g->n_members; i++) {
        gr_fail_parked_join(c, g->members[i], KAFKA_COORDINATOR_NOT_AVAILABLE, g->members[i]->id);
        gr_fail_parked_sync(c, g->members[i], KAFKA_COORDINATOR_NOT_AVAILABLE);
    }
    gr_group_destroy(c, g);
}

int lm_group_delete(struct lm_group_coord *c, int64_t now_ms, uint64_t token, int32_t n_groups,
                    const struct kafka_str *group_ids)
{
    LM_ASSERT(c != NULL && n_groups >= 0 && (n_groups == 0 || group_ids != NULL));
    struct lm_group_delete_result *rs = gr_oalloc(c, (size_t)n_groups * sizeof(*rs));
    for (int32_t i = 0; i < n_groups; i++) {
        int16_t err = gr_group_status(c, group_ids[i], false);
        struct group *g = err == KAFKA_NONE ? gr_group_find(c, group_ids[i]) : NULL;
        if (g)
            gr_group_timers(c, g, now_ms);
        rs[i].group_id = gr_ostr(c, group_ids[i]);
        if (err == KAFKA_NONE && (!g || g->state == LM_GROUP_DEAD))
            err = KAFKA_GROUP_ID_NOT_FOUND;
        else if (err == KAFKA_NONE && g->state != LM_GROUP_EMPTY)
            err = KAFKA_NON_EMPTY_GROUP;
        else if (err == KAFKA_NONE)
            group_delete_with_tombstones(c, g, now_ms);
        rs[i].error_code = err;
    }
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_DELETE);
    r->u.del.n_results = n_groups;
    r->u.del.results = rs;
    return 0;
}

int lm_group_offset_delete(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                           const struct lm_group_offset_delete_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_topics >= 0 && (req->n_topics == 0 || req->topics != NULL));
    int16_t err = gr_group_status(c, req->group_id, false);
    struct group *g = err == KAFKA_NONE ? gr_group_find(c, req->group_id) : NULL;
    if (g)
        gr_group_timers(c, g, now_ms);
    if (err == KAFKA_NONE && (!g || g->state == LM_GROUP_DEAD))
        err = KAFKA_GROUP_ID_NOT_FOUND;
    /* Kafka handleDeleteOffsets: an Empty group loses any offset; a consumer group with
     * members keeps the ones of topics it subscribes to (GROUP_SUBSCRIBED_TO_TOPIC); any
     * other group with members refuses (NON_EMPTY_GROUP). */
    bool consumer = g && gr_str_eq(g->protocol_type, gr_cstr("consumer"));
    if (err == KAFKA_NONE && g->state != LM_GROUP_EMPTY && !consumer)
        err = KAFKA_NON_EMPTY_GROUP;
    struct lm_group_topic_errors *ts = NULL;
    int32_t n_topics = 0;
    if (err == KAFKA_NONE) {
        n_topics = req->n_topics;
        ts = gr_oalloc(c, (size_t)n_topics * sizeof(*ts));
        for (int32_t t = 0; t < n_topics; t++) {
            const struct lm_group_fetch_topic *rt = &req->topics[t];
            bool subscribed = g->state != LM_GROUP_EMPTY && gr_subscribed_to(g, rt->name);
            ts[t].name = gr_ostr(c, rt->name);
            ts[t].n_partitions = rt->n_partitions;
            ts[t].partitions = gr_oalloc(c, (size_t)rt->n_partitions * sizeof(*ts[t].partitions));
            for (int32_t p = 0; p < rt->n_partitions; p++) {
                ts[t].partitions[p].partition = rt->partitions[p];
                if (subscribed) {
                    ts[t].partitions[p].error_code = KAFKA_GROUP_SUBSCRIBED_TO_TOPIC;
                    continue;
                }
                ts[t].partitions[p].error_code = KAFKA_NONE;
                int32_t i = gr_offset_search(g, rt->name, rt->partitions[p]);
                if (i >= 0) {
                    gr_emit_offset_record(c, g, &g->offsets[i], true);
                    gr_offset_remove_at(g, i);
                }
            }
        }
    }
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_OFFSET_DELETE);
    r->u.offset_delete.error_code = err;
    r->u.offset_delete.n_topics = n_topics;
    r->u.offset_delete.topics = ts;
    return 0;
}

/* ---- offset retention (KIP-211) ---- */

/* Kafka GroupMetadata.removeExpiredOffsets + cleanupGroupMetadata. */
void gr_expire_offsets(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    int64_t ret = c->cfg.offsets_retention_ms;
    bool empty_typed = g->protocol_type.len >= 0 && g->state == LM_GROUP_EMPTY;
    bool stable_consumer = gr_str_eq(g->protocol_type, gr_cstr("consumer")) && g->topics_known &&
                           g->state == LM_GROUP_STABLE;
    bool simple = g->protocol_type.len < 0;
    if (empty_typed || stable_consumer || simple) {
        for (int32_t i = 0; i < g->n_offsets;) {
            struct offset_entry *e = &g->offsets[i];
            bool expired;
            if (stable_consumer && gr_subscribed_to(g, e->topic))
                expired = false;
            else if (e->expire_ts_ms >= 0)
                expired = now_ms >= e->expire_ts_ms; /* explicit (v2-4 commit) expiry */
            else if (empty_typed)
                /* retention counts from when the group became Empty */
                expired = now_ms - (g->state_ts_ms >= 0 ? g->state_ts_ms : e->commit_ts_ms) >= ret;
            else
                expired = now_ms - e->commit_ts_ms >= ret;
            if (expired) {
                gr_emit_offset_record(c, g, e, true);
                gr_offset_remove_at(g, i);
            } else {
                i++;
            }
        }
    }
    if (g->state == LM_GROUP_EMPTY && g->n_offsets == 0 && g->n_pending == 0 && g->n_txn == 0)
        group_delete_with_tombstones(c, g, now_ms);
}
