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

void broker_log(enum broker_log_level level, const char *fmt, ...)
{
    static const char *names[] = {"DEBUG", "INFO", "WARN", "ERROR"};
    if ((int)level < atomic_load_explicit(&g_level, memory_order_relaxed))
        return;
    char line[1024];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line), "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, names[level]);
    if (t_shard >= 0)
        n += snprintf(line + n, sizeof(line) - (size_t)n, "shard=%d ", t_shard);
    else
        n += snprintf(line + n, sizeof(line) - (size_t)n, "shard=main ");
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t total = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (total > sizeof(line) - 2)
        total = sizeof(line) - 2;
    line[total++] = '\n';
    /* One write per line so lines from several shards never interleave. */
    ssize_t w = write(STDERR_FILENO, line, total);
    (void)w; /* nowhere to report a failed log write */
}
