/* The simulated runtime: broker/runtime.h on a discrete-event scheduler (see sim_runtime.h).
 * Linked with lm_broker_handlers in place of lm_broker_rt; nothing here blocks or uses threads. */
#define _GNU_SOURCE
#include "tests/sim/cluster/sim_runtime.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/metrics.h"
#include "broker/reqhdr.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

/* The clocks start at fixed points so every run sees the same times. */
#define SIM_MONO_START_US   1000000000ull /* 1000 s after an arbitrary boot */
#define SIM_REALTIME_BASE_S 1767225600ull /* 2026-01-01T00:00:00Z */
#define SIM_EVENTS_MAX      (1u << 22)    /* a run that queues more has gone wrong */
#define SIM_QUIESCE_STEPS   100000u       /* node-local events run while a node crashes */

enum sim_ev_kind {
    EV_FN,
    EV_XCALL_RUN,
    EV_XCALL_DONE,
    EV_FSYNC,
    EV_META,
    EV_CONNECT,
    EV_C2S,
    EV_S2C,
    EV_CALL_FAIL,
    EV_CALL_TIMEOUT,
    EV_CONN_FAIL,
    EV_UDP,
    EV_SRV_RESUME,
};

static const char *const ev_names[] = {"fn",       "xcall", "xdone", "fsync",    "meta",
                                       "connect",  "req",   "resp",  "callfail", "timeout",
                                       "connfail", "udp",   "resume"};

struct sim_ev {
    uint64_t at_us;
    uint64_t seq;
    uint32_t heap_idx;
    enum sim_ev_kind kind;
    int32_t node; /* the node whose memory the event touches; -1: none */
    uint64_t gen; /* that node's life when scheduled: a later life drops the event */
    void (*fn)(void *arg);
    void *arg;
    struct broker_peer *peer; /* a reference counted in peer->refs */
    uint8_t *data;            /* frame or datagram, owned */
    size_t len;
    int32_t corr; /* EV_CALL_TIMEOUT: the call's correlation id */
    int rc;       /* EV_CONN_FAIL: the error */
    struct sockaddr_in from, to;
    uint32_t src_ep;
};

struct broker_shard {
    uint32_t node;
    struct broker_config *cfg;
    const struct broker_dispatch *d;
    void *user;
    bool draining;
    struct broker_timer **th; /* timer min-heap by deadline */
    uint32_t tn, tcap;
};

/* One connection: the client side (a shard's or a simulated client's broker_peer) and the
 * server side (the requests the server node holds, answered in order). */
struct broker_peer {
    uint32_t id;
    uint32_t src_ep;  /* node index or client endpoint */
    uint64_t src_gen; /* the owner node's life (0 for clients) */
    struct broker_shard *shard;
    int32_t dst_node; /* -1 when the address matched no node */
    uint64_t dst_gen; /* the server's life it connected to */
    uint8_t listener;
    struct broker_peer_opts opts;
    char client_id[33];
    int err; /* LM_E_* once failed */
    int sys_errno;
    bool connected;
    bool owner_closed;
    bool fail_scheduled;
    bool srv_broken; /* the server drops what it still answers */
    bool close_after_sent;
    struct broker_call *calls_head, *calls_tail; /* queued or in flight, in send order */
    struct broker_call *unsent;                  /* first call not transmitted yet */
    uint32_t count;
    int32_t next_corr;
    uint64_t last_c2s_us, last_s2c_us; /* TCP order: a frame never overtakes an earlier one */
    /* TCP retransmission across a cut link: the frame waiting for it arrives at held_*_us,
     * later frames after it; the retransmission timeout doubles while the link stays cut */
    uint64_t held_c2s_us, held_s2c_us;
    uint32_t rto_c2s_ms, rto_s2c_ms;
    struct broker_req *rq_head, *rq_tail;
    uint32_t srv_reqs; /* requests of this connection the server still holds */
    /* Frames the server has not read yet: like conn.c, it stops reading a connection while
     * laminar.connection.inflight.max of its requests are unanswered, and reads on (in order)
     * once one is answered. */
    struct sim_unread *unread_head, *unread_tail;
    bool resume_scheduled;
    uint32_t refs; /* events that name it */
    struct broker_conn_auth auth;
    struct broker_peer *prev_all, *next_all;
};

struct sim_unread {
    struct sim_unread *next;
    uint8_t *data; /* owned */
    size_t len;
};

struct broker_udp {
    uint32_t node;
    uint64_t gen;
    struct sockaddr_in addr;
    broker_udp_recv_fn recv;
    void *arg;
    struct broker_udp *next;
};

struct sim_node {
    bool added, up, quiescing;
    bool stopping; /* a clean stop: the node's own writes while it stops reach the disk */
    uint64_t gen;
    struct broker_config *cfg;
    int (*setup)(struct broker_dispatch *d, struct broker_config *cfg);
    struct broker_dispatch d;
    struct broker_shard *shard;
    struct broker_req *reqs; /* every live request of the node (freed at a crash) */
};

/* Private request state kept in broker_req's runtime fields: state_ and these. */
enum { REQ_PENDING = 1, REQ_DONE = 2 };
struct sim_req_ext {
    struct broker_req *all_prev, *all_next;
    uint8_t *resp;
    size_t resp_len;
    bool has_resp;
    uint8_t frame[];
};

/* A write not made durable yet: what undoes it (the bytes it overwrote, the size before). */
struct sim_wr {
    struct sim_wr *next;
    dev_t dev;
    ino_t ino;
    uint64_t off, len, old_size;
    uint8_t *old; /* old_len bytes the write overwrote */
    size_t old_len;
    bool doomed; /* an fsync of its file failed: no later fsync makes it durable */
    char path[PATH_MAX];
};

struct sim_world {
    bool active;
    uint64_t now_us;
    uint64_t seq;
    uint64_t rng[4];
    uint64_t hash;
    uint64_t events;
    bool print;
    struct sim_net_params net;
    bool cut[SIM_ENDPOINTS_MAX + SIM_NODES_MAX][SIM_ENDPOINTS_MAX + SIM_NODES_MAX];
    bool cut_repl[SIM_NODES_MAX][SIM_NODES_MAX]; /* sim_net_cut_replication */
    struct sim_ev **heap;
    uint32_t hn, hcap;
    struct sim_node nodes[SIM_NODES_MAX];
    struct broker_peer *peers;
    uint32_t peer_ids;
    struct broker_udp *udps;
    struct broker_req *graveyard; /* requests freed once the current event has returned */
    int32_t cur_node;
    struct sim_wr *unsynced[SIM_NODES_MAX]; /* newest first */
    uint64_t disk_lost_writes;
    uint64_t disk_writes; /* writes remembered until their sync */
    struct {
        void (*fn)(void *arg);
        void *arg;
    } on_write[SIM_NODES_MAX];
    struct {
        enum sim_disk_fault kind;
        uint64_t until_us;
    } dfault[SIM_NODES_MAX];
    uint64_t disk_faults; /* writes and syncs failed by a disk fault */
    /* broker_shard_meta_job: when each node's metadata worker is free again (modelled as one
     * thread, its jobs completing in order, each after the one before: a slower schedule than
     * the broker's four threads, whose jobs of different partitions complete in any order) */
    uint64_t meta_free_us[SIM_NODES_MAX];
    uint64_t meta_jobs, meta_jobs_kept; /* jobs run; of them run by a crash (kept, unanswered) */
};

static struct sim_world W;

/* ---- randomness, hashing -------------------------------------------------------------------- */

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

uint64_t sim_rand(void)
{
    /* xoshiro256** */
    uint64_t *s = W.rng;
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

uint64_t sim_rand_below(uint64_t n)
{
    LM_ASSERT(n > 0);
    return sim_rand() % n;
}

void sim_trace_add(const void *p, size_t n)
{
    const uint8_t *b = p;
    uint64_t h = W.hash;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    W.hash = h;
}

static void trace_u64(uint64_t v)
{
    sim_trace_add(&v, sizeof(v));
}

uint64_t sim_trace_hash(void)
{
    return W.hash;
}

uint64_t sim_events_run(void)
{
    return W.events;
}

void sim_trace_print(bool on)
{
    W.print = on;
}

uint64_t sim_now_us(void)
{
    return W.now_us;
}

/* ---- the process' clocks and randomness come from the world while it is active -------------- */

int clock_gettime(clockid_t id, struct timespec *ts)
{
    if (!W.active)
        return (int)syscall(SYS_clock_gettime, id, ts);
    uint64_t us = W.now_us;
    if (id == CLOCK_REALTIME || id == CLOCK_REALTIME_COARSE)
        us = us - SIM_MONO_START_US + SIM_REALTIME_BASE_S * 1000000ull;
    ts->tv_sec = (time_t)(us / 1000000u);
    ts->tv_nsec = (long)(us % 1000000u) * 1000;
    return 0;
}

ssize_t getrandom(void *buf, size_t len, unsigned int flags)
{
    if (!W.active)
        return syscall(SYS_getrandom, buf, len, flags);
    uint8_t *b = buf;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t r = sim_rand();
        memcpy(b + i, &r, len - i < 8 ? len - i : 8);
    }
    return (ssize_t)len;
}

uint64_t broker_now_us(void)
{
    if (!W.active) {
        struct timespec ts;
        syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
        return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
    }
    return W.now_us;
}

uint64_t broker_now_ms(void)
{
    return broker_now_us() / 1000u;
}

/* ---- the event heap ------------------------------------------------------------------------- */

