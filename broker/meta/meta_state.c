#include "broker/meta/meta_state.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"

#define META_RECORD_VERSION 1

void lm_meta_state_init(struct lm_meta_state *s)
{
    memset(s, 0, sizeof(*s));
    s->producer_id_next = 0;
    s->transaction_version = -1;
}

int16_t lm_meta_state_transaction_version(const struct lm_meta_state *s)
{
    if (s == NULL || s->transaction_version < 0)
        return LM_META_TRANSACTION_VERSION_DEFAULT;
    return s->transaction_version;
}

void lm_meta_configs_free(struct lm_config_entry *configs, size_t count)
{
    if (configs == NULL)
        return;
    for (size_t i = 0; i < count; i++) {
        free(configs[i].name);
        free(configs[i].value);
    }
    free(configs);
}

void lm_meta_state_deinit(struct lm_meta_state *s)
{
    for (size_t i = 0; i < s->topic_count; i++) {
        lm_meta_configs_free(s->topics[i].configs, s->topics[i].config_count);
        free(s->topics[i].replicas);
        free(s->topics[i].leaders);
        free(s->topics[i].moved);
    }
    free(s->topics);
    free(s->brokers);
    free(s->scram);
    free(s->acls);
    free(s->quotas);
    for (size_t i = 0; i < s->broker_config_count; i++)
        lm_meta_configs_free(s->broker_configs[i].configs, s->broker_configs[i].count);
    free(s->broker_configs);
    for (size_t i = 0; i < s->group_config_count; i++) {
        free(s->group_configs[i].group);
        lm_meta_configs_free(s->group_configs[i].configs, s->group_configs[i].count);
    }
    free(s->group_configs);
    free(s->retired);
    memset(s, 0, sizeof(*s));
}

static int configs_dup(const struct lm_config_entry *src, size_t count,
                       struct lm_config_entry **out)
{
    *out = NULL;
    if (count == 0)
        return 0;
    struct lm_config_entry *c = calloc(count, sizeof(*c));
    if (c == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < count; i++) {
        c[i].name = strdup(src[i].name);
        c[i].value = strdup(src[i].value);
        if (c[i].name == NULL || c[i].value == NULL) {
            lm_meta_configs_free(c, count);
            return LM_E_NOMEM;
        }
    }
    *out = c;
    return 0;
}

/* A malloc'd copy of n elements of size bytes at src into *dst (NULL for none). */
static int flat_copy(void **dst, const void *src, size_t n, size_t size)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    *dst = malloc(n * size);
    if (*dst == NULL)
        return LM_E_NOMEM;
    memcpy(*dst, src, n * size);
    return 0;
}

/* The flat arrays of the image: nodes, SCRAM credentials, ACL bindings, client quotas. */
/* The group config entries of src into dst (empty). */
static int group_configs_copy(struct lm_meta_state *dst, const struct lm_meta_state *src)
{
    if (src->group_config_count == 0)
        return 0;
    dst->group_configs = calloc(src->group_config_count, sizeof(*dst->group_configs));
    if (dst->group_configs == NULL)
        return LM_E_NOMEM;
    dst->group_config_cap = src->group_config_count;
    for (size_t i = 0; i < src->group_config_count; i++) {
        const struct lm_meta_group_configs *g = &src->group_configs[i];
        struct lm_meta_group_configs *d = &dst->group_configs[i];
        d->group = strdup(g->group);
        if (d->group == NULL || configs_dup(g->configs, g->count, &d->configs) != 0) {
            free(d->group);
            d->group = NULL;
            return LM_E_NOMEM;
        }
        d->count = g->count;
        dst->group_config_count = i + 1;
    }
    return 0;
}

static int brokers_copy(struct lm_meta_state *dst, const struct lm_meta_state *src)
{
    if (flat_copy((void **)&dst->acls, src->acls, src->acl_count, sizeof(*src->acls)) != 0 ||
        flat_copy((void **)&dst->quotas, src->quotas, src->quota_count, sizeof(*src->quotas)) !=
            0 ||
        flat_copy((void **)&dst->scram, src->scram, src->scram_count, sizeof(*src->scram)) != 0 ||
        flat_copy((void **)&dst->brokers, src->brokers, src->broker_count, sizeof(*src->brokers)) !=
            0) {
        lm_meta_state_deinit(dst);
        return LM_E_NOMEM;
    }
    dst->acl_count = dst->acl_cap = src->acl_count;
    dst->quota_count = dst->quota_cap = src->quota_count;
    dst->scram_count = dst->scram_cap = src->scram_count;
    dst->broker_count = dst->broker_cap = src->broker_count;
    if (group_configs_copy(dst, src) != 0) {
        lm_meta_state_deinit(dst);
        return LM_E_NOMEM;
    }
    if (src->broker_config_count == 0)
        return 0;
    dst->broker_configs = calloc(src->broker_config_count, sizeof(*dst->broker_configs));
    if (dst->broker_configs == NULL) {
        lm_meta_state_deinit(dst);
        return LM_E_NOMEM;
    }
    dst->broker_config_cap = src->broker_config_count;
    for (size_t i = 0; i < src->broker_config_count; i++) {
        const struct lm_meta_broker_configs *b = &src->broker_configs[i];
        struct lm_meta_broker_configs *d = &dst->broker_configs[i];
        d->node = b->node;
        if (configs_dup(b->configs, b->count, &d->configs) != 0) {
            lm_meta_state_deinit(dst);
            return LM_E_NOMEM;
        }
        d->count = b->count;
        dst->broker_config_count = i + 1;
    }
    return 0;
}

int lm_meta_state_copy(struct lm_meta_state *dst, const struct lm_meta_state *src)
{
    lm_meta_state_init(dst);
    dst->producer_id_next = src->producer_id_next;
    dst->transaction_version = src->transaction_version;
    dst->version = src->version;
    if (src->retired_count > 0) {
        /* copied oldest first: the copy's ring starts at 0 */
        dst->retired = malloc((size_t)src->retired_count * 16);
        if (dst->retired == NULL)
            return LM_E_NOMEM;
        for (uint32_t i = 0; i < src->retired_count; i++)
            memcpy(dst->retired[i], lm_meta_state_retired_at(src, i), 16);
        dst->retired_count = dst->retired_cap = src->retired_count;
        dst->retired_head = 0;
    }
    if (src->topic_count == 0)
        return brokers_copy(dst, src);
    dst->topics = calloc(src->topic_count, sizeof(*dst->topics));
    if (dst->topics == NULL)
        return LM_E_NOMEM;
    dst->topic_cap = src->topic_count;
    for (size_t i = 0; i < src->topic_count; i++) {
        const struct lm_meta_topic *st = &src->topics[i];
        dst->topics[i] = *st;
        dst->topics[i].configs = NULL;
        dst->topics[i].config_count = 0;
        dst->topics[i].replicas = NULL;
        dst->topics[i].leaders = NULL;
        dst->topics[i].moved = NULL;
        dst->topics[i].moved_count = dst->topics[i].moved_cap = 0;
        dst->topic_count = i + 1;
        int rc = configs_dup(st->configs, st->config_count, &dst->topics[i].configs);
        if (rc != 0) {
            lm_meta_state_deinit(dst);
            return rc;
        }
        dst->topics[i].config_count = st->config_count;
        if (st->replicas != NULL) {
            size_t n = (size_t)st->partition_count * (size_t)st->replication_factor;
            dst->topics[i].replicas = malloc(n * sizeof(int32_t));
            if (dst->topics[i].replicas == NULL) {
                lm_meta_state_deinit(dst);
                return LM_E_NOMEM;
            }
            memcpy(dst->topics[i].replicas, st->replicas, n * sizeof(int32_t));
        }
        if (st->leaders != NULL) {
            size_t n = (size_t)st->partition_count * sizeof(*st->leaders);
            dst->topics[i].leaders = malloc(n);
            if (dst->topics[i].leaders == NULL) {
                lm_meta_state_deinit(dst);
                return LM_E_NOMEM;
            }
            memcpy(dst->topics[i].leaders, st->leaders, n);
        }
        if (st->moved_count > 0) {
            dst->topics[i].moved = malloc(st->moved_count * sizeof(*st->moved));
            if (dst->topics[i].moved == NULL) {
                lm_meta_state_deinit(dst);
                return LM_E_NOMEM;
            }
            memcpy(dst->topics[i].moved, st->moved, st->moved_count * sizeof(*st->moved));
            dst->topics[i].moved_count = dst->topics[i].moved_cap = st->moved_count;
        }
    }
    return brokers_copy(dst, src);
}

int lm_meta_topic_name_valid(const char *name)
{
    if (name == NULL)
        return LM_E_INVALID;
    size_t n = strlen(name);
    if (n == 0 || n > LM_TOPIC_NAME_MAX || strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return LM_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return LM_E_INVALID;
    }
    return 0;
}

const struct lm_meta_topic *lm_meta_state_find(const struct lm_meta_state *s, const char *name)
{
    for (size_t i = 0; i < s->topic_count; i++) {
        if (strcmp(s->topics[i].name, name) == 0)
            return &s->topics[i];
    }
    return NULL;
}

const struct lm_meta_topic *lm_meta_state_find_id(const struct lm_meta_state *s,
                                                  const uint8_t id[16])
{
    for (size_t i = 0; i < s->topic_count; i++) {
        if (memcmp(s->topics[i].id, id, 16) == 0)
            return &s->topics[i];
    }
    return NULL;
}

const struct lm_meta_broker *lm_meta_state_broker(const struct lm_meta_state *s, int32_t id)
{
    for (size_t i = 0; i < s->broker_count; i++) {
        if (s->brokers[i].id == id)
            return &s->brokers[i];
    }
    return NULL;
}

/* Index of partition p in t->moved, or where it would go (binary search). */
static size_t moved_at(const struct lm_meta_topic *t, int32_t p, bool *found)
{
    size_t lo = 0, hi = t->moved_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->moved[mid].partition < p)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = lo < t->moved_count && t->moved[lo].partition == p;
    return lo;
}

const struct lm_meta_moved *lm_meta_topic_moved(const struct lm_meta_topic *t, int32_t p)
{
    bool found;
    size_t i = moved_at(t, p, &found);
    return found ? &t->moved[i] : NULL;
}

bool lm_meta_topic_reassigning(const struct lm_meta_topic *t, int32_t p)
{
    const struct lm_meta_moved *m = lm_meta_topic_moved(t, p);
    return m != NULL && (m->n_adding > 0 || m->n_removing > 0);
}

