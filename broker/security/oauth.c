/* SASL/OAUTHBEARER: the client's initial response and Kafka's unsecured-JWS validation
 * (oauth.h). */
#include "broker/security/oauth.h"
#include "broker/security/sasl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

#define KVSEP          0x01
#define JSON_DEPTH_MAX 32

void oauth_unsecured_config_default(struct oauth_unsecured_config *c)
{
    memset(c, 0, sizeof(*c));
    snprintf(c->principal_claim, sizeof(c->principal_claim), "sub");
    snprintf(c->scope_claim, sizeof(c->scope_claim), "scope");
}

/* Copies value without its leading and trailing blanks; false when it does not fit. */
static bool trimmed_copy(const char *value, char *out, size_t cap)
{
    while (*value == ' ' || *value == '\t')
        value++;
    size_t n = strlen(value);
    while (n > 0 && (value[n - 1] == ' ' || value[n - 1] == '\t'))
        n--;
    if (n >= cap)
        return false;
    memcpy(out, value, n);
    out[n] = '\0';
    return true;
}

int oauth_unsecured_config_set(struct oauth_unsecured_config *c, const char *key, const char *value,
                               char *err, size_t err_cap)
{
    char v[OAUTH_SCOPES_MAX * OAUTH_SCOPE_BYTES_MAX];
    if (!trimmed_copy(value, v, sizeof(v))) {
        snprintf(err, err_cap, "%s is too long", key);
        return LM_E_INVALID;
    }
    if (strcmp(key, "unsecuredValidatorPrincipalClaimName") == 0 ||
        strcmp(key, "unsecuredValidatorScopeClaimName") == 0) {
        char *dst = key[18] == 'P' ? c->principal_claim : c->scope_claim;
        if (v[0] == '\0')
            return 0; /* blank: Kafka keeps its default */
        if (strlen(v) >= OAUTH_CLAIM_NAME_BYTES_MAX) {
            snprintf(err, err_cap, "%s is too long", key);
            return LM_E_INVALID;
        }
        memcpy(dst, v, strlen(v) + 1);
        return 0;
    }
    if (strcmp(key, "unsecuredValidatorRequiredScope") == 0) {
        c->n_required = 0;
        for (char *p = v; *p != '\0';) {
            while (*p == ' ')
                p++;
            size_t n = strcspn(p, " ");
            if (n == 0)
                break;
            if (c->n_required == OAUTH_SCOPES_MAX || n >= OAUTH_SCOPE_BYTES_MAX) {
                snprintf(err, err_cap, "%s: at most %d scope items of %d bytes", key,
                         OAUTH_SCOPES_MAX, OAUTH_SCOPE_BYTES_MAX - 1);
                return LM_E_INVALID;
            }
            memcpy(c->required[c->n_required], p, n);
            c->required[c->n_required++][n] = '\0';
            p += n;
        }
        return 0;
    }
    if (strcmp(key, "unsecuredValidatorAllowableClockSkewMs") == 0) {
        if (v[0] == '\0') {
            c->clock_skew_ms = 0;
            return 0;
        }
        char *end = NULL;
        long long ms = strtoll(v, &end, 10);
        if (end == v || *end != '\0' || ms < 0 || ms > INT32_MAX) {
            snprintf(err, err_cap, "%s must be a non-negative integer: %s", key, v);
            return LM_E_INVALID;
        }
        c->clock_skew_ms = ms;
        return 0;
    }
    return 0;
}

/* ---- the client's initial response -------------------------------------------------------- */

