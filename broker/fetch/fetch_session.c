/* Incremental fetch sessions: the cache (fetch_session.h). */
#include "broker/fetch/fetch_session.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"

#define FSESS_INDEX_EMPTY UINT32_MAX

/* ---- ids ----------------------------------------------------------------------------------- */

static uint64_t rng_next(struct fsess_cache *c)
{
    /* xorshift64*: ids need only be hard to collide with, not secret */
    uint64_t x = c->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    c->rng = x;
    return x * 0x2545f4914f6cdd1dull;
}

static uint32_t bucket_of(const struct fsess_cache *c, int32_t id)
{
    return (uint32_t)(((uint64_t)(uint32_t)id * 0x9e3779b97f4a7c15ull) >> 32) % c->bucket_count;
}

int fsess_cache_init(struct fsess_cache *c, uint32_t slots, uint64_t eviction_ms,
                     uint64_t parts_max, uint32_t shard, uint32_t shards, uint64_t seed)
{
    memset(c, 0, sizeof(*c));
    if (shards == 0)
        shards = 1;
    LM_ASSERT(shard < shards);
    c->slots = slots;
    c->eviction_ms = eviction_ms;
    c->parts_max = parts_max;
    /* FetchSessionCacheShard's ranges: max(1, shard * range) <= id < (shard + 1) * range */
    int32_t range = (int32_t)(INT32_MAX / (int32_t)shards);
    c->id_lo = shard == 0 ? 1 : (int32_t)shard * range;
    c->id_hi = shard + 1 == shards ? INT32_MAX : ((int32_t)shard + 1) * range;
    c->rng = seed != 0 ? seed : 0x853c49e6748fea9bull;
    c->bucket_count = slots < 16 ? 16 : slots;
    c->buckets = calloc(c->bucket_count, sizeof(*c->buckets));
    return c->buckets == NULL ? LM_E_NOMEM : 0;
}

static void session_free(struct fsess *s)
{
    for (uint32_t i = 0; i < s->n; i++)
        free(s->parts[i].topic);
    free(s->parts);
    free(s->index);
    free(s);
}

void fsess_cache_free(struct fsess_cache *c)
{
    for (uint32_t b = 0; c->buckets != NULL && b < c->bucket_count; b++) {
        struct fsess *s = c->buckets[b];
        while (s != NULL) {
            struct fsess *next = s->next;
            session_free(s);
            s = next;
        }
    }
    free(c->buckets);
    memset(c, 0, sizeof(*c));
}

bool fsess_id_ours(const struct fsess_cache *c, int32_t id)
{
    return id >= c->id_lo && id < c->id_hi;
}

struct fsess *fsess_find(struct fsess_cache *c, int32_t id)
{
    if (c->buckets == NULL || !fsess_id_ours(c, id))
        return NULL;
    for (struct fsess *s = c->buckets[bucket_of(c, id)]; s != NULL; s = s->next)
        if (s->id == id)
            return s;
    return NULL;
}

static void unlink_free(struct fsess_cache *c, struct fsess *dead)
{
    struct fsess **pp = &c->buckets[bucket_of(c, dead->id)];
    while (*pp != dead)
        pp = &(*pp)->next;
    *pp = dead->next;
    LM_ASSERT(c->count > 0 && c->parts_total >= dead->n);
    c->count--;
    c->parts_total -= dead->n;
    session_free(dead);
}

void fsess_remove(struct fsess_cache *c, int32_t id)
{
    struct fsess *s = fsess_find(c, id);
    if (s != NULL)
        unlink_free(c, s);
}

/* ---- eviction ------------------------------------------------------------------------------ */

/* EvictableKey order: unprivileged first, then fewer partitions, then the lower id. */
static int key_cmp(bool pa, uint32_t sa, int32_t ia, bool pb, uint32_t sb, int32_t ib)
{
    if (pa != pb)
        return pa ? 1 : -1;
    if (sa != sb)
        return sa < sb ? -1 : 1;
    return ia < ib ? -1 : ia > ib ? 1 : 0;
}

