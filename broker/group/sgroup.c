/* Share groups (KIP-932): membership and the simple assignor. See sgroup.h. */
#include "broker/group/sgroup.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

struct sg_member {
    struct kafka_str id;
    struct kafka_str rack;
    struct kafka_str client_id;
    struct kafka_str client_host;
    int32_t epoch;
    int64_t deadline_ms;
    int32_t session_ms;
    int32_t n_topics;
    struct kafka_str *topics;
    int32_t n_assigned;
    struct lm_cgroup_tp *assigned; /* the target of the assignment epoch, sorted */
};

struct sg_group {
    struct kafka_str id;
    int32_t epoch;
    int32_t assignment_epoch;
    int32_t n_members;
    int32_t cap_members;
    struct sg_member *members; /* sorted by member id (the assignor's order) */
};

struct lm_sgroup_coord {
    struct lm_sgroup_config cfg;
    size_t n_groups;
    size_t cap_groups;
    struct sg_group *groups;
    /* the last describe's members (borrowed strings) */
    struct lm_sgroup_desc_member *desc;
    int32_t cap_desc;
};

static const struct kafka_str NULL_STR = {NULL, -1};

void lm_sgroup_config_default(struct lm_sgroup_config *cfg)
{
    cfg->session_timeout_ms = 45000;
    cfg->heartbeat_interval_ms = 5000;
    cfg->max_size = 200;
}

int lm_sgroup_coord_new(const struct lm_sgroup_config *cfg, struct lm_sgroup_coord **out)
{
    LM_ASSERT(cfg != NULL && out != NULL);
    LM_ASSERT(cfg->session_timeout_ms > 0 && cfg->max_size > 0);
    struct lm_sgroup_coord *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LM_E_NOMEM;
    c->cfg = *cfg;
    *out = c;
    return 0;
}

static bool str_eq(struct kafka_str a, struct kafka_str b)
{
    if (a.len != b.len)
        return false;
    return a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0;
}

static int str_cmp(struct kafka_str a, struct kafka_str b)
{
    int32_t al = a.len > 0 ? a.len : 0, bl = b.len > 0 ? b.len : 0;
    int c =
        memcmp(a.ptr != NULL ? a.ptr : "", b.ptr != NULL ? b.ptr : "", (size_t)(al < bl ? al : bl));
    if (c != 0)
        return c;
    return al < bl ? -1 : al > bl;
}

/* A malloc'ed copy (null stays null); returns false on allocation failure. */
static bool str_dup(struct kafka_str s, struct kafka_str *out)
{
    if (s.len < 0) {
        *out = NULL_STR;
        return true;
    }
    char *p = malloc((size_t)s.len + 1);
    if (p == NULL)
        return false;
    if (s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = '\0';
    *out = (struct kafka_str){p, s.len};
    return true;
}

static void str_free(struct kafka_str *s)
{
    free((char *)s->ptr);
    *s = NULL_STR;
}

static void topics_free(struct sg_member *m)
{
    for (int32_t i = 0; i < m->n_topics; i++)
        str_free(&m->topics[i]);
    free(m->topics);
    m->topics = NULL;
    m->n_topics = 0;
}

static void member_free(struct sg_member *m)
{
    str_free(&m->id);
    str_free(&m->rack);
    str_free(&m->client_id);
    str_free(&m->client_host);
    topics_free(m);
    free(m->assigned);
    m->assigned = NULL;
    m->n_assigned = 0;
}

static void group_free(struct sg_group *g)
{
    for (int32_t i = 0; i < g->n_members; i++)
        member_free(&g->members[i]);
    free(g->members);
    str_free(&g->id);
}

void lm_sgroup_coord_free(struct lm_sgroup_coord *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n_groups; i++)
        group_free(&c->groups[i]);
    free(c->groups);
    free(c->desc);
    free(c);
}

static struct sg_group *group_find(const struct lm_sgroup_coord *c, struct kafka_str id)
{
    for (size_t i = 0; i < c->n_groups; i++)
        if (str_eq(c->groups[i].id, id))
            return &c->groups[i];
    return NULL;
}

