/* The controller group and the node's metadata image (controller.h). Runs on shard 0. */
#include "broker/cluster/controller.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "broker/cluster/membership.h"
#include "broker/cluster/meta_snapshot.h"
#include "broker/log.h"
#include "broker/partition/partition.h"
#include "common/lm_assert.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "consensus/raft.h"
#include "consensus/raft_wire.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"

/* Internal request kinds (the first body byte). */
enum {
    KIND_RAFT = 1,      /* raft_wire message -> partition_step; answer: empty */
    KIND_SUBMIT = 2,    /* a metadata record for the leader; answer: status, rc, offset */
    KIND_HEARTBEAT = 3, /* i32 node, u64 incarnation; answer: empty */
    KIND_FETCH = 4,     /* i64 from: an observer reads the committed log; answer below */
    KIND_SNAPSHOT = 5,  /* the newest snapshot: u8 0 then its bytes, or u8 1 (none) */
    /* 6-10, CONTROLLER_KIND_PARTITION_RAFT, _ELECT, _LOG_START, _RAFT_BATCH, NODE_PING:
     * replicated partitions, served by the handler layer on the receiving shard
     * (controller_set_partition_handler) */
};
#define CTL_SNAPSHOT_RECORDS_DEFAULT 20000 /* laminar.metadata.snapshot.records */
#define CTL_SEGMENT_BYTES            (8u << 20)
/* FETCH answer: u8 status (0 ok, 1 no log here, 2 `from` is below the log start: load a
 * snapshot first), i32 leader (-1 unknown), i64 high watermark,
 * then whole committed batches from `from` (at most CTL_FETCH_BYTES). */
#define CTL_FETCH_HEAD       13
#define CTL_MAC_BYTES        32 /* HMAC-SHA256 after each request body when a secret is set */
#define CTL_SECRET_MAX       256
#define CTL_FETCH_BYTES      (256u << 10)
#define CTL_FETCH_WAIT_MS    2000  /* a fetch unanswered this long is given up */
#define CTL_SNAPSHOT_WAIT_MS 10000 /* ... a snapshot request (a large image takes longer) */
enum { SUBMIT_APPLIED = 0, SUBMIT_NOT_LEADER = 1 };

#define CTL_TICK_MS            50
#define CTL_REOPEN_MS          1000 /* a failed metadata log's reopen attempts */
#define CTL_HANDOFF_RETRY_MS   200
#define CTL_ELECTION_TICKS     20 /* 1-2 s, as controller.quorum.election.timeout.ms */
#define CTL_HEARTBEAT_TICKS    2
#define CTL_BROKER_HB_MS       1000
#define CTL_SESSION_MS_DEFAULT 9000 /* broker.session.timeout.ms */
#define CTL_SUBMIT_TIMEOUT_MS  15000
#define CTL_RETRY_MS           100
#define CTL_READ_BYTES         (1u << 20)
#define CTL_PEER_BACKOFF_MIN   100
#define CTL_PEER_BACKOFF_MAX   2000
/* controller_image_fresh: the image counts as current for this long after this node last
 * knew it held everything the controller group had committed (a leader's heartbeats come
 * every CTL_HEARTBEAT_TICKS ticks, an observer fetches every tick) */
#define CTL_FRESH_MS 1000

/* states of a submission */
enum { SUB_PENDING = 0, SUB_PROPOSED, SUB_FORWARDED, SUB_AWAIT_APPLY };

/* The connections to a voter, one per lane. A connection answers in request order and its
 * server stops reading it while laminar.connection.inflight.max (64) requests are unanswered
 * (conn.c). A SUBMIT is answered only once its record is committed and applied, so SUBMITs
 * have a lane of their own: on one shared connection a burst of them (every partition leader
 * announcing itself after a fail-over or a CreateTopics) stopped the leader from reading this
 * node's Raft answers queued behind them; the commit they waited for needed those answers,
 * and check-quorum deposed the leader instead (fail-over took minutes with 1,500 partitions).
 * Everything else is answered at once and goes on LANE_RAFT. */
enum { LANE_RAFT = 0, LANE_SUBMIT = 1, LANES = 2 };

struct peer_conn {
    struct broker_peer *peer;
    uint64_t retry_at_ms;
    uint32_t backoff_ms;
};

struct peer_slot {
    int32_t id;
    char host[256];
    uint16_t port;
    struct peer_conn lane[LANES];
};

struct live {
    int32_t id;
    uint64_t last_seen_ms;
    bool fence_inflight;
};

struct controller {
    const struct broker_config *cfg;
    struct lm_meta_store *store;
    int32_t node_id;
    struct controller_voter voters[CONTROLLER_VOTERS_MAX];
    uint32_t n_voters;
    struct peer_slot peers[CONTROLLER_VOTERS_MAX];
    uint32_t n_peers;
    char dir[PATH_MAX];
    uint64_t incarnation;
    char endpoints[LM_META_ENDPOINTS_MAX + 1];
    char rack[LM_META_RACK_MAX + 1];
    uint32_t session_ms;
    char secret[CTL_SECRET_MAX + 1]; /* laminar.cluster.secret; empty: requests unauthenticated */
    size_t secret_len;
    controller_partition_fn partition_fn; /* KIND 6, on the receiving shard */
    void *partition_ctx;

    struct broker_shard *shard;
    struct partition *part;
    bool log_reopen;       /* the metadata log failed and is closed: reopened by the tick */
    bool log_failed_said;  /* a failure kept until a restart (not LM_E_FULL) was logged */
    uint64_t reopen_at_ms; /* the next attempt */
    uint64_t reopened_ms;  /* the last successful reopen */
    struct broker_fsync fs[STORAGE_SYNC_FDS_MAX];
    uint32_t sync_pending;
    int sync_rc;
    bool sync_in_done;
    struct broker_timer tick;
    bool tick_armed;
    struct membership *gossip; /* SWIM on shard 0 (membership.h) */
    uint32_t swim_counts[4];   /* members by state as of the last tick, for /metrics */
    /* members as of the last tick, for the console: node id << 8 | state, count first */
    uint64_t swim_states[CONTROLLER_SWIM_STATES_MAX];
    uint32_t swim_states_count;
    int64_t applied_next;
    /* An observer (process.roles=broker, not a voter): no log of its own; it reads the
     * committed log from the voters (KIND_FETCH) and learns the leader from their answers. */
    bool observer;
    /* Snapshots (meta_snapshot.h): the last offset the newest one covers (-1 none), how many
     * applied records start the next, and whether the image must be rebuilt from another
     * node's (the log we would read starts past what we applied). */
    int64_t snap_last;
    uint32_t snapshot_records;
    bool need_snapshot;
    bool snap_fetch_busy;
    bool fetch_busy;
    uint64_t fetch_sent_ms; /* when the fetch or snapshot request in flight left */
    uint32_t fetch_gen;     /* its number: an answer of an abandoned one is ignored */
    int32_t fetch_to;       /* the voter it went to */
    uint32_t fetch_rr;      /* next voter to ask while no leader is known */
    uint64_t fetch_at_ms;
    uint64_t handoff_at_ms; /* controlled shutdown: next leadership transfer attempt */
    int32_t leader;         /* atomic: node id or -1 */
    bool was_leader;
    bool stopping;
    /* This process' registration is in the image: everything committed before it has been
     * applied (Kafka's initial catch-up). Atomic: read by every shard. */
    bool caught_up;
    /* controller_image_fresh: when the image last held everything committed as far as this
     * node could tell (atomic, read by every shard; 0 never), and for a follower the commit
     * index the current leader last announced (APP or HEARTBEAT) with that message's term
     * and arrival. */
    uint64_t fresh_ms;
    int64_t leader_commit;
    uint64_t leader_commit_term;
    uint64_t leader_commit_ms;

    struct controller_submit *subs; /* every submission this node holds, any state */

    /* own registration and heartbeat */
    struct controller_submit reg;
    uint8_t reg_buf[LM_META_ENDPOINTS_MAX + LM_META_RACK_MAX + 64];
    bool reg_busy;
    uint64_t reg_retry_at_ms;
    uint64_t hb_next_ms;

    /* leader: liveness of registered brokers */
    struct live *live;
    size_t live_count, live_cap;
};

/* A call on a peer with its request bytes. */
struct ctl_call {
    struct broker_call call;
    struct broker_resp_part part;
    struct controller *c;
    struct controller_submit *sub; /* KIND_SUBMIT */
    int32_t to;                    /* KIND_FETCH, KIND_SNAPSHOT: the voter asked */
    uint32_t gen;                  /* KIND_FETCH, KIND_SNAPSHOT: controller.fetch_gen at send */
    size_t len;
    uint8_t buf[];
};

static uint32_t rid(int32_t node)
{
    return (uint32_t)node + 1u; /* raft ids start at 1; Kafka node ids at 0 */
}
static int32_t nid(uint32_t raft_id)
{
    return raft_id == RAFT_NONE ? -1 : (int32_t)(raft_id - 1u);
}

/* ------------------------------------------------------------------ configuration */

