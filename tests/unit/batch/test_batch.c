/* Record batch v2: header parsing, validation of builder output for every codec, record
 * iteration, and rejection of malformed batches (never a crash, never a read past len). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "batch_test_util.h"
#include "protocol/compress.h"

#define MAX_UNCOMPRESSED (4u << 20)
#define STD_N            60

static const enum kafka_codec all_codecs[] = {
    KAFKA_CODEC_NONE, KAFKA_CODEC_GZIP, KAFKA_CODEC_SNAPPY, KAFKA_CODEC_LZ4, KAFKA_CODEC_ZSTD};
#define N_CODECS (sizeof(all_codecs) / sizeof(all_codecs[0]))

/* Iterates the batch and checks it holds exactly standard records 0..n-1. */
static void check_std_records(const struct kafka_batch_reader *r, int n)
{
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(r, &it);
    for (int i = 0; i < n; i++) {
        struct bt_rec want;
        bt_rec_make(&want, i);
        assert_int_equal(kafka_record_iter_next(&it, &rec), 1);
        assert_int_equal(rec.offset_delta, i);
        assert_int_equal(rec.attributes, 0);
        assert_int_equal(r->header.base_timestamp + rec.timestamp_delta, want.ts);
        assert_true(bt_bytes_eq(rec.key, rec.key_len, want.key, want.key_len));
        assert_true(bt_bytes_eq(rec.value, rec.value_len, want.value, want.value_len));
        assert_int_equal(rec.header_count, want.nh);
        struct kafka_header_iter hi;
        struct kafka_record_header h;
        kafka_record_headers(&rec, &hi);
        for (int j = 0; j < want.nh; j++) {
            assert_int_equal(kafka_header_iter_next(&hi, &h), 1);
            assert_true(bt_bytes_eq(h.key, h.key_len, want.hk[j], want.h[j].key_len));
            assert_true(bt_bytes_eq(h.value, h.value_len, want.hv[j], want.h[j].value_len));
        }
        assert_int_equal(kafka_header_iter_next(&hi, &h), 0);
    }
    assert_int_equal(kafka_record_iter_next(&it, &rec), 0);
}

static void test_header_parse(void **state)
{
    (void)state;
    size_t size;
    uint8_t *b = bt_build(KAFKA_CODEC_NONE, 5, &size);
    struct kafka_batch_header h;
    assert_int_equal(kafka_batch_header_parse(b, size, &h), 0);
    assert_int_equal(h.base_offset, 1000);
    assert_int_equal(kafka_batch_total_size(&h), size);
    assert_int_equal(h.partition_leader_epoch, -1);
    assert_int_equal(h.magic, 2);
    assert_int_equal(h.attributes, 0);
    assert_int_equal(h.last_offset_delta, 4);
    assert_int_equal(kafka_batch_last_offset(&h), 1004);
    assert_int_equal(h.base_timestamp, BT_BASE_TS);
    assert_int_equal(h.max_timestamp, BT_BASE_TS + 2 * 3 + 50); /* record 2 is the latest */
    assert_int_equal(h.producer_id, 77);
    assert_int_equal(h.producer_epoch, 3);
    assert_int_equal(h.base_sequence, 12);
    assert_int_equal(h.records_count, 5);
    assert_true(kafka_batch_crc_ok(b, &h));
    /* Only 61 bytes are needed to parse, whatever the batch claims. */
    assert_int_equal(kafka_batch_header_parse(b, KAFKA_BATCH_HEADER_SIZE, &h), 0);
    assert_int_equal(kafka_batch_header_parse(b, KAFKA_BATCH_HEADER_SIZE - 1, &h), LM_E_TRUNCATED);
    assert_int_equal(kafka_batch_header_parse(b, 0, &h), LM_E_TRUNCATED);
    b[KAFKA_BATCH_OFF_MAGIC] = 1;
    assert_int_equal(kafka_batch_header_parse(b, size, &h), LM_E_MAGIC);
    b[KAFKA_BATCH_OFF_MAGIC] = 2;
    bt_put32(b + KAFKA_BATCH_OFF_LENGTH, 48);
    assert_int_equal(kafka_batch_header_parse(b, size, &h), LM_E_CORRUPT);
    bt_put32(b + KAFKA_BATCH_OFF_LENGTH, 0xFFFFFFFFu);
    assert_int_equal(kafka_batch_header_parse(b, size, &h), LM_E_CORRUPT);
    bt_put32(b + KAFKA_BATCH_OFF_LENGTH, 49);
    assert_int_equal(kafka_batch_header_parse(b, size, &h), 0);
    free(b);
}

