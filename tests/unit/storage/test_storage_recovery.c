/* storage/ recovery: damaged segments, indexes and checkpoints are detected, the valid prefix is
 * kept, indexes are rebuilt, and what was dropped is reported. An "unclean" log (a process that
 * wrote and died without closing, so the checkpoint lags) is made in a forked child. */
#include <fcntl.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "storage/storage.h"
#include "storage_test_util.h"

struct fx {
    char root[PATH_MAX];
    char dir[PATH_MAX + 16];
    struct storage_config cfg;
    struct tu_reports reports;
    struct storage_log *log;
    int64_t batch_base[64]; /* base offset of each batch appended, by order */
    uint64_t batch_pos[64]; /* position in its segment */
    int batches;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    tu_mkdtemp(f->root, "recovery");
    snprintf(f->dir, sizeof(f->dir), "%s/t-3", f->root);
    storage_config_default(&f->cfg);
    f->cfg.index_interval_bytes = 512;
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
    tu_rm_rf(f->root);
    free(f);
    return 0;
}

static void append_batches(struct fx *f, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t *b;
        size_t len;
        int64_t leo = storage_log_end_offset(f->log);
        int k = f->batches;
        tu_build_batch(1 + k % 4, 150, leo, 1000 * (k + 1), &b, &len);
        struct storage_append_result r;
        uint64_t before = storage_log_size_bytes(f->log);
        assert_int_equal(storage_log_append_leader(f->log, b, len, k / 10, &r), 0);
        free(b);
        if (f->batches < 64) {
            f->batch_base[f->batches] = r.base_offset;
            f->batch_pos[f->batches] = before; /* exact while there is one segment */
        }
        f->batches++;
    }
}

/* Appends n batches in a child that flushes the data but never writes a checkpoint after open,
 * then dies: the next open must scan everything. The parent replays the appends in its own
 * bookkeeping (same sizes) to know positions. */
static void unclean_append(struct fx *f, int n)
{
    int start = f->batches;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        struct storage_config cfg = f->cfg;
        cfg.checkpoint_interval_bytes = UINT64_MAX;
        if (storage_log_open(f->dir, &cfg, &f->log) != 0)
            _exit(2);
        append_batches(f, n);
        if (storage_log_flush(f->log, false) != 0)
            _exit(3);
        _exit(0); /* no close: the checkpoint keeps its old recovery point */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* Recompute the bookkeeping the child had. */
    struct storage_config cfg = f->cfg;
    int64_t leo = 0;
    uint64_t pos = 0;
    if (start > 0) {
        leo = f->batch_base[start - 1] + 1 + (start - 1) % 4;
        pos = 0;
    }
    for (int i = 0; i < start && i < 64; i++) {
        uint8_t *b;
        size_t len;
        tu_build_batch(1 + i % 4, 150, f->batch_base[i], 1000 * (i + 1), &b, &len);
        pos = f->batch_pos[i] + len;
        free(b);
    }
    (void)cfg;
    for (int i = start; i < start + n; i++) {
        uint8_t *b;
        size_t len;
        tu_build_batch(1 + i % 4, 150, leo, 1000 * (i + 1), &b, &len);
        if (i < 64) {
            f->batch_base[i] = leo;
            f->batch_pos[i] = pos;
        }
        leo += 1 + i % 4;
        pos += len;
        free(b);
    }
    f->batches = start + n;
}

static void seg_file(struct fx *f, int64_t base, const char *ext, char *out)
{
    snprintf(out, PATH_MAX * 2, "%s/%020lld%s", f->dir, (long long)base, ext);
}

static off_t file_size(const char *path)
{
    struct stat st;
    if (stat(path, &st) != 0)
        return -1;
    return st.st_size;
}

static void open_log(struct fx *f)
{
    memset(&f->reports, 0, sizeof(f->reports));
    assert_int_equal(storage_log_open(f->dir, &f->cfg, &f->log), 0);
}

