/* Classic group coordinator (see group.h). Structure follows Kafka's GroupCoordinator and
 * GroupMetadata (kafka.coordinator.group, 2.8-3.x); each function names the Kafka behaviour it
 * reproduces. Memory: the coordinator is on the control path; it allocates per group, member
 * and offset, and treats allocation failure as fatal (LM_ASSERT), as every input is bounded by
 * the request frame limit and group.max.size. */
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

/* ---- owned strings and bytes ---- */

void *gr_xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    LM_ASSERT(p != NULL);
    return p;
}

void *gr_xrealloc(void *p, size_t size)
{
    void *q = realloc(p, size ? size : 1);
    LM_ASSERT(q != NULL);
    return q;
}

struct kafka_str gr_sdup(struct kafka_str s)
{
    if (s.len < 0)
        return KAFKA_STR_NULL;
    char *p = gr_xcalloc(1, (size_t)s.len + 1);
    if (s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    return (struct kafka_str){p, s.len};
}

struct kafka_bytes gr_bdup(struct kafka_bytes b)
{
    if (b.len < 0)
        return KAFKA_BYTES_NULL;
    uint8_t *p = gr_xcalloc(1, (size_t)b.len + 1);
    if (b.len > 0)
        memcpy(p, b.ptr, (size_t)b.len);
    return (struct kafka_bytes){p, b.len};
}

void gr_sfree(struct kafka_str *s)
{
    free((void *)s->ptr);
    *s = KAFKA_STR_NULL;
}

void gr_bfree(struct kafka_bytes *b)
{
    free((void *)b->ptr);
    *b = KAFKA_BYTES_NULL;
}

void gr_sset(struct kafka_str *dst, struct kafka_str src)
{
    struct kafka_str n = gr_sdup(src);
    gr_sfree(dst);
    *dst = n;
}

struct kafka_str gr_cstr(const char *s)
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

bool gr_str_eq(struct kafka_str a, struct kafka_str b)
{
    return kafka_str_eq(a, b);
}

bool gr_str_ieq(struct kafka_str a, const char *b)
{
    size_t bl = strlen(b);
    return a.len >= 0 && (size_t)a.len == bl && strncasecmp(a.ptr, b, bl) == 0;
}

/* ---- state ---- */

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

void *gr_oalloc(struct lm_group_coord *c, size_t n)
{
    void *p = kafka_arena_alloc(&c->arena, n ? n : 1, 16);
    LM_ASSERT(p != NULL);
    return p;
}

struct kafka_str gr_ostr(struct lm_group_coord *c, struct kafka_str s)
{
    if (s.len < 0)
        return KAFKA_STR_NULL;
    char *p = gr_oalloc(c, (size_t)s.len + 1);
    if (s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    return (struct kafka_str){p, s.len};
}

struct kafka_bytes gr_obytes(struct lm_group_coord *c, struct kafka_bytes b)
{
    if (b.len < 0)
        return KAFKA_BYTES_NULL;
    uint8_t *p = gr_oalloc(c, (size_t)b.len + 1);
    if (b.len > 0)
        memcpy(p, b.ptr, (size_t)b.len);
    return (struct kafka_bytes){p, b.len};
}

struct lm_group_resp *gr_push_resp(struct lm_group_coord *c, uint64_t token, uint8_t kind)
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
    r->producer_id = -1;
    r->producer_epoch = -1;
    size_t kn = lm_gr_key_size(k);
    uint8_t *kb = gr_oalloc(c, kn);
    struct kafka_writer w;
    kafka_writer_init(&w, kb, kn);
    LM_ASSERT(lm_gr_key_encode(&w, k) == 0 && w.pos == kn);
    r->key = (struct kafka_bytes){kb, (int32_t)kn};
    r->value = KAFKA_BYTES_NULL;
    if (ov || gv) {
        size_t vn = ov ? lm_gr_offset_value_size(ov) : lm_gr_group_value_size(gv);
        uint8_t *vb = gr_oalloc(c, vn);
        kafka_writer_init(&w, vb, vn);
        LM_ASSERT((ov ? lm_gr_offset_value_encode(&w, ov) : lm_gr_group_value_encode(&w, gv)) == 0);
        LM_ASSERT(w.pos == vn);
        r->value = (struct kafka_bytes){vb, (int32_t)vn};
    }
}

void gr_emit_txn_offset_record(struct lm_group_coord *c, struct group *g,
                               const struct offset_entry *e, int64_t producer_id,
                               int16_t producer_epoch)
{
    struct lm_gr_key k = {.version = LM_GR_KEY_OFFSET_V1,
                          .group = g->id,
                          .topic = e->topic,
                          .partition = e->partition};
    struct lm_gr_offset_value v = {
        .version = 3,
        .offset = e->offset,
        .leader_epoch = e->leader_epoch,
        .metadata = e->metadata,
        .commit_ts_ms = e->commit_ts_ms,
        .expire_ts_ms = -1,
    };
    push_record(c, g->partition, &k, &v, NULL);
    c->records[c->n_records - 1].producer_id = producer_id;
    c->records[c->n_records - 1].producer_epoch = producer_epoch;
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

struct group *gr_group_find(const struct lm_group_coord *c, struct kafka_str id)
{
    uint32_t h = fnv1a(id);
    for (struct group *g = c->buckets[h % c->n_buckets]; g; g = g->next)
        if (g->hash == h && gr_str_eq(g->id, id))
            return g;
    return NULL;
}

static void table_grow(struct lm_group_coord *c)
{
    size_t nb = c->n_buckets * 2;
    struct group **b = gr_xcalloc(nb, sizeof(*b));
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

void gr_set_state(struct group *g, enum lm_group_state s, int64_t now_ms)
{
    g->state = s;
    g->state_ts_ms = now_ms; /* Kafka GroupMetadata.transitionTo sets currentStateTimestamp */
}

struct group *gr_group_create(struct lm_group_coord *c, struct kafka_str id, int64_t now_ms)
{
    LM_ASSERT(gr_group_find(c, id) == NULL);
    if (c->n_groups >= c->n_buckets)
        table_grow(c);
    struct group *g = gr_xcalloc(1, sizeof(*g));
    g->id = gr_sdup(id);
    g->hash = fnv1a(id);
    g->partition = lm_gr_partition_for(id, c->cfg.offsets_topic_partitions);
    g->protocol_type = KAFKA_STR_NULL;
    g->protocol_name = KAFKA_STR_NULL;
    g->leader = KAFKA_STR_NULL;
    g->join_deadline_ms = NO_DEADLINE;
    g->sync_deadline_ms = NO_DEADLINE;
    gr_set_state(g, LM_GROUP_EMPTY, now_ms);
    size_t b = g->hash % c->n_buckets;
    g->next = c->buckets[b];
    c->buckets[b] = g;
    c->n_groups++;
    return g;
}

void gr_member_free(struct member *m)
{
    gr_sfree(&m->id);
    gr_sfree(&m->instance_id);
    gr_sfree(&m->client_id);
    gr_sfree(&m->client_host);
    gr_sfree(&m->protocol_type);
    for (int32_t i = 0; i < m->n_protocols; i++) {
        gr_sfree(&m->protocols[i].name);
        gr_bfree(&m->protocols[i].metadata);
    }
    free(m->protocols);
    gr_bfree(&m->assignment);
    free(m);
}

static void topics_clear(struct group *g)
{
    for (int32_t i = 0; i < g->n_topics; i++)
        gr_sfree(&g->topics[i]);
    free(g->topics);
    g->topics = NULL;
    g->n_topics = 0;
    g->topics_known = false;
}

void gr_offset_entry_free(struct offset_entry *e)
{
    gr_sfree(&e->topic);
    gr_sfree(&e->metadata);
}

static void group_free(struct group *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        gr_member_free(g->members[i]);
    free(g->members);
    for (int32_t i = 0; i < g->n_pending; i++)
        gr_sfree(&g->pending[i].id);
    free(g->pending);
    for (int32_t i = 0; i < g->n_offsets; i++)
        gr_offset_entry_free(&g->offsets[i]);
    free(g->offsets);
    gr_txn_free(g);
    topics_clear(g);
    gr_sfree(&g->id);
    gr_sfree(&g->protocol_type);
    gr_sfree(&g->protocol_name);
    gr_sfree(&g->leader);
    free(g);
}

void gr_group_destroy(struct lm_group_coord *c, struct group *g)
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

struct member *gr_member_find(const struct group *g, struct kafka_str id)
{
    if (id.len <= 0)
        return NULL;
    for (int32_t i = 0; i < g->n_members; i++)
        if (gr_str_eq(g->members[i]->id, id))
            return g->members[i];
    return NULL;
}

struct member *gr_static_member_find(const struct group *g, struct kafka_str instance_id)
{
    if (instance_id.len < 0)
        return NULL;
    for (int32_t i = 0; i < g->n_members; i++)
        if (g->members[i]->instance_id.len >= 0 &&
            gr_str_eq(g->members[i]->instance_id, instance_id))
            return g->members[i];
    return NULL;
}

int32_t gr_pending_find(const struct group *g, struct kafka_str id)
{
    if (id.len <= 0)
        return -1;
    for (int32_t i = 0; i < g->n_pending; i++)
        if (gr_str_eq(g->pending[i].id, id))
            return i;
    return -1;
}

void gr_pending_remove_at(struct group *g, int32_t i)
{
    LM_ASSERT(i >= 0 && i < g->n_pending);
    gr_sfree(&g->pending[i].id);
    memmove(&g->pending[i], &g->pending[i + 1],
            (size_t)(g->n_pending - i - 1) * sizeof(*g->pending));
    g->n_pending--;
}

/* Kafka GroupMetadata.isStaticMemberFenced: the request names an instance id whose current
 * member id is a different one. */
bool gr_static_member_fenced(const struct group *g, struct kafka_str instance_id,
                             struct kafka_str member_id)
{
    if (instance_id.len < 0)
        return false;
    struct member *m = gr_static_member_find(g, instance_id);
    return m != NULL && !gr_str_eq(m->id, member_id);
}

bool gr_is_leader(const struct group *g, struct kafka_str member_id)
{
    return g->leader.len >= 0 && gr_str_eq(g->leader, member_id);
}

int32_t gr_n_awaiting_join(const struct group *g)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_members; i++)
        n += g->members[i]->awaiting_join;
    return n;
}

int32_t gr_rebalance_timeout_ms(const struct group *g)
{
    int32_t t = 0; /* Kafka GroupMetadata.rebalanceTimeoutMs: the largest of the members' */
    for (int32_t i = 0; i < g->n_members; i++)
        if (g->members[i]->rebalance_ms > t)
            t = g->members[i]->rebalance_ms;
    return t;
}

const struct mproto *gr_member_protocol(const struct member *m, struct kafka_str name)
{
    for (int32_t i = 0; i < m->n_protocols; i++)
        if (gr_str_eq(m->protocols[i].name, name))
            return &m->protocols[i];
    return NULL;
}

static int32_t support_count(const struct group *g, struct kafka_str name)
{
    int32_t n = 0;
    for (int32_t i = 0; i < g->n_members; i++)
        n += gr_member_protocol(g->members[i], name) != NULL;
    return n;
}

/* Kafka GroupMetadata.supportsProtocols: an Empty group takes any non-empty type and list; any
 * other group needs the same protocol type and one protocol every current member supports. */
bool gr_supports_protocols(const struct group *g, struct kafka_str type, int32_t n,
                           const struct lm_group_protocol *protos)
{
    if (g->state == LM_GROUP_EMPTY)
        return type.len > 0 && n > 0;
    if (g->protocol_type.len < 0 || !gr_str_eq(g->protocol_type, type))
        return false;
    for (int32_t i = 0; i < n; i++)
        if (support_count(g, protos[i].name) == g->n_members)
            return true;
    return false;
}

/* Kafka GroupMetadata.selectProtocol: among the protocols every member supports, each member
 * votes for the first of its own list; most votes wins. Kafka breaks ties by hash-map order;
 * we break them by the first member's preference order, which is deterministic. */
struct kafka_str gr_select_protocol(const struct group *g)
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
                    votes += gr_str_eq(m->protocols[k].name, cand);
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

void gr_member_set_protocols(struct member *m, int32_t n, const struct lm_group_protocol *p)
{
    for (int32_t i = 0; i < m->n_protocols; i++) {
        gr_sfree(&m->protocols[i].name);
        gr_bfree(&m->protocols[i].metadata);
    }
    free(m->protocols);
    m->protocols = gr_xcalloc((size_t)n, sizeof(*m->protocols));
    m->n_protocols = n;
    for (int32_t i = 0; i < n; i++) {
        m->protocols[i].name = gr_sdup(p[i].name);
        struct kafka_bytes md =
            p[i].metadata.len < 0 ? (struct kafka_bytes){NULL, 0} : p[i].metadata;
        m->protocols[i].metadata = gr_bdup(md);
    }
}

/* Kafka MemberMetadata.matches: same protocols, same order, same metadata bytes. */
bool gr_member_matches(const struct member *m, int32_t n, const struct lm_group_protocol *p)
{
    if (m->n_protocols != n)
        return false;
    for (int32_t i = 0; i < n; i++) {
        int32_t l1 = m->protocols[i].metadata.len,
                l2 = p[i].metadata.len < 0 ? 0 : p[i].metadata.len;
        if (!gr_str_eq(m->protocols[i].name, p[i].name) || l1 != l2 ||
            (l1 > 0 && memcmp(m->protocols[i].metadata.ptr, p[i].metadata.ptr, (size_t)l1) != 0))
            return false;
    }
    return true;
}

/* Kafka GroupMetadata.remove: drop the member; a leaving leader hands over to the first
 * remaining member. Parked requests must have been answered by the caller. */
void gr_member_remove_raw(struct group *g, struct member *m)
{
    LM_ASSERT(!m->awaiting_join && !m->awaiting_sync);
    int32_t i = 0;
    while (i < g->n_members && g->members[i] != m)
        i++;
    LM_ASSERT(i < g->n_members);
    memmove(&g->members[i], &g->members[i + 1],
            (size_t)(g->n_members - i - 1) * sizeof(*g->members));
    g->n_members--;
    if (gr_is_leader(g, m->id)) {
        gr_sfree(&g->leader);
        if (g->n_members > 0)
            g->leader = gr_sdup(g->members[0]->id);
    }
    gr_member_free(m);
}

/* ---- responses ---- */

void gr_join_error(struct lm_group_coord *c, uint64_t token, int16_t err,
                   struct kafka_str member_id)
{
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_JOIN);
    r->u.join.error_code = err;
    r->u.join.generation_id = -1;
    r->u.join.protocol_type = KAFKA_STR_NULL;
    r->u.join.protocol_name = KAFKA_STR_NULL;
    r->u.join.leader = gr_cstr("");
    r->u.join.member_id = gr_ostr(c, member_id.len < 0 ? gr_cstr("") : member_id);
}

