/* ElectLeaders (43, v0-2; KIP-183, KIP-460 for the election type) and the automatic
 * preferred-leader rebalance (auto.leader.rebalance.enable).
 *
 * A partition's preferred leader is the first replica of its assignment. Under Raft a leader
 * is elected, not appointed: the node answering ElectLeaders asks the current leader
 * (PARTITION_ELECT, an internal request) to hand its leadership to the preferred replica
 * (raft_transfer_leader: TimeoutNow once that replica has caught up), then answers once its
 * metadata image shows the preferred replica leading, as Kafka answers once the election is
 * committed (REQUEST_TIMED_OUT after timeout_ms, at most ELECT_WAIT_MAX_MS).
 *
 * Per partition, as Kafka: ELECTION_NOT_NEEDED when the preferred replica leads already (or
 * the partition has a single replica); PREFERRED_LEADER_NOT_AVAILABLE when it is on a fenced
 * node, out of the ISR, not heard from by the leader, or the partition has no leader to hand
 * over from; UNKNOWN_TOPIC_OR_PARTITION. An unclean election (type 1) has no meaning under
 * Raft, where only a replica with every committed record can win: ELECTION_NOT_NEEDED while
 * the partition has a leader, ELIGIBLE_LEADERS_NOT_AVAILABLE otherwise. A null topic list asks
 * for every partition, and the answer lists those where an election was needed. */
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "protocol/kafka_elect_leaders.h"
#include "protocol/kafka_errors.h"

#define ELECT_POLL_MS     50
#define ELECT_WAIT_MAX_MS 30000
/* leadership transfers one shard starts per rebalance check (KRaft: 1000 elections a pass) */
#define REBALANCE_PER_CHECK 1000

typedef struct kafka_elect_leaders_response_elect_leaders_replica_election_result elect_topic;
typedef struct kafka_elect_leaders_response_elect_leaders_partition_result elect_result;

struct elect_part {
    const char *topic; /* NUL-terminated, in the request's arena */
    int32_t partition;
    int32_t preferred;
    elect_result *out;
    void *call;   /* the PARTITION_ELECT in flight (freed by its done) */
    bool waiting; /* transfer started: until the image shows the preferred replica leading */
};

struct elect_req {
    struct broker_req *req;
    struct kafka_elect_leaders_response *resp;
    struct elect_part *parts;
    size_t n;
    uint32_t calls; /* PARTITION_ELECTs in flight */
    uint64_t deadline_ms;
    struct broker_timer timer;
};

static void set_err(struct broker_req *req, elect_result *r, int16_t err, const char *msg)
{
    r->error_code = err;
    if (msg != NULL) {
        struct kafka_str s = {msg, (int32_t)strlen(msg)};
        r->error_message = (struct kafka_str){h_strdup(req, s), s.len};
        if (r->error_message.ptr == NULL)
            r->error_message = (struct kafka_str){NULL, -1};
    }
}

static void finish(struct elect_req *e)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->parts[i].waiting)
            set_err(e->req, e->parts[i].out, KAFKA_REQUEST_TIMED_OUT,
                    "the preferred replica did not become leader in time");
    h_respond(e->req, e->resp);
}

/* Until every started transfer shows in the image (or the deadline). */
static void poll_image(struct broker_shard *s, struct broker_timer *t)
{
    struct elect_req *e = t->arg;
    struct hshard *hs = hs_of(s);
    hs_refresh(hs);
    bool left = false;
    for (size_t i = 0; i < e->n; i++) {
        struct elect_part *p = &e->parts[i];
        if (!p->waiting)
            continue;
        const struct lm_meta_topic *mt = lm_meta_state_find(&hs->snap->state, p->topic);
        if (mt != NULL && lm_meta_state_partition_leader(&hs->snap->state, mt, p->partition,
                                                         hs->node->cfg->node_id) == p->preferred)
            p->waiting = false;
        left |= p->waiting;
    }
    if (!left || hs->stopping || broker_now_ms() >= e->deadline_ms ||
        broker_timer_start(s, &e->timer, ELECT_POLL_MS, poll_image, e) != 0)
        finish(e);
}

static void calls_done(struct elect_req *e)
{
    bool waiting = false;
    for (size_t i = 0; i < e->n; i++)
        waiting |= e->parts[i].waiting;
    if (!waiting || broker_timer_start(e->req->shard, &e->timer, ELECT_POLL_MS, poll_image, e) != 0)
        finish(e);
}

static struct elect_part *part_of_call(struct elect_req *e, const struct broker_call *call)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->parts[i].call == (const void *)call)
            return &e->parts[i];
    return NULL;
}

