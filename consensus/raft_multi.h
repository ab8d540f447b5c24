/* Multi-Raft: many groups on one node, with heartbeats coalesced per pair of nodes.
 *
 * Every partition is its own Raft group (DESIGN.md §4), so a node pair may share thousands of
 * groups. Messages the groups emit are gathered per destination node into one envelope per
 * flush; HEARTBEAT and HEARTBEAT_RESP (which carry only group, term and commit) are packed as
 * compact triples, so one flush per tick costs one message per peer whatever the number of
 * groups (the CockroachDB "coalesced heartbeats" idea). The receiver expands an envelope back
 * into ordinary raft_msg steps. Pure: no I/O; the caller moves envelopes. */
#ifndef LAMINAR_CONSENSUS_RAFT_MULTI_H
#define LAMINAR_CONSENSUS_RAFT_MULTI_H

#include "consensus/raft.h"

#define RAFT_MULTI_PEERS_MAX 256

struct raft_multi_hb {
    uint64_t group;
    uint64_t term;
    int64_t commit;
};

/* Everything one node sends to one peer in one flush. */
struct raft_envelope {
    uint32_t from, to;
    uint32_t n_msgs, cap_msgs;
    struct raft_msg *msgs; /* non-heartbeat messages, owned */
    uint32_t n_hb, cap_hb;
    struct raft_multi_hb *hb; /* coalesced HEARTBEATs */
    uint32_t n_hb_resp, cap_hb_resp;
    struct raft_multi_hb *hb_resp; /* coalesced HEARTBEAT_RESPs */
};

struct raft_multi_group {
    uint64_t group;
    struct raft *r;
    struct raft_log_ops log; /* resolves the group's APP descriptors when queued */
};

struct raft_multi {
    uint32_t node_id;
    struct raft_multi_group *groups;
    size_t n_groups, cap_groups;
    struct raft_envelope env[RAFT_MULTI_PEERS_MAX];
    uint32_t n_env;
    bool flushed;
    uint64_t hb_coalesced; /* heartbeats (and responses) packed into envelopes, for metrics */
};

/* raft_multi_init prepares an empty set of groups for node node_id. */
void raft_multi_init(struct raft_multi *m, uint32_t node_id);
/* raft_multi_deinit frees envelopes and the group table (not the rafts, which are borrowed). */
void raft_multi_deinit(struct raft_multi *m);
/* raft_multi_add registers group -> r and the log its appends are read from (both borrowed). */
int raft_multi_add(struct raft_multi *m, uint64_t group, struct raft *r,
                   const struct raft_log_ops *log);
/* raft_multi_find returns the raft of a group or NULL. */
struct raft *raft_multi_find(const struct raft_multi *m, uint64_t group);
/* raft_multi_tick ticks every group once; returns the first error a tick reported. */
int raft_multi_tick(struct raft_multi *m);
/* raft_multi_queue adds messages from a group's ready (copied) to the per-peer envelopes. This is
 * where APP descriptors become bytes: each is resolved through its group's log (raft.h), so the
 * caller writes the ready's entries before queueing its messages. An append that no longer
 * resolves is left out and reported to its group with raft_append_unsent. */
int raft_multi_queue(struct raft_multi *m, const struct raft_msg *msgs, size_t n);
/* raft_multi_flush hands out the non-empty envelopes (owned by m, valid until the next queue or
 * flush) and starts new ones. */
void raft_multi_flush(struct raft_multi *m, const struct raft_envelope **out, size_t *n);
/* raft_multi_deliver steps every message of an envelope into its group; unknown groups are
 * skipped. Returns the first error from raft_step, after delivering the rest. */
int raft_multi_deliver(struct raft_multi *m, const struct raft_envelope *env);
/* raft_envelope_count is the number of raft messages an envelope stands for. */
size_t raft_envelope_count(const struct raft_envelope *env);

#endif
