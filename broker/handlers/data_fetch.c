/* Fetch (v4-17), with incremental fetch sessions (KIP-227, Kafka's FetchManager.newContext):
 *   epoch -1: sessionless (a session named is closed);
 *   epoch 0: a full fetch that creates a session when the shard's cache has room (a session
 *            named is closed first), answered with its id;
 *   epoch > 0: incremental on the named session: its partitions are updated from the request
 *            and forgotten_topics_data, all of them are read, and only those with records or a
 *            changed high watermark or log start offset, or an error, are answered (those that
 *            returned records move to the back of the session for the next response's budget).
 * Sessions live on the shard serving the connection (fetch_session.h); an id from another
 * shard's range is unknown here (FETCH_SESSION_ID_NOT_FOUND: the client starts a new one).
 *
 * A pass reads every partition on its owner shard, one shard after the other so that
 * max_bytes is a budget over the whole response (KIP-74: the first batch of the first
 * non-empty partition is returned even when larger than the limits). Record bytes never pass
 * through user space: the owner shard hands back (dup'd fd, position, length) slices of its
 * segment files and the runtime sends them with sendfile/splice (DESIGN.md §2,
 * broker_req_respond_parts).
 *
 * Long-poll: when a pass has fewer than min_bytes and max_wait_ms > 0, the fetch parks: a
 * one-shot waiter goes on each requested partition's owner shard (it fires at once if the log
 * grew since the pass read it), an append wakes the fetch through a cross-shard call, and the
 * fetch runs another pass; the timer at max_wait_ms runs the final pass.
 *
 *   READING --pass done, enough or final--> respond
 *   READING --pass done, not enough--> WATCHING --watch done--> PARKED (or READING if woken)
 *   PARKED --wake--> READING        PARKED --timer / drain--> READING (final)
 *   PARKED --a later Fetch on the same connection names its session--> READING (final)
 *
 * Requests on one connection are answered in order, and Kafka reads a connection's next
 * request only once the previous one is answered (the channel is muted meanwhile), so a Fetch
 * naming a session whose fetch is still in flight on the same connection sees that fetch
 * answered first. The Java consumer sends one on close(): a Fetch with epoch -1 closing the
 * session while its long-poll is parked. Here the later Fetch waits for the earlier one (it
 * would otherwise close or move the session under it: FETCH_SESSION_ID_NOT_FOUND or
 * INVALID_FETCH_SESSION_EPOCH in the earlier answer) and ends the earlier one's wait at once:
 * its answer is no longer of use to the client, which has moved on, so close() does not sit
 * out fetch.max.wait.ms (Kafka makes it wait for the rest of the long-poll). */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/metrics.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "protocol/kafka_fetch.h"

enum fetch_state { F_READING, F_WATCHING, F_PARKED };
enum fetch_context { FC_SESSIONLESS, FC_FULL, FC_INCREMENTAL };

/* A partition's read at least this large goes out as file parts (sendfile/splice); smaller
 * ones are copied into the response. */
#define FETCH_ZERO_COPY_MIN_BYTES ((uint64_t)64 << 10)

struct fout {
    int64_t high_watermark;
    int64_t log_start_offset;
    int64_t leo_seen; /* log end offset when the pass read the partition, -1 unknown */
    int64_t last_stable;
    /* read_committed: the aborted transactions overlapping what was read (malloc'd on the
     * owner shard, Kafka's collectAbortedTransactions) */
    struct storage_aborted_txn *aborted;
    uint32_t aborted_count;
    /* The record bytes: slices of segment files. The fds are dup()s made on the owner shard,
     * so the segments may be closed, rolled or deleted meanwhile (the file stays readable);
     * they go to the runtime with the response, or are closed here (free_data). */
    struct storage_slice slices[STORAGE_READ_SLICES_MAX];
    uint32_t slice_count;
    uint8_t *data; /* or: a small read copied (malloc'd on the owner shard) */
    size_t len;
    bool wake_now; /* watch: the log grew since the pass */
};

struct hfetch {
    struct broker_req *req;
    struct hshard *hs;
    struct kafka_fetch_request rq;
    struct kafka_fetch_response resp;
    struct hwork *items;
    struct fout *outs;
    size_t count;
    struct hfan fan;
    /* Written by the owner shard running the current (sequential) pass. */
    int64_t budget;
    size_t bytes;
    uint64_t id;
    struct broker_timer timer;
    enum fetch_state state;
    bool final;
    bool woken;
    bool parked_listed;
    bool quota_consumer; /* a consumer under a consumer_byte_rate quota */
    bool follower;       /* replica id >= 0: a privileged session */
    enum fetch_context context;
    int32_t session_epoch; /* incremental: the session's epoch once this request was taken */
    uint64_t deadline_ms;
    struct hfetch *next;
    /* incremental: on hs->on_session from its first pass to its answer */
    struct hfetch *session_next;
    bool session_listed;
    /* later Fetches of the same connection naming this one's session, in arrival order: each
     * starts once the one before it is answered */
    struct hfetch *deferred;
    struct hfetch *deferred_next;
};

struct hwake {
    struct broker_xcall x;
    uint64_t fetch_id;
};

static void pass_start(struct hfetch *fc);
static void fetch_start(struct hfetch *fc);
static void fetch_begin(struct hfetch *fc);

/* ---- waking -------------------------------------------------------------------------------- */

static void wake_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct hwake *w = x->arg;
    data_fetch_wake(hs_of(target), w->fetch_id);
    broker_xcall_return(target, x);
}

static void wake_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    free(x->arg);
}

void hs_fetch_wake_send(struct hshard *hs, uint32_t origin, uint64_t fetch_id)
{
    struct hwake *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        BLOG_WARN("out of memory waking a fetch; it answers at its timeout");
        return;
    }
    w->fetch_id = fetch_id;
    w->x.run = wake_run;
    w->x.done = wake_done;
    w->x.arg = w;
    broker_shard_call(hs->shard, origin, &w->x);
}

void hs_waiter_drop(struct hpart *p, struct hwaiter **w)
{
    struct hwaiter *dead = *w;
    *w = dead->next;
    if (!dead->fired && dead->watch_id > 0 && p->part != NULL)
        partition_unwatch(p->part, dead->watch_id);
    free(dead);
}

