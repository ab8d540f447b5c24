/* storage/: append, read, lookups, truncation, roll, retention, epochs, bounds. */
#include <dirent.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
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
    tu_mkdtemp(f->dir, "log");
    strcat(f->dir, "/topic-0");
    storage_config_default(&f->cfg);
    f->clock.now_ms = 1700000000000;
    f->cfg.clock = tu_clock_now;
    f->cfg.clock_ctx = &f->clock;
    f->cfg.report = tu_report;
    f->cfg.report_ctx = &f->reports;
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

static void fx_open(struct fx *f)
{
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
}

static void fx_reopen(struct fx *f)
{
    assert_int_equal(storage_log_close(f->log), 0);
    f->log = NULL;
    fx_open(f);
}

/* Appends a leader batch of n records whose tags are their future offsets. */
static struct storage_append_result append_n(struct fx *f, int32_t n, size_t value_bytes,
                                             int32_t epoch, int64_t ts)
{
    uint8_t *b;
    size_t len;
    tu_build_batch(n, value_bytes, storage_log_end_offset(f->log), ts, &b, &len);
    struct storage_append_result res;
    assert_int_equal(storage_log_append_leader(f->log, b, len, epoch, &res), 0);
    free(b);
    return res;
}

/* Reads everything from `from` and checks every batch and that offsets are contiguous. */
static void check_log(struct fx *f, int64_t from)
{
    uint8_t *all;
    size_t len;
    assert_int_equal(tu_read_all(f->log, from, &all, &len), 0);
    size_t pos = 0;
    int64_t expect = -1;
    while (pos < len) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(all + pos, len - pos, &h), 0);
        assert_int_equal(tu_check_batch(all + pos, kafka_batch_total_size(&h), 1), 0);
        if (expect >= 0)
            assert_int_equal(h.base_offset, expect);
        else
            assert_true(h.base_offset <= from && kafka_batch_last_offset(&h) >= from);
        expect = kafka_batch_last_offset(&h) + 1;
        pos += kafka_batch_total_size(&h);
    }
    if (from < storage_log_end_offset(f->log))
        assert_int_equal(expect, storage_log_end_offset(f->log));
    free(all);
}

static void test_partition_dir(void **state)
{
    (void)state;
    char out[64];
    assert_int_equal(storage_partition_dir(out, sizeof(out), "/data", "orders", 7), 0);
    assert_string_equal(out, "/data/orders-7");
    assert_int_equal(storage_partition_dir(out, sizeof(out), "/d", "a/b", 0), LM_E_INVALID);
    assert_int_equal(storage_partition_dir(out, sizeof(out), "/d", "..", 0), LM_E_INVALID);
    assert_int_equal(storage_partition_dir(out, 8, "/data", "orders", 7), LM_E_TOO_LARGE);
}

static void test_empty_log(void **state)
{
    struct fx *f = *state;
    fx_open(f);
    assert_int_equal(storage_log_end_offset(f->log), 0);
    assert_int_equal(storage_log_start_offset(f->log), 0);
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 0, 1000, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.bytes, 0);
    assert_int_equal(res.slice_count, 0);
    assert_int_equal(res.first_offset, -1);
    assert_int_equal(storage_log_read(f->log, 1, 1000, STORAGE_NO_LIMIT, &res), LM_E_OUT_OF_RANGE);
    int64_t off, ts;
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 0, &off, &ts), 0);
    assert_int_equal(off, -1);
    assert_int_equal(storage_log_max_timestamp(f->log, &off, &ts), 0);
    assert_int_equal(off, -1);
    int32_t e;
    storage_log_epoch_end_offset(f->log, 0, &e, &off);
    assert_int_equal(e, -1);
    assert_int_equal(off, -1);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), 0);
    struct stat st;
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/00000000000000000000.log", f->dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/00000000000000000000.index", f->dir);
    assert_int_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/00000000000000000000.timeindex", f->dir);
    assert_int_equal(stat(path, &st), 0);
}

static void test_append_assigns_offsets_and_epoch(void **state)
{
    struct fx *f = *state;
    fx_open(f);
    struct storage_append_result r1 = append_n(f, 5, 100, 3, 1000);
    assert_int_equal(r1.base_offset, 0);
    assert_int_equal(r1.last_offset, 4);
    assert_int_equal(r1.log_end_offset, 5);
    assert_int_equal(r1.max_timestamp, 1004);
    struct storage_append_result r2 = append_n(f, 3, 100, 3, 2000);
    assert_int_equal(r2.base_offset, 5);
    assert_int_equal(r2.log_end_offset, 8);
    /* A lower epoch than the latest is refused and writes nothing. */
    uint8_t *b;
    size_t len;
    tu_build_batch(1, 10, 8, 0, &b, &len);
    struct storage_append_result r;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 2, &r), LM_E_INVALID);
    assert_int_equal(storage_log_end_offset(f->log), 8);
    free(b);

    /* A fetch offset in the middle of a batch returns that whole batch (offset 6 is in 5..7). */
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 6, 1 << 20, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.first_offset, 5);
    assert_int_equal(res.last_offset, 7);
    assert_int_equal(res.slice_count, 1);
    uint8_t buf[4096];
    assert_int_equal(storage_read_result_copy(&res, buf, sizeof(buf)), 0);
    struct kafka_batch_header h;
    assert_int_equal(kafka_batch_header_parse(buf, res.bytes, &h), 0);
    assert_int_equal(h.base_offset, 5);
    assert_int_equal(h.partition_leader_epoch, 3);
    assert_int_equal(tu_check_batch(buf, res.bytes, 1), 0);
    storage_read_result_release(f->log, &res);

    /* max_bytes smaller than the first batch still returns it whole (KIP-74), and no more. */
    assert_int_equal(storage_log_read(f->log, 0, 1, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.first_offset, 0);
    assert_int_equal(res.last_offset, 4);
    storage_read_result_release(f->log, &res);
    /* max_offset (high watermark) bounds what is returned. */
    assert_int_equal(storage_log_read(f->log, 0, 1 << 20, 5, &res), 0);
    assert_int_equal(res.last_offset, 4);
    storage_read_result_release(f->log, &res);
    assert_int_equal(storage_log_read(f->log, 5, 1 << 20, 5, &res), 0);
    assert_int_equal(res.bytes, 0);
    storage_read_result_release(f->log, &res);
    check_log(f, 0);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), 8);
    assert_int_equal(storage_log_latest_epoch(f->log), 3);
    check_log(f, 3);
}

