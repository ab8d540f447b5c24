/* Property test: random sequences of appends (leader and follower), reads, truncations, high
 * watermark and log start moves, retention, flushes, reopens and lookups, with the descriptors
 * released between operations now and then (storage_log_release_fds), each checked against a
 * simple in-memory model of the log. Prints its seed; STORAGE_PROPERTY_SEED replays one seed,
 * STORAGE_PROPERTY_SEEDS / STORAGE_PROPERTY_OPS scale the run. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"
#include "storage/storage.h"
#include "storage_test_util.h"

struct mbatch {
    int64_t base, last, max_ts;
    int64_t first_ts; /* records carry first_ts, first_ts + 1, ... */
    uint8_t *bytes;
    size_t len;
};

struct model {
    struct mbatch *b;
    int n, cap;
    int64_t start, hw;
    int64_t end; /* log end offset */
    struct {
        int32_t epoch;
        int64_t start;
    } epochs[256];
    int nep;
    bool start_at_segment; /* log start is a segment base: max-timestamp is comparable */
};

static uint64_t rs;
static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}
static int64_t rnd_range(int64_t lo, int64_t hi) /* inclusive */
{
    return lo + (int64_t)(rnd() % (uint64_t)(hi - lo + 1));
}

static void model_push(struct model *m, const uint8_t *bytes, size_t len, int64_t first_ts)
{
    struct kafka_batch_header h;
    assert_int_equal(kafka_batch_header_parse(bytes, len, &h), 0);
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 64;
        m->b = realloc(m->b, (size_t)m->cap * sizeof(*m->b));
    }
    struct mbatch *b = &m->b[m->n++];
    b->base = h.base_offset;
    b->last = kafka_batch_last_offset(&h);
    b->max_ts = h.max_timestamp;
    b->first_ts = first_ts;
    b->bytes = malloc(len);
    memcpy(b->bytes, bytes, len);
    b->len = len;
    m->end = b->last + 1;
    if (m->nep == 0 || h.partition_leader_epoch > m->epochs[m->nep - 1].epoch) {
        /* Kafka's LeaderEpochFileCache.assign drops entries starting at or after the new one
         * (an epoch that starts where the log start was clamped to, followed by a newer one at
         * the same offset, leaves only the newer). */
        while (m->nep > 0 && m->epochs[m->nep - 1].start >= h.base_offset)
            m->nep--;
        assert_true(m->nep < 256);
        m->epochs[m->nep].epoch = h.partition_leader_epoch;
        m->epochs[m->nep++].start = h.base_offset;
    }
}

static void model_truncate(struct model *m, int64_t offset)
{
    while (m->n > 0 && m->b[m->n - 1].last >= offset) {
        free(m->b[m->n - 1].bytes);
        m->n--;
    }
    m->end = m->n ? m->b[m->n - 1].last + 1 : m->start;
    if (m->n == 0 && offset < m->end)
        m->end = offset;
    if (m->end < m->start) { /* storage_log_truncate_to restarts the log at its start */
        for (int i = 0; i < m->n; i++)
            free(m->b[i].bytes);
        m->n = 0;
        m->end = m->start;
        m->nep = 0;
        m->start_at_segment = true;
    }
    while (m->nep > 0 && m->epochs[m->nep - 1].start >= m->end)
        m->nep--;
    if (m->hw > m->end)
        m->hw = m->end;
}

static void model_epochs_from_start(struct model *m)
{
    int j = 0;
    while (j + 1 < m->nep && m->epochs[j + 1].start <= m->start)
        j++;
    memmove(m->epochs, m->epochs + j, (size_t)(m->nep - j) * sizeof(m->epochs[0]));
    m->nep -= j;
    if (m->nep > 0 && m->epochs[0].start < m->start)
        m->epochs[0].start = m->start;
}

static void model_free(struct model *m)
{
    for (int i = 0; i < m->n; i++)
        free(m->b[i].bytes);
    free(m->b);
}

static int model_find(const struct model *m, int64_t offset)
{
    for (int i = 0; i < m->n; i++)
        if (m->b[i].last >= offset)
            return i;
    return m->n;
}

static void check_read(struct storage_log *log, const struct model *m, int64_t off,
                       uint64_t max_bytes, int64_t max_offset)
{
    struct storage_read_result res;
    int rc = storage_log_read(log, off, max_bytes, max_offset, &res);
    if (off < m->start || off > m->end) {
        assert_int_equal(rc, LM_E_OUT_OF_RANGE);
        return;
    }
    assert_int_equal(rc, 0);
    int i = model_find(m, off);
    int j = i;
    uint64_t total = 0;
    while (j < m->n && m->b[j].last < max_offset && (j == i || total + m->b[j].len <= max_bytes)) {
        total += m->b[j].len;
        j++;
    }
    if (j == i) {
        assert_int_equal(res.bytes, 0);
        storage_read_result_release(log, &res);
        return;
    }
    uint8_t *got = malloc(res.bytes + 1);
    assert_int_equal(storage_read_result_copy(&res, got, res.bytes), 0);
    /* A prefix of the expected batches, cut short only by the slice limit. */
    size_t pos = 0;
    int k = i;
    while (pos < res.bytes) {
        assert_true(k < j);
        assert_true(pos + m->b[k].len <= res.bytes);
        assert_memory_equal(got + pos, m->b[k].bytes, m->b[k].len);
        pos += m->b[k].len;
        k++;
    }
    assert_true(k > i);
    if (k < j)
        assert_int_equal(res.slice_count, STORAGE_READ_SLICES_MAX);
    assert_int_equal(res.first_offset, m->b[i].base);
    assert_int_equal(res.last_offset, m->b[k - 1].last);
    free(got);
    storage_read_result_release(log, &res);
}

