/* __share_group_state: placement, creation, appends and reads (see share_state.h). */
#include "broker/handlers/share_state.h"

#include <stdlib.h>
#include <string.h>

#include "broker/group/group_records.h"
#include "broker/handlers/group_internal.h"
#include "broker/log.h"
#include "broker/partition/partition.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_hash.h"
#include "protocol/kafka_errors.h"
#include "protocol/kafka_messages.h"
#include "protocol/records.h"

enum {
    SHARE_STATE_PARTITIONS_MAX = 1000, /* as LM_GROUP_PARTITIONS_MAX bounds __consumer_offsets */
    SHARE_LOAD_BATCH_BYTES_MAX = 8 << 20,
    SHARE_PEERS_MAX = 64,             /* nodes a shard keeps a connection to */
    SHARE_RPC_ARENA_BYTES = 16 << 20, /* decoding one Read/Write response */
};

int share_state_config(struct handlers_ctx *node)
{
    int64_t n = 50, rf = 3, every = 500;
    int rc = group_config_i64(node->cfg, "share.coordinator.state.topic.num.partitions", 1,
                              SHARE_STATE_PARTITIONS_MAX, &n);
    if (rc == 0)
        rc = group_config_i64(node->cfg, "share.coordinator.state.topic.replication.factor", 1,
                              INT16_MAX, &rf);
    if (rc == 0)
        rc = group_config_i64(node->cfg, "share.coordinator.snapshot.update.records.per.snapshot",
                              0, 500, &every);
    if (rc != 0)
        return rc;
    node->share_state_partitions = (int32_t)n;
    node->share_state_rf = (int32_t)rf;
    node->share_snapshot_every = (int32_t)every;
    return 0;
}

static const struct lm_config_entry state_topic_configs[] = {
    {(char *)"cleanup.policy", (char *)"compact"},
    {(char *)"retention.ms", (char *)"-1"},
    {(char *)"retention.bytes", (char *)"-1"},
};

struct sspeers;
static struct sspeers *peers_of(struct hshard *hs);
static bool create_due(struct sspeers *ps, uint64_t now_ms);

/* Submits the topic's creation to the controller (a cluster), at most once a second per
 * shard while it is not there (every ShareFetch asks). */
static void create_in_cluster(struct hshard *hs)
{
    struct sspeers *ps = peers_of(hs);
    if (ps == NULL || !create_due(ps, broker_now_ms()))
        return;
    const struct lm_meta_state *st = &hs->snap->state;
    long live = 0;
    for (size_t i = 0; i < st->broker_count; i++)
        live += !st->brokers[i].fenced;
    int32_t want = hs->node->share_state_rf;
    int16_t rf = (int16_t)(want > live ? (live > 0 ? live : 1) : want);
    if (rf > LM_META_REPLICATION_MAX)
        rf = LM_META_REPLICATION_MAX;
    struct lm_meta_record r = {0};
    r.type = LM_META_TOPIC_CREATE;
    r.topic = SHARE_STATE_TOPIC;
    r.partition_count = hs->node->share_state_partitions;
    r.configs = state_topic_configs;
    r.config_count = sizeof(state_topic_configs) / sizeof(state_topic_configs[0]);
    int32_t *ids = NULL;
    int rc = lm_meta_new_topic_id(r.topic_id);
    if (rc == 0)
        rc = hs_assign(st, 0, r.partition_count, rf, &ids);
    if (rc == 0) {
        r.replicas = ids;
        r.replication_factor = rf;
        rc = hs_submit_detached(hs, &r);
    }
    free(ids);
    if (rc != 0 && rc != LM_E_AGAIN)
        BLOG_WARN_LIMITED("cannot create %s: %s", SHARE_STATE_TOPIC, lm_strerror(rc));
}

int32_t share_state_partitions(struct hshard *hs, bool create)
{
    hs_refresh(hs);
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, SHARE_STATE_TOPIC);
    if (t != NULL)
        return t->partition_count;
    if (!create)
        return 0;
    if (hs_cluster(hs->node)) {
        create_in_cluster(hs);
        return 0;
    }
    struct lm_meta_record r = {0};
    r.type = LM_META_TOPIC_CREATE;
    r.topic = SHARE_STATE_TOPIC;
    r.partition_count = hs->node->share_state_partitions;
    r.configs = state_topic_configs;
    r.config_count = sizeof(state_topic_configs) / sizeof(state_topic_configs[0]);
    int rc = lm_meta_new_topic_id(r.topic_id);
    if (rc == 0)
        rc = lm_meta_store_commit(hs->node->meta, &r);
    if (rc != 0 && rc != LM_E_EXISTS) { /* LM_E_EXISTS: another shard made it meanwhile */
        BLOG_WARN_LIMITED("cannot create %s: %s", SHARE_STATE_TOPIC, lm_strerror(rc));
        return 0;
    }
    if (rc == 0)
        BLOG_INFO("created %s with %d partitions", SHARE_STATE_TOPIC, r.partition_count);
    hs_refresh(hs);
    t = lm_meta_state_find(&hs->snap->state, SHARE_STATE_TOPIC);
    return t != NULL ? t->partition_count : 0;
}

int32_t share_state_partition_for(struct kafka_str group, const uint8_t topic_id[16],
                                  int32_t partition, int32_t n)
{
    LM_ASSERT(n > 0);
    char key[LM_SHR_COORD_KEY_MAX];
    int32_t len = lm_shr_coord_key(group, topic_id, partition, key);
    return lm_gr_partition_for((struct kafka_str){key, len}, n);
}

/* ---- records ---- */

void share_prec_free(struct share_prec *pr)
{
    free(pr->mem);
    memset(pr, 0, sizeof(*pr));
}

int share_prec_state(struct share_prec *pr, int32_t state_partition, struct kafka_str group,
                     const uint8_t topic_id[16], int32_t partition, int16_t type,
                     const struct lm_shr_value *v)
{
    LM_ASSERT(group.len >= 0 && v->n_batches >= 0);
    memset(pr, 0, sizeof(*pr));
    /* key: i16 + i16 + group + uuid + i32; value: at most 46 fixed bytes, a 5-byte count, 20
     * bytes a batch, the tagged-field section */
    size_t key_cap = 2 + 2 + (size_t)group.len + 16 + 4;
    size_t cap = key_cap + 64 + (size_t)v->n_batches * 20;
    pr->mem = malloc(cap);
    if (pr->mem == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, pr->mem, cap);
    struct lm_shr_key k = {type, group, {0}, partition};
    memcpy(k.topic_id, topic_id, 16);
    int rc = lm_shr_key_encode(&w, &k);
    size_t key_len = w.pos;
    if (rc == 0)
        rc = lm_shr_value_encode(&w, type, v);
    if (rc != 0) {
        share_prec_free(pr);
        return rc;
    }
    pr->state_partition = state_partition;
    pr->check = SHARE_CHECK_WRITE;
    pr->leader_epoch = v->leader_epoch;
    pr->state_epoch = v->state_epoch;
    pr->start_offset = v->start_offset;
    pr->n = 1;
    pr->r[0].key = pr->mem;
    pr->r[0].key_len = (int32_t)key_len;
    pr->r[0].value = pr->mem + key_len;
    pr->r[0].value_len = (int32_t)(w.pos - key_len);
    return 0;
}

int share_prec_initialize(struct share_prec *pr, int32_t state_partition, struct kafka_str group,
                          const uint8_t topic_id[16], int32_t partition, int32_t state_epoch,
                          int64_t start_offset, int64_t now_ms)
{
    struct lm_shr_value v = {.state_epoch = state_epoch,
                             .leader_epoch = 0,
                             .start_offset = start_offset,
                             .create_ms = now_ms,
                             .write_ms = now_ms};
    int rc = share_prec_state(pr, state_partition, group, topic_id, partition, LM_SHR_SNAPSHOT, &v);
    if (rc != 0)
        return rc;
    pr->check = SHARE_CHECK_INIT;
    pr->next_snapshot = true;
    return 0;
}

int share_prec_tombstones(struct share_prec *pr, int32_t state_partition, struct kafka_str group,
                          const uint8_t topic_id[16], int32_t partition)
{
    memset(pr, 0, sizeof(*pr));
    size_t key_cap = 2 + 2 + (size_t)group.len + 16 + 4;
    pr->mem = malloc(2 * key_cap);
    if (pr->mem == NULL)
        return LM_E_NOMEM;
    pr->state_partition = state_partition;
    for (int16_t type = LM_SHR_SNAPSHOT; type <= LM_SHR_UPDATE; type++) {
        struct kafka_writer w;
        kafka_writer_init(&w, pr->mem + (size_t)type * key_cap, key_cap);
        struct lm_shr_key k = {type, group, {0}, partition};
        memcpy(k.topic_id, topic_id, 16);
        int rc = lm_shr_key_encode(&w, &k);
        if (rc != 0) {
            share_prec_free(pr);
            return rc;
        }
        pr->r[pr->n].key = w.buf;
        pr->r[pr->n].key_len = (int32_t)w.pos;
        pr->r[pr->n].value = NULL;
        pr->r[pr->n].value_len = -1;
        pr->n++;
    }
    return 0;
}

/* ---- connections to the share coordinators of other nodes ---- */

struct speer {
    int32_t node;
    struct broker_peer *peer;
    uint64_t retry_at_ms;
};

/* The fencing epochs of one share partition whose state partition this shard leads. */
struct sfkey {
    struct sfkey *next;
    uint64_t hash;
    int32_t partition;
    uint8_t topic_id[16];
    struct lm_shr_fence fence;
    int32_t group_len;
    char group[];
};

/* The fencing epochs of the share partitions of one state partition, replayed from its log up
 * to `next` (the records appended since are replayed at the next check): valid while the log
 * and its leader epoch are the ones they were replayed in, as within one leadership nothing
 * but this shard appends to it and nothing truncates it. */
struct sfpart {
    const struct storage_log *log; /* NULL: nothing replayed */
    int32_t gen;
    int64_t next;
    uint32_t n, nb;
    struct sfkey **b;
};

