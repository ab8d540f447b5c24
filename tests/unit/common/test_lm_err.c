#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"

/* Every code has a distinct name and message, and unknown codes are reported as such. */
static void test_names_and_messages(void **state)
{
    (void)state;
    assert_string_equal(lm_errname(LM_E_CRC), "LM_E_CRC");
    assert_string_equal(lm_strerror(LM_OK), "success");
    assert_string_equal(lm_strerror(12345), "unknown error");
    assert_string_equal(lm_errname(-9999), "LM_E_UNKNOWN");
    static const int codes[] = {
#define LM_ERR_CODE(name, value, message) value,
        LM_ERRORS(LM_ERR_CODE)
#undef LM_ERR_CODE
    };
    for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++) {
        assert_true(codes[i] <= 0);
        for (size_t j = i + 1; j < sizeof(codes) / sizeof(codes[0]); j++) {
            assert_int_not_equal(codes[i], codes[j]);
            assert_string_not_equal(lm_errname(codes[i]), lm_errname(codes[j]));
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_names_and_messages)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
