/* Consumer-protocol groups (KIP-848): membership, epochs, target assignment and the
 * reconciliation of each member towards it (cgroup.h). The rules follow KIP-848 and Kafka's
 * GroupMetadataManager.consumerGroupHeartbeat / CurrentAssignmentBuilder. */
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/group/cgroup.h"
#include "broker/group/cgroup_internal.h"
#include "broker/group/cgroup_records.h"
#include "broker/group/group_records.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* ---- small helpers ---- */

int cg_str_set(struct kafka_str *dst, struct kafka_str src)
{
    if (dst->len >= 0 && src.len >= 0 && kafka_str_eq(*dst, src))
        return 0;
    char *p = NULL;
    if (src.len >= 0) {
        p = malloc((size_t)src.len + 1);
        if (p == NULL)
            return LM_E_NOMEM;
        if (src.len > 0)
            memcpy(p, src.ptr, (size_t)src.len);
        p[src.len] = '\0';
    }
    free((char *)dst->ptr);
    *dst = src.len >= 0 ? (struct kafka_str){p, src.len} : KAFKA_STR_NULL;
    return 0;
}

bool cg_str_is(struct kafka_str a, struct kafka_str b)
{
    return a.len >= 0 && b.len >= 0 && kafka_str_eq(a, b);
}

int cg_tpset_reserve(struct tpset *s, int32_t n)
{
    if (n <= s->cap)
        return 0;
    int32_t cap = s->cap < 8 ? 8 : s->cap;
    while (cap < n)
        cap *= 2;
    struct lm_cgroup_tp *v = realloc(s->v, (size_t)cap * sizeof(*v));
    if (v == NULL)
        return LM_E_NOMEM;
    s->v = v;
    s->cap = cap;
    return 0;
}

bool cg_tpset_has(const struct tpset *s, const struct lm_cgroup_tp *tp)
{
    int32_t lo = 0, hi = s->n;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int c = lm_cgroup_tp_cmp(&s->v[mid], tp);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

static bool tpset_eq(const struct tpset *a, const struct tpset *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->v, b->v, (size_t)a->n * sizeof(*a->v)) == 0);
}

static int tp_qsort_cmp(const void *a, const void *b)
{
    return lm_cgroup_tp_cmp(a, b);
}

/* Sorts and drops duplicates. */
void cg_tpset_normalize(struct tpset *s)
{
    if (s->n < 2)
        return;
    qsort(s->v, (size_t)s->n, sizeof(*s->v), tp_qsort_cmp);
    int32_t w = 1;
    for (int32_t i = 1; i < s->n; i++)
        if (lm_cgroup_tp_cmp(&s->v[i], &s->v[w - 1]) != 0)
            s->v[w++] = s->v[i];
    s->n = w;
}

int cg_tpset_copy(struct tpset *dst, const struct tpset *src)
{
    if (cg_tpset_reserve(dst, src->n) != 0)
        return LM_E_NOMEM;
    if (src->n > 0)
        memcpy(dst->v, src->v, (size_t)src->n * sizeof(*src->v));
    dst->n = src->n;
    return 0;
}

void cg_tpset_free(struct tpset *s)
{
    free(s->v);
    *s = (struct tpset){0};
}

