/* TLS for SSL / SASL_SSL listeners (broker/security/tls.h): Kafka's principal mapping rules
 * (the cases of Kafka's SslPrincipalMapperTest), listener contexts from Kafka's ssl.* settings
 * (keys and certificates made here with libcrypto), the per-listener settings resolution of
 * broker/config.c, and the connection engine driven by an OpenSSL client over memory BIOs:
 * handshakes fed in pieces down to single bytes, data both ways, client certificates and their
 * principal, close_notify, and garbage. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "broker/config.h"
#include "broker/security/tls.h"
#include "common/lm_err.h"

/* ---- principal mapping -------------------------------------------------------------------- */

static void map_ok(const struct broker_tls_rules *r, const char *dn, const char *want)
{
    char out[BROKER_TLS_DN_BYTES];
    int rc = broker_tls_rules_apply(r, dn, out, sizeof(out));
    print_message("%s -> %s (%d)\n", dn, rc == 0 ? out : "-", rc);
    assert_int_equal(rc, 0);
    assert_string_equal(out, want);
}

static struct broker_tls_rules *parse(const char *text)
{
    struct broker_tls_rules *r = NULL;
    char err[160] = "";
    int rc = broker_tls_rules_parse(text, &r, err, sizeof(err));
    if (rc != 0)
        print_message("parse '%s': %s\n", text != NULL ? text : "(null)", err);
    assert_int_equal(rc, 0);
    return r;
}

static void rules_kafka_cases(void **state)
{
    (void)state;
    struct broker_tls_rules *r =
        parse("RULE:^CN=(.*?),OU=ServiceUsers.*$/$1/,"
              "RULE:^CN=(.*?),OU=(.*?),O=(.*?),L=(.*?),ST=(.*?),C=(.*?)$/$1@$2/L,"
              "RULE:^cn=(.*?),ou=(.*?),dc=(.*?),dc=(.*?)$/$1@$2/U,"
              "RULE:^.*[Cc][Nn]=([a-zA-Z0-9.]*).*$/$1/U,"
              "DEFAULT");
    map_ok(r, "CN=Duke,OU=ServiceUsers,O=Org,C=US", "Duke");
    map_ok(r, "CN=Duke,OU=SME,O=mycp,L=Fulton,ST=MD,C=US", "duke@sme");
    map_ok(r, "cn=duke,ou=sme,dc=mycp,dc=com", "DUKE@SME");
    map_ok(r, "cN=duke,OU=JavaSoft,O=Sun Microsystems", "DUKE");
    map_ok(r, "OU=JavaSoft,O=Sun Microsystems,C=US", "OU=JavaSoft,O=Sun Microsystems,C=US");
    broker_tls_rules_free(r);

    /* nothing set: DEFAULT, the DN itself */
    r = parse(NULL);
    map_ok(r, "CN=client,OU=x", "CN=client,OU=x");
    broker_tls_rules_free(r);
    r = parse("  ");
    map_ok(r, "CN=a", "CN=a");
    broker_tls_rules_free(r);

    /* no rule applies and no DEFAULT: Kafka fails the authentication */
    r = parse("RULE:^CN=(.*),OU=ops$/$1/");
    char out[BROKER_TLS_DN_BYTES];
    assert_int_equal(broker_tls_rules_apply(r, "CN=a,OU=dev", out, sizeof(out)), LM_E_NOT_FOUND);
    /* the whole DN must match (Matcher.matches) */
    assert_int_equal(broker_tls_rules_apply(r, "CN=a,OU=ops,O=x", out, sizeof(out)),
                     LM_E_NOT_FOUND);
    map_ok(r, "CN=a,OU=ops", "a");
    /* too long for the output */
    assert_int_equal(broker_tls_rules_apply(r, "CN=abcdefgh,OU=ops", out, 4), LM_E_TOO_LARGE);
    broker_tls_rules_free(r);

    /* newline separators, spaces around rules, an escaped '/', a literal '$' escaped, \d */
    r = parse(" RULE:^CN=([^,]*)\\/(\\d+),.*$/$2:$1\\$/ ,\n RULE:^O=(.*)$/org-$1/U\nDEFAULT ");
    map_ok(r, "CN=svc/42,OU=x", "42:svc$");
    map_ok(r, "O=acme", "ORG-ACME");
    map_ok(r, "CN=other", "CN=other");
    broker_tls_rules_free(r);
}

