/* Classic group coordinator as a pure state machine (DESIGN.md §7).
 *
 * Inputs: one call per request (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit,
 * OffsetFetch, DescribeGroups, ListGroups, DeleteGroups, OffsetDelete), each with the current
 * time now_ms and an opaque token the shell uses to find the request again, plus
 * lm_group_coord_tick(now_ms) for timeouts, plus the load calls that rebuild state from
 * __consumer_offsets. No sockets, threads, files or clocks here; member ids come from a PRNG
 * seeded by the config.
 *
 * Output: lm_group_coord_ready() hands out (1) records to append to __consumer_offsets (Kafka's
 * own formats, group_records.h) and (2) responses, each tagged with the token of its request.
 * PERSIST BEFORE SEND: append all records of a ready (in order; records of one partition in one
 * batch where possible) before sending any of its responses, then call lm_group_coord_advance().
 * If the append fails, answer every response of that ready with COORDINATOR_NOT_AVAILABLE (the
 * error Kafka maps a failed group-metadata append to) and reload the partition
 * (lm_group_coord_unload + load from the log), since memory is ahead of the log.
 *
 * JoinGroup and SyncGroup responses may be DELAYED: a call can produce no response now and
 * the response appears in a later ready (after another member's request or a tick). Every
 * request produces exactly one response eventually, unless the coordinator is freed or the
 * partition unloaded (then lm_group_coord_unload answers the parked ones with
 * NOT_COORDINATOR). A response whose connection is gone is simply dropped by the shell.
 *
 * Semantics follow Kafka's classic GroupCoordinator (kafka.coordinator.group, 2.8-3.x) and the
 * KIPs named at each function: KIP-394 (member id required), KIP-345 (static membership),
 * KIP-134 (initial rebalance delay), KIP-211 (offset retention), KIP-709 (batched fetch).
 *
 * Strings in requests are borrowed for the call (kafka_str, len -1 = null). Everything in a
 * ready is owned by the coordinator and valid until lm_group_coord_advance(). */
#ifndef LAMINAR_BROKER_GROUP_GROUP_H
#define LAMINAR_BROKER_GROUP_GROUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/kafka_rt.h"

#define LM_GROUP_PARTITIONS_MAX 1000 /* offsets.topic.num.partitions upper bound */

enum lm_group_state {
    LM_GROUP_EMPTY = 0,
    LM_GROUP_PREPARING_REBALANCE,
    LM_GROUP_COMPLETING_REBALANCE,
    LM_GROUP_STABLE,
    LM_GROUP_DEAD,
};

struct lm_group_config {
    int32_t session_timeout_min_ms;              /* group.min.session.timeout.ms (6000) */
    int32_t session_timeout_max_ms;              /* group.max.session.timeout.ms (1800000) */
    int32_t initial_rebalance_delay_ms;          /* group.initial.rebalance.delay.ms (3000) */
    int32_t max_size;                            /* group.max.size (INT32_MAX) */
    int32_t new_member_join_timeout_ms;          /* Kafka's NewMemberJoinTimeoutMs (300000) */
    int64_t offsets_retention_ms;                /* offsets.retention.minutes (7 days) */
    int64_t offsets_retention_check_interval_ms; /* (600000) */
    int32_t offset_metadata_max_bytes;           /* offset.metadata.max.bytes (4096) */
    int32_t offsets_topic_partitions;            /* offsets.topic.num.partitions (50) */
    uint64_t rand_seed;                          /* member id generation */
};

/* ---- requests (all strings borrowed) ---- */

struct lm_group_protocol {
    struct kafka_str name;
    struct kafka_bytes metadata;
};

struct lm_group_join_req {
    struct kafka_str group_id;
    struct kafka_str member_id;         /* "" on the first join */
    struct kafka_str group_instance_id; /* null for dynamic members (v5+) */
    struct kafka_str protocol_type;
    struct kafka_str client_id;   /* request header client id */
    struct kafka_str client_host; /* "/127.0.0.1" style, as Kafka shows it */
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms; /* v0: pass -1 (= session timeout) */
    bool require_known_member_id; /* true for JoinGroup v4+ (KIP-394) */
    int32_t n_protocols;
    const struct lm_group_protocol *protocols;
};

struct lm_group_assignment {
    struct kafka_str member_id;
    struct kafka_bytes assignment;
};

