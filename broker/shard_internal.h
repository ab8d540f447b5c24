/* Private to the runtime: the shard, connection and I/O backend structures shared by shard.c
 * (the backend-independent core) and the two backends (io_uring.c, io_epoll.c). */
#ifndef LAMINAR_BROKER_SHARD_INTERNAL_H
#define LAMINAR_BROKER_SHARD_INTERNAL_H

/* A file slice of an outgoing message that ends before its length (the file was cut under it:
 * a former partition leader's tail truncated while a replication append or a fetch answer
 * naming it waited to be sent). The frame cannot be completed: the connection is closed, and
 * the peer or client asks again. Expected under leadership changes, so a warning. */
#define BROKER_FILE_PART_CUT_FMT                                                                   \
    "conn %u: a file slice ends before its length (its log was cut under it): connection closed"

#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "broker/connquota.h"
#include "broker/frame.h"
#include "broker/mailbox.h"
#include "broker/respq.h"
#include "broker/runtime.h"
#include "broker/metrics.h"
#include "broker/security/tls.h"

struct broker_shard;
struct broker_conn;
struct broker_rt;

/* user_data of an io_uring SQE / epoll event: {op:8, slot:24, generation:32} (liburing style),
 * so a completion for a connection slot that has since been reused is recognised and dropped. */
enum broker_op {
    BROKER_OP_NONE,
    BROKER_OP_ACCEPT,
    BROKER_OP_RECV,
    BROKER_OP_SEND,
    BROKER_OP_CANCEL,
    BROKER_OP_WAKE_READ, /* eventfd read (external or fallback wakeups) */
    BROKER_OP_MSG_RING,  /* the sender's own completion for a MSG_RING */
    BROKER_OP_WAKE_MSG,  /* the CQE a MSG_RING posts on the target ring */
    BROKER_OP_CONN,      /* epoll: connection readiness */
    BROKER_OP_FSYNC,     /* IORING_OP_FSYNC; slot = the shard's fsync slot */
    BROKER_OP_HUP_POLL,  /* io_uring: POLLRDHUP watch on a connection whose reading is paused */
    BROKER_OP_CONNECT,   /* io_uring: IORING_OP_CONNECT of an outbound connection */
    BROKER_OP_UDP,       /* a UDP socket: slot = its index in the shard, gen = its generation */
};

static inline uint64_t broker_ud(enum broker_op op, uint32_t slot, uint32_t gen)
{
    return ((uint64_t)op << 56) | ((uint64_t)(slot & 0xffffff) << 32) | gen;
}
static inline enum broker_op broker_ud_op(uint64_t ud)
{
    return (enum broker_op)(ud >> 56);
}
static inline uint32_t broker_ud_slot(uint64_t ud)
{
    return (uint32_t)(ud >> 32) & 0xffffff;
}
static inline uint32_t broker_ud_gen(uint64_t ud)
{
    return (uint32_t)ud;
}

enum { BROKER_SEND_IOV_MAX = 8 };

