/* libFuzzer: a TLS connection (broker/security/tls.h) fed arbitrary bytes, in pieces whose
 * sizes come from the input, with principal mapping rules taken from the input too. The first
 * byte's low bit picks the side: a server connection (a client listener's, or a controller
 * listener's) or a client one (a node-to-node connection after its ClientHello, reading what a
 * hostile peer answers). Whatever arrives, the engine must take every byte, never hand out
 * plaintext before a handshake, and fail cleanly (LM_E_INVALID) rather than crash or leak. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "broker/security/tls.h"
#include "common/lm_err.h"

static struct broker_tls_ctx *g_ctx, *g_client_ctx;
static uint8_t g_buf[BROKER_TLS_RECORD_BYTES];

static char *pem(EVP_PKEY *key, X509 *cert)
{
    BIO *b = BIO_new(BIO_s_mem());
    if (key != NULL)
        PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    if (cert != NULL)
        PEM_write_bio_X509(b, cert);
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    char *out = strndup(data, (size_t)n);
    BIO_free(b);
    return out;
}

/* A self-signed P-256 certificate, made once. */
static void setup(void)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)"fuzz", -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_sign(x, key, EVP_sha256());
    char *k = pem(key, NULL), *c = pem(NULL, x);
    struct broker_tls_settings st;
    memset(&st, 0, sizeof(st));
    st.value[BROKER_TLS_KEYSTORE_KEY] = k;
    st.value[BROKER_TLS_KEYSTORE_CHAIN] = c;
    st.value[BROKER_TLS_TRUSTSTORE_CERTS] = c;
    st.value[BROKER_TLS_CLIENT_AUTH] = "requested";
    char err[256];
    if (broker_tls_ctx_new(&st, &g_ctx, err, sizeof(err)) != 0)
        abort();
    if (broker_tls_ctx_new_client(&st, &g_client_ctx, err, sizeof(err)) != 0)
        abort();
    free(k);
    free(c);
    EVP_PKEY_free(key);
    X509_free(x);
}

static bool never(void *arg, const uint8_t *p, size_t n)
{
    (void)arg;
    (void)p;
    (void)n;
    abort(); /* no handshake can complete from one side's bytes alone */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_ctx == NULL)
        setup();
    if (size < 2)
        return 0;
    /* the first byte picks the piece size, the rest is the stream */
    size_t piece = 1 + data[0] * 64u;
    /* mapping rules from a prefix of the stream: parse and apply must never crash */
    char rules[128], err[256];
    size_t rn = size - 1 < sizeof(rules) - 1 ? size - 1 : sizeof(rules) - 1;
    memcpy(rules, data + 1, rn);
    rules[rn] = '\0';
    struct broker_tls_rules *r = NULL;
    if (broker_tls_rules_parse(rules, &r, err, sizeof(err)) == 0) {
        char out[BROKER_TLS_DN_BYTES];
        (void)broker_tls_rules_apply(r, "CN=fuzz,OU=a\\,b,O=x", out, sizeof(out));
        broker_tls_rules_free(r);
    }
    bool client = (data[0] & 1) != 0;
    struct broker_tls_conn *tc =
        client ? broker_tls_conn_new_client(g_client_ctx, "127.0.0.1") : broker_tls_conn_new(g_ctx);
    if (tc == NULL)
        abort();
    if (client) { /* the ClientHello, as broker_peer sends it after connecting */
        if (broker_tls_conn_input(tc, NULL, 0, g_buf, sizeof(g_buf), never, NULL, err,
                                  sizeof(err)) != 0)
            abort();
        size_t len = 0;
        if (broker_tls_conn_pending(tc, &len) == NULL)
            abort();
        broker_tls_conn_consumed(tc, len);
    }
    for (size_t off = 1; off < size;) {
        size_t k = size - off < piece ? size - off : piece;
        int rc = broker_tls_conn_input(tc, data + off, k, g_buf, sizeof(g_buf), never, NULL, err,
                                       sizeof(err));
        if (rc == LM_E_INVALID || rc == LM_E_CLOSED)
            break;
        if (rc != 0)
            abort();
        size_t len = 0;
        if (broker_tls_conn_pending(tc, &len) != NULL)
            broker_tls_conn_consumed(tc, len);
        off += k;
    }
    broker_tls_conn_free(tc);
    return 0;
}