int controller_parse_voters(const char *v, struct controller_voter *out, size_t cap, char *err,
                            size_t err_len)
{
    if (v == NULL)
        return 0;
    size_t n = 0;
    const char *p = v;
    while (*p == ' ')
        p++;
    if (*p == 0)
        return 0;
    while (*p) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[300];
        if (len == 0 || len >= sizeof(item)) {
            snprintf(err, err_len, "controller.quorum.voters: bad entry in '%s'", v);
            return LM_E_CONFIG;
        }
        memcpy(item, p, len);
        item[len] = 0;
        char *at = strchr(item, '@');
        char *colon = strrchr(item, ':');
        char *idend = NULL;
        long id = at ? strtol(item, &idend, 10) : -1;
        char *portend = NULL;
        long port = colon ? strtol(colon + 1, &portend, 10) : -1;
        if (at == NULL || colon == NULL || colon < at || idend != at || id < 0 || id >= (1 << 22) ||
            portend == NULL || *portend != 0 || port <= 0 || port > 65535 || colon - at - 1 <= 0 ||
            (size_t)(colon - at - 1) >= sizeof(out[0].host)) {
            snprintf(err, err_len,
                     "controller.quorum.voters: '%.120s' is not id@host:port (as Kafka's KRaft)",
                     item);
            return LM_E_CONFIG;
        }
        if (n >= cap) {
            snprintf(err, err_len, "controller.quorum.voters: more than %zu voters", cap);
            return LM_E_CONFIG;
        }
        for (size_t i = 0; i < n; i++) {
            if (out[i].id == (int32_t)id) {
                snprintf(err, err_len, "controller.quorum.voters: node %ld named twice", id);
                return LM_E_CONFIG;
            }
        }
        out[n].id = (int32_t)id;
        size_t hl = (size_t)(colon - at - 1);
        char *h = at + 1;
        if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') { /* [v6] */
            h++;
            hl -= 2;
        }
        memcpy(out[n].host, h, hl);
        out[n].host[hl] = 0;
        out[n].port = (uint16_t)port;
        n++;
        p = end ? end + 1 : p + len;
    }
    return (int)n;
}

bool controller_configured(const struct broker_config *cfg)
{
    const char *v = broker_config_get(cfg, "controller.quorum.voters");
    if (v == NULL)
        return false;
    while (*v == ' ')
        v++;
    return *v != 0;
}

static void endpoints_of(const struct broker_config *cfg, char *out, size_t cap)
{
    size_t used = 0;
    out[0] = 0;
    const struct broker_listener *ls = cfg->advertised_count > 0 ? cfg->advertised : cfg->listeners;
    uint32_t n = cfg->advertised_count > 0 ? cfg->advertised_count : cfg->listeners_count;
    for (uint32_t i = 0; i < n; i++) {
        if (broker_config_is_controller_listener(cfg, ls[i].name))
            continue;
        int w = snprintf(out + used, cap - used, "%s%s://%s:%u", used ? "," : "", ls[i].name,
                         ls[i].host, ls[i].port);
        if (w < 0 || (size_t)w >= cap - used)
            break;
        used += (size_t)w;
    }
    /* then the node's controller listener, its internal address (replication goes there);
     * clients never pick it: they ask for their own listener's name. An advertised.listeners
     * entry of that name wins over the bound address (as a KRaft controller advertises its
     * endpoint, KIP-853: a node behind a proxy or NAT). */
    for (uint32_t i = 0; i < cfg->listeners_count; i++) {
        const struct broker_listener *l = &cfg->listeners[i];
        if (!broker_config_is_controller_listener(cfg, l->name))
            continue;
        for (uint32_t a = 0; a < cfg->advertised_count; a++)
            if (strcasecmp(cfg->advertised[a].name, l->name) == 0)
                l = &cfg->advertised[a];
        int w = snprintf(out + used, cap - used, "%s%s://%s:%u", used ? "," : "", l->name, l->host,
                         l->port);
        if (w > 0 && (size_t)w < cap - used)
            used += (size_t)w;
        break;
    }
}

int controller_create(const struct broker_config *cfg, struct lm_meta_store *store,
                      struct controller **out)
{
    char err[256];
    struct controller *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LM_E_NOMEM;
    c->cfg = cfg;
    c->store = store;
    c->node_id = cfg->node_id;
    c->leader = -1;
    c->applied_next = 0;
    int n = controller_parse_voters(broker_config_get(cfg, "controller.quorum.voters"), c->voters,
                                    CONTROLLER_VOTERS_MAX, err, sizeof(err));
    if (n <= 0) {
        BLOG_ERROR("config: %s", n == 0 ? "controller.quorum.voters is empty" : err);
        free(c);
        return LM_E_CONFIG;
    }
    c->n_voters = (uint32_t)n;
    bool voter = false;
    for (uint32_t i = 0; i < c->n_voters; i++) {
        if (c->voters[i].id == c->node_id) {
            voter = true;
            continue;
        }
        struct peer_slot *ps = &c->peers[c->n_peers++];
        ps->id = c->voters[i].id;
        snprintf(ps->host, sizeof(ps->host), "%s", c->voters[i].host);
        ps->port = c->voters[i].port;
        for (uint32_t l = 0; l < LANES; l++)
            ps->lane[l].backoff_ms = CTL_PEER_BACKOFF_MIN;
    }
    if (!voter && (cfg->process_roles & BROKER_ROLE_CONTROLLER)) {
        BLOG_ERROR("config: node.id=%d has process.roles=controller but is not in "
                   "controller.quorum.voters",
                   c->node_id);
        free(c);
        return LM_E_CONFIG;
    }
    c->observer = !voter; /* a broker-only node (KRaft's observer) */
    if (snprintf(c->dir, sizeof(c->dir), "%s/__cluster_metadata-0", cfg->log_dirs[0]) >=
        (int)sizeof(c->dir)) {
        free(c);
        return LM_E_CONFIG;
    }
    if (getrandom(&c->incarnation, sizeof(c->incarnation), 0) != sizeof(c->incarnation)) {
        free(c);
        return LM_E_IO;
    }
    const char *rack = broker_config_get(cfg, "broker.rack");
    snprintf(c->rack, sizeof(c->rack), "%s", rack ? rack : "");
    const char *secret = broker_config_get(cfg, "laminar.cluster.secret");
    if (secret != NULL && strlen(secret) > CTL_SECRET_MAX) {
        BLOG_ERROR("config: laminar.cluster.secret is longer than %d bytes", CTL_SECRET_MAX);
        free(c);
        return LM_E_CONFIG;
    }
    if (secret != NULL) {
        snprintf(c->secret, sizeof(c->secret), "%s", secret);
        c->secret_len = strlen(c->secret);
    }
    const char *sr = broker_config_get(cfg, "laminar.metadata.snapshot.records");
    long srv = sr ? strtol(sr, NULL, 10) : 0;
    c->snapshot_records = srv > 0 && srv < INT32_MAX ? (uint32_t)srv : CTL_SNAPSHOT_RECORDS_DEFAULT;
    c->snap_last = -1;
    const char *st = broker_config_get(cfg, "broker.session.timeout.ms");
    long sv = st ? strtol(st, NULL, 10) : 0;
    c->session_ms = sv > 0 && sv < 3600000 ? (uint32_t)sv : CTL_SESSION_MS_DEFAULT;
    int rc = lm_meta_store_set_cluster(store, c->node_id);
    if (rc != 0) {
        free(c);
        return rc;
    }
    BLOG_INFO("cluster: node %d, controller voters %u, incarnation %016llx", c->node_id,
              c->n_voters, (unsigned long long)c->incarnation);
    *out = c;
    return 0;
}

void controller_destroy(struct controller *c)
{
    if (c == NULL)
        return;
    LM_ASSERT(c->part == NULL);
    free(c->live);
    free(c);
}

static bool mac_of(const struct controller *c, const uint8_t *buf, size_t len, uint8_t *out);

int32_t controller_leader(const struct controller *c)
{
    return __atomic_load_n(&c->leader, __ATOMIC_ACQUIRE);
}

size_t controller_swim_states(const struct controller *c, int32_t *ids, uint8_t *states, size_t cap)
{
    size_t n = __atomic_load_n(&c->swim_states_count, __ATOMIC_ACQUIRE);
    if (n > cap)
        n = cap;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = __atomic_load_n(&c->swim_states[i], __ATOMIC_RELAXED);
        ids[i] = (int32_t)(uint32_t)(v >> 8);
        states[i] = (uint8_t)(v & 0xff);
    }
    return n;
}

void controller_swim_counts(const struct controller *c, uint32_t out[4])
{
    for (int i = 0; i < 4; i++)
        out[i] = __atomic_load_n(&c->swim_counts[i], __ATOMIC_RELAXED);
}

int32_t controller_node_id(const struct controller *c)
{
    return c->node_id;
}

void controller_set_partition_handler(struct controller *c, controller_partition_fn fn, void *ctx)
{
    c->partition_fn = fn;
    c->partition_ctx = ctx;
}

size_t controller_mac_bytes(const struct controller *c)
{
    return c->secret_len > 0 ? CTL_MAC_BYTES : 0;
}

bool controller_sign(const struct controller *c, uint8_t *buf, size_t len)
{
    return c->secret_len == 0 || mac_of(c, buf, len, buf + len);
}

/* ------------------------------------------------------------------ peers */

static struct peer_slot *peer_slot(struct controller *c, int32_t id)
{
    for (uint32_t i = 0; i < c->n_peers; i++)
        if (c->peers[i].id == id)
            return &c->peers[i];
    return NULL;
}

/* The open connection to node id on a lane, reopened after a failure with backoff; NULL for
 * now. */
