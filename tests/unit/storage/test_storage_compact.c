/* storage/ compaction (compact.c): the latest record per key survives with its offset, older
 * ones and null-key records go, gaps are readable and survive recovery (also a full CRC scan),
 * tombstones live until their delete horizon (KIP-534), a crash at each step of the swap
 * recovers to a consistent log, compressed batches keep their codec, a bounded key map cleans a
 * prefix per pass, and a random property test against a model (key -> latest record). Every
 * record's value is its sequence number; the test knows the offset each sequence got, so "offsets
 * preserved" is checked record by record. STORAGE_COMPACT_SEEDS scales the property test,
 * STORAGE_COMPACT_SEED replays one seed. */
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"
#include "storage/storage.h"
#include "storage_test_util.h"

#define MAX_SEQ  200000
#define MAX_KEYS 2048

struct kv {
    int key;   /* -1: null key */
    bool tomb; /* null value */
};

/* One record read back. */
struct rrec {
    int64_t offset;
    int key; /* -1 null */
    bool tomb;
    int64_t seq; /* -1 for a tombstone */
    int64_t ts;
    int codec;
    bool horizon;
    int64_t base_ts;
};

struct fx {
    char root[PATH_MAX];
    char dir[PATH_MAX + 16];
    struct storage_config cfg;
    struct storage_compact_config cc;
    struct tu_reports reports;
    struct tu_clock clock;
    struct storage_log *log;
    int64_t seq_offset[MAX_SEQ]; /* offset each value sequence number was written at */
    int64_t seq_ts[MAX_SEQ];
    int64_t next_seq;
    /* model: the latest record per key */
    int64_t latest_off[MAX_KEYS]; /* -1 never written */
    bool latest_tomb[MAX_KEYS];
    int64_t latest_seq[MAX_KEYS];
    struct rrec *recs;
    int nrecs, caprecs;
    uint64_t rng;
};

static uint64_t rnd(struct fx *f)
{
    f->rng ^= f->rng << 13;
    f->rng ^= f->rng >> 7;
    f->rng ^= f->rng << 17;
    return f->rng;
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tu_mkdtemp(f->root, "compact");
    snprintf(f->dir, sizeof(f->dir), "%s/c-0", f->root);
    storage_config_default(&f->cfg);
    f->cfg.segment_bytes = 4096;
    f->cfg.index_interval_bytes = 256;
    f->cfg.segment_ms = -1;
    f->cfg.retention_ms = -1;
    f->cfg.report = getenv("COMPACT_DEBUG") ? NULL : tu_report;
    f->cfg.report_ctx = &f->reports;
    f->clock.now_ms = 1000000000;
    f->cfg.clock = tu_clock_now;
    f->cfg.clock_ctx = &f->clock;
    storage_compact_config_default(&f->cc);
    f->cc.min_cleanable_dirty_ratio = 0.0;
    for (int k = 0; k < MAX_KEYS; k++)
        f->latest_off[k] = -1;
    f->rng = 0x9e3779b97f4a7c15ULL;
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->log != NULL)
        assert_int_equal(storage_log_close(f->log), 0);
    tu_rm_rf(f->root);
    free(f->recs);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    if (f->log != NULL)
        assert_int_equal(storage_log_close(f->log), 0);
    f->log = NULL;
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
}

