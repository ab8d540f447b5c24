/* Crash safety: a child process appends and flushes in a loop, reporting over a pipe every
 * offset it saw made durable; the parent SIGKILLs it at a random moment, sometimes also throws
 * away or damages the bytes after the last acknowledged batch (what a power loss may do to
 * unsynced data: a cut, a zero-filled tail, a flipped byte), reopens the log and checks that
 * every acknowledged batch still there is intact, that the log is contiguous and that nothing
 * after a torn write is visible. Then it goes round again on the same log.
 *
 * STORAGE_CRASH_CYCLES sets the number of cycles (default 150); STORAGE_CRASH_SEED the seed. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "storage/storage.h"
#include "storage_test_util.h"

static uint64_t rng_state;
static uint64_t rnd(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void crash_config(struct storage_config *cfg, struct tu_reports *rep)
{
    storage_config_default(cfg);
    cfg->segment_bytes = 512 * 1024;
    cfg->checkpoint_interval_bytes = 256 * 1024;
    cfg->retention_bytes = 3 * 1024 * 1024;
    cfg->retention_ms = -1;
    cfg->max_open_segments = 4;
    cfg->report = tu_report;
    cfg->report_ctx = rep;
}

static void child_main(const char *dir, int wfd, uint64_t seed, int32_t epoch)
{
    rng_state = seed | 1;
    struct tu_reports rep = {0};
    struct storage_config cfg;
    crash_config(&cfg, &rep);
    bool per_append = rnd() % 3 == 0;
    cfg.flush_messages = per_append ? 1 : -1;
    struct storage_log *log;
    if (storage_log_open(dir, &cfg, &log) != 0)
        _exit(2);
    for (uint64_t n = 0;; n++) {
        int32_t records = 1 + (int32_t)(rnd() % 16);
        size_t value = 8 + rnd() % 1500;
        if (rnd() % 16 == 0) {
            value = 64 * 1024 + rnd() % (256 * 1024); /* large writes tear more often */
            records = 1;
        }
        uint8_t *b;
        size_t len;
        tu_build_batch(records, value, storage_log_end_offset(log), (int64_t)n, &b, &len);
        struct storage_append_result res;
        int rc = storage_log_append_leader(log, b, len, epoch, &res);
        free(b);
        if (rc != 0) {
            fprintf(stderr, "child: append: %s\n", lm_strerror(rc));
            _exit(3);
        }
        if (!per_append && rnd() % 6 == 0 && storage_log_flush(log, false) != 0)
            _exit(4);
        int64_t durable = storage_log_flushed_offset(log);
        storage_log_set_high_watermark(log, durable);
        if (write(wfd, &durable, sizeof(durable)) != sizeof(durable))
            _exit(5);
        if (n % 8 == 0 && storage_log_enforce_retention(log, NULL) != 0)
            _exit(6);
    }
}

/* The recovery point of partition.checkpoint (storage/checkpoint.c: two 64-byte slots, the
 * valid one with the larger sequence wins). Bytes below it were made durable; a power cut cannot
 * take them, so the damage below stays above it. */
static int64_t checkpoint_recovery_point(const char *dir)
{
    char path[PATH_MAX * 2];
    snprintf(path, sizeof(path), "%s/partition.checkpoint", dir);
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return 0;
    uint8_t b[128];
    ssize_t n = pread(fd, b, sizeof(b), 0);
    close(fd);
    int64_t rp = 0;
    uint64_t best = 0;
    for (int s = 0; s < 2 && n >= (s + 1) * 64; s++) {
        const uint8_t *p = b + s * 64;
        uint64_t seq = 0, v = 0;
        for (int i = 0; i < 8; i++) {
            seq = seq << 8 | p[8 + i];
            v = v << 8 | p[16 + i];
        }
        if (p[0] == 'L' && p[1] == 'M' && seq >= best) {
            best = seq;
            rp = (int64_t)v;
        }
    }
    return rp;
}

/* The damage done in this cycle, for failure messages ("" when none): its kind, where, and which
 * byte of which batch it hit (bytes 12..15 hold partitionLeaderEpoch, outside the CRC). */
static char last_damage[PATH_MAX + 256];

