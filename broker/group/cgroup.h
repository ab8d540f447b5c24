/* Consumer-protocol groups (KIP-848) as a pure state machine (DESIGN.md §7).
 *
 * Inputs: ConsumerGroupHeartbeat and ConsumerGroupDescribe calls, each with the time now_ms and
 * a read-only image of the topics (names, ids, partition counts) the shell takes from its
 * metadata; lm_cgroup_tick(now_ms) for session and rebalance timeouts; lm_cgroup_unload when
 * the group's __consumer_offsets partition moves away. No sockets, threads, files or clocks.
 * Every call answers at once (nothing is parked); the answer is owned by the coordinator and
 * valid until its next call.
 *
 * The model (KIP-848, Kafka's GroupMetadataManager and CurrentAssignmentBuilder):
 * - group epoch: bumped when membership, a subscription or the metadata of the subscribed
 *   topics (partition counts, deletions, ids) changes;
 * - target assignment and its epoch: computed by the server-side assignor ("uniform" or
 *   "range") the next time a member heartbeats after the group epoch moved;
 * - member epoch: a member reaches the target epoch once it holds no partition the target
 *   takes away. A member that must give partitions up is told its reduced assignment first
 *   and keeps its epoch until a heartbeat's owned partitions show it let them go; a partition
 *   is handed to a member only when no other member still holds it (assigned or pending
 *   revocation), so no partition is ever held by two members.
 *
 * Persistence: every call that changes a group emits Kafka's consumer-group records for
 * __consumer_offsets (cgroup_records.h: group epoch, member metadata, target assignment and
 * its epoch, current member assignment; tombstones when a member leaves or is fenced and when
 * the group is deleted), only those whose value changed. lm_cgroup_records hands them out; the
 * shell appends them (PERSIST BEFORE SEND: the heartbeat's response leaves once they are
 * committed) and then calls lm_cgroup_records_advance. Loading a partition (unload, then
 * lm_cgroup_replay of every record in log order, then lm_cgroup_load_end) brings the groups,
 * members, epochs and assignments back: a member heartbeating with its id and epoch after a
 * restart or a coordinator move goes on with its assignment. Committed offsets live in the
 * classic coordinator (group.h); lm_cgroup_check_commit / lm_cgroup_check_fetch give the
 * member checks Kafka applies to OffsetCommit and OffsetFetch of consumer groups. */
#ifndef LAMINAR_BROKER_GROUP_CGROUP_H
#define LAMINAR_BROKER_GROUP_CGROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/group.h" /* the classic requests of a classic member */
#include "protocol/kafka_rt.h"

#define LM_CGROUP_MEMBERS_MAX        4096   /* hard bound of one group's members */
#define LM_CGROUP_SUBSCRIBED_MAX     10000  /* topics of one subscription */
#define LM_CGROUP_ASSIGNED_MAX       100000 /* partitions a heartbeat may report owned */
#define LM_CGROUP_REGEX_MAX          1024   /* bytes of a subscription regex */
#define LM_CGROUP_JOIN_EPOCH         0
#define LM_CGROUP_LEAVE_EPOCH        (-1)
#define LM_CGROUP_STATIC_LEAVE_EPOCH (-2)

/* group.consumer.migration.policy (Kafka ConsumerGroupMigrationPolicy) */
enum lm_cgroup_migration {
    LM_CGROUP_MIGRATION_DISABLED = 0,
    LM_CGROUP_MIGRATION_UPGRADE = 1,
    LM_CGROUP_MIGRATION_DOWNGRADE = 2,
    LM_CGROUP_MIGRATION_BIDIRECTIONAL = 3, /* upgrade | downgrade */
};

struct lm_cgroup_config {
    int32_t session_timeout_ms;    /* group.consumer.session.timeout.ms (45000) */
    int32_t heartbeat_interval_ms; /* group.consumer.heartbeat.interval.ms (5000) */
    int32_t max_size;              /* group.consumer.max.size (INT32_MAX) */
    /* group.consumer.assignors: the first is the default. Known: "uniform", "range". */
    int32_t n_assignors;
    const char *assignors[2];
    uint64_t rand_seed; /* member ids for ConsumerGroupHeartbeat v0 */
    /* the classic coordinator's bounds, applied to classic members of consumer groups:
     * group.min.session.timeout.ms (6000), group.max.session.timeout.ms (1800000),
     * group.max.size (INT32_MAX) */
    int32_t classic_session_min_ms;
    int32_t classic_session_max_ms;
    int32_t classic_max_size;
    enum lm_cgroup_migration migration; /* (bidirectional) */
};

