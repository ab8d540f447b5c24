/* The admin APIs on the shard runtime: decode the request body with the generated codec,
 * run the core (admin_core.h) against the process's metadata store, encode the response into
 * the request's arena and send it. Everything completes synchronously on the calling shard:
 * a metadata commit is one append + fdatasync of the metadata log, which is acceptable for
 * admin requests (not on the data path). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/cluster/controller.h"
#include "broker/handlers/admin_core.h"
#include "broker/handlers/handlers.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

typedef int (*admin_core_fn)(const struct admin_env *env, int16_t version, const void *rq, void *rs,
                             struct kafka_arena *a);

/* Kafka closes the connection on a request it cannot parse; so do we. */
static void admin_fail(struct broker_req *req, const char *what, int rc)
{
    BLOG_WARN_LIMITED("admin: api %d v%d: %s (%s); closing the connection", req->api_key,
                      req->api_version, what, lm_strerror(rc));
    broker_req_close_after(req);
    broker_req_respond_none(req);
}

static int32_t admin_partition_epoch(const void *node, const uint8_t topic_id[16],
                                     int32_t partition)
{
    return h_partition_epoch(node, topic_id, partition);
}

/* The Kafka error for a change the controller refused or did not take. */
static void defer_outcome(struct kafka_arena *a, const struct admin_defer_item *it, int rc)
{
    const char *t = it->topic ? it->topic : "?";
    int16_t code;
    if (it->kind == ADMIN_COMMIT_ACL && (rc == LM_E_EXISTS || rc == LM_E_NOT_FOUND))
        return; /* the same binding was added, or this one removed, by another request */
    const char *what;
    switch (rc) {
    case LM_E_EXISTS:
        code = KAFKA_TOPIC_ALREADY_EXISTS;
        what = "already exists";
        break;
    case LM_E_NOT_FOUND:
        code = it->kind == ADMIN_COMMIT_SCRAM      ? KAFKA_RESOURCE_NOT_FOUND
               : it->kind == ADMIN_COMMIT_TOPIC_ID ? KAFKA_UNKNOWN_TOPIC_ID
                                                   : KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        what = "does not exist";
        break;
    case LM_E_INVALID:
        code = it->kind == ADMIN_COMMIT_SCRAM        ? KAFKA_UNACCEPTABLE_CREDENTIAL
               : it->kind == ADMIN_COMMIT_ACL        ? KAFKA_INVALID_REQUEST
               : it->kind == ADMIN_COMMIT_QUOTA      ? KAFKA_INVALID_REQUEST
               : it->kind == ADMIN_COMMIT_FEATURE    ? KAFKA_INVALID_UPDATE_VERSION
               : it->kind == ADMIN_COMMIT_CONFIGS    ? KAFKA_INVALID_CONFIG
               : it->kind == ADMIN_COMMIT_PARTITIONS ? KAFKA_INVALID_PARTITIONS
               : it->kind == ADMIN_COMMIT_REASSIGN   ? KAFKA_INVALID_REPLICA_ASSIGNMENT
                                                     : KAFKA_INVALID_REQUEST;
        what = "was refused by the controller as invalid";
        break;
    case LM_E_FULL:
        code = KAFKA_POLICY_VIOLATION;
        what = "would exceed a limit";
        break;
    case LM_E_STATE:
        if (it->kind != ADMIN_COMMIT_REASSIGN)
            goto other;
        /* planned from this node's image, which the controller's has moved past (another
         * request, the leader's completion): retriable, as Kafka's NOT_CONTROLLER */
        code = KAFKA_NOT_CONTROLLER;
        what = "was planned from metadata the controller has moved past; retry";
        break;
    case LM_E_TIMEOUT:
        code = KAFKA_REQUEST_TIMED_OUT;
        what = "was not committed by the controller in time (no controller leader?)";
        break;
    default:
    other:
        code = KAFKA_NOT_CONTROLLER;
        what = "could not reach the controller";
        break;
    }
    *it->code = code;
    char *m = kafka_arena_alloc(a, 320, 1);
    if (m != NULL) {
        int n = snprintf(m, 320, "%s '%s': the change %s (%s).",
                         it->kind == ADMIN_COMMIT_SCRAM     ? "User"
                         : it->kind == ADMIN_COMMIT_ACL     ? "ACL binding"
                         : it->kind == ADMIN_COMMIT_QUOTA   ? "Client quota of"
                         : it->kind == ADMIN_COMMIT_FEATURE ? "Feature"
                                                            : "Topic",
                         t, what, lm_strerror(rc));
        *it->msg = (struct kafka_str){m, n < 0 ? 0 : n >= 320 ? 319 : n};
    }
}

