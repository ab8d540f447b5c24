/* Idempotent producer state of one partition (Kafka's ProducerStateManager and
 * ProducerAppendInfo, storage/internals/log). Pure: no files, no clocks (now_ms is an input).
 *
 * Per producer id: the epoch, and the last LM_PRODUCER_BATCHES_MAX appended batches' sequence
 * and offset ranges. Before appending an idempotent batch the handler calls
 * lm_producer_check(); after a successful append, lm_producer_record().
 *
 * Rules (Kafka 2.5+ / 3.x ProducerAppendInfo.checkProducerEpoch and checkSequence):
 * - epoch below the current one: INVALID_PRODUCER_EPOCH (since Kafka 2.7, KIP-588; it was
 *   PRODUCER_FENCED before, which clients treat as fatal);
 * - same epoch, (first seq, last seq) equal to one of the cached batches: a duplicate; answer
 *   success with that batch's original base offset, append nothing (never
 *   OUT_OF_ORDER_SEQUENCE_NUMBER: Redpanda #3039);
 * - same epoch, first seq == last seq + 1 (INT32_MAX wraps to 0): accept;
 * - same epoch, anything else: OUT_OF_ORDER_SEQUENCE_NUMBER;
 * - higher epoch: first seq must be 0, else OUT_OF_ORDER_SEQUENCE_NUMBER; the batch cache
 *   restarts with the new epoch;
 * - unknown producer (no state: new, expired, or its records deleted): accept ANY sequence.
 *   This is Kafka's behaviour since 2.5 (KIP-360): "If there is no current producer epoch
 *   (possibly because all producer records have been deleted due to retention or the
 *   DeleteRecords API) accept writes with any sequence number". UNKNOWN_PRODUCER_ID is no
 *   longer returned for produce; returning it (or OUT_OF_ORDER) makes clients reset sequences
 *   and resend, which is the duplicate/ordering failure of Redpanda #22670.
 * Expiry: a producer idle for producer.id.expiration.ms (default 86400000, measured from the
 * wall-clock time of its last append, not the client-set batch timestamp) is forgotten by
 * lm_producer_expire(); its next batch is then accepted as an unknown producer's, so expiry
 * never turns a retry into OUT_OF_ORDER_SEQUENCE_NUMBER. The price, same as Kafka's: a retry
 * of a batch older than a whole day of idleness could be appended twice.
 *
 * Memory: at most max_producers entries (bounded, allocated up front); when full, recording a
 * new producer evicts the one idle longest (counted in lm_producer_state_evictions). */
#ifndef LAMINAR_BROKER_PRODUCER_PRODUCER_STATE_H
#define LAMINAR_BROKER_PRODUCER_PRODUCER_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_PRODUCER_BATCHES_MAX           5 /* Kafka ProducerStateEntry.NUM_BATCHES_TO_RETAIN */
#define LM_PRODUCER_NO_EPOCH              (-1)
#define LM_PRODUCER_EXPIRATION_MS_DEFAULT 86400000LL

struct lm_producer_batch {
    int32_t first_seq;
    int32_t last_seq;
    int64_t first_offset;
    int64_t last_offset;
    int64_t timestamp_ms; /* the batch's max timestamp */
};

enum lm_producer_verdict {
    LM_PRODUCER_ACCEPT = 0,    /* append it, then lm_producer_record */
    LM_PRODUCER_DUPLICATE = 1, /* do not append; answer success with dup.first_offset */
    LM_PRODUCER_REJECT = 2,    /* do not append; answer error_code */
};

struct lm_producer_check_result {
    enum lm_producer_verdict verdict;
    int16_t error_code;           /* Kafka error for REJECT, else 0 */
    struct lm_producer_batch dup; /* the original batch for DUPLICATE */
    /* what the state knew of the producer (for the refusal's log line): its epoch and the
     * last sequence of its newest batch; -1 when the producer or its batches are unknown */
    int16_t known_epoch;
    int32_t known_last_seq;
};

/* DescribeProducers (KIP-664) row. */
struct lm_producer_info {
    int64_t producer_id;
    int16_t epoch;
    int32_t last_sequence;            /* -1 when no batch cached */
    int64_t last_timestamp_ms;        /* -1 when no batch cached */
    int32_t coordinator_epoch;        /* -1: no transaction coordinator yet */
    int64_t current_txn_start_offset; /* -1: no open transaction */
};

/* A batch header as read back from the log, for recovery. */
struct lm_producer_log_batch {
    int64_t producer_id; /* -1: not idempotent, ignored */
    int16_t epoch;
    int32_t base_seq;
    int32_t last_offset_delta;
    int64_t base_offset;
    int64_t max_timestamp_ms;
    bool is_control;           /* transaction marker: epoch only, no sequences */
    bool transactional;        /* a data batch of a transaction: opens it (attribute 0x10) */
    int32_t coordinator_epoch; /* a marker's (its value) */
};

struct lm_producer_state;

/* lm_producer_state_new makes an empty state for one partition, holding at most
 * max_producers producers (> 0), expiring them after expiration_ms of idleness. */
int lm_producer_state_new(uint32_t max_producers, int64_t expiration_ms,
                          struct lm_producer_state **out);
/* lm_producer_state_free releases s (NULL is fine). */
void lm_producer_state_free(struct lm_producer_state *s);
/* lm_producer_state_clear forgets every producer (e.g. before a rebuild). */
void lm_producer_state_clear(struct lm_producer_state *s);

/* lm_producer_seq_add returns seq + delta with Kafka's wrap at INT32_MAX -> 0
 * (DefaultRecordBatch.incrementSequence). seq >= 0, delta >= 0. */