static void test_append_rejects_bad_batches(void **state)
{
    struct fx *f = *state;
    fx_open(f);
    uint8_t *b;
    size_t len;
    tu_build_batch(2, 50, 0, 0, &b, &len);
    struct storage_append_result r;
    b[len - 1] ^= 0x40; /* inside the CRC-covered records */
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), LM_E_CRC);
    b[len - 1] ^= 0x40;
    assert_int_equal(storage_log_append_leader(f->log, b, len - 1, 0, &r), LM_E_TRUNCATED);
    b[KAFKA_BATCH_OFF_MAGIC] = 1;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), LM_E_MAGIC);
    b[KAFKA_BATCH_OFF_MAGIC] = 2;
    /* Two batches where the second is bad: all or nothing. */
    uint8_t *two = malloc(2 * len);
    memcpy(two, b, len);
    memcpy(two + len, b, len);
    two[2 * len - 3] ^= 1;
    assert_int_equal(storage_log_append_leader(f->log, two, 2 * len, 0, &r), LM_E_CRC);
    assert_int_equal(storage_log_end_offset(f->log), 0);
    assert_int_equal(storage_log_size_bytes(f->log), 0);
    two[2 * len - 3] ^= 1;
    assert_int_equal(storage_log_append_leader(f->log, two, 2 * len, 0, &r), 0);
    assert_int_equal(r.batches, 2);
    assert_int_equal(r.base_offset, 0);
    assert_int_equal(r.log_end_offset, 4);
    free(two);
    free(b);
}

static void test_follower_append(void **state)
{
    struct fx *f = *state;
    fx_open(f);
    uint8_t *b;
    size_t len;
    tu_build_batch(4, 20, 0, 0, &b, &len);
    kafka_batch_set_base_offset(b, 0);
    kafka_batch_set_leader_epoch(b, 1);
    struct storage_append_result r;
    assert_int_equal(storage_log_append_follower(f->log, b, len, &r), 0);
    assert_int_equal(r.log_end_offset, 4);
    /* Not continuing the log. */
    assert_int_equal(storage_log_append_follower(f->log, b, len, &r), LM_E_SEQUENCE);
    free(b);
    tu_build_batch(2, 20, 4, 0, &b, &len);
    kafka_batch_set_base_offset(b, 5);
    kafka_batch_set_leader_epoch(b, 2);
    assert_int_equal(storage_log_append_follower(f->log, b, len, &r), LM_E_SEQUENCE);
    kafka_batch_set_base_offset(b, 4);
    kafka_batch_set_leader_epoch(b, 0);
    assert_int_equal(storage_log_append_follower(f->log, b, len, &r), LM_E_INVALID);
    kafka_batch_set_leader_epoch(b, 2);
    assert_int_equal(storage_log_append_follower(f->log, b, len, &r), 0);
    assert_int_equal(storage_log_end_offset(f->log), 6);
    free(b);
    int32_t e;
    int64_t end;
    storage_log_epoch_end_offset(f->log, 1, &e, &end);
    assert_int_equal(e, 1);
    assert_int_equal(end, 4);
    storage_log_epoch_end_offset(f->log, 2, &e, &end);
    assert_int_equal(e, 2);
    assert_int_equal(end, 6);
    storage_log_epoch_end_offset(f->log, 0, &e, &end); /* below the first: Kafka semantics */
    assert_int_equal(e, 0);
    assert_int_equal(end, 0);
    storage_log_epoch_end_offset(f->log, 9, &e, &end);
    assert_int_equal(e, -1);
    check_log(f, 0);
}

static int count_files(const char *dir, const char *ext)
{
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "ls %s | grep -c '^[0-9]\\{20\\}%s$'", dir, ext);
    FILE *p = popen(cmd, "r");
    int n = -1;
    if (fscanf(p, "%d", &n) != 1)
        n = -1;
    pclose(p);
    return n;
}

/* Bytes of the files of dir whose names end in ext. */
static long long files_bytes(const char *dir, const char *ext)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    long long sum = 0;
    size_t el = strlen(ext);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl <= el || strcmp(e->d_name + nl - el, ext) != 0)
            continue;
        char path[PATH_MAX + 300];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        struct stat st;
        if (stat(path, &st) == 0)
            sum += (long long)st.st_size;
    }
    closedir(d);
    return sum;
}

static void test_roll_by_size_and_multi_segment_reads(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 8192;
    f->cfg.index_interval_bytes = 512;
    fx_open(f);
    for (int i = 0; i < 60; i++)
        append_n(f, 1 + i % 5, 200, 0, 1000 + i);
    uint32_t segs = storage_log_segment_count(f->log);
    assert_true(segs > 5);
    assert_int_equal(count_files(f->dir, ".log"), (int)segs);
    /* Every segment keeps under segment_bytes. */
    assert_true(storage_log_size_bytes(f->log) <= (uint64_t)segs * 8192);
    /* A large read spans several segments in several slices. */
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 0, 1 << 30, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.slice_count, STORAGE_READ_SLICES_MAX);
    assert_true(res.slices[0].fd != res.slices[1].fd);
    storage_read_result_release(f->log, &res);
    for (int64_t off = 0; off < storage_log_end_offset(f->log); off += 7)
        check_log(f, off);
    fx_reopen(f);
    assert_int_equal(storage_log_segment_count(f->log), segs);
    check_log(f, 0);
}

static void test_roll_by_time(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_ms = 1000;
    fx_open(f);
    append_n(f, 2, 10, 0, 0);
    f->clock.now_ms += 500;
    append_n(f, 2, 10, 0, 0);
    assert_int_equal(storage_log_segment_count(f->log), 1);
    f->clock.now_ms += 600;
    append_n(f, 2, 10, 0, 0);
    assert_int_equal(storage_log_segment_count(f->log), 2);
    check_log(f, 0);
}

