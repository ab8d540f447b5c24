/* Per-request arena (DESIGN.md §7): a bump allocator over a chain of chunks, freed in one go
 * after the request's response has left. Handlers allocate their decoded request and encoded
 * response here. */
#ifndef LAMINAR_BROKER_ARENA_H
#define LAMINAR_BROKER_ARENA_H

#include <stddef.h>

struct broker_arena_chunk;

struct broker_arena {
    struct broker_arena_chunk *chunk;
    size_t size_bytes_total; /* bytes taken from malloc, for the shard's memory accounting */
    size_t size_bytes_max;   /* refuse allocations beyond this total */
};

/* Initialises an empty arena that may grow up to size_bytes_max. */
void broker_arena_init(struct broker_arena *a, size_t size_bytes_max);
/* Frees every chunk. */
void broker_arena_deinit(struct broker_arena *a);
/* Returns size bytes aligned to 16, owned by the arena, or NULL when over its limit or OOM. */
void *broker_arena_alloc(struct broker_arena *a, size_t size);

#endif
