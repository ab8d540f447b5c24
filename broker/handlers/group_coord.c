/* The group coordinator in the broker: one lm_group_coord per shard, holding the
 * groups of the __consumer_offsets partitions that shard owns (group_internal.h). This file
 * holds the shard side: setup of __consumer_offsets, loading a partition from its log,
 * persisting what a ready emits before answering, the timer, and the cross-shard calls that
 * carry one lm_group_* call to the owner shard and its response back. group_api.c maps the
 * Kafka requests onto it. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "broker/group/cgroup_records.h"
#include "broker/group/group.h"
#include "broker/group/group_records.h"
#include "broker/handlers/group_api.h"
#include "broker/handlers/group_internal.h"
#include "broker/handlers/share_state.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/records.h"

/* Longest wait between coordinator ticks even when no timer is due. */
#define GROUP_TICK_MAX_MS 1000
/* Bound of one decompressed __consumer_offsets batch when loading. */
#define GROUP_LOAD_BATCH_BYTES_MAX ((size_t)64 << 20)

struct gshard {
    struct hshard *hs;
    struct lm_group_coord *coord;
    struct lm_cgroup_coord *cgroup; /* consumer-protocol groups (KIP-848) */
    struct lm_sgroup_coord *sgroup; /* share groups (KIP-932), only in memory */
    struct pshard *ps;
    struct broker_timer timer;
    bool timer_armed;
    bool stopping;
    int64_t last_expire_ms;
    struct gdefer *defer_head, *defer_tail; /* readies waiting for their flushes, in order */
    /* A cluster: which of this shard's __consumer_offsets partitions are loaded (those whose
     * replica is this node's; group_cluster_sync follows the assignment). */
    bool *cluster_loaded;
    int32_t *cluster_epoch; /* the leader epoch a replicated partition's groups were loaded at */
};

/* The responses of one ready, held until the records it appended are durable (persist before
 * send, with the fdatasync off the shard thread: hs_append with acks=-1). Readies answer in
 * order. */
struct gdefer {
    struct gshard *gs;
    struct gdefer *next;
    uint32_t pending; /* waits not completed, + 1 while being set up */
    int rc;
    int32_t bad;         /* partition whose flush failed */
    bool behind_failure; /* queued behind a ready whose flush failed */
    size_t n_ops, n_waits;
    struct gop **ops;
    struct hsync_wait *waits;
    int32_t *parts;
};

/* Drops a __consumer_offsets partition's groups, classic and consumer-protocol (both come
 * back from the log when the partition is loaded again). */
static void coord_unload(struct gshard *gs, int32_t p)
{
    lm_group_coord_unload(gs->coord, p);
    if (gs->cgroup != NULL)
        lm_cgroup_unload(gs->cgroup, p);
}

int64_t group_now_ms(struct hshard *hs)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    if (now < hs->group_clock_ms)
        now = hs->group_clock_ms;
    hs->group_clock_ms = now;
    return now;
}

uint32_t group_owner_of(struct hshard *hs, struct kafka_str group_id)
{
    if (group_id.len < 0)
        group_id = (struct kafka_str){"", 0};
    int32_t p = lm_gr_partition_for(group_id, hs->node->group_cfg.offsets_topic_partitions);
    return broker_partition_shard(GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p, hs->count);
}

/* ---- reading a partition log ---------------------------------------------------------------- */

int group_log_scan_range(struct storage_log *log, int64_t from, int64_t to, uint64_t max_bytes,
                         group_batch_fn fn, void *ctx, int64_t *next)
{
    int64_t off = from > storage_log_start_offset(log) ? from : storage_log_start_offset(log);
    int64_t end = storage_log_end_offset(log) < to ? storage_log_end_offset(log) : to;
    uint8_t *buf = NULL;
    size_t cap = 0;
    uint64_t scanned = 0;
    int rc = 0;
    bool stop = false;
    for (uint32_t turns = 0; off < end && !stop && scanned < max_bytes; turns++) {
        LM_ASSERT(turns < UINT32_MAX);
        struct storage_read_result res;
        rc = storage_log_read(log, off, (uint64_t)1 << 20, STORAGE_NO_LIMIT, &res);
        if (rc != 0)
            break;
        if (res.bytes == 0) {
            storage_read_result_release(log, &res);
            break;
        }
        if (res.bytes > cap) {
            uint8_t *nb = realloc(buf, res.bytes);
            if (nb == NULL) {
                storage_read_result_release(log, &res);
                rc = LM_E_NOMEM;
                break;
            }
            buf = nb;
            cap = res.bytes;
        }
        rc = storage_read_result_copy(&res, buf, cap);
        size_t n = res.bytes;
        storage_read_result_release(log, &res);
        if (rc != 0)
            break;
        int64_t before = off;
        for (size_t pos = 0; pos < n && rc == 0;) {
            struct kafka_batch_header h;
            rc = kafka_batch_header_parse(buf + pos, n - pos, &h);
            if (rc != 0)
                break;
            size_t total = kafka_batch_total_size(&h);
            if (total > n - pos) {
                rc = LM_E_TRUNCATED;
                break;
            }
            int64_t last = kafka_batch_last_offset(&h);
            if (last >= end) { /* a batch that ends at or past `to` is not scanned */
                stop = true;
                break;
            }
            if (last >= off) /* the first batch may start before off */
                rc = fn(ctx, buf + pos, total, &h);
            off = last + 1;
            pos += total;
            scanned += total;
        }
        if (rc != 0)
            break;
        LM_ASSERT(off > before || stop);
    }
    free(buf);
    if (next != NULL)
        *next = off;
    return rc;
}