static void wake_matching(struct hshard *hs, struct hpart *p, bool fired_only)
{
    struct hwaiter **w = &p->waiters;
    while (*w != NULL) {
        if (fired_only && !(*w)->fired) {
            w = &(*w)->next;
            continue;
        }
        /* At shard stop every fetch has answered already (drain): just drop the waiters. */
        if (!hs->stopping)
            hs_fetch_wake_send(hs, (*w)->origin, (*w)->fetch_id);
        hs_waiter_drop(p, w);
    }
    p->waiters_fired = false;
}

void hs_wake_waiters(struct hshard *hs, struct hpart *p)
{
    wake_matching(hs, p, false);
}

void hs_wake_fired(struct hshard *hs, struct hpart *p)
{
    if (p->waiters_fired)
        wake_matching(hs, p, true);
}

/* partition_watch: the high watermark passed what the fetch saw (or the partition closed or
 * failed). Runs inside the partition's drive step: only marked here, woken by hs_part_kick. */
static void waiter_fired(void *user, int err, int64_t hw)
{
    (void)err;
    (void)hw;
    struct hwaiter *wt = user;
    wt->fired = true;
    wt->p->waiters_fired = true;
}

void hs_waiters_arm(struct hshard *hs, struct hpart *p)
{
    LM_ASSERT(p->part != NULL);
    bool armed = false;
    for (struct hwaiter *wt = p->waiters; wt != NULL; wt = wt->next) {
        if (wt->fired || wt->watch_id > 0)
            continue;
        armed = true;
        int64_t id = partition_watch(p->part, wt->target, waiter_fired, wt);
        if (id < 0) {
            wt->fired = true; /* table full: the fetch reads again */
            p->waiters_fired = true;
        } else {
            wt->watch_id = id;
        }
    }
    if (armed)
        hs_part_kick(hs, p);
}

static struct hfetch *parked_find(struct hshard *hs, uint64_t id)
{
    for (struct hfetch *f = hs->parked; f != NULL; f = f->next)
        if (f->id == id)
            return f;
    return NULL;
}

static void parked_remove(struct hfetch *fc)
{
    if (!fc->parked_listed)
        return;
    for (struct hfetch **pp = &fc->hs->parked; *pp != NULL; pp = &(*pp)->next)
        if (*pp == fc) {
            *pp = fc->next;
            break;
        }
    fc->parked_listed = false;
}

void data_fetch_wake(struct hshard *hs, uint64_t fetch_id)
{
    struct hfetch *fc = parked_find(hs, fetch_id);
    if (fc == NULL) {
        share_fetch_wake(hs, fetch_id); /* a ShareFetch's (the ids are shared), or answered */
        return;
    }
    if (fc->state == F_PARKED)
        pass_start(fc);
    else
        fc->woken = true;
}

static void timer_fired(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct hfetch *fc = t->arg;
    fc->final = true;
    if (fc->state == F_PARKED)
        pass_start(fc);
}

void data_fetch_drain(struct hshard *hs)
{
    /* Shutdown: every parked fetch answers with what it has now. */
    struct hfetch *fc = hs->parked;
    while (fc != NULL) {
        struct hfetch *next = fc->next; /* pass_start may answer fc and unlink it */
        fc->final = true;
        if (fc->state == F_PARKED) {
            broker_timer_cancel(hs->shard, &fc->timer);
            pass_start(fc);
        }
        fc = next;
    }
}

/* ---- fetch sessions ------------------------------------------------------------------------ */

static struct fsess_key topic_key(bool by_id, const struct kafka_uuid *id, struct kafka_str name,
                                  int32_t partition)
{
    struct fsess_key k = {.partition = partition};
    if (by_id) {
        memcpy(k.topic_id, id->b, 16);
    } else {
        k.topic = name.ptr;
        k.topic_len = name.len > 0 ? (size_t)name.len : 0;
    }
    return k;
}

static bool same_topic(const struct fsess *s, const struct fsess_part *a,
                       const struct fsess_part *b)
{
    if (s->by_id)
        return memcmp(a->topic_id, b->topic_id, 16) == 0;
    return a->topic_len == b->topic_len && memcmp(a->topic, b->topic, a->topic_len) == 0;
}

/* The request's topics made from the session's partitions, in the session's order, in the
 * request's arena (the session may change or go while the fetch is parked). */
static bool session_request(struct hfetch *fc, const struct fsess *s)
{
    struct broker_req *req = fc->req;
    size_t nt = 0;
    for (uint32_t i = 0; i < s->n; i++)
        nt += i == 0 || !same_topic(s, &s->parts[i - 1], &s->parts[i]);
    struct kafka_fetch_request_fetch_topic *topics = h_alloc(req, nt, sizeof(*topics));
    struct kafka_fetch_request_fetch_partition *parts = h_alloc(req, s->n, sizeof(*parts));
    if (topics == NULL || parts == NULL)
        return false;
    struct kafka_fetch_request_fetch_topic *t = NULL;
    for (uint32_t i = 0; i < s->n; i++) {
        const struct fsess_part *sp = &s->parts[i];
        if (i == 0 || !same_topic(s, &s->parts[i - 1], sp)) {
            t = t == NULL ? topics : t + 1;
            memset(t, 0, sizeof(*t));
            t->topic = KAFKA_STR_NULL;
            if (!s->by_id) {
                struct kafka_str name = {sp->topic, (int32_t)sp->topic_len};
                t->topic.ptr = h_strdup(req, name);
                t->topic.len = (int32_t)sp->topic_len;
                if (t->topic.ptr == NULL)
                    return false;
            }
            memcpy(t->topic_id.b, sp->topic_id, 16);
            t->partitions = &parts[i];
        }
        parts[i] = (struct kafka_fetch_request_fetch_partition){
            .partition = sp->partition,
            .current_leader_epoch = sp->current_leader_epoch,
            .fetch_offset = sp->fetch_offset,
            .last_fetched_epoch = sp->last_fetched_epoch,
            .log_start_offset = sp->fetcher_log_start,
            .partition_max_bytes = sp->max_bytes,
        };
        t->partitions_count++;
    }
    fc->rq.topics = topics;
    fc->rq.topics_count = (int32_t)nt;
    return true;
}

