#include "broker/mailbox.h"

#include <stdlib.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

int broker_mailbox_init(struct broker_mailbox *mb, uint32_t capacity)
{
    LM_ASSERT(capacity >= 2 && (capacity & (capacity - 1)) == 0);
    mb->slots = calloc(capacity, sizeof(void *));
    if (mb->slots == NULL)
        return LM_E_NOMEM;
    mb->mask = capacity - 1;
    atomic_store_explicit(&mb->head, 0, memory_order_relaxed);
    atomic_store_explicit(&mb->tail, 0, memory_order_relaxed);
    return 0;
}

void broker_mailbox_deinit(struct broker_mailbox *mb)
{
    free(mb->slots);
    mb->slots = NULL;
}

int broker_mailbox_push(struct broker_mailbox *mb, void *item)
{
    LM_ASSERT(item != NULL);
    uint32_t tail = atomic_load_explicit(&mb->tail, memory_order_relaxed);
    uint32_t head = atomic_load_explicit(&mb->head, memory_order_acquire);
    LM_ASSERT(tail - head <= mb->mask + 1);
    if (tail - head == mb->mask + 1)
        return LM_E_FULL;
    mb->slots[tail & mb->mask] = item;
    atomic_store_explicit(&mb->tail, tail + 1, memory_order_release);
    return 0;
}

void *broker_mailbox_pop(struct broker_mailbox *mb)
{
    uint32_t head = atomic_load_explicit(&mb->head, memory_order_relaxed);
    uint32_t tail = atomic_load_explicit(&mb->tail, memory_order_acquire);
    if (head == tail)
        return NULL;
    LM_ASSERT(tail - head <= mb->mask + 1);
    void *item = mb->slots[head & mb->mask];
    LM_ASSERT(item != NULL);
    atomic_store_explicit(&mb->head, head + 1, memory_order_release);
    return item;
}

uint32_t broker_mailbox_count(struct broker_mailbox *mb)
{
    uint32_t tail = atomic_load_explicit(&mb->tail, memory_order_acquire);
    uint32_t head = atomic_load_explicit(&mb->head, memory_order_acquire);
    return tail - head;
}
