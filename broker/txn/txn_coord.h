/* Transaction coordinator as a pure state machine (DESIGN.md §7), after Kafka's
 * TransactionCoordinator, TransactionStateManager and TransactionMetadata (KIP-98, with the
 * KIP-360 epoch bumps, KIP-588 fencing errors and KIP-890 part 1 verification).
 *
 * Inputs: one call per request (InitProducerId with a transactional id, AddPartitionsToTxn,
 * its verify-only form, AddOffsetsToTxn, EndTxn), each with the current time and an opaque
 * token; lm_txn_coord_tick(now) for transaction timeouts, transactional id expiration and
 * marker retries; the load calls that rebuild a __transaction_state partition from its log;
 * lm_txn_coord_write_done() when a record handed out has been committed (or failed), and
 * lm_txn_coord_marker_done() when a partition leader answered a WriteTxnMarkers entry.
 * No sockets, files or clocks here; producer ids come from a callback in the config.
 *
 * Output: lm_txn_coord_ready() hands out (1) records to append to __transaction_state
 * (txn_records.h formats), each with a write id, (2) transaction markers to send to partition
 * leaders, (3) responses tagged with their request's token. WRITE BEFORE ANSWER: a state
 * change is only applied (and its response only produced) when lm_txn_coord_write_done()
 * reports its record committed, so a response never shows state the log does not have.
 * Everything in a ready is owned by the coordinator until lm_txn_coord_advance().
 *
 * Life of a transaction: Empty -(AddPartitions/AddOffsets)-> Ongoing -(EndTxn)->
 * PrepareCommit|PrepareAbort -(every marker acknowledged)-> CompleteCommit|CompleteAbort
 * -(AddPartitions)-> Ongoing ... A transaction that outlives its timeout is aborted with the
 * epoch bumped (PrepareEpochFence in memory, PrepareAbort on disk), which fences its producer.
 * An id idle in Empty/Complete* past transactional.id.expiration.ms is deleted (tombstone).
 *
 * Transaction version 2 (KIP-890 part 2), chosen per request (EndTxn v5+, implicit adds from
 * Produce v12+ / TxnOffsetCommit v5+): every EndTxn bumps the epoch in its Prepare* record, so
 * the markers carry the bumped epoch and fence the transaction's late writes; the response
 * gives the producer its next id and epoch. An epoch that would overflow (Short.MaxValue - 1
 * before the bump) moves the producer to a new id, kept as the next producer id in the
 * Prepare* record and made current by the Complete* one. A retried EndTxn (the epoch one below
 * the bumped one, or the old id at Short.MaxValue - 1 after a rotation) is answered again
 * instead of fenced. Records of such transactions are TransactionLogValue v1.
 *
 * Strings in requests are borrowed for the call (kafka_str, len -1 = null). */
#ifndef LAMINAR_BROKER_TXN_TXN_COORD_H
#define LAMINAR_BROKER_TXN_TXN_COORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/kafka_rt.h"

#define LM_TXN_PARTITIONS_MAX    1000   /* transaction.state.log.num.partitions upper bound */
#define LM_TXN_PARTS_PER_TXN_MAX 10000  /* partitions one transaction may span */
#define LM_TXN_IDS_MAX           100000 /* transactional ids one coordinator keeps */
#define LM_TXN_NO_PRODUCER_ID    ((int64_t)-1)
#define LM_TXN_NO_PRODUCER_EPOCH ((int16_t)-1)
#define LM_TXN_MARKER_RETRY_MS   100   /* before a marker answered RETRY is sent again */
#define LM_TXN_MARKER_TIMEOUT_MS 30000 /* before an unanswered marker is sent again */
#define LM_TXN_PARKED_MAX        64    /* implicit adds of one id waiting for its change */
#define LM_TXN_PARKED_TIMEOUT_MS 5000  /* before a waiting implicit add is answered a retry */
/* Transaction version 2: how long after a transaction ended (or the id was initialised) an
 * EndTxn commit that finds nothing added is asked to come again (CONCURRENT_TRANSACTIONS)
 * rather than refused (INVALID_TXN_STATE, Kafka's answer, fatal to the producer): the Java
 * client 4.1 can send a transaction's EndTxn just before its first batches (its sender checks
 * for unsent batches before the application's last send lands), and those batches add the
 * partitions a moment later. A commit that is still empty after it gets Kafka's answer. */
