/* Group membership (see group.h): the rebalance, JoinGroup, SyncGroup, Heartbeat and
 * LeaveGroup, as Kafka's GroupCoordinator and GroupMetadata do them. */
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

/* ---- the rebalance ---- */

static void prepare_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms);

static bool all_joined(const struct group *g)
{
    /* Kafka GroupMetadata.hasAllMembersJoined */
    return gr_n_awaiting_join(g) == g->n_members && g->n_pending == 0;
}

/* Kafka GroupMetadata.maybeElectNewJoinedLeader: the leader must be a member that rejoined. */
bool gr_elect_joined_leader(struct group *g)
{
    if (g->leader.len < 0)
        return false;
    struct member *l = gr_member_find(g, g->leader);
    LM_ASSERT(l != NULL);
    if (l->awaiting_join)
        return true;
    for (int32_t i = 0; i < g->n_members; i++) {
        if (g->members[i]->awaiting_join) {
            gr_sset(&g->leader, g->members[i]->id);
            return true;
        }
    }
    return false;
}

/* Kafka GroupMetadata.initNextGeneration */
static void init_next_generation(struct group *g, int64_t now_ms)
{
    g->generation++;
    gr_sfree(&g->protocol_name);
    if (g->n_members > 0) {
        g->protocol_name = gr_sdup(gr_select_protocol(g));
        gr_set_state(g, LM_GROUP_COMPLETING_REBALANCE, now_ms);
    } else {
        gr_set_state(g, LM_GROUP_EMPTY, now_ms);
    }
    gr_compute_subscribed_topics(g);
    for (int32_t i = 0; i < g->n_members; i++)
        g->members[i]->pending_sync = false;
}

/* Kafka GroupCoordinator.onCompleteJoin: the join phase ends (everyone rejoined, or the
 * rebalance timeout hit): drop dynamic members that did not rejoin, pick a joined leader, start
 * the next generation and release every parked JoinGroup at once. */
static void complete_join(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    LM_ASSERT(g->state == LM_GROUP_PREPARING_REBALANCE);
    g->join_deadline_ms = NO_DEADLINE;
    g->join_initial = false;
    for (int32_t i = 0; i < g->n_members;) {
        struct member *m = g->members[i];
        if (!m->awaiting_join && m->instance_id.len < 0) {
            gr_fail_parked_sync(c, m, KAFKA_REBALANCE_IN_PROGRESS);
            gr_member_remove_raw(g, m);
        } else {
            i++;
        }
    }
    if (!gr_elect_joined_leader(g) && g->n_members > 0) {
        /* Only static members that did not rejoin are left: wait another rebalance timeout
         * for them (or for their session to expire), as Kafka does. */
        g->join_deadline_ms = now_ms + gr_rebalance_timeout_ms(g);
        return;
    }
    init_next_generation(g, now_ms);
    if (g->state == LM_GROUP_EMPTY) {
        gr_emit_group_record(c, g);
        return;
    }
    for (int32_t i = 0; i < g->n_members; i++) {
        struct member *m = g->members[i];
        if (m->awaiting_join) {
            m->awaiting_join = false;
            gr_join_success(c, g, m->join_token, m, g->leader, gr_is_leader(g, m->id));
        }
        m->hb_deadline_ms = now_ms + m->session_ms;
        m->is_new = false;
        m->pending_sync = true;
    }
    /* Kafka schedulePendingSync: members that do not sync within the rebalance timeout are
     * removed and the group rebalances again. */
    g->sync_deadline_ms = now_ms + gr_rebalance_timeout_ms(g);
}

static void maybe_complete_join(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    if (g->state == LM_GROUP_PREPARING_REBALANCE && !g->join_initial && all_joined(g))
        complete_join(c, g, now_ms);
}

/* Kafka resetAndPropagateAssignmentError: clear assignments, answer parked SyncGroups. */
static void reset_assignments(struct lm_group_coord *c, struct group *g, int16_t err)
{
    for (int32_t i = 0; i < g->n_members; i++) {
        struct member *m = g->members[i];
        gr_bfree(&m->assignment);
        gr_fail_parked_sync(c, m, err);
    }
}

