/* CreateTopics (19), DeleteTopics (20) and CreatePartitions (37) on a single node: checks as
 * Kafka's controller does (ReplicationControlManager in Kafka 4.x), then one metadata record
 * per topic committed to the metadata store. Error messages say what was wrong; the codes are
 * Kafka's. */
#include <stdio.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* Sets an error code and a formatted message; returns 0 or LM_E_NOMEM. */
#define SET_ERR(a, code_field, msg_field, code, ...)                                               \
    ((code_field) = (code), admin_fmt((a), &(msg_field), __VA_ARGS__))

static bool uuid_zero(const struct kafka_uuid *u)
{
    for (int i = 0; i < 16; i++) {
        if (u->b[i] != 0)
            return false;
    }
    return true;
}

/* Kafka's Topic.hasCollision: '.' and '_' collide in metric names, so "a.b" and "a_b" cannot
 * both exist. Returns the existing topic that collides with name, or NULL. */
static const char *topic_collision(const struct lm_meta_state *s, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < s->topic_count; i++) {
        const char *other = s->topics[i].name;
        if (strlen(other) != n || strcmp(other, name) == 0)
            continue;
        bool same = true;
        for (size_t k = 0; k < n && same; k++) {
            char x = name[k] == '.' ? '_' : name[k];
            char y = other[k] == '.' ? '_' : other[k];
            same = x == y;
        }
        if (same)
            return other;
    }
    return NULL;
}

/* Maps a commit failure to a Kafka error with a message. */
static int commit_error(struct kafka_arena *a, int rc, const char *topic, int16_t *code,
                        struct kafka_str *msg)
{
    switch (rc) {
    case LM_E_EXISTS:
        return SET_ERR(a, *code, *msg, KAFKA_TOPIC_ALREADY_EXISTS, "Topic '%s' already exists.",
                       topic);
    case LM_E_NOT_FOUND:
        return SET_ERR(a, *code, *msg, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                       "Topic '%s' does not exist.", topic);
    case LM_E_INVALID:
        return SET_ERR(a, *code, *msg, KAFKA_INVALID_REQUEST,
                       "The metadata change for topic '%s' was rejected as invalid.", topic);
    case LM_E_FULL:
        /* A concurrent change took the room the pre-check saw (partition_limit_error). */
        return SET_ERR(a, *code, *msg, KAFKA_POLICY_VIOLATION,
                       "Topic '%s': the node would exceed max.broker.partitions.", topic);
    default:
        BLOG_ERROR("admin: metadata commit for topic %s failed: %s", topic, lm_strerror(rc));
        return SET_ERR(a, *code, *msg, KAFKA_KAFKA_STORAGE_ERROR,
                       "Could not write the metadata log: %s", lm_strerror(rc));
    }
}

/* The per-node partition limit (KIP-578's max.broker.partitions; Kafka 4 has no such
 * bound, so one request could make the node open any number of logs). Answered as Kafka's
 * policy refusals are (POLICY_VIOLATION with a message), validate_only alike. Sets the error
 * and *failed when adding `added` partitions of `rf` replicas would pass it. A single node
 * holds every partition; in a cluster a node holds the replicas placed on it, and placement
 * spreads new replicas evenly over the live nodes, so the check is the busiest live node's
 * replicas plus its even share of the new ones, rounded up. A single node's commit checks
 * again atomically (lm_meta_store_commit: LM_E_FULL). */
static int partition_limit_error(const struct admin_env *env, const char *topic, int64_t added,
                                 int16_t rf, struct kafka_arena *a, int16_t *code,
                                 struct kafka_str *msg, bool *failed)
{
    *failed = false;
    int64_t limit = lm_meta_store_partition_limit(env->meta);
    if (limit <= 0 || added <= 0)
        return 0;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    int64_t total;
    if (env->defer == NULL) {
        total = lm_meta_state_partition_total(st) + added;
    } else {
        int64_t *counts = calloc(st->broker_count > 0 ? st->broker_count : 1, sizeof(*counts));
        if (counts == NULL) {
            lm_meta_snapshot_release(snap);
            return LM_E_NOMEM;
        }
        int64_t most = lm_meta_state_busiest_replicas(st, counts);
        int64_t live = 0;
        for (size_t i = 0; i < st->broker_count; i++)
            live += !st->brokers[i].fenced;
        free(counts);
        /* no live node: placement refuses the request itself */
        total = live > 0 ? most + (added * (rf > 0 ? rf : 1) + live - 1) / live : 0;
    }
    lm_meta_snapshot_release(snap);
    if (total <= limit)
        return 0;
    *failed = true;
    return SET_ERR(a, *code, *msg, KAFKA_POLICY_VIOLATION,
                   "Adding %lld partition(s) for topic '%s' would give %s %lld "
                   "partitions, more than max.broker.partitions=%lld.",
                   (long long)added, topic, env->defer == NULL ? "this node" : "a node",
                   (long long)total, (long long)limit);
}