/* Appends one batch of n records with codec; producer id pid (-1 none). */
static void append(struct fx *f, const struct kv *kvs, int n, enum kafka_codec codec, int64_t pid)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, f->clock.now_ms);
    b.producer_id = pid;
    b.producer_epoch = pid >= 0 ? 0 : -1;
    b.base_sequence = pid >= 0 ? 0 : -1;
    int64_t first_seq = f->next_seq;
    for (int i = 0; i < n; i++) {
        char key[16];
        int kl = snprintf(key, sizeof(key), "key-%d", kvs[i].key);
        uint8_t val[8];
        int64_t seq = f->next_seq++;
        assert_true(seq < MAX_SEQ);
        for (int k = 0; k < 8; k++)
            val[k] = (uint8_t)(seq >> (56 - 8 * k));
        f->seq_ts[seq] = f->clock.now_ms + i;
        assert_int_equal(
            kafka_batch_builder_append(&b, f->clock.now_ms + i, kvs[i].key < 0 ? NULL : key,
                                       kvs[i].key < 0 ? -1 : kl, kvs[i].tomb ? NULL : val,
                                       kvs[i].tomb ? -1 : 8, NULL, 0),
            0);
    }
    uint8_t *buf;
    size_t len;
    assert_int_equal(kafka_batch_builder_finish(&b, codec, &buf, &len), 0);
    kafka_batch_builder_deinit(&b);
    struct storage_append_result res;
    assert_int_equal(storage_log_append_leader(f->log, buf, len, 1, &res), 0);
    free(buf);
    for (int i = 0; i < n; i++) {
        int64_t off = res.base_offset + i;
        f->seq_offset[first_seq + i] = off;
        int k = kvs[i].key;
        if (k >= 0) {
            f->latest_off[k] = off;
            f->latest_tomb[k] = kvs[i].tomb;
            f->latest_seq[k] = first_seq + i;
        }
    }
}

/* Makes everything appended flushed and committed (cleanable once sealed). */
static void commit(struct fx *f)
{
    assert_int_equal(storage_log_flush(f->log, false), 0);
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
}

static void add_rec(struct fx *f, struct rrec r)
{
    if (f->nrecs == f->caprecs) {
        f->caprecs = f->caprecs ? f->caprecs * 2 : 1024;
        f->recs = realloc(f->recs, (size_t)f->caprecs * sizeof(*f->recs));
        assert_non_null(f->recs);
    }
    f->recs[f->nrecs++] = r;
}

/* Reads the whole log into f->recs, checking every batch (CRC, records) on the way. */
static void read_back(struct fx *f)
{
    f->nrecs = 0;
    uint8_t *buf;
    size_t len;
    assert_int_equal(tu_read_all(f->log, storage_log_start_offset(f->log), &buf, &len), 0);
    size_t pos = 0;
    int64_t prev_last = -1;
    while (pos < len) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(buf + pos, len - pos, &h), 0);
        assert_true(kafka_batch_crc_ok(buf + pos, &h));
        assert_true(h.base_offset > prev_last); /* increasing, gaps allowed */
        prev_last = kafka_batch_last_offset(&h);
        struct kafka_batch_reader br;
        assert_int_equal(kafka_batch_reader_open(&br, buf + pos, len - pos, 1u << 26), 0);
        struct kafka_record_iter it;
        struct kafka_record r;
        kafka_batch_reader_iter(&br, &it);
        int rc;
        int64_t prev_delta = -1;
        while ((rc = kafka_record_iter_next(&it, &r)) == 1) {
            assert_true(r.offset_delta > prev_delta && r.offset_delta <= h.last_offset_delta);
            prev_delta = r.offset_delta;
            struct rrec x = {.offset = h.base_offset + r.offset_delta,
                             .key = -1,
                             .tomb = r.value_len < 0,
                             .seq = -1,
                             .ts = h.base_timestamp + r.timestamp_delta,
                             .codec = kafka_batch_codec(&h),
                             .horizon = (h.attributes & KAFKA_BATCH_ATTR_DELETE_HORIZON) != 0,
                             .base_ts = h.base_timestamp};
            if (r.key_len >= 0) {
                char key[32] = {0};
                assert_true(r.key_len < (int32_t)sizeof(key));
                memcpy(key, r.key, (size_t)r.key_len);
                assert_int_equal(sscanf(key, "key-%d", &x.key), 1);
            }
            if (!x.tomb) {
                assert_int_equal(r.value_len, 8);
                int64_t s = 0;
                for (int k = 0; k < 8; k++)
                    s = s << 8 | r.value[k];
                x.seq = s;
            }
            add_rec(f, x);
        }
        assert_int_equal(rc, 0);
        kafka_batch_reader_close(&br);
        pos += kafka_batch_total_size(&h);
    }
    free(buf);
}

