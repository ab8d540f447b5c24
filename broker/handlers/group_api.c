/* Group APIs on top of the per-shard coordinators (group_coord.c): decode on the
 * connection's shard, translate to lm_group_* requests in the request's arena, run on the
 * owner shard, copy the coordinator's response into the Kafka response there, encode back
 * home. Served versions (handlers_serve below, all in full):
 *   FindCoordinator 0-6, JoinGroup 0-9, SyncGroup 0-5, Heartbeat 0-4, LeaveGroup 0-5,
 *   OffsetCommit 2-9 (v10 names topics by id only), OffsetFetch 1-9 (v10 likewise),
 *   DescribeGroups 0-6, ListGroups 0-5, DeleteGroups 0-2, OffsetDelete 0, TxnOffsetCommit 0-4.
 * Version mapping follows the wiring notes of broker/group/group.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/handlers/group_api.h"
#include "broker/handlers/group_internal.h"
#include "broker/handlers/share_state.h"
#include "broker/handlers/txn_internal.h"
#include "broker/group/group_records.h"
#include "broker/log.h"
#include "broker/shard_internal.h" /* the connection's peer address (JoinGroup client host) */
#include "common/lm_assert.h"
#include "protocol/kafka_messages.h"

/* DescribeGroups authorized_operations when not requested (Kafka: Integer.MIN_VALUE). */
#define AUTHORIZED_OPS_UNSET INT32_MIN

/* ---- arena copies (on the owner shard: the coordinator's response dies at advance) ---- */

static struct kafka_str sdup(struct greq *g, struct kafka_str s)
{
    if (s.len <= 0)
        return s.len < 0 ? KAFKA_STR_NULL : (struct kafka_str){"", 0};
    char *p = kafka_arena_alloc(&g->req->arena, (size_t)s.len, 1);
    if (p == NULL) {
        g->nomem = true;
        return (struct kafka_str){"", 0};
    }
    memcpy(p, s.ptr, (size_t)s.len);
    return (struct kafka_str){p, s.len};
}

static struct kafka_str sdup_nn(struct greq *g, struct kafka_str s)
{
    return s.len < 0 ? (struct kafka_str){"", 0} : sdup(g, s);
}

static struct kafka_bytes bdup(struct greq *g, struct kafka_bytes b)
{
    if (b.len <= 0)
        return (struct kafka_bytes){(const uint8_t *)"", 0};
    uint8_t *p = kafka_arena_alloc(&g->req->arena, (size_t)b.len, 1);
    if (p == NULL) {
        g->nomem = true;
        return (struct kafka_bytes){(const uint8_t *)"", 0};
    }
    memcpy(p, b.ptr, (size_t)b.len);
    return (struct kafka_bytes){p, b.len};
}

static void *galloc(struct greq *g, size_t n, size_t size)
{
    void *p = h_alloc(g->req, n, size);
    if (p == NULL)
        g->nomem = true;
    return p;
}