int group_log_scan(struct storage_log *log, int64_t from, group_batch_fn fn, void *ctx)
{
    return group_log_scan_range(log, from, INT64_MAX, UINT64_MAX, fn, ctx, NULL);
}

/* ---- loading ------------------------------------------------------------------------------- */

struct load_ctx {
    struct lm_group_coord *coord;
    struct lm_cgroup_coord *cgroup;
    int32_t n_partitions;
    int32_t partition;
    int64_t n_bad;
    int64_t n_records;
};

static int load_batch(void *ctx, const uint8_t *batch, size_t len,
                      const struct kafka_batch_header *h)
{
    struct load_ctx *l = ctx;
    bool txn = (h->attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) && h->producer_id >= 0;
    if (h->attributes & KAFKA_BATCH_ATTR_CONTROL) {
        /* a transaction marker settles the producer's pending offsets (Kafka's loader) */
        int16_t type;
        int32_t coordinator_epoch;
        if (txn && kafka_txn_marker_parse(batch, len, h, &type, &coordinator_epoch) == 0)
            return lm_group_coord_replay_marker(l->coord, l->partition, h->producer_id,
                                                type == KAFKA_CONTROL_COMMIT);
        return 0;
    }
    struct kafka_batch_reader r;
    int rc = kafka_batch_reader_open(&r, batch, len, GROUP_LOAD_BATCH_BYTES_MAX);
    if (rc != 0) {
        l->n_bad++;
        return 0;
    }
    struct kafka_record_iter it;
    kafka_batch_reader_iter(&r, &it);
    struct kafka_record rec;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1) {
        if (rec.key_len < 0) {
            l->n_bad++;
            continue;
        }
        struct kafka_bytes key = {rec.key, rec.key_len};
        struct kafka_bytes value = {rec.value, rec.value_len};
        /* consumer-protocol group records (their own key types) go to that coordinator */
        if (l->cgroup != NULL && !txn &&
            lm_cgr_is_type(lm_cgr_key_type(rec.key, (size_t)rec.key_len))) {
            rc = lm_cgroup_replay(l->cgroup, l->partition, l->n_partitions, key, value, &l->n_bad);
            if (rc != 0)
                break;
            l->n_records++;
            continue;
        }
        rc = txn ? lm_group_coord_replay_txn(l->coord, l->partition, h->producer_id, key, value,
                                             &l->n_bad)
                 : lm_group_coord_replay(l->coord, l->partition, key, value, &l->n_bad);
        if (rc != 0)
            break;
        l->n_records++;
    }
    kafka_batch_reader_close(&r);
    return rc < 0 ? rc : 0;
}

static void load_partition(struct gshard *gs, int32_t p)
{
    struct hpart *hp = hs_part(gs->hs, GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p);
    int rc = lm_group_coord_load_begin(gs->coord, p);
    LM_ASSERT(rc == 0);
    if (hp == NULL || hp->log == NULL) {
        BLOG_ERROR("%s-%d: log not open; its groups answer NOT_COORDINATOR", GROUP_OFFSETS_TOPIC,
                   p);
        coord_unload(gs, p);
        return;
    }
    if (gs->cgroup != NULL)
        lm_cgroup_unload(gs->cgroup, p);
    struct load_ctx l = {.coord = gs->coord,
                         .cgroup = gs->cgroup,
                         .n_partitions = gs->hs->node->group_cfg.offsets_topic_partitions,
                         .partition = p};
    rc = group_log_scan(hp->log, 0, load_batch, &l);
    if (rc != 0) {
        BLOG_ERROR("%s-%d: loading: %s; its groups answer NOT_COORDINATOR", GROUP_OFFSETS_TOPIC, p,
                   lm_strerror(rc));
        coord_unload(gs, p);
        return;
    }
    rc = lm_group_coord_load_end(gs->coord, p, group_now_ms(gs->hs));
    LM_ASSERT(rc == 0);
    if (gs->cgroup != NULL &&
        (rc = lm_cgroup_load_end(gs->cgroup, p, group_now_ms(gs->hs),
                                 group_cgroup_session_timeout_ms, gs->hs)) != 0) {
        BLOG_ERROR("%s-%d: loading consumer groups: %s; its groups answer NOT_COORDINATOR",
                   GROUP_OFFSETS_TOPIC, p, lm_strerror(rc));
        coord_unload(gs, p);
        return;
    }
    /* Records that do not decode or would break the coordinator's invariants are untrusted
     * input: skipped (Kafka's loader skips what it cannot read), one line per partition. */
    if (l.n_bad > 0)
        BLOG_WARN("%s-%d: loaded %lld records, skipped %lld bad records", GROUP_OFFSETS_TOPIC, p,
                  (long long)l.n_records, (long long)l.n_bad);
    else if (l.n_records > 0)
        BLOG_INFO("%s-%d: loaded %lld records", GROUP_OFFSETS_TOPIC, p, (long long)l.n_records);
}

/* ---- persist before send --------------------------------------------------------------------- */

/* Appends records[i..j) (one partition) as one batch through the partition (origin
 * coordinator, acks=-1): w->done runs once it is committed (one voter: durable). */
