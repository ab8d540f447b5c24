/* Logging: one line per event on stderr, "<time> <LEVEL> shard=<n|main> <message>"
 * (DESIGN.md §6). The shard is a thread-local set by the shard thread. */
#ifndef LAMINAR_BROKER_LOG_H
#define LAMINAR_BROKER_LOG_H

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
#define BLOG_INFO(...) broker_log(BROKER_LOG_INFO, __VA_ARGS__)
#define BLOG_WARN(...) broker_log(BROKER_LOG_WARN, __VA_ARGS__)
#define BLOG_ERROR(...) broker_log(BROKER_LOG_ERROR, __VA_ARGS__)

#endif
