/* Metadata (v0-12): this broker, the cluster id, every or some topics with their partitions
 * led by this node; auto-creation when auto.create.topics.enable and the request allows it
 * (allow_auto_topic_creation from v4; always before, as Kafka). Served from the shard's
 * metadata snapshot, no cross-shard call: a single node leads every partition. */
#include <string.h>

#include "broker/cluster/controller.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "protocol/kafka_metadata.h"

#define AUTHORIZED_OPS_UNSET INT32_MIN /* Kafka's "not requested" */

/* A cluster: each partition's replicas from its assignment, led by its only replica or the
 * leader its Raft group announced while that node is live (registered and not fenced), else
 * no leader (LEADER_NOT_AVAILABLE), as Kafka's MetadataCache shows a partition whose leader
 * died; the ISR the leader announced and the replicas on fenced nodes offline. A replicated
 * partition's epoch is the announced one; an unreplicated partition of another node: -1
 * (clients then skip the KIP-320 epoch checks rather than fence themselves on a stale
 * value). A partition this node leads at a newer epoch than the image shows is named with
 * this node at that epoch. */
static bool fill_partitions_cluster(struct broker_req *req, const struct lm_meta_state *st,
                                    struct kafka_metadata_response_metadata_response_topic *o,
                                    const struct htopic *t)
{
    const struct handlers_ctx *h = h_node(req);
    int32_t self = h->cfg->node_id;
    for (int32_t i = 0; i < o->partitions_count; i++) {
        struct kafka_metadata_response_metadata_response_partition *p = &o->partitions[i];
        int16_t n = 0;
        const int32_t *r = lm_meta_topic_replicas(t->meta, i, &n);
        int32_t *nodes = h_alloc(req, n > 0 ? (size_t)n : 1, sizeof(int32_t));
        if (nodes == NULL)
            return false;
        if (r != NULL)
            memcpy(nodes, r, (size_t)n * sizeof(int32_t));
        else {
            nodes[0] = self;
            n = 1;
        }
        int32_t leader = lm_meta_state_partition_leader(st, t->meta, i, self);
        int32_t announced_epoch = -1;
        (void)lm_meta_topic_leader(t->meta, i, &announced_epoch);
        /* This node leads at a later epoch than its image shows yet (a new leader's
         * announcement not applied here): it names itself at its epoch. Answering from the
         * image would name the old leader to a client that just asked the new one, and a
         * client without KIP-320's epoch comparison (librdkafka before 2.1) could follow that
         * stale answer back to the old leader and stay there, refused NOT_LEADER. */
        int32_t local_epoch = -1;
        if (n > 1 && h_partition_local_leader(h, t->meta->id, i, &local_epoch) &&
            (leader != self || local_epoch > announced_epoch) && local_epoch >= announced_epoch) {
            leader = self;
            announced_epoch = local_epoch;
        }
        p->error_code = KAFKA_NONE;
        p->partition_index = i;
        p->leader_id = leader;
        p->leader_epoch = n > 1            ? announced_epoch
                          : leader == self ? h_partition_epoch(h, t->meta->id, i)
                                           : -1;
        p->replica_nodes = nodes;
        p->replica_nodes_count = n;
        /* ISR as the leader announced it, offline replicas on fenced nodes */
        int32_t *isr = h_alloc(req, (size_t)n, sizeof(int32_t));
        int32_t *off = h_alloc(req, (size_t)n, sizeof(int32_t));
        if (isr == NULL || off == NULL)
            return false;
        lm_meta_state_partition_isr(st, t->meta, i, self, isr, &p->isr_nodes_count, off,
                                    &p->offline_replicas_count);
        p->isr_nodes = isr;
        p->offline_replicas = off;
        if (leader < 0 || (leader == self && h_partition_offline(h, t->meta->id, i))) {
            p->error_code = KAFKA_LEADER_NOT_AVAILABLE;
            p->leader_id = -1;
            p->isr_nodes_count = 0;
            if (leader == self && p->offline_replicas_count == 0) {
                off[0] = self; /* its log failed here */
                p->offline_replicas_count = 1;
            }
        }
    }
    return true;
}

