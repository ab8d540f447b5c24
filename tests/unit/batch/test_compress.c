/* Compression codecs: round trips, exact output limits, snappy raw and xerial framing,
 * concatenated members/frames, garbage and truncated input, decompression bombs. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "protocol/compress.h"

static const enum kafka_codec codecs[] = {KAFKA_CODEC_NONE, KAFKA_CODEC_GZIP, KAFKA_CODEC_SNAPPY,
                                          KAFKA_CODEC_LZ4, KAFKA_CODEC_ZSTD};
#define N_CODECS (sizeof(codecs) / sizeof(codecs[0]))

/* Half random, half repetitive, so both literal and match paths of every codec run. */
static uint8_t *make_data(size_t n, uint32_t seed)
{
    uint8_t *d = malloc(n > 0 ? n : 1);
    assert_non_null(d);
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        d[i] = (i / 512) % 2 ? (uint8_t)(seed >> 16) : (uint8_t)("laminar"[i % 7]);
    }
    return d;
}

static void roundtrip(enum kafka_codec codec, size_t n)
{
    uint8_t *src = make_data(n, (uint32_t)n + codec);
    uint8_t *c;
    size_t clen;
    assert_int_equal(kafka_compress(codec, src, n, &c, &clen), 0);
    /* Caller buffer: exact fit works, one byte less is too large. */
    uint8_t *dst = malloc(n + 1);
    size_t got = 12345;
    assert_int_equal(kafka_decompress(codec, c, clen, dst, n, &got), 0);
    assert_int_equal(got, n);
    assert_true(n == 0 || memcmp(dst, src, n) == 0);
    if (n > 0)
        assert_int_equal(kafka_decompress(codec, c, clen, dst, n - 1, &got), LM_E_TOO_LARGE);
    /* Growing buffer, bounded the same way. */
    uint8_t *out;
    assert_int_equal(kafka_decompress_alloc(codec, c, clen, n, &out, &got), 0);
    assert_int_equal(got, n);
    assert_true(n == 0 || memcmp(out, src, n) == 0);
    free(out);
    if (n > 0) {
        out = (uint8_t *)0x1;
        assert_int_equal(kafka_decompress_alloc(codec, c, clen, n - 1, &out, &got), LM_E_TOO_LARGE);
    }
    free(dst);
    free(c);
    free(src);
}

static void test_roundtrip_sizes(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 7, 100, 4095, 4096, 4097, 32768, 32769, 100000, 300001};
    for (size_t c = 0; c < N_CODECS; c++)
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
            roundtrip(codecs[c], sizes[s]);
}

static uint32_t get32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* We write xerial framing as snappy-java does; we read it and plain raw snappy. */
static void test_snappy_framings(void **state)
{
    (void)state;
    size_t n = 100000;
    uint8_t *src = make_data(n, 9);
    uint8_t *c;
    size_t clen;
    assert_int_equal(kafka_compress(KAFKA_CODEC_SNAPPY, src, n, &c, &clen), 0);
    static const uint8_t magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
    assert_memory_equal(c, magic, 8);
    assert_int_equal(get32be(c + 8), 1);
    assert_int_equal(get32be(c + 12), 1);
    /* 100000 bytes in 32 KiB blocks: 4 blocks that exactly tile the rest. */
    size_t pos = 16, blocks = 0;
    while (pos < clen) {
        pos += 4 + get32be(c + pos);
        blocks++;
    }
    assert_int_equal(pos, clen);
    assert_int_equal(blocks, 4);
    uint8_t *dst = malloc(n);
    size_t got;
    /* Every truncation of the framed stream is an error (or too short a prefix of blocks). */
    for (size_t len = 0; len < clen; len += 1 + len / 64) {
        int rc = kafka_decompress(KAFKA_CODEC_SNAPPY, c, len, dst, n, &got);
        if (rc == 0)
            assert_true(got < n); /* a whole number of blocks: a shorter output, not a crash */
        else
            assert_int_equal(rc, LM_E_COMPRESSION);
    }
    free(c);

    assert_int_equal(kafka_snappy_compress_raw(src, n, &c, &clen), 0);
    assert_true(memcmp(c, magic, 8) != 0);
    assert_int_equal(kafka_decompress(KAFKA_CODEC_SNAPPY, c, clen, dst, n, &got), 0);
    assert_int_equal(got, n);
    assert_memory_equal(dst, src, n);
    /* The raw length preamble is checked before decoding. */
    assert_int_equal(kafka_decompress(KAFKA_CODEC_SNAPPY, c, clen, dst, n - 1, &got),
                     LM_E_TOO_LARGE);
    for (size_t len = 0; len < clen; len += 1 + len / 64)
        assert_int_equal(kafka_decompress(KAFKA_CODEC_SNAPPY, c, len, dst, n, &got),
                         LM_E_COMPRESSION);
    free(c);
    /* A raw block claiming 4 GiB. */
    static const uint8_t huge[] = {0xFF, 0xFF, 0xFF, 0xFF, 0x0F, 0x00};
    assert_int_equal(kafka_decompress(KAFKA_CODEC_SNAPPY, huge, sizeof(huge), dst, n, &got),
                     LM_E_TOO_LARGE);
    /* Xerial header with a negative block length, and a block length past the end. */
    uint8_t framed[24];
    memcpy(framed, magic, 8);
    memset(framed + 8, 0, 16);
    framed[11] = framed[15] = 1;
    framed[16] = 0x80;
    assert_int_equal(kafka_decompress(KAFKA_CODEC_SNAPPY, framed, 24, dst, n, &got),
                     LM_E_COMPRESSION);
    framed[16] = 0;
    framed[19] = 5;
    assert_int_equal(kafka_decompress(KAFKA_CODEC_SNAPPY, framed, 24, dst, n, &got),
                     LM_E_COMPRESSION);
    free(dst);
    free(src);
}