/* The invariants of a compacted log against the model; `complete`: a pass just ended, so below
 * the cleaned offset every key appears once and no null key is left. */
static void check_model(struct fx *f, bool complete, int64_t horizon_now)
{
    read_back(f);
    int64_t cleaned = storage_log_cleaned_offset(f->log);
    static int64_t last_seen[MAX_KEYS];
    static bool below_seen[MAX_KEYS];
    for (int k = 0; k < MAX_KEYS; k++) {
        last_seen[k] = -1;
        below_seen[k] = false;
    }
    for (int i = 0; i < f->nrecs; i++) {
        const struct rrec *r = &f->recs[i];
        if (i > 0)
            assert_true(r->offset > f->recs[i - 1].offset);
        if (r->seq >= 0) {
            /* Offsets preserved: each value sits at the offset it was written at. */
            assert_int_equal(f->seq_offset[r->seq], r->offset);
            assert_int_equal(f->seq_ts[r->seq], r->ts); /* and its timestamp */
        }
        if (r->key >= 0)
            last_seen[r->key] = r->offset;
        if (complete && r->offset < cleaned) {
            assert_true(r->key >= 0);
            assert_false(below_seen[r->key]);
            below_seen[r->key] = true;
        }
        if (r->tomb && r->horizon && horizon_now >= 0)
            assert_true(r->base_ts > horizon_now || r->offset >= cleaned);
    }
    for (int k = 0; k < MAX_KEYS; k++) {
        if (f->latest_off[k] < 0) {
            assert_int_equal(last_seen[k], -1);
            continue;
        }
        if (f->latest_tomb[k] && last_seen[k] < 0)
            continue; /* a tombstone removed after its horizon: the key is gone */
        /* The newest record of every key is there (no older value resurfaces). */
        assert_int_equal(last_seen[k], f->latest_off[k]);
    }
}

static void fill(struct fx *f, int updates, int keys, int per_batch, enum kafka_codec codec)
{
    struct kv kvs[64];
    for (int i = 0; i < updates; i += per_batch) {
        for (int j = 0; j < per_batch; j++)
            kvs[j] = (struct kv){.key = (int)(rnd(f) % (uint64_t)keys), .tomb = false};
        append(f, kvs, per_batch, codec, -1);
    }
    commit(f);
}

static void compact_all(struct fx *f, struct storage_compact_stats *st)
{
    assert_int_equal(storage_log_compact(f->log, &f->cc, storage_log_end_offset(f->log), st), 0);
    assert_false(storage_log_compacting(f->log));
}

/* ---------------------------------------------------------------- tests */

static void test_latest_per_key(void **state)
{
    struct fx *f = *state;
    fill(f, 3000, 20, 5, KAFKA_CODEC_NONE);
    uint32_t segs = storage_log_segment_count(f->log);
    uint64_t size = storage_log_size_bytes(f->log);
    assert_true(segs > 10);
    struct storage_compact_stats st;
    compact_all(f, &st);
    assert_int_equal(st.map_end, storage_log_cleaned_offset(f->log));
    assert_true(st.map_end > 0 && st.map_end <= storage_log_end_offset(f->log));
    assert_true(st.records_kept < st.records_read);
    assert_true(storage_log_size_bytes(f->log) < size / 4);
    check_model(f, true, -1);
    assert_true(f->nrecs < 3000 / 4);
    /* The first pass rewrites each full segment alone; the next merges the small results. */
    fill(f, 600, 20, 5, KAFKA_CODEC_NONE);
    compact_all(f, &st);
    assert_true(storage_log_segment_count(f->log) < segs / 3); /* 24 tiny ones became one */
    check_model(f, true, -1);
    /* Appends continue after compaction; reopen trusts the compacted segments. */
    fill(f, 100, 20, 5, KAFKA_CODEC_NONE);
    reopen(f);
    check_model(f, true, -1);
    int before = f->nrecs;
    /* Without the partition checkpoint the whole log is scanned with CRCs: gaps must pass. */
    char path[PATH_MAX + 64];
    assert_int_equal(storage_log_close(f->log), 0);
    f->log = NULL;
    snprintf(path, sizeof(path), "%s/partition.checkpoint", f->dir);
    assert_int_equal(unlink(path), 0);
    f->reports.warnings = 0;
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    read_back(f);
    assert_int_equal(f->nrecs, before);
    assert_int_equal(f->reports.warnings, 0);
    assert_int_equal(storage_log_end_offset(f->log), f->seq_offset[f->next_seq - 1] + 1);
}

