/* epoll backend: the same interface as io_uring.c for kernels or sandboxes without io_uring
 * (DESIGN.md §2). Level-triggered readiness; reads into a per-shard scratch buffer; writes
 * directly with writev, waiting for EPOLLOUT only after a short write; cross-shard and external
 * wakeups through the shard's eventfd. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

enum {
    EVENTS_MAX = 512,      /* events handled per loop turn */
    SCRATCH_BYTES = 65536, /* read buffer */
    READS_PER_EVENT = 4,   /* fairness: level-triggered epoll brings the rest next turn */
    ACCEPTS_PER_EVENT = 64,
    UDP_RECVS_PER_EVENT = 64,
};

struct epoll_state {
    int epfd;
    bool listeners_in; /* the listeners are in the interest set */
    struct epoll_event events[EVENTS_MAX];
};

static struct epoll_state *st(struct broker_shard *s)
{
    return s->io_state;
}

static int ep_init(struct broker_shard *s)
{
    struct epoll_state *e = calloc(1, sizeof(*e));
    uint8_t *scratch = malloc(SCRATCH_BYTES);
    if (e == NULL || scratch == NULL) {
        free(e);
        free(scratch);
        return LM_E_NOMEM;
    }
    e->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (e->epfd < 0) {
        BLOG_ERROR("epoll_create1: %s", strerror(errno));
        free(e);
        free(scratch);
        return LM_E_IO;
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = broker_ud(BROKER_OP_WAKE_READ, 0, 0)};
    if (epoll_ctl(e->epfd, EPOLL_CTL_ADD, s->event_fd, &ev) != 0) {
        BLOG_ERROR("epoll_ctl(eventfd): %s", strerror(errno));
        close(e->epfd);
        free(e);
        free(scratch);
        return LM_E_IO;
    }
    s->io_state = e;
    s->scratch = scratch;
    s->scratch_len = SCRATCH_BYTES;
    return 0;
}

static void ep_deinit(struct broker_shard *s)
{
    struct epoll_state *e = st(s);
    if (e == NULL)
        return;
    close(e->epfd);
    free(e);
    free(s->scratch);
    s->scratch = NULL;
    s->io_state = NULL;
}

static int listeners_add(struct broker_shard *s)
{
    for (uint32_t i = 0; i < s->listen_count; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = broker_ud(BROKER_OP_ACCEPT, i, 0)};
        if (epoll_ctl(st(s)->epfd, EPOLL_CTL_ADD, s->listen_fds[i], &ev) != 0) {
            BLOG_ERROR("epoll_ctl(listener): %s", strerror(errno));
            return LM_E_IO;
        }
    }
    st(s)->listeners_in = true;
    return 0;
}

static void listeners_del(struct broker_shard *s)
{
    if (!st(s)->listeners_in)
        return;
    st(s)->listeners_in = false;
    for (uint32_t i = 0; i < s->listen_count; i++)
        if (epoll_ctl(st(s)->epfd, EPOLL_CTL_DEL, s->listen_fds[i], NULL) != 0)
            BLOG_WARN("epoll_ctl(del listener): %s", strerror(errno));
}

static int ep_listen_start(struct broker_shard *s)
{
    int rc = listeners_add(s);
    if (rc == 0)
        s->listening = true;
    return rc;
}

static void ep_listen_stop(struct broker_shard *s)
{
    s->listening = false;
    listeners_del(s);
}

/* Level-triggered: a listener with a backlog stays readable, so a paused listener leaves the
 * interest set (else every turn would wake for it). */
static void ep_accept_pause(struct broker_shard *s)
{
    listeners_del(s);
}

static void ep_accept_resume(struct broker_shard *s)
{
    if (!st(s)->listeners_in && listeners_add(s) != 0)
        BLOG_ERROR("cannot resume accepting");
}

