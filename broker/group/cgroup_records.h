/* __consumer_offsets records of consumer-protocol groups (KIP-848) in Kafka 4.1's formats
 * (group-coordinator/src/main/resources/common/message/ConsumerGroup*.json), so a laminar log
 * and Kafka's carry the same keys and compaction keeps the latest record per key.
 *
 * A key is an i16 record type, then its fields in the classic (non-flexible) encoding:
 *   3  ConsumerGroupMetadataKey                 group
 *   4  ConsumerGroupPartitionMetadataKey        group (read, and tombstoned at deletion; 4.1
 *                                               no longer writes its value)
 *   5  ConsumerGroupMemberMetadataKey           group, member id
 *   6  ConsumerGroupTargetAssignmentMetadataKey group
 *   7  ConsumerGroupTargetAssignmentMemberKey   group, member id
 *   8  ConsumerGroupCurrentMemberAssignmentKey  group, member id
 *   16 ConsumerGroupRegularExpressionKey        group, regular expression (read and skipped)
 * A value is an i16 version (0 for all of them) and the flexible encoding (compact strings
 * and arrays, tagged fields):
 *   3: Epoch i32; tagged 0 MetadataHash i64 (4.1, KIP-1101)
 *   5: InstanceId?, RackId?, ClientId, ClientHost, SubscribedTopicNames []string,
 *      SubscribedTopicRegex?, RebalanceTimeoutMs i32, ServerAssignor?; tagged 0
 *      ClassicMemberMetadata? (a classic member of a consumer group: SessionTimeoutMs i32,
 *      SupportedProtocols [Name string, Metadata bytes]; a nullable struct, so its tag's data
 *      starts with a presence byte 1)
 *   6: AssignmentEpoch i32
 *   7: TopicPartitions [TopicId uuid, Partitions []i32]
 *   8: MemberEpoch i32, PreviousMemberEpoch i32, State i8 (0 stable, 1 unrevoked partitions,
 *      2 unreleased partitions), AssignedPartitions and PartitionsPendingRevocation as in 7
 * Unknown tagged fields are skipped (later versions add some). A null value is a tombstone. */
#ifndef LAMINAR_BROKER_GROUP_CGROUP_RECORDS_H
#define LAMINAR_BROKER_GROUP_CGROUP_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/cgroup.h"
#include "protocol/kafka_rt.h"

#define LM_CGR_GROUP_EPOCH    3
#define LM_CGR_PARTITION_META 4
#define LM_CGR_MEMBER         5
#define LM_CGR_TARGET_EPOCH   6
#define LM_CGR_TARGET_MEMBER  7
#define LM_CGR_CURRENT_MEMBER 8
#define LM_CGR_REGEX          16
#define LM_CGR_VALUE_VERSION  0
#define LM_CGR_TOPICS_MAX     100000 /* topics a value may name (subscribed or assigned) */

struct lm_cgr_key {
    int16_t type;
    struct kafka_str group;
    struct kafka_str member; /* types 5, 7, 8: member id; 16: the regular expression */
};

struct lm_cgr_group_value {
    int32_t epoch;
    bool has_metadata_hash;
    int64_t metadata_hash;
};

/* A classic member's JoinGroup protocol (ClassicMemberMetadata.SupportedProtocols). */
struct lm_cgr_protocol {
    struct kafka_str name;
    struct kafka_bytes metadata;
};

struct lm_cgr_member_value {
    struct kafka_str instance_id; /* nullable */
    struct kafka_str rack_id;     /* nullable */
    struct kafka_str client_id;
    struct kafka_str client_host;
    int32_t n_topic_names;
    const struct kafka_str *topic_names;
    struct kafka_str topic_regex; /* nullable */
    int32_t rebalance_timeout_ms;
    struct kafka_str server_assignor; /* nullable */
    /* ClassicMemberMetadata: has_classic false when null */
    bool has_classic;
    int32_t classic_session_timeout_ms;
    int32_t n_classic_protocols;
    const struct lm_cgr_protocol *classic_protocols;
};

/* A partition list, flat and sorted by topic id then partition (lm_cgroup_tp_cmp); on the
 * wire it is grouped by topic. */
struct lm_cgr_parts {
    int32_t n;
    const struct lm_cgroup_tp *v;
};

struct lm_cgr_current_value {
    int32_t member_epoch;
    int32_t prev_member_epoch;
    int8_t state;
    struct lm_cgr_parts assigned;
    struct lm_cgr_parts pending;
};

/* lm_cgr_key_type peeks a key's record type: the type, or -1 when the key is too short. */
int16_t lm_cgr_key_type(const uint8_t *key, size_t len);
/* lm_cgr_is_type tells whether a record type is one of the consumer-group types above. */
bool lm_cgr_is_type(int16_t type);

/* Encoders append to w (LM_E_FULL when it does not fit, LM_E_INVALID for a non-nullable
 * field given null or a type not listed). The partitions of a list must be sorted. */
int lm_cgr_key_encode(struct kafka_writer *w, const struct lm_cgr_key *k);
int lm_cgr_group_value_encode(struct kafka_writer *w, const struct lm_cgr_group_value *v);
int lm_cgr_member_value_encode(struct kafka_writer *w, const struct lm_cgr_member_value *v);
int lm_cgr_target_epoch_value_encode(struct kafka_writer *w, int32_t assignment_epoch);
int lm_cgr_target_member_value_encode(struct kafka_writer *w, const struct lm_cgr_parts *p);
int lm_cgr_current_value_encode(struct kafka_writer *w, const struct lm_cgr_current_value *v);

/* Decoders: strings point into buf (borrowed); arrays are allocated from arena. Unknown type
 * or value version: LM_E_UNSUPPORTED; short input: LM_E_TRUNCATED (or another negative
 * reader error); a null where the schema forbids it, or a partition list that is not a set:
 * LM_E_INVALID. Decoded partition lists are sorted. */
int lm_cgr_key_decode(const uint8_t *buf, size_t len, struct lm_cgr_key *out);
int lm_cgr_group_value_decode(const uint8_t *buf, size_t len, struct lm_cgr_group_value *out);
int lm_cgr_member_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                               struct lm_cgr_member_value *out);
int lm_cgr_target_epoch_value_decode(const uint8_t *buf, size_t len, int32_t *assignment_epoch);
int lm_cgr_target_member_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                                      struct lm_cgr_parts *out);
int lm_cgr_current_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                                struct lm_cgr_current_value *out);

#endif