/* Every fetch offset, also inside gaps, returns the first batch that ends at or after it. */
static void test_gaps_readable(void **state)
{
    struct fx *f = *state;
    fill(f, 1500, 300, 3, KAFKA_CODEC_NONE);
    compact_all(f, NULL);
    uint8_t *all;
    size_t len;
    assert_int_equal(tu_read_all(f->log, 0, &all, &len), 0);
    int64_t lasts[4096], bases[4096];
    int nb = 0;
    for (size_t pos = 0; pos < len;) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(all + pos, len - pos, &h), 0);
        assert_true(nb < 4096);
        bases[nb] = h.base_offset;
        lasts[nb++] = kafka_batch_last_offset(&h);
        pos += kafka_batch_total_size(&h);
    }
    free(all);
    int gaps = 0;
    for (int i = 1; i < nb; i++)
        gaps += bases[i] != lasts[i - 1] + 1;
    assert_true(gaps > 10);
    int b = 0;
    for (int64_t o = 0; o < storage_log_end_offset(f->log); o++) {
        while (b < nb && lasts[b] < o)
            b++;
        struct storage_read_result res;
        assert_int_equal(storage_log_read(f->log, o, 1, STORAGE_NO_LIMIT, &res), 0);
        if (b == nb) {
            assert_int_equal(res.bytes, 0);
        } else {
            assert_true(res.bytes > 0);
            assert_int_equal(res.first_offset, bases[b]); /* may be above o: a gap */
        }
        storage_read_result_release(f->log, &res);
    }
}