static uint64_t rng_next(struct lm_cgroup_coord *c)
{
    /* splitmix64 */
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* ---- records for __consumer_offsets (cgroup_records.h) ---- */

/* Encodes with enc(w, arg) into c->enc, growing it until the value fits; *len gets the size. */
static int enc_run(struct lm_cgroup_coord *c, int (*enc)(struct kafka_writer *, const void *),
                   const void *arg, size_t *len)
{
    for (;;) {
        if (c->enc_cap == 0) {
            c->enc = malloc(256);
            if (c->enc == NULL)
                return LM_E_NOMEM;
            c->enc_cap = 256;
        }
        struct kafka_writer w;
        kafka_writer_init(&w, c->enc, c->enc_cap);
        int rc = enc(&w, arg);
        if (rc == 0) {
            *len = w.pos;
            return 0;
        }
        if (rc != LM_E_FULL)
            return rc;
        /* bounded: a value holds at most the members' limits of names and partitions */
        LM_ASSERT(c->enc_cap < ((size_t)1 << 30));
        uint8_t *b = realloc(c->enc, c->enc_cap * 2);
        if (b == NULL)
            return LM_E_NOMEM;
        c->enc = b;
        c->enc_cap *= 2;
    }
}

/* Appends one record (value NULL: a tombstone) for the group's partition. */
static int rec_push(struct lm_cgroup_coord *c, const struct cgroup *g, int16_t type,
                    struct kafka_str member, const uint8_t *value, size_t value_len)
{
    if (c->n_recs == c->cap_recs) {
        size_t cap = c->cap_recs < 16 ? 16 : c->cap_recs * 2;
        struct lm_cgroup_record *v = realloc(c->recs, cap * sizeof(*v));
        if (v == NULL)
            return LM_E_NOMEM;
        c->recs = v;
        c->cap_recs = cap;
    }
    struct lm_cgr_key k = {type, g->id, member};
    size_t klen = 2 + 2 + (size_t)g->id.len + (member.len >= 0 ? 2 + (size_t)member.len : 0);
    uint8_t *buf = malloc(klen + value_len + 1);
    if (buf == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, buf, klen);
    int rc = lm_cgr_key_encode(&w, &k);
    if (rc != 0 || w.pos != klen) {
        free(buf);
        return rc != 0 ? rc : LM_E_INVALID;
    }
    if (value != NULL)
        memcpy(buf + klen, value, value_len);
    c->recs[c->n_recs++] = (struct lm_cgroup_record){
        .partition = g->partition,
        .key = {buf, (int32_t)klen},
        .value =
            value != NULL ? (struct kafka_bytes){buf + klen, (int32_t)value_len} : KAFKA_BYTES_NULL,
    };
    return 0;
}

static bool key_is_member(int16_t type)
{
    return type == LM_CGR_MEMBER || type == LM_CGR_TARGET_MEMBER || type == LM_CGR_CURRENT_MEMBER;
}

/* Frees the records from index n on (a call that failed part-way takes its records back). */
void cg_recs_truncate(struct lm_cgroup_coord *c, size_t n)
{
    LM_ASSERT(n <= c->n_recs);
    for (size_t i = n; i < c->n_recs; i++)
        free((void *)(uintptr_t)c->recs[i].key.ptr);
    c->n_recs = n;
}

struct member_enc {
    const struct cmember *m;
    int16_t type;
};

static int enc_member(struct kafka_writer *w, const void *arg)
{
    const struct member_enc *e = arg;
    const struct cmember *m = e->m;
    switch (e->type) {
    case LM_CGR_MEMBER: {
        struct lm_cgr_member_value v = {
            .instance_id = m->instance_id,
            .rack_id = m->rack_id,
            .client_id = m->client_id.len >= 0 ? m->client_id : (struct kafka_str){"", 0},
            .client_host = m->client_host.len >= 0 ? m->client_host : (struct kafka_str){"", 0},
            .n_topic_names = m->n_names,
            .topic_names = m->names,
            .topic_regex = m->regex,
            .rebalance_timeout_ms = m->rebalance_timeout_ms,
            .server_assignor = m->assignor,
            .has_classic = m->classic,
            .classic_session_timeout_ms = m->classic_session_ms,
            .n_classic_protocols = m->n_protos,
            .classic_protocols = m->protos,
        };
        return lm_cgr_member_value_encode(w, &v);
    }
    case LM_CGR_TARGET_MEMBER: {
        struct lm_cgr_parts p = {m->target.n, m->target.v};
        return lm_cgr_target_member_value_encode(w, &p);
    }
    case LM_CGR_CURRENT_MEMBER: {
        /* a static member that left temporarily is epoch -2 (Kafka's
         * LEAVE_GROUP_STATIC_MEMBER_EPOCH); its epoch to come back with is kept as the
         * previous one */
        struct lm_cgr_current_value v = {
            .member_epoch = m->static_left ? LM_CGROUP_STATIC_LEAVE_EPOCH : m->epoch,
            .prev_member_epoch = m->static_left ? m->epoch : m->prev_epoch,
            .state = (int8_t)m->state,
            .assigned = {m->assigned.n, m->assigned.v},
            .pending = {m->pending.n, m->pending.v},
        };
        return lm_cgr_current_value_encode(w, &v);
    }
    }
    LM_UNREACHABLE();
    return LM_E_INVALID;
}

static int enc_group_epoch(struct kafka_writer *w, const void *arg)
{
    const struct cgroup *g = arg;
    struct lm_cgr_group_value v = {g->epoch, true, (int64_t)g->meta_hash};
    return lm_cgr_group_value_encode(w, &v);
}

static int enc_target_epoch(struct kafka_writer *w, const void *arg)
{
    const struct cgroup *g = arg;
    return lm_cgr_target_epoch_value_encode(w, g->target_epoch);
}

/* Writes the member's record of one type when its value differs from the last written one
 * (emit false: only notes the value as written, after a load). */
static int member_rec(struct lm_cgroup_coord *c, const struct cgroup *g, struct cmember *m,
                      int16_t type, bool emit)
{
    struct member_enc e = {m, type};
    size_t len;
    LM_TRY(enc_run(c, enc_member, &e, &len));
    uint64_t h = fnv(1469598103934665603ull, c->enc, len);
    h += h == 0;
    uint64_t *have = type == LM_CGR_MEMBER          ? &m->h_meta
                     : type == LM_CGR_TARGET_MEMBER ? &m->h_target
                                                    : &m->h_current;
    if (*have == h)
        return 0;
    if (emit)
        LM_TRY(rec_push(c, g, type, m->id, c->enc, len));
    *have = h;
    return 0;
}

/* Writes what changed of the group since its last records, in Kafka's order of a heartbeat:
 * member metadata, group epoch, target assignment (members, then its epoch), current
 * assignments. A call changes the metadata and current assignment of `one` member only (may
 * be NULL), and the targets of the members a new target assignment changed; emit false (after
 * a load) notes every value as written. */
int cg_group_records_ex(struct lm_cgroup_coord *c, struct cgroup *g, struct cmember *one, bool emit,
                        bool all)
{
    for (int32_t i = 0; i < g->n_members; i++)
        if (all || g->members[i] == one)
            LM_TRY(member_rec(c, g, g->members[i], LM_CGR_MEMBER, emit));
    if (g->p_epoch != g->epoch || g->p_meta_hash != g->meta_hash) {
        size_t len;
        LM_TRY(enc_run(c, enc_group_epoch, g, &len));
        if (emit)
            LM_TRY(rec_push(c, g, LM_CGR_GROUP_EPOCH, KAFKA_STR_NULL, c->enc, len));
        g->p_epoch = g->epoch;
        g->p_meta_hash = g->meta_hash;
    }
    for (int32_t i = 0; i < g->n_members; i++) {
        struct cmember *m = g->members[i];
        if (all || m == one || m->target_dirty) {
            LM_TRY(member_rec(c, g, m, LM_CGR_TARGET_MEMBER, emit));
            m->target_dirty = false;
        }
    }
    if (g->p_target_epoch != g->target_epoch) {
        size_t len;
        LM_TRY(enc_run(c, enc_target_epoch, g, &len));
        if (emit)
            LM_TRY(rec_push(c, g, LM_CGR_TARGET_EPOCH, KAFKA_STR_NULL, c->enc, len));
        g->p_target_epoch = g->target_epoch;
    }
    for (int32_t i = 0; i < g->n_members; i++)
        if (all || g->members[i] == one)
            LM_TRY(member_rec(c, g, g->members[i], LM_CGR_CURRENT_MEMBER, emit));
    return 0;
}

int cg_group_records(struct lm_cgroup_coord *c, struct cgroup *g, struct cmember *one, bool emit)
{
    return cg_group_records_ex(c, g, one, emit, !emit);
}

/* The tombstones of a member that leaves or is fenced (Kafka: current assignment, target
 * assignment, member metadata). */
static int member_tombstones(struct lm_cgroup_coord *c, const struct cgroup *g, struct cmember *m)
{
    if (m->h_meta == 0 && m->h_target == 0 && m->h_current == 0)
        return 0;
    LM_TRY(rec_push(c, g, LM_CGR_CURRENT_MEMBER, m->id, NULL, 0));
    LM_TRY(rec_push(c, g, LM_CGR_TARGET_MEMBER, m->id, NULL, 0));
    LM_TRY(rec_push(c, g, LM_CGR_MEMBER, m->id, NULL, 0));
    m->h_meta = m->h_target = m->h_current = 0;
    return 0;
}

/* The tombstones of a deleted group (Kafka ConsumerGroup.createGroupTombstoneRecords). */
static int group_tombstones(struct lm_cgroup_coord *c, struct cgroup *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        LM_TRY(member_tombstones(c, g, g->members[i]));
    if (g->p_epoch < 0 && g->p_target_epoch < 0)
        return 0;
    LM_TRY(rec_push(c, g, LM_CGR_TARGET_EPOCH, KAFKA_STR_NULL, NULL, 0));
    LM_TRY(rec_push(c, g, LM_CGR_PARTITION_META, KAFKA_STR_NULL, NULL, 0));
    LM_TRY(rec_push(c, g, LM_CGR_GROUP_EPOCH, KAFKA_STR_NULL, NULL, 0));
    g->p_epoch = g->p_target_epoch = -1;
    return 0;
}

/* ---- members and groups ---- */

void cg_member_free(struct cmember *m)
{
    if (m == NULL)
        return;
    free((char *)m->id.ptr);
    free((char *)m->instance_id.ptr);
    free((char *)m->rack_id.ptr);
    free((char *)m->client_id.ptr);
    free((char *)m->client_host.ptr);
    free((char *)m->regex.ptr);
    free((char *)m->assignor.ptr);
    if (m->has_re)
        regfree(&m->re);
    for (int32_t i = 0; i < m->n_names; i++)
        free((char *)m->names[i].ptr);
    free(m->names);
    cg_tpset_free(&m->assigned);
    cg_tpset_free(&m->pending);
    cg_tpset_free(&m->target);
    free(m->held_ep);
    for (int32_t i = 0; i < m->n_protos; i++) {
        free((char *)m->protos[i].name.ptr);
        free((uint8_t *)m->protos[i].metadata.ptr);
    }
    free(m->protos);
    free(m);
}

void cg_group_free(struct cgroup *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        cg_member_free(g->members[i]);
    free(g->members);
    free((char *)g->id.ptr);
    free(g);
}

struct cgroup *cg_group_find(const struct lm_cgroup_coord *c, struct kafka_str id, size_t *index)
{
    for (size_t i = 0; i < c->n_groups; i++) {
        if (kafka_str_eq(c->groups[i]->id, id)) {
            if (index != NULL)
                *index = i;
            return c->groups[i];
        }
    }
    return NULL;
}

struct cmember *cg_member_find(const struct cgroup *g, struct kafka_str id, int32_t *index)
{
    if (id.len < 0)
        return NULL;
    for (int32_t i = 0; i < g->n_members; i++) {
        if (kafka_str_eq(g->members[i]->id, id)) {
            if (index != NULL)
                *index = i;
            return g->members[i];
        }
    }
    return NULL;
}

struct cmember *cg_member_by_instance(const struct cgroup *g, struct kafka_str instance)
{
    if (instance.len < 0)
        return NULL;
    for (int32_t i = 0; i < g->n_members; i++)
        if (cg_str_is(g->members[i]->instance_id, instance))
            return g->members[i];
    return NULL;
}

/* Removes a member; its records (if written) get their tombstones. */
int cg_member_remove(struct lm_cgroup_coord *c, struct cgroup *g, int32_t index)
{
    LM_ASSERT(index >= 0 && index < g->n_members);
    int rc = member_tombstones(c, g, g->members[index]);
    cg_member_free(g->members[index]);
    memmove(&g->members[index], &g->members[index + 1],
            (size_t)(g->n_members - index - 1) * sizeof(*g->members));
    g->n_members--;
    return rc;
}

/* Members are kept sorted by id (the assignors' member order). */
int cg_member_insert(struct cgroup *g, struct cmember *m)
{
    if (g->n_members == g->cap_members) {
        int32_t cap = g->cap_members < 4 ? 4 : g->cap_members * 2;
        struct cmember **v = realloc(g->members, (size_t)cap * sizeof(*v));
        if (v == NULL)
            return LM_E_NOMEM;
        g->members = v;
        g->cap_members = cap;
    }
    int32_t at = 0;
    while (at < g->n_members) {
        struct kafka_str o = g->members[at]->id;
        int32_t n = o.len < m->id.len ? o.len : m->id.len;
        int cmp = memcmp(o.ptr, m->id.ptr, (size_t)n);
        if (cmp > 0 || (cmp == 0 && o.len > m->id.len))
            break;
        at++;
    }
    memmove(&g->members[at + 1], &g->members[at],
            (size_t)(g->n_members - at) * sizeof(*g->members));
    g->members[at] = m;
    g->n_members++;
    return 0;
}

/* Takes a group out of the coordinator without freeing it. */
static void group_detach(struct lm_cgroup_coord *c, struct cgroup *g)
{
    for (size_t i = 0; i < c->n_groups; i++) {
        if (c->groups[i] == g) {
            c->groups[i] = c->groups[--c->n_groups];
            return;
        }
    }
    LM_UNREACHABLE();
}

/* Removes a group from the coordinator and frees it. */
void cg_group_drop(struct lm_cgroup_coord *c, struct cgroup *g)
{
    for (size_t i = 0; i < c->n_groups; i++) {
        if (c->groups[i] == g) {
            c->groups[i] = c->groups[--c->n_groups];
            cg_group_free(g);
            return;
        }
    }
    LM_UNREACHABLE();
}

/* ---- subscriptions against the image ---- */

static bool member_subscribes(const struct cmember *m, const struct lm_cgroup_topic *t)
{
    for (int32_t i = 0; i < m->n_names; i++)
        if (kafka_str_eq(m->names[i], t->name))
            return true;
    if (m->has_re && !t->internal && t->name.len >= 0) {
        char buf[256];
        if ((size_t)t->name.len >= sizeof(buf))
            return false;
        memcpy(buf, t->name.ptr, (size_t)t->name.len);
        buf[t->name.len] = '\0';
        return regexec(&m->re, buf, 0, NULL, 0) == 0;
    }
    return false;
}

/* The hash of what the group's subscriptions resolve to (names, ids, partition counts): a
 * change means new partitions, a deleted or re-created topic, or a regex matching a new one. */
uint64_t cg_subscribed_hash(const struct cgroup *g, const struct lm_cgroup_image *img)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < img->n_topics; i++) {
        struct lm_cgroup_topic t;
        img->topic(img->ctx, i, &t);
        bool used = false;
        for (int32_t m = 0; m < g->n_members && !used; m++)
            used = member_subscribes(g->members[m], &t);
        if (!used)
            continue;
        uint64_t h =
            fnv(1469598103934665603ull, t.name.ptr, (size_t)(t.name.len > 0 ? t.name.len : 0));
        h = fnv(h, t.id.b, sizeof(t.id.b));
        h = fnv(h, &t.partitions, sizeof(t.partitions));
        sum += h;
    }
    return sum;
}

static const char *group_assignor(const struct lm_cgroup_coord *c, const struct cgroup *g)
{
    /* the most preferred assignor among the members, else the default (Kafka
     * ConsumerGroup.preferredServerAssignor) */
    int32_t votes[2] = {0, 0};
    for (int32_t m = 0; m < g->n_members; m++) {
        struct kafka_str a = g->members[m]->assignor;
        for (int32_t k = 0; k < c->cfg.n_assignors && a.len >= 0; k++)
            if (kafka_str_eq(a, (struct kafka_str){c->cfg.assignors[k],
                                                   (int32_t)strlen(c->cfg.assignors[k])}))
                votes[k]++;
    }
    int32_t best = 0;
    for (int32_t k = 1; k < c->cfg.n_assignors; k++)
        if (votes[k] > votes[best])
            best = k;
    return c->cfg.assignors[best];
}

/* Computes every member's target from the assignor and moves the target epoch to the group
 * epoch. */
