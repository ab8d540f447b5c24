/* Multi-Raft heartbeat coalescing (see raft_multi.h). */
#include "consensus/raft_multi.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"

void raft_multi_init(struct raft_multi *m, uint32_t node_id)
{
    memset(m, 0, sizeof(*m));
    m->node_id = node_id;
}

static void env_clear(struct raft_envelope *e)
{
    for (uint32_t i = 0; i < e->n_msgs; i++)
        raft_msg_deinit(&e->msgs[i]);
    e->n_msgs = 0;
    e->n_hb = 0;
    e->n_hb_resp = 0;
}

void raft_multi_deinit(struct raft_multi *m)
{
    for (uint32_t i = 0; i < RAFT_MULTI_PEERS_MAX; i++) {
        env_clear(&m->env[i]);
        free(m->env[i].msgs);
        free(m->env[i].hb);
        free(m->env[i].hb_resp);
    }
    free(m->groups);
    memset(m, 0, sizeof(*m));
}

int raft_multi_add(struct raft_multi *m, uint64_t group, struct raft *r,
                   const struct raft_log_ops *log)
{
    if (raft_multi_find(m, group))
        return LM_E_EXISTS;
    if (LM_GROW(m->groups, m->cap_groups, m->n_groups + 1, 16) != 0)
        return LM_E_NOMEM;
    m->groups[m->n_groups].group = group;
    m->groups[m->n_groups].r = r;
    m->groups[m->n_groups].log = *log;
    m->n_groups++;
    return 0;
}

static const struct raft_multi_group *group_find(const struct raft_multi *m, uint64_t group)
{
    for (size_t i = 0; i < m->n_groups; i++)
        if (m->groups[i].group == group)
            return &m->groups[i];
    return NULL;
}

struct raft *raft_multi_find(const struct raft_multi *m, uint64_t group)
{
    const struct raft_multi_group *g = group_find(m, group);
    return g ? g->r : NULL;
}

int raft_multi_tick(struct raft_multi *m)
{
    int first = 0;
    for (size_t i = 0; i < m->n_groups; i++) {
        int rc = raft_tick(m->groups[i].r);
        if (rc && !first)
            first = rc;
    }
    return first;
}

static struct raft_envelope *env_for(struct raft_multi *m, uint32_t to)
{
    for (uint32_t i = 0; i < m->n_env; i++)
        if (m->env[i].to == to)
            return &m->env[i];
    if (m->n_env == RAFT_MULTI_PEERS_MAX)
        return NULL;
    struct raft_envelope *e = &m->env[m->n_env++];
    e->from = m->node_id;
    e->to = to;
    LM_ASSERT(e->n_msgs == 0 && e->n_hb == 0 && e->n_hb_resp == 0);
    return e;
}

static int grow(void **p, uint32_t *cap, uint32_t need, size_t size)
{
    if (need <= *cap)
        return 0;
    uint32_t c = *cap ? *cap * 2 : 16;
    while (c < need)
        c *= 2;
    void *n = realloc(*p, (size_t)c * size);
    if (!n)
        return LM_E_NOMEM;
    *p = n;
    *cap = c;
    return 0;
}

/* Envelopes handed out by the last flush are reset before anything new is queued. */
static void reset_if_flushed(struct raft_multi *m)
{
    if (!m->flushed)
        return;
    for (uint32_t i = 0; i < m->n_env; i++)
        env_clear(&m->env[i]);
    m->n_env = 0;
    m->flushed = false;
}

int raft_multi_queue(struct raft_multi *m, const struct raft_msg *msgs, size_t n)
{
    reset_if_flushed(m);
    for (size_t i = 0; i < n; i++) {
        const struct raft_msg *s = &msgs[i];
        LM_ASSERT(s->from == m->node_id);
        struct raft_envelope *e = env_for(m, s->to);
        if (!e)
            return LM_E_FULL;
        int rc;
        /* a quiescing heartbeat and the answers to one carry flags a triple has no room for */
        if ((s->type == RAFT_MSG_HEARTBEAT || s->type == RAFT_MSG_HEARTBEAT_RESP) && !s->quiesce &&
            !s->reject) {
            bool req = s->type == RAFT_MSG_HEARTBEAT;
            struct raft_multi_hb **arr = req ? &e->hb : &e->hb_resp;
            uint32_t *cnt = req ? &e->n_hb : &e->n_hb_resp;
            uint32_t *cap = req ? &e->cap_hb : &e->cap_hb_resp;
            rc = grow((void **)arr, cap, *cnt + 1, sizeof(**arr));
            if (rc)
                return rc;
            (*arr)[(*cnt)++] = (struct raft_multi_hb){s->group, s->term, s->commit};
            m->hb_coalesced++;
            continue;
        }
        rc = grow((void **)&e->msgs, &e->cap_msgs, e->n_msgs + 1, sizeof(*e->msgs));
        if (rc)
            return rc;
        const struct raft_multi_group *g = group_find(m, s->group);
        if (!g)
            return LM_E_NOT_FOUND;
        rc = raft_msg_resolve(&e->msgs[e->n_msgs], s, &g->log);
        if (rc && s->type == RAFT_MSG_APP && rc != LM_E_NOMEM) {
            /* The range moved under the descriptor: not sent; the group sends anew. */
            rc = raft_append_unsent(g->r, s, rc);
            if (rc)
                return rc;
            continue;
        }
        if (rc)
            return rc;
        e->n_msgs++;
    }
    return 0;
}

void raft_multi_flush(struct raft_multi *m, const struct raft_envelope **out, size_t *n)
{
    reset_if_flushed(m);
    *out = m->n_env ? &m->env[0] : NULL;
    *n = m->n_env;
    m->flushed = true;
}

int raft_multi_deliver(struct raft_multi *m, const struct raft_envelope *env)
{
    int first = 0;
    for (uint32_t i = 0; i < env->n_hb + env->n_hb_resp; i++) {
        bool req = i < env->n_hb;
        const struct raft_multi_hb *h = req ? &env->hb[i] : &env->hb_resp[i - env->n_hb];
        struct raft *r = raft_multi_find(m, h->group);
        if (!r)
            continue;
        struct raft_msg msg = {.type = req ? RAFT_MSG_HEARTBEAT : RAFT_MSG_HEARTBEAT_RESP,
                               .group = h->group,
                               .from = env->from,
                               .to = env->to,
                               .term = h->term,
                               .commit = h->commit};
        int rc = raft_step(r, &msg);
        if (rc && !first)
            first = rc;
    }
    for (uint32_t i = 0; i < env->n_msgs; i++) {
        struct raft *r = raft_multi_find(m, env->msgs[i].group);
        if (!r)
            continue;
        int rc = raft_step(r, &env->msgs[i]);
        if (rc && !first)
            first = rc;
    }
    return first;
}

size_t raft_envelope_count(const struct raft_envelope *env)
{
    return (size_t)env->n_msgs + env->n_hb + env->n_hb_resp;
}