/* Kafka GroupCoordinator.prepareRebalance */
static void prepare_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    LM_ASSERT(g->state != LM_GROUP_DEAD && g->state != LM_GROUP_PREPARING_REBALANCE);
    if (g->state == LM_GROUP_COMPLETING_REBALANCE)
        reset_assignments(c, g, KAFKA_REBALANCE_IN_PROGRESS);
    g->sync_deadline_ms = NO_DEADLINE;
    if (g->state == LM_GROUP_EMPTY) {
        /* KIP-134 InitialDelayedJoin: wait group.initial.rebalance.delay.ms, extended while
         * new members keep arriving, up to the rebalance timeout. */
        int32_t d = c->cfg.initial_rebalance_delay_ms;
        int32_t rt = gr_rebalance_timeout_ms(g);
        g->join_initial = true;
        g->new_member_added = false;
        g->initial_remaining_ms = rt - d > 0 ? rt - d : 0;
        g->join_deadline_ms = now_ms + d;
    } else {
        g->join_initial = false;
        g->join_deadline_ms = now_ms + gr_rebalance_timeout_ms(g);
    }
    gr_set_state(g, LM_GROUP_PREPARING_REBALANCE, now_ms);
    maybe_complete_join(c, g, now_ms);
}

void gr_prepare_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    prepare_rebalance(c, g, now_ms);
}

static void maybe_prepare_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    /* Kafka GroupMetadata.canRebalance: from Stable, CompletingRebalance or Empty. */
    if (g->state == LM_GROUP_STABLE || g->state == LM_GROUP_COMPLETING_REBALANCE ||
        g->state == LM_GROUP_EMPTY)
        prepare_rebalance(c, g, now_ms);
}

/* Kafka removeMemberAndUpdateGroup: a parked JoinGroup is answered UNKNOWN_MEMBER_ID so a
 * live client rejoins; a parked SyncGroup likewise (Kafka leaves it unanswered; we answer
 * every request). */
static void remove_member_and_update(struct lm_group_coord *c, struct group *g, struct member *m,
                                     int64_t now_ms)
{
    gr_fail_parked_join(c, m, KAFKA_UNKNOWN_MEMBER_ID, gr_cstr(""));
    gr_fail_parked_sync(c, m, KAFKA_UNKNOWN_MEMBER_ID);
    gr_member_remove_raw(g, m);
    switch (g->state) {
    case LM_GROUP_DEAD:
    case LM_GROUP_EMPTY:
        break;
    case LM_GROUP_STABLE:
    case LM_GROUP_COMPLETING_REBALANCE:
        maybe_prepare_rebalance(c, g, now_ms);
        break;
    case LM_GROUP_PREPARING_REBALANCE:
        maybe_complete_join(c, g, now_ms);
        break;
    }
}

/* Run the group's timers due at now_ms (Kafka's DelayedHeartbeat, DelayedJoin,
 * InitialDelayedJoin, pending-member and pending-sync expirations). */
void gr_group_timers(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    for (int pass = 0; pass < TIMER_PASSES_MAX; pass++) {
        bool fired = false;
        for (int32_t i = 0; i < g->n_pending;) {
            if (g->pending[i].deadline_ms <= now_ms) {
                /* removePendingMemberAndUpdateGroup */
                gr_pending_remove_at(g, i);
                fired = true;
                maybe_complete_join(c, g, now_ms);
            } else {
                i++;
            }
        }
        for (int32_t i = 0; i < g->n_members;) {
            struct member *m = g->members[i];
            if (m->hb_deadline_ms > now_ms) {
                i++;
                continue;
            }
            fired = true;
            /* MemberMetadata.hasSatisfiedHeartbeat: members parked in a join or sync count as
             * alive, except new members, which expire after NewMemberJoinTimeoutMs. */
            if (!m->is_new && (m->awaiting_join || m->awaiting_sync)) {
                m->hb_deadline_ms = NO_DEADLINE;
                i++;
                continue;
            }
            remove_member_and_update(c, g, m, now_ms);
            i = 0; /* the member list changed */
        }
        if (g->state == LM_GROUP_PREPARING_REBALANCE && g->join_deadline_ms <= now_ms) {
            fired = true;
            if (g->join_initial && g->new_member_added && g->initial_remaining_ms > 0) {
                int32_t d = c->cfg.initial_rebalance_delay_ms;
                int32_t step = d < g->initial_remaining_ms ? d : g->initial_remaining_ms;
                g->new_member_added = false;
                g->initial_remaining_ms =
                    g->initial_remaining_ms - d > 0 ? g->initial_remaining_ms - d : 0;
                g->join_deadline_ms = now_ms + step;
            } else {
                complete_join(c, g, now_ms);
            }
        }
        if ((g->state == LM_GROUP_COMPLETING_REBALANCE || g->state == LM_GROUP_STABLE) &&
            g->sync_deadline_ms <= now_ms) {
            fired = true;
            g->sync_deadline_ms = NO_DEADLINE;
            bool removed = false;
            for (int32_t i = 0; i < g->n_members;) {
                struct member *m = g->members[i];
                if (m->pending_sync) {
                    gr_fail_parked_join(c, m, KAFKA_UNKNOWN_MEMBER_ID, gr_cstr(""));
                    gr_fail_parked_sync(c, m, KAFKA_UNKNOWN_MEMBER_ID);
                    gr_member_remove_raw(g, m);
                    removed = true;
                } else {
                    i++;
                }
            }
            if (removed)
                prepare_rebalance(c, g, now_ms);
        }
        if (!fired)
            return;
    }
}

