/* Client quotas (KIP-13 byte rates, KIP-55 user and client-id entities, KIP-546 the admin
 * API's keys): a pure module with three parts.
 *
 *   - Entities and their precedence. A quota is set on a user, a client id, or a user and a
 *     client id together, each part either named or the default ("<default>"). For a request of
 *     (user u, client c) the first of these that holds the key wins, as Kafka's
 *     DefaultQuotaCallback:
 *        1 /users/u/clients/c         2 /users/u/clients/<default>   3 /users/u
 *        4 /users/<default>/clients/c 5 /users/<default>/clients/<default>
 *        6 /users/<default>           7 /clients/c                    8 /clients/<default>
 *     The sensor the bytes count against is named by the parts of the winning entity: the
 *     user for a user level, the client id for a client level (so /users/<default> gives every
 *     user a sensor of its own, limited by the default).
 *   - Rate measurement as Kafka's Rate over a SampledStat: `samples` samples of `window_ms`
 *     each (quota.window.num = 11, quota.window.size.seconds = 1); a sample older than
 *     samples * window_ms is reset; the rate is the sum of the samples over the time since the
 *     oldest sample began, at least (samples - 1) whole windows.
 *   - Throttle time as Kafka's QuotaUtils.throttleTime: a rate above the quota asks the client
 *     to wait (rate - quota) / quota * window, which is how long the measured window must grow
 *     for the rate to fall to the quota. Kafka bounds only request-time throttles
 *     (ClientRequestQuotaManager); byte-rate throttles are not bounded, so here only by the
 *     int32 throttle_time_ms field.
 *
 * The sensors live in a bounded table (lm_quota_table): least recently used ones are reused
 * when it is full, and a sensor unused for an hour (Kafka's inactive sensor expiry) counts as
 * empty. Nothing here reads a clock: the caller passes now_ms. */
#ifndef LAMINAR_BROKER_SECURITY_QUOTA_H
#define LAMINAR_BROKER_SECURITY_QUOTA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The quota keys (ClientQuotaEntity's configs, KIP-546). */
enum lm_quota_key {
    LM_QUOTA_PRODUCER_BYTE_RATE = 0,
    LM_QUOTA_CONSUMER_BYTE_RATE = 1,
    LM_QUOTA_REQUEST_PERCENTAGE = 2,
    LM_QUOTA_CONTROLLER_MUTATION_RATE = 3,
    LM_QUOTA_KEY_COUNT = 4,
};

/* How one part (user or client id) of an entity is given. */
enum lm_quota_part {
    LM_QUOTA_PART_NONE = 0,    /* the entity has no such part */
    LM_QUOTA_PART_NAMED = 1,   /* a name */
    LM_QUOTA_PART_DEFAULT = 2, /* the default (a null name on the wire) */
};

#define LM_QUOTA_NAME_MAX    255 /* bytes of a user or client-id name */
#define LM_QUOTA_SAMPLES_MAX 64
/* Kafka's ClientQuotaManager drops a sensor idle this long (InactiveSensorExpirationTimeSeconds) */
#define LM_QUOTA_SENSOR_IDLE_MS (3600 * 1000)

struct lm_quota_entity {
    uint8_t user_part, client_part; /* enum lm_quota_part */
    char user[LM_QUOTA_NAME_MAX + 1];
    char client[LM_QUOTA_NAME_MAX + 1];
};

/* The quotas set on one entity: value[k] counts only when bit k of set is on. */
struct lm_quota_entry {
    struct lm_quota_entity entity;
    uint8_t set;
    double value[LM_QUOTA_KEY_COUNT];
};

/* The key named name (len bytes), or -1 for an unknown one. */
int lm_quota_key_parse(const char *name, size_t len);
/* Kafka's name of key k ("producer_byte_rate", ...). */
const char *lm_quota_key_name(int k);
/* Whether value is acceptable for key k: finite, not negative, and for the byte rates (LONG
 * configs in Kafka's QuotaConfigs) a whole number as ClientQuotaControlManager checks it.
 * NULL when acceptable, else why not. */