static void describe_damage(int fd, const char *name, int kind, uint64_t pos, uint64_t at,
                            uint64_t size)
{
    snprintf(last_damage, sizeof(last_damage), "kind %d in %s at %llu", kind, name,
             (unsigned long long)at);
    uint8_t hdr[KAFKA_BATCH_HEADER_SIZE];
    while (pos + sizeof(hdr) <= size) {
        assert_int_equal(pread(fd, hdr, sizeof(hdr), (off_t)pos), (ssize_t)sizeof(hdr));
        struct kafka_batch_header h;
        if (kafka_batch_header_parse(hdr, sizeof(hdr), &h) != 0)
            return;
        if (pos + kafka_batch_total_size(&h) > at) {
            size_t n = strlen(last_damage);
            snprintf(last_damage + n, sizeof(last_damage) - n,
                     ", byte %llu of the batch at %llu (base offset %lld, epoch %d)",
                     (unsigned long long)(at - pos), (unsigned long long)pos,
                     (long long)h.base_offset, (int)h.partition_leader_epoch);
            return;
        }
        pos += kafka_batch_total_size(&h);
    }
}

/* Walks the last segment file to the end of the batch holding offset acked - 1 and damages the
 * bytes after it, as a power cut may do to unsynced data. Returns the kind of damage (0 none). */
static int damage_unacked_tail(const char *dir, int64_t acked)
{
    char cmd[PATH_MAX + 64], name[PATH_MAX];
    snprintf(cmd, sizeof(cmd), "ls %s | grep '^[0-9]\\{20\\}\\.log$' | sort | tail -1", dir);
    FILE *p = popen(cmd, "r");
    if (p == NULL || fgets(name, sizeof(name), p) == NULL) {
        if (p)
            pclose(p);
        return 0;
    }
    pclose(p);
    name[strcspn(name, "\n")] = '\0';
    char path[PATH_MAX * 2 + 16];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDWR);
    assert_true(fd >= 0);
    struct stat st;
    assert_int_equal(fstat(fd, &st), 0);
    uint64_t size = (uint64_t)st.st_size, pos = 0;
    uint8_t hdr[KAFKA_BATCH_HEADER_SIZE];
    while (pos + sizeof(hdr) <= size) {
        assert_int_equal(pread(fd, hdr, sizeof(hdr), (off_t)pos), (ssize_t)sizeof(hdr));
        struct kafka_batch_header h;
        if (kafka_batch_header_parse(hdr, sizeof(hdr), &h) != 0)
            break;
        if (h.base_offset >= acked)
            break;
        pos += kafka_batch_total_size(&h);
    }
    if (pos >= size) {
        close(fd);
        return 0;
    }
    uint64_t at = pos + rnd() % (size - pos);
    int kind = 1 + (int)(rnd() % 3);
    describe_damage(fd, name, kind, pos, at, size);
    if (kind == 1) {
        assert_int_equal(ftruncate(fd, (off_t)at), 0);
    } else if (kind == 2) {
        size_t n = (size_t)(size - at);
        uint8_t *z = calloc(1, n);
        assert_int_equal(pwrite(fd, z, n, (off_t)at), (ssize_t)n);
        free(z);
    } else {
        uint8_t b;
        assert_int_equal(pread(fd, &b, 1, (off_t)at), 1);
        b ^= (uint8_t)(1u << (rnd() % 8));
        assert_int_equal(pwrite(fd, &b, 1, (off_t)at), 1);
    }
    close(fd);
    return kind;
}

/* Every batch from the log start to the end is intact and contiguous. */
static void verify_log(struct storage_log *log, int64_t acked)
{
    assert_true(storage_log_end_offset(log) >= acked);
    uint8_t *all;
    size_t len;
    int64_t start = storage_log_start_offset(log);
    assert_int_equal(tu_read_all(log, start, &all, &len), 0);
    size_t pos = 0;
    int64_t expect = -1;
    while (pos < len) {
        struct kafka_batch_header h;
        assert_int_equal(kafka_batch_header_parse(all + pos, len - pos, &h), 0);
        assert_true(pos + kafka_batch_total_size(&h) <= len);
        assert_int_equal(tu_check_batch(all + pos, kafka_batch_total_size(&h), 1), 0);
        if (expect >= 0)
            assert_int_equal(h.base_offset, expect);
        expect = kafka_batch_last_offset(&h) + 1;
        pos += kafka_batch_total_size(&h);
    }
    if (expect >= 0)
        assert_int_equal(expect, storage_log_end_offset(log));
    free(all);
}

