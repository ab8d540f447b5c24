/* io_uring backend (DESIGN.md §2): one ring per shard, created on the shard's thread with
 * SINGLE_ISSUER and DEFER_TASKRUN when the kernel has them; multishot accept; multishot recv
 * into a provided buffer ring; one send (sendmsg) in flight per connection; cross-shard wakeups
 * by IORING_OP_MSG_RING, or an eventfd read when MSG_RING is missing. Every feature falls back
 * on its own: without multishot accept, accepts are re-armed one by one. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/shard_internal.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

enum {
    RING_ENTRIES = 1024,
    CQ_ENTRIES = 16384,
    BUF_COUNT = 256,   /* provided buffers per shard (power of two) */
    BUF_BYTES = 16384, /* each */
    BUF_GROUP = 0,
    CQE_BATCH_MAX = 4096, /* completions handled per loop turn */
    /* UDP: multishot recvmsg writes a header, the source address and the datagram into one
     * provided buffer of its own group (made on the first UDP socket of the shard) */
    UDP_BUF_COUNT = 16,
    UDP_BUF_BYTES = 65536 + 256,
    UDP_BUF_GROUP = 1,
    UDP_RECVS_PER_POLL = 64, /* poll fallback: datagrams read per readiness */
};

struct uring_state {
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    uint8_t *bufs;
    bool have_msg_ring;
    bool have_multishot_accept;
    bool accept_armed[BROKER_LISTENERS_MAX];
    uint64_t wake_buf;
    bool wake_armed;
    unsigned setup_flags;
    /* UDP receive buffers (UDP_BUF_GROUP), or a poll + recvfrom fallback for kernels without
     * multishot recvmsg (before 6.0) */
    struct io_uring_buf_ring *udp_br;
    uint8_t *udp_bufs;
    bool udp_poll_only;
    uint8_t *udp_scratch;
};

static struct uring_state *st(struct broker_shard *s)
{
    return s->io_state;
}

static struct io_uring_sqe *get_sqe(struct broker_shard *s)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&st(s)->ring);
    if (sqe == NULL) {
        /* SQ full: hand the batch to the kernel and take a fresh slot. */
        int rc = io_uring_submit(&st(s)->ring);
        if (rc < 0)
            BLOG_ERROR("io_uring_submit: %s", strerror(-rc));
        sqe = io_uring_get_sqe(&st(s)->ring);
    }
    LM_ASSERT(sqe != NULL);
    return sqe;
}

bool broker_io_uring_available(char *why, size_t why_len)
{
    struct io_uring ring;
    int rc = io_uring_queue_init(8, &ring, 0);
    if (rc < 0) {
        snprintf(why, why_len, "io_uring_setup: %s", strerror(-rc));
        return false;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&ring);
    bool ok = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_RECV) &&
              io_uring_opcode_supported(probe, IORING_OP_SENDMSG) &&
              io_uring_opcode_supported(probe, IORING_OP_ACCEPT) &&
              io_uring_opcode_supported(probe, IORING_OP_ASYNC_CANCEL);
    if (!ok)
        snprintf(why, why_len, "io_uring lacks recv/sendmsg/accept/cancel");
    if (probe)
        io_uring_free_probe(probe);
    /* Provided buffer rings (5.19) carry multishot recv; test that registration works. */
    if (ok) {
        size_t sz = sizeof(struct io_uring_buf) * 8;
        void *mem = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
        struct io_uring_buf_reg reg = {
            .ring_addr = (unsigned long)mem, .ring_entries = 8, .bgid = 7};
        if (mem == MAP_FAILED || io_uring_register_buf_ring(&ring, &reg, 0) != 0) {
            snprintf(why, why_len, "io_uring lacks provided buffer rings");
            ok = false;
        } else {
            io_uring_unregister_buf_ring(&ring, 7);
        }
        if (mem != MAP_FAILED)
            munmap(mem, sz);
    }
    io_uring_queue_exit(&ring);
    return ok;
}

