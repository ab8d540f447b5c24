/* Classic group coordinator (see group.h). Structure follows Kafka's GroupCoordinator and
 * GroupMetadata (kafka.coordinator.group, 2.8-3.x); each function names the Kafka behaviour it
 * reproduces. Memory: the coordinator is on the control path; it allocates per group, member
 * and offset, and treats allocation failure as fatal (LM_ASSERT), as every input is bounded by
 * the request frame limit and group.max.size. */
#include "broker/group/group.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/group/group_records.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"
#include "protocol/kafka_errors.h"
#include "common/lm_grow.h"

#define NO_DEADLINE      INT64_MAX
#define TIMER_PASSES_MAX 8 /* bound on timer cascades within one tick */

/* ---- owned strings and bytes ---- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    LM_ASSERT(p != NULL);
    return p;
}

static void *xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    LM_ASSERT(q != NULL);
    return q;
}

static struct kafka_str sdup(struct kafka_str s)
{
    if (s.len < 0)
        return KAFKA_STR_NULL;
    char *p = xcalloc(1, (size_t)s.len + 1);
    if (s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    return (struct kafka_str){p, s.len};
}

static struct kafka_bytes bdup(struct kafka_bytes b)
{
    if (b.len < 0)
        return KAFKA_BYTES_NULL;
    uint8_t *p = xcalloc(1, (size_t)b.len + 1);
    if (b.len > 0)
        memcpy(p, b.ptr, (size_t)b.len);
    return (struct kafka_bytes){p, b.len};
}

static void sfree(struct kafka_str *s)
{
    free((void *)s->ptr);
    *s = KAFKA_STR_NULL;
}

static void bfree(struct kafka_bytes *b)
{
    free((void *)b->ptr);
    *b = KAFKA_BYTES_NULL;
}

static void sset(struct kafka_str *dst, struct kafka_str src)
{
    struct kafka_str n = sdup(src);
    sfree(dst);
    *dst = n;
}

static struct kafka_str cstr(const char *s)
{
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

static int str_cmp(struct kafka_str a, struct kafka_str b)
{
    int32_t al = a.len < 0 ? 0 : a.len, bl = b.len < 0 ? 0 : b.len;
    int32_t n = al < bl ? al : bl;
    int r = n > 0 ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    if (r != 0)
        return r;
    return al < bl ? -1 : (al > bl ? 1 : 0);
}

static bool str_eq(struct kafka_str a, struct kafka_str b)
{
    return kafka_str_eq(a, b);
}

static bool str_ieq(struct kafka_str a, const char *b)
{
    size_t bl = strlen(b);
    return a.len >= 0 && (size_t)a.len == bl && strncasecmp(a.ptr, b, bl) == 0;
}

/* ---- state ---- */

struct mproto {
    struct kafka_str name;
    struct kafka_bytes metadata;
};

struct member {
    struct kafka_str id;
    struct kafka_str instance_id; /* null: dynamic member */
    struct kafka_str client_id;
    struct kafka_str client_host;
    struct kafka_str protocol_type;
    int32_t session_ms;
    int32_t rebalance_ms;
    int32_t n_protocols;
    struct mproto *protocols;
    struct kafka_bytes assignment;
    bool awaiting_join;
    uint64_t join_token;
    bool awaiting_sync;
    uint64_t sync_token;
    bool is_new;       /* joined during this rebalance (Kafka MemberMetadata.isNew) */
    bool pending_sync; /* got its JoinGroup response, has not synced yet (KAFKA-13343?) */
    int64_t hb_deadline_ms;
};

struct pending_member {
    struct kafka_str id;
    int64_t deadline_ms;
};

struct offset_entry {
    struct kafka_str topic;
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;
    struct kafka_str metadata;
    int64_t commit_ts_ms;
    int64_t expire_ts_ms; /* -1: none (KIP-211 semantics) */
};

struct group {
    struct group *next; /* hash chain */
    uint32_t hash;
    int32_t partition;
    struct kafka_str id;
    enum lm_group_state state;
    int64_t state_ts_ms;
    int32_t generation;
    struct kafka_str protocol_type; /* null: none (simple/offsets-only group) */
    struct kafka_str protocol_name; /* null: none */
    struct kafka_str leader;        /* null: none */
    int32_t n_members, cap_members;
    struct member **members; /* join order */
    int32_t n_pending, cap_pending;
    struct pending_member *pending;
    int64_t join_deadline_ms;
    bool join_initial; /* InitialDelayedJoin (KIP-134) rather than DelayedJoin */
    int32_t initial_remaining_ms;
    bool new_member_added;
    int64_t sync_deadline_ms;
    bool topics_known; /* subscribed topics parsed (Kafka subscribedTopics) */
    int32_t n_topics;
    struct kafka_str *topics;
    int32_t n_offsets, cap_offsets;
    struct offset_entry *offsets; /* sorted by (topic, partition) */
    bool has_metadata;            /* loaded: a group metadata record was seen */
};

struct lm_group_coord {
    struct lm_group_config cfg;
    uint64_t rng;
    size_t n_groups;
    size_t n_buckets;
    struct group **buckets;
    uint8_t owned[LM_GROUP_PARTITIONS_MAX];
    uint8_t loading[LM_GROUP_PARTITIONS_MAX];
    int64_t next_expiry_check_ms;
    /* output */
    struct kafka_arena arena;
    size_t n_records, cap_records;
    struct lm_group_record *records;
    size_t n_resps, cap_resps;
    struct lm_group_resp *resps;
};

static const char *const STATE_NAMES[] = {"Empty", "PreparingRebalance", "CompletingRebalance",
                                          "Stable", "Dead"};

const char *lm_group_state_name(enum lm_group_state s)
{
    LM_ASSERT((unsigned)s < LM_ARRAY_LEN(STATE_NAMES));
    return STATE_NAMES[s];
}

void lm_group_config_default(struct lm_group_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->session_timeout_min_ms = 6000;
    cfg->session_timeout_max_ms = 1800000;
    cfg->initial_rebalance_delay_ms = 3000;
    cfg->max_size = INT32_MAX;
    cfg->new_member_join_timeout_ms = 300000;
    cfg->offsets_retention_ms = 7LL * 24 * 3600 * 1000;
    cfg->offsets_retention_check_interval_ms = 600000;
    cfg->offset_metadata_max_bytes = 4096;
    cfg->offsets_topic_partitions = 50;
    cfg->rand_seed = 0x6c616d696e6172ULL;
}

/* ---- output ---- */

static void *oalloc(struct lm_group_coord *c, size_t n)
{
    void *p = kafka_arena_alloc(&c->arena, n ? n : 1, 16);
    LM_ASSERT(p != NULL);
    return p;
}