static void rules_invalid(void **state)
{
    (void)state;
    static const char *const bad[] = {
        "RULE:^CN=(.*)/$1",          /* no closing '/' */
        "RULE:noslash",              /* no replacement */
        "FOO",                       /* neither DEFAULT nor RULE: */
        "DEFAULT,garbage",           /* idem, second */
        "RULE:^CN=([a-/x/",          /* a pattern that does not compile */
        "DEFAULTS",                  /* not DEFAULT */
        "RULE:^CN=a{2,}$/x/",        /* counted repetition: refused (regcomp blow-up) */
        "RULE:^CN=(a)\\1$/x/",       /* a back-reference: refused (exponential matching) */
        "RULE:^CN=a*+*$/x/",         /* a quantifier on a quantifier */
        "RULE:^a)|(b$/x/",           /* a ')' closing more than it opened */
        "RULE:^CN=(.*)$/$1/L extra", /* Kafka ignores text after the flags: accepted below */
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct broker_tls_rules *r = NULL;
        char err[160] = "";
        int rc = broker_tls_rules_parse(bad[i], &r, err, sizeof(err));
        print_message("'%s': %d %s\n", bad[i], rc, err);
        if (strstr(bad[i], "extra") != NULL) {
            assert_int_equal(rc, 0);
            map_ok(r, "CN=Ab", "ab");
            broker_tls_rules_free(r);
            continue;
        }
        assert_int_equal(rc, LM_E_CONFIG);
        assert_null(r);
        assert_true(err[0] != '\0');
    }
}

/* ---- keys and certificates ---------------------------------------------------------------- */

static char g_dir[64];

struct pki {
    EVP_PKEY *ca_key, *key, *client_key, *other_key;
    X509 *ca, *cert, *client, *other_ca;
};
static struct pki g;

