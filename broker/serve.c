/* `laminar serve`: command line, config file and flags (flags override the file, DESIGN.md §6),
 * then the start-up guards: unsupported settings, the log directories' locks, listener ports
 * held by another process, and the descriptor limit. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "broker/log.h"
#include "broker/runtime.h"
#include "common/lm_err.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: laminar serve [-c server.properties] [options]\n"
               "  -c, --config-file FILE          Kafka server.properties to read first\n"
               "      --listeners LIST            e.g. PLAINTEXT://127.0.0.1:9092\n"
               "      --advertised-listeners LIST\n"
               "      --log-dirs DIRS             comma-separated data directories\n"
               "      --node-id N\n"
               "      --shards N                  shard threads (default: one per CPU)\n"
               "      --io uring|epoll|auto       I/O backend (default auto)\n"
               "      --config KEY=VALUE          any Kafka or laminar.* key (repeatable)\n"
               "      --log-level debug|info|warn|error\n");
}

enum {
    OPT_LISTENERS = 256,
    OPT_ADV,
    OPT_LOG_DIRS,
    OPT_NODE_ID,
    OPT_SHARDS,
    OPT_IO,
    OPT_CONFIG,
    OPT_LOG_LEVEL
};

/* Flag -> config key, applied after the file so flags win. */
static const char *opt_key(int opt)
{
    switch (opt) {
    case OPT_LISTENERS:
        return "listeners";
    case OPT_ADV:
        return "advertised.listeners";
    case OPT_LOG_DIRS:
        return "log.dirs";
    case OPT_NODE_ID:
        return "node.id";
    case OPT_SHARDS:
        return "laminar.shards";
    case OPT_IO:
        return "laminar.io";
    case OPT_LOG_LEVEL:
        return "laminar.log.level";
    }
    return NULL;
}

/* The most descriptors the broker asks for: 10,000 replicated partitions hold about five each
 * (a segment's log and two indexes, the checkpoint, the directory), plus connections. */
#define FD_LIMIT_WANTED 1048576ull

/* fs.nr_open, the most setrlimit accepts (1048576 when unreadable). */
static uint64_t fd_nr_open(void)
{
    FILE *f = fopen("/proc/sys/fs/nr_open", "r");
    unsigned long long nr_open = 0;
    if (f != NULL) {
        if (fscanf(f, "%llu", &nr_open) != 1)
            nr_open = 0;
        fclose(f);
    }
    return nr_open > 0 ? nr_open : 1048576ull;
}

/* Soft RLIMIT_NOFILE up to the hard limit: every connection, segment file and splice pipe is a
 * descriptor (10k idle clients must fit). A hard limit below FD_LIMIT_WANTED is raised first
 * where the process may (CAP_SYS_RESOURCE, as root), up to fs.nr_open; an unlimited one is
 * capped by fs.nr_open too. Returns the soft limit in force afterwards. */
static uint64_t raise_fd_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) {
        BLOG_WARN("getrlimit(RLIMIT_NOFILE): %s", strerror(errno));
        return 1024;
    }
    uint64_t nr_open = fd_nr_open();
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < FD_LIMIT_WANTED) {
        rlim_t to = FD_LIMIT_WANTED < nr_open ? FD_LIMIT_WANTED : nr_open;
        struct rlimit up = {.rlim_cur = to, .rlim_max = to};
        if (to > rl.rlim_max && setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl = up; /* otherwise unprivileged: the hard limit stands */
    }
    rlim_t want = rl.rlim_max == RLIM_INFINITY ? (rlim_t)nr_open : rl.rlim_max;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur > want)
        rl.rlim_cur = want;
    if (rl.rlim_cur < want) {
        struct rlimit up = {.rlim_cur = want, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &up) == 0)
            rl.rlim_cur = want;
        else
            BLOG_WARN("cannot raise RLIMIT_NOFILE to %llu: %s", (unsigned long long)want,
                      strerror(errno));
    }
    BLOG_INFO("open file limit (RLIMIT_NOFILE): %llu", (unsigned long long)rl.rlim_cur);
    return (uint64_t)rl.rlim_cur;
}