const char *lm_quota_value_invalid(int k, double value);
/* Whether the entity is well formed: at least one part, names within LM_QUOTA_NAME_MAX. */
bool lm_quota_entity_valid(const struct lm_quota_entity *e);
/* Whether a and b are the same entity. */
bool lm_quota_entity_eq(const struct lm_quota_entity *a, const struct lm_quota_entity *b);

/* What governs key k for a request of (user, client) (either may be "" but not NULL): the
 * precedence level that matched (1..8 above), the quota in *limit and the sensor's name parts
 * in *tag_user / *tag_client (borrowed from user / client, or ""), or 0 when no entity holds
 * the key (unlimited). */
int lm_quota_resolve(const struct lm_quota_entry *entries, size_t n, int k, const char *user,
                     const char *client, double *limit, const char **tag_user,
                     const char **tag_client);

struct lm_quota_window {
    uint32_t samples;   /* quota.window.num, 1..LM_QUOTA_SAMPLES_MAX */
    uint32_t window_ms; /* quota.window.size.seconds * 1000, > 0 */
};

/* A rate over the last window.samples windows (Kafka's Rate with a SampledStat). */
struct lm_quota_rate {
    int64_t start_ms[LM_QUOTA_SAMPLES_MAX]; /* when each sample began */
    double value[LM_QUOTA_SAMPLES_MAX];
    uint32_t used;    /* samples begun so far (at most w.samples) */
    uint32_t current; /* the sample taking values */
};

/* Adds v at now_ms. */
void lm_quota_rate_record(struct lm_quota_rate *r, const struct lm_quota_window *w, double v,
                          int64_t now_ms);
/* The rate per second at now_ms; *elapsed_ms (may be NULL) gets the window it was measured over. */
double lm_quota_rate_measure(struct lm_quota_rate *r, const struct lm_quota_window *w,
                             int64_t now_ms, int64_t *elapsed_ms);
/* Kafka's throttle time for a rate measured over elapsed_ms against limit: 0 when rate <=
 * limit, else round((rate - limit) / limit * elapsed_ms), at most cap_ms. */
int64_t lm_quota_throttle_ms(double rate, double limit, int64_t elapsed_ms, int64_t cap_ms);

/* A sensor: the rate of one key for one (user tag, client tag). */
struct lm_quota_sensor {
    uint64_t hash; /* of key, user and client; 0: unused slot */
    int64_t last_ms;
    uint8_t key;
    char user[LM_QUOTA_NAME_MAX + 1];
    char client[LM_QUOTA_NAME_MAX + 1];
    struct lm_quota_rate rate;
};

/* A bounded set of sensors. */
struct lm_quota_table {
    struct lm_quota_sensor *sensors; /* owned, cap of them */
    size_t cap;
    struct lm_quota_window w;
    uint64_t evictions; /* sensors reused while still active (the table was full) */
};

/* Allocates cap sensors (cap >= 1). Returns 0, LM_E_INVALID or LM_E_NOMEM. */
int lm_quota_table_init(struct lm_quota_table *t, size_t cap, struct lm_quota_window w);
void lm_quota_table_deinit(struct lm_quota_table *t);
/* Records v for key k of the sensor (tag_user, tag_client; names past LM_QUOTA_NAME_MAX bytes
 * are cut there) at now_ms and returns the throttle
 * time its rate asks for against limit (0 when within it), as ClientQuotaManager's
 * recordAndGetThrottleTimeMs. A new sensor takes an empty or expired slot, else the least
 * recently used one. */
int64_t lm_quota_table_record(struct lm_quota_table *t, int k, const char *tag_user,
                              const char *tag_client, double limit, double v, int64_t now_ms);
/* The most lm_quota_table_record returns (throttle_time_ms is an int32 on the wire). */
#define LM_QUOTA_THROTTLE_MAX_MS INT32_MAX
/* The sensor of (k, tag_user, tag_client), or NULL (for tests and metrics). */
const struct lm_quota_sensor *lm_quota_table_find(const struct lm_quota_table *t, int k,
                                                  const char *tag_user, const char *tag_client,
                                                  int64_t now_ms);

#endif
