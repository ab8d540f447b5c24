/* Transaction APIs on top of the per-shard coordinators (txn_shard.c): decode on the
 * connection's shard, check ACLs as KafkaApis does, run one call per transactional id on the
 * owner shard (one after another: only one shard at a time touches the request's arena),
 * encode back home. Served: InitProducerId with a transactional id (producer_idem.c hands it
 * here), AddPartitionsToTxn 0-5 (v4+ batched, verify_only; v5 without verify_only is a
 * partition leader's implicit add for a transaction version 2 client), AddOffsetsToTxn 0-4,
 * EndTxn 0-5 (v5: transaction version 2, KIP-890 part 2), DescribeTransactions 0,
 * ListTransactions 0-1; the coordinator's side of Produce (v12+ adds its partitions) and of
 * TxnOffsetCommit (v5+ adds the group's offsets partition).
 * Errors follow KIP-588: before InitProducerId v4, EndTxn/AddPartitionsToTxn/AddOffsetsToTxn
 * v2, a fenced producer gets INVALID_PRODUCER_EPOCH instead of PRODUCER_FENCED. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/group/group_records.h"
#include "broker/handlers/group_internal.h"
#include "broker/handlers/txn_internal.h"
#include "broker/txn/txn_added.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "protocol/kafka_messages.h"
#include "protocol/record_batch.h"

struct treq {
    struct broker_req *req;
    struct top *ops;
    size_t n, next;
    void (*post)(struct treq *t);
    void *ctx;
};

static int16_t fenced_for(int16_t err, int16_t version, int16_t first_fenced_version)
{
    return err == KAFKA_PRODUCER_FENCED && version < first_fenced_version
               ? KAFKA_INVALID_PRODUCER_EPOCH
               : err;
}

static struct kafka_str cstr(const char *s)
{
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

static void treq_issue(struct treq *t);

static void op_finish(struct top *op)
{
    struct treq *t = op->list_ctx;
    t->next++;
    treq_issue(t);
}

/* Runs the ops one after another (ops with kind 0 were answered here: denied), then post. */
static void treq_issue(struct treq *t)
{
    while (t->next < t->n && t->ops[t->next].kind == 0)
        t->next++;
    if (t->next >= t->n) {
        t->post(t);
        return;
    }
    struct top *op = &t->ops[t->next];
    op->req = t->req;
    op->finish = op_finish;
    op->list_ctx = t;
    if (op->remote_node < 0) {
        txn_call(op);
        return;
    }
    if (txn_remote_verify(op, op->remote_node) != 0) {
        for (int32_t i = 0; i < op->in.add.n_partitions; i++)
            op->part_errors[i] = KAFKA_COORDINATOR_NOT_AVAILABLE; /* the Produce retries */
        op_finish(op);
    }
}

static struct treq *treq_new(struct broker_req *req, size_t n, void (*post)(struct treq *))
{
    struct treq *t = h_alloc(req, 1, sizeof(*t));
    struct top *ops = n > 0 ? h_alloc(req, n, sizeof(*ops)) : NULL;
    if (t == NULL || (n > 0 && ops == NULL)) {
        h_close(req, "arena exhausted");
        return NULL;
    }
    t->req = req;
    t->ops = ops;
    t->n = n;
    t->post = post;
    return t;
}

static void top_init(struct treq *t, size_t i, uint8_t kind, struct kafka_str tid)
{
    struct top *op = &t->ops[i];
    memset(op, 0, sizeof(*op));
    op->kind = kind;
    op->owner = txn_owner_of(hs_of(t->req->shard), tid);
    op->producer_id = -1;
    op->producer_epoch = -1;
    op->remote_node = -1;
}

/* ---- InitProducerId (transactional) ---------------------------------------------------------- */

static void init_post(struct treq *t)
{
    struct top *op = &t->ops[0];
    struct kafka_init_producer_id_response resp;
    kafka_init_producer_id_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = fenced_for(op->error_code, t->req->api_version, 4);
    resp.producer_id = op->error_code == KAFKA_NONE ? op->producer_id : -1;
    resp.producer_epoch = op->error_code == KAFKA_NONE ? op->producer_epoch : -1;
    h_respond(t->req, &resp);
}

void txn_init_producer_id(struct broker_req *req, struct kafka_str transactional_id,
                          int32_t timeout_ms, int64_t producer_id, int16_t producer_epoch)
{
    struct treq *t = treq_new(req, 1, init_post);
    if (t == NULL)
        return;
    top_init(t, 0, TOP_INIT, transactional_id);
    t->ops[0].in.init =
        (struct lm_txn_init_req){transactional_id, timeout_ms, producer_id, producer_epoch};
    treq_issue(t);
}

/* ---- AddPartitionsToTxn (0-5) --------------------------------------------------------------- */

