/* DescribeConfigs (32), AlterConfigs (33) and IncrementalAlterConfigs (44) for topic, broker
 * and group resources (KIP-133, KIP-226 synonyms and sources, KIP-339 incremental operations,
 * KIP-569 types and documentation).
 *
 * BROKER_LOGGER resources are described and set by admin_loggers.c (KIP-412).
 *
 * Topic configs are the overrides kept in the metadata store; their effective values fall back
 * to the broker's dynamic configs, then its server.properties key, then Kafka's default
 * (admin_topic_config_value).
 *
 * Broker resources (KIP-226): a node id or "" (the cluster-wide default) holds dynamic configs
 * in the metadata (LM_META_BROKER_CONFIGS). Dynamic are the keys
 * lm_broker_dynamic_config_validate accepts: every topic default (log.retention.ms,
 * message.max.bytes, log.cleanup.policy, ...) and the replication throttles; any other key is
 * refused with INVALID_REQUEST ("Cannot update these configs dynamically"), as Kafka answers
 * for a read-only broker config. A topic default set dynamically takes effect at each shard's
 * next metadata refresh.
 *
 * Group resources (Kafka's GroupConfig): a group id holds configs in the metadata
 * (LM_META_GROUP_CONFIGS), whether or not the group exists; a config not set there has the
 * broker's group.* default. Values are checked against the broker's bounds
 * (group.consumer.min.session.timeout.ms, ...) as Kafka's GroupConfig.validate does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

#define SET_ERR(a, code_field, msg_field, code, ...)                                               \
    ((code_field) = (code), admin_fmt((a), &(msg_field), __VA_ARGS__))

/* Broker keys laminar reads itself (broker/config.c) besides the topic defaults, with Kafka's
 * types and defaults (KafkaConfig). Defaults of NULL are null in Kafka too. */
struct broker_key {
    const char *name;
    enum lm_config_type type;
    const char *default_value;
    const char *doc;
};

static const struct broker_key broker_keys[] = {
    {"advertised.listeners", LM_CONFIG_STRING, NULL,
     "Listeners published to clients, if different from listeners."},
    {"auto.create.topics.enable", LM_CONFIG_BOOLEAN, "true",
     "Create a topic when a client asks for its metadata."},
    {"default.replication.factor", LM_CONFIG_INT, "1",
     "Replication factor of topics created with -1 or automatically."},
    {"delete.topic.enable", LM_CONFIG_BOOLEAN, "true", "Whether topics may be deleted."},
    {"listeners", LM_CONFIG_STRING, "PLAINTEXT://:9092", "Addresses the broker listens on."},
    {"log.dirs", LM_CONFIG_STRING, NULL, "Directories holding the partition logs."},
    {"log.retention.hours", LM_CONFIG_INT, "168",
     "Hours a segment is kept (lowest precedence of the log.retention.* keys)."},
    {"log.retention.minutes", LM_CONFIG_INT, NULL,
     "Minutes a segment is kept (over log.retention.hours)."},
    {"log.roll.hours", LM_CONFIG_INT, "168", "Hours after which a segment is rolled."},
    {"log.roll.jitter.hours", LM_CONFIG_INT, "0", "Random jitter subtracted from log.roll.hours."},
    {"node.id", LM_CONFIG_INT, "-1", "The id of this node."},
    {"num.partitions", LM_CONFIG_INT, "1",
     "Partitions of topics created with -1 or "
     "automatically."},
    {"queued.max.request.bytes", LM_CONFIG_LONG, "-1",
     "Bytes of queued requests per shard before reading stops (-1: laminar's default)."},
    {"socket.request.max.bytes", LM_CONFIG_INT, "104857600", "Largest request accepted."},
    {"leader.replication.throttled.rate", LM_CONFIG_LONG, "9223372036854775807",
     "Replication throttle of leaders in bytes/s (stored and described; not enforced)."},
    {"follower.replication.throttled.rate", LM_CONFIG_LONG, "9223372036854775807",
     "Replication throttle of followers in bytes/s (stored and described; not enforced)."},
    {"replica.alter.log.dirs.io.max.bytes.per.second", LM_CONFIG_LONG, "9223372036854775807",
     "Throttle of moves between log dirs (stored and described; one log dir per node)."},
};

/* One describable broker config. */
struct broker_item {
    const char *name;
    enum lm_config_type type;
    const char *default_value;
    const char *doc;
};

static int broker_item_cmp(const void *x, const void *y)
{
    return strcmp(((const struct broker_item *)x)->name, ((const struct broker_item *)y)->name);
}

/* Every broker key DescribeConfigs lists: the table above plus the broker synonym of every
 * topic config, sorted by name, without duplicates. */
static int broker_items(struct kafka_arena *a, struct broker_item **out, size_t *count)
{
    size_t ndefs = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&ndefs);
    size_t cap = LM_ARRAY_LEN(broker_keys) + ndefs;
    struct broker_item *it = kafka_arena_alloc_array(a, cap, sizeof(*it), 8);
    if (it == NULL)
        return LM_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; i < LM_ARRAY_LEN(broker_keys); i++)
        it[n++] = (struct broker_item){broker_keys[i].name, broker_keys[i].type,
                                       broker_keys[i].default_value, broker_keys[i].doc};
    for (size_t i = 0; i < ndefs; i++) {
        const char *syn = defs[i].broker_synonym;
        if (syn == NULL)
            continue;
        bool dup = false;
        for (size_t j = 0; j < n && !dup; j++)
            dup = strcmp(it[j].name, syn) == 0;
        if (!dup)
            it[n++] = (struct broker_item){syn, defs[i].type, defs[i].default_value, defs[i].doc};
    }
    LM_ASSERT(n <= cap);
    qsort(it, n, sizeof(*it), broker_item_cmp);
    *out = it;
    *count = n;
    return 0;
}

/* Is `name` asked for? A null key list asks for everything. */
static bool key_wanted(const struct kafka_describe_configs_request_describe_configs_resource *r,
                       const char *name)
{
    if (r->configuration_keys_count < 0)
        return true;
    for (int32_t i = 0; i < r->configuration_keys_count; i++) {
        if (admin_kstr_eq(r->configuration_keys[i], name))
            return true;
    }
    return false;
}

/* Parses a broker resource name: our node id, or "" (the cluster-wide default). Anything else
 * is Kafka's INVALID_REQUEST. Returns 0 or LM_E_NOMEM; *ok tells whether it is ours. */
static int broker_name_check(const struct admin_env *env, struct kafka_str name,
                             struct kafka_arena *a, int16_t *code, struct kafka_str *msg, bool *ok,
                             bool *is_default)
{
    char *s = NULL;
    int rc = admin_cstr(a, name, &s);
    if (rc != 0)
        return rc;
    *ok = false;
    *is_default = s == NULL || s[0] == '\0';
    if (*is_default) {
        *ok = true;
        return 0;
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v != env->cfg->node_id)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_REQUEST,
                       "Unexpected broker id, expected %d or empty string, but received %s",
                       env->cfg->node_id, s);
    *ok = true;
    return 0;
}