struct sspeers {
    struct speer peers[SHARE_PEERS_MAX];
    int32_t n;
    uint64_t create_at_ms; /* the next creation of the state topic may be submitted then */
    struct sfpart *fence;  /* per state partition */
    int32_t n_fence;
};

static struct sspeers *peers_of(struct hshard *hs)
{
    if (hs->share_peers == NULL)
        hs->share_peers = calloc(1, sizeof(*hs->share_peers));
    return hs->share_peers;
}

static bool create_due(struct sspeers *ps, uint64_t now_ms)
{
    if (now_ms < ps->create_at_ms)
        return false;
    ps->create_at_ms = now_ms + 1000;
    return true;
}

/* ---- fencing (Kafka's ShareCoordinatorShard leaderEpochMap and stateEpochMap) ---- */

static void fence_clear(struct sfpart *fp)
{
    for (uint32_t i = 0; i < fp->nb; i++)
        for (struct sfkey *k = fp->b[i], *nx; k != NULL; k = nx) {
            nx = k->next;
            free(k);
        }
    free(fp->b);
    memset(fp, 0, sizeof(*fp));
}

static uint64_t fence_hash(struct kafka_str group, const uint8_t topic_id[16], int32_t partition)
{
    uint64_t h = lm_fnv1a64(group.ptr, (size_t)group.len);
    h = lm_fnv1a64_update(h, topic_id, 16);
    return lm_fnv1a64_update(h, &partition, sizeof(partition));
}

/* The entry of (group, topic_id, partition) in fp, made (nothing replayed) with make; NULL
 * when absent or out of memory. */
static struct sfkey *fence_key(struct sfpart *fp, struct kafka_str group,
                               const uint8_t topic_id[16], int32_t partition, bool make)
{
    uint64_t h = fence_hash(group, topic_id, partition);
    for (struct sfkey *k = fp->nb > 0 ? fp->b[h % fp->nb] : NULL; k != NULL; k = k->next)
        if (k->hash == h && k->partition == partition && k->group_len == group.len &&
            memcmp(k->topic_id, topic_id, 16) == 0 &&
            memcmp(k->group, group.ptr, (size_t)group.len) == 0)
            return k;
    if (!make)
        return NULL;
    if (fp->n >= fp->nb) { /* grow: twice the buckets, at least 64 */
        uint32_t nb = fp->nb ? fp->nb * 2 : 64;
        struct sfkey **b = calloc(nb, sizeof(*b));
        if (b == NULL)
            return NULL;
        for (uint32_t i = 0; i < fp->nb; i++)
            for (struct sfkey *k = fp->b[i], *nx; k != NULL; k = nx) {
                nx = k->next;
                k->next = b[k->hash % nb];
                b[k->hash % nb] = k;
            }
        free(fp->b);
        fp->b = b;
        fp->nb = nb;
    }
    struct sfkey *k = malloc(sizeof(*k) + (size_t)group.len);
    if (k == NULL)
        return NULL;
    k->hash = h;
    k->partition = partition;
    memcpy(k->topic_id, topic_id, 16);
    lm_shr_fence_init(&k->fence);
    k->group_len = group.len;
    memcpy(k->group, group.ptr, (size_t)group.len);
    k->next = fp->b[h % fp->nb];
    fp->b[h % fp->nb] = k;
    fp->n++;
    return k;
}

struct fence_scan {
    struct sfpart *fp;
    int rc; /* LM_E_NOMEM: an entry could not be made */
    int64_t n_bad;
};

/* Calls fn(ctx, record) for each record of batch, a batch of a state partition (control
 * batches skipped); a batch that does not decode adds to *n_bad. */
static void state_batch_records(const uint8_t *batch, size_t len,
                                const struct kafka_batch_header *h,
                                void (*fn)(void *ctx, const struct kafka_record *rec), void *ctx,
                                int64_t *n_bad)
{
    if (h->attributes & KAFKA_BATCH_ATTR_CONTROL)
        return;
    struct kafka_batch_reader r;
    if (kafka_batch_reader_open(&r, batch, len, SHARE_LOAD_BATCH_BYTES_MAX) != 0) {
        (*n_bad)++;
        return;
    }
    struct kafka_record_iter it;
    kafka_batch_reader_iter(&r, &it);
    struct kafka_record rec;
    int rc;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1)
        fn(ctx, &rec);
    kafka_batch_reader_close(&r);
    if (rc < 0)
        (*n_bad)++;
}

static void fence_record(void *ctx, const struct kafka_record *rec)
{
    struct fence_scan *fs = ctx;
    struct lm_shr_key k;
    if (rec->key_len < 0 || lm_shr_key_decode(rec->key, (size_t)rec->key_len, &k) != 0)
        return;
    struct lm_shr_value v;
    bool tomb = rec->value_len < 0;
    if (!tomb &&
        lm_shr_value_decode(rec->value, (size_t)rec->value_len, k.type, &v, NULL, 0) != 0) {
        fs->n_bad++;
        return;
    }
    struct sfkey *e = fence_key(fs->fp, k.group, k.topic_id, k.partition, !tomb);
    if (e == NULL && !tomb)
        fs->rc = LM_E_NOMEM;
    if (e != NULL)
        lm_shr_fence_replay(&e->fence, k.type, tomb ? NULL : &v);
}

static int fence_batch(void *ctx, const uint8_t *batch, size_t len,
                       const struct kafka_batch_header *h)
{
    struct fence_scan *fs = ctx;
    state_batch_records(batch, len, h, fence_record, fs, &fs->n_bad);
    return 0;
}

/* The fencing epochs of (group, topic_id, partition) in p, the state partition this shard
 * leads: replayed from its log (the records since the last check). NULL on failure (*rc). */
static struct lm_shr_fence *fence_of(struct hshard *hs, struct hpart *p, struct kafka_str group,
                                     const uint8_t topic_id[16], int32_t partition, int *rc)
{
    struct sspeers *ps = peers_of(hs);
    *rc = LM_E_NOMEM;
    if (ps == NULL || p->partition < 0 || p->partition >= SHARE_STATE_PARTITIONS_MAX)
        return NULL;
    if (p->partition >= ps->n_fence) {
        int32_t n = p->partition + 1;
        struct sfpart *f = realloc(ps->fence, (size_t)n * sizeof(*f));
        if (f == NULL)
            return NULL;
        memset(f + ps->n_fence, 0, (size_t)(n - ps->n_fence) * sizeof(*f));
        ps->fence = f;
        ps->n_fence = n;
    }
    struct sfpart *fp = &ps->fence[p->partition];
    int32_t gen = p->replicated ? partition_leader_epoch(p->part) : 0;
    if (fp->log != p->log || fp->gen != gen || storage_log_end_offset(p->log) < fp->next) {
        fence_clear(fp);
        fp->log = p->log;
        fp->gen = gen;
    }
    struct fence_scan fs = {.fp = fp};
    int64_t next = fp->next;
    *rc = group_log_scan_range(p->log, fp->next, INT64_MAX, UINT64_MAX, fence_batch, &fs, &next);
    if (fs.n_bad > 0)
        BLOG_WARN_LIMITED("%s-%d: skipped %lld bad records", SHARE_STATE_TOPIC, p->partition,
                          (long long)fs.n_bad);
    if (*rc == 0)
        *rc = fs.rc;
    if (*rc != 0) {
        fence_clear(fp); /* replayed again from the start next time */
        return NULL;
    }
    fp->next = next;
    struct sfkey *k = fence_key(fp, group, topic_id, partition, true);
    if (k == NULL) {
        *rc = LM_E_NOMEM;
        return NULL;
    }
    return &k->fence;
}

/* Kafka's fencing of pr's append in p (NONE: go on); a whole-state snapshot gets the next
 * snapshot epoch. */
static int16_t fence_check(struct hshard *hs, struct hpart *p, struct share_prec *pr)
{
    if (pr->check == SHARE_CHECK_NONE)
        return KAFKA_NONE;
    struct lm_shr_key k;
    if (pr->n < 1 || lm_shr_key_decode(pr->r[0].key, (size_t)pr->r[0].key_len, &k) != 0)
        return KAFKA_UNKNOWN_SERVER_ERROR;
    int rc;
    const struct lm_shr_fence *f = fence_of(hs, p, k.group, k.topic_id, k.partition, &rc);
    if (f == NULL) {
        BLOG_WARN_LIMITED("%s-%d: reading its epochs: %s", SHARE_STATE_TOPIC, p->partition,
                          lm_strerror(rc));
        return KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    int16_t err = pr->check == SHARE_CHECK_INIT
                      ? lm_shr_fence_initialize(f, pr->state_epoch)
                      : lm_shr_fence_write(f, pr->leader_epoch, pr->state_epoch);
    if (err != KAFKA_NONE) {
        BLOG_INFO_LIMITED("%s-%d: share partition %.*s:%d: %s with leader epoch %d, state epoch "
                          "%d refused (recorded: %d, %d)",
                          SHARE_STATE_TOPIC, p->partition, (int)k.group.len, k.group.ptr,
                          k.partition, pr->check == SHARE_CHECK_INIT ? "initialization" : "write",
                          pr->leader_epoch, pr->state_epoch, f->leader_epoch, f->state_epoch);
        return err;
    }
    if (pr->next_snapshot && k.type == LM_SHR_SNAPSHOT && pr->r[0].value_len >= 6) {
        /* the value: i16 version, then the i32 snapshot epoch */
        uint32_t e = (uint32_t)lm_shr_fence_next_snapshot(f);
        uint8_t *b = (uint8_t *)pr->r[0].value + 2;
        b[0] = (uint8_t)(e >> 24);
        b[1] = (uint8_t)(e >> 16);
        b[2] = (uint8_t)(e >> 8);
        b[3] = (uint8_t)e;
    }
    return KAFKA_NONE;
}

void share_state_shard_free(struct hshard *hs)
{
    struct sspeers *ps = hs->share_peers;
    if (ps == NULL)
        return;
    for (int32_t i = 0; i < ps->n; i++)
        if (ps->peers[i].peer != NULL)
            broker_peer_close(ps->peers[i].peer);
    for (int32_t i = 0; i < ps->n_fence; i++)
        fence_clear(&ps->fence[i]);
    free(ps->fence);
    free(ps);
    hs->share_peers = NULL;
}

/* A connection to node's inter-broker listener, opened on first use; NULL when there is none
 * now (retried 500 ms after a failure). */
static struct broker_peer *peer_for(struct hshard *hs, int32_t node)
{
    struct sspeers *ps = peers_of(hs);
    if (ps == NULL)
        return NULL;
    struct speer *pe = NULL;
    for (int32_t i = 0; i < ps->n && pe == NULL; i++)
        if (ps->peers[i].node == node)
            pe = &ps->peers[i];
    if (pe == NULL) {
        if (ps->n == SHARE_PEERS_MAX)
            return NULL;
        pe = &ps->peers[ps->n++];
        *pe = (struct speer){.node = node};
    }
    return hs_inter_broker_peer(hs, node, &pe->peer, &pe->retry_at_ms, hs->stopping,
                                "laminar-share-state");
}

/* The node leading state partition p: this node's id on a single node or when it leads it,
 * -1 when unknown. */
static int32_t state_leader(struct hshard *hs, int32_t p)
{
    int32_t self = hs->node->cfg->node_id;
    if (!hs_cluster(hs->node))
        return self;
    hs_refresh(hs);
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, SHARE_STATE_TOPIC);
    if (t == NULL || p < 0 || p >= t->partition_count)
        return -1;
    return lm_meta_state_partition_leader(&hs->snap->state, t, p, self);
}

