/* kafka_rt primitives: varints at their boundaries, over-long and overflowing varints,
 * zigzag, classic/compact null handling, writer overflow, the bounded arena. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/kafka_rt.h"

static void test_uvarint_boundaries(void **state)
{
    (void)state;
    static const struct {
        uint32_t v;
        size_t n;
    } cases[] = {{0, 1},         {1, 1},         {127, 1},        {128, 2},
                 {16383, 2},     {16384, 3},     {2097151, 3},    {2097152, 4},
                 {268435455, 4}, {268435456, 5}, {UINT32_MAX, 5}, {0x80000000u, 5}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        uint8_t buf[8];
        struct kafka_writer w;
        kafka_writer_init(&w, buf, sizeof(buf));
        assert_int_equal(kafka_write_uvarint(&w, cases[i].v), 0);
        assert_int_equal(w.pos, cases[i].n);
        assert_int_equal(kafka_size_uvarint(cases[i].v), cases[i].n);
        /* every byte but the last has the continuation bit */
        for (size_t j = 0; j + 1 < w.pos; j++)
            assert_true(buf[j] & 0x80);
        assert_false(buf[w.pos - 1] & 0x80);
        struct kafka_reader r;
        kafka_reader_init(&r, buf, w.pos);
        uint32_t got = 0;
        assert_int_equal(kafka_read_uvarint(&r, &got), 0);
        assert_int_equal(got, cases[i].v);
        assert_int_equal(r.pos, w.pos);
        /* every strict prefix is truncated */
        for (size_t cut = 0; cut < w.pos; cut++) {
            kafka_reader_init(&r, buf, cut);
            assert_int_equal(kafka_read_uvarint(&r, &got), LM_E_TRUNCATED);
        }
    }
    const uint8_t known[] = {0xac, 0x02}; /* 300 */
    struct kafka_reader r;
    kafka_reader_init(&r, known, sizeof(known));
    uint32_t got;
    assert_int_equal(kafka_read_uvarint(&r, &got), 0);
    assert_int_equal(got, 300);
}

static void test_uvarlong_boundaries(void **state)
{
    (void)state;
    for (unsigned bits = 0; bits <= 64; bits += 7) {
        uint64_t v = bits >= 64 ? UINT64_MAX : (((uint64_t)1 << bits) - 1);
        for (int d = 0; d < 2; d++) {
            uint64_t x = d == 0 ? v : v + 1;
            if (d == 1 && v == UINT64_MAX)
                continue;
            uint8_t buf[16];
            struct kafka_writer w;
            kafka_writer_init(&w, buf, sizeof(buf));
            assert_int_equal(kafka_write_uvarlong(&w, x), 0);
            assert_int_equal(w.pos, kafka_size_uvarlong(x));
            assert_true(w.pos <= KAFKA_VARLONG_MAX_BYTES);
            struct kafka_reader r;
            kafka_reader_init(&r, buf, w.pos);
            uint64_t got;
            assert_int_equal(kafka_read_uvarlong(&r, &got), 0);
            assert_true(got == x);
        }
    }
    uint8_t buf[16];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_write_uvarlong(&w, UINT64_MAX), 0);
    assert_int_equal(w.pos, 10);
}

