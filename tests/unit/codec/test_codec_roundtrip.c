/* Round trip of every message of every schema file at every version: sample (non-default
 * values) -> encode -> decode -> encode gives identical bytes, size() equals the encoded length,
 * decode consumes exactly the encoded bytes, and a buffer one byte short fails with LM_E_FULL. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "codec_test_util.h"
#include "protocol/kafka_request_header.h"
#include "protocol/kafka_response_header.h"

#define SEEDS 4 /* even seeds fill every field, odd seeds make nullable fields null */

struct rt_ops {
    size_t struct_size;
    void (*fill)(void *m, int16_t v, struct kafka_arena *a, uint32_t seed);
    int (*decode)(struct kafka_reader *r, int16_t v, void *m, struct kafka_arena *a);
    int (*encode)(struct kafka_writer *w, int16_t v, const void *m);
    size_t (*size)(int16_t v, const void *m);
    void (*init)(void *m);
};

static size_t g_messages_checked;

/* Returns the encoded length. */
static size_t round_trip_one(const char *what, const struct rt_ops *ops, int16_t v, uint32_t seed)
{
    struct kafka_arena arena;
    kafka_arena_init(&arena, 1u << 20);
    void *m = calloc(1, ops->struct_size);
    void *m2 = calloc(1, ops->struct_size);
    assert_non_null(m);
    assert_non_null(m2);
    ops->fill(m, v, &arena, seed);

    size_t n = ops->size(v, m);
    uint8_t *buf = malloc(n + 1);
    uint8_t *buf2 = malloc(n + 1);
    assert_non_null(buf);
    assert_non_null(buf2);
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    int rc = ops->encode(&w, v, m);
    if (rc != 0 || w.pos != n)
        fail_msg("%s v%d seed %u: encode rc %d (%s), wrote %zu, size() %zu", what, v, seed, rc,
                 lm_errname(rc), w.pos, n);

    /* One byte short: the writer must refuse, never overflow. */
    if (n > 0) {
        kafka_writer_init(&w, buf2, n - 1);
        rc = ops->encode(&w, v, m);
        if (rc != LM_E_FULL)
            fail_msg("%s v%d: encode into %zu bytes gave %d, want LM_E_FULL", what, v, n - 1, rc);
    }

    /* Decode from an exactly-sized copy, so ASan catches any read past the end. */
    uint8_t *exact = malloc(n ? n : 1);
    assert_non_null(exact);
    memcpy(exact, buf, n);
    struct kafka_arena arena2;
    kafka_arena_init(&arena2, 1u << 20);
    struct kafka_reader r;
    kafka_reader_init(&r, exact, n);
    rc = ops->decode(&r, v, m2, &arena2);
    if (rc != 0 || r.pos != n)
        fail_msg("%s v%d seed %u: decode rc %d (%s), read %zu of %zu", what, v, seed, rc,
                 lm_errname(rc), r.pos, n);
    size_t n2 = ops->size(v, m2);
    assert_int_equal(n2, n);
    kafka_writer_init(&w, buf2, n);
    rc = ops->encode(&w, v, m2);
    assert_int_equal(rc, 0);
    assert_int_equal(w.pos, n);
    if (memcmp(buf, buf2, n) != 0)
        fail_msg("%s v%d seed %u: re-encoded bytes differ", what, v, seed);

    /* A default (init) message must also round-trip. */
    ops->init(m2);
    size_t nd = ops->size(v, m2);
    kafka_writer_init(&w, buf2, n + 1);
    if (nd <= n + 1) {
        rc = ops->encode(&w, v, m2);
        /* Defaults may be null where a version forbids null; then encode says so. */
        assert_true(rc == 0 || rc == LM_E_NULL);
        if (rc == 0)
            assert_int_equal(w.pos, nd);
    }

    free(exact);
    free(buf);
    free(buf2);
    free(m);
    free(m2);
    kafka_arena_deinit(&arena);
    kafka_arena_deinit(&arena2);
    g_messages_checked++;
    return n;
}

