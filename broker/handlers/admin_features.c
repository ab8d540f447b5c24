/* Feature flags (KIP-584): what ApiVersions v3+ reports in its tagged fields, and
 * UpdateFeatures (57).
 *
 * laminar speaks the protocol of a Kafka 4.1 KRaft node, so it reports metadata.version with
 * Kafka 4.1's range (3.3-IV3 = 7, Kafka 4's minimum, to 4.1-IV1 = 27, its latest production
 * level) finalized at 27. group.version is supported and finalized at 1: the consumer group
 * protocol of KIP-848 (ConsumerGroupHeartbeat, ConsumerGroupDescribe) is served. share.version
 * is supported 0-1 and finalized at 1: Kafka 4.1 serves the share group APIs of KIP-932
 * (ShareGroupHeartbeat, ShareGroupDescribe, ShareFetch, ShareAcknowledge) only at share.version
 * 1, and laminar serves them (group_share.c, share_fetch.c).
 * transaction.version is supported 0-2 (level 2 is KIP-890 part 2: EndTxn v5, Produce v12,
 * TxnOffsetCommit v5 with implicit partition adds) and finalized at the level the metadata
 * holds (LM_META_FEATURE_LEVEL records, kept in snapshots), 2 on a cluster that never set one,
 * as Kafka 4.1 formats a new cluster. Level 0 is left out of the finalized list, as Kafka does.
 *
 * UpdateFeatures may move transaction.version between 0 and 2 (a lower level needs a safe or
 * unsafe downgrade, as Kafka's FeatureControlManager asks); the two other levels are fixed:
 * only an update to the level they have succeeds, anything else is INVALID_UPDATE_VERSION,
 * with the messages Kafka gives for an unknown feature or a level outside the node's range,
 * and a plain one for a level inside the range that laminar cannot switch to. */
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "broker/meta/meta_state.h"
#include "broker/meta/meta_store.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

struct feature {
    const char *name;
    int16_t min_version, max_version;
    int16_t finalized;  /* 0: not finalized (Kafka omits level-0 features from the list) */
    bool from_metadata; /* finalized level read from the metadata image */
};

static const struct feature features[] = {
    {"group.version", 0, 1, 1, false},
    {"metadata.version", 7, 27, 27, false},
    {"share.version", 0, 1, 1, false},
    {LM_META_FEATURE_TRANSACTION_VERSION, 0, LM_META_TRANSACTION_VERSION_MAX, 0, true},
};

static const struct feature *feature_find(struct kafka_str name)
{
    for (size_t i = 0; i < LM_ARRAY_LEN(features); i++) {
        if (admin_kstr_eq(name, features[i].name))
            return &features[i];
    }
    return NULL;
}

/* finalized_level returns a feature's finalized level in the image st. */
static int16_t finalized_level(const struct feature *f, const struct lm_meta_state *st)
{
    return f->from_metadata ? lm_meta_state_transaction_version(st) : f->finalized;
}

int admin_features_fill(const struct admin_env *env, int16_t version,
                        struct kafka_api_versions_response *rs, struct kafka_arena *a)
{
    size_t n = LM_ARRAY_LEN(features);
    rs->supported_features = kafka_arena_alloc_array(a, n, sizeof(*rs->supported_features), 8);
    rs->finalized_features = kafka_arena_alloc_array(a, n, sizeof(*rs->finalized_features), 8);
    if (rs->supported_features == NULL || rs->finalized_features == NULL)
        return LM_E_NOMEM;
    struct lm_meta_snapshot *snap = env->meta != NULL ? lm_meta_store_snapshot(env->meta) : NULL;
    const struct lm_meta_state *st = snap != NULL ? &snap->state : NULL;
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
        int16_t level = finalized_level(f, st);
        if (level > 0)
            rs->finalized_features[rs->finalized_features_count++] =
                (struct kafka_api_versions_response_finalized_feature_key){
                    .name = admin_kstr(f->name),
                    .max_version_level = level,
                    .min_version_level = level,
                };
    }
    /* Kafka's epoch is the offset of the metadata record that last changed a feature; the
     * image's version only grows, so a client keeping the newest epoch keeps the newest
     * levels. */
    rs->finalized_features_epoch = st != NULL ? (int64_t)st->version : 0;
    if (snap != NULL)
        lm_meta_snapshot_release(snap);
    return 0;
}

/* Upgrade types (KIP-778): v0's allow_downgrade maps to SAFE_DOWNGRADE. */
enum { UPGRADE = 1, SAFE_DOWNGRADE = 2, UNSAFE_DOWNGRADE = 3 };

/* The outcome of one update: NONE for a no-op, else the error and its message. */
static int update_one(const struct admin_env *env,
                      const struct kafka_update_features_request_feature_update_key *u,
                      int16_t version, bool validate_only, const struct lm_meta_state *st,
                      struct kafka_arena *a, int16_t *code, struct kafka_str *msg)
{
    int32_t node = env->cfg->node_id;
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
    if (level < 0)
        level = 0; /* below 1 asks to delete the finalized feature: level 0 */
    int16_t current = f != NULL ? finalized_level(f, st) : 0;
    if (f != NULL && level == current)
        return 0; /* already at that level */
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
    if (!f->from_metadata)
        return admin_fmt(a, msg,
                         "Invalid update version %d for feature %.*s. laminar's feature levels "
                         "are fixed: %.*s stays at %d.",
                         level, name_len, u->feature.ptr, name_len, u->feature.ptr, f->finalized);
    /* transaction.version: a new level in the metadata (transactions already open keep the
     * version their client chose; new ones follow what ApiVersions reports) */
    *code = KAFKA_NONE;
    if (validate_only)
        return 0;
    struct lm_meta_record r = {.type = LM_META_FEATURE_LEVEL,
                               .feature = LM_META_FEATURE_TRANSACTION_VERSION,
                               .feature_level = level};
    int rc = admin_commit(env, &r, ADMIN_COMMIT_FEATURE, a, code, msg);
    if (rc == LM_E_NOMEM)
        return rc;
    if (rc != 0) {
        BLOG_ERROR("admin: metadata commit of %s=%d failed: %s",
                   LM_META_FEATURE_TRANSACTION_VERSION, level, lm_strerror(rc));
        *code = KAFKA_INVALID_UPDATE_VERSION;
        return admin_fmt(a, msg, "Could not write the metadata log: %s", lm_strerror(rc));
    }
    BLOG_INFO("admin: %s finalized at %d (was %d)", LM_META_FEATURE_TRANSACTION_VERSION, level,
              current);
    return 0;
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
    bool validate_only = version >= 1 && rq->validate_only;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = snap != NULL ? &snap->state : NULL;
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
            rc = update_one(env, u, version, validate_only, st, a, &res->error_code,
                            &res->error_message);
        }
        if (rc != 0)
            break;
        /* v2 has no per-feature results: the first failure is the top-level one. */
        if (version >= 2 && res->error_code != KAFKA_NONE && rs->error_code == KAFKA_NONE) {
            rs->error_code = res->error_code;
            rs->error_message = res->error_message;
        }
    }
    if (snap != NULL)
        lm_meta_snapshot_release(snap);
    return rc;
}