/* ---------------------------------------------------------------- DescribeConfigs */

typedef struct kafka_describe_configs_response_describe_configs_resource_result dc_entry;
typedef struct kafka_describe_configs_response_describe_configs_synonym dc_synonym;

static void dc_entry_fill(dc_entry *e, int16_t version, bool documentation, const char *name,
                          const char *value, enum lm_config_source source, bool read_only,
                          enum lm_config_type type, const char *doc)
{
    *e = (dc_entry){
        .name = admin_kstr(name),
        .value = admin_kstr(value),
        .read_only = read_only,
        .is_default = source == LM_CONFIG_SOURCE_DEFAULT, /* v0 only */
        .config_source = (int8_t)source,
        .is_sensitive = false,
        .synonyms = NULL,
        .synonyms_count = 0,
        .config_type = version >= 3 ? (int8_t)type : 0,
        .documentation = (version >= 3 && documentation) ? admin_kstr(doc) : KAFKA_STR_NULL,
    };
}

/* A LIST config's value as Kafka describes it: parsed (trimmed, split at commas with the blanks
 * around items dropped) and joined again with ",", since DescribeConfigs shows the parsed value
 * (ConfigDef.convertToString of the list), not the text that set it. An empty list is "". */
static bool list_blank(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

static int list_display(struct kafka_arena *a, const char *value, const char **out)
{
    *out = value;
    if (value == NULL)
        return 0;
    size_t len = strlen(value);
    char *buf = kafka_arena_alloc(a, len + 1, 1);
    if (buf == NULL)
        return LM_E_NOMEM;
    const char *p = value, *end = value + len;
    while (p < end && list_blank(*p))
        p++;
    while (end > p && list_blank(end[-1]))
        end--;
    size_t pos = 0;
    while (p < end) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *q = stop;
        while (p < q && list_blank(*p))
            p++;
        while (q > p && list_blank(q[-1]))
            q--;
        memcpy(buf + pos, p, (size_t)(q - p));
        pos += (size_t)(q - p);
        if (comma == NULL)
            break;
        buf[pos++] = ',';
        p = comma + 1;
        if (p == end) /* a trailing comma is an empty last item, kept as Kafka's split keeps it */
            break;
    }
    LM_ASSERT(pos <= len);
    buf[pos] = '\0';
    *out = buf;
    return 0;
}

/* Synonyms of a topic config in precedence order (KIP-226): the topic override, the broker
 * key(s) set in server.properties, then the default (named by the broker synonym). */
static int dc_topic_synonyms(const struct lm_topic_config_def *def,
                             const struct lm_config_entry *topic, size_t topic_count,
                             const struct admin_broker_entries *b, struct kafka_arena *a,
                             dc_entry *e)
{
    const struct lm_config_entry *brk = b->e;
    size_t brk_count = b->count;
    dc_synonym *s = kafka_arena_alloc_array(a, 2 + brk_count, sizeof(*s), 8);
    if (s == NULL)
        return LM_E_NOMEM;
    int32_t n = 0;
    for (size_t i = 0; i < topic_count; i++) {
        if (strcmp(topic[i].name, def->name) != 0)
            continue;
        const char *v = topic[i].value;
        if (def->type == LM_CONFIG_LIST && list_display(a, topic[i].value, &v) != 0)
            return LM_E_NOMEM;
        s[n++] = (dc_synonym){admin_kstr(def->name), admin_kstr(v), LM_CONFIG_SOURCE_DYNAMIC_TOPIC};
    }
    /* Broker keys that feed this config, layer by layer (this node's dynamic configs, the
     * dynamic defaults, server.properties), in each the synonym then the unit keys; each set
     * one is listed with its own (unconverted) value and source. */
    static const struct {
        const char *topic_name, *broker_key;
    } units[] = {{"retention.ms", "log.retention.minutes"},
                 {"retention.ms", "log.retention.hours"},
                 {"segment.ms", "log.roll.hours"},
                 {"segment.jitter.ms", "log.roll.jitter.hours"}};
    static const enum lm_config_source layers[] = {LM_CONFIG_SOURCE_DYNAMIC_BROKER,
                                                   LM_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER,
                                                   LM_CONFIG_SOURCE_STATIC_BROKER};
    for (size_t l = 0; l < LM_ARRAY_LEN(layers); l++)
        for (size_t u = 0; u <= LM_ARRAY_LEN(units); u++) {
            const char *key = NULL;
            if (u == 0)
                key = def->broker_synonym;
            else if (strcmp(units[u - 1].topic_name, def->name) == 0)
                key = units[u - 1].broker_key;
            if (key == NULL)
                continue;
            for (size_t i = 0; i < brk_count; i++) {
                if (b->source[i] == layers[l] && strcmp(brk[i].name, key) == 0) {
                    LM_ASSERT((size_t)n < 2 + brk_count);
                    s[n++] = (dc_synonym){admin_kstr(key), admin_kstr(brk[i].value), layers[l]};
                }
            }
        }
    LM_ASSERT((size_t)n < 2 + brk_count);
    s[n++] = (dc_synonym){admin_kstr(def->broker_synonym ? def->broker_synonym : def->name),
                          admin_kstr(def->default_value), LM_CONFIG_SOURCE_DEFAULT};
    e->synonyms = s;
    e->synonyms_count = n;
    return 0;
}

static int dc_topic(const struct admin_env *env, int16_t version, bool synonyms, bool docs,
                    const struct kafka_describe_configs_request_describe_configs_resource *r,
                    const struct admin_broker_entries *brk, struct kafka_arena *a,
                    struct kafka_describe_configs_response_describe_configs_result *res)
{
    char *name = NULL;
    int rc = admin_cstr(a, r->resource_name, &name);
    if (rc != 0)
        return rc;
    /* Copy the topic's overrides out of the snapshot: the response is encoded later. */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_topic *t = name ? lm_meta_state_find(&snap->state, name) : NULL;
    struct lm_config_entry *over = NULL;
    size_t over_count = 0;
    bool found = t != NULL;
    if (found && t->config_count > 0) {
        over = kafka_arena_alloc_array(a, t->config_count, sizeof(*over), 8);
        rc = over ? 0 : LM_E_NOMEM;
        for (size_t i = 0; rc == 0 && i < t->config_count; i++) {
            rc = admin_cstr(a, admin_kstr(t->configs[i].name), &over[i].name);
            if (rc == 0)
                rc = admin_cstr(a, admin_kstr(t->configs[i].value), &over[i].value);
        }
        over_count = t->config_count;
    }
    lm_meta_snapshot_release(snap);
    if (rc != 0)
        return rc;
    if (!found)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                       "The topic '%s' does not exist.", name ? name : "");

    size_t ndefs = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&ndefs);
    res->configs = kafka_arena_alloc_array(a, ndefs, sizeof(*res->configs), 8);
    if (res->configs == NULL)
        return LM_E_NOMEM;
    int32_t n = 0;
    for (size_t i = 0; i < ndefs; i++) {
        if (!key_wanted(r, defs[i].name))
            continue;
        struct admin_topic_value tv;
        rc = admin_topic_config_value(&defs[i], over, over_count, brk, a, &tv);
        if (rc == 0 && defs[i].type == LM_CONFIG_LIST)
            rc = list_display(a, tv.value, &tv.value);
        if (rc != 0)
            return rc;
        dc_entry *e = &res->configs[n++];
        dc_entry_fill(e, version, docs, defs[i].name, tv.value, tv.source, false, defs[i].type,
                      defs[i].doc);
        if (synonyms && version >= 1) {
            rc = dc_topic_synonyms(&defs[i], over, over_count, brk, a, e);
            if (rc != 0)
                return rc;
        }
    }
    res->configs_count = n;
    return 0;
}

