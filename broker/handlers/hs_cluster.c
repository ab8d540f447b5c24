/* The handler layer in a cluster (controller.quorum.voters set): which partitions are this
 * node's, where the others are, new assignments, and metadata changes sent to the
 * controller. Every function here is a no-op or "local" on a single node. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "broker/cluster/controller.h"
#include "broker/cluster/placement.h"
#include "broker/handlers/group_internal.h"
#include "broker/handlers/handlers_internal.h"
#include "common/lm_endian.h"
#include "common/lm_hash.h"
#include "consensus/raft_wire.h"
#include "protocol/kafka_errors.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

bool hs_cluster(const struct handlers_ctx *h)
{
    return h->ctl != NULL;
}

bool hs_local_replica(const struct handlers_ctx *h, const struct lm_meta_topic *t, int32_t p)
{
    if (h->ctl == NULL)
        return true;
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p, &n);
    if (r == NULL)
        return true; /* no assignment: the local node's */
    /* a replica a reassignment adds joins the partition's Raft group (as a learner,
     * hs_reassign.c) */
    for (int16_t i = 0; i < n; i++)
        if (r[i] == h->cfg->node_id)
            return true;
    return false;
}

int hs_assign(const struct lm_meta_state *st, int32_t first, int32_t partitions, int16_t rf,
              int32_t **out)
{
    uint32_t rnd[2] = {0, 0};
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd[0] = (uint32_t)broker_now_ms();
    return placement_assign_live(st, first, partitions, rf, rnd[0], rnd[1], out);
}

/* ---- a change submitted without waiting for it (auto-creation) ---- */

struct detached {
    struct controller_submit sub;
    struct hshard *hs; /* NULL once the shard stopped (the answer may come after) */
    struct detached *prev, *next;
    void (*answer)(struct hshard *hs, void *arg, int rc); /* NULL: the verdict is logged */
    void *answer_arg;
    uint8_t rec[];
};

static void detached_done(struct broker_shard *s, struct controller_submit *sub)
{
    (void)s;
    struct detached *d = sub->arg;
    if (d->hs != NULL) {
        LM_ASSERT(d->hs->detached_inflight > 0);
        d->hs->detached_inflight--;
        if (d->prev != NULL)
            d->prev->next = d->next;
        else
            d->hs->detached = d->next;
        if (d->next != NULL)
            d->next->prev = d->prev;
    }
    if (d->answer != NULL) {
        d->answer(d->hs, d->answer_arg, sub->rc);
        free(d);
        return;
    }
    /* already there, or overtaken (a leader announcing an epoch a newer one replaced) */
    if (sub->rc == LM_E_EXISTS || sub->rc == LM_E_STATE)
        BLOG_DEBUG("cluster: metadata change not taken by the controller: %s",
                   lm_strerror(sub->rc));
    else if (sub->rc != 0)
        BLOG_WARN_LIMITED("cluster: metadata change not taken by the controller: %s",
                          lm_strerror(sub->rc));
    free(d);
}

void hs_detached_orphan(struct hshard *hs)
{
    for (struct detached *d = hs->detached, *next; d != NULL; d = next) {
        next = d->next;
        d->hs = NULL;
        d->prev = d->next = NULL;
    }
    hs->detached = NULL;
    hs->detached_inflight = 0;
}

bool hs_submit_room(const struct hshard *hs)
{
    return hs->detached_inflight < HS_DETACHED_INFLIGHT_MAX;
}

int hs_submit_detached(struct hshard *hs, const struct lm_meta_record *r)
{
    return hs_submit_answered(hs, r, NULL, NULL);
}

int hs_submit_answered(struct hshard *hs, const struct lm_meta_record *r,
                       void (*answer)(struct hshard *hs, void *arg, int rc), void *arg)
{
    size_t len = lm_meta_record_size(r);
    if (len > LM_META_RECORD_BYTES_MAX)
        return LM_E_TOO_LARGE;
    struct detached *d = calloc(1, sizeof(*d) + len);
    if (d == NULL)
        return LM_E_NOMEM;
    int n = lm_meta_record_encode(r, d->rec, len);
    if (n < 0) {
        free(d);
        return n;
    }
    d->sub.rec = d->rec;
    d->sub.len = (size_t)n;
    d->sub.done = detached_done;
    d->sub.arg = d;
    d->answer = answer;
    d->answer_arg = arg;
    d->hs = hs;
    d->next = hs->detached;
    if (hs->detached != NULL)
        hs->detached->prev = d;
    hs->detached = d;
    hs->detached_inflight++;
    controller_submit(hs->node->ctl, hs->shard, &d->sub);
    return 0;
}

/* ---- replicated partitions: raft traffic between the replicas' nodes ---- */

/* An internal request about a partition on its way: its bytes and the call. */
struct hraft_call {
    struct broker_call call;
    struct broker_resp_part part;
    size_t len;
    uint8_t buf[];
};

struct hpeer {
    int32_t node;
    struct broker_peer *peer;
    uint64_t retry_at_ms;
    uint32_t backoff_ms;
    /* heartbeats and their answers for this node, coalesced into one PARTITION_RAFT_BATCH
     * request (kind, u16 count, entries); sent when the shard's turn ends (a 0 ms timer), or
     * when full */
    struct hraft_call *batch;
    uint16_t batch_count;
};

/* Bounds of one coalesced request: its bytes (the MAC comes on top) and its messages. */
#define RAFT_BATCH_BYTES_MAX ((size_t)60 << 10)
#define RAFT_BATCH_COUNT_MAX 4096

uint64_t hs_raft_group(const uint8_t topic_id[16], int32_t partition)
{
    uint64_t h = lm_fnv1a64(topic_id, 16);
    uint8_t p[4] = {(uint8_t)(partition >> 24), (uint8_t)(partition >> 16),
                    (uint8_t)(partition >> 8), (uint8_t)partition};
    h = lm_fnv1a64_update(h, p, sizeof(p));
    return h == 0 ? 1 : h; /* group 0 is the controller's */
}

/* The node's internal address: its endpoint on our controller listener's name. */
static bool internal_addr(struct hshard *hs, int32_t node, char *host, size_t cap, uint16_t *port)
{
    const struct broker_config *cfg = hs->node->cfg;
    if (hs->snap == NULL || cfg->controller_listener_names_count == 0)
        return false;
    const struct lm_meta_broker *b = lm_meta_state_broker(&hs->snap->state, node);
    if (b == NULL)
        return false;
    /* a node without a controller listener (broker-only) takes it on its first listener */
    return lm_meta_broker_endpoint(b, cfg->controller_listener_names[0], host, cap, port);
}

