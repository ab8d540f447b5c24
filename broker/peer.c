/* Outbound connections of a shard (runtime.h "outbound connections"): Kafka's NetworkClient role
 * for replication and the controller. A peer is a connection of the shard's own table (same
 * frame reader, memory budget, backpressure and send path as a client connection) driven the
 * other way: calls are queued, written in order, and each response frame is matched to the
 * oldest call written (a Kafka broker answers a connection's requests in order, so a response
 * whose correlation id is not the oldest one's means the stream cannot be trusted: the
 * connection closes, as NetworkClient's correlation check does).
 *
 * Every call completes exactly once, never from inside an API call: failures move the calls to
 * the peer's failed list and a zero-delay timer runs their done(). The same timer watches the
 * connect deadline and the oldest call's request timeout. */
#define _GNU_SOURCE
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/reqhdr.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_endian.h"

enum {
    PEER_CONNECT_TIMEOUT_MS_DEFAULT = 10000, /* socket.connection.setup.timeout.ms */
    PEER_REQUEST_TIMEOUT_MS_DEFAULT = 30000, /* request.timeout.ms */
    PEER_INFLIGHT_DEFAULT = 5,               /* max.in.flight.requests.per.connection */
    PEER_CLIENT_ID_MAX = 32,
};

struct call_list {
    struct broker_call *head, *tail;
};

struct broker_peer {
    struct broker_shard *shard;
    struct broker_conn *conn;  /* NULL once the connection is freed */
    struct call_list queued;   /* not written yet */
    struct call_list inflight; /* written or being written, oldest first */
    struct call_list failed;   /* done(err) on the next timer */
    uint32_t count;            /* queued + inflight */
    uint32_t inflight_max;
    uint32_t request_timeout_ms;
    uint64_t connect_deadline_ms;
    int32_t next_correlation_id;
    int err; /* 0 while usable */
    int sys_errno;
    bool connected;
    bool owner_closed;
    uint32_t busy; /* depth of done() callbacks and broker_peer_close: not freed then */
    struct broker_timer timer;
    struct sockaddr_storage addr;
    socklen_t addr_len;
    char client_id[PEER_CLIENT_ID_MAX];
    int16_t client_id_len; /* -1: null */
};

static void list_push(struct call_list *l, struct broker_call *c)
{
    c->next_ = NULL;
    if (l->tail != NULL)
        l->tail->next_ = c;
    else
        l->head = c;
    l->tail = c;
}

static struct broker_call *list_pop(struct call_list *l)
{
    struct broker_call *c = l->head;
    if (c != NULL) {
        l->head = c->next_;
        if (l->head == NULL)
            l->tail = NULL;
        c->next_ = NULL;
    }
    return c;
}

/* Removes c, wherever it is in l. */
static void list_remove(struct call_list *l, struct broker_call *c)
{
    struct broker_call **pp = &l->head, *prev = NULL;
    while (*pp != c) {
        LM_ASSERT(*pp != NULL);
        prev = *pp;
        pp = &(*pp)->next_;
    }
    *pp = c->next_;
    if (l->tail == c)
        l->tail = prev;
    c->next_ = NULL;
}

static struct broker_call *call_of_out(struct broker_out_ *o)
{
    return (struct broker_call *)(void *)((uint8_t *)o - offsetof(struct broker_call, out_));
}

static void peer_timer_fire(struct broker_shard *s, struct broker_timer *t);

/* Arms the timer for the next thing due: failed calls at once, else the connect deadline, else
 * the oldest call's request timeout. An earlier arming stays (firing early only re-checks). */
static void peer_arm(struct broker_peer *p)
{
    uint64_t now = broker_now_ms(), due = UINT64_MAX;
    if (p->failed.head != NULL)
        due = now;
    else if (p->conn != NULL && !p->connected && p->err == 0)
        due = p->connect_deadline_ms;
    else if (p->inflight.head != NULL)
        due = p->inflight.head->deadline_ms_;
    else if (p->queued.head != NULL)
        due = p->queued.head->deadline_ms_;
    if (due == UINT64_MAX)
        return;
    if (p->timer.heap_index_ != UINT32_MAX) {
        if (p->timer.deadline_ms_ <= due)
            return;
        broker_timer_cancel(p->shard, &p->timer);
    }
    if (broker_timer_start(p->shard, &p->timer, due > now ? due - now : 0, peer_timer_fire, p) != 0)
        BLOG_ERROR("peer %s: cannot arm its timer (out of memory)", p->conn ? p->conn->peer : "?");
}

static bool peer_maybe_free(struct broker_peer *p)
{
    if (!p->owner_closed || p->busy || p->conn != NULL || p->failed.head != NULL ||
        p->queued.head != NULL || p->inflight.head != NULL)
        return false;
    broker_timer_cancel(p->shard, &p->timer);
    free(p);
    return true;
}

