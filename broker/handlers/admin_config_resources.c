/* ListConfigResources (74): the resources that hold configs, as Kafka's
 * KafkaApis.handleListConfigResources lists them for Admin.listConfigResources and
 * kafka-configs --describe --all of a type.
 *
 * v0 (ListClientMetricsResources, KIP-714) supports only CLIENT_METRICS; v1 (KIP-1142) TOPIC,
 * BROKER, BROKER_LOGGER, CLIENT_METRICS and GROUP, an empty filter meaning all of them. A
 * requested type outside the version's set fails the whole request with UNSUPPORTED_VERSION
 * and no resources. The principal needs DESCRIBE_CONFIGS on the cluster
 * (CLUSTER_AUTHORIZATION_FAILED otherwise).
 *
 * What each type lists, in Kafka's order (groups, client metrics, broker loggers, brokers,
 * topics):
 * - GROUP: the groups with dynamic configs (LM_META_GROUP_CONFIGS).
 * - CLIENT_METRICS: subscriptions of client telemetry (KIP-714); laminar has none.
 * - BROKER_LOGGER and BROKER: every broker of the request's listener, by node id: in a cluster
 *   the registered nodes with an endpoint (fenced ones too, as Kafka's metadata cache lists
 *   them), on a single node the node itself.
 * - TOPIC: every topic of the metadata image, internal ones included. */
#include <stdio.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

typedef struct kafka_list_config_resources_response_config_resource lcr_resource;

/* Whether type is served at version (ListConfigResourcesRequest.supportedResourceTypes). */
static bool type_supported(int16_t version, int8_t type)
{
    if (type == ADMIN_RESOURCE_CLIENT_METRICS)
        return true;
    return version >= 1 && (type == ADMIN_RESOURCE_TOPIC || type == ADMIN_RESOURCE_BROKER ||
                            type == ADMIN_RESOURCE_BROKER_LOGGER || type == ADMIN_RESOURCE_GROUP);
}

static bool type_wanted(const struct kafka_list_config_resources_request *rq, int16_t version,
                        int8_t type)
{
    if (version < 1 || rq->resource_types_count <= 0)
        return type_supported(version, type);
    for (int32_t i = 0; i < rq->resource_types_count; i++)
        if (rq->resource_types[i] == type)
            return true;
    return false;
}

/* The ids of the brokers of the request's listener (see the top), written as decimal
 * strings into the arena; *n of them. 0 or LM_E_NOMEM. */
static int broker_ids(const struct admin_env *env, const struct lm_meta_state *st,
                      struct kafka_arena *a, const char ***out, int32_t *n)
{
    *n = 0;
    size_t cap = env->defer != NULL ? st->broker_count : 1;
    *out = kafka_arena_alloc_array(a, cap > 0 ? cap : 1, sizeof(**out), 8);
    if (*out == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < cap; i++) {
        int32_t id = env->cfg->node_id;
        if (env->defer != NULL) {
            const struct lm_meta_broker *b = &st->brokers[i];
            char host[256];
            uint16_t port;
            if (!lm_meta_broker_endpoint(b, env->advertised ? env->advertised->name : NULL, host,
                                         sizeof(host), &port))
                continue;
            id = b->id;
        }
        char *s = kafka_arena_alloc(a, 12, 1);
        if (s == NULL)
            return LM_E_NOMEM;
        snprintf(s, 12, "%d", (int)id);
        (*out)[(*n)++] = s;
    }
    return 0;
}

int admin_list_config_resources(const struct admin_env *env, int16_t version,
                                const struct kafka_list_config_resources_request *rq,
                                struct kafka_list_config_resources_response *rs,
                                struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_LIST_CONFIG_RESOURCES_MIN &&
              version <= ADMIN_LIST_CONFIG_RESOURCES_MAX);
    rs->throttle_time_ms = 0;
    rs->error_code = KAFKA_NONE;
    rs->config_resources = NULL;
    rs->config_resources_count = 0;
    if (!admin_allowed(env, AUTHZ_OP_DESCRIBE_CONFIGS, AUTHZ_RES_CLUSTER,
                       admin_kstr(AUTHZ_CLUSTER_NAME))) {
        rs->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        return 0;
    }
    if (version >= 1) {
        for (int32_t i = 0; i < rq->resource_types_count; i++) {
            if (!type_supported(version, rq->resource_types[i])) {
                rs->error_code = KAFKA_UNSUPPORTED_VERSION;
                return 0;
            }
        }
    }
    /* CLIENT_METRICS: laminar holds none (see the top). */
    bool groups = type_wanted(rq, version, ADMIN_RESOURCE_GROUP);
    bool loggers = type_wanted(rq, version, ADMIN_RESOURCE_BROKER_LOGGER);
    bool brokers = type_wanted(rq, version, ADMIN_RESOURCE_BROKER);
    bool topics = type_wanted(rq, version, ADMIN_RESOURCE_TOPIC);
    if (!groups && !loggers && !brokers && !topics)
        return 0;

    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    const char **ids = NULL;
    int32_t n_ids = 0;
    int rc = 0;
    if (loggers || brokers)
        rc = broker_ids(env, st, a, &ids, &n_ids);
    size_t cap = (size_t)n_ids * ((size_t)loggers + (size_t)brokers) +
                 (topics ? st->topic_count : 0) + (groups ? st->group_config_count : 0);
    lcr_resource *out = NULL;
    if (rc == 0 && cap > 0) {
        out = kafka_arena_alloc_array(a, cap, sizeof(*out), 8);
        if (out == NULL)
            rc = LM_E_NOMEM;
    }
    int32_t n = 0;
    for (size_t i = 0; rc == 0 && groups && i < st->group_config_count; i++) {
        char *name = NULL;
        rc = admin_cstr(a, admin_kstr(st->group_configs[i].group), &name);
        if (rc == 0)
            out[n++] = (lcr_resource){.resource_name = admin_kstr(name),
                                      .resource_type = ADMIN_RESOURCE_GROUP};
    }
    for (int32_t i = 0; rc == 0 && loggers && i < n_ids; i++)
        out[n++] = (lcr_resource){.resource_name = admin_kstr(ids[i]),
                                  .resource_type = ADMIN_RESOURCE_BROKER_LOGGER};
    for (int32_t i = 0; rc == 0 && brokers && i < n_ids; i++)
        out[n++] = (lcr_resource){.resource_name = admin_kstr(ids[i]),
                                  .resource_type = ADMIN_RESOURCE_BROKER};
    for (size_t i = 0; rc == 0 && topics && i < st->topic_count; i++) {
        char *name = NULL;
        /* the snapshot is released before the response is encoded: copy the name */
        rc = admin_cstr(a, admin_kstr(st->topics[i].name), &name);
        if (rc == 0)
            out[n++] = (lcr_resource){.resource_name = admin_kstr(name),
                                      .resource_type = ADMIN_RESOURCE_TOPIC};
    }
    lm_meta_snapshot_release(snap);
    if (rc != 0)
        return rc;
    rs->config_resources = out;
    rs->config_resources_count = n;
    return 0;
}