const int32_t *lm_meta_topic_replicas(const struct lm_meta_topic *t, int32_t p, int16_t *n)
{
    *n = 0;
    if (t->replicas == NULL || p < 0 || p >= t->partition_count)
        return NULL;
    const struct lm_meta_moved *m = lm_meta_topic_moved(t, p);
    if (m != NULL) {
        *n = m->n;
        return m->replicas;
    }
    *n = t->replication_factor;
    return &t->replicas[(size_t)p * (size_t)t->replication_factor];
}

static bool ids_have(const int32_t *ids, int16_t n, int32_t id)
{
    for (int16_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

int16_t lm_meta_topic_current_replicas(const struct lm_meta_topic *t, int32_t p,
                                       int32_t out[LM_META_REPLICATION_MAX])
{
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p, &n);
    const struct lm_meta_moved *m = r != NULL ? lm_meta_topic_moved(t, p) : NULL;
    int16_t k = 0;
    for (int16_t i = 0; i < n; i++)
        if (m == NULL || !ids_have(m->adding, m->n_adding, r[i]))
            out[k++] = r[i];
    return k;
}

/* A replica list: 1..LM_META_REPLICATION_MAX ids >= 0, none twice. */
static bool ids_valid(const int32_t *ids, int16_t n)
{
    if (ids == NULL || n < 1 || n > LM_META_REPLICATION_MAX)
        return false;
    for (int16_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids_have(ids, i, ids[i]))
            return false;
    return true;
}

int lm_meta_reassign_plan(const int32_t *current, int16_t n_current, const int32_t *target,
                          int16_t n_target, struct lm_meta_moved *out)
{
    if (!ids_valid(current, n_current) || !ids_valid(target, n_target))
        return LM_E_INVALID;
    int32_t partition = out->partition;
    memset(out, 0, sizeof(*out));
    out->partition = partition;
    for (int16_t i = 0; i < n_target; i++) {
        out->replicas[out->n++] = target[i];
        if (!ids_have(current, n_current, target[i]))
            out->adding[out->n_adding++] = target[i];
    }
    for (int16_t i = 0; i < n_current; i++) {
        if (ids_have(target, n_target, current[i]))
            continue;
        if (out->n >= LM_META_REPLICATION_MAX)
            return LM_E_INVALID;
        out->replicas[out->n++] = current[i];
        out->removing[out->n_removing++] = current[i];
    }
    return 0;
}

int32_t lm_meta_topic_leader(const struct lm_meta_topic *t, int32_t p, int32_t *epoch)
{
    *epoch = -1;
    if (t->leaders == NULL || p < 0 || p >= t->partition_count)
        return -1;
    *epoch = t->leaders[p].epoch;
    return t->leaders[p].leader;
}

uint16_t lm_meta_topic_isr_out(const struct lm_meta_topic *t, int32_t p)
{
    if (t->leaders == NULL || p < 0 || p >= t->partition_count)
        return 0;
    return t->leaders[p].isr_out;
}

int32_t lm_meta_state_partition_leader(const struct lm_meta_state *st,
                                       const struct lm_meta_topic *t, int32_t p, int32_t self)
{
    int32_t cur[LM_META_REPLICATION_MAX];
    int16_t n = lm_meta_topic_current_replicas(t, p, cur);
    if (n == 0)
        return self;
    int32_t leader = cur[0];
    if (n > 1) { /* replicated: whom its Raft group elected, as announced */
        int32_t epoch;
        leader = lm_meta_topic_leader(t, p, &epoch);
        if (leader < 0)
            return -1;
    }
    const struct lm_meta_broker *b = lm_meta_state_broker(st, leader);
    return b != NULL && !b->fenced ? leader : -1;
}

void lm_meta_state_partition_isr(const struct lm_meta_state *st, const struct lm_meta_topic *t,
                                 int32_t p, int32_t self, int32_t *isr, int32_t *n_isr,
                                 int32_t *offline, int32_t *n_offline)
{
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p, &n);
    *n_isr = *n_offline = 0;
    if (r == NULL) {
        isr[(*n_isr)++] = self;
        return;
    }
    bool led = lm_meta_state_partition_leader(st, t, p, self) >= 0;
    uint16_t out = n > 1 ? lm_meta_topic_isr_out(t, p) : 0;
    const struct lm_meta_moved *m = lm_meta_topic_moved(t, p);
    for (int16_t j = 0; j < n; j++) {
        const struct lm_meta_broker *b = lm_meta_state_broker(st, r[j]);
        if (b == NULL || b->fenced)
            offline[(*n_offline)++] = r[j];
        else if (led && !(out & (1u << j)) &&
                 (m == NULL || !ids_have(m->adding, m->n_adding, r[j])))
            isr[(*n_isr)++] = r[j];
    }
}

/* An assignment of `partitions` partitions: rf within bounds, ids >= 0, no id twice in a row. */
static int replicas_check(const int32_t *replicas, int16_t rf, int32_t partitions)
{
    if (replicas == NULL)
        return rf == 0 ? 0 : LM_E_INVALID;
    if (rf < 1 || rf > LM_META_REPLICATION_MAX || partitions < 1)
        return LM_E_INVALID;
    for (int32_t p = 0; p < partitions; p++) {
        const int32_t *row = &replicas[(size_t)p * (size_t)rf];
        for (int16_t j = 0; j < rf; j++) {
            if (row[j] < 0)
                return LM_E_INVALID;
            for (int16_t k = 0; k < j; k++) {
                if (row[k] == row[j])
                    return LM_E_INVALID;
            }
        }
    }
    return 0;
}

static bool text_fits(const char *v, size_t max)
{
    return v != NULL && strlen(v) <= max;
}

bool lm_meta_broker_endpoint(const struct lm_meta_broker *b, const char *listener, char *host,
                             size_t host_cap, uint16_t *port)
{
    /* endpoints: NAME://host:port,... ; the listener of the same name, else the first */
    const char *best = NULL;
    for (const char *p = b->endpoints; p && *p;) {
        const char *sep = strstr(p, "://");
        if (sep == NULL)
            break;
        if (best == NULL)
            best = p;
        if (listener != NULL && (size_t)(sep - p) == strlen(listener) &&
            strncasecmp(p, listener, (size_t)(sep - p)) == 0) {
            best = p;
            break;
        }
        p = strchr(p, ',');
        if (p)
            p++;
    }
    if (best == NULL)
        return false;
    const char *h = strstr(best, "://") + 3;
    const char *end = strchr(h, ',');
    size_t len = end ? (size_t)(end - h) : strlen(h);
    const char *colon = NULL;
    for (size_t i = 0; i < len; i++)
        if (h[i] == ':')
            colon = h + i;
    if (colon == NULL || (size_t)(colon - h) >= host_cap)
        return false;
    memcpy(host, h, (size_t)(colon - h));
    host[colon - h] = 0;
    *port = (uint16_t)strtoul(colon + 1, NULL, 10);
    return true;
}

static bool id_is_zero(const uint8_t id[16])
{
    for (int i = 0; i < 16; i++) {
        if (id[i] != 0)
            return false;
    }
    return true;
}

static int configs_check(const struct lm_config_entry *c, size_t n)
{
    if (n > LM_META_CONFIGS_MAX)
        return LM_E_INVALID;
    for (size_t i = 0; i < n; i++) {
        if (c[i].name == NULL || c[i].value == NULL ||
            strlen(c[i].value) > LM_META_CONFIG_VALUE_MAX)
            return LM_E_INVALID;
        if (lm_topic_config_validate(c[i].name, c[i].value) != 0)
            return LM_E_INVALID;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(c[i].name, c[j].name) == 0)
                return LM_E_INVALID;
        }
    }
    return 0;
}

size_t lm_meta_scram_key_len(int8_t mechanism)
{
    return mechanism == 1 ? 32 : mechanism == 2 ? 64 : 0;
}

const struct lm_meta_scram *lm_meta_state_scram(const struct lm_meta_state *s, const char *user,
                                                int8_t mechanism)
{
    for (size_t i = 0; i < s->scram_count; i++)
        if (s->scram[i].mechanism == mechanism && strcmp(s->scram[i].user, user) == 0)
            return &s->scram[i];
    return NULL;
}

/* The binding r carries, as the image stores it. */
static void acl_from_record(const struct lm_meta_record *r, struct authz_acl *out)
{
    memset(out, 0, sizeof(*out));
    memcpy(out->id, r->acl_id, 16);
    out->resource_type = r->acl_resource_type;
    out->pattern_type = r->acl_pattern_type;
    out->operation = r->acl_operation;
    out->permission = r->acl_permission;
    snprintf(out->name, sizeof(out->name), "%s", r->acl_name);
    snprintf(out->principal, sizeof(out->principal), "%s", r->acl_principal);
    snprintf(out->host, sizeof(out->host), "%s", r->acl_host);
}

const struct authz_acl *lm_meta_state_acl(const struct lm_meta_state *s, const uint8_t id[16])
{
    for (size_t i = 0; i < s->acl_count; i++)
        if (memcmp(s->acls[i].id, id, 16) == 0)
            return &s->acls[i];
    return NULL;
}

/* The index where acl belongs in the sorted array (the first not below it). */
static size_t acl_slot(const struct lm_meta_state *s, const struct authz_acl *acl)
{
    size_t lo = 0, hi = s->acl_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (authz_acl_cmp(&s->acls[mid], acl) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

const struct authz_acl *lm_meta_state_acl_same(const struct lm_meta_state *s,
                                               const struct lm_meta_record *r)
{
    if (r->acl_name == NULL || r->acl_principal == NULL || r->acl_host == NULL)
        return NULL;
    struct authz_acl want;
    acl_from_record(r, &want);
    size_t i = acl_slot(s, &want);
    return i < s->acl_count && authz_acl_cmp(&s->acls[i], &want) == 0 ? &s->acls[i] : NULL;
}

static int acl_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    if (id_is_zero(r->acl_id))
        return LM_E_INVALID;
    if (r->type == LM_META_ACL_DELETE)
        return lm_meta_state_acl(s, r->acl_id) != NULL ? 0 : LM_E_NOT_FOUND;
    if (authz_binding_invalid(r->acl_resource_type, r->acl_pattern_type, r->acl_name,
                              r->acl_principal, r->acl_host, r->acl_operation,
                              r->acl_permission) != NULL)
        return LM_E_INVALID;
    if (lm_meta_state_acl(s, r->acl_id) != NULL || lm_meta_state_acl_same(s, r) != NULL)
        return LM_E_EXISTS;
    return s->acl_count >= LM_META_ACLS_MAX ? LM_E_FULL : 0;
}

static int scram_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    if (r->user == NULL || r->user[0] == '\0' || strlen(r->user) > LM_META_SCRAM_USER_MAX ||
        lm_meta_scram_key_len(r->scram_mechanism) == 0)
        return LM_E_INVALID;
    const struct lm_meta_scram *have = lm_meta_state_scram(s, r->user, r->scram_mechanism);
    if (r->type == LM_META_SCRAM_DELETE)
        return have != NULL ? 0 : LM_E_NOT_FOUND;
    if (r->scram_iterations < LM_META_SCRAM_ITERS_MIN ||
        r->scram_iterations > LM_META_SCRAM_ITERS_MAX || r->scram_salt == NULL ||
        r->scram_salt_len == 0 || r->scram_salt_len > LM_META_SCRAM_SALT_MAX ||
        r->scram_stored_key == NULL || r->scram_server_key == NULL)
        return LM_E_INVALID;
    return have == NULL && s->scram_count >= LM_META_SCRAM_USERS_MAX ? LM_E_FULL : 0;
}

