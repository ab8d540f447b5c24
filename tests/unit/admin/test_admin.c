/* Admin handler cores (broker/handlers/admin_core.h) against a real metadata store: every
 * request is encoded and decoded at the version under test before the core sees it, and every
 * response is encoded and decoded back before it is checked, so the assertions are on what a
 * client would read at that version. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <limits.h>
#include <string.h>
#include <sys/stat.h>

#include <cmocka.h>

#include "broker/cluster/meta_snapshot.h"
#include "broker/config.h"
#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "broker/meta/meta_store.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_errors.h"

struct fx {
    char dir[64];
    struct lm_meta_store *meta;
    struct broker_config cfg;
    struct admin_env env;
    struct kafka_arena a;
    struct admin_defer defer; /* the cluster fixture's queued changes */
};

/* Leader epochs as the broker's owners register them: partition 2 of any topic at 12, the
 * rest at the first term. */
static int32_t test_leader_epoch(const void *ctx, const uint8_t topic_id[16], int32_t partition)
{
    (void)ctx;
    (void)topic_id;
    return partition == 2 ? 12 : 1;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/lm-admin-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    assert_int_equal(lm_meta_store_open(f->dir, &f->meta), 0);
    broker_config_init(&f->cfg);
    f->cfg.node_id = 7;
    f->env = (struct admin_env){.meta = f->meta,
                                .cfg = &f->cfg,
                                .cluster_id = "clusterIdTest42",
                                .leader_epoch = test_leader_epoch};
    kafka_arena_init(&f->a, 64u << 20);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    lm_meta_store_close(f->meta);
    broker_config_deinit(&f->cfg);
    kafka_arena_deinit(&f->a);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

/* Encodes msg at version v and decodes it back (a new struct in the arena). */
static void *wire(struct fx *f, int16_t key, int16_t v, bool request, const void *msg)
{
    const struct kafka_api_info *api = kafka_api_lookup(key);
    assert_non_null(api);
    const struct kafka_msg_ops *ops = request ? &api->request : &api->response;
    size_t n = ops->size(v, msg);
    assert_true(n > 0);
    uint8_t *buf = kafka_arena_alloc(&f->a, n, 1);
    assert_non_null(buf);
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    assert_int_equal(ops->encode(&w, v, msg), 0);
    assert_int_equal(w.pos, n);
    void *out = kafka_arena_alloc(&f->a, ops->struct_size, 16);
    assert_non_null(out);
    ops->init(out);
    struct kafka_reader r;
    kafka_reader_init(&r, buf, n);
    assert_int_equal(ops->decode(&r, v, out, &f->a), 0);
    assert_int_equal(kafka_reader_left(&r), 0);
    return out;
}

#define DEFINE_CALL(api, KEY)                                                                      \
    static struct kafka_##api##_response *call_##api(struct fx *f, int16_t v,                      \
                                                     const struct kafka_##api##_request *rq)       \
    {                                                                                              \
        const struct kafka_##api##_request *w = wire(f, KEY, v, true, rq);                         \
        struct kafka_##api##_response rs;                                                          \
        kafka_##api##_response_init(&rs);                                                          \
        assert_int_equal(admin_##api(&f->env, v, w, &rs, &f->a), 0);                               \
        return wire(f, KEY, v, false, &rs);                                                        \
    }
DEFINE_CALL(create_topics, KAFKA_CREATE_TOPICS_KEY)
DEFINE_CALL(delete_topics, KAFKA_DELETE_TOPICS_KEY)
DEFINE_CALL(create_partitions, KAFKA_CREATE_PARTITIONS_KEY)
DEFINE_CALL(describe_configs, KAFKA_DESCRIBE_CONFIGS_KEY)
DEFINE_CALL(alter_configs, KAFKA_ALTER_CONFIGS_KEY)
DEFINE_CALL(incremental_alter_configs, KAFKA_INCREMENTAL_ALTER_CONFIGS_KEY)
DEFINE_CALL(describe_cluster, KAFKA_DESCRIBE_CLUSTER_KEY)
DEFINE_CALL(describe_acls, KAFKA_DESCRIBE_ACLS_KEY)
DEFINE_CALL(create_acls, KAFKA_CREATE_ACLS_KEY)
DEFINE_CALL(delete_acls, KAFKA_DELETE_ACLS_KEY)
DEFINE_CALL(describe_log_dirs, KAFKA_DESCRIBE_LOG_DIRS_KEY)
DEFINE_CALL(update_features, KAFKA_UPDATE_FEATURES_KEY)
DEFINE_CALL(describe_topic_partitions, KAFKA_DESCRIBE_TOPIC_PARTITIONS_KEY)
DEFINE_CALL(alter_partition_reassignments, KAFKA_ALTER_PARTITION_REASSIGNMENTS_KEY)
DEFINE_CALL(list_partition_reassignments, KAFKA_LIST_PARTITION_REASSIGNMENTS_KEY)
DEFINE_CALL(describe_client_quotas, KAFKA_DESCRIBE_CLIENT_QUOTAS_KEY)
DEFINE_CALL(alter_client_quotas, KAFKA_ALTER_CLIENT_QUOTAS_KEY)
DEFINE_CALL(list_config_resources, KAFKA_LIST_CONFIG_RESOURCES_KEY)

static struct kafka_str S(const char *s) {
    return admin_kstr(s);
}

static bool
str_is(struct kafka_str s, const char *c)
{
    return c == NULL ? s.len < 0 : admin_kstr_eq(s, c);
}

/* ---- state inspection ---- */

static int32_t partitions_of(struct fx *f, const char *topic)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, topic);
    int32_t n = t ? t->partition_count : -1;
    lm_meta_snapshot_release(snap);
    return n;
}

/* The override of key on topic, copied into the arena, or NULL. */
static const char *override_of(struct fx *f, const char *topic, const char *key)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, topic);
    assert_non_null(t);
    char *v = NULL;
    for (size_t i = 0; i < t->config_count; i++) {
        if (strcmp(t->configs[i].name, key) == 0)
            assert_int_equal(admin_cstr(&f->a, S(t->configs[i].value), &v), 0);
    }
    lm_meta_snapshot_release(snap);
    return v;
}

static size_t override_count(struct fx *f, const char *topic)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, topic);
    assert_non_null(t);
    size_t n = t->config_count;
    lm_meta_snapshot_release(snap);
    return n;
}

/* ---- request builders ---- */

typedef struct kafka_create_topics_request_creatable_topic ct_topic;
typedef struct kafka_create_topics_request_creatable_topic_config ct_config;

static ct_topic topic_req(struct fx *f, const char *name, int32_t np, int16_t rf, int nconf, ...)
{
    ct_topic t = {.name = S(name),
                  .num_partitions = np,
                  .replication_factor = rf,
                  .assignments = NULL,
                  .assignments_count = 0,
                  .configs = NULL,
                  .configs_count = 0};
    if (nconf > 0) {
        t.configs = kafka_arena_alloc_array(&f->a, (size_t)nconf, sizeof(ct_config), 8);
        va_list ap;
        va_start(ap, nconf);
        for (int i = 0; i < nconf; i++) {
            const char *k = va_arg(ap, const char *);
            const char *v = va_arg(ap, const char *);
            t.configs[i] = (ct_config){S(k), S(v)};
        }
        va_end(ap);
        t.configs_count = nconf;
    }
    return t;
}

static struct kafka_create_topics_response *create(struct fx *f, int16_t v, bool validate_only,
                                                   ct_topic *topics, int32_t n)
{
    struct kafka_create_topics_request rq;
    kafka_create_topics_request_init(&rq);
    rq.topics = topics;
    rq.topics_count = n;
    rq.validate_only = validate_only;
    struct kafka_create_topics_response *rs = call_create_topics(f, v, &rq);
    assert_int_equal(rs->topics_count, n);
    return rs;
}

static int16_t create_one(struct fx *f, int16_t v, const char *name, int32_t np, int16_t rf)
{
    ct_topic t = topic_req(f, name, np, rf, 0);
    return create(f, v, false, &t, 1)->topics[0].error_code;
}

/* ---- CreateTopics ---- */

static const struct kafka_create_topics_response_creatable_topic_configs *
ct_config_find(const struct kafka_create_topics_response_creatable_topic_result *r,
               const char *name)
{
    for (int32_t i = 0; i < r->configs_count; i++) {
        if (str_is(r->configs[i].name, name))
            return &r->configs[i];
    }
    return NULL;
}

static void test_create_topics_v7_configs(void **state)
{
    struct fx *f = *state;
    assert_int_equal(broker_config_set(&f->cfg, "log.retention.hours", "2"), 0);
    ct_topic t =
        topic_req(f, "orders", 4, 1, 2, "cleanup.policy", "compact", "retention.bytes", "1000");
    struct kafka_create_topics_response *rs = create(f, 7, false, &t, 1);
    const struct kafka_create_topics_response_creatable_topic_result *r = &rs->topics[0];
    assert_int_equal(r->error_code, KAFKA_NONE);
    assert_true(str_is(r->error_message, NULL));
    assert_true(str_is(r->name, "orders"));
    assert_int_equal(r->num_partitions, 4);
    assert_int_equal(r->replication_factor, 1);
    /* The id on the wire is the one stored. */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    const struct lm_meta_topic *mt = lm_meta_state_find(&snap->state, "orders");
    assert_non_null(mt);
    assert_memory_equal(mt->id, r->topic_id.b, 16);
    assert_int_equal(mt->partition_count, 4);
    lm_meta_snapshot_release(snap);
    /* Every known config, with source: override / broker key (unit synonym) / default. */
    size_t ndefs = 0;
    lm_topic_config_defs(&ndefs);
    assert_int_equal(r->configs_count, (int32_t)ndefs);
    const struct kafka_create_topics_response_creatable_topic_configs *c;
    c = ct_config_find(r, "cleanup.policy");
    assert_non_null(c);
    assert_true(str_is(c->value, "compact"));
    assert_int_equal(c->config_source, LM_CONFIG_SOURCE_DYNAMIC_TOPIC);
    c = ct_config_find(r, "retention.ms");
    assert_true(str_is(c->value, "7200000"));
    assert_int_equal(c->config_source, LM_CONFIG_SOURCE_STATIC_BROKER);
    c = ct_config_find(r, "segment.bytes");
    assert_true(str_is(c->value, "1073741824"));
    assert_int_equal(c->config_source, LM_CONFIG_SOURCE_DEFAULT);
    assert_false(c->read_only);
    assert_false(c->is_sensitive);
    assert_string_equal(override_of(f, "orders", "retention.bytes"), "1000");
    assert_int_equal(override_count(f, "orders"), 2);
}

static void test_create_topics_errors(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "a.b", 1, 1), KAFKA_NONE);
    assert_int_equal(create_one(f, 7, "a.b", 1, 1), KAFKA_TOPIC_ALREADY_EXISTS);
    assert_int_equal(create_one(f, 7, "a_b", 1, 1), KAFKA_INVALID_TOPIC_EXCEPTION); /* collides */
    assert_int_equal(create_one(f, 7, "bad name", 1, 1), KAFKA_INVALID_TOPIC_EXCEPTION);
    assert_int_equal(create_one(f, 7, "..", 1, 1), KAFKA_INVALID_TOPIC_EXCEPTION);
    assert_int_equal(create_one(f, 7, "", 1, 1), KAFKA_INVALID_TOPIC_EXCEPTION);
    assert_int_equal(create_one(f, 7, "p0", 0, 1), KAFKA_INVALID_PARTITIONS);
    assert_int_equal(create_one(f, 7, "p0", -2, 1), KAFKA_INVALID_PARTITIONS);
    assert_int_equal(create_one(f, 7, "r3", 1, 3), KAFKA_INVALID_REPLICATION_FACTOR);
    assert_int_equal(create_one(f, 7, "r0", 1, 0), KAFKA_INVALID_REPLICATION_FACTOR);
    /* -1 is the broker default at every version (kafkajs sends it at v3), KIP-464 */
    assert_int_equal(create_one(f, 3, "d3", -1, -1), KAFKA_NONE);
    assert_int_equal(partitions_of(f, "d3"), 1);
    /* existence is checked before the layout (Kafka's order): kafkajs relies on it */
    assert_int_equal(create_one(f, 3, "d3", 1, 3), KAFKA_TOPIC_ALREADY_EXISTS);

    struct kafka_create_topics_response *rs;
    ct_topic t = topic_req(f, "cfg", 1, 1, 1, "retention.ms", "soon");
    rs = create(f, 7, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_CONFIG);
    assert_non_null(strstr(rs->topics[0].error_message.ptr, "retention.ms"));
    assert_int_equal(rs->topics[0].configs_count, -1);
    t = topic_req(f, "cfg", 1, 1, 1, "no.such.config", "1");
    rs = create(f, 7, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_CONFIG);
    t = topic_req(f, "cfg", 1, 1, 1, "cleanup.policy", "delete,shred");
    rs = create(f, 7, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_CONFIG);
    t = topic_req(f, "cfg", 1, 1, 2, "retention.ms", "1", "retention.ms", "2");
    rs = create(f, 7, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_REQUEST);
    t = topic_req(f, "cfg", 1, 1, 1, "retention.ms", NULL);
    rs = create(f, 7, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_REQUEST);
    assert_int_equal(partitions_of(f, "cfg"), -1);

    /* The same name twice in one request: both refused, nothing created. */
    ct_topic two[2] = {topic_req(f, "twice", 1, 1, 0), topic_req(f, "twice", 2, 1, 0)};
    rs = create(f, 7, false, two, 2);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_REQUEST);
    assert_int_equal(rs->topics[1].error_code, KAFKA_INVALID_REQUEST);
    assert_int_equal(partitions_of(f, "twice"), -1);

    /* Errors carry messages from v1; v2-4 responses have no configs. */
    rs = create(f, 4, false, &t, 1);
    assert_int_equal(rs->topics[0].configs_count, 0);
    assert_true(rs->topics[0].error_message.len > 0);
}

