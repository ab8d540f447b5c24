/* The log's open transactions and aborted-transaction index (storage/txn.c): the first unstable
 * offset, .txnindex entries (Kafka's AbortedTxn) written on abort markers, read back for a
 * fetch range, surviving a clean close and a crash, cut by truncation and deleted with their
 * segment. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"
#include "storage/storage.h"
#include "storage_test_util.h"

struct fx {
    char dir[PATH_MAX];
    struct storage_config cfg;
    struct tu_clock clock;
    struct tu_reports reports;
    struct storage_log *log;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tu_mkdtemp(f->dir, "txn");
    strcat(f->dir, "/topic-0");
    storage_config_default(&f->cfg);
    f->clock.now_ms = 1700000000000;
    f->cfg.clock = tu_clock_now;
    f->cfg.clock_ctx = &f->clock;
    f->cfg.report = tu_report;
    f->cfg.report_ctx = &f->reports;
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    if (f->log != NULL)
        assert_int_equal(storage_log_close(f->log), 0);
    char parent[PATH_MAX];
    snprintf(parent, sizeof(parent), "%s", f->dir);
    *strrchr(parent, '/') = '\0';
    tu_rm_rf(parent);
    free(f);
    return 0;
}

/* A transactional data batch of n records of producer pid (epoch 0). */
static void append_data(struct fx *f, int64_t pid, int n, bool transactional)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, 1000);
    b.attributes = transactional ? KAFKA_BATCH_ATTR_TRANSACTIONAL : 0;
    b.producer_id = pid;
    b.producer_epoch = 0;
    b.base_sequence = 0;
    for (int i = 0; i < n; i++)
        assert_int_equal(kafka_batch_builder_append(&b, 1000, "k", 1, "v", 1, NULL, 0), 0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len), 0);
    kafka_batch_builder_deinit(&b);
    struct storage_append_result res;
    assert_int_equal(storage_log_append_leader(f->log, buf, len, 1, &res), 0);
    free(buf);
}

static int64_t append_marker(struct fx *f, int64_t pid, int16_t type)
{
    uint8_t *buf;
    size_t len;
    assert_int_equal(kafka_txn_marker_build(pid, 0, type, 3, f->clock.now_ms, &buf, &len), 0);
    struct storage_append_result res;
    assert_int_equal(storage_log_append_leader(f->log, buf, len, 1, &res), 0);
    free(buf);
    return res.base_offset;
}

static uint32_t aborted(struct fx *f, int64_t from, int64_t upper, struct storage_aborted_txn *out)
{
    uint32_t n = 0;
    assert_int_equal(storage_log_aborted_txns(f->log, from, upper, out, 8, &n), 0);
    return n;
}

static off_t txnindex_size(struct fx *f, int64_t base)
{
    char path[PATH_MAX + 40];
    snprintf(path, sizeof(path), "%s/%020lld.txnindex", f->dir, (long long)base);
    struct stat st;
    return stat(path, &st) == 0 ? st.st_size : -1;
}

/* offsets: 0-2 pid 7 txn, 3 plain, 4-5 pid 8 txn, 6 abort 7, 7 commit 8 */
static void fill(struct fx *f)
{
    append_data(f, 7, 3, true);
    assert_int_equal(storage_log_first_unstable_offset(f->log), 0);
    append_data(f, 99, 1, false);
    append_data(f, 8, 2, true);
    append_data(f, 7, 1, true); /* same transaction: the first offset stays 0 */
    assert_int_equal(storage_log_first_unstable_offset(f->log), 0);
    assert_int_equal(append_marker(f, 7, KAFKA_CONTROL_ABORT), 7);
    assert_int_equal(storage_log_first_unstable_offset(f->log), 4);
    assert_int_equal(append_marker(f, 8, KAFKA_CONTROL_COMMIT), 8);
    assert_int_equal(storage_log_first_unstable_offset(f->log), -1);
}