static int ring_setup(struct broker_shard *s, struct uring_state *u)
{
    /* Try the best flags first and drop them one at a time (per-feature fallback). */
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_CQSIZE,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_CQSIZE,
        IORING_SETUP_CQSIZE,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < LM_ARRAY_LEN(flag_sets); i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof(p));
        p.flags = flag_sets[i];
        p.cq_entries = CQ_ENTRIES;
        rc = io_uring_queue_init_params(RING_ENTRIES, &u->ring, &p);
        if (rc == 0) {
            u->setup_flags = flag_sets[i];
            break;
        }
    }
    if (rc != 0) {
        BLOG_ERROR("io_uring: cannot create ring: %s", strerror(-rc));
        return LM_E_IO;
    }
    struct io_uring_probe *probe = io_uring_get_probe_ring(&u->ring);
    u->have_msg_ring = probe != NULL && io_uring_opcode_supported(probe, IORING_OP_MSG_RING);
    if (probe)
        io_uring_free_probe(probe);
    /* Multishot accept arrived in 5.19, as did provided buffer rings, which we need anyway. */
    u->have_multishot_accept = true;
    BLOG_INFO("io_uring: ring ready (single_issuer=%d defer_taskrun=%d msg_ring=%d)",
              !!(u->setup_flags & IORING_SETUP_SINGLE_ISSUER),
              !!(u->setup_flags & IORING_SETUP_DEFER_TASKRUN), u->have_msg_ring);
    (void)s;
    return 0;
}

static void buf_return(struct uring_state *u, uint16_t bid)
{
    io_uring_buf_ring_add(u->br, u->bufs + (size_t)bid * BUF_BYTES, BUF_BYTES, bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(u->br, 1);
}

static void arm_wake_read(struct broker_shard *s)
{
    struct uring_state *u = st(s);
    if (u->wake_armed)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_read(sqe, s->event_fd, &u->wake_buf, sizeof(u->wake_buf), 0);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_WAKE_READ, 0, 0));
    u->wake_armed = true;
}

static int uring_init(struct broker_shard *s)
{
    struct uring_state *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return LM_E_NOMEM;
    s->io_state = u;
    if (ring_setup(s, u) != 0) {
        free(u);
        s->io_state = NULL;
        return LM_E_IO;
    }
    size_t ring_bytes = sizeof(struct io_uring_buf) * BUF_COUNT;
    void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    u->bufs = malloc((size_t)BUF_COUNT * BUF_BYTES);
    if (mem == MAP_FAILED || u->bufs == NULL) {
        if (mem != MAP_FAILED)
            munmap(mem, ring_bytes);
        free(u->bufs);
        io_uring_queue_exit(&u->ring);
        free(u);
        s->io_state = NULL;
        return LM_E_NOMEM;
    }
    u->br = mem;
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)mem, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    int rc = io_uring_register_buf_ring(&u->ring, &reg, 0);
    if (rc != 0) {
        BLOG_ERROR("io_uring: cannot register buffer ring: %s", strerror(-rc));
        munmap(mem, ring_bytes);
        free(u->bufs);
        io_uring_queue_exit(&u->ring);
        free(u);
        s->io_state = NULL;
        return LM_E_IO;
    }
    io_uring_buf_ring_init(u->br);
    for (uint16_t i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(u->br, u->bufs + (size_t)i * BUF_BYTES, BUF_BYTES, i,
                              io_uring_buf_ring_mask(BUF_COUNT), i);
    io_uring_buf_ring_advance(u->br, BUF_COUNT);
    arm_wake_read(s);
    return 0;
}

static void uring_deinit(struct broker_shard *s)
{
    struct uring_state *u = st(s);
    if (u == NULL)
        return;
    io_uring_unregister_buf_ring(&u->ring, BUF_GROUP);
    munmap(u->br, sizeof(struct io_uring_buf) * BUF_COUNT);
    free(u->bufs);
    if (u->udp_br != NULL) {
        io_uring_unregister_buf_ring(&u->ring, UDP_BUF_GROUP);
        munmap(u->udp_br, sizeof(struct io_uring_buf) * UDP_BUF_COUNT);
    }
    free(u->udp_bufs);
    free(u->udp_scratch);
    io_uring_queue_exit(&u->ring);
    free(u);
    s->io_state = NULL;
}

static void arm_accept(struct broker_shard *s, uint32_t i)
{
    struct uring_state *u = st(s);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (u->have_multishot_accept)
        io_uring_prep_multishot_accept(sqe, s->listen_fds[i], NULL, NULL, 0);
    else
        io_uring_prep_accept(sqe, s->listen_fds[i], NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_ACCEPT, i, 0));
    u->accept_armed[i] = true;
}