static struct broker_peer *peer_get(struct controller *c, int32_t id, uint32_t lane)
{
    LM_ASSERT(lane < LANES);
    struct peer_slot *ps = peer_slot(c, id);
    if (ps == NULL || c->stopping)
        return NULL;
    struct peer_conn *pc = &ps->lane[lane];
    if (pc->peer != NULL && broker_peer_error(pc->peer) == 0)
        return pc->peer;
    uint64_t now = broker_now_ms();
    if (pc->peer != NULL) {
        broker_peer_close(pc->peer);
        pc->peer = NULL;
        pc->retry_at_ms = now + pc->backoff_ms;
        pc->backoff_ms =
            pc->backoff_ms * 2 > CTL_PEER_BACKOFF_MAX ? CTL_PEER_BACKOFF_MAX : pc->backoff_ms * 2;
    }
    if (now < pc->retry_at_ms)
        return NULL;
    struct broker_peer_opts o = {
        .connect_timeout_ms = 2000,
        .request_timeout_ms = CTL_SUBMIT_TIMEOUT_MS,
        .inflight_max = 512,
        .client_id = lane == LANE_SUBMIT ? "laminar-controller-submit" : "laminar-controller",
        .tls = c->cfg->peer_tls,
    };
    if (broker_peer_open(c->shard, ps->host, ps->port, &o, &pc->peer) != 0) {
        pc->peer = NULL;
        pc->retry_at_ms = now + pc->backoff_ms;
        return NULL;
    }
    LM_ASSERT(pc->peer != NULL);
    return pc->peer;
}

static struct ctl_call *call_new(struct controller *c, uint8_t kind, size_t payload)
{
    struct ctl_call *k = malloc(sizeof(*k) + 1 + payload + CTL_MAC_BYTES);
    if (k == NULL)
        return NULL;
    memset(k, 0, sizeof(*k));
    k->c = c;
    k->len = 1 + payload;
    k->buf[0] = kind;
    k->part.mem = k->buf;
    k->part.fd = -1;
    k->part.len = k->len;
    k->call.api_key = CONTROLLER_API_KEY;
    k->call.api_version = 0;
    k->call.flexible = false;
    k->call.parts = &k->part;
    k->call.nparts = 1;
    k->call.arg = k;
    return k;
}

static void call_free_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    (void)rc;
    free(call->arg);
}

/* Sends k to node id (k freed whatever happens). Returns 0 or an LM_E_*. */
/* HMAC-SHA256 of a request body under laminar.cluster.secret. */
static bool mac_of(const struct controller *c, const uint8_t *buf, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), c->secret, (int)c->secret_len, buf, len, out, &n) != NULL &&
           n == CTL_MAC_BYTES;
}

static int call_send(struct controller *c, int32_t id, struct ctl_call *k)
{
    if (c->secret_len > 0) {
        /* the secret's MAC after the body: a node without it is refused (controller_handle) */
        if (!mac_of(c, k->buf, k->len, k->buf + k->len)) {
            free(k);
            return LM_E_INVALID;
        }
        k->part.len = k->len + CTL_MAC_BYTES;
    }
    /* only SUBMIT waits for a commit before its answer (the lanes above) */
    uint32_t lane = k->buf[0] == KIND_SUBMIT ? LANE_SUBMIT : LANE_RAFT;
    struct broker_peer *p = peer_get(c, id, lane);
    int rc = p ? broker_peer_send(p, &k->call) : LM_E_AGAIN;
    if (rc != 0)
        free(k);
    return rc;
}

/* ------------------------------------------------------------------ partition shell */

static void after_input(struct controller *c);
static void metadata_log_recover(struct controller *c, uint64_t now);

static void fsync_done(struct broker_shard *s, struct broker_fsync *f, int rc)
{
    (void)s;
    struct controller *c = f->arg;
    if (rc != 0 && c->sync_rc == 0)
        c->sync_rc = rc;
    LM_ASSERT(c->sync_pending > 0);
    if (--c->sync_pending > 0)
        return;
    c->sync_in_done = true;
    partition_sync_done(c->part, c->sync_rc);
    c->sync_in_done = false;
    after_input(c);
}

static void env_sync(void *ctx, struct partition *p, const int *fds, const bool *full, uint32_t n)
{
    struct controller *c = ctx;
    LM_ASSERT(c->sync_pending == 0 && n <= STORAGE_SYNC_FDS_MAX);
    if (n == 0) {
        partition_sync_done(p, 0);
        return;
    }
    c->sync_rc = 0;
    c->sync_pending = n;
    for (uint32_t i = 0; i < n; i++)
        broker_shard_fsync(c->shard, &c->fs[i], fds[i], !full[i], fsync_done, c);
}

static void env_send(void *ctx, struct partition *p, const struct raft_msg *m)
{
    (void)p;
    struct controller *c = ctx;
    int32_t to = nid(m->to);
    size_t n = raft_wire_size(m);
    struct ctl_call *k = call_new(c, KIND_RAFT, n);
    if (k == NULL)
        return; /* lost, as on a network: raft sends again */
    int w = raft_wire_encode(m, k->buf + 1, n);
    if (w < 0) {
        free(k);
        return;
    }
    k->call.done = call_free_done;
    (void)call_send(c, to, k);
}

/* ------------------------------------------------------------------ submissions */

static void sub_unlink(struct controller *c, struct controller_submit *sub)
{
    for (struct controller_submit **pp = &c->subs; *pp; pp = &(*pp)->next_) {
        if (*pp == sub) {
            *pp = sub->next_;
            sub->next_ = NULL;
            return;
        }
    }
}

/* Completes sub on shard 0: its xcall goes home (done runs on the submitting shard). */
static bool is_remote(const struct controller_submit *sub);
static void remote_sub_done(struct controller *c, struct controller_submit *sub);

static void sub_finish(struct controller *c, struct controller_submit *sub, int rc)
{
    sub_unlink(c, sub);
    sub->rc = rc;
    if (is_remote(sub))
        remote_sub_done(c, sub);
    else
        broker_xcall_return(c->shard, &sub->x_);
}

static void append_done(void *user, int err, const struct partition_append_info *info)
{
    struct controller_submit *sub = user;
    if (sub->state_ != SUB_PROPOSED)
        return;
    if (err != 0 && sub->c_->stopping) {
        sub_finish(sub->c_, sub, LM_E_CLOSED);
        return;
    }
    if (err != 0) {
        /* leadership lost before commit: try again through whoever leads now */
        sub->state_ = SUB_PENDING;
        sub->retry_at_ms_ = broker_now_ms() + CTL_RETRY_MS;
        return;
    }
    sub->offset = info->last_offset;
    sub->rc = 0;
    sub->state_ = SUB_AWAIT_APPLY;
}

static int propose(struct controller *c, struct controller_submit *sub)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, (int64_t)broker_now_ms());
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = kafka_batch_builder_append(&b, (int64_t)broker_now_ms(), NULL, -1, sub->rec,
                                        (int32_t)sub->len, NULL, 0);
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len);
    kafka_batch_builder_deinit(&b);
    if (rc != 0)
        return rc;
    sub->state_ = SUB_PROPOSED;
    rc = partition_append(c->part, PARTITION_ORIGIN_COORDINATOR, buf, len, -1, append_done, sub);
    free(buf);
    if (rc != 0 && sub->state_ == SUB_PROPOSED)
        sub->state_ = SUB_PENDING;
    return rc;
}

static void forward_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct ctl_call *k = call->arg;
    struct controller_submit *sub = k->sub;
    if (sub != NULL) {
        struct controller *c = k->c;
        sub->call_ = NULL;
        if (rc == 0 && call->resp_len >= 13 && call->resp[0] == SUBMIT_APPLIED) {
            sub->rc = (int32_t)lm_get_be32(call->resp + 1);
            sub->offset = (int64_t)lm_get_be64(call->resp + 5);
            sub->state_ = SUB_AWAIT_APPLY; /* read-your-writes: done once applied here too */
        } else {
            sub->state_ = SUB_PENDING;
            sub->retry_at_ms_ = broker_now_ms() + CTL_RETRY_MS;
        }
        after_input(c);
    }
    free(k);
}

static void forward(struct controller *c, struct controller_submit *sub, int32_t leader)
{
    struct ctl_call *k = call_new(c, KIND_SUBMIT, sub->len);
    if (k == NULL) {
        sub->retry_at_ms_ = broker_now_ms() + CTL_RETRY_MS;
        return;
    }
    memcpy(k->buf + 1, sub->rec, sub->len);
    k->sub = sub;
    k->call.done = forward_done;
    sub->state_ = SUB_FORWARDED;
    sub->call_ = k;
    if (call_send(c, leader, k) != 0) {
        sub->call_ = NULL;
        sub->state_ = SUB_PENDING;
        sub->retry_at_ms_ = broker_now_ms() + CTL_RETRY_MS;
    }
}

/* Moves every pending submission on: proposed here, forwarded, or timed out. */
static void subs_kick(struct controller *c)
{
    uint64_t now = broker_now_ms();
    int32_t leader = controller_leader(c);
    struct controller_submit *sub = c->subs, *next;
    for (; sub != NULL; sub = next) {
        next = sub->next_;
        if (sub->state_ == SUB_AWAIT_APPLY) {
            if (c->applied_next > sub->offset)
                sub_finish(c, sub, sub->rc);
            continue;
        }
        if (sub->state_ != SUB_PENDING)
            continue;
        if (now >= sub->deadline_ms_ || c->stopping) {
            sub_finish(c, sub, c->stopping ? LM_E_CLOSED : LM_E_TIMEOUT);
            continue;
        }
        if (now < sub->retry_at_ms_)
            continue;
        if (leader == c->node_id && c->part != NULL && partition_is_leader(c->part)) {
            int rc = propose(c, sub);
            if (rc != 0 && rc != LM_E_STATE && rc != LM_E_AGAIN && rc != LM_E_FULL)
                sub_finish(c, sub, rc);
            else if (rc != 0)
                sub->retry_at_ms_ = now + CTL_RETRY_MS;
        } else if (is_remote(sub)) {
            /* a node forwarded it to us as the leader and we are not (any more): it asks
             * again where the leader is now */
            sub_finish(c, sub, LM_E_STATE);
        } else if (leader >= 0 && leader != c->node_id) {
            forward(c, sub, leader);
        }
    }
}