/* ---------------------------------------------------------------- CreateTopics */

struct create_plan {
    char *name;
    int32_t partitions;
    int16_t replication;
    struct lm_config_entry *configs;
    size_t config_count;
    int32_t *assign; /* a cluster's manual assignment (partitions x replication), or NULL */
};

/* A cluster's registered, unfenced node (manual assignments may name only those). */
static bool cluster_node_live(const struct admin_env *env, int32_t id)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_broker *b = lm_meta_state_broker(&snap->state, id);
    bool live = b != NULL && !b->fenced;
    lm_meta_snapshot_release(snap);
    return live;
}

static int32_t cluster_live_count(const struct admin_env *env)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    int32_t n = 0;
    for (size_t i = 0; i < snap->state.broker_count; i++)
        n += !snap->state.brokers[i].fenced;
    lm_meta_snapshot_release(snap);
    return n;
}

/* The configs a created topic reports in CreateTopics v5+ (KIP-525): every topic config with
 * its effective value and source, as DescribeConfigs would show it. */
static int create_result_configs(const struct create_plan *p,
                                 const struct admin_broker_entries *brk, struct kafka_arena *a,
                                 struct kafka_create_topics_response_creatable_topic_result *res)
{
    size_t ndefs = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&ndefs);
    res->configs = kafka_arena_alloc_array(a, ndefs, sizeof(*res->configs), 8);
    if (res->configs == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < ndefs; i++) {
        struct admin_topic_value tv;
        int rc = admin_topic_config_value(&defs[i], p->configs, p->config_count, brk, a, &tv);
        if (rc != 0)
            return rc;
        res->configs[i] = (struct kafka_create_topics_response_creatable_topic_configs){
            .name = admin_kstr(defs[i].name),
            .value = admin_kstr(tv.value),
            .read_only = false,
            .config_source = (int8_t)tv.source,
            .is_sensitive = false,
        };
    }
    res->configs_count = (int32_t)ndefs;
    return 0;
}

/* Checks the partition count and replication factor, or the manual assignment, of one topic.
 * Returns 0 with the plan filled or an error set in res (*failed = true). */
