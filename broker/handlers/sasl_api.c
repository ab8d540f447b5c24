/* SASL on the connection (KIP-43 SaslHandshake, KIP-152 SaslAuthenticate, KIP-368
 * re-authentication): the per-listener mechanisms and PLAIN users read from Kafka's keys, the
 * exchange state machine of a connection, and SCRAM credentials from the metadata image. The
 * runtime (conn.c) refuses every other request on a SASL listener until the exchange succeeds.
 *
 * Configuration, as Kafka reads it (an existing server.properties works unchanged):
 *   listener.security.protocol.map        NAME:SASL_PLAINTEXT or NAME:SASL_SSL marks a SASL
 *                                         listener
 *   listener.name.<l>.sasl.enabled.mechanisms, else sasl.enabled.mechanisms (Kafka: GSSAPI)
 *   listener.name.<l>.plain.sasl.jaas.config          PlainLoginModule with user_<name>="pw"
 *   listener.name.<l>.scram-sha-256|512.sasl.jaas.config  ScramLoginModule (options unused)
 *   connections.max.reauth.ms             the session lifetime (0: sessions never expire)
 *   laminar.scram.credentials             SCRAM users written at the first start */
#include <openssl/crypto.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <strings.h>

#include "broker/handlers/handlers.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/handlers/sasl_api.h"
#include "broker/log.h"
#include "broker/meta/meta_store.h"
#include "broker/security/http_get.h"
#include "broker/security/oauth.h"
#include "broker/security/sasl.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_messages.h"

enum { SASL_API_HANDSHAKE = 17, SASL_API_AUTHENTICATE = 36 };

struct sasl_listener {
    bool sasl;
    uint32_t mechs; /* 1 << enum sasl_mech */
    struct sasl_plain_users plain;
    struct oauth_unsecured_config oauth; /* OAUTHBEARER: the unsecuredValidator* options */
    /* OAUTHBEARER with Kafka's OAuthBearerValidatorCallbackHandler: signed tokens checked
     * against the keys of sasl.oauthbearer.jwks.endpoint.url (a file, or an http(s) URL
     * fetched again in the background, sasl_node.jwks_lock guarding jwks and sec.keys) */
    bool oauth_secured;
    struct oauth_jwks *jwks;
    struct oauth_secured_config sec;
    char jwks_url[1024]; /* http(s) source; "" for a file */
    char jwks_ca[512];   /* laminar.oauthbearer.jwks.ssl.truststore.location */
    int64_t jwks_refresh_ms, jwks_backoff_ms, jwks_backoff_max_ms, jwks_backoff_now;
    uint64_t jwks_next_ms, jwks_last_ms; /* monotonic: the next fetch, the last one */
    bool jwks_kick;                      /* a token named an unknown kid: fetch sooner */
    struct kafka_str names[4];           /* the enabled mechanisms, for SaslHandshake */
    int32_t names_count;
};

struct sasl_node {
    struct sasl_listener listeners[BROKER_LISTENERS_MAX];
    int64_t reauth_ms;
    /* the background fetches of http(s) JWKS (jwks_refresher) */
    pthread_mutex_t jwks_lock;
    pthread_cond_t jwks_cond;
    pthread_t jwks_thread;
    bool jwks_thread_on, jwks_stop;
};

/* One connection's exchange (broker_conn_auth.state). */
enum sasl_phase {
    SASL_PHASE_INITIAL = 0, /* expecting SaslHandshake */
    SASL_PHASE_HANDSHAKE,   /* mechanism chosen, expecting SaslAuthenticate */
    SASL_PHASE_DONE,        /* authenticated; a SaslHandshake starts re-authentication */
};
struct sasl_conn {
    enum sasl_phase phase;
    enum sasl_mech mech;
    enum sasl_mech session_mech;     /* the mechanism of the current session (re-auth keeps it) */
    struct sasl_scram_server *scram; /* during a SCRAM exchange */
    /* OAUTHBEARER: a token was refused with an error challenge; the client's next token must
     * be a lone kvsep (RFC 7628 §3.2.3), answered with the failure */
    bool oauth_error_sent;
    char oauth_why[OAUTH_ERROR_BYTES_MAX];
    int64_t token_expires_ms; /* OAUTHBEARER: the authenticated token's "exp" */
};

static void sasl_conn_free(void *state)
{
    struct sasl_conn *sc = state;
    if (sc == NULL)
        return;
    if (sc->scram != NULL) {
        OPENSSL_cleanse(sc->scram, sizeof(*sc->scram));
        free(sc->scram);
    }
    free(sc);
}

void handlers_sasl_free(struct sasl_node *n)
{
    if (n == NULL)
        return;
    if (n->jwks_thread_on) {
        pthread_mutex_lock(&n->jwks_lock);
        n->jwks_stop = true;
        pthread_cond_signal(&n->jwks_cond);
        pthread_mutex_unlock(&n->jwks_lock);
        pthread_join(n->jwks_thread, NULL);
    }
    pthread_mutex_destroy(&n->jwks_lock);
    pthread_cond_destroy(&n->jwks_cond);
    for (size_t i = 0; i < BROKER_LISTENERS_MAX; i++) {
        sasl_plain_users_free(&n->listeners[i].plain);
        oauth_jwks_free(n->listeners[i].jwks);
    }
    free(n);
}

/* listener.name.<listener, lower case>.<rest>, as Kafka's ListenerName.configPrefix. */
static const char *listener_key(struct broker_config *cfg, const char *listener, const char *rest,
                                char *key, size_t cap)
{
    int n = snprintf(key, cap, "listener.name.%s.%s", listener, rest);
    LM_ASSERT(n > 0 && (size_t)n < cap);
    for (size_t i = 14; key[i] != '\0' && key[i] != '.'; i++)
        key[i] = (char)(key[i] >= 'A' && key[i] <= 'Z' ? key[i] + 32 : key[i]);
    const char *v = broker_config_get(cfg, key);
    if (v != NULL)
        broker_config_mark_used(cfg, key);
    return v;
}