/* One topic of the image. */
struct lm_cgroup_topic {
    struct kafka_str name;
    struct kafka_uuid id;
    int32_t partitions;
    bool internal; /* never matched by a regex (Kafka excludes internal topics) */
};

/* The topics as the shell's metadata knows them, read through topic(ctx, i, out). */
struct lm_cgroup_image {
    void *ctx;
    size_t n_topics;
    void (*topic)(void *ctx, size_t i, struct lm_cgroup_topic *out);
};

struct lm_cgroup_tp {
    struct kafka_uuid topic_id;
    int32_t partition;
};

struct lm_cgroup_owned_topic {
    struct kafka_uuid topic_id;
    int32_t n_partitions;
    const int32_t *partitions;
};

struct lm_cgroup_hb_req {
    struct kafka_str group_id;
    struct kafka_str member_id;   /* v1+: chosen by the client; v0: "" on join */
    int32_t member_epoch;         /* 0 join, -1 leave, -2 static leave */
    struct kafka_str instance_id; /* null: dynamic member */
    struct kafka_str rack_id;     /* null when unchanged */
    int32_t rebalance_timeout_ms; /* -1 when unchanged */
    int32_t n_topic_names;        /* -1 (null): unchanged */
    const struct kafka_str *topic_names;
    struct kafka_str topic_regex;     /* null: unchanged (v1+) */
    struct kafka_str server_assignor; /* null: unchanged */
    int32_t n_owned;                  /* -1 (null): unchanged */
    const struct lm_cgroup_owned_topic *owned;
    struct kafka_str client_id;
    struct kafka_str client_host;
    int16_t version;
    /* the group's own consumer.session.timeout.ms and consumer.heartbeat.interval.ms (GROUP
     * config resources), 0: the coordinator's */
    int32_t session_timeout_ms;
    int32_t heartbeat_interval_ms;
};

struct lm_cgroup_hb_resp {
    int16_t error_code;
    const char *error_message; /* static text or NULL */
    struct kafka_str member_id;
    int32_t member_epoch;
    int32_t heartbeat_interval_ms;
    bool has_assignment; /* false: the assignment did not change (null on the wire) */
    int32_t n_assigned;  /* sorted by topic id, then partition */
    const struct lm_cgroup_tp *assigned;
};

struct lm_cgroup_desc_member {
    struct kafka_str member_id;
    struct kafka_str instance_id;
    struct kafka_str rack_id;
    int32_t member_epoch;
    struct kafka_str client_id;
    struct kafka_str client_host;
    int32_t n_topic_names;
    const struct kafka_str *topic_names;
    struct kafka_str topic_regex;
    int32_t n_assigned;
    const struct lm_cgroup_tp *assigned;
    int32_t n_target;
    const struct lm_cgroup_tp *target;
    bool classic; /* a classic-protocol member (KIP-1099 MemberType 0) */
};

struct lm_cgroup_desc {
    int16_t error_code; /* GROUP_ID_NOT_FOUND when no consumer group has the id */
    struct kafka_str group_id;
    const char *state; /* "Empty", "Assigning", "Reconciling", "Stable" */
    int32_t group_epoch;
    int32_t assignment_epoch;
    const char *assignor;
    int32_t n_members;
    const struct lm_cgroup_desc_member *members;
};

/* A listing entry (ListGroups). */
struct lm_cgroup_list_entry {
    struct kafka_str group_id;
    int32_t partition;
    const char *state;
};

/* One record for __consumer_offsets partition `partition`; value.len == -1: tombstone. */
struct lm_cgroup_record {
    int32_t partition;
    struct kafka_bytes key;
    struct kafka_bytes value;
};

struct lm_cgroup_coord;

/* lm_cgroup_config_default fills Kafka's defaults. */
void lm_cgroup_config_default(struct lm_cgroup_config *cfg);
/* lm_cgroup_coord_new makes an empty coordinator (cfg copied). Free with lm_cgroup_coord_free. */
int lm_cgroup_coord_new(const struct lm_cgroup_config *cfg, struct lm_cgroup_coord **out);
void lm_cgroup_coord_free(struct lm_cgroup_coord *c);

/* lm_cgroup_heartbeat runs one ConsumerGroupHeartbeat of a group stored in __consumer_offsets
 * partition `partition`; *out is filled (Kafka errors in it) and valid until the next call.
 * Returns 0, or LM_E_NOMEM (then *out is UNKNOWN_SERVER_ERROR... filled anyway). */