static int conn_interest(struct broker_shard *s, struct broker_conn *c, int op)
{
    /* EPOLLRDHUP even while paused: a client that goes away while its connection waits (for
     * memory, or for its responses to be read) is noticed and its connection freed. */
    uint32_t want = (c->paused || c->closing || c->connecting ? 0 : EPOLLIN) |
                    (c->closing || c->peer_fin ? 0 : EPOLLRDHUP) |
                    (c->epoll_out || c->connecting ? EPOLLOUT : 0);
    if (op == EPOLL_CTL_MOD && want == c->epoll_events)
        return 0;
    struct epoll_event ev = {.events = want,
                             .data.u64 = broker_ud(BROKER_OP_CONN, c->slot, c->gen)};
    if (epoll_ctl(st(s)->epfd, op, c->fd, &ev) != 0) {
        BLOG_ERROR("epoll_ctl(conn %u): %s", c->slot, strerror(errno));
        return LM_E_IO;
    }
    c->epoll_events = want;
    c->epoll_in_set = true;
    return 0;
}

/* An outbound connection is already in the set (it waited there for its connect). */
static int ep_conn_open(struct broker_shard *s, struct broker_conn *c)
{
    return conn_interest(s, c, c->epoll_in_set ? EPOLL_CTL_MOD : EPOLL_CTL_ADD);
}

/* Non-blocking connect: EINPROGRESS, then EPOLLOUT (or EPOLLERR) says it finished and SO_ERROR
 * how. Returns -errno when it failed at once. */
static int ep_conn_connect(struct broker_shard *s, struct broker_conn *c,
                           const struct sockaddr *addr, socklen_t addr_len)
{
    if (connect(c->fd, addr, addr_len) != 0 && errno != EINPROGRESS)
        return -errno;
    c->connecting = true;
    if (conn_interest(s, c, EPOLL_CTL_ADD) != 0) {
        c->connecting = false;
        return -EIO;
    }
    return 0;
}

static void ep_recv_pause(struct broker_shard *s, struct broker_conn *c)
{
    if (conn_interest(s, c, EPOLL_CTL_MOD) != 0)
        BLOG_WARN("conn %u: cannot pause reading", c->slot);
}

static void ep_recv_resume(struct broker_shard *s, struct broker_conn *c)
{
    if (conn_interest(s, c, EPOLL_CTL_MOD) != 0)
        BLOG_WARN("conn %u: cannot resume reading", c->slot);
}

static int ep_send(struct broker_shard *s, struct broker_conn *c)
{
    LM_ASSERT(c->iovcnt > 0);
    if (c->epoll_out)
        return LM_E_AGAIN; /* still waiting for EPOLLOUT */
    struct msghdr msg = {.msg_iov = c->iov, .msg_iovlen = (size_t)c->iovcnt};
    ssize_t n = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0)
        return n > INT32_MAX ? INT32_MAX : (int)n;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->epoll_out = true;
        if (conn_interest(s, c, EPOLL_CTL_MOD) != 0)
            return LM_E_IO;
        return LM_E_AGAIN;
    }
    if (errno == EINTR)
        return 0;
    return LM_E_IO;
}

/* File parts of a response: sendfile(2) from the page cache to the socket, no user-space copy
 * (DESIGN.md §2); a full socket waits for EPOLLOUT as writes do. */
static int ep_send_file(struct broker_shard *s, struct broker_conn *c, int fd, uint64_t offset,
                        size_t len)
{
    LM_ASSERT(len > 0);
    if (c->epoll_out)
        return LM_E_AGAIN;
    off_t off = (off_t)offset;
    ssize_t n = sendfile(c->fd, fd, &off, len > (1u << 30) ? (1u << 30) : len);
    if (n > 0)
        return n > INT32_MAX ? INT32_MAX : (int)n;
    if (n == 0) {
        BLOG_WARN_LIMITED(BROKER_FILE_PART_CUT_FMT, c->slot);
        return LM_E_IO; /* the frame cannot be completed */
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        c->epoll_out = true;
        if (conn_interest(s, c, EPOLL_CTL_MOD) != 0)
            return LM_E_IO;
        return LM_E_AGAIN;
    }
    if (errno == EINTR)
        return 0;
    return LM_E_IO;
}

