/* Loading a __consumer_offsets partition into the coordinator (see group.h): records replayed
 * as Kafka's GroupMetadataManager.loadGroupsAndOffsets does. */
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

/* ---- loading ---- */

static void drop_partition_groups(struct lm_group_coord *c, int32_t partition, bool answer)
{
    for (size_t b = 0; b < c->n_buckets; b++) {
        struct group *g = c->buckets[b];
        while (g) {
            struct group *next = g->next;
            if (g->partition == partition) {
                for (int32_t i = 0; answer && i < g->n_members; i++) {
                    gr_fail_parked_join(c, g->members[i], KAFKA_NOT_COORDINATOR, g->members[i]->id);
                    gr_fail_parked_sync(c, g->members[i], KAFKA_NOT_COORDINATOR);
                }
                for (int32_t i = 0; i < g->n_members; i++)
                    g->members[i]->awaiting_join = g->members[i]->awaiting_sync = false;
                gr_group_destroy(c, g);
            }
            g = next;
        }
    }
}

int lm_group_coord_load_begin(struct lm_group_coord *c, int32_t partition)
{
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions)
        return LM_E_INVALID;
    drop_partition_groups(c, partition, true);
    c->owned[partition] = 1;
    c->loading[partition] = 1;
    return 0;
}

/* A group record read back from __consumer_offsets is untrusted input (anything that reached
 * the log, or a damaged file): the coordinator's invariants must hold before it becomes a group,
 * else the record is skipped (Kafka's loader drops records it cannot read the same way). With
 * members: a protocol type and a chosen protocol, unique non-empty member ids, unique static
 * instance ids, positive timeouts and a leader that is one of the members (elect_joined_leader,
 * join_success and select_protocol rely on these). */
static bool group_value_sane(const struct lm_gr_group_value *v)
{
    if (v->generation < 0)
        return false;
    if (v->n_members == 0)
        return true;
    if (v->protocol_type.len <= 0 || v->protocol.len <= 0 || v->leader.len <= 0)
        return false;
    bool leader_found = false;
    for (int32_t i = 0; i < v->n_members; i++) {
        const struct lm_gr_member *m = &v->members[i];
        if (m->member_id.len <= 0 || m->session_timeout_ms <= 0 || m->rebalance_timeout_ms <= 0)
            return false;
        leader_found = leader_found || gr_str_eq(m->member_id, v->leader);
        for (int32_t j = 0; j < i; j++) {
            const struct lm_gr_member *o = &v->members[j];
            if (gr_str_eq(o->member_id, m->member_id) ||
                (m->instance_id.len >= 0 && o->instance_id.len >= 0 &&
                 gr_str_eq(o->instance_id, m->instance_id)))
                return false;
        }
    }
    return leader_found;
}

static void load_group_value(struct group *g, const struct lm_gr_group_value *v)
{
    for (int32_t i = 0; i < g->n_members; i++)
        gr_member_free(g->members[i]);
    g->n_members = 0;
    g->generation = v->generation;
    gr_sfree(&g->protocol_type);
    if (v->protocol_type.len > 0)
        g->protocol_type = gr_sdup(v->protocol_type);
    gr_sset(&g->protocol_name, v->protocol);
    /* An empty group has no leader (a stale one would be elected from nobody). */
    gr_sset(&g->leader, v->n_members > 0 ? v->leader : KAFKA_STR_NULL);
    g->state_ts_ms = v->state_ts_ms;
    g->has_metadata = true;
    if (v->n_members > g->cap_members) {
        g->cap_members = v->n_members;
        g->members = gr_xrealloc(g->members, (size_t)g->cap_members * sizeof(*g->members));
    }
    for (int32_t i = 0; i < v->n_members; i++) {
        const struct lm_gr_member *r = &v->members[i];
        struct member *m = gr_xcalloc(1, sizeof(*m));
        m->id = gr_sdup(r->member_id);
        m->instance_id = gr_sdup(r->instance_id);
        m->client_id = gr_sdup(r->client_id);
        m->client_host = gr_sdup(r->client_host);
        m->protocol_type = gr_sdup(v->protocol_type);
        m->session_ms = r->session_timeout_ms;
        m->rebalance_ms = r->rebalance_timeout_ms;
        /* the record keeps only the chosen protocol's metadata (Kafka loads the same) */
        if (v->protocol.len >= 0) {
            struct lm_group_protocol p = {.name = v->protocol, .metadata = r->subscription};
            gr_member_set_protocols(m, 1, &p);
        }
        m->assignment =
            gr_bdup(r->assignment.len < 0 ? (struct kafka_bytes){NULL, 0} : r->assignment);
        m->hb_deadline_ms = NO_DEADLINE;
        g->members[g->n_members++] = m;
    }
    g->state = g->n_members > 0 ? LM_GROUP_STABLE : LM_GROUP_EMPTY;
}