static int32_t member_index(const struct sg_group *g, struct kafka_str id)
{
    for (int32_t i = 0; i < g->n_members; i++)
        if (str_eq(g->members[i].id, id))
            return i;
    return -1;
}

static void member_remove(struct sg_group *g, int32_t i)
{
    LM_ASSERT(i >= 0 && i < g->n_members);
    member_free(&g->members[i]);
    memmove(&g->members[i], &g->members[i + 1],
            (size_t)(g->n_members - i - 1) * sizeof(g->members[0]));
    g->n_members--;
    g->epoch++;
}

static bool subscribes(const struct sg_member *m, struct kafka_str topic)
{
    for (int32_t i = 0; i < m->n_topics; i++)
        if (str_eq(m->topics[i], topic))
            return true;
    return false;
}

static int tp_cmp(const void *a, const void *b)
{
    return lm_cgroup_tp_cmp(a, b);
}

/* The simple assignor over the group's members (in member id order) and the image. The new
 * targets replace the members' assignments; returns whether any changed, or LM_E_NOMEM as a
 * negative value (assignments unchanged). */
static int assign(struct sg_group *g, const struct lm_cgroup_image *img)
{
    int32_t n = g->n_members;
    if (n == 0)
        return 0;
    int32_t *counts = calloc((size_t)n, sizeof(int32_t));
    struct lm_cgroup_tp **out = calloc((size_t)n, sizeof(*out));
    int32_t *sub = malloc((size_t)n * sizeof(int32_t));
    int rc = 0;
    if (counts == NULL || out == NULL || sub == NULL) {
        rc = LM_E_NOMEM;
        goto done;
    }
    /* two passes: count, then fill */
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        if (pass == 1) {
            for (int32_t i = 0; i < n; i++) {
                out[i] = malloc((size_t)(counts[i] > 0 ? counts[i] : 1) * sizeof(**out));
                if (out[i] == NULL) {
                    rc = LM_E_NOMEM;
                    break;
                }
                counts[i] = 0;
            }
            if (rc != 0)
                break;
        }
        for (size_t t = 0; t < (img != NULL ? img->n_topics : 0); t++) {
            struct lm_cgroup_topic tp;
            img->topic(img->ctx, t, &tp);
            if (tp.partitions <= 0)
                continue;
            int32_t ns = 0;
            for (int32_t i = 0; i < n; i++)
                if (subscribes(&g->members[i], tp.name))
                    sub[ns++] = i;
            if (ns == 0)
                continue;
            int32_t np = tp.partitions;
            int32_t k = np >= ns ? np : ns;
            for (int32_t j = 0; j < k; j++) {
                int32_t m = np >= ns ? sub[j % ns] : sub[j];
                int32_t p = np >= ns ? j : j % np;
                if (pass == 1)
                    out[m][counts[m]] = (struct lm_cgroup_tp){tp.id, p};
                counts[m]++;
            }
        }
    }
    if (rc != 0)
        goto done;
    for (int32_t i = 0; i < n; i++) {
        qsort(out[i], (size_t)counts[i], sizeof(**out), tp_cmp);
        struct sg_member *m = &g->members[i];
        bool same =
            m->n_assigned == counts[i] &&
            (counts[i] == 0 || memcmp(m->assigned, out[i], (size_t)counts[i] * sizeof(**out)) == 0);
        if (!same)
            rc = 1;
    }
    for (int32_t i = 0; i < n; i++) {
        struct sg_member *m = &g->members[i];
        free(m->assigned);
        m->assigned = out[i];
        m->n_assigned = counts[i];
        out[i] = NULL;
    }
done:
    for (int32_t i = 0; out != NULL && i < n; i++)
        free(out[i]);
    free(out);
    free(sub);
    free(counts);
    return rc;
}

static void fill_error(struct lm_sgroup_hb_resp *out, int16_t err, const char *msg)
{
    memset(out, 0, sizeof(*out));
    out->error_code = err;
    out->error_message = msg;
    out->member_id = NULL_STR;
}