/* FetchSessionCache.tryEvict, with "evictable" judged at the time of the eviction. */
static bool try_evict(struct fsess_cache *c, uint64_t now_ms, bool privileged, uint32_t size)
{
    struct fsess *lru = NULL, *cheapest = NULL;
    for (uint32_t b = 0; b < c->bucket_count; b++)
        for (struct fsess *s = c->buckets[b]; s != NULL; s = s->next) {
            if (lru == NULL || s->used_ms < lru->used_ms ||
                (s->used_ms == lru->used_ms && s->id < lru->id))
                lru = s;
            bool old = now_ms - s->created_ms > c->eviction_ms;
            bool evictable = privileged ? (!s->privileged || old) : old;
            if (evictable &&
                (cheapest == NULL || key_cmp(s->privileged, s->n, s->id, cheapest->privileged,
                                             cheapest->n, cheapest->id) < 0))
                cheapest = s;
        }
    if (lru != NULL && now_ms - lru->used_ms > c->eviction_ms) {
        unlink_free(c, lru);
        c->evictions++;
        return true;
    }
    if (cheapest == NULL ||
        key_cmp(privileged, size, 0, cheapest->privileged, cheapest->n, cheapest->id) < 0)
        return false;
    unlink_free(c, cheapest);
    c->evictions++;
    return true;
}

struct fsess *fsess_create(struct fsess_cache *c, uint64_t now_ms, bool privileged, bool by_id,
                           uint32_t size)
{
    if (c->slots == 0 || c->buckets == NULL || size == 0 || size > c->parts_max)
        return NULL;
    if (c->count >= c->slots && !try_evict(c, now_ms, privileged, size))
        return NULL;
    struct fsess *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NULL;
    uint64_t span = (uint64_t)(c->id_hi - c->id_lo);
    do
        s->id = c->id_lo + (int32_t)(rng_next(c) % span);
    while (fsess_find(c, s->id) != NULL);
    s->epoch = fsess_next_epoch(FSESS_INITIAL_EPOCH);
    s->privileged = privileged;
    s->by_id = by_id;
    s->created_ms = s->used_ms = now_ms;
    uint32_t b = bucket_of(c, s->id);
    s->next = c->buckets[b];
    c->buckets[b] = s;
    c->count++;
    return s;
}

void fsess_touch(struct fsess *s, uint64_t now_ms)
{
    s->used_ms = now_ms;
}

int32_t fsess_next_epoch(int32_t epoch)
{
    if (epoch < 0)
        return FSESS_FINAL_EPOCH; /* the final epoch stays final */
    if (epoch == INT32_MAX)
        return 1; /* wraps past the initial epoch */
    return epoch + 1;
}

/* ---- partitions ---------------------------------------------------------------------------- */

static uint64_t key_hash(bool by_id, const struct fsess_key *k)
{
    uint64_t h = by_id ? lm_fnv1a64(k->topic_id, 16) : lm_fnv1a64(k->topic, k->topic_len);
    return lm_fnv1a64_update(h, &k->partition, sizeof(k->partition));
}

static bool key_eq(bool by_id, const struct fsess_part *p, const struct fsess_key *k)
{
    if (p->partition != k->partition)
        return false;
    if (by_id)
        return memcmp(p->topic_id, k->topic_id, 16) == 0;
    return p->topic_len == k->topic_len && memcmp(p->topic, k->topic, k->topic_len) == 0;
}

static struct fsess_key key_of(const struct fsess_part *p)
{
    struct fsess_key k = {.topic = p->topic, .topic_len = p->topic_len, .partition = p->partition};
    memcpy(k.topic_id, p->topic_id, 16);
    return k;
}

static void index_insert(struct fsess *s, uint32_t i)
{
    struct fsess_key k = key_of(&s->parts[i]);
    uint32_t at = (uint32_t)key_hash(s->by_id, &k) & (s->index_cap - 1);
    while (s->index[at] != FSESS_INDEX_EMPTY)
        at = (at + 1) & (s->index_cap - 1);
    s->index[at] = i;
}

/* Positions changed: the index is refilled in place (same capacity). */
static void index_fill(struct fsess *s)
{
    memset(s->index, 0xff, (size_t)s->index_cap * sizeof(*s->index));
    for (uint32_t i = 0; i < s->n; i++)
        index_insert(s, i);
}

static int index_grow(struct fsess *s, uint32_t cap)
{
    uint32_t *idx = malloc((size_t)cap * sizeof(*idx));
    if (idx == NULL)
        return LM_E_NOMEM;
    free(s->index);
    s->index = idx;
    s->index_cap = cap;
    index_fill(s);
    return 0;
}