static int persist_run(struct gshard *gs, const struct lm_group_record *recs, size_t n,
                       struct hsync_wait *w)
{
    int32_t p = recs[0].partition;
    struct hpart *hp = hs_part(gs->hs, GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p);
    if (hp == NULL || hp->log == NULL || hp->failed)
        return LM_E_NOT_FOUND;
    int64_t now = group_now_ms(gs->hs);
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, now);
    if (recs[0].producer_id >= 0) {
        /* TxnOffsetCommit: the producer's transactional batch (Kafka
         * GroupMetadataManager.storeOffsets with isTxnOffsetCommit, base sequence 0) */
        b.attributes = KAFKA_BATCH_ATTR_TRANSACTIONAL;
        b.producer_id = recs[0].producer_id;
        b.producer_epoch = recs[0].producer_epoch;
        b.base_sequence = 0;
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        LM_ASSERT(recs[i].partition == p && recs[i].producer_id == recs[0].producer_id);
        rc = kafka_batch_builder_append(&b, now, recs[i].key.ptr, recs[i].key.len,
                                        recs[i].value.ptr, recs[i].value.len, NULL, 0);
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len);
    kafka_batch_builder_deinit(&b);
    if (rc != 0)
        return rc;
    rc = hs_append(gs->hs, hp, PARTITION_ORIGIN_COORDINATOR, buf, len, -1, w);
    free(buf);
    if (rc != 0) {
        /* LM_E_STATE: a replicated offsets partition no longer led here, or handing its
         * leadership over: the members find the new coordinator (NOT_COORDINATOR) */
        if (rc == LM_E_STATE && hp->replicated)
            BLOG_INFO_LIMITED("%s-%d: append refused: leadership moving", GROUP_OFFSETS_TOPIC, p);
        else
            BLOG_ERROR("%s-%d: append: %s", GROUP_OFFSETS_TOPIC, p, lm_strerror(rc));
        return rc;
    }
    return 0;
}

static void defer_synced(struct hshard *hs, struct hpart *p, struct hsync_wait *w, int rc);

static int persist(struct gshard *gs, const struct lm_group_ready *rd, int32_t *bad,
                   struct gdefer *d)
{
    for (size_t i = 0; i < rd->n_records;) {
        size_t j = i + 1;
        while (j < rd->n_records && rd->records[j].partition == rd->records[i].partition &&
               rd->records[j].producer_id == rd->records[i].producer_id)
            j++;
        struct hsync_wait *w = &d->waits[d->n_waits];
        w->done = defer_synced;
        w->arg = d;
        d->pending++; /* before the append: its completion may not come first, but counts */
        int rc = persist_run(gs, rd->records + i, j - i, w);
        if (rc != 0) {
            d->pending--;
            *bad = rd->records[i].partition;
            return rc;
        }
        d->parts[d->n_waits++] = rd->records[i].partition;
        i = j;
    }
    return 0;
}

static void load_partition(struct gshard *gs, int32_t p);

/* Memory is ahead of the log after a failed append to partition p: reload its groups from
 * the log. In a cluster the partition is unloaded and group_cluster_sync loads it again at the
 * shard's next tick if this node still leads it (the failure is most often leadership lost). */
static void reload_after_failure(struct gshard *gs, int32_t p)
{
    if (p < 0 || gs->stopping || gs->coord == NULL)
        return;
    coord_unload(gs, p);
    if (gs->cluster_loaded != NULL)
        gs->cluster_loaded[p] = false;
    else
        load_partition(gs, p);
}

/* Answers the readies at the head whose flushes are done, in order. A ready behind a failed
 * one fails with it: it was computed from memory that held the failed ready's changes (an
 * OffsetFetch could show a commit that is then lost), so only a ready whose every predecessor
 * was committed answers from what it saw, as Kafka's coordinators answer reads from committed
 * state only. */
static void defer_release(struct gshard *gs)
{
    struct gdefer *d;
    while ((d = gs->defer_head) != NULL && d->pending == 0) {
        gs->defer_head = d->next;
        if (gs->defer_head == NULL)
            gs->defer_tail = NULL;
        if (d->rc != 0)
            for (struct gdefer *later = d->next; later != NULL; later = later->next)
                later->behind_failure = true;
        for (size_t i = 0; i < d->n_ops; i++) {
            /* A failed group-metadata flush is COORDINATOR_NOT_AVAILABLE, as a failed append. */
            if (d->rc != 0 || d->behind_failure)
                group_api_fill(d->ops[i], NULL, KAFKA_COORDINATOR_NOT_AVAILABLE);
            broker_xcall_return(gs->hs->shard, &d->ops[i]->x);
        }
        if (d->rc != 0)
            reload_after_failure(gs, d->bad);
        free(d);
    }
}

/* Queues d behind the readies before it; responses leave only after the records are
 * committed (persist before send): the appends' completions count pending down, and d's own
 * setup count goes here. */
static void defer_enqueue(struct gshard *gs, struct gdefer *d)
{
    if (gs->defer_tail != NULL)
        gs->defer_tail->next = d;
    else
        gs->defer_head = d;
    gs->defer_tail = d;
    if (--d->pending == 0)
        defer_release(gs);
}

static void defer_synced(struct hshard *hs, struct hpart *p, struct hsync_wait *w, int rc)
{
    (void)hs;
    struct gdefer *d = w->arg;
    if (d->gs == NULL) {
        /* orphaned by group_shard_stop: the partition's close completes its waits */
        LM_ASSERT(d->pending > 0);
        if (--d->pending == 0)
            free(d);
        return;
    }
    if (rc != 0 && d->rc == 0) {
        d->rc = rc;
        d->bad = p->partition;
    }
    LM_ASSERT(d->pending > 0);
    if (--d->pending == 0)
        defer_release(d->gs);
}

