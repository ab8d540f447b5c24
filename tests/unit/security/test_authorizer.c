/* The ACL authorizer (broker/security/authorizer.h) over bindings held the way the broker holds
 * them: applied as LM_META_ACL_CREATE / _DELETE records to a metadata image
 * (broker/meta/meta_state.h), which keeps them sorted. Covers Kafka's StandardAuthorizer matrix:
 * literal, wildcard and prefixed patterns, ALLOW and DENY (DENY wins), the User:* principal,
 * hosts, implied operations, super users, allow.everyone.if.no.acl.found, resource types kept
 * apart; AclBindingFilter matching (ANY, MATCH); authorizeByResourceType; the validation of new
 * bindings; the record encoding and the image's bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/meta/meta_state.h"
#include "broker/security/authorizer.h"
#include "common/lm_err.h"

static struct lm_meta_state g_st;
static uint8_t g_next_id = 1;

static int setup(void **state)
{
    (void)state;
    lm_meta_state_init(&g_st);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lm_meta_state_deinit(&g_st);
    return 0;
}

static struct lm_meta_record acl_rec(int8_t type, int8_t pattern, const char *name,
                                     const char *principal, const char *host, int8_t op,
                                     int8_t perm)
{
    struct lm_meta_record r = {.type = LM_META_ACL_CREATE,
                               .acl_resource_type = type,
                               .acl_pattern_type = pattern,
                               .acl_operation = op,
                               .acl_permission = perm,
                               .acl_name = name,
                               .acl_principal = principal,
                               .acl_host = host};
    r.acl_id[0] = g_next_id++;
    r.acl_id[15] = 0x5a;
    return r;
}

/* Adds a binding through an encoded record, as the metadata log and controller carry it. */
static void add(int8_t type, int8_t pattern, const char *name, const char *principal,
                const char *host, int8_t op, int8_t perm)
{
    struct lm_meta_record r = acl_rec(type, pattern, name, principal, host, op, perm);
    uint8_t buf[1024];
    int n = lm_meta_record_encode(&r, buf, sizeof(buf));
    assert_true(n > 0);
    assert_int_equal((size_t)n, lm_meta_record_size(&r));
    struct lm_meta_record d;
    struct lm_config_entry *cfg = NULL;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &cfg), 0);
    assert_int_equal(d.type, LM_META_ACL_CREATE);
    assert_memory_equal(d.acl_id, r.acl_id, 16);
    assert_string_equal(d.acl_name, name);
    assert_string_equal(d.acl_principal, principal);
    assert_string_equal(d.acl_host, host);
    assert_int_equal(lm_meta_state_apply(&g_st, &d), 0);
    lm_meta_record_free(&d);
}

static struct authz_config on(void)
{
    struct authz_config c;
    const char *why = NULL;
    assert_int_equal(authz_config_parse(&c,
                                        "org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                                        "User:admin", NULL, &why),
                     0);
    return c;
}

static bool can(const struct authz_config *c, const char *principal, const char *host, int8_t op,
                int8_t type, const char *name)
{
    struct authz_subject who = {.principal = principal, .host = host};
    return authz_allowed(c, g_st.acls, g_st.acl_count, &who, op, type, name);
}

#define ALICE "User:alice"
#define BOB   "User:bob"
#define LH    "127.0.0.1"

static void test_disabled_super_and_no_acl(void **state)
{
    (void)state;
    struct authz_config off;
    const char *why = NULL;
    assert_int_equal(authz_config_parse(&off, NULL, NULL, NULL, &why), 0);
    assert_false(off.enabled);
    assert_true(can(&off, BOB, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "t"));
    struct authz_config c = on();
    /* no ACL on the resource: denied (allow.everyone.if.no.acl.found defaults to false) */
    assert_false(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "t"));
    assert_true(can(&c, "User:admin", LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "t"));
    c.allow_if_no_acl = true;
    assert_true(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "t"));
    /* some ACL on the resource, none for bob: denied even with allow.everyone */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", ALICE, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_false(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "t"));
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "t"));
    /* a super user passes a DENY too */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", "User:admin", "*", AUTHZ_OP_ALL, AUTHZ_PERM_DENY);
    assert_true(can(&c, "User:admin", LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "t"));
}