/* The dedicated tombstone scenario: keys 0..9 written, 0..4 deleted, more data for 5..9. */
static void test_tombstone_horizon(void **state)
{
    struct fx *f = *state;
    f->cc.delete_retention_ms = 5000;
    struct kv kvs[10];
    for (int round = 0; round < 30; round++) {
        for (int j = 0; j < 10; j++)
            kvs[j] = (struct kv){.key = j, .tomb = false};
        append(f, kvs, 10, KAFKA_CODEC_NONE, -1);
    }
    for (int j = 0; j < 5; j++)
        kvs[j] = (struct kv){.key = j, .tomb = true};
    append(f, kvs, 5, KAFKA_CODEC_NONE, -1);
    for (int round = 0; round < 60; round++) {
        for (int j = 0; j < 5; j++)
            kvs[j] = (struct kv){.key = 5 + j, .tomb = false};
        append(f, kvs, 5, KAFKA_CODEC_NONE, -1);
    }
    commit(f);
    int64_t t0 = f->clock.now_ms;
    compact_all(f, NULL);
    check_model(f, true, -1);
    int tombs = 0;
    for (int i = 0; i < f->nrecs; i++) {
        const struct rrec *r = &f->recs[i];
        assert_false(r->key >= 0 && r->key < 5 && !r->tomb); /* deleted keys' values are gone */
        if (r->tomb) {
            tombs++;
            assert_true(r->horizon);
            assert_int_equal(r->base_ts, t0 + 5000);
        }
    }
    assert_int_equal(tombs, 5);
    /* Before the horizon a second pass keeps them. */
    f->clock.now_ms += 4000;
    fill(f, 300, 10, 5, KAFKA_CODEC_NONE);
    compact_all(f, NULL);
    check_model(f, true, -1);
    /* After the horizon they go (keys not rewritten since). */
    struct kv d[2] = {{.key = 0, .tomb = true}, {.key = 1, .tomb = true}};
    append(f, d, 2, KAFKA_CODEC_NONE, -1);
    struct kv more[5];
    for (int round = 0; round < 60; round++) {
        for (int j = 0; j < 5; j++)
            more[j] = (struct kv){.key = 5 + j, .tomb = false};
        append(f, more, 5, KAFKA_CODEC_NONE, -1);
    }
    commit(f);
    compact_all(f, NULL); /* sets the horizon of the new tombstones */
    read_back(f);
    int before = 0;
    for (int i = 0; i < f->nrecs; i++)
        before += f->recs[i].tomb;
    assert_true(before >= 2);
    f->clock.now_ms += 6000;
    for (int round = 0; round < 60; round++) { /* new dirty data, keys 0 and 1 stay deleted */
        for (int j = 0; j < 5; j++)
            more[j] = (struct kv){.key = 5 + j, .tomb = false};
        append(f, more, 5, KAFKA_CODEC_NONE, -1);
    }
    commit(f);
    struct storage_compact_stats st;
    compact_all(f, &st);
    assert_true(st.tombstones_removed >= 2);
    check_model(f, true, f->clock.now_ms);
    for (int i = 0; i < f->nrecs; i++)
        assert_true(f->recs[i].key != 0 && f->recs[i].key != 1); /* gone with their horizon */
    for (int i = 0; i < f->nrecs; i++)
        if (f->recs[i].tomb)
            assert_true(f->recs[i].offset >= storage_log_cleaned_offset(f->log) ||
                        f->recs[i].base_ts > f->clock.now_ms);
}

/* Original segments smaller than segment.bytes: groups merge several segments into one. */
static void make_mergeable(struct fx *f)
{
    /* A key written once every 8 batches survives in every segment, so a merged group's result
     * reaches into each of its segments (recovery must then delete the leftovers). */
    struct kv kvs[5];
    for (int i = 0; i < 600; i++) {
        for (int j = 0; j < 5; j++)
            kvs[j] = (struct kv){.key = (int)(rnd(f) % 30), .tomb = false};
        if (i % 8 == 0)
            kvs[0].key = 100 + i / 8;
        append(f, kvs, 5, KAFKA_CODEC_NONE, -1);
    }
    commit(f);
    assert_int_equal(storage_log_close(f->log), 0);
    f->log = NULL;
    f->cfg.segment_bytes = 16384;
    reopen(f);
    commit(f);
}

static void crash_at(void **state, enum storage_compact_crash where)
{
    struct fx *f = *state;
    make_mergeable(f);
    uint32_t segs = storage_log_segment_count(f->log);
    f->cc.crash_at = where;
    int rc = storage_log_compact(f->log, &f->cc, storage_log_end_offset(f->log), NULL);
    assert_int_equal(rc, LM_E_STATE);
    reopen(f); /* as after a crash there: recovery finishes or rolls back the swap */
    check_model(f, false, -1);
    if (where == STORAGE_COMPACT_CRASH_CLEANED)
        assert_int_equal(storage_log_segment_count(f->log), segs); /* rolled back */
    else
        assert_int_equal(storage_log_segment_count(f->log), segs - 3); /* group of 4 -> 1 */
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/%020d.log.cleaned", f->dir, 0);
    assert_int_not_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/%020d.log.swap", f->dir, 0);
    assert_int_not_equal(access(path, F_OK), 0);
    /* A full pass afterwards still produces the compacted log. */
    f->cc.crash_at = STORAGE_COMPACT_CRASH_NONE;
    compact_all(f, NULL);
    check_model(f, true, -1);
    reopen(f);
    check_model(f, true, -1);
}

static void test_crash_after_cleaned(void **state)
{
    crash_at(state, STORAGE_COMPACT_CRASH_CLEANED);
}

