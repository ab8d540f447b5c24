/* SASL mechanisms as Kafka's brokers serve them (KIP-43, KIP-84, KIP-152): PLAIN (RFC 4616)
 * against users from a PlainLoginModule JAAS config, and SCRAM-SHA-256 / SCRAM-SHA-512
 * (RFC 5802, RFC 7677) against credentials kept in the cluster metadata. Pure functions and
 * small per-connection state machines: no I/O, no allocation after a state is set up, every
 * input length bounded. A malformed token is an authentication failure (LM_E_INVALID with a
 * message for the client), never an assertion. Cryptography is OpenSSL's libcrypto. */
#ifndef LAMINAR_BROKER_SECURITY_SASL_H
#define LAMINAR_BROKER_SECURITY_SASL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Mechanisms laminar serves. The numbers of the SCRAM ones are Kafka's ScramMechanism type
 * (AlterUserScramCredentials / DescribeUserScramCredentials, KIP-554): 1 and 2. */
enum sasl_mech {
    SASL_MECH_NONE = 0,
    SASL_MECH_SCRAM_SHA_256 = 1,
    SASL_MECH_SCRAM_SHA_512 = 2,
    SASL_MECH_PLAIN = 3,
    SASL_MECH_OAUTHBEARER = 4, /* RFC 7628 (oauth.h) */
};

enum {
    SASL_USER_BYTES_MAX = 256,       /* a user name, decoded */
    SASL_PASSWORD_BYTES_MAX = 1024,  /* a PLAIN password */
    SASL_TOKEN_BYTES_MAX = 8192,     /* any client token; larger ones fail authentication */
    SASL_SCRAM_KEY_BYTES_MAX = 64,   /* SHA-512's output */
    SASL_SCRAM_SALT_BYTES_MAX = 128, /* Kafka's tools use 32..64 */
    SASL_SCRAM_NONCE_BYTES_MAX = 256,
    SASL_SCRAM_ITERATIONS_MIN = 4096,  /* Kafka's ScramMechanism minIterations */
    SASL_SCRAM_ITERATIONS_MAX = 16384, /* Kafka refuses more (ScramControlManager) */
    SASL_MESSAGE_BYTES_MAX = 160,      /* an error message for the client */
    SASL_PLAIN_USERS_MAX = 1024,
};

/* Kafka's name of m ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"), or
 * "UNKNOWN". */
const char *sasl_mech_name(enum sasl_mech m);
/* The mechanism named by name[0..len) (case-sensitive, as Kafka), or SASL_MECH_NONE. */
enum sasl_mech sasl_mech_parse(const char *name, size_t len);
/* True for the SCRAM mechanisms. */
bool sasl_mech_is_scram(enum sasl_mech m);
/* The SCRAM hash's output size (32 or 64), 0 for others. */
size_t sasl_scram_key_len(enum sasl_mech m);

/* ---- PLAIN (RFC 4616) --------------------------------------------------------------------- */

/* The users of one PlainLoginModule: user_<name>="<password>" options. Owned by the holder. */
struct sasl_plain_user {
    char *name;
    char *password;
};
struct sasl_plain_users {
    struct sasl_plain_user *users; /* owned */
    size_t count;
};

/* A parsed PLAIN message: pointers into the token (not NUL-terminated). */
struct sasl_plain_msg {
    const char *authzid, *user, *password;
    size_t authzid_len, user_len, password_len;
};

/* Splits a PLAIN message authzid NUL authcid NUL passwd (RFC 4616 §2, exactly three parts,
 * user and password not empty, authzid empty or equal to the user as Kafka requires).
 * Returns 0, or LM_E_INVALID with Kafka's message in msg (msg_cap bytes). */
int sasl_plain_parse(const uint8_t *tok, size_t len, struct sasl_plain_msg *out, char *msg,
                     size_t msg_cap);
/* Checks a PLAIN message against users in time independent of where the password differs.
 * Returns 0 and the user name in user (NUL-terminated, SASL_USER_BYTES_MAX) or LM_E_INVALID
 * with the client's message. */
int sasl_plain_authenticate(const struct sasl_plain_users *users, const uint8_t *tok, size_t len,
                            char user[SASL_USER_BYTES_MAX], char *msg, size_t msg_cap);
void sasl_plain_users_free(struct sasl_plain_users *u);

/* ---- JAAS (the value of sasl.jaas.config) ------------------------------------------------- */

enum { SASL_JAAS_OPTIONS_MAX = 1024, SASL_JAAS_TEXT_MAX = 1 << 20 };

struct sasl_jaas_option {
    char *key, *value; /* owned */
};
struct sasl_jaas {
    char *module;  /* owned: the login module's class name */
    char flag[16]; /* required, requisite, sufficient, optional */
    struct sasl_jaas_option *options;
    size_t option_count;
};

/* Parses one login module entry as Kafka's JaasConfig does: `<class> <flag> [key=value]... ;`
 * with values quoted ("..." with \ escapes) or bare. Exactly one module. Returns 0, LM_E_INVALID
 * (why in err, err_cap bytes) or LM_E_NOMEM. */
