/* DescribeAcls (29), CreateAcls (30) and DeleteAcls (31) (KIP-140, prefixed patterns KIP-290),
 * as Kafka 4.x's AclApis and the controller's AclControlManager answer them. The bindings are
 * cluster metadata: LM_META_ACL_CREATE / _DELETE records (KRaft's AccessControlEntryRecord and
 * RemoveAccessControlEntryRecord, each binding with a random Uuid), committed at once on a
 * single node or through the controller in a cluster (admin_commit), so every node's image and
 * therefore every node's authorizer holds the same bindings.
 *
 * Without an authorizer (no authorizer.class.name) every request is answered
 * SECURITY_DISABLED, as AclApis does when `authorizer` is None:
 *   - DescribeAcls: the top-level error with "No Authorizer is configured on the broker";
 *   - CreateAcls: one result per creation, DeleteAcls: one filter result per filter, each with
 *     "No Authorizer is configured.".
 * With one, DescribeAcls needs DESCRIBE on the cluster, CreateAcls and DeleteAcls ALTER on the
 * cluster (CLUSTER_AUTHORIZATION_FAILED otherwise). A creation equal to an existing binding
 * succeeds without a new record (AclControlManager skips it); a creation Kafka refuses
 * (AclControlManager.validateNewAcl, AclApis' checks of the CLUSTER name and an empty name) is
 * INVALID_REQUEST with Kafka's message.
 * Kafka parses the request first: a filter or creation holding UNKNOWN (code 0) as its resource
 * type, pattern type, operation or permission type fails normalizeAndValidate, and a request
 * that fails to parse closes the connection (SocketServer); the cores return LM_E_INVALID for
 * it, which the wrapper (admin_register.c) turns into a close. */
#include <string.h>
#include <sys/random.h>

#include "broker/handlers/admin_core.h"
#include "broker/security/authorizer.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* The UNKNOWN member of ResourceType, PatternType, AclOperation and AclPermissionType. */
#define ACL_UNKNOWN 0
/* More creations or filters than this in one request close the connection (each may commit a
 * record; Kafka's tools send a handful). */
#define ACL_REQUEST_ITEMS_MAX 4096

static const char DESCRIBE_MESSAGE[] = "No Authorizer is configured on the broker";
static const char ALTER_MESSAGE[] = "No Authorizer is configured.";
static const char CLUSTER_DENIED[] = "Cluster authorization failed.";

/* Whether a filter or creation names UNKNOWN anywhere (Kafka refuses to parse it). */
static bool acl_has_unknown(int8_t resource_type, int8_t pattern_type, int8_t operation,
                            int8_t permission_type)
{
    return resource_type == ACL_UNKNOWN || pattern_type == ACL_UNKNOWN ||
           operation == ACL_UNKNOWN || permission_type == ACL_UNKNOWN;
}

static struct kafka_str cluster_name(void)
{
    return admin_kstr(AUTHZ_CLUSTER_NAME);
}

/* A NUL-terminated copy of a nullable string in the arena (*out NULL for null). */
static int acl_cstr(struct kafka_arena *a, struct kafka_str s, char **out)
{
    return admin_cstr(a, s, out);
}

/* Builds the authorizer's filter from the request's fields (strings in the arena). */
static int acl_filter(struct kafka_arena *a, int8_t rtype, struct kafka_str name, int8_t ptype,
                      struct kafka_str principal, struct kafka_str host, int8_t op, int8_t perm,
                      struct authz_filter *f)
{
    char *n = NULL, *p = NULL, *h = NULL;
    if (acl_cstr(a, name, &n) != 0 || acl_cstr(a, principal, &p) != 0 || acl_cstr(a, host, &h) != 0)
        return LM_E_NOMEM;
    *f = (struct authz_filter){.resource_type = rtype,
                               .pattern_type = ptype,
                               .name = n,
                               .principal = p,
                               .host = h,
                               .operation = op,
                               .permission = perm};
    return 0;
}