/* ---- JoinGroup ---- */

/* Kafka GroupCoordinator.acceptJoiningMember (group.max.size, KIP-389). */
static bool accept_joining(const struct lm_group_coord *c, const struct group *g,
                           struct kafka_str member_id)
{
    const struct member *m = gr_member_find(g, member_id);
    switch (g->state) {
    case LM_GROUP_EMPTY:
    case LM_GROUP_DEAD:
        return true;
    case LM_GROUP_PREPARING_REBALANCE:
        return (m && m->awaiting_join) || gr_n_awaiting_join(g) < c->cfg.max_size;
    case LM_GROUP_COMPLETING_REBALANCE:
    case LM_GROUP_STABLE:
        return m || g->n_members < c->cfg.max_size;
    }
    LM_UNREACHABLE();
    return false;
}

/* Park a member's JoinGroup; a JoinGroup already parked for it is superseded. Kafka just
 * overwrites the callback; we answer the old one REBALANCE_IN_PROGRESS so every request gets
 * exactly one response. */
static void park_join(struct lm_group_coord *c, struct member *m, uint64_t token)
{
    if (m->awaiting_join)
        gr_join_error(c, m->join_token, KAFKA_REBALANCE_IN_PROGRESS, m->id);
    m->awaiting_join = true;
    m->join_token = token;
}

/* Kafka GroupMetadata.updateMember */
static void update_member(struct lm_group_coord *c, struct member *m,
                          const struct lm_group_join_req *req, int32_t rebalance_ms, uint64_t token)
{
    gr_member_set_protocols(m, req->n_protocols, req->protocols);
    m->rebalance_ms = rebalance_ms;
    m->session_ms = req->session_timeout_ms;
    park_join(c, m, token);
}

/* Kafka GroupCoordinator.addMemberAndRebalance */
static void add_member_and_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms,
                                     uint64_t token, const struct lm_group_join_req *req,
                                     struct kafka_str member_id, int32_t rebalance_ms)
{
    struct member *m = gr_xcalloc(1, sizeof(*m));
    m->id = member_id; /* taken */
    m->instance_id = gr_sdup(req->group_instance_id);
    m->client_id = gr_sdup(req->client_id.len < 0 ? gr_cstr("") : req->client_id);
    m->client_host = gr_sdup(req->client_host.len < 0 ? gr_cstr("") : req->client_host);
    m->protocol_type = gr_sdup(req->protocol_type);
    m->assignment = KAFKA_BYTES_NULL;
    update_member(c, m, req, rebalance_ms, token);
    m->is_new = true;
    /* KIP-134: a member joining a new group during its initial delay extends the delay */
    if (g->state == LM_GROUP_PREPARING_REBALANCE && g->generation == 0)
        g->new_member_added = true;
    if (g->n_members == 0)
        gr_sset(&g->protocol_type, req->protocol_type);
    if (g->leader.len < 0)
        g->leader = gr_sdup(member_id);
    int32_t pi = gr_pending_find(g, member_id);
    if (pi >= 0)
        gr_pending_remove_at(g, pi);
    if (g->n_members == g->cap_members) {
        int grc = LM_GROW(g->members, g->cap_members, (size_t)g->n_members + 1, 4);
        LM_ASSERT(grc == 0);
    }
    g->members[g->n_members++] = m;
    /* New members cannot heartbeat while their JoinGroup is parked: they expire after
     * NewMemberJoinTimeoutMs if the rebalance never completes (Kafka KAFKA-9232). */
    m->hb_deadline_ms = now_ms + c->cfg.new_member_join_timeout_ms;
    maybe_prepare_rebalance(c, g, now_ms);
}