static void close_log(struct fx *f)
{
    assert_int_equal(storage_log_close(f->log), 0);
    f->log = NULL;
}

/* Everything readable is intact and contiguous, and ends at the log end offset. */
static void check_all(struct fx *f)
{
    uint8_t *all;
    size_t len;
    assert_int_equal(tu_read_all(f->log, storage_log_start_offset(f->log), &all, &len), 0);
    size_t pos = 0;
    int64_t expect = storage_log_start_offset(f->log);
    while (pos < len) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(all + pos, len - pos, &h), 0);
        assert_int_equal(h.base_offset, expect);
        assert_int_equal(tu_check_batch(all + pos, kafka_batch_total_size(&h), 1), 0);
        expect = kafka_batch_last_offset(&h) + 1;
        pos += kafka_batch_total_size(&h);
    }
    assert_int_equal(expect, storage_log_end_offset(f->log));
    free(all);
}

static void flip_bits(const char *path, uint64_t at, uint8_t mask)
{
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, (off_t)at), 1);
    b ^= mask;
    assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
    close(fd);
}

static void flip_byte(const char *path, uint64_t at)
{
    flip_bits(path, at, 0x10);
}

/* partitionLeaderEpoch: bytes 12..15 of a v2 batch, big-endian, outside the CRC. */
#define EPOCH_AT 12

static void assert_epoch_end(struct fx *f, int32_t epoch, int32_t want_epoch, int64_t want_end)
{
    int32_t oe;
    int64_t end;
    storage_log_epoch_end_offset(f->log, epoch, &oe, &end);
    assert_int_equal(oe, want_epoch);
    assert_int_equal(end, want_end);
}

static void test_flipped_byte_in_last_segment(void **state)
{
    struct fx *f = *state;
    open_log(f);
    append_batches(f, 5);
    close_log(f);
    unclean_append(f, 20);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    /* A byte inside batch 15's records. */
    flip_byte(path, f->batch_pos[15] + KAFKA_BATCH_HEADER_SIZE + 20);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[15]);
    assert_true(f->reports.warnings >= 1);
    assert_non_null(strstr(f->reports.last, "CRC"));
    assert_int_equal(file_size(path), (off_t)f->batch_pos[15]);
    check_all(f);
    /* The log goes on from there. */
    append_batches(f, 2);
    close_log(f);
    open_log(f);
    assert_int_equal(f->reports.warnings, 0);
    check_all(f);
}

static void test_flipped_base_offset_is_caught(void **state)
{
    struct fx *f = *state;
    open_log(f);
    close_log(f);
    unclean_append(f, 10);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    /* baseOffset is outside the CRC: continuity has to catch it. */
    flip_byte(path, f->batch_pos[6] + 7);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[6]);
    assert_non_null(strstr(f->reports.last, "offsets do not continue"));
    check_all(f);
}

/* The leader epoch lies outside the CRC, so a flipped bit there leaves a batch that passes every
 * other check. Here it is the last batch of the tail beyond the recovery point: no later batch
 * contradicts it, and before the leader-epoch file was written ahead of the batches recovery
 * took its epoch (2 + 2^20) into the cache, after which no leader at epoch 3 could append. */
static void test_flipped_epoch_in_last_batch(void **state)
{
    struct fx *f = *state;
    open_log(f);
    append_batches(f, 5); /* epoch 0, covered by the checkpoint */
    close_log(f);
    unclean_append(f, 20); /* batches 5..24: epochs 0, 1 (10..19), 2 (20..24) */
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    flip_bits(path, f->batch_pos[24] + EPOCH_AT + 1, 0x10);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[24]);
    assert_int_equal(file_size(path), (off_t)f->batch_pos[24]);
    assert_non_null(strstr(f->reports.last, "leader epoch"));
    assert_int_equal(storage_log_latest_epoch(f->log), 2);
    assert_epoch_end(f, 0, 0, f->batch_base[10]);
    assert_epoch_end(f, 1, 1, f->batch_base[20]);
    assert_epoch_end(f, 2, 2, f->batch_base[24]);
    assert_epoch_end(f, 2 + (1 << 20), -1, -1);
    check_all(f);
    /* The next leader appends at its epoch, and the log reopens cleanly. */
    uint8_t *b;
    size_t len;
    tu_build_batch(2, 150, storage_log_end_offset(f->log), 99000, &b, &len);
    struct storage_append_result r;
    assert_int_equal(storage_log_append_leader(f->log, b, len, 3, &r), 0);
    free(b);
    close_log(f);
    open_log(f);
    assert_int_equal(f->reports.warnings, 0);
    assert_int_equal(storage_log_latest_epoch(f->log), 3);
    assert_epoch_end(f, 2, 2, f->batch_base[24]);
    check_all(f);
}