static void sub_add(struct controller *c, struct controller_submit *sub)
{
    uint64_t now = broker_now_ms();
    sub->c_ = c;
    sub->state_ = SUB_PENDING;
    sub->rc = 0;
    sub->offset = -1;
    sub->call_ = NULL;
    sub->deadline_ms_ = now + (sub->timeout_ms ? sub->timeout_ms : CTL_SUBMIT_TIMEOUT_MS);
    sub->retry_at_ms_ = 0;
    sub->next_ = c->subs;
    c->subs = sub;
}

static void submit_run(struct broker_shard *target, struct broker_xcall *x)
{
    (void)target;
    struct controller_submit *sub = x->arg;
    struct controller *c = sub->c_;
    if ((c->part == NULL && !c->observer) || c->stopping) {
        sub->rc = LM_E_CLOSED;
        broker_xcall_return(c->shard, x);
        return;
    }
    sub_add(c, sub);
    subs_kick(c);
}

static void submit_done(struct broker_shard *origin, struct broker_xcall *x)
{
    struct controller_submit *sub = x->arg;
    sub->done(origin, sub);
}

void controller_submit(struct controller *c, struct broker_shard *s, struct controller_submit *sub)
{
    memset(&sub->x_, 0, sizeof(sub->x_));
    sub->c_ = c;
    sub->next_ = NULL;
    sub->x_.run = submit_run;
    sub->x_.done = submit_done;
    sub->x_.arg = sub;
    broker_shard_call(s, CONTROLLER_SHARD, &sub->x_);
}

/* ------------------------------------------------------------------ applying the log */

static struct live *live_of(struct controller *c, int32_t id, uint64_t now);

static void apply_batch(struct controller *c, const uint8_t *buf, size_t len, int64_t base)
{
    struct kafka_batch_reader r;
    int rc = kafka_batch_reader_open(&r, buf, len, LM_META_RECORD_BYTES_MAX * 4);
    if (rc != 0) {
        BLOG_ERROR("controller: batch at offset %lld unreadable (%s); skipped", (long long)base,
                   lm_strerror(rc));
        return;
    }
    if (r.header.attributes & 0x20) { /* control batch (LeaderChange) */
        kafka_batch_reader_close(&r);
        return;
    }
    struct kafka_record_iter it;
    kafka_batch_reader_iter(&r, &it);
    struct kafka_record rec;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1) {
        int64_t off = base + rec.offset_delta;
        struct lm_meta_record m;
        struct lm_config_entry *cfg = NULL;
        int arc = rec.value_len > 0
                      ? lm_meta_record_decode(rec.value, (size_t)rec.value_len, &m, &cfg)
                      : LM_E_CORRUPT;
        if (arc == 0) {
            lm_meta_record_stamp(&m, off); /* a reassignment's move number */
            arc = lm_meta_store_apply(c->store, &m);
            if (arc == 0 && m.type == LM_META_BROKER_REGISTER) {
                BLOG_INFO("controller: node %d registered (%s)", m.broker_id, m.endpoints);
                /* a fresh session: the registration is as good as a heartbeat */
                struct live *l = live_of(c, m.broker_id, broker_now_ms());
                if (l != NULL)
                    l->last_seen_ms = broker_now_ms();
            } else if (m.type == LM_META_TOPIC_CREATE || m.type == LM_META_TOPIC_DELETE) {
                BLOG_DEBUG("controller: offset %lld: topic %s %s (id %02x%02x%02x%02x): %s",
                           (long long)off, m.topic ? m.topic : "?",
                           m.type == LM_META_TOPIC_CREATE ? "create" : "delete", m.topic_id[0],
                           m.topic_id[1], m.topic_id[2], m.topic_id[3],
                           arc == 0 ? "applied" : lm_strerror(arc));
            } else if (arc == 0 && m.type == LM_META_BROKER_FENCE)
                BLOG_INFO("controller: node %d %s", m.broker_id,
                          m.fenced ? "fenced (heartbeats stopped, SWIM found it dead, or it left)"
                                   : "unfenced");
            lm_meta_record_free(&m);
        }
        /* the verdict for the submissions that proposed this record (a forwarded one
         * already has the leader's, which every node reaches the same way) */
        for (struct controller_submit *s = c->subs; s != NULL; s = s->next_) {
            if (s->state_ == SUB_AWAIT_APPLY && s->offset == off)
                s->rc = arc;
        }
    }
    kafka_batch_reader_close(&r);
}

/* Applies the whole batches in buf[0..len) that are below hw and not applied yet. Returns the
 * bytes parsed. */
static size_t apply_bytes(struct controller *c, const uint8_t *buf, size_t len, int64_t hw)
{
    size_t pos = 0;
    while (pos + KAFKA_BATCH_HEADER_SIZE <= len && c->applied_next < hw) {
        struct kafka_batch_header h;
        if (kafka_batch_header_parse(buf + pos, len - pos, &h) != 0)
            break;
        size_t total = (size_t)h.batch_length + 12;
        if (h.batch_length < 0 || pos + total > len)
            break;
        int64_t last = h.base_offset + h.last_offset_delta;
        if (last >= hw)
            break; /* not committed (never handed out by a fetch; kept for safety) */
        if (last >= c->applied_next)
            apply_batch(c, buf + pos, total, h.base_offset);
        if (last + 1 > c->applied_next)
            c->applied_next = last + 1;
        pos += total;
    }
    return pos;
}

static void apply_committed(struct controller *c)
{
    if (c->part == NULL)
        return; /* an observer applies what its fetches bring */
    /* Only what is committed AND durable here: a record applied before this node's copy of
     * it is on disk can vanish in a crash, and the image would then go back in time after the
     * restart, undoing what the node already did for it (a deleted topic's replicas recreated
     * empty, with the Raft votes their deleted directories held forgotten: a second leader in
     * an epoch; whole-cluster simulation seed 1960). */
    int64_t hw = partition_high_watermark(c->part);
    int64_t durable = partition_durable_offset(c->part);
    if (durable < hw)
        hw = durable;
    while (c->applied_next < hw) {
        struct storage_read_result res;
        int rc = partition_read(c->part, c->applied_next, CTL_READ_BYTES, true, &res);
        if (rc != 0 || res.bytes == 0 || res.first_offset < 0) {
            if (rc == LM_E_OUT_OF_RANGE && c->applied_next < partition_log_start_offset(c->part)) {
                /* the log was trimmed past what we applied (a leader's log start): the image
                 * comes from another node's snapshot first */
                c->need_snapshot = true;
                return;
            }
            if (rc == 0)
                partition_read_release(c->part, &res);
            return;
        }
        uint8_t *buf = malloc(res.bytes);
        rc = buf ? storage_read_result_copy(&res, buf, res.bytes) : LM_E_NOMEM;
        partition_read_release(c->part, &res);
        if (rc != 0) {
            free(buf);
            BLOG_WARN_LIMITED("controller: reading the metadata log at %lld: %s",
                              (long long)c->applied_next, lm_strerror(rc));
            return;
        }
        size_t pos = apply_bytes(c, buf, res.bytes, hw);
        free(buf);
        if (pos == 0)
            return; /* nothing parsed: wait for the next input */
    }
}

/* ------------------------------------------------------------------ liveness */

static struct live *live_of(struct controller *c, int32_t id, uint64_t now)
{
    for (size_t i = 0; i < c->live_count; i++)
        if (c->live[i].id == id)
            return &c->live[i];
    if (c->live_count >= LM_META_BROKERS_MAX)
        return NULL; /* bounded: at most as many as can register */
    if (c->live_count == c->live_cap) {
        size_t cap = c->live_cap ? c->live_cap * 2 : 8;
        struct live *n = realloc(c->live, cap * sizeof(*n));
        if (n == NULL)
            return NULL;
        c->live = n;
        c->live_cap = cap;
    }
    struct live *l = &c->live[c->live_count++];
    l->id = id;
    l->last_seen_ms = now; /* a grace period from the first look */
    l->fence_inflight = false;
    return l;
}

struct fence_sub {
    struct controller_submit sub;
    struct controller *c;
    int32_t id;
    uint8_t buf[64];
};

static void fence_done(struct broker_shard *s, struct controller_submit *sub)
{
    (void)s;
    struct fence_sub *f = sub->arg;
    for (size_t i = 0; i < f->c->live_count; i++)
        if (f->c->live[i].id == f->id)
            f->c->live[i].fence_inflight = false;
    free(f);
}

static void liveness_check(struct controller *c, uint64_t now)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(c->store);
    for (size_t i = 0; i < snap->state.broker_count; i++) {
        const struct lm_meta_broker *b = &snap->state.brokers[i];
        struct live *l = live_of(c, b->id, now);
        if (l == NULL || l->fence_inflight)
            continue;
        if (b->id == c->node_id)
            l->last_seen_ms = now;
        bool alive = now - l->last_seen_ms <= c->session_ms &&
                     (b->id == c->node_id || !membership_node_down(c->gossip, b->id));
        if (alive != b->fenced)
            continue; /* the image agrees */
        struct fence_sub *f = calloc(1, sizeof(*f));
        if (f == NULL)
            break;
        struct lm_meta_record r = {.type = LM_META_BROKER_FENCE,
                                   .broker_id = b->id,
                                   .incarnation = b->incarnation,
                                   .fenced = !alive};
        int n = lm_meta_record_encode(&r, f->buf, sizeof(f->buf));
        LM_ASSERT(n > 0);
        f->c = c;
        f->id = b->id;
        f->sub.rec = f->buf;
        f->sub.len = (size_t)n;
        f->sub.timeout_ms = 5000;
        f->sub.done = fence_done;
        f->sub.arg = f;
        l->fence_inflight = true;
        controller_submit(c, c->shard, &f->sub);
    }
    lm_meta_snapshot_release(snap);
}