static void test_roundtrip_every_codec(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CODECS; c++) {
        size_t size;
        uint8_t *b = bt_build(all_codecs[c], STD_N, &size);
        struct kafka_batch_header h;
        assert_int_equal(bt_validate_exact(b, size, MAX_UNCOMPRESSED, &h), 0);
        assert_int_equal(kafka_batch_codec(&h), all_codecs[c]);
        assert_int_equal(h.records_count, STD_N);
        assert_int_equal(h.last_offset_delta, STD_N - 1);
        /* Trailing bytes after the batch are not part of it. */
        uint8_t *longer = malloc(size + 10);
        memcpy(longer, b, size);
        memset(longer + size, 0xAB, 10);
        assert_int_equal(kafka_batch_validate(longer, size + 10, MAX_UNCOMPRESSED, &h), 0);
        free(longer);

        struct kafka_batch_reader r;
        assert_int_equal(kafka_batch_reader_open(&r, b, size, MAX_UNCOMPRESSED), 0);
        assert_true(all_codecs[c] == KAFKA_CODEC_NONE ? r.owned == NULL : r.owned != NULL);
        check_std_records(&r, STD_N);
        kafka_batch_reader_close(&r);

        uint8_t *scratch = malloc(MAX_UNCOMPRESSED);
        assert_int_equal(kafka_batch_reader_open_buf(&r, b, size, scratch, MAX_UNCOMPRESSED), 0);
        check_std_records(&r, STD_N);
        size_t uncompressed = r.records_size;
        kafka_batch_reader_close(&r);
        if (all_codecs[c] != KAFKA_CODEC_NONE) {
            /* One byte short of the records section is too large; exact fit is fine. */
            assert_int_equal(kafka_batch_reader_open_buf(&r, b, size, scratch, uncompressed - 1),
                             LM_E_TOO_LARGE);
            assert_int_equal(kafka_batch_reader_open_buf(&r, b, size, scratch, uncompressed), 0);
            kafka_batch_reader_close(&r);
            assert_int_equal(bt_validate_exact(b, size, uncompressed - 1, &h), LM_E_TOO_LARGE);
            assert_int_equal(bt_validate_exact(b, size, uncompressed, &h), 0);
            assert_int_equal(kafka_batch_validate_buf(b, size, scratch, uncompressed - 1, &h),
                             LM_E_TOO_LARGE);
            assert_int_equal(kafka_batch_validate_buf(b, size, scratch, uncompressed, &h), 0);
        }
        free(scratch);
        free(b);
    }
}

static void test_empty_and_control_batches(void **state)
{
    (void)state;
    struct kafka_batch_builder b;
    uint8_t *out;
    size_t size;
    struct kafka_batch_header h;
    kafka_batch_builder_init(&b, 5, BT_BASE_TS);
    assert_int_equal(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &out, &size), 0);
    kafka_batch_builder_deinit(&b);
    assert_int_equal(size, KAFKA_BATCH_HEADER_SIZE);
    assert_int_equal(bt_validate_exact(out, size, MAX_UNCOMPRESSED, &h), 0);
    assert_int_equal(h.records_count, 0);
    assert_int_equal(h.max_timestamp, -1);
    free(out);

    /* A transaction commit marker (KIP-98), as the broker writes it. */
    uint8_t key[4], value[6];
    kafka_control_record_encode(KAFKA_CONTROL_COMMIT, 9, key, value);
    kafka_batch_builder_init(&b, 40, BT_BASE_TS);
    b.attributes = KAFKA_BATCH_ATTR_CONTROL | KAFKA_BATCH_ATTR_TRANSACTIONAL;
    b.producer_id = 1234;
    b.producer_epoch = 2;
    assert_int_equal(kafka_batch_builder_append(&b, BT_BASE_TS, key, 4, value, 6, NULL, 0), 0);
    assert_int_equal(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &out, &size), 0);
    kafka_batch_builder_deinit(&b);
    assert_int_equal(bt_validate_exact(out, size, MAX_UNCOMPRESSED, &h), 0);
    assert_int_equal(h.attributes, KAFKA_BATCH_ATTR_CONTROL | KAFKA_BATCH_ATTR_TRANSACTIONAL);
    struct kafka_batch_reader r;
    assert_int_equal(kafka_batch_reader_open(&r, out, size, MAX_UNCOMPRESSED), 0);
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(&r, &it);
    assert_int_equal(kafka_record_iter_next(&it, &rec), 1);
    static const uint8_t want_key[4] = {0, 0, 0, 1};
    static const uint8_t want_value[6] = {0, 0, 0, 0, 0, 9};
    assert_int_equal(rec.key_len, 4);
    assert_memory_equal(rec.key, want_key, 4);
    assert_int_equal(rec.value_len, 6);
    assert_memory_equal(rec.value, want_value, 6);
    assert_int_equal(kafka_record_iter_next(&it, &rec), 0);
    kafka_batch_reader_close(&r);
    free(out);
}

