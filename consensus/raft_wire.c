/* Raft message wire codec: see raft_wire.h for the format. One validity check (msg_valid)
 * serves both directions: the encoder refuses what it fails (LM_E_INVALID) and the decoder
 * refuses bytes whose message fails it (LM_E_CORRUPT), so every encoding decodes and every
 * decoded message encodes back to its bytes. Sizes are checked against the bytes left before
 * anything is allocated (DESIGN.md §7: frames are length-checked before allocation). */
#include "consensus/raft_wire.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"

#define LOG_START_FIXED_SIZE 28 /* index, term, n_voters, n_learners, payload_len */

/* Semantic checks shared by encode and decode (structure and sizes are checked apart);
 * need_data: entries with bytes must carry them (not so for raft_wire_encode_head). */
static bool msg_check(const struct raft_msg *m, bool need_data)
{
    if (m->type == 0 || m->type >= RAFT_MSG_TYPE_MAX || m->n_entries > RAFT_WIRE_ENTRIES_MAX)
        return false;
    if (m->type != RAFT_MSG_APP && m->n_entries != 0)
        return false; /* raft only ever puts entries in an APP */
    if (m->n_entries > 0) {
        if (!m->entries)
            return false; /* a descriptor: the shell resolves it before sending (raft.h) */
        int64_t prev = m->index;
        for (uint32_t i = 0; i < m->n_entries; i++) {
            const struct raft_entry *e = &m->entries[i];
            /* prev == INT64_MAX: nothing can follow it (and prev + 1 would overflow). */
            if (prev == INT64_MAX || e->first_index != prev + 1 || e->first_index > e->last_index)
                return false;
            if (e->type > RAFT_ENTRY_CONF || (e->len > 0 && !e->data && need_data))
                return false;
            prev = e->last_index;
        }
        const struct raft_entry *last = &m->entries[m->n_entries - 1];
        if (last->last_index != m->ent_last || last->term != m->ent_last_term)
            return false;
    }
    if (m->type == RAFT_MSG_LOG_START) {
        const struct raft_log_start *s = &m->start;
        if (s->conf.n_voters > RAFT_NODES_MAX || s->conf.n_learners > RAFT_NODES_MAX)
            return false;
        if (s->payload_len > 0 && !s->payload)
            return false;
    }
    return true;
}

static bool msg_valid(const struct raft_msg *m)
{
    return msg_check(m, true);
}

static bool msg_shape_valid(const struct raft_msg *m)
{
    return msg_check(m, false);
}

/* a + b, or SIZE_MAX when that overflows (raft_wire_size then exceeds every limit). */
static size_t size_add(size_t a, size_t b)
{
    return a > SIZE_MAX - b ? SIZE_MAX : a + b;
}

size_t raft_wire_size(const struct raft_msg *m)
{
    size_t n = RAFT_WIRE_HEADER_SIZE;
    for (uint32_t i = 0; m->entries && i < m->n_entries; i++)
        n = size_add(n, RAFT_WIRE_ENTRY_SIZE + (size_t)m->entries[i].len);
    if (m->type == RAFT_MSG_LOG_START) {
        const struct raft_log_start *s = &m->start;
        n = size_add(n, LOG_START_FIXED_SIZE + (size_t)s->payload_len +
                            4 * ((size_t)s->conf.n_voters + s->conf.n_learners));
    }
    return n;
}

/* Writer over a buffer whose size was checked beforehand: overrunning it is a bug. */
struct wr {
    uint8_t *p;
    size_t off, cap;
};

static void wr_u8(struct wr *w, uint8_t v)
{
    LM_ASSERT(w->cap - w->off >= 1);
    w->p[w->off++] = v;
}

static void wr_u32(struct wr *w, uint32_t v)
{
    LM_ASSERT(w->cap - w->off >= 4);
    lm_put_be32(w->p + w->off, v);
    w->off += 4;
}

static void wr_u64(struct wr *w, uint64_t v)
{
    LM_ASSERT(w->cap - w->off >= 8);
    lm_put_be64(w->p + w->off, v);
    w->off += 8;
}

static void wr_bytes(struct wr *w, const uint8_t *src, size_t n)
{
    LM_ASSERT(w->cap - w->off >= n);
    if (n)
        memcpy(w->p + w->off, src, n);
    w->off += n;
}

/* The fixed header (RAFT_WIRE_HEADER_SIZE bytes). */
static void write_header(struct wr *w, const struct raft_msg *m)
{
    wr_u8(w, RAFT_WIRE_VERSION);
    wr_u8(w, m->type);
    wr_u8(w, m->reject ? 1 : 0);
    /* flags: 1 force, 2 quiesce */
    wr_u8(w, (uint8_t)((m->force ? 1 : 0) | (m->quiesce ? 2 : 0)));
    wr_u64(w, m->group);
    wr_u32(w, m->from);
    wr_u32(w, m->to);
    wr_u64(w, m->term);
    wr_u64(w, (uint64_t)m->index);
    wr_u64(w, m->log_term);
    wr_u64(w, (uint64_t)m->commit);
    wr_u64(w, (uint64_t)m->hint_index);
    wr_u64(w, m->hint_term);
    wr_u64(w, (uint64_t)m->ent_last);
    wr_u64(w, m->ent_last_term);
    wr_u32(w, m->n_entries);
    LM_ASSERT(w->off == RAFT_WIRE_HEADER_SIZE);
}