int cg_compute_target(struct lm_cgroup_coord *c, struct cgroup *g,
                      const struct lm_cgroup_image *img)
{
    int rc = 0;
    size_t nt = img->n_topics;
    struct lm_cgroup_atopic *topics = calloc(nt + 1, sizeof(*topics));
    int32_t *tidx = calloc(nt + 1, sizeof(int32_t));
    int32_t *member_topics = calloc((size_t)g->n_members * (nt + 1) + 1, sizeof(int32_t));
    struct lm_cgroup_amember *am = calloc((size_t)g->n_members + 1, sizeof(*am));
    if (topics == NULL || tidx == NULL || member_topics == NULL || am == NULL) {
        rc = LM_E_NOMEM;
        goto out;
    }
    int32_t n_topics = 0;
    for (size_t i = 0; i < nt; i++) {
        struct lm_cgroup_topic t;
        img->topic(img->ctx, i, &t);
        tidx[i] = -1;
        bool used = false;
        for (int32_t m = 0; m < g->n_members && !used; m++)
            used = member_subscribes(g->members[m], &t);
        if (!used || t.partitions <= 0)
            continue;
        tidx[i] = n_topics;
        topics[n_topics++] = (struct lm_cgroup_atopic){.id = t.id, .partitions = t.partitions};
    }
    for (int32_t m = 0; m < g->n_members; m++) {
        struct cmember *mb = g->members[m];
        int32_t *mine = member_topics + (size_t)m * (nt + 1);
        int32_t k = 0;
        for (size_t i = 0; i < nt; i++) {
            if (tidx[i] < 0)
                continue;
            struct lm_cgroup_topic t;
            img->topic(img->ctx, i, &t);
            if (member_subscribes(mb, &t))
                mine[k++] = tidx[i];
        }
        /* tidx grows with i, so mine is sorted */
        am[m] = (struct lm_cgroup_amember){.member_id = mb->id,
                                           .n_topics = k,
                                           .topics = mine,
                                           .n_current = mb->target.n,
                                           .current = mb->target.v};
    }
    g->assignor = group_assignor(c, g);
    rc = lm_cgroup_assign(g->assignor, n_topics, topics, g->n_members, am);
    if (rc != 0)
        goto out;
    for (int32_t m = 0; m < g->n_members; m++) {
        struct cmember *mb = g->members[m];
        struct tpset nt = {am[m].target, am[m].n_target, am[m].n_target};
        mb->target_dirty |= !tpset_eq(&mb->target, &nt);
        cg_tpset_free(&mb->target);
        mb->target = nt;
    }
    g->target_epoch = g->epoch;
out:
    free(topics);
    free(tidx);
    free(member_topics);
    free(am);
    return rc;
}

/* ---- reconciliation (Kafka CurrentAssignmentBuilder) ---- */

/* Whether tp is held (assigned or pending revocation) by a member other than self. */
bool cg_held_by_other(const struct cgroup *g, const struct cmember *self,
                      const struct lm_cgroup_tp *tp)
{
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct cmember *o = g->members[i];
        if (o != self && (cg_tpset_has(&o->assigned, tp) || cg_tpset_has(&o->pending, tp)))
            return true;
    }
    return false;
}

/* Whether the member's reported owned partitions (NULL: not reported, taken as still owning
 * everything) include any of set. */
static bool owns_any(const struct tpset *owned, const struct tpset *set)
{
    if (owned == NULL)
        return set->n > 0;
    for (int32_t i = 0; i < set->n; i++)
        if (cg_tpset_has(owned, &set->v[i]))
            return true;
    return false;
}

static void set_state(struct cmember *m, enum mstate st, int64_t now_ms)
{
    if (st == M_UNREVOKED && m->state != M_UNREVOKED)
        m->rebalance_deadline_ms =
            now_ms + (m->rebalance_timeout_ms > 0 ? m->rebalance_timeout_ms : 0);
    else if (st != M_UNREVOKED)
        m->rebalance_deadline_ms = INT64_MAX;
    m->state = st;
}

static void set_epoch(struct cmember *m, int32_t epoch)
{
    if (m->epoch != epoch) {
        m->prev_epoch = m->epoch;
        m->epoch = epoch;
    }
}

static int held_epoch_cmp(const void *a, const void *b)
{
    return lm_cgroup_tp_cmp(&((const struct tp_epoch *)a)->tp, &((const struct tp_epoch *)b)->tp);
}

/* The assignment epoch of tp, -1 when the member does not hold it. */
static int32_t held_epoch(const struct cmember *m, const struct lm_cgroup_tp *tp)
{
    struct tp_epoch key = {.tp = *tp};
    const struct tp_epoch *e = m->n_held_ep > 0 ? bsearch(&key, m->held_ep, (size_t)m->n_held_ep,
                                                          sizeof(key), held_epoch_cmp)
                                                : NULL;
    return e != NULL ? e->epoch : -1;
}

/* Brings the assignment epochs in step with what the member holds (assigned and pending): a
 * partition it held before keeps its epoch, a new one gets the member's epoch now. Out of
 * memory, the member is left with none (its commits are then held to its current epoch, the
 * strict check). */
static void held_epochs_sync(struct cmember *m)
{
    int32_t n = m->assigned.n + m->pending.n;
    struct tp_epoch *v = n > 0 ? malloc((size_t)n * sizeof(*v)) : NULL;
    int32_t k = 0;
    if (v != NULL) {
        const struct tpset *sets[2] = {&m->assigned, &m->pending};
        for (int32_t s = 0; s < 2; s++) {
            for (int32_t i = 0; i < sets[s]->n; i++) {
                int32_t e = held_epoch(m, &sets[s]->v[i]);
                v[k++] = (struct tp_epoch){sets[s]->v[i], e >= 0 ? e : m->epoch};
            }
        }
        qsort(v, (size_t)k, sizeof(*v), held_epoch_cmp);
    }
    free(m->held_ep);
    m->held_ep = v;
    m->n_held_ep = k;
}

/* Forgets the assignment epochs: every held partition counts as handed over at the member's
 * epoch now. */
void cg_held_epochs_reset(struct cmember *m)
{
    free(m->held_ep);
    m->held_ep = NULL;
    m->n_held_ep = 0;
    held_epochs_sync(m);
}

/* Moves the member one step towards its target: partitions to give up first (epoch kept),
 * then the target's partitions no other member holds (epoch = target epoch). */
static int next_assignment(const struct cgroup *g, struct cmember *m, int32_t epoch,
                           const struct tpset *owned, int64_t now_ms)
{
    struct tpset keep = {0}, revoke = {0}, add = {0};
    bool unreleased = false;
    int rc = 0;
    if (cg_tpset_reserve(&keep, m->assigned.n + m->target.n) != 0 ||
        cg_tpset_reserve(&revoke, m->assigned.n + 1) != 0 ||
        cg_tpset_reserve(&add, m->target.n + 1) != 0) {
        rc = LM_E_NOMEM;
        goto out;
    }
    for (int32_t i = 0; i < m->assigned.n; i++) {
        if (cg_tpset_has(&m->target, &m->assigned.v[i]))
            keep.v[keep.n++] = m->assigned.v[i];
        else
            revoke.v[revoke.n++] = m->assigned.v[i];
    }
    for (int32_t i = 0; i < m->target.n; i++) {
        const struct lm_cgroup_tp *tp = &m->target.v[i];
        if (cg_tpset_has(&m->assigned, tp))
            continue;
        if (cg_held_by_other(g, m, tp))
            unreleased = true;
        else
            add.v[add.n++] = *tp;
    }
    bool changed;
    if (revoke.n > 0 && owns_any(owned, &revoke)) {
        changed = !tpset_eq(&m->assigned, &keep);
        if ((rc = cg_tpset_copy(&m->assigned, &keep)) != 0 ||
            (rc = cg_tpset_copy(&m->pending, &revoke)) != 0)
            goto out;
        set_epoch(m, epoch);
        set_state(m, M_UNREVOKED, now_ms);
    } else {
        for (int32_t i = 0; i < add.n; i++)
            keep.v[keep.n++] = add.v[i];
        cg_tpset_normalize(&keep);
        changed = !tpset_eq(&m->assigned, &keep);
        if ((rc = cg_tpset_copy(&m->assigned, &keep)) != 0)
            goto out;
        m->pending.n = 0;
        set_epoch(m, g->target_epoch);
        set_state(m, unreleased ? M_UNRELEASED : M_STABLE, now_ms);
    }
    if (changed)
        m->assignment_changed = true;
out:
    held_epochs_sync(m);
    cg_tpset_free(&keep);
    cg_tpset_free(&revoke);
    cg_tpset_free(&add);
    return rc;
}

int cg_reconcile(const struct cgroup *g, struct cmember *m, const struct tpset *owned,
                 int64_t now_ms)
{
    switch (m->state) {
    case M_STABLE:
        if (m->epoch == g->target_epoch)
            return 0;
        return next_assignment(g, m, m->epoch, owned, now_ms);
    case M_UNREVOKED:
        if (owned == NULL || owns_any(owned, &m->pending))
            return 0;
        /* revoked: the member moves to the next epoch at least (so an ack is seen as
         * progress) and on towards the target; a further revocation starts a new rebalance
         * timeout */
        m->pending.n = 0;
        m->state = M_STABLE;
        m->rebalance_deadline_ms = INT64_MAX;
        return next_assignment(
            g, m, m->epoch + 1 < g->target_epoch ? m->epoch + 1 : g->target_epoch, owned, now_ms);
    case M_UNRELEASED:
        return next_assignment(g, m, m->epoch, owned, now_ms);
    }
    LM_UNREACHABLE();
    return LM_E_INVALID;
}

/* ---- heartbeat ---- */

static void resp_error(struct lm_cgroup_hb_resp *out, int16_t err, const char *msg,
                       struct kafka_str member_id, int32_t epoch)
{
    *out = (struct lm_cgroup_hb_resp){.error_code = err,
                                      .error_message = msg,
                                      .member_id = member_id,
                                      .member_epoch = epoch,
                                      .heartbeat_interval_ms = 0};
}