struct apt_ctx {
    struct kafka_add_partitions_to_txn_request rq;
    struct kafka_add_partitions_to_txn_response resp;
};

/* One transaction of the request: its topics (v4+ from the batch, else the v3 fields). */
struct apt_txn {
    struct kafka_str tid;
    int64_t pid;
    int16_t epoch;
    bool verify_only;
    const struct kafka_add_partitions_to_txn_add_partitions_to_txn_topic *topics;
    int32_t n_topics;
};

static struct apt_txn apt_txn_at(const struct apt_ctx *c, int16_t v, int32_t i)
{
    if (v >= 4) {
        const struct kafka_add_partitions_to_txn_request_add_partitions_to_txn_transaction *x =
            &c->rq.transactions[i];
        return (struct apt_txn){x->transactional_id, x->producer_id,
                                x->producer_epoch,   x->verify_only,
                                x->topics,           x->topics_count > 0 ? x->topics_count : 0};
    }
    return (struct apt_txn){c->rq.v3_and_below_transactional_id,
                            c->rq.v3_and_below_producer_id,
                            c->rq.v3_and_below_producer_epoch,
                            false,
                            c->rq.v3_and_below_topics,
                            c->rq.v3_and_below_topics_count > 0 ? c->rq.v3_and_below_topics_count
                                                                : 0};
}

/* Builds the per-topic results of transaction i from its op (errors in request order). */
static bool apt_results(struct treq *t, const struct apt_txn *x, const struct top *op,
                        struct kafka_add_partitions_to_txn_add_partitions_to_txn_topic_result **out,
                        int32_t *n_out)
{
    struct kafka_add_partitions_to_txn_add_partitions_to_txn_topic_result *res =
        h_alloc(t->req, (size_t)x->n_topics, sizeof(*res));
    if (x->n_topics > 0 && res == NULL)
        return false;
    int32_t k = 0;
    for (int32_t i = 0; i < x->n_topics; i++) {
        int32_t np = x->topics[i].partitions_count > 0 ? x->topics[i].partitions_count : 0;
        res[i].name = x->topics[i].name;
        res[i].results_by_partition =
            h_alloc(t->req, (size_t)np, sizeof(*res[i].results_by_partition));
        if (np > 0 && res[i].results_by_partition == NULL)
            return false;
        res[i].results_by_partition_count = np;
        for (int32_t j = 0; j < np; j++, k++) {
            int16_t e = op->part_errors[k];
            res[i].results_by_partition[j].partition_index = x->topics[i].partitions[j];
            res[i].results_by_partition[j].partition_error_code =
                fenced_for(e, t->req->api_version, 2);
        }
    }
    *out = res;
    *n_out = x->n_topics;
    return true;
}

static void apt_post(struct treq *t)
{
    struct apt_ctx *c = t->ctx;
    int16_t v = t->req->api_version;
    c->resp.throttle_time_ms = 0;
    c->resp.error_code = KAFKA_NONE;
    if (v >= 4) {
        int32_t n = (int32_t)t->n;
        c->resp.results_by_transaction =
            h_alloc(t->req, (size_t)n, sizeof(*c->resp.results_by_transaction));
        if (n > 0 && c->resp.results_by_transaction == NULL)
            goto nomem;
        c->resp.results_by_transaction_count = n;
        for (int32_t i = 0; i < n; i++) {
            struct apt_txn x = apt_txn_at(c, v, i);
            c->resp.results_by_transaction[i].transactional_id = x.tid;
            if (!apt_results(t, &x, &t->ops[i], &c->resp.results_by_transaction[i].topic_results,
                             &c->resp.results_by_transaction[i].topic_results_count))
                goto nomem;
        }
    } else {
        struct apt_txn x = apt_txn_at(c, v, 0);
        if (!apt_results(t, &x, &t->ops[0], &c->resp.results_by_topic_v3_and_below,
                         &c->resp.results_by_topic_v3_and_below_count))
            goto nomem;
    }
    h_respond(t->req, &c->resp);
    return;
nomem:
    h_close(t->req, "arena exhausted");
}

/* Prepares op i for transaction x: the partitions, and the errors KafkaApis answers itself
 * (ACLs, unknown topics: then the op does not run, every other partition is
 * OPERATION_NOT_ATTEMPTED). Returns false when out of memory. */
