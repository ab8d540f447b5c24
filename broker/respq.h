/* In-order response queue of one connection. Kafka requires responses on a connection in
 * request order; requests may complete out of order (Fetch long-polls, cross-shard parts), so
 * each request takes a sequence number and only the oldest completed one may be sent.
 * The capacity is the per-connection in-flight bound: reserve fails when it is reached. */
#ifndef LAMINAR_BROKER_RESPQ_H
#define LAMINAR_BROKER_RESPQ_H

#include <stdint.h>

struct broker_respq {
    uint64_t head_seq; /* oldest sequence not yet popped */
    uint64_t next_seq; /* next sequence to hand out */
    uint32_t capacity;
    void **items; /* items[seq % capacity], NULL until completed */
};

/* Allocates a queue for capacity in-flight requests. Returns 0 or LM_E_NOMEM. */
int broker_respq_init(struct broker_respq *q, uint32_t capacity);
/* Frees the slot array (items are owned by the caller). */
void broker_respq_deinit(struct broker_respq *q);
/* Takes the next sequence number into *seq; LM_E_FULL when capacity requests are in flight. */
int broker_respq_reserve(struct broker_respq *q, uint64_t *seq);
/* Marks seq completed with item (borrowed, not NULL). seq must be reserved and not completed. */
void broker_respq_complete(struct broker_respq *q, uint64_t seq, void *item);
/* Returns the item of the oldest sequence if it has completed, else NULL. */
void *broker_respq_peek(const struct broker_respq *q);
/* Removes the oldest sequence, which must have completed; returns its item. */
void *broker_respq_pop(struct broker_respq *q);
/* Number of reserved sequences not yet popped. */
uint32_t broker_respq_inflight(const struct broker_respq *q);

#endif
