/* TLS listeners over libssl: contexts from Kafka's ssl.* settings, Kafka's principal mapping
 * rules, and a connection engine over in-memory BIOs (tls.h). */
#define _GNU_SOURCE
#include "broker/security/tls.h"

#include <ctype.h>
#include <errno.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <arpa/inet.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

static const char *const g_key_names[BROKER_TLS_KEYS_COUNT] = {
    [BROKER_TLS_KEYSTORE_TYPE] = "ssl.keystore.type",
    [BROKER_TLS_KEYSTORE_LOCATION] = "ssl.keystore.location",
    [BROKER_TLS_KEYSTORE_KEY] = "ssl.keystore.key",
    [BROKER_TLS_KEYSTORE_CHAIN] = "ssl.keystore.certificate.chain",
    [BROKER_TLS_KEY_PASSWORD] = "ssl.key.password",
    [BROKER_TLS_TRUSTSTORE_TYPE] = "ssl.truststore.type",
    [BROKER_TLS_TRUSTSTORE_LOCATION] = "ssl.truststore.location",
    [BROKER_TLS_TRUSTSTORE_CERTS] = "ssl.truststore.certificates",
    [BROKER_TLS_CLIENT_AUTH] = "ssl.client.auth",
    [BROKER_TLS_ENABLED_PROTOCOLS] = "ssl.enabled.protocols",
    [BROKER_TLS_CIPHER_SUITES] = "ssl.cipher.suites",
    [BROKER_TLS_PRINCIPAL_RULES] = "ssl.principal.mapping.rules",
    [BROKER_TLS_PROTOCOL] = "ssl.protocol",
    [BROKER_TLS_KEYSTORE_PASSWORD] = "ssl.keystore.password",
    [BROKER_TLS_TRUSTSTORE_PASSWORD] = "ssl.truststore.password",
    [BROKER_TLS_ENDPOINT_ALGORITHM] = "ssl.endpoint.identification.algorithm",
};

const char *broker_tls_key_name(enum broker_tls_key k)
{
    LM_ASSERT(k < BROKER_TLS_KEYS_COUNT);
    return g_key_names[k];
}

/* The first error on OpenSSL's queue, as text (the queue is cleared). */
static void ssl_err_text(char *out, size_t out_len)
{
    unsigned long e = ERR_get_error();
    const char *r = e != 0 ? ERR_reason_error_string(e) : NULL;
    snprintf(out, out_len, "%s", r != NULL ? r : "unknown TLS error");
    ERR_clear_error();
}

/* ---- principal mapping (Kafka's SslPrincipalMapper) --------------------------------------- */

struct tls_rule {
    bool is_default;
    regex_t re;
    char *replacement;
    char kase; /* 0, 'L' or 'U' */
};

struct broker_tls_rules {
    struct tls_rule rules[BROKER_TLS_RULES_MAX];
    uint32_t count;
};

void broker_tls_rules_free(struct broker_tls_rules *r)
{
    if (r == NULL)
        return;
    for (uint32_t i = 0; i < r->count; i++) {
        if (!r->rules[i].is_default)
            regfree(&r->rules[i].re);
        free(r->rules[i].replacement);
    }
    free(r);
}

/* Reads a rule field up to an unescaped '/' (Kafka's `(\\.|[^\\/])*`); \/ becomes '/', other
 * escapes stay for the regex. Returns the field (malloc'd) and moves *pos past the '/'. */
static char *rule_field(const char **pos)
{
    const char *p = *pos;
    size_t cap = strlen(p) + 1, n = 0;
    char *out = malloc(cap);
    if (out == NULL)
        return NULL;
    while (*p != '\0' && *p != '/') {
        if (*p == '\\' && p[1] != '\0') {
            if (p[1] != '/')
                out[n++] = '\\';
            out[n++] = p[1];
            p += 2;
            continue;
        }
        out[n++] = *p++;
    }
    out[n] = '\0';
    if (*p != '/') {
        free(out);
        return NULL;
    }
    *pos = p + 1;
    return out;
}

/* Java's regex syntax to POSIX ERE for what mapping rules use: the reluctant and possessive
 * modifiers (`*?`, `+?`, `*+`, ...) are dropped (the whole DN must match, so they only differ
 * in which split they pick when a separator repeats) and the \d \s \w classes are spelled out.
 * Counted repetition ({n,m}), a quantifier on a quantifier and back-references are refused
 * (NULL with *why): glibc's compiler can take memory or time exponential in them, and an
 * operator's rule gains nothing from them. The result is wrapped in ^( )$: Kafka's
 * Matcher.matches() needs the whole DN. */
enum { RULE_PATTERN_BYTES_MAX = 512 };
static char *java_regex_to_ere(const char *re, const char **why)
{
    size_t n = strlen(re);
    *why = NULL;
    if (n > RULE_PATTERN_BYTES_MAX) {
        *why = "pattern longer than 512 bytes";
        return NULL;
    }
    char *out = malloc(n * 12 + 8);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    bool in_class = false;
    int quantified = 0; /* 1: the last item was quantified, 2: and a modifier followed */
    int depth = 0;      /* open groups */
    out[o++] = '^';
    out[o++] = '(';
    for (size_t i = 0; i < n; i++) {
        char ch = re[i];
        if (ch == '\\' && i + 1 < n) {
            const char *cls = NULL;
            char next = re[i + 1];
            if (!in_class && next >= '1' && next <= '9') {
                *why = "back-references are not supported";
                free(out);
                return NULL;
            }
            switch (next) {
            case 'd':
                cls = in_class ? "0-9" : "[0-9]";
                break;
            case 's':
                cls = in_class ? "[:space:]" : "[[:space:]]";
                break;
            case 'w':
                cls = in_class ? "[:alnum:]_" : "[[:alnum:]_]";
                break;
            default:
                break;
            }
            if (cls != NULL) {
                memcpy(out + o, cls, strlen(cls));
                o += strlen(cls);
            } else {
                out[o++] = '\\';
                out[o++] = next;
            }
            i++;
            quantified = 0;
            continue;
        }
        if (in_class) {
            if (ch == ']')
                in_class = false;
            out[o++] = ch;
            continue;
        }
        if (ch == '{') {
            *why = "counted repetition {n,m} is not supported";
            free(out);
            return NULL;
        }
        if (ch == '*' || ch == '+' || ch == '?') {
            if (quantified == 1 && ch != '*') {
                quantified = 2; /* reluctant or possessive -> greedy */
                continue;
            }
            if (quantified != 0 || o == 2 || out[o - 1] == '(' || out[o - 1] == '|') {
                *why = "a quantifier with nothing to repeat";
                free(out);
                return NULL;
            }
            quantified = 1;
            out[o++] = ch;
            continue;
        }
        quantified = 0;
        if (ch == '(')
            depth++;
        if (ch == ')' && depth-- == 0) {
            *why = "unbalanced ')'"; /* it would close our ^( ) wrapper */
            free(out);
            return NULL;
        }
        if (ch == '[') {
            in_class = true;
            out[o++] = ch;
            if (i + 1 < n && re[i + 1] == '^')
                out[o++] = re[++i];
            if (i + 1 < n && re[i + 1] == ']')
                out[o++] = re[++i];
            continue;
        }
        out[o++] = ch;
    }
    out[o++] = ')';
    out[o++] = '$';
    out[o] = '\0';
    return out;
}