static void check_lookups(struct storage_log *log, const struct model *m)
{
    /* Timestamp search in log order, from the batch holding the log start. */
    int64_t target = rnd_range(0, 110000);
    int64_t exp_off = -1, exp_ts = -1;
    for (int i = model_find(m, m->start); i < m->n && exp_off < 0; i++) {
        const struct mbatch *b = &m->b[i];
        if (b->max_ts < target)
            continue;
        for (int64_t o = b->base; o <= b->last; o++) {
            if (b->first_ts + (o - b->base) >= target) {
                exp_off = o < m->start ? m->start : o;
                exp_ts = b->first_ts + (o - b->base);
                break;
            }
        }
    }
    int64_t off, ts;
    assert_int_equal(storage_log_offset_for_timestamp(log, target, &off, &ts), 0);
    assert_int_equal(off, exp_off);
    assert_int_equal(ts, exp_ts);
    if (m->start_at_segment) {
        int64_t best = -1, best_off = -1;
        for (int i = model_find(m, m->start); i < m->n; i++)
            if (m->b[i].max_ts > best) {
                best = m->b[i].max_ts;
                best_off = m->b[i].last; /* records rise by 1: the last holds the max */
            }
        assert_int_equal(storage_log_max_timestamp(log, &off, &ts), 0);
        assert_int_equal(ts, best);
        assert_int_equal(off, best_off);
    }
    /* OffsetForLeaderEpoch, as Kafka's LeaderEpochFileCache.endOffsetFor. */
    int32_t e = (int32_t)rnd_range(0, m->nep ? m->epochs[m->nep - 1].epoch + 1 : 2);
    int32_t exp_e = -1;
    int64_t exp_end = -1;
    if (m->nep > 0) {
        if (e == m->epochs[m->nep - 1].epoch) {
            exp_e = e;
            exp_end = m->end;
        } else {
            int hi = 0;
            while (hi < m->nep && m->epochs[hi].epoch <= e)
                hi++;
            if (hi < m->nep) {
                exp_end = m->epochs[hi].start;
                exp_e = hi > 0 ? m->epochs[hi - 1].epoch : e;
            }
        }
    }
    int32_t got_e;
    int64_t got_end;
    storage_log_epoch_end_offset(log, e, &got_e, &got_end);
    assert_int_equal(got_e, exp_e);
    assert_int_equal(got_end, exp_end);
}

