/* Blocking HTTP(S) GET (http_get.h). */
#define _GNU_SOURCE 1
#include "broker/security/http_get.h"

#include <errno.h>
#include <netdb.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "common/lm_err.h"

struct url_parts {
    bool tls;
    char host[256];
    char port[8];
    char path[1024];
};

static int url_parse(const char *url, struct url_parts *u)
{
    memset(u, 0, sizeof(*u));
    const char *p;
    if (strncmp(url, "http://", 7) == 0) {
        p = url + 7;
    } else if (strncmp(url, "https://", 8) == 0) {
        p = url + 8;
        u->tls = true;
    } else {
        return LM_E_INVALID;
    }
    size_t hl = strcspn(p, ":/?#");
    if (hl == 0 || hl >= sizeof(u->host))
        return LM_E_INVALID;
    memcpy(u->host, p, hl);
    p += hl;
    snprintf(u->port, sizeof(u->port), "%s", u->tls ? "443" : "80");
    if (*p == ':') {
        size_t pl = strspn(p + 1, "0123456789");
        if (pl == 0 || pl >= sizeof(u->port))
            return LM_E_INVALID;
        memcpy(u->port, p + 1, pl);
        u->port[pl] = '\0';
        p += 1 + pl;
    }
    size_t rest = strcspn(p, "#");
    if (rest == 0) {
        snprintf(u->path, sizeof(u->path), "/");
    } else {
        if (*p != '/' || rest >= sizeof(u->path))
            return LM_E_INVALID;
        memcpy(u->path, p, rest);
        u->path[rest] = '\0';
    }
    /* no control characters or spaces go into the request line */
    for (const char *c = u->path; *c; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return LM_E_INVALID;
    return 0;
}

static int dial(const struct url_parts *u, int timeout_ms, char *err, size_t err_cap)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int g = getaddrinfo(u->host, u->port, &hints, &res);
    if (g != 0) {
        snprintf(err, err_cap, "cannot resolve %s: %s", u->host, gai_strerror(g));
        return -1;
    }
    int fd = -1;
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
        if (fd < 0)
            continue;
        /* connect, reads and writes each give up after the timeout */
        (void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            snprintf(err, err_cap, "cannot connect to %s:%s: %s", u->host, u->port,
                     strerror(errno));
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    return fd;
}

/* One side of the exchange: the socket, or TLS over it. */
struct chan {
    int fd;
    SSL *ssl;
};

static bool chan_write_all(struct chan *c, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = c->ssl != NULL ? SSL_write(c->ssl, p, (int)n) : write(c->fd, p, n);
        if (w <= 0) {
            if (c->ssl == NULL && w < 0 && errno == EINTR)
                continue;
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

/* Bytes read into p (0 at the end), -1 on an error. */
static ssize_t chan_read(struct chan *c, char *p, size_t n)
{
    for (;;) {
        if (c->ssl != NULL) {
            int r = SSL_read(c->ssl, p, (int)n);
            if (r > 0)
                return r;
            int e = SSL_get_error(c->ssl, r);
            /* a server that closes without close_notify ends the body too (HTTP/1.0) */
            return e == SSL_ERROR_ZERO_RETURN || e == SSL_ERROR_SYSCALL ? 0 : -1;
        }
        ssize_t r = read(c->fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        return r;
    }
}

static int tls_open(struct chan *c, SSL_CTX **ctx_out, const struct url_parts *u,
                    const char *ca_file, char *err, size_t err_cap)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    *ctx_out = ctx;
    if (ctx == NULL)
        return LM_E_NOMEM;
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
#ifdef SSL_OP_IGNORE_UNEXPECTED_EOF
    /* HTTP/1.0 ends the body with the connection; many servers close without close_notify */
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF);
#endif
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int ok = ca_file != NULL && ca_file[0] != '\0'
                 ? SSL_CTX_load_verify_locations(ctx, ca_file, NULL)
                 : SSL_CTX_set_default_verify_paths(ctx);
    if (ok != 1) {
        snprintf(err, err_cap, "cannot load the CA certificates%s%s", ca_file ? " of " : "",
                 ca_file ? ca_file : "");
        return LM_E_IO;
    }
    c->ssl = SSL_new(ctx);
    if (c->ssl == NULL)
        return LM_E_NOMEM;
    SSL_set_fd(c->ssl, c->fd);
    SSL_set_tlsext_host_name(c->ssl, u->host);
    /* the certificate must name the host (an IP address is matched as one) */
    X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
    if (X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1)
        SSL_set1_host(c->ssl, u->host);
    if (SSL_connect(c->ssl) != 1) {
        long v = SSL_get_verify_result(c->ssl);
        snprintf(err, err_cap, "TLS handshake with %s failed: %s", u->host,
                 v != X509_V_OK ? X509_verify_cert_error_string(v)
                                : ERR_reason_error_string(ERR_peek_last_error()));
        return LM_E_IO;
    }
    return 0;
}

int lm_http_get(const char *url, const char *ca_file, int timeout_ms, size_t max_bytes, char **body,
                size_t *len, char *err, size_t err_cap)
{
    *body = NULL;
    *len = 0;
    struct url_parts u;
    if (url == NULL || url_parse(url, &u) != 0) {
        snprintf(err, err_cap, "not an http:// or https:// URL: %s", url ? url : "(null)");
        return LM_E_INVALID;
    }
    struct chan c = {.fd = dial(&u, timeout_ms, err, err_cap), .ssl = NULL};
    if (c.fd < 0)
        return LM_E_IO;
    SSL_CTX *ctx = NULL;
    int rc = u.tls ? tls_open(&c, &ctx, &u, ca_file, err, err_cap) : 0;
    char req[1536];
    int rl = snprintf(req, sizeof(req),
                      "GET %s HTTP/1.0\r\nHost: %s\r\nAccept: application/json\r\n"
                      "User-Agent: laminar\r\nConnection: close\r\n\r\n",
                      u.path, u.host);
    if (rc == 0 && (rl < 0 || (size_t)rl >= sizeof(req) || !chan_write_all(&c, req, (size_t)rl))) {
        snprintf(err, err_cap, "cannot send the request to %s", u.host);
        rc = LM_E_IO;
    }
    /* the whole response: headers (at most 16 KiB) and a body of at most max_bytes */
    size_t cap = max_bytes + 16384 + 1, n = 0;
    char *buf = rc == 0 ? malloc(cap) : NULL;
    if (rc == 0 && buf == NULL)
        rc = LM_E_NOMEM;
    while (rc == 0) {
        if (n == cap - 1) {
            snprintf(err, err_cap, "the response of %s is over %zu bytes", u.host, max_bytes);
            rc = LM_E_IO;
            break;
        }
        ssize_t r = chan_read(&c, buf + n, cap - 1 - n);
        if (r < 0) {
            snprintf(err, err_cap, "reading the response of %s failed (timeout %d ms)", u.host,
                     timeout_ms);
            rc = LM_E_IO;
        } else if (r == 0) {
            break;
        } else {
            n += (size_t)r;
        }
    }
    if (c.ssl != NULL)
        SSL_free(c.ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    close(c.fd);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    buf[n] = '\0';
    int major = 0, minor = 0, status = 0;
    char *end = strstr(buf, "\r\n\r\n");
    if (sscanf(buf, "HTTP/%d.%d %d", &major, &minor, &status) != 3 || end == NULL) {
        snprintf(err, err_cap, "%s did not answer with HTTP", u.host);
        free(buf);
        return LM_E_IO;
    }
    if (status != 200) {
        snprintf(err, err_cap, "%s answered HTTP status %d", u.host, status);
        free(buf);
        return LM_E_IO;
    }
    size_t off = (size_t)(end + 4 - buf);
    if (n - off > max_bytes) {
        snprintf(err, err_cap, "the body from %s is over %zu bytes", u.host, max_bytes);
        free(buf);
        return LM_E_IO;
    }
    memmove(buf, buf + off, n - off + 1);
    *body = buf;
    *len = n - off;
    return 0;
}