static void test_crash_after_swap(void **state)
{
    crash_at(state, STORAGE_COMPACT_CRASH_SWAP);
}

static void test_crash_after_rename(void **state)
{
    crash_at(state, STORAGE_COMPACT_CRASH_RENAMED);
}

static void test_compressed(void **state)
{
    struct fx *f = *state;
    static const enum kafka_codec codecs[] = {KAFKA_CODEC_GZIP, KAFKA_CODEC_SNAPPY, KAFKA_CODEC_LZ4,
                                              KAFKA_CODEC_ZSTD};
    for (size_t c = 0; c < 4; c++) {
        struct kv kvs[10];
        for (int i = 0; i < 120; i++) {
            for (int j = 0; j < 10; j++)
                kvs[j] = (struct kv){.key = (int)(rnd(f) % 25), .tomb = false};
            append(f, kvs, 10, codecs[c], -1);
        }
    }
    commit(f);
    struct storage_compact_stats st;
    compact_all(f, &st);
    assert_true(st.batches_rewritten > 0);
    check_model(f, true, -1);
    /* Rewritten batches keep their codec: the log only ever had compressed batches. */
    for (int i = 0; i < f->nrecs; i++)
        assert_int_not_equal(f->recs[i].codec, KAFKA_CODEC_NONE);
}

static void test_bounded_map(void **state)
{
    struct fx *f = *state;
    f->cc.dedupe_buffer_bytes = 24 * 128; /* 128 slots, 96 keys per pass */
    fill(f, 2000, 400, 4, KAFKA_CODEC_NONE);
    int64_t end = storage_log_end_offset(f->log);
    int passes = 0;
    int64_t prev = storage_log_cleaned_offset(f->log);
    while (passes < 200) {
        struct storage_compact_stats st;
        compact_all(f, &st);
        if (storage_log_cleaned_offset(f->log) == prev)
            break;
        passes++;
        assert_true(st.map_end > prev);
        prev = storage_log_cleaned_offset(f->log);
        check_model(f, true, -1);
    }
    assert_true(passes > 3); /* each pass covered only the prefix its map held */
    assert_true(prev > end / 2);
    /* One batch with more keys than the map holds cannot be cleaned. */
    f->cc.dedupe_buffer_bytes = 24 * 16;
    struct kv kvs[40];
    for (int j = 0; j < 40; j++)
        kvs[j] = (struct kv){.key = 1000 + j, .tomb = false};
    for (int i = 0; i < 200; i++)
        append(f, kvs, 40, KAFKA_CODEC_NONE, -1);
    commit(f);
    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++) /* the small batches before it still fit */
        rc = storage_log_compact(f->log, &f->cc, storage_log_end_offset(f->log), NULL);
    assert_int_equal(rc, LM_E_FULL);
}

static void test_null_keys_and_producers(void **state)
{
    struct fx *f = *state;
    struct kv kvs[4];
    for (int i = 0; i < 300; i++) {
        kvs[0] = (struct kv){.key = -1};
        kvs[1] = (struct kv){.key = i % 3};
        kvs[2] = (struct kv){.key = -1};
        kvs[3] = (struct kv){.key = 3};
        append(f, kvs, 4, KAFKA_CODEC_NONE, i < 150 ? 7 : 8); /* two producers */
    }
    commit(f);
    compact_all(f, NULL);
    check_model(f, true, -1); /* also: no null key below the cleaned offset */
    /* Producer 7's batches are all superseded; its last one keeps an empty header (its state),
     * earlier ones are gone. */
    uint8_t *buf;
    size_t len;
    assert_int_equal(tu_read_all(f->log, 0, &buf, &len), 0);
    int empty7 = 0;
    for (size_t pos = 0; pos < len;) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(buf + pos, len - pos, &h), 0);
        if (h.producer_id == 7 && h.records_count == 0) {
            empty7++;
            assert_int_equal(h.base_offset, f->seq_offset[149 * 4]);
            assert_int_equal(h.last_offset_delta, 3);
        }
        pos += kafka_batch_total_size(&h);
    }
    free(buf);
    assert_int_equal(empty7, 1);
}

