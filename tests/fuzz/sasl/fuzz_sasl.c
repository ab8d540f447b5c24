/* libFuzzer target for the SASL exchanges (broker/security/sasl.h): the first byte picks the
 * parser, the rest is client input. 0: a PLAIN token; 1: a JAAS config; 2/3: a SCRAM-SHA-256 /
 * SCRAM-SHA-512 exchange whose client-first and client-final messages are separated by '\n',
 * against user "user" (password "pencil", RFC 7677's salt) with the server nonce fixed, so
 * RFC 7677's exchange is a seed and mutations reach the proof check; 4: an OAUTHBEARER client
 * first message and its unsecured JWS (oauth.h); 5: JSON member lookup, a JWKS document and
 * base64url. Oracles:
 * no crash, no
 * sanitizer report, a failure always carries a message, and the exchange never succeeds with a
 * proof other than the one the password gives (checked by recomputing the server signature). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/security/oauth.h"
#include "broker/security/sasl.h"
#include "common/lm_err.h"

static struct sasl_scram_cred g_cred[2];

static bool lookup(void *ctx, const char *user, enum sasl_mech mech, struct sasl_scram_cred *out)
{
    (void)ctx;
    if (strcmp(user, "user") != 0)
        return false;
    *out = g_cred[mech == SASL_MECH_SCRAM_SHA_512];
    return true;
}

static void init_creds(void)
{
    static bool done;
    if (done)
        return;
    uint8_t salt[16], salted[64];
    int n = sasl_b64_decode("W22ZaJ0SNY7soEsUEjb6gQ==", 24, salt, sizeof(salt));
    enum sasl_mech m[2] = {SASL_MECH_SCRAM_SHA_256, SASL_MECH_SCRAM_SHA_512};
    for (int i = 0; i < 2; i++) {
        if (n <= 0 ||
            sasl_scram_salted_password(m[i], "pencil", 6, salt, (size_t)n, 4096, salted) != 0 ||
            sasl_scram_cred_from_salted(m[i], salted, sasl_scram_key_len(m[i]), salt, (size_t)n,
                                        4096, &g_cred[i]) != 0)
            abort();
    }
    done = true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    init_creds();
    uint8_t kind = data[0] % 6;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    char msg[SASL_MESSAGE_BYTES_MAX];
    if (kind == 0) {
        struct sasl_plain_user u = {"user", "pencil"};
        struct sasl_plain_users users = {&u, 1};
        char name[SASL_USER_BYTES_MAX];
        msg[0] = '\0';
        int rc = sasl_plain_authenticate(&users, p, n, name, msg, sizeof(msg));
        if (rc == 0 && strcmp(name, "user") != 0)
            abort();
        if (rc != 0 && msg[0] == '\0')
            abort();
        return 0;
    }
    if (kind == 1) {
        char *text = malloc(n + 1);
        if (text == NULL)
            return 0;
        memcpy(text, p, n);
        text[n] = '\0';
        struct sasl_jaas j;
        char err[200];
        if (sasl_jaas_parse(text, &j, err, sizeof(err)) == 0) {
            struct sasl_plain_users u;
            if (sasl_jaas_plain_users(&j, &u, err, sizeof(err)) == 0)
                sasl_plain_users_free(&u);
            sasl_jaas_free(&j);
        }
        free(text);
        return 0;
    }
    if (kind == 4) {
        /* OAUTHBEARER: a client first message and the token in it, at a fixed time */
        struct oauth_client_first cf;
        msg[0] = '\0';
        if (oauth_client_first_parse(p, n, &cf, msg, sizeof(msg)) != 0) {
            if (msg[0] == '\0')
                abort();
            return 0;
        }
        if (cf.token == NULL || cf.token_len == 0)
            abort();
        struct oauth_unsecured_config c;
        oauth_unsecured_config_default(&c);
        char err[160];
        if (oauth_unsecured_config_set(&c, "unsecuredValidatorRequiredScope", "a b", err,
                                       sizeof(err)) != 0)
            abort();
        struct oauth_token t;
        char why[200], challenge[OAUTH_ERROR_BYTES_MAX];
        int rc = oauth_unsecured_validate(&c, cf.token, cf.token_len, 1700000000000, &t, why,
                                          sizeof(why), challenge, sizeof(challenge));
        if (rc == 0 && (t.principal[0] == '\0' || t.expires_ms < 1700000000000))
            abort();
        if (rc != 0 && challenge[0] != '{')
            abort();
        return 0;
    }
    if (kind == 5) {
        /* JSON: a member of a top-level object, decoded when a string */
        struct oauth_json_value v;
        if (oauth_json_member((const char *)p, n, "sub", &v) == 1) {
            if (v.start < (const char *)p || v.start + v.len > (const char *)p + n)
                abort();
            char out[256];
            (void)oauth_json_string(&v, out, sizeof(out));
        }
        struct oauth_jwks *keys = NULL;
        char jerr[200];
        if (oauth_jwks_parse((const char *)p, n, &keys, jerr, sizeof(jerr)) == 0) {
            if (oauth_jwks_count(keys) == 0)
                abort();
            oauth_jwks_free(keys);
        }
        uint8_t dec[512];
        int dl = oauth_b64url_decode((const char *)p, n, dec, sizeof(dec));
        if (dl > (int)sizeof(dec))
            abort();
        return 0;
    }
    enum sasl_mech mech = kind == 2 ? SASL_MECH_SCRAM_SHA_256 : SASL_MECH_SCRAM_SHA_512;
    const uint8_t *nl = memchr(p, '\n', n);
    size_t first_len = nl ? (size_t)(nl - p) : n;
    struct sasl_scram_server s;
    sasl_scram_server_init(&s, mech);
    uint8_t out[1024];
    size_t out_len = 0;
    msg[0] = '\0';
    int rc =
        sasl_scram_server_step(&s, p, first_len, lookup, NULL, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
                               out, sizeof(out), &out_len, msg, sizeof(msg));
    if (rc != 0) {
        if (msg[0] == '\0' || s.step != SASL_SCRAM_DONE)
            abort();
        return 0;
    }
    if (nl == NULL)
        return 0;
    msg[0] = '\0';
    rc = sasl_scram_server_step(&s, nl + 1, n - first_len - 1, lookup, NULL, NULL, out, sizeof(out),
                                &out_len, msg, sizeof(msg));
    if (rc != 0 && msg[0] == '\0')
        abort();
    if (rc == 0 && (out_len < 2 || memcmp(out, "v=", 2) != 0 || strcmp(s.user, "user") != 0))
        abort();
    return 0;
}