/* One call to another node's share coordinator. */
struct srpc {
    struct broker_call call;
    struct broker_resp_part part;
    uint8_t *buf;
    void (*answer)(struct srpc *r, int rc); /* decodes the response (rc 0) or the failure */
    void *owner;
    size_t i;
};

static void rpc_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct srpc *r = call->arg;
    free(r->buf);
    r->buf = NULL;
    r->answer(r, rc);
}

/* Sends the request in r->buf[0..len) as api key/version 0 to node. 0 or LM_E_* (nothing
 * sent, r->buf freed). */
static int rpc_send(struct hshard *hs, struct srpc *r, int16_t key, size_t len, int32_t node)
{
    struct broker_peer *peer = peer_for(hs, node);
    int rc = LM_E_CLOSED;
    if (peer != NULL) {
        r->part = (struct broker_resp_part){.mem = r->buf, .fd = -1, .len = len};
        r->call = (struct broker_call){.api_key = key,
                                       .api_version = 0,
                                       .flexible = true,
                                       .parts = &r->part,
                                       .nparts = 1,
                                       .done = rpc_done,
                                       .arg = r};
        rc = broker_peer_send(peer, &r->call);
    }
    if (rc != 0) {
        free(r->buf);
        r->buf = NULL;
    }
    return rc;
}

/* A remote answer's error: NOT_COORDINATOR (the node no longer leads the state partition) and
 * the network's are NOT_LEADER_OR_FOLLOWER to the callers (not written or read there). */
static int16_t remote_error(int16_t err)
{
    return err == KAFKA_NOT_COORDINATOR || err == KAFKA_COORDINATOR_LOAD_IN_PROGRESS ||
                   err == KAFKA_NETWORK_EXCEPTION
               ? KAFKA_NOT_LEADER_OR_FOLLOWER
               : err;
}

/* ---- appends ---- */

struct spersist {
    struct hshard *hs;
    struct share_prec *recs;
    struct hwork *items;
    struct hsync_wait *waits;
    struct srpc *rpcs;
    size_t n;
    struct hfan fan;
    uint32_t pending; /* the local fan-out and the calls to other nodes not back yet */
    void (*done)(void *ctx);
    void *ctx;
};

static void persist_step(struct spersist *sp)
{
    LM_ASSERT(sp->pending > 0);
    if (--sp->pending == 0)
        sp->done(sp->ctx);
}

static void persist_synced(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    (void)p;
    struct hwork *w = sw->arg;
    if (rc != 0) {
        BLOG_WARN_LIMITED("%s-%d: append: %s", SHARE_STATE_TOPIC, w->partition, lm_strerror(rc));
        w->error = KAFKA_COORDINATOR_NOT_AVAILABLE;
    }
    hfan_release(hs, w);
}

static void persist_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct spersist *sp = f->ctx;
    size_t i = (size_t)(w - sp->items);
    const struct share_prec *pr = &sp->recs[i];
    w->error = KAFKA_NONE;
    if (p == NULL) {
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER; /* not on this node */
        return;
    }
    if (p->log == NULL || p->failed || p->part == NULL) {
        w->error = KAFKA_COORDINATOR_NOT_AVAILABLE;
        return;
    }
    if (p->replicated && !partition_is_leader(p->part)) {
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        return;
    }
    w->error = fence_check(hs, p, &sp->recs[i]);
    if (w->error != KAFKA_NONE)
        return;
    int64_t now = group_now_ms(hs);
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, now);
    int rc = 0;
    for (int32_t r = 0; r < pr->n && rc == 0; r++)
        rc = kafka_batch_builder_append(&b, now, pr->r[r].key, pr->r[r].key_len, pr->r[r].value,
                                        pr->r[r].value_len, NULL, 0);
    uint8_t *buf = NULL;
    size_t len = 0;
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len);
    kafka_batch_builder_deinit(&b);
    if (rc != 0) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    struct hsync_wait *sw = &sp->waits[i];
    memset(sw, 0, sizeof(*sw));
    sw->done = persist_synced;
    sw->arg = w;
    hfan_hold(w);
    rc = hs_append(hs, p, PARTITION_ORIGIN_COORDINATOR, buf, len, -1, sw);
    free(buf);
    if (rc != 0) {
        w->error = rc == LM_E_STATE && p->replicated ? KAFKA_NOT_LEADER_OR_FOLLOWER
                                                     : KAFKA_COORDINATOR_NOT_AVAILABLE;
        hfan_release(hs, w);
    }
}

static void persist_finished(struct hfan *f)
{
    struct spersist *sp = f->ctx;
    for (size_t i = 0; i < sp->n; i++)
        if (sp->items[i].owner != HWORK_DONE)
            sp->recs[i].error = sp->items[i].error;
    persist_step(sp);
}

static void write_answered(struct srpc *r, int rc)
{
    struct spersist *sp = r->owner;
    struct share_prec *pr = &sp->recs[r->i];
    int16_t err = KAFKA_NETWORK_EXCEPTION;
    if (rc == 0) {
        struct kafka_arena a;
        kafka_arena_init(&a, SHARE_RPC_ARENA_BYTES);
        struct kafka_reader rd;
        kafka_reader_init(&rd, r->call.resp, r->call.resp_len);
        struct kafka_write_share_group_state_response rs;
        kafka_write_share_group_state_response_init(&rs);
        if (kafka_write_share_group_state_response_decode(&rd, 0, &rs, &a) == 0 &&
            rs.results_count == 1 && rs.results[0].partitions_count == 1)
            err = rs.results[0].partitions[0].error_code;
        kafka_arena_deinit(&a);
    }
    pr->error = remote_error(err);
    if (pr->error != KAFKA_NONE)
        BLOG_INFO_LIMITED("%s-%d: WriteShareGroupState to its leader: error %d", SHARE_STATE_TOPIC,
                          pr->state_partition, err);
    persist_step(sp);
}

static void delete_answered(struct srpc *r, int rc)
{
    struct spersist *sp = r->owner;
    struct share_prec *pr = &sp->recs[r->i];
    int16_t err = KAFKA_NETWORK_EXCEPTION;
    if (rc == 0) {
        struct kafka_arena a;
        kafka_arena_init(&a, SHARE_RPC_ARENA_BYTES);
        struct kafka_reader rd;
        kafka_reader_init(&rd, r->call.resp, r->call.resp_len);
        struct kafka_delete_share_group_state_response rs;
        kafka_delete_share_group_state_response_init(&rs);
        if (kafka_delete_share_group_state_response_decode(&rd, 0, &rs, &a) == 0 &&
            rs.results_count == 1 && rs.results[0].partitions_count == 1)
            err = rs.results[0].partitions[0].error_code;
        kafka_arena_deinit(&a);
    }
    pr->error = remote_error(err);
    if (pr->error != KAFKA_NONE)
        BLOG_INFO_LIMITED("%s-%d: DeleteShareGroupState to its leader: error %d", SHARE_STATE_TOPIC,
                          pr->state_partition, err);
    persist_step(sp);
}

/* Sends recs[i] (the tombstones of a share partition) as a DeleteShareGroupState to node. */
static int remote_delete(struct spersist *sp, size_t i, const struct lm_shr_key *k, int32_t node)
{
    struct kafka_delete_share_group_state_request_partition_data pd = {.partition = k->partition};
    struct kafka_delete_share_group_state_request_delete_state_data td = {.partitions = &pd,
                                                                          .partitions_count = 1};
    memcpy(td.topic_id.b, k->topic_id, 16);
    struct kafka_delete_share_group_state_request rq;
    kafka_delete_share_group_state_request_init(&rq);
    rq.group_id = k->group;
    rq.topics = &td;
    rq.topics_count = 1;
    struct srpc *r = &sp->rpcs[i];
    memset(r, 0, sizeof(*r));
    size_t len = kafka_delete_share_group_state_request_size(0, &rq);
    r->buf = malloc(len);
    if (r->buf == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, r->buf, len);
    int rc = kafka_delete_share_group_state_request_encode(&w, 0, &rq);
    LM_ASSERT(rc != 0 || w.pos == len);
    if (rc != 0) {
        free(r->buf);
        r->buf = NULL;
        return rc;
    }
    r->answer = delete_answered;
    r->owner = sp;
    r->i = i;
    return rpc_send(sp->hs, r, KAFKA_DELETE_SHARE_GROUP_STATE_KEY, len, node);
}