static void check_filled(struct fx *f)
{
    struct storage_aborted_txn a[8];
    assert_int_equal(aborted(f, 0, 9, a), 1);
    assert_int_equal(a[0].producer_id, 7);
    assert_int_equal(a[0].first_offset, 0);
    assert_int_equal(a[0].last_offset, 7);
    assert_int_equal(a[0].last_stable_offset, 4); /* pid 8's open transaction */
    assert_int_equal(aborted(f, 7, 9, a), 1);     /* the marker itself is in range */
    assert_int_equal(aborted(f, 8, 9, a), 0);
    assert_int_equal(aborted(f, 0, 0, a), 0);
    assert_int_equal(txnindex_size(f, 0), 34);
}

static void test_first_unstable_and_index(void **state)
{
    struct fx *f = *state;
    fill(f);
    check_filled(f);
    /* an abort without data of its producer here is an empty transaction at the marker */
    int64_t m = append_marker(f, 5, KAFKA_CONTROL_ABORT);
    struct storage_aborted_txn a[8];
    assert_int_equal(aborted(f, m, m + 1, a), 1);
    assert_int_equal(a[0].first_offset, m);
    assert_int_equal(a[0].last_stable_offset, m + 1);
    assert_int_equal(txnindex_size(f, 0), 68);
}

static void test_survives_close_and_crash(void **state)
{
    struct fx *f = *state;
    fill(f);
    append_data(f, 9, 2, true); /* 9-10 open */
    assert_int_equal(storage_log_close(f->log), 0);
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    check_filled(f);
    assert_int_equal(storage_log_first_unstable_offset(f->log), 9);
    /* more after the checkpoint, then a crash (no flush, no checkpoint) */
    append_data(f, 10, 1, true);              /* 11 */
    append_marker(f, 9, KAFKA_CONTROL_ABORT); /* 12 */
    append_data(f, 11, 1, true);              /* 13 open */
    assert_int_equal(storage_log_close_unsynced(f->log), 0);
    f->log = NULL;
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    assert_int_equal(storage_log_first_unstable_offset(f->log), 11);
    struct storage_aborted_txn a[8];
    assert_int_equal(aborted(f, 9, 14, a), 1);
    assert_int_equal(a[0].producer_id, 9);
    assert_int_equal(a[0].first_offset, 9);
    assert_int_equal(a[0].last_stable_offset, 11);
}

static void test_lost_index_tail_rewritten(void **state)
{
    struct fx *f = *state;
    append_data(f, 9, 2, true);                           /* 0-1 */
    assert_int_equal(storage_log_flush(f->log, true), 0); /* the checkpoint: pid 9 open at 0 */
    append_marker(f, 9, KAFKA_CONTROL_ABORT);             /* 2 */
    assert_int_equal(storage_log_close_unsynced(f->log), 0);
    f->log = NULL;
    /* the crash lost the index entry but not the marker */
    char path[PATH_MAX + 40];
    snprintf(path, sizeof(path), "%s/%020lld.txnindex", f->dir, 0LL);
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    struct storage_aborted_txn a[8];
    assert_int_equal(aborted(f, 0, 3, a), 1);
    assert_int_equal(a[0].first_offset, 0);
    assert_int_equal(a[0].last_offset, 2);
    assert_int_equal(txnindex_size(f, 0), 34);
    assert_int_equal(storage_log_first_unstable_offset(f->log), -1);
}