#define LM_TXN_EARLY_END_MS 1000

/* Kafka's TransactionState ids, as stored in TransactionLogValue.TransactionStatus. */
enum lm_txn_state {
    LM_TXN_EMPTY = 0,
    LM_TXN_ONGOING = 1,
    LM_TXN_PREPARE_COMMIT = 2,
    LM_TXN_PREPARE_ABORT = 3,
    LM_TXN_COMPLETE_COMMIT = 4,
    LM_TXN_COMPLETE_ABORT = 5,
    LM_TXN_DEAD = 6,
    LM_TXN_PREPARE_EPOCH_FENCE = 7,
};

/* lm_txn_state_name returns Kafka's name of a state ("Ongoing", ...), "Unknown" if out of range. */
const char *lm_txn_state_name(int state);

/* lm_txn_alloc_pid_fn reserves one new producer id into *pid; returns 0 or a negative LM_E_*. */
typedef int (*lm_txn_alloc_pid_fn)(void *ctx, int64_t *pid);

struct lm_txn_config {
    int32_t state_partitions;             /* transaction.state.log.num.partitions (50) */
    int32_t offsets_partitions;           /* offsets.topic.num.partitions (50), AddOffsetsToTxn */
    int32_t max_timeout_ms;               /* transaction.max.timeout.ms (900000) */
    int64_t id_expiration_ms;             /* transactional.id.expiration.ms (7 days) */
    int64_t abort_check_interval_ms;      /* transaction.abort.timed.out.transaction.cleanup
                                           * .interval.ms (10000) */
    int64_t expiration_check_interval_ms; /* transaction.remove.expired.transaction.cleanup
                                           * .interval.ms (3600000) */
    lm_txn_alloc_pid_fn alloc_pid;
    void *alloc_ctx;
};

/* ---- requests (all strings borrowed) ---- */

struct lm_txn_init_req {
    struct kafka_str transactional_id; /* non-null (the idempotent case is not served here) */
    int32_t timeout_ms;
    int64_t producer_id;    /* v3+ KIP-360: the producer's current id, or -1 */
    int16_t producer_epoch; /* v3+: its epoch, or -1 */
};

struct lm_txn_topic_partition {
    struct kafka_str topic;
    int32_t partition;
};

struct lm_txn_add_req {
    struct kafka_str transactional_id;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t n_partitions;
    const struct lm_txn_topic_partition *partitions;
    bool verify_only; /* AddPartitionsToTxn v4+ from a partition leader (KIP-890 part 1) */
    bool tv2;         /* an implicit add for a transaction version 2 client (KIP-890 part 2):
                       * a Produce v12+ or TxnOffsetCommit v5+ to a partition not added yet.
                       * One that comes while the id's state is being written, or while the
                       * markers of its previous transaction are out, waits for it (at most
                       * LM_TXN_PARKED_MAX, LM_TXN_PARKED_TIMEOUT_MS), so the adds of an id
                       * answer in order */
};

struct lm_txn_add_offsets_req {
    struct kafka_str transactional_id;
    int64_t producer_id;
    int16_t producer_epoch;
    struct kafka_str group_id;
};

struct lm_txn_end_req {
    struct kafka_str transactional_id;
    int64_t producer_id;
    int16_t producer_epoch;
    bool commit;
    bool tv2; /* EndTxn v5+ (KIP-890 part 2): the epoch is bumped at the end of every
               * transaction and the response carries the producer id and epoch to use next */
};

/* ---- outputs (owned by the coordinator until lm_txn_coord_advance) ---- */