static void test_every_api_every_version(void **state)
{
    (void)state;
    assert_true(kafka_api_count > 0);
    for (size_t i = 0; i < kafka_api_count; i++) {
        const struct kafka_api_info *api = &kafka_api_table[i];
        assert_ptr_equal(kafka_api_lookup(api->key), api);
        assert_true(api->min_version <= api->max_version);
        for (int side = 0; side < 2; side++) {
            const struct kafka_msg_ops *o = codec_ops(api, side);
            struct rt_ops ops = {
                o->struct_size, codec_fill(api->key, side), o->decode, o->encode, o->size, o->init};
            assert_non_null(ops.fill);
            char what[96];
            snprintf(what, sizeof(what), "%s %s", api->name, side ? "response" : "request");
            for (int16_t v = api->min_version; v <= api->max_version; v++)
                for (uint32_t seed = 0; seed < SEEDS; seed++)
                    round_trip_one(what, &ops, v, seed);
            /* Versions outside the range are refused. */
            uint8_t b[8] = {0};
            struct kafka_reader r;
            kafka_reader_init(&r, b, sizeof(b));
            void *m = calloc(1, o->struct_size);
            struct kafka_arena a;
            kafka_arena_init(&a, 4096);
            assert_int_equal(o->decode(&r, (int16_t)(api->max_version + 1), m, &a),
                             LM_E_UNSUPPORTED);
            assert_int_equal(o->decode(&r, (int16_t)(api->min_version - 1), m, &a),
                             LM_E_UNSUPPORTED);
            kafka_arena_deinit(&a);
            free(m);
        }
    }
    printf("round-tripped %zu message/version/seed combinations over %zu apis\n",
           g_messages_checked, kafka_api_count);
}

/* Wrappers with the generic signatures for the two headers. */
#define HDR_WRAPPERS(h)                                                                            \
    static void h##_fill_any(void *m, int16_t v, struct kafka_arena *a, uint32_t seed)             \
    {                                                                                              \
        kafka_##h##_fill_sample(m, v, a, seed);                                                    \
    }                                                                                              \
    static int h##_decode_any(struct kafka_reader *r, int16_t v, void *m, struct kafka_arena *a)   \
    {                                                                                              \
        return kafka_##h##_decode(r, v, m, a);                                                     \
    }                                                                                              \
    static int h##_encode_any(struct kafka_writer *w, int16_t v, const void *m)                    \
    {                                                                                              \
        return kafka_##h##_encode(w, v, m);                                                        \
    }                                                                                              \
    static size_t h##_size_any(int16_t v, const void *m)                                           \
    {                                                                                              \
        return kafka_##h##_size(v, m);                                                             \
    }                                                                                              \
    static void h##_init_any(void *m)                                                              \
    {                                                                                              \
        kafka_##h##_init(m);                                                                       \
    }
HDR_WRAPPERS(request_header)
HDR_WRAPPERS(response_header)