static bool ev_less(const struct sim_ev *a, const struct sim_ev *b)
{
    return a->at_us != b->at_us ? a->at_us < b->at_us : a->seq < b->seq;
}

static void heap_set(uint32_t i, struct sim_ev *e)
{
    W.heap[i] = e;
    e->heap_idx = i;
}

static void heap_up(uint32_t i)
{
    struct sim_ev *e = W.heap[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!ev_less(e, W.heap[p]))
            break;
        heap_set(i, W.heap[p]);
        i = p;
    }
    heap_set(i, e);
}

static void heap_down(uint32_t i)
{
    struct sim_ev *e = W.heap[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        struct sim_ev *best = e;
        if (l < W.hn && ev_less(W.heap[l], best)) {
            m = l;
            best = W.heap[l];
        }
        if (l + 1 < W.hn && ev_less(W.heap[l + 1], best))
            m = l + 1;
        if (m == i)
            break;
        heap_set(i, W.heap[m]);
        i = m;
    }
    heap_set(i, e);
}

static void heap_remove(struct sim_ev *e)
{
    uint32_t i = e->heap_idx;
    LM_ASSERT(i < W.hn && W.heap[i] == e);
    W.hn--;
    if (i != W.hn) {
        heap_set(i, W.heap[W.hn]);
        heap_up(i);
        heap_down(W.heap[i]->heap_idx);
    }
    e->heap_idx = UINT32_MAX;
}

static struct sim_ev *ev_new(enum sim_ev_kind kind, uint64_t at_us, int32_t node)
{
    struct sim_ev *e = calloc(1, sizeof(*e));
    LM_ASSERT(e != NULL);
    LM_ASSERT(W.hn < SIM_EVENTS_MAX);
    e->kind = kind;
    e->at_us = at_us;
    e->seq = W.seq++;
    e->node = node;
    e->gen = node >= 0 ? W.nodes[node].gen : 0;
    if (W.hn == W.hcap) {
        W.hcap = W.hcap ? W.hcap * 2 : 1024;
        W.heap = realloc(W.heap, W.hcap * sizeof(*W.heap));
        LM_ASSERT(W.heap != NULL);
    }
    heap_set(W.hn++, e);
    heap_up(W.hn - 1);
    return e;
}

static void ev_set_peer(struct sim_ev *e, struct broker_peer *p)
{
    e->peer = p;
    p->refs++;
}

void sim_schedule(uint64_t delay_us, void (*fn)(void *arg), void *arg)
{
    struct sim_ev *e = ev_new(EV_FN, W.now_us + delay_us, -1);
    e->fn = fn;
    e->arg = arg;
}

/* A frame's or datagram's flight time. */
static uint64_t net_delay_us(void)
{
    const struct sim_net_params *n = &W.net;
    if (n->slow_pct > 0 && sim_rand_below(100) < n->slow_pct)
        return n->delay_min_us + sim_rand_below(n->slow_max_us + 1);
    return n->delay_min_us + sim_rand_below(n->delay_max_us - n->delay_min_us + 1);
}

/* ---- the network ---------------------------------------------------------------------------- */

void sim_net_cut(uint32_t a, uint32_t b, bool cut)
{
    LM_ASSERT(a < SIM_ENDPOINTS_MAX + SIM_NODES_MAX && b < SIM_ENDPOINTS_MAX + SIM_NODES_MAX);
    W.cut[a][b] = cut;
}

bool sim_net_is_cut(uint32_t a, uint32_t b)
{
    return W.cut[a][b];
}

void sim_net_cut_replication(uint32_t a, uint32_t b, bool cut)
{
    LM_ASSERT(a < SIM_NODES_MAX && b < SIM_NODES_MAX);
    W.cut_repl[a][b] = cut;
}

void sim_net_heal(void)
{
    memset(W.cut, 0, sizeof(W.cut));
    memset(W.cut_repl, 0, sizeof(W.cut_repl));
}

/* Whether frames of peer p from endpoint a to endpoint b are blocked. */
static bool peer_cut(const struct broker_peer *p, uint32_t a, uint32_t b)
{
    if (W.cut[a][b])
        return true;
    return a < SIM_NODES_MAX && b < SIM_NODES_MAX && W.cut_repl[a][b] &&
           p->opts.client_id != NULL && strcmp(p->client_id, "laminar-replica") == 0;
}

/* A request's simulation state lives behind a pointer kept in its (unused) output prefix. */
static struct sim_req_ext *req_ext(const struct broker_req *req)
{
    struct sim_req_ext *x;
    memcpy(&x, req->out_.prefix, sizeof(x));
    return x;
}

static struct broker_peer *req_peer(const struct broker_req *req)
{
    return (struct broker_peer *)(void *)req->conn;
}

static void unread_drop(struct broker_peer *p)
{
    while (p->unread_head != NULL) {
        struct sim_unread *u = p->unread_head;
        p->unread_head = u->next;
        free(u->data);
        free(u);
    }
    p->unread_tail = NULL;
}

static void peer_maybe_free(struct broker_peer *p)
{
    if (!p->owner_closed || p->calls_head != NULL || p->srv_reqs > 0 || p->refs > 0)
        return;
    unread_drop(p);
    if (p->prev_all != NULL)
        p->prev_all->next_all = p->next_all;
    else
        W.peers = p->next_all;
    if (p->next_all != NULL)
        p->next_all->prev_all = p->prev_all;
    free(p);
}

/* The connection fails: the server forgets it, the client's calls complete with rc after
 * delay_us (a reset is seen at once, a black hole at the request timeout). */
static void peer_fail(struct broker_peer *p, int rc, int sys_errno, uint64_t delay_us)
{
    p->srv_broken = true;
    if (p->err != 0 || p->fail_scheduled)
        return;
    p->fail_scheduled = true;
    struct sim_ev *e = ev_new(EV_CONN_FAIL, W.now_us + delay_us, -1);
    ev_set_peer(e, p);
    e->rc = rc;
    e->corr = sys_errno;
}

static void schedule_call_fail(struct broker_peer *p)
{
    if (p->calls_head == NULL)
        return;
    int32_t node = p->shard != NULL ? (int32_t)p->src_ep : -1;
    struct sim_ev *e = ev_new(EV_CALL_FAIL, W.now_us, node);
    e->gen = p->src_gen;
    ev_set_peer(e, p);
}

static bool endpoint_alive(uint32_t ep, uint64_t gen)
{
    if (ep >= SIM_NODES_MAX)
        return true;
    const struct sim_node *n = &W.nodes[ep];
    return (n->up || n->quiescing) && n->gen == gen;
}

static bool node_serving(int32_t node, uint64_t gen)
{
    return node >= 0 && W.nodes[node].up && W.nodes[node].gen == gen;
}

static int write_frame_part(uint8_t *out, const struct broker_resp_part *part)
{
    if (part->mem != NULL) {
        memcpy(out, part->mem, part->len);
        return 0;
    }
    size_t done = 0;
    while (done < part->len) {
        ssize_t n = pread(part->fd, out + done, part->len - done, (off_t)(part->offset + done));
        if (n <= 0)
            return LM_E_IO;
        done += (size_t)n;
    }
    return 0;
}

/* Sends one request frame of call c on p (header v1 or v2, then the body). */
static void transmit(struct broker_peer *p, struct broker_call *c)
{
    size_t cid = p->opts.client_id != NULL ? strlen(p->client_id) : 0;
    size_t body = 0;
    for (uint32_t i = 0; i < c->nparts; i++)
        body += c->parts[i].len;
    size_t hdr = 2 + 2 + 4 + 2 + cid + (c->flexible ? 1 : 0);
    uint8_t *f = malloc(hdr + body + 1);
    LM_ASSERT(f != NULL);
    f[0] = (uint8_t)((uint16_t)c->api_key >> 8);
    f[1] = (uint8_t)c->api_key;
    f[2] = (uint8_t)((uint16_t)c->api_version >> 8);
    f[3] = (uint8_t)c->api_version;
    uint32_t corr = (uint32_t)c->correlation_id_;
    f[4] = (uint8_t)(corr >> 24);
    f[5] = (uint8_t)(corr >> 16);
    f[6] = (uint8_t)(corr >> 8);
    f[7] = (uint8_t)corr;
    if (p->opts.client_id != NULL) {
        f[8] = (uint8_t)(cid >> 8);
        f[9] = (uint8_t)cid;
        memcpy(f + 10, p->client_id, cid);
    } else {
        f[8] = 0xff;
        f[9] = 0xff;
    }
    if (c->flexible)
        f[10 + cid] = 0;
    size_t off = hdr;
    for (uint32_t i = 0; i < c->nparts; i++) {
        if (write_frame_part(f + off, &c->parts[i]) != 0) {
            free(f);
            peer_fail(p, LM_E_IO, EIO, 0);
            return;
        }
        off += c->parts[i].len;
    }
    uint64_t at = W.now_us + net_delay_us();
    if (at <= p->last_c2s_us)
        at = p->last_c2s_us + 1;
    p->last_c2s_us = at;
    struct sim_ev *e = ev_new(EV_C2S, at, -1);
    ev_set_peer(e, p);
    e->data = f;
    e->len = off;
    uint32_t timeout = p->opts.request_timeout_ms ? p->opts.request_timeout_ms : 30000;
    e = ev_new(EV_CALL_TIMEOUT, W.now_us + (uint64_t)timeout * 1000u, -1);
    ev_set_peer(e, p);
    e->corr = c->correlation_id_;
}