/* A heartbeat; leaving: the node is shutting down (SIGTERM) and is fenced at once, so its
 * partitions show no leader now rather than after a session timeout. */
static void heard_from(struct controller *c, int32_t id, uint64_t incarnation, bool leaving)
{
    (void)incarnation;
    uint64_t now = broker_now_ms();
    struct live *l = live_of(c, id, now);
    if (l != NULL)
        l->last_seen_ms = leaving ? (now > c->session_ms ? now - c->session_ms - 1 : 0) : now;
}

/* ------------------------------------------------------------------ registration */

static void reg_done(struct broker_shard *s, struct controller_submit *sub)
{
    (void)s;
    struct controller *c = sub->arg;
    c->reg_busy = false;
    if (sub->rc != 0) {
        BLOG_WARN_LIMITED("controller: registration of node %d not taken yet (%s); retrying",
                          c->node_id, lm_strerror(sub->rc));
        c->reg_retry_at_ms = broker_now_ms() + 500;
    }
}

static void registration_check(struct controller *c, uint64_t now)
{
    if (c->reg_busy || now < c->reg_retry_at_ms || c->stopping)
        return;
    if (!(c->cfg->process_roles & BROKER_ROLE_BROKER) && c->cfg->process_roles != 0)
        return; /* a controller-only node serves no clients: nothing to register */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(c->store);
    const struct lm_meta_broker *b = lm_meta_state_broker(&snap->state, c->node_id);
    bool current = b != NULL && b->incarnation == c->incarnation;
    lm_meta_snapshot_release(snap);
    if (current)
        return;
    struct lm_meta_record r = {.type = LM_META_BROKER_REGISTER,
                               .broker_id = c->node_id,
                               .incarnation = c->incarnation,
                               .rack = c->rack,
                               .endpoints = c->endpoints};
    int n = lm_meta_record_encode(&r, c->reg_buf, sizeof(c->reg_buf));
    if (n <= 0)
        return;
    memset(&c->reg, 0, sizeof(c->reg));
    c->reg.rec = c->reg_buf;
    c->reg.len = (size_t)n;
    c->reg.done = reg_done;
    c->reg.arg = c;
    c->reg_busy = true;
    controller_submit(c, c->shard, &c->reg);
}

static void send_heartbeat(struct controller *c, int32_t leader, bool leaving);

static void heartbeat(struct controller *c, uint64_t now)
{
    if (now < c->hb_next_ms)
        return;
    c->hb_next_ms = now + CTL_BROKER_HB_MS;
    int32_t leader = controller_leader(c);
    if (leader < 0)
        return;
    if (leader == c->node_id) {
        heard_from(c, c->node_id, c->incarnation, false);
        return;
    }
    send_heartbeat(c, leader, false);
}

static void send_heartbeat(struct controller *c, int32_t leader, bool leaving)
{
    struct ctl_call *k = call_new(c, KIND_HEARTBEAT, 13);
    if (k == NULL)
        return;
    lm_put_be32(k->buf + 1, (uint32_t)c->node_id);
    lm_put_be64(k->buf + 5, c->incarnation);
    k->buf[13] = leaving ? 1 : 0;
    k->call.done = call_free_done;
    (void)call_send(c, leader, k);
}

static void leader_set(struct controller *c, int32_t leader, int32_t term);

/* ------------------------------------------------------------------ observers */

/* A voter an observer's fetch could not reach: when it is the leader this node believes in,
 * that belief goes (a dead leader would otherwise be asked forever, the new one never heard
 * of), and the next fetch asks the next voter, which names the leader in its answer. */
static void voter_unreachable(struct controller *c, int32_t to)
{
    BLOG_INFO_LIMITED("controller: node %d did not answer a metadata fetch", to);
    if (to == controller_leader(c))
        leader_set(c, -1, -1);
    c->fetch_rr++;
}

static void fetch_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct ctl_call *k = call->arg;
    struct controller *c = k->c;
    if (k->gen != c->fetch_gen) { /* abandoned (fetch_abandon): another one is under way */
        free(k);
        return;
    }
    c->fetch_busy = false;
    c->fetch_at_ms = broker_now_ms() + CTL_TICK_MS;
    if (rc == 0 && call->resp_len >= CTL_FETCH_HEAD && call->resp[0] == 0 && !c->stopping) {
        int32_t leader = (int32_t)lm_get_be32(call->resp + 1);
        int64_t hw = (int64_t)lm_get_be64(call->resp + 5);
        if (leader >= 0)
            leader_set(c, leader, -1);
        size_t n = call->resp_len - CTL_FETCH_HEAD;
        size_t used = apply_bytes(c, call->resp + CTL_FETCH_HEAD, n, hw);
        if (leader >= 0 && c->applied_next >= hw) /* controller_image_fresh */
            __atomic_store_n(&c->fresh_ms, broker_now_ms(), __ATOMIC_RELEASE);
        if (used > 0 && c->applied_next < hw)
            c->fetch_at_ms = 0; /* more to read: at once */
        if (used == 0 && c->applied_next < hw)
            BLOG_INFO_LIMITED("controller: a fetch from node %d at offset %lld brought nothing "
                              "applicable (%zu bytes, its high watermark %lld)",
                              k->to, (long long)c->applied_next, n, (long long)hw);
        after_input(c);
    } else if (rc == 0 && call->resp_len >= 1 && call->resp[0] == 2) {
        c->need_snapshot = true; /* trimmed past us: a snapshot first */
    } else if (!c->stopping) {
        voter_unreachable(c, k->to);
    }
    free(k);
}

/* ---- snapshots ---- */

static void snapshot_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct ctl_call *k = call->arg;
    struct controller *c = k->c;
    if (k->gen != c->fetch_gen) { /* abandoned (fetch_abandon) */
        free(k);
        return;
    }
    c->snap_fetch_busy = false;
    int64_t covers = -1;
    if (rc == 0 && call->resp_len > 1 && call->resp[0] == 0 && !c->stopping &&
        meta_snapshot_last(call->resp + 1, call->resp_len - 1, &covers) == 0 &&
        covers + 1 < c->applied_next) {
        /* A voter whose latest snapshot is older than what this node applied (not the one
         * that trimmed past it): loading it would take the image back in time, and topics
         * created since would vanish until replayed, their partitions' data with them. */
        BLOG_INFO("controller: a snapshot up to offset %lld is older than the applied log "
                  "(%lld): asking another voter",
                  (long long)covers, (long long)c->applied_next);
        c->fetch_rr++;
    } else if (rc == 0 && call->resp_len > 1 && call->resp[0] == 0 && !c->stopping) {
        int64_t last = -1;
        int lrc = meta_snapshot_load(c->store, call->resp + 1, call->resp_len - 1, &last);
        int64_t start = c->part != NULL ? partition_log_start_offset(c->part) : 0;
        if (lrc != 0) {
            BLOG_WARN_LIMITED("controller: a received snapshot does not load: %s",
                              lm_strerror(lrc));
        } else {
            BLOG_INFO("controller: image rebuilt from a snapshot up to offset %lld",
                      (long long)last);
            c->applied_next = last + 1;
            c->need_snapshot = c->part != NULL && c->applied_next < start;
            after_input(c);
        }
    } else if (!c->stopping) {
        voter_unreachable(c, k->to);
    }
    free(k);
}

static void snapshot_fetch(struct controller *c)
{
    if (!c->need_snapshot || c->snap_fetch_busy || c->stopping)
        return;
    int32_t to = controller_leader(c);
    if (to < 0 || to == c->node_id)
        to = c->voters[c->fetch_rr % c->n_voters].id;
    if (to == c->node_id) {
        c->fetch_rr++;
        return;
    }
    struct ctl_call *k = call_new(c, KIND_SNAPSHOT, 0);
    if (k == NULL)
        return;
    k->call.done = snapshot_done;
    k->to = to;
    k->gen = ++c->fetch_gen;
    c->fetch_to = to;
    c->snap_fetch_busy = true;
    c->fetch_sent_ms = broker_now_ms();
    if (call_send(c, to, k) != 0) {
        c->snap_fetch_busy = false;
        voter_unreachable(c, to);
    }
}

static void serve_snapshot(struct controller *c, struct broker_req *req, uint8_t **resp,
                           size_t *resp_len)
{
    static const uint8_t none[1] = {1};
    *resp = (uint8_t *)none;
    *resp_len = 1;
    uint8_t *buf = NULL;
    size_t len = 0;
    if (meta_snapshot_read_latest(c->dir, &buf, &len) != 0)
        return;
    uint8_t *out = kafka_arena_alloc(&req->arena, len + 1, 8);
    if (out != NULL) {
        out[0] = 0;
        memcpy(out + 1, buf, len);
        *resp = out;
        *resp_len = len + 1;
    }
    free(buf);
}

/* Every snapshot_records applied records: the image as a snapshot file, then the log trimmed
 * up to it (a leader keeps what its voters have not matched yet, so they need no snapshot
 * unless they were away; observers and those read one over FETCH/SNAPSHOT). */