/* Kafka GroupCoordinator.updateStaticMemberAndRebalance (KIP-345): a static member rejoined
 * with an unknown member id. It takes over the old member's place under a new member id; the
 * old id is fenced. In a Stable group whose chosen protocol would not change there is no
 * rebalance: the member gets the current generation back and syncs to its old assignment. */
static void update_static_member(struct lm_group_coord *c, struct group *g, int64_t now_ms,
                                 uint64_t token, const struct lm_group_join_req *req,
                                 struct member *m, struct kafka_str new_id, int32_t rebalance_ms)
{
    struct kafka_str current_leader = gr_sdup(g->leader);
    /* fence whatever the old incarnation has parked */
    gr_fail_parked_join(c, m, KAFKA_FENCED_INSTANCE_ID, m->id);
    gr_fail_parked_sync(c, m, KAFKA_FENCED_INSTANCE_ID);
    if (gr_is_leader(g, m->id))
        gr_sset(&g->leader, new_id);
    gr_sfree(&m->id);
    m->id = new_id; /* taken */
    update_member(c, m, req, rebalance_ms, token);
    m->hb_deadline_ms = now_ms + m->session_ms;
    switch (g->state) {
    case LM_GROUP_STABLE: {
        struct kafka_str next = gr_select_protocol(g);
        if (gr_str_eq(next, g->protocol_name)) {
            gr_emit_group_record(c, g);
            m->awaiting_join = false;
            /* Kafka answers with the old leader id so the rejoined member, even if it was
             * the leader, does not compute an assignment a Stable group would not spread. */
            gr_join_success(c, g, token, m, current_leader, false);
        } else {
            prepare_rebalance(c, g, now_ms);
        }
        break;
    }
    case LM_GROUP_COMPLETING_REBALANCE:
        /* the leader may be assigning to the old member id: rebalance again */
        prepare_rebalance(c, g, now_ms);
        break;
    case LM_GROUP_PREPARING_REBALANCE:
        maybe_complete_join(c, g, now_ms);
        break;
    case LM_GROUP_EMPTY:
    case LM_GROUP_DEAD:
        LM_UNREACHABLE();
    }
    gr_sfree(&current_leader);
}

static void join_new_member(struct lm_group_coord *c, struct group *g, int64_t now_ms,
                            uint64_t token, const struct lm_group_join_req *req,
                            int32_t rebalance_ms)
{
    if (g->state == LM_GROUP_DEAD) {
        gr_join_error(c, token, KAFKA_COORDINATOR_NOT_AVAILABLE, gr_cstr(""));
        return;
    }
    if (!gr_supports_protocols(g, req->protocol_type, req->n_protocols, req->protocols)) {
        gr_join_error(c, token, KAFKA_INCONSISTENT_GROUP_PROTOCOL, gr_cstr(""));
        return;
    }
    bool is_static = req->group_instance_id.len >= 0;
    struct kafka_str id = gr_new_member_id(c, is_static ? req->group_instance_id : req->client_id);
    if (is_static) {
        struct member *old = gr_static_member_find(g, req->group_instance_id);
        if (old)
            update_static_member(c, g, now_ms, token, req, old, id, rebalance_ms);
        else
            add_member_and_rebalance(c, g, now_ms, token, req, id, rebalance_ms);
    } else if (req->require_known_member_id) {
        /* KIP-394: hand out the id, remember it as pending for one session timeout, and
         * wait for the rejoin that carries it. */
        if (g->n_pending == g->cap_pending) {
            int grc = LM_GROW(g->pending, g->cap_pending, (size_t)g->n_pending + 1, 4);
            LM_ASSERT(grc == 0);
        }
        g->pending[g->n_pending++] =
            (struct pending_member){.id = id, .deadline_ms = now_ms + req->session_timeout_ms};
        gr_join_error(c, token, KAFKA_MEMBER_ID_REQUIRED, id);
    } else {
        add_member_and_rebalance(c, g, now_ms, token, req, id, rebalance_ms);
    }
}

