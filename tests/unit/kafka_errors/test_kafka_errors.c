/* Kafka wire error table (protocol/kafka_errors.h): values checked against the protocol
 * guide's "Error Codes" table, plus the table's own consistency (unique, ordered, complete). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/kafka_errors.h"

struct kafka_error_row {
    const char *name;
    int code;
    bool retriable;
    const char *message;
};

static const struct kafka_error_row table[] = {
#define ROW(name, code, retriable, message) {#name, (code), (retriable), (message)},
    KAFKA_ERRORS(ROW)
#undef ROW
};
#define TABLE_LEN (sizeof(table) / sizeof(table[0]))

/* A sample of (code, name, retriable) typed in from the protocol guide, independent of the
 * table, so a shifted or mistyped row is caught. */
static const struct kafka_error_row guide[] = {
    {"UNKNOWN_SERVER_ERROR", -1, false, NULL},
    {"NONE", 0, false, NULL},
    {"OFFSET_OUT_OF_RANGE", 1, false, NULL},
    {"CORRUPT_MESSAGE", 2, true, NULL},
    {"UNKNOWN_TOPIC_OR_PARTITION", 3, true, NULL},
    {"LEADER_NOT_AVAILABLE", 5, true, NULL},
    {"NOT_LEADER_OR_FOLLOWER", 6, true, NULL},
    {"REQUEST_TIMED_OUT", 7, true, NULL},
    {"BROKER_NOT_AVAILABLE", 8, false, NULL},
    {"MESSAGE_TOO_LARGE", 10, false, NULL},
    {"NETWORK_EXCEPTION", 13, true, NULL},
    {"COORDINATOR_LOAD_IN_PROGRESS", 14, true, NULL},
    {"NOT_COORDINATOR", 16, true, NULL},
    {"NOT_ENOUGH_REPLICAS", 19, true, NULL},
    {"ILLEGAL_GENERATION", 22, false, NULL},
    {"UNKNOWN_MEMBER_ID", 25, false, NULL},
    {"REBALANCE_IN_PROGRESS", 27, false, NULL},
    {"TOPIC_AUTHORIZATION_FAILED", 29, false, NULL},
    {"UNSUPPORTED_SASL_MECHANISM", 33, false, NULL},
    {"UNSUPPORTED_VERSION", 35, false, NULL},
    {"TOPIC_ALREADY_EXISTS", 36, false, NULL},
    {"NOT_CONTROLLER", 41, true, NULL},
    {"INVALID_REQUEST", 42, false, NULL},
    {"OUT_OF_ORDER_SEQUENCE_NUMBER", 45, false, NULL},
    {"DUPLICATE_SEQUENCE_NUMBER", 46, false, NULL},
    {"INVALID_PRODUCER_EPOCH", 47, false, NULL},
    {"INVALID_TXN_STATE", 48, false, NULL},
    {"CONCURRENT_TRANSACTIONS", 51, true, NULL},
    {"KAFKA_STORAGE_ERROR", 56, true, NULL},
    {"SASL_AUTHENTICATION_FAILED", 58, false, NULL},
    {"UNKNOWN_PRODUCER_ID", 59, false, NULL},
    {"NON_EMPTY_GROUP", 68, false, NULL},
    {"GROUP_ID_NOT_FOUND", 69, false, NULL},
    {"FETCH_SESSION_ID_NOT_FOUND", 70, true, NULL},
    {"INVALID_FETCH_SESSION_EPOCH", 71, true, NULL},
    {"FENCED_LEADER_EPOCH", 74, true, NULL},
    {"UNKNOWN_LEADER_EPOCH", 75, true, NULL},
    {"UNSUPPORTED_COMPRESSION_TYPE", 76, false, NULL},
    {"MEMBER_ID_REQUIRED", 79, false, NULL},
    {"FENCED_INSTANCE_ID", 82, false, NULL},
    {"INVALID_RECORD", 87, false, NULL},
    {"UNSTABLE_OFFSET_COMMIT", 88, true, NULL},
    {"THROTTLING_QUOTA_EXCEEDED", 89, true, NULL},
    {"PRODUCER_FENCED", 90, false, NULL},
    {"SNAPSHOT_NOT_FOUND", 98, false, NULL},
    {"UNKNOWN_TOPIC_ID", 100, true, NULL},
    {"INCONSISTENT_TOPIC_ID", 103, true, NULL},
    {"TRANSACTIONAL_ID_NOT_FOUND", 105, false, NULL},
    {"FENCED_MEMBER_EPOCH", 110, false, NULL},
    {"STALE_MEMBER_EPOCH", 113, false, NULL},
    {"TRANSACTION_ABORTABLE", 120, false, NULL},
    {"SHARE_SESSION_NOT_FOUND", 122, true, NULL},
    {"INVALID_REGULAR_EXPRESSION", 128, false, NULL},
};

