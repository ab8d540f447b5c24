/* Transaction coordinator state machine: __transaction_state record formats (golden bytes from
 * Kafka's TransactionLogKey/Value schemas, round trips), directed scenarios of every request's
 * error cases, and a seeded property test: random requests, write failures, marker answers,
 * clock jumps and fail-overs (unload, reload from the log) against invariants.
 * The property test prints its seed on failure; LM_TXN_SEED=n replays one seed,
 * LM_TXN_SEEDS=n sets how many seeds run (default 300). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/group_records.h"
#include "broker/txn/txn_coord.h"
#include "broker/txn/txn_records.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static struct kafka_str S(const char *s) {
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

static uint64_t g_seed; /* the property test's seed, printed with a failed check */

#define PCHECK(cond, ...)                                                                          \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "txn property failed (seed %llu): ", (unsigned long long)g_seed);      \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fprintf(stderr, "\n  replay: LM_TXN_SEED=%llu\n", (unsigned long long)g_seed);         \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

/* ---- fixture: a fake shell with a __transaction_state log ---- */

struct logrec {
    int32_t part;
    uint8_t *key;
    int32_t klen;
    uint8_t *val; /* NULL: tombstone */
    int32_t vlen;
};

struct fx_marker {
    uint64_t id;
    char tid[64];
    int64_t pid;
    int16_t epoch;
    bool commit;
    char topic[64];
    int32_t partition;
};

struct fx_resp {
    uint64_t token;
    uint8_t kind;
    int16_t err;
    int64_t pid;
    int16_t epoch;
    int32_t n_parts;
    int16_t part_err[8];
};

#define FX_MAX 4096

struct fx {
    struct lm_txn_coord *c;
    struct lm_txn_config cfg;
    int64_t now;
    int64_t next_pid;
    struct logrec *log;
    size_t n_log, cap_log;
    struct logrec pend[FX_MAX]; /* handed-out writes not completed yet */
    uint64_t pend_id[FX_MAX];
    size_t n_pend;
    struct fx_marker mk[FX_MAX];
    size_t n_mk;
    struct fx_resp rs[FX_MAX];
    size_t n_rs;
    size_t n_markers_total;
    struct {
        char tid[64];
        char topic[64];
        int32_t partition;
        uint64_t id;
    } latest[512]; /* the latest marker sent per (id, topic, partition) */
    size_t n_latest;
};

/* latest_slot returns the latest-marker slot of (tid, topic, partition), made if new. */
static uint64_t *latest_slot(struct fx *f, const struct fx_marker *m)
{
    for (size_t i = 0; i < f->n_latest; i++)
        if (strcmp(f->latest[i].tid, m->tid) == 0 && strcmp(f->latest[i].topic, m->topic) == 0 &&
            f->latest[i].partition == m->partition)
            return &f->latest[i].id;
    assert_true(f->n_latest < LM_ARRAY_LEN(f->latest));
    size_t i = f->n_latest++;
    strcpy(f->latest[i].tid, m->tid);
    strcpy(f->latest[i].topic, m->topic);
    f->latest[i].partition = m->partition;
    f->latest[i].id = 0;
    return &f->latest[i].id;
}

static int fx_alloc_pid(void *ctx, int64_t *pid)
{
    struct fx *f = ctx;
    *pid = f->next_pid++;
    return 0;
}

static uint8_t *dup_bytes(const uint8_t *p, int32_t n)
{
    uint8_t *d = malloc(n > 0 ? (size_t)n : 1);
    assert_non_null(d);
    if (n > 0)
        memcpy(d, p, (size_t)n);
    return d;
}

static void copy_str(char *dst, size_t cap, struct kafka_str s)
{
    assert_true(s.len >= 0 && (size_t)s.len < cap);
    memcpy(dst, s.ptr, (size_t)s.len);
    dst[s.len] = 0;
}

/* pump moves everything of the coordinator's ready into the fixture. */
static void pump(struct fx *f)
{
    struct lm_txn_ready r;
    lm_txn_coord_ready(f->c, &r);
    for (size_t i = 0; i < r.n_writes; i++) {
        assert_true(f->n_pend < FX_MAX);
        const struct lm_txn_write *w = &r.writes[i];
        struct logrec *l = &f->pend[f->n_pend];
        l->part = w->partition;
        l->key = dup_bytes(w->key.ptr, w->key.len);
        l->klen = w->key.len;
        l->val = w->value.len >= 0 ? dup_bytes(w->value.ptr, w->value.len) : NULL;
        l->vlen = w->value.len;
        f->pend_id[f->n_pend++] = w->write_id;
    }
    for (size_t i = 0; i < r.n_markers; i++) {
        assert_true(f->n_mk < FX_MAX);
        struct fx_marker *m = &f->mk[f->n_mk++];
        copy_str(m->tid, sizeof(m->tid), r.markers[i].transactional_id);
        copy_str(m->topic, sizeof(m->topic), r.markers[i].topic);
        m->id = r.markers[i].marker_id;
        m->pid = r.markers[i].producer_id;
        m->epoch = r.markers[i].producer_epoch;
        m->commit = r.markers[i].commit;
        m->partition = r.markers[i].partition;
        f->n_markers_total++;
        *latest_slot(f, m) = m->id;
        /* a marker is sent for a prepared transaction, with its epoch and outcome */
        struct lm_txn_info in;
        PCHECK(lm_txn_coord_describe(f->c, S(m->tid), &in) &&
                   (in.state == LM_TXN_PREPARE_COMMIT || in.state == LM_TXN_PREPARE_ABORT) &&
                   in.producer_id == m->pid && in.producer_epoch == m->epoch &&
                   m->commit == (in.state == LM_TXN_PREPARE_COMMIT),
               "marker of %s %lld/%d commit %d sent outside its prepared transaction", m->tid,
               (long long)m->pid, m->epoch, m->commit);
    }
    for (size_t i = 0; i < r.n_resps; i++) {
        assert_true(f->n_rs < FX_MAX);
        struct fx_resp *x = &f->rs[f->n_rs++];
        memset(x, 0, sizeof(*x));
        x->token = r.resps[i].token;
        x->kind = r.resps[i].kind;
        x->err = r.resps[i].error_code;
        x->pid = r.resps[i].producer_id;
        x->epoch = r.resps[i].producer_epoch;
        x->n_parts = r.resps[i].n_parts;
        for (int32_t k = 0; k < r.resps[i].n_parts && k < 8; k++)
            x->part_err[k] = r.resps[i].parts[k].error_code;
    }
    lm_txn_coord_advance(f->c);
}

static void logrec_free(struct logrec *l)
{
    free(l->key);
    free(l->val);
}

/* complete_write finishes the i-th pending write: appended to the log when ok. */
static void complete_write(struct fx *f, size_t i, int16_t err)
{
    assert_true(i < f->n_pend);
    struct logrec l = f->pend[i];
    uint64_t id = f->pend_id[i];
    memmove(&f->pend[i], &f->pend[i + 1], (f->n_pend - i - 1) * sizeof(f->pend[0]));
    memmove(&f->pend_id[i], &f->pend_id[i + 1], (f->n_pend - i - 1) * sizeof(f->pend_id[0]));
    f->n_pend--;
    if (err == 0) {
        if (f->n_log == f->cap_log) {
            f->cap_log = f->cap_log ? f->cap_log * 2 : 64;
            f->log = realloc(f->log, f->cap_log * sizeof(*f->log));
            assert_non_null(f->log);
        }
        f->log[f->n_log++] = l;
    } else {
        logrec_free(&l);
    }
    assert_int_equal(lm_txn_coord_write_done(f->c, f->now, id, err), 0);
    pump(f);
}

static void settle_writes(struct fx *f)
{
    for (int guard = 0; f->n_pend > 0; guard++) {
        assert_true(guard < 10000);
        complete_write(f, 0, 0);
    }
}