static int uring_listen_start(struct broker_shard *s)
{
    for (uint32_t i = 0; i < s->listen_count; i++)
        arm_accept(s, i);
    s->listening = true;
    return 0;
}

static void cancel_accepts(struct broker_shard *s)
{
    struct uring_state *u = st(s);
    for (uint32_t i = 0; i < s->listen_count; i++) {
        if (u->accept_armed[i]) {
            struct io_uring_sqe *sqe = get_sqe(s);
            io_uring_prep_cancel64(sqe, broker_ud(BROKER_OP_ACCEPT, i, 0), 0);
            io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_CANCEL, 0, 0));
        }
    }
}

static void uring_listen_stop(struct broker_shard *s)
{
    s->listening = false;
    cancel_accepts(s);
}

/* The multishot accept is cancelled; connections it already took still complete (the core
 * holds or admits them). Its final CQE re-arms only when accepting resumed meanwhile. */
static void uring_accept_pause(struct broker_shard *s)
{
    cancel_accepts(s);
}

static void uring_accept_resume(struct broker_shard *s)
{
    for (uint32_t i = 0; i < s->listen_count; i++)
        if (!st(s)->accept_armed[i])
            arm_accept(s, i);
}

static void arm_recv(struct broker_shard *s, struct broker_conn *c)
{
    LM_ASSERT(!c->recv_armed);
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_RECV, c->slot, c->gen));
    c->recv_armed = true;
    c->recv_cancel_sent = false;
}

static void cancel_op(struct broker_shard *s, enum broker_op op, struct broker_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_cancel64(sqe, broker_ud(op, c->slot, c->gen), 0);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_CANCEL, 0, 0));
}

static int uring_conn_open(struct broker_shard *s, struct broker_conn *c)
{
    arm_recv(s, c);
    return 0;
}

/* A paused connection is not read, so its EOF would go unseen: a one-shot poll for POLLRDHUP
 * (POLLHUP and POLLERR come anyway) tells the core when the client goes away meanwhile. */
static void arm_hup_poll(struct broker_shard *s, struct broker_conn *c)
{
    if (c->hup_armed)
        return;
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_poll_add(sqe, c->fd, POLLRDHUP);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_HUP_POLL, c->slot, c->gen));
    c->hup_armed = true;
    c->hup_cancel_sent = false;
}

static void uring_recv_pause(struct broker_shard *s, struct broker_conn *c)
{
    if (c->recv_armed && !c->recv_cancel_sent) {
        cancel_op(s, BROKER_OP_RECV, c);
        c->recv_cancel_sent = true;
    }
    if (!c->closing && !c->peer_fin)
        arm_hup_poll(s, c);
}

static void uring_recv_resume(struct broker_shard *s, struct broker_conn *c)
{
    /* If a cancel is still on its way, the final CQE re-arms (see on_recv). */
    if (!c->recv_armed)
        arm_recv(s, c);
}

static int uring_send(struct broker_shard *s, struct broker_conn *c)
{
    LM_ASSERT(!c->send_busy && c->iovcnt > 0);
    memset(&c->msg, 0, sizeof(c->msg));
    c->msg.msg_iov = c->iov;
    c->msg.msg_iovlen = (size_t)c->iovcnt;
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_SEND, c->slot, c->gen));
    c->send_busy = true;
    c->send_cancel_sent = false;
    return LM_E_AGAIN;
}

enum { PIPE_BYTES = 1 << 20 }; /* splice chunk: the pipe's capacity, when the kernel agrees */

/* File parts of a response go file -> pipe -> socket with IORING_OP_SPLICE (DESIGN.md §2: no
 * copy through user space): phase 1 splices up to the pipe's capacity from the file, phase 2
 * drains the pipe into the socket; the core sees bytes only when they reach the socket. Bytes
 * still in the pipe (a short phase 2) go first on the next call. */
static void submit_splice(struct broker_shard *s, struct broker_conn *c, int in, int64_t in_off,
                          int out, size_t n, uint8_t phase)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_splice(sqe, in, in_off, out, -1, (unsigned)n, 0);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_SEND, c->slot, c->gen));
    c->splice_phase = phase;
    c->send_busy = true;
    c->send_cancel_sent = false;
}