/* PARTITION_REASSIGN: an assigned topic's partition, a valid replica list, adding and
 * removing disjoint subsets of it, at least one replica left once removing is gone. */
static int reassign_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    const struct lm_meta_topic *t = r->topic ? lm_meta_state_find(s, r->topic) : NULL;
    if (t == NULL || r->partition_count < 0 || r->partition_count >= t->partition_count)
        return LM_E_NOT_FOUND;
    if (t->replicas == NULL || !ids_valid(r->replicas, r->replication_factor) || r->n_adding < 0 ||
        r->n_removing < 0 || r->n_adding + r->n_removing > r->replication_factor ||
        r->n_removing >= r->replication_factor || (r->n_adding > 0 && r->adding == NULL) ||
        (r->n_removing > 0 && r->removing == NULL))
        return LM_E_INVALID;
    for (int16_t i = 0; i < r->n_adding; i++)
        if (!ids_have(r->replicas, r->replication_factor, r->adding[i]) ||
            ids_have(r->adding, i, r->adding[i]) ||
            ids_have(r->removing, r->n_removing, r->adding[i]))
            return LM_E_INVALID;
    for (int16_t i = 0; i < r->n_removing; i++)
        if (!ids_have(r->replicas, r->replication_factor, r->removing[i]) ||
            ids_have(r->removing, i, r->removing[i]))
            return LM_E_INVALID;
    if (r->reassign_move < 0)
        return LM_E_INVALID;
    if (r->reassign_keep) {
        /* a request keeps every replica listed now: they leave through the leader's
         * configuration changes and its completion, never at once */
        int16_t n_now;
        const int32_t *now = lm_meta_topic_replicas(t, r->partition_count, &n_now);
        if (r->reassign_done || now == NULL)
            return LM_E_INVALID;
        for (int16_t i = 0; i < n_now; i++)
            if (!ids_have(r->replicas, r->replication_factor, now[i]))
                return LM_E_STATE;
    }
    if (r->reassign_done) {
        /* the move the leader finished must be the one in progress: its target, in order */
        const struct lm_meta_moved *m = lm_meta_topic_moved(t, r->partition_count);
        if (r->n_adding > 0 || r->n_removing > 0)
            return LM_E_INVALID;
        if (m == NULL || (m->n_adding == 0 && m->n_removing == 0))
            return LM_E_STATE;
        /* ... and the very move it finished: a completion retried late (the controller's
         * retries, a new controller leader) after a cancel and a new move to the same target
         * would otherwise drop a replica the cancel put back, which the group may count as a
         * voter again. A number unknown on either side leaves the target match alone, the rule
         * before move numbers: a completion without one was written before them and applied
         * with that rule when it was committed, so refusing it at replay would give a restarted
         * node another image than the one the cluster acted on (a node the group counts, no
         * longer listed on some nodes: the very fault this guards against); a move without one
         * was restored from a snapshot written before them. A leader of this version sends the
         * number its image shows for the move, known unless that image came from such a
         * snapshot. */
        if (r->reassign_move != 0 && m->move != 0 && r->reassign_move != m->move)
            return LM_E_STATE;
        int16_t k = 0;
        for (int16_t i = 0; i < m->n; i++) {
            if (ids_have(m->removing, m->n_removing, m->replicas[i]))
                continue;
            if (k >= r->replication_factor || r->replicas[k] != m->replicas[i])
                return LM_E_STATE;
            k++;
        }
        if (k != r->replication_factor)
            return LM_E_STATE;
    }
    return 0;
}

/* Applies a checked PARTITION_REASSIGN to t. The leader's out-of-sync bits follow their
 * replicas to their new positions. */
static int reassign_apply(struct lm_meta_topic *t, const struct lm_meta_record *r)
{
    int32_t p = r->partition_count;
    int16_t old_n;
    const int32_t *old_r = lm_meta_topic_replicas(t, p, &old_n);
    int32_t old[LM_META_REPLICATION_MAX];
    LM_ASSERT(old_r != NULL && old_n <= LM_META_REPLICATION_MAX);
    memcpy(old, old_r, (size_t)old_n * sizeof(int32_t));
    const int32_t *row = &t->replicas[(size_t)p * (size_t)t->replication_factor];
    bool on_row = r->n_adding == 0 && r->n_removing == 0 &&
                  r->replication_factor == t->replication_factor &&
                  memcmp(row, r->replicas, (size_t)r->replication_factor * sizeof(int32_t)) == 0;
    bool found;
    size_t at = moved_at(t, p, &found);
    /* a completion keeps the number of the move it finished; a request (or a snapshot's
     * record) sets its own */
    int64_t move = r->reassign_done && found ? t->moved[at].move : r->reassign_move;
    LM_ASSERT(move >= 0 && (!r->reassign_done || found));
    if (on_row && found) {
        memmove(&t->moved[at], &t->moved[at + 1], (t->moved_count - at - 1) * sizeof(*t->moved));
        t->moved_count--;
    } else if (!on_row) {
        if (!found) {
            if (LM_GROW(t->moved, t->moved_cap, t->moved_count + 1, 4) != 0)
                return LM_E_NOMEM;
            memmove(&t->moved[at + 1], &t->moved[at], (t->moved_count - at) * sizeof(*t->moved));
            t->moved_count++;
        }
        struct lm_meta_moved *m = &t->moved[at];
        memset(m, 0, sizeof(*m));
        m->partition = p;
        m->n = r->replication_factor;
        m->n_adding = r->n_adding;
        m->n_removing = r->n_removing;
        m->move = move;
        memcpy(m->replicas, r->replicas, (size_t)m->n * sizeof(int32_t));
        if (m->n_adding > 0)
            memcpy(m->adding, r->adding, (size_t)m->n_adding * sizeof(int32_t));
        if (m->n_removing > 0)
            memcpy(m->removing, r->removing, (size_t)m->n_removing * sizeof(int32_t));
    }
    if (t->leaders != NULL) {
        uint16_t was = t->leaders[p].isr_out, now = 0;
        for (int16_t j = 0; j < old_n; j++) {
            if (!(was & (1u << j)))
                continue;
            for (int16_t k = 0; k < r->replication_factor; k++)
                if (r->replicas[k] == old[j])
                    now |= (uint16_t)(1u << k);
        }
        t->leaders[p].isr_out = now;
    }
    return 0;
}

bool lm_meta_quota_entity(const struct lm_meta_record *r, struct lm_quota_entity *e)
{
    memset(e, 0, sizeof(*e));
    e->user_part = r->quota_user_part;
    e->client_part = r->quota_client_part;
    if (r->quota_user_part == LM_QUOTA_PART_NAMED) {
        if (r->quota_user == NULL || strlen(r->quota_user) > LM_QUOTA_NAME_MAX)
            return false;
        strcpy(e->user, r->quota_user);
    }
    if (r->quota_client_part == LM_QUOTA_PART_NAMED) {
        if (r->quota_client == NULL || strlen(r->quota_client) > LM_QUOTA_NAME_MAX)
            return false;
        strcpy(e->client, r->quota_client);
    }
    return true;
}

const struct lm_quota_entry *lm_meta_state_quota(const struct lm_meta_state *s,
                                                 const struct lm_meta_record *r)
{
    struct lm_quota_entity e;
    if (!lm_meta_quota_entity(r, &e))
        return NULL;
    for (size_t i = 0; i < s->quota_count; i++)
        if (lm_quota_entity_eq(&s->quotas[i].entity, &e))
            return &s->quotas[i];
    return NULL;
}

static int quota_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    struct lm_quota_entity e;
    if (!lm_meta_quota_entity(r, &e) || !lm_quota_entity_valid(&e) || r->quota_key < 0 ||
        r->quota_key >= LM_QUOTA_KEY_COUNT)
        return LM_E_INVALID;
    if (r->quota_remove)
        return 0; /* removing a key the entity does not hold changes nothing */
    if (lm_quota_value_invalid(r->quota_key, r->quota_value) != NULL)
        return LM_E_INVALID;
    return lm_meta_state_quota(s, r) == NULL && s->quota_count >= LM_META_QUOTAS_MAX ? LM_E_FULL
                                                                                     : 0;
}

static int quota_apply(struct lm_meta_state *s, const struct lm_meta_record *r)
{
    struct lm_quota_entry *q = (struct lm_quota_entry *)lm_meta_state_quota(s, r);
    uint8_t bit = (uint8_t)(1u << r->quota_key);
    if (r->quota_remove) {
        if (q == NULL)
            return 0;
        q->set &= (uint8_t)~bit;
        q->value[r->quota_key] = 0;
        if (q->set == 0)
            *q = s->quotas[--s->quota_count];
        return 0;
    }
    if (q == NULL) {
        if (LM_GROW(s->quotas, s->quota_cap, s->quota_count + 1, 8) != 0)
            return LM_E_NOMEM;
        q = &s->quotas[s->quota_count++];
        memset(q, 0, sizeof(*q));
        bool ok = lm_meta_quota_entity(r, &q->entity);
        LM_ASSERT(ok); /* quota_check passed */
    }
    q->set |= bit;
    q->value[r->quota_key] = r->quota_value;
    return 0;
}

const struct lm_meta_broker_configs *lm_meta_state_broker_configs(const struct lm_meta_state *s,
                                                                  int32_t node)
{
    for (size_t i = 0; i < s->broker_config_count; i++)
        if (s->broker_configs[i].node == node)
            return &s->broker_configs[i];
    return NULL;
}