int admin_describe_acls(const struct admin_env *env, int16_t version,
                        const struct kafka_describe_acls_request *rq,
                        struct kafka_describe_acls_response *rs, struct kafka_arena *a)
{
    typedef struct kafka_describe_acls_response_describe_acls_resource res_t;
    typedef struct kafka_describe_acls_response_acl_description desc_t;
    LM_ASSERT(version >= ADMIN_DESCRIBE_ACLS_MIN && version <= ADMIN_DESCRIBE_ACLS_MAX);
    LM_ASSERT(rq != NULL && rs != NULL);
    if (acl_has_unknown(rq->resource_type_filter, rq->pattern_type_filter, rq->operation,
                        rq->permission_type))
        return LM_E_INVALID;
    rs->throttle_time_ms = 0;
    rs->error_code = 0;
    rs->error_message = KAFKA_STR_NULL;
    rs->resources = NULL;
    rs->resources_count = 0;
    if (!admin_authz_on(env)) {
        rs->error_code = KAFKA_SECURITY_DISABLED;
        rs->error_message = admin_kstr(DESCRIBE_MESSAGE);
        return 0;
    }
    if (!admin_allowed(env, AUTHZ_OP_DESCRIBE, AUTHZ_RES_CLUSTER, cluster_name())) {
        rs->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        rs->error_message = admin_kstr(CLUSTER_DENIED);
        return 0;
    }
    struct authz_filter f;
    if (acl_filter(a, rq->resource_type_filter, rq->resource_name_filter, rq->pattern_type_filter,
                   rq->principal_filter, rq->host_filter, rq->operation, rq->permission_type,
                   &f) != 0)
        return LM_E_NOMEM;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    int rc = 0;
    size_t n = 0;
    for (size_t i = 0; i < st->acl_count; i++)
        n += authz_filter_matches(&f, &st->acls[i]);
    res_t *res = kafka_arena_alloc_array(a, n ? n : 1, sizeof(*res), 16);
    desc_t *desc = kafka_arena_alloc_array(a, n ? n : 1, sizeof(*desc), 16);
    if (res == NULL || desc == NULL) {
        lm_meta_snapshot_release(snap);
        return LM_E_NOMEM;
    }
    /* the image is sorted by (type, pattern, name): a resource's bindings are adjacent */
    size_t nres = 0, nd = 0;
    const struct authz_acl *prev = NULL;
    for (size_t i = 0; rc == 0 && i < st->acl_count; i++) {
        const struct authz_acl *acl = &st->acls[i];
        if (!authz_filter_matches(&f, acl))
            continue;
        struct kafka_str name, principal, host;
        if (admin_fmt(a, &name, "%s", acl->name) != 0 ||
            admin_fmt(a, &principal, "%s", acl->principal) != 0 ||
            admin_fmt(a, &host, "%s", acl->host) != 0) {
            rc = LM_E_NOMEM;
            break;
        }
        if (prev == NULL || prev->resource_type != acl->resource_type ||
            prev->pattern_type != acl->pattern_type || strcmp(prev->name, acl->name) != 0) {
            res[nres++] = (res_t){.resource_type = acl->resource_type,
                                  .resource_name = name,
                                  .pattern_type = acl->pattern_type,
                                  .acls = &desc[nd],
                                  .acls_count = 0};
        }
        desc[nd++] = (desc_t){.principal = principal,
                              .host = host,
                              .operation = acl->operation,
                              .permission_type = acl->permission};
        res[nres - 1].acls_count++;
        prev = acl;
    }
    lm_meta_snapshot_release(snap);
    rs->resources = res;
    rs->resources_count = (int32_t)nres;
    return rc;
}

/* The record of a new binding; strings in the arena. */
static int creation_record(struct kafka_arena *a,
                           const struct kafka_create_acls_request_acl_creation *c,
                           struct lm_meta_record *r)
{
    char *name = NULL, *principal = NULL, *host = NULL;
    if (admin_cstr(a, c->resource_name, &name) != 0 ||
        admin_cstr(a, c->principal, &principal) != 0 || admin_cstr(a, c->host, &host) != 0)
        return LM_E_NOMEM;
    *r = (struct lm_meta_record){.type = LM_META_ACL_CREATE,
                                 .acl_resource_type = c->resource_type,
                                 .acl_pattern_type = c->resource_pattern_type,
                                 .acl_operation = c->operation,
                                 .acl_permission = c->permission_type,
                                 .acl_name = name,
                                 .acl_principal = principal,
                                 .acl_host = host};
    return 0;
}

