/* Classic members of consumer groups and the migration between classic and consumer groups
 * (Kafka 4's mixed groups, cgroup.h): GroupMetadataManager classicGroup*ToConsumerGroup,
 * convertToConsumerGroup and the consumer-group side of convertToClassicGroup. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/group/cgroup.h"
#include "broker/group/cgroup_internal.h"
#include "broker/group/cproto.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* ---- classic members of a consumer group (Kafka 4's mixed groups) ---- */

static const struct kafka_str CONSUMER_PROTOCOL_TYPE = {"consumer", 8};

static void join_error(struct lm_group_join_resp *out, int16_t err, struct kafka_str member_id)
{
    *out = (struct lm_group_join_resp){.error_code = err,
                                       .generation_id = -1,
                                       .protocol_type = KAFKA_STR_NULL,
                                       .protocol_name = KAFKA_STR_NULL,
                                       .leader = {"", 0},
                                       .member_id = member_id};
}

/* Kafka ConsumerGroup.supportsClassicProtocols: protocol type "consumer" and a protocol every
 * classic member supports (any, when the group has none). */
static bool classic_supported(const struct cgroup *g, const struct lm_group_join_req *r)
{
    if (!cg_str_is(r->protocol_type, CONSUMER_PROTOCOL_TYPE))
        return false;
    if (g->n_members == 0)
        return r->n_protocols > 0;
    int32_t n_classic = 0;
    for (int32_t i = 0; i < g->n_members; i++)
        n_classic += g->members[i]->classic;
    for (int32_t p = 0; p < r->n_protocols; p++) {
        int32_t n = 0;
        for (int32_t i = 0; i < g->n_members; i++) {
            const struct cmember *m = g->members[i];
            for (int32_t k = 0; m->classic && k < m->n_protos; k++)
                if (cg_str_is(m->protos[k].name, r->protocols[p].name)) {
                    n++;
                    break;
                }
        }
        if (n == n_classic)
            return true;
    }
    return false;
}

/* The member a classic SyncGroup, Heartbeat or LeaveGroup names (Kafka
 * validateConsumerGroupMember and throwIfMemberDoesNotUseClassicProtocol). */
static int16_t classic_member(const struct cgroup *g, struct kafka_str member_id,
                              struct kafka_str instance_id, struct cmember **out)
{
    struct cmember *m;
    if (instance_id.len < 0) {
        m = cg_member_find(g, member_id, NULL);
        if (m == NULL)
            return KAFKA_UNKNOWN_MEMBER_ID;
    } else {
        m = cg_member_by_instance(g, instance_id);
        if (m == NULL)
            return KAFKA_UNKNOWN_MEMBER_ID;
        if (!cg_str_is(m->id, member_id))
            return KAFKA_FENCED_INSTANCE_ID;
    }
    if (!m->classic)
        return KAFKA_UNKNOWN_MEMBER_ID;
    *out = m;
    return KAFKA_NONE;
}

/* Whether some partition of the member's target is still held by another member (Kafka
 * ConsumerGroup.waitingOnUnreleasedPartition). */
static bool waiting_unreleased(const struct cgroup *g, const struct cmember *m)
{
    for (int32_t i = 0; i < m->target.n; i++)
        if (!cg_tpset_has(&m->assigned, &m->target.v[i]) && cg_held_by_other(g, m, &m->target.v[i]))
            return true;
    return false;
}

/* A classic member must rejoin (Kafka classicGroupHeartbeatToConsumerGroup): the group epoch
 * moved past it, it has partitions to give up, or the partitions it waited for are free. */
static bool classic_must_rejoin(const struct cgroup *g, const struct cmember *m)
{
    return m->epoch < g->epoch || m->state == M_UNREVOKED ||
           (m->state == M_UNRELEASED && !waiting_unreleased(g, m));
}

static void classic_join_timer(struct cmember *m, int64_t now_ms)
{
    if (m->join_deadline_ms == INT64_MAX)
        m->join_deadline_ms = now_ms + (m->rebalance_timeout_ms > 0 ? m->rebalance_timeout_ms : 0);
}

/* Kafka 4.1 validateOnlineDowngradeWithReplacedMember: the static member replaced is the only
 * consumer-protocol member, the policy allows a downgrade and the group fits a classic one. */