/* Relative offsets are u32 in the indexes: a segment rolls before one would pass 2^31-1. */
static void test_roll_before_relative_offset_overflow(void **state)
{
    struct fx *f = *state;
    fx_open(f);
    append_n(f, 1, 10, 0, 0);
    /* A batch whose records have a huge offset delta (as after compaction). */
    struct kafka_batch_builder bb;
    kafka_batch_builder_init(&bb, 0, 0);
    assert_int_equal(kafka_batch_builder_append_at(&bb, 0, 0, "k", 1, "v", 1, NULL, 0), 0);
    assert_int_equal(kafka_batch_builder_append_at(&bb, INT32_MAX - 1, 0, "k", 1, "v", 1, NULL, 0),
                     0);
    uint8_t *b;
    size_t len;
    assert_int_equal(kafka_batch_builder_finish(&bb, KAFKA_CODEC_NONE, &b, &len), 0);
    kafka_batch_builder_deinit(&bb);
    struct storage_append_result r;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), 0);
    assert_int_equal(r.base_offset, 1);
    assert_int_equal(r.last_offset, (int64_t)INT32_MAX);
    /* 1 + (2^31 - 2) = 2^31 - 1 relative to base 0 still fits: same segment. */
    assert_int_equal(storage_log_segment_count(f->log), 1);
    struct storage_append_result r2;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r2), 0);
    assert_int_equal(r2.base_offset, (int64_t)INT32_MAX + 1);
    assert_int_equal(storage_log_segment_count(f->log), 2);
    free(b);
    struct storage_read_result res;
    assert_int_equal(
        storage_log_read(f->log, (int64_t)INT32_MAX - 5, 1 << 20, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.first_offset, 1);
    storage_read_result_release(f->log, &res);
    fx_reopen(f);
    assert_int_equal(storage_log_segment_count(f->log), 2);
    assert_int_equal(storage_log_end_offset(f->log), 2 * (int64_t)INT32_MAX + 1);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%020lld.log", f->dir, (long long)INT32_MAX + 1);
    assert_int_equal(access(path, F_OK), 0);
}

/* Offsets near 2^63: the names still have 20 digits, and the log refuses to pass INT64_MAX. */
static void test_offsets_near_int64_max(void **state)
{
    struct fx *f = *state;
    fx_open(f);
    int64_t start = INT64_MAX - 10;
    assert_int_equal(storage_log_reset(f->log, start), 0);
    struct storage_append_result r = append_n(f, 5, 10, 0, 0);
    assert_int_equal(r.base_offset, start);
    assert_int_equal(r.log_end_offset, start + 5);
    uint8_t *b;
    size_t len;
    tu_build_batch(6, 10, 0, 0, &b, &len);
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), LM_E_TOO_LARGE);
    free(b);
    append_n(f, 4, 10, 0, 0);
    assert_int_equal(storage_log_end_offset(f->log), INT64_MAX - 1);
    fx_reopen(f);
    assert_int_equal(storage_log_start_offset(f->log), start);
    assert_int_equal(storage_log_end_offset(f->log), INT64_MAX - 1);
    check_log(f, start + 6);
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/%020lld.log", f->dir, (long long)start);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_huge_batch(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 16u << 20;
    fx_open(f);
    append_n(f, 1, 100, 0, 0);
    uint8_t *b;
    size_t len;
    tu_build_batch(8, 1 << 20, 1, 0, &b, &len); /* 8 MiB */
    struct storage_append_result r;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), 0);
    free(b);
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 3, 1024, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.first_offset, 1);
    assert_int_equal(res.last_offset, 8);
    assert_int_equal(res.bytes, len);
    storage_read_result_release(f->log, &res);
    check_log(f, 0);
    tu_build_batch(17, 1 << 20, 9, 0, &b, &len); /* larger than a segment */
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), LM_E_TOO_LARGE);
    free(b);
    fx_reopen(f);
    check_log(f, 0);
}

static void test_truncate_across_segments(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 4096;
    f->cfg.index_interval_bytes = 256;
    fx_open(f);
    for (int i = 0; i < 40; i++)
        append_n(f, 3, 100, i / 10, 5000 + i);
    uint32_t segs = storage_log_segment_count(f->log);
    assert_true(segs >= 4);
    storage_log_set_high_watermark(f->log, 120);
    /* Offset 61 is inside the batch 60..62 (epoch 2): that batch goes too. */
    assert_int_equal(storage_log_truncate_to(f->log, 61), 0);
    assert_int_equal(storage_log_end_offset(f->log), 60);
    assert_int_equal(storage_log_high_watermark(f->log), 60);
    assert_true(storage_log_segment_count(f->log) < segs);
    assert_int_equal(storage_log_latest_epoch(f->log), 1);
    int32_t e;
    int64_t end;
    storage_log_epoch_end_offset(f->log, 1, &e, &end);
    assert_int_equal(end, 60);
    check_log(f, 0);
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 61, 100, STORAGE_NO_LIMIT, &res), LM_E_OUT_OF_RANGE);
    /* The log continues at 60 with a new epoch. */
    append_n(f, 2, 100, 5, 9000);
    assert_int_equal(storage_log_end_offset(f->log), 62);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), 62);
    assert_int_equal(storage_log_latest_epoch(f->log), 5);
    storage_log_epoch_end_offset(f->log, 2, &e, &end);
    assert_int_equal(e, 1);
    assert_int_equal(end, 60);
    check_log(f, 0);
    /* Truncating to a segment boundary, then to 0. */
    assert_int_equal(storage_log_truncate_to(f->log, 30), 0);
    assert_int_equal(storage_log_end_offset(f->log), 30);
    check_log(f, 0);
    assert_int_equal(storage_log_truncate_to(f->log, 0), 0);
    assert_int_equal(storage_log_end_offset(f->log), 0);
    assert_int_equal(storage_log_segment_count(f->log), 1);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), 0);
}

static void test_retention_and_log_start(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 4096;
    f->cfg.retention_bytes = 10000;
    f->cfg.retention_ms = 60000;
    fx_open(f);
    for (int i = 0; i < 40; i++)
        append_n(f, 3, 100, 0, f->clock.now_ms - 100000 + i * 1000);
    uint32_t segs = storage_log_segment_count(f->log);
    uint32_t deleted;
    /* Nothing above the high watermark is deleted. */
    assert_int_equal(storage_log_enforce_retention(f->log, &deleted), 0);
    assert_int_equal(deleted, 0);
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
    /* By time: segments whose newest record is older than 60 s go. */
    f->cfg.retention_bytes = -1;
    assert_int_equal(storage_log_enforce_retention(f->log, &deleted), 0);
    assert_true(deleted > 0 && deleted < segs);
    int64_t start = storage_log_start_offset(f->log);
    assert_true(start > 0);
    int64_t off, ts;
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 0, &off, &ts), 0);
    assert_int_equal(off, start);
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, start - 1, 100, STORAGE_NO_LIMIT, &res),
                     LM_E_OUT_OF_RANGE);
    check_log(f, start);
    fx_reopen(f);
    assert_int_equal(storage_log_start_offset(f->log), start);
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
    check_log(f, start);
    /* DeleteRecords: move the start into the middle of a segment. */
    int64_t leo = storage_log_end_offset(f->log);
    assert_int_equal(storage_log_advance_start(f->log, leo + 1), LM_E_OUT_OF_RANGE);
    assert_int_equal(storage_log_advance_start(f->log, leo - 5), 0);
    assert_int_equal(storage_log_start_offset(f->log), leo - 5);
    assert_int_equal(storage_log_segment_count(f->log), 1);
    check_log(f, leo - 5);
    fx_reopen(f);
    assert_int_equal(storage_log_start_offset(f->log), leo - 5);
}