static void test_truncate_reopens(void **state)
{
    struct fx *f = *state;
    fill(f);
    /* a follower's divergent tail: the abort of 7 and the commit of 8 go */
    assert_int_equal(storage_log_truncate_to(f->log, 7), 0);
    struct storage_aborted_txn a[8];
    assert_int_equal(aborted(f, 0, 7, a), 0);
    assert_int_equal(txnindex_size(f, 0), 0);
    assert_int_equal(storage_log_first_unstable_offset(f->log), 0);
    /* the leader's marker arrives by replication */
    uint8_t *buf;
    size_t len;
    assert_int_equal(kafka_txn_marker_build(7, 0, KAFKA_CONTROL_ABORT, 3, 1000, &buf, &len), 0);
    kafka_batch_set_base_offset(buf, 7);
    kafka_batch_set_leader_epoch(buf, 2);
    struct storage_append_result res;
    assert_int_equal(storage_log_append_follower(f->log, buf, len, &res), 0);
    free(buf);
    assert_int_equal(aborted(f, 0, 8, a), 1);
    assert_int_equal(storage_log_first_unstable_offset(f->log), 4);
}

static void test_deleted_with_segment(void **state)
{
    struct fx *f = *state;
    assert_int_equal(storage_log_close(f->log), 0);
    f->cfg.segment_bytes = 300; /* about three batches a segment */
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    append_data(f, 7, 1, true);
    append_marker(f, 7, KAFKA_CONTROL_ABORT);
    for (int i = 0; i < 8; i++)
        append_data(f, 99, 1, false);
    assert_true(storage_log_segment_count(f->log) > 2);
    assert_true(txnindex_size(f, 0) == 34);
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
    assert_int_equal(storage_log_advance_start(f->log, storage_log_end_offset(f->log) - 1), 0);
    assert_int_equal(txnindex_size(f, 0), -1);
    struct storage_aborted_txn a[8];
    assert_int_equal(
        aborted(f, storage_log_start_offset(f->log), storage_log_end_offset(f->log), a), 0);
}

/* A keyed batch of one record (key, value), transactional or not, of producer pid. */
static void append_kv(struct fx *f, int64_t pid, bool txn, const char *key, const char *value)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, f->clock.now_ms);
    b.attributes = txn ? KAFKA_BATCH_ATTR_TRANSACTIONAL : 0;
    b.producer_id = pid;
    b.producer_epoch = pid >= 0 ? 0 : -1;
    b.base_sequence = pid >= 0 ? 0 : -1;
    assert_int_equal(kafka_batch_builder_append(&b, f->clock.now_ms, key, (int32_t)strlen(key),
                                                value, (int32_t)strlen(value), NULL, 0),
                     0);
    uint8_t *buf;
    size_t len;
    assert_int_equal(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len), 0);
    kafka_batch_builder_deinit(&b);
    struct storage_append_result res;
    assert_int_equal(storage_log_append_leader(f->log, buf, len, 1, &res), 0);
    free(buf);
}

struct seen {
    char kv[32][16];
    int n;
    int markers;
    int aborts;
};

static void read_back(struct fx *f, struct seen *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t *all;
    size_t len;
    assert_int_equal(tu_read_all(f->log, storage_log_start_offset(f->log), &all, &len), 0);
    for (size_t pos = 0; pos < len;) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(all + pos, len - pos, &h), 0);
        size_t total = kafka_batch_total_size(&h);
        if (h.attributes & KAFKA_BATCH_ATTR_CONTROL) {
            int16_t type;
            int32_t ce;
            assert_int_equal(kafka_txn_marker_parse(all + pos, total, &h, &type, &ce), 0);
            out->markers++;
            out->aborts += type == KAFKA_CONTROL_ABORT;
        } else {
            struct kafka_record_iter it;
            struct kafka_record r;
            kafka_record_iter_init(&it, all + pos + KAFKA_BATCH_HEADER_SIZE,
                                   total - KAFKA_BATCH_HEADER_SIZE, h.records_count);
            while (kafka_record_iter_next(&it, &r) == 1) {
                assert_true(out->n < 32);
                snprintf(out->kv[out->n++], 16, "%.*s=%.*s", (int)r.key_len, (const char *)r.key,
                         (int)r.value_len, (const char *)r.value);
            }
        }
        pos += total;
    }
    free(all);
}