static void run_seed(uint64_t seed, int ops)
{
    rs = seed | 1;
    char root[PATH_MAX], dir[PATH_MAX + 16];
    tu_mkdtemp(root, "prop");
    snprintf(dir, sizeof(dir), "%s/p-1", root);
    struct tu_reports rep = {0};
    struct storage_config cfg;
    storage_config_default(&cfg);
    cfg.segment_bytes = (uint64_t)rnd_range(2048, 65536);
    cfg.index_interval_bytes = (uint32_t)rnd_range(64, 4096);
    cfg.max_open_segments = (uint32_t)rnd_range(2, 8);
    cfg.retention_bytes = rnd() % 2 ? -1 : rnd_range(20000, 200000);
    cfg.retention_ms = -1;
    cfg.checkpoint_interval_bytes = (uint64_t)rnd_range(1024, 1 << 20);
    cfg.report = tu_report;
    cfg.report_ctx = &rep;
    struct storage_log *log;
    assert_int_equal(storage_log_open(dir, &cfg, &log), 0);
    struct model m = {0};
    m.start_at_segment = true;
    /* Batches stay well under segment.bytes (a larger one is refused, tested elsewhere). */
    int64_t vmax = (int64_t)cfg.segment_bytes / 16 < 600 ? (int64_t)cfg.segment_bytes / 16 : 600;
    int32_t epoch = 0;
    for (int op = 0; op < ops; op++) {
        int what = (int)(rnd() % 100);
        if (what < 40) { /* leader append of 1..3 batches */
            int nb = (int)rnd_range(1, 3);
            uint8_t *buf = NULL;
            size_t len = 0;
            int64_t tag = m.end, first_ts[3];
            size_t lens[3];
            for (int k = 0; k < nb; k++) {
                uint8_t *b;
                size_t bl;
                int32_t recs = (int32_t)rnd_range(1, 8);
                first_ts[k] = rnd_range(0, 100000);
                tu_build_batch(recs, (size_t)rnd_range(8, vmax), tag, first_ts[k], &b, &bl);
                tag += recs;
                buf = realloc(buf, len + bl);
                memcpy(buf + len, b, bl);
                lens[k] = bl;
                len += bl;
                free(b);
            }
            if (rnd() % 10 == 0)
                epoch++;
            struct storage_append_result r;
            assert_int_equal(storage_log_append_leader(log, buf, len, epoch, &r), 0);
            assert_int_equal(r.base_offset, m.end);
            size_t at = 0;
            for (int k = 0; k < nb; k++) {
                model_push(&m, buf + at, lens[k], first_ts[k]);
                at += lens[k];
            }
            assert_int_equal(r.log_end_offset, m.end);
            free(buf);
        } else if (what < 50) { /* follower append */
            uint8_t *b;
            size_t bl;
            int64_t ts = rnd_range(0, 100000);
            tu_build_batch((int32_t)rnd_range(1, 5), (size_t)rnd_range(8, vmax), m.end, ts, &b,
                           &bl);
            if (rnd() % 10 == 0)
                epoch++;
            kafka_batch_set_base_offset(b, m.end);
            kafka_batch_set_leader_epoch(b, epoch);
            struct storage_append_result r;
            assert_int_equal(storage_log_append_follower(log, b, bl, &r), 0);
            model_push(&m, b, bl, ts);
            free(b);
        } else if (what < 70) {
            int64_t off = rnd_range(m.start > 0 ? m.start - 1 : 0, m.end + 1);
            uint64_t mb = (uint64_t)rnd_range(1, 20000);
            check_read(log, &m, off, mb, rnd() % 2 ? STORAGE_NO_LIMIT : m.hw);
        } else if (what < 74) {
            int64_t off = rnd_range(m.start, m.end);
            assert_int_equal(storage_log_truncate_to(log, off), 0);
            model_truncate(&m, off);
        } else if (what < 80) {
            m.hw = rnd_range(m.start, m.end);
            storage_log_set_high_watermark(log, m.hw);
        } else if (what < 83) {
            if (m.hw > m.start) {
                int64_t to = rnd_range(m.start + 1, m.hw);
                assert_int_equal(storage_log_advance_start(log, to), 0);
                m.start = to;
                m.start_at_segment = false;
                model_epochs_from_start(&m);
            }
        } else if (what < 86) {
            uint32_t deleted;
            assert_int_equal(storage_log_enforce_retention(log, &deleted), 0);
            int64_t s = storage_log_start_offset(log);
            assert_true(s >= m.start && s <= m.hw);
            if (deleted > 0) {
                /* The new start is a batch boundary (a segment base). */
                int i = model_find(&m, s);
                assert_true(i == m.n ? s == m.end : m.b[i].base == s);
                m.start = s;
                m.start_at_segment = true;
                model_epochs_from_start(&m);
            }
        } else if (what < 90) {
            assert_int_equal(storage_log_flush(log, rnd() % 2), 0);
            assert_int_equal(storage_log_flushed_offset(log), m.end);
        } else if (what < 93) {
            assert_int_equal(storage_log_close(log), 0);
            assert_int_equal(storage_log_open(dir, &cfg, &log), 0);
            assert_int_equal(rep.warnings, 0); /* a clean close needs no repair */
        } else {
            check_lookups(log, &m);
        }
        assert_int_equal(storage_log_end_offset(log), m.end);
        assert_int_equal(storage_log_start_offset(log), m.start);
        assert_int_equal(storage_log_high_watermark(log), m.hw);
        /* Between operations the log is idle: its descriptors may go at any time, and every
         * operation above reopens what it needs. */
        if (rnd() % 6 == 0)
            assert_int_equal(storage_log_release_fds(log), 0);
    }
    /* Full read-back at the end. */
    for (int64_t off = m.start; off < m.end; off += 1 + (int64_t)(rnd() % 5))
        check_read(log, &m, off, 1 << 30, STORAGE_NO_LIMIT);
    assert_int_equal(storage_log_close(log), 0);
    model_free(&m);
    tu_rm_rf(root);
}

static void test_random_ops_against_model(void **state)
{
    (void)state;
    int seeds = 6, ops = 400;
    const char *e = getenv("STORAGE_PROPERTY_SEEDS");
    if (e && atoi(e) > 0)
        seeds = atoi(e);
    e = getenv("STORAGE_PROPERTY_OPS");
    if (e && atoi(e) > 0)
        ops = atoi(e);
    uint64_t base = (uint64_t)time(NULL);
    e = getenv("STORAGE_PROPERTY_SEED");
    if (e) {
        base = strtoull(e, NULL, 0);
        seeds = 1;
    }
    for (int i = 0; i < seeds; i++) {
        uint64_t seed = base + (uint64_t)i * 7919;
        printf("property seed %llu (STORAGE_PROPERTY_SEED=%llu to replay)\n",
               (unsigned long long)seed, (unsigned long long)seed);
        fflush(stdout);
        run_seed(seed, ops);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_random_ops_against_model)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
