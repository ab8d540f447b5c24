/* UDP transport for SWIM: one non-blocking IPv4 socket, a poll loop that feeds datagrams and
 * ticks into the pure core. Single-threaded; the caller owns the loop. */
#ifndef LAMINAR_GOSSIP_SWIM_UDP_H
#define LAMINAR_GOSSIP_SWIM_UDP_H

#include <stddef.h>
#include <stdint.h>

#include "gossip/swim.h"

struct swim_udp;

/* swim_addr_parse reads "a.b.c.d:port"; 0 or LM_E_INVALID. */
int swim_addr_parse(const char *text, struct swim_addr *out);
/* swim_addr_format writes "a.b.c.d:port" into buf (at least 22 bytes); returns buf. */
char *swim_addr_format(const struct swim_addr *a, char *buf, size_t cap);

/* swim_udp_new binds cfg->self and creates the core with a kernel-seeded random source; events
 * go to on_event(ctx, ev). Returns 0 and *out, or a negative LM_E_*. */
int swim_udp_new(const struct swim_config *cfg,
                 void (*on_event)(void *ctx, const struct swim_event *ev), void *ctx,
                 struct swim_udp **out);
/* swim_udp_free closes the socket and frees the core (NULL is ignored). */
void swim_udp_free(struct swim_udp *u);
/* swim_udp_swim is the core (borrowed) for joins, queries and stats. */
struct swim *swim_udp_swim(struct swim_udp *u);
/* swim_udp_run waits up to max_wait_ms for datagrams or the core's next deadline, feeds every
 * datagram received and ticks. 0 or a negative LM_E_*. */
int swim_udp_run(struct swim_udp *u, int max_wait_ms);
/* swim_udp_send_raw sends buf as one datagram to `to` (tests: forged packets). */
int swim_udp_send_raw(struct swim_udp *u, const struct swim_addr *to, const uint8_t *buf,
                      size_t len);

#endif