struct broker_conn {
    struct broker_shard *shard;
    int fd;
    uint32_t slot;
    uint32_t gen;
    char peer[64];
    /* the listener it came in on (index into cfg->listeners) and that listener's table */
    uint8_t listener;
    const struct broker_api_entry *apis;
    struct broker_conn_auth auth; /* client connections: SASL state (runtime.h) */
    /* SSL / SASL_SSL listeners: the TLS engine between the socket and the framing (conn.c);
     * NULL on plaintext connections. While tls_send_busy the backend is sending ciphertext
     * from the engine's buffer (never from a response's memory). */
    struct broker_tls_conn *tls;
    bool tls_send_busy;
    bool tls_principal_set; /* the handshake's principal is in auth.principal */
    /* an outbound connection (peer.c): its owner's handle; NULL for a client connection */
    struct broker_peer *out;
    struct broker_connquota_slot quota; /* what the connection holds of the process's quotas */
    struct broker_frame_reader fr;
    struct broker_respq rq;
    /* bytes received while reading was paused (backpressure), fed first on resume */
    uint8_t *stash;
    size_t stash_len, stash_off, stash_cap;
    uint32_t reqs_live; /* requests allocated on this connection, not yet freed */
    bool closing;       /* no more reading or sending; freed when I/O and requests are done */
    bool paused;        /* reading stopped (in-flight bound or shard memory) */
    bool waiting_mem;   /* on the shard's memory wait list */
    /* muted by a quota (broker_req_throttle): reading stays paused until mute_timer fires */
    bool muted;
    uint64_t muted_until_ms;
    struct broker_timer mute_timer;
    /* the peer sent FIN while reading was paused; what it sent before is all in the stash,
     * served on resume, and the connection closes once the stash is consumed */
    bool peer_fin;
    bool io_closed; /* the backend has released the fd */
    /* idle sweeps in a row that found nothing in flight and no bytes either way (reset by
     * every receive and send completion: one store, no clock read) */
    uint32_t idle_ticks;
    /* backend state */
    bool recv_armed;
    bool recv_cancel_sent;
    bool hup_armed; /* io_uring: the POLLRDHUP watch of a paused connection is in the kernel */
    bool hup_cancel_sent;
    bool fin_seen; /* io_uring: the watch saw a FIN while a cancelled recv was still armed */
    bool send_busy;
    bool send_cancel_sent;
    bool connecting; /* an outbound connect is in flight in the backend */
    bool connect_cancel_sent;
    bool epoll_out;
    bool epoll_in_set;
    uint32_t epoll_events;
    struct broker_conn *wait_next;
    /* the response (or outbound request) being sent */
    struct broker_out_ *sending;
    uint32_t part;   /* the part being sent: 0 the prefix, 1.. the body's parts */
    size_t part_off; /* bytes of it already sent */
    struct iovec iov[BROKER_SEND_IOV_MAX];
    int iovcnt;
    struct msghdr msg;
    /* io_uring file parts: splice through this pipe (created on first use) */
    int pipe_r, pipe_w;
    size_t pipe_cap, pipe_bytes; /* capacity; bytes spliced in and not yet out */
    uint8_t splice_phase;        /* 0 none, 1 file -> pipe in flight, 2 pipe -> socket, 3 POLLOUT */
};

/* The I/O backend: io_uring or epoll, same interface. None of these block. */
struct broker_io_ops {
    const char *name;
    int (*init)(struct broker_shard *s);
    void (*deinit)(struct broker_shard *s);
    int (*listen_start)(struct broker_shard *s);
    void (*listen_stop)(struct broker_shard *s);
    /* Stop / restart taking connections off the listeners (backoff after EMFILE and the like,
     * max.connections, max.connection.creation.rate); connections already accepted may still
     * be reported after accept_pause. */
    void (*accept_pause)(struct broker_shard *s);
    void (*accept_resume)(struct broker_shard *s);
    int (*conn_open)(struct broker_shard *s, struct broker_conn *c);
    /* Starts a non-blocking connect of c->fd to addr (kept valid by the caller until
     * broker_core_on_connected); returns 0 or an LM_E_* (then no completion follows). */
    int (*conn_connect)(struct broker_shard *s, struct broker_conn *c, const struct sockaddr *addr,
                        socklen_t addr_len);
    /* Starts receiving on UDP socket u; returns 0 or an LM_E_*. */
    int (*udp_open)(struct broker_shard *s, struct broker_udp *u);
    /* Stops receiving on u; returns 1 when the fd can be closed now, 0 when
     * broker_core_on_udp_closed follows. */
    int (*udp_close)(struct broker_shard *s, struct broker_udp *u);
    void (*recv_pause)(struct broker_shard *s, struct broker_conn *c);
    void (*recv_resume)(struct broker_shard *s, struct broker_conn *c);
    /* Sends c->iov; returns bytes sent now (>= 0) or LM_E_AGAIN (broker_core_on_sent later),
     * or another negative error (the caller closes). */
    int (*send)(struct broker_shard *s, struct broker_conn *c);
    /* Sends up to len bytes of file fd at offset, the same way as send. */
    int (*send_file)(struct broker_shard *s, struct broker_conn *c, int fd, uint64_t offset,
                     size_t len);
    /* Stops all I/O on c; returns 1 when the fd is released now, 0 when broker_core_on_io_closed
     * will be called later. */
    int (*conn_shutdown)(struct broker_shard *s, struct broker_conn *c);
    /* Starts fsync f (f->slot_ assigned) and returns 0, completing later through
     * broker_core_on_fsync; NULL: the core's sync worker thread does it. */
    int (*fsync)(struct broker_shard *s, struct broker_fsync *f);
    /* Wakes shard `to` (from shard s, or from a non-shard thread when s is NULL). */
    void (*wake)(struct broker_shard *s, struct broker_shard *to);
    /* One loop turn: waits up to timeout_ms (-1 = forever) and handles a batch of events. */
    int (*wait)(struct broker_shard *s, int timeout_ms);
};

