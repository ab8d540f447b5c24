/* TLS for Kafka's SSL and SASL_SSL listeners, over OpenSSL's libssl.
 *
 * Three parts, none doing I/O:
 * - a listener's context (broker_tls_ctx) built from Kafka's ssl.* settings (SslConfigs,
 *   BrokerSecurityConfigs), PEM keystores and truststores only;
 * - Kafka's ssl.principal.mapping.rules (SslPrincipalMapper): DEFAULT and
 *   RULE:pattern/replacement/[LU], applied to the client certificate's subject DN in RFC 2253
 *   form ("CN=client,OU=x"), as Java's X500Principal.getName() prints it;
 * - a connection engine (broker_tls_conn) over two in-memory BIOs of our own: the runtime hands
 *   it the ciphertext it received and sends the ciphertext it produces, so the same engine
 *   serves the io_uring and the epoll backends on the shard's own thread, never blocking.
 * Errors come back as LM_E_* with a message in a caller's buffer (the runtime logs it). */
#ifndef LAMINAR_BROKER_SECURITY_TLS_H
#define LAMINAR_BROKER_SECURITY_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The ssl.* keys laminar reads, per listener (listener.name.<l>.ssl.* overrides ssl.*). */
enum broker_tls_key {
    BROKER_TLS_KEYSTORE_TYPE,       /* ssl.keystore.type: PEM */
    BROKER_TLS_KEYSTORE_LOCATION,   /* a PEM file holding the key and the certificate chain */
    BROKER_TLS_KEYSTORE_KEY,        /* inline PEM private key */
    BROKER_TLS_KEYSTORE_CHAIN,      /* ssl.keystore.certificate.chain: inline PEM chain */
    BROKER_TLS_KEY_PASSWORD,        /* ssl.key.password: of an encrypted private key */
    BROKER_TLS_TRUSTSTORE_TYPE,     /* ssl.truststore.type: PEM */
    BROKER_TLS_TRUSTSTORE_LOCATION, /* a PEM file of CA certificates */
    BROKER_TLS_TRUSTSTORE_CERTS,    /* ssl.truststore.certificates: inline PEM */
    BROKER_TLS_CLIENT_AUTH,         /* none | requested | required */
    BROKER_TLS_ENABLED_PROTOCOLS,   /* TLSv1.2,TLSv1.3 */
    BROKER_TLS_CIPHER_SUITES,       /* IANA/JSSE names or OpenSSL names, comma separated */
    BROKER_TLS_PRINCIPAL_RULES,     /* ssl.principal.mapping.rules */
    BROKER_TLS_PROTOCOL,            /* ssl.protocol: TLS, TLSv1.2 or TLSv1.3 */
    BROKER_TLS_KEYSTORE_PASSWORD,   /* ssl.keystore.password: PEM stores have none (refused) */
    BROKER_TLS_TRUSTSTORE_PASSWORD, /* ssl.truststore.password: idem */
    BROKER_TLS_ENDPOINT_ALGORITHM,  /* ssl.endpoint.identification.algorithm: client side */
    BROKER_TLS_KEYS_COUNT,
};

/* Kafka's name of key k ("ssl.keystore.location"). */
const char *broker_tls_key_name(enum broker_tls_key k);

/* A listener's settings: value[k] NULL when unset (borrowed), key[k] the name it was given
 * under (with its listener.name.<l>. prefix), for messages. */
enum { BROKER_TLS_KEY_NAME_BYTES = 112 };
struct broker_tls_settings {
    char listener[32];
    const char *value[BROKER_TLS_KEYS_COUNT];
    char key[BROKER_TLS_KEYS_COUNT][BROKER_TLS_KEY_NAME_BYTES];
};

enum broker_tls_client_auth {
    BROKER_TLS_CLIENT_AUTH_NONE,
    BROKER_TLS_CLIENT_AUTH_REQUESTED,
    BROKER_TLS_CLIENT_AUTH_REQUIRED,
};

/* ---- principal mapping -------------------------------------------------------------------- */

enum { BROKER_TLS_RULES_MAX = 32, BROKER_TLS_DN_BYTES = 256 };
struct broker_tls_rules;

/* Parses ssl.principal.mapping.rules (NULL or "": DEFAULT). Returns 0 and *out (free with
 * broker_tls_rules_free), LM_E_CONFIG with a message in err, or LM_E_NOMEM. */
int broker_tls_rules_parse(const char *text, struct broker_tls_rules **out, char *err,
                           size_t err_len);
void broker_tls_rules_free(struct broker_tls_rules *r);
/* Maps a DN through the first rule that applies. Returns 0 with the name in out, LM_E_NOT_FOUND
 * when no rule applies (Kafka then fails the authentication), LM_E_TOO_LARGE when the result
 * does not fit out_len. */
int broker_tls_rules_apply(const struct broker_tls_rules *r, const char *dn, char *out,
                           size_t out_len);

/* ---- listener context --------------------------------------------------------------------- */

struct broker_tls_ctx;

