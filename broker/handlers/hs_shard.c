/* A shard's hooks (start, tick, drain, flush, stop) and its log compaction steps. */
#include "broker/handlers/handlers.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>
#include "broker/handlers/group_internal.h"
#include "broker/cluster/controller.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/handlers/txn_internal.h"
#include "common/lm_hash.h"
#include "broker/log.h"
#include "broker/producer/producer_state.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_messages.h"

/* ---- log compaction (cleanup.policy=compact, storage/compact.c) ---------------------------- */

/* Reading budget of one compaction step per shard tick: a pass over a large partition is spread
 * over many ticks so the shard never stalls for long (DESIGN.md §2). */
#define HANDLERS_COMPACT_BUDGET_BYTES (4u << 20)
/* How often (ticks) a shard without a running pass looks for a partition that is due (Kafka's
 * log.cleaner.backoff.ms is 15 s; the check here only walks segment lists). */
#define HANDLERS_COMPACT_CHECK_TICKS 5

static double topic_config_double(const struct hshard *hs, const struct htopic *tp,
                                  const char *name, double dflt)
{
    const char *v = NULL;
    enum lm_config_source src;
    size_t nd = 0;
    const struct lm_config_entry *defaults = hs_topic_defaults(hs, &nd);
    if (lm_topic_config_effective(name, tp->meta->configs, tp->meta->config_count, defaults, nd, &v,
                                  &src) != 0 ||
        v == NULL)
        return dflt;
    char *end;
    double d = strtod(v, &end);
    return end == v ? dflt : d;
}

static void compact_cfg_of(const struct hshard *hs, const struct htopic *tp,
                           struct storage_compact_config *cc)
{
    storage_compact_config_default(cc);
    cc->min_cleanable_dirty_ratio = topic_config_double(hs, tp, "min.cleanable.dirty.ratio", 0.5);
    double max_lag = topic_config_double(hs, tp, "max.compaction.lag.ms", -1);
    cc->max_compaction_lag_ms = max_lag <= 0 || max_lag >= 9e18 ? -1 : (int64_t)max_lag;
    cc->min_compaction_lag_ms = tp->settings.min_compaction_lag_ms;
    cc->delete_retention_ms = tp->settings.delete_retention_ms;
}

static void compact_step(struct hshard *hs, const struct htopic *tp, struct hpart *p)
{
    struct storage_compact_config cc;
    compact_cfg_of(hs, tp, &cc);
    bool busy;
    int rc = storage_log_compact_step(p->log, &cc, storage_log_high_watermark(p->log),
                                      HANDLERS_COMPACT_BUDGET_BYTES, &busy, NULL);
    hs->compact_steps++;
    /* LM_E_FULL (a batch with more keys than the dedupe buffer) would repeat every check. */
    if (rc != 0 && rc != LM_E_STATE &&
        (rc != LM_E_FULL || hs->ticks % HANDLERS_RETENTION_TICKS == 0))
        BLOG_WARN("partition %s-%d: compaction: %s", p->topic, p->partition, lm_strerror(rc));
}

static void compact_flush_done(struct hshard *hs, struct hpart *p, struct hsync_wait *w, int rc)
{
    (void)hs;
    (void)rc; /* a failed sync marks the log failed; compaction then stays off */
    p->compact_flush_waiting = false;
    free(w);
}

/* Only flushed records supersede older ones in compaction: when that alone keeps a pass from
 * being due, start the partition's asynchronous flush (none in flight, no waiters queued, so
 * the waiter list stays ordered). */
static void compact_flush(struct hshard *hs, struct hpart *p,
                          const struct storage_compact_config *cc)
{
    if (p->sync.busy || p->compact_flush_waiting)
        return;
    int64_t want = storage_log_compact_flush_wanted(p->log, cc, storage_log_high_watermark(p->log));
    if (want < 0)
        return;
    struct hsync_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return; /* tried again at the next check */
    w->offset = want;
    w->done = compact_flush_done;
    p->compact_flush_waiting = true;
    hs_sync_wait(hs, p, w);
}