static void test_retention_by_size(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 4096;
    f->cfg.retention_bytes = 10000;
    f->cfg.retention_ms = -1;
    fx_open(f);
    for (int i = 0; i < 40; i++)
        append_n(f, 3, 100, 0, 0);
    storage_log_set_high_watermark(f->log, storage_log_end_offset(f->log));
    uint32_t deleted;
    assert_int_equal(storage_log_enforce_retention(f->log, &deleted), 0);
    assert_true(deleted > 0);
    assert_true(storage_log_size_bytes(f->log) <= 10000 + 4096);
    assert_true(storage_log_size_bytes(f->log) >= 10000 - 4096);
    check_log(f, storage_log_start_offset(f->log));
}

static void test_timestamps(void **state)
{
    struct fx *f = *state;
    f->cfg.index_interval_bytes = 300;
    fx_open(f);
    /* Batches of 4 records with timestamps ts..ts+3, ts = 1000 * i. */
    for (int i = 1; i <= 50; i++)
        append_n(f, 4, 50, 0, 1000 * i);
    int64_t off, ts;
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 0, &off, &ts), 0);
    assert_int_equal(off, 0);
    assert_int_equal(ts, 1000);
    /* 20002 is the third record of batch 20 (offsets 76..79). */
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 20002, &off, &ts), 0);
    assert_int_equal(off, 78);
    assert_int_equal(ts, 20002);
    /* Between batches: the first record of the next. */
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 20500, &off, &ts), 0);
    assert_int_equal(off, 80);
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 99999, &off, &ts), 0);
    assert_int_equal(off, -1);
    assert_int_equal(storage_log_max_timestamp(f->log, &off, &ts), 0);
    assert_int_equal(ts, 50003);
    assert_int_equal(off, 199);
    /* An out-of-order batch carries the max. */
    append_n(f, 4, 50, 0, 90000);
    append_n(f, 4, 50, 0, 100);
    assert_int_equal(storage_log_max_timestamp(f->log, &off, &ts), 0);
    assert_int_equal(ts, 90003);
    assert_int_equal(off, 203);
    fx_reopen(f);
    assert_int_equal(storage_log_max_timestamp(f->log, &off, &ts), 0);
    assert_int_equal(ts, 90003);
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 30001, &off, &ts), 0);
    assert_int_equal(off, 117);
}

static void test_log_append_time(void **state)
{
    struct fx *f = *state;
    f->cfg.log_append_time = true;
    fx_open(f);
    append_n(f, 3, 10, 0, 5);
    int64_t off, ts;
    assert_int_equal(storage_log_max_timestamp(f->log, &off, &ts), 0);
    assert_int_equal(ts, f->clock.now_ms);
    check_log(f, 0);
}

/* A bounded number of segments keep fds open, however many the log has. */
/* Descriptors of this process open on f->dir or a file in it. */
static int log_fds(const struct fx *f)
{
    DIR *d = opendir("/proc/self/fd");
    assert_non_null(d);
    int n = 0;
    size_t dl = strlen(f->dir);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char link[300], target[PATH_MAX];
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        ssize_t len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0)
            continue;
        target[len] = '\0';
        if (strncmp(target, f->dir, dl) == 0 && (target[dl] == '\0' || target[dl] == '/'))
            n++;
    }
    closedir(d);
    return n;
}

static void test_open_segment_bound(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 2048;
    f->cfg.max_open_segments = 3;
    fx_open(f);
    for (int i = 0; i < 100; i++)
        append_n(f, 2, 200, 0, 0);
    assert_true(storage_log_segment_count(f->log) > 20);
    /* An open segment holds its .log, and its two index files while index bytes written to
     * them wait for a sync (this log never syncs: sealed segments keep theirs until the LRU
     * closes them); the checkpoint and the directory are not held. */
    int during = log_fds(f);
    assert_true(during <= 3 * 3);
    check_log(f, 0);
    assert_true(log_fds(f) <= 3 * 3);
    fx_reopen(f);
    /* After a clean close and open nothing waits for a sync: one fd per open segment. */
    assert_true(log_fds(f) <= 3);
    /* Pinned segments stay readable even when deleted (here by DeleteRecords). */
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 0, 1 << 20, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(res.slice_count, STORAGE_READ_SLICES_MAX);
    int64_t leo = storage_log_end_offset(f->log);
    storage_log_set_high_watermark(f->log, leo);
    assert_int_equal(storage_log_advance_start(f->log, leo - 1), 0);
    assert_int_equal(storage_log_segment_count(f->log), 1);
    assert_int_equal(count_files(f->dir, ".log"), 1);
    uint8_t *buf = malloc(res.bytes);
    /* The files are unlinked but the pinned fds still read the old bytes. */
    assert_int_equal(storage_read_result_copy(&res, buf, res.bytes), 0);
    struct kafka_batch_header h;
    assert_int_equal(kafka_batch_header_parse(buf, res.bytes, &h), 0);
    assert_int_equal(tu_check_batch(buf, kafka_batch_total_size(&h), 1), 0);
    free(buf);
    storage_read_result_release(f->log, &res);
}

static void test_flush_policy(void **state)
{
    struct fx *f = *state;
    f->cfg.flush_messages = 5;
    fx_open(f);
    struct storage_append_result r = append_n(f, 2, 10, 0, 0);
    assert_false(r.flushed);
    assert_int_equal(storage_log_flushed_offset(f->log), 0);
    r = append_n(f, 3, 10, 0, 0);
    assert_true(r.flushed);
    assert_int_equal(storage_log_flushed_offset(f->log), 5);
    /* flush.ms through tick */
    f->log = (storage_log_close(f->log), NULL);
    f->cfg.flush_messages = -1;
    f->cfg.flush_ms = 100;
    fx_open(f);
    r = append_n(f, 1, 10, 0, 0);
    assert_false(r.flushed);
    assert_int_equal(storage_log_tick(f->log), 0);
    assert_int_equal(storage_log_flushed_offset(f->log), 5);
    f->clock.now_ms += 150;
    assert_int_equal(storage_log_tick(f->log), 0);
    assert_int_equal(storage_log_flushed_offset(f->log), 6);
}