/* listener.name.<l>.oauthbearer.<key>, else <key> (Kafka passes both to the callback
 * handler). */
static const char *oauth_key(struct broker_config *cfg, const char *listener, const char *key)
{
    char full[256], rest[200];
    snprintf(rest, sizeof(rest), "oauthbearer.%s", key);
    const char *v = listener_key(cfg, listener, rest, full, sizeof(full));
    if (v == NULL && (v = broker_config_get(cfg, key)) != NULL)
        broker_config_mark_used(cfg, key);
    return v;
}

static uint64_t mono_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

enum { JWKS_BYTES_MAX = 1 << 20, JWKS_FETCH_TIMEOUT_MS = 10000 };

/* The JWKS of a file: URL, or fetched from an http(s) one. */
static int jwks_load(const char *url, const char *ca, struct oauth_jwks **out, char *err,
                     size_t err_cap)
{
    char *text = NULL;
    size_t size = 0;
    if (strncmp(url, "file:", 5) == 0) {
        const char *path = url + 5;
        if (strncmp(path, "//", 2) == 0)
            path += 2; /* file:///p and file:/p */
        FILE *f = fopen(path, "rb");
        long sz = -1;
        if (f != NULL && fseek(f, 0, SEEK_END) == 0 && (sz = ftell(f)) > 0 &&
            sz <= JWKS_BYTES_MAX && fseek(f, 0, SEEK_SET) == 0 &&
            (text = malloc((size_t)sz)) != NULL && fread(text, 1, (size_t)sz, f) != (size_t)sz) {
            free(text);
            text = NULL;
        }
        if (f != NULL)
            fclose(f);
        if (text == NULL) {
            snprintf(err, err_cap, "cannot read the file (at most 1 MiB)");
            return LM_E_INVALID;
        }
        size = (size_t)sz;
    } else {
        int rc =
            lm_http_get(url, ca, JWKS_FETCH_TIMEOUT_MS, JWKS_BYTES_MAX, &text, &size, err, err_cap);
        if (rc != 0)
            return rc;
    }
    int rc = oauth_jwks_parse(text, size, out, err, err_cap);
    free(text);
    return rc;
}

/* Fetches the http(s) JWKS of the listeners that have one, each when its refresh is due (every
 * sasl.oauthbearer.jwks.endpoint.refresh.ms, as Kafka's RefreshingHttpsJwks) or sooner when a
 * token named a kid the keys lack; a failed fetch keeps the keys and is retried with
 * sasl.oauthbearer.jwks.endpoint.retry.backoff.ms, doubling up to .retry.backoff.max.ms. */
static void *jwks_refresher(void *arg)
{
    struct sasl_node *n = arg;
    pthread_mutex_lock(&n->jwks_lock);
    while (!n->jwks_stop) {
        uint64_t now = mono_ms(), next = UINT64_MAX;
        for (size_t i = 0; i < BROKER_LISTENERS_MAX && !n->jwks_stop; i++) {
            struct sasl_listener *l = &n->listeners[i];
            if (l->jwks_url[0] == '\0')
                continue;
            if (now >= l->jwks_next_ms || l->jwks_kick) {
                char url[sizeof(l->jwks_url)], ca[sizeof(l->jwks_ca)], err[256] = "";
                memcpy(url, l->jwks_url, sizeof(url));
                memcpy(ca, l->jwks_ca, sizeof(ca));
                l->jwks_kick = false;
                l->jwks_last_ms = now;
                pthread_mutex_unlock(&n->jwks_lock);
                struct oauth_jwks *fresh = NULL;
                int rc = jwks_load(url, ca, &fresh, err, sizeof(err));
                pthread_mutex_lock(&n->jwks_lock);
                now = mono_ms();
                if (rc == 0) {
                    struct oauth_jwks *old = l->jwks;
                    l->jwks = fresh;
                    l->sec.keys = fresh; /* validators hold jwks_lock */
                    oauth_jwks_free(old);
                    l->jwks_next_ms = now + (uint64_t)l->jwks_refresh_ms;
                    l->jwks_backoff_now = l->jwks_backoff_ms;
                    BLOG_INFO("OAUTHBEARER: %zu JWKS keys from %s", oauth_jwks_count(fresh), url);
                } else {
                    l->jwks_next_ms = now + (uint64_t)l->jwks_backoff_now;
                    BLOG_WARN("OAUTHBEARER: JWKS from %s: %s; keeping the %zu keys held, "
                              "retrying in %lld ms",
                              url, err, oauth_jwks_count(l->jwks), (long long)l->jwks_backoff_now);
                    l->jwks_backoff_now = l->jwks_backoff_now * 2 > l->jwks_backoff_max_ms
                                              ? l->jwks_backoff_max_ms
                                              : l->jwks_backoff_now * 2;
                }
            }
            next = l->jwks_next_ms < next ? l->jwks_next_ms : next;
        }
        if (n->jwks_stop)
            break;
        uint64_t wait = next == UINT64_MAX ? 60000 : next > now ? next - now : 0;
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += (time_t)(wait / 1000);
        until.tv_nsec += (long)(wait % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&n->jwks_cond, &n->jwks_lock, &until);
    }
    pthread_mutex_unlock(&n->jwks_lock);
    return NULL;
}

/* A non-negative integer setting of the secured validator, else dflt. */
static int oauth_ms(struct broker_config *cfg, const char *name, const char *key, int64_t dflt,
                    int64_t min, int64_t *out)
{
    const char *v = oauth_key(cfg, name, key);
    *out = dflt;
    if (v == NULL)
        return 0;
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != '\0' || n < min) {
        BLOG_ERROR("config: %s=%s: expected an integer of at least %lld", key, v, (long long)min);
        return LM_E_CONFIG;
    }
    *out = n;
    return 0;
}

/* The secured validator's settings (KIP-768): the JWKS (a file, or an http(s) endpoint fetched
 * at start and refreshed in the background) and the expected claims. */
