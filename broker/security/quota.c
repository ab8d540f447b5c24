#include "broker/security/quota.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

static const char *const key_names[LM_QUOTA_KEY_COUNT] = {
    "producer_byte_rate",
    "consumer_byte_rate",
    "request_percentage",
    "controller_mutation_rate",
};

int lm_quota_key_parse(const char *name, size_t len)
{
    for (int k = 0; k < LM_QUOTA_KEY_COUNT; k++)
        if (strlen(key_names[k]) == len && memcmp(key_names[k], name, len) == 0)
            return k;
    return -1;
}

const char *lm_quota_key_name(int k)
{
    LM_ASSERT(k >= 0 && k < LM_QUOTA_KEY_COUNT);
    return key_names[k];
}

const char *lm_quota_value_invalid(int k, double value)
{
    LM_ASSERT(k >= 0 && k < LM_QUOTA_KEY_COUNT);
    if (!isfinite(value))
        return "must be a finite number";
    if (value < 0)
        return "must not be negative";
    /* QuotaConfigs: the byte rates are LONG configs, checked to within 1e-6 of a whole number
     * as ClientQuotaControlManager.validateQuotaKeyValue does; the others are DOUBLE */
    if (k == LM_QUOTA_PRODUCER_BYTE_RATE || k == LM_QUOTA_CONSUMER_BYTE_RATE) {
        if (value > 9.2e18)
            return "must be a Long value";
        double whole = (double)(int64_t)(value + 1e-6);
        if (fabs(whole - value) > 1e-6)
            return "must be a Long value";
    }
    return NULL;
}

static bool part_valid(uint8_t part, const char *name)
{
    if (part == LM_QUOTA_PART_NONE || part == LM_QUOTA_PART_DEFAULT)
        return true;
    size_t n = strnlen(name, LM_QUOTA_NAME_MAX + 1);
    return part == LM_QUOTA_PART_NAMED && n > 0 && n <= LM_QUOTA_NAME_MAX;
}

bool lm_quota_entity_valid(const struct lm_quota_entity *e)
{
    if (e->user_part > LM_QUOTA_PART_DEFAULT || e->client_part > LM_QUOTA_PART_DEFAULT)
        return false;
    if (e->user_part == LM_QUOTA_PART_NONE && e->client_part == LM_QUOTA_PART_NONE)
        return false;
    return part_valid(e->user_part, e->user) && part_valid(e->client_part, e->client);
}

static bool part_eq(uint8_t pa, const char *a, uint8_t pb, const char *b)
{
    return pa == pb && (pa != LM_QUOTA_PART_NAMED || strcmp(a, b) == 0);
}

bool lm_quota_entity_eq(const struct lm_quota_entity *a, const struct lm_quota_entity *b)
{
    return part_eq(a->user_part, a->user, b->user_part, b->user) &&
           part_eq(a->client_part, a->client, b->client_part, b->client);
}

/* Whether entry e is exactly (user_part/user, client_part/client). */
static bool entry_is(const struct lm_quota_entry *e, uint8_t up, const char *user, uint8_t cp,
                     const char *client)
{
    return part_eq(e->entity.user_part, e->entity.user, up, user) &&
           part_eq(e->entity.client_part, e->entity.client, cp, client);
}

int lm_quota_resolve(const struct lm_quota_entry *entries, size_t n, int k, const char *user,
                     const char *client, double *limit, const char **tag_user,
                     const char **tag_client)
{
    LM_ASSERT(k >= 0 && k < LM_QUOTA_KEY_COUNT);
    LM_ASSERT(user != NULL && client != NULL);
    /* KIP-55's order: (user part, client part) of each level */
    static const uint8_t levels[8][2] = {
        {LM_QUOTA_PART_NAMED, LM_QUOTA_PART_NAMED},
        {LM_QUOTA_PART_NAMED, LM_QUOTA_PART_DEFAULT},
        {LM_QUOTA_PART_NAMED, LM_QUOTA_PART_NONE},
        {LM_QUOTA_PART_DEFAULT, LM_QUOTA_PART_NAMED},
        {LM_QUOTA_PART_DEFAULT, LM_QUOTA_PART_DEFAULT},
        {LM_QUOTA_PART_DEFAULT, LM_QUOTA_PART_NONE},
        {LM_QUOTA_PART_NONE, LM_QUOTA_PART_NAMED},
        {LM_QUOTA_PART_NONE, LM_QUOTA_PART_DEFAULT},
    };
    int best = 0;
    for (size_t i = 0; i < n; i++) {
        const struct lm_quota_entry *e = &entries[i];
        if ((e->set & (1u << k)) == 0)
            continue;
        for (int l = 0; l < 8 && (best == 0 || l + 1 < best); l++) {
            if (entry_is(e, levels[l][0], user, levels[l][1], client)) {
                best = l + 1;
                *limit = e->value[k];
                break;
            }
        }
        if (best == 1)
            break;
    }
    if (best == 0)
        return 0;
    *tag_user = levels[best - 1][0] != LM_QUOTA_PART_NONE ? user : "";
    *tag_client = levels[best - 1][1] != LM_QUOTA_PART_NONE ? client : "";
    return best;
}