static bool set_topics(struct sg_member *m, int32_t n, const struct kafka_str *names)
{
    struct kafka_str *t = calloc((size_t)(n > 0 ? n : 1), sizeof(*t));
    if (t == NULL)
        return false;
    for (int32_t i = 0; i < n; i++) {
        if (!str_dup(names[i].len < 0 ? (struct kafka_str){"", 0} : names[i], &t[i])) {
            for (int32_t j = 0; j < i; j++)
                str_free(&t[j]);
            free(t);
            return false;
        }
    }
    topics_free(m);
    m->topics = t;
    m->n_topics = n;
    return true;
}

static bool same_topics(const struct sg_member *m, int32_t n, const struct kafka_str *names)
{
    if (m->n_topics != n)
        return false;
    for (int32_t i = 0; i < n; i++)
        if (!subscribes(m, names[i]))
            return false;
    return true;
}

static bool replace_str(struct kafka_str *dst, struct kafka_str src)
{
    struct kafka_str s;
    if (src.len > LM_SGROUP_ID_MAX)
        src.len = LM_SGROUP_ID_MAX;
    if (!str_dup(src, &s))
        return false;
    str_free(dst);
    *dst = s;
    return true;
}

static struct sg_group *group_add(struct lm_sgroup_coord *c, struct kafka_str id)
{
    if (c->n_groups >= LM_SGROUP_GROUPS_MAX)
        return NULL;
    if (c->n_groups == c->cap_groups) {
        size_t cap = c->cap_groups ? c->cap_groups * 2 : 8;
        struct sg_group *g = realloc(c->groups, cap * sizeof(*g));
        if (g == NULL)
            return NULL;
        c->groups = g;
        c->cap_groups = cap;
    }
    struct sg_group *g = &c->groups[c->n_groups];
    memset(g, 0, sizeof(*g));
    if (!str_dup(id, &g->id))
        return NULL;
    c->n_groups++;
    return g;
}

/* Inserts a member with id in id order; returns its index or -1 (no memory). */
static int32_t member_add(struct sg_group *g, struct kafka_str id)
{
    if (g->n_members == g->cap_members) {
        int32_t cap = g->cap_members ? g->cap_members * 2 : 4;
        struct sg_member *m = realloc(g->members, (size_t)cap * sizeof(*m));
        if (m == NULL)
            return -1;
        g->members = m;
        g->cap_members = cap;
    }
    int32_t at = 0;
    while (at < g->n_members && str_cmp(g->members[at].id, id) < 0)
        at++;
    struct sg_member m;
    memset(&m, 0, sizeof(m));
    m.rack = NULL_STR;
    m.client_id = NULL_STR;
    m.client_host = NULL_STR;
    if (!str_dup(id, &m.id))
        return -1;
    memmove(&g->members[at + 1], &g->members[at],
            (size_t)(g->n_members - at) * sizeof(g->members[0]));
    g->members[at] = m;
    g->n_members++;
    return at;
}