static void timer_fire(struct broker_shard *s, struct broker_timer *t);

static void timer_arm(struct gshard *gs)
{
    if (gs->stopping || gs->coord == NULL)
        return;
    int64_t dl = lm_group_coord_next_deadline_ms(gs->coord);
    int64_t cdl = gs->cgroup != NULL ? lm_cgroup_next_deadline_ms(gs->cgroup) : INT64_MAX;
    if (cdl < dl)
        dl = cdl;
    int64_t sdl = gs->sgroup != NULL ? lm_sgroup_next_deadline_ms(gs->sgroup) : INT64_MAX;
    if (sdl < dl)
        dl = sdl;
    int64_t now = group_now_ms(gs->hs);
    /* INT64_MIN before the first tick means "tick now"; INT64_MAX means no timer. */
    int64_t delay = dl <= now ? 0 : dl - now > GROUP_TICK_MAX_MS ? GROUP_TICK_MAX_MS : dl - now;
    if (gs->timer_armed)
        broker_timer_cancel(gs->hs->shard, &gs->timer);
    gs->timer_armed =
        broker_timer_start(gs->hs->shard, &gs->timer, (uint64_t)delay, timer_fire, gs) == 0;
    if (!gs->timer_armed)
        BLOG_ERROR("shard %u: cannot arm the group timer", gs->hs->id);
}

/* Appends the records the consumer-group coordinator emitted and queues op's response (NULL:
 * none) behind them and every earlier ready (persist before send, answers in order). */
static void cgroup_flush(struct gshard *gs, struct gop *op)
{
    const struct lm_cgroup_record *cr;
    size_t nr = gs->cgroup != NULL ? lm_cgroup_records(gs->cgroup, &cr) : 0;
    if (nr == 0 && op == NULL)
        return;
    struct gdefer *d = calloc(
        1, sizeof(*d) + sizeof(struct gop *) +
               nr * (sizeof(struct hsync_wait) + sizeof(int32_t) + sizeof(struct lm_group_record)));
    int32_t bad = -1;
    int rc = LM_E_NOMEM;
    if (d != NULL) {
        d->gs = gs;
        d->waits = (struct hsync_wait *)(void *)(d + 1);
        struct lm_group_record *recs = (struct lm_group_record *)(void *)(d->waits + nr);
        d->ops = (struct gop **)(void *)(recs + nr);
        d->parts = (int32_t *)(void *)(d->ops + 1);
        d->pending = 1;
        for (size_t i = 0; i < nr; i++)
            recs[i] = (struct lm_group_record){.partition = cr[i].partition,
                                               .key = cr[i].key,
                                               .value = cr[i].value,
                                               .producer_id = -1};
        struct lm_group_ready rd = {.n_records = nr, .records = recs};
        rc = persist(gs, &rd, &bad, d);
        if (bad < 0 && rc != 0 && nr > 0)
            bad = recs[0].partition;
    } else if (nr > 0) {
        bad = cr[0].partition;
    }
    if (gs->cgroup != NULL)
        lm_cgroup_records_advance(gs->cgroup);
    if (op != NULL) {
        /* A failed group-metadata append is COORDINATOR_NOT_AVAILABLE in Kafka. */
        if (rc != 0 && nr > 0)
            group_api_fill(op, NULL, KAFKA_COORDINATOR_NOT_AVAILABLE);
        if (d != NULL)
            d->ops[d->n_ops++] = op;
        else
            broker_xcall_return(gs->hs->shard, &op->x);
    }
    if (rc != 0 && nr > 0)
        reload_after_failure(gs, bad);
    if (d != NULL)
        defer_enqueue(gs, d);
}

/* Hands out what the classic coordinator has ready: records first (durably), then the
 * responses, each back to its origin shard. */
static void classic_flush(struct gshard *gs)
{
    struct lm_group_ready rd;
    for (uint32_t turns = 0; lm_group_coord_ready(gs->coord, &rd); turns++) {
        LM_ASSERT(turns < 1000000);
        int32_t bad = -1;
        size_t nr = rd.n_records;
        struct gdefer *d = calloc(1, sizeof(*d) + rd.n_resps * sizeof(struct gop *) +
                                         nr * (sizeof(struct hsync_wait) + sizeof(int32_t)));
        int rc = LM_E_NOMEM;
        if (d != NULL) {
            d->gs = gs;
            d->waits = (struct hsync_wait *)(void *)(d + 1);
            d->ops = (struct gop **)(void *)(d->waits + nr);
            d->parts = (int32_t *)(void *)(d->ops + rd.n_resps);
            d->pending = 1;
            rc = persist(gs, &rd, &bad, d);
            if (bad < 0 && rc != 0 && nr > 0)
                bad = rd.records[0].partition;
        }
        /* A failed group-metadata append is COORDINATOR_NOT_AVAILABLE in Kafka
         * (GroupMetadataManager.storeGroup error mapping). */
        int16_t err = rc == 0 ? KAFKA_NONE : KAFKA_COORDINATOR_NOT_AVAILABLE;
        for (size_t i = 0; i < rd.n_resps; i++) {
            struct gop *op = (struct gop *)(uintptr_t)rd.resps[i].token;
            LM_ASSERT(op != NULL && op->g != NULL);
            group_api_fill(op, &rd.resps[i], err);
            if (d != NULL)
                d->ops[d->n_ops++] = op;
            else
                broker_xcall_return(gs->hs->shard, &op->x);
        }
        lm_group_coord_advance(gs->coord);
        if (rc != 0)
            reload_after_failure(gs, bad);
        /* Appends made before a failed one still complete into d (pending counts them). */
        if (d != NULL)
            defer_enqueue(gs, d);
    }
    timer_arm(gs);
}

