#include "broker/arena.h"

#include <stdint.h>
#include <stdlib.h>

#include "common/lm_assert.h"

struct broker_arena_chunk {
    struct broker_arena_chunk *next;
    size_t cap;
    size_t used;
    _Alignas(16) unsigned char data[];
};

enum { ARENA_CHUNK_BYTES = 4096 };

void broker_arena_init(struct broker_arena *a, size_t size_bytes_max)
{
    LM_ASSERT(size_bytes_max > 0);
    a->chunk = NULL;
    a->size_bytes_total = 0;
    a->size_bytes_max = size_bytes_max;
}

void broker_arena_deinit(struct broker_arena *a)
{
    struct broker_arena_chunk *c = a->chunk;
    while (c != NULL) {
        struct broker_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->chunk = NULL;
    a->size_bytes_total = 0;
}

void *broker_arena_alloc(struct broker_arena *a, size_t size)
{
    size_t need = (size + 15) & ~(size_t)15;
    if (need < size)
        return NULL;
    struct broker_arena_chunk *c = a->chunk;
    if (c == NULL || c->cap - c->used < need) {
        size_t cap = need > ARENA_CHUNK_BYTES ? need : ARENA_CHUNK_BYTES;
        if (a->size_bytes_total + cap > a->size_bytes_max)
            return NULL;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->cap = cap;
        c->used = 0;
        c->next = a->chunk;
        a->chunk = c;
        a->size_bytes_total += cap;
    }
    LM_ASSERT(c->cap - c->used >= need);
    void *p = c->data + c->used;
    c->used += need;
    LM_ASSERT(((uintptr_t)p & 15) == 0);
    return p;
}
