/* Client quotas (KIP-13, KIP-55; controller_mutation_rate, KIP-599): who a request counts against
 * (the connection's principal without its "User:" prefix, Kafka's KafkaPrincipal name, and the
 * request header's client id), the quota the metadata image sets for them
 * (lm_quota_resolve over the shard's snapshot), and the shard's sensors (lm_quota_table).
 * Each shard measures the byte rates of the connections it serves on its own: a client with
 * connections on several shards gets the quota on each; controller mutations are counted
 * once for the node. */
#include <pthread.h>
#include <string.h>

#include "broker/metrics.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"

/* Sensors per shard: bounded, the least recently used reused past it. */
#define HQUOTA_SENSORS_MAX 4096

struct hquota_who {
    char user[LM_QUOTA_NAME_MAX + 1];
    char client[LM_QUOTA_NAME_MAX + 1];
};

static void who_of(struct broker_req *req, struct hquota_who *w)
{
    const char *p = broker_req_auth(req)->principal;
    static const char prefix[] = "User:";
    if (strncmp(p, prefix, sizeof(prefix) - 1) == 0)
        p += sizeof(prefix) - 1;
    size_t n = strnlen(p, LM_QUOTA_NAME_MAX);
    memcpy(w->user, p, n);
    w->user[n] = '\0';
    n = req->client_id != NULL && req->client_id_len > 0 ? (size_t)req->client_id_len : 0;
    if (n > LM_QUOTA_NAME_MAX)
        n = LM_QUOTA_NAME_MAX;
    if (n > 0)
        memcpy(w->client, req->client_id, n);
    w->client[n] = '\0';
}

/* Sensors t, made on first use; NULL without memory (then nothing is throttled). */
static struct lm_quota_table *table_ready(struct lm_quota_table *t, const struct broker_config *cfg,
                                          size_t cap)
{
    if (t->sensors != NULL)
        return t;
    struct lm_quota_window w = {.samples = (uint32_t)cfg->quota_window_num,
                                .window_ms = (uint32_t)cfg->quota_window_size_seconds * 1000u};
    int rc = lm_quota_table_init(t, cap, w);
    if (rc != 0) {
        BLOG_WARN_LIMITED("quota: no sensors (%s); quotas are not enforced", lm_strerror(rc));
        return NULL;
    }
    return t;
}

bool h_quota_limit(struct broker_req *req, int k, double *limit)
{
    LM_ASSERT(k >= 0 && k < LM_QUOTA_KEY_COUNT);
    struct hshard *hs = hs_of(req->shard);
    if (hs->snap == NULL || hs->snap->state.quota_count == 0)
        return false;
    struct hquota_who w;
    who_of(req, &w);
    const char *tu, *tc;
    return lm_quota_resolve(hs->snap->state.quotas, hs->snap->state.quota_count, k, w.user,
                            w.client, limit, &tu, &tc) > 0;
}

/* Records v (may be negative: taking bytes back) for req's sensor of key k; the throttle
 * time, 0 without a quota. */
static int64_t quota_add(struct broker_req *req, int k, double v)
{
    LM_ASSERT(k >= 0 && k < LM_QUOTA_KEY_COUNT);
    struct hshard *hs = hs_of(req->shard);
    if (hs->snap == NULL || hs->snap->state.quota_count == 0)
        return 0;
    struct hquota_who w;
    who_of(req, &w);
    double limit = 0;
    const char *tu, *tc;
    if (lm_quota_resolve(hs->snap->state.quotas, hs->snap->state.quota_count, k, w.user, w.client,
                         &limit, &tu, &tc) == 0)
        return 0;
    int64_t now = (int64_t)broker_now_ms();
    if (k == LM_QUOTA_CONTROLLER_MUTATION_RATE) {
        /* the node's table: mutations count wherever the client's connection is */
        struct handlers_ctx *h = hs->node;
        pthread_mutex_lock(&h->mutation_lock);
        struct lm_quota_table *t = table_ready(&h->mutation_quota, h->cfg, HQUOTA_SENSORS_MAX);
        int64_t ms = t != NULL ? lm_quota_table_record(t, k, tu, tc, limit, v, now) : 0;
        pthread_mutex_unlock(&h->mutation_lock);
        return ms;
    }
    struct lm_quota_table *t = table_ready(&hs->quota, hs->node->cfg, HQUOTA_SENSORS_MAX);
    if (t == NULL)
        return 0;
    return lm_quota_table_record(t, k, tu, tc, limit, v, now);
}

int32_t h_quota_record(struct broker_req *req, int k, double bytes)
{
    int64_t ms = quota_add(req, k, bytes);
    LM_ASSERT(ms >= 0 && ms <= INT32_MAX);
    return (int32_t)ms;
}

bool h_quota_exceeded(struct broker_req *req, int k)
{
    return quota_add(req, k, 0) > 0;
}

int32_t h_request_quota(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    if (hs->snap == NULL || hs->snap->state.quota_count == 0 || req->sasl_raw)
        return 0;
    /* ClientRequestQuotaManager: a request's thread time as a percentage of one second of one
     * thread (10 ms records 1.0), so the rate over the window is the percentage of a thread */
    double pct = (double)broker_req_local_us(req) * 100.0 / 1e6;
    int64_t ms = quota_add(req, LM_QUOTA_REQUEST_PERCENTAGE, pct);
    LM_ASSERT(ms >= 0 && ms <= INT32_MAX);
    if (ms > 0) {
        broker_shard_counter_add(req->shard, BROKER_C_REQUEST_THROTTLED, 1);
        broker_req_throttle(req, (uint32_t)ms);
    }
    return (int32_t)ms;
}

void h_quota_unrecord(struct broker_req *req, int k, double bytes)
{
    (void)quota_add(req, k, -bytes); /* a throttle time for bytes taken back means nothing */
}

void hs_quota_free(struct hshard *hs)
{
    if (hs->quota.sensors != NULL)
        lm_quota_table_deinit(&hs->quota);
}