/* Hands out everything both coordinators have ready, the consumer groups' records first. */
static void coord_flush(struct gshard *gs)
{
    cgroup_flush(gs, NULL);
    classic_flush(gs);
}

void group_txn_marker(struct hshard *hs, const struct hpart *p, int64_t producer_id, bool commit)
{
    struct gshard *gs = hs->group;
    if (gs == NULL || gs->coord == NULL || gs->stopping ||
        strcmp(p->topic, GROUP_OFFSETS_TOPIC) != 0)
        return;
    int rc = lm_group_txn_complete(gs->coord, p->partition, producer_id, commit);
    if (rc != 0)
        BLOG_WARN("%s-%d: transaction completion: %s", GROUP_OFFSETS_TOPIC, p->partition,
                  lm_strerror(rc));
    coord_flush(gs);
}

/* An empty consumer group stays while its offsets-only classic group (its committed offsets)
 * does. */
static bool cgroup_keep(void *ctx, struct kafka_str group_id)
{
    struct lm_group_info info;
    return lm_group_coord_info(ctx, group_id, &info) == 0;
}

static void timer_fire(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct gshard *gs = t->arg;
    gs->timer_armed = false;
    if (gs->stopping || gs->coord == NULL)
        return;
    int64_t now = group_now_ms(gs->hs);
    int rc = lm_group_coord_tick(gs->coord, now);
    if (rc != 0)
        BLOG_ERROR("shard %u: group tick: %s", gs->hs->id, lm_strerror(rc));
    if ((rc = lm_cgroup_tick(gs->cgroup, now)) != 0)
        BLOG_ERROR("shard %u: consumer group tick: %s", gs->hs->id, lm_strerror(rc));
    group_cgroup_downgrades(gs->hs, gs->coord, gs->cgroup, now);
    lm_cgroup_drop_empty(gs->cgroup, cgroup_keep, gs->coord);
    if (gs->sgroup != NULL)
        (void)lm_sgroup_tick(gs->sgroup, now); /* members whose session ended leave */
    if (now - gs->last_expire_ms >= producer_expire_period_ms(gs->hs)) {
        gs->last_expire_ms = now;
        producer_shard_expire(gs->ps, now);
    }
    coord_flush(gs);
}

/* ---- cross-shard calls --------------------------------------------------------------------- */

/* A read of committed offsets is served only by a leader of the group's replicated offsets
 * partition that still holds its read lease, in the epoch its groups were loaded at: a leader
 * paused or cut off (SIGSTOP, a partition) may have been succeeded by one that took newer
 * commits, and on waking it would answer with offsets older than ones already read. Commits
 * need no lease: they go through the partition's quorum. */
static bool coord_read_allowed(struct gshard *gs, const struct gop *op)
{
    if (gs->cluster_loaded == NULL || op->kind != GOP_FETCH)
        return true;
    const struct lm_group_fetch_req *in = op->in;
    if (in == NULL || in->n_groups < 1 || in->groups[0].group_id.len < 0)
        return true;
    int32_t p = lm_group_partition_of(gs->coord, in->groups[0].group_id);
    struct hpart *hp = hs_part(gs->hs, GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p);
    if (hp == NULL || !hp->replicated || hp->part == NULL || !gs->cluster_loaded[p])
        return true; /* not loaded here: the coordinator itself answers NOT_COORDINATOR */
    bool lease = partition_lease_valid(hp->part, (int64_t)broker_now_ms());
    if (lease && partition_leader_epoch(hp->part) == gs->cluster_epoch[p])
        return true;
    BLOG_INFO_LIMITED("%s-%d: OffsetFetch answered NOT_COORDINATOR: %s", GROUP_OFFSETS_TOPIC, p,
                      !lease ? "no read lease (followers not heard from lately)"
                             : "leader epoch changed since its groups were loaded");
    return false;
}