static void snapshot_maybe(struct controller *c)
{
    int64_t last = c->applied_next - 1;
    if (c->need_snapshot || last - c->snap_last < (int64_t)c->snapshot_records)
        return;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(c->store);
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = meta_snapshot_encode(&snap->state, last, &buf, &len);
    lm_meta_snapshot_release(snap);
    if (rc == 0)
        rc = meta_snapshot_write(c->dir, last, buf, len);
    free(buf);
    if (rc != 0) {
        BLOG_WARN_LIMITED("controller: writing a metadata snapshot: %s", lm_strerror(rc));
        c->snap_last = last; /* next try after as many records again */
        return;
    }
    c->snap_last = last;
    if (c->part == NULL)
        return;
    int64_t trim = last + 1;
    if (partition_is_leader(c->part)) {
        struct raft *r = partition_raft(c->part);
        for (uint32_t i = 0; i < c->n_voters; i++) {
            if (c->voters[i].id == c->node_id)
                continue;
            const struct raft_progress *pr = raft_progress(r, rid(c->voters[i].id));
            if (pr != NULL && pr->match + 1 < trim)
                trim = pr->match + 1;
        }
    }
    if (trim > partition_log_start_offset(c->part)) {
        rc = partition_advance_start(c->part, trim);
        if (rc != 0)
            BLOG_WARN_LIMITED("controller: trimming the metadata log: %s", lm_strerror(rc));
    }
    BLOG_INFO("controller: snapshot up to offset %lld (%zu bytes); log starts at %lld",
              (long long)last, len, (long long)partition_log_start_offset(c->part));
}

static void observer_fetch(struct controller *c, uint64_t now)
{
    if (c->fetch_busy || now < c->fetch_at_ms || c->stopping)
        return;
    int32_t to = controller_leader(c);
    if (to < 0)
        to = c->voters[c->fetch_rr % c->n_voters].id;
    struct ctl_call *k = call_new(c, KIND_FETCH, 8);
    if (k == NULL)
        return;
    lm_put_be64(k->buf + 1, (uint64_t)c->applied_next);
    k->call.done = fetch_done;
    k->to = to;
    k->gen = ++c->fetch_gen;
    c->fetch_to = to;
    c->fetch_busy = true;
    c->fetch_sent_ms = broker_now_ms();
    if (call_send(c, to, k) != 0) {
        c->fetch_busy = false;
        voter_unreachable(c, to);
        c->fetch_at_ms = now + 200;
    }
}

/* A voter's answer to an observer's fetch (on shard 0, into the request's arena). */
static void serve_fetch(struct controller *c, struct broker_req *req, const uint8_t *body,
                        size_t len, uint8_t **resp, size_t *resp_len)
{
    static const uint8_t none[CTL_FETCH_HEAD] = {1};
    *resp = (uint8_t *)none;
    *resp_len = CTL_FETCH_HEAD;
    if (c->part == NULL || len < 9)
        return;
    int64_t from = (int64_t)lm_get_be64(body + 1);
    int64_t hw = partition_high_watermark(c->part);
    if (from < partition_log_start_offset(c->part)) {
        static const uint8_t below[CTL_FETCH_HEAD] = {2};
        *resp = (uint8_t *)below;
        return;
    }
    uint8_t *out = kafka_arena_alloc(&req->arena, CTL_FETCH_HEAD + CTL_FETCH_BYTES, 8);
    if (out == NULL)
        return;
    size_t n = 0;
    if (from >= 0 && from < hw) {
        struct storage_read_result res;
        if (partition_read(c->part, from, CTL_FETCH_BYTES, true, &res) == 0) {
            if (res.bytes <= CTL_FETCH_BYTES &&
                storage_read_result_copy(&res, out + CTL_FETCH_HEAD, CTL_FETCH_BYTES) == 0)
                n = res.bytes;
            partition_read_release(c->part, &res);
        }
    }
    out[0] = 0;
    lm_put_be32(out + 1, (uint32_t)controller_leader(c));
    lm_put_be64(out + 5, (uint64_t)hw);
    *resp = out;
    *resp_len = CTL_FETCH_HEAD + n;
}

/* ------------------------------------------------------------------ driving */

static void leader_set(struct controller *c, int32_t leader, int32_t term)
{
    if (leader == controller_leader(c))
        return;
    __atomic_store_n(&c->leader, leader, __ATOMIC_RELEASE);
    BLOG_INFO("controller: leader is %s%d (term %d)", leader < 0 ? "unknown " : "node ", leader,
              term);
}

/* Kafka's broker serves clients once it has replayed the metadata log past its own
 * registration; before that its image may lack topics and nodes others already know. */
static void caught_up_check(struct controller *c)
{
    if (__atomic_load_n(&c->caught_up, __ATOMIC_RELAXED))
        return;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(c->store);
    const struct lm_meta_broker *b = lm_meta_state_broker(&snap->state, c->node_id);
    bool up = b != NULL && b->incarnation == c->incarnation && !b->fenced;
    lm_meta_snapshot_release(snap);
    if (!up)
        return;
    __atomic_store_n(&c->caught_up, true, __ATOMIC_RELEASE);
    BLOG_INFO("controller: caught up with the metadata log (%lld records applied): serving "
              "clients",
              (long long)c->applied_next);
}

bool controller_caught_up(const struct controller *c)
{
    return __atomic_load_n(&c->caught_up, __ATOMIC_ACQUIRE);
}

/* A voter's image is current when its metadata log works and it has applied everything
 * committed as far as anyone can tell it: as the leader, its own commit; as a follower, the
 * commit index its leader of the current term announced within CTL_FRESH_MS (its own high
 * watermark may stop short of that while its log catches up). Observers: fetch_done. */
static void fresh_update(struct controller *c)
{
    if (c->observer || c->part == NULL || partition_failed(c->part) != 0)
        return;
    uint64_t now = broker_now_ms();
    bool fresh;
    if (partition_is_leader(c->part))
        fresh = c->applied_next >= partition_high_watermark(c->part);
    else
        fresh = partition_leader(c->part) != RAFT_NONE &&
                c->leader_commit_term == raft_term(partition_raft(c->part)) &&
                now < c->leader_commit_ms + CTL_FRESH_MS && c->applied_next > c->leader_commit;
    if (fresh)
        __atomic_store_n(&c->fresh_ms, now, __ATOMIC_RELEASE);
}

bool controller_image_fresh(const struct controller *c, uint64_t now)
{
    uint64_t at = __atomic_load_n(&c->fresh_ms, __ATOMIC_ACQUIRE);
    return at != 0 && now < at + CTL_FRESH_MS;
}

static void after_input(struct controller *c)
{
    if (c->shard == NULL || (c->part == NULL && !c->observer))
        return;
    apply_committed(c);
    caught_up_check(c);
    if (c->part != NULL)
        leader_set(c, partition_is_leader(c->part) ? c->node_id : nid(partition_leader(c->part)),
                   partition_leader_epoch(c->part));
    int32_t leader = controller_leader(c);
    bool is_leader = leader == c->node_id && c->part != NULL;
    if (is_leader && !c->was_leader) {
        /* a new leader gives every broker a full session before fencing it */
        uint64_t now = broker_now_ms();
        for (size_t i = 0; i < c->live_count; i++) {
            c->live[i].last_seen_ms = now;
            c->live[i].fence_inflight = false;
        }
    }
    c->was_leader = is_leader;
    fresh_update(c);
    subs_kick(c);
}

static void on_tick(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct controller *c = t->arg;
    c->tick_armed = false;
    if ((c->part == NULL && !c->observer && !c->log_reopen) || c->stopping)
        return;
    uint64_t now = broker_now_ms();
    if (!c->observer && (c->log_reopen || partition_failed(c->part) == LM_E_FULL))
        metadata_log_recover(c, now);
    int failed = c->part != NULL ? partition_failed(c->part) : 0;
    if (failed != 0 && failed != LM_E_FULL && !c->log_failed_said) {
        /* Until a restart this node neither votes in the controller group nor applies
         * anything new: its metadata image stays as it is (controller_image_fresh is false,
         * so no replica is deleted on its word). */
        BLOG_ERROR("controller: the metadata log failed (%s): this node's metadata stays as "
                   "it is until a restart",
                   lm_strerror(failed));
        c->log_failed_said = true;
    }
    int rc = c->part != NULL ? partition_tick(c->part, (int64_t)now) : 0;
    if (rc != 0 && partition_failed(c->part) == 0)
        BLOG_WARN_LIMITED("controller: tick: %s", lm_strerror(rc));
    after_input(c);
    membership_tick(c->gossip, now);
    if (c->gossip != NULL) {
        uint32_t counts[4];
        membership_counts(c->gossip, counts);
        for (int i = 0; i < 4; i++)
            __atomic_store_n(&c->swim_counts[i], counts[i], __ATOMIC_RELAXED);
        int32_t ids[CONTROLLER_SWIM_STATES_MAX];
        uint8_t st[CONTROLLER_SWIM_STATES_MAX];
        size_t n = membership_states(c->gossip, ids, st, CONTROLLER_SWIM_STATES_MAX);
        for (size_t i = 0; i < n; i++)
            __atomic_store_n(&c->swim_states[i], (uint64_t)(uint32_t)ids[i] << 8 | st[i],
                             __ATOMIC_RELAXED);
        __atomic_store_n(&c->swim_states_count, (uint32_t)n, __ATOMIC_RELEASE);
    }
    if ((c->fetch_busy && now > c->fetch_sent_ms + CTL_FETCH_WAIT_MS) ||
        (c->snap_fetch_busy && now > c->fetch_sent_ms + CTL_SNAPSHOT_WAIT_MS)) {
        /* A live voter answers a fetch or snapshot request at once; one that does not (a
         * paused process, a cut-off node: the connection's own timeout is 15 s) is given up
         * on, and the next request asks another voter, so an observer follows a new leader
         * well within the broker session timeout instead of being fenced. */
        BLOG_INFO_LIMITED("controller: node %d did not answer a metadata %s request in %llu ms; "
                          "asking another voter",
                          c->fetch_to, c->snap_fetch_busy ? "snapshot" : "fetch",
                          (unsigned long long)(now - c->fetch_sent_ms));
        c->fetch_gen++;
        c->fetch_busy = false;
        c->snap_fetch_busy = false;
        voter_unreachable(c, c->fetch_to);
    }
    snapshot_fetch(c);
    if (c->observer && !c->need_snapshot)
        observer_fetch(c, now);
    snapshot_maybe(c);
    registration_check(c, now);
    heartbeat(c, now);
    if (controller_leader(c) == c->node_id)
        liveness_check(c, now);
    if (broker_timer_start(c->shard, &c->tick, CTL_TICK_MS, on_tick, c) == 0)
        c->tick_armed = true;
}

