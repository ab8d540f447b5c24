#include "consensus/raft_wire.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_endian.h"
#include "common/lm_err.h"

/* version, type, reject, force, group, from, to, term, index, log_term, commit, hint_index,
 * hint_term, ent_last, ent_last_term, n_entries */
#define HEAD_BYTES (1 + 1 + 1 + 1 + 8 + 4 + 4 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 8 + 4)
#define ENTRY_HEAD (8 + 8 + 8 + 1 + 4) /* first, last, term, type, len */
/* index, term, n_voters, voters, n_learners, learners, payload_len */
#define START_BYTES (8 + 8 + 4 + 4 * RAFT_NODES_MAX + 4 + 4 * RAFT_NODES_MAX + 4)

size_t raft_wire_size(const struct raft_msg *m)
{
    size_t n = HEAD_BYTES;
    if (m->type == RAFT_MSG_APP && m->entries != NULL)
        for (uint32_t i = 0; i < m->n_entries; i++)
            n += ENTRY_HEAD + m->entries[i].len;
    if (m->type == RAFT_MSG_LOG_START)
        n += START_BYTES + m->start.payload_len;
    return n;
}

struct wcur {
    uint8_t *p;
};
static void w8(struct wcur *c, uint8_t v)
{
    *c->p++ = v;
}
static void w32(struct wcur *c, uint32_t v)
{
    lm_put_be32(c->p, v);
    c->p += 4;
}
static void w64(struct wcur *c, uint64_t v)
{
    lm_put_be64(c->p, v);
    c->p += 8;
}

int raft_wire_encode(const struct raft_msg *m, uint8_t *buf, size_t cap)
{
    if (m->type < RAFT_MSG_APP || m->type >= RAFT_MSG_TYPE_MAX)
        return LM_E_INVALID;
    bool app = m->type == RAFT_MSG_APP;
    if (app && m->n_entries > 0 && m->entries == NULL)
        return LM_E_INVALID; /* a descriptor: resolve it first */
    if (app && m->n_entries > RAFT_WIRE_ENTRIES_MAX)
        return LM_E_TOO_LARGE;
    if (m->start.conf.n_voters > RAFT_NODES_MAX || m->start.conf.n_learners > RAFT_NODES_MAX)
        return LM_E_INVALID;
    size_t need = raft_wire_size(m);
    if (need > cap || need > RAFT_WIRE_BYTES_MAX)
        return LM_E_TOO_LARGE;
    struct wcur c = {buf};
    w8(&c, RAFT_WIRE_VERSION);
    w8(&c, m->type);
    w8(&c, m->reject ? 1 : 0);
    w8(&c, m->force ? 1 : 0);
    w64(&c, m->group);
    w32(&c, m->from);
    w32(&c, m->to);
    w64(&c, m->term);
    w64(&c, (uint64_t)m->index);
    w64(&c, m->log_term);
    w64(&c, (uint64_t)m->commit);
    w64(&c, (uint64_t)m->hint_index);
    w64(&c, m->hint_term);
    w64(&c, (uint64_t)m->ent_last);
    w64(&c, m->ent_last_term);
    w32(&c, app ? m->n_entries : 0);
    for (uint32_t i = 0; app && i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        w64(&c, (uint64_t)e->first_index);
        w64(&c, (uint64_t)e->last_index);
        w64(&c, e->term);
        w8(&c, e->type);
        w32(&c, e->len);
        if (e->len) {
            memcpy(c.p, e->data, e->len);
            c.p += e->len;
        }
    }
    if (m->type == RAFT_MSG_LOG_START) {
        const struct raft_log_start *s = &m->start;
        w64(&c, (uint64_t)s->index);
        w64(&c, s->term);
        w32(&c, s->conf.n_voters);
        for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
            w32(&c, i < s->conf.n_voters ? s->conf.voters[i] : 0);
        w32(&c, s->conf.n_learners);
        for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
            w32(&c, i < s->conf.n_learners ? s->conf.learners[i] : 0);
        w32(&c, s->payload_len);
        if (s->payload_len) {
            memcpy(c.p, s->payload, s->payload_len);
            c.p += s->payload_len;
        }
    }
    return (int)(c.p - buf);
}

struct rcur {
    const uint8_t *p;
    size_t left;
};
static bool r_has(const struct rcur *c, size_t n)
{
    return c->left >= n;
}
static uint8_t r8(struct rcur *c)
{
    c->left--;
    return *c->p++;
}
static uint32_t r32(struct rcur *c)
{
    uint32_t v = lm_get_be32(c->p);
    c->p += 4;
    c->left -= 4;
    return v;
}
static uint64_t r64(struct rcur *c)
{
    uint64_t v = lm_get_be64(c->p);
    c->p += 8;
    c->left -= 8;
    return v;
}

