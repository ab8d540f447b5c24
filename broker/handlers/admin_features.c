/* Feature flags (KIP-584): what ApiVersions v3+ reports in its tagged fields, and
 * UpdateFeatures (57).
 *
 * laminar speaks the protocol of a Kafka 4.1 KRaft node, so it reports metadata.version with
 * Kafka 4.1's range (3.3-IV3 = 7, Kafka 4's minimum, to 4.1-IV1 = 27, its latest production
 * level) finalized at 27. group.version is supported and finalized at 1: the consumer group
 * protocol of KIP-848 (ConsumerGroupHeartbeat, ConsumerGroupDescribe) is served.
 * transaction.version is reported supported at level 0 only and not finalized, because laminar
 * does not serve what level 2 needs (KIP-890 part 2: Produce v12, EndTxn v5); a client seeing it
 * unfinalized keeps the older protocol, as against a Kafka cluster that never finalized it.
 *
 * The levels are fixed: UpdateFeatures succeeds only for an update to the level a feature
 * already has (no change), and answers anything else INVALID_UPDATE_VERSION, with the messages
 * Kafka's FeatureControlManager gives for an unknown feature or a level outside the node's
 * range, and a plain one for a level inside the range that laminar cannot switch to. */
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

struct feature {
    const char *name;
    int16_t min_version, max_version;
    int16_t finalized; /* 0: not finalized (Kafka omits level-0 features from the list) */
};

static const struct feature features[] = {
    {"group.version", 0, 1, 1},
    {"metadata.version", 7, 27, 27},
    {"transaction.version", 0, 0, 0},
};

/* Features never change, so their epoch never does. Kafka's epoch is the offset of the
 * metadata record that last changed them; 0 stands for "set when the node was formatted". */
#define FEATURES_EPOCH 0

static const struct feature *feature_find(struct kafka_str name)
{
    for (size_t i = 0; i < LM_ARRAY_LEN(features); i++) {
        if (admin_kstr_eq(name, features[i].name))
            return &features[i];
    }
    return NULL;
}

int admin_features_fill(const struct admin_env *env, int16_t version,
                        struct kafka_api_versions_response *rs, struct kafka_arena *a)
{
    (void)env;
    size_t n = LM_ARRAY_LEN(features);
    rs->supported_features = kafka_arena_alloc_array(a, n, sizeof(*rs->supported_features), 8);
    rs->finalized_features = kafka_arena_alloc_array(a, n, sizeof(*rs->finalized_features), 8);
    if (rs->supported_features == NULL || rs->finalized_features == NULL)
        return LM_E_NOMEM;
    rs->supported_features_count = 0;
    rs->finalized_features_count = 0;
    for (size_t i = 0; i < n; i++) {
        const struct feature *f = &features[i];
        int16_t min = f->min_version;
        /* Clients before ApiVersions v4 reject a supported range starting at 0 (KAFKA-17011):
         * Kafka sends them such a range from 1, and leaves out one that is 0-0. */
        if (version < 4 && min == 0) {
            if (f->max_version == 0)
                continue;
            min = 1;
        }
        rs->supported_features[rs->supported_features_count++] =
            (struct kafka_api_versions_response_supported_feature_key){
                .name = admin_kstr(f->name),
                .min_version = min,
                .max_version = f->max_version,
            };
        if (f->finalized > 0)
            rs->finalized_features[rs->finalized_features_count++] =
                (struct kafka_api_versions_response_finalized_feature_key){
                    .name = admin_kstr(f->name),
                    .max_version_level = f->finalized,
                    .min_version_level = f->finalized,
                };
    }
    rs->finalized_features_epoch = FEATURES_EPOCH;
    return 0;
}

/* Upgrade types (KIP-778): v0's allow_downgrade maps to SAFE_DOWNGRADE. */
enum { UPGRADE = 1, SAFE_DOWNGRADE = 2, UNSAFE_DOWNGRADE = 3 };