/* A config set being described or edited (a topic's overrides, a broker entity's dynamic
 * configs): entries in the arena. */
struct override_set {
    struct lm_config_entry *e;
    size_t count, cap;
};

static const char *override_get(const struct override_set *s, const char *name)
{
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->e[i].name, name) == 0)
            return s->e[i].value;
    }
    return NULL;
}

/* The dynamic configs of one broker entity, copied into the arena (the response is encoded
 * after the snapshot is released), with room for `extra` more. */
static int entries_copy(const struct lm_config_entry *src, size_t n, size_t extra,
                        struct kafka_arena *a, struct override_set *out)
{
    out->count = 0;
    out->cap = n + extra + 1;
    out->e = kafka_arena_alloc_array(a, out->cap, sizeof(*out->e), 8);
    int rc = out->e != NULL ? 0 : LM_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        struct lm_config_entry *e = &out->e[out->count];
        rc = admin_cstr(a, admin_kstr(src[i].name), &e->name);
        if (rc == 0)
            rc = admin_cstr(a, admin_kstr(src[i].value), &e->value);
        if (rc == 0)
            out->count++;
    }
    return rc;
}

static int broker_override_load(const struct admin_env *env, int32_t node, size_t extra,
                                struct kafka_arena *a, struct override_set *out)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_broker_configs *b = lm_meta_state_broker_configs(&snap->state, node);
    int rc = entries_copy(b != NULL ? b->configs : NULL, b != NULL ? b->count : 0, extra, a, out);
    lm_meta_snapshot_release(snap);
    return rc;
}

/* The dynamic configs of a group, as broker_override_load. */
static int group_override_load(const struct admin_env *env, const char *group, size_t extra,
                               struct kafka_arena *a, struct override_set *out)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_group_configs *g = lm_meta_state_group_configs(&snap->state, group);
    int rc = entries_copy(g != NULL ? g->configs : NULL, g != NULL ? g->count : 0, extra, a, out);
    lm_meta_snapshot_release(snap);
    return rc;
}

/* ---------------------------------------------------------------- GROUP resources */

/* A GROUP resource's name: not empty. Returns 0 or LM_E_NOMEM; the error goes to code/msg. */
static int group_name_check(struct kafka_str name, struct kafka_arena *a, int16_t *code,
                            struct kafka_str *msg, char **group)
{
    int rc = admin_cstr(a, name, group);
    if (rc != 0)
        return rc;
    if (*group == NULL || (*group)[0] == '\0')
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_REQUEST, "Group name can't be empty");
    if (strlen(*group) > LM_META_GROUP_NAME_MAX)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_REQUEST, "Group name is longer than %d bytes",
                       LM_META_GROUP_NAME_MAX);
    return 0;
}

/* The broker's value of a group config's default or bound key, else dflt. */
static int64_t group_broker_i64(const struct admin_env *env, const char *key, int64_t dflt)
{
    const char *v = key != NULL ? broker_config_get(env->cfg, key) : NULL;
    char *end = NULL;
    long long n = v != NULL ? strtoll(v, &end, 10) : 0;
    return v != NULL && end != v && *end == '\0' ? (int64_t)n : dflt;
}

static const char *group_default(const struct admin_env *env, const struct lm_group_config_def *d)
{
    const char *v =
        d->broker_default != NULL ? broker_config_get(env->cfg, d->broker_default) : NULL;
    return v != NULL ? v : d->default_value;
}

static int dc_group(const struct admin_env *env, int16_t version, bool synonyms, bool docs,
                    const struct kafka_describe_configs_request_describe_configs_resource *r,
                    struct kafka_arena *a,
                    struct kafka_describe_configs_response_describe_configs_result *res)
{
    char *group = NULL;
    int rc = group_name_check(r->resource_name, a, &res->error_code, &res->error_message, &group);
    if (rc != 0 || res->error_code != KAFKA_NONE)
        return rc;
    struct override_set mine = {0};
    if ((rc = group_override_load(env, group, 0, a, &mine)) != 0)
        return rc;
    size_t count = 0;
    const struct lm_group_config_def *defs = lm_group_config_defs(&count);
    res->configs = kafka_arena_alloc_array(a, count, sizeof(*res->configs), 8);
    if (res->configs == NULL)
        return LM_E_NOMEM;
    int32_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (!key_wanted(r, defs[i].name))
            continue;
        const char *set = override_get(&mine, defs[i].name);
        const char *value = set != NULL ? set : group_default(env, &defs[i]);
        enum lm_config_source src = set != NULL ? LM_CONFIG_SOURCE_GROUP : LM_CONFIG_SOURCE_DEFAULT;
        dc_entry *e = &res->configs[n++];
        dc_entry_fill(e, version, docs, defs[i].name, value, src, false, defs[i].type, defs[i].doc);
        if (synonyms && version >= 1) {
            dc_synonym *syn = kafka_arena_alloc_array(a, 1, sizeof(*syn), 8);
            if (syn == NULL)
                return LM_E_NOMEM;
            syn[0] = (dc_synonym){admin_kstr(defs[i].name), admin_kstr(value), (int8_t)src};
            e->synonyms = syn;
            e->synonyms_count = 1;
        }
    }
    res->configs_count = n;
    return 0;
}

/* The value a group config has in set s, else its default (an int config). */
static int64_t group_effective_i64(const struct admin_env *env, const struct override_set *s,
                                   const char *name)
{
    const struct lm_group_config_def *d = lm_group_config_find(name);
    LM_ASSERT(d != NULL && d->type == LM_CONFIG_INT);
    const char *v = override_get(s, name);
    return v != NULL ? strtoll(v, NULL, 10) : strtoll(group_default(env, d), NULL, 10);
}

/* Checks (Kafka's GroupConfig.validate: names, values, the broker's bounds, each session
 * timeout above its heartbeat interval) and commits a group's new config set. */
