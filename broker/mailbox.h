/* Bounded single-producer/single-consumer mailbox of pointers between two shards (DESIGN.md §2).
 * Lock-free: the producer writes only tail, the consumer only head (C11 acquire/release).
 * The capacity is a power of two fixed at init; a full mailbox refuses (LM_E_FULL) so the
 * producer applies backpressure. */
#ifndef LAMINAR_BROKER_MAILBOX_H
#define LAMINAR_BROKER_MAILBOX_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

struct broker_mailbox {
    alignas(64) _Atomic uint32_t head; /* next slot to read, written by the consumer */
    alignas(64) _Atomic uint32_t tail; /* next slot to write, written by the producer */
    alignas(64) uint32_t mask;
    void **slots;
};

/* Allocates a mailbox of capacity slots (a power of two, >= 2). Returns 0 or LM_E_NOMEM. */
int broker_mailbox_init(struct broker_mailbox *mb, uint32_t capacity);
/* Frees the slots; items still queued are not touched (the caller owns them). */
void broker_mailbox_deinit(struct broker_mailbox *mb);
/* Producer side: enqueues item (not NULL, stays owned by the caller's protocol). Returns 0 or
 * LM_E_FULL. */
int broker_mailbox_push(struct broker_mailbox *mb, void *item);
/* Consumer side: dequeues the oldest item, or returns NULL when empty. */
void *broker_mailbox_pop(struct broker_mailbox *mb);
/* Approximate number of queued items (exact when called by either side while the other idles). */
uint32_t broker_mailbox_count(struct broker_mailbox *mb);

#endif