/* Steps the shard's running compaction pass or, every few ticks when none runs, starts one on
 * the first compacted partition that is due (dirty ratio, max.compaction.lag.ms). One pass per
 * shard at a time: one dedupe buffer of memory, bounded work per tick. */
static void compact_tick(struct hshard *hs)
{
    bool check = hs->ticks % HANDLERS_COMPACT_CHECK_TICKS == 0;
    struct hpart *due = NULL;
    const struct htopic *due_topic = NULL;
    for (size_t b = 0; b < hs->bucket_count; b++) {
        for (struct htopic *tp = hs->buckets[b]; tp != NULL; tp = tp->next) {
            for (int32_t i = 0; i < tp->part_cap; i++) {
                struct hpart *p = tp->parts[i];
                if (p == NULL || p->log == NULL || p->dead || p->failed)
                    continue;
                if (!tp->settings.cleanup_compact) {
                    if (storage_log_compacting(p->log))
                        storage_log_compact_abort(p->log); /* policy changed mid-pass */
                    continue;
                }
                if (storage_log_compacting(p->log)) {
                    compact_step(hs, tp, p);
                    return;
                }
                if (check && due == NULL) {
                    struct storage_compact_config cc;
                    compact_cfg_of(hs, tp, &cc);
                    if (storage_log_compact_due(p->log, &cc, storage_log_high_watermark(p->log))) {
                        due = p;
                        due_topic = tp;
                    } else {
                        compact_flush(hs, p, &cc);
                    }
                }
            }
        }
    }
    if (due != NULL)
        compact_step(hs, due_topic, due);
}

/* ---- shard hooks --------------------------------------------------------------------------- */

/* One partition's part of the shard's gauges (handlers_ctx.shard_gauges). */
/* The partition's own series: its slot, claimed at its first tick. */
static void part_gauges_write(struct hshard *hs, struct hpart *p)
{
    struct handlers_part_gauges *pg =
        hs->id < HANDLERS_GAUGE_SHARDS ? hs->node->part_gauges[hs->id] : NULL;
    if (pg == NULL)
        return;
    if (p->gauge_slot == 0) {
        /* this shard alone writes the table; the scrape reads it with atomic loads */
        uint32_t used = __atomic_load_n(&pg->used, __ATOMIC_RELAXED);
        size_t len = strlen(p->topic);
        if (used == HANDLERS_PART_GAUGES_MAX || len >= sizeof(pg->slots[0].topic)) {
            __atomic_store_n(&pg->untracked, __atomic_load_n(&pg->untracked, __ATOMIC_RELAXED) + 1,
                             __ATOMIC_RELAXED);
            p->gauge_slot = UINT32_MAX; /* counted once */
            return;
        }
        struct handlers_part_slot *n = &pg->slots[used];
        memcpy(n->topic, p->topic, len);
        n->topic_len = (uint8_t)len;
        n->partition = p->partition;
        __atomic_store_n(&n->ready, 1, __ATOMIC_RELEASE);
        p->gauge_slot = used + 1;
        __atomic_store_n(&pg->used, used + 1, __ATOMIC_RELEASE);
    }
    if (p->gauge_slot == UINT32_MAX)
        return;
    struct handlers_part_slot *sl = &pg->slots[p->gauge_slot - 1];
    int32_t epoch = -1, leader = -1;
    int64_t lag = 0;
    if (p->part != NULL && !p->failed) {
        epoch = partition_leader_epoch(p->part);
        uint32_t raft_leader = p->replicated ? partition_leader(p->part) : 0;
        leader = p->replicated ? (raft_leader > 0 ? (int32_t)raft_leader - 1 : -1)
                               : hs->node->cfg->node_id;
        lag = partition_log_end_offset(p->part) - partition_high_watermark(p->part);
    }
    if (p->gauge_epoch_since_ms == 0 || epoch != p->gauge_epoch) {
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        p->gauge_epoch = epoch;
        p->gauge_epoch_since_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    }
    __atomic_store_n(&sl->epoch_since_ms, p->gauge_epoch_since_ms, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->leader_epoch, epoch, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->leader, leader, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->commit_lag, lag > 0 ? lag : 0, __ATOMIC_RELAXED);
    __atomic_store_n(&sl->tick, (uint32_t)hs->ticks, __ATOMIC_RELAXED);
}

