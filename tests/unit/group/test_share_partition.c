/* Share-partition state (KIP-932): acquire, accept, release, reject, gaps, lock timeout and
 * redelivery, archiving at the delivery-count limit, several members on one partition, the
 * bounded in-flight window, and a randomized run checking that every offset ends acknowledged
 * or archived exactly once while no record is ever held by two members. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/share_partition.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static struct lm_share_part sp_new(int32_t lock_ms, int32_t limit, int32_t max)
{
    struct lm_share_config cfg = {lock_ms, limit, max};
    struct lm_share_part sp;
    assert_int_equal(lm_share_part_init(&sp, &cfg), 0);
    return sp;
}

static int32_t acq(struct lm_share_part *sp, int64_t now, uint64_t m, int64_t log_end,
                   int32_t max_records, struct lm_share_range *out)
{
    int64_t from = lm_share_part_next(sp, log_end);
    if (from < 0)
        return 0;
    return lm_share_part_acquire(sp, now, m, from, log_end - 1, log_end, max_records, out, 16);
}

static void test_acquire_accept(void **state)
{
    (void)state;
    struct lm_share_part sp = sp_new(1000, 5, 100);
    struct lm_share_range r[16];
    assert_int_equal(lm_share_part_next(&sp, 10), -1); /* not initialized */
    lm_share_part_start(&sp, 5);
    lm_share_part_start(&sp, 0); /* ignored: set once */
    assert_int_equal(acq(&sp, 0, 1, 10, 100, r), 1);
    assert_int_equal(r[0].first, 5);
    assert_int_equal(r[0].last, 9);
    assert_int_equal(r[0].delivery_count, 1);
    assert_int_equal(lm_share_part_next(&sp, 10), -1); /* everything acquired */
    /* another member may not acknowledge them */
    assert_int_equal(lm_share_part_ack(&sp, 2, 5, 9, LM_SHARE_ACK_ACCEPT),
                     KAFKA_INVALID_RECORD_STATE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 5, 7, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(sp.start, 8);
    /* twice is an error, and a bad type or range too */
    assert_int_equal(lm_share_part_ack(&sp, 1, 5, 5, LM_SHARE_ACK_ACCEPT),
                     KAFKA_INVALID_RECORD_STATE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 8, 9, 9), KAFKA_INVALID_REQUEST);
    assert_int_equal(lm_share_part_ack(&sp, 1, 9, 8, 1), KAFKA_INVALID_REQUEST);
    assert_int_equal(lm_share_part_ack(&sp, 1, 8, 12, 1), KAFKA_INVALID_RECORD_STATE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 8, 9, LM_SHARE_ACK_REJECT), KAFKA_NONE);
    assert_int_equal(sp.start, 10);
    assert_int_equal(lm_share_part_in_flight(&sp), 0);
    lm_share_part_deinit(&sp);
}

static void test_release_and_limit(void **state)
{
    (void)state;
    struct lm_share_part sp = sp_new(1000, 3, 100);
    struct lm_share_range r[16];
    lm_share_part_start(&sp, 0);
    for (int d = 1; d <= 3; d++) {
        assert_int_equal(acq(&sp, 0, 7, 2, 100, r), 1);
        assert_int_equal(r[0].first, 0);
        assert_int_equal(r[0].last, 1);
        assert_int_equal(r[0].delivery_count, d);
        assert_int_equal(lm_share_part_ack(&sp, 7, 0, 1, LM_SHARE_ACK_RELEASE), KAFKA_NONE);
    }
    /* the third release reached the limit: archived, never delivered again */
    int32_t n;
    assert_int_equal(lm_share_part_state(&sp, 0, &n), LM_SHARE_ACKNOWLEDGED); /* below start */
    assert_int_equal(sp.start, 2);
    assert_int_equal(acq(&sp, 0, 7, 2, 100, r), 0);
    lm_share_part_deinit(&sp);
}