static struct kafka_str ostr(struct lm_group_coord *c, struct kafka_str s)
{
    if (s.len < 0)
        return KAFKA_STR_NULL;
    char *p = oalloc(c, (size_t)s.len + 1);
    if (s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    return (struct kafka_str){p, s.len};
}

static struct kafka_bytes obytes(struct lm_group_coord *c, struct kafka_bytes b)
{
    if (b.len < 0)
        return KAFKA_BYTES_NULL;
    uint8_t *p = oalloc(c, (size_t)b.len + 1);
    if (b.len > 0)
        memcpy(p, b.ptr, (size_t)b.len);
    return (struct kafka_bytes){p, b.len};
}

static struct lm_group_resp *push_resp(struct lm_group_coord *c, uint64_t token, uint8_t kind)
{
    if (c->n_resps == c->cap_resps) {
        int grc = LM_GROW(c->resps, c->cap_resps, c->n_resps + 1, 16);
        LM_ASSERT(grc == 0); /* the coordinator's outputs cannot be dropped */
    }
    struct lm_group_resp *r = &c->resps[c->n_resps++];
    memset(r, 0, sizeof(*r));
    r->token = token;
    r->kind = kind;
    return r;
}

static void push_record(struct lm_group_coord *c, int32_t partition, const struct lm_gr_key *k,
                        const struct lm_gr_offset_value *ov, const struct lm_gr_group_value *gv)
{
    if (c->n_records == c->cap_records) {
        int grc = LM_GROW(c->records, c->cap_records, c->n_records + 1, 16);
        LM_ASSERT(grc == 0);
    }
    struct lm_group_record *r = &c->records[c->n_records++];
    r->partition = partition;
    size_t kn = lm_gr_key_size(k);
    uint8_t *kb = oalloc(c, kn);
    struct kafka_writer w;
    kafka_writer_init(&w, kb, kn);
    LM_ASSERT(lm_gr_key_encode(&w, k) == 0 && w.pos == kn);
    r->key = (struct kafka_bytes){kb, (int32_t)kn};
    r->value = KAFKA_BYTES_NULL;
    if (ov || gv) {
        size_t vn = ov ? lm_gr_offset_value_size(ov) : lm_gr_group_value_size(gv);
        uint8_t *vb = oalloc(c, vn);
        kafka_writer_init(&w, vb, vn);
        LM_ASSERT((ov ? lm_gr_offset_value_encode(&w, ov) : lm_gr_group_value_encode(&w, gv)) == 0);
        LM_ASSERT(w.pos == vn);
        r->value = (struct kafka_bytes){vb, (int32_t)vn};
    }
}

bool lm_group_coord_ready(struct lm_group_coord *c, struct lm_group_ready *rd)
{
    rd->n_records = c->n_records;
    rd->records = c->records;
    rd->n_resps = c->n_resps;
    rd->resps = c->resps;
    return c->n_records > 0 || c->n_resps > 0;
}

void lm_group_coord_advance(struct lm_group_coord *c)
{
    c->n_records = 0;
    c->n_resps = 0;
    kafka_arena_reset(&c->arena);
}

/* ---- group table ---- */

static uint32_t fnv1a(struct kafka_str s)
{
    return lm_fnv1a32(s.ptr, s.len > 0 ? (size_t)s.len : 0);
}

static struct group *group_find(const struct lm_group_coord *c, struct kafka_str id)
{
    uint32_t h = fnv1a(id);
    for (struct group *g = c->buckets[h % c->n_buckets]; g; g = g->next)
        if (g->hash == h && str_eq(g->id, id))
            return g;
    return NULL;
}

static void table_grow(struct lm_group_coord *c)
{
    size_t nb = c->n_buckets * 2;
    struct group **b = xcalloc(nb, sizeof(*b));
    for (size_t i = 0; i < c->n_buckets; i++) {
        struct group *g = c->buckets[i];
        while (g) {
            struct group *next = g->next;
            g->next = b[g->hash % nb];
            b[g->hash % nb] = g;
            g = next;
        }
    }
    free(c->buckets);
    c->buckets = b;
    c->n_buckets = nb;
}

static void set_state(struct group *g, enum lm_group_state s, int64_t now_ms)
{
    g->state = s;
    g->state_ts_ms = now_ms; /* Kafka GroupMetadata.transitionTo sets currentStateTimestamp */
}

static struct group *group_create(struct lm_group_coord *c, struct kafka_str id, int64_t now_ms)
{
    LM_ASSERT(group_find(c, id) == NULL);
    if (c->n_groups >= c->n_buckets)
        table_grow(c);
    struct group *g = xcalloc(1, sizeof(*g));
    g->id = sdup(id);
    g->hash = fnv1a(id);
    g->partition = lm_gr_partition_for(id, c->cfg.offsets_topic_partitions);
    g->protocol_type = KAFKA_STR_NULL;
    g->protocol_name = KAFKA_STR_NULL;
    g->leader = KAFKA_STR_NULL;
    g->join_deadline_ms = NO_DEADLINE;
    g->sync_deadline_ms = NO_DEADLINE;
    set_state(g, LM_GROUP_EMPTY, now_ms);
    size_t b = g->hash % c->n_buckets;
    g->next = c->buckets[b];
    c->buckets[b] = g;
    c->n_groups++;
    return g;
}

static void member_free(struct member *m)
{
    sfree(&m->id);
    sfree(&m->instance_id);
    sfree(&m->client_id);
    sfree(&m->client_host);
    sfree(&m->protocol_type);
    for (int32_t i = 0; i < m->n_protocols; i++) {
        sfree(&m->protocols[i].name);
        bfree(&m->protocols[i].metadata);
    }
    free(m->protocols);
    bfree(&m->assignment);
    free(m);
}

static void topics_clear(struct group *g)
{
    for (int32_t i = 0; i < g->n_topics; i++)
        sfree(&g->topics[i]);
    free(g->topics);
    g->topics = NULL;
    g->n_topics = 0;
    g->topics_known = false;
}

static void offset_entry_free(struct offset_entry *e)
{
    sfree(&e->topic);
    sfree(&e->metadata);
}

static void group_free(struct group *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        member_free(g->members[i]);
    free(g->members);
    for (int32_t i = 0; i < g->n_pending; i++)
        sfree(&g->pending[i].id);
    free(g->pending);
    for (int32_t i = 0; i < g->n_offsets; i++)
        offset_entry_free(&g->offsets[i]);
    free(g->offsets);
    topics_clear(g);
    sfree(&g->id);
    sfree(&g->protocol_type);
    sfree(&g->protocol_name);
    sfree(&g->leader);
    free(g);
}

static void group_destroy(struct lm_group_coord *c, struct group *g)
{
    struct group **pp = &c->buckets[g->hash % c->n_buckets];
    while (*pp != g) {
        LM_ASSERT(*pp != NULL);
        pp = &(*pp)->next;
    }
    *pp = g->next;
    LM_ASSERT(c->n_groups > 0);
    c->n_groups--;
    group_free(g);
}

/* ---- members ---- */

static struct member *member_find(const struct group *g, struct kafka_str id)
{
    if (id.len <= 0)
        return NULL;
    for (int32_t i = 0; i < g->n_members; i++)
        if (str_eq(g->members[i]->id, id))
            return g->members[i];
    return NULL;
}

static struct member *static_member_find(const struct group *g, struct kafka_str instance_id)
{
    if (instance_id.len < 0)
        return NULL;
    for (int32_t i = 0; i < g->n_members; i++)
        if (g->members[i]->instance_id.len >= 0 && str_eq(g->members[i]->instance_id, instance_id))
            return g->members[i];
    return NULL;
}

static int32_t pending_find(const struct group *g, struct kafka_str id)
{
    if (id.len <= 0)
        return -1;
    for (int32_t i = 0; i < g->n_pending; i++)
        if (str_eq(g->pending[i].id, id))
            return i;
    return -1;
}

static void pending_remove_at(struct group *g, int32_t i)
{
    LM_ASSERT(i >= 0 && i < g->n_pending);
    sfree(&g->pending[i].id);
    memmove(&g->pending[i], &g->pending[i + 1],
            (size_t)(g->n_pending - i - 1) * sizeof(*g->pending));
    g->n_pending--;
}

/* Kafka GroupMetadata.isStaticMemberFenced: the request names an instance id whose current
 * member id is a different one. */
static bool static_member_fenced(const struct group *g, struct kafka_str instance_id,
                                 struct kafka_str member_id)
{
    if (instance_id.len < 0)
        return false;
    struct member *m = static_member_find(g, instance_id);
    return m != NULL && !str_eq(m->id, member_id);
}

static bool is_leader(const struct group *g, struct kafka_str member_id)
{
    return g->leader.len >= 0 && str_eq(g->leader, member_id);
}

static int32_t n_awaiting_join(const struct group *g)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_members; i++)
        n += g->members[i]->awaiting_join;
    return n;
}

static int32_t rebalance_timeout_ms(const struct group *g)
{
    int32_t t = 0; /* Kafka GroupMetadata.rebalanceTimeoutMs: the largest of the members' */
    for (int32_t i = 0; i < g->n_members; i++)
        if (g->members[i]->rebalance_ms > t)
            t = g->members[i]->rebalance_ms;
    return t;
}

static const struct mproto *member_protocol(const struct member *m, struct kafka_str name)
{
    for (int32_t i = 0; i < m->n_protocols; i++)
        if (str_eq(m->protocols[i].name, name))
            return &m->protocols[i];
    return NULL;
}

static int32_t support_count(const struct group *g, struct kafka_str name)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_members; i++)
        n += member_protocol(g->members[i], name) != NULL;
    return n;
}

/* Kafka GroupMetadata.supportsProtocols: an Empty group takes any non-empty type and list; any
 * other group needs the same protocol type and one protocol every current member supports. */
static bool supports_protocols(const struct group *g, struct kafka_str type, int32_t n,
                               const struct lm_group_protocol *protos)
{
    if (g->state == LM_GROUP_EMPTY)
        return type.len > 0 && n > 0;
    if (g->protocol_type.len < 0 || !str_eq(g->protocol_type, type))
        return false;
    for (int32_t i = 0; i < n; i++)
        if (support_count(g, protos[i].name) == g->n_members)
            return true;
    return false;
}

/* Kafka GroupMetadata.selectProtocol: among the protocols every member supports, each member
 * votes for the first of its own list; most votes wins. Kafka breaks ties by hash-map order;
 * we break them by the first member's preference order, which is deterministic. */
static struct kafka_str select_protocol(const struct group *g)
{
    LM_ASSERT(g->n_members > 0);
    const struct member *first = g->members[0];
    struct kafka_str best = KAFKA_STR_NULL;
    int32_t best_votes = -1;
    for (int32_t ci = 0; ci < first->n_protocols; ci++) {
        struct kafka_str cand = first->protocols[ci].name;
        if (support_count(g, cand) != g->n_members)
            continue;
        int32_t votes = 0;
        for (int32_t mi = 0; mi < g->n_members; mi++) {
            const struct member *m = g->members[mi];
            for (int32_t k = 0; k < m->n_protocols; k++) {
                if (support_count(g, m->protocols[k].name) == g->n_members) {
                    votes += str_eq(m->protocols[k].name, cand);
                    break;
                }
            }
        }
        if (votes > best_votes) {
            best_votes = votes;
            best = cand;
        }
    }
    LM_ASSERT(best.len >= 0); /* supports_protocols guarantees a common protocol */
    return best;
}

static void member_set_protocols(struct member *m, int32_t n, const struct lm_group_protocol *p)
{
    for (int32_t i = 0; i < m->n_protocols; i++) {
        sfree(&m->protocols[i].name);
        bfree(&m->protocols[i].metadata);
    }
    free(m->protocols);
    m->protocols = xcalloc((size_t)n, sizeof(*m->protocols));
    m->n_protocols = n;
    for (int32_t i = 0; i < n; i++) {
        m->protocols[i].name = sdup(p[i].name);
        struct kafka_bytes md =
            p[i].metadata.len < 0 ? (struct kafka_bytes){NULL, 0} : p[i].metadata;
        m->protocols[i].metadata = bdup(md);
    }
}

/* Kafka MemberMetadata.matches: same protocols, same order, same metadata bytes. */
static bool member_matches(const struct member *m, int32_t n, const struct lm_group_protocol *p)
{
    if (m->n_protocols != n)
        return false;
    for (int32_t i = 0; i < n; i++) {
        int32_t l1 = m->protocols[i].metadata.len,
                l2 = p[i].metadata.len < 0 ? 0 : p[i].metadata.len;
        if (!str_eq(m->protocols[i].name, p[i].name) || l1 != l2 ||
            (l1 > 0 && memcmp(m->protocols[i].metadata.ptr, p[i].metadata.ptr, (size_t)l1) != 0))
            return false;
    }
    return true;
}