static void gauges_count(struct hshard *hs, const struct htopic *t, struct hpart *p,
                         struct handlers_shard_gauges *g)
{
    g->replicas++;
    part_gauges_write(hs, p);
    if (p->log != NULL && !p->failed) {
        g->segments += storage_log_segment_count(p->log);
        g->log_bytes += storage_log_size_bytes(p->log);
        int64_t lag = storage_log_end_offset(p->log) - storage_log_high_watermark(p->log);
        if (lag > 0) {
            g->commit_lag += (uint64_t)lag;
            if ((uint64_t)lag > g->commit_lag_max)
                g->commit_lag_max = (uint64_t)lag;
        }
    }
    if (!p->replicated) {
        g->leaders += p->failed || (p->log == NULL && !p->idle_closed) ? 0 : 1;
        return;
    }
    if (p->part != NULL && !p->failed && partition_quiescent(p->part))
        g->quiescent++;
    if (p->part == NULL || p->failed || !partition_is_leader(p->part))
        return;
    g->leaders++;
    /* hs_leader_check's look of this tick left the out-of-sync replicas, the fenced ones
     * included, in isr->out (no second look at the image) */
    uint16_t all = (uint16_t)((1u << (p->rf > 0 ? p->rf : 1)) - 1u);
    int32_t in_sync =
        p->isr != NULL ? __builtin_popcount(all & (uint16_t)~p->isr->out) : hs_isr_count(hs, p);
    g->under_replicated += in_sync < p->rf;
    g->under_min_isr += in_sync < t->settings.min_insync_replicas;
}