/* answer_marker answers the i-th marker in flight. */
static void answer_marker(struct fx *f, size_t i, enum lm_txn_marker_outcome o)
{
    struct fx_marker m = f->mk[i];
    memmove(&f->mk[i], &f->mk[i + 1], (f->n_mk - i - 1) * sizeof(f->mk[0]));
    f->n_mk--;
    assert_int_equal(
        lm_txn_coord_marker_done(f->c, f->now, m.id, S(m.tid), S(m.topic), m.partition, o), 0);
    pump(f);
}

/* settle writes everything and acknowledges every marker until nothing moves. */
static void settle(struct fx *f)
{
    for (int guard = 0; f->n_pend > 0 || f->n_mk > 0; guard++) {
        assert_true(guard < 100000);
        settle_writes(f);
        if (f->n_mk > 0)
            answer_marker(f, 0, LM_TXN_MARKER_ACKED);
    }
}

static void fx_init(struct fx *f, int32_t parts)
{
    memset(f, 0, sizeof(*f));
    lm_txn_config_default(&f->cfg);
    f->cfg.state_partitions = parts;
    f->cfg.alloc_pid = fx_alloc_pid;
    f->cfg.alloc_ctx = f;
    f->cfg.abort_check_interval_ms = 1000;
    f->cfg.expiration_check_interval_ms = 5000;
    f->cfg.id_expiration_ms = 60000;
    f->cfg.max_timeout_ms = 60000;
    f->now = 1000000;
    f->next_pid = 1000;
    assert_int_equal(lm_txn_coord_new(&f->cfg, &f->c), 0);
    for (int32_t p = 0; p < parts; p++) {
        assert_int_equal(lm_txn_coord_load_begin(f->c, p, 7), 0);
        assert_int_equal(lm_txn_coord_load_end(f->c, f->now, p), 0);
    }
}

static void fx_deinit(struct fx *f)
{
    lm_txn_coord_free(f->c);
    for (size_t i = 0; i < f->n_log; i++)
        logrec_free(&f->log[i]);
    for (size_t i = 0; i < f->n_pend; i++)
        logrec_free(&f->pend[i]);
    free(f->log);
}

/* reload unloads a partition (fail-over) and loads it back from the log. */
static void reload(struct fx *f, int32_t p, int32_t epoch)
{
    assert_int_equal(lm_txn_coord_unload(f->c, p), 0);
    pump(f);
    /* writes of the unloaded partition never complete: the new leader has only the log */
    for (size_t i = f->n_pend; i > 0; i--) {
        if (f->pend[i - 1].part != p)
            continue;
        logrec_free(&f->pend[i - 1]);
        memmove(&f->pend[i - 1], &f->pend[i], (f->n_pend - i) * sizeof(f->pend[0]));
        memmove(&f->pend_id[i - 1], &f->pend_id[i], (f->n_pend - i) * sizeof(f->pend_id[0]));
        f->n_pend--;
    }
    assert_int_equal(lm_txn_coord_load_begin(f->c, p, epoch), 0);
    for (size_t i = 0; i < f->n_log; i++) {
        if (f->log[i].part != p)
            continue;
        struct kafka_bytes k = {f->log[i].key, f->log[i].klen};
        struct kafka_bytes v = {f->log[i].val, f->log[i].vlen};
        assert_int_equal(lm_txn_coord_load_record(f->c, p, k, v), 0);
    }
    assert_int_equal(lm_txn_coord_load_end(f->c, f->now, p), 0);
    pump(f);
}

static const struct fx_resp *last_resp(struct fx *f, uint64_t token)
{
    for (size_t i = f->n_rs; i > 0; i--)
        if (f->rs[i - 1].token == token)
            return &f->rs[i - 1];
    return NULL;
}

static uint64_t g_token = 1;

static const struct fx_resp *init_pid(struct fx *f, const char *tid, int32_t timeout, int64_t pid,
                                      int16_t epoch)
{
    uint64_t t = g_token++;
    struct lm_txn_init_req r = {S(tid), timeout, pid, epoch};
    assert_int_equal(lm_txn_init_pid(f->c, f->now, t, &r), 0);
    pump(f);
    settle_writes(f);
    return last_resp(f, t);
}

static const struct fx_resp *add(struct fx *f, const char *tid, int64_t pid, int16_t epoch,
                                 const char *topic, int32_t part, bool verify)
{
    uint64_t t = g_token++;
    struct lm_txn_topic_partition tp = {S(topic), part};
    struct lm_txn_add_req r = {S(tid), pid, epoch, 1, &tp, verify, false};
    assert_int_equal(lm_txn_add_partitions(f->c, f->now, t, &r), 0);
    pump(f);
    settle_writes(f);
    return last_resp(f, t);
}

/* add2 is the implicit add of a transaction version 2 client (a Produce v12+ reaching the
 * partition leader, which asks the coordinator to add the partition). */
static const struct fx_resp *add2(struct fx *f, const char *tid, int64_t pid, int16_t epoch,
                                  const char *topic, int32_t part)
{
    uint64_t t = g_token++;
    struct lm_txn_topic_partition tp = {S(topic), part};
    struct lm_txn_add_req r = {S(tid), pid, epoch, 1, &tp, false, true};
    assert_int_equal(lm_txn_add_partitions(f->c, f->now, t, &r), 0);
    pump(f);
    settle_writes(f);
    return last_resp(f, t);
}

static const struct fx_resp *end(struct fx *f, const char *tid, int64_t pid, int16_t epoch,
                                 bool commit)
{
    uint64_t t = g_token++;
    struct lm_txn_end_req r = {S(tid), pid, epoch, commit, false};
    assert_int_equal(lm_txn_end(f->c, f->now, t, &r), 0);
    pump(f);
    settle_writes(f);
    return last_resp(f, t);
}

/* end2 is EndTxn v5 (transaction version 2). */
static const struct fx_resp *end2(struct fx *f, const char *tid, int64_t pid, int16_t epoch,
                                  bool commit)
{
    uint64_t t = g_token++;
    struct lm_txn_end_req r = {S(tid), pid, epoch, commit, true};
    assert_int_equal(lm_txn_end(f->c, f->now, t, &r), 0);
    pump(f);
    settle_writes(f);
    return last_resp(f, t);
}

static enum lm_txn_state state_of(struct fx *f, const char *tid)
{
    struct lm_txn_info in;
    assert_true(lm_txn_coord_describe(f->c, S(tid), &in));
    return in.state;
}

/* ---- records ---- */