/* A raised epoch in the middle of the tail: the batch itself goes, not only the later ones whose
 * epoch then looks like it went backwards. */
static void test_flipped_epoch_mid_tail(void **state)
{
    struct fx *f = *state;
    open_log(f);
    close_log(f);
    unclean_append(f, 25); /* epochs 0 (0..9), 1 (10..19), 2 (20..24) */
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    flip_bits(path, f->batch_pos[22] + EPOCH_AT, 0x01); /* 2 + 2^24 */
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[22]);
    assert_int_equal(storage_log_latest_epoch(f->log), 2);
    assert_epoch_end(f, 1, 1, f->batch_base[20]);
    assert_epoch_end(f, 2, 2, f->batch_base[22]);
    check_all(f);
}

/* A lowered epoch on the first batch past the recovery point: nothing before it in the scan
 * shows it went backwards, and taking it would move the start of epoch 1 to the next batch. */
static void test_lowered_epoch_first_scanned(void **state)
{
    struct fx *f = *state;
    open_log(f);
    append_batches(f, 10); /* epoch 0, covered by the checkpoint */
    close_log(f);
    unclean_append(f, 10); /* batches 10..19: epoch 1 */
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    flip_bits(path, f->batch_pos[10] + EPOCH_AT + 3, 0x01); /* 1 -> 0 */
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[10]);
    assert_int_equal(storage_log_latest_epoch(f->log), 0);
    assert_epoch_end(f, 0, 0, f->batch_base[10]);
    assert_epoch_end(f, 1, -1, -1);
    check_all(f);
}

/* The leader-epoch file names an epoch before its first batch is written; when a power cut takes
 * that batch, recovery forgets the epoch with it. */
static void test_epoch_of_lost_tail_forgotten(void **state)
{
    struct fx *f = *state;
    open_log(f);
    close_log(f);
    unclean_append(f, 25); /* epochs 0 (0..9), 1 (10..19), 2 (20..24) */
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/leader-epoch-checkpoint", f->dir);
    FILE *ef = fopen(path, "r");
    assert_non_null(ef);
    int version, count;
    assert_int_equal(fscanf(ef, "%d %d", &version, &count), 2);
    assert_int_equal(count, 3); /* written by the appends, not by a checkpoint */
    fclose(ef);
    seg_file(f, 0, ".log", path);
    assert_int_equal(truncate(path, (off_t)f->batch_pos[20] + 30), 0);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[20]);
    assert_int_equal(storage_log_latest_epoch(f->log), 1);
    assert_epoch_end(f, 1, 1, f->batch_base[20]);
    assert_epoch_end(f, 2, -1, -1);
    check_all(f);
    close_log(f);
    open_log(f);
    assert_int_equal(f->reports.warnings, 0);
    assert_int_equal(storage_log_latest_epoch(f->log), 1);
}

static void test_zero_filled_tail(void **state)
{
    struct fx *f = *state;
    open_log(f);
    close_log(f);
    unclean_append(f, 12);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    off_t size = file_size(path);
    /* After a power loss some file systems show the new size with zeros in it. */
    assert_int_equal(truncate(path, size + 8192), 0);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[11] + 1 + 11 % 4);
    assert_int_equal(file_size(path), size);
    /* the same rule as preallocated zeros (storage.h): cut, and not a damage */
    assert_non_null(strstr(f->reports.last, "cutting 8192 preallocated bytes"));
    assert_int_equal(f->reports.warnings, 0);
    check_all(f);
}

