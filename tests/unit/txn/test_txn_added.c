/* The shard cache of partitions added to transaction version 2 transactions (txn_added.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/txn/txn_added.h"

static void test_hits_only_what_was_confirmed(void **state)
{
    (void)state;
    struct txn_added *c = malloc(sizeof(*c));
    assert_non_null(c);
    txn_added_init(c);
    uint8_t t1[16], t2[16];
    memset(t1, 1, 16);
    memset(t2, 2, 16);
    assert_false(txn_added_has(c, 7, 3, t1, 0, 1000));
    txn_added_put(c, 7, 3, t1, 0, 1000);
    assert_true(txn_added_has(c, 7, 3, t1, 0, 1001));
    /* another epoch (the next transaction of a version 2 producer), producer, partition or
     * topic incarnation is not it */
    assert_false(txn_added_has(c, 7, 4, t1, 0, 1001));
    assert_false(txn_added_has(c, 8, 3, t1, 0, 1001));
    assert_false(txn_added_has(c, 7, 3, t1, 1, 1001));
    assert_false(txn_added_has(c, 7, 3, t2, 0, 1001));
    /* believed for TXN_ADDED_TTL_MS only */
    assert_true(txn_added_has(c, 7, 3, t1, 0, 1000 + TXN_ADDED_TTL_MS - 1));
    assert_false(txn_added_has(c, 7, 3, t1, 0, 1000 + TXN_ADDED_TTL_MS));
    /* a fresh slot never matches, whatever is asked (producer id -1 is never stored) */
    txn_added_put(c, -1, 0, t1, 0, 1000);
    uint8_t zero[16] = {0};
    assert_false(txn_added_has(c, -1, 0, zero, 0, 0));
    assert_false(txn_added_has(c, -1, 0, t1, 0, 1000));
    assert_int_equal(c->hits, 2);
    free(c);
}

static void test_bounded_and_replacing(void **state)
{
    (void)state;
    struct txn_added *c = malloc(sizeof(*c));
    assert_non_null(c);
    txn_added_init(c);
    uint8_t t[16];
    memset(t, 9, 16);
    /* many more entries than slots: the newest of each slot stays, nothing wrong is found */
    const int32_t n = 4 * TXN_ADDED_SLOTS;
    for (int32_t p = 0; p < n; p++)
        txn_added_put(c, 100, 0, t, p, 5);
    int32_t kept = 0;
    for (int32_t p = 0; p < n; p++) {
        kept += txn_added_has(c, 100, 0, t, p, 6);
        assert_false(txn_added_has(c, 100, 1, t, p, 6));
    }
    assert_true(kept > 0 && kept <= TXN_ADDED_SLOTS);
    /* the last ones put are found (their slots were not overwritten after) */
    assert_true(txn_added_has(c, 100, 0, t, n - 1, 6));
    free(c);
}

/* Requests with the coordinator keep their producer busy until each one's answer came, also
 * past the table's size. */
static void test_busy_while_with_the_coordinator(void **state)
{
    (void)state;
    struct txn_added *c = malloc(sizeof(*c));
    assert_non_null(c);
    txn_added_init(c);
    assert_false(txn_added_busy(c, 5));
    int a = txn_added_begin(c, 5), b = txn_added_begin(c, 5);
    assert_true(txn_added_busy(c, 5));
    assert_false(txn_added_busy(c, 6));
    txn_added_end(c, a);
    assert_true(txn_added_busy(c, 5)); /* b is still out */
    txn_added_end(c, b);
    assert_false(txn_added_busy(c, 5));
    /* more producers than slots: the ones without a slot make everyone busy */
    int tok[TXN_ADDED_INFLIGHT + 2];
    for (int i = 0; i < TXN_ADDED_INFLIGHT + 2; i++)
        tok[i] = txn_added_begin(c, 100 + i);
    assert_true(txn_added_busy(c, 7));
    for (int i = 0; i < TXN_ADDED_INFLIGHT; i++)
        txn_added_end(c, tok[i]);
    assert_true(txn_added_busy(c, 7)); /* the last two are out, without a slot */
    /* a slot freed meanwhile does not take the end of a request counted without one */
    int d = txn_added_begin(c, 100 + TXN_ADDED_INFLIGHT);
    txn_added_end(c, tok[TXN_ADDED_INFLIGHT]);
    txn_added_end(c, tok[TXN_ADDED_INFLIGHT + 1]);
    assert_true(txn_added_busy(c, 100 + TXN_ADDED_INFLIGHT));
    assert_false(txn_added_busy(c, 7));
    txn_added_end(c, d);
    assert_false(txn_added_busy(c, 100 + TXN_ADDED_INFLIGHT));
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hits_only_what_was_confirmed),
        cmocka_unit_test(test_bounded_and_replacing),
        cmocka_unit_test(test_busy_while_with_the_coordinator),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