int lm_cgroup_heartbeat(struct lm_cgroup_coord *c, int64_t now_ms, int32_t partition,
                        const struct lm_cgroup_image *img, const struct lm_cgroup_hb_req *req,
                        struct lm_cgroup_hb_resp *out);
/* lm_cgroup_heartbeat_validate checks a heartbeat's fields as Kafka does before anything else
 * (throwIfConsumerGroupHeartbeatRequestIsInvalid): KAFKA_NONE, or the error and *msg. The
 * handler runs it before a joining member may turn a classic group into a consumer group, so a
 * malformed request changes nothing. */
int16_t lm_cgroup_heartbeat_validate(const struct lm_cgroup_coord *c,
                                     const struct lm_cgroup_hb_req *r, const char **msg);
/* lm_cgroup_describe describes one group; *out valid until the next call. */
int lm_cgroup_describe(struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                       struct kafka_str group_id, struct lm_cgroup_desc *out);
/* lm_cgroup_exists tells whether a consumer group has the id; *n_members gets its members. */
bool lm_cgroup_exists(const struct lm_cgroup_coord *c, struct kafka_str group_id,
                      int32_t *n_members);
/* lm_cgroup_subscribed tells whether a member of the group subscribes to topic, by name or
 * regex (OffsetDelete answers GROUP_SUBSCRIBED_TO_TOPIC for those, as Kafka does). */
bool lm_cgroup_subscribed(const struct lm_cgroup_coord *c, struct kafka_str group_id,
                          struct kafka_str topic);
/* lm_cgroup_list calls fn for every group (borrowed entries). */
void lm_cgroup_list(const struct lm_cgroup_coord *c,
                    void (*fn)(void *ctx, const struct lm_cgroup_list_entry *e), void *ctx);
/* lm_cgroup_delete removes an empty group, emitting its tombstones: 0, LM_E_NOT_FOUND,
 * LM_E_EXISTS (has members: Kafka's NON_EMPTY_GROUP) or LM_E_NOMEM (the group stays). */
int lm_cgroup_delete(struct lm_cgroup_coord *c, struct kafka_str group_id);

/* ---- classic members of a consumer group (Kafka 4's mixed groups) ----
 *
 * A consumer group with members takes classic consumers (protocol type "consumer") through
 * JoinGroup, SyncGroup, Heartbeat and LeaveGroup, as Kafka's GroupMetadataManager
 * classicGroup*ToConsumerGroup do. Such a member's subscription (topics, owned partitions,
 * rack) comes from its first JoinGroup protocol's metadata; it is a member like the others
 * for the assignor and the reconciliation, its JoinGroup reconciles it with what it owns, its
 * generation is its member epoch, and SyncGroup gives it its current assignment as the
 * consumer protocol's Assignment bytes. A Heartbeat answers REBALANCE_IN_PROGRESS when it
 * must join again (the group epoch moved past it, it has partitions to give up, or the
 * partitions it waited for are free) and starts a join timeout (its rebalance timeout); a
 * JoinGroup starts a sync timeout (the same); its session is its JoinGroup's session timeout.
 * Its session timeout and protocols are persisted in the member metadata record
 * (ClassicMemberMetadata). The answers are owned by the coordinator until its next call. */

/* lm_cgroup_classic_join: a JoinGroup into the consumer group (which must exist: else
 * UNKNOWN_MEMBER_ID). MEMBER_ID_REQUIRED first for a dynamic member without an id (v4+),
 * INVALID_SESSION_TIMEOUT, GROUP_MAX_SIZE_REACHED, INCONSISTENT_GROUP_PROTOCOL (protocol type
 * not "consumer" or no protocol every classic member supports), FENCED_INSTANCE_ID. The
 * answer's leader is "" and it has no members (the assignment is the server's). */
int lm_cgroup_classic_join(struct lm_cgroup_coord *c, int64_t now_ms,
                           const struct lm_cgroup_image *img, const struct lm_group_join_req *req,
                           struct lm_group_join_resp *out);
/* lm_cgroup_classic_sync: UNKNOWN_MEMBER_ID (not a classic member), FENCED_INSTANCE_ID,
 * ILLEGAL_GENERATION (not its epoch), INCONSISTENT_GROUP_PROTOCOL, REBALANCE_IN_PROGRESS,
 * else its assignment. */
int lm_cgroup_classic_sync(struct lm_cgroup_coord *c, int64_t now_ms,
                           const struct lm_cgroup_image *img, const struct lm_group_sync_req *req,
                           struct lm_group_sync_resp *out);
