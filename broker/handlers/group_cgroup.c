/* Consumer-protocol groups (KIP-848) in the broker: ConsumerGroupHeartbeat (68, v0-1) and
 * ConsumerGroupDescribe (69, v0-1) on top of the per-shard lm_cgroup_coord (cgroup.h), and the
 * checks the classic group APIs make when their group id is a consumer group.
 *
 * Placement is the classic coordinator's: a group lives on the shard owning its
 * __consumer_offsets partition, and in a cluster on the node leading that partition; the
 * classic coordinator's status of the id (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS)
 * answers for both. Committed offsets of a consumer group are kept by the classic coordinator
 * as those of an offsets-only group of the same id; the membership state (epochs, members,
 * assignments) is written to __consumer_offsets as Kafka's consumer-group records by the
 * shell (group_coord.c) before a heartbeat's response leaves, and loaded back with the
 * partition.
 *
 * Kafka's behaviour for ids used by the other protocol (GroupMetadataManager):
 * - ConsumerGroupHeartbeat joining an id held by a classic group with members: the group is
 *   upgraded to a consumer group when group.consumer.migration.policy allows it (cgroup.h,
 *   "migration"), else GROUP_ID_NOT_FOUND ("Group %s is not a consumer group."); an empty
 *   classic group (offsets only) becomes a consumer group with its offsets;
 * - JoinGroup/SyncGroup/Heartbeat/LeaveGroup of an id held by a consumer group: a classic member
 *   of that consumer group (cgroup.h, "classic members"); an empty consumer group is dropped at
 *   a JoinGroup and the classic group takes its place;
 * - the last consumer-protocol member of classic members leaving or fenced: the group is
 *   downgraded to a classic group when the policy allows it (group_cgroup_downgrades);
 * - DescribeGroups of a consumer group: "Dead" with no members, v6+ GROUP_ID_NOT_FOUND
 *   ("Group %s is not a classic group.");
 * - ConsumerGroupDescribe of an id that is no consumer group: GROUP_ID_NOT_FOUND;
 * - OffsetCommit (generation id = member epoch, v9+) and OffsetFetch v9 (member id and epoch):
 *   UNKNOWN_MEMBER_ID / STALE_MEMBER_EPOCH as ConsumerGroup.validateOffsetCommit/Fetch;
 * - DeleteGroups: NON_EMPTY_GROUP while it has members. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/handlers/group_api.h"
#include "broker/handlers/group_internal.h"
#include "broker/log.h"
#include "broker/shard_internal.h" /* the connection's peer address (client host) */
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_messages.h"

/* ---- the topic image of the owner shard's metadata ---- */

static void image_topic(void *ctx, size_t i, struct lm_cgroup_topic *out)
{
    const struct lm_meta_state *st = ctx;
    LM_ASSERT(i < st->topic_count);
    const struct lm_meta_topic *t = &st->topics[i];
    memset(out, 0, sizeof(*out));
    out->name = (struct kafka_str){t->name, (int32_t)strlen(t->name)};
    memcpy(out->id.b, t->id, sizeof(out->id.b));
    out->partitions = t->partition_count;
    /* Kafka's internal topics, never matched by a subscription regex */
    out->internal = strcmp(t->name, GROUP_OFFSETS_TOPIC) == 0 ||
                    strcmp(t->name, "__transaction_state") == 0 ||
                    strcmp(t->name, "__share_group_state") == 0;
}

struct lm_cgroup_image group_cgroup_image(struct hshard *hs)
{
    hs_refresh(hs);
    if (hs->snap == NULL)
        return (struct lm_cgroup_image){NULL, 0, image_topic};
    return (struct lm_cgroup_image){&hs->snap->state, hs->snap->state.topic_count, image_topic};
}

static struct kafka_str topic_name_of(const struct lm_cgroup_image *img, struct kafka_uuid id)
{
    for (size_t i = 0; i < img->n_topics; i++) {
        struct lm_cgroup_topic t;
        img->topic(img->ctx, i, &t);
        if (memcmp(t.id.b, id.b, sizeof(id.b)) == 0)
            return t.name;
    }
    return (struct kafka_str){"", 0};
}

/* ---- ConsumerGroupHeartbeat ---- */

static void group_configs_of(struct hshard *hs, struct kafka_str group,
                             struct lm_cgroup_hb_req *in);

int32_t group_cgroup_session_timeout_ms(void *ctx, struct kafka_str group_id)
{
    struct lm_cgroup_hb_req in;
    group_configs_of(ctx, group_id, &in);
    return in.session_timeout_ms;
}

/* A group's own consumer.session.timeout.ms and consumer.heartbeat.interval.ms (GROUP config
 * resources, set with kafka-configs --entity-type groups) into in, 0 for each it has not. */