static bool is_alpha(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

static bool is_word(uint8_t c)
{
    return is_alpha(c) || (c >= '0' && c <= '9') || c == '_';
}

static bool is_token_char(uint8_t c)
{
    return is_word(c) || c == '-' || c == '.';
}

static int bad_first(char *msg, size_t msg_cap, const char *why)
{
    snprintf(msg, msg_cap, "Invalid OAUTHBEARER client first message: %s", why);
    return LM_E_INVALID;
}

int oauth_client_first_parse(const uint8_t *m, size_t len, struct oauth_client_first *out,
                             char *msg, size_t msg_cap)
{
    memset(out, 0, sizeof(*out));
    size_t p = 0;
    if (len < 4 || m[0] != 'n' || m[1] != ',')
        return bad_first(msg, msg_cap, "no GS2 header");
    p = 2;
    if (p + 1 < len && m[p] == 'a' && m[p + 1] == '=') {
        p += 2;
        size_t a = p;
        while (p < len && m[p] != ',') {
            /* saslname: 0x01..0x7F but '=' and ',', or =2C / =3D */
            if (m[p] == '=') {
                if (p + 2 >= len ||
                    !((m[p + 1] == '2' && m[p + 2] == 'C') || (m[p + 1] == '3' && m[p + 2] == 'D')))
                    return bad_first(msg, msg_cap, "bad authorization id");
                p += 3;
                continue;
            }
            if (m[p] == 0 || m[p] > 0x7F)
                return bad_first(msg, msg_cap, "bad authorization id");
            p++;
        }
        if (p == a)
            return bad_first(msg, msg_cap, "empty authorization id");
        out->authzid = (const char *)m + a;
        out->authzid_len = p - a;
    }
    if (p + 1 >= len || m[p] != ',' || m[p + 1] != KVSEP)
        return bad_first(msg, msg_cap, "bad GS2 header");
    p += 2;
    bool have_auth = false;
    for (;;) {
        if (p >= len)
            return bad_first(msg, msg_cap, "no closing separator");
        if (m[p] == KVSEP) {
            if (p + 1 != len)
                return bad_first(msg, msg_cap, "data after the closing separator");
            break;
        }
        size_t k = p;
        while (p < len && is_alpha(m[p]))
            p++;
        if (p == k || p >= len || m[p] != '=')
            return bad_first(msg, msg_cap, "bad key");
        size_t klen = p - k;
        size_t v = ++p;
        while (p < len && m[p] != KVSEP) {
            uint8_t c = m[p];
            if (!((c >= 0x21 && c <= 0x7E) || c == ' ' || c == '\t' || c == '\r' || c == '\n'))
                return bad_first(msg, msg_cap, "bad value");
            p++;
        }
        if (p == v || p >= len)
            return bad_first(msg, msg_cap, "bad value");
        size_t vlen = p - v;
        p++; /* the pair's separator */
        if (klen != 4 || memcmp(m + k, "auth", 4) != 0)
            continue; /* a SASL extension (KIP-342): Kafka's default validator accepts them */
        if (have_auth)
            return bad_first(msg, msg_cap, "auth given twice");
        have_auth = true;
        /* "<scheme> <token>": scheme [\w]+, blanks, token [-_.a-zA-Z0-9]+ */
        size_t s = v, e = v + vlen;
        while (s < e && is_word(m[s]))
            s++;
        if (s == v || s - v != 6 || strncasecmp((const char *)m + v, "bearer", 6) != 0)
            return bad_first(msg, msg_cap, "the auth scheme is not Bearer");
        size_t t = s;
        while (t < e && m[t] == ' ')
            t++;
        if (t == s || t == e)
            return bad_first(msg, msg_cap, "no token");
        for (size_t i = t; i < e; i++)
            if (!is_token_char(m[i]))
                return bad_first(msg, msg_cap, "bad token character");
        if (e - t > OAUTH_TOKEN_BYTES_MAX)
            return bad_first(msg, msg_cap, "token too long");
        out->token = (const char *)m + t;
        out->token_len = e - t;
    }
    if (!have_auth)
        return bad_first(msg, msg_cap, "no auth");
    return 0;
}

/* ---- base64url ------------------------------------------------------------------------------ */

static int b64url_val(char c)
{
    return sasl_b64_digit(c, '-', '_');
}

int oauth_b64url_decode(const char *in, size_t n, uint8_t *out, size_t out_cap)
{
    while (n > 0 && in[n - 1] == '=')
        n--;
    if (n % 4 == 1)
        return -1;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        int v = b64url_val(in[i]);
        if (v < 0)
            return -1;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (o >= out_cap)
                return -1;
            out[o++] = (uint8_t)(acc >> bits);
            acc &= (1u << bits) - 1u;
        }
    }
    return (int)o;
}

/* ---- JSON ---------------------------------------------------------------------------------- */

struct jscan {
    const char *p, *end;
};

static void skip_ws(struct jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
        s->p++;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int scan_string(struct jscan *s)
{
    if (s->p >= s->end || *s->p != '"')
        return -1;
    s->p++;
    while (s->p < s->end) {
        unsigned char c = (unsigned char)*s->p++;
        if (c == '"')
            return 0;
        if (c < 0x20)
            return -1;
        if (c != '\\')
            continue;
        if (s->p >= s->end)
            return -1;
        char e = *s->p++;
        if (e == 'u') {
            for (int i = 0; i < 4; i++, s->p++)
                if (s->p >= s->end || hexval(*s->p) < 0)
                    return -1;
        } else if (strchr("\"\\/bfnrt", e) == NULL || e == '\0') {
            return -1;
        }
    }
    return -1;
}

static int scan_number(struct jscan *s)
{
    const char *start = s->p;
    if (s->p < s->end && *s->p == '-')
        s->p++;
    const char *digits = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    if (s->p == digits)
        return -1;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        const char *f = s->p;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
        if (s->p == f)
            return -1;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        const char *x = s->p;
        while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
            s->p++;
        if (s->p == x)
            return -1;
    }
    return s->p > start ? 0 : -1;
}

