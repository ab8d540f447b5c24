/* DescribeTopicPartitions (75, KIP-966): what Metadata says of topics and partitions, paged so
 * that a topic with very many partitions needs several small responses. Kafka 4's admin client
 * uses it for describeTopics (kafka-topics --describe), falling back to Metadata only when the
 * broker does not serve it.
 *
 * Paging as Kafka's DescribeTopicPartitionsRequestHandler does it: the topics asked for (all
 * when the list is empty) in name order, starting at the cursor's topic and partition; the page
 * ends once min(response_partition_limit, max.request.partition.size.limit) partitions are in
 * it, and next_cursor names the first partition left out (null when nothing is left). A topic
 * that does not exist is UNKNOWN_TOPIC_OR_PARTITION with no partitions. On a single node this
 * node leads every partition and is its only replica and in-sync replica; eligible leader
 * replicas (KIP-966) are empty as on a Kafka cluster without ELR. */
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

typedef struct kafka_describe_topic_partitions_response_describe_topic_partitions_response_topic
    dtp_topic;
typedef struct kafka_describe_topic_partitions_response_describe_topic_partitions_response_partition
    dtp_partition;

/* AclOperation codes a TOPIC resource supports (KIP-430), all allowed without an authorizer:
 * READ 3, WRITE 4, CREATE 5, DELETE 6, ALTER 7, DESCRIBE 8, DESCRIBE_CONFIGS 10,
 * ALTER_CONFIGS 11. Kafka computes them for every topic of this API (no include flag). */
#define TOPIC_OPERATIONS                                                                           \
    ((1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11))

static bool topic_internal(const char *name)
{
    return strcmp(name, ADMIN_OFFSETS_TOPIC) == 0 || strcmp(name, "__transaction_state") == 0;
}

/* One topic to describe: its name and, when it exists, a copy of what the response needs
 * (the snapshot is released before the response is encoded). */
struct dtp_want {
    const char *name;
    bool exists;
    uint8_t id[16];
    int32_t partition_count;
};

static int want_cmp(const void *x, const void *y)
{
    return strcmp(((const struct dtp_want *)x)->name, ((const struct dtp_want *)y)->name);
}

/* The topics asked for, sorted by name, without duplicates; existence from the snapshot. */
static int collect(const struct admin_env *env,
                   const struct kafka_describe_topic_partitions_request *rq, struct kafka_arena *a,
                   struct dtp_want **out, size_t *count)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    bool all = rq->topics_count <= 0;
    size_t cap = all ? st->topic_count : (size_t)rq->topics_count;
    struct dtp_want *w = kafka_arena_alloc_array(a, cap > 0 ? cap : 1, sizeof(*w), 8);
    int rc = w != NULL ? 0 : LM_E_NOMEM;
    size_t n = 0;
    for (size_t i = 0; rc == 0 && i < cap; i++) {
        char *name = NULL;
        rc = admin_cstr(a, all ? admin_kstr(st->topics[i].name) : rq->topics[i].name, &name);
        if (rc != 0 || name == NULL)
            continue; /* a null name is not a topic: nothing to describe */
        const struct lm_meta_topic *t = lm_meta_state_find(st, name);
        w[n] = (struct dtp_want){.name = name, .exists = t != NULL};
        if (t != NULL) {
            memcpy(w[n].id, t->id, sizeof(w[n].id));
            w[n].partition_count = t->partition_count;
        }
        n++;
    }
    lm_meta_snapshot_release(snap);
    if (rc != 0)
        return rc;
    qsort(w, n, sizeof(*w), want_cmp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k == 0 || strcmp(w[k - 1].name, w[i].name) != 0)
            w[k++] = w[i];
    }
    *out = w;
    *count = k;
    return 0;
}

/* Kafka's answer to a request it refuses as a whole: every requested topic with the error. */
static int refuse_all(const struct kafka_describe_topic_partitions_request *rq,
                      struct kafka_describe_topic_partitions_response *rs, struct kafka_arena *a)
{
    int32_t n = rq->topics_count > 0 ? rq->topics_count : 0;
    if (ADMIN_RESULTS(a, rs, topics, n) != 0)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        rs->topics[i] = (dtp_topic){.error_code = KAFKA_INVALID_REQUEST,
                                    .name = rq->topics[i].name,
                                    .topic_authorized_operations = INT32_MIN};
    rs->next_cursor_null = true;
    return 0;
}