int16_t lm_cgroup_heartbeat_validate(const struct lm_cgroup_coord *c,
                                     const struct lm_cgroup_hb_req *r, const char **msg)
{
    if (r->group_id.len <= 0) {
        *msg = "GroupId can't be empty.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->instance_id.len == 0) {
        *msg = "InstanceId can't be empty.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->rack_id.len == 0) {
        *msg = "RackId can't be empty.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->group_id.len > INT16_MAX || r->member_id.len > INT16_MAX) {
        /* the record keys of __consumer_offsets carry both as i16-length strings */
        *msg = "GroupId or MemberId is too long.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->version >= 1 && r->member_id.len <= 0) {
        *msg = "MemberId can't be empty.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->version == 0 && r->member_epoch != 0 && r->member_id.len <= 0) {
        *msg = "MemberId can't be empty.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->member_epoch == LM_CGROUP_JOIN_EPOCH) {
        if (r->rebalance_timeout_ms == -1) {
            *msg = "RebalanceTimeoutMs must be provided in first request.";
            return KAFKA_INVALID_REQUEST;
        }
        if (r->n_owned != 0) {
            *msg = "TopicPartitions must be empty when (re-)joining.";
            return KAFKA_INVALID_REQUEST;
        }
        if (r->n_topic_names < 0 && r->topic_regex.len < 0) {
            *msg = "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.";
            return KAFKA_INVALID_REQUEST;
        }
    } else if (r->member_epoch == LM_CGROUP_STATIC_LEAVE_EPOCH) {
        if (r->instance_id.len < 0) {
            *msg = "InstanceId can't be null.";
            return KAFKA_INVALID_REQUEST;
        }
    } else if (r->member_epoch < LM_CGROUP_STATIC_LEAVE_EPOCH) {
        *msg = "MemberEpoch is invalid.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->n_topic_names > LM_CGROUP_SUBSCRIBED_MAX) {
        *msg = "Too many subscribed topics.";
        return KAFKA_INVALID_REQUEST;
    }
    if (r->server_assignor.len >= 0) {
        bool known = false;
        for (int32_t k = 0; k < c->cfg.n_assignors; k++)
            known |= kafka_str_eq(
                r->server_assignor,
                (struct kafka_str){c->cfg.assignors[k], (int32_t)strlen(c->cfg.assignors[k])});
        if (!known) {
            *msg = "ServerAssignor is not supported.";
            return KAFKA_UNSUPPORTED_ASSIGNOR;
        }
    }
    return KAFKA_NONE;
}

/* Applies the request's subscription fields; *changed when the subscription differs. */
int cg_update_subscription(struct cmember *m, const struct lm_cgroup_hb_req *r, bool *changed,
                           int16_t *err)
{
    if (r->n_topic_names >= 0) {
        bool same = r->n_topic_names == m->n_names;
        for (int32_t i = 0; same && i < r->n_topic_names; i++) {
            bool found = false;
            for (int32_t k = 0; k < m->n_names && !found; k++)
                found = kafka_str_eq(m->names[k], r->topic_names[i]);
            same = found;
        }
        if (!same) {
            struct kafka_str *names = calloc((size_t)r->n_topic_names + 1, sizeof(*names));
            if (names == NULL)
                return LM_E_NOMEM;
            int32_t n = 0;
            for (int32_t i = 0; i < r->n_topic_names; i++) {
                names[n] = KAFKA_STR_NULL;
                if (r->topic_names[i].len < 0)
                    continue;
                if (cg_str_set(&names[n], r->topic_names[i]) != 0) {
                    for (int32_t k = 0; k < n; k++)
                        free((char *)names[k].ptr);
                    free(names);
                    return LM_E_NOMEM;
                }
                n++;
            }
            for (int32_t i = 0; i < m->n_names; i++)
                free((char *)m->names[i].ptr);
            free(m->names);
            m->names = names;
            m->n_names = n;
            *changed = true;
        }
    }
    if (r->topic_regex.len >= 0 && !cg_str_is(m->regex, r->topic_regex)) {
        if (m->has_re) {
            regfree(&m->re);
            m->has_re = false;
        }
        if (cg_str_set(&m->regex, r->topic_regex) != 0)
            return LM_E_NOMEM;
        *changed = true;
        if (r->topic_regex.len > LM_CGROUP_REGEX_MAX) {
            /* a bound on what regcomp is given (its automaton grows with the pattern) */
            *err = KAFKA_INVALID_REGULAR_EXPRESSION;
            free((char *)m->regex.ptr);
            m->regex = KAFKA_STR_NULL;
            return 0;
        }
        if (r->topic_regex.len > 0) {
            /* Kafka matches the whole name (RE2/J matches()); POSIX ERE stands in for RE2 */
            size_t n = (size_t)r->topic_regex.len + 5;
            char *pat = malloc(n);
            if (pat == NULL)
                return LM_E_NOMEM;
            snprintf(pat, n, "^(%.*s)$", (int)r->topic_regex.len, r->topic_regex.ptr);
            int rc = regcomp(&m->re, pat, REG_EXTENDED | REG_NOSUB);
            free(pat);
            if (rc != 0) {
                *err = KAFKA_INVALID_REGULAR_EXPRESSION;
                free((char *)m->regex.ptr);
                m->regex = KAFKA_STR_NULL;
                return 0;
            }
            m->has_re = true;
        }
    }
    return 0;
}

int cg_new_member_id(struct lm_cgroup_coord *c, struct kafka_str *out)
{
    static const char alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    char buf[22];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = alpha[rng_next(c) & 63];
    *out = KAFKA_STR_NULL;
    return cg_str_set(out, (struct kafka_str){buf, (int32_t)sizeof(buf)});
}

int cg_group_create(struct lm_cgroup_coord *c, struct kafka_str id, int32_t partition,
                    struct cgroup **out)
{
    if (c->n_groups == c->cap_groups) {
        size_t cap = c->cap_groups < 8 ? 8 : c->cap_groups * 2;
        struct cgroup **v = realloc(c->groups, cap * sizeof(*v));
        if (v == NULL)
            return LM_E_NOMEM;
        c->groups = v;
        c->cap_groups = cap;
    }
    struct cgroup *g = calloc(1, sizeof(*g));
    if (g == NULL)
        return LM_E_NOMEM;
    g->id = KAFKA_STR_NULL;
    if (cg_str_set(&g->id, id) != 0) {
        free(g);
        return LM_E_NOMEM;
    }
    g->partition = partition;
    g->assignor = c->cfg.assignors[0];
    g->p_epoch = g->p_target_epoch = -1;
    c->groups[c->n_groups++] = g;
    *out = g;
    return 0;
}

struct cmember *cg_member_new(void)
{
    struct cmember *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return NULL;
    m->id = m->instance_id = m->rack_id = m->client_id = m->client_host = KAFKA_STR_NULL;
    m->regex = m->assignor = KAFKA_STR_NULL;
    m->rebalance_deadline_ms = INT64_MAX;
    m->join_deadline_ms = m->sync_deadline_ms = INT64_MAX;
    return m;
}

/* Sets (classic true) or clears the member's classic metadata: its session timeout and a copy
 * of its JoinGroup protocols. */
int cg_member_set_protos(struct cmember *m, bool classic, int32_t session_ms, int32_t n,
                         const struct lm_cgr_protocol *p)
{
    struct lm_cgr_protocol *v = NULL;
    if (classic && n > 0) {
        v = calloc((size_t)n, sizeof(*v));
        if (v == NULL)
            return LM_E_NOMEM;
        for (int32_t i = 0; i < n; i++) {
            v[i].name = KAFKA_STR_NULL;
            int32_t ml = p[i].metadata.len > 0 ? p[i].metadata.len : 0;
            uint8_t *b = malloc((size_t)ml + 1);
            if (b == NULL || cg_str_set(&v[i].name, p[i].name) != 0) {
                free(b);
                for (int32_t k = 0; k <= i; k++) {
                    free((char *)v[k].name.ptr);
                    free((uint8_t *)v[k].metadata.ptr);
                }
                free(v);
                return LM_E_NOMEM;
            }
            if (ml > 0)
                memcpy(b, p[i].metadata.ptr, (size_t)ml);
            v[i].metadata = (struct kafka_bytes){b, ml};
        }
    }
    for (int32_t i = 0; i < m->n_protos; i++) {
        free((char *)m->protos[i].name.ptr);
        free((uint8_t *)m->protos[i].metadata.ptr);
    }
    free(m->protos);
    m->protos = v;
    m->n_protos = classic ? n : 0;
    m->classic = classic;
    m->classic_session_ms = classic ? session_ms : 0;
    return 0;
}

/* The owned partitions of a request as a sorted set (NULL when not reported). */
static int owned_set(const struct lm_cgroup_hb_req *r, struct tpset *s)
{
    if (r->n_owned < 0)
        return 0;
    int64_t n = 0;
    for (int32_t i = 0; i < r->n_owned; i++)
        n += r->owned[i].n_partitions > 0 ? r->owned[i].n_partitions : 0;
    if (n > LM_CGROUP_ASSIGNED_MAX)
        return LM_E_TOO_LARGE;
    if (cg_tpset_reserve(s, (int32_t)n + 1) != 0)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < r->n_owned; i++)
        for (int32_t k = 0; k < r->owned[i].n_partitions; k++)
            s->v[s->n++] = (struct lm_cgroup_tp){r->owned[i].topic_id, r->owned[i].partitions[k]};
    cg_tpset_normalize(s);
    return 0;
}

static bool tpset_subset(const struct tpset *a, const struct tpset *b)
{
    for (int32_t i = 0; i < a->n; i++)
        if (!cg_tpset_has(b, &a->v[i]))
            return false;
    return true;
}

/* Kafka 4.1 validateOnlineDowngradeWithFencedMembers: once the members marked as leaving (by
 * a leave or a fence) are gone, some remain, all classic, the policy allows a downgrade and
 * they fit a classic group (group.max.size). */
bool cg_downgrade_ok(const struct lm_cgroup_coord *c, const struct cgroup *g)
{
    int32_t remain = 0;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct cmember *m = g->members[i];
        if (m->leaving)
            continue;
        if (!m->classic)
            return false;
        remain++;
    }
    return remain > 0 && (c->cfg.migration & LM_CGROUP_MIGRATION_DOWNGRADE) != 0 &&
           remain <= c->cfg.classic_max_size;
}

/* The group becomes a classic group without the members marked as leaving (Kafka
 * convertToClassicGroup): its records get their tombstones and it waits, detached, for
 * lm_cgroup_downgrade_take. Out of memory, nothing changed. */