static bool is_sep(char c)
{
    return c == ',' || c == '\n';
}

static const char *skip_space(const char *p)
{
    while (*p == ' ' || *p == '\t' || *p == '\r')
        p++;
    return p;
}

int broker_tls_rules_parse(const char *text, struct broker_tls_rules **out, char *err,
                           size_t err_len)
{
    *out = NULL;
    struct broker_tls_rules *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return LM_E_NOMEM;
    const char *p = text != NULL ? text : "";
    p = skip_space(p);
    while (*p == '\n')
        p = skip_space(p + 1);
    if (*p == '\0') {
        r->rules[0].is_default = true;
        r->count = 1;
        *out = r;
        return 0;
    }
    while (*p != '\0') {
        if (r->count == BROKER_TLS_RULES_MAX) {
            snprintf(err, err_len, "more than %d rules", BROKER_TLS_RULES_MAX);
            broker_tls_rules_free(r);
            return LM_E_CONFIG;
        }
        struct tls_rule *rule = &r->rules[r->count];
        const char *start = p;
        if (strncmp(p, "DEFAULT", 7) == 0 && (p[7] == '\0' || is_sep(p[7]) || p[7] == ' ')) {
            rule->is_default = true;
            r->count++;
            p += 7;
        } else if (strncmp(p, "RULE:", 5) == 0) {
            p += 5;
            char *pattern = rule_field(&p);
            char *repl = pattern != NULL ? rule_field(&p) : NULL;
            if (repl == NULL) {
                free(pattern);
                snprintf(err, err_len, "invalid rule '%.60s' (RULE:pattern/replacement/[LU])",
                         start);
                broker_tls_rules_free(r);
                return LM_E_CONFIG;
            }
            if (*p == 'L' || *p == 'U')
                rule->kase = *p++;
            const char *why = NULL;
            char *ere = java_regex_to_ere(pattern, &why);
            int rc = ere != NULL ? regcomp(&rule->re, ere, REG_EXTENDED) : REG_ESPACE;
            free(ere);
            if (rc != 0) {
                snprintf(err, err_len, "invalid pattern '%.60s' in rule '%.60s'%s%s", pattern,
                         start, why != NULL ? ": " : "", why != NULL ? why : "");
                free(pattern);
                free(repl);
                broker_tls_rules_free(r);
                return LM_E_CONFIG;
            }
            free(pattern);
            rule->replacement = repl;
            r->count++;
            /* Kafka's splitter ignores anything after the flags up to the separator */
            while (*p != '\0' && !is_sep(*p))
                p++;
        } else {
            size_t n = strcspn(p, ",\n");
            snprintf(err, err_len, "invalid rule '%.*s' (DEFAULT or RULE:pattern/replacement/[LU])",
                     (int)(n > 60 ? 60 : n), p);
            broker_tls_rules_free(r);
            return LM_E_CONFIG;
        }
        p = skip_space(p);
        if (*p != '\0' && !is_sep(*p)) {
            snprintf(err, err_len, "invalid rule '%.60s' (rules are separated by commas)", start);
            broker_tls_rules_free(r);
            return LM_E_CONFIG;
        }
        while (is_sep(*p) || *p == ' ' || *p == '\t' || *p == '\r')
            p++;
    }
    *out = r;
    return 0;
}

/* Expands the replacement ($1..$9 are groups; \x is x), as Java's Matcher.replaceAll. */
static int rule_expand(const struct tls_rule *rule, const char *dn, const regmatch_t *m, char *out,
                       size_t out_len)
{
    size_t o = 0;
    for (const char *q = rule->replacement; *q != '\0'; q++) {
        const char *src = q;
        size_t n = 1;
        if (*q == '$' && q[1] >= '0' && q[1] <= '9') {
            int g = q[1] - '0' + 1; /* +1: the ^( )$ wrapper is group 1 */
            q++;
            if (g >= 10 || m[g].rm_so < 0) {
                n = 0;
            } else {
                src = dn + m[g].rm_so;
                n = (size_t)(m[g].rm_eo - m[g].rm_so);
            }
        } else if (*q == '\\' && q[1] != '\0') {
            src = ++q;
        }
        if (o + n >= out_len)
            return LM_E_TOO_LARGE;
        for (size_t i = 0; i < n; i++) {
            char ch = src[i];
            if (rule->kase == 'L')
                ch = (char)tolower((unsigned char)ch);
            else if (rule->kase == 'U')
                ch = (char)toupper((unsigned char)ch);
            out[o++] = ch;
        }
    }
    out[o] = '\0';
    return 0;
}

int broker_tls_rules_apply(const struct broker_tls_rules *r, const char *dn, char *out,
                           size_t out_len)
{
    LM_ASSERT(r != NULL && out_len > 0);
    for (uint32_t i = 0; i < r->count; i++) {
        const struct tls_rule *rule = &r->rules[i];
        if (rule->is_default) {
            if (strlen(dn) >= out_len)
                return LM_E_TOO_LARGE;
            snprintf(out, out_len, "%s", dn);
            return 0;
        }
        regmatch_t m[10];
        if (regexec(&rule->re, dn, 10, m, 0) != 0 || m[0].rm_so != 0 ||
            (size_t)m[0].rm_eo != strlen(dn))
            continue; /* Matcher.matches(): the whole DN or nothing */
        return rule_expand(rule, dn, m, out, out_len);
    }
    return LM_E_NOT_FOUND;
}

