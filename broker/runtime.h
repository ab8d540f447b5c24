/* The shard runtime's interface for the handler layer (DESIGN.md §2).
 *
 * A request arrives as a struct broker_req on the shard that owns its connection. The handler
 * registered for its API key runs on that shard and completes the request exactly once, now or
 * later (a Fetch long-poll, a cross-shard call), with broker_req_respond / _respond_none. The
 * runtime frames the response (length, response header v0 or v1) and sends responses of a
 * connection in request order. Everything here is called on the shard's own thread; nothing
 * blocks and nothing takes a lock. */
#ifndef LAMINAR_BROKER_RUNTIME_H
#define LAMINAR_BROKER_RUNTIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "broker/config.h"
#include "protocol/kafka_rt.h"

enum { BROKER_API_KEYS_MAX = 128 };

struct broker_shard;
struct broker_conn;
struct broker_metrics_out;

/* One piece of a response body: bytes in memory, or a slice of a file the runtime sends without
 * copying it through user space (DESIGN.md §2; epoll: sendfile(2); io_uring: IORING_OP_SPLICE
 * file -> the connection's pipe -> socket). */
struct broker_resp_part {
    const void *mem; /* NULL: a file slice */
    int fd;          /* file slice: taken by the runtime (broker_req_respond_parts) */
    uint64_t offset; /* file slice: position in the file */
    size_t len;
};

/* Private to the runtime: one message a connection sends, a response (the size and response
 * header in prefix, then the body's parts) or an outbound request (the size and request header
 * in prefix, then the caller's parts). */
enum { BROKER_OUT_PREFIX_MAX = 48 };
struct broker_out_ {
    struct broker_resp_part *parts; /* the body: &body or an array */
    uint32_t nparts;
    struct broker_resp_part body;
    uint8_t prefix_len;
    uint8_t prefix[BROKER_OUT_PREFIX_MAX];
};

/* A connection's authentication (SASL: KIP-43, KIP-152; re-authentication: KIP-368). On a
 * listener whose security protocol is SASL_PLAINTEXT the runtime serves only ApiVersions (18),
 * SaslHandshake (17) and SaslAuthenticate (36) until the handler layer sets authenticated, and
 * again once expiry_ms has passed; any other request closes the connection, as Kafka's
 * SaslServerAuthenticator does. The handler layer owns every field but `sasl`. */
enum { BROKER_PRINCIPAL_BYTES = 272 };
struct broker_conn_auth {
    bool sasl;          /* set by the runtime: the listener's protocol is SASL_PLAINTEXT */
    bool authenticated; /* a SASL exchange succeeded on this connection */
    /* SaslHandshake v0 (KIP-43): the next frames are bare SASL tokens, without a request
     * header, answered by bare frames; the runtime hands them to broker_dispatch.auth_raw
     * as requests with sasl_raw set, until the handler layer clears this */
    bool raw_tokens;
    uint64_t expiry_ms; /* broker_now_ms() when the session ends (KIP-368); 0: never */
    /* "User:<name>" once authenticated (Kafka's KafkaPrincipal), "User:ANONYMOUS" on a
     * PLAINTEXT listener; for the authorizer */
    char principal[BROKER_PRINCIPAL_BYTES];
    void *state; /* the exchange in progress; freed by broker_dispatch.auth_free */
};

struct broker_req {
    /* Request header (v1/v2). client_id borrows from the frame; NULL when null. */
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    const char *client_id;
    int16_t client_id_len;
    /* The request body after the header (and its tagged fields when flexible). */
    const uint8_t *body;
    size_t body_len;
    bool flexible; /* request header v2 / compact encodings (KIP-482) */
    /* A bare SASL token (broker_conn_auth.raw_tokens): body is the whole frame, api_key 17,
     * and the response is sent as a bare frame (length, body), without a response header. */
    bool sasl_raw;
    /* The listener the connection came in on: an index into broker_config.listeners. */
    uint8_t listener;
    /* Freed with the request, after its response has been sent (the codec's bounded arena,
     * protocol/kafka_rt.h, so decoded requests and encoded responses share it). */
    struct kafka_arena arena;
    struct broker_shard *shard;
    struct broker_conn *conn;
    void *handler_state; /* free for the handler's use */
    /* private to the runtime */
    struct broker_req *next_;
    uint64_t seq_;
    size_t mem_bytes_;
    struct broker_out_ out_;
    uint8_t state_;
    bool close_after_;
    uint64_t start_us_;     /* arrival (broker_now_us), for the request time histogram */
    uint64_t local_end_us_; /* the handler returned without completing it (remote time begins) */
    uint64_t done_us_;      /* completed (the response waits for its turn and is sent) */
};