/* A fresh Uuid for a binding (never all zero). */
static void new_acl_id(uint8_t id[16])
{
    if (lm_meta_new_topic_id(id) != 0)
        LM_ASSERT(!"getrandom failed");
}

int admin_create_acls(const struct admin_env *env, int16_t version,
                      const struct kafka_create_acls_request *rq,
                      struct kafka_create_acls_response *rs, struct kafka_arena *a)
{
    typedef struct kafka_create_acls_response_acl_creation_result res_t;
    LM_ASSERT(version >= ADMIN_CREATE_ACLS_MIN && version <= ADMIN_CREATE_ACLS_MAX);
    LM_ASSERT(rq != NULL && rs != NULL);
    int32_t n = rq->creations_count < 0 ? 0 : rq->creations_count;
    if (n > ACL_REQUEST_ITEMS_MAX)
        return LM_E_INVALID;
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_create_acls_request_acl_creation *c = &rq->creations[i];
        if (acl_has_unknown(c->resource_type, c->resource_pattern_type, c->operation,
                            c->permission_type))
            return LM_E_INVALID;
    }
    if (ADMIN_RESULTS(a, rs, results, n) != 0)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        rs->results[i] = (res_t){.error_code = 0, .error_message = KAFKA_STR_NULL};
    if (!admin_authz_on(env)) {
        for (int32_t i = 0; i < n; i++)
            rs->results[i] = (res_t){.error_code = KAFKA_SECURITY_DISABLED,
                                     .error_message = admin_kstr(ALTER_MESSAGE)};
        return 0;
    }
    if (!admin_allowed(env, AUTHZ_OP_ALTER, AUTHZ_RES_CLUSTER, cluster_name())) {
        for (int32_t i = 0; i < n; i++)
            rs->results[i] = (res_t){.error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED,
                                     .error_message = admin_kstr(CLUSTER_DENIED)};
        return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        res_t *out = &rs->results[i];
        struct lm_meta_record r;
        if (creation_record(a, &rq->creations[i], &r) != 0)
            return LM_E_NOMEM;
        const char *bad =
            authz_binding_invalid(r.acl_resource_type, r.acl_pattern_type, r.acl_name,
                                  r.acl_principal, r.acl_host, r.acl_operation, r.acl_permission);
        if (bad != NULL) {
            out->error_code = KAFKA_INVALID_REQUEST;
            out->error_message = admin_kstr(bad);
            continue;
        }
        struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
        bool have = lm_meta_state_acl_same(&snap->state, &r) != NULL;
        lm_meta_snapshot_release(snap);
        if (have)
            continue; /* the same binding again: nothing to change */
        new_acl_id(r.acl_id);
        int rc = admin_commit(env, &r, ADMIN_COMMIT_ACL, a, &out->error_code, &out->error_message);
        if (rc == LM_E_NOMEM)
            return rc;
        if (rc == LM_E_EXISTS)
            continue; /* an equal binding earlier in this request */
        if (rc == LM_E_FULL) {
            out->error_code = KAFKA_POLICY_VIOLATION;
            if (admin_fmt(a, &out->error_message,
                          "The broker holds the most ACL bindings it keeps (%d)",
                          LM_META_ACLS_MAX) != 0)
                return LM_E_NOMEM;
        } else if (rc != 0) {
            out->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
            out->error_message = admin_kstr(lm_strerror(rc));
        }
    }
    return 0;
}