/* A successful JoinGroup response for member m; the leader (and only it) gets every member's
 * metadata for the chosen protocol (Kafka GroupMetadata.currentMemberMetadata). */
void gr_join_success(struct lm_group_coord *c, struct group *g, uint64_t token,
                     const struct member *m, struct kafka_str leader, bool with_members)
{
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_JOIN);
    struct lm_group_join_resp *j = &r->u.join;
    j->error_code = KAFKA_NONE;
    j->generation_id = g->generation;
    j->protocol_type = gr_ostr(c, g->protocol_type);
    j->protocol_name = gr_ostr(c, g->protocol_name);
    j->leader = gr_ostr(c, leader.len < 0 ? gr_cstr("") : leader);
    j->member_id = gr_ostr(c, m->id);
    j->skip_assignment = false;
    if (!with_members)
        return;
    j->members = gr_oalloc(c, (size_t)g->n_members * sizeof(*j->members));
    j->n_members = g->n_members;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct member *o = g->members[i];
        const struct mproto *p = gr_member_protocol(o, g->protocol_name);
        LM_ASSERT(p != NULL);
        j->members[i].member_id = gr_ostr(c, o->id);
        j->members[i].group_instance_id = gr_ostr(c, o->instance_id);
        j->members[i].metadata = gr_obytes(c, p->metadata);
    }
}

