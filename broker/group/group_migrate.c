/* Classic groups to and from consumer groups (group.h, "migration"): what the classic
 * coordinator does for Kafka's GroupMetadataManager convertToConsumerGroup and
 * convertToClassicGroup. */
#include <string.h>

#include "broker/group/group_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"
#include "protocol/kafka_errors.h"

int lm_group_export(struct lm_group_coord *c, struct kafka_str group_id,
                    struct lm_group_export *out)
{
    struct group *g = gr_group_find(c, group_id);
    if (g == NULL || g->n_members == 0 || !gr_str_eq(g->protocol_type, gr_cstr("consumer")))
        return LM_E_NOT_FOUND;
    struct lm_group_export_member *ms =
        gr_oalloc(c, (size_t)g->n_members * sizeof(struct lm_group_export_member));
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct member *m = g->members[i];
        struct lm_group_protocol *ps =
            gr_oalloc(c, (size_t)(m->n_protocols + 1) * sizeof(struct lm_group_protocol));
        for (int32_t k = 0; k < m->n_protocols; k++)
            ps[k] = (struct lm_group_protocol){m->protocols[k].name, m->protocols[k].metadata};
        const struct mproto *p =
            g->protocol_name.len >= 0 ? gr_member_protocol(m, g->protocol_name) : NULL;
        if (p == NULL && m->n_protocols > 0)
            p = &m->protocols[0]; /* no protocol chosen yet: all carry the same subscription */
        ms[i] = (struct lm_group_export_member){
            .member_id = m->id,
            .instance_id = m->instance_id,
            .client_id = m->client_id,
            .client_host = m->client_host,
            .session_timeout_ms = m->session_ms,
            .rebalance_timeout_ms = m->rebalance_ms,
            .n_protocols = m->n_protocols,
            .protocols = ps,
            .subscription = p != NULL ? p->metadata : (struct kafka_bytes){(const uint8_t *)"", 0},
            .assignment = m->assignment.len > 0 ? m->assignment
                                                : (struct kafka_bytes){(const uint8_t *)"", 0},
        };
    }
    *out = (struct lm_group_export){g->id, g->generation, g->n_members, ms, false};
    return 0;
}

int lm_group_convert_out(struct lm_group_coord *c, int64_t now_ms, struct kafka_str group_id)
{
    struct group *g = gr_group_find(c, group_id);
    if (g == NULL)
        return LM_E_NOT_FOUND;
    /* Kafka completes every join and sync future with REBALANCE_IN_PROGRESS: the members join
     * the consumer group again */
    for (int32_t i = 0; i < g->n_members; i++) {
        gr_fail_parked_join(c, g->members[i], KAFKA_REBALANCE_IN_PROGRESS, g->members[i]->id);
        gr_fail_parked_sync(c, g->members[i], KAFKA_REBALANCE_IN_PROGRESS);
    }
    while (g->n_members > 0)
        gr_member_remove_raw(g, g->members[g->n_members - 1]);
    while (g->n_pending > 0)
        gr_pending_remove_at(g, g->n_pending - 1);
    g->join_deadline_ms = NO_DEADLINE;
    g->sync_deadline_ms = NO_DEADLINE;
    g->join_initial = false;
    gr_sfree(&g->protocol_type);
    gr_sfree(&g->protocol_name);
    gr_sfree(&g->leader);
    g->protocol_type = g->protocol_name = g->leader = KAFKA_STR_NULL;
    g->generation = 0;
    g->has_metadata = false;
    gr_compute_subscribed_topics(g);
    gr_set_state(g, LM_GROUP_EMPTY, now_ms);
    gr_emit_group_tombstone(c, g);
    return 0;
}

int lm_group_convert_in(struct lm_group_coord *c, int64_t now_ms, const struct lm_group_export *in)
{
    LM_ASSERT(in->n_members > 0);
    struct group *g = gr_group_find(c, in->group_id);
    if (g != NULL && g->n_members > 0)
        return LM_E_EXISTS;
    if (g == NULL)
        g = gr_group_create(c, in->group_id, now_ms);
    while (g->n_pending > 0)
        gr_pending_remove_at(g, g->n_pending - 1);
    g->generation = in->generation;
    gr_sset(&g->protocol_type, gr_cstr("consumer"));
    for (int32_t i = 0; i < in->n_members; i++) {
        const struct lm_group_export_member *e = &in->members[i];
        struct member *m = gr_xcalloc(1, sizeof(*m));
        m->id = gr_sdup(e->member_id);
        m->instance_id = gr_sdup(e->instance_id);
        m->client_id = gr_sdup(e->client_id.len < 0 ? gr_cstr("") : e->client_id);
        m->client_host = gr_sdup(e->client_host.len < 0 ? gr_cstr("") : e->client_host);
        m->protocol_type = gr_sdup(gr_cstr("consumer"));
        m->session_ms = e->session_timeout_ms;
        m->rebalance_ms = e->rebalance_timeout_ms;
        gr_member_set_protocols(m, e->n_protocols, e->protocols);
        m->assignment =
            gr_bdup(e->assignment.len >= 0 ? e->assignment : (struct kafka_bytes){NULL, 0});
        m->hb_deadline_ms = now_ms + m->session_ms;
        if (g->n_members == g->cap_members) {
            int grc = LM_GROW(g->members, g->cap_members, (size_t)g->n_members + 1, 4);
            LM_ASSERT(grc == 0);
        }
        g->members[g->n_members++] = m;
    }
    gr_sset(&g->leader, g->members[0]->id);
    struct kafka_str proto = gr_select_protocol(g);
    gr_sset(&g->protocol_name, proto);
    gr_compute_subscribed_topics(g);
    gr_set_state(g, LM_GROUP_STABLE, now_ms);
    g->has_metadata = true;
    gr_emit_group_record(c, g);
    /* a member leaving triggered the downgrade, or a static member replaced with another
     * subscription: the group rebalances (Kafka prepareRebalance) */
    if (in->rebalance)
        gr_prepare_rebalance(c, g, now_ms);
    return 0;
}
