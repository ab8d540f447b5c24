// fsync_probe: the disk's own fdatasync latency under a produce-like write load, without a
// broker. Writes -r records/s of -s bytes round-robin over -p files in a fresh directory under
// -D (default: the current directory), for -w s of warm-up and -d s of measurement. Each file
// has a thread doing what a broker's group commit does: take every byte that arrived for its
// file since its last turn, append it with write(), fdatasync(), time the fdatasync. Records
// that arrive while a file's fdatasync runs wait for the next one, so a slow disk makes fewer,
// larger syncs rather than a queue of small ones.
//
// Prints one RESULT line: the fdatasync durations of syncs started inside the measured window
// (p50/p99/p999/max), how many there were, and the rate the writers kept up with (written_rate:
// records written during the window per second; behind_s: what was still waiting to be written
// at the end, in seconds of the rate). It also gives the per-record latency of that group
// commit (record_p50/p99/p999/max): for every record scheduled inside the window, from its
// scheduled time to the end of the fdatasync that made it durable; what a broker that did
// nothing but group-commit on this disk would answer. Records still waiting when the schedule
// ends are written and synced for that, outside every other figure. The directory and its files
// are removed at the end.
//
//   fsync_probe -r 20000 -s 1024 -p 16 -d 10 -w 2 -D /tmp/work
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include "bench/broker/bench_stats.h"

#define PROBE_CHUNK (1 << 20) // largest single write()

struct probe_file {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int index; // this file's number: it gets the records seq with seq % files == index
    int fd;
    char path[4096];
    int64_t pending_records; // arrived, not yet taken by the writer (under mu)
    bool stop;               // under mu; records still pending then are a drain turn
    // Owned by the writer thread until joined.
    int64_t *samples_ns; // fdatasync durations of syncs started inside the window
    size_t samples, cap;
    int64_t taken;      // records taken so far: the next one taken is this file's record #taken
    int64_t *record_ns; // per-record latencies of records scheduled inside the window
    size_t records, record_cap; // record_ns has room for every such record of this file
    int64_t records_in_window;  // records whose write started inside the window
    int64_t syncs_total;
    int err;          // errno of a failed write/fdatasync, 0 if none
    int64_t pos;      // end of the data written
    int64_t file_end; // end of the file: pos, or more with -z zeros ahead
};