extern const struct broker_io_ops broker_io_uring_ops;
extern const struct broker_io_ops broker_io_epoll_ops;
/* True when this kernel lets us create an io_uring with the features the backend needs. */
bool broker_io_uring_available(char *why, size_t why_len);

enum { BROKER_SHARDS_MAX = 128, BROKER_ACCEPT_HELD_MAX = 64 };

/* A UDP socket of a shard (udp.c). */
struct broker_udp {
    struct broker_shard *shard;
    int fd;
    uint32_t index; /* in shard->udp */
    uint32_t gen;
    uint16_t port;
    broker_udp_recv_fn recv;
    void *arg;
    bool closing;
    /* io_uring */
    bool recv_armed;
    bool recv_cancel_sent;
    struct msghdr msg; /* multishot recvmsg template (msg_namelen) */
};

struct broker_xcall_list {
    struct broker_xcall *head, *tail;
};

/* Metadata worker threads per shard (broker_shard_meta_job): concurrent fdatasyncs of small
 * files share the file system's journal commits (ext4's jbd2), so a few threads finish a burst
 * of state files several times faster than one (this machine: ~0.9-2.2 ms per file alone,
 * 0.3 ms with 8 threads). */
#define BROKER_META_THREADS 4

struct broker_shard {
    struct broker_shard_metrics *metrics; /* written by this shard only (broker/metrics.h) */
    bool metrics_on;                      /* laminar.metrics.enable */
    struct broker_req *dispatching;       /* the request whose handler runs now (local time) */
    uint32_t id;
    uint32_t nshards;
    struct broker_rt *rt;
    const struct broker_config *cfg;
    const struct broker_dispatch *dispatch;
    const struct broker_io_ops *io;
    void *user;
    int cpu; /* pinned CPU or -1 */
    /* listening sockets of this shard, one per listener, and each listener's table */
    int listen_fds[BROKER_LISTENERS_MAX];
    const struct broker_api_entry *listen_apis[BROKER_LISTENERS_MAX];
    bool listen_tls[BROKER_LISTENERS_MAX]; /* a TLS listener (broker_rt_tls_conn_new) */
    uint32_t listen_count;
    bool listening;
    /* connections */
    struct broker_conn **conns; /* by slot */
    uint32_t *gens;             /* generation per slot */
    uint32_t *free_slots;
    uint32_t free_count;
    uint32_t conns_max;
    uint32_t conns_open;         /* accepted connections (the BPF selector's and quotas' count) */
    uint32_t peers_open;         /* outbound connections not yet freed */
    uint32_t peer_calls_failing; /* calls of outbound connections waiting for their done() */
    bool loop_done;              /* broker_shard_run has returned: no more completions or timers */
    bool conns_closed;           /* shutdown closed every connection: no new outbound ones */
    /* UDP sockets, by index; udp_gen tells completions of a reused index apart */
    struct broker_udp *udp[BROKER_UDP_PER_SHARD_MAX];
    uint32_t udp_gen;
    uint32_t udp_open;
    /* memory bound for request frames, responses and stashes */
    int64_t mem_used;
    int64_t mem_max;
    int64_t mem_partial;         /* part of mem_used held by frames still being received */
    int64_t mem_stash;           /* part of mem_used held by receive stashes */
    int64_t conn_frame_free_max; /* a partial frame up to this size needs no token */
    struct broker_conn *mem_big; /* holds the shard's one large-frame token, or NULL */
    struct broker_conn *mem_wait_head;
    struct broker_conn *mem_resume_head; /* waiters mem_release is trying now */
    bool mem_resuming;                   /* mem_release is resuming waiters (no re-entry) */
    /* cross-shard */
    struct broker_xcall_list overflow[BROKER_SHARDS_MAX]; /* per target, mailbox was full */
    struct broker_xcall_list local;                       /* calls to self */
    bool wake_pending[BROKER_SHARDS_MAX];
    uint32_t wakes_pending; /* how many of wake_pending are set */
    bool work_pending;
    int event_fd; /* external wakeups (signals) and the MSG_RING fallback */
    /* timers: binary min-heap by deadline */
    struct broker_timer **timers;
    uint32_t timers_count, timers_cap;
    /* shutdown */
    bool draining;
    /* asynchronous fsyncs: slots in flight (BROKER_FSYNC_INFLIGHT_MAX), calls waiting for one */
    struct broker_fsync *fsync_slots[BROKER_FSYNC_INFLIGHT_MAX];
    uint32_t fsync_free[BROKER_FSYNC_INFLIGHT_MAX];
    uint32_t fsync_free_count;
    uint32_t fsyncs_inflight;
    struct broker_fsync *fsync_wait_head, *fsync_wait_tail;
    struct broker_sync_worker *sync_worker; /* started on first use when io->fsync is NULL */
    /* blocking file work (broker_shard_meta_job): jobs on the metadata workers (at most
     * BROKER_META_JOBS_INFLIGHT_MAX; each to the least loaded thread) and calls waiting for
     * room, in order */
    struct broker_sync_worker *meta_workers[BROKER_META_THREADS]; /* started on first use */
    uint32_t meta_load[BROKER_META_THREADS];
    uint32_t meta_inflight;
    struct broker_meta_job *meta_wait_head, *meta_wait_tail;
    /* laminar.fault.disk.control (tests only; NULL: off): a file naming a delay every fsync
     * waits first; with it, fsyncs go through the sync worker whatever the backend */
    const char *fault_disk_control;
    const char *fsync_gate;          /* test hook LAMINAR_TEST_FSYNC_GATE, or NULL */
    struct broker_fsync *fsync_held; /* finished while the gate file existed */
    struct broker_timer fsync_gate_timer;
    /* connections.max.idle.ms: a sweep every idle_period_ms closes connections idle for
     * idle_ticks_max sweeps (idle_ticks_max 0: disabled) */
    struct broker_timer idle_timer;
    uint32_t idle_period_ms;
    uint32_t idle_ticks_max;
    /* accepting: paused after EMFILE-like errors (backoff doubling from ACCEPT_BACKOFF_MIN_MS
     * to ACCEPT_BACKOFF_MAX_MS, reset by a successful accept) or by the quotas; accepted
     * connections the quotas made wait are held (in order) until they allow them */
    struct broker_connquota *quota;
    bool accept_paused;
    uint32_t accept_backoff_ms;
    struct broker_timer accept_timer;
    struct broker_accept_held {
        int fd;
        uint32_t listener;
    } accept_held[BROKER_ACCEPT_HELD_MAX];
    uint32_t accept_held_count;
    /* the BPF selector's count of this shard, checked against the truth every second */
    struct broker_timer selector_timer;
    uint64_t selector_prev;
    /* backend private */
    void *io_state;
    /* scratch for epoll reads */
    uint8_t *scratch;
    size_t scratch_len;
    /* TLS connections: decrypted records land in tls_plain, plaintext to encrypt (response
     * parts, file slices read with pread) is gathered in tls_gather; both
     * BROKER_TLS_RECORD_BYTES, made with the shard's first TLS connection */
    uint8_t *tls_plain;
    uint8_t *tls_gather;
};