typedef void (*broker_handler_fn)(struct broker_req *req);

struct broker_api_entry {
    broker_handler_fn fn;         /* NULL: unknown API, the connection is closed (as Kafka) */
    int16_t flexible_version_min; /* first version using header v2, -1 = never */
};

/* A table of handlers by API key. An API without an entry is closed like an unknown key. */
struct broker_api_table {
    struct broker_api_entry apis[BROKER_API_KEYS_MAX];
};

/* A listener served by its own table (Kafka's listener names: a client listener and an
 * inter-broker or controller listener answer different APIs). */
struct broker_listener_table {
    char name[32]; /* as in `listeners`, matched case-insensitively (Kafka upper-cases them) */
    struct broker_api_table table;
};

/* The handler tables plus start/stop hooks. Filled before the runtime starts and read-only
 * afterwards (shared by every shard). apis serves every listener without a table of its own. */
struct broker_dispatch {
    struct broker_api_entry apis[BROKER_API_KEYS_MAX];
    struct broker_listener_table listener_tables[BROKER_LISTENERS_MAX];
    uint32_t listener_tables_count;
    void *ctx;
    /* Called on each shard's thread before it serves; returns 0 or an LM_E_* (aborts start). */
    int (*shard_start)(struct broker_shard *s, void *ctx);
    /* Called on SIGTERM/SIGINT when the shard stops reading requests; handlers should
     * complete parked requests (long-polls) soon. May be NULL. */
    void (*shard_drain)(struct broker_shard *s, void *ctx);
    /* Controlled shutdown: on SIGTERM/SIGINT, before any shard drains, handoff_begin is called
     * once on the signal thread; the shards go on serving everything while the handlers move
     * their work (leaderships) to other nodes, and the runtime waits until handoff_done (polled
     * from the signal thread) says it is over, for at most
     * laminar.controlled.shutdown.timeout.ms, or a second signal. Both may be NULL. */
    void (*handoff_begin)(void *ctx);
    bool (*handoff_done)(void *ctx);
    /* Called once every in-flight request of the shard has completed: flush logs here. */
    void (*shard_flush)(struct broker_shard *s, void *ctx);
    /* Called last on the shard's thread; free per-shard state. May be NULL. */
    void (*shard_stop)(struct broker_shard *s, void *ctx);
    /* Frees ctx; called by the dispatch's owner once the runtime has returned (or never
     * started). May be NULL. */
    void (*teardown)(void *ctx);
    /* Serves a bare SASL token frame (broker_conn_auth.raw_tokens). May be NULL. */
    void (*auth_raw)(struct broker_req *req);
    /* Frees broker_conn_auth.state when its connection is freed. May be NULL. */
    void (*auth_free)(void *state);
    /* A client connection starts closing (on its shard): the requests of it a handler parks
     * (long-polls) may be answered now, their responses are dropped. May be NULL. */
    void (*conn_closing)(struct broker_shard *s, void *ctx, uint64_t conn_id);
    /* A client connection is gone (freed, on its shard, once every request it sent has
     * completed): conn_id is broker_req_conn_id of its requests. May be NULL. */
    void (*conn_closed)(struct broker_shard *s, void *ctx, uint64_t conn_id);
    /* Adds the node's gauges to a metrics scrape (called on the HTTP thread: read only what
     * is safe to read from another thread). May be NULL. */
    void (*metrics_gauges)(void *ctx, struct broker_metrics_out *o);
    /* The cluster's members as SWIM sees them (node id, state 0 alive, 1 suspect, 2 dead,
     * 3 left), at most cap, for the console (called on the HTTP thread). May be NULL. */
    size_t (*node_states)(void *ctx, int32_t *ids, uint8_t *states, size_t cap);
};