static void fail_call(struct broker_peer *p, struct broker_call *call)
{
    list_push(&p->failed, call);
    p->shard->peer_calls_failing++;
}

/* Sets the error that closes p (the first one wins). */
static void peer_set_error(struct broker_peer *p, int err, int sys_errno)
{
    if (p->err != 0)
        return;
    p->err = err;
    p->sys_errno = sys_errno;
}

static void peer_fail_conn(struct broker_peer *p, int err, int sys_errno, const char *why)
{
    peer_set_error(p, err, sys_errno);
    if (p->conn != NULL)
        broker_core_conn_close(p->conn, why);
}

static void peer_timer_fire(struct broker_shard *s, struct broker_timer *t)
{
    struct broker_peer *p = t->arg;
    uint64_t now = broker_now_ms();
    if (p->err == 0 && p->conn != NULL) {
        struct broker_call *oldest = p->inflight.head ? p->inflight.head : p->queued.head;
        if (!p->connected && now >= p->connect_deadline_ms) {
            BLOG_INFO_LIMITED("peer %s: connect timed out", p->conn->peer);
            peer_fail_conn(p, LM_E_TIMEOUT, ETIMEDOUT, "connect timed out");
        } else if (p->connected && oldest != NULL && oldest->deadline_ms_ <= now) {
            BLOG_INFO_LIMITED("peer %s: request (api key %d, correlation id %d) timed out",
                              p->conn->peer, oldest->api_key, oldest->correlation_id_);
            peer_fail_conn(p, LM_E_TIMEOUT, ETIMEDOUT, "request timed out");
        }
    }
    /* Only the calls failed before this turn: one a done() sends again on the dead peer waits
     * for the next, so a caller that retries at once cannot keep this loop going. */
    struct call_list failed = p->failed;
    p->failed.head = p->failed.tail = NULL;
    p->busy++;
    struct broker_call *call;
    while ((call = list_pop(&failed)) != NULL) {
        LM_ASSERT(s->peer_calls_failing > 0);
        s->peer_calls_failing--;
        call->resp = NULL;
        call->resp_len = 0;
        call->sys_errno = p->sys_errno;
        call->done(s, call, p->err != 0 ? p->err : LM_E_CLOSED);
    }
    p->busy--;
    if (!peer_maybe_free(p))
        peer_arm(p);
}

/* ---- hooks called by the core (shard.c) ---------------------------------------------------- */

struct broker_out_ *broker_peer_next_out_(struct broker_conn *c)
{
    struct broker_peer *p = c->out;
    struct broker_call *call = list_pop(&p->queued);
    if (call == NULL)
        return NULL;
    list_push(&p->inflight, call);
    return &call->out_;
}

void broker_peer_on_sent_(struct broker_conn *c, struct broker_out_ *o)
{
    struct broker_peer *p = c->out;
    if (!c->closing)
        return; /* written: it waits in inflight for its response */
    /* The backend has let go of the request's memory: now the call may fail. */
    struct broker_call *call = call_of_out(o);
    list_remove(&p->inflight, call);
    LM_ASSERT(p->count > 0);
    p->count--;
    fail_call(p, call);
    peer_arm(p);
}

void broker_peer_on_close_(struct broker_conn *c, int err, int sys_errno)
{
    struct broker_peer *p = c->out;
    peer_set_error(p, err, sys_errno);
    if (!c->closing)
        return; /* the close follows; only the cause is recorded now */
    p->connected = false;
    struct broker_call *call;
    while ((call = list_pop(&p->queued)) != NULL) {
        p->count--;
        fail_call(p, call);
    }
    /* The call being written stays until the backend lets go of it (broker_peer_on_sent_). */
    struct call_list keep = {NULL, NULL};
    while ((call = list_pop(&p->inflight)) != NULL) {
        if (c->sending == &call->out_) {
            list_push(&keep, call);
            continue;
        }
        p->count--;
        fail_call(p, call);
    }
    p->inflight = keep;
    peer_arm(p);
}

void broker_peer_on_connected_(struct broker_conn *c)
{
    struct broker_peer *p = c->out;
    p->connected = true;
    /* the requests' own timeouts run from now on (NetworkClient counts a request's time from
     * when it is sent; queued ones here were waiting for the connect) */
    uint64_t now = broker_now_ms();
    for (struct broker_call *call = p->queued.head; call != NULL; call = call->next_)
        call->deadline_ms_ = now + p->request_timeout_ms;
    peer_arm(p);
}

