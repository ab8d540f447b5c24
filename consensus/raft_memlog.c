/* In-memory partition log for tests (see raft_memlog.h). */
#include "consensus/raft_memlog.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

void raft_memlog_init(struct raft_memlog *ml, const struct raft_conf *conf)
{
    memset(ml, 0, sizeof(*ml));
    ml->start.index = -1;
    if (conf)
        ml->start.conf = *conf;
    ml->hs.commit = -1;
}

static void drop_from(struct raft_memlog *ml, size_t pos)
{
    for (size_t i = pos; i < ml->n; i++)
        free(ml->entries[i].data);
    ml->n = pos;
}

void raft_memlog_deinit(struct raft_memlog *ml)
{
    drop_from(ml, 0);
    free(ml->entries);
    free(ml->start.payload);
    memset(ml, 0, sizeof(*ml));
}

int64_t raft_memlog_last(const struct raft_memlog *ml)
{
    return ml->n ? ml->entries[ml->n - 1].last_index : ml->start.index;
}

/* Index of the entry containing idx, or ml->n. */
static size_t find_pos(const struct raft_memlog *ml, int64_t idx)
{
    size_t lo = 0, hi = ml->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (ml->entries[mid].last_index < idx)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo < ml->n && ml->entries[lo].first_index <= idx)
        return lo;
    return ml->n;
}

const struct raft_entry *raft_memlog_find(const struct raft_memlog *ml, int64_t index)
{
    size_t p = find_pos(ml, index);
    return p < ml->n ? &ml->entries[p] : NULL;
}

static void op_start(void *ctx, struct raft_log_start *out)
{
    const struct raft_memlog *ml = ctx;
    *out = ml->start;
}

static int64_t op_last(void *ctx)
{
    return raft_memlog_last(ctx);
}

static int op_entry_at(void *ctx, int64_t index, struct raft_entry *out)
{
    const struct raft_entry *e = raft_memlog_find(ctx, index);
    if (!e)
        return LM_E_NOT_FOUND;
    *out = *e;
    return 0;
}

void raft_memlog_ops(struct raft_memlog *ml, struct raft_log_ops *ops)
{
    ops->ctx = ml;
    ops->start = op_start;
    ops->last_index = op_last;
    ops->entry_at = op_entry_at;
}

int raft_memlog_write(struct raft_memlog *ml, const struct raft_entry *es, size_t n)
{
    if (n == 0)
        return 0;
    int64_t first = es[0].first_index;
    if (first <= ml->start.index || first > raft_memlog_last(ml) + 1)
        return LM_E_SEQUENCE;
    size_t pos = ml->n;
    if (first <= raft_memlog_last(ml)) {
        pos = find_pos(ml, first);
        LM_ASSERT(pos < ml->n);
        if (ml->entries[pos].first_index != first)
            return LM_E_SEQUENCE; /* truncation must fall on a batch boundary */
    }
    drop_from(ml, pos);
    if (ml->n + n > ml->cap) {
        size_t cap = ml->cap ? ml->cap : 64;
        while (cap < ml->n + n)
            cap *= 2;
        struct raft_entry *e = realloc(ml->entries, cap * sizeof(*e));
        if (!e)
            return LM_E_NOMEM;
        ml->entries = e;
        ml->cap = cap;
    }
    for (size_t i = 0; i < n; i++) {
        if (es[i].first_index != raft_memlog_last(ml) + 1 || es[i].last_index < es[i].first_index)
            return LM_E_SEQUENCE;
        struct raft_entry *d = &ml->entries[ml->n];
        *d = es[i];
        d->data = NULL;
        if (es[i].len) {
            d->data = malloc(es[i].len);
            if (!d->data)
                return LM_E_NOMEM;
            memcpy(d->data, es[i].data, es[i].len);
        }
        ml->n++;
    }
    return 0;
}

static int set_payload(struct raft_log_start *s, const void *payload, uint32_t len)
{
    uint8_t *p = NULL;
    if (len) {
        p = malloc(len);
        if (!p)
            return LM_E_NOMEM;
        memcpy(p, payload, len);
    }
    free(s->payload);
    s->payload = p;
    s->payload_len = len;
    return 0;
}

int raft_memlog_set_start(struct raft_memlog *ml, const struct raft_log_start *s)
{
    drop_from(ml, 0);
    struct raft_log_start ns = *s;
    ns.payload = NULL;
    ns.payload_len = 0;
    int rc = set_payload(&ns, s->payload, s->payload_len);
    if (rc)
        return rc;
    free(ml->start.payload);
    ml->start = ns;
    return 0;
}

int raft_memlog_compact(struct raft_memlog *ml, int64_t index, const void *payload,
                        uint32_t payload_len)
{
    if (index <= ml->start.index)
        return 0;
    size_t pos = find_pos(ml, index);
    if (pos == ml->n || ml->entries[pos].last_index != index)
        return LM_E_INVALID;
    struct raft_conf conf = ml->start.conf;
    for (size_t i = 0; i <= pos; i++) {
        if (ml->entries[i].type == RAFT_ENTRY_CONF) {
            int rc = raft_conf_decode(ml->entries[i].data, ml->entries[i].len, &conf);
            if (rc)
                return rc;
        }
    }
    int rc = set_payload(&ml->start, payload, payload_len);
    if (rc)
        return rc;
    ml->start.index = index;
    ml->start.term = ml->entries[pos].term;
    ml->start.conf = conf;
    for (size_t i = 0; i <= pos; i++)
        free(ml->entries[i].data);
    memmove(ml->entries, ml->entries + pos + 1, (ml->n - pos - 1) * sizeof(*ml->entries));
    ml->n -= pos + 1;
    return 0;
}

int raft_memlog_persist(struct raft_memlog *ml, const struct raft_ready *rd)
{
    int rc = 0;
    if (rd->start_changed)
        rc = raft_memlog_set_start(ml, &rd->start);
    if (rc == 0)
        rc = raft_memlog_write(ml, rd->entries, rd->n_entries);
    if (rc == 0 && rd->persist_id) {
        ml->hs = rd->hs;
        ml->has_hs = true;
    }
    return rc;
}

int raft_memlog_copy(struct raft_memlog *dst, const struct raft_memlog *src)
{
    struct raft_memlog tmp;
    raft_memlog_init(&tmp, &src->start.conf);
    int rc = raft_memlog_set_start(&tmp, &src->start);
    if (rc == 0)
        rc = raft_memlog_write(&tmp, src->entries, src->n);
    if (rc) {
        raft_memlog_deinit(&tmp);
        return rc;
    }
    tmp.hs = src->hs;
    tmp.has_hs = src->has_hs;
    raft_memlog_deinit(dst);
    *dst = tmp;
    return 0;
}