static bool apt_prepare(struct treq *t, size_t i, const struct apt_txn *x)
{
    struct broker_req *req = t->req;
    struct hshard *hs = hs_of(req->shard);
    top_init(t, i, TOP_ADD, x->tid);
    struct top *op = &t->ops[i];
    int32_t n = 0;
    for (int32_t k = 0; k < x->n_topics; k++)
        n += x->topics[k].partitions_count > 0 ? x->topics[k].partitions_count : 0;
    struct lm_txn_topic_partition *parts = h_alloc(req, (size_t)n, sizeof(*parts));
    op->part_errors = h_alloc(req, (size_t)n, sizeof(*op->part_errors));
    if (n > 0 && (parts == NULL || op->part_errors == NULL))
        return false;
    bool refused = false;
    int16_t deny_all = KAFKA_NONE;
    if (!h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TRANSACTIONAL_ID, x->tid))
        deny_all = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    int32_t j = 0;
    for (int32_t k = 0; k < x->n_topics; k++) {
        struct kafka_str name = x->topics[k].name;
        int16_t e = deny_all;
        /* a client's request (v3 and below) needs WRITE on each topic; a broker's (v4+,
         * already authorized for CLUSTER_ACTION) forwards a Produce it authorized itself */
        if (e == KAFKA_NONE && t->req->api_version < 4 &&
            !h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, name))
            e = KAFKA_TOPIC_AUTHORIZATION_FAILED;
        struct htopic *ht = name.len > 0 ? hs_topic(hs, name.ptr, (size_t)name.len) : NULL;
        for (int32_t q = 0; q < x->topics[k].partitions_count; q++, j++) {
            int32_t p = x->topics[k].partitions[q];
            parts[j] = (struct lm_txn_topic_partition){name, p};
            int16_t pe = e;
            if (pe == KAFKA_NONE && (ht == NULL || p < 0 || p >= ht->meta->partition_count))
                pe = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            op->part_errors[j] = pe;
            refused |= pe != KAFKA_NONE;
        }
    }
    /* v5+ from a partition leader without verify_only: a Produce v12+ of a transaction
     * version 2 client reached a partition, which joins the transaction (KIP-890 part 2) */
    bool implicit = t->req->api_version >= 5 && !x->verify_only;
    op->in.add =
        (struct lm_txn_add_req){x->tid, x->pid, x->epoch, n, parts, x->verify_only, implicit};
    if (refused) {
        for (int32_t q = 0; q < n; q++)
            if (op->part_errors[q] == KAFKA_NONE)
                op->part_errors[q] = KAFKA_OPERATION_NOT_ATTEMPTED;
        op->kind = 0;
    }
    return true;
}

static void add_partitions_to_txn(struct broker_req *req)
{
    struct apt_ctx *c = h_alloc(req, 1, sizeof(*c));
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_add_partitions_to_txn_request_init(&c->rq);
    kafka_add_partitions_to_txn_response_init(&c->resp);
    if (!h_decode(req, &c->rq))
        return;
    int16_t v = req->api_version;
    int32_t n = v >= 4 ? (c->rq.transactions_count > 0 ? c->rq.transactions_count : 0) : 1;
    struct treq *t = treq_new(req, (size_t)n, apt_post);
    if (t == NULL)
        return;
    t->ctx = c;
    /* v4+ come from brokers (KIP-890): CLUSTER_ACTION on the cluster, as KafkaApis checks */
    if (v >= 4 && !h_allowed_cluster(req, AUTHZ_OP_CLUSTER_ACTION)) {
        c->resp.error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        h_respond(req, &c->resp);
        return;
    }
    for (int32_t i = 0; i < n; i++) {
        struct apt_txn x = apt_txn_at(c, v, i);
        if (!apt_prepare(t, (size_t)i, &x)) {
            h_close(req, "arena exhausted");
            return;
        }
    }
    treq_issue(t);
}

/* ---- AddOffsetsToTxn (0-4) ------------------------------------------------------------------ */

static void aot_post(struct treq *t)
{
    struct kafka_add_offsets_to_txn_response resp;
    kafka_add_offsets_to_txn_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = fenced_for(t->ops[0].error_code, t->req->api_version, 2);
    h_respond(t->req, &resp);
}

static void add_offsets_to_txn(struct broker_req *req)
{
    struct kafka_add_offsets_to_txn_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_add_offsets_to_txn_request_init(rq);
    if (!h_decode(req, rq))
        return;
    struct treq *t = treq_new(req, 1, aot_post);
    if (t == NULL)
        return;
    top_init(t, 0, TOP_ADD_OFFSETS, rq->transactional_id);
    t->ops[0].in.add_offsets = (struct lm_txn_add_offsets_req){
        rq->transactional_id, rq->producer_id, rq->producer_epoch, rq->group_id};
    /* KafkaApis.handleAddOffsetsToTxnRequest: WRITE on the id, READ on the group */
    int16_t deny = KAFKA_NONE;
    if (!h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TRANSACTIONAL_ID, rq->transactional_id))
        deny = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    else if (!h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_GROUP, rq->group_id))
        deny = KAFKA_GROUP_AUTHORIZATION_FAILED;
    if (deny != KAFKA_NONE) {
        t->ops[0].error_code = deny;
        t->ops[0].kind = 0;
    }
    treq_issue(t);
}

/* ---- EndTxn (0-5) --------------------------------------------------------------------------- */

