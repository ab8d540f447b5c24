/* The backend-independent core of a shard (DESIGN.md §2): the dispatch tables, the memory
 * budget, the BPF selector's count and the loop with its shutdown sequence. Connections are in
 * conn.c, cross-shard calls, fsyncs and timers in shard_services.c; the backends (io_uring.c,
 * io_epoll.c) call the broker_core_* functions. */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/reqhdr.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"
#include "common/lm_grow.h"

/* ---- dispatch table ---------------------------------------------------------------------- */

int broker_dispatch_register(struct broker_dispatch *d, int16_t api_key, broker_handler_fn fn,
                             int16_t flexible_version_min)
{
    if (api_key < 0 || api_key >= BROKER_API_KEYS_MAX || fn == NULL)
        return LM_E_INVALID;
    d->apis[api_key].fn = fn;
    d->apis[api_key].flexible_version_min = flexible_version_min;
    return 0;
}

int broker_api_table_register(struct broker_api_table *t, int16_t api_key, broker_handler_fn fn,
                              int16_t flexible_version_min)
{
    if (api_key < 0 || api_key >= BROKER_API_KEYS_MAX || fn == NULL)
        return LM_E_INVALID;
    t->apis[api_key].fn = fn;
    t->apis[api_key].flexible_version_min = flexible_version_min;
    return 0;
}

struct broker_api_table *broker_dispatch_listener_table(struct broker_dispatch *d, const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(d->listener_tables[0].name))
        return NULL;
    for (uint32_t i = 0; i < d->listener_tables_count; i++)
        if (strcasecmp(d->listener_tables[i].name, name) == 0)
            return &d->listener_tables[i].table;
    if (d->listener_tables_count == BROKER_LISTENERS_MAX)
        return NULL;
    struct broker_listener_table *lt = &d->listener_tables[d->listener_tables_count++];
    memset(lt, 0, sizeof(*lt));
    memcpy(lt->name, name, n + 1);
    for (int k = 0; k < BROKER_API_KEYS_MAX; k++)
        lt->table.apis[k].flexible_version_min = -1;
    return &lt->table;
}

/* The table serving listener l: its own when the embedding code bound one, else d->apis. */
static const struct broker_api_entry *listener_apis(const struct broker_dispatch *d,
                                                    const struct broker_listener *l)
{
    for (uint32_t i = 0; i < d->listener_tables_count; i++)
        if (strcasecmp(d->listener_tables[i].name, l->name) == 0)
            return d->listener_tables[i].table.apis;
    return d->apis;
}

/* ---- small services ---------------------------------------------------------------------- */

uint64_t broker_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void broker_shard_topic_add(struct broker_shard *s, const char *topic, size_t len,
                            enum broker_counter c, uint64_t n)
{
    if (s->metrics_on)
        broker_metrics_topic_add(s->metrics, topic, len, c, n);
}

uint64_t *broker_shard_topic_counters(struct broker_shard *s, const char *topic, size_t len)
{
    return s->metrics_on ? broker_metrics_topic_counters(s->metrics, topic, len) : NULL;
}

void broker_shard_counter_add(struct broker_shard *s, enum broker_counter c, uint64_t n)
{
    LM_ASSERT(c < BROKER_C_COUNT);
    if (s->metrics_on)
        broker_metric_add(&s->metrics->counters[c], n);
}

uint64_t broker_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint32_t broker_partition_shard(const char *topic, size_t topic_len, int32_t partition,
                                uint32_t nshards)
{
    LM_ASSERT(nshards > 0);
    uint32_t p = (uint32_t)partition;
    const uint8_t be[4] = {(uint8_t)(p >> 24), (uint8_t)(p >> 16), (uint8_t)(p >> 8), (uint8_t)p};
    uint64_t h = lm_fnv1a64_update(lm_fnv1a64(topic, topic_len), be, sizeof(be));
    return (uint32_t)(h % nshards);
}

uint32_t broker_shard_id(const struct broker_shard *s)
{
    return s->id;
}
uint32_t broker_shard_count(const struct broker_shard *s)
{
    return s->nshards;
}
const struct broker_config *broker_shard_config(const struct broker_shard *s)
{
    return s->cfg;
}
void *broker_shard_user(const struct broker_shard *s)
{
    return s->user;
}
void broker_shard_set_user(struct broker_shard *s, void *user)
{
    s->user = user;
}
bool broker_shard_draining(const struct broker_shard *s)
{
    return s->draining;
}