static int uring_send_file(struct broker_shard *s, struct broker_conn *c, int fd, uint64_t offset,
                           size_t len)
{
    LM_ASSERT(!c->send_busy && len > 0);
    if (c->pipe_r < 0) {
        int p[2];
        if (pipe2(p, O_CLOEXEC) != 0) {
            BLOG_ERROR("conn %u: pipe for splice: %s", c->slot, strerror(errno));
            return LM_E_IO;
        }
        c->pipe_r = p[0];
        c->pipe_w = p[1];
        int cap = fcntl(c->pipe_w, F_SETPIPE_SZ, PIPE_BYTES);
        if (cap <= 0)
            cap = fcntl(c->pipe_w, F_GETPIPE_SZ);
        c->pipe_cap = cap > 0 ? (size_t)cap : 65536;
        c->pipe_bytes = 0;
    }
    if (c->pipe_bytes > 0) {
        LM_ASSERT(c->pipe_bytes <= len);
        submit_splice(s, c, c->pipe_r, -1, c->fd, c->pipe_bytes, 2);
    } else {
        size_t n = len < c->pipe_cap ? len : c->pipe_cap;
        submit_splice(s, c, fd, (int64_t)offset, c->pipe_w, n, 1);
    }
    return LM_E_AGAIN;
}

static void close_pipe(struct broker_conn *c)
{
    if (c->pipe_r >= 0) {
        close(c->pipe_r);
        close(c->pipe_w);
        c->pipe_r = c->pipe_w = -1;
    }
    c->pipe_bytes = 0;
}

static void maybe_io_closed(struct broker_shard *s, struct broker_conn *c)
{
    if (c->closing && !c->recv_armed && !c->send_busy && !c->hup_armed && !c->connecting &&
        !c->io_closed) {
        close_pipe(c);
        close(c->fd);
        c->fd = -1;
        broker_core_on_io_closed(s, c);
    }
}

static int uring_conn_shutdown(struct broker_shard *s, struct broker_conn *c)
{
    if (c->recv_armed && !c->recv_cancel_sent) {
        cancel_op(s, BROKER_OP_RECV, c);
        c->recv_cancel_sent = true;
    }
    if (c->send_busy && !c->send_cancel_sent) {
        cancel_op(s, BROKER_OP_SEND, c);
        c->send_cancel_sent = true;
    }
    if (c->hup_armed && !c->hup_cancel_sent) {
        cancel_op(s, BROKER_OP_HUP_POLL, c);
        c->hup_cancel_sent = true;
    }
    if (c->connecting && !c->connect_cancel_sent) {
        cancel_op(s, BROKER_OP_CONNECT, c);
        c->connect_cancel_sent = true;
    }
    if (!c->recv_armed && !c->send_busy && !c->hup_armed && !c->connecting) {
        close_pipe(c);
        close(c->fd);
        c->fd = -1;
        return 1;
    }
    return 0;
}

/* Outbound connections: IORING_OP_CONNECT (the kernel copies addr when the SQE is submitted;
 * the core keeps it until the completion anyway). */
static int uring_conn_connect(struct broker_shard *s, struct broker_conn *c,
                              const struct sockaddr *addr, socklen_t addr_len)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_connect(sqe, c->fd, addr, addr_len);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_CONNECT, c->slot, c->gen));
    c->connecting = true;
    c->connect_cancel_sent = false;
    return 0;
}

static void on_connect(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    struct broker_conn *c =
        broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    if (c == NULL)
        return;
    LM_ASSERT(c->connecting);
    c->connecting = false;
    if (!c->closing)
        broker_core_on_connected(s, c, cqe->res == -ECANCELED ? -ETIMEDOUT : cqe->res);
    c = broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    if (c != NULL)
        maybe_io_closed(s, c);
}

/* ---- UDP --------------------------------------------------------------------------------- */