static void test_create_topics_defaults_and_validate_only(void **state)
{
    struct fx *f = *state;
    assert_int_equal(broker_config_set(&f->cfg, "num.partitions", "5"), 0);
    f->cfg.num_partitions = 5;
    ct_topic t = topic_req(f, "dflt", -1, -1, 0);
    struct kafka_create_topics_response *rs = create(f, 5, true, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_NONE);
    assert_int_equal(rs->topics[0].num_partitions, 5);
    assert_int_equal(partitions_of(f, "dflt"), -1); /* validate_only: nothing stored */
    rs = create(f, 5, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_NONE);
    assert_int_equal(partitions_of(f, "dflt"), 5);
    /* default.replication.factor above the cluster size */
    f->cfg.default_replication_factor = 3;
    t = topic_req(f, "dflt2", -1, -1, 0);
    rs = create(f, 6, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_REPLICATION_FACTOR);
}

static void test_create_topics_assignments(void **state)
{
    struct fx *f = *state;
    typedef struct kafka_create_topics_request_creatable_replica_assignment asg;
    int32_t me[1] = {7}, other[1] = {8}, twice[2] = {7, 7};
    asg ok[3] = {{2, me, 1}, {0, me, 1}, {1, me, 1}};
    ct_topic t = topic_req(f, "manual", -1, -1, 0);
    t.assignments = ok;
    t.assignments_count = 3;
    struct kafka_create_topics_response *rs = create(f, 7, false, &t, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_NONE);
    assert_int_equal(rs->topics[0].num_partitions, 3);
    assert_int_equal(partitions_of(f, "manual"), 3);

    asg bad_broker[1] = {{0, other, 1}};
    t = topic_req(f, "manual2", -1, -1, 0);
    t.assignments = bad_broker;
    t.assignments_count = 1;
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code,
                     KAFKA_INVALID_REPLICA_ASSIGNMENT);
    asg gap[2] = {{0, me, 1}, {2, me, 1}};
    t.assignments = gap;
    t.assignments_count = 2;
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code,
                     KAFKA_INVALID_REPLICA_ASSIGNMENT);
    asg dup[1] = {{0, twice, 2}};
    t.assignments = dup;
    t.assignments_count = 1;
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code,
                     KAFKA_INVALID_REPLICA_ASSIGNMENT);
    /* assignments with a partition count is a malformed request */
    t = topic_req(f, "manual2", 1, -1, 0);
    t.assignments = ok;
    t.assignments_count = 3;
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code, KAFKA_INVALID_REQUEST);
    assert_int_equal(partitions_of(f, "manual2"), -1);
}

/* Many topics in one request: duplicates are found by sorting (a quadratic scan would stall
 * the shard), and only the duplicated entries are refused. */
static void test_create_topics_many_duplicates(void **state)
{
    struct fx *f = *state;
    enum { N = 20000 };
    ct_topic *t = kafka_arena_alloc_array(&f->a, N, sizeof(*t), 8);
    assert_non_null(t);
    for (int i = 0; i < N; i++) {
        struct kafka_str name;
        assert_int_equal(admin_fmt(&f->a, &name, "bulk-%05d", i == N - 1 ? 17 : i), 0);
        t[i] = topic_req(f, "", 1, 1, 0);
        t[i].name = name;
    }
    struct kafka_create_topics_response *rs = create(f, 4, true, t, N);
    for (int i = 0; i < N; i++) {
        bool twice = i == 17 || i == N - 1;
        assert_int_equal(rs->topics[i].error_code, twice ? KAFKA_INVALID_REQUEST : KAFKA_NONE);
    }
    assert_int_equal(partitions_of(f, "bulk-00001"), -1); /* validate_only */
}

/* ---- DeleteTopics ---- */

static void test_delete_topics(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "t1", 1, 1), KAFKA_NONE);
    assert_int_equal(create_one(f, 7, "t2", 2, 1), KAFKA_NONE);
    assert_int_equal(create_one(f, 7, "t3", 2, 1), KAFKA_NONE);

    /* v1-5: by name */
    struct kafka_str names[2] = {S("t1"), S("nope")};
    struct kafka_delete_topics_request rq;
    kafka_delete_topics_request_init(&rq);
    rq.topic_names = names;
    rq.topic_names_count = 2;
    struct kafka_delete_topics_response *rs = call_delete_topics(f, 5, &rq);
    assert_int_equal(rs->responses_count, 2);
    assert_true(str_is(rs->responses[0].name, "t1"));
    assert_int_equal(rs->responses[0].error_code, KAFKA_NONE);
    assert_int_equal(rs->responses[1].error_code, KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_true(rs->responses[1].error_message.len > 0);
    assert_int_equal(partitions_of(f, "t1"), -1);
    assert_int_equal(partitions_of(f, "t2"), 2);

    /* v6: by id, by name, unknown id, both given */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    struct kafka_uuid id2;
    memcpy(id2.b, lm_meta_state_find(&snap->state, "t2")->id, 16);
    lm_meta_snapshot_release(snap);
    struct kafka_uuid unknown = {{1, 2, 3}};
    struct kafka_delete_topics_request_delete_topic_state st[4] = {
        {KAFKA_STR_NULL, id2},
        {S("t3"), {{0}}},
        {KAFKA_STR_NULL, unknown},
        {S("t9"), unknown},
    };
    kafka_delete_topics_request_init(&rq);
    rq.topics = st;
    rq.topics_count = 4;
    rs = call_delete_topics(f, 6, &rq);
    assert_int_equal(rs->responses_count, 4);
    assert_int_equal(rs->responses[0].error_code, KAFKA_NONE);
    assert_true(str_is(rs->responses[0].name, "t2")); /* the name of a topic deleted by id */
    assert_memory_equal(rs->responses[0].topic_id.b, id2.b, 16);
    assert_int_equal(rs->responses[1].error_code, KAFKA_NONE);
    assert_int_equal(rs->responses[2].error_code, KAFKA_UNKNOWN_TOPIC_ID);
    assert_int_equal(rs->responses[3].error_code, KAFKA_INVALID_REQUEST);
    assert_int_equal(partitions_of(f, "t2"), -1);
    assert_int_equal(partitions_of(f, "t3"), -1);

    /* the same id twice, the same name twice, neither name nor id */
    assert_int_equal(create_one(f, 7, "t4", 1, 1), KAFKA_NONE);
    struct kafka_delete_topics_request_delete_topic_state st2[5] = {{KAFKA_STR_NULL, unknown},
                                                                    {S("t4"), {{0}}},
                                                                    {KAFKA_STR_NULL, unknown},
                                                                    {S("t4"), {{0}}},
                                                                    {KAFKA_STR_NULL, {{0}}}};
    rq.topics = st2;
    rq.topics_count = 5;
    rs = call_delete_topics(f, 6, &rq);
    for (int i = 0; i < 5; i++)
        assert_int_equal(rs->responses[i].error_code, KAFKA_INVALID_REQUEST);
    assert_int_equal(partitions_of(f, "t4"), 1);

    /* delete.topic.enable=false */
    assert_int_equal(create_one(f, 7, "keep", 1, 1), KAFKA_NONE);
    assert_int_equal(broker_config_set(&f->cfg, "delete.topic.enable", "false"), 0);
    names[0] = S("keep");
    kafka_delete_topics_request_init(&rq);
    rq.topic_names = names;
    rq.topic_names_count = 1;
    rs = call_delete_topics(f, 4, &rq);
    assert_int_equal(rs->responses[0].error_code, KAFKA_TOPIC_DELETION_DISABLED);
    assert_int_equal(partitions_of(f, "keep"), 1);
}

/* ---- CreatePartitions ---- */

static int16_t grow(struct fx *f, int16_t v, const char *topic, int32_t count, bool validate_only,
                    int32_t assignments_count, int32_t broker)
{
    typedef struct kafka_create_partitions_request_create_partitions_assignment asg;
    asg *as = NULL;
    if (assignments_count > 0) {
        as = kafka_arena_alloc_array(&f->a, (size_t)assignments_count, sizeof(asg), 8);
        int32_t *b = kafka_arena_alloc(&f->a, sizeof(int32_t), 4);
        *b = broker;
        for (int32_t i = 0; i < assignments_count; i++)
            as[i] = (asg){b, 1};
    }
    struct kafka_create_partitions_request_create_partitions_topic t = {S(topic), count, as,
                                                                        assignments_count};
    struct kafka_create_partitions_request rq;
    kafka_create_partitions_request_init(&rq);
    rq.topics = &t;
    rq.topics_count = 1;
    rq.validate_only = validate_only;
    struct kafka_create_partitions_response *rs = call_create_partitions(f, v, &rq);
    assert_int_equal(rs->results_count, 1);
    assert_true(str_is(rs->results[0].name, topic));
    if (rs->results[0].error_code != KAFKA_NONE)
        assert_true(rs->results[0].error_message.len > 0);
    return rs->results[0].error_code;
}

static void test_create_partitions(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "g", 2, 1), KAFKA_NONE);
    assert_int_equal(grow(f, 3, "g", 4, true, -1, 0), KAFKA_NONE);
    assert_int_equal(partitions_of(f, "g"), 2);
    assert_int_equal(grow(f, 3, "g", 4, false, -1, 0), KAFKA_NONE);
    assert_int_equal(partitions_of(f, "g"), 4);
    assert_int_equal(grow(f, 0, "g", 4, false, -1, 0), KAFKA_INVALID_PARTITIONS);
    assert_int_equal(grow(f, 2, "g", 3, false, -1, 0), KAFKA_INVALID_PARTITIONS);
    assert_int_equal(grow(f, 2, "none", 3, false, -1, 0), KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_int_equal(grow(f, 3, "g", 6, false, 1, 7), KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(grow(f, 3, "g", 6, false, 2, 8), KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(partitions_of(f, "g"), 4);
    assert_int_equal(grow(f, 3, "g", 6, false, 2, 7), KAFKA_NONE);
    assert_int_equal(partitions_of(f, "g"), 6);
}

/* max.broker.partitions (KIP-578): CreateTopics, CreatePartitions and their validate_only
 * forms that would take the node above the limit answer POLICY_VIOLATION with a message and
 * change nothing; below it everything works; the store refuses a commit past it too. */
static void test_partition_limit(void **state)
{
    struct fx *f = *state;
    lm_meta_store_set_partition_limit(f->meta, 10);
    assert_int_equal(create_one(f, 7, "a", 6, 1), KAFKA_NONE);
    ct_topic t = topic_req(f, "big", 5, 1, 0);
    for (int validate = 1; validate >= 0; validate--) {
        struct kafka_create_topics_response *rs = create(f, 7, validate, &t, 1);
        assert_int_equal(rs->topics[0].error_code, KAFKA_POLICY_VIOLATION);
        assert_non_null(strstr(rs->topics[0].error_message.ptr, "max.broker.partitions=10"));
        assert_int_equal(partitions_of(f, "big"), -1);
    }
    assert_int_equal(create_one(f, 7, "fits", 4, 1), KAFKA_NONE); /* exactly 10 */
    assert_int_equal(grow(f, 3, "a", 7, true, -1, 0), KAFKA_POLICY_VIOLATION);
    assert_int_equal(grow(f, 3, "a", 7, false, -1, 0), KAFKA_POLICY_VIOLATION);
    assert_int_equal(partitions_of(f, "a"), 6);
    /* the commit itself checks (two requests racing past the pre-check) */
    struct lm_meta_record r = {
        .type = LM_META_TOPIC_CREATE, .topic = "raced", .partition_count = 1};
    assert_int_equal(lm_meta_new_topic_id(r.topic_id), 0);
    assert_int_equal(lm_meta_store_commit(f->meta, &r), LM_E_FULL);
    /* no limit means none */
    lm_meta_store_set_partition_limit(f->meta, 0);
    assert_int_equal(grow(f, 3, "a", 100, false, -1, 0), KAFKA_NONE);
    assert_int_equal(partitions_of(f, "a"), 100);
}

/* The group coordinator's topic can be neither deleted nor grown: either would separate groups
 * from their committed offsets. */
static void test_offsets_topic_protected(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "__consumer_offsets", 5, 1), KAFKA_NONE);
    assert_int_equal(grow(f, 3, "__consumer_offsets", 6, false, -1, 0), KAFKA_INVALID_REQUEST);
    assert_int_equal(partitions_of(f, "__consumer_offsets"), 5);
    struct kafka_str names[1] = {S("__consumer_offsets")};
    struct kafka_delete_topics_request rq;
    kafka_delete_topics_request_init(&rq);
    rq.topic_names = names;
    rq.topic_names_count = 1;
    struct kafka_delete_topics_response *rs = call_delete_topics(f, 5, &rq);
    assert_int_equal(rs->responses[0].error_code, KAFKA_INVALID_REQUEST);
    assert_true(rs->responses[0].error_message.len > 0);
    assert_int_equal(partitions_of(f, "__consumer_offsets"), 5);
}

/* ---- DescribeConfigs ---- */

typedef struct kafka_describe_configs_response_describe_configs_resource_result dc_entry;