struct lm_group_sync_req {
    struct kafka_str group_id;
    int32_t generation_id;
    struct kafka_str member_id;
    struct kafka_str group_instance_id; /* null when absent */
    struct kafka_str protocol_type;     /* null when absent (v0-4) */
    struct kafka_str protocol_name;     /* null when absent (v0-4) */
    int32_t n_assignments;
    const struct lm_group_assignment *assignments;
};

struct lm_group_heartbeat_req {
    struct kafka_str group_id;
    int32_t generation_id;
    struct kafka_str member_id;
    struct kafka_str group_instance_id;
};

struct lm_group_leave_member {
    struct kafka_str member_id;         /* "" allowed with an instance id (admin removal) */
    struct kafka_str group_instance_id; /* null when absent */
};

struct lm_group_leave_req {
    struct kafka_str group_id;
    int32_t n_members; /* v0-2: one member made from the top-level member id */
    const struct lm_group_leave_member *members;
};

struct lm_group_commit_part {
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;      /* -1 when absent */
    struct kafka_str metadata; /* null is stored as "" (Kafka does the same) */
};

struct lm_group_commit_topic {
    struct kafka_str name;
    int32_t n_partitions;
    const struct lm_group_commit_part *partitions;
};

struct lm_group_commit_req {
    struct kafka_str group_id;
    int32_t generation_id;      /* -1: simple (non-group) commit */
    struct kafka_str member_id; /* "" for simple commits */
    struct kafka_str group_instance_id;
    int64_t retention_ms; /* v2-4 retention_time_ms; -1 = broker default */
    int32_t n_topics;
    const struct lm_group_commit_topic *topics;
};

struct lm_group_fetch_topic {
    struct kafka_str name;
    int32_t n_partitions;
    const int32_t *partitions;
};

struct lm_group_fetch_group {
    struct kafka_str group_id;
    int32_t n_topics; /* -1: every partition the group has an offset for */
    const struct lm_group_fetch_topic *topics;
};

struct lm_group_fetch_req {
    int32_t n_groups; /* v0-7: one group */
    const struct lm_group_fetch_group *groups;
    /* KIP-447: a partition with transactional offsets pending is UNSTABLE_OFFSET_COMMIT */
    bool require_stable;
};

/* TxnOffsetCommit (KIP-98, KIP-447): commit.retention_ms is unused (-1). */
struct lm_group_txn_commit_req {
    struct lm_group_commit_req commit;
    int64_t producer_id;
    int16_t producer_epoch;
};

struct lm_group_list_req {
    int32_t n_states;               /* 0: any state (v4+ states filter) */
    const struct kafka_str *states; /* "Stable", ... compared case-insensitively */
    int32_t n_types;                /* 0: any type (v5+ types filter) */
    const struct kafka_str *types;  /* "classic", ... compared case-insensitively */
};

struct lm_group_offset_delete_req {
    struct kafka_str group_id;
    int32_t n_topics;
    const struct lm_group_fetch_topic *topics;
};

/* ---- responses (owned by the coordinator until lm_group_coord_advance) ---- */

struct lm_group_join_member {
    struct kafka_str member_id;
    struct kafka_str group_instance_id;
    struct kafka_bytes metadata; /* the member's metadata for the chosen protocol */
};

struct lm_group_join_resp {
    int16_t error_code;
    int32_t generation_id;          /* -1 on error */
    struct kafka_str protocol_type; /* null on error */
    struct kafka_str protocol_name; /* null on error (v7+ nullable; earlier send "") */
    struct kafka_str leader;        /* "" on error */
    struct kafka_str member_id;     /* the caller's member id (new one: KIP-394) */
    bool skip_assignment;           /* always false: no broker-side assignors here */
    int32_t n_members;              /* the leader only */
    struct lm_group_join_member *members;
};

struct lm_group_sync_resp {
    int16_t error_code;
    struct kafka_str protocol_type; /* null on error */
    struct kafka_str protocol_name; /* null on error */
    struct kafka_bytes assignment;  /* empty on error */
};

struct lm_group_heartbeat_resp {
    int16_t error_code;
};

struct lm_group_leave_member_resp {
    struct kafka_str member_id;
    struct kafka_str group_instance_id;
    int16_t error_code;
};

/* For LeaveGroup v0-2 the wire error is members[0].error_code when error_code is 0. */
struct lm_group_leave_resp {
    int16_t error_code;
    int32_t n_members;
    struct lm_group_leave_member_resp *members;
};

struct lm_group_part_error {
    int32_t partition;
    int16_t error_code;
};

struct lm_group_topic_errors {
    struct kafka_str name;
    int32_t n_partitions;
    struct lm_group_part_error *partitions;
};

