/* SASL/OAUTHBEARER with signed tokens (oauth.h): JWKS verification keys and the validation of
 * Kafka's OAuthBearerValidatorCallbackHandler (KIP-768), with OpenSSL's libcrypto. */
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "broker/security/oauth.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

enum key_type { KEY_RSA = 1, KEY_EC };

struct oauth_key {
    char kid[128];
    bool has_kid;
    enum key_type type;
    size_t ec_size; /* bytes of a coordinate (32, 48, 66) */
    EVP_PKEY *pkey;
};

struct oauth_jwks {
    size_t n;
    struct oauth_key keys[OAUTH_JWKS_KEYS_MAX];
};

void oauth_jwks_free(struct oauth_jwks *k)
{
    if (k == NULL)
        return;
    for (size_t i = 0; i < k->n; i++)
        EVP_PKEY_free(k->keys[i].pkey);
    free(k);
}

size_t oauth_jwks_count(const struct oauth_jwks *k)
{
    return k != NULL ? k->n : 0;
}

/* A member that must be a string, decoded into out. */
static bool member_string(const struct oauth_json_value *obj, const char *key, char *out,
                          size_t cap)
{
    struct oauth_json_value v;
    return oauth_json_member(obj->start, obj->len, key, &v) == 1 &&
           oauth_json_string(&v, out, cap) >= 0;
}

/* A base64url member decoded into out (cap bytes); its length or -1. */
static int member_b64(const struct oauth_json_value *obj, const char *key, uint8_t *out, size_t cap)
{
    char text[1400];
    if (!member_string(obj, key, text, sizeof(text)))
        return -1;
    return oauth_b64url_decode(text, strlen(text), out, cap);
}

static EVP_PKEY *pkey_from(const char *type, OSSL_PARAM_BLD *bld)
{
    OSSL_PARAM *params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
    EVP_PKEY *pk = NULL;
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pk, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pk = NULL;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    return pk;
}

static EVP_PKEY *rsa_key(const struct oauth_json_value *obj)
{
    uint8_t n[1024], e[16];
    int nl = member_b64(obj, "n", n, sizeof(n)), el = member_b64(obj, "e", e, sizeof(e));
    if (nl < 128 || el <= 0) /* RSA keys under 1024 bits are not accepted */
        return NULL;
    BIGNUM *bn = BN_bin2bn(n, nl, NULL), *be = BN_bin2bn(e, el, NULL);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bn != NULL && be != NULL && bld != NULL &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) &&
        OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        pk = pkey_from("RSA", bld);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pk;
}

static EVP_PKEY *ec_key(const struct oauth_json_value *obj, size_t *size)
{
    char crv[16];
    if (!member_string(obj, "crv", crv, sizeof(crv)))
        return NULL;
    const char *group = NULL;
    if (strcmp(crv, "P-256") == 0) {
        group = "prime256v1";
        *size = 32;
    } else if (strcmp(crv, "P-384") == 0) {
        group = "secp384r1";
        *size = 48;
    } else if (strcmp(crv, "P-521") == 0) {
        group = "secp521r1";
        *size = 66;
    } else {
        return NULL;
    }
    uint8_t x[66], y[66], pub[1 + 2 * 66];
    int xl = member_b64(obj, "x", x, sizeof(x)), yl = member_b64(obj, "y", y, sizeof(y));
    if (xl != (int)*size || yl != (int)*size)
        return NULL;
    pub[0] = 0x04; /* uncompressed point */
    memcpy(pub + 1, x, *size);
    memcpy(pub + 1 + *size, y, *size);
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    EVP_PKEY *pk = NULL;
    if (bld != NULL && OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) &&
        OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, 1 + 2 * *size))
        pk = pkey_from("EC", bld);
    OSSL_PARAM_BLD_free(bld);
    return pk;
}