int cg_downgrade(struct lm_cgroup_coord *c, struct cgroup *g)
{
    if (c->n_dg == c->cap_dg) {
        size_t cap = c->cap_dg < 4 ? 4 : c->cap_dg * 2;
        struct cgroup **v = realloc(c->dg, cap * sizeof(*v));
        if (v == NULL)
            return LM_E_NOMEM;
        c->dg = v;
        c->cap_dg = cap;
    }
    size_t n = c->n_recs;
    if (group_tombstones(c, g) != 0) {
        cg_recs_truncate(c, n);
        return LM_E_NOMEM;
    }
    int32_t k = 0;
    for (int32_t i = 0; i < g->n_members; i++) {
        if (g->members[i]->leaving)
            cg_member_free(g->members[i]);
        else
            g->members[k++] = g->members[i];
    }
    g->n_members = k;
    LM_ASSERT(k > 0);
    g->dg_rebalance = true;
    group_detach(c, g);
    c->dg[c->n_dg++] = g;
    return 0;
}

/* Whether member `index` leaving or fenced makes the group a classic group (then done: true);
 * false leaves it to the caller to remove the member. */
static bool downgrade_without(struct lm_cgroup_coord *c, struct cgroup *g, int32_t index)
{
    g->members[index]->leaving = true;
    if (cg_downgrade_ok(c, g) && cg_downgrade(c, g) == 0)
        return true;
    g->members[index]->leaving = false;
    return false;
}

/* A static member's instance comes back under member id nid ("": a new one is made): st
 * keeps its epoch and assignment under the new id; the old id's records get their
 * tombstones. Out of memory, st is gone (fenced) and the group epoch moved. */
int cg_static_takeover(struct lm_cgroup_coord *c, struct cgroup *g, struct cmember *st,
                       struct kafka_str member_id)
{
    struct kafka_str nid = KAFKA_STR_NULL;
    if (member_id.len > 0) {
        if (cg_str_set(&nid, member_id) != 0)
            return LM_E_NOMEM;
    } else if (cg_new_member_id(c, &nid) != 0) {
        return LM_E_NOMEM;
    }
    int32_t sti = -1;
    cg_member_find(g, st->id, &sti);
    LM_ASSERT(sti >= 0);
    if (member_tombstones(c, g, st) != 0) {
        free((char *)nid.ptr);
        return LM_E_NOMEM;
    }
    memmove(&g->members[sti], &g->members[sti + 1],
            (size_t)(g->n_members - sti - 1) * sizeof(*g->members));
    g->n_members--;
    free((char *)st->id.ptr);
    st->id = nid;
    st->static_left = false;
    st->assignment_changed = true;
    /* what the departed instance committed under is not the new member's (Kafka resets the
     * assignment epochs of a static member that left) */
    cg_held_epochs_reset(st);
    if (cg_member_insert(g, st) != 0) {
        cg_member_free(st);
        g->epoch++;
        return LM_E_NOMEM;
    }
    return 0;
}

int lm_cgroup_heartbeat(struct lm_cgroup_coord *c, int64_t now_ms, int32_t partition,
                        const struct lm_cgroup_image *img, const struct lm_cgroup_hb_req *r,
                        struct lm_cgroup_hb_resp *out)
{
    LM_ASSERT(c != NULL && img != NULL && r != NULL && out != NULL);
    const char *msg = NULL;
    int16_t err = lm_cgroup_heartbeat_validate(c, r, &msg);
    if (err != KAFKA_NONE) {
        resp_error(out, err, msg, r->member_id, r->member_epoch);
        return 0;
    }
    struct tpset owned_v = {0};
    const struct tpset *owned = NULL;
    int rc = owned_set(r, &owned_v);
    if (rc == LM_E_TOO_LARGE) {
        resp_error(out, KAFKA_INVALID_REQUEST, "Too many owned partitions.", r->member_id,
                   r->member_epoch);
        return 0;
    }
    if (rc != 0)
        goto nomem;
    if (r->n_owned >= 0)
        owned = &owned_v;

    struct cgroup *g = cg_group_find(c, r->group_id, NULL);
    if (g == NULL) {
        if (r->member_epoch != LM_CGROUP_JOIN_EPOCH) {
            /* the group is gone (emptied and dropped, or deleted): the member is told it
             * is unknown and joins again with epoch 0, which the clients do on
             * UNKNOWN_MEMBER_ID without failing (GROUP_ID_NOT_FOUND is fatal to them) */
            resp_error(out, KAFKA_UNKNOWN_MEMBER_ID, "Group not found.", r->member_id,
                       r->member_epoch);
            cg_tpset_free(&owned_v);
            return 0;
        }
        if ((rc = cg_group_create(c, r->group_id, partition, &g)) != 0)
            goto nomem;
    }
    LM_ASSERT(g->epoch >= g->target_epoch);
    int32_t index = -1;
    struct cmember *m = cg_member_find(g, r->member_id, &index);
    bool bump = false;

    if (r->member_epoch == LM_CGROUP_LEAVE_EPOCH ||
        r->member_epoch == LM_CGROUP_STATIC_LEAVE_EPOCH) {
        if (m == NULL) {
            resp_error(out, KAFKA_UNKNOWN_MEMBER_ID, "Member not found.", r->member_id,
                       r->member_epoch);
            cg_tpset_free(&owned_v);
            return 0;
        }
        free(c->scratch_id);
        c->scratch_id = malloc((size_t)m->id.len + 1);
        if (c->scratch_id == NULL)
            goto nomem;
        memcpy(c->scratch_id, m->id.ptr, (size_t)m->id.len);
        struct kafka_str id = {c->scratch_id, m->id.len};
        if (r->member_epoch == LM_CGROUP_STATIC_LEAVE_EPOCH && m->instance_id.len >= 0) {
            /* KIP-848 temporary leave of a static member: the assignment stays for the
             * session timeout, for the same instance to take back */
            m->static_left = true;
            m->session_deadline_ms =
                now_ms +
                (r->session_timeout_ms > 0 ? r->session_timeout_ms : c->cfg.session_timeout_ms);
            if (cg_group_records(c, g, m, true) != 0)
                goto nomem;
        } else if (downgrade_without(c, g, index)) {
            /* the last consumer-protocol member left a group of classic members: it is a
             * classic group again (Kafka consumerGroupFenceMembers) */
        } else {
            rc = cg_member_remove(c, g, index);
            g->epoch++;
            if (rc != 0 || cg_group_records(c, g, NULL, true) != 0)
                goto nomem;
        }
        resp_error(out, KAFKA_NONE, NULL, id, r->member_epoch);
        out->heartbeat_interval_ms =
            r->heartbeat_interval_ms > 0 ? r->heartbeat_interval_ms : c->cfg.heartbeat_interval_ms;
        cg_tpset_free(&owned_v);
        return 0;
    }

    bool joined = false;
    if (r->member_epoch == LM_CGROUP_JOIN_EPOCH) {
        struct cmember *st = cg_member_by_instance(g, r->instance_id);
        if (st != NULL && st != m) {
            /* an active consumer-protocol member keeps its instance; a classic one is
             * replaced (Kafka getOrMaybeSubscribeStaticConsumerGroupMember) */
            if (!st->static_left && !st->classic) {
                resp_error(out, KAFKA_UNRELEASED_INSTANCE_ID,
                           "Static member with the same instance id is still active.", r->member_id,
                           r->member_epoch);
                cg_tpset_free(&owned_v);
                return 0;
            }
            /* the instance comes back under a new member id: it takes over the departed
             * member's epoch and assignment (no rebalance) */
            if (cg_static_takeover(c, g, st, r->member_id) != 0)
                goto nomem;
            m = st;
            joined = true;
        } else if (m != NULL) {
            /* a member joining again under its id lost its partitions (KIP-848: epoch 0
             * means it holds none); what others wait for is released now */
            m->assigned.n = 0;
            m->pending.n = 0;
            m->static_left = false;
            m->state = M_STABLE;
            m->rebalance_deadline_ms = INT64_MAX;
            set_epoch(m, 0);
            held_epochs_sync(m);
            m->assignment_changed = true;
            joined = true;
        } else {
            if (g->n_members >= c->cfg.max_size || g->n_members >= LM_CGROUP_MEMBERS_MAX) {
                resp_error(out, KAFKA_GROUP_MAX_SIZE_REACHED, "The group is full.", r->member_id,
                           r->member_epoch);
                cg_tpset_free(&owned_v);
                return 0;
            }
            m = cg_member_new();
            if (m == NULL)
                goto nomem;
            rc = r->member_id.len > 0 ? cg_str_set(&m->id, r->member_id)
                                      : cg_new_member_id(c, &m->id);
            if (rc != 0 || cg_str_set(&m->instance_id, r->instance_id) != 0 ||
                cg_member_insert(g, m) != 0) {
                cg_member_free(m);
                goto nomem;
            }
            m->assignment_changed = true;
            joined = true;
            bump = true;
        }
    } else {
        if (m == NULL) {
            resp_error(out, KAFKA_UNKNOWN_MEMBER_ID, "Member not found.", r->member_id,
                       r->member_epoch);
            cg_tpset_free(&owned_v);
            return 0;
        }
        int32_t have = m->static_left ? LM_CGROUP_STATIC_LEAVE_EPOCH : m->epoch;
        bool fenced = r->member_epoch > have;
        if (r->member_epoch < have) {
            /* the response that moved the member on may have been lost: its previous epoch
             * is accepted while what it owns is part of its assignment */
            fenced = r->member_epoch != m->prev_epoch || owned == NULL ||
                     !tpset_subset(owned, &m->assigned);
        }
        if (fenced) {
            resp_error(out, KAFKA_FENCED_MEMBER_EPOCH,
                       "The consumer group member has a greater member epoch than expected.",
                       r->member_id, r->member_epoch);
            cg_tpset_free(&owned_v);
            return 0;
        }
    }