/* FetchManager.newContext. Returns false when the request was answered (a session error). */
static bool session_begin(struct hfetch *fc)
{
    struct hshard *hs = fc->hs;
    int32_t id = fc->rq.session_id, epoch = fc->rq.session_epoch;
    bool by_id = fc->req->api_version >= 13;
    if (epoch == FSESS_INITIAL_EPOCH || epoch == FSESS_FINAL_EPOCH) {
        if (id != 0)
            fsess_remove(&hs->fsess, id); /* a full fetch closes the session it names */
        fc->context = epoch == FSESS_FINAL_EPOCH ? FC_SESSIONLESS : FC_FULL;
        return true;
    }
    struct fsess *s = fsess_find(&hs->fsess, id);
    int16_t err = s == NULL           ? KAFKA_FETCH_SESSION_ID_NOT_FOUND
                  : s->epoch != epoch ? KAFKA_INVALID_FETCH_SESSION_EPOCH
                  : s->by_id != by_id ? KAFKA_FETCH_SESSION_TOPIC_ID_ERROR
                                      : KAFKA_NONE;
    for (int32_t i = 0; err == KAFKA_NONE && i < fc->rq.topics_count; i++) {
        const struct kafka_fetch_request_fetch_topic *t = &fc->rq.topics[i];
        for (int32_t j = 0; j < t->partitions_count; j++) {
            const struct kafka_fetch_request_fetch_partition *pi = &t->partitions[j];
            struct fsess_key k = topic_key(by_id, &t->topic_id, t->topic, pi->partition);
            if (fsess_put(&hs->fsess, s, &k, pi->partition_max_bytes, pi->fetch_offset,
                          pi->log_start_offset, pi->current_leader_epoch,
                          pi->last_fetched_epoch) < 0) {
                /* the cache's partition budget is spent: the client starts over with a full
                 * fetch, which goes on sessionless while there is no room */
                fsess_remove(&hs->fsess, id);
                err = KAFKA_FETCH_SESSION_ID_NOT_FOUND;
                break;
            }
        }
    }
    for (int32_t i = 0; err == KAFKA_NONE && i < fc->rq.forgotten_topics_data_count; i++) {
        const struct kafka_fetch_request_forgotten_topic *t = &fc->rq.forgotten_topics_data[i];
        for (int32_t j = 0; j < t->partitions_count; j++) {
            struct fsess_key k = topic_key(by_id, &t->topic_id, t->topic, t->partitions[j]);
            fsess_forget(&hs->fsess, s, &k);
        }
    }
    if (s != NULL)
        fsess_forget_done(s);
    if (err != KAFKA_NONE) {
        fc->resp.error_code = err;
        fc->resp.session_id = 0;
        fc->resp.responses_count = 0;
        h_respond(fc->req, &fc->resp);
        return false;
    }
    if (s->n == 0) {
        /* nothing left to fetch: the session ends, the (empty) request goes on without one */
        fsess_remove(&hs->fsess, id);
        fc->context = FC_SESSIONLESS;
        return true;
    }
    s->epoch = fsess_next_epoch(s->epoch);
    fsess_touch(s, broker_now_ms());
    fc->context = FC_INCREMENTAL;
    fc->session_epoch = s->epoch;
    fc->resp.session_id = id;
    if (!session_request(fc, s)) {
        h_close(fc->req, "fetch session does not fit the request arena");
        return false;
    }
    return true;
}

/* At answer time: whether the incremental session is still the one the request updated (a
 * later request on it moved its epoch, or it was evicted). Kafka answers such a request with
 * INVALID_FETCH_SESSION_EPOCH and nothing else. */
static int16_t session_check(struct hfetch *fc)
{
    if (fc->context != FC_INCREMENTAL)
        return KAFKA_NONE;
    struct fsess *s = fsess_find(&fc->hs->fsess, fc->resp.session_id);
    if (s == NULL)
        return KAFKA_FETCH_SESSION_ID_NOT_FOUND;
    if (s->epoch != fc->session_epoch || s->n != fc->count)
        return KAFKA_INVALID_FETCH_SESSION_EPOCH;
    return KAFKA_NONE;
}

/* A full fetch makes its session from what it answered (FullFetchContext). */
static void session_create(struct hfetch *fc)
{
    struct hshard *hs = fc->hs;
    bool by_id = fc->req->api_version >= 13;
    struct fsess *s = fsess_create(&hs->fsess, broker_now_ms(), fc->follower, by_id,
                                   fc->count > UINT32_MAX ? UINT32_MAX : (uint32_t)fc->count);
    if (s == NULL)
        return;
    size_t k = 0;
    for (int32_t i = 0; i < fc->resp.responses_count; i++) {
        const struct kafka_fetch_request_fetch_topic *t = &fc->rq.topics[i];
        const struct kafka_fetch_response_fetchable_topic_response *tr = &fc->resp.responses[i];
        for (int32_t j = 0; j < tr->partitions_count; j++, k++) {
            const struct kafka_fetch_request_fetch_partition *pi = &t->partitions[j];
            const struct kafka_fetch_response_partition_data *pd = &tr->partitions[j];
            struct fsess_key key = topic_key(by_id, &t->topic_id, t->topic, pi->partition);
            int64_t at =
                fsess_put(&hs->fsess, s, &key, pi->partition_max_bytes, pi->fetch_offset,
                          pi->log_start_offset, pi->current_leader_epoch, pi->last_fetched_epoch);
            if (at < 0) {
                fsess_remove(&hs->fsess, s->id); /* budget spent: sessionless after all */
                return;
            }
            fsess_must_respond(&s->parts[at], fc->outs[k].len, pd->high_watermark,
                               pd->log_start_offset, pd->error_code, false, true);
        }
    }
    fc->resp.session_id = s->id;
}

/* IncrementalFetchContext.updateAndGenerateResponseData: the response keeps the partitions
 * that must be answered; those that returned records go to the back of the session. */
static void session_filter(struct hfetch *fc)
{
    struct fsess *s = fsess_find(&fc->hs->fsess, fc->resp.session_id);
    LM_ASSERT(s != NULL && s->n == fc->count); /* session_check passed on this turn */
    bool *to_back = h_alloc(fc->req, fc->count, sizeof(*to_back));
    size_t k = 0;
    int32_t kept_topics = 0;
    for (int32_t i = 0; i < fc->resp.responses_count; i++) {
        struct kafka_fetch_response_fetchable_topic_response *tr = &fc->resp.responses[i];
        int32_t kept = 0;
        for (int32_t j = 0; j < tr->partitions_count; j++, k++) {
            const struct kafka_fetch_response_partition_data *pd = &tr->partitions[j];
            uint64_t bytes = fc->outs[k].len;
            bool must = fsess_must_respond(&s->parts[k], bytes, pd->high_watermark,
                                           pd->log_start_offset, pd->error_code, false, true);
            if (to_back != NULL)
                to_back[k] = must && bytes > 0;
            if (must)
                tr->partitions[kept++] = *pd;
        }
        tr->partitions_count = kept;
        if (kept > 0)
            fc->resp.responses[kept_topics++] = *tr;
    }
    LM_ASSERT(k == fc->count);
    fc->resp.responses_count = kept_topics;
    /* without the order change the next response's budget just favours the same partitions */
    if (to_back != NULL && fsess_rotate(s, to_back) != 0)
        BLOG_WARN_LIMITED("fetch session %d: out of memory reordering its partitions", s->id);
}