static bool replaced_downgrade_ok(const struct lm_cgroup_coord *c, const struct cgroup *g,
                                  const struct cmember *replaced)
{
    for (int32_t i = 0; i < g->n_members; i++)
        if (g->members[i] != replaced && !g->members[i]->classic)
            return false;
    return (c->cfg.migration & LM_CGROUP_MIGRATION_DOWNGRADE) != 0 &&
           g->n_members <= c->cfg.classic_max_size;
}

int lm_cgroup_classic_join(struct lm_cgroup_coord *c, int64_t now_ms,
                           const struct lm_cgroup_image *img, const struct lm_group_join_req *r,
                           struct lm_group_join_resp *out)
{
    LM_ASSERT(c != NULL && img != NULL && r != NULL && out != NULL);
    struct cgroup *g = cg_group_find(c, r->group_id, NULL);
    if (g == NULL) {
        join_error(out, KAFKA_UNKNOWN_MEMBER_ID, r->member_id);
        return 0;
    }
    if (r->session_timeout_ms < c->cfg.classic_session_min_ms ||
        r->session_timeout_ms > c->cfg.classic_session_max_ms) {
        join_error(out, KAFKA_INVALID_SESSION_TIMEOUT, r->member_id);
        return 0;
    }
    if (r->member_id.len > INT16_MAX || r->n_protocols <= 0) {
        join_error(out, KAFKA_INCONSISTENT_GROUP_PROTOCOL, r->member_id);
        return 0;
    }
    bool unknown = r->member_id.len <= 0;
    struct kafka_str mid = r->member_id;
    if (unknown) {
        /* Kafka gives a classic member of a consumer group a random UUID */
        struct kafka_str nid;
        if (cg_new_member_id(c, &nid) != 0)
            goto nomem;
        free(c->scratch_id);
        c->scratch_id = (char *)nid.ptr;
        mid = nid;
    }
    if (cg_member_find(g, mid, NULL) == NULL &&
        (g->n_members >= c->cfg.max_size || g->n_members >= LM_CGROUP_MEMBERS_MAX)) {
        join_error(out, KAFKA_GROUP_MAX_SIZE_REACHED, mid);
        return 0;
    }
    if (!classic_supported(g, r)) {
        join_error(out, KAFKA_INCONSISTENT_GROUP_PROTOCOL, mid);
        return 0;
    }
    if (unknown && r->require_known_member_id && r->group_instance_id.len < 0) {
        /* KIP-394: the member joins again with the id it is given */
        join_error(out, KAFKA_MEMBER_ID_REQUIRED, mid);
        return 0;
    }

    struct kafka_arena arena;
    kafka_arena_init(&arena, (size_t)64 << 20);
    struct tpset owned = {0};
    struct lm_cproto_sub sub;
    int rc = lm_cproto_sub_decode(r->protocols[0].metadata, &arena, &sub);
    if (rc == LM_E_NOMEM)
        goto nomem_arena;
    if (rc != 0) {
        /* Kafka: IllegalStateException("Malformed embedded consumer protocol ...") */
        join_error(out, KAFKA_UNKNOWN_SERVER_ERROR, mid);
        kafka_arena_deinit(&arena);
        return 0;
    }
    if (sub.n_topics > LM_CGROUP_SUBSCRIBED_MAX || sub.n_owned > LM_CGROUP_ASSIGNED_MAX) {
        join_error(out, KAFKA_INVALID_REQUEST, mid);
        kafka_arena_deinit(&arena);
        return 0;
    }
    if (cg_tpset_reserve(&owned, sub.n_owned + 1) != 0)
        goto nomem_arena;
    for (int32_t i = 0; i < sub.n_owned; i++) {
        struct kafka_uuid id;
        if (cg_image_topic_id(img, sub.owned[i].topic, &id))
            owned.v[owned.n++] = (struct lm_cgroup_tp){id, sub.owned[i].partition};
    }
    cg_tpset_normalize(&owned);