/* The entry table: each entry's fixed part, in order (their bytes follow the table). */
static void write_table(struct wr *w, const struct raft_msg *m)
{
    for (uint32_t i = 0; i < m->n_entries; i++) {
        const struct raft_entry *e = &m->entries[i];
        wr_u64(w, (uint64_t)e->first_index);
        wr_u64(w, (uint64_t)e->last_index);
        wr_u64(w, e->term);
        wr_u8(w, e->type);
        wr_u32(w, e->len);
    }
}

int raft_wire_encode(const struct raft_msg *m, uint8_t *buf, size_t cap)
{
    if (m->n_entries > RAFT_WIRE_ENTRIES_MAX)
        return LM_E_TOO_LARGE;
    if (!msg_valid(m))
        return LM_E_INVALID;
    size_t size = raft_wire_size(m);
    if (size > RAFT_WIRE_BYTES_MAX || size > cap)
        return LM_E_TOO_LARGE;
    struct wr w = {.p = buf, .off = 0, .cap = size};
    write_header(&w, m);
    write_table(&w, m);
    for (uint32_t i = 0; i < m->n_entries; i++)
        wr_bytes(&w, m->entries[i].data, m->entries[i].len);
    if (m->type == RAFT_MSG_LOG_START) {
        const struct raft_log_start *s = &m->start;
        wr_u64(&w, (uint64_t)s->index);
        wr_u64(&w, s->term);
        int n = raft_conf_encode(&s->conf, w.p + w.off, w.cap - w.off);
        LM_ASSERT(n == (int)(8 + 4 * (s->conf.n_voters + s->conf.n_learners)));
        w.off += (size_t)n;
        wr_u32(&w, s->payload_len);
        wr_bytes(&w, s->payload, s->payload_len);
    }
    LM_ASSERT(w.off == size);
    return (int)size;
}

size_t raft_wire_head_size(const struct raft_msg *m)
{
    return RAFT_WIRE_HEADER_SIZE + (size_t)m->n_entries * RAFT_WIRE_ENTRY_SIZE;
}

int raft_wire_encode_head(const struct raft_msg *m, uint8_t *buf, size_t cap)
{
    if (m->type != RAFT_MSG_APP || m->n_entries == 0 || !m->entries)
        return LM_E_INVALID;
    if (m->n_entries > RAFT_WIRE_ENTRIES_MAX)
        return LM_E_TOO_LARGE;
    if (!msg_shape_valid(m))
        return LM_E_INVALID;
    size_t size = raft_wire_size(m), head = raft_wire_head_size(m);
    if (size > RAFT_WIRE_BYTES_MAX || head > cap)
        return LM_E_TOO_LARGE;
    struct wr w = {.p = buf, .off = 0, .cap = head};
    write_header(&w, m);
    write_table(&w, m);
    LM_ASSERT(w.off == head);
    return (int)head;
}

/* Reader with a sticky failure: a read past the end yields zeros and sets bad, so a run of
 * fields is read first and bad checked once before any value is trusted. */
struct rd {
    const uint8_t *p;
    size_t off, len;
    bool bad;
};

static size_t rd_left(const struct rd *r)
{
    return r->len - r->off;
}