static bool fill_topic(struct broker_req *req,
                       struct kafka_metadata_response_metadata_response_topic *o,
                       const struct htopic *t, bool want_ops)
{
    const struct handlers_ctx *h = h_node(req);
    int32_t node = h->cfg->node_id;
    o->error_code = KAFKA_NONE;
    /* Copied: an auto-create later in this request refreshes the snapshot t points into. */
    struct kafka_str name = {t->meta->name, (int32_t)strlen(t->meta->name)};
    o->name = (struct kafka_str){h_strdup(req, name), name.len};
    if (o->name.ptr == NULL)
        return false;
    memcpy(o->topic_id.b, t->meta->id, 16);
    o->is_internal = h_topic_internal(t->meta->name, strlen(t->meta->name));
    o->topic_authorized_operations =
        want_ops ? h_authorized_ops(req, AUTHZ_RES_TOPIC, t->meta->name) : AUTHORIZED_OPS_UNSET;
    int32_t n = t->meta->partition_count;
    o->partitions = h_alloc(req, (size_t)n, sizeof(*o->partitions));
    int32_t *nodes = h_alloc(req, 1, sizeof(int32_t));
    if (o->partitions == NULL || nodes == NULL)
        return false;
    nodes[0] = node;
    o->partitions_count = n;
    if (hs_cluster(h))
        return fill_partitions_cluster(req, &hs_of(req->shard)->snap->state, o, t);
    for (int32_t i = 0; i < n; i++) {
        struct kafka_metadata_response_metadata_response_partition *p = &o->partitions[i];
        p->error_code = KAFKA_NONE;
        p->partition_index = i;
        p->leader_id = node;
        /* The epoch Fetch, ListOffsets and OffsetForLeaderEpoch fence on (KIP-320). */
        p->leader_epoch = h_partition_epoch(h, t->meta->id, i);
        p->replica_nodes = nodes;
        p->replica_nodes_count = 1;
        p->isr_nodes = nodes;
        p->isr_nodes_count = 1;
        p->offline_replicas = NULL;
        p->offline_replicas_count = 0;
        if (h_partition_offline(h, t->meta->id, i)) {
            /* Its log failed (storage error): as Kafka's MetadataCache shows a partition
             * without a live leader: LEADER_NOT_AVAILABLE, no leader, this node's replica
             * offline. Clients wait and retry; the owner shard reopens the log. */
            p->error_code = KAFKA_LEADER_NOT_AVAILABLE;
            p->leader_id = -1;
            p->offline_replicas = nodes;
            p->offline_replicas_count = 1;
        }
    }
    return true;
}

/* Every live node with its endpoint for the request's listener; the controller id is the
 * controller group's leader (as KRaft, clients never talk to it: admin changes sent to any
 * node are forwarded), or a live node while no leader is known. */