    /* member fields */
    if (r->rebalance_timeout_ms >= 0)
        m->rebalance_timeout_ms = r->rebalance_timeout_ms;
    if ((r->rack_id.len >= 0 && cg_str_set(&m->rack_id, r->rack_id) != 0) ||
        (r->client_id.len >= 0 && cg_str_set(&m->client_id, r->client_id) != 0) ||
        (r->client_host.len >= 0 && cg_str_set(&m->client_host, r->client_host) != 0) ||
        (r->server_assignor.len >= 0 && cg_str_set(&m->assignor, r->server_assignor) != 0))
        goto nomem;
    bool sub_changed = false;
    err = KAFKA_NONE;
    if ((rc = cg_update_subscription(m, r, &sub_changed, &err)) != 0)
        goto nomem;
    if (err != KAFKA_NONE) {
        /* the request's member id: a member created by this call is freed below */
        resp_error(out, err, "SubscribedTopicRegex is not a valid regular expression.",
                   r->member_id, r->member_epoch);
        if (joined && bump) {
            int32_t mi = -1;
            cg_member_find(g, m->id, &mi);
            rc = cg_member_remove(c, g, mi);
            if (rc == 0 && g->n_members == 0 && g->epoch == 0 && g->p_epoch < 0) {
                cg_group_drop(c, g);
            } else if (rc == 0) {
                rc = cg_group_records(c, g, NULL, true);
            }
        } else {
            rc = cg_group_records(c, g, m, true);
        }
        cg_tpset_free(&owned_v);
        return rc;
    }
    m->session_deadline_ms =
        now_ms + (r->session_timeout_ms > 0 ? r->session_timeout_ms : c->cfg.session_timeout_ms);

    uint64_t h = cg_subscribed_hash(g, img);
    if (bump || sub_changed || h != g->meta_hash) {
        g->meta_hash = h;
        g->epoch++;
    }
    if (g->epoch > g->target_epoch && (rc = cg_compute_target(c, g, img)) != 0)
        goto nomem;
    if ((rc = cg_reconcile(g, m, joined ? &owned_v : owned, now_ms)) != 0)
        goto nomem;
    if ((rc = cg_group_records(c, g, m, true)) != 0)
        goto nomem;

    bool full = r->rebalance_timeout_ms != -1 &&
                (r->n_topic_names >= 0 || r->topic_regex.len >= 0) && r->n_owned >= 0;
    *out = (struct lm_cgroup_hb_resp){.error_code = KAFKA_NONE,
                                      .member_id = m->id,
                                      .member_epoch = m->epoch,
                                      .heartbeat_interval_ms = r->heartbeat_interval_ms > 0
                                                                   ? r->heartbeat_interval_ms
                                                                   : c->cfg.heartbeat_interval_ms};
    if (m->assignment_changed || full || joined) {
        out->has_assignment = true;
        out->n_assigned = m->assigned.n;
        out->assigned = m->assigned.v;
        m->assignment_changed = false;
    }
    cg_tpset_free(&owned_v);
    return 0;
nomem:
    cg_tpset_free(&owned_v);
    resp_error(out, KAFKA_UNKNOWN_SERVER_ERROR, NULL, r->member_id, r->member_epoch);
    return LM_E_NOMEM;
}

/* ---- describe, list, checks ---- */

static const char *group_state(const struct cgroup *g)
{
    if (g->n_members == 0)
        return "Empty";
    if (g->epoch > g->target_epoch)
        return "Assigning";
    for (int32_t i = 0; i < g->n_members; i++)
        if (g->members[i]->epoch != g->target_epoch || g->members[i]->state != M_STABLE)
            return "Reconciling";
    return "Stable";
}

int lm_cgroup_describe(struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                       struct kafka_str group_id, struct lm_cgroup_desc *out)
{
    (void)img;
    struct cgroup *g = cg_group_find(c, group_id, NULL);
    *out = (struct lm_cgroup_desc){.group_id = group_id, .state = "Dead"};
    if (g == NULL) {
        out->error_code = KAFKA_GROUP_ID_NOT_FOUND;
        return 0;
    }
    if (g->n_members > c->cap_desc) {
        struct lm_cgroup_desc_member *v =
            realloc(c->desc_members, (size_t)g->n_members * sizeof(*v));
        if (v == NULL) {
            out->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
            return LM_E_NOMEM;
        }
        c->desc_members = v;
        c->cap_desc = g->n_members;
    }
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct cmember *m = g->members[i];
        c->desc_members[i] = (struct lm_cgroup_desc_member){
            .member_id = m->id,
            .instance_id = m->instance_id,
            .rack_id = m->rack_id,
            .member_epoch = m->static_left ? LM_CGROUP_STATIC_LEAVE_EPOCH : m->epoch,
            .client_id = m->client_id.len >= 0 ? m->client_id : (struct kafka_str){"", 0},
            .client_host = m->client_host.len >= 0 ? m->client_host : (struct kafka_str){"", 0},
            .n_topic_names = m->n_names,
            .topic_names = m->names,
            .topic_regex = m->regex,
            .n_assigned = m->assigned.n,
            .assigned = m->assigned.v,
            .n_target = m->target.n,
            .target = m->target.v,
            .classic = m->classic,
        };
    }
    out->group_id = g->id;
    out->state = group_state(g);
    out->group_epoch = g->epoch;
    out->assignment_epoch = g->target_epoch;
    out->assignor = g->assignor;
    out->n_members = g->n_members;
    out->members = c->desc_members;
    return 0;
}

bool lm_cgroup_exists(const struct lm_cgroup_coord *c, struct kafka_str group_id,
                      int32_t *n_members)
{
    const struct cgroup *g = cg_group_find(c, group_id, NULL);
    if (n_members != NULL)
        *n_members = g != NULL ? g->n_members : 0;
    return g != NULL;
}

bool lm_cgroup_subscribed(const struct lm_cgroup_coord *c, struct kafka_str group_id,
                          struct kafka_str topic)
{
    const struct cgroup *g = cg_group_find(c, group_id, NULL);
    if (g == NULL || topic.len < 0)
        return false;
    struct lm_cgroup_topic t = {.name = topic};
    for (int32_t i = 0; i < g->n_members; i++)
        if (member_subscribes(g->members[i], &t))
            return true;
    return false;
}

void lm_cgroup_list(const struct lm_cgroup_coord *c,
                    void (*fn)(void *ctx, const struct lm_cgroup_list_entry *e), void *ctx)
{
    for (size_t i = 0; i < c->n_groups; i++) {
        const struct cgroup *g = c->groups[i];
        struct lm_cgroup_list_entry e = {g->id, g->partition, group_state(g)};
        fn(ctx, &e);
    }
}

int lm_cgroup_delete(struct lm_cgroup_coord *c, struct kafka_str group_id)
{
    struct cgroup *g = cg_group_find(c, group_id, NULL);
    if (g == NULL)
        return LM_E_NOT_FOUND;
    if (g->n_members > 0)
        return LM_E_EXISTS;
    size_t n = c->n_recs;
    int rc = group_tombstones(c, g);
    if (rc != 0) {
        cg_recs_truncate(c, n);
        return rc;
    }
    cg_group_drop(c, g);
    return 0;
}

/* The topic id the image has under name, false when none. */
bool cg_image_topic_id(const struct lm_cgroup_image *img, struct kafka_str name,
                       struct kafka_uuid *out)
{
    for (size_t i = 0; img != NULL && i < img->n_topics; i++) {
        struct lm_cgroup_topic t;
        img->topic(img->ctx, i, &t);
        if (kafka_str_eq(t.name, name)) {
            *out = t.id;
            return true;
        }
    }
    return false;
}

int16_t lm_cgroup_check_commit(const struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                               const struct lm_cgroup_commit *commit)
{
    const struct cgroup *g = cg_group_find(c, commit->group_id, NULL);
    if (g == NULL)
        return KAFKA_NONE;
    /* epoch -1: an admin client or a consumer outside group management, allowed while the
     * group is empty (Kafka ConsumerGroup.validateOffsetCommit) */
    if (commit->member_epoch < 0 && g->n_members == 0)
        return KAFKA_NONE;
    const struct cmember *m = cg_member_find(g, commit->member_id, NULL);
    if (m == NULL)
        return KAFKA_UNKNOWN_MEMBER_ID;
    /* a classic member commits with its generation, which must be its epoch */
    if (m->classic)
        return commit->member_epoch == m->epoch ? KAFKA_NONE : KAFKA_ILLEGAL_GENERATION;
    if (!commit->transactional && commit->api_version < 9)
        return KAFKA_UNSUPPORTED_VERSION;
    if (m->static_left)
        return commit->member_epoch == LM_CGROUP_STATIC_LEAVE_EPOCH ? KAFKA_NONE
                                                                    : KAFKA_STALE_MEMBER_EPOCH;
    if (commit->member_epoch == m->epoch)
        return KAFKA_NONE;
    if (commit->member_epoch > m->epoch || commit->member_epoch < 0)
        return KAFKA_STALE_MEMBER_EPOCH;
    /* KIP-1251: an epoch behind the member's passes for partitions it has held without a
     * break since that epoch or earlier (assignment epoch <= the request's epoch): the
     * heartbeat answer that moved it on has not reached it yet, and no other member can have
     * held them since. Any other partition fails the whole request. */
    struct kafka_str name = KAFKA_STR_NULL;
    struct kafka_uuid id = {{0}};
    bool known = false;
    for (int32_t i = 0; i < commit->n_partitions; i++) {
        const struct lm_cgroup_commit_tp *p = &commit->partitions[i];
        if (name.len < 0 || !kafka_str_eq(name, p->topic)) {
            name = p->topic;
            known = cg_image_topic_id(img, name, &id);
        }
        struct lm_cgroup_tp tp = {.topic_id = id, .partition = p->partition};
        int32_t e = known ? held_epoch(m, &tp) : -1;
        if (e < 0 || e > commit->member_epoch)
            return KAFKA_STALE_MEMBER_EPOCH;
    }
    return KAFKA_NONE;
}