/* Extreme timestamps and offset gaps (as after compaction) round-trip; 10-byte varlongs. */
static void test_extremes_and_gaps(void **state)
{
    (void)state;
    struct kafka_batch_builder b;
    uint8_t *out;
    size_t size;
    struct kafka_batch_header h;
    kafka_batch_builder_init(&b, 0, 0);
    assert_int_equal(kafka_batch_builder_append_at(&b, 0, INT64_MIN, "a", 1, "b", 1, NULL, 0), 0);
    assert_int_equal(kafka_batch_builder_append_at(&b, 7, INT64_MAX, NULL, -1, NULL, -1, NULL, 0),
                     0);
    assert_int_equal(kafka_batch_builder_append_at(&b, 7, 0, NULL, -1, NULL, -1, NULL, 0),
                     LM_E_INVALID);
    assert_int_equal(kafka_batch_builder_append_at(&b, INT32_MAX, 0, NULL, -1, NULL, -1, NULL, 0),
                     0);
    assert_int_equal(kafka_batch_builder_append(&b, 0, NULL, -1, NULL, -1, NULL, 0),
                     LM_E_TOO_LARGE);
    assert_int_equal(kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &out, &size), 0);
    kafka_batch_builder_deinit(&b);
    assert_int_equal(bt_validate_exact(out, size, MAX_UNCOMPRESSED, &h), 0);
    assert_int_equal(h.last_offset_delta, INT32_MAX);
    assert_int_equal(h.max_timestamp, INT64_MAX);
    struct kafka_batch_reader r;
    assert_int_equal(kafka_batch_reader_open(&r, out, size, MAX_UNCOMPRESSED), 0);
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(&r, &it);
    assert_int_equal(kafka_record_iter_next(&it, &rec), 1);
    assert_int_equal(rec.timestamp_delta, INT64_MIN);
    assert_int_equal(kafka_record_iter_next(&it, &rec), 1);
    assert_int_equal(rec.offset_delta, 7);
    assert_int_equal(rec.timestamp_delta, INT64_MAX);
    assert_null(rec.key);
    assert_int_equal(rec.key_len, -1);
    assert_null(rec.value);
    assert_int_equal(kafka_record_iter_next(&it, &rec), 1);
    assert_int_equal(rec.offset_delta, INT32_MAX);
    assert_int_equal(kafka_record_iter_next(&it, &rec), 0);
    kafka_batch_reader_close(&r);
    free(out);
}

static void test_builder_rejects_bad_input(void **state)
{
    (void)state;
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, 0);
    struct kafka_record_header nullkey = {NULL, -1, NULL, -1};
    assert_int_equal(kafka_batch_builder_append(&b, 0, "k", -2, NULL, -1, NULL, 0), LM_E_INVALID);
    assert_int_equal(kafka_batch_builder_append(&b, 0, NULL, 3, NULL, -1, NULL, 0), LM_E_INVALID);
    assert_int_equal(kafka_batch_builder_append(&b, 0, NULL, -1, NULL, -1, &nullkey, 1),
                     LM_E_INVALID);
    assert_int_equal(kafka_batch_builder_append(&b, 0, NULL, -1, NULL, -1, NULL, -1), LM_E_INVALID);
    assert_int_equal(b.count, 0);
    uint8_t *out = NULL;
    size_t size;
    assert_int_equal(kafka_batch_builder_finish(&b, (enum kafka_codec)5, &out, &size),
                     LM_E_INVALID);
    assert_null(out);
    kafka_batch_builder_deinit(&b);
}

/* Every prefix of a batch is rejected, both as is (the length says more bytes follow) and with
 * batchLength and CRC rewritten to match the prefix (the records no longer add up). */