static void test_records_golden(void **st)
{
    (void)st;
    uint8_t buf[256];
    size_t n;
    assert_int_equal(lm_tr_key_encode(S("tx"), buf, sizeof(buf), &n), 0);
    const uint8_t key[] = {0, 0, 0, 2, 't', 'x'};
    assert_int_equal(n, sizeof(key));
    assert_memory_equal(buf, key, sizeof(key));

    struct lm_txn_topic_partition parts[] = {{S("a"), 0}, {S("a"), 2}, {S("b"), 1}};
    struct lm_tr_value v = {.producer_id = 5,
                            .producer_epoch = 3,
                            .timeout_ms = 60000,
                            .status = LM_TXN_ONGOING,
                            .n_partitions = 3,
                            .partitions = parts,
                            .update_ts_ms = 9,
                            .start_ts_ms = 8};
    assert_int_equal(lm_tr_value_encode(&v, buf, sizeof(buf), &n), 0);
    const uint8_t val[] = {0, 0,                                              /* version 0 */
                           0, 0, 0,    0,    0, 0, 0, 5,                      /* producer id */
                           0, 3,                                              /* epoch */
                           0, 0, 0xea, 0x60,                                  /* timeout */
                           1,                                                 /* Ongoing */
                           0, 0, 0,    2,                                     /* 2 topics */
                           0, 1, 'a',  0,    0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2, /* a: 0, 2 */
                           0, 1, 'b',  0,    0, 0, 1, 0, 0, 0, 1,             /* b: 1 */
                           0, 0, 0,    0,    0, 0, 0, 9,                      /* update ts */
                           0, 0, 0,    0,    0, 0, 0, 8};                     /* start ts */
    assert_int_equal(n, sizeof(val));
    assert_memory_equal(buf, val, sizeof(val));

    struct kafka_arena a;
    kafka_arena_init(&a, 1 << 16);
    struct lm_tr_value d;
    assert_int_equal(lm_tr_value_decode((struct kafka_bytes){buf, (int32_t)n}, &a, &d), 0);
    assert_int_equal(d.producer_id, 5);
    assert_int_equal(d.producer_epoch, 3);
    assert_int_equal(d.status, LM_TXN_ONGOING);
    assert_int_equal(d.n_partitions, 3);
    assert_int_equal(d.partitions[1].partition, 2);
    assert_int_equal(d.partitions[2].topic.len, 1);
    assert_int_equal(d.start_ts_ms, 8);

    /* Empty: a null partition array */
    v.status = LM_TXN_EMPTY;
    v.n_partitions = 0;
    assert_int_equal(lm_tr_value_encode(&v, buf, sizeof(buf), &n), 0);
    assert_int_equal(buf[17], 0xff);
    assert_int_equal(lm_tr_value_decode((struct kafka_bytes){buf, (int32_t)n}, &a, &d), 0);
    assert_int_equal(d.n_partitions, 0);

    /* v1 (flexible) with a previous producer id tag */
    const uint8_t v1[] = {
        0, 1,   0, 0, 0, 0, 0, 0, 0, 5, 0, 3, 0, 0, 0xea, 0x60, 2, 2, /* 1 topic */
        2, 'a', 2, 0, 0, 0, 4, 0,                                     /* a: 4, no tags */
        0, 0,   0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0,    8,    1, 0,
        8, 0,   0, 0, 0, 0, 0, 0, 4}; /* tag 0: previous id 4 */
    assert_int_equal(lm_tr_value_decode((struct kafka_bytes){v1, sizeof(v1)}, &a, &d), 0);
    assert_int_equal(d.status, LM_TXN_PREPARE_COMMIT);
    assert_int_equal(d.n_partitions, 1);
    assert_int_equal(d.partitions[0].partition, 4);
    assert_int_equal(d.previous_producer_id, 4);

    /* bad input */
    assert_int_equal(lm_tr_value_decode((struct kafka_bytes){v1, 10}, &a, &d), LM_E_CORRUPT);
    uint8_t bad[sizeof(val)];
    memcpy(bad, val, sizeof(val));
    bad[16] = 9; /* status */
    assert_int_equal(lm_tr_value_decode((struct kafka_bytes){bad, sizeof(bad)}, &a, &d),
                     LM_E_CORRUPT);
    struct kafka_str tid;
    const uint8_t badkey[] = {0, 1, 0, 1, 'x'};
    assert_int_equal(lm_tr_key_decode((struct kafka_bytes){badkey, 5}, &tid), LM_E_CORRUPT);
    kafka_arena_deinit(&a);
}

/* ---- directed scenarios ---- */

/* A verify while another add is being written answers from what is written (Kafka's
 * handleVerifyPartitionsInTransaction), not CONCURRENT_TRANSACTIONS. */
static void test_verify_during_add(void **state)
{
    (void)state;
    struct fx f;
    fx_init(&f, 3);
    const struct fx_resp *r = init_pid(&f, "t9", 30000, -1, -1);
    assert_int_equal(r->err, 0);
    int64_t pid = r->pid;
    assert_int_equal(add(&f, "t9", pid, 0, "x", 1, false)->err, 0);
    uint64_t ta = g_token++, tv = g_token++, tz = g_token++;
    struct lm_txn_topic_partition z = {S("z"), 0}, x = {S("x"), 1};
    struct lm_txn_add_req ra = {S("t9"), pid, 0, 1, &z, false, false};
    assert_int_equal(lm_txn_add_partitions(f.c, f.now, ta, &ra), 0);
    pump(&f); /* written, not committed yet */
    struct lm_txn_add_req rv = {S("t9"), pid, 0, 1, &x, true, false};
    assert_int_equal(lm_txn_add_partitions(f.c, f.now, tv, &rv), 0);
    struct lm_txn_add_req rz = {S("t9"), pid, 0, 1, &z, true, false};
    assert_int_equal(lm_txn_add_partitions(f.c, f.now, tz, &rz), 0);
    pump(&f);
    const struct fx_resp *v = last_resp(&f, tv);
    assert_int_equal(v->err, 0);
    assert_int_equal(v->part_err[0], 0);
    v = last_resp(&f, tz); /* its add is not written yet */
    assert_int_equal(v->err, 0);
    assert_int_equal(v->part_err[0], KAFKA_INVALID_TXN_STATE);
    settle_writes(&f);
    assert_int_equal(last_resp(&f, ta)->err, 0);
    assert_int_equal(add(&f, "t9", pid, 0, "z", 0, true)->part_err[0], 0);
    fx_deinit(&f);
}

