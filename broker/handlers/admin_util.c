/* Helpers shared by the admin handlers: strings in the request arena and the broker-side
 * sources of topic config values (admin_core.h). */
#define _GNU_SOURCE /* qsort_r */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/random.h>

#include "broker/cluster/placement.h"
#include "broker/handlers/admin_core.h"
#include "common/lm_assert.h"
#include "protocol/kafka_errors.h"
#include "common/lm_err.h"

struct kafka_str admin_kstr(const char *s)
{
    if (s == NULL)
        return KAFKA_STR_NULL;
    size_t n = strlen(s);
    LM_ASSERT(n <= INT32_MAX);
    return (struct kafka_str){s, (int32_t)n};
}

int admin_cstr(struct kafka_arena *a, struct kafka_str s, char **out)
{
    if (s.len < 0) {
        *out = NULL;
        return 0;
    }
    char *p = kafka_arena_alloc(a, (size_t)s.len + 1, 1);
    if (p == NULL)
        return LM_E_NOMEM;
    if (s.len > 0)
        memcpy(p, s.ptr, (size_t)s.len);
    p[s.len] = '\0';
    *out = p;
    return 0;
}

int admin_fmt(struct kafka_arena *a, struct kafka_str *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    LM_ASSERT(n >= 0);
    char *p = kafka_arena_alloc(a, (size_t)n + 1, 1);
    if (p == NULL)
        return LM_E_NOMEM;
    va_start(ap, fmt);
    int m = vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    LM_ASSERT(m == n);
    *out = (struct kafka_str){p, n};
    return 0;
}