/* Registers fn for api_key (0 <= key < BROKER_API_KEYS_MAX). flexible_version_min comes from
 * the generated API table (first flexible version) or -1. Returns 0 or LM_E_INVALID. */
int broker_dispatch_register(struct broker_dispatch *d, int16_t api_key, broker_handler_fn fn,
                             int16_t flexible_version_min);

/* Registers fn for api_key in table t, as broker_dispatch_register does for d->apis. */
int broker_api_table_register(struct broker_api_table *t, int16_t api_key, broker_handler_fn fn,
                              int16_t flexible_version_min);
/* The table serving listener `name` alone (created empty on the first call for that name),
 * or NULL when BROKER_LISTENERS_MAX listeners already have one or the name is too long. The
 * runtime refuses to start when no listener has that name. */
struct broker_api_table *broker_dispatch_listener_table(struct broker_dispatch *d,
                                                        const char *name);

/* The advertised endpoint of the listener req came in on (the advertised listener of the same
 * name, else the first advertised listener): what Metadata returns to that client (Kafka
 * answers each client with the endpoints of its own listener). */
const struct broker_listener *broker_req_advertised(const struct broker_req *req);

/* Completes req with a response body (without the length or response header: the runtime adds
 * them). body must stay valid until the request is freed: put it in req->arena. */
void broker_req_respond(struct broker_req *req, const void *body, size_t len);
/* Completes req with a body made of parts[0..count) (the array and memory parts in req->arena,
 * valid until the request is freed). The fds of file parts (mem == NULL) are taken: the runtime
 * closes them when the request is freed, sent or dropped; each file must hold len bytes at
 * offset until then (a shorter file closes the connection: the frame cannot be completed). */
void broker_req_respond_parts(struct broker_req *req, struct broker_resp_part *parts,
                              uint32_t count);
/* Completes req without a response (Produce acks=0); later responses still keep their order. */
void broker_req_respond_none(struct broker_req *req);
/* Asks the runtime to close the connection once this request's response (if any) has left. */
void broker_req_close_after(struct broker_req *req);
/* The authentication state of req's connection (never NULL; the handler layer's to change,
 * on the connection's shard only). */
struct broker_conn_auth *broker_req_auth(struct broker_req *req);
/* True when the connection of req is closing (the response will be dropped). */
bool broker_req_conn_closing(const struct broker_req *req);
/* An id of req's connection, unique on its shard for the process's life (Kafka's
 * connectionId): what broker_dispatch.conn_closed names. Never 0. */
uint64_t broker_req_conn_id(const struct broker_req *req);

/* This shard's index, the number of shards, and the config (read-only). */
uint32_t broker_shard_id(const struct broker_shard *s);
uint32_t broker_shard_count(const struct broker_shard *s);
const struct broker_config *broker_shard_config(const struct broker_shard *s);
/* Per-shard pointer for the handler layer (partition tables, ...). */
void *broker_shard_user(const struct broker_shard *s);
void broker_shard_set_user(struct broker_shard *s, void *user);
/* True once shutdown has begun. */
bool broker_shard_draining(const struct broker_shard *s);

/* Cross-shard call: run() executes on shard `target`, which must eventually call
 * broker_xcall_return(target, c) exactly once; then done() executes back on the calling
 * shard. The struct is owned by the caller (e.g. in a request's arena) until done() runs.
 * Delivery goes through bounded SPSC mailboxes; when one is full the call waits in the sender's
 * overflow list, so broker_shard_call never fails. Calls to the same target stay in order. */
struct broker_xcall {
    void (*run)(struct broker_shard *target, struct broker_xcall *c);
    void (*done)(struct broker_shard *origin, struct broker_xcall *c);
    void *arg;
    /* private */
    struct broker_xcall *next_;
    uint32_t origin_;
    uint32_t target_;
    bool returning_;
};
/* Sends c to shard target (may be self: then it runs on a later loop turn). */
void broker_shard_call(struct broker_shard *self, uint32_t target, struct broker_xcall *c);
/* Called by run() on the target shard when its work is done; routes c back to its origin. */
void broker_xcall_return(struct broker_shard *target, struct broker_xcall *c);