static void test_literal_ops_and_implication(void **state)
{
    (void)state;
    struct authz_config c = on();
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "orders", ALICE, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "orders"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "orders"));
    assert_false(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "orders"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "orders2"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "order"));
    /* READ, WRITE, DELETE, ALTER imply DESCRIBE; CREATE does not */
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, "orders"));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "c", ALICE, "*", AUTHZ_OP_CREATE, AUTHZ_PERM_ALLOW);
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, "c"));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "d", ALICE, "*", AUTHZ_OP_DELETE, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, "d"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "d"));
    /* ALTER_CONFIGS implies DESCRIBE_CONFIGS, not the other way */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "cfg", ALICE, "*", AUTHZ_OP_ALTER_CONFIGS,
        AUTHZ_PERM_ALLOW);
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "cfg", BOB, "*", AUTHZ_OP_DESCRIBE_CONFIGS,
        AUTHZ_PERM_ALLOW);
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_DESCRIBE_CONFIGS, AUTHZ_RES_TOPIC, "cfg"));
    assert_false(can(&c, BOB, LH, AUTHZ_OP_ALTER_CONFIGS, AUTHZ_RES_TOPIC, "cfg"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC, "cfg"));
    /* ALL allows everything */
    add(AUTHZ_RES_GROUP, AUTHZ_PAT_LITERAL, "g", BOB, "*", AUTHZ_OP_ALL, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_GROUP, "g"));
    assert_true(can(&c, BOB, LH, AUTHZ_OP_DELETE, AUTHZ_RES_GROUP, "g"));
    assert_true(can(&c, BOB, LH, AUTHZ_OP_DESCRIBE, AUTHZ_RES_GROUP, "g"));
    /* resource types are apart: a group ACL says nothing of a topic of the same name */
    assert_false(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "g"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_GROUP, "orders"));
}

static void test_wildcard_prefixed_and_deny(void **state)
{
    (void)state;
    struct authz_config c = on();
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "pre-", ALICE, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "pre-x"));
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "pre-"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "pre"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "xpre-x"));
    /* a literal "pre-" is no prefix: "pre-y" is not covered by it */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "lit-", BOB, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, BOB, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "lit-"));
    assert_false(can(&c, BOB, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "lit-y"));
    /* DENY on a longer prefix beats the ALLOW */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "pre-secret", ALICE, "*", AUTHZ_OP_WRITE,
        AUTHZ_PERM_DENY);
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "pre-secret-1"));
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, "pre-public"));
    /* the literal wildcard applies to every name of the type */
    add(AUTHZ_RES_GROUP, AUTHZ_PAT_LITERAL, "*", "User:*", "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_GROUP, "any-group"));
    assert_true(can(&c, "User:carol", LH, AUTHZ_OP_DESCRIBE, AUTHZ_RES_GROUP, "x"));
    /* DENY ALL for bob on one group beats the wildcard ALLOW; DENY READ leaves DELETE alone */
    add(AUTHZ_RES_GROUP, AUTHZ_PAT_LITERAL, "closed", BOB, "*", AUTHZ_OP_ALL, AUTHZ_PERM_DENY);
    assert_false(can(&c, BOB, LH, AUTHZ_OP_READ, AUTHZ_RES_GROUP, "closed"));
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_GROUP, "closed"));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "both", ALICE, "*", AUTHZ_OP_ALL, AUTHZ_PERM_ALLOW);
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "both", ALICE, "*", AUTHZ_OP_READ, AUTHZ_PERM_DENY);
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "both"));
    assert_true(can(&c, ALICE, LH, AUTHZ_OP_DELETE, AUTHZ_RES_TOPIC, "both"));
    /* DENY through the User:* principal and the "*" name */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "*", "User:*", "*", AUTHZ_OP_ALTER, AUTHZ_PERM_DENY);
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_ALTER, AUTHZ_RES_TOPIC, "both"));
}

