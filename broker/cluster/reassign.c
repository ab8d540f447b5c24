#include "broker/cluster/reassign.h"

#include <stddef.h>

static bool in_target(const int32_t *target, int16_t n, int32_t node)
{
    for (int16_t i = 0; i < n; i++)
        if (target[i] == node)
            return true;
    return false;
}

static struct reassign_step step(enum reassign_op op, int32_t node)
{
    return (struct reassign_step){.op = op, .node = node};
}

struct reassign_step reassign_next(const struct raft_conf *conf, int32_t leader,
                                   const int32_t *target, int16_t n_target,
                                   bool (*caught_up)(void *ctx, int32_t node), void *ctx)
{
    if (target == NULL || n_target < 1 || n_target > RAFT_NODES_MAX)
        return step(REASSIGN_INVALID, -1);
    /* learners the target does not name (a cancel, or a changed target) leave first */
    for (uint32_t i = 0; i < conf->n_learners; i++) {
        int32_t node = (int32_t)conf->learners[i] - 1;
        if (!in_target(target, n_target, node))
            return step(REASSIGN_REMOVE, node);
    }
    /* the target's replicas join one at a time: learner, caught up, voter */
    for (int16_t i = 0; i < n_target; i++) {
        uint32_t id = (uint32_t)target[i] + 1u;
        if (raft_conf_is_voter(conf, id))
            continue;
        if (!raft_conf_is_learner(conf, id)) {
            if (conf->n_voters + conf->n_learners >= RAFT_NODES_MAX)
                return step(REASSIGN_INVALID, -1);
            return step(REASSIGN_ADD_LEARNER, target[i]);
        }
        if (caught_up == NULL || !caught_up(ctx, target[i]))
            return step(REASSIGN_WAIT, -1);
        return step(REASSIGN_PROMOTE, target[i]);
    }
    /* then the voters outside the target leave, the leader last, after a handover */
    bool leader_leaves = false;
    for (uint32_t i = 0; i < conf->n_voters; i++) {
        int32_t node = (int32_t)conf->voters[i] - 1;
        if (in_target(target, n_target, node))
            continue;
        if (node == leader) {
            leader_leaves = true;
            continue;
        }
        return step(REASSIGN_REMOVE, node);
    }
    if (leader_leaves) {
        for (int16_t i = 0; i < n_target; i++)
            if (target[i] != leader && raft_conf_is_voter(conf, (uint32_t)target[i] + 1u))
                return step(REASSIGN_TRANSFER, target[i]);
        return step(REASSIGN_INVALID, -1);
    }
    return step(REASSIGN_DONE, -1);
}