/* ---- preallocation (storage.h): zeros written ahead of the active segment's end */

static bool all_zero_from(const char *path, off_t from)
{
    int fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t buf[4096];
    bool zero = true;
    ssize_t r;
    while (zero && (r = pread(fd, buf, sizeof(buf), from)) > 0) {
        for (ssize_t i = 0; i < r; i++)
            zero = zero && buf[i] == 0;
        from += r;
    }
    close(fd);
    return zero;
}

static void test_preallocated_flush_and_close(void **state)
{
    struct fx *f = *state;
    f->cfg.preallocate_bytes = 64 * 1024;
    open_log(f);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    append_batches(f, 3);
    off_t end = (off_t)storage_log_size_bytes(f->log);
    assert_int_equal(file_size(path), end); /* appends alone write no zeros */
    assert_int_equal(storage_log_flush(f->log, false), 0);
    /* a small log gets a small step: one page past its end */
    off_t size = file_size(path);
    assert_true(size > end && size <= end + 8192);
    assert_true(all_zero_from(path, end));
    /* the step grows with the log, up to preallocate_bytes */
    append_batches(f, 40);
    assert_int_equal(storage_log_flush(f->log, false), 0);
    end = (off_t)storage_log_size_bytes(f->log);
    size = file_size(path);
    assert_true(size > end && size <= end + 64 * 1024 + 4096);
    assert_true(all_zero_from(path, end));
    /* appends land on the zeros; the file does not grow while they last */
    append_batches(f, 1);
    assert_int_equal(file_size(path), size);
    check_all(f);
    /* a close cuts the file to its last batch */
    end = (off_t)storage_log_size_bytes(f->log);
    close_log(f);
    assert_int_equal(file_size(path), end);
    open_log(f);
    assert_int_equal(f->reports.count, 0);
    check_all(f);
}

/* A flush carrying more than STORAGE_PREALLOC_FLUSH_MAX bytes of appends writes no zeros (a
 * throughput-bound writer); the small flush after it does. */
static void test_preallocated_only_small_flushes(void **state)
{
    struct fx *f = *state;
    f->cfg.preallocate_bytes = 64 * 1024;
    open_log(f);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    while (storage_log_size_bytes(f->log) <= STORAGE_PREALLOC_FLUSH_MAX)
        append_batches(f, 10);
    assert_int_equal(storage_log_flush(f->log, false), 0);
    off_t end = (off_t)storage_log_size_bytes(f->log);
    assert_int_equal(file_size(path), end);
    append_batches(f, 3);
    assert_int_equal(storage_log_flush(f->log, false), 0);
    end = (off_t)storage_log_size_bytes(f->log);
    off_t size = file_size(path);
    assert_true(size > end && size <= end + 64 * 1024 + 4096);
    assert_true(all_zero_from(path, end));
    /* large again, across the zeros: still none written past them */
    uint64_t from = storage_log_size_bytes(f->log);
    while (storage_log_size_bytes(f->log) - from <= STORAGE_PREALLOC_FLUSH_MAX)
        append_batches(f, 10);
    assert_int_equal(storage_log_flush(f->log, false), 0);
    end = (off_t)storage_log_size_bytes(f->log);
    assert_int_equal(file_size(path), end > size ? end : size);
    close_log(f);
    assert_int_equal(file_size(path), end);
    open_log(f);
    assert_int_equal(f->reports.count, 0);
    check_all(f);
}