static int ep_conn_shutdown(struct broker_shard *s, struct broker_conn *c)
{
    if (c->epoll_in_set && epoll_ctl(st(s)->epfd, EPOLL_CTL_DEL, c->fd, NULL) != 0)
        BLOG_WARN("epoll_ctl(del conn %u): %s", c->slot, strerror(errno));
    c->epoll_in_set = false;
    c->connecting = false;
    close(c->fd);
    c->fd = -1;
    return 1;
}

static void ep_wake(struct broker_shard *s, struct broker_shard *to)
{
    (void)s;
    uint64_t one = 1;
    ssize_t w = write(to->event_fd, &one, sizeof(one));
    LM_ASSERT(w == sizeof(one) || errno == EAGAIN);
}

static void on_listener(struct broker_shard *s, uint32_t i)
{
    for (int k = 0; k < ACCEPTS_PER_EVENT && s->listening && !s->accept_paused; k++) {
        int fd = accept4(s->listen_fds[i], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            broker_core_on_accept_error(s, errno); /* may pause accepting */
            return;
        }
        broker_core_on_accept(s, i, fd);
    }
}

static void on_conn(struct broker_shard *s, uint64_t ud, uint32_t events)
{
    uint32_t slot = broker_ud_slot(ud), gen = broker_ud_gen(ud);
    struct broker_conn *c = broker_core_conn(s, slot, gen);
    if (c == NULL || c->closing)
        return;
    if (c->connecting) {
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
            err = errno;
        c->connecting = false;
        broker_core_on_connected(s, c, -err); /* may close c */
        return;
    }
    if ((events & EPOLLOUT) && c->epoll_out) {
        c->epoll_out = false;
        if (conn_interest(s, c, EPOLL_CTL_MOD) != 0) {
            broker_core_on_eof(s, c, -EIO);
            return;
        }
        /* The core resumes from its cursor (memory or file part). */
        broker_core_on_sent(s, c, 0);
        if ((c = broker_core_conn(s, slot, gen)) == NULL || c->closing)
            return;
    }
    if ((events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) && !broker_core_conn_wants_data(c)) {
        /* Not reading (paused): the peer's close would otherwise go unseen. */
        if (events & EPOLLERR) {
            broker_core_on_eof(s, c, -ECONNRESET);
            return;
        }
        if (c->peer_fin)
            return;
        /* A FIN: what came before it may be whole requests, to be served. Read it all into the
         * core (it stashes; bounded by the socket's receive buffer), then tell the core. */
        for (;;) {
            ssize_t n = recv(c->fd, s->scratch, s->scratch_len, MSG_DONTWAIT);
            if (n > 0) {
                broker_core_on_data(s, c, s->scratch, (size_t)n);
                if ((c = broker_core_conn(s, slot, gen)) == NULL || c->closing)
                    return;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
                broker_core_on_eof(s, c, -errno);
                return;
            }
            break;
        }
        broker_core_on_peer_fin(s, c);
        if ((c = broker_core_conn(s, slot, gen)) != NULL && !c->closing &&
            conn_interest(s, c, EPOLL_CTL_MOD) != 0) /* no more RDHUP: it stays signalled */
            broker_core_on_eof(s, c, -EIO);
        return;
    }
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    for (int k = 0; k < READS_PER_EVENT; k++) {
        if (!broker_core_conn_wants_data(c))
            return;
        ssize_t n = recv(c->fd, s->scratch, s->scratch_len, MSG_DONTWAIT);
        if (n > 0) {
            broker_core_on_data(s, c, s->scratch, (size_t)n);
            if ((c = broker_core_conn(s, slot, gen)) == NULL)
                return;
            if ((size_t)n < s->scratch_len)
                return;
        } else if (n == 0) {
            broker_core_on_eof(s, c, 0);
            return;
        } else {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                broker_core_on_eof(s, c, -errno);
            return;
        }
    }
}