static void group_configs_of(struct hshard *hs, struct kafka_str group, struct lm_cgroup_hb_req *in)
{
    in->session_timeout_ms = 0;
    in->heartbeat_interval_ms = 0;
    hs_refresh(hs);
    if (hs->snap == NULL || hs->snap->state.group_config_count == 0 || group.len <= 0 ||
        group.len > LM_META_GROUP_NAME_MAX)
        return;
    char g[LM_META_GROUP_NAME_MAX + 1];
    memcpy(g, group.ptr, (size_t)group.len);
    g[group.len] = '\0';
    const struct lm_meta_group_configs *gc = lm_meta_state_group_configs(&hs->snap->state, g);
    for (size_t i = 0; gc != NULL && i < gc->count; i++) {
        long long v = strtoll(gc->configs[i].value, NULL, 10);
        int32_t ms = v > 0 && v <= INT32_MAX ? (int32_t)v : 0;
        if (strcmp(gc->configs[i].name, "consumer.session.timeout.ms") == 0)
            in->session_timeout_ms = ms;
        else if (strcmp(gc->configs[i].name, "consumer.heartbeat.interval.ms") == 0)
            in->heartbeat_interval_ms = ms;
    }
}

struct hb_aux {
    struct kafka_consumer_group_heartbeat_request *rq;
    struct lm_cgroup_hb_req in;
};