    /* the member: found, taken over from a static member that left, or new */
    bool bump = false, replace_downgrade = false;
    struct cmember *m = NULL;
    if (r->group_instance_id.len < 0) {
        m = cg_member_find(g, mid, NULL);
    } else {
        struct cmember *st = cg_member_by_instance(g, r->group_instance_id);
        if (st != NULL && unknown) {
            if (!st->static_left && !st->classic) {
                join_error(out, KAFKA_UNRELEASED_INSTANCE_ID, mid);
                cg_tpset_free(&owned);
                kafka_arena_deinit(&arena);
                return 0;
            }
            replace_downgrade = !st->classic && replaced_downgrade_ok(c, g, st);
            if (cg_static_takeover(c, g, st, mid) != 0)
                goto nomem_arena;
            m = st;
        } else if (st != NULL && !cg_str_is(st->id, mid)) {
            join_error(out, KAFKA_FENCED_INSTANCE_ID, mid);
            cg_tpset_free(&owned);
            kafka_arena_deinit(&arena);
            return 0;
        } else {
            m = st;
        }
    }
    if (m == NULL) {
        m = cg_member_new();
        if (m == NULL)
            goto nomem_arena;
        if (cg_str_set(&m->id, mid) != 0 ||
            cg_str_set(&m->instance_id, r->group_instance_id) != 0 || cg_member_insert(g, m) != 0) {
            cg_member_free(m);
            goto nomem_arena;
        }
        m->assignment_changed = true;
        bump = true;
    }
    m->static_left = false;
    m->rebalance_timeout_ms =
        r->rebalance_timeout_ms >= 0 ? r->rebalance_timeout_ms : r->session_timeout_ms;
    struct lm_cgr_protocol *protos = kafka_arena_alloc_array(
        &arena, (size_t)r->n_protocols, sizeof(*protos), _Alignof(struct lm_cgr_protocol));
    if (protos == NULL)
        goto nomem_arena;
    for (int32_t i = 0; i < r->n_protocols; i++)
        protos[i] = (struct lm_cgr_protocol){r->protocols[i].name, r->protocols[i].metadata};
    if ((sub.rack_id.len >= 0 && cg_str_set(&m->rack_id, sub.rack_id) != 0) ||
        (r->client_id.len >= 0 && cg_str_set(&m->client_id, r->client_id) != 0) ||
        (r->client_host.len >= 0 && cg_str_set(&m->client_host, r->client_host) != 0) ||
        cg_member_set_protos(m, true, r->session_timeout_ms, r->n_protocols, protos) != 0)
        goto nomem_arena;
    struct lm_cgroup_hb_req sr = {
        .n_topic_names = sub.n_topics, .topic_names = sub.topics, .topic_regex = KAFKA_STR_NULL};
    bool sub_changed = false;
    int16_t err = KAFKA_NONE;
    if (cg_update_subscription(m, &sr, &sub_changed, &err) != 0)
        goto nomem_arena;
    if (replace_downgrade) {
        /* the classic member took the last consumer-protocol member's place: a classic group
         * again, rebalancing only when the subscription changed (Kafka 4.1
         * validateOnlineDowngradeWithReplacedMember) */
        if ((!sub_changed && cg_reconcile(g, m, &owned, now_ms) != 0) || cg_downgrade(c, g) != 0)
            goto nomem_arena;
        g->dg_rebalance = sub_changed;
        cg_tpset_free(&owned);
        kafka_arena_deinit(&arena);
        *out = (struct lm_group_join_resp){.error_code = KAFKA_NONE,
                                           .generation_id = m->epoch,
                                           .protocol_type = CONSUMER_PROTOCOL_TYPE,
                                           .protocol_name = m->protos[0].name,
                                           .leader = {"", 0},
                                           .member_id = m->id};
        return 0;
    }
    uint64_t h = cg_subscribed_hash(g, img);
    if (bump || sub_changed || h != g->meta_hash) {
        g->meta_hash = h;
        g->epoch++;
    }
    if (g->epoch > g->target_epoch && cg_compute_target(c, g, img) != 0)
        goto nomem_arena;
    LM_ASSERT(g->epoch >= g->target_epoch && m->classic);
    if (cg_reconcile(g, m, &owned, now_ms) != 0 || cg_group_records(c, g, m, true) != 0)
        goto nomem_arena;
    LM_ASSERT(m->epoch <= g->target_epoch);
    cg_tpset_free(&owned);
    kafka_arena_deinit(&arena);

    m->session_deadline_ms = now_ms + r->session_timeout_ms;
    m->join_deadline_ms = INT64_MAX;
    m->sync_deadline_ms = now_ms + (m->rebalance_timeout_ms > 0 ? m->rebalance_timeout_ms : 0);
    *out = (struct lm_group_join_resp){.error_code = KAFKA_NONE,
                                       .generation_id = m->epoch,
                                       .protocol_type = CONSUMER_PROTOCOL_TYPE,
                                       .protocol_name = m->protos[0].name,
                                       .leader = {"", 0},
                                       .member_id = m->id};
    return 0;
nomem_arena:
    cg_tpset_free(&owned);
    kafka_arena_deinit(&arena);
nomem:
    join_error(out, KAFKA_UNKNOWN_SERVER_ERROR, r->member_id);
    return LM_E_NOMEM;
}