static int oauth_secured_setup(struct broker_config *cfg, const char *name, struct sasl_listener *l)
{
    oauth_secured_config_default(&l->sec);
    const char *url = oauth_key(cfg, name, "sasl.oauthbearer.jwks.endpoint.url");
    bool remote =
        url != NULL && (strncmp(url, "http://", 7) == 0 || strncmp(url, "https://", 8) == 0);
    if (url == NULL || (strncmp(url, "file:", 5) != 0 && !remote)) {
        BLOG_ERROR("config: listener %s: OAuthBearerValidatorCallbackHandler needs "
                   "sasl.oauthbearer.jwks.endpoint.url (a file:, http:// or https:// URL)%s%s",
                   name, url != NULL ? "; got " : "", url != NULL ? url : "");
        return LM_E_CONFIG;
    }
    if (remote && strlen(url) >= sizeof(l->jwks_url)) {
        BLOG_ERROR("config: sasl.oauthbearer.jwks.endpoint.url: longer than %zu bytes",
                   sizeof(l->jwks_url) - 1);
        return LM_E_CONFIG;
    }
    const char *ca = broker_config_get(cfg, "laminar.oauthbearer.jwks.ssl.truststore.location");
    if (ca != NULL)
        broker_config_mark_used(cfg, "laminar.oauthbearer.jwks.ssl.truststore.location");
    if (ca != NULL)
        snprintf(l->jwks_ca, sizeof(l->jwks_ca), "%s", ca);
    int mrc = 0;
    if ((mrc = oauth_ms(cfg, name, "sasl.oauthbearer.jwks.endpoint.refresh.ms", 3600000, 1,
                        &l->jwks_refresh_ms)) != 0 ||
        (mrc = oauth_ms(cfg, name, "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms", 100, 1,
                        &l->jwks_backoff_ms)) != 0 ||
        (mrc = oauth_ms(cfg, name, "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms", 10000, 1,
                        &l->jwks_backoff_max_ms)) != 0)
        return mrc;
    char err[256] = "";
    /* the first fetch is part of the start, as Kafka's validator initialises its keys */
    int rc = jwks_load(url, l->jwks_ca, &l->jwks, err, sizeof(err));
    if (rc != 0) {
        BLOG_ERROR("config: listener %s: JWKS %s: %s", name, url, err);
        return LM_E_CONFIG;
    }
    if (remote) {
        snprintf(l->jwks_url, sizeof(l->jwks_url), "%s", url);
        l->jwks_backoff_now = l->jwks_backoff_ms;
        l->jwks_last_ms = mono_ms();
        l->jwks_next_ms = l->jwks_last_ms + (uint64_t)l->jwks_refresh_ms;
    }
    const char *path = url;
    l->sec.keys = l->jwks;
    const char *v = oauth_key(cfg, name, "sasl.oauthbearer.sub.claim.name");
    if (v != NULL && v[0] != '\0')
        snprintf(l->sec.sub_claim, sizeof(l->sec.sub_claim), "%s", v);
    if ((v = oauth_key(cfg, name, "sasl.oauthbearer.clock.skew.seconds")) != NULL) {
        char *end = NULL;
        long long sec = strtoll(v, &end, 10);
        if (end == v || *end != '\0' || sec < 0 || sec > 86400) {
            BLOG_ERROR("config: sasl.oauthbearer.clock.skew.seconds=%s: expected 0..86400", v);
            return LM_E_CONFIG;
        }
        l->sec.clock_skew_ms = sec * 1000;
    }
    if ((v = oauth_key(cfg, name, "sasl.oauthbearer.expected.issuer")) != NULL)
        snprintf(l->sec.issuer, sizeof(l->sec.issuer), "%s", v);
    if ((v = oauth_key(cfg, name, "sasl.oauthbearer.expected.audience")) != NULL) {
        for (const char *p = v; *p != '\0';) {
            while (*p == ' ' || *p == ',')
                p++;
            size_t n = strcspn(p, ",");
            size_t skip = n;
            while (n > 0 && p[n - 1] == ' ')
                n--;
            if (n == 0)
                break;
            if (l->sec.n_audience == OAUTH_AUDIENCES_MAX || n >= OAUTH_AUDIENCE_BYTES_MAX) {
                BLOG_ERROR("config: sasl.oauthbearer.expected.audience: at most %d audiences of "
                           "%d bytes",
                           OAUTH_AUDIENCES_MAX, OAUTH_AUDIENCE_BYTES_MAX - 1);
                return LM_E_CONFIG;
            }
            memcpy(l->sec.audience[l->sec.n_audience], p, n);
            l->sec.audience[l->sec.n_audience++][n] = '\0';
            p += skip;
        }
    }
    (void)oauth_key(cfg, name, "sasl.oauthbearer.scope.claim.name"); /* no scope is required */
    l->oauth_secured = true;
    BLOG_INFO("listener %s: OAUTHBEARER tokens verified with %zu JWKS keys from %s", name,
              oauth_jwks_count(l->jwks), path);
    return 0;
}