/* The time req's handler has run on the shard (Kafka's request thread time): from its
 * dispatch until the handler returned, or until now while it runs; what a request-time quota
 * counts. 0 for a bare SASL token. */
uint64_t broker_req_local_us(const struct broker_req *req);
/* Mutes the connection of req for delay_ms (Kafka's channel throttling for quotas, KIP-219):
 * no further request is read from it until then, while responses already due still go out. A
 * later call keeps the later deadline. Nothing on an outbound or closing connection. */
void broker_req_throttle(struct broker_req *req, uint32_t delay_ms);

/* One-shot timer on the shard's clock (CLOCK_MONOTONIC, ms). The struct is owned by the
 * caller and must stay valid until it fires or is cancelled. */
struct broker_timer {
    void (*fn)(struct broker_shard *s, struct broker_timer *t);
    void *arg;
    /* private */
    uint64_t deadline_ms_;
    uint32_t heap_index_; /* UINT32_MAX when not armed */
};
/* Arms t to call fn after delay_ms. t must not be armed. Returns 0 or LM_E_NOMEM. */
int broker_timer_start(struct broker_shard *s, struct broker_timer *t, uint64_t delay_ms,
                       void (*fn)(struct broker_shard *, struct broker_timer *), void *arg);
/* Disarms t if armed. */
void broker_timer_cancel(struct broker_shard *s, struct broker_timer *t);
/* Asynchronous fdatasync/fsync, so durability never blocks a shard (DESIGN.md §2): the
 * io_uring backend submits IORING_OP_FSYNC on the shard's own ring; the epoll backend hands the
 * fd to the shard's sync worker thread through a bounded SPSC queue and the worker wakes the
 * shard (eventfd) when it is done. done(s, f, rc) runs later on this shard, rc 0 or LM_E_IO.
 * f is owned by the caller until done runs; fd must stay open until then. Never fails: beyond
 * BROKER_FSYNC_INFLIGHT_MAX the call waits in the shard's queue. Shutdown waits for every
 * fsync before the shard_flush hook. */
enum { BROKER_FSYNC_INFLIGHT_MAX = 256 };
struct broker_fsync {
    void (*done)(struct broker_shard *s, struct broker_fsync *f, int rc);
    void *arg;
    int fd;
    bool datasync; /* fdatasync semantics (a directory needs fsync: false) */
    /* private */
    int res_;
    uint32_t slot_;
    struct broker_fsync *next_;
};
void broker_shard_fsync(struct broker_shard *s, struct broker_fsync *f, int fd, bool datasync,
                        void (*done)(struct broker_shard *, struct broker_fsync *, int), void *arg);

/* Small blocking file work off the shard thread: a Raft replica's hard state (a temporary
 * file, fdatasync, rename, directory fsync) is four system calls of which two wait for the
 * disk, once per replica and election; creating thousands of replicas did them by the
 * thousand on the shard thread, which starved SWIM and the controller. run(j) runs on one of
 * the shard's metadata worker threads (their own, apart from the log fsyncs' ring or sync
 * worker, so neither queues behind the other; several, so the file system can commit their
 * syncs together) and may touch only what j points to; jobs run in no particular order
 * between them (a caller with an order keeps one job in flight); done(s, j, rc) runs
 * later on this shard with run's result. j is the caller's until done runs. Never fails:
 * beyond BROKER_META_JOBS_INFLIGHT_MAX jobs the call waits in the shard's queue (linked
 * through j, so the memory is the callers'), served in order. Shutdown waits for every job, as
 * for fsyncs. */
enum { BROKER_META_JOBS_INFLIGHT_MAX = 256 };
struct broker_meta_job {
    int (*run)(struct broker_meta_job *j);
    void (*done)(struct broker_shard *s, struct broker_meta_job *j, int rc);
    void *arg;
    /* Optional: run split around its sync, so that a worker holding several such jobs at once
     * makes them durable with one syncfs per file system instead of a sync (or two) each.
     * stage does the writes without syncing: 0 with *fd an open descriptor on the file system
     * to sync, the worker's to close (it keeps one per file system and closes the others at
     * once, so a batch holds a few descriptors, not one per job), or an error that is the
     * job's result (and commit is not called).
     * commit(j, rc) follows the sync (rc its result, < 0: failed): the job's result, or 1 when
     * it needs one more sync (a rename: its directory), whose result is then the job's. A job
     * alone on its worker runs run. */
    int (*stage)(struct broker_meta_job *j, int *fd);
    int (*commit)(struct broker_meta_job *j, int rc);
    /* private */
    int res_;
    uint32_t thread_;
    struct broker_meta_job *next_;
};
void broker_shard_meta_job(struct broker_shard *s, struct broker_meta_job *j);