/* Incremental steps interleaved with appends, reads and retention-like changes. */
static void test_steps_interleaved(void **state)
{
    struct fx *f = *state;
    fill(f, 3000, 15, 5, KAFKA_CODEC_NONE);
    assert_true(storage_log_compact_due(f->log, &f->cc, storage_log_end_offset(f->log)));
    bool busy = true;
    int steps = 0;
    struct storage_compact_stats st;
    int64_t clean_up_to = storage_log_end_offset(f->log);
    while (busy) {
        assert_int_equal(storage_log_compact_step(f->log, &f->cc, clean_up_to, 4096, &busy, &st),
                         0);
        steps++;
        struct kv kvs[2] = {{.key = (int)(rnd(f) % 15)}, {.key = (int)(rnd(f) % 15)}};
        append(f, kvs, 2, KAFKA_CODEC_NONE, -1);
        commit(f);
        read_back(f); /* readers see a consistent log mid-pass */
        assert_true(steps < 100000);
    }
    assert_true(steps > 10);
    check_model(f, true, -1);
    /* Clean: a higher ratio threshold now finds little to do. */
    f->cc.min_cleanable_dirty_ratio = 0.99;
    assert_false(storage_log_compact_due(f->log, &f->cc, clean_up_to));
    /* A pass abandoned by a truncation leaves no temporary files. */
    f->cc.min_cleanable_dirty_ratio = 0.0;
    fill(f, 2000, 15, 5, KAFKA_CODEC_NONE);
    assert_int_equal(
        storage_log_compact_step(f->log, &f->cc, storage_log_end_offset(f->log), 4096, &busy, NULL),
        0);
    assert_true(busy);
    storage_log_compact_abort(f->log);
    assert_false(storage_log_compacting(f->log));
    reopen(f);
    check_model(f, false, -1);
}

/* Only flushed records supersede: nothing is cleaned past the flushed offset. */
static void test_waits_for_flush(void **state)
{
    struct fx *f = *state;
    struct kv kvs[5];
    for (int i = 0; i < 600; i++) {
        for (int j = 0; j < 5; j++)
            kvs[j] = (struct kv){.key = j, .tomb = false};
        append(f, kvs, 5, KAFKA_CODEC_NONE, -1);
    }
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log)); /* not flushed */
    assert_true(storage_log_segment_count(f->log) > 4);
    assert_false(storage_log_compact_due(f->log, &f->cc, storage_log_end_offset(f->log)));
    /* The owner is asked for a flush up to the sealed segments' end. */
    int64_t want = storage_log_compact_flush_wanted(f->log, &f->cc, storage_log_end_offset(f->log));
    assert_true(want > storage_log_flushed_offset(f->log));
    assert_true(want <= storage_log_end_offset(f->log));
    compact_all(f, NULL);
    assert_int_equal(storage_log_cleaned_offset(f->log), 0);
    commit(f);
    assert_int_equal(storage_log_compact_flush_wanted(f->log, &f->cc, want), -1);
    assert_true(storage_log_compact_due(f->log, &f->cc, storage_log_end_offset(f->log)));
    compact_all(f, NULL);
    assert_true(storage_log_cleaned_offset(f->log) > 0);
    check_model(f, true, -1);
}

/* A read result taken before the swap keeps reading the old bytes through its fd. */
static void test_pinned_reader(void **state)
{
    struct fx *f = *state;
    fill(f, 2000, 10, 5, KAFKA_CODEC_NONE);
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 0, 1 << 20, STORAGE_NO_LIMIT, &res), 0);
    assert_true(res.bytes > 4096);
    uint8_t *before = malloc(res.bytes);
    assert_int_equal(storage_read_result_copy(&res, before, res.bytes), 0);
    compact_all(f, NULL);
    uint8_t *after = malloc(res.bytes);
    assert_int_equal(storage_read_result_copy(&res, after, res.bytes), 0);
    assert_memory_equal(before, after, res.bytes);
    for (size_t pos = 0; pos < res.bytes;) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(after + pos, res.bytes - pos, &h), 0);
        assert_true(kafka_batch_crc_ok(after + pos, &h));
        pos += kafka_batch_total_size(&h);
    }
    storage_read_result_release(f->log, &res);
    free(before);
    free(after);
    check_model(f, true, -1);
    reopen(f);
    check_model(f, true, -1);
}

