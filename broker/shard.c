/* The backend-independent core of a shard: connections, framing, dispatch, in-order responses,
 * backpressure, cross-shard calls, timers and the loop with its shutdown sequence
 * (DESIGN.md §2). The backends (io_uring.c, io_epoll.c) call the broker_core_* functions. */
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

enum req_state { REQ_PENDING = 0, REQ_DONE, REQ_NONE };

enum {
    /* bound on work per loop turn, so one busy source cannot starve the others */
    XCALLS_PER_TURN = 1024,
    STASH_BYTES_MIN = 4096,
};

static void conn_close(struct broker_conn *c, const char *why);
static void conn_pump(struct broker_conn *c);
static void conn_try_resume(struct broker_conn *c);
static void req_free(struct broker_req *req);
static void req_close_files(struct broker_req *req);
static void out_release(struct broker_conn *c, struct broker_out_ *o);

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

static void conn_hold(struct broker_conn *c);
static void conn_unhold(struct broker_conn *c);

static void mem_wait(struct broker_conn *c);

/* Lets connections that waited for memory try again; one that is still short goes back on the
 * (new) list, so each waiter is tried once per call. */
static void mem_kick(struct broker_shard *s)
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

static void mem_release(struct broker_shard *s, size_t n)
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

static void mem_unwait(struct broker_conn *c)
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
static void frame_settle(struct broker_conn *c, size_t held)
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
static int frame_grow(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap, uint32_t size,
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

static struct broker_req *req_of_frame(uint8_t *body)
{
    return (struct broker_req *)(void *)(body - sizeof(struct broker_req));
}

/* Frees a partial frame (the connection is closing). */
static void frame_free(void *ctx, uint8_t *body)
{
    struct broker_conn *c = ctx;
    struct broker_req *req = req_of_frame(body);
    size_t n = req->mem_bytes_;
    free(req);
    frame_settle(c, n);
    mem_release(c->shard, n);
}

/* ---- connections ------------------------------------------------------------------------- */

struct broker_conn *broker_core_conn(struct broker_shard *s, uint32_t slot, uint32_t gen)
{
    if (slot >= s->conns_max)
        return NULL;
    struct broker_conn *c = s->conns[slot];
    if (c == NULL || c->gen != gen)
        return NULL;
    return c;
}

bool broker_core_conn_wants_data(const struct broker_conn *c)
{
    return !c->closing && !c->paused && c->stash_off == c->stash_len;
}

static void conn_maybe_free(struct broker_conn *c)
{
    struct broker_shard *s = c->shard;
    if (!c->closing || !c->io_closed || c->reqs_live > 0)
        return;
    LM_ASSERT(c->sending == NULL);
    LM_ASSERT(s->conns[c->slot] == c);
    mem_unwait(c);
    broker_respq_deinit(&c->rq);
    if (c->stash != NULL) {
        s->mem_stash -= (int64_t)c->stash_cap;
        mem_release(s, c->stash_cap);
    }
    free(c->stash);
    s->conns[c->slot] = NULL;
    s->gens[c->slot]++;
    s->free_slots[s->free_count++] = c->slot;
    if (c->out != NULL) {
        LM_ASSERT(s->peers_open > 0);
        s->peers_open--;
        broker_peer_on_free_(c);
        free(c);
        return;
    }
    LM_ASSERT(s->conns_open > 0);
    s->conns_open--;
    broker_connquota_release(s->quota, &c->quota);
    broker_rt_conn_closed(s->rt, s->id);
    free(c);
}

struct broker_conn *broker_core_conn_new(struct broker_shard *s, int fd)
{
    LM_ASSERT(s->free_count > 0 && fd >= 0);
    struct broker_conn *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return NULL;
    c->shard = s;
    c->fd = fd;
    c->pipe_r = c->pipe_w = -1;
    c->apis = s->dispatch->apis;
    c->slot = s->free_slots[--s->free_count];
    c->gen = s->gens[c->slot];
    LM_ASSERT(s->conns[c->slot] == NULL);
    s->conns[c->slot] = c;
    return c;
}

/* An accepted socket that will not become a connection. */
static void accept_refuse(struct broker_shard *s, int fd)
{
    close(fd);
    broker_rt_conn_closed(s->rt, s->id);
}

static void conn_create(struct broker_shard *s, uint32_t listener, int fd,
                        const struct sockaddr_storage *ss, const struct broker_connquota_slot *slot)
{
    struct broker_respq rq = {0};
    struct broker_conn *c = NULL;
    if (broker_respq_init(&rq, s->cfg->connection_inflight_max) != 0 ||
        (c = broker_core_conn_new(s, fd)) == NULL) {
        BLOG_ERROR_LIMITED("accept: out of memory, closing new connection");
        broker_respq_deinit(&rq);
        struct broker_connquota_slot q = *slot;
        broker_connquota_release(s->quota, &q);
        accept_refuse(s, fd);
        return;
    }
    c->rq = rq;
    c->quota = *slot;
    LM_ASSERT(listener < s->listen_count);
    c->listener = (uint8_t)listener;
    c->apis = s->listen_apis[listener];
    int one = 1;
    if (setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        BLOG_WARN_LIMITED("accept: TCP_NODELAY: %s", strerror(errno));
    snprintf(c->peer, sizeof(c->peer), "?");
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)ss;
        uint32_t a = ntohl(in->sin_addr.s_addr);
        snprintf(c->peer, sizeof(c->peer), "%u.%u.%u.%u:%u", a >> 24, (a >> 16) & 255,
                 (a >> 8) & 255, a & 255, ntohs(in->sin_port));
    }
    s->conns_open++;
    broker_frame_reader_init(&c->fr, s->cfg->socket_request_max_bytes, frame_grow, c);
    BLOG_DEBUG("conn %u open from %s fd=%d", c->slot, c->peer, fd);
    int rc = s->io->conn_open(s, c);
    if (rc != 0) {
        BLOG_ERROR_LIMITED("conn %u: cannot start I/O: %s", c->slot, lm_strerror(rc));
        c->closing = true;
        c->io_closed = true;
        close(fd);
        conn_maybe_free(c);
    }
}

/* Admits fd under the process's connection quotas: 0 (it is a connection now, or was refused
 * and closed), or LM_E_AGAIN with *retry_ms when max.connections or the creation rate says
 * wait (fd untouched). */