/* Kafka GroupMetadata.remove: drop the member; a leaving leader hands over to the first
 * remaining member. Parked requests must have been answered by the caller. */
static void member_remove_raw(struct group *g, struct member *m)
{
    LM_ASSERT(!m->awaiting_join && !m->awaiting_sync);
    int32_t i = 0;
    while (i < g->n_members && g->members[i] != m)
        i++;
    LM_ASSERT(i < g->n_members);
    memmove(&g->members[i], &g->members[i + 1],
            (size_t)(g->n_members - i - 1) * sizeof(*g->members));
    g->n_members--;
    if (is_leader(g, m->id)) {
        sfree(&g->leader);
        if (g->n_members > 0)
            g->leader = sdup(g->members[0]->id);
    }
    member_free(m);
}

/* ---- responses ---- */

static void join_error(struct lm_group_coord *c, uint64_t token, int16_t err,
                       struct kafka_str member_id)
{
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_JOIN);
    r->u.join.error_code = err;
    r->u.join.generation_id = -1;
    r->u.join.protocol_type = KAFKA_STR_NULL;
    r->u.join.protocol_name = KAFKA_STR_NULL;
    r->u.join.leader = cstr("");
    r->u.join.member_id = ostr(c, member_id.len < 0 ? cstr("") : member_id);
}

/* A successful JoinGroup response for member m; the leader (and only it) gets every member's
 * metadata for the chosen protocol (Kafka GroupMetadata.currentMemberMetadata). */
static void join_success(struct lm_group_coord *c, struct group *g, uint64_t token,
                         const struct member *m, struct kafka_str leader, bool with_members)
{
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_JOIN);
    struct lm_group_join_resp *j = &r->u.join;
    j->error_code = KAFKA_NONE;
    j->generation_id = g->generation;
    j->protocol_type = ostr(c, g->protocol_type);
    j->protocol_name = ostr(c, g->protocol_name);
    j->leader = ostr(c, leader.len < 0 ? cstr("") : leader);
    j->member_id = ostr(c, m->id);
    j->skip_assignment = false;
    if (!with_members)
        return;
    j->members = oalloc(c, (size_t)g->n_members * sizeof(*j->members));
    j->n_members = g->n_members;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct member *o = g->members[i];
        const struct mproto *p = member_protocol(o, g->protocol_name);
        LM_ASSERT(p != NULL);
        j->members[i].member_id = ostr(c, o->id);
        j->members[i].group_instance_id = ostr(c, o->instance_id);
        j->members[i].metadata = obytes(c, p->metadata);
    }
}

static void sync_reply(struct lm_group_coord *c, struct group *g, uint64_t token, int16_t err,
                       struct kafka_bytes assignment)
{
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_SYNC);
    r->u.sync.error_code = err;
    if (err == KAFKA_NONE && g) {
        r->u.sync.protocol_type = ostr(c, g->protocol_type);
        r->u.sync.protocol_name = ostr(c, g->protocol_name);
        r->u.sync.assignment =
            obytes(c, assignment.len < 0 ? (struct kafka_bytes){NULL, 0} : assignment);
    } else {
        r->u.sync.protocol_type = KAFKA_STR_NULL;
        r->u.sync.protocol_name = KAFKA_STR_NULL;
        r->u.sync.assignment = (struct kafka_bytes){(const uint8_t *)"", 0};
    }
}

/* Answer a member's parked JoinGroup with an error (Kafka maybeInvokeJoinCallback). */
static void fail_parked_join(struct lm_group_coord *c, struct member *m, int16_t err,
                             struct kafka_str member_id)
{
    if (!m->awaiting_join)
        return;
    m->awaiting_join = false;
    join_error(c, m->join_token, err, member_id);
}

static void fail_parked_sync(struct lm_group_coord *c, struct member *m, int16_t err)
{
    if (!m->awaiting_sync)
        return;
    m->awaiting_sync = false;
    sync_reply(c, NULL, m->sync_token, err, KAFKA_BYTES_NULL);
}

/* ---- records ---- */

/* Kafka GroupMetadataManager.storeGroup: the group metadata record, members with their
 * subscription for the chosen protocol and their assignment. */
static void emit_group_record(struct lm_group_coord *c, struct group *g)
{
    struct lm_gr_key k = {.version = LM_GR_KEY_GROUP, .group = g->id, .topic = KAFKA_STR_NULL};
    struct lm_gr_group_value v = {
        .version = 3,
        .protocol_type = g->protocol_type.len < 0 ? cstr("") : g->protocol_type,
        .generation = g->generation,
        .protocol = g->protocol_name,
        .leader = g->leader,
        .state_ts_ms = g->state_ts_ms,
        .n_members = g->n_members,
    };
    struct lm_gr_member *ms = g->n_members ? xcalloc((size_t)g->n_members, sizeof(*ms)) : NULL;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct member *m = g->members[i];
        const struct mproto *p =
            g->protocol_name.len >= 0 ? member_protocol(m, g->protocol_name) : NULL;
        ms[i] = (struct lm_gr_member){
            .member_id = m->id,
            .instance_id = m->instance_id,
            .client_id = m->client_id,
            .client_host = m->client_host,
            .rebalance_timeout_ms = m->rebalance_ms,
            .session_timeout_ms = m->session_ms,
            .subscription = p ? p->metadata : (struct kafka_bytes){(const uint8_t *)"", 0},
            .assignment = m->assignment.len < 0 ? (struct kafka_bytes){(const uint8_t *)"", 0}
                                                : m->assignment,
        };
    }
    v.members = ms;
    push_record(c, g->partition, &k, NULL, &v);
    free(ms);
}

static void emit_group_tombstone(struct lm_group_coord *c, struct group *g)
{
    struct lm_gr_key k = {.version = LM_GR_KEY_GROUP, .group = g->id, .topic = KAFKA_STR_NULL};
    push_record(c, g->partition, &k, NULL, NULL);
}

static void emit_offset_record(struct lm_group_coord *c, struct group *g,
                               const struct offset_entry *e, bool tombstone)
{
    struct lm_gr_key k = {.version = LM_GR_KEY_OFFSET_V1,
                          .group = g->id,
                          .topic = e->topic,
                          .partition = e->partition};
    if (tombstone) {
        push_record(c, g->partition, &k, NULL, NULL);
        return;
    }
    /* Kafka writes value v1 only when an explicit expire timestamp exists (OffsetCommit v2-4
     * retention_time_ms), else v3 with the leader epoch. */
    struct lm_gr_offset_value v = {
        .version = e->expire_ts_ms >= 0 ? 1 : 3,
        .offset = e->offset,
        .leader_epoch = e->leader_epoch,
        .metadata = e->metadata,
        .commit_ts_ms = e->commit_ts_ms,
        .expire_ts_ms = e->expire_ts_ms,
    };
    push_record(c, g->partition, &k, &v, NULL);
}

/* ---- offsets ---- */

static int offset_cmp(const struct offset_entry *e, struct kafka_str topic, int32_t partition)
{
    int r = str_cmp(e->topic, topic);
    if (r != 0)
        return r;
    return e->partition < partition ? -1 : (e->partition > partition ? 1 : 0);
}

/* Binary search: returns the index of (topic, partition) or, negated minus one, where it goes. */
static int32_t offset_search(const struct group *g, struct kafka_str topic, int32_t partition)
{
    int32_t lo = 0, hi = g->n_offsets;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        int r = offset_cmp(&g->offsets[mid], topic, partition);
        if (r == 0)
            return mid;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -lo - 1;
}

static struct offset_entry *offset_put(struct group *g, struct kafka_str topic, int32_t partition)
{
    int32_t i = offset_search(g, topic, partition);
    if (i >= 0)
        return &g->offsets[i];
    i = -i - 1;
    if (g->n_offsets == g->cap_offsets) {
        int grc = LM_GROW(g->offsets, g->cap_offsets, (size_t)g->n_offsets + 1, 8);
        LM_ASSERT(grc == 0);
    }
    memmove(&g->offsets[i + 1], &g->offsets[i], (size_t)(g->n_offsets - i) * sizeof(*g->offsets));
    g->n_offsets++;
    struct offset_entry *e = &g->offsets[i];
    memset(e, 0, sizeof(*e));
    e->topic = sdup(topic);
    e->partition = partition;
    e->metadata = sdup(cstr(""));
    e->leader_epoch = -1;
    e->expire_ts_ms = -1;
    return e;
}

static void offset_remove_at(struct group *g, int32_t i)
{
    LM_ASSERT(i >= 0 && i < g->n_offsets);
    offset_entry_free(&g->offsets[i]);
    memmove(&g->offsets[i], &g->offsets[i + 1],
            (size_t)(g->n_offsets - i - 1) * sizeof(*g->offsets));
    g->n_offsets--;
}

/* ---- subscribed topics (for OffsetDelete and offset expiry) ---- */

static void collect_topic(void *ctx, struct kafka_str topic)
{
    struct group *g = ctx;
    for (int32_t i = 0; i < g->n_topics; i++)
        if (str_eq(g->topics[i], topic))
            return;
    g->topics = xrealloc(g->topics, (size_t)(g->n_topics + 1) * sizeof(*g->topics));
    g->topics[g->n_topics++] = sdup(topic);
}