/* ---- the rate: Kafka's SampledStat + Rate ----------------------------------------------- */

static void rate_purge(struct lm_quota_rate *r, const struct lm_quota_window *w, int64_t now_ms)
{
    int64_t expire = (int64_t)w->samples * w->window_ms;
    for (uint32_t i = 0; i < r->used; i++) {
        if (now_ms - r->start_ms[i] >= expire) {
            r->start_ms[i] = now_ms;
            r->value[i] = 0;
        }
    }
}

void lm_quota_rate_record(struct lm_quota_rate *r, const struct lm_quota_window *w, double v,
                          int64_t now_ms)
{
    LM_ASSERT(w->samples >= 1 && w->samples <= LM_QUOTA_SAMPLES_MAX && w->window_ms > 0);
    LM_ASSERT(r->used <= w->samples && (r->used == 0 || r->current < r->used));
    if (r->used == 0) {
        r->used = 1;
        r->current = 0;
        r->start_ms[0] = now_ms;
        r->value[0] = 0;
    } else if (now_ms - r->start_ms[r->current] >= (int64_t)w->window_ms) {
        /* the current sample is complete: move to the next, reusing the oldest */
        r->current = (r->current + 1) % w->samples;
        if (r->current >= r->used)
            r->used = r->current + 1;
        r->start_ms[r->current] = now_ms;
        r->value[r->current] = 0;
    }
    r->value[r->current] += v;
}

double lm_quota_rate_measure(struct lm_quota_rate *r, const struct lm_quota_window *w,
                             int64_t now_ms, int64_t *elapsed_ms)
{
    LM_ASSERT(w->samples >= 1 && w->samples <= LM_QUOTA_SAMPLES_MAX && w->window_ms > 0);
    rate_purge(r, w, now_ms);
    double total = 0;
    int64_t oldest = now_ms;
    for (uint32_t i = 0; i < r->used; i++) {
        total += r->value[i];
        if (r->start_ms[i] < oldest)
            oldest = r->start_ms[i];
    }
    /* Rate.windowSize: the time since the oldest sample began, at least samples - 1 windows,
     * so a new sensor does not read a burst as a huge rate */
    int64_t elapsed = now_ms - oldest;
    int64_t full = elapsed / w->window_ms;
    int64_t min_full = (int64_t)w->samples - 1;
    if (full < min_full)
        elapsed += (min_full - full) * (int64_t)w->window_ms;
    if (elapsed <= 0)
        elapsed = w->window_ms;
    if (elapsed_ms != NULL)
        *elapsed_ms = elapsed;
    return total * 1000.0 / (double)elapsed;
}

int64_t lm_quota_throttle_ms(double rate, double limit, int64_t elapsed_ms, int64_t cap_ms)
{
    LM_ASSERT(elapsed_ms > 0 && cap_ms >= 0);
    if (rate <= limit)
        return 0;
    if (limit <= 0)
        return cap_ms;
    double t = (rate - limit) / limit * (double)elapsed_ms;
    if (!(t < (double)cap_ms))
        return cap_ms;
    return (int64_t)llround(t);
}

/* ---- the sensor table -------------------------------------------------------------------- */

int lm_quota_table_init(struct lm_quota_table *t, size_t cap, struct lm_quota_window w)
{
    memset(t, 0, sizeof(*t));
    if (cap == 0 || w.samples < 1 || w.samples > LM_QUOTA_SAMPLES_MAX || w.window_ms == 0)
        return LM_E_INVALID;
    t->sensors = calloc(cap, sizeof(*t->sensors));
    if (t->sensors == NULL)
        return LM_E_NOMEM;
    t->cap = cap;
    t->w = w;
    return 0;
}

void lm_quota_table_deinit(struct lm_quota_table *t)
{
    free(t->sensors);
    memset(t, 0, sizeof(*t));
}