static void init_answered(struct srpc *r, int rc)
{
    struct spersist *sp = r->owner;
    struct share_prec *pr = &sp->recs[r->i];
    int16_t err = KAFKA_NETWORK_EXCEPTION;
    if (rc == 0) {
        struct kafka_arena a;
        kafka_arena_init(&a, SHARE_RPC_ARENA_BYTES);
        struct kafka_reader rd;
        kafka_reader_init(&rd, r->call.resp, r->call.resp_len);
        struct kafka_initialize_share_group_state_response rs;
        kafka_initialize_share_group_state_response_init(&rs);
        if (kafka_initialize_share_group_state_response_decode(&rd, 0, &rs, &a) == 0 &&
            rs.results_count == 1 && rs.results[0].partitions_count == 1)
            err = rs.results[0].partitions[0].error_code;
        kafka_arena_deinit(&a);
    }
    pr->error = remote_error(err);
    if (pr->error != KAFKA_NONE)
        BLOG_INFO_LIMITED("%s-%d: InitializeShareGroupState to its leader: error %d",
                          SHARE_STATE_TOPIC, pr->state_partition, err);
    persist_step(sp);
}

/* Sends recs[i] (an initialization) as an InitializeShareGroupState to node. */
static int remote_initialize(struct spersist *sp, size_t i, const struct lm_shr_key *k,
                             int32_t node)
{
    const struct share_prec *pr = &sp->recs[i];
    struct kafka_initialize_share_group_state_request_partition_data pd = {
        .partition = k->partition,
        .state_epoch = pr->state_epoch,
        .start_offset = pr->start_offset};
    struct kafka_initialize_share_group_state_request_initialize_state_data td = {
        .partitions = &pd, .partitions_count = 1};
    memcpy(td.topic_id.b, k->topic_id, 16);
    struct kafka_initialize_share_group_state_request rq;
    kafka_initialize_share_group_state_request_init(&rq);
    rq.group_id = k->group;
    rq.topics = &td;
    rq.topics_count = 1;
    struct srpc *r = &sp->rpcs[i];
    memset(r, 0, sizeof(*r));
    size_t len = kafka_initialize_share_group_state_request_size(0, &rq);
    r->buf = malloc(len);
    if (r->buf == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, r->buf, len);
    int rc = kafka_initialize_share_group_state_request_encode(&w, 0, &rq);
    LM_ASSERT(rc != 0 || w.pos == len);
    if (rc != 0) {
        free(r->buf);
        r->buf = NULL;
        return rc;
    }
    r->answer = init_answered;
    r->owner = sp;
    r->i = i;
    return rpc_send(sp->hs, r, KAFKA_INITIALIZE_SHARE_GROUP_STATE_KEY, len, node);
}

/* Sends recs[i] as a WriteShareGroupState (one snapshot or update record, with the writer's
 * epochs), an InitializeShareGroupState or a DeleteShareGroupState (tombstones) to node. */
static int remote_write(struct spersist *sp, size_t i, int32_t node)
{
    const struct share_prec *pr = &sp->recs[i];
    if (pr->n < 1)
        return LM_E_INVALID;
    struct lm_shr_key k;
    int rc = lm_shr_key_decode(pr->r[0].key, (size_t)pr->r[0].key_len, &k);
    if (rc != 0)
        return rc;
    if (pr->r[0].value == NULL)
        return remote_delete(sp, i, &k, node);
    if (pr->n != 1)
        return LM_E_INVALID;
    if (pr->check == SHARE_CHECK_INIT)
        return remote_initialize(sp, i, &k, node);
    int32_t cap = pr->r[0].value_len / 20 + 1;
    struct lm_shr_batch *b = malloc((size_t)cap * sizeof(*b));
    struct kafka_write_share_group_state_request_state_batch *wb =
        malloc((size_t)cap * sizeof(*wb));
    struct lm_shr_value v;
    if (b == NULL || wb == NULL)
        rc = LM_E_NOMEM;
    if (rc == 0)
        rc = lm_shr_value_decode(pr->r[0].value, (size_t)pr->r[0].value_len, k.type, &v, b, cap);
    struct srpc *r = &sp->rpcs[i];
    memset(r, 0, sizeof(*r));
    size_t len = 0;
    if (rc == 0) {
        for (int32_t j = 0; j < v.n_batches; j++)
            wb[j] = (struct kafka_write_share_group_state_request_state_batch){
                b[j].first, b[j].last, b[j].state, b[j].delivery_count};
        /* the writer's state epoch: an update record does not carry it */
        struct kafka_write_share_group_state_request_partition_data pd = {
            .partition = k.partition,
            .state_epoch = pr->state_epoch,
            .leader_epoch = v.leader_epoch,
            .start_offset = v.start_offset,
            .state_batches = wb,
            .state_batches_count = v.n_batches};
        struct kafka_write_share_group_state_request_write_state_data td = {.partitions = &pd,
                                                                            .partitions_count = 1};
        memcpy(td.topic_id.b, k.topic_id, 16);
        struct kafka_write_share_group_state_request rq;
        kafka_write_share_group_state_request_init(&rq);
        rq.group_id = k.group;
        rq.topics = &td;
        rq.topics_count = 1;
        len = kafka_write_share_group_state_request_size(0, &rq);
        r->buf = malloc(len);
        if (r->buf == NULL) {
            rc = LM_E_NOMEM;
        } else {
            struct kafka_writer w;
            kafka_writer_init(&w, r->buf, len);
            rc = kafka_write_share_group_state_request_encode(&w, 0, &rq);
            LM_ASSERT(rc != 0 || w.pos == len);
        }
    }
    free(b);
    free(wb);
    if (rc != 0) {
        free(r->buf);
        r->buf = NULL;
        return rc;
    }
    r->answer = write_answered;
    r->owner = sp;
    r->i = i;
    return rpc_send(sp->hs, r, KAFKA_WRITE_SHARE_GROUP_STATE_KEY, len, node);
}

static bool persist_begin(struct broker_req *req, struct share_prec *recs, size_t n,
                          void (*done)(void *ctx), void *ctx, bool local_only)
{
    struct hshard *hs = hs_of(req->shard);
    struct spersist *sp = h_alloc(req, 1, sizeof(*sp));
    if (sp == NULL)
        return false;
    memset(sp, 0, sizeof(*sp));
    sp->items = h_alloc(req, n ? n : 1, sizeof(*sp->items));
    sp->waits = h_alloc(req, n ? n : 1, sizeof(*sp->waits));
    sp->rpcs = h_alloc(req, n ? n : 1, sizeof(*sp->rpcs));
    if (sp->items == NULL || sp->waits == NULL || sp->rpcs == NULL)
        return false;
    sp->hs = hs;
    sp->recs = recs;
    sp->n = n;
    sp->done = done;
    sp->ctx = ctx;
    int32_t self = hs->node->cfg->node_id;
    for (size_t i = 0; i < n; i++) {
        struct hwork *w = &sp->items[i];
        memset(w, 0, sizeof(*w));
        w->topic = SHARE_STATE_TOPIC;
        w->topic_len = SHARE_STATE_TOPIC_LEN;
        w->partition = recs[i].state_partition;
        w->owner = HWORK_DONE;
        recs[i].error = KAFKA_NONE;
        if (recs[i].n == 0)
            continue;
        int32_t leader = local_only ? self : state_leader(hs, recs[i].state_partition);
        if (leader == self)
            w->owner =
                hs_owner(hs, SHARE_STATE_TOPIC, SHARE_STATE_TOPIC_LEN, recs[i].state_partition);
        else
            recs[i].error = KAFKA_NOT_LEADER_OR_FOLLOWER; /* sent below when it can be */
    }
    if (!hfan_init(&sp->fan, req, sp->items, n, persist_op, persist_finished, sp))
        return false;
    sp->pending = 2; /* the fan-out, and this setup */
    for (size_t i = 0; i < n && !local_only; i++) {
        if (recs[i].n == 0 || sp->items[i].owner != HWORK_DONE)
            continue;
        int32_t leader = state_leader(hs, recs[i].state_partition);
        if (leader < 0)
            continue;
        sp->pending++;
        if (remote_write(sp, i, leader) != 0)
            sp->pending--; /* not sent: NOT_LEADER_OR_FOLLOWER */
    }
    hfan_start(&sp->fan);
    persist_step(sp);
    return true;
}

bool share_persist_start(struct broker_req *req, struct share_prec *recs, size_t n,
                         void (*done)(void *ctx), void *ctx)
{
    return persist_begin(req, recs, n, done, ctx, false);
}

/* ---- reads ---- */

struct sload {
    struct broker_req *req;
    struct hshard *hs;
    struct share_load *loads;
    struct hwork *items;
    struct srpc *rpcs;
    struct share_prec *precs; /* the leader epochs the reads record here (with_epoch) */
    size_t n;
    struct hfan fan;
    uint32_t pending;
    void (*done)(void *ctx);
    void *ctx;
};

static bool persist_begin(struct broker_req *req, struct share_prec *recs, size_t n,
                          void (*done)(void *ctx), void *ctx, bool local_only);

static void load_failed(struct share_load *ld, int16_t err)
{
    ld->error = err;
    if (ld->state != NULL)
        lm_shr_state_deinit(ld->state); /* nothing read */
}

static void load_recorded(void *ctx)
{
    struct sload *sl = ctx;
    for (size_t i = 0; i < sl->n; i++) {
        if (sl->precs[i].n > 0 && sl->precs[i].error != KAFKA_NONE)
            load_failed(&sl->loads[i], sl->precs[i].error);
        share_prec_free(&sl->precs[i]);
    }
    sl->done(sl->ctx);
}

/* The reads are done: those by a leader (with_epoch) of a state partition led here are
 * checked against its epochs, and a newer leader epoch is written before the answer (a read
 * sent to another node had it done there). */
