/* DescribeCluster (60, KIP-700): on a single node this node is the only broker and the
 * controller. v1 adds the endpoint type (KIP-919): a broker answers only for brokers, and a
 * request for controllers gets MISMATCHED_ENDPOINT_TYPE as Kafka's brokers answer it. */
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/handlers/handlers_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

enum { ENDPOINT_BROKERS = 1, ENDPOINT_CONTROLLERS = 2 };

/* AclOperation codes a CLUSTER resource supports (KIP-430): with no authorizer every one is
 * allowed. CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10,
 * ALTER_CONFIGS 11, IDEMPOTENT_WRITE 12. */
#define CLUSTER_OPERATIONS                                                                         \
    ((1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12))

/* A cluster: the registered nodes, each with its endpoint for the listener the request came in
 * on; fenced ones only when the request asks for them (v2 include_fenced_brokers, marked
 * is_fenced), as Kafka leaves them out otherwise: a tool that then talks to every listed node
 * (kafka-reassign-partitions clearing its throttles) must not wait for a dead one. */
static int describe_cluster_nodes(const struct admin_env *env, bool include_fenced,
                                  struct kafka_describe_cluster_response *rs, struct kafka_arena *a)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    int rc = 0;
    rs->brokers = kafka_arena_alloc_array(a, st->broker_count ? st->broker_count : 1,
                                          sizeof(*rs->brokers), 8);
    if (rs->brokers == NULL)
        rc = LM_E_NOMEM;
    int32_t n = 0;
    for (size_t i = 0; rc == 0 && i < st->broker_count; i++) {
        const struct lm_meta_broker *b = &st->brokers[i];
        char host[256];
        uint16_t port;
        if (b->fenced && !include_fenced)
            continue;
        if (!lm_meta_broker_endpoint(b, env->advertised ? env->advertised->name : NULL, host,
                                     sizeof(host), &port))
            continue;
        char *h = kafka_arena_alloc(a, strlen(host) + 1, 1);
        char *r = kafka_arena_alloc(a, strlen(b->rack) + 1, 1);
        if (h == NULL || r == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        strcpy(h, host);
        strcpy(r, b->rack);
        rs->brokers[n++] = (struct kafka_describe_cluster_response_describe_cluster_broker){
            .broker_id = b->id,
            .host = admin_kstr(h),
            .port = port,
            .rack = b->rack[0] ? admin_kstr(r) : KAFKA_STR_NULL,
            .is_fenced = b->fenced,
        };
    }
    rs->brokers_count = n;
    if (env->controller_id >= 0)
        rs->controller_id = env->controller_id;
    lm_meta_snapshot_release(snap);
    return rc;
}

int admin_describe_cluster(const struct admin_env *env, int16_t version,
                           const struct kafka_describe_cluster_request *rq,
                           struct kafka_describe_cluster_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_DESCRIBE_CLUSTER_MIN && version <= ADMIN_DESCRIBE_CLUSTER_MAX);
    LM_ASSERT(env->cfg != NULL && env->cluster_id != NULL);
    const struct broker_config *cfg = env->cfg;
    rs->throttle_time_ms = 0;
    rs->error_code = KAFKA_NONE;
    rs->error_message = KAFKA_STR_NULL;
    rs->endpoint_type = version >= 1 ? rq->endpoint_type : ENDPOINT_BROKERS;
    rs->cluster_id = admin_kstr(env->cluster_id);
    rs->controller_id = cfg->node_id;
    /* KafkaApis.handleDescribeClusterRequest: the operations allowed on the cluster when the
     * principal may DESCRIBE it, else none */
    rs->cluster_authorized_operations = INT32_MIN;
    if (rq->include_cluster_authorized_operations)
        rs->cluster_authorized_operations =
            !admin_authz_on(env) ? CLUSTER_OPERATIONS
            : admin_allowed(env, AUTHZ_OP_DESCRIBE, AUTHZ_RES_CLUSTER,
                            admin_kstr(AUTHZ_CLUSTER_NAME))
                ? admin_authorized_ops(env, AUTHZ_RES_CLUSTER, AUTHZ_CLUSTER_NAME)
                : 0;
    rs->brokers = NULL;
    rs->brokers_count = 0;
    if (version >= 1 && rq->endpoint_type != ENDPOINT_BROKERS) {
        rs->error_code = rq->endpoint_type == ENDPOINT_CONTROLLERS
                             ? KAFKA_MISMATCHED_ENDPOINT_TYPE
                             : KAFKA_UNSUPPORTED_ENDPOINT_TYPE;
        rs->controller_id = -1;
        if (rq->endpoint_type == ENDPOINT_CONTROLLERS)
            return admin_fmt(a, &rs->error_message,
                             "The request was sent to an endpoint of type BROKER, but we "
                             "wanted an endpoint of type CONTROLLER");
        return admin_fmt(a, &rs->error_message, "Unsupported endpoint type %d", rq->endpoint_type);
    }
    if (env->defer != NULL)
        return describe_cluster_nodes(env, version >= 2 && rq->include_fenced_brokers, rs, a);
    rs->brokers = kafka_arena_alloc_array(a, 1, sizeof(*rs->brokers), 8);
    if (rs->brokers == NULL)
        return LM_E_NOMEM;
    /* The endpoint of the listener the request came in on, exactly as Metadata reports it
     * (data_metadata.c), so a client sees one address for this node whichever API it asked. */
    const struct broker_listener *l = env->advertised != NULL     ? env->advertised
                                      : cfg->advertised_count > 0 ? &cfg->advertised[0]
                                                                  : &cfg->listeners[0];
    const char *host = l->host[0] != '\0' ? l->host : "localhost";
    rs->brokers[0] = (struct kafka_describe_cluster_response_describe_cluster_broker){
        .broker_id = cfg->node_id,
        .host = admin_kstr(host),
        .port = l->port,
        .rack = KAFKA_STR_NULL,
        .is_fenced = false,
    };
    rs->brokers_count = 1;
    return 0;
}