/* ---- outbound connections (Kafka's NetworkClient role: replication, the controller) ----
 *
 * A shard opens a connection to host:port (non-blocking connect: io_uring IORING_OP_CONNECT,
 * epoll EPOLLOUT), sends request frames and receives response frames over the same framing,
 * memory budget and backpressure as client connections. Responses come in request order (as
 * Kafka's brokers answer them); each is matched to the oldest call by correlation id and handed
 * to that call's done() on the shard that opened the connection. A connection that fails
 * (refused, reset, closed by the peer, a response that does not match, a timeout) fails every
 * call it holds and stays dead: reconnecting is the caller's choice, with a new peer. */
struct broker_peer;

struct broker_peer_opts {
    uint32_t connect_timeout_ms; /* Kafka's socket.connection.setup.timeout.ms; 0: 10000 */
    uint32_t request_timeout_ms; /* Kafka's request.timeout.ms; 0: 30000 */
    uint32_t inflight_max;       /* calls queued or in flight (max.in.flight.requests); 0: 5 */
    int32_t response_max_bytes;  /* larger responses close the connection; 0: the config's
                                  * socket.request.max.bytes */
    const char *client_id;       /* request header client_id, at most 32 bytes; NULL: null */
    bool tls; /* TLS with the node's peer context (the controller listener's ssl.* settings as a
               * client: its certificate presented, the server's verified); needs
               * broker_config.peer_tls */
};

/* One request on a peer and its outcome. The caller owns it (and the memory of its parts)
 * until done() runs, or until broker_peer_close abandons it. */
struct broker_call {
    int16_t api_key;
    int16_t api_version;
    bool flexible; /* request header v2, response header v1 (v0 for ApiVersions, KIP-511) */
    /* The request body after the header: memory parts, or file slices (borrowed: the runtime
     * does not close their fds). */
    struct broker_resp_part *parts;
    uint32_t nparts;
    /* rc 0: resp/resp_len hold the response body after the response header, valid during the
     * call only. Else LM_E_IO (connect or socket error; sys_errno says which, e.g.
     * ECONNREFUSED, ECONNRESET), LM_E_CLOSED (the peer closed the connection, or the runtime
     * is shutting down), LM_E_TIMEOUT (connect or request timeout: the connection is closed,
     * as Kafka's NetworkClient does), LM_E_CORRUPT (a response that does not parse or
     * match). */
    void (*done)(struct broker_shard *s, struct broker_call *call, int rc);
    void *arg;
    const uint8_t *resp;
    size_t resp_len;
    int sys_errno;
    /* private */
    struct broker_call *next_;
    uint64_t deadline_ms_;
    int32_t correlation_id_;
    struct broker_out_ out_;
};

/* Starts a connection to host:port (numeric or a name, resolved here: give addresses on a
 * shard thread) from shard s. Returns 0 and *out, LM_E_INVALID for an address that does not
 * resolve, LM_E_FULL when the shard's connection table is full, LM_E_STATE once the shard has
 * closed its connections at shutdown, or LM_E_NOMEM. Calls may be sent at once: they wait for
 * the connect. */
int broker_peer_open(struct broker_shard *s, const char *host, uint16_t port,
                     const struct broker_peer_opts *opts, struct broker_peer **out);
/* Queues call on p (correlation id assigned here). Returns 0 (done() runs later, never from
 * inside this function; on a failed peer with its error), or LM_E_AGAIN when inflight_max
 * calls are already queued or in flight (send again after one completes). */