static void gauges_store(struct hshard *hs, const struct handlers_shard_gauges *g)
{
    if (hs->id >= HANDLERS_GAUGE_SHARDS)
        return;
    struct handlers_shard_gauges *d = &hs->node->shard_gauges[hs->id];
    __atomic_store_n(&d->replicas, g->replicas, __ATOMIC_RELAXED);
    __atomic_store_n(&d->leaders, g->leaders, __ATOMIC_RELAXED);
    __atomic_store_n(&d->under_replicated, g->under_replicated, __ATOMIC_RELAXED);
    __atomic_store_n(&d->under_min_isr, g->under_min_isr, __ATOMIC_RELAXED);
    __atomic_store_n(&d->quiescent, g->quiescent, __ATOMIC_RELAXED);
    __atomic_store_n(&d->segments, g->segments, __ATOMIC_RELAXED);
    __atomic_store_n(&d->log_bytes, g->log_bytes, __ATOMIC_RELAXED);
    __atomic_store_n(&d->commit_lag, g->commit_lag, __ATOMIC_RELAXED);
    __atomic_store_n(&d->commit_lag_max, g->commit_lag_max, __ATOMIC_RELAXED);
    __atomic_store_n(&d->open_us, hs->open_us, __ATOMIC_RELAXED);
    __atomic_store_n(&d->opens, hs->opens, __ATOMIC_RELAXED);
    __atomic_store_n(&d->compact_steps, hs->compact_steps, __ATOMIC_RELAXED);
    __atomic_store_n(&d->flushes, hs->flushes, __ATOMIC_RELAXED);
    __atomic_store_n(&d->flush_us, hs->flush_us, __ATOMIC_RELAXED);
    for (uint32_t i = 0; i < HANDLERS_FLUSH_BUCKETS; i++)
        __atomic_store_n(&d->flush_hist[i], hs->flush_hist[i], __ATOMIC_RELAXED);
    __atomic_store_n(&d->producer_ids, producer_shard_count(hs->producers), __ATOMIC_RELAXED);
    if (hs->node->part_gauges[hs->id] != NULL)
        __atomic_store_n(&hs->node->part_gauges[hs->id]->tick, (uint32_t)hs->ticks,
                         __ATOMIC_RELEASE);
    __atomic_store_n(&d->fetch_sessions, hs->fsess.count, __ATOMIC_RELAXED);
    __atomic_store_n(&d->fetch_session_partitions, hs->fsess.parts_total, __ATOMIC_RELAXED);
    __atomic_store_n(&d->fetch_session_evictions, hs->fsess.evictions, __ATOMIC_RELAXED);
    uint64_t asked = 0, skipped = 0;
    txn_shard_added_counts(hs, &asked, &skipped);
    __atomic_store_n(&d->txn_checks_asked, asked, __ATOMIC_RELAXED);
    __atomic_store_n(&d->txn_checks_skipped, skipped, __ATOMIC_RELAXED);
    __atomic_store_n(&d->repl_apps_zc, hs->repl_apps_zc, __ATOMIC_RELAXED);
    __atomic_store_n(&d->repl_bytes_zc, hs->repl_bytes_zc, __ATOMIC_RELAXED);
    __atomic_store_n(&d->repl_apps_copy, hs->repl_apps_copy, __ATOMIC_RELAXED);
    __atomic_store_n(&d->repl_bytes_copy, hs->repl_bytes_copy, __ATOMIC_RELAXED);
}

/* Whether the node of raft id `leader` is gone from the image or fenced. */
static bool leader_lost(const struct hshard *hs, uint32_t leader)
{
    if (hs->snap == NULL || leader == RAFT_NONE)
        return false;
    const struct lm_meta_broker *b = lm_meta_state_broker(&hs->snap->state, (int32_t)leader - 1);
    return b == NULL || b->fenced;
}

/* A quiescent leader whose every follower is in sync, whose leadership and ISR the image
 * shows and whose log start its followers have: its leader check would find nothing to do
 * until the image changes (a fence, a move) or the group wakes. */
static bool leader_idle(const struct hpart *p, bool image_changed)
{
    uint16_t all = (uint16_t)((1u << p->rf) - 1u);
    return !image_changed && p->part != NULL && partition_quiescent(p->part) &&
           partition_is_leader(p->part) && p->isr != NULL && p->isr->out == 0 &&
           p->announce_confirmed && p->announced_out == 0 &&
           p->announced_epoch == partition_leader_epoch(p->part) &&
           (p->start_sync <= 0 || (p->start_acked & all) == all);
}

/* A quiescent follower has no election timer. It wakes once the image fences its leader's
 * node (SWIM declared it dead, or its heartbeats to the controller stopped) as if its timer
 * had run since the leader's last message (it may vote and campaign at once); or, more
 * gently, once that node went silent to this one (hs_node_silent: no ping nor raft message
 * from it for two election timeouts; a leader cut off from its followers but not from the
 * controller is never fenced): a fresh election timeout, and the leader asked whether it is
 * there, so a node merely slow to answer (load) keeps its leaderships. */
static void quiescent_check(struct hshard *hs, struct hpart *p, uint64_t now)
{
    if (partition_is_leader(p->part))
        return;
    uint32_t leader = partition_leader(p->part);
    if (leader == RAFT_NONE)
        return;
    if (leader_lost(hs, leader)) {
        BLOG_DEBUG("partition %s-%d: quiescent, its leader's node %d is fenced: waking", p->topic,
                   p->partition, (int32_t)leader - 1);
        (void)partition_wake(p->part);
    } else if (hs_node_silent(hs, (int32_t)leader - 1, p->leader_contact_ms, now)) {
        BLOG_DEBUG("partition %s-%d: quiescent, its leader's node %d is silent: waking", p->topic,
                   p->partition, (int32_t)leader - 1);
        (void)partition_wake_unsure(p->part);
    }
}