/* FNV-1a over the key and both names (never 0: 0 marks a free slot). */
static uint64_t sensor_hash(int k, const char *user, const char *client)
{
    uint64_t h = 1469598103934665603ull;
    h = (h ^ (uint64_t)(k + 1)) * 1099511628211ull;
    for (const char *p = user; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull; /* separator: ("ab","c") differs from ("a","bc") */
    for (const char *p = client; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return h != 0 ? h : 1;
}

static bool sensor_live(const struct lm_quota_sensor *s, int64_t now_ms)
{
    return s->hash != 0 && now_ms - s->last_ms < LM_QUOTA_SENSOR_IDLE_MS;
}

static bool sensor_is(const struct lm_quota_sensor *s, uint64_t h, int k, const char *user,
                      const char *client)
{
    return s->hash == h && s->key == k && strcmp(s->user, user) == 0 &&
           strcmp(s->client, client) == 0;
}

/* name, or its first LM_QUOTA_NAME_MAX bytes copied into buf */
static const char *name_cut(const char *name, char buf[LM_QUOTA_NAME_MAX + 1])
{
    size_t n = strnlen(name, LM_QUOTA_NAME_MAX + 1);
    if (n <= LM_QUOTA_NAME_MAX)
        return name;
    memcpy(buf, name, LM_QUOTA_NAME_MAX);
    buf[LM_QUOTA_NAME_MAX] = '\0';
    return buf;
}

const struct lm_quota_sensor *lm_quota_table_find(const struct lm_quota_table *t, int k,
                                                  const char *tag_user, const char *tag_client,
                                                  int64_t now_ms)
{
    char ub[LM_QUOTA_NAME_MAX + 1], cb[LM_QUOTA_NAME_MAX + 1];
    tag_user = name_cut(tag_user, ub);
    tag_client = name_cut(tag_client, cb);
    uint64_t h = sensor_hash(k, tag_user, tag_client);
    for (size_t i = 0; i < t->cap; i++)
        if (sensor_live(&t->sensors[i], now_ms) &&
            sensor_is(&t->sensors[i], h, k, tag_user, tag_client))
            return &t->sensors[i];
    return NULL;
}

int64_t lm_quota_table_record(struct lm_quota_table *t, int k, const char *tag_user,
                              const char *tag_client, double limit, double v, int64_t now_ms)
{
    LM_ASSERT(t->sensors != NULL && t->cap > 0);
    LM_ASSERT(k >= 0 && k < LM_QUOTA_KEY_COUNT);
    char ub[LM_QUOTA_NAME_MAX + 1], cb[LM_QUOTA_NAME_MAX + 1];
    tag_user = name_cut(tag_user, ub);
    tag_client = name_cut(tag_client, cb);
    uint64_t h = sensor_hash(k, tag_user, tag_client);
    struct lm_quota_sensor *s = NULL, *spare = NULL;
    for (size_t i = 0; i < t->cap && s == NULL; i++) {
        struct lm_quota_sensor *c = &t->sensors[i];
        if (!sensor_live(c, now_ms)) {
            if (spare == NULL || sensor_live(spare, now_ms))
                spare = c;
            continue;
        }
        if (sensor_is(c, h, k, tag_user, tag_client))
            s = c;
        else if (spare == NULL || (sensor_live(spare, now_ms) && c->last_ms < spare->last_ms))
            spare = c;
    }
    if (s == NULL) {
        LM_ASSERT(spare != NULL);
        if (sensor_live(spare, now_ms))
            t->evictions++;
        s = spare;
        memset(s, 0, sizeof(*s));
        s->hash = h;
        s->key = (uint8_t)k;
        memcpy(s->user, tag_user, strlen(tag_user) + 1);
        memcpy(s->client, tag_client, strlen(tag_client) + 1);
    }
    s->last_ms = now_ms;
    lm_quota_rate_record(&s->rate, &t->w, v, now_ms);
    int64_t elapsed = 0;
    double rate = lm_quota_rate_measure(&s->rate, &t->w, now_ms, &elapsed);
    /* Kafka bounds a request-time throttle by one quota window (ClientRequestQuotaManager's
     * maxThrottleTimeMs); byte and mutation rates only by the int32 field */
    int64_t cap =
        k == LM_QUOTA_REQUEST_PERCENTAGE ? (int64_t)t->w.window_ms : LM_QUOTA_THROTTLE_MAX_MS;
    return lm_quota_throttle_ms(rate, limit, elapsed, cap);
}