static void test_commit_and_abort(void **st)
{
    (void)st;
    struct fx f;
    fx_init(&f, 3);
    const struct fx_resp *r = init_pid(&f, "t1", 30000, -1, -1);
    assert_int_equal(r->err, 0);
    int64_t pid = r->pid;
    assert_int_equal(r->epoch, 0);
    /* EndTxn with nothing open */
    assert_int_equal(end(&f, "t1", pid, 0, true)->err, KAFKA_INVALID_TXN_STATE);
    assert_int_equal(add(&f, "t1", pid, 0, "x", 0, false)->err, 0);
    assert_int_equal(add(&f, "t1", pid, 0, "x", 1, false)->err, 0);
    assert_int_equal(state_of(&f, "t1"), LM_TXN_ONGOING);
    /* verify-only: added partitions pass, others do not */
    assert_int_equal(add(&f, "t1", pid, 0, "x", 1, true)->part_err[0], 0);
    assert_int_equal(add(&f, "t1", pid, 0, "y", 1, true)->part_err[0], KAFKA_INVALID_TXN_STATE);
    assert_int_equal(add(&f, "t1", pid + 1, 0, "x", 1, false)->err,
                     KAFKA_INVALID_PRODUCER_ID_MAPPING);
    assert_int_equal(add(&f, "t1", pid, 1, "x", 1, false)->err, KAFKA_PRODUCER_FENCED);
    assert_int_equal(end(&f, "t1", pid, 0, true)->err, 0);
    assert_int_equal(state_of(&f, "t1"), LM_TXN_PREPARE_COMMIT);
    assert_int_equal(f.n_mk, 2);
    assert_true(f.mk[0].commit && f.mk[0].epoch == 0);
    /* a retry while markers are out, and an abort of a committing transaction */
    assert_int_equal(end(&f, "t1", pid, 0, true)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    assert_int_equal(end(&f, "t1", pid, 0, false)->err, KAFKA_INVALID_TXN_STATE);
    assert_int_equal(add(&f, "t1", pid, 0, "x", 2, false)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    /* a retried marker is sent again after the retry interval */
    answer_marker(&f, 0, LM_TXN_MARKER_RETRY);
    assert_int_equal(f.n_mk, 1);
    f.now += LM_TXN_MARKER_RETRY_MS;
    assert_int_equal(lm_txn_coord_tick(f.c, f.now), 0);
    pump(&f);
    assert_int_equal(f.n_mk, 2);
    answer_marker(&f, 0, LM_TXN_MARKER_ACKED);
    assert_int_equal(state_of(&f, "t1"), LM_TXN_PREPARE_COMMIT);
    answer_marker(&f, 0, LM_TXN_MARKER_DROPPED);
    settle_writes(&f);
    assert_int_equal(state_of(&f, "t1"), LM_TXN_COMPLETE_COMMIT);
    assert_int_equal(end(&f, "t1", pid, 0, true)->err, 0); /* retry of a finished commit */
    assert_int_equal(end(&f, "t1", pid, 0, false)->err, KAFKA_INVALID_TXN_STATE);

    assert_int_equal(add(&f, "t1", pid, 0, "x", 0, false)->err, 0);
    assert_int_equal(end(&f, "t1", pid, 0, false)->err, 0);
    assert_int_equal(f.n_mk, 1);
    assert_false(f.mk[0].commit);
    settle(&f);
    assert_int_equal(state_of(&f, "t1"), LM_TXN_COMPLETE_ABORT);
    fx_deinit(&f);
}

static void test_init_errors_and_fencing(void **st)
{
    (void)st;
    struct fx f;
    fx_init(&f, 3);
    assert_int_equal(init_pid(&f, "", 1000, -1, -1)->err, KAFKA_INVALID_REQUEST);
    assert_int_equal(init_pid(&f, "t", 0, -1, -1)->err, KAFKA_INVALID_TRANSACTION_TIMEOUT);
    assert_int_equal(init_pid(&f, "t", 60001, -1, -1)->err, KAFKA_INVALID_TRANSACTION_TIMEOUT);
    assert_int_equal(init_pid(&f, "t", 1000, 5, -1)->err, KAFKA_INVALID_REQUEST);
    const struct fx_resp *r = init_pid(&f, "t", 30000, -1, -1);
    int64_t pid = r->pid;
    assert_int_equal(add(&f, "t", pid, 0, "x", 0, false)->err, 0);
    /* a second producer with the same id: the open transaction is aborted with a bumped epoch */
    assert_int_equal(init_pid(&f, "t", 30000, -1, -1)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    assert_int_equal(state_of(&f, "t"), LM_TXN_PREPARE_ABORT);
    assert_int_equal(f.mk[0].epoch, 1);
    assert_false(f.mk[0].commit);
    assert_int_equal(init_pid(&f, "t", 30000, -1, -1)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    settle(&f);
    r = init_pid(&f, "t", 30000, -1, -1);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, pid);
    assert_int_equal(r->epoch, 2);
    /* the zombie (epoch 0) is fenced everywhere */
    assert_int_equal(add(&f, "t", pid, 0, "x", 0, false)->err, KAFKA_PRODUCER_FENCED);
    assert_int_equal(end(&f, "t", pid, 0, false)->err, KAFKA_PRODUCER_FENCED);
    /* KIP-360: a bump by the current producer, then its retry gets the same epoch */
    r = init_pid(&f, "t", 30000, pid, 2);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->epoch, 3);
    r = init_pid(&f, "t", 30000, pid, 2);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->epoch, 3);
    assert_int_equal(init_pid(&f, "t", 30000, pid, 1)->err, KAFKA_PRODUCER_FENCED);
    assert_int_equal(init_pid(&f, "t", 30000, pid + 77, 3)->err, KAFKA_PRODUCER_FENCED);
    /* a write that fails answers its error and changes nothing */
    uint64_t t = g_token++;
    struct lm_txn_topic_partition tp = {S("x"), 3};
    struct lm_txn_add_req ar = {S("t"), pid, 3, 1, &tp, false, false};
    assert_int_equal(lm_txn_add_partitions(f.c, f.now, t, &ar), 0);
    pump(&f);
    assert_null(last_resp(&f, t));
    complete_write(&f, 0, KAFKA_NOT_COORDINATOR);
    assert_int_equal(last_resp(&f, t)->err, KAFKA_NOT_COORDINATOR);
    assert_int_equal(state_of(&f, "t"), LM_TXN_EMPTY);
    fx_deinit(&f);
}

static void test_epoch_exhaustion_rotates_producer_id(void **st)
{
    (void)st;
    struct fx f;
    fx_init(&f, 1);
    /* a log holding an id at epoch 32766 (Short.MaxValue - 1) */
    uint8_t k[64], v[128];
    size_t kl, vl;
    assert_int_equal(lm_tr_key_encode(S("old"), k, sizeof(k), &kl), 0);
    struct lm_tr_value val = {.producer_id = 42,
                              .producer_epoch = 32766,
                              .timeout_ms = 1000,
                              .status = LM_TXN_COMPLETE_COMMIT,
                              .update_ts_ms = f.now,
                              .start_ts_ms = -1};
    assert_int_equal(lm_tr_value_encode(&val, v, sizeof(v), &vl), 0);
    assert_int_equal(lm_txn_coord_load_begin(f.c, 0, 8), 0);
    assert_int_equal(lm_txn_coord_load_record(f.c, 0, (struct kafka_bytes){k, (int32_t)kl},
                                              (struct kafka_bytes){v, (int32_t)vl}),
                     0);
    assert_int_equal(init_pid(&f, "old", 1000, -1, -1)->err, KAFKA_COORDINATOR_LOAD_IN_PROGRESS);
    assert_int_equal(lm_txn_coord_load_end(f.c, f.now, 0), 0);
    const struct fx_resp *r = init_pid(&f, "old", 1000, 42, 32766);
    assert_int_equal(r->err, 0);
    assert_true(r->pid != 42);
    assert_int_equal(r->epoch, 0);
    int64_t np = r->pid;
    /* the rotation's retry (previous id, exhausted epoch) gets the same answer */
    r = init_pid(&f, "old", 1000, 42, 32766);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, np);
    assert_int_equal(r->epoch, 0);
    assert_int_equal(lm_txn_coord_unload(f.c, 0), 0);
    assert_int_equal(init_pid(&f, "old", 1000, -1, -1)->err, KAFKA_NOT_COORDINATOR);
    fx_deinit(&f);
}

static void test_timeout_expiry_and_recovery(void **st)
{
    (void)st;
    struct fx f;
    fx_init(&f, 2);
    const struct fx_resp *r = init_pid(&f, "t", 5000, -1, -1);
    int64_t pid = r->pid;
    assert_int_equal(add(&f, "t", pid, 0, "x", 0, false)->err, 0);
    f.now += 5000 + 1001;
    assert_int_equal(lm_txn_coord_tick(f.c, f.now), 0);
    pump(&f);
    settle(&f);
    assert_int_equal(state_of(&f, "t"), LM_TXN_COMPLETE_ABORT);
    assert_int_equal(end(&f, "t", pid, 0, true)->err, KAFKA_PRODUCER_FENCED);

    /* recovery: a transaction prepared before a fail-over is completed by the new leader */
    r = init_pid(&f, "u", 30000, -1, -1);
    int64_t upid = r->pid;
    assert_int_equal(add(&f, "u", upid, 0, "y", 3, false)->err, 0);
    assert_int_equal(end(&f, "u", upid, 0, true)->err, 0);
    f.n_mk = 0; /* the markers are lost with the old leader */
    int32_t p = lm_txn_partition_of(f.c, S("u"));
    reload(&f, p, 9);
    assert_int_equal(state_of(&f, "u"), LM_TXN_PREPARE_COMMIT);
    assert_int_equal(f.n_mk, 1);
    assert_true(f.mk[0].commit);
    settle(&f);
    assert_int_equal(state_of(&f, "u"), LM_TXN_COMPLETE_COMMIT);

    /* transactional.id.expiration.ms: idle ids are deleted with a tombstone */
    f.now += 60000 + 5000;
    assert_int_equal(lm_txn_coord_tick(f.c, f.now), 0);
    pump(&f);
    settle(&f);
    struct lm_txn_info in;
    assert_false(lm_txn_coord_describe(f.c, S("u"), &in));
    assert_false(lm_txn_coord_describe(f.c, S("t"), &in));
    reload(&f, p, 10);
    assert_false(lm_txn_coord_describe(f.c, S("u"), &in));
    fx_deinit(&f);
}

/* Transaction version 2 (KIP-890 part 2): implicit adds, the epoch bump on every EndTxn (its
 * answer and its markers), retries answered instead of fenced, empty aborts, the timeout
 * abort, the next producer id over an exhausted epoch kept in the log across a fail-over. */
/* The Java client's early EndTxn (transaction version 2): the commit of the next transaction
 * comes before its first batch; asked to come again, it commits that batch once the batch's
 * implicit add came. */