static int udp_bufs_setup(struct broker_shard *s)
{
    struct uring_state *u = st(s);
    if (u->udp_br != NULL || u->udp_poll_only)
        return 0;
    size_t ring_bytes = sizeof(struct io_uring_buf) * UDP_BUF_COUNT;
    void *mem = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    uint8_t *bufs = malloc((size_t)UDP_BUF_COUNT * UDP_BUF_BYTES);
    struct io_uring_buf_reg reg = {
        .ring_addr = (unsigned long)mem, .ring_entries = UDP_BUF_COUNT, .bgid = UDP_BUF_GROUP};
    if (mem == MAP_FAILED || bufs == NULL || io_uring_register_buf_ring(&u->ring, &reg, 0) != 0) {
        if (mem != MAP_FAILED)
            munmap(mem, ring_bytes);
        free(bufs);
        return LM_E_NOMEM;
    }
    u->udp_br = mem;
    u->udp_bufs = bufs;
    io_uring_buf_ring_init(u->udp_br);
    for (uint16_t i = 0; i < UDP_BUF_COUNT; i++)
        io_uring_buf_ring_add(u->udp_br, bufs + (size_t)i * UDP_BUF_BYTES, UDP_BUF_BYTES, i,
                              io_uring_buf_ring_mask(UDP_BUF_COUNT), i);
    io_uring_buf_ring_advance(u->udp_br, UDP_BUF_COUNT);
    return 0;
}

static void udp_buf_return(struct uring_state *u, uint16_t bid)
{
    io_uring_buf_ring_add(u->udp_br, u->udp_bufs + (size_t)bid * UDP_BUF_BYTES, UDP_BUF_BYTES, bid,
                          io_uring_buf_ring_mask(UDP_BUF_COUNT), 0);
    io_uring_buf_ring_advance(u->udp_br, 1);
}

static void udp_arm(struct broker_shard *s, struct broker_udp *ud)
{
    LM_ASSERT(!ud->recv_armed);
    struct io_uring_sqe *sqe = get_sqe(s);
    if (st(s)->udp_poll_only) {
        io_uring_prep_poll_add(sqe, ud->fd, POLLIN);
    } else {
        memset(&ud->msg, 0, sizeof(ud->msg));
        ud->msg.msg_namelen = sizeof(struct sockaddr_storage);
        io_uring_prep_recvmsg_multishot(sqe, ud->fd, &ud->msg, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = UDP_BUF_GROUP;
    }
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_UDP, ud->index, ud->gen));
    ud->recv_armed = true;
    ud->recv_cancel_sent = false;
}

static int uring_udp_open(struct broker_shard *s, struct broker_udp *ud)
{
    int rc = udp_bufs_setup(s);
    if (rc != 0)
        return rc;
    udp_arm(s, ud);
    return 0;
}

static int uring_udp_close(struct broker_shard *s, struct broker_udp *ud)
{
    if (!ud->recv_armed)
        return 1;
    if (!ud->recv_cancel_sent) {
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_cancel64(sqe, broker_ud(BROKER_OP_UDP, ud->index, ud->gen), 0);
        io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_CANCEL, 0, 0));
        ud->recv_cancel_sent = true;
    }
    return 0;
}

/* Poll fallback: the socket is readable; read what is queued, bounded per turn. */
static void udp_read_polled(struct broker_shard *s, struct broker_udp *ud)
{
    struct uring_state *u = st(s);
    if (u->udp_scratch == NULL && (u->udp_scratch = malloc(BROKER_UDP_DATAGRAM_MAX + 1)) == NULL)
        return;
    uint32_t index = ud->index, gen = ud->gen;
    for (int i = 0; i < UDP_RECVS_PER_POLL; i++) {
        struct sockaddr_storage from;
        socklen_t fl = sizeof(from);
        ssize_t n = recvfrom(ud->fd, u->udp_scratch, BROKER_UDP_DATAGRAM_MAX + 1, MSG_DONTWAIT,
                             (struct sockaddr *)&from, &fl);
        if (n < 0)
            return;
        broker_core_on_udp(s, ud, u->udp_scratch, (size_t)n, (struct sockaddr *)&from, fl);
        if ((ud = broker_core_udp(s, index, gen)) == NULL || ud->closing)
            return;
    }
}