struct lm_group_commit_resp {
    int32_t n_topics; /* same shape and order as the request */
    struct lm_group_topic_errors *topics;
};

struct lm_group_fetch_part {
    int32_t partition;
    int64_t offset;       /* -1: no committed offset */
    int32_t leader_epoch; /* -1 when unknown */
    struct kafka_str metadata;
    int16_t error_code;
};

struct lm_group_fetch_topic_resp {
    struct kafka_str name;
    int32_t n_partitions;
    struct lm_group_fetch_part *partitions;
};

struct lm_group_fetch_group_resp {
    struct kafka_str group_id;
    int16_t error_code; /* v0-7: the top-level error (v2+) */
    int32_t n_topics;
    struct lm_group_fetch_topic_resp *topics;
};

struct lm_group_fetch_resp {
    int32_t n_groups;
    struct lm_group_fetch_group_resp *groups;
};

struct lm_group_describe_member {
    struct kafka_str member_id;
    struct kafka_str group_instance_id;
    struct kafka_str client_id;
    struct kafka_str client_host;
    struct kafka_bytes metadata;   /* empty unless Stable */
    struct kafka_bytes assignment; /* empty unless Stable */
};

struct lm_group_describe_group {
    int16_t error_code;
    bool found; /* false: Kafka < 4 answers NONE + "Dead"; v6+ GROUP_ID_NOT_FOUND */
    struct kafka_str group_id;
    struct kafka_str state;         /* "Empty", "PreparingRebalance", ... "Dead" */
    struct kafka_str protocol_type; /* "" when none */
    struct kafka_str protocol_data; /* the protocol name when Stable, else "" */
    int32_t n_members;
    struct lm_group_describe_member *members;
};

struct lm_group_describe_resp {
    int32_t n_groups;
    struct lm_group_describe_group *groups;
};

struct lm_group_list_entry {
    struct kafka_str group_id;
    struct kafka_str protocol_type;
    struct kafka_str state;
    struct kafka_str type; /* "classic" */
};

struct lm_group_list_resp {
    int16_t error_code;
    int32_t n_groups;
    struct lm_group_list_entry *groups;
};

struct lm_group_delete_result {
    struct kafka_str group_id;
    int16_t error_code;
};

struct lm_group_delete_resp {
    int32_t n_results;
    struct lm_group_delete_result *results;
};

struct lm_group_offset_delete_resp {
    int16_t error_code;
    int32_t n_topics;
    struct lm_group_topic_errors *topics;
};

enum lm_group_resp_kind {
    LM_GROUP_RESP_JOIN = 1,
    LM_GROUP_RESP_SYNC,
    LM_GROUP_RESP_HEARTBEAT,
    LM_GROUP_RESP_LEAVE,
    LM_GROUP_RESP_COMMIT,
    LM_GROUP_RESP_FETCH,
    LM_GROUP_RESP_DESCRIBE,
    LM_GROUP_RESP_LIST,
    LM_GROUP_RESP_DELETE,
    LM_GROUP_RESP_OFFSET_DELETE,
};

struct lm_group_resp {
    uint64_t token;
    uint8_t kind; /* enum lm_group_resp_kind */
    union {
        struct lm_group_join_resp join;
        struct lm_group_sync_resp sync;
        struct lm_group_heartbeat_resp heartbeat;
        struct lm_group_leave_resp leave;
        struct lm_group_commit_resp commit;
        struct lm_group_fetch_resp fetch;
        struct lm_group_describe_resp describe;
        struct lm_group_list_resp list;
        struct lm_group_delete_resp del;
        struct lm_group_offset_delete_resp offset_delete;
    } u;
};

/* One record for __consumer_offsets. value.len == -1: tombstone. producer_id >= 0: a
 * transactional offset commit, appended in a transactional batch of that producer id and epoch
 * (records of one producer and partition in one batch). */
struct lm_group_record {
    int32_t partition;
    struct kafka_bytes key;
    struct kafka_bytes value;
    int64_t producer_id;
    int16_t producer_epoch;
};

struct lm_group_ready {
    size_t n_records;
    const struct lm_group_record *records;
    size_t n_resps;
    const struct lm_group_resp *resps;
};

/* A read-only view of a group for tests and metrics (borrowed, valid until the next call). */
struct lm_group_info {
    enum lm_group_state state;
    int32_t generation_id;
    int32_t n_members;
    int32_t n_pending_members; /* KIP-394 ids handed out, not yet joined */
    int32_t n_awaiting_join;
    int32_t n_awaiting_sync;
    int32_t n_offsets;
    struct kafka_str protocol_type;
    struct kafka_str protocol_name;
    struct kafka_str leader;
    int64_t state_ts_ms;
};