static const uint8_t *rd_take(struct rd *r, size_t n)
{
    if (r->bad || rd_left(r) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *p = r->p + r->off;
    r->off += n;
    return p;
}

static uint8_t rd_u8(struct rd *r)
{
    const uint8_t *p = rd_take(r, 1);
    return p ? p[0] : 0;
}

static uint32_t rd_u32(struct rd *r)
{
    const uint8_t *p = rd_take(r, 4);
    return p ? lm_get_be32(p) : 0;
}

static uint64_t rd_u64(struct rd *r)
{
    const uint8_t *p = rd_take(r, 8);
    return p ? lm_get_be64(p) : 0;
}

/* rd_copy allocates a copy of the next n bytes (NULL for n == 0, as raft_msg_copy does).
 * Returns 0, LM_E_CORRUPT when fewer than n bytes are left, or LM_E_NOMEM. */
static int rd_copy(struct rd *r, size_t n, uint8_t **out)
{
    *out = NULL;
    const uint8_t *src = rd_take(r, n);
    if (!src)
        return LM_E_CORRUPT;
    if (n == 0)
        return 0;
    *out = malloc(n);
    if (!*out)
        return LM_E_NOMEM;
    memcpy(*out, src, n);
    return 0;
}

/* Flag bytes must be exactly 0 or 1 so that re-encoding gives the same bytes. */
static bool rd_flag(struct rd *r, bool *out)
{
    uint8_t v = rd_u8(r);
    *out = v == 1;
    return v <= 1;
}

static int decode_entries(struct rd *r, struct raft_msg *out, uint32_t n)
{
    /* Every entry takes at least its fixed part: bounds the array by the bytes left. */
    if (n > RAFT_WIRE_ENTRIES_MAX || (size_t)n * RAFT_WIRE_ENTRY_SIZE > rd_left(r))
        return LM_E_CORRUPT;
    out->entries = calloc(n, sizeof(*out->entries));
    if (!out->entries)
        return LM_E_NOMEM;
    /* The table first: every length is checked against the bytes left behind it before any
     * entry's bytes are allocated. */
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < n; i++) {
        struct raft_entry *e = &out->entries[i];
        e->first_index = (int64_t)rd_u64(r);
        e->last_index = (int64_t)rd_u64(r);
        e->term = rd_u64(r);
        e->type = rd_u8(r);
        e->len = rd_u32(r);
        bytes += e->len;
    }
    if (r->bad || bytes > rd_left(r))
        return LM_E_CORRUPT; /* no entry holds bytes yet: n_entries stays 0 */
    /* out->n_entries counts the entries whose bytes are taken, so raft_msg_deinit frees
     * exactly those; the rest hold no pointer. */
    for (uint32_t i = 0; i < n; i++, out->n_entries++)
        LM_TRY(rd_copy(r, out->entries[i].len, &out->entries[i].data));
    LM_ASSERT(out->n_entries == n);
    return 0;
}

static int decode_log_start(struct rd *r, struct raft_log_start *s)
{
    s->index = (int64_t)rd_u64(r);
    s->term = rd_u64(r);
    const uint8_t *counts = rd_take(r, 8);
    if (!counts)
        return LM_E_CORRUPT;
    uint32_t nv = lm_get_be32(counts), nl = lm_get_be32(counts + 4);
    if (nv > RAFT_NODES_MAX || nl > RAFT_NODES_MAX)
        return LM_E_CORRUPT;
    size_t conf_len = 8 + 4 * ((size_t)nv + nl);
    if (!rd_take(r, conf_len - 8))
        return LM_E_CORRUPT;
    if (raft_conf_decode(counts, conf_len, &s->conf) != 0)
        return LM_E_CORRUPT;
    uint32_t payload_len = rd_u32(r);
    if (r->bad)
        return LM_E_CORRUPT;
    LM_TRY(rd_copy(r, payload_len, &s->payload));
    s->payload_len = payload_len;
    return 0;
}

static int decode(struct rd *r, struct raft_msg *out)
{
    bool flags_ok = true;
    if (rd_u8(r) != RAFT_WIRE_VERSION)
        return LM_E_CORRUPT;
    out->type = rd_u8(r);
    flags_ok &= rd_flag(r, &out->reject);
    uint8_t flags = rd_u8(r);
    flags_ok &= flags <= 3;
    out->force = (flags & 1) != 0;
    out->quiesce = (flags & 2) != 0;
    out->group = rd_u64(r);
    out->from = rd_u32(r);
    out->to = rd_u32(r);
    out->term = rd_u64(r);
    out->index = (int64_t)rd_u64(r);
    out->log_term = rd_u64(r);
    out->commit = (int64_t)rd_u64(r);
    out->hint_index = (int64_t)rd_u64(r);
    out->hint_term = rd_u64(r);
    out->ent_last = (int64_t)rd_u64(r);
    out->ent_last_term = rd_u64(r);
    uint32_t n = rd_u32(r);
    if (r->bad || !flags_ok || out->type == 0 || out->type >= RAFT_MSG_TYPE_MAX)
        return LM_E_CORRUPT;
    LM_ASSERT(r->off == RAFT_WIRE_HEADER_SIZE);
    if (n > 0) {
        if (out->type != RAFT_MSG_APP)
            return LM_E_CORRUPT;
        LM_TRY(decode_entries(r, out, n));
    }
    if (out->type == RAFT_MSG_LOG_START)
        LM_TRY(decode_log_start(r, &out->start));
    return msg_valid(out) ? 0 : LM_E_CORRUPT;
}

int raft_wire_decode(const uint8_t *buf, size_t len, struct raft_msg *out, size_t *used)
{
    /* A message never exceeds RAFT_WIRE_BYTES_MAX: one that would needs bytes past the clamp
     * and fails as truncated, before its large parts are allocated. */
    struct rd r = {
        .p = buf, .off = 0, .len = len < RAFT_WIRE_BYTES_MAX ? len : RAFT_WIRE_BYTES_MAX};
    memset(out, 0, sizeof(*out));
    *used = 0;
    int rc = decode(&r, out);
    if (rc) {
        raft_msg_deinit(out);
        memset(out, 0, sizeof(*out));
        return rc;
    }
    LM_ASSERT(!r.bad && r.off <= r.len);
    LM_ASSERT((size_t)r.off == raft_wire_size(out));
    *used = r.off;
    return 0;
}