static int broker_configs_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    if (r->broker_id < LM_META_BROKER_DEFAULT || r->config_count > LM_META_CONFIGS_MAX)
        return LM_E_INVALID;
    for (size_t i = 0; i < r->config_count; i++) {
        const struct lm_config_entry *c = &r->configs[i];
        if (c->name == NULL || c->value == NULL || strlen(c->value) > LM_META_CONFIG_VALUE_MAX ||
            lm_broker_dynamic_config_validate(c->name, c->value) != 0)
            return LM_E_INVALID;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->name, r->configs[j].name) == 0)
                return LM_E_INVALID;
    }
    /* the entities: the default and at most one per node */
    if (r->config_count > 0 && lm_meta_state_broker_configs(s, r->broker_id) == NULL &&
        s->broker_config_count > LM_META_BROKERS_MAX)
        return LM_E_FULL;
    return 0;
}

static int broker_configs_apply(struct lm_meta_state *s, const struct lm_meta_record *r)
{
    struct lm_meta_broker_configs *b =
        (struct lm_meta_broker_configs *)lm_meta_state_broker_configs(s, r->broker_id);
    if (r->config_count == 0) {
        if (b != NULL) {
            lm_meta_configs_free(b->configs, b->count);
            *b = s->broker_configs[--s->broker_config_count];
        }
        return 0;
    }
    struct lm_config_entry *c = NULL;
    int rc = configs_dup(r->configs, r->config_count, &c);
    if (rc != 0)
        return rc;
    if (b == NULL) {
        if (LM_GROW(s->broker_configs, s->broker_config_cap, s->broker_config_count + 1, 4) != 0) {
            lm_meta_configs_free(c, r->config_count);
            return LM_E_NOMEM;
        }
        b = &s->broker_configs[s->broker_config_count++];
        b->node = r->broker_id;
    } else {
        lm_meta_configs_free(b->configs, b->count);
    }
    b->configs = c;
    b->count = r->config_count;
    return 0;
}

const struct lm_meta_group_configs *lm_meta_state_group_configs(const struct lm_meta_state *s,
                                                                const char *group)
{
    for (size_t i = 0; i < s->group_config_count; i++)
        if (strcmp(s->group_configs[i].group, group) == 0)
            return &s->group_configs[i];
    return NULL;
}

static int group_configs_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    if (r->group == NULL || r->group[0] == '\0' || strlen(r->group) > LM_META_GROUP_NAME_MAX ||
        r->config_count > LM_META_CONFIGS_MAX)
        return LM_E_INVALID;
    for (size_t i = 0; i < r->config_count; i++) {
        const struct lm_config_entry *c = &r->configs[i];
        if (c->name == NULL || c->value == NULL || strlen(c->value) > LM_META_CONFIG_VALUE_MAX ||
            lm_group_config_validate(c->name, c->value) != 0)
            return LM_E_INVALID;
        for (size_t j = 0; j < i; j++)
            if (strcmp(c->name, r->configs[j].name) == 0)
                return LM_E_INVALID;
    }
    if (r->config_count > 0 && lm_meta_state_group_configs(s, r->group) == NULL &&
        s->group_config_count >= LM_META_GROUP_CONFIGS_MAX)
        return LM_E_FULL;
    return 0;
}

static int group_configs_apply(struct lm_meta_state *s, const struct lm_meta_record *r)
{
    struct lm_meta_group_configs *g =
        (struct lm_meta_group_configs *)lm_meta_state_group_configs(s, r->group);
    if (r->config_count == 0) {
        if (g != NULL) {
            free(g->group);
            lm_meta_configs_free(g->configs, g->count);
            *g = s->group_configs[--s->group_config_count];
        }
        return 0;
    }
    struct lm_config_entry *c = NULL;
    int rc = configs_dup(r->configs, r->config_count, &c);
    if (rc != 0)
        return rc;
    if (g == NULL) {
        char *name = strdup(r->group);
        if (name == NULL ||
            LM_GROW(s->group_configs, s->group_config_cap, s->group_config_count + 1, 4) != 0) {
            free(name);
            lm_meta_configs_free(c, r->config_count);
            return LM_E_NOMEM;
        }
        g = &s->group_configs[s->group_config_count++];
        g->group = name;
    } else {
        lm_meta_configs_free(g->configs, g->count);
    }
    g->configs = c;
    g->count = r->config_count;
    return 0;
}

const uint8_t *lm_meta_state_retired_at(const struct lm_meta_state *s, uint32_t i)
{
    LM_ASSERT(i < s->retired_count);
    return s->retired[(s->retired_head + i) % s->retired_cap];
}

bool lm_meta_state_id_retired(const struct lm_meta_state *s, const uint8_t id[16])
{
    for (uint32_t i = 0; i < s->retired_count; i++)
        if (memcmp(lm_meta_state_retired_at(s, i), id, 16) == 0)
            return true;
    return false;
}

/* Adds id to the retired ring, dropping the oldest when it is full. */
static int retire_id(struct lm_meta_state *s, const uint8_t id[16])
{
    if (lm_meta_state_id_retired(s, id))
        return 0;
    if (s->retired_count == LM_META_RETIRED_IDS_MAX) {
        memcpy(s->retired[s->retired_head], id, 16);
        s->retired_head = (s->retired_head + 1) % s->retired_cap;
        return 0;
    }
    if (s->retired_count == s->retired_cap) {
        /* grow, laying the ring out oldest first again */
        uint32_t cap = s->retired_cap ? s->retired_cap * 2 : 16;
        if (cap > LM_META_RETIRED_IDS_MAX)
            cap = LM_META_RETIRED_IDS_MAX;
        uint8_t(*nr)[16] = malloc((size_t)cap * 16);
        if (nr == NULL)
            return LM_E_NOMEM;
        for (uint32_t i = 0; i < s->retired_count; i++)
            memcpy(nr[i], lm_meta_state_retired_at(s, i), 16);
        free(s->retired);
        s->retired = nr;
        s->retired_cap = cap;
        s->retired_head = 0;
    }
    memcpy(s->retired[(s->retired_head + s->retired_count) % s->retired_cap], id, 16);
    s->retired_count++;
    return 0;
}

/* The topic a TOPIC_DELETE names: by name, or by its id alone when the name is empty (a node
 * whose image did not know the id yet forwards it so: the controller's log decides). */
static const struct lm_meta_topic *delete_target(const struct lm_meta_state *s,
                                                 const struct lm_meta_record *r)
{
    if (r->topic != NULL && r->topic[0] != '\0')
        return lm_meta_state_find(s, r->topic);
    return id_is_zero(r->topic_id) ? NULL : lm_meta_state_find_id(s, r->topic_id);
}

int lm_meta_state_check(const struct lm_meta_state *s, const struct lm_meta_record *r)
{
    const struct lm_meta_topic *t = NULL;
    switch (r->type) {
    case LM_META_TOPIC_CREATE:
        if (lm_meta_topic_name_valid(r->topic) != 0 || id_is_zero(r->topic_id))
            return LM_E_INVALID;
        if (r->partition_count < 1 || r->partition_count > LM_META_PARTITIONS_MAX)
            return LM_E_INVALID;
        if (lm_meta_state_find(s, r->topic) || lm_meta_state_find_id(s, r->topic_id) ||
            lm_meta_state_id_retired(s, r->topic_id))
            return LM_E_EXISTS;
        if (replicas_check(r->replicas, r->replication_factor, r->partition_count) != 0)
            return LM_E_INVALID;
        return configs_check(r->configs, r->config_count);
    case LM_META_TOPIC_DELETE: {
        /* a deletion that names its incarnation (by id: Kafka's RemoveTopicRecord) deletes only
         * that one, never a topic of the same name created since */
        t = delete_target(s, r);
        if (t == NULL || (!id_is_zero(r->topic_id) && memcmp(r->topic_id, t->id, 16) != 0))
            return LM_E_NOT_FOUND;
        return 0;
    }
    case LM_META_PARTITIONS_SET:
        t = r->topic ? lm_meta_state_find(s, r->topic) : NULL;
        if (t == NULL)
            return LM_E_NOT_FOUND;
        if (r->partition_count <= t->partition_count || r->partition_count > LM_META_PARTITIONS_MAX)
            return LM_E_INVALID;
        /* an assigned topic grows with an assignment of the same factor, and only then */
        if ((t->replicas != NULL) != (r->replicas != NULL) ||
            (r->replicas != NULL && r->replication_factor != t->replication_factor))
            return LM_E_INVALID;
        if (r->replicas != NULL &&
            r->replicas_partitions != r->partition_count - t->partition_count)
            return LM_E_INVALID;
        return replicas_check(r->replicas, r->replication_factor,
                              r->partition_count - t->partition_count);
    case LM_META_TOPIC_CONFIGS:
        t = r->topic ? lm_meta_state_find(s, r->topic) : NULL;
        if (t == NULL)
            return LM_E_NOT_FOUND;
        return configs_check(r->configs, r->config_count);
    case LM_META_PRODUCER_IDS:
        return r->producer_id_next > s->producer_id_next ? 0 : LM_E_INVALID;
    case LM_META_PRODUCER_ID_BLOCK:
        if (r->broker_id < 0 || r->producer_id_from < 0 ||
            r->producer_id_next <= r->producer_id_from ||
            r->producer_id_next - r->producer_id_from > LM_META_PRODUCER_ID_BLOCK_MAX)
            return LM_E_INVALID;
        /* granted against another image than this one (another node's block came first) */
        return r->producer_id_from == s->producer_id_next ? 0 : LM_E_STATE;
    case LM_META_BROKER_REGISTER:
        if (r->broker_id < 0 || !text_fits(r->rack, LM_META_RACK_MAX) ||
            !text_fits(r->endpoints, LM_META_ENDPOINTS_MAX))
            return LM_E_INVALID;
        if (lm_meta_state_broker(s, r->broker_id) == NULL && s->broker_count >= LM_META_BROKERS_MAX)
            return LM_E_FULL;
        return 0;
    case LM_META_PARTITION_LEADER: {
        t = r->topic ? lm_meta_state_find(s, r->topic) : NULL;
        if (t == NULL)
            return LM_E_NOT_FOUND;
        if (r->partition_count < 0 || r->partition_count >= t->partition_count ||
            r->broker_id < 0 || r->leader_epoch < 0)
            return LM_E_INVALID;
        /* an announcement for another incarnation of the name (a leader of the deleted topic
         * announcing late) would give the new topic its epoch and leader */
        if (!id_is_zero(r->topic_id) && memcmp(r->topic_id, t->id, 16) != 0)
            return LM_E_STATE;
        /* an election older than the one known changes nothing; at the known epoch only its
         * leader changes the ISR */
        if (t->leaders != NULL) {
            const struct lm_meta_leader *l = &t->leaders[r->partition_count];
            if (l->epoch > r->leader_epoch ||
                (l->epoch == r->leader_epoch &&
                 (l->leader != r->broker_id || l->isr_out == r->isr_out)))
                return LM_E_STATE;
        }
        return 0;
    }
    case LM_META_BROKER_FENCE: {
        const struct lm_meta_broker *b = lm_meta_state_broker(s, r->broker_id);
        if (b == NULL)
            return LM_E_NOT_FOUND;
        /* a fence decided about an earlier process of the node no longer applies */
        return b->incarnation == r->incarnation ? 0 : LM_E_STATE;
    }
    case LM_META_SCRAM_SET:
    case LM_META_SCRAM_DELETE:
        return scram_check(s, r);
    case LM_META_ACL_CREATE:
    case LM_META_ACL_DELETE:
        return acl_check(s, r);
    case LM_META_PARTITION_REASSIGN:
        return reassign_check(s, r);
    case LM_META_QUOTA:
        return quota_check(s, r);
    case LM_META_BROKER_CONFIGS:
        return broker_configs_check(s, r);
    case LM_META_GROUP_CONFIGS:
        return group_configs_check(s, r);
    case LM_META_TOPIC_RETIRED:
        return id_is_zero(r->topic_id) ? LM_E_INVALID : 0;
    case LM_META_FEATURE_LEVEL:
        if (r->feature == NULL || strcmp(r->feature, LM_META_FEATURE_TRANSACTION_VERSION) != 0)
            return LM_E_INVALID;
        return r->feature_level >= 0 && r->feature_level <= LM_META_TRANSACTION_VERSION_MAX
                   ? 0
                   : LM_E_INVALID;
    }
    return LM_E_INVALID;
}

