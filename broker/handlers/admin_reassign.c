/* AlterPartitionReassignments and ListPartitionReassignments (KIP-455), with Kafka's checks
 * (ReplicationControlManager): the target replicas are validated against the registered nodes
 * here, the change becomes one PARTITION_REASSIGN record per partition for the controller, and
 * the listing is read from the metadata image every node applies. */
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

#define SET_ERR(a, code_field, msg_field, code, ...)                                               \
    ((code_field) = (code), admin_fmt((a), &(msg_field), __VA_ARGS__))

typedef struct kafka_alter_partition_reassignments_request_reassignable_partition apr_part;
typedef struct kafka_alter_partition_reassignments_response_reassignable_partition_response
    apr_result;

/* The record for one partition of topic t (in the image st): its new state, or an error in
 * res. *skip is set when nothing is to be committed. */
static int reassign_one(const struct admin_env *env, const struct lm_meta_state *st,
                        const struct lm_meta_topic *t, const char *name, const apr_part *rp,
                        bool allow_rf_change, struct kafka_arena *a, apr_result *res,
                        struct lm_meta_moved *out, bool *skip)
{
    *skip = true;
    if (t == NULL || rp->partition_index < 0 || rp->partition_index >= t->partition_count)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_TOPIC_OR_PARTITION,
                       "Unable to find partition %s-%d.", name, rp->partition_index);
    int32_t cur[LM_META_REPLICATION_MAX];
    int16_t n_cur = 0;
    if (t->replicas != NULL)
        n_cur = lm_meta_topic_current_replicas(t, rp->partition_index, cur);
    else
        cur[n_cur++] = env->cfg->node_id; /* a single node's partition: this node's */
    bool moving = lm_meta_topic_reassigning(t, rp->partition_index);
    if (rp->replicas_count < 0) { /* cancel */
        if (!moving)
            return SET_ERR(
                a, res->error_code, res->error_message, KAFKA_NO_REASSIGNMENT_IN_PROGRESS,
                "No ongoing reassignment for partition %s-%d.", name, rp->partition_index);
        /* Back to the replicas before the move. A replica the move was adding may be a voter
         * of the partition's Raft group already (the group's configuration can have reached
         * the target before the controller heard it): dropped from the image at once, it
         * would delete its copy while the group still needs it for a majority. So the cancel
         * is a move to the original replicas from every replica the partition has: the ones
         * being added leave as removed replicas, through the leader's configuration changes,
         * and only then from the image (a move that only removed replicas ends at once). */
        int16_t n_full;
        const int32_t *full = lm_meta_topic_replicas(t, rp->partition_index, &n_full);
        memset(out, 0, sizeof(*out));
        out->partition = rp->partition_index;
        if (full == NULL || lm_meta_reassign_plan(full, n_full, cur, n_cur, out) != 0) {
            out->n = n_cur;
            memcpy(out->replicas, cur, (size_t)n_cur * sizeof(int32_t));
        }
        *skip = false;
        return 0;
    }
    if (rp->replicas_count == 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                       "The manual partition assignment includes an empty replica list.");
    if (rp->replicas_count > LM_META_REPLICATION_MAX)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                       "The manual partition assignment names %d replicas; at most %d are "
                       "supported.",
                       rp->replicas_count, LM_META_REPLICATION_MAX);
    for (int32_t i = 0; i < rp->replicas_count; i++) {
        int32_t id = rp->replicas[i];
        for (int32_t j = 0; j < i; j++)
            if (rp->replicas[j] == id)
                return SET_ERR(a, res->error_code, res->error_message,
                               KAFKA_INVALID_REPLICA_ASSIGNMENT,
                               "The manual partition assignment includes the broker %d more than "
                               "once.",
                               id);
        bool known =
            t->replicas != NULL ? lm_meta_state_broker(st, id) != NULL : id == env->cfg->node_id;
        if (!known)
            return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                           "The manual partition assignment includes broker %d, but no such "
                           "broker is registered.",
                           id);
    }
    if (!allow_rf_change && rp->replicas_count != n_cur)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICATION_FACTOR,
                       "The replication factor is changed from %d to %d", n_cur,
                       rp->replicas_count);
    if (t->replicas == NULL)
        return 0; /* the target is this node, which holds it: nothing moves */
    out->partition = rp->partition_index;
    /* A new target while a move runs replaces it as Kafka's controller does: planned from
     * every replica the partition has now, the ones being added included (its Raft group may
     * count them as voters already), so a replica leaves only through the leader's
     * configuration changes and keeps its data until the move completes. As in Kafka, a cancel
     * after that goes back to those replicas, not to the ones before the first target. */
    int16_t n_from = n_cur;
    const int32_t *from = cur;
    if (moving) {
        const struct lm_meta_moved *m = lm_meta_topic_moved(t, rp->partition_index);
        int16_t k = 0;
        bool same = m != NULL;
        for (int16_t i = 0; same && i < m->n; i++) {
            bool leaving = false;
            for (int16_t j = 0; j < m->n_removing && !leaving; j++)
                leaving = m->removing[j] == m->replicas[i];
            if (leaving)
                continue;
            same = k < rp->replicas_count && rp->replicas[k] == m->replicas[i];
            k++;
        }
        if (same && k == rp->replicas_count)
            return 0; /* the target in progress: nothing changes (*skip) */
        from = lm_meta_topic_replicas(t, rp->partition_index, &n_from);
    }
    if (lm_meta_reassign_plan(from, n_from, rp->replicas, (int16_t)rp->replicas_count, out) != 0)
        return SET_ERR(a, res->error_code, res->error_message, KAFKA_INVALID_REPLICA_ASSIGNMENT,
                       "The target and the current replicas of partition %s-%d together are "
                       "more than %d nodes.",
                       name, rp->partition_index, LM_META_REPLICATION_MAX);
    /* a target that is what the image already shows changes nothing */
    int16_t n_img;
    const int32_t *img = lm_meta_topic_replicas(t, rp->partition_index, &n_img);
    const struct lm_meta_moved *was = lm_meta_topic_moved(t, rp->partition_index);
    int16_t was_adding = was != NULL ? was->n_adding : 0;
    int16_t was_removing = was != NULL ? was->n_removing : 0;
    *skip = n_img == out->n && was_adding == out->n_adding && was_removing == out->n_removing &&
            memcmp(img, out->replicas, (size_t)out->n * sizeof(int32_t)) == 0;
    return 0;
}

