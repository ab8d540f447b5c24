/* Clock and random source for the SWIM shell (kept out of the pure core). */
#include "gossip/swim_clock.h"

#include <sys/random.h>
#include <time.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

uint64_t swim_clock_now_ms(void)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_MONOTONIC, &ts);
    LM_ASSERT(rc == 0); /* CLOCK_MONOTONIC always exists on Linux */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t swim_clock_wall_s(void)
{
    struct timespec ts;
    int rc = clock_gettime(CLOCK_REALTIME, &ts);
    LM_ASSERT(rc == 0);
    return (uint64_t)ts.tv_sec;
}

int swim_rng_seed(struct swim_rng *r)
{
    LM_ASSERT(r != NULL);
    ssize_t n = getrandom(&r->state, sizeof(r->state), 0);
    if (n != (ssize_t)sizeof(r->state))
        return LM_E_IO;
    return 0;
}

uint64_t swim_rng_next(void *ctx)
{
    struct swim_rng *r = ctx;
    LM_ASSERT(r != NULL);
    uint64_t z = (r->state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