static int accept_admit(struct broker_shard *s, uint32_t listener, int fd, uint32_t *retry_ms)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    memset(&ss, 0, sizeof(ss));
    if (getpeername(fd, (struct sockaddr *)&ss, &sl) != 0) {
        accept_refuse(s, fd); /* already reset by the peer */
        return 0;
    }
    if (s->free_count == 0) {
        BLOG_WARN_LIMITED("accept: connection table full (laminar.shard.connections.max), "
                          "closing new connection");
        accept_refuse(s, fd);
        return 0;
    }
    struct broker_connquota_slot slot;
    int rc = broker_connquota_acquire(s->quota, (const struct sockaddr *)&ss,
                                      broker_now_ms() * 1000u, &slot, retry_ms);
    if (rc == LM_E_AGAIN)
        return rc;
    if (rc != 0) {
        char host[64] = "?";
        if (ss.ss_family == AF_INET) {
            uint32_t a = ntohl(((struct sockaddr_in *)(void *)&ss)->sin_addr.s_addr);
            snprintf(host, sizeof(host), "%u.%u.%u.%u", a >> 24, (a >> 16) & 255, (a >> 8) & 255,
                     a & 255);
        }
        BLOG_WARN_LIMITED("accept: %s has its maximum of connections "
                          "(max.connections.per.ip), closing new connection",
                          host);
        accept_refuse(s, fd);
        return 0;
    }
    conn_create(s, listener, fd, &ss, &slot);
    return 0;
}

static void accept_timer_fire(struct broker_shard *s, struct broker_timer *t);

/* Stops accepting for delay_ms (the timer then admits held connections and resumes). */
static void accept_pause_for(struct broker_shard *s, uint32_t delay_ms)
{
    if (!s->accept_paused) {
        s->accept_paused = true;
        if (s->listening)
            s->io->accept_pause(s);
    }
    broker_timer_cancel(s, &s->accept_timer);
    if (broker_timer_start(s, &s->accept_timer, delay_ms, accept_timer_fire, NULL) != 0) {
        BLOG_ERROR("accept: cannot arm the retry timer; accepting again now");
        s->accept_paused = false;
        if (s->listening)
            s->io->accept_resume(s);
    }
}

static void accept_timer_fire(struct broker_shard *s, struct broker_timer *t)
{
    (void)t;
    if (s->draining)
        return;
    while (s->accept_held_count > 0) {
        uint32_t retry_ms = 0;
        if (accept_admit(s, s->accept_held[0].listener, s->accept_held[0].fd, &retry_ms) ==
            LM_E_AGAIN) {
            accept_pause_for(s, retry_ms ? retry_ms : 1);
            return;
        }
        s->accept_held_count--;
        memmove(s->accept_held, s->accept_held + 1,
                s->accept_held_count * sizeof(s->accept_held[0]));
    }
    if (s->accept_paused) {
        s->accept_paused = false;
        if (s->listening)
            s->io->accept_resume(s);
    }
}

void broker_core_on_accept(struct broker_shard *s, uint32_t listener, int fd)
{
    LM_ASSERT(fd >= 0);
    s->accept_backoff_ms = 0;
    if (s->draining) {
        accept_refuse(s, fd);
        return;
    }
    /* Connections the quotas made wait keep their order: a new one queues behind them. */
    uint32_t retry_ms = 0;
    if (s->accept_held_count == 0 && accept_admit(s, listener, fd, &retry_ms) == 0)
        return;
    if (s->accept_held_count == BROKER_ACCEPT_HELD_MAX) {
        BLOG_WARN_LIMITED("accept: %u connections already wait for max.connections or "
                          "max.connection.creation.rate, closing new connection",
                          s->accept_held_count);
        accept_refuse(s, fd);
        return;
    }
    s->accept_held[s->accept_held_count++] = (struct broker_accept_held){fd, listener};
    if (s->accept_held_count == 1)
        accept_pause_for(s, retry_ms ? retry_ms : 1);
}

enum { ACCEPT_BACKOFF_MIN_MS = 10, ACCEPT_BACKOFF_MAX_MS = 1000 };

void broker_core_on_accept_error(struct broker_shard *s, int err)
{
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR || err == ECONNABORTED)
        return; /* nothing to accept, or the peer gave up before we took it */
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        /* Out of descriptors or memory: accepting again at once fails again at once (Kafka's
         * acceptor survives "Too many open files" the same way, by backing off). Connections
         * already open keep being served; they free descriptors as they close. */
        uint32_t b = s->accept_backoff_ms == 0 ? ACCEPT_BACKOFF_MIN_MS : s->accept_backoff_ms * 2;
        s->accept_backoff_ms = b > ACCEPT_BACKOFF_MAX_MS ? ACCEPT_BACKOFF_MAX_MS : b;
        BLOG_WARN_LIMITED("accept: %s; not accepting for %u ms", strerror(err),
                          s->accept_backoff_ms);
        accept_pause_for(s, s->accept_backoff_ms);
        return;
    }
    BLOG_WARN_LIMITED("accept: %s", strerror(err));
}

static void conn_hold(struct broker_conn *c)
{
    c->reqs_live++;
}

/* Drops a hold taken by an entry point; frees the connection if it was the last reference. */
static void conn_unhold(struct broker_conn *c)
{
    LM_ASSERT(c->reqs_live > 0);
    c->reqs_live--;
    conn_maybe_free(c);
}

void broker_core_conn_close(struct broker_conn *c, const char *why)
{
    conn_close(c, why);
}

static void conn_close(struct broker_conn *c, const char *why)
{
    struct broker_shard *s = c->shard;
    if (c->closing)
        return;
    /* Closes no other line reports (a failed send, no memory for the stash) are worth an
     * operator's look; a handler that closes logs its own reason. */
    if (strcmp(why, "send failed") == 0 || strcmp(why, "out of memory for receive stash") == 0)
        BLOG_INFO_LIMITED("conn %u (%s) closing: %s", c->slot, c->peer, why);
    else
        BLOG_DEBUG("conn %u (%s) closing: %s", c->slot, c->peer, why);
    c->closing = true;
    conn_hold(c);
    if (c->out != NULL)
        broker_peer_on_close_(c, LM_E_CLOSED, 0); /* fails its calls (but the one being sent) */
    mem_unwait(c);
    broker_frame_reader_deinit(&c->fr, frame_free, c);
    if (s->mem_big == c) { /* took the token but had no bytes yet */
        s->mem_big = NULL;
        mem_kick(s);
    }
    /* Completed responses not sent yet are dropped; requests a handler still holds are freed
     * when it completes them (they keep the connection alive until then). */
    for (uint64_t seq = c->rq.head_seq; seq < c->rq.next_seq; seq++) {
        struct broker_req *req = c->rq.items[seq % c->rq.capacity];
        c->rq.items[seq % c->rq.capacity] = NULL;
        if (req == NULL || &req->out_ == c->sending)
            continue;
        LM_ASSERT(req->state_ != REQ_PENDING);
        req_close_files(req);
        kafka_arena_deinit(&req->arena);
        c->reqs_live--;
        size_t n = req->mem_bytes_;
        free(req);
        mem_release(s, n);
    }
    c->rq.head_seq = c->rq.next_seq;
    if (s->io->conn_shutdown(s, c) == 1) {
        c->io_closed = true;
        if (c->sending != NULL) { /* a synchronous backend reports no more completions */
            struct broker_out_ *o = c->sending;
            c->sending = NULL;
            out_release(c, o);
        }
    }
    conn_unhold(c);
}