static void test_tv2_early_end(void **st)
{
    (void)st;
    struct fx f;
    fx_init(&f, 1);
    const struct fx_resp *r = init_pid(&f, "w", 30000, -1, -1);
    int64_t pid = r->pid;
    assert_int_equal(add2(&f, "w", pid, 0, "x", 0)->err, 0);
    r = end2(&f, "w", pid, 0, true);
    assert_int_equal(r->err, 0);
    int16_t e1 = r->epoch;
    settle(&f);
    assert_int_equal(state_of(&f, "w"), LM_TXN_COMPLETE_COMMIT);
    f.now += 5;
    assert_int_equal(end2(&f, "w", pid, e1, true)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    assert_int_equal(add2(&f, "w", pid, e1, "x", 0)->err, 0); /* the batch, a moment later */
    f.now += 100;
    r = end2(&f, "w", pid, e1, true); /* the client's retry */
    assert_int_equal(r->err, 0);
    assert_int_equal(r->epoch, e1 + 1);
    settle(&f);
    assert_int_equal(state_of(&f, "w"), LM_TXN_COMPLETE_COMMIT);
    fx_deinit(&f);
}

static void test_tv2_epoch_bump(void **st)
{
    (void)st;
    struct fx f;
    fx_init(&f, 1);
    const struct fx_resp *r = init_pid(&f, "v", 30000, -1, -1);
    int64_t pid = r->pid;
    assert_int_equal(r->epoch, 0);
    /* partitions join through their leaders, no AddPartitionsToTxn from the client */
    assert_int_equal(add2(&f, "v", pid, 0, "x", 0)->err, 0);
    assert_int_equal(add2(&f, "v", pid, 0, "x", 1)->err, 0);
    assert_int_equal(add2(&f, "v", pid, 0, "x", 1)->err, 0);
    struct lm_txn_info in;
    assert_true(lm_txn_coord_describe(f.c, S("v"), &in));
    assert_int_equal(in.state, LM_TXN_ONGOING);
    assert_int_equal(in.n_partitions, 2);
    assert_true(in.tv2);
    /* commit: the answer carries the bumped epoch, the markers too */
    r = end2(&f, "v", pid, 0, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, pid);
    assert_int_equal(r->epoch, 1);
    assert_int_equal(f.n_mk, 2);
    assert_true(f.mk[0].commit && f.mk[0].epoch == 1 && f.mk[1].epoch == 1);
    /* while the markers are out every EndTxn is CONCURRENT_TRANSACTIONS (Kafka's pending
     * CompleteCommit, before the epoch check): a retry, and the next transaction's end under
     * the bumped epoch, which the Java client sends as soon as it has nothing to send */
    assert_int_equal(end2(&f, "v", pid, 0, true)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    assert_int_equal(end2(&f, "v", pid, 1, true)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    assert_int_equal(end2(&f, "v", pid, 1, false)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    settle(&f);
    assert_int_equal(state_of(&f, "v"), LM_TXN_COMPLETE_COMMIT);
    /* the retry of the finished commit (epoch one below) is answered again, not fenced */
    r = end2(&f, "v", pid, 0, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, pid);
    assert_int_equal(r->epoch, 1);
    assert_int_equal(end2(&f, "v", pid, 0, false)->err, KAFKA_INVALID_TXN_STATE);
    /* an epoch further back is a zombie */
    assert_int_equal(add2(&f, "v", pid, 0, "x", 0)->err, KAFKA_PRODUCER_FENCED);
    /* a commit with nothing open is asked to come again just after the last end (its
     * batches may be right behind it, LM_TXN_EARLY_END_MS), refused after that; an abort with
     * nothing added bumps the epoch */
    assert_int_equal(end2(&f, "v", pid, 1, true)->err, KAFKA_CONCURRENT_TRANSACTIONS);
    f.now += LM_TXN_EARLY_END_MS;
    assert_int_equal(end2(&f, "v", pid, 1, true)->err, KAFKA_INVALID_TXN_STATE);
    r = end2(&f, "v", pid, 1, false);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->epoch, 2);
    settle(&f);
    assert_int_equal(state_of(&f, "v"), LM_TXN_COMPLETE_ABORT);
    assert_int_equal(end2(&f, "v", pid, 1, false)->err, 0); /* its retry */
    assert_int_equal(end2(&f, "v", pid, 1, true)->err, KAFKA_INVALID_TXN_STATE);

    /* the timeout abort fences, then bumps as every end does (2 -> 3 -> 4): the producer's
     * own EndTxn at its old epoch is not a retry of it, whatever the outcome */
    assert_int_equal(add2(&f, "v", pid, 2, "y", 0)->err, 0);
    f.now += 30000 + 10001;
    assert_int_equal(lm_txn_coord_tick(f.c, f.now), 0);
    pump(&f);
    settle_writes(&f);
    assert_int_equal(f.n_mk, 1);
    assert_int_equal(f.mk[0].epoch, 4);
    settle(&f);
    assert_int_equal(state_of(&f, "v"), LM_TXN_COMPLETE_ABORT);
    assert_int_equal(end2(&f, "v", pid, 2, true)->err, KAFKA_PRODUCER_FENCED);
    assert_int_equal(end2(&f, "v", pid, 2, false)->err, KAFKA_PRODUCER_FENCED);
    assert_int_equal(add2(&f, "v", pid, 2, "y", 0)->err, KAFKA_PRODUCER_FENCED);
    /* a new instance (KIP-360 bump from the current epoch) goes on from 5 */
    r = init_pid(&f, "v", 30000, pid, 4);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->epoch, 5);

    /* implicit adds that come while an add is being written wait for it, and are answered in
     * their order once it is (a later Produce never passes an earlier one) */
    {
        struct lm_txn_topic_partition tps[3] = {{S("p"), 0}, {S("p"), 1}, {S("y"), 0}};
        uint64_t tk[3];
        for (int i = 0; i < 3; i++) {
            tk[i] = g_token++;
            struct lm_txn_add_req ar = {S("v"), pid, 5, 1, &tps[i], false, true};
            assert_int_equal(lm_txn_add_partitions(f.c, f.now, tk[i], &ar), 0);
            pump(&f);
        }
        assert_int_equal(f.n_pend, 1);
        assert_null(last_resp(&f, tk[0]));
        assert_null(last_resp(&f, tk[1]));
        assert_null(last_resp(&f, tk[2]));
        complete_write(&f, 0, 0);
        assert_int_equal(last_resp(&f, tk[0])->err, 0);
        assert_null(last_resp(&f, tk[1])); /* its own write now */
        assert_int_equal(f.n_pend, 1);
        settle_writes(&f);
        assert_int_equal(last_resp(&f, tk[1])->err, 0);
        assert_int_equal(last_resp(&f, tk[2])->err, 0); /* y-0 was in already */
        const struct fx_resp *order[3] = {last_resp(&f, tk[0]), last_resp(&f, tk[1]),
                                          last_resp(&f, tk[2])};
        assert_true(order[0] < order[1] && order[1] < order[2]);
        assert_true(lm_txn_coord_describe(f.c, S("v"), &in));
        assert_int_equal(in.n_partitions, 3);
        /* an add parked behind the EndTxn's write is fenced by the bump */
        uint64_t te = g_token++, ta = g_token++;
        struct lm_txn_end_req er = {S("v"), pid, 5, true, true};
        assert_int_equal(lm_txn_end(f.c, f.now, te, &er), 0);
        struct lm_txn_add_req late = {S("v"), pid, 5, 1, &tps[0], false, true};
        assert_int_equal(lm_txn_add_partitions(f.c, f.now, ta, &late), 0);
        pump(&f);
        assert_null(last_resp(&f, ta));
        settle(&f);
        assert_int_equal(last_resp(&f, te)->epoch, 6);
        assert_int_equal(last_resp(&f, ta)->err, KAFKA_PRODUCER_FENCED);

        /* the next transaction's first add, sent while the markers of the one before are
         * out, waits for its Complete record; one waiting too long is answered for a retry */
        assert_int_equal(add2(&f, "v", pid, 6, "p", 0)->err, 0);
        for (int round = 0; round < 2; round++) {
            int16_t ep = (int16_t)(6 + round);
            uint64_t tn = g_token++;
            struct lm_txn_end_req er2 = {S("v"), pid, ep, true, true};
            assert_int_equal(lm_txn_end(f.c, f.now, g_token++, &er2), 0);
            pump(&f);
            settle_writes(&f);
            assert_int_equal(f.n_mk, 1);
            assert_int_equal(state_of(&f, "v"), LM_TXN_PREPARE_COMMIT);
            struct lm_txn_add_req nx = {S("v"), pid, (int16_t)(ep + 1), 1, &tps[1], false, true};
            assert_int_equal(lm_txn_add_partitions(f.c, f.now, tn, &nx), 0);
            pump(&f);
            assert_null(last_resp(&f, tn));
            if (round == 0) {
                settle(&f);
                assert_int_equal(last_resp(&f, tn)->err, 0);
                assert_int_equal(state_of(&f, "v"), LM_TXN_ONGOING);
            } else {
                f.now += LM_TXN_PARKED_TIMEOUT_MS;
                assert_int_equal(lm_txn_coord_tick(f.c, f.now), 0);
                pump(&f);
                assert_int_equal(last_resp(&f, tn)->err, KAFKA_CONCURRENT_TRANSACTIONS);
                settle(&f);
                assert_int_equal(state_of(&f, "v"), LM_TXN_COMPLETE_COMMIT);
            }
        }
    }

    /* a transaction version 1 client on the same coordinator keeps its epoch */
    r = init_pid(&f, "one", 30000, -1, -1);
    assert_int_equal(add(&f, "one", r->pid, 0, "x", 0, false)->err, 0);
    assert_int_equal(end(&f, "one", r->pid, 0, true)->err, 0);
    assert_int_equal(f.mk[0].epoch, 0);
    settle(&f);
    assert_true(lm_txn_coord_describe(f.c, S("one"), &in));
    assert_int_equal(in.producer_epoch, 0);
    assert_false(in.tv2);
    fx_deinit(&f);
}

static void test_tv2_epoch_overflow(void **st)
{
    (void)st;
    /* a v1 value (TransactionLogValue flexible): null partitions as a compact null, then the
     * tagged fields that differ from their defaults, in tag order */
    {
        static const uint8_t golden[] = {
            0x00, 0x01, 0,    0, 0, 0, 0, 0, 0, 5, 0x00, 0x01, 0x00, 0x00, 0x03, 0xe8, 0x04,
            0x00, 0,    0,    0, 0, 0, 0, 0, 7, 0, 0,    0,    0,    0,    0,    0,    8,
            0x02, 0x01, 0x08, 0, 0, 0, 0, 0, 0, 0, 9,    0x02, 0x02, 0x00, 0x02};
        struct lm_tr_value gv = {.version = 1,
                                 .producer_id = 5,
                                 .previous_producer_id = -1,
                                 .next_producer_id = 9,
                                 .client_tv = 2,
                                 .producer_epoch = 1,
                                 .timeout_ms = 1000,
                                 .status = LM_TXN_COMPLETE_COMMIT,
                                 .update_ts_ms = 7,
                                 .start_ts_ms = 8};
        uint8_t buf[64];
        size_t n;
        assert_int_equal(lm_tr_value_size(&gv), sizeof(golden));
        assert_int_equal(lm_tr_value_encode(&gv, buf, sizeof(buf), &n), 0);
        assert_int_equal(n, sizeof(golden));
        assert_memory_equal(buf, golden, sizeof(golden));
    }
    struct fx f;
    fx_init(&f, 1);
    /* a log holding an id at epoch 32765, in a tv2 CompleteCommit (a v1 record) */
    uint8_t k[64], v[128];
    size_t kl, vl;
    assert_int_equal(lm_tr_key_encode(S("o"), k, sizeof(k), &kl), 0);
    struct lm_tr_value val = {.version = 1,
                              .producer_id = 42,
                              .previous_producer_id = -1,
                              .next_producer_id = -1,
                              .client_tv = 2,
                              .producer_epoch = 32765,
                              .timeout_ms = 30000,
                              .status = LM_TXN_COMPLETE_COMMIT,
                              .update_ts_ms = f.now,
                              .start_ts_ms = -1};
    assert_int_equal(lm_tr_value_encode(&val, v, sizeof(v), &vl), 0);
    assert_int_equal(lm_txn_coord_load_begin(f.c, 0, 3), 0);
    assert_int_equal(lm_txn_coord_load_record(f.c, 0, (struct kafka_bytes){k, (int32_t)kl},
                                              (struct kafka_bytes){v, (int32_t)vl}),
                     0);
    assert_int_equal(lm_txn_coord_load_end(f.c, f.now, 0), 0);
    /* 32765 -> 32766: still the same id */
    assert_int_equal(add2(&f, "o", 42, 32765, "x", 0)->err, 0);
    const struct fx_resp *r = end2(&f, "o", 42, 32765, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, 42);
    assert_int_equal(r->epoch, 32766);
    settle(&f);
    /* 32766 would overflow: the Prepare record names the next id, the markers carry 32767 */
    assert_int_equal(add2(&f, "o", 42, 32766, "x", 0)->err, 0);
    uint64_t t = g_token++;
    struct lm_txn_end_req er = {S("o"), 42, 32766, true, true};
    assert_int_equal(lm_txn_end(f.c, f.now, t, &er), 0);
    pump(&f);
    assert_null(last_resp(&f, t));
    assert_int_equal(f.n_pend, 1);
    struct lm_tr_value got;
    struct kafka_arena arena;
    kafka_arena_init(&arena, 1u << 16);
    assert_int_equal(
        lm_tr_value_decode((struct kafka_bytes){f.pend[0].val, f.pend[0].vlen}, &arena, &got), 0);
    assert_int_equal(got.version, 1);
    assert_int_equal(got.status, LM_TXN_PREPARE_COMMIT);
    assert_int_equal(got.producer_id, 42);
    assert_int_equal(got.producer_epoch, 32767);
    assert_int_equal(got.client_tv, 2);
    int64_t next = got.next_producer_id;
    assert_true(next >= 0 && next != 42);
    kafka_arena_deinit(&arena);
    settle_writes(&f);
    r = last_resp(&f, t);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, next);
    assert_int_equal(r->epoch, 0);
    assert_int_equal(f.n_mk, 1);
    assert_int_equal(f.mk[0].pid, 42);
    assert_int_equal(f.mk[0].epoch, 32767);
    /* a fail-over before the markers are answered: the new leader reads the next id back */
    f.n_mk = 0;
    reload(&f, 0, 4);
    struct lm_txn_info in;
    assert_true(lm_txn_coord_describe(f.c, S("o"), &in));
    assert_int_equal(in.state, LM_TXN_PREPARE_COMMIT);
    assert_int_equal(in.next_producer_id, next);
    assert_int_equal(f.n_mk, 1);
    settle(&f);
    assert_true(lm_txn_coord_describe(f.c, S("o"), &in));
    assert_int_equal(in.state, LM_TXN_COMPLETE_COMMIT);
    assert_int_equal(in.producer_id, next);
    assert_int_equal(in.producer_epoch, 0);
    /* the retry with the old id at 32766 is answered with the new id */
    r = end2(&f, "o", 42, 32766, true);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, next);
    assert_int_equal(r->epoch, 0);
    assert_int_equal(end2(&f, "o", 42, 32765, true)->err, KAFKA_INVALID_PRODUCER_ID_MAPPING);
    /* the new id goes on */
    assert_int_equal(add2(&f, "o", next, 0, "x", 0)->err, 0);
    r = end2(&f, "o", next, 0, false);
    assert_int_equal(r->err, 0);
    assert_int_equal(r->pid, next);
    assert_int_equal(r->epoch, 1);
    settle(&f);
    fx_deinit(&f);
}