static void op_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct gop *op = x->arg;
    struct gshard *gs = hs_of(target)->group;
    LM_ASSERT(gs != NULL && gs->hs->shard == target);
    if (gs->coord == NULL || gs->stopping) {
        group_api_fill(op, NULL, KAFKA_COORDINATOR_NOT_AVAILABLE);
        broker_xcall_return(target, x);
        return;
    }
    if (!coord_read_allowed(gs, op)) {
        group_api_fill(op, NULL, KAFKA_NOT_COORDINATOR);
        broker_xcall_return(target, x);
        return;
    }
    int64_t now = group_now_ms(gs->hs);
    op->cg = gs->cgroup;
    op->sg = gs->sgroup;
    if (op->kind == GOP_SG_HEARTBEAT || op->kind == GOP_SG_DESCRIBE || op->kind == GOP_SG_OFFSETS) {
        group_share_run(gs->hs, gs->coord, gs->cgroup, gs->sgroup, op, now);
        broker_xcall_return(target, x);
        timer_arm(gs);
        return;
    }
    if (group_share_precheck(gs->sgroup, op)) {
        broker_xcall_return(target, x);
        return;
    }
    if (op->kind == GOP_CG_HEARTBEAT || op->kind == GOP_CG_DESCRIBE) {
        group_cgroup_run(gs->hs, gs->coord, gs->cgroup, op, now);
        /* a heartbeat's records are committed before its response leaves (persist before
         * send), as are those of every ready before it */
        if (op->kind == GOP_CG_HEARTBEAT) {
            /* an upgrade's classic tombstone (and its answers to parked calls) goes to the log
             * before the consumer group's records, as in Kafka's one batch: a crash between
             * the two leaves no classic group beside the consumer group */
            classic_flush(gs);
            cgroup_flush(gs, op);
            /* a downgrade's classic group record after the consumer group's tombstones */
            coord_flush(gs);
        } else {
            broker_xcall_return(target, x);
        }
        timer_arm(gs);
        return;
    }
    if (group_cgroup_precheck(gs->hs, gs->coord, gs->cgroup, op, now)) {
        /* a classic member's call into a consumer group may have written records: they are
         * committed before its answer leaves */
        const struct lm_cgroup_record *cr;
        if (gs->cgroup != NULL && lm_cgroup_records(gs->cgroup, &cr) > 0)
            cgroup_flush(gs, op);
        else
            broker_xcall_return(target, x);
        /* a downgrade made a classic group: its record */
        coord_flush(gs);
        return;
    }
    int rc = group_api_call(gs->coord, op, now);
    if (rc != 0) {
        BLOG_WARN("group call failed: %s", lm_strerror(rc));
        group_api_fill(op, NULL, KAFKA_UNKNOWN_SERVER_ERROR);
        broker_xcall_return(target, x);
    }
    coord_flush(gs);
}

static void op_issue(struct greq *g);

static void op_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    struct gop *op = x->arg;
    struct greq *g = op->g;
    LM_ASSERT(g->next < g->n_ops);
    g->next++;
    op_issue(g);
}

static void op_issue(struct greq *g)
{
    while (g->next < g->n_ops && g->ops[g->next].deny != 0) {
        group_api_fill(&g->ops[g->next], NULL, g->ops[g->next].deny);
        g->next++;
    }
    if (g->next >= g->n_ops) {
        group_api_finish(g);
        return;
    }
    struct gop *op = &g->ops[g->next];
    memset(&op->x, 0, sizeof(op->x));
    op->g = g;
    op->x.run = op_run;
    op->x.done = op_done;
    op->x.arg = op;
    broker_shard_call(g->req->shard, op->owner, &op->x);
}

void group_ops_start(struct greq *g)
{
    g->next = 0;
    op_issue(g);
}

/* ---- shard lifecycle ----------------------------------------------------------------------- */

void group_cluster_sync(struct hshard *hs);

int group_shard_start(struct hshard *hs)
{
    struct gshard *gs = calloc(1, sizeof(*gs));
    if (gs == NULL)
        return LM_E_NOMEM;
    gs->hs = hs;
    gs->timer.heap_index_ = UINT32_MAX;
    struct lm_group_config cfg = hs->node->group_cfg;
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
        seed = (uint64_t)group_now_ms(hs) ^ ((uint64_t)hs->id << 32);
    cfg.rand_seed = seed;
    int rc = lm_group_coord_new(&cfg, &gs->coord);
    if (rc != 0) {
        free(gs);
        return rc;
    }
    struct lm_cgroup_config ccfg = hs->node->cgroup_cfg;
    ccfg.rand_seed = seed ^ 0x5DEECE66Dull;
    if ((rc = lm_cgroup_coord_new(&ccfg, &gs->cgroup)) != 0) {
        lm_group_coord_free(gs->coord);
        free(gs);
        return rc;
    }
    if ((rc = lm_sgroup_coord_new(&hs->node->sgroup_cfg, &gs->sgroup)) != 0) {
        lm_cgroup_coord_free(gs->cgroup);
        lm_group_coord_free(gs->coord);
        free(gs);
        return rc;
    }
    if ((rc = producer_shard_start(hs, &gs->ps)) != 0) {
        lm_sgroup_coord_free(gs->sgroup);
        lm_cgroup_coord_free(gs->cgroup);
        lm_group_coord_free(gs->coord);
        free(gs);
        return rc;
    }
    hs->group = gs;
    int32_t n = cfg.offsets_topic_partitions, owned = 0;
    if (hs_cluster(hs->node)) {
        /* loaded as the controller's assignment makes them this node's (group_cluster_sync) */
        gs->cluster_loaded = calloc((size_t)n, sizeof(bool));
        gs->cluster_epoch = calloc((size_t)n, sizeof(int32_t));
        if (gs->cluster_loaded == NULL || gs->cluster_epoch == NULL)
            return LM_E_NOMEM;
        for (int32_t p = 0; p < n; p++)
            coord_unload(gs, p);
        group_cluster_sync(hs);
        coord_flush(gs);
        return 0;
    }
    for (int32_t p = 0; p < n; p++) {
        uint32_t owner =
            broker_partition_shard(GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p, hs->count);
        if (owner == hs->id) {
            load_partition(gs, p);
            owned++;
        } else {
            coord_unload(gs, p);
        }
    }
    BLOG_INFO("shard %u: group coordinator for %d of %d %s partitions, %zu groups loaded", hs->id,
              owned, n, GROUP_OFFSETS_TOPIC, lm_group_coord_n_groups(gs->coord));
    /* Unloading may have queued nothing (no parked requests yet); arm the first tick. */
    coord_flush(gs);
    return 0;
}