static void on_udp(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    struct uring_state *u = st(s);
    struct broker_udp *ud =
        broker_core_udp(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        LM_ASSERT(bid < UDP_BUF_COUNT);
        uint8_t *buf = u->udp_bufs + (size_t)bid * UDP_BUF_BYTES;
        struct io_uring_recvmsg_out *o =
            ud != NULL && cqe->res > 0 ? io_uring_recvmsg_validate(buf, cqe->res, &ud->msg) : NULL;
        if (o != NULL && (o->flags & MSG_TRUNC) != 0) {
            BLOG_WARN_LIMITED("udp %u: datagram over %u bytes dropped", ud->index,
                              (unsigned)(UDP_BUF_BYTES - 256));
        } else if (o != NULL) {
            socklen_t nl = o->namelen < ud->msg.msg_namelen ? o->namelen : ud->msg.msg_namelen;
            broker_core_on_udp(s, ud, io_uring_recvmsg_payload(o, &ud->msg),
                               io_uring_recvmsg_payload_length(o, cqe->res, &ud->msg),
                               io_uring_recvmsg_name(o), nl);
        }
        udp_buf_return(u, bid);
        ud = broker_core_udp(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    }
    if (ud == NULL)
        return;
    if (u->udp_poll_only && cqe->res > 0 && !ud->closing) {
        udp_read_polled(s, ud);
        ud = broker_core_udp(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
        if (ud == NULL)
            return;
    }
    if (more)
        return;
    ud->recv_armed = false;
    if (ud->closing) {
        broker_core_on_udp_closed(s, ud);
        return;
    }
    if (cqe->res == -EINVAL && !u->udp_poll_only) {
        /* multishot recvmsg arrived in 6.0: poll + recvfrom instead */
        BLOG_WARN("io_uring: no multishot recvmsg; UDP sockets use poll + recvfrom");
        u->udp_poll_only = true;
    } else if (cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED &&
               cqe->res != -EINTR) {
        BLOG_WARN_LIMITED("udp %u: receive: %s", ud->index, strerror(-cqe->res));
    }
    udp_arm(s, ud); /* multishot ended (buffers ran out, an error) or the one-shot poll fired */
}

static void uring_wake(struct broker_shard *s, struct broker_shard *to)
{
    if (s != NULL && st(s)->have_msg_ring && st(to) != NULL) {
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_msg_ring(sqe, st(to)->ring.ring_fd, 0, broker_ud(BROKER_OP_WAKE_MSG, 0, 0),
                               0);
        io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_MSG_RING, to->id, 0));
        return;
    }
    uint64_t one = 1;
    ssize_t w = write(to->event_fd, &one, sizeof(one));
    LM_ASSERT(w == sizeof(one) || errno == EAGAIN);
}

static int uring_fsync(struct broker_shard *s, struct broker_fsync *f)
{
    struct io_uring_sqe *sqe = get_sqe(s);
    io_uring_prep_fsync(sqe, f->fd, f->datasync ? IORING_FSYNC_DATASYNC : 0);
    io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_FSYNC, f->slot_, 0));
    return 0;
}

static void on_accept(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    struct uring_state *u = st(s);
    uint32_t i = broker_ud_slot(cqe->user_data);
    LM_ASSERT(i < s->listen_count);
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (!more)
        u->accept_armed[i] = false;
    if (cqe->res >= 0)
        broker_core_on_accept(s, i, cqe->res);
    else if (cqe->res != -ECANCELED)
        broker_core_on_accept_error(s, -cqe->res); /* may pause accepting */
    if (!more && s->listening && !s->accept_paused && !u->accept_armed[i])
        arm_accept(s, i);
}

/* The peer of paused c sent FIN and no recv is armed: read what it sent before (bounded by the
 * socket's receive buffer; the peer sends no more) into the core, which stashes it, then tell
 * the core. A synchronous recv: this happens once per connection at most. */
static void drain_after_fin(struct broker_shard *s, struct broker_conn *c)
{
    uint32_t slot = c->slot, gen = c->gen;
    uint8_t buf[BUF_BYTES];
    for (;;) {
        ssize_t n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n > 0) {
            broker_core_on_data(s, c, buf, (size_t)n);
            if ((c = broker_core_conn(s, slot, gen)) == NULL || c->closing)
                return;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            broker_core_on_eof(s, c, -errno); /* may free c */
            return;
        }
        break; /* 0: the end; EAGAIN: nothing more queued */
    }
    broker_core_on_peer_fin(s, c); /* may free c */
}