static int group_commit(const struct admin_env *env, const char *group,
                        const struct override_set *s, bool validate_only, struct kafka_arena *a,
                        int16_t *code, struct kafka_str *msg)
{
    for (size_t i = 0; i < s->count; i++) {
        const char *name = s->e[i].name, *value = s->e[i].value;
        const struct lm_group_config_def *d = lm_group_config_find(name);
        if (d == NULL)
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG, "Unknown group config name: %s",
                           name);
        if (lm_group_config_validate(name, value) != 0 || strlen(value) > LM_META_CONFIG_VALUE_MAX)
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                           "Invalid value %s for configuration %s", value, name);
        if (d->type != LM_CONFIG_INT)
            continue;
        int64_t v = strtoll(value, NULL, 10);
        if (d->min_key != NULL && v < group_broker_i64(env, d->min_key, d->min_default))
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                           "%s must be greater than or equal to %s", name, d->min_key);
        if (d->max_key != NULL && v > group_broker_i64(env, d->max_key, d->max_default))
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                           "%s must be less than or equal to %s", name, d->max_key);
    }
    static const char *const kinds[] = {"consumer", "share", "streams"};
    for (size_t k = 0; k < LM_ARRAY_LEN(kinds); k++) {
        char session[48], heartbeat[48];
        snprintf(session, sizeof(session), "%s.session.timeout.ms", kinds[k]);
        snprintf(heartbeat, sizeof(heartbeat), "%s.heartbeat.interval.ms", kinds[k]);
        if ((override_get(s, session) != NULL || override_get(s, heartbeat) != NULL) &&
            group_effective_i64(env, s, session) <= group_effective_i64(env, s, heartbeat))
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG, "%s must be greater than %s",
                           session, heartbeat);
    }
    if (validate_only)
        return 0;
    struct lm_meta_record r = {
        .type = LM_META_GROUP_CONFIGS, .group = group, .configs = s->e, .config_count = s->count};
    int rc = admin_commit(env, &r, ADMIN_COMMIT_CONFIGS, a, code, msg);
    if (rc == LM_E_FULL)
        return SET_ERR(a, *code, *msg, KAFKA_POLICY_VIOLATION,
                       "No more than %d groups may have configs", LM_META_GROUP_CONFIGS_MAX);
    if (rc == LM_E_INVALID)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                       "The new group configs were rejected as invalid.");
    if (rc != 0) {
        BLOG_ERROR("admin: metadata commit of group configs failed: %s", lm_strerror(rc));
        return SET_ERR(a, *code, *msg, KAFKA_KAFKA_STORAGE_ERROR,
                       "Could not write the metadata log: %s", lm_strerror(rc));
    }
    BLOG_INFO("admin: %zu config(s) of group %s now set", s->count, group);
    return 0;
}

static int dc_broker(const struct admin_env *env, int16_t version, bool synonyms, bool docs,
                     const struct kafka_describe_configs_request_describe_configs_resource *r,
                     struct kafka_arena *a,
                     struct kafka_describe_configs_response_describe_configs_result *res)
{
    bool ok = false, is_default = false;
    int rc = broker_name_check(env, r->resource_name, a, &res->error_code, &res->error_message, &ok,
                               &is_default);
    if (rc != 0 || !ok)
        return rc;
    res->configs_count = 0;
    struct override_set mine = {0}, dflt = {0};
    if ((!is_default && (rc = broker_override_load(env, env->cfg->node_id, 0, a, &mine)) != 0) ||
        (rc = broker_override_load(env, LM_META_BROKER_DEFAULT, 0, a, &dflt)) != 0)
        return rc;
    struct broker_item *items = NULL;
    size_t count = 0;
    rc = broker_items(a, &items, &count);
    if (rc != 0)
        return rc;
    res->configs = kafka_arena_alloc_array(a, count, sizeof(*res->configs), 8);
    if (res->configs == NULL)
        return LM_E_NOMEM;
    int32_t n = 0;
    for (size_t i = 0; i < count; i++) {
        if (!key_wanted(r, items[i].name))
            continue;
        /* precedence (KIP-226): this node's dynamic config, the dynamic default, the static
         * config, Kafka's default; the default resource lists its dynamic configs alone */
        const char *vals[4] = {is_default ? NULL : override_get(&mine, items[i].name),
                               override_get(&dflt, items[i].name),
                               is_default ? NULL : broker_config_get(env->cfg, items[i].name),
                               is_default ? NULL : items[i].default_value};
        static const enum lm_config_source srcs[4] = {
            LM_CONFIG_SOURCE_DYNAMIC_BROKER, LM_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER,
            LM_CONFIG_SOURCE_STATIC_BROKER, LM_CONFIG_SOURCE_DEFAULT};
        int first = 0;
        while (first < 3 && vals[first] == NULL)
            first++;
        if (is_default && vals[1] == NULL)
            continue;
        bool dynamic = lm_broker_dynamic_config_validate(items[i].name, NULL) != LM_E_NOT_FOUND;
        dc_entry *e = &res->configs[n++];
        dc_entry_fill(e, version, docs, items[i].name, vals[first], srcs[first], !dynamic,
                      items[i].type, items[i].doc);
        if (synonyms && version >= 1) {
            dc_synonym *syn = kafka_arena_alloc_array(a, 4, sizeof(*syn), 8);
            if (syn == NULL)
                return LM_E_NOMEM;
            int32_t k = 0;
            for (int l = 0; l < 4; l++)
                if (vals[l] != NULL)
                    syn[k++] =
                        (dc_synonym){admin_kstr(items[i].name), admin_kstr(vals[l]), srcs[l]};
            e->synonyms = syn;
            e->synonyms_count = k;
        }
    }
    res->configs_count = n;
    return 0;
}

/* KafkaApis / ConfigAdminManager authorization of one config resource: op (DESCRIBE_CONFIGS
 * or ALTER_CONFIGS) on the topic, or on the cluster for a broker or broker logger. Sets the
 * error and returns true when denied (rc gets admin_fmt's result). */
static bool config_denied(const struct admin_env *env, int8_t type, struct kafka_str name,
                          int8_t op, struct kafka_arena *a, int16_t *code, struct kafka_str *msg,
                          int *rc)
{
    if (type == ADMIN_RESOURCE_TOPIC) {
        if (admin_allowed(env, op, AUTHZ_RES_TOPIC, name))
            return false;
        *code = KAFKA_TOPIC_AUTHORIZATION_FAILED;
    } else if (type == ADMIN_RESOURCE_BROKER || type == ADMIN_RESOURCE_BROKER_LOGGER) {
        if (admin_allowed(env, op, AUTHZ_RES_CLUSTER, admin_kstr(AUTHZ_CLUSTER_NAME)))
            return false;
        *code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    } else if (type == ADMIN_RESOURCE_GROUP) {
        if (admin_allowed(env, op, AUTHZ_RES_GROUP, name))
            return false;
        *code = KAFKA_GROUP_AUTHORIZATION_FAILED;
    } else {
        return false;
    }
    *rc = admin_fmt(a, msg, "Authorization failed.");
    return true;
}