static void elect_done(struct broker_shard *s, struct broker_call *call, int rc)
{
    (void)s;
    struct elect_req *e = call->arg;
    struct elect_part *p = part_of_call(e, call);
    LM_ASSERT(p != NULL);
    int16_t err = rc == 0 && call->resp_len == 2 ? (int16_t)((call->resp[0] << 8) | call->resp[1])
                  : rc == LM_E_TIMEOUT           ? KAFKA_REQUEST_TIMED_OUT
                                                 : KAFKA_PREFERRED_LEADER_NOT_AVAILABLE;
    if (err == KAFKA_NONE)
        p->waiting = true;
    else if (err == KAFKA_NOT_LEADER_OR_FOLLOWER)
        set_err(e->req, p->out, KAFKA_PREFERRED_LEADER_NOT_AVAILABLE,
                "the leadership moved meanwhile; try again");
    else
        set_err(e->req, p->out, err,
                rc != 0 ? "the partition's leader could not be reached" : NULL);
    free(p->call);
    p->call = NULL;
    LM_ASSERT(e->calls > 0);
    if (--e->calls == 0)
        calls_done(e);
}

/* Decides partition p at once, or starts its transfer (e->calls). */
static void elect_one(struct hshard *hs, struct elect_req *e, struct elect_part *p, int8_t type,
                      const struct lm_meta_topic *mt)
{
    struct broker_req *req = e->req;
    const struct lm_meta_state *st = &hs->snap->state;
    int32_t self = hs->node->cfg->node_id;
    p->out->partition_id = p->partition;
    p->out->error_message = (struct kafka_str){NULL, -1};
    if (type != 0 && type != 1) {
        set_err(req, p->out, KAFKA_INVALID_REQUEST, "unknown election type");
        return;
    }
    if (mt == NULL || p->partition < 0 || p->partition >= mt->partition_count) {
        set_err(req, p->out, KAFKA_UNKNOWN_TOPIC_OR_PARTITION, NULL);
        return;
    }
    int16_t n = 0;
    const int32_t *r = lm_meta_topic_replicas(mt, p->partition, &n);
    int32_t leader = lm_meta_state_partition_leader(st, mt, p->partition, self);
    if (type == 1) {
        if (leader >= 0)
            set_err(req, p->out, KAFKA_ELECTION_NOT_NEEDED, NULL);
        else
            set_err(req, p->out, KAFKA_ELIGIBLE_LEADERS_NOT_AVAILABLE,
                    "no unclean election under Raft: a replica with every committed record "
                    "must return");
        return;
    }
    if (r == NULL || n < 2 || leader == r[0]) {
        set_err(req, p->out, KAFKA_ELECTION_NOT_NEEDED, NULL);
        return;
    }
    if (lm_meta_topic_reassigning(mt, p->partition)) {
        set_err(req, p->out, KAFKA_PREFERRED_LEADER_NOT_AVAILABLE,
                "a reassignment of the partition is in progress");
        return;
    }
    p->preferred = r[0];
    const struct lm_meta_broker *b = lm_meta_state_broker(st, r[0]);
    if (b == NULL || b->fenced || (lm_meta_topic_isr_out(mt, p->partition) & 1u)) {
        set_err(req, p->out, KAFKA_PREFERRED_LEADER_NOT_AVAILABLE,
                "the preferred replica is not alive or not in sync");
        return;
    }
    if (leader < 0) {
        set_err(req, p->out, KAFKA_PREFERRED_LEADER_NOT_AVAILABLE,
                "the partition has no leader to hand over from");
        return;
    }
    int rc = hs_elect_send(hs, leader, p->topic, p->partition, r[0], elect_done, e, &p->call);
    if (rc != 0) {
        set_err(req, p->out, KAFKA_PREFERRED_LEADER_NOT_AVAILABLE,
                "the partition's leader could not be reached");
        return;
    }
    e->calls++;
}

/* A replicated partition whose first replica (its preferred leader) does not lead it. */
static bool off_preferred(const struct lm_meta_state *st, const struct lm_meta_topic *mt, int32_t p,
                          int32_t self)
{
    int16_t rn = 0;
    const int32_t *r = lm_meta_topic_replicas(mt, p, &rn);
    return r != NULL && rn > 1 && !lm_meta_topic_reassigning(mt, p) &&
           lm_meta_state_partition_leader(st, mt, p, self) != r[0];
}

/* The response's topic and partition arrays and e->parts, for n partitions over topics. */
static elect_result *alloc_results(struct elect_req *e, size_t topics, size_t n)
{
    struct broker_req *req = e->req;
    e->parts = h_alloc(req, n ? n : 1, sizeof(*e->parts));
    elect_topic *out = h_alloc(req, topics ? topics : 1, sizeof(*out));
    elect_result *res = h_alloc(req, n ? n : 1, sizeof(*res));
    if (e->parts == NULL || out == NULL || res == NULL)
        return NULL;
    e->resp->replica_election_results = out;
    e->resp->replica_election_results_count = (int32_t)topics;
    return res;
}