int lm_meta_state_apply(struct lm_meta_state *s, const struct lm_meta_record *r)
{
    int rc = lm_meta_state_check(s, r);
    if (rc != 0)
        return rc;
    struct lm_meta_topic *t = NULL;
    if (r->type == LM_META_TOPIC_DELETE)
        t = (struct lm_meta_topic *)delete_target(s, r);
    else if (r->type == LM_META_PARTITIONS_SET || r->type == LM_META_TOPIC_CONFIGS ||
             r->type == LM_META_PARTITION_LEADER || r->type == LM_META_PARTITION_REASSIGN)
        t = (struct lm_meta_topic *)lm_meta_state_find(s, r->topic);

    switch (r->type) {
    case LM_META_TOPIC_CREATE: {
        if (LM_GROW(s->topics, s->topic_cap, s->topic_count + 1, 16) != 0)
            return LM_E_NOMEM;
        struct lm_meta_topic *nt = &s->topics[s->topic_count];
        memset(nt, 0, sizeof(*nt));
        rc = configs_dup(r->configs, r->config_count, &nt->configs);
        if (rc != 0)
            return rc;
        nt->config_count = r->config_count;
        if (r->replicas != NULL) {
            size_t n = (size_t)r->partition_count * (size_t)r->replication_factor;
            nt->replicas = malloc(n * sizeof(int32_t));
            if (nt->replicas == NULL) {
                lm_meta_configs_free(nt->configs, nt->config_count);
                return LM_E_NOMEM;
            }
            memcpy(nt->replicas, r->replicas, n * sizeof(int32_t));
            nt->replication_factor = r->replication_factor;
        }
        strcpy(nt->name, r->topic); /* length checked by lm_meta_topic_name_valid */
        memcpy(nt->id, r->topic_id, 16);
        nt->partition_count = r->partition_count;
        s->topic_count++;
        break;
    }
    case LM_META_TOPIC_DELETE: {
        LM_ASSERT(t != NULL);
        rc = retire_id(s, t->id);
        if (rc != 0)
            return rc;
        size_t idx = (size_t)(t - s->topics);
        lm_meta_configs_free(t->configs, t->config_count);
        free(t->replicas);
        free(t->leaders);
        free(t->moved);
        s->topics[idx] = s->topics[s->topic_count - 1];
        s->topic_count--;
        break;
    }
    case LM_META_PARTITIONS_SET:
        LM_ASSERT(t != NULL && r->partition_count > t->partition_count);
        if (r->replicas != NULL) {
            size_t rf = (size_t)t->replication_factor;
            size_t old = (size_t)t->partition_count * rf;
            size_t add = (size_t)(r->partition_count - t->partition_count) * rf;
            int32_t *nr = realloc(t->replicas, (old + add) * sizeof(int32_t));
            if (nr == NULL)
                return LM_E_NOMEM;
            memcpy(nr + old, r->replicas, add * sizeof(int32_t));
            t->replicas = nr;
        }
        if (t->leaders != NULL) {
            struct lm_meta_leader *nl =
                realloc(t->leaders, (size_t)r->partition_count * sizeof(*nl));
            if (nl == NULL)
                return LM_E_NOMEM; /* the count is unchanged: the array still fits it */
            t->leaders = nl;
            for (int32_t i = t->partition_count; i < r->partition_count; i++)
                t->leaders[i] = (struct lm_meta_leader){.leader = -1, .epoch = -1};
        }
        t->partition_count = r->partition_count;
        break;
    case LM_META_TOPIC_CONFIGS: {
        LM_ASSERT(t != NULL);
        struct lm_config_entry *c = NULL;
        rc = configs_dup(r->configs, r->config_count, &c);
        if (rc != 0)
            return rc;
        lm_meta_configs_free(t->configs, t->config_count);
        t->configs = c;
        t->config_count = r->config_count;
        break;
    }
    case LM_META_PRODUCER_IDS:
    case LM_META_PRODUCER_ID_BLOCK:
        s->producer_id_next = r->producer_id_next;
        break;
    case LM_META_BROKER_REGISTER: {
        struct lm_meta_broker *b = (struct lm_meta_broker *)lm_meta_state_broker(s, r->broker_id);
        if (b == NULL) {
            if (LM_GROW(s->brokers, s->broker_cap, s->broker_count + 1, 8) != 0)
                return LM_E_NOMEM;
            size_t at = s->broker_count;
            while (at > 0 && s->brokers[at - 1].id > r->broker_id) {
                s->brokers[at] = s->brokers[at - 1];
                at--;
            }
            b = &s->brokers[at];
            s->broker_count++;
        }
        memset(b, 0, sizeof(*b));
        b->id = r->broker_id;
        b->incarnation = r->incarnation;
        b->fenced = false;
        snprintf(b->rack, sizeof(b->rack), "%s", r->rack);
        snprintf(b->endpoints, sizeof(b->endpoints), "%s", r->endpoints);
        break;
    }
    case LM_META_BROKER_FENCE:
        ((struct lm_meta_broker *)lm_meta_state_broker(s, r->broker_id))->fenced = r->fenced;
        break;
    case LM_META_PARTITION_LEADER:
        if (t->leaders == NULL) {
            size_t n = (size_t)t->partition_count;
            t->leaders = malloc(n * sizeof(*t->leaders));
            if (t->leaders == NULL)
                return LM_E_NOMEM;
            for (size_t i = 0; i < n; i++)
                t->leaders[i] = (struct lm_meta_leader){.leader = -1, .epoch = -1};
        }
        t->leaders[r->partition_count] = (struct lm_meta_leader){
            .leader = r->broker_id, .epoch = r->leader_epoch, .isr_out = r->isr_out};
        break;
    case LM_META_SCRAM_SET: {
        struct lm_meta_scram *c =
            (struct lm_meta_scram *)lm_meta_state_scram(s, r->user, r->scram_mechanism);
        if (c == NULL) {
            if (LM_GROW(s->scram, s->scram_cap, s->scram_count + 1, 8) != 0)
                return LM_E_NOMEM;
            c = &s->scram[s->scram_count++];
        }
        size_t kl = lm_meta_scram_key_len(r->scram_mechanism);
        memset(c, 0, sizeof(*c));
        snprintf(c->user, sizeof(c->user), "%s", r->user);
        c->mechanism = r->scram_mechanism;
        c->iterations = r->scram_iterations;
        c->salt_len = r->scram_salt_len;
        memcpy(c->salt, r->scram_salt, r->scram_salt_len);
        memcpy(c->stored_key, r->scram_stored_key, kl);
        memcpy(c->server_key, r->scram_server_key, kl);
        break;
    }
    case LM_META_SCRAM_DELETE: {
        const struct lm_meta_scram *c = lm_meta_state_scram(s, r->user, r->scram_mechanism);
        size_t i = (size_t)(c - s->scram);
        s->scram[i] = s->scram[--s->scram_count];
        break;
    }
    case LM_META_ACL_CREATE: {
        struct authz_acl acl;
        acl_from_record(r, &acl);
        if (LM_GROW(s->acls, s->acl_cap, s->acl_count + 1, 16) != 0)
            return LM_E_NOMEM;
        size_t i = acl_slot(s, &acl);
        memmove(&s->acls[i + 1], &s->acls[i], (s->acl_count - i) * sizeof(*s->acls));
        s->acls[i] = acl;
        s->acl_count++;
        break;
    }
    case LM_META_ACL_DELETE: {
        size_t i = (size_t)(lm_meta_state_acl(s, r->acl_id) - s->acls);
        LM_ASSERT(i < s->acl_count);
        memmove(&s->acls[i], &s->acls[i + 1], (s->acl_count - i - 1) * sizeof(*s->acls));
        s->acl_count--;
        break;
    }
    case LM_META_PARTITION_REASSIGN:
        rc = reassign_apply(t, r);
        if (rc != 0)
            return rc;
        break;
    case LM_META_QUOTA:
        rc = quota_apply(s, r);
        if (rc != 0)
            return rc;
        break;
    case LM_META_BROKER_CONFIGS:
        rc = broker_configs_apply(s, r);
        if (rc != 0)
            return rc;
        break;
    case LM_META_GROUP_CONFIGS:
        rc = group_configs_apply(s, r);
        if (rc != 0)
            return rc;
        break;
    case LM_META_TOPIC_RETIRED:
        rc = retire_id(s, r->topic_id);
        if (rc != 0)
            return rc;
        break;
    case LM_META_FEATURE_LEVEL:
        s->transaction_version = r->feature_level;
        break;
    }
    s->version++;
    return 0;
}