static bool fill_brokers_cluster(struct broker_req *req, struct hshard *hs,
                                 struct kafka_metadata_response *resp)
{
    const struct lm_meta_state *st = &hs->snap->state;
    const struct broker_config *cfg = hs->node->cfg;
    const char *lname = cfg->listeners[req->listener].name;
    resp->brokers = h_alloc(req, st->broker_count + 1, sizeof(*resp->brokers));
    if (resp->brokers == NULL)
        return false;
    int32_t n = 0;
    bool self_listed = false;
    for (size_t i = 0; i < st->broker_count; i++) {
        const struct lm_meta_broker *b = &st->brokers[i];
        if (b->fenced)
            continue;
        char host[256];
        uint16_t port;
        if (!lm_meta_broker_endpoint(b, lname, host, sizeof(host), &port))
            continue;
        struct kafka_str hstr = {host, (int32_t)strlen(host)};
        resp->brokers[n].node_id = b->id;
        resp->brokers[n].host = (struct kafka_str){h_strdup(req, hstr), hstr.len};
        resp->brokers[n].port = port;
        resp->brokers[n].rack = KAFKA_STR_NULL;
        if (b->rack[0] != 0) {
            struct kafka_str r = {b->rack, (int32_t)strlen(b->rack)};
            resp->brokers[n].rack = (struct kafka_str){h_strdup(req, r), r.len};
        }
        if (resp->brokers[n].host.ptr == NULL)
            return false;
        self_listed |= b->id == cfg->node_id;
        n++;
    }
    if (!self_listed) {
        /* not registered yet: clients still need the node they talk to */
        resp->brokers[n] = resp->brokers[0];
        const struct broker_listener *l = broker_req_advertised(req);
        const char *host = l->host[0] != 0 ? l->host : "localhost";
        resp->brokers[n].node_id = cfg->node_id;
        resp->brokers[n].host = (struct kafka_str){host, (int32_t)strlen(host)};
        resp->brokers[n].port = l->port;
        resp->brokers[n].rack = KAFKA_STR_NULL;
        n++;
    }
    resp->brokers_count = n;
    int32_t leader = controller_leader(hs->node->ctl);
    const struct lm_meta_broker *lb = leader >= 0 ? lm_meta_state_broker(st, leader) : NULL;
    resp->controller_id = lb != NULL && !lb->fenced ? leader : cfg->node_id;
    return true;
}