static void end_post(struct treq *t)
{
    struct kafka_end_txn_response resp;
    kafka_end_txn_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.error_code = fenced_for(t->ops[0].error_code, t->req->api_version, 2);
    /* v5: the producer id and epoch the producer continues with (KIP-890 part 2) */
    bool ok = t->ops[0].error_code == KAFKA_NONE && t->req->api_version >= 5;
    resp.producer_id = ok ? t->ops[0].producer_id : -1;
    resp.producer_epoch = ok ? t->ops[0].producer_epoch : -1;
    h_respond(t->req, &resp);
}

static void end_txn(struct broker_req *req)
{
    struct kafka_end_txn_request *rq = h_alloc(req, 1, sizeof(*rq));
    if (rq == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_end_txn_request_init(rq);
    if (!h_decode(req, rq))
        return;
    struct treq *t = treq_new(req, 1, end_post);
    if (t == NULL)
        return;
    top_init(t, 0, TOP_END, rq->transactional_id);
    t->ops[0].in.end =
        (struct lm_txn_end_req){rq->transactional_id, rq->producer_id, rq->producer_epoch,
                                rq->committed, req->api_version >= 5};
    int16_t deny = KAFKA_NONE;
    if (!h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TRANSACTIONAL_ID, rq->transactional_id))
        deny = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    if (deny != KAFKA_NONE) {
        t->ops[0].error_code = deny;
        t->ops[0].kind = 0;
    }
    treq_issue(t);
}

/* ---- DescribeTransactions (0) --------------------------------------------------------------- */

struct dt_ctx {
    struct kafka_describe_transactions_request rq;
};

/* topics of a state: consecutive partitions of one topic (the coordinator keeps them sorted) */
static bool dt_topics(struct broker_req *req, const struct lm_txn_info *in,
                      struct kafka_describe_transactions_response_transaction_state *s)
{
    int32_t nt = 0;
    for (int32_t i = 0; i < in->n_partitions; i++)
        if (i == 0 || in->partitions[i].topic.len != in->partitions[i - 1].topic.len ||
            memcmp(in->partitions[i].topic.ptr, in->partitions[i - 1].topic.ptr,
                   (size_t)in->partitions[i].topic.len) != 0)
            nt++;
    s->topics = h_alloc(req, (size_t)nt, sizeof(*s->topics));
    if (nt > 0 && s->topics == NULL)
        return false;
    s->topics_count = nt;
    int32_t t = -1;
    for (int32_t i = 0; i < in->n_partitions; i++) {
        bool fresh = i == 0 || in->partitions[i].topic.len != in->partitions[i - 1].topic.len ||
                     memcmp(in->partitions[i].topic.ptr, in->partitions[i - 1].topic.ptr,
                            (size_t)in->partitions[i].topic.len) != 0;
        if (fresh) {
            t++;
            int32_t n = 1;
            while (i + n < in->n_partitions &&
                   in->partitions[i + n].topic.len == in->partitions[i].topic.len &&
                   memcmp(in->partitions[i + n].topic.ptr, in->partitions[i].topic.ptr,
                          (size_t)in->partitions[i].topic.len) == 0)
                n++;
            s->topics[t].topic = in->partitions[i].topic;
            s->topics[t].partitions = h_alloc(req, (size_t)n, sizeof(int32_t));
            if (s->topics[t].partitions == NULL)
                return false;
            s->topics[t].partitions_count = 0;
        }
        s->topics[t].partitions[s->topics[t].partitions_count++] = in->partitions[i].partition;
    }
    return true;
}

static void dt_post(struct treq *t)
{
    struct dt_ctx *c = t->ctx;
    struct kafka_describe_transactions_response resp;
    kafka_describe_transactions_response_init(&resp);
    resp.throttle_time_ms = 0;
    int32_t n = (int32_t)t->n;
    resp.transaction_states = h_alloc(t->req, (size_t)n, sizeof(*resp.transaction_states));
    if (n > 0 && resp.transaction_states == NULL)
        goto nomem;
    resp.transaction_states_count = n;
    for (int32_t i = 0; i < n; i++) {
        struct top *op = &t->ops[i];
        struct kafka_describe_transactions_response_transaction_state *s =
            &resp.transaction_states[i];
        memset(s, 0, sizeof(*s));
        s->transactional_id = c->rq.transactional_ids[i];
        s->transaction_state = cstr("");
        s->transaction_start_time_ms = -1;
        s->producer_id = -1;
        s->producer_epoch = -1;
        s->error_code = op->error_code;
        if (op->nomem)
            goto nomem;
        if (s->error_code == KAFKA_NONE && !op->found)
            s->error_code = KAFKA_TRANSACTIONAL_ID_NOT_FOUND;
        if (s->error_code != KAFKA_NONE)
            continue;
        s->transaction_state = cstr(lm_txn_state_name(op->info.state));
        s->transaction_timeout_ms = op->info.timeout_ms;
        s->transaction_start_time_ms = op->info.start_ts_ms;
        s->producer_id = op->info.producer_id;
        s->producer_epoch = op->info.producer_epoch;
        if (!dt_topics(t->req, &op->info, s))
            goto nomem;
    }
    h_respond(t->req, &resp);
    return;
nomem:
    h_close(t->req, "arena exhausted");
}