static int listener_setup(struct broker_config *cfg, const char *name, struct sasl_listener *l)
{
    char key[256], err[200] = "";
    const char *list = listener_key(cfg, name, "sasl.enabled.mechanisms", key, sizeof(key));
    const char *from = key;
    if (list == NULL) {
        list = broker_config_get(cfg, "sasl.enabled.mechanisms");
        from = "sasl.enabled.mechanisms";
    }
    if (list == NULL) {
        BLOG_ERROR("config: listener %s is a SASL listener but sasl.enabled.mechanisms is not set "
                   "(Kafka's default GSSAPI is not supported; laminar serves PLAIN, "
                   "SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER)",
                   name);
        return LM_E_CONFIG;
    }
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        if (n == 0)
            break;
        enum sasl_mech m = sasl_mech_parse(p, n);
        if (m == SASL_MECH_NONE) {
            BLOG_ERROR("config: %s: SASL mechanism %.*s is not supported (laminar serves PLAIN, "
                       "SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER)",
                       from, (int)n, p);
            return LM_E_UNSUPPORTED;
        }
        if ((l->mechs & (1u << m)) == 0) {
            l->mechs |= 1u << m;
            LM_ASSERT(l->names_count < (int32_t)LM_ARRAY_LEN(l->names));
            l->names[l->names_count++] =
                (struct kafka_str){sasl_mech_name(m), (int32_t)strlen(sasl_mech_name(m))};
        }
        p += n;
    }
    if (l->mechs == 0) {
        BLOG_ERROR("config: %s: listener %s needs at least one SASL mechanism", from, name);
        return LM_E_CONFIG;
    }
    oauth_unsecured_config_default(&l->oauth);
    if (l->mechs & (1u << SASL_MECH_OAUTHBEARER)) {
        /* Kafka's default server callback handler for OAUTHBEARER is the unsecured-JWS
         * validator; a configured one (a JWKS validator, a custom class) is not served */
        const char *cb = listener_key(cfg, name, "oauthbearer.sasl.server.callback.handler.class",
                                      key, sizeof(key));
        if (cb != NULL && (strcmp(cb, "org.apache.kafka.common.security.oauthbearer."
                                      "OAuthBearerValidatorCallbackHandler") == 0 ||
                           strcmp(cb, "org.apache.kafka.common.security.oauthbearer.secured."
                                      "OAuthBearerValidatorCallbackHandler") == 0)) {
            int orc = oauth_secured_setup(cfg, name, l);
            if (orc != 0)
                return orc;
        } else if (cb != NULL && cb[0] != '\0' &&
                   strcmp(cb, "org.apache.kafka.common.security.oauthbearer.internals.unsecured."
                              "OAuthBearerUnsecuredValidatorCallbackHandler") != 0) {
            BLOG_ERROR("config: %s=%s: laminar validates OAUTHBEARER tokens with Kafka's "
                       "OAuthBearerUnsecuredValidatorCallbackHandler (the default) or "
                       "OAuthBearerValidatorCallbackHandler (JWKS from a file)",
                       key, cb);
            return LM_E_CONFIG;
        }
    }
    static const enum sasl_mech all[] = {SASL_MECH_PLAIN, SASL_MECH_SCRAM_SHA_256,
                                         SASL_MECH_SCRAM_SHA_512, SASL_MECH_OAUTHBEARER};
    for (size_t i = 0; i < LM_ARRAY_LEN(all); i++) {
        if ((l->mechs & (1u << all[i])) == 0)
            continue;
        char rest[64], lower[32];
        const char *mn = sasl_mech_name(all[i]);
        size_t k = 0;
        for (; mn[k] != '\0' && k + 1 < sizeof(lower); k++)
            lower[k] = (char)(mn[k] >= 'A' && mn[k] <= 'Z' ? mn[k] + 32 : mn[k]);
        lower[k] = '\0';
        snprintf(rest, sizeof(rest), "%s.sasl.jaas.config", lower);
        const char *jaas = listener_key(cfg, name, rest, key, sizeof(key));
        if (jaas == NULL) {
            if (all[i] == SASL_MECH_PLAIN) {
                BLOG_ERROR("config: listener %s enables PLAIN but %s is not set (a "
                           "PlainLoginModule with user_<name>=\"<password>\" options; a static "
                           "JAAS file is not read)",
                           name, key);
                return LM_E_CONFIG;
            }
            continue;
        }
        struct sasl_jaas j;
        int rc = sasl_jaas_parse(jaas, &j, err, sizeof(err));
        if (rc == 0 && all[i] == SASL_MECH_PLAIN) {
            rc = sasl_jaas_plain_users(&j, &l->plain, err, sizeof(err));
        } else if (rc == 0 && all[i] == SASL_MECH_OAUTHBEARER) {
            if (strcmp(j.module, "org.apache.kafka.common.security.oauthbearer."
                                 "OAuthBearerLoginModule") != 0) {
                snprintf(err, sizeof(err), "login module %s does not serve OAUTHBEARER", j.module);
                rc = LM_E_INVALID;
            }
            for (size_t o = 0; rc == 0 && o < j.option_count; o++)
                rc = oauth_unsecured_config_set(&l->oauth, j.options[o].key, j.options[o].value,
                                                err, sizeof(err));
        } else if (rc == 0 &&
                   strcmp(j.module, "org.apache.kafka.common.security.scram.ScramLoginModule") !=
                       0) {
            snprintf(err, sizeof(err), "login module %s does not serve SCRAM", j.module);
            rc = LM_E_INVALID;
        }
        sasl_jaas_free(&j); /* zeroed by a failed parse */
        if (rc != 0) {
            BLOG_ERROR("config: %s: %s", key, rc == LM_E_NOMEM ? "out of memory" : err);
            return LM_E_CONFIG;
        }
    }
    l->sasl = true;
    BLOG_INFO("listener %s: SASL with %s (%zu PLAIN users)", name, list, l->plain.count);
    return 0;
}

/* ---- laminar.scram.credentials: SCRAM users before the first start ------------------------
 * Kafka writes them with `kafka-storage format --add-scram`; laminar reads the same syntax,
 * entries separated by ';':
 *   SCRAM-SHA-256=[name=alice,password=alice-secret];SCRAM-SHA-512=[name=bob,password=b,
 *   iterations=8192]
 * (values may be double-quoted). Written to the metadata at the first start only (an empty
 * metadata log), as `format` does once; later changes go through kafka-configs. */

static bool field_next(const char **pp, const char *end, char *k, size_t kcap, char *v, size_t vcap)
{
    const char *p = *pp;
    while (p < end && (*p == ',' || *p == ' '))
        p++;
    if (p >= end)
        return false;
    const char *eq = memchr(p, '=', (size_t)(end - p));
    if (eq == NULL || (size_t)(eq - p) >= kcap)
        return false;
    memcpy(k, p, (size_t)(eq - p));
    k[eq - p] = '\0';
    p = eq + 1;
    size_t n = 0;
    if (p < end && *p == '"') {
        p++;
        while (p < end && *p != '"' && n + 1 < vcap)
            v[n++] = *p++;
        if (p >= end || *p != '"')
            return false;
        p++;
    } else {
        while (p < end && *p != ',' && n + 1 < vcap)
            v[n++] = *p++;
    }
    v[n] = '\0';
    *pp = p;
    return true;
}

