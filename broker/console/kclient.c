/* Blocking loopback Kafka client of the console (see kclient.h). */
#define _GNU_SOURCE
#include "broker/console/kclient.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "broker/security/sasl.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"

enum { KCLIENT_RESPONSE_BYTES_MAX = 64 << 20 };

int kclient_open(struct kclient *c, const char *host, uint16_t port, int timeout_ms)
{
    memset(c, 0, sizeof(*c));
    c->fd = -1;
    c->timeout_ms = timeout_ms;
    c->next_correlation_id = 1;
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char ps[8];
    snprintf(ps, sizeof(ps), "%u", port);
    if (getaddrinfo(host, ps, &hints, &res) != 0 || res == NULL)
        return LM_E_IO;
    int fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int rc = 0;
    if (fd < 0) {
        rc = LM_E_IO;
    } else if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
        if (errno != EINPROGRESS) {
            rc = LM_E_IO;
        } else {
            struct pollfd p = {fd, POLLOUT, 0};
            int err = 0;
            socklen_t el = sizeof(err);
            if (poll(&p, 1, timeout_ms) != 1 ||
                getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0 || err != 0)
                rc = LM_E_IO;
        }
    }
    freeaddrinfo(res);
    if (rc != 0) {
        if (fd >= 0)
            close(fd);
        return rc;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    return 0;
}