/* Every 10 s, when this shard's Raft groups held elections or lost leaders meanwhile: how many
 * and why, with the longest gap between two shard ticks (HANDLERS_TICK_MS apart when the loop
 * keeps up; a follower whose loop stalls past the election timeout campaigns). */
static void raft_stats_log(struct hshard *hs, uint64_t now)
{
    if (hs->tick_prev_ms != 0 && now - hs->tick_prev_ms > hs->tick_gap_max_ms)
        hs->tick_gap_max_ms = now - hs->tick_prev_ms;
    hs->tick_prev_ms = now;
    if (hs->raft_stats_logged_ms == 0)
        hs->raft_stats_logged_ms = now;
    if (now - hs->raft_stats_logged_ms < 10000)
        return;
    const struct raft_stats *c = &hs->raft_stats;
    struct raft_stats *o = &hs->raft_stats_logged;
    if (c->timeout_campaigns != o->timeout_campaigns || c->elections != o->elections ||
        c->quorum_stepdowns != o->quorum_stepdowns || c->term_stepdowns != o->term_stepdowns)
        BLOG_INFO("shard %u: raft in %llu ms: %llu election timeouts, %llu elections, %llu won, "
                  "%llu leaders stepped down (%llu no quorum heard, %llu higher term); longest "
                  "tick gap %llu ms; in: %llu heartbeats, %llu answers, %llu appends, %llu "
                  "answers, %llu (pre)votes, %llu answers; %llu state writes, mean %llu ms, "
                  "longest %llu ms",
                  hs->id, (unsigned long long)(now - hs->raft_stats_logged_ms),
                  (unsigned long long)(c->timeout_campaigns - o->timeout_campaigns),
                  (unsigned long long)(c->elections - o->elections),
                  (unsigned long long)(c->elections_won - o->elections_won),
                  (unsigned long long)(c->quorum_stepdowns - o->quorum_stepdowns +
                                       c->term_stepdowns - o->term_stepdowns),
                  (unsigned long long)(c->quorum_stepdowns - o->quorum_stepdowns),
                  (unsigned long long)(c->term_stepdowns - o->term_stepdowns),
                  (unsigned long long)hs->tick_gap_max_ms,
                  (unsigned long long)hs->raft_in[RAFT_MSG_HEARTBEAT],
                  (unsigned long long)hs->raft_in[RAFT_MSG_HEARTBEAT_RESP],
                  (unsigned long long)hs->raft_in[RAFT_MSG_APP],
                  (unsigned long long)hs->raft_in[RAFT_MSG_APP_RESP],
                  (unsigned long long)(hs->raft_in[RAFT_MSG_VOTE] + hs->raft_in[RAFT_MSG_PREVOTE]),
                  (unsigned long long)(hs->raft_in[RAFT_MSG_VOTE_RESP] +
                                       hs->raft_in[RAFT_MSG_PREVOTE_RESP]),
                  (unsigned long long)hs->state_writes,
                  (unsigned long long)(hs->state_writes
                                           ? hs->state_write_us / hs->state_writes / 1000
                                           : 0),
                  (unsigned long long)(hs->state_write_us_max / 1000));
    memset(hs->raft_in, 0, sizeof(hs->raft_in));
    hs->state_writes = hs->state_write_us = hs->state_write_us_max = 0;
    *o = *c;
    hs->raft_stats_logged_ms = now;
    hs->tick_gap_max_ms = 0;
}