static bool find_listener(const char *host, uint16_t port, int32_t *node, uint8_t *listener)
{
    for (uint32_t i = 0; i < SIM_NODES_MAX; i++) {
        const struct sim_node *n = &W.nodes[i];
        if (!n->added)
            continue;
        for (uint32_t l = 0; l < n->cfg->listeners_count; l++)
            if (n->cfg->listeners[l].port == port && strcmp(n->cfg->listeners[l].host, host) == 0) {
                *node = (int32_t)i;
                *listener = (uint8_t)l;
                return true;
            }
    }
    return false;
}

static int peer_open(uint32_t src_ep, struct broker_shard *s, const char *host, uint16_t port,
                     const struct broker_peer_opts *opts, struct broker_peer **out)
{
    struct broker_peer *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return LM_E_NOMEM;
    p->id = ++W.peer_ids;
    p->src_ep = src_ep;
    p->src_gen = src_ep < SIM_NODES_MAX ? W.nodes[src_ep].gen : 0;
    p->shard = s;
    p->opts = opts != NULL ? *opts : (struct broker_peer_opts){0};
    if (p->opts.inflight_max == 0)
        p->opts.inflight_max = 5;
    if (p->opts.client_id != NULL)
        snprintf(p->client_id, sizeof(p->client_id), "%s", p->opts.client_id);
    p->dst_node = -1;
    p->next_corr = 1;
    p->next_all = W.peers;
    if (W.peers != NULL)
        W.peers->prev_all = p;
    W.peers = p;
    if (!find_listener(host, port, &p->dst_node, &p->listener))
        p->dst_node = -1;
    struct sim_ev *e = ev_new(EV_CONNECT, W.now_us + net_delay_us(), -1);
    ev_set_peer(e, p);
    *out = p;
    return 0;
}

int broker_peer_open(struct broker_shard *s, const char *host, uint16_t port,
                     const struct broker_peer_opts *opts, struct broker_peer **out)
{
    struct sim_node *n = &W.nodes[s->node];
    if (!n->up || s->draining)
        return LM_E_STATE;
    return peer_open(s->node, s, host, port, opts, out);
}

int sim_client_peer_open(uint32_t endpoint, const char *host, uint16_t port,
                         const struct broker_peer_opts *opts, struct broker_peer **out)
{
    LM_ASSERT(endpoint >= SIM_NODES_MAX && endpoint < SIM_NODES_MAX + SIM_ENDPOINTS_MAX);
    return peer_open(endpoint, NULL, host, port, opts, out);
}

int broker_peer_send(struct broker_peer *p, struct broker_call *call)
{
    LM_ASSERT(!p->owner_closed);
    if (p->count >= p->opts.inflight_max)
        return LM_E_AGAIN;
    call->next_ = NULL;
    call->correlation_id_ = p->next_corr++;
    call->resp = NULL;
    call->resp_len = 0;
    call->sys_errno = 0;
    if (p->calls_tail != NULL)
        p->calls_tail->next_ = call;
    else
        p->calls_head = call;
    p->calls_tail = call;
    p->count++;
    if (p->err != 0) {
        schedule_call_fail(p);
    } else if (p->connected && !p->srv_broken) {
        transmit(p, call);
    } else if (p->unsent == NULL) {
        p->unsent = call;
    }
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
    if (p->err == 0) {
        p->err = LM_E_CLOSED;
        p->srv_broken = true;
    }
    schedule_call_fail(p);
    peer_maybe_free(p);
}

/* Completes every call of p with p->err. */
static void calls_fail_all(struct broker_peer *p)
{
    while (p->calls_head != NULL) {
        struct broker_call *c = p->calls_head;
        p->calls_head = c->next_;
        if (p->calls_head == NULL)
            p->calls_tail = NULL;
        p->count--;
        c->next_ = NULL;
        c->resp = NULL;
        c->resp_len = 0;
        c->sys_errno = p->sys_errno;
        c->done(p->shard, c, p->err);
    }
    p->unsent = NULL;
}

/* ---- serving requests ----------------------------------------------------------------------- */

static void req_unlink_node(struct broker_req *req, struct sim_req_ext *x)
{
    struct sim_node *n = &W.nodes[req->shard->node];
    if (x->all_prev != NULL)
        req_ext(x->all_prev)->all_next = x->all_next;
    else
        n->reqs = x->all_next;
    if (x->all_next != NULL)
        req_ext(x->all_next)->all_prev = x->all_prev;
    x->all_prev = x->all_next = NULL;
}

/* Frees req now (nothing of the handler layer may hold it any more). */
static void req_free_now(struct broker_req *req)
{
    struct sim_req_ext *x = req_ext(req);
    kafka_arena_deinit(&req->arena);
    free(x->resp);
    free(x);
    free(req);
}

/* Takes req off its connection and node; it is freed after the current event. */
static void req_retire(struct broker_req *req)
{
    struct broker_peer *p = req_peer(req);
    req_unlink_node(req, req_ext(req));
    LM_ASSERT(p->srv_reqs > 0);
    p->srv_reqs--;
    req->next_ = W.graveyard;
    W.graveyard = req;
    if (p->unread_head != NULL && !p->resume_scheduled && !p->srv_broken) {
        /* an answer left: the server reads on (conn_pop_head's resume) */
        p->resume_scheduled = true;
        struct sim_ev *e = ev_new(EV_SRV_RESUME, W.now_us, -1);
        ev_set_peer(e, p);
    }
    peer_maybe_free(p);
}

/* Sends the completed responses at the head of p's queue, in request order. p is held while
 * it runs: retiring its last request may otherwise free it. */
static void conn_flush(struct broker_peer *p)
{
    p->refs++;
    while (p->rq_head != NULL && p->rq_head->state_ == REQ_DONE) {
        struct broker_req *req = p->rq_head;
        p->rq_head = req->next_;
        if (p->rq_head == NULL)
            p->rq_tail = NULL;
        struct sim_req_ext *x = req_ext(req);
        bool close_after = req->close_after_;
        if (!p->srv_broken && x->has_resp) {
            uint64_t at = W.now_us + net_delay_us();
            if (at <= p->last_s2c_us)
                at = p->last_s2c_us + 1;
            p->last_s2c_us = at;
            struct sim_ev *e = ev_new(EV_S2C, at, -1);
            ev_set_peer(e, p);
            e->data = x->resp;
            e->len = x->resp_len;
            x->resp = NULL;
        }
        req_retire(req);
        if (close_after && !p->srv_broken) /* after the responses already on their way */
            peer_fail(p, LM_E_CLOSED, 0,
                      p->last_s2c_us >= W.now_us ? p->last_s2c_us + 1 - W.now_us : 0);
    }
    p->refs--;
    peer_maybe_free(p);
}

static void req_complete(struct broker_req *req, uint8_t *resp, size_t len, bool has_resp)
{
    LM_ASSERT(req->state_ == REQ_PENDING);
    struct sim_req_ext *x = req_ext(req);
    x->resp = resp;
    x->resp_len = len;
    x->has_resp = has_resp;
    req->state_ = REQ_DONE;
    conn_flush(req_peer(req));
}

/* The response header (v0, or v1 for a flexible request but ApiVersions: KIP-511). */
static size_t resp_header(const struct broker_req *req, uint8_t *h)
{
    uint32_t corr = (uint32_t)req->correlation_id;
    h[0] = (uint8_t)(corr >> 24);
    h[1] = (uint8_t)(corr >> 16);
    h[2] = (uint8_t)(corr >> 8);
    h[3] = (uint8_t)corr;
    if (req->sasl_raw)
        return 0;
    if (req->flexible && req->api_key != 18) {
        h[4] = 0;
        return 5;
    }
    return 4;
}

void broker_req_respond(struct broker_req *req, const void *body, size_t len)
{
    struct broker_resp_part part = {.mem = body, .fd = -1, .len = len};
    broker_req_respond_parts(req, &part, 1);
}

void broker_req_respond_parts(struct broker_req *req, struct broker_resp_part *parts,
                              uint32_t count)
{
    size_t len = 0;
    for (uint32_t i = 0; i < count; i++)
        len += parts[i].len;
    uint8_t *f = malloc(len + 8);
    LM_ASSERT(f != NULL);
    size_t off = resp_header(req, f);
    bool ok = true;
    for (uint32_t i = 0; i < count; i++) {
        if (ok && write_frame_part(f + off, &parts[i]) != 0)
            ok = false;
        off += parts[i].len;
        if (parts[i].mem == NULL && parts[i].fd >= 0)
            close(parts[i].fd);
    }
    if (!ok) { /* a file shorter than announced: the frame cannot be completed */
        req->close_after_ = true;
        peer_fail(req_peer(req), LM_E_CLOSED, 0, 0);
    }
    req_complete(req, f, off, ok);
}

void broker_req_respond_none(struct broker_req *req)
{
    req_complete(req, NULL, 0, false);
}

void broker_req_close_after(struct broker_req *req)
{
    req->close_after_ = true;
}

/* Handlers run in no time on the virtual clock. */
uint64_t broker_req_local_us(const struct broker_req *req)
{
    (void)req;
    return 0;
}

/* The simulated clients run under no client quota, so no connection is ever muted. */
void broker_req_throttle(struct broker_req *req, uint32_t delay_ms)
{
    (void)req;
    (void)delay_ms;
}

struct broker_conn_auth *broker_req_auth(struct broker_req *req)
{
    return &req_peer(req)->auth;
}

bool broker_req_conn_closing(const struct broker_req *req)
{
    return req_peer(req)->srv_broken;
}