/* ---- the pass ------------------------------------------------------------------------------ */

/* The aborted transactions a read_committed consumer needs for the batches read: those
 * overlapping [fetch offset, last offset read + 1) (Kafka UnifiedLog.collectAbortedTransactions).
 */
#define FETCH_ABORTED_MAX 4096

int hs_aborted_txns(struct hpart *p, int64_t from, int64_t upper, struct storage_aborted_txn **out,
                    uint32_t *count)
{
    *out = NULL;
    *count = 0;
    uint32_t cap = 16;
    for (;;) {
        struct storage_aborted_txn *a = malloc(cap * sizeof(*a));
        if (a == NULL)
            return LM_E_NOMEM;
        uint32_t n = 0;
        int rc = storage_log_aborted_txns(partition_storage(p->part), from, upper, a, cap, &n);
        if (rc == LM_E_FULL && cap < FETCH_ABORTED_MAX) {
            free(a);
            cap *= 4;
            continue;
        }
        if (rc != 0 || n == 0) {
            free(a);
            return rc;
        }
        *out = a;
        *count = n;
        return 0;
    }
}

/* A partition whose log the open-log budget closed: answered from what the log showed as it
 * closed when that is the whole answer (an error, nothing to read at the fetch offset, no
 * bytes left in the response), without opening it. Returns false when the log must be read. */
static bool fetch_closed(const struct hpart *p, struct hwork *w, const struct hfetch *fc)
{
    const struct kafka_fetch_request_fetch_partition *in = w->in;
    struct fout *o = w->out;
    if ((w->error = h_check_epoch(p, in->current_leader_epoch)) != KAFKA_NONE)
        return true;
    o->high_watermark = p->idle_hw;
    o->last_stable = p->idle_lso;
    o->log_start_offset = p->idle_start;
    o->leo_seen = p->idle_leo;
    if (in->fetch_offset < p->idle_start || in->fetch_offset > p->idle_leo) {
        w->error = KAFKA_OFFSET_OUT_OF_RANGE; /* a lone replica: never deposed */
        return true;
    }
    int64_t end = fc->rq.isolation_level == 1 ? p->idle_lso : p->idle_hw;
    return in->fetch_offset >= end || in->partition_max_bytes <= 0 ||
           (fc->bytes > 0 && fc->budget <= 0);
}

static void fetch_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    (void)hs;
    struct hfetch *fc = f->ctx;
    const struct kafka_fetch_request_fetch_partition *in = w->in;
    struct fout *o = w->out;
    w->error = KAFKA_NONE;
    o->high_watermark = -1;
    o->log_start_offset = -1;
    o->leo_seen = -1;
    o->last_stable = -1;
    if (p == NULL) {
        w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    if (hs_part_budget_closed(p) && fetch_closed(p, w, fc))
        return;
    if (!p->failed)
        (void)hs_part_open(p);
    if (hs_part_budget_closed(p))
        return; /* the open-log budget is taken by logs in use: read it in a later fetch */
    if (p->log == NULL || p->failed) {
        w->error = KAFKA_KAFKA_STORAGE_ERROR;
        return;
    }
    if ((w->error = h_check_epoch(p, in->current_leader_epoch)) != KAFKA_NONE)
        return;
    if (p->replicated && p->part != NULL &&
        (!partition_hw_known(p->part) ||
         !partition_lease_valid(p->part, (int64_t)broker_now_ms()))) {
        /* consumers fetch from the leader, and from a new one only after its first commit:
         * before that its high watermark could be below the one the previous leader answered
         * with; nor from one without its lease (cut off: a successor may have gone further);
         * the consumer retries after a metadata refresh. A leader this fetch just woke from
         * quiescence has its lease a round trip away: the fetch waits for it, within its
         * max_wait. */
        if (!partition_hw_known(p->part) ||
            !hs_lease_park(hs, p, w, f, fc->rq.max_wait_ms > 0 ? (uint64_t)fc->rq.max_wait_ms : 0,
                           KAFKA_NOT_LEADER_OR_FOLLOWER))
            w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        return;
    }
    int64_t start = storage_log_start_offset(p->log);
    int64_t leo = storage_log_end_offset(p->log);
    /* The partition's high watermark (raft commit + 1) and last stable offset (the earliest
     * open transaction below it); read_committed reads up to the latter. */
    int64_t hw = partition_high_watermark(p->part);
    o->high_watermark = hw;
    o->last_stable = partition_last_stable_offset(p->part);
    o->log_start_offset = start;
    o->leo_seen = leo;
    if (in->fetch_offset < start || in->fetch_offset > leo) {
        /* Past the end of a replicated partition's log: a leader deposed without knowing it
         * yet (paused, cut off) sees offsets its successor gave out. Out of range would send
         * the consumer back to its reset policy; this sends it to the new leader. */
        w->error = p->replicated && in->fetch_offset > leo ? KAFKA_NOT_LEADER_OR_FOLLOWER
                                                           : KAFKA_OFFSET_OUT_OF_RANGE;
        return;
    }
    if (in->partition_max_bytes <= 0 || (fc->bytes > 0 && fc->budget <= 0))
        return;
    int64_t limit = in->partition_max_bytes;
    if (fc->budget < limit)
        limit = fc->budget > 0 ? fc->budget : 1;
    struct storage_read_result res;
    bool committed = fc->rq.isolation_level == 1;
    int rc = committed ? partition_read_stable(p->part, in->fetch_offset, (uint64_t)limit, &res)
                       : partition_read(p->part, in->fetch_offset, (uint64_t)limit, true, &res);
    if (rc != 0) {
        w->error = h_storage_error(rc);
        return;
    }
    if (committed && res.bytes > 0 &&
        (rc = hs_aborted_txns(p, in->fetch_offset, res.last_offset + 1, &o->aborted,
                              &o->aborted_count)) != 0) {
        partition_read_release(p->part, &res);
        w->error = h_storage_error(rc);
        return;
    }
    /* storage returns at least one batch; past the first partition with data, one that does
     * not fit is left for the next fetch (KIP-74 waives the limit only for the first). */
    if (res.bytes > 0 && res.bytes < FETCH_ZERO_COPY_MIN_BYTES &&
        !(fc->bytes > 0 && res.bytes > (uint64_t)limit)) {
        /* Small reads are copied: a file part costs a sendfile, or two splice round trips
         * through io-wq on io_uring, per slice, which is dearer than copying a few KiB that
         * are in the page cache anyway (the e2e latency case). */
        o->data = malloc(res.bytes);
        if (o->data == NULL) {
            w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        } else if ((rc = storage_read_result_copy(&res, o->data, res.bytes)) != 0) {
            free(o->data);
            o->data = NULL;
            w->error = h_storage_error(rc);
        } else {
            o->len = res.bytes;
            fc->bytes += res.bytes;
            fc->budget -= (int64_t)res.bytes;
        }
    } else if (res.bytes > 0 && !(fc->bytes > 0 && res.bytes > (uint64_t)limit)) {
        /* No copy: the response names the file ranges and the runtime sends them with
         * sendfile/splice (DESIGN.md §2). */
        for (uint32_t i = 0; i < res.slice_count && w->error == KAFKA_NONE; i++) {
            int fd = fcntl(res.slices[i].fd, F_DUPFD_CLOEXEC, 0);
            if (fd < 0) {
                BLOG_WARN("fetch: dup of a segment fd: %s", strerror(errno));
                w->error = KAFKA_UNKNOWN_SERVER_ERROR;
                break;
            }
            o->slices[o->slice_count] = res.slices[i];
            o->slices[o->slice_count++].fd = fd;
        }
        if (w->error == KAFKA_NONE) {
            o->len = res.bytes;
            fc->bytes += res.bytes;
            fc->budget -= (int64_t)res.bytes;
        }
    }
    partition_read_release(p->part, &res);
}