static int scan_value(struct jscan *s, int depth, enum oauth_json_type *type);

static int scan_container(struct jscan *s, int depth, char close, bool object)
{
    s->p++; /* the opening bracket */
    skip_ws(s);
    if (s->p < s->end && *s->p == close) {
        s->p++;
        return 0;
    }
    for (;;) {
        enum oauth_json_type t;
        skip_ws(s);
        if (object) {
            if (scan_string(s) != 0)
                return -1;
            skip_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return -1;
            s->p++;
            skip_ws(s);
        }
        if (scan_value(s, depth + 1, &t) != 0)
            return -1;
        skip_ws(s);
        if (s->p >= s->end)
            return -1;
        if (*s->p == ',') {
            s->p++;
            continue;
        }
        if (*s->p != close)
            return -1;
        s->p++;
        return 0;
    }
}

static int scan_literal(struct jscan *s, const char *lit)
{
    size_t n = strlen(lit);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, lit, n) != 0)
        return -1;
    s->p += n;
    return 0;
}

static int scan_value(struct jscan *s, int depth, enum oauth_json_type *type)
{
    if (depth > JSON_DEPTH_MAX || s->p >= s->end)
        return -1;
    switch (*s->p) {
    case '"':
        *type = OAUTH_JSON_STRING;
        return scan_string(s);
    case '{':
        *type = OAUTH_JSON_OBJECT;
        return scan_container(s, depth, '}', true);
    case '[':
        *type = OAUTH_JSON_ARRAY;
        return scan_container(s, depth, ']', false);
    case 't':
        *type = OAUTH_JSON_BOOL;
        return scan_literal(s, "true");
    case 'f':
        *type = OAUTH_JSON_BOOL;
        return scan_literal(s, "false");
    case 'n':
        *type = OAUTH_JSON_NULL;
        return scan_literal(s, "null");
    default:
        *type = OAUTH_JSON_NUMBER;
        return scan_number(s);
    }
}

int oauth_json_string(const struct oauth_json_value *v, char *out, size_t out_cap)
{
    if (v->type != OAUTH_JSON_STRING || v->len < 2 || out_cap == 0)
        return -1;
    const char *p = v->start + 1, *end = v->start + v->len - 1;
    size_t o = 0;
    while (p < end) {
        uint32_t cp;
        if (*p != '\\') {
            cp = (unsigned char)*p++;
            if (o + 1 >= out_cap)
                return -1;
            out[o++] = (char)cp;
            continue;
        }
        p++;
        char e = *p++;
        switch (e) {
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u': {
            if (end - p < 4)
                return -1;
            cp = 0;
            for (int i = 0; i < 4; i++)
                cp = cp << 4 | (uint32_t)hexval(*p++);
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* a surrogate pair */
                if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                    return -1;
                uint32_t lo = 0;
                for (int i = 2; i < 6; i++)
                    lo = lo << 4 | (uint32_t)hexval(p[i]);
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return -1;
                p += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return -1;
            }
            break;
        }
        default:
            cp = (uint32_t)(unsigned char)e; /* \" \\ \/ */
            break;
        }
        uint8_t u[4];
        size_t n = 0;
        if (cp < 0x80) {
            u[n++] = (uint8_t)cp;
        } else if (cp < 0x800) {
            u[n++] = (uint8_t)(0xC0 | cp >> 6);
            u[n++] = (uint8_t)(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            u[n++] = (uint8_t)(0xE0 | cp >> 12);
            u[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            u[n++] = (uint8_t)(0x80 | (cp & 0x3F));
        } else {
            u[n++] = (uint8_t)(0xF0 | cp >> 18);
            u[n++] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
            u[n++] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
            u[n++] = (uint8_t)(0x80 | (cp & 0x3F));
        }
        if (o + n >= out_cap)
            return -1;
        memcpy(out + o, u, n);
        o += n;
    }
    out[o] = '\0';
    return (int)o;
}