static void join_current_member(struct lm_group_coord *c, struct group *g, int64_t now_ms,
                                uint64_t token, const struct lm_group_join_req *req,
                                int32_t rebalance_ms)
{
    struct kafka_str mid = req->member_id;
    if (g->state == LM_GROUP_DEAD) {
        gr_join_error(c, token, KAFKA_COORDINATOR_NOT_AVAILABLE, mid);
        return;
    }
    if (!gr_supports_protocols(g, req->protocol_type, req->n_protocols, req->protocols)) {
        gr_join_error(c, token, KAFKA_INCONSISTENT_GROUP_PROTOCOL, mid);
        return;
    }
    int32_t pi = gr_pending_find(g, mid);
    if (pi >= 0 && req->group_instance_id.len < 0) {
        /* the KIP-394 second join: the member id we handed out comes back */
        add_member_and_rebalance(c, g, now_ms, token, req, gr_sdup(mid), rebalance_ms);
        return;
    }
    bool instance_unknown =
        req->group_instance_id.len >= 0 && !gr_static_member_find(g, req->group_instance_id);
    if (gr_static_member_fenced(g, req->group_instance_id, mid)) {
        gr_join_error(c, token, KAFKA_FENCED_INSTANCE_ID, mid);
        return;
    }
    struct member *m = gr_member_find(g, mid);
    if (!m || instance_unknown) {
        gr_join_error(c, token, KAFKA_UNKNOWN_MEMBER_ID, mid);
        return;
    }
    switch (g->state) {
    case LM_GROUP_PREPARING_REBALANCE:
        update_member(c, m, req, rebalance_ms, token);
        maybe_complete_join(c, g, now_ms);
        break;
    case LM_GROUP_COMPLETING_REBALANCE:
        if (gr_member_matches(m, req->n_protocols, req->protocols)) {
            /* it lost the JoinGroup response: answer again for the current generation */
            gr_join_success(c, g, token, m, g->leader, gr_is_leader(g, m->id));
        } else {
            update_member(c, m, req, rebalance_ms, token);
            prepare_rebalance(c, g, now_ms);
        }
        break;
    case LM_GROUP_STABLE:
        if (gr_is_leader(g, m->id) || !gr_member_matches(m, req->n_protocols, req->protocols)) {
            /* the leader rejoining forces a rebalance (e.g. topic metadata changed) */
            update_member(c, m, req, rebalance_ms, token);
            prepare_rebalance(c, g, now_ms);
        } else {
            gr_join_success(c, g, token, m, g->leader, false);
        }
        break;
    case LM_GROUP_EMPTY:
    case LM_GROUP_DEAD:
        gr_join_error(c, token, KAFKA_UNKNOWN_MEMBER_ID, mid);
        break;
    }
}

int lm_group_join(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_join_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_protocols == 0 || req->protocols != NULL);
    int16_t err = gr_group_status(c, req->group_id, true);
    if (err != KAFKA_NONE) {
        gr_join_error(c, token, err, req->member_id);
        return 0;
    }
    if (req->session_timeout_ms < c->cfg.session_timeout_min_ms ||
        req->session_timeout_ms > c->cfg.session_timeout_max_ms) {
        gr_join_error(c, token, KAFKA_INVALID_SESSION_TIMEOUT, req->member_id);
        return 0;
    }
    int32_t rebalance_ms =
        req->rebalance_timeout_ms < 0 ? req->session_timeout_ms : req->rebalance_timeout_ms;
    bool unknown = req->member_id.len <= 0;
    struct group *g = gr_group_find(c, req->group_id);
    if (!g) {
        if (!unknown) {
            gr_join_error(c, token, KAFKA_UNKNOWN_MEMBER_ID, req->member_id);
            return 0;
        }
        g = gr_group_create(c, req->group_id, now_ms);
    }
    if (!accept_joining(c, g, req->member_id)) {
        struct member *m = gr_member_find(g, req->member_id);
        if (m)
            remove_member_and_update(c, g, m, now_ms);
        gr_join_error(c, token, KAFKA_GROUP_MAX_SIZE_REACHED, gr_cstr(""));
    } else if (unknown) {
        join_new_member(c, g, now_ms, token, req, rebalance_ms);
    } else {
        join_current_member(c, g, now_ms, token, req, rebalance_ms);
    }
    /* Kafka handleJoinGroup ends with "attempt to complete JoinGroup" */
    maybe_complete_join(c, g, now_ms);
    gr_group_timers(c, g, now_ms);
    return 0;
}