int admin_delete_acls(const struct admin_env *env, int16_t version,
                      const struct kafka_delete_acls_request *rq,
                      struct kafka_delete_acls_response *rs, struct kafka_arena *a)
{
    typedef struct kafka_delete_acls_response_delete_acls_filter_result fres_t;
    typedef struct kafka_delete_acls_response_delete_acls_matching_acl match_t;
    LM_ASSERT(version >= ADMIN_DELETE_ACLS_MIN && version <= ADMIN_DELETE_ACLS_MAX);
    LM_ASSERT(rq != NULL && rs != NULL);
    int32_t n = rq->filters_count < 0 ? 0 : rq->filters_count;
    if (n > ACL_REQUEST_ITEMS_MAX)
        return LM_E_INVALID;
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_delete_acls_request_delete_acls_filter *f = &rq->filters[i];
        if (acl_has_unknown(f->resource_type_filter, f->pattern_type_filter, f->operation,
                            f->permission_type))
            return LM_E_INVALID;
    }
    if (ADMIN_RESULTS(a, rs, filter_results, n) != 0)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        rs->filter_results[i] = (fres_t){.error_message = KAFKA_STR_NULL};
    if (!admin_authz_on(env) ||
        !admin_allowed(env, AUTHZ_OP_ALTER, AUTHZ_RES_CLUSTER, cluster_name())) {
        bool off = !admin_authz_on(env);
        for (int32_t i = 0; i < n; i++)
            rs->filter_results[i] = (fres_t){
                .error_code = off ? KAFKA_SECURITY_DISABLED : KAFKA_CLUSTER_AUTHORIZATION_FAILED,
                .error_message = admin_kstr(off ? ALTER_MESSAGE : CLUSTER_DENIED),
            };
        return 0;
    }
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    /* a binding matched by several filters is listed by each and removed once */
    bool *taken = st->acl_count ? kafka_arena_alloc_array(a, st->acl_count, sizeof(bool), 1) : NULL;
    int rc = st->acl_count && taken == NULL ? LM_E_NOMEM : 0;
    if (taken != NULL)
        memset(taken, 0, st->acl_count);
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        const struct kafka_delete_acls_request_delete_acls_filter *q = &rq->filters[i];
        fres_t *out = &rs->filter_results[i];
        struct authz_filter f;
        if (acl_filter(a, q->resource_type_filter, q->resource_name_filter, q->pattern_type_filter,
                       q->principal_filter, q->host_filter, q->operation, q->permission_type,
                       &f) != 0) {
            rc = LM_E_NOMEM;
            break;
        }
        size_t m = 0;
        for (size_t k = 0; k < st->acl_count; k++)
            m += authz_filter_matches(&f, &st->acls[k]);
        match_t *ms = kafka_arena_alloc_array(a, m ? m : 1, sizeof(*ms), 16);
        if (ms == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        out->matching_acls = ms;
        out->matching_acls_count = 0;
        for (size_t k = 0; rc == 0 && k < st->acl_count; k++) {
            const struct authz_acl *acl = &st->acls[k];
            if (!authz_filter_matches(&f, acl))
                continue;
            match_t *mt = &ms[out->matching_acls_count++];
            *mt = (match_t){.error_message = KAFKA_STR_NULL,
                            .resource_type = acl->resource_type,
                            .pattern_type = acl->pattern_type,
                            .operation = acl->operation,
                            .permission_type = acl->permission};
            if (admin_fmt(a, &mt->resource_name, "%s", acl->name) != 0 ||
                admin_fmt(a, &mt->principal, "%s", acl->principal) != 0 ||
                admin_fmt(a, &mt->host, "%s", acl->host) != 0) {
                rc = LM_E_NOMEM;
                break;
            }
            if (taken[k])
                continue;
            taken[k] = true;
            struct lm_meta_record r = {.type = LM_META_ACL_DELETE};
            memcpy(r.acl_id, acl->id, 16);
            int crc =
                admin_commit(env, &r, ADMIN_COMMIT_ACL, a, &mt->error_code, &mt->error_message);
            if (crc == LM_E_NOMEM)
                rc = crc;
            else if (crc != 0 && crc != LM_E_NOT_FOUND) {
                mt->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
                mt->error_message = admin_kstr(lm_strerror(crc));
            }
        }
    }
    lm_meta_snapshot_release(snap);
    return rc;
}
