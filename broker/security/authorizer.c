#include "broker/security/authorizer.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

int authz_acl_cmp(const struct authz_acl *a, const struct authz_acl *b)
{
    if (a->resource_type != b->resource_type)
        return a->resource_type < b->resource_type ? -1 : 1;
    if (a->pattern_type != b->pattern_type)
        return a->pattern_type < b->pattern_type ? -1 : 1;
    int c = strcmp(a->name, b->name);
    if (c != 0)
        return c;
    if ((c = strcmp(a->principal, b->principal)) != 0)
        return c;
    if ((c = strcmp(a->host, b->host)) != 0)
        return c;
    if (a->operation != b->operation)
        return a->operation < b->operation ? -1 : 1;
    if (a->permission != b->permission)
        return a->permission < b->permission ? -1 : 1;
    return 0;
}

/* Kafka's class names that mean "the ACL authorizer" (KRaft's StandardAuthorizer; the ZooKeeper
 * era AclAuthorizer name is accepted for the same semantics). */
static const char *const AUTHZ_CLASSES[] = {
    "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
    "kafka.security.authorizer.AclAuthorizer",
};

static int parse_bool(const char *v, bool *out)
{
    if (v == NULL || v[0] == '\0')
        return 0;
    if (strcasecmp(v, "true") == 0)
        *out = true;
    else if (strcasecmp(v, "false") == 0)
        *out = false;
    else
        return LM_E_CONFIG;
    return 0;
}

int authz_config_parse(struct authz_config *cfg, const char *class_name, const char *super_users,
                       const char *allow_everyone, const char **why)
{
    LM_ASSERT(cfg != NULL && why != NULL);
    memset(cfg, 0, sizeof(*cfg));
    *why = NULL;
    if (class_name != NULL && class_name[0] != '\0') {
        for (size_t i = 0; i < sizeof(AUTHZ_CLASSES) / sizeof(AUTHZ_CLASSES[0]); i++)
            if (strcmp(class_name, AUTHZ_CLASSES[i]) == 0)
                cfg->enabled = true;
        if (!cfg->enabled) {
            *why = "authorizer.class.name: laminar serves only "
                   "org.apache.kafka.metadata.authorizer.StandardAuthorizer";
            return LM_E_CONFIG;
        }
    }
    if (parse_bool(allow_everyone, &cfg->allow_if_no_acl) != 0) {
        *why = "allow.everyone.if.no.acl.found must be true or false";
        return LM_E_CONFIG;
    }
    /* super.users: principals separated by ';' (Kafka splits on ';' and trims each) */
    const char *p = super_users != NULL ? super_users : "";
    while (*p != '\0') {
        const char *end = strchr(p, ';');
        size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        size_t n = len;
        while (n > 0 && (*s == ' ' || *s == '\t')) {
            s++;
            n--;
        }
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
            n--;
        if (n > 0) {
            if (memchr(s, ':', n) == NULL || n > AUTHZ_PRINCIPAL_MAX) {
                *why = "super.users: each entry must be a principal such as User:admin";
                return LM_E_CONFIG;
            }
            if (cfg->super_count >= AUTHZ_SUPER_USERS_MAX) {
                *why = "super.users: more than 64 principals";
                return LM_E_CONFIG;
            }
            memcpy(cfg->super_users[cfg->super_count], s, n);
            cfg->super_users[cfg->super_count][n] = '\0';
            cfg->super_count++;
        }
        p += len;
        if (*p == ';')
            p++;
    }
    return 0;
}

bool authz_is_super(const struct authz_config *cfg, const char *principal)
{
    for (uint32_t i = 0; i < cfg->super_count; i++)
        if (strcmp(cfg->super_users[i], principal) == 0)
            return true;
    return false;
}

/* Compares acl's (type, pattern, name) with a key whose name is name[0..len). */
static int key_cmp(const struct authz_acl *acl, int8_t type, int8_t pattern, const char *name,
                   size_t len)
{
    if (acl->resource_type != type)
        return acl->resource_type < type ? -1 : 1;
    if (acl->pattern_type != pattern)
        return acl->pattern_type < pattern ? -1 : 1;
    int c = strncmp(acl->name, name, len);
    if (c != 0)
        return c;
    return acl->name[len] == '\0' ? 0 : 1; /* acl's name is longer: it sorts after */
}