/* The shard's entry for node, created on first use; NULL when out of memory. */
static struct hpeer *peer_entry(struct hshard *hs, int32_t node)
{
    for (size_t i = 0; i < hs->n_peers; i++)
        if (hs->peers[i].node == node)
            return &hs->peers[i];
    struct hpeer *np = realloc(hs->peers, (hs->n_peers + 1) * sizeof(*np));
    if (np == NULL)
        return NULL;
    hs->peers = np;
    struct hpeer *pe = &hs->peers[hs->n_peers++];
    *pe = (struct hpeer){.node = node, .backoff_ms = 100};
    return pe;
}

static struct broker_peer *peer_of(struct hshard *hs, int32_t node)
{
    struct hpeer *pe = peer_entry(hs, node);
    if (pe == NULL)
        return NULL;
    if (pe->peer != NULL && broker_peer_error(pe->peer) == 0)
        return pe->peer;
    uint64_t now = broker_now_ms();
    if (pe->peer != NULL) {
        broker_peer_close(pe->peer);
        pe->peer = NULL;
        pe->retry_at_ms = now + pe->backoff_ms;
        pe->backoff_ms = pe->backoff_ms * 2 > 2000 ? 2000 : pe->backoff_ms * 2;
    }
    char host[256];
    uint16_t port;
    if (now < pe->retry_at_ms || hs->stopping ||
        !internal_addr(hs, node, host, sizeof(host), &port))
        return NULL;
    struct broker_peer_opts o = {.connect_timeout_ms = 2000,
                                 .request_timeout_ms = 10000,
                                 .inflight_max = 1024,
                                 .client_id = "laminar-replica",
                                 .tls = hs->node->cfg->peer_tls};
    if (broker_peer_open(hs->shard, host, port, &o, &pe->peer) != 0) {
        pe->peer = NULL;
        pe->retry_at_ms = now + pe->backoff_ms;
        return NULL;
    }
    pe->backoff_ms = 100;
    return pe->peer;
}

struct broker_peer *hs_inter_broker_peer(struct hshard *hs, int32_t node, struct broker_peer **peer,
                                         uint64_t *retry_at_ms, bool stopping,
                                         const char *client_id)
{
    if (*peer != NULL && broker_peer_error(*peer) == 0)
        return *peer;
    uint64_t now = broker_now_ms();
    if (*peer != NULL) {
        broker_peer_close(*peer);
        *peer = NULL;
        *retry_at_ms = now + 500;
    }
    const struct lm_meta_broker *b =
        hs->snap != NULL ? lm_meta_state_broker(&hs->snap->state, node) : NULL;
    const struct broker_config *cfg = hs->node->cfg;
    const char *lname =
        cfg->inter_broker_listener[0] != 0 ? cfg->inter_broker_listener : cfg->listeners[0].name;
    char host[256];
    uint16_t port;
    if (now < *retry_at_ms || stopping || b == NULL ||
        !lm_meta_broker_endpoint(b, lname, host, sizeof(host), &port))
        return NULL;
    struct broker_peer_opts o = {.connect_timeout_ms = 2000,
                                 .request_timeout_ms = 10000,
                                 .inflight_max = 1024,
                                 .client_id = client_id};
    if (broker_peer_open(hs->shard, host, port, &o, &*peer) != 0) {
        *peer = NULL;
        *retry_at_ms = now + 500;
        return NULL;
    }
    return *peer;
}

void hs_peers_close(struct hshard *hs)
{
    hs_detached_orphan(hs);
    if (hs->raft_batch_armed) {
        broker_timer_cancel(hs->shard, &hs->raft_batch_timer);
        hs->raft_batch_armed = false;
    }
    for (size_t i = 0; i < hs->n_peers; i++) {
        free(hs->peers[i].batch); /* raft sends again */
        if (hs->peers[i].peer != NULL)
            broker_peer_close(hs->peers[i].peer);
    }
    free(hs->peers);
    hs->peers = NULL;
    hs->n_peers = 0;
}

static void raft_call_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    (void)rc; /* a lost message is raft's to resend */
    free(call->arg);
}

/* An internal request about one partition: kind, u16 topic length, topic, i32 partition, then
 * payload_len bytes the caller writes at *payload, then the MAC. NULL when out of memory. */
static struct hraft_call *pcall_new(struct hshard *hs, uint8_t kind, const char *topic,
                                    int32_t partition, size_t payload_len, uint8_t **payload)
{
    size_t tl = strlen(topic);
    size_t mac = controller_mac_bytes(hs->node->ctl);
    size_t len = 1 + 2 + tl + 4 + payload_len;
    struct hraft_call *k = malloc(sizeof(*k) + len + mac);
    if (k == NULL)
        return NULL;
    memset(k, 0, sizeof(*k));
    uint8_t *b = k->buf;
    b[0] = kind;
    b[1] = (uint8_t)(tl >> 8);
    b[2] = (uint8_t)tl;
    memcpy(b + 3, topic, tl);
    uint8_t *q = b + 3 + tl;
    lm_put_be32(q, (uint32_t)partition);
    *payload = q + 4;
    k->len = len; /* the MAC comes after, at send */
    return k;
}

/* Signs and sends k to node; done(arg) runs with the outcome. Returns 0, or an error without
 * calling done (k is then the caller's to free). */
static int pcall_send(struct hshard *hs, int32_t node, struct hraft_call *k,
                      void (*done)(struct broker_shard *, struct broker_call *, int), void *arg)
{
    if (!controller_sign(hs->node->ctl, k->buf, k->len))
        return LM_E_STATE;
    k->len += controller_mac_bytes(hs->node->ctl);
    k->part = (struct broker_resp_part){.mem = k->buf, .fd = -1, .len = k->len};
    k->call = (struct broker_call){.api_key = CONTROLLER_API_KEY,
                                   .api_version = 0,
                                   .parts = &k->part,
                                   .nparts = 1,
                                   .done = done,
                                   .arg = arg};
    struct broker_peer *peer = peer_of(hs, node);
    if (peer == NULL)
        return LM_E_CLOSED;
    return broker_peer_send(peer, &k->call);
}

/* ---- node-pair liveness (quiescent partitions) ---- */

static void ping_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    (void)rc; /* the receiver takes the ping as news from this node; the answer tells nothing */
    free(call->arg);
}

void hs_node_heard(struct handlers_ctx *h, int32_t node, uint64_t now_ms)
{
    if (node < 0 || node >= HANDLERS_ALIVE_NODES)
        return;
    uint64_t *at = &h->node_alive_ms[node];
    /* one store per node and 50 ms at most: every shard stamps it for every message */
    if (__atomic_load_n(at, __ATOMIC_RELAXED) + 50 <= now_ms)
        __atomic_store_n(at, now_ms, __ATOMIC_RELAXED);
}

