/* SASL mechanisms (broker/security/sasl.h): RFC 7677's published SCRAM-SHA-256 exchange, a
 * SCRAM-SHA-512 exchange against a client written here from RFC 5802, PLAIN (RFC 4616) and
 * the JAAS parser, and hostile tokens, each of which must fail cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "broker/security/sasl.h"
#include "common/lm_err.h"

struct creds {
    struct sasl_scram_cred c[4];
    const char *user[4];
    size_t n;
};

static bool lookup(void *ctx, const char *user, enum sasl_mech mech, struct sasl_scram_cred *out)
{
    struct creds *cs = ctx;
    for (size_t i = 0; i < cs->n; i++) {
        if (strcmp(cs->user[i], user) == 0 && cs->c[i].mech == mech) {
            *out = cs->c[i];
            return true;
        }
    }
    return false;
}

static void add_cred(struct creds *cs, const char *user, enum sasl_mech mech, const char *pw,
                     const char *salt64, int32_t iters)
{
    uint8_t salt[128], salted[64];
    int sn = sasl_b64_decode(salt64, strlen(salt64), salt, sizeof(salt));
    assert_true(sn > 0);
    assert_int_equal(
        sasl_scram_salted_password(mech, pw, strlen(pw), salt, (size_t)sn, iters, salted), 0);
    assert_int_equal(sasl_scram_cred_from_salted(mech, salted, sasl_scram_key_len(mech), salt,
                                                 (size_t)sn, iters, &cs->c[cs->n]),
                     0);
    cs->user[cs->n++] = user;
}

static int step(struct sasl_scram_server *s, struct creds *cs, const char *tok, const char *snonce,
                char *out, char *msg)
{
    size_t n = 0;
    int rc = sasl_scram_server_step(s, (const uint8_t *)tok, strlen(tok), lookup, cs, snonce,
                                    (uint8_t *)out, 1024, &n, msg, SASL_MESSAGE_BYTES_MAX);
    out[n] = '\0';
    return rc;
}

/* RFC 7677 §3: user "user", password "pencil". */
static void test_rfc7677_vector(void **state)
{
    (void)state;
    struct creds cs = {0};
    add_cred(&cs, "user", SASL_MECH_SCRAM_SHA_256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    struct sasl_scram_server s;
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
    char out[1025], msg[SASL_MESSAGE_BYTES_MAX];
    assert_int_equal(step(&s, &cs, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                          "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", out, msg),
                     0);
    assert_string_equal(out, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                             "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
    assert_int_equal(step(&s, &cs,
                          "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                          "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                          NULL, out, msg),
                     0);
    assert_string_equal(out, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    assert_string_equal(s.user, "user");
    /* the exchange is over */
    assert_int_equal(step(&s, &cs, "c=biws", NULL, out, msg), LM_E_STATE);

    /* the same exchange with one bit of the proof flipped fails */
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step(&s, &cs, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO",
                          "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0", out, msg),
                     0);
    assert_int_equal(step(&s, &cs,
                          "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                          "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVU=",
                          NULL, out, msg),
                     LM_E_INVALID);
    assert_non_null(strstr(msg, "Invalid user credentials"));
}

/* A client from RFC 5802 §3 for SCRAM-SHA-512: proof = ClientKey XOR HMAC(StoredKey, Auth). */
static void client_final(enum sasl_mech mech, const char *gs2, const char *pw,
                         const char *first_bare, const char *server_first, char *out)
{
    const EVP_MD *md = mech == SASL_MECH_SCRAM_SHA_512 ? EVP_sha512() : EVP_sha256();
    size_t kl = sasl_scram_key_len(mech);
    const char *r = strstr(server_first, "r=") + 2;
    const char *s = strstr(server_first, ",s=") + 3;
    const char *i = strstr(server_first, ",i=") + 3;
    uint8_t salt[128];
    int sn = sasl_b64_decode(s, (size_t)(strchr(s, ',') - s), salt, sizeof(salt));
    assert_true(sn > 0);
    uint8_t salted[64], ck[64], sk[64], sig[64], proof[64];
    unsigned int n;
    assert_int_equal(
        sasl_scram_salted_password(mech, pw, strlen(pw), salt, (size_t)sn, atoi(i), salted), 0);
    HMAC(md, salted, (int)kl, (const uint8_t *)"Client Key", 10, ck, &n);
    EVP_Digest(ck, kl, sk, &n, md, NULL);
    char without[512], auth[2048];
    char c64[100];
    sasl_b64_encode((const uint8_t *)gs2, strlen(gs2), c64);
    snprintf(without, sizeof(without), "c=%s,r=%.*s", c64, (int)(strchr(r, ',') - r), r);
    snprintf(auth, sizeof(auth), "%s,%s,%s", first_bare, server_first, without);
    HMAC(md, sk, (int)kl, (const uint8_t *)auth, strlen(auth), sig, &n);
    for (size_t k = 0; k < kl; k++)
        proof[k] = ck[k] ^ sig[k];
    char p64[100];
    sasl_b64_encode(proof, kl, p64);
    sprintf(out, "%s,p=%s", without, p64);
}

static void test_scram_sha512_round_trip(void **state)
{
    (void)state;
    struct creds cs = {0};
    assert_int_equal(
        sasl_scram_cred_from_password(SASL_MECH_SCRAM_SHA_512, "alice-secret", 4096, &cs.c[0]), 0);
    cs.user[0] = "al,i=ce";
    cs.n = 1;
    struct sasl_scram_server s;
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_512);
    char out[1025], msg[SASL_MESSAGE_BYTES_MAX], fin[1024];
    assert_int_equal(step(&s, &cs, "n,a=al=2Ci=3Dce,n=al=2Ci=3Dce,r=abcdef", NULL, out, msg), 0);
    assert_int_equal(strncmp(out, "r=abcdef", 8), 0);
    client_final(SASL_MECH_SCRAM_SHA_512, "n,a=al=2Ci=3Dce,", "alice-secret",
                 "n=al=2Ci=3Dce,r=abcdef", out, fin);
    assert_int_equal(step(&s, &cs, fin, NULL, out, msg), 0);
    assert_string_equal(s.user, "al,i=ce");
    assert_int_equal(strncmp(out, "v=", 2), 0);
    assert_int_equal(strlen(out), 2 + 88);

    /* wrong password */
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_512);
    assert_int_equal(step(&s, &cs, "n,,n=al=2Ci=3Dce,r=xyz", NULL, out, msg), 0);
    client_final(SASL_MECH_SCRAM_SHA_512, "n,,", "wrong", "n=al=2Ci=3Dce,r=xyz", out, fin);
    assert_int_equal(step(&s, &cs, fin, NULL, out, msg), LM_E_INVALID);
    /* the SHA-256 credential of the same user does not exist */
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(step(&s, &cs, "n,,n=al=2Ci=3Dce,r=xyz", NULL, out, msg), LM_E_INVALID);
    assert_non_null(strstr(msg, "Invalid user credentials"));
}

