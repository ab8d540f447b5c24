/* Malformed input: every message truncated at every byte fails cleanly (ASan watches the
 * reads), huge and negative counts, out-of-order tags, null where not nullable, arena limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "codec_test_util.h"

static void test_truncated_everywhere(void **state)
{
    (void)state;
    size_t prefixes = 0;
    for (size_t i = 0; i < kafka_api_count; i++) {
        const struct kafka_api_info *api = &kafka_api_table[i];
        for (int side = 0; side < 2; side++) {
            const struct kafka_msg_ops *ops = codec_ops(api, side);
            void *m = calloc(1, ops->struct_size);
            assert_non_null(m);
            for (int16_t v = api->min_version; v <= api->max_version; v++) {
                size_t len;
                uint8_t *full = codec_encode_sample(api, side, v, 0, &len);
                for (size_t cut = 0; cut < len; cut++) {
                    /* exactly-sized heap copy: any read past cut is an ASan error */
                    uint8_t *p = malloc(cut ? cut : 1);
                    assert_non_null(p);
                    memcpy(p, full, cut);
                    struct kafka_arena a;
                    kafka_arena_init(&a, 1u << 20);
                    struct kafka_reader r;
                    kafka_reader_init(&r, p, cut);
                    int rc = ops->decode(&r, v, m, &a);
                    if (rc >= 0)
                        fail_msg("%s %s v%d cut at %zu of %zu decoded without error", api->name,
                                 side ? "response" : "request", v, cut, len);
                    assert_true(r.pos <= cut);
                    kafka_arena_deinit(&a);
                    free(p);
                    prefixes++;
                }
                free(full);
            }
            free(m);
        }
    }
    printf("decoded %zu truncated prefixes, all rejected\n", prefixes);
    assert_true(prefixes > 1000);
}

/* Flips each byte of each sample to a few hostile values: decode must return (any result),
 * never read out of bounds or crash; if it succeeds, re-encoding must succeed too. */
static void test_corrupted_bytes(void **state)
{
    (void)state;
    static const uint8_t hostile[] = {0xff, 0x80, 0x7f, 0x00};
    for (size_t i = 0; i < kafka_api_count; i++) {
        const struct kafka_api_info *api = &kafka_api_table[i];
        for (int side = 0; side < 2; side++) {
            const struct kafka_msg_ops *ops = codec_ops(api, side);
            void *m = calloc(1, ops->struct_size);
            int16_t v = api->max_version;
            size_t len;
            uint8_t *full = codec_encode_sample(api, side, v, 2, &len);
            uint8_t *p = malloc(len ? len : 1);
            uint8_t *out = malloc(2 * len + 64);
            for (size_t pos = 0; pos < len; pos++) {
                for (size_t h = 0; h < sizeof(hostile); h++) {
                    memcpy(p, full, len);
                    p[pos] = hostile[h];
                    struct kafka_arena a;
                    kafka_arena_init(&a, 1u << 20);
                    struct kafka_reader r;
                    kafka_reader_init(&r, p, len);
                    if (ops->decode(&r, v, m, &a) == 0) {
                        size_t n = ops->size(v, m);
                        assert_true(n <= 2 * len + 64);
                        struct kafka_writer w;
                        kafka_writer_init(&w, out, n);
                        assert_int_equal(ops->encode(&w, v, m), 0);
                        assert_int_equal(w.pos, n);
                    }
                    kafka_arena_deinit(&a);
                }
            }
            free(out);
            free(p);
            free(full);
            free(m);
        }
    }
}

static int decode_bytes(int16_t key, int response, int16_t v, const uint8_t *b, size_t len,
                        size_t arena_limit)
{
    const struct kafka_api_info *api = kafka_api_lookup(key);
    assert_non_null(api);
    const struct kafka_msg_ops *ops = codec_ops(api, response);
    void *m = calloc(1, ops->struct_size);
    struct kafka_arena a;
    kafka_arena_init(&a, arena_limit);
    struct kafka_reader r;
    kafka_reader_init(&r, b, len);
    int rc = ops->decode(&r, v, m, &a);
    kafka_arena_deinit(&a);
    free(m);
    return rc;
}

