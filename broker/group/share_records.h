/* __share_group_state records (KIP-932's share coordinator) in Kafka 4.1's formats, so that a
 * laminar state log and Kafka's carry the same keys and Kafka's tools decode ours. Layouts from
 * Kafka 4.1.1's share-coordinator message definitions (share-coordinator/src/main/resources/
 * common/message/Share{Snapshot,Update}{Key,Value}.json, as compiled into the 4.1.1 jar's
 * generated classes: the snapshot value carries CreateTimestamp and WriteTimestamp there).
 *
 * A key is an i16 record type (the definition's apiKey: 0 ShareSnapshotKey, 1 ShareUpdateKey),
 * then, non-flexible: GroupId string (i16 length), TopicId uuid, Partition i32.
 * A value is an i16 version (0), then flexible (compact array, tagged fields):
 *   0 ShareSnapshotValue: SnapshotEpoch i32, StateEpoch i32, LeaderEpoch i32, StartOffset i64,
 *     CreateTimestamp i64, WriteTimestamp i64, StateBatches[]
 *   1 ShareUpdateValue: SnapshotEpoch i32, LeaderEpoch i32, StartOffset i64 (-1: unchanged),
 *     StateBatches[]
 *   StateBatch: FirstOffset i64, LastOffset i64, DeliveryState i8 (0 available, 2 acknowledged,
 *     4 archived), DeliveryCount i16
 * Unknown tagged fields are skipped (Kafka 4.2 adds DeliveryCompleteCount as tag 0 of the
 * update value). A null value is a tombstone (the share partition's state deleted).
 *
 * Replay (lm_shr_state): a snapshot replaces the state; an update sets the start offset (unless
 * -1) and overlays its batches on the state's (Kafka's ShareCoordinatorShard merge), then the
 * batches below the start offset are dropped. Pure: no I/O. */
#ifndef LAMINAR_BROKER_GROUP_SHARE_RECORDS_H
#define LAMINAR_BROKER_GROUP_SHARE_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/share_partition.h"
#include "protocol/kafka_rt.h"

#define LM_SHR_SNAPSHOT      0
#define LM_SHR_UPDATE        1
#define LM_SHR_VALUE_VERSION 0
#define LM_SHR_BATCHES_MAX   LM_SHARE_IN_FLIGHT_MAX /* state batches a value or state may hold */

struct lm_shr_key {
    int16_t type; /* LM_SHR_SNAPSHOT or LM_SHR_UPDATE */
    struct kafka_str group;
    uint8_t topic_id[16];
    int32_t partition;
};

struct lm_shr_batch {
    int64_t first;
    int64_t last; /* inclusive */
    int8_t state; /* LM_SHARE_AVAILABLE, LM_SHARE_ACKNOWLEDGED or LM_SHARE_ARCHIVED */
    int16_t delivery_count;
};

/* A snapshot's or an update's value; the fields the type does not carry are ignored when
 * encoding and zero after decoding. */
struct lm_shr_value {
    int32_t snapshot_epoch;
    int32_t state_epoch; /* snapshot */
    int32_t leader_epoch;
    int64_t start_offset; /* update: -1 leaves it as it was */
    int64_t create_ms;    /* snapshot */
    int64_t write_ms;     /* snapshot */
    int32_t n_batches;
    struct lm_shr_batch *batches; /* encode: borrowed; decode: the caller's array */
};

/* The fencing epochs of one share partition, as Kafka 4.1's ShareCoordinatorShard keeps them
 * (leaderEpochMap, stateEpochMap): the highest leader epoch of the snapshots and updates and
 * the highest state epoch of the snapshots replayed since the last tombstone (both only ever
 * grow), and the latest snapshot's epoch. */
struct lm_shr_fence {
    bool present; /* a snapshot or update was replayed since the last tombstone */
    int32_t leader_epoch;
    int32_t state_epoch; /* INT32_MIN: no snapshot yet */
    int32_t snapshot_epoch;
};

/* The replayed state of one share partition. */
struct lm_shr_state {
    bool present; /* a snapshot or update was replayed since the last tombstone */
    int32_t snapshot_epoch;
    int32_t state_epoch;
    int32_t leader_epoch;
    int64_t start_offset;
    int32_t n, cap;
    struct lm_shr_batch *batches; /* sorted by first, not overlapping; owned */
    int32_t updates;              /* updates replayed since the last snapshot */
    struct lm_shr_fence fence;
};

#define LM_SHR_COORD_KEY_MAX (255 + 1 + 22 + 1 + 11) /* a coordinator key's bytes at most */

/* lm_shr_coord_key writes Kafka's share coordinator key of a share partition,
 * "groupId:topicId:partition" with the topic id in base64url without padding (Kafka's
 * SharePartitionKey.asCoordinatorKey, FindCoordinator key type 2) to out (at least
 * LM_SHR_COORD_KEY_MAX bytes; group at most 255 bytes). Returns its length. */