static int create_check_layout(const struct admin_env *env,
                               const struct kafka_create_topics_request_creatable_topic *t,
                               struct create_plan *p, struct kafka_arena *a,
                               struct kafka_create_topics_response_creatable_topic_result *res,
                               bool *failed)
{
    int32_t node = env->cfg->node_id;
    *failed = true;
    if (t->assignments_count > 0) {
        if (t->num_partitions != -1 || t->replication_factor != -1)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "A manual partition assignment was specified, but numPartitions or "
                           "replicationFactor was not set to -1.");
        int32_t n = t->assignments_count;
        if (n > LM_META_PARTITIONS_MAX)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                           "%d partitions is more than the limit of %d.", n,
                           LM_META_PARTITIONS_MAX);
        bool *seen = kafka_arena_alloc_array(a, (size_t)n, sizeof(bool), 1);
        if (seen == NULL)
            return LM_E_NOMEM;
        int32_t replicas = -1;
        if (env->defer != NULL) {
            int32_t width = t->assignments[0].broker_ids_count;
            if (width < 1 || width > LM_META_REPLICATION_MAX)
                return SET_ERR(
                    a, res->error_code, res->error_message, KAFKA_INVALID_REPLICATION_FACTOR,
                    "Replication factor %d is outside 1..%d.", width, LM_META_REPLICATION_MAX);
            p->assign = kafka_arena_alloc_array(a, (size_t)n * (size_t)width, sizeof(int32_t), 4);
            if (p->assign == NULL)
                return LM_E_NOMEM;
        }
        for (int32_t i = 0; i < n; i++) {
            const struct kafka_create_topics_request_creatable_replica_assignment *as =
                &t->assignments[i];
            if (as->partition_index < 0 || as->partition_index >= n || seen[as->partition_index])
                return SET_ERR(a, res->error_code, res->error_message,
                               KAFKA_INVALID_REPLICA_ASSIGNMENT,
                               "Partitions should be a consecutive 0-based integer sequence; "
                               "got partition %d among %d assignments.",
                               as->partition_index, n);
            seen[as->partition_index] = true;
            if (as->broker_ids_count <= 0)
                return SET_ERR(a, res->error_code, res->error_message,
                               KAFKA_INVALID_REPLICA_ASSIGNMENT,
                               "The manual partition assignment of partition %d is empty.",
                               as->partition_index);
            for (int32_t k = 0; env->defer != NULL && k < as->broker_ids_count; k++) {
                if (!cluster_node_live(env, as->broker_ids[k]))
                    return SET_ERR(a, res->error_code, res->error_message,
                                   KAFKA_INVALID_REPLICA_ASSIGNMENT,
                                   "The manual partition assignment includes broker %d, but no "
                                   "such broker is registered and alive.",
                                   as->broker_ids[k]);
                for (int32_t j = 0; j < k; j++)
                    if (as->broker_ids[j] == as->broker_ids[k])
                        return SET_ERR(a, res->error_code, res->error_message,
                                       KAFKA_INVALID_REPLICA_ASSIGNMENT,
                                       "The manual partition assignment of partition %d names "
                                       "broker %d more than once.",
                                       as->partition_index, as->broker_ids[k]);
                if (as->broker_ids_count != t->assignments[0].broker_ids_count)
                    break; /* reported below: every row has the same count */
                p->assign[(size_t)as->partition_index * (size_t)as->broker_ids_count + (size_t)k] =
                    as->broker_ids[k];
            }
            for (int32_t k = 0; env->defer == NULL && k < as->broker_ids_count; k++) {
                if (as->broker_ids[k] != node)
                    return SET_ERR(a, res->error_code, res->error_message,
                                   KAFKA_INVALID_REPLICA_ASSIGNMENT,
                                   "The manual partition assignment includes broker %d, but no "
                                   "such broker is registered (this cluster has broker %d).",
                                   as->broker_ids[k], node);
                if (k > 0)
                    return SET_ERR(a, res->error_code, res->error_message,
                                   KAFKA_INVALID_REPLICA_ASSIGNMENT,
                                   "The manual partition assignment of partition %d names "
                                   "broker %d more than once.",
                                   as->partition_index, node);
            }
            if (replicas != -1 && replicas != as->broker_ids_count)
                return SET_ERR(a, res->error_code, res->error_message,
                               KAFKA_INVALID_REPLICA_ASSIGNMENT,
                               "All partitions in the manual assignment must have the same "
                               "number of replicas.");
            replicas = as->broker_ids_count;
        }
        LM_ASSERT(env->defer != NULL || replicas == 1);
        p->partitions = n;
        p->replication = (int16_t)replicas;
        *failed = false;
        return 0;
    }
    /* KIP-464: -1 means the broker default. The Java client sends it from v4 only, but Kafka's
     * broker takes it at every version and kafkajs sends it at v3 (its default). */
    int32_t np = t->num_partitions;
    int16_t rf = t->replication_factor;
    if (np == -1)
        np = env->cfg->num_partitions;
    if (rf == -1)
        rf = env->cfg->default_replication_factor;
    if (np <= 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                       "Number of partitions was set to an invalid non-positive value (%d).",
                       t->num_partitions);
    if (np > LM_META_PARTITIONS_MAX)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                       "%d partitions is more than the limit of %d.", np, LM_META_PARTITIONS_MAX);
    if (rf <= 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICATION_FACTOR,
                       "Replication factor must be larger than 0, or -1 to use the default "
                       "value.");
    if (env->defer != NULL && rf > cluster_live_count(env))
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICATION_FACTOR,
                       "Unable to replicate the partition %d time(s): The target replication "
                       "factor of %d cannot be reached because only %d broker(s) are "
                       "registered.",
                       rf, rf, cluster_live_count(env));
    if (rf > 1 && env->defer == NULL)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICATION_FACTOR,
                       "Unable to replicate the partition %d time(s): The target replication "
                       "factor of %d cannot be reached because only 1 broker(s) are "
                       "registered.",
                       rf, rf);
    p->partitions = np;
    p->replication = rf;
    *failed = false;
    return 0;
}

/* Checks and copies the config overrides of one topic (names known, values valid, no null
 * value, no name twice). */