static X509 *make_cert(EVP_PKEY *key, const char *cn, const char *ou, X509 *issuer,
                       EVP_PKEY *issuer_key)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    static long serial = 1;
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *n = X509_get_subject_name(x);
    if (ou != NULL)
        X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_ASC, (const unsigned char *)ou, -1, -1, 0);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : n);
    if (issuer == NULL) { /* a CA: verifiers need basicConstraints CA:TRUE on an issuer */
        X509_EXTENSION *e =
            X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        assert_non_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static char *pem_of(EVP_PKEY *key, X509 *cert, const char *password)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (key != NULL)
        assert_int_equal(PEM_write_bio_PKCS8PrivateKey(b, key, password ? EVP_aes_256_cbc() : NULL,
                                                       NULL, 0, NULL, (void *)(uintptr_t)password),
                         1);
    if (cert != NULL)
        assert_int_equal(PEM_write_bio_X509(b, cert), 1);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

static char *write_file(const char *name, const char *text)
{
    char *path = NULL;
    assert_true(asprintf(&path, "%s/%s", g_dir, name) > 0);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    return path;
}

static int pki_setup(void **state)
{
    (void)state;
    snprintf(g_dir, sizeof(g_dir), "/tmp/laminar-test-tls-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    g.ca_key = EVP_EC_gen("P-256");
    g.key = EVP_EC_gen("P-256");
    g.client_key = EVP_EC_gen("P-256");
    g.other_key = EVP_EC_gen("P-256");
    g.ca = make_cert(g.ca_key, "test ca", NULL, NULL, NULL);
    g.cert = make_cert(g.key, "localhost", "broker", g.ca, g.ca_key);
    g.client = make_cert(g.client_key, "client", "x", g.ca, g.ca_key);
    g.other_ca = make_cert(g.other_key, "other ca", NULL, NULL, NULL);
    return 0;
}

static int pki_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(g.ca_key);
    EVP_PKEY_free(g.key);
    EVP_PKEY_free(g.client_key);
    EVP_PKEY_free(g.other_key);
    X509_free(g.ca);
    X509_free(g.cert);
    X509_free(g.client);
    X509_free(g.other_ca);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", g_dir);
    if (system(cmd) != 0)
        print_message("cannot remove %s\n", g_dir);
    return 0;
}

static void settings_init(struct broker_tls_settings *st)
{
    memset(st, 0, sizeof(*st));
    snprintf(st->listener, sizeof(st->listener), "SSL");
}

/* Builds a context; returns its code, err in *err_out (static). */
static int ctx_try(const struct broker_tls_settings *st, struct broker_tls_ctx **out,
                   const char **err_out)
{
    static char err[512];
    err[0] = '\0';
    struct broker_tls_ctx *ctx = NULL;
    int rc = broker_tls_ctx_new(st, &ctx, err, sizeof(err));
    print_message("ctx: %d %s\n", rc, err);
    if (err_out != NULL)
        *err_out = err;
    if (out != NULL)
        *out = ctx;
    else
        broker_tls_ctx_free(ctx);
    if (rc != 0)
        assert_null(ctx);
    return rc;
}

static void ctx_settings(void **state)
{
    (void)state;
    struct broker_tls_settings st;
    const char *err;
    char *store = pem_of(g.key, g.cert, NULL);
    char *store_path = write_file("store.pem", store);
    char *ca_pem = pem_of(NULL, g.ca, NULL);
    char *ca_path = write_file("ca.pem", ca_pem);
    char *enc_key = pem_of(g.key, NULL, "pw");
    char *cert_pem = pem_of(NULL, g.cert, NULL);
    char *client_key = pem_of(g.client_key, NULL, NULL);

    /* no keystore at all */
    settings_init(&st);
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.keystore.location"));

    /* a PEM file holding key and chain */
    settings_init(&st);
    st.value[BROKER_TLS_KEYSTORE_TYPE] = "PEM";
    st.value[BROKER_TLS_KEYSTORE_LOCATION] = store_path;
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);

    /* a missing file names the key, with its listener prefix */
    st.value[BROKER_TLS_KEYSTORE_LOCATION] = "/nonexistent/store.pem";
    snprintf(st.key[BROKER_TLS_KEYSTORE_LOCATION], BROKER_TLS_KEY_NAME_BYTES,
             "listener.name.ssl.ssl.keystore.location");
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "listener.name.ssl.ssl.keystore.location: cannot read"));
    st.key[BROKER_TLS_KEYSTORE_LOCATION][0] = '\0';

    /* JKS is not read */
    st.value[BROKER_TLS_KEYSTORE_LOCATION] = store_path;
    st.value[BROKER_TLS_KEYSTORE_TYPE] = "JKS";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.keystore.type=JKS"));
    st.value[BROKER_TLS_KEYSTORE_TYPE] = "pem";
    /* a PEM keystore has no store password (Kafka refuses it too) */
    st.value[BROKER_TLS_KEYSTORE_PASSWORD] = "x";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.keystore.password"));
    st.value[BROKER_TLS_KEYSTORE_PASSWORD] = NULL;

    /* inline key and chain, the key encrypted: without, with a wrong, with the password */
    settings_init(&st);
    st.value[BROKER_TLS_KEYSTORE_KEY] = enc_key;
    st.value[BROKER_TLS_KEYSTORE_CHAIN] = cert_pem;
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.key.password"));
    st.value[BROKER_TLS_KEY_PASSWORD] = "wrong";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.keystore.key"));
    st.value[BROKER_TLS_KEY_PASSWORD] = "pw";
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);
    /* both a location and inline values */
    st.value[BROKER_TLS_KEYSTORE_LOCATION] = store_path;
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "both set"));
    st.value[BROKER_TLS_KEYSTORE_LOCATION] = "";

    /* inline PEM whose line breaks became spaces (a joined properties continuation) */
    char *flat = strdup(cert_pem);
    for (char *p = flat; *p; p++)
        if (*p == '\n')
            *p = ' ';
    st.value[BROKER_TLS_KEYSTORE_CHAIN] = flat;
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);

    /* a key that is not the certificate's */
    st.value[BROKER_TLS_KEYSTORE_KEY] = client_key;
    st.value[BROKER_TLS_KEY_PASSWORD] = NULL;
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.keystore.key: the private key does not match"));
    st.value[BROKER_TLS_KEYSTORE_KEY] = enc_key;
    st.value[BROKER_TLS_KEY_PASSWORD] = "pw";

    /* client authentication needs a truststore; values checked */
    st.value[BROKER_TLS_CLIENT_AUTH] = "required";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.client.auth=required needs a truststore"));
    st.value[BROKER_TLS_TRUSTSTORE_TYPE] = "PEM";
    st.value[BROKER_TLS_TRUSTSTORE_LOCATION] = ca_path;
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);
    st.value[BROKER_TLS_TRUSTSTORE_LOCATION] = NULL;
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = ca_pem;
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = "not a certificate";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.truststore.certificates: no PEM certificate"));
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = ca_pem;
    st.value[BROKER_TLS_CLIENT_AUTH] = "sometimes";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.client.auth=sometimes"));
    st.value[BROKER_TLS_CLIENT_AUTH] = "requested";
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);

    /* protocols, cipher suites (IANA and OpenSSL names), ssl.protocol, mapping rules */
    st.value[BROKER_TLS_ENABLED_PROTOCOLS] = "TLSv1.1,TLSv1.2";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "'TLSv1.1' is not served"));
    st.value[BROKER_TLS_ENABLED_PROTOCOLS] = " TLSv1.3 ";
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);
    st.value[BROKER_TLS_CIPHER_SUITES] = "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, "
                                         "TLS_AES_128_GCM_SHA256,ECDHE-ECDSA-CHACHA20-POLY1305";
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);
    st.value[BROKER_TLS_CIPHER_SUITES] = "TLS_BOGUS_WITH_NOTHING";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "unknown cipher suite 'TLS_BOGUS_WITH_NOTHING'"));
    st.value[BROKER_TLS_CIPHER_SUITES] = NULL;
    st.value[BROKER_TLS_PROTOCOL] = "SSLv3";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    st.value[BROKER_TLS_PROTOCOL] = "TLSv1.3";
    st.value[BROKER_TLS_PRINCIPAL_RULES] = "RULE:x";
    assert_int_equal(ctx_try(&st, NULL, &err), LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.principal.mapping.rules"));
    st.value[BROKER_TLS_PRINCIPAL_RULES] = "RULE:^CN=(.*),OU=(.*)$/$1.$2/U,DEFAULT";
    assert_int_equal(ctx_try(&st, NULL, NULL), 0);

    free(flat);
    free(store);
    free(store_path);
    free(ca_pem);
    free(ca_path);
    free(enc_key);
    free(cert_pem);
    free(client_key);
}