static void test_overlong_varints(void **state)
{
    (void)state;
    uint32_t u32;
    uint64_t u64;
    struct kafka_reader r;
    /* 6-byte varint (value 0 padded) is longer than 5 bytes: rejected. */
    const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    kafka_reader_init(&r, six, sizeof(six));
    assert_int_equal(kafka_read_uvarint(&r, &u32), LM_E_VARINT);
    /* 5 bytes whose value needs more than 32 bits. */
    const uint8_t big[] = {0xff, 0xff, 0xff, 0xff, 0x1f};
    kafka_reader_init(&r, big, sizeof(big));
    assert_int_equal(kafka_read_uvarint(&r, &u32), LM_E_VARINT);
    const uint8_t max32[] = {0xff, 0xff, 0xff, 0xff, 0x0f};
    kafka_reader_init(&r, max32, sizeof(max32));
    assert_int_equal(kafka_read_uvarint(&r, &u32), 0);
    assert_int_equal(u32, UINT32_MAX);
    /* 11-byte varlong rejected; 10 bytes with more than 64 bits rejected. */
    const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    kafka_reader_init(&r, eleven, sizeof(eleven));
    assert_int_equal(kafka_read_uvarlong(&r, &u64), LM_E_VARINT);
    const uint8_t over64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
    kafka_reader_init(&r, over64, sizeof(over64));
    assert_int_equal(kafka_read_uvarlong(&r, &u64), LM_E_VARINT);
    const uint8_t max64[] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    kafka_reader_init(&r, max64, sizeof(max64));
    assert_int_equal(kafka_read_uvarlong(&r, &u64), 0);
    assert_true(u64 == UINT64_MAX);
    /* the signed readers reject the same */
    int32_t s32;
    int64_t s64;
    kafka_reader_init(&r, six, sizeof(six));
    assert_int_equal(kafka_read_varint(&r, &s32), LM_E_VARINT);
    kafka_reader_init(&r, eleven, sizeof(eleven));
    assert_int_equal(kafka_read_varlong(&r, &s64), LM_E_VARINT);
}

static void test_zigzag(void **state)
{
    (void)state;
    assert_int_equal(kafka_zigzag32(0), 0);
    assert_int_equal(kafka_zigzag32(-1), 1);
    assert_int_equal(kafka_zigzag32(1), 2);
    assert_int_equal(kafka_zigzag32(-2), 3);
    assert_int_equal(kafka_zigzag32(INT32_MAX), 0xfffffffeu);
    assert_int_equal(kafka_zigzag32(INT32_MIN), 0xffffffffu);
    assert_true(kafka_zigzag64(INT64_MIN) == UINT64_MAX);
    assert_true(kafka_zigzag64(-1) == 1);
    const int32_t v32[] = {0, 1, -1, 63, -64, 64, -65, INT32_MAX, INT32_MIN, 1000000, -1000000};
    for (size_t i = 0; i < sizeof(v32) / sizeof(v32[0]); i++) {
        assert_int_equal(kafka_unzigzag32(kafka_zigzag32(v32[i])), v32[i]);
        uint8_t buf[8];
        struct kafka_writer w;
        kafka_writer_init(&w, buf, sizeof(buf));
        assert_int_equal(kafka_write_varint(&w, v32[i]), 0);
        assert_int_equal(w.pos, kafka_size_varint(v32[i]));
        struct kafka_reader r;
        kafka_reader_init(&r, buf, w.pos);
        int32_t got;
        assert_int_equal(kafka_read_varint(&r, &got), 0);
        assert_int_equal(got, v32[i]);
    }
    /* -64 and 63 fit one byte, -65 and 64 need two (zigzag). */
    assert_int_equal(kafka_size_varint(-64), 1);
    assert_int_equal(kafka_size_varint(63), 1);
    assert_int_equal(kafka_size_varint(-65), 2);
    assert_int_equal(kafka_size_varint(64), 2);
    const int64_t v64[] = {0, -1, 1, INT64_MAX, INT64_MIN, (int64_t)1 << 40, -((int64_t)1 << 40)};
    for (size_t i = 0; i < sizeof(v64) / sizeof(v64[0]); i++) {
        uint8_t buf[16];
        struct kafka_writer w;
        kafka_writer_init(&w, buf, sizeof(buf));
        assert_int_equal(kafka_write_varlong(&w, v64[i]), 0);
        assert_int_equal(w.pos, kafka_size_varlong(v64[i]));
        struct kafka_reader r;
        kafka_reader_init(&r, buf, w.pos);
        int64_t got;
        assert_int_equal(kafka_read_varlong(&r, &got), 0);
        assert_true(got == v64[i]);
    }
}