/* Runs every step of an asynchronous flush, syncing its fds here as the broker's ring or sync
 * worker would; returns how many steps there were. */
static int sync_all_steps(struct storage_log *log, struct storage_sync *sy)
{
    int steps = 0;
    for (bool done = false; !done; steps++) {
        for (uint32_t i = 0; i < sy->fd_count; i++)
            assert_int_equal(sy->full[i] ? fsync(sy->fds[i]) : fdatasync(sy->fds[i]), 0);
        assert_int_equal(storage_log_sync_step(log, sy, 0, &done), 0);
        assert_true(steps < 10);
    }
    return steps;
}

static void test_external_sync(void **state)
{
    struct fx *f = *state;
    f->cfg.external_sync = true;
    f->cfg.flush_messages = 3;
    f->cfg.checkpoint_interval_bytes = 1; /* every sync also writes indexes + checkpoint */
    f->cfg.segment_bytes = 4096;
    fx_open(f);
    struct storage_append_result r = append_n(f, 2, 10, 0, 0);
    assert_false(r.flushed);
    assert_false(storage_log_flush_due(f->log));
    r = append_n(f, 1, 10, 0, 0);
    /* The policy asks, but append itself never syncs under external_sync. */
    assert_false(r.flushed);
    assert_true(storage_log_flush_due(f->log));
    assert_int_equal(storage_log_tick(f->log), 0);
    assert_int_equal(storage_log_flushed_offset(f->log), 0);

    struct storage_sync sy;
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    assert_int_equal(sy.end_offset, 3);
    assert_true(sy.fd_count >= 1);
    assert_false(storage_log_flush_due(f->log)); /* in flight */
    /* Appends go on while the fsync runs; they are not covered by it. */
    append_n(f, 2, 10, 0, 0);
    for (uint32_t i = 0; i < sy.fd_count; i++)
        assert_int_equal(sy.full[i] ? fsync(sy.fds[i]) : fdatasync(sy.fds[i]), 0);
    bool done = false;
    assert_int_equal(storage_log_sync_step(f->log, &sy, 0, &done), 0);
    assert_int_equal(storage_log_flushed_offset(f->log), 3);
    assert_false(done); /* the checkpoint is due: indexes, then the checkpoint slot */
    assert_true(sy.fd_count >= 1);
    int steps = sync_all_steps(f->log, &sy);
    assert_true(steps >= 1);
    assert_int_equal(storage_log_flushed_offset(f->log), 3);

    /* Rolls (many segments, a directory entry) are covered by the next sync. */
    while (storage_log_segment_count(f->log) < 4)
        append_n(f, 4, 200, 0, 0);
    int64_t leo = storage_log_end_offset(f->log);
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    assert_int_equal(sy.end_offset, leo);
    bool dir = false;
    for (uint32_t i = 0; i < sy.fd_count; i++)
        dir = dir || sy.full[i];
    assert_true(dir);
    sync_all_steps(f->log, &sy);
    assert_int_equal(storage_log_flushed_offset(f->log), leo);
    assert_false(storage_log_flush_due(f->log));

    /* A sync begun before a truncation does not vouch for what is appended after it. */
    append_n(f, 2, 10, 0, 0);
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    assert_int_equal(sy.end_offset, leo + 2);
    assert_int_equal(storage_log_truncate_to(f->log, leo), 0);
    append_n(f, 3, 10, 0, 0);
    sync_all_steps(f->log, &sy);
    assert_true(storage_log_flushed_offset(f->log) <= leo);
    check_log(f, 0);
    fx_reopen(f); /* the checkpoint written through the steps recovers cleanly */
    check_log(f, 0);
    assert_int_equal(storage_log_end_offset(f->log), leo + 3);

    /* A failed fsync fails the log: nothing more is accepted. */
    append_n(f, 1, 10, 0, 0);
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    assert_int_equal(storage_log_sync_step(f->log, &sy, LM_E_IO, &done), LM_E_IO);
    assert_true(done);
    uint8_t *b;
    size_t len;
    tu_build_batch(1, 10, 0, 0, &b, &len);
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), LM_E_STATE);
    free(b);
    assert_int_equal(storage_log_close(f->log), LM_E_STATE);
    f->log = NULL;
}

/* A log at rest holds one descriptor per open segment, its .log: the index files, the
 * checkpoint and the directory are opened for a sync's steps and closed when it ends, after a
 * recovery, and after a clean reopen. */
static void test_fds_at_rest(void **state)
{
    struct fx *f = *state;
    f->cfg.external_sync = true;
    f->cfg.checkpoint_interval_bytes = 1; /* every sync writes indexes and the checkpoint */
    f->cfg.segment_bytes = 4096;
    f->cfg.index_interval_bytes = 64; /* index entries in every sync */
    fx_open(f);
    assert_int_equal(log_fds(f), 1);
    struct storage_sync sy;
    for (int round = 0; round < 3; round++) {
        append_n(f, 3, 100, 0, 0);
        append_n(f, 3, 100, 0, 0);
        assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
        assert_int_equal(sync_all_steps(f->log, &sy), 3); /* data, indexes, checkpoint */
        assert_int_equal(log_fds(f), 1);
    }
    while (storage_log_segment_count(f->log) < 3)
        append_n(f, 4, 200, 0, 0);
    int64_t leo = storage_log_end_offset(f->log);
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    sync_all_steps(f->log, &sy);
    assert_int_equal(storage_log_flushed_offset(f->log), leo);
    /* Sealed segments stay open (the LRU) with their .log only. */
    assert_int_equal(log_fds(f), 3);
    check_log(f, 0);
    fx_reopen(f);
    assert_int_equal(log_fds(f), 3);
    check_log(f, 0);
    /* Under writes, between syncs: index entries reach the index files (more than the 512
     * kept in memory) and the files are closed again at once. */
    fx_reopen(f);
    f->cfg.segment_bytes = 8 << 20;
    fx_reopen(f);
    int64_t before = storage_log_end_offset(f->log);
    uint32_t segs = storage_log_segment_count(f->log);
    long long index_bytes = files_bytes(f->dir, ".index");
    for (int i = 0; i < 1200; i++)
        append_n(f, 1, 100, 0, 0);
    assert_true(files_bytes(f->dir, ".index") >= index_bytes + 512 * 8);
    assert_int_equal(storage_log_segment_count(f->log), segs); /* all in the active segment */
    assert_true(storage_log_end_offset(f->log) - before == 1200);
    assert_int_equal(log_fds(f), (int)storage_log_segment_count(f->log));
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    sync_all_steps(f->log, &sy);
    assert_int_equal(log_fds(f), (int)storage_log_segment_count(f->log));
    check_log(f, 0);
    /* A crash (nothing synced after the appends) and a recovery that rebuilds and trims
     * indexes: the fds it used are closed once the log is open. */
    append_n(f, 4, 200, 0, 0);
    assert_int_equal(storage_log_close_unsynced(f->log), 0);
    f->log = NULL;
    assert_int_equal(log_fds(f), 0);
    fx_open(f);
    assert_true(log_fds(f) <= 4);
    assert_int_equal(log_fds(f), (int)storage_log_segment_count(f->log));
    check_log(f, 0);
}

