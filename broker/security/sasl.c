/* PLAIN, SCRAM and JAAS parsing (sasl.h). Messages for the client follow Kafka's
 * (PlainSaslServer, ScramSaslServer) so a client shows what it would show against Kafka. */
#include "broker/security/sasl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

static int fail(char *msg, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int fail(char *msg, size_t cap, const char *fmt, ...)
{
    if (msg != NULL && cap > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, cap, fmt, ap);
        va_end(ap);
    }
    return LM_E_INVALID;
}

const char *sasl_mech_name(enum sasl_mech m)
{
    switch (m) {
    case SASL_MECH_PLAIN:
        return "PLAIN";
    case SASL_MECH_SCRAM_SHA_256:
        return "SCRAM-SHA-256";
    case SASL_MECH_SCRAM_SHA_512:
        return "SCRAM-SHA-512";
    case SASL_MECH_OAUTHBEARER:
        return "OAUTHBEARER";
    default:
        return "UNKNOWN";
    }
}

enum sasl_mech sasl_mech_parse(const char *name, size_t len)
{
    static const enum sasl_mech all[] = {SASL_MECH_PLAIN, SASL_MECH_SCRAM_SHA_256,
                                         SASL_MECH_SCRAM_SHA_512, SASL_MECH_OAUTHBEARER};
    for (size_t i = 0; i < LM_ARRAY_LEN(all); i++) {
        const char *n = sasl_mech_name(all[i]);
        if (strlen(n) == len && memcmp(n, name, len) == 0)
            return all[i];
    }
    return SASL_MECH_NONE;
}

bool sasl_mech_is_scram(enum sasl_mech m)
{
    return m == SASL_MECH_SCRAM_SHA_256 || m == SASL_MECH_SCRAM_SHA_512;
}

size_t sasl_scram_key_len(enum sasl_mech m)
{
    return m == SASL_MECH_SCRAM_SHA_256 ? 32 : m == SASL_MECH_SCRAM_SHA_512 ? 64 : 0;
}

static const EVP_MD *scram_md(enum sasl_mech m)
{
    return m == SASL_MECH_SCRAM_SHA_256   ? EVP_sha256()
           : m == SASL_MECH_SCRAM_SHA_512 ? EVP_sha512()
                                          : NULL;
}

bool sasl_ct_equal(const void *a, const void *b, size_t n)
{
    return CRYPTO_memcmp(a, b, n) == 0;
}

/* ---- base64 ------------------------------------------------------------------------------- */

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

size_t sasl_b64_encode(const uint8_t *in, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = b64_chars[(v >> 18) & 63];
        out[o++] = b64_chars[(v >> 12) & 63];
        out[o++] = i + 1 < n ? b64_chars[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? b64_chars[v & 63] : '=';
    }
    out[o] = '\0';
    return o;
}

int sasl_b64_digit(char c, char c62, char c63)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    return c == c62 ? 62 : c == c63 ? 63 : -1;
}

static int b64_val(char c)
{
    return sasl_b64_digit(c, '+', '/');
}