void hs_node_ping(struct hshard *hs, uint64_t now_ms)
{
    (void)now_ms;
    if (hs->snap == NULL || hs->stopping || hs->node->ctl == NULL)
        return;
    const struct lm_meta_state *st = &hs->snap->state;
    int32_t self = hs->node->cfg->node_id;
    for (size_t i = 0; i < st->broker_count; i++) {
        int32_t node = st->brokers[i].id;
        if (node == self || node < 0 || node >= HANDLERS_ALIVE_NODES)
            continue;
        /* a cut link holds at most its request timeout's worth (10 s: 50) of these */
        size_t mac = controller_mac_bytes(hs->node->ctl);
        struct hraft_call *k = malloc(sizeof(*k) + 5 + mac);
        if (k == NULL)
            return;
        memset(k, 0, sizeof(*k));
        k->buf[0] = CONTROLLER_KIND_NODE_PING;
        lm_put_be32(k->buf + 1, (uint32_t)self);
        k->len = 5;
        if (pcall_send(hs, node, k, ping_done, k) != 0)
            free(k);
    }
}

bool hs_node_silent(const struct hshard *hs, int32_t node, uint64_t last_contact_ms,
                    uint64_t now_ms)
{
    if (node < 0 || node >= HANDLERS_ALIVE_NODES)
        return false;
    uint64_t alive = __atomic_load_n(&hs->node->node_alive_ms[node], __ATOMIC_ACQUIRE);
    if (alive == 0)
        return false; /* never answered since this process started (its connection may still
                       * be backing off): the fence alone decides, as without the pings */
    if (last_contact_ms > alive)
        alive = last_contact_ms;
    return now_ms > alive + HANDLERS_NODE_SILENT_MS;
}

/* Sends pe's coalesced messages (count written into the header first). */
static void batch_flush(struct hshard *hs, struct hpeer *pe)
{
    struct hraft_call *k = pe->batch;
    if (k == NULL)
        return;
    pe->batch = NULL;
    lm_put_be16(k->buf + 1, pe->batch_count);
    pe->batch_count = 0;
    if (pcall_send(hs, pe->node, k, raft_call_done, k) != 0)
        free(k); /* lost: raft sends again */
}

static void batch_timer_fire(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct hshard *hs = t->arg;
    hs->raft_batch_armed = false;
    for (size_t i = 0; i < hs->n_peers; i++)
        batch_flush(hs, &hs->peers[i]);
}

/* Queues m (a message without entries) for its node's next coalesced request. Returns false
 * when it could not (out of memory, stopping): the caller sends it alone. */
static bool batch_queue(struct hshard *hs, const struct hpart *p, const struct raft_msg *m)
{
    if (hs->stopping)
        return false;
    struct hpeer *pe = peer_entry(hs, (int32_t)(m->to - 1u));
    if (pe == NULL)
        return false;
    size_t tl = strlen(p->topic);
    size_t n = raft_wire_size(m);
    size_t entry = 2 + tl + 4 + 4 + n;
    if (entry + 3 > RAFT_BATCH_BYTES_MAX)
        return false;
    if (pe->batch != NULL &&
        (pe->batch->len + entry > RAFT_BATCH_BYTES_MAX || pe->batch_count == RAFT_BATCH_COUNT_MAX))
        batch_flush(hs, pe);
    if (pe->batch == NULL) {
        size_t mac = controller_mac_bytes(hs->node->ctl);
        struct hraft_call *k = malloc(sizeof(*k) + RAFT_BATCH_BYTES_MAX + mac);
        if (k == NULL)
            return false;
        memset(k, 0, sizeof(*k));
        k->buf[0] = CONTROLLER_KIND_PARTITION_RAFT_BATCH;
        k->len = 3; /* kind, u16 count */
        pe->batch = k;
        pe->batch_count = 0;
    }
    uint8_t *q = pe->batch->buf + pe->batch->len;
    lm_put_be16(q, (uint16_t)tl);
    memcpy(q + 2, p->topic, tl);
    lm_put_be32(q + 2 + tl, (uint32_t)p->partition);
    lm_put_be32(q + 2 + tl + 4, (uint32_t)n);
    if (raft_wire_encode(m, q + 2 + tl + 8, n) < 0)
        return true; /* not encodable alone either: dropped, as a lost message */
    pe->batch->len += entry;
    pe->batch_count++;
    if (!hs->raft_batch_armed &&
        broker_timer_start(hs->shard, &hs->raft_batch_timer, 0, batch_timer_fire, hs) == 0)
        hs->raft_batch_armed = true;
    if (!hs->raft_batch_armed)
        batch_flush(hs, pe); /* no timer: at once */
    return true;
}

void hs_raft_send(void *ctx, struct partition *part, const struct raft_msg *m)
{
    (void)part;
    struct hpart *p = ctx;
    struct hshard *hs = p->hs;
    if (hs == NULL || m->to == RAFT_NONE)
        return;
    /* Messages without entries travel together, one request per node pair and shard turn
     * instead of one per message: idle partitions' heartbeats, and the elections and answers
     * of thousands of groups at once (a topic created, a node back). Alone, each was a request
     * answered only once its owner shard had run it, at most connection.inflight.max of them
     * per connection: 10,000 new partitions' pre-votes queued past the peer's bound and its
     * request timeout, were dropped, timed out again, and no group got a leader. Appends (and
     * the handover, which must follow them) keep their own requests and their order. */
    if (m->type != RAFT_MSG_APP && m->type != RAFT_MSG_TIMEOUT_NOW &&
        m->type != RAFT_MSG_LOG_START && batch_queue(hs, p, m))
        return;
    size_t n = raft_wire_size(m);
    uint8_t *q;
    struct hraft_call *k =
        pcall_new(hs, CONTROLLER_KIND_PARTITION_RAFT, p->topic, p->partition, n, &q);
    if (k == NULL)
        return;
    if (raft_wire_encode(m, q, n) < 0 ||
        pcall_send(hs, (int32_t)(m->to - 1u), k, raft_call_done, k) != 0) {
        free(k); /* lost: raft sends again */
        return;
    }
    if (m->type == RAFT_MSG_APP && m->n_entries > 0) {
        hs->repl_apps_copy++;
        for (uint32_t i = 0; i < m->n_entries; i++)
            hs->repl_bytes_copy += m->entries[i].len;
    }
}

/* An APP sent zero-copy: the internal request's head (kind, topic, partition, the message's
 * header and entry table) in memory, then the batches as slices of the leader's log files,
 * whose fds (dups) it owns until the call ends. */
