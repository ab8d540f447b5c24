/* The partition leader's side of a reassignment (KIP-455) over its Raft group, as a pure
 * function: given the group's configuration, the target replicas and which learners have caught
 * up, the one single-server change to make next (Raft thesis §4.1: one change at a time, each
 * committed before the next). The order is Kafka's: every adding replica joins first (here as a
 * learner that catches up, then is promoted to voter), then the removing replicas leave, the
 * leader last and only after it handed leadership to a target voter.
 *
 * Node ids are Kafka broker ids; Raft ids are node id + 1 (broker/README.md "Replication"). */
#ifndef LAMINAR_BROKER_CLUSTER_REASSIGN_H
#define LAMINAR_BROKER_CLUSTER_REASSIGN_H

#include <stdbool.h>
#include <stdint.h>

#include "consensus/raft.h"

enum reassign_op {
    REASSIGN_DONE = 0,    /* the configuration is the target: tell the controller */
    REASSIGN_WAIT,        /* a learner is catching up: nothing to do yet */
    REASSIGN_ADD_LEARNER, /* raft_propose_conf(ADD_LEARNER, node + 1) */
    REASSIGN_PROMOTE,     /* raft_propose_conf(PROMOTE, node + 1) */
    REASSIGN_REMOVE,      /* raft_propose_conf(REMOVE, node + 1) */
    REASSIGN_TRANSFER,    /* raft_transfer_leader(node + 1): the leader itself is leaving */
    REASSIGN_INVALID,     /* an empty or oversized target, or no target voter to lead */
};

struct reassign_step {
    enum reassign_op op;
    int32_t node; /* broker id the op is about (-1 for DONE, WAIT, INVALID) */
};

/* The next step for the group whose configuration is conf, led by broker id leader, towards
 * target (n_target broker ids, distinct). caught_up(ctx, node) says whether learner node has
 * the leader's committed log (raft_progress match >= commit). Learners not in the target
 * (a cancelled reassignment) go first, then the target's missing replicas join one by one as
 * learners, learners are promoted as they catch up, then voters outside the target are removed
 * (the leader hands over first). */
struct reassign_step reassign_next(const struct raft_conf *conf, int32_t leader,
                                   const int32_t *target, int16_t n_target,
                                   bool (*caught_up)(void *ctx, int32_t node), void *ctx);

#endif