static int scram_preset_one(struct handlers_ctx *h, const char *mech_name, size_t mech_len,
                            const char *body, size_t body_len)
{
    enum sasl_mech m = sasl_mech_parse(mech_name, mech_len);
    if (!sasl_mech_is_scram(m)) {
        BLOG_ERROR("config: laminar.scram.credentials: %.*s is not a SCRAM mechanism",
                   (int)mech_len, mech_name);
        return LM_E_CONFIG;
    }
    char name[LM_META_SCRAM_USER_MAX + 1] = "", password[SASL_PASSWORD_BYTES_MAX + 1] = "",
                                       salt64[256] = "", salted64[256] = "", k[32],
                                       v[SASL_PASSWORD_BYTES_MAX + 1];
    int32_t iterations = SASL_SCRAM_ITERATIONS_MIN;
    const char *p = body, *end = body + body_len;
    while (field_next(&p, end, k, sizeof(k), v, sizeof(v))) {
        char *dst = strcmp(k, "name") == 0             ? name
                    : strcmp(k, "password") == 0       ? password
                    : strcmp(k, "salt") == 0           ? salt64
                    : strcmp(k, "saltedpassword") == 0 ? salted64
                                                       : NULL;
        size_t cap = dst == name       ? sizeof(name)
                     : dst == password ? sizeof(password)
                                       : sizeof(salt64);
        if (dst != NULL && strlen(v) < cap) {
            memcpy(dst, v, strlen(v) + 1);
        } else if (strcmp(k, "iterations") == 0) {
            iterations = (int32_t)strtol(v, NULL, 10);
        } else {
            BLOG_ERROR("config: laminar.scram.credentials: unknown or too long field %s", k);
            return LM_E_CONFIG;
        }
    }
    OPENSSL_cleanse(v, sizeof(v));
    if (p != end || name[0] == '\0' || (password[0] == '\0') == (salted64[0] == '\0') ||
        (salted64[0] != '\0' && salt64[0] == '\0') || iterations < SASL_SCRAM_ITERATIONS_MIN ||
        iterations > SASL_SCRAM_ITERATIONS_MAX) {
        BLOG_ERROR("config: laminar.scram.credentials: %.*s=[...] needs name= and either "
                   "password= or salt= with saltedpassword=, iterations %d..%d",
                   (int)mech_len, mech_name, SASL_SCRAM_ITERATIONS_MIN, SASL_SCRAM_ITERATIONS_MAX);
        return LM_E_CONFIG;
    }
    struct sasl_scram_cred cred;
    int rc;
    if (password[0] != '\0') {
        rc = sasl_scram_cred_from_password(m, password, iterations, &cred);
    } else {
        uint8_t salt[SASL_SCRAM_SALT_BYTES_MAX], salted[SASL_SCRAM_KEY_BYTES_MAX];
        int sn = sasl_b64_decode(salt64, strlen(salt64), salt, sizeof(salt));
        int pn = sasl_b64_decode(salted64, strlen(salted64), salted, sizeof(salted));
        rc = sn <= 0 || pn <= 0 ? LM_E_INVALID
                                : sasl_scram_cred_from_salted(m, salted, (size_t)pn, salt,
                                                              (size_t)sn, iterations, &cred);
    }
    OPENSSL_cleanse(password, sizeof(password));
    if (rc != 0) {
        BLOG_ERROR("config: laminar.scram.credentials: user %s: bad credential (%s)", name,
                   lm_strerror(rc));
        return LM_E_CONFIG;
    }
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(h->meta);
    bool have = lm_meta_state_scram(&snap->state, name, (int8_t)m) != NULL;
    lm_meta_snapshot_release(snap);
    if (have)
        return 0;
    struct lm_meta_record r = {.type = LM_META_SCRAM_SET,
                               .user = name,
                               .scram_mechanism = (int8_t)m,
                               .scram_iterations = cred.iterations,
                               .scram_salt = cred.salt,
                               .scram_salt_len = cred.salt_len,
                               .scram_stored_key = cred.stored_key,
                               .scram_server_key = cred.server_key};
    rc = lm_meta_store_commit(h->meta, &r);
    OPENSSL_cleanse(&cred, sizeof(cred));
    if (rc != 0) {
        BLOG_ERROR("laminar.scram.credentials: cannot store user %s: %s", name, lm_strerror(rc));
        return rc;
    }
    BLOG_INFO("SCRAM credential for user %s (%s) written from laminar.scram.credentials", name,
              sasl_mech_name(m));
    return 0;
}

static int scram_preset(struct handlers_ctx *h)
{
    const char *v = broker_config_get(h->cfg, "laminar.scram.credentials");
    if (v == NULL || v[0] == '\0')
        return 0;
    broker_config_mark_used(h->cfg, "laminar.scram.credentials");
    if (h->ctl != NULL) {
        BLOG_WARN("laminar.scram.credentials is applied on a single node only; in a cluster "
                  "create SCRAM users with kafka-configs (AlterUserScramCredentials)");
        return 0;
    }
    if (!h->meta_fresh) {
        BLOG_INFO("laminar.scram.credentials: not applied, the metadata already exists (it "
                  "applies at the first start, as kafka-storage format --add-scram; change "
                  "users with kafka-configs)");
        return 0;
    }
    const char *p = v;
    while (*p != '\0') {
        while (*p == ';' || *p == ' ')
            p++;
        if (*p == '\0')
            break;
        const char *eq = strchr(p, '=');
        const char *open = eq ? eq + 1 : NULL;
        const char *close = open && *open == '[' ? strchr(open, ']') : NULL;
        if (close == NULL) {
            BLOG_ERROR("config: laminar.scram.credentials: expected MECHANISM=[name=...,"
                       "password=...] at '%.40s'",
                       p);
            return LM_E_CONFIG;
        }
        int rc = scram_preset_one(h, p, (size_t)(eq - p), open + 1, (size_t)(close - open - 1));
        if (rc != 0)
            return rc;
        p = close + 1;
    }
    return 0;
}

