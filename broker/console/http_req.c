/* HTTP request head parsing (see http_req.h). */
#include "broker/console/http_req.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/security/sasl.h"

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

bool http_percent_decode(const char *s, size_t len, char *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '%') {
            if (len - i < 3)
                return false;
            int hi = hexval(s[i + 1]);
            int lo = hexval(s[i + 2]);
            if (hi < 0 || lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            if (c == 0)
                return false;
            i += 2;
        } else if (c == '+') {
            c = ' ';
        } else if (c == 0) {
            return false;
        }
        if (n + 1 >= cap)
            return false;
        out[n++] = c;
    }
    if (cap == 0)
        return false;
    out[n] = 0;
    return true;
}

/* The end of the line starting at p (its '\r' or '\n'), or NULL when there is none before end. */
static const char *line_end(const char *p, const char *end)
{
    for (const char *q = p; q < end; q++)
        if (*q == '\n' || *q == '\r')
            return q;
    return NULL;
}

static const char *next_line(const char *eol, const char *end)
{
    if (eol < end && *eol == '\r')
        eol++;
    if (eol < end && *eol == '\n')
        eol++;
    return eol;
}

static bool token_char(char c)
{
    return c > 0x20 && c < 0x7f;
}

enum http_parse_err http_parse_request(const char *head, size_t len, struct http_request *out)
{
    memset(out, 0, sizeof(*out));
    const char *end = head + len;
    const char *eol = line_end(head, end);
    if (eol == NULL)
        return HTTP_BAD_REQUEST;
    /* METHOD SP TARGET SP HTTP/x.y */
    const char *sp1 = memchr(head, ' ', (size_t)(eol - head));
    if (sp1 == NULL || sp1 == head || (size_t)(sp1 - head) >= sizeof(out->method))
        return HTTP_BAD_REQUEST;
    for (const char *p = head; p < sp1; p++)
        if (*p < 'A' || *p > 'Z')
            return HTTP_BAD_REQUEST;
    memcpy(out->method, head, (size_t)(sp1 - head));
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(eol - target));
    if (sp2 == NULL || sp2 == target)
        return HTTP_BAD_REQUEST;
    if ((size_t)(eol - sp2 - 1) < 8 || strncmp(sp2 + 1, "HTTP/1.", 7) != 0)
        return HTTP_BAD_REQUEST;
    if (target[0] != '/')
        return HTTP_BAD_REQUEST;
    for (const char *p = target; p < sp2; p++)
        if (!token_char(*p))
            return HTTP_BAD_REQUEST;
    const char *qm = memchr(target, '?', (size_t)(sp2 - target));
    const char *path_end = qm != NULL ? qm : sp2;
    if ((size_t)(path_end - target) >= sizeof(out->path))
        return HTTP_URI_TOO_LONG;
    if (!http_percent_decode(target, (size_t)(path_end - target), out->path, sizeof(out->path)))
        return HTTP_BAD_REQUEST;
    if (qm != NULL) {
        if ((size_t)(sp2 - qm - 1) >= sizeof(out->query))
            return HTTP_URI_TOO_LONG;
        memcpy(out->query, qm + 1, (size_t)(sp2 - qm - 1));
    }
    /* headers: only Authorization is kept */
    for (const char *p = next_line(eol, end); p < end;) {
        const char *e = line_end(p, end);
        if (e == NULL)
            return HTTP_BAD_REQUEST;
        if (e == p)
            return HTTP_OK; /* the blank line */
        const char *colon = memchr(p, ':', (size_t)(e - p));
        if (colon == NULL || colon == p)
            return HTTP_BAD_REQUEST;
        if ((size_t)(colon - p) == 13 && strncasecmp(p, "Authorization", 13) == 0) {
            const char *v = colon + 1;
            while (v < e && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = e;
            while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if ((size_t)(ve - v) >= sizeof(out->authorization))
                return HTTP_HEADER_TOO_LARGE;
            memcpy(out->authorization, v, (size_t)(ve - v));
            out->authorization[ve - v] = 0;
        }
        p = next_line(e, end);
    }
    return HTTP_BAD_REQUEST; /* no blank line */
}

int http_query_get(const char *query, const char *name, char *out, size_t cap)
{
    size_t nlen = strlen(name);
    for (const char *p = query; *p != 0;) {
        const char *amp = strchr(p, '&');
        const char *pe = amp != NULL ? amp : p + strlen(p);
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        const char *ke = eq != NULL ? eq : pe;
        if ((size_t)(ke - p) == nlen && memcmp(p, name, nlen) == 0) {
            const char *v = eq != NULL ? eq + 1 : pe;
            return http_percent_decode(v, (size_t)(pe - v), out, cap) ? 1 : -1;
        }
        p = amp != NULL ? amp + 1 : pe;
    }
    return 0;
}

int http_query_int(const char *query, const char *name, long long min, long long max,
                   long long *out)
{
    char v[32];
    int r = http_query_get(query, name, v, sizeof(v));
    if (r <= 0)
        return r;
    if (v[0] == 0)
        return -1;
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno != 0 || *end != 0 || x < min || x > max)
        return -1;
    *out = x;
    return 1;
}

bool http_basic_parse(const char *authorization, char *user, size_t user_cap, char *password,
                      size_t password_cap)
{
    if (strncasecmp(authorization, "Basic ", 6) != 0)
        return false;
    const char *b = authorization + 6;
    while (*b == ' ')
        b++;
    uint8_t dec[HTTP_AUTH_BYTES];
    int n = sasl_b64_decode(b, strlen(b), dec, sizeof(dec) - 1);
    if (n <= 0)
        return false;
    uint8_t *colon = memchr(dec, ':', (size_t)n);
    if (colon == NULL || memchr(dec, 0, (size_t)n) != NULL)
        return false;
    size_t ulen = (size_t)(colon - dec), plen = (size_t)n - ulen - 1;
    if (ulen == 0 || ulen >= user_cap || plen >= password_cap)
        return false;
    memcpy(user, dec, ulen);
    user[ulen] = 0;
    memcpy(password, colon + 1, plen);
    password[plen] = 0;
    return true;
}