static void load_finish(struct sload *sl)
{
    bool any = false;
    int64_t now = group_now_ms(sl->hs);
    for (size_t i = 0; i < sl->n; i++) {
        struct share_load *ld = &sl->loads[i];
        const struct lm_shr_state *st = ld->state;
        if (!ld->with_epoch || ld->error != KAFKA_NONE || st == NULL || !st->present ||
            sl->items[i].owner == HWORK_DONE)
            continue;
        int16_t err = lm_shr_fence_read(&st->fence, ld->leader_epoch);
        if (err != KAFKA_NONE) {
            load_failed(ld, err);
            continue;
        }
        if (st->fence.leader_epoch >= ld->leader_epoch)
            continue;
        if (sl->precs == NULL)
            sl->precs = h_alloc(sl->req, sl->n, sizeof(*sl->precs));
        if (sl->precs == NULL) {
            load_failed(ld, KAFKA_UNKNOWN_SERVER_ERROR);
            continue;
        }
        if (!any)
            memset(sl->precs, 0, sl->n * sizeof(*sl->precs));
        struct lm_shr_value v = {.snapshot_epoch = st->snapshot_epoch,
                                 .state_epoch = -1,
                                 .leader_epoch = ld->leader_epoch,
                                 .start_offset = st->start_offset,
                                 .create_ms = now,
                                 .write_ms = now};
        if (share_prec_state(&sl->precs[i], ld->state_partition, ld->group, ld->topic_id,
                             ld->partition, LM_SHR_UPDATE, &v) != 0)
            load_failed(ld, KAFKA_UNKNOWN_SERVER_ERROR);
        else
            any = true;
    }
    if (any && persist_begin(sl->req, sl->precs, sl->n, load_recorded, sl, true))
        return;
    if (any) /* arena exhausted: nothing written, the reads fail */
        for (size_t i = 0; i < sl->n; i++)
            if (sl->precs[i].n > 0) {
                load_failed(&sl->loads[i], KAFKA_UNKNOWN_SERVER_ERROR);
                share_prec_free(&sl->precs[i]);
            }
    sl->done(sl->ctx);
}

static void load_step(struct sload *sl)
{
    LM_ASSERT(sl->pending > 0);
    if (--sl->pending == 0)
        load_finish(sl);
}

struct load_scan {
    const struct share_load *want;
    struct lm_shr_state *state;
    struct lm_shr_batch *batches;
    int32_t cap;
    int64_t n_bad;
};

static void load_record(void *ctx, const struct kafka_record *rec)
{
    struct load_scan *l = ctx;
    struct lm_shr_key k;
    if (rec->key_len < 0 || lm_shr_key_decode(rec->key, (size_t)rec->key_len, &k) != 0)
        return; /* another record type (none yet) or not ours to read */
    if (k.partition != l->want->partition || memcmp(k.topic_id, l->want->topic_id, 16) != 0 ||
        k.group.len != l->want->group.len ||
        memcmp(k.group.ptr, l->want->group.ptr, (size_t)k.group.len) != 0)
        return;
    if (rec->value_len < 0) {
        (void)lm_shr_state_replay(l->state, k.type, NULL);
        return;
    }
    struct lm_shr_value v;
    int rc =
        lm_shr_value_decode(rec->value, (size_t)rec->value_len, k.type, &v, l->batches, l->cap);
    if (rc == 0)
        rc = lm_shr_state_replay(l->state, k.type, &v);
    if (rc != 0)
        l->n_bad++; /* untrusted bytes: skipped, as the group loader skips them */
}

static int load_batch(void *ctx, const uint8_t *batch, size_t len,
                      const struct kafka_batch_header *h)
{
    struct load_scan *l = ctx;
    state_batch_records(batch, len, h, load_record, l, &l->n_bad);
    return 0;
}

static void load_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct sload *sl = f->ctx;
    struct share_load *ld = &sl->loads[w - sl->items];
    w->error = KAFKA_NONE;
    ld->state = malloc(sizeof(*ld->state));
    if (ld->state == NULL) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    lm_shr_state_init(ld->state);
    /* another node's state partition (a cluster), or one not led here: nothing read */
    if (p == NULL || p->log == NULL || p->failed ||
        (p->replicated && (p->part == NULL || !partition_is_leader(p->part)))) {
        w->error = p == NULL || p->replicated ? KAFKA_NOT_LEADER_OR_FOLLOWER
                                              : KAFKA_COORDINATOR_NOT_AVAILABLE;
        return;
    }
    struct load_scan l = {.want = ld, .state = ld->state, .cap = hs->node->share_cfg.max_in_flight};
    l.batches = malloc((size_t)l.cap * sizeof(*l.batches));
    if (l.batches == NULL) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    int rc = group_log_scan(p->log, 0, load_batch, &l);
    free(l.batches);
    if (rc != 0) {
        BLOG_WARN_LIMITED("%s-%d: reading: %s", SHARE_STATE_TOPIC, w->partition, lm_strerror(rc));
        w->error = KAFKA_COORDINATOR_NOT_AVAILABLE;
        lm_shr_state_deinit(ld->state);
        return;
    }
    if (l.n_bad > 0)
        BLOG_WARN_LIMITED("%s-%d: skipped %lld bad records", SHARE_STATE_TOPIC, w->partition,
                          (long long)l.n_bad);
}

static void load_finished(struct hfan *f)
{
    struct sload *sl = f->ctx;
    for (size_t i = 0; i < sl->n; i++)
        if (sl->items[i].owner != HWORK_DONE)
            sl->loads[i].error = sl->items[i].error;
    load_step(sl);
}

/* The state a ReadShareGroupState answered, into ld->state (present when it has one). */
static int16_t read_state_of(const struct kafka_read_share_group_state_response *rs,
                             struct share_load *ld)
{
    if (rs->results_count != 1 || rs->results[0].partitions_count != 1)
        return KAFKA_NETWORK_EXCEPTION;
    const struct kafka_read_share_group_state_response_partition_result *pr =
        &rs->results[0].partitions[0];
    if (pr->error_code != KAFKA_NONE)
        return pr->error_code;
    if (pr->start_offset < -1 ||
        (pr->start_offset == -1 && pr->state_epoch == 0 && pr->state_batches_count <= 0))
        return KAFKA_NONE; /* no state (Kafka's uninitialized answer: -1, epoch 0) */
    int32_t n = pr->state_batches_count > 0 ? pr->state_batches_count : 0;
    if (n > LM_SHR_BATCHES_MAX)
        return KAFKA_INVALID_REQUEST;
    struct lm_shr_batch *b = malloc((size_t)(n > 0 ? n : 1) * sizeof(*b));
    if (b == NULL)
        return KAFKA_UNKNOWN_SERVER_ERROR;
    for (int32_t j = 0; j < n; j++)
        b[j] = (struct lm_shr_batch){
            pr->state_batches[j].first_offset, pr->state_batches[j].last_offset,
            pr->state_batches[j].delivery_state, pr->state_batches[j].delivery_count};
    struct lm_shr_value v = {.state_epoch = pr->state_epoch,
                             .start_offset = pr->start_offset,
                             .n_batches = n,
                             .batches = b};
    int rc = lm_shr_state_replay(ld->state, LM_SHR_SNAPSHOT, &v);
    free(b);
    return rc == 0 ? KAFKA_NONE : KAFKA_INVALID_REQUEST;
}

static void read_answered(struct srpc *r, int rc)
{
    struct sload *sl = r->owner;
    struct share_load *ld = &sl->loads[r->i];
    int16_t err = KAFKA_NETWORK_EXCEPTION;
    if (rc == 0 && ld->state != NULL) {
        struct kafka_arena a;
        kafka_arena_init(&a, SHARE_RPC_ARENA_BYTES);
        struct kafka_reader rd;
        kafka_reader_init(&rd, r->call.resp, r->call.resp_len);
        struct kafka_read_share_group_state_response rs;
        kafka_read_share_group_state_response_init(&rs);
        if (kafka_read_share_group_state_response_decode(&rd, 0, &rs, &a) == 0)
            err = read_state_of(&rs, ld);
        kafka_arena_deinit(&a);
    }
    ld->error = remote_error(err);
    if (ld->error != KAFKA_NONE && ld->state != NULL)
        lm_shr_state_deinit(ld->state); /* nothing read */
    load_step(sl);
}

static void summary_answered(struct srpc *r, int rc)
{
    struct sload *sl = r->owner;
    struct share_load *ld = &sl->loads[r->i];
    int16_t err = KAFKA_NETWORK_EXCEPTION;
    if (rc == 0 && ld->state != NULL) {
        struct kafka_arena a;
        kafka_arena_init(&a, SHARE_RPC_ARENA_BYTES);
        struct kafka_reader rd;
        kafka_reader_init(&rd, r->call.resp, r->call.resp_len);
        struct kafka_read_share_group_state_summary_response rs;
        kafka_read_share_group_state_summary_response_init(&rs);
        if (kafka_read_share_group_state_summary_response_decode(&rd, 0, &rs, &a) == 0 &&
            rs.results_count == 1 && rs.results[0].partitions_count == 1) {
            const struct kafka_read_share_group_state_summary_response_partition_result *pr =
                &rs.results[0].partitions[0];
            err = pr->error_code;
            /* start offset -1 and epochs 0: no state (Kafka's uninitialized summary) */
            bool none = pr->start_offset == -1 && pr->state_epoch == 0 && pr->leader_epoch == 0;
            if (err == KAFKA_NONE && !none) {
                struct lm_shr_value v = {.state_epoch = pr->state_epoch,
                                         .leader_epoch = pr->leader_epoch,
                                         .start_offset = pr->start_offset};
                if (lm_shr_state_replay(ld->state, LM_SHR_SNAPSHOT, &v) != 0)
                    err = KAFKA_INVALID_REQUEST;
            }
        }
        kafka_arena_deinit(&a);
    }
    ld->error = remote_error(err);
    if (ld->error != KAFKA_NONE && ld->state != NULL)
        lm_shr_state_deinit(ld->state); /* nothing read */
    load_step(sl);
}

