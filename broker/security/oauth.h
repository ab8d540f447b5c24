/* SASL/OAUTHBEARER (RFC 7628, KIP-255) as Kafka's brokers serve it by default: the client's
 * initial response (GS2 header, then kvsep-separated key=value pairs with auth=Bearer <token>)
 * and the token checked as Kafka's OAuthBearerUnsecuredValidatorCallbackHandler does: an
 * unsecured JWS ("alg":"none", header.payload. with an empty signature) whose claims carry the
 * principal (claim "sub" unless configured), an expiration time "exp" (required), an issued-at
 * time "iat" (optional) and a scope. Pure functions: no I/O, no allocation, every length
 * bounded; a malformed token is an authentication failure, never an assertion. */
#ifndef LAMINAR_BROKER_SECURITY_OAUTH_H
#define LAMINAR_BROKER_SECURITY_OAUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    OAUTH_CLAIM_NAME_BYTES_MAX = 64,
    OAUTH_SCOPES_MAX = 16,
    OAUTH_SCOPE_BYTES_MAX = 128,
    OAUTH_PRINCIPAL_BYTES_MAX = 256,
    OAUTH_TOKEN_BYTES_MAX = 8192,
    OAUTH_ERROR_BYTES_MAX = 512, /* the JSON error challenge */
};

/* The unsecuredValidator* options of the OAuthBearerLoginModule entry. */
struct oauth_unsecured_config {
    char principal_claim[OAUTH_CLAIM_NAME_BYTES_MAX]; /* unsecuredValidatorPrincipalClaimName */
    char scope_claim[OAUTH_CLAIM_NAME_BYTES_MAX];     /* unsecuredValidatorScopeClaimName */
    uint32_t n_required;                              /* unsecuredValidatorRequiredScope */
    char required[OAUTH_SCOPES_MAX][OAUTH_SCOPE_BYTES_MAX];
    int64_t clock_skew_ms; /* unsecuredValidatorAllowableClockSkewMs */
};

/* Kafka's defaults: "sub", "scope", no required scope, no skew. */
void oauth_unsecured_config_default(struct oauth_unsecured_config *c);
/* Sets one option (key without the module's prefix handling: the JAAS option name as Kafka
 * spells it). Unknown keys are ignored, as Kafka's handler ignores them. Returns 0 or
 * LM_E_INVALID (why in err). */
int oauth_unsecured_config_set(struct oauth_unsecured_config *c, const char *key, const char *value,
                               char *err, size_t err_cap);

/* The parts of a client's initial response: pointers into the message. */
struct oauth_client_first {
    const char *authzid; /* NULL when absent */
    size_t authzid_len;
    const char *token;
    size_t token_len;
};

/* Parses "n,[a=<authzid>],\x01(key=value\x01)*\x01" with an auth=Bearer <token> pair, as
 * Kafka's OAuthBearerClientInitialResponse. Returns 0 or LM_E_INVALID with the message for the
 * client in msg. */
int oauth_client_first_parse(const uint8_t *msg_in, size_t len, struct oauth_client_first *out,
                             char *msg, size_t msg_cap);

/* A validated token. */
struct oauth_token {
    char principal[OAUTH_PRINCIPAL_BYTES_MAX];
    int64_t expires_ms; /* "exp" in ms since the epoch */
};

/* Validates an unsecured JWS at now_ms. Returns 0 and the token; or LM_E_INVALID with the
 * reason in why (for the log) and the JSON error challenge Kafka sends in challenge
 * ({"status":"invalid_token"}, or "insufficient_scope" with the required scope). */
int oauth_unsecured_validate(const struct oauth_unsecured_config *c, const char *token,
                             size_t token_len, int64_t now_ms, struct oauth_token *out, char *why,
                             size_t why_cap, char *challenge, size_t challenge_cap);

/* ---- signed tokens (KIP-768: Kafka's OAuthBearerValidatorCallbackHandler) ------------------ */

enum { OAUTH_AUDIENCES_MAX = 8, OAUTH_AUDIENCE_BYTES_MAX = 256, OAUTH_JWKS_KEYS_MAX = 64 };

/* The verification keys of a JWKS document (RFC 7517): RSA and EC (P-256, P-384, P-521) public
 * keys with their kid. Opaque; owned by the caller (oauth_jwks_free). */
