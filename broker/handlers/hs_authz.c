/* The authorizer on the shard runtime: who sent a request (its connection's principal and
 * client address) and the decision for one action against the shard's metadata image (the
 * snapshot every request refreshes in handlers_dispatch), without a lock or an allocation. */
#include <string.h>

#include "broker/handlers/handlers_internal.h"
#include "broker/shard_internal.h" /* the connection's peer address */
#include "common/lm_assert.h"

/* The client's address without its port ("127.0.0.1"), as Kafka compares ACL hosts with
 * InetAddress.getHostAddress(); "?" when unknown (matches only host "*"). */
static void peer_host(struct broker_req *req, char *out, size_t cap)
{
    const char *peer = req->conn != NULL ? req->conn->peer : "?";
    size_t n = strcspn(peer, ":");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, peer, n);
    out[n] = '\0';
}

void h_subject(struct broker_req *req, const struct authz_config **cfg, struct authz_subject *who)
{
    const struct handlers_ctx *node = h_node(req);
    char *host = kafka_arena_alloc(&req->arena, AUTHZ_HOST_MAX + 1, 1);
    if (host != NULL)
        peer_host(req, host, AUTHZ_HOST_MAX + 1);
    *cfg = &node->authz;
    who->principal = broker_req_auth(req)->principal;
    who->host = host != NULL ? host : "?";
}

bool h_authz_on(struct broker_req *req)
{
    return h_node(req)->authz.enabled;
}

/* Who sent req (host in *host) and the shard's image whose bindings decide. */
static const struct lm_meta_state *subject_of(struct broker_req *req, struct authz_subject *who,
                                              char host[AUTHZ_HOST_MAX + 1])
{
    peer_host(req, host, AUTHZ_HOST_MAX + 1);
    *who = (struct authz_subject){.principal = broker_req_auth(req)->principal, .host = host};
    struct hshard *hs = hs_of(req->shard);
    LM_ASSERT(hs->snap != NULL);
    return &hs->snap->state;
}

bool h_allowed(struct broker_req *req, int8_t op, int8_t type, const char *name, size_t len)
{
    const struct handlers_ctx *node = h_node(req);
    if (!node->authz.enabled)
        return true;
    if (authz_is_super(&node->authz, broker_req_auth(req)->principal))
        return true;
    char buf[1024];
    if (len >= sizeof(buf))
        return false; /* no binding can name it (AUTHZ_NAME_MAX), nor a prefix be checked */
    memcpy(buf, name, len);
    buf[len] = '\0';
    char host[AUTHZ_HOST_MAX + 1];
    struct authz_subject who;
    const struct lm_meta_state *st = subject_of(req, &who, host);
    return authz_allowed(&node->authz, st->acls, st->acl_count, &who, op, type, buf);
}

bool h_allowed_k(struct broker_req *req, int8_t op, int8_t type, struct kafka_str name)
{
    return h_allowed(req, op, type, name.len > 0 ? name.ptr : "",
                     name.len > 0 ? (size_t)name.len : 0);
}

bool h_allowed_cluster(struct broker_req *req, int8_t op)
{
    return h_allowed(req, op, AUTHZ_RES_CLUSTER, AUTHZ_CLUSTER_NAME,
                     sizeof(AUTHZ_CLUSTER_NAME) - 1);
}

bool h_allowed_any(struct broker_req *req, int8_t op, int8_t type)
{
    const struct handlers_ctx *node = h_node(req);
    if (!node->authz.enabled)
        return true;
    char host[AUTHZ_HOST_MAX + 1];
    struct authz_subject who;
    const struct lm_meta_state *st = subject_of(req, &who, host);
    return authz_allowed_any(&node->authz, st->acls, st->acl_count, &who, op, type);
}

int32_t h_authorized_ops(struct broker_req *req, int8_t type, const char *name)
{
    char host[AUTHZ_HOST_MAX + 1];
    struct authz_subject who;
    const struct lm_meta_state *st = subject_of(req, &who, host);
    return authz_authorized_ops(&h_node(req)->authz, st->acls, st->acl_count, &who, type, name);
}