struct lm_group_coord;

/* lm_group_config_default fills Kafka's defaults. */
void lm_group_config_default(struct lm_group_config *cfg);
/* lm_group_coord_new makes a coordinator that owns every partition, nothing loading
 * (single node, empty log). cfg is copied. Free with lm_group_coord_free. */
int lm_group_coord_new(const struct lm_group_config *cfg, struct lm_group_coord **out);
/* lm_group_coord_free releases everything, including parked requests (never answered). */
void lm_group_coord_free(struct lm_group_coord *c);

/* lm_group_coord_status tells whether this coordinator serves a group id now: NONE, or
 * INVALID_GROUP_ID, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS (Kafka's checks before a
 * group call). */
int16_t lm_group_coord_status(const struct lm_group_coord *c, struct kafka_str group_id);

/* lm_group_partition_of returns the __consumer_offsets partition of a group id. */
int32_t lm_group_partition_of(const struct lm_group_coord *c, struct kafka_str group_id);

/* Requests. Each returns 0 after queueing its response (now or later); a negative LM_E_* only
 * for a broken invariant of the input (e.g. LM_E_NOMEM), in which case no response was
 * queued. Kafka errors are in the responses. */
int lm_group_join(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_join_req *req);
int lm_group_sync(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_sync_req *req);
int lm_group_heartbeat(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                       const struct lm_group_heartbeat_req *req);
int lm_group_leave(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_group_leave_req *req);
int lm_group_commit(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                    const struct lm_group_commit_req *req);
int lm_group_fetch(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                   const struct lm_group_fetch_req *req);
/* TxnOffsetCommit (Kafka GroupCoordinator.handleTxnCommitOffsets): the offsets are written as
 * the producer's transactional records and kept pending for it, invisible to OffsetFetch,
 * until lm_group_txn_complete. Answered with a LM_GROUP_RESP_COMMIT response. */
int lm_group_txn_commit(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                        const struct lm_group_txn_commit_req *req);
/* A transaction marker of producer_id is in __consumer_offsets partition `partition`
 * (committed, or replayed by a load): a commit makes the producer's pending offsets of the
 * partition's groups the committed ones, an abort drops them (Kafka
 * GroupMetadataManager.handleTxnCompletion). No records. */
int lm_group_txn_complete(struct lm_group_coord *c, int32_t partition, int64_t producer_id,
                          bool commit);
int lm_group_describe(struct lm_group_coord *c, int64_t now_ms, uint64_t token, int32_t n_groups,
                      const struct kafka_str *group_ids);
int lm_group_list(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                  const struct lm_group_list_req *req);
int lm_group_delete(struct lm_group_coord *c, int64_t now_ms, uint64_t token, int32_t n_groups,
                    const struct kafka_str *group_ids);
int lm_group_offset_delete(struct lm_group_coord *c, int64_t now_ms, uint64_t token,
                           const struct lm_group_offset_delete_req *req);

/* lm_group_coord_tick runs every timer due at now_ms (session expiry, join/rebalance timeout,
 * initial delay, pending sync, offset retention). Call it at lm_group_coord_next_deadline_ms
 * or more often; time must not go backwards. */
int lm_group_coord_tick(struct lm_group_coord *c, int64_t now_ms);
/* lm_group_coord_next_deadline_ms returns the earliest timer, or INT64_MAX when none. */
int64_t lm_group_coord_next_deadline_ms(const struct lm_group_coord *c);

/* lm_group_coord_ready tells whether records or responses are waiting, and points rd at them. */
bool lm_group_coord_ready(struct lm_group_coord *c, struct lm_group_ready *rd);
/* lm_group_coord_advance frees what the last ready handed out. */
void lm_group_coord_advance(struct lm_group_coord *c);

/* Loading from __consumer_offsets (Kafka's GroupMetadataManager.loadGroupsAndOffsets).
 * load_begin marks the partition owned and loading (its groups answer
 * COORDINATOR_LOAD_IN_PROGRESS) and drops what it held; replay applies one record (value NULL
 * or len -1: tombstone) in log order; load_end rebuilds groups and starts member session
 * timers at now_ms. A record that does not decode is skipped and counted in *n_bad (may be
 * NULL), as Kafka logs and skips unknown record versions. */