static struct kafka_str image_topic_name(const struct lm_cgroup_image *img, struct kafka_uuid id)
{
    for (size_t i = 0; img != NULL && i < img->n_topics; i++) {
        struct lm_cgroup_topic t;
        img->topic(img->ctx, i, &t);
        if (memcmp(t.id.b, id.b, sizeof(id.b)) == 0)
            return t.name;
    }
    return KAFKA_STR_NULL;
}

/* The member's assignment as the consumer protocol's Assignment bytes into c->classic_buf, in
 * the version of its subscription (Kafka prepareAssignment). Topics the image no longer has
 * are left out. */
static int classic_assignment(struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                              const struct cmember *m, struct kafka_bytes *out)
{
    struct lm_cproto_tp *tps = calloc((size_t)m->assigned.n + 1, sizeof(*tps));
    if (tps == NULL)
        return LM_E_NOMEM;
    int32_t n = 0;
    for (int32_t i = 0; i < m->assigned.n; i++) {
        struct kafka_str name = image_topic_name(img, m->assigned.v[i].topic_id);
        if (name.len >= 0)
            tps[n++] = (struct lm_cproto_tp){name, m->assigned.v[i].partition};
    }
    size_t size = lm_cproto_assignment_size(n, tps);
    free(c->classic_buf);
    c->classic_buf = malloc(size);
    if (c->classic_buf == NULL) {
        free(tps);
        return LM_E_NOMEM;
    }
    int16_t version = m->n_protos > 0 ? lm_cproto_version(m->protos[0].metadata) : 0;
    struct kafka_writer w;
    kafka_writer_init(&w, c->classic_buf, size);
    int rc = lm_cproto_assignment_encode(&w, version, n, tps);
    free(tps);
    LM_ASSERT(rc != 0 || w.pos == size);
    *out = (struct kafka_bytes){c->classic_buf, (int32_t)w.pos};
    return rc;
}

int lm_cgroup_classic_sync(struct lm_cgroup_coord *c, int64_t now_ms,
                           const struct lm_cgroup_image *img, const struct lm_group_sync_req *r,
                           struct lm_group_sync_resp *out)
{
    *out = (struct lm_group_sync_resp){.error_code = KAFKA_NONE,
                                       .protocol_type = KAFKA_STR_NULL,
                                       .protocol_name = KAFKA_STR_NULL,
                                       .assignment = {(const uint8_t *)"", 0}};
    struct cgroup *g = cg_group_find(c, r->group_id, NULL);
    struct cmember *m = NULL;
    int16_t err = g == NULL ? KAFKA_UNKNOWN_MEMBER_ID
                            : classic_member(g, r->member_id, r->group_instance_id, &m);
    if (err == KAFKA_NONE && r->generation_id != m->epoch)
        err = KAFKA_ILLEGAL_GENERATION;
    if (err == KAFKA_NONE &&
        ((r->protocol_type.len >= 0 && !cg_str_is(r->protocol_type, CONSUMER_PROTOCOL_TYPE)) ||
         (r->protocol_name.len >= 0 &&
          (m->n_protos == 0 || !cg_str_is(r->protocol_name, m->protos[0].name)))))
        err = KAFKA_INCONSISTENT_GROUP_PROTOCOL;
    if (err == KAFKA_NONE && g->epoch > m->epoch && m->state != M_UNREVOKED) {
        /* a rebalance started after its join: it joins again first */
        classic_join_timer(m, now_ms);
        err = KAFKA_REBALANCE_IN_PROGRESS;
    }
    if (err != KAFKA_NONE) {
        out->error_code = err;
        return 0;
    }
    m->sync_deadline_ms = INT64_MAX;
    m->session_deadline_ms = now_ms + m->classic_session_ms;
    if (classic_assignment(c, img, m, &out->assignment) != 0) {
        out->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
        out->assignment = (struct kafka_bytes){(const uint8_t *)"", 0};
        return LM_E_NOMEM;
    }
    out->protocol_type = r->protocol_type;
    out->protocol_name = r->protocol_name;
    return 0;
}