int oauth_jwks_parse(const char *json, size_t len, struct oauth_jwks **out, char *err,
                     size_t err_cap)
{
    *out = NULL;
    struct oauth_json_value keys;
    if (oauth_json_member(json, len, "keys", &keys) != 1 || keys.type != OAUTH_JSON_ARRAY) {
        snprintf(err, err_cap, "not a JWKS document (an object with a \"keys\" array)");
        return LM_E_INVALID;
    }
    struct oauth_jwks *k = calloc(1, sizeof(*k));
    if (k == NULL)
        return LM_E_NOMEM;
    size_t pos = 0;
    struct oauth_json_value obj;
    int rc;
    while ((rc = oauth_json_array_next(&keys, &pos, &obj)) == 1) {
        if (obj.type != OAUTH_JSON_OBJECT)
            continue;
        char kty[16], use[16];
        if (!member_string(&obj, "kty", kty, sizeof(kty)))
            continue;
        if (member_string(&obj, "use", use, sizeof(use)) && strcmp(use, "sig") != 0)
            continue;
        if (k->n == OAUTH_JWKS_KEYS_MAX) {
            snprintf(err, err_cap, "more than %d keys", OAUTH_JWKS_KEYS_MAX);
            oauth_jwks_free(k);
            return LM_E_INVALID;
        }
        struct oauth_key *key = &k->keys[k->n];
        if (strcmp(kty, "RSA") == 0) {
            key->type = KEY_RSA;
            key->pkey = rsa_key(&obj);
        } else if (strcmp(kty, "EC") == 0) {
            key->type = KEY_EC;
            key->pkey = ec_key(&obj, &key->ec_size);
        }
        if (key->pkey == NULL) {
            memset(key, 0, sizeof(*key));
            continue; /* another type, or a key this verifier cannot use */
        }
        key->has_kid = member_string(&obj, "kid", key->kid, sizeof(key->kid));
        k->n++;
    }
    if (rc < 0 || k->n == 0) {
        snprintf(err, err_cap, rc < 0 ? "malformed \"keys\" array" : "no usable RSA or EC key");
        oauth_jwks_free(k);
        return LM_E_INVALID;
    }
    *out = k;
    return 0;
}

void oauth_secured_config_default(struct oauth_secured_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->sub_claim, sizeof(c->sub_claim), "sub");
    c->clock_skew_ms = 30000;
}

struct alg {
    const char *name;
    enum key_type type;
    int bits; /* 256, 384, 512 */
    bool pss;
};

static const struct alg ALGS[] = {
    {"RS256", KEY_RSA, 256, false}, {"RS384", KEY_RSA, 384, false}, {"RS512", KEY_RSA, 512, false},
    {"PS256", KEY_RSA, 256, true},  {"PS384", KEY_RSA, 384, true},  {"PS512", KEY_RSA, 512, true},
    {"ES256", KEY_EC, 256, false},  {"ES384", KEY_EC, 384, false},  {"ES512", KEY_EC, 512, false},
};

static const EVP_MD *alg_md(const struct alg *a)
{
    return a->bits == 256 ? EVP_sha256() : a->bits == 384 ? EVP_sha384() : EVP_sha512();
}

/* JWS ES* signatures are R || S of the curve's size; OpenSSL verifies DER. */
static int ecdsa_der(const uint8_t *sig, size_t len, size_t size, uint8_t **der)
{
    if (len != 2 * size)
        return -1;
    ECDSA_SIG *es = ECDSA_SIG_new();
    BIGNUM *r = BN_bin2bn(sig, (int)size, NULL), *s = BN_bin2bn(sig + size, (int)size, NULL);
    int n = -1;
    if (es != NULL && r != NULL && s != NULL && ECDSA_SIG_set0(es, r, s) == 1) {
        r = s = NULL; /* owned by es now */
        *der = NULL;
        n = i2d_ECDSA_SIG(es, der);
    }
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(es);
    return n;
}

static bool verify_with(const struct oauth_key *k, const struct alg *a, const uint8_t *input,
                        size_t input_len, const uint8_t *sig, size_t sig_len)
{
    if (k->type != a->type)
        return false;
    uint8_t *der = NULL;
    if (a->type == KEY_EC) {
        size_t want = a->bits == 256 ? 32 : a->bits == 384 ? 48 : 66;
        if (k->ec_size != want)
            return false;
        int n = ecdsa_der(sig, sig_len, k->ec_size, &der);
        if (n <= 0)
            return false;
        sig = der;
        sig_len = (size_t)n;
    }
    EVP_MD_CTX *m = EVP_MD_CTX_new();
    EVP_PKEY_CTX *pctx = NULL;
    bool ok = m != NULL && EVP_DigestVerifyInit(m, &pctx, alg_md(a), NULL, k->pkey) == 1;
    if (ok && a->pss)
        ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) > 0 &&
             EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) > 0;
    ok = ok && EVP_DigestVerify(m, sig, sig_len, input, input_len) == 1;
    EVP_MD_CTX_free(m);
    OPENSSL_free(der);
    return ok;
}

/* Whether the aud claim (a string or a list of strings) names one of the expected audiences. */
static bool audience_ok(const struct oauth_secured_config *c, const struct oauth_json_value *aud)
{
    char v[OAUTH_AUDIENCE_BYTES_MAX];
    struct oauth_json_value one = *aud;
    size_t pos = 0;
    for (;;) {
        if (aud->type == OAUTH_JSON_ARRAY) {
            if (oauth_json_array_next(aud, &pos, &one) != 1)
                return false;
        }
        if (oauth_json_string(&one, v, sizeof(v)) >= 0)
            for (uint32_t i = 0; i < c->n_audience; i++)
                if (strcmp(v, c->audience[i]) == 0)
                    return true;
        if (aud->type != OAUTH_JSON_ARRAY)
            return false;
    }
}

