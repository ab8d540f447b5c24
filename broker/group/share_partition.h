/* The state of one share partition (KIP-932): a topic partition as one share group consumes
 * it, held on the shard of the partition's leader. Pure: driven by acquire, acknowledge and
 * release calls with the time now_ms; no I/O.
 *
 * The window [start, end) holds the in-flight records: start is the share-partition start
 * offset (SPSO), the first record not yet acknowledged or archived; end (SPEO) is one past
 * the last record ever acquired. Below start every record is done; at end and above nothing
 * was acquired yet. Each record in the window is
 *   AVAILABLE    may be acquired (released, or its lock timed out),
 *   ACQUIRED     by one member until its lock deadline (group.share.record.lock.duration.ms),
 *   ACKNOWLEDGED accepted by its consumer,
 *   ARCHIVED     rejected, or delivered delivery_limit times (group.share.delivery.count.limit).
 * Each acquisition counts one delivery; a lock that times out or a release makes the record
 * AVAILABLE again unless it reached the limit, then it is ARCHIVED. start moves over leading
 * ACKNOWLEDGED/ARCHIVED records. The window holds at most max_in_flight records
 * (group.share.partition.max.record.locks): bounded memory per share partition.
 *
 * Only in memory; the shell writes the window to __share_group_state (share_records.h:
 * lm_share_part_batches) and a restart rebuilds it with lm_share_part_restore (see
 * broker/README.md). */
#ifndef LAMINAR_BROKER_GROUP_SHARE_PARTITION_H
#define LAMINAR_BROKER_GROUP_SHARE_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LM_SHARE_IN_FLIGHT_MAX 100000 /* hard bound of max_in_flight */

enum lm_share_state {
    LM_SHARE_AVAILABLE = 0,
    LM_SHARE_ACQUIRED = 1,
    LM_SHARE_ACKNOWLEDGED = 2,
    LM_SHARE_ARCHIVED = 4,
};

/* AcknowledgeTypes of ShareFetch/ShareAcknowledge (KIP-932). */
enum lm_share_ack {
    LM_SHARE_ACK_GAP = 0,
    LM_SHARE_ACK_ACCEPT = 1,
    LM_SHARE_ACK_RELEASE = 2,
    LM_SHARE_ACK_REJECT = 3,
};

struct lm_share_config {
    int32_t lock_ms;        /* group.share.record.lock.duration.ms (30000) */
    int32_t delivery_limit; /* group.share.delivery.count.limit (5) */
    int32_t max_in_flight;  /* group.share.partition.max.record.locks (2000) */
};

/* A run of acquired records with the same delivery count. */
struct lm_share_range {
    int64_t first;
    int64_t last; /* inclusive */
    int16_t delivery_count;
};

struct lm_share_rec {
    uint8_t state;
    uint8_t deliveries;
    uint64_t member; /* hash of the acquiring member's id */
    int64_t deadline_ms;
};

struct lm_share_part {
    struct lm_share_config cfg;
    bool initialized; /* start set (share.auto.offset.reset) */
    int64_t start;
    int64_t end;
    int32_t head;              /* ring index of start in recs */
    struct lm_share_rec *recs; /* ring of max_in_flight records, [start, end) in use */
};

/* lm_share_config_default fills Kafka 4.1's defaults. */
void lm_share_config_default(struct lm_share_config *cfg);
/* lm_share_member_hash names a member id in the records (FNV-1a, 64 bits). */
uint64_t lm_share_member_hash(const char *id, int32_t len);

/* lm_share_part_init makes an empty, uninitialized share partition (cfg copied). Returns 0 or
 * LM_E_NOMEM. Free with lm_share_part_deinit. */
int lm_share_part_init(struct lm_share_part *sp, const struct lm_share_config *cfg);
void lm_share_part_deinit(struct lm_share_part *sp);
/* lm_share_part_start sets the start offset the first time (from share.auto.offset.reset);
 * later calls do nothing. */
void lm_share_part_start(struct lm_share_part *sp, int64_t offset);
/* lm_share_part_reset starts the share partition over at offset (AlterShareGroupOffsets of an
 * empty group): the window is emptied, every in-flight state and delivery count dropped, so
 * the records from offset on are all AVAILABLE with no delivery yet, those below it done. */
void lm_share_part_reset(struct lm_share_part *sp, int64_t offset);
/* lm_share_part_clamp moves the window's start up to log_start when records below it are gone
 * (retention, DeleteRecords): they count as archived. */