/* mkdir -p: Kafka creates missing log directories (LogManager.createAndValidateLogDirs). */
static int make_dirs(const char *dir)
{
    char path[BROKER_PATH_BYTES_MAX];
    snprintf(path, sizeof(path), "%s", dir);
    for (char *p = path + 1; *p != '\0'; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        int rc = mkdir(path, 0755);
        *p = '/';
        if (rc != 0 && errno != EEXIST)
            return -1;
    }
    return mkdir(path, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Takes `<dir>/.lock` with flock(LOCK_EX|LOCK_NB) in every log directory, as Kafka does
 * (LogManager.lockLogDirs, file ".lock"): a second broker on the same directory would be a
 * second writer of the same logs. The lock lives as long as the descriptor, which stays open
 * until the process exits (and the kernel drops it on a crash, so kill -9 leaves nothing
 * stale). Returns 0 or an LM_E_* after one error line; fds[] gets the open descriptors. */
static int lock_log_dirs(const struct broker_config *cfg, int *fds)
{
    for (uint32_t i = 0; i < cfg->log_dirs_count; i++) {
        const char *dir = cfg->log_dirs[i];
        char path[BROKER_PATH_BYTES_MAX + 8];
        snprintf(path, sizeof(path), "%s/.lock", dir);
        if (make_dirs(dir) != 0) {
            BLOG_ERROR("cannot create log dir %s: %s", dir, strerror(errno));
            return LM_E_IO;
        }
        fds[i] = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fds[i] < 0) {
            BLOG_ERROR("cannot open %s: %s", path, strerror(errno));
            return LM_E_IO;
        }
        if (flock(fds[i], LOCK_EX | LOCK_NB) != 0) {
            if (errno == EWOULDBLOCK)
                BLOG_ERROR("log dir %s is in use by another process (%s is locked): two brokers "
                           "cannot share a log directory",
                           dir, path);
            else
                BLOG_ERROR("cannot lock %s: %s", path, strerror(errno));
            return errno == EWOULDBLOCK ? LM_E_STATE : LM_E_IO;
        }
    }
    return 0;
}

/* The shard sockets use SO_REUSEPORT, which lets a second process (same user) bind the same
 * port and receive a share of the connections. A plain bind (SO_REUSEADDR only, so TIME_WAIT
 * connections of an earlier run do not count) fails with EADDRINUSE when any other socket
 * listens on the port, reuseport or not; the probe is closed at once. Returns 0, LM_E_EXISTS
 * (port held), or 0 for other bind errors, which the runtime reports when it binds. */
static int probe_listener(const struct broker_listener *l)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char port[8];
    snprintf(port, sizeof(port), "%u", l->port);
    if (getaddrinfo(l->host[0] ? l->host : NULL, port, &hints, &res) != 0)
        return 0;
    int rc = 0;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
        if (fd < 0)
            continue;
        int one = 1;
        bool bound = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0 &&
                     bind(fd, ai->ai_addr, ai->ai_addrlen) == 0;
        int err = errno;
        close(fd);
        if (bound)
            break;
        if (err == EADDRINUSE) {
            rc = LM_E_EXISTS;
            break;
        }
    }
    freeaddrinfo(res);
    return rc;
}

/* A process killed a moment ago may still hold its listeners: the kernel tears an io_uring
 * down asynchronously after the process is gone (milliseconds, longer on a loaded machine), so
 * a busy port is probed again for PROBE_WAIT_MS before it is reported.
 *
 * Check-then-bind leaves a window: two brokers on different log directories (the same
 * directory is caught by its lock) whose probes both run before either binds both pass and
 * share the port. broker_serve_main probes twice, before setup (a refused start leaves nothing
 * behind) and again just before the runtime binds, which shrinks the window to the runtime's
 * start (allocations and the io_uring feature probe, about a millisecond). */
enum { PROBE_WAIT_MS = 5000, PROBE_STEP_MS = 50 };

static int probe_listeners(const struct broker_config *cfg)
{
    for (uint32_t waited = 0;; waited += PROBE_STEP_MS) {
        const struct broker_listener *busy = NULL;
        for (uint32_t i = 0; busy == NULL && i < cfg->listeners_count; i++)
            if (probe_listener(&cfg->listeners[i]) == LM_E_EXISTS)
                busy = &cfg->listeners[i];
        if (busy == NULL)
            return 0;
        if (waited >= PROBE_WAIT_MS) {
            BLOG_ERROR("listener %s://%s:%u: port %u is already in use by another process",
                       busy->name, busy->host, busy->port, busy->port);
            return LM_E_EXISTS;
        }
        if (waited == 0)
            BLOG_INFO("port %u is busy; waiting up to %u ms for it to be released", busy->port,
                      (unsigned)PROBE_WAIT_MS);
        usleep(PROBE_STEP_MS * 1000);
    }
}

