/* Idempotent producer state: the rules of producer_state.h, snapshot, log replay, expiry, and
 * a randomized comparison against a simple model. LAMINAR_PRODUCER_RANDOM_ROUNDS sets the
 * number of random steps (default 20000); the seed is printed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>

#include "broker/producer/producer_state.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "protocol/kafka_errors.h"

static struct lm_producer_state *mk(uint32_t cap)
{
    struct lm_producer_state *s = NULL;
    assert_int_equal(lm_producer_state_new(cap, LM_PRODUCER_EXPIRATION_MS_DEFAULT, &s), 0);
    return s;
}

static struct lm_producer_check_result chk(struct lm_producer_state *s, int64_t pid, int16_t ep,
                                           int32_t first, int32_t last)
{
    struct lm_producer_check_result r;
    assert_int_equal(lm_producer_check(s, pid, ep, first, last, &r), 0);
    return r;
}

static void rec(struct lm_producer_state *s, int64_t pid, int16_t ep, int32_t first, int32_t last,
                int64_t off, int64_t now)
{
    int32_t n = last >= first ? last - first : (INT32_MAX - first) + last + 1;
    struct lm_producer_batch b = {first, last, off, off + n, 1000 + off};
    assert_int_equal(lm_producer_record(s, pid, ep, &b, now), 0);
}

static void test_seq_add_wraps(void **st)
{
    (void)st;
    assert_int_equal(lm_producer_seq_add(0, 4), 4);
    assert_int_equal(lm_producer_seq_add(INT32_MAX, 0), INT32_MAX);
    assert_int_equal(lm_producer_seq_add(INT32_MAX, 1), 0);
    assert_int_equal(lm_producer_seq_add(INT32_MAX - 2, 5), 2);
}

static void test_unknown_producer_any_sequence(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(16);
    assert_int_equal(chk(s, 7, 0, 0, 4).verdict, LM_PRODUCER_ACCEPT);
    /* KIP-360 / Kafka 2.5+: no state, any sequence is accepted */
    assert_int_equal(chk(s, 7, 3, 999, 1003).verdict, LM_PRODUCER_ACCEPT);
    struct lm_producer_check_result r;
    assert_int_equal(lm_producer_check(s, -1, 0, 0, 0, &r), LM_E_INVALID);
    assert_int_equal(lm_producer_check(s, 7, 0, -1, 0, &r), LM_E_INVALID);
    lm_producer_state_free(s);
}