void group_cluster_sync(struct hshard *hs)
{
    struct gshard *gs = hs->group;
    if (gs == NULL || gs->stopping || gs->cluster_loaded == NULL || hs->snap == NULL)
        return;
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, GROUP_OFFSETS_TOPIC);
    int32_t n = hs->node->group_cfg.offsets_topic_partitions;
    bool changed = false;
    for (int32_t p = 0; p < n; p++) {
        if (broker_partition_shard(GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p, hs->count) !=
            hs->id)
            continue;
        bool local = t != NULL && p < t->partition_count && hs_local_replica(hs->node, t, p);
        struct hpart *hp =
            local ? hs_part(hs, GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p) : NULL;
        /* a replicated offsets partition: the coordinator is its Raft leader (Kafka's
         * coordinator follows partition leadership): load on becoming leader, unload on
         * losing it */
        /* ... once it has committed an entry of its term: its log then holds every commit
         * acknowledged by an earlier leader, and no uncommitted one of theirs; loaded again
         * when the epoch changed between two looks (lost and won back: another leader may
         * have taken commits meanwhile) */
        int32_t epoch = 0;
        if (hp != NULL && hp->replicated) {
            local = hp->part != NULL && partition_hw_known(hp->part);
            epoch = local ? partition_leader_epoch(hp->part) : 0;
            if (local && gs->cluster_loaded[p] && gs->cluster_epoch[p] != epoch) {
                coord_unload(gs, p);
                gs->cluster_loaded[p] = false;
                changed = true;
            }
        }
        if (local && !gs->cluster_loaded[p]) {
            if (hp == NULL || hp->log == NULL)
                continue; /* not open yet: the next tick */
            load_partition(gs, p);
            gs->cluster_loaded[p] = true;
            gs->cluster_epoch[p] = epoch;
            changed = true;
        } else if (!local && gs->cluster_loaded[p]) {
            coord_unload(gs, p);
            gs->cluster_loaded[p] = false;
            changed = true;
        }
    }
    if (changed)
        coord_flush(gs);
}

int group_offsets_topic_record(const struct handlers_ctx *node, struct lm_meta_record *r)
{
    static const struct lm_config_entry configs[] = {
        {(char *)"cleanup.policy", (char *)"compact"},
        {(char *)"retention.ms", (char *)"-1"},
        {(char *)"retention.bytes", (char *)"-1"},
    };
    memset(r, 0, sizeof(*r));
    r->type = LM_META_TOPIC_CREATE;
    r->topic = GROUP_OFFSETS_TOPIC;
    r->partition_count = node->group_cfg.offsets_topic_partitions;
    r->configs = configs;
    r->config_count = sizeof(configs) / sizeof(configs[0]);
    return lm_meta_new_topic_id(r->topic_id);
}

void group_partition_reopened(struct hshard *hs, const struct hpart *hp)
{
    struct gshard *gs = hs->group;
    if (gs == NULL || gs->stopping)
        return;
    producer_partition_reset(gs->ps, hp->topic_id, hp->partition);
    int32_t p = hp->partition;
    if (gs->cluster_loaded != NULL)
        return; /* a cluster: group_cluster_sync follows assignment and leadership */
    if (strcmp(hp->topic, GROUP_OFFSETS_TOPIC) != 0 || gs->coord == NULL || p < 0 ||
        p >= hs->node->group_cfg.offsets_topic_partitions ||
        broker_partition_shard(GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p, hs->count) !=
            hs->id)
        return;
    coord_unload(gs, p);
    load_partition(gs, p);
    coord_flush(gs);
}

void group_shard_drain(struct hshard *hs)
{
    struct gshard *gs = hs->group;
    if (gs == NULL || gs->coord == NULL)
        return;
    /* Parked JoinGroup/SyncGroup requests are answered (NOT_COORDINATOR) so the shard can
     * finish its in-flight requests; the clients find the coordinator again after restart. */
    for (int32_t p = 0; p < hs->node->group_cfg.offsets_topic_partitions; p++)
        if (broker_partition_shard(GROUP_OFFSETS_TOPIC, GROUP_OFFSETS_TOPIC_LEN, p, hs->count) ==
            hs->id)
            coord_unload(gs, p);
    coord_flush(gs);
}

void group_shard_flush(struct hshard *hs)
{
    if (hs->group != NULL)
        producer_shard_flush(hs->group->ps);
}

void group_shard_stop(struct hshard *hs)
{
    struct gshard *gs = hs->group;
    if (gs == NULL)
        return;
    gs->stopping = true;
    if (gs->timer_armed)
        broker_timer_cancel(hs->shard, &gs->timer);
    /* Readies still waiting for their appends (a commit's replication, when the shard stops
     * before it completed) are orphaned: their answers are dropped with the connections, and
     * the partitions' close, after this, completes their waits, the last one freeing them. */
    while (gs->defer_head != NULL) {
        struct gdefer *d = gs->defer_head;
        gs->defer_head = d->next;
        if (d->pending > 0)
            d->gs = NULL;
        else
            free(d);
    }
    gs->defer_tail = NULL;
    lm_group_coord_free(gs->coord);
    lm_cgroup_coord_free(gs->cgroup);
    lm_sgroup_coord_free(gs->sgroup);
    producer_shard_stop(gs->ps);
    hs->group = NULL;
    free(gs->cluster_loaded);
    free(gs->cluster_epoch);
    free(gs);
}

/* ---- setup ---------------------------------------------------------------------------------- */