/* ---- SyncGroup ---- */

int lm_group_sync(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_sync_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_assignments == 0 || req->assignments != NULL);
    int16_t err = gr_group_status(c, req->group_id, true);
    struct group *g = err == KAFKA_NONE ? gr_group_find(c, req->group_id) : NULL;
    if (err == KAFKA_NONE && !g)
        err = KAFKA_UNKNOWN_MEMBER_ID;
    struct member *m = NULL;
    if (err == KAFKA_NONE) {
        m = gr_member_find(g, req->member_id);
        if (g->state == LM_GROUP_DEAD)
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
        else if (gr_static_member_fenced(g, req->group_instance_id, req->member_id))
            err = KAFKA_FENCED_INSTANCE_ID;
        else if (!m)
            err = KAFKA_UNKNOWN_MEMBER_ID;
        else if (req->generation_id != g->generation)
            err = KAFKA_ILLEGAL_GENERATION;
        else if ((req->protocol_type.len >= 0 &&
                  !gr_str_eq(req->protocol_type, g->protocol_type)) ||
                 (req->protocol_name.len >= 0 && !gr_str_eq(req->protocol_name, g->protocol_name)))
            err = KAFKA_INCONSISTENT_GROUP_PROTOCOL; /* KIP-559 */
        else if (g->state == LM_GROUP_EMPTY)
            err = KAFKA_UNKNOWN_MEMBER_ID;
        else if (g->state == LM_GROUP_PREPARING_REBALANCE)
            err = KAFKA_REBALANCE_IN_PROGRESS;
    }
    if (err != KAFKA_NONE) {
        gr_sync_reply(c, NULL, token, err, KAFKA_BYTES_NULL);
        if (g)
            gr_group_timers(c, g, now_ms);
        return 0;
    }
    m->pending_sync = false;
    if (g->state == LM_GROUP_STABLE) {
        gr_sync_reply(c, g, token, KAFKA_NONE, m->assignment);
        m->hb_deadline_ms = now_ms + m->session_ms;
        gr_group_timers(c, g, now_ms);
        return 0;
    }
    LM_ASSERT(g->state == LM_GROUP_COMPLETING_REBALANCE);
    if (m->awaiting_sync) /* a retried SyncGroup supersedes the parked one */
        gr_sync_reply(c, NULL, m->sync_token, KAFKA_REBALANCE_IN_PROGRESS, KAFKA_BYTES_NULL);
    m->awaiting_sync = true;
    m->sync_token = token;
    if (gr_is_leader(g, m->id)) {
        /* The leader's assignment: missing members get an empty one; ids not in the group
         * are ignored. Persist (group record) and propagate: the shell appends the record
         * before sending these responses. */
        for (int32_t i = 0; i < g->n_members; i++) {
            struct member *o = g->members[i];
            gr_bfree(&o->assignment);
            o->assignment = gr_bdup((struct kafka_bytes){NULL, 0});
            for (int32_t k = 0; k < req->n_assignments; k++) {
                if (gr_str_eq(req->assignments[k].member_id, o->id)) {
                    gr_bfree(&o->assignment);
                    struct kafka_bytes a = req->assignments[k].assignment;
                    o->assignment = gr_bdup(a.len < 0 ? (struct kafka_bytes){NULL, 0} : a);
                    break;
                }
            }
        }
        gr_set_state(g, LM_GROUP_STABLE, now_ms);
        gr_emit_group_record(c, g);
        for (int32_t i = 0; i < g->n_members; i++) {
            struct member *o = g->members[i];
            if (o->awaiting_sync) {
                o->awaiting_sync = false;
                gr_sync_reply(c, g, o->sync_token, KAFKA_NONE, o->assignment);
                o->hb_deadline_ms = now_ms + o->session_ms;
            }
        }
    }
    gr_group_timers(c, g, now_ms);
    return 0;
}