static void test_scram_hostile(void **state)
{
    (void)state;
    struct creds cs = {0};
    add_cred(&cs, "user", SASL_MECH_SCRAM_SHA_256, "pencil", "W22ZaJ0SNY7soEsUEjb6gQ==", 4096);
    static const char *const firsts[] = {
        "",
        "n",
        "n,",
        "n,,",
        "p=tls-unique,,n=user,r=abc",
        "n,,m=ext,n=user,r=abc",
        "n,,n=,r=abc",
        "n,,n=us=er,r=abc",
        "n,,n=us=2,r=abc",
        "n,,n=user",
        "n,,n=user,r=",
        "n,,r=abc,n=user",
        "n,a=other,n=user,r=abc",
        "n,,n=user,r=abc,tokenauth=true",
        "n,,n=nobody,r=abc",
        "n,,n=user,r=abc,=x",
        "x,,n=user,r=abc",
    };
    char out[1025], msg[SASL_MESSAGE_BYTES_MAX];
    for (size_t i = 0; i < sizeof(firsts) / sizeof(firsts[0]); i++) {
        struct sasl_scram_server s;
        sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
        msg[0] = '\0';
        assert_int_equal(step(&s, &cs, firsts[i], NULL, out, msg), LM_E_INVALID);
        assert_true(strncmp(msg, "Authentication failed", 21) == 0);
    }
    /* a NUL inside, and an oversized token */
    struct sasl_scram_server s;
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
    size_t n = 0;
    static const uint8_t nul[] = {'n', ',', ',', 'n', '=', 'u', 0, 'r', '=', 'a'};
    assert_int_equal(sasl_scram_server_step(&s, nul, sizeof(nul), lookup, &cs, NULL, (uint8_t *)out,
                                            sizeof(out), &n, msg, sizeof(msg)),
                     LM_E_INVALID);
    uint8_t *big = malloc(SASL_TOKEN_BYTES_MAX + 1);
    memset(big, 'a', SASL_TOKEN_BYTES_MAX + 1);
    sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
    assert_int_equal(sasl_scram_server_step(&s, big, SASL_TOKEN_BYTES_MAX + 1, lookup, &cs, NULL,
                                            (uint8_t *)out, sizeof(out), &n, msg, sizeof(msg)),
                     LM_E_INVALID);
    free(big);
    /* bad final messages after a good first */
    static const char *const finals[] = {
        "",
        "c=biws",
        "c=biws,r=x,p=AAAA",
        "c=eSws,r=rOprNGfwEbeRWgbNEkqOsnonce,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
        "c=biws,r=rOprNGfwEbeRWgbNEkqOsnonce,p=!!!!",
        "c=biws,r=rOprNGfwEbeRWgbNEkqOsnonce,p=AAAA",
        "c=biws,r=rOprNGfwEbeRWgbNEkqOsnonce,p=",
        "r=rOprNGfwEbeRWgbNEkqOsnonce,c=biws,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
    };
    for (size_t i = 0; i < sizeof(finals) / sizeof(finals[0]); i++) {
        sasl_scram_server_init(&s, SASL_MECH_SCRAM_SHA_256);
        assert_int_equal(step(&s, &cs, "n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "snonce", out, msg), 0);
        assert_int_equal(step(&s, &cs, finals[i], NULL, out, msg), LM_E_INVALID);
        assert_int_equal(step(&s, &cs, finals[i], NULL, out, msg), LM_E_STATE);
    }
}

static int plain(const struct sasl_plain_users *u, const char *a, const char *user, const char *pw,
                 char *name, char *msg)
{
    uint8_t tok[512];
    size_t n = 0;
    memcpy(tok + n, a, strlen(a));
    n += strlen(a);
    tok[n++] = 0;
    memcpy(tok + n, user, strlen(user));
    n += strlen(user);
    tok[n++] = 0;
    memcpy(tok + n, pw, strlen(pw));
    n += strlen(pw);
    return sasl_plain_authenticate(u, tok, n, name, msg, SASL_MESSAGE_BYTES_MAX);
}

static void test_plain_and_jaas(void **state)
{
    (void)state;
    struct sasl_jaas j;
    char err[200];
    assert_int_equal(
        sasl_jaas_parse(
            "org.apache.kafka.common.security.plain.PlainLoginModule required "
            "username=\"admin\"\n  password=\"admin-secret\" user_admin=\"admin-secret\" "
            "user_alice=\"al\\\"ice\" user_bob=bob-pw;",
            &j, err, sizeof(err)),
        0);
    assert_string_equal(j.flag, "required");
    assert_int_equal(j.option_count, 5);
    struct sasl_plain_users u;
    assert_int_equal(sasl_jaas_plain_users(&j, &u, err, sizeof(err)), 0);
    assert_int_equal(u.count, 3);
    sasl_jaas_free(&j);
    char name[SASL_USER_BYTES_MAX], msg[SASL_MESSAGE_BYTES_MAX];
    assert_int_equal(plain(&u, "", "alice", "al\"ice", name, msg), 0);
    assert_string_equal(name, "alice");
    assert_int_equal(plain(&u, "bob", "bob", "bob-pw", name, msg), 0);
    assert_int_equal(plain(&u, "", "alice", "al\"icf", name, msg), LM_E_INVALID);
    assert_string_equal(msg, "Authentication failed: Invalid username or password");
    assert_int_equal(plain(&u, "", "carol", "x", name, msg), LM_E_INVALID);
    assert_int_equal(plain(&u, "admin", "alice", "al\"ice", name, msg), LM_E_INVALID);
    assert_non_null(strstr(msg, "authorization id"));
    assert_int_equal(plain(&u, "", "", "x", name, msg), LM_E_INVALID);
    assert_int_equal(plain(&u, "", "alice", "", name, msg), LM_E_INVALID);
    /* two or four parts */
    assert_int_equal(
        sasl_plain_authenticate(&u, (const uint8_t *)"\0alice", 6, name, msg, sizeof(msg)),
        LM_E_INVALID);
    assert_int_equal(
        sasl_plain_authenticate(&u, (const uint8_t *)"\0a\0b\0c", 7, name, msg, sizeof(msg)),
        LM_E_INVALID);
    assert_int_equal(sasl_plain_authenticate(&u, (const uint8_t *)"", 0, name, msg, sizeof(msg)),
                     LM_E_INVALID);
    sasl_plain_users_free(&u);

    /* malformed JAAS */
    static const char *const bad[] = {
        "",
        "Module",
        "Module required",
        "Module sometimes;",
        "Module required a=\"b;",
        "Module required a;",
        "Module required a=b; Other required;",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sasl_jaas_parse(bad[i], &j, err, sizeof(err)), LM_E_INVALID);
    assert_int_equal(sasl_jaas_parse("org.apache.kafka.common.security.scram.ScramLoginModule "
                                     "required;",
                                     &j, err, sizeof(err)),
                     0);
    assert_int_equal(sasl_jaas_plain_users(&j, &u, err, sizeof(err)), LM_E_INVALID);
    sasl_jaas_free(&j);
    assert_int_equal(
        sasl_jaas_parse("org.apache.kafka.common.security.plain.PlainLoginModule required "
                        "user_a=\"1\" user_a=\"2\";",
                        &j, err, sizeof(err)),
        0);
    assert_int_equal(sasl_jaas_plain_users(&j, &u, err, sizeof(err)), LM_E_INVALID);
    sasl_jaas_free(&j);
}

static void test_mech_names_and_b64(void **state)
{
    (void)state;
    assert_int_equal(sasl_mech_parse("SCRAM-SHA-512", 13), SASL_MECH_SCRAM_SHA_512);
    assert_int_equal(sasl_mech_parse("scram-sha-512", 13), SASL_MECH_NONE);
    assert_int_equal(sasl_mech_parse("GSSAPI", 6), SASL_MECH_NONE);
    assert_string_equal(sasl_mech_name(SASL_MECH_PLAIN), "PLAIN");
    uint8_t b[8];
    assert_int_equal(sasl_b64_decode("biws", 4, b, sizeof(b)), 3);
    assert_memory_equal(b, "n,,", 3);
    assert_int_equal(sasl_b64_decode("bi==", 4, b, sizeof(b)), 1);
    assert_int_equal(sasl_b64_decode("b=ws", 4, b, sizeof(b)), -1);
    assert_int_equal(sasl_b64_decode("biw", 3, b, sizeof(b)), -1);
    assert_int_equal(sasl_b64_decode("bi=w", 4, b, sizeof(b)), -1);
    assert_int_equal(sasl_b64_decode("AAAAAAAAAAAA", 12, b, sizeof(b)), -1);
    char e[16];
    assert_int_equal(sasl_b64_encode((const uint8_t *)"n,,", 3, e), 4);
    assert_string_equal(e, "biws");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc7677_vector),     cmocka_unit_test(test_scram_sha512_round_trip),
        cmocka_unit_test(test_scram_hostile),      cmocka_unit_test(test_plain_and_jaas),
        cmocka_unit_test(test_mech_names_and_b64),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
