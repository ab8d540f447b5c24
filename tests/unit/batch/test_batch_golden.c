/* Golden record batches written by librdkafka 2.0.2 (captured by golden/capture_golden.py,
 * see golden/README.md), one per codec: they validate, their CRC matches on both CRC paths,
 * and their records iterate back exactly as produced. The uncompressed one is also rebuilt
 * byte for byte by our builder. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "batch_test_util.h"

#define GOLDEN_BASE_TS 1700000000000LL

static const char *golden_dir;

struct golden_header {
    const char *key;
    const char *value; /* NULL: null value */
};

struct golden_record {
    const char *key; /* NULL: null key */
    const char *value;
    int32_t value_len; /* -1 null; else length of value (the long one is built at run time) */
    int nh;
    struct golden_header h[2];
};

/* Must match RECORDS in golden/capture_golden.py. */
static char long_value[2101];
static const struct golden_record golden[5] = {
    {"k1", "v1", 2, 2, {{"h1", "x"}, {"h2", NULL}}},
    {NULL, "value-2", 7, 0, {{0}}},
    {"k3", NULL, -1, 0, {{0}}},
    {"", "", 0, 1, {{"empty", ""}}},
    {"k5", long_value, 2100, 0, {{0}}},
};

/* Reads golden/<name>.hex (hex digits, newlines ignored) into a malloc'd buffer. */
static uint8_t *read_hex(const char *name, size_t *size)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s.hex", golden_dir, name);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        fail_msg("cannot open %s", path);
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    int c, hi = -1;
    while ((c = fgetc(f)) != EOF) {
        int v = 0;
        if (c >= '0' && c <= '9')
            v = c - '0';
        else if (c >= 'a' && c <= 'f')
            v = c - 'a' + 10;
        else if (c == '\n' || c == '\r')
            continue;
        else
            fail_msg("bad character in %s", path);
        if (hi < 0) {
            hi = v;
            continue;
        }
        if (n == cap)
            buf = realloc(buf, cap *= 2);
        buf[n++] = (uint8_t)(hi << 4 | v);
        hi = -1;
    }
    fclose(f);
    assert_int_equal(hi, -1);
    *size = n;
    return buf;
}

static void check_golden(const char *name, enum kafka_codec codec)
{
    size_t size;
    uint8_t *b = read_hex(name, &size);
    struct kafka_batch_header h;
    assert_int_equal(bt_validate_exact(b, size, 1u << 20, &h), 0);
    assert_int_equal(kafka_batch_total_size(&h), size);
    assert_int_equal(kafka_batch_codec(&h), codec);
    assert_int_equal(h.records_count, 5);
    assert_int_equal(h.last_offset_delta, 4);
    assert_int_equal(h.base_timestamp, GOLDEN_BASE_TS + 1);
    assert_int_equal(h.max_timestamp, GOLDEN_BASE_TS + 5);
    assert_int_equal(h.producer_id, -1);
    uint32_t table = crc32c_update_table(0, b + 21, size - 21);
    assert_int_equal(table, h.crc);
    if (crc32c_hw_available())
        assert_int_equal(crc32c_update_hw(0, b + 21, size - 21), h.crc);

    struct kafka_batch_reader r;
    assert_int_equal(kafka_batch_reader_open(&r, b, size, 1u << 20), 0);
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(&r, &it);
    for (int i = 0; i < 5; i++) {
        const struct golden_record *g = &golden[i];
        assert_int_equal(kafka_record_iter_next(&it, &rec), 1);
        assert_int_equal(rec.offset_delta, i);
        assert_int_equal(h.base_timestamp + rec.timestamp_delta, GOLDEN_BASE_TS + 1 + i);
        assert_true(
            bt_bytes_eq(rec.key, rec.key_len, g->key, g->key ? (int32_t)strlen(g->key) : -1));
        assert_true(bt_bytes_eq(rec.value, rec.value_len, g->value, g->value_len));
        assert_int_equal(rec.header_count, g->nh);
        struct kafka_header_iter hi;
        struct kafka_record_header hd;
        kafka_record_headers(&rec, &hi);
        for (int j = 0; j < g->nh; j++) {
            assert_int_equal(kafka_header_iter_next(&hi, &hd), 1);
            assert_true(bt_bytes_eq(hd.key, hd.key_len, g->h[j].key, (int32_t)strlen(g->h[j].key)));
            assert_true(bt_bytes_eq(hd.value, hd.value_len, g->h[j].value,
                                    g->h[j].value ? (int32_t)strlen(g->h[j].value) : -1));
        }
        assert_int_equal(kafka_header_iter_next(&hi, &hd), 0);
    }
    assert_int_equal(kafka_record_iter_next(&it, &rec), 0);
    kafka_batch_reader_close(&r);

    /* A flipped bit in the real batch is caught by the CRC. */
    b[size / 2] ^= 0x04;
    assert_int_equal(bt_validate_exact(b, size, 1u << 20, &h), LM_E_CRC);
    free(b);
}

static void test_golden_none(void **state)
{
    (void)state;
    check_golden("none", KAFKA_CODEC_NONE);
}

static void test_golden_gzip(void **state)
{
    (void)state;
    check_golden("gzip", KAFKA_CODEC_GZIP);
}

static void test_golden_snappy(void **state)
{
    (void)state;
    check_golden("snappy", KAFKA_CODEC_SNAPPY); /* librdkafka writes raw snappy */
}

static void test_golden_lz4(void **state)
{
    (void)state;
    check_golden("lz4", KAFKA_CODEC_LZ4);
}

static void test_golden_zstd(void **state)
{
    (void)state;
    check_golden("zstd", KAFKA_CODEC_ZSTD);
}

/* Our builder, given the same records and header fields, writes librdkafka's bytes exactly. */
static void test_builder_matches_librdkafka(void **state)
{
    (void)state;
    size_t size;
    uint8_t *want = read_hex("none", &size);
    struct kafka_batch_header wh;
    assert_int_equal(kafka_batch_header_parse(want, size, &wh), 0);
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, wh.base_offset, wh.base_timestamp);
    b.partition_leader_epoch = wh.partition_leader_epoch;
    for (int i = 0; i < 5; i++) {
        const struct golden_record *g = &golden[i];
        struct kafka_record_header hs[2];
        for (int j = 0; j < g->nh; j++) {
            hs[j].key = (const uint8_t *)g->h[j].key;
            hs[j].key_len = (int32_t)strlen(g->h[j].key);
            hs[j].value = (const uint8_t *)g->h[j].value;
            hs[j].value_len = g->h[j].value ? (int32_t)strlen(g->h[j].value) : -1;
        }
        assert_int_equal(kafka_batch_builder_append(&b, GOLDEN_BASE_TS + 1 + i, g->key,
                                                    g->key ? (int32_t)strlen(g->key) : -1, g->value,
                                                    g->value_len, hs, g->nh),
                         0);
    }
    uint8_t *got;
    size_t got_size;
    assert_int_equal(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &got, &got_size), 0);
    kafka_batch_builder_deinit(&b);
    assert_int_equal(got_size, size);
    assert_memory_equal(got, want, size);
    free(got);
    free(want);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s GOLDEN_DIR\n", argv[0]);
        return 2;
    }
    golden_dir = argv[1];
    for (int i = 0; i < 2100; i++)
        long_value[i] = "abc"[i % 3];
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_none),   cmocka_unit_test(test_golden_gzip),
        cmocka_unit_test(test_golden_snappy), cmocka_unit_test(test_golden_lz4),
        cmocka_unit_test(test_golden_zstd),   cmocka_unit_test(test_builder_matches_librdkafka),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