static int ep_udp_open(struct broker_shard *s, struct broker_udp *u)
{
    struct epoll_event ev = {.events = EPOLLIN,
                             .data.u64 = broker_ud(BROKER_OP_UDP, u->index, u->gen)};
    if (epoll_ctl(st(s)->epfd, EPOLL_CTL_ADD, u->fd, &ev) != 0) {
        BLOG_ERROR("epoll_ctl(udp): %s", strerror(errno));
        return LM_E_IO;
    }
    return 0;
}

static int ep_udp_close(struct broker_shard *s, struct broker_udp *u)
{
    if (epoll_ctl(st(s)->epfd, EPOLL_CTL_DEL, u->fd, NULL) != 0)
        BLOG_WARN("epoll_ctl(del udp): %s", strerror(errno));
    return 1;
}

/* A readable UDP socket: datagrams until EAGAIN, bounded per event (level-triggered: the rest
 * comes next turn). The scratch buffer holds the largest datagram. */
static void on_udp(struct broker_shard *s, uint64_t ud)
{
    uint32_t index = broker_ud_slot(ud), gen = broker_ud_gen(ud);
    struct broker_udp *u = broker_core_udp(s, index, gen);
    LM_ASSERT(s->scratch_len > BROKER_UDP_DATAGRAM_MAX);
    for (int k = 0; u != NULL && !u->closing && k < UDP_RECVS_PER_EVENT; k++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(u->fd, s->scratch, s->scratch_len, MSG_DONTWAIT,
                             (struct sockaddr *)&from, &fl);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                BLOG_WARN_LIMITED("udp %u: receive: %s", index, strerror(errno));
            return;
        }
        broker_core_on_udp(s, u, s->scratch, (size_t)n, (struct sockaddr *)&from, fl);
        u = broker_core_udp(s, index, gen);
    }
}

static int ep_wait(struct broker_shard *s, int timeout_ms)
{
    struct epoll_state *e = st(s);
    uint64_t t0 = shard_idle_begin(s);
    int n = epoll_wait(e->epfd, e->events, EVENTS_MAX, timeout_ms);
    shard_idle_end(s, t0, 0, n > 0 ? (uint64_t)n : 0);
    if (n < 0) {
        if (errno == EINTR)
            return 0;
        BLOG_ERROR("epoll_wait: %s", strerror(errno));
        return LM_E_IO;
    }
    for (int i = 0; i < n; i++) {
        uint64_t ud = e->events[i].data.u64;
        switch (broker_ud_op(ud)) {
        case BROKER_OP_ACCEPT:
            on_listener(s, broker_ud_slot(ud));
            break;
        case BROKER_OP_CONN:
            on_conn(s, ud, e->events[i].events);
            break;
        case BROKER_OP_UDP:
            on_udp(s, ud);
            break;
        case BROKER_OP_WAKE_READ: {
            uint64_t v;
            ssize_t r = read(s->event_fd, &v, sizeof(v));
            (void)r; /* the count does not matter, only that we woke */
            broker_core_on_wake(s);
            break;
        }
        default:
            LM_UNREACHABLE();
        }
    }
    return 0;
}

const struct broker_io_ops broker_io_epoll_ops = {
    .name = "epoll",
    .init = ep_init,
    .deinit = ep_deinit,
    .listen_start = ep_listen_start,
    .listen_stop = ep_listen_stop,
    .accept_pause = ep_accept_pause,
    .accept_resume = ep_accept_resume,
    .conn_open = ep_conn_open,
    .conn_connect = ep_conn_connect,
    .udp_open = ep_udp_open,
    .udp_close = ep_udp_close,
    .recv_pause = ep_recv_pause,
    .recv_resume = ep_recv_resume,
    .send = ep_send,
    .send_file = ep_send_file,
    .conn_shutdown = ep_conn_shutdown,
    .fsync = NULL, /* the core's sync worker thread */
    .wake = ep_wake,
    .wait = ep_wait,
};