int lm_cgroup_classic_heartbeat(struct lm_cgroup_coord *c, int64_t now_ms,
                                const struct lm_group_heartbeat_req *r,
                                struct lm_group_heartbeat_resp *out)
{
    struct cgroup *g = cg_group_find(c, r->group_id, NULL);
    struct cmember *m = NULL;
    int16_t err = g == NULL ? KAFKA_UNKNOWN_MEMBER_ID
                            : classic_member(g, r->member_id, r->group_instance_id, &m);
    if (err == KAFKA_NONE && r->generation_id != m->epoch)
        err = KAFKA_ILLEGAL_GENERATION;
    if (err == KAFKA_NONE) {
        m->session_deadline_ms = now_ms + m->classic_session_ms;
        if (classic_must_rejoin(g, m)) {
            classic_join_timer(m, now_ms);
            err = KAFKA_REBALANCE_IN_PROGRESS;
        }
    }
    out->error_code = err;
    return 0;
}

int lm_cgroup_classic_leave(struct lm_cgroup_coord *c, int64_t now_ms,
                            const struct lm_group_leave_req *r, struct lm_group_leave_resp *out)
{
    (void)now_ms;
    *out = (struct lm_group_leave_resp){.error_code = KAFKA_NONE};
    struct cgroup *g = cg_group_find(c, r->group_id, NULL);
    int32_t n = r->n_members > 0 ? r->n_members : 0;
    free(c->leave_resps);
    c->leave_resps = calloc((size_t)n + 1, sizeof(*c->leave_resps));
    if (c->leave_resps == NULL) {
        out->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
        return LM_E_NOMEM;
    }
    int rc = 0;
    bool removed = false;
    for (int32_t i = 0; i < n; i++) {
        const struct lm_group_leave_member *lm = &r->members[i];
        struct lm_group_leave_member_resp *o = &c->leave_resps[i];
        *o = (struct lm_group_leave_member_resp){lm->member_id, lm->group_instance_id, KAFKA_NONE};
        struct cmember *m = NULL;
        if (g == NULL) {
            o->error_code = KAFKA_UNKNOWN_MEMBER_ID;
            continue;
        }
        if (lm->group_instance_id.len < 0) {
            o->error_code = classic_member(g, lm->member_id, KAFKA_STR_NULL, &m);
        } else {
            /* by instance id; an admin removal names no member id */
            m = cg_member_by_instance(g, lm->group_instance_id);
            if (m == NULL)
                o->error_code = KAFKA_UNKNOWN_MEMBER_ID;
            else if (lm->member_id.len > 0 && !cg_str_is(m->id, lm->member_id))
                o->error_code = KAFKA_FENCED_INSTANCE_ID;
            else if (!m->classic)
                o->error_code = KAFKA_UNKNOWN_MEMBER_ID;
        }
        if (o->error_code != KAFKA_NONE)
            continue;
        /* the answer names the member by the request's strings (borrowed for the call) */
        m->leaving = true;
        removed = true;
    }
    if (removed && cg_downgrade_ok(c, g) && cg_downgrade(c, g) == 0) {
        /* only classic members stay: a classic group again (Kafka 4.1 fences the leaving
         * members with consumerGroupFenceMembers) */
    } else if (removed) {
        for (int32_t i = 0; i < g->n_members;) {
            if (g->members[i]->leaving) {
                int r2 = cg_member_remove(c, g, i);
                rc = rc != 0 ? rc : r2;
                continue;
            }
            i++;
        }
        g->epoch++;
        int r2 = cg_group_records(c, g, NULL, true);
        rc = rc != 0 ? rc : r2;
    }
    out->n_members = n;
    out->members = c->leave_resps;
    return rc;
}

/* ---- migration (group.consumer.migration.policy) ---- */

const char *lm_cgroup_upgrade_refusal(const struct lm_cgroup_coord *c, int32_t n_members,
                                      struct kafka_str protocol_type)
{
    if ((c->cfg.migration & LM_CGROUP_MIGRATION_UPGRADE) == 0)
        return "online upgrade is disabled";
    if (!cg_str_is(protocol_type, CONSUMER_PROTOCOL_TYPE))
        return "the group does not use the consumer embedded protocol";
    if (n_members > c->cfg.max_size || n_members > LM_CGROUP_MEMBERS_MAX)
        return "the group size exceeds the consumer group maximum size";
    return NULL;
}