int16_t lm_cgroup_check_fetch(const struct lm_cgroup_coord *c, struct kafka_str group_id,
                              struct kafka_str member_id, int32_t member_epoch)
{
    const struct cgroup *g = cg_group_find(c, group_id, NULL);
    if (g == NULL || (member_epoch < 0 && member_id.len < 0))
        return KAFKA_NONE;
    /* an admin fetch (no member) is served; a member's must match its epoch (Kafka
     * ConsumerGroup.validateOffsetFetch) */
    if (member_id.len <= 0 && member_epoch < 0)
        return KAFKA_NONE;
    const struct cmember *m = cg_member_find(g, member_id, NULL);
    if (m == NULL)
        return KAFKA_UNKNOWN_MEMBER_ID;
    int32_t have = m->static_left ? LM_CGROUP_STATIC_LEAVE_EPOCH : m->epoch;
    if (member_epoch == have)
        return KAFKA_NONE;
    return m->classic ? KAFKA_ILLEGAL_GENERATION : KAFKA_STALE_MEMBER_EPOCH;
}

/* ---- timers ---- */

int lm_cgroup_tick(struct lm_cgroup_coord *c, int64_t now_ms)
{
    int rc = 0;
    for (size_t gi = 0; gi < c->n_groups;) {
        struct cgroup *g = c->groups[gi];
        bool fenced = false, downgraded = false;
        for (int32_t i = 0; i < g->n_members;) {
            const struct cmember *m = g->members[i];
            /* session expiry, or a revocation not done within the rebalance timeout: the
             * member is fenced and its partitions go to the others (classic members: also
             * the join and sync timeouts) */
            if (m->session_deadline_ms <= now_ms || m->rebalance_deadline_ms <= now_ms ||
                m->join_deadline_ms <= now_ms || m->sync_deadline_ms <= now_ms) {
                if (downgrade_without(c, g, i)) {
                    downgraded = true;
                    break;
                }
                int r = cg_member_remove(c, g, i);
                rc = rc != 0 ? rc : r;
                g->epoch++;
                fenced = true;
                continue;
            }
            i++;
        }
        if (downgraded)
            continue; /* gi now holds another group */
        if (fenced) {
            int r = cg_group_records(c, g, NULL, true);
            rc = rc != 0 ? rc : r;
        }
        gi++;
    }
    return rc;
}

size_t lm_cgroup_drop_empty(struct lm_cgroup_coord *c,
                            bool (*keep)(void *ctx, struct kafka_str group_id), void *ctx)
{
    size_t dropped = 0;
    for (size_t i = 0; i < c->n_groups;) {
        struct cgroup *g = c->groups[i];
        if (g->n_members == 0 && !keep(ctx, g->id)) {
            size_t n = c->n_recs;
            if (group_tombstones(c, g) != 0) {
                /* kept for the next tick: its records stay as they were */
                cg_recs_truncate(c, n);
                i++;
                continue;
            }
            cg_group_free(g);
            c->groups[i] = c->groups[--c->n_groups];
            dropped++;
            continue;
        }
        i++;
    }
    return dropped;
}

int64_t lm_cgroup_next_deadline_ms(const struct lm_cgroup_coord *c)
{
    int64_t dl = INT64_MAX;
    for (size_t gi = 0; gi < c->n_groups; gi++) {
        const struct cgroup *g = c->groups[gi];
        for (int32_t i = 0; i < g->n_members; i++) {
            const struct cmember *m = g->members[i];
            if (m->session_deadline_ms < dl)
                dl = m->session_deadline_ms;
            if (m->rebalance_deadline_ms < dl)
                dl = m->rebalance_deadline_ms;
            if (m->join_deadline_ms < dl)
                dl = m->join_deadline_ms;
            if (m->sync_deadline_ms < dl)
                dl = m->sync_deadline_ms;
        }
    }
    return dl;
}

void lm_cgroup_unload(struct lm_cgroup_coord *c, int32_t partition)
{
    for (size_t i = 0; i < c->n_dg;) {
        if (c->dg[i]->partition == partition) {
            cg_group_free(c->dg[i]);
            memmove(&c->dg[i], &c->dg[i + 1], (c->n_dg - i - 1) * sizeof(*c->dg));
            c->n_dg--;
            continue;
        }
        i++;
    }
    for (size_t i = 0; i < c->n_groups;) {
        if (c->groups[i]->partition == partition) {
            cg_group_free(c->groups[i]);
            c->groups[i] = c->groups[--c->n_groups];
            continue;
        }
        i++;
    }
}

size_t lm_cgroup_n_groups(const struct lm_cgroup_coord *c)
{
    return c->n_groups;
}

/* ---- loading from __consumer_offsets ---- */

static int replay_member(struct lm_cgroup_coord *c, struct cgroup *g, struct kafka_str id,
                         struct cmember **out)
{
    struct cmember *m = cg_member_find(g, id, NULL);
    if (m == NULL) {
        if (g->n_members >= LM_CGROUP_MEMBERS_MAX)
            return LM_E_TOO_LARGE;
        m = cg_member_new();
        if (m == NULL)
            return LM_E_NOMEM;
        if (cg_str_set(&m->id, id) != 0 || cg_member_insert(g, m) != 0) {
            cg_member_free(m);
            return LM_E_NOMEM;
        }
    }
    (void)c;
    *out = m;
    return 0;
}

static int tpset_from(struct tpset *s, const struct lm_cgr_parts *p)
{
    if (cg_tpset_reserve(s, p->n) != 0)
        return LM_E_NOMEM;
    if (p->n > 0)
        memcpy(s->v, p->v, (size_t)p->n * sizeof(*p->v));
    s->n = p->n;
    return 0;
}

static int replay_member_meta(struct cmember *m, const struct lm_cgr_member_value *v)
{
    struct kafka_str *names = calloc((size_t)v->n_topic_names + 1, sizeof(*names));
    if (names == NULL)
        return LM_E_NOMEM;
    int32_t n = 0;
    int rc = 0;
    for (int32_t i = 0; i < v->n_topic_names && rc == 0; i++) {
        names[n] = KAFKA_STR_NULL;
        if ((rc = cg_str_set(&names[n], v->topic_names[i])) == 0)
            n++;
    }
    if (rc != 0 || cg_str_set(&m->instance_id, v->instance_id) != 0 ||
        cg_str_set(&m->rack_id, v->rack_id) != 0 || cg_str_set(&m->client_id, v->client_id) != 0 ||
        cg_str_set(&m->client_host, v->client_host) != 0 ||
        cg_str_set(&m->assignor, v->server_assignor) != 0 ||
        cg_str_set(&m->regex, v->topic_regex) != 0) {
        for (int32_t k = 0; k < n; k++)
            free((char *)names[k].ptr);
        free(names);
        return LM_E_NOMEM;
    }
    for (int32_t i = 0; i < m->n_names; i++)
        free((char *)m->names[i].ptr);
    free(m->names);
    m->names = names;
    m->n_names = n;
    m->rebalance_timeout_ms = v->rebalance_timeout_ms;
    m->loaded_meta = true;
    return cg_member_set_protos(m, v->has_classic, v->classic_session_timeout_ms,
                                v->n_classic_protocols, v->classic_protocols);
}

int lm_cgroup_replay(struct lm_cgroup_coord *c, int32_t partition, int32_t n_partitions,
                     struct kafka_bytes key, struct kafka_bytes value, int64_t *n_bad)
{
    LM_ASSERT(n_partitions > 0 && partition >= 0 && partition < n_partitions);
    struct lm_cgr_key k;
    bool tomb = value.len < 0 || value.ptr == NULL;
    int rc = key.len > 0 ? lm_cgr_key_decode(key.ptr, (size_t)key.len, &k) : LM_E_TRUNCATED;
    if (rc == 0 && (k.group.len == 0 || lm_gr_partition_for(k.group, n_partitions) != partition))
        rc = LM_E_CORRUPT; /* a record in the wrong partition: ignore it */
    if (rc != 0) {
        if (n_bad != NULL)
            (*n_bad)++;
        return 0;
    }
    if (k.type == LM_CGR_PARTITION_META || k.type == LM_CGR_REGEX)
        return 0; /* topic metadata is read from the image; regexes are resolved at each call */
    struct cgroup *g = cg_group_find(c, k.group, NULL);
    if (g != NULL && g->partition != partition) {
        if (n_bad != NULL)
            (*n_bad)++;
        return 0;
    }
    if (tomb) {
        if (g == NULL)
            return 0;
        int32_t mi = -1;
        struct cmember *m = key_is_member(k.type) ? cg_member_find(g, k.member, &mi) : NULL;
        switch (k.type) {
        case LM_CGR_GROUP_EPOCH:
            cg_group_drop(c, g);
            break;
        case LM_CGR_TARGET_EPOCH:
            g->target_epoch = 0;
            break;
        case LM_CGR_MEMBER:
            if (m != NULL) {
                cg_member_free(m);
                memmove(&g->members[mi], &g->members[mi + 1],
                        (size_t)(g->n_members - mi - 1) * sizeof(*g->members));
                g->n_members--;
            }
            break;
        case LM_CGR_TARGET_MEMBER:
            if (m != NULL)
                m->target.n = 0;
            break;
        case LM_CGR_CURRENT_MEMBER:
            if (m != NULL) {
                m->assigned.n = m->pending.n = 0;
                m->epoch = m->prev_epoch = 0;
                m->state = M_STABLE;
            }
            break;
        }
        return 0;
    }
    struct kafka_arena a;
    kafka_arena_init(&a, (size_t)value.len * 8 + 4096);
    union {
        struct lm_cgr_group_value gv;
        struct lm_cgr_member_value mv;
        int32_t target_epoch;
        struct lm_cgr_parts target;
        struct lm_cgr_current_value cur;
    } v;
    const uint8_t *vb = value.ptr;
    size_t vl = (size_t)value.len;
    switch (k.type) {
    case LM_CGR_GROUP_EPOCH:
        rc = lm_cgr_group_value_decode(vb, vl, &v.gv);
        if (rc == 0 && v.gv.epoch < 0)
            rc = LM_E_INVALID;
        break;
    case LM_CGR_MEMBER:
        rc = lm_cgr_member_value_decode(vb, vl, &a, &v.mv);
        if (rc == 0 && ((v.mv.instance_id.len == 0 || v.mv.rack_id.len == 0 ||
                         (v.mv.topic_regex.len > LM_CGROUP_REGEX_MAX))))
            rc = LM_E_INVALID;
        break;
    case LM_CGR_TARGET_EPOCH:
        rc = lm_cgr_target_epoch_value_decode(vb, vl, &v.target_epoch);
        if (rc == 0 && v.target_epoch < 0)
            rc = LM_E_INVALID;
        break;
    case LM_CGR_TARGET_MEMBER:
        rc = lm_cgr_target_member_value_decode(vb, vl, &a, &v.target);
        break;
    case LM_CGR_CURRENT_MEMBER:
        rc = lm_cgr_current_value_decode(vb, vl, &a, &v.cur);
        if (rc == 0 && v.cur.member_epoch < LM_CGROUP_STATIC_LEAVE_EPOCH)
            rc = LM_E_INVALID;
        break;
    default:
        LM_UNREACHABLE();
    }
    if (rc == 0 && g == NULL)
        rc = cg_group_create(c, k.group, partition, &g);
    struct cmember *m = NULL;
    if (rc == 0 && key_is_member(k.type))
        rc = replay_member(c, g, k.member, &m);
    if (rc == 0) {
        switch (k.type) {
        case LM_CGR_GROUP_EPOCH:
            g->epoch = v.gv.epoch;
            g->meta_hash = v.gv.has_metadata_hash ? (uint64_t)v.gv.metadata_hash : 0;
            g->loaded_epoch = true;
            break;
        case LM_CGR_MEMBER:
            rc = replay_member_meta(m, &v.mv);
            break;
        case LM_CGR_TARGET_EPOCH:
            g->target_epoch = v.target_epoch;
            break;
        case LM_CGR_TARGET_MEMBER:
            rc = tpset_from(&m->target, &v.target);
            break;
        case LM_CGR_CURRENT_MEMBER:
            m->static_left = v.cur.member_epoch == LM_CGROUP_STATIC_LEAVE_EPOCH;
            m->epoch = m->static_left ? v.cur.prev_member_epoch : v.cur.member_epoch;
            m->prev_epoch = v.cur.prev_member_epoch;
            m->state = v.cur.state == M_UNREVOKED || v.cur.state == M_UNRELEASED
                           ? (enum mstate)v.cur.state
                           : M_STABLE;
            if ((rc = tpset_from(&m->assigned, &v.cur.assigned)) == 0)
                rc = tpset_from(&m->pending, &v.cur.pending);
            break;
        }
    }
    kafka_arena_deinit(&a);
    if (rc == LM_E_NOMEM)
        return rc;
    if (rc != 0 && n_bad != NULL)
        (*n_bad)++;
    return 0;
}