void broker_core_on_io_closed(struct broker_shard *s, struct broker_conn *c)
{
    (void)s;
    LM_ASSERT(c->closing);
    c->io_closed = true;
    conn_maybe_free(c);
}

void broker_core_on_eof(struct broker_shard *s, struct broker_conn *c, int err)
{
    (void)s;
    if (c->out != NULL)
        broker_peer_on_close_(c, err == 0 ? LM_E_CLOSED : LM_E_IO, -err);
    if (err == 0 && (!broker_frame_reader_idle(&c->fr) || c->stash_off < c->stash_len))
        BLOG_INFO_LIMITED("conn %u (%s): peer closed in the middle of a frame", c->slot, c->peer);
    conn_close(c, err == 0 ? "peer closed" : strerror(-err));
}

static bool stash_completes_frame(const struct broker_conn *c)
{
    if (c->stash_off == c->stash_len)
        return false;
    return broker_frame_reader_completes(&c->fr, c->stash + c->stash_off,
                                         c->stash_len - c->stash_off) != 0;
}

/* A client may send requests and close at once (acks=0 producers do, when they are destroyed
 * right after a flush). Kafka's selector closes such a channel gracefully: requests already
 * received are still handled. So here: whole frames in the stash stay and are served when the
 * connection resumes (the in-flight bound or memory paused it); the close follows once the stash
 * is consumed (conn_try_resume). Without a whole frame, nothing more can ever complete: close. */
void broker_core_on_peer_fin(struct broker_shard *s, struct broker_conn *c)
{
    if (c->closing)
        return;
    c->peer_fin = true;
    if (!stash_completes_frame(c))
        broker_core_on_eof(s, c, 0);
}

int broker_core_frame_grow(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap,
                           uint32_t size, uint8_t **out)
{
    return frame_grow(ctx, old, old_cap, new_cap, size, out);
}

static void req_free(struct broker_req *req)
{
    struct broker_conn *c = req->conn;
    struct broker_shard *s = req->shard;
    LM_ASSERT(c->reqs_live > 0);
    req_close_files(req);
    kafka_arena_deinit(&req->arena);
    c->reqs_live--;
    size_t n = req->mem_bytes_;
    free(req);
    mem_release(s, n);
    conn_maybe_free(c);
}

static void stash_append(struct broker_conn *c, const uint8_t *p, size_t n)
{
    struct broker_shard *s = c->shard;
    if (c->stash_off == c->stash_len) {
        c->stash_off = 0;
        c->stash_len = 0;
    }
    if (c->stash_cap - c->stash_len < n) {
        if (c->stash_off > 0) {
            memmove(c->stash, c->stash + c->stash_off, c->stash_len - c->stash_off);
            c->stash_len -= c->stash_off;
            c->stash_off = 0;
        }
        size_t cap = c->stash_cap ? c->stash_cap : STASH_BYTES_MIN;
        while (cap - c->stash_len < n)
            cap *= 2;
        if (cap != c->stash_cap) {
            uint8_t *nb = realloc(c->stash, cap);
            if (nb == NULL) {
                conn_close(c, "out of memory for receive stash");
                return;
            }
            s->mem_used += (int64_t)(cap - c->stash_cap);
            s->mem_stash += (int64_t)(cap - c->stash_cap);
            c->stash = nb;
            c->stash_cap = cap;
        }
    }
    memcpy(c->stash + c->stash_len, p, n);
    c->stash_len += n;
}

static void conn_pause(struct broker_conn *c)
{
    if (c->paused)
        return;
    c->paused = true;
    c->shard->io->recv_pause(c->shard, c);
}

void broker_core_frame_release(struct broker_conn *c, uint8_t *body)
{
    struct broker_req *req = req_of_frame(body);
    size_t n = req->mem_bytes_;
    free(req);
    mem_release(c->shard, n);
}

static void on_frame(struct broker_conn *c, struct broker_frame *f)
{
    struct broker_shard *s = c->shard;
    struct broker_req *req = req_of_frame(f->body);
    if (c->out != NULL) { /* a response on an outbound connection */
        frame_settle(c, req->mem_bytes_);
        broker_peer_on_frame_(c, f->body, f->size_bytes);
        return;
    }
    req->shard = s;
    req->conn = c;
    c->reqs_live++;
    frame_settle(c, req->mem_bytes_);
    struct broker_reqhdr h;
    int rc = broker_reqhdr_parse_fixed(f->body, f->size_bytes, &h);
    if (rc != 0) {
        BLOG_WARN_LIMITED("conn %u (%s): bad request header (%s), closing", c->slot, c->peer,
                          lm_strerror(rc));
        req->state_ = REQ_NONE;
        conn_close(c, "bad request header");
        req_free(req);
        return;
    }
    const struct broker_api_entry *e = NULL;
    if (h.api_key >= 0 && h.api_key < BROKER_API_KEYS_MAX && c->apis[h.api_key].fn)
        e = &c->apis[h.api_key];
    if (e == NULL) {
        /* Kafka closes the connection on a request for an API it does not know, and an API
         * its listener does not serve (the controller listener) is unknown there. */
        BLOG_WARN_LIMITED("conn %u (%s): unknown api key %d v%d (correlation id %d), closing",
                          c->slot, c->peer, h.api_key, h.api_version, h.correlation_id);
        req->state_ = REQ_NONE;
        conn_close(c, "unknown api key");
        req_free(req);
        return;
    }
    size_t off = h.size_bytes;
    req->flexible = e->flexible_version_min >= 0 && h.api_version >= e->flexible_version_min;
    if (req->flexible && (rc = broker_reqhdr_skip_tags(f->body, f->size_bytes, &off)) != 0) {
        BLOG_WARN_LIMITED("conn %u (%s): bad header tagged fields (%s), closing", c->slot, c->peer,
                          lm_strerror(rc));
        req->state_ = REQ_NONE;
        conn_close(c, "bad request header");
        req_free(req);
        return;
    }
    rc = broker_respq_reserve(&c->rq, &req->seq_);
    LM_ASSERT(rc == 0); /* frame_alloc admitted it only below the in-flight bound */
    req->api_key = h.api_key;
    req->api_version = h.api_version;
    req->correlation_id = h.correlation_id;
    req->client_id = h.client_id;
    req->client_id_len = h.client_id_len;
    req->listener = c->listener;
    req->body = f->body + off;
    req->body_len = f->size_bytes - off;
    req->state_ = REQ_PENDING;
    kafka_arena_init(&req->arena, (size_t)s->cfg->socket_request_max_bytes * 2 + (64u << 20));
    e->fn(req);
}