int oauth_json_member(const char *json, size_t len, const char *key, struct oauth_json_value *out)
{
    memset(out, 0, sizeof(*out));
    struct jscan s = {json, json + len};
    skip_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return LM_E_INVALID;
    s.p++;
    bool found = false;
    skip_ws(&s);
    if (s.p < s.end && *s.p == '}') {
        s.p++;
    } else {
        for (;;) {
            skip_ws(&s);
            const char *ks = s.p;
            if (scan_string(&s) != 0)
                return LM_E_INVALID;
            struct oauth_json_value kv = {OAUTH_JSON_STRING, ks, (size_t)(s.p - ks)};
            char kbuf[OAUTH_CLAIM_NAME_BYTES_MAX];
            int kl = oauth_json_string(&kv, kbuf, sizeof(kbuf));
            skip_ws(&s);
            if (s.p >= s.end || *s.p != ':')
                return LM_E_INVALID;
            s.p++;
            skip_ws(&s);
            const char *vs = s.p;
            enum oauth_json_type t;
            if (scan_value(&s, 1, &t) != 0)
                return LM_E_INVALID;
            if (kl >= 0 && strcmp(kbuf, key) == 0) { /* a repeated member: the last one */
                *out = (struct oauth_json_value){t, vs, (size_t)(s.p - vs)};
                found = true;
            }
            skip_ws(&s);
            if (s.p >= s.end)
                return LM_E_INVALID;
            if (*s.p == ',') {
                s.p++;
                continue;
            }
            if (*s.p != '}')
                return LM_E_INVALID;
            s.p++;
            break;
        }
    }
    skip_ws(&s);
    return s.p == s.end ? (found ? 1 : 0) : LM_E_INVALID;
}

/* ---- the unsecured JWS ---------------------------------------------------------------------- */

int oauth_json_array_next(const struct oauth_json_value *arr, size_t *pos,
                          struct oauth_json_value *elem)
{
    if (arr->type != OAUTH_JSON_ARRAY || arr->len < 2)
        return LM_E_INVALID;
    struct jscan s = {arr->start + 1 + *pos, arr->start + arr->len - 1};
    skip_ws(&s);
    if (s.p < s.end && *s.p == ',' && *pos > 0) {
        s.p++;
        skip_ws(&s);
    }
    if (s.p >= s.end)
        return 0;
    const char *vs = s.p;
    enum oauth_json_type t;
    if (scan_value(&s, 1, &t) != 0)
        return LM_E_INVALID;
    *elem = (struct oauth_json_value){t, vs, (size_t)(s.p - vs)};
    *pos = (size_t)(s.p - (arr->start + 1));
    return 1;
}

bool oauth_json_number(const struct oauth_json_value *v, double *out)
{
    char buf[64];
    if (v->type != OAUTH_JSON_NUMBER || v->len >= sizeof(buf))
        return false;
    memcpy(buf, v->start, v->len);
    buf[v->len] = '\0';
    char *end = NULL;
    *out = strtod(buf, &end);
    return end == buf + v->len;
}

/* Whether the token's scope claim (a space-separated string or an array of strings) holds
 * item. */
static bool scope_has(const struct oauth_json_value *scope, const char *item)
{
    char buf[OAUTH_SCOPES_MAX * OAUTH_SCOPE_BYTES_MAX];
    size_t n = strlen(item);
    if (scope->type == OAUTH_JSON_STRING) {
        if (oauth_json_string(scope, buf, sizeof(buf)) < 0)
            return false;
        for (char *p = buf; *p != '\0';) {
            while (*p == ' ')
                p++;
            size_t k = strcspn(p, " ");
            if (k == n && memcmp(p, item, n) == 0)
                return true;
            p += k;
        }
        return false;
    }
    if (scope->type != OAUTH_JSON_ARRAY)
        return false;
    struct jscan s = {scope->start + 1, scope->start + scope->len - 1};
    while (s.p < s.end) {
        skip_ws(&s);
        if (s.p >= s.end)
            break;
        const char *vs = s.p;
        enum oauth_json_type t;
        if (scan_value(&s, 1, &t) != 0)
            return false;
        struct oauth_json_value v = {t, vs, (size_t)(s.p - vs)};
        if (t == OAUTH_JSON_STRING && oauth_json_string(&v, buf, sizeof(buf)) >= 0 &&
            strcmp(buf, item) == 0)
            return true;
        skip_ws(&s);
        if (s.p < s.end && *s.p == ',')
            s.p++;
    }
    return false;
}

int oauth_refuse(char *why, size_t why_cap, char *challenge, size_t challenge_cap,
                 const char *reason)
{
    snprintf(why, why_cap, "%s", reason);
    snprintf(challenge, challenge_cap, "{\"status\":\"invalid_token\"}");
    return LM_E_INVALID;
}

