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
#include "protocol/record_batch.h"

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

/* The ranges r[0..n) are exactly want[0..nw) ({first, last} each). */
static void expect_ranges(const struct lm_share_range *r, int32_t n, const int64_t (*want)[2],
                          int32_t nw)
{
    assert_int_equal(n, nw);
    for (int32_t i = 0; i < n; i++) {
        assert_int_equal(r[i].first, want[i][0]);
        assert_int_equal(r[i].last, want[i][1]);
    }
}

/* A header-only v2 batch at buf (61 bytes, no records: enough for lm_share_skips, which reads
 * headers only) of offsets [base, base + n - 1]. */
static size_t put_batch(uint8_t *buf, int64_t base, int32_t n, int16_t attrs, int64_t pid)
{
    memset(buf, 0, KAFKA_BATCH_HEADER_SIZE);
    for (int i = 0; i < 8; i++) {
        buf[KAFKA_BATCH_OFF_BASE_OFFSET + i] = (uint8_t)((uint64_t)base >> (56 - 8 * i));
        buf[KAFKA_BATCH_OFF_PRODUCER_ID + i] = (uint8_t)((uint64_t)pid >> (56 - 8 * i));
    }
    int32_t len = KAFKA_BATCH_HEADER_SIZE - KAFKA_BATCH_LOG_OVERHEAD;
    for (int i = 0; i < 4; i++) {
        buf[KAFKA_BATCH_OFF_LENGTH + i] = (uint8_t)((uint32_t)len >> (24 - 8 * i));
        buf[KAFKA_BATCH_OFF_LAST_OFFSET_DELTA + i] = (uint8_t)((uint32_t)(n - 1) >> (24 - 8 * i));
    }
    buf[KAFKA_BATCH_OFF_MAGIC] = KAFKA_BATCH_MAGIC_V2;
    buf[KAFKA_BATCH_OFF_ATTRIBUTES] = (uint8_t)((uint16_t)attrs >> 8);
    buf[KAFKA_BATCH_OFF_ATTRIBUTES + 1] = (uint8_t)attrs;
    return KAFKA_BATCH_HEADER_SIZE;
}

/* Control batches (a Raft LeaderChange at 0, transaction markers) are never acquired: they are
 * archived without a delivery, the start offset moves over them, they never come back; under
 * read_committed the batches of an aborted transaction too, not under read_uncommitted. */
static void test_skips_control_and_aborted(void **state)
{
    (void)state;
    enum { CTRL = KAFKA_BATCH_ATTR_CONTROL, TXN = KAFKA_BATCH_ATTR_TRANSACTIONAL };
    uint8_t log[8 * KAFKA_BATCH_HEADER_SIZE];
    size_t len = 0;
    len += put_batch(log + len, 0, 1, CTRL, -1);      /* Raft LeaderChange */
    len += put_batch(log + len, 1, 3, 0, -1);         /* 1-3 plain */
    len += put_batch(log + len, 4, 2, TXN, 7);        /* 4-5 producer 7, aborted */
    len += put_batch(log + len, 6, 2, TXN, 8);        /* 6-7 producer 8, committed */
    len += put_batch(log + len, 8, 1, TXN | CTRL, 7); /* 8 abort marker of 7 */
    len += put_batch(log + len, 9, 1, TXN | CTRL, 8); /* 9 commit marker of 8 */
    len += put_batch(log + len, 10, 2, 0, -1);        /* 10-11 plain */
    struct lm_share_aborted ab[] = {{7, 4, 8}};
    struct lm_share_skip sk[8];
    /* read_uncommitted: only the control batches, the two markers merged */
    int32_t n = lm_share_skips(log, len, false, ab, 1, sk, 8);
    assert_int_equal(n, 2);
    assert_true(sk[0].first == 0 && sk[0].last == 0 && sk[1].first == 8 && sk[1].last == 9);
    /* read_committed: producer 7's batch too, and not producer 8's */
    n = lm_share_skips(log, len, true, ab, 1, sk, 8);
    assert_int_equal(n, 3);
    assert_true(sk[0].first == 0 && sk[0].last == 0 && sk[1].first == 4 && sk[1].last == 5 &&
                sk[2].first == 8 && sk[2].last == 9);
    /* a truncated tail ends the walk; no room for more runs stops too */
    assert_int_equal(lm_share_skips(log, KAFKA_BATCH_HEADER_SIZE - 1, false, ab, 1, sk, 8), 0);
    assert_int_equal(lm_share_skips(log, len, true, ab, 1, sk, 1), 1);

    struct lm_share_part sp = sp_new(1000, 5, 100);
    lm_share_part_start(&sp, 0);
    struct lm_share_range r[16];
    n = lm_share_skips(log, len, true, ab, 1, sk, 8);
    int32_t archived = -1;
    int32_t nr = lm_share_part_acquire_skip(&sp, 0, 1, 0, 11, 12, 100, sk, n, r, 16, &archived);
    assert_int_equal(archived, 5); /* 0, 4, 5, 8, 9 */
    expect_ranges(r, nr, (const int64_t[][2]){{1, 3}, {6, 7}, {10, 11}}, 3);
    assert_int_equal(sp.start, 1); /* the control record at 0 is done */
    int32_t d = -1;
    assert_int_equal(lm_share_part_state(&sp, 8, &d), LM_SHARE_ARCHIVED);
    assert_int_equal(d, 0); /* never delivered */
    /* everything else accepted: the start offset passes the archived records */
    assert_int_equal(lm_share_part_ack(&sp, 1, 1, 3, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 6, 7, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(sp.start, 10);
    /* a release and a lock timeout never bring an archived one back */
    assert_int_equal(lm_share_part_ack(&sp, 1, 10, 11, LM_SHARE_ACK_RELEASE), KAFKA_NONE);
    assert_int_equal(lm_share_part_next(&sp, 12), 10);
    assert_int_equal(lm_share_part_lock_deadline(&sp), INT64_MAX);
    lm_share_part_deinit(&sp);

    /* max_records counts acquired records only; the archived ones are not in the ranges */
    sp = sp_new(1000, 5, 100);
    lm_share_part_start(&sp, 0);
    struct lm_share_skip only0 = {0, 0};
    nr = lm_share_part_acquire_skip(&sp, 0, 1, 0, 11, 12, 2, &only0, 1, r, 16, &archived);
    expect_ranges(r, nr, (const int64_t[][2]){{1, 2}}, 1);
    assert_int_equal(archived, 1);
    assert_int_equal(lm_share_part_lock_deadline(&sp), 1000);
    lm_share_part_deinit(&sp);
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
        cmocka_unit_test(test_skips_control_and_aborted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