static void test_hosts(void **state)
{
    (void)state;
    struct authz_config c = on();
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "h", ALICE, "10.0.0.1", AUTHZ_OP_READ,
        AUTHZ_PERM_ALLOW);
    assert_true(can(&c, ALICE, "10.0.0.1", AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "h"));
    assert_false(can(&c, ALICE, LH, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "h"));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "h", ALICE, "10.0.0.1", AUTHZ_OP_READ, AUTHZ_PERM_DENY);
    assert_false(can(&c, ALICE, "10.0.0.1", AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "h"));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "h", BOB, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_true(can(&c, BOB, "192.0.2.7", AUTHZ_OP_READ, AUTHZ_RES_TOPIC, "h"));
}

static void test_filters(void **state)
{
    (void)state;
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "foo", ALICE, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "*", BOB, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "fo", BOB, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_DENY);
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "bar", BOB, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_ALLOW);
    add(AUTHZ_RES_GROUP, AUTHZ_PAT_LITERAL, "foo", ALICE, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    struct authz_filter f = {.resource_type = AUTHZ_RES_ANY,
                             .pattern_type = AUTHZ_PAT_ANY,
                             .operation = AUTHZ_OP_ANY,
                             .permission = AUTHZ_PERM_ANY};
    size_t n = 0;
    for (size_t i = 0; i < g_st.acl_count; i++)
        n += authz_filter_matches(&f, &g_st.acls[i]);
    assert_int_equal(n, 5);
    /* MATCH "foo": the literal foo, the wildcard, the prefix "fo"; not "bar" */
    f.resource_type = AUTHZ_RES_TOPIC;
    f.pattern_type = AUTHZ_PAT_MATCH;
    f.name = "foo";
    n = 0;
    for (size_t i = 0; i < g_st.acl_count; i++)
        n += authz_filter_matches(&f, &g_st.acls[i]);
    assert_int_equal(n, 3);
    /* ANY "foo": exact names of any pattern type */
    f.pattern_type = AUTHZ_PAT_ANY;
    n = 0;
    for (size_t i = 0; i < g_st.acl_count; i++)
        n += authz_filter_matches(&f, &g_st.acls[i]);
    assert_int_equal(n, 1);
    /* LITERAL with a principal and a permission */
    f = (struct authz_filter){.resource_type = AUTHZ_RES_TOPIC,
                              .pattern_type = AUTHZ_PAT_PREFIXED,
                              .principal = BOB,
                              .operation = AUTHZ_OP_ANY,
                              .permission = AUTHZ_PERM_DENY};
    n = 0;
    for (size_t i = 0; i < g_st.acl_count; i++)
        n += authz_filter_matches(&f, &g_st.acls[i]);
    assert_int_equal(n, 1);
    /* the image is sorted: type, pattern, name */
    for (size_t i = 1; i < g_st.acl_count; i++)
        assert_true(authz_acl_cmp(&g_st.acls[i - 1], &g_st.acls[i]) < 0);
}