static void test_headers(void **state)
{
    (void)state;
    struct rt_ops req = {
        sizeof(struct kafka_request_header), request_header_fill_any, request_header_decode_any,
        request_header_encode_any,           request_header_size_any, request_header_init_any};
    struct rt_ops resp = {
        sizeof(struct kafka_response_header), response_header_fill_any, response_header_decode_any,
        response_header_encode_any,           response_header_size_any, response_header_init_any};
    for (int16_t v = 0; v <= 2; v++)
        for (uint32_t seed = 0; seed < SEEDS; seed++)
            round_trip_one("RequestHeader", &req, v, seed);
    for (int16_t v = 0; v <= 1; v++)
        for (uint32_t seed = 0; seed < SEEDS; seed++)
            round_trip_one("ResponseHeader", &resp, v, seed);

    /* Request header v2 keeps client_id classic (i16 length) and adds an empty tag section. */
    struct kafka_request_header h;
    kafka_request_header_init(&h);
    h.request_api_key = 18;
    h.request_api_version = 3;
    h.correlation_id = 7;
    h.client_id = KAFKA_STR("ab");
    uint8_t buf[32];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_request_header_encode(&w, 2, &h), 0);
    const uint8_t want[] = {0, 18, 0, 3, 0, 0, 0, 7, 0, 2, 'a', 'b', 0};
    assert_int_equal(w.pos, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    /* v1 is the same without the tag section, v0 has no client_id. */
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_request_header_encode(&w, 1, &h), 0);
    assert_int_equal(w.pos, sizeof(want) - 1);
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_request_header_encode(&w, 0, &h), 0);
    assert_int_equal(w.pos, 8);
}

/* A hand-built ApiVersions v3 response checks the flexible layout bit by bit: compact array
 * of structs each ending with an empty tag section, and a tagged field only when non-default. */
static void test_api_versions_v3_layout(void **state)
{
    (void)state;
    struct kafka_api_versions_response m;
    kafka_api_versions_response_init(&m);
    assert_int_equal(m.finalized_features_epoch, -1);
    struct kafka_api_versions_response_api_version keys[1] = {{18, 0, 4}};
    m.api_keys = keys;
    m.api_keys_count = 1;
    m.throttle_time_ms = 5;
    uint8_t buf[64];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_api_versions_response_encode(&w, 3, &m), 0);
    const uint8_t want[] = {0, 0,                 /* error_code */
                            2,                    /* compact array: 1 element */
                            0, 18, 0, 0, 0, 4, 0, /* key, min, max, no tags */
                            0, 0,  0, 5,          /* throttle */
                            0};                   /* no tagged fields: all at default */
    assert_int_equal(w.pos, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    m.finalized_features_epoch = 3;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_api_versions_response_encode(&w, 3, &m), 0);
    /* One tagged field: count 1, tag 1, size 8, int64 3. */
    const uint8_t tail[] = {1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 3};
    assert_int_equal(w.pos, sizeof(want) - 1 + sizeof(tail));
    assert_memory_equal(buf + sizeof(want) - 1, tail, sizeof(tail));
    /* Classic v0: i32 array count, no throttle, no tags. */
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_api_versions_response_encode(&w, 0, &m), 0);
    const uint8_t want0[] = {0, 0, 0, 0, 0, 1, 0, 18, 0, 0, 0, 4};
    assert_int_equal(w.pos, sizeof(want0));
    assert_memory_equal(buf, want0, sizeof(want0));
}

static void test_header_versions(void **state)
{
    (void)state;
    /* KIP-511: ApiVersions answers with response header v0 even when flexible. */
    assert_int_equal(kafka_response_header_version(18, 3), 0);
    assert_int_equal(kafka_request_header_version(18, 3), 2);
    assert_int_equal(kafka_request_header_version(18, 2), 1);
    assert_int_equal(kafka_request_header_version(3, 9), 2);
    assert_int_equal(kafka_response_header_version(3, 9), 1);
    assert_int_equal(kafka_response_header_version(3, 8), 0);
    assert_int_equal(kafka_request_header_version(3, 13), -1);
    assert_int_equal(kafka_request_header_version(-5, 0), -1);
    assert_null(kafka_api_lookup(-1));
    const struct kafka_api_info *f = kafka_api_lookup(1);
    assert_non_null(f);
    assert_string_equal(f->name, "Fetch");
    assert_int_equal(f->first_flexible, 12);
    assert_true(kafka_api_is_flexible(f, 12));
    assert_false(kafka_api_is_flexible(f, 11));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_api_every_version),
        cmocka_unit_test(test_headers),
        cmocka_unit_test(test_api_versions_v3_layout),
        cmocka_unit_test(test_header_versions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