static void describe_transactions(struct broker_req *req)
{
    struct dt_ctx *c = h_alloc(req, 1, sizeof(*c));
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_describe_transactions_request_init(&c->rq);
    if (!h_decode(req, &c->rq))
        return;
    int32_t n = c->rq.transactional_ids_count > 0 ? c->rq.transactional_ids_count : 0;
    struct treq *t = treq_new(req, (size_t)n, dt_post);
    if (t == NULL)
        return;
    t->ctx = c;
    for (int32_t i = 0; i < n; i++) {
        struct kafka_str tid = c->rq.transactional_ids[i];
        top_init(t, (size_t)i, TOP_DESCRIBE, tid);
        t->ops[i].in.end.transactional_id = tid;
        int16_t deny = KAFKA_NONE;
        if (!h_allowed_k(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TRANSACTIONAL_ID, tid))
            deny = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        if (deny != KAFKA_NONE) {
            t->ops[i].error_code = deny;
            t->ops[i].kind = 0;
        }
    }
    treq_issue(t);
}

/* ---- ListTransactions (0-1) -------------------------------------------------------------------
 */

struct lt_ctx {
    struct kafka_list_transactions_request rq;
    struct kafka_list_transactions_response resp;
    int32_t cap;
    int64_t now_ms;
};

/* On each owner shard: keeps the ids that pass the filters and the caller may describe. */
static void lt_visit(struct top *op, const struct lm_txn_info *in)
{
    struct treq *t = op->list_ctx;
    struct lt_ctx *c = t->ctx;
    if (in->state == LM_TXN_DEAD)
        return;
    bool ok = c->rq.state_filters_count <= 0;
    for (int32_t i = 0; !ok && i < c->rq.state_filters_count; i++) {
        const char *name = lm_txn_state_name(in->state);
        ok = c->rq.state_filters[i].len == (int32_t)strlen(name) &&
             memcmp(c->rq.state_filters[i].ptr, name, strlen(name)) == 0;
    }
    bool pid_ok = c->rq.producer_id_filters_count <= 0;
    for (int32_t i = 0; !pid_ok && i < c->rq.producer_id_filters_count; i++)
        pid_ok = c->rq.producer_id_filters[i] == in->producer_id;
    /* v1 duration filter (KIP-994): transactions running longer than it */
    bool dur_ok = t->req->api_version < 1 || c->rq.duration_filter < 0 ||
                  (in->start_ts_ms >= 0 && c->now_ms - in->start_ts_ms > c->rq.duration_filter);
    if (!ok || !pid_ok || !dur_ok)
        return;
    if (!h_allowed_k(t->req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TRANSACTIONAL_ID, in->transactional_id))
        return;
    if (c->resp.transaction_states_count == c->cap) {
        int32_t ncap = c->cap > 0 ? c->cap * 2 : 16;
        void *n = h_alloc(t->req, (size_t)ncap, sizeof(*c->resp.transaction_states));
        if (n == NULL) {
            op->nomem = true;
            return;
        }
        if (c->cap > 0)
            memcpy(n, c->resp.transaction_states,
                   (size_t)c->cap * sizeof(*c->resp.transaction_states));
        c->resp.transaction_states = n;
        c->cap = ncap;
    }
    struct kafka_list_transactions_response_transaction_state *s =
        &c->resp.transaction_states[c->resp.transaction_states_count++];
    char *id = h_strdup(t->req, in->transactional_id);
    if (id == NULL) {
        op->nomem = true;
        c->resp.transaction_states_count--;
        return;
    }
    s->transactional_id = (struct kafka_str){id, in->transactional_id.len};
    s->producer_id = in->producer_id;
    s->transaction_state = cstr(lm_txn_state_name(in->state));
}

static void lt_post(struct treq *t)
{
    struct lt_ctx *c = t->ctx;
    for (size_t i = 0; i < t->n; i++)
        if (t->ops[i].nomem) {
            h_close(t->req, "arena exhausted");
            return;
        }
    h_respond(t->req, &c->resp);
}

static void lt_finish(struct top *op)
{
    struct treq *t = op->list_ctx;
    t->next++;
    /* every shard, one after another */
    while (t->next < t->n) {
        struct top *nx = &t->ops[t->next];
        nx->req = t->req;
        nx->finish = lt_finish;
        nx->list_ctx = t;
        txn_call(nx);
        return;
    }
    t->post(t);
}

