/* Clock and random source for the SWIM shell. The core (swim.c) takes both as inputs. */
#ifndef LAMINAR_GOSSIP_SWIM_CLOCK_H
#define LAMINAR_GOSSIP_SWIM_CLOCK_H

#include <stdint.h>

/* A small PRNG state (splitmix64), seeded from the kernel. */
struct swim_rng {
    uint64_t state;
};

/* swim_clock_now_ms is CLOCK_MONOTONIC in milliseconds. */
uint64_t swim_clock_now_ms(void);
/* swim_clock_wall_s is the wall clock in seconds (a restart's starting incarnation). */
uint64_t swim_clock_wall_s(void);
/* swim_rng_seed seeds r from getrandom(2); 0 or LM_E_IO. */
int swim_rng_seed(struct swim_rng *r);
/* swim_rng_next is a struct swim_io random callback; ctx is a struct swim_rng. */
uint64_t swim_rng_next(void *ctx);

#endif