int oauth_unsecured_validate(const struct oauth_unsecured_config *c, const char *token,
                             size_t token_len, int64_t now_ms, struct oauth_token *out, char *why,
                             size_t why_cap, char *challenge, size_t challenge_cap)
{
    memset(out, 0, sizeof(*out));
    char msg[160];
    if (token_len > OAUTH_TOKEN_BYTES_MAX)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "token too long");
    /* header "." payload "." (an unsecured JWS has an empty signature) */
    const char *d1 = memchr(token, '.', token_len);
    const char *d2 = d1 != NULL ? memchr(d1 + 1, '.', token_len - (size_t)(d1 + 1 - token)) : NULL;
    if (d1 == NULL || d2 == NULL || d2 + 1 != token + token_len)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "not an unsecured JWS (header.payload. with an empty signature)");
    char header[1024], claims[OAUTH_TOKEN_BYTES_MAX];
    int hl = oauth_b64url_decode(token, (size_t)(d1 - token), (uint8_t *)header, sizeof(header));
    int cl = oauth_b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), (uint8_t *)claims, sizeof(claims));
    if (hl <= 0 || cl <= 0)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "bad base64url in the token");
    struct oauth_json_value alg, v;
    char s[OAUTH_PRINCIPAL_BYTES_MAX];
    if (oauth_json_member(header, (size_t)hl, "alg", &alg) != 1 ||
        oauth_json_string(&alg, s, sizeof(s)) < 0 || strcmp(s, "none") != 0)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "the JOSE header's alg is not \"none\"");
    int rc = oauth_json_member(claims, (size_t)cl, c->principal_claim, &v);
    if (rc < 0)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "the claims are not a JSON object");
    if (rc == 0) {
        snprintf(msg, sizeof(msg), "Required claim missing: %s", c->principal_claim);
        return oauth_refuse(why, why_cap, challenge, challenge_cap, msg);
    }
    if (v.type != OAUTH_JSON_STRING ||
        oauth_json_string(&v, out->principal, sizeof(out->principal)) <= 0) {
        snprintf(msg, sizeof(msg), "The %s claim is not a non-empty string", c->principal_claim);
        return oauth_refuse(why, why_cap, challenge, challenge_cap, msg);
    }
    double iat = 0, exp = 0;
    bool have_iat = false;
    rc = oauth_json_member(claims, (size_t)cl, "iat", &v);
    if (rc == 1) {
        if (!oauth_json_number(&v, &iat))
            return oauth_refuse(why, why_cap, challenge, challenge_cap, "iat is not a number");
        have_iat = true;
        if (1000.0 * iat > (double)(now_ms + c->clock_skew_ms))
            return oauth_refuse(why, why_cap, challenge, challenge_cap,
                                "The Issued At value was after the current time plus allowable "
                                "clock skew");
    }
    rc = oauth_json_member(claims, (size_t)cl, "exp", &v);
    if (rc != 1)
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "Required claim missing: exp");
    if (!oauth_json_number(&v, &exp))
        return oauth_refuse(why, why_cap, challenge, challenge_cap, "exp is not a number");
    if ((double)(now_ms - c->clock_skew_ms) >= 1000.0 * exp)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "The current time minus allowable clock skew was on or after the "
                            "Expiration Time");
    if (have_iat && exp <= iat)
        return oauth_refuse(why, why_cap, challenge, challenge_cap,
                            "The Expiration Time was not after the Issued At time");
    if (c->n_required > 0) {
        struct oauth_json_value scope = {0};
        rc = oauth_json_member(claims, (size_t)cl, c->scope_claim, &scope);
        for (uint32_t i = 0; i < c->n_required; i++) {
            if (rc == 1 && scope_has(&scope, c->required[i]))
                continue;
            snprintf(why, why_cap, "The provided scope was missing a required scope (%s)",
                     c->required[i]);
            /* Kafka's insufficient_scope challenge names the whole required scope */
            size_t o = (size_t)snprintf(challenge, challenge_cap,
                                        "{\"status\":\"insufficient_scope\", \"scope\":\"[");
            for (uint32_t j = 0; j < c->n_required && o < challenge_cap; j++)
                o += (size_t)snprintf(challenge + o, challenge_cap - o, "%s%s", j ? ", " : "",
                                      c->required[j]);
            if (o < challenge_cap)
                snprintf(challenge + o, challenge_cap - o, "]\"}");
            return LM_E_INVALID;
        }
    }
    out->expires_ms = exp * 1000.0 > (double)INT64_MAX ? INT64_MAX : (int64_t)(exp * 1000.0);
    why[0] = '\0';
    challenge[0] = '\0';
    return 0;
}