static void list_transactions(struct broker_req *req)
{
    struct lt_ctx *c = h_alloc(req, 1, sizeof(*c));
    if (c == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_list_transactions_request_init(&c->rq);
    kafka_list_transactions_response_init(&c->resp);
    if (!h_decode(req, &c->rq))
        return;
    struct hshard *hs = hs_of(req->shard);
    c->now_ms = group_now_ms(hs);
    c->resp.throttle_time_ms = 0;
    c->resp.error_code = KAFKA_NONE;
    /* states the filter names that do not exist (Kafka answers them back) */
    int32_t nf = c->rq.state_filters_count > 0 ? c->rq.state_filters_count : 0;
    c->resp.unknown_state_filters = h_alloc(req, (size_t)nf, sizeof(struct kafka_str));
    if (nf > 0 && c->resp.unknown_state_filters == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    for (int32_t i = 0; i < nf; i++) {
        bool known = false;
        for (int s = LM_TXN_EMPTY; s <= LM_TXN_PREPARE_EPOCH_FENCE && !known; s++)
            known = c->rq.state_filters[i].len == (int32_t)strlen(lm_txn_state_name(s)) &&
                    memcmp(c->rq.state_filters[i].ptr, lm_txn_state_name(s),
                           (size_t)c->rq.state_filters[i].len) == 0;
        if (!known)
            c->resp.unknown_state_filters[c->resp.unknown_state_filters_count++] =
                c->rq.state_filters[i];
    }
    size_t n = hs->count;
    struct treq *t = treq_new(req, n, lt_post);
    if (t == NULL)
        return;
    t->ctx = c;
    if (n == 0) {
        lt_post(t);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        struct top *op = &t->ops[i];
        memset(op, 0, sizeof(*op));
        op->kind = TOP_LIST;
        op->owner = (uint32_t)i;
        op->remote_node = -1;
        op->list_fn = lt_visit;
    }
    struct top *op = &t->ops[0];
    op->req = req;
    op->finish = lt_finish;
    op->list_ctx = t;
    txn_call(op);
}

/* ---- Produce: KIP-890 part 1 verification -----------------------------------------------------
 */

struct pv_ctx {
    struct hwork *items;
    size_t n;
    size_t *index; /* op partition i -> items[index[i]] */
    struct hfan *f;
    /* transaction version 2: the partitions confirmed go to the shard's cache */
    struct txn_added *added;
    uint8_t (*topic_ids)[16]; /* op partition i's topic id (all zero: not known) */
    struct txn_added *order;  /* the cache whose txn_added_begin this holds (NULL: none) */
    int order_token;
};

/* A transactional batch the coordinator has to be asked about: its header in *h. */
static bool txn_batch(const struct hwork *w, struct kafka_batch_header *h)
{
    const struct kafka_bytes *rec = w->in;
    return w->owner != HWORK_DONE && rec != NULL && rec->len >= 61 &&
           kafka_batch_header_parse(rec->ptr, (size_t)rec->len, h) == 0 &&
           (h->attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) && h->producer_id >= 0;
}

/* The id of the topic named by w in the shard's image (false: not there). */
static bool item_topic_id(struct hshard *hs, const struct hwork *w, uint8_t id[16])
{
    char name[LM_TOPIC_NAME_MAX + 1];
    if (hs->snap == NULL || w->topic_len > LM_TOPIC_NAME_MAX)
        return false;
    memcpy(name, w->topic, w->topic_len);
    name[w->topic_len] = 0;
    const struct lm_meta_topic *t = lm_meta_state_find(&hs->snap->state, name);
    if (t == NULL)
        return false;
    memcpy(id, t->id, 16);
    return true;
}

/* The Produce error for a verification failure (Kafka's ReplicaManager): the coordinator's
 * retriable answers become NOT_ENOUGH_REPLICAS, which every client retries (franz-go only
 * after its next metadata refresh, up to seconds later); a fenced producer gets
 * INVALID_PRODUCER_EPOCH as for its batches. */
static int16_t produce_error(int16_t e)
{
    switch (e) {
    case KAFKA_COORDINATOR_LOAD_IN_PROGRESS:
    case KAFKA_COORDINATOR_NOT_AVAILABLE:
    case KAFKA_NOT_COORDINATOR:
    case KAFKA_CONCURRENT_TRANSACTIONS:
        return KAFKA_NOT_ENOUGH_REPLICAS;
    case KAFKA_PRODUCER_FENCED:
        return KAFKA_INVALID_PRODUCER_EPOCH;
    default:
        return e;
    }
}

static void pv_post(struct treq *t)
{
    struct pv_ctx *v = t->ctx;
    struct top *op = &t->ops[0];
    if (v->order != NULL)
        txn_added_end(v->order, v->order_token);
    for (int32_t i = 0; i < op->in.add.n_partitions; i++) {
        int16_t e = op->part_errors[i];
        if (e == KAFKA_NONE) {
            static const uint8_t zero[16];
            if (v->added != NULL && memcmp(v->topic_ids[i], zero, 16) != 0)
                txn_added_put(v->added, op->in.add.producer_id, op->in.add.producer_epoch,
                              v->topic_ids[i], v->items[v->index[i]].partition, broker_now_ms());
            continue;
        }
        struct hwork *w = &v->items[v->index[i]];
        w->error = produce_error(e);
        w->owner = HWORK_DONE;
    }
    hfan_start(v->f);
}

bool txn_produce_verify(struct broker_req *req, struct kafka_str transactional_id,
                        struct hwork *items, size_t n, struct hfan *f)
{
    struct hshard *hs = hs_of(req->shard);
    /* Produce v12+ comes from a transaction version 2 client, which does not add partitions
     * itself: the leader adds them (KIP-890 part 2), whether or not verification is on */
    bool implicit = req->api_version >= 12;
    if (transactional_id.len <= 0 || (!implicit && !hs->node->txn_verify_partitions))
        return false;
    int32_t coord = txn_coordinator_node(hs, transactional_id);
    if (coord < 0) {
        /* No coordinator known (no __transaction_state yet, or its partition without a
         * leader): the batches are refused as Kafka's AddPartitionsToTxnManager refuses them
         * when it finds no coordinator (COORDINATOR_NOT_AVAILABLE, given to the producer as
         * the retriable NOT_ENOUGH_REPLICAS). Written unchecked, a batch of a producer no
         * coordinator knows would hold the partition's last stable offset for good. */
        for (size_t i = 0; i < n; i++) {
            const struct kafka_bytes *rec = items[i].in;
            struct kafka_batch_header h;
            if (items[i].owner == HWORK_DONE || rec == NULL || rec->len < 61 ||
                kafka_batch_header_parse(rec->ptr, (size_t)rec->len, &h) != 0 ||
                !(h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL))
                continue;
            items[i].error = produce_error(KAFKA_COORDINATOR_NOT_AVAILABLE);
            items[i].owner = HWORK_DONE;
        }
        return false;
    }
    /* Transaction version 2: a partition already added to this transaction (same producer id
     * and epoch) is not asked about again, as Kafka skips a partition with the producer's
     * transaction going on (txn_added.h for why that holds). */
    struct txn_added *shard_added = implicit ? txn_shard_added(hs) : NULL;
    struct txn_added *added = shard_added;
    uint8_t(*ids)[16] = added != NULL ? h_alloc(req, n, 16) : NULL;
    bool *skip = added != NULL ? h_alloc(req, n, sizeof(bool)) : NULL;
    if (ids == NULL || skip == NULL)
        added = NULL;
    uint64_t now = broker_now_ms();
    /* nothing skips while an earlier request of the producer is with the coordinator */
    bool may_skip = false;
    for (size_t i = 0; i < n && added != NULL; i++) {
        struct kafka_batch_header h;
        if (txn_batch(&items[i], &h)) {
            may_skip = !txn_added_busy(added, h.producer_id);
            break;
        }
    }
    int64_t pid = -1;
    int16_t epoch = -1;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        struct kafka_batch_header h;
        if (!txn_batch(&items[i], &h))
            continue;
        if (added != NULL && may_skip) {
            if (!item_topic_id(hs, &items[i], ids[i]))
                memset(ids[i], 0, 16);
            else if (txn_added_has(added, h.producer_id, h.producer_epoch, ids[i],
                                   items[i].partition, now)) {
                skip[i] = true;
                continue;
            }
        }
        if (m == 0) {
            pid = h.producer_id;
            epoch = h.producer_epoch;
        }
        m++;
    }
    if (m == 0)
        return false;
    struct treq *t = treq_new(req, 1, pv_post);
    struct pv_ctx *v = h_alloc(req, 1, sizeof(*v));
    struct lm_txn_topic_partition *parts = h_alloc(req, m, sizeof(*parts));
    if (t == NULL || v == NULL || parts == NULL)
        return false; /* the append goes on unverified; the producer state still checks it */
    v->items = items;
    v->n = n;
    v->f = f;
    v->order = NULL;
    v->added = added;
    v->topic_ids = added != NULL ? h_alloc(req, m, 16) : NULL;
    if (added != NULL && v->topic_ids == NULL)
        v->added = NULL;
    v->index = h_alloc(req, m, sizeof(*v->index));
    top_init(t, 0, TOP_ADD, transactional_id);
    t->ops[0].part_errors = h_alloc(req, m, sizeof(int16_t));
    if (v->index == NULL || t->ops[0].part_errors == NULL)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        struct kafka_batch_header h;
        if (!txn_batch(&items[i], &h) || (skip != NULL && skip[i]))
            continue;
        LM_ASSERT(k < m);
        if (v->added != NULL)
            memcpy(v->topic_ids[k], ids[i], 16);
        parts[k] = (struct lm_txn_topic_partition){
            (struct kafka_str){items[i].topic, (int32_t)items[i].topic_len}, items[i].partition};
        v->index[k++] = i;
    }
    LM_ASSERT(k == m);
    t->ctx = v;
    t->ops[0].in.add = (struct lm_txn_add_req){transactional_id, pid,     epoch, (int32_t)m, parts,
                                               !implicit,        implicit};
    if (coord != hs->node->cfg->node_id)
        t->ops[0].remote_node = coord;
    if (shard_added != NULL) {
        v->order = shard_added;
        v->order_token = txn_added_begin(shard_added, pid);
    }
    treq_issue(t);
    return true;
}