static int create_check_configs(const struct kafka_create_topics_request_creatable_topic *t,
                                struct create_plan *p, struct kafka_arena *a,
                                struct kafka_create_topics_response_creatable_topic_result *res,
                                bool *failed)
{
    *failed = true;
    int32_t n = t->configs_count < 0 ? 0 : t->configs_count;
    p->configs = kafka_arena_alloc_array(a, (size_t)(n > 0 ? n : 1), sizeof(*p->configs), 8);
    if (p->configs == NULL)
        return LM_E_NOMEM;
    p->config_count = 0;
    for (int32_t i = 0; i < n; i++) {
        char *name = NULL, *value = NULL;
        if (admin_cstr(a, t->configs[i].name, &name) != 0 ||
            admin_cstr(a, t->configs[i].value, &value) != 0)
            return LM_E_NOMEM;
        LM_ASSERT(name != NULL);
        if (value == NULL)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                           "Null value not supported for topic configs: %s", name);
        for (size_t k = 0; k < p->config_count; k++) {
            if (strcmp(p->configs[k].name, name) == 0)
                return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                               "Duplicate topic config name: %s", name);
        }
        int rc = lm_topic_config_validate(name, value);
        if (rc == LM_E_NOT_FOUND)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_CONFIG,
                           "Unknown topic config name: %s", name);
        if (rc != 0 || strlen(value) > LM_META_CONFIG_VALUE_MAX) {
            const struct lm_topic_config_def *def = lm_topic_config_find(name);
            LM_ASSERT(def != NULL);
            if (def->valid_values != NULL)
                return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_CONFIG,
                               "Invalid value %s for configuration %s: must be one of %s", value,
                               name, def->valid_values);
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_CONFIG,
                           "Invalid value %s for configuration %s", value, name);
        }
        p->configs[p->config_count++] = (struct lm_config_entry){name, value};
    }
    *failed = false;
    return 0;
}

static int create_one(const struct admin_env *env, int16_t version, bool validate_only,
                      const struct kafka_create_topics_request_creatable_topic *t, bool dup,
                      const struct admin_broker_entries *brk, struct kafka_arena *a,
                      struct kafka_create_topics_response_creatable_topic_result *res)
{
    struct create_plan p = {0};
    int rc = admin_cstr(a, t->name, &p.name);
    if (rc != 0)
        return rc;
    LM_ASSERT(p.name != NULL);
    if (dup)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                       "Duplicate topic name.");
    if (lm_meta_topic_name_valid(p.name) != 0 || strlen(p.name) != (size_t)t->name.len)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_TOPIC_EXCEPTION,
                       "Topic name '%s' is illegal: it must be 1 to %d characters of ASCII "
                       "alphanumerics, '.', '_' and '-', and not '.' or '..'.",
                       p.name, LM_TOPIC_NAME_MAX);

    /* Existence before layout and configs (Kafka's controller order), against the newest
     * state: earlier topics of this request included. In a cluster this node's image may lag
     * the controller's (a deletion it has not applied yet): there the controller's check when
     * the record commits answers TOPIC_ALREADY_EXISTS, never this image (Kafka's brokers
     * forward CreateTopics to the controller). */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const char *collides = NULL;
    bool exists = env->defer == NULL && lm_meta_state_find(&snap->state, p.name) != NULL;
    if (!exists)
        collides = topic_collision(&snap->state, p.name);
    char other[LM_TOPIC_NAME_MAX + 1] = "";
    if (collides)
        snprintf(other, sizeof(other), "%s", collides);
    lm_meta_snapshot_release(snap);
    if (exists)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_TOPIC_ALREADY_EXISTS,
                       "Topic '%s' already exists.", p.name);
    if (collides)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_TOPIC_EXCEPTION,
                       "Topic '%s' collides with existing topic: %s", p.name, other);

    bool failed = false;
    rc = create_check_layout(env, t, &p, a, res, &failed);
    if (rc != 0 || failed)
        return rc;
    rc = create_check_configs(t, &p, a, res, &failed);
    if (rc != 0 || failed)
        return rc;
    rc = partition_limit_error(env, p.name, p.partitions, p.replication, a, &res->error_code,
                               &res->error_message, &failed);
    if (rc != 0 || failed)
        return rc;

    if (!validate_only) {
        bool refused = false;
        rc = admin_mutations_check(env, version >= 6, a, &res->error_code, &res->error_message,
                                   &refused);
        if (rc != 0 || refused)
            return rc;
        struct lm_meta_record r = {
            .type = LM_META_TOPIC_CREATE,
            .topic = p.name,
            .partition_count = p.partitions,
            .configs = p.configs,
            .config_count = p.config_count,
        };
        r.replicas = p.assign;
        /* a cluster's assignment gets this factor (admin_commit places it when not manual) */
        r.replication_factor = env->defer != NULL ? p.replication : 0;
        rc = lm_meta_new_topic_id(r.topic_id);
        if (rc == 0)
            rc =
                admin_commit(env, &r, ADMIN_COMMIT_TOPIC, a, &res->error_code, &res->error_message);
        if (rc != 0)
            return commit_error(a, rc, p.name, &res->error_code, &res->error_message);
        memcpy(res->topic_id.b, r.topic_id, 16);
        admin_mutations_record(env, p.partitions);
        BLOG_INFO("admin: created topic %s with %d partition(s), %zu config override(s)", p.name,
                  p.partitions, p.config_count);
    }
    res->num_partitions = p.partitions;
    res->replication_factor = p.replication;
    if (version >= 5)
        return create_result_configs(&p, brk, a, res);
    return 0;
}