/* The first index whose key is >= (type, pattern, name[0..len)). */
static size_t lower_bound(const struct authz_acl *acls, size_t n, int8_t type, int8_t pattern,
                          const char *name, size_t len)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (key_cmp(&acls[mid], type, pattern, name, len) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The first index of (type, pattern) with any name. */
static size_t type_bound(const struct authz_acl *acls, size_t n, int8_t type, int8_t pattern)
{
    return lower_bound(acls, n, type, pattern, "", 0);
}

/* What the ACLs seen so far decide. */
struct authz_verdict {
    bool found; /* some ACL applies to the resource */
    bool allow;
    bool deny;
};

static bool principal_matches(const struct authz_acl *acl, const char *principal)
{
    return strcmp(acl->principal, principal) == 0 ||
           strcmp(acl->principal, AUTHZ_USER_WILDCARD) == 0;
}

static bool host_matches(const struct authz_acl *acl, const char *host)
{
    return strcmp(acl->host, AUTHZ_WILDCARD) == 0 || (host != NULL && strcmp(acl->host, host) == 0);
}

/* Whether an ALLOW for acl_op grants op (StandardAuthorizerData's implied operations). */
static bool allow_implies(int8_t acl_op, int8_t op)
{
    if (acl_op == AUTHZ_OP_ALL || acl_op == op)
        return true;
    if (op == AUTHZ_OP_DESCRIBE)
        return acl_op == AUTHZ_OP_READ || acl_op == AUTHZ_OP_WRITE || acl_op == AUTHZ_OP_DELETE ||
               acl_op == AUTHZ_OP_ALTER;
    if (op == AUTHZ_OP_DESCRIBE_CONFIGS)
        return acl_op == AUTHZ_OP_ALTER_CONFIGS;
    return false;
}

/* Folds the ACLs of one (type, pattern, name) into v. */
static void scan_exact(const struct authz_acl *acls, size_t n, int8_t type, int8_t pattern,
                       const char *name, size_t len, const struct authz_subject *who, int8_t op,
                       struct authz_verdict *v)
{
    for (size_t i = lower_bound(acls, n, type, pattern, name, len);
         i < n && key_cmp(&acls[i], type, pattern, name, len) == 0; i++) {
        const struct authz_acl *acl = &acls[i];
        v->found = true;
        if (!principal_matches(acl, who->principal) || !host_matches(acl, who->host))
            continue;
        if (acl->permission == AUTHZ_PERM_DENY) {
            if (acl->operation == AUTHZ_OP_ALL || acl->operation == op)
                v->deny = true;
        } else if (acl->permission == AUTHZ_PERM_ALLOW && allow_implies(acl->operation, op)) {
            v->allow = true;
        }
    }
}

bool authz_allowed(const struct authz_config *cfg, const struct authz_acl *acls, size_t n,
                   const struct authz_subject *who, int8_t operation, int8_t resource_type,
                   const char *name)
{
    LM_ASSERT(cfg != NULL && who != NULL && who->principal != NULL && name != NULL);
    LM_ASSERT(n == 0 || acls != NULL);
    if (!cfg->enabled || authz_is_super(cfg, who->principal))
        return true;
    struct authz_verdict v = {0};
    size_t len = strlen(name);
    scan_exact(acls, n, resource_type, AUTHZ_PAT_LITERAL, name, len, who, operation, &v);
    if (!v.deny && strcmp(name, AUTHZ_WILDCARD) != 0)
        scan_exact(acls, n, resource_type, AUTHZ_PAT_LITERAL, AUTHZ_WILDCARD, 1, who, operation,
                   &v);
    /* prefixed ACLs: every prefix of the name, only when the type has any */
    size_t first = type_bound(acls, n, resource_type, AUTHZ_PAT_PREFIXED);
    bool any_prefixed = first < n && acls[first].resource_type == resource_type &&
                        acls[first].pattern_type == AUTHZ_PAT_PREFIXED;
    for (size_t l = 1; any_prefixed && !v.deny && l <= len; l++)
        scan_exact(acls + first, n - first, resource_type, AUTHZ_PAT_PREFIXED, name, l, who,
                   operation, &v);
    if (!v.found)
        return cfg->allow_if_no_acl;
    return v.allow && !v.deny;
}

/* Whether some entry of set[0..n) equals s (or, prefixes, starts s). */
static bool name_in(const char *const *set, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(set[i], s) == 0)
            return true;
    return false;
}

