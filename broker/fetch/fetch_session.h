/* Incremental fetch sessions (KIP-227) as Kafka's FetchSessionCache holds them: pure state,
 * no I/O. A session remembers the partitions a fetcher asked for (fetch offset, limits) and
 * what it was last told about each (high watermark, log start offset), so that its next
 * request names only what changed and the response carries only what changed.
 *
 * One cache per shard (a connection is served by one shard): each owns a slice of the session
 * id space, so an id names the shard that made it, and slots are divided among the shards.
 * Eviction follows FetchSessionCache.tryEvict: a session unused for eviction_ms goes first;
 * otherwise the cheapest evictable one (unprivileged before privileged, fewer partitions
 * first) gives way to a larger new one, where a session younger than eviction_ms is only
 * evictable by a privileged (follower) newcomer when it is itself unprivileged.
 *
 * Memory is bounded: `slots` sessions and `parts_max` cached partitions per cache. */
#ifndef LAMINAR_BROKER_FETCH_FETCH_SESSION_H
#define LAMINAR_BROKER_FETCH_FETCH_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* FetchMetadata's epochs. */
#define FSESS_INITIAL_EPOCH 0
#define FSESS_FINAL_EPOCH   (-1)

struct fsess_key {
    uint8_t topic_id[16]; /* sessions by id (Fetch v13+) */
    const char *topic;    /* sessions by name (v7-12): not owned here */
    size_t topic_len;
    int32_t partition;
};

struct fsess_part {
    uint8_t topic_id[16];
    char *topic; /* owned, NUL-terminated; NULL in a session by id */
    size_t topic_len;
    int32_t partition;
    /* the fetcher's request parameters, as last sent */
    int32_t max_bytes;
    int64_t fetch_offset;
    int64_t fetcher_log_start;
    int32_t current_leader_epoch;
    int32_t last_fetched_epoch;
    /* what the fetcher was last told (-1: nothing, or an error) */
    int64_t high_watermark;
    int64_t local_log_start;
    bool forgotten; /* removed by fsess_forget, dropped at fsess_forget_done */
};

struct fsess {
    int32_t id;
    int32_t epoch; /* the epoch the next incremental request must carry */
    bool privileged;
    bool by_id;
    uint64_t created_ms, used_ms;
    struct fsess_part *parts; /* in the order the response lists them */
    uint32_t n, cap;
    uint32_t n_forgotten; /* of parts[0..n), awaiting fsess_forget_done */
    uint32_t *index;      /* open addressing over parts, UINT32_MAX empty; index_cap a power of 2 */
    uint32_t index_cap;
    struct fsess *next; /* hash chain */
};

struct fsess_cache {
    uint32_t slots;
    uint32_t count;
    uint64_t eviction_ms;
    uint64_t parts_max;
    uint64_t parts_total;
    int32_t id_lo, id_hi; /* ids this cache hands out: [id_lo, id_hi) */
    uint64_t rng;
    struct fsess **buckets;
    uint32_t bucket_count;
    uint64_t evictions;
};

/* The cache of shard `shard` of `shards`. slots 0 turns sessions off (every fetch is
 * sessionless). Returns 0 or LM_E_NOMEM. */
int fsess_cache_init(struct fsess_cache *c, uint32_t slots, uint64_t eviction_ms,
                     uint64_t parts_max, uint32_t shard, uint32_t shards, uint64_t seed);
void fsess_cache_free(struct fsess_cache *c);

/* Whether `id` is one this cache hands out (another shard's otherwise). */
bool fsess_id_ours(const struct fsess_cache *c, int32_t id);
struct fsess *fsess_find(struct fsess_cache *c, int32_t id);
/* Removes and frees the session (no-op for an unknown id). */
void fsess_remove(struct fsess_cache *c, int32_t id);

/* A new empty session for `size` partitions, making room as Kafka does; NULL when no slot can
 * be had (the fetch goes on sessionless), or size exceeds what the cache may hold. */
struct fsess *fsess_create(struct fsess_cache *c, uint64_t now_ms, bool privileged, bool by_id,
                           uint32_t size);

/* Adds a partition to s or updates its request parameters (FetchSession.update). Returns its
 * position, or -1 when the cache's partition budget or memory is exhausted. */
int64_t fsess_put(struct fsess_cache *c, struct fsess *s, const struct fsess_key *k,
                  int32_t max_bytes, int64_t fetch_offset, int64_t fetcher_log_start,
                  int32_t current_leader_epoch, int32_t last_fetched_epoch);
/* Removes a partition (forgotten_topics_data); false when s did not hold it. The removal is
 * marked (lookups no longer find it) and carried out for all of a request's forgotten
 * partitions at once by fsess_forget_done, which must come before positions are used again:
 * a request forgetting k of n partitions costs O(n + k), not O(k * n). */
bool fsess_forget(struct fsess_cache *c, struct fsess *s, const struct fsess_key *k);
void fsess_forget_done(struct fsess *s);
int64_t fsess_lookup(const struct fsess *s, const struct fsess_key *k);

/* Marks s used now (its place in eviction order). */
void fsess_touch(struct fsess *s, uint64_t now_ms);

/* FetchMetadata.nextEpoch. */
int32_t fsess_next_epoch(int32_t epoch);

/* CachedPartition.maybeUpdateResponseData: whether a partition's answer must be in an
 * incremental response (records, a changed high watermark or log start offset, an error, a
 * diverging epoch), updating what the session remembers when `update`. */
bool fsess_must_respond(struct fsess_part *p, uint64_t record_bytes, int64_t high_watermark,
                        int64_t log_start, int16_t error, bool diverging, bool update);

/* Moves the partitions flagged in `to_back` (one flag per partition, in the current order) to
 * the end, keeping both groups' order: those that returned records go last next time, so a
 * response's byte budget is shared fairly. Returns 0 or LM_E_NOMEM (order unchanged). */
int fsess_rotate(struct fsess *s, const bool *to_back);

#endif