/* broker_config_tls_settings: listener.name.<l>.ssl.* over ssl.*, key names kept. */
static void config_resolution(void **state)
{
    (void)state;
    struct broker_config c;
    broker_config_init(&c);
    assert_int_equal(broker_config_set(&c, "listeners", "EXTERNAL://:9093,PLAINTEXT://:9092"), 0);
    assert_int_equal(broker_config_set(&c, "ssl.keystore.location", "/a.pem"), 0);
    assert_int_equal(broker_config_set(&c, "ssl.client.auth", "required"), 0);
    assert_int_equal(
        broker_config_set(&c, "listener.name.external.ssl.keystore.location", "/b.pem"), 0);
    struct broker_tls_settings st;
    broker_config_tls_settings(&c, 0, &st);
    assert_string_equal(st.listener, "EXTERNAL");
    assert_string_equal(st.value[BROKER_TLS_KEYSTORE_LOCATION], "/b.pem");
    assert_string_equal(st.key[BROKER_TLS_KEYSTORE_LOCATION],
                        "listener.name.external.ssl.keystore.location");
    assert_string_equal(st.value[BROKER_TLS_CLIENT_AUTH], "required");
    assert_string_equal(st.key[BROKER_TLS_CLIENT_AUTH], "ssl.client.auth");
    assert_null(st.value[BROKER_TLS_TRUSTSTORE_LOCATION]);
    broker_config_tls_settings(&c, 1, &st);
    assert_string_equal(st.value[BROKER_TLS_KEYSTORE_LOCATION], "/a.pem");
    /* the map makes EXTERNAL an SSL listener: its missing file stops the check, named */
    assert_int_equal(
        broker_config_set(&c, "listener.security.protocol.map", "EXTERNAL:SSL,PLAINTEXT:PLAINTEXT"),
        0);
    assert_int_equal(broker_config_check_supported(&c), LM_E_CONFIG);
    assert_true(c.listener_tls[0] && !c.listener_sasl[0] && !c.listener_tls[1]);
    broker_config_deinit(&c);
}

/* ---- the connection engine against an OpenSSL client -------------------------------------- */

struct client {
    SSL_CTX *ctx;
    SSL *ssl;
    BIO *rbio, *wbio; /* memory BIOs: what the server sent, what the client sends */
};

static void client_init(struct client *cl, X509 *trust, X509 *cert, EVP_PKEY *key)
{
    cl->ctx = SSL_CTX_new(TLS_client_method());
    assert_non_null(cl->ctx);
    X509_STORE_add_cert(SSL_CTX_get_cert_store(cl->ctx), trust);
    SSL_CTX_set_verify(cl->ctx, SSL_VERIFY_PEER, NULL);
    if (cert != NULL) {
        assert_int_equal(SSL_CTX_use_certificate(cl->ctx, cert), 1);
        assert_int_equal(SSL_CTX_use_PrivateKey(cl->ctx, key), 1);
    }
    cl->ssl = SSL_new(cl->ctx);
    cl->rbio = BIO_new(BIO_s_mem());
    cl->wbio = BIO_new(BIO_s_mem());
    SSL_set_bio(cl->ssl, cl->rbio, cl->wbio);
    SSL_set_connect_state(cl->ssl);
}

static void client_deinit(struct client *cl)
{
    SSL_free(cl->ssl);
    SSL_CTX_free(cl->ctx);
}

struct sink {
    uint8_t *data;
    size_t len, cap;
};

static bool sink_fn(void *arg, const uint8_t *p, size_t n)
{
    struct sink *s = arg;
    if (s->len + n > s->cap) {
        s->cap = (s->len + n) * 2;
        s->data = realloc(s->data, s->cap);
        assert_non_null(s->data);
    }
    memcpy(s->data + s->len, p, n);
    s->len += n;
    return true;
}

static uint8_t g_buf[BROKER_TLS_RECORD_BYTES];

/* Moves the client's output into the server in pieces of at most `piece` bytes. */
static int to_server(struct client *cl, struct broker_tls_conn *tc, size_t piece, struct sink *sk,
                     char *err, size_t err_len)
{
    char *data = NULL;
    long n = BIO_get_mem_data(cl->wbio, &data);
    int rc = 0;
    for (long off = 0; off < n && rc == 0;) {
        size_t k = (size_t)(n - off) < piece ? (size_t)(n - off) : piece;
        rc = broker_tls_conn_input(tc, (const uint8_t *)data + off, k, g_buf, sizeof(g_buf),
                                   sink_fn, sk, err, err_len);
        off += (long)k;
    }
    (void)BIO_reset(cl->wbio);
    return rc;
}

/* Moves the server's pending ciphertext to the client. */
static void to_client(struct client *cl, struct broker_tls_conn *tc)
{
    size_t len = 0;
    const uint8_t *p = broker_tls_conn_pending(tc, &len);
    if (p != NULL) {
        assert_int_equal(BIO_write(cl->rbio, p, (int)len), (int)len);
        broker_tls_conn_consumed(tc, len);
    }
}