static void on_hup_poll(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    struct broker_conn *c =
        broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    if (c == NULL)
        return;
    c->hup_armed = false;
    bool hup = cqe->res > 0 && (cqe->res & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
    if (hup && !c->closing && c->paused && !c->peer_fin) {
        if (cqe->res & POLLERR) {
            broker_core_on_eof(s, c, -ECONNRESET); /* may free c */
            return;
        }
        /* A FIN: what came before it may be whole requests, to be served. */
        if (c->recv_armed)
            c->fin_seen = true; /* the recv's cancel is on its way: drain after it (on_recv) */
        else
            drain_after_fin(s, c); /* may free c */
        return;
    }
    /* Not paused any more: the recv sees the end itself. */
    maybe_io_closed(s, c);
}

static void on_recv(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    struct uring_state *u = st(s);
    struct broker_conn *c =
        broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    bool more = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        LM_ASSERT(bid < BUF_COUNT);
        if (c != NULL && cqe->res > 0)
            broker_core_on_data(s, c, u->bufs + (size_t)bid * BUF_BYTES, (size_t)cqe->res);
        buf_return(u, bid); /* copied out: give it back at once */
    }
    if (c == NULL)
        return; /* freed while this completion was queued */
    /* c may have been closed (not freed: the recv keeps it) by the data. */
    if (!more)
        c->recv_armed = false;
    if (cqe->res == 0 && !c->closing) {
        if (c->paused)                     /* data before the end may wait in the stash */
            broker_core_on_peer_fin(s, c); /* may free c */
        else
            broker_core_on_eof(s, c, 0); /* may free c */
        return;
    }
    if (cqe->res < 0 && cqe->res != -ECANCELED && cqe->res != -ENOBUFS && !c->closing) {
        broker_core_on_eof(s, c, cqe->res); /* may free c */
        return;
    }
    if (!more && c->fin_seen && !c->closing && !c->peer_fin && c->paused) {
        c->fin_seen = false;
        drain_after_fin(s, c); /* may free c */
        return;
    }
    if (!more && broker_core_conn_wants_data(c))
        arm_recv(s, c); /* multishot ended (ENOBUFS, or a cancel that raced a resume) */
    maybe_io_closed(s, c);
}

static void on_send(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    struct broker_conn *c =
        broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    if (c == NULL)
        return;
    LM_ASSERT(c->send_busy);
    c->send_busy = false;
    int res = cqe->res;
    uint8_t phase = c->splice_phase;
    c->splice_phase = 0;
    if (phase == 1 && !c->closing) {
        /* file -> pipe done: now pipe -> socket (0 bytes: the file ended early). */
        if (res > 0) {
            c->pipe_bytes = (size_t)res;
            submit_splice(s, c, c->pipe_r, -1, c->fd, c->pipe_bytes, 2);
            return;
        }
        if (res == -EAGAIN || res == -EINTR) {
            broker_core_on_sent(s, c, 0); /* the core calls send_file again */
            c = broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
            if (c != NULL)
                maybe_io_closed(s, c);
            return;
        }
        if (res == 0)
            BLOG_WARN_LIMITED(BROKER_FILE_PART_CUT_FMT, c->slot);
        res = res < 0 ? res : -EIO;
    } else if (phase == 2 && res == -EAGAIN && !c->closing) {
        /* The socket is full (a slow reader: a follower on a loaded machine). A splice does
         * not wait for room the way a send does (the socket is O_NONBLOCK and the splice
         * is not polled by the ring): resubmitting at once spins the shard, starving the
         * very reader it waits for. Wait for POLLOUT, then drain the pipe again (phase 3). */
        struct io_uring_sqe *sqe = get_sqe(s);
        io_uring_prep_poll_add(sqe, c->fd, POLLOUT);
        io_uring_sqe_set_data64(sqe, broker_ud(BROKER_OP_SEND, c->slot, c->gen));
        c->splice_phase = 3;
        c->send_busy = true;
        c->send_cancel_sent = false;
        return;
    } else if (phase == 3 && res > 0 && !c->closing) {
        LM_ASSERT(c->pipe_bytes > 0);
        submit_splice(s, c, c->pipe_r, -1, c->fd, c->pipe_bytes, 2);
        return;
    } else if (phase == 3) {
        res = res < 0 ? res : -EIO; /* the poll failed or the connection is closing */
    } else if (phase == 2 && res > 0) {
        LM_ASSERT((size_t)res <= c->pipe_bytes);
        c->pipe_bytes -= (size_t)res;
    } else if (phase == 2 && res == 0) {
        res = -EPIPE;
    }
    if (phase != 0 && (res == -EAGAIN || res == -EINTR) && !c->closing) {
        broker_core_on_sent(s, c, 0); /* retried from the core's cursor */
        c = broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
        if (c != NULL)
            maybe_io_closed(s, c);
        return;
    }
    if (res == -EAGAIN || res == -EINTR) {
        if (!c->closing) {
            uring_send(s, c);
            return;
        }
    }
    /* on_sent may free c when closing and this was the last thing holding it */
    bool closing = c->closing;
    if (closing) {
        broker_core_on_sent(s, c, res < 0 ? res : -ECANCELED);
        /* still alive while recv is armed or the fd is open */
        c = broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
        if (c != NULL)
            maybe_io_closed(s, c);
        return;
    }
    broker_core_on_sent(s, c, res);
    c = broker_core_conn(s, broker_ud_slot(cqe->user_data), broker_ud_gen(cqe->user_data));
    if (c != NULL)
        maybe_io_closed(s, c);
}