/* ---- listener context --------------------------------------------------------------------- */

struct broker_tls_ctx {
    SSL_CTX *ssl;
    /* the connections' BIOs (in-memory, tls.h): one method table per context, so a node
     * keeps no process-wide state */
    BIO_METHOD *bio_method;
    enum broker_tls_client_auth client_auth;
    struct broker_tls_rules *rules;
    int refs;        /* its owner's and one per connection (atomic) */
    bool client;     /* connects out (broker_tls_ctx_new_client) */
    bool check_host; /* client: the server certificate must name the host connected to */
};

static BIO_METHOD *bio_method_new(void);

void broker_tls_ctx_ref(struct broker_tls_ctx *ctx)
{
    __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED);
}

void broker_tls_ctx_free(struct broker_tls_ctx *ctx)
{
    if (ctx == NULL || __atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) != 0)
        return;
    SSL_CTX_free(ctx->ssl);
    BIO_meth_free(ctx->bio_method);
    broker_tls_rules_free(ctx->rules);
    free(ctx);
}

enum broker_tls_client_auth broker_tls_ctx_client_auth(const struct broker_tls_ctx *ctx)
{
    return ctx->client_auth;
}

/* Reads a whole file (small: PEM stores). NULL with errno when it cannot. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    size_t cap = 8192, n = 0;
    char *buf = malloc(cap);
    while (buf != NULL) {
        if (n + 4096 + 1 > cap) {
            if (cap > (16u << 20)) { /* no PEM store is this large */
                free(buf);
                buf = NULL;
                errno = EFBIG;
                break;
            }
            char *nb = realloc(buf, cap * 2);
            if (nb == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t r = fread(buf + n, 1, 4096, f);
        n += r;
        if (r < 4096) {
            if (ferror(f)) {
                free(buf);
                buf = NULL;
                errno = EIO;
            }
            break;
        }
    }
    fclose(f);
    if (buf != NULL)
        buf[n] = '\0';
    return buf;
}

/* Inline PEM from a properties file may have lost its line breaks (continuation lines are
 * joined): Kafka's own PEM parser ignores whitespace in the base64 body, so rebuild each
 * -----BEGIN X----- ... -----END X----- block with 64-column lines for OpenSSL. */
static char *pem_normalize(const char *in)
{
    size_t n = strlen(in);
    char *out = malloc(n * 2 + 64);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    const char *p = in;
    for (;;) {
        const char *b = strstr(p, "-----BEGIN ");
        if (b == NULL)
            break;
        const char *be = strstr(b + 11, "-----");
        if (be == NULL)
            break;
        be += 5;
        const char *e = strstr(be, "-----END ");
        if (e == NULL)
            break;
        const char *ee = strstr(e + 9, "-----");
        if (ee == NULL)
            break;
        ee += 5;
        memcpy(out + o, b, (size_t)(be - b));
        o += (size_t)(be - b);
        out[o++] = '\n';
        size_t col = 0;
        for (const char *q = be; q < e; q++) {
            if (isspace((unsigned char)*q))
                continue;
            out[o++] = *q;
            if (++col == 64) {
                out[o++] = '\n';
                col = 0;
            }
        }
        if (col != 0)
            out[o++] = '\n';
        memcpy(out + o, e, (size_t)(ee - e));
        o += (size_t)(ee - e);
        out[o++] = '\n';
        p = ee;
    }
    out[o] = '\0';
    return out;
}

static int pem_password(char *buf, int size, int rwflag, void *u)
{
    (void)rwflag;
    const char *pw = u;
    if (pw == NULL)
        return 0; /* never prompt on a terminal */
    size_t n = strlen(pw);
    if (n > (size_t)size)
        return 0;
    memcpy(buf, pw, n);
    return (int)n;
}

/* The value of key k or NULL; an empty value counts as unset (Kafka's null default). */
static const char *val(const struct broker_tls_settings *st, enum broker_tls_key k)
{
    const char *v = st->value[k];
    return v != NULL && v[0] != '\0' ? v : NULL;
}

static const char *key(const struct broker_tls_settings *st, enum broker_tls_key k)
{
    return st->key[k][0] != '\0' ? st->key[k] : g_key_names[k];
}

static int fail(char *err, size_t err_len, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t err_len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    ERR_clear_error();
    return LM_E_CONFIG;
}

/* The PEM text of a store: the file at loc_key or the inline value of inline_key. */
static int store_text(const struct broker_tls_settings *st, enum broker_tls_key loc_key,
                      enum broker_tls_key inline_key, char **out, enum broker_tls_key *from,
                      char *err, size_t err_len)
{
    *out = NULL;
    const char *loc = val(st, loc_key), *in = val(st, inline_key);
    if (loc != NULL && in != NULL)
        return fail(err, err_len, "%s and %s are both set; set one", key(st, loc_key),
                    key(st, inline_key));
    if (loc != NULL) {
        *from = loc_key;
        *out = read_file(loc);
        if (*out == NULL)
            return fail(err, err_len, "%s: cannot read '%s': %s", key(st, loc_key), loc,
                        strerror(errno));
        return 0;
    }
    if (in != NULL) {
        *from = inline_key;
        *out = pem_normalize(in);
        return *out != NULL ? 0 : LM_E_NOMEM;
    }
    return 0;
}

static int check_pem_type(const struct broker_tls_settings *st, enum broker_tls_key k, char *err,
                          size_t err_len)
{
    const char *t = val(st, k);
    if (t != NULL && strcasecmp(t, "PEM") != 0)
        return fail(err, err_len, "%s=%s is not supported (laminar reads PEM stores: set PEM)",
                    key(st, k), t);
    return 0;
}