/* Core callbacks used by the backends. */
void broker_core_on_accept(struct broker_shard *s, uint32_t listener, int fd);
/* The connect of outbound c finished: res 0 or -errno. */
void broker_core_on_connected(struct broker_shard *s, struct broker_conn *c, int res);
/* A datagram arrived on u. */
void broker_core_on_udp(struct broker_shard *s, struct broker_udp *u, const uint8_t *data,
                        size_t len, const struct sockaddr *from, socklen_t from_len);
/* The backend has let go of closing u: the core closes its fd and frees it. */
void broker_core_on_udp_closed(struct broker_shard *s, struct broker_udp *u);
/* The UDP socket at index/gen, or NULL when it was closed (or the index reused). */
struct broker_udp *broker_core_udp(struct broker_shard *s, uint32_t index, uint32_t gen);
/* Frees the UDP sockets still open (the shard loop is over: no completion will come). */
void broker_core_udp_free_all(struct broker_shard *s);
/* accept failed with errno err; the core pauses accepting when the error calls for it. */
void broker_core_on_accept_error(struct broker_shard *s, int err);
void broker_core_on_data(struct broker_shard *s, struct broker_conn *c, const uint8_t *p, size_t n);
void broker_core_on_eof(struct broker_shard *s, struct broker_conn *c, int err);
/* The peer half-closed while c was paused, and the backend has since read the socket to its end
 * (everything went to the stash through broker_core_on_data). */