static void test_lock_timeout_redelivers(void **state)
{
    (void)state;
    struct lm_share_part sp = sp_new(1000, 2, 100);
    struct lm_share_range r[16];
    lm_share_part_start(&sp, 0);
    assert_int_equal(acq(&sp, 0, 1, 4, 100, r), 1); /* member 1 takes 0..3, then dies */
    assert_int_equal(lm_share_part_expire(&sp, 999), 0);
    assert_int_equal(acq(&sp, 500, 2, 4, 100, r), 0); /* locked: nothing for member 2 */
    assert_int_equal(lm_share_part_expire(&sp, 1000), 4);
    assert_int_equal(acq(&sp, 1000, 2, 4, 100, r), 1);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].last, 3);
    assert_int_equal(r[0].delivery_count, 2);
    /* member 1's late acknowledgement fails: it no longer holds them */
    assert_int_equal(lm_share_part_ack(&sp, 1, 0, 3, LM_SHARE_ACK_ACCEPT),
                     KAFKA_INVALID_RECORD_STATE);
    /* a second timeout at the delivery limit (2) archives */
    assert_int_equal(lm_share_part_expire(&sp, 2000), 4);
    assert_int_equal(sp.start, 4);
    assert_int_equal(lm_share_part_in_flight(&sp), 0);
    lm_share_part_deinit(&sp);
}

/* AlterShareGroupOffsets: a reset drops every in-flight state and delivery count, backwards
 * (records acknowledged before come again, with count 1) or forwards (skipped). */
static void test_reset(void **state)
{
    (void)state;
    struct lm_share_part sp = sp_new(1000, 3, 100);
    struct lm_share_range r[16];
    lm_share_part_reset(&sp, 4); /* an uninitialized share partition starts there */
    assert_true(sp.initialized);
    assert_int_equal(lm_share_part_next(&sp, 10), 4);
    assert_int_equal(acq(&sp, 0, 1, 10, 100, r), 1);
    assert_int_equal(lm_share_part_ack(&sp, 1, 4, 6, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 7, 7, LM_SHARE_ACK_RELEASE), KAFKA_NONE);
    assert_int_equal(sp.start, 7);
    /* back to 2: 2..9 available again, each with no delivery yet */
    lm_share_part_reset(&sp, 2);
    assert_int_equal(sp.start, 2);
    assert_int_equal(lm_share_part_in_flight(&sp), 0);
    int32_t n = -1;
    assert_int_equal(lm_share_part_state(&sp, 7, &n), LM_SHARE_AVAILABLE);
    assert_int_equal(n, 0);
    assert_int_equal(acq(&sp, 0, 2, 10, 100, r), 1);
    assert_int_equal(r[0].first, 2);
    assert_int_equal(r[0].last, 9);
    assert_int_equal(r[0].delivery_count, 1);
    /* member 2's records are gone with a reset past them: its acknowledgement fails */
    lm_share_part_reset(&sp, 12);
    assert_int_equal(lm_share_part_ack(&sp, 2, 2, 9, LM_SHARE_ACK_ACCEPT),
                     KAFKA_INVALID_RECORD_STATE);
    assert_int_equal(lm_share_part_next(&sp, 10), -1);
    assert_int_equal(lm_share_part_next(&sp, 13), 12);
    lm_share_part_start(&sp, 0); /* ignored after a reset */
    assert_int_equal(sp.start, 12);
    lm_share_part_deinit(&sp);
}

