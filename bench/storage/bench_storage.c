/* bench_storage: append and read throughput of storage/ and recovery time, each against a
 * reference measured in the same run (plain write(), write()+fdatasync(), read()).
 *
 *   bench_storage [dir] [MiB]     defaults: $TMPDIR or /tmp, 256 MiB per append run
 *
 * Records are 1 KiB, 16 per batch (one ~16.6 KiB batch per append). Every
 * figure is the best of three runs, reference and storage alternating; files are deleted after.
 * Reads and recovery run from the page cache (the data was just written): they measure the
 * CPU path (header walks, CRC-32C), not the disk. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "protocol/record_batch.h"
#include "protocol/records.h"
#include "storage/storage.h"

#define BENCH_NAME "bench_storage"
#include "bench_util.h"

/* Best of this many runs, reference and storage alternating: the machine is shared. */
#define BENCH_REPS 3

static uint8_t *batch;
static size_t batch_len;

static void build_batch(void)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, 1700000000000);
    uint8_t value[1024];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)(i * 31 + 7);
    for (int i = 0; i < 16; i++)
        if (kafka_batch_builder_append(&b, 1700000000000 + i, "key", 3, value, 1024, NULL, 0) != 0)
            die("builder", 0);
    if (kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &batch, &batch_len) != 0)
        die("builder finish", 0);
    kafka_batch_builder_deinit(&b);
}

enum flush_mode { FLUSH_NONE, FLUSH_1MIB, FLUSH_BATCH };

/* Plain write() of n batches to one file, fdatasync per mode. Returns MB/s. */
static double ref_write(const char *dir, size_t n, enum flush_mode mode)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/ref.bin", dir);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        die("open ref", fd);
    double t0 = now_s();
    size_t since = 0;
    for (size_t i = 0; i < n; i++) {
        if (write(fd, batch, batch_len) != (ssize_t)batch_len)
            die("write", -1);
        since += batch_len;
        if (mode == FLUSH_BATCH || (mode == FLUSH_1MIB && since >= (1u << 20))) {
            if (fdatasync(fd) != 0)
                die("fdatasync", -1);
            since = 0;
        }
    }
    double t = now_s() - t0;
    close(fd);
    unlink(path);
    return (double)n * (double)batch_len / t / 1e6;
}

static double log_append(const char *dir, size_t n, enum flush_mode mode,
                         const struct storage_io *io)
{
    char pdir[PATH_MAX + 32];
    snprintf(pdir, sizeof(pdir), "%s/bench-0", dir);
    struct storage_config cfg;
    storage_config_default(&cfg);
    cfg.io = io;
    cfg.flush_messages = mode == FLUSH_BATCH ? 16 : -1;
    struct storage_log *log;
    int rc = storage_log_open(pdir, &cfg, &log);
    if (rc != 0)
        die("storage_log_open", rc);
    double t0 = now_s();
    size_t since = 0;
    for (size_t i = 0; i < n; i++) {
        struct storage_append_result r;
        rc = storage_log_append_leader(log, batch, batch_len, 1, &r);
        if (rc != 0)
            die("append", rc);
        since += batch_len;
        if (mode == FLUSH_1MIB && since >= (1u << 20)) {
            if ((rc = storage_log_flush(log, false)) != 0)
                die("flush", rc);
            since = 0;
        }
    }
    double t = now_s() - t0;
    if ((rc = storage_log_close(log)) != 0)
        die("close", rc);
    rm_rf(pdir);
    return (double)n * (double)batch_len / t / 1e6;
}

static double best(double a, double b)
{
    return a > b ? a : b;
}

static void bench_append(const char *dir, size_t mib)
{
    size_t n = (mib << 20) / batch_len;
    static const char *const names[] = {"no flush", "flush per 1 MiB", "flush per batch"};
    printf("append: %zu batches of %zu bytes (16 x 1 KiB records)\n", n, batch_len);
    for (int m = FLUSH_NONE; m <= FLUSH_BATCH; m++) {
        /* Per-batch fdatasync is slow on most disks: a smaller run gives the same ratio. */
        size_t runs = m == FLUSH_BATCH ? (n / 16 > 64 ? n / 16 : 64) : n;
        double ref = 0, st = 0;
        for (int rep = 0; rep < BENCH_REPS; rep++) {
            ref = best(ref, ref_write(dir, runs, m));
            st = best(st, log_append(dir, runs, m, NULL));
        }
        printf("  %-16s write%s %8.1f MB/s | storage (syscalls) %8.1f MB/s  ratio %.2f", names[m],
               m == FLUSH_NONE ? "()         " : "()+fdatasync", ref, st, st / ref);
        printf("\n");
    }
}

