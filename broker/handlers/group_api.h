/* Private to group_*.c: a group request in flight (greq) is a list of coordinator calls (gop),
 * each run on the shard owning its group's __consumer_offsets partition, one after another
 * (so only one shard at a time writes into the request's arena). */
#ifndef LAMINAR_BROKER_HANDLERS_GROUP_API_H
#define LAMINAR_BROKER_HANDLERS_GROUP_API_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/cgroup.h"
#include "broker/group/group.h"
#include "broker/group/sgroup.h"
#include "broker/group/share_partition.h"
#include "broker/handlers/group_internal.h"

enum gop_kind {
    GOP_JOIN = 1,
    GOP_SYNC,
    GOP_HEARTBEAT,
    GOP_LEAVE,
    GOP_COMMIT,
    GOP_FETCH,
    GOP_DESCRIBE,
    GOP_LIST,
    GOP_DELETE,
    GOP_OFFSET_DELETE,
    GOP_TXN_COMMIT,
    GOP_CG_HEARTBEAT, /* ConsumerGroupHeartbeat (group_cgroup.c) */
    GOP_CG_DESCRIBE,  /* ConsumerGroupDescribe, one group */
    GOP_SG_HEARTBEAT, /* ShareGroupHeartbeat (group_share.c) */
    GOP_SG_DESCRIBE,  /* ShareGroupDescribe, one group */
    GOP_SG_OFFSETS,   /* Alter/DeleteShareGroupOffsets: is the id an empty share group? */
};

/* A GOP_SG_OFFSETS call's in and out (share_fetch.c): the group must be a share group without
 * members, as Kafka's coordinator checks before it alters or deletes share offsets. error:
 * NONE, or GROUP_ID_NOT_FOUND / NON_EMPTY_GROUP / the coordinator's status (NOT_COORDINATOR,
 * ...) / GROUP_AUTHORIZATION_FAILED, with Kafka's exception message in message. */
struct sg_offsets_check {
    struct kafka_str group_id;
    int16_t error;
    char message[320];
};

struct greq;

struct gop {
    struct broker_xcall x;
    struct greq *g;
    uint32_t owner; /* shard that runs the call */
    uint8_t kind;   /* enum gop_kind */
    const void *in; /* the lm_group_*_req (or kafka_str array for describe/delete) */
    int32_t n;      /* group count for describe/delete */
    size_t index;   /* which element of the response this call fills */
    /* An authorization error answered on the request's shard instead of running the call
     * (group_api_fill with no result); 0 runs it. */
    int16_t deny;
    /* Consumer-protocol groups: the owner shard's coordinator of them, set before the call
     * (fill_list reads it); OffsetFetch v9's member id and epoch (null id, -1: none); whether
     * DeleteGroups removed a consumer group here. */
    struct lm_cgroup_coord *cg;
    struct lm_sgroup_coord *sg; /* share groups (KIP-932), likewise */
    struct kafka_str cg_member_id;
    int32_t cg_member_epoch;
    bool cg_deleted;
    bool sg_deleted; /* DeleteGroups removed a share group here: its share state goes next */
    /* OffsetDelete of a consumer group: the request's topics its members subscribe to, taken
     * out of the call and answered GROUP_SUBSCRIBED_TO_TOPIC (arena) */
    const struct lm_group_fetch_topic *cg_subscribed;
    int32_t cg_n_subscribed;
};

struct greq {
    struct broker_req *req;
    int16_t version;
    void *resp; /* the kafka_<api>_response being filled */
    void *aux;  /* API-specific */
    struct gop *ops;
    size_t n_ops;
    size_t next;
    bool nomem; /* an arena copy failed: the connection is closed at finish */
    /* Runs on the request's shard once every call has answered, before the response is
     * encoded: drops or marks what the principal may not see (the calls run on other shards,
     * which must not read this shard's metadata image). NULL: nothing. */
    void (*post)(struct greq *g);
    /* Runs after post instead of sending the response (NULL: send it): the caller continues
     * (and answers) itself. */
    void (*then)(struct greq *g);
};

/* Helpers of group_api.c for group_cgroup.c: a request of n_ops calls (NULL: the connection
 * was closed), call i set up and authorized (acl_op on the group), arena copies (a failed one
 * sets g->nomem). */
struct greq *group_api_greq_new(struct broker_req *req, void *resp, size_t n_ops);
void group_api_gop_set(struct greq *g, size_t i, uint8_t kind, uint32_t owner, const void *in,
                       int32_t n, int8_t acl_op, struct kafka_str group_id);