int raft_wire_decode(const uint8_t *buf, size_t len, struct raft_msg *out, size_t *used)
{
    memset(out, 0, sizeof(*out));
    *used = 0;
    struct rcur c = {buf, len > RAFT_WIRE_BYTES_MAX ? RAFT_WIRE_BYTES_MAX : len};
    if (!r_has(&c, HEAD_BYTES) || r8(&c) != RAFT_WIRE_VERSION)
        return LM_E_CORRUPT;
    struct raft_msg m;
    memset(&m, 0, sizeof(m));
    m.type = r8(&c);
    uint8_t reject = r8(&c), force = r8(&c);
    if (m.type < RAFT_MSG_APP || m.type >= RAFT_MSG_TYPE_MAX || reject > 1 || force > 1)
        return LM_E_CORRUPT;
    m.reject = reject == 1;
    m.force = force == 1;
    m.group = r64(&c);
    m.from = r32(&c);
    m.to = r32(&c);
    m.term = r64(&c);
    m.index = (int64_t)r64(&c);
    m.log_term = r64(&c);
    m.commit = (int64_t)r64(&c);
    m.hint_index = (int64_t)r64(&c);
    m.hint_term = r64(&c);
    m.ent_last = (int64_t)r64(&c);
    m.ent_last_term = r64(&c);
    uint32_t n = r32(&c);
    if (n > RAFT_WIRE_ENTRIES_MAX || (n > 0 && m.type != RAFT_MSG_APP) ||
        (uint64_t)n * ENTRY_HEAD > c.left)
        return LM_E_CORRUPT;
    int rc = LM_E_CORRUPT;
    if (n > 0) {
        m.entries = calloc(n, sizeof(*m.entries));
        if (m.entries == NULL)
            return LM_E_NOMEM;
    }
    for (uint32_t i = 0; i < n; i++) {
        struct raft_entry *e = &m.entries[i];
        if (!r_has(&c, ENTRY_HEAD))
            goto fail;
        e->first_index = (int64_t)r64(&c);
        e->last_index = (int64_t)r64(&c);
        e->term = r64(&c);
        e->type = r8(&c);
        e->len = r32(&c);
        m.n_entries = i + 1; /* owned from here: raft_msg_deinit frees it */
        if (e->first_index < 0 || e->last_index < e->first_index || e->type > RAFT_ENTRY_CONF ||
            (i > 0 && e->first_index != m.entries[i - 1].last_index + 1) || !r_has(&c, e->len))
            goto fail;
        if (e->len > 0) {
            e->data = malloc(e->len);
            if (e->data == NULL) {
                rc = LM_E_NOMEM;
                goto fail;
            }
            memcpy(e->data, c.p, e->len);
            c.p += e->len;
            c.left -= e->len;
        }
    }
    if (m.type == RAFT_MSG_APP) {
        /* the entries are (index, ent_last], the last of them at ent_last_term */
        if (n == 0 ? m.ent_last != m.index
                   : (m.entries[0].first_index != m.index + 1 ||
                      m.entries[n - 1].last_index != m.ent_last ||
                      m.entries[n - 1].term != m.ent_last_term))
            goto fail;
    }
    if (m.type == RAFT_MSG_LOG_START) {
        if (!r_has(&c, START_BYTES))
            goto fail;
        struct raft_log_start *s = &m.start;
        s->index = (int64_t)r64(&c);
        s->term = r64(&c);
        s->conf.n_voters = r32(&c);
        for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
            s->conf.voters[i] = r32(&c);
        s->conf.n_learners = r32(&c);
        for (uint32_t i = 0; i < RAFT_NODES_MAX; i++)
            s->conf.learners[i] = r32(&c);
        uint32_t pl = r32(&c);
        if (s->conf.n_voters > RAFT_NODES_MAX || s->conf.n_learners > RAFT_NODES_MAX ||
            !r_has(&c, pl))
            goto fail;
        if (pl > 0) {
            s->payload = malloc(pl);
            if (s->payload == NULL) {
                rc = LM_E_NOMEM;
                goto fail;
            }
            memcpy(s->payload, c.p, pl);
            c.p += pl;
            c.left -= pl;
        }
        s->payload_len = pl;
    }
    *out = m;
    *used = (size_t)(c.p - buf);
    return 0;
fail:
    raft_msg_deinit(&m);
    return rc;
}