static void test_in_sequence_duplicate_gap(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(16);
    rec(s, 7, 0, 0, 4, 100, 1);
    struct lm_producer_check_result r = chk(s, 7, 0, 5, 9);
    assert_int_equal(r.verdict, LM_PRODUCER_ACCEPT);
    rec(s, 7, 0, 5, 9, 105, 2);
    /* exact duplicates of both batches: original offsets, no append */
    r = chk(s, 7, 0, 0, 4);
    assert_int_equal(r.verdict, LM_PRODUCER_DUPLICATE);
    assert_int_equal(r.dup.first_offset, 100);
    assert_int_equal(r.dup.last_offset, 104);
    r = chk(s, 7, 0, 5, 9);
    assert_int_equal(r.verdict, LM_PRODUCER_DUPLICATE);
    assert_int_equal(r.dup.first_offset, 105);
    /* a gap, and an overlapping range that is not a cached batch */
    r = chk(s, 7, 0, 11, 12);
    assert_int_equal(r.verdict, LM_PRODUCER_REJECT);
    assert_int_equal(r.error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    r = chk(s, 7, 0, 3, 6);
    assert_int_equal(r.error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    /* other producers are independent */
    assert_int_equal(chk(s, 8, 0, 42, 42).verdict, LM_PRODUCER_ACCEPT);
    lm_producer_state_free(s);
}

static void test_only_last_five_batches(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(4);
    for (int i = 0; i < 7; i++)
        rec(s, 1, 0, i * 2, i * 2 + 1, 10 * i, i);
    /* batches 0 and 1 fell out of the window; 2..6 are duplicates */
    assert_int_equal(chk(s, 1, 0, 0, 1).error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_int_equal(chk(s, 1, 0, 2, 3).error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    for (int i = 2; i < 7; i++) {
        struct lm_producer_check_result r = chk(s, 1, 0, i * 2, i * 2 + 1);
        assert_int_equal(r.verdict, LM_PRODUCER_DUPLICATE);
        assert_int_equal(r.dup.first_offset, 10 * i);
    }
    int16_t ep;
    struct lm_producer_batch bs[LM_PRODUCER_BATCHES_MAX];
    int n;
    assert_int_equal(lm_producer_get(s, 1, &ep, bs, &n), 0);
    assert_int_equal(n, 5);
    assert_int_equal(bs[0].first_seq, 4);
    assert_int_equal(bs[4].last_seq, 13);
    lm_producer_state_free(s);
}

static void test_epochs(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(4);
    rec(s, 1, 5, 0, 9, 0, 1);
    struct lm_producer_check_result r = chk(s, 1, 4, 10, 10);
    assert_int_equal(r.verdict, LM_PRODUCER_REJECT);
    assert_int_equal(r.error_code, KAFKA_INVALID_PRODUCER_EPOCH);
    /* an old epoch is refused even for what would be a duplicate */
    assert_int_equal(chk(s, 1, 4, 0, 9).error_code, KAFKA_INVALID_PRODUCER_EPOCH);
    /* a new epoch must start at 0 */
    assert_int_equal(chk(s, 1, 6, 10, 10).error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_int_equal(chk(s, 1, 6, 0, 3).verdict, LM_PRODUCER_ACCEPT);
    rec(s, 1, 6, 0, 3, 10, 2);
    /* the new epoch dropped the old epoch's batches: not a duplicate under the new epoch */
    assert_int_equal(chk(s, 1, 6, 0, 9).error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_int_equal(chk(s, 1, 6, 0, 3).verdict, LM_PRODUCER_DUPLICATE);
    assert_int_equal(chk(s, 1, 5, 4, 4).error_code, KAFKA_INVALID_PRODUCER_EPOCH);
    struct lm_producer_batch b = {4, 4, 20, 20, 0};
    assert_int_equal(lm_producer_record(s, 1, 5, &b, 3), LM_E_STATE);
    lm_producer_state_free(s);
}

static void test_sequence_wrap(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(4);
    rec(s, 3, 0, INT32_MAX - 4, INT32_MAX, 0, 1);
    struct lm_producer_check_result r = chk(s, 3, 0, 0, 2);
    assert_int_equal(r.verdict, LM_PRODUCER_ACCEPT);
    rec(s, 3, 0, 0, 2, 5, 2);
    assert_int_equal(chk(s, 3, 0, 3, 3).verdict, LM_PRODUCER_ACCEPT);
    assert_int_equal(chk(s, 3, 0, 0, 2).verdict, LM_PRODUCER_DUPLICATE);
    /* a batch that itself wraps */
    struct lm_producer_state *t = mk(4);
    rec(t, 3, 0, 0, INT32_MAX - 3, 0, 1);
    int32_t last = lm_producer_seq_add(INT32_MAX - 2, 4);
    assert_int_equal(last, 1);
    assert_int_equal(chk(t, 3, 0, INT32_MAX - 2, last).verdict, LM_PRODUCER_ACCEPT);
    rec(t, 3, 0, INT32_MAX - 2, last, 100, 2);
    assert_int_equal(chk(t, 3, 0, 2, 2).verdict, LM_PRODUCER_ACCEPT);
    assert_int_equal(chk(t, 3, 0, 0, 0).error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    lm_producer_state_free(s);
    lm_producer_state_free(t);
}

static void test_expiry_then_retry_not_out_of_order(void **st)
{
    (void)st;
    struct lm_producer_state *s = NULL;
    assert_int_equal(lm_producer_state_new(8, 1000, &s), 0);
    rec(s, 1, 0, 0, 4, 0, 100);
    rec(s, 2, 0, 0, 0, 5, 600);
    assert_int_equal(lm_producer_expire(s, 1099), 0);
    assert_int_equal(lm_producer_expire(s, 1100), 1); /* idle exactly expiration_ms */
    assert_int_equal(lm_producer_state_count(s), 1);
    /* Redpanda #22670: after expiry a producer continuing at seq 5 (or retrying anything) is
     * an unknown producer and accepted, never OUT_OF_ORDER_SEQUENCE_NUMBER */
    assert_int_equal(chk(s, 1, 0, 5, 9).verdict, LM_PRODUCER_ACCEPT);
    assert_int_equal(chk(s, 1, 0, 0, 4).verdict, LM_PRODUCER_ACCEPT);
    /* activity keeps a producer alive */
    rec(s, 2, 0, 1, 1, 6, 1500);
    assert_int_equal(lm_producer_expire(s, 2400), 0);
    assert_int_equal(lm_producer_expire(s, 2500), 1);
    assert_int_equal(lm_producer_state_count(s), 0);
    lm_producer_state_free(s);
}

static void test_eviction_bound(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(3);
    rec(s, 10, 0, 0, 0, 0, 5);
    rec(s, 20, 0, 0, 0, 1, 1); /* idle longest */
    rec(s, 30, 0, 0, 0, 2, 7);
    rec(s, 40, 0, 0, 0, 3, 9);
    assert_int_equal(lm_producer_state_count(s), 3);
    assert_int_equal(lm_producer_state_evictions(s), 1);
    int16_t ep;
    struct lm_producer_batch bs[LM_PRODUCER_BATCHES_MAX];
    int n;
    assert_int_equal(lm_producer_get(s, 20, &ep, bs, &n), LM_E_NOT_FOUND);
    assert_int_equal(lm_producer_get(s, 10, &ep, bs, &n), 0);
    lm_producer_state_free(s);
}

static void test_describe(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(8);
    rec(s, 9, 2, 0, 3, 50, 1);
    rec(s, 4, 0, 0, 0, 10, 1);
    rec(s, 4, 0, 1, 6, 11, 1);
    struct lm_producer_info rows[4];
    assert_int_equal(lm_producer_describe(s, rows, 4), 2);
    assert_int_equal(rows[0].producer_id, 4);
    assert_int_equal(rows[0].epoch, 0);
    assert_int_equal(rows[0].last_sequence, 6);
    assert_int_equal(rows[0].last_timestamp_ms, 1011); /* rec(): timestamp 1000 + offset */
    assert_int_equal(rows[0].coordinator_epoch, -1);
    assert_int_equal(rows[0].current_txn_start_offset, -1);
    assert_int_equal(rows[1].producer_id, 9);
    assert_int_equal(rows[1].epoch, 2);
    assert_int_equal(rows[1].last_sequence, 3);
    assert_int_equal(lm_producer_describe(s, rows, 1), 1);
    lm_producer_state_free(s);
}

static void test_snapshot_roundtrip_and_golden(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(8);
    struct lm_producer_batch b = {0, 1, 0x10, 0x11, 0x20};
    assert_int_equal(lm_producer_record(s, 0x0102, 3, &b, 0x30), 0);
    uint8_t buf[256];
    size_t len;
    assert_int_equal(lm_producer_snapshot_size(s), 18 + 31 + 32 + 4);
    assert_int_equal(lm_producer_snapshot_encode(s, 0x12, buf, sizeof(buf), &len), 0);
    assert_int_equal(len, lm_producer_snapshot_size(s));
    /* hand-built bytes of the documented format (without the CRC) */
    const uint8_t want[] = {
        'L',  'M',  'P',  'S',  0,    2,                            /* magic, version */
        0,    0,    0,    0,    0,    0,    0,    0x12, 0, 0, 0, 1, /* next offset, count */
        0,    0,    0,    0,    0,    0,    1,    2,    0, 3,       /* producer id, epoch */
        0,    0,    0,    0,    0,    0,    0,    0x30,             /* last update */
        0xff, 0xff, 0xff, 0xff,                                     /* coordinator epoch -1 */
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,             /* txn start -1 */
        1,                                                          /* one batch */
        0,    0,    0,    0,    0,    0,    0,    1,                /* seqs 0..1 */
        0,    0,    0,    0,    0,    0,    0,    0x10, 0, 0, 0, 0,
        0,    0,    0,    0x11, 0,    0,    0,    0,    0, 0, 0, 0x20,
    };
    assert_int_equal(len, sizeof(want) + 4);
    assert_memory_equal(buf, want, sizeof(want));
    rec(s, 77, 1, 100, 104, 500, 40);
    assert_int_equal(lm_producer_snapshot_encode(s, 600, buf, sizeof(buf), &len), 0);
    size_t small;
    assert_int_equal(lm_producer_snapshot_encode(s, 600, buf, len - 1, &small), LM_E_FULL);

    struct lm_producer_state *t = mk(8);
    int64_t next = 0;
    assert_int_equal(lm_producer_snapshot_decode(t, buf, len, &next), 0);
    assert_int_equal(next, 600);
    assert_int_equal(lm_producer_state_count(t), 2);
    assert_int_equal(chk(t, 77, 1, 100, 104).verdict, LM_PRODUCER_DUPLICATE);
    assert_int_equal(chk(t, 77, 1, 105, 105).verdict, LM_PRODUCER_ACCEPT);
    assert_int_equal(chk(t, 0x0102, 2, 2, 2).error_code, KAFKA_INVALID_PRODUCER_EPOCH);

    /* every single-bit flip is caught by the CRC */
    for (size_t i = 0; i < len; i++) {
        buf[i] ^= 0x04;
        assert_int_not_equal(lm_producer_snapshot_decode(t, buf, len, &next), 0);
        assert_int_equal(lm_producer_state_count(t), 0);
        buf[i] ^= 0x04;
    }
    for (size_t cut = 0; cut < len; cut++)
        assert_int_not_equal(lm_producer_snapshot_decode(t, buf, cut, &next), 0);
    struct lm_producer_state *tiny = mk(1);
    assert_int_equal(lm_producer_snapshot_decode(tiny, buf, len, &next), LM_E_FULL);
    lm_producer_state_free(tiny);
    lm_producer_state_free(s);
    lm_producer_state_free(t);
}

/* Transactions (Kafka ProducerStateEntry.currentTxnFirstOffset, appendEndTxnMarker): the first
 * offset of the open transaction, its end by a marker, the marker's epoch and coordinator epoch
 * checks, the same state rebuilt from the log, and a snapshot carrying an open transaction. */
static void test_transactions(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(8);
    rec(s, 5, 0, 0, 2, 10, 100); /* offsets 10..12 */
    assert_int_equal(lm_producer_txn_begin(s, 5, 10), 0);
    rec(s, 5, 0, 3, 3, 13, 101);
    assert_int_equal(lm_producer_txn_begin(s, 5, 13), 0); /* still the first */
    assert_int_equal(lm_producer_txn_open(s, 5), 10);
    assert_int_equal(lm_producer_txn_begin(s, 6, 1), LM_E_NOT_FOUND);
    int16_t err;
    lm_producer_check_txn(s, 5, false, &err);
    assert_int_equal(err, KAFKA_INVALID_TXN_STATE);
    lm_producer_check_txn(s, 5, true, &err);
    assert_int_equal(err, KAFKA_NONE);
    lm_producer_check_txn(s, 9, false, &err);
    assert_int_equal(err, KAFKA_NONE);
    struct lm_producer_info row;
    assert_int_equal(lm_producer_describe(s, &row, 1), 1);
    assert_int_equal(row.current_txn_start_offset, 10);

    /* snapshot round trip keeps the open transaction */
    uint8_t buf[512];
    size_t len;
    int64_t next;
    assert_int_equal(lm_producer_snapshot_encode(s, 14, buf, sizeof(buf), &len), 0);
    struct lm_producer_state *t = mk(8);
    assert_int_equal(lm_producer_snapshot_decode(t, buf, len, &next), 0);
    assert_int_equal(lm_producer_txn_open(t, 5), 10);
    /* a version 1 snapshot (no transactions tracked) is refused */
    buf[5] = 1;
    uint32_t crc = crc32c_update(0, buf, len - 4);
    buf[len - 4] = (uint8_t)(crc >> 24), buf[len - 3] = (uint8_t)(crc >> 16);
    buf[len - 2] = (uint8_t)(crc >> 8), buf[len - 1] = (uint8_t)crc;
    assert_int_equal(lm_producer_snapshot_decode(t, buf, len, &next), LM_E_UNSUPPORTED);

    /* markers: coordinator epoch 4 closes it; then an older coordinator or epoch is fenced */
    assert_int_equal(lm_producer_check_marker(s, 5, 0, 4), KAFKA_NONE);
    assert_int_equal(lm_producer_marker(s, 5, 0, 4, 200), 0);
    assert_int_equal(lm_producer_txn_open(s, 5), -1);
    assert_int_equal(lm_producer_check_marker(s, 5, 0, 3), KAFKA_TRANSACTION_COORDINATOR_FENCED);
    assert_int_equal(lm_producer_check_marker(s, 5, 0, 4), KAFKA_NONE);
    /* a marker of a bumped epoch (a fenced producer's transaction aborted) moves the epoch up */
    assert_int_equal(lm_producer_marker(s, 5, 1, 4, 201), 0);
    assert_int_equal(lm_producer_check_marker(s, 5, 0, 5), KAFKA_INVALID_PRODUCER_EPOCH);
    assert_int_equal(chk(s, 5, 0, 4, 4).error_code, KAFKA_INVALID_PRODUCER_EPOCH);
    assert_int_equal(chk(s, 5, 1, 0, 0).verdict, LM_PRODUCER_ACCEPT);
    assert_int_equal(lm_producer_check_marker(s, 77, 0, 0), KAFKA_NONE); /* unknown producer */

    /* the log replayed gives the same: data opens, the marker closes, a later batch reopens */
    struct lm_producer_state *r = mk(8);
    struct lm_producer_log_batch log[] = {
        {5, 0, 0, 2, 10, 100, false, true, -1},
        {5, 0, 3, 0, 13, 101, false, true, -1},
        {5, 0, -1, 0, 14, 102, true, true, 4},
        {5, 0, 4, 0, 15, 103, false, true, -1},
    };
    for (int i = 0; i < 3; i++)
        assert_int_equal(lm_producer_replay(r, &log[i], 50), 0);
    assert_int_equal(lm_producer_txn_open(r, 5), -1);
    assert_int_equal(lm_producer_check_marker(r, 5, 0, 3), KAFKA_TRANSACTION_COORDINATOR_FENCED);
    assert_int_equal(lm_producer_replay(r, &log[3], 50), 0);
    assert_int_equal(lm_producer_txn_open(r, 5), 15);
    lm_producer_state_free(r);
    lm_producer_state_free(t);
    lm_producer_state_free(s);
}

/* A snapshot is untrusted input: with a good CRC but an epoch no producer can have, or a
 * negative producer id, it is refused (the caller rebuilds from the log) and nothing of it is
 * kept. */
static void test_snapshot_refuses_impossible_fields(void **st)
{
    (void)st;
    struct lm_producer_state *s = mk(8), *t = mk(8);
    struct lm_producer_batch b = {0, 1, 0x10, 0x11, 0x20};
    assert_int_equal(lm_producer_record(s, 0x0102, 3, &b, 0x30), 0);
    uint8_t buf[256];
    size_t len;
    assert_int_equal(lm_producer_snapshot_encode(s, 0x12, buf, sizeof(buf), &len), 0);
    const size_t id_at = 18, epoch_at = 26; /* after magic, version, next offset, count */
    struct {
        size_t at;
        uint8_t v;
    } patches[] = {{epoch_at, 0xff}, {id_at, 0x80}};
    for (size_t i = 0; i < sizeof(patches) / sizeof(patches[0]); i++) {
        uint8_t bad[256];
        memcpy(bad, buf, len);
        bad[patches[i].at] = patches[i].v; /* epoch -253 / producer id < 0 */
        uint32_t crc = crc32c_update(0, bad, len - 4);
        bad[len - 4] = (uint8_t)(crc >> 24), bad[len - 3] = (uint8_t)(crc >> 16);
        bad[len - 2] = (uint8_t)(crc >> 8), bad[len - 1] = (uint8_t)crc;
        int64_t next = 0;
        assert_int_equal(lm_producer_snapshot_decode(t, bad, len, &next), LM_E_CORRUPT);
        assert_int_equal(lm_producer_state_count(t), 0);
    }
    lm_producer_state_free(s);
    lm_producer_state_free(t);
}

static void test_replay_from_log(void **st)
{
    (void)st;
    /* live state built by check/record equals the state rebuilt from the batch headers */
    struct lm_producer_state *live = mk(8), *rebuilt = mk(8);
    struct lm_producer_log_batch log[] = {
        {5, 0, 0, 2, 0, 100, false, false, -1},
        {-1, -1, -1, 0, 3, 101, false, false, -1}, /* not idempotent */
        {5, 0, 3, 0, 4, 102, false, false, -1},
        {6, 1, INT32_MAX - 1, 3, 5, 103, false, false, -1}, /* wraps */
        {5, 1, 0, 1, 9, 104, false, false, -1},             /* epoch bump */
        {7, 0, 0, 0, 11, 105, true, false, -1},             /* control batch */
    };
    for (size_t i = 0; i < sizeof(log) / sizeof(log[0]); i++) {
        const struct lm_producer_log_batch *b = &log[i];
        assert_int_equal(lm_producer_replay(rebuilt, b, 50), 0);
        if (b->producer_id < 0 || b->is_control)
            continue;
        int32_t last = lm_producer_seq_add(b->base_seq, b->last_offset_delta);
        struct lm_producer_check_result r = chk(live, b->producer_id, b->epoch, b->base_seq, last);
        assert_int_equal(r.verdict, LM_PRODUCER_ACCEPT);
        struct lm_producer_batch pb = {b->base_seq, last, b->base_offset,
                                       b->base_offset + b->last_offset_delta, b->max_timestamp_ms};
        assert_int_equal(lm_producer_record(live, b->producer_id, b->epoch, &pb, 50), 0);
    }
    int64_t pids[] = {5, 6};
    for (size_t i = 0; i < 2; i++) {
        int16_t e1, e2;
        struct lm_producer_batch b1[5], b2[5];
        int n1, n2;
        assert_int_equal(lm_producer_get(live, pids[i], &e1, b1, &n1), 0);
        assert_int_equal(lm_producer_get(rebuilt, pids[i], &e2, b2, &n2), 0);
        assert_int_equal(e1, e2);
        assert_int_equal(n1, n2);
        assert_memory_equal(b1, b2, (size_t)n1 * sizeof(b1[0]));
    }
    int16_t ep;
    struct lm_producer_batch bs[5];
    int n;
    assert_int_equal(lm_producer_get(rebuilt, 6, &ep, bs, &n), 0);
    assert_int_equal(bs[0].last_seq, 1);
    assert_int_equal(lm_producer_get(rebuilt, 7, &ep, bs, &n), 0);
    assert_int_equal(ep, 0);
    assert_int_equal(n, 0);
    /* after the marker, epoch 0 is known with no batch: seq 0 only */
    assert_int_equal(chk(rebuilt, 7, 0, 3, 3).error_code, KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_int_equal(chk(rebuilt, 7, 0, 0, 0).verdict, LM_PRODUCER_ACCEPT);
    struct lm_producer_log_batch bad = {5, -2, 0, 0, 0, 0, false, false, -1};
    assert_int_equal(lm_producer_replay(rebuilt, &bad, 0), LM_E_CORRUPT);
    lm_producer_state_free(live);
    lm_producer_state_free(rebuilt);
}

/* ---- randomized comparison with a simple model ----
 * The model keeps, per producer, the epoch and EVERY batch ever accepted in that epoch; its
 * verdict for a batch: old epoch -> INVALID_PRODUCER_EPOCH; new epoch -> seq 0 or
 * OUT_OF_ORDER; same epoch -> duplicate if equal to one of the last five, next if it follows
 * the last, else OUT_OF_ORDER; unknown -> accept. Clients send mostly in-order batches, plus
 * retries of recent and old batches, gaps, epoch bumps and stale epochs. */

#define RP    4
#define RHIST 4096

struct model_prod {
    bool known;
    int16_t epoch;
    int n;
    struct lm_producer_batch hist[RHIST];
};

static uint64_t rnd_state;

static uint64_t rnd(void)
{
    rnd_state ^= rnd_state << 13;
    rnd_state ^= rnd_state >> 7;
    rnd_state ^= rnd_state << 17;
    return rnd_state;
}

static void model_check(const struct model_prod *m, int16_t ep, int32_t first, int32_t last,
                        struct lm_producer_check_result *r)
{
    memset(r, 0, sizeof(*r));
    if (!m->known) {
        r->verdict = LM_PRODUCER_ACCEPT;
    } else if (ep < m->epoch) {
        r->verdict = LM_PRODUCER_REJECT;
        r->error_code = KAFKA_INVALID_PRODUCER_EPOCH;
    } else if (ep > m->epoch) {
        r->verdict = first == 0 ? LM_PRODUCER_ACCEPT : LM_PRODUCER_REJECT;
        r->error_code = first == 0 ? 0 : KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
    } else {
        int lo = m->n > 5 ? m->n - 5 : 0;
        for (int i = lo; i < m->n; i++) {
            if (m->hist[i].first_seq == first && m->hist[i].last_seq == last) {
                r->verdict = LM_PRODUCER_DUPLICATE;
                r->dup = m->hist[i];
                return;
            }
        }
        int32_t expect = m->n ? lm_producer_seq_add(m->hist[m->n - 1].last_seq, 1) : 0;
        r->verdict = first == expect ? LM_PRODUCER_ACCEPT : LM_PRODUCER_REJECT;
        r->error_code = first == expect ? 0 : KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
    }
}

static void test_randomized_against_model(void **st)
{
    (void)st;
    const char *env_rounds = getenv("LAMINAR_PRODUCER_RANDOM_ROUNDS");
    const char *env_seed = getenv("LAMINAR_PRODUCER_SEED");
    long rounds = env_rounds ? atol(env_rounds) : 20000;
    rnd_state = env_seed ? strtoull(env_seed, NULL, 0) : (uint64_t)time(NULL) * 2654435761u + 1;
    printf("producer randomized test: seed %llu rounds %ld\n", (unsigned long long)rnd_state,
           rounds);
    struct lm_producer_state *s = mk(RP);
    static struct model_prod model[RP];
    memset(model, 0, sizeof(model));
    int64_t offset = 0;
    int64_t accepted = 0, dups = 0, rejects = 0;
    for (long step = 0; step < rounds; step++) {
        int p = (int)(rnd() % RP);
        struct model_prod *m = &model[p];
        int16_t ep = m->known ? m->epoch : 0;
        int32_t first, last;
        int kind = (int)(rnd() % 100);
        int32_t next = m->n ? lm_producer_seq_add(m->hist[m->n - 1].last_seq, 1) : 0;
        if (m->n > RHIST - 2) { /* keep the history bounded: a new epoch restarts it */
            kind = 99;
        }
        if (kind < 60 || !m->known) { /* in order, sometimes near the wrap */
            first = next;
            if (m->n == 0 && rnd() % 4 == 0)
                first = m->known ? 0 : INT32_MAX - (int32_t)(rnd() % 8);
        } else if (kind < 78 && m->n > 0) { /* retry of a recent or old batch */
            int back = 1 + (int)(rnd() % (m->n < 8 ? m->n : 8));
            first = m->hist[m->n - back].first_seq;
            last = m->hist[m->n - back].last_seq;
            goto have_range;
        } else if (kind < 88) { /* gap or overlap */
            first = lm_producer_seq_add(next, 1 + (int32_t)(rnd() % 3));
            if (rnd() % 2 && next > 2)
                first = next - 2;
        } else if (kind < 94 && m->epoch > 0) { /* stale epoch */
            ep = (int16_t)(m->epoch - 1);
            first = next;
        } else { /* epoch bump, usually from 0 */
            ep = (int16_t)(m->epoch + 1);
            first = rnd() % 5 == 0 ? 3 : 0;
        }
        last = lm_producer_seq_add(first, (int32_t)(rnd() % 5));
    have_range:;
        struct lm_producer_check_result got, want;
        assert_int_equal(lm_producer_check(s, p, ep, first, last, &got), 0);
        model_check(m, ep, first, last, &want);
        if (got.verdict != want.verdict || got.error_code != want.error_code ||
            (want.verdict == LM_PRODUCER_DUPLICATE &&
             got.dup.first_offset != want.dup.first_offset)) {
            fail_msg("seed mismatch at step %ld: producer %d epoch %d seq %d..%d got %d/%d "
                     "want %d/%d",
                     step, p, ep, first, last, got.verdict, got.error_code, want.verdict,
                     want.error_code);
        }
        if (got.verdict == LM_PRODUCER_ACCEPT) {
            int32_t n = last >= first ? last - first : (INT32_MAX - first) + last + 1;
            struct lm_producer_batch b = {first, last, offset, offset + n, step};
            offset += n + 1;
            assert_int_equal(lm_producer_record(s, p, ep, &b, step), 0);
            if (!m->known || ep != m->epoch) {
                m->n = 0;
                m->epoch = ep;
                m->known = true;
            }
            m->hist[m->n++] = b;
            accepted++;
        } else if (got.verdict == LM_PRODUCER_DUPLICATE) {
            dups++;
        } else {
            rejects++;
        }
        if (step % 997 == 0) { /* snapshot round trip in the middle of the run */
            static uint8_t buf[1 << 14];
            size_t len;
            int64_t next_off;
            assert_int_equal(lm_producer_snapshot_encode(s, offset, buf, sizeof(buf), &len), 0);
            assert_int_equal(lm_producer_snapshot_decode(s, buf, len, &next_off), 0);
            assert_int_equal(next_off, offset);
        }
    }
    printf("producer randomized test: %lld accepted, %lld duplicates, %lld rejected\n",
           (long long)accepted, (long long)dups, (long long)rejects);
    assert_true(accepted > 0 && dups > 0 && rejects > 0);
    lm_producer_state_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_seq_add_wraps),
        cmocka_unit_test(test_unknown_producer_any_sequence),
        cmocka_unit_test(test_in_sequence_duplicate_gap),
        cmocka_unit_test(test_only_last_five_batches),
        cmocka_unit_test(test_epochs),
        cmocka_unit_test(test_sequence_wrap),
        cmocka_unit_test(test_expiry_then_retry_not_out_of_order),
        cmocka_unit_test(test_eviction_bound),
        cmocka_unit_test(test_describe),
        cmocka_unit_test(test_snapshot_roundtrip_and_golden),
        cmocka_unit_test(test_snapshot_refuses_impossible_fields),
        cmocka_unit_test(test_replay_from_log),
        cmocka_unit_test(test_transactions),
        cmocka_unit_test(test_randomized_against_model),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