/* Feeds bytes into the frame reader; returns bytes consumed. Stops early when the connection
 * pauses or closes. */
static size_t conn_feed(struct broker_conn *c, const uint8_t *p, size_t n)
{
    size_t used = 0;
    while (used < n && !c->closing && !c->paused) {
        size_t consumed = 0;
        struct broker_frame f;
        int rc = broker_frame_feed(&c->fr, p + used, n - used, &consumed, &f);
        used += consumed;
        if (rc == 1) {
            on_frame(c, &f);
        } else if (rc == LM_E_AGAIN) {
            conn_pause(c);
        } else if (rc < 0) {
            BLOG_WARN_LIMITED("conn %u (%s): frame length rejected (%s), closing", c->slot, c->peer,
                              lm_strerror(rc));
            if (c->out != NULL)
                broker_peer_on_close_(c, LM_E_CORRUPT, 0);
            conn_close(c, "bad frame length");
        }
    }
    return used;
}

void broker_core_on_data(struct broker_shard *s, struct broker_conn *c, const uint8_t *p, size_t n)
{
    (void)s;
    LM_ASSERT(n > 0);
    c->idle_ticks = 0;
    /* at shutdown clients are not read any more; outbound connections are, since requests
     * still in flight may wait for their responses */
    if (c->closing || (s->draining && c->out == NULL))
        return;
    if (c->paused || c->stash_off < c->stash_len) {
        stash_append(c, p, n);
        return;
    }
    conn_hold(c);
    size_t used = conn_feed(c, p, n);
    if (used < n && !c->closing)
        stash_append(c, p + used, n - used);
    conn_unhold(c);
}

static void conn_try_resume(struct broker_conn *c)
{
    if (c->closing || (c->shard->draining && c->out == NULL))
        return;
    c->paused = false;
    /* Bytes that waited (for memory or the in-flight bound) go first; the frame reader asks
     * for memory again as they are fed. */
    while (c->stash_off < c->stash_len && !c->paused && !c->closing) {
        size_t used = conn_feed(c, c->stash + c->stash_off, c->stash_len - c->stash_off);
        c->stash_off += used;
    }
    if (c->closing)
        return;
    if (c->peer_fin && !stash_completes_frame(c)) {
        broker_core_on_eof(c->shard, c, 0); /* all it sent has been taken in */
        return;
    }
    if (c->paused) {
        c->shard->io->recv_pause(c->shard, c);
        return;
    }
    c->shard->io->recv_resume(c->shard, c);
}

/* ---- responses --------------------------------------------------------------------------- */

static void wr_i32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void req_complete(struct broker_req *req, enum req_state st)
{
    LM_ASSERT(req->state_ == REQ_PENDING);
    req->state_ = (uint8_t)st;
    struct broker_conn *c = req->conn;
    if (c->closing) {
        req_free(req);
        return;
    }
    broker_respq_complete(&c->rq, req->seq_, req);
    conn_hold(c);
    conn_pump(c);
    conn_unhold(c);
}

/* Response header v0 = correlation_id; v1 adds an empty tagged-field section. ApiVersions
 * always answers with header v0 so a client can parse it before knowing our versions
 * (KIP-511). */
static void resp_prefix(struct broker_req *req, size_t body_len)
{
    bool hdr_v1 = req->flexible && req->api_key != 18;
    size_t hdr = 4 + (hdr_v1 ? 1 : 0);
    LM_ASSERT(body_len <= (size_t)INT32_MAX - hdr);
    wr_i32(req->out_.prefix, (uint32_t)(hdr + body_len));
    wr_i32(req->out_.prefix + 4, (uint32_t)req->correlation_id);
    req->out_.prefix[8] = 0;
    req->out_.prefix_len = (uint8_t)(4 + hdr);
}

void broker_req_respond(struct broker_req *req, const void *body, size_t len)
{
    LM_ASSERT(body != NULL || len == 0);
    resp_prefix(req, len);
    req->out_.body = (struct broker_resp_part){.mem = body, .fd = -1, .len = len};
    req->out_.parts = &req->out_.body;
    req->out_.nparts = 1;
    req_complete(req, REQ_DONE);
}

void broker_req_respond_parts(struct broker_req *req, struct broker_resp_part *parts,
                              uint32_t count)
{
    LM_ASSERT(parts != NULL || count == 0);
    size_t total = 0;
    for (uint32_t i = 0; i < count; i++) {
        LM_ASSERT(parts[i].mem != NULL || parts[i].fd >= 0 || parts[i].len == 0);
        LM_ASSERT(parts[i].len <= (size_t)INT32_MAX - 5 - total);
        total += parts[i].len;
    }
    resp_prefix(req, total);
    req->out_.parts = parts;
    req->out_.nparts = count;
    req_complete(req, REQ_DONE);
}

void broker_req_respond_none(struct broker_req *req)
{
    req_complete(req, REQ_NONE);
}

void broker_req_close_after(struct broker_req *req)
{
    req->close_after_ = true;
}

bool broker_req_conn_closing(const struct broker_req *req)
{
    return req->conn->closing;
}

const struct broker_listener *broker_req_advertised(const struct broker_req *req)
{
    const struct broker_config *cfg = req->shard->cfg;
    LM_ASSERT(req->listener < cfg->listeners_count);
    return broker_config_advertised_for(cfg, cfg->listeners[req->listener].name);
}

