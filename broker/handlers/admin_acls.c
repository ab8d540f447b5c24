/* DescribeAcls (29), CreateAcls (30) and DeleteAcls (31) (KIP-140) on a broker without an
 * authorizer: laminar has none (no authorizer.class.name), so, as Kafka 4.x's AclApis does when
 * `authorizer` is None, every request is answered SECURITY_DISABLED:
 *   - DescribeAcls: the top-level error with "No Authorizer is configured on the broker";
 *   - CreateAcls: one result per creation, DeleteAcls: one filter result per filter, each with
 *     "No Authorizer is configured." (CreateAclsRequest / DeleteAclsRequest.getErrorResponse
 *     of a SecurityDisabledException).
 * Kafka parses the request first: a filter or creation holding UNKNOWN (code 0) as its resource
 * type, pattern type, operation or permission type fails DescribeAclsRequest /
 * CreateAclsRequest / DeleteAclsRequest.normalizeAndValidate, and a request that fails to parse
 * closes the connection (SocketServer); the cores return LM_E_INVALID for it, which the
 * wrapper (admin_register.c) turns into a close. */
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* The UNKNOWN member of ResourceType, PatternType, AclOperation and AclPermissionType. */
#define ACL_UNKNOWN 0

static const char DESCRIBE_MESSAGE[] = "No Authorizer is configured on the broker";
static const char ALTER_MESSAGE[] = "No Authorizer is configured.";

/* Whether a filter or creation names UNKNOWN anywhere (Kafka refuses to parse it). */
static bool acl_has_unknown(int8_t resource_type, int8_t pattern_type, int8_t operation,
                            int8_t permission_type)
{
    return resource_type == ACL_UNKNOWN || pattern_type == ACL_UNKNOWN ||
           operation == ACL_UNKNOWN || permission_type == ACL_UNKNOWN;
}

int admin_describe_acls(const struct admin_env *env, int16_t version,
                        const struct kafka_describe_acls_request *rq,
                        struct kafka_describe_acls_response *rs, struct kafka_arena *a)
{
    (void)env;
    (void)a;
    LM_ASSERT(version >= ADMIN_DESCRIBE_ACLS_MIN && version <= ADMIN_DESCRIBE_ACLS_MAX);
    LM_ASSERT(rq != NULL && rs != NULL);
    if (acl_has_unknown(rq->resource_type_filter, rq->pattern_type_filter, rq->operation,
                        rq->permission_type))
        return LM_E_INVALID;
    rs->throttle_time_ms = 0;
    rs->error_code = KAFKA_SECURITY_DISABLED;
    rs->error_message = admin_kstr(DESCRIBE_MESSAGE);
    rs->resources = NULL;
    rs->resources_count = 0;
    return 0;
}

int admin_create_acls(const struct admin_env *env, int16_t version,
                      const struct kafka_create_acls_request *rq,
                      struct kafka_create_acls_response *rs, struct kafka_arena *a)
{
    (void)env;
    LM_ASSERT(version >= ADMIN_CREATE_ACLS_MIN && version <= ADMIN_CREATE_ACLS_MAX);
    LM_ASSERT(rq != NULL && rs != NULL);
    int32_t n = rq->creations_count < 0 ? 0 : rq->creations_count;
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_create_acls_request_acl_creation *c = &rq->creations[i];
        if (acl_has_unknown(c->resource_type, c->resource_pattern_type, c->operation,
                            c->permission_type))
            return LM_E_INVALID;
    }
    if (ADMIN_RESULTS(a, rs, results, n) != 0)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        rs->results[i] = (struct kafka_create_acls_response_acl_creation_result){
            .error_code = KAFKA_SECURITY_DISABLED,
            .error_message = admin_kstr(ALTER_MESSAGE),
        };
    return 0;
}

int admin_delete_acls(const struct admin_env *env, int16_t version,
                      const struct kafka_delete_acls_request *rq,
                      struct kafka_delete_acls_response *rs, struct kafka_arena *a)
{
    (void)env;
    LM_ASSERT(version >= ADMIN_DELETE_ACLS_MIN && version <= ADMIN_DELETE_ACLS_MAX);
    LM_ASSERT(rq != NULL && rs != NULL);
    int32_t n = rq->filters_count < 0 ? 0 : rq->filters_count;
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_delete_acls_request_delete_acls_filter *f = &rq->filters[i];
        if (acl_has_unknown(f->resource_type_filter, f->pattern_type_filter, f->operation,
                            f->permission_type))
            return LM_E_INVALID;
    }
    if (ADMIN_RESULTS(a, rs, filter_results, n) != 0)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++)
        rs->filter_results[i] = (struct kafka_delete_acls_response_delete_acls_filter_result){
            .error_code = KAFKA_SECURITY_DISABLED,
            .error_message = admin_kstr(ALTER_MESSAGE),
            .matching_acls = NULL,
            .matching_acls_count = 0,
        };
    return 0;
}