void data_metadata(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    const struct broker_config *cfg = hs->node->cfg;
    struct kafka_metadata_request rq;
    kafka_metadata_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    int16_t v = req->api_version;
    struct kafka_metadata_response resp;
    kafka_metadata_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.brokers = h_alloc(req, 1, sizeof(*resp.brokers));
    if (resp.brokers == NULL)
        goto nomem;
    resp.brokers_count = 1;
    const struct broker_listener *l = broker_req_advertised(req);
    const char *host = l->host[0] != 0 ? l->host : "localhost";
    resp.brokers[0].node_id = cfg->node_id;
    resp.brokers[0].host = (struct kafka_str){host, (int32_t)strlen(host)};
    resp.brokers[0].port = l->port;
    resp.brokers[0].rack = KAFKA_STR_NULL;
    resp.cluster_id =
        (struct kafka_str){hs->node->cluster_id, (int32_t)strlen(hs->node->cluster_id)};
    resp.controller_id = cfg->node_id;
    resp.cluster_authorized_operations = AUTHORIZED_OPS_UNSET;
    if (v >= 8 && v <= 10 && rq.include_cluster_authorized_operations)
        resp.cluster_authorized_operations =
            h_authorized_ops(req, AUTHZ_RES_CLUSTER, AUTHZ_CLUSTER_NAME);
    bool want_ops = v >= 8 && rq.include_topic_authorized_operations;
    if (hs_cluster(hs->node) && !fill_brokers_cluster(req, hs, &resp))
        goto nomem;

    /* v0: an empty list means every topic; v1+: null means every topic. */
    bool all = rq.topics_count < 0 || (v == 0 && rq.topics_count == 0);
    if (all) {
        size_t n = hs->topic_count;
        resp.topics = h_alloc(req, n, sizeof(*resp.topics));
        if (resp.topics == NULL)
            goto nomem;
        int32_t i = 0;
        for (size_t b = 0; b < hs->bucket_count; b++)
            for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next) {
                LM_ASSERT((size_t)i < n);
                /* KafkaApis: topics the principal may not DESCRIBE are left out */
                if (!h_allowed(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, t->meta->name,
                               strlen(t->meta->name)))
                    continue;
                if (!fill_topic(req, &resp.topics[i++], t, want_ops))
                    goto nomem;
            }
        resp.topics_count = i;
        h_respond(req, &resp);
        return;
    }
    bool may_create = cfg->auto_create_topics_enable && (v < 4 || rq.allow_auto_topic_creation);
    resp.topics = h_alloc(req, (size_t)rq.topics_count, sizeof(*resp.topics));
    if (resp.topics == NULL)
        goto nomem;
    resp.topics_count = rq.topics_count;
    for (int32_t i = 0; i < rq.topics_count; i++) {
        const struct kafka_metadata_request_metadata_request_topic *in = &rq.topics[i];
        struct kafka_metadata_response_metadata_response_topic *o = &resp.topics[i];
        o->topic_authorized_operations = AUTHORIZED_OPS_UNSET;
        o->name = in->name;
        o->topic_id = in->topic_id;
        struct htopic *t = NULL;
        /* KafkaApis looks topics up by id when the request carries ids (non-zero), the name
         * then being null or left at its default "" (the Java client 4's consumer asks for
         * the ids of a broker-side regex assignment so) */
        bool by_id = in->name.len < 0 || (in->name.len == 0 && !kafka_uuid_is_zero(&in->topic_id));
        if (by_id) {
            /* v10+: lookup by topic id (KIP-516). */
            t = kafka_uuid_is_zero(&in->topic_id) ? NULL : hs_topic_by_id(hs, in->topic_id.b);
            if (t == NULL) {
                o->error_code = KAFKA_UNKNOWN_TOPIC_ID;
                continue;
            }
        } else {
            t = hs_topic(hs, in->name.ptr, (size_t)in->name.len);
        }
        /* KafkaApis: a topic named but not describable is TOPIC_AUTHORIZATION_FAILED, asked
         * by id its name stays hidden (null); a missing one the request would auto-create
         * needs CREATE on the cluster or the topic */
        struct kafka_str aname = in->name;
        if (by_id)
            aname = (struct kafka_str){t->meta->name, (int32_t)strlen(t->meta->name)};
        if (!h_allowed_k(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, aname) ||
            (t == NULL && may_create && !h_allowed_cluster(req, AUTHZ_OP_CREATE) &&
             !h_allowed_k(req, AUTHZ_OP_CREATE, AUTHZ_RES_TOPIC, in->name))) {
            o->error_code = KAFKA_TOPIC_AUTHORIZATION_FAILED;
            continue;
        }
        if (t == NULL) {
            char *name = h_strdup(req, in->name);
            if (name == NULL)
                goto nomem;
            if (lm_meta_topic_name_valid(name) != 0) {
                o->error_code = KAFKA_INVALID_TOPIC_EXCEPTION;
                continue;
            }
            if (!may_create) {
                o->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            int32_t parts = cfg->num_partitions > 0 ? cfg->num_partitions : 1;
            int rc = hs_create_topic(hs, name, parts);
            if (rc == LM_E_FULL) {
                /* max.broker.partitions: the creation error itself, as Kafka's Metadata
                 * answered auto-create failures (Errors.forException). */
                BLOG_WARN("auto-create of %s refused: max.broker.partitions reached", name);
                o->error_code = KAFKA_POLICY_VIOLATION;
                continue;
            }
            if (rc == LM_E_AGAIN) {
                o->error_code = KAFKA_LEADER_NOT_AVAILABLE; /* being created (cluster) */
                continue;
            }
            if (rc != 0 && rc != LM_E_EXISTS) {
                BLOG_WARN("auto-create of %s failed: %s", name, lm_strerror(rc));
                o->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                continue;
            }
            t = hs_topic(hs, in->name.ptr, (size_t)in->name.len);
            if (t == NULL) {
                /* Created elsewhere a moment ago and not visible yet: Kafka's first answer. */
                o->error_code = KAFKA_LEADER_NOT_AVAILABLE;
                continue;
            }
        }
        if (!fill_topic(req, o, t, want_ops))
            goto nomem;
    }
    h_respond(req, &resp);
    return;
nomem:
    broker_req_close_after(req);
    broker_req_respond_none(req);
}
