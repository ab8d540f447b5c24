/* The console's pure pieces: the JSON writer (structure, commas, escaping of quotes, control
 * characters, HTML-significant bytes and invalid UTF-8, base64), the HTTP request head parser
 * (request line, percent-decoding, query parameters, Basic credentials, hostile heads), the
 * per-topic metrics table (bounded, the rest in `other`) and the console's listener choice. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/config.h"
#include "broker/console/console.h"
#include "broker/console/http_req.h"
#include "broker/console/json.h"
#include "broker/metrics.h"

/* The text of o, NUL-terminated (o->buf is grown by printf and always has room). */
static const char *text(struct broker_metrics_out *o)
{
    broker_metrics_printf(o, "%s", "");
    assert_false(o->failed);
    return o->buf;
}

static void test_json_structure(void **state)
{
    (void)state;
    struct broker_metrics_out o = {0};
    struct lm_json j;
    lm_json_init(&j, &o);
    lm_json_obj_begin(&j);
    lm_json_key(&j, "a");
    lm_json_int(&j, -5);
    lm_json_key(&j, "b");
    lm_json_arr_begin(&j);
    lm_json_bool(&j, true);
    lm_json_null(&j);
    lm_json_str(&j, "x");
    lm_json_obj_begin(&j);
    lm_json_obj_end(&j);
    lm_json_arr_end(&j);
    lm_json_key(&j, "c");
    lm_json_strn(&j, NULL, -1);
    lm_json_key(&j, "d");
    lm_json_int(&j, INT64_MAX);
    lm_json_obj_end(&j);
    assert_true(lm_json_ok(&j));
    assert_string_equal(text(&o), "{\"a\":-5,\"b\":[true,null,\"x\",{}],\"c\":null,"
                                  "\"d\":9223372036854775807}");
    free(o.buf);
}

static void test_json_unbalanced(void **state)
{
    (void)state;
    struct broker_metrics_out o = {0};
    struct lm_json j;
    lm_json_init(&j, &o);
    lm_json_obj_begin(&j);
    lm_json_key(&j, "a");
    assert_false(lm_json_ok(&j)); /* open, and a key without its value */
    lm_json_obj_end(&j);
    assert_false(lm_json_ok(&j)); /* closing after a key is a failure */
    free(o.buf);
    memset(&o, 0, sizeof(o));
    lm_json_init(&j, &o);
    lm_json_arr_end(&j);
    assert_false(lm_json_ok(&j));
    free(o.buf);
    memset(&o, 0, sizeof(o));
    lm_json_init(&j, &o);
    for (int i = 0; i < LM_JSON_DEPTH_MAX + 2; i++)
        lm_json_arr_begin(&j);
    assert_false(lm_json_ok(&j)); /* deeper than the bound */
    free(o.buf);
}

static void test_json_escaping(void **state)
{
    (void)state;
    struct broker_metrics_out o = {0};
    struct lm_json j;
    lm_json_init(&j, &o);
    /* quote, backslash, newline, tab, NUL, 0x1f, DEL, </script>, valid UTF-8 (é, 😀),
     * a lone continuation byte, an overlong '/', a surrogate, a truncated sequence */
    static const char in[] = "q\"b\\n\nt\t\x00\x1f\x7f</script>&"
                             "\xc3\xa9\xf0\x9f\x98\x80"
                             "\x80"
                             "\xc0\xaf"
                             "\xed\xa0\x80"
                             "\xe2\x82";
    lm_json_strn(&j, in, (int64_t)sizeof(in) - 1);
    assert_true(lm_json_ok(&j));
    assert_string_equal(text(&o), "\"q\\\"b\\\\n\\nt\\t\\u0000\\u001f\\u007f\\u003c/script\\u003e"
                                  "\\u0026\xc3\xa9\xf0\x9f\x98\x80"
                                  "\\ufffd"
                                  "\\ufffd\\ufffd"
                                  "\\ufffd\\ufffd\\ufffd"
                                  "\\ufffd\\ufffd\"");
    free(o.buf);
}

static void test_json_key_escaped(void **state)
{
    (void)state;
    struct broker_metrics_out o = {0};
    struct lm_json j;
    lm_json_init(&j, &o);
    lm_json_obj_begin(&j);
    lm_json_key(&j, "k\"\n");
    lm_json_str(&j, "v");
    lm_json_obj_end(&j);
    assert_string_equal(text(&o), "{\"k\\\"\\n\":\"v\"}");
    free(o.buf);
}