int admin_create_topics(const struct admin_env *env, int16_t version,
                        const struct kafka_create_topics_request *rq,
                        struct kafka_create_topics_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_CREATE_TOPICS_MIN && version <= ADMIN_CREATE_TOPICS_MAX);
    LM_ASSERT(env->meta != NULL && env->cfg != NULL);
    int32_t n = rq->topics_count < 0 ? 0 : rq->topics_count;
    if (ADMIN_RESULTS(a, rs, topics, n) != 0)
        return LM_E_NOMEM;
    struct admin_broker_entries brk;
    int rc = admin_broker_topic_entries(env, a, &brk);
    if (rc != 0)
        return rc;
    bool *dup = NULL;
    rc = admin_mark_duplicate_names(a, n > 0 ? &rq->topics[0].name : NULL, sizeof(rq->topics[0]), n,
                                    &dup);
    if (rc != 0)
        return rc;
    bool create_cluster =
        admin_allowed(env, AUTHZ_OP_CREATE, AUTHZ_RES_CLUSTER, admin_kstr(AUTHZ_CLUSTER_NAME));
    for (int32_t i = 0; i < n; i++) {
        struct kafka_create_topics_response_creatable_topic_result *res = &rs->topics[i];
        *res = (struct kafka_create_topics_response_creatable_topic_result){
            .name = rq->topics[i].name,
            .error_code = KAFKA_NONE,
            .error_message = KAFKA_STR_NULL,
            .num_partitions = -1,
            .replication_factor = -1,
            .configs = NULL,
            .configs_count = -1,
        };
        /* ControllerApis.createTopics: CREATE on the cluster or on the topic */
        if (!dup[i] && !create_cluster &&
            !admin_allowed(env, AUTHZ_OP_CREATE, AUTHZ_RES_TOPIC, rq->topics[i].name)) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_TOPIC_AUTHORIZATION_FAILED,
                         "Authorization failed.");
            if (rc != 0)
                return rc;
            continue;
        }
        rc = create_one(env, version, rq->validate_only, &rq->topics[i], dup[i], &brk, a, res);
        if (rc != 0)
            return rc;
    }
    rs->throttle_time_ms = admin_mutations_throttle_ms(env);
    return 0;
}

/* ---------------------------------------------------------------- DeleteTopics */

static bool delete_topics_enabled(const struct broker_config *cfg)
{
    const char *v = broker_config_get(cfg, "delete.topic.enable");
    return v == NULL || strcmp(v, "false") != 0;
}

/* Deletes topic name, the incarnation id (the one the request named, or the one this node's
 * image has under the name): the record carries it so that the controller deletes that
 * incarnation only, never a topic of that name created since (this node's image may lag, and
 * a submission retried after its first attempt committed must not delete the next one),
 * answering UNKNOWN_TOPIC_ID (by_id) or UNKNOWN_TOPIC_OR_PARTITION otherwise. */