int admin_describe_configs(const struct admin_env *env, int16_t version,
                           const struct kafka_describe_configs_request *rq,
                           struct kafka_describe_configs_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_DESCRIBE_CONFIGS_MIN && version <= ADMIN_DESCRIBE_CONFIGS_MAX);
    LM_ASSERT(env->meta != NULL && env->cfg != NULL);
    int32_t n = rq->resources_count < 0 ? 0 : rq->resources_count;
    if (ADMIN_RESULTS(a, rs, results, n) != 0)
        return LM_E_NOMEM;
    struct admin_broker_entries brk;
    int rc = admin_broker_topic_entries(env, a, &brk);
    if (rc != 0)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_describe_configs_request_describe_configs_resource *r =
            &rq->resources[i];
        struct kafka_describe_configs_response_describe_configs_result *res = &rs->results[i];
        *res = (struct kafka_describe_configs_response_describe_configs_result){
            .error_code = KAFKA_NONE,
            .error_message = KAFKA_STR_NULL,
            .resource_type = r->resource_type,
            .resource_name = r->resource_name,
            .configs = NULL,
            .configs_count = 0,
        };
        bool denied =
            config_denied(env, r->resource_type, r->resource_name, AUTHZ_OP_DESCRIBE_CONFIGS, a,
                          &res->error_code, &res->error_message, &rc);
        if (denied) {
            /* answered TOPIC_ or CLUSTER_AUTHORIZATION_FAILED */
        } else if (r->resource_type == ADMIN_RESOURCE_TOPIC)
            rc = dc_topic(env, version, rq->include_synonyms, rq->include_documentation, r, &brk, a,
                          res);
        else if (r->resource_type == ADMIN_RESOURCE_BROKER)
            rc =
                dc_broker(env, version, rq->include_synonyms, rq->include_documentation, r, a, res);
        else if (r->resource_type == ADMIN_RESOURCE_BROKER_LOGGER)
            rc = admin_logger_describe(env, version, r, a, res);
        else if (r->resource_type == ADMIN_RESOURCE_GROUP)
            rc = dc_group(env, version, rq->include_synonyms, rq->include_documentation, r, a, res);
        else
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "Unsupported resource type: %d", r->resource_type);
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- alter helpers */

/* Marks resources named twice (same type and name) in a request: Kafka refuses each of them.
 * The key of a resource is its type byte followed by its name. */
#define RESOURCE_DUPLICATES(a, arr, count, dup_out)                                                \
    ({                                                                                             \
        int rc_ = 0;                                                                               \
        struct kafka_str *keys_ =                                                                  \
            kafka_arena_alloc_array((a), (size_t)((count) > 0 ? (count) : 1), sizeof(*keys_), 8);  \
        if (keys_ == NULL)                                                                         \
            rc_ = LM_E_NOMEM;                                                                      \
        for (int32_t i_ = 0; rc_ == 0 && i_ < (count); i_++)                                       \
            rc_ = admin_fmt((a), &keys_[i_], "%c%.*s", (char)(arr)[i_].resource_type,              \
                            (int)(arr)[i_].resource_name.len, (arr)[i_].resource_name.ptr);        \
        if (rc_ == 0)                                                                              \
            rc_ = admin_mark_duplicates((a), keys_, (count), (dup_out));                           \
        rc_;                                                                                       \
    })

static void override_put(struct override_set *s, char *name, char *value)
{
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->e[i].name, name) == 0) {
            s->e[i].value = value;
            return;
        }
    }
    LM_ASSERT(s->count < s->cap);
    s->e[s->count++] = (struct lm_config_entry){name, value};
}

static void override_del(struct override_set *s, const char *name)
{
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->e[i].name, name) == 0) {
            s->e[i] = s->e[--s->count];
            return;
        }
    }
}

/* Loads the current overrides of topic `name` into s with room for `extra` more. Returns 0 or
 * LM_E_NOMEM; *found tells whether the topic exists. */
static int override_load(const struct admin_env *env, const char *name, size_t extra,
                         struct kafka_arena *a, struct override_set *s, bool *found)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, name);
    int rc = 0;
    *found = t != NULL;
    s->count = 0;
    s->cap = (t ? t->config_count : 0) + extra + 1;
    s->e = kafka_arena_alloc_array(a, s->cap, sizeof(*s->e), 8);
    if (s->e == NULL)
        rc = LM_E_NOMEM;
    for (size_t i = 0; rc == 0 && t != NULL && i < t->config_count; i++) {
        char *k = NULL, *v = NULL;
        rc = admin_cstr(a, admin_kstr(t->configs[i].name), &k);
        if (rc == 0)
            rc = admin_cstr(a, admin_kstr(t->configs[i].value), &v);
        if (rc == 0)
            s->e[s->count++] = (struct lm_config_entry){k, v};
    }
    lm_meta_snapshot_release(snap);
    return rc;
}

/* The overrides of the topic a resource names, with room for `extra` more; *found false (and
 * UNKNOWN_TOPIC_OR_PARTITION set) when it does not exist. Returns 0 or LM_E_NOMEM. */
static int topic_overrides(const struct admin_env *env, struct kafka_str name, size_t extra,
                           struct kafka_arena *a, char **topic, struct override_set *s, bool *found,
                           int16_t *code, struct kafka_str *msg)
{
    int rc = admin_cstr(a, name, topic);
    if (rc == 0)
        rc = override_load(env, *topic ? *topic : "", extra, a, s, found);
    if (rc == 0 && !*found)
        rc = SET_ERR(a, *code, *msg, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                     "The topic '%s' does not exist.", *topic ? *topic : "");
    return rc;
}

/* Why a LIST value with allowed items is invalid, in Kafka 4.2's ConfigDef.ValidList words
 * (KIP-1161): an empty item, a repeated item, or NULL when some item is not allowed. */
static const char *list_fault(const char *value)
{
    const char *p = value, *end = value + strlen(value);
    while (p < end && list_blank(*p))
        p++;
    while (end > p && list_blank(end[-1]))
        end--;
    for (const char *item = p; item < end;) {
        const char *comma = memchr(item, ',', (size_t)(end - item));
        const char *stop = comma ? comma : end;
        const char *b = item, *e = stop;
        while (b < e && list_blank(*b))
            b++;
        while (e > b && list_blank(e[-1]))
            e--;
        if (b == e)
            return "values must not be empty";
        /* Repeated when the same item occurs again further on. */
        for (const char *q = comma ? comma + 1 : end; q < end;) {
            const char *qc = memchr(q, ',', (size_t)(end - q));
            const char *qs = qc ? qc : end;
            const char *qb = q, *qe = qs;
            while (qb < qe && list_blank(*qb))
                qb++;
            while (qe > qb && list_blank(qe[-1]))
                qe--;
            if (qe - qb == e - b && memcmp(qb, b, (size_t)(e - b)) == 0)
                return "values must not be duplicated";
            q = qc ? qc + 1 : end;
        }
        item = comma ? comma + 1 : end;
        if (comma != NULL && item == end)
            return "values must not be empty"; /* a trailing comma */
    }
    return NULL;
}

