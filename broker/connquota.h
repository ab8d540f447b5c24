/* Connection quotas shared by every shard of the process (Kafka's ConnectionQuotas):
 *   max.connections               broker-wide; at the limit accepting pauses until a slot frees
 *                                 (Kafka's acceptor blocks in waitForConnectionSlot)
 *   max.connection.creation.rate  new connections per second, broker-wide; over it accepting
 *                                 pauses until the rate allows one more (Kafka throttles the
 *                                 acceptor the same way)
 *   max.connections.per.ip        per source address; the connection over it is closed at once
 *   max.connections.per.ip.overrides  host:count list (Kafka's TooManyConnectionsException)
 * Counters are atomics; the per-address counts live in a bounded open-addressing table under
 * one mutex, taken only when a per-address limit is configured. */
#ifndef LAMINAR_BROKER_CONNQUOTA_H
#define LAMINAR_BROKER_CONNQUOTA_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "broker/config.h"

enum { BROKER_CONNQUOTA_IPS_MAX = 65536 }; /* per-address table entries (power of two) */

struct broker_connquota_ip {
    uint8_t addr[16]; /* IPv6, or IPv4-mapped */
    uint32_t count;   /* 0 = free entry */
};

struct broker_connquota {
    int64_t max_total;               /* max.connections */
    int64_t max_per_ip;              /* max.connections.per.ip */
    int64_t rate_per_s;              /* max.connection.creation.rate */
    const struct broker_config *cfg; /* overrides */
    _Atomic int64_t total;
    _Atomic uint64_t rate_tat_us; /* GCRA theoretical arrival time, microseconds */
    bool per_ip;                  /* a per-address limit is configured */
    pthread_mutex_t lock;
    struct broker_connquota_ip *ips;
    uint32_t ips_used;
};

/* What a connection holds, returned by acquire and given back to release. */
struct broker_connquota_slot {
    uint8_t addr[16];
    bool counted_total;
    bool counted_ip;
};

int broker_connquota_init(struct broker_connquota *q, const struct broker_config *cfg);
void broker_connquota_deinit(struct broker_connquota *q);
/* Admits a new connection from peer (NULL or a non-IP address: no per-address limit) at now_us
 * (monotonic microseconds). Returns 0 with *slot filled; LM_E_AGAIN when max.connections or the
 * creation rate says wait (*retry_ms: when to try again; nothing is held); LM_E_FULL when the
 * address has its maximum (close it; nothing is held). */
int broker_connquota_acquire(struct broker_connquota *q, const struct sockaddr *peer,
                             uint64_t now_us, struct broker_connquota_slot *slot,
                             uint32_t *retry_ms);
/* Gives back what acquire took. */
void broker_connquota_release(struct broker_connquota *q, struct broker_connquota_slot *slot);
/* Open connections counted against max.connections (for tests and metrics). */
int64_t broker_connquota_total(struct broker_connquota *q);

#endif
