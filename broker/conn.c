/* A shard's connections (DESIGN.md §2): accept, framing into requests, dispatch, the in-order
 * response queue with its in-flight bound and memory backpressure, half-close and idle
 * timeouts. The backends call the broker_core_* entry points. */
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
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "broker/log.h"
#include "broker/reqhdr.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"
#include "common/lm_grow.h"

/* ---- connections ------------------------------------------------------------------------- */

static void tls_close(struct broker_conn *c);

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

/* The connection's id (broker_req_conn_id): its slot and the slot's generation, + 1 so that it
 * is never 0. */
static uint64_t conn_id_of(const struct broker_conn *c)
{
    return (((uint64_t)c->gen << 32) | c->slot) + 1;
}

static void conn_maybe_free(struct broker_conn *c)
{
    struct broker_shard *s = c->shard;
    if (!c->closing || !c->io_closed || c->reqs_live > 0)
        return;
    LM_ASSERT(c->sending == NULL);
    LM_ASSERT(s->conns[c->slot] == c);
    LM_ASSERT(c->mute_timer.heap_index_ == UINT32_MAX); /* cancelled by conn_close */
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
    broker_tls_conn_free(c->tls);
    c->tls = NULL;
    if (c->out != NULL) {
        LM_ASSERT(s->peers_open > 0);
        s->peers_open--;
        broker_peer_on_free_(c);
        free(c);
        return;
    }
    if (c->auth.state != NULL) {
        LM_ASSERT(s->dispatch->auth_free != NULL);
        s->dispatch->auth_free(c->auth.state);
        c->auth.state = NULL;
    }
    if (s->dispatch->conn_closed != NULL)
        s->dispatch->conn_closed(s, s->dispatch->ctx, conn_id_of(c));
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
    c->mute_timer.heap_index_ = UINT32_MAX;
    c->slot = s->free_slots[--s->free_count];
    c->gen = s->gens[c->slot];
    LM_ASSERT(s->conns[c->slot] == NULL);
    s->conns[c->slot] = c;
    return c;
}

/* An accepted socket that will not become a connection. */
void accept_refuse(struct broker_shard *s, int fd)
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
    if (s->metrics_on)
        broker_metric_add(&s->metrics->conns_created[listener], 1);
    c->apis = s->listen_apis[listener];
    c->auth.sasl = s->cfg->listener_sasl[listener];
    snprintf(c->auth.principal, sizeof(c->auth.principal), "User:ANONYMOUS");
    if (s->listen_tls[listener]) {
        if (s->tls_plain == NULL)
            s->tls_plain = malloc(BROKER_TLS_RECORD_BYTES);
        if (s->tls_gather == NULL)
            s->tls_gather = malloc(BROKER_TLS_RECORD_BYTES);
        if (s->tls_plain != NULL && s->tls_gather != NULL)
            c->tls = broker_rt_tls_conn_new(s->rt, listener);
        if (c->tls == NULL) {
            BLOG_ERROR_LIMITED("accept: out of memory for TLS, closing new connection");
            s->conns_open++;
            c->closing = true;
            c->io_closed = true;
            close(fd);
            conn_maybe_free(c);
            return;
        }
    }
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
    /* Kafka's sasl.server.max.receive.size: an unauthenticated client cannot make the broker
     * hold a large frame; raised to socket.request.max.bytes once authenticated (on_frame) */
    if (c->auth.sasl && s->cfg->sasl_server_max_receive_bytes < c->fr.size_bytes_max)
        c->fr.size_bytes_max = s->cfg->sasl_server_max_receive_bytes;
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

void conn_hold(struct broker_conn *c)
{
    c->reqs_live++;
}

/* Drops a hold taken by an entry point; frees the connection if it was the last reference. */
void conn_unhold(struct broker_conn *c)
{
    LM_ASSERT(c->reqs_live > 0);
    c->reqs_live--;
    conn_maybe_free(c);
}

void broker_core_conn_close(struct broker_conn *c, const char *why)
{
    conn_close(c, why);
}