/* Runs the handshake to its end; returns the server's code. */
static int handshake(struct client *cl, struct broker_tls_conn *tc, size_t piece, char *err,
                     size_t err_len)
{
    struct sink sk = {0};
    for (int i = 0; i < 20; i++) {
        int r = SSL_do_handshake(cl->ssl);
        int rc = to_server(cl, tc, piece, &sk, err, err_len);
        to_client(cl, tc);
        if (rc != 0) {
            print_message("handshake: %s\n", err);
            free(sk.data);
            return rc;
        }
        if (r == 1 && broker_tls_conn_established(tc)) {
            /* TLS 1.3: the client's last flight may still be on its way */
            free(sk.data);
            return 0;
        }
    }
    free(sk.data);
    return LM_E_STATE;
}

static struct broker_tls_ctx *server_ctx(const char *client_auth, const char *rules)
{
    char *store = pem_of(g.key, g.cert, NULL), *ca = pem_of(NULL, g.ca, NULL);
    struct broker_tls_settings st;
    settings_init(&st);
    char *key_pem = pem_of(g.key, NULL, NULL), *chain = pem_of(NULL, g.cert, NULL);
    st.value[BROKER_TLS_KEYSTORE_KEY] = key_pem;
    st.value[BROKER_TLS_KEYSTORE_CHAIN] = chain;
    st.value[BROKER_TLS_CLIENT_AUTH] = client_auth;
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = ca;
    st.value[BROKER_TLS_PRINCIPAL_RULES] = rules;
    struct broker_tls_ctx *ctx = NULL;
    assert_int_equal(ctx_try(&st, &ctx, NULL), 0);
    free(store);
    free(ca);
    free(key_pem);
    free(chain);
    return ctx;
}

static void engine_round_trip(void **state)
{
    (void)state;
    struct broker_tls_ctx *ctx = server_ctx("none", NULL);
    static const size_t pieces[] = {1, 7, 100, 1 << 20};
    for (size_t pi = 0; pi < sizeof(pieces) / sizeof(pieces[0]); pi++) {
        struct client cl;
        client_init(&cl, g.ca, NULL, NULL);
        struct broker_tls_conn *tc = broker_tls_conn_new(ctx);
        assert_non_null(tc);
        char err[256] = "";
        /* nothing can be written before the handshake */
        assert_int_equal(broker_tls_conn_write(tc, "x", 1), LM_E_STATE);
        assert_int_equal(handshake(&cl, tc, pieces[pi], err, sizeof(err)), 0);
        char principal[300];
        assert_int_equal(
            broker_tls_conn_principal(tc, principal, sizeof(principal), err, sizeof(err)), 0);
        assert_string_equal(principal, "User:ANONYMOUS");
        /* client -> server: 100 KB in records the server gets in pieces */
        size_t n = 100000;
        uint8_t *msg = malloc(n);
        for (size_t i = 0; i < n; i++)
            msg[i] = (uint8_t)(i * 31 + pi);
        assert_int_equal(SSL_write(cl.ssl, msg, (int)n), (int)n);
        struct sink sk = {0};
        int trc = to_server(&cl, tc, pieces[pi], &sk, err, sizeof(err));
        if (trc != 0)
            print_message("to_server: %s\n", err);
        assert_int_equal(trc, 0);
        assert_int_equal(sk.len, n);
        assert_memory_equal(sk.data, msg, n);
        /* server -> client; the pending buffer stays in place while more is appended (an
         * in-flight send reads it) */
        assert_int_equal(broker_tls_conn_write(tc, msg, 40000), 0);
        size_t len1 = 0;
        const uint8_t *p1 = broker_tls_conn_pending(tc, &len1);
        assert_non_null(p1);
        uint8_t *copy = malloc(len1);
        memcpy(copy, p1, len1);
        assert_int_equal(broker_tls_conn_write(tc, msg + 40000, n - 40000), 0);
        assert_memory_equal(p1, copy, len1); /* untouched */
        free(copy);
        to_client(&cl, tc);
        uint8_t *back = malloc(n);
        size_t got = 0;
        while (got < n) {
            int r = SSL_read(cl.ssl, back + got, (int)(n - got));
            assert_true(r > 0);
            got += (size_t)r;
        }
        assert_memory_equal(back, msg, n);
        broker_tls_conn_trim(tc);
        /* the client's close_notify ends the stream */
        SSL_shutdown(cl.ssl);
        assert_int_equal(to_server(&cl, tc, pieces[pi], &sk, err, sizeof(err)), LM_E_CLOSED);
        broker_tls_conn_close_notify(tc);
        size_t left = 0;
        assert_non_null(broker_tls_conn_pending(tc, &left)); /* our close_notify */
        free(back);
        free(msg);
        free(sk.data);
        broker_tls_conn_free(tc);
        client_deinit(&cl);
    }
    broker_tls_ctx_free(ctx);
}