int32_t lm_producer_seq_add(int32_t seq, int32_t delta);

/* lm_producer_check decides what to do with a batch of producer_id/epoch covering sequences
 * [first_seq, last_seq]. Does not change s. LM_E_INVALID for producer_id < 0, epoch < 0 or
 * first_seq < 0 (the handler answers INVALID_RECORD). */
int lm_producer_check(const struct lm_producer_state *s, int64_t producer_id, int16_t epoch,
                      int32_t first_seq, int32_t last_seq, struct lm_producer_check_result *out);
/* lm_producer_record remembers an appended batch (after a check said ACCEPT and the append
 * succeeded). now_ms is the append's wall-clock time (for expiry). */
int lm_producer_record(struct lm_producer_state *s, int64_t producer_id, int16_t epoch,
                       const struct lm_producer_batch *b, int64_t now_ms);
/* Transactions (Kafka ProducerAppendInfo, ProducerStateEntry.currentTxnFirstOffset):
 * lm_producer_check_txn refuses a non-transactional batch of a producer whose transaction is
 * open (INVALID_TXN_STATE, appendDataBatch's "Expected transactional write"); 0 otherwise in
 * *error. lm_producer_txn_begin records the first offset of a transactional batch appended
 * (after lm_producer_record) unless the producer's transaction is open already. */
void lm_producer_check_txn(const struct lm_producer_state *s, int64_t producer_id,
                           bool transactional, int16_t *error);
int lm_producer_txn_begin(struct lm_producer_state *s, int64_t producer_id, int64_t first_offset);
/* lm_producer_check_marker decides whether a transaction marker (WriteTxnMarkers) of
 * producer_id at epoch from coordinator_epoch may be appended (Kafka appendEndTxnMarker's
 * checkProducerEpoch and checkCoordinatorEpoch): an epoch below the producer's is
 * INVALID_PRODUCER_EPOCH, a coordinator epoch below the last marker's
 * TRANSACTION_COORDINATOR_FENCED; an unknown producer is accepted. Returns the Kafka code. */
int16_t lm_producer_check_marker(const struct lm_producer_state *s, int64_t producer_id,
                                 int16_t epoch, int32_t coordinator_epoch);
/* lm_producer_marker applies an appended marker: the transaction ends, the epoch moves up to
 * the marker's (dropping the cached batches when it changes), the coordinator epoch is kept. */
int lm_producer_marker(struct lm_producer_state *s, int64_t producer_id, int16_t epoch,
                       int32_t coordinator_epoch, int64_t now_ms);
/* lm_producer_txn_open returns the first offset of the producer's open transaction, or -1. */
int64_t lm_producer_txn_open(const struct lm_producer_state *s, int64_t producer_id);

/* lm_producer_replay applies one batch header read back from the log in offset order
 * (recovery after the last snapshot; Kafka loadProducersFromLog): no validation. */
int lm_producer_replay(struct lm_producer_state *s, const struct lm_producer_log_batch *b,
                       int64_t now_ms);
/* lm_producer_expire forgets producers idle for at least expiration_ms at now_ms; returns how
 * many were removed. */
size_t lm_producer_expire(struct lm_producer_state *s, int64_t now_ms);

/* lm_producer_state_count returns how many producers are held. */
size_t lm_producer_state_count(const struct lm_producer_state *s);
/* lm_producer_state_evictions returns how many producers were evicted for space. */
uint64_t lm_producer_state_evictions(const struct lm_producer_state *s);
/* lm_producer_describe fills up to cap rows (ascending producer id); returns the row count
 * written. */
size_t lm_producer_describe(const struct lm_producer_state *s, struct lm_producer_info *rows,
                            size_t cap);
/* lm_producer_get copies one producer's cached batches (oldest first) and epoch;
 * LM_E_NOT_FOUND if unknown. */
int lm_producer_get(const struct lm_producer_state *s, int64_t producer_id, int16_t *epoch,
                    struct lm_producer_batch batches[LM_PRODUCER_BATCHES_MAX], int *n_batches);

/* Snapshot file (laminar's own format, all integers big-endian; version 1 files were written
 * before transactions were tracked and may lack an open one, so they are refused and the state
 * is rebuilt from the log):
 *   magic "LMPS" | u16 version = 2 | i64 next_offset | u32 count |
 *   count x { i64 producer_id | i16 epoch | i64 last_update_ms | i32 coordinator_epoch |
 *             i64 txn_start_offset | u8 n_batches | n_batches x { i32 first_seq |
 *             i32 last_seq | i64 first_offset | i64 last_offset | i64 timestamp_ms } } |
 *   u32 CRC-32C of every byte before it.
 * next_offset is the log offset the snapshot covers up to (exclusive): recovery replays the
 * log from there. Entries in ascending producer id. */
/* lm_producer_snapshot_size returns the exact encoded size. */
size_t lm_producer_snapshot_size(const struct lm_producer_state *s);
/* lm_producer_snapshot_encode writes the snapshot into buf (cap bytes; LM_E_FULL if short);
 * *len gets the size written. */
int lm_producer_snapshot_encode(const struct lm_producer_state *s, int64_t next_offset,
                                uint8_t *buf, size_t cap, size_t *len);
/* lm_producer_snapshot_decode replaces s's content with a snapshot; LM_E_CRC, LM_E_CORRUPT,
 * LM_E_TRUNCATED, LM_E_UNSUPPORTED or LM_E_FULL (more producers than s holds) on bad input,
 * leaving s empty. *next_offset gets the covered offset. */
int lm_producer_snapshot_decode(struct lm_producer_state *s, const uint8_t *buf, size_t len,
                                int64_t *next_offset);

#endif