static bool has(const struct seen *s, const char *kv)
{
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->kv[i], kv) == 0)
            return true;
    return false;
}

/* Compaction (Kafka's LogCleaner with transactions): an aborted transaction's records go and
 * supersede nothing; the abort marker stays while its data was in the cleaned group, then gets
 * a delete horizon and goes; the cleaner stops at the first unstable offset. */
static void test_compaction(void **state)
{
    struct fx *f = *state;
    assert_int_equal(storage_log_close(f->log), 0);
    f->cfg.segment_bytes = 400;
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    struct storage_compact_config cc;
    storage_compact_config_default(&cc);
    cc.min_cleanable_dirty_ratio = 0.0;
    cc.delete_retention_ms = 1000;
    append_kv(f, 7, true, "a", "1");           /* 0 committed */
    append_kv(f, 8, true, "a", "2");           /* 1 aborted: must not supersede a=1 */
    append_kv(f, 8, true, "b", "x");           /* 2 aborted */
    append_marker(f, 8, KAFKA_CONTROL_ABORT);  /* 3 */
    append_marker(f, 7, KAFKA_CONTROL_COMMIT); /* 4 */
    append_kv(f, 8, true, "d", "y");           /* 5: 8's next transaction, committed */
    append_marker(f, 8, KAFKA_CONTROL_COMMIT); /* 6 */
    append_kv(f, 9, true, "c", "open");        /* 7: an open transaction */
    for (int i = 0; i < 6; i++)
        append_kv(f, -1, false, "z", "9");
    assert_true(storage_log_segment_count(f->log) > 2);
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
    assert_int_equal(storage_log_flush(f->log, true), 0);
    struct storage_compact_stats st;
    assert_int_equal(storage_log_compact(f->log, &cc, storage_log_end_offset(f->log), &st), 0);
    /* not past the open transaction at 7 */
    assert_true(st.map_end <= 7);
    struct seen s;
    read_back(f, &s);
    assert_true(has(&s, "a=1"));
    assert_false(has(&s, "a=2"));
    assert_false(has(&s, "b=x"));
    assert_true(has(&s, "c=open"));
    assert_true(has(&s, "d=y"));
    assert_int_equal(s.markers, 3);
    assert_int_equal(s.aborts, 1);
    struct storage_aborted_txn a[8];
    assert_int_equal(aborted(f, 0, 7, a), 1); /* the removed data's abort keeps its entry */
    assert_int_equal(a[0].producer_id, 8);

    /* close 9's transaction; later passes find the abort marker without data: a horizon,
     * then, once it passed, the marker goes */
    append_marker(f, 9, KAFKA_CONTROL_COMMIT);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 6; i++)
            append_kv(f, -1, false, "z", "9");
        storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
        assert_int_equal(storage_log_flush(f->log, true), 0);
        assert_int_equal(storage_log_compact(f->log, &cc, storage_log_end_offset(f->log), &st), 0);
        f->clock.now_ms += 2000;
    }
    read_back(f, &s);
    assert_true(has(&s, "a=1"));
    assert_true(has(&s, "c=open"));
    assert_false(has(&s, "a=2"));
    assert_true(has(&s, "d=y"));
    assert_int_equal(s.aborts, 0); /* no data left: its marker went after its horizon */
    assert_int_equal(aborted(f, 0, storage_log_end_offset(f->log), a), 0);
    assert_int_equal(storage_log_first_unstable_offset(f->log), -1);
    /* reopened, the cleaned log rebuilds no open transaction */
    assert_int_equal(storage_log_close(f->log), 0);
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
    assert_int_equal(storage_log_first_unstable_offset(f->log), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_unstable_and_index, setup, teardown),
        cmocka_unit_test_setup_teardown(test_survives_close_and_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lost_index_tail_rewritten, setup, teardown),
        cmocka_unit_test_setup_teardown(test_truncate_reopens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deleted_with_segment, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compaction, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