/* A cluster: replicas from the assignment, leader, epoch, ISR and offline replicas as
 * Metadata answers them (data_metadata.c). */
static int fill_partitions_cluster(const struct admin_env *env, dtp_topic *o, int32_t from,
                                   int32_t count, struct kafka_arena *a)
{
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    const struct lm_meta_topic *t = lm_meta_state_find_id(st, o->topic_id.b);
    int rc = 0;
    for (int32_t i = 0; i < count && rc == 0; i++) {
        int16_t n = 0;
        const int32_t *r = t != NULL ? lm_meta_topic_replicas(t, from + i, &n) : NULL;
        int32_t *nodes = kafka_arena_alloc_array(a, n > 0 ? (size_t)n : 1, sizeof(int32_t), 4);
        if (nodes == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        if (r == NULL) {
            nodes[0] = env->cfg->node_id;
            n = 1;
        } else {
            memcpy(nodes, r, (size_t)n * sizeof(int32_t));
        }
        int32_t lepoch = -1;
        if (n > 1)
            (void)lm_meta_topic_leader(t, from + i, &lepoch);
        int32_t lead =
            t != NULL ? lm_meta_state_partition_leader(st, t, from + i, nodes[0]) : nodes[0];
        bool live = lead >= 0;
        dtp_partition *p = &o->partitions[i];
        p->error_code = live ? KAFKA_NONE : KAFKA_LEADER_NOT_AVAILABLE;
        p->leader_id = live ? lead : -1;
        p->leader_epoch = n > 1 ? lepoch
                          : lead == env->cfg->node_id
                              ? env->leader_epoch(env->epoch_ctx, o->topic_id.b, from + i)
                              : -1;
        p->replica_nodes = nodes;
        p->replica_nodes_count = n;
        int32_t *isr = kafka_arena_alloc_array(a, (size_t)n, sizeof(int32_t), 4);
        int32_t *off = kafka_arena_alloc_array(a, (size_t)n, sizeof(int32_t), 4);
        if (isr == NULL || off == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        p->isr_nodes = isr;
        p->offline_replicas = off;
        if (t != NULL)
            lm_meta_state_partition_isr(st, t, from + i, env->cfg->node_id, isr,
                                        &p->isr_nodes_count, off, &p->offline_replicas_count);
        else
            p->isr_nodes_count = p->offline_replicas_count = 0;
        if (!live)
            p->isr_nodes_count = 0;
    }
    lm_meta_snapshot_release(snap);
    return rc;
}

static int fill_partitions(const struct admin_env *env, dtp_topic *o, int32_t from, int32_t count,
                           struct kafka_arena *a)
{
    o->partitions =
        kafka_arena_alloc_array(a, (size_t)(count > 0 ? count : 1), sizeof(*o->partitions), 8);
    int32_t *nodes = kafka_arena_alloc_array(a, 1, sizeof(int32_t), 4);
    if (o->partitions == NULL || nodes == NULL)
        return LM_E_NOMEM;
    nodes[0] = env->cfg->node_id;
    for (int32_t i = 0; i < count; i++)
        o->partitions[i] = (dtp_partition){
            .error_code = KAFKA_NONE,
            .partition_index = from + i,
            .leader_id = env->cfg->node_id,
            .leader_epoch = env->leader_epoch(env->epoch_ctx, o->topic_id.b, from + i),
            .replica_nodes = nodes,
            .replica_nodes_count = 1,
            .isr_nodes = nodes,
            .isr_nodes_count = 1,
            .eligible_leader_replicas = NULL,
            .eligible_leader_replicas_count = 0,
            .last_known_elr = NULL,
            .last_known_elr_count = 0,
            .offline_replicas = NULL,
            .offline_replicas_count = 0,
        };
    o->partitions_count = count;
    return env->defer != NULL ? fill_partitions_cluster(env, o, from, count, a) : 0;
}

int admin_describe_topic_partitions(const struct admin_env *env, int16_t version,
                                    const struct kafka_describe_topic_partitions_request *rq,
                                    struct kafka_describe_topic_partitions_response *rs,
                                    struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_DESCRIBE_TOPIC_PARTITIONS_MIN &&
              version <= ADMIN_DESCRIBE_TOPIC_PARTITIONS_MAX);
    LM_ASSERT(env->meta != NULL && env->cfg != NULL);
    struct dtp_want *w = NULL;
    size_t n = 0;
    int rc = collect(env, rq, a, &w, &n);
    if (rc != 0)
        return rc;
    const char *cursor_topic = NULL;
    int32_t cursor_part = 0;
    if (!rq->cursor_null) {
        char *ct = NULL;
        if (admin_cstr(a, rq->cursor.topic_name, &ct) != 0)
            return LM_E_NOMEM;
        bool listed = rq->topics_count <= 0;
        for (int32_t i = 0; !listed && ct != NULL && i < rq->topics_count; i++)
            listed = admin_kstr_eq(rq->topics[i].name, ct);
        /* Kafka: the cursor's topic must be one of those asked for, its partition >= 0. */
        if (ct == NULL || !listed || rq->cursor.partition_index < 0)
            return refuse_all(rq, rs, a);
        cursor_topic = ct;
        cursor_part = rq->cursor.partition_index;
    }
    int32_t limit = rq->response_partition_limit;
    if (limit <= 0 || limit > ADMIN_DESCRIBE_PARTITIONS_LIMIT)
        limit = ADMIN_DESCRIBE_PARTITIONS_LIMIT;

    if (ADMIN_RESULTS(a, rs, topics, (int32_t)n) != 0)
        return LM_E_NOMEM;
    rs->topics_count = 0;
    rs->next_cursor_null = true;
    int32_t left = limit;
    for (size_t i = 0; i < n; i++) {
        if (cursor_topic != NULL && strcmp(w[i].name, cursor_topic) < 0)
            continue;
        int32_t from =
            cursor_topic != NULL && strcmp(w[i].name, cursor_topic) == 0 ? cursor_part : 0;
        if (left == 0) {
            /* The page is full: the next one starts with this topic. */
            rs->next_cursor_null = false;
            rs->next_cursor.topic_name = admin_kstr(w[i].name);
            rs->next_cursor.partition_index = from;
            break;
        }
        /* KafkaApis.handleDescribeTopicPartitionsRequest: DESCRIBE on each topic; listing
         * every topic leaves the others out, a named one is TOPIC_AUTHORIZATION_FAILED */
        bool allowed =
            admin_allowed(env, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, admin_kstr(w[i].name));
        if (!allowed && rq->topics_count <= 0)
            continue;
        dtp_topic *o = &rs->topics[rs->topics_count++];
        *o = (dtp_topic){
            .error_code = KAFKA_NONE,
            .name = admin_kstr(w[i].name),
            .is_internal = topic_internal(w[i].name),
            .topic_authorized_operations =
                admin_authz_on(env) ? admin_authorized_ops(env, AUTHZ_RES_TOPIC, w[i].name)
                                    : TOPIC_OPERATIONS,
        };
        if (!allowed) {
            o->error_code = KAFKA_TOPIC_AUTHORIZATION_FAILED;
            o->topic_authorized_operations = INT32_MIN;
            continue;
        }
        if (!w[i].exists) {
            o->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            o->topic_authorized_operations = INT32_MIN;
            continue;
        }
        memcpy(o->topic_id.b, w[i].id, sizeof(o->topic_id.b));
        int32_t avail = w[i].partition_count > from ? w[i].partition_count - from : 0;
        int32_t take = avail < left ? avail : left;
        rc = fill_partitions(env, o, from, take, a);
        if (rc != 0)
            return rc;
        left -= take;
        if (take < avail) {
            rs->next_cursor_null = false;
            rs->next_cursor.topic_name = admin_kstr(w[i].name);
            rs->next_cursor.partition_index = from + take;
            break;
        }
    }
    return 0;
}