void broker_peer_on_frame_(struct broker_conn *c, uint8_t *body, uint32_t size)
{
    struct broker_peer *p = c->out;
    struct broker_call *call = p->inflight.head;
    size_t off = 4;
    int32_t corr = size >= 4 ? (int32_t)lm_get_be32(body) : -1;
    bool ok =
        size >= 4 && call != NULL && c->sending != &call->out_ && corr == call->correlation_id_;
    /* Response header v1 (tagged fields) for flexible versions; ApiVersions keeps v0. */
    if (ok && call->flexible && call->api_key != 18 &&
        broker_reqhdr_skip_tags(body, size, &off) != 0)
        ok = false;
    if (!ok) {
        BLOG_WARN_LIMITED("peer %s: response with correlation id %d does not match the oldest "
                          "request (%d), closing",
                          c->peer, corr, call != NULL ? call->correlation_id_ : -1);
        broker_core_frame_release(c, body);
        peer_fail_conn(p, LM_E_CORRUPT, 0, "unexpected response");
        return;
    }
    list_pop(&p->inflight);
    p->count--;
    call->resp = body + off;
    call->resp_len = size - off;
    call->sys_errno = 0;
    p->busy++;
    call->done(c->shard, call, 0);
    p->busy--;
    broker_core_frame_release(c, body);
    if (!peer_maybe_free(p))
        peer_arm(p);
}

void broker_peer_on_free_(struct broker_conn *c)
{
    struct broker_peer *p = c->out;
    p->conn = NULL;
    p->connected = false;
    if (!peer_maybe_free(p))
        peer_arm(p);
}

void broker_core_on_connected(struct broker_shard *s, struct broker_conn *c, int res)
{
    LM_ASSERT(c->out != NULL && !c->connecting);
    if (c->closing)
        return;
    if (res != 0) {
        BLOG_INFO_LIMITED("peer %s: connect: %s", c->peer, strerror(-res));
        peer_fail_conn(c->out, LM_E_IO, -res, "connect failed");
        return;
    }
    int one = 1;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) != 0)
        BLOG_WARN_LIMITED("peer %s: TCP_NODELAY: %s", c->peer, strerror(errno));
    int rc = s->io->conn_open(s, c);
    if (rc != 0) {
        BLOG_ERROR_LIMITED("peer %s: cannot start I/O: %s", c->peer, lm_strerror(rc));
        peer_fail_conn(c->out, LM_E_IO, EIO, "cannot start I/O");
        return;
    }
    BLOG_DEBUG("peer %s: connected (conn %u)", c->peer, c->slot);
    if (c->tls != NULL) {
        broker_core_tls_peer_start(c); /* connected once the handshake completes */
        return;
    }
    broker_peer_on_connected_(c);
    broker_core_conn_pump(c);
}

/* ---- API ------------------------------------------------------------------------------------ */

int broker_peer_open(struct broker_shard *s, const char *host, uint16_t port,
                     const struct broker_peer_opts *opts, struct broker_peer **out)
{
    LM_ASSERT(host != NULL && out != NULL);
    if (s->conns_closed)
        return LM_E_STATE;
    if (s->free_count == 0)
        return LM_E_FULL;
    struct broker_peer_opts o = opts != NULL ? *opts : (struct broker_peer_opts){0};
    size_t cid_len = o.client_id != NULL ? strlen(o.client_id) : 0;
    if (cid_len > PEER_CLIENT_ID_MAX)
        return LM_E_INVALID;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port_text[8];
    snprintf(port_text, sizeof(port_text), "%u", port);
    if (port == 0 || getaddrinfo(host, port_text, &hints, &res) != 0 || res == NULL ||
        res->ai_addrlen > sizeof(struct sockaddr_storage)) {
        if (res != NULL)
            freeaddrinfo(res);
        return LM_E_INVALID;
    }
    /* TLS (the controller listeners are SSL): the engine checks the server's certificate
     * against the host named here */
    struct broker_tls_conn *tls = NULL;
    if (o.tls) {
        if (s->tls_plain == NULL)
            s->tls_plain = malloc(BROKER_TLS_RECORD_BYTES);
        if (s->tls_gather == NULL)
            s->tls_gather = malloc(BROKER_TLS_RECORD_BYTES);
        if (s->tls_plain == NULL || s->tls_gather == NULL ||
            (tls = broker_rt_tls_peer_conn_new(s->rt, host)) == NULL) {
            freeaddrinfo(res);
            return LM_E_NOMEM;
        }
    }
    struct broker_peer *p = calloc(1, sizeof(*p));
    int fd = p != NULL ? socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) : -1;
    struct broker_conn *c = fd >= 0 ? broker_core_conn_new(s, fd) : NULL;
    if (c == NULL) {
        freeaddrinfo(res);
        if (fd >= 0)
            close(fd);
        free(p);
        broker_tls_conn_free(tls);
        return p == NULL || fd >= 0 ? LM_E_NOMEM : LM_E_IO;
    }
    c->tls = tls;
    memcpy(&p->addr, res->ai_addr, res->ai_addrlen);
    p->addr_len = res->ai_addrlen;
    freeaddrinfo(res);
    p->shard = s;
    p->conn = c;
    p->inflight_max = o.inflight_max ? o.inflight_max : PEER_INFLIGHT_DEFAULT;
    p->request_timeout_ms =
        o.request_timeout_ms ? o.request_timeout_ms : PEER_REQUEST_TIMEOUT_MS_DEFAULT;
    p->connect_deadline_ms =
        broker_now_ms() +
        (o.connect_timeout_ms ? o.connect_timeout_ms : PEER_CONNECT_TIMEOUT_MS_DEFAULT);
    p->client_id_len = o.client_id != NULL ? (int16_t)cid_len : -1;
    memcpy(p->client_id, o.client_id ? o.client_id : "", cid_len);
    p->timer.heap_index_ = UINT32_MAX;
    c->out = p;
    snprintf(c->peer, sizeof(c->peer), "%s:%u", host, port);
    s->peers_open++;
    broker_frame_reader_init(
        &c->fr, o.response_max_bytes > 0 ? o.response_max_bytes : s->cfg->socket_request_max_bytes,
        broker_core_frame_grow, c);
    *out = p;
    int rc = s->io->conn_connect(s, c, (const struct sockaddr *)&p->addr, p->addr_len);
    if (rc != 0) {
        /* Refused at once (loopback can): the peer exists, failed; its calls fail later. */
        BLOG_INFO_LIMITED("peer %s: connect: %s", c->peer, strerror(-rc));
        peer_fail_conn(p, LM_E_IO, -rc, "connect failed");
        return 0;
    }
    peer_arm(p);
    return 0;
}