void broker_core_on_peer_fin(struct broker_shard *s, struct broker_conn *c);
void broker_core_on_sent(struct broker_shard *s, struct broker_conn *c, int res);
void broker_core_on_io_closed(struct broker_shard *s, struct broker_conn *c);
void broker_core_on_wake(struct broker_shard *s);
/* An fsync of slot finished with res (0 or -errno). */
void broker_core_on_fsync(struct broker_shard *s, uint32_t slot, int res);
/* The connection of slot/gen, or NULL when the slot was freed or reused. */
struct broker_conn *broker_core_conn(struct broker_shard *s, uint32_t slot, uint32_t gen);
/* Whether the core wants more data on c now (not paused, not closing, stash empty). */
bool broker_core_conn_wants_data(const struct broker_conn *c);

/* Shared by the core's files (shard.c, peer.c, udp.c). */
/* A connection in slot of shard s for fd (the slot table must have room). Not yet started. */
struct broker_conn *broker_core_conn_new(struct broker_shard *s, int fd);
/* Closes c (idempotent): drops what is queued, stops I/O, frees it when nothing holds it. */
void broker_core_conn_close(struct broker_conn *c, const char *why);
/* Starts sending what c has queued. */
void broker_core_conn_pump(struct broker_conn *c);
/* The frame reader's allocator (charged to the shard's memory budget). */
int broker_core_frame_grow(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap,
                           uint32_t size, uint8_t **out);
/* Frees a finished frame's memory (a response of an outbound connection, once delivered). */
void broker_core_frame_release(struct broker_conn *c, uint8_t *body);
/* peer.c: the core's hooks for outbound connections. */
struct broker_out_ *broker_peer_next_out_(struct broker_conn *c);
void broker_peer_on_sent_(struct broker_conn *c, struct broker_out_ *o);
void broker_peer_on_frame_(struct broker_conn *c, uint8_t *body, uint32_t size);
void broker_peer_on_close_(struct broker_conn *c, int err, int sys_errno);
void broker_peer_on_free_(struct broker_conn *c);
void broker_peer_on_connected_(struct broker_conn *c);
/* conn.c: starts the TLS handshake of a node-to-node connection that has just connected. */
void broker_core_tls_peer_start(struct broker_conn *c);

/* Shard lifecycle, used by runtime.c. */
int broker_shard_init(struct broker_shard *s, struct broker_rt *rt, uint32_t id, uint32_t n,
                      const struct broker_config *cfg, const struct broker_dispatch *d,
                      const struct broker_io_ops *io);
void broker_shard_deinit(struct broker_shard *s);
/* Runs the shard loop on the calling thread until shutdown completes. */
int broker_shard_run(struct broker_shard *s);
/* Frees the handlers' per-shard state (shard_stop hook) and the sync worker, after every shard
 * has left broker_shard_run. */
void broker_shard_stop(struct broker_shard *s);

/* runtime.c services for shards */
struct broker_mailbox *broker_rt_mailbox(struct broker_rt *rt, uint32_t from, uint32_t to);
/* A TLS engine for a new connection on a TLS listener, from the listener's current context
 * (certificates are reloaded when their files change); NULL without memory. */