/* Pops the head request after it has been sent (or needed no response). */
static void conn_pop_head(struct broker_conn *c)
{
    struct broker_req *req = broker_respq_pop(&c->rq);
    bool close_after = req->close_after_;
    bool was_full = broker_respq_inflight(&c->rq) + 1 >= c->shard->cfg->connection_inflight_max;
    LM_ASSERT(c->reqs_live > 1); /* the caller holds c */
    req_free(req);
    if (close_after)
        conn_close(c, "closed after response by handler");
    else if (was_full && c->paused && !c->waiting_mem)
        conn_try_resume(c);
}

static struct broker_req *req_of_out(struct broker_out_ *o)
{
    return (struct broker_req *)(void *)((uint8_t *)o - offsetof(struct broker_req, out_));
}

/* o has left (or, on a closing connection, the backend let go of it). */
static void out_sent(struct broker_conn *c, struct broker_out_ *o)
{
    if (c->out != NULL) {
        broker_peer_on_sent_(c, o);
        return;
    }
    LM_ASSERT(&((struct broker_req *)broker_respq_peek(&c->rq))->out_ == o);
    conn_pop_head(c);
}

/* The backend let go of o on a closing connection: free the response, or let the peer fail
 * the call. */
static void out_release(struct broker_conn *c, struct broker_out_ *o)
{
    if (c->out != NULL)
        broker_peer_on_sent_(c, o);
    else
        req_free(req_of_out(o));
}

/* The send cursor walks part 0 (the prefix: size and header) and then the body's parts;
 * memory parts go out gathered in one sendmsg, file parts with the backend's send_file. */
static size_t part_len(const struct broker_out_ *o, uint32_t i, const void **mem, int *fd,
                       uint64_t *off)
{
    if (i == 0) {
        *mem = o->prefix;
        return o->prefix_len;
    }
    const struct broker_resp_part *p = &o->parts[i - 1];
    *mem = p->mem;
    *fd = p->fd;
    *off = p->offset;
    return p->len;
}

/* Moves the cursor past n bytes; true when the whole message has left. */
static bool send_advance(struct broker_conn *c, size_t n)
{
    const struct broker_out_ *o = c->sending;
    while (c->part <= o->nparts) {
        const void *mem;
        int fd = -1;
        uint64_t off = 0;
        size_t len = part_len(o, c->part, &mem, &fd, &off);
        size_t left = len - c->part_off;
        if (n < left) {
            c->part_off += n;
            return false;
        }
        n -= left;
        c->part++;
        c->part_off = 0;
    }
    LM_ASSERT(n == 0);
    return true;
}

/* Sends from the cursor: bytes sent now, LM_E_AGAIN, or an error. */
static int send_some(struct broker_shard *s, struct broker_conn *c)
{
    const struct broker_out_ *o = c->sending;
    const void *mem;
    int fd = -1;
    uint64_t off = 0;
    size_t len = part_len(o, c->part, &mem, &fd, &off);
    if (mem == NULL)
        return s->io->send_file(s, c, fd, off + c->part_off, len - c->part_off);
    c->iovcnt = 0;
    for (uint32_t i = c->part; i <= o->nparts && c->iovcnt < BROKER_SEND_IOV_MAX; i++) {
        size_t skip = i == c->part ? c->part_off : 0;
        len = part_len(o, i, &mem, &fd, &off);
        if (mem == NULL)
            break;
        if (len == skip)
            continue;
        c->iov[c->iovcnt].iov_base = (uint8_t *)(uintptr_t)mem + skip;
        c->iov[c->iovcnt++].iov_len = len - skip;
    }
    LM_ASSERT(c->iovcnt > 0);
    return s->io->send(s, c);
}

/* Sending o failed (nothing of it is in the kernel any more): close c. A response stays queued
 * in rq, where conn_close frees it; an outbound request stays the one being sent through the
 * close, so its call fails with the connection once released. */
static void send_failed(struct broker_conn *c, struct broker_out_ *o, int sys_errno)
{
    if (c->out == NULL) {
        c->sending = NULL;
        conn_close(c, "send failed");
        return;
    }
    broker_peer_on_close_(c, LM_E_IO, sys_errno);
    conn_close(c, "send failed");
    if (c->sending == o) {
        c->sending = NULL;
        out_release(c, o);
    }
}

/* Closes the fds of a request's file parts (they were handed to the runtime). */
static void req_close_files(struct broker_req *req)
{
    struct broker_out_ *o = &req->out_;
    for (uint32_t i = 0; o->parts != NULL && i < o->nparts; i++)
        if (o->parts[i].mem == NULL && o->parts[i].fd >= 0) {
            close(o->parts[i].fd);
            o->parts[i].fd = -1;
        }
    o->nparts = 0;
}

/* The next message to send on c: the oldest completed response of a client connection (popping
 * those that need none), or the next request of an outbound one. */
static struct broker_out_ *next_out(struct broker_conn *c)
{
    if (c->out != NULL)
        return broker_peer_next_out_(c);
    for (;;) {
        struct broker_req *req = broker_respq_peek(&c->rq);
        if (req == NULL)
            return NULL;
        if (req->state_ == REQ_DONE)
            return &req->out_;
        LM_ASSERT(req->state_ == REQ_NONE);
        conn_pop_head(c);
        if (c->closing)
            return NULL;
    }
}

static void conn_pump(struct broker_conn *c)
{
    struct broker_shard *s = c->shard;
    while (!c->closing && c->sending == NULL && !c->connecting) {
        struct broker_out_ *o = next_out(c);
        if (o == NULL)
            return;
        c->sending = o;
        c->part = 0;
        c->part_off = 0;
        if (send_advance(c, 0))
            LM_UNREACHABLE(); /* the prefix is never empty */
        for (;;) {
            int rc = send_some(s, c);
            if (rc == LM_E_AGAIN)
                return; /* broker_core_on_sent continues */
            if (rc < 0) {
                send_failed(c, o, EPIPE);
                return;
            }
            if (send_advance(c, (size_t)rc))
                break;
        }
        c->sending = NULL;
        out_sent(c, o);
    }
}

void broker_core_conn_pump(struct broker_conn *c)
{
    conn_hold(c);
    conn_pump(c);
    conn_unhold(c);
}