/* laminar.gossip.listener, else this node's controller listener, else its first listener. */
static int gossip_start(struct controller *c)
{
    struct membership_config mc = {.node_id = c->node_id, .rack = c->rack};
    const struct broker_config *cfg = c->cfg;
    const struct broker_listener *ctl = NULL;
    for (uint32_t i = 0; i < cfg->listeners_count && ctl == NULL; i++)
        if (broker_config_is_controller_listener(cfg, cfg->listeners[i].name))
            ctl = &cfg->listeners[i];
    const char *g = broker_config_get(cfg, "laminar.gossip.listener");
    if (g != NULL && g[0] != 0) {
        const char *colon = strrchr(g, ':');
        long port = colon ? strtol(colon + 1, NULL, 10) : 0;
        if (colon == NULL || port <= 0 || port > 65535 || (size_t)(colon - g) >= sizeof(mc.host)) {
            BLOG_ERROR("config: laminar.gossip.listener=%s: expected HOST:PORT", g);
            return LM_E_CONFIG;
        }
        memcpy(mc.host, g, (size_t)(colon - g));
        mc.host[colon - g] = 0;
        mc.port = (uint16_t)port;
    } else {
        const struct broker_listener *l = ctl != NULL ? ctl : &cfg->listeners[0];
        snprintf(mc.host, sizeof(mc.host), "%s", l->host);
        mc.port = l->port;
    }
    char kafka[LM_META_ENDPOINTS_MAX + 1], raft[300] = "";
    snprintf(kafka, sizeof(kafka), "%s", c->endpoints);
    char *comma = strchr(kafka, ',');
    if (comma != NULL)
        *comma = 0;
    if (ctl != NULL)
        snprintf(raft, sizeof(raft), "%s:%u", ctl->host, ctl->port);
    mc.kafka_endpoint = kafka;
    mc.raft_addr = raft;
    mc.secret = c->secret;
    for (uint32_t i = 0; i < c->n_voters && mc.n_seeds < 8; i++) {
        snprintf(mc.seeds[mc.n_seeds].host, sizeof(mc.seeds[0].host), "%s", c->voters[i].host);
        mc.seeds[mc.n_seeds++].port = c->voters[i].port;
    }
    return membership_start(c->shard, &mc, &c->gossip);
}

/* Opens the metadata log (a raft voter's partition) in c->dir into c->part: 0 or the error. */
static int metadata_log_open(struct controller *c)
{
    if (mkdir(c->dir, 0755) != 0 && errno != EEXIST) {
        BLOG_ERROR("controller: cannot create %s: %s", c->dir, strerror(errno));
        return LM_E_IO;
    }
    struct partition_config pc;
    partition_config_default(&pc);
    pc.dir = c->dir;
    pc.node_id = rid(c->node_id);
    pc.group = 0;
    for (uint32_t i = 0; i < c->n_voters; i++)
        pc.voters.voters[pc.voters.n_voters++] = rid(c->voters[i].id);
    pc.internal_topic = true;
    /* The log is trimmed only behind a snapshot (snapshot_maybe), never by time or size:
     * every record after the newest snapshot is part of the metadata. */
    pc.storage.retention_ms = -1;
    pc.storage.retention_bytes = -1;
    pc.storage.segment_ms = -1;
    pc.storage.segment_bytes = CTL_SEGMENT_BYTES; /* so a trim after a snapshot frees space */
    pc.tick_ms = CTL_TICK_MS;
    pc.election_ticks = CTL_ELECTION_TICKS;
    pc.heartbeat_ticks = CTL_HEARTBEAT_TICKS;
    if (getrandom(&pc.rand_seed, sizeof(pc.rand_seed), 0) != sizeof(pc.rand_seed))
        pc.rand_seed = c->incarnation;
    struct partition_env env = {.ctx = c, .sync = env_sync, .send = env_send};
    int rc = partition_open(&pc, &env, (int64_t)broker_now_ms(), &c->part);
    if (rc != 0)
        c->part = NULL;
    return rc;
}

/* The metadata log failed on a full disk: a failed partition stays failed, so it is closed and
 * opened again from its files, as at a start, once no fsync is in flight, and again every
 * CTL_REOPEN_MS while the open fails. The image keeps what it applied (applied_next) and goes
 * on from the recovered log; proposals in flight fail and are submitted again (append_done).
 * A write refused for want of space wrote nothing the log counts as durable; an I/O error
 * (a failed fsync above all) leaves what the page cache holds in doubt, so that failure stays
 * until the process restarts and recovers from what the disk has. */
static void metadata_log_recover(struct controller *c, uint64_t now)
{
    if (c->part != NULL) {
        if (c->sync_pending > 0)
            return;
        BLOG_ERROR_LIMITED("controller: metadata log failed (no space left on the device); "
                           "reopening it");
        struct partition *old = c->part;
        c->part = NULL; /* the completions of the close see no partition */
        int rc = partition_close(old);
        if (rc != 0)
            BLOG_DEBUG("controller: closing the failed metadata log: %s", lm_strerror(rc));
        c->log_reopen = true;
        /* at once the first time; a log that fails again soon after a reopen (the disk still
         * full) waits CTL_REOPEN_MS */
        c->reopen_at_ms = now < c->reopened_ms + CTL_REOPEN_MS ? now + CTL_REOPEN_MS : now;
    }
    if (now < c->reopen_at_ms)
        return;
    int rc = metadata_log_open(c);
    if (rc != 0) {
        BLOG_WARN_LIMITED("controller: reopening the metadata log: %s", storage_io_strerror(rc));
        c->reopen_at_ms = now + CTL_REOPEN_MS;
        return;
    }
    c->log_reopen = false;
    c->reopened_ms = now;
    BLOG_INFO_LIMITED("controller: metadata log reopened (%lld records applied before)",
                      (long long)c->applied_next);
}

int controller_shard_start(struct controller *c, struct broker_shard *s)
{
    c->shard = s;
    endpoints_of(c->cfg, c->endpoints, sizeof(c->endpoints)); /* advertised: derived by now */
    int grc = gossip_start(c);
    if (grc != 0)
        return grc;
    uint8_t *sbuf = NULL;
    size_t slen = 0;
    if (mkdir(c->dir, 0755) != 0 && errno != EEXIST) {
        BLOG_ERROR("controller: cannot create %s: %s", c->dir, strerror(errno));
        return LM_E_IO;
    }
    grc = meta_snapshot_read_latest(c->dir, &sbuf, &slen);
    if (grc == 0) {
        int64_t last = -1;
        grc = meta_snapshot_load(c->store, sbuf, slen, &last);
        free(sbuf);
        if (grc != 0) {
            BLOG_ERROR("controller: the newest metadata snapshot in %s does not load: %s", c->dir,
                       lm_strerror(grc));
            return grc;
        }
        c->applied_next = last + 1;
        c->snap_last = last;
        BLOG_INFO("controller: image loaded from the snapshot up to offset %lld", (long long)last);
    } else if (grc != LM_E_NOT_FOUND) {
        BLOG_ERROR("controller: reading metadata snapshots in %s: %s", c->dir, lm_strerror(grc));
        return grc;
    }
    if (c->observer) {
        BLOG_INFO("controller: node %d observes the metadata log of %u voter(s)", c->node_id,
                  c->n_voters);
        int orc = broker_timer_start(s, &c->tick, CTL_TICK_MS, on_tick, c);
        if (orc == 0)
            c->tick_armed = true;
        return orc;
    }
    int rc = metadata_log_open(c);
    if (rc != 0) {
        BLOG_ERROR("controller: cannot open the metadata log in %s: %s", c->dir, lm_strerror(rc));
        membership_stop(c->gossip);
        c->gossip = NULL;
        return rc;
    }
    after_input(c); /* replays the committed log into the image */
    BLOG_INFO("controller: metadata log open (%lld committed records applied)",
              (long long)c->applied_next);
    rc = broker_timer_start(s, &c->tick, CTL_TICK_MS, on_tick, c);
    if (rc == 0)
        c->tick_armed = true;
    return rc;
}

