#include "broker/respq.h"

#include <stdlib.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

int broker_respq_init(struct broker_respq *q, uint32_t capacity)
{
    LM_ASSERT(capacity > 0);
    q->items = calloc(capacity, sizeof(void *));
    if (q->items == NULL)
        return LM_E_NOMEM;
    q->capacity = capacity;
    q->head_seq = 0;
    q->next_seq = 0;
    return 0;
}

void broker_respq_deinit(struct broker_respq *q)
{
    free(q->items);
    q->items = NULL;
}

int broker_respq_reserve(struct broker_respq *q, uint64_t *seq)
{
    LM_ASSERT(q->next_seq >= q->head_seq);
    if (q->next_seq - q->head_seq >= q->capacity)
        return LM_E_FULL;
    LM_ASSERT(q->items[q->next_seq % q->capacity] == NULL);
    *seq = q->next_seq++;
    return 0;
}

void broker_respq_complete(struct broker_respq *q, uint64_t seq, void *item)
{
    LM_ASSERT(item != NULL);
    LM_ASSERT(seq >= q->head_seq && seq < q->next_seq);
    LM_ASSERT(q->items[seq % q->capacity] == NULL);
    q->items[seq % q->capacity] = item;
}

void *broker_respq_peek(const struct broker_respq *q)
{
    if (q->head_seq == q->next_seq)
        return NULL;
    return q->items[q->head_seq % q->capacity];
}

void *broker_respq_pop(struct broker_respq *q)
{
    LM_ASSERT(q->head_seq < q->next_seq);
    void *item = q->items[q->head_seq % q->capacity];
    LM_ASSERT(item != NULL);
    q->items[q->head_seq % q->capacity] = NULL;
    q->head_seq++;
    return item;
}

uint32_t broker_respq_inflight(const struct broker_respq *q)
{
    return (uint32_t)(q->next_seq - q->head_seq);
}