static void shard_tick(struct broker_shard *s, struct broker_timer *t)
{
    struct hshard *hs = t->arg;
    if (hs->open_failures_this_tick > OPEN_FAILURES_LOGGED_PER_TICK)
        BLOG_ERROR("shard %u: %u more partitions could not open their logs; offline, retrying",
                   hs->id, hs->open_failures_this_tick - OPEN_FAILURES_LOGGED_PER_TICK);
    hs->open_failures_this_tick = 0;
    hs_refresh(hs);
    hs_leaving_check(hs);
    bool retention = ++hs->ticks % HANDLERS_RETENTION_TICKS == 0;
    uint64_t now = broker_now_ms();
    raft_stats_log(hs, now);
    /* a new image may fence a node, move a replica or confirm an announcement */
    bool image_changed = hs->version != hs->tick_version;
    hs->tick_version = hs->version;
    /* Reopening offline partitions is bounded per tick like any open (thousands of them may
     * be failing together, e.g. on a full disk); those left wait for the next tick. */
    hs->step_deadline_ms = now + HANDLERS_STEP_BUDGET_MS;
    hs->step_ops = HANDLERS_STEP_OPS_MIN;
    struct handlers_shard_gauges g = {0};
    if (hs->id == 0 && hs->node->cfg->raft_quiesce)
        hs_node_ping(hs, now);
    for (size_t b = 0; b < hs->bucket_count; b++) {
        for (struct htopic *tp = hs->buckets[b]; tp != NULL; tp = tp->next) {
            for (int32_t i = 0; i < tp->part_cap; i++) {
                struct hpart *p = tp->parts[i];
                if (p == NULL)
                    continue;
                /* Waiters of fetches that have answered by timeout are dropped (one-shot). */
                struct hwaiter **w = &p->waiters;
                while (*w != NULL) {
                    if ((*w)->deadline_ms + 1000 < now)
                        hs_waiter_drop(p, w);
                    else
                        w = &(*w)->next;
                }
                hs_lease_waits_check(hs, p, now); /* reads parked past their bound answer */
                if (p->idle_closed) {
                    gauges_count(hs, tp, p, &g);
                    continue;
                }
                if ((p->log == NULL || p->failed) && !p->dead && !hs_part_busy(p) &&
                    !p->open_pending && !hs->stopping && now >= p->retry_at_ms &&
                    hs_step_has_budget(hs))
                    hs_part_retry(hs, p);
                if (p->log == NULL || p->failed) {
                    gauges_count(hs, tp, p, &g);
                    continue;
                }
                if (p->replicated && partition_quiescent(p->part))
                    quiescent_check(hs, p, now);
                if (p->election_held)
                    hs_first_election_check(hs, p, now);
                /* flush.ms and retention (log.retention.check.interval.ms, coarser) are the
                 * partition's; between retention checks only its drive step runs (flush.ms). */
                int rc = retention ? partition_tick(p->part, (int64_t)now)
                                   : partition_clock(p->part, (int64_t)now);
                if (rc != 0)
                    BLOG_WARN("partition %s-%d: tick: %s", p->topic, p->partition, lm_strerror(rc));
                if (p->replicated && !p->dead && leader_idle(p, image_changed))
                    hs_isr_quiet(p, now);
                else if (p->replicated && !p->dead)
                    hs_leader_check(hs, p, now); /* before the kick, which may free p */
                gauges_count(hs, tp, p, &g);     /* the ISR as this look left it */
                if (hs_step_has_budget(hs))
                    producer_partition_tick(hs->producers, p);
                hs_part_kick(hs, p);
            }
        }
    }
    hs->step_deadline_ms = 0;
    gauges_store(hs, &g);
    if (__atomic_load_n(&hs->node->handoff, __ATOMIC_ACQUIRE))
        hs_handoff_step(hs, now);
    else if (hs_cluster(hs->node))
        hs_rebalance_check(hs, now);
    data_produce_scratch_trim(hs, now);
    share_shard_tick(hs); /* share.checkpoint of share partitions whose SPSO moved */
    if (hs_cluster(hs->node)) {
        group_cluster_sync(hs);
        producer_ids_refill(hs);
    }
    txn_cluster_sync(hs);
    if (!hs->stopping)
        compact_tick(hs);
    /* while the node hands its leaderships over (SIGTERM), the tick runs every
     * HANDLERS_HANDOFF_TICK_MS: it sees each transfer complete and starts the next sooner */
    uint64_t next = __atomic_load_n(&hs->node->handoff, __ATOMIC_ACQUIRE) ? HANDLERS_HANDOFF_TICK_MS
                                                                          : HANDLERS_TICK_MS;
    if (!hs->stopping && broker_timer_start(s, t, next, shard_tick, hs) != 0)
        BLOG_ERROR("shard %u: cannot re-arm the tick timer", hs->id);
}