int admin_alter_partition_reassignments(
    const struct admin_env *env, int16_t version,
    const struct kafka_alter_partition_reassignments_request *rq,
    struct kafka_alter_partition_reassignments_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_ALTER_REASSIGNMENTS_MIN && version <= ADMIN_ALTER_REASSIGNMENTS_MAX);
    int32_t nt = rq->topics_count < 0 ? 0 : rq->topics_count;
    if (ADMIN_RESULTS(a, rs, responses, nt) != 0)
        return LM_E_NOMEM;
    rs->allow_replication_factor_change = version >= 1 ? rq->allow_replication_factor_change : true;
    rs->error_code = KAFKA_NONE;
    rs->error_message = KAFKA_STR_NULL;
    bool allow_rf = version < 1 || rq->allow_replication_factor_change;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    int rc = 0;
    for (int32_t i = 0; i < nt && rc == 0; i++) {
        const struct kafka_alter_partition_reassignments_request_reassignable_topic *tq =
            &rq->topics[i];
        struct kafka_alter_partition_reassignments_response_reassignable_topic_response *tr =
            &rs->responses[i];
        int32_t np = tq->partitions_count < 0 ? 0 : tq->partitions_count;
        tr->name = tq->name;
        tr->partitions = kafka_arena_alloc_array(a, np > 0 ? (size_t)np : 1, sizeof(apr_result), 8);
        if (tr->partitions == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        tr->partitions_count = np;
        char *name = NULL;
        rc = admin_cstr(a, tq->name, &name);
        if (rc != 0)
            break;
        const struct lm_meta_topic *t =
            name != NULL ? lm_meta_state_find(&snap->state, name) : NULL;
        for (int32_t j = 0; j < np && rc == 0; j++) {
            const apr_part *rp = &tq->partitions[j];
            apr_result *res = &tr->partitions[j];
            *res = (apr_result){.partition_index = rp->partition_index,
                                .error_code = KAFKA_NONE,
                                .error_message = KAFKA_STR_NULL};
            struct lm_meta_moved m = {0};
            bool skip = true;
            rc = reassign_one(env, &snap->state, t, name != NULL ? name : "", rp, allow_rf, a, res,
                              &m, &skip);
            if (rc != 0 || skip || res->error_code != KAFKA_NONE)
                continue;
            /* the lists live in the arena until the record is encoded (admin_commit) */
            struct lm_meta_moved *keep = kafka_arena_alloc(a, sizeof(*keep), 8);
            if (keep == NULL) {
                rc = LM_E_NOMEM;
                break;
            }
            *keep = m;
            struct lm_meta_record r = {.type = LM_META_PARTITION_REASSIGN,
                                       .topic = name,
                                       .partition_count = keep->partition,
                                       .replicas = keep->replicas,
                                       .replication_factor = keep->n,
                                       .adding = keep->adding,
                                       .n_adding = keep->n_adding,
                                       .removing = keep->removing,
                                       .n_removing = keep->n_removing,
                                       .reassign_keep = true};
            rc = admin_commit(env, &r, ADMIN_COMMIT_REASSIGN, a, &res->error_code,
                              &res->error_message);
            if (rc == LM_E_NOT_FOUND || rc == LM_E_INVALID) {
                rc = SET_ERR(a, res->error_code, res->error_message,
                             rc == LM_E_NOT_FOUND ? KAFKA_UNKNOWN_TOPIC_OR_PARTITION
                                                  : KAFKA_INVALID_REPLICA_ASSIGNMENT,
                             "The reassignment of partition %s-%d was refused (%s).", name,
                             rp->partition_index, lm_strerror(rc));
            } else if (rc != 0 && rc != LM_E_NOMEM) {
                rc = SET_ERR(a, res->error_code, res->error_message, KAFKA_UNKNOWN_SERVER_ERROR,
                             "The reassignment of partition %s-%d could not be stored (%s).", name,
                             rp->partition_index, lm_strerror(rc));
            } else if (rc == 0) {
                BLOG_INFO("admin: partition %s-%d: %s (%d adding, %d removing)", name,
                          rp->partition_index,
                          rp->replicas_count < 0 ? "reassignment cancelled"
                                                 : "reassignment requested",
                          keep->n_adding, keep->n_removing);
            }
        }
    }
    lm_meta_snapshot_release(snap);
    return rc;
}