static void free_out(struct fout *o)
{
    for (uint32_t j = 0; j < o->slice_count; j++)
        close(o->slices[j].fd);
    o->slice_count = 0;
    free(o->data);
    o->data = NULL;
    o->len = 0;
    free(o->aborted);
    o->aborted = NULL;
    o->aborted_count = 0;
}

static void free_data(struct hfetch *fc)
{
    for (size_t i = 0; i < fc->count; i++)
        free_out(&fc->outs[i]);
}

/* The response with file slices in place of record bytes: each partition with data gets a
 * 16-byte marker (a per-shard random nonce + its index) as records, the codec encodes that,
 * and the encoded bytes are cut at each marker: the length prefix is re-encoded for the real
 * size and the slices follow. The prefix is int32 (v4-11) or a compact uvarint (v12+), so the
 * marker's own prefix is checked before cutting. Returns false on arena exhaustion or a
 * marker not found (then nothing was handed over). */
enum { ZC_MARKER_BYTES = 16 };

static void zc_marker(const struct hshard *hs, uint32_t k, uint8_t out[ZC_MARKER_BYTES])
{
    memcpy(out, hs->zc_nonce, 8);
    memcpy(out + 8, "LMZC", 4);
    out[12] = (uint8_t)(k >> 24), out[13] = (uint8_t)(k >> 16), out[14] = (uint8_t)(k >> 8);
    out[15] = (uint8_t)k;
}

static size_t put_len(uint8_t *p, bool compact, uint64_t len)
{
    if (!compact) {
        p[0] = (uint8_t)(len >> 24), p[1] = (uint8_t)(len >> 16), p[2] = (uint8_t)(len >> 8);
        p[3] = (uint8_t)len;
        return 4;
    }
    uint64_t v = len + 1; /* compact bytes: length + 1 (KIP-482) */
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (uint8_t)v;
    return n;
}

static bool respond_zero_copy(struct hfetch *fc, const uint8_t *buf, size_t len, uint32_t ndata)
{
    struct broker_req *req = fc->req;
    bool compact = req->flexible;
    size_t cap = 1 + (size_t)ndata * (2 + STORAGE_READ_SLICES_MAX);
    struct broker_resp_part *parts = h_alloc(req, cap, sizeof(*parts));
    uint8_t *prefixes = h_alloc(req, (size_t)ndata, 8);
    if (parts == NULL || prefixes == NULL)
        return false;
    uint8_t expect_prefix[8];
    size_t expect_len = put_len(expect_prefix, compact, ZC_MARKER_BYTES);
    size_t n = 0, at = 0;
    uint32_t k = 0;
    for (size_t i = 0; i < fc->count; i++) {
        struct fout *o = &fc->outs[i];
        if (o->slice_count == 0)
            continue;
        uint8_t marker[ZC_MARKER_BYTES];
        zc_marker(fc->hs, k, marker);
        const uint8_t *m = memmem(buf + at, len - at, marker, sizeof(marker));
        if (m == NULL || (size_t)(m - buf) < at + expect_len ||
            memcmp(m - expect_len, expect_prefix, expect_len) != 0)
            return false;
        size_t cut = (size_t)(m - buf) - expect_len;
        parts[n++] = (struct broker_resp_part){.mem = buf + at, .fd = -1, .len = cut - at};
        uint8_t *pfx = prefixes + 8 * (size_t)k;
        parts[n++] =
            (struct broker_resp_part){.mem = pfx, .fd = -1, .len = put_len(pfx, compact, o->len)};
        for (uint32_t j = 0; j < o->slice_count; j++)
            parts[n++] = (struct broker_resp_part){.fd = o->slices[j].fd,
                                                   .offset = o->slices[j].position,
                                                   .len = (size_t)o->slices[j].length};
        at = (size_t)(m - buf) + ZC_MARKER_BYTES;
        k++;
    }
    LM_ASSERT(k == ndata && n < cap);
    parts[n++] = (struct broker_resp_part){.mem = buf + at, .fd = -1, .len = len - at};
    /* The fds now belong to the runtime; the copied reads are in the encoded bytes. */
    for (size_t i = 0; i < fc->count; i++) {
        fc->outs[i].slice_count = 0;
        free_out(&fc->outs[i]);
    }
    broker_req_respond_parts(req, parts, (uint32_t)n);
    return true;
}