/* Sends loads[i] as a ReadShareGroupStateSummary to node. */
static int remote_summary(struct sload *sl, size_t i, int32_t node)
{
    struct share_load *ld = &sl->loads[i];
    struct kafka_read_share_group_state_summary_request_partition_data pd = {
        .partition = ld->partition, .leader_epoch = -1};
    struct kafka_read_share_group_state_summary_request_read_state_summary_data td = {
        .partitions = &pd, .partitions_count = 1};
    memcpy(td.topic_id.b, ld->topic_id, 16);
    struct kafka_read_share_group_state_summary_request rq;
    kafka_read_share_group_state_summary_request_init(&rq);
    rq.group_id = ld->group;
    rq.topics = &td;
    rq.topics_count = 1;
    struct srpc *r = &sl->rpcs[i];
    memset(r, 0, sizeof(*r));
    size_t len = kafka_read_share_group_state_summary_request_size(0, &rq);
    r->buf = malloc(len);
    if (r->buf == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, r->buf, len);
    int rc = kafka_read_share_group_state_summary_request_encode(&w, 0, &rq);
    LM_ASSERT(rc != 0 || w.pos == len);
    if (rc != 0) {
        free(r->buf);
        r->buf = NULL;
        return rc;
    }
    r->answer = summary_answered;
    r->owner = sl;
    r->i = i;
    return rpc_send(sl->hs, r, KAFKA_READ_SHARE_GROUP_STATE_SUMMARY_KEY, len, node);
}

/* Sends loads[i] as a ReadShareGroupState to node. */
static int remote_read(struct sload *sl, size_t i, int32_t node)
{
    struct share_load *ld = &sl->loads[i];
    ld->state = malloc(sizeof(*ld->state));
    if (ld->state == NULL)
        return LM_E_NOMEM;
    lm_shr_state_init(ld->state);
    if (ld->summary)
        return remote_summary(sl, i, node);
    struct kafka_read_share_group_state_request_partition_data pd = {
        .partition = ld->partition, .leader_epoch = ld->with_epoch ? ld->leader_epoch : -1};
    struct kafka_read_share_group_state_request_read_state_data td = {.partitions = &pd,
                                                                      .partitions_count = 1};
    memcpy(td.topic_id.b, ld->topic_id, 16);
    struct kafka_read_share_group_state_request rq;
    kafka_read_share_group_state_request_init(&rq);
    rq.group_id = ld->group;
    rq.topics = &td;
    rq.topics_count = 1;
    struct srpc *r = &sl->rpcs[i];
    memset(r, 0, sizeof(*r));
    size_t len = kafka_read_share_group_state_request_size(0, &rq);
    r->buf = malloc(len);
    if (r->buf == NULL)
        return LM_E_NOMEM;
    struct kafka_writer w;
    kafka_writer_init(&w, r->buf, len);
    int rc = kafka_read_share_group_state_request_encode(&w, 0, &rq);
    LM_ASSERT(rc != 0 || w.pos == len);
    if (rc != 0) {
        free(r->buf);
        r->buf = NULL;
        return rc;
    }
    r->answer = read_answered;
    r->owner = sl;
    r->i = i;
    return rpc_send(sl->hs, r, KAFKA_READ_SHARE_GROUP_STATE_KEY, len, node);
}

static bool load_begin(struct broker_req *req, struct share_load *loads, size_t n,
                       void (*done)(void *ctx), void *ctx, bool local_only)
{
    struct hshard *hs = hs_of(req->shard);
    struct sload *sl = h_alloc(req, 1, sizeof(*sl));
    if (sl == NULL)
        return false;
    memset(sl, 0, sizeof(*sl));
    sl->items = h_alloc(req, n ? n : 1, sizeof(*sl->items));
    sl->rpcs = h_alloc(req, n ? n : 1, sizeof(*sl->rpcs));
    if (sl->items == NULL || sl->rpcs == NULL)
        return false;
    sl->req = req;
    sl->hs = hs;
    sl->loads = loads;
    sl->n = n;
    sl->done = done;
    sl->ctx = ctx;
    int32_t self = hs->node->cfg->node_id;
    for (size_t i = 0; i < n; i++) {
        struct hwork *w = &sl->items[i];
        memset(w, 0, sizeof(*w));
        w->topic = SHARE_STATE_TOPIC;
        w->topic_len = SHARE_STATE_TOPIC_LEN;
        w->partition = loads[i].state_partition;
        loads[i].state = NULL;
        loads[i].error = KAFKA_NOT_LEADER_OR_FOLLOWER; /* until read */
        int32_t leader = local_only ? self : state_leader(hs, loads[i].state_partition);
        w->owner = leader == self ? hs_owner(hs, SHARE_STATE_TOPIC, SHARE_STATE_TOPIC_LEN,
                                             loads[i].state_partition)
                                  : HWORK_DONE;
    }
    if (!hfan_init(&sl->fan, req, sl->items, n, load_op, load_finished, sl))
        return false;
    sl->pending = 2; /* the fan-out, and this setup */
    for (size_t i = 0; i < n && !local_only; i++) {
        if (sl->items[i].owner != HWORK_DONE)
            continue;
        int32_t leader = state_leader(hs, loads[i].state_partition);
        if (leader < 0)
            continue;
        sl->pending++;
        if (remote_read(sl, i, leader) != 0) {
            sl->pending--;
            if (loads[i].state != NULL) {
                lm_shr_state_deinit(loads[i].state);
                free(loads[i].state);
                loads[i].state = NULL;
            }
        }
    }
    hfan_start(&sl->fan);
    load_step(sl);
    return true;
}

bool share_load_start(struct broker_req *req, struct share_load *loads, size_t n,
                      void (*done)(void *ctx), void *ctx)
{
    return load_begin(req, loads, n, done, ctx, false);
}

/* ---- the share coordinator: Read/Write/DeleteShareGroupState ---- */

/* One request of another node's share partition leader, answered from this node's state
 * partitions (never sent further: local_only). */
struct scoord {
    struct broker_req *req;
    struct kafka_read_share_group_state_request *rrq;
    struct kafka_write_share_group_state_request *wrq;
    struct kafka_delete_share_group_state_request *drq;
    struct kafka_initialize_share_group_state_request *irq;
    struct kafka_read_share_group_state_summary_request *srq;
    size_t n;
    int16_t *errors;          /* per partition, before the fan-out (bad input, denied) */
    struct share_prec *precs; /* write, per partition */
    struct share_load *loads; /* read: the partitions without an error, in request order */
    int32_t *load_of;         /* read: per partition, its index in loads (-1: none) */
    size_t n_loads;
};

static int16_t coord_error(int16_t err)
{
    /* not this node's state partition (any more): the caller looks its leader up again */
    return err == KAFKA_NOT_LEADER_OR_FOLLOWER ? KAFKA_NOT_COORDINATOR : err;
}

/* The answer of a write's or delete's partition k: its refusal before the fan-out, else what
 * its append gave. */
static int16_t scoord_item_error(const struct scoord *c, size_t k)
{
    return c->errors[k] != KAFKA_NONE ? c->errors[k] : coord_error(c->precs[k].error);
}

static void scoord_precs_free(struct scoord *c)
{
    for (size_t i = 0; i < c->n; i++)
        share_prec_free(&c->precs[i]);
}

static void write_answer(void *ctx)
{
    struct scoord *c = ctx;
    struct broker_req *req = c->req;
    struct kafka_write_share_group_state_request *rq = c->wrq;
    struct kafka_write_share_group_state_response resp;
    kafka_write_share_group_state_response_init(&resp);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp.results = h_alloc(req, (size_t)(nt ? nt : 1), sizeof(*resp.results));
    struct kafka_write_share_group_state_response_partition_result *pr =
        h_alloc(req, c->n ? c->n : 1, sizeof(*pr));
    bool ok = resp.results != NULL && pr != NULL;
    size_t k = 0;
    for (int32_t t = 0; ok && t < nt; t++) {
        struct kafka_write_share_group_state_response_write_state_result *o = &resp.results[t];
        o->topic_id = rq->topics[t].topic_id;
        o->partitions = &pr[k];
        o->partitions_count =
            rq->topics[t].partitions_count > 0 ? rq->topics[t].partitions_count : 0;
        for (int32_t j = 0; j < o->partitions_count; j++, k++) {
            int16_t err = scoord_item_error(c, k);
            pr[k] = (struct kafka_write_share_group_state_response_partition_result){
                rq->topics[t].partitions[j].partition, err, KAFKA_STR_NULL};
        }
    }
    scoord_precs_free(c);
    if (!ok) {
        h_close(req, "arena exhausted");
        return;
    }
    resp.results_count = nt;
    h_respond(req, &resp);
}

/* Item k's answer of a read or summary: its error, and its state when it has one. */
static int16_t scoord_load_result(const struct scoord *c, size_t k, const struct lm_shr_state **st)
{
    const struct share_load *ld = c->load_of[k] >= 0 ? &c->loads[c->load_of[k]] : NULL;
    *st = ld != NULL ? ld->state : NULL;
    return c->errors[k] != KAFKA_NONE ? c->errors[k]
           : ld != NULL               ? coord_error(ld->error)
                                      : KAFKA_UNKNOWN_SERVER_ERROR;
}

static void scoord_loads_free(struct scoord *c)
{
    for (size_t i = 0; i < c->n_loads; i++)
        if (c->loads[i].state != NULL) {
            lm_shr_state_deinit(c->loads[i].state);
            free(c->loads[i].state);
            c->loads[i].state = NULL;
        }
}