typedef struct kafka_list_partition_reassignments_response_ongoing_partition_reassignment lpr_part;
typedef struct kafka_list_partition_reassignments_response_ongoing_topic_reassignment lpr_topic;

static int32_t *ids_copy(struct kafka_arena *a, const int32_t *ids, int16_t n)
{
    int32_t *out = kafka_arena_alloc_array(a, n > 0 ? (size_t)n : 1, sizeof(int32_t), 4);
    if (out != NULL && n > 0)
        memcpy(out, ids, (size_t)n * sizeof(int32_t));
    return out;
}

static int list_fill(struct kafka_arena *a, const struct lm_meta_moved *m, lpr_part *o)
{
    o->partition_index = m->partition;
    o->replicas = ids_copy(a, m->replicas, m->n);
    o->adding_replicas = ids_copy(a, m->adding, m->n_adding);
    o->removing_replicas = ids_copy(a, m->removing, m->n_removing);
    if (o->replicas == NULL || o->adding_replicas == NULL || o->removing_replicas == NULL)
        return LM_E_NOMEM;
    o->replicas_count = m->n;
    o->adding_replicas_count = m->n_adding;
    o->removing_replicas_count = m->n_removing;
    return 0;
}

/* The reassignments in progress of t (all, or the partitions in want[0..n_want)) as one topic
 * entry; *added is false when it has none. */