int group_config_i64(struct broker_config *cfg, const char *key, int64_t min, int64_t max,
                     int64_t *out)
{
    const char *v = broker_config_get(cfg, key);
    if (v == NULL)
        return 0;
    broker_config_mark_used(cfg, key);
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno != 0 || end == v || *end != 0 || n < min || n > max) {
        BLOG_ERROR("%s=%s: expected an integer in [%lld, %lld]", key, v, (long long)min,
                   (long long)max);
        return LM_E_CONFIG;
    }
    *out = n;
    return 0;
}

/* Creates a coordinator's topic when missing and `create` (Kafka creates it on the first
 * FindCoordinator; at startup is simpler and deterministic); *have is its partition count, or
 * `want` while it does not exist. compact, and no time/size retention: offsets and transaction
 * states must outlive retention.ms. */
int group_internal_topic_ensure(struct lm_meta_store *meta, const char *topic,
                                const char *count_key, int32_t want, bool create, int32_t *have)
{
    if (lm_meta_store_cluster_node(meta) >= 0) {
        /* a cluster: created through the controller on the first FindCoordinator */
        *have = want;
        return 0;
    }
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(meta);
    const struct lm_meta_topic *t = lm_meta_state_find(&snap->state, topic);
    *have = t != NULL ? t->partition_count : 0;
    lm_meta_snapshot_release(snap);
    if (*have > 0) {
        if (*have != want)
            BLOG_WARN("%s has %d partitions (%s=%d): keeping %d, as Kafka does", topic, *have,
                      count_key, want, *have);
        return 0;
    }
    if (!create) {
        *have = want;
        return 0;
    }
    static const struct lm_config_entry configs[] = {
        {(char *)"cleanup.policy", (char *)"compact"},
        {(char *)"retention.ms", (char *)"-1"},
        {(char *)"retention.bytes", (char *)"-1"},
    };
    struct lm_meta_record r = {0};
    r.type = LM_META_TOPIC_CREATE;
    r.topic = topic;
    r.partition_count = want;
    r.configs = configs;
    r.config_count = sizeof(configs) / sizeof(configs[0]);
    int rc = lm_meta_new_topic_id(r.topic_id);
    if (rc == 0)
        rc = lm_meta_store_commit(meta, &r);
    if (rc != 0)
        return rc;
    BLOG_INFO("created %s with %d partitions", topic, want);
    *have = want;
    return 0;
}

int handlers_group_register(struct broker_dispatch *d)
{
    struct handlers_ctx *node = d->ctx;
    struct broker_config *cfg = node->cfg;
    struct lm_group_config *gcfg = &node->group_cfg;
    lm_group_config_default(gcfg);
    int64_t v;
    int rc = 0;
#define CFG32(key, field)                                                                          \
    do {                                                                                           \
        v = gcfg->field;                                                                           \
        if (rc == 0 && (rc = group_config_i64(cfg, key, 0, INT32_MAX, &v)) == 0)                   \
            gcfg->field = (int32_t)v;                                                              \
    } while (0)
    CFG32("group.min.session.timeout.ms", session_timeout_min_ms);
    CFG32("group.max.session.timeout.ms", session_timeout_max_ms);
    CFG32("group.initial.rebalance.delay.ms", initial_rebalance_delay_ms);
    CFG32("group.max.size", max_size);
    CFG32("offset.metadata.max.bytes", offset_metadata_max_bytes);
    CFG32("offsets.topic.num.partitions", offsets_topic_partitions);
#undef CFG32
    v = gcfg->offsets_retention_ms / 60000;
    if (rc == 0 &&
        (rc = group_config_i64(cfg, "offsets.retention.minutes", 1, INT64_MAX / 60000, &v)) == 0)
        gcfg->offsets_retention_ms = v * 60000;
    v = gcfg->offsets_retention_check_interval_ms;
    if (rc == 0 &&
        (rc = group_config_i64(cfg, "offsets.retention.check.interval.ms", 1, INT64_MAX, &v)) == 0)
        gcfg->offsets_retention_check_interval_ms = v;
    if (rc == 0)
        rc = group_cgroup_config(cfg, &node->cgroup_cfg);
    if (rc == 0)
        rc = group_share_config(cfg, &node->sgroup_cfg, &node->share_cfg);
    if (rc == 0)
        rc = share_state_config(node);
    if (rc != 0)
        return rc;
    /* classic members of consumer groups are held to the classic bounds */
    node->cgroup_cfg.classic_session_min_ms = gcfg->session_timeout_min_ms;
    node->cgroup_cfg.classic_session_max_ms = gcfg->session_timeout_max_ms;
    node->cgroup_cfg.classic_max_size = gcfg->max_size;
    if (gcfg->offsets_topic_partitions < 1 ||
        gcfg->offsets_topic_partitions > LM_GROUP_PARTITIONS_MAX) {
        BLOG_ERROR("offsets.topic.num.partitions must be in [1, %d]", LM_GROUP_PARTITIONS_MAX);
        return LM_E_CONFIG;
    }
    int32_t have = 0;
    if ((rc = group_internal_topic_ensure(node->meta, GROUP_OFFSETS_TOPIC,
                                          "offsets.topic.num.partitions",
                                          gcfg->offsets_topic_partitions, true, &have)) != 0) {
        BLOG_ERROR("cannot create %s: %s", GROUP_OFFSETS_TOPIC, lm_strerror(rc));
        return rc;
    }
    if (have > LM_GROUP_PARTITIONS_MAX)
        return LM_E_CONFIG;
    gcfg->offsets_topic_partitions = have;
    if ((rc = group_api_register(d)) != 0)
        return rc;
    return producer_register(d);
}
