/* Share groups (KIP-932) in the broker: ShareGroupHeartbeat (76, v1) and ShareGroupDescribe
 * (77, v1) on top of the per-shard lm_sgroup_coord (broker/group/sgroup.h), and what the other
 * group APIs answer for the id of a share group.
 *
 * Placement is the classic coordinator's: a share group lives on the shard owning its
 * __consumer_offsets partition (FindCoordinator key type 0: the 4.1 Java share consumer looks
 * its coordinator up as a GROUP; key type 2, SHARE, names Kafka's share-state coordinator,
 * which laminar does not have), and the classic coordinator's status of the id
 * (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS) answers for it too.
 *
 * Membership is only in memory (nothing is written to __consumer_offsets): after a restart or
 * a coordinator move the members' heartbeats are answered UNKNOWN_MEMBER_ID and they rejoin.
 *
 * Kafka's answers for ids used by another protocol (GroupMetadataManager): a
 * ShareGroupHeartbeat of an id held by a classic or consumer group with members is
 * GROUP_ID_NOT_FOUND ("Group %s is not a share group."); JoinGroup or ConsumerGroupHeartbeat of
 * a share group's id is refused likewise; DescribeGroups of a share group answers "Dead" (v6+:
 * GROUP_ID_NOT_FOUND); ListGroups shows it with type and protocol type "share"; DeleteGroups
 * deletes an empty share group and answers NON_EMPTY_GROUP while it has members. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/group_api.h"
#include "broker/handlers/group_internal.h"
#include "broker/log.h"
#include "broker/shard_internal.h" /* the connection's peer address (client host) */
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_messages.h"

static struct kafka_str cstr(const char *s)
{
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

/* The group's own share.session.timeout.ms / share.heartbeat.interval.ms (GROUP config
 * resources), 0 for each it has not. */
static void share_configs_of(struct hshard *hs, struct kafka_str group, struct lm_sgroup_hb_req *in)
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
        if (strcmp(gc->configs[i].name, "share.session.timeout.ms") == 0)
            in->session_timeout_ms = ms;
        else if (strcmp(gc->configs[i].name, "share.heartbeat.interval.ms") == 0)
            in->heartbeat_interval_ms = ms;
    }
}

/* ---- ShareGroupHeartbeat ---- */