void kclient_close(struct kclient *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

static int io_all(struct kclient *c, uint8_t *p, size_t n, bool out)
{
    while (n > 0) {
        struct pollfd pf = {c->fd, out ? POLLOUT : POLLIN, 0};
        int r = poll(&pf, 1, c->timeout_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return LM_E_TIMEOUT;
        if (r < 0)
            return LM_E_IO;
        ssize_t k = out ? send(c->fd, p, n, MSG_NOSIGNAL) : recv(c->fd, p, n, 0);
        if (k < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (k <= 0)
            return k == 0 ? LM_E_CLOSED : LM_E_IO;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int kclient_roundtrip(struct kclient *c, int16_t key, int16_t version, const uint8_t *req,
                      size_t req_len, struct kafka_arena *a, struct kafka_reader *body)
{
    if (c->fd < 0)
        return LM_E_CLOSED;
    int hv = kafka_request_header_version(key, version);
    int rv = kafka_response_header_version(key, version);
    if (hv < 0 || rv < 0)
        return LM_E_UNSUPPORTED;
    int32_t corr = c->next_correlation_id++;
    struct kafka_request_header h = {key, version, corr, KAFKA_STR("laminar-console")};
    uint8_t head[64];
    struct kafka_writer w;
    kafka_writer_init(&w, head + 4, sizeof(head) - 4);
    int rc = kafka_request_header_encode(&w, (int16_t)hv, &h);
    if (rc != 0)
        return rc;
    if (w.pos + req_len > INT32_MAX)
        return LM_E_TOO_LARGE;
    lm_put_be32(head, (uint32_t)(w.pos + req_len));
    if ((rc = io_all(c, head, w.pos + 4, true)) != 0 ||
        (rc = io_all(c, (uint8_t *)(uintptr_t)req, req_len, true)) != 0)
        goto fail;
    uint8_t sz[4];
    if ((rc = io_all(c, sz, 4, false)) != 0)
        goto fail;
    uint32_t n = lm_get_be32(sz);
    if (n < 4 || n > KCLIENT_RESPONSE_BYTES_MAX) {
        rc = LM_E_TOO_LARGE;
        goto fail;
    }
    uint8_t *buf = kafka_arena_alloc(a, n, 8);
    if (buf == NULL) {
        rc = LM_E_NOMEM; /* the stream cannot be resynchronised without reading it */
        goto fail;
    }
    if ((rc = io_all(c, buf, n, false)) != 0)
        goto fail;
    kafka_reader_init(body, buf, n);
    struct kafka_response_header rh;
    if ((rc = kafka_response_header_decode(body, (int16_t)rv, &rh, a)) != 0)
        goto fail;
    if (rh.correlation_id != corr) {
        rc = LM_E_CORRUPT;
        goto fail;
    }
    return 0;
fail:
    kclient_close(c);
    return rc;
}

#define KCLIENT_DEFINE(name, KEY)                                                                  \
    KCLIENT_DECLARE(name)                                                                          \
    {                                                                                              \
        size_t n = kafka_##name##_request_size(v, req);                                            \
        uint8_t *buf = kafka_arena_alloc(a, n + 1, 8);                                             \
        if (buf == NULL)                                                                           \
            return LM_E_NOMEM;                                                                     \
        struct kafka_writer w;                                                                     \
        kafka_writer_init(&w, buf, n + 1);                                                         \
        int rc = kafka_##name##_request_encode(&w, v, req);                                        \
        if (rc != 0)                                                                               \
            return rc;                                                                             \
        struct kafka_reader r;                                                                     \
        if ((rc = kclient_roundtrip(c, KEY, v, buf, w.pos, a, &r)) != 0)                           \
            return rc;                                                                             \
        kafka_##name##_response_init(resp);                                                        \
        return kafka_##name##_response_decode(&r, v, resp, a);                                     \
    }
KCLIENT_DEFINE(metadata, KAFKA_METADATA_KEY)
KCLIENT_DEFINE(list_offsets, KAFKA_LIST_OFFSETS_KEY)
KCLIENT_DEFINE(list_groups, KAFKA_LIST_GROUPS_KEY)
KCLIENT_DEFINE(describe_groups, KAFKA_DESCRIBE_GROUPS_KEY)
KCLIENT_DEFINE(offset_fetch, KAFKA_OFFSET_FETCH_KEY)
KCLIENT_DEFINE(describe_configs, KAFKA_DESCRIBE_CONFIGS_KEY)
KCLIENT_DEFINE(describe_log_dirs, KAFKA_DESCRIBE_LOG_DIRS_KEY)
KCLIENT_DEFINE(describe_cluster, KAFKA_DESCRIBE_CLUSTER_KEY)
KCLIENT_DEFINE(fetch, KAFKA_FETCH_KEY)
KCLIENT_DEFINE(sasl_handshake, KAFKA_SASL_HANDSHAKE_KEY)
KCLIENT_DEFINE(sasl_authenticate, KAFKA_SASL_AUTHENTICATE_KEY)

static int handshake(struct kclient *c, const char *mechanism, struct kafka_arena *a)
{
    struct kafka_sasl_handshake_request req;
    kafka_sasl_handshake_request_init(&req);
    req.mechanism = (struct kafka_str){mechanism, (int32_t)strlen(mechanism)};
    struct kafka_sasl_handshake_response resp;
    int rc = kclient_sasl_handshake(c, 1, &req, &resp, a);
    if (rc != 0)
        return rc;
    return resp.error_code == 0 ? 0 : KCLIENT_REFUSED;
}

/* One SaslAuthenticate round: tok out, the server's token back in *answer. */
static int authenticate(struct kclient *c, const uint8_t *tok, size_t len,
                        struct kafka_bytes *answer, struct kafka_arena *a)
{
    struct kafka_sasl_authenticate_request req;
    kafka_sasl_authenticate_request_init(&req);
    req.auth_bytes = (struct kafka_bytes){tok, (int32_t)len};
    struct kafka_sasl_authenticate_response resp;
    int rc = kclient_sasl_authenticate(c, 2, &req, &resp, a);
    if (rc != 0)
        return rc;
    if (resp.error_code != 0)
        return KCLIENT_REFUSED;
    if (answer != NULL)
        *answer = resp.auth_bytes;
    return 0;
}

int kclient_sasl_plain(struct kclient *c, const char *user, const char *password,
                       struct kafka_arena *a)
{
    size_t ul = strlen(user), pl = strlen(password);
    if (ul > 255 || pl > 255)
        return KCLIENT_REFUSED;
    uint8_t tok[520];
    tok[0] = 0;
    memcpy(tok + 1, user, ul);
    tok[1 + ul] = 0;
    memcpy(tok + 2 + ul, password, pl);
    int rc = handshake(c, "PLAIN", a);
    if (rc == 0)
        rc = authenticate(c, tok, 2 + ul + pl, NULL, a);
    OPENSSL_cleanse(tok, sizeof(tok));
    return rc;
}

/* saslname (RFC 5802 §5.1): ',' and '=' escaped. */
static bool scram_name(const char *user, char *out, size_t cap)
{
    size_t n = 0;
    for (const char *p = user; *p != 0; p++) {
        const char *s = *p == ',' ? "=2C" : *p == '=' ? "=3D" : NULL;
        size_t k = s != NULL ? 3 : 1;
        if (n + k >= cap)
            return false;
        if (s != NULL)
            memcpy(out + n, s, 3);
        else
            out[n] = *p;
        n += k;
    }
    out[n] = 0;
    return true;
}

/* The value of attribute `key` ("r", "s", "i") in a SCRAM message: pointer and length. */
static bool scram_attr(const char *msg, size_t len, char key, const char **v, size_t *vlen)
{
    for (size_t i = 0; i + 1 < len;) {
        size_t e = i;
        while (e < len && msg[e] != ',')
            e++;
        if (msg[i] == key && msg[i + 1] == '=') {
            *v = msg + i + 2;
            *vlen = e - i - 2;
            return true;
        }
        i = e + 1;
    }
    return false;
}

int kclient_sasl_scram(struct kclient *c, const char *mechanism, const char *user,
                       const char *password, struct kafka_arena *a)
{
    enum sasl_mech mech = sasl_mech_parse(mechanism, strlen(mechanism));
    if (!sasl_mech_is_scram(mech))
        return LM_E_INVALID;
    const EVP_MD *md = strcmp(mechanism, "SCRAM-SHA-512") == 0 ? EVP_sha512() : EVP_sha256();
    size_t klen = sasl_scram_key_len(mech);
    char name[256 * 3 + 1];
    if (!scram_name(user, name, sizeof(name)))
        return KCLIENT_REFUSED;
    uint8_t rnd[18];
    char nonce[32];
    if (RAND_bytes(rnd, sizeof(rnd)) != 1)
        return LM_E_IO;
    nonce[sasl_b64_encode(rnd, sizeof(rnd), nonce)] = 0;
    char first[1024];
    int fl = snprintf(first, sizeof(first), "n,,n=%s,r=%s", name, nonce);
    if (fl < 0 || (size_t)fl >= sizeof(first))
        return KCLIENT_REFUSED;
    int rc = handshake(c, mechanism, a);
    struct kafka_bytes sf;
    if (rc != 0 || (rc = authenticate(c, (const uint8_t *)first, (size_t)fl, &sf, a)) != 0)
        return rc;
    const char *sm = (const char *)sf.ptr, *r, *s, *i;
    size_t smlen = sf.len > 0 ? (size_t)sf.len : 0, rl, sl, il;
    if (!scram_attr(sm, smlen, 'r', &r, &rl) || !scram_attr(sm, smlen, 's', &s, &sl) ||
        !scram_attr(sm, smlen, 'i', &i, &il) || rl < strlen(nonce) ||
        memcmp(r, nonce, strlen(nonce)) != 0 || il == 0 || il > 9 || sl > 256)
        return LM_E_CORRUPT;
    char itext[12];
    memcpy(itext, i, il);
    itext[il] = 0;
    long iterations = strtol(itext, NULL, 10);
    uint8_t salt[200];
    int saltn = sasl_b64_decode(s, sl, salt, sizeof(salt));
    if (iterations <= 0 || saltn <= 0)
        return LM_E_CORRUPT;
    uint8_t salted[SASL_SCRAM_KEY_BYTES_MAX], ckey[EVP_MAX_MD_SIZE], stored[EVP_MAX_MD_SIZE],
        sig[EVP_MAX_MD_SIZE];
    if (sasl_scram_salted_password(mech, password, strlen(password), salt, (size_t)saltn,
                                   (int32_t)iterations, salted) != 0)
        return LM_E_INVALID;
    char final_bare[512], auth[2048], final[1024];
    int fbl = snprintf(final_bare, sizeof(final_bare), "c=biws,r=%.*s", (int)rl, r);
    int al = snprintf(auth, sizeof(auth), "%s,%.*s,%s", first + 3, (int)smlen, sm, final_bare);
    if (fbl < 0 || (size_t)fbl >= sizeof(final_bare) || al < 0 || (size_t)al >= sizeof(auth))
        return LM_E_TOO_LARGE;
    unsigned int ml = 0;
    unsigned int sl2 = 0;
    if (HMAC(md, salted, (int)klen, (const uint8_t *)"Client Key", 10, ckey, &ml) == NULL ||
        EVP_Digest(ckey, ml, stored, NULL, md, NULL) != 1 ||
        HMAC(md, stored, (int)klen, (const uint8_t *)auth, (size_t)al, sig, &sl2) == NULL)
        return LM_E_INVALID;
    for (unsigned int k = 0; k < ml; k++)
        ckey[k] ^= sig[k];
    char proof[EVP_MAX_MD_SIZE * 2];
    proof[sasl_b64_encode(ckey, ml, proof)] = 0;
    int fnl = snprintf(final, sizeof(final), "%s,p=%s", final_bare, proof);
    OPENSSL_cleanse(salted, sizeof(salted));
    OPENSSL_cleanse(ckey, sizeof(ckey));
    if (fnl < 0 || (size_t)fnl >= sizeof(final))
        return LM_E_TOO_LARGE;
    return authenticate(c, (const uint8_t *) final, (size_t)fnl, NULL, a);
}
