/* SWIM membership of a cluster node on the shard runtime (DESIGN.md §4): gossip/'s pure SWIM
 * core driven by a shard's UDP socket and timer, no thread or poll loop of its own.
 *
 * A node gossips on laminar.gossip.listener (HOST:PORT), else on its CONTROLLER listener's
 * host and port over UDP (UDP and TCP share the port number), else (a broker-only node) on its
 * first listener's. Seeds are the voters of controller.quorum.voters at their controller
 * addresses. A member's metadata carries its node id, advertised Kafka listener, controller
 * address and rack. Packets carry an HMAC-SHA256 under laminar.cluster.secret when it is set.
 * SIGTERM leaves gracefully. The controller leader fences a node that SWIM declares dead (as
 * well as one whose heartbeats stop). */
#ifndef LAMINAR_BROKER_CLUSTER_MEMBERSHIP_H
#define LAMINAR_BROKER_CLUSTER_MEMBERSHIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/runtime.h"

struct membership;

struct membership_config {
    int32_t node_id;
    char host[256]; /* UDP bind address (IPv4) */
    uint16_t port;
    const char *kafka_endpoint; /* advertised "NAME://host:port" */
    const char *raft_addr;      /* controller host:port, or "" */
    const char *rack;
    const char *secret; /* NULL or "": packets unauthenticated */
    struct {
        char host[256];
        uint16_t port;
    } seeds[8];
    uint32_t n_seeds;
};

/* Binds the socket on shard s and joins through the seeds. Returns 0, LM_E_INVALID (an
 * address that is not IPv4), LM_E_IO (bind failed, logged) or LM_E_NOMEM. */
int membership_start(struct broker_shard *s, const struct membership_config *cfg,
                     struct membership **out);
/* Runs SWIM's timers (call every few tens of milliseconds on the same shard). */
void membership_tick(struct membership *m, uint64_t now_ms);
/* Announces a graceful leave (SIGTERM). */
void membership_leave(struct membership *m);
/* Closes the socket and frees m. */
void membership_stop(struct membership *m);
/* True when SWIM has declared node_id dead or gone (left) and not seen it alive since. */
bool membership_node_down(const struct membership *m, int32_t node_id);
/* Members SWIM holds alive (self included), for logs and metrics. */
size_t membership_alive_count(const struct membership *m);
/* Members by state (alive, suspect, dead, left: SWIM's order) into out[0..4). */
void membership_counts(const struct membership *m, uint32_t out[4]);
/* Up to cap members' node ids and states (SWIM's enum swim_status), self included; returns
 * how many were written. */
size_t membership_states(const struct membership *m, int32_t *ids, uint8_t *states, size_t cap);

#endif