struct kafka_str group_api_sdup(struct greq *g, struct kafka_str s);
void *group_api_alloc(struct greq *g, size_t n, size_t size);

/* Runs op's lm_group_* call (on the owner shard) with op as the token. */
int group_api_call(struct lm_group_coord *c, struct gop *op, int64_t now_ms);
/* Copies a coordinator response (r NULL: none) into the Kafka response of op's request, on the
 * owner shard; err != 0 overrides every error code (persist failed, coordinator gone). */
void group_api_fill(struct gop *op, const struct lm_group_resp *r, int16_t err);
/* Encodes and sends the response once every call is back (origin shard). */
void group_api_finish(struct greq *g);
/* Registers the group APIs. */
int group_api_register(struct broker_dispatch *d);

/* Consumer-protocol groups (group_cgroup.c), on the owner shard. group_cgroup_run runs a
 * GOP_CG_* call (answered at once); group_cgroup_precheck runs before a classic call on a
 * group id and answers it (returns true) when the id is a consumer group that the call must
 * not reach the classic coordinator as is (OffsetCommit/OffsetFetch member checks,
 * JoinGroup/SyncGroup/Heartbeat/LeaveGroup of classic members of a consumer group,
 * DescribeGroups, DeleteGroups), possibly rewriting the call (an OffsetCommit becomes a plain
 * commit once the member checks passed). Records the consumer-group coordinator emitted are
 * the caller's to append before the answer leaves. */
void group_cgroup_run(struct hshard *hs, struct lm_group_coord *classic, struct lm_cgroup_coord *cg,
                      struct gop *op, int64_t now_ms);
bool group_cgroup_precheck(struct hshard *hs, struct lm_group_coord *classic,
                           struct lm_cgroup_coord *cg, struct gop *op, int64_t now_ms);
/* group_cgroup_session_timeout_ms returns a group's own consumer.session.timeout.ms (GROUP
 * config resource), 0 when it has none; ctx is the shard's struct hshard (the session timers
 * a load of consumer groups starts). */
int32_t group_cgroup_session_timeout_ms(void *ctx, struct kafka_str group_id);
/* Hands every consumer group that became a classic group (the last consumer-protocol member
 * of classic members left or was fenced) to the classic coordinator; after each consumer-group
 * call and tick, before their records are flushed. */
void group_cgroup_downgrades(struct hshard *hs, struct lm_group_coord *classic,
                             struct lm_cgroup_coord *cg, int64_t now_ms);
/* Answers a GOP_CG_* call with err (coordinator gone, authorization). */
void group_cgroup_fill_error(struct gop *op, int16_t err);
/* Registers ConsumerGroupHeartbeat and ConsumerGroupDescribe. */
int group_cgroup_register(struct broker_dispatch *d);
/* Reads the group.consumer.* settings into cfg (LM_E_CONFIG, logged, when one is bad). */
int group_cgroup_config(struct broker_config *bcfg, struct lm_cgroup_config *cfg);

/* Answers a DescribeGroups call on a group id of another protocol: "Dead", and from v6
 * GROUP_ID_NOT_FOUND ("not a classic group"), as Kafka. */
void group_cgroup_describe_not_classic(struct gop *op, struct kafka_str id);
/* The owner shard's metadata as the consumer and share group coordinators see it. */
struct lm_cgroup_image group_cgroup_image(struct hshard *hs);

/* Share groups (group_share.c), on the owner shard: group_share_run runs a GOP_SG_* call;
 * group_share_precheck answers (returns true) a classic or consumer-group call on the id of a
 * share group (JoinGroup, ConsumerGroupHeartbeat: GROUP_ID_NOT_FOUND as Kafka; DescribeGroups:
 * not a classic group). */
void group_share_run(struct hshard *hs, struct lm_group_coord *classic, struct lm_cgroup_coord *cg,
                     struct lm_sgroup_coord *sg, struct gop *op, int64_t now_ms);
bool group_share_precheck(struct lm_sgroup_coord *sg, struct gop *op);
void group_share_fill_error(struct gop *op, int16_t err);
int group_share_register(struct broker_dispatch *d);
/* Reads the group.share.* settings (LM_E_CONFIG, logged, when one is bad). */
int group_share_config(struct broker_config *bcfg, struct lm_sgroup_config *cfg,
                       struct lm_share_config *pcfg);

/* Issues g's calls in order, then group_api_finish (group_coord.c). */
void group_ops_start(struct greq *g);
/* Shard owning the __consumer_offsets partition of a group (null id: as ""). */
uint32_t group_owner_of(struct hshard *hs, struct kafka_str group_id);
#endif