static void test_kill_cycles(void **state)
{
    (void)state;
    int cycles = 150;
    const char *env = getenv("STORAGE_CRASH_CYCLES");
    if (env != NULL && atoi(env) > 0)
        cycles = atoi(env);
    uint64_t seed = (uint64_t)time(NULL);
    env = getenv("STORAGE_CRASH_SEED");
    if (env != NULL)
        seed = strtoull(env, NULL, 0);
    printf("crash test: %d cycles, seed %llu (STORAGE_CRASH_SEED to replay)\n", cycles,
           (unsigned long long)seed);
    rng_state = seed | 1;
    char root[PATH_MAX], dir[PATH_MAX + 16];
    tu_mkdtemp(root, "crash");
    snprintf(dir, sizeof(dir), "%s/t-0", root);
    int64_t acked = 0;
    int damaged = 0, truncations = 0;
    for (int cycle = 0; cycle < cycles; cycle++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        uint64_t child_seed = rnd();
        fflush(stdout);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            child_main(dir, fds[1], child_seed, cycle / 10);
            _exit(7);
        }
        close(fds[1]);
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int wait_ms = 5 + (int)(rnd() % 50);
        for (;;) {
            struct timespec t;
            clock_gettime(CLOCK_MONOTONIC, &t);
            int left =
                wait_ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
            if (left <= 0)
                break;
            struct pollfd pfd = {fds[0], POLLIN, 0};
            if (poll(&pfd, 1, left) > 0) {
                int64_t v[512];
                ssize_t n = read(fds[0], v, sizeof(v));
                for (ssize_t i = 0; i < n / (ssize_t)sizeof(int64_t); i++)
                    acked = v[i] > acked ? v[i] : acked;
            }
        }
        kill(pid, SIGKILL);
        int status;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        if (!(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL))
            fail_msg("child exited on its own (status %d) in cycle %d", status, cycle);
        int64_t v[512];
        ssize_t n;
        while ((n = read(fds[0], v, sizeof(v))) > 0)
            for (ssize_t i = 0; i < n / (ssize_t)sizeof(int64_t); i++)
                acked = v[i] > acked ? v[i] : acked;
        close(fds[0]);
        last_damage[0] = '\0';
        if (rnd() % 3 == 0) {
            int64_t rp = checkpoint_recovery_point(dir);
            damaged += damage_unacked_tail(dir, rp > acked ? rp : acked) != 0;
        }

        struct tu_reports rep = {0};
        struct storage_config cfg;
        crash_config(&cfg, &rep);
        struct storage_log *log;
        int rc = storage_log_open(dir, &cfg, &log);
        if (rc != 0)
            fail_msg("cycle %d: open failed: %s", cycle, lm_strerror(rc));
        truncations += rep.warnings > 0;
        if (storage_log_end_offset(log) < acked)
            fail_msg("cycle %d: acknowledged offset %lld lost (log end %lld, seed %llu)", cycle,
                     (long long)acked, (long long)storage_log_end_offset(log),
                     (unsigned long long)seed);
        verify_log(log, acked);
        /* No child appended above epoch cycle / 10: a larger one can only come from a damaged
         * batch, and the next child (same or larger epoch) could not append. */
        if (storage_log_latest_epoch(log) > cycle / 10)
            fail_msg("cycle %d: latest epoch %d after recovery, no child wrote above %d (damage: "
                     "%s; last report: %s; seed %llu)",
                     cycle, (int)storage_log_latest_epoch(log), cycle / 10, last_damage, rep.last,
                     (unsigned long long)seed);
        /* Recovery made everything it kept durable (open flushes and checkpoints). */
        acked = storage_log_end_offset(log);
        assert_int_equal(storage_log_flushed_offset(log), acked);
        assert_int_equal(storage_log_close(log), 0);
    }
    printf("crash test: %d cycles done, %lld offsets acknowledged, %d tails damaged, %d "
           "recoveries truncated or rebuilt\n",
           cycles, (long long)acked, damaged, truncations);
    assert_true(acked > 0);
    tu_rm_rf(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_kill_cycles)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