/* ---- the exchange ------------------------------------------------------------------------- */

static struct sasl_node *sasl_of(struct broker_req *req)
{
    struct sasl_node *n = h_node(req)->sasl;
    LM_ASSERT(n != NULL);
    return n;
}

static struct sasl_conn *conn_state(struct broker_conn_auth *a)
{
    if (a->state == NULL)
        a->state = calloc(1, sizeof(struct sasl_conn));
    return a->state;
}

static void handshake_respond(struct broker_req *req, int16_t code, const struct sasl_listener *l,
                              bool close)
{
    struct kafka_sasl_handshake_response rs;
    kafka_sasl_handshake_response_init(&rs);
    rs.error_code = code;
    rs.mechanisms = (struct kafka_str *)l->names;
    rs.mechanisms_count = l->names_count;
    if (close)
        broker_req_close_after(req);
    h_respond(req, &rs);
}

static void sasl_handshake(struct broker_req *req)
{
    struct sasl_node *n = sasl_of(req);
    LM_ASSERT(req->listener < BROKER_LISTENERS_MAX);
    const struct sasl_listener *l = &n->listeners[req->listener];
    struct broker_conn_auth *a = broker_req_auth(req);
    struct kafka_sasl_handshake_request rq;
    kafka_sasl_handshake_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    if (!a->sasl || !l->sasl) {
        /* Kafka's KafkaApis on a listener without SASL */
        handshake_respond(req, KAFKA_ILLEGAL_SASL_STATE, l, false);
        return;
    }
    struct sasl_conn *sc = conn_state(a);
    if (sc == NULL) {
        h_close(req, "out of memory for the SASL state");
        return;
    }
    if (sc->phase == SASL_PHASE_HANDSHAKE) {
        handshake_respond(req, KAFKA_ILLEGAL_SASL_STATE, l, true);
        return;
    }
    enum sasl_mech m = rq.mechanism.len > 0
                           ? sasl_mech_parse(rq.mechanism.ptr, (size_t)rq.mechanism.len)
                           : SASL_MECH_NONE;
    bool reauth = sc->phase == SASL_PHASE_DONE;
    if (m == SASL_MECH_NONE || (l->mechs & (1u << m)) == 0 || (reauth && m != sc->session_mech)) {
        /* Kafka: UnsupportedSaslMechanismException, the response, then the connection closes */
        handshake_respond(req, KAFKA_UNSUPPORTED_SASL_MECHANISM, l, true);
        return;
    }
    if (sasl_mech_is_scram(m)) {
        if (sc->scram == NULL && (sc->scram = malloc(sizeof(*sc->scram))) == NULL) {
            h_close(req, "out of memory for the SCRAM state");
            return;
        }
        sasl_scram_server_init(sc->scram, m);
    }
    sc->mech = m;
    sc->oauth_error_sent = false;
    sc->phase = SASL_PHASE_HANDSHAKE;
    /* v0: the tokens that follow are bare frames (KIP-43); v1: SaslAuthenticate (KIP-152) */
    a->raw_tokens = req->api_version == 0;
    handshake_respond(req, KAFKA_NONE, l, false);
}

struct scram_lookup_ctx {
    const struct lm_meta_state *st;
};

static bool scram_lookup(void *ctx, const char *user, enum sasl_mech mech,
                         struct sasl_scram_cred *out)
{
    const struct scram_lookup_ctx *c = ctx;
    const struct lm_meta_scram *s = lm_meta_state_scram(c->st, user, (int8_t)mech);
    size_t kl = sasl_scram_key_len(mech);
    if (s == NULL || kl == 0 || s->salt_len > SASL_SCRAM_SALT_BYTES_MAX)
        return false;
    memset(out, 0, sizeof(*out));
    out->mech = mech;
    out->iterations = s->iterations;
    out->salt_len = s->salt_len;
    memcpy(out->salt, s->salt, s->salt_len);
    memcpy(out->stored_key, s->stored_key, kl);
    memcpy(out->server_key, s->server_key, kl);
    return true;
}

static void auth_respond(struct broker_req *req, int16_t code, const char *msg,
                         const uint8_t *bytes, size_t len, int64_t lifetime_ms, bool close)
{
    struct kafka_sasl_authenticate_response rs;
    kafka_sasl_authenticate_response_init(&rs);
    rs.error_code = code;
    rs.error_message = KAFKA_STR_NULL;
    if (msg != NULL) {
        size_t n = strlen(msg);
        char *m = h_alloc(req, n + 1, 1);
        if (m != NULL) {
            memcpy(m, msg, n);
            rs.error_message = (struct kafka_str){m, (int32_t)n};
        }
    }
    uint8_t *b = h_alloc(req, len, 1);
    if (b != NULL && len > 0)
        memcpy(b, bytes, len);
    rs.auth_bytes = (struct kafka_bytes){b, b != NULL ? (int32_t)len : 0};
    rs.session_lifetime_ms = lifetime_ms;
    if (close)
        broker_req_close_after(req);
    h_respond(req, &rs);
}

enum exchange_outcome { EXCHANGE_MORE, EXCHANGE_DONE, EXCHANGE_FAILED };

/* Milliseconds since the epoch (token times are wall-clock times). */
static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* KIP-368: a session lasts connections.max.reauth.ms, and an OAUTHBEARER session no longer
 * than its token (0: re-authentication off, no limit). */
static int64_t session_lifetime_ms(const struct sasl_node *n, const struct sasl_conn *sc)
{
    if (n->reauth_ms <= 0)
        return 0;
    int64_t life = n->reauth_ms;
    if (sc->mech == SASL_MECH_OAUTHBEARER) {
        int64_t left = sc->token_expires_ms - (int64_t)wall_ms();
        if (left < life)
            life = left > 1 ? left : 1;
    }
    return life;
}