/* KafkaApis.handleFetchRequest for a consumer under a quota: the response's bytes count
 * against its consumer byte rate; over the quota they are taken back and the response goes out
 * empty (FetchContext.getThrottledResponse) with the throttle time, and the connection reads
 * nothing more until it has passed (KIP-219). Counted are the record bytes of the response.
 * Returns whether the response was throttled. */
static bool fetch_quota(struct hfetch *fc)
{
    struct broker_req *req = fc->req;
    double bytes = 0;
    size_t k = 0;
    for (int32_t i = 0; i < fc->resp.responses_count; i++)
        for (int32_t j = 0; j < fc->resp.responses[i].partitions_count; j++, k++)
            if (fc->items[k].error == KAFKA_NONE)
                bytes += (double)fc->outs[k].len;
    LM_ASSERT(k == fc->count);
    int32_t throttle_ms = h_quota_record(req, LM_QUOTA_CONSUMER_BYTE_RATE, bytes);
    if (throttle_ms == 0)
        return false;
    h_quota_unrecord(req, LM_QUOTA_CONSUMER_BYTE_RATE, bytes);
    broker_shard_counter_add(req->shard, BROKER_C_FETCH_THROTTLED, 1);
    free_data(fc);
    fc->resp.responses_count = 0;
    fc->resp.throttle_time_ms = throttle_ms;
    broker_req_throttle(req, (uint32_t)throttle_ms);
    return true;
}

static void session_unlist(struct hfetch *fc)
{
    if (!fc->session_listed)
        return;
    for (struct hfetch **pp = &fc->hs->on_session; *pp != NULL; pp = &(*pp)->session_next)
        if (*pp == fc) {
            *pp = fc->session_next;
            break;
        }
    fc->session_listed = false;
}

/* The incremental fetch in flight on the session a new request of the same connection names,
 * or NULL. At most one: a second one waits behind the first (session_defer). */
static struct hfetch *session_inflight(struct hfetch *fc)
{
    if (fc->req->api_version < 7 || fc->rq.session_id == 0)
        return NULL;
    for (struct hfetch *q = fc->hs->on_session; q != NULL; q = q->session_next)
        if (q->req->conn == fc->req->conn && q->resp.session_id == fc->rq.session_id)
            return q;
    return NULL;
}

/* A Fetch naming the session of an incremental fetch still in flight on its connection waits
 * until that one is answered (see the top of the file), and makes that one's pass final: a
 * parked one runs it now. True when fc waits. */
static bool session_defer(struct hfetch *fc)
{
    struct hfetch *p = session_inflight(fc);
    if (p == NULL)
        return false;
    LM_ASSERT(p != fc && p->context == FC_INCREMENTAL && fc->deferred == NULL);
    struct hfetch **pp = &p->deferred;
    while (*pp != NULL)
        pp = &(*pp)->deferred_next;
    fc->deferred_next = NULL;
    *pp = fc;
    p->final = true;
    if (p->state == F_PARKED)
        pass_start(p); /* may answer p, and start fc, before returning */
    return true;
}

static void respond_send(struct hfetch *fc);

/* Answers fc, then starts the fetches that waited for it, in order (the first one may make
 * the others wait again, for it). */
static void respond(struct hfetch *fc)
{
    struct hfetch *after = fc->deferred;
    fc->deferred = NULL;
    session_unlist(fc);
    respond_send(fc); /* fc may be gone */
    while (after != NULL) {
        struct hfetch *next = after->deferred_next;
        after->deferred_next = NULL;
        fetch_start(after);
        after = next;
    }
}

static void respond_send(struct hfetch *fc)
{
    struct broker_req *req = fc->req;
    parked_remove(fc);
    broker_timer_cancel(req->shard, &fc->timer);
    int16_t session_err = session_check(fc);
    if (session_err != KAFKA_NONE) {
        free_data(fc);
        fc->resp.error_code = session_err;
        fc->resp.session_id = 0;
        fc->resp.responses_count = 0;
    }
    /* throttled: the response has no topics (and no data) and makes no session */
    bool throttled = session_err != KAFKA_NONE || (fc->quota_consumer && fetch_quota(fc));
    size_t k = 0;
    uint32_t ndata = 0;
    uint8_t *markers = h_alloc(req, fc->count, ZC_MARKER_BYTES);
    for (int32_t i = 0; i < fc->resp.responses_count; i++) {
        struct kafka_fetch_response_fetchable_topic_response *tr = &fc->resp.responses[i];
        uint64_t *tc = NULL; /* the topic's counters: one lookup for all its partitions */
        for (int32_t j = 0; j < tr->partitions_count; j++, k++) {
            struct kafka_fetch_response_partition_data *pd = &tr->partitions[j];
            const struct hwork *w = &fc->items[k];
            struct fout *o = &fc->outs[k];
            pd->error_code = w->error;
            if (j == 0)
                tc = broker_shard_topic_counters(req->shard, w->topic, w->topic_len);
            if (tc != NULL) {
                if (w->error != KAFKA_NONE)
                    broker_metric_add(&tc[BROKER_C_FETCH_FAILED], 1);
                else
                    broker_metric_add(&tc[BROKER_C_BYTES_OUT], o->len);
            }
            pd->high_watermark = o->high_watermark;
            pd->last_stable_offset = o->last_stable;
            if (o->aborted_count > 0 && w->error == KAFKA_NONE) {
                struct kafka_fetch_response_aborted_transaction *at =
                    h_alloc(req, o->aborted_count, sizeof(*at));
                for (uint32_t a = 0; at != NULL && a < o->aborted_count; a++)
                    at[a] = (struct kafka_fetch_response_aborted_transaction){
                        .producer_id = o->aborted[a].producer_id,
                        .first_offset = o->aborted[a].first_offset};
                if (at != NULL) {
                    pd->aborted_transactions = at;
                    pd->aborted_transactions_count = (int32_t)o->aborted_count;
                } else {
                    free_out(o); /* never aborted records without their list */
                }
            }
            pd->log_start_offset = o->log_start_offset;
            pd->records =
                (struct kafka_bytes){o->data ? o->data : (const uint8_t *)"", (int32_t)o->len};
            if (o->slice_count > 0 && (w->error != KAFKA_NONE || markers == NULL)) {
                free_out(o);
                pd->records = (struct kafka_bytes){(const uint8_t *)"", 0};
            }
            if (o->slice_count > 0) {
                uint8_t *m = markers + (size_t)ZC_MARKER_BYTES * ndata;
                zc_marker(fc->hs, ndata++, m);
                pd->records = (struct kafka_bytes){m, ZC_MARKER_BYTES};
            }
        }
    }
    LM_ASSERT(k == (throttled ? 0 : fc->count));
    if (!throttled && fc->context == FC_FULL)
        session_create(fc);
    else if (!throttled && fc->context == FC_INCREMENTAL)
        session_filter(fc);
    int32_t request_ms = h_request_quota(req); /* its handler time (request_percentage) */
    if (request_ms > fc->resp.throttle_time_ms)
        fc->resp.throttle_time_ms = request_ms;
    const uint8_t *buf;
    size_t len;
    bool ok = h_encode(req, &fc->resp, &buf, &len);
    if (ok && ndata > 0 && respond_zero_copy(fc, buf, len, ndata))
        return; /* req (and fc) may be gone */
    if (ok && ndata > 0) {
        BLOG_ERROR("fetch: record markers not found in the encoded response");
        ok = false;
    }
    free_data(fc);
    if (ok)
        broker_req_respond(req, buf, len);
    else
        h_close(req, "fetch response does not fit the request arena");
}