/* ---- property test ---- */

#define P_IDS   6
#define P_INST  4 /* producer instances per id */
#define P_STEPS 1500

struct p_inst {
    bool live;
    int64_t pid;
    int16_t epoch;
};

struct p_req {
    uint64_t token;
    int id, inst;
    uint8_t kind;
    int64_t pid;
    int16_t epoch;
};

struct p_world {
    struct fx f;
    uint64_t rng;
    struct p_inst inst[P_IDS][P_INST];
    int64_t seen_pid[P_IDS];
    int16_t seen_epoch[P_IDS];
    bool seen[P_IDS];
    enum lm_txn_state prev_state[P_IDS];
    bool prev_known[P_IDS];
    struct lm_txn_topic_partition prev_parts[P_IDS][16];
    char prev_topics[P_IDS][16][32];
    int32_t prev_n_parts[P_IDS];
    bool acked[P_IDS][16]; /* markers acknowledged since the prepare, by prev_parts index */
    struct p_req reqs[FX_MAX];
    size_t n_reqs;
    size_t n_checked;
    int64_t coord_epoch;
    int64_t last_abort_check; /* mirrors the coordinator's check schedule; -1 before */
};

static uint64_t rnd(struct p_world *w)
{
    w->rng ^= w->rng << 13;
    w->rng ^= w->rng >> 7;
    w->rng ^= w->rng << 17;
    return w->rng;
}