static struct kafka_describe_configs_response *describe(struct fx *f, int16_t v, int8_t type,
                                                        const char *name, bool synonyms, bool docs,
                                                        int nkeys, ...)
{
    struct kafka_describe_configs_request_describe_configs_resource r = {type, S(name), NULL, -1};
    if (nkeys >= 0) {
        r.configuration_keys =
            kafka_arena_alloc_array(&f->a, (size_t)nkeys + 1, sizeof(struct kafka_str), 8);
        va_list ap;
        va_start(ap, nkeys);
        for (int i = 0; i < nkeys; i++)
            r.configuration_keys[i] = S(va_arg(ap, const char *));
        va_end(ap);
        r.configuration_keys_count = nkeys;
    }
    struct kafka_describe_configs_request rq;
    kafka_describe_configs_request_init(&rq);
    rq.resources = &r;
    rq.resources_count = 1;
    rq.include_synonyms = synonyms;
    rq.include_documentation = docs;
    struct kafka_describe_configs_response *rs = call_describe_configs(f, v, &rq);
    assert_int_equal(rs->results_count, 1);
    assert_int_equal(rs->results[0].resource_type, type);
    assert_true(str_is(rs->results[0].resource_name, name));
    return rs;
}

static const dc_entry *dc_find(const struct kafka_describe_configs_response *rs, const char *name)
{
    for (int32_t i = 0; i < rs->results[0].configs_count; i++) {
        if (str_is(rs->results[0].configs[i].name, name))
            return &rs->results[0].configs[i];
    }
    return NULL;
}

static void test_describe_configs_topic(void **state)
{
    struct fx *f = *state;
    assert_int_equal(broker_config_set(&f->cfg, "log.retention.ms", "5000"), 0);
    assert_int_equal(broker_config_set(&f->cfg, "log.retention.hours", "9"), 0);
    ct_topic t = topic_req(f, "dc", 1, 1, 1, "max.message.bytes", "2000");
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code, KAFKA_NONE);

    size_t ndefs = 0;
    lm_topic_config_defs(&ndefs);
    struct kafka_describe_configs_response *rs =
        describe(f, 4, ADMIN_RESOURCE_TOPIC, "dc", true, true, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    assert_int_equal(rs->results[0].configs_count, (int32_t)ndefs);
    const dc_entry *e = dc_find(rs, "max.message.bytes");
    assert_true(str_is(e->value, "2000"));
    assert_int_equal(e->config_source, LM_CONFIG_SOURCE_DYNAMIC_TOPIC);
    assert_int_equal(e->config_type, LM_CONFIG_INT);
    assert_true(e->documentation.len > 0);
    assert_false(e->read_only);
    /* synonyms: the override, then the default (named by the broker key) */
    assert_int_equal(e->synonyms_count, 2);
    assert_true(str_is(e->synonyms[0].name, "max.message.bytes"));
    assert_int_equal(e->synonyms[0].source, LM_CONFIG_SOURCE_DYNAMIC_TOPIC);
    assert_true(str_is(e->synonyms[1].name, "message.max.bytes"));
    assert_true(str_is(e->synonyms[1].value, "1048588"));
    assert_int_equal(e->synonyms[1].source, LM_CONFIG_SOURCE_DEFAULT);
    /* log.retention.ms beats log.retention.hours (Kafka's precedence); both listed */
    e = dc_find(rs, "retention.ms");
    assert_true(str_is(e->value, "5000"));
    assert_int_equal(e->config_source, LM_CONFIG_SOURCE_STATIC_BROKER);
    assert_int_equal(e->synonyms_count, 3);
    assert_true(str_is(e->synonyms[0].name, "log.retention.ms"));
    assert_true(str_is(e->synonyms[1].name, "log.retention.hours"));
    assert_true(str_is(e->synonyms[1].value, "9"));
    assert_int_equal(e->synonyms[2].source, LM_CONFIG_SOURCE_DEFAULT);
    e = dc_find(rs, "cleanup.policy");
    assert_int_equal(e->config_type, LM_CONFIG_LIST);
    assert_int_equal(e->config_source, LM_CONFIG_SOURCE_DEFAULT);

    /* key filter, no synonyms, no docs; v1 has no type or documentation on the wire */
    rs =
        describe(f, 1, ADMIN_RESOURCE_TOPIC, "dc", false, false, 2, "retention.ms", "not.a.config");
    assert_int_equal(rs->results[0].configs_count, 1);
    e = &rs->results[0].configs[0];
    assert_true(str_is(e->name, "retention.ms"));
    assert_int_equal(e->synonyms_count, 0);
    assert_int_equal(e->config_type, 0);
    assert_true(str_is(e->documentation, NULL));
    /* v0: is_default instead of a source */
    rs = describe(f, 0, ADMIN_RESOURCE_TOPIC, "dc", false, false, 2, "segment.bytes",
                  "max.message.bytes");
    assert_int_equal(rs->results[0].configs_count, 2);
    assert_true(dc_find(rs, "segment.bytes")->is_default);
    assert_false(dc_find(rs, "max.message.bytes")->is_default);

    rs = describe(f, 4, ADMIN_RESOURCE_TOPIC, "missing", false, false, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_true(rs->results[0].error_message.len > 0);
    assert_int_equal(rs->results[0].configs_count, 0);
    rs = describe(f, 4, ADMIN_RESOURCE_BROKER_LOGGER, "8", false, false, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_INVALID_REQUEST);
}

static void test_describe_configs_broker(void **state)
{
    struct fx *f = *state;
    assert_int_equal(broker_config_set(&f->cfg, "num.partitions", "3"), 0);
    assert_int_equal(broker_config_set(&f->cfg, "log.cleanup.policy", "compact"), 0);
    struct kafka_describe_configs_response *rs =
        describe(f, 4, ADMIN_RESOURCE_BROKER, "7", true, true, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    const dc_entry *e = dc_find(rs, "num.partitions");
    assert_non_null(e);
    assert_true(str_is(e->value, "3"));
    assert_int_equal(e->config_source, LM_CONFIG_SOURCE_STATIC_BROKER);
    assert_true(e->read_only);
    assert_int_equal(e->synonyms_count, 2);
    e = dc_find(rs, "log.cleanup.policy");
    assert_true(str_is(e->value, "compact"));
    e = dc_find(rs, "log.segment.bytes");
    assert_true(str_is(e->value, "1073741824"));
    assert_int_equal(e->config_source, LM_CONFIG_SOURCE_DEFAULT);
    assert_non_null(dc_find(rs, "message.max.bytes"));
    assert_non_null(dc_find(rs, "default.replication.factor"));
    /* sorted by name, each name once */
    for (int32_t i = 1; i < rs->results[0].configs_count; i++) {
        struct kafka_str x = rs->results[0].configs[i - 1].name, y = rs->results[0].configs[i].name;
        int c = strncmp(x.ptr, y.ptr, (size_t)(x.len < y.len ? x.len : y.len));
        assert_true(c < 0 || (c == 0 && x.len < y.len));
    }
    rs = describe(f, 2, ADMIN_RESOURCE_BROKER, "8", false, false, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_INVALID_REQUEST);
    rs = describe(f, 2, ADMIN_RESOURCE_BROKER, "", false, false, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    assert_int_equal(rs->results[0].configs_count, 0);
    rs = describe(f, 2, ADMIN_RESOURCE_BROKER, "7", false, false, 1, "num.partitions");
    assert_int_equal(rs->results[0].configs_count, 1);
}

/* ---- AlterConfigs ---- */

static int16_t alter(struct fx *f, int16_t v, int8_t type, const char *name, bool validate_only,
                     int n, ...)
{
    typedef struct kafka_alter_configs_request_alterable_config cfgent;
    cfgent *c = kafka_arena_alloc_array(&f->a, (size_t)n + 1, sizeof(cfgent), 8);
    va_list ap;
    va_start(ap, n);
    for (int i = 0; i < n; i++) {
        const char *k = va_arg(ap, const char *);
        const char *val = va_arg(ap, const char *);
        c[i] = (cfgent){S(k), S(val)};
    }
    va_end(ap);
    struct kafka_alter_configs_request_alter_configs_resource r = {type, S(name), c, n};
    struct kafka_alter_configs_request rq;
    kafka_alter_configs_request_init(&rq);
    rq.resources = &r;
    rq.resources_count = 1;
    rq.validate_only = validate_only;
    struct kafka_alter_configs_response *rs = call_alter_configs(f, v, &rq);
    assert_int_equal(rs->responses_count, 1);
    assert_true(str_is(rs->responses[0].resource_name, name));
    if (rs->responses[0].error_code != KAFKA_NONE)
        assert_true(rs->responses[0].error_message.len > 0);
    return rs->responses[0].error_code;
}

static void test_alter_configs(void **state)
{
    struct fx *f = *state;
    ct_topic t = topic_req(f, "ac", 1, 1, 2, "retention.ms", "100", "segment.bytes", "2000000");
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code, KAFKA_NONE);
    /* replaces the whole set */
    assert_int_equal(
        alter(f, 2, ADMIN_RESOURCE_TOPIC, "ac", false, 1, "cleanup.policy", "compact,delete"),
        KAFKA_NONE);
    assert_int_equal(override_count(f, "ac"), 1);
    assert_string_equal(override_of(f, "ac", "cleanup.policy"), "compact,delete");
    assert_int_equal(alter(f, 0, ADMIN_RESOURCE_TOPIC, "ac", true, 1, "retention.ms", "5"),
                     KAFKA_NONE);
    assert_null(override_of(f, "ac", "retention.ms")); /* validate_only */
    assert_int_equal(alter(f, 1, ADMIN_RESOURCE_TOPIC, "ac", false, 1, "retention.ms", "x"),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(alter(f, 1, ADMIN_RESOURCE_TOPIC, "ac", false, 1, "bogus", "1"),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(
        alter(f, 1, ADMIN_RESOURCE_TOPIC, "ac", false, 2, "retention.ms", "1", "retention.ms", "2"),
        KAFKA_INVALID_REQUEST);
    assert_int_equal(override_count(f, "ac"), 1);
    assert_int_equal(alter(f, 1, ADMIN_RESOURCE_TOPIC, "nope", false, 0),
                     KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    /* empty set clears every override */
    assert_int_equal(alter(f, 2, ADMIN_RESOURCE_TOPIC, "ac", false, 0), KAFKA_NONE);
    assert_int_equal(override_count(f, "ac"), 0);
    /* broker: nothing dynamic */
    assert_int_equal(alter(f, 2, ADMIN_RESOURCE_BROKER, "7", false, 1, "num.partitions", "9"),
                     KAFKA_INVALID_REQUEST);
    assert_int_equal(alter(f, 2, ADMIN_RESOURCE_BROKER, "7", false, 0), KAFKA_NONE);
    assert_int_equal(alter(f, 2, ADMIN_RESOURCE_BROKER, "3", false, 0), KAFKA_INVALID_REQUEST);
}

/* ---- IncrementalAlterConfigs ---- */

struct op {
    const char *name;
    int8_t op;
    const char *value;
};

static int16_t ialter(struct fx *f, int16_t v, int8_t type, const char *name, bool validate_only,
                      int n, const struct op *ops)
{
    typedef struct kafka_incremental_alter_configs_request_alterable_config cfgent;
    cfgent *c = kafka_arena_alloc_array(&f->a, (size_t)n + 1, sizeof(cfgent), 8);
    for (int i = 0; i < n; i++)
        c[i] = (cfgent){S(ops[i].name), ops[i].op, S(ops[i].value)};
    struct kafka_incremental_alter_configs_request_alter_configs_resource r = {type, S(name), c, n};
    struct kafka_incremental_alter_configs_request rq;
    kafka_incremental_alter_configs_request_init(&rq);
    rq.resources = &r;
    rq.resources_count = 1;
    rq.validate_only = validate_only;
    struct kafka_incremental_alter_configs_response *rs = call_incremental_alter_configs(f, v, &rq);
    assert_int_equal(rs->responses_count, 1);
    if (rs->responses[0].error_code != KAFKA_NONE)
        assert_true(rs->responses[0].error_message.len > 0);
    return rs->responses[0].error_code;
}

#define IALTER(f, v, name, vo, ...)                                                                \
    ialter(f, v, ADMIN_RESOURCE_TOPIC, name, vo,                                                   \
           (int)(sizeof((struct op[]){__VA_ARGS__}) / sizeof(struct op)),                          \
           (struct op[]){__VA_ARGS__})

static void test_incremental_alter_configs(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "ic", 1, 1), KAFKA_NONE);
    /* APPEND starts from Kafka's default ("delete") when the topic has no override */
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_APPEND, "compact"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "delete,compact");
    /* appending what is there changes nothing */
    assert_int_equal(IALTER(f, 0, "ic", false, {"cleanup.policy", ADMIN_OP_APPEND, "delete"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "delete,compact");
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SUBTRACT, "delete"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "compact");
    /* subtracting what is not there changes nothing */
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SUBTRACT, "delete"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "compact");
    /* SUBTRACT of the last item leaves the empty list, which Kafka 4.x accepts (no cleanup)
     * and describes as "" from the topic override */
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SUBTRACT, "compact"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "");
    struct kafka_describe_configs_response *drs =
        describe(f, 4, ADMIN_RESOURCE_TOPIC, "ic", true, false, 1, "cleanup.policy");
    const dc_entry *de = dc_find(drs, "cleanup.policy");
    assert_non_null(de);
    assert_true(str_is(de->value, ""));
    assert_int_equal(de->config_source, LM_CONFIG_SOURCE_DYNAMIC_TOPIC);
    assert_int_equal(de->synonyms_count, 2);
    assert_true(str_is(de->synonyms[0].value, ""));
    assert_true(str_is(de->synonyms[1].name, "log.cleanup.policy"));
    assert_true(str_is(de->synonyms[1].value, "delete"));
    /* SUBTRACT from the empty list changes nothing; APPEND starts from it */
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SUBTRACT, "delete"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "");
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_APPEND, "compact"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "cleanup.policy"), "compact");
    /* Kafka 4.2's ValidList (KIP-1161): no repeated or empty items; blanks around items are
     * dropped, and DescribeConfigs shows the parsed list */
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SET, "compact,compact"}),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SET, "compact,"}),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(
        IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SET, " delete , compact "}),
        KAFKA_NONE);
    drs = describe(f, 1, ADMIN_RESOURCE_TOPIC, "ic", false, false, 1, "cleanup.policy");
    assert_true(str_is(dc_find(drs, "cleanup.policy")->value, "delete,compact"));
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_SET, "compact"}),
                     KAFKA_NONE);
    /* appending a value the list does not allow */
    assert_int_equal(IALTER(f, 1, "ic", false, {"cleanup.policy", ADMIN_OP_APPEND, "shred"}),
                     KAFKA_INVALID_CONFIG);
    /* APPEND/SUBTRACT only for list configs */
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_APPEND, "1"}),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_SUBTRACT, "1"}),
                     KAFKA_INVALID_CONFIG);
    /* SET + DELETE in one request; all or nothing */
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_SET, "60000"},
                            {"segment.ms", ADMIN_OP_SET, "1000"}),
                     KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", "retention.ms"), "60000");
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_DELETE, NULL},
                            {"segment.ms", ADMIN_OP_SET, "zero"}),
                     KAFKA_INVALID_CONFIG);
    assert_string_equal(override_of(f, "ic", "retention.ms"), "60000");
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_DELETE, NULL}),
                     KAFKA_NONE);
    assert_null(override_of(f, "ic", "retention.ms"));
    assert_string_equal(override_of(f, "ic", "segment.ms"), "1000");
    /* validate_only */
    assert_int_equal(IALTER(f, 1, "ic", true, {"retention.ms", ADMIN_OP_SET, "1"}), KAFKA_NONE);
    assert_null(override_of(f, "ic", "retention.ms"));
    /* duplicate keys, unknown op, unknown key, null SET, unknown topic */
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_SET, "1"},
                            {"retention.ms", ADMIN_OP_DELETE, NULL}),
                     KAFKA_INVALID_REQUEST);
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", 9, "1"}), KAFKA_INVALID_REQUEST);
    assert_int_equal(IALTER(f, 1, "ic", false, {"x.y", ADMIN_OP_SET, "1"}), KAFKA_INVALID_CONFIG);
    assert_int_equal(IALTER(f, 1, "ic", false, {"x.y", ADMIN_OP_DELETE, NULL}), KAFKA_NONE);
    assert_int_equal(IALTER(f, 1, "ic", false, {"retention.ms", ADMIN_OP_SET, NULL}),
                     KAFKA_INVALID_REQUEST);
    assert_int_equal(IALTER(f, 1, "zz", false, {"retention.ms", ADMIN_OP_SET, "1"}),
                     KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    /* Kafka's list edits: items split at commas, empty ones dropped, not trimmed; SUBTRACT
     * removes the first occurrence of each item */
    const char *thr = "leader.replication.throttled.replicas";
    assert_int_equal(IALTER(f, 1, "ic", false, {thr, ADMIN_OP_APPEND, "0:7,,1:7"}), KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", thr), "0:7,1:7"); /* default "" gives no item */
    assert_int_equal(IALTER(f, 1, "ic", false, {thr, ADMIN_OP_SET, "1:7,1:7,2:7"}), KAFKA_NONE);
    assert_int_equal(IALTER(f, 1, "ic", false, {thr, ADMIN_OP_SUBTRACT, "1:7"}), KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", thr), "1:7,2:7");
    assert_int_equal(IALTER(f, 1, "ic", false, {thr, ADMIN_OP_APPEND, "3:7,3:7, 4:7"}), KAFKA_NONE);
    assert_string_equal(override_of(f, "ic", thr), "1:7,2:7,3:7, 4:7");
    /* broker: a dynamic key is set, a static one refused, DELETE of what is unset a no-op */
    struct op set = {"log.retention.ms", ADMIN_OP_SET, "1"};
    struct op stat = {"num.partitions", ADMIN_OP_SET, "3"};
    struct op del = {"log.retention.ms", ADMIN_OP_DELETE, NULL};
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER, "7", false, 1, &set), KAFKA_NONE);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER, "7", false, 1, &stat),
                     KAFKA_INVALID_REQUEST);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER, "", false, 1, &del), KAFKA_NONE);
}

