/* Unit tests of SASL/OAUTHBEARER (broker/security/oauth.h): the client's first message, the
 * JSON reader, base64url and the unsecured-JWS validation with Kafka's rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "broker/security/oauth.h"
#include "common/lm_err.h"

#define NOW_MS 1700000000000LL

static int first(const char *m, size_t len, struct oauth_client_first *cf)
{
    char msg[160];
    return oauth_client_first_parse((const uint8_t *)m, len, cf, msg, sizeof(msg));
}

static void test_client_first(void **state)
{
    (void)state;
    struct oauth_client_first cf;
    static const char ok[] = "n,,\001auth=Bearer abc.def.\001\001";
    assert_int_equal(first(ok, sizeof(ok) - 1, &cf), 0);
    assert_null(cf.authzid);
    assert_int_equal(cf.token_len, 8);
    assert_memory_equal(cf.token, "abc.def.", 8);
    static const char az[] = "n,a=al=2Cice,\001host=x\001auth=bearer  t-_.9\001port=1\001\001";
    assert_int_equal(first(az, sizeof(az) - 1, &cf), 0);
    assert_int_equal(cf.authzid_len, 8);
    assert_int_equal(cf.token_len, 5);
    static const char *const bad[] = {
        "n,,\001\001",                                   /* no auth */
        "y,,\001auth=Bearer t\001\001",                  /* channel binding flag */
        "n,,\001auth=Basic t\001\001",                   /* scheme */
        "n,,\001auth=Bearer t\001",                      /* no closing separator */
        "n,,\001auth=Bearer t\001\001x",                 /* data after it */
        "n,,\001auth=Bearer t!\001\001",                 /* token character */
        "n,,\001auth=Bearer t\001auth=Bearer u\001\001", /* auth twice */
        "n,a=,\001auth=Bearer t\001\001",                /* empty authzid */
        "n,a=b=2X,\001auth=Bearer t\001\001",            /* bad escape */
        "n,,\0011x=y\001auth=Bearer t\001\001",          /* key not alphabetic */
        "n,,\001k=\001auth=Bearer t\001\001",            /* empty value */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(first(bad[i], strlen(bad[i]), &cf), LM_E_INVALID);
}