/* Compiles a loaded member's regex as a heartbeat would; one that does not compile is
 * dropped (the member's next heartbeat gives it again). */
static void load_regex(struct cmember *m)
{
    if (m->has_re) {
        regfree(&m->re);
        m->has_re = false;
    }
    if (m->regex.len <= 0)
        return;
    size_t n = (size_t)m->regex.len + 5;
    char *pat = malloc(n);
    if (pat != NULL) {
        snprintf(pat, n, "^(%.*s)$", (int)m->regex.len, m->regex.ptr);
        m->has_re = regcomp(&m->re, pat, REG_EXTENDED | REG_NOSUB) == 0;
        free(pat);
    }
    if (!m->has_re) {
        free((char *)m->regex.ptr);
        m->regex = KAFKA_STR_NULL;
    }
}

struct load_held {
    struct lm_cgroup_tp tp;
    int32_t member;
    int32_t set; /* 0 assigned, 1 pending */
    int32_t index;
};

static int load_held_cmp(const void *a, const void *b)
{
    const struct load_held *x = a, *y = b;
    int c = lm_cgroup_tp_cmp(&x->tp, &y->tp);
    if (c != 0)
        return c;
    if (x->member != y->member)
        return x->member < y->member ? -1 : 1;
    return x->set < y->set ? -1 : x->set > y->set;
}

/* Brings a loaded group to the invariants the calls rely on: members with metadata only,
 * target epoch <= group epoch, member epochs <= group epoch, no partition held twice (by two
 * members, or assigned and pending at once: the later holder in member id order loses it). */
static int load_fix(struct cgroup *g)
{
    for (int32_t i = 0; i < g->n_members;) {
        if (!g->members[i]->loaded_meta) {
            cg_member_free(g->members[i]);
            memmove(&g->members[i], &g->members[i + 1],
                    (size_t)(g->n_members - i - 1) * sizeof(*g->members));
            g->n_members--;
            continue;
        }
        i++;
    }
    if (g->target_epoch > g->epoch)
        g->epoch = g->target_epoch;
    size_t n = 0;
    for (int32_t i = 0; i < g->n_members; i++) {
        struct cmember *m = g->members[i];
        if (m->epoch > g->epoch || m->epoch < 0)
            m->epoch = 0;
        if (m->prev_epoch > m->epoch || m->prev_epoch < 0)
            m->prev_epoch = 0;
        n += (size_t)m->assigned.n + (size_t)m->pending.n;
    }
    /* one sorted pass finds every partition held more than once */
    struct load_held *h = malloc((n + 1) * sizeof(*h));
    if (h == NULL)
        return LM_E_NOMEM;
    size_t k = 0;
    for (int32_t i = 0; i < g->n_members; i++) {
        struct tpset *sets[2] = {&g->members[i]->assigned, &g->members[i]->pending};
        for (int32_t s = 0; s < 2; s++)
            for (int32_t j = 0; j < sets[s]->n; j++)
                h[k++] = (struct load_held){sets[s]->v[j], i, s, j};
    }
    LM_ASSERT(k == n);
    qsort(h, n, sizeof(*h), load_held_cmp);
    for (size_t j = 1; j < n; j++) {
        if (lm_cgroup_tp_cmp(&h[j].tp, &h[j - 1].tp) != 0)
            continue;
        struct cmember *m = g->members[h[j].member];
        struct tpset *t = h[j].set == 0 ? &m->assigned : &m->pending;
        t->v[h[j].index].partition = -1; /* dropped below */
    }
    free(h);
    for (int32_t i = 0; i < g->n_members; i++) {
        struct cmember *m = g->members[i];
        struct tpset *sets[2] = {&m->assigned, &m->pending};
        for (int32_t s = 0; s < 2; s++) {
            int32_t w = 0;
            for (int32_t j = 0; j < sets[s]->n; j++)
                if (sets[s]->v[j].partition >= 0)
                    sets[s]->v[w++] = sets[s]->v[j];
            sets[s]->n = w;
        }
        if (m->state == M_UNREVOKED && m->pending.n == 0)
            m->state = M_STABLE;
    }
    return 0;
}

int lm_cgroup_load_end(struct lm_cgroup_coord *c, int32_t partition, int64_t now_ms,
                       int32_t (*session_timeout_ms)(void *ctx, struct kafka_str group_id),
                       void *ctx)
{
    for (size_t i = 0; i < c->n_groups;) {
        struct cgroup *g = c->groups[i];
        if (g->partition != partition) {
            i++;
            continue;
        }
        if (!g->loaded_epoch) {
            /* only member or assignment records were left of it */
            cg_group_free(g);
            c->groups[i] = c->groups[--c->n_groups];
            continue;
        }
        LM_TRY(load_fix(g));
        int32_t session_ms = session_timeout_ms != NULL ? session_timeout_ms(ctx, g->id) : 0;
        if (session_ms <= 0)
            session_ms = c->cfg.session_timeout_ms;
        for (int32_t k = 0; k < g->n_members; k++) {
            struct cmember *m = g->members[k];
            load_regex(m);
            cg_held_epochs_reset(m);
            /* session timeouts start again at the load (Kafka's coordinator does the same
             * when it becomes the group's coordinator) */
            m->session_deadline_ms =
                now_ms +
                (m->classic && m->classic_session_ms > 0 ? m->classic_session_ms : session_ms);
            m->rebalance_deadline_ms = INT64_MAX;
            if (m->state == M_UNREVOKED)
                m->rebalance_deadline_ms =
                    now_ms + (m->rebalance_timeout_ms > 0 ? m->rebalance_timeout_ms : 0);
            m->assignment_changed = true;
        }
        g->assignor = group_assignor(c, g);
        /* what was loaded counts as written */
        LM_TRY(cg_group_records(c, g, NULL, false));
        i++;
    }
    return 0;
}

/* ---- lifecycle ---- */

void lm_cgroup_config_default(struct lm_cgroup_config *cfg)
{
    *cfg = (struct lm_cgroup_config){
        .session_timeout_ms = 45000,
        .heartbeat_interval_ms = 5000,
        .max_size = INT32_MAX,
        .n_assignors = 2,
        .assignors = {"uniform", "range"},
        .rand_seed = 1,
        .classic_session_min_ms = 6000,
        .classic_session_max_ms = 1800000,
        .classic_max_size = INT32_MAX,
        .migration = LM_CGROUP_MIGRATION_BIDIRECTIONAL,
    };
}

int lm_cgroup_coord_new(const struct lm_cgroup_config *cfg, struct lm_cgroup_coord **out)
{
    LM_ASSERT(cfg->n_assignors >= 1 && cfg->n_assignors <= 2);
    for (int32_t k = 0; k < cfg->n_assignors; k++)
        if (strcmp(cfg->assignors[k], "uniform") != 0 && strcmp(cfg->assignors[k], "range") != 0)
            return LM_E_INVALID;
    struct lm_cgroup_coord *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LM_E_NOMEM;
    c->cfg = *cfg;
    c->rng = cfg->rand_seed;
    kafka_arena_init(&c->dg_arena, (size_t)256 << 20);
    *out = c;
    return 0;
}

void lm_cgroup_coord_free(struct lm_cgroup_coord *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_groups; i++)
        cg_group_free(c->groups[i]);
    free(c->groups);
    free(c->scratch_id);
    free(c->desc_members);
    free(c->classic_buf);
    free(c->leave_resps);
    for (size_t i = 0; i < c->n_dg; i++)
        cg_group_free(c->dg[i]);
    free(c->dg);
    if (c->dg_taken != NULL)
        cg_group_free(c->dg_taken);
    kafka_arena_deinit(&c->dg_arena);
    cg_recs_truncate(c, 0);
    free(c->recs);
    free(c->enc);
    free(c);
}

size_t lm_cgroup_records(const struct lm_cgroup_coord *c, const struct lm_cgroup_record **out)
{
    *out = c->recs;
    return c->n_recs;
}

void lm_cgroup_records_advance(struct lm_cgroup_coord *c)
{
    cg_recs_truncate(c, 0);
}