static void test_null_handling(void **state)
{
    (void)state;
    uint8_t buf[32];
    struct kafka_writer w;
    struct kafka_reader r;
    struct kafka_str s;
    struct kafka_bytes b;
    int32_t count;

    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_write_str(&w, KAFKA_STR_NULL), 0);             /* ff ff */
    assert_int_equal(kafka_write_compact_str(&w, KAFKA_STR_NULL), 0);     /* 00 */
    assert_int_equal(kafka_write_bytes(&w, KAFKA_BYTES_NULL), 0);         /* ff ff ff ff */
    assert_int_equal(kafka_write_compact_bytes(&w, KAFKA_BYTES_NULL), 0); /* 00 */
    assert_int_equal(kafka_write_array_count(&w, -1), 0);                 /* ff ff ff ff */
    assert_int_equal(kafka_write_compact_array_count(&w, -1), 0);         /* 00 */
    assert_int_equal(kafka_write_compact_str(&w, KAFKA_STR("")), 0);      /* 01 */
    assert_int_equal(kafka_write_str(&w, KAFKA_STR("")), 0);              /* 00 00 */
    const uint8_t want[] = {0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xff, 0x00,
                            0xff, 0xff, 0xff, 0xff, 0x00, 0x01, 0x00, 0x00};
    assert_int_equal(w.pos, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));

    kafka_reader_init(&r, buf, w.pos);
    assert_int_equal(kafka_read_str(&r, &s), 0);
    assert_int_equal(s.len, -1);
    assert_int_equal(kafka_read_compact_str(&r, &s), 0);
    assert_int_equal(s.len, -1);
    assert_int_equal(kafka_read_bytes(&r, &b), 0);
    assert_int_equal(b.len, -1);
    assert_int_equal(kafka_read_compact_bytes(&r, &b), 0);
    assert_int_equal(b.len, -1);
    assert_int_equal(kafka_read_array_count(&r, 1, &count), 0);
    assert_int_equal(count, -1);
    assert_int_equal(kafka_read_compact_array_count(&r, 1, &count), 0);
    assert_int_equal(count, -1);
    assert_int_equal(kafka_read_compact_str(&r, &s), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(kafka_read_str(&r, &s), 0);
    assert_int_equal(s.len, 0);
    assert_int_equal(kafka_reader_left(&r), 0);

    /* Negative lengths other than -1 are invalid; the writer refuses them too. */
    const uint8_t neg2[] = {0xff, 0xfe, 'a', 'b'};
    kafka_reader_init(&r, neg2, sizeof(neg2));
    assert_int_equal(kafka_read_str(&r, &s), LM_E_INVALID);
    const uint8_t neg_bytes[] = {0x80, 0x00, 0x00, 0x00};
    kafka_reader_init(&r, neg_bytes, sizeof(neg_bytes));
    assert_int_equal(kafka_read_bytes(&r, &b), LM_E_INVALID);
    kafka_reader_init(&r, neg_bytes, sizeof(neg_bytes));
    assert_int_equal(kafka_read_array_count(&r, 1, &count), LM_E_INVALID);
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_write_str(&w, (struct kafka_str){"x", -2}), LM_E_INVALID);
    assert_int_equal(kafka_write_array_count(&w, -7), LM_E_INVALID);
    assert_int_equal(w.pos, 0);
}