/* The simulated connection's address names it; the simulation never calls conn_closed. */
uint64_t broker_req_conn_id(const struct broker_req *req)
{
    return (uint64_t)(uintptr_t)req_peer(req);
}

const struct broker_listener *broker_req_advertised(const struct broker_req *req)
{
    const struct broker_config *cfg = req->shard->cfg;
    LM_ASSERT(req->listener < cfg->listeners_count);
    return broker_config_advertised_for(cfg, cfg->listeners[req->listener].name);
}

static const struct broker_api_entry *listener_apis(const struct broker_dispatch *d,
                                                    const struct broker_listener *l)
{
    for (uint32_t i = 0; i < d->listener_tables_count; i++)
        if (strcasecmp(d->listener_tables[i].name, l->name) == 0)
            return d->listener_tables[i].table.apis;
    return d->apis;
}

/* A request frame reaches its server. */
static void on_request(struct broker_peer *p, uint8_t *frame, size_t len)
{
    struct sim_node *n = &W.nodes[p->dst_node];
    struct broker_shard *s = n->shard;
    struct broker_reqhdr h;
    if (broker_reqhdr_parse_fixed(frame, len, &h) != 0) {
        peer_fail(p, LM_E_CLOSED, 0, net_delay_us());
        return;
    }
    const struct broker_api_entry *apis = listener_apis(s->d, &s->cfg->listeners[p->listener]);
    if (h.api_key < 0 || h.api_key >= BROKER_API_KEYS_MAX || apis[h.api_key].fn == NULL) {
        BLOG_WARN("sim: node %d: unknown api key %d on listener %s, closing", p->dst_node,
                  h.api_key, s->cfg->listeners[p->listener].name);
        peer_fail(p, LM_E_CLOSED, 0, net_delay_us());
        return;
    }
    const struct broker_api_entry *e = &apis[h.api_key];
    bool flexible = e->flexible_version_min >= 0 && h.api_version >= e->flexible_version_min;
    size_t off = h.size_bytes;
    if (flexible && broker_reqhdr_skip_tags(frame, len, &off) != 0) {
        peer_fail(p, LM_E_CLOSED, 0, net_delay_us());
        return;
    }
    struct broker_req *req = calloc(1, sizeof(*req));
    struct sim_req_ext *x = calloc(1, sizeof(*x) + len);
    LM_ASSERT(req != NULL && x != NULL);
    memcpy(x->frame, frame, len);
    memcpy(req->out_.prefix, &x, sizeof(x));
    req->api_key = h.api_key;
    req->api_version = h.api_version;
    req->correlation_id = h.correlation_id;
    req->client_id =
        h.client_id != NULL ? (const char *)x->frame + (h.client_id - (const char *)frame) : NULL;
    req->client_id_len = h.client_id_len;
    req->body = x->frame + off;
    req->body_len = len - off;
    req->flexible = flexible;
    req->listener = p->listener;
    req->shard = s;
    req->conn = (struct broker_conn *)(void *)p;
    req->state_ = REQ_PENDING;
    req->start_us_ = W.now_us;
    kafka_arena_init(&req->arena, (size_t)s->cfg->socket_request_max_bytes * 2 + (64u << 20));
    /* on the connection's queue (response order) and the node's list (crash cleanup) */
    if (p->rq_tail != NULL)
        p->rq_tail->next_ = req;
    else
        p->rq_head = req;
    p->rq_tail = req;
    p->srv_reqs++;
    x->all_next = n->reqs;
    if (n->reqs != NULL)
        req_ext(n->reqs)->all_prev = req;
    n->reqs = req;
    e->fn(req);
}

/* A response frame reaches its client. */
static void on_response(struct broker_peer *p, const uint8_t *frame, size_t len)
{
    struct broker_call *c = p->calls_head;
    if (c == NULL || len < 4) {
        peer_fail(p, LM_E_CORRUPT, 0, 0);
        return;
    }
    int32_t corr = (int32_t)((uint32_t)frame[0] << 24 | (uint32_t)frame[1] << 16 |
                             (uint32_t)frame[2] << 8 | frame[3]);
    size_t off = 4;
    if (c->flexible && c->api_key != 18 && broker_reqhdr_skip_tags(frame, len, &off) != 0) {
        peer_fail(p, LM_E_CORRUPT, 0, 0);
        return;
    }
    if (corr != c->correlation_id_) {
        peer_fail(p, LM_E_CORRUPT, 0, 0);
        return;
    }
    p->calls_head = c->next_;
    if (p->calls_head == NULL)
        p->calls_tail = NULL;
    p->count--;
    c->next_ = NULL;
    c->resp = frame + off;
    c->resp_len = len - off;
    c->sys_errno = 0;
    c->done(p->shard, c, 0);
}

/* ---- shards: timers, cross-shard calls, fsyncs, identity ------------------------------------ */

static bool timer_less(const struct broker_timer *a, const struct broker_timer *b)
{
    return a->deadline_ms_ < b->deadline_ms_;
}

static void th_set(struct broker_shard *s, uint32_t i, struct broker_timer *t)
{
    s->th[i] = t;
    t->heap_index_ = i;
}

static void th_up(struct broker_shard *s, uint32_t i)
{
    struct broker_timer *t = s->th[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!timer_less(t, s->th[p]))
            break;
        th_set(s, i, s->th[p]);
        i = p;
    }
    th_set(s, i, t);
}

static void th_down(struct broker_shard *s, uint32_t i)
{
    struct broker_timer *t = s->th[i];
    for (;;) {
        uint32_t l = 2 * i + 1, m = i;
        const struct broker_timer *best = t;
        if (l < s->tn && timer_less(s->th[l], best)) {
            m = l;
            best = s->th[l];
        }
        if (l + 1 < s->tn && timer_less(s->th[l + 1], best))
            m = l + 1;
        if (m == i)
            break;
        th_set(s, i, s->th[m]);
        i = m;
    }
    th_set(s, i, t);
}

int broker_timer_start(struct broker_shard *s, struct broker_timer *t, uint64_t delay_ms,
                       void (*fn)(struct broker_shard *, struct broker_timer *), void *arg)
{
    LM_ASSERT(t->heap_index_ == UINT32_MAX || t->heap_index_ >= s->tn ||
              s->th[t->heap_index_] != t);
    if (s->tn == s->tcap) {
        uint32_t cap = s->tcap ? s->tcap * 2 : 64;
        struct broker_timer **th = realloc(s->th, cap * sizeof(*th));
        if (th == NULL)
            return LM_E_NOMEM;
        s->th = th;
        s->tcap = cap;
    }
    t->fn = fn;
    t->arg = arg;
    t->deadline_ms_ = W.now_us / 1000u + delay_ms;
    th_set(s, s->tn++, t);
    th_up(s, s->tn - 1);
    return 0;
}

void broker_timer_cancel(struct broker_shard *s, struct broker_timer *t)
{
    uint32_t i = t->heap_index_;
    if (i == UINT32_MAX || i >= s->tn || s->th[i] != t)
        return;
    s->tn--;
    if (i != s->tn) {
        th_set(s, i, s->th[s->tn]);
        th_up(s, i);
        th_down(s, s->th[i]->heap_index_);
    }
    t->heap_index_ = UINT32_MAX;
}

void broker_shard_call(struct broker_shard *self, uint32_t target, struct broker_xcall *c)
{
    LM_ASSERT(target == 0); /* one shard per node */
    c->origin_ = 0;
    c->target_ = target;
    c->returning_ = false;
    struct sim_ev *e = ev_new(EV_XCALL_RUN, W.now_us, (int32_t)self->node);
    e->arg = c;
}

void broker_xcall_return(struct broker_shard *target, struct broker_xcall *c)
{
    c->returning_ = true;
    struct sim_ev *e = ev_new(EV_XCALL_DONE, W.now_us, (int32_t)target->node);
    e->arg = c;
}

void broker_shard_fsync(struct broker_shard *s, struct broker_fsync *f, int fd, bool datasync,
                        void (*done)(struct broker_shard *, struct broker_fsync *, int), void *arg)
{
    f->fd = fd;
    f->datasync = datasync;
    f->done = done;
    f->arg = arg;
    struct sim_ev *e = ev_new(EV_FSYNC, W.now_us + 50 + sim_rand_below(2000), (int32_t)s->node);
    e->arg = f;
}

/* The metadata worker: the job runs (its state file written and synced) when the event
 * fires, a few hundred microseconds to a few milliseconds after the one before it on that
 * node (one in eight up to 50 ms more, a slow disk), and only then is done called. A crash before
 * drops the event: what it would have written is lost, as an unsynced write (unless the crash keeps
 * it: node_down). */
void broker_shard_meta_job(struct broker_shard *s, struct broker_meta_job *j)
{
    LM_ASSERT(j->run != NULL && j->done != NULL);
    j->res_ = 0;
    j->next_ = NULL;
    uint64_t at = W.meta_free_us[s->node] > W.now_us ? W.meta_free_us[s->node] : W.now_us;
    at += 100 + sim_rand_below(3000);
    if (sim_rand_below(8) == 0)
        at += sim_rand_below(50000); /* a slow disk now and then: up to 50 ms more */
    W.meta_free_us[s->node] = at;
    struct sim_ev *e = ev_new(EV_META, at, (int32_t)s->node);
    e->arg = j;
}

uint32_t broker_shard_id(const struct broker_shard *s)
{
    (void)s;
    return 0;
}