static void test_preallocated_tail_after_crash(void **state)
{
    struct fx *f = *state;
    f->cfg.preallocate_bytes = 64 * 1024;
    open_log(f);
    append_batches(f, 4); /* covered by the checkpoint */
    close_log(f);
    unclean_append(f, 30); /* flushed (with zeros ahead), never closed */
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    uint64_t end = f->batch_pos[33];
    {
        uint8_t *b;
        size_t len;
        tu_build_batch(1 + 33 % 4, 150, f->batch_base[33], 1000 * 34, &b, &len);
        end += len;
        free(b);
    }
    assert_true(file_size(path) > (off_t)end);
    assert_true(all_zero_from(path, (off_t)end));
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[33] + 1 + 33 % 4);
    assert_int_equal(f->reports.warnings, 0);
    assert_non_null(strstr(f->reports.last, "preallocated bytes"));
    assert_int_equal(file_size(path), (off_t)end);
    check_all(f);
    append_batches(f, 3);
    close_log(f);
    open_log(f);
    assert_int_equal(f->reports.count, 0);
    check_all(f);
}

/* Zeros and then other bytes after the last batch are not a preallocated tail: a damage. */
static void test_zeros_then_bytes_is_damage(void **state)
{
    struct fx *f = *state;
    open_log(f);
    close_log(f);
    unclean_append(f, 6);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    off_t size = file_size(path);
    assert_int_equal(truncate(path, size + 8192), 0);
    flip_byte(path, (uint64_t)size + 5000);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[5] + 1 + 5 % 4);
    assert_int_equal(f->reports.warnings, 1);
    assert_non_null(strstr(f->reports.last, "zeros after the last batch"));
    assert_int_equal(file_size(path), size);
    check_all(f);
}

/* A roll cuts the sealed segment to its batches; one whose cut a crash undid (zeros after its
 * last batch, below a clean checkpoint: trusted) is cut again at the next open, quietly. */
static void test_preallocated_roll(void **state)
{
    struct fx *f = *state;
    f->cfg.preallocate_bytes = 64 * 1024;
    f->cfg.segment_bytes = 8 * 1024;
    open_log(f);
    for (int i = 0; i < 12; i++) {
        append_batches(f, 4);
        assert_int_equal(storage_log_flush(f->log, false), 0);
    }
    assert_true(storage_log_segment_count(f->log) >= 3);
    check_all(f);
    close_log(f);
    open_log(f);
    assert_int_equal(f->reports.count, 0);
    check_all(f);
    int64_t leo = storage_log_end_offset(f->log);
    close_log(f);
    /* every sealed segment ends at its last batch: a batch starts right after it */
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    off_t first = file_size(path);
    assert_true(first > 0 && first <= 8 * 1024);
    assert_int_equal(truncate(path, first + 12288), 0);
    open_log(f);
    assert_int_equal(f->reports.warnings, 0);
    assert_non_null(strstr(f->reports.last, "cutting 12288 preallocated bytes"));
    assert_int_equal(file_size(path), first);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    check_all(f);
    /* fewer zeros than a batch start (a cut undone where less than 12 bytes were left) */
    close_log(f);
    assert_int_equal(truncate(path, first + 5), 0);
    open_log(f);
    assert_int_equal(f->reports.warnings, 0);
    assert_non_null(strstr(f->reports.last, "cutting 5 preallocated bytes"));
    assert_int_equal(file_size(path), first);
    check_all(f);
}

static void test_torn_last_batch(void **state)
{
    struct fx *f = *state;
    open_log(f);
    append_batches(f, 8); /* covered by the checkpoint */
    close_log(f);
    unclean_append(f, 8);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    assert_int_equal(truncate(path, (off_t)f->batch_pos[13] + 100), 0);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), f->batch_base[13]);
    assert_non_null(strstr(f->reports.last, "partial batch"));
    check_all(f);
}

/* Sealed segments are trusted but their indexes are checked: a truncated .index is found by the
 * index rule (no more than one interval after the last entry) and rebuilt. */