static struct kafka_str cstr(const char *s)
{
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

/* A request with n_ops calls; NULL (and the connection closed) on arena exhaustion. */
static struct greq *greq_new(struct broker_req *req, void *resp, size_t n_ops)
{
    struct greq *g = h_alloc(req, 1, sizeof(*g));
    struct gop *ops = h_alloc(req, n_ops, sizeof(*ops));
    if (g == NULL || ops == NULL) {
        h_close(req, "arena exhausted");
        return NULL;
    }
    g->req = req;
    g->version = req->api_version;
    g->resp = resp;
    g->ops = ops;
    g->n_ops = n_ops;
    return g;
}

static void gop_set(struct greq *g, size_t i, uint8_t kind, uint32_t owner, const void *in,
                    int32_t n)
{
    LM_ASSERT(i < g->n_ops);
    struct gop *op = &g->ops[i];
    op->g = g;
    op->kind = kind;
    op->owner = owner;
    op->in = in;
    op->n = n;
    op->index = i;
    op->deny = 0;
    op->cg = NULL;
    op->sg = NULL;
    op->cg_member_id = KAFKA_STR_NULL;
    op->cg_member_epoch = -1;
    op->cg_deleted = false;
    op->sg_deleted = false;
    op->cg_subscribed = NULL;
    op->cg_n_subscribed = 0;
}

/* Answers op i with err (GROUP_AUTHORIZATION_FAILED) unless the principal may perform op on
 * group id (KafkaApis checks before the coordinator sees the call). */
static void gop_authorize(struct greq *g, size_t i, int8_t acl_op, struct kafka_str id)
{
    LM_ASSERT(i < g->n_ops);
    if (!h_allowed_k(g->req, acl_op, AUTHZ_RES_GROUP, id))
        g->ops[i].deny = KAFKA_GROUP_AUTHORIZATION_FAILED;
}

struct greq *group_api_greq_new(struct broker_req *req, void *resp, size_t n_ops)
{
    return greq_new(req, resp, n_ops);
}

void group_api_gop_set(struct greq *g, size_t i, uint8_t kind, uint32_t owner, const void *in,
                       int32_t n, int8_t acl_op, struct kafka_str group_id)
{
    gop_set(g, i, kind, owner, in, n);
    gop_authorize(g, i, acl_op, group_id);
}

struct kafka_str group_api_sdup(struct greq *g, struct kafka_str s)
{
    return sdup(g, s);
}

void *group_api_alloc(struct greq *g, size_t n, size_t size)
{
    return galloc(g, n, size);
}

void group_api_finish(struct greq *g)
{
    if (!g->nomem && g->post != NULL)
        g->post(g);
    if (g->nomem) {
        h_close(g->req, "arena exhausted copying a group response");
        return;
    }
    if (g->then != NULL) {
        g->then(g);
        return;
    }
    h_respond(g->req, g->resp);
}

int group_api_call(struct lm_group_coord *c, struct gop *op, int64_t now_ms)
{
    uint64_t tok = (uint64_t)(uintptr_t)op;
    switch (op->kind) {
    case GOP_JOIN:
        return lm_group_join(c, now_ms, tok, op->in);
    case GOP_SYNC:
        return lm_group_sync(c, now_ms, tok, op->in);
    case GOP_HEARTBEAT:
        return lm_group_heartbeat(c, now_ms, tok, op->in);
    case GOP_LEAVE:
        return lm_group_leave(c, now_ms, tok, op->in);
    case GOP_COMMIT:
        return lm_group_commit(c, now_ms, tok, op->in);
    case GOP_FETCH:
        return lm_group_fetch(c, now_ms, tok, op->in);
    case GOP_DESCRIBE:
        return lm_group_describe(c, now_ms, tok, op->n, op->in);
    case GOP_LIST: {
        /* the classic coordinator lists every group; fill_list merges the consumer groups of
         * the shard and applies the request's filters to both */
        struct lm_group_list_req all = {0};
        return lm_group_list(c, now_ms, tok, &all);
    }
    case GOP_DELETE:
        return lm_group_delete(c, now_ms, tok, op->n, op->in);
    case GOP_OFFSET_DELETE:
        return lm_group_offset_delete(c, now_ms, tok, op->in);
    case GOP_TXN_COMMIT:
        return lm_group_txn_commit(c, now_ms, tok, op->in);
    default:
        LM_ASSERT(!"unknown group call");
        return LM_E_INVALID;
    }
}

/* ---- FindCoordinator (0-6) ------------------------------------------------------------------ */

/* A cluster: the group's coordinator is the node leading its __consumer_offsets partition
 * (Kafka's GroupCoordinator placement). The topic is created through the controller on the
 * first lookup, as Kafka does; meanwhile, and while the leader is fenced,
 * COORDINATOR_NOT_AVAILABLE (clients retry). */
struct coord_answer {
    int32_t node;
    struct kafka_str host;
    int32_t port;
    int16_t err;
};

/* Key type 2 (KIP-932's share coordinator, FindCoordinator v6): the node leading the
 * __share_group_state partition of "groupId:topicId:partition" (Kafka's
 * ShareCoordinatorService.partitionFor over the whole key), made at the first lookup. */
static struct coord_answer share_coordinator(struct broker_req *req, struct kafka_str key)
{
    struct hshard *hs = hs_of(req->shard);
    struct coord_answer a = {-1, {"", 0}, -1, KAFKA_COORDINATOR_NOT_AVAILABLE};
    int32_t n = share_state_partitions(hs, true);
    if (n <= 0)
        return a;
    int32_t p = lm_gr_partition_for(key, n);
    const struct lm_meta_state *st = &hs->snap->state;
    const struct lm_meta_topic *t = lm_meta_state_find(st, SHARE_STATE_TOPIC);
    if (t == NULL || p >= t->partition_count)
        return a;
    int32_t leader = hs_cluster(hs->node)
                         ? lm_meta_state_partition_leader(st, t, p, hs->node->cfg->node_id)
                         : hs->node->cfg->node_id;
    const struct lm_meta_broker *b = leader >= 0 ? lm_meta_state_broker(st, leader) : NULL;
    const struct broker_listener *l = broker_req_advertised(req);
    if (!hs_cluster(hs->node)) {
        a.host = cstr(l->host[0] != 0 ? l->host : "localhost");
        a.node = leader;
        a.port = l->port;
        a.err = KAFKA_NONE;
        return a;
    }
    char host[256];
    uint16_t port;
    const char *lname = hs->node->cfg->listeners[req->listener].name;
    if (b == NULL || !lm_meta_broker_endpoint(b, lname, host, sizeof(host), &port))
        return a;
    struct kafka_str hk = {host, (int32_t)strlen(host)};
    a.host = (struct kafka_str){h_strdup(req, hk), hk.len};
    if (a.host.ptr == NULL)
        return a;
    a.node = leader;
    a.port = port;
    a.err = KAFKA_NONE;
    return a;
}

static struct coord_answer cluster_coordinator(struct broker_req *req, int8_t type,
                                               struct kafka_str key)
{
    /* a transactional id's coordinator leads its __transaction_state partition (Kafka's
     * TransactionCoordinator placement), a group's its __consumer_offsets one */
    bool txn = type == 1;
    const char *topic = txn ? TXN_STATE_TOPIC : GROUP_OFFSETS_TOPIC;
    struct hshard *hs = hs_of(req->shard);
    struct coord_answer a = {-1, {"", 0}, -1, KAFKA_COORDINATOR_NOT_AVAILABLE};
    hs_refresh(hs);
    const struct lm_meta_state *st = &hs->snap->state;
    const struct lm_meta_topic *t = lm_meta_state_find(st, topic);
    if (t == NULL) {
        struct lm_meta_record r;
        struct txn_topic_scratch sc;
        int32_t *ids = NULL;
        /* offsets.topic.replication.factor / transaction.state.log.replication.factor
         * (Kafka's default 3), capped by the live nodes */
        const char *rfv =
            broker_config_get(hs->node->cfg, txn ? "transaction.state.log.replication.factor"
                                                 : "offsets.topic.replication.factor");
        long want = rfv != NULL ? strtol(rfv, NULL, 10) : 3;
        long live = 0;
        for (size_t i = 0; i < st->broker_count; i++)
            live += !st->brokers[i].fenced;
        int16_t rf = (int16_t)(want < 1 ? 1 : want > live ? (live > 0 ? live : 1) : want);
        if (rf > LM_META_REPLICATION_MAX)
            rf = LM_META_REPLICATION_MAX;
        int rc = txn ? txn_state_topic_record(hs->node, rf, &sc, &r)
                     : group_offsets_topic_record(hs->node, &r);
        if (rc == 0)
            rc = hs_assign(st, 0, r.partition_count, rf, &ids);
        if (rc == 0) {
            r.replicas = ids;
            r.replication_factor = rf;
            rc = hs_submit_detached(hs, &r);
        }
        free(ids);
        if (rc != 0 && rc != LM_E_AGAIN)
            BLOG_WARN_LIMITED("cannot create %s: %s", topic, lm_strerror(rc));
        return a;
    }
    if (key.len < 0)
        key = (struct kafka_str){"", 0};
    int32_t p = lm_gr_partition_for(key, txn ? hs->node->txn_cfg.state_partitions
                                             : hs->node->group_cfg.offsets_topic_partitions);
    if (p >= t->partition_count)
        return a;
    int32_t leader = lm_meta_state_partition_leader(st, t, p, hs->node->cfg->node_id);
    const struct lm_meta_broker *b = leader >= 0 ? lm_meta_state_broker(st, leader) : NULL;
    char host[256];
    uint16_t port;
    const char *lname = hs->node->cfg->listeners[req->listener].name;
    if (b == NULL || !lm_meta_broker_endpoint(b, lname, host, sizeof(host), &port))
        return a;
    struct kafka_str hk = {host, (int32_t)strlen(host)};
    a.host = (struct kafka_str){h_strdup(req, hk), hk.len};
    if (a.host.ptr == NULL)
        return a;
    a.node = leader;
    a.port = port;
    a.err = KAFKA_NONE;
    return a;
}

/* KafkaApis.handleFindCoordinatorRequest: DESCRIBE on the group or the transactional id. */
static int16_t coordinator_denied(struct broker_req *req, int8_t type, struct kafka_str key)
{
    if (type == 0 && !h_allowed_k(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_GROUP, key))
        return KAFKA_GROUP_AUTHORIZATION_FAILED;
    if (type == 1 && !h_allowed_k(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TRANSACTIONAL_ID, key))
        return KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    /* the share coordinator is for brokers: CLUSTER_ACTION on the cluster */
    if (type == 2 && !h_allowed_cluster(req, AUTHZ_OP_CLUSTER_ACTION))
        return KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    return KAFKA_NONE;
}

static void find_coordinator(struct broker_req *req)
{
    struct kafka_find_coordinator_request rq;
    kafka_find_coordinator_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    const struct broker_config *cfg = h_node(req)->cfg;
    const struct broker_listener *l = broker_req_advertised(req);
    struct kafka_str host = cstr(l->host[0] != 0 ? l->host : "localhost");
    /* Key types: 0 group, 1 transaction (single node: this node for both); 2 share (v6+:
     * the leader of the key's __share_group_state partition, share_coordinator). */
    int8_t type = req->api_version >= 1 ? rq.key_type : 0;
    int16_t err = type == 0 || type == 1 || (type == 2 && req->api_version >= 6)
                      ? KAFKA_NONE
                      : KAFKA_INVALID_REQUEST;
    struct kafka_find_coordinator_response resp;
    kafka_find_coordinator_response_init(&resp);
    resp.throttle_time_ms = 0;
    bool cluster = hs_cluster(h_node(req)) && (type == 0 || type == 1);
    int16_t denied = req->api_version < 4 && err == KAFKA_NONE
                         ? coordinator_denied(req, type, rq.key)
                         : KAFKA_NONE;
    if (denied != KAFKA_NONE) {
        resp.error_code = denied;
        resp.error_message = KAFKA_STR_NULL;
        resp.node_id = -1;
        resp.host = cstr("");
        resp.port = -1;
        h_respond(req, &resp);
        return;
    }
    if (req->api_version < 4 && cluster) {
        struct coord_answer ca = cluster_coordinator(req, type, rq.key);
        resp.error_code = ca.err;
        resp.error_message = ca.err ? cstr("The coordinator is not available.") : KAFKA_STR_NULL;
        resp.node_id = ca.node;
        resp.host = ca.host;
        resp.port = ca.port;
        h_respond(req, &resp);
        return;
    }
    /* A single node: __transaction_state is created at the first lookup of a transactional
     * id, answered COORDINATOR_NOT_AVAILABLE meanwhile as Kafka does (clients retry; its
     * partitions are open and loaded by then). */
    const char *why = "unsupported coordinator key type";
    if (!cluster && type == 1 && err == KAFKA_NONE) {
        bool created = false;
        int rc = txn_state_topic_create(hs_of(req->shard), &created);
        if (rc != 0)
            BLOG_WARN_LIMITED("cannot create %s: %s", TXN_STATE_TOPIC, lm_strerror(rc));
        if (rc != 0 || created) {
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
            why = "The coordinator is not available.";
        }
    }
    if (req->api_version < 4) {
        resp.error_code = err;
        resp.error_message = err ? cstr(why) : KAFKA_STR_NULL;
        resp.node_id = err ? -1 : cfg->node_id;
        resp.host = err ? cstr("") : host;
        resp.port = err ? -1 : l->port;
        h_respond(req, &resp);
        return;
    }
    int32_t n = rq.coordinator_keys_count > 0 ? rq.coordinator_keys_count : 0;
    resp.coordinators = h_alloc(req, (size_t)n, sizeof(*resp.coordinators));
    if (resp.coordinators == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    resp.coordinators_count = n;
    for (int32_t i = 0; i < n; i++) {
        struct kafka_find_coordinator_response_coordinator *o = &resp.coordinators[i];
        o->key = rq.coordinator_keys[i];
        int16_t deny = err == KAFKA_NONE ? coordinator_denied(req, type, o->key) : KAFKA_NONE;
        if (deny != KAFKA_NONE) {
            o->node_id = -1;
            o->host = cstr("");
            o->port = -1;
            o->error_code = deny;
            o->error_message = KAFKA_STR_NULL;
            continue;
        }
        if (type == 2 && err == KAFKA_NONE) {
            bool valid = lm_shr_coord_key_valid(o->key.ptr, o->key.len);
            struct coord_answer ca =
                valid ? share_coordinator(req, o->key)
                      : (struct coord_answer){-1, {"", 0}, -1, KAFKA_INVALID_REQUEST};
            o->node_id = ca.node;
            o->host = ca.host;
            o->port = ca.port;
            o->error_code = ca.err;
            o->error_message = ca.err == KAFKA_INVALID_REQUEST ? cstr("Invalid coordinator key.")
                               : ca.err ? cstr("The coordinator is not available.")
                                        : KAFKA_STR_NULL;
            continue;
        }
        if (cluster) {
            struct coord_answer ca = cluster_coordinator(req, type, o->key);
            o->node_id = ca.node;
            o->host = ca.host;
            o->port = ca.port;
            o->error_code = ca.err;
            o->error_message = ca.err ? cstr("The coordinator is not available.") : KAFKA_STR_NULL;
            continue;
        }
        o->node_id = err ? -1 : cfg->node_id;
        o->host = err ? cstr("") : host;
        o->port = err ? -1 : l->port;
        o->error_code = err;
        o->error_message = err ? cstr(why) : KAFKA_STR_NULL;
    }
    h_respond(req, &resp);
}

/* ---- JoinGroup (0-9) ------------------------------------------------------------------------ */

static struct kafka_str client_host(struct broker_req *req)
{
    /* Kafka shows the client's InetAddress.toString(): "/127.0.0.1". */
    const char *peer = req->conn != NULL ? req->conn->peer : "?";
    size_t n = strcspn(peer, ":");
    char *s = kafka_arena_alloc(&req->arena, n + 2, 1);
    if (s == NULL)
        return (struct kafka_str){"", 0};
    s[0] = '/';
    memcpy(s + 1, peer, n);
    return (struct kafka_str){s, (int32_t)(n + 1)};
}

static void join_group(struct broker_req *req)
{
    int16_t v = req->api_version;
    struct kafka_join_group_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_join_group_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_join_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_join_group_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_join_group_response_init(resp);
    in->group_id = rq->group_id;
    in->member_id = rq->member_id;
    in->group_instance_id = v >= 5 ? rq->group_instance_id : KAFKA_STR_NULL;
    in->protocol_type = rq->protocol_type;
    in->client_id = req->client_id != NULL ? (struct kafka_str){req->client_id, req->client_id_len}
                                           : (struct kafka_str){"", 0};
    in->client_host = client_host(req);
    in->session_timeout_ms = rq->session_timeout_ms;
    in->rebalance_timeout_ms = v >= 1 ? rq->rebalance_timeout_ms : -1;
    in->require_known_member_id = v >= 4; /* KIP-394 */
    int32_t np = rq->protocols_count > 0 ? rq->protocols_count : 0;
    struct lm_group_protocol *protos = h_alloc(req, (size_t)np, sizeof(*protos));
    if (protos == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    for (int32_t i = 0; i < np; i++) {
        protos[i].name = rq->protocols[i].name;
        protos[i].metadata = rq->protocols[i].metadata;
    }
    in->n_protocols = np;
    in->protocols = protos;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    g->aux = rq;
    gop_set(g, 0, GOP_JOIN, group_owner_of(hs_of(req->shard), rq->group_id), in, 1);
    gop_authorize(g, 0, AUTHZ_OP_READ, rq->group_id);
    group_ops_start(g);
}

static void fill_join(struct greq *g, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_join_group_response *o = g->resp;
    const struct kafka_join_group_request *rq = g->aux;
    o->throttle_time_ms = 0;
    if (err != 0 || r == NULL) {
        o->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        o->generation_id = -1;
        o->protocol_type = KAFKA_STR_NULL;
        o->protocol_name = g->version < 7 ? (struct kafka_str){"", 0} : KAFKA_STR_NULL;
        o->leader = (struct kafka_str){"", 0};
        o->member_id = sdup_nn(g, rq->member_id);
        o->members_count = 0;
        return;
    }
    const struct lm_group_join_resp *j = &r->u.join;
    o->error_code = j->error_code;
    o->generation_id = j->generation_id;
    o->protocol_type = sdup(g, j->protocol_type);
    /* protocol_name is nullable from v7 only; older versions send "" (wiring notes). */
    o->protocol_name = g->version < 7 ? sdup_nn(g, j->protocol_name) : sdup(g, j->protocol_name);
    o->leader = sdup_nn(g, j->leader);
    o->skip_assignment = j->skip_assignment;
    o->member_id = sdup_nn(g, j->member_id);
    int32_t n = j->n_members > 0 ? j->n_members : 0;
    o->members = galloc(g, (size_t)n, sizeof(*o->members));
    o->members_count = o->members != NULL ? n : 0;
    for (int32_t i = 0; i < o->members_count; i++) {
        o->members[i].member_id = sdup_nn(g, j->members[i].member_id);
        o->members[i].group_instance_id = sdup(g, j->members[i].group_instance_id);
        o->members[i].metadata = bdup(g, j->members[i].metadata);
    }
}

/* ---- SyncGroup (0-5) ------------------------------------------------------------------------ */

static void sync_group(struct broker_req *req)
{
    int16_t v = req->api_version;
    struct kafka_sync_group_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_sync_group_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_sync_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_sync_group_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_sync_group_response_init(resp);
    in->group_id = rq->group_id;
    in->generation_id = rq->generation_id;
    in->member_id = rq->member_id;
    in->group_instance_id = v >= 3 ? rq->group_instance_id : KAFKA_STR_NULL;
    in->protocol_type = v >= 5 ? rq->protocol_type : KAFKA_STR_NULL;
    in->protocol_name = v >= 5 ? rq->protocol_name : KAFKA_STR_NULL;
    int32_t na = rq->assignments_count > 0 ? rq->assignments_count : 0;
    struct lm_group_assignment *as = h_alloc(req, (size_t)na, sizeof(*as));
    if (as == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    for (int32_t i = 0; i < na; i++) {
        as[i].member_id = rq->assignments[i].member_id;
        as[i].assignment = rq->assignments[i].assignment;
    }
    in->n_assignments = na;
    in->assignments = as;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    gop_set(g, 0, GOP_SYNC, group_owner_of(hs_of(req->shard), rq->group_id), in, 1);
    gop_authorize(g, 0, AUTHZ_OP_READ, rq->group_id);
    group_ops_start(g);
}

static void fill_sync(struct greq *g, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_sync_group_response *o = g->resp;
    o->throttle_time_ms = 0;
    if (err != 0 || r == NULL) {
        o->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        o->protocol_type = KAFKA_STR_NULL;
        o->protocol_name = KAFKA_STR_NULL;
        o->assignment = (struct kafka_bytes){(const uint8_t *)"", 0};
        return;
    }
    const struct lm_group_sync_resp *s = &r->u.sync;
    o->error_code = s->error_code;
    o->protocol_type = sdup(g, s->protocol_type);
    o->protocol_name = sdup(g, s->protocol_name);
    o->assignment = bdup(g, s->assignment);
}

/* ---- Heartbeat (0-4) ------------------------------------------------------------------------ */

static void heartbeat(struct broker_req *req)
{
    struct kafka_heartbeat_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_heartbeat_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_heartbeat_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_heartbeat_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_heartbeat_response_init(resp);
    in->group_id = rq->group_id;
    in->generation_id = rq->generation_id;
    in->member_id = rq->member_id;
    in->group_instance_id = req->api_version >= 3 ? rq->group_instance_id : KAFKA_STR_NULL;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    gop_set(g, 0, GOP_HEARTBEAT, group_owner_of(hs_of(req->shard), rq->group_id), in, 1);
    gop_authorize(g, 0, AUTHZ_OP_READ, rq->group_id);
    group_ops_start(g);
}

static void fill_heartbeat(struct greq *g, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_heartbeat_response *o = g->resp;
    o->throttle_time_ms = 0;
    o->error_code = err != 0 || r == NULL ? (err ? err : KAFKA_UNKNOWN_SERVER_ERROR)
                                          : r->u.heartbeat.error_code;
}

/* ---- LeaveGroup (0-5) ----------------------------------------------------------------------- */

static void leave_group(struct broker_req *req)
{
    struct kafka_leave_group_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_leave_group_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_leave_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_leave_group_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_leave_group_response_init(resp);
    in->group_id = rq->group_id;
    struct lm_group_leave_member *ms;
    if (req->api_version < 3) {
        /* v0-2: one member from the top-level id (KIP-345 batched the rest). */
        ms = h_alloc(req, 1, sizeof(*ms));
        if (ms != NULL) {
            ms[0].member_id = rq->member_id;
            ms[0].group_instance_id = KAFKA_STR_NULL;
        }
        in->n_members = 1;
    } else {
        int32_t n = rq->members_count > 0 ? rq->members_count : 0;
        ms = h_alloc(req, (size_t)n, sizeof(*ms));
        for (int32_t i = 0; ms != NULL && i < n; i++) {
            ms[i].member_id = rq->members[i].member_id;
            ms[i].group_instance_id = rq->members[i].group_instance_id;
        }
        in->n_members = n;
    }
    if (ms == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    in->members = ms;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    g->aux = in;
    gop_set(g, 0, GOP_LEAVE, group_owner_of(hs_of(req->shard), rq->group_id), in, 1);
    gop_authorize(g, 0, AUTHZ_OP_READ, rq->group_id);
    group_ops_start(g);
}

static void fill_leave(struct greq *g, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_leave_group_response *o = g->resp;
    o->throttle_time_ms = 0;
    o->members_count = 0;
    if (err != 0 || r == NULL) {
        o->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    const struct lm_group_leave_resp *l = &r->u.leave;
    o->error_code = l->error_code;
    if (g->version < 3) {
        if (o->error_code == KAFKA_NONE && l->n_members > 0)
            o->error_code = l->members[0].error_code;
        return;
    }
    int32_t n = l->n_members > 0 ? l->n_members : 0;
    o->members = galloc(g, (size_t)n, sizeof(*o->members));
    o->members_count = o->members != NULL ? n : 0;
    for (int32_t i = 0; i < o->members_count; i++) {
        o->members[i].member_id = sdup_nn(g, l->members[i].member_id);
        o->members[i].group_instance_id = sdup(g, l->members[i].group_instance_id);
        o->members[i].error_code = l->members[i].error_code;
    }
}

/* ---- OffsetCommit (2-9) --------------------------------------------------------------------- */

/* Which response topic/partition each coordinator topic/partition answers. */
struct commit_aux {
    int32_t n_topics;
    int32_t *topic_of; /* [coordinator topic] -> response topic */
    int32_t **part_of; /* [coordinator topic][partition] -> response partition */
};

static void offset_commit(struct broker_req *req)
{
    int16_t v = req->api_version;
    struct hshard *hs = hs_of(req->shard);
    struct kafka_offset_commit_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_offset_commit_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_commit_req *in = h_alloc(req, 1, sizeof(*in));
    struct commit_aux *aux = h_alloc(req, 1, sizeof(*aux));
    if (rq == NULL || resp == NULL || in == NULL || aux == NULL)
        goto nomem;
    kafka_offset_commit_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_offset_commit_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->topics = h_alloc(req, (size_t)nt, sizeof(*resp->topics));
    struct lm_group_commit_topic *lt = h_alloc(req, (size_t)nt, sizeof(*lt));
    aux->topic_of = h_alloc(req, (size_t)nt, sizeof(*aux->topic_of));
    aux->part_of = h_alloc(req, (size_t)nt, sizeof(*aux->part_of));
    if (resp->topics == NULL || lt == NULL || aux->topic_of == NULL || aux->part_of == NULL)
        goto nomem;
    resp->topics_count = nt;
    int32_t lnt = 0;
    /* KafkaApis.handleOffsetCommitRequest: READ on the group, else every partition
     * GROUP_AUTHORIZATION_FAILED; then READ on each topic */
    bool group_ok = h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_GROUP, rq->group_id);
    for (int32_t i = 0; i < nt; i++) {
        const struct kafka_offset_commit_request_topic *t = &rq->topics[i];
        struct kafka_offset_commit_response_topic *o = &resp->topics[i];
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        o->name = t->name;
        o->partitions = h_alloc(req, (size_t)np, sizeof(*o->partitions));
        struct lm_group_commit_part *lp = h_alloc(req, (size_t)np, sizeof(*lp));
        int32_t *map = h_alloc(req, (size_t)np, sizeof(*map));
        if (o->partitions == NULL || lp == NULL || map == NULL)
            goto nomem;
        o->partitions_count = np;
        /* Kafka checks the topic exists before the coordinator sees the commit. */
        const struct htopic *ht =
            t->name.len > 0 ? hs_topic(hs, t->name.ptr, (size_t)t->name.len) : NULL;
        int16_t denied = !group_ok ? KAFKA_GROUP_AUTHORIZATION_FAILED
                         : !h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, t->name)
                             ? KAFKA_TOPIC_AUTHORIZATION_FAILED
                             : KAFKA_NONE;
        int32_t lnp = 0;
        for (int32_t j = 0; j < np; j++) {
            const struct kafka_offset_commit_request_partition *p = &t->partitions[j];
            o->partitions[j].partition_index = p->partition_index;
            if (denied != KAFKA_NONE) {
                o->partitions[j].error_code = denied;
                continue;
            }
            if (ht == NULL || p->partition_index < 0 ||
                p->partition_index >= ht->meta->partition_count) {
                o->partitions[j].error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            lp[lnp].partition = p->partition_index;
            lp[lnp].offset = p->committed_offset;
            lp[lnp].leader_epoch = v >= 6 ? p->committed_leader_epoch : -1;
            lp[lnp].metadata = p->committed_metadata;
            map[lnp++] = j;
        }
        if (lnp == 0)
            continue;
        lt[lnt].name = t->name;
        lt[lnt].n_partitions = lnp;
        lt[lnt].partitions = lp;
        aux->topic_of[lnt] = i;
        aux->part_of[lnt] = map;
        lnt++;
    }
    aux->n_topics = lnt;
    in->group_id = rq->group_id;
    in->generation_id = rq->generation_id_or_member_epoch;
    in->member_id = rq->member_id;
    in->group_instance_id = v >= 7 ? rq->group_instance_id : KAFKA_STR_NULL;
    in->retention_ms = v <= 4 ? rq->retention_time_ms : -1;
    in->n_topics = lnt;
    in->topics = lt;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    g->aux = aux;
    gop_set(g, 0, GOP_COMMIT, group_owner_of(hs, rq->group_id), in, 1);
    if (!group_ok) /* the coordinator never sees it */
        g->ops[0].deny = KAFKA_GROUP_AUTHORIZATION_FAILED;
    group_ops_start(g);
    return;
nomem:
    h_close(req, "arena exhausted");
}

/* The error of the coordinator's (topic t, partition j) of a commit. */
static int16_t commit_error(const struct lm_group_resp *r, int16_t err, int32_t t, int32_t j)
{
    const struct lm_group_commit_resp *c = r != NULL ? &r->u.commit : NULL;
    if (err != 0)
        return err;
    if (c != NULL && t < c->n_topics && j < c->topics[t].n_partitions)
        return c->topics[t].partitions[j].error_code;
    return KAFKA_UNKNOWN_SERVER_ERROR;
}

static void fill_commit(struct greq *g, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_offset_commit_response *o = g->resp;
    const struct commit_aux *aux = g->aux;
    const struct lm_group_commit_req *in = g->ops[0].in;
    for (int32_t t = 0; t < aux->n_topics; t++) {
        struct kafka_offset_commit_response_topic *ot = &o->topics[aux->topic_of[t]];
        for (int32_t j = 0; j < in->topics[t].n_partitions; j++)
            ot->partitions[aux->part_of[t][j]].error_code = commit_error(r, err, t, j);
    }
}

/* ---- TxnOffsetCommit (0-5) ------------------------------------------------------------------ */

/* v5+ (transaction version 2): the offsets partition was added to the transaction, or not. */
static void txn_offsets_added(void *ctx, int16_t error_code)
{
    struct greq *g = ctx;
    if (error_code != KAFKA_NONE)
        g->ops[0].deny = error_code; /* the group coordinator never sees it */
    group_ops_start(g);
}

static void txn_offset_commit(struct broker_req *req)
{
    int16_t v = req->api_version;
    struct hshard *hs = hs_of(req->shard);
    struct kafka_txn_offset_commit_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_txn_offset_commit_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_txn_commit_req *in = h_alloc(req, 1, sizeof(*in));
    struct commit_aux *aux = h_alloc(req, 1, sizeof(*aux));
    if (rq == NULL || resp == NULL || in == NULL || aux == NULL)
        goto nomem;
    kafka_txn_offset_commit_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_txn_offset_commit_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->topics = h_alloc(req, (size_t)nt, sizeof(*resp->topics));
    struct lm_group_commit_topic *lt = h_alloc(req, (size_t)nt, sizeof(*lt));
    aux->topic_of = h_alloc(req, (size_t)nt, sizeof(*aux->topic_of));
    aux->part_of = h_alloc(req, (size_t)nt, sizeof(*aux->part_of));
    if (resp->topics == NULL || lt == NULL || aux->topic_of == NULL || aux->part_of == NULL)
        goto nomem;
    resp->topics_count = nt;
    /* KafkaApis.handleTxnOffsetCommitRequest: WRITE on the transactional id, READ on the
     * group, then READ on each topic, which must exist */
    int16_t common =
        !h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TRANSACTIONAL_ID, rq->transactional_id)
            ? KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED
        : !h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_GROUP, rq->group_id)
            ? KAFKA_GROUP_AUTHORIZATION_FAILED
            : KAFKA_NONE;
    int32_t lnt = 0;
    for (int32_t i = 0; i < nt; i++) {
        const struct kafka_txn_offset_commit_request_txn_offset_commit_request_topic *t =
            &rq->topics[i];
        struct kafka_txn_offset_commit_response_txn_offset_commit_response_topic *o =
            &resp->topics[i];
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        o->name = t->name;
        o->partitions = h_alloc(req, (size_t)np, sizeof(*o->partitions));
        struct lm_group_commit_part *lp = h_alloc(req, (size_t)np, sizeof(*lp));
        int32_t *map = h_alloc(req, (size_t)np, sizeof(*map));
        if (o->partitions == NULL || lp == NULL || map == NULL)
            goto nomem;
        o->partitions_count = np;
        const struct htopic *ht =
            t->name.len > 0 ? hs_topic(hs, t->name.ptr, (size_t)t->name.len) : NULL;
        int16_t denied = common != KAFKA_NONE ? common
                         : !h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, t->name)
                             ? KAFKA_TOPIC_AUTHORIZATION_FAILED
                             : KAFKA_NONE;
        int32_t lnp = 0;
        for (int32_t j = 0; j < np; j++) {
            const struct kafka_txn_offset_commit_request_txn_offset_commit_request_partition *p =
                &t->partitions[j];
            o->partitions[j].partition_index = p->partition_index;
            if (denied != KAFKA_NONE) {
                o->partitions[j].error_code = denied;
                continue;
            }
            if (ht == NULL || p->partition_index < 0 ||
                p->partition_index >= ht->meta->partition_count) {
                o->partitions[j].error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            lp[lnp].partition = p->partition_index;
            lp[lnp].offset = p->committed_offset;
            lp[lnp].leader_epoch = v >= 2 ? p->committed_leader_epoch : -1;
            lp[lnp].metadata = p->committed_metadata;
            map[lnp++] = j;
        }
        if (lnp == 0)
            continue;
        lt[lnt] = (struct lm_group_commit_topic){t->name, lnp, lp};
        aux->topic_of[lnt] = i;
        aux->part_of[lnt] = map;
        lnt++;
    }
    aux->n_topics = lnt;
    in->commit = (struct lm_group_commit_req){
        .group_id = rq->group_id,
        .generation_id = v >= 3 ? rq->generation_id : -1,
        .member_id = v >= 3 ? rq->member_id : (struct kafka_str){"", 0},
        .group_instance_id = v >= 3 ? rq->group_instance_id : KAFKA_STR_NULL,
        .retention_ms = -1,
        .n_topics = lnt,
        .topics = lt,
    };
    in->producer_id = rq->producer_id;
    in->producer_epoch = rq->producer_epoch;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    g->aux = aux;
    gop_set(g, 0, GOP_TXN_COMMIT, group_owner_of(hs, rq->group_id), in, 1);
    if (common != KAFKA_NONE) /* the coordinator never sees it */
        g->ops[0].deny = common;
    /* KIP-890 part 2: a transaction version 2 client sends no AddOffsetsToTxn; the group's
     * offsets partition joins the transaction before the offsets are written */
    if (v >= 5 && common == KAFKA_NONE && lnt > 0) {
        if (txn_offsets_add(req, rq->transactional_id, rq->producer_id, rq->producer_epoch,
                            rq->group_id, txn_offsets_added, g))
            return;
        g->ops[0].deny = KAFKA_COORDINATOR_NOT_AVAILABLE; /* never written outside it */
    }
    group_ops_start(g);
    return;
nomem:
    h_close(req, "arena exhausted");
}

static void fill_txn_commit(struct greq *g, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_txn_offset_commit_response *o = g->resp;
    const struct commit_aux *aux = g->aux;
    const struct lm_group_txn_commit_req *in = g->ops[0].in;
    for (int32_t t = 0; t < aux->n_topics; t++) {
        struct kafka_txn_offset_commit_response_txn_offset_commit_response_topic *ot =
            &o->topics[aux->topic_of[t]];
        for (int32_t j = 0; j < in->commit.topics[t].n_partitions; j++)
            ot->partitions[aux->part_of[t][j]].error_code = commit_error(r, err, t, j);
    }
}

/* ---- OffsetFetch (1-9) ---------------------------------------------------------------------- */

static bool fetch_group_in(struct broker_req *req, struct lm_group_fetch_req *in,
                           struct kafka_str group_id, int32_t n_topics,
                           struct lm_group_fetch_topic *topics, bool require_stable)
{
    struct lm_group_fetch_group *grp = h_alloc(req, 1, sizeof(*grp));
    if (grp == NULL)
        return false;
    grp->group_id = group_id;
    grp->n_topics = n_topics;
    grp->topics = topics;
    in->n_groups = 1;
    in->groups = grp;
    in->require_stable = require_stable;
    return true;
}

/* OffsetFetch's topics as KafkaApis filters them (DESCRIBE on each topic): asked for every
 * topic, the ones not describable are left out; named, they are answered
 * TOPIC_AUTHORIZATION_FAILED per partition. */
#define FETCH_FILTER(TOPICS, COUNT, ALL)                                                           \
    do {                                                                                           \
        int32_t keep_ = 0;                                                                         \
        for (int32_t i_ = 0; i_ < (COUNT); i_++) {                                                 \
            __typeof__((TOPICS)[0]) *t_ = &(TOPICS)[i_];                                           \
            if (h_allowed_k(g->req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, t_->name)) {               \
                (TOPICS)[keep_++] = *t_;                                                           \
                continue;                                                                          \
            }                                                                                      \
            if (ALL)                                                                               \
                continue;                                                                          \
            for (int32_t j_ = 0; j_ < t_->partitions_count; j_++) {                                \
                t_->partitions[j_].committed_offset = -1;                                          \
                t_->partitions[j_].committed_leader_epoch = -1;                                    \
                t_->partitions[j_].metadata = KAFKA_STR_NULL;                                      \
                t_->partitions[j_].error_code = KAFKA_TOPIC_AUTHORIZATION_FAILED;                  \
            }                                                                                      \
            (TOPICS)[keep_++] = *t_;                                                               \
        }                                                                                          \
        (COUNT) = keep_;                                                                           \
    } while (0)

static void fetch_post(struct greq *g)
{
    if (!h_authz_on(g->req))
        return;
    struct kafka_offset_fetch_response *o = g->resp;
    const struct kafka_offset_fetch_request *rq = g->aux;
    if (g->version < 8) {
        if (o->topics != NULL)
            FETCH_FILTER(o->topics, o->topics_count, rq->topics_count < 0);
        return;
    }
    for (int32_t k = 0; k < o->groups_count; k++)
        if (o->groups[k].topics != NULL)
            FETCH_FILTER(o->groups[k].topics, o->groups[k].topics_count,
                         rq->groups[k].topics_count < 0);
}

static void offset_fetch(struct broker_req *req)
{
    int16_t v = req->api_version;
    struct hshard *hs = hs_of(req->shard);
    struct kafka_offset_fetch_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_offset_fetch_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL)
        goto nomem;
    kafka_offset_fetch_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_offset_fetch_response_init(resp);
    resp->throttle_time_ms = 0;
    bool stable = v >= 7 && rq->require_stable;
    if (v < 8) {
        /* v1-7: one group; null topics (v2+) = every committed partition. */
        int32_t nt = rq->topics_count;
        if (v < 2 && nt < 0)
            nt = 0;
        struct lm_group_fetch_topic *lt = h_alloc(req, nt > 0 ? (size_t)nt : 0, sizeof(*lt));
        struct lm_group_fetch_req *in = h_alloc(req, 1, sizeof(*in));
        if (lt == NULL || in == NULL)
            goto nomem;
        for (int32_t i = 0; i < nt; i++) {
            lt[i].name = rq->topics[i].name;
            lt[i].n_partitions = rq->topics[i].partition_indexes_count > 0
                                     ? rq->topics[i].partition_indexes_count
                                     : 0;
            lt[i].partitions = rq->topics[i].partition_indexes;
        }
        if (!fetch_group_in(req, in, rq->group_id, nt, lt, stable))
            goto nomem;
        struct greq *g = greq_new(req, resp, 1);
        if (g == NULL)
            return;
        gop_set(g, 0, GOP_FETCH, group_owner_of(hs, rq->group_id), in, 1);
        gop_authorize(g, 0, AUTHZ_OP_DESCRIBE, rq->group_id);
        g->aux = rq;
        g->post = fetch_post;
        group_ops_start(g);
        return;
    }
    /* v8+: several groups (KIP-709), each on its own coordinator shard. */
    int32_t ng = rq->groups_count > 0 ? rq->groups_count : 0;
    resp->groups = h_alloc(req, (size_t)ng, sizeof(*resp->groups));
    if (resp->groups == NULL)
        goto nomem;
    resp->groups_count = ng;
    struct greq *g = greq_new(req, resp, (size_t)ng);
    if (g == NULL)
        return;
    for (int32_t i = 0; i < ng; i++) {
        const struct kafka_offset_fetch_request_group *rg = &rq->groups[i];
        int32_t nt = rg->topics_count;
        struct lm_group_fetch_topic *lt = h_alloc(req, nt > 0 ? (size_t)nt : 0, sizeof(*lt));
        struct lm_group_fetch_req *in = h_alloc(req, 1, sizeof(*in));
        if (lt == NULL || in == NULL)
            goto nomem;
        for (int32_t j = 0; j < nt; j++) {
            lt[j].name = rg->topics[j].name;
            lt[j].n_partitions = rg->topics[j].partition_indexes_count > 0
                                     ? rg->topics[j].partition_indexes_count
                                     : 0;
            lt[j].partitions = rg->topics[j].partition_indexes;
        }
        if (!fetch_group_in(req, in, rg->group_id, nt, lt, stable))
            goto nomem;
        resp->groups[i].group_id = rg->group_id;
        gop_set(g, (size_t)i, GOP_FETCH, group_owner_of(hs, rg->group_id), in, 1);
        gop_authorize(g, (size_t)i, AUTHZ_OP_DESCRIBE, rg->group_id);
        if (v >= 9) { /* KIP-848: a consumer group member's fetch names it and its epoch */
            g->ops[i].cg_member_id = rg->member_id;
            g->ops[i].cg_member_epoch = rg->member_epoch;
        }
    }
    g->aux = rq;
    g->post = fetch_post;
    group_ops_start(g);
    return;
nomem:
    h_close(req, "arena exhausted");
}

static void fill_fetch(struct greq *g, struct gop *op, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_offset_fetch_response *o = g->resp;
    const struct lm_group_fetch_group_resp *gr =
        err == 0 && r != NULL && r->u.fetch.n_groups > 0 ? &r->u.fetch.groups[0] : NULL;
    int16_t gerr = gr != NULL ? gr->error_code : (err ? err : KAFKA_UNKNOWN_SERVER_ERROR);
    int32_t nt = gr != NULL && gr->n_topics > 0 ? gr->n_topics : 0;
    if (g->version < 2 && gr == NULL) {
        /* v0-1 have no group-level error: each requested partition carries it (as Kafka
         * answers); an empty list would read as "nothing committed" */
        const struct kafka_offset_fetch_request *rq = g->aux;
        int32_t rt = rq != NULL && rq->topics_count > 0 ? rq->topics_count : 0;
        o->topics = galloc(g, (size_t)rt, sizeof(*o->topics));
        o->topics_count = o->topics != NULL ? rt : 0;
        for (int32_t i = 0; i < o->topics_count; i++) {
            int32_t np = rq->topics[i].partition_indexes_count > 0
                             ? rq->topics[i].partition_indexes_count
                             : 0;
            o->topics[i].name = rq->topics[i].name;
            o->topics[i].partitions = galloc(g, (size_t)np, sizeof(*o->topics[i].partitions));
            o->topics[i].partitions_count = o->topics[i].partitions != NULL ? np : 0;
            for (int32_t j = 0; j < o->topics[i].partitions_count; j++) {
                struct kafka_offset_fetch_response_partition *p = &o->topics[i].partitions[j];
                p->partition_index = rq->topics[i].partition_indexes[j];
                p->committed_offset = -1;
                p->committed_leader_epoch = -1;
                p->metadata = KAFKA_STR_NULL;
                p->error_code = gerr;
            }
        }
        return;
    }
    if (g->version < 8) {
        o->error_code = gerr;
        o->topics = galloc(g, (size_t)nt, sizeof(*o->topics));
        o->topics_count = o->topics != NULL ? nt : 0;
        for (int32_t i = 0; i < o->topics_count; i++) {
            const struct lm_group_fetch_topic_resp *t = &gr->topics[i];
            int32_t np = t->n_partitions > 0 ? t->n_partitions : 0;
            o->topics[i].name = sdup_nn(g, t->name);
            o->topics[i].partitions = galloc(g, (size_t)np, sizeof(*o->topics[i].partitions));
            o->topics[i].partitions_count = o->topics[i].partitions != NULL ? np : 0;
            for (int32_t j = 0; j < o->topics[i].partitions_count; j++) {
                struct kafka_offset_fetch_response_partition *p = &o->topics[i].partitions[j];
                p->partition_index = t->partitions[j].partition;
                p->committed_offset = t->partitions[j].offset;
                p->committed_leader_epoch = t->partitions[j].leader_epoch;
                p->metadata = sdup(g, t->partitions[j].metadata);
                p->error_code = t->partitions[j].error_code;
                /* v1 has no top-level error: carry the group's in each partition. */
                if (g->version < 2 && p->error_code == KAFKA_NONE)
                    p->error_code = gerr;
            }
        }
        return;
    }
    struct kafka_offset_fetch_response_group *og = &o->groups[op->index];
    og->error_code = gerr;
    og->topics = galloc(g, (size_t)nt, sizeof(*og->topics));
    og->topics_count = og->topics != NULL ? nt : 0;
    for (int32_t i = 0; i < og->topics_count; i++) {
        const struct lm_group_fetch_topic_resp *t = &gr->topics[i];
        int32_t np = t->n_partitions > 0 ? t->n_partitions : 0;
        og->topics[i].name = sdup_nn(g, t->name);
        og->topics[i].partitions = galloc(g, (size_t)np, sizeof(*og->topics[i].partitions));
        og->topics[i].partitions_count = og->topics[i].partitions != NULL ? np : 0;
        for (int32_t j = 0; j < og->topics[i].partitions_count; j++) {
            struct kafka_offset_fetch_response_group_partition *p = &og->topics[i].partitions[j];
            p->partition_index = t->partitions[j].partition;
            p->committed_offset = t->partitions[j].offset;
            p->committed_leader_epoch = t->partitions[j].leader_epoch;
            p->metadata = sdup(g, t->partitions[j].metadata);
            p->error_code = t->partitions[j].error_code;
        }
    }
}

/* ---- DescribeGroups (0-6) ------------------------------------------------------------------- */

static void describe_groups(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_describe_groups_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_describe_groups_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_describe_groups_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_describe_groups_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->groups_count > 0 ? rq->groups_count : 0;
    resp->groups = h_alloc(req, (size_t)n, sizeof(*resp->groups));
    if (resp->groups == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    resp->groups_count = n;
    struct greq *g = greq_new(req, resp, (size_t)n);
    if (g == NULL)
        return;
    for (int32_t i = 0; i < n; i++) {
        resp->groups[i].group_id = rq->groups[i];
        resp->groups[i].authorized_operations = AUTHORIZED_OPS_UNSET;
        gop_set(g, (size_t)i, GOP_DESCRIBE, group_owner_of(hs, rq->groups[i]), &rq->groups[i], 1);
        gop_authorize(g, (size_t)i, AUTHZ_OP_DESCRIBE, rq->groups[i]);
        if (req->api_version >= 3 && rq->include_authorized_operations && g->ops[i].deny == 0) {
            char *id = h_strdup(req, rq->groups[i]);
            if (id == NULL) {
                h_close(req, "arena exhausted");
                return;
            }
            resp->groups[i].authorized_operations = h_authorized_ops(req, AUTHZ_RES_GROUP, id);
        }
    }
    group_ops_start(g);
}

static void fill_describe(struct greq *g, struct gop *op, const struct lm_group_resp *r,
                          int16_t err)
{
    struct kafka_describe_groups_response *o = g->resp;
    struct kafka_describe_groups_response_described_group *d = &o->groups[op->index];
    d->error_message = KAFKA_STR_NULL;
    d->group_state = (struct kafka_str){"", 0};
    d->protocol_type = (struct kafka_str){"", 0};
    d->protocol_data = (struct kafka_str){"", 0};
    d->members_count = 0;
    if (err != 0 || r == NULL || r->u.describe.n_groups < 1) {
        d->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    const struct lm_group_describe_group *s = &r->u.describe.groups[0];
    d->error_code = s->error_code;
    d->group_state = sdup_nn(g, s->state);
    d->protocol_type = sdup_nn(g, s->protocol_type);
    d->protocol_data = sdup_nn(g, s->protocol_data);
    if (!s->found && s->error_code == KAFKA_NONE && g->version >= 6) {
        /* Kafka 4 answers an unknown group with GROUP_ID_NOT_FOUND from v6 on. */
        d->error_code = KAFKA_GROUP_ID_NOT_FOUND;
        d->error_message = cstr("group not found");
    }
    int32_t n = s->n_members > 0 ? s->n_members : 0;
    d->members = galloc(g, (size_t)n, sizeof(*d->members));
    d->members_count = d->members != NULL ? n : 0;
    for (int32_t i = 0; i < d->members_count; i++) {
        const struct lm_group_describe_member *m = &s->members[i];
        d->members[i].member_id = sdup_nn(g, m->member_id);
        d->members[i].group_instance_id = sdup(g, m->group_instance_id);
        d->members[i].client_id = sdup_nn(g, m->client_id);
        d->members[i].client_host = sdup_nn(g, m->client_host);
        d->members[i].member_metadata = bdup(g, m->metadata);
        d->members[i].member_assignment = bdup(g, m->assignment);
    }
}

/* ---- ListGroups (0-5): every shard's coordinator -------------------------------------------- */

/* KafkaApis.handleListGroupsRequest: DESCRIBE on the cluster lists every group, else only the
 * groups the principal may DESCRIBE. */
static void list_post(struct greq *g)
{
    struct kafka_list_groups_response *o = g->resp;
    if (!h_authz_on(g->req) || h_allowed_cluster(g->req, AUTHZ_OP_DESCRIBE))
        return;
    int32_t keep = 0;
    for (int32_t i = 0; i < o->groups_count; i++)
        if (h_allowed_k(g->req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_GROUP, o->groups[i].group_id))
            o->groups[keep++] = o->groups[i];
    o->groups_count = keep;
}

static void list_groups(struct broker_req *req)
{
    int16_t v = req->api_version;
    struct hshard *hs = hs_of(req->shard);
    struct kafka_list_groups_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_list_groups_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_list_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_list_groups_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_list_groups_response_init(resp);
    resp->throttle_time_ms = 0;
    resp->error_code = KAFKA_NONE;
    resp->groups_count = 0;
    in->n_states = v >= 4 && rq->states_filter_count > 0 ? rq->states_filter_count : 0;
    in->states = rq->states_filter;
    in->n_types = v >= 5 && rq->types_filter_count > 0 ? rq->types_filter_count : 0;
    in->types = rq->types_filter;
    struct greq *g = greq_new(req, resp, hs->count);
    if (g == NULL)
        return;
    for (uint32_t i = 0; i < hs->count; i++)
        gop_set(g, i, GOP_LIST, i, in, 1);
    g->post = list_post;
    group_ops_start(g);
}

/* Whether a listed group passes ListGroups' states (v4+) and types (v5+) filters, compared
 * case-insensitively as Kafka does. */
static bool list_match(const struct lm_group_list_req *in, struct kafka_str state,
                       struct kafka_str type)
{
    bool ok = in->n_states == 0;
    for (int32_t i = 0; i < in->n_states && !ok; i++)
        ok = in->states[i].len == state.len && state.len >= 0 &&
             strncasecmp(in->states[i].ptr, state.ptr, (size_t)state.len) == 0;
    if (!ok)
        return false;
    ok = in->n_types == 0;
    for (int32_t i = 0; i < in->n_types && !ok; i++)
        ok = in->types[i].len == type.len && type.len >= 0 &&
             strncasecmp(in->types[i].ptr, type.ptr, (size_t)type.len) == 0;
    return ok;
}

struct list_cg_ctx {
    struct greq *g;
    const struct lm_group_list_req *in;
    struct kafka_list_groups_response_listed_group *a;
    int32_t n, cap;
};

static void list_cg_one(void *ctx, const struct lm_cgroup_list_entry *e)
{
    struct list_cg_ctx *l = ctx;
    struct kafka_str type = cstr("consumer");
    if (l->n >= l->cap || !list_match(l->in, cstr(e->state), type))
        return;
    struct kafka_list_groups_response_listed_group *d = &l->a[l->n++];
    d->group_id = sdup_nn(l->g, e->group_id);
    d->protocol_type = type;
    d->group_state = cstr(e->state);
    d->group_type = type;
}

static void list_sg_one(void *ctx, const struct lm_sgroup_list_entry *e)
{
    struct list_cg_ctx *l = ctx;
    struct kafka_str type = cstr("share");
    if (l->n >= l->cap || !list_match(l->in, cstr(e->state), type))
        return;
    struct kafka_list_groups_response_listed_group *d = &l->a[l->n++];
    d->group_id = sdup_nn(l->g, e->group_id);
    d->protocol_type = type;
    d->group_state = cstr(e->state);
    d->group_type = type;
}

static void fill_list(struct greq *g, struct gop *op, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_list_groups_response *o = g->resp;
    if (err != 0 || r == NULL) {
        if (o->error_code == KAFKA_NONE)
            o->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    const struct lm_group_list_req *in = op->in;
    const struct lm_group_list_resp *l = &r->u.list;
    if (o->error_code == KAFKA_NONE)
        o->error_code = l->error_code;
    int32_t n_cg = op->cg != NULL ? (int32_t)lm_cgroup_n_groups(op->cg) : 0;
    if (op->sg != NULL)
        n_cg += (int32_t)lm_sgroup_n_groups(op->sg); /* share groups (KIP-932) */
    int32_t n_classic = l->n_groups > 0 ? l->n_groups : 0;
    if (n_classic + n_cg == 0)
        return;
    int32_t old = o->groups_count, cap = old + n_classic + n_cg;
    struct kafka_list_groups_response_listed_group *a = galloc(g, (size_t)cap, sizeof(*a));
    if (a == NULL)
        return;
    if (old > 0)
        memcpy(a, o->groups, (size_t)old * sizeof(*a));
    int32_t n = old;
    for (int32_t i = 0; i < n_classic; i++) {
        /* a consumer group's offsets live in a classic offsets-only group of the same id:
         * listed once, as the consumer group */
        if (op->cg != NULL && lm_cgroup_exists(op->cg, l->groups[i].group_id, NULL))
            continue;
        if (!list_match(in, l->groups[i].state, l->groups[i].type))
            continue;
        a[n].group_id = sdup_nn(g, l->groups[i].group_id);
        a[n].protocol_type = sdup_nn(g, l->groups[i].protocol_type);
        a[n].group_state = sdup_nn(g, l->groups[i].state);
        a[n].group_type = sdup_nn(g, l->groups[i].type);
        n++;
    }
    if (op->cg != NULL) {
        struct list_cg_ctx lc = {g, in, a, n, cap};
        lm_cgroup_list(op->cg, list_cg_one, &lc);
        n = lc.n;
    }
    if (op->sg != NULL) {
        struct list_cg_ctx lc = {g, in, a, n, cap};
        lm_sgroup_list(op->sg, list_sg_one, &lc);
        n = lc.n;
    }
    o->groups = a;
    o->groups_count = n;
}

/* ---- DeleteGroups (0-2) --------------------------------------------------------------------- */

/* Share groups DeleteGroups removed: their share-partition state and checkpoint entries go
 * too (share_fetch.c), then the answer. */
static void delete_groups_then(struct greq *g)
{
    struct kafka_delete_groups_response *o = g->resp;
    int32_t n = 0;
    for (size_t i = 0; i < g->n_ops; i++)
        n += g->ops[i].sg_deleted && o->results[g->ops[i].index].error_code == KAFKA_NONE;
    struct kafka_str *ids = n > 0 ? h_alloc(g->req, (size_t)n, sizeof(*ids)) : NULL;
    if (n > 0 && ids == NULL) {
        h_close(g->req, "arena exhausted");
        return;
    }
    int32_t k = 0;
    for (size_t i = 0; i < g->n_ops; i++)
        if (g->ops[i].sg_deleted && o->results[g->ops[i].index].error_code == KAFKA_NONE)
            ids[k++] = o->results[g->ops[i].index].group_id;
    if (n == 0)
        h_respond(g->req, g->resp);
    else
        share_groups_forget(g->req, ids, n, g->resp);
}

static void delete_groups(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_delete_groups_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_delete_groups_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_delete_groups_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_delete_groups_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->groups_names_count > 0 ? rq->groups_names_count : 0;
    resp->results = h_alloc(req, (size_t)n, sizeof(*resp->results));
    if (resp->results == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    resp->results_count = n;
    struct greq *g = greq_new(req, resp, (size_t)n);
    if (g == NULL)
        return;
    for (int32_t i = 0; i < n; i++) {
        resp->results[i].group_id = rq->groups_names[i];
        gop_set(g, (size_t)i, GOP_DELETE, group_owner_of(hs, rq->groups_names[i]),
                &rq->groups_names[i], 1);
        gop_authorize(g, (size_t)i, AUTHZ_OP_DELETE, rq->groups_names[i]);
    }
    g->then = delete_groups_then;
    group_ops_start(g);
}

static void fill_delete(struct greq *g, struct gop *op, const struct lm_group_resp *r, int16_t err)
{
    struct kafka_delete_groups_response *o = g->resp;
    struct kafka_delete_groups_response_deletable_group_result *d = &o->results[op->index];
    if (err != 0 || r == NULL || r->u.del.n_results < 1)
        d->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
    else
        d->error_code = r->u.del.results[0].error_code;
    /* the consumer group was removed on the owner shard; it had no offsets to delete */
    if (op->cg_deleted && d->error_code == KAFKA_GROUP_ID_NOT_FOUND)
        d->error_code = KAFKA_NONE;
}

/* ---- OffsetDelete (0) ----------------------------------------------------------------------- */

/* KafkaApis.handleOffsetDeleteRequest: READ on each topic, else its partitions are
 * TOPIC_AUTHORIZATION_FAILED. The coordinator never sees those topics; they are appended to
 * its answer here, on the request's shard. */
static void offset_delete_post(struct greq *g)
{
    struct kafka_offset_delete_response *o = g->resp;
    const struct kafka_offset_delete_request *rq = g->aux;
    if (!h_authz_on(g->req) || o->error_code != KAFKA_NONE)
        return;
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0, denied = 0;
    for (int32_t i = 0; i < nt; i++)
        denied += !h_allowed_k(g->req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, rq->topics[i].name);
    if (denied == 0)
        return;
    __typeof__(o->topics) all = galloc(g, (size_t)(o->topics_count + denied), sizeof(*all));
    if (all == NULL)
        return;
    if (o->topics_count > 0)
        memcpy(all, o->topics, (size_t)o->topics_count * sizeof(*all));
    int32_t k = o->topics_count;
    for (int32_t i = 0; i < nt; i++) {
        const struct kafka_offset_delete_request_topic *t = &rq->topics[i];
        if (h_allowed_k(g->req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, t->name))
            continue;
        int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
        all[k].name = t->name;
        all[k].partitions = galloc(g, (size_t)np, sizeof(*all[k].partitions));
        all[k].partitions_count = all[k].partitions != NULL ? np : 0;
        for (int32_t j = 0; j < all[k].partitions_count; j++) {
            all[k].partitions[j].partition_index = t->partitions[j].partition_index;
            all[k].partitions[j].error_code = KAFKA_TOPIC_AUTHORIZATION_FAILED;
        }
        k++;
    }
    o->topics = all;
    o->topics_count = k;
}

static void offset_delete(struct broker_req *req)
{
    struct kafka_offset_delete_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_offset_delete_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_group_offset_delete_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL)
        goto nomem;
    kafka_offset_delete_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_offset_delete_response_init(resp);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    struct lm_group_fetch_topic *lt = h_alloc(req, (size_t)nt, sizeof(*lt));
    if (lt == NULL)
        goto nomem;
    int32_t lnt = 0;
    for (int32_t i = 0; i < nt; i++) {
        if (!h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, rq->topics[i].name))
            continue; /* answered by offset_delete_post */
        int32_t np = rq->topics[i].partitions_count > 0 ? rq->topics[i].partitions_count : 0;
        int32_t *ps = h_alloc(req, (size_t)np, sizeof(*ps));
        if (ps == NULL)
            goto nomem;
        for (int32_t j = 0; j < np; j++)
            ps[j] = rq->topics[i].partitions[j].partition_index;
        lt[lnt].name = rq->topics[i].name;
        lt[lnt].n_partitions = np;
        lt[lnt].partitions = ps;
        lnt++;
    }
    in->group_id = rq->group_id;
    in->n_topics = lnt;
    in->topics = lt;
    struct greq *g = greq_new(req, resp, 1);
    if (g == NULL)
        return;
    gop_set(g, 0, GOP_OFFSET_DELETE, group_owner_of(hs_of(req->shard), rq->group_id), in, 1);
    gop_authorize(g, 0, AUTHZ_OP_DELETE, rq->group_id);
    g->aux = rq;
    g->post = offset_delete_post;
    group_ops_start(g);
    return;
nomem:
    h_close(req, "arena exhausted");
}

static void fill_offset_delete(struct greq *g, struct gop *op, const struct lm_group_resp *r,
                               int16_t err)
{
    struct kafka_offset_delete_response *o = g->resp;
    o->throttle_time_ms = 0;
    o->topics_count = 0;
    if (err != 0 || r == NULL) {
        o->error_code = err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    const struct lm_group_offset_delete_resp *d = &r->u.offset_delete;
    o->error_code = d->error_code;
    int32_t nt = d->n_topics > 0 ? d->n_topics : 0;
    int32_t ns = d->error_code == KAFKA_NONE ? op->cg_n_subscribed : 0;
    o->topics = galloc(g, (size_t)(nt + ns), sizeof(*o->topics));
    o->topics_count = o->topics != NULL ? nt + ns : 0;
    /* the topics a consumer group's members subscribe to, kept out of the call (Kafka
     * OffsetMetadataManager.deleteOffsets: GROUP_SUBSCRIBED_TO_TOPIC) */
    for (int32_t i = nt; i < o->topics_count; i++) {
        const struct lm_group_fetch_topic *t = &op->cg_subscribed[i - nt];
        o->topics[i].name = t->name;
        o->topics[i].partitions =
            galloc(g, (size_t)t->n_partitions, sizeof(*o->topics[i].partitions));
        o->topics[i].partitions_count = o->topics[i].partitions != NULL ? t->n_partitions : 0;
        for (int32_t j = 0; j < o->topics[i].partitions_count; j++) {
            o->topics[i].partitions[j].partition_index = t->partitions[j];
            o->topics[i].partitions[j].error_code = KAFKA_GROUP_SUBSCRIBED_TO_TOPIC;
        }
    }
    o->topics_count = o->topics != NULL ? nt : 0;
    for (int32_t i = 0; i < o->topics_count; i++) {
        int32_t np = d->topics[i].n_partitions > 0 ? d->topics[i].n_partitions : 0;
        o->topics[i].name = sdup_nn(g, d->topics[i].name);
        o->topics[i].partitions = galloc(g, (size_t)np, sizeof(*o->topics[i].partitions));
        o->topics[i].partitions_count = o->topics[i].partitions != NULL ? np : 0;
        for (int32_t j = 0; j < o->topics[i].partitions_count; j++) {
            o->topics[i].partitions[j].partition_index = d->topics[i].partitions[j].partition;
            o->topics[i].partitions[j].error_code = d->topics[i].partitions[j].error_code;
        }
    }
    if (o->topics != NULL)
        o->topics_count = nt + ns;
}

/* ---- dispatch of fills ----------------------------------------------------------------------- */

void group_api_fill(struct gop *op, const struct lm_group_resp *r, int16_t err)
{
    struct greq *g = op->g;
    switch (op->kind) {
    case GOP_JOIN:
        fill_join(g, r, err);
        break;
    case GOP_SYNC:
        fill_sync(g, r, err);
        break;
    case GOP_HEARTBEAT:
        fill_heartbeat(g, r, err);
        break;
    case GOP_LEAVE:
        fill_leave(g, r, err);
        break;
    case GOP_COMMIT:
        fill_commit(g, r, err);
        break;
    case GOP_FETCH:
        fill_fetch(g, op, r, err);
        break;
    case GOP_DESCRIBE:
        fill_describe(g, op, r, err);
        break;
    case GOP_LIST:
        fill_list(g, op, r, err);
        break;
    case GOP_DELETE:
        fill_delete(g, op, r, err);
        break;
    case GOP_OFFSET_DELETE:
        fill_offset_delete(g, op, r, err);
        break;
    case GOP_TXN_COMMIT:
        fill_txn_commit(g, r, err);
        break;
    case GOP_CG_HEARTBEAT:
    case GOP_CG_DESCRIBE:
        LM_ASSERT(r == NULL);
        group_cgroup_fill_error(op, err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR);
        break;
    case GOP_SG_HEARTBEAT:
    case GOP_SG_DESCRIBE:
    case GOP_SG_OFFSETS:
        LM_ASSERT(r == NULL);
        group_share_fill_error(op, err != 0 ? err : KAFKA_UNKNOWN_SERVER_ERROR);
        break;
    default:
        LM_ASSERT(!"unknown group call");
    }
}

int group_api_register(struct broker_dispatch *d)
{
    int rc;
    if ((rc = handlers_serve(d, KAFKA_FIND_COORDINATOR_KEY, 0, 6, find_coordinator)) != 0 ||
        (rc = handlers_serve(d, KAFKA_JOIN_GROUP_KEY, 0, 9, join_group)) != 0 ||
        (rc = handlers_serve(d, KAFKA_SYNC_GROUP_KEY, 0, 5, sync_group)) != 0 ||
        (rc = handlers_serve(d, KAFKA_HEARTBEAT_KEY, 0, 4, heartbeat)) != 0 ||
        (rc = handlers_serve(d, KAFKA_LEAVE_GROUP_KEY, 0, 5, leave_group)) != 0 ||
        (rc = handlers_serve(d, KAFKA_OFFSET_COMMIT_KEY, 2, 9, offset_commit)) != 0 ||
        (rc = handlers_serve(d, KAFKA_OFFSET_FETCH_KEY, 1, 9, offset_fetch)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DESCRIBE_GROUPS_KEY, 0, 6, describe_groups)) != 0 ||
        (rc = handlers_serve(d, KAFKA_LIST_GROUPS_KEY, 0, 5, list_groups)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DELETE_GROUPS_KEY, 0, 2, delete_groups)) != 0 ||
        (rc = handlers_serve(d, KAFKA_OFFSET_DELETE_KEY, 0, 0, offset_delete)) != 0 ||
        (rc = handlers_serve(d, KAFKA_TXN_OFFSET_COMMIT_KEY, 0, 5, txn_offset_commit)) != 0)
        return rc;
    if ((rc = group_cgroup_register(d)) != 0)
        return rc;
    return group_share_register(d);
}