struct oauth_jwks;
/* Parses a JWKS document ({"keys":[...]}); keys of other types or curves, and keys whose use is
 * not "sig", are skipped as a JWS verifier skips them. Returns 0, LM_E_INVALID (why in err:
 * not JSON, no usable key, more than OAUTH_JWKS_KEYS_MAX) or LM_E_NOMEM. */
int oauth_jwks_parse(const char *json, size_t len, struct oauth_jwks **out, char *err,
                     size_t err_cap);
void oauth_jwks_free(struct oauth_jwks *k);
size_t oauth_jwks_count(const struct oauth_jwks *k);

/* sasl.oauthbearer.* settings of the secured validator. */
struct oauth_secured_config {
    char sub_claim[OAUTH_CLAIM_NAME_BYTES_MAX]; /* sasl.oauthbearer.sub.claim.name (sub) */
    int64_t clock_skew_ms;                      /* sasl.oauthbearer.clock.skew.seconds (30) */
    uint32_t n_audience;                        /* sasl.oauthbearer.expected.audience */
    char audience[OAUTH_AUDIENCES_MAX][OAUTH_AUDIENCE_BYTES_MAX];
    char issuer[OAUTH_AUDIENCE_BYTES_MAX]; /* sasl.oauthbearer.expected.issuer ("" none) */
    const struct oauth_jwks *keys;         /* borrowed */
};
void oauth_secured_config_default(struct oauth_secured_config *c);

/* Validates a signed JWS (RS256/384/512, PS256/384/512, ES256/384/512; "none" and HMAC are
 * refused) against the keys (the kid's key, or each key of the algorithm's type when the
 * header has no kid) and the claims as Kafka's secured validator (jose4j): exp and iat
 * required, with the clock skew; the audience (one of aud's values) and issuer when
 * configured; the sub claim a non-empty string. Results as oauth_unsecured_validate. */
int oauth_secured_validate(const struct oauth_secured_config *c, const char *token,
                           size_t token_len, int64_t now_ms, struct oauth_token *out, char *why,
                           size_t why_cap, char *challenge, size_t challenge_cap);

/* A refused token: reason into why and Kafka's {"status":"invalid_token"} challenge; returns
 * LM_E_INVALID. */
int oauth_refuse(char *why, size_t why_cap, char *challenge, size_t challenge_cap,
                 const char *reason);

/* base64url (RFC 4648 §5) without padding, as JWS uses; padding is accepted. Returns the
 * decoded length, or -1 for bad input or output over out_cap. */
int oauth_b64url_decode(const char *in, size_t n, uint8_t *out, size_t out_cap);

/* A JSON value found by oauth_json_member: where it starts and ends in the text. */
enum oauth_json_type {
    OAUTH_JSON_NONE = 0,
    OAUTH_JSON_STRING,
    OAUTH_JSON_NUMBER,
    OAUTH_JSON_ARRAY,
    OAUTH_JSON_OBJECT,
    OAUTH_JSON_BOOL,
    OAUTH_JSON_NULL
};
struct oauth_json_value {
    enum oauth_json_type type;
    const char *start; /* the value's text, quotes and brackets included */
    size_t len;
};
/* Finds member `key` of the top-level object in json[0..len). Returns 1 when found, 0 when
 * the object has no such member, LM_E_INVALID when json is not one well-formed object (depth
 * at most 32). */
int oauth_json_member(const char *json, size_t len, const char *key, struct oauth_json_value *out);
/* The next element of a JSON array value from *pos (start at 0): returns 1 with the element,
 * 0 at the end, LM_E_INVALID for a malformed array. */
int oauth_json_array_next(const struct oauth_json_value *arr, size_t *pos,
                          struct oauth_json_value *elem);
/* A JSON number value as a double; false when v is not a number. */
bool oauth_json_number(const struct oauth_json_value *v, double *out);
/* Decodes a JSON string value (escapes, \u with surrogate pairs, into UTF-8) into out,
 * NUL-terminated. Returns the length or -1 (not a string, bad escape, over out_cap - 1). */
int oauth_json_string(const struct oauth_json_value *v, char *out, size_t out_cap);

#endif