struct probe {
    int64_t rate;
    int size;
    int files;
    double duration_s, warmup_s;
    const char *dir;
    int64_t t_start_ns; // record seq is scheduled at sched_ns(seq)
    int64_t window_start_ns, window_end_ns;
    int64_t seq_lo, seq_hi; // the records scheduled inside the window: seq_lo <= seq < seq_hi
    const char *buf;        // PROBE_CHUNK bytes of record data
    const char *zeros;      // PROBE_CHUNK zero bytes (-z)
    int64_t prealloc;       // -z: largest step of zeros written ahead, 0 off
    struct probe_file *f;
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct probe P;

// When record seq is due: t_start + seq / rate, in whole nanoseconds rounded down, without
// overflow (-r is at most 1e9).
static int64_t sched_ns(int64_t seq)
{
    return P.t_start_ns + seq / P.rate * 1000000000 + seq % P.rate * 1000000000 / P.rate;
}

// The first seq in [0, total) scheduled at or after t, or total when every one is before t.
static int64_t first_seq_at(int64_t t, int64_t total)
{
    int64_t lo = 0, hi = total;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (sched_ns(mid) >= t)
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

// How many seq in [0, x) go to file i.
static int64_t seqs_of_file(int64_t x, int i)
{
    return x / P.files + (i < x % P.files ? 1 : 0);
}

static int pwrite_all(int fd, const char *buf, int64_t bytes, int64_t *at)
{
    while (bytes > 0) {
        size_t n = bytes > PROBE_CHUNK ? PROBE_CHUNK : (size_t)bytes;
        ssize_t w = pwrite(fd, buf, n, (off_t)*at);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return errno;
        }
        bytes -= w;
        *at += w;
    }
    return 0;
}

// -z: what laminar's preallocation does before a flush (storage.h): zeros from the file's end
// to a step past the data's end when less than half a step is left; the step is the data
// written so far (at least a page), at most -z bytes. They go to disk with the fdatasync.
static int preallocate(struct probe_file *f)
{
    if (P.prealloc == 0)
        return 0;
    int64_t end = f->pos;
    if (f->file_end < end)
        f->file_end = end;
    int64_t step = end < P.prealloc ? end : P.prealloc;
    if (step < 4096)
        step = 4096;
    if (f->file_end - end >= step / 2)
        return 0;
    int64_t target = (end + step + 4095) & ~(int64_t)4095;
    return pwrite_all(f->fd, P.zeros, target - f->file_end, &f->file_end);
}

static void *probe_writer(void *arg)
{
    struct probe_file *f = arg;
    for (;;) {
        pthread_mutex_lock(&f->mu);
        while (f->pending_records == 0 && !f->stop)
            pthread_cond_wait(&f->cv, &f->mu);
        int64_t records = f->pending_records;
        bool stop = f->stop;
        f->pending_records = 0;
        pthread_mutex_unlock(&f->mu);
        if (records == 0 && stop)
            break;
        // This file's records #first .. #first+records-1, i.e. seq = k * files + index.
        int64_t first = f->taken;
        f->taken += records;
        int64_t start = now_ns();
        // A drain turn (taken after the schedule ended) counts only for the per-record figures.
        bool in_window = !stop && start >= P.window_start_ns && start < P.window_end_ns;
        int e = pwrite_all(f->fd, P.buf, records * P.size, &f->pos);
        if (e == 0)
            e = preallocate(f);
        if (e) {
            f->err = e;
            break;
        }
        int64_t t0 = now_ns();
        if (fdatasync(f->fd) != 0) {
            f->err = errno;
            break;
        }
        int64_t end = now_ns();
        int64_t took = end - t0;
        for (int64_t k = first; k < first + records; k++) {
            int64_t seq = k * P.files + f->index;
            if (seq < P.seq_lo)
                continue;
            if (seq >= P.seq_hi)
                break;
            if (f->records == f->record_cap) { // cannot happen: the room was counted
                f->err = EOVERFLOW;
                break;
            }
            f->record_ns[f->records++] = end - sched_ns(seq);
        }
        if (f->err)
            break;
        if (stop)
            break;
        f->syncs_total++;
        if (in_window) {
            f->records_in_window += records;
            if (f->samples == f->cap) {
                size_t cap = f->cap ? f->cap * 2 : 1024;
                int64_t *s = realloc(f->samples_ns, cap * sizeof(*s));
                if (!s) {
                    f->err = ENOMEM;
                    break;
                }
                f->samples_ns = s;
                f->cap = cap;
            }
            f->samples_ns[f->samples++] = took;
        }
    }
    return NULL;
}

static void usage(int status)
{
    fprintf(status ? stderr : stdout,
            "usage: fsync_probe [-r RECORDS_PER_S] [-s BYTES] [-p FILES] [-d SECONDS] [-w SECONDS]"
            " [-D DIR]\n"
            "  -r  records per second, spread round-robin over the files (default 20000)\n"
            "  -s  record size in bytes (default 1024)\n"
            "  -p  files, one writer thread each (default 16)\n"
            "  -d  measured seconds (default 10)\n"
            "  -w  warm-up seconds, not measured (default 2)\n"
            "  -D  directory under which a fresh one is made and removed (default .)\n"
            "  -z  preallocate as laminar does: zeros up to this many bytes ahead of each\n"
            "      file's end before its fdatasync (default 0: off)\n");
    exit(status);
}

int main(int argc, char **argv)
{
    P = (struct probe){
        .rate = 20000, .size = 1024, .files = 16, .duration_s = 10, .warmup_s = 2, .dir = "."};
    int c;
    while ((c = getopt(argc, argv, "r:s:p:d:w:D:z:h")) != -1) {
        switch (c) {
        case 'z':
            P.prealloc = strtoll(optarg, NULL, 10);
            break;
        case 'r':
            P.rate = strtoll(optarg, NULL, 10);
            break;
        case 's':
            P.size = atoi(optarg);
            break;
        case 'p':
            P.files = atoi(optarg);
            break;
        case 'd':
            P.duration_s = atof(optarg);
            break;
        case 'w':
            P.warmup_s = atof(optarg);
            break;
        case 'D':
            P.dir = optarg;
            break;
        case 'h':
            usage(0);
            break;
        default:
            usage(2);
        }
    }
    if (optind != argc || P.rate <= 0 || P.rate > 1000000000 || P.size <= 0 || P.files <= 0 ||
        P.files > 1024 || P.duration_s <= 0 || P.warmup_s < 0 || P.prealloc < 0)
        usage(2);

    char dir[4000]; // leaves room in a file's path for "/N.log"
    if (strlen(P.dir) + sizeof("/fsync_probe.XXXXXX") > sizeof(dir)) {
        fprintf(stderr, "fsync_probe: -D %s: path too long\n", P.dir);
        return 2;
    }
    snprintf(dir, sizeof(dir), "%s/fsync_probe.XXXXXX", P.dir);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "fsync_probe: mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    char *buf = malloc(PROBE_CHUNK);
    char *zeros = calloc(1, PROBE_CHUNK);
    P.zeros = zeros;
    P.f = calloc((size_t)P.files, sizeof(*P.f));
    if (!buf || !zeros || !P.f) {
        fprintf(stderr, "fsync_probe: out of memory\n");
        return 1;
    }
    for (int i = 0; i < PROBE_CHUNK; i++)
        buf[i] = (char)(i * 131 + 7);
    P.buf = buf;

    // The schedule: record seq is due at t_start + seq / rate, handed to file seq % files. The
    // records scheduled inside the window follow from it before the clock starts (t_start = 0).
    int64_t total = (int64_t)((double)P.rate * (P.warmup_s + P.duration_s)), sent = 0;
    int64_t warmup_ns = (int64_t)(P.warmup_s * 1e9), duration_ns = (int64_t)(P.duration_s * 1e9);
    P.t_start_ns = 0;
    P.seq_lo = first_seq_at(warmup_ns, total);
    P.seq_hi = first_seq_at(warmup_ns + duration_ns, total);
    // One slot per record scheduled inside the window, each file its own contiguous share.
    size_t record_slots = (size_t)(P.seq_hi - P.seq_lo);
    int64_t *record_all = malloc((record_slots ? record_slots : 1) * sizeof(*record_all));
    if (!record_all) {
        fprintf(stderr, "fsync_probe: out of memory for %zu per-record samples\n", record_slots);
        rmdir(dir);
        free(P.f);
        free(buf);
        free(zeros);
        return 1;
    }
    size_t slot = 0;
    for (int i = 0; i < P.files; i++) {
        struct probe_file *f = &P.f[i];
        f->index = i;
        f->record_ns = record_all + slot;
        f->record_cap = (size_t)(seqs_of_file(P.seq_hi, i) - seqs_of_file(P.seq_lo, i));
        slot += f->record_cap;
    }

    int status = 0, started = 0;
    int64_t t_start = now_ns();
    P.t_start_ns = t_start;
    P.window_start_ns = t_start + warmup_ns;
    P.window_end_ns = P.window_start_ns + duration_ns;
    for (int i = 0; i < P.files; i++) {
        struct probe_file *f = &P.f[i];
        snprintf(f->path, sizeof(f->path), "%s/%d.log", dir, i);
        f->fd = open(f->path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (f->fd < 0) {
            fprintf(stderr, "fsync_probe: open %s: %s\n", f->path, strerror(errno));
            status = 1;
            break;
        }
        pthread_mutex_init(&f->mu, NULL);
        pthread_cond_init(&f->cv, NULL);
        if (pthread_create(&f->thread, NULL, probe_writer, f) != 0) {
            fprintf(stderr, "fsync_probe: pthread_create failed\n");
            close(f->fd);
            pthread_mutex_destroy(&f->mu);
            pthread_cond_destroy(&f->cv);
            status = 1;
            break;
        }
        started++;
    }

    int64_t *due = calloc((size_t)P.files, sizeof(*due));
    if (!due) {
        fprintf(stderr, "fsync_probe: out of memory\n");
        status = 1;
    }
    while (status == 0 && sent < total) {
        int64_t now = now_ns();
        int64_t upto = (int64_t)((double)(now - t_start) * (double)P.rate / 1e9) + 1;
        if (upto > total)
            upto = total;
        for (; sent < upto; sent++)
            due[sent % P.files]++;
        for (int i = 0; i < P.files; i++) {
            if (!due[i])
                continue;
            pthread_mutex_lock(&P.f[i].mu);
            P.f[i].pending_records += due[i];
            pthread_cond_signal(&P.f[i].cv);
            pthread_mutex_unlock(&P.f[i].mu);
            due[i] = 0;
        }
        struct timespec ts = {0, 200000}; // 0.2 ms: the schedule's resolution
        nanosleep(&ts, NULL);
    }
    free(due);
    // What the writers have not yet taken when the schedule ends: the backlog, in records. Each
    // writer still writes and syncs it, in one last turn that only the per-record figures see.
    int64_t behind = 0;
    for (int i = 0; i < started; i++) {
        pthread_mutex_lock(&P.f[i].mu);
        behind += P.f[i].pending_records;
        P.f[i].stop = true;
        pthread_cond_signal(&P.f[i].cv);
        pthread_mutex_unlock(&P.f[i].mu);
    }

    size_t n = 0, rn = 0;
    int64_t syncs_total = 0, records_in_window = 0;
    for (int i = 0; i < started; i++) {
        struct probe_file *f = &P.f[i];
        pthread_join(f->thread, NULL);
        if (f->err) {
            fprintf(stderr, "fsync_probe: %s: %s\n", f->path, strerror(f->err));
            status = 1;
        }
        n += f->samples;
        syncs_total += f->syncs_total;
        records_in_window += f->records_in_window;
        // Close the gaps a writer that stopped early left in its share.
        memmove(record_all + rn, f->record_ns, f->records * sizeof(*record_all));
        rn += f->records;
    }
    if (status == 0 && rn != record_slots) {
        fprintf(stderr, "fsync_probe: %zu per-record samples, %zu records in the window\n", rn,
                record_slots);
        status = 1;
    }
    qsort(record_all, rn, sizeof(*record_all), bench_cmp_i64);
    int64_t *all = malloc((n ? n : 1) * sizeof(*all));
    if (!all) {
        fprintf(stderr, "fsync_probe: out of memory\n");
        status = 1;
        n = 0;
    }
    size_t k = 0;
    for (int i = 0; i < started; i++) {
        struct probe_file *f = &P.f[i];
        if (all && f->samples)
            memcpy(all + k, f->samples_ns, f->samples * sizeof(*all));
        k += f->samples;
        free(f->samples_ns);
        close(f->fd);
        unlink(f->path);
        pthread_mutex_destroy(&f->mu);
        pthread_cond_destroy(&f->cv);
    }
    rmdir(dir);
    if (all)
        qsort(all, n, sizeof(*all), bench_cmp_i64);
    double written_rate = (double)records_in_window / P.duration_s;
    double rmax = rn ? (double)record_all[rn - 1] / 1e6 : 0.0;
    printf("RESULT bench=fsync_probe rate=%" PRId64 " size=%d files=%d prealloc=%" PRId64
           " written_rate=%.0f"
           " behind_s=%.3f fsyncs=%zu fsyncs_total=%" PRId64 " records_per_fsync=%.1f"
           " p50_ms=%.3f p99_ms=%.3f p999_ms=%.3f max_ms=%.3f record_p50_ms=%.3f"
           " record_p99_ms=%.3f record_p999_ms=%.3f record_max_ms=%.3f ok=%d\n",
           P.rate, P.size, P.files, P.prealloc, written_rate, (double)behind / (double)P.rate, n,
           syncs_total, n ? (double)records_in_window / (double)n : 0.0, bench_pct_ms(all, n, 0.50),
           bench_pct_ms(all, n, 0.99), bench_pct_ms(all, n, 0.999),
           n ? (double)all[n - 1] / 1e6 : 0.0, bench_pct_ms(record_all, rn, 0.50),
           bench_pct_ms(record_all, rn, 0.99), bench_pct_ms(record_all, rn, 0.999), rmax,
           status == 0);
    printf("fsync_probe: %" PRId64 " records/s of %d B over %d files in %s: %zu fdatasyncs in %.0f"
           " s (%.1f records each), p50 %.2f ms, p99 %.2f ms, p999 %.2f ms, max %.2f ms; per"
           " record (scheduled to synced, %zu records): p50 %.2f ms, p99 %.2f ms, p999 %.2f ms,"
           " max %.2f ms\n",
           P.rate, P.size, P.files, P.dir, n, P.duration_s,
           n ? (double)records_in_window / (double)n : 0.0, bench_pct_ms(all, n, 0.50),
           bench_pct_ms(all, n, 0.99), bench_pct_ms(all, n, 0.999),
           n ? (double)all[n - 1] / 1e6 : 0.0, rn, bench_pct_ms(record_all, rn, 0.50),
           bench_pct_ms(record_all, rn, 0.99), bench_pct_ms(record_all, rn, 0.999), rmax);
    free(all);
    free(record_all);
    free(P.f);
    free(buf);
    free(zeros);
    return status;
}