static int load_keystore(SSL_CTX *ssl, const struct broker_tls_settings *st, char *err,
                         size_t err_len)
{
    LM_TRY(check_pem_type(st, BROKER_TLS_KEYSTORE_TYPE, err, err_len));
    if (val(st, BROKER_TLS_KEYSTORE_PASSWORD) != NULL)
        return fail(err, err_len,
                    "%s must not be set for a PEM keystore (use %s for an encrypted key)",
                    key(st, BROKER_TLS_KEYSTORE_PASSWORD), key(st, BROKER_TLS_KEY_PASSWORD));
    const char *loc = val(st, BROKER_TLS_KEYSTORE_LOCATION);
    const char *ikey = val(st, BROKER_TLS_KEYSTORE_KEY),
               *ichain = val(st, BROKER_TLS_KEYSTORE_CHAIN);
    if (loc == NULL && (ikey == NULL || ichain == NULL))
        return fail(err, err_len,
                    "a TLS listener needs %s (a PEM file with the private key and the "
                    "certificate chain) or %s and %s",
                    key(st, BROKER_TLS_KEYSTORE_LOCATION), key(st, BROKER_TLS_KEYSTORE_KEY),
                    key(st, BROKER_TLS_KEYSTORE_CHAIN));
    if (loc != NULL && (ikey != NULL || ichain != NULL))
        return fail(err, err_len, "%s and %s are both set; set one",
                    key(st, BROKER_TLS_KEYSTORE_LOCATION),
                    key(st, ikey != NULL ? BROKER_TLS_KEYSTORE_KEY : BROKER_TLS_KEYSTORE_CHAIN));
    char *key_text = NULL, *chain_text = NULL;
    enum broker_tls_key key_from = BROKER_TLS_KEYSTORE_KEY, chain_from = BROKER_TLS_KEYSTORE_CHAIN;
    if (loc != NULL) {
        key_from = chain_from = BROKER_TLS_KEYSTORE_LOCATION;
        key_text = read_file(loc);
        if (key_text == NULL)
            return fail(err, err_len, "%s: cannot read '%s': %s",
                        key(st, BROKER_TLS_KEYSTORE_LOCATION), loc, strerror(errno));
        chain_text = strdup(key_text);
    } else {
        key_text = pem_normalize(ikey);
        chain_text = pem_normalize(ichain);
    }
    int rc = 0;
    EVP_PKEY *pkey = NULL;
    X509 *leaf = NULL;
    BIO *kb = NULL, *cb = NULL;
    if (key_text == NULL || chain_text == NULL) {
        rc = LM_E_NOMEM;
        goto out;
    }
    const char *pw = val(st, BROKER_TLS_KEY_PASSWORD);
    kb = BIO_new_mem_buf(key_text, -1);
    cb = BIO_new_mem_buf(chain_text, -1);
    if (kb == NULL || cb == NULL) {
        rc = LM_E_NOMEM;
        goto out;
    }
    pkey = PEM_read_bio_PrivateKey(kb, NULL, pem_password, (void *)(uintptr_t)pw);
    if (pkey == NULL) {
        char why[128];
        ssl_err_text(why, sizeof(why));
        rc = fail(err, err_len, "%s: no usable private key (%s)%s", key(st, key_from), why,
                  pw == NULL ? "; an encrypted key needs ssl.key.password" : "");
        goto out;
    }
    leaf = PEM_read_bio_X509(cb, NULL, pem_password, NULL);
    if (leaf == NULL) {
        char why[128];
        ssl_err_text(why, sizeof(why));
        rc = fail(err, err_len, "%s: no certificate (%s)", key(st, chain_from), why);
        goto out;
    }
    if (SSL_CTX_use_certificate(ssl, leaf) != 1) {
        char why[128];
        ssl_err_text(why, sizeof(why));
        rc = fail(err, err_len, "%s: certificate refused (%s)", key(st, chain_from), why);
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(cb, NULL, pem_password, NULL);
        if (x == NULL)
            break;
        if (SSL_CTX_add0_chain_cert(ssl, x) != 1) {
            X509_free(x);
            rc = fail(err, err_len, "%s: chain certificate refused", key(st, chain_from));
            goto out;
        }
    }
    ERR_clear_error(); /* the end of the chain reads as "no start line" */
    if (SSL_CTX_use_PrivateKey(ssl, pkey) != 1 || SSL_CTX_check_private_key(ssl) != 1) {
        rc = fail(err, err_len, "%s: the private key does not match the certificate",
                  key(st, key_from));
        goto out;
    }
out:
    BIO_free(kb);
    BIO_free(cb);
    EVP_PKEY_free(pkey);
    X509_free(leaf);
    if (key_text != NULL)
        OPENSSL_cleanse(key_text, strlen(key_text));
    free(key_text);
    free(chain_text);
    return rc;
}

static int load_truststore(SSL_CTX *ssl, const struct broker_tls_settings *st, bool *loaded,
                           char *err, size_t err_len)
{
    *loaded = false;
    LM_TRY(check_pem_type(st, BROKER_TLS_TRUSTSTORE_TYPE, err, err_len));
    if (val(st, BROKER_TLS_TRUSTSTORE_PASSWORD) != NULL)
        return fail(err, err_len, "%s must not be set for a PEM truststore",
                    key(st, BROKER_TLS_TRUSTSTORE_PASSWORD));
    char *text = NULL;
    enum broker_tls_key from = BROKER_TLS_TRUSTSTORE_LOCATION;
    LM_TRY(store_text(st, BROKER_TLS_TRUSTSTORE_LOCATION, BROKER_TLS_TRUSTSTORE_CERTS, &text, &from,
                      err, err_len));
    if (text == NULL)
        return 0;
    BIO *b = BIO_new_mem_buf(text, -1);
    STACK_OF(X509_NAME) *names = sk_X509_NAME_new_null();
    X509_STORE *store = SSL_CTX_get_cert_store(ssl);
    int rc = 0, count = 0;
    if (b == NULL || names == NULL) {
        rc = LM_E_NOMEM;
        goto out;
    }
    for (;;) {
        X509 *x = PEM_read_bio_X509(b, NULL, pem_password, NULL);
        if (x == NULL)
            break;
        count++;
        X509_NAME *nm = X509_NAME_dup(X509_get_subject_name(x));
        if (X509_STORE_add_cert(store, x) != 1 || nm == NULL || sk_X509_NAME_push(names, nm) == 0) {
            X509_NAME_free(nm);
            X509_free(x);
            rc = fail(err, err_len, "%s: certificate %d refused", key(st, from), count);
            goto out;
        }
        X509_free(x);
    }
    ERR_clear_error();
    if (count == 0) {
        rc = fail(err, err_len, "%s: no PEM certificate found", key(st, from));
        goto out;
    }
    /* the CAs a client may pick its certificate by (CertificateRequest) */
    SSL_CTX_set_client_CA_list(ssl, names);
    names = NULL;
    *loaded = true;
out:
    sk_X509_NAME_pop_free(names, X509_NAME_free);
    BIO_free(b);
    free(text);
    return rc;
}