static bool prefix_denied(const char *const *deny_prefixes, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(s, deny_prefixes[i], strlen(deny_prefixes[i])) == 0)
            return true;
    return false;
}

/* Whether acl of the resource type counts for who and operation in authorizeByResourceType
 * (the operation itself or ALL; no implication). */
static bool by_type_applies(const struct authz_acl *a, const struct authz_subject *who,
                            int8_t operation, int8_t permission)
{
    return a->permission == permission && principal_matches(a, who->principal) &&
           host_matches(a, who->host) &&
           (a->operation == operation || a->operation == AUTHZ_OP_ALL);
}

bool authz_allowed_any(const struct authz_config *cfg, const struct authz_acl *acls, size_t n,
                       const struct authz_subject *who, int8_t operation, int8_t resource_type)
{
    LM_ASSERT(cfg != NULL && who != NULL && who->principal != NULL);
    /* Kafka asks authorize() about a hard-coded name first, so super users and
     * allow.everyone.if.no.acl.found behave as for any single resource */
    if (authz_allowed(cfg, acls, n, who, operation, resource_type, "hardcode"))
        return true;
    /* two passes over the type's ACLs: denies first, then each allow against them */
    size_t lo = lower_bound(acls, n, resource_type, AUTHZ_PAT_UNKNOWN, "", 0);
    size_t hi = lower_bound(acls, n, (int8_t)(resource_type + 1), AUTHZ_PAT_UNKNOWN, "", 0);
    enum { DENY_SET_MAX = 256 };
    const char *deny_lit[DENY_SET_MAX], *deny_pre[DENY_SET_MAX];
    size_t n_lit = 0, n_pre = 0;
    bool overflow = false;
    for (size_t i = lo; i < hi; i++) {
        const struct authz_acl *a = &acls[i];
        if (!by_type_applies(a, who, operation, AUTHZ_PERM_DENY))
            continue;
        if (a->pattern_type == AUTHZ_PAT_LITERAL && strcmp(a->name, AUTHZ_WILDCARD) == 0)
            return false;
        if (a->pattern_type == AUTHZ_PAT_LITERAL && n_lit < DENY_SET_MAX)
            deny_lit[n_lit++] = a->name;
        else if (a->pattern_type == AUTHZ_PAT_PREFIXED && n_pre < DENY_SET_MAX)
            deny_pre[n_pre++] = a->name;
        else
            overflow = true; /* too many denies to weigh: refuse rather than guess */
    }
    if (overflow)
        return false;
    for (size_t i = lo; i < hi; i++) {
        const struct authz_acl *a = &acls[i];
        if (!by_type_applies(a, who, operation, AUTHZ_PERM_ALLOW))
            continue;
        if (a->pattern_type == AUTHZ_PAT_LITERAL && strcmp(a->name, AUTHZ_WILDCARD) == 0)
            return true;
        if (a->pattern_type == AUTHZ_PAT_LITERAL && name_in(deny_lit, n_lit, a->name))
            continue;
        if (!prefix_denied(deny_pre, n_pre, a->name))
            return true;
    }
    return false;
}

int32_t authz_authorized_ops(const struct authz_config *cfg, const struct authz_acl *acls, size_t n,
                             const struct authz_subject *who, int8_t resource_type,
                             const char *name)
{
    /* AclEntry.supportedOperations */
    static const int8_t topic[] = {
        AUTHZ_OP_READ,  AUTHZ_OP_WRITE,    AUTHZ_OP_CREATE,           AUTHZ_OP_DELETE,
        AUTHZ_OP_ALTER, AUTHZ_OP_DESCRIBE, AUTHZ_OP_DESCRIBE_CONFIGS, AUTHZ_OP_ALTER_CONFIGS};
    static const int8_t group[] = {AUTHZ_OP_READ, AUTHZ_OP_DESCRIBE, AUTHZ_OP_DELETE};
    static const int8_t cluster[] = {AUTHZ_OP_CREATE,           AUTHZ_OP_CLUSTER_ACTION,
                                     AUTHZ_OP_DESCRIBE_CONFIGS, AUTHZ_OP_ALTER_CONFIGS,
                                     AUTHZ_OP_IDEMPOTENT_WRITE, AUTHZ_OP_ALTER,
                                     AUTHZ_OP_DESCRIBE};
    static const int8_t txn[] = {AUTHZ_OP_DESCRIBE, AUTHZ_OP_WRITE};
    const int8_t *ops = NULL;
    size_t count = 0;
    switch (resource_type) {
    case AUTHZ_RES_TOPIC:
        ops = topic, count = sizeof(topic);
        break;
    case AUTHZ_RES_GROUP:
        ops = group, count = sizeof(group);
        break;
    case AUTHZ_RES_CLUSTER:
        ops = cluster, count = sizeof(cluster);
        break;
    case AUTHZ_RES_TRANSACTIONAL_ID:
        ops = txn, count = sizeof(txn);
        break;
    default:
        return 0;
    }
    int32_t bits = 0;
    for (size_t i = 0; i < count; i++)
        if (authz_allowed(cfg, acls, n, who, ops[i], resource_type, name))
            bits |= (int32_t)1 << ops[i];
    return bits;
}