static int list_topic(struct kafka_arena *a, const struct lm_meta_topic *t, const int32_t *want,
                      int32_t n_want, bool all, lpr_topic *o, bool *added)
{
    *added = false;
    size_t cap = all ? t->moved_count : (size_t)(n_want > 0 ? n_want : 0);
    lpr_part *parts = kafka_arena_alloc_array(a, cap > 0 ? cap : 1, sizeof(*parts), 8);
    if (parts == NULL)
        return LM_E_NOMEM;
    int32_t k = 0;
    if (all) {
        for (size_t i = 0; i < t->moved_count; i++) {
            const struct lm_meta_moved *m = &t->moved[i];
            if (m->n_adding == 0 && m->n_removing == 0)
                continue;
            if (list_fill(a, m, &parts[k++]) != 0)
                return LM_E_NOMEM;
        }
    } else {
        for (int32_t i = 0; i < n_want; i++) {
            if (!lm_meta_topic_reassigning(t, want[i]))
                continue;
            bool twice = false;
            for (int32_t j = 0; j < i && !twice; j++)
                twice = want[j] == want[i];
            if (!twice && list_fill(a, lm_meta_topic_moved(t, want[i]), &parts[k++]) != 0)
                return LM_E_NOMEM;
        }
    }
    if (k == 0)
        return 0;
    o->name = admin_kstr(t->name);
    char *copy = NULL;
    if (admin_cstr(a, o->name, &copy) != 0)
        return LM_E_NOMEM;
    o->name = admin_kstr(copy);
    o->partitions = parts;
    o->partitions_count = k;
    *added = true;
    return 0;
}

int admin_list_partition_reassignments(const struct admin_env *env, int16_t version,
                                       const struct kafka_list_partition_reassignments_request *rq,
                                       struct kafka_list_partition_reassignments_response *rs,
                                       struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_LIST_REASSIGNMENTS_MIN && version <= ADMIN_LIST_REASSIGNMENTS_MAX);
    rs->throttle_time_ms = 0;
    rs->error_code = KAFKA_NONE;
    rs->error_message = KAFKA_STR_NULL;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    bool all = rq->topics_count < 0;
    size_t cap = all ? st->topic_count : (size_t)rq->topics_count;
    rs->topics = kafka_arena_alloc_array(a, cap > 0 ? cap : 1, sizeof(*rs->topics), 8);
    int rc = rs->topics == NULL ? LM_E_NOMEM : 0;
    int32_t n = 0;
    for (size_t i = 0; i < cap && rc == 0; i++) {
        const struct lm_meta_topic *t = NULL;
        const int32_t *want = NULL;
        int32_t n_want = 0;
        if (all) {
            t = &st->topics[i];
        } else {
            char *name = NULL;
            rc = admin_cstr(a, rq->topics[i].name, &name);
            t = rc == 0 && name != NULL ? lm_meta_state_find(st, name) : NULL;
            want = rq->topics[i].partition_indexes;
            n_want = rq->topics[i].partition_indexes_count;
        }
        if (t == NULL || t->moved_count == 0)
            continue; /* Kafka lists nothing for a topic or partition it does not know */
        bool added = false;
        rc = list_topic(a, t, want, n_want, all, &rs->topics[n], &added);
        n += added ? 1 : 0;
    }
    rs->topics_count = n;
    lm_meta_snapshot_release(snap);
    return rc;
}