/* ---- memory budget ----------------------------------------------------------------------- */

/* queued.max.request.bytes bounds what a shard holds for requests: frames being received,
 * requests in flight (frame, request, arena-less part) and receive stashes. Frames are charged
 * as their bytes arrive (frame.c grows the buffer), never at the size prefix, so a client that
 * announces 100 MiB and trickles holds what it sent. Admission of more bytes for a partial
 * frame:
 *  - up to conn_frame_free_max (a sixteenth of the budget) per connection, while the shard is
 *    under its budget, not counting the connection's own stash (it holds bytes of this very
 *    frame: counting them could keep it out for ever);
 *  - beyond that, or when the budget is spent, through the shard's one large-frame token: its
 *    holder grows its frame while the memory of requests in flight (everything but partial
 *    frames and stashes) plus its own frame fits the budget, or when no request holds any (so
 *    one frame up to socket.request.max.bytes always gets through, as Kafka's memory pool lets
 *    one request overdraw it). Partial frames and stashes of other connections never block the
 *    token: they wait for admission themselves, so counting them could deadlock; requests in
 *    flight drain on their own.
 * A single connection thus holds at most a sixteenth of the budget unless it has the token;
 * frames that wait keep their connection paused until memory is freed. */

static void mem_wait(struct broker_conn *c);

/* Lets connections that waited for memory try again; one that is still short goes back on the
 * (new) list, so each waiter is tried once per call. */
void mem_kick(struct broker_shard *s)
{
    if (s->mem_wait_head == NULL || s->mem_resuming)
        return;
    s->mem_resuming = true;
    s->mem_resume_head = s->mem_wait_head;
    s->mem_wait_head = NULL;
    while (s->mem_resume_head != NULL) {
        struct broker_conn *c = s->mem_resume_head;
        s->mem_resume_head = c->wait_next;
        c->wait_next = NULL;
        c->waiting_mem = false;
        if (s->mem_used - (int64_t)c->stash_cap >= s->mem_max && s->mem_big != NULL &&
            s->mem_big != c) {
            mem_wait(c); /* the budget is spent and the token taken: it cannot get in now */
            continue;
        }
        conn_hold(c);
        conn_try_resume(c);
        conn_unhold(c);
    }
    s->mem_resuming = false;
}

void mem_release(struct broker_shard *s, size_t n)
{
    LM_ASSERT(s->mem_used >= (int64_t)n);
    s->mem_used -= (int64_t)n;
    /* Waiters can only get in below the budget, or as the token holder (whose own condition
     * may have become true): skip the walk otherwise. */
    if (s->mem_used < s->mem_max || (s->mem_big != NULL && s->mem_big->waiting_mem))
        mem_kick(s);
}

static void mem_wait(struct broker_conn *c)
{
    if (c->waiting_mem)
        return;
    c->waiting_mem = true;
    c->wait_next = c->shard->mem_wait_head;
    c->shard->mem_wait_head = c;
}

void mem_unwait(struct broker_conn *c)
{
    if (!c->waiting_mem)
        return;
    /* c is on the wait list, or on the list mem_kick is working through. */
    struct broker_conn **pp = &c->shard->mem_wait_head;
    while (*pp != NULL && *pp != c)
        pp = &(*pp)->wait_next;
    if (*pp == NULL) {
        pp = &c->shard->mem_resume_head;
        while (*pp != c) {
            LM_ASSERT(*pp != NULL);
            pp = &(*pp)->wait_next;
        }
    }
    *pp = c->wait_next;
    c->wait_next = NULL;
    c->waiting_mem = false;
}

/* The connection's partial frame is done with (completed or dropped): its bytes stop counting
 * as partial and the token, if it had it, goes back. */
void frame_settle(struct broker_conn *c, size_t held)
{
    struct broker_shard *s = c->shard;
    LM_ASSERT(s->mem_partial >= (int64_t)held);
    s->mem_partial -= (int64_t)held;
    if (s->mem_big == c) {
        s->mem_big = NULL;
        mem_kick(s);
    }
}