static void test_truncated_at_every_byte(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CODECS; c++) {
        size_t size;
        uint8_t *b = bt_build(all_codecs[c], 12, &size);
        struct kafka_batch_header h;
        for (size_t len = 0; len < size; len++) {
            int rc = bt_validate_exact(b, len, MAX_UNCOMPRESSED, &h);
            assert_int_equal(rc, LM_E_TRUNCATED);
        }
        uint8_t *cut = malloc(size);
        for (size_t len = KAFKA_BATCH_HEADER_SIZE; len < size; len++) {
            memcpy(cut, b, len);
            bt_put32(cut + KAFKA_BATCH_OFF_LENGTH, (uint32_t)(len - KAFKA_BATCH_LOG_OVERHEAD));
            bt_fix_crc(cut, len);
            int rc = bt_validate_exact(cut, len, MAX_UNCOMPRESSED, &h);
            if (all_codecs[c] == KAFKA_CODEC_NONE)
                assert_true(rc == LM_E_CORRUPT || rc == LM_E_TRUNCATED);
            else
                assert_true(rc == LM_E_COMPRESSION || rc == LM_E_CORRUPT);
        }
        free(cut);
        free(b);
    }
}

static void test_bad_crc_and_magic(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CODECS; c++) {
        size_t size;
        uint8_t *b = bt_build(all_codecs[c], 8, &size);
        struct kafka_batch_header h;
        for (size_t i = KAFKA_BATCH_OFF_CRC; i < size; i++) {
            b[i] ^= 0x10;
            assert_int_equal(bt_validate_exact(b, size, MAX_UNCOMPRESSED, &h), LM_E_CRC);
            b[i] ^= 0x10;
        }
        /* baseOffset and partitionLeaderEpoch are outside the CRC (set by the broker). */
        kafka_batch_set_base_offset(b, 123456789);
        kafka_batch_set_leader_epoch(b, 42);
        assert_int_equal(bt_validate_exact(b, size, MAX_UNCOMPRESSED, &h), 0);
        assert_int_equal(h.base_offset, 123456789);
        assert_int_equal(h.partition_leader_epoch, 42);
        for (int m = -128; m < 128; m++) {
            if (m == 2)
                continue;
            b[KAFKA_BATCH_OFF_MAGIC] = (uint8_t)m;
            assert_int_equal(bt_validate_exact(b, size, MAX_UNCOMPRESSED, &h), LM_E_MAGIC);
        }
        free(b);
    }
}

static void test_log_append_time(void **state)
{
    (void)state;
    size_t size;
    uint8_t *b = bt_build(KAFKA_CODEC_LZ4, 8, &size);
    struct kafka_batch_header h;
    kafka_batch_set_log_append_time(b, size, 1800000000000LL);
    assert_int_equal(bt_validate_exact(b, size, MAX_UNCOMPRESSED, &h), 0);
    assert_int_equal(h.max_timestamp, 1800000000000LL);
    assert_int_equal(h.attributes, KAFKA_BATCH_ATTR_LOG_APPEND_TIME | KAFKA_CODEC_LZ4);
    free(b);
}

static void test_length_and_count_disagree(void **state)
{
    (void)state;
    for (size_t c = 0; c < N_CODECS; c++) {
        size_t size;
        uint8_t *b = bt_build(all_codecs[c], 10, &size);
        struct kafka_batch_header h;
        uint8_t *big = calloc(1, size + 16);
        memcpy(big, b, size);
        /* batchLength beyond the bytes given. */
        bt_put32(big + KAFKA_BATCH_OFF_LENGTH, (uint32_t)(size - 12 + 1));
        assert_int_equal(bt_validate_exact(big, size, MAX_UNCOMPRESSED, &h), LM_E_TRUNCATED);
        /* batchLength claiming trailing zero bytes, CRC made to match. */
        for (size_t extra = 1; extra <= 16; extra++) {
            memcpy(big, b, size);
            memset(big + size, 0, 16);
            bt_put32(big + KAFKA_BATCH_OFF_LENGTH, (uint32_t)(size - 12 + extra));
            bt_fix_crc(big, size + extra);
            int rc = bt_validate_exact(big, size + extra, MAX_UNCOMPRESSED, &h);
            assert_true(rc == LM_E_CORRUPT || rc == LM_E_COMPRESSION);
        }
        /* recordsCount one more, one less, zero, negative. */
        static const int32_t counts[] = {11, 9, 0, -1, INT32_MIN, INT32_MAX};
        for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
            memcpy(big, b, size);
            bt_put32(big + KAFKA_BATCH_OFF_RECORDS_COUNT, (uint32_t)counts[k]);
            bt_fix_crc(big, size);
            assert_int_equal(bt_validate_exact(big, size, MAX_UNCOMPRESSED, &h), LM_E_CORRUPT);
        }
        /* lastOffsetDelta below the last record's delta. */
        memcpy(big, b, size);
        bt_put32(big + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA, 8);
        bt_fix_crc(big, size);
        assert_int_equal(bt_validate_exact(big, size, MAX_UNCOMPRESSED, &h), LM_E_CORRUPT);
        /* Unknown codecs 5..7. */
        for (int codec = 5; codec <= 7; codec++) {
            memcpy(big, b, size);
            big[KAFKA_BATCH_OFF_ATTRIBUTES + 1] = (uint8_t)codec;
            bt_fix_crc(big, size);
            assert_int_equal(bt_validate_exact(big, size, MAX_UNCOMPRESSED, &h), LM_E_COMPRESSION);
        }
        free(big);
        free(b);
    }
}