/* The partitions of a null topic list: every replicated partition whose preferred replica
 * does not lead. Fills e->parts and the response's topics. */
static bool collect_all(struct hshard *hs, struct elect_req *e)
{
    struct broker_req *req = e->req;
    const struct lm_meta_state *st = &hs->snap->state;
    int32_t self = hs->node->cfg->node_id;
    size_t n = 0, topics = 0;
    for (size_t t = 0; t < st->topic_count; t++) {
        const struct lm_meta_topic *mt = &st->topics[t];
        size_t k = 0;
        for (int32_t i = 0; i < mt->partition_count; i++)
            k += off_preferred(st, mt, i, self);
        n += k;
        topics += k > 0;
    }
    elect_result *res = alloc_results(e, topics, n);
    if (res == NULL)
        return false;
    elect_topic *out = e->resp->replica_election_results;
    size_t at = 0, ti = 0;
    for (size_t t = 0; t < st->topic_count; t++) {
        const struct lm_meta_topic *mt = &st->topics[t];
        size_t first = at;
        for (int32_t i = 0; i < mt->partition_count; i++) {
            if (!off_preferred(st, mt, i, self))
                continue;
            struct kafka_str name = {mt->name, (int32_t)strlen(mt->name)};
            const char *copy = first == at ? h_strdup(req, name) : e->parts[first].topic;
            if (copy == NULL)
                return false;
            e->parts[at] = (struct elect_part){.topic = copy, .partition = i, .out = &res[at]};
            at++;
        }
        if (at > first) {
            out[ti] = (elect_topic){.topic = {e->parts[first].topic, (int32_t)strlen(mt->name)},
                                    .partition_result = &res[first],
                                    .partition_result_count = (int32_t)(at - first)};
            ti++;
        }
    }
    e->n = at;
    return true;
}

static bool collect_listed(struct elect_req *e, const struct kafka_elect_leaders_request *rq)
{
    struct broker_req *req = e->req;
    size_t n = 0;
    for (int32_t t = 0; t < rq->topic_partitions_count; t++)
        n += rq->topic_partitions[t].partitions_count > 0
                 ? (size_t)rq->topic_partitions[t].partitions_count
                 : 0;
    size_t topics = (size_t)rq->topic_partitions_count;
    elect_result *res = alloc_results(e, topics, n);
    if (res == NULL)
        return false;
    elect_topic *out = e->resp->replica_election_results;
    size_t at = 0;
    for (size_t t = 0; t < topics; t++) {
        const struct kafka_elect_leaders_request_elect_leaders_topic_partitions *tp =
            &rq->topic_partitions[t];
        const char *name = h_strdup(req, tp->topic);
        if (name == NULL)
            return false;
        int32_t k = tp->partitions_count > 0 ? tp->partitions_count : 0;
        out[t] = (elect_topic){
            .topic = tp->topic, .partition_result = &res[at], .partition_result_count = k};
        for (int32_t i = 0; i < k; i++, at++)
            e->parts[at] =
                (struct elect_part){.topic = name, .partition = tp->partitions[i], .out = &res[at]};
    }
    e->n = at;
    return true;
}

void hs_elect_leaders(struct broker_req *req)
{
    struct kafka_elect_leaders_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct elect_req *e = h_alloc(req, 1, sizeof(*e));
    struct kafka_elect_leaders_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || e == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_elect_leaders_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_elect_leaders_response_init(resp);
    if (!h_allowed_cluster(req, AUTHZ_OP_ALTER)) {
        /* KafkaApis.handleElectLeaders: ALTER on the cluster, else every listed partition
         * (and the top level from v1) CLUSTER_AUTHORIZATION_FAILED */
        int32_t nt = rq->topic_partitions_count > 0 ? rq->topic_partitions_count : 0;
        resp->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        resp->replica_election_results =
            h_alloc(req, (size_t)nt, sizeof(*resp->replica_election_results));
        if (resp->replica_election_results == NULL) {
            h_close(req, "arena exhausted");
            return;
        }
        resp->replica_election_results_count = nt;
        for (int32_t i = 0; i < nt; i++) {
            const struct kafka_elect_leaders_request_elect_leaders_topic_partitions *t =
                &rq->topic_partitions[i];
            struct kafka_elect_leaders_response_elect_leaders_replica_election_result *o =
                &resp->replica_election_results[i];
            int32_t np = t->partitions_count > 0 ? t->partitions_count : 0;
            o->topic = t->topic;
            o->partition_result = h_alloc(req, (size_t)np, sizeof(*o->partition_result));
            if (o->partition_result == NULL) {
                h_close(req, "arena exhausted");
                return;
            }
            o->partition_result_count = np;
            for (int32_t j = 0; j < np; j++)
                o->partition_result[j] =
                    (struct kafka_elect_leaders_response_elect_leaders_partition_result){
                        .partition_id = t->partitions[j],
                        .error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED,
                        .error_message = KAFKA_STR_NULL};
        }
        h_respond(req, resp);
        return;
    }
    *e = (struct elect_req){.req = req, .resp = resp};
    e->timer.heap_index_ = UINT32_MAX;
    struct hshard *hs = hs_of(req->shard);
    int8_t type = req->api_version >= 1 ? rq->election_type : 0;
    bool ok = rq->topic_partitions_count < 0 ? collect_all(hs, e) : collect_listed(e, rq);
    if (!ok) {
        h_close(req, "arena exhausted");
        return;
    }
    int64_t wait = rq->timeout_ms > 0 && rq->timeout_ms < ELECT_WAIT_MAX_MS ? rq->timeout_ms
                                                                            : ELECT_WAIT_MAX_MS;
    e->deadline_ms = broker_now_ms() + (uint64_t)wait;
    for (size_t i = 0; i < e->n; i++) {
        struct elect_part *p = &e->parts[i];
        elect_one(hs, e, p, type, lm_meta_state_find(&hs->snap->state, p->topic));
    }
    if (e->calls == 0)
        calls_done(e);
}