static bool frame_admit(struct broker_conn *c, int64_t delta, int64_t held_after)
{
    struct broker_shard *s = c->shard;
    int64_t own_stash = (int64_t)c->stash_cap;
    int64_t others = s->mem_used - own_stash;
    if (s->mem_big != c && held_after <= s->conn_frame_free_max && others + delta <= s->mem_max)
        return true;
    if (s->mem_big == NULL)
        s->mem_big = c;
    if (s->mem_big != c)
        return false;
    /* the token holder: requests and responses (everything but partial frames and stashes,
     * which wait for admission themselves), plus its frame */
    int64_t settled = s->mem_used - s->mem_partial - s->mem_stash;
    return settled <= 0 || settled + held_after <= s->mem_max;
}

/* Frame body allocator: the request struct and the frame in one block, charged to the shard as
 * it grows. Refuses (pausing the connection) when the connection has its in-flight maximum
 * (before the first byte of a new frame) or when frame_admit says no. */
int frame_grow(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap, uint32_t size,
               uint8_t **out)
{
    struct broker_conn *c = ctx;
    struct broker_shard *s = c->shard;
    (void)size;
    LM_ASSERT(new_cap > old_cap);
    if (old == NULL && c->out == NULL &&
        broker_respq_inflight(&c->rq) >= s->cfg->connection_inflight_max)
        return LM_E_AGAIN; /* resumed when a response leaves */
    size_t total = sizeof(struct broker_req) + new_cap;
    int64_t delta = (int64_t)new_cap - (int64_t)old_cap;
    if (old == NULL)
        delta += (int64_t)sizeof(struct broker_req);
    if (!frame_admit(c, delta, (int64_t)total)) {
        mem_wait(c);
        return LM_E_AGAIN;
    }
    struct broker_req *base =
        old == NULL ? NULL : (struct broker_req *)(void *)(old - sizeof(struct broker_req));
    struct broker_req *req = realloc(base, total);
    if (req == NULL) {
        mem_wait(c);
        return LM_E_AGAIN;
    }
    if (base == NULL)
        memset(req, 0, sizeof(*req));
    req->mem_bytes_ = total;
    s->mem_used += delta;
    s->mem_partial += delta;
    *out = (uint8_t *)(req + 1);
    return 0;
}

struct broker_req *req_of_frame(uint8_t *body)
{
    return (struct broker_req *)(void *)(body - sizeof(struct broker_req));
}

/* Frees a partial frame (the connection is closing). */
void frame_free(void *ctx, uint8_t *body)
{
    struct broker_conn *c = ctx;
    struct broker_req *req = req_of_frame(body);
    size_t n = req->mem_bytes_;
    free(req);
    frame_settle(c, n);
    mem_release(c->shard, n);
}

/* ---- BPF selector count ------------------------------------------------------------------ */

/* The selector counts each connection when it routes it and the shard counts the closes; SYNs
 * that never become connections (dropped by a full queue, then retransmitted and routed again)
 * make the count drift up, so once a second the shard checks it against the truth: its
 * connections, the ones held for the quotas and its listeners' accept queues (TCP_INFO's
 * tcpi_unacked on a listening socket). lm_bpf_reconcile only corrects a count that did not
 * move for that second, so a burst in progress is left alone. */
static void selector_check(struct broker_shard *s, struct broker_timer *t)
{
    (void)t;
    if (s->draining)
        return;
    uint32_t truth = s->conns_open + s->accept_held_count;
    for (uint32_t i = 0; i < s->listen_count; i++) {
        struct tcp_info ti;
        socklen_t len = sizeof(ti);
        memset(&ti, 0, sizeof(ti));
        if (getsockopt(s->listen_fds[i], IPPROTO_TCP, TCP_INFO, &ti, &len) == 0)
            truth += ti.tcpi_unacked;
    }
    uint64_t was = s->selector_prev;
    if (broker_rt_selector_reconcile(s->rt, s->id, truth, &s->selector_prev))
        BLOG_DEBUG("reuseport: selector count %llu corrected to %u", (unsigned long long)was,
                   truth);
    if (broker_timer_start(s, &s->selector_timer, 1000, selector_check, NULL) != 0)
        BLOG_ERROR("reuseport: cannot re-arm the selector check");
}

/* ---- lifecycle and loop ------------------------------------------------------------------ */