int lm_cgroup_classic_heartbeat(struct lm_cgroup_coord *c, int64_t now_ms,
                                const struct lm_group_heartbeat_req *req,
                                struct lm_group_heartbeat_resp *out);
/* lm_cgroup_classic_leave removes the classic members named (per-member errors as Kafka:
 * UNKNOWN_MEMBER_ID, FENCED_INSTANCE_ID) and bumps the group epoch once if any left. */
int lm_cgroup_classic_leave(struct lm_cgroup_coord *c, int64_t now_ms,
                            const struct lm_group_leave_req *req, struct lm_group_leave_resp *out);

/* ---- migration (group.consumer.migration.policy, Kafka 4) ----
 *
 * Upgrade: a ConsumerGroupHeartbeat joining (epoch 0) a classic group with members makes it a
 * consumer group when the policy allows it (upgrade or bidirectional), its protocol type is
 * "consumer" and its size fits group.consumer.max.size (lm_cgroup_upgrade_refusal); the shell
 * moves its members here with lm_cgroup_upgrade (lm_group_export / lm_group_convert_out on
 * the classic side), then runs the heartbeat.
 * Downgrade (Kafka 4.1 consumerGroupFenceMembers): when members leave (ConsumerGroupHeartbeat
 * epoch -1, LeaveGroup) or are fenced (session, rebalance, join or sync timeout) and only
 * classic members remain, at least one, the policy allows it (downgrade or bidirectional) and
 * they fit group.max.size, the group's records get their tombstones and it leaves this
 * coordinator (also when a classic static member takes the instance id of the last
 * consumer-protocol member, a static one that left: Kafka 4.1
 * validateOnlineDowngradeWithReplacedMember; then the classic group rebalances only if the
 * subscription changed); the shell takes it with lm_cgroup_downgrade_take
 * after each call and tick and hands it to lm_group_convert_in. */

/* lm_cgroup_upgrade_refusal: NULL when a classic group of n_members and protocol_type may be
 * upgraded, else why not (Kafka 4.1 validateOnlineUpgrade's reason, "online upgrade is
 * disabled", ...). */
const char *lm_cgroup_upgrade_refusal(const struct lm_cgroup_coord *c, int32_t n_members,
                                      struct kafka_str protocol_type);
/* lm_cgroup_upgrade makes the consumer group of classic group ex in `partition` (Kafka
 * ConsumerGroup.fromClassicGroup): group and target epochs at its generation, each member a
 * classic member, stable at that epoch, holding the partitions of its last assignment (topics
 * mapped through img); emits the group's records. LM_E_EXISTS (a consumer group has the id),
 * LM_E_INVALID (a subscription or assignment that does not parse: Kafka refuses the upgrade),
 * LM_E_UNSUPPORTED (an assignment carries user data, a custom assignor's, which Kafka 4.1 will
 * not drop), LM_E_NOMEM; nothing changes then. */
int lm_cgroup_upgrade(struct lm_cgroup_coord *c, int64_t now_ms, int32_t partition,
                      const struct lm_cgroup_image *img, const struct lm_group_export *ex);
/* lm_cgroup_downgrade_take hands out the next group waiting to become a classic group (false:
 * none): its generation is the group epoch, each member its target assignment as
 * ConsumerProtocol bytes (topics named through img). *out is valid until the next call. */
bool lm_cgroup_downgrade_take(struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                              struct lm_group_export *out);

/* One partition of an OffsetCommit, by topic name. */
struct lm_cgroup_commit_tp {
    struct kafka_str topic;
    int32_t partition;
};

/* What the member checks of an OffsetCommit or TxnOffsetCommit look at. */
struct lm_cgroup_commit {
    struct kafka_str group_id;
    struct kafka_str member_id;
    int32_t member_epoch;
    bool transactional;
    int16_t api_version;
    int32_t n_partitions;
    const struct lm_cgroup_commit_tp *partitions;
};

/* The member checks of OffsetCommit (Kafka ConsumerGroup.validateOffsetCommit) and
 * OffsetFetch (validateOffsetFetch): 0 (Kafka NONE) when the call may go on, else the Kafka
 * error. A group that does not exist passes (offsets of a plain consumer). member_epoch < 0
 * with an empty group (commit) or no member id (fetch) passes. api_version < 9 of a commit by
 * a consumer-protocol member is UNSUPPORTED_VERSION. A commit passes with the member's epoch,
 * or (KIP-1251 assignment epochs) with an older one when every partition in it was handed to
 * the member at that epoch or before and is still held by it; otherwise STALE_MEMBER_EPOCH
 * (the caller answers a TxnOffsetCommit ILLEGAL_GENERATION, as Kafka does). The image maps
 * the commit's topic names to ids. */
