/* bench_compact: log compaction throughput of storage/compact.c, against a reference measured in
 * the same run (pread + CRC-32C of every batch of the same segments: the least a cleaner that
 * checks what it reads must do).
 *
 *   bench_compact [dir] [MiB] [keys]     defaults: $TMPDIR or /tmp, 256 MiB, 10000 keys
 *
 * The partition holds 1 KiB values, 16 records per batch, keys drawn uniformly from `keys`, in
 * 32 MiB segments. Figures: a full pass (MB/s of partition bytes cleaned; the pass reads the
 * dirty bytes twice, map and clean), the same pass done in 4 MiB steps as the broker's shard tick
 * does (mean and worst step time: how long a shard is busy per tick; the worst includes a
 * group's swap with its fsyncs), and a second pass after 25% more updates. Data comes from the
 * page cache (just written): this measures the CPU path (decode, hash, rebuild, CRC), not the
 * disk. Files are deleted after. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "protocol/crc32c.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"
#include "storage/storage.h"

#define BENCH_NAME "bench_compact"
#include "bench_util.h"

static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Appends `bytes` of 16-record batches with keys from [0, keys). */
static void fill(struct storage_log *log, uint64_t bytes, uint32_t keys)
{
    uint8_t value[1024];
    for (size_t i = 0; i < sizeof(value); i++)
        value[i] = (uint8_t)(i * 31 + 7);
    uint64_t done = 0;
    int64_t ts = 1700000000000;
    while (done < bytes) {
        struct kafka_batch_builder b;
        kafka_batch_builder_init(&b, 0, ts);
        for (int i = 0; i < 16; i++) {
            char key[24];
            int kl = snprintf(key, sizeof(key), "key-%08u", (unsigned)(rnd() % keys));
            memcpy(value, &ts, sizeof(ts));
            if (kafka_batch_builder_append(&b, ts++, key, kl, value, 1024, NULL, 0) != 0)
                die("builder", 0);
        }
        uint8_t *buf;
        size_t len;
        if (kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &buf, &len) != 0)
            die("builder finish", 0);
        kafka_batch_builder_deinit(&b);
        struct storage_append_result res;
        int rc = storage_log_append_leader(log, buf, len, 1, &res);
        if (rc != 0)
            die("append", rc);
        free(buf);
        done += len;
    }
    int rc = storage_log_flush(log, true);
    if (rc != 0)
        die("flush", rc);
    storage_log_set_high_watermark(log, storage_log_end_offset(log));
}

/* Reference: pread every segment file but the active one and CRC-32C each batch. MB/s. */
static double ref_scan(const char *pdir, uint64_t *bytes_out)
{
    DIR *d = opendir(pdir);
    if (d == NULL)
        die("opendir", 0);
    char names[4096][32];
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 4096) {
        size_t l = strlen(e->d_name);
        if (l == 24 && strcmp(e->d_name + 20, ".log") == 0)
            memcpy(names[n++], e->d_name, l + 1); /* l == 24 fits names[0] */
    }
    closedir(d);
    qsort(names, (size_t)n, sizeof(names[0]), (int (*)(const void *, const void *))strcmp);
    size_t cap = 64u << 20;
    uint8_t *buf = malloc(cap);
    uint64_t bytes = 0;
    uint32_t sink = 0;
    double t0 = now_s();
    for (int i = 0; i + 1 < n; i++) {
        char path[PATH_MAX * 2];
        snprintf(path, sizeof(path), "%s/%.31s", pdir, names[i]);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            die("open", 0);
        struct stat st;
        if (fstat(fd, &st) != 0 || (size_t)st.st_size > cap)
            die("fstat", 0);
        size_t got = 0;
        while (got < (size_t)st.st_size) {
            ssize_t r = pread(fd, buf + got, (size_t)st.st_size - got, (off_t)got);
            if (r <= 0)
                die("pread", 0);
            got += (size_t)r;
        }
        close(fd);
        for (size_t pos = 0; pos < got;) {
            struct kafka_batch_header h;
            if (kafka_batch_header_parse(buf + pos, got - pos, &h) != 0)
                die("parse", 0);
            sink ^= kafka_batch_crc_ok(buf + pos, &h);
            pos += kafka_batch_total_size(&h);
        }
        bytes += got;
    }
    double dt = now_s() - t0;
    free(buf);
    if (sink == 0xdeadbeef)
        printf("(unlikely)\n");
    *bytes_out = bytes;
    return (double)bytes / 1e6 / dt;
}