/* One classic member of an upgraded group (Kafka ConsumerGroup.fromClassicGroup): stable at
 * the generation, holding (and targeted at) its last assignment but partitions an earlier
 * member holds. */
static int upgrade_member(struct cgroup *g, int64_t now_ms, const struct lm_cgroup_image *img,
                          int32_t generation, const struct lm_group_export_member *e,
                          struct kafka_arena *arena)
{
    struct lm_cproto_sub sub;
    int32_t n_asg = 0;
    struct lm_cproto_tp *asg = NULL;
    struct kafka_bytes user_data = KAFKA_BYTES_NULL;
    int rc = lm_cproto_sub_decode(e->subscription, arena, &sub);
    if (rc == 0 && e->assignment.len > 0)
        rc = lm_cproto_assignment_decode(e->assignment, arena, &n_asg, &asg, &user_data);
    if (rc == 0 && (e->n_protocols <= 0 || sub.n_topics > LM_CGROUP_SUBSCRIBED_MAX ||
                    n_asg > LM_CGROUP_ASSIGNED_MAX || e->member_id.len > INT16_MAX))
        rc = LM_E_INVALID;
    if (rc != 0)
        return rc == LM_E_NOMEM ? rc : LM_E_INVALID;
    /* Kafka 4.1 refuses to drop a custom assignor's user data */
    if (user_data.len > 0)
        return LM_E_UNSUPPORTED;
    struct lm_cgr_protocol *protos = kafka_arena_alloc_array(
        arena, (size_t)e->n_protocols, sizeof(*protos), _Alignof(struct lm_cgr_protocol));
    if (protos == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < e->n_protocols; i++)
        protos[i] = (struct lm_cgr_protocol){e->protocols[i].name, e->protocols[i].metadata};
    struct cmember *m = cg_member_new();
    if (m == NULL)
        return LM_E_NOMEM;
    struct lm_cgroup_hb_req sr = {
        .n_topic_names = sub.n_topics, .topic_names = sub.topics, .topic_regex = KAFKA_STR_NULL};
    bool changed = false;
    int16_t err = KAFKA_NONE;
    if (cg_str_set(&m->id, e->member_id) != 0 || cg_str_set(&m->instance_id, e->instance_id) != 0 ||
        cg_str_set(&m->rack_id, sub.rack_id) != 0 || cg_str_set(&m->client_id, e->client_id) != 0 ||
        cg_str_set(&m->client_host, e->client_host) != 0 ||
        cg_member_set_protos(m, true, e->session_timeout_ms, e->n_protocols, protos) != 0 ||
        cg_update_subscription(m, &sr, &changed, &err) != 0 ||
        cg_tpset_reserve(&m->assigned, n_asg + 1) != 0) {
        cg_member_free(m);
        return LM_E_NOMEM;
    }
    for (int32_t i = 0; i < n_asg; i++) {
        struct lm_cgroup_tp tp = {.partition = asg[i].partition};
        if (cg_image_topic_id(img, asg[i].topic, &tp.topic_id) && !cg_held_by_other(g, m, &tp))
            m->assigned.v[m->assigned.n++] = tp;
    }
    cg_tpset_normalize(&m->assigned);
    if (cg_tpset_copy(&m->target, &m->assigned) != 0 || cg_member_insert(g, m) != 0) {
        cg_member_free(m);
        return LM_E_NOMEM;
    }
    m->epoch = m->prev_epoch = generation;
    m->state = M_STABLE;
    m->rebalance_timeout_ms = e->rebalance_timeout_ms;
    m->session_deadline_ms = now_ms + e->session_timeout_ms;
    m->target_dirty = true;
    cg_held_epochs_reset(m);
    return 0;
}