void gr_sync_reply(struct lm_group_coord *c, struct group *g, uint64_t token, int16_t err,
                   struct kafka_bytes assignment)
{
    struct lm_group_resp *r = gr_push_resp(c, token, LM_GROUP_RESP_SYNC);
    r->u.sync.error_code = err;
    if (err == KAFKA_NONE && g) {
        r->u.sync.protocol_type = gr_ostr(c, g->protocol_type);
        r->u.sync.protocol_name = gr_ostr(c, g->protocol_name);
        r->u.sync.assignment =
            gr_obytes(c, assignment.len < 0 ? (struct kafka_bytes){NULL, 0} : assignment);
    } else {
        r->u.sync.protocol_type = KAFKA_STR_NULL;
        r->u.sync.protocol_name = KAFKA_STR_NULL;
        r->u.sync.assignment = (struct kafka_bytes){(const uint8_t *)"", 0};
    }
}

/* Answer a member's parked JoinGroup with an error (Kafka maybeInvokeJoinCallback). */
void gr_fail_parked_join(struct lm_group_coord *c, struct member *m, int16_t err,
                         struct kafka_str member_id)
{
    if (!m->awaiting_join)
        return;
    m->awaiting_join = false;
    gr_join_error(c, m->join_token, err, member_id);
}