enum lm_txn_resp_kind {
    LM_TXN_RESP_INIT = 1,
    LM_TXN_RESP_ADD,
    LM_TXN_RESP_ADD_OFFSETS,
    LM_TXN_RESP_END,
};

/* Per partition results of AddPartitionsToTxn: one error for every partition, except for
 * verify-only requests where each partition has its own (INVALID_TXN_STATE when not added). */
struct lm_txn_part_result {
    struct kafka_str topic;
    int32_t partition;
    int16_t error_code;
};

/* error_code is Kafka's newest mapping (PRODUCER_FENCED); the handler maps it to
 * INVALID_PRODUCER_EPOCH for request versions before KIP-588. */
struct lm_txn_resp {
    uint64_t token;
    uint8_t kind; /* enum lm_txn_resp_kind */
    int16_t error_code;
    int64_t producer_id;    /* INIT; END with tv2: the id to use next */
    int16_t producer_epoch; /* INIT; END with tv2: the epoch to use next */
    int32_t n_parts;        /* ADD: as many as the request, in its order */
    struct lm_txn_part_result *parts;
};

/* One record for __transaction_state. value.len == -1: tombstone. */
struct lm_txn_write {
    uint64_t write_id; /* pass to lm_txn_coord_write_done */
    int32_t partition;
    struct kafka_bytes key;
    struct kafka_bytes value;
};

/* One WriteTxnMarkers entry for one partition, to send to that partition's leader. */
struct lm_txn_marker {
    uint64_t marker_id; /* pass back to lm_txn_coord_marker_done */
    struct kafka_str transactional_id;
    int64_t producer_id;
    int16_t producer_epoch;
    bool commit;
    int32_t coordinator_epoch;
    struct kafka_str topic;
    int32_t partition;
};

struct lm_txn_ready {
    size_t n_writes;
    const struct lm_txn_write *writes;
    size_t n_markers;
    const struct lm_txn_marker *markers;
    size_t n_resps;
    const struct lm_txn_resp *resps;
};

/* How a partition leader answered one marker. */
enum lm_txn_marker_outcome {
    LM_TXN_MARKER_ACKED = 0, /* written */
    LM_TXN_MARKER_RETRY,     /* NOT_LEADER_OR_FOLLOWER, no connection, ...: send again */
    LM_TXN_MARKER_DROPPED,   /* the topic was deleted: Kafka forgets the partition */
};

/* A read-only view of one transactional id (DescribeTransactions); strings are borrowed,
 * valid until the next call that changes the coordinator. */
struct lm_txn_info {
    struct kafka_str transactional_id;
    enum lm_txn_state state;
    int64_t producer_id;
    int16_t producer_epoch;
    int16_t last_producer_epoch;
    int32_t timeout_ms;
    int64_t start_ts_ms; /* -1 when no transaction is open */
    int64_t update_ts_ms;
    bool pending; /* a state change is being written */
    int32_t n_partitions;
    const struct lm_txn_topic_partition *partitions;
    bool tv2;                 /* the transaction's client uses transaction version 2 */
    int64_t next_producer_id; /* tv2: the id the producer moves to when its epoch overflows */
};

struct lm_txn_coord;

/* lm_txn_config_default fills Kafka's defaults (alloc_pid left null: the caller sets it). */
void lm_txn_config_default(struct lm_txn_config *cfg);
/* lm_txn_coord_new makes a coordinator that owns no partition. cfg is copied. */
int lm_txn_coord_new(const struct lm_txn_config *cfg, struct lm_txn_coord **out);
/* lm_txn_coord_free releases everything (parked requests are never answered). */
void lm_txn_coord_free(struct lm_txn_coord *c);

/* lm_txn_partition_of returns the __transaction_state partition of a transactional id
 * (Utils.abs(id.hashCode()) % partitions, like Kafka). */
int32_t lm_txn_partition_of(const struct lm_txn_coord *c, struct kafka_str transactional_id);

/* Requests. Each returns 0 after queueing its response (now, or once its record is written);
 * a negative LM_E_* only when no response could be queued (LM_E_NOMEM). */