static void engine_client_certificates(void **state)
{
    (void)state;
    char err[256] = "", principal[300];
    /* required: a client with a certificate, DN mapped by the rules */
    struct broker_tls_ctx *ctx = server_ctx("required", "RULE:^CN=(.*?),OU=(.*?)$/$1@$2/U,DEFAULT");
    struct client cl;
    client_init(&cl, g.ca, g.client, g.client_key);
    struct broker_tls_conn *tc = broker_tls_conn_new(ctx);
    assert_int_equal(handshake(&cl, tc, 512, err, sizeof(err)), 0);
    assert_int_equal(broker_tls_conn_principal(tc, principal, sizeof(principal), err, sizeof(err)),
                     0);
    assert_string_equal(principal, "User:CLIENT@X");
    broker_tls_conn_free(tc);
    client_deinit(&cl);
    /* required: a client without one fails the handshake */
    client_init(&cl, g.ca, NULL, NULL);
    tc = broker_tls_conn_new(ctx);
    assert_int_equal(handshake(&cl, tc, 512, err, sizeof(err)), LM_E_INVALID);
    print_message("no certificate: %s\n", err);
    assert_true(err[0] != '\0');
    /* the engine refuses anything after a failure */
    assert_int_equal(broker_tls_conn_input(tc, (const uint8_t *)"x", 1, g_buf, sizeof(g_buf),
                                           sink_fn, NULL, err, sizeof(err)),
                     LM_E_INVALID);
    broker_tls_conn_free(tc);
    client_deinit(&cl);
    /* a certificate from another CA */
    client_init(&cl, g.ca, g.other_ca, g.other_key);
    tc = broker_tls_conn_new(ctx);
    assert_int_equal(handshake(&cl, tc, 512, err, sizeof(err)), LM_E_INVALID);
    print_message("other CA: %s\n", err);
    assert_non_null(strstr(err, "client certificate"));
    broker_tls_conn_free(tc);
    client_deinit(&cl);
    broker_tls_ctx_free(ctx);

    /* DEFAULT: Kafka's DN format, most specific first */
    ctx = server_ctx("requested", NULL);
    client_init(&cl, g.ca, g.client, g.client_key);
    tc = broker_tls_conn_new(ctx);
    assert_int_equal(handshake(&cl, tc, 4096, err, sizeof(err)), 0);
    assert_int_equal(broker_tls_conn_principal(tc, principal, sizeof(principal), err, sizeof(err)),
                     0);
    assert_string_equal(principal, "User:CN=client,OU=x");
    broker_tls_conn_free(tc);
    client_deinit(&cl);
    /* requested: no certificate is ANONYMOUS */
    client_init(&cl, g.ca, NULL, NULL);
    tc = broker_tls_conn_new(ctx);
    assert_int_equal(handshake(&cl, tc, 4096, err, sizeof(err)), 0);
    assert_int_equal(broker_tls_conn_principal(tc, principal, sizeof(principal), err, sizeof(err)),
                     0);
    assert_string_equal(principal, "User:ANONYMOUS");
    broker_tls_conn_free(tc);
    client_deinit(&cl);
    broker_tls_ctx_free(ctx);
    /* rules that do not apply fail the authentication */
    ctx = server_ctx("required", "RULE:^CN=admin$/admin/");
    client_init(&cl, g.ca, g.client, g.client_key);
    tc = broker_tls_conn_new(ctx);
    assert_int_equal(handshake(&cl, tc, 4096, err, sizeof(err)), 0);
    assert_int_equal(broker_tls_conn_principal(tc, principal, sizeof(principal), err, sizeof(err)),
                     LM_E_NOT_FOUND);
    assert_non_null(strstr(err, "CN=client,OU=x"));
    broker_tls_conn_free(tc);
    client_deinit(&cl);
    broker_tls_ctx_free(ctx);
    /* a connection keeps its context: the listener's reference dropped while it is open (a
     * certificate reload), it still completes its handshake and frees the context with it */
    ctx = server_ctx("requested", NULL);
    client_init(&cl, g.ca, NULL, NULL);
    tc = broker_tls_conn_new(ctx);
    broker_tls_ctx_free(ctx);
    assert_int_equal(handshake(&cl, tc, 4096, err, sizeof(err)), 0);
    broker_tls_conn_free(tc);
    client_deinit(&cl);
}