/* ---- TxnOffsetCommit v5+: the offsets partition joins the transaction -------------------------
 */

struct oa_ctx {
    void (*done)(void *ctx, int16_t error_code);
    void *ctx;
};

/* The TxnOffsetCommit error for a failed add: the transaction coordinator's retriable answers
 * become COORDINATOR_NOT_AVAILABLE (the client finds the group coordinator again and retries,
 * as Kafka's group coordinator answers a failed verification); a fenced producer gets
 * INVALID_PRODUCER_EPOCH. */
static int16_t offsets_error(int16_t e)
{
    switch (e) {
    case KAFKA_COORDINATOR_LOAD_IN_PROGRESS:
    case KAFKA_COORDINATOR_NOT_AVAILABLE:
    case KAFKA_NOT_COORDINATOR:
    case KAFKA_CONCURRENT_TRANSACTIONS:
    case KAFKA_UNKNOWN_TOPIC_OR_PARTITION:
        return KAFKA_COORDINATOR_NOT_AVAILABLE;
    case KAFKA_PRODUCER_FENCED:
        return KAFKA_INVALID_PRODUCER_EPOCH;
    default:
        return e;
    }
}

static void oa_post(struct treq *t)
{
    struct oa_ctx *o = t->ctx;
    struct top *op = &t->ops[0];
    int16_t e = op->part_errors[0];
    o->done(o->ctx, offsets_error(e));
}