struct hraft_app_call {
    struct broker_call call;
    uint32_t nparts;
    struct broker_resp_part *parts; /* [0]: buf; then the slices */
    uint8_t buf[];
};

static void app_call_free(struct hraft_app_call *k)
{
    for (uint32_t i = 1; i < k->nparts; i++)
        close(k->parts[i].fd);
    free(k->parts);
    free(k);
}

static void app_call_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    (void)rc; /* a lost message is raft's to resend */
    app_call_free(call->arg);
}

bool hs_raft_zero_copy(const struct hshard *hs)
{
    const struct handlers_ctx *node = hs->node;
    return node->cfg->replication_zero_copy && !node->cfg->peer_tls &&
           controller_mac_bytes(node->ctl) == 0;
}

int hs_raft_send_app(void *ctx, struct partition *part, const struct raft_msg *m,
                     struct partition_slice *slices, uint32_t n)
{
    (void)part;
    struct hpart *p = ctx;
    struct hshard *hs = p->hs;
    int rc = 0;
    struct hraft_app_call *k = NULL;
    size_t tl = strlen(p->topic), head = raft_wire_head_size(m);
    size_t len = 1 + 2 + tl + 4 + head;
    if (hs == NULL || hs->stopping || m->to == RAFT_NONE)
        rc = LM_E_STATE;
    if (rc == 0 && (k = malloc(sizeof(*k) + len)) == NULL)
        rc = LM_E_NOMEM;
    if (rc == 0) {
        memset(k, 0, sizeof(*k));
        k->parts = calloc((size_t)n + 1, sizeof(*k->parts));
        if (k->parts == NULL) {
            free(k);
            k = NULL;
            rc = LM_E_NOMEM;
        }
    }
    if (rc != 0) {
        for (uint32_t i = 0; i < n; i++)
            close(slices[i].fd);
        return rc;
    }
    /* From here k owns the fds. */
    k->parts[0] = (struct broker_resp_part){.mem = k->buf, .fd = -1, .len = len};
    for (uint32_t i = 0; i < n; i++)
        k->parts[i + 1] = (struct broker_resp_part){
            .mem = NULL, .fd = slices[i].fd, .offset = slices[i].offset, .len = slices[i].len};
    k->nparts = n + 1;
    uint8_t *b = k->buf;
    b[0] = CONTROLLER_KIND_PARTITION_RAFT;
    lm_put_be16(b + 1, (uint16_t)tl);
    memcpy(b + 3, p->topic, tl);
    lm_put_be32(b + 3 + tl, (uint32_t)p->partition);
    rc = raft_wire_encode_head(m, b + 3 + tl + 4, head);
    struct broker_peer *peer = rc < 0 ? NULL : peer_of(hs, (int32_t)(m->to - 1u));
    if (rc >= 0 && peer == NULL)
        rc = LM_E_CLOSED;
    if (rc >= 0) {
        k->call = (struct broker_call){.api_key = CONTROLLER_API_KEY,
                                       .api_version = 0,
                                       .parts = k->parts,
                                       .nparts = k->nparts,
                                       .done = app_call_done,
                                       .arg = k};
        rc = broker_peer_send(peer, &k->call);
    }
    if (rc < 0) {
        app_call_free(k);
        return rc;
    }
    hs->repl_apps_zc++;
    for (uint32_t i = 0; i < n; i++)
        hs->repl_bytes_zc += slices[i].len;
    return 0;
}

/* ---- DeleteRecords' log start, from a leader to its followers ---- */

/* A log start on its way to one follower: who, to mark it acknowledged on the answer. */
struct start_call {
    struct hraft_call *k;
    struct hshard *hs;
    int32_t partition;
    int16_t replica; /* index in hpart.replicas */
    int64_t offset;
    char topic[];
};

static void start_call_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct start_call *sc = call->arg;
    struct hpart *p = hs_part(sc->hs, sc->topic, strlen(sc->topic), sc->partition);
    if (p != NULL && rc == 0 && call->resp_len == 2 && call->resp[0] == 0 && call->resp[1] == 0 &&
        p->start_sync == sc->offset)
        p->start_acked |= (uint16_t)(1u << sc->replica);
    free(sc->k);
    free(sc);
}

bool hs_has_log_start(const struct hshard *hs, const struct hpart *p, int32_t node)
{
    if (p->start_sync <= 0 || node == hs->node->cfg->node_id)
        return true;
    for (int16_t j = 0; j < p->rf; j++)
        if (p->replicas[j] == node)
            return (p->start_acked & (1u << j)) != 0;
    return false;
}

void hs_log_start_sync(struct hshard *hs, struct hpart *p, uint64_t now_ms)
{
    uint16_t all = (uint16_t)((1u << p->rf) - 1u);
    if (p->start_sync <= 0 || (p->start_acked & all) == all || now_ms < p->start_sync_at_ms)
        return;
    p->start_sync_at_ms = now_ms + 500; /* again for those that have not answered */
    for (int16_t j = 0; j < p->rf; j++) {
        if (p->start_acked & (1u << j))
            continue;
        if (p->replicas[j] == hs->node->cfg->node_id) {
            p->start_acked |= (uint16_t)(1u << j);
            continue;
        }
        size_t tl = strlen(p->topic);
        struct start_call *sc = malloc(sizeof(*sc) + tl + 1);
        uint8_t *q;
        struct hraft_call *k = sc != NULL ? pcall_new(hs, CONTROLLER_KIND_PARTITION_LOG_START,
                                                      p->topic, p->partition, 8, &q)
                                          : NULL;
        if (k == NULL) {
            free(sc);
            return;
        }
        lm_put_be64(q, (uint64_t)p->start_sync);
        *sc = (struct start_call){
            .k = k, .hs = hs, .partition = p->partition, .replica = j, .offset = p->start_sync};
        memcpy(sc->topic, p->topic, tl + 1);
        if (pcall_send(hs, p->replicas[j], k, start_call_done, sc) != 0) {
            free(k);
            free(sc);
        }
    }
}

/* PARTITION_LOG_START on a follower's owner shard: its log start follows the leader's, up to
 * what it has committed (the leader sends again until it is all there). */
static int16_t log_start_run(struct hpart *p, int64_t offset)
{
    if (p == NULL || !p->replicated || p->part == NULL || p->failed)
        return KAFKA_NOT_LEADER_OR_FOLLOWER;
    int64_t target = offset;
    if (target > partition_high_watermark(p->part))
        target = partition_high_watermark(p->part);
    if (target > partition_log_start_offset(p->part)) {
        int rc = partition_advance_start(p->part, target);
        if (rc != 0) {
            BLOG_WARN_LIMITED("partition %s-%d: log start %lld from the leader: %s", p->topic,
                              p->partition, (long long)target, lm_strerror(rc));
            return KAFKA_KAFKA_STORAGE_ERROR;
        }
    }
    return partition_log_start_offset(p->part) >= offset ? KAFKA_NONE : KAFKA_OFFSET_NOT_AVAILABLE;
}