/* The shard's share of the node's fetch session slots and cached partitions. */
static int fetch_sessions_init(struct hshard *hs)
{
    const struct broker_config *cfg = hs->node->cfg;
    uint32_t shards = hs->count ? hs->count : 1;
    uint32_t slots = cfg->fetch_session_slots > 0
                         ? (uint32_t)(((uint64_t)cfg->fetch_session_slots + shards - 1) / shards)
                         : 0;
    uint64_t parts = ((uint64_t)cfg->fetch_session_partitions_max + shards - 1) / shards;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = broker_now_ms() ^ ((uint64_t)hs->id << 32);
    return fsess_cache_init(&hs->fsess, slots, (uint64_t)cfg->fetch_session_eviction_ms, parts,
                            hs->id, shards, seed);
}

int hs_shard_start(struct broker_shard *s, void *ctx)
{
    struct handlers_ctx *node = ctx;
    struct hshard *hs = calloc(1, sizeof(*hs));
    if (hs == NULL)
        return LM_E_NOMEM;
    hs->shard = s;
    hs->node = node;
    hs->id = broker_shard_id(s);
    if (hs->id < HANDLERS_GAUGE_SHARDS &&
        __atomic_load_n(&node->part_gauges[hs->id], __ATOMIC_ACQUIRE) == NULL) {
        struct handlers_part_gauges *pg = calloc(1, sizeof(*pg));
        if (pg == NULL) {
            free(hs);
            return LM_E_NOMEM;
        }
        __atomic_store_n(&node->part_gauges[hs->id], pg, __ATOMIC_RELEASE);
    }
    hs->count = broker_shard_count(s);
    hs->fetch_id_next = 1;
    hs->tick.heap_index_ = UINT32_MAX;
    hs->work.heap_index_ = UINT32_MAX;
    /* Three fifths of the descriptors for partition logs, shared by the shards; the rest for
     * connections, segment rolls, dup'd read fds and the process itself. Or what
     * laminar.log.open.files.max says. */
    uint64_t fds = node->cfg->fd_limit ? node->cfg->fd_limit : 1024;
    int64_t set = node->cfg->log_open_files_max;
    uint64_t log_fds = set > 0 ? (uint64_t)set : fds * 3 / 5;
    uint64_t per_shard = log_fds / HANDLERS_LOG_FDS / (hs->count ? hs->count : 1);
    uint64_t floor = set > 0 ? 1 : 64; /* a budget set by hand is taken as it is (tests) */
    hs->open_logs_max = per_shard < floor        ? (uint32_t)floor
                        : per_shard > UINT32_MAX ? UINT32_MAX
                                                 : (uint32_t)per_shard;
    if (getrandom(hs->zc_nonce, sizeof(hs->zc_nonce), 0) != (ssize_t)sizeof(hs->zc_nonce)) {
        uint64_t t = broker_now_ms() * 0x9e3779b97f4a7c15ull ^ (uintptr_t)hs;
        memcpy(hs->zc_nonce, &t, sizeof(t));
    }
    broker_shard_set_user(s, hs);
    __atomic_store_n(&node->shard_count, hs->count, __ATOMIC_RELEASE);
    int rc = fetch_sessions_init(hs);
    if (rc != 0)
        return rc;
    if (node->ctl != NULL && hs->id == CONTROLLER_SHARD &&
        (rc = controller_shard_start(node->ctl, s)) != 0)
        return rc; /* opens the metadata log and replays it into the image */
    hs_refresh(hs);
    rc = group_shard_start(hs); /* loads the owned __consumer_offsets partitions */
    if (rc != 0)
        return rc;
    rc = txn_shard_start(hs); /* loads the owned __transaction_state partitions */
    if (rc != 0)
        return rc;
    return broker_timer_start(s, &hs->tick, HANDLERS_TICK_MS, shard_tick, hs);
}