int sasl_b64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap)
{
    if (n % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        int v[4];
        int pad = 0;
        for (int k = 0; k < 4; k++) {
            if (in[i + k] == '=' && i + 4 == n && k >= 2) {
                v[k] = 0;
                pad++;
                continue;
            }
            if (pad > 0 || (v[k] = b64_val(in[i + k])) < 0)
                return -1;
        }
        uint32_t w =
            (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 | (uint32_t)v[3];
        int bytes = 3 - pad;
        if (o + (size_t)bytes > out_cap)
            return -1;
        out[o++] = (uint8_t)(w >> 16);
        if (bytes > 1)
            out[o++] = (uint8_t)(w >> 8);
        if (bytes > 2)
            out[o++] = (uint8_t)w;
    }
    return (int)o;
}

/* ---- PLAIN -------------------------------------------------------------------------------- */

int sasl_plain_parse(const uint8_t *tok, size_t len, struct sasl_plain_msg *out, char *msg,
                     size_t msg_cap)
{
    if (len > SASL_TOKEN_BYTES_MAX)
        return fail(msg, msg_cap, "Invalid SASL/PLAIN response: too long");
    const uint8_t *nul1 = memchr(tok, 0, len);
    const uint8_t *nul2 = nul1 ? memchr(nul1 + 1, 0, len - (size_t)(nul1 + 1 - tok)) : NULL;
    if (nul1 == NULL || nul2 == NULL || memchr(nul2 + 1, 0, len - (size_t)(nul2 + 1 - tok)))
        return fail(msg, msg_cap, "Invalid SASL/PLAIN response: expected 3 tokens");
    out->authzid = (const char *)tok;
    out->authzid_len = (size_t)(nul1 - tok);
    out->user = (const char *)nul1 + 1;
    out->user_len = (size_t)(nul2 - nul1 - 1);
    out->password = (const char *)nul2 + 1;
    out->password_len = len - (size_t)(nul2 + 1 - tok);
    if (out->user_len == 0)
        return fail(msg, msg_cap, "Authentication failed: username not specified");
    if (out->password_len == 0)
        return fail(msg, msg_cap, "Authentication failed: password not specified");
    if (out->user_len >= SASL_USER_BYTES_MAX || out->password_len > SASL_PASSWORD_BYTES_MAX)
        return fail(msg, msg_cap, "Authentication failed: Invalid username or password");
    if (out->authzid_len != 0 &&
        (out->authzid_len != out->user_len || memcmp(out->authzid, out->user, out->user_len)))
        return fail(msg, msg_cap,
                    "Authentication failed: Client requested an authorization id that is "
                    "different from username");
    return 0;
}

/* SHA-256 of both sides, compared in constant time, so the comparison's time tells nothing
 * about the password's length or where it differs. */
static bool password_equal(const char *a, size_t a_len, const char *b, size_t b_len)
{
    uint8_t da[32], db[32];
    unsigned int n = 0;
    bool ok = EVP_Digest(a, a_len, da, &n, EVP_sha256(), NULL) == 1 && n == 32 &&
              EVP_Digest(b, b_len, db, &n, EVP_sha256(), NULL) == 1 && n == 32;
    return ok && sasl_ct_equal(da, db, 32) && a_len == b_len;
}

int sasl_plain_authenticate(const struct sasl_plain_users *users, const uint8_t *tok, size_t len,
                            char user[SASL_USER_BYTES_MAX], char *msg, size_t msg_cap)
{
    struct sasl_plain_msg m;
    int rc = sasl_plain_parse(tok, len, &m, msg, msg_cap);
    if (rc != 0)
        return rc;
    const struct sasl_plain_user *found = NULL;
    for (size_t i = 0; i < users->count; i++) {
        const struct sasl_plain_user *u = &users->users[i];
        if (strlen(u->name) == m.user_len && memcmp(u->name, m.user, m.user_len) == 0)
            found = u;
    }
    /* an unknown user costs the same comparison as a known one */
    static const char dummy[] = "laminar-no-such-user";
    const char *want = found ? found->password : dummy;
    bool ok = password_equal(m.password, m.password_len, want, strlen(want));
    if (!ok || found == NULL)
        return fail(msg, msg_cap, "Authentication failed: Invalid username or password");
    LM_ASSERT(m.user_len < SASL_USER_BYTES_MAX);
    memcpy(user, m.user, m.user_len);
    user[m.user_len] = '\0';
    return 0;
}

void sasl_plain_users_free(struct sasl_plain_users *u)
{
    for (size_t i = 0; i < u->count; i++) {
        OPENSSL_cleanse(u->users[i].password, strlen(u->users[i].password));
        free(u->users[i].name);
        free(u->users[i].password);
    }
    free(u->users);
    u->users = NULL;
    u->count = 0;
}

/* ---- JAAS --------------------------------------------------------------------------------- */

static const char *skip_ws(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
        p++;
    return p;
}

static bool word_char(char c)
{
    return c != '\0' && c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != ';' && c != '=' &&
           c != '"';
}

/* A bare word or a quoted string at *pp; the result is malloc'd. */
static int jaas_token(const char **pp, char **out, char *err, size_t err_cap)
{
    const char *p = *pp;
    size_t cap = strlen(p) + 1, n = 0;
    char *s = malloc(cap);
    if (s == NULL)
        return LM_E_NOMEM;
    if (*p == '"') {
        p++;
        while (*p != '"') {
            if (*p == '\0') {
                free(s);
                return fail(err, err_cap, "unterminated quoted value");
            }
            if (*p == '\\' && p[1] != '\0')
                p++;
            s[n++] = *p++;
        }
        p++;
    } else {
        while (word_char(*p))
            s[n++] = *p++;
        if (n == 0) {
            free(s);
            return fail(err, err_cap, "expected a word at '%.20s'", p);
        }
    }
    s[n] = '\0';
    *out = s;
    *pp = p;
    return 0;
}

void sasl_jaas_free(struct sasl_jaas *j)
{
    free(j->module);
    for (size_t i = 0; i < j->option_count; i++) {
        free(j->options[i].key);
        if (j->options[i].value != NULL)
            OPENSSL_cleanse(j->options[i].value, strlen(j->options[i].value));
        free(j->options[i].value);
    }
    free(j->options);
    memset(j, 0, sizeof(*j));
}

int sasl_jaas_parse(const char *text, struct sasl_jaas *out, char *err, size_t err_cap)
{
    memset(out, 0, sizeof(*out));
    if (strlen(text) > SASL_JAAS_TEXT_MAX)
        return fail(err, err_cap, "JAAS config too long");
    const char *p = skip_ws(text);
    char *flag = NULL;
    int rc = jaas_token(&p, &out->module, err, err_cap);
    if (rc == 0) {
        p = skip_ws(p);
        rc = jaas_token(&p, &flag, err, err_cap);
    }
    if (rc == 0) {
        static const char *const flags[] = {"required", "requisite", "sufficient", "optional"};
        bool known = false;
        for (size_t i = 0; i < LM_ARRAY_LEN(flags); i++)
            known |= strcasecmp(flag, flags[i]) == 0;
        if (!known)
            rc = fail(err, err_cap, "invalid login module control flag '%s'", flag);
        else
            snprintf(out->flag, sizeof(out->flag), "%s", flag);
    }
    free(flag);
    while (rc == 0) {
        p = skip_ws(p);
        if (*p == ';')
            break;
        if (*p == '\0') {
            rc = fail(err, err_cap, "login module entry does not end with ';'");
            break;
        }
        if (out->option_count == SASL_JAAS_OPTIONS_MAX) {
            rc = fail(err, err_cap, "too many options");
            break;
        }
        char *key = NULL, *value = NULL;
        rc = jaas_token(&p, &key, err, err_cap);
        if (rc == 0) {
            p = skip_ws(p);
            if (*p != '=')
                rc = fail(err, err_cap, "expected '=' after option %s", key);
            else
                p = skip_ws(p + 1);
        }
        if (rc == 0)
            rc = jaas_token(&p, &value, err, err_cap);
        struct sasl_jaas_option *grown =
            rc == 0 ? realloc(out->options, (out->option_count + 1) * sizeof(*grown)) : NULL;
        if (rc == 0 && grown == NULL)
            rc = LM_E_NOMEM;
        if (rc != 0) {
            free(key);
            free(value);
            break;
        }
        out->options = grown;
        out->options[out->option_count++] = (struct sasl_jaas_option){key, value};
    }
    if (rc == 0) {
        p = skip_ws(p + 1);
        if (*p != '\0') /* Kafka: "JAAS config property contains 2 login modules" */
            rc = fail(err, err_cap,
                      "JAAS config property contains more than one login module, "
                      "should be 1 module");
    }
    if (rc != 0)
        sasl_jaas_free(out);
    return rc;
}

int sasl_jaas_plain_users(const struct sasl_jaas *j, struct sasl_plain_users *out, char *err,
                          size_t err_cap)
{
    memset(out, 0, sizeof(*out));
    if (strcmp(j->module, "org.apache.kafka.common.security.plain.PlainLoginModule") != 0)
        return fail(err, err_cap,
                    "login module %s does not serve PLAIN (expected "
                    "org.apache.kafka.common.security.plain.PlainLoginModule)",
                    j->module);
    size_t n = 0;
    for (size_t i = 0; i < j->option_count; i++)
        n += strncmp(j->options[i].key, "user_", 5) == 0;
    if (n > SASL_PLAIN_USERS_MAX)
        return fail(err, err_cap, "more than %d PLAIN users", SASL_PLAIN_USERS_MAX);
    out->users = calloc(n ? n : 1, sizeof(*out->users));
    if (out->users == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < j->option_count; i++) {
        const struct sasl_jaas_option *o = &j->options[i];
        if (strncmp(o->key, "user_", 5) != 0)
            continue;
        const char *name = o->key + 5;
        int rc = 0;
        if (name[0] == '\0' || strlen(name) >= SASL_USER_BYTES_MAX ||
            strlen(o->value) > SASL_PASSWORD_BYTES_MAX)
            rc = fail(err, err_cap, "PLAIN user option %s: empty or too long", o->key);
        for (size_t k = 0; rc == 0 && k < out->count; k++)
            if (strcmp(out->users[k].name, name) == 0)
                rc = fail(err, err_cap, "PLAIN user %s given twice", name);
        struct sasl_plain_user *u = &out->users[out->count];
        if (rc == 0) {
            u->name = strdup(name);
            u->password = strdup(o->value);
            out->count++;
            if (u->name == NULL || u->password == NULL)
                rc = LM_E_NOMEM;
        }
        if (rc != 0) {
            sasl_plain_users_free(out);
            return rc;
        }
    }
    return 0;
}

/* ---- SCRAM -------------------------------------------------------------------------------- */

int sasl_scram_salted_password(enum sasl_mech mech, const char *password, size_t password_len,
                               const uint8_t *salt, size_t salt_len, int32_t iterations,
                               uint8_t out[SASL_SCRAM_KEY_BYTES_MAX])
{
    const EVP_MD *md = scram_md(mech);
    if (md == NULL || iterations < 1 || salt_len == 0 || salt_len > SASL_SCRAM_SALT_BYTES_MAX ||
        password_len > INT32_MAX)
        return LM_E_INVALID;
    size_t n = sasl_scram_key_len(mech);
    return PKCS5_PBKDF2_HMAC(password, (int)password_len, salt, (int)salt_len, iterations, md,
                             (int)n, out) == 1
               ? 0
               : LM_E_INVALID;
}

static bool hmac(enum sasl_mech mech, const uint8_t *key, size_t key_len, const void *data,
                 size_t len, uint8_t *out)
{
    unsigned int n = 0;
    return HMAC(scram_md(mech), key, (int)key_len, data, len, out, &n) != NULL &&
           n == sasl_scram_key_len(mech);
}

static bool digest(enum sasl_mech mech, const uint8_t *data, size_t len, uint8_t *out)
{
    unsigned int n = 0;
    return EVP_Digest(data, len, out, &n, scram_md(mech), NULL) == 1 &&
           n == sasl_scram_key_len(mech);
}

int sasl_scram_cred_from_salted(enum sasl_mech mech, const uint8_t *salted, size_t salted_len,
                                const uint8_t *salt, size_t salt_len, int32_t iterations,
                                struct sasl_scram_cred *cred)
{
    size_t n = sasl_scram_key_len(mech);
    if (n == 0 || salted_len != n || salt_len == 0 || salt_len > SASL_SCRAM_SALT_BYTES_MAX)
        return LM_E_INVALID;
    memset(cred, 0, sizeof(*cred));
    cred->mech = mech;
    cred->iterations = iterations;
    memcpy(cred->salt, salt, salt_len);
    cred->salt_len = (uint32_t)salt_len;
    uint8_t client_key[SASL_SCRAM_KEY_BYTES_MAX];
    bool ok = hmac(mech, salted, n, "Client Key", 10, client_key) &&
              digest(mech, client_key, n, cred->stored_key) &&
              hmac(mech, salted, n, "Server Key", 10, cred->server_key);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    return ok ? 0 : LM_E_INVALID;
}

int sasl_scram_cred_from_password(enum sasl_mech mech, const char *password, int32_t iterations,
                                  struct sasl_scram_cred *cred)
{
    uint8_t salt[32], salted[SASL_SCRAM_KEY_BYTES_MAX];
    if (RAND_bytes(salt, sizeof(salt)) != 1)
        return LM_E_IO;
    int rc = sasl_scram_salted_password(mech, password, strlen(password), salt, sizeof(salt),
                                        iterations, salted);
    if (rc == 0)
        rc = sasl_scram_cred_from_salted(mech, salted, sasl_scram_key_len(mech), salt, sizeof(salt),
                                         iterations, cred);
    OPENSSL_cleanse(salted, sizeof(salted));
    return rc;
}

void sasl_scram_server_init(struct sasl_scram_server *s, enum sasl_mech mech)
{
    LM_ASSERT(sasl_mech_is_scram(mech));
    memset(s, 0, sizeof(*s));
    s->mech = mech;
    s->step = SASL_SCRAM_START;
}

/* RFC 5802 §5.1 saslname: "=2C" is ',' and "=3D" is '='; any other '=' or a ',' is invalid. */
static bool saslname_decode(const char *p, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        char c = p[i];
        if (c == ',' || c == '\0')
            return false;
        if (c == '=') {
            if (i + 2 >= n)
                return false;
            if (p[i + 1] == '2' && p[i + 2] == 'C')
                c = ',';
            else if (p[i + 1] == '3' && p[i + 2] == 'D')
                c = '=';
            else
                return false;
            i += 2;
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return o > 0;
}

/* The next ','-separated attribute of a SCRAM message: "x=value". */
struct attr {
    char name;
    const char *value;
    size_t len;
};

static bool attr_next(const char **p, const char *end, struct attr *a)
{
    if (*p >= end)
        return false;
    const char *s = *p;
    const char *comma = memchr(s, ',', (size_t)(end - s));
    const char *e = comma ? comma : end;
    if (e - s < 2 || s[1] != '=')
        return false;
    a->name = s[0];
    a->value = s + 2;
    a->len = (size_t)(e - s - 2);
    *p = comma ? comma + 1 : end;
    return true;
}

static bool printable_nonce(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] < 0x21 || p[i] > 0x7e || p[i] == ',')
            return false;
    return n > 0;
}