int lm_cgroup_upgrade(struct lm_cgroup_coord *c, int64_t now_ms, int32_t partition,
                      const struct lm_cgroup_image *img, const struct lm_group_export *ex)
{
    if (cg_group_find(c, ex->group_id, NULL) != NULL)
        return LM_E_EXISTS;
    if (ex->group_id.len > INT16_MAX || ex->n_members > LM_CGROUP_MEMBERS_MAX)
        return LM_E_INVALID;
    struct cgroup *g;
    LM_TRY(cg_group_create(c, ex->group_id, partition, &g));
    struct kafka_arena arena;
    kafka_arena_init(&arena, (size_t)64 << 20);
    int rc = 0;
    for (int32_t i = 0; i < ex->n_members && rc == 0; i++)
        rc = upgrade_member(g, now_ms, img, ex->generation, &ex->members[i], &arena);
    kafka_arena_deinit(&arena);
    if (rc != 0) {
        cg_group_drop(c, g);
        return rc;
    }
    LM_ASSERT(g->n_members == ex->n_members);
    g->epoch = g->target_epoch = ex->generation;
    g->meta_hash = cg_subscribed_hash(g, img);
    /* Kafka createConsumerGroupRecords: every member's metadata, the group epoch, the target
     * assignment and its epoch, every member's current assignment */
    size_t n = c->n_recs;
    if ((rc = cg_group_records_ex(c, g, NULL, true, true)) != 0) {
        cg_recs_truncate(c, n);
        cg_group_drop(c, g);
    }
    return rc;
}

bool lm_cgroup_downgrade_take(struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                              struct lm_group_export *out)
{
    if (c->dg_taken != NULL) {
        cg_group_free(c->dg_taken);
        c->dg_taken = NULL;
    }
    kafka_arena_reset(&c->dg_arena);
    if (c->n_dg == 0)
        return false;
    struct cgroup *g = c->dg[0];
    memmove(&c->dg[0], &c->dg[1], (c->n_dg - 1) * sizeof(*c->dg));
    c->n_dg--;
    c->dg_taken = g;
    LM_ASSERT(g->n_members > 0);
    struct kafka_arena *a = &c->dg_arena;
    struct lm_group_export_member *ms = kafka_arena_alloc_array(
        a, (size_t)g->n_members + 1, sizeof(*ms), _Alignof(struct lm_group_export_member));
    for (int32_t i = 0; ms != NULL && i < g->n_members; i++) {
        const struct cmember *m = g->members[i];
        struct lm_group_protocol *ps = kafka_arena_alloc_array(
            a, (size_t)m->n_protos + 1, sizeof(*ps), _Alignof(struct lm_group_protocol));
        struct lm_cproto_tp *tps = kafka_arena_alloc_array(a, (size_t)m->target.n + 1, sizeof(*tps),
                                                           _Alignof(struct lm_cproto_tp));
        if (ps == NULL || tps == NULL) {
            ms = NULL;
            break;
        }
        for (int32_t k = 0; k < m->n_protos; k++)
            ps[k] = (struct lm_group_protocol){m->protos[k].name, m->protos[k].metadata};
        /* its target assignment, in the version of its subscription (Kafka
         * ClassicGroup.fromConsumerGroup) */
        int32_t n = 0;
        for (int32_t k = 0; k < m->target.n; k++) {
            struct kafka_str name = image_topic_name(img, m->target.v[k].topic_id);
            if (name.len >= 0)
                tps[n++] = (struct lm_cproto_tp){name, m->target.v[k].partition};
        }
        size_t size = lm_cproto_assignment_size(n, tps);
        uint8_t *b = kafka_arena_alloc(a, size, 1);
        if (b == NULL) {
            ms = NULL;
            break;
        }
        struct kafka_writer w;
        kafka_writer_init(&w, b, size);
        int16_t version = m->n_protos > 0 ? lm_cproto_version(m->protos[0].metadata) : 0;
        int rc = lm_cproto_assignment_encode(&w, version, n, tps);
        LM_ASSERT(rc == 0 && w.pos == size);
        ms[i] = (struct lm_group_export_member){
            .member_id = m->id,
            .instance_id = m->instance_id,
            .client_id = m->client_id.len >= 0 ? m->client_id : (struct kafka_str){"", 0},
            .client_host = m->client_host.len >= 0 ? m->client_host : (struct kafka_str){"", 0},
            .session_timeout_ms = m->classic_session_ms,
            .rebalance_timeout_ms = m->rebalance_timeout_ms,
            .n_protocols = m->n_protos,
            .protocols = ps,
            .subscription = m->n_protos > 0 ? m->protos[0].metadata
                                            : (struct kafka_bytes){(const uint8_t *)"", 0},
            .assignment = {b, (int32_t)size},
        };
    }
    if (ms == NULL) {
        /* out of memory: the group is lost (its records are tombstoned; the members join
         * again as a new group) */
        *out = (struct lm_group_export){g->id, g->epoch, 0, NULL, g->dg_rebalance};
        return true;
    }
    *out = (struct lm_group_export){g->id, g->epoch, g->n_members, ms, g->dg_rebalance};
    return true;
}