void broker_core_on_sent(struct broker_shard *s, struct broker_conn *c, int res)
{
    LM_ASSERT(c->sending != NULL);
    c->idle_ticks = 0;
    if (c->closing) {
        /* conn_close dropped every other queued message; this one waited for the backend. */
        struct broker_out_ *o = c->sending;
        c->sending = NULL;
        out_release(c, o);
        return;
    }
    conn_hold(c);
    struct broker_out_ *o = c->sending;
    if (res < 0) {
        BLOG_DEBUG("conn %u (%s): send: %s", c->slot, c->peer, strerror(-res));
        send_failed(c, o, -res);
        conn_unhold(c);
        return;
    }
    int rc = 0;
    bool done = send_advance(c, (size_t)res);
    while (!done && (rc = send_some(s, c)) >= 0)
        done = send_advance(c, (size_t)rc);
    if (!done) {
        if (rc != LM_E_AGAIN)
            send_failed(c, o, EPIPE);
        conn_unhold(c);
        return;
    }
    c->sending = NULL;
    out_sent(c, o);
    conn_pump(c);
    conn_unhold(c);
}

/* ---- cross-shard calls ------------------------------------------------------------------- */

static void xlist_push(struct broker_xcall_list *l, struct broker_xcall *c)
{
    c->next_ = NULL;
    if (l->tail)
        l->tail->next_ = c;
    else
        l->head = c;
    l->tail = c;
}

static struct broker_xcall *xlist_pop(struct broker_xcall_list *l)
{
    struct broker_xcall *c = l->head;
    if (c != NULL) {
        l->head = c->next_;
        if (l->head == NULL)
            l->tail = NULL;
        c->next_ = NULL;
    }
    return c;
}

/* Sends c from s to shard `to` through their mailbox, or queues it behind earlier overflow so
 * order per pair is kept. */
static void xcall_send(struct broker_shard *s, uint32_t to, struct broker_xcall *c)
{
    LM_ASSERT(to < s->nshards);
    if (to == s->id) {
        xlist_push(&s->local, c);
        s->work_pending = true;
        return;
    }
    struct broker_xcall_list *ov = &s->overflow[to];
    if (ov->head == NULL && broker_mailbox_push(broker_rt_mailbox(s->rt, s->id, to), c) == 0) {
        s->wake_pending[to] = true;
        return;
    }
    xlist_push(ov, c);
    s->work_pending = true;
}

void broker_shard_call(struct broker_shard *self, uint32_t target, struct broker_xcall *c)
{
    LM_ASSERT(c->run != NULL && c->done != NULL);
    LM_ASSERT(target < self->nshards);
    c->origin_ = self->id;
    c->target_ = target;
    c->returning_ = false;
    broker_rt_xcalls_add(self->rt, 1);
    xcall_send(self, target, c);
}

void broker_xcall_return(struct broker_shard *target, struct broker_xcall *c)
{
    LM_ASSERT(!c->returning_ && c->target_ == target->id);
    c->returning_ = true;
    xcall_send(target, c->origin_, c);
}

static void xcall_deliver(struct broker_shard *s, struct broker_xcall *c)
{
    if (c->returning_) {
        LM_ASSERT(c->origin_ == s->id);
        c->done(s, c); /* may free c */
        broker_rt_xcalls_add(s->rt, -1);
    } else {
        LM_ASSERT(c->target_ == s->id);
        c->run(s, c);
    }
}

static void xcalls_process(struct broker_shard *s)
{
    s->work_pending = false;
    /* flush overflow into mailboxes that have room again */
    for (uint32_t to = 0; to < s->nshards; to++) {
        struct broker_xcall_list *ov = &s->overflow[to];
        while (ov->head != NULL) {
            if (broker_mailbox_push(broker_rt_mailbox(s->rt, s->id, to), ov->head) != 0) {
                s->work_pending = true;
                break;
            }
            xlist_pop(ov);
            s->wake_pending[to] = true;
        }
    }
    for (uint32_t from = 0; from < s->nshards; from++) {
        if (from == s->id)
            continue;
        struct broker_mailbox *mb = broker_rt_mailbox(s->rt, from, s->id);
        for (int i = 0; i < XCALLS_PER_TURN; i++) {
            struct broker_xcall *c = broker_mailbox_pop(mb);
            if (c == NULL)
                break;
            xcall_deliver(s, c);
            if (i == XCALLS_PER_TURN - 1)
                s->work_pending = true;
        }
    }
    /* calls to self queued before this turn; new ones wait for the next turn */
    struct broker_xcall_list local = s->local;
    s->local.head = s->local.tail = NULL;
    struct broker_xcall *c;
    while ((c = xlist_pop(&local)) != NULL)
        xcall_deliver(s, c);
    for (uint32_t to = 0; to < s->nshards; to++) {
        if (s->wake_pending[to]) {
            s->wake_pending[to] = false;
            s->io->wake(s, broker_rt_shard(s->rt, to));
        }
    }
}

void broker_core_on_wake(struct broker_shard *s)
{
    s->work_pending = true;
}

/* ---- asynchronous fsync ------------------------------------------------------------------ */

/* The sync worker of a shard without an io_uring fsync (epoll backend): one thread fed by a
 * bounded SPSC queue; it sleeps on its own eventfd and wakes the shard through the shard's
 * eventfd. The queues hold at most BROKER_FSYNC_INFLIGHT_MAX entries, the number of slots, so
 * a push never finds them full. The only system calls the shard makes for it are the eventfd
 * writes. */
struct broker_sync_worker {
    pthread_t thread;
    struct broker_mailbox requests; /* fsyncs to run: shard -> worker */
    struct broker_mailbox done;     /* worker -> shard */
    int wake_fd;
    int shard_event_fd;
    _Atomic bool stop;
};

static void *sync_worker_main(void *arg)
{
    struct broker_sync_worker *w = arg;
    for (;;) {
        bool any = false;
        struct broker_fsync *f;
        while ((f = broker_mailbox_pop(&w->requests)) != NULL) {
            int r = f->datasync ? fdatasync(f->fd) : fsync(f->fd);
            f->res_ = r == 0 ? 0 : -errno;
            int rc = broker_mailbox_push(&w->done, f);
            LM_ASSERT(rc == 0); /* bounded by the shard's slots */
            any = true;
        }
        if (any) {
            uint64_t one = 1;
            ssize_t n = write(w->shard_event_fd, &one, sizeof(one));
            LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
        }
        if (atomic_load(&w->stop) && broker_mailbox_count(&w->requests) == 0)
            return NULL;
        uint64_t v;
        ssize_t n = read(w->wake_fd, &v, sizeof(v)); /* blocks: this thread exists to wait */
        (void)n;
    }
}