static void share_group_heartbeat(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_share_group_heartbeat_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_share_group_heartbeat_response *resp = h_alloc(req, 1, sizeof(*resp));
    struct lm_sgroup_hb_req *in = h_alloc(req, 1, sizeof(*in));
    if (rq == NULL || resp == NULL || in == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_share_group_heartbeat_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_share_group_heartbeat_response_init(resp);
    resp->throttle_time_ms = 0;
    resp->error_message = KAFKA_STR_NULL;
    resp->member_id = KAFKA_STR_NULL;
    resp->assignment_null = true;
    in->group_id = rq->group_id;
    in->member_id = rq->member_id;
    in->member_epoch = rq->member_epoch;
    in->rack_id = rq->rack_id;
    in->n_topic_names = rq->subscribed_topic_names_count; /* -1: null, unchanged */
    in->topic_names = rq->subscribed_topic_names;
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
    share_configs_of(hs, rq->group_id, in);
    struct greq *g = group_api_greq_new(req, resp, 1);
    if (g == NULL)
        return;
    group_api_gop_set(g, 0, GOP_SG_HEARTBEAT, group_owner_of(hs, rq->group_id), in, 1,
                      AUTHZ_OP_READ, rq->group_id);
    group_ops_start(g);
}

static void fill_heartbeat_error(struct greq *g, int16_t err, const char *msg)
{
    struct kafka_share_group_heartbeat_response *o = g->resp;
    o->error_code = err;
    o->error_message = msg != NULL ? group_api_sdup(g, cstr(msg)) : KAFKA_STR_NULL;
    o->member_id = KAFKA_STR_NULL;
    o->member_epoch = 0;
    o->heartbeat_interval_ms = 0;
    o->assignment_null = true;
}

static void fill_heartbeat(struct greq *g, const struct lm_sgroup_hb_resp *r)
{
    struct kafka_share_group_heartbeat_response *o = g->resp;
    if (r->error_code != KAFKA_NONE) {
        fill_heartbeat_error(g, r->error_code, r->error_message);
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
    struct kafka_share_group_heartbeat_topic_partitions *tps =
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

/* ---- ShareGroupDescribe ---- */

static void share_group_describe(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_share_group_describe_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_share_group_describe_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_share_group_describe_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_share_group_describe_response_init(resp);
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
        struct kafka_share_group_describe_response_described_group *d = &resp->groups[i];
        d->group_id = rq->group_ids[i];
        d->error_message = KAFKA_STR_NULL;
        d->group_state = (struct kafka_str){"", 0};
        d->assignor_name = (struct kafka_str){"", 0};
        d->authorized_operations = INT32_MIN;
        group_api_gop_set(g, (size_t)i, GOP_SG_DESCRIBE, group_owner_of(hs, rq->group_ids[i]),
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

static int fill_assignment(struct greq *g, const struct lm_cgroup_image *img,
                           struct kafka_share_group_describe_assignment *a, int32_t n,
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
                          const struct lm_sgroup_desc *d, int16_t err)
{
    struct kafka_share_group_describe_response *o = g->resp;
    struct kafka_share_group_describe_response_described_group *r = &o->groups[op->index];
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
        r->error_message = group_api_sdup(g, cstr(msg));
        return;
    }
    r->group_state = cstr(d->state);
    r->group_epoch = d->group_epoch;
    r->assignment_epoch = d->assignment_epoch;
    r->assignor_name = cstr(d->assignor);
    r->members = group_api_alloc(g, (size_t)d->n_members, sizeof(*r->members));
    if (d->n_members > 0 && r->members == NULL)
        return;
    for (int32_t i = 0; i < d->n_members; i++) {
        const struct lm_sgroup_desc_member *m = &d->members[i];
        struct kafka_share_group_describe_response_member *w = &r->members[i];
        memset(w, 0, sizeof(*w));
        w->member_id = group_api_sdup(g, m->member_id);
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
        if (fill_assignment(g, img, &w->assignment, m->n_assigned, m->assigned) != 0)
            return;
    }
    r->members_count = d->n_members;
}

/* ---- on the owner shard ---- */

static void not_share_msg(char *buf, size_t size, struct kafka_str id, const char *what)
{
    snprintf(buf, size, "Group %.*s is not a %s group.", (int)(id.len > 200 ? 200 : id.len),
             id.ptr != NULL ? id.ptr : "", what);
}

void group_share_run(struct hshard *hs, struct lm_group_coord *classic, struct lm_cgroup_coord *cg,
                     struct lm_sgroup_coord *sg, struct gop *op, int64_t now_ms)
{
    struct greq *g = op->g;
    if (op->kind == GOP_SG_HEARTBEAT) {
        const struct lm_sgroup_hb_req *in = op->in;
        if (in->group_id.len > 0) {
            int16_t st = lm_group_coord_status(classic, in->group_id);
            if (st != KAFKA_NONE) {
                fill_heartbeat_error(g, st, NULL);
                return;
            }
            struct lm_group_info info;
            int32_t n_cg = 0;
            if ((lm_group_coord_info(classic, in->group_id, &info) == 0 && info.n_members > 0) ||
                (cg != NULL && lm_cgroup_exists(cg, in->group_id, &n_cg))) {
                char msg[300];
                not_share_msg(msg, sizeof(msg), in->group_id, "share");
                fill_heartbeat_error(g, KAFKA_GROUP_ID_NOT_FOUND, NULL);
                struct kafka_share_group_heartbeat_response *o = g->resp;
                o->error_message = group_api_sdup(g, cstr(msg));
                return;
            }
        }
        struct lm_cgroup_image img = group_cgroup_image(hs);
        struct lm_sgroup_hb_resp r;
        if (lm_sgroup_heartbeat(sg, now_ms, &img, in, &r) != 0)
            BLOG_WARN("share group heartbeat: out of memory");
        fill_heartbeat(g, &r);
        return;
    }
    if (op->kind == GOP_SG_OFFSETS) {
        /* GroupMetadataManager.shareGroup, then ShareGroup.validateEmptyGroup */
        struct sg_offsets_check *c = (struct sg_offsets_check *)op->in;
        struct kafka_str gid = c->group_id;
        int gl = gid.len > 200 ? 200 : gid.len;
        c->message[0] = '\0';
        c->error = lm_group_coord_status(classic, gid);
        if (c->error != KAFKA_NONE)
            return;
        int32_t n_members = 0;
        if (lm_sgroup_exists(sg, gid, &n_members)) {
            if (n_members > 0) {
                c->error = KAFKA_NON_EMPTY_GROUP;
                snprintf(c->message, sizeof(c->message), "The group is not empty.");
            }
            return;
        }
        struct lm_group_info info;
        int32_t n_cg = 0;
        c->error = KAFKA_GROUP_ID_NOT_FOUND;
        if (lm_group_coord_info(classic, gid, &info) == 0 ||
            (cg != NULL && lm_cgroup_exists(cg, gid, &n_cg)))
            not_share_msg(c->message, sizeof(c->message), gid, "share");
        else
            snprintf(c->message, sizeof(c->message), "Group %.*s not found.", gl,
                     gid.ptr != NULL ? gid.ptr : "");
        return;
    }
    LM_ASSERT(op->kind == GOP_SG_DESCRIBE);
    const struct kafka_str *id = op->in;
    int16_t st = lm_group_coord_status(classic, *id);
    if (st != KAFKA_NONE) {
        fill_describe(g, op, NULL, NULL, st);
        return;
    }
    struct lm_cgroup_image img = group_cgroup_image(hs);
    struct lm_sgroup_desc d;
    if (lm_sgroup_describe(sg, *id, &d) != 0) {
        fill_describe(g, op, NULL, NULL, KAFKA_UNKNOWN_SERVER_ERROR);
        return;
    }
    fill_describe(g, op, &img, &d, KAFKA_NONE);
}

void group_share_fill_error(struct gop *op, int16_t err)
{
    if (op->kind == GOP_SG_OFFSETS) {
        struct sg_offsets_check *c = (struct sg_offsets_check *)op->in;
        c->error = err;
        c->message[0] = '\0';
        return;
    }
    if (op->kind == GOP_SG_HEARTBEAT)
        fill_heartbeat_error(op->g, err, NULL);
    else
        fill_describe(op->g, op, NULL, NULL, err);
}

bool group_share_precheck(struct lm_sgroup_coord *sg, struct gop *op)
{
    if (sg == NULL)
        return false;
    int32_t n_members = 0;
    int16_t err = KAFKA_NONE;
    switch (op->kind) {
    case GOP_JOIN: {
        const struct lm_group_join_req *in = op->in;
        if (!lm_sgroup_exists(sg, in->group_id, NULL))
            return false;
        err = KAFKA_INCONSISTENT_GROUP_PROTOCOL;
        break;
    }
    case GOP_CG_HEARTBEAT: {
        const struct lm_cgroup_hb_req *in = op->in;
        if (!lm_sgroup_exists(sg, in->group_id, NULL))
            return false;
        group_api_fill(op, NULL, KAFKA_GROUP_ID_NOT_FOUND);
        return true;
    }
    case GOP_DESCRIBE: {
        const struct kafka_str *id = op->in;
        if (!lm_sgroup_exists(sg, *id, NULL))
            return false;
        group_cgroup_describe_not_classic(op, *id);
        return true;
    }
    case GOP_DELETE: {
        const struct kafka_str *id = op->in;
        if (!lm_sgroup_exists(sg, *id, &n_members))
            return false;
        if (n_members > 0) {
            err = KAFKA_NON_EMPTY_GROUP;
            break;
        }
        int rc = lm_sgroup_delete(sg, *id);
        LM_ASSERT(rc == 0);
        op->cg_deleted = true;
        op->sg_deleted = true;
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

int group_share_config(struct broker_config *bcfg, struct lm_sgroup_config *cfg,
                       struct lm_share_config *pcfg)
{
    lm_sgroup_config_default(cfg);
    lm_share_config_default(pcfg);
    int64_t v = cfg->session_timeout_ms;
    int rc = group_config_i64(bcfg, "group.share.session.timeout.ms", 1, INT32_MAX, &v);
    cfg->session_timeout_ms = (int32_t)v;
    v = cfg->heartbeat_interval_ms;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.share.heartbeat.interval.ms", 1, INT32_MAX, &v);
    cfg->heartbeat_interval_ms = (int32_t)v;
    v = cfg->max_size;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.share.max.size", 1, 1000, &v);
    cfg->max_size = (int32_t)v;
    v = pcfg->lock_ms;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.share.record.lock.duration.ms", 1000, INT32_MAX, &v);
    pcfg->lock_ms = (int32_t)v;
    v = pcfg->delivery_limit;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.share.delivery.count.limit", 2, 10, &v);
    pcfg->delivery_limit = (int32_t)v;
    v = pcfg->max_in_flight;
    if (rc == 0)
        rc = group_config_i64(bcfg, "group.share.partition.max.record.locks", 100,
                              LM_SHARE_IN_FLIGHT_MAX, &v);
    pcfg->max_in_flight = (int32_t)v;
    return rc;
}

int group_share_register(struct broker_dispatch *d)
{
    int rc;
    if ((rc = handlers_serve(d, KAFKA_SHARE_GROUP_HEARTBEAT_KEY, 1, 1, share_group_heartbeat)) !=
            0 ||
        (rc = handlers_serve(d, KAFKA_SHARE_GROUP_DESCRIBE_KEY, 1, 1, share_group_describe)) != 0)
        return rc;
    return 0;
}
