/* ACL authorization with the semantics of Kafka's StandardAuthorizer (KIP-801; the ACL model of
 * KIP-11, prefixed patterns of KIP-290): a pure module over a sorted array of ACL bindings. It
 * owns nothing but its configuration: the bindings live in the cluster metadata image
 * (broker/meta/meta_state.h keeps them sorted with authz_acl_cmp), and every lookup is a binary
 * search by resource type, pattern type and name, so the data path pays O(log n) per literal
 * check and O(len(name) * log n) for prefixed ones, only when prefixed ACLs of the type exist.
 *
 * Decision for (principal, host, operation, resource) as StandardAuthorizerData.authorize:
 *   - a super user (super.users, "User:a;User:b") is allowed everything;
 *   - the ACLs that apply to the resource are the LITERAL ones of its exact name, the LITERAL
 *     wildcard "*" and every PREFIXED one whose name starts the resource name;
 *   - none at all: allowed only with allow.everyone.if.no.acl.found=true;
 *   - of those whose principal is the caller's or "User:*" and whose host is the caller's or
 *     "*": a DENY for the operation (or ALL) denies; otherwise an ALLOW for the operation, for
 *     ALL, or one implying it (READ, WRITE, DELETE, ALTER imply DESCRIBE; ALTER_CONFIGS implies
 *     DESCRIBE_CONFIGS) allows; anything else is denied. */
#ifndef LAMINAR_BROKER_SECURITY_AUTHORIZER_H
#define LAMINAR_BROKER_SECURITY_AUTHORIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ResourceType codes on the wire (org.apache.kafka.common.resource.ResourceType). */
enum authz_resource {
    AUTHZ_RES_UNKNOWN = 0,
    AUTHZ_RES_ANY = 1,
    AUTHZ_RES_TOPIC = 2,
    AUTHZ_RES_GROUP = 3,
    AUTHZ_RES_CLUSTER = 4,
    AUTHZ_RES_TRANSACTIONAL_ID = 5,
    AUTHZ_RES_DELEGATION_TOKEN = 6,
    AUTHZ_RES_USER = 7,
};

/* PatternType codes (KIP-290). ANY and MATCH exist only in filters. */
enum authz_pattern {
    AUTHZ_PAT_UNKNOWN = 0,
    AUTHZ_PAT_ANY = 1,
    AUTHZ_PAT_MATCH = 2,
    AUTHZ_PAT_LITERAL = 3,
    AUTHZ_PAT_PREFIXED = 4,
};

/* AclOperation codes. */
enum authz_op {
    AUTHZ_OP_UNKNOWN = 0,
    AUTHZ_OP_ANY = 1,
    AUTHZ_OP_ALL = 2,
    AUTHZ_OP_READ = 3,
    AUTHZ_OP_WRITE = 4,
    AUTHZ_OP_CREATE = 5,
    AUTHZ_OP_DELETE = 6,
    AUTHZ_OP_ALTER = 7,
    AUTHZ_OP_DESCRIBE = 8,
    AUTHZ_OP_CLUSTER_ACTION = 9,
    AUTHZ_OP_DESCRIBE_CONFIGS = 10,
    AUTHZ_OP_ALTER_CONFIGS = 11,
    AUTHZ_OP_IDEMPOTENT_WRITE = 12,
    AUTHZ_OP_CREATE_TOKENS = 13,
    AUTHZ_OP_DESCRIBE_TOKENS = 14,
    AUTHZ_OP_MAX = 14,
};

/* AclPermissionType codes. */
enum authz_perm {
    AUTHZ_PERM_UNKNOWN = 0,
    AUTHZ_PERM_ANY = 1,
    AUTHZ_PERM_DENY = 2,
    AUTHZ_PERM_ALLOW = 3,
};

/* Bounds of one binding (memory is bounded: a longer name is refused at creation). Kafka's
 * topic names stop at 249 bytes; group and transactional ids longer than 255 cannot carry ACLs
 * here. A host is an IP address in text form (IPv6 fits in 45 bytes) or "*". */
#define AUTHZ_NAME_MAX        255
#define AUTHZ_PRINCIPAL_MAX   255
#define AUTHZ_HOST_MAX        63
#define AUTHZ_WILDCARD        "*"
#define AUTHZ_USER_WILDCARD   "User:*"
#define AUTHZ_CLUSTER_NAME    "kafka-cluster"
#define AUTHZ_SUPER_USERS_MAX 64