/* One client token of the exchange in progress: the answer in out, and on success the
 * connection authenticated (KIP-368: a re-authentication keeps its principal). */
static enum exchange_outcome exchange(struct broker_req *req, struct sasl_conn *sc,
                                      const uint8_t *tok, size_t tok_len, uint8_t *out,
                                      size_t out_cap, size_t *out_len, char *msg, size_t msg_cap)
{
    struct sasl_node *n = sasl_of(req);
    const struct sasl_listener *l = &n->listeners[req->listener];
    struct broker_conn_auth *a = broker_req_auth(req);
    char user[SASL_USER_BYTES_MAX] = "";
    *out_len = 0;
    if (sc->mech == SASL_MECH_PLAIN) {
        if (sasl_plain_authenticate(&l->plain, tok, tok_len, user, msg, msg_cap) != 0)
            return EXCHANGE_FAILED;
    } else if (sc->mech == SASL_MECH_OAUTHBEARER) {
        if (sc->oauth_error_sent) {
            /* the client's answer to our error challenge: a lone kvsep ends the exchange */
            sc->oauth_error_sent = false;
            snprintf(msg, msg_cap, "%.150s", sc->oauth_why);
            return EXCHANGE_FAILED;
        }
        struct oauth_client_first cf;
        if (oauth_client_first_parse(tok, tok_len, &cf, msg, msg_cap) != 0)
            return EXCHANGE_FAILED;
        struct oauth_token t;
        char why[SASL_MESSAGE_BYTES_MAX], challenge[OAUTH_ERROR_BYTES_MAX];
        int64_t now = (int64_t)wall_ms();
        bool remote = l->oauth_secured && l->jwks_url[0] != '\0';
        if (remote) /* the refresher may swap the keys */
            pthread_mutex_lock(&n->jwks_lock);
        int vrc = l->oauth_secured
                      ? oauth_secured_validate(&l->sec, cf.token, cf.token_len, now, &t, why,
                                               sizeof(why), challenge, sizeof(challenge))
                      : oauth_unsecured_validate(&l->oauth, cf.token, cf.token_len, now, &t, why,
                                                 sizeof(why), challenge, sizeof(challenge));
        if (remote) {
            /* a kid the keys lack (the issuer rotated its keys): fetch them again now, not
             * more often than the retry backoff; this token stays refused (the client's next
             * authentication finds the new key) */
            struct sasl_listener *ml = &n->listeners[req->listener];
            if (vrc != 0 && strstr(why, "no JWKS key") != NULL && !ml->jwks_kick &&
                mono_ms() >= ml->jwks_last_ms + (uint64_t)ml->jwks_backoff_ms) {
                ml->jwks_kick = true;
                pthread_cond_signal(&n->jwks_cond);
            }
            pthread_mutex_unlock(&n->jwks_lock);
        }
        if (vrc != 0) {
            /* Kafka's OAuthBearerSaslServer answers a refused token with the JSON error as a
             * challenge and fails the exchange on the client's next message */
            size_t cl = strlen(challenge);
            LM_ASSERT(cl <= out_cap);
            memcpy(out, challenge, cl);
            *out_len = cl;
            snprintf(sc->oauth_why, sizeof(sc->oauth_why), "%s", challenge);
            sc->oauth_error_sent = true;
            BLOG_INFO("SASL OAUTHBEARER token refused on listener %u: %s", (unsigned)req->listener,
                      why);
            return EXCHANGE_MORE;
        }
        if (cf.authzid != NULL && (cf.authzid_len != strlen(t.principal) ||
                                   memcmp(cf.authzid, t.principal, cf.authzid_len) != 0)) {
            snprintf(msg, msg_cap,
                     "Authentication failed: Client requested an authorization id (%.*s) that "
                     "is different from the token's principal name (%.40s)",
                     (int)(cf.authzid_len < 40 ? cf.authzid_len : 40), cf.authzid, t.principal);
            return EXCHANGE_FAILED;
        }
        snprintf(user, sizeof(user), "%s", t.principal);
        sc->token_expires_ms = t.expires_ms;
    } else {
        LM_ASSERT(sc->scram != NULL);
        struct hshard *hs = hs_of(req->shard);
        hs_refresh(hs); /* a bare v0 token does not pass through the dispatcher */
        struct scram_lookup_ctx lc = {.st = &hs->snap->state};
        int rc = sasl_scram_server_step(sc->scram, tok, tok_len, scram_lookup, &lc, NULL, out,
                                        out_cap, out_len, msg, msg_cap);
        if (rc != 0) {
            OPENSSL_cleanse(sc->scram, sizeof(*sc->scram));
            if (msg[0] == '\0')
                snprintf(msg, msg_cap, "Authentication failed");
            return EXCHANGE_FAILED;
        }
        if (sc->scram->step != SASL_SCRAM_DONE)
            return EXCHANGE_MORE;
        snprintf(user, sizeof(user), "%s", sc->scram->user);
        /* done: give the exchange's ~9 KiB back (a re-authentication allocates it again) */
        OPENSSL_cleanse(sc->scram, sizeof(*sc->scram));
        free(sc->scram);
        sc->scram = NULL;
    }
    char principal[BROKER_PRINCIPAL_BYTES];
    snprintf(principal, sizeof(principal), "User:%s", user);
    if (a->authenticated && strcmp(principal, a->principal) != 0) {
        /* KIP-368: re-authentication must not change the principal */
        snprintf(msg, msg_cap,
                 "Cannot change principals during re-authentication from %.40s: "
                 "%.40s",
                 a->principal, principal);
        return EXCHANGE_FAILED;
    }
    bool was = a->authenticated;
    memcpy(a->principal, principal, sizeof(principal));
    a->authenticated = true;
    a->raw_tokens = false;
    a->expiry_ms = n->reauth_ms > 0 ? broker_now_ms() + (uint64_t)session_lifetime_ms(n, sc) : 0;
    sc->phase = SASL_PHASE_DONE;
    sc->session_mech = sc->mech;
    BLOG_DEBUG("SASL %s: %s %s on listener %u", sasl_mech_name(sc->mech), principal,
               was ? "re-authenticated" : "authenticated", (unsigned)req->listener);
    return EXCHANGE_DONE;
}