int broker_serve_main(int argc, char **argv,
                      int (*setup)(struct broker_dispatch *d, struct broker_config *cfg))
{
    if (argc < 2 || strcmp(argv[1], "serve") != 0) {
        if (argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0 ||
                          strcmp(argv[1], "help") == 0)) {
            usage(stdout);
            return 0;
        }
        usage(stderr);
        return 2;
    }
    static const struct option opts[] = {
        {"config-file", required_argument, NULL, 'c'},
        {"listeners", required_argument, NULL, OPT_LISTENERS},
        {"advertised-listeners", required_argument, NULL, OPT_ADV},
        {"log-dirs", required_argument, NULL, OPT_LOG_DIRS},
        {"node-id", required_argument, NULL, OPT_NODE_ID},
        {"shards", required_argument, NULL, OPT_SHARDS},
        {"io", required_argument, NULL, OPT_IO},
        {"config", required_argument, NULL, OPT_CONFIG},
        {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int sub_argc = argc - 1;
    char **sub_argv = argv + 1;
    const char *file = NULL;
    int opt;
    optind = 1;
    while ((opt = getopt_long(sub_argc, sub_argv, "c:h", opts, NULL)) != -1) {
        if (opt == 'c')
            file = optarg;
        else if (opt == 'h') {
            usage(stdout);
            return 0;
        } else if (opt == '?') {
            usage(stderr);
            return 2;
        }
    }
    if (optind < sub_argc && file == NULL)
        file = sub_argv[optind++]; /* `laminar serve server.properties`, like kafka-server-start */
    if (optind < sub_argc) {
        fprintf(stderr, "laminar: unexpected argument '%s'\n", sub_argv[optind]);
        return 2;
    }
    struct broker_config cfg;
    broker_config_init(&cfg);
    int rc = 0;
    if (file != NULL)
        rc = broker_config_load_file(&cfg, file);
    optind = 1;
    while (rc == 0 && (opt = getopt_long(sub_argc, sub_argv, "c:h", opts, NULL)) != -1) {
        if (opt == OPT_CONFIG)
            rc = broker_config_set_kv(&cfg, optarg);
        else if (opt_key(opt) != NULL)
            rc = broker_config_set(&cfg, opt_key(opt), optarg);
    }
    if (rc == 0)
        broker_log_set_level((enum broker_log_level)cfg.log_level);
    /* Refusals come before anything touches the log directories. */
    if (rc == 0)
        rc = broker_config_check_supported(&cfg);
    int lock_fds[BROKER_LOG_DIRS_MAX];
    for (uint32_t i = 0; i < BROKER_LOG_DIRS_MAX; i++)
        lock_fds[i] = -1;
    if (rc == 0)
        rc = probe_listeners(&cfg);
    if (rc == 0)
        rc = lock_log_dirs(&cfg, lock_fds);
    if (rc == 0)
        cfg.fd_limit = raise_fd_limit();
    struct broker_dispatch d;
    memset(&d, 0, sizeof(d));
    if (rc == 0 && setup != NULL)
        rc = setup(&d, &cfg);
    if (rc == 0)
        rc = broker_config_finish(&cfg);
    if (rc == 0)
        rc = probe_listeners(&cfg);
    if (rc == 0)
        rc = broker_runtime_run(&cfg, &d);
    if (d.teardown != NULL)
        d.teardown(d.ctx);
    broker_config_deinit(&cfg);
    /* The locks are released only now, after the last write to the logs. */
    for (uint32_t i = 0; i < BROKER_LOG_DIRS_MAX; i++)
        if (lock_fds[i] >= 0)
            close(lock_fds[i]);
    if (rc != 0) {
        /* The cause was logged where it was found (one error line); this is the outcome. */
        BLOG_INFO("laminar: exiting: %s", lm_strerror(rc));
        return 1;
    }
    return 0;
}