/* Two gzip members, two lz4 frames, two zstd frames back to back decode as one stream. */
static void test_concatenated(void **state)
{
    (void)state;
    enum kafka_codec cc[] = {KAFKA_CODEC_GZIP, KAFKA_CODEC_LZ4, KAFKA_CODEC_ZSTD};
    for (size_t k = 0; k < 3; k++) {
        uint8_t *a = make_data(5000, 1), *b = make_data(7000, 2);
        uint8_t *ca, *cb;
        size_t la, lb;
        assert_int_equal(kafka_compress(cc[k], a, 5000, &ca, &la), 0);
        assert_int_equal(kafka_compress(cc[k], b, 7000, &cb, &lb), 0);
        uint8_t *both = malloc(la + lb);
        memcpy(both, ca, la);
        memcpy(both + la, cb, lb);
        uint8_t *dst = malloc(12000);
        size_t got;
        assert_int_equal(kafka_decompress(cc[k], both, la + lb, dst, 12000, &got), 0);
        assert_int_equal(got, 12000);
        assert_memory_equal(dst, a, 5000);
        assert_memory_equal(dst + 5000, b, 7000);
        assert_int_equal(kafka_decompress(cc[k], both, la + lb, dst, 11999, &got), LM_E_TOO_LARGE);
        /* Garbage after a complete member/frame is an error, not ignored. */
        both[la] ^= 0xFF;
        assert_int_equal(kafka_decompress(cc[k], both, la + lb, dst, 12000, &got),
                         LM_E_COMPRESSION);
        free(dst);
        free(both);
        free(ca);
        free(cb);
        free(a);
        free(b);
    }
}

static void test_bad_input(void **state)
{
    (void)state;
    uint8_t dst[1024];
    size_t got;
    static const uint8_t garbage[] = "this is not compressed data at all, honestly";
    for (size_t c = 1; c < N_CODECS; c++) {
        assert_int_equal(kafka_decompress(codecs[c], garbage, 0, dst, sizeof(dst), &got),
                         LM_E_COMPRESSION);
        int rc = kafka_decompress(codecs[c], garbage, sizeof(garbage), dst, sizeof(dst), &got);
        /* Raw snappy may read the first bytes as a length larger than dst. */
        assert_true(rc == LM_E_COMPRESSION ||
                    (codecs[c] == KAFKA_CODEC_SNAPPY && rc == LM_E_TOO_LARGE));
        /* Every truncation of a valid stream fails. */
        uint8_t *src = make_data(3000, 5);
        uint8_t *cz;
        size_t clen;
        assert_int_equal(kafka_compress(codecs[c], src, 3000, &cz, &clen), 0);
        uint8_t *big = malloc(3000);
        for (size_t len = 0; len < clen; len++) {
            uint8_t *exact = malloc(len > 0 ? len : 1);
            memcpy(exact, cz, len);
            rc = kafka_decompress(codecs[c], exact, len, big, 3000, &got);
            if (codecs[c] == KAFKA_CODEC_SNAPPY && rc == 0)
                assert_true(got < 3000); /* xerial prefix ending on a block boundary */
            else if (codecs[c] == KAFKA_CODEC_SNAPPY && len < 8)
                /* Less than the xerial magic reads as raw snappy, as snappy-java does: its
                 * "length" (0x82 'S' ...) is then larger than dst. */
                assert_true(rc == LM_E_COMPRESSION || rc == LM_E_TOO_LARGE);
            else
                assert_int_equal(rc, LM_E_COMPRESSION);
            free(exact);
        }
        free(big);
        free(cz);
        free(src);
    }
    uint8_t *out;
    assert_int_equal(kafka_decompress((enum kafka_codec)6, garbage, 4, dst, 4, &got), LM_E_INVALID);
    assert_int_equal(kafka_compress((enum kafka_codec)5, garbage, 4, &out, &got), LM_E_INVALID);
    assert_string_equal(kafka_codec_name(KAFKA_CODEC_ZSTD), "zstd");
    assert_string_equal(kafka_codec_name((enum kafka_codec)7), "unknown");
}

/* 32 MiB of zeros compresses to little; decompression stops at the limit. */
static void test_bombs(void **state)
{
    (void)state;
    size_t n = 32u << 20;
    uint8_t *zeros = calloc(1, n);
    uint8_t *dst = malloc(1u << 20);
    for (size_t c = 1; c < N_CODECS; c++) {
        uint8_t *cz;
        size_t clen, got;
        assert_int_equal(kafka_compress(codecs[c], zeros, n, &cz, &clen), 0);
        assert_true(clen < n / 16);
        assert_int_equal(kafka_decompress(codecs[c], cz, clen, dst, 1u << 20, &got),
                         LM_E_TOO_LARGE);
        uint8_t *out = NULL;
        assert_int_equal(kafka_decompress_alloc(codecs[c], cz, clen, 1u << 20, &out, &got),
                         LM_E_TOO_LARGE);
        free(cz);
    }
    free(dst);
    free(zeros);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_sizes), cmocka_unit_test(test_snappy_framings),
        cmocka_unit_test(test_concatenated),    cmocka_unit_test(test_bad_input),
        cmocka_unit_test(test_bombs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