static void auth_failed_log(struct broker_req *req, const struct sasl_conn *sc, const char *msg)
{
    BLOG_INFO("SASL %s authentication failed on listener %u: %s", sasl_mech_name(sc->mech),
              (unsigned)req->listener, msg);
}

static void sasl_authenticate(struct broker_req *req)
{
    struct sasl_node *n = sasl_of(req);
    const struct sasl_listener *l = &n->listeners[req->listener];
    struct broker_conn_auth *a = broker_req_auth(req);
    struct kafka_sasl_authenticate_request rq;
    kafka_sasl_authenticate_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    struct sasl_conn *sc = a->sasl && l->sasl ? conn_state(a) : NULL;
    if (a->sasl && l->sasl && sc == NULL) {
        h_close(req, "out of memory for the SASL state");
        return;
    }
    if (sc == NULL || sc->phase != SASL_PHASE_HANDSHAKE || a->raw_tokens) {
        /* after authentication Kafka's KafkaApis answers; before a handshake the
         * authenticator throws IllegalSaslStateException and closes */
        bool before = sc != NULL && sc->phase != SASL_PHASE_DONE;
        auth_respond(req, KAFKA_ILLEGAL_SASL_STATE,
                     before ? "Unexpected SaslAuthenticate request before SaslHandshake"
                            : "SaslAuthenticate request received after successful "
                              "authentication",
                     NULL, 0, 0, before);
        return;
    }
    char msg[SASL_MESSAGE_BYTES_MAX] = "";
    uint8_t out[512];
    size_t out_len = 0;
    size_t tok_len = rq.auth_bytes.len > 0 ? (size_t)rq.auth_bytes.len : 0;
    switch (exchange(req, sc, rq.auth_bytes.ptr, tok_len, out, sizeof(out), &out_len, msg,
                     sizeof(msg))) {
    case EXCHANGE_MORE:
        auth_respond(req, KAFKA_NONE, NULL, out, out_len, 0, false);
        return;
    case EXCHANGE_DONE:
        auth_respond(req, KAFKA_NONE, NULL, out, out_len, session_lifetime_ms(n, sc), false);
        return;
    case EXCHANGE_FAILED:
        auth_failed_log(req, sc, msg);
        sc->phase = SASL_PHASE_INITIAL;
        auth_respond(req, KAFKA_SASL_AUTHENTICATION_FAILED, msg, NULL, 0, 0, true);
        return;
    }
}

/* A bare token after SaslHandshake v0 (KIP-43): the answer is a bare frame; a failure closes
 * the connection without one, as Kafka does for clients that cannot read an error. */
static void sasl_raw_token(struct broker_req *req)
{
    struct broker_conn_auth *a = broker_req_auth(req);
    struct sasl_conn *sc = a->state;
    LM_ASSERT(req->sasl_raw && sc != NULL && sc->phase == SASL_PHASE_HANDSHAKE);
    char msg[SASL_MESSAGE_BYTES_MAX] = "";
    uint8_t out[512];
    size_t out_len = 0;
    enum exchange_outcome o =
        exchange(req, sc, req->body, req->body_len, out, sizeof(out), &out_len, msg, sizeof(msg));
    if (o == EXCHANGE_FAILED) {
        auth_failed_log(req, sc, msg);
        a->raw_tokens = false;
        h_close(req, "SASL authentication failed (SaslHandshake v0)");
        return;
    }
    uint8_t *b = h_alloc(req, out_len, 1);
    if (b == NULL) {
        h_close(req, "out of memory");
        return;
    }
    memcpy(b, out, out_len);
    broker_req_respond(req, b, out_len);
}

int handlers_sasl_setup(struct broker_dispatch *d, struct handlers_ctx *h)
{
    struct broker_config *cfg = h->cfg;
    struct sasl_node *n = calloc(1, sizeof(*n));
    if (n == NULL)
        return LM_E_NOMEM;
    h->sasl = n;
    n->reauth_ms = cfg->connections_max_reauth_ms;
    pthread_mutex_init(&n->jwks_lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&n->jwks_cond, &ca);
    pthread_condattr_destroy(&ca);
    static const char *const used[] = {"sasl.enabled.mechanisms",
                                       "sasl.mechanism.inter.broker.protocol",
                                       "sasl.mechanism.controller.protocol"};
    for (size_t i = 0; i < LM_ARRAY_LEN(used); i++)
        broker_config_mark_used(cfg, used[i]);
    int rc = 0;
    for (uint32_t i = 0; rc == 0 && i < cfg->listeners_count; i++)
        if (cfg->listener_sasl[i])
            rc = listener_setup(cfg, cfg->listeners[i].name, &n->listeners[i]);
    bool remote = false;
    for (uint32_t i = 0; rc == 0 && i < cfg->listeners_count; i++)
        remote = remote || n->listeners[i].jwks_url[0] != '\0';
    if (rc == 0 && remote) {
        /* created with every signal blocked: SIGTERM belongs to the runtime's sigwait */
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, &old);
        if (pthread_create(&n->jwks_thread, NULL, jwks_refresher, n) != 0)
            rc = LM_E_NOMEM;
        else
            n->jwks_thread_on = true;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    }
    if (rc == 0)
        rc = scram_preset(h);
    if (rc == 0)
        rc = handlers_serve(d, SASL_API_HANDSHAKE, 0, 1, sasl_handshake);
    if (rc == 0)
        rc = handlers_serve(d, SASL_API_AUTHENTICATE, 0, 2, sasl_authenticate);
    d->auth_free = sasl_conn_free;
    d->auth_raw = sasl_raw_token;
    return rc;
}