uint32_t broker_shard_count(const struct broker_shard *s)
{
    (void)s;
    return 1;
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

void broker_shard_counter_add(struct broker_shard *s, enum broker_counter c, uint64_t n)
{
    (void)s;
    (void)c;
    (void)n;
}

void broker_shard_topic_add(struct broker_shard *s, const char *topic, size_t len,
                            enum broker_counter c, uint64_t n)
{
    (void)s;
    (void)topic;
    (void)len;
    (void)c;
    (void)n;
}

uint64_t *broker_shard_topic_counters(struct broker_shard *s, const char *topic, size_t len)
{
    (void)s;
    (void)topic;
    (void)len;
    return NULL; /* the simulation keeps no metrics */
}

uint32_t broker_partition_shard(const char *topic, size_t topic_len, int32_t partition,
                                uint32_t nshards)
{
    (void)topic;
    (void)topic_len;
    (void)partition;
    LM_ASSERT(nshards == 1);
    return 0;
}

/* Registration of handler tables: the same rules as the real runtime's (broker/shard.c). */
int broker_dispatch_register(struct broker_dispatch *d, int16_t api_key, broker_handler_fn fn,
                             int16_t flexible_version_min)
{
    if (api_key < 0 || api_key >= BROKER_API_KEYS_MAX)
        return LM_E_INVALID;
    d->apis[api_key].fn = fn;
    d->apis[api_key].flexible_version_min = flexible_version_min;
    return 0;
}

int broker_api_table_register(struct broker_api_table *t, int16_t api_key, broker_handler_fn fn,
                              int16_t flexible_version_min)
{
    if (api_key < 0 || api_key >= BROKER_API_KEYS_MAX)
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

/* ---- UDP --------------------------------------------------------------------------------------
 */

int broker_udp_open(struct broker_shard *s, const char *host, uint16_t port,
                    broker_udp_recv_fn recv, void *arg, struct broker_udp **out)
{
    struct in_addr ia;
    if (inet_pton(AF_INET, host[0] ? host : "0.0.0.0", &ia) != 1)
        return LM_E_INVALID;
    struct broker_udp *u = calloc(1, sizeof(*u));
    if (u == NULL)
        return LM_E_NOMEM;
    u->node = s->node;
    u->gen = W.nodes[s->node].gen;
    u->addr.sin_family = AF_INET;
    u->addr.sin_addr = ia;
    u->addr.sin_port = htons(port ? port : (uint16_t)(40000 + s->node));
    u->recv = recv;
    u->arg = arg;
    u->next = W.udps;
    W.udps = u;
    *out = u;
    return 0;
}

uint16_t broker_udp_port(const struct broker_udp *u)
{
    return ntohs(u->addr.sin_port);
}

static void udp_schedule(const struct broker_udp *u, const void *data, size_t len,
                         const struct sockaddr_in *to)
{
    struct sim_ev *e = ev_new(EV_UDP, W.now_us + net_delay_us(), -1);
    e->data = malloc(len ? len : 1);
    LM_ASSERT(e->data != NULL);
    memcpy(e->data, data, len);
    e->len = len;
    e->from = u->addr;
    e->to = *to;
    e->src_ep = u->node;
}

int broker_udp_send(struct broker_udp *u, const void *data, size_t len, const struct sockaddr *to,
                    uint32_t to_len)
{
    if (len > BROKER_UDP_DATAGRAM_MAX)
        return LM_E_TOO_LARGE;
    if (to_len < sizeof(struct sockaddr_in) || to->sa_family != AF_INET)
        return LM_E_IO;
    if (!W.nodes[u->node].up)
        return 0;
    if (W.net.udp_loss_pct > 0 && sim_rand_below(100) < W.net.udp_loss_pct)
        return 0;
    const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)to;
    udp_schedule(u, data, len, sin);
    if (W.net.udp_dup_pct > 0 && sim_rand_below(100) < W.net.udp_dup_pct)
        udp_schedule(u, data, len, sin);
    return 0;
}

void broker_udp_close(struct broker_udp *u)
{
    for (struct broker_udp **pp = &W.udps; *pp != NULL; pp = &(*pp)->next)
        if (*pp == u) {
            *pp = u->next;
            free(u);
            return;
        }
    LM_ASSERT(false);
}

static void on_datagram(struct sim_ev *e)
{
    for (struct broker_udp *u = W.udps; u != NULL; u = u->next) {
        if (u->addr.sin_port != e->to.sin_port || u->addr.sin_addr.s_addr != e->to.sin_addr.s_addr)
            continue;
        if (!node_serving((int32_t)u->node, u->gen) || W.cut[e->src_ep][u->node])
            return;
        W.cur_node = (int32_t)u->node;
        broker_log_set_shard((int)u->node);
        u->recv(W.nodes[u->node].shard, u, e->data, e->len, (const struct sockaddr *)&e->from,
                sizeof(e->from), u->arg);
        return;
    }
}

/* ---- the simulated disk ------------------------------------------------------------------------
 * Files are real (reads are plain preads). Every pwrite/pwritev a node makes to a regular file is
 * remembered with what it overwrote until an fsync/fdatasync of that file; a crash then keeps,
 * drops, tears or zeroes the writes not synced (sim_node_crash's mode). From the crash on, the
 * dead node's writes and syncs (its memory being freed) do not reach the disk. */

typedef ssize_t (*pwritev_fn)(int, const struct iovec *, int, off_t);
typedef ssize_t (*pwrite_fn)(int, const void *, size_t, off_t);
typedef ssize_t (*write_fn)(int, const void *, size_t);
typedef int (*sync_fn)(int);
typedef int (*ftruncate_fn)(int, off_t);

static void *real_fn(const char *name)
{
    void *f = dlsym(RTLD_NEXT, name);
    LM_ASSERT(f != NULL);
    return f;
}

/* The node whose process makes this call, when it is a node that just crashed. */
static bool write_voided(void)
{
    return W.active && W.cur_node >= 0 && W.nodes[W.cur_node].quiescing &&
           !W.nodes[W.cur_node].stopping;
}

static void remember_write(int fd, uint64_t off, uint64_t len)
{
    if (!W.active || W.cur_node < 0 || len == 0)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return;
    struct sim_wr *w = calloc(1, sizeof(*w));
    LM_ASSERT(w != NULL);
    char link[64];
    snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, w->path, sizeof(w->path) - 1);
    if (n <= 0) {
        free(w);
        return;
    }
    w->path[n] = 0;
    w->dev = st.st_dev;
    w->ino = st.st_ino;
    w->off = off;
    w->len = len;
    w->old_size = (uint64_t)st.st_size;
    if (off < w->old_size) {
        w->old_len = (size_t)(w->old_size - off < len ? w->old_size - off : len);
        w->old = malloc(w->old_len);
        LM_ASSERT(w->old != NULL);
        ssize_t r = pread(fd, w->old, w->old_len, (off_t)off);
        if (r < 0)
            r = 0;
        w->old_len = (size_t)r;
    }
    w->next = W.unsynced[W.cur_node];
    W.unsynced[W.cur_node] = w;
    W.disk_writes++;
    if (W.on_write[W.cur_node].fn != NULL) {
        sim_schedule(0, W.on_write[W.cur_node].fn, W.on_write[W.cur_node].arg);
        W.on_write[W.cur_node].fn = NULL;
    }
}

/* The errno a disk fault of the calling node gives a write (sync false) or an fsync (sync
 * true) to fd, or 0. Only regular files fail. */
static int disk_fault(int fd, bool sync)
{
    if (!W.active || W.cur_node < 0)
        return 0;
    enum sim_disk_fault k = W.dfault[W.cur_node].kind;
    if (k == SIM_DISK_OK || W.now_us >= W.dfault[W.cur_node].until_us)
        return 0;
    int err = 0;
    if (sync && k == SIM_DISK_EIO_FSYNC)
        err = EIO;
    else if (!sync && k == SIM_DISK_EIO_WRITE)
        err = EIO;
    else if (!sync && k == SIM_DISK_FULL)
        err = ENOSPC;
    struct stat st;
    if (err == 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
        return 0;
    W.disk_faults++;
    return err;
}

/* An fsync of fd failed: the kernel has marked its dirty pages clean (Linux after a writeback
 * error), so the writes not synced yet are never made durable by a later fsync; a crash that
 * loses unsynced writes loses them. */
static void doom_unsynced(int fd)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    for (struct sim_wr *w = W.unsynced[W.cur_node]; w != NULL; w = w->next)
        if (w->dev == st.st_dev && w->ino == st.st_ino)
            w->doomed = true;
}

static void forget_synced(int fd)
{
    if (!W.active)
        return;
    struct stat st;
    if (fstat(fd, &st) != 0)
        return;
    for (uint32_t i = 0; i < SIM_NODES_MAX; i++)
        for (struct sim_wr **pp = &W.unsynced[i]; *pp != NULL;) {
            struct sim_wr *w = *pp;
            if (w->dev == st.st_dev && w->ino == st.st_ino && !w->doomed) {
                *pp = w->next;
                free(w->old);
                free(w);
            } else {
                pp = &w->next;
            }
        }
}

ssize_t pwritev(int fd, const struct iovec *iov, int iovcnt, off_t offset)
{
    static pwritev_fn real;
    if (real == NULL)
        real = (pwritev_fn)real_fn("pwritev");
    size_t len = 0;
    for (int i = 0; i < iovcnt; i++)
        len += iov[i].iov_len;
    if (write_voided())
        return (ssize_t)len;
    int err = disk_fault(fd, false);
    if (err != 0) {
        errno = err;
        return -1;
    }
    remember_write(fd, (uint64_t)offset, len);
    return real(fd, iov, iovcnt, offset);
}