static void test_huge_and_negative_counts(void **state)
{
    (void)state;
    /* Produce v3: transactional_id null, acks, timeout, then topic count. */
    uint8_t b[] = {0xff, 0xff, 0, 1, 0, 0, 0x03, 0xe8, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(0, 0, 3, b, sizeof(b), 1u << 20), LM_E_TOO_LARGE);
    b[8] = 0xff;
    b[9] = 0xff;
    b[10] = 0xff;
    b[11] = 0xfe; /* -2 */
    assert_int_equal(decode_bytes(0, 0, 3, b, sizeof(b), 1u << 20), LM_E_INVALID);
    b[11] = 0xff; /* -1 = null, but topic_data is not nullable */
    assert_int_equal(decode_bytes(0, 0, 3, b, sizeof(b), 1u << 20), LM_E_NULL);
    /* Metadata v1 request: topics null is allowed (all topics); v0 is not nullable. */
    const uint8_t null_topics[] = {0xff, 0xff, 0xff, 0xff};
    assert_int_equal(decode_bytes(3, 0, 1, null_topics, 4, 4096), 0);
    assert_int_equal(decode_bytes(3, 0, 0, null_topics, 4, 4096), LM_E_NULL);
    /* Metadata v9 (compact): topic count 2^31 - 2 claimed with 2 bytes left. */
    const uint8_t compact_huge[] = {0xff, 0xff, 0xff, 0xff, 0x07, 0, 0};
    assert_int_equal(decode_bytes(3, 0, 9, compact_huge, sizeof(compact_huge), 4096),
                     LM_E_TOO_LARGE);
    /* A negative string length in Produce v3 transactional_id. */
    const uint8_t neg_str[] = {0x80, 0x00, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0};
    assert_int_equal(decode_bytes(0, 0, 3, neg_str, sizeof(neg_str), 4096), LM_E_INVALID);
    /* Over-long varint as a compact count. */
    const uint8_t overlong[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0, 0, 0};
    assert_int_equal(decode_bytes(3, 0, 9, overlong, sizeof(overlong), 4096), LM_E_VARINT);
}

static void test_tag_order_in_messages(void **state)
{
    (void)state;
    /* ApiVersions v3 response: error 0, no api keys (compact 1), throttle 0, then tags. */
    uint8_t ok[] = {0, 0, 1, 0, 0, 0, 0, 2, 1, 8, 0, 0, 0, 0, 0, 0, 0, 9, 3, 1, 1};
    assert_int_equal(decode_bytes(18, 1, 3, ok, sizeof(ok), 4096), 0);
    /* tags 3 then 1: out of order */
    uint8_t bad[] = {0, 0, 1, 0, 0, 0, 0, 2, 3, 1, 1, 1, 8, 0, 0, 0, 0, 0, 0, 0, 9};
    assert_int_equal(decode_bytes(18, 1, 3, bad, sizeof(bad), 4096), LM_E_TAG_ORDER);
    /* duplicate tag 1 */
    uint8_t dup[] = {0, 0, 1, 0, 0, 0, 0, 2, 1, 8, 0, 0, 0, 0,
                     0, 0, 0, 9, 1, 8, 0, 0, 0, 0, 0, 0, 0, 9};
    assert_int_equal(decode_bytes(18, 1, 3, dup, sizeof(dup), 4096), LM_E_TAG_ORDER);
    /* unknown tag 7 is skipped */
    uint8_t unknown[] = {0, 0, 1, 0, 0, 0, 0, 1, 7, 3, 0xaa, 0xbb, 0xcc};
    assert_int_equal(decode_bytes(18, 1, 3, unknown, sizeof(unknown), 4096), 0);
    /* a known tag whose size does not match its payload (int64 in 4 bytes) */
    uint8_t shortpay[] = {0, 0, 1, 0, 0, 0, 0, 1, 1, 4, 0, 0, 0, 9};
    assert_true(decode_bytes(18, 1, 3, shortpay, sizeof(shortpay), 4096) < 0);
    uint8_t longpay[] = {0, 0, 1, 0, 0, 0, 0, 1, 1, 9, 0, 0, 0, 0, 0, 0, 0, 9, 0};
    assert_int_equal(decode_bytes(18, 1, 3, longpay, sizeof(longpay), 4096), LM_E_INVALID);
}

static void test_arena_exhaustion(void **state)
{
    (void)state;
    const struct kafka_api_info *api = kafka_api_lookup(3);
    assert_non_null(api);
    size_t len;
    uint8_t *b = codec_encode_sample(api, 1, 12, 0, &len);
    /* With room it decodes; with a tiny arena it fails with LM_E_NOMEM, at every limit below
     * what it needs, and never crashes or leaks. */
    assert_int_equal(decode_bytes(3, 1, 12, b, len, 1u << 20), 0);
    int nomem = 0;
    for (size_t limit = 0; limit < 4096; limit += 16) {
        int rc = decode_bytes(3, 1, 12, b, len, limit);
        assert_true(rc == 0 || rc == LM_E_NOMEM);
        nomem += rc == LM_E_NOMEM;
    }
    assert_true(nomem > 0);
    assert_int_equal(decode_bytes(3, 1, 12, b, len, 0), LM_E_NOMEM);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_truncated_everywhere),
        cmocka_unit_test(test_corrupted_bytes),
        cmocka_unit_test(test_huge_and_negative_counts),
        cmocka_unit_test(test_tag_order_in_messages),
        cmocka_unit_test(test_arena_exhaustion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