static int sync_worker_start(struct broker_shard *s)
{
    struct broker_sync_worker *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return LM_E_NOMEM;
    w->wake_fd = eventfd(0, EFD_CLOEXEC);
    w->shard_event_fd = s->event_fd;
    if (w->wake_fd < 0 || broker_mailbox_init(&w->requests, BROKER_FSYNC_INFLIGHT_MAX) != 0 ||
        broker_mailbox_init(&w->done, BROKER_FSYNC_INFLIGHT_MAX) != 0) {
        if (w->wake_fd >= 0)
            close(w->wake_fd);
        broker_mailbox_deinit(&w->requests);
        broker_mailbox_deinit(&w->done);
        free(w);
        return LM_E_NOMEM;
    }
    if (pthread_create(&w->thread, NULL, sync_worker_main, w) != 0) {
        close(w->wake_fd);
        broker_mailbox_deinit(&w->requests);
        broker_mailbox_deinit(&w->done);
        free(w);
        return LM_E_IO;
    }
    s->sync_worker = w;
    BLOG_INFO("sync worker thread started (fsyncs leave the shard thread)");
    return 0;
}

static void sync_worker_stop(struct broker_shard *s)
{
    struct broker_sync_worker *w = s->sync_worker;
    if (w == NULL)
        return;
    atomic_store(&w->stop, true);
    uint64_t one = 1;
    ssize_t n = write(w->wake_fd, &one, sizeof(one));
    LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
    pthread_join(w->thread, NULL);
    close(w->wake_fd);
    broker_mailbox_deinit(&w->requests);
    broker_mailbox_deinit(&w->done);
    free(w);
    s->sync_worker = NULL;
}

static void fsync_issue(struct broker_shard *s, struct broker_fsync *f)
{
    LM_ASSERT(s->fsync_free_count > 0);
    uint32_t slot = s->fsync_free[--s->fsync_free_count];
    LM_ASSERT(s->fsync_slots[slot] == NULL);
    s->fsync_slots[slot] = f;
    f->slot_ = slot;
    s->fsyncs_inflight++;
    if (s->io->fsync != NULL) {
        int rc = s->io->fsync(s, f);
        LM_ASSERT(rc == 0);
        return;
    }
    if (s->sync_worker == NULL && sync_worker_start(s) != 0) {
        /* No thread to spare: the shard syncs itself rather than lose durability. */
        BLOG_WARN("cannot start the sync worker; fsync on the shard thread");
        int r = f->datasync ? fdatasync(f->fd) : fsync(f->fd);
        broker_core_on_fsync(s, slot, r == 0 ? 0 : -errno);
        return;
    }
    int rc = broker_mailbox_push(&s->sync_worker->requests, f);
    LM_ASSERT(rc == 0); /* at most BROKER_FSYNC_INFLIGHT_MAX slots */
    uint64_t one = 1;
    ssize_t n = write(s->sync_worker->wake_fd, &one, sizeof(one));
    LM_ASSERT(n == sizeof(one) || errno == EAGAIN);
}

void broker_shard_fsync(struct broker_shard *s, struct broker_fsync *f, int fd, bool datasync,
                        void (*done)(struct broker_shard *, struct broker_fsync *, int), void *arg)
{
    LM_ASSERT(fd >= 0 && done != NULL);
    f->done = done;
    f->arg = arg;
    f->fd = fd;
    f->datasync = datasync;
    f->res_ = 0;
    f->next_ = NULL;
    if (s->fsync_free_count == 0 || s->fsync_wait_head != NULL) {
        if (s->fsync_wait_tail != NULL)
            s->fsync_wait_tail->next_ = f;
        else
            s->fsync_wait_head = f;
        s->fsync_wait_tail = f;
        return;
    }
    fsync_issue(s, f);
}

static void fsync_finish(struct broker_shard *s, uint32_t slot, int res);

/* Test hook, LAMINAR_TEST_FSYNC_GATE=path: while that file exists, finished fsyncs are held
 * back (checked every 20 ms), so a test can see that acks=all answers wait for their fsync and
 * that the shard keeps serving meanwhile. Off (one NULL test) unless the variable is set. */
static void fsync_gate_check(struct broker_shard *s, struct broker_timer *t)
{
    (void)t;
    if (access(s->fsync_gate, F_OK) == 0) {
        if (broker_timer_start(s, &s->fsync_gate_timer, 20, fsync_gate_check, NULL) != 0)
            BLOG_ERROR("fsync gate: cannot arm timer");
        return;
    }
    struct broker_fsync *f = s->fsync_held;
    s->fsync_held = NULL;
    while (f != NULL) {
        struct broker_fsync *next = f->next_;
        f->next_ = NULL;
        fsync_finish(s, f->slot_, f->res_);
        f = next;
    }
}

void broker_core_on_fsync(struct broker_shard *s, uint32_t slot, int res)
{
    LM_ASSERT(slot < BROKER_FSYNC_INFLIGHT_MAX && s->fsync_slots[slot] != NULL);
    if (s->fsync_gate != NULL && (s->fsync_held != NULL || access(s->fsync_gate, F_OK) == 0)) {
        struct broker_fsync *f = s->fsync_slots[slot], **pp = &s->fsync_held;
        while (*pp != NULL)
            pp = &(*pp)->next_;
        f->res_ = res;
        f->next_ = NULL;
        *pp = f;
        if (s->fsync_gate_timer.heap_index_ == UINT32_MAX &&
            broker_timer_start(s, &s->fsync_gate_timer, 20, fsync_gate_check, NULL) != 0)
            BLOG_ERROR("fsync gate: cannot arm timer");
        return;
    }
    fsync_finish(s, slot, res);
}

static void fsync_finish(struct broker_shard *s, uint32_t slot, int res)
{
    LM_ASSERT(slot < BROKER_FSYNC_INFLIGHT_MAX && s->fsync_slots[slot] != NULL);
    struct broker_fsync *f = s->fsync_slots[slot];
    s->fsync_slots[slot] = NULL;
    s->fsync_free[s->fsync_free_count++] = slot;
    LM_ASSERT(s->fsyncs_inflight > 0);
    s->fsyncs_inflight--;
    if (res != 0)
        BLOG_ERROR("fsync of fd %d: %s", f->fd, strerror(-res));
    /* Queued calls take the freed slot before done() may queue more (FIFO). */
    while (s->fsync_wait_head != NULL && s->fsync_free_count > 0) {
        struct broker_fsync *w = s->fsync_wait_head;
        s->fsync_wait_head = w->next_;
        if (s->fsync_wait_head == NULL)
            s->fsync_wait_tail = NULL;
        w->next_ = NULL;
        fsync_issue(s, w);
    }
    f->done(s, f, res == 0 ? 0 : LM_E_IO);
}