/* One ACL binding (Kafka's AclBinding with the id of its AccessControlEntryRecord). */
struct authz_acl {
    uint8_t id[16];
    int8_t resource_type; /* enum authz_resource, never ANY/UNKNOWN */
    int8_t pattern_type;  /* LITERAL or PREFIXED */
    int8_t operation;     /* enum authz_op, never ANY/UNKNOWN */
    int8_t permission;    /* ALLOW or DENY */
    char name[AUTHZ_NAME_MAX + 1];
    char principal[AUTHZ_PRINCIPAL_MAX + 1];
    char host[AUTHZ_HOST_MAX + 1];
};

/* An AclBindingFilter: NULL strings match anything; ANY codes match anything; pattern MATCH
 * matches every pattern that would apply to a resource of that name. */
struct authz_filter {
    int8_t resource_type;
    int8_t pattern_type;
    const char *name;
    const char *principal;
    const char *host;
    int8_t operation;
    int8_t permission;
};

/* The authorizer's settings (authorizer.class.name, super.users,
 * allow.everyone.if.no.acl.found). Plain data: copy freely. */
struct authz_config {
    bool enabled;
    bool allow_if_no_acl;
    uint32_t super_count;
    char super_users[AUTHZ_SUPER_USERS_MAX][AUTHZ_PRINCIPAL_MAX + 1];
};

/* Who asks: the connection's principal ("User:alice") and client address ("127.0.0.1"). */
struct authz_subject {
    const char *principal;
    const char *host;
};

/* Total order of bindings: resource type, pattern type, name (bytewise), then principal, host,
 * operation, permission; the id does not take part (two bindings equal in all else are the
 * same ACL). */
int authz_acl_cmp(const struct authz_acl *a, const struct authz_acl *b);

/* Fills cfg from the three settings (each may be NULL: unset). class_name enables the
 * authorizer when it names Kafka's StandardAuthorizer or the older kafka.security AclAuthorizer;
 * NULL or "" leaves it off. Returns 0, or LM_E_CONFIG with *why set for another class, a
 * malformed super.users entry (no ':'), too many super users or a bad boolean. */
int authz_config_parse(struct authz_config *cfg, const char *class_name, const char *super_users,
                       const char *allow_everyone, const char **why);

/* Whether principal is one of super.users. */
bool authz_is_super(const struct authz_config *cfg, const char *principal);

/* The decision for one action on resource (type, name) over acls[0..n), sorted by
 * authz_acl_cmp. With the authorizer disabled everything is allowed. */
bool authz_allowed(const struct authz_config *cfg, const struct authz_acl *acls, size_t n,
                   const struct authz_subject *who, int8_t operation, int8_t resource_type,
                   const char *name);

/* Kafka's Authorizer.authorizeByResourceType: whether the caller may perform operation on at
 * least one resource of the type (an ALLOW not dominated by a DENY; a wildcard DENY denies). */
bool authz_allowed_any(const struct authz_config *cfg, const struct authz_acl *acls, size_t n,
                       const struct authz_subject *who, int8_t operation, int8_t resource_type);

/* Kafka's authorized-operations bit field (KIP-430: bit `code` set per operation allowed) over
 * the operations the resource type supports (AclEntry.supportedOperations). */
int32_t authz_authorized_ops(const struct authz_config *cfg, const struct authz_acl *acls, size_t n,
                             const struct authz_subject *who, int8_t resource_type,
                             const char *name);

/* Whether filter matches acl (AclBindingFilter.matches). */
bool authz_filter_matches(const struct authz_filter *f, const struct authz_acl *acl);

/* Kafka's checks of a new binding (AclApis and AclControlManager.validateNewAcl): NULL when it
 * may be created, else the message of the INVALID_REQUEST it gets. name, principal and host are
 * NUL-terminated; their lengths are checked against the bounds above. */
const char *authz_binding_invalid(int8_t resource_type, int8_t pattern_type, const char *name,
                                  const char *principal, const char *host, int8_t operation,
                                  int8_t permission);

/* Kafka's name of an operation ("Read", "Write", ...) for messages; "Unknown" otherwise. */
const char *authz_op_name(int8_t operation);

#endif