struct broker_tls_conn *broker_rt_tls_conn_new(struct broker_rt *rt, uint32_t listener);
/* A client TLS engine for a node-to-node connection to host (the controller listener is SSL:
 * the runtime's current peer context), or NULL (out of memory, or no peer context). */
struct broker_tls_conn *broker_rt_tls_peer_conn_new(struct broker_rt *rt, const char *host);
struct broker_shard *broker_rt_shard(struct broker_rt *rt, uint32_t id);
bool broker_rt_stopping(struct broker_rt *rt);
/* An accepted connection of shard closed (or was refused): the BPF selector counted it. */
void broker_rt_conn_closed(struct broker_rt *rt, uint32_t shard);
struct broker_connquota *broker_rt_quota(struct broker_rt *rt);
/* The BPF selector's count for shard: see lm_bpf_reconcile. False without a selector. */
bool broker_rt_selector_reconcile(struct broker_rt *rt, uint32_t shard, uint32_t truth,
                                  uint64_t *prev);
bool broker_rt_has_selector(struct broker_rt *rt);
/* Counts this shard as drained; all_drained is true once every shard has. */
void broker_rt_shard_drained(struct broker_rt *rt);
bool broker_rt_all_drained(struct broker_rt *rt);
/* Cross-shard calls in flight in this runtime: +1 when a call is sent, -1 after its done(). */
void broker_rt_xcalls_add(struct broker_rt *rt, int64_t delta);
/* Counts this shard as finished with its shutdown sequence (it only turns its loop now). */
void broker_rt_shard_final(struct broker_rt *rt);
/* True once every shard is final and no cross-shard call is in flight (sticky). */
bool broker_rt_quiesced(struct broker_rt *rt);
/* Waits until every shard has set up its backend (so ring fds are known). */
void broker_rt_barrier(struct broker_rt *rt);

/* ---- shared by shard.c, conn.c and shard_services.c (one shard's core, split by concern) ---- */

enum req_state { REQ_PENDING = 0, REQ_DONE, REQ_NONE };

enum {
    /* bound on work per loop turn, so one busy source cannot starve the others */
    XCALLS_PER_TURN = 1024,
    STASH_BYTES_MIN = 4096,
};

/* Defined in one of the three files, used by another. */
void mem_kick(struct broker_shard *s);
void mem_release(struct broker_shard *s, size_t n);
void mem_unwait(struct broker_conn *c);
void frame_settle(struct broker_conn *c, size_t held);
int frame_grow(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap, uint32_t size,
               uint8_t **out);
struct broker_req *req_of_frame(uint8_t *body);
void frame_free(void *ctx, uint8_t *body);
void accept_refuse(struct broker_shard *s, int fd);
void conn_hold(struct broker_conn *c);
void conn_unhold(struct broker_conn *c);
void conn_close(struct broker_conn *c, const char *why);
void req_free(struct broker_req *req);
void conn_try_resume(struct broker_conn *c);
void out_release(struct broker_conn *c, struct broker_out_ *o);
void req_close_files(struct broker_req *req);
void conn_pump(struct broker_conn *c);
void xcalls_process(struct broker_shard *s);
void xcalls_wake_flush(struct broker_shard *s);
void sync_worker_stop(struct broker_shard *s);
void fsync_poll(struct broker_shard *s);
bool fsync_pending(const struct broker_shard *s);
int timers_run(struct broker_shard *s);
int idle_start(struct broker_shard *s);

/* The backends' part of the shard-load metrics: the time a wait blocked (idle), and per loop
 * turn the submissions made and the completions (events) taken. t0 from shard_idle_begin. */
static inline uint64_t shard_idle_begin(const struct broker_shard *s)
{
    return s->metrics_on ? broker_now_us() : 0;
}

static inline void shard_idle_end(struct broker_shard *s, uint64_t t0, uint64_t submitted,
                                  uint64_t completed)
{
    if (!s->metrics_on)
        return;
    struct broker_shard_metrics *m = s->metrics;
    broker_metric_add(&m->idle_us, broker_now_us() - t0);
    broker_metric_add(&m->loop_turns, 1);
    broker_metric_add(&m->loop_submitted, submitted);
    broker_metric_add(&m->loop_completed, completed);
}

#endif