int lm_group_coord_load_begin(struct lm_group_coord *c, int32_t partition);
/* lm_group_coord_replay_txn replays a record of a transactional batch of producer_id: an offset
 * commit pending for that producer until its marker (lm_group_coord_replay_marker). */
int lm_group_coord_replay_txn(struct lm_group_coord *c, int32_t partition, int64_t producer_id,
                              struct kafka_bytes key, struct kafka_bytes value, int64_t *n_bad);
int lm_group_coord_replay_marker(struct lm_group_coord *c, int32_t partition, int64_t producer_id,
                                 bool commit);
int lm_group_coord_replay(struct lm_group_coord *c, int32_t partition, struct kafka_bytes key,
                          struct kafka_bytes value, int64_t *n_bad);
int lm_group_coord_load_end(struct lm_group_coord *c, int32_t partition, int64_t now_ms);
/* lm_group_coord_unload drops a partition's groups (leadership moved): parked requests are
 * answered with NOT_COORDINATOR; later requests for its groups get NOT_COORDINATOR. */
int lm_group_coord_unload(struct lm_group_coord *c, int32_t partition);

/* lm_group_coord_info fills a read-only view of one group; LM_E_NOT_FOUND if absent. */
int lm_group_coord_info(const struct lm_group_coord *c, struct kafka_str group_id,
                        struct lm_group_info *out);
/* lm_group_coord_n_groups returns how many groups are held. */
size_t lm_group_coord_n_groups(const struct lm_group_coord *c);
/* lm_group_state_name returns Kafka's name of a state ("PreparingRebalance"). */
const char *lm_group_state_name(enum lm_group_state s);

/* ---- migration to and from consumer groups (Kafka 4, group.consumer.migration.policy) ----
 *
 * A classic group whose protocol type is "consumer" becomes a consumer group (lm_cgroup_upgrade)
 * when a consumer-protocol member joins it; a consumer group whose members left are all classic
 * becomes a classic group again (lm_group_convert_in). The shell moves the members between the
 * two coordinators with these. */

/* A classic member as it moves between coordinators (borrowed). */
struct lm_group_export_member {
    struct kafka_str member_id;
    struct kafka_str instance_id; /* null: dynamic */
    struct kafka_str client_id;
    struct kafka_str client_host;
    int32_t session_timeout_ms;
    int32_t rebalance_timeout_ms;
    int32_t n_protocols;
    const struct lm_group_protocol *protocols;
    struct kafka_bytes subscription; /* its metadata of the group's protocol */
    struct kafka_bytes assignment;   /* its assignment (ConsumerProtocol bytes; empty: none) */
};

struct lm_group_export {
    struct kafka_str group_id;
    int32_t generation;
    int32_t n_members;
    const struct lm_group_export_member *members;
    bool rebalance; /* lm_group_convert_in: prepare a rebalance at once */
};

/* lm_group_export shows a classic group with members of protocol type "consumer" as out
 * (borrowed from the group, valid until the next call); LM_E_NOT_FOUND for any other id. */
int lm_group_export(struct lm_group_coord *c, struct kafka_str group_id,
                    struct lm_group_export *out);
/* lm_group_convert_out takes the members out of a classic group that became a consumer group
 * (Kafka convertToConsumerGroup): their parked JoinGroup and SyncGroup calls are answered
 * REBALANCE_IN_PROGRESS, the group metadata gets its tombstone, and the group stays as an
 * offsets-only group (its committed offsets are the consumer group's). */
int lm_group_convert_out(struct lm_group_coord *c, int64_t now_ms, struct kafka_str group_id);
/* lm_group_convert_in makes the classic group of a downgraded consumer group (Kafka
 * ClassicGroup.fromConsumerGroup): Stable at in->generation with its members and their
 * assignments, its group metadata record written, then (in->rebalance) a rebalance prepared so
 * every member joins again. LM_E_EXISTS when a classic group of that id has members. */
int lm_group_convert_in(struct lm_group_coord *c, int64_t now_ms, const struct lm_group_export *in);

/* lm_group_consumer_subscription_topics parses the topics of a consumer protocol subscription
 * (ConsumerProtocolSubscription, every version: i16 version, array of i16 strings, ...).
 * Calls fn for each topic (borrowed). LM_E_TRUNCATED/LM_E_INVALID on bad bytes. */
int lm_group_consumer_subscription_topics(struct kafka_bytes metadata,
                                          void (*fn)(void *ctx, struct kafka_str topic), void *ctx);

#endif