/* ---- encoding: u8 version, u8 type, then the fields of the type, big-endian ---- */

static size_t str_size(const char *s)
{
    return 2 + strlen(s) + 1; /* u16 length, bytes, NUL (so decoded strings point into buf) */
}

static size_t configs_size(const struct lm_meta_record *r)
{
    size_t n = 2;
    for (size_t i = 0; i < r->config_count; i++)
        n += str_size(r->configs[i].name) + str_size(r->configs[i].value);
    return n;
}

/* The assignment trailer of TOPIC_CREATE / PARTITIONS_SET: absent on a single node (records
 * written before clusters decode unchanged), else u16 rf, u32 partitions, then the ids. */
static size_t replicas_size(const struct lm_meta_record *r, int32_t partitions)
{
    if (r->replicas == NULL)
        return 0;
    return 2 + 4 + (size_t)partitions * (size_t)r->replication_factor * 4;
}

/* The name a quota entity part is encoded with ("" unless named). */
static const char *quota_name(uint8_t part, const char *name)
{
    return part == LM_QUOTA_PART_NAMED && name != NULL ? name : "";
}

/* PARTITION_REASSIGN's encoding trailer: none (a request written before trailer 2, or a
 * snapshot's record of a move without a number), 1 (a completion without its move's number),
 * 2 (a request, reassign_keep; its number is its log offset, never encoded), 3 (a completion
 * and its move's number), 4 (a snapshot's record and its move's number). 3 and 4 are followed
 * by the number (be64, > 0). */
static uint8_t reassign_trailer(const struct lm_meta_record *r)
{
    if (r->reassign_done)
        return r->reassign_move > 0 ? 3 : 1;
    if (r->reassign_keep)
        return 2;
    return r->reassign_move > 0 ? 4 : 0;
}

static size_t reassign_trailer_size(const struct lm_meta_record *r)
{
    uint8_t v = reassign_trailer(r);
    return v == 0 ? 0 : v >= 3 ? 1 + 8 : 1;
}

void lm_meta_record_stamp(struct lm_meta_record *r, int64_t offset)
{
    LM_ASSERT(offset >= 0);
    if (r->type == LM_META_PARTITION_REASSIGN && !r->reassign_done)
        r->reassign_move = offset + 1;
}

size_t lm_meta_record_size(const struct lm_meta_record *r)
{
    size_t n = 2;
    switch (r->type) {
    case LM_META_TOPIC_CREATE:
        n += str_size(r->topic) + 16 + 4 + configs_size(r) + replicas_size(r, r->partition_count);
        break;
    case LM_META_TOPIC_CONFIGS:
        n += str_size(r->topic) + configs_size(r);
        break;
    case LM_META_BROKER_CONFIGS:
        n += 4 + configs_size(r);
        break;
    case LM_META_GROUP_CONFIGS:
        n += str_size(r->group) + configs_size(r);
        break;
    case LM_META_TOPIC_RETIRED:
        n += 16;
        break;
    case LM_META_FEATURE_LEVEL:
        n += str_size(r->feature) + 2;
        break;
    case LM_META_TOPIC_DELETE:
        n += str_size(r->topic) + (!id_is_zero(r->topic_id) ? 16 : 0);
        break;
    case LM_META_PARTITIONS_SET:
        n += str_size(r->topic) + 4 + replicas_size(r, r->replicas_partitions);
        break;
    case LM_META_PRODUCER_IDS:
        n += 8;
        break;
    case LM_META_PRODUCER_ID_BLOCK:
        n += 4 + 8 + 8;
        break;
    case LM_META_BROKER_REGISTER:
        n += 4 + 8 + str_size(r->rack) + str_size(r->endpoints);
        break;
    case LM_META_BROKER_FENCE:
        n += 4 + 8 + 1;
        break;
    case LM_META_PARTITION_LEADER:
        n += str_size(r->topic) + 4 + 4 + 4 + 2 + (!id_is_zero(r->topic_id) ? 16 : 0);
        break;
    case LM_META_SCRAM_SET:
        n += str_size(r->user) + 1 + 4 + 1 + r->scram_salt_len +
             2 * lm_meta_scram_key_len(r->scram_mechanism);
        break;
    case LM_META_SCRAM_DELETE:
        n += str_size(r->user) + 1;
        break;
    case LM_META_ACL_CREATE:
        n += 16 + 4 + str_size(r->acl_name) + str_size(r->acl_principal) + str_size(r->acl_host);
        break;
    case LM_META_ACL_DELETE:
        n += 16;
        break;
    case LM_META_PARTITION_REASSIGN:
        n += str_size(r->topic) + 4 + 3 * 2 +
             4 * (size_t)(r->replication_factor + r->n_adding + r->n_removing) +
             reassign_trailer_size(r);
        break;
    case LM_META_QUOTA:
        n += 1 + str_size(quota_name(r->quota_user_part, r->quota_user)) + 1 +
             str_size(quota_name(r->quota_client_part, r->quota_client)) + 1 + 8 + 1;
        break;
    }
    return n;
}

struct cursor {
    uint8_t *buf;
    const uint8_t *in;
    size_t pos, len;
};

static void put_u8(struct cursor *c, uint8_t v)
{
    c->buf[c->pos++] = v;
}
static void put_be(struct cursor *c, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--)
        c->buf[c->pos++] = (uint8_t)(v >> (8 * i));
}
static void put_str(struct cursor *c, const char *s)
{
    size_t n = strlen(s);
    put_be(c, n, 2);
    memcpy(c->buf + c->pos, s, n + 1);
    c->pos += n + 1;
}

static int get_be(struct cursor *c, int bytes, uint64_t *out);

static void put_configs(struct cursor *c, const struct lm_meta_record *r)
{
    put_be(c, r->config_count, 2);
    for (size_t i = 0; i < r->config_count; i++) {
        put_str(c, r->configs[i].name);
        put_str(c, r->configs[i].value);
    }
}

static void put_replicas(struct cursor *c, const struct lm_meta_record *r, int32_t partitions)
{
    if (r->replicas == NULL)
        return;
    put_be(c, (uint16_t)r->replication_factor, 2);
    put_be(c, (uint32_t)partitions, 4);
    size_t n = (size_t)partitions * (size_t)r->replication_factor;
    for (size_t i = 0; i < n; i++)
        put_be(c, (uint32_t)r->replicas[i], 4);
}

/* Reads the assignment trailer when bytes are left; *rows_out = its partition count. */
static int get_replicas(struct cursor *c, struct lm_meta_record *out, int32_t *rows_out)
{
    uint64_t v;
    int rc;
    *rows_out = 0;
    if (c->pos == c->len)
        return 0;
    if ((rc = get_be(c, 2, &v)) != 0)
        return rc;
    if (v < 1 || v > LM_META_REPLICATION_MAX)
        return LM_E_CORRUPT;
    int16_t rf = (int16_t)v;
    if ((rc = get_be(c, 4, &v)) != 0)
        return rc;
    if (v < 1 || v > LM_META_PARTITIONS_MAX)
        return LM_E_CORRUPT;
    size_t n = (size_t)v * (size_t)rf;
    if (n * 4 > c->len - c->pos)
        return LM_E_TRUNCATED;
    int32_t *ids = malloc(n * sizeof(int32_t));
    if (ids == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        uint64_t id = 0;
        (void)get_be(c, 4, &id);
        ids[i] = (int32_t)(uint32_t)id;
    }
    *rows_out = (int32_t)v;
    out->replicas = ids;
    out->replication_factor = rf;
    return 0;
}

void lm_meta_record_free(struct lm_meta_record *r)
{
    lm_meta_configs_free((struct lm_config_entry *)r->configs, r->config_count);
    free((void *)r->replicas);
    r->configs = NULL;
    r->config_count = 0;
    r->replicas = NULL;
    r->adding = r->removing = NULL;
    r->n_adding = r->n_removing = 0;
}