bool admin_kstr_eq(struct kafka_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len >= 0 && (size_t)s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

bool admin_kstr_same(struct kafka_str x, struct kafka_str y)
{
    if (x.len != y.len)
        return false;
    return x.len <= 0 || memcmp(x.ptr, y.ptr, (size_t)x.len) == 0;
}

static int key_cmp(const void *x, const void *y, void *ctx)
{
    const struct kafka_str *keys = ctx;
    struct kafka_str a = keys[*(const int32_t *)x], b = keys[*(const int32_t *)y];
    int32_t n = a.len < b.len ? a.len : b.len;
    int c = n > 0 ? memcmp(a.ptr, b.ptr, (size_t)n) : 0;
    return c != 0 ? c : (a.len > b.len) - (a.len < b.len);
}

int admin_mark_duplicates(struct kafka_arena *a, const struct kafka_str *keys, int32_t n,
                          bool **dup)
{
    LM_ASSERT(n >= 0);
    size_t m = (size_t)(n > 0 ? n : 1);
    bool *d = kafka_arena_alloc_array(a, m, sizeof(bool), 1);
    int32_t *order = kafka_arena_alloc_array(a, m, sizeof(int32_t), 4);
    if (d == NULL || order == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        order[i] = i;
    /* qsort_r (glibc) passes the keys as context; no global state. */
    qsort_r(order, (size_t)n, sizeof(int32_t), key_cmp, (void *)keys);
    for (int32_t i = 1; i < n; i++) {
        if (admin_kstr_same(keys[order[i - 1]], keys[order[i]])) {
            d[order[i - 1]] = true;
            d[order[i]] = true;
        }
    }
    *dup = d;
    return 0;
}

int admin_mark_duplicate_names(struct kafka_arena *a, const struct kafka_str *first, size_t stride,
                               int32_t n, bool **dup)
{
    LM_ASSERT(n >= 0 && (n == 0 || first != NULL));
    struct kafka_str *names =
        kafka_arena_alloc_array(a, (size_t)(n > 0 ? n : 1), sizeof(*names), 8);
    if (names == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        names[i] = *(const struct kafka_str *)((const char *)first + (size_t)i * stride);
    return admin_mark_duplicates(a, names, n, dup);
}

/* Broker keys in other units that set a topic config when its own synonym is unset, in
 * Kafka's precedence order (KafkaConfig: log.retention.ms > .minutes > .hours; log.roll.ms >
 * log.roll.hours; log.roll.jitter.ms > log.roll.jitter.hours). */
static const struct {
    const char *topic_name, *broker_key;
    int64_t factor;
} unit_keys[] = {
    {"retention.ms", "log.retention.minutes", 60000},
    {"retention.ms", "log.retention.hours", 3600000},
    {"segment.ms", "log.roll.hours", 3600000},
    {"segment.jitter.ms", "log.roll.jitter.hours", 3600000},
};

int admin_broker_topic_entries(const struct admin_env *env, struct kafka_arena *a,
                               struct admin_broker_entries *out)
{
    size_t ndefs = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&ndefs);
    /* the dynamic layers, copied out of the snapshot (the response is encoded later) */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_broker_configs *layer[2] = {
        lm_meta_state_broker_configs(&snap->state, env->cfg->node_id),
        lm_meta_state_broker_configs(&snap->state, LM_META_BROKER_DEFAULT)};
    static const enum lm_config_source layer_source[2] = {LM_CONFIG_SOURCE_DYNAMIC_BROKER,
                                                          LM_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER};
    size_t cap = ndefs + LM_ARRAY_LEN(unit_keys);
    for (int l = 0; l < 2; l++)
        cap += layer[l] != NULL ? layer[l]->count : 0;
    struct lm_config_entry *e = kafka_arena_alloc_array(a, cap, sizeof(*e), 8);
    enum lm_config_source *src = kafka_arena_alloc_array(a, cap, sizeof(*src), 8);
    int rc = e != NULL && src != NULL ? 0 : LM_E_NOMEM;
    size_t n = 0;
    for (int l = 0; rc == 0 && l < 2; l++)
        for (size_t i = 0; rc == 0 && layer[l] != NULL && i < layer[l]->count; i++) {
            rc = admin_cstr(a, admin_kstr(layer[l]->configs[i].name), &e[n].name);
            if (rc == 0)
                rc = admin_cstr(a, admin_kstr(layer[l]->configs[i].value), &e[n].value);
            src[n++] = layer_source[l];
        }
    lm_meta_snapshot_release(snap);
    if (rc != 0)
        return rc;
    size_t first_static = n;
    for (size_t i = 0; i < ndefs + LM_ARRAY_LEN(unit_keys); i++) {
        const char *key = i < ndefs ? defs[i].broker_synonym : unit_keys[i - ndefs].broker_key;
        if (key == NULL)
            continue;
        const char *v = broker_config_get(env->cfg, key);
        if (v == NULL)
            continue;
        bool dup = false;
        for (size_t j = first_static; j < n; j++)
            dup = dup || strcmp(e[j].name, key) == 0;
        if (dup)
            continue;
        LM_ASSERT(n < cap);
        /* The entry type has non-const members; the strings are only read. */
        e[n].name = (char *)key;
        e[n].value = (char *)v;
        src[n++] = LM_CONFIG_SOURCE_STATIC_BROKER;
    }
    *out = (struct admin_broker_entries){e, src, n};
    return 0;
}

static const char *entry_value(const struct lm_config_entry *list, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (strcmp(list[i].name, name) == 0)
            return list[i].value;
    }
    return NULL;
}

/* Where the broker entry holding value v came from (the entries are in precedence order). */
static enum lm_config_source entry_source(const struct admin_broker_entries *b, const char *v)
{
    for (size_t i = 0; i < b->count; i++)
        if (b->e[i].value == v)
            return b->source[i];
    return LM_CONFIG_SOURCE_STATIC_BROKER;
}

int admin_topic_config_value(const struct lm_topic_config_def *def,
                             const struct lm_config_entry *topic, size_t topic_count,
                             const struct admin_broker_entries *brk, struct kafka_arena *a,
                             struct admin_topic_value *out)
{
    const struct lm_config_entry *broker = brk->e;
    size_t broker_count = brk->count;
    LM_ASSERT(def != NULL && out != NULL);
    const char *v = entry_value(topic, topic_count, def->name);
    if (v != NULL) {
        *out = (struct admin_topic_value){v, LM_CONFIG_SOURCE_DYNAMIC_TOPIC, NULL};
        return 0;
    }
    if (def->broker_synonym != NULL) {
        v = entry_value(broker, broker_count, def->broker_synonym);
        if (v != NULL) {
            *out = (struct admin_topic_value){v, entry_source(brk, v), def->broker_synonym};
            return 0;
        }
    }
    for (size_t i = 0; i < LM_ARRAY_LEN(unit_keys); i++) {
        if (strcmp(unit_keys[i].topic_name, def->name) != 0)
            continue;
        v = entry_value(broker, broker_count, unit_keys[i].broker_key);
        if (v == NULL)
            continue;
        char *end = NULL;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (errno != 0 || end == v || *end != '\0')
            continue; /* the config parser rejects these at start; be safe */
        if (n < 0)
            n = -1;
        else if (n > INT64_MAX / unit_keys[i].factor)
            n = INT64_MAX;
        else
            n *= unit_keys[i].factor;
        struct kafka_str s;
        int rc = admin_fmt(a, &s, "%lld", n);
        if (rc != 0)
            return rc;
        *out = (struct admin_topic_value){s.ptr, entry_source(brk, v), unit_keys[i].broker_key};
        return 0;
    }
    *out = (struct admin_topic_value){def->default_value, LM_CONFIG_SOURCE_DEFAULT, NULL};
    return 0;
}

int admin_commit(const struct admin_env *env, const struct lm_meta_record *r,
                 enum admin_commit_kind kind, struct kafka_arena *a, int16_t *code,
                 struct kafka_str *msg)
{
    if (env->defer == NULL)
        return lm_meta_store_commit(env->meta, r);
    struct lm_meta_record rr = *r;
    int32_t *ids = NULL;
    int rc = 0;
    if ((r->type == LM_META_TOPIC_CREATE || r->type == LM_META_PARTITIONS_SET) &&
        r->replicas == NULL) {
        struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
        int32_t first = 0, n = r->partition_count;
        if (r->type == LM_META_PARTITIONS_SET) {
            const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, r->topic);
            first = t != NULL ? t->partition_count : 0;
            n = r->partition_count - first;
            rc = t == NULL ? LM_E_NOT_FOUND : n <= 0 ? LM_E_INVALID : 0;
        }
        uint32_t rnd[2] = {0, 0};
        if (rc == 0 && getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
            rnd[0] = (uint32_t)(uintptr_t)&rnd;
        int16_t rf = r->replication_factor > 0 ? r->replication_factor : 1;
        if (r->type == LM_META_PARTITIONS_SET) {
            const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, r->topic);
            rf = t != NULL && t->replicas != NULL ? t->replication_factor : 1;
        }
        if (rc == 0)
            rc = placement_assign_live(&snap->state, first, n, rf, rnd[0], rnd[1], &ids);
        lm_meta_snapshot_release(snap);
        rr.replicas = ids;
        rr.replication_factor = rf;
        rr.replicas_partitions = n;
    }
    struct admin_defer_item *it = NULL;
    if (rc == 0) {
        size_t len = lm_meta_record_size(&rr);
        it = kafka_arena_alloc(a, sizeof(*it), 16);
        uint8_t *buf = len <= LM_META_RECORD_BYTES_MAX ? kafka_arena_alloc(a, len, 8) : NULL;
        rc = it == NULL || buf == NULL ? LM_E_NOMEM : lm_meta_record_encode(&rr, buf, len);
        if (rc > 0) {
            *it = (struct admin_defer_item){.rec = buf,
                                            .len = (size_t)rc,
                                            .kind = kind,
                                            .topic = r->topic != NULL  ? r->topic
                                                     : r->user != NULL ? r->user
                                                                       : r->feature,
                                            .code = code,
                                            .msg = msg};
            rc = 0;
        }
    }
    free(ids);
    if (rc != 0)
        return rc;
    struct admin_defer *d = env->defer;
    if (d->tail != NULL)
        d->tail->next = it;
    else
        d->head = it;
    d->tail = it;
    d->count++;
    return 0;
}