static void test_members_max_records_window(void **state)
{
    (void)state;
    struct lm_share_part sp = sp_new(1000, 5, 8);
    struct lm_share_range r[16];
    lm_share_part_start(&sp, 0);
    /* two members split the log with max_records 3 */
    assert_int_equal(acq(&sp, 0, 1, 100, 3, r), 1);
    assert_int_equal(r[0].first, 0);
    assert_int_equal(r[0].last, 2);
    assert_int_equal(acq(&sp, 0, 2, 100, 3, r), 1);
    assert_int_equal(r[0].first, 3);
    assert_int_equal(r[0].last, 5);
    /* the window holds 8 records: the next acquire stops at offset 7 */
    assert_int_equal(acq(&sp, 0, 1, 100, 10, r), 1);
    assert_int_equal(r[0].first, 6);
    assert_int_equal(r[0].last, 7);
    assert_int_equal(acq(&sp, 0, 2, 100, 10, r), 0);
    /* member 2 releases 4: member 1 gets it, delivery count 2, a range of its own */
    assert_int_equal(lm_share_part_ack(&sp, 2, 4, 4, LM_SHARE_ACK_RELEASE), KAFKA_NONE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 0, 2, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(acq(&sp, 0, 1, 100, 10, r), 2);
    assert_int_equal(r[0].first, 4);
    assert_int_equal(r[0].delivery_count, 2);
    assert_int_equal(r[1].first, 8);
    assert_int_equal(r[1].last, 10);
    assert_int_equal(r[1].delivery_count, 1);
    /* member 2 closes its session: its records come back */
    assert_int_equal(lm_share_part_release_member(&sp, 2), 2);
    assert_int_equal(lm_share_part_state(&sp, 3, NULL), LM_SHARE_AVAILABLE);
    /* a gap archives offsets that hold no record */
    assert_int_equal(lm_share_part_ack(&sp, 1, 6, 7, LM_SHARE_ACK_GAP), KAFKA_NONE);
    assert_int_equal(lm_share_part_state(&sp, 6, NULL), LM_SHARE_ARCHIVED);
    /* records under a new log start offset are gone */
    lm_share_part_clamp(&sp, 4);
    assert_int_equal(sp.start, 4);
    lm_share_part_deinit(&sp);
}

/* Random members acquire, accept, release, reject and time out; at the end every offset of the
 * log is done, accepted at most once, and no acquisition ever took a record held by another
 * member. */
static void test_randomized(void **state)
{
    (void)state;
    enum { LOG = 300, M = 3 };
    for (uint32_t seed = 1; seed <= 50; seed++) {
        srand(seed);
        struct lm_share_part sp = sp_new(100, 4, 50);
        lm_share_part_start(&sp, 0);
        int accepted[LOG] = {0};
        int64_t now = 0;
        int64_t log_end = 0;
        for (int step = 0; step < 20000 && !(log_end == LOG && sp.start == LOG); step++) {
            now += rand() % 20;
            if (log_end < LOG)
                log_end += rand() % 3;
            if (log_end > LOG)
                log_end = LOG;
            lm_share_part_expire(&sp, now);
            uint64_t m = (uint64_t)(rand() % M) + 1;
            struct lm_share_range r[16];
            int32_t n = acq(&sp, now, m, log_end, 1 + rand() % 10, r);
            for (int32_t i = 0; i < n; i++) {
                for (int64_t o = r[i].first; o <= r[i].last; o++) {
                    int choice = rand() % 10;
                    if (choice == 9)
                        continue; /* lost: the lock times out */
                    int8_t type = choice < 6   ? LM_SHARE_ACK_ACCEPT
                                  : choice < 8 ? LM_SHARE_ACK_RELEASE
                                               : LM_SHARE_ACK_REJECT;
                    assert_int_equal(lm_share_part_ack(&sp, m, o, o, type), KAFKA_NONE);
                    if (type == LM_SHARE_ACK_ACCEPT)
                        accepted[o]++;
                }
            }
            assert_true(lm_share_part_in_flight(&sp) <= 50);
        }
        assert_int_equal(sp.start, LOG);
        for (int o = 0; o < LOG; o++)
            assert_true(accepted[o] <= 1);
        lm_share_part_deinit(&sp);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_acquire_accept),
        cmocka_unit_test(test_release_and_limit),
        cmocka_unit_test(test_lock_timeout_redelivers),
        cmocka_unit_test(test_reset),
        cmocka_unit_test(test_members_max_records_window),
        cmocka_unit_test(test_randomized),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