/* A storage_io that does what posix does and notes the file names of the fds it syncs. */
struct sync_spy {
    const struct storage_io *posix;
    char synced[32][PATH_MAX];
    int n;
};

static int spy_pwritev(void *ctx, int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    struct sync_spy *sp = ctx;
    return sp->posix->pwritev_all(sp->posix->ctx, fd, iov, iovcnt, off);
}

static int spy_sync(void *ctx, const int *fds, int n)
{
    struct sync_spy *sp = ctx;
    for (int i = 0; i < n; i++) {
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fds[i]);
        ssize_t len = readlink(link, sp->synced[sp->n % 32], PATH_MAX - 1);
        assert_true(len > 0);
        sp->synced[sp->n++ % 32][len] = '\0';
    }
    return sp->posix->sync(sp->posix->ctx, fds, n);
}

static int spy_pwritev_sync(void *ctx, int fd, const struct iovec *iov, int iovcnt, uint64_t off)
{
    int rc = spy_pwritev(ctx, fd, iov, iovcnt, off);
    return rc != 0 ? rc : spy_sync(ctx, &fd, 1);
}

static bool spy_synced(const struct sync_spy *sp, const char *path)
{
    for (int i = 0; i < sp->n && i < 32; i++)
        if (strcmp(sp->synced[i], path) == 0)
            return true;
    return false;
}

static void count_reopen(void *ctx)
{
    (*(int *)ctx)++;
}

/* storage_log_release_fds: an idle log closes every descriptor and stays open; reads,
 * appends, syncs, truncation and a roll reopen what they need by path, the owner hears of the
 * first reopen once per release, and unsynced bytes written before a release are made durable
 * by the next sync through the reopened fd. A log that is not idle (a read result held, a
 * sync running) refuses. */
static void test_release_fds(void **state)
{
    struct fx *f = *state;
    struct sync_spy spy = {.posix = storage_io_posix()};
    struct storage_io io = {&spy, spy_pwritev, spy_sync, spy_pwritev_sync};
    int reopens = 0;
    f->cfg.io = &io;
    f->cfg.fds_reopened = count_reopen;
    f->cfg.fds_reopened_ctx = &reopens;
    f->cfg.external_sync = true;
    f->cfg.checkpoint_interval_bytes = 1; /* every sync writes indexes and the checkpoint */
    f->cfg.segment_bytes = 4096;
    f->cfg.index_interval_bytes = 64;
    fx_open(f);
    while (storage_log_segment_count(f->log) < 3)
        append_n(f, 4, 200, 0, 0);
    struct storage_sync sy;
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    sync_all_steps(f->log, &sy);
    assert_int_equal(log_fds(f), 3);

    /* Not idle: a read result pins a segment. */
    struct storage_read_result res;
    assert_int_equal(storage_log_read(f->log, 0, 100, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(storage_log_release_fds(f->log), LM_E_STATE);
    assert_int_equal(log_fds(f), 3);
    storage_read_result_release(f->log, &res);
    assert_int_equal(storage_log_release_fds(f->log), 0);
    assert_true(storage_log_fds_released(f->log));
    assert_int_equal(log_fds(f), 0);
    assert_int_equal(reopens, 0);
    assert_int_equal(storage_log_release_fds(f->log), 0); /* idempotent */

    /* A read reopens the segments it reads (and the owner hears it once); all of them for a
     * whole read. */
    assert_int_equal(storage_log_read(f->log, 0, 100, STORAGE_NO_LIMIT, &res), 0);
    assert_int_equal(log_fds(f), 1);
    assert_int_equal(reopens, 1);
    assert_false(storage_log_fds_released(f->log));
    storage_read_result_release(f->log, &res);
    check_log(f, 0);
    assert_int_equal(log_fds(f), 3);
    assert_int_equal(reopens, 1);

    /* An append to a released log reopens the active segment only, and its bytes, not synced
     * when the log is released again, are synced through a reopened fd by the next sync. */
    assert_int_equal(storage_log_release_fds(f->log), 0);
    int64_t leo = storage_log_end_offset(f->log);
    append_n(f, 2, 100, 0, 0);
    assert_int_equal(log_fds(f), 1);
    assert_int_equal(reopens, 2);
    assert_true(storage_log_flushed_offset(f->log) < storage_log_end_offset(f->log));
    assert_int_equal(storage_log_release_fds(f->log), 0);
    assert_int_equal(log_fds(f), 0);
    /* the active segment's file: the last .log by name */
    char active[PATH_MAX + 300];
    {
        DIR *d = opendir(f->dir);
        assert_non_null(d);
        struct dirent *e;
        char best[256] = "";
        while ((e = readdir(d)) != NULL) {
            size_t nl = strlen(e->d_name);
            if (nl > 4 && strcmp(e->d_name + nl - 4, ".log") == 0 && strcmp(e->d_name, best) > 0)
                snprintf(best, sizeof(best), "%s", e->d_name);
        }
        closedir(d);
        snprintf(active, sizeof(active), "%s/%s", f->dir, best);
    }
    spy.n = 0;
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    assert_int_equal(reopens, 3);
    /* Not idle while the sync runs: its fds are in the owner's hands. */
    assert_int_equal(storage_log_release_fds(f->log), LM_E_STATE);
    for (bool done = false; !done;) {
        assert_int_equal(spy_sync(&spy, sy.fds, (int)sy.fd_count), 0);
        assert_int_equal(storage_log_sync_step(f->log, &sy, 0, &done), 0);
        if (!done)
            assert_int_equal(storage_log_release_fds(f->log), LM_E_STATE);
    }
    assert_true(spy_synced(&spy, active));
    assert_int_equal(storage_log_flushed_offset(f->log), storage_log_end_offset(f->log));
    assert_int_equal(log_fds(f), 1); /* the active segment; indexes and checkpoint closed */

    /* The same with the blocking flush. */
    append_n(f, 2, 100, 0, 0);
    assert_int_equal(storage_log_release_fds(f->log), 0);
    spy.n = 0;
    assert_int_equal(storage_log_flush(f->log, false), 0);
    assert_true(spy_synced(&spy, active));
    assert_int_equal(storage_log_flushed_offset(f->log), storage_log_end_offset(f->log));

    /* Lookups by timestamp, truncation and a roll by time reopen what they need. */
    assert_int_equal(storage_log_release_fds(f->log), 0);
    int64_t off, ts;
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 0, &off, &ts), 0);
    assert_int_equal(off, 0);
    assert_int_equal(storage_log_release_fds(f->log), 0);
    leo = storage_log_end_offset(f->log);
    assert_int_equal(storage_log_truncate_to(f->log, leo - 2), 0);
    assert_int_equal(storage_log_end_offset(f->log), leo - 2);
    check_log(f, 0);
    assert_int_equal(storage_log_release_fds(f->log), 0);
    uint32_t segs = storage_log_segment_count(f->log);
    f->clock.now_ms += f->cfg.segment_ms + 1;
    append_n(f, 1, 10, 0, 0); /* seals the released active segment first */
    assert_int_equal(storage_log_segment_count(f->log), segs + 1);
    check_log(f, 0);

    /* Recovery after a crash of a released log with unsynced bytes: the page cache has them. */
    append_n(f, 3, 100, 0, 0);
    leo = storage_log_end_offset(f->log);
    assert_int_equal(storage_log_release_fds(f->log), 0);
    assert_int_equal(storage_log_close_unsynced(f->log), 0);
    f->log = NULL;
    assert_int_equal(log_fds(f), 0);
    fx_open(f);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    check_log(f, 0);
    /* and a clean close of a released log */
    assert_int_equal(storage_log_release_fds(f->log), 0);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    check_log(f, 0);
}