int lm_group_consumer_subscription_topics(struct kafka_bytes metadata,
                                          void (*fn)(void *ctx, struct kafka_str topic), void *ctx)
{
    /* ConsumerProtocolSubscription (Kafka consumer protocol, never flexible): version i16,
     * topics [string], user_data bytes?, then v1+ owned partitions, v2+ generation, v3+ rack.
     * Only the topics matter here, so later fields need not be read. */
    if (metadata.len < 0)
        return LM_E_INVALID;
    struct kafka_reader r;
    kafka_reader_init(&r, metadata.ptr, (size_t)metadata.len);
    int16_t version;
    int32_t n;
    int rc = kafka_read_int16(&r, &version);
    if (rc == 0 && version < 0)
        rc = LM_E_INVALID;
    if (rc == 0)
        rc = kafka_read_array_count(&r, 2, &n);
    if (rc == 0 && n < 0)
        rc = LM_E_INVALID;
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        struct kafka_str t;
        rc = kafka_read_str(&r, &t);
        if (rc == 0 && t.len < 0)
            rc = LM_E_INVALID;
        if (rc == 0)
            fn(ctx, t);
    }
    return rc;
}

/* Kafka GroupMetadata.computeSubscribedTopics: only for protocol type "consumer"; unknown (so
 * every topic counts as subscribed) when a subscription does not parse. */
static void compute_subscribed_topics(struct group *g)
{
    topics_clear(g);
    if (!str_eq(g->protocol_type, cstr("consumer")))
        return;
    if (g->n_members == 0) {
        g->topics_known = true;
        return;
    }
    if (g->protocol_name.len < 0)
        return;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct mproto *p = member_protocol(g->members[i], g->protocol_name);
        if (!p || lm_group_consumer_subscription_topics(p->metadata, collect_topic, g) != 0) {
            topics_clear(g);
            return;
        }
    }
    g->topics_known = true;
}

static bool subscribed_to(const struct group *g, struct kafka_str topic)
{
    if (!g->topics_known)
        return true;
    for (int32_t i = 0; i < g->n_topics; i++)
        if (str_eq(g->topics[i], topic))
            return true;
    return false;
}

/* ---- the rebalance ---- */

static void prepare_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms);

static bool all_joined(const struct group *g)
{
    /* Kafka GroupMetadata.hasAllMembersJoined */
    return n_awaiting_join(g) == g->n_members && g->n_pending == 0;
}

/* Kafka GroupMetadata.maybeElectNewJoinedLeader: the leader must be a member that rejoined. */
static bool elect_joined_leader(struct group *g)
{
    if (g->leader.len < 0)
        return false;
    struct member *l = member_find(g, g->leader);
    LM_ASSERT(l != NULL);
    if (l->awaiting_join)
        return true;
    for (int32_t i = 0; i < g->n_members; i++) {
        if (g->members[i]->awaiting_join) {
            sset(&g->leader, g->members[i]->id);
            return true;
        }
    }
    return false;
}