static uint32_t below(struct p_world *w, uint32_t n)
{
    return (uint32_t)(rnd(w) % n);
}

/* ids b, d and f are used by transaction version 2 clients (implicit adds, EndTxn v5) */
static bool p_tv2(int id)
{
    return id % 2 == 1;
}

static const char *id_name(int i)
{
    static const char *names[P_IDS] = {"a", "b", "c", "d", "e", "f"};
    return names[i];
}

static int id_index(const char *tid)
{
    for (int i = 0; i < P_IDS; i++)
        if (strcmp(tid, id_name(i)) == 0)
            return i;
    return -1;
}

/* check_responses applies the answers that came since the last look to the model. */
static void check_responses(struct p_world *w)
{
    for (; w->n_checked < w->f.n_rs; w->n_checked++) {
        const struct fx_resp *r = &w->f.rs[w->n_checked];
        struct p_req *q = NULL;
        for (size_t i = 0; i < w->n_reqs; i++)
            if (w->reqs[i].token == r->token)
                q = &w->reqs[i];
        if (q == NULL)
            continue;
        struct lm_txn_info in;
        bool known = lm_txn_coord_describe(w->f.c, S(id_name(q->id)), &in);
        if (q->kind == LM_TXN_RESP_INIT) {
            if (r->err == 0) {
                PCHECK(known && in.producer_id == r->pid && in.producer_epoch == r->epoch,
                       "InitProducerId answered %lld/%d, coordinator has %lld/%d",
                       (long long)r->pid, r->epoch, known ? (long long)in.producer_id : -1LL,
                       known ? in.producer_epoch : -1);
                w->inst[q->id][q->inst] = (struct p_inst){true, r->pid, r->epoch};
            }
        } else if (q->kind == LM_TXN_RESP_END && p_tv2(q->id)) {
            if (r->err != 0)
                continue;
            /* tv2: the answer is the epoch after the bump (or the next id at 0 after an
             * overflow), which the coordinator holds now; the request named the epoch below */
            PCHECK(known && ((in.producer_id == r->pid && in.producer_epoch == r->epoch) ||
                             (in.next_producer_id == r->pid && r->epoch == 0)),
                   "EndTxn v5 answered %lld/%d, coordinator has %lld/%d (next %lld)",
                   (long long)r->pid, r->epoch, known ? (long long)in.producer_id : -1LL,
                   known ? in.producer_epoch : -1, known ? (long long)in.next_producer_id : -1LL);
            PCHECK(in.producer_id != q->pid || in.producer_epoch == q->epoch + 1,
                   "EndTxn v5 of %s succeeded with epoch %d, coordinator at %d", id_name(q->id),
                   q->epoch, in.producer_epoch);
            w->inst[q->id][q->inst] = (struct p_inst){true, r->pid, r->epoch};
        } else if (r->err == 0 && (r->n_parts == 0 || r->part_err[0] == 0)) {
            /* a fenced producer never succeeds: success only with the current id and epoch */
            PCHECK(known && in.producer_id == q->pid && in.producer_epoch == q->epoch,
                   "kind %d succeeded for %s with %lld/%d, current %lld/%d", q->kind,
                   id_name(q->id), (long long)q->pid, q->epoch,
                   known ? (long long)in.producer_id : -1LL, known ? in.producer_epoch : -1);
        }
    }
}

/* check_state compares every id with the model after a step. */
static void check_state(struct p_world *w)
{
    for (int i = 0; i < P_IDS; i++) {
        struct lm_txn_info in;
        if (!lm_txn_coord_describe(w->f.c, S(id_name(i)), &in)) {
            w->prev_known[i] = false;
            w->seen[i] = false; /* expired: a new id may start over */
            continue;
        }
        PCHECK(in.state <= LM_TXN_COMPLETE_ABORT, "%s in state %d", id_name(i), in.state);
        /* epochs never go back for a producer id */
        if (w->seen[i] && w->seen_pid[i] == in.producer_id)
            PCHECK(in.producer_epoch >= w->seen_epoch[i], "%s epoch went back %d -> %d", id_name(i),
                   w->seen_epoch[i], in.producer_epoch);
        if (in.producer_epoch >= 0) {
            w->seen[i] = true;
            w->seen_pid[i] = in.producer_id;
            w->seen_epoch[i] = in.producer_epoch;
        }
        /* an open transaction has partitions and a start; a finished one has none */
        if (in.state == LM_TXN_ONGOING || in.state == LM_TXN_PREPARE_COMMIT ||
            in.state == LM_TXN_PREPARE_ABORT)
            /* tv2 may abort a transaction that added nothing */
            PCHECK(
                (in.n_partitions > 0 || (p_tv2(i) && in.tv2 && in.state == LM_TXN_PREPARE_ABORT)) &&
                    in.start_ts_ms >= 0,
                "%s open without partitions", id_name(i));
        else
            PCHECK(in.n_partitions == 0, "%s closed with partitions", id_name(i));
        /* terminal states only after every marker of the prepared transaction was answered */
        bool prepared = w->prev_known[i] && (w->prev_state[i] == LM_TXN_PREPARE_COMMIT ||
                                             w->prev_state[i] == LM_TXN_PREPARE_ABORT);
        if (prepared && (in.state == LM_TXN_COMPLETE_COMMIT || in.state == LM_TXN_COMPLETE_ABORT)) {
            PCHECK((w->prev_state[i] == LM_TXN_PREPARE_COMMIT) ==
                       (in.state == LM_TXN_COMPLETE_COMMIT),
                   "%s prepared one outcome and completed the other", id_name(i));
            for (int32_t k = 0; k < w->prev_n_parts[i]; k++)
                PCHECK(w->acked[i][k], "%s completed before the marker of %s-%d was answered",
                       id_name(i), w->prev_topics[i][k], w->prev_parts[i][k].partition);
        }
        if (!prepared && (in.state == LM_TXN_PREPARE_COMMIT || in.state == LM_TXN_PREPARE_ABORT)) {
            memset(w->acked[i], 0, sizeof(w->acked[i]));
            w->prev_n_parts[i] = in.n_partitions < 16 ? in.n_partitions : 16;
            for (int32_t k = 0; k < w->prev_n_parts[i]; k++) {
                copy_str(w->prev_topics[i][k], 32, in.partitions[k].topic);
                w->prev_parts[i][k] = in.partitions[k];
            }
        }
        w->prev_known[i] = true;
        w->prev_state[i] = in.state;
    }
}

/* record_marker checks a marker about to be answered and notes its acknowledgement. */
static void record_marker(struct p_world *w, const struct fx_marker *mp,
                          enum lm_txn_marker_outcome out)
{
    struct fx *f = &w->f;
    struct fx_marker m = *mp;
    int mi = id_index(m.tid);
    assert_true(mi >= 0);
    /* only the answer to the latest send of a partition's marker counts */
    if (out != LM_TXN_MARKER_RETRY && *latest_slot(f, &m) == m.id)
        for (int32_t j = 0; j < w->prev_n_parts[mi]; j++)
            if (strcmp(w->prev_topics[mi][j], m.topic) == 0 &&
                w->prev_parts[mi][j].partition == m.partition)
                w->acked[mi][j] = true;
}