static int scram_first(struct sasl_scram_server *s, const char *t, size_t len,
                       sasl_scram_lookup_fn lookup, void *lookup_ctx, const char *server_nonce,
                       uint8_t *out, size_t out_cap, size_t *out_len, char *msg, size_t msg_cap)
{
    static const char bad[] = "Authentication failed: Invalid SCRAM client first message";
    const char *end = t + len, *p = t;
    /* gs2-header: gs2-cbind-flag "," [authzid] "," */
    if (len < 3 || (t[0] != 'n' && t[0] != 'y') || t[1] != ',') {
        if (len > 0 && t[0] == 'p')
            return fail(msg, msg_cap, "Authentication failed: channel binding is not supported");
        return fail(msg, msg_cap, "%s", bad);
    }
    p = t + 2;
    const char *comma = memchr(p, ',', (size_t)(end - p));
    if (comma == NULL)
        return fail(msg, msg_cap, "%s", bad);
    char authzid[SASL_USER_BYTES_MAX] = "";
    if (comma > p) {
        if (comma - p < 3 || p[0] != 'a' || p[1] != '=' ||
            !saslname_decode(p + 2, (size_t)(comma - p - 2), authzid, sizeof(authzid)))
            return fail(msg, msg_cap, "%s", bad);
    }
    p = comma + 1;
    s->gs2_len = (size_t)(p - t);
    if (s->gs2_len >= sizeof(s->gs2_header))
        return fail(msg, msg_cap, "%s", bad);
    memcpy(s->gs2_header, t, s->gs2_len);
    const char *bare = p;
    struct attr a;
    if (!attr_next(&p, end, &a) || a.name == 'm')
        return fail(msg, msg_cap, "%s", bad);
    if (a.name != 'n' || !saslname_decode(a.value, a.len, s->user, sizeof(s->user)))
        return fail(msg, msg_cap, "%s", bad);
    if (!attr_next(&p, end, &a) || a.name != 'r' || a.len > SASL_SCRAM_NONCE_BYTES_MAX ||
        !printable_nonce(a.value, a.len))
        return fail(msg, msg_cap, "%s", bad);
    memcpy(s->nonce, a.value, a.len);
    s->nonce_len = a.len;
    /* Kafka's extensions (KIP-84 ScramExtensions): key=value pairs; tokenauth asks for a
     * delegation token, which this broker does not issue. */
    while (p < end) {
        const char *s0 = p;
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        const char *eq = memchr(s0, '=', (size_t)(e - s0));
        if (eq == NULL || eq == s0)
            return fail(msg, msg_cap, "%s", bad);
        if ((size_t)(eq - s0) == 9 && memcmp(s0, "tokenauth", 9) == 0 &&
            !((size_t)(e - eq - 1) == 5 && strncasecmp(eq + 1, "false", 5) == 0))
            return fail(msg, msg_cap,
                        "Authentication failed: delegation tokens are not enabled on this "
                        "broker");
        p = c ? c + 1 : end;
    }
    if (authzid[0] != '\0' && strcmp(authzid, s->user) != 0)
        return fail(msg, msg_cap,
                    "Authentication failed: Client requested an authorization id that is "
                    "different from username");
    if (!lookup(lookup_ctx, s->user, s->mech, &s->cred) || s->cred.mech != s->mech ||
        s->cred.salt_len == 0 || s->cred.salt_len > SASL_SCRAM_SALT_BYTES_MAX ||
        s->cred.iterations < 1)
        return fail(msg, msg_cap, "Authentication failed: Invalid user credentials");
    /* server nonce: 24 random bytes in base64 (no ',') */
    char snonce[SASL_SCRAM_NONCE_BYTES_MAX + 1];
    if (server_nonce != NULL) {
        size_t n = strlen(server_nonce);
        if (n > SASL_SCRAM_NONCE_BYTES_MAX || !printable_nonce(server_nonce, n))
            return fail(msg, msg_cap, "Authentication failed: bad server nonce");
        memcpy(snonce, server_nonce, n + 1);
    } else {
        uint8_t rnd[24];
        if (RAND_bytes(rnd, sizeof(rnd)) != 1)
            return fail(msg, msg_cap, "Authentication failed: no randomness");
        sasl_b64_encode(rnd, sizeof(rnd), snonce);
    }
    size_t sn = strlen(snonce);
    memcpy(s->nonce + s->nonce_len, snonce, sn);
    s->nonce_len += sn;
    s->nonce[s->nonce_len] = '\0';
    char salt64[((SASL_SCRAM_SALT_BYTES_MAX + 2) / 3) * 4 + 1];
    sasl_b64_encode(s->cred.salt, s->cred.salt_len, salt64);
    int n =
        snprintf((char *)out, out_cap, "r=%s,s=%s,i=%d", s->nonce, salt64, (int)s->cred.iterations);
    size_t bare_len = (size_t)(end - bare);
    if (n < 0 || (size_t)n >= out_cap || bare_len + 1 + (size_t)n > sizeof(s->auth_start))
        return fail(msg, msg_cap, "%s", bad);
    *out_len = (size_t)n;
    memcpy(s->auth_start, bare, bare_len);
    s->auth_start[bare_len] = ',';
    memcpy(s->auth_start + bare_len + 1, out, (size_t)n);
    s->auth_start_len = bare_len + 1 + (size_t)n;
    s->step = SASL_SCRAM_SENT_FIRST;
    return 0;
}