ssize_t pwrite(int fd, const void *buf, size_t len, off_t offset)
{
    static pwrite_fn real;
    if (real == NULL)
        real = (pwrite_fn)real_fn("pwrite");
    if (write_voided())
        return (ssize_t)len;
    int err = disk_fault(fd, false);
    if (err != 0) {
        errno = err;
        return -1;
    }
    remember_write(fd, (uint64_t)offset, len);
    return real(fd, buf, len, offset);
}

ssize_t write(int fd, const void *buf, size_t len)
{
    static write_fn real;
    if (real == NULL)
        real = (write_fn)real_fn("write");
    if (fd > 2 && write_voided())
        return (ssize_t)len;
    int err = fd > 2 ? disk_fault(fd, false) : 0;
    if (err != 0) {
        errno = err;
        return -1;
    }
    return real(fd, buf, len);
}

int fdatasync(int fd)
{
    static sync_fn real;
    if (real == NULL)
        real = (sync_fn)real_fn("fdatasync");
    if (write_voided())
        return 0;
    int err = disk_fault(fd, true);
    if (err != 0) {
        doom_unsynced(fd);
        errno = err;
        return -1;
    }
    forget_synced(fd);
    return real(fd);
}

int fsync(int fd)
{
    static sync_fn real;
    if (real == NULL)
        real = (sync_fn)real_fn("fsync");
    if (write_voided())
        return 0;
    int err = disk_fault(fd, true);
    if (err != 0) {
        doom_unsynced(fd);
        errno = err;
        return -1;
    }
    forget_synced(fd);
    return real(fd);
}

/* A write whose fsync failed never reached the disk and its pages were marked clean; once the
 * file is cut below it (a writer taking back what failed, as the metadata store does) the write
 * is gone from the file as well. Undoing it at a crash would cut the file back to its old size
 * and with it what was written and synced there since (whole-cluster simulation seed 60525: a
 * node's producer-id block, synced after the fault, was lost this way and its ids handed out
 * twice), so such writes are forgotten. */
static void forget_doomed_beyond(int fd, off_t len)
{
    struct stat st;
    if (!W.active || W.cur_node < 0 || fstat(fd, &st) != 0)
        return;
    for (struct sim_wr **pp = &W.unsynced[W.cur_node]; *pp != NULL;) {
        struct sim_wr *w = *pp;
        if (w->doomed && w->dev == st.st_dev && w->ino == st.st_ino && w->off >= (uint64_t)len) {
            *pp = w->next;
            free(w->old);
            free(w);
        } else {
            pp = &w->next;
        }
    }
}

int ftruncate(int fd, off_t len)
{
    static ftruncate_fn real;
    if (real == NULL)
        real = (ftruncate_fn)real_fn("ftruncate");
    if (write_voided())
        return 0;
    int rc = real(fd, len);
    if (rc == 0)
        forget_doomed_beyond(fd, len);
    return rc;
}

/* Applies a crash to node i's writes not synced: the newest first, undone (drop), undone past a
 * random point with the write there cut short (tear), or overwritten with zeros (zero). */
/* posix_fadvise(DONTNEED) evicts a file's clean pages. A write whose fsync failed is clean but
 * never reached the disk (Linux after a writeback error), so once evicted a read sees what the
 * disk holds: the file's doomed writes are undone, newest first, as a crash undoes them. A
 * newer write of the file that is not doomed stops it (its pages are dirty, not evicted, and
 * the older undo would cut it). */
int posix_fadvise(int fd, off_t offset, off_t len, int advice)
{
    static pwrite_fn real_pwrite;
    static ftruncate_fn real_ftruncate;
    if (real_pwrite == NULL) {
        real_pwrite = (pwrite_fn)real_fn("pwrite");
        real_ftruncate = (ftruncate_fn)real_fn("ftruncate");
    }
    (void)offset;
    (void)len;
    struct stat st;
    if (!W.active || W.cur_node < 0 || advice != POSIX_FADV_DONTNEED || fstat(fd, &st) != 0)
        return 0;
    for (struct sim_wr **pp = &W.unsynced[W.cur_node]; *pp != NULL;) {
        struct sim_wr *w = *pp;
        if (w->dev != st.st_dev || w->ino != st.st_ino) {
            pp = &w->next;
            continue;
        }
        if (!w->doomed)
            break;
        int wfd = open(w->path, O_WRONLY | O_CLOEXEC);
        struct stat wst;
        if (wfd >= 0 && fstat(wfd, &wst) == 0 && wst.st_dev == w->dev && wst.st_ino == w->ino) {
            W.disk_lost_writes++;
            if (w->old_len > 0)
                (void)!real_pwrite(wfd, w->old, w->old_len, (off_t)w->off);
            if (w->off + w->len > w->old_size && (uint64_t)wst.st_size > w->old_size)
                (void)!real_ftruncate(wfd, (off_t)w->old_size);
        }
        if (wfd >= 0)
            close(wfd);
        *pp = w->next;
        free(w->old);
        free(w);
    }
    return 0;
}

static void disk_crash(uint32_t i, enum sim_crash_disk mode)
{
    static pwrite_fn real_pwrite;
    static ftruncate_fn real_ftruncate;
    if (real_pwrite == NULL) {
        real_pwrite = (pwrite_fn)real_fn("pwrite");
        real_ftruncate = (ftruncate_fn)real_fn("ftruncate");
    }
    uint32_t count = 0;
    for (struct sim_wr *w = W.unsynced[i]; w != NULL; w = w->next)
        count++;
    /* tear: the newest `undo` writes are undone, the oldest of them only past a random byte */
    uint32_t undo =
        mode == SIM_DISK_TEAR && count > 0 ? (uint32_t)sim_rand_below(count) + 1 : count;
    uint32_t k = 0;
    while (W.unsynced[i] != NULL) {
        struct sim_wr *w = W.unsynced[i];
        W.unsynced[i] = w->next;
        k++;
        if (mode != SIM_DISK_KEEP && k <= undo) {
            int fd = open(w->path, O_WRONLY | O_CLOEXEC);
            struct stat st;
            if (fd >= 0 && fstat(fd, &st) == 0 && st.st_dev == w->dev && st.st_ino == w->ino) {
                W.disk_lost_writes++;
                if (mode == SIM_DISK_ZERO) {
                    uint8_t *z = calloc(1, w->len);
                    LM_ASSERT(z != NULL);
                    (void)!real_pwrite(fd, z, w->len, (off_t)w->off);
                    free(z);
                } else if (mode == SIM_DISK_TEAR && k == undo && w->len > 1) {
                    /* the last write undone keeps a prefix: a torn write */
                    uint64_t keep = sim_rand_below(w->len);
                    if (w->off + keep >= w->old_size && (uint64_t)st.st_size > w->off + keep)
                        (void)!real_ftruncate(fd, (off_t)(w->off + keep));
                } else {
                    if (w->old_len > 0)
                        (void)!real_pwrite(fd, w->old, w->old_len, (off_t)w->off);
                    if (w->off + w->len > w->old_size && (uint64_t)st.st_size > w->old_size)
                        (void)!real_ftruncate(fd, (off_t)w->old_size);
                }
            }
            if (fd >= 0)
                close(fd);
        }
        free(w->old);
        free(w);
    }
}

void sim_disk_fault(uint32_t i, enum sim_disk_fault kind, uint64_t until_us)
{
    LM_ASSERT(i < SIM_NODES_MAX);
    W.dfault[i].kind = kind;
    W.dfault[i].until_us = until_us;
}

uint64_t sim_disk_faults(void)
{
    return W.disk_faults;
}

uint64_t sim_disk_lost_writes(void)
{
    return W.disk_lost_writes;
}

void sim_on_next_write(uint32_t i, void (*fn)(void *arg), void *arg)
{
    W.on_write[i].fn = fn;
    W.on_write[i].arg = arg;
}

uint64_t sim_disk_writes(void)
{
    return W.disk_writes;
}

uint64_t sim_meta_jobs(uint64_t *kept)
{
    *kept = W.meta_jobs_kept;
    return W.meta_jobs;
}

/* A frame that meets a cut link is retransmitted, as TCP does, after a timeout doubling from
 * 200 ms to 6.4 s, and the frames behind it on the connection wait for it; the caller's request
 * timeout ends the connection if the link stays cut. Returns true when e was put off. */
static bool tcp_hold(struct sim_ev *e, struct broker_peer *p, bool c2s, bool cut)
{
    uint64_t *held = c2s ? &p->held_c2s_us : &p->held_s2c_us;
    uint32_t *rto = c2s ? &p->rto_c2s_ms : &p->rto_s2c_ms;
    uint64_t *last = c2s ? &p->last_c2s_us : &p->last_s2c_us;
    uint64_t at;
    if (cut) {
        *rto = *rto == 0 ? 200 : *rto >= 6400 ? 6400 : *rto * 2;
        at = W.now_us + (uint64_t)*rto * 1000u;
        *held = at;
    } else if (W.now_us < *held) {
        at = *held + 1; /* behind the retransmitted frame */
    } else {
        *rto = 0;
        return false;
    }
    if (*last < at)
        *last = at;
    struct sim_ev *r = ev_new(e->kind, at, -1);
    ev_set_peer(r, p);
    r->data = e->data;
    r->len = e->len;
    e->data = NULL;
    return true;
}

/* ---- running events ------------------------------------------------------------------------- */