static void test_json_base64(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        const char *out;
    } cases[] = {{"", "\"\""},        {"f", "\"Zg==\""},        {"fo", "\"Zm8=\""},
                 {"foo", "\"Zm9v\""}, {"foob", "\"Zm9vYg==\""}, {"\xff\xfe\x00", "\"//4A\""}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct broker_metrics_out o = {0};
        struct lm_json j;
        lm_json_init(&j, &o);
        size_t n = i == 5 ? 3 : strlen(cases[i].in);
        lm_json_base64(&j, (const uint8_t *)cases[i].in, (int64_t)n);
        assert_string_equal(text(&o), cases[i].out);
        free(o.buf);
    }
    struct broker_metrics_out o = {0};
    struct lm_json j;
    lm_json_init(&j, &o);
    lm_json_base64(&j, NULL, -1);
    assert_string_equal(text(&o), "null");
    free(o.buf);
}

static enum http_parse_err parse(const char *head, struct http_request *r)
{
    return http_parse_request(head, strlen(head), r);
}

static void test_http_parse_ok(void **state)
{
    (void)state;
    struct http_request r;
    assert_int_equal(parse("GET /api/topics/a%2Fb?x=1&topic=t%20one HTTP/1.1\r\n"
                           "Host: h\r\nauthorization:   Basic dTpw  \r\n\r\n",
                           &r),
                     HTTP_OK);
    assert_string_equal(r.method, "GET");
    assert_string_equal(r.path, "/api/topics/a/b");
    assert_string_equal(r.query, "x=1&topic=t%20one");
    assert_string_equal(r.authorization, "Basic dTpw");
    /* bare LF line ends, no headers */
    assert_int_equal(parse("HEAD /metrics HTTP/1.0\n\n", &r), HTTP_OK);
    assert_string_equal(r.method, "HEAD");
    assert_string_equal(r.path, "/metrics");
    assert_string_equal(r.query, "");
}