struct admin_pending {
    struct broker_req *req;
    const struct kafka_api_info *api;
    void *rs;
    uint32_t left;
};

static void admin_respond(struct broker_req *req, const struct kafka_api_info *api, void *rs);

/* Whether a TOPIC_CREATE refused as existing finds its own topic id in the image (applied
 * here up to the refusal): an earlier attempt of the same submission, whose answer a leader
 * change lost, created it, and the request succeeded. */
static bool admin_created_by_earlier_attempt(struct broker_req *req,
                                             const struct controller_submit *sub)
{
    struct lm_meta_record r;
    struct lm_config_entry *configs = NULL;
    if (lm_meta_record_decode(sub->rec, sub->len, &r, &configs) != 0)
        return false;
    bool mine = false;
    if (r.type == LM_META_TOPIC_CREATE && r.topic != NULL) {
        struct lm_meta_snapshot *snap = lm_meta_store_snapshot(h_node(req)->meta);
        const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, r.topic);
        mine = t != NULL && memcmp(t->id, r.topic_id, 16) == 0;
        lm_meta_snapshot_release(snap);
    }
    lm_meta_record_free(&r);
    return mine;
}

static void admin_sub_done(struct broker_shard *s, struct controller_submit *sub)
{
    (void)s;
    struct admin_defer_item *it = sub->arg;
    struct admin_pending *pd = (struct admin_pending *)it->sub;
    if (sub->rc == LM_E_EXISTS && it->kind == ADMIN_COMMIT_TOPIC &&
        admin_created_by_earlier_attempt(pd->req, sub))
        sub->rc = 0;
    if (sub->rc != 0) {
        defer_outcome(&pd->req->arena, it, sub->rc);
        BLOG_INFO("admin: controller refused a change to topic %s: %s", it->topic ? it->topic : "?",
                  lm_strerror(sub->rc));
    }
    if (--pd->left == 0)
        admin_respond(pd->req, pd->api, pd->rs);
}

/* Sends the queued changes to the controller; the response leaves when all have answered. */
static int admin_submit_deferred(struct broker_req *req, const struct kafka_api_info *api, void *rs,
                                 struct admin_defer *d)
{
    struct admin_pending *pd = kafka_arena_alloc(&req->arena, sizeof(*pd), 16);
    struct controller_submit *subs =
        kafka_arena_alloc_array(&req->arena, d->count, sizeof(*subs), 16);
    if (pd == NULL || subs == NULL)
        return LM_E_NOMEM;
    *pd = (struct admin_pending){.req = req, .api = api, .rs = rs, .left = d->count};
    uint32_t i = 0;
    for (struct admin_defer_item *it = d->head; it != NULL; it = it->next, i++) {
        it->sub = pd;
        subs[i] = (struct controller_submit){
            .rec = it->rec, .len = it->len, .done = admin_sub_done, .arg = it};
    }
    i = 0;
    struct controller *ctl = h_node(req)->ctl;
    for (struct admin_defer_item *it = d->head; it != NULL; it = it->next, i++)
        controller_submit(ctl, req->shard, &subs[i]);
    return 0;
}

/* The controller mutation quota (KIP-599) of a CreateTopics, DeleteTopics or CreatePartitions
 * request: partitions created, added or deleted, counted against the principal's and client's
 * controller_mutation_rate on the request's shard. */
static bool mutations_exceeded(void *ctx)
{
    return h_quota_exceeded(ctx, LM_QUOTA_CONTROLLER_MUTATION_RATE);
}

static void mutations_record(void *ctx, double n)
{
    (void)h_quota_record(ctx, LM_QUOTA_CONTROLLER_MUTATION_RATE, n); /* its throttle: below */
}

static int32_t mutations_throttle_ms(void *ctx)
{
    return h_quota_record(ctx, LM_QUOTA_CONTROLLER_MUTATION_RATE, 0);
}

/* The decoded request, the response structs and strings, and the encoded response all live in
 * the request's arena (bounded by the runtime), freed after the response has left. */