/* ssl.enabled.protocols (Kafka's default: TLSv1.2,TLSv1.3) and ssl.protocol. */
static int set_protocols(SSL_CTX *ssl, const struct broker_tls_settings *st, char *err,
                         size_t err_len)
{
    const char *proto = val(st, BROKER_TLS_PROTOCOL);
    if (proto != NULL && strcasecmp(proto, "TLS") != 0 && strcasecmp(proto, "TLSv1.2") != 0 &&
        strcasecmp(proto, "TLSv1.3") != 0)
        return fail(err, err_len, "%s=%s is not supported (TLS, TLSv1.2 or TLSv1.3)",
                    key(st, BROKER_TLS_PROTOCOL), proto);
    const char *list = val(st, BROKER_TLS_ENABLED_PROTOCOLS);
    bool v12 = list == NULL, v13 = list == NULL;
    for (const char *p = list; p != NULL && *p != '\0';) {
        p = skip_space(p);
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m == 7 && strncasecmp(p, "TLSv1.2", 7) == 0)
            v12 = true;
        else if (m == 7 && strncasecmp(p, "TLSv1.3", 7) == 0)
            v13 = true;
        else if (m > 0)
            return fail(err, err_len, "%s: protocol '%.*s' is not served (TLSv1.2, TLSv1.3)",
                        key(st, BROKER_TLS_ENABLED_PROTOCOLS), (int)m, p);
        p += n;
        if (*p == ',')
            p++;
    }
    if (!v12 && !v13)
        return fail(err, err_len, "%s: no protocol enabled", key(st, BROKER_TLS_ENABLED_PROTOCOLS));
    SSL_CTX_set_min_proto_version(ssl, v12 ? TLS1_2_VERSION : TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(ssl, v13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    return 0;
}

/* ssl.cipher.suites: Kafka gives JSSE (IANA) names; OpenSSL's own names are accepted too.
 * TLS 1.3 suites go to the ciphersuites list, the others to the cipher list; a protocol left
 * without a suite is disabled. */
static int set_ciphers(SSL_CTX *ssl, const struct broker_tls_settings *st, char *err,
                       size_t err_len)
{
    const char *list = val(st, BROKER_TLS_CIPHER_SUITES);
    if (list == NULL)
        return 0;
    size_t cap = strlen(list) * 2 + 64;
    char *l12 = calloc(1, cap), *l13 = calloc(1, cap);
    SSL *probe = NULL;
    int rc = 0;
    if (l12 == NULL || l13 == NULL) {
        rc = LM_E_NOMEM;
        goto out;
    }
    /* every cipher this OpenSSL knows, to map IANA names to OpenSSL's */
    SSL_CTX *all = SSL_CTX_new(TLS_server_method());
    if (all == NULL || SSL_CTX_set_cipher_list(all, "ALL:COMPLEMENTOFALL") != 1 ||
        (probe = SSL_new(all)) == NULL) {
        SSL_CTX_free(all);
        rc = LM_E_NOMEM;
        goto out;
    }
    SSL_CTX_free(all); /* probe holds it */
    STACK_OF(SSL_CIPHER) *ciphers = SSL_get1_supported_ciphers(probe);
    for (const char *p = list; *p != '\0';) {
        p = skip_space(p);
        size_t n = strcspn(p, ",");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        if (m > 0) {
            const SSL_CIPHER *found = NULL;
            for (int i = 0; ciphers != NULL && i < sk_SSL_CIPHER_num(ciphers) && !found; i++) {
                const SSL_CIPHER *c = sk_SSL_CIPHER_value(ciphers, i);
                const char *std = SSL_CIPHER_standard_name(c), *own = SSL_CIPHER_get_name(c);
                if ((std != NULL && strlen(std) == m && strncmp(std, p, m) == 0) ||
                    (strlen(own) == m && strncmp(own, p, m) == 0))
                    found = c;
            }
            if (found == NULL) {
                sk_SSL_CIPHER_free(ciphers);
                rc = fail(err, err_len, "%s: unknown cipher suite '%.*s'",
                          key(st, BROKER_TLS_CIPHER_SUITES), (int)m, p);
                goto out;
            }
            bool tls13 = strcmp(SSL_CIPHER_get_version(found), "TLSv1.3") == 0;
            char *dst = tls13 ? l13 : l12;
            const char *name = tls13 ? SSL_CIPHER_standard_name(found) : SSL_CIPHER_get_name(found);
            if (dst[0] != '\0')
                strcat(dst, ":");
            strncat(dst, name, cap - strlen(dst) - 2);
        }
        p += n;
        if (*p == ',')
            p++;
    }
    sk_SSL_CIPHER_free(ciphers);
    if (SSL_CTX_set_ciphersuites(ssl, l13) != 1) {
        rc = fail(err, err_len, "%s: TLS 1.3 suites refused", key(st, BROKER_TLS_CIPHER_SUITES));
        goto out;
    }
    if (l12[0] != '\0' && SSL_CTX_set_cipher_list(ssl, l12) != 1) {
        rc = fail(err, err_len, "%s: TLS 1.2 suites refused", key(st, BROKER_TLS_CIPHER_SUITES));
        goto out;
    }
    if (l12[0] == '\0')
        SSL_CTX_set_min_proto_version(ssl, TLS1_3_VERSION);
    if (l13[0] == '\0')
        SSL_CTX_set_max_proto_version(ssl, TLS1_2_VERSION);
    if (l12[0] == '\0' && l13[0] == '\0')
        rc = fail(err, err_len, "%s: no cipher suite", key(st, BROKER_TLS_CIPHER_SUITES));
out:
    SSL_free(probe);
    free(l12);
    free(l13);
    return rc;
}

int broker_tls_ctx_new(const struct broker_tls_settings *st, struct broker_tls_ctx **out, char *err,
                       size_t err_len)
{
    *out = NULL;
    struct broker_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx != NULL)
        ctx->refs = 1;
    if (ctx == NULL)
        return LM_E_NOMEM;
    ERR_clear_error();
    ctx->ssl = SSL_CTX_new(TLS_server_method());
    ctx->bio_method = bio_method_new();
    if (ctx->ssl == NULL || ctx->bio_method == NULL) {
        broker_tls_ctx_free(ctx);
        return LM_E_NOMEM;
    }
    int rc = 0;
    const char *ca = val(st, BROKER_TLS_CLIENT_AUTH);
    if (ca == NULL || strcasecmp(ca, "none") == 0)
        ctx->client_auth = BROKER_TLS_CLIENT_AUTH_NONE;
    else if (strcasecmp(ca, "requested") == 0)
        ctx->client_auth = BROKER_TLS_CLIENT_AUTH_REQUESTED;
    else if (strcasecmp(ca, "required") == 0)
        ctx->client_auth = BROKER_TLS_CLIENT_AUTH_REQUIRED;
    else
        rc = fail(err, err_len, "%s=%s: expected none, requested or required",
                  key(st, BROKER_TLS_CLIENT_AUTH), ca);
    const char *ep = val(st, BROKER_TLS_ENDPOINT_ALGORITHM);
    if (rc == 0 && ep != NULL && ep[0] != '\0' && strcasecmp(ep, "https") != 0)
        rc = fail(err, err_len, "%s=%s: expected https or empty",
                  key(st, BROKER_TLS_ENDPOINT_ALGORITHM), ep);
    if (rc == 0)
        rc = load_keystore(ctx->ssl, st, err, err_len);
    bool trust = false;
    if (rc == 0)
        rc = load_truststore(ctx->ssl, st, &trust, err, err_len);
    if (rc == 0 && ctx->client_auth != BROKER_TLS_CLIENT_AUTH_NONE && !trust)
        rc = fail(err, err_len, "%s=%s needs a truststore (%s or %s) to verify client certificates",
                  key(st, BROKER_TLS_CLIENT_AUTH), ca, key(st, BROKER_TLS_TRUSTSTORE_LOCATION),
                  key(st, BROKER_TLS_TRUSTSTORE_CERTS));
    if (rc == 0)
        rc = set_protocols(ctx->ssl, st, err, err_len);
    if (rc == 0)
        rc = set_ciphers(ctx->ssl, st, err, err_len);
    if (rc == 0) {
        char why[160];
        rc = broker_tls_rules_parse(val(st, BROKER_TLS_PRINCIPAL_RULES), &ctx->rules, why,
                                    sizeof(why));
        if (rc == LM_E_CONFIG)
            fail(err, err_len, "%s: %s", key(st, BROKER_TLS_PRINCIPAL_RULES), why);
    }
    if (rc != 0) {
        broker_tls_ctx_free(ctx);
        return rc;
    }
    int mode = SSL_VERIFY_NONE;
    if (ctx->client_auth == BROKER_TLS_CLIENT_AUTH_REQUESTED)
        mode = SSL_VERIFY_PEER;
    else if (ctx->client_auth == BROKER_TLS_CLIENT_AUTH_REQUIRED)
        mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx->ssl, mode, NULL);
    /* No renegotiation (a client could make the broker redo handshakes forever), no session
     * cache or tickets (Kafka clients keep their connections; nothing per session outlives its
     * connection), buffers released while idle (bounded memory per connection). */
    SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                      SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx->ssl, 0);
    SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
    static const unsigned char sid[] = "laminar";
    SSL_CTX_set_session_id_context(ctx->ssl, sid, sizeof(sid) - 1);
    *out = ctx;
    return 0;
}