static void reset_group_metadata(struct group *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        gr_member_free(g->members[i]);
    g->n_members = 0;
    g->generation = 0;
    gr_sfree(&g->protocol_type);
    gr_sfree(&g->protocol_name);
    gr_sfree(&g->leader);
    g->state = LM_GROUP_EMPTY;
    g->state_ts_ms = -1;
    g->has_metadata = false;
}

int lm_group_coord_replay(struct lm_group_coord *c, int32_t partition, struct kafka_bytes key,
                          struct kafka_bytes value, int64_t *n_bad)
{
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions || !c->loading[partition])
        return LM_E_STATE;
    struct lm_gr_key k;
    bool tomb = value.len < 0 || value.ptr == NULL;
    int rc = key.len > 0 ? lm_gr_key_decode(key.ptr, (size_t)key.len, &k) : LM_E_TRUNCATED;
    if (rc == 0 && lm_gr_partition_for(k.group, c->cfg.offsets_topic_partitions) != partition)
        rc = LM_E_CORRUPT; /* a record in the wrong partition: ignore it */
    if (rc != 0) {
        if (n_bad)
            (*n_bad)++;
        return 0;
    }
    struct group *g = gr_group_find(c, k.group);
    if (k.version != LM_GR_KEY_GROUP) {
        if (tomb) {
            if (g) {
                int32_t i = gr_offset_search(g, k.topic, k.partition);
                if (i >= 0)
                    gr_offset_remove_at(g, i);
            }
            return 0;
        }
        struct offset_entry tmp = {0};
        if (!gr_offset_value_load(&tmp, value)) {
            if (n_bad)
                (*n_bad)++;
            return 0;
        }
        if (!g)
            g = gr_group_create(c, k.group, -1);
        struct offset_entry *e = gr_offset_put(g, k.topic, k.partition);
        gr_sfree(&e->metadata);
        tmp.topic = e->topic;
        tmp.partition = e->partition;
        *e = tmp;
        return 0;
    }
    if (tomb) {
        if (g)
            reset_group_metadata(g);
        return 0;
    }
    struct kafka_arena a;
    kafka_arena_init(&a, (size_t)value.len * 8 + 4096);
    struct lm_gr_group_value v;
    rc = lm_gr_group_value_decode(value.ptr, (size_t)value.len, &a, &v);
    if (rc == 0 && !group_value_sane(&v))
        rc = LM_E_CORRUPT;
    if (rc == 0) {
        if (!g)
            g = gr_group_create(c, k.group, -1);
        load_group_value(g, &v);
    } else if (n_bad) {
        (*n_bad)++;
    }
    kafka_arena_deinit(&a);
    return 0;
}

bool gr_offset_value_load(struct offset_entry *e, struct kafka_bytes value)
{
    struct lm_gr_offset_value v;
    if (value.ptr == NULL || value.len < 0 ||
        lm_gr_offset_value_decode(value.ptr, (size_t)value.len, &v) != 0)
        return false;
    e->offset = v.offset;
    e->leader_epoch = v.leader_epoch;
    e->metadata = gr_sdup(v.metadata);
    e->commit_ts_ms = v.commit_ts_ms;
    e->expire_ts_ms = v.expire_ts_ms;
    return true;
}

int lm_group_coord_load_end(struct lm_group_coord *c, int32_t partition, int64_t now_ms)
{
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions || !c->loading[partition])
        return LM_E_STATE;
    c->loading[partition] = 0;
    for (size_t b = 0; b < c->n_buckets; b++) {
        struct group *g = c->buckets[b];
        while (g) {
            struct group *next = g->next;
            if (g->partition == partition) {
                if (!g->has_metadata && g->n_offsets == 0 && g->n_txn == 0) {
                    gr_group_destroy(c, g); /* only tombstones were left of it */
                } else {
                    gr_compute_subscribed_topics(g);
                    for (int32_t i = 0; i < g->n_members; i++)
                        g->members[i]->hb_deadline_ms = now_ms + g->members[i]->session_ms;
                }
            }
            g = next;
        }
    }
    return 0;
}

int lm_group_coord_unload(struct lm_group_coord *c, int32_t partition)
{
    if (partition < 0 || partition >= c->cfg.offsets_topic_partitions)
        return LM_E_INVALID;
    drop_partition_groups(c, partition, true);
    c->owned[partition] = 0;
    c->loading[partition] = 0;
    return 0;
}