static int scram_final(struct sasl_scram_server *s, const char *t, size_t len, uint8_t *out,
                       size_t out_cap, size_t *out_len, char *msg, size_t msg_cap)
{
    static const char bad[] = "Authentication failed: Invalid SCRAM client final message";
    const char *end = t + len, *p = t;
    /* the proof is the last attribute */
    const char *proof_at = NULL;
    for (const char *q = t; q + 3 <= end; q++)
        if (q[0] == ',' && q[1] == 'p' && q[2] == '=')
            proof_at = q;
    if (proof_at == NULL)
        return fail(msg, msg_cap, "%s", bad);
    struct attr a;
    if (!attr_next(&p, proof_at, &a) || a.name != 'c')
        return fail(msg, msg_cap, "%s", bad);
    uint8_t cb[sizeof(s->gs2_header)];
    int cbn = a.len <= 4 * sizeof(cb) / 3 ? sasl_b64_decode(a.value, a.len, cb, sizeof(cb)) : -1;
    if (cbn < 0 || (size_t)cbn != s->gs2_len || memcmp(cb, s->gs2_header, s->gs2_len) != 0)
        return fail(msg, msg_cap, "Authentication failed: Invalid channel binding");
    if (!attr_next(&p, proof_at, &a) || a.name != 'r')
        return fail(msg, msg_cap, "%s", bad);
    /* Kafka's ScramSaslServer accepts a nonce that ends with the server-first nonce
     * (endsWith), and librdkafka relies on it: it sends its client nonce again in front of
     * the whole server nonce. The proof covers the nonce as sent either way. */
    if (a.len < s->nonce_len ||
        memcmp(a.value + (a.len - s->nonce_len), s->nonce, s->nonce_len) != 0)
        return fail(msg, msg_cap,
                    "Authentication failed: Invalid server nonce: does not start "
                    "with client nonce");
    size_t klen = sasl_scram_key_len(s->mech);
    uint8_t proof[SASL_SCRAM_KEY_BYTES_MAX + 3];
    const char *pv = proof_at + 3;
    size_t pvn = (size_t)(end - pv);
    int pn =
        pvn <= 4 * ((sizeof(proof) + 2) / 3) ? sasl_b64_decode(pv, pvn, proof, sizeof(proof)) : -1;
    if (pn < 0 || (size_t)pn != klen)
        return fail(msg, msg_cap, "%s", bad);
    /* AuthMessage = client-first-message-bare "," server-first-message ","
     * client-final-message-without-proof (RFC 5802 §3) */
    size_t without = (size_t)(proof_at - t);
    uint8_t *auth = malloc(s->auth_start_len + 1 + without);
    if (auth == NULL)
        return fail(msg, msg_cap, "Authentication failed: out of memory");
    memcpy(auth, s->auth_start, s->auth_start_len);
    auth[s->auth_start_len] = ',';
    memcpy(auth + s->auth_start_len + 1, t, without);
    size_t auth_len = s->auth_start_len + 1 + without;
    uint8_t sig[SASL_SCRAM_KEY_BYTES_MAX], client_key[SASL_SCRAM_KEY_BYTES_MAX],
        stored[SASL_SCRAM_KEY_BYTES_MAX], server_sig[SASL_SCRAM_KEY_BYTES_MAX];
    bool ok = hmac(s->mech, s->cred.stored_key, klen, auth, auth_len, sig);
    for (size_t i = 0; ok && i < klen; i++)
        client_key[i] = proof[i] ^ sig[i];
    ok = ok && digest(s->mech, client_key, klen, stored) &&
         hmac(s->mech, s->cred.server_key, klen, auth, auth_len, server_sig);
    free(auth);
    bool match = ok && sasl_ct_equal(stored, s->cred.stored_key, klen);
    OPENSSL_cleanse(client_key, sizeof(client_key));
    s->step = SASL_SCRAM_DONE;
    if (!match)
        return fail(msg, msg_cap, "Authentication failed: Invalid user credentials");
    char v[((SASL_SCRAM_KEY_BYTES_MAX + 2) / 3) * 4 + 1];
    size_t vn = sasl_b64_encode(server_sig, klen, v);
    if (vn + 2 > out_cap)
        return fail(msg, msg_cap, "%s", bad);
    memcpy(out, "v=", 2);
    memcpy(out + 2, v, vn);
    *out_len = vn + 2;
    return 0;
}

