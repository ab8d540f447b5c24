/* JSON writer (see json.h). */
#include "broker/console/json.h"

#include <stdio.h>
#include <string.h>

void lm_json_init(struct lm_json *j, struct broker_metrics_out *o)
{
    memset(j, 0, sizeof(*j));
    j->o = o;
}

static void put(struct lm_json *j, const char *s, size_t n)
{
    struct broker_metrics_out *o = j->o;
    broker_metrics_printf(o, "%.*s", (int)n, s);
}

/* Before any value: the comma between siblings. */
static void sep(struct lm_json *j)
{
    if (j->after_key) {
        j->after_key = false;
        return;
    }
    if (j->need_comma[j->depth])
        put(j, ",", 1);
    j->need_comma[j->depth] = true;
}

static void open_(struct lm_json *j, char c)
{
    sep(j);
    if (j->depth >= LM_JSON_DEPTH_MAX) {
        j->failed = true;
        return;
    }
    put(j, &c, 1);
    j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_(struct lm_json *j, char c)
{
    if (j->depth == 0 || j->after_key) {
        j->failed = true;
        return;
    }
    j->depth--;
    put(j, &c, 1);
}

void lm_json_obj_begin(struct lm_json *j)
{
    open_(j, '{');
}

void lm_json_obj_end(struct lm_json *j)
{
    close_(j, '}');
}

void lm_json_arr_begin(struct lm_json *j)
{
    open_(j, '[');
}

void lm_json_arr_end(struct lm_json *j)
{
    close_(j, ']');
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one (overlong forms,
 * surrogates and code points above U+10FFFF are invalid, RFC 3629). */
static size_t utf8_len(const unsigned char *s, size_t left)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (left < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

void lm_json_escape(struct broker_metrics_out *o, const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t run = 0; /* bytes at p[i - run .. i) to copy as they are */
    for (size_t i = 0; i < len;) {
        unsigned char c = p[i];
        const char *esc = NULL;
        char u[8];
        size_t n = 1;
        if (c == '"')
            esc = "\\\"";
        else if (c == '\\')
            esc = "\\\\";
        else if (c == '\n')
            esc = "\\n";
        else if (c == '\r')
            esc = "\\r";
        else if (c == '\t')
            esc = "\\t";
        else if (c < 0x20 || c == 0x7f) {
            snprintf(u, sizeof(u), "\\u%04x", c);
            esc = u;
        } else if (c >= 0x80) {
            n = utf8_len(p + i, len - i);
            if (n == 0) {
                esc = "\\ufffd";
                n = 1;
            }
        } else if (c == '<' || c == '>' || c == '&') {
            /* inert inside a <script> or HTML even if a page inserts it raw */
            snprintf(u, sizeof(u), "\\u%04x", c);
            esc = u;
        }
        if (esc != NULL) {
            if (run > 0)
                broker_metrics_printf(o, "%.*s", (int)run, (const char *)p + i - run);
            run = 0;
            broker_metrics_printf(o, "%s", esc);
        } else {
            run += n;
        }
        i += n;
    }
    if (run > 0)
        broker_metrics_printf(o, "%.*s", (int)run, (const char *)p + len - run);
}

void lm_json_key(struct lm_json *j, const char *name)
{
    sep(j);
    put(j, "\"", 1);
    lm_json_escape(j->o, name, strlen(name));
    put(j, "\":", 2);
    j->after_key = true;
}

void lm_json_strn(struct lm_json *j, const char *s, int64_t len)
{
    if (s == NULL || len < 0) {
        lm_json_null(j);
        return;
    }
    sep(j);
    put(j, "\"", 1);
    lm_json_escape(j->o, s, (size_t)len);
    put(j, "\"", 1);
}

void lm_json_str(struct lm_json *j, const char *s)
{
    lm_json_strn(j, s, s != NULL ? (int64_t)strlen(s) : -1);
}

void lm_json_int(struct lm_json *j, int64_t v)
{
    sep(j);
    broker_metrics_printf(j->o, "%lld", (long long)v);
}

void lm_json_bool(struct lm_json *j, bool v)
{
    sep(j);
    put(j, v ? "true" : "false", v ? 4 : 5);
}

void lm_json_null(struct lm_json *j)
{
    sep(j);
    put(j, "null", 4);
}

void lm_json_base64(struct lm_json *j, const uint8_t *p, int64_t len)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (p == NULL || len < 0) {
        lm_json_null(j);
        return;
    }
    sep(j);
    put(j, "\"", 1);
    char q[4];
    for (int64_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16;
        int64_t n = len - i < 3 ? len - i : 3;
        if (n > 1)
            v |= (uint32_t)p[i + 1] << 8;
        if (n > 2)
            v |= p[i + 2];
        q[0] = digits[(v >> 18) & 63];
        q[1] = digits[(v >> 12) & 63];
        q[2] = n > 1 ? digits[(v >> 6) & 63] : '=';
        q[3] = n > 2 ? digits[v & 63] : '=';
        put(j, q, 4);
    }
    put(j, "\"", 1);
}

bool lm_json_ok(const struct lm_json *j)
{
    return !j->failed && j->depth == 0 && !j->after_key && !j->o->failed;
}