/* ---- auto.leader.rebalance.enable ---- */

void hs_rebalance_check(struct hshard *hs, uint64_t now_ms)
{
    const struct broker_config *cfg = hs->node->cfg;
    if (!cfg->auto_leader_rebalance_enable || hs->snap == NULL || hs->stopping)
        return;
    if (hs->rebalance_at_ms == 0) /* the first check one interval after the start, as Kafka */
        hs->rebalance_at_ms = now_ms + (uint64_t)cfg->leader_imbalance_check_interval_s * 1000u;
    if (now_ms < hs->rebalance_at_ms)
        return;
    hs->rebalance_at_ms = now_ms + (uint64_t)cfg->leader_imbalance_check_interval_s * 1000u;
    const struct lm_meta_state *st = &hs->snap->state;
    int32_t self = cfg->node_id;
    /* KRaft's rule (the controller's imbalanced-partition set): every partition led off its
     * preferred replica goes back to it once that replica is registered, unfenced, in the
     * ISR and caught up; at most REBALANCE_PER_CHECK per check, the rest at the next one.
     * leader.imbalance.per.broker.percentage, ZooKeeper mode's threshold, is accepted and
     * has no effect (Kafka 4 removed it). Each leader moves its own partitions. */
    uint32_t moved = 0;
    for (size_t b = 0; b < hs->bucket_count && moved < REBALANCE_PER_CHECK; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            for (int32_t i = 0; i < t->part_cap && moved < REBALANCE_PER_CHECK; i++) {
                struct hpart *p = t->parts[i];
                if (p == NULL || !p->replicated || p->part == NULL || p->failed || p->rf < 2 ||
                    p->replicas[0] == self || !partition_is_leader(p->part) ||
                    partition_transferring(p->part))
                    continue;
                const struct lm_meta_broker *pb = lm_meta_state_broker(st, p->replicas[0]);
                const struct lm_meta_topic *mt = lm_meta_state_find(st, p->topic);
                const struct raft_progress *pr =
                    raft_progress(partition_raft(p->part), (uint32_t)p->replicas[0] + 1u);
                const char *why = pb == NULL   ? "unknown"
                                  : pb->fenced ? "fenced"
                                  : mt == NULL ? "no topic"
                                  : (lm_meta_topic_isr_out(mt, p->partition) & 1u)
                                      ? "out of the ISR"
                                  : pr == NULL                            ? "no progress"
                                  : !hs_replica_in_sync(hs, p, 0, now_ms) ? "not in sync"
                                  : pr->match < partition_log_end_offset(p->part) - 1 ? "behind"
                                  : !hs_has_log_start(hs, p, p->replicas[0]) ? "no log start"
                                                                             : NULL;
                if (why != NULL) { /* the next check */
                    BLOG_INFO_LIMITED("partition %s-%d: not handed back to node %d yet (%s; "
                                      "match %lld, state %d)",
                                      p->topic, p->partition, p->replicas[0], why,
                                      pr != NULL ? (long long)pr->match : -2LL,
                                      pr != NULL ? (int)pr->state : -1);
                    continue;
                }
                if (partition_transfer_leader(p->part, (uint32_t)p->replicas[0] + 1u) == 0) {
                    BLOG_INFO("partition %s-%d: handing leadership to node %d (auto leader "
                              "rebalance)",
                              p->topic, p->partition, p->replicas[0]);
                    moved++;
                }
            }
    if (moved > 0)
        BLOG_INFO("auto leader rebalance: handing %u partition(s) back to their preferred "
                  "replicas",
                  moved);
}