int broker_shard_init(struct broker_shard *s, struct broker_rt *rt, uint32_t id, uint32_t n,
                      const struct broker_config *cfg, const struct broker_dispatch *d,
                      const struct broker_io_ops *io)
{
    LM_ASSERT(n > 0 && n <= BROKER_SHARDS_MAX && id < n);
    memset(s, 0, sizeof(*s));
    s->id = id;
    s->nshards = n;
    s->rt = rt;
    s->cfg = cfg;
    s->dispatch = d;
    s->io = io;
    s->cpu = -1;
    s->event_fd = -1;
    s->conns_max = cfg->shard_connections_max;
    s->mem_max = cfg->shard_memory_bytes_max;
    s->conns = calloc(s->conns_max, sizeof(*s->conns));
    s->gens = calloc(s->conns_max, sizeof(*s->gens));
    s->free_slots = calloc(s->conns_max, sizeof(*s->free_slots));
    s->metrics = calloc(1, sizeof(*s->metrics));
    s->metrics_on = cfg->metrics_enable;
    s->fault_disk_control = broker_config_get(cfg, "laminar.fault.disk.control");
    if (s->fault_disk_control != NULL && s->fault_disk_control[0] == '\0')
        s->fault_disk_control = NULL;
    if (s->conns == NULL || s->gens == NULL || s->free_slots == NULL || s->metrics == NULL) {
        broker_shard_deinit(s);
        return LM_E_NOMEM;
    }
    for (uint32_t i = 0; i < s->conns_max; i++)
        s->free_slots[i] = s->conns_max - 1 - i;
    s->free_count = s->conns_max;
    for (uint32_t i = 0; i < BROKER_FSYNC_INFLIGHT_MAX; i++)
        s->fsync_free[i] = BROKER_FSYNC_INFLIGHT_MAX - 1 - i;
    s->fsync_free_count = BROKER_FSYNC_INFLIGHT_MAX;
    s->fsync_gate = getenv("LAMINAR_TEST_FSYNC_GATE");
    s->fsync_gate_timer.heap_index_ = UINT32_MAX;
    s->idle_timer.heap_index_ = UINT32_MAX;
    s->accept_timer.heap_index_ = UINT32_MAX;
    s->selector_timer.heap_index_ = UINT32_MAX;
    s->quota = broker_rt_quota(rt);
    for (uint32_t l = 0; l < cfg->listeners_count; l++)
        s->listen_apis[l] = listener_apis(d, &cfg->listeners[l]);
    /* A sixteenth of queued.max.request.bytes per connection without the large-frame token:
     * far below the budget, above ordinary produce requests (max.request.size 1 MiB). */
    s->conn_frame_free_max = s->mem_max / 16;
    return 0;
}

void broker_shard_deinit(struct broker_shard *s)
{
    free(s->conns);
    free(s->gens);
    free(s->free_slots);
    free(s->timers);
    free(s->tls_plain);
    free(s->tls_gather);
    s->tls_plain = s->tls_gather = NULL;
    free(s->metrics);
    s->metrics = NULL;
    s->conns = NULL;
    s->gens = NULL;
    s->free_slots = NULL;
    s->timers = NULL;
}

static bool shard_has_inflight(struct broker_shard *s)
{
    for (uint32_t i = 0; i < s->conns_max; i++) {
        struct broker_conn *c = s->conns[i];
        /* a closing connection's requests still held by handlers count too: freeing the
         * connection waits for them */
        if (c != NULL && (c->closing ? c->reqs_live > 0 : broker_respq_inflight(&c->rq) > 0))
            return true;
    }
    return false;
}

static void shard_begin_drain(struct broker_shard *s)
{
    s->draining = true;
    broker_timer_cancel(s, &s->idle_timer);
    broker_timer_cancel(s, &s->accept_timer);
    broker_timer_cancel(s, &s->selector_timer);
    BLOG_INFO("shutdown: stopping accepts and reads, %u connections open", s->conns_open);
    s->io->listen_stop(s);
    for (uint32_t i = 0; i < s->accept_held_count; i++)
        accept_refuse(s, s->accept_held[i].fd);
    s->accept_held_count = 0;
    for (uint32_t i = 0; i < s->conns_max; i++) {
        struct broker_conn *c = s->conns[i];
        if (c != NULL && !c->closing && !c->paused && c->out == NULL) {
            c->paused = true;
            s->io->recv_pause(s, c);
        }
    }
    if (s->dispatch->shard_drain)
        s->dispatch->shard_drain(s, s->dispatch->ctx);
}