static void test_lengths_against_bytes_left(void **state)
{
    (void)state;
    struct kafka_reader r;
    struct kafka_str s;
    struct kafka_bytes b;
    int32_t count;
    /* classic string claims 5 bytes, has 2 */
    const uint8_t short_str[] = {0x00, 0x05, 'a', 'b'};
    kafka_reader_init(&r, short_str, sizeof(short_str));
    assert_int_equal(kafka_read_str(&r, &s), LM_E_TRUNCATED);
    /* compact bytes claiming 2^31 bytes */
    const uint8_t huge_bytes[] = {0x81, 0x80, 0x80, 0x80, 0x08, 0};
    kafka_reader_init(&r, huge_bytes, sizeof(huge_bytes));
    assert_int_equal(kafka_read_compact_bytes(&r, &b), LM_E_TOO_LARGE);
    /* array of 0x7fffffff elements with 4 bytes left: refused before any allocation */
    const uint8_t huge_count[] = {0x7f, 0xff, 0xff, 0xff, 1, 2, 3, 4};
    kafka_reader_init(&r, huge_count, sizeof(huge_count));
    assert_int_equal(kafka_read_array_count(&r, 1, &count), LM_E_TOO_LARGE);
    /* 2 elements of at least 4 bytes need 8 bytes; 4 left */
    const uint8_t two_int32[] = {0, 0, 0, 2, 1, 2, 3, 4};
    kafka_reader_init(&r, two_int32, sizeof(two_int32));
    assert_int_equal(kafka_read_array_count(&r, 4, &count), LM_E_TOO_LARGE);
    kafka_reader_init(&r, two_int32, sizeof(two_int32));
    assert_int_equal(kafka_read_array_count(&r, 2, &count), 0);
    assert_int_equal(count, 2);
    /* compact count of UINT32_MAX-1 */
    const uint8_t huge_compact[] = {0xff, 0xff, 0xff, 0xff, 0x0f, 0};
    kafka_reader_init(&r, huge_compact, sizeof(huge_compact));
    assert_int_equal(kafka_read_compact_array_count(&r, 1, &count), LM_E_TOO_LARGE);
    /* compact string longer than the i16 limit */
    const uint8_t long_str[] = {0x81, 0x80, 0x02};
    kafka_reader_init(&r, long_str, sizeof(long_str));
    assert_int_equal(kafka_read_compact_str(&r, &s), LM_E_TOO_LARGE);
}

static void test_tag_sections(void **state)
{
    (void)state;
    struct kafka_reader r;
    /* two tags, ascending, skipped */
    const uint8_t ok[] = {2, 0, 1, 0xaa, 5, 2, 0xbb, 0xcc};
    kafka_reader_init(&r, ok, sizeof(ok));
    assert_int_equal(kafka_skip_tagged_fields(&r), 0);
    assert_int_equal(r.pos, sizeof(ok));
    /* descending */
    const uint8_t desc[] = {2, 5, 0, 1, 0};
    kafka_reader_init(&r, desc, sizeof(desc));
    assert_int_equal(kafka_skip_tagged_fields(&r), LM_E_TAG_ORDER);
    /* duplicate */
    const uint8_t dup[] = {2, 3, 0, 3, 0};
    kafka_reader_init(&r, dup, sizeof(dup));
    assert_int_equal(kafka_skip_tagged_fields(&r), LM_E_TAG_ORDER);
    /* size past the end */
    const uint8_t past[] = {1, 0, 9, 1, 2};
    kafka_reader_init(&r, past, sizeof(past));
    assert_int_equal(kafka_skip_tagged_fields(&r), LM_E_TRUNCATED);
    /* count larger than present */
    const uint8_t many[] = {3, 0, 0};
    kafka_reader_init(&r, many, sizeof(many));
    assert_int_equal(kafka_skip_tagged_fields(&r), LM_E_TRUNCATED);
}

static void test_writer_overflow(void **state)
{
    (void)state;
    uint8_t buf[4];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_write_int16(&w, 1), 0);
    assert_int_equal(kafka_write_int32(&w, 1), LM_E_FULL);
    assert_int_equal(w.pos, 2);
    /* a string whose length fits but body does not leaves the cursor unchanged */
    assert_int_equal(kafka_write_str(&w, KAFKA_STR("abc")), LM_E_FULL);
    assert_int_equal(w.pos, 2);
    assert_int_equal(kafka_write_uvarint(&w, UINT32_MAX), LM_E_FULL);
    assert_int_equal(w.pos, 2);
    assert_int_equal(kafka_write_int16(&w, 2), 0);
    assert_int_equal(kafka_write_bool(&w, true), LM_E_FULL);
    const uint8_t want[] = {0, 1, 0, 2};
    assert_memory_equal(buf, want, 4);
}