int lm_sgroup_heartbeat(struct lm_sgroup_coord *c, int64_t now_ms,
                        const struct lm_cgroup_image *img, const struct lm_sgroup_hb_req *req,
                        struct lm_sgroup_hb_resp *out)
{
    LM_ASSERT(c != NULL && req != NULL && out != NULL);
    if (req->group_id.len <= 0) {
        fill_error(out, KAFKA_INVALID_REQUEST, "GroupId can't be empty.");
        return 0;
    }
    if (req->member_id.len <= 0 || req->member_id.len > LM_SGROUP_ID_MAX) {
        fill_error(out, KAFKA_INVALID_REQUEST, "MemberId can't be empty.");
        return 0;
    }
    if (req->member_epoch < LM_SGROUP_LEAVE_EPOCH) {
        fill_error(out, KAFKA_INVALID_REQUEST, "MemberEpoch is invalid.");
        return 0;
    }
    if (req->member_epoch == LM_SGROUP_JOIN_EPOCH && req->n_topic_names < 0) {
        fill_error(out, KAFKA_INVALID_REQUEST,
                   "SubscribedTopicNames must be set in first request.");
        return 0;
    }
    if (req->n_topic_names > LM_SGROUP_SUBSCRIBED_MAX) {
        fill_error(out, KAFKA_INVALID_REQUEST, "Too many subscribed topics.");
        return 0;
    }
    struct sg_group *g = group_find(c, req->group_id);
    int32_t mi = g != NULL ? member_index(g, req->member_id) : -1;
    if (req->member_epoch == LM_SGROUP_LEAVE_EPOCH) {
        if (mi >= 0) {
            member_remove(g, mi);
            if (assign(g, img) < 0)
                g->assignment_epoch = -1; /* recomputed at the next heartbeat */
            else
                g->assignment_epoch = g->epoch;
        }
        memset(out, 0, sizeof(*out));
        out->member_id = req->member_id;
        out->member_epoch = LM_SGROUP_LEAVE_EPOCH;
        return 0;
    }
    if (req->member_epoch > 0) {
        if (mi < 0) {
            fill_error(out, KAFKA_UNKNOWN_MEMBER_ID, "The member is not in the share group.");
            return 0;
        }
        if (g->members[mi].epoch != req->member_epoch) {
            fill_error(out, KAFKA_FENCED_MEMBER_EPOCH,
                       "The share group member has a stale member epoch.");
            return 0;
        }
    }
    if (g == NULL && (g = group_add(c, req->group_id)) == NULL) {
        fill_error(out, KAFKA_UNKNOWN_SERVER_ERROR, NULL);
        return c->n_groups >= LM_SGROUP_GROUPS_MAX ? 0 : LM_E_NOMEM;
    }
    bool changed = false;
    if (mi < 0) {
        if (g->n_members >= c->cfg.max_size) {
            fill_error(out, KAFKA_GROUP_MAX_SIZE_REACHED,
                       "The share group has reached its maximum size.");
            return 0;
        }
        if ((mi = member_add(g, req->member_id)) < 0) {
            fill_error(out, KAFKA_UNKNOWN_SERVER_ERROR, NULL);
            return LM_E_NOMEM;
        }
        changed = true;
    }
    struct sg_member *m = &g->members[mi];
    if (req->n_topic_names >= 0 && !same_topics(m, req->n_topic_names, req->topic_names)) {
        if (!set_topics(m, req->n_topic_names, req->topic_names)) {
            fill_error(out, KAFKA_UNKNOWN_SERVER_ERROR, NULL);
            return LM_E_NOMEM;
        }
        changed = true;
    }
    if ((req->rack_id.len >= 0 && !replace_str(&m->rack, req->rack_id)) ||
        !replace_str(&m->client_id, req->client_id) ||
        !replace_str(&m->client_host, req->client_host)) {
        fill_error(out, KAFKA_UNKNOWN_SERVER_ERROR, NULL);
        return LM_E_NOMEM;
    }
    m->session_ms =
        req->session_timeout_ms > 0 ? req->session_timeout_ms : c->cfg.session_timeout_ms;
    m->deadline_ms = now_ms + m->session_ms;
    if (changed)
        g->epoch++;
    /* recomputed every heartbeat: partition counts of the subscribed topics may have moved */
    int rc = assign(g, img);
    if (rc < 0) {
        fill_error(out, KAFKA_UNKNOWN_SERVER_ERROR, NULL);
        return rc;
    }
    if (rc > 0 && !changed && g->assignment_epoch == g->epoch)
        g->epoch++; /* the metadata moved the target */
    if (rc > 0 || changed || g->assignment_epoch != g->epoch)
        g->assignment_epoch = g->epoch;
    m = &g->members[mi];
    memset(out, 0, sizeof(*out));
    out->error_code = KAFKA_NONE;
    out->member_id = m->id;
    out->heartbeat_interval_ms =
        req->heartbeat_interval_ms > 0 ? req->heartbeat_interval_ms : c->cfg.heartbeat_interval_ms;
    out->has_assignment =
        req->member_epoch == LM_SGROUP_JOIN_EPOCH || m->epoch != g->assignment_epoch;
    m->epoch = g->assignment_epoch;
    out->member_epoch = m->epoch;
    out->n_assigned = m->n_assigned;
    out->assigned = m->assigned;
    LM_ASSERT(m->epoch > 0);
    return 0;
}