static int delete_one(const struct admin_env *env, const char *name, const uint8_t id[16],
                      bool by_id, int32_t partitions, bool strict, struct kafka_arena *a,
                      struct kafka_delete_topics_response_deletable_topic_result *res)
{
    /* The group coordinator's log: deleting it would lose every committed offset and break
     * group routing (Kafka's tools refuse it too). */
    if (strcmp(name, ADMIN_OFFSETS_TOPIC) == 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                       "Internal topic %s cannot be deleted.", name);
    bool refused = false;
    int rc = admin_mutations_check(env, strict, a, &res->error_code, &res->error_message, &refused);
    if (rc != 0 || refused)
        return rc;
    struct lm_meta_record r = {.type = LM_META_TOPIC_DELETE, .topic = name};
    memcpy(r.topic_id, id, 16);
    rc = admin_commit(env, &r, by_id ? ADMIN_COMMIT_TOPIC_ID : ADMIN_COMMIT_TOPIC, a,
                      &res->error_code, &res->error_message);
    if (rc == LM_E_NOT_FOUND && by_id)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_TOPIC_ID,
                       "This server does not know this topic id.");
    if (rc == LM_E_NOT_FOUND)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                       "This server does not host this topic: %s", name);
    if (rc != 0)
        return commit_error(a, rc, name, &res->error_code, &res->error_message);
    admin_mutations_record(env, partitions);
    if (name[0] != '\0')
        BLOG_INFO("admin: deleted topic %s", name);
    return 0;
}

int admin_delete_topics(const struct admin_env *env, int16_t version,
                        const struct kafka_delete_topics_request *rq,
                        struct kafka_delete_topics_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_DELETE_TOPICS_MIN && version <= ADMIN_DELETE_TOPICS_MAX);
    LM_ASSERT(env->meta != NULL);
    /* v6 names topics by name or id in `topics`; earlier versions by name in `topic_names`. */
    bool by_state = version >= 6;
    int32_t n = by_state ? rq->topics_count : rq->topic_names_count;
    if (n < 0)
        n = 0;
    if (ADMIN_RESULTS(a, rs, responses, n) != 0)
        return LM_E_NOMEM;
    bool enabled = delete_topics_enabled(env->cfg);
    /* Duplicates: names among the entries given by name, ids among those given by id only. */
    struct kafka_str *keys =
        kafka_arena_alloc_array(a, (size_t)(n > 0 ? n : 1) * 2, sizeof(*keys), 8);
    if (keys == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++) {
        struct kafka_str nm = by_state ? rq->topics[i].name : rq->topic_names[i];
        /* Distinct placeholders so entries without a name (or id) never match each other. */
        int rc = admin_fmt(a, &keys[i], "%c%d", 0, i);
        if (rc == 0 && nm.len >= 0)
            keys[i] = nm;
        if (rc == 0)
            rc = admin_fmt(a, &keys[n + i], "%c%d", 0, i);
        if (rc != 0)
            return rc;
        if (by_state && nm.len < 0)
            keys[n + i] = (struct kafka_str){(const char *)rq->topics[i].topic_id.b, 16};
    }
    bool *dup_name = NULL, *dup_id = NULL;
    int drc = admin_mark_duplicates(a, keys, n, &dup_name);
    if (drc == 0)
        drc = admin_mark_duplicates(a, keys + n, n, &dup_id);
    if (drc != 0)
        return drc;
    for (int32_t i = 0; i < n; i++) {
        struct kafka_delete_topics_response_deletable_topic_result *res = &rs->responses[i];
        struct kafka_str name = by_state ? rq->topics[i].name : rq->topic_names[i];
        struct kafka_uuid id = {{0}};
        if (by_state)
            id = rq->topics[i].topic_id;
        *res = (struct kafka_delete_topics_response_deletable_topic_result){
            .name = name,
            .topic_id = id,
            .error_code = KAFKA_NONE,
            .error_message = KAFKA_STR_NULL};
        bool has_name = name.len >= 0, has_id = !uuid_zero(&id);
        int rc = 0;
        bool dup = has_name ? dup_name[i] : dup_id[i];
        if (!enabled) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_TOPIC_DELETION_DISABLED,
                         "Topic deletion is disabled (delete.topic.enable=false).");
        } else if (has_name && has_id) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "You may not specify both topic name and topic id.");
        } else if (!has_name && !has_id) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         "Neither topic name nor topic id was specified.");
        } else if (dup) {
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                         has_name ? "Duplicate topic name." : "Duplicate topic id.");
        } else if (has_name && !admin_allowed(env, AUTHZ_OP_DELETE, AUTHZ_RES_TOPIC, name)) {
            /* ControllerApis.deleteTopics: DELETE on the topic, checked before existence */
            rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_TOPIC_AUTHORIZATION_FAILED,
                         "Authorization failed.");
        } else {
            /* Resolve the topic in the newest state, then delete it by name. */
            struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
            char *cname = NULL;
            const struct lm_meta_topic *t = NULL;
            int32_t partitions = 0;
            rc = has_name ? admin_cstr(a, name, &cname) : 0;
            if (rc == 0) {
                t = has_name ? lm_meta_state_find(&snap->state, cname)
                             : lm_meta_state_find_id(&snap->state, id.b);
                if (t != NULL) {
                    rc = admin_cstr(a, admin_kstr(t->name), &cname);
                    memcpy(res->topic_id.b, t->id, 16);
                    partitions = t->partition_count;
                }
            }
            lm_meta_snapshot_release(snap);
            if (rc != 0)
                return rc;
            if (t == NULL && env->defer != NULL &&
                (has_name || !admin_authz_on(env) ||
                 authz_is_super(env->authz, env->who.principal))) {
                /* Not in this node's image, which may lag the controller's (a node cut off
                 * from it answers from the image it last had): the controller's log decides,
                 * as Kafka's controller does. By id only where the caller may delete any
                 * topic (the name, needed for its ACLs, is unknown here). */
                rc = delete_one(env, has_name ? cname : "", res->topic_id.b, has_id, 0,
                                version >= 5, a, res);
            } else if (t == NULL && has_name) {
                rc = SET_ERR(a, res->error_code, res->error_message,
                             KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                             "This server does not host this topic: %s", cname);
            } else if (t == NULL) {
                rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_TOPIC_ID,
                             "This server does not know this topic id.");
            } else if (!admin_allowed(env, AUTHZ_OP_DELETE, AUTHZ_RES_TOPIC, admin_kstr(cname))) {
                rc = SET_ERR(a, res->error_code, res->error_message,
                             KAFKA_TOPIC_AUTHORIZATION_FAILED, "Authorization failed.");
            } else {
                res->name = admin_kstr(cname);
                rc = delete_one(env, cname, res->topic_id.b, has_id, partitions, version >= 5, a,
                                res);
            }
        }
        if (rc != 0)
            return rc;
    }
    rs->throttle_time_ms = admin_mutations_throttle_ms(env);
    return 0;
}