int lm_meta_record_encode(const struct lm_meta_record *r, uint8_t *buf, size_t cap)
{
    if ((r->type == LM_META_BROKER_REGISTER && (r->rack == NULL || r->endpoints == NULL)) ||
        (r->type == LM_META_PARTITION_LEADER && r->topic == NULL) ||
        (r->type == LM_META_GROUP_CONFIGS && r->group == NULL) ||
        (r->type == LM_META_FEATURE_LEVEL && r->feature == NULL) ||
        ((r->type == LM_META_SCRAM_SET || r->type == LM_META_SCRAM_DELETE) &&
         (r->user == NULL || lm_meta_scram_key_len(r->scram_mechanism) == 0)) ||
        (r->type == LM_META_SCRAM_SET &&
         (r->scram_salt_len > LM_META_SCRAM_SALT_MAX || r->scram_salt == NULL ||
          r->scram_stored_key == NULL || r->scram_server_key == NULL)) ||
        (r->type == LM_META_ACL_CREATE &&
         (r->acl_name == NULL || r->acl_principal == NULL || r->acl_host == NULL)) ||
        (r->replicas != NULL && r->replication_factor < 1) ||
        (r->type == LM_META_PARTITION_REASSIGN &&
         (r->topic == NULL || r->replicas == NULL ||
          r->replication_factor > LM_META_REPLICATION_MAX || r->n_adding < 0 ||
          r->n_adding > LM_META_REPLICATION_MAX || r->n_removing < 0 ||
          r->n_removing > LM_META_REPLICATION_MAX || (r->n_adding > 0 && r->adding == NULL) ||
          (r->n_removing > 0 && r->removing == NULL))) ||
        (r->type == LM_META_QUOTA && (r->quota_user_part > LM_QUOTA_PART_DEFAULT ||
                                      r->quota_client_part > LM_QUOTA_PART_DEFAULT)))
        return LM_E_INVALID;
    if (r->type == LM_META_QUOTA &&
        (strlen(quota_name(r->quota_user_part, r->quota_user)) > UINT16_MAX ||
         strlen(quota_name(r->quota_client_part, r->quota_client)) > UINT16_MAX))
        return LM_E_TOO_LARGE;
    if (r->type == LM_META_ACL_CREATE &&
        (strlen(r->acl_name) > UINT16_MAX || strlen(r->acl_principal) > UINT16_MAX ||
         strlen(r->acl_host) > UINT16_MAX))
        return LM_E_TOO_LARGE;
    size_t need = lm_meta_record_size(r);
    if (need > cap || need > INT32_MAX)
        return LM_E_TOO_LARGE;
    if ((r->topic && strlen(r->topic) > UINT16_MAX) || (r->user && strlen(r->user) > UINT16_MAX))
        return LM_E_TOO_LARGE;
    if ((r->rack && strlen(r->rack) > UINT16_MAX) ||
        (r->endpoints && strlen(r->endpoints) > UINT16_MAX))
        return LM_E_TOO_LARGE;
    for (size_t i = 0; i < r->config_count; i++) {
        if (strlen(r->configs[i].name) > UINT16_MAX || strlen(r->configs[i].value) > UINT16_MAX)
            return LM_E_TOO_LARGE;
    }
    if (r->config_count > UINT16_MAX)
        return LM_E_TOO_LARGE;
    struct cursor c = {.buf = buf, .pos = 0, .len = cap};
    put_u8(&c, META_RECORD_VERSION);
    put_u8(&c, (uint8_t)r->type);
    switch (r->type) {
    case LM_META_TOPIC_CREATE:
    case LM_META_TOPIC_CONFIGS:
        put_str(&c, r->topic);
        if (r->type == LM_META_TOPIC_CREATE) {
            memcpy(buf + c.pos, r->topic_id, 16);
            c.pos += 16;
            put_be(&c, (uint32_t)r->partition_count, 4);
        }
        put_configs(&c, r);
        if (r->type == LM_META_TOPIC_CREATE)
            put_replicas(&c, r, r->partition_count);
        break;
    case LM_META_BROKER_CONFIGS:
        put_be(&c, (uint32_t)r->broker_id, 4);
        put_configs(&c, r);
        break;
    case LM_META_GROUP_CONFIGS:
        put_str(&c, r->group);
        put_configs(&c, r);
        break;
    case LM_META_TOPIC_RETIRED:
        memcpy(buf + c.pos, r->topic_id, 16);
        c.pos += 16;
        break;
    case LM_META_FEATURE_LEVEL:
        put_str(&c, r->feature);
        put_be(&c, (uint16_t)r->feature_level, 2);
        break;
    case LM_META_TOPIC_DELETE:
        put_str(&c, r->topic);
        if (!id_is_zero(r->topic_id)) { /* a trailer: records without it delete by name */
            memcpy(buf + c.pos, r->topic_id, 16);
            c.pos += 16;
        }
        break;
    case LM_META_PARTITIONS_SET:
        put_str(&c, r->topic);
        put_be(&c, (uint32_t)r->partition_count, 4);
        put_replicas(&c, r, r->replicas_partitions);
        break;
    case LM_META_PRODUCER_IDS:
        put_be(&c, (uint64_t)r->producer_id_next, 8);
        break;
    case LM_META_PRODUCER_ID_BLOCK:
        put_be(&c, (uint32_t)r->broker_id, 4);
        put_be(&c, (uint64_t)r->producer_id_from, 8);
        put_be(&c, (uint64_t)r->producer_id_next, 8);
        break;
    case LM_META_BROKER_REGISTER:
        put_be(&c, (uint32_t)r->broker_id, 4);
        put_be(&c, r->incarnation, 8);
        put_str(&c, r->rack);
        put_str(&c, r->endpoints);
        break;
    case LM_META_BROKER_FENCE:
        put_be(&c, (uint32_t)r->broker_id, 4);
        put_be(&c, r->incarnation, 8);
        put_u8(&c, r->fenced ? 1 : 0);
        break;
    case LM_META_PARTITION_LEADER:
        put_str(&c, r->topic);
        put_be(&c, (uint32_t)r->partition_count, 4);
        put_be(&c, (uint32_t)r->broker_id, 4);
        put_be(&c, (uint32_t)r->leader_epoch, 4);
        put_be(&c, r->isr_out, 2);
        if (!id_is_zero(r->topic_id)) { /* the incarnation trailer */
            memcpy(buf + c.pos, r->topic_id, 16);
            c.pos += 16;
        }
        break;
    case LM_META_SCRAM_SET:
    case LM_META_SCRAM_DELETE:
        put_str(&c, r->user);
        put_u8(&c, (uint8_t)r->scram_mechanism);
        if (r->type == LM_META_SCRAM_SET) {
            size_t kl = lm_meta_scram_key_len(r->scram_mechanism);
            put_be(&c, (uint32_t)r->scram_iterations, 4);
            put_u8(&c, (uint8_t)r->scram_salt_len);
            memcpy(buf + c.pos, r->scram_salt, r->scram_salt_len);
            c.pos += r->scram_salt_len;
            memcpy(buf + c.pos, r->scram_stored_key, kl);
            c.pos += kl;
            memcpy(buf + c.pos, r->scram_server_key, kl);
            c.pos += kl;
        }
        break;
    case LM_META_ACL_CREATE:
    case LM_META_ACL_DELETE:
        memcpy(buf + c.pos, r->acl_id, 16);
        c.pos += 16;
        if (r->type == LM_META_ACL_DELETE)
            break;
        put_u8(&c, (uint8_t)r->acl_resource_type);
        put_u8(&c, (uint8_t)r->acl_pattern_type);
        put_u8(&c, (uint8_t)r->acl_operation);
        put_u8(&c, (uint8_t)r->acl_permission);
        put_str(&c, r->acl_name);
        put_str(&c, r->acl_principal);
        put_str(&c, r->acl_host);
        break;
    case LM_META_PARTITION_REASSIGN: {
        put_str(&c, r->topic);
        put_be(&c, (uint32_t)r->partition_count, 4);
        const int32_t *lists[3] = {r->replicas, r->adding, r->removing};
        int16_t counts[3] = {r->replication_factor, r->n_adding, r->n_removing};
        for (int l = 0; l < 3; l++) {
            put_be(&c, (uint16_t)counts[l], 2);
            for (int16_t i = 0; i < counts[l]; i++)
                put_be(&c, (uint32_t)lists[l][i], 4);
        }
        uint8_t trailer = reassign_trailer(r);
        if (trailer != 0)
            put_u8(&c, trailer);
        if (trailer >= 3)
            put_be(&c, (uint64_t)r->reassign_move, 8);
        break;
    }
    case LM_META_QUOTA: {
        put_u8(&c, r->quota_user_part);
        put_str(&c, quota_name(r->quota_user_part, r->quota_user));
        put_u8(&c, r->quota_client_part);
        put_str(&c, quota_name(r->quota_client_part, r->quota_client));
        put_u8(&c, (uint8_t)r->quota_key);
        uint64_t bits;
        memcpy(&bits, &r->quota_value, 8);
        put_be(&c, bits, 8);
        put_u8(&c, r->quota_remove ? 1 : 0);
        break;
    }
    }
    LM_ASSERT(c.pos == need);
    return (int)need;
}

static int get_be(struct cursor *c, int bytes, uint64_t *out)
{
    if (c->len - c->pos < (size_t)bytes)
        return LM_E_TRUNCATED;
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = (v << 8) | c->in[c->pos++];
    *out = v;
    return 0;
}

static int get_str(struct cursor *c, const char **out)
{
    uint64_t n;
    int rc = get_be(c, 2, &n);
    if (rc != 0)
        return rc;
    if (c->len - c->pos < n + 1)
        return LM_E_TRUNCATED;
    if (c->in[c->pos + n] != 0 || memchr(c->in + c->pos, 0, n) != NULL)
        return LM_E_CORRUPT;
    *out = (const char *)c->in + c->pos;
    c->pos += n + 1;
    return 0;
}

/* A config list (u16 count, then name and value strings), malloc'd into out->configs and
 * *configs_out. */
static int get_configs(struct cursor *c, struct lm_meta_record *out,
                       struct lm_config_entry **configs_out)
{
    uint64_t v;
    int rc = get_be(c, 2, &v);
    if (rc != 0)
        return rc;
    /* each entry takes at least 6 bytes: bound the allocation by the bytes left */
    if (v * 6 > c->len - c->pos)
        return LM_E_TOO_LARGE;
    size_t n = (size_t)v;
    struct lm_config_entry *cfg = n ? calloc(n, sizeof(*cfg)) : NULL;
    if (n && cfg == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < n; i++) {
        const char *name, *value;
        if ((rc = get_str(c, &name)) != 0 || (rc = get_str(c, &value)) != 0) {
            lm_meta_configs_free(cfg, n);
            return rc;
        }
        cfg[i].name = strdup(name);
        cfg[i].value = strdup(value);
        if (!cfg[i].name || !cfg[i].value) {
            lm_meta_configs_free(cfg, n);
            return LM_E_NOMEM;
        }
    }
    out->configs = cfg;
    out->config_count = n;
    *configs_out = cfg;
    return 0;
}