static void test_truncated_index_rebuilt(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 8192;
    open_log(f);
    append_batches(f, 60);
    assert_true(storage_log_segment_count(f->log) >= 3);
    close_log(f);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".index", path);
    off_t size = file_size(path);
    assert_true(size >= 16);
    assert_int_equal(truncate(path, size / 2 - (size / 2) % 8), 0);
    open_log(f);
    assert_true(f->reports.warnings >= 1);
    assert_non_null(strstr(f->reports.last, "rebuilding indexes"));
    check_all(f);
    for (int64_t off = 0; off < storage_log_end_offset(f->log); off += 5) {
        struct storage_read_result res;
        assert_int_equal(storage_log_read(f->log, off, 300, STORAGE_NO_LIMIT, &res), 0);
        assert_true(res.first_offset <= off && res.last_offset >= off);
        storage_read_result_release(f->log, &res);
    }
    close_log(f);
    assert_int_equal(file_size(path), size);
    /* A torn entry (not a multiple of 8) and garbage entries are rebuilt too. */
    assert_int_equal(truncate(path, size - 3), 0);
    open_log(f);
    assert_non_null(strstr(f->reports.last, "torn index file"));
    check_all(f);
    close_log(f);
    int fd = open(path, O_WRONLY);
    uint8_t junk[16];
    memset(junk, 0xEE, sizeof(junk));
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 0), (ssize_t)sizeof(junk));
    close(fd);
    open_log(f);
    assert_non_null(strstr(f->reports.last, "rebuilding indexes"));
    check_all(f);
    close_log(f);
    assert_int_equal(file_size(path), size);
}

static void test_deleted_timeindex_rebuilt(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 16384;
    open_log(f);
    append_batches(f, 60);
    int64_t off_before, ts_before;
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 23500, &off_before, &ts_before), 0);
    close_log(f);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".timeindex", path);
    off_t size = file_size(path);
    assert_true(size > 0);
    assert_int_equal(unlink(path), 0);
    open_log(f);
    assert_non_null(strstr(f->reports.last, "rebuilding indexes"));
    int64_t off, ts;
    assert_int_equal(storage_log_offset_for_timestamp(f->log, 23500, &off, &ts), 0);
    assert_int_equal(off, off_before);
    assert_int_equal(ts, ts_before);
    assert_int_equal(ts, 24000);
    close_log(f);
    assert_int_equal(file_size(path), size);
}

static void test_missing_or_torn_checkpoint(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 16384;
    open_log(f);
    append_batches(f, 40);
    storage_log_set_high_watermark(f->log, 30);
    int64_t leo = storage_log_end_offset(f->log);
    close_log(f);
    open_log(f); /* so that both slots hold the high watermark */
    close_log(f);
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/partition.checkpoint", f->dir);
    /* Tear the newest slot: the older one (same values here, written by open) is used. */
    int fd = open(path, O_RDWR);
    uint8_t slot[128];
    assert_int_equal(pread(fd, slot, sizeof(slot), 0), (ssize_t)sizeof(slot));
    uint64_t seq0 = 0, seq1 = 0;
    for (int i = 0; i < 8; i++) {
        seq0 = seq0 << 8 | slot[8 + i];
        seq1 = seq1 << 8 | slot[64 + 8 + i];
    }
    uint8_t junk[20] = {0};
    assert_int_equal(pwrite(fd, junk, sizeof(junk), seq1 > seq0 ? 64 + 20 : 20), 20);
    close(fd);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    assert_int_equal(storage_log_high_watermark(f->log), 30);
    check_all(f);
    close_log(f);
    /* No checkpoint at all: everything is scanned and kept. */
    assert_int_equal(unlink(path), 0);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), leo);
    assert_int_equal(storage_log_high_watermark(f->log), 0);
    check_all(f);
}