static void test_survives_reopen(void **state)
{
    struct fx *f = *state;
    ct_topic t = topic_req(f, "durable", 2, 1, 1, "retention.ms", "1234");
    assert_int_equal(create(f, 7, false, &t, 1)->topics[0].error_code, KAFKA_NONE);
    assert_int_equal(grow(f, 3, "durable", 5, false, -1, 0), KAFKA_NONE);
    assert_int_equal(IALTER(f, 1, "durable", false, {"cleanup.policy", ADMIN_OP_SET, "compact"}),
                     KAFKA_NONE);
    lm_meta_store_close(f->meta);
    assert_int_equal(lm_meta_store_open(f->dir, &f->meta), 0);
    f->env.meta = f->meta;
    assert_int_equal(partitions_of(f, "durable"), 5);
    assert_string_equal(override_of(f, "durable", "retention.ms"), "1234");
    assert_string_equal(override_of(f, "durable", "cleanup.policy"), "compact");
}

/* ---- DescribeCluster ---- */

static void test_describe_cluster(void **state)
{
    struct fx *f = *state;
    assert_int_equal(broker_config_set(&f->cfg, "listeners", "PLAINTEXT://127.0.0.5:9999"), 0);
    assert_int_equal(broker_config_finish(&f->cfg), 0);
    struct kafka_describe_cluster_request rq;
    kafka_describe_cluster_request_init(&rq);
    for (int16_t v = 0; v <= 2; v++) {
        struct kafka_describe_cluster_response *rs = call_describe_cluster(f, v, &rq);
        assert_int_equal(rs->error_code, KAFKA_NONE);
        assert_true(str_is(rs->cluster_id, "clusterIdTest42"));
        assert_int_equal(rs->controller_id, 7);
        assert_int_equal(rs->brokers_count, 1);
        assert_int_equal(rs->brokers[0].broker_id, 7);
        assert_true(str_is(rs->brokers[0].host, "127.0.0.5"));
        assert_int_equal(rs->brokers[0].port, 9999);
        assert_int_equal(rs->cluster_authorized_operations, INT32_MIN);
        if (v >= 1)
            assert_int_equal(rs->endpoint_type, 1);
    }
    rq.include_cluster_authorized_operations = true;
    struct kafka_describe_cluster_response *rs = call_describe_cluster(f, 0, &rq);
    assert_true(rs->cluster_authorized_operations & (1 << 8)); /* DESCRIBE */
    rq.endpoint_type = 2;
    rs = call_describe_cluster(f, 1, &rq);
    assert_int_equal(rs->error_code, KAFKA_MISMATCHED_ENDPOINT_TYPE);
    assert_int_equal(rs->brokers_count, 0);
}

/* ---- ACLs without an authorizer ---- */

static void test_acls_security_disabled(void **state)
{
    struct fx *f = *state;
    for (int16_t v = ADMIN_DESCRIBE_ACLS_MIN; v <= ADMIN_DESCRIBE_ACLS_MAX; v++) {
        struct kafka_describe_acls_request d;
        kafka_describe_acls_request_init(&d);
        d.resource_type_filter = 1; /* ANY */
        d.pattern_type_filter = 1;
        d.operation = 1;
        d.permission_type = 1;
        struct kafka_describe_acls_response *drs = call_describe_acls(f, v, &d);
        assert_int_equal(drs->error_code, KAFKA_SECURITY_DISABLED);
        assert_true(str_is(drs->error_message, "No Authorizer is configured on the broker"));
        assert_int_equal(drs->resources_count, 0);

        struct kafka_create_acls_request_acl_creation cr[3] = {
            {2, S("t"), 3, S("User:a"), S("*"), 3, 3},
            {3, S("g"), 4, S("User:b"), S("h"), 2, 2},
            {4, S("kafka-cluster"), 3, S("User:c"), S("*"), 7, 3},
        };
        struct kafka_create_acls_request c;
        kafka_create_acls_request_init(&c);
        c.creations = cr;
        c.creations_count = 3;
        struct kafka_create_acls_response *crs = call_create_acls(f, v, &c);
        assert_int_equal(crs->results_count, 3);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(crs->results[i].error_code, KAFKA_SECURITY_DISABLED);
            assert_true(str_is(crs->results[i].error_message, "No Authorizer is configured."));
        }

        struct kafka_delete_acls_request_delete_acls_filter fl[2] = {
            {1, KAFKA_STR_NULL, 1, KAFKA_STR_NULL, KAFKA_STR_NULL, 1, 1},
            {2, S("t"), 3, S("User:a"), KAFKA_STR_NULL, 3, 3},
        };
        struct kafka_delete_acls_request del;
        kafka_delete_acls_request_init(&del);
        del.filters = fl;
        del.filters_count = 2;
        struct kafka_delete_acls_response *xrs = call_delete_acls(f, v, &del);
        assert_int_equal(xrs->filter_results_count, 2);
        for (int i = 0; i < 2; i++) {
            assert_int_equal(xrs->filter_results[i].error_code, KAFKA_SECURITY_DISABLED);
            assert_true(
                str_is(xrs->filter_results[i].error_message, "No Authorizer is configured."));
            assert_int_equal(xrs->filter_results[i].matching_acls_count, 0);
        }
        /* empty requests: no results, no error */
        c.creations_count = 0;
        assert_int_equal(call_create_acls(f, v, &c)->results_count, 0);
        del.filters_count = 0;
        assert_int_equal(call_delete_acls(f, v, &del)->filter_results_count, 0);

        /* UNKNOWN (0) anywhere: Kafka cannot parse the request (the wrapper closes) */
        struct kafka_describe_acls_response rs;
        kafka_describe_acls_response_init(&rs);
        d.permission_type = 0;
        assert_int_equal(admin_describe_acls(&f->env, v, &d, &rs, &f->a), LM_E_INVALID);
        cr[1].resource_type = 0;
        c.creations_count = 3;
        struct kafka_create_acls_response crs2;
        kafka_create_acls_response_init(&crs2);
        assert_int_equal(admin_create_acls(&f->env, v, &c, &crs2, &f->a), LM_E_INVALID);
        fl[1].pattern_type_filter = 0;
        del.filters_count = 2;
        struct kafka_delete_acls_response xrs2;
        kafka_delete_acls_response_init(&xrs2);
        assert_int_equal(admin_delete_acls(&f->env, v, &del, &xrs2, &f->a), LM_E_INVALID);
    }
}

/* ---- ACLs with the authorizer on ---- */

static struct kafka_describe_acls_response *describe_all(struct fx *f, int16_t v)
{
    struct kafka_describe_acls_request d;
    kafka_describe_acls_request_init(&d);
    d.resource_type_filter = AUTHZ_RES_ANY;
    d.pattern_type_filter = AUTHZ_PAT_ANY;
    d.operation = AUTHZ_OP_ANY;
    d.permission_type = AUTHZ_PERM_ANY;
    return call_describe_acls(f, v, &d);
}