static void quiet(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level > 0)
        fprintf(stderr, "storage: %s\n", msg);
}

static struct storage_log *open_log(const char *pdir)
{
    struct storage_config cfg;
    storage_config_default(&cfg);
    cfg.segment_bytes = 32u << 20;
    cfg.segment_ms = -1;
    cfg.retention_ms = -1;
    cfg.report = quiet;
    struct storage_log *log;
    int rc = storage_log_open(pdir, &cfg, &log);
    if (rc != 0)
        die("open", rc);
    return log;
}

int main(int argc, char **argv)
{
    const char *base = argc > 1 ? argv[1] : (getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    uint64_t mib = argc > 2 ? strtoull(argv[2], NULL, 10) : 256;
    uint32_t keys = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 10000;
    char pdir[PATH_MAX];
    snprintf(pdir, sizeof(pdir), "%s/bench-compact-%d", base, (int)getpid());
    rm_rf(pdir);
    struct storage_compact_config cc;
    storage_compact_config_default(&cc);
    cc.min_cleanable_dirty_ratio = 0;

    printf("bench_compact: %llu MiB partition, %u keys, 1 KiB values, 16 per batch, 32 MiB "
           "segments, dedupe buffer %llu KiB\n",
           (unsigned long long)mib, keys, (unsigned long long)(cc.dedupe_buffer_bytes >> 10));
    struct storage_log *log = open_log(pdir);
    fill(log, mib << 20, keys);
    uint64_t size0 = storage_log_size_bytes(log);
    uint64_t ref_bytes;
    double ref = ref_scan(pdir, &ref_bytes);
    printf("reference  pread + CRC-32C of the sealed segments: %8.1f MB/s (%llu MB)\n", ref,
           (unsigned long long)(ref_bytes / 1000000));

    /* 1: one whole pass. */
    struct storage_compact_stats st;
    double t0 = now_s();
    int rc = storage_log_compact(log, &cc, storage_log_end_offset(log), &st);
    double dt = now_s() - t0;
    if (rc != 0)
        die("compact", rc);
    double mbs = (double)ref_bytes / 1e6 / dt;
    printf("compaction full pass:                              %8.1f MB/s (%.2f s; read %llu MB, "
           "wrote %llu MB, %llu of %llu records kept, %u -> %u segments) = %.2fx reference\n",
           mbs, dt, (unsigned long long)(st.bytes_read / 1000000),
           (unsigned long long)(st.bytes_written / 1000000), (unsigned long long)st.records_kept,
           (unsigned long long)st.records_read, st.segments_before, st.segments_after, mbs / ref);
    printf("partition size %llu MB -> %llu MB\n", (unsigned long long)(size0 / 1000000),
           (unsigned long long)(storage_log_size_bytes(log) / 1000000));
    storage_log_close(log);
    rm_rf(pdir);

    /* 2: the same pass in the broker's 4 MiB steps: time per step is the shard's stall. */
    log = open_log(pdir);
    fill(log, mib << 20, keys);
    double worst = 0, sum = 0;
    int steps = 0;
    bool busy = true;
    t0 = now_s();
    while (busy) {
        double s0 = now_s();
        rc = storage_log_compact_step(log, &cc, storage_log_end_offset(log), 4u << 20, &busy, &st);
        double s = now_s() - s0;
        if (rc != 0)
            die("compact step", rc);
        sum += s;
        worst = s > worst ? s : worst;
        steps++;
    }
    dt = now_s() - t0;
    printf("compaction in 4 MiB steps:                         %8.1f MB/s, %d steps, mean %.1f "
           "ms, worst %.1f ms per step\n",
           (double)ref_bytes / 1e6 / dt, steps, sum / steps * 1000, worst * 1000);

    /* 3: a second pass after 25% more updates (cleans the small result plus the new bytes
     * that sealed segments hold). */
    uint64_t more = (mib << 20) / 4;
    fill(log, more, keys);
    t0 = now_s();
    rc = storage_log_compact(log, &cc, storage_log_end_offset(log), &st);
    dt = now_s() - t0;
    if (rc != 0)
        die("compact 2", rc);
    printf("second pass after %llu MB more updates:              %.2f s, read %llu MB, wrote %llu "
           "MB\n",
           (unsigned long long)(more / 1000000), dt, (unsigned long long)(st.bytes_read / 1000000),
           (unsigned long long)(st.bytes_written / 1000000));
    storage_log_close(log);
    rm_rf(pdir);
    return 0;
}