int sasl_scram_server_step(struct sasl_scram_server *s, const uint8_t *tok, size_t len,
                           sasl_scram_lookup_fn lookup, void *lookup_ctx, const char *server_nonce,
                           uint8_t *out, size_t out_cap, size_t *out_len, char *msg, size_t msg_cap)
{
    LM_ASSERT(sasl_mech_is_scram(s->mech) && out != NULL && out_len != NULL);
    *out_len = 0;
    if (s->step == SASL_SCRAM_DONE)
        return LM_E_STATE;
    if (len > SASL_TOKEN_BYTES_MAX || (len > 0 && memchr(tok, 0, len) != NULL) || len == 0) {
        s->step = SASL_SCRAM_DONE;
        return fail(msg, msg_cap, "Authentication failed: Invalid SCRAM message");
    }
    int rc = s->step == SASL_SCRAM_START
                 ? scram_first(s, (const char *)tok, len, lookup, lookup_ctx, server_nonce, out,
                               out_cap, out_len, msg, msg_cap)
                 : scram_final(s, (const char *)tok, len, out, out_cap, out_len, msg, msg_cap);
    if (rc != 0) {
        s->step = SASL_SCRAM_DONE;
        OPENSSL_cleanse(&s->cred, sizeof(s->cred));
    }
    return rc;
}