static void engine_garbage(void **state)
{
    (void)state;
    struct broker_tls_ctx *ctx = server_ctx("none", NULL);
    uint32_t seed = (uint32_t)getpid();
    print_message("seed %u\n", seed);
    srandom(seed);
    int failed = 0;
    for (int round = 0; round < 300; round++) {
        struct broker_tls_conn *tc = broker_tls_conn_new(ctx);
        uint8_t junk[4096];
        size_t n = 1 + (size_t)random() % sizeof(junk);
        for (size_t i = 0; i < n; i++)
            junk[i] = (uint8_t)random();
        if (round % 2 == 0) { /* a handshake record header, then noise */
            junk[0] = 0x16;
            junk[1] = 0x03;
            junk[2] = (uint8_t)(random() % 4);
        }
        char err[256] = "";
        struct sink sk = {0};
        int rc = broker_tls_conn_input(tc, junk, n, g_buf, sizeof(g_buf), sink_fn, &sk, err,
                                       sizeof(err));
        assert_true(rc == 0 || rc == LM_E_INVALID);
        assert_int_equal(sk.len, 0); /* never plaintext out of garbage */
        assert_false(broker_tls_conn_established(tc));
        failed += rc == LM_E_INVALID;
        broker_tls_conn_free(tc);
    }
    print_message("%d of 300 refused at once (the rest wait for more of a record)\n", failed);
    assert_true(failed > 150);
    /* a plaintext Kafka ApiVersions request */
    static const uint8_t api_versions[] = {0, 0, 0, 10, 0, 18, 0, 0, 0, 0, 0, 7, 0, 0};
    struct broker_tls_conn *tc = broker_tls_conn_new(ctx);
    char err[256] = "";
    assert_int_equal(broker_tls_conn_input(tc, api_versions, sizeof(api_versions), g_buf,
                                           sizeof(g_buf), sink_fn, NULL, err, sizeof(err)),
                     LM_E_INVALID);
    print_message("plaintext request: %s\n", err);
    broker_tls_conn_free(tc);
    broker_tls_ctx_free(ctx);
}

/* ---- the client engine (node-to-node connections) against the server engine -------------- */

/* A certificate with subjectAltName san ("IP:127.0.0.1"), signed by issuer. */
static X509 *make_san_cert(EVP_PKEY *key, const char *cn, const char *san, X509 *issuer,
                           EVP_PKEY *issuer_key)
{
    X509 *x = make_cert(key, cn, NULL, issuer, issuer_key);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, san);
    assert_non_null(e);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    assert_true(X509_sign(x, issuer_key, EVP_sha256()) > 0);
    return x;
}

static int client_ctx_try(EVP_PKEY *key, X509 *cert, X509 *trust, const char *endpoint,
                          struct broker_tls_ctx **out, char *err, size_t err_len)
{
    struct broker_tls_settings st;
    settings_init(&st);
    char *key_pem = key != NULL ? pem_of(key, NULL, NULL) : NULL;
    char *chain = cert != NULL ? pem_of(NULL, cert, NULL) : NULL;
    char *ca = trust != NULL ? pem_of(NULL, trust, NULL) : NULL;
    st.value[BROKER_TLS_KEYSTORE_KEY] = key_pem;
    st.value[BROKER_TLS_KEYSTORE_CHAIN] = chain;
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = ca;
    st.value[BROKER_TLS_ENDPOINT_ALGORITHM] = endpoint;
    err[0] = '\0';
    int rc = broker_tls_ctx_new_client(&st, out, err, err_len);
    print_message("client ctx: %d %s\n", rc, err);
    free(key_pem);
    free(chain);
    free(ca);
    return rc;
}

/* Moves ciphertext both ways until both ends are established or one fails; the failing side's
 * message in cerr / serr. */
static void engines_handshake(struct broker_tls_conn *cli, struct broker_tls_conn *srv, int *crc,
                              int *src, char *cerr, char *serr, size_t err_len)
{
    struct sink sk = {0};
    *crc = broker_tls_conn_input(cli, NULL, 0, g_buf, sizeof(g_buf), sink_fn, &sk, cerr, err_len);
    *src = 0;
    for (int i = 0; i < 20 && *crc == 0 && *src == 0; i++) {
        size_t len = 0;
        const uint8_t *p = broker_tls_conn_pending(cli, &len);
        if (p != NULL) {
            *src = broker_tls_conn_input(srv, p, len, g_buf, sizeof(g_buf), sink_fn, &sk, serr,
                                         err_len);
            broker_tls_conn_consumed(cli, len);
        }
        p = broker_tls_conn_pending(srv, &len);
        if (p != NULL) {
            uint8_t *copy = malloc(len);
            assert_non_null(copy);
            memcpy(copy, p, len);
            broker_tls_conn_consumed(srv, len);
            *crc = broker_tls_conn_input(cli, copy, len, g_buf, sizeof(g_buf), sink_fn, &sk, cerr,
                                         err_len);
            free(copy);
        }
        if (broker_tls_conn_established(cli) && broker_tls_conn_established(srv) &&
            broker_tls_conn_pending(cli, &len) == NULL)
            break;
    }
    assert_int_equal(sk.len, 0);
    free(sk.data);
}