int32_t lm_shr_coord_key(struct kafka_str group, const uint8_t topic_id[16], int32_t partition,
                         char *out);

/* lm_shr_coord_key_valid tells whether key[0..len) is a share coordinator key: a non-empty
 * group, ':', a topic id (22 base64url digits), ':', a partition (decimal, 0 to INT32_MAX). */
bool lm_shr_coord_key_valid(const char *key, int32_t len);

/* lm_shr_key_type returns a key's record type, or -1 when it is too short. */
int16_t lm_shr_key_type(const uint8_t *key, size_t len);
/* lm_shr_key_encode writes k. Returns 0 or an LM_E_* error (LM_E_INVALID: bad type, null group). */
int lm_shr_key_encode(struct kafka_writer *w, const struct lm_shr_key *k);
/* lm_shr_key_decode reads a key of buf[0..len); out->group points into buf. Returns 0,
 * LM_E_UNSUPPORTED for a record type other than 0 and 1, or a decoding error. */
int lm_shr_key_decode(const uint8_t *buf, size_t len, struct lm_shr_key *out);
/* lm_shr_value_encode writes v as a value of record type type. Returns 0 or an LM_E_* error
 * (LM_E_INVALID: bad type, batch or count). */
int lm_shr_value_encode(struct kafka_writer *w, int16_t type, const struct lm_shr_value *v);
/* lm_shr_value_decode reads a value of record type type from buf[0..len) with at most cap
 * batches into batches (LM_E_TOO_LARGE beyond); batches NULL: any number, checked and skipped
 * (out->n_batches 0), for the epochs alone. Returns 0, LM_E_UNSUPPORTED for another value
 * version, or a decoding error; never reads past buf + len. */
int lm_shr_value_decode(const uint8_t *buf, size_t len, int16_t type, struct lm_shr_value *out,
                        struct lm_shr_batch *batches, int32_t cap);

/* lm_shr_state_init makes an empty state; lm_shr_state_deinit frees its batches. */
void lm_shr_state_init(struct lm_shr_state *s);
void lm_shr_state_deinit(struct lm_shr_state *s);
/* lm_shr_state_replay applies one record's value (v NULL: a tombstone) of record type type.
 * Returns 0, LM_E_INVALID for a bad value (the state unchanged), LM_E_NOMEM, or LM_E_TOO_LARGE
 * when the state would hold more than LM_SHR_BATCHES_MAX batches. */
int lm_shr_state_replay(struct lm_shr_state *s, int16_t type, const struct lm_shr_value *v);

/* lm_shr_fence_init makes a fence with nothing replayed; lm_shr_fence_replay applies one
 * record's value (v NULL: a tombstone) of record type type (Kafka's replay: the maps take the
 * higher epoch; a tombstone drops them). */
void lm_shr_fence_init(struct lm_shr_fence *f);
void lm_shr_fence_replay(struct lm_shr_fence *f, int16_t type, const struct lm_shr_value *v);
/* Kafka 4.1's checks of the share coordinator (ShareCoordinatorShard.maybeGet*StateError), as
 * Kafka error codes (KAFKA_NONE: go on). A write: a leader epoch below the highest recorded is
 * FENCED_LEADER_EPOCH, then a state epoch below the highest recorded FENCED_STATE_EPOCH (-1:
 * not given, not checked). An initialization: a state epoch below the highest recorded
 * FENCED_STATE_EPOCH (-1 not checked). A read: a leader epoch below the highest recorded
 * FENCED_LEADER_EPOCH (-1 too, as Kafka 4.1 checks it). Nothing recorded fences nothing. */
int16_t lm_shr_fence_write(const struct lm_shr_fence *f, int32_t leader_epoch, int32_t state_epoch);
int16_t lm_shr_fence_initialize(const struct lm_shr_fence *f, int32_t state_epoch);
int16_t lm_shr_fence_read(const struct lm_shr_fence *f, int32_t leader_epoch);
/* The snapshot epoch of a share partition's next snapshot written by an initialization or a
 * whole-state write: the latest one's plus one, 0 for the first (Kafka's
 * generateShareStateRecord, generateInitializeStateRecord). */
int32_t lm_shr_fence_next_snapshot(const struct lm_shr_fence *f);

/* lm_share_part_batches writes the window [start, end) of sp as runs of equal state and
 * delivery count into out (at most cap; ACQUIRED records as AVAILABLE, to be delivered again
 * after a restart). Returns how many, or -1 when cap is too small. */
int32_t lm_share_part_batches(const struct lm_share_part *sp, struct lm_shr_batch *out,
                              int32_t cap);
/* lm_share_part_restore starts sp (initialized or not) from a replayed state: start at the
 * state's start offset, the window up to its last batch (at most max_in_flight records;
 * offsets of the window no batch names are AVAILABLE, never delivered). */
void lm_share_part_restore(struct lm_share_part *sp, const struct lm_shr_state *s);

#endif
