/* Which partitions a transaction version 2 producer's transaction already holds, as one shard
 * saw its coordinator confirm them (KIP-890 part 2's implicit add, answered for a Produce v12+).
 *
 * A leader asks the coordinator before it appends a transactional batch; Kafka asks only when
 * the partition has no transaction of that producer and epoch going on. Under transaction
 * version 2 every commit and abort bumps the producer's epoch, and the partition's markers carry
 * the bumped epoch, so "(producer id, epoch) was added to this partition" stays true for as long
 * as a batch of that epoch can be accepted there: after the transaction ends, the producer state
 * fences the old epoch. The cache lets a shard skip the coordinator for later batches of the
 * same transaction to the same partition. It never applies to transaction version 1 clients
 * (Produce before v12), whose epoch outlives the transaction.
 *
 * The fencing rests on the partition's producer state still holding the producer, which it
 * forgets when idle or crowded out; an entry is therefore believed for TXN_ADDED_TTL_MS only.
 * Direct-mapped and bounded (TXN_ADDED_SLOTS entries, a colliding entry replaces the older):
 * forgetting costs one more coordinator call, never a wrong answer.
 *
 * Order: a client pipelines Produce requests on its connection, and the partitions append
 * them in the order they reach them. A request that skips the coordinator would overtake an
 * earlier one of the same producer still waiting for it (its batches then out of sequence,
 * OUT_OF_ORDER_SEQUENCE_NUMBER), so nothing of a producer skips while one of its requests is
 * with the coordinator (txn_added_busy); those requests stay in order there, as the
 * coordinator answers one producer's adds in order. */
#ifndef LAMINAR_BROKER_TXN_TXN_ADDED_H
#define LAMINAR_BROKER_TXN_TXN_ADDED_H

#include <stdbool.h>
#include <stdint.h>

#define TXN_ADDED_SLOTS  4096
#define TXN_ADDED_TTL_MS 10000

struct txn_added_entry {
    int64_t producer_id; /* -1: free */
    int16_t epoch;
    int32_t partition;
    uint8_t topic_id[16];
    uint64_t at_ms; /* when the coordinator confirmed it */
};

#define TXN_ADDED_INFLIGHT 64

struct txn_added {
    struct txn_added_entry slot[TXN_ADDED_SLOTS];
    uint64_t hits, misses;
    /* requests with the coordinator, per producer (n > 0: slot in use), and those of
     * producers no slot was free for (then every producer counts as busy) */
    struct {
        int64_t producer_id;
        uint32_t n;
    } inflight[TXN_ADDED_INFLIGHT];
    uint32_t inflight_other;
};

void txn_added_init(struct txn_added *c);
/* Whether the coordinator confirmed (producer_id, epoch) on partition (topic_id, partition)
 * within TXN_ADDED_TTL_MS before now_ms; counts a hit or a miss. */
bool txn_added_has(struct txn_added *c, int64_t producer_id, int16_t epoch,
                   const uint8_t topic_id[16], int32_t partition, uint64_t now_ms);
/* Records a confirmation at now_ms (replacing whatever shared its slot). */
void txn_added_put(struct txn_added *c, int64_t producer_id, int16_t epoch,
                   const uint8_t topic_id[16], int32_t partition, uint64_t now_ms);

/* Whether a request of producer_id is with the coordinator (nothing of it may skip). */
bool txn_added_busy(const struct txn_added *c, int64_t producer_id);
/* A request of producer_id goes to the coordinator; returns the token to end it with. */
int txn_added_begin(struct txn_added *c, int64_t producer_id);
/* Its answer came (token from txn_added_begin). */
void txn_added_end(struct txn_added *c, int token);

#endif