/* ---------------------------------------------------------------- CreatePartitions */

typedef struct kafka_create_partitions_response_create_partitions_topic_result cp_result;

/* Kafka's checks of a new partition's manual assignment (ReplicationControlManager's
 * validateManualPartitionAssignment): not empty, the topic's replica count, no node twice,
 * every node registered (and here alive, as CreateTopics asks). On a single node the one
 * replica is this node. */
static int
new_partition_check(const struct admin_env *env, int16_t rf, int32_t partition,
                    const struct kafka_create_partitions_request_create_partitions_assignment *as,
                    struct kafka_arena *a, cp_result *res)
{
    if (env->defer == NULL) {
        if (as->broker_ids_count != 1 || as->broker_ids[0] != env->cfg->node_id)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                           "The assignment of new partition %d must name exactly the one "
                           "broker of this cluster (%d), as the topic has replication factor 1.",
                           partition, env->cfg->node_id);
        return 0;
    }
    if (as->broker_ids_count <= 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                       "The manual partition assignment includes an empty replica list.");
    if (as->broker_ids_count != rf)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                       "The manual partition assignment includes a partition with %d "
                       "replica(s), but this is not consistent with previous partitions, which "
                       "have %d replica(s).",
                       as->broker_ids_count, rf);
    for (int32_t k = 0; k < as->broker_ids_count; k++) {
        for (int32_t j = 0; j < k; j++)
            if (as->broker_ids[j] == as->broker_ids[k])
                return SET_ERR(a, res->error_code, res->error_message,
                               KAFKA_INVALID_REPLICA_ASSIGNMENT,
                               "The manual partition assignment includes the broker %d more "
                               "than once.",
                               as->broker_ids[k]);
        if (!cluster_node_live(env, as->broker_ids[k]))
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                           "The manual partition assignment includes broker %d, but no such "
                           "broker is registered and alive.",
                           as->broker_ids[k]);
    }
    return 0;
}