static void test_enum_values_match_guide(void **state)
{
    (void)state;
    assert_int_equal(KAFKA_UNKNOWN_SERVER_ERROR, -1);
    assert_int_equal(KAFKA_NONE, 0);
    assert_int_equal(KAFKA_OFFSET_OUT_OF_RANGE, 1);
    assert_int_equal(KAFKA_CORRUPT_MESSAGE, 2);
    assert_int_equal(KAFKA_UNKNOWN_TOPIC_OR_PARTITION, 3);
    assert_int_equal(KAFKA_NOT_LEADER_OR_FOLLOWER, 6);
    assert_int_equal(KAFKA_NOT_COORDINATOR, 16);
    assert_int_equal(KAFKA_UNSUPPORTED_VERSION, 35);
    assert_int_equal(KAFKA_TOPIC_ALREADY_EXISTS, 36);
    assert_int_equal(KAFKA_INVALID_REQUEST, 42);
    assert_int_equal(KAFKA_KAFKA_STORAGE_ERROR, 56);
    assert_int_equal(KAFKA_UNKNOWN_MEMBER_ID, 25);
    assert_int_equal(KAFKA_PRODUCER_FENCED, 90);
    assert_int_equal(KAFKA_UNKNOWN_TOPIC_ID, 100);
    assert_int_equal(KAFKA_TRANSACTION_ABORTABLE, 120);
}

static void test_sample_matches_guide(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(guide) / sizeof(guide[0]); i++) {
        int16_t code = (int16_t)guide[i].code;
        assert_true(kafka_error_known(code));
        assert_string_equal(kafka_error_name(code), guide[i].name);
        assert_int_equal(kafka_error_retriable(code), guide[i].retriable);
    }
}

/* Codes are unique and ascending, every code from -1 to the last one is present except 99
 * (never assigned by Kafka), names are unique, and messages are non-empty. */
static void test_table_consistent(void **state)
{
    (void)state;
    assert_true(TABLE_LEN >= 122); /* -1 .. 120 without 99 */
    assert_int_equal(table[0].code, -1);
    assert_true(table[TABLE_LEN - 1].code >= 120);
    int expect = -1;
    for (size_t i = 0; i < TABLE_LEN; i++) {
        if (expect == 99)
            expect++;
        assert_int_equal(table[i].code, expect);
        expect++;
        assert_non_null(table[i].message);
        assert_true(strlen(table[i].message) > 0);
        assert_true(strlen(table[i].name) > 0);
        for (size_t j = i + 1; j < TABLE_LEN; j++) {
            assert_int_not_equal(table[i].code, table[j].code);
            assert_string_not_equal(table[i].name, table[j].name);
        }
        /* The lookup functions agree with the table row. */
        int16_t code = (int16_t)table[i].code;
        assert_string_equal(kafka_error_name(code), table[i].name);
        assert_string_equal(kafka_error_message(code), table[i].message);
        assert_int_equal(kafka_error_retriable(code), table[i].retriable);
    }
}

static void test_unknown_codes(void **state)
{
    (void)state;
    const int16_t unknown[] = {99, -2, INT16_MIN, INT16_MAX,
                               (int16_t)(table[TABLE_LEN - 1].code + 1)};
    for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
        assert_false(kafka_error_known(unknown[i]));
        assert_false(kafka_error_retriable(unknown[i]));
        assert_string_equal(kafka_error_name(unknown[i]), "UNKNOWN_ERROR_CODE");
        assert_string_equal(kafka_error_message(unknown[i]), "unknown Kafka error code");
    }
    assert_true(kafka_error_known(KAFKA_NONE));
    assert_string_equal(kafka_error_name(KAFKA_NONE), "NONE");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enum_values_match_guide),
        cmocka_unit_test(test_sample_matches_guide),
        cmocka_unit_test(test_table_consistent),
        cmocka_unit_test(test_unknown_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