int lm_meta_record_decode(const uint8_t *buf, size_t len, struct lm_meta_record *out,
                          struct lm_config_entry **configs_out)
{
    struct cursor c = {.in = buf, .pos = 0, .len = len};
    uint64_t v;
    int rc;
    memset(out, 0, sizeof(*out));
    *configs_out = NULL;
    if ((rc = get_be(&c, 1, &v)) != 0)
        return rc;
    if (v != META_RECORD_VERSION)
        return LM_E_UNSUPPORTED;
    if ((rc = get_be(&c, 1, &v)) != 0)
        return rc;
    out->type = (enum lm_meta_record_type)v;
    switch (out->type) {
    case LM_META_TOPIC_CREATE:
    case LM_META_TOPIC_CONFIGS: {
        if ((rc = get_str(&c, &out->topic)) != 0)
            return rc;
        if (out->type == LM_META_TOPIC_CREATE) {
            if (len - c.pos < 16)
                return LM_E_TRUNCATED;
            memcpy(out->topic_id, buf + c.pos, 16);
            c.pos += 16;
            if ((rc = get_be(&c, 4, &v)) != 0)
                return rc;
            out->partition_count = (int32_t)(uint32_t)v;
        }
        if ((rc = get_configs(&c, out, configs_out)) != 0)
            return rc;
        if (out->type == LM_META_TOPIC_CREATE) {
            int32_t rows;
            if ((rc = get_replicas(&c, out, &rows)) != 0 ||
                (out->replicas != NULL && rows != out->partition_count)) {
                lm_meta_record_free(out);
                *configs_out = NULL;
                return rc != 0 ? rc : LM_E_CORRUPT;
            }
        }
        break;
    }
    case LM_META_BROKER_CONFIGS:
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->broker_id = (int32_t)(uint32_t)v;
        if ((rc = get_configs(&c, out, configs_out)) != 0)
            return rc;
        break;
    case LM_META_GROUP_CONFIGS:
        if ((rc = get_str(&c, &out->group)) != 0 || (rc = get_configs(&c, out, configs_out)) != 0)
            return rc;
        break;
    case LM_META_TOPIC_RETIRED:
        if (c.len - c.pos < 16)
            return LM_E_TRUNCATED;
        memcpy(out->topic_id, buf + c.pos, 16);
        c.pos += 16;
        break;
    case LM_META_FEATURE_LEVEL:
        if ((rc = get_str(&c, &out->feature)) != 0 || (rc = get_be(&c, 2, &v)) != 0)
            return rc;
        out->feature_level = (int16_t)(uint16_t)v;
        break;
    case LM_META_TOPIC_DELETE:
        if ((rc = get_str(&c, &out->topic)) != 0)
            return rc;
        if (c.pos < c.len) { /* the incarnation trailer */
            if (c.len - c.pos < 16)
                return LM_E_TRUNCATED;
            memcpy(out->topic_id, buf + c.pos, 16);
            c.pos += 16;
        }
        break;
    case LM_META_PARTITIONS_SET:
        if ((rc = get_str(&c, &out->topic)) != 0)
            return rc;
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->partition_count = (int32_t)(uint32_t)v;
        if ((rc = get_replicas(&c, out, &out->replicas_partitions)) != 0)
            return rc;
        break;
    case LM_META_PRODUCER_IDS:
        if ((rc = get_be(&c, 8, &v)) != 0)
            return rc;
        out->producer_id_next = (int64_t)v;
        break;
    case LM_META_PRODUCER_ID_BLOCK:
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->broker_id = (int32_t)(uint32_t)v;
        if ((rc = get_be(&c, 8, &v)) != 0)
            return rc;
        out->producer_id_from = (int64_t)v;
        if ((rc = get_be(&c, 8, &v)) != 0)
            return rc;
        out->producer_id_next = (int64_t)v;
        break;
    case LM_META_PARTITION_LEADER:
        if ((rc = get_str(&c, &out->topic)) != 0 || (rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->partition_count = (int32_t)(uint32_t)v;
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->broker_id = (int32_t)(uint32_t)v;
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->leader_epoch = (int32_t)(uint32_t)v;
        out->isr_out = 0;
        if (c.pos < c.len) { /* the ISR trailer */
            if ((rc = get_be(&c, 2, &v)) != 0)
                return rc;
            out->isr_out = (uint16_t)v;
        }
        if (c.pos < c.len) { /* the incarnation trailer */
            if (c.len - c.pos < 16)
                return LM_E_TRUNCATED;
            memcpy(out->topic_id, buf + c.pos, 16);
            c.pos += 16;
        }
        break;
    case LM_META_BROKER_REGISTER:
    case LM_META_BROKER_FENCE:
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->broker_id = (int32_t)(uint32_t)v;
        if ((rc = get_be(&c, 8, &v)) != 0)
            return rc;
        out->incarnation = v;
        if (out->type == LM_META_BROKER_REGISTER) {
            if ((rc = get_str(&c, &out->rack)) != 0 || (rc = get_str(&c, &out->endpoints)) != 0)
                return rc;
        } else {
            if ((rc = get_be(&c, 1, &v)) != 0)
                return rc;
            if (v > 1)
                return LM_E_CORRUPT;
            out->fenced = v == 1;
        }
        break;
    case LM_META_SCRAM_SET:
    case LM_META_SCRAM_DELETE: {
        if ((rc = get_str(&c, &out->user)) != 0 || (rc = get_be(&c, 1, &v)) != 0)
            return rc;
        out->scram_mechanism = (int8_t)v;
        size_t kl = lm_meta_scram_key_len(out->scram_mechanism);
        if (kl == 0)
            return LM_E_CORRUPT;
        if (out->type == LM_META_SCRAM_DELETE)
            break;
        if ((rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->scram_iterations = (int32_t)(uint32_t)v;
        if ((rc = get_be(&c, 1, &v)) != 0)
            return rc;
        if (v == 0 || v > LM_META_SCRAM_SALT_MAX)
            return LM_E_CORRUPT;
        out->scram_salt_len = (uint32_t)v;
        if (len - c.pos < v + 2 * kl)
            return LM_E_TRUNCATED;
        out->scram_salt = buf + c.pos;
        c.pos += v;
        out->scram_stored_key = buf + c.pos;
        c.pos += kl;
        out->scram_server_key = buf + c.pos;
        c.pos += kl;
        break;
    }
    case LM_META_ACL_CREATE:
    case LM_META_ACL_DELETE:
        if (len - c.pos < 16)
            return LM_E_TRUNCATED;
        memcpy(out->acl_id, buf + c.pos, 16);
        c.pos += 16;
        if (out->type == LM_META_ACL_DELETE)
            break;
        if (len - c.pos < 4)
            return LM_E_TRUNCATED;
        out->acl_resource_type = (int8_t)buf[c.pos++];
        out->acl_pattern_type = (int8_t)buf[c.pos++];
        out->acl_operation = (int8_t)buf[c.pos++];
        out->acl_permission = (int8_t)buf[c.pos++];
        if ((rc = get_str(&c, &out->acl_name)) != 0 ||
            (rc = get_str(&c, &out->acl_principal)) != 0 || (rc = get_str(&c, &out->acl_host)) != 0)
            return rc;
        break;
    case LM_META_PARTITION_REASSIGN: {
        if ((rc = get_str(&c, &out->topic)) != 0 || (rc = get_be(&c, 4, &v)) != 0)
            return rc;
        out->partition_count = (int32_t)(uint32_t)v;
        int32_t *ids = malloc(3 * LM_META_REPLICATION_MAX * sizeof(int32_t));
        if (ids == NULL)
            return LM_E_NOMEM;
        out->replicas = ids; /* one allocation for the three lists: lm_meta_record_free */
        int16_t counts[3];
        for (int l = 0; l < 3; l++) {
            if ((rc = get_be(&c, 2, &v)) != 0 || v > LM_META_REPLICATION_MAX) {
                lm_meta_record_free(out);
                return rc != 0 ? rc : LM_E_CORRUPT;
            }
            counts[l] = (int16_t)v;
            for (int16_t i = 0; i < counts[l]; i++) {
                if ((rc = get_be(&c, 4, &v)) != 0) {
                    lm_meta_record_free(out);
                    return rc;
                }
                ids[l * LM_META_REPLICATION_MAX + i] = (int32_t)(uint32_t)v;
            }
        }
        out->replication_factor = counts[0];
        out->adding = ids + LM_META_REPLICATION_MAX;
        out->n_adding = counts[1];
        out->removing = ids + 2 * LM_META_REPLICATION_MAX;
        out->n_removing = counts[2];
        if (c.pos < c.len) {
            /* the leader's completion (1, or 3 with its move's number), a request's (2), a
             * snapshot's move number (4): reassign_trailer */
            if ((rc = get_be(&c, 1, &v)) != 0 || v < 1 || v > 4) {
                lm_meta_record_free(out);
                return rc != 0 ? rc : LM_E_CORRUPT;
            }
            out->reassign_done = v == 1 || v == 3;
            out->reassign_keep = v == 2;
            if (v >= 3) {
                if ((rc = get_be(&c, 8, &v)) != 0 || v == 0 || v > (uint64_t)INT64_MAX) {
                    lm_meta_record_free(out);
                    return rc != 0 ? rc : LM_E_CORRUPT;
                }
                out->reassign_move = (int64_t)v;
            }
        }
        break;
    }
    case LM_META_QUOTA: {
        if ((rc = get_be(&c, 1, &v)) != 0)
            return rc;
        out->quota_user_part = (uint8_t)v;
        if ((rc = get_str(&c, &out->quota_user)) != 0 || (rc = get_be(&c, 1, &v)) != 0)
            return rc;
        out->quota_client_part = (uint8_t)v;
        if ((rc = get_str(&c, &out->quota_client)) != 0 || (rc = get_be(&c, 1, &v)) != 0)
            return rc;
        out->quota_key = (int8_t)v;
        if ((rc = get_be(&c, 8, &v)) != 0)
            return rc;
        memcpy(&out->quota_value, &v, 8);
        if ((rc = get_be(&c, 1, &v)) != 0)
            return rc;
        if (v > 1 || out->quota_user_part > LM_QUOTA_PART_DEFAULT ||
            out->quota_client_part > LM_QUOTA_PART_DEFAULT)
            return LM_E_CORRUPT;
        out->quota_remove = v == 1;
        break;
    }
    default:
        return LM_E_CORRUPT;
    }
    if (c.pos != len) {
        lm_meta_record_free(out);
        *configs_out = NULL;
        return LM_E_CORRUPT;
    }
    return 0;
}

int64_t lm_meta_state_partition_total(const struct lm_meta_state *s)
{
    int64_t n = 0;
    for (size_t i = 0; i < s->topic_count; i++)
        n += s->topics[i].partition_count;
    return n;
}

/* Index of broker id in s->brokers (sorted by id), or -1. */
static ptrdiff_t broker_index(const struct lm_meta_state *s, int32_t id)
{
    size_t lo = 0, hi = s->broker_count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (s->brokers[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < s->broker_count && s->brokers[lo].id == id ? (ptrdiff_t)lo : -1;
}

int64_t lm_meta_state_busiest_replicas(const struct lm_meta_state *s, int64_t *counts)
{
    memset(counts, 0, s->broker_count * sizeof(*counts));
    for (size_t i = 0; i < s->topic_count; i++) {
        const struct lm_meta_topic *t = &s->topics[i];
        for (int32_t p = 0; t->replicas != NULL && p < t->partition_count; p++) {
            int16_t n;
            const int32_t *r = lm_meta_topic_replicas(t, p, &n);
            for (int16_t j = 0; j < n; j++) {
                ptrdiff_t k = broker_index(s, r[j]);
                if (k >= 0)
                    counts[k]++;
            }
        }
    }
    int64_t most = -1;
    for (size_t k = 0; k < s->broker_count; k++)
        if (!s->brokers[k].fenced && counts[k] > most)
            most = counts[k];
    return most;
}

int64_t lm_meta_state_partitions_added(const struct lm_meta_state *s,
                                       const struct lm_meta_record *r)
{
    if (r->type == LM_META_TOPIC_CREATE)
        return r->partition_count > 0 ? r->partition_count : 0;
    if (r->type != LM_META_PARTITIONS_SET || r->topic == NULL)
        return 0;
    const struct lm_meta_topic *t = lm_meta_state_find(s, r->topic);
    return t != NULL && r->partition_count > t->partition_count
               ? (int64_t)r->partition_count - t->partition_count
               : 0;
}