static int partitions_one(const struct admin_env *env, bool validate_only, bool strict,
                          const struct kafka_create_partitions_request_create_partitions_topic *t,
                          bool dup, struct kafka_arena *a, cp_result *res)
{
    if (dup)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                       "Duplicate topic name.");
    /* ControllerApis.createPartitions: ALTER on the topic, checked before existence */
    if (!admin_allowed(env, AUTHZ_OP_ALTER, AUTHZ_RES_TOPIC, t->name))
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_TOPIC_AUTHORIZATION_FAILED,
                       "Authorization failed.");
    char *name = NULL;
    int rc = admin_cstr(a, t->name, &name);
    if (rc != 0)
        return rc;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_topic *topic = lm_meta_state_find(&snap->state, name);
    int32_t current = topic ? topic->partition_count : -1;
    /* the replicas every new partition has: the topic's factor (1 on a single node) */
    int16_t rf = topic && topic->replicas ? topic->replication_factor : 1;
    lm_meta_snapshot_release(snap);
    if (current < 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                       "This server does not host this topic: %s", name);
    /* A group's coordinator partition is a hash modulo this count: changing it would move
     * every group away from its offsets. */
    if (strcmp(name, ADMIN_OFFSETS_TOPIC) == 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REQUEST,
                       "Partitions of internal topic %s cannot be changed.", name);
    if (t->count == current)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                       "Topic already has %d partition(s).", current);
    if (t->count < current)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                       "The topic %s currently has %d partition(s); %d would not be an "
                       "increase.",
                       name, current, t->count);
    if (t->count > LM_META_PARTITIONS_MAX)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                       "%d partitions is more than the limit of %d.", t->count,
                       LM_META_PARTITIONS_MAX);
    if (t->assignments_count >= 0) {
        int32_t added = t->count - current;
        if (t->assignments_count != added)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                           "Attempted to add %d additional partition(s), but %d assignment(s) "
                           "were specified.",
                           added, t->assignments_count);
        for (int32_t i = 0; i < t->assignments_count; i++) {
            rc = new_partition_check(env, rf, current + i, &t->assignments[i], a, res);
            if (rc != 0 || res->error_code != KAFKA_NONE)
                return rc;
        }
    }
    bool failed = false;
    rc = partition_limit_error(env, name, (int64_t)t->count - current, rf, a, &res->error_code,
                               &res->error_message, &failed);
    if (rc != 0 || failed)
        return rc;
    if (validate_only)
        return 0;
    bool refused = false;
    rc = admin_mutations_check(env, strict, a, &res->error_code, &res->error_message, &refused);
    if (rc != 0 || refused)
        return rc;
    struct lm_meta_record r = {
        .type = LM_META_PARTITIONS_SET, .topic = name, .partition_count = t->count};
    if (env->defer != NULL && t->assignments_count > 0) {
        size_t n = (size_t)t->assignments_count * (size_t)rf;
        int32_t *ids = kafka_arena_alloc_array(a, n, sizeof(int32_t), 4);
        if (ids == NULL)
            return LM_E_NOMEM;
        for (int32_t i = 0; i < t->assignments_count; i++)
            memcpy(&ids[(size_t)i * (size_t)rf], t->assignments[i].broker_ids,
                   (size_t)rf * sizeof(int32_t));
        r.replicas = ids;
        r.replication_factor = rf;
        r.replicas_partitions = t->assignments_count;
    }
    rc = admin_commit(env, &r, ADMIN_COMMIT_PARTITIONS, a, &res->error_code, &res->error_message);
    if (rc == LM_E_INVALID)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_PARTITIONS,
                       "The partition count of topic %s changed concurrently; %d is not an "
                       "increase any more.",
                       name, t->count);
    if (rc != 0)
        return commit_error(a, rc, name, &res->error_code, &res->error_message);
    admin_mutations_record(env, t->count - current);
    BLOG_INFO("admin: topic %s grew from %d to %d partitions", name, current, t->count);
    return 0;
}

int admin_create_partitions(const struct admin_env *env, int16_t version,
                            const struct kafka_create_partitions_request *rq,
                            struct kafka_create_partitions_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_CREATE_PARTITIONS_MIN && version <= ADMIN_CREATE_PARTITIONS_MAX);
    LM_ASSERT(env->meta != NULL);
    int32_t n = rq->topics_count < 0 ? 0 : rq->topics_count;
    if (ADMIN_RESULTS(a, rs, results, n) != 0)
        return LM_E_NOMEM;
    bool *dup = NULL;
    int drc = admin_mark_duplicate_names(a, n > 0 ? &rq->topics[0].name : NULL,
                                         sizeof(rq->topics[0]), n, &dup);
    if (drc != 0)
        return drc;
    for (int32_t i = 0; i < n; i++) {
        rs->results[i] = (cp_result){
            .name = rq->topics[i].name, .error_code = KAFKA_NONE, .error_message = KAFKA_STR_NULL};
        int rc = partitions_one(env, rq->validate_only, version >= 3, &rq->topics[i], dup[i], a,
                                &rs->results[i]);
        if (rc != 0)
            return rc;
    }
    rs->throttle_time_ms = admin_mutations_throttle_ms(env);
    return 0;
}