/* ---- hand-made records sections ---- */

struct sec {
    uint8_t b[512];
    size_t n;
};

static void sec_raw(struct sec *s, const void *p, size_t n)
{
    assert_true(s->n + n <= sizeof(s->b));
    memcpy(s->b + s->n, p, n);
    s->n += n;
}

static void sec_varlong(struct sec *s, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    do {
        uint8_t byte = (uint8_t)(z & 0x7F);
        z >>= 7;
        if (z)
            byte |= 0x80;
        sec_raw(s, &byte, 1);
    } while (z);
}

/* A well-formed record body: attributes, ts delta, offset delta, key, value, no headers. */
static void sec_body(struct sec *s, int32_t delta, const char *key, const char *value)
{
    uint8_t zero = 0;
    sec_raw(s, &zero, 1);
    sec_varlong(s, 5);
    sec_varlong(s, delta);
    sec_varlong(s, (int64_t)strlen(key));
    sec_raw(s, key, strlen(key));
    sec_varlong(s, (int64_t)strlen(value));
    sec_raw(s, value, strlen(value));
    sec_varlong(s, 0);
}

static void sec_record(struct sec *s, int32_t delta, const char *key, const char *value)
{
    struct sec body = {.n = 0};
    sec_body(&body, delta, key, value);
    sec_varlong(s, (int64_t)body.n);
    sec_raw(s, body.b, body.n);
}

/* Wraps a records section in a batch header with a correct CRC and validates it. */
static int validate_section(const struct sec *s, int32_t count, int32_t last_delta)
{
    size_t total = KAFKA_BATCH_HEADER_SIZE + s->n;
    uint8_t *b = calloc(1, total);
    bt_put32(b + KAFKA_BATCH_OFF_LENGTH, (uint32_t)(total - KAFKA_BATCH_LOG_OVERHEAD));
    b[KAFKA_BATCH_OFF_MAGIC] = 2;
    bt_put32(b + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)last_delta);
    bt_put32(b + KAFKA_BATCH_OFF_RECORDS_COUNT, (uint32_t)count);
    memcpy(b + KAFKA_BATCH_HEADER_SIZE, s->b, s->n);
    bt_fix_crc(b, total);
    struct kafka_batch_header h;
    int rc = bt_validate_exact(b, total, MAX_UNCOMPRESSED, &h);
    free(b);
    return rc;
}

static void test_handmade_sections(void **state)
{
    (void)state;
    struct sec s = {.n = 0};
    sec_record(&s, 0, "k", "v");
    sec_record(&s, 1, "", "value");
    assert_int_equal(validate_section(&s, 2, 1), 0);
    assert_int_equal(validate_section(&s, 2, 0), LM_E_CORRUPT); /* delta 1 > last 0 */
    assert_int_equal(validate_section(&s, 2, 5), 0); /* trailing deltas dropped by compaction */

    /* Offset deltas equal, decreasing, negative. */
    s.n = 0;
    sec_record(&s, 0, "a", "b");
    sec_record(&s, 0, "a", "b");
    assert_int_equal(validate_section(&s, 2, 1), LM_E_CORRUPT);
    s.n = 0;
    sec_record(&s, 1, "a", "b");
    sec_record(&s, 0, "a", "b");
    assert_int_equal(validate_section(&s, 2, 1), LM_E_CORRUPT);
    s.n = 0;
    sec_record(&s, -1, "a", "b");
    assert_int_equal(validate_section(&s, 1, 1), LM_E_CORRUPT);
    /* Gap: 0 then 2. */
    s.n = 0;
    sec_record(&s, 0, "a", "b");
    sec_record(&s, 2, "a", "b");
    assert_int_equal(validate_section(&s, 2, 2), 0);

    /* Record length: negative, zero, past the end, longer and shorter than its fields. */
    struct sec body = {.n = 0};
    sec_body(&body, 0, "key", "val");
    int64_t lens[] = {-1, INT32_MIN, 0, (int64_t)body.n + 1, (int64_t)body.n - 1, 1};
    int want[] = {LM_E_CORRUPT,   LM_E_CORRUPT, LM_E_CORRUPT,
                  LM_E_TRUNCATED, LM_E_CORRUPT, LM_E_CORRUPT};
    for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
        s.n = 0;
        sec_varlong(&s, lens[i]);
        sec_raw(&s, body.b, body.n);
        assert_int_equal(validate_section(&s, 1, 0), want[i]);
    }
    /* Longer than its fields with the extra byte present: trailing garbage in the record. */
    s.n = 0;
    sec_varlong(&s, (int64_t)body.n + 1);
    sec_raw(&s, body.b, body.n);
    sec_raw(&s, "x", 1);
    assert_int_equal(validate_section(&s, 1, 0), LM_E_CORRUPT);
}