int hs_elect_send(struct hshard *hs, int32_t leader, const char *topic, int32_t partition,
                  int32_t target, void (*done)(struct broker_shard *, struct broker_call *, int),
                  void *arg, void **call_out)
{
    uint8_t *q;
    struct hraft_call *k = pcall_new(hs, CONTROLLER_KIND_PARTITION_ELECT, topic, partition, 4, &q);
    if (k == NULL)
        return LM_E_NOMEM;
    lm_put_be32(q, (uint32_t)target);
    int rc = pcall_send(hs, leader, k, done, arg);
    if (rc != 0) {
        free(k);
        return rc;
    }
    *call_out = k;
    return 0;
}

/* A received message on its way to the partition's owner shard. */
struct hraft_in {
    struct broker_xcall x;
    struct broker_req *req;
    uint8_t kind;
    const uint8_t *body; /* after the kind byte */
    size_t len;
    int16_t err; /* ELECT: the answer */
};

/* PARTITION_ELECT on the partition's owner shard: hand p's leadership to node target. */
static int16_t elect_run(struct hshard *hs, struct hpart *p, int32_t target)
{
    if (p == NULL || !p->replicated || p->part == NULL || p->failed)
        return KAFKA_NOT_LEADER_OR_FOLLOWER;
    if (!partition_is_leader(p->part))
        return KAFKA_NOT_LEADER_OR_FOLLOWER;
    if (target == hs->node->cfg->node_id)
        return KAFKA_ELECTION_NOT_NEEDED;
    const struct raft_progress *pr = raft_progress(partition_raft(p->part), (uint32_t)target + 1u);
    int16_t j = 0;
    while (j < p->rf && p->replicas[j] != target)
        j++;
    if (target < 0 || pr == NULL || !hs_replica_in_sync(hs, p, j, broker_now_ms()) ||
        !hs_has_log_start(hs, p, target))
        return KAFKA_PREFERRED_LEADER_NOT_AVAILABLE;
    if (partition_transferring(p->part))
        return KAFKA_NONE; /* one is under way already */
    int rc = partition_transfer_leader(p->part, (uint32_t)target + 1u);
    if (rc != 0) {
        BLOG_WARN_LIMITED("partition %s-%d: leadership transfer to node %d: %s", p->topic,
                          p->partition, target, lm_strerror(rc));
        return rc == LM_E_STATE ? KAFKA_NOT_LEADER_OR_FOLLOWER
                                : KAFKA_PREFERRED_LEADER_NOT_AVAILABLE;
    }
    BLOG_INFO("partition %s-%d: handing leadership to node %d (preferred leader election)",
              p->topic, p->partition, target);
    return KAFKA_NONE;
}

/* One raft message for p (NULL: not open here) on its owner shard. */
static void raft_deliver(struct hshard *hs, struct hpart *p, int32_t partition, const uint8_t *msg,
                         size_t len)
{
    struct raft_msg m;
    size_t used = 0;
    if (p == NULL || p->part == NULL || !p->replicated) {
        BLOG_INFO_LIMITED("partition %d of a topic: a raft message for a replica not open on "
                          "this node (%s); dropped",
                          partition, p == NULL ? "unknown here" : "closed");
        return;
    }
    if (raft_wire_decode(msg, len, &m, &used) == 0) {
        if (m.type < RAFT_MSG_TYPE_MAX)
            hs->raft_in[m.type]++;
        bool handover = m.type == RAFT_MSG_TIMEOUT_NOW;
        hs_node_heard(hs->node, (int32_t)m.from - 1, broker_now_ms());
        if (m.group != hs_raft_group(p->topic_id, partition)) {
            /* another incarnation of the topic: dropped */
            BLOG_INFO_LIMITED("partition %s-%d: a raft message from node %u of another "
                              "incarnation of the topic; dropped",
                              p->topic, p->partition, m.from - 1u);
        } else if (handover && __atomic_load_n(&hs->node->handoff, __ATOMIC_ACQUIRE)) {
            /* this node is handing its leaderships away (controlled shutdown): it takes none
             * (a rebalance or ElectLeaders elsewhere may still name it preferred) */
            BLOG_INFO("partition %s-%d: node %u hands its leadership over, declined: this "
                      "node is shutting down",
                      p->topic, p->partition, m.from - 1u);
        } else {
            if (handover)
                BLOG_INFO("partition %s-%d: node %u hands its leadership over: campaigning "
                          "(as %s)",
                          p->topic, p->partition, m.from - 1u,
                          raft_role_name(raft_role(partition_raft(p->part))));
            /* A replica this node's image no longer lists waits out a grace before deleting
             * its copy (part_may_leave), for a group that removed it without telling it. A
             * leader still replicating to it counts it as a member (it may have been added
             * back while this node's image lags): the grace starts again, so a voter's copy
             * is never deleted under its group. */
            if (m.type == RAFT_MSG_APP || m.type == RAFT_MSG_HEARTBEAT) {
                p->leader_contact_ms = broker_now_ms();
                if (p->leave_at_ms != 0)
                    p->leave_at_ms = p->leader_contact_ms + HANDLERS_LEAVE_GRACE_MS;
            }
            partition_set_clock(p->part, (int64_t)broker_now_ms());
            int src = partition_step(p->part, &m); /* errors: as a lost message */
            if (src == LM_E_CORRUPT)
                BLOG_WARN_LIMITED("partition %s-%d: an append from node %u whose batches are "
                                  "not what its entries say (its log changed under it); dropped",
                                  p->topic, p->partition, m.from - 1u);
            if (handover && src != 0)
                BLOG_INFO("partition %s-%d: campaign after a handover: %s", p->topic, p->partition,
                          lm_strerror(src));
        }
        raft_msg_deinit(&m);
        hs_leader_check(hs, p, broker_now_ms());
        hs_part_kick(hs, p);
    }
}