/* Flips one byte inside the records of the first batch of the first segment (covered by its
 * CRC, so a scan of that segment would cut the log there). */
static void corrupt_first_segment(const struct fx *f)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/00000000000000000000.log", f->dir);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, 70), 1);
    b ^= 0xff;
    assert_int_equal(pwrite(fd, &b, 1, 70), 1);
    close(fd);
}

/* Without a flush policy the recovery point still moves at a roll: the owner is asked for a
 * background flush (storage_log_recovery_flush_wanted), whose steps write the checkpoint, so
 * recovery after a crash starts at the active segment and never rereads the sealed ones. */
static void test_recovery_point_at_roll(void **state)
{
    struct fx *f = *state;
    f->cfg.external_sync = true;
    f->cfg.segment_bytes = 4096; /* checkpoint_interval_bytes stays 16 MiB: only rolls count */
    fx_open(f);
    append_n(f, 2, 10, 0, 0);
    assert_false(storage_log_recovery_flush_wanted(f->log));
    while (storage_log_segment_count(f->log) < 3)
        append_n(f, 4, 200, 0, 0);
    assert_true(storage_log_recovery_flush_wanted(f->log));
    struct storage_sync sy;
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    assert_false(storage_log_recovery_flush_wanted(f->log)); /* one in flight */
    sync_all_steps(f->log, &sy);
    assert_false(storage_log_recovery_flush_wanted(f->log));
    append_n(f, 1, 10, 0, 0); /* an unflushed tail in the active segment */
    int64_t leo = storage_log_end_offset(f->log);

    /* Crash: files closed as they are, no checkpoint written at close. */
    assert_int_equal(storage_log_close_unsynced(f->log), 0);
    f->log = NULL;
    corrupt_first_segment(f);
    fx_open(f);
    /* Nothing below the checkpoint was scanned (the flipped byte went unnoticed); the tail
     * beyond it was recovered. */
    assert_int_equal(storage_log_end_offset(f->log), leo);
    assert_int_equal(storage_log_segment_count(f->log), 3);
}

/* An io that writes half of the bytes of its Nth write and then fails once, as a disk that ran
 * full does until the failed append's bytes are cut again. */
struct failing_io {
    struct storage_io io;
    int writes_left;
    int failures;
};

static int failing_pwritev_all(void *ctx, int fd, const struct iovec *iov, int iovcnt,
                               uint64_t offset)
{
    struct failing_io *f = ctx;
    const struct storage_io *posix = storage_io_posix();
    if (f->writes_left-- > 0)
        return posix->pwritev_all(posix->ctx, fd, iov, iovcnt, offset);
    f->failures++;
    f->writes_left = 1 << 30; /* one failure, then the truncation that undoes it can write */
    struct iovec half = {iov[0].iov_base, iov[0].iov_len / 2};
    (void)posix->pwritev_all(posix->ctx, fd, &half, 1, offset);
    return LM_E_FULL;
}

static int failing_sync(void *ctx, const int *fds, int n)
{
    (void)ctx;
    return storage_io_posix()->sync(NULL, fds, n);
}

static int failing_pwritev_sync(void *ctx, int fd, const struct iovec *iov, int iovcnt,
                                uint64_t offset)
{
    int rc = failing_pwritev_all(ctx, fd, iov, iovcnt, offset);
    return rc != 0 ? rc : failing_sync(ctx, &fd, 1);
}

/* A failed write leaves the log as it was (all or nothing), and the log goes on afterwards. */
static void test_write_failure_rolls_back(void **state)
{
    struct fx *f = *state;
    struct failing_io fio = {.io = {.pwritev_all = failing_pwritev_all,
                                    .sync = failing_sync,
                                    .pwritev_sync = failing_pwritev_sync},
                             .writes_left = 1 << 30};
    fio.io.ctx = &fio;
    f->cfg.io = &fio.io;
    f->cfg.segment_bytes = 4096;
    f->cfg.checkpoint_interval_bytes = UINT64_MAX;
    fx_open(f);
    append_n(f, 3, 200, 0, 0);
    int64_t leo = storage_log_end_offset(f->log);
    uint64_t size = storage_log_size_bytes(f->log);
    /* Fail the very next write. */
    fio.writes_left = 0;
    uint8_t *b;
    size_t len;
    tu_build_batch(2, 200, leo, 0, &b, &len);
    struct storage_append_result r;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 0, &r), LM_E_FULL);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    assert_int_equal(storage_log_size_bytes(f->log), size);
    free(b);
    /* A multi-batch append that rolls in the middle and fails in its second write. */
    uint8_t *many = NULL;
    size_t total = 0;
    int64_t tag = leo;
    for (int i = 0; i < 12; i++) {
        tu_build_batch(2, 200, tag, 0, &b, &len);
        tag += 2;
        many = realloc(many, total + len);
        memcpy(many + total, b, len);
        total += len;
        free(b);
    }
    uint32_t segs = storage_log_segment_count(f->log);
    fio.writes_left = 1;
    assert_int_equal(storage_log_append_leader(f->log, many, total, 0, &r), LM_E_FULL);
    assert_int_equal(fio.failures, 2);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    assert_int_equal(storage_log_segment_count(f->log), segs);
    check_log(f, 0);
    /* Space again: the same bytes go in. */
    fio.writes_left = 1 << 30;
    assert_int_equal(storage_log_append_leader(f->log, many, total, 0, &r), 0);
    assert_int_equal(r.base_offset, leo);
    free(many);
    check_log(f, 0);
    fx_reopen(f);
    assert_int_equal(f->reports.warnings, 0);
    check_log(f, 0);
    assert_int_equal(storage_log_close(f->log), 0); /* fio lives on this stack */
    f->log = NULL;
}