static void test_missing_epoch_file_rebuilt(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 16384;
    open_log(f);
    append_batches(f, 45); /* epochs 0..4, 10 batches each */
    int32_t e_before[6];
    int64_t end_before[6];
    for (int32_t e = 0; e < 6; e++)
        storage_log_epoch_end_offset(f->log, e, &e_before[e], &end_before[e]);
    close_log(f);
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/leader-epoch-checkpoint", f->dir);
    FILE *ef = fopen(path, "r");
    assert_non_null(ef);
    int version, count;
    assert_int_equal(fscanf(ef, "%d %d", &version, &count), 2);
    assert_int_equal(version, 0);
    assert_int_equal(count, 5);
    fclose(ef);
    assert_int_equal(unlink(path), 0);
    open_log(f);
    assert_int_equal(storage_log_latest_epoch(f->log), 4);
    for (int32_t e = 0; e < 6; e++) {
        int32_t oe;
        int64_t end;
        storage_log_epoch_end_offset(f->log, e, &oe, &end);
        assert_int_equal(oe, e_before[e]);
        assert_int_equal(end, end_before[e]);
    }
}

static void test_leftover_swap_files(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 16384;
    open_log(f);
    append_batches(f, 40);
    close_log(f);
    char from[PATH_MAX * 2], to[PATH_MAX * 2 + 16];
    /* An interrupted compaction that never reached the swap: its .cleaned files go. */
    seg_file(f, 0, ".log", from);
    snprintf(to, sizeof(to), "%s.cleaned", from);
    FILE *c = fopen(to, "w");
    fputs("half-written", c);
    fclose(c);
    /* One that reached the swap: the .swap file replaces the segment (here, an identical copy
     * of it, so the data still checks). */
    char cmd[PATH_MAX * 5];
    snprintf(cmd, sizeof(cmd), "cp %s %s.swap", from, from);
    assert_int_equal(system(cmd), 0);
    open_log(f);
    assert_int_equal(file_size(to), -1);
    snprintf(to, sizeof(to), "%s.swap", from);
    assert_int_equal(file_size(to), -1);
    check_all(f);
}

/* A power cut can drop the unsynced tail of a rolled segment at a batch boundary while the next
 * segment survives: the hole must not be exposed, so the later segments go. */
static void test_hole_between_segments(void **state)
{
    struct fx *f = *state;
    f->cfg.segment_bytes = 4096;
    open_log(f);
    close_log(f);
    unclean_append(f, 30);
    char path[PATH_MAX * 2];
    seg_file(f, 0, ".log", path);
    /* Cut the first segment after its first batch. */
    int fd = open(path, O_RDWR);
    uint8_t hdr[KAFKA_BATCH_HEADER_SIZE];
    assert_int_equal(pread(fd, hdr, sizeof(hdr), 0), (ssize_t)sizeof(hdr));
    struct kafka_batch_header h;
    assert_int_equal(kafka_batch_header_parse(hdr, sizeof(hdr), &h), 0);
    assert_int_equal(ftruncate(fd, (off_t)kafka_batch_total_size(&h)), 0);
    close(fd);
    open_log(f);
    assert_int_equal(storage_log_end_offset(f->log), kafka_batch_last_offset(&h) + 1);
    assert_int_equal(storage_log_segment_count(f->log), 1);
    assert_true(f->reports.warnings >= 2);
    check_all(f);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_flipped_byte_in_last_segment),
        T(test_flipped_base_offset_is_caught),
        T(test_flipped_epoch_in_last_batch),
        T(test_flipped_epoch_mid_tail),
        T(test_lowered_epoch_first_scanned),
        T(test_epoch_of_lost_tail_forgotten),
        T(test_zero_filled_tail),
        T(test_preallocated_flush_and_close),
        T(test_preallocated_only_small_flushes),
        T(test_preallocated_tail_after_crash),
        T(test_zeros_then_bytes_is_damage),
        T(test_preallocated_roll),
        T(test_torn_last_batch),
        T(test_truncated_index_rebuilt),
        T(test_deleted_timeindex_rebuilt),
        T(test_missing_or_torn_checkpoint),
        T(test_missing_epoch_file_rebuilt),
        T(test_leftover_swap_files),
        T(test_hole_between_segments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