static void test_acls_stored(void **state)
{
    struct fx *f = *state;
    struct authz_config cfg;
    const char *why = NULL;
    assert_int_equal(authz_config_parse(&cfg,
                                        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                                        "User:admin", NULL, &why),
                     0);
    f->env.authz = &cfg;
    f->env.who = (struct authz_subject){.principal = "User:admin", .host = "127.0.0.1"};
    int16_t v = ADMIN_CREATE_ACLS_MAX;
    /* three good bindings (two on one resource), the same one again, and Kafka's refusals */
    struct kafka_create_acls_request_acl_creation cr[7] = {
        {AUTHZ_RES_TOPIC, S("t"), AUTHZ_PAT_LITERAL, S("User:a"), S("*"), AUTHZ_OP_READ,
         AUTHZ_PERM_ALLOW},
        {AUTHZ_RES_TOPIC, S("t"), AUTHZ_PAT_LITERAL, S("User:b"), S("*"), AUTHZ_OP_WRITE,
         AUTHZ_PERM_DENY},
        {AUTHZ_RES_GROUP, S("g-"), AUTHZ_PAT_PREFIXED, S("User:a"), S("*"), AUTHZ_OP_READ,
         AUTHZ_PERM_ALLOW},
        {AUTHZ_RES_TOPIC, S("t"), AUTHZ_PAT_LITERAL, S("User:a"), S("*"), AUTHZ_OP_READ,
         AUTHZ_PERM_ALLOW},
        {AUTHZ_RES_CLUSTER, S("other"), AUTHZ_PAT_LITERAL, S("User:a"), S("*"), AUTHZ_OP_ALTER,
         AUTHZ_PERM_ALLOW},
        {AUTHZ_RES_TOPIC, S("t"), AUTHZ_PAT_MATCH, S("User:a"), S("*"), AUTHZ_OP_READ,
         AUTHZ_PERM_ALLOW},
        {AUTHZ_RES_TOPIC, S("t"), AUTHZ_PAT_LITERAL, S("nocolon"), S("*"), AUTHZ_OP_READ,
         AUTHZ_PERM_ALLOW},
    };
    struct kafka_create_acls_request c;
    kafka_create_acls_request_init(&c);
    c.creations = cr;
    c.creations_count = 7;
    struct kafka_create_acls_response *crs = call_create_acls(f, v, &c);
    assert_int_equal(crs->results_count, 7);
    for (int i = 0; i < 4; i++)
        assert_int_equal(crs->results[i].error_code, KAFKA_NONE);
    for (int i = 4; i < 7; i++)
        assert_int_equal(crs->results[i].error_code, KAFKA_INVALID_REQUEST);
    assert_true(str_is(crs->results[4].error_message,
                       "The only valid name for the CLUSTER resource is kafka-cluster"));
    /* described grouped by resource: (TOPIC, t, LITERAL) with two, (GROUP, g-, PREFIXED) */
    struct kafka_describe_acls_response *drs = describe_all(f, ADMIN_DESCRIBE_ACLS_MAX);
    assert_int_equal(drs->error_code, KAFKA_NONE);
    assert_int_equal(drs->resources_count, 2);
    int topic = drs->resources[0].resource_type == AUTHZ_RES_TOPIC ? 0 : 1;
    assert_true(str_is(drs->resources[topic].resource_name, "t"));
    assert_int_equal(drs->resources[topic].acls_count, 2);
    assert_int_equal(drs->resources[1 - topic].pattern_type, AUTHZ_PAT_PREFIXED);
    /* a MATCH filter for group "g-1" finds the prefix */
    struct kafka_describe_acls_request d;
    kafka_describe_acls_request_init(&d);
    d.resource_type_filter = AUTHZ_RES_GROUP;
    d.resource_name_filter = S("g-1");
    d.pattern_type_filter = AUTHZ_PAT_MATCH;
    d.operation = AUTHZ_OP_ANY;
    d.permission_type = AUTHZ_PERM_ANY;
    drs = call_describe_acls(f, ADMIN_DESCRIBE_ACLS_MAX, &d);
    assert_int_equal(drs->resources_count, 1);
    /* a principal that is not a super user and has no ACL on the cluster */
    f->env.who.principal = "User:a";
    drs = describe_all(f, ADMIN_DESCRIBE_ACLS_MAX);
    assert_int_equal(drs->error_code, KAFKA_CLUSTER_AUTHORIZATION_FAILED);
    c.creations_count = 1;
    crs = call_create_acls(f, v, &c);
    assert_int_equal(crs->results[0].error_code, KAFKA_CLUSTER_AUTHORIZATION_FAILED);
    f->env.who.principal = "User:admin";
    /* delete: two filters matching one binding each list it, it goes once */
    struct kafka_delete_acls_request_delete_acls_filter fl[2] = {
        {AUTHZ_RES_TOPIC, S("t"), AUTHZ_PAT_ANY, S("User:b"), KAFKA_STR_NULL, AUTHZ_OP_ANY,
         AUTHZ_PERM_ANY},
        {AUTHZ_RES_ANY, KAFKA_STR_NULL, AUTHZ_PAT_ANY, KAFKA_STR_NULL, KAFKA_STR_NULL,
         AUTHZ_OP_WRITE, AUTHZ_PERM_DENY},
    };
    struct kafka_delete_acls_request del;
    kafka_delete_acls_request_init(&del);
    del.filters = fl;
    del.filters_count = 2;
    struct kafka_delete_acls_response *xrs = call_delete_acls(f, ADMIN_DELETE_ACLS_MAX, &del);
    assert_int_equal(xrs->filter_results_count, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(xrs->filter_results[i].error_code, KAFKA_NONE);
        assert_int_equal(xrs->filter_results[i].matching_acls_count, 1);
        assert_int_equal(xrs->filter_results[i].matching_acls[0].error_code, KAFKA_NONE);
        assert_true(str_is(xrs->filter_results[i].matching_acls[0].principal, "User:b"));
    }
    drs = describe_all(f, ADMIN_DESCRIBE_ACLS_MAX);
    assert_int_equal(drs->resources_count, 2);
    assert_int_equal(drs->resources[topic].acls_count, 1);
    /* the store keeps them: reopened, the same two bindings */
    lm_meta_store_close(f->meta);
    assert_int_equal(lm_meta_store_open(f->dir, &f->meta), 0);
    f->env.meta = f->meta;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    assert_int_equal(snap->state.acl_count, 2);
    lm_meta_snapshot_release(snap);
    f->env.authz = NULL;
}

/* ---- BROKER_LOGGER ---- */

static void test_broker_logger(void **state)
{
    struct fx *f = *state;
    enum broker_log_level before = broker_log_get_level();
    broker_log_set_level(BROKER_LOG_INFO);
    struct kafka_describe_configs_response *rs =
        describe(f, 4, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, false, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    assert_int_equal(rs->results[0].configs_count, 1);
    assert_true(str_is(rs->results[0].configs[0].name, "root"));
    assert_true(str_is(rs->results[0].configs[0].value, "INFO"));
    assert_int_equal(rs->results[0].configs[0].config_source, 6);
    assert_false(rs->results[0].configs[0].read_only);
    rs = describe(f, 4, ADMIN_RESOURCE_BROKER_LOGGER, "", false, false, -1);
    assert_int_equal(rs->results[0].error_code, KAFKA_INVALID_REQUEST);

    /* validate_only checks but changes nothing */
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", true, 1,
                            (struct op[]){{"root", ADMIN_OP_SET, "DEBUG"}}),
                     KAFKA_NONE);
    assert_int_equal(broker_log_get_level(), BROKER_LOG_INFO);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, 1,
                            (struct op[]){{"root", ADMIN_OP_SET, "TRACE"}}),
                     KAFKA_NONE);
    assert_int_equal(broker_log_get_level(), BROKER_LOG_DEBUG);
    rs = describe(f, 4, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, false, 1, "root");
    assert_true(str_is(rs->results[0].configs[0].value, "DEBUG"));
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, 1,
                            (struct op[]){{"root", ADMIN_OP_SET, "VERBOSE"}}),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, 1,
                            (struct op[]){{"kafka.server", ADMIN_OP_SET, "INFO"}}),
                     KAFKA_INVALID_CONFIG);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, 1,
                            (struct op[]){{"root", ADMIN_OP_DELETE, NULL}}),
                     KAFKA_INVALID_REQUEST);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, 1,
                            (struct op[]){{"root", ADMIN_OP_APPEND, "INFO"}}),
                     KAFKA_INVALID_REQUEST);
    /* a failing operation applies none of the set */
    assert_int_equal(
        ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "7", false, 2,
               (struct op[]){{"root", ADMIN_OP_SET, "ERROR"}, {"root", ADMIN_OP_SET, "LOUD"}}),
        KAFKA_INVALID_CONFIG);
    assert_int_equal(broker_log_get_level(), BROKER_LOG_DEBUG);
    assert_int_equal(ialter(f, 1, ADMIN_RESOURCE_BROKER_LOGGER, "8", false, 1,
                            (struct op[]){{"root", ADMIN_OP_SET, "INFO"}}),
                     KAFKA_INVALID_REQUEST);
    broker_log_set_level(before);
}

/* ---- DescribeLogDirs ---- */

static void write_file(const char *dir, const char *name, size_t size)
{
    char path[1024];
    int n = snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_true(n > 0 && (size_t)n < sizeof(path));
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    for (size_t i = 0; i < size; i++)
        fputc('x', fp);
    fclose(fp);
}