/* Builds a listener's context from st: loads and checks the key against its certificate, the
 * truststore, protocols, ciphers, client authentication and the mapping rules. Returns 0 and
 * *out, or LM_E_CONFIG with a message naming the key in err. */
int broker_tls_ctx_new(const struct broker_tls_settings *st, struct broker_tls_ctx **out, char *err,
                       size_t err_len);
/* The client side of the same settings (a node's connections to its peers' SSL controller
 * listeners): the keystore is the client certificate, the truststore (required) verifies the
 * server, ssl.endpoint.identification.algorithm https (default) or empty says whether the
 * server's certificate must name the host. Returns 0 and *out, or LM_E_CONFIG with a message. */
int broker_tls_ctx_new_client(const struct broker_tls_settings *st, struct broker_tls_ctx **out,
                              char *err, size_t err_len);
/* A context is reference counted: its creator holds one reference and every connection made
 * from it another (broker_tls_conn_new / _free), so a listener can swap in a reloaded
 * context while connections of the old one live on. _free drops one reference. */
void broker_tls_ctx_ref(struct broker_tls_ctx *ctx);
void broker_tls_ctx_free(struct broker_tls_ctx *ctx);
enum broker_tls_client_auth broker_tls_ctx_client_auth(const struct broker_tls_ctx *ctx);

/* ---- connection engine -------------------------------------------------------------------- */

struct broker_tls_conn;

enum {
    /* plaintext encrypted in one go before its ciphertext is sent: four full records */
    BROKER_TLS_CHUNK_BYTES = 4 * 16384,
    BROKER_TLS_RECORD_BYTES = 16384, /* the largest plaintext of one record (RFC 8446 §5.1) */
};

/* A server-side connection of ctx (borrowed: it must outlive the connection). NULL when out of
 * memory. */
struct broker_tls_conn *broker_tls_conn_new(struct broker_tls_ctx *ctx);
/* A client connection of a client context to host (an IP address or a name, checked against
 * the server certificate as the context says). NULL when out of memory. Its handshake starts
 * with broker_tls_conn_input(n = 0), which leaves the ClientHello pending. */
struct broker_tls_conn *broker_tls_conn_new_client(struct broker_tls_ctx *ctx, const char *host);
void broker_tls_conn_free(struct broker_tls_conn *tc);

/* Receives plaintext: return false to stop (the connection is closing). */
typedef bool (*broker_tls_plain_fn)(void *arg, const uint8_t *p, size_t n);

/* Feeds n received ciphertext bytes (all taken: partial records wait inside the engine),
 * continuing the handshake and handing decrypted application data to fn through buf (size
 * buf_len, at least BROKER_TLS_RECORD_BYTES). Returns 0, LM_E_CLOSED when the peer sent
 * close_notify, or LM_E_INVALID for a failed handshake or a bad record (a message in err).
 * Ciphertext to send (handshake messages, alerts) may be pending afterwards. */
int broker_tls_conn_input(struct broker_tls_conn *tc, const uint8_t *p, size_t n, uint8_t *buf,
                          size_t buf_len, broker_tls_plain_fn fn, void *arg, char *err,
                          size_t err_len);
/* True once the handshake has completed. */
bool broker_tls_conn_established(const struct broker_tls_conn *tc);
/* Encrypts n plaintext bytes into the pending ciphertext. Returns 0, LM_E_STATE before the
 * handshake has completed or after an error, or LM_E_NOMEM. */
int broker_tls_conn_write(struct broker_tls_conn *tc, const void *p, size_t n);
/* Queues close_notify (RFC 8446 §6.1), once. */
void broker_tls_conn_close_notify(struct broker_tls_conn *tc);
/* The ciphertext waiting to be sent (NULL, 0 when none). It stays valid and in place until
 * broker_tls_conn_consumed, even when more is appended (held by an in-flight send). */
const uint8_t *broker_tls_conn_pending(const struct broker_tls_conn *tc, size_t *len);
/* n bytes of the pending ciphertext have been sent. */
void broker_tls_conn_consumed(struct broker_tls_conn *tc, size_t n);
/* Releases the ciphertext buffer when nothing is pending (an idle connection holds none). */
void broker_tls_conn_trim(struct broker_tls_conn *tc);
/* After the handshake: the authenticated principal, "User:" + the mapped subject DN of the
 * client's certificate, or "User:ANONYMOUS" without one. Returns 0, or LM_E_NOT_FOUND when no
 * mapping rule applies (a message in err). */
int broker_tls_conn_principal(const struct broker_tls_conn *tc, char *out, size_t out_len,
                              char *err, size_t err_len);
/* The negotiated protocol and cipher ("TLSv1.3 TLS_AES_256_GCM_SHA384"), for logs. */
void broker_tls_conn_describe(const struct broker_tls_conn *tc, char *out, size_t out_len);

/* The RFC 2253 subject DN of a certificate (an X509 *), as Java prints it. Returns 0 or
 * LM_E_TOO_LARGE. */
int broker_tls_subject_dn(const void *x509, char *out, size_t out_len);

#endif