int broker_peer_send(struct broker_peer *p, struct broker_call *call);
/* 0 while p is connecting or connected; else the LM_E_* that closed it. */
int broker_peer_error(const struct broker_peer *p);
/* True once the connect has succeeded (and the connection has not failed since). */
bool broker_peer_connected(const struct broker_peer *p);
/* Closes p; the runtime frees it. Every call still queued or in flight completes later with
 * LM_E_CLOSED (a request being written once the kernel has let go of its memory), so each
 * call's done() runs exactly once whatever happens. p must not be used after this. */
void broker_peer_close(struct broker_peer *p);

/* ---- UDP (SWIM gossip) -------------------------------------------------------------------
 * A shard owns UDP sockets bound to host:port. Datagrams are received (io_uring: multishot
 * recvmsg on provided buffers; epoll: a recvfrom loop) and handed to recv() on that shard with
 * their source address; sends are one non-blocking sendmsg each (a datagram is never held:
 * a full socket buffer drops it, which UDP allows and SWIM tolerates). */
struct broker_udp;

enum {
    BROKER_UDP_PER_SHARD_MAX = 8,
    BROKER_UDP_DATAGRAM_MAX = 65507, /* IPv4's largest UDP payload */
};

/* data/from are borrowed for the call. Runs on the owning shard. */
typedef void (*broker_udp_recv_fn)(struct broker_shard *s, struct broker_udp *u,
                                   const uint8_t *data, size_t len, const struct sockaddr *from,
                                   uint32_t from_len, void *arg);

/* Binds a UDP socket on host:port (port 0: any; see broker_udp_port) owned by shard s.
 * Returns 0 and *out, LM_E_INVALID (address), LM_E_IO (socket or bind failed, logged),
 * LM_E_FULL (BROKER_UDP_PER_SHARD_MAX open) or LM_E_NOMEM. */
int broker_udp_open(struct broker_shard *s, const char *host, uint16_t port,
                    broker_udp_recv_fn recv, void *arg, struct broker_udp **out);
/* The local port u is bound to. */
uint16_t broker_udp_port(const struct broker_udp *u);
/* Sends one datagram to `to`. Returns 0, LM_E_TOO_LARGE (over BROKER_UDP_DATAGRAM_MAX),
 * LM_E_AGAIN (the socket buffer is full: dropped) or LM_E_IO (sys error, e.g. unreachable). */
int broker_udp_send(struct broker_udp *u, const void *data, size_t len, const struct sockaddr *to,
                    uint32_t to_len);
/* Stops receiving and closes u; recv() is not called any more. u is freed by the runtime. */
void broker_udp_close(struct broker_udp *u);

/* Monotonic milliseconds, and microseconds. */
uint64_t broker_now_ms(void);
uint64_t broker_now_us(void);

/* Stable owner shard of a partition: FNV-1a 64 of the topic name and the big-endian partition,
 * modulo nshards. Independent of process and platform, so it survives restarts. */
uint32_t broker_partition_shard(const char *topic, size_t topic_len, int32_t partition,
                                uint32_t nshards);

/* Runs the broker until SIGTERM/SIGINT (then finishes in-flight requests, flushes, closes).
 * cfg and d are borrowed for the whole run. Returns 0 or an LM_E_* (logged). */
int broker_runtime_run(const struct broker_config *cfg, const struct broker_dispatch *d);

/* The same in steps, for several brokers in one process (tests): start returns once every
 * shard serves (0, *out set) or start-up failed (an LM_E_*, nothing left running); stop
 * finishes in-flight requests, flushes, joins the shard threads and frees rt, returning 0 or
 * LM_E_STATE when a shard failed. SIGTERM/SIGINT are blocked in the calling thread (and the
 * shards): only broker_runtime_run takes them. stopping is true once a shard failed (or stop
 * began). cfg and d are borrowed until stop returns. */
struct broker_rt;
int broker_runtime_start(const struct broker_config *cfg, const struct broker_dispatch *d,
                         struct broker_rt **out);
bool broker_runtime_stopping(const struct broker_rt *rt);
int broker_runtime_stop(struct broker_rt *rt);

/* The `laminar` command line: `laminar serve [-c file] [flags]`. setup() fills the handler
 * table (and may read cfg) after the config is parsed. Returns the process exit status. */
int broker_serve_main(int argc, char **argv,
                      int (*setup)(struct broker_dispatch *d, struct broker_config *cfg));

#endif
