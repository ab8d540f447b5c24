/* The partition leader's side of a reassignment (KIP-455): the image holds the target (the
 * controller's PARTITION_REASSIGN), the partition's Raft configuration is where the group is;
 * each look makes the one single-server change reassign_next says, and once the configuration
 * is the target and committed the controller hears it (Kafka's AlterPartition role) and
 * finishes the move. Everything is read again at every look, so a restart of any node, a new
 * leader or a cancel continues from the durable state: the Raft configuration in the log and
 * the controller's record. */
#include <string.h>

#include "broker/cluster/reassign.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_err.h"

/* A learner has the leader's committed log (it may then be promoted). */
static bool learner_caught_up(void *ctx, int32_t node)
{
    struct hpart *p = ctx;
    const struct raft *r = partition_raft(p->part);
    const struct raft_progress *pr = raft_progress(r, (uint32_t)node + 1u);
    return pr != NULL && pr->match >= raft_commit(r);
}

static const char *op_name(enum reassign_op op)
{
    switch (op) {
    case REASSIGN_ADD_LEARNER:
        return "adding learner";
    case REASSIGN_PROMOTE:
        return "promoting";
    case REASSIGN_REMOVE:
        return "removing";
    case REASSIGN_TRANSFER:
        return "handing leadership to";
    default:
        return "?";
    }
}

/* Tells the controller the group's configuration is the target (reassign_done) of the move
 * numbered move (the image's, read in the same look as the target; 0: unknown). The controller
 * applies it only while that move is in progress: a copy retried late, after a cancel and
 * another move to the same target, is refused as stale (LM_E_STATE) instead of dropping a
 * replica the cancel put back. */
static void reassign_complete(struct hshard *hs, struct hpart *p, const int32_t *target, int16_t n,
                              int64_t move, uint64_t now_ms)
{
    if (now_ms < p->reassign_done_at_ms)
        return;
    p->reassign_done_at_ms = now_ms + 1000; /* again until the image shows it */
    struct lm_meta_record r = {.type = LM_META_PARTITION_REASSIGN,
                               .topic = p->topic,
                               .partition_count = p->partition,
                               .replicas = target,
                               .replication_factor = n,
                               .reassign_done = true,
                               .reassign_move = move};
    int rc = hs_submit_detached(hs, &r);
    if (rc != 0)
        BLOG_WARN_LIMITED("partition %s-%d: reporting the reassignment done: %s", p->topic,
                          p->partition, lm_strerror(rc));
    else
        BLOG_INFO("partition %s-%d: reassignment done in the Raft group; telling the controller",
                  p->topic, p->partition);
}

void hs_reassign_step(struct hshard *hs, struct hpart *p, uint64_t now_ms)
{
    if (!p->replicated || p->part == NULL || p->failed || hs->snap == NULL ||
        !partition_is_leader(p->part) || !partition_hw_known(p->part) ||
        partition_transferring(p->part))
        return;
    /* the shard's topic table (a hash lookup: this runs after every input of every leader) */
    const struct htopic *ht = hs_topic(hs, p->topic, strlen(p->topic));
    const struct lm_meta_topic *t = ht != NULL ? ht->meta : NULL;
    if (t == NULL || memcmp(t->id, p->topic_id, 16) != 0)
        return;
    /* Only an image that shows this leadership (its announcement committed after the leader
     * was elected) holds every move committed before: the configurations earlier leaders
     * made came from images no newer than that. A leader whose image lagged (its metadata log
     * behind after a disk fault) drove its group back to a move the controller had replaced:
     * a voter set whose new member never opened its replica, and no leader again. */
    int32_t known_epoch = -1;
    if (lm_meta_topic_leader(t, p->partition, &known_epoch) != hs->node->cfg->node_id ||
        known_epoch != partition_leader_epoch(p->part))
        return;
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p->partition, &n);
    if (r == NULL || n < 1)
        return;
    const struct lm_meta_moved *m = lm_meta_topic_moved(t, p->partition);
    bool moving = m != NULL && (m->n_adding > 0 || m->n_removing > 0);
    int32_t target[LM_META_REPLICATION_MAX];
    int16_t nt = 0;
    for (int16_t i = 0; i < n; i++) {
        bool leaving = false;
        for (int16_t k = 0; m != NULL && k < m->n_removing && !leaving; k++)
            leaving = m->removing[k] == r[i];
        if (!leaving)
            target[nt++] = r[i];
    }
    int32_t self = hs->node->cfg->node_id;
    const struct raft_conf *conf = raft_conf(partition_raft(p->part));
    struct reassign_step st = reassign_next(conf, self, target, nt, learner_caught_up, p);
    if (st.op == REASSIGN_DONE) {
        if (moving && !partition_conf_pending(p->part))
            reassign_complete(hs, p, target, nt, m->move, now_ms);
        return;
    }
    if (st.op == REASSIGN_WAIT || st.op == REASSIGN_INVALID)
        return;
    int rc;
    if (st.op == REASSIGN_TRANSFER)
        rc = partition_transfer_leader(p->part, (uint32_t)st.node + 1u);
    else
        rc = partition_propose_conf(p->part,
                                    st.op == REASSIGN_ADD_LEARNER ? RAFT_CONF_ADD_LEARNER
                                    : st.op == REASSIGN_PROMOTE   ? RAFT_CONF_PROMOTE
                                                                  : RAFT_CONF_REMOVE,
                                    (uint32_t)st.node + 1u);
    if (rc == LM_E_AGAIN)
        return; /* the last change is not committed, or the learner is behind: next look */
    int32_t key = (int32_t)st.op * 100000 + st.node;
    if (rc != 0)
        BLOG_WARN_LIMITED("partition %s-%d: reassignment: %s node %d: %s", p->topic, p->partition,
                          op_name(st.op), st.node, lm_strerror(rc));
    else if (key != p->reassign_logged)
        BLOG_INFO("partition %s-%d: reassignment: %s node %d", p->topic, p->partition,
                  op_name(st.op), st.node);
    p->reassign_logged = rc == 0 ? key : p->reassign_logged;
}