int oauth_secured_validate(const struct oauth_secured_config *c, const char *token,
                           size_t token_len, int64_t now_ms, struct oauth_token *out, char *why,
                           size_t why_cap, char *challenge, size_t challenge_cap)
{
    memset(out, 0, sizeof(*out));
    LM_ASSERT(c->keys != NULL);
    if (token_len > OAUTH_TOKEN_BYTES_MAX)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "token too long");
    const char *d1 = memchr(token, '.', token_len);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', token_len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || d2 + 1 >= token + token_len ||
        memchr(d2 + 1, '.', token_len - (size_t)(d2 + 1 - token)) != NULL)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "not a signed JWS (header.payload.signature)");
    char header[1024], claims[OAUTH_TOKEN_BYTES_MAX];
    uint8_t sig[1024];
    int hl = oauth_b64url_decode(token, (size_t)(d1 - token), (uint8_t *)header, sizeof(header));
    int cl = oauth_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), (uint8_t *)claims, sizeof(claims));
    int sl = oauth_b64url_decode(d2 + 1, token_len - (size_t)(d2 + 1 - token), sig, sizeof(sig));
    if (hl <= 0 || cl <= 0 || sl <= 0)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "bad base64url in the token");
    struct oauth_json_value v;
    char alg_name[16], kid[128];
    if (oauth_json_member(header, (size_t)hl, "alg", &v) != 1 ||
        oauth_json_string(&v, alg_name, sizeof(alg_name)) < 0)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "the JOSE header has no alg");
    const struct alg *a = NULL;
    for (size_t i = 0; i < sizeof(ALGS) / sizeof(ALGS[0]); i++)
        if (strcmp(ALGS[i].name, alg_name) == 0)
            a = &ALGS[i];
    if (a == NULL)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "the signature algorithm is not RS/PS/ES 256/384/512");
    bool has_kid = oauth_json_member(header, (size_t)hl, "kid", &v) == 1 &&
                   oauth_json_string(&v, kid, sizeof(kid)) >= 0;
    bool verified = false, key_found = false;
    for (size_t i = 0; i < c->keys->n && !verified; i++) {
        const struct oauth_key *k = &c->keys->keys[i];
        if (has_kid && (!k->has_kid || strcmp(k->kid, kid) != 0))
            continue;
        key_found |= k->type == a->type;
        verified = verify_with(k, a, (const uint8_t *)token, (size_t)(d2 - token), sig, (size_t)sl);
    }
    if (!verified)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            key_found ? "the signature does not verify"
                                      : "no JWKS key for the token's kid and algorithm");
    /* the claims (jose4j's JwtConsumer as Kafka's ValidatorAccessTokenValidator builds it) */
    double exp = 0, iat = 0, nbf = 0;
    if (oauth_json_member(claims, (size_t)cl, "exp", &v) != 1 || !oauth_json_number(&v, &exp))
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "no exp claim (a number)");
    if (oauth_json_member(claims, (size_t)cl, "iat", &v) != 1 || !oauth_json_number(&v, &iat))
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "no iat claim (a number)");
    if ((double)(now_ms - c->clock_skew_ms) >= 1000.0 * exp)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "the token has expired");
    if (oauth_json_member(claims, (size_t)cl, "nbf", &v) == 1 &&
        (!oauth_json_number(&v, &nbf) || (double)(now_ms + c->clock_skew_ms) < 1000.0 * nbf))
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "the token is not valid yet (nbf)");
    if (c->n_audience > 0 &&
        (oauth_json_member(claims, (size_t)cl, "aud", &v) != 1 || !audience_ok(c, &v)))
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "the token's audience (aud) is not an expected one");
    if (c->issuer[0] != '\0') {
        char iss[OAUTH_AUDIENCE_BYTES_MAX];
        if (oauth_json_member(claims, (size_t)cl, "iss", &v) != 1 ||
            oauth_json_string(&v, iss, sizeof(iss)) < 0 || strcmp(iss, c->issuer) != 0)
            return oauth_refuse(why, why_cap, challenge, challenge_cap,
                                "the token's issuer (iss) is not the expected one");
    }
    if (oauth_json_member(claims, (size_t)cl, c->sub_claim, &v) != 1 ||
        oauth_json_string(&v, out->principal, sizeof(out->principal)) <= 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "the %s claim is not a non-empty string", c->sub_claim);
        return oauth_refuse(why, why_cap, challenge, challenge_cap, msg);
    }
    out->expires_ms = exp * 1000.0 > (double)INT64_MAX ? INT64_MAX : (int64_t)(exp * 1000.0);
    why[0] = '\0';
    challenge[0] = '\0';
    return 0;
}