bool controller_handoff(struct controller *c)
{
    if (c->part == NULL || c->observer || !partition_is_leader(c->part))
        return false;
    uint64_t now = broker_now_ms();
    /* a transfer stands until it completes or raft abandons it (an election timeout); then
     * another attempt */
    if (now < c->handoff_at_ms || partition_transferring(c->part))
        return true;
    c->handoff_at_ms = now + CTL_HANDOFF_RETRY_MS;
    uint32_t to = partition_handoff_target(c->part, NULL, NULL);
    if (to == RAFT_NONE)
        return true;
    int rc = partition_transfer_leader(c->part, to);
    if (rc != 0)
        BLOG_WARN("controller: leadership transfer to node %d: %s", (int)to - 1, lm_strerror(rc));
    else
        BLOG_INFO("controller: handing leadership to node %d", (int)to - 1);
    return true;
}

void controller_shard_drain(struct controller *c)
{
    int32_t leader = controller_leader(c);
    if (leader >= 0 && leader != c->node_id && !c->stopping)
        send_heartbeat(c, leader, true); /* a graceful leave: fenced at once */
    if (!c->stopping)
        membership_leave(c->gossip);
    c->stopping = true;
    struct controller_submit *sub = c->subs, *next;
    for (; sub != NULL; sub = next) {
        next = sub->next_;
        if (sub->state_ == SUB_PROPOSED)
            continue; /* completes with its append (commit, or the close's LM_E_CLOSED) */
        if (sub->state_ == SUB_FORWARDED && sub->call_ != NULL)
            ((struct ctl_call *)sub->call_)->sub = NULL;
        sub_finish(c, sub, LM_E_CLOSED);
    }
}

void controller_shard_stop(struct controller *c)
{
    if (c->shard == NULL)
        return;
    c->stopping = true;
    if (c->tick_armed)
        broker_timer_cancel(c->shard, &c->tick);
    c->tick_armed = false;
    membership_stop(c->gossip);
    c->gossip = NULL;
    for (uint32_t i = 0; i < c->n_peers; i++)
        for (uint32_t l = 0; l < LANES; l++) {
            if (c->peers[i].lane[l].peer != NULL)
                broker_peer_close(c->peers[i].lane[l].peer);
            c->peers[i].lane[l].peer = NULL;
        }
    if (c->part != NULL) {
        int rc = partition_close(c->part);
        if (rc != 0)
            BLOG_WARN("controller: closing the metadata log: %s", lm_strerror(rc));
        c->part = NULL;
    }
}

/* ------------------------------------------------------------------ internal requests */

struct remote_op {
    struct broker_xcall x;
    struct broker_req *req;
    struct controller *c;
    struct controller_submit sub;
    uint8_t resp[16];
    size_t resp_len;
    const uint8_t *resp_ptr; /* a larger answer (FETCH), else resp */
};

static bool is_remote(const struct controller_submit *sub)
{
    return sub->x_.run == NULL; /* remote ones complete through their remote_op */
}

static void remote_run(struct broker_shard *target, struct broker_xcall *x)
{
    (void)target;
    struct remote_op *op = x->arg;
    struct controller *c = op->c;
    const uint8_t *body = op->req->body;
    size_t len = op->req->body_len;
    op->resp_len = 0;
    op->resp_ptr = NULL;
    if (c->part == NULL || c->stopping) {
        broker_xcall_return(c->shard, x);
        return;
    }
    switch (body[0]) {
    case KIND_RAFT: {
        struct raft_msg m;
        size_t used = 0;
        int rc = raft_wire_decode(body + 1, len - 1, &m, &used);
        if (rc == 0 && m.group == 0 && m.to == rid(c->node_id)) {
            rc = partition_step(c->part, &m);
            if (rc != 0 && rc != LM_E_STATE && partition_failed(c->part) == 0)
                BLOG_WARN_LIMITED("controller: raft step: %s", lm_strerror(rc));
            /* the commit index the leader of our term announces (fresh_update) */
            if (rc == 0 && (m.type == RAFT_MSG_APP || m.type == RAFT_MSG_HEARTBEAT) &&
                partition_failed(c->part) == 0 && m.term == raft_term(partition_raft(c->part)) &&
                m.from == partition_leader(c->part)) {
                if (m.term != c->leader_commit_term || m.commit > c->leader_commit)
                    c->leader_commit = m.commit;
                c->leader_commit_term = m.term;
                c->leader_commit_ms = broker_now_ms();
            }
        } else if (rc != 0) {
            BLOG_WARN_LIMITED("controller: undecodable raft message (%s)", lm_strerror(rc));
        }
        if (rc == 0 || used > 0)
            raft_msg_deinit(&m);
        after_input(c);
        break;
    }
    case KIND_SNAPSHOT: {
        uint8_t *out;
        serve_snapshot(c, op->req, &out, &op->resp_len);
        op->resp_ptr = out;
        break;
    }
    case KIND_FETCH: {
        uint8_t *out;
        serve_fetch(c, op->req, body, len, &out, &op->resp_len);
        op->resp_ptr = out;
        break;
    }
    case KIND_HEARTBEAT:
        if (len >= 13)
            heard_from(c, (int32_t)lm_get_be32(body + 1), lm_get_be64(body + 5),
                       len >= 14 && body[13] == 1);
        break;
    case KIND_SUBMIT: {
        if (controller_leader(c) != c->node_id || len < 2) {
            op->resp[0] = SUBMIT_NOT_LEADER;
            op->resp_len = 13;
            break;
        }
        /* a record that does not decode (or is too large) never enters the log */
        struct lm_meta_record m;
        struct lm_config_entry *cfg = NULL;
        int drc = len - 1 > LM_META_RECORD_BYTES_MAX
                      ? LM_E_TOO_LARGE
                      : lm_meta_record_decode(body + 1, len - 1, &m, &cfg);
        if (drc == 0)
            lm_meta_record_free(&m);
        if (drc != 0) {
            op->resp[0] = SUBMIT_APPLIED;
            lm_put_be32(op->resp + 1, (uint32_t)LM_E_INVALID);
            lm_put_be64(op->resp + 5, (uint64_t)(int64_t)-1);
            op->resp_len = 13;
            break;
        }
        memset(&op->sub, 0, sizeof(op->sub));
        op->sub.rec = body + 1;
        op->sub.len = len - 1;
        sub_add(c, &op->sub);
        subs_kick(c);
        return; /* answered by remote_sub_done */
    }
    default:
        break;
    }
    broker_xcall_return(c->shard, x);
}

static void remote_sub_done(struct controller *c, struct controller_submit *sub)
{
    struct remote_op *op = (struct remote_op *)((char *)sub - offsetof(struct remote_op, sub));
    if (sub->rc == LM_E_STATE && sub->offset < 0) {
        op->resp[0] = SUBMIT_NOT_LEADER;
    } else {
        op->resp[0] = SUBMIT_APPLIED;
        lm_put_be32(op->resp + 1, (uint32_t)sub->rc);
        lm_put_be64(op->resp + 5, (uint64_t)sub->offset);
    }
    op->resp_len = 13;
    broker_xcall_return(c->shard, &op->x);
}

static void remote_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    struct remote_op *op = x->arg;
    if (op->resp_ptr != NULL) {
        broker_req_respond(op->req, op->resp_ptr, op->resp_len);
        return;
    }
    uint8_t *body = kafka_arena_alloc(&op->req->arena, op->resp_len ? op->resp_len : 1, 1);
    if (body == NULL) {
        broker_req_close_after(op->req);
        broker_req_respond_none(op->req);
        return;
    }
    memcpy(body, op->resp, op->resp_len);
    broker_req_respond(op->req, body, op->resp_len ? op->resp_len : 1);
}

/* An internal request that cannot be served: the connection closes (as Kafka closes one it
 * cannot parse). */
static void refuse(struct broker_req *req)
{
    broker_req_close_after(req);
    broker_req_respond_none(req);
}

void controller_handle(struct controller *c, struct broker_req *req)
{
    if (c != NULL && c->secret_len > 0) {
        uint8_t mac[CTL_MAC_BYTES];
        bool ok = req->body_len > CTL_MAC_BYTES &&
                  mac_of(c, req->body, req->body_len - CTL_MAC_BYTES, mac) &&
                  CRYPTO_memcmp(mac, req->body + req->body_len - CTL_MAC_BYTES, CTL_MAC_BYTES) == 0;
        if (!ok) {
            BLOG_WARN_LIMITED("controller: an internal request without a valid "
                              "laminar.cluster.secret MAC from %s; closing the connection",
                              req->client_id ? "a peer" : "an unnamed peer");
            refuse(req);
            return;
        }
        req->body_len -= CTL_MAC_BYTES; /* the handlers below see the body alone */
    }
    if (c != NULL && req->api_version == 0 && req->body_len >= 1 &&
        (req->body[0] == CONTROLLER_KIND_PARTITION_RAFT ||
         req->body[0] == CONTROLLER_KIND_PARTITION_RAFT_BATCH ||
         req->body[0] == CONTROLLER_KIND_NODE_PING ||
         req->body[0] == CONTROLLER_KIND_PARTITION_ELECT ||
         req->body[0] == CONTROLLER_KIND_PARTITION_LOG_START)) {
        if (c->partition_fn != NULL) {
            c->partition_fn(c->partition_ctx, req, req->body, req->body_len);
            return;
        }
        refuse(req);
        return;
    }
    if (c == NULL || req->api_version != 0 || req->body_len < 1 ||
        req->body_len > (size_t)RAFT_WIRE_BYTES_MAX + 1) {
        refuse(req);
        return;
    }
    struct remote_op *op = kafka_arena_alloc(&req->arena, sizeof(*op), 16);
    if (op == NULL) {
        refuse(req);
        return;
    }
    op->req = req;
    op->c = c;
    op->x.run = remote_run;
    op->x.done = remote_done;
    op->x.arg = op;
    broker_shard_call(req->shard, CONTROLLER_SHARD, &op->x);
}