bool admin_authz_on(const struct admin_env *env)
{
    return env->authz != NULL && env->authz->enabled;
}

bool admin_allowed(const struct admin_env *env, int8_t op, int8_t type, struct kafka_str name)
{
    if (!admin_authz_on(env) || authz_is_super(env->authz, env->who.principal))
        return true;
    char buf[1024];
    if (name.len < 0 || (size_t)name.len >= sizeof(buf))
        return false;
    memcpy(buf, name.ptr, (size_t)name.len);
    buf[name.len] = '\0';
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    bool ok = authz_allowed(env->authz, snap->state.acls, snap->state.acl_count, &env->who, op,
                            type, buf);
    lm_meta_snapshot_release(snap);
    return ok;
}

int32_t admin_authorized_ops(const struct admin_env *env, int8_t type, const char *name)
{
    static const struct authz_config off = {.enabled = false};
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    int32_t ops = authz_authorized_ops(admin_authz_on(env) ? env->authz : &off, snap->state.acls,
                                       snap->state.acl_count, &env->who, type, name);
    lm_meta_snapshot_release(snap);
    return ops;
}

int admin_mutations_check(const struct admin_env *env, bool strict, struct kafka_arena *a,
                          int16_t *code, struct kafka_str *msg, bool *refused)
{
    *refused = strict && env->mutations != NULL && env->mutations->exceeded(env->mutations->ctx);
    if (!*refused)
        return 0;
    *code = KAFKA_THROTTLING_QUOTA_EXCEEDED;
    return admin_fmt(a, msg, "The throttling quota has been exceeded.");
}

void admin_mutations_record(const struct admin_env *env, int32_t partitions)
{
    if (env->mutations != NULL && partitions > 0)
        env->mutations->record(env->mutations->ctx, (double)partitions);
}

int32_t admin_mutations_throttle_ms(const struct admin_env *env)
{
    return env->mutations != NULL ? env->mutations->throttle_ms(env->mutations->ctx) : 0;
}