void lm_share_part_clamp(struct lm_share_part *sp, int64_t log_start);

/* lm_share_part_expire makes records whose lock deadline passed AVAILABLE again (ARCHIVED at
 * the delivery limit). Returns how many locks expired. */
int32_t lm_share_part_expire(struct lm_share_part *sp, int64_t now_ms);
/* lm_share_part_next returns the first offset an acquire could take (an AVAILABLE record in
 * the window, else end when end < log_end and the window has room), or -1 when none. */
int64_t lm_share_part_next(const struct lm_share_part *sp, int64_t log_end);
/* lm_share_part_acquire acquires for member up to max_records records with offsets in
 * [from, upto] (upto: the last offset the caller has read from the log; offsets at end and
 * above extend the window, below log_end only), locking them until now_ms + lock_ms.
 * Writes at most max_ranges ranges to out, returns how many. */
int32_t lm_share_part_acquire(struct lm_share_part *sp, int64_t now_ms, uint64_t member,
                              int64_t from, int64_t upto, int64_t log_end, int32_t max_records,
                              struct lm_share_range *out, int32_t max_ranges);
/* A run of offsets [first, last] that no consumer is handed (Kafka archives them): a control
 * batch (transaction marker, Raft control record), or under share.isolation.level
 * read_committed a batch of an aborted transaction. */
struct lm_share_skip {
    int64_t first;
    int64_t last; /* inclusive */
};
/* lm_share_part_acquire_skip is lm_share_part_acquire where the offsets in skip[0..n_skip)
 * (ascending, disjoint) that it would acquire are ARCHIVED instead: no delivery counted, not in
 * the ranges, not counted against max_records. *archived (may be NULL) gets how many were. */
int32_t lm_share_part_acquire_skip(struct lm_share_part *sp, int64_t now_ms, uint64_t member,
                                   int64_t from, int64_t upto, int64_t log_end, int32_t max_records,
                                   const struct lm_share_skip *skip, int32_t n_skip,
                                   struct lm_share_range *out, int32_t max_ranges,
                                   int32_t *archived);

/* An aborted transaction (from the log's transaction index): producer_id's batches in
 * [first_offset, last_offset) were aborted; last_offset is its abort marker. */
struct lm_share_aborted {
    int64_t producer_id;
    int64_t first_offset;
    int64_t last_offset;
};
/* lm_share_skips lists the runs of the record batches in data[0..len) (as read from the log,
 * whole v2 batches) that are not to be delivered: every control batch, and with read_committed
 * the transactional batches of a producer inside one of its aborted transactions in
 * aborted[0..n_aborted). Adjacent runs are merged. Writes at most cap to out and returns how
 * many (a batch that does not parse ends the walk: what follows is not skipped). */
int32_t lm_share_skips(const uint8_t *data, size_t len, bool read_committed,
                       const struct lm_share_aborted *aborted, int32_t n_aborted,
                       struct lm_share_skip *out, int32_t cap);

/* lm_share_part_lock_deadline returns the earliest lock deadline of an ACQUIRED record, or
 * INT64_MAX when none is held: when a lock timeout can make a record available. */
int64_t lm_share_part_lock_deadline(const struct lm_share_part *sp);

/* lm_share_part_ack applies one acknowledgement of [first, last] of one type by member: every
 * record in it must be ACQUIRED by member (a GAP may also name records never acquired).
 * Returns 0 (Kafka NONE) or a Kafka error code: INVALID_RECORD_STATE (nothing applied) or
 * INVALID_REQUEST (bad type or range). */
int16_t lm_share_part_ack(struct lm_share_part *sp, uint64_t member, int64_t first, int64_t last,
                          int8_t type);
/* lm_share_part_release_member makes every record member holds AVAILABLE again (its share
 * session closed or it left), counting as a delivery. Returns how many. */
int32_t lm_share_part_release_member(struct lm_share_part *sp, uint64_t member);
/* lm_share_part_state returns the state of offset (ACKNOWLEDGED below start, AVAILABLE at end
 * or above), and its delivery count in *deliveries (may be NULL). */
int lm_share_part_state(const struct lm_share_part *sp, int64_t offset, int32_t *deliveries);
/* lm_share_part_in_flight returns end - start. */
int64_t lm_share_part_in_flight(const struct lm_share_part *sp);

#endif
