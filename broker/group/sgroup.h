/* Share groups (KIP-932) as a pure state machine (DESIGN.md §7): membership by
 * ShareGroupHeartbeat, ShareGroupDescribe, listing, and the server-side assignment.
 *
 * Inputs: heartbeat and describe calls with the time now_ms and a read-only image of the topics
 * (lm_cgroup_image: names, ids, partition counts); lm_sgroup_tick(now_ms) for session
 * timeouts. No sockets, threads, files or clocks. Answers are owned by the coordinator and
 * valid until its next call.
 *
 * The model (KIP-932, Kafka 4.1's share group in GroupMetadataManager and SimpleAssignor):
 * - the member id is chosen by the client (ShareGroupHeartbeat v1); member_epoch 0 joins (the
 *   subscription must be given), -1 leaves, any other must equal the member's epoch
 *   (FENCED_MEMBER_EPOCH otherwise, UNKNOWN_MEMBER_ID for an id the group does not have);
 * - the group epoch moves when membership, a subscription or the partition counts of the
 *   subscribed topics change; the target assignment is recomputed then (assignment epoch =
 *   group epoch);
 * - there is no revocation phase: a share partition may be consumed by several members at
 *   once, so a member takes the target assignment at its next heartbeat and its member epoch
 *   becomes the assignment epoch;
 * - the "simple" assignor gives every member subscribed to a topic partitions of it: with at
 *   least as many partitions as subscribers, partition p goes to subscriber p mod n (by member
 *   id); with fewer, subscriber i gets partition i mod P, so a partition is shared.
 *
 * State is only in memory: a restart forgets share groups; members rejoin with epoch 0 when
 * their heartbeat is answered UNKNOWN_MEMBER_ID. */
#ifndef LAMINAR_BROKER_GROUP_SGROUP_H
#define LAMINAR_BROKER_GROUP_SGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/cgroup.h" /* lm_cgroup_image, lm_cgroup_tp */
#include "protocol/kafka_rt.h"

#define LM_SGROUP_GROUPS_MAX     4096 /* share groups of one coordinator */
#define LM_SGROUP_SUBSCRIBED_MAX 1024 /* topics of one subscription */
#define LM_SGROUP_ID_MAX         255  /* bytes of a member id, rack, client id or host */
#define LM_SGROUP_JOIN_EPOCH     0
#define LM_SGROUP_LEAVE_EPOCH    (-1)

struct lm_sgroup_config {
    int32_t session_timeout_ms;    /* group.share.session.timeout.ms (45000) */
    int32_t heartbeat_interval_ms; /* group.share.heartbeat.interval.ms (5000) */
    int32_t max_size;              /* group.share.max.size (200) */
};

struct lm_sgroup_hb_req {
    struct kafka_str group_id;
    struct kafka_str member_id;
    int32_t member_epoch;     /* 0 join, -1 leave */
    struct kafka_str rack_id; /* null: unchanged */
    int32_t n_topic_names;    /* -1 (null): unchanged */
    const struct kafka_str *topic_names;
    struct kafka_str client_id;
    struct kafka_str client_host;
    /* the group's own share.session.timeout.ms / share.heartbeat.interval.ms, 0: config's */
    int32_t session_timeout_ms;
    int32_t heartbeat_interval_ms;
};

struct lm_sgroup_hb_resp {
    int16_t error_code;
    const char *error_message; /* static text or NULL */
    struct kafka_str member_id;
    int32_t member_epoch;
    int32_t heartbeat_interval_ms;
    bool has_assignment; /* false: unchanged (null on the wire) */
    int32_t n_assigned;  /* sorted by topic id, then partition */
    const struct lm_cgroup_tp *assigned;
};

struct lm_sgroup_desc_member {
    struct kafka_str member_id;
    struct kafka_str rack_id;
    int32_t member_epoch;
    struct kafka_str client_id;
    struct kafka_str client_host;
    int32_t n_topic_names;
    const struct kafka_str *topic_names;
    int32_t n_assigned;
    const struct lm_cgroup_tp *assigned;
};

struct lm_sgroup_desc {
    int16_t error_code; /* GROUP_ID_NOT_FOUND when no share group has the id */
    struct kafka_str group_id;
    const char *state; /* "Empty", "Stable" */
    int32_t group_epoch;
    int32_t assignment_epoch;
    const char *assignor; /* "simple" */
    int32_t n_members;
    const struct lm_sgroup_desc_member *members;
};

struct lm_sgroup_list_entry {
    struct kafka_str group_id;
    const char *state;
};

struct lm_sgroup_coord;

/* lm_sgroup_config_default fills Kafka's defaults. */
void lm_sgroup_config_default(struct lm_sgroup_config *cfg);
/* lm_sgroup_coord_new makes an empty coordinator (cfg copied); free with lm_sgroup_coord_free. */
int lm_sgroup_coord_new(const struct lm_sgroup_config *cfg, struct lm_sgroup_coord **out);
void lm_sgroup_coord_free(struct lm_sgroup_coord *c);

/* lm_sgroup_heartbeat runs one ShareGroupHeartbeat; *out is filled (Kafka errors in it) and
 * valid until the next call. Returns 0 or LM_E_NOMEM (then *out says UNKNOWN_SERVER_ERROR). */
int lm_sgroup_heartbeat(struct lm_sgroup_coord *c, int64_t now_ms,
                        const struct lm_cgroup_image *img, const struct lm_sgroup_hb_req *req,
                        struct lm_sgroup_hb_resp *out);
/* lm_sgroup_describe describes one group; *out valid until the next call. Returns 0 or
 * LM_E_NOMEM. */
int lm_sgroup_describe(struct lm_sgroup_coord *c, struct kafka_str group_id,
                       struct lm_sgroup_desc *out);
/* lm_sgroup_exists tells whether a share group has the id; *n_members (may be NULL) gets its
 * member count. */
bool lm_sgroup_exists(const struct lm_sgroup_coord *c, struct kafka_str group_id,
                      int32_t *n_members);
/* lm_sgroup_member_ok tells whether the group has a member with this id (ShareFetch and
 * ShareAcknowledge come from members only). */
bool lm_sgroup_member_ok(const struct lm_sgroup_coord *c, struct kafka_str group_id,
                         struct kafka_str member_id);
/* lm_sgroup_list calls fn for every group (borrowed entries). */
void lm_sgroup_list(const struct lm_sgroup_coord *c,
                    void (*fn)(void *ctx, const struct lm_sgroup_list_entry *e), void *ctx);
/* lm_sgroup_delete removes an empty group: 0, LM_E_NOT_FOUND or LM_E_EXISTS (members). */
int lm_sgroup_delete(struct lm_sgroup_coord *c, struct kafka_str group_id);
/* lm_sgroup_tick removes members whose session timed out; returns how many. */
int32_t lm_sgroup_tick(struct lm_sgroup_coord *c, int64_t now_ms);
/* lm_sgroup_next_deadline_ms returns the earliest session deadline, INT64_MAX when none. */
int64_t lm_sgroup_next_deadline_ms(const struct lm_sgroup_coord *c);
/* lm_sgroup_n_groups returns how many share groups are held. */
size_t lm_sgroup_n_groups(const struct lm_sgroup_coord *c);

#endif
