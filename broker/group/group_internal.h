/* Private to the group coordinator's files (group.c, group_membership.c, group_offsets.c,
 * group_load.c): its state and the helpers they share. */
#ifndef LAMINAR_BROKER_GROUP_GROUP_INTERNAL_H
#define LAMINAR_BROKER_GROUP_GROUP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/group.h"
#include "broker/group/group_records.h"

#define NO_DEADLINE      INT64_MAX
#define TIMER_PASSES_MAX 8 /* bound on timer cascades within one tick */

struct mproto {
    struct kafka_str name;
    struct kafka_bytes metadata;
};

struct member {
    struct kafka_str id;
    struct kafka_str instance_id; /* null: dynamic member */
    struct kafka_str client_id;
    struct kafka_str client_host;
    struct kafka_str protocol_type;
    int32_t session_ms;
    int32_t rebalance_ms;
    int32_t n_protocols;
    struct mproto *protocols;
    struct kafka_bytes assignment;
    bool awaiting_join;
    uint64_t join_token;
    bool awaiting_sync;
    uint64_t sync_token;
    bool is_new;       /* joined during this rebalance (Kafka MemberMetadata.isNew) */
    bool pending_sync; /* got its JoinGroup response, has not synced yet (KAFKA-13343?) */
    int64_t hb_deadline_ms;
};

struct pending_member {
    struct kafka_str id;
    int64_t deadline_ms;
};

struct offset_entry {
    struct kafka_str topic;
    int32_t partition;
    int64_t offset;
    int32_t leader_epoch;
    struct kafka_str metadata;
    int64_t commit_ts_ms;
    int64_t expire_ts_ms; /* -1: none (KIP-211 semantics) */
};

/* An offset a transaction committed, pending until its producer's marker (group_txn.c). */
struct txn_offset {
    int64_t producer_id;
    struct offset_entry e;
};

struct group {
    struct group *next; /* hash chain */
    uint32_t hash;
    int32_t partition;
    struct kafka_str id;
    enum lm_group_state state;
    int64_t state_ts_ms;
    int32_t generation;
    struct kafka_str protocol_type; /* null: none (simple/offsets-only group) */
    struct kafka_str protocol_name; /* null: none */
    struct kafka_str leader;        /* null: none */
    int32_t n_members, cap_members;
    struct member **members; /* join order */
    int32_t n_pending, cap_pending;
    struct pending_member *pending;
    int64_t join_deadline_ms;
    bool join_initial; /* InitialDelayedJoin (KIP-134) rather than DelayedJoin */
    int32_t initial_remaining_ms;
    bool new_member_added;
    int64_t sync_deadline_ms;
    bool topics_known; /* subscribed topics parsed (Kafka subscribedTopics) */
    int32_t n_topics;
    struct kafka_str *topics;
    int32_t n_offsets, cap_offsets;
    struct offset_entry *offsets; /* sorted by (topic, partition) */
    bool has_metadata;            /* loaded: a group metadata record was seen */
    int32_t n_txn, cap_txn;
    struct txn_offset *txn; /* pending transactional offsets, at most one per producer and
                             * (topic, partition) */
};

struct lm_group_coord {
    struct lm_group_config cfg;
    uint64_t rng;
    size_t n_groups;
    size_t n_buckets;
    struct group **buckets;
    uint8_t owned[LM_GROUP_PARTITIONS_MAX];
    uint8_t loading[LM_GROUP_PARTITIONS_MAX];
    int64_t next_expiry_check_ms;
    /* output */
    struct kafka_arena arena;
    size_t n_records, cap_records;
    struct lm_group_record *records;
    size_t n_resps, cap_resps;
    struct lm_group_resp *resps;
};