int sasl_jaas_parse(const char *text, struct sasl_jaas *out, char *err, size_t err_cap);
void sasl_jaas_free(struct sasl_jaas *j);
/* The PLAIN users of a PlainLoginModule entry (its user_<name> options). Returns 0,
 * LM_E_INVALID (another module, or a duplicate user) or LM_E_NOMEM. */
int sasl_jaas_plain_users(const struct sasl_jaas *j, struct sasl_plain_users *out, char *err,
                          size_t err_cap);

/* ---- SCRAM (RFC 5802, RFC 7677) ----------------------------------------------------------- */

/* A stored credential (RFC 5802 §3: what the server keeps; Kafka's ScramCredential). */
struct sasl_scram_cred {
    enum sasl_mech mech;
    int32_t iterations;
    uint8_t salt[SASL_SCRAM_SALT_BYTES_MAX];
    uint32_t salt_len;
    uint8_t stored_key[SASL_SCRAM_KEY_BYTES_MAX];
    uint8_t server_key[SASL_SCRAM_KEY_BYTES_MAX];
};

/* Hi(password, salt, iterations) = SaltedPassword (RFC 5802 §2.2, PBKDF2 with HMAC of the
 * mechanism's hash). out gets sasl_scram_key_len(mech) bytes. Returns 0 or LM_E_INVALID. */
int sasl_scram_salted_password(enum sasl_mech mech, const char *password, size_t password_len,
                               const uint8_t *salt, size_t salt_len, int32_t iterations,
                               uint8_t out[SASL_SCRAM_KEY_BYTES_MAX]);
/* StoredKey and ServerKey from SaltedPassword (RFC 5802 §3) into cred (mech, iterations and
 * salt set here too). Returns 0 or LM_E_INVALID (salt too long, bad mechanism). */
int sasl_scram_cred_from_salted(enum sasl_mech mech, const uint8_t *salted, size_t salted_len,
                                const uint8_t *salt, size_t salt_len, int32_t iterations,
                                struct sasl_scram_cred *cred);
/* A credential from a password with a fresh random salt (32 bytes). Returns 0, LM_E_INVALID or
 * LM_E_IO (no randomness). */
int sasl_scram_cred_from_password(enum sasl_mech mech, const char *password, int32_t iterations,
                                  struct sasl_scram_cred *cred);

/* Looks up the credential of user for mech; returns true and fills out when there is one. */
typedef bool (*sasl_scram_lookup_fn)(void *ctx, const char *user, enum sasl_mech mech,
                                     struct sasl_scram_cred *out);

enum sasl_scram_step { SASL_SCRAM_START = 0, SASL_SCRAM_SENT_FIRST, SASL_SCRAM_DONE };

/* The server side of one SCRAM exchange. No heap: every field has its bound. */
struct sasl_scram_server {
    enum sasl_mech mech;
    enum sasl_scram_step step;
    char user[SASL_USER_BYTES_MAX];
    struct sasl_scram_cred cred;
    char gs2_header[SASL_USER_BYTES_MAX * 3 + 8]; /* for the c= check */
    size_t gs2_len;
    /* client-first-message-bare "," server-first-message: the start of AuthMessage */
    char auth_start[SASL_TOKEN_BYTES_MAX + 512];
    size_t auth_start_len;
    char nonce[SASL_SCRAM_NONCE_BYTES_MAX * 2 + 1]; /* client nonce + server nonce */
    size_t nonce_len;
};

void sasl_scram_server_init(struct sasl_scram_server *s, enum sasl_mech mech);
/* One client token. SASL_SCRAM_START: client-first-message; the user's credential comes from
 * lookup; the answer is server-first-message. SASL_SCRAM_SENT_FIRST: client-final-message; the
 * answer is server-final-message and the exchange is done (the user in s->user). The answer
 * goes into out (out_cap bytes, *out_len). server_nonce: the server's random part for the
 * first step (NULL: fresh random bytes; tests pass fixed ones). Returns 0, or LM_E_INVALID
 * with the client's message (any malformed or wrong token, unknown user, bad proof,
 * tokenauth), or LM_E_STATE when called after the exchange ended. */
int sasl_scram_server_step(struct sasl_scram_server *s, const uint8_t *tok, size_t len,
                           sasl_scram_lookup_fn lookup, void *lookup_ctx, const char *server_nonce,
                           uint8_t *out, size_t out_cap, size_t *out_len, char *msg,
                           size_t msg_cap);

/* Base64 (RFC 4648, padded). encode returns the length written (out needs 4*ceil(n/3)+1);
 * decode returns the length or -1 for bad input or when it exceeds out_cap. */
size_t sasl_b64_encode(const uint8_t *in, size_t n, char *out);
int sasl_b64_decode(const char *in, size_t n, uint8_t *out, size_t out_cap);

/* The value of one base64 digit, with c62 and c63 as the alphabet's last two ('+' '/', or '-'
 * '_' for base64url); -1 for any other character. */
int sasl_b64_digit(char c, char c62, char c63);

/* Constant-time equality of two byte strings of the same length. */
bool sasl_ct_equal(const void *a, const void *b, size_t n);

#endif