/* ---- Heartbeat ---- */

int lm_group_heartbeat(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                       const struct lm_group_heartbeat_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    int16_t err = gr_group_status(c, req->group_id, true);
    struct group *g = err == KAFKA_NONE ? gr_group_find(c, req->group_id) : NULL;
    if (err == KAFKA_NONE && !g)
        err = KAFKA_UNKNOWN_MEMBER_ID;
    if (err == KAFKA_NONE) {
        /* run due timers first so an expired member cannot revive itself */
        gr_group_timers(c, g, now_ms);
        struct member *m = gr_member_find(g, req->member_id);
        if (g->state == LM_GROUP_DEAD)
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
        else if (gr_static_member_fenced(g, req->group_instance_id, req->member_id))
            err = KAFKA_FENCED_INSTANCE_ID;
        else if (!m)
            err = KAFKA_UNKNOWN_MEMBER_ID;
        else if (req->generation_id != g->generation)
            err = KAFKA_ILLEGAL_GENERATION;
        else if (g->state == LM_GROUP_EMPTY)
            err = KAFKA_UNKNOWN_MEMBER_ID;
        else {
            m->hb_deadline_ms = now_ms + m->session_ms;
            if (g->state == LM_GROUP_PREPARING_REBALANCE)
                err = KAFKA_REBALANCE_IN_PROGRESS;
        }
    }
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_HEARTBEAT);
    r->u.heartbeat.error_code = err;
    return 0;
}

/* ---- LeaveGroup ---- */

int lm_group_leave(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_group_leave_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_members >= 0 && (req->n_members == 0 || req->members != NULL));
    int16_t err = gr_group_status(c, req->group_id, true);
    struct group *g = err == KAFKA_NONE ? gr_group_find(c, req->group_id) : NULL;
    if (g && g->state == LM_GROUP_DEAD)
        err = KAFKA_COORDINATOR_NOT_AVAILABLE;
    /* Build the response first (memory from the output arena), then apply the removals. */
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_LEAVE);
    size_t ri = c->n_resps - 1;
    r->u.leave.error_code = err;
    if (err != KAFKA_NONE)
        return 0;
    struct lm_group_leave_member_resp *mr = gr_oalloc(c, (size_t)req->n_members * sizeof(*mr));
    for (int32_t i = 0; i < req->n_members; i++) {
        const struct lm_group_leave_member *lm = &req->members[i];
        mr[i].member_id = gr_ostr(c, lm->member_id.len < 0 ? gr_cstr("") : lm->member_id);
        mr[i].group_instance_id = gr_ostr(c, lm->group_instance_id);
        int16_t e = KAFKA_NONE;
        if (!g) {
            e = KAFKA_UNKNOWN_MEMBER_ID;
        } else if (lm->member_id.len <= 0) {
            /* admin removal by group.instance.id alone (KIP-345) */
            struct member *m = gr_static_member_find(g, lm->group_instance_id);
            if (m)
                remove_member_and_update(c, g, m, now_ms);
            else
                e = KAFKA_UNKNOWN_MEMBER_ID;
        } else if (gr_pending_find(g, lm->member_id) >= 0) {
            gr_pending_remove_at(g, gr_pending_find(g, lm->member_id));
            maybe_complete_join(c, g, now_ms);
        } else if (gr_static_member_fenced(g, lm->group_instance_id, lm->member_id)) {
            e = KAFKA_FENCED_INSTANCE_ID;
        } else {
            struct member *m = gr_member_find(g, lm->member_id);
            if (m)
                remove_member_and_update(c, g, m, now_ms);
            else
                e = KAFKA_UNKNOWN_MEMBER_ID;
        }
        mr[i].error_code = e;
    }
    r = &c->resps[ri]; /* removals may have grown the array */
    r->u.leave.members = mr;
    r->u.leave.n_members = req->n_members;
    if (g)
        gr_group_timers(c, g, now_ms);
    return 0;
}
