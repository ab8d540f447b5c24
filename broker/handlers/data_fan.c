/* Fan-out of per-partition work to the shards that own the partitions (DESIGN.md §2): one
 * cross-shard call per owner shard carries every item of that shard; the request's shard runs
 * its own items inline. finish() runs on the request's shard once every call is back. */
#include <string.h>

#include "broker/handlers/handlers_internal.h"
#include "common/lm_assert.h"

bool hfan_init(struct hfan *f, struct broker_req *req, struct hwork *items, size_t count,
               hfan_op op, hfan_finish finish, void *ctx)
{
    LM_ASSERT(op != NULL && finish != NULL);
    memset(f, 0, sizeof(*f));
    f->req = req;
    f->origin = hs_of(req->shard);
    f->items = items;
    f->count = count;
    f->op = op;
    f->finish = finish;
    f->ctx = ctx;
    uint32_t n = f->origin->count;
    f->calls = h_alloc(req, n, sizeof(*f->calls));
    if (f->calls == NULL)
        return false;
    /* Targets in order of first appearance, so sequential mode follows the request order. */
    for (size_t i = 0; i < count; i++) {
        uint32_t t = items[i].owner;
        if (t == HWORK_DONE)
            continue;
        LM_ASSERT(t < n);
        bool known = false;
        for (uint32_t c = 0; c < f->call_count && !known; c++)
            known = f->calls[c].target == t;
        if (!known) {
            f->calls[f->call_count].target = t;
            f->calls[f->call_count].f = f;
            f->call_count++;
        }
    }
    LM_ASSERT(f->call_count <= n);
    return true;
}

static void call_finished(struct hshard *hs, struct hfan_call *c);

static void run_items(struct hshard *hs, struct hfan_call *c)
{
    struct hfan *f = c->f;
    hs_refresh(hs);
    c->holds = 1; /* dropped below, once every op has run */
    for (size_t i = 0; i < f->count; i++) {
        struct hwork *w = &f->items[i];
        if (w->owner != c->target)
            continue;
        w->call_ = c;
        struct hpart *p = f->peek ? hs_part_peek(hs, w->topic, w->topic_len, w->partition)
                                  : hs_part(hs, w->topic, w->topic_len, w->partition);
        f->op(hs, p, w, f);
        if (p == NULL && w->error == KAFKA_UNKNOWN_TOPIC_OR_PARTITION && hs_cluster(hs->node)) {
            /* a partition of another node: the client refreshes its metadata and goes there */
            struct htopic *t = hs_topic(hs, w->topic, w->topic_len);
            if (t != NULL && w->partition >= 0 && w->partition < t->meta->partition_count &&
                !hs_local_replica(hs->node, t->meta, w->partition))
                w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        }
    }
    LM_ASSERT(c->holds > 0);
    if (--c->holds == 0)
        call_finished(hs, c);
}

void hfan_hold(struct hwork *w)
{
    LM_ASSERT(w->call_ != NULL && w->call_->holds > 0);
    w->call_->holds++;
}

void hfan_release(struct hshard *hs, struct hwork *w)
{
    struct hfan_call *c = w->call_;
    LM_ASSERT(c != NULL && c->holds > 0 && c->target == hs->id);
    if (--c->holds == 0)
        call_finished(hs, c);
}

static void call_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct hfan_call *c = x->arg;
    run_items(hs_of(target), c);
}

static void issue(struct hfan *f, struct hfan_call *c);

/* The origin's side of a finished call: the next shard (sequential) or finish. */
static void call_back(struct hfan *f)
{
    LM_ASSERT(f->pending > 0);
    f->pending--;
    if (f->sequential && f->next_call < f->call_count) {
        issue(f, &f->calls[f->next_call++]);
        return;
    }
    if (f->pending == 0)
        f->finish(f);
}

static void call_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    struct hfan_call *c = x->arg;
    call_back(c->f);
}

static void call_finished(struct hshard *hs, struct hfan_call *c)
{
    if (c->target == c->f->origin->id)
        call_back(c->f); /* ran inline on the request's shard */
    else
        broker_xcall_return(hs->shard, &c->x);
}

static void issue(struct hfan *f, struct hfan_call *c)
{
    if (c->target == f->origin->id) {
        run_items(f->origin, c);
        return;
    }
    memset(&c->x, 0, sizeof(c->x));
    c->x.run = call_run;
    c->x.done = call_done;
    c->x.arg = c;
    broker_shard_call(f->origin->shard, c->target, &c->x);
}

void hfan_start(struct hfan *f)
{
    if (f->call_count == 0) {
        f->finish(f);
        return;
    }
    f->pending = f->call_count;
    if (f->sequential) {
        f->next_call = 1;
        issue(f, &f->calls[0]);
        return;
    }
    /* Remote calls first, then the local items: finish runs exactly once, after the last. */
    struct hfan_call *local = NULL;
    for (uint32_t i = 0; i < f->call_count; i++) {
        if (f->calls[i].target == f->origin->id)
            local = &f->calls[i];
        else
            issue(f, &f->calls[i]);
    }
    if (local != NULL)
        issue(f, local);
}