static void watch_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct hfetch *fc = f->ctx;
    struct fout *o = w->out;
    /* Closed by the open-log budget: watched without opening it (armed when it opens). */
    bool closed = p != NULL && hs_part_budget_closed(p);
    if (closed ? p->idle_leo != o->leo_seen || p->idle_hw != o->high_watermark
               : p == NULL || p->part == NULL || storage_log_end_offset(p->log) != o->leo_seen ||
                     partition_high_watermark(p->part) != o->high_watermark) {
        o->wake_now = true; /* grew (or changed) since the pass: read again */
        return;
    }
    if (!hs_waiter_add(hs, p, f->origin->id, fc->id, fc->deadline_ms, o->high_watermark + 1))
        o->wake_now = true;
}

bool hs_waiter_add(struct hshard *hs, struct hpart *p, uint32_t origin, uint64_t fetch_id,
                   uint64_t deadline_ms, int64_t target)
{
    LM_ASSERT(p != NULL && fetch_id > 0);
    struct hwaiter *wt = calloc(1, sizeof(*wt));
    if (wt == NULL)
        return false;
    wt->origin = origin;
    wt->fetch_id = fetch_id;
    wt->deadline_ms = deadline_ms;
    wt->p = p;
    wt->target = target;
    wt->next = p->waiters;
    p->waiters = wt;
    if (hs_part_budget_closed(p))
        return true; /* armed when the log opens */
    /* One-shot: new data is visible once the high watermark passes what the pass saw. */
    int64_t id = partition_watch(p->part, wt->target, waiter_fired, wt);
    if (id < 0) {
        wt->fired = true; /* table full: nothing to unwatch */
        hs_waiter_drop(p, &p->waiters);
        return false;
    }
    wt->watch_id = id;
    hs_part_kick(hs, p);
    return true;
}

static void watch_done(struct hfan *f)
{
    struct hfetch *fc = f->ctx;
    bool again = fc->final || fc->woken;
    for (size_t i = 0; i < fc->count && !again; i++)
        again = fc->items[i].owner != HWORK_DONE && fc->outs[i].wake_now;
    fc->state = F_PARKED;
    if (again)
        pass_start(fc);
}

static void pass_done(struct hfan *f)
{
    struct hfetch *fc = f->ctx;
    struct broker_req *req = fc->req;
    bool error = false;
    for (size_t i = 0; i < fc->count && !error; i++)
        error = fc->items[i].error != KAFKA_NONE;
    /* a fetch of no partition (the Java consumer's session close on close(), epoch -1) is
     * answered at once, as ReplicaManager.fetchMessages does (fetchInfos.isEmpty): parked, it
     * held close() for fetch.max.wait.ms */
    if (fc->final || error || fc->count == 0 ||
        fc->bytes >= (size_t)(fc->rq.min_bytes > 0 ? fc->rq.min_bytes : 0) ||
        fc->rq.max_wait_ms <= 0 || broker_req_conn_closing(req) ||
        broker_shard_draining(req->shard) || fc->hs->stopping) {
        respond(fc);
        return;
    }
    /* Not enough yet: keep nothing of this pass (the next one reads again from the same
     * offsets) and watch the partitions. */
    free_data(fc);
    if (!fc->parked_listed) {
        fc->id = fc->hs->fetch_id_next++;
        fc->deadline_ms = broker_now_ms() + (uint64_t)fc->rq.max_wait_ms;
        fc->next = fc->hs->parked;
        fc->hs->parked = fc;
        fc->parked_listed = true;
        if (broker_timer_start(req->shard, &fc->timer, (uint64_t)fc->rq.max_wait_ms, timer_fired,
                               fc) != 0) {
            respond(fc);
            return;
        }
    }
    fc->state = F_WATCHING;
    fc->woken = false;
    for (size_t i = 0; i < fc->count; i++)
        fc->outs[i].wake_now = false;
    if (!hfan_init(&fc->fan, req, fc->items, fc->count, watch_op, watch_done, fc)) {
        respond(fc);
        return;
    }
    fc->fan.peek = true; /* a closed log is watched closed (watch_op) */
    hfan_start(&fc->fan);
}

static void pass_start(struct hfetch *fc)
{
    fc->state = F_READING;
    fc->woken = false;
    fc->bytes = 0;
    fc->budget = fc->rq.max_bytes > 0 ? fc->rq.max_bytes : 0;
    free_data(fc);
    if (!hfan_init(&fc->fan, fc->req, fc->items, fc->count, fetch_op, pass_done, fc)) {
        /* Arena exhausted: answer with what we know (errors/offsets of the last pass). */
        fc->final = true;
        respond(fc);
        return;
    }
    fc->fan.sequential = true;
    fc->fan.peek = true; /* fetch_op opens a closed log only to read it */
    hfan_start(&fc->fan);
}

/* ---- the request --------------------------------------------------------------------------- */