/* Defined in one of the files, used by another. */
void *gr_xcalloc(size_t n, size_t size);
void *gr_xrealloc(void *p, size_t size);
struct kafka_str gr_sdup(struct kafka_str s);
struct kafka_bytes gr_bdup(struct kafka_bytes b);
void gr_sfree(struct kafka_str *s);
void gr_bfree(struct kafka_bytes *b);
void gr_sset(struct kafka_str *dst, struct kafka_str src);
struct kafka_str gr_cstr(const char *s);
bool gr_str_eq(struct kafka_str a, struct kafka_str b);
bool gr_str_ieq(struct kafka_str a, const char *b);
void *gr_oalloc(struct lm_group_coord *c, size_t n);
struct kafka_str gr_ostr(struct lm_group_coord *c, struct kafka_str s);
struct kafka_bytes gr_obytes(struct lm_group_coord *c, struct kafka_bytes b);
struct lm_group_resp *gr_push_resp(struct lm_group_coord *c, uint64_t token, uint8_t kind);
struct group *gr_group_find(const struct lm_group_coord *c, struct kafka_str id);
void gr_set_state(struct group *g, enum lm_group_state s, int64_t now_ms);
struct group *gr_group_create(struct lm_group_coord *c, struct kafka_str id, int64_t now_ms);
void gr_member_free(struct member *m);
void gr_group_destroy(struct lm_group_coord *c, struct group *g);
struct member *gr_member_find(const struct group *g, struct kafka_str id);
struct member *gr_static_member_find(const struct group *g, struct kafka_str instance_id);
int32_t gr_pending_find(const struct group *g, struct kafka_str id);
void gr_pending_remove_at(struct group *g, int32_t i);
bool gr_static_member_fenced(const struct group *g, struct kafka_str instance_id,
                             struct kafka_str member_id);
bool gr_is_leader(const struct group *g, struct kafka_str member_id);
int32_t gr_n_awaiting_join(const struct group *g);
int32_t gr_rebalance_timeout_ms(const struct group *g);
const struct mproto *gr_member_protocol(const struct member *m, struct kafka_str name);
bool gr_supports_protocols(const struct group *g, struct kafka_str type, int32_t n,
                           const struct lm_group_protocol *protos);
struct kafka_str gr_select_protocol(const struct group *g);
void gr_member_set_protocols(struct member *m, int32_t n, const struct lm_group_protocol *p);
bool gr_member_matches(const struct member *m, int32_t n, const struct lm_group_protocol *p);
void gr_member_remove_raw(struct group *g, struct member *m);
void gr_join_error(struct lm_group_coord *c, uint64_t token, int16_t err,
                   struct kafka_str member_id);
void gr_join_success(struct lm_group_coord *c, struct group *g, uint64_t token,
                     const struct member *m, struct kafka_str leader, bool with_members);
void gr_sync_reply(struct lm_group_coord *c, struct group *g, uint64_t token, int16_t err,
                   struct kafka_bytes assignment);
void gr_fail_parked_join(struct lm_group_coord *c, struct member *m, int16_t err,
                         struct kafka_str member_id);
void gr_fail_parked_sync(struct lm_group_coord *c, struct member *m, int16_t err);
void gr_emit_group_record(struct lm_group_coord *c, struct group *g);
void gr_emit_group_tombstone(struct lm_group_coord *c, struct group *g);
void gr_emit_offset_record(struct lm_group_coord *c, struct group *g, const struct offset_entry *e,
                           bool tombstone);
int32_t gr_offset_search(const struct group *g, struct kafka_str topic, int32_t partition);
struct offset_entry *gr_offset_put(struct group *g, struct kafka_str topic, int32_t partition);
void gr_offset_remove_at(struct group *g, int32_t i);
void gr_offset_entry_free(struct offset_entry *e);
/* group_txn.c */
void gr_emit_txn_offset_record(struct lm_group_coord *c, struct group *g,
                               const struct offset_entry *e, int64_t producer_id,
                               int16_t producer_epoch);
void gr_txn_free(struct group *g);
bool gr_txn_pending(const struct group *g, struct kafka_str topic, int32_t partition);
/* Decodes an offset commit record's value into e's fields (not topic/partition); false if bad. */
bool gr_offset_value_load(struct offset_entry *e, struct kafka_bytes value);
void gr_compute_subscribed_topics(struct group *g);
bool gr_subscribed_to(const struct group *g, struct kafka_str topic);
bool gr_elect_joined_leader(struct group *g);
void gr_group_timers(struct lm_group_coord *c, struct group *g, int64_t now_ms);
void gr_prepare_rebalance(struct lm_group_coord *c, struct group *g, int64_t now_ms);
int16_t gr_group_status(const struct lm_group_coord *c, struct kafka_str group_id,
                        bool nonempty_id);
struct kafka_str gr_new_member_id(struct lm_group_coord *c, struct kafka_str prefix);
void gr_expire_offsets(struct lm_group_coord *c, struct group *g, int64_t now_ms);

#endif