static void test_describe_log_dirs(void **state)
{
    struct fx *f = *state;
    assert_int_equal(broker_config_set(&f->cfg, "log.dirs", f->dir), 0);
    assert_int_equal(create_one(f, 7, "ld", 3, 1), KAFKA_NONE);
    assert_int_equal(create_one(f, 7, "other", 1, 1), KAFKA_NONE);
    char d[512];
    snprintf(d, sizeof(d), "%s/ld-0", f->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    write_file(d, "00000000000000000000.log", 100);
    write_file(d, "00000000000000000007.log", 23);
    write_file(d, "00000000000000000007.index", 4096);
    write_file(d, "00000000000000000003.log.swap", 999); /* not a live segment */
    snprintf(d, sizeof(d), "%s/ld-2", f->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    snprintf(d, sizeof(d), "%s/other-0", f->dir);
    assert_int_equal(mkdir(d, 0755), 0);
    write_file(d, "00000000000000000000.log", 5);
    /* ld-1 has no directory: not in the log dir */

    struct kafka_describe_log_dirs_request rq;
    kafka_describe_log_dirs_request_init(&rq);
    rq.topics_count = -1;
    for (int16_t v = ADMIN_DESCRIBE_LOG_DIRS_MIN; v <= ADMIN_DESCRIBE_LOG_DIRS_MAX; v++) {
        struct kafka_describe_log_dirs_response *rs = call_describe_log_dirs(f, v, &rq);
        assert_int_equal(rs->error_code, KAFKA_NONE);
        assert_int_equal(rs->results_count, 1);
        const struct kafka_describe_log_dirs_response_describe_log_dirs_result *r = &rs->results[0];
        assert_int_equal(r->error_code, KAFKA_NONE);
        char abs[PATH_MAX];
        assert_non_null(realpath(f->dir, abs));
        assert_true(str_is(r->log_dir, abs));
        if (v >= 4)
            assert_true(r->total_bytes > 0 && r->usable_bytes >= 0 &&
                        r->usable_bytes <= r->total_bytes);
        else
            assert_int_equal(r->total_bytes, -1);
        assert_int_equal(r->topics_count, 2);
        int64_t sizes[3] = {-1, -1, -1};
        for (int32_t t = 0; t < r->topics_count; t++) {
            for (int32_t p = 0; p < r->topics[t].partitions_count; p++) {
                const struct kafka_describe_log_dirs_response_describe_log_dirs_partition *pp =
                    &r->topics[t].partitions[p];
                assert_int_equal(pp->offset_lag, 0);
                assert_false(pp->is_future_key);
                if (str_is(r->topics[t].name, "ld"))
                    sizes[pp->partition_index] = pp->partition_size;
                else
                    assert_int_equal(pp->partition_size, 5);
            }
        }
        assert_int_equal(sizes[0], 123);
        assert_int_equal(sizes[1], -1);
        assert_int_equal(sizes[2], 0);
    }
    /* a filter: ld partitions 2 and 1 and a topic that does not exist */
    struct kafka_describe_log_dirs_request_describable_log_dir_topic want[2] = {
        {S("ld"), (int32_t[]){2, 1}, 2}, {S("nope"), (int32_t[]){0}, 1}};
    rq.topics = want;
    rq.topics_count = 2;
    struct kafka_describe_log_dirs_response *rs = call_describe_log_dirs(f, 4, &rq);
    assert_int_equal(rs->results[0].topics_count, 1);
    assert_true(str_is(rs->results[0].topics[0].name, "ld"));
    assert_int_equal(rs->results[0].topics[0].partitions_count, 1);
    assert_int_equal(rs->results[0].topics[0].partitions[0].partition_index, 2);
    /* a topic named twice: the union of its entries; out-of-range indexes find no log */
    struct kafka_describe_log_dirs_request_describable_log_dir_topic twice[3] = {
        {S("ld"), (int32_t[]){2}, 1},
        {S("nope"), (int32_t[]){0}, 1},
        {S("ld"), (int32_t[]){0, 99, -1}, 3}};
    rq.topics = twice;
    rq.topics_count = 3;
    rs = call_describe_log_dirs(f, 3, &rq);
    assert_int_equal(rs->results[0].topics_count, 1);
    assert_int_equal(rs->results[0].topics[0].partitions_count, 2);
    assert_int_equal(rs->results[0].topics[0].partitions[0].partition_index, 0);
    assert_int_equal(rs->results[0].topics[0].partitions[0].partition_size, 123);
    assert_int_equal(rs->results[0].topics[0].partitions[1].partition_index, 2);
    /* an empty filter asks for nothing */
    rq.topics_count = 0;
    rs = call_describe_log_dirs(f, 2, &rq);
    assert_int_equal(rs->results[0].topics_count, 0);
}

/* ---- features ---- */

static void test_features(void **state)
{
    struct fx *f = *state;
    struct kafka_api_versions_response av;
    kafka_api_versions_response_init(&av);
    assert_int_equal(admin_features_fill(&f->env, 4, &av, &f->a), 0);
    bool mv = false;
    for (int32_t i = 0; i < av.supported_features_count; i++) {
        if (str_is(av.supported_features[i].name, "metadata.version")) {
            mv = true;
            assert_int_equal(av.supported_features[i].min_version, 7);
            assert_int_equal(av.supported_features[i].max_version, 27);
        }
    }
    assert_true(mv);
    /* group.version 1: KIP-848 consumer groups are served; share.version 1: KIP-932 share
     * groups are served; transaction.version 2 (KIP-890 part 2) on a new cluster */
    assert_int_equal(av.finalized_features_count, 4);
    assert_true(str_is(av.finalized_features[0].name, "group.version"));
    assert_int_equal(av.finalized_features[0].max_version_level, 1);
    assert_true(str_is(av.finalized_features[1].name, "metadata.version"));
    assert_int_equal(av.finalized_features[1].max_version_level, 27);
    assert_true(str_is(av.finalized_features[2].name, "share.version"));
    assert_int_equal(av.finalized_features[2].max_version_level, 1);
    assert_true(str_is(av.finalized_features[3].name, "transaction.version"));
    assert_int_equal(av.finalized_features[3].max_version_level, 2);
    assert_true(av.finalized_features_epoch >= 0);
    assert_int_equal(av.supported_features_count, 4);
    assert_true(str_is(av.supported_features[0].name, "group.version"));
    assert_int_equal(av.supported_features[0].min_version, 0);
    assert_int_equal(av.supported_features[0].max_version, 1);
    /* v3: no range may start at 0 (KAFKA-17011): 0-1 is sent as 1-1, 0-2 as 1-2 */
    kafka_api_versions_response_init(&av);
    assert_int_equal(admin_features_fill(&f->env, 3, &av, &f->a), 0);
    assert_int_equal(av.supported_features_count, 4);
    assert_true(str_is(av.supported_features[0].name, "group.version"));
    assert_int_equal(av.supported_features[0].min_version, 1);
    assert_true(str_is(av.supported_features[1].name, "metadata.version"));
    assert_true(str_is(av.supported_features[2].name, "share.version"));
    assert_int_equal(av.supported_features[2].min_version, 1);
    assert_true(str_is(av.supported_features[3].name, "transaction.version"));
    assert_int_equal(av.supported_features[3].min_version, 1);
    assert_int_equal(av.supported_features[3].max_version, 2);

    typedef struct kafka_update_features_request_feature_update_key fu;
    struct kafka_update_features_request rq;
    kafka_update_features_request_init(&rq);
    fu same[1] = {{S("metadata.version"), 27, false, 1}};
    rq.feature_updates = same;
    rq.feature_updates_count = 1;
    for (int16_t v = 0; v <= 2; v++) {
        struct kafka_update_features_response *rs = call_update_features(f, v, &rq);
        assert_int_equal(rs->error_code, KAFKA_NONE);
        if (v < 2) {
            assert_int_equal(rs->results_count, 1);
            assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
        }
    }
    fu bad[2] = {{S("metadata.version"), 20, false, 2}, {S("transaction.version"), 3, false, 1}};
    rq.feature_updates = bad;
    rq.feature_updates_count = 2;
    struct kafka_update_features_response *rs = call_update_features(f, 1, &rq);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->results_count, 2);
    assert_int_equal(rs->results[0].error_code, KAFKA_INVALID_UPDATE_VERSION);
    assert_int_equal(rs->results[1].error_code, KAFKA_INVALID_UPDATE_VERSION);
    assert_true(rs->results[1].error_message.len > 0);
    rs = call_update_features(f, 2, &rq);
    assert_int_equal(rs->error_code, KAFKA_INVALID_UPDATE_VERSION);
    assert_true(rs->error_message.len > 0);
    /* a downgrade with the upgrade-only type */
    fu down[1] = {{S("metadata.version"), 26, false, 1}};
    rq.feature_updates = down;
    rq.feature_updates_count = 1;
    rs = call_update_features(f, 1, &rq);
    assert_int_equal(rs->results[0].error_code, KAFKA_INVALID_UPDATE_VERSION);
    /* transaction.version moves: a downgrade needs its type, validate_only changes nothing,
     * the level is in the metadata (ApiVersions follows), 0 leaves the finalized list */
    fu tv[1] = {{S("transaction.version"), 1, false, 1}};
    rq.feature_updates = tv;
    rs = call_update_features(f, 1, &rq);
    assert_int_equal(rs->results[0].error_code, KAFKA_INVALID_UPDATE_VERSION);
    tv[0].upgrade_type = 2;
    rq.validate_only = true;
    rs = call_update_features(f, 1, &rq);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    assert_int_equal(lm_meta_state_transaction_version(&snap->state), 2);
    lm_meta_snapshot_release(snap);
    rq.validate_only = false;
    rs = call_update_features(f, 1, &rq);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    snap = lm_meta_store_snapshot(f->meta);
    assert_int_equal(snap->state.transaction_version, 1);
    /* a metadata snapshot carries the level (a cluster node rebuilt from it finalizes 1) */
    uint8_t *img = NULL;
    size_t img_len = 0;
    assert_int_equal(meta_snapshot_encode(&snap->state, 7, &img, &img_len), 0);
    lm_meta_snapshot_release(snap);
    char dir[] = "/tmp/lm-features-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct lm_meta_store *other = NULL;
    assert_int_equal(lm_meta_store_open(dir, &other), 0);
    assert_int_equal(lm_meta_store_set_cluster(other, 1), 0);
    int64_t last = -1;
    assert_int_equal(meta_snapshot_load(other, img, img_len, &last), 0);
    snap = lm_meta_store_snapshot(other);
    assert_int_equal(lm_meta_state_transaction_version(&snap->state), 1);
    lm_meta_snapshot_release(snap);
    lm_meta_store_close(other);
    free(img);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
    kafka_api_versions_response_init(&av);
    assert_int_equal(admin_features_fill(&f->env, 4, &av, &f->a), 0);
    assert_int_equal(av.finalized_features_count, 4);
    assert_int_equal(av.finalized_features[3].max_version_level, 1);
    tv[0].max_version_level = 0;
    rs = call_update_features(f, 1, &rq);
    assert_int_equal(rs->results[0].error_code, KAFKA_NONE);
    kafka_api_versions_response_init(&av);
    assert_int_equal(admin_features_fill(&f->env, 4, &av, &f->a), 0);
    assert_int_equal(av.finalized_features_count, 3);
    tv[0].max_version_level = 2;
    tv[0].upgrade_type = 1;
    rs = call_update_features(f, 2, &rq);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    snap = lm_meta_store_snapshot(f->meta);
    assert_int_equal(lm_meta_state_transaction_version(&snap->state), 2);
    lm_meta_snapshot_release(snap);
}

/* ---- DescribeTopicPartitions ---- */

typedef struct kafka_describe_topic_partitions_response dtp_rs;

static dtp_rs *dtp(struct fx *f, int n, const char **names, int32_t limit, const char *ctopic,
                   int32_t cpart)
{
    struct kafka_describe_topic_partitions_request rq;
    kafka_describe_topic_partitions_request_init(&rq);
    rq.topics = kafka_arena_alloc_array(&f->a, (size_t)n + 1, sizeof(*rq.topics), 8);
    for (int i = 0; i < n; i++)
        rq.topics[i].name = S(names[i]);
    rq.topics_count = n;
    rq.response_partition_limit = limit;
    rq.cursor_null = ctopic == NULL;
    if (ctopic != NULL) {
        rq.cursor.topic_name = S(ctopic);
        rq.cursor.partition_index = cpart;
    }
    return call_describe_topic_partitions(f, 0, &rq);
}

static void test_describe_topic_partitions(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "b-topic", 3, 1), KAFKA_NONE);
    assert_int_equal(create_one(f, 7, "a-topic", 2, 1), KAFKA_NONE);
    assert_int_equal(create_one(f, 7, "c-topic", 1, 1), KAFKA_NONE);
    /* all topics, sorted, one page */
    dtp_rs *rs = dtp(f, 0, NULL, 2000, NULL, 0);
    assert_int_equal(rs->topics_count, 3);
    assert_true(str_is(rs->topics[0].name, "a-topic"));
    assert_true(str_is(rs->topics[1].name, "b-topic"));
    assert_int_equal(rs->topics[1].partitions_count, 3);
    assert_int_equal(rs->topics[1].partitions[2].partition_index, 2);
    assert_int_equal(rs->topics[1].partitions[2].leader_id, 7);
    /* Each partition's own epoch, as the owner registered it (h_partition_epoch). */
    assert_int_equal(rs->topics[1].partitions[2].leader_epoch, 12);
    assert_int_equal(rs->topics[1].partitions[1].leader_epoch, 1);
    assert_int_equal(rs->topics[1].partitions[2].isr_nodes_count, 1);
    assert_int_equal(rs->topics[1].partitions[2].eligible_leader_replicas_count, 0);
    assert_false(kafka_uuid_is_zero(&rs->topics[1].topic_id));
    assert_true(rs->next_cursor_null);
    /* pages of 2 partitions: a-0 a-1 | b-0 b-1 | b-2 c-0 */
    const char *ab[] = {"b-topic", "a-topic", "c-topic", "zz-missing"};
    rs = dtp(f, 4, ab, 2, NULL, 0);
    assert_int_equal(rs->topics_count, 1);
    assert_true(str_is(rs->topics[0].name, "a-topic"));
    assert_false(rs->next_cursor_null);
    assert_true(str_is(rs->next_cursor.topic_name, "b-topic"));
    assert_int_equal(rs->next_cursor.partition_index, 0);
    rs = dtp(f, 4, ab, 2, "b-topic", 0);
    assert_int_equal(rs->topics_count, 1);
    assert_int_equal(rs->topics[0].partitions_count, 2);
    assert_true(str_is(rs->next_cursor.topic_name, "b-topic"));
    assert_int_equal(rs->next_cursor.partition_index, 2);
    rs = dtp(f, 4, ab, 2, "b-topic", 2);
    assert_int_equal(rs->topics_count, 2);
    assert_int_equal(rs->topics[0].partitions[0].partition_index, 2);
    assert_true(str_is(rs->topics[1].name, "c-topic"));
    assert_false(rs->next_cursor_null);
    assert_true(str_is(rs->next_cursor.topic_name, "zz-missing"));
    rs = dtp(f, 4, ab, 2, "zz-missing", 0);
    assert_int_equal(rs->topics_count, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_true(rs->next_cursor_null);
    /* a cursor on a topic not asked for: the request is refused */
    const char *one[] = {"a-topic"};
    rs = dtp(f, 1, one, 10, "b-topic", 0);
    assert_int_equal(rs->topics_count, 1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_REQUEST);
    rs = dtp(f, 1, one, 10, "a-topic", -1);
    assert_int_equal(rs->topics[0].error_code, KAFKA_INVALID_REQUEST);
}

/* ---- a cluster node: changes are queued for the controller (env.defer) ---- */

/* Nodes 1-4 registered, topic "r" with 2 partitions on {1,2,3} and {2,3,1}. */
static int fx_setup_cluster(void **state)
{
    fx_setup(state);
    struct fx *f = *state;
    assert_int_equal(lm_meta_store_set_cluster(f->meta, 7), 0);
    for (int32_t id = 1; id <= 4; id++) {
        struct lm_meta_record r = {.type = LM_META_BROKER_REGISTER,
                                   .broker_id = id,
                                   .incarnation = 1,
                                   .rack = "",
                                   .endpoints = "PLAINTEXT://127.0.0.1:9092"};
        assert_int_equal(lm_meta_store_apply(f->meta, &r), 0);
    }
    int32_t rep[] = {1, 2, 3, 2, 3, 1};
    struct lm_meta_record t = {.type = LM_META_TOPIC_CREATE,
                               .topic = "r",
                               .partition_count = 2,
                               .replicas = rep,
                               .replication_factor = 3};
    memset(t.topic_id, 3, 16);
    assert_int_equal(lm_meta_store_apply(f->meta, &t), 0);
    f->env.defer = &f->defer;
    return 0;
}

/* Applies the queued records as the controller would, in order; returns how many there were. */
static uint32_t apply_deferred(struct fx *f)
{
    uint32_t n = 0;
    for (struct admin_defer_item *it = f->defer.head; it != NULL; it = it->next, n++) {
        struct lm_meta_record r;
        struct lm_config_entry *c;
        assert_int_equal(lm_meta_record_decode(it->rec, it->len, &r, &c), 0);
        assert_int_equal(lm_meta_store_apply(f->meta, &r), 0);
        lm_meta_record_free(&r);
    }
    f->defer = (struct admin_defer){0};
    return n;
}

/* max.broker.partitions in a cluster bounds the replicas a node holds: the busiest live node's
 * plus its even share of the new ones (placement spreads them over the live nodes), not the
 * partitions of the whole cluster. */
static void test_partition_limit_cluster(void **state)
{
    struct fx *f = *state;
    lm_meta_store_set_partition_limit(f->meta, 10);
    /* nodes 1-3 hold 2 replicas of "r" each, node 4 none; 12 x 3 = 36 new replicas are 9 a
     * node: 11 on the busiest */
    ct_topic t = topic_req(f, "big", 12, 3, 0);
    for (int validate = 1; validate >= 0; validate--) {
        struct kafka_create_topics_response *rs = create(f, 7, validate, &t, 1);
        assert_int_equal(rs->topics[0].error_code, KAFKA_POLICY_VIOLATION);
        assert_non_null(strstr(rs->topics[0].error_message.ptr,
                               "would give a node 11 partitions, more than "
                               "max.broker.partitions=10"));
    }
    assert_int_equal(apply_deferred(f), 0);
    /* 10 x 3: 12 partitions in the cluster, past the limit as a single node counts, but 30
     * replicas over 4 nodes are at most 8 a node: 10 on the busiest */
    assert_int_equal(create_one(f, 7, "fits", 10, 3), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    assert_int_equal(partitions_of(f, "fits"), 10);
    /* now the busiest holds at least 2 + 30 / 4: one more partition of 3 passes it */
    assert_int_equal(grow(f, 3, "fits", 11, false, -1, 0), KAFKA_POLICY_VIOLATION);
    assert_int_equal(apply_deferred(f), 0);
    assert_int_equal(partitions_of(f, "fits"), 10);
}

typedef struct kafka_alter_partition_reassignments_request_reassignable_partition ra_part;

/* One AlterPartitionReassignments of one partition of topic (replicas n < 0: cancel). */
static int16_t reassign(struct fx *f, int16_t v, const char *topic, int32_t partition,
                        const int32_t *replicas, int32_t n, bool allow_rf)
{
    ra_part p = {.partition_index = partition, .replicas = NULL, .replicas_count = -1};
    if (n >= 0) {
        p.replicas = kafka_arena_alloc_array(&f->a, n > 0 ? (size_t)n : 1, sizeof(int32_t), 4);
        if (n > 0)
            memcpy(p.replicas, replicas, (size_t)n * sizeof(int32_t));
        p.replicas_count = n;
    }
    struct kafka_alter_partition_reassignments_request_reassignable_topic t = {
        .name = S(topic), .partitions = &p, .partitions_count = 1};
    struct kafka_alter_partition_reassignments_request rq;
    kafka_alter_partition_reassignments_request_init(&rq);
    rq.allow_replication_factor_change = allow_rf;
    rq.topics = &t;
    rq.topics_count = 1;
    struct kafka_alter_partition_reassignments_response *rs =
        call_alter_partition_reassignments(f, v, &rq);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->responses_count, 1);
    assert_true(str_is(rs->responses[0].name, topic));
    assert_int_equal(rs->responses[0].partitions_count, 1);
    assert_int_equal(rs->responses[0].partitions[0].partition_index, partition);
    if (rs->responses[0].partitions[0].error_code != KAFKA_NONE)
        assert_true(rs->responses[0].partitions[0].error_message.len > 0);
    return rs->responses[0].partitions[0].error_code;
}

static struct kafka_list_partition_reassignments_response *list_all(struct fx *f)
{
    struct kafka_list_partition_reassignments_request rq;
    kafka_list_partition_reassignments_request_init(&rq);
    assert_int_equal(rq.topics_count, -1); /* null: every reassignment */
    return call_list_partition_reassignments(f, 0, &rq);
}

