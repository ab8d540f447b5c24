/* libFuzzer target for the SASL exchanges (broker/security/sasl.h): the first byte picks the
 * parser, the rest is client input. 0: a PLAIN token; 1: a JAAS config; 2/3: a SCRAM-SHA-256 /
 * SCRAM-SHA-512 exchange whose client-first and client-final messages are separated by '\n',
 * against user "user" (password "pencil", RFC 7677's salt) with the server nonce fixed, so
 * RFC 7677's exchange is a seed and mutations reach the proof check. Oracles: no crash, no
 * sanitizer report, a failure always carries a message, and the exchange never succeeds with a
 * proof other than the one the password gives (checked by recomputing the server signature). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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
    uint8_t kind = data[0] % 4;
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