static void wr_be(uint8_t *p, uint32_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

int broker_peer_send(struct broker_peer *p, struct broker_call *call)
{
    LM_ASSERT(!p->owner_closed && call->done != NULL);
    LM_ASSERT(call->parts != NULL || call->nparts == 0);
    if (p->count >= p->inflight_max)
        return LM_E_AGAIN;
    /* Request header v1 (v2 adds an empty tagged-field section): api_key, api_version,
     * correlation_id, client_id as a nullable string. */
    size_t cid = p->client_id_len > 0 ? (size_t)p->client_id_len : 0;
    size_t hdr = 2 + 2 + 4 + 2 + cid + (call->flexible ? 1 : 0);
    size_t total = hdr;
    for (uint32_t i = 0; i < call->nparts; i++) {
        LM_ASSERT(call->parts[i].mem != NULL || call->parts[i].fd >= 0 || call->parts[i].len == 0);
        if (call->parts[i].len > (size_t)INT32_MAX - total)
            return LM_E_TOO_LARGE;
        total += call->parts[i].len;
    }
    call->correlation_id_ = p->next_correlation_id;
    p->next_correlation_id = (p->next_correlation_id + 1) & INT32_MAX;
    struct broker_out_ *o = &call->out_;
    LM_ASSERT(4 + hdr <= sizeof(o->prefix));
    wr_be(o->prefix, (uint32_t)total, 4);
    wr_be(o->prefix + 4, (uint16_t)call->api_key, 2);
    wr_be(o->prefix + 6, (uint16_t)call->api_version, 2);
    wr_be(o->prefix + 8, (uint32_t)call->correlation_id_, 4);
    wr_be(o->prefix + 12, (uint16_t)p->client_id_len, 2);
    memcpy(o->prefix + 14, p->client_id, cid);
    if (call->flexible)
        o->prefix[14 + cid] = 0;
    o->prefix_len = (uint8_t)(4 + hdr);
    o->parts = call->parts;
    o->nparts = call->nparts;
    call->resp = NULL;
    call->resp_len = 0;
    call->sys_errno = 0;
    call->deadline_ms_ = broker_now_ms() + p->request_timeout_ms;
    if (p->err != 0 || p->conn == NULL || p->conn->closing) {
        fail_call(p, call);
        peer_arm(p);
        return 0;
    }
    list_push(&p->queued, call);
    p->count++;
    if (p->connected)
        broker_core_conn_pump(p->conn); /* a failure moves the call to failed: no done() here */
    peer_arm(p);
    return 0;
}

int broker_peer_error(const struct broker_peer *p)
{
    return p->err;
}

bool broker_peer_connected(const struct broker_peer *p)
{
    return p->connected && p->err == 0;
}

void broker_peer_close(struct broker_peer *p)
{
    LM_ASSERT(!p->owner_closed);
    p->owner_closed = true;
    p->busy++;
    if (p->conn != NULL)
        peer_fail_conn(p, LM_E_CLOSED, 0, "closed by its owner");
    p->busy--;
    if (!peer_maybe_free(p))
        peer_arm(p);
}