/* The first leader-epoch file of a new log is written unsynced (checkpoint.c epochs_write):
 * what a crash can leave of it, no file or an empty or cut one, reopens with the epochs rebuilt
 * from the batches and every batch kept. */
/* Opening a new log writes and syncs nothing (creating 10,000 partitions at once must not
 * cost 20,000 disk flushes on the shard threads): its directory entries become durable with
 * its first sync, which takes the directory along with the data; a log with a checkpoint
 * (reopened, cleanly closed) is not "new". */
static void test_new_log_syncs_with_first_flush(void **state)
{
    struct fx *f = *state;
    f->cfg.external_sync = true;
    char ck[PATH_MAX + 32];
    snprintf(ck, sizeof(ck), "%s/partition.checkpoint", f->dir);
    fx_open(f);
    struct stat st;
    assert_true(stat(ck, &st) != 0 || st.st_size == 0); /* nothing written at creation */
    append_n(f, 2, 10, 0, 0);
    struct storage_sync sy;
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    bool dir = false;
    for (uint32_t i = 0; i < sy.fd_count; i++)
        dir = dir || sy.full[i];
    assert_true(dir); /* the first sync carries the directory's fsync */
    sync_all_steps(f->log, &sy);
    assert_int_equal(storage_log_flushed_offset(f->log), 2);
    /* once synced, the next sync is the data alone */
    append_n(f, 1, 10, 0, 0);
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    for (uint32_t i = 0; i < sy.fd_count; i++)
        assert_false(sy.full[i]);
    sync_all_steps(f->log, &sy);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), 3);
    check_log(f, 0);

    /* A crash right after creation (nothing synced, nothing closed) leaves a log that opens
     * as a new, empty one. */
    assert_int_equal(storage_log_close(f->log), 0);
    f->log = NULL;
    tu_rm_rf(f->dir);
    fx_open(f);
    struct storage_log *lost = f->log; /* abandoned as a crash would: no close */
    f->log = NULL;
    fx_open(f);
    assert_int_equal(storage_log_end_offset(f->log), 0);
    assert_int_equal(storage_log_close(lost), 0);
}

/* An owner that synced the new log's directory itself (a replica's first Raft state write)
 * says so, and the first sync holds no descriptor of the directory; a change after the owner
 * read the count keeps the mark. */
static void test_new_log_dir_synced_by_owner(void **state)
{
    struct fx *f = *state;
    f->cfg.external_sync = true;
    fx_open(f);
    uint64_t changes = 0;
    assert_true(storage_log_dir_dirty(f->log, &changes));
    storage_log_dir_synced(f->log, changes + 1); /* a count from before some change */
    assert_true(storage_log_dir_dirty(f->log, &changes));
    storage_log_dir_synced(f->log, changes);
    assert_false(storage_log_dir_dirty(f->log, &changes));
    append_n(f, 2, 10, 0, 0);
    struct storage_sync sy;
    assert_int_equal(storage_log_sync_begin(f->log, &sy), 0);
    for (uint32_t i = 0; i < sy.fd_count; i++)
        assert_false(sy.full[i]); /* the data alone */
    sync_all_steps(f->log, &sy);
    assert_int_equal(storage_log_flushed_offset(f->log), 2);
    fx_reopen(f);
    assert_int_equal(storage_log_end_offset(f->log), 2);
    check_log(f, 0);
}

static void test_first_epoch_file_lost(void **state)
{
    struct fx *f = *state;
    char path[PATH_MAX + 64];
    snprintf(path, sizeof(path), "%s/leader-epoch-checkpoint", f->dir);
    for (int how = 0; how < 3; how++) {
        tu_rm_rf(f->dir);
        fx_open(f);
        append_n(f, 3, 10, 4, 0);
        append_n(f, 2, 10, 6, 0);
        assert_int_equal(storage_log_flush(f->log, true), 0);
        assert_int_equal(storage_log_close(f->log), 0);
        f->log = NULL;
        if (how == 0) {
            assert_int_equal(unlink(path), 0);
        } else {
            /* empty (its rename reached the disk, not its contents) or cut short */
            assert_int_equal(truncate(path, how == 1 ? 0 : 5), 0);
        }
        fx_open(f);
        assert_int_equal(storage_log_end_offset(f->log), 5);
        assert_int_equal(storage_log_latest_epoch(f->log), 6);
        int32_t e;
        int64_t end;
        storage_log_epoch_end_offset(f->log, 4, &e, &end);
        assert_int_equal(e, 4);
        assert_int_equal(end, 3);
        check_log(f, 0);
        assert_int_equal(storage_log_close(f->log), 0);
        f->log = NULL;
    }
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_partition_dir),
        T(test_empty_log),
        T(test_append_assigns_offsets_and_epoch),
        T(test_append_rejects_bad_batches),
        T(test_follower_append),
        T(test_roll_by_size_and_multi_segment_reads),
        T(test_roll_by_time),
        T(test_roll_before_relative_offset_overflow),
        T(test_offsets_near_int64_max),
        T(test_huge_batch),
        T(test_truncate_across_segments),
        T(test_retention_and_log_start),
        T(test_retention_by_size),
        T(test_timestamps),
        T(test_log_append_time),
        T(test_open_segment_bound),
        T(test_flush_policy),
        T(test_external_sync),
        T(test_fds_at_rest),
        T(test_release_fds),
        T(test_recovery_point_at_roll),
        T(test_write_failure_rolls_back),
        T(test_first_epoch_file_lost),
        T(test_new_log_syncs_with_first_flush),
        T(test_new_log_dir_synced_by_owner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