static void engine_peer_client(void **state)
{
    (void)state;
    char err[256], cerr[256], serr[256], principal[300];
    EVP_PKEY *node_key = EVP_EC_gen("P-256");
    X509 *node = make_san_cert(node_key, "node-1", "IP:127.0.0.1", g.ca, g.ca_key);
    X509 *stranger = make_cert(g.other_key, "node-9", NULL, g.other_ca, g.other_key);
    struct broker_tls_ctx *cctx = NULL;
    /* a client context needs a truststore; the endpoint algorithm is https or empty */
    assert_int_equal(client_ctx_try(g.client_key, g.client, NULL, NULL, &cctx, err, sizeof(err)),
                     LM_E_CONFIG);
    assert_non_null(strstr(err, "truststore"));
    assert_int_equal(client_ctx_try(g.client_key, g.client, g.ca, "ldaps", &cctx, err, sizeof(err)),
                     LM_E_CONFIG);
    assert_non_null(strstr(err, "ssl.endpoint.identification.algorithm"));
    /* the server: node-1's certificate (SAN IP:127.0.0.1), client certificates required */
    struct broker_tls_settings st;
    settings_init(&st);
    char *skey = pem_of(node_key, NULL, NULL), *schain = pem_of(NULL, node, NULL);
    char *sca = pem_of(NULL, g.ca, NULL);
    st.value[BROKER_TLS_KEYSTORE_KEY] = skey;
    st.value[BROKER_TLS_KEYSTORE_CHAIN] = schain;
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = sca;
    st.value[BROKER_TLS_CLIENT_AUTH] = "required";
    struct broker_tls_ctx *sctx = NULL;
    assert_int_equal(ctx_try(&st, &sctx, NULL), 0);
    static const struct {
        const char *host, *endpoint;
        bool trust_other, key_other, ok_client, ok_server;
    } cases[] = {
        {"127.0.0.1", NULL, false, false, true, true},     /* https by default: the IP SAN */
        {"127.0.0.1", "HTTPS", false, false, true, true},  /* case-insensitive */
        {"127.0.0.2", NULL, false, false, false, true},    /* not the certificate's IP */
        {"localhost", "https", false, false, false, true}, /* nor a name it has */
        {"127.0.0.2", "", false, false, true, true},       /* empty: no host check */
        {"127.0.0.1", NULL, true, false, false, true},     /* trusting another CA */
        {"127.0.0.1", NULL, false, true, true, false},     /* presenting another CA's cert */
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        print_message("case %zu: %s %s\n", i, cases[i].host,
                      cases[i].endpoint ? cases[i].endpoint : "(unset)");
        assert_int_equal(client_ctx_try(cases[i].key_other ? g.other_key : g.client_key,
                                        cases[i].key_other ? stranger : g.client,
                                        cases[i].trust_other ? g.other_ca : g.ca, cases[i].endpoint,
                                        &cctx, err, sizeof(err)),
                         0);
        struct broker_tls_conn *cli = broker_tls_conn_new_client(cctx, cases[i].host);
        struct broker_tls_conn *srv = broker_tls_conn_new(sctx);
        assert_non_null(cli);
        assert_non_null(srv);
        broker_tls_ctx_free(cctx); /* the connection holds its own reference */
        int crc = 0, src = 0;
        cerr[0] = serr[0] = '\0';
        engines_handshake(cli, srv, &crc, &src, cerr, serr, sizeof(cerr));
        print_message("  client %d %s / server %d %s\n", crc, cerr, src, serr);
        if (!cases[i].ok_client) {
            assert_int_equal(crc, LM_E_INVALID);
            assert_non_null(strstr(cerr, "server certificate"));
        } else if (!cases[i].ok_server) {
            /* TLS 1.3: the server refuses the client's certificate after the client is done */
            assert_int_equal(src, LM_E_INVALID);
            assert_non_null(strstr(serr, "client certificate"));
        } else {
            assert_int_equal(crc, 0);
            assert_int_equal(src, 0);
            assert_true(broker_tls_conn_established(cli) && broker_tls_conn_established(srv));
            assert_int_equal(
                broker_tls_conn_principal(srv, principal, sizeof(principal), err, sizeof(err)), 0);
            assert_string_equal(principal, "User:CN=client,OU=x");
            /* application data from the client reaches the server */
            assert_int_equal(broker_tls_conn_write(cli, "internal", 8), 0);
            size_t len = 0;
            const uint8_t *p = broker_tls_conn_pending(cli, &len);
            assert_non_null(p);
            assert_null(memmem(p, len, "internal", 8)); /* not in clear */
            struct sink sk = {0};
            assert_int_equal(broker_tls_conn_input(srv, p, len, g_buf, sizeof(g_buf), sink_fn, &sk,
                                                   err, sizeof(err)),
                             0);
            broker_tls_conn_consumed(cli, len);
            assert_int_equal(sk.len, 8);
            assert_memory_equal(sk.data, "internal", 8);
            free(sk.data);
        }
        broker_tls_conn_free(cli);
        broker_tls_conn_free(srv);
    }
    broker_tls_ctx_free(sctx);
    free(skey);
    free(schain);
    free(sca);
    X509_free(node);
    X509_free(stranger);
    EVP_PKEY_free(node_key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(rules_kafka_cases), cmocka_unit_test(rules_invalid),
        cmocka_unit_test(ctx_settings),      cmocka_unit_test(config_resolution),
        cmocka_unit_test(engine_round_trip), cmocka_unit_test(engine_client_certificates),
        cmocka_unit_test(engine_garbage),    cmocka_unit_test(engine_peer_client),
    };
    return cmocka_run_group_tests(tests, pki_setup, pki_teardown);
}