/* Random appends (keys, tombstones, null keys, codecs), compactions with random map sizes and
 * budgets, reopens and clock moves, checked against the model after each step. */
static void test_property(void **state)
{
    struct fx *f = *state;
    const char *env = getenv("STORAGE_COMPACT_SEEDS");
    int seeds = env != NULL ? atoi(env) : 6;
    const char *one = getenv("STORAGE_COMPACT_SEED");
    uint64_t seed0 = one != NULL ? strtoull(one, NULL, 10) : (uint64_t)time(NULL);
    if (one != NULL)
        seeds = 1;
    for (int s = 0; s < seeds; s++) {
        uint64_t seed = seed0 + (uint64_t)s * 7919;
        print_message("compact property seed %llu\n", (unsigned long long)seed);
        /* Fresh log per seed. */
        assert_int_equal(storage_log_close(f->log), 0);
        f->log = NULL;
        tu_rm_rf(f->dir);
        for (int k = 0; k < MAX_KEYS; k++)
            f->latest_off[k] = -1;
        f->next_seq = 0;
        f->rng = seed | 1;
        f->cfg.segment_bytes = 1024 + rnd(f) % 8192;
        assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
        int keys = 5 + (int)(rnd(f) % 200);
        for (int op = 0; op < 250; op++) {
            uint64_t r = rnd(f) % 100;
            if (r < 70) {
                struct kv kvs[16];
                int n = 1 + (int)(rnd(f) % 16);
                for (int j = 0; j < n; j++) {
                    uint64_t x = rnd(f) % 100;
                    kvs[j].key = x < 4 ? -1 : (int)(rnd(f) % (uint64_t)keys);
                    kvs[j].tomb = kvs[j].key >= 0 && x >= 4 && x < 12;
                }
                enum kafka_codec codec = (enum kafka_codec)(rnd(f) % 5);
                append(f, kvs, n, codec, rnd(f) % 4 == 0 ? (int64_t)(rnd(f) % 3) : -1);
                commit(f);
            } else if (r < 88) {
                struct storage_compact_config cc = f->cc;
                cc.dedupe_buffer_bytes = rnd(f) % 2 ? 24 * 64 : 1u << 20;
                cc.delete_retention_ms = (int64_t)(rnd(f) % 3000);
                int64_t upto = storage_log_end_offset(f->log) - (int64_t)(rnd(f) % 50);
                bool busy = true;
                int rc = 0;
                while (busy && rc == 0)
                    rc = storage_log_compact_step(f->log, &cc, upto, 1 + rnd(f) % 20000, &busy,
                                                  NULL);
                if (rc == LM_E_FULL)
                    continue; /* a batch with more keys than 48: allowed outcome */
                assert_int_equal(rc, 0);
                check_model(f, true, -1);
            } else if (r < 94) {
                reopen(f);
                check_model(f, false, -1);
            } else {
                f->clock.now_ms += (int64_t)(rnd(f) % 4000);
            }
        }
        check_model(f, false, -1);
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_latest_per_key),
        T(test_gaps_readable),
        T(test_tombstone_horizon),
        T(test_crash_after_cleaned),
        T(test_crash_after_swap),
        T(test_crash_after_rename),
        T(test_compressed),
        T(test_bounded_map),
        T(test_null_keys_and_producers),
        T(test_steps_interleaved),
        T(test_pinned_reader),
        T(test_waits_for_flush),
        T(test_property),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