static void admin_serve(struct broker_req *req, int16_t min_version, int16_t max_version,
                        admin_core_fn core)
{
    const struct kafka_api_info *api = kafka_api_lookup(req->api_key);
    LM_ASSERT(api != NULL && core != NULL);
    const struct handlers_ctx *node = h_node(req);
    LM_ASSERT(node->meta != NULL);
    if (req->api_version < min_version || req->api_version > max_version) {
        handlers_respond_unsupported(req); /* the dispatcher checks first; kept for safety */
        return;
    }
    struct kafka_arena *ka = &req->arena;
    void *rq = kafka_arena_alloc(ka, api->request.struct_size, 16);
    void *rs = kafka_arena_alloc(ka, api->response.struct_size, 16);
    if (rq == NULL || rs == NULL) {
        admin_fail(req, "out of memory", LM_E_NOMEM);
        return;
    }
    api->request.init(rq);
    api->response.init(rs);
    struct kafka_reader r;
    kafka_reader_init(&r, req->body, req->body_len);
    int rc = api->request.decode(&r, req->api_version, rq, ka);
    if (rc != 0) {
        admin_fail(req, "malformed request", rc);
        return;
    }
    struct admin_defer defer = {0};
    struct admin_env env = {
        .meta = node->meta,
        .cfg = node->cfg,
        .cluster_id = node->cluster_id,
        .leader_epoch = admin_partition_epoch,
        .epoch_ctx = node,
        .advertised = broker_req_advertised(req),
        .defer = node->ctl != NULL ? &defer : NULL,
        .controller_id = node->ctl != NULL ? controller_leader(node->ctl) : -1,
    };
    h_subject(req, &env.authz, &env.who);
    const struct admin_mutation_quota mutations = {.exceeded = mutations_exceeded,
                                                   .record = mutations_record,
                                                   .throttle_ms = mutations_throttle_ms,
                                                   .ctx = req};
    bool mutates = req->api_key == KAFKA_CREATE_TOPICS_KEY ||
                   req->api_key == KAFKA_DELETE_TOPICS_KEY ||
                   req->api_key == KAFKA_CREATE_PARTITIONS_KEY;
    if (mutates)
        env.mutations = &mutations;
    rc = core(&env, req->api_version, rq, rs, ka);
    if (rc == 0 && mutates) {
        /* over the quota: the connection reads nothing more until the throttle time has
         * passed (KIP-219), as for the byte rates */
        int32_t ms = mutations_throttle_ms(req);
        if (ms > 0)
            broker_req_throttle(req, (uint32_t)ms);
    }
    if (rc != 0) {
        admin_fail(req,
                   rc == LM_E_INVALID ? "request Kafka refuses to parse"
                                      : "response does not fit the request's arena",
                   rc);
        return;
    }
    if (defer.count > 0) {
        rc = admin_submit_deferred(req, api, rs, &defer);
        if (rc != 0)
            admin_fail(req, "out of memory queueing changes", rc);
        return;
    }
    if (req->api_key == KAFKA_DESCRIBE_LOG_DIRS_KEY) {
        /* the partition sizes of open logs come from their owner shards (hs_logdirs.c) */
        if (!h_logdirs_sizes(req, api, rs, admin_respond))
            admin_fail(req, "out of memory asking for log sizes", LM_E_NOMEM);
        return;
    }
    admin_respond(req, api, rs);
}

static void admin_respond(struct broker_req *req, const struct kafka_api_info *api, void *rs)
{
    struct kafka_arena *ka = &req->arena;
    int rc;
    size_t size = api->response.size(req->api_version, rs);
    uint8_t *buf = kafka_arena_alloc(ka, size > 0 ? size : 1, 16);
    if (buf == NULL) {
        admin_fail(req, "out of memory for the response", LM_E_NOMEM);
        return;
    }
    struct kafka_writer w;
    kafka_writer_init(&w, buf, size);
    rc = api->response.encode(&w, req->api_version, rs);
    LM_ASSERT(rc == 0 && w.pos == size); /* size() is exact by contract */
    broker_req_respond(req, buf, size);
}