bool authz_filter_matches(const struct authz_filter *f, const struct authz_acl *acl)
{
    LM_ASSERT(f != NULL && acl != NULL);
    if (f->resource_type != AUTHZ_RES_ANY && f->resource_type != acl->resource_type)
        return false;
    if (f->pattern_type != AUTHZ_PAT_ANY && f->pattern_type != AUTHZ_PAT_MATCH &&
        f->pattern_type != acl->pattern_type)
        return false;
    if (f->name != NULL) {
        if (f->pattern_type == AUTHZ_PAT_ANY || f->pattern_type == acl->pattern_type) {
            if (strcmp(f->name, acl->name) != 0)
                return false;
        } else if (acl->pattern_type == AUTHZ_PAT_LITERAL) {
            /* MATCH: the literal of that name and the wildcard */
            if (strcmp(f->name, acl->name) != 0 && strcmp(acl->name, AUTHZ_WILDCARD) != 0)
                return false;
        } else if (strncmp(f->name, acl->name, strlen(acl->name)) != 0) {
            return false; /* MATCH: every prefix that starts the name */
        }
    }
    if (f->principal != NULL && strcmp(f->principal, acl->principal) != 0)
        return false;
    if (f->host != NULL && strcmp(f->host, acl->host) != 0)
        return false;
    if (f->operation != AUTHZ_OP_ANY && f->operation != acl->operation)
        return false;
    return f->permission == AUTHZ_PERM_ANY || f->permission == acl->permission;
}

const char *authz_binding_invalid(int8_t resource_type, int8_t pattern_type, const char *name,
                                  const char *principal, const char *host, int8_t operation,
                                  int8_t permission)
{
    if (resource_type <= AUTHZ_RES_ANY || resource_type > AUTHZ_RES_USER)
        return "Invalid resourceType";
    if (pattern_type != AUTHZ_PAT_LITERAL && pattern_type != AUTHZ_PAT_PREFIXED)
        return "Invalid patternType";
    if (operation <= AUTHZ_OP_ANY || operation > AUTHZ_OP_MAX)
        return "Invalid operation";
    if (permission != AUTHZ_PERM_ALLOW && permission != AUTHZ_PERM_DENY)
        return "Invalid permissionType";
    if (name == NULL || name[0] == '\0')
        return "Invalid empty resource name";
    if (resource_type == AUTHZ_RES_CLUSTER && strcmp(name, AUTHZ_CLUSTER_NAME) != 0)
        return "The only valid name for the CLUSTER resource is kafka-cluster";
    if (principal == NULL || strchr(principal, ':') == NULL)
        return "Could not parse principal (no colon is present separating the principal type "
               "from the principal name)";
    if (host == NULL || host[0] == '\0')
        return "Invalid empty host";
    if (strlen(name) > AUTHZ_NAME_MAX)
        return "Resource name longer than 255 bytes (laminar's bound)";
    if (strlen(principal) > AUTHZ_PRINCIPAL_MAX)
        return "Principal longer than 255 bytes (laminar's bound)";
    if (strlen(host) > AUTHZ_HOST_MAX)
        return "Host longer than 63 bytes (laminar's bound)";
    return NULL;
}

const char *authz_op_name(int8_t operation)
{
    static const char *const names[] = {
        "Unknown",
        "Any",
        "All",
        "Read",
        "Write",
        "Create",
        "Delete",
        "Alter",
        "Describe",
        "ClusterAction",
        "DescribeConfigs",
        "AlterConfigs",
        "IdempotentWrite",
        "CreateTokens",
        "DescribeTokens",
    };
    if (operation < 0 || operation > AUTHZ_OP_MAX)
        return names[0];
    return names[operation];
}