/* Builds a record from explicit pieces after the offset delta (for field-level corruption). */
static int validate_fields(const struct sec *tail)
{
    struct sec body = {.n = 0}, s = {.n = 0};
    uint8_t zero = 0;
    sec_raw(&body, &zero, 1);
    sec_varlong(&body, 0); /* ts delta */
    sec_varlong(&body, 0); /* offset delta */
    sec_raw(&body, tail->b, tail->n);
    sec_varlong(&s, (int64_t)body.n);
    sec_raw(&s, body.b, body.n);
    return validate_section(&s, 1, 0);
}

static void test_field_lengths(void **state)
{
    (void)state;
    struct sec t;
    /* key -1 null, value -1 null, 0 headers: fine. */
    t.n = 0;
    sec_varlong(&t, -1);
    sec_varlong(&t, -1);
    sec_varlong(&t, 0);
    assert_int_equal(validate_fields(&t), 0);
    /* key length -2 / INT32_MIN. */
    int32_t bad_lens[] = {-2, INT32_MIN, 4, INT32_MAX};
    for (size_t i = 0; i < sizeof(bad_lens) / sizeof(bad_lens[0]); i++) {
        t.n = 0;
        sec_varlong(&t, bad_lens[i]);
        sec_raw(&t, "abc", 3);
        sec_varlong(&t, -1);
        sec_varlong(&t, 0);
        assert_int_equal(validate_fields(&t), LM_E_CORRUPT);
        t.n = 0; /* same for the value */
        sec_varlong(&t, -1);
        sec_varlong(&t, bad_lens[i]);
        sec_raw(&t, "abc", 3);
        sec_varlong(&t, 0);
        assert_int_equal(validate_fields(&t), LM_E_CORRUPT);
    }
    /* Header count negative, larger than possible, one more than present. */
    int32_t counts[] = {-1, INT32_MAX, 2};
    for (size_t i = 0; i < sizeof(counts) / sizeof(counts[0]); i++) {
        t.n = 0;
        sec_varlong(&t, -1);
        sec_varlong(&t, -1);
        sec_varlong(&t, counts[i]);
        sec_varlong(&t, 1);
        sec_raw(&t, "h", 1);
        sec_varlong(&t, -1);
        assert_int_equal(validate_fields(&t), LM_E_CORRUPT);
    }
    /* A header with a null key (not allowed, KIP-82), then a correct one. */
    t.n = 0;
    sec_varlong(&t, -1);
    sec_varlong(&t, -1);
    sec_varlong(&t, 1);
    sec_varlong(&t, -1);
    sec_varlong(&t, -1);
    assert_int_equal(validate_fields(&t), LM_E_CORRUPT);
    t.n = 0;
    sec_varlong(&t, -1);
    sec_varlong(&t, -1);
    sec_varlong(&t, 1);
    sec_varlong(&t, 1);
    sec_raw(&t, "h", 1);
    sec_varlong(&t, -1);
    assert_int_equal(validate_fields(&t), 0);
    /* Header value length -2. */
    t.n = 0;
    sec_varlong(&t, -1);
    sec_varlong(&t, -1);
    sec_varlong(&t, 1);
    sec_varlong(&t, 1);
    sec_raw(&t, "h", 1);
    sec_varlong(&t, -2);
    assert_int_equal(validate_fields(&t), LM_E_CORRUPT);
}