static void raft_in_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct hraft_in *in = x->arg;
    struct hshard *hs = hs_of(target);
    const uint8_t *b = in->body;
    size_t tl = ((size_t)b[0] << 8) | b[1];
    const char *topic = (const char *)b + 2;
    const uint8_t *q = b + 2 + tl;
    int32_t partition = (int32_t)lm_get_be32(q);
    hs_refresh(hs);
    struct hpart *p = hs_part(hs, topic, tl, partition);
    if (in->kind == CONTROLLER_KIND_PARTITION_ELECT) {
        in->err = elect_run(hs, p, (int32_t)lm_get_be32(q + 4));
        broker_xcall_return(target, x);
        return;
    }
    if (in->kind == CONTROLLER_KIND_PARTITION_LOG_START) {
        in->err = log_start_run(p, (int64_t)lm_get_be64(q + 4));
        if (p != NULL)
            hs_part_kick(hs, p);
        broker_xcall_return(target, x);
        return;
    }
    raft_deliver(hs, p, partition, q + 4, in->len - (2 + tl + 4));
    broker_xcall_return(target, x);
}

static void raft_in_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    struct hraft_in *in = x->arg;
    if (in->kind != CONTROLLER_KIND_PARTITION_RAFT) {
        /* the body is sent from memory the request owns (respond does not copy) */
        uint8_t *e = kafka_arena_alloc(&in->req->arena, 2, 1);
        if (e == NULL) {
            broker_req_close_after(in->req);
            broker_req_respond_none(in->req);
            return;
        }
        e[0] = (uint8_t)((uint16_t)in->err >> 8);
        e[1] = (uint8_t)in->err;
        broker_req_respond(in->req, e, 2);
        return;
    }
    static const uint8_t ack[1] = {0};
    broker_req_respond(in->req, ack, sizeof(ack));
}

/* The messages of a coalesced request for one owner shard, copied out of the request. */
struct hraft_batch_in {
    struct broker_xcall x;
    size_t len;
    uint32_t count;
    uint8_t entries[];
};

/* Entry i of a coalesced request at q (checked by batch_check): its bytes. */
static size_t batch_entry_len(const uint8_t *q)
{
    size_t tl = lm_get_be16(q);
    return 2 + tl + 4 + 4 + lm_get_be32(q + 2 + tl + 4);
}

/* Whether the entry at q is for a partition shard owner owns. */
static bool batch_entry_owned(struct hshard *hs, const uint8_t *q, uint32_t owner)
{
    size_t tl = lm_get_be16(q);
    int32_t partition = (int32_t)lm_get_be32(q + 2 + tl);
    return partition >= 0 && hs_owner(hs, (const char *)q + 2, tl, partition) == owner;
}

static void batch_in_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct hraft_batch_in *in = x->arg;
    struct hshard *hs = hs_of(target);
    hs_refresh(hs);
    const uint8_t *q = in->entries;
    for (uint32_t i = 0; i < in->count; i++) {
        size_t tl = lm_get_be16(q);
        int32_t partition = (int32_t)lm_get_be32(q + 2 + tl);
        uint32_t n = lm_get_be32(q + 2 + tl + 4);
        struct hpart *p = hs_part(hs, (const char *)q + 2, tl, partition);
        raft_deliver(hs, p, partition, q + 2 + tl + 8, n);
        q += 2 + tl + 8 + n;
    }
    broker_xcall_return(target, x);
}

static void batch_in_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    free(x->arg);
}

/* Whether the entries of a coalesced request (after kind and count) are well formed. */
static bool batch_check(const uint8_t *q, size_t len, uint32_t count)
{
    size_t pos = 0;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 2)
            return false;
        size_t tl = lm_get_be16(q + pos);
        if (tl == 0 || tl > LM_TOPIC_NAME_MAX || len - pos < 2 + tl + 8)
            return false;
        uint32_t n = lm_get_be32(q + pos + 2 + tl + 4);
        if (n == 0 || n > len - pos - (2 + tl + 8))
            return false;
        pos += 2 + tl + 8 + n;
    }
    return pos == len;
}

/* PARTITION_RAFT_BATCH: answered at once (raft needs no answer), its messages copied per owner
 * shard and delivered there in order. */
