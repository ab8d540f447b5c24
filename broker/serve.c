/* `laminar serve`: command line, config file and flags (flags override the file, DESIGN.md §6). */
#define _GNU_SOURCE
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/log.h"
#include "broker/runtime.h"
#include "common/lm_err.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: laminar serve [-c server.properties] [options]\n"
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

enum { OPT_LISTENERS = 256, OPT_ADV, OPT_LOG_DIRS, OPT_NODE_ID, OPT_SHARDS, OPT_IO, OPT_CONFIG,
       OPT_LOG_LEVEL };

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
    struct broker_dispatch d;
    memset(&d, 0, sizeof(d));
    if (rc == 0 && setup != NULL)
        rc = setup(&d, &cfg);
    if (rc == 0)
        rc = broker_config_finish(&cfg);
    if (rc == 0)
        rc = broker_runtime_run(&cfg, &d);
    broker_config_deinit(&cfg);
    if (rc != 0) {
        BLOG_ERROR("laminar: exiting: %s", lm_strerror(rc));
        return 1;
    }
    return 0;
}
