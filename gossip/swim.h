/* SWIM membership and failure detection as a pure state machine (DESIGN.md §4).
 *
 * Das, Gupta, Motivala, "SWIM: Scalable Weakly-consistent Infection-style Process Group
 * Membership Protocol" (DSN 2002), with the Lifeguard extensions (Dadgar et al., 2018):
 * local health multiplier and confirmation-shrunk suspicion timeouts.
 *
 * The core is driven by swim_tick (time passes) and swim_recv (a datagram arrived). It never
 * touches a socket, a clock or a random source: time is the now_ms argument, randomness and
 * output go through struct swim_io (called synchronously; callbacks must not re-enter swim).
 * The UDP transport and the clock live in swim_udp.c / swim_clock.c. */
#ifndef LAMINAR_GOSSIP_SWIM_H
#define LAMINAR_GOSSIP_SWIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gossip/swim_proto.h"

enum swim_event_type {
    SWIM_EV_JOINED = 1, /* new member, or a dead/left member back with a higher incarnation */
    SWIM_EV_SUSPECT = 2,
    SWIM_EV_ALIVE = 3, /* a suspect refuted */
    SWIM_EV_DEAD = 4,
    SWIM_EV_LEFT = 5,
    SWIM_EV_META = 6, /* metadata changed with a higher incarnation */
};

/* A membership event; meta is borrowed for the duration of the callback. */
struct swim_event {
    uint8_t type;
    struct swim_addr addr;
    uint64_t incarnation;
    const struct swim_meta *meta;
};

/* Output and randomness. send: one datagram (buf borrowed during the call). event: one
 * membership change. random: 64 random bits. */
struct swim_io {
    void *ctx;
    void (*send)(void *ctx, const struct swim_addr *to, const uint8_t *buf, size_t len);
    void (*event)(void *ctx, const struct swim_event *ev);
    uint64_t (*random)(void *ctx);
};

struct swim_config {
    struct swim_addr self;
    struct swim_meta meta;
    uint64_t incarnation;        /* starting incarnation (a restart may pass wall seconds) */
    uint32_t period_ms;          /* protocol period T */
    uint32_t ack_timeout_ms;     /* direct ping timeout before ping-req, < period_ms */
    uint32_t indirect_k;         /* ping-req fan-out k */
    uint32_t suspicion_mult;     /* alpha: min suspicion = alpha * log10(n) * T */
    uint32_t suspicion_max_mult; /* beta: Lifeguard max suspicion = beta * min */
    uint32_t retransmit_mult;    /* lambda: each update is sent lambda * ceil(log10(n+1)) */
    bool lifeguard;              /* local health multiplier + shrinking suspicion timeouts */
    uint32_t lhm_max;            /* cap of the local health multiplier */
    uint32_t packet_size_max;    /* datagram bound, bytes */
    uint32_t members_max;        /* table capacity, self included */
    uint32_t sync_periods;       /* full-state push-pull with a random member every N T */
    uint32_t dead_keep_periods;  /* dead/left members are forgotten after N T */
    const uint8_t *secret;       /* cluster secret for HMAC-SHA-256; NULL: none. Copied. */
    size_t secret_len;
};

struct swim_stats {
    uint64_t sent_packets;
    uint64_t sent_bytes;
    uint64_t recv_packets;
    uint64_t drop_auth;      /* HMAC missing, wrong or unexpected */
    uint64_t drop_malformed; /* failed to decode */
    uint64_t drop_other;     /* well-formed but not for us (wrong target, from self, ...) */
    uint64_t probes;
    uint64_t probes_failed;
    uint64_t ping_reqs;
    uint64_t refutes;
    uint64_t updates_dropped; /* updates that did not fit the table */
};

struct swim_member_info {
    struct swim_addr addr;
    uint8_t status;
    uint64_t incarnation;
    struct swim_meta meta;
};

struct swim;

/* swim_config_default fills cfg with the defaults (T = 1 s, k = 3, Lifeguard on, 1400 B). */
void swim_config_default(struct swim_config *cfg);
/* swim_new allocates a member from cfg (copied) and io (copied). Every allocation happens
 * here. Returns 0 and *out, LM_E_CONFIG or LM_E_NOMEM. */
int swim_new(const struct swim_config *cfg, const struct swim_io *io, struct swim **out);
/* swim_free releases s (NULL is ignored). */
void swim_free(struct swim *s);

/* swim_join asks the seeds for their full state; retried every period while we know no one. */
int swim_join(struct swim *s, uint64_t now_ms, const struct swim_addr *seeds, size_t n_seeds);
/* swim_add_member inserts an alive member directly (bootstrap, tests). */
int swim_add_member(struct swim *s, uint64_t now_ms, const struct swim_addr *addr,
                    uint64_t incarnation, const struct swim_meta *meta);
/* swim_tick runs every timer due at now_ms. Call at least every swim_next_deadline_ms. */
int swim_tick(struct swim *s, uint64_t now_ms);
/* swim_recv handles one datagram. A bad one is dropped, counted and returns negative. */
int swim_recv(struct swim *s, uint64_t now_ms, const uint8_t *buf, size_t len);
/* swim_leave announces a graceful leave; the member stops probing afterwards. */
int swim_leave(struct swim *s, uint64_t now_ms);
/* swim_set_meta changes our metadata, raising our incarnation so the change wins. */
int swim_set_meta(struct swim *s, uint64_t now_ms, const struct swim_meta *meta);

/* swim_next_deadline_ms is the earliest time a timer is due. */
uint64_t swim_next_deadline_ms(const struct swim *s);
/* swim_member_get copies what we know of addr; LM_E_NOT_FOUND when unknown. */
int swim_member_get(const struct swim *s, const struct swim_addr *addr,
                    struct swim_member_info *out);
/* swim_member_count counts members in status (self included when it matches). */
size_t swim_member_count(const struct swim *s, uint8_t status);
/* swim_member_at copies the i-th table entry; LM_E_NOT_FOUND past the end or at a hole. */
int swim_member_at(const struct swim *s, size_t i, struct swim_member_info *out);
/* swim_table_size is the bound for swim_member_at. */
size_t swim_table_size(const struct swim *s);
/* swim_stats returns the counters (borrowed). */
const struct swim_stats *swim_stats(const struct swim *s);
/* swim_incarnation is our own incarnation. */
uint64_t swim_incarnation(const struct swim *s);
/* swim_health is the Lifeguard local health multiplier (0 = healthy). */
uint32_t swim_health(const struct swim *s);

/* Merge rule (SWIM §4.2, exposed for tests): what an update (new_status, new_inc) does to a
 * known member in (cur_status, cur_inc). */
enum swim_merge {
    SWIM_MERGE_IGNORE = 0,
    SWIM_MERGE_APPLY = 1,   /* take the new status and incarnation */
    SWIM_MERGE_CONFIRM = 2, /* same suspicion again: a Lifeguard confirmation */
};
enum swim_merge swim_merge_rule(uint8_t cur_status, uint64_t cur_inc, uint8_t new_status,
                                uint64_t new_inc);
/* swim_suspicion_timeout_ms: Lifeguard timeout after conf independent confirmations, k of
 * them expected, between min_ms and max_ms (both > 0, min <= max). */
uint64_t swim_suspicion_timeout_ms(uint64_t min_ms, uint64_t max_ms, uint32_t conf, uint32_t k);

#endif