static void test_http_parse_hostile(void **state)
{
    (void)state;
    struct http_request r;
    static const char *const bad[] = {
        "",
        "\r\n\r\n",
        "GET\r\n\r\n",
        "GET / \r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "get / HTTP/1.1\r\n\r\n",
        "GET foo HTTP/1.1\r\n\r\n",
        "GET /a%zz HTTP/1.1\r\n\r\n",
        "GET /a%0 HTTP/1.1\r\n\r\n",
        "GET /a%00b HTTP/1.1\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nno colon here\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: x\r\n", /* no blank line */
        "VERYLONGMETHOD / HTTP/1.1\r\n\r\n",
        "\x00\x01garbage\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(parse(bad[i], &r), HTTP_BAD_REQUEST);
    /* a NUL inside the head: the length is what counts, not strlen */
    static const char nul[] = "GET /\0x HTTP/1.1\r\n\r\n";
    assert_int_equal(http_parse_request(nul, sizeof(nul) - 1, &r), HTTP_BAD_REQUEST);
    /* targets longer than the buffers */
    char head[4096];
    char longpath[HTTP_PATH_BYTES + 10];
    memset(longpath, 'a', sizeof(longpath) - 1);
    longpath[sizeof(longpath) - 1] = 0;
    snprintf(head, sizeof(head), "GET /%s HTTP/1.1\r\n\r\n", longpath);
    assert_int_equal(parse(head, &r), HTTP_URI_TOO_LONG);
    char longq[HTTP_QUERY_BYTES + 10];
    memset(longq, 'q', sizeof(longq) - 1);
    longq[sizeof(longq) - 1] = 0;
    snprintf(head, sizeof(head), "GET /?%s HTTP/1.1\r\n\r\n", longq);
    assert_int_equal(parse(head, &r), HTTP_URI_TOO_LONG);
    char longauth[HTTP_AUTH_BYTES + 10];
    memset(longauth, 'x', sizeof(longauth) - 1);
    longauth[sizeof(longauth) - 1] = 0;
    snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nAuthorization: %s\r\n\r\n", longauth);
    assert_int_equal(parse(head, &r), HTTP_HEADER_TOO_LARGE);
}

static void test_http_query(void **state)
{
    (void)state;
    char v[16];
    const char *q = "topic=a+b%21&partition=3&empty=&flag&offset=-2&big=99999999999999999999";
    assert_int_equal(http_query_get(q, "topic", v, sizeof(v)), 1);
    assert_string_equal(v, "a b!");
    assert_int_equal(http_query_get(q, "empty", v, sizeof(v)), 1);
    assert_string_equal(v, "");
    assert_int_equal(http_query_get(q, "flag", v, sizeof(v)), 1);
    assert_string_equal(v, "");
    assert_int_equal(http_query_get(q, "missing", v, sizeof(v)), 0);
    assert_int_equal(http_query_get(q, "top", v, sizeof(v)), 0); /* a prefix is not a match */
    assert_int_equal(http_query_get("x=%4", "x", v, sizeof(v)), -1);
    assert_int_equal(http_query_get("x=%00", "x", v, sizeof(v)), -1);
    assert_int_equal(http_query_get("x=0123456789abcdefg", "x", v, sizeof(v)), -1);
    long long n = 0;
    assert_int_equal(http_query_int(q, "partition", 0, 10, &n), 1);
    assert_int_equal(n, 3);
    assert_int_equal(http_query_int(q, "offset", -2, 100, &n), 1);
    assert_int_equal(n, -2);
    assert_int_equal(http_query_int(q, "partition", 4, 10, &n), -1); /* out of range */
    assert_int_equal(http_query_int(q, "big", 0, INT64_MAX, &n), -1);
    assert_int_equal(http_query_int(q, "topic", 0, 10, &n), -1);
    assert_int_equal(http_query_int(q, "empty", 0, 10, &n), -1);
    assert_int_equal(http_query_int(q, "missing", 0, 10, &n), 0);
}

static void test_http_basic(void **state)
{
    (void)state;
    char u[16], p[16];
    /* "alice:s3cr:et" */
    assert_true(http_basic_parse("Basic YWxpY2U6czNjcjpldA==", u, sizeof(u), p, sizeof(p)));
    assert_string_equal(u, "alice");
    assert_string_equal(p, "s3cr:et");
    assert_true(http_basic_parse("basic  YWxpY2U6", u, sizeof(u), p, sizeof(p)));
    assert_string_equal(p, "");
    assert_false(http_basic_parse("Bearer YWxpY2U6czNjcjpldA==", u, sizeof(u), p, sizeof(p)));
    assert_false(http_basic_parse("Basic !!!", u, sizeof(u), p, sizeof(p)));
    assert_false(http_basic_parse("Basic YWxpY2U=", u, sizeof(u), p, sizeof(p))); /* no colon */
    assert_false(http_basic_parse("Basic OnB3", u, sizeof(u), p, sizeof(p)));     /* ":pw" */
    assert_false(http_basic_parse("Basic YQBiOmM=", u, sizeof(u), p, sizeof(p))); /* NUL */
    /* a user longer than the buffer */
    assert_false(
        http_basic_parse("Basic YWFhYWFhYWFhYWFhYWFhYWFhYWE6cA==", u, sizeof(u), p, sizeof(p)));
    assert_false(http_basic_parse("", u, sizeof(u), p, sizeof(p)));
}

static void test_topic_table_bounded(void **state)
{
    (void)state;
    struct broker_shard_metrics *m = calloc(1, sizeof(*m));
    assert_non_null(m);
    char name[32];
    for (int i = 0; i < BROKER_TOPIC_SLOTS + 10; i++) {
        int n = snprintf(name, sizeof(name), "topic-%d", i);
        broker_metrics_topic_add(m, name, (size_t)n, BROKER_C_MESSAGES_IN, 2);
        broker_metrics_topic_add(m, name, (size_t)n, BROKER_C_MESSAGES_IN, 1);
    }
    broker_metrics_topic_add(m, "", 0, BROKER_C_BYTES_IN, 7);
    uint64_t in_slots = 0, ready = 0;
    for (int i = 0; i < BROKER_TOPIC_SLOTS; i++) {
        ready += m->topics[i].ready;
        in_slots += m->topics[i].c[BROKER_C_MESSAGES_IN];
        if (m->topics[i].ready)
            assert_int_equal(m->topics[i].c[BROKER_C_MESSAGES_IN], 3);
    }
    assert_int_equal(ready, BROKER_TOPIC_SLOTS);
    assert_int_equal(in_slots, 3 * BROKER_TOPIC_SLOTS);
    assert_int_equal(m->topic_other[BROKER_C_MESSAGES_IN], 3 * 10);
    assert_int_equal(m->topic_other[BROKER_C_BYTES_IN], 7);
    /* and the exposition sums them by name, the rest under (other) */
    struct broker_metrics_out o = {0};
    struct broker_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    const struct broker_shard_metrics *ms[2] = {m, m};
    broker_metrics_render(&o, ms, 2, &cfg, NULL);
    const char *t = text(&o);
    assert_non_null(
        strstr(t, "kafka_server_brokertopicmetrics_messages_in_total{topic=\"topic-0\"} 6\n"));
    assert_non_null(
        strstr(t, "kafka_server_brokertopicmetrics_messages_in_total{topic=\"(other)\"} 60\n"));
    assert_null(strstr(t, "topic=\"topic-0\"} 6\nkafka_server_brokertopicmetrics_messages_in_total"
                          "{topic=\"topic-0\"}"));
    free(o.buf);
    free(m);
}

/* The histogram bucket of a time: the first b with us <= 100 us << b, the last one open. */
static void test_latency_buckets(void **state)
{
    (void)state;
    static const struct {
        uint64_t us;
        int bucket;
    } cases[] = {{0, 0},
                 {1, 0},
                 {100, 0},
                 {101, 1},
                 {200, 1},
                 {201, 2},
                 {400, 2},
                 {401, 3},
                 {102400, 10},
                 {102401, 11},
                 {1638400, 14},
                 {1638401, 15},
                 {UINT64_MAX / 2, 15}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct broker_latency l;
        memset(&l, 0, sizeof(l));
        broker_metric_latency(&l, cases[i].us);
        for (int b = 0; b < BROKER_METRICS_LAT_BUCKETS; b++)
            assert_int_equal(l.buckets[b], b == cases[i].bucket ? 1 : 0);
        assert_int_equal(l.us_sum, cases[i].us);
    }
}

static void test_console_setup(void **state)
{
    (void)state;
    struct broker_config *cfg = calloc(1, sizeof(*cfg));
    assert_non_null(cfg);
    struct console c;
    /* a controller listener first, then a PLAINTEXT one on the wildcard address */
    cfg->listeners_count = 2;
    snprintf(cfg->listeners[0].name, sizeof(cfg->listeners[0].name), "CONTROLLER");
    snprintf(cfg->listeners[0].host, sizeof(cfg->listeners[0].host), "127.0.0.1");
    cfg->listeners[0].port = 9093;
    snprintf(cfg->listeners[1].name, sizeof(cfg->listeners[1].name), "PLAINTEXT");
    snprintf(cfg->listeners[1].host, sizeof(cfg->listeners[1].host), "0.0.0.0");
    cfg->listeners[1].port = 9092;
    cfg->controller_listener_names_count = 1;
    snprintf(cfg->controller_listener_names[0], sizeof(cfg->controller_listener_names[0]),
             "CONTROLLER");
    console_setup(&c, cfg);
    assert_int_equal(c.auth, CONSOLE_ANONYMOUS);
    assert_string_equal(c.host, "127.0.0.1");
    assert_int_equal(c.port, 9092);
    /* a SASL listener without PLAIN or SCRAM (no mechanisms configured): off, with a reason */
    cfg->listener_sasl[1] = true;
    console_setup(&c, cfg);
    assert_int_equal(c.auth, CONSOLE_OFF);
    assert_true(strlen(c.why_off) > 0);
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_json_structure),     cmocka_unit_test(test_json_unbalanced),
        cmocka_unit_test(test_json_escaping),      cmocka_unit_test(test_json_key_escaped),
        cmocka_unit_test(test_json_base64),        cmocka_unit_test(test_http_parse_ok),
        cmocka_unit_test(test_http_parse_hostile), cmocka_unit_test(test_http_query),
        cmocka_unit_test(test_http_basic),         cmocka_unit_test(test_topic_table_bounded),
        cmocka_unit_test(test_console_setup),      cmocka_unit_test(test_latency_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