/* Sets an INVALID_CONFIG error for an invalid value, or an unknown name. */
static int invalid_value(struct kafka_arena *a, int16_t *code, struct kafka_str *msg,
                         const char *name, const char *value)
{
    const struct lm_topic_config_def *def = lm_topic_config_find(name);
    if (def == NULL)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG, "Unknown topic config name: %s", name);
    /* list_fault is quadratic in the items: only for values the store could hold. */
    const char *fault = def->type == LM_CONFIG_LIST && def->valid_values && value != NULL &&
                                strlen(value) <= LM_META_CONFIG_VALUE_MAX
                            ? list_fault(value)
                            : NULL;
    if (fault != NULL)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG, "Configuration '%s' %s.", name, fault);
    if (def->valid_values)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                       "Invalid value %s for configuration %s: must be one of %s", value, name,
                       def->valid_values);
    return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG, "Invalid value %s for configuration %s",
                   value, name);
}

/* Commits the new override set of a topic (unless validate_only). */
static int override_commit(const struct admin_env *env, const char *topic,
                           const struct override_set *s, bool validate_only, struct kafka_arena *a,
                           int16_t *code, struct kafka_str *msg)
{
    for (size_t i = 0; i < s->count; i++) {
        if (lm_topic_config_validate(s->e[i].name, s->e[i].value) != 0 ||
            strlen(s->e[i].value) > LM_META_CONFIG_VALUE_MAX)
            return invalid_value(a, code, msg, s->e[i].name, s->e[i].value);
    }
    if (validate_only)
        return 0;
    struct lm_meta_record r = {
        .type = LM_META_TOPIC_CONFIGS, .topic = topic, .configs = s->e, .config_count = s->count};
    int rc = admin_commit(env, &r, ADMIN_COMMIT_CONFIGS, a, code, msg);
    if (rc == LM_E_NOT_FOUND)
        return SET_ERR(a, *code, *msg, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                       "The topic '%s' does not exist.", topic);
    if (rc == LM_E_INVALID)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                       "The new configs of topic '%s' were rejected as invalid.", topic);
    if (rc != 0) {
        BLOG_ERROR("admin: metadata commit for topic %s failed: %s", topic, lm_strerror(rc));
        return SET_ERR(a, *code, *msg, KAFKA_KAFKA_STORAGE_ERROR,
                       "Could not write the metadata log: %s", lm_strerror(rc));
    }
    BLOG_INFO("admin: topic %s now has %zu config override(s)", topic, s->count);
    return 0;
}

/* ---------------------------------------------------------------- AlterConfigs */

typedef struct kafka_alter_configs_request_alter_configs_resource ac_resource;
typedef struct kafka_alter_configs_response_alter_configs_resource_response ac_result;

/* AlterConfigs replaces every override of the topic with the given set (KIP-133). */
static int ac_topic(const struct admin_env *env, bool validate_only, const ac_resource *r,
                    struct kafka_arena *a, ac_result *res)
{
    char *topic = NULL;
    int32_t n = r->configs_count < 0 ? 0 : r->configs_count;
    struct override_set s = {0};
    bool found = false;
    int rc = topic_overrides(env, r->resource_name, (size_t)n, a, &topic, &s, &found,
                             &res->error_code, &res->error_message);
    if (rc != 0 || !found)
        return rc;
    s.count = 0; /* replace, not merge */
    for (int32_t i = 0; i < n; i++) {
        char *name = NULL, *value = NULL;
        if (admin_cstr(a, r->configs[i].name, &name) != 0 ||
            admin_cstr(a, r->configs[i].value, &value) != 0)
            return LM_E_NOMEM;
        if (override_get(&s, name) != NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Error due to duplicate config keys");
        if (lm_topic_config_find(name) == NULL)
            return invalid_value(a, &res->error_code, &res->error_message, name, value);
        if (value == NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Null value not supported for : %s", name);
        override_put(&s, name, value);
    }
    return override_commit(env, topic, &s, validate_only, a, &res->error_code, &res->error_message);
}

/* The broker entity a resource names: this node or the cluster-wide default. Returns 0 or
 * LM_E_NOMEM; *node is set when *ok. */
static int broker_entity(const struct admin_env *env, struct kafka_str name, struct kafka_arena *a,
                         int16_t *code, struct kafka_str *msg, bool *ok, int32_t *node)
{
    bool is_default = false;
    int rc = broker_name_check(env, name, a, code, msg, ok, &is_default);
    *node = is_default ? LM_META_BROKER_DEFAULT : env->cfg->node_id;
    return rc;
}

/* Checks and commits the new dynamic config set of a broker entity (unless validate_only). */
static int broker_commit(const struct admin_env *env, int32_t node, const struct override_set *s,
                         bool validate_only, struct kafka_arena *a, int16_t *code,
                         struct kafka_str *msg)
{
    for (size_t i = 0; i < s->count; i++) {
        int v = lm_broker_dynamic_config_validate(s->e[i].name, s->e[i].value);
        if (v == LM_E_NOT_FOUND)
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_REQUEST,
                           "Cannot update these configs dynamically: Set(%s)", s->e[i].name);
        if (v != 0 || strlen(s->e[i].value) > LM_META_CONFIG_VALUE_MAX)
            return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                           "Invalid value %s for configuration %s", s->e[i].value, s->e[i].name);
    }
    if (validate_only)
        return 0;
    struct lm_meta_record r = {.type = LM_META_BROKER_CONFIGS,
                               .broker_id = node,
                               .configs = s->e,
                               .config_count = s->count};
    int rc = admin_commit(env, &r, ADMIN_COMMIT_CONFIGS, a, code, msg);
    if (rc == LM_E_INVALID || rc == LM_E_FULL)
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_CONFIG,
                       "The new dynamic broker configs were rejected as invalid.");
    if (rc != 0) {
        BLOG_ERROR("admin: metadata commit of broker configs failed: %s", lm_strerror(rc));
        return SET_ERR(a, *code, *msg, KAFKA_KAFKA_STORAGE_ERROR,
                       "Could not write the metadata log: %s", lm_strerror(rc));
    }
    if (node == LM_META_BROKER_DEFAULT)
        BLOG_INFO("admin: %zu cluster-wide dynamic broker config(s) now set", s->count);
    else
        BLOG_INFO("admin: %zu dynamic broker config(s) of node %d now set", s->count, node);
    return 0;
}