static void test_json(void **state)
{
    (void)state;
    static const char j[] =
        " { \"a\" : [1, {\"b\": null}, \"x\"], \"sub\":\"caf\\u00e9 \\ud83d\\ude00\\n\","
        "\"n\": -1.5e3, \"t\": true, \"sub2\": {}, \"dup\": 1, \"dup\": \"last\" } ";
    struct oauth_json_value v;
    char out[64];
    assert_int_equal(oauth_json_member(j, sizeof(j) - 1, "sub", &v), 1);
    assert_int_equal(v.type, OAUTH_JSON_STRING);
    assert_int_equal(oauth_json_string(&v, out, sizeof(out)), 11);
    assert_string_equal(out, "caf\xc3\xa9 \xf0\x9f\x98\x80\n");
    assert_int_equal(oauth_json_member(j, sizeof(j) - 1, "n", &v), 1);
    assert_int_equal(v.type, OAUTH_JSON_NUMBER);
    assert_int_equal(oauth_json_member(j, sizeof(j) - 1, "a", &v), 1);
    assert_int_equal(v.type, OAUTH_JSON_ARRAY);
    assert_int_equal(oauth_json_member(j, sizeof(j) - 1, "dup", &v), 1);
    assert_int_equal(v.type, OAUTH_JSON_STRING); /* the last of repeated members */
    assert_int_equal(oauth_json_member(j, sizeof(j) - 1, "missing", &v), 0);
    assert_int_equal(oauth_json_string(&v, out, 4), -1); /* not a string */
    static const char *const bad[] = {"",
                                      "[]",
                                      "{",
                                      "{\"a\"}",
                                      "{\"a\":}",
                                      "{\"a\":1,}",
                                      "{\"a\":1} x",
                                      "{\"a\":\"\\q\"}",
                                      "{\"a\":01x}",
                                      "{\"a\":\"\x01\"}",
                                      "{\"a\":tru}"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(oauth_json_member(bad[i], strlen(bad[i]), "a", &v), LM_E_INVALID);
    /* nesting is bounded */
    char deep[200];
    size_t n = 0;
    n += (size_t)snprintf(deep, sizeof(deep), "{\"a\":");
    for (int i = 0; i < 40; i++)
        deep[n++] = '[';
    for (int i = 0; i < 40; i++)
        deep[n++] = ']';
    deep[n++] = '}';
    assert_int_equal(oauth_json_member(deep, n, "a", &v), LM_E_INVALID);
    /* a lone low surrogate is refused */
    static const char lone[] = "{\"a\":\"\\udc00\"}";
    assert_int_equal(oauth_json_member(lone, sizeof(lone) - 1, "a", &v), 1);
    assert_int_equal(oauth_json_string(&v, out, sizeof(out)), -1);
}

static void test_b64url(void **state)
{
    (void)state;
    uint8_t out[16];
    assert_int_equal(oauth_b64url_decode("eyJhIjoxfQ", 10, out, sizeof(out)), 7);
    assert_memory_equal(out, "{\"a\":1}", 7);
    assert_int_equal(oauth_b64url_decode("eyJhIjoxfQ==", 12, out, sizeof(out)), 7);
    assert_int_equal(oauth_b64url_decode("-_8", 3, out, sizeof(out)), 2);
    assert_int_equal(out[0], 0xfb);
    assert_int_equal(out[1], 0xff);
    assert_int_equal(oauth_b64url_decode("a+b/", 4, out, sizeof(out)), -1); /* not url-safe */
    assert_int_equal(oauth_b64url_decode("abcde", 5, out, sizeof(out)), -1);
    assert_int_equal(oauth_b64url_decode("eyJhIjoxfQ", 10, out, 3), -1);
}

/* base64url of s without padding into out. */
static size_t b64url(const char *s, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)(uint8_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(uint8_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint8_t)s[i + 2];
        out[o++] = a[v >> 18 & 63];
        out[o++] = a[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = a[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = a[v & 63];
    }
    out[o] = '\0';
    return o;
}

static int validate(const struct oauth_unsecured_config *c, const char *header, const char *claims,
                    struct oauth_token *t, char *challenge)
{
    char tok[1024];
    size_t n = b64url(header, tok);
    tok[n++] = '.';
    n += b64url(claims, tok + n);
    tok[n++] = '.';
    tok[n] = '\0';
    char why[200];
    return oauth_unsecured_validate(c, tok, n, NOW_MS, t, why, sizeof(why), challenge,
                                    OAUTH_ERROR_BYTES_MAX);
}

static void test_unsecured(void **state)
{
    (void)state;
    struct oauth_unsecured_config c;
    oauth_unsecured_config_default(&c);
    struct oauth_token t;
    char ch[OAUTH_ERROR_BYTES_MAX];
    const char *none = "{\"alg\":\"none\"}";
    assert_int_equal(validate(&c, none, "{\"sub\":\"alice\",\"exp\":1700000600.5}", &t, ch), 0);
    assert_string_equal(t.principal, "alice");
    assert_int_equal(t.expires_ms, 1700000600500LL);
    /* expired, on the boundary, issued in the future, exp before iat, wrong types */
    assert_int_equal(validate(&c, none, "{\"sub\":\"a\",\"exp\":1699999999}", &t, ch),
                     LM_E_INVALID);
    assert_string_equal(ch, "{\"status\":\"invalid_token\"}");
    assert_int_equal(validate(&c, none, "{\"sub\":\"a\",\"exp\":1700000000}", &t, ch),
                     LM_E_INVALID);
    assert_int_equal(
        validate(&c, none, "{\"sub\":\"a\",\"iat\":1700000001,\"exp\":1700000600}", &t, ch),
        LM_E_INVALID);
    assert_int_equal(
        validate(&c, none, "{\"sub\":\"a\",\"iat\":1699999000,\"exp\":1699998000}", &t, ch),
        LM_E_INVALID);
    assert_int_equal(validate(&c, none, "{\"sub\":5,\"exp\":1700000600}", &t, ch), LM_E_INVALID);
    assert_int_equal(validate(&c, none, "{\"sub\":\"\",\"exp\":1700000600}", &t, ch), LM_E_INVALID);
    assert_int_equal(validate(&c, none, "{\"sub\":\"a\",\"exp\":\"soon\"}", &t, ch), LM_E_INVALID);
    assert_int_equal(
        validate(&c, "{\"alg\":\"HS256\"}", "{\"sub\":\"a\",\"exp\":1700000600}", &t, ch),
        LM_E_INVALID);
    /* clock skew lets a just-expired token and a just-issued one through */
    char err[160];
    assert_int_equal(oauth_unsecured_config_set(&c, "unsecuredValidatorAllowableClockSkewMs",
                                                " 2000 ", err, sizeof(err)),
                     0);
    assert_int_equal(validate(&c, none, "{\"sub\":\"a\",\"exp\":1699999999}", &t, ch), 0);
    assert_int_equal(
        validate(&c, none, "{\"sub\":\"a\",\"iat\":1700000001,\"exp\":1700000600}", &t, ch), 0);
    assert_int_equal(oauth_unsecured_config_set(&c, "unsecuredValidatorAllowableClockSkewMs", "-1",
                                                err, sizeof(err)),
                     LM_E_INVALID);
    /* principal claim and required scope, as a string or an array */
    assert_int_equal(oauth_unsecured_config_set(&c, "unsecuredValidatorPrincipalClaimName",
                                                "client_id", err, sizeof(err)),
                     0);
    assert_int_equal(oauth_unsecured_config_set(&c, "unsecuredValidatorRequiredScope",
                                                "kafka  write", err, sizeof(err)),
                     0);
    assert_int_equal(c.n_required, 2);
    assert_int_equal(
        validate(&c, none,
                 "{\"client_id\":\"svc\",\"exp\":1700000600,\"scope\":\"read kafka write\"}", &t,
                 ch),
        0);
    assert_string_equal(t.principal, "svc");
    assert_int_equal(validate(&c, none,
                              "{\"client_id\":\"svc\",\"exp\":1700000600,\"scope\":[\"write\","
                              "\"kafka\"]}",
                              &t, ch),
                     0);
    assert_int_equal(validate(&c, none,
                              "{\"client_id\":\"svc\",\"exp\":1700000600,\"scope\":\"kafka\"}", &t,
                              ch),
                     LM_E_INVALID);
    assert_string_equal(ch, "{\"status\":\"insufficient_scope\", \"scope\":\"[kafka, write]\"}");
    assert_int_equal(validate(&c, none,
                              "{\"sub\":\"svc\",\"exp\":1700000600,\"scope\":\"kafka "
                              "write\"}",
                              &t, ch),
                     LM_E_INVALID); /* the principal claim is client_id now */
    /* not a JWS: a signature, one part, bad base64url */
    char why[200];
    static const char *const junk[] = {"a.b.c", "abc", "a..", "!.!.", ".."};
    for (size_t i = 0; i < sizeof(junk) / sizeof(junk[0]); i++)
        assert_int_equal(oauth_unsecured_validate(&c, junk[i], strlen(junk[i]), NOW_MS, &t, why,
                                                  sizeof(why), ch, sizeof(ch)),
                         LM_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_client_first),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_b64url),
        cmocka_unit_test(test_unsecured),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
