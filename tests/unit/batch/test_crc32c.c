/* CRC-32C: known vectors (RFC 3720 B.4 and the common check value), and the table and SSE4.2
 * paths against a bitwise reference on random data of every length and alignment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/crc32c.h"

/* Bit-at-a-time reference, written straight from the definition (reflected 0x82F63B78). */
static uint32_t ref_crc32c(uint32_t crc, const uint8_t *p, size_t n)
{
    crc = ~crc;
    for (size_t i = 0; i < n; i++) {
        crc ^= p[i];
        for (int k = 0; k < 8; k++)
            crc = (crc & 1) ? (crc >> 1) ^ 0x82F63B78u : crc >> 1;
    }
    return ~crc;
}

typedef uint32_t (*crc_fn)(uint32_t, const void *, size_t);

static void check_vectors(crc_fn f)
{
    assert_int_equal(f(0, "123456789", 9), 0xE3069283u);
    assert_int_equal(f(0, "", 0), 0);
    uint8_t buf[32];
    memset(buf, 0, sizeof(buf));
    assert_int_equal(f(0, buf, 32), 0x8A9136AAu);
    memset(buf, 0xFF, sizeof(buf));
    assert_int_equal(f(0, buf, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)i;
    assert_int_equal(f(0, buf, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++)
        buf[i] = (uint8_t)(31 - i);
    assert_int_equal(f(0, buf, 32), 0x113FDB5Cu);
    /* Continuation: the CRC of a split buffer equals the CRC of the whole. */
    assert_int_equal(f(f(0, "1234", 4), "56789", 5), 0xE3069283u);
}

static void test_vectors_reference(void **state)
{
    (void)state;
    assert_int_equal(ref_crc32c(0, (const uint8_t *)"123456789", 9), 0xE3069283u);
}

static void test_vectors_table(void **state)
{
    (void)state;
    check_vectors(crc32c_update_table);
}

static void test_vectors_dispatch(void **state)
{
    (void)state;
    check_vectors(crc32c_update);
}

static void test_vectors_hw(void **state)
{
    (void)state;
    if (!crc32c_hw_available())
        skip();
    check_vectors(crc32c_update_hw);
}

/* Every length 0..700 at every alignment 0..15, with continuation from a random seed CRC. */
static void test_random_all_lengths_alignments(void **state)
{
    (void)state;
    enum { MAXLEN = 700, ALIGN = 16 };
    uint8_t *buf = malloc(MAXLEN + ALIGN);
    assert_non_null(buf);
    uint32_t seed = 0x12345678u;
    for (size_t i = 0; i < MAXLEN + ALIGN; i++) {
        seed = seed * 1103515245u + 12345u;
        buf[i] = (uint8_t)(seed >> 16);
    }
    int hw = crc32c_hw_available();
    for (size_t len = 0; len <= MAXLEN; len++) {
        for (size_t a = 0; a < ALIGN; a++) {
            uint32_t init = (uint32_t)(len * 2654435761u + a);
            uint32_t want = ref_crc32c(init, buf + a, len);
            assert_int_equal(crc32c_update_table(init, buf + a, len), want);
            assert_int_equal(crc32c_update(init, buf + a, len), want);
            if (hw)
                assert_int_equal(crc32c_update_hw(init, buf + a, len), want);
        }
    }
    free(buf);
}

/* Lengths around the hw path's three-lane block (3 x 2048 bytes) and its multiples, at every
 * alignment, against the reference. */
static void test_lane_boundaries(void **state)
{
    (void)state;
    enum { BLOCK = 3 * 2048, ALIGN = 8 };
    static const size_t bases[] = {BLOCK, 2 * BLOCK, 5 * BLOCK};
    uint8_t *buf = malloc(5 * BLOCK + 64);
    assert_non_null(buf);
    for (size_t i = 0; i < 5 * BLOCK + 64; i++)
        buf[i] = (uint8_t)((i * 131) ^ (i >> 7));
    for (size_t b = 0; b < sizeof(bases) / sizeof(bases[0]); b++) {
        for (size_t len = bases[b] - 9; len <= bases[b] + 17; len++) {
            for (size_t a = 0; a < ALIGN; a++) {
                uint32_t want = ref_crc32c(0xABCDEF01u, buf + a, len);
                assert_int_equal(crc32c_update_table(0xABCDEF01u, buf + a, len), want);
                assert_int_equal(crc32c_update(0xABCDEF01u, buf + a, len), want);
                if (crc32c_hw_available())
                    assert_int_equal(crc32c_update_hw(0xABCDEF01u, buf + a, len), want);
            }
        }
    }
    free(buf);
}

/* A large buffer split at random points gives the same CRC as one call. */
static void test_split_large(void **state)
{
    (void)state;
    enum { N = 1 << 20 };
    uint8_t *buf = malloc(N);
    assert_non_null(buf);
    for (size_t i = 0; i < N; i++)
        buf[i] = (uint8_t)(i * 7 + (i >> 9));
    uint32_t whole = crc32c_update_table(0, buf, N);
    uint32_t c = 0;
    size_t pos = 0, step = 1;
    while (pos < N) {
        size_t n = step < N - pos ? step : N - pos;
        c = crc32c_update(c, buf + pos, n);
        pos += n;
        step = step * 3 + 1;
        if (step > 100000)
            step = 5;
    }
    assert_int_equal(c, whole);
    if (crc32c_hw_available())
        assert_int_equal(crc32c_update_hw(0, buf, N), whole);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors_reference),
        cmocka_unit_test(test_vectors_table),
        cmocka_unit_test(test_vectors_dispatch),
        cmocka_unit_test(test_vectors_hw),
        cmocka_unit_test(test_random_all_lengths_alignments),
        cmocka_unit_test(test_lane_boundaries),
        cmocka_unit_test(test_split_large),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