/* The client side of the same settings, for a node's connections to its peers' SSL controller
 * listeners: the keystore's certificate is the node's client certificate (a listener with
 * ssl.client.auth=required demands one), the truststore verifies the server's certificate,
 * and ssl.endpoint.identification.algorithm=https (Kafka's default) also checks that it names
 * the host connected to (an IP address against its IP SANs); empty skips that check. */
int broker_tls_ctx_new_client(const struct broker_tls_settings *st, struct broker_tls_ctx **out,
                              char *err, size_t err_len)
{
    *out = NULL;
    struct broker_tls_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        return LM_E_NOMEM;
    ctx->refs = 1;
    ctx->client = true;
    ERR_clear_error();
    ctx->ssl = SSL_CTX_new(TLS_client_method());
    ctx->bio_method = bio_method_new();
    if (ctx->ssl == NULL || ctx->bio_method == NULL) {
        broker_tls_ctx_free(ctx);
        return LM_E_NOMEM;
    }
    int rc = 0;
    /* read as given: unset means Kafka's default (https), empty turns the check off */
    const char *ep = st->value[BROKER_TLS_ENDPOINT_ALGORITHM];
    if (ep == NULL || strcasecmp(ep, "https") == 0)
        ctx->check_host = true;
    else if (ep[0] != '\0')
        rc = fail(err, err_len, "%s=%s: expected https or empty",
                  key(st, BROKER_TLS_ENDPOINT_ALGORITHM), ep);
    if (rc == 0)
        rc = load_keystore(ctx->ssl, st, err, err_len);
    bool trust = false;
    if (rc == 0)
        rc = load_truststore(ctx->ssl, st, &trust, err, err_len);
    if (rc == 0 && !trust)
        rc = fail(err, err_len,
                  "connections to the peers' SSL controller listeners need a truststore (%s or "
                  "%s) to verify their certificates",
                  key(st, BROKER_TLS_TRUSTSTORE_LOCATION), key(st, BROKER_TLS_TRUSTSTORE_CERTS));
    if (rc == 0)
        rc = set_protocols(ctx->ssl, st, err, err_len);
    if (rc == 0)
        rc = set_ciphers(ctx->ssl, st, err, err_len);
    if (rc != 0) {
        broker_tls_ctx_free(ctx);
        return rc;
    }
    SSL_CTX_set_verify(ctx->ssl, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_options(ctx->ssl, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx->ssl, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_mode(ctx->ssl, SSL_MODE_RELEASE_BUFFERS);
    *out = ctx;
    return 0;
}

/* ---- connection engine -------------------------------------------------------------------- */

struct broker_tls_conn {
    SSL *ssl;
    struct broker_tls_ctx *ctx;
    /* the ciphertext being fed (broker_tls_conn_input) */
    const uint8_t *in;
    size_t in_len, in_off;
    /* ciphertext to send: out[out_off, out_len); `held` is the buffer the caller was last
     * given by _pending (an in-flight send may read it), kept in `retired` if out moves */
    uint8_t *out, *held, *retired;
    size_t out_cap, out_len, out_off;
    bool out_failed; /* an append could not get memory */
    bool established;
    bool failed;
    bool notify_sent;
    bool client; /* connects out: the handshake starts here */
};

static struct broker_tls_conn *conn_new(struct broker_tls_ctx *ctx, const char *host);

/* A client connection's expected server: an IP address is checked against the certificate's
 * IP SANs, a name against its DNS names (and sent as SNI). False when out of memory. */
static bool client_set_host(SSL *ssl, const char *host, bool check)
{
    unsigned char ip[16];
    bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
    if (!is_ip && SSL_set_tlsext_host_name(ssl, host) != 1)
        return false;
    if (!check)
        return true;
    if (is_ip)
        return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1;
    return SSL_set1_host(ssl, host) == 1;
}

static int bio_write(BIO *b, const char *data, int len)
{
    struct broker_tls_conn *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    LM_ASSERT(len >= 0);
    size_t n = (size_t)len;
    if (tc->out_cap - tc->out_len < n) {
        size_t live = tc->out_len - tc->out_off;
        /* small first (handshake flights, short responses); a chunk's four records fit the
         * second size without a copy */
        size_t cap = live + n <= 4096 ? 4096 : BROKER_TLS_CHUNK_BYTES + 4096;
        if (cap < tc->out_cap)
            cap = tc->out_cap;
        while (cap < live + n)
            cap *= 2;
        if (cap <= tc->out_cap && tc->out != tc->held) {
            memmove(tc->out, tc->out + tc->out_off, live); /* room at the front suffices */
        } else {
            uint8_t *nb = malloc(cap);
            if (nb == NULL) {
                tc->out_failed = true;
                return -1;
            }
            if (live > 0)
                memcpy(nb, tc->out + tc->out_off, live);
            if (tc->out != NULL && tc->out == tc->held) {
                LM_ASSERT(tc->retired == NULL);
                tc->retired = tc->out; /* a send may still read it */
            } else {
                free(tc->out);
            }
            tc->out = nb;
            tc->out_cap = cap;
        }
        tc->out_len = live;
        tc->out_off = 0;
    }
    memcpy(tc->out + tc->out_len, data, n);
    tc->out_len += n;
    return len;
}

static int bio_read(BIO *b, char *data, int len)
{
    struct broker_tls_conn *tc = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    size_t avail = tc->in != NULL ? tc->in_len - tc->in_off : 0;
    if (avail == 0) {
        BIO_set_retry_read(b);
        return -1;
    }
    size_t n = avail < (size_t)len ? avail : (size_t)len;
    memcpy(data, tc->in + tc->in_off, n);
    tc->in_off += n;
    return (int)n;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    struct broker_tls_conn *tc = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return tc != NULL && tc->in != NULL ? (long)(tc->in_len - tc->in_off) : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static int bio_destroy(BIO *b)
{
    BIO_set_data(b, NULL);
    return 1;
}

static BIO_METHOD *bio_method_new(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "laminar-conn");
    if (m == NULL)
        return NULL;
    if (BIO_meth_set_write(m, bio_write) != 1 || BIO_meth_set_read(m, bio_read) != 1 ||
        BIO_meth_set_ctrl(m, bio_ctrl) != 1 || BIO_meth_set_create(m, bio_create) != 1 ||
        BIO_meth_set_destroy(m, bio_destroy) != 1) {
        BIO_meth_free(m);
        return NULL;
    }
    return m;
}

struct broker_tls_conn *broker_tls_conn_new(struct broker_tls_ctx *ctx)
{
    LM_ASSERT(ctx != NULL && !ctx->client);
    return conn_new(ctx, NULL);
}

struct broker_tls_conn *broker_tls_conn_new_client(struct broker_tls_ctx *ctx, const char *host)
{
    LM_ASSERT(ctx != NULL && ctx->client && host != NULL);
    return conn_new(ctx, host);
}

static struct broker_tls_conn *conn_new(struct broker_tls_ctx *ctx, const char *host)
{
    LM_ASSERT(ctx != NULL && ctx->bio_method != NULL);
    struct broker_tls_conn *tc = calloc(1, sizeof(*tc));
    if (tc == NULL)
        return NULL;
    tc->ctx = ctx;
    tc->ssl = SSL_new(ctx->ssl);
    BIO *r = BIO_new(ctx->bio_method), *w = BIO_new(ctx->bio_method);
    if (tc->ssl == NULL || r == NULL || w == NULL) {
        BIO_free(r);
        BIO_free(w);
        SSL_free(tc->ssl);
        free(tc);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_data(r, tc);
    BIO_set_data(w, tc);
    SSL_set_bio(tc->ssl, r, w); /* the SSL owns both */
    if (host == NULL) {
        SSL_set_accept_state(tc->ssl);
    } else {
        tc->client = true;
        SSL_set_connect_state(tc->ssl);
        if (!client_set_host(tc->ssl, host, ctx->check_host)) {
            SSL_free(tc->ssl);
            free(tc);
            ERR_clear_error();
            return NULL;
        }
    }
    broker_tls_ctx_ref(ctx); /* its BIO method and rules outlive a reload of the listener */
    return tc;
}

void broker_tls_conn_free(struct broker_tls_conn *tc)
{
    if (tc == NULL)
        return;
    struct broker_tls_ctx *ctx = tc->ctx;
    SSL_free(tc->ssl);
    free(tc->out);
    free(tc->retired);
    free(tc);
    broker_tls_ctx_free(ctx);
}

bool broker_tls_conn_established(const struct broker_tls_conn *tc)
{
    return tc->established;
}

/* Why a TLS call failed: the certificate check's verdict when there is one, else OpenSSL's. */
static void conn_err_text(struct broker_tls_conn *tc, int ssl_err, char *err, size_t err_len)
{
    long v = SSL_get_verify_result(tc->ssl);
    if (ssl_err == SSL_ERROR_SSL && v != X509_V_OK) {
        snprintf(err, err_len, "%s certificate: %s", tc->client ? "server" : "client",
                 X509_verify_cert_error_string(v));
        ERR_clear_error();
        return;
    }
    if (ssl_err == SSL_ERROR_SSL) {
        ssl_err_text(err, err_len);
        return;
    }
    snprintf(err, err_len, "%s", tc->out_failed ? "out of memory" : "TLS I/O failure");
    ERR_clear_error();
}

int broker_tls_conn_input(struct broker_tls_conn *tc, const uint8_t *p, size_t n, uint8_t *buf,
                          size_t buf_len, broker_tls_plain_fn fn, void *arg, char *err,
                          size_t err_len)
{
    LM_ASSERT(buf_len >= BROKER_TLS_RECORD_BYTES);
    LM_ASSERT(tc->in == NULL);
    if (tc->failed)
        return LM_E_INVALID;
    tc->in = p;
    tc->in_len = n;
    tc->in_off = 0;
    int rc = 0;
    ERR_clear_error();
    if (!tc->established) {
        int r = SSL_do_handshake(tc->ssl);
        if (r != 1) {
            int e = SSL_get_error(tc->ssl, r);
            if (e != SSL_ERROR_WANT_READ) {
                conn_err_text(tc, e, err, err_len);
                tc->failed = true;
                rc = LM_E_INVALID;
            }
            goto out;
        }
        tc->established = true;
    }
    for (;;) {
        size_t got = 0;
        if (SSL_read_ex(tc->ssl, buf, buf_len, &got) == 1) {
            if (!fn(arg, buf, got))
                break;
            continue;
        }
        int e = SSL_get_error(tc->ssl, 0);
        if (e == SSL_ERROR_WANT_READ)
            break;
        if (e == SSL_ERROR_ZERO_RETURN) {
            rc = LM_E_CLOSED;
            break;
        }
        conn_err_text(tc, e, err, err_len);
        tc->failed = true;
        rc = LM_E_INVALID;
        break;
    }
out:
    tc->in = NULL;
    tc->in_len = tc->in_off = 0;
    return rc;
}

int broker_tls_conn_write(struct broker_tls_conn *tc, const void *p, size_t n)
{
    if (!tc->established || tc->failed || tc->notify_sent)
        return LM_E_STATE;
    size_t done = 0;
    ERR_clear_error();
    if (SSL_write_ex(tc->ssl, p, n, &done) != 1 || done != n) {
        tc->failed = true;
        ERR_clear_error();
        return tc->out_failed ? LM_E_NOMEM : LM_E_STATE;
    }
    return 0;
}

void broker_tls_conn_close_notify(struct broker_tls_conn *tc)
{
    if (!tc->established || tc->failed || tc->notify_sent)
        return;
    tc->notify_sent = true;
    ERR_clear_error();
    (void)SSL_shutdown(tc->ssl); /* 0: sent, not yet answered; the answer is not awaited */
    ERR_clear_error();
}

const uint8_t *broker_tls_conn_pending(const struct broker_tls_conn *tc, size_t *len)
{
    struct broker_tls_conn *m = (struct broker_tls_conn *)(uintptr_t)tc;
    *len = tc->out_len - tc->out_off;
    if (*len == 0)
        return NULL;
    m->held = tc->out;
    return tc->out + tc->out_off;
}

void broker_tls_conn_consumed(struct broker_tls_conn *tc, size_t n)
{
    LM_ASSERT(n <= tc->out_len - tc->out_off);
    tc->out_off += n;
    tc->held = NULL;
    free(tc->retired);
    tc->retired = NULL;
    if (tc->out_off == tc->out_len)
        tc->out_off = tc->out_len = 0;
}

void broker_tls_conn_trim(struct broker_tls_conn *tc)
{
    if (tc->out_len != tc->out_off || tc->held != NULL)
        return;
    free(tc->out);
    tc->out = NULL;
    tc->out_cap = tc->out_len = tc->out_off = 0;
}

int broker_tls_subject_dn(const void *x509, char *out, size_t out_len)
{
    LM_ASSERT(out_len > 0);
    const X509_NAME *name = X509_get_subject_name((const X509 *)x509);
    BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL)
        return LM_E_NOMEM;
    /* RFC 2253 order (most specific first) and separators, UTF-8 kept as is, as Java's
     * X500Principal.getName() prints it */
    unsigned long flags = (XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) | ASN1_STRFLGS_UTF8_CONVERT;
    int rc = 0;
    if (X509_NAME_print_ex(b, name, 0, flags) < 0) {
        rc = LM_E_INVALID;
    } else {
        char *data = NULL;
        long n = BIO_get_mem_data(b, &data);
        if (n < 0 || (size_t)n >= out_len) {
            rc = LM_E_TOO_LARGE;
        } else {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return rc;
}

int broker_tls_conn_principal(const struct broker_tls_conn *tc, char *out, size_t out_len,
                              char *err, size_t err_len)
{
    LM_ASSERT(tc->established);
    X509 *peer = SSL_get0_peer_certificate(tc->ssl);
    if (peer == NULL) {
        snprintf(out, out_len, "User:ANONYMOUS");
        return 0;
    }
    char dn[BROKER_TLS_DN_BYTES], name[BROKER_TLS_DN_BYTES];
    int rc = broker_tls_subject_dn(peer, dn, sizeof(dn));
    if (rc == 0)
        rc = broker_tls_rules_apply(tc->ctx->rules, dn, name, sizeof(name));
    if (rc == LM_E_NOT_FOUND) {
        snprintf(err, err_len, "no ssl.principal.mapping.rules rule applies to '%s'", dn);
        return rc;
    }
    if (rc != 0) {
        snprintf(err, err_len, "client certificate subject: %s", lm_strerror(rc));
        return rc;
    }
    if ((size_t)snprintf(out, out_len, "User:%s", name) >= out_len) {
        snprintf(err, err_len, "principal too long");
        return LM_E_TOO_LARGE;
    }
    return 0;
}

void broker_tls_conn_describe(const struct broker_tls_conn *tc, char *out, size_t out_len)
{
    snprintf(out, out_len, "%s %s", SSL_get_version(tc->ssl), SSL_get_cipher_name(tc->ssl));
}