void gr_fail_parked_sync(struct lm_group_coord *c, struct member *m, int16_t err)
{
    if (!m->awaiting_sync)
        return;
    m->awaiting_sync = false;
    gr_sync_reply(c, NULL, m->sync_token, err, KAFKA_BYTES_NULL);
}

/* ---- records ---- */

/* Kafka GroupMetadataManager.storeGroup: the group metadata record, members with their
 * subscription for the chosen protocol and their assignment. */
void gr_emit_group_record(struct lm_group_coord *c, struct group *g)
{
    struct lm_gr_key k = {.version = LM_GR_KEY_GROUP, .group = g->id, .topic = KAFKA_STR_NULL};
    struct lm_gr_group_value v = {
        .version = 3,
        .protocol_type = g->protocol_type.len < 0 ? gr_cstr("") : g->protocol_type,
        .generation = g->generation,
        .protocol = g->protocol_name,
        .leader = g->leader,
        .state_ts_ms = g->state_ts_ms,
        .n_members = g->n_members,
    };
    struct lm_gr_member *ms = g->n_members ? gr_xcalloc((size_t)g->n_members, sizeof(*ms)) : NULL;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct member *m = g->members[i];
        const struct mproto *p =
            g->protocol_name.len >= 0 ? gr_member_protocol(m, g->protocol_name) : NULL;
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

void gr_emit_group_tombstone(struct lm_group_coord *c, struct group *g)
{
    struct lm_gr_key k = {.version = LM_GR_KEY_GROUP, .group = g->id, .topic = KAFKA_STR_NULL};
    push_record(c, g->partition, &k, NULL, NULL);
}

void gr_emit_offset_record(struct lm_group_coord *c, struct group *g, const struct offset_entry *e,
                           bool tombstone)
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
int32_t gr_offset_search(const struct group *g, struct kafka_str topic, int32_t partition)
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

struct offset_entry *gr_offset_put(struct group *g, struct kafka_str topic, int32_t partition)
{
    int32_t i = gr_offset_search(g, topic, partition);
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
    e->topic = gr_sdup(topic);
    e->partition = partition;
    e->metadata = gr_sdup(gr_cstr(""));
    e->leader_epoch = -1;
    e->expire_ts_ms = -1;
    return e;
}

void gr_offset_remove_at(struct group *g, int32_t i)
{
    LM_ASSERT(i >= 0 && i < g->n_offsets);
    gr_offset_entry_free(&g->offsets[i]);
    memmove(&g->offsets[i], &g->offsets[i + 1],
            (size_t)(g->n_offsets - i - 1) * sizeof(*g->offsets));
    g->n_offsets--;
}

/* ---- subscribed topics (for OffsetDelete and offset expiry) ---- */

static void collect_topic(void *ctx, struct kafka_str topic)
{
    struct group *g = ctx;
    for (int32_t i = 0; i < g->n_topics; i++)
        if (gr_str_eq(g->topics[i], topic))
            return;
    g->topics = gr_xrealloc(g->topics, (size_t)(g->n_topics + 1) * sizeof(*g->topics));
    g->topics[g->n_topics++] = gr_sdup(topic);
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
void gr_compute_subscribed_topics(struct group *g)
{
    topics_clear(g);
    if (!gr_str_eq(g->protocol_type, gr_cstr("consumer")))
        return;
    if (g->n_members == 0) {
        g->topics_known = true;
        return;
    }
    if (g->protocol_name.len < 0)
        return;
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct mproto *p = gr_member_protocol(g->members[i], g->protocol_name);
        if (!p || lm_group_consumer_subscription_topics(p->metadata, collect_topic, g) != 0) {
            topics_clear(g);
            return;
        }
    }
    g->topics_known = true;
}

bool gr_subscribed_to(const struct group *g, struct kafka_str topic)
{
    if (!g->topics_known)
        return true;
    for (int32_t i = 0; i < g->n_topics; i++)
        if (gr_str_eq(g->topics[i], topic))
            return true;
    return false;
}

/* ---- coordinator status ---- */

/* Kafka GroupCoordinator.validateGroupStatus: group id valid for the API, this coordinator
 * owns its partition, and the partition is loaded. */
int16_t gr_group_status(const struct lm_group_coord *c, struct kafka_str group_id, bool nonempty_id)
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

int16_t lm_group_coord_status(const struct lm_group_coord *c, struct kafka_str group_id)
{
    return gr_group_status(c, group_id, true);
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
struct kafka_str gr_new_member_id(struct lm_group_coord *c, struct kafka_str prefix)
{
    uint64_t a = rng_next(c), b = rng_next(c);
    a = (a & ~0xF000ULL) | 0x4000ULL;       /* version 4 */
    b = (b & ~(3ULL << 62)) | (2ULL << 62); /* RFC 4122 variant */
    char uuid[37];
    snprintf(uuid, sizeof(uuid), "%08x-%04x-%04x-%04x-%012llx", (unsigned)(a >> 32),
             (unsigned)((a >> 16) & 0xFFFF), (unsigned)(a & 0xFFFF), (unsigned)(b >> 48),
             (unsigned long long)(b & 0xFFFFFFFFFFFFULL));
    int32_t pl = prefix.len > 0 ? prefix.len : 0;
    char *p = gr_xcalloc(1, (size_t)pl + 1 + 36 + 1);
    if (pl > 0)
        memcpy(p, prefix.ptr, (size_t)pl);
    p[pl] = '-';
    memcpy(p + pl + 1, uuid, 36);
    return (struct kafka_str){p, pl + 37};
}

/* ---- ticks ---- */

int lm_group_coord_tick(struct lm_group_coord *c, int64_t now_ms)
{
    LM_ASSERT(c != NULL);
    for (size_t b = 0; b < c->n_buckets; b++)
        for (struct group *g = c->buckets[b]; g; g = g->next)
            if (!c->loading[g->partition])
                gr_group_timers(c, g, now_ms);
    if (now_ms >= c->next_expiry_check_ms) {
        c->next_expiry_check_ms = now_ms + c->cfg.offsets_retention_check_interval_ms;
        for (size_t b = 0; b < c->n_buckets; b++) {
            struct group *g = c->buckets[b];
            while (g) {
                struct group *next = g->next; /* g may be destroyed */
                if (!c->loading[g->partition])
                    gr_expire_offsets(c, g, now_ms);
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
    const struct group *g = gr_group_find(c, group_id);
    if (!g)
        return LM_E_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    out->state = g->state;
    out->generation_id = g->generation;
    out->n_members = g->n_members;
    out->n_pending_members = g->n_pending;
    out->n_awaiting_join = gr_n_awaiting_join(g);
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