static int shard_turn(struct broker_shard *s, int cap_ms)
{
    fsync_poll(s);
    xcalls_process(s);
    int t = timers_run(s);
    /* Timers call other shards too (a parked fetch's final pass on partitions of another
     * shard): wake them now, not after this shard's next event. */
    xcalls_wake_flush(s);
    if (s->work_pending)
        t = 0;
    if (t < 0 || t > cap_ms)
        t = cap_ms;
    /* Nothing may go to sleep with a cross-shard wake still owed. */
    LM_ASSERT(s->wakes_pending == 0);
    return s->io->wait(s, t);
}

int broker_shard_run(struct broker_shard *s)
{
    int rc = s->io->listen_start(s);
    if (rc != 0)
        return rc;
    rc = idle_start(s);
    if (rc != 0)
        return rc;
    s->selector_prev = UINT64_MAX;
    if (broker_rt_has_selector(s->rt) &&
        (rc = broker_timer_start(s, &s->selector_timer, 1000, selector_check, NULL)) != 0)
        return rc;
    BLOG_INFO("serving with %s backend%s", s->io->name, s->cpu >= 0 ? "" : " (not pinned)");
    while (!broker_rt_stopping(s->rt)) {
        rc = shard_turn(s, 1000);
        if (rc != 0) {
            BLOG_ERROR("event loop failed: %s", lm_strerror(rc));
            break;
        }
    }
    /* Shutdown: finish in-flight requests (bounded by laminar.shutdown.timeout.ms), flush,
     * then close every connection. */
    shard_begin_drain(s);
    uint64_t deadline = broker_now_ms() + (uint64_t)s->cfg->shutdown_timeout_ms;
    while (shard_has_inflight(s) && broker_now_ms() < deadline)
        if (shard_turn(s, 50) != 0)
            break;
    if (shard_has_inflight(s))
        BLOG_WARN("shutdown: in-flight requests left after %lld ms",
                  (long long)s->cfg->shutdown_timeout_ms);
    /* Other shards may still need this one to run parts of their requests (cross-shard calls):
     * keep serving the mailboxes until every shard has drained. */
    broker_rt_shard_drained(s->rt);
    while (!broker_rt_all_drained(s->rt) && broker_now_ms() < deadline + 1000)
        if (shard_turn(s, 20) != 0)
            break;
    /* Asynchronous flushes still running (a group commit's later steps) finish first: the
     * final flush and shard_stop may close their files. */
    uint64_t sync_deadline = broker_now_ms() + 10000;
    while (fsync_pending(s) && broker_now_ms() < sync_deadline)
        if (shard_turn(s, 20) != 0)
            break;
    if (fsync_pending(s))
        BLOG_WARN("shutdown: fsyncs still running after 10 s");
    if (s->dispatch->shard_flush)
        s->dispatch->shard_flush(s, s->dispatch->ctx);
    /* Outbound connections close too (their calls fail with LM_E_CLOSED on the next turns,
     * while the handlers' state still exists); none opens after this. */
    s->conns_closed = true;
    for (uint32_t i = 0; i < s->conns_max; i++)
        if (s->conns[i] != NULL)
            conn_close(s->conns[i], "shutdown");
    deadline = broker_now_ms() + 2000;
    while ((s->conns_open > 0 || s->peers_open > 0 || s->peer_calls_failing > 0) &&
           broker_now_ms() < deadline)
        if (shard_turn(s, 20) != 0)
            break;
    if (s->conns_open > 0)
        BLOG_WARN("shutdown: %u connections still held by handlers", s->conns_open);
    while (fsync_pending(s) && broker_now_ms() < sync_deadline)
        if (shard_turn(s, 20) != 0)
            break;
    /* Calls still in flight between shards (a peer may still be in a long step, e.g. deleting
     * a topic of many partitions) are answered while every shard keeps turning; the state
     * they touch is freed only after all shards have left (broker_shard_stop). Bounded: past
     * it the calls left are abandoned (their memory leaks; nothing is touched after free). */
    broker_rt_shard_final(s->rt);
    uint64_t quiet_deadline = broker_now_ms() + 30000;
    while (!broker_rt_quiesced(s->rt) && broker_now_ms() < quiet_deadline)
        if (shard_turn(s, 5) != 0)
            break;
    if (!broker_rt_quiesced(s->rt))
        BLOG_WARN("shutdown: cross-shard calls still in flight after 30 s");
    return rc;
}

void broker_shard_stop(struct broker_shard *s)
{
    if (s->dispatch->shard_stop)
        s->dispatch->shard_stop(s, s->dispatch->ctx);
    sync_worker_stop(s);
    BLOG_INFO("shutdown: shard stopped");
}