static void read_answer(void *ctx)
{
    struct scoord *c = ctx;
    struct broker_req *req = c->req;
    struct kafka_read_share_group_state_request *rq = c->rrq;
    struct kafka_read_share_group_state_response resp;
    kafka_read_share_group_state_response_init(&resp);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp.results = h_alloc(req, (size_t)(nt ? nt : 1), sizeof(*resp.results));
    struct kafka_read_share_group_state_response_partition_result *pr =
        h_alloc(req, c->n ? c->n : 1, sizeof(*pr));
    bool ok = resp.results != NULL && pr != NULL;
    size_t k = 0;
    for (int32_t t = 0; ok && t < nt; t++) {
        struct kafka_read_share_group_state_response_read_state_result *o = &resp.results[t];
        o->topic_id = rq->topics[t].topic_id;
        o->partitions = &pr[k];
        o->partitions_count =
            rq->topics[t].partitions_count > 0 ? rq->topics[t].partitions_count : 0;
        for (int32_t j = 0; ok && j < o->partitions_count; j++, k++) {
            struct kafka_read_share_group_state_response_partition_result *p = &pr[k];
            memset(p, 0, sizeof(*p));
            p->partition = rq->topics[t].partitions[j].partition;
            p->error_message = KAFKA_STR_NULL;
            p->start_offset = -1;
            const struct lm_shr_state *st;
            p->error_code = scoord_load_result(c, k, &st);
            if (p->error_code == KAFKA_NONE && st != NULL)
                p->error_code =
                    lm_shr_fence_read(&st->fence, rq->topics[t].partitions[j].leader_epoch);
            if (p->error_code == KAFKA_NONE && c->precs[k].n > 0)
                p->error_code = coord_error(c->precs[k].error); /* the new leader epoch's */
            if (p->error_code != KAFKA_NONE || st == NULL || !st->present)
                continue;
            p->state_epoch = st->state_epoch;
            p->start_offset = st->start_offset;
            p->state_batches = h_alloc(req, (size_t)(st->n ? st->n : 1), sizeof(*p->state_batches));
            if (p->state_batches == NULL) {
                ok = false;
                break;
            }
            for (int32_t b = 0; b < st->n; b++)
                p->state_batches[b] = (struct kafka_read_share_group_state_response_state_batch){
                    st->batches[b].first, st->batches[b].last, st->batches[b].state,
                    st->batches[b].delivery_count};
            p->state_batches_count = st->n;
        }
    }
    scoord_loads_free(c);
    scoord_precs_free(c);
    if (!ok) {
        h_close(req, "arena exhausted");
        return;
    }
    resp.results_count = nt;
    h_respond(req, &resp);
}

/* The states read: a read with a newer leader epoch than the share partition's records hold
 * writes it first (an update with no batches, Kafka's readStateAndMaybeUpdateLeaderEpoch), so
 * the previous leader's writes are fenced from then on; then the answer. */
static void read_loaded(void *ctx)
{
    struct scoord *c = ctx;
    struct kafka_read_share_group_state_request *rq = c->rrq;
    int64_t now = group_now_ms(hs_of(c->req->shard));
    bool any = false;
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        for (int32_t j = 0; j < rq->topics[t].partitions_count; j++, k++) {
            int32_t epoch = rq->topics[t].partitions[j].leader_epoch;
            const struct lm_shr_state *st;
            if (scoord_load_result(c, k, &st) != KAFKA_NONE || st == NULL || !st->present ||
                epoch == -1 || lm_shr_fence_read(&st->fence, epoch) != KAFKA_NONE ||
                st->fence.leader_epoch == epoch)
                continue;
            const struct share_load *ld = &c->loads[c->load_of[k]];
            struct lm_shr_value v = {.snapshot_epoch = st->snapshot_epoch,
                                     .state_epoch = -1, /* an update: not checked */
                                     .leader_epoch = epoch,
                                     .start_offset = st->start_offset,
                                     .create_ms = now,
                                     .write_ms = now};
            if (share_prec_state(&c->precs[k], ld->state_partition, ld->group, ld->topic_id,
                                 ld->partition, LM_SHR_UPDATE, &v) != 0)
                c->errors[k] = KAFKA_UNKNOWN_SERVER_ERROR;
            else
                any = true;
        }
    if (!any) {
        read_answer(c);
        return;
    }
    if (!persist_begin(c->req, c->precs, c->n, read_answer, c, true)) {
        scoord_precs_free(c);
        scoord_loads_free(c);
        h_close(c->req, "arena exhausted");
    }
}

static struct scoord *scoord_new(struct broker_req *req, size_t n)
{
    struct scoord *c = h_alloc(req, 1, sizeof(*c));
    if (c == NULL)
        return NULL;
    memset(c, 0, sizeof(*c));
    c->req = req;
    c->n = n;
    c->errors = h_alloc(req, n ? n : 1, sizeof(*c->errors));
    c->precs = h_alloc(req, n ? n : 1, sizeof(*c->precs));
    c->loads = h_alloc(req, n ? n : 1, sizeof(*c->loads));
    c->load_of = h_alloc(req, n ? n : 1, sizeof(*c->load_of));
    if (c->errors == NULL || c->precs == NULL || c->loads == NULL || c->load_of == NULL)
        return NULL;
    memset(c->errors, 0, (n ? n : 1) * sizeof(*c->errors));
    memset(c->precs, 0, (n ? n : 1) * sizeof(*c->precs));
    memset(c->loads, 0, (n ? n : 1) * sizeof(*c->loads));
    return c;
}

/* The request-wide error of every partition: CLUSTER_ACTION (KafkaApis checks it for these
 * broker-to-broker APIs), a group id, the state topic. */
static int16_t coord_check(struct broker_req *req, struct kafka_str group, int32_t *n_parts)
{
    if (!h_allowed_cluster(req, AUTHZ_OP_CLUSTER_ACTION))
        return KAFKA_CLUSTER_AUTHORIZATION_FAILED;
    if (group.len <= 0 || group.len > 255)
        return KAFKA_INVALID_REQUEST;
    *n_parts = share_state_partitions(hs_of(req->shard), false);
    return *n_parts > 0 ? KAFKA_NONE : KAFKA_NOT_COORDINATOR;
}

/* A share partition's error before its state is touched: a negative partition is
 * INVALID_REQUEST, one the metadata does not hold UNKNOWN_TOPIC_OR_PARTITION (Kafka's
 * ShareCoordinatorShard checks the metadata image). */
static int16_t part_check(struct broker_req *req, const uint8_t topic_id[16], int32_t partition)
{
    if (partition < 0)
        return KAFKA_INVALID_REQUEST;
    struct hshard *hs = hs_of(req->shard);
    const struct lm_meta_topic *t = lm_meta_state_find_id(&hs->snap->state, topic_id);
    return t != NULL && partition < t->partition_count ? KAFKA_NONE
                                                       : KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
}

static void write_share_group_state(struct broker_req *req)
{
    struct kafka_write_share_group_state_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_write_share_group_state_request_init(rq);
    if (!h_decode(req, rq))
        return;
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    struct scoord *c = scoord_new(req, n);
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    c->wrq = rq;
    int32_t parts = 0;
    int16_t top = coord_check(req, rq->group_id, &parts);
    size_t k = 0;
    int32_t cap = hs_of(req->shard)->node->share_cfg.max_in_flight;
    for (int32_t t = 0; t < rq->topics_count; t++)
        for (int32_t j = 0; j < rq->topics[t].partitions_count; j++, k++) {
            const struct kafka_write_share_group_state_request_partition_data *pd =
                &rq->topics[t].partitions[j];
            c->errors[k] = top;
            if (top != KAFKA_NONE)
                continue;
            int32_t nb = pd->state_batches_count > 0 ? pd->state_batches_count : 0;
            if (pd->partition < 0 || pd->start_offset < 0 || nb > cap) {
                c->errors[k] = KAFKA_INVALID_REQUEST;
                continue;
            }
            c->errors[k] = part_check(req, rq->topics[t].topic_id.b, pd->partition);
            if (c->errors[k] != KAFKA_NONE)
                continue;
            struct lm_shr_batch *b = malloc((size_t)(nb ? nb : 1) * sizeof(*b));
            if (b == NULL) {
                c->errors[k] = KAFKA_UNKNOWN_SERVER_ERROR;
                continue;
            }
            for (int32_t i = 0; i < nb; i++)
                b[i] = (struct lm_shr_batch){
                    pd->state_batches[i].first_offset, pd->state_batches[i].last_offset,
                    pd->state_batches[i].delivery_state, pd->state_batches[i].delivery_count};
            int64_t now = group_now_ms(hs_of(req->shard));
            /* the whole state, as laminar's leaders send it: a snapshot */
            struct lm_shr_value v = {.state_epoch = pd->state_epoch,
                                     .leader_epoch = pd->leader_epoch,
                                     .start_offset = pd->start_offset,
                                     .create_ms = now,
                                     .write_ms = now,
                                     .n_batches = nb,
                                     .batches = b};
            const uint8_t *tid = rq->topics[t].topic_id.b;
            int rc = share_prec_state(
                &c->precs[k], share_state_partition_for(rq->group_id, tid, pd->partition, parts),
                rq->group_id, tid, pd->partition, LM_SHR_SNAPSHOT, &v);
            free(b);
            if (rc != 0)
                c->errors[k] =
                    rc == LM_E_INVALID ? KAFKA_INVALID_REQUEST : KAFKA_UNKNOWN_SERVER_ERROR;
            else
                c->precs[k].next_snapshot = true;
        }
    if (!persist_begin(req, c->precs, n, write_answer, c, true)) {
        scoord_precs_free(c);
        h_close(req, "arena exhausted");
    }
}

/* Item k of a read or a summary: its error, else a read of its state. */
static void scoord_load_item(struct broker_req *req, struct scoord *c, size_t k, int16_t top,
                             int32_t parts, struct kafka_str group, const uint8_t tid[16],
                             int32_t partition)
{
    c->errors[k] = top != KAFKA_NONE ? top : part_check(req, tid, partition);
    c->load_of[k] = -1;
    if (c->errors[k] != KAFKA_NONE)
        return;
    struct share_load *ld = &c->loads[c->n_loads];
    *ld = (struct share_load){.state_partition =
                                  share_state_partition_for(group, tid, partition, parts),
                              .group = group,
                              .partition = partition,
                              .item = k};
    memcpy(ld->topic_id, tid, 16);
    c->load_of[k] = (int32_t)c->n_loads++;
}