void conn_close(struct broker_conn *c, const char *why)
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
    broker_timer_cancel(s, &c->mute_timer);
    c->muted = false;
    if (c->out == NULL && s->metrics_on)
        broker_metric_add(&s->metrics->conns_closed[c->listener], 1);
    if (c->tls != NULL)
        tls_close(c);
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
    /* under the hold: a handler answering a parked request here frees it, not the conn */
    if (c->out == NULL && s->dispatch->conn_closing != NULL)
        s->dispatch->conn_closing(s, s->dispatch->ctx, conn_id_of(c));
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

void req_free(struct broker_req *req)
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
    req->sasl_raw = false;
    if (c->auth.raw_tokens && s->dispatch->auth_raw != NULL) {
        /* SaslHandshake v0: a bare token, answered by a bare frame (KIP-43) */
        int rrc = broker_respq_reserve(&c->rq, &req->seq_);
        LM_ASSERT(rrc == 0);
        req->api_key = 17;
        req->api_version = 0;
        req->correlation_id = 0;
        req->client_id = NULL;
        req->client_id_len = -1;
        req->flexible = false;
        req->sasl_raw = true;
        req->listener = c->listener;
        req->body = f->body;
        req->body_len = f->size_bytes;
        req->state_ = REQ_PENDING;
        req->start_us_ = 0;
        kafka_arena_init(&req->arena, (size_t)s->cfg->socket_request_max_bytes * 2 + (64u << 20));
        s->dispatch->auth_raw(req);
        if (c->auth.authenticated)
            c->fr.size_bytes_max = s->cfg->socket_request_max_bytes;
        return;
    }
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
    if (c->auth.sasl && h.api_key != 17 && h.api_key != 18 && h.api_key != 36 &&
        (!c->auth.authenticated ||
         (c->auth.expiry_ms != 0 && broker_now_ms() >= c->auth.expiry_ms))) {
        /* Kafka's SaslServerAuthenticator: before authentication (and once a session has
         * expired, KIP-368) only ApiVersions, SaslHandshake and SaslAuthenticate are served;
         * anything else is an IllegalSaslStateException that closes the connection. */
        BLOG_WARN_LIMITED("conn %u (%s): api key %d before SASL authentication%s, closing", c->slot,
                          c->peer, h.api_key, c->auth.authenticated ? " (session expired)" : "");
        req->state_ = REQ_NONE;
        conn_close(c, "request before SASL authentication");
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
    req->local_end_us_ = 0;
    req->done_us_ = 0;
    /* its arrival: the request time metrics and the request-time quota (local time) */
    req->start_us_ = broker_now_us();
    if (s->metrics_on) {
        int v = h.api_version < 0                          ? 0
                : h.api_version >= BROKER_METRICS_VERSIONS ? BROKER_METRICS_VERSIONS - 1
                                                           : h.api_version;
        broker_metric_add(&s->metrics->requests[h.api_key][v], 1);
    }
    kafka_arena_init(&req->arena, (size_t)s->cfg->socket_request_max_bytes * 2 + (64u << 20));
    s->dispatching = req;
    e->fn(req);
    if (s->dispatching != NULL)
        req->local_end_us_ = broker_now_us(); /* not answered yet (req_complete clears it) */
    s->dispatching = NULL;
    /* c outlives the call (the caller holds it); req may be gone */
    if (c->auth.sasl && c->auth.authenticated)
        c->fr.size_bytes_max = s->cfg->socket_request_max_bytes;
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
    if (c->out == NULL && c->shard->metrics_on)
        broker_metric_add(&c->shard->metrics->net_bytes_in, used);
    return used;
}

static void tls_on_data(struct broker_conn *c, const uint8_t *p, size_t n);