static void test_fixed_ints_big_endian(void **state)
{
    (void)state;
    uint8_t buf[64];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(kafka_write_int16(&w, -2), 0);
    assert_int_equal(kafka_write_int32(&w, 0x01020304), 0);
    assert_int_equal(kafka_write_int64(&w, INT64_MIN), 0);
    assert_int_equal(kafka_write_uint16(&w, 0xbeef), 0);
    assert_int_equal(kafka_write_float64(&w, 1.5), 0);
    const uint8_t want[] = {0xff, 0xfe, 1,    2,    3,    4,    0x80, 0, 0, 0, 0, 0,
                            0,    0,    0xbe, 0xef, 0x3f, 0xf8, 0,    0, 0, 0, 0, 0};
    assert_int_equal(w.pos, sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));
    struct kafka_reader r;
    kafka_reader_init(&r, buf, w.pos);
    int16_t a;
    int32_t b;
    int64_t c;
    uint16_t d;
    double e;
    assert_int_equal(kafka_read_int16(&r, &a), 0);
    assert_int_equal(kafka_read_int32(&r, &b), 0);
    assert_int_equal(kafka_read_int64(&r, &c), 0);
    assert_int_equal(kafka_read_uint16(&r, &d), 0);
    assert_int_equal(kafka_read_float64(&r, &e), 0);
    assert_int_equal(a, -2);
    assert_int_equal(b, 0x01020304);
    assert_true(c == INT64_MIN);
    assert_int_equal(d, 0xbeef);
    assert_true(e == 1.5);
    assert_int_equal(kafka_read_int8(&r, (int8_t *)&a), LM_E_TRUNCATED);
}

static void test_arena(void **state)
{
    (void)state;
    struct kafka_arena a;
    kafka_arena_init(&a, 10000);
    uint8_t *p = kafka_arena_alloc(&a, 3, 1);
    assert_non_null(p);
    uint64_t *q = kafka_arena_alloc(&a, 16, 8);
    assert_non_null(q);
    assert_int_equal((uintptr_t)q % 8, 0);
    assert_int_equal(q[0], 0); /* zeroed */
    /* more than the limit in one go */
    assert_null(kafka_arena_alloc(&a, 10000, 1));
    /* fill up to the limit, then fail */
    size_t got = 0;
    while (kafka_arena_alloc(&a, 100, 1) != NULL)
        got += 100;
    assert_true(got >= 9700 && got <= 10000);
    assert_true(a.used_bytes <= a.limit_bytes);
    assert_null(kafka_arena_alloc(&a, a.limit_bytes - a.used_bytes + 1, 1));
    assert_null(kafka_arena_alloc_array(&a, SIZE_MAX / 2, 4, 4)); /* overflow */
    kafka_arena_reset(&a);
    assert_int_equal(a.used_bytes, 0);
    assert_non_null(kafka_arena_alloc(&a, 9000, 16));
    kafka_arena_deinit(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_uvarint_boundaries),
        cmocka_unit_test(test_uvarlong_boundaries),
        cmocka_unit_test(test_overlong_varints),
        cmocka_unit_test(test_zigzag),
        cmocka_unit_test(test_null_handling),
        cmocka_unit_test(test_lengths_against_bytes_left),
        cmocka_unit_test(test_tag_sections),
        cmocka_unit_test(test_writer_overflow),
        cmocka_unit_test(test_fixed_ints_big_endian),
        cmocka_unit_test(test_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