/* Kafka GroupMetadata.initNextGeneration */
static void init_next_generation(struct group *g, int64_t now_ms)
{
    g->generation++;
    sfree(&g->protocol_name);
    if (g->n_members > 0) {
        g->protocol_name = sdup(select_protocol(g));
        set_state(g, LM_GROUP_COMPLETING_REBALANCE, now_ms);
    } else {
        set_state(g, LM_GROUP_EMPTY, now_ms);
    }
    compute_subscribed_topics(g);
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
            fail_parked_sync(c, m, KAFKA_REBALANCE_IN_PROGRESS);
            member_remove_raw(g, m);
        } else {
            i++;
        }
    }
    if (!elect_joined_leader(g) && g->n_members > 0) {
        /* Only static members that did not rejoin are left: wait another rebalance timeout
         * for them (or for their session to expire), as Kafka does. */
        g->join_deadline_ms = now_ms + rebalance_timeout_ms(g);
        return;
    }
    init_next_generation(g, now_ms);
    if (g->state == LM_GROUP_EMPTY) {
        emit_group_record(c, g);
        return;
    }
    for (int32_t i = 0; i < g->n_members; i++) {
        struct member *m = g->members[i];
        if (m->awaiting_join) {
            m->awaiting_join = false;
            join_success(c, g, m->join_token, m, g->leader, is_leader(g, m->id));
        }
        m->hb_deadline_ms = now_ms + m->session_ms;
        m->is_new = false;
        m->pending_sync = true;
    }
    /* Kafka schedulePendingSync: members that do not sync within the rebalance timeout are
     * removed and the group rebalances again. */
    g->sync_deadline_ms = now_ms + rebalance_timeout_ms(g);
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
        bfree(&m->assignment);
        fail_parked_sync(c, m, err);
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
        int32_t rt = rebalance_timeout_ms(g);
        g->join_initial = true;
        g->new_member_added = false;
        g->initial_remaining_ms = rt - d > 0 ? rt - d : 0;
        g->join_deadline_ms = now_ms + d;
    } else {
        g->join_initial = false;
        g->join_deadline_ms = now_ms + rebalance_timeout_ms(g);
    }
    set_state(g, LM_GROUP_PREPARING_REBALANCE, now_ms);
    maybe_complete_join(c, g, now_ms);
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
    fail_parked_join(c, m, KAFKA_UNKNOWN_MEMBER_ID, cstr(""));
    fail_parked_sync(c, m, KAFKA_UNKNOWN_MEMBER_ID);
    member_remove_raw(g, m);
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
static void group_timers(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    for (int pass = 0; pass < TIMER_PASSES_MAX; pass++) {
        bool fired = false;
        for (int32_t i = 0; i < g->n_pending;) {
            if (g->pending[i].deadline_ms <= now_ms) {
                /* removePendingMemberAndUpdateGroup */
                pending_remove_at(g, i);
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
                    fail_parked_join(c, m, KAFKA_UNKNOWN_MEMBER_ID, cstr(""));
                    fail_parked_sync(c, m, KAFKA_UNKNOWN_MEMBER_ID);
                    member_remove_raw(g, m);
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

/* ---- coordinator status ---- */

/* Kafka GroupCoordinator.validateGroupStatus: group id valid for the API, this coordinator
 * owns its partition, and the partition is loaded. */
static int16_t group_status(const struct lm_group_coord *c, struct kafka_str group_id,
                            bool nonempty_id)
{
    if (group_id.len < 0 || (nonempty_id && group_id.len == 0))
        return KAFKA_INVALID_GROUP_ID;
    int32_t p = lm_gr_partition_for(group_id, c->cfg.offsets_topic_partitions);
    if (!c->owned[p])
        return KAFKA_NOT_COORDINATOR;
    if (c->loading[p])
        return KAFKA_COORDINATOR_LOAD_IN_PROGRESS;
    return KAFKA_NONE;
}

int32_t lm_group_partition_of(const struct lm_group_coord *c, struct kafka_str group_id)
{
    return lm_gr_partition_for(group_id, c->cfg.offsets_topic_partitions);
}

/* ---- member ids ---- */

static uint64_t rng_next(struct lm_group_coord *c)
{
    /* splitmix64: deterministic from the configured seed */
    uint64_t z = (c->rng += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* Kafka GroupMetadata.generateMemberId: "<client id or group instance id>-<random UUID>". */
static struct kafka_str new_member_id(struct lm_group_coord *c, struct kafka_str prefix)
{
    uint64_t a = rng_next(c), b = rng_next(c);
    a = (a & ~0xF000ULL) | 0x4000ULL;       /* version 4 */
    b = (b & ~(3ULL << 62)) | (2ULL << 62); /* RFC 4122 variant */
    char uuid[37];
    snprintf(uuid, sizeof(uuid), "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xFFFF), (unsigned)(a & 0xFFFF), (unsigned)(b >> 48),
             (unsigned long long)(b & 0xFFFFFFFFFFFFULL));
    int32_t pl = prefix.len > 0 ? prefix.len : 0;
    char *p = xcalloc(1, (size_t)pl + 1 + 36 + 1);
    if (pl > 0)
        memcpy(p, prefix.ptr, (size_t)pl);
    p[pl] = '-';
    memcpy(p + pl + 1, uuid, 36);
    return (struct kafka_str){p, pl + 37};
}

/* ---- JoinGroup ---- */

/* Kafka GroupCoordinator.acceptJoiningMember (group.max.size, KIP-389). */
static bool accept_joining(const struct lm_group_coord *c, const struct group *g,
                           struct kafka_str member_id)
{
    const struct member *m = member_find(g, member_id);
    switch (g->state) {
    case LM_GROUP_EMPTY:
    case LM_GROUP_DEAD:
        return true;
    case LM_GROUP_PREPARING_REBALANCE:
        return (m && m->awaiting_join) || n_awaiting_join(g) < c->cfg.max_size;
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
        join_error(c, m->join_token, KAFKA_REBALANCE_IN_PROGRESS, m->id);
    m->awaiting_join = true;
    m->join_token = token;
}

/* Kafka GroupMetadata.updateMember */
static void update_member(struct lm_group_coord *c, struct member *m,
                          const struct lm_group_join_req *req, int32_t rebalance_ms, uint64_t token)
{
    member_set_protocols(m, req->n_protocols, req->protocols);
    m->rebalance_ms = rebalance_ms;
    m->session_ms = req->session_timeout_ms;
    park_join(c, m, token);
}

/* Kafka GroupCoordinator.addMemberAndRebalance */
static void add_member_and_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms,
                                     uint64_t token, const struct lm_group_join_req *req,
                                     struct kafka_str member_id, int32_t rebalance_ms)
{
    struct member *m = xcalloc(1, sizeof(*m));
    m->id = member_id; /* taken */
    m->instance_id = sdup(req->group_instance_id);
    m->client_id = sdup(req->client_id.len < 0 ? cstr("") : req->client_id);
    m->client_host = sdup(req->client_host.len < 0 ? cstr("") : req->client_host);
    m->protocol_type = sdup(req->protocol_type);
    m->assignment = KAFKA_BYTES_NULL;
    update_member(c, m, req, rebalance_ms, token);
    m->is_new = true;
    /* KIP-134: a member joining a new group during its initial delay extends the delay */
    if (g->state == LM_GROUP_PREPARING_REBALANCE && g->generation == 0)
        g->new_member_added = true;
    if (g->n_members == 0)
        sset(&g->protocol_type, req->protocol_type);
    if (g->leader.len < 0)
        g->leader = sdup(member_id);
    int32_t pi = pending_find(g, member_id);
    if (pi >= 0)
        pending_remove_at(g, pi);
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
    struct kafka_str current_leader = sdup(g->leader);
    /* fence whatever the old incarnation has parked */
    fail_parked_join(c, m, KAFKA_FENCED_INSTANCE_ID, m->id);
    fail_parked_sync(c, m, KAFKA_FENCED_INSTANCE_ID);
    if (is_leader(g, m->id))
        sset(&g->leader, new_id);
    sfree(&m->id);
    m->id = new_id; /* taken */
    update_member(c, m, req, rebalance_ms, token);
    m->hb_deadline_ms = now_ms + m->session_ms;
    switch (g->state) {
    case LM_GROUP_STABLE: {
        struct kafka_str next = select_protocol(g);
        if (str_eq(next, g->protocol_name)) {
            emit_group_record(c, g);
            m->awaiting_join = false;
            /* Kafka answers with the old leader id so the rejoined member, even if it was
             * the leader, does not compute an assignment a Stable group would not spread. */
            join_success(c, g, token, m, current_leader, false);
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
    sfree(&current_leader);
}

static void join_new_member(struct lm_group_coord *c, struct group *g, int64_t now_ms,
                            uint64_t token, const struct lm_group_join_req *req,
                            int32_t rebalance_ms)
{
    if (g->state == LM_GROUP_DEAD) {
        join_error(c, token, KAFKA_COORDINATOR_NOT_AVAILABLE, cstr(""));
        return;
    }
    if (!supports_protocols(g, req->protocol_type, req->n_protocols, req->protocols)) {
        join_error(c, token, KAFKA_INCONSISTENT_GROUP_PROTOCOL, cstr(""));
        return;
    }
    bool is_static = req->group_instance_id.len >= 0;
    struct kafka_str id = new_member_id(c, is_static ? req->group_instance_id : req->client_id);
    if (is_static) {
        struct member *old = static_member_find(g, req->group_instance_id);
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
        join_error(c, token, KAFKA_MEMBER_ID_REQUIRED, id);
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
        join_error(c, token, KAFKA_COORDINATOR_NOT_AVAILABLE, mid);
        return;
    }
    if (!supports_protocols(g, req->protocol_type, req->n_protocols, req->protocols)) {
        join_error(c, token, KAFKA_INCONSISTENT_GROUP_PROTOCOL, mid);
        return;
    }
    int32_t pi = pending_find(g, mid);
    if (pi >= 0 && req->group_instance_id.len < 0) {
        /* the KIP-394 second join: the member id we handed out comes back */
        add_member_and_rebalance(c, g, now_ms, token, req, sdup(mid), rebalance_ms);
        return;
    }
    bool instance_unknown =
        req->group_instance_id.len >= 0 && !static_member_find(g, req->group_instance_id);
    if (static_member_fenced(g, req->group_instance_id, mid)) {
        join_error(c, token, KAFKA_FENCED_INSTANCE_ID, mid);
        return;
    }
    struct member *m = member_find(g, mid);
    if (!m || instance_unknown) {
        join_error(c, token, KAFKA_UNKNOWN_MEMBER_ID, mid);
        return;
    }
    switch (g->state) {
    case LM_GROUP_PREPARING_REBALANCE:
        update_member(c, m, req, rebalance_ms, token);
        maybe_complete_join(c, g, now_ms);
        break;
    case LM_GROUP_COMPLETING_REBALANCE:
        if (member_matches(m, req->n_protocols, req->protocols)) {
            /* it lost the JoinGroup response: answer again for the current generation */
            join_success(c, g, token, m, g->leader, is_leader(g, m->id));
        } else {
            update_member(c, m, req, rebalance_ms, token);
            prepare_rebalance(c, g, now_ms);
        }
        break;
    case LM_GROUP_STABLE:
        if (is_leader(g, m->id) || !member_matches(m, req->n_protocols, req->protocols)) {
            /* the leader rejoining forces a rebalance (e.g. topic metadata changed) */
            update_member(c, m, req, rebalance_ms, token);
            prepare_rebalance(c, g, now_ms);
        } else {
            join_success(c, g, token, m, g->leader, false);
        }
        break;
    case LM_GROUP_EMPTY:
    case LM_GROUP_DEAD:
        join_error(c, token, KAFKA_UNKNOWN_MEMBER_ID, mid);
        break;
    }
}

int lm_group_join(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_join_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_protocols == 0 || req->protocols != NULL);
    int16_t err = group_status(c, req->group_id, true);
    if (err != KAFKA_NONE) {
        join_error(c, token, err, req->member_id);
        return 0;
    }
    if (req->session_timeout_ms < c->cfg.session_timeout_min_ms ||
        req->session_timeout_ms > c->cfg.session_timeout_max_ms) {
        join_error(c, token, KAFKA_INVALID_SESSION_TIMEOUT, req->member_id);
        return 0;
    }
    int32_t rebalance_ms =
        req->rebalance_timeout_ms < 0 ? req->session_timeout_ms : req->rebalance_timeout_ms;
    bool unknown = req->member_id.len <= 0;
    struct group *g = group_find(c, req->group_id);
    if (!g) {
        if (!unknown) {
            join_error(c, token, KAFKA_UNKNOWN_MEMBER_ID, req->member_id);
            return 0;
        }
        g = group_create(c, req->group_id, now_ms);
    }
    if (!accept_joining(c, g, req->member_id)) {
        struct member *m = member_find(g, req->member_id);
        if (m)
            remove_member_and_update(c, g, m, now_ms);
        join_error(c, token, KAFKA_GROUP_MAX_SIZE_REACHED, cstr(""));
    } else if (unknown) {
        join_new_member(c, g, now_ms, token, req, rebalance_ms);
    } else {
        join_current_member(c, g, now_ms, token, req, rebalance_ms);
    }
    /* Kafka handleJoinGroup ends with "attempt to complete JoinGroup" */
    maybe_complete_join(c, g, now_ms);
    group_timers(c, g, now_ms);
    return 0;
}

/* ---- SyncGroup ---- */

int lm_group_sync(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_sync_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_assignments == 0 || req->assignments != NULL);
    int16_t err = group_status(c, req->group_id, true);
    struct group *g = err == KAFKA_NONE ? group_find(c, req->group_id) : NULL;
    if (err == KAFKA_NONE && !g)
        err = KAFKA_UNKNOWN_MEMBER_ID;
    struct member *m = NULL;
    if (err == KAFKA_NONE) {
        m = member_find(g, req->member_id);
        if (g->state == LM_GROUP_DEAD)
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
        else if (static_member_fenced(g, req->group_instance_id, req->member_id))
            err = KAFKA_FENCED_INSTANCE_ID;
        else if (!m)
            err = KAFKA_UNKNOWN_MEMBER_ID;
        else if (req->generation_id != g->generation)
            err = KAFKA_ILLEGAL_GENERATION;
        else if ((req->protocol_type.len >= 0 && !str_eq(req->protocol_type, g->protocol_type)) ||
                 (req->protocol_name.len >= 0 && !str_eq(req->protocol_name, g->protocol_name)))
            err = KAFKA_INCONSISTENT_GROUP_PROTOCOL; /* KIP-559 */
        else if (g->state == LM_GROUP_EMPTY)
            err = KAFKA_UNKNOWN_MEMBER_ID;
        else if (g->state == LM_GROUP_PREPARING_REBALANCE)
            err = KAFKA_REBALANCE_IN_PROGRESS;
    }
    if (err != KAFKA_NONE) {
        sync_reply(c, NULL, token, err, KAFKA_BYTES_NULL);
        if (g)
            group_timers(c, g, now_ms);
        return 0;
    }
    m->pending_sync = false;
    if (g->state == LM_GROUP_STABLE) {
        sync_reply(c, g, token, KAFKA_NONE, m->assignment);
        m->hb_deadline_ms = now_ms + m->session_ms;
        group_timers(c, g, now_ms);
        return 0;
    }
    LM_ASSERT(g->state == LM_GROUP_COMPLETING_REBALANCE);
    if (m->awaiting_sync) /* a retried SyncGroup supersedes the parked one */
        sync_reply(c, NULL, m->sync_token, KAFKA_REBALANCE_IN_PROGRESS, KAFKA_BYTES_NULL);
    m->awaiting_sync = true;
    m->sync_token = token;
    if (is_leader(g, m->id)) {
        /* The leader's assignment: missing members get an empty one; ids not in the group
         * are ignored. Persist (group record) and propagate: the shell appends the record
         * before sending these responses. */
        for (int32_t i = 0; i < g->n_members; i++) {
            struct member *o = g->members[i];
            bfree(&o->assignment);
            o->assignment = bdup((struct kafka_bytes){NULL, 0});
            for (int32_t k = 0; k < req->n_assignments; k++) {
                if (str_eq(req->assignments[k].member_id, o->id)) {
                    bfree(&o->assignment);
                    struct kafka_bytes a = req->assignments[k].assignment;
                    o->assignment = bdup(a.len < 0 ? (struct kafka_bytes){NULL, 0} : a);
                    break;
                }
            }
        }
        set_state(g, LM_GROUP_STABLE, now_ms);
        emit_group_record(c, g);
        for (int32_t i = 0; i < g->n_members; i++) {
            struct member *o = g->members[i];
            if (o->awaiting_sync) {
                o->awaiting_sync = false;
                sync_reply(c, g, o->sync_token, KAFKA_NONE, o->assignment);
                o->hb_deadline_ms = now_ms + o->session_ms;
            }
        }
    }
    group_timers(c, g, now_ms);
    return 0;
}

/* ---- Heartbeat ---- */

int lm_group_heartbeat(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                       const struct lm_group_heartbeat_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    int16_t err = group_status(c, req->group_id, true);
    struct group *g = err == KAFKA_NONE ? group_find(c, req->group_id) : NULL;
    if (err == KAFKA_NONE && !g)
        err = KAFKA_UNKNOWN_MEMBER_ID;
    if (err == KAFKA_NONE) {
        /* run due timers first so an expired member cannot revive itself */
        group_timers(c, g, now_ms);
        struct member *m = member_find(g, req->member_id);
        if (g->state == LM_GROUP_DEAD)
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
        else if (static_member_fenced(g, req->group_instance_id, req->member_id))
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
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_HEARTBEAT);
    r->u.heartbeat.error_code = err;
    return 0;
}

/* ---- LeaveGroup ---- */

int lm_group_leave(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_group_leave_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_members >= 0 && (req->n_members == 0 || req->members != NULL));
    int16_t err = group_status(c, req->group_id, true);
    struct group *g = err == KAFKA_NONE ? group_find(c, req->group_id) : NULL;
    if (g && g->state == LM_GROUP_DEAD)
        err = KAFKA_COORDINATOR_NOT_AVAILABLE;
    /* Build the response first (memory from the output arena), then apply the removals. */
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_LEAVE);
    size_t ri = c->n_resps - 1;
    r->u.leave.error_code = err;
    if (err != KAFKA_NONE)
        return 0;
    struct lm_group_leave_member_resp *mr = oalloc(c, (size_t)req->n_members * sizeof(*mr));
    for (int32_t i = 0; i < req->n_members; i++) {
        const struct lm_group_leave_member *lm = &req->members[i];
        mr[i].member_id = ostr(c, lm->member_id.len < 0 ? cstr("") : lm->member_id);
        mr[i].group_instance_id = ostr(c, lm->group_instance_id);
        int16_t e = KAFKA_NONE;
        if (!g) {
            e = KAFKA_UNKNOWN_MEMBER_ID;
        } else if (lm->member_id.len <= 0) {
            /* admin removal by group.instance.id alone (KIP-345) */
            struct member *m = static_member_find(g, lm->group_instance_id);
            if (m)
                remove_member_and_update(c, g, m, now_ms);
            else
                e = KAFKA_UNKNOWN_MEMBER_ID;
        } else if (pending_find(g, lm->member_id) >= 0) {
            pending_remove_at(g, pending_find(g, lm->member_id));
            maybe_complete_join(c, g, now_ms);
        } else if (static_member_fenced(g, lm->group_instance_id, lm->member_id)) {
            e = KAFKA_FENCED_INSTANCE_ID;
        } else {
            struct member *m = member_find(g, lm->member_id);
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
        group_timers(c, g, now_ms);
    return 0;
}

/* ---- OffsetCommit ---- */

/* Kafka GroupCoordinator.validateOffsetCommit (non-transactional) plus the state checks of
 * doCommitOffsets. */
static int16_t commit_check(const struct group *g, const struct lm_group_commit_req *req)
{
    if (g->state == LM_GROUP_DEAD)
        return KAFKA_COORDINATOR_NOT_AVAILABLE;
    if (req->generation_id >= 0 || req->member_id.len > 0 || req->group_instance_id.len >= 0) {
        if (static_member_fenced(g, req->group_instance_id, req->member_id))
            return KAFKA_FENCED_INSTANCE_ID;
        if (!member_find(g, req->member_id))
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
    int16_t err = group_status(c, req->group_id, false);
    struct group *g = NULL;
    if (err == KAFKA_NONE) {
        g = group_find(c, req->group_id);
        if (g)
            group_timers(c, g, now_ms);
        if (!g && req->generation_id >= 0)
            err = KAFKA_ILLEGAL_GENERATION; /* a group we do not know: an old generation */
        else if (!g)
            g = group_create(c, req->group_id, now_ms); /* simple consumer using Kafka storage */
        if (g)
            err = commit_check(g, req);
        if (err == KAFKA_NONE && g->state != LM_GROUP_EMPTY) {
            struct member *m = member_find(g, req->member_id);
            LM_ASSERT(m != NULL);
            m->hb_deadline_ms = now_ms + m->session_ms; /* a commit counts as a heartbeat */
        }
    }
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_COMMIT);
    size_t ri = c->n_resps - 1;
    struct lm_group_topic_errors *ts = oalloc(c, (size_t)req->n_topics * sizeof(*ts));
    for (int32_t t = 0; t < req->n_topics; t++) {
        const struct lm_group_commit_topic *rt = &req->topics[t];
        LM_ASSERT(rt->n_partitions >= 0 && (rt->n_partitions == 0 || rt->partitions));
        ts[t].name = ostr(c, rt->name);
        ts[t].n_partitions = rt->n_partitions;
        ts[t].partitions = oalloc(c, (size_t)rt->n_partitions * sizeof(*ts[t].partitions));
        for (int32_t p = 0; p < rt->n_partitions; p++) {
            const struct lm_group_commit_part *rp = &rt->partitions[p];
            int16_t e = err;
            if (e == KAFKA_NONE && rp->metadata.len > c->cfg.offset_metadata_max_bytes)
                e = KAFKA_OFFSET_METADATA_TOO_LARGE;
            ts[t].partitions[p].partition = rp->partition;
            ts[t].partitions[p].error_code = e;
            if (e != KAFKA_NONE)
                continue;
            struct offset_entry *oe = offset_put(g, rt->name, rp->partition);
            oe->offset = rp->offset;
            oe->leader_epoch = rp->leader_epoch;
            sset(&oe->metadata, rp->metadata.len < 0 ? cstr("") : rp->metadata);
            oe->commit_ts_ms = now_ms;
            oe->expire_ts_ms = req->retention_ms >= 0 ? now_ms + req->retention_ms : -1;
            emit_offset_record(c, g, oe, false);
        }
    }
    r = &c->resps[ri];
    r->u.commit.n_topics = req->n_topics;
    r->u.commit.topics = ts;
    return 0;
}

/* ---- OffsetFetch ---- */

static struct lm_group_fetch_part fetch_part(struct lm_group_coord *c, const struct group *g,
                                             struct kafka_str topic, int32_t partition, int16_t err)
{
    struct lm_group_fetch_part fp = {.partition = partition,
                                     .offset = -1,
                                     .leader_epoch = -1,
                                     .metadata = cstr(""),
                                     .error_code = err};
    if (err != KAFKA_NONE || !g || g->state == LM_GROUP_DEAD)
        return fp;
    int32_t i = offset_search(g, topic, partition);
    if (i >= 0) {
        fp.offset = g->offsets[i].offset;
        fp.leader_epoch = g->offsets[i].leader_epoch;
        fp.metadata = ostr(c, g->offsets[i].metadata);
    }
    return fp;
}

int lm_group_fetch(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_group_fetch_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_groups >= 0 && (req->n_groups == 0 || req->groups != NULL));
    (void)now_ms; /* reads only; require_stable has nothing to wait for without transactions */
    struct lm_group_fetch_group_resp *gs = oalloc(c, (size_t)req->n_groups * sizeof(*gs));
    for (int32_t gi = 0; gi < req->n_groups; gi++) {
        const struct lm_group_fetch_group *rg = &req->groups[gi];
        int16_t err = group_status(c, rg->group_id, false);
        const struct group *g = err == KAFKA_NONE ? group_find(c, rg->group_id) : NULL;
        gs[gi].group_id = ostr(c, rg->group_id);
        gs[gi].error_code = err;
        if (rg->n_topics >= 0) {
            gs[gi].n_topics = rg->n_topics;
            gs[gi].topics = oalloc(c, (size_t)rg->n_topics * sizeof(*gs[gi].topics));
            for (int32_t t = 0; t < rg->n_topics; t++) {
                const struct lm_group_fetch_topic *rt = &rg->topics[t];
                struct lm_group_fetch_topic_resp *ot = &gs[gi].topics[t];
                ot->name = ostr(c, rt->name);
                ot->n_partitions = rt->n_partitions;
                ot->partitions = oalloc(c, (size_t)rt->n_partitions * sizeof(*ot->partitions));
                for (int32_t p = 0; p < rt->n_partitions; p++)
                    ot->partitions[p] = fetch_part(c, g, rt->name, rt->partitions[p], err);
            }
        } else if (err == KAFKA_NONE && g && g->state != LM_GROUP_DEAD && g->n_offsets > 0) {
            /* every offset, grouped by topic: the entries are sorted by (topic, partition) */
            int32_t n_topics = 0;
            for (int32_t i = 0; i < g->n_offsets; i++)
                n_topics += i == 0 || !str_eq(g->offsets[i].topic, g->offsets[i - 1].topic);
            gs[gi].topics = oalloc(c, (size_t)n_topics * sizeof(*gs[gi].topics));
            int32_t t = -1;
            for (int32_t i = 0; i < g->n_offsets; i++) {
                const struct offset_entry *e = &g->offsets[i];
                if (i == 0 || !str_eq(e->topic, g->offsets[i - 1].topic)) {
                    t++;
                    int32_t n = 0;
                    while (i + n < g->n_offsets && str_eq(g->offsets[i + n].topic, e->topic))
                        n++;
                    gs[gi].topics[t].name = ostr(c, e->topic);
                    gs[gi].topics[t].partitions =
                        oalloc(c, (size_t)n * sizeof(*gs[gi].topics[t].partitions));
                }
                struct lm_group_fetch_topic_resp *ot = &gs[gi].topics[t];
                ot->partitions[ot->n_partitions++] = fetch_part(c, g, e->topic, e->partition, 0);
            }
            LM_ASSERT(t + 1 == n_topics);
            gs[gi].n_topics = n_topics;
        }
    }
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_FETCH);
    r->u.fetch.n_groups = req->n_groups;
    r->u.fetch.groups = gs;
    return 0;
}

/* ---- DescribeGroups / ListGroups ---- */

int lm_group_describe(struct lm_group_coord *c, int64_t now_ms, uint64_t token, int32_t n_groups,
                      const struct kafka_str *group_ids)
{
    LM_ASSERT(c != NULL && n_groups >= 0 && (n_groups == 0 || group_ids != NULL));
    struct lm_group_describe_group *ds = oalloc(c, (size_t)n_groups * sizeof(*ds));
    for (int32_t i = 0; i < n_groups; i++) {
        struct lm_group_describe_group *d = &ds[i];
        int16_t err = group_status(c, group_ids[i], false);
        struct group *g = err == KAFKA_NONE ? group_find(c, group_ids[i]) : NULL;
        if (g)
            group_timers(c, g, now_ms);
        d->error_code = err;
        d->group_id = ostr(c, group_ids[i]);
        d->protocol_type = cstr("");
        d->protocol_data = cstr("");
        /* Kafka's GroupCoordinator.DeadGroup for an unknown group: NONE, "Dead", no members */
        d->state = cstr(err == KAFKA_NONE ? "Dead" : "");
        if (!g || g->state == LM_GROUP_DEAD)
            continue;
        d->found = true;
        d->state = cstr(lm_group_state_name(g->state));
        d->protocol_type = ostr(c, g->protocol_type.len < 0 ? cstr("") : g->protocol_type);
        bool stable = g->state == LM_GROUP_STABLE;
        if (stable)
            d->protocol_data = ostr(c, g->protocol_name);
        d->n_members = g->n_members;
        d->members = oalloc(c, (size_t)g->n_members * sizeof(*d->members));
        for (int32_t k = 0; k < g->n_members; k++) {
            const struct member *m = g->members[k];
            struct lm_group_describe_member *dm = &d->members[k];
            dm->member_id = ostr(c, m->id);
            dm->group_instance_id = ostr(c, m->instance_id);
            dm->client_id = ostr(c, m->client_id);
            dm->client_host = ostr(c, m->client_host);
            dm->metadata = (struct kafka_bytes){(const uint8_t *)"", 0};
            dm->assignment = (struct kafka_bytes){(const uint8_t *)"", 0};
            if (stable) {
                const struct mproto *p = member_protocol(m, g->protocol_name);
                if (p)
                    dm->metadata = obytes(c, p->metadata);
                if (m->assignment.len > 0)
                    dm->assignment = obytes(c, m->assignment);
            }
        }
    }
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_DESCRIBE);
    r->u.describe.n_groups = n_groups;
    r->u.describe.groups = ds;
    return 0;
}

static bool list_match(const struct group *g, const struct lm_group_list_req *req)
{
    bool ok = req->n_states == 0;
    for (int32_t i = 0; !ok && i < req->n_states; i++)
        ok = str_ieq(req->states[i], lm_group_state_name(g->state));
    if (!ok)
        return false;
    ok = req->n_types == 0;
    for (int32_t i = 0; !ok && i < req->n_types; i++)
        ok = str_ieq(req->types[i], "classic");
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
    struct lm_group_list_entry *es = oalloc(c, n * sizeof(*es));
    size_t k = 0;
    for (size_t b = 0; b < c->n_buckets; b++) {
        for (struct group *g = c->buckets[b]; g; g = g->next) {
            if (g->state == LM_GROUP_DEAD || c->loading[g->partition] || !list_match(g, req))
                continue;
            es[k].group_id = ostr(c, g->id);
            es[k].protocol_type = ostr(c, g->protocol_type.len < 0 ? cstr("") : g->protocol_type);
            es[k].state = cstr(lm_group_state_name(g->state));
            es[k].type = cstr("classic");
            k++;
        }
    }
    LM_ASSERT(k == n);
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_LIST);
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
    set_state(g, LM_GROUP_DEAD, now_ms);
    for (int32_t i = 0; i < g->n_offsets; i++)
        emit_offset_record(c, g, &g->offsets[i], true);
    emit_group_tombstone(c, g);
    for (int32_t i = 0; i < g->n_members; i++) {
        fail_parked_join(c, g->members[i], KAFKA_COORDINATOR_NOT_AVAILABLE, g->members[i]->id);
        fail_parked_sync(c, g->members[i], KAFKA_COORDINATOR_NOT_AVAILABLE);
    }
    group_destroy(c, g);
}

int lm_group_delete(struct lm_group_coord *c, int64_t now_ms, uint64_t token, int32_t n_groups,
                    const struct kafka_str *group_ids)
{
    LM_ASSERT(c != NULL && n_groups >= 0 && (n_groups == 0 || group_ids != NULL));
    struct lm_group_delete_result *rs = oalloc(c, (size_t)n_groups * sizeof(*rs));
    for (int32_t i = 0; i < n_groups; i++) {
        int16_t err = group_status(c, group_ids[i], false);
        struct group *g = err == KAFKA_NONE ? group_find(c, group_ids[i]) : NULL;
        if (g)
            group_timers(c, g, now_ms);
        rs[i].group_id = ostr(c, group_ids[i]);
        if (err == KAFKA_NONE && (!g || g->state == LM_GROUP_DEAD))
            err = KAFKA_GROUP_ID_NOT_FOUND;
        else if (err == KAFKA_NONE && g->state != LM_GROUP_EMPTY)
            err = KAFKA_NON_EMPTY_GROUP;
        else if (err == KAFKA_NONE)
            group_delete_with_tombstones(c, g, now_ms);
        rs[i].error_code = err;
    }
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_DELETE);
    r->u.del.n_results = n_groups;
    r->u.del.results = rs;
    return 0;
}

int lm_group_offset_delete(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                           const struct lm_group_offset_delete_req *req)
{
    LM_ASSERT(c != NULL && req != NULL);
    LM_ASSERT(req->n_topics >= 0 && (req->n_topics == 0 || req->topics != NULL));
    int16_t err = group_status(c, req->group_id, false);
    struct group *g = err == KAFKA_NONE ? group_find(c, req->group_id) : NULL;
    if (g)
        group_timers(c, g, now_ms);
    if (err == KAFKA_NONE && (!g || g->state == LM_GROUP_DEAD))
        err = KAFKA_GROUP_ID_NOT_FOUND;
    /* Kafka handleDeleteOffsets: an Empty group loses any offset; a consumer group with
     * members keeps the ones of topics it subscribes to (GROUP_SUBSCRIBED_TO_TOPIC); any
     * other group with members refuses (NON_EMPTY_GROUP). */
    bool consumer = g && str_eq(g->protocol_type, cstr("consumer"));
    if (err == KAFKA_NONE && g->state != LM_GROUP_EMPTY && !consumer)
        err = KAFKA_NON_EMPTY_GROUP;
    struct lm_group_topic_errors *ts = NULL;
    int32_t n_topics = 0;
    if (err == KAFKA_NONE) {
        n_topics = req->n_topics;
        ts = oalloc(c, (size_t)n_topics * sizeof(*ts));
        for (int32_t t = 0; t < n_topics; t++) {
            const struct lm_group_fetch_topic *rt = &req->topics[t];
            bool subscribed = g->state != LM_GROUP_EMPTY && subscribed_to(g, rt->name);
            ts[t].name = ostr(c, rt->name);
            ts[t].n_partitions = rt->n_partitions;
            ts[t].partitions = oalloc(c, (size_t)rt->n_partitions * sizeof(*ts[t].partitions));
            for (int32_t p = 0; p < rt->n_partitions; p++) {
                ts[t].partitions[p].partition = rt->partitions[p];
                if (subscribed) {
                    ts[t].partitions[p].error_code = KAFKA_GROUP_SUBSCRIBED_TO_TOPIC;
                    continue;
                }
                ts[t].partitions[p].error_code = KAFKA_NONE;
                int32_t i = offset_search(g, rt->name, rt->partitions[p]);
                if (i >= 0) {
                    emit_offset_record(c, g, &g->offsets[i], true);
                    offset_remove_at(g, i);
                }
            }
        }
    }
    struct lm_group_resp *r = push_resp(c, token, LM_GROUP_RESP_OFFSET_DELETE);
    r->u.offset_delete.error_code = err;
    r->u.offset_delete.n_topics = n_topics;
    r->u.offset_delete.topics = ts;
    return 0;
}

/* ---- offset retention (KIP-211) ---- */

/* Kafka GroupMetadata.removeExpiredOffsets + cleanupGroupMetadata. */
static void expire_offsets(struct lm_group_coord *c, struct group *g, int64_t now_ms)
{
    int64_t ret = c->cfg.offsets_retention_ms;
    bool empty_typed = g->protocol_type.len >= 0 && g->state == LM_GROUP_EMPTY;
    bool stable_consumer = str_eq(g->protocol_type, cstr("consumer")) && g->topics_known &&
                           g->state == LM_GROUP_STABLE;
    bool simple = g->protocol_type.len < 0;
    if (empty_typed || stable_consumer || simple) {
        for (int32_t i = 0; i < g->n_offsets;) {
            struct offset_entry *e = &g->offsets[i];
            bool expired;
            if (stable_consumer && subscribed_to(g, e->topic))
                expired = false;
            else if (e->expire_ts_ms >= 0)
                expired = now_ms >= e->expire_ts_ms; /* explicit (v2-4 commit) expiry */
            else if (empty_typed)
                /* retention counts from when the group became Empty */
                expired = now_ms - (g->state_ts_ms >= 0 ? g->state_ts_ms : e->commit_ts_ms) >= ret;
            else
                expired = now_ms - e->commit_ts_ms >= ret;
            if (expired) {
                emit_offset_record(c, g, e, true);
                offset_remove_at(g, i);
            } else {
                i++;
            }
        }
    }
    if (g->state == LM_GROUP_EMPTY && g->n_offsets == 0 && g->n_pending == 0)
        group_delete_with_tombstones(c, g, now_ms);
}

/* ---- ticks ---- */

int lm_group_coord_tick(struct lm_group_coord *c, int64_t now_ms)
{
    LM_ASSERT(c != NULL);
    for (size_t b = 0; b < c->n_buckets; b++)
        for (struct group *g = c->buckets[b]; g; g = g->next)
            if (!c->loading[g->partition])
                group_timers(c, g, now_ms);
    if (now_ms >= c->next_expiry_check_ms) {
        c->next_expiry_check_ms = now_ms + c->cfg.offsets_retention_check_interval_ms;
        for (size_t b = 0; b < c->n_buckets; b++) {
            struct group *g = c->buckets[b];
            while (g) {
                struct group *next = g->next; /* g may be destroyed */
                if (!c->loading[g->partition])
                    expire_offsets(c, g, now_ms);
                g = next;
            }
        }
    }
    return 0;
}

static int64_t min64(int64_t a, int64_t b)
{
    return a < b ? a : b;
}

int64_t lm_group_coord_next_deadline_ms(const struct lm_group_coord *c)
{
    int64_t d = c->next_expiry_check_ms;
    for (size_t b = 0; b < c->n_buckets; b++) {
        for (const struct group *g = c->buckets[b]; g; g = g->next) {
            if (c->loading[g->partition])
                continue;
            if (g->state == LM_GROUP_PREPARING_REBALANCE)
                d = min64(d, g->join_deadline_ms);
            if (g->state == LM_GROUP_COMPLETING_REBALANCE || g->state == LM_GROUP_STABLE)
                d = min64(d, g->sync_deadline_ms);
            for (int32_t i = 0; i < g->n_members; i++)
                d = min64(d, g->members[i]->hb_deadline_ms);
            for (int32_t i = 0; i < g->n_pending; i++)
                d = min64(d, g->pending[i].deadline_ms);
        }
    }
    return d;
}

/* ---- loading ---- */

static void drop_partition_groups(struct lm_group_coord *c, int32_t partition, bool answer)
{
    for (size_t b = 0; b < c->n_buckets; b++) {
        struct group *g = c->buckets[b];
        while (g) {
            struct group *next = g->next;
            if (g->partition == partition) {
                for (int32_t i = 0; answer && i < g->n_members; i++) {
                    fail_parked_join(c, g->members[i], KAFKA_NOT_COORDINATOR, g->members[i]->id);
                    fail_parked_sync(c, g->members[i], KAFKA_NOT_COORDINATOR);
                }
                for (int32_t i = 0; i < g->n_members; i++)
                    g->members[i]->awaiting_join = g->members[i]->awaiting_sync = false;
                group_destroy(c, g);
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
        leader_found = leader_found || str_eq(m->member_id, v->leader);
        for (int32_t j = 0; j < i; j++) {
            const struct lm_gr_member *o = &v->members[j];
            if (str_eq(o->member_id, m->member_id) ||
                (m->instance_id.len >= 0 && o->instance_id.len >= 0 &&
                 str_eq(o->instance_id, m->instance_id)))
                return false;
        }
    }
    return leader_found;
}

static void load_group_value(struct group *g, const struct lm_gr_group_value *v)
{
    for (int32_t i = 0; i < g->n_members; i++)
        member_free(g->members[i]);
    g->n_members = 0;
    g->generation = v->generation;
    sfree(&g->protocol_type);
    if (v->protocol_type.len > 0)
        g->protocol_type = sdup(v->protocol_type);
    sset(&g->protocol_name, v->protocol);
    /* An empty group has no leader (a stale one would be elected from nobody). */
    sset(&g->leader, v->n_members > 0 ? v->leader : KAFKA_STR_NULL);
    g->state_ts_ms = v->state_ts_ms;
    g->has_metadata = true;
    if (v->n_members > g->cap_members) {
        g->cap_members = v->n_members;
        g->members = xrealloc(g->members, (size_t)g->cap_members * sizeof(*g->members));
    }
    for (int32_t i = 0; i < v->n_members; i++) {
        const struct lm_gr_member *r = &v->members[i];
        struct member *m = xcalloc(1, sizeof(*m));
        m->id = sdup(r->member_id);
        m->instance_id = sdup(r->instance_id);
        m->client_id = sdup(r->client_id);
        m->client_host = sdup(r->client_host);
        m->protocol_type = sdup(v->protocol_type);
        m->session_ms = r->session_timeout_ms;
        m->rebalance_ms = r->rebalance_timeout_ms;
        /* the record keeps only the chosen protocol's metadata (Kafka loads the same) */
        if (v->protocol.len >= 0) {
            struct lm_group_protocol p = {.name = v->protocol, .metadata = r->subscription};
            member_set_protocols(m, 1, &p);
        }
        m->assignment = bdup(r->assignment.len < 0 ? (struct kafka_bytes){NULL, 0} : r->assignment);
        m->hb_deadline_ms = NO_DEADLINE;
        g->members[g->n_members++] = m;
    }
    g->state = g->n_members > 0 ? LM_GROUP_STABLE : LM_GROUP_EMPTY;
}

static void reset_group_metadata(struct group *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        member_free(g->members[i]);
    g->n_members = 0;
    g->generation = 0;
    sfree(&g->protocol_type);
    sfree(&g->protocol_name);
    sfree(&g->leader);
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
    struct group *g = group_find(c, k.group);
    if (k.version != LM_GR_KEY_GROUP) {
        if (tomb) {
            if (g) {
                int32_t i = offset_search(g, k.topic, k.partition);
                if (i >= 0)
                    offset_remove_at(g, i);
            }
            return 0;
        }
        struct lm_gr_offset_value v;
        if (lm_gr_offset_value_decode(value.ptr, (size_t)value.len, &v) != 0) {
            if (n_bad)
                (*n_bad)++;
            return 0;
        }
        if (!g)
            g = group_create(c, k.group, -1);
        struct offset_entry *e = offset_put(g, k.topic, k.partition);
        e->offset = v.offset;
        e->leader_epoch = v.leader_epoch;
        sset(&e->metadata, v.metadata);
        e->commit_ts_ms = v.commit_ts_ms;
        e->expire_ts_ms = v.expire_ts_ms;
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
            g = group_create(c, k.group, -1);
        load_group_value(g, &v);
    } else if (n_bad) {
        (*n_bad)++;
    }
    kafka_arena_deinit(&a);
    return 0;
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
                if (!g->has_metadata && g->n_offsets == 0) {
                    group_destroy(c, g); /* only tombstones were left of it */
                } else {
                    compute_subscribed_topics(g);
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

/* ---- lifecycle and views ---- */

int lm_group_coord_new(const struct lm_group_config *cfg, struct lm_group_coord **out)
{
    if (cfg->offsets_topic_partitions <= 0 ||
        cfg->offsets_topic_partitions > LM_GROUP_PARTITIONS_MAX || cfg->max_size <= 0 ||
        cfg->session_timeout_min_ms < 0 ||
        cfg->session_timeout_max_ms < cfg->session_timeout_min_ms ||
        cfg->initial_rebalance_delay_ms < 0 || cfg->offsets_retention_check_interval_ms <= 0)
        return LM_E_CONFIG;
    struct lm_group_coord *c = calloc(1, sizeof(*c));
    if (!c)
        return LM_E_NOMEM;
    c->cfg = *cfg;
    c->rng = cfg->rand_seed;
    c->n_buckets = 64;
    c->buckets = calloc(c->n_buckets, sizeof(*c->buckets));
    if (!c->buckets) {
        free(c);
        return LM_E_NOMEM;
    }
    memset(c->owned, 1, (size_t)cfg->offsets_topic_partitions);
    c->next_expiry_check_ms = INT64_MIN;
    kafka_arena_init(&c->arena, SIZE_MAX / 4);
    *out = c;
    return 0;
}

void lm_group_coord_free(struct lm_group_coord *c)
{
    if (!c)
        return;
    for (size_t b = 0; b < c->n_buckets; b++) {
        struct group *g = c->buckets[b];
        while (g) {
            struct group *next = g->next;
            group_free(g);
            g = next;
        }
    }
    free(c->buckets);
    free(c->records);
    free(c->resps);
    kafka_arena_deinit(&c->arena);
    free(c);
}

int lm_group_coord_info(const struct lm_group_coord *c, struct kafka_str group_id,
                        struct lm_group_info *out)
{
    const struct group *g = group_find(c, group_id);
    if (!g)
        return LM_E_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->state = g->state;
    out->generation_id = g->generation;
    out->n_members = g->n_members;
    out->n_pending_members = g->n_pending;
    out->n_awaiting_join = n_awaiting_join(g);
    for (int32_t i = 0; i < g->n_members; i++)
        out->n_awaiting_sync += g->members[i]->awaiting_sync;
    out->n_offsets = g->n_offsets;
    out->protocol_type = g->protocol_type;
    out->protocol_name = g->protocol_name;
    out->leader = g->leader;
    out->state_ts_ms = g->state_ts_ms;
    return 0;
}

size_t lm_group_coord_n_groups(const struct lm_group_coord *c)
{
    return c->n_groups;
}
