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
#include "protocol/kafka_errors.h"
#include "protocol/records.h"

enum {
    SHARE_STATE_PARTITIONS_MAX = 1000, /* as LM_GROUP_PARTITIONS_MAX bounds __consumer_offsets */
    SHARE_LOAD_BATCH_BYTES_MAX = 8 << 20,
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

/* Submits the topic's creation to the controller (a cluster). */
static void create_in_cluster(struct hshard *hs)
{
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
    pr->n = 1;
    pr->r[0].key = pr->mem;
    pr->r[0].key_len = (int32_t)key_len;
    pr->r[0].value = pr->mem + key_len;
    pr->r[0].value_len = (int32_t)(w.pos - key_len);
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

/* ---- appends ---- */

struct spersist {
    struct share_prec *recs;
    struct hwork *items;
    struct hsync_wait *waits;
    size_t n;
    struct hfan fan;
    void (*done)(void *ctx);
    void *ctx;
};

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
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER; /* another node's (step 4 of issue 18) */
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
    sp->done(sp->ctx);
}

bool share_persist_start(struct broker_req *req, struct share_prec *recs, size_t n,
                         void (*done)(void *ctx), void *ctx)
{
    struct hshard *hs = hs_of(req->shard);
    struct spersist *sp = h_alloc(req, 1, sizeof(*sp));
    if (sp == NULL)
        return false;
    memset(sp, 0, sizeof(*sp));
    sp->items = h_alloc(req, n ? n : 1, sizeof(*sp->items));
    sp->waits = h_alloc(req, n ? n : 1, sizeof(*sp->waits));
    if (sp->items == NULL || sp->waits == NULL)
        return false;
    sp->recs = recs;
    sp->n = n;
    sp->done = done;
    sp->ctx = ctx;
    for (size_t i = 0; i < n; i++) {
        struct hwork *w = &sp->items[i];
        memset(w, 0, sizeof(*w));
        w->topic = SHARE_STATE_TOPIC;
        w->topic_len = SHARE_STATE_TOPIC_LEN;
        w->partition = recs[i].state_partition;
        recs[i].error = KAFKA_NONE;
        w->owner = recs[i].n > 0 ? hs_owner(hs, SHARE_STATE_TOPIC, SHARE_STATE_TOPIC_LEN,
                                            recs[i].state_partition)
                                 : HWORK_DONE;
    }
    if (!hfan_init(&sp->fan, req, sp->items, n, persist_op, persist_finished, sp))
        return false;
    hfan_start(&sp->fan);
    return true;
}

/* ---- reads ---- */

struct sload {
    struct share_load *loads;
    struct hwork *items;
    size_t n;
    struct hfan fan;
    void (*done)(void *ctx);
    void *ctx;
};

struct load_scan {
    const struct share_load *want;
    struct lm_shr_state *state;
    struct lm_shr_batch *batches;
    int32_t cap;
    int64_t n_bad;
};

static void load_record(struct load_scan *l, const struct kafka_record *rec)
{
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
    if (h->attributes & KAFKA_BATCH_ATTR_CONTROL)
        return 0;
    struct kafka_batch_reader r;
    if (kafka_batch_reader_open(&r, batch, len, SHARE_LOAD_BATCH_BYTES_MAX) != 0) {
        l->n_bad++;
        return 0;
    }
    struct kafka_record_iter it;
    kafka_batch_reader_iter(&r, &it);
    struct kafka_record rec;
    int rc;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1)
        load_record(l, &rec);
    kafka_batch_reader_close(&r);
    if (rc < 0)
        l->n_bad++;
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
    sl->done(sl->ctx);
}

bool share_load_start(struct broker_req *req, struct share_load *loads, size_t n,
                      void (*done)(void *ctx), void *ctx)
{
    struct hshard *hs = hs_of(req->shard);
    struct sload *sl = h_alloc(req, 1, sizeof(*sl));
    if (sl == NULL)
        return false;
    memset(sl, 0, sizeof(*sl));
    sl->items = h_alloc(req, n ? n : 1, sizeof(*sl->items));
    if (sl->items == NULL)
        return false;
    sl->loads = loads;
    sl->n = n;
    sl->done = done;
    sl->ctx = ctx;
    for (size_t i = 0; i < n; i++) {
        struct hwork *w = &sl->items[i];
        memset(w, 0, sizeof(*w));
        w->topic = SHARE_STATE_TOPIC;
        w->topic_len = SHARE_STATE_TOPIC_LEN;
        w->partition = loads[i].state_partition;
        loads[i].state = NULL;
        loads[i].error = KAFKA_NONE;
        w->owner = hs_owner(hs, SHARE_STATE_TOPIC, SHARE_STATE_TOPIC_LEN, loads[i].state_partition);
    }
    if (!hfan_init(&sl->fan, req, sl->items, n, load_op, load_finished, sl))
        return false;
    hfan_start(&sl->fan);
    return true;
}