int lm_txn_init_pid(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                    const struct lm_txn_init_req *req);
int lm_txn_add_partitions(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                          const struct lm_txn_add_req *req);
int lm_txn_add_offsets(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
                       const struct lm_txn_add_offsets_req *req);
int lm_txn_end(struct lm_txn_coord *c, int64_t now_ms, uint64_t token,
               const struct lm_txn_end_req *req);

/* lm_txn_coord_tick aborts timed-out transactions, expires idle ids and re-sends markers
 * whose retry time has come. Returns 0 or LM_E_NOMEM. */
int lm_txn_coord_tick(struct lm_txn_coord *c, int64_t now_ms);

/* lm_txn_coord_ready returns what to write, send and answer; lm_txn_coord_advance releases
 * it (write ids stay valid for lm_txn_coord_write_done). */
void lm_txn_coord_ready(struct lm_txn_coord *c, struct lm_txn_ready *out);
void lm_txn_coord_advance(struct lm_txn_coord *c);

/* lm_txn_coord_write_done reports the fate of a write: error_code 0 when committed, else the
 * Kafka error of the append (mapped like Kafka's TransactionStateManager: NOT_COORDINATOR when
 * leadership was lost, COORDINATOR_NOT_AVAILABLE otherwise) which the waiting request gets.
 * Unknown write ids (an unloaded partition) are ignored. Returns 0 or LM_E_NOMEM. */
int lm_txn_coord_write_done(struct lm_txn_coord *c, int64_t now_ms, uint64_t write_id,
                            int16_t error_code);

/* lm_txn_coord_marker_done reports one partition's answer to a marker handed out before.
 * Only the answer to the latest marker sent for that partition of the transaction counts:
 * answers to earlier sends (resent after a timeout, or of an earlier transaction) are
 * ignored, so a late answer never completes the wrong transaction. Every marker handed out
 * should be answered (RETRY when its connection is lost); one that is not is sent again after
 * LM_TXN_MARKER_TIMEOUT_MS. */
int lm_txn_coord_marker_done(struct lm_txn_coord *c, int64_t now_ms, uint64_t marker_id,
                             struct kafka_str transactional_id, struct kafka_str topic,
                             int32_t partition, enum lm_txn_marker_outcome outcome);

/* Loading: lm_txn_coord_load_begin marks a partition loading (its ids answer
 * COORDINATOR_LOAD_IN_PROGRESS), lm_txn_coord_load_record applies each record of the log in
 * order (value len -1 = tombstone), lm_txn_coord_load_end makes it served and restarts the
 * markers of transactions found in PrepareCommit/PrepareAbort. lm_txn_coord_unload forgets a
 * partition, answering its waiting requests NOT_COORDINATOR. coordinator_epoch is the leader
 * epoch of the partition, carried in the markers. A bad record is LM_E_CORRUPT. */
int lm_txn_coord_load_begin(struct lm_txn_coord *c, int32_t partition, int32_t coordinator_epoch);
int lm_txn_coord_load_record(struct lm_txn_coord *c, int32_t partition, struct kafka_bytes key,
                             struct kafka_bytes value);
int lm_txn_coord_load_end(struct lm_txn_coord *c, int64_t now_ms, int32_t partition);
int lm_txn_coord_unload(struct lm_txn_coord *c, int32_t partition);
/* lm_txn_coord_owns tells whether a partition is loaded and served. */
bool lm_txn_coord_owns(const struct lm_txn_coord *c, int32_t partition);

/* lm_txn_coord_describe fills *out for an id; returns false when unknown here. */
bool lm_txn_coord_describe(const struct lm_txn_coord *c, struct kafka_str transactional_id,
                           struct lm_txn_info *out);
/* lm_txn_coord_count returns the number of ids kept; lm_txn_coord_info_at the i-th one
 * (ListTransactions walks them). */
size_t lm_txn_coord_count(const struct lm_txn_coord *c);
void lm_txn_coord_info_at(const struct lm_txn_coord *c, size_t i, struct lm_txn_info *out);

#endif