int16_t lm_cgroup_check_commit(const struct lm_cgroup_coord *c, const struct lm_cgroup_image *img,
                               const struct lm_cgroup_commit *commit);
int16_t lm_cgroup_check_fetch(const struct lm_cgroup_coord *c, struct kafka_str group_id,
                              struct kafka_str member_id, int32_t member_epoch);

/* lm_cgroup_drop_empty removes every group without members for which keep(ctx, id) is false
 * (the shell keeps those with committed offsets: Kafka deletes an empty consumer group once it
 * has none). Returns how many were removed. */
size_t lm_cgroup_drop_empty(struct lm_cgroup_coord *c,
                            bool (*keep)(void *ctx, struct kafka_str group_id), void *ctx);
/* lm_cgroup_tick fences members whose session or rebalance timeout passed. Returns 0 or
 * LM_E_NOMEM (a record could not be made). */
int lm_cgroup_tick(struct lm_cgroup_coord *c, int64_t now_ms);
/* lm_cgroup_next_deadline_ms returns the earliest timer, INT64_MAX when none. */
int64_t lm_cgroup_next_deadline_ms(const struct lm_cgroup_coord *c);
/* lm_cgroup_records points *out at the records emitted since the last advance (owned by the
 * coordinator, in order) and returns how many. */
size_t lm_cgroup_records(const struct lm_cgroup_coord *c, const struct lm_cgroup_record **out);
/* lm_cgroup_records_advance frees the records handed out. */
void lm_cgroup_records_advance(struct lm_cgroup_coord *c);
/* lm_cgroup_replay applies one record of partition `partition` of n_partitions (value NULL
 * or len -1: tombstone) during a load; a record that does not decode, or names a group of
 * another partition, is skipped and counted in *n_bad (may be NULL). Returns 0, or
 * LM_E_NOMEM. Call lm_cgroup_unload(partition) before the first. */
int lm_cgroup_replay(struct lm_cgroup_coord *c, int32_t partition, int32_t n_partitions,
                     struct kafka_bytes key, struct kafka_bytes value, int64_t *n_bad);
/* lm_cgroup_load_end finishes a partition's load: incomplete groups and members are dropped,
 * the loaded state is made consistent, session timers start at now_ms with the group's own
 * session timeout (session_timeout_ms(ctx, group id), may be NULL; 0: the coordinator's). */
int lm_cgroup_load_end(struct lm_cgroup_coord *c, int32_t partition, int64_t now_ms,
                       int32_t (*session_timeout_ms)(void *ctx, struct kafka_str group_id),
                       void *ctx);
/* lm_cgroup_unload drops the groups of a __consumer_offsets partition. */
void lm_cgroup_unload(struct lm_cgroup_coord *c, int32_t partition);
/* lm_cgroup_n_groups returns how many groups are held. */
size_t lm_cgroup_n_groups(const struct lm_cgroup_coord *c);

/* ---- assignors (cgroup_assign.c), pure functions ---- */

/* One member as an assignor sees it: its subscribed topics (indexes into the topic list,
 * sorted) and the partitions the current target gives it (for stickiness). */
struct lm_cgroup_amember {
    struct kafka_str member_id;
    int32_t n_topics;
    const int32_t *topics;
    int32_t n_current;
    const struct lm_cgroup_tp *current;
    /* out: the new target, malloc'ed (sorted), owned by the caller */
    int32_t n_target;
    struct lm_cgroup_tp *target;
};

struct lm_cgroup_atopic {
    struct kafka_uuid id;
    int32_t partitions;
};

/* lm_cgroup_assign runs assignor "uniform" or "range" over members (sorted by member id).
 * Every partition of a topic some member subscribes to goes to exactly one subscriber.
 * uniform: each member gets a count that differs by at most one from any other member that
 * could take the same partitions, keeping current partitions where that allows. range: per
 * topic, the subscribers in member id order get consecutive ranges. Returns 0, LM_E_NOMEM
 * (targets freed) or LM_E_INVALID (unknown assignor). */
int lm_cgroup_assign(const char *assignor, int32_t n_topics, const struct lm_cgroup_atopic *topics,
                     int32_t n_members, struct lm_cgroup_amember *members);
/* lm_cgroup_tp_cmp orders partitions by topic id, then partition. */
int lm_cgroup_tp_cmp(const struct lm_cgroup_tp *a, const struct lm_cgroup_tp *b);

#endif