/* laminar.connection.inflight.max of the node serving p. */
static uint32_t srv_inflight_max(const struct broker_peer *p)
{
    LM_ASSERT(p->dst_node >= 0 && p->dst_node < (int32_t)SIM_NODES_MAX);
    uint32_t m = W.nodes[p->dst_node].cfg->connection_inflight_max;
    LM_ASSERT(m > 0);
    return m;
}

static void enter_node(int32_t node)
{
    W.cur_node = node;
    broker_log_set_shard(node);
}

static void run_event(struct sim_ev *e)
{
    struct broker_peer *p = e->peer;
    if (e->node >= 0 &&
        (W.nodes[e->node].gen != e->gen || (!W.nodes[e->node].up && !W.nodes[e->node].quiescing)))
        goto out; /* the node this event was for has crashed since */
    switch (e->kind) {
    case EV_FN:
        enter_node(-1);
        e->fn(e->arg);
        break;
    case EV_XCALL_RUN: {
        struct broker_xcall *c = e->arg;
        enter_node(e->node);
        c->run(W.nodes[e->node].shard, c);
        break;
    }
    case EV_XCALL_DONE: {
        struct broker_xcall *c = e->arg;
        enter_node(e->node);
        c->done(W.nodes[e->node].shard, c);
        break;
    }
    case EV_FSYNC: {
        struct broker_fsync *f = e->arg;
        enter_node(e->node);
        int rc = f->datasync ? fdatasync(f->fd) : fsync(f->fd);
        f->res_ = rc == 0 ? 0 : LM_E_IO;
        f->done(W.nodes[e->node].shard, f, f->res_);
        break;
    }
    case EV_META: {
        struct broker_meta_job *j = e->arg;
        enter_node(e->node);
        /* A node going down completes its jobs into the void, as its fsyncs: nothing reaches
         * the disk (a rename would, the simulated disk only voids writes and syncs). */
        if (!write_voided()) {
            j->res_ = j->run(j);
            W.meta_jobs++;
        }
        j->done(W.nodes[e->node].shard, j, j->res_);
        break;
    }
    case EV_CONNECT:
        if (p->err != 0 || p->srv_broken)
            break;
        if (!endpoint_alive(p->src_ep, p->src_gen))
            break;
        if (p->dst_node < 0 || !W.nodes[p->dst_node].up) {
            p->sys_errno = ECONNREFUSED;
            peer_fail(p, LM_E_IO, ECONNREFUSED, 0);
            break;
        }
        if (peer_cut(p, p->src_ep, (uint32_t)p->dst_node) ||
            peer_cut(p, (uint32_t)p->dst_node, p->src_ep)) {
            uint32_t t = p->opts.connect_timeout_ms ? p->opts.connect_timeout_ms : 10000;
            peer_fail(p, LM_E_TIMEOUT, ETIMEDOUT, (uint64_t)t * 1000u);
            break;
        }
        p->connected = true;
        p->dst_gen = W.nodes[p->dst_node].gen;
        for (struct broker_call *c = p->unsent; c != NULL; c = c->next_)
            transmit(p, c);
        p->unsent = NULL;
        break;
    case EV_C2S:
        if (p->srv_broken)
            break;
        if (!node_serving(p->dst_node, p->dst_gen)) { /* the server died: reset */
            peer_fail(p, LM_E_IO, ECONNRESET, net_delay_us());
            break;
        }
        if (tcp_hold(e, p, true, peer_cut(p, p->src_ep, (uint32_t)p->dst_node)))
            break;
        if (W.net.reset_per_100k > 0 && sim_rand_below(100000) < W.net.reset_per_100k) {
            peer_fail(p, LM_E_IO, ECONNRESET, net_delay_us());
            break;
        }
        if (p->unread_head != NULL || p->srv_reqs >= srv_inflight_max(p)) {
            /* the server does not read the connection now (EV_SRV_RESUME reads it on) */
            struct sim_unread *u = calloc(1, sizeof(*u));
            LM_ASSERT(u != NULL);
            u->data = e->data;
            u->len = e->len;
            e->data = NULL;
            if (p->unread_tail != NULL)
                p->unread_tail->next = u;
            else
                p->unread_head = u;
            p->unread_tail = u;
            break;
        }
        enter_node(p->dst_node);
        sim_trace_add(e->data, e->len);
        on_request(p, e->data, e->len);
        break;
    case EV_SRV_RESUME:
        p->resume_scheduled = false;
        if (p->srv_broken) {
            unread_drop(p);
            break;
        }
        if (!node_serving(p->dst_node, p->dst_gen)) { /* the server died: reset */
            unread_drop(p);
            peer_fail(p, LM_E_IO, ECONNRESET, net_delay_us());
            break;
        }
        enter_node(p->dst_node);
        while (p->unread_head != NULL && !p->srv_broken && p->srv_reqs < srv_inflight_max(p)) {
            struct sim_unread *u = p->unread_head;
            p->unread_head = u->next;
            if (p->unread_head == NULL)
                p->unread_tail = NULL;
            sim_trace_add(u->data, u->len);
            on_request(p, u->data, u->len);
            free(u->data);
            free(u);
        }
        break;
    case EV_S2C:
        if (p->err != 0 || !endpoint_alive(p->src_ep, p->src_gen))
            break;
        if (tcp_hold(e, p, false, peer_cut(p, (uint32_t)p->dst_node, p->src_ep)))
            break;
        if (W.net.reset_per_100k > 0 && sim_rand_below(100000) < W.net.reset_per_100k) {
            peer_fail(p, LM_E_IO, ECONNRESET, 0);
            break;
        }
        enter_node(p->shard != NULL ? (int32_t)p->src_ep : -1);
        sim_trace_add(e->data, e->len);
        on_response(p, e->data, e->len);
        break;
    case EV_CALL_TIMEOUT:
        for (struct broker_call *c = p->calls_head; c != NULL; c = c->next_)
            if (c->correlation_id_ == e->corr && p->err == 0) {
                peer_fail(p, LM_E_TIMEOUT, ETIMEDOUT, 0);
                break;
            }
        break;
    case EV_CONN_FAIL:
        p->fail_scheduled = false;
        if (p->err == 0) {
            p->err = e->rc;
            p->sys_errno = e->corr;
        }
        p->srv_broken = true;
        if (!endpoint_alive(p->src_ep, p->src_gen))
            break;
        enter_node(p->shard != NULL ? (int32_t)p->src_ep : -1);
        calls_fail_all(p);
        break;
    case EV_CALL_FAIL:
        if (p->shard != NULL && !endpoint_alive(p->src_ep, p->src_gen))
            break;
        enter_node(p->shard != NULL ? (int32_t)p->src_ep : -1);
        calls_fail_all(p);
        break;
    case EV_UDP:
        on_datagram(e);
        break;
    }
out:
    if (W.print)
        fprintf(stderr, "sim %10.6f %-8s node %d peer %u len %zu\n",
                (double)(W.now_us - SIM_MONO_START_US) / 1e6, ev_names[e->kind], e->node,
                p != NULL ? p->id : 0, e->len);
    free(e->data);
    if (p != NULL) {
        p->refs--;
        peer_maybe_free(p);
    }
    free(e);
}

static void graveyard_free(void)
{
    while (W.graveyard != NULL) {
        struct broker_req *req = W.graveyard;
        W.graveyard = req->next_;
        req_free_now(req);
    }
}

static void run_timer(uint32_t node)
{
    struct broker_shard *s = W.nodes[node].shard;
    struct broker_timer *t = s->th[0];
    broker_timer_cancel(s, t);
    enter_node((int32_t)node);
    trace_u64(t->deadline_ms_);
    if (W.print)
        fprintf(stderr, "sim %10.6f timer    node %u\n",
                (double)(W.now_us - SIM_MONO_START_US) / 1e6, node);
    t->fn(s, t);
}

bool sim_run_until(uint64_t until_us, bool (*check)(void *arg), void *arg)
{
    for (;;) {
        uint64_t best = UINT64_MAX;
        int32_t timer_node = -1;
        if (W.hn > 0)
            best = W.heap[0]->at_us;
        for (uint32_t i = 0; i < SIM_NODES_MAX; i++) {
            struct sim_node *n = &W.nodes[i];
            if (!n->up || n->shard->tn == 0)
                continue;
            uint64_t at = n->shard->th[0]->deadline_ms_ * 1000u;
            if (at < W.now_us)
                at = W.now_us;
            if (at < best) {
                best = at;
                timer_node = (int32_t)i;
            }
        }
        if (best == UINT64_MAX || best > until_us) {
            if (until_us > W.now_us)
                W.now_us = until_us;
            return true;
        }
        if (best > W.now_us)
            W.now_us = best;
        W.events++;
        trace_u64(W.now_us);
        if (timer_node >= 0) {
            run_timer((uint32_t)timer_node);
        } else {
            struct sim_ev *e = W.heap[0];
            heap_remove(e);
            uint64_t k = (uint64_t)e->kind << 32 | (uint32_t)(e->node + 1);
            trace_u64(k);
            run_event(e);
        }
        graveyard_free();
        enter_node(-1);
        if (check != NULL && !check(arg))
            return false;
    }
}

/* ---- nodes ---------------------------------------------------------------------------------- */

void sim_node_add(uint32_t i, struct broker_config *cfg,
                  int (*setup)(struct broker_dispatch *d, struct broker_config *cfg))
{
    LM_ASSERT(i < SIM_NODES_MAX && !W.nodes[i].added);
    W.nodes[i].added = true;
    W.nodes[i].cfg = cfg;
    W.nodes[i].setup = setup;
}