static void handle_cqe(struct broker_shard *s, struct io_uring_cqe *cqe)
{
    switch (broker_ud_op(cqe->user_data)) {
    case BROKER_OP_ACCEPT:
        on_accept(s, cqe);
        break;
    case BROKER_OP_RECV:
        on_recv(s, cqe);
        break;
    case BROKER_OP_SEND:
        on_send(s, cqe);
        break;
    case BROKER_OP_WAKE_READ:
        st(s)->wake_armed = false;
        broker_core_on_wake(s);
        arm_wake_read(s);
        break;
    case BROKER_OP_WAKE_MSG:
        broker_core_on_wake(s);
        break;
    case BROKER_OP_MSG_RING:
        if (cqe->res < 0) {
            /* The target's CQ could not take it: fall back to its eventfd. */
            struct broker_shard *to = broker_rt_shard(s->rt, broker_ud_slot(cqe->user_data));
            uint64_t one = 1;
            ssize_t w = write(to->event_fd, &one, sizeof(one));
            LM_ASSERT(w == sizeof(one) || errno == EAGAIN);
        }
        break;
    case BROKER_OP_FSYNC:
        broker_core_on_fsync(s, broker_ud_slot(cqe->user_data), cqe->res);
        break;
    case BROKER_OP_HUP_POLL:
        on_hup_poll(s, cqe);
        break;
    case BROKER_OP_CONNECT:
        on_connect(s, cqe);
        break;
    case BROKER_OP_UDP:
        on_udp(s, cqe);
        break;
    case BROKER_OP_CANCEL:
    case BROKER_OP_NONE:
    case BROKER_OP_CONN:
        break;
    }
}

static int uring_wait(struct broker_shard *s, int timeout_ms)
{
    struct uring_state *u = st(s);
    struct io_uring_cqe *cqe = NULL;
    int rc;
    unsigned submitting = io_uring_sq_ready(&u->ring);
    uint64_t t0 = shard_idle_begin(s);
    if (timeout_ms == 0) {
        rc = io_uring_submit_and_get_events(&u->ring);
    } else {
        struct __kernel_timespec ts = {.tv_sec = timeout_ms / 1000,
                                       .tv_nsec = (long long)(timeout_ms % 1000) * 1000000};
        rc = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, timeout_ms < 0 ? NULL : &ts, NULL);
    }
    shard_idle_end(s, t0, submitting, io_uring_cq_ready(&u->ring));
    if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN) {
        BLOG_ERROR("io_uring wait: %s", strerror(-rc));
        return LM_E_IO;
    }
    /* One batch of completions per turn (liburing examples), bounded. */
    unsigned seen = 0;
    while (seen < CQE_BATCH_MAX && io_uring_peek_cqe(&u->ring, &cqe) == 0) {
        struct io_uring_cqe copy = *cqe;
        io_uring_cqe_seen(&u->ring, cqe);
        handle_cqe(s, &copy);
        seen++;
    }
    return 0;
}

const struct broker_io_ops broker_io_uring_ops = {
    .name = "io_uring",
    .init = uring_init,
    .deinit = uring_deinit,
    .listen_start = uring_listen_start,
    .listen_stop = uring_listen_stop,
    .accept_pause = uring_accept_pause,
    .accept_resume = uring_accept_resume,
    .conn_open = uring_conn_open,
    .conn_connect = uring_conn_connect,
    .udp_open = uring_udp_open,
    .udp_close = uring_udp_close,
    .recv_pause = uring_recv_pause,
    .recv_resume = uring_recv_resume,
    .send = uring_send,
    .send_file = uring_send_file,
    .conn_shutdown = uring_conn_shutdown,
    .fsync = uring_fsync,
    .wake = uring_wake,
    .wait = uring_wait,
};