static void read_share_group_state(struct broker_req *req)
{
    struct kafka_read_share_group_state_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_read_share_group_state_request_init(rq);
    if (!h_decode(req, rq))
        return;
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    struct scoord *c = scoord_new(req, n);
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    c->rrq = rq;
    int32_t parts = 0;
    int16_t top = coord_check(req, rq->group_id, &parts);
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        for (int32_t j = 0; j < rq->topics[t].partitions_count; j++, k++)
            scoord_load_item(req, c, k, top, parts, rq->group_id, rq->topics[t].topic_id.b,
                             rq->topics[t].partitions[j].partition);
    if (!load_begin(req, c->loads, c->n_loads, read_loaded, c, true))
        h_close(req, "arena exhausted");
}

static void delete_answer(void *ctx)
{
    struct scoord *c = ctx;
    struct broker_req *req = c->req;
    struct kafka_delete_share_group_state_request *rq = c->drq;
    struct kafka_delete_share_group_state_response resp;
    kafka_delete_share_group_state_response_init(&resp);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp.results = h_alloc(req, (size_t)(nt ? nt : 1), sizeof(*resp.results));
    struct kafka_delete_share_group_state_response_partition_result *pr =
        h_alloc(req, c->n ? c->n : 1, sizeof(*pr));
    bool ok = resp.results != NULL && pr != NULL;
    size_t k = 0;
    for (int32_t t = 0; ok && t < nt; t++) {
        struct kafka_delete_share_group_state_response_delete_state_result *o = &resp.results[t];
        o->topic_id = rq->topics[t].topic_id;
        o->partitions = &pr[k];
        o->partitions_count =
            rq->topics[t].partitions_count > 0 ? rq->topics[t].partitions_count : 0;
        for (int32_t j = 0; j < o->partitions_count; j++, k++) {
            int16_t err = scoord_item_error(c, k);
            pr[k] = (struct kafka_delete_share_group_state_response_partition_result){
                rq->topics[t].partitions[j].partition, err, KAFKA_STR_NULL};
        }
    }
    scoord_precs_free(c);
    if (!ok) {
        h_close(req, "arena exhausted");
        return;
    }
    resp.results_count = nt;
    h_respond(req, &resp);
}

static void delete_share_group_state(struct broker_req *req)
{
    struct kafka_delete_share_group_state_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_delete_share_group_state_request_init(rq);
    if (!h_decode(req, rq))
        return;
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    struct scoord *c = scoord_new(req, n);
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    c->drq = rq;
    int32_t parts = 0;
    int16_t top = coord_check(req, rq->group_id, &parts);
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        for (int32_t j = 0; j < rq->topics[t].partitions_count; j++, k++) {
            int32_t partition = rq->topics[t].partitions[j].partition;
            c->errors[k] = top != KAFKA_NONE ? top
                           : partition < 0   ? KAFKA_INVALID_REQUEST
                                             : KAFKA_NONE;
            if (c->errors[k] != KAFKA_NONE)
                continue;
            const uint8_t *tid = rq->topics[t].topic_id.b;
            if (share_prec_tombstones(
                    &c->precs[k], share_state_partition_for(rq->group_id, tid, partition, parts),
                    rq->group_id, tid, partition) != 0)
                c->errors[k] = KAFKA_UNKNOWN_SERVER_ERROR;
        }
    if (!persist_begin(req, c->precs, n, delete_answer, c, true)) {
        scoord_precs_free(c);
        h_close(req, "arena exhausted");
    }
}

static void summary_answer(void *ctx)
{
    struct scoord *c = ctx;
    struct broker_req *req = c->req;
    struct kafka_read_share_group_state_summary_request *rq = c->srq;
    struct kafka_read_share_group_state_summary_response resp;
    kafka_read_share_group_state_summary_response_init(&resp);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp.results = h_alloc(req, (size_t)(nt ? nt : 1), sizeof(*resp.results));
    struct kafka_read_share_group_state_summary_response_partition_result *pr =
        h_alloc(req, c->n ? c->n : 1, sizeof(*pr));
    bool ok = resp.results != NULL && pr != NULL;
    size_t k = 0;
    for (int32_t t = 0; ok && t < nt; t++) {
        struct kafka_read_share_group_state_summary_response_read_state_summary_result *o =
            &resp.results[t];
        o->topic_id = rq->topics[t].topic_id;
        o->partitions = &pr[k];
        o->partitions_count =
            rq->topics[t].partitions_count > 0 ? rq->topics[t].partitions_count : 0;
        for (int32_t j = 0; j < o->partitions_count; j++, k++) {
            struct kafka_read_share_group_state_summary_response_partition_result *p = &pr[k];
            memset(p, 0, sizeof(*p));
            p->partition = rq->topics[t].partitions[j].partition;
            p->error_message = KAFKA_STR_NULL;
            p->start_offset = -1; /* none: Kafka's uninitialized summary, epochs 0 */
            const struct lm_shr_state *st;
            p->error_code = scoord_load_result(c, k, &st);
            if (p->error_code == KAFKA_NONE && st != NULL && st->present) {
                p->state_epoch = st->state_epoch;
                p->leader_epoch = st->leader_epoch;
                p->start_offset = st->start_offset;
            }
        }
    }
    scoord_loads_free(c);
    if (!ok) {
        h_close(req, "arena exhausted");
        return;
    }
    resp.results_count = nt;
    h_respond(req, &resp);
}

static void read_share_group_state_summary(struct broker_req *req)
{
    struct kafka_read_share_group_state_summary_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_read_share_group_state_summary_request_init(rq);
    if (!h_decode(req, rq))
        return;
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    struct scoord *c = scoord_new(req, n);
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    c->srq = rq;
    int32_t parts = 0;
    int16_t top = coord_check(req, rq->group_id, &parts);
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        for (int32_t j = 0; j < rq->topics[t].partitions_count; j++, k++)
            scoord_load_item(req, c, k, top, parts, rq->group_id, rq->topics[t].topic_id.b,
                             rq->topics[t].partitions[j].partition);
    if (!load_begin(req, c->loads, c->n_loads, summary_answer, c, true))
        h_close(req, "arena exhausted");
}

static void initialize_answer(void *ctx)
{
    struct scoord *c = ctx;
    struct broker_req *req = c->req;
    struct kafka_initialize_share_group_state_request *rq = c->irq;
    struct kafka_initialize_share_group_state_response resp;
    kafka_initialize_share_group_state_response_init(&resp);
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp.results = h_alloc(req, (size_t)(nt ? nt : 1), sizeof(*resp.results));
    struct kafka_initialize_share_group_state_response_partition_result *pr =
        h_alloc(req, c->n ? c->n : 1, sizeof(*pr));
    bool ok = resp.results != NULL && pr != NULL;
    size_t k = 0;
    for (int32_t t = 0; ok && t < nt; t++) {
        struct kafka_initialize_share_group_state_response_initialize_state_result *o =
            &resp.results[t];
        o->topic_id = rq->topics[t].topic_id;
        o->partitions = &pr[k];
        o->partitions_count =
            rq->topics[t].partitions_count > 0 ? rq->topics[t].partitions_count : 0;
        for (int32_t j = 0; j < o->partitions_count; j++, k++) {
            int16_t err = scoord_item_error(c, k);
            pr[k] = (struct kafka_initialize_share_group_state_response_partition_result){
                rq->topics[t].partitions[j].partition, err, KAFKA_STR_NULL};
        }
    }
    scoord_precs_free(c);
    if (!ok) {
        h_close(req, "arena exhausted");
        return;
    }
    resp.results_count = nt;
    h_respond(req, &resp);
}

static void initialize_share_group_state(struct broker_req *req)
{
    struct kafka_initialize_share_group_state_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_initialize_share_group_state_request_init(rq);
    if (!h_decode(req, rq))
        return;
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    struct scoord *c = scoord_new(req, n);
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    c->irq = rq;
    int32_t parts = 0;
    int16_t top = coord_check(req, rq->group_id, &parts);
    int64_t now = group_now_ms(hs_of(req->shard));
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        for (int32_t j = 0; j < rq->topics[t].partitions_count; j++, k++) {
            const struct kafka_initialize_share_group_state_request_partition_data *pd =
                &rq->topics[t].partitions[j];
            const uint8_t *tid = rq->topics[t].topic_id.b;
            c->errors[k] = top != KAFKA_NONE ? top : part_check(req, tid, pd->partition);
            if (c->errors[k] == KAFKA_NONE && pd->start_offset < -1)
                c->errors[k] = KAFKA_INVALID_REQUEST;
            if (c->errors[k] != KAFKA_NONE)
                continue;
            if (share_prec_initialize(
                    &c->precs[k],
                    share_state_partition_for(rq->group_id, tid, pd->partition, parts),
                    rq->group_id, tid, pd->partition, pd->state_epoch, pd->start_offset, now) != 0)
                c->errors[k] = KAFKA_UNKNOWN_SERVER_ERROR;
        }
    if (!persist_begin(req, c->precs, n, initialize_answer, c, true)) {
        scoord_precs_free(c);
        h_close(req, "arena exhausted");
    }
}

int share_state_register(struct broker_dispatch *d)
{
    int rc;
    if ((rc = handlers_serve(d, KAFKA_DELETE_SHARE_GROUP_STATE_KEY, 0, 0,
                             delete_share_group_state)) != 0)
        return rc;
    if ((rc = handlers_serve(d, KAFKA_READ_SHARE_GROUP_STATE_KEY, 0, 0, read_share_group_state)) !=
        0)
        return rc;
    if ((rc = handlers_serve(d, KAFKA_INITIALIZE_SHARE_GROUP_STATE_KEY, 0, 0,
                             initialize_share_group_state)) != 0)
        return rc;
    if ((rc = handlers_serve(d, KAFKA_READ_SHARE_GROUP_STATE_SUMMARY_KEY, 0, 0,
                             read_share_group_state_summary)) != 0)
        return rc;
    return handlers_serve(d, KAFKA_WRITE_SHARE_GROUP_STATE_KEY, 0, 0, write_share_group_state);
}