void hs_conn_closing(struct broker_shard *s, void *ctx, uint64_t conn_id)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs != NULL)
        share_conn_closing(hs, conn_id);
}

void hs_conn_closed(struct broker_shard *s, void *ctx, uint64_t conn_id)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs != NULL)
        share_conn_closed(hs, conn_id);
}

void hs_shard_drain(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs != NULL) {
        data_fetch_drain(hs);
        /* reads parked for a lease answer now (retriable), as parked fetches do */
        for (size_t b = 0; b < hs->bucket_count; b++)
            for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
                for (int32_t i = 0; i < t->part_cap; i++)
                    if (t->parts[i] != NULL)
                        hs_lease_waits_drop(hs, t->parts[i]);
        share_fetch_drain(hs);
        group_shard_drain(hs);
        txn_shard_drain(hs);
        if (hs->node->ctl != NULL && hs->id == CONTROLLER_SHARD)
            controller_shard_drain(hs->node->ctl);
    }
}

void hs_shard_flush(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs == NULL)
        return;
    group_shard_flush(hs); /* producer-state snapshots, before the logs' final flush */
    share_shard_tick(hs);
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            for (int32_t i = 0; i < t->part_cap; i++)
                if (t->parts[i] != NULL && t->parts[i]->log != NULL) {
                    int rc = storage_log_flush(t->parts[i]->log, true);
                    if (rc != 0)
                        BLOG_WARN("partition %s-%d: final flush: %s", t->parts[i]->topic,
                                  t->parts[i]->partition, lm_strerror(rc));
                }
}

void hs_shard_stop(struct broker_shard *s, void *ctx)
{
    (void)ctx;
    struct hshard *hs = broker_shard_user(s);
    if (hs == NULL)
        return;
    hs->stopping = true;
    broker_timer_cancel(s, &hs->tick);
    if (hs->work.heap_index_ != UINT32_MAX)
        broker_timer_cancel(s, &hs->work);
    while (hs->rm_head != NULL) { /* left for the next start's orphan sweep */
        struct hdir_removal *r = hs->rm_head;
        hs->rm_head = r->next;
        free(r);
    }
    hs->rm_tail = NULL;
    if (hs->node->ctl != NULL && hs->id == CONTROLLER_SHARD)
        controller_shard_stop(hs->node->ctl);
    hs_peers_close(hs);
    txn_shard_stop(hs);
    group_shard_stop(hs);
    for (size_t b = 0; b < hs->bucket_count; b++) {
        struct htopic *t = hs->buckets[b];
        while (t != NULL) {
            struct htopic *next = t->next;
            hs_topic_free(hs, t, false);
            t = next;
        }
    }
    free(hs->buckets);
    if (hs->snap != NULL)
        lm_meta_snapshot_release(hs->snap);
    free(hs->scratch);
    hs_quota_free(hs);
    fsess_cache_free(&hs->fsess);
    share_shard_free(hs);
    free(hs->topic_defaults);
    broker_shard_set_user(s, NULL);
    free(hs);
}