/* Completions from the sync worker (polled every loop turn: one atomic load when idle). */
static void fsync_poll(struct broker_shard *s)
{
    if (s->sync_worker == NULL)
        return;
    struct broker_fsync *f;
    for (int i = 0; i < BROKER_FSYNC_INFLIGHT_MAX; i++) {
        if ((f = broker_mailbox_pop(&s->sync_worker->done)) == NULL)
            break;
        broker_core_on_fsync(s, f->slot_, f->res_);
    }
}

static bool fsync_pending(const struct broker_shard *s)
{
    return s->fsyncs_inflight > 0 || s->fsync_wait_head != NULL;
}

/* ---- timers ------------------------------------------------------------------------------ */

static void heap_swap(struct broker_shard *s, uint32_t a, uint32_t b)
{
    struct broker_timer *t = s->timers[a];
    s->timers[a] = s->timers[b];
    s->timers[b] = t;
    s->timers[a]->heap_index_ = a;
    s->timers[b]->heap_index_ = b;
}

static void heap_up(struct broker_shard *s, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (s->timers[p]->deadline_ms_ <= s->timers[i]->deadline_ms_)
            break;
        heap_swap(s, i, p);
        i = p;
    }
}

static void heap_down(struct broker_shard *s, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < s->timers_count && s->timers[l]->deadline_ms_ < s->timers[m]->deadline_ms_)
            m = l;
        if (r < s->timers_count && s->timers[r]->deadline_ms_ < s->timers[m]->deadline_ms_)
            m = r;
        if (m == i)
            return;
        heap_swap(s, i, m);
        i = m;
    }
}

int broker_timer_start(struct broker_shard *s, struct broker_timer *t, uint64_t delay_ms,
                       void (*fn)(struct broker_shard *, struct broker_timer *), void *arg)
{
    LM_ASSERT(fn != NULL);
    if (LM_GROW(s->timers, s->timers_cap, (size_t)s->timers_count + 1, 64) != 0)
        return LM_E_NOMEM;
    t->fn = fn;
    t->arg = arg;
    t->deadline_ms_ = broker_now_ms() + delay_ms;
    t->heap_index_ = s->timers_count;
    s->timers[s->timers_count++] = t;
    heap_up(s, t->heap_index_);
    return 0;
}

void broker_timer_cancel(struct broker_shard *s, struct broker_timer *t)
{
    uint32_t i = t->heap_index_;
    if (i == UINT32_MAX || i >= s->timers_count || s->timers[i] != t)
        return;
    t->heap_index_ = UINT32_MAX;
    s->timers_count--;
    if (i == s->timers_count)
        return;
    s->timers[i] = s->timers[s->timers_count];
    s->timers[i]->heap_index_ = i;
    heap_down(s, i);
    heap_up(s, i);
}

/* Fires due timers; returns ms until the next one, or -1 when none. */
static int timers_run(struct broker_shard *s)
{
    uint64_t now = broker_now_ms();
    while (s->timers_count > 0 && s->timers[0]->deadline_ms_ <= now) {
        struct broker_timer *t = s->timers[0];
        broker_timer_cancel(s, t);
        t->fn(s, t);
    }
    if (s->timers_count == 0)
        return -1;
    uint64_t d = s->timers[0]->deadline_ms_ - now;
    return d > 60000 ? 60000 : (int)d;
}

/* ---- idle connections -------------------------------------------------------------------- */

/* Kafka's connections.max.idle.ms: the broker closes a connection that has been quiet for that
 * long. Quiet here means no request in flight or queued, no response being sent, and no bytes
 * received or sent: every receive and send completion either backend reports resets idle_ticks,
 * and this sweep (every tenth of the limit, at most every second) counts quiet sweeps, so the
 * close happens between the limit and the limit plus one period after the last activity. A
 * connection paused while its partial frame waits for memory receives nothing, so it counts as
 * quiet too (Kafka expires muted channels the same way): a waiter the client forgot is closed. */
static bool conn_quiet(const struct broker_conn *c)
{
    return !c->closing && c->reqs_live == 0 && c->sending == NULL &&
           broker_respq_inflight(&c->rq) == 0;
}

static void idle_sweep(struct broker_shard *s, struct broker_timer *t)
{
    (void)t;
    if (s->draining)
        return;
    /* outbound connections are their owner's to expire (Kafka's NetworkClient does it with
     * its own connections.max.idle.ms), so the sweep skips them */
    uint32_t open = s->conns_open + s->peers_open, seen = 0;
    for (uint32_t i = 0; i < s->conns_max && seen < open; i++) {
        struct broker_conn *c = s->conns[i];
        if (c == NULL)
            continue;
        seen++;
        if (c->out != NULL)
            continue;
        if (!conn_quiet(c)) {
            c->idle_ticks = 0;
            continue;
        }
        if (++c->idle_ticks > s->idle_ticks_max)
            conn_close(c, "idle longer than connections.max.idle.ms");
    }
    if (broker_timer_start(s, &s->idle_timer, s->idle_period_ms, idle_sweep, NULL) != 0)
        BLOG_ERROR("idle sweep: cannot re-arm timer, idle connections are no longer closed");
}

/* Arms the idle sweep when connections.max.idle.ms > 0 (Kafka: a negative value disables). */
static int idle_start(struct broker_shard *s)
{
    int64_t limit = s->cfg->connections_max_idle_ms;
    if (limit <= 0)
        return 0;
    int64_t period = limit / 10;
    if (period > 1000)
        period = 1000;
    if (period < 10)
        period = 10;
    int64_t ticks = (limit + period - 1) / period;
    s->idle_period_ms = (uint32_t)period;
    s->idle_ticks_max = ticks > UINT32_MAX ? UINT32_MAX : (uint32_t)ticks;
    return broker_timer_start(s, &s->idle_timer, s->idle_period_ms, idle_sweep, NULL);
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
    if (s->conns == NULL || s->gens == NULL || s->free_slots == NULL) {
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
    if (s->work_pending)
        t = 0;
    if (t < 0 || t > cap_ms)
        t = cap_ms;
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