/* Plaintext bytes of c (from the socket, or decrypted by its TLS engine). */
static void conn_on_plain(struct broker_conn *c, const uint8_t *p, size_t n)
{
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

void broker_core_on_data(struct broker_shard *s, struct broker_conn *c, const uint8_t *p, size_t n)
{
    LM_ASSERT(n > 0);
    c->idle_ticks = 0;
    /* at shutdown clients are not read any more; outbound connections are, since requests
     * still in flight may wait for their responses */
    if (c->closing || (s->draining && c->out == NULL))
        return;
    if (c->tls != NULL)
        tls_on_data(c, p, n);
    else
        conn_on_plain(c, p, n);
}

void conn_try_resume(struct broker_conn *c)
{
    if (c->closing || (c->shard->draining && c->out == NULL))
        return;
    if (c->muted) {
        LM_ASSERT(c->paused);
        return; /* the mute timer resumes it */
    }
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

/* The mute of c is over: read again unless something else still holds it paused (shard
 * memory; a full in-flight bound pauses again as frames are fed). */
static void mute_fire(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct broker_conn *c = t->arg;
    LM_ASSERT(c != NULL && c->muted);
    c->muted = false;
    if (!c->closing && c->paused && !c->waiting_mem) {
        /* an entry point: the frames it feeds may close and free c (a handler's close), so
         * c is held until they are done, as every other caller of conn_try_resume holds it */
        conn_hold(c);
        conn_try_resume(c);
        conn_unhold(c);
    }
}

uint64_t broker_req_local_us(const struct broker_req *req)
{
    if (req->start_us_ == 0)
        return 0;
    uint64_t end = req->local_end_us_ != 0 ? req->local_end_us_ : broker_now_us();
    return end > req->start_us_ ? end - req->start_us_ : 0;
}

void broker_req_throttle(struct broker_req *req, uint32_t delay_ms)
{
    struct broker_conn *c = req->conn;
    LM_ASSERT(c != NULL);
    if (delay_ms == 0 || c->closing || c->out != NULL)
        return;
    uint64_t until = broker_now_ms() + delay_ms;
    if (c->muted && until <= c->muted_until_ms)
        return;
    broker_timer_cancel(c->shard, &c->mute_timer);
    if (broker_timer_start(c->shard, &c->mute_timer, delay_ms, mute_fire, c) != 0) {
        /* without a timer a mute could never end: the client still sees throttle_time_ms */
        BLOG_WARN_LIMITED("conn %u (%s): cannot arm the quota mute timer", c->slot, c->peer);
        c->muted = false;
        return;
    }
    c->muted = true;
    c->muted_until_ms = until;
    conn_pause(c);
}

/* ---- responses --------------------------------------------------------------------------- */

static void wr_i32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Local and remote time of a request as it completes (metrics.h, BROKER_LAT_*). */
static void req_times(struct broker_shard *s, struct broker_req *req, bool in_handler)
{
    uint64_t now = broker_now_us();
    req->done_us_ = now;
    struct broker_latency *lat = s->metrics->lat[BROKER_LAT_LOCAL];
    if (in_handler) { /* answered from inside its handler */
        broker_metric_latency(&lat[req->api_key], now - req->start_us_);
        broker_metric_latency(&s->metrics->lat[BROKER_LAT_REMOTE][req->api_key], 0);
    } else if (req->local_end_us_ != 0) {
        broker_metric_latency(&lat[req->api_key], req->local_end_us_ - req->start_us_);
        broker_metric_latency(&s->metrics->lat[BROKER_LAT_REMOTE][req->api_key],
                              now - req->local_end_us_);
    }
}

static void req_complete(struct broker_req *req, enum req_state st)
{
    LM_ASSERT(req->state_ == REQ_PENDING);
    req->state_ = (uint8_t)st;
    struct broker_conn *c = req->conn;
    bool in_handler = c->shard->dispatching == req;
    if (in_handler)
        c->shard->dispatching = NULL;
    if (req->start_us_ != 0 && c->shard->metrics_on)
        req_times(c->shard, req, in_handler);
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
    size_t hdr = req->sasl_raw ? 0 : 4 + (hdr_v1 ? 1 : 0);
    LM_ASSERT(body_len <= (size_t)INT32_MAX - hdr);
    wr_i32(req->out_.prefix, (uint32_t)(hdr + body_len));
    wr_i32(req->out_.prefix + 4, (uint32_t)req->correlation_id);
    req->out_.prefix[8] = 0;
    req->out_.prefix_len = (uint8_t)(4 + hdr); /* a bare SASL token: the length alone */
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

struct broker_conn_auth *broker_req_auth(struct broker_req *req)
{
    LM_ASSERT(req->conn != NULL && req->conn->out == NULL);
    return &req->conn->auth;
}

bool broker_req_conn_closing(const struct broker_req *req)
{
    return req->conn->closing;
}

uint64_t broker_req_conn_id(const struct broker_req *req)
{
    return conn_id_of(req->conn);
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
    struct broker_shard *s = c->shard;
    if (s->metrics_on && req->start_us_ != 0) {
        uint64_t now = broker_now_us();
        broker_metric_latency(&s->metrics->lat[BROKER_LAT_TOTAL][req->api_key],
                              now - req->start_us_);
        if (req->done_us_ != 0)
            broker_metric_latency(&s->metrics->lat[BROKER_LAT_SEND][req->api_key],
                                  now - req->done_us_);
    }
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
void out_release(struct broker_conn *c, struct broker_out_ *o)
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
void req_close_files(struct broker_req *req)
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

static void tls_pump(struct broker_conn *c);

void conn_pump(struct broker_conn *c)
{
    struct broker_shard *s = c->shard;
    if (c->tls != NULL) {
        tls_pump(c);
        return;
    }
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

static void tls_on_sent(struct broker_conn *c, int res);

void broker_core_on_sent(struct broker_shard *s, struct broker_conn *c, int res)
{
    if (c->tls != NULL) {
        tls_on_sent(c, res);
        return;
    }
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
    if (s->metrics_on)
        broker_metric_add(&s->metrics->net_bytes_out, (uint64_t)res);
    bool done = send_advance(c, (size_t)res);
    while (!done && (rc = send_some(s, c)) >= 0) {
        if (s->metrics_on)
            broker_metric_add(&s->metrics->net_bytes_out, (uint64_t)rc);
        done = send_advance(c, (size_t)rc);
    }
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
int idle_start(struct broker_shard *s)
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

/* ---- TLS (SSL and SASL_SSL listeners) ------------------------------------------------------
 *
 * The engine (broker/security/tls.h) sits between the socket and the framing, on the shard's
 * own thread with either backend: received ciphertext goes in through broker_core_on_data and
 * comes out as plaintext into the same framing, stash and backpressure as a plaintext
 * connection; responses are encrypted a chunk at a time (memory parts copied, file slices read
 * with pread: the zero-copy path cannot carry TLS records) and the chunk's ciphertext is sent
 * from the engine's buffer before the next chunk is encrypted, so a connection holds at most
 * one chunk of ciphertext. A response is done (and freed) once it is all encrypted. */

/* After the handshake: the principal of an SSL listener's client (its certificate's mapped
 * subject, or ANONYMOUS); a SASL_SSL listener's comes from the SASL exchange. False when no
 * mapping rule applies: Kafka fails the authentication, so the connection closes. */
static bool tls_established(struct broker_conn *c)
{
    if (c->tls_principal_set)
        return true;
    c->tls_principal_set = true;
    char desc[96], err[320];
    broker_tls_conn_describe(c->tls, desc, sizeof(desc));
    if (c->out != NULL) {
        /* a node-to-node connection: the server's certificate was verified in the handshake;
         * its calls go out from now on (their request timeouts start here) */
        BLOG_INFO_LIMITED("peer %s: TLS established (%s)", c->peer, desc);
        broker_peer_on_connected_(c);
        return true;
    }
    if (c->auth.sasl) {
        BLOG_DEBUG("conn %u (%s): TLS established (%s)", c->slot, c->peer, desc);
        return true;
    }
    int rc = broker_tls_conn_principal(c->tls, c->auth.principal, sizeof(c->auth.principal), err,
                                       sizeof(err));
    if (rc != 0) {
        BLOG_INFO_LIMITED("conn %u (%s): TLS client authentication failed: %s", c->slot, c->peer,
                          err);
        conn_close(c, "TLS principal mapping failed");
        return false;
    }
    BLOG_INFO_LIMITED("conn %u (%s): TLS established (%s), principal %s", c->slot, c->peer, desc,
                      c->auth.principal);
    return true;
}

static bool tls_plain(void *arg, const uint8_t *p, size_t n)
{
    struct broker_conn *c = arg;
    if (!tls_established(c))
        return false;
    conn_on_plain(c, p, n);
    return !c->closing;
}

static void tls_on_data(struct broker_conn *c, const uint8_t *p, size_t n)
{
    struct broker_shard *s = c->shard;
    LM_ASSERT(c->tls != NULL);
    char err[256];
    conn_hold(c);
    int rc = broker_tls_conn_input(c->tls, p, n, s->tls_plain, BROKER_TLS_RECORD_BYTES, tls_plain,
                                   c, err, sizeof(err));
    if (!c->closing) {
        if (rc == LM_E_INVALID && c->out != NULL) {
            BLOG_WARN_LIMITED("peer %s: TLS %s failed: %s", c->peer,
                              broker_tls_conn_established(c->tls) ? "record" : "handshake", err);
            broker_peer_on_close_(c, LM_E_IO, EPROTO);
            conn_close(c, "TLS failure");
        } else if (rc == LM_E_INVALID) {
            BLOG_INFO_LIMITED("conn %u (%s): TLS %s failed: %s", c->slot, c->peer,
                              broker_tls_conn_established(c->tls) ? "record" : "handshake", err);
            conn_close(c, "TLS failure"); /* sends the alert the engine queued, if it can */
        } else if (rc == LM_E_CLOSED) {
            broker_core_on_peer_fin(s, c); /* close_notify: requests received are served */
        } else if (broker_tls_conn_established(c->tls) && !tls_established(c)) {
            /* closed */
        } else {
            tls_pump(c); /* handshake messages, and responses the data completed */
        }
    }
    conn_unhold(c);
}

/* Encrypts the next chunk of the message being sent; true when all of it is encrypted. */
static int tls_encrypt_chunk(struct broker_conn *c, bool *done)
{
    struct broker_shard *s = c->shard;
    const struct broker_out_ *o = c->sending;
    size_t budget = BROKER_TLS_CHUNK_BYTES;
    *done = false;
    while (budget > 0 && !*done) {
        size_t g = 0;
        while (g < BROKER_TLS_RECORD_BYTES && !*done) {
            const void *mem;
            int fd = -1;
            uint64_t off = 0;
            size_t len = part_len(o, c->part, &mem, &fd, &off);
            LM_ASSERT(c->part_off < len); /* send_advance skips finished parts */
            size_t take = len - c->part_off;
            if (take > BROKER_TLS_RECORD_BYTES - g)
                take = BROKER_TLS_RECORD_BYTES - g;
            if (mem != NULL) {
                memcpy(s->tls_gather + g, (const uint8_t *)mem + c->part_off, take);
            } else {
                ssize_t r = pread(fd, s->tls_gather + g, take, (off_t)(off + c->part_off));
                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0) {
                    BLOG_ERROR("conn %u: file part unreadable (fd %d at %llu): %s", c->slot, fd,
                               (unsigned long long)(off + c->part_off), strerror(errno));
                    return LM_E_IO;
                }
                if (r == 0) {
                    BLOG_WARN_LIMITED(BROKER_FILE_PART_CUT_FMT, c->slot);
                    return LM_E_IO;
                }
                take = (size_t)r;
            }
            g += take;
            *done = send_advance(c, take);
        }
        int rc = broker_tls_conn_write(c->tls, s->tls_gather, g);
        if (rc != 0)
            return rc;
        budget = budget > g ? budget - g : 0;
    }
    return 0;
}

static void tls_pump(struct broker_conn *c)
{
    struct broker_shard *s = c->shard;
    while (!c->closing && !c->tls_send_busy) {
        size_t len = 0;
        const uint8_t *p = broker_tls_conn_pending(c->tls, &len);
        if (p != NULL) {
            c->iov[0].iov_base = (void *)(uintptr_t)p;
            c->iov[0].iov_len = len;
            c->iovcnt = 1;
            int rc = s->io->send(s, c);
            if (rc == LM_E_AGAIN) {
                c->tls_send_busy = true; /* broker_core_on_sent continues */
                return;
            }
            if (rc < 0) {
                c->sending = NULL; /* still queued: conn_close frees it */
                conn_close(c, "send failed");
                return;
            }
            broker_tls_conn_consumed(c->tls, (size_t)rc);
            if (s->metrics_on)
                broker_metric_add(&s->metrics->net_bytes_out, (uint64_t)rc);
            continue;
        }
        if (!broker_tls_conn_established(c->tls))
            return; /* the handshake waits for the other side */
        if (c->sending == NULL) {
            struct broker_out_ *o = next_out(c);
            if (o == NULL) {
                broker_tls_conn_trim(c->tls); /* idle: hold no ciphertext buffer */
                return;
            }
            c->sending = o;
            c->part = 0;
            c->part_off = 0;
            if (send_advance(c, 0))
                LM_UNREACHABLE(); /* the prefix is never empty */
        }
        bool done = false;
        int rc = tls_encrypt_chunk(c, &done);
        if (rc != 0) {
            c->sending = NULL;
            conn_close(c, rc == LM_E_IO ? "send failed" : "TLS encryption failed");
            return;
        }
        if (done) {
            struct broker_out_ *o = c->sending;
            c->sending = NULL;
            out_sent(c, o); /* its ciphertext is in the engine: the response can go */
        }
    }
}

static void tls_on_sent(struct broker_conn *c, int res)
{
    struct broker_shard *s = c->shard;
    LM_ASSERT(c->tls_send_busy);
    c->tls_send_busy = false;
    c->idle_ticks = 0;
    if (c->closing)
        return; /* conn_close already dropped every response */
    conn_hold(c);
    if (res < 0) {
        BLOG_DEBUG("conn %u (%s): send: %s", c->slot, c->peer, strerror(-res));
        c->sending = NULL;
        conn_close(c, "send failed");
    } else {
        broker_tls_conn_consumed(c->tls, (size_t)res);
        if (s->metrics_on)
            broker_metric_add(&s->metrics->net_bytes_out, (uint64_t)res);
        tls_pump(c);
    }
    conn_unhold(c);
}

/* conn_close of a TLS connection: no response memory is in the backend's hands (only the
 * engine's ciphertext, freed with the connection), so the one being encrypted is dropped with
 * the rest; close_notify (or the alert of a failed handshake) is sent if the socket takes it
 * now (best effort: a non-blocking send, nothing waits for it). */
static void tls_close(struct broker_conn *c)
{
    c->sending = NULL;
    if (c->tls_send_busy || c->fd < 0)
        return;
    broker_tls_conn_close_notify(c->tls);
    size_t len = 0;
    const uint8_t *p = broker_tls_conn_pending(c->tls, &len);
    if (p != NULL) {
        ssize_t n = send(c->fd, p, len, MSG_DONTWAIT | MSG_NOSIGNAL);
        broker_tls_conn_consumed(c->tls, n > 0 ? (size_t)n : 0);
    }
}

/* A node-to-node connection over TLS has connected: the handshake starts (the ClientHello is
 * sent); the peer counts as connected once it completes (tls_established). */
void broker_core_tls_peer_start(struct broker_conn *c)
{
    struct broker_shard *s = c->shard;
    LM_ASSERT(c->tls != NULL && c->out != NULL);
    char err[256];
    conn_hold(c);
    int rc = broker_tls_conn_input(c->tls, NULL, 0, s->tls_plain, BROKER_TLS_RECORD_BYTES,
                                   tls_plain, c, err, sizeof(err));
    if (rc != 0) {
        BLOG_WARN_LIMITED("peer %s: TLS handshake failed: %s", c->peer, err);
        broker_peer_on_close_(c, LM_E_IO, EPROTO);
        conn_close(c, "TLS failure");
    } else {
        tls_pump(c);
    }
    conn_unhold(c);
}