/* The set an AlterConfigs resource gives (it replaces the entity's configs, KIP-133). */
static int ac_set(const ac_resource *r, struct kafka_arena *a, ac_result *res,
                  struct override_set *s)
{
    int32_t n = r->configs_count < 0 ? 0 : r->configs_count;
    s->count = 0;
    s->cap = (size_t)n + 1;
    s->e = kafka_arena_alloc_array(a, s->cap, sizeof(*s->e), 8);
    if (s->e == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++) {
        char *name = NULL, *value = NULL;
        if (admin_cstr(a, r->configs[i].name, &name) != 0 ||
            admin_cstr(a, r->configs[i].value, &value) != 0)
            return LM_E_NOMEM;
        if (name == NULL || override_get(s, name) != NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Error due to duplicate config keys");
        if (value == NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Null value not supported for : %s", name);
        override_put(s, name, value);
    }
    return 0;
}

/* AlterConfigs on a broker entity: the given set replaces its dynamic configs (KIP-133). */
static int ac_broker(const struct admin_env *env, bool validate_only, const ac_resource *r,
                     struct kafka_arena *a, ac_result *res)
{
    bool ok = false;
    int32_t node = 0;
    int rc =
        broker_entity(env, r->resource_name, a, &res->error_code, &res->error_message, &ok, &node);
    if (rc != 0 || !ok)
        return rc;
    struct override_set s = {0};
    if ((rc = ac_set(r, a, res, &s)) != 0 || res->error_code != KAFKA_NONE)
        return rc;
    return broker_commit(env, node, &s, validate_only, a, &res->error_code, &res->error_message);
}

/* AlterConfigs on a group: the given set replaces its configs. */
static int ac_group(const struct admin_env *env, bool validate_only, const ac_resource *r,
                    struct kafka_arena *a, ac_result *res)
{
    char *group = NULL;
    int rc = group_name_check(r->resource_name, a, &res->error_code, &res->error_message, &group);
    if (rc != 0 || res->error_code != KAFKA_NONE)
        return rc;
    struct override_set s = {0};
    if ((rc = ac_set(r, a, res, &s)) != 0 || res->error_code != KAFKA_NONE)
        return rc;
    return group_commit(env, group, &s, validate_only, a, &res->error_code, &res->error_message);
}

int admin_alter_configs(const struct admin_env *env, int16_t version,
                        const struct kafka_alter_configs_request *rq,
                        struct kafka_alter_configs_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_ALTER_CONFIGS_MIN && version <= ADMIN_ALTER_CONFIGS_MAX);
    LM_ASSERT(env->meta != NULL && env->cfg != NULL);
    int32_t n = rq->resources_count < 0 ? 0 : rq->resources_count;
    if (ADMIN_RESULTS(a, rs, responses, n) != 0)
        return LM_E_NOMEM;
    bool *dup = NULL;
    int drc = RESOURCE_DUPLICATES(a, rq->resources, n, &dup);
    if (drc != 0)
        return drc;
    for (int32_t i = 0; i < n; i++) {
        const ac_resource *r = &rq->resources[i];
        ac_result *res = &rs->responses[i];
        *res = (ac_result){.error_code = KAFKA_NONE,
                           .error_message = KAFKA_STR_NULL,
                           .resource_type = r->resource_type,
                           .resource_name = r->resource_name};
        int rc = 0;
        if (dup[i]) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "Duplicate resource in request.");
        } else if (config_denied(env, r->resource_type, r->resource_name, AUTHZ_OP_ALTER_CONFIGS, a,
                                 &res->error_code, &res->error_message, &rc)) {
        } else if (r->resource_type == ADMIN_RESOURCE_TOPIC) {
            rc = ac_topic(env, rq->validate_only, r, a, res);
        } else if (r->resource_type == ADMIN_RESOURCE_BROKER) {
            rc = ac_broker(env, rq->validate_only, r, a, res);
        } else if (r->resource_type == ADMIN_RESOURCE_GROUP) {
            rc = ac_group(env, rq->validate_only, r, a, res);
        } else {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "Unsupported resource type: %d", r->resource_type);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

/* ---------------------------------------------------------------- IncrementalAlterConfigs */

typedef struct kafka_incremental_alter_configs_request_alter_configs_resource iac_resource;
typedef struct kafka_incremental_alter_configs_response_alter_configs_resource_response iac_result;

/* Splits a list value at commas and drops empty items, as Kafka's controller does
 * (ConfigurationControlManager.getParts): items are not trimmed. Items point into a copy in
 * the arena. */
static int list_split(struct kafka_arena *a, const char *value, char ***items, size_t *count)
{
    size_t cap = 1;
    for (const char *p = value; *p; p++)
        cap += *p == ',';
    char **it = kafka_arena_alloc_array(a, cap, sizeof(char *), 8);
    char *copy = NULL;
    if (it == NULL || admin_cstr(a, admin_kstr(value), &copy) != 0)
        return LM_E_NOMEM;
    size_t n = 0;
    char *p = copy;
    while (p != NULL) {
        char *comma = strchr(p, ',');
        if (comma)
            *comma = '\0';
        if (*p != '\0') {
            LM_ASSERT(n < cap);
            it[n++] = p;
        }
        p = comma ? comma + 1 : NULL;
    }
    *items = it;
    *count = n;
    return 0;
}

/* KIP-339 on a list value, exactly as Kafka's controller applies it: APPEND adds each item of
 * arg that the list does not hold yet, in order; SUBTRACT removes, for each item of arg, its
 * first occurrence. The base is the topic's override, else Kafka's static default of the
 * config (a broker-level setting of the synonym does not seed it). */
static int list_edit(struct kafka_arena *a, const char *base, const char *arg, bool append,
                     char **out)
{
    char **have = NULL, **delta = NULL;
    size_t nh = 0, nd = 0;
    int rc = list_split(a, base, &have, &nh);
    if (rc == 0)
        rc = list_split(a, arg, &delta, &nd);
    if (rc != 0)
        return rc;
    char **res = kafka_arena_alloc_array(a, nh + nd + 1, sizeof(char *), 8);
    if (res == NULL)
        return LM_E_NOMEM;
    size_t nr = nh;
    memcpy(res, have, nh * sizeof(char *));
    for (size_t k = 0; k < nd; k++) {
        size_t at = nr;
        for (size_t i = 0; i < nr && at == nr; i++) {
            if (strcmp(res[i], delta[k]) == 0)
                at = i;
        }
        if (append && at == nr) {
            res[nr++] = delta[k];
        } else if (!append && at < nr) {
            memmove(res + at, res + at + 1, (nr - at - 1) * sizeof(char *));
            nr--;
        }
    }
    LM_ASSERT(nr <= nh + nd);
    size_t len = 1;
    for (size_t i = 0; i < nr; i++)
        len += strlen(res[i]) + 1;
    char *buf = kafka_arena_alloc(a, len, 1);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t pos = 0;
    for (size_t i = 0; i < nr; i++) {
        if (i > 0)
            buf[pos++] = ',';
        size_t l = strlen(res[i]);
        memcpy(buf + pos, res[i], l);
        pos += l;
    }
    LM_ASSERT(pos < len);
    buf[pos] = '\0';
    *out = buf;
    return 0;
}

/* The definition behind a dynamic broker key that is a topic default (its type and Kafka's
 * default), or NULL. */
static const struct lm_topic_config_def *broker_key_def(const char *name)
{
    size_t n = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&n);
    for (size_t i = 0; i < n; i++)
        if (defs[i].broker_synonym != NULL && strcmp(defs[i].broker_synonym, name) == 0)
            return &defs[i];
    return NULL;
}

/* Applies a resource's KIP-339 operations to s, as Kafka's controller does: every operation
 * is checked and applied to the copy; nothing is stored unless all pass. For a topic (cfg
 * NULL) names must be topic configs; for a broker entity the commit checks them, and APPEND /
 * SUBTRACT start from the entity's value, else the static one (cfg), else Kafka's default.
 * Returns 0 or LM_E_NOMEM; an error goes to res. */