int64_t fsess_lookup(const struct fsess *s, const struct fsess_key *k)
{
    if (s->index_cap == 0)
        return -1;
    uint32_t at = (uint32_t)key_hash(s->by_id, k) & (s->index_cap - 1);
    while (s->index[at] != FSESS_INDEX_EMPTY) {
        const struct fsess_part *p = &s->parts[s->index[at]];
        if (!p->forgotten && key_eq(s->by_id, p, k))
            return s->index[at];
        at = (at + 1) & (s->index_cap - 1);
    }
    return -1;
}

int64_t fsess_put(struct fsess_cache *c, struct fsess *s, const struct fsess_key *k,
                  int32_t max_bytes, int64_t fetch_offset, int64_t fetcher_log_start,
                  int32_t current_leader_epoch, int32_t last_fetched_epoch)
{
    int64_t at = fsess_lookup(s, k);
    if (at < 0) {
        if (c->parts_total >= c->parts_max || s->n == UINT32_MAX / 4)
            return -1;
        if (s->n == s->cap) {
            uint32_t ncap = s->cap ? s->cap * 2 : 8;
            struct fsess_part *np = realloc(s->parts, (size_t)ncap * sizeof(*np));
            if (np == NULL)
                return -1;
            s->parts = np;
            s->cap = ncap;
        }
        /* the index stays at most half full */
        if ((s->n + 1) * 2 > s->index_cap &&
            index_grow(s, s->index_cap ? s->index_cap * 2 : 16) != 0)
            return -1;
        struct fsess_part *p = &s->parts[s->n];
        memset(p, 0, sizeof(*p));
        if (!s->by_id) {
            p->topic = malloc(k->topic_len + 1);
            if (p->topic == NULL)
                return -1;
            memcpy(p->topic, k->topic, k->topic_len);
            p->topic[k->topic_len] = '\0';
            p->topic_len = k->topic_len;
        }
        memcpy(p->topic_id, k->topic_id, 16);
        p->partition = k->partition;
        p->high_watermark = -1;
        p->local_log_start = -1;
        at = s->n++;
        c->parts_total++;
        index_insert(s, (uint32_t)at);
    }
    struct fsess_part *p = &s->parts[at];
    p->max_bytes = max_bytes;
    p->fetch_offset = fetch_offset;
    p->fetcher_log_start = fetcher_log_start;
    p->current_leader_epoch = current_leader_epoch;
    p->last_fetched_epoch = last_fetched_epoch;
    return at;
}

bool fsess_forget(struct fsess_cache *c, struct fsess *s, const struct fsess_key *k)
{
    int64_t at = fsess_lookup(s, k);
    if (at < 0)
        return false;
    s->parts[at].forgotten = true;
    s->n_forgotten++;
    c->parts_total--;
    return true;
}

void fsess_forget_done(struct fsess *s)
{
    if (s->n_forgotten == 0)
        return;
    uint32_t keep = 0;
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->parts[i].forgotten) {
            free(s->parts[i].topic);
            continue;
        }
        s->parts[keep++] = s->parts[i];
    }
    LM_ASSERT(s->n - keep == s->n_forgotten);
    s->n = keep;
    s->n_forgotten = 0;
    index_fill(s);
}

bool fsess_must_respond(struct fsess_part *p, uint64_t record_bytes, int64_t high_watermark,
                        int64_t log_start, int16_t error, bool diverging, bool update)
{
    bool must = record_bytes > 0 || diverging;
    if (p->high_watermark != high_watermark) {
        must = true;
        if (update)
            p->high_watermark = high_watermark;
    }
    if (p->local_log_start != log_start) {
        must = true;
        if (update)
            p->local_log_start = log_start;
    }
    if (error != 0) {
        /* forgotten, so the partition is sent again once the error clears */
        if (update)
            p->high_watermark = -1;
        must = true;
    }
    return must;
}

int fsess_rotate(struct fsess *s, const bool *to_back)
{
    uint32_t moved = 0;
    for (uint32_t i = 0; i < s->n; i++)
        moved += to_back[i];
    if (moved == 0 || moved == s->n)
        return 0;
    struct fsess_part *np = malloc((size_t)s->cap * sizeof(*np));
    if (np == NULL)
        return LM_E_NOMEM;
    uint32_t front = 0, back = s->n - moved;
    for (uint32_t i = 0; i < s->n; i++)
        np[to_back[i] ? back++ : front++] = s->parts[i];
    free(s->parts);
    s->parts = np;
    index_fill(s);
    return 0;
}