static void fill_log(const char *pdir, size_t n)
{
    struct storage_config cfg;
    storage_config_default(&cfg);
    struct storage_log *log;
    int rc = storage_log_open(pdir, &cfg, &log);
    if (rc != 0)
        die("open", rc);
    for (size_t i = 0; i < n; i++) {
        struct storage_append_result r;
        if ((rc = storage_log_append_leader(log, batch, batch_len, 1, &r)) != 0)
            die("append", rc);
    }
    if ((rc = storage_log_close(log)) != 0)
        die("close", rc);
}

static void bench_read(const char *dir, size_t mib)
{
    size_t n = (mib << 20) / batch_len;
    char pdir[PATH_MAX + 32];
    snprintf(pdir, sizeof(pdir), "%s/bench-read-0", dir);
    fill_log(pdir, n);
    struct storage_config cfg;
    storage_config_default(&cfg);
    struct storage_log *log;
    int rc = storage_log_open(pdir, &cfg, &log);
    if (rc != 0)
        die("open", rc);
    size_t cap = 1u << 20;
    uint8_t *buf = malloc(cap + batch_len);
    double best_st = 0, best_ref = 0;
    for (int rep = 0; rep < BENCH_REPS; rep++) {
        /* Reference: read() of the segment file in 1 MiB chunks. */
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/00000000000000000000.log", pdir);
        int fd = open(path, O_RDONLY);
        double t0 = now_s();
        size_t total = 0;
        ssize_t r;
        while ((r = read(fd, buf, cap)) > 0)
            total += (size_t)r;
        double ref = (double)total / (now_s() - t0) / 1e6;
        close(fd);
        /* storage: read(offset, 1 MiB) + pread of the slices, as a fetch without sendfile. */
        t0 = now_s();
        int64_t off = 0;
        total = 0;
        while (off < storage_log_end_offset(log)) {
            struct storage_read_result res;
            if ((rc = storage_log_read(log, off, cap, STORAGE_NO_LIMIT, &res)) != 0)
                die("read", rc);
            if ((rc = storage_read_result_copy(&res, buf, cap + batch_len)) != 0)
                die("copy", rc);
            total += res.bytes;
            off = res.last_offset + 1;
            storage_read_result_release(log, &res);
        }
        double st = (double)total / (now_s() - t0) / 1e6;
        best_ref = best(best_ref, ref);
        best_st = best(best_st, st);
    }
    printf("sequential read of %zu MiB (page cache, 1 MiB fetches): read() %.1f MB/s | storage "
           "%.1f MB/s  ratio %.2f\n",
           mib, best_ref, best_st, best_st / best_ref);
    free(buf);
    storage_log_close(log);
    rm_rf(pdir);
}

static void bench_recovery(const char *dir, size_t mib)
{
    size_t n = (mib << 20) / batch_len;
    char pdir[PATH_MAX + 32], ck[PATH_MAX + 64];
    snprintf(pdir, sizeof(pdir), "%s/bench-recovery-0", dir);
    snprintf(ck, sizeof(ck), "%s/partition.checkpoint", pdir);
    fill_log(pdir, n);
    struct storage_config cfg;
    storage_config_default(&cfg);
    for (int with = 1; with >= 0; with--) {
        if (!with)
            unlink(ck);
        struct storage_log *log;
        double t0 = now_s();
        int rc = storage_log_open(pdir, &cfg, &log);
        double t = now_s() - t0;
        if (rc != 0)
            die("open", rc);
        printf("recovery of a %zu MiB partition (%u segments, page cache) %s checkpoint: %.3f s "
               "(%.0f MB/s)\n",
               mib, storage_log_segment_count(log), with ? "with" : "without", t,
               (double)storage_log_size_bytes(log) / t / 1e6);
        storage_log_close(log);
    }
    rm_rf(pdir);
}

int main(int argc, char **argv)
{
    const char *tmp = getenv("TMPDIR");
    const char *base = argc > 1 ? argv[1] : (tmp && *tmp ? tmp : "/tmp");
    size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 256;
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s/lm-bench-storage-XXXXXX", base);
    if (mkdtemp(dir) == NULL)
        die("mkdtemp", -1);
    build_batch();
    printf("bench_storage in %s\n", dir);
    bench_append(dir, mib);
    bench_read(dir, mib);
    bench_recovery(dir, 1024);
    free(batch);
    rm_rf(dir);
    return 0;
}