static void test_by_resource_type(void **state)
{
    (void)state;
    struct authz_config c = on();
    struct authz_subject alice = {.principal = ALICE, .host = LH};
    assert_false(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &alice, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "w", ALICE, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_ALLOW);
    assert_true(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &alice, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    /* the same literal denied: nothing left */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "w", ALICE, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_DENY);
    assert_false(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &alice, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "ok-", ALICE, "*", AUTHZ_OP_ALL, AUTHZ_PERM_ALLOW);
    assert_true(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &alice, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    /* a DENY prefix dominating the ALLOW prefix */
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "ok", ALICE, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_DENY);
    assert_false(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &alice, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    /* a wildcard DENY denies whatever else */
    struct authz_subject bob = {.principal = BOB, .host = LH};
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_PREFIXED, "b", BOB, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_ALLOW);
    assert_true(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &bob, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "*", BOB, "*", AUTHZ_OP_WRITE, AUTHZ_PERM_DENY);
    assert_false(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &bob, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
    struct authz_subject admin = {.principal = "User:admin", .host = LH};
    assert_true(
        authz_allowed_any(&c, g_st.acls, g_st.acl_count, &admin, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC));
}

static void test_authorized_ops(void **state)
{
    (void)state;
    struct authz_config c = on();
    struct authz_subject alice = {.principal = ALICE, .host = LH};
    add(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", ALICE, "*", AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    int32_t bits =
        authz_authorized_ops(&c, g_st.acls, g_st.acl_count, &alice, AUTHZ_RES_TOPIC, "t");
    assert_int_equal(bits, (1 << AUTHZ_OP_READ) | (1 << AUTHZ_OP_DESCRIBE));
    struct authz_config off = {.enabled = false};
    bits = authz_authorized_ops(&off, g_st.acls, g_st.acl_count, &alice, AUTHZ_RES_GROUP, "g");
    assert_int_equal(bits,
                     (1 << AUTHZ_OP_READ) | (1 << AUTHZ_OP_DESCRIBE) | (1 << AUTHZ_OP_DELETE));
}

static void test_validation_and_config(void **state)
{
    (void)state;
    assert_null(authz_binding_invalid(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", ALICE, "*",
                                      AUTHZ_OP_READ, AUTHZ_PERM_ALLOW));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_ANY, AUTHZ_PAT_LITERAL, "t", ALICE, "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ALLOW));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_TOPIC, AUTHZ_PAT_MATCH, "t", ALICE, "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ALLOW));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", ALICE, "*",
                                          AUTHZ_OP_ANY, AUTHZ_PERM_ALLOW));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", ALICE, "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ANY));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "", ALICE, "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ALLOW));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "t", "alice", "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ALLOW));
    assert_non_null(authz_binding_invalid(AUTHZ_RES_CLUSTER, AUTHZ_PAT_LITERAL, "other", ALICE, "*",
                                          AUTHZ_OP_ALTER, AUTHZ_PERM_ALLOW));
    assert_null(authz_binding_invalid(AUTHZ_RES_CLUSTER, AUTHZ_PAT_LITERAL, "kafka-cluster", ALICE,
                                      "*", AUTHZ_OP_ALTER, AUTHZ_PERM_ALLOW));
    char longname[AUTHZ_NAME_MAX + 2];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_non_null(authz_binding_invalid(AUTHZ_RES_GROUP, AUTHZ_PAT_LITERAL, longname, ALICE, "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ALLOW));
    struct authz_config c;
    const char *why = NULL;
    assert_int_equal(authz_config_parse(&c, "kafka.security.authorizer.AclAuthorizer",
                                        " User:a ; User:b;;", "true", &why),
                     0);
    assert_true(c.enabled && c.allow_if_no_acl);
    assert_int_equal(c.super_count, 2);
    assert_true(authz_is_super(&c, "User:b"));
    assert_false(authz_is_super(&c, "User:c"));
    assert_int_equal(authz_config_parse(&c, "com.example.Other", NULL, NULL, &why), LM_E_CONFIG);
    assert_non_null(why);
    assert_int_equal(authz_config_parse(&c, NULL, "admin", NULL, &why), LM_E_CONFIG);
    assert_int_equal(authz_config_parse(&c, NULL, NULL, "maybe", &why), LM_E_CONFIG);
}

static void test_records_and_bound(void **state)
{
    (void)state;
    struct lm_meta_record r = acl_rec(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "x", ALICE, "*",
                                      AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_int_equal(lm_meta_state_apply(&g_st, &r), 0);
    /* the same binding under another id is the same ACL */
    struct lm_meta_record again = r;
    again.acl_id[1] = 9;
    assert_int_equal(lm_meta_state_apply(&g_st, &again), LM_E_EXISTS);
    assert_non_null(lm_meta_state_acl_same(&g_st, &again));
    /* an invalid binding or a zero id never enters the image */
    struct lm_meta_record bad = acl_rec(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "", ALICE, "*",
                                        AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_int_equal(lm_meta_state_apply(&g_st, &bad), LM_E_INVALID);
    bad = acl_rec(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "y", ALICE, "*", AUTHZ_OP_READ,
                  AUTHZ_PERM_ALLOW);
    memset(bad.acl_id, 0, 16);
    assert_int_equal(lm_meta_state_apply(&g_st, &bad), LM_E_INVALID);
    /* removal by id, encoded and decoded */
    struct lm_meta_record del = {.type = LM_META_ACL_DELETE};
    memcpy(del.acl_id, r.acl_id, 16);
    uint8_t buf[64];
    int n = lm_meta_record_encode(&del, buf, sizeof(buf));
    assert_int_equal(n, 18);
    struct lm_meta_record d;
    struct lm_config_entry *cfg = NULL;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &cfg), 0);
    assert_int_equal(lm_meta_state_apply(&g_st, &d), 0);
    assert_int_equal(g_st.acl_count, 0);
    assert_int_equal(lm_meta_state_apply(&g_st, &d), LM_E_NOT_FOUND);
    /* a truncated record does not decode */
    struct lm_meta_record cr = acl_rec(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "z", ALICE, "*",
                                       AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    uint8_t big[256];
    n = lm_meta_record_encode(&cr, big, sizeof(big));
    assert_true(n > 0);
    assert_int_not_equal(lm_meta_record_decode(big, (size_t)n - 1, &d, &cfg), 0);
    /* the image's bound, then copies keep every binding */
    char name[32];
    for (int i = 0; i < LM_META_ACLS_MAX; i++) {
        snprintf(name, sizeof(name), "t%06d", i);
        struct lm_meta_record k = acl_rec(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, name, ALICE, "*",
                                          AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
        k.acl_id[2] = (uint8_t)(i >> 8);
        k.acl_id[3] = (uint8_t)i;
        k.acl_id[4] = 0x77;
        assert_int_equal(lm_meta_state_apply(&g_st, &k), 0);
    }
    struct lm_meta_record over = acl_rec(AUTHZ_RES_TOPIC, AUTHZ_PAT_LITERAL, "over", ALICE, "*",
                                         AUTHZ_OP_READ, AUTHZ_PERM_ALLOW);
    assert_int_equal(lm_meta_state_apply(&g_st, &over), LM_E_FULL);
    struct lm_meta_state copy;
    assert_int_equal(lm_meta_state_copy(&copy, &g_st), 0);
    assert_int_equal(copy.acl_count, LM_META_ACLS_MAX);
    struct authz_config c = on();
    struct authz_subject alice = {.principal = ALICE, .host = LH};
    assert_true(authz_allowed(&c, copy.acls, copy.acl_count, &alice, AUTHZ_OP_READ, AUTHZ_RES_TOPIC,
                              "t004321"));
    assert_false(authz_allowed(&c, copy.acls, copy.acl_count, &alice, AUTHZ_OP_READ,
                               AUTHZ_RES_TOPIC, "t0043210"));
    lm_meta_state_deinit(&copy);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_disabled_super_and_no_acl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_literal_ops_and_implication, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wildcard_prefixed_and_deny, setup, teardown),
        cmocka_unit_test_setup_teardown(test_hosts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_by_resource_type, setup, teardown),
        cmocka_unit_test_setup_teardown(test_authorized_ops, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation_and_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_records_and_bound, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