static int iac_apply(const iac_resource *r, bool group, const struct broker_config *cfg,
                     struct override_set *s, struct kafka_arena *a, iac_result *res)
{
    int32_t n = r->configs_count < 0 ? 0 : r->configs_count;
    bool *dup = NULL;
    int rc = admin_mark_duplicate_names(a, n > 0 ? &r->configs[0].name : NULL,
                                        sizeof(r->configs[0]), n, &dup);
    if (rc != 0)
        return rc;
    for (int32_t i = 0; i < n; i++) {
        if (dup[i])
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Error due to duplicate config keys");
    }
    for (int32_t i = 0; i < n; i++) {
        char *name = NULL, *value = NULL;
        if (admin_cstr(a, r->configs[i].name, &name) != 0 ||
            admin_cstr(a, r->configs[i].value, &value) != 0)
            return LM_E_NOMEM;
        int8_t op = r->configs[i].config_operation;
        if (op < ADMIN_OP_SET || op > ADMIN_OP_SUBTRACT || name == NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Unknown config operation %d for %s", op, name ? name : "");
        if (op == ADMIN_OP_DELETE) {
            /* Kafka's controller validates the resulting set only: deleting a name that is
             * not set (even an unknown one) is a no-op. */
            override_del(s, name);
            continue;
        }
        /* a group's names and values are checked at the commit (none is a LIST) */
        const struct lm_topic_config_def *def = group         ? NULL
                                                : cfg == NULL ? lm_topic_config_find(name)
                                                              : broker_key_def(name);
        if (def == NULL && cfg == NULL && !group)
            return invalid_value(a, &res->error_code, &res->error_message, name, value);
        if (value == NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Null value not supported for : %s", name);
        if (op == ADMIN_OP_SET) {
            override_put(s, name, value);
            continue;
        }
        if (def == NULL || def->type != LM_CONFIG_LIST)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_CONFIG,
                           "Can't %s to key %s because its type is not LIST.",
                           op == ADMIN_OP_APPEND ? "APPEND" : "SUBTRACT", name);
        const char *base = override_get(s, name);
        if (base == NULL && cfg != NULL)
            base = broker_config_get(cfg, name);
        char *edited = NULL;
        rc = list_edit(a, base ? base : def->default_value, value, op == ADMIN_OP_APPEND, &edited);
        if (rc != 0)
            return rc;
        override_put(s, name, edited);
    }
    return 0;
}

static int iac_topic(const struct admin_env *env, bool validate_only, const iac_resource *r,
                     struct kafka_arena *a, iac_result *res)
{
    char *topic = NULL;
    int32_t n = r->configs_count < 0 ? 0 : r->configs_count;
    struct override_set s = {0};
    bool found = false;
    int rc = topic_overrides(env, r->resource_name, (size_t)n, a, &topic, &s, &found,
                             &res->error_code, &res->error_message);
    if (rc != 0 || !found)
        return rc;
    if ((rc = iac_apply(r, false, NULL, &s, a, res)) != 0 || res->error_code != KAFKA_NONE)
        return rc;
    return override_commit(env, topic, &s, validate_only, a, &res->error_code, &res->error_message);
}

/* IncrementalAlterConfigs on a broker entity (KIP-339). */
static int iac_broker(const struct admin_env *env, bool validate_only, const iac_resource *r,
                      struct kafka_arena *a, iac_result *res)
{
    bool ok = false;
    int32_t node = 0;
    int rc =
        broker_entity(env, r->resource_name, a, &res->error_code, &res->error_message, &ok, &node);
    if (rc != 0 || !ok)
        return rc;
    int32_t n = r->configs_count < 0 ? 0 : r->configs_count;
    struct override_set s = {0};
    if ((rc = broker_override_load(env, node, (size_t)n, a, &s)) != 0)
        return rc;
    if ((rc = iac_apply(r, false, env->cfg, &s, a, res)) != 0 || res->error_code != KAFKA_NONE)
        return rc;
    return broker_commit(env, node, &s, validate_only, a, &res->error_code, &res->error_message);
}

/* IncrementalAlterConfigs on a group (Kafka's GROUP resources). */
static int iac_group(const struct admin_env *env, bool validate_only, const iac_resource *r,
                     struct kafka_arena *a, iac_result *res)
{
    char *group = NULL;
    int rc = group_name_check(r->resource_name, a, &res->error_code, &res->error_message, &group);
    if (rc != 0 || res->error_code != KAFKA_NONE)
        return rc;
    int32_t n = r->configs_count < 0 ? 0 : r->configs_count;
    struct override_set s = {0};
    if ((rc = group_override_load(env, group, (size_t)n, a, &s)) != 0)
        return rc;
    if ((rc = iac_apply(r, true, NULL, &s, a, res)) != 0 || res->error_code != KAFKA_NONE)
        return rc;
    return group_commit(env, group, &s, validate_only, a, &res->error_code, &res->error_message);
}

int admin_incremental_alter_configs(const struct admin_env *env, int16_t version,
                                    const struct kafka_incremental_alter_configs_request *rq,
                                    struct kafka_incremental_alter_configs_response *rs,
                                    struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_INCREMENTAL_ALTER_CONFIGS_MIN &&
              version <= ADMIN_INCREMENTAL_ALTER_CONFIGS_MAX);
    LM_ASSERT(env->meta != NULL && env->cfg != NULL);
    int32_t n = rq->resources_count < 0 ? 0 : rq->resources_count;
    if (ADMIN_RESULTS(a, rs, responses, n) != 0)
        return LM_E_NOMEM;
    bool *dup = NULL;
    int drc = RESOURCE_DUPLICATES(a, rq->resources, n, &dup);
    if (drc != 0)
        return drc;
    for (int32_t i = 0; i < n; i++) {
        const iac_resource *r = &rq->resources[i];
        iac_result *res = &rs->responses[i];
        *res = (iac_result){.error_code = KAFKA_NONE,
                            .error_message = KAFKA_STR_NULL,
                            .resource_type = r->resource_type,
                            .resource_name = r->resource_name};
        int rc = 0;
        if (dup[i]) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "Duplicate resource in request.");
        } else if (config_denied(env, r->resource_type, r->resource_name, AUTHZ_OP_ALTER_CONFIGS, a,
                                 &res->error_code, &res->error_message, &rc)) {
        } else if (r->resource_type == ADMIN_RESOURCE_TOPIC) {
            rc = iac_topic(env, rq->validate_only, r, a, res);
        } else if (r->resource_type == ADMIN_RESOURCE_BROKER) {
            rc = iac_broker(env, rq->validate_only, r, a, res);
        } else if (r->resource_type == ADMIN_RESOURCE_BROKER_LOGGER) {
            rc = admin_logger_alter(env, rq->validate_only, r, a, &res->error_code,
                                    &res->error_message);
        } else if (r->resource_type == ADMIN_RESOURCE_GROUP) {
            rc = iac_group(env, rq->validate_only, r, a, res);
        } else {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "Unsupported resource type: %d", r->resource_type);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}