void data_fetch(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct hfetch *fc = h_alloc(req, 1, sizeof(*fc));
    if (fc == NULL) {
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    fc->req = req;
    fc->hs = hs;
    fc->timer.heap_index_ = UINT32_MAX;
    kafka_fetch_request_init(&fc->rq);
    if (!h_decode(req, &fc->rq))
        return;
    fetch_start(fc);
}

/* A decoded request: waits for the fetch in flight on the session it names (same
 * connection), or begins. */
static void fetch_start(struct hfetch *fc)
{
    if (!session_defer(fc))
        fetch_begin(fc);
}

static void fetch_begin(struct hfetch *fc)
{
    struct broker_req *req = fc->req;
    struct hshard *hs = fc->hs;
    int16_t v = req->api_version;
    kafka_fetch_response_init(&fc->resp);
    fc->resp.throttle_time_ms = 0;
    fc->resp.session_id = 0;
    fc->context = FC_SESSIONLESS;
    if (v >= 7 && !session_begin(fc))
        return;
    int32_t nt = fc->rq.topics_count > 0 ? fc->rq.topics_count : 0;
    size_t n = 0;
    for (int32_t i = 0; i < nt; i++)
        n += fc->rq.topics[i].partitions_count > 0 ? (size_t)fc->rq.topics[i].partitions_count : 0;
    fc->resp.responses = h_alloc(req, (size_t)nt, sizeof(*fc->resp.responses));
    fc->items = h_alloc(req, n, sizeof(*fc->items));
    fc->outs = h_alloc(req, n, sizeof(*fc->outs));
    if (fc->resp.responses == NULL || fc->items == NULL || fc->outs == NULL) {
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    fc->resp.responses_count = nt;
    fc->count = n;
    size_t k = 0;
    /* KafkaApis.handleFetchRequest: a follower (replica id >= 0) needs CLUSTER_ACTION on the
     * cluster, a consumer READ on each topic; both fail as TOPIC_AUTHORIZATION_FAILED */
    int32_t replica = v >= 15 ? fc->rq.replica_state.replica_id : fc->rq.replica_id;
    bool follower = replica >= 0;
    fc->follower = follower;
    /* a consumer under a quota fetches at most what the quota allows over the measured window
     * (ClientQuotaManager.getMaxValueInQuotaWindow: quota * (samples - 1) * window), or it could
     * never be answered within its quota */
    double limit = 0;
    if (!follower && h_quota_limit(req, LM_QUOTA_CONSUMER_BYTE_RATE, &limit)) {
        const struct broker_config *cfg = h_node(req)->cfg;
        double cap =
            limit * (double)(cfg->quota_window_num - 1) * (double)cfg->quota_window_size_seconds;
        int32_t cap_bytes = cap < 1 ? 1 : cap > (double)INT32_MAX ? INT32_MAX : (int32_t)cap;
        if (fc->rq.max_bytes <= 0 || fc->rq.max_bytes > cap_bytes)
            fc->rq.max_bytes = cap_bytes;
        fc->quota_consumer = true;
    }
    bool follower_ok = !follower || h_allowed_cluster(req, AUTHZ_OP_CLUSTER_ACTION);
    for (int32_t i = 0; i < nt; i++) {
        const struct kafka_fetch_request_fetch_topic *ti = &fc->rq.topics[i];
        struct kafka_fetch_response_fetchable_topic_response *tr = &fc->resp.responses[i];
        int32_t np = ti->partitions_count > 0 ? ti->partitions_count : 0;
        tr->topic = ti->topic;
        tr->topic_id = ti->topic_id;
        tr->partitions = h_alloc(req, (size_t)np, sizeof(*tr->partitions));
        if (tr->partitions == NULL) {
            broker_req_close_after(req);
            broker_req_respond_none(req);
            return;
        }
        tr->partitions_count = np;
        /* v13+ names topics by id (KIP-516); the name is resolved from our snapshot. */
        struct kafka_str name = ti->topic;
        bool unknown_id = false;
        if (v >= 13) {
            struct htopic *t = hs_topic_by_id(hs, ti->topic_id.b);
            if (t == NULL) {
                unknown_id = true;
                name = KAFKA_STR_NULL;
            } else {
                name.len = (int32_t)strlen(t->meta->name);
                name.ptr = h_strdup(req, (struct kafka_str){t->meta->name, name.len});
                if (name.ptr == NULL) {
                    broker_req_close_after(req);
                    broker_req_respond_none(req);
                    return;
                }
            }
        }
        bool denied = follower
                          ? !follower_ok
                          : !unknown_id && !h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, name);
        for (int32_t j = 0; j < np; j++, k++) {
            const struct kafka_fetch_request_fetch_partition *pi = &ti->partitions[j];
            struct kafka_fetch_response_partition_data *pd = &tr->partitions[j];
            pd->partition_index = pi->partition;
            pd->high_watermark = -1;
            pd->last_stable_offset = -1;
            pd->log_start_offset = -1;
            pd->diverging_epoch.epoch = -1;
            pd->diverging_epoch.end_offset = -1;
            pd->current_leader.leader_id = -1;
            pd->current_leader.leader_epoch = -1;
            pd->snapshot_id.end_offset = -1;
            pd->snapshot_id.epoch = -1;
            /* Aborted transactions: filled in by respond for read_committed; null for
             * read_uncommitted as Kafka sends. */
            pd->aborted_transactions = NULL;
            pd->aborted_transactions_count = fc->rq.isolation_level == 1 ? 0 : -1;
            pd->preferred_read_replica = -1;
            struct hwork *w = &fc->items[k];
            struct fout *o = &fc->outs[k];
            o->high_watermark = o->log_start_offset = o->leo_seen = -1;
            w->in = pi;
            w->out = o;
            w->partition = pi->partition;
            w->topic = name.ptr;
            w->topic_len = name.len > 0 ? (size_t)name.len : 0;
            if (unknown_id) {
                w->error = KAFKA_UNKNOWN_TOPIC_ID;
                w->owner = HWORK_DONE;
                continue;
            }
            if (denied) {
                w->error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
                w->owner = HWORK_DONE;
                continue;
            }
            struct htopic *t = name.len > 0 ? hs_topic(hs, name.ptr, (size_t)name.len) : NULL;
            if (t == NULL || pi->partition < 0 || pi->partition >= t->meta->partition_count) {
                w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                w->owner = HWORK_DONE;
                continue;
            }
            w->owner = hs_owner(hs, w->topic, w->topic_len, pi->partition);
        }
    }
    LM_ASSERT(k == n);
    if (fc->context == FC_INCREMENTAL) {
        LM_ASSERT(session_inflight(fc) == NULL); /* fetch_start made it wait otherwise */
        fc->session_next = hs->on_session;
        hs->on_session = fc;
        fc->session_listed = true;
    }
    pass_start(fc);
}
