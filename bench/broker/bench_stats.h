/* Latency samples of the bench tools: sorting and nearest-rank percentiles. Header-only, so
 * tools that do not link bench_common (fsync_probe) share it too. */
#ifndef LAMINAR_BENCH_STATS_H
#define LAMINAR_BENCH_STATS_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>

/* qsort comparator of int64_t samples, ascending. */
static inline int bench_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile q (0..1] of n sorted nanosecond samples, in milliseconds. */
static inline double bench_pct_ms(const int64_t *s, size_t n, double q)
{
    if (n == 0)
        return 0;
    size_t rank = (size_t)ceil(q * (double)n);
    if (rank < 1)
        rank = 1;
    return (double)s[rank - 1] / 1e6;
}

#endif
