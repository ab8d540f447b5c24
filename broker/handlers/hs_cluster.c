/* The handler layer in a cluster (controller.quorum.voters set): which partitions are this
 * node's, where the others are, new assignments, and metadata changes sent to the
 * controller. Every function here is a no-op or "local" on a single node. */
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "broker/cluster/controller.h"
#include "broker/cluster/placement.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

bool hs_cluster(const struct handlers_ctx *h)
{
    return h->ctl != NULL;
}

bool hs_local_replica(const struct handlers_ctx *h, const struct lm_meta_topic *t, int32_t p)
{
    if (h->ctl == NULL)
        return true;
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p, &n);
    if (r == NULL)
        return true; /* no assignment: the local node's */
    for (int16_t i = 0; i < n; i++)
        if (r[i] == h->cfg->node_id)
            return true;
    return false;
}

int32_t hs_partition_leader(const struct lm_meta_state *st, const struct lm_meta_topic *t,
                            int32_t p, int32_t self)
{
    int16_t n;
    const int32_t *r = lm_meta_topic_replicas(t, p, &n);
    if (r == NULL)
        return self;
    const struct lm_meta_broker *b = lm_meta_state_broker(st, r[0]);
    return b != NULL && !b->fenced ? r[0] : -1;
}

int hs_assign(const struct lm_meta_state *st, int32_t first, int32_t partitions, int16_t rf,
              int32_t **out)
{
    uint32_t rnd[2] = {0, 0};
    if (getrandom(rnd, sizeof(rnd), 0) != (ssize_t)sizeof(rnd))
        rnd[0] = (uint32_t)broker_now_ms();
    return placement_assign_live(st, first, partitions, rf, rnd[0], rnd[1], out);
}

/* ---- a change submitted without waiting for it (auto-creation) ---- */

struct detached {
    struct controller_submit sub;
    uint8_t rec[];
};

static void detached_done(struct broker_shard *s, struct controller_submit *sub)
{
    (void)s;
    if (sub->rc != 0 && sub->rc != LM_E_EXISTS)
        BLOG_WARN_LIMITED("cluster: metadata change not taken by the controller: %s",
                          lm_strerror(sub->rc));
    free(sub->arg);
}

int hs_submit_detached(struct hshard *hs, const struct lm_meta_record *r)
{
    size_t len = lm_meta_record_size(r);
    if (len > LM_META_RECORD_BYTES_MAX)
        return LM_E_TOO_LARGE;
    struct detached *d = calloc(1, sizeof(*d) + len);
    if (d == NULL)
        return LM_E_NOMEM;
    int n = lm_meta_record_encode(r, d->rec, len);
    if (n < 0) {
        free(d);
        return n;
    }
    d->sub.rec = d->rec;
    d->sub.len = (size_t)n;
    d->sub.done = detached_done;
    d->sub.arg = d;
    controller_submit(hs->node->ctl, hs->shard, &d->sub);
    return 0;
}