int lm_sgroup_describe(struct lm_sgroup_coord *c, struct kafka_str group_id,
                       struct lm_sgroup_desc *out)
{
    LM_ASSERT(c != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    out->group_id = group_id;
    const struct sg_group *g = group_find(c, group_id);
    if (g == NULL) {
        out->error_code = KAFKA_GROUP_ID_NOT_FOUND;
        return 0;
    }
    if (g->n_members > c->cap_desc) {
        struct lm_sgroup_desc_member *d = realloc(c->desc, (size_t)g->n_members * sizeof(*d));
        if (d == NULL)
            return LM_E_NOMEM;
        c->desc = d;
        c->cap_desc = g->n_members;
    }
    for (int32_t i = 0; i < g->n_members; i++) {
        const struct sg_member *m = &g->members[i];
        c->desc[i] = (struct lm_sgroup_desc_member){
            .member_id = m->id,
            .rack_id = m->rack,
            .member_epoch = m->epoch,
            .client_id = m->client_id.len >= 0 ? m->client_id : (struct kafka_str){"", 0},
            .client_host = m->client_host.len >= 0 ? m->client_host : (struct kafka_str){"", 0},
            .n_topic_names = m->n_topics,
            .topic_names = m->topics,
            .n_assigned = m->n_assigned,
            .assigned = m->assigned,
        };
    }
    out->error_code = KAFKA_NONE;
    out->state = g->n_members > 0 ? "Stable" : "Empty";
    out->group_epoch = g->epoch;
    out->assignment_epoch = g->assignment_epoch;
    out->assignor = "simple";
    out->n_members = g->n_members;
    out->members = c->desc;
    return 0;
}

bool lm_sgroup_exists(const struct lm_sgroup_coord *c, struct kafka_str group_id,
                      int32_t *n_members)
{
    const struct sg_group *g = group_find(c, group_id);
    if (n_members != NULL)
        *n_members = g != NULL ? g->n_members : 0;
    return g != NULL;
}

bool lm_sgroup_member_ok(const struct lm_sgroup_coord *c, struct kafka_str group_id,
                         struct kafka_str member_id)
{
    const struct sg_group *g = group_find(c, group_id);
    return g != NULL && member_index(g, member_id) >= 0;
}

void lm_sgroup_list(const struct lm_sgroup_coord *c,
                    void (*fn)(void *ctx, const struct lm_sgroup_list_entry *e), void *ctx)
{
    for (size_t i = 0; i < c->n_groups; i++) {
        struct lm_sgroup_list_entry e = {c->groups[i].id,
                                         c->groups[i].n_members > 0 ? "Stable" : "Empty"};
        fn(ctx, &e);
    }
}

int lm_sgroup_delete(struct lm_sgroup_coord *c, struct kafka_str group_id)
{
    struct sg_group *g = group_find(c, group_id);
    if (g == NULL)
        return LM_E_NOT_FOUND;
    if (g->n_members > 0)
        return LM_E_EXISTS;
    size_t i = (size_t)(g - c->groups);
    group_free(g);
    memmove(&c->groups[i], &c->groups[i + 1], (c->n_groups - i - 1) * sizeof(c->groups[0]));
    c->n_groups--;
    return 0;
}

int32_t lm_sgroup_tick(struct lm_sgroup_coord *c, int64_t now_ms)
{
    int32_t removed = 0;
    for (size_t i = 0; i < c->n_groups; i++) {
        struct sg_group *g = &c->groups[i];
        for (int32_t j = 0; j < g->n_members;) {
            if (g->members[j].deadline_ms <= now_ms) {
                member_remove(g, j); /* the target is recomputed at the next heartbeat */
                removed++;
            } else {
                j++;
            }
        }
    }
    return removed;
}

int64_t lm_sgroup_next_deadline_ms(const struct lm_sgroup_coord *c)
{
    int64_t next = INT64_MAX;
    for (size_t i = 0; i < c->n_groups; i++)
        for (int32_t j = 0; j < c->groups[i].n_members; j++)
            if (c->groups[i].members[j].deadline_ms < next)
                next = c->groups[i].members[j].deadline_ms;
    return next;
}

size_t lm_sgroup_n_groups(const struct lm_sgroup_coord *c)
{
    return c->n_groups;
}