/* KIP-455 in Kafka's terms: errors per partition, one record per accepted partition, the
 * listing from the image (replicas = target then the leaving ones), cancel back to the
 * original replicas. */
static void test_reassignments(void **state)
{
    struct fx *f = *state;
    int32_t to4[] = {1, 2, 4}, empty[] = {0}, unknown[] = {2, 9}, dup[] = {2, 2, 3};
    int32_t two[] = {1, 2};
    assert_int_equal(reassign(f, 1, "r", 1, empty, 0, true), KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(reassign(f, 1, "r", 1, unknown, 2, true), KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(reassign(f, 1, "r", 1, dup, 3, true), KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(reassign(f, 1, "r", 2, to4, 3, true), KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_int_equal(reassign(f, 1, "nope", 0, to4, 3, true), KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_int_equal(reassign(f, 1, "r", 1, two, 2, false), KAFKA_INVALID_REPLICATION_FACTOR);
    assert_int_equal(reassign(f, 1, "r", 1, NULL, -1, true), KAFKA_NO_REASSIGNMENT_IN_PROGRESS);
    /* the current replicas as the target: nothing to do, nothing sent */
    int32_t same[] = {1, 2, 3};
    assert_int_equal(reassign(f, 0, "r", 0, same, 3, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 0);
    assert_int_equal(list_all(f)->topics_count, 0);

    /* replace node 3 by node 4 in partition 0 (v0: replica count changes allowed) */
    assert_int_equal(reassign(f, 0, "r", 0, to4, 3, false), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    struct kafka_list_partition_reassignments_response *ls = list_all(f);
    assert_int_equal(ls->error_code, KAFKA_NONE);
    assert_int_equal(ls->topics_count, 1);
    assert_true(str_is(ls->topics[0].name, "r"));
    assert_int_equal(ls->topics[0].partitions_count, 1);
    const struct kafka_list_partition_reassignments_response_ongoing_partition_reassignment *op =
        &ls->topics[0].partitions[0];
    assert_int_equal(op->partition_index, 0);
    int32_t want[] = {1, 2, 4, 3};
    assert_int_equal(op->replicas_count, 4);
    assert_memory_equal(op->replicas, want, sizeof(want));
    assert_int_equal(op->adding_replicas_count, 1);
    assert_int_equal(op->adding_replicas[0], 4);
    assert_int_equal(op->removing_replicas_count, 1);
    assert_int_equal(op->removing_replicas[0], 3);
    /* the same request again changes nothing */
    assert_int_equal(reassign(f, 1, "r", 0, to4, 3, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 0);
    /* listing by name: partition 1 has none, 0 has one; unknown names list nothing */
    struct kafka_list_partition_reassignments_request_list_partition_reassignments_topics lt[2];
    int32_t parts[] = {1, 0, 0};
    lt[0] =
        (typeof(lt[0])){.name = S("r"), .partition_indexes = parts, .partition_indexes_count = 3};
    int32_t p0[] = {0};
    lt[1] =
        (typeof(lt[1])){.name = S("nope"), .partition_indexes = p0, .partition_indexes_count = 1};
    struct kafka_list_partition_reassignments_request lrq;
    kafka_list_partition_reassignments_request_init(&lrq);
    lrq.topics = lt;
    lrq.topics_count = 2;
    ls = call_list_partition_reassignments(f, 0, &lrq);
    assert_int_equal(ls->topics_count, 1);
    assert_int_equal(ls->topics[0].partitions_count, 1);
    assert_int_equal(ls->topics[0].partitions[0].partition_index, 0);

    /* cancel: back to the original replicas; node 4, which was being added (its Raft group
     * may count it as a voter already), leaves as a removed replica, through the leader's
     * configuration changes: listed until the leader reports that move done */
    assert_int_equal(reassign(f, 1, "r", 0, NULL, -1, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    ls = list_all(f);
    assert_int_equal(ls->topics_count, 1);
    op = &ls->topics[0].partitions[0];
    int32_t back[] = {1, 2, 3, 4};
    assert_int_equal(op->replicas_count, 4);
    assert_memory_equal(op->replicas, back, sizeof(back));
    assert_int_equal(op->adding_replicas_count, 0);
    assert_int_equal(op->removing_replicas_count, 1);
    assert_int_equal(op->removing_replicas[0], 4);
    int32_t orig3[] = {1, 2, 3};
    struct lm_meta_record done = {.type = LM_META_PARTITION_REASSIGN,
                                  .topic = "r",
                                  .partition_count = 0,
                                  .replicas = orig3,
                                  .replication_factor = 3,
                                  .reassign_done = true};
    assert_int_equal(lm_meta_store_apply(f->meta, &done), 0); /* the leader's, via the controller */
    assert_int_equal(list_all(f)->topics_count, 0);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, "r");
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, 0, &n);
    assert_int_equal(n, 3);
    assert_int_equal(r[2], 3);
    assert_false(lm_meta_topic_reassigning(t, 0));
    lm_meta_snapshot_release(snap);

    /* another target while a move runs replaces it as Kafka's controller does: {1,2,4}, then
     * {4,2,1}: planned from every replica the partition has, node 4 being added included (its
     * Raft group may count it as a voter already), so only node 3 is left to remove; the same
     * target again changes nothing; a cancel now keeps every replica (Kafka's revert) */
    assert_int_equal(reassign(f, 1, "r", 0, to4, 3, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    int32_t other[] = {4, 2, 1};
    assert_int_equal(reassign(f, 1, "r", 0, other, 3, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    assert_int_equal(reassign(f, 1, "r", 0, other, 3, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 0);
    ls = list_all(f);
    assert_int_equal(ls->topics_count, 1);
    op = &ls->topics[0].partitions[0];
    int32_t want2[] = {4, 2, 1, 3};
    assert_int_equal(op->replicas_count, 4);
    assert_memory_equal(op->replicas, want2, sizeof(want2));
    assert_int_equal(op->adding_replicas_count, 0);
    assert_int_equal(op->removing_replicas_count, 1);
    assert_int_equal(op->removing_replicas[0], 3);
    assert_int_equal(reassign(f, 1, "r", 0, NULL, -1, true), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    assert_int_equal(list_all(f)->topics_count, 0);
    snap = lm_meta_store_snapshot(f->meta);
    r = lm_meta_topic_replicas(lm_meta_state_find(&snap->state, "r"), 0, &n);
    assert_int_equal(n, 4);
    lm_meta_snapshot_release(snap);

    /* a reorder of the same nodes is done at once: nothing in progress */
    int32_t reorder[] = {3, 1, 2};
    assert_int_equal(reassign(f, 1, "r", 1, reorder, 3, false), KAFKA_NONE);
    assert_int_equal(apply_deferred(f), 1);
    assert_int_equal(list_all(f)->topics_count, 0);
    snap = lm_meta_store_snapshot(f->meta);
    r = lm_meta_topic_replicas(lm_meta_state_find(&snap->state, "r"), 1, &n);
    assert_memory_equal(r, reorder, sizeof(reorder));
    lm_meta_snapshot_release(snap);
}

/* A single node: its partitions have no assignment; the only target is the node itself
 * (nothing moves), anything else names a broker that is not registered. */
static void test_reassignments_single_node(void **state)
{
    struct fx *f = *state;
    assert_int_equal(create_one(f, 7, "solo", 1, 1), KAFKA_NONE);
    int32_t self[] = {7}, other[] = {7, 8};
    assert_int_equal(reassign(f, 1, "solo", 0, self, 1, true), KAFKA_NONE);
    assert_int_equal(reassign(f, 1, "solo", 0, other, 2, true), KAFKA_INVALID_REPLICA_ASSIGNMENT);
    assert_int_equal(reassign(f, 1, "solo", 0, NULL, -1, true), KAFKA_NO_REASSIGNMENT_IN_PROGRESS);
    assert_int_equal(reassign(f, 1, "solo", 1, self, 1, true), KAFKA_UNKNOWN_TOPIC_OR_PARTITION);
    assert_int_equal(list_all(f)->topics_count, 0);
}

/* CreatePartitions of a replicated topic with a manual assignment (Kafka's checks: the
 * topic's replica count, no empty list, no node twice, registered nodes). */
static void test_create_partitions_replicated(void **state)
{
    struct fx *f = *state;
    typedef struct kafka_create_partitions_request_create_partitions_assignment asg;
    int32_t good[] = {4, 1, 2}, short_[] = {4, 1}, twice[] = {4, 4, 1}, gone[] = {4, 1, 9};
    const int32_t *rows[] = {short_, twice, gone, good};
    int32_t lens[] = {2, 3, 3, 3};
    int16_t want[] = {KAFKA_INVALID_REPLICA_ASSIGNMENT, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                      KAFKA_INVALID_REPLICA_ASSIGNMENT, KAFKA_NONE};
    for (int i = 0; i < 4; i++) {
        asg as = {(int32_t *)rows[i], lens[i]};
        struct kafka_create_partitions_request_create_partitions_topic t = {S("r"), 3, &as, 1};
        struct kafka_create_partitions_request rq;
        kafka_create_partitions_request_init(&rq);
        rq.topics = &t;
        rq.topics_count = 1;
        struct kafka_create_partitions_response *rs = call_create_partitions(f, 3, &rq);
        assert_int_equal(rs->results[0].error_code, want[i]);
    }
    assert_int_equal(apply_deferred(f), 1);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, "r");
    assert_int_equal(t->partition_count, 3);
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, 2, &n);
    assert_int_equal(n, 3);
    assert_memory_equal(r, good, sizeof(good));
    lm_meta_snapshot_release(snap);
}

/* ---- client quotas (KIP-546) ---- */

typedef struct kafka_alter_client_quotas_request_entry_data quota_entry_t;
typedef struct kafka_alter_client_quotas_request_entity_data quota_entity_t;
typedef struct kafka_alter_client_quotas_request_op_data quota_op_t;
typedef struct kafka_describe_client_quotas_request_component_data quota_comp_t;

/* One AlterClientQuotas entry: up to two entity parts ("type" / name, NULL = default) and
 * one op (remove when remove). */
static quota_entry_t q_entry(struct fx *f, const char *t1, const char *n1, const char *t2,
                             const char *n2, const char *key, double v, bool remove)
{
    quota_entity_t *e = kafka_arena_alloc_array(&f->a, 2, sizeof(*e), 16);
    quota_op_t *op = kafka_arena_alloc_array(&f->a, 1, sizeof(*op), 16);
    assert_non_null(e);
    assert_non_null(op);
    int32_t ne = 0;
    if (t1 != NULL)
        e[ne++] = (quota_entity_t){.entity_type = S(t1), .entity_name = admin_kstr(n1)};
    if (t2 != NULL)
        e[ne++] = (quota_entity_t){.entity_type = S(t2), .entity_name = admin_kstr(n2)};
    op[0] = (quota_op_t){.key = S(key), .value = v, .remove = remove};
    return (quota_entry_t){.entity = e, .entity_count = ne, .ops = op, .ops_count = 1};
}

static struct kafka_alter_client_quotas_response *q_alter(struct fx *f, quota_entry_t *e, int32_t n,
                                                          bool validate_only)
{
    struct kafka_alter_client_quotas_request rq;
    kafka_alter_client_quotas_request_init(&rq);
    rq.entries = e;
    rq.entries_count = n;
    rq.validate_only = validate_only;
    struct kafka_alter_client_quotas_response *rs = call_alter_client_quotas(f, 1, &rq);
    assert_int_equal(rs->entries_count, n);
    return rs;
}

static struct kafka_describe_client_quotas_response *q_describe(struct fx *f, quota_comp_t *c,
                                                                int32_t n, bool strict)
{
    struct kafka_describe_client_quotas_request rq;
    kafka_describe_client_quotas_request_init(&rq);
    rq.components = c;
    rq.components_count = n;
    rq.strict = strict;
    return call_describe_client_quotas(f, 1, &rq);
}

/* The value of key in the described entity with these parts, or -1 when not listed. */
static double q_value(const struct kafka_describe_client_quotas_response *rs, const char *user,
                      bool has_user, const char *client, bool has_client, const char *key)
{
    for (int32_t i = 0; i < rs->entries_count; i++) {
        const struct kafka_describe_client_quotas_response_entry_data *e = &rs->entries[i];
        bool u = false, c = false, match = true;
        for (int32_t k = 0; k < e->entity_count; k++) {
            if (str_is(e->entity[k].entity_type, "user")) {
                u = true;
                match = match && str_is(e->entity[k].entity_name, user);
            } else if (str_is(e->entity[k].entity_type, "client-id")) {
                c = true;
                match = match && str_is(e->entity[k].entity_name, client);
            }
        }
        if (!match || u != has_user || c != has_client)
            continue;
        for (int32_t k = 0; k < e->values_count; k++)
            if (str_is(e->values[k].key, key))
                return e->values[k].value;
        return -1;
    }
    return -1;
}

static void test_client_quotas(void **state)
{
    struct fx *f = *state;
    quota_entry_t good[3] = {
        q_entry(f, "user", "alice", "client-id", NULL, "producer_byte_rate", 1048576, false),
        q_entry(f, "client-id", "app", NULL, NULL, "consumer_byte_rate", 2048, false),
        q_entry(f, "client-id", "app", NULL, NULL, "request_percentage", 12.5, false),
    };
    struct kafka_alter_client_quotas_response *rs = q_alter(f, good, 3, false);
    for (int i = 0; i < 3; i++)
        assert_int_equal(rs->entries[i].error_code, KAFKA_NONE);
    assert_true(str_is(rs->entries[0].entity[1].entity_name, NULL)); /* echoed: the default */
    /* Kafka's validation: each refused with INVALID_REQUEST, nothing stored */
    quota_entry_t bad[9] = {
        q_entry(f, "bogus", "x", NULL, NULL, "producer_byte_rate", 1, false),
        q_entry(f, "user", "", NULL, NULL, "producer_byte_rate", 1, false),
        q_entry(f, "client-id", "x", NULL, NULL, "nope", 1, false),
        q_entry(f, "client-id", "x", NULL, NULL, "producer_byte_rate", 1.5, false),
        q_entry(f, "client-id", "x", NULL, NULL, "consumer_byte_rate", -1, false),
        q_entry(f, NULL, NULL, NULL, NULL, "producer_byte_rate", 1, false),
        q_entry(f, "user", "a", "user", "b", "producer_byte_rate", 1, false),
        q_entry(f, "ip", "10.0.0.1", NULL, NULL, "producer_byte_rate", 1, false),
        q_entry(f, "client-id", "x", NULL, NULL, "controller_mutation_rate", -0.5, false),
    };
    rs = q_alter(f, bad, 9, false);
    for (int i = 0; i < 9; i++) {
        print_message("bad entry %d\n", i);
        assert_int_equal(rs->entries[i].error_code, KAFKA_INVALID_REQUEST);
        assert_true(rs->entries[i].error_message.len > 0);
    }
    /* validate_only checks and changes nothing */
    quota_entry_t vo = q_entry(f, "client-id", "z", NULL, NULL, "producer_byte_rate", 5, false);
    rs = q_alter(f, &vo, 1, true);
    assert_int_equal(rs->entries[0].error_code, KAFKA_NONE);

    /* describe everything: two entities, none of the refused or validate-only ones */
    struct kafka_describe_client_quotas_response *d = q_describe(f, NULL, 0, false);
    assert_int_equal(d->error_code, KAFKA_NONE);
    assert_int_equal(d->entries_count, 2);
    assert_true(q_value(d, "alice", true, NULL, true, "producer_byte_rate") == 1048576);
    assert_true(q_value(d, NULL, false, "app", true, "consumer_byte_rate") == 2048);
    assert_true(q_value(d, NULL, false, "app", true, "request_percentage") == 12.5);
    /* filters: exact user (not strict: the client part may be anything) */
    quota_comp_t c1 = {.entity_type = S("user"), .match_type = 0, .match = S("alice")};
    d = q_describe(f, &c1, 1, false);
    assert_int_equal(d->entries_count, 1);
    /* strict: alice's entity also has a client part, which the filter does not name */
    d = q_describe(f, &c1, 1, true);
    assert_int_equal(d->entries_count, 0);
    /* the default client id */
    quota_comp_t c2 = {.entity_type = S("client-id"), .match_type = 1, .match = KAFKA_STR_NULL};
    d = q_describe(f, &c2, 1, false);
    assert_int_equal(d->entries_count, 1);
    assert_true(q_value(d, "alice", true, NULL, true, "producer_byte_rate") == 1048576);
    /* any client id, strict: only the client-only entity */
    quota_comp_t c3 = {.entity_type = S("client-id"), .match_type = 2, .match = KAFKA_STR_NULL};
    d = q_describe(f, &c3, 1, true);
    assert_int_equal(d->entries_count, 1);
    assert_true(q_value(d, NULL, false, "app", true, "consumer_byte_rate") == 2048);
    /* bad filters */
    quota_comp_t dup[2] = {c1, c1};
    d = q_describe(f, dup, 2, false);
    assert_int_equal(d->error_code, KAFKA_INVALID_REQUEST);
    quota_comp_t odd = {.entity_type = S("group"), .match_type = 2};
    d = q_describe(f, &odd, 1, false);
    assert_int_equal(d->error_code, KAFKA_INVALID_REQUEST);

    /* removing keys: the entity goes once it holds none */
    quota_entry_t rm = q_entry(f, "client-id", "app", NULL, NULL, "consumer_byte_rate", 0, true);
    rs = q_alter(f, &rm, 1, false);
    assert_int_equal(rs->entries[0].error_code, KAFKA_NONE);
    d = q_describe(f, NULL, 0, false);
    assert_true(q_value(d, NULL, false, "app", true, "consumer_byte_rate") == -1);
    assert_true(q_value(d, NULL, false, "app", true, "request_percentage") == 12.5);
    rm = q_entry(f, "client-id", "app", NULL, NULL, "request_percentage", 0, true);
    rs = q_alter(f, &rm, 1, false);
    assert_int_equal(rs->entries[0].error_code, KAFKA_NONE);
    d = q_describe(f, NULL, 0, false);
    assert_int_equal(d->entries_count, 1);

    /* the quotas are in controller snapshots: encode the image, load it into another store */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(f->meta);
    uint8_t *buf = NULL;
    size_t len = 0;
    assert_int_equal(meta_snapshot_encode(&snap->state, 42, &buf, &len), 0);
    lm_meta_snapshot_release(snap);
    char dir2[64];
    snprintf(dir2, sizeof(dir2), "/tmp/lm-admin-XXXXXX");
    assert_non_null(mkdtemp(dir2));
    struct lm_meta_store *other = NULL;
    assert_int_equal(lm_meta_store_open(dir2, &other), 0);
    assert_int_equal(lm_meta_store_set_cluster(other, 1), 0); /* a controller's image */
    int64_t last = 0;
    assert_int_equal(meta_snapshot_load(other, buf, len, &last), 0);
    free(buf);
    struct lm_meta_snapshot *os = lm_meta_store_snapshot(other);
    assert_int_equal(os->state.quota_count, 1);
    assert_int_equal(os->state.quotas[0].entity.user_part, LM_QUOTA_PART_NAMED);
    assert_string_equal(os->state.quotas[0].entity.user, "alice");
    assert_int_equal(os->state.quotas[0].entity.client_part, LM_QUOTA_PART_DEFAULT);
    assert_true(os->state.quotas[0].value[LM_QUOTA_PRODUCER_BYTE_RATE] == 1048576);
    lm_meta_snapshot_release(os);
    lm_meta_store_close(other);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir2);
    assert_int_equal(system(cmd), 0);
}

/* Without ALTER_CONFIGS / DESCRIBE_CONFIGS on the cluster: CLUSTER_AUTHORIZATION_FAILED. */
static void test_client_quotas_denied(void **state)
{
    struct fx *f = *state;
    static struct authz_config az; /* large (super users): not on the stack */
    memset(&az, 0, sizeof(az));
    az.enabled = true;
    f->env.authz = &az;
    f->env.who = (struct authz_subject){.principal = "User:mallory", .host = "127.0.0.1"};
    quota_entry_t e = q_entry(f, "client-id", "app", NULL, NULL, "producer_byte_rate", 5, false);
    struct kafka_alter_client_quotas_response *rs = q_alter(f, &e, 1, false);
    assert_int_equal(rs->entries[0].error_code, KAFKA_CLUSTER_AUTHORIZATION_FAILED);
    struct kafka_describe_client_quotas_response *d = q_describe(f, NULL, 0, false);
    assert_int_equal(d->error_code, KAFKA_CLUSTER_AUTHORIZATION_FAILED);
    f->env.authz = NULL;
    d = q_describe(f, NULL, 0, false);
    assert_int_equal(d->error_code, KAFKA_NONE);
    assert_int_equal(d->entries_count, 0);
}

/* ---- ListConfigResources ---- */

/* One ListConfigResources at version v with the type filter types[0..n). */
static struct kafka_list_config_resources_response *lcr(struct fx *f, int16_t v,
                                                        const int8_t *types, int32_t n)
{
    struct kafka_list_config_resources_request rq;
    kafka_list_config_resources_request_init(&rq);
    rq.resource_types = (int8_t *)types;
    rq.resource_types_count = n;
    return call_list_config_resources(f, v, &rq);
}

/* How many resources of rs have this name and type. */
static int lcr_count(const struct kafka_list_config_resources_response *rs, const char *name,
                     int8_t type)
{
    int c = 0;
    for (int32_t i = 0; i < rs->config_resources_count; i++)
        c += rs->config_resources[i].resource_type == type &&
             str_is(rs->config_resources[i].resource_name, name);
    return c;
}

static void put_topic(struct fx *f, const char *name, uint8_t id_byte)
{
    struct lm_meta_record t = {.type = LM_META_TOPIC_CREATE, .topic = name, .partition_count = 1};
    memset(t.topic_id, id_byte, 16);
    assert_int_equal(lm_meta_store_commit(f->meta, &t), 0);
}

/* A single node: v1 lists the node as broker logger and broker, then every topic; a filter
 * keeps only its types; GROUP and CLIENT_METRICS are empty; a type outside the version's set
 * fails the request; v0 (client metrics only) is empty; without DESCRIBE_CONFIGS on the
 * cluster, CLUSTER_AUTHORIZATION_FAILED. */
static void test_list_config_resources(void **state)
{
    struct fx *f = *state;
    put_topic(f, "alpha", 1);
    put_topic(f, "__consumer_offsets", 2);
    put_topic(f, "beta", 3);
    struct kafka_list_config_resources_response *rs = lcr(f, 1, NULL, 0);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->config_resources_count, 5);
    /* Kafka's order: broker loggers, brokers, then topics */
    assert_int_equal(rs->config_resources[0].resource_type, ADMIN_RESOURCE_BROKER_LOGGER);
    assert_true(str_is(rs->config_resources[0].resource_name, "7"));
    assert_int_equal(rs->config_resources[1].resource_type, ADMIN_RESOURCE_BROKER);
    assert_true(str_is(rs->config_resources[1].resource_name, "7"));
    assert_int_equal(lcr_count(rs, "alpha", ADMIN_RESOURCE_TOPIC), 1);
    assert_int_equal(lcr_count(rs, "beta", ADMIN_RESOURCE_TOPIC), 1);
    assert_int_equal(lcr_count(rs, "__consumer_offsets", ADMIN_RESOURCE_TOPIC), 1);

    static const int8_t topic[] = {ADMIN_RESOURCE_TOPIC};
    rs = lcr(f, 1, topic, 1);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->config_resources_count, 3);
    assert_int_equal(lcr_count(rs, "beta", ADMIN_RESOURCE_TOPIC), 1);

    static const int8_t brokers[] = {ADMIN_RESOURCE_BROKER, ADMIN_RESOURCE_BROKER};
    rs = lcr(f, 1, brokers, 2);
    assert_int_equal(rs->config_resources_count, 1);
    assert_int_equal(lcr_count(rs, "7", ADMIN_RESOURCE_BROKER), 1);

    static const int8_t none[] = {ADMIN_RESOURCE_GROUP, ADMIN_RESOURCE_CLIENT_METRICS};
    rs = lcr(f, 1, none, 2);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->config_resources_count, 0);

    static const int8_t bad[] = {ADMIN_RESOURCE_TOPIC, 1};
    rs = lcr(f, 1, bad, 2);
    assert_int_equal(rs->error_code, KAFKA_UNSUPPORTED_VERSION);
    assert_int_equal(rs->config_resources_count, 0);

    rs = lcr(f, 0, NULL, 0);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->config_resources_count, 0);

    static struct authz_config az; /* large (super users): not on the stack */
    memset(&az, 0, sizeof(az));
    az.enabled = true;
    f->env.authz = &az;
    f->env.who = (struct authz_subject){.principal = "User:mallory", .host = "127.0.0.1"};
    rs = lcr(f, 1, NULL, 0);
    assert_int_equal(rs->error_code, KAFKA_CLUSTER_AUTHORIZATION_FAILED);
    assert_int_equal(rs->config_resources_count, 0);
    f->env.authz = NULL;
}

/* A cluster node lists every registered broker, a fenced one too (Kafka's getBrokerNodes). */
static void test_list_config_resources_cluster(void **state)
{
    struct fx *f = *state;
    struct lm_meta_record fence = {
        .type = LM_META_BROKER_FENCE, .broker_id = 3, .incarnation = 1, .fenced = true};
    assert_int_equal(lm_meta_store_apply(f->meta, &fence), 0);
    static const int8_t types[] = {ADMIN_RESOURCE_BROKER_LOGGER, ADMIN_RESOURCE_BROKER};
    struct kafka_list_config_resources_response *rs = lcr(f, 1, types, 2);
    assert_int_equal(rs->error_code, KAFKA_NONE);
    assert_int_equal(rs->config_resources_count, 8);
    const char *ids[] = {"1", "2", "3", "4"};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(lcr_count(rs, ids[i], ADMIN_RESOURCE_BROKER), 1);
        assert_int_equal(lcr_count(rs, ids[i], ADMIN_RESOURCE_BROKER_LOGGER), 1);
    }
    assert_int_equal(lcr_count(rs, "7", ADMIN_RESOURCE_BROKER), 0);
    rs = lcr(f, 1, NULL, 0);
    assert_int_equal(rs->config_resources_count, 9); /* and the topic "r" */
    assert_int_equal(lcr_count(rs, "r", ADMIN_RESOURCE_TOPIC), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_topics_v7_configs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_topics_errors, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_topics_defaults_and_validate_only, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_topics_assignments, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_topics_many_duplicates, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_delete_topics, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_partitions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_partition_limit, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_offsets_topic_protected, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_describe_configs_topic, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_describe_configs_broker, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_alter_configs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_incremental_alter_configs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_survives_reopen, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_describe_cluster, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_acls_security_disabled, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_acls_stored, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_broker_logger, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_describe_log_dirs, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_features, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_describe_topic_partitions, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_partition_limit_cluster, fx_setup_cluster,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_reassignments, fx_setup_cluster, fx_teardown),
        cmocka_unit_test_setup_teardown(test_reassignments_single_node, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_create_partitions_replicated, fx_setup_cluster,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_quotas, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_client_quotas_denied, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_config_resources, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_config_resources_cluster, fx_setup_cluster,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