bool txn_offsets_add(struct broker_req *req, struct kafka_str transactional_id, int64_t pid,
                     int16_t epoch, struct kafka_str group_id,
                     void (*done)(void *ctx, int16_t error_code), void *ctx)
{
    struct hshard *hs = hs_of(req->shard);
    if (transactional_id.len <= 0 || group_id.len < 0)
        return false;
    int32_t coord = txn_coordinator_node(hs, transactional_id);
    struct treq *t = treq_new(req, 1, oa_post);
    struct oa_ctx *o = h_alloc(req, 1, sizeof(*o));
    struct lm_txn_topic_partition *tp = h_alloc(req, 1, sizeof(*tp));
    if (t == NULL || o == NULL || tp == NULL)
        return false;
    o->done = done;
    o->ctx = ctx;
    t->ctx = o;
    top_init(t, 0, TOP_ADD, transactional_id);
    t->ops[0].part_errors = h_alloc(req, 1, sizeof(int16_t));
    if (t->ops[0].part_errors == NULL)
        return false;
    *tp = (struct lm_txn_topic_partition){
        cstr(GROUP_OFFSETS_TOPIC),
        lm_gr_partition_for(group_id, hs->node->txn_cfg.offsets_partitions)};
    t->ops[0].in.add = (struct lm_txn_add_req){transactional_id, pid, epoch, 1, tp, false, true};
    if (coord < 0) {
        t->ops[0].part_errors[0] = KAFKA_COORDINATOR_NOT_AVAILABLE;
        t->ops[0].kind = 0; /* answered without a coordinator */
    } else if (coord != hs->node->cfg->node_id) {
        t->ops[0].remote_node = coord;
    }
    treq_issue(t);
    return true;
}

int txn_api_register(struct broker_dispatch *d)
{
    int rc;
    if ((rc = txn_setup(d->ctx)) != 0 ||
        (rc = handlers_serve(d, KAFKA_ADD_PARTITIONS_TO_TXN_KEY, 0, 5, add_partitions_to_txn)) !=
            0 ||
        (rc = handlers_serve(d, KAFKA_ADD_OFFSETS_TO_TXN_KEY, 0, 4, add_offsets_to_txn)) != 0 ||
        (rc = handlers_serve(d, KAFKA_END_TXN_KEY, 0, 5, end_txn)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DESCRIBE_TRANSACTIONS_KEY, 0, 0, describe_transactions)) !=
            0 ||
        (rc = handlers_serve(d, KAFKA_LIST_TRANSACTIONS_KEY, 0, 1, list_transactions)) != 0)
        return rc;
    return 0;
}
