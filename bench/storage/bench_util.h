/* Helpers the storage benchmarks share. Define BENCH_NAME (the program's name, for messages)
 * before including. */
#ifndef LAMINAR_BENCH_STORAGE_BENCH_UTIL_H
#define LAMINAR_BENCH_STORAGE_BENCH_UTIL_H

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#ifndef BENCH_NAME
#error "define BENCH_NAME before including bench_util.h"
#endif

/* Monotonic seconds. */
static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reports a failed step (rc and errno) and exits 1. */
static inline void die(const char *what, int rc)
{
    fprintf(stderr, BENCH_NAME ": %s failed (%d, errno %s)\n", what, rc, strerror(errno));
    exit(1);
}

/* Removes a directory and the files in it (benchmark directories have no subdirectories). */
static inline void rm_rf(const char *path)
{
    DIR *d = opendir(path);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char child[PATH_MAX * 2];
            snprintf(child, sizeof(child), "%s/%s", path, e->d_name);
            unlink(child);
        }
        closedir(d);
    }
    rmdir(path);
}

#endif