static void batch_recv(struct hshard *hs, struct broker_req *req, const uint8_t *body, size_t len)
{
    uint32_t count = len >= 2 ? lm_get_be16(body) : 0;
    if (len < 2 || count == 0 || count > RAFT_BATCH_COUNT_MAX ||
        !batch_check(body + 2, len - 2, count)) {
        BLOG_WARN_LIMITED("a malformed raft batch from a peer; closing the connection");
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    const uint8_t *entries = body + 2;
    size_t elen = len - 2;
    for (uint32_t owner = 0; owner < hs->count; owner++) {
        size_t bytes = 0;
        uint32_t n = 0;
        for (size_t pos = 0; pos < elen;) {
            const uint8_t *q = entries + pos;
            size_t el = batch_entry_len(q);
            if (batch_entry_owned(hs, q, owner)) {
                bytes += el;
                n++;
            }
            pos += el;
        }
        if (n == 0)
            continue;
        struct hraft_batch_in *in = malloc(sizeof(*in) + bytes);
        if (in == NULL)
            continue; /* lost: raft sends again */
        *in = (struct hraft_batch_in){.len = bytes, .count = n};
        size_t w = 0;
        for (size_t pos = 0; pos < elen;) {
            const uint8_t *q = entries + pos;
            size_t el = batch_entry_len(q);
            if (batch_entry_owned(hs, q, owner)) {
                memcpy(in->entries + w, q, el);
                w += el;
            }
            pos += el;
        }
        in->x.run = batch_in_run;
        in->x.done = batch_in_done;
        in->x.arg = in;
        broker_shard_call(hs->shard, owner, &in->x);
    }
    static const uint8_t ack[1] = {0};
    broker_req_respond(req, ack, sizeof(ack));
}

void hs_partition_recv(void *ctx, struct broker_req *req, const uint8_t *body, size_t len)
{
    (void)ctx;
    struct hshard *hs = hs_of(req->shard);
    if (len == 5 && body[0] == CONTROLLER_KIND_NODE_PING) {
        hs_node_heard(hs->node, (int32_t)lm_get_be32(body + 1), broker_now_ms());
        static const uint8_t alive[1] = {0};
        broker_req_respond(req, alive, sizeof(alive));
        return;
    }
    if (len >= 1 && body[0] == CONTROLLER_KIND_PARTITION_RAFT_BATCH) {
        batch_recv(hs, req, body + 1, len - 1);
        return;
    }
    uint8_t kind = len >= 1 ? body[0] : 0;
    body++, len = len >= 1 ? len - 1 : 0;
    size_t tl = len >= 2 ? ((size_t)body[0] << 8) | body[1] : 0;
    /* the payload after topic and partition: a raft message, or exactly an i32 or an i64 */
    size_t payload = kind == CONTROLLER_KIND_PARTITION_ELECT       ? 4
                     : kind == CONTROLLER_KIND_PARTITION_LOG_START ? 8
                                                                   : 0;
    struct hraft_in *in = NULL;
    if (len >= 2 && tl > 0 && tl <= LM_TOPIC_NAME_MAX && len >= 2 + tl + 4 + 1 &&
        (payload == 0 || len == 2 + tl + 4 + payload))
        in = kafka_arena_alloc(&req->arena, sizeof(*in), 16);
    if (in == NULL) { /* malformed, or out of memory */
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    int32_t partition = (int32_t)lm_get_be32(body + 2 + tl);
    *in = (struct hraft_in){.req = req, .kind = kind, .body = body, .len = len};
    in->x.run = raft_in_run;
    in->x.done = raft_in_done;
    in->x.arg = in;
    uint32_t owner = partition >= 0 ? hs_owner(hs, (const char *)body + 2, tl, partition) : hs->id;
    broker_shard_call(hs->shard, owner, &in->x);
}

/* ---- the leader's view of its followers (ISR) ---- */

static void isr_reset(struct hpart *p, uint64_t now_ms);

void hs_isr_reset(struct hpart *p, uint64_t now_ms)
{
    if (p->isr != NULL && p->part != NULL)
        isr_reset(p, now_ms);
}

static void isr_reset(struct hpart *p, uint64_t now_ms)
{
    /* a new leader gives every follower a full lag period, as Kafka's does */
    struct hisr *s = p->isr;
    s->prev_last = partition_log_end_offset(p->part) - 1;
    s->prev_ms = now_ms;
    for (int16_t j = 0; j < p->rf; j++)
        s->caught_ms[j] = now_ms;
    s->out = 0;
}

/* Replicas on nodes not registered or fenced (bit j: replicas[j]), from the shard's image. */
static uint16_t isr_fenced(const struct hshard *hs, const struct hpart *p)
{
    uint16_t out = 0;
    for (int16_t j = 0; j < p->rf; j++) {
        const struct lm_meta_broker *b = lm_meta_state_broker(&hs->snap->state, p->replicas[j]);
        if (p->replicas[j] != hs->node->cfg->node_id && (b == NULL || b->fenced))
            out |= (uint16_t)(1u << j);
    }
    return out;
}

/* Looks again (the lag at most every half tick, the fenced nodes each time): a follower whose
 * matched log reaches the leader's end now is caught up now; one that reaches where the end
 * was at the previous look was caught up then. */
static uint16_t isr_update(struct hshard *hs, struct hpart *p, uint64_t now_ms)
{
    struct hisr *s = p->isr;
    const struct handlers_ctx *h = hs->node;
    if (now_ms >= s->prev_ms + HANDLERS_TICK_MS / 2) {
        int64_t last = partition_log_end_offset(p->part) - 1;
        struct raft *r = partition_raft(p->part);
        for (int16_t j = 0; j < p->rf; j++) {
            const struct raft_progress *pr = p->replicas[j] == h->cfg->node_id
                                                 ? NULL
                                                 : raft_progress(r, (uint32_t)p->replicas[j] + 1u);
            /* only a follower heard from in this election period counts: an idle
             * partition's end does not move, and a follower that went silent must not stay
             * "caught up" by having matched it once */
            if (pr == NULL || !pr->recent_active)
                continue;
            if (pr->match >= last)
                s->caught_ms[j] = now_ms;
            else if (pr->match >= s->prev_last && s->prev_ms > s->caught_ms[j])
                s->caught_ms[j] = s->prev_ms;
        }
        s->prev_last = last;
        s->prev_ms = now_ms;
    }
    uint16_t out = isr_fenced(hs, p);
    for (int16_t j = 0; j < p->rf; j++)
        if (p->replicas[j] != h->cfg->node_id &&
            now_ms - s->caught_ms[j] > (uint64_t)h->cfg->replica_lag_time_max_ms)
            out |= (uint16_t)(1u << j);
    s->out = out;
    return out;
}

void hs_isr_quiet(struct hpart *p, uint64_t now_ms)
{
    struct hisr *s = p->isr;
    LM_ASSERT(s != NULL && s->out == 0);
    /* quiescent: every follower matched the leader's end and answered its last heartbeat */
    for (int16_t j = 0; j < p->rf; j++)
        s->caught_ms[j] = now_ms;
    s->prev_last = partition_log_end_offset(p->part) - 1;
    s->prev_ms = now_ms;
}

bool hs_replica_in_sync(const struct hshard *hs, const struct hpart *p, int16_t j, uint64_t now_ms)
{
    if (p->isr == NULL || j < 0 || j >= p->rf)
        return false;
    uint64_t at = p->isr->caught_ms[j];
    return at != 0 && now_ms <= at + (uint64_t)hs->node->cfg->replica_lag_time_max_ms;
}

int32_t hs_isr_count(const struct hshard *hs, const struct hpart *p)
{
    uint16_t all = (uint16_t)((1u << (p->rf > 0 ? p->rf : 1)) - 1u);
    if (!p->replicated || p->part == NULL || !partition_is_leader(p->part))
        return __builtin_popcount(all);
    /* the lag as of the last look, the fenced nodes as the image shows them now */
    uint16_t out = (p->isr != NULL ? p->isr->out : 0) | isr_fenced(hs, p);
    return __builtin_popcount(all & (uint16_t)~out);
}

/* The leader's out-of-sync bits (positions in p->replicas) as positions in the image's
 * replicas of the partition, which a reassignment in progress orders target first. */
static uint16_t isr_to_image(const struct hpart *p, const struct lm_meta_topic *t, uint16_t out)
{
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p->partition, &n);
    uint16_t img = 0;
    for (int16_t j = 0; j < p->rf && r != NULL; j++) {
        if (!(out & (1u << j)))
            continue;
        for (int16_t k = 0; k < n; k++)
            if (r[k] == p->replicas[j])
                img |= (uint16_t)(1u << k);
    }
    return img;
}

/* After an input to a replicated partition: a new term updates the epoch Fetch and
 * ListOffsets fence on; becoming leader rebuilds producer state from the log and announces
 * the leadership to the controller, with the ISR as this leader sees it (again every second
 * until the image shows both). */
void hs_leader_check(struct hshard *hs, struct hpart *p, uint64_t now_ms)
{
    if (!p->replicated || p->part == NULL || hs->snap == NULL)
        return;
    int32_t epoch = partition_leader_epoch(p->part);
    bool leads = partition_is_leader(p->part);
    if (epoch != p->leader_epoch || leads != p->lead_published) {
        p->leader_epoch = epoch;
        p->lead_published = leads;
        hs_part_set_epoch(p, epoch, leads);
    }
    if (!partition_is_leader(p->part)) {
        p->announce_confirmed = false;
        if (p->isr != NULL) { /* it led until now: what only a leader keeps goes */
            free(p->isr);
            p->isr = NULL;
            p->announced_epoch = -1;
            producer_partition_reset(hs->producers, p->topic_id, p->partition);
        }
        return;
    }
    if (p->isr == NULL) {
        p->isr = calloc(1, sizeof(*p->isr));
        if (p->isr == NULL)
            return; /* announced at a later check */
        isr_reset(p, now_ms);
    }
    if (p->announced_epoch != epoch) {
        p->announced_epoch = epoch;
        p->announce_at_ms = 0;
        p->submitted_out = -1;
        p->announce_confirmed = false;
        isr_reset(p, now_ms);
        /* its own log start (DeleteRecords it applied as a follower) goes to the others */
        p->start_sync = partition_log_start_offset(p->part);
        p->start_acked = 0;
        p->start_sync_at_ms = 0;
        group_partition_reopened(hs, p); /* producer state (and a coordinator's groups) */
        BLOG_INFO("partition %s-%d: leader at epoch %d", p->topic, p->partition, epoch);
    }
    uint16_t out = isr_update(hs, p, now_ms);
    hs_log_start_sync(hs, p, now_ms);
    hs_reassign_step(hs, p, now_ms);
    if (p->announce_confirmed && p->announced_out == out)
        return; /* the image shows it: nothing to look up */
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, p->topic);
    int32_t known_epoch = -1;
    int32_t known = t != NULL ? lm_meta_topic_leader(t, p->partition, &known_epoch) : -1;
    uint16_t img_out = t != NULL ? isr_to_image(p, t, out) : out;
    if (t != NULL && known == hs->node->cfg->node_id && known_epoch == epoch &&
        lm_meta_topic_isr_out(t, p->partition) == img_out) {
        p->announce_confirmed = true;
        p->announced_out = out;
        return;
    }
    p->announce_confirmed = false;
    /* a new value goes at once; the same one again every second until the image shows it;
     * with the shard's submissions at their bound it waits for a later look (thousands of
     * partitions electing at once would otherwise flood the controller with announcements
     * and their repeats faster than it commits them) */
    if (t == NULL || (now_ms < p->announce_at_ms && p->submitted_out == (int32_t)out) ||
        !hs_submit_room(hs))
        return;
    p->announce_at_ms = now_ms + 1000;
    p->submitted_out = (int32_t)out;
    struct lm_meta_record r = {.type = LM_META_PARTITION_LEADER,
                               .topic = p->topic,
                               .partition_count = p->partition,
                               .broker_id = hs->node->cfg->node_id,
                               .leader_epoch = epoch,
                               .isr_out = img_out};
    memcpy(r.topic_id, p->topic_id, 16); /* refused once the name is another topic's */
    int rc = hs_submit_detached(hs, &r);
    if (rc != 0)
        BLOG_WARN_LIMITED("partition %s-%d: announcing leadership: %s", p->topic, p->partition,
                          lm_strerror(rc));
}