/* The outcome of one update: NONE for a no-op, else the error and its message. */
static int update_one(const struct kafka_update_features_request_feature_update_key *u,
                      int16_t version, int32_t node, struct kafka_arena *a, int16_t *code,
                      struct kafka_str *msg)
{
    *code = KAFKA_NONE;
    *msg = KAFKA_STR_NULL;
    const struct feature *f = feature_find(u->feature);
    int8_t type = version >= 1 ? u->upgrade_type : (u->allow_downgrade ? SAFE_DOWNGRADE : UPGRADE);
    int16_t level = u->max_version_level;
    int name_len = u->feature.len > 0 ? u->feature.len : 0;
    if (type < UPGRADE || type > UNSAFE_DOWNGRADE) {
        *code = KAFKA_INVALID_UPDATE_VERSION;
        return admin_fmt(a, msg, "Unknown upgrade type %d for feature %.*s", type, name_len,
                         u->feature.ptr);
    }
    if (f != NULL && level == f->finalized)
        return 0; /* already at that level */
    int16_t current = f != NULL ? f->finalized : 0;
    if (level < current && type == UPGRADE) {
        *code = KAFKA_INVALID_UPDATE_VERSION;
        return admin_fmt(a, msg,
                         "Invalid update version %d for feature %.*s. Can't downgrade the "
                         "version of this feature without setting the upgrade type to either "
                         "safe or unsafe downgrade.",
                         level, name_len, u->feature.ptr);
    }
    *code = KAFKA_INVALID_UPDATE_VERSION;
    if (f == NULL)
        return admin_fmt(a, msg,
                         "Invalid update version %d for feature %.*s. Local controller %d does "
                         "not support this feature.",
                         level, name_len, u->feature.ptr, node);
    if (level < f->min_version || level > f->max_version)
        return admin_fmt(a, msg,
                         "Invalid update version %d for feature %.*s. Local controller %d only "
                         "supports versions %d-%d",
                         level, name_len, u->feature.ptr, node, f->min_version, f->max_version);
    return admin_fmt(a, msg,
                     "Invalid update version %d for feature %.*s. laminar's feature levels "
                     "are fixed: %.*s stays at %d.",
                     level, name_len, u->feature.ptr, name_len, u->feature.ptr, f->finalized);
}

int admin_update_features(const struct admin_env *env, int16_t version,
                          const struct kafka_update_features_request *rq,
                          struct kafka_update_features_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(env->cfg != NULL);
    LM_ASSERT(version >= ADMIN_UPDATE_FEATURES_MIN && version <= ADMIN_UPDATE_FEATURES_MAX);
    int32_t n = rq->feature_updates_count > 0 ? rq->feature_updates_count : 0;
    if (ADMIN_RESULTS(a, rs, results, n) != 0)
        return LM_E_NOMEM;
    rs->error_code = KAFKA_NONE;
    rs->error_message = KAFKA_STR_NULL;
    bool *dup = NULL;
    int rc = admin_mark_duplicate_names(a, n > 0 ? &rq->feature_updates[0].feature : NULL,
                                        sizeof(rq->feature_updates[0]), n, &dup);
    if (rc != 0)
        return rc;
    /* ControllerApis.handleUpdateFeatures: ALTER on the cluster */
    bool denied =
        !admin_allowed(env, AUTHZ_OP_ALTER, AUTHZ_RES_CLUSTER, admin_kstr(AUTHZ_CLUSTER_NAME));
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_update_features_request_feature_update_key *u = &rq->feature_updates[i];
        struct kafka_update_features_response_updatable_feature_result *res = &rs->results[i];
        res->feature = u->feature;
        if (denied) {
            res->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
            res->error_message = KAFKA_STR_NULL;
        } else if (dup[i]) {
            res->error_code = KAFKA_INVALID_REQUEST;
            rc = admin_fmt(a, &res->error_message, "Feature %.*s was specified more than once.",
                           u->feature.len > 0 ? u->feature.len : 0, u->feature.ptr);
        } else {
            rc =
                update_one(u, version, env->cfg->node_id, a, &res->error_code, &res->error_message);
        }
        if (rc != 0)
            return rc;
        /* v2 has no per-feature results: the first failure is the top-level one. */
        if (version >= 2 && res->error_code != KAFKA_NONE && rs->error_code == KAFKA_NONE) {
            rs->error_code = res->error_code;
            rs->error_message = res->error_message;
        }
    }
    return 0;
}
