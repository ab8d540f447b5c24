/* Logging: one line per event on stderr, "<time> <LEVEL> shard=<n|main> <message>"
 * (DESIGN.md §6). The shard is a thread-local set by the shard thread. */
#ifndef LAMINAR_BROKER_LOG_H
#define LAMINAR_BROKER_LOG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum broker_log_level { BROKER_LOG_DEBUG, BROKER_LOG_INFO, BROKER_LOG_WARN, BROKER_LOG_ERROR };

/* Sets the minimum level printed, process-wide: at start-up and at runtime (Kafka's
 * BROKER_LOGGER configs, admin_configs.c); an atomic store every thread sees. */
void broker_log_set_level(enum broker_log_level level);
/* The minimum level printed now. */
enum broker_log_level broker_log_get_level(void);
/* Sets this thread's shard id for the log prefix (-1 = main). */
void broker_log_set_shard(int shard);
/* Prints one line at level. */
void broker_log(enum broker_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#define BLOG_DEBUG(...) broker_log(BROKER_LOG_DEBUG, __VA_ARGS__)
#define BLOG_INFO(...)  broker_log(BROKER_LOG_INFO, __VA_ARGS__)
#define BLOG_WARN(...)  broker_log(BROKER_LOG_WARN, __VA_ARGS__)
#define BLOG_ERROR(...) broker_log(BROKER_LOG_ERROR, __VA_ARGS__)

/* Rate limit for a repeated message (one per call site, shared by every shard thread): the
 * first `burst` lines of each `interval_ms` window are printed, the rest are counted; the first
 * line of a later window is preceded by one "suppressed K similar messages" line. A client (or
 * a full fd table) can make a warning fire millions of times a second; the log must not grow
 * with it. */
struct broker_log_limit {
    uint32_t burst;
    uint32_t interval_ms;
    _Atomic uint64_t window_start_ms; /* 0 = no window yet */
    _Atomic uint32_t printed;         /* lines printed in the current window */
    _Atomic uint64_t suppressed;      /* lines dropped since the last summary */
};

#define BROKER_LOG_LIMIT_BURST       10
#define BROKER_LOG_LIMIT_INTERVAL_MS 10000
#define BROKER_LOG_LIMIT_INIT(burst_, interval_ms_)                                                \
    {                                                                                              \
        .burst = (burst_), .interval_ms = (interval_ms_)                                           \
    }

/* Prints one line at level unless l's budget for the current window is spent. Returns true when
 * the line was printed. */
bool broker_log_limited(struct broker_log_limit *l, enum broker_log_level level, const char *fmt,
                        ...) __attribute__((format(printf, 3, 4)));
/* Lines dropped by l and not yet reported in a summary line (for tests and metrics). */
uint64_t broker_log_limit_suppressed(struct broker_log_limit *l);

/* One limiter per call site: BLOG_WARN_LIMITED("accept: %s", ...). */
#define BROKER_LOG_LIMITED_(level, ...)                                                            \
    do {                                                                                           \
        static struct broker_log_limit blog_limit_ =                                               \
            BROKER_LOG_LIMIT_INIT(BROKER_LOG_LIMIT_BURST, BROKER_LOG_LIMIT_INTERVAL_MS);           \
        (void)broker_log_limited(&blog_limit_, (level), __VA_ARGS__);                              \
    } while (0)
#define BLOG_INFO_LIMITED(...)  BROKER_LOG_LIMITED_(BROKER_LOG_INFO, __VA_ARGS__)
#define BLOG_WARN_LIMITED(...)  BROKER_LOG_LIMITED_(BROKER_LOG_WARN, __VA_ARGS__)
#define BLOG_ERROR_LIMITED(...) BROKER_LOG_LIMITED_(BROKER_LOG_ERROR, __VA_ARGS__)

#endif
