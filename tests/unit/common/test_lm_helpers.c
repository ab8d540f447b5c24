/* common/: big-endian loads and stores, growable arrays (LM_GROW bounded by the capacity's
 * type, unchanged on failure), LM_TRY. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"

static void test_endian(void **state)
{
    (void)state;
    uint8_t b[8];
    lm_put_be16(b, 0x1234);
    assert_memory_equal(b, "\x12\x34", 2);
    assert_int_equal(lm_get_be16(b), 0x1234);
    lm_put_be32(b, 0x89abcdefu);
    assert_memory_equal(b, "\x89\xab\xcd\xef", 4);
    assert_int_equal(lm_get_be32(b), 0x89abcdefu);
    assert_int_equal((int32_t)lm_get_be32(b), (int32_t)0x89abcdefu); /* negative as int32 */
    lm_put_be64(b, 0x0102030405060708ull);
    assert_memory_equal(b, "\x01\x02\x03\x04\x05\x06\x07\x08", 8);
    assert_true(lm_get_be64(b) == 0x0102030405060708ull);
    /* Unaligned. */
    uint8_t u[9] = {0};
    lm_put_be64(u + 1, UINT64_MAX - 1);
    assert_true(lm_get_be64(u + 1) == UINT64_MAX - 1);
    assert_int_equal(u[0], 0);
}

static void test_grow(void **state)
{
    (void)state;
    int *a = NULL;
    uint32_t cap = 0;
    assert_int_equal(LM_GROW(a, cap, 1, 4), 0);
    assert_int_equal(cap, 4);
    for (int i = 0; i < 4; i++)
        a[i] = i;
    assert_int_equal(LM_GROW(a, cap, 4, 4), 0); /* already enough: unchanged */
    assert_int_equal(cap, 4);
    assert_int_equal(LM_GROW(a, cap, 9, 4), 0); /* doubles until it fits: 8, 16 */
    assert_int_equal(cap, 16);
    for (int i = 0; i < 4; i++)
        assert_int_equal(a[i], i); /* realloc kept the contents */
    free(a);

    /* A capacity of a small type never grows past what the type holds. */
    char *c = NULL;
    uint8_t small = 0;
    assert_int_equal(LM_GROW(c, small, 200, 16), 0);
    assert_int_equal(small, 255);
    assert_int_equal(LM_GROW(c, small, 256, 16), LM_E_TOO_LARGE);
    assert_int_equal(small, 255);
    free(c);
    int16_t *s = NULL;
    int8_t scap = 0;
    assert_int_equal(LM_GROW(s, scap, 100, 64), 0);
    assert_int_equal(scap, 127);
    assert_int_equal(LM_GROW(s, scap, 128, 64), LM_E_TOO_LARGE);
    free(s);

    /* Byte size overflow is refused, the array untouched. */
    uint64_t *big = NULL;
    size_t bcap = 0;
    assert_int_equal(LM_GROW(big, bcap, SIZE_MAX / 4, 1), LM_E_TOO_LARGE);
    assert_null(big);
    assert_int_equal(bcap, 0);
}

static int fails_at(int i, int bad)
{
    return i == bad ? LM_E_INVALID : 0;
}

static int run_until(int bad, int *done)
{
    for (int i = 0; i < 5; i++) {
        LM_TRY(fails_at(i, bad));
        (*done)++;
    }
    return 0;
}

static void test_try(void **state)
{
    (void)state;
    int done = 0;
    assert_int_equal(run_until(3, &done), LM_E_INVALID);
    assert_int_equal(done, 3);
    done = 0;
    assert_int_equal(run_until(-1, &done), 0);
    assert_int_equal(done, 5);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_endian),
        cmocka_unit_test(test_grow),
        cmocka_unit_test(test_try),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