static void consumer_group_heartbeat(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_consumer_group_heartbeat_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_consumer_group_heartbeat_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct hb_aux *aux = h_alloc(req, 1, sizeof(*aux));
    if (rq == NULL || resp == NULL || aux == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_consumer_group_heartbeat_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_consumer_group_heartbeat_response_init(resp);
    resp->throttle_time_ms = 0;
    resp->error_message = KAFKA_STR_NULL;
    resp->member_id = KAFKA_STR_NULL;
    resp->assignment_null = true;
    aux->rq = rq;
    struct lm_cgroup_hb_req *in = &aux->in;
    in->group_id = rq->group_id;
    in->member_id = rq->member_id;
    in->member_epoch = rq->member_epoch;
    in->instance_id = rq->instance_id;
    in->rack_id = rq->rack_id;
    in->rebalance_timeout_ms = rq->rebalance_timeout_ms;
    in->n_topic_names = rq->subscribed_topic_names_count; /* -1: null, unchanged */
    in->topic_names = rq->subscribed_topic_names;
    in->topic_regex = req->api_version >= 1 ? rq->subscribed_topic_regex : KAFKA_STR_NULL;
    in->server_assignor = rq->server_assignor;
    in->client_id = req->client_id != NULL ? (struct kafka_str){req->client_id, req->client_id_len}
                                           : (struct kafka_str){"", 0};
    /* Kafka shows the client's InetAddress.toString(): "/127.0.0.1" */
    const char *peer = req->conn != NULL ? req->conn->peer : "?";
    size_t pn = strcspn(peer, ":");
    char *host = h_alloc(req, pn + 2, 1);
    if (host == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    host[0] = '/';
    memcpy(host + 1, peer, pn);
    in->client_host = (struct kafka_str){host, (int32_t)(pn + 1)};
    in->version = req->api_version;
    group_configs_of(hs, rq->group_id, in);
    int32_t no = rq->topic_partitions_count;
    in->n_owned = no;
    if (no > 0) {
        struct lm_cgroup_owned_topic *ow = h_alloc(req, (size_t)no, sizeof(*ow));
        if (ow == NULL) {
            h_close(req, "arena exhausted");
            return;
        }
        for (int32_t i = 0; i < no; i++) {
            ow[i].topic_id = rq->topic_partitions[i].topic_id;
            ow[i].n_partitions = rq->topic_partitions[i].partitions_count > 0
                                     ? rq->topic_partitions[i].partitions_count
                                     : 0;
            ow[i].partitions = rq->topic_partitions[i].partitions;
        }
        in->owned = ow;
    }
    struct greq *g = group_api_greq_new(req, resp, 1);
    if (g == NULL)
        return;
    g->aux = aux;
    group_api_gop_set(g, 0, GOP_CG_HEARTBEAT, group_owner_of(hs, rq->group_id), in, 1,
                      AUTHZ_OP_READ, rq->group_id);
    group_ops_start(g);
}

static void fill_heartbeat_error(struct greq *g, int16_t err, const char *msg)
{
    struct kafka_consumer_group_heartbeat_response *o = g->resp;
    o->error_code = err;
    o->error_message = msg != NULL
                           ? group_api_sdup(g, (struct kafka_str){msg, (int32_t)strlen(msg)})
                           : KAFKA_STR_NULL;
    o->member_id = KAFKA_STR_NULL;
    o->member_epoch = 0;
    o->heartbeat_interval_ms = 0;
    o->assignment_null = true;
}

static void fill_heartbeat(struct greq *g, const struct lm_cgroup_hb_resp *r)
{
    struct kafka_consumer_group_heartbeat_response *o = g->resp;
    if (r->error_code != KAFKA_NONE) {
        fill_heartbeat_error(g, r->error_code, r->error_message);
        o->member_id = group_api_sdup(g, r->member_id);
        o->member_epoch = r->member_epoch;
        return;
    }
    o->error_code = KAFKA_NONE;
    o->error_message = KAFKA_STR_NULL;
    o->member_id = group_api_sdup(g, r->member_id);
    o->member_epoch = r->member_epoch;
    o->heartbeat_interval_ms = r->heartbeat_interval_ms;
    o->assignment_null = !r->has_assignment;
    if (!r->has_assignment)
        return;
    /* assigned is sorted by topic id: one entry per run of the same id */
    int32_t nt = 0;
    for (int32_t i = 0; i < r->n_assigned; i++)
        nt += i == 0 || memcmp(r->assigned[i].topic_id.b, r->assigned[i - 1].topic_id.b, 16) != 0;
    struct kafka_consumer_group_heartbeat_response_topic_partitions *tps =
        group_api_alloc(g, (size_t)nt, sizeof(*tps));
    int32_t *parts = group_api_alloc(g, (size_t)r->n_assigned, sizeof(int32_t));
    if ((nt > 0 && tps == NULL) || (r->n_assigned > 0 && parts == NULL))
        return;
    int32_t k = -1;
    for (int32_t i = 0; i < r->n_assigned; i++) {
        if (i == 0 || memcmp(r->assigned[i].topic_id.b, r->assigned[i - 1].topic_id.b, 16) != 0) {
            k++;
            tps[k].topic_id = r->assigned[i].topic_id;
            tps[k].partitions = &parts[i];
            tps[k].partitions_count = 0;
        }
        parts[i] = r->assigned[i].partition;
        tps[k].partitions_count++;
    }
    o->assignment.topic_partitions = tps;
    o->assignment.topic_partitions_count = nt;
}

/* ---- ConsumerGroupDescribe ---- */

static void consumer_group_describe(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_consumer_group_describe_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_consumer_group_describe_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_consumer_group_describe_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_consumer_group_describe_response_init(resp);
    resp->throttle_time_ms = 0;
    int32_t n = rq->group_ids_count > 0 ? rq->group_ids_count : 0;
    resp->groups = h_alloc(req, (size_t)n, sizeof(*resp->groups));
    if (n > 0 && resp->groups == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    resp->groups_count = n;
    struct greq *g = group_api_greq_new(req, resp, (size_t)n);
    if (g == NULL)
        return;
    for (int32_t i = 0; i < n; i++) {
        struct kafka_consumer_group_describe_response_described_group *d = &resp->groups[i];
        d->group_id = rq->group_ids[i];
        d->error_message = KAFKA_STR_NULL;
        d->group_state = (struct kafka_str){"", 0};
        d->assignor_name = (struct kafka_str){"", 0};
        d->authorized_operations = INT32_MIN;
        group_api_gop_set(g, (size_t)i, GOP_CG_DESCRIBE, group_owner_of(hs, rq->group_ids[i]),
                          &rq->group_ids[i], 1, AUTHZ_OP_DESCRIBE, rq->group_ids[i]);
        if (rq->include_authorized_operations && g->ops[i].deny == 0) {
            char *id = h_strdup(req, rq->group_ids[i]);
            if (id == NULL) {
                h_close(req, "arena exhausted");
                return;
            }
            d->authorized_operations = h_authorized_ops(req, AUTHZ_RES_GROUP, id);
        }
    }
    group_ops_start(g);
}

static int fill_assignment(struct greq *g, const struct lm_cgroup_image *img,
                           struct kafka_consumer_group_describe_assignment *a, int32_t n,
                           const struct lm_cgroup_tp *tp)
{
    int32_t nt = 0;
    for (int32_t i = 0; i < n; i++)
        nt += i == 0 || memcmp(tp[i].topic_id.b, tp[i - 1].topic_id.b, 16) != 0;
    a->topic_partitions = group_api_alloc(g, (size_t)nt, sizeof(*a->topic_partitions));
    int32_t *parts = group_api_alloc(g, (size_t)n, sizeof(int32_t));
    a->topic_partitions_count = 0;
    if ((nt > 0 && a->topic_partitions == NULL) || (n > 0 && parts == NULL))
        return LM_E_NOMEM;
    int32_t k = -1;
    for (int32_t i = 0; i < n; i++) {
        if (i == 0 || memcmp(tp[i].topic_id.b, tp[i - 1].topic_id.b, 16) != 0) {
            k++;
            a->topic_partitions[k].topic_id = tp[i].topic_id;
            a->topic_partitions[k].topic_name =
                group_api_sdup(g, topic_name_of(img, tp[i].topic_id));
            a->topic_partitions[k].partitions = &parts[i];
            a->topic_partitions[k].partitions_count = 0;
        }
        parts[i] = tp[i].partition;
        a->topic_partitions[k].partitions_count++;
    }
    a->topic_partitions_count = nt;
    return 0;
}

static void fill_describe(struct greq *g, struct gop *op, const struct lm_cgroup_image *img,
                          const struct lm_cgroup_desc *d, int16_t err)
{
    struct kafka_consumer_group_describe_response *o = g->resp;
    struct kafka_consumer_group_describe_response_described_group *r = &o->groups[op->index];
    r->members_count = 0;
    r->members = NULL;
    if (err != KAFKA_NONE || d == NULL) {
        r->error_code = err != KAFKA_NONE ? err : KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    r->error_code = d->error_code;
    if (d->error_code != KAFKA_NONE) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Group %.*s not found.",
                 (int)(r->group_id.len > 200 ? 200 : r->group_id.len),
                 r->group_id.ptr != NULL ? r->group_id.ptr : "");
        /* Kafka 4.1 leaves the state empty here */
        r->error_message = group_api_sdup(g, (struct kafka_str){msg, (int32_t)strlen(msg)});
        return;
    }
    r->group_state = (struct kafka_str){d->state, (int32_t)strlen(d->state)};
    r->group_epoch = d->group_epoch;
    r->assignment_epoch = d->assignment_epoch;
    r->assignor_name = (struct kafka_str){d->assignor, (int32_t)strlen(d->assignor)};
    r->members = group_api_alloc(g, (size_t)d->n_members, sizeof(*r->members));
    if (d->n_members > 0 && r->members == NULL)
        return;
    for (int32_t i = 0; i < d->n_members; i++) {
        const struct lm_cgroup_desc_member *m = &d->members[i];
        struct kafka_consumer_group_describe_response_member *w = &r->members[i];
        memset(w, 0, sizeof(*w));
        w->member_id = group_api_sdup(g, m->member_id);
        w->instance_id = group_api_sdup(g, m->instance_id);
        w->rack_id = group_api_sdup(g, m->rack_id);
        w->member_epoch = m->member_epoch;
        w->client_id = group_api_sdup(g, m->client_id);
        w->client_host = group_api_sdup(g, m->client_host);
        w->subscribed_topic_names =
            group_api_alloc(g, (size_t)m->n_topic_names, sizeof(struct kafka_str));
        if (m->n_topic_names > 0 && w->subscribed_topic_names == NULL)
            return;
        for (int32_t k = 0; k < m->n_topic_names; k++)
            w->subscribed_topic_names[k] = group_api_sdup(g, m->topic_names[k]);
        w->subscribed_topic_names_count = m->n_topic_names;
        w->subscribed_topic_regex = group_api_sdup(g, m->topic_regex);
        if (fill_assignment(g, img, &w->assignment, m->n_assigned, m->assigned) != 0 ||
            fill_assignment(g, img, &w->target_assignment, m->n_target, m->target) != 0)
            return;
        /* KIP-1099: 0 a classic member, 1 a consumer-protocol member */
        w->member_type = m->classic ? 0 : 1;
    }
    r->members_count = d->n_members;
}

/* ---- on the owner shard ---- */

/* A consumer-protocol member joins (epoch 0) a classic group with members: the group becomes
 * a consumer group when the migration policy and Kafka's conditions allow it (true), else the
 * heartbeat is answered GROUP_ID_NOT_FOUND with Kafka 4.1's reason (false). */
static bool upgrade(struct hshard *hs, struct lm_group_coord *classic, struct lm_cgroup_coord *cg,
                    struct greq *g, const struct lm_cgroup_hb_req *in, int64_t now_ms)
{
    int n = in->group_id.len > 200 ? 200 : in->group_id.len;
    char msg[400];
    struct lm_group_info info;
    if (in->member_epoch != LM_CGROUP_JOIN_EPOCH ||
        lm_group_coord_info(classic, in->group_id, &info) != 0) {
        snprintf(msg, sizeof(msg), "Group %.*s is not a consumer group.", n, in->group_id.ptr);
        fill_heartbeat_error(g, KAFKA_GROUP_ID_NOT_FOUND, msg);
        return false;
    }
    const char *why = lm_cgroup_upgrade_refusal(cg, info.n_members, info.protocol_type);
    struct lm_group_export ex;
    if (why == NULL && lm_group_export(classic, in->group_id, &ex) == 0) {
        struct lm_cgroup_image img = group_cgroup_image(hs);
        int rc =
            lm_cgroup_upgrade(cg, now_ms, lm_group_partition_of(classic, in->group_id), &img, &ex);
        if (rc == 0) {
            rc = lm_group_convert_out(classic, now_ms, in->group_id);
            LM_ASSERT(rc == 0);
            BLOG_INFO("group %.*s: a classic group of %d members became a consumer group", n,
                      in->group_id.ptr, (int)ex.n_members);
            return true;
        }
        if (rc == LM_E_NOMEM) {
            fill_heartbeat_error(g, KAFKA_COORDINATOR_NOT_AVAILABLE, NULL);
            return false;
        }
        if (rc == LM_E_EXISTS) {
            /* never both with members (a classic JoinGroup replaces an empty consumer group,
             * an upgrade's classic tombstone is written first) */
            snprintf(msg, sizeof(msg), "Group %.*s is not a consumer group.", n, in->group_id.ptr);
            fill_heartbeat_error(g, KAFKA_GROUP_ID_NOT_FOUND, msg);
            return false;
        }
        why = rc == LM_E_UNSUPPORTED
                  ? "an unsupported custom assignor is in use. Please refer to the documentation "
                    "or switch to a default assignor before re-attempting the upgrade"
                  : "the embedded consumer protocol is malformed";
    }
    if (why == NULL)
        why = "the group does not use the consumer embedded protocol";
    snprintf(msg, sizeof(msg), "Cannot upgrade classic group %.*s to consumer group because %s.", n,
             in->group_id.ptr, why);
    fill_heartbeat_error(g, KAFKA_GROUP_ID_NOT_FOUND, msg);
    return false;
}

void group_cgroup_downgrades(struct hshard *hs, struct lm_group_coord *classic,
                             struct lm_cgroup_coord *cg, int64_t now_ms)
{
    struct lm_cgroup_image img = group_cgroup_image(hs);
    struct lm_group_export ex;
    while (lm_cgroup_downgrade_take(cg, &img, &ex)) {
        if (ex.n_members == 0) {
            BLOG_WARN("group %.*s: out of memory turning it into a classic group; its members "
                      "join again",
                      (int)(ex.group_id.len > 200 ? 200 : ex.group_id.len), ex.group_id.ptr);
            continue;
        }
        int rc = lm_group_convert_in(classic, now_ms, &ex);
        if (rc != 0) {
            BLOG_WARN("group %.*s: cannot become a classic group: %s",
                      (int)(ex.group_id.len > 200 ? 200 : ex.group_id.len), ex.group_id.ptr,
                      lm_strerror(rc));
            continue;
        }
        BLOG_INFO("group %.*s: a consumer group of %d classic members became a classic group",
                  (int)(ex.group_id.len > 200 ? 200 : ex.group_id.len), ex.group_id.ptr,
                  (int)ex.n_members);
    }
}

void group_cgroup_run(struct hshard *hs, struct lm_group_coord *classic, struct lm_cgroup_coord *cg,
                      struct gop *op, int64_t now_ms)
{
    struct greq *g = op->g;
    if (op->kind == GOP_CG_HEARTBEAT) {
        const struct lm_cgroup_hb_req *in = op->in;
        if (in->group_id.len > 0) {
            int16_t st = lm_group_coord_status(classic, in->group_id);
            if (st != KAFKA_NONE) {
                fill_heartbeat_error(g, st, NULL);
                return;
            }
            struct lm_group_info info;
            if (lm_group_coord_info(classic, in->group_id, &info) == 0 && info.n_members > 0) {
                /* Kafka validates the request before it converts the group: a malformed
                 * joining heartbeat gets its error and the classic group stays as it was */
                const char *why = NULL;
                int16_t bad = lm_cgroup_heartbeat_validate(cg, in, &why);
                if (bad != KAFKA_NONE) {
                    fill_heartbeat_error(g, bad, why);
                    return;
                }
                if (!upgrade(hs, classic, cg, g, in, now_ms))
                    return;
            }
        }
        struct lm_cgroup_image img = group_cgroup_image(hs);
        struct lm_cgroup_hb_resp r;
        int32_t part = in->group_id.len >= 0 ? lm_group_partition_of(classic, in->group_id) : 0;
        if (lm_cgroup_heartbeat(cg, now_ms, part, &img, in, &r) != 0)
            BLOG_WARN("consumer group heartbeat: out of memory");
        fill_heartbeat(g, &r);
        group_cgroup_downgrades(hs, classic, cg, now_ms);
        return;
    }
    LM_ASSERT(op->kind == GOP_CG_DESCRIBE);
    const struct kafka_str *id = op->in;
    int16_t st = lm_group_coord_status(classic, *id);
    if (st != KAFKA_NONE) {
        fill_describe(g, op, NULL, NULL, st);
        return;
    }
    struct lm_cgroup_image img = group_cgroup_image(hs);
    struct lm_cgroup_desc d;
    if (lm_cgroup_describe(cg, &img, *id, &d) != 0) {
        fill_describe(g, op, NULL, NULL, KAFKA_UNKNOWN_SERVER_ERROR);
        return;
    }
    fill_describe(g, op, &img, &d, KAFKA_NONE);
}

void group_cgroup_fill_error(struct gop *op, int16_t err)
{
    if (op->kind == GOP_CG_HEARTBEAT)
        fill_heartbeat_error(op->g, err, NULL);
    else
        fill_describe(op->g, op, NULL, NULL, err);
}

void group_cgroup_describe_not_classic(struct gop *op, struct kafka_str id)
{
    struct greq *g = op->g;
    struct kafka_describe_groups_response *o = g->resp;
    struct kafka_describe_groups_response_described_group *d = &o->groups[op->index];
    d->error_code = KAFKA_NONE;
    d->error_message = KAFKA_STR_NULL;
    d->group_state = (struct kafka_str){"Dead", 4};
    d->protocol_type = (struct kafka_str){"", 0};
    d->protocol_data = (struct kafka_str){"", 0};
    d->members_count = 0;
    if (g->version >= 6) {
        char msg[300];
        snprintf(msg, sizeof(msg), "Group %.*s is not a classic group.",
                 (int)(id.len > 200 ? 200 : id.len), id.ptr);
        d->error_code = KAFKA_GROUP_ID_NOT_FOUND;
        d->error_message = group_api_sdup(g, (struct kafka_str){msg, (int32_t)strlen(msg)});
    }
}

bool group_cgroup_precheck(struct hshard *hs, struct lm_group_coord *classic,
                           struct lm_cgroup_coord *cg, struct gop *op, int64_t now_ms)
{
    if (cg == NULL)
        return false;
    int32_t n_members = 0;
    int16_t err = KAFKA_NONE;
    switch (op->kind) {
    case GOP_COMMIT:
    case GOP_TXN_COMMIT: {
        bool txn = op->kind == GOP_TXN_COMMIT;
        struct lm_group_commit_req *in =
            txn ? &((struct lm_group_txn_commit_req *)(uintptr_t)op->in)->commit
                : (struct lm_group_commit_req *)(uintptr_t)op->in;
        if (!lm_cgroup_exists(cg, in->group_id, NULL) ||
            lm_group_coord_status(classic, in->group_id) != KAFKA_NONE)
            return false;
        int32_t n_tp = 0;
        for (int32_t i = 0; i < in->n_topics; i++)
            n_tp += in->topics[i].n_partitions;
        struct lm_cgroup_commit_tp *tps = group_api_alloc(op->g, (size_t)n_tp, sizeof(*tps));
        if (n_tp > 0 && tps == NULL)
            return false; /* g->nomem: the connection closes at finish */
        int32_t k = 0;
        for (int32_t i = 0; i < in->n_topics; i++)
            for (int32_t j = 0; j < in->topics[i].n_partitions; j++)
                tps[k++] = (struct lm_cgroup_commit_tp){in->topics[i].name,
                                                        in->topics[i].partitions[j].partition};
        struct lm_cgroup_image img = group_cgroup_image(hs);
        struct lm_cgroup_commit cm = {.group_id = in->group_id,
                                      .member_id = in->member_id,
                                      .member_epoch = in->generation_id,
                                      .transactional = txn,
                                      .api_version = op->g->version,
                                      .n_partitions = n_tp,
                                      .partitions = tps};
        err = lm_cgroup_check_commit(cg, &img, &cm);
        /* STALE_MEMBER_EPOCH is not an error of TxnOffsetCommit: Kafka answers
         * ILLEGAL_GENERATION there */
        if (txn && err == KAFKA_STALE_MEMBER_EPOCH)
            err = KAFKA_ILLEGAL_GENERATION;
        if (err != KAFKA_NONE)
            break;
        /* the member checks passed: the offsets go to the group's offsets-only classic group
         * as a plain commit */
        in->generation_id = -1;
        in->member_id = (struct kafka_str){"", 0};
        in->group_instance_id = KAFKA_STR_NULL;
        return false;
    }
    case GOP_FETCH: {
        const struct lm_group_fetch_req *in = op->in;
        struct kafka_str id = in->groups[0].group_id;
        if (!lm_cgroup_exists(cg, id, NULL) || lm_group_coord_status(classic, id) != KAFKA_NONE)
            return false;
        err = lm_cgroup_check_fetch(cg, id, op->cg_member_id, op->cg_member_epoch);
        break;
    }
    case GOP_JOIN: {
        const struct lm_group_join_req *in = op->in;
        if (!lm_cgroup_exists(cg, in->group_id, &n_members) ||
            lm_group_coord_status(classic, in->group_id) != KAFKA_NONE)
            return false;
        if (n_members == 0) {
            /* an empty consumer group gives way to the classic group (Kafka converts it) */
            int rc = lm_cgroup_delete(cg, in->group_id);
            LM_ASSERT(rc == 0 || rc == LM_E_NOMEM);
            if (rc == 0)
                return false;
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
            break;
        }
        /* a classic member joins the consumer group (Kafka classicGroupJoinToConsumerGroup) */
        struct lm_cgroup_image img = group_cgroup_image(hs);
        struct lm_group_resp r = {.kind = LM_GROUP_RESP_JOIN};
        if (lm_cgroup_classic_join(cg, now_ms, &img, in, &r.u.join) != 0)
            BLOG_WARN("classic join into a consumer group: out of memory");
        group_api_fill(op, &r, 0);
        /* a static member replacing the last consumer-protocol member downgrades the group */
        group_cgroup_downgrades(hs, classic, cg, now_ms);
        return true;
    }
    case GOP_SYNC: {
        const struct lm_group_sync_req *in = op->in;
        if (!lm_cgroup_exists(cg, in->group_id, NULL) ||
            lm_group_coord_status(classic, in->group_id) != KAFKA_NONE)
            return false;
        struct lm_cgroup_image img = group_cgroup_image(hs);
        struct lm_group_resp r = {.kind = LM_GROUP_RESP_SYNC};
        if (lm_cgroup_classic_sync(cg, now_ms, &img, in, &r.u.sync) != 0)
            BLOG_WARN("classic sync in a consumer group: out of memory");
        group_api_fill(op, &r, 0);
        return true;
    }
    case GOP_HEARTBEAT: {
        const struct lm_group_heartbeat_req *in = op->in;
        if (!lm_cgroup_exists(cg, in->group_id, NULL) ||
            lm_group_coord_status(classic, in->group_id) != KAFKA_NONE)
            return false;
        struct lm_group_resp r = {.kind = LM_GROUP_RESP_HEARTBEAT};
        (void)lm_cgroup_classic_heartbeat(cg, now_ms, in, &r.u.heartbeat);
        group_api_fill(op, &r, 0);
        return true;
    }
    case GOP_LEAVE: {
        const struct lm_group_leave_req *in = op->in;
        if (!lm_cgroup_exists(cg, in->group_id, NULL) ||
            lm_group_coord_status(classic, in->group_id) != KAFKA_NONE)
            return false;
        struct lm_group_resp r = {.kind = LM_GROUP_RESP_LEAVE};
        if (lm_cgroup_classic_leave(cg, now_ms, in, &r.u.leave) != 0)
            BLOG_WARN("classic leave of a consumer group: out of memory");
        group_api_fill(op, &r, 0);
        group_cgroup_downgrades(hs, classic, cg, now_ms);
        return true;
    }
    case GOP_DESCRIBE: {
        const struct kafka_str *id = op->in;
        if (!lm_cgroup_exists(cg, *id, NULL) || lm_group_coord_status(classic, *id) != KAFKA_NONE)
            return false;
        group_cgroup_describe_not_classic(op, *id);
        return true;
    }
    case GOP_DELETE: {
        const struct kafka_str *id = op->in;
        if (!lm_cgroup_exists(cg, *id, &n_members) ||
            lm_group_coord_status(classic, *id) != KAFKA_NONE)
            return false;
        if (n_members > 0) {
            err = KAFKA_NON_EMPTY_GROUP;
            break;
        }
        int rc = lm_cgroup_delete(cg, *id);
        LM_ASSERT(rc == 0 || rc == LM_E_NOMEM);
        if (rc != 0) {
            err = KAFKA_COORDINATOR_NOT_AVAILABLE;
            break;
        }
        op->cg_deleted = true;
        return false;
    }
    case GOP_OFFSET_DELETE: {
        struct lm_group_offset_delete_req *in =
            (struct lm_group_offset_delete_req *)(uintptr_t)op->in;
        if (!lm_cgroup_exists(cg, in->group_id, &n_members) || n_members == 0 ||
            lm_group_coord_status(classic, in->group_id) != KAFKA_NONE)
            return false;
        /* topics its members subscribe to are not deleted (Kafka: GROUP_SUBSCRIBED_TO_TOPIC);
         * the others go on to the classic coordinator. in's array is the request's (arena),
         * split in place: the kept ones first, the subscribed ones after them. */
        struct lm_group_fetch_topic *t = (struct lm_group_fetch_topic *)(uintptr_t)in->topics;
        int32_t keep = 0, n = in->n_topics;
        struct lm_group_fetch_topic *sub = group_api_alloc(op->g, (size_t)n, sizeof(*sub));
        if (n > 0 && sub == NULL)
            return false; /* g->nomem: the connection closes at finish */
        int32_t ns = 0;
        for (int32_t i = 0; i < n; i++) {
            if (lm_cgroup_subscribed(cg, in->group_id, t[i].name))
                sub[ns++] = t[i];
            else
                t[keep++] = t[i];
        }
        in->n_topics = keep;
        op->cg_subscribed = sub;
        op->cg_n_subscribed = ns;
        return false;
    }
    default:
        return false;
    }
    if (err == KAFKA_NONE)
        return false;
    group_api_fill(op, NULL, err);
    return true;
}

/* ---- setup ---- */

int group_cgroup_config(struct broker_config *bcfg, struct lm_cgroup_config *cfg)
{
    lm_cgroup_config_default(cfg);
    int64_t v = cfg->session_timeout_ms;
    int rc = group_config_i64(bcfg, "group.consumer.session.timeout.ms", 1, INT32_MAX, &v);
    cfg->session_timeout_ms = (int32_t)v;
    v = cfg->heartbeat_interval_ms;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.consumer.heartbeat.interval.ms", 1, INT32_MAX, &v);
    cfg->heartbeat_interval_ms = (int32_t)v;
    v = cfg->max_size;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.consumer.max.size", 1, INT32_MAX, &v);
    cfg->max_size = (int32_t)v;
    if (rc != 0)
        return rc;
    /* group.consumer.migration.policy: Kafka's names, case-insensitive */
    const char *mp = broker_config_get(bcfg, "group.consumer.migration.policy");
    broker_config_mark_used(bcfg, "group.consumer.migration.policy");
    if (mp != NULL && *mp != '\0') {
        static const char *const names[] = {"disabled", "upgrade", "downgrade", "bidirectional"};
        size_t k = 0;
        while (k < 4 && strcasecmp(mp, names[k]) != 0)
            k++;
        if (k == 4) {
            BLOG_ERROR("group.consumer.migration.policy: \"%s\" is not one of disabled, upgrade, "
                       "downgrade, bidirectional",
                       mp);
            return LM_E_CONFIG;
        }
        cfg->migration = (enum lm_cgroup_migration)k;
    }
    /* group.consumer.assignors: short names or Kafka's class names, the first the default */
    const char *a = broker_config_get(bcfg, "group.consumer.assignors");
    broker_config_mark_used(bcfg, "group.consumer.assignors");
    if (a == NULL || *a == '\0')
        return 0;
    cfg->n_assignors = 0;
    const char *p = a;
    while (*p != '\0') {
        size_t n = strcspn(p, ",");
        const char *s = p, *e = p + n;
        while (s < e && (*s == ' ' || *s == '\t'))
            s++;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        size_t len = (size_t)(e - s);
        const char *name = NULL;
        if ((len == 7 && memcmp(s, "uniform", 7) == 0) ||
            (len >= 15 && memcmp(e - 15, "UniformAssignor", 15) == 0))
            name = "uniform";
        else if ((len == 5 && memcmp(s, "range", 5) == 0) ||
                 (len >= 13 && memcmp(e - 13, "RangeAssignor", 13) == 0))
            name = "range";
        if (name == NULL || cfg->n_assignors >= 2) {
            BLOG_ERROR(
                "group.consumer.assignors: unknown assignor, or more than two, \"%.*s\" (served: "
                "uniform, range)",
                (int)len, s);
            return LM_E_CONFIG;
        }
        cfg->assignors[cfg->n_assignors++] = name;
        p += n;
        if (*p == ',')
            p++;
    }
    if (cfg->n_assignors == 0) {
        lm_cgroup_config_default(cfg);
        return LM_E_CONFIG;
    }
    return 0;
}

int group_cgroup_register(struct broker_dispatch *d)
{
    int rc;
    if ((rc = handlers_serve(d, KAFKA_CONSUMER_GROUP_HEARTBEAT_KEY, 0, 1,
                             consumer_group_heartbeat)) != 0 ||
        (rc = handlers_serve(d, KAFKA_CONSUMER_GROUP_DESCRIBE_KEY, 0, 1,
                             consumer_group_describe)) != 0)
        return rc;
    return 0;
}