static void test_overlong_varints(void **state)
{
    (void)state;
    struct sec s;
    /* Record length as a 6-byte varint. */
    static const uint8_t six[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    s.n = 0;
    sec_raw(&s, six, sizeof(six));
    assert_int_equal(validate_section(&s, 1, 0), LM_E_VARINT);
    /* 5-byte varint whose last byte carries bits beyond 32. */
    static const uint8_t fifth[] = {0x82, 0x80, 0x80, 0x80, 0x10};
    s.n = 0;
    sec_raw(&s, fifth, sizeof(fifth));
    assert_int_equal(validate_section(&s, 1, 0), LM_E_VARINT);
    /* A non-minimal but in-range 5-byte encoding of a valid length is accepted, as Kafka does. */
    struct sec body = {.n = 0};
    sec_body(&body, 0, "k", "v");
    assert_true(body.n < 0x40);
    uint8_t five[5] = {(uint8_t)((body.n << 1) | 0x80), 0x80, 0x80, 0x80, 0x00};
    s.n = 0;
    sec_raw(&s, five, sizeof(five));
    sec_raw(&s, body.b, body.n);
    assert_int_equal(validate_section(&s, 1, 0), 0);
    /* Timestamp delta as an 11-byte varlong, and as 10 bytes with an overflowing last byte. */
    static const uint8_t eleven[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x00};
    static const uint8_t ten_bad[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x02};
    static const uint8_t ten_ok[] = {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    const uint8_t *ts[] = {eleven, ten_bad, ten_ok};
    size_t ts_len[] = {sizeof(eleven), sizeof(ten_bad), sizeof(ten_ok)};
    int want[] = {LM_E_VARINT, LM_E_VARINT, 0};
    for (size_t i = 0; i < 3; i++) {
        body.n = 0;
        uint8_t zero = 0;
        sec_raw(&body, &zero, 1);
        sec_raw(&body, ts[i], ts_len[i]);
        sec_varlong(&body, 0);
        sec_varlong(&body, -1);
        sec_varlong(&body, -1);
        sec_varlong(&body, 0);
        s.n = 0;
        sec_varlong(&s, (int64_t)body.n);
        sec_raw(&s, body.b, body.n);
        assert_int_equal(validate_section(&s, 1, 0), want[i]);
    }
    /* A varint cut off by the end of the record body (continuation bit on the last byte). */
    body.n = 0;
    uint8_t zero = 0, cont = 0x80;
    sec_raw(&body, &zero, 1);
    sec_raw(&body, &cont, 1);
    s.n = 0;
    sec_varlong(&s, (int64_t)body.n);
    sec_raw(&s, body.b, body.n);
    assert_int_equal(validate_section(&s, 1, 0), LM_E_CORRUPT);
}

/* Compressed payload corruption: every byte flipped (CRC fixed so decompression runs). The
 * result may be an error or, where the codec has no checksum, different records; but it never
 * crashes, and whenever validate accepts, iteration reads every record cleanly. */
static void test_corrupted_compressed(void **state)
{
    (void)state;
    for (size_t c = 1; c < N_CODECS; c++) {
        size_t size;
        uint8_t *b = bt_build(all_codecs[c], 12, &size);
        uint8_t *m = malloc(size);
        int rejected = 0;
        for (size_t i = KAFKA_BATCH_HEADER_SIZE; i < size; i++) {
            static const uint8_t flips[] = {0x01, 0x80, 0xFF};
            for (size_t f = 0; f < sizeof(flips); f++) {
                memcpy(m, b, size);
                m[i] ^= flips[f];
                bt_fix_crc(m, size);
                struct kafka_batch_header h;
                int rc = bt_validate_exact(m, size, MAX_UNCOMPRESSED, &h);
                static uint8_t scratch[MAX_UNCOMPRESSED];
                assert_int_equal(kafka_batch_validate_buf(m, size, scratch, MAX_UNCOMPRESSED, &h),
                                 rc);
                if (rc < 0) {
                    assert_true(rc == LM_E_COMPRESSION || rc == LM_E_CORRUPT ||
                                rc == LM_E_TOO_LARGE || rc == LM_E_VARINT || rc == LM_E_TRUNCATED);
                    rejected++;
                    continue;
                }
                struct kafka_batch_reader r;
                assert_int_equal(kafka_batch_reader_open(&r, m, size, MAX_UNCOMPRESSED), 0);
                struct kafka_record_iter it;
                struct kafka_record rec;
                kafka_batch_reader_iter(&r, &it);
                int n = 0, rr;
                while ((rr = kafka_record_iter_next(&it, &rec)) == 1)
                    n++;
                assert_int_equal(rr, 0);
                assert_int_equal(n, h.records_count);
                kafka_batch_reader_close(&r);
            }
        }
        assert_true(rejected > 0);
        free(m);
        free(b);
    }
}

/* Random multi-byte mutations of an uncompressed batch with the CRC fixed: validate and the
 * iterator agree, nothing crashes. Deterministic seed. */
static void test_random_mutations(void **state)
{
    (void)state;
    size_t size;
    uint8_t *b = bt_build(KAFKA_CODEC_NONE, 20, &size);
    uint8_t *m = malloc(size);
    uint32_t seed = 0xC0FFEEu;
    int accepted = 0;
    for (int iter = 0; iter < 4000; iter++) {
        memcpy(m, b, size);
        int flips = 1 + iter % 4;
        for (int k = 0; k < flips; k++) {
            seed = seed * 1664525u + 1013904223u;
            size_t pos = KAFKA_BATCH_OFF_ATTRIBUTES + 2 + (seed >> 8) % (size - 23);
            seed = seed * 1664525u + 1013904223u;
            m[pos] = (uint8_t)(seed >> 24);
        }
        bt_fix_crc(m, size);
        struct kafka_batch_header h;
        int rc = bt_validate_exact(m, size, MAX_UNCOMPRESSED, &h);
        uint8_t scratch[16];
        assert_int_equal(kafka_batch_validate_buf(m, size, scratch, sizeof(scratch), &h), rc);
        struct kafka_batch_reader r;
        int orc = kafka_batch_reader_open(&r, m, size, MAX_UNCOMPRESSED);
        if (orc < 0) {
            assert_true(rc < 0);
            continue;
        }
        struct kafka_record_iter it;
        struct kafka_record rec;
        kafka_batch_reader_iter(&r, &it);
        int rr;
        while ((rr = kafka_record_iter_next(&it, &rec)) == 1) {
            struct kafka_header_iter hi;
            struct kafka_record_header hh;
            kafka_record_headers(&rec, &hi);
            int hr;
            while ((hr = kafka_header_iter_next(&hi, &hh)) == 1)
                ;
            assert_int_equal(hr, 0); /* headers were checked when the record was read */
        }
        if (rc == 0) {
            assert_int_equal(rr, 0);
            accepted++;
        } else if (rr == 0) {
            /* Framing fine: the offset deltas must be what validate rejected. */
            assert_int_equal(rc, LM_E_CORRUPT);
        }
        kafka_batch_reader_close(&r);
    }
    /* Mutations of values and keys alone keep the batch valid: some must be accepted. */
    assert_true(accepted > 0);
    free(m);
    free(b);
}

/* A records section that decompresses far beyond the limit is refused for every codec. */
static void test_decompression_bomb(void **state)
{
    (void)state;
    static char zeros[64 * 1024];
    for (size_t c = 1; c < N_CODECS; c++) {
        struct kafka_batch_builder b;
        kafka_batch_builder_init(&b, 0, 0);
        for (int i = 0; i < 64; i++) /* 4 MiB of zero values */
            assert_int_equal(
                kafka_batch_builder_append(&b, 0, NULL, -1, zeros, sizeof(zeros), NULL, 0), 0);
        uint8_t *out;
        size_t size;
        assert_int_equal(kafka_batch_builder_finish(&b, all_codecs[c], &out, &size), 0);
        kafka_batch_builder_deinit(&b);
        assert_true(size < (1u << 20));
        struct kafka_batch_header h;
        assert_int_equal(bt_validate_exact(out, size, 1u << 20, &h), LM_E_TOO_LARGE);
        assert_int_equal(bt_validate_exact(out, size, 8u << 20, &h), 0);
        struct kafka_batch_reader r;
        assert_int_equal(kafka_batch_reader_open(&r, out, size, 64 * 1024), LM_E_TOO_LARGE);
        assert_null(r.owned);
        free(out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_parse),
        cmocka_unit_test(test_roundtrip_every_codec),
        cmocka_unit_test(test_empty_and_control_batches),
        cmocka_unit_test(test_extremes_and_gaps),
        cmocka_unit_test(test_builder_rejects_bad_input),
        cmocka_unit_test(test_truncated_at_every_byte),
        cmocka_unit_test(test_bad_crc_and_magic),
        cmocka_unit_test(test_log_append_time),
        cmocka_unit_test(test_length_and_count_disagree),
        cmocka_unit_test(test_handmade_sections),
        cmocka_unit_test(test_field_lengths),
        cmocka_unit_test(test_overlong_varints),
        cmocka_unit_test(test_corrupted_compressed),
        cmocka_unit_test(test_random_mutations),
        cmocka_unit_test(test_decompression_bomb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
