#include "broker/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_level = BROKER_LOG_INFO;
static _Thread_local int t_shard = -1;

void broker_log_set_level(enum broker_log_level level)
{
    atomic_store_explicit(&g_level, (int)level, memory_order_relaxed);
}

enum broker_log_level broker_log_get_level(void)
{
    return (enum broker_log_level)atomic_load_explicit(&g_level, memory_order_relaxed);
}

void broker_log_set_shard(int shard)
{
    t_shard = shard;
}

static void log_va(enum broker_log_level level, const char *fmt, va_list ap)
{
    static const char *const names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, names[level]);
    if (t_shard >= 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "shard=%d ", t_shard);
    else
        n += snprintf(line + n, sizeof(line) - (size_t)n, "shard=main ");
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    size_t total = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (total > sizeof(line) - 2)
        total = sizeof(line) - 2;
    line[total++] = '\n';
    /* One write per line so lines from several shards never interleave. */
    ssize_t w = write(STDERR_FILENO, line, total);
    (void)w; /* nowhere to report a failed log write */
}

void broker_log(enum broker_log_level level, const char *fmt, ...)
{
    if ((int)level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fmt, ap);
    va_end(ap);
}

static void log_fixed(enum broker_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void log_fixed(enum broker_log_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fmt, ap);
    va_end(ap);
}

static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1; /* never 0 */
}

bool broker_log_limited(struct broker_log_limit *l, enum broker_log_level level, const char *fmt,
                        ...)
{
    if ((int)level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return false;
    uint64_t now = mono_ms();
    uint64_t start = atomic_load_explicit(&l->window_start_ms, memory_order_relaxed);
    uint64_t dropped = 0;
    if (start == 0 || now - start >= l->interval_ms) {
        /* One thread opens the new window and reports what the last ones dropped; a thread
         * that loses the race counts against the window the winner opened. */
        if (atomic_compare_exchange_strong(&l->window_start_ms, &start, now) && start != 0) {
            atomic_store(&l->printed, 0);
            dropped = atomic_exchange(&l->suppressed, 0);
        }
    }
    if (dropped > 0)
        log_fixed(level, "suppressed %llu similar messages (\"%.60s\")",
                  (unsigned long long)dropped, fmt);
    /* load first: past the burst the counter stops moving, so it never wraps */
    if (atomic_load_explicit(&l->printed, memory_order_relaxed) >= l->burst ||
        atomic_fetch_add(&l->printed, 1) >= l->burst) {
        atomic_fetch_add(&l->suppressed, 1);
        return false;
    }
    va_list ap;
    va_start(ap, fmt);
    log_va(level, fmt, ap);
    va_end(ap);
    return true;
}

uint64_t broker_log_limit_suppressed(struct broker_log_limit *l)
{
    return atomic_load(&l->suppressed);
}