#define ADMIN_HANDLER(api, MIN, MAX)                                                               \
    static int api##_core(const struct admin_env *env, int16_t version, const void *rq, void *rs,  \
                          struct kafka_arena *a)                                                   \
    {                                                                                              \
        return admin_##api(env, version, rq, rs, a);                                               \
    }                                                                                              \
    static void api##_handle(struct broker_req *req)                                               \
    {                                                                                              \
        admin_serve(req, MIN, MAX, api##_core);                                                    \
    }

ADMIN_HANDLER(create_topics, ADMIN_CREATE_TOPICS_MIN, ADMIN_CREATE_TOPICS_MAX)
ADMIN_HANDLER(delete_topics, ADMIN_DELETE_TOPICS_MIN, ADMIN_DELETE_TOPICS_MAX)
ADMIN_HANDLER(create_partitions, ADMIN_CREATE_PARTITIONS_MIN, ADMIN_CREATE_PARTITIONS_MAX)
ADMIN_HANDLER(describe_configs, ADMIN_DESCRIBE_CONFIGS_MIN, ADMIN_DESCRIBE_CONFIGS_MAX)
ADMIN_HANDLER(alter_configs, ADMIN_ALTER_CONFIGS_MIN, ADMIN_ALTER_CONFIGS_MAX)
ADMIN_HANDLER(incremental_alter_configs, ADMIN_INCREMENTAL_ALTER_CONFIGS_MIN,
              ADMIN_INCREMENTAL_ALTER_CONFIGS_MAX)
ADMIN_HANDLER(describe_cluster, ADMIN_DESCRIBE_CLUSTER_MIN, ADMIN_DESCRIBE_CLUSTER_MAX)
ADMIN_HANDLER(describe_user_scram_credentials, ADMIN_DESCRIBE_USER_SCRAM_MIN,
              ADMIN_DESCRIBE_USER_SCRAM_MAX)
ADMIN_HANDLER(alter_user_scram_credentials, ADMIN_ALTER_USER_SCRAM_MIN, ADMIN_ALTER_USER_SCRAM_MAX)
ADMIN_HANDLER(describe_client_quotas, ADMIN_DESCRIBE_CLIENT_QUOTAS_MIN,
              ADMIN_DESCRIBE_CLIENT_QUOTAS_MAX)
ADMIN_HANDLER(alter_client_quotas, ADMIN_ALTER_CLIENT_QUOTAS_MIN, ADMIN_ALTER_CLIENT_QUOTAS_MAX)
ADMIN_HANDLER(describe_acls, ADMIN_DESCRIBE_ACLS_MIN, ADMIN_DESCRIBE_ACLS_MAX)
ADMIN_HANDLER(create_acls, ADMIN_CREATE_ACLS_MIN, ADMIN_CREATE_ACLS_MAX)
ADMIN_HANDLER(delete_acls, ADMIN_DELETE_ACLS_MIN, ADMIN_DELETE_ACLS_MAX)
ADMIN_HANDLER(describe_log_dirs, ADMIN_DESCRIBE_LOG_DIRS_MIN, ADMIN_DESCRIBE_LOG_DIRS_MAX)
ADMIN_HANDLER(update_features, ADMIN_UPDATE_FEATURES_MIN, ADMIN_UPDATE_FEATURES_MAX)
ADMIN_HANDLER(describe_topic_partitions, ADMIN_DESCRIBE_TOPIC_PARTITIONS_MIN,
              ADMIN_DESCRIBE_TOPIC_PARTITIONS_MAX)
ADMIN_HANDLER(alter_partition_reassignments, ADMIN_ALTER_REASSIGNMENTS_MIN,
              ADMIN_ALTER_REASSIGNMENTS_MAX)
ADMIN_HANDLER(list_partition_reassignments, ADMIN_LIST_REASSIGNMENTS_MIN,
              ADMIN_LIST_REASSIGNMENTS_MAX)
ADMIN_HANDLER(list_config_resources, ADMIN_LIST_CONFIG_RESOURCES_MIN,
              ADMIN_LIST_CONFIG_RESOURCES_MAX)

int handlers_admin_features_fill(struct broker_req *req, struct kafka_api_versions_response *rs)
{
    const struct handlers_ctx *node = h_node(req);
    struct admin_env env = {
        .meta = node->meta,
        .cfg = node->cfg,
        .cluster_id = node->cluster_id,
        .leader_epoch = admin_partition_epoch,
        .epoch_ctx = node,
    };
    return admin_features_fill(&env, req->api_version, rs, &req->arena);
}

int handlers_admin_register(struct broker_dispatch *d)
{
    LM_ASSERT(d != NULL);
    static const struct {
        int16_t key, min, max;
        broker_handler_fn fn;
    } apis[] = {
        {KAFKA_CREATE_TOPICS_KEY, ADMIN_CREATE_TOPICS_MIN, ADMIN_CREATE_TOPICS_MAX,
         create_topics_handle},
        {KAFKA_DELETE_TOPICS_KEY, ADMIN_DELETE_TOPICS_MIN, ADMIN_DELETE_TOPICS_MAX,
         delete_topics_handle},
        {KAFKA_CREATE_PARTITIONS_KEY, ADMIN_CREATE_PARTITIONS_MIN, ADMIN_CREATE_PARTITIONS_MAX,
         create_partitions_handle},
        {KAFKA_DESCRIBE_CONFIGS_KEY, ADMIN_DESCRIBE_CONFIGS_MIN, ADMIN_DESCRIBE_CONFIGS_MAX,
         describe_configs_handle},
        {KAFKA_ALTER_CONFIGS_KEY, ADMIN_ALTER_CONFIGS_MIN, ADMIN_ALTER_CONFIGS_MAX,
         alter_configs_handle},
        {KAFKA_INCREMENTAL_ALTER_CONFIGS_KEY, ADMIN_INCREMENTAL_ALTER_CONFIGS_MIN,
         ADMIN_INCREMENTAL_ALTER_CONFIGS_MAX, incremental_alter_configs_handle},
        {KAFKA_DESCRIBE_CLUSTER_KEY, ADMIN_DESCRIBE_CLUSTER_MIN, ADMIN_DESCRIBE_CLUSTER_MAX,
         describe_cluster_handle},
        {KAFKA_DESCRIBE_USER_SCRAM_CREDENTIALS_KEY, ADMIN_DESCRIBE_USER_SCRAM_MIN,
         ADMIN_DESCRIBE_USER_SCRAM_MAX, describe_user_scram_credentials_handle},
        {KAFKA_ALTER_USER_SCRAM_CREDENTIALS_KEY, ADMIN_ALTER_USER_SCRAM_MIN,
         ADMIN_ALTER_USER_SCRAM_MAX, alter_user_scram_credentials_handle},
        {KAFKA_DESCRIBE_CLIENT_QUOTAS_KEY, ADMIN_DESCRIBE_CLIENT_QUOTAS_MIN,
         ADMIN_DESCRIBE_CLIENT_QUOTAS_MAX, describe_client_quotas_handle},
        {KAFKA_ALTER_CLIENT_QUOTAS_KEY, ADMIN_ALTER_CLIENT_QUOTAS_MIN,
         ADMIN_ALTER_CLIENT_QUOTAS_MAX, alter_client_quotas_handle},
        {KAFKA_DESCRIBE_ACLS_KEY, ADMIN_DESCRIBE_ACLS_MIN, ADMIN_DESCRIBE_ACLS_MAX,
         describe_acls_handle},
        {KAFKA_CREATE_ACLS_KEY, ADMIN_CREATE_ACLS_MIN, ADMIN_CREATE_ACLS_MAX, create_acls_handle},
        {KAFKA_DELETE_ACLS_KEY, ADMIN_DELETE_ACLS_MIN, ADMIN_DELETE_ACLS_MAX, delete_acls_handle},
        {KAFKA_DESCRIBE_LOG_DIRS_KEY, ADMIN_DESCRIBE_LOG_DIRS_MIN, ADMIN_DESCRIBE_LOG_DIRS_MAX,
         describe_log_dirs_handle},
        {KAFKA_UPDATE_FEATURES_KEY, ADMIN_UPDATE_FEATURES_MIN, ADMIN_UPDATE_FEATURES_MAX,
         update_features_handle},
        {KAFKA_DESCRIBE_TOPIC_PARTITIONS_KEY, ADMIN_DESCRIBE_TOPIC_PARTITIONS_MIN,
         ADMIN_DESCRIBE_TOPIC_PARTITIONS_MAX, describe_topic_partitions_handle},
        {KAFKA_ALTER_PARTITION_REASSIGNMENTS_KEY, ADMIN_ALTER_REASSIGNMENTS_MIN,
         ADMIN_ALTER_REASSIGNMENTS_MAX, alter_partition_reassignments_handle},
        {KAFKA_LIST_PARTITION_REASSIGNMENTS_KEY, ADMIN_LIST_REASSIGNMENTS_MIN,
         ADMIN_LIST_REASSIGNMENTS_MAX, list_partition_reassignments_handle},
        {KAFKA_LIST_CONFIG_RESOURCES_KEY, ADMIN_LIST_CONFIG_RESOURCES_MIN,
         ADMIN_LIST_CONFIG_RESOURCES_MAX, list_config_resources_handle},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(apis); i++) {
        int rc = handlers_serve(d, apis[i].key, apis[i].min, apis[i].max, apis[i].fn);
        if (rc != 0)
            return rc;
    }
    return 0;
}