bool sim_node_up(uint32_t i)
{
    return W.nodes[i].up;
}

struct broker_shard *sim_node_shard(uint32_t i)
{
    return W.nodes[i].up ? W.nodes[i].shard : NULL;
}

const struct broker_config *sim_node_config(uint32_t i)
{
    return W.nodes[i].cfg;
}

static void node_free_shard(struct sim_node *n)
{
    /* requests the handler layer never completed (they died with it) */
    while (n->reqs != NULL) {
        struct broker_req *req = n->reqs;
        struct broker_peer *p = req_peer(req);
        for (struct broker_req **pp = &p->rq_head; *pp != NULL; pp = &(*pp)->next_)
            if (*pp == req) {
                *pp = req->next_;
                break;
            }
        p->rq_tail = NULL;
        for (struct broker_req *r = p->rq_head; r != NULL; r = r->next_)
            p->rq_tail = r;
        req_unlink_node(req, req_ext(req));
        p->srv_reqs--;
        req_free_now(req);
        peer_maybe_free(p);
    }
    /* UDP sockets the handler layer left open */
    for (struct broker_udp **pp = &W.udps; *pp != NULL;) {
        struct broker_udp *u = *pp;
        if (u->node == (uint32_t)(n - W.nodes)) {
            *pp = u->next;
            free(u);
        } else {
            pp = &u->next;
        }
    }
    if (n->shard != NULL) {
        free(n->shard->th);
        free(n->shard);
        n->shard = NULL;
    }
}

int sim_node_start(uint32_t i)
{
    struct sim_node *n = &W.nodes[i];
    LM_ASSERT(n->added && !n->up);
    n->gen++;
    enter_node((int32_t)i);
    memset(&n->d, 0, sizeof(n->d));
    int rc = n->setup(&n->d, n->cfg);
    if (rc == 0)
        rc = broker_config_finish(n->cfg);
    if (rc != 0) {
        if (n->d.teardown != NULL)
            n->d.teardown(n->d.ctx);
        enter_node(-1);
        return rc;
    }
    n->shard = calloc(1, sizeof(*n->shard));
    LM_ASSERT(n->shard != NULL);
    n->shard->node = i;
    n->shard->cfg = n->cfg;
    n->shard->d = &n->d;
    n->up = true;
    rc = n->d.shard_start(n->shard, n->d.ctx);
    enter_node(-1);
    if (rc != 0) {
        sim_node_crash(i, SIM_DISK_KEEP);
        return rc;
    }
    return 0;
}

static bool node_local_event(const struct sim_ev *e, uint32_t node)
{
    if (e->node != (int32_t)node || e->gen != W.nodes[node].gen)
        return false;
    return e->kind == EV_XCALL_RUN || e->kind == EV_XCALL_DONE || e->kind == EV_FSYNC ||
           e->kind == EV_META || e->kind == EV_CALL_FAIL;
}

/* Runs node i's local events (cross-shard calls and returns, fsyncs, failed calls) until none
 * is left: what the node's own work completes while it goes away. */
static void node_quiesce(uint32_t i)
{
    for (uint32_t step = 0; step < SIM_QUIESCE_STEPS; step++) {
        struct sim_ev *next = NULL;
        for (uint32_t k = 0; k < W.hn; k++)
            if (node_local_event(W.heap[k], i) && (next == NULL || ev_less(W.heap[k], next)))
                next = W.heap[k];
        if (next == NULL)
            break;
        heap_remove(next);
        run_event(next);
        graveyard_free();
        enter_node((int32_t)i);
    }
}

/* Takes node i down: a crash (its unsynced writes meet `disk`, nothing it writes from now on
 * reaches the disk) or a clean stop (it flushes and its writes reach the disk, as a process
 * that exits leaves them in the page cache). */
static void node_down(uint32_t i, enum sim_crash_disk disk, bool clean)
{
    struct sim_node *n = &W.nodes[i];
    LM_ASSERT(n->shard != NULL);
    n->stopping = clean;
    W.dfault[i].kind = SIM_DISK_OK; /* a disk fault ends with the process that met it */
    /* The process is gone for the network at once: every connection to or from it resets. */
    /* The metadata worker may have got through a job the shard never heard of (written,
     * synced, renamed, the directory synced, and then the crash): such a job's state is on
     * the disk but nothing that waited for it was sent. Each job not yet answered is so
     * kept or not, at random (a clean stop runs them all, below). */
    enter_node((int32_t)i);
    for (uint32_t k = 0; !clean && k < W.hn; k++) {
        struct sim_ev *e = W.heap[k];
        if (e->kind == EV_META && node_local_event(e, i) && sim_rand_below(2) == 0) {
            struct broker_meta_job *j = e->arg;
            (void)j->run(j);
            W.meta_jobs_kept++;
        }
    }
    n->up = false;
    n->quiescing = true;
    n->shard->draining = true;
    disk_crash(i, disk);
    for (struct broker_peer *p = W.peers; p != NULL; p = p->next_all) {
        if (p->dst_node == (int32_t)i && p->connected && p->dst_gen == n->gen)
            peer_fail(p, LM_E_IO, ECONNRESET, net_delay_us());
        if (p->shard == n->shard && p->err == 0) {
            p->err = LM_E_CLOSED;
            p->srv_broken = true;
            schedule_call_fail(p);
        }
    }
    /* Its memory is freed the way the handler layer frees it: parked work completes into the
     * void (responses go nowhere), calls in flight fail, then the shard stops. Nothing is
     * flushed that was not already written: files stay as a killed process leaves them. */
    enter_node((int32_t)i);
    if (n->d.shard_drain != NULL)
        n->d.shard_drain(n->shard, n->d.ctx);
    node_quiesce(i);
    if (clean && n->d.shard_flush != NULL) {
        n->d.shard_flush(n->shard, n->d.ctx);
        node_quiesce(i);
    }
    if (n->d.shard_stop != NULL)
        n->d.shard_stop(n->shard, n->d.ctx);
    /* what the stop completed (a proposal failed by closing its log returns to its origin) */
    node_quiesce(i);
    if (n->d.teardown != NULL)
        n->d.teardown(n->d.ctx);
    graveyard_free();
    /* Connections the handler layer did not close itself die with the process. */
    for (struct broker_peer *p = W.peers; p != NULL;) {
        struct broker_peer *next = p->next_all;
        if (p->shard == n->shard) {
            p->shard = NULL; /* its calls' owners are gone: nothing more completes */
            p->calls_head = p->calls_tail = p->unsent = NULL;
            p->count = 0;
            if (!p->owner_closed) {
                p->owner_closed = true;
                peer_maybe_free(p);
            }
        }
        p = next;
    }
    node_free_shard(n);
    n->quiescing = false;
    n->stopping = false;
    if (clean)
        disk_crash(i, SIM_DISK_KEEP); /* the machine stays up: what was written stays */
    n->gen++;                         /* events scheduled for this life are dropped */
    enter_node(-1);
}

void sim_node_crash(uint32_t i, enum sim_crash_disk disk)
{
    node_down(i, disk, false);
}

void sim_node_stop(uint32_t i)
{
    node_down(i, SIM_DISK_KEEP, true);
}

bool sim_node_handoff_begin(uint32_t i)
{
    struct sim_node *n = &W.nodes[i];
    LM_ASSERT(n->up);
    if (n->d.handoff_begin == NULL || n->d.handoff_done == NULL)
        return false;
    enter_node((int32_t)i);
    n->d.handoff_begin(n->d.ctx);
    enter_node(-1);
    return true;
}

bool sim_node_handoff_done(uint32_t i)
{
    struct sim_node *n = &W.nodes[i];
    LM_ASSERT(n->up);
    enter_node((int32_t)i);
    bool done = n->d.handoff_done(n->d.ctx);
    enter_node(-1);
    return done;
}

void sim_world_init(uint64_t seed, const struct sim_net_params *net)
{
    memset(&W, 0, sizeof(W));
    uint64_t x = seed;
    for (int k = 0; k < 4; k++) { /* splitmix64 */
        x += 0x9e3779b97f4a7c15ull;
        uint64_t z = x;
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
        W.rng[k] = z ^ (z >> 31);
    }
    W.net = *net;
    W.now_us = SIM_MONO_START_US;
    W.hash = 0xcbf29ce484222325ull;
    W.cur_node = -1;
    W.active = true;
}

void sim_world_deinit(void)
{
    for (uint32_t i = 0; i < SIM_NODES_MAX; i++) {
        struct sim_node *n = &W.nodes[i];
        LM_ASSERT(!n->up);
        if (n->added) {
            broker_config_deinit(n->cfg);
            free(n->cfg);
        }
    }
    while (W.hn > 0) {
        struct sim_ev *e = W.heap[W.hn - 1];
        W.hn--;
        if (e->peer != NULL)
            e->peer->refs--;
        free(e->data);
        free(e);
    }
    free(W.heap);
    while (W.peers != NULL) {
        struct broker_peer *p = W.peers;
        W.peers = p->next_all;
        unread_drop(p);
        free(p);
    }
    while (W.udps != NULL) {
        struct broker_udp *u = W.udps;
        W.udps = u->next;
        free(u);
    }
    for (uint32_t i = 0; i < SIM_NODES_MAX; i++)
        while (W.unsynced[i] != NULL) {
            struct sim_wr *w = W.unsynced[i];
            W.unsynced[i] = w->next;
            free(w->old);
            free(w);
        }
    W.active = false;
    broker_log_set_shard(-1);
}