/* ---- controlled shutdown: leaderships move before the node stops ---- */

struct handoff_pick {
    struct hshard *hs;
    struct hpart *p;
    uint32_t avoid; /* the target of the attempt that did not complete, or RAFT_NONE */
};

static bool node_usable(void *ctx, uint32_t raft_id)
{
    const struct handoff_pick *k = ctx;
    const struct lm_meta_broker *b =
        lm_meta_state_broker(&k->hs->snap->state, (int32_t)raft_id - 1);
    return b != NULL && !b->fenced && raft_id != k->avoid &&
           hs_has_log_start(k->hs, k->p, (int32_t)raft_id - 1);
}

void hs_handoff_step(struct hshard *hs, uint64_t now_ms)
{
    uint32_t held = 0;
    for (size_t b = 0; b < hs->bucket_count && hs->snap != NULL; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            for (int32_t i = 0; i < t->part_cap; i++) {
                struct hpart *p = t->parts[i];
                if (p == NULL || !p->replicated || p->part == NULL || p->failed ||
                    !partition_is_leader(p->part))
                    continue;
                held++;
                /* a transfer stands until it completes or raft abandons it (an election
                 * timeout); then another attempt, to another replica when there is one */
                if (now_ms < p->handoff_at_ms || partition_transferring(p->part))
                    continue;
                p->handoff_at_ms = now_ms + HS_HANDOFF_RETRY_MS;
                struct handoff_pick k = {.hs = hs, .p = p, .avoid = p->handoff_to};
                uint32_t to = partition_handoff_target(p->part, node_usable, &k);
                if (to == RAFT_NONE) {
                    k.avoid = RAFT_NONE;
                    to = partition_handoff_target(p->part, node_usable, &k);
                }
                if (to == RAFT_NONE)
                    continue;
                if (p->handoff_to != RAFT_NONE)
                    BLOG_INFO_LIMITED("partition %s-%d: leadership transfer to node %d did not "
                                      "complete; now to node %d",
                                      p->topic, p->partition, (int)p->handoff_to - 1, (int)to - 1);
                p->handoff_to = to;
                int rc = partition_transfer_leader(p->part, to);
                if (rc != 0)
                    BLOG_WARN("partition %s-%d: leadership transfer to node %d: %s", p->topic,
                              p->partition, (int)to - 1, lm_strerror(rc));
            }
    if (hs->node->ctl != NULL && hs->id == CONTROLLER_SHARD && controller_handoff(hs->node->ctl))
        held++;
    /* the change first, then (once) the shard's count: handoff_done never sees this shard
     * counted without its leaderships */
    int32_t delta = (int32_t)held - (int32_t)hs->handoff_held;
    hs->handoff_held = held;
    if (delta != 0)
        __atomic_add_fetch(&hs->node->handoff_led, delta, __ATOMIC_ACQ_REL);
    if (!hs->handoff_reported) {
        hs->handoff_reported = true;
        __atomic_add_fetch(&hs->node->handoff_shards, 1, __ATOMIC_ACQ_REL);
    }
}

void hs_handoff_begin(void *ctx)
{
    struct handlers_ctx *node = ctx;
    if (node->ctl != NULL)
        __atomic_store_n(&node->handoff, true, __ATOMIC_RELEASE);
}

bool hs_handoff_done(void *ctx)
{
    struct handlers_ctx *node = ctx;
    if (node->ctl == NULL)
        return true;
    return __atomic_load_n(&node->handoff_shards, __ATOMIC_ACQUIRE) >=
               __atomic_load_n(&node->shard_count, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&node->handoff_led, __ATOMIC_ACQUIRE) == 0;
}
