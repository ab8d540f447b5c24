/* FNV-1a (Fowler/Noll/Vo), for in-memory hash tables and for placing partitions on shards:
 * cheap, no seed, stable across runs and builds. Not for anything an attacker's keys could
 * target where collisions would cost more than a longer bucket chain. */
#ifndef LAMINAR_COMMON_LM_HASH_H
#define LAMINAR_COMMON_LM_HASH_H

#include <stddef.h>
#include <stdint.h>

#define LM_FNV1A64_INIT 14695981039346656037ull
#define LM_FNV1A32_INIT 2166136261u

/* Continues a 64-bit FNV-1a hash h over n bytes (start with LM_FNV1A64_INIT). */
static inline uint64_t lm_fnv1a64_update(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 1099511628211ull;
    }
    return h;
}

static inline uint64_t lm_fnv1a64(const void *p, size_t n)
{
    return lm_fnv1a64_update(LM_FNV1A64_INIT, p, n);
}

static inline uint32_t lm_fnv1a32(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint32_t h = LM_FNV1A32_INIT;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 16777619u;
    return h;
}

#endif