/* p_settle finishes every write and acknowledges every marker, checking as it goes. */
static void p_settle(struct p_world *w)
{
    struct fx *f = &w->f;
    for (int guard = 0; f->n_pend > 0 || f->n_mk > 0; guard++) {
        assert_true(guard < 100000);
        if (f->n_pend > 0) {
            complete_write(f, 0, 0);
        } else {
            struct fx_marker m = f->mk[0];
            record_marker(w, &m, LM_TXN_MARKER_ACKED);
            answer_marker(f, 0, LM_TXN_MARKER_ACKED);
        }
        check_responses(w);
        check_state(w);
    }
}

static void p_step(struct p_world *w)
{
    struct fx *f = &w->f;
    uint32_t op = below(w, 100);
    int id = (int)below(w, P_IDS);
    int k = (int)below(w, P_INST);
    struct p_inst *pi = &w->inst[id][k];
    uint64_t t = g_token++;
    struct p_req q = {t, id, k, 0, pi->live ? pi->pid : -1, pi->live ? pi->epoch : -1};
    static const char *topics[] = {"x", "y", "z"};
    if (op < 15) {
        q.kind = LM_TXN_RESP_INIT;
        bool bump = pi->live && below(w, 2) == 0;
        struct lm_txn_init_req r = {S(id_name(id)), 1000 + (int32_t)below(w, 20000),
                                    bump ? pi->pid : -1, bump ? pi->epoch : (int16_t)-1};
        assert_int_equal(lm_txn_init_pid(f->c, f->now, t, &r), 0);
    } else if (op < 45 && pi->live) {
        q.kind = LM_TXN_RESP_ADD;
        struct lm_txn_topic_partition tp[2] = {{S(topics[below(w, 3)]), (int32_t)below(w, 3)},
                                               {S(topics[below(w, 3)]), (int32_t)below(w, 3)}};
        bool verify = below(w, 5) == 0;
        struct lm_txn_add_req r = {S(id_name(id)),           pi->pid, pi->epoch,
                                   1 + (int32_t)below(w, 2), tp,      verify,
                                   p_tv2(id) && !verify};
        assert_int_equal(lm_txn_add_partitions(f->c, f->now, t, &r), 0);
    } else if (op < 50 && pi->live && !p_tv2(id)) {
        q.kind = LM_TXN_RESP_ADD_OFFSETS;
        struct lm_txn_add_offsets_req r = {S(id_name(id)), pi->pid, pi->epoch, S("g")};
        assert_int_equal(lm_txn_add_offsets(f->c, f->now, t, &r), 0);
    } else if (op < 62 && pi->live) {
        q.kind = LM_TXN_RESP_END;
        struct lm_txn_end_req r = {S(id_name(id)), pi->pid, pi->epoch, below(w, 3) != 0, p_tv2(id)};
        assert_int_equal(lm_txn_end(f->c, f->now, t, &r), 0);
    } else if (op < 75 && f->n_pend > 0) {
        /* complete a pending write, sometimes failing it */
        size_t i = below(w, 3) == 0 ? below(w, (uint32_t)f->n_pend) : 0;
        complete_write(f, i, below(w, 10) == 0 ? KAFKA_COORDINATOR_NOT_AVAILABLE : 0);
    } else if (op < 88 && f->n_mk > 0) {
        size_t i = below(w, (uint32_t)f->n_mk);
        uint32_t o = below(w, 10);
        struct fx_marker m = f->mk[i];
        enum lm_txn_marker_outcome out = o < 7   ? LM_TXN_MARKER_ACKED
                                         : o < 9 ? LM_TXN_MARKER_RETRY
                                                 : LM_TXN_MARKER_DROPPED;
        record_marker(w, &m, out);
        answer_marker(f, i, out);
    } else if (op < 96) {
        /* the clock: mostly small steps, sometimes past timeouts or the expiration */
        uint32_t j = below(w, 20);
        f->now += j < 16 ? (int64_t)below(w, 300) : j < 19 ? (int64_t)below(w, 25000) : 70000;
        bool due = w->last_abort_check < 0 ||
                   f->now - w->last_abort_check >= f->cfg.abort_check_interval_ms;
        if (due)
            w->last_abort_check = f->now;
        assert_int_equal(lm_txn_coord_tick(f->c, f->now), 0);
        /* timeouts abort: after a timeout check no expired transaction is left Ongoing
         * without its fencing abort under way */
        for (int i = 0; due && i < P_IDS; i++) {
            struct lm_txn_info in;
            if (lm_txn_coord_describe(f->c, S(id_name(i)), &in) && in.state == LM_TXN_ONGOING)
                PCHECK(in.pending || in.start_ts_ms + in.timeout_ms >= f->now,
                       "%s Ongoing past its timeout (start %lld timeout %d now %lld)", id_name(i),
                       (long long)in.start_ts_ms, in.timeout_ms, (long long)f->now);
        }
    } else {
        /* fail-over of one __transaction_state partition */
        int32_t p = (int32_t)below(w, (uint32_t)f->cfg.state_partitions);
        /* some markers in flight from the old leader are lost */
        for (size_t i = f->n_mk; i > 0; i--)
            if (lm_txn_partition_of(f->c, S(f->mk[i - 1].tid)) == p && below(w, 2) == 0) {
                memmove(&f->mk[i - 1], &f->mk[i], (f->n_mk - i) * sizeof(f->mk[0]));
                f->n_mk--;
            }
        reload(f, p, (int32_t)++w->coord_epoch);
    }
    if (q.kind != 0) {
        assert_true(w->n_reqs < FX_MAX);
        w->reqs[w->n_reqs++] = q;
    }
    pump(f);
    if (f->n_rs > FX_MAX - 64) {
        check_responses(w);
        f->n_rs = 0;
        w->n_checked = 0;
        w->n_reqs = 0;
    }
    if (w->n_reqs > FX_MAX - 64)
        w->n_reqs = 0;
    check_responses(w);
    check_state(w);
}

static void run_seed(uint64_t seed)
{
    g_seed = seed;
    struct p_world *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    w->rng = seed * 0x9E3779B97F4A7C15ull + 1;
    fx_init(&w->f, 3);
    w->last_abort_check = -1;
    for (int s = 0; s < P_STEPS; s++)
        p_step(w);
    /* quiesce: every transaction ends once writes and markers are done and time passes */
    for (int round = 0; round < 4; round++) {
        p_settle(w);
        w->f.now += 30000;
        assert_int_equal(lm_txn_coord_tick(w->f.c, w->f.now), 0);
        pump(&w->f);
        check_responses(w);
        check_state(w);
    }
    p_settle(w);
    for (int i = 0; i < P_IDS; i++) {
        struct lm_txn_info in;
        if (lm_txn_coord_describe(w->f.c, S(id_name(i)), &in)) {
            PCHECK(in.state != LM_TXN_ONGOING && in.state != LM_TXN_PREPARE_COMMIT &&
                       in.state != LM_TXN_PREPARE_ABORT,
                   "%s still %s after quiescing", id_name(i), lm_txn_state_name(in.state));
        }
    }
    fx_deinit(&w->f);
    free(w);
}

static void test_property(void **st)
{
    (void)st;
    const char *one = getenv("LM_TXN_SEED");
    if (one != NULL) {
        run_seed(strtoull(one, NULL, 10));
        return;
    }
    const char *many = getenv("LM_TXN_SEEDS");
    uint64_t n = many != NULL ? strtoull(many, NULL, 10) : 300;
    for (uint64_t s = 1; s <= n; s++)
        run_seed(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_records_golden),
        cmocka_unit_test(test_commit_and_abort),
        cmocka_unit_test(test_verify_during_add),
        cmocka_unit_test(test_init_errors_and_fencing),
        cmocka_unit_test(test_epoch_exhaustion_rotates_producer_id),
        cmocka_unit_test(test_timeout_expiry_and_recovery),
        cmocka_unit_test(test_tv2_epoch_bump),
        cmocka_unit_test(test_tv2_early_end),
        cmocka_unit_test(test_tv2_epoch_overflow),
        cmocka_unit_test(test_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
