/* __consumer_offsets records in Kafka's own key/value formats, so Kafka's tools can read a
 * laminar log and the other way round (Kafka group-coordinator message schemas
 * OffsetCommitKey/Value, GroupMetadataKey/Value; classic encodings unless the version is
 * flexible). A record key starts with an i16 version that doubles as the record type:
 *   0, 1  offset commit key   group string, topic string, partition i32
 *   2     group metadata key  group string
 * Values start with their own i16 version:
 *   offset commit value   v0/v2: offset i64, metadata string, commit timestamp i64
 *                         v1: v0 + expire timestamp i64
 *                         v3: offset i64, leader epoch i32, metadata, commit timestamp i64
 *                         v4: v3, flexible (compact strings, tagged fields)
 *   group metadata value  protocol type string, generation i32, protocol string?, leader
 *                         string?, current state timestamp i64 (v2+), members array of
 *                         {member id, group instance id? (v3+), client id, client host,
 *                         rebalance timeout i32 (v1+), session timeout i32, subscription
 *                         bytes, assignment bytes}; v4 flexible.
 * A null value is a tombstone (compaction deletes the key).
 *
 * We write offset key v1, offset value v3 (v1 when an explicit expire timestamp is set, as
 * Kafka does for OffsetCommit v2-v4 retention), group key v2, group value v3; we read every
 * version above. Also: the partition of a group (Kafka: Utils.abs(groupId.hashCode()) % n). */
#ifndef LAMINAR_BROKER_GROUP_GROUP_RECORDS_H
#define LAMINAR_BROKER_GROUP_GROUP_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/kafka_rt.h"

#define LM_GR_KEY_OFFSET_V0 0
#define LM_GR_KEY_OFFSET_V1 1
#define LM_GR_KEY_GROUP     2

struct lm_gr_key {
    int16_t version; /* 0/1: offset commit key; 2: group metadata key */
    struct kafka_str group;
    struct kafka_str topic; /* offset keys only */
    int32_t partition;      /* offset keys only */
};

struct lm_gr_offset_value {
    int16_t version;
    int64_t offset;
    int32_t leader_epoch; /* -1 when absent (v0-v2) */
    struct kafka_str metadata;
    int64_t commit_ts_ms;
    int64_t expire_ts_ms; /* -1 when absent (all but v1) */
};

struct lm_gr_member {
    struct kafka_str member_id;
    struct kafka_str instance_id; /* null for dynamic members */
    struct kafka_str client_id;
    struct kafka_str client_host;
    int32_t rebalance_timeout_ms; /* v0: equals session timeout */
    int32_t session_timeout_ms;
    struct kafka_bytes subscription;
    struct kafka_bytes assignment;
};

struct lm_gr_group_value {
    int16_t version;
    struct kafka_str protocol_type;
    int32_t generation;
    struct kafka_str protocol; /* nullable */
    struct kafka_str leader;   /* nullable */
    int64_t state_ts_ms;       /* -1 when absent (v0-v1) */
    int32_t n_members;
    struct lm_gr_member *members;
};

/* lm_gr_java_string_hash returns Java's String.hashCode() of a UTF-8 string: decoded to code
 * points, then hashed over UTF-16 code units (s[0]*31^(n-1) + ... with int overflow). A
 * malformed UTF-8 byte counts as U+FFFD, as Java's decoder replaces it. */
int32_t lm_gr_java_string_hash(const char *s, size_t len);
/* lm_gr_partition_for returns the __consumer_offsets partition of a group:
 * Utils.abs(hash) % n_partitions, where Utils.abs(INT32_MIN) is 0. n_partitions > 0. */
int32_t lm_gr_partition_for(struct kafka_str group_id, int32_t n_partitions);

/* Sizes and encoders: write exactly lm_gr_*_size() bytes into w (LM_E_FULL if it does not
 * fit). key->version/value->version choose the layout. */
size_t lm_gr_key_size(const struct lm_gr_key *k);
int lm_gr_key_encode(struct kafka_writer *w, const struct lm_gr_key *k);
size_t lm_gr_offset_value_size(const struct lm_gr_offset_value *v);
int lm_gr_offset_value_encode(struct kafka_writer *w, const struct lm_gr_offset_value *v);
size_t lm_gr_group_value_size(const struct lm_gr_group_value *v);
int lm_gr_group_value_encode(struct kafka_writer *w, const struct lm_gr_group_value *v);

/* Decoders: strings and bytes point into buf (borrowed); the members array of a group value
 * is allocated from arena. Unknown versions: LM_E_UNSUPPORTED; short or bad input:
 * LM_E_TRUNCATED / LM_E_INVALID. Trailing bytes after a known layout are allowed (newer
 * writers may append ignorable fields). */
int lm_gr_key_decode(const uint8_t *buf, size_t len, struct lm_gr_key *out);
int lm_gr_offset_value_decode(const uint8_t *buf, size_t len, struct lm_gr_offset_value *out);
int lm_gr_group_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                             struct lm_gr_group_value *out);

#endif
