/* __share_group_state records (KIP-932): golden bytes of Kafka 4.1.1's serializer
 * (ShareCoordinatorRecordSerde on the generated Share{Snapshot,Update}{Key,Value} classes of the
 * kafka-share-coordinator 4.1.1 jar), round trips, every truncation and a too-large batch count
 * refused without reading past the end, replay of snapshots, updates and tombstones, and a
 * share partition saved and restored through them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/share_records.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static const uint8_t topic_id[16] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

/* Kafka 4.1.1: ShareSnapshotKey(g, 0102..10, 3); ShareSnapshotValue(snapshotEpoch 1, stateEpoch
 * 2, leaderEpoch 5, startOffset 10, createTimestamp 100, writeTimestamp 200, [10-12 acked x1]) */
static const char snap_key_hex[] = "00000001670102030405060708090a0b0c0d0e0f1000000003";
static const char snap_val_hex[] = "000000000001000000020000000500000000000000"
                                   "0a000000000000006400000000000000c802000000000000000a00000000"
                                   "0000000c0200010000";
/* ShareUpdateKey(g, 0102..10, 3); ShareUpdateValue(snapshotEpoch 1, leaderEpoch 5, startOffset
 * -1, [13-13 archived x2]) */
static const char upd_key_hex[] = "00010001670102030405060708090a0b0c0d0e0f1000000003";
static const char upd_val_hex[] = "00000000000100000005ffffffffffffffff02000000000000000d000000"
                                  "000000000d0400020000";

static void batches_equal(const struct lm_shr_batch *a, const struct lm_shr_batch *b, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        assert_int_equal(a[i].first, b[i].first);
        assert_int_equal(a[i].last, b[i].last);
        assert_int_equal(a[i].state, b[i].state);
        assert_int_equal(a[i].delivery_count, b[i].delivery_count);
    }
}

static size_t unhex(const char *h, uint8_t *out)
{
    size_t n = strlen(h) / 2;
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void check_bytes(const struct kafka_writer *w, const char *hex)
{
    uint8_t want[256];
    size_t n = unhex(hex, want);
    assert_int_equal(w->pos, n);
    assert_memory_equal(w->buf, want, n);
}

static void test_golden(void **state)
{
    (void)state;
    uint8_t buf[256];
    struct kafka_writer w;
    struct lm_shr_key k = {LM_SHR_SNAPSHOT, {"g", 1}, {0}, 3};
    memcpy(k.topic_id, topic_id, 16);
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_shr_key_encode(&w, &k), 0);
    check_bytes(&w, snap_key_hex);
    k.type = LM_SHR_UPDATE;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_shr_key_encode(&w, &k), 0);
    check_bytes(&w, upd_key_hex);

    struct lm_shr_batch sb = {10, 12, LM_SHARE_ACKNOWLEDGED, 1};
    struct lm_shr_value sv = {1, 2, 5, 10, 100, 200, 1, &sb};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_shr_value_encode(&w, LM_SHR_SNAPSHOT, &sv), 0);
    check_bytes(&w, snap_val_hex);
    struct lm_shr_batch ub = {13, 13, LM_SHARE_ARCHIVED, 2};
    struct lm_shr_value uv = {
        .snapshot_epoch = 1, .leader_epoch = 5, .start_offset = -1, .n_batches = 1, .batches = &ub};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_shr_value_encode(&w, LM_SHR_UPDATE, &uv), 0);
    check_bytes(&w, upd_val_hex);

    /* and Kafka's bytes decode to the same */
    uint8_t in[256];
    size_t n = unhex(upd_key_hex, in);
    struct lm_shr_key dk;
    assert_int_equal(lm_shr_key_type(in, n), LM_SHR_UPDATE);
    assert_int_equal(lm_shr_key_decode(in, n, &dk), 0);
    assert_int_equal(dk.type, LM_SHR_UPDATE);
    assert_int_equal(dk.group.len, 1);
    assert_memory_equal(dk.group.ptr, "g", 1);
    assert_memory_equal(dk.topic_id, topic_id, 16);
    assert_int_equal(dk.partition, 3);
    struct lm_shr_batch bs[4];
    struct lm_shr_value dv;
    n = unhex(snap_val_hex, in);
    assert_int_equal(lm_shr_value_decode(in, n, LM_SHR_SNAPSHOT, &dv, bs, 4), 0);
    assert_int_equal(dv.snapshot_epoch, 1);
    assert_int_equal(dv.state_epoch, 2);
    assert_int_equal(dv.leader_epoch, 5);
    assert_int_equal(dv.start_offset, 10);
    assert_int_equal(dv.create_ms, 100);
    assert_int_equal(dv.write_ms, 200);
    assert_int_equal(dv.n_batches, 1);
    assert_int_equal(bs[0].first, 10);
    assert_int_equal(bs[0].last, 12);
    assert_int_equal(bs[0].state, LM_SHARE_ACKNOWLEDGED);
    assert_int_equal(bs[0].delivery_count, 1);
    n = unhex(upd_val_hex, in);
    assert_int_equal(lm_shr_value_decode(in, n, LM_SHR_UPDATE, &dv, bs, 4), 0);
    assert_int_equal(dv.start_offset, -1);
    assert_int_equal(dv.n_batches, 1);
    assert_int_equal(bs[0].state, LM_SHARE_ARCHIVED);
    assert_int_equal(bs[0].delivery_count, 2);
}

/* Every strict prefix of a valid record is refused; the bytes sit at the end of a heap block
 * so that ASan catches a read past them. */
static void test_truncated(void **state)
{
    (void)state;
    const char *vals[] = {snap_val_hex, upd_val_hex};
    const int16_t types[] = {LM_SHR_SNAPSHOT, LM_SHR_UPDATE};
    for (int t = 0; t < 2; t++) {
        uint8_t in[256];
        size_t n = unhex(vals[t], in);
        for (size_t cut = 0; cut < n; cut++) {
            uint8_t *h = malloc(cut ? cut : 1);
            assert_non_null(h);
            memcpy(h, in, cut);
            struct lm_shr_batch bs[4];
            struct lm_shr_value v;
            assert_int_not_equal(lm_shr_value_decode(h, cut, types[t], &v, bs, 4), 0);
            free(h);
        }
    }
    uint8_t in[64];
    size_t n = unhex(snap_key_hex, in);
    for (size_t cut = 0; cut < n; cut++) {
        uint8_t *h = malloc(cut ? cut : 1);
        assert_non_null(h);
        memcpy(h, in, cut);
        struct lm_shr_key k;
        assert_int_not_equal(lm_shr_key_decode(h, cut, &k), 0);
        free(h);
    }
}

static void test_malformed(void **state)
{
    (void)state;
    uint8_t in[256];
    size_t n = unhex(upd_val_hex, in);
    struct lm_shr_batch bs[4];
    struct lm_shr_value v;
    /* no room for the one batch */
    assert_int_equal(lm_shr_value_decode(in, n, LM_SHR_UPDATE, &v, bs, 0), LM_E_TOO_LARGE);
    /* another value version */
    in[1] = 1;
    assert_int_equal(lm_shr_value_decode(in, n, LM_SHR_UPDATE, &v, bs, 4), LM_E_UNSUPPORTED);
    in[1] = 0;
    /* a batch count far beyond the bytes: refused before anything is read */
    uint8_t big[] = {0,    0,    0,    0,    0,    1,    0,    0,    0,    5,    0xff,
                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    assert_int_not_equal(lm_shr_value_decode(big, sizeof(big), LM_SHR_UPDATE, &v, bs, 4), 0);
    /* a null StateBatches */
    uint8_t nul[] = {0,    0,    0,    0,    0,    1,    0,    0,    0, 5,
                     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0};
    assert_int_equal(lm_shr_value_decode(nul, sizeof(nul), LM_SHR_UPDATE, &v, bs, 4), LM_E_INVALID);
    /* a bad delivery state, a batch with last < first */
    in[35] = 1; /* DeliveryState 1 (acquired) is never persisted */
    assert_int_equal(lm_shr_value_decode(in, n, LM_SHR_UPDATE, &v, bs, 4), LM_E_INVALID);
    in[35] = 4;
    in[34] = 0x0c; /* last offset 12 < first 13 */
    assert_int_equal(lm_shr_value_decode(in, n, LM_SHR_UPDATE, &v, bs, 4), LM_E_INVALID);
    /* key of another record type (a consumer-group key), a null group */
    uint8_t k2[] = {0, 3, 0, 1, 'g'};
    struct lm_shr_key k;
    assert_int_equal(lm_shr_key_decode(k2, sizeof(k2), &k), LM_E_UNSUPPORTED);
    uint8_t k3[] = {0, 0,  0xff, 0xff, 1,  2,  3,  4,  5, 6, 7, 8,
                    9, 10, 11,   12,   13, 14, 15, 16, 0, 0, 0, 0};
    assert_int_equal(lm_shr_key_decode(k3, sizeof(k3), &k), LM_E_INVALID);
    /* encoding refuses what it cannot write */
    uint8_t buf[64];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    struct lm_shr_batch bad = {5, 4, LM_SHARE_ARCHIVED, 1};
    struct lm_shr_value bv = {.start_offset = 0, .n_batches = 1, .batches = &bad};
    assert_int_equal(lm_shr_value_encode(&w, LM_SHR_UPDATE, &bv), LM_E_INVALID);
    struct lm_shr_key bk = {7, {"g", 1}, {0}, 0};
    assert_int_equal(lm_shr_key_encode(&w, &bk), LM_E_INVALID);
}

static void test_round_trip(void **state)
{
    (void)state;
    struct lm_shr_batch b[3] = {{100, 109, LM_SHARE_AVAILABLE, 3},
                                {110, 110, LM_SHARE_ARCHIVED, 5},
                                {111, 4000000000LL, LM_SHARE_ACKNOWLEDGED, 1}};
    struct lm_shr_value v = {7, 9, 11, 100, 1700000000000LL, 1700000000001LL, 3, b};
    for (int16_t type = 0; type <= 1; type++) {
        uint8_t buf[256];
        struct kafka_writer w;
        kafka_writer_init(&w, buf, sizeof(buf));
        assert_int_equal(lm_shr_value_encode(&w, type, &v), 0);
        struct lm_shr_batch out[3];
        struct lm_shr_value d;
        assert_int_equal(lm_shr_value_decode(buf, w.pos, type, &d, out, 3), 0);
        assert_int_equal(d.snapshot_epoch, 7);
        assert_int_equal(d.leader_epoch, 11);
        assert_int_equal(d.start_offset, 100);
        assert_int_equal(d.state_epoch, type == LM_SHR_SNAPSHOT ? 9 : 0);
        assert_int_equal(d.write_ms, type == LM_SHR_SNAPSHOT ? 1700000000001LL : 0);
        assert_int_equal(d.n_batches, 3);
        batches_equal(out, b, 3);
        /* a writer too small fails, never overflows */
        kafka_writer_init(&w, buf, 20);
        assert_int_not_equal(lm_shr_value_encode(&w, type, &v), 0);
    }
}

static void check_batches(const struct lm_shr_state *s, const struct lm_shr_batch *want, int32_t n)
{
    assert_int_equal(s->n, n);
    for (int32_t i = 0; i < n; i++) {
        assert_int_equal(s->batches[i].first, want[i].first);
        assert_int_equal(s->batches[i].last, want[i].last);
        assert_int_equal(s->batches[i].state, want[i].state);
        assert_int_equal(s->batches[i].delivery_count, want[i].delivery_count);
    }
}

static void test_replay(void **state)
{
    (void)state;
    struct lm_shr_state s;
    lm_shr_state_init(&s);
    struct lm_shr_batch sb[2] = {{10, 19, LM_SHARE_AVAILABLE, 1},
                                 {20, 29, LM_SHARE_ACKNOWLEDGED, 1}};
    struct lm_shr_value snap = {1, 0, 0, 10, 0, 0, 2, sb};
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &snap), 0);
    assert_true(s.present);
    check_batches(&s, sb, 2);
    /* an update inside the first batch splits it */
    struct lm_shr_batch u1 = {12, 13, LM_SHARE_ARCHIVED, 2};
    struct lm_shr_value up = {1, 0, 0, -1, 0, 0, 1, &u1};
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_UPDATE, &up), 0);
    struct lm_shr_batch w1[] = {{10, 11, 0, 1}, {12, 13, 4, 2}, {14, 19, 0, 1}, {20, 29, 2, 1}};
    check_batches(&s, w1, 4);
    assert_int_equal(s.start_offset, 10);
    /* one over two batches' edges, with a new start offset that drops 10-11 */
    struct lm_shr_batch u2 = {18, 21, LM_SHARE_ACKNOWLEDGED, 3};
    up.start_offset = 12;
    up.batches = &u2;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_UPDATE, &up), 0);
    struct lm_shr_batch w2[] = {{12, 13, 4, 2}, {14, 17, 0, 1}, {18, 21, 2, 3}, {22, 29, 2, 1}};
    check_batches(&s, w2, 4);
    assert_int_equal(s.updates, 2);
    /* past the end, and a start offset in the middle of a batch */
    struct lm_shr_batch u3 = {40, 40, LM_SHARE_AVAILABLE, 1};
    up.start_offset = 15;
    up.batches = &u3;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_UPDATE, &up), 0);
    struct lm_shr_batch w3[] = {{15, 17, 0, 1}, {18, 21, 2, 3}, {22, 29, 2, 1}, {40, 40, 0, 1}};
    check_batches(&s, w3, 4);
    /* a bad value changes nothing */
    struct lm_shr_batch bad = {50, 49, 0, 1};
    up.batches = &bad;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_UPDATE, &up), LM_E_INVALID);
    check_batches(&s, w3, 4);
    /* a new snapshot replaces everything, a tombstone clears it */
    snap.start_offset = 30;
    snap.n_batches = 0;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &snap), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(s.start_offset, 30);
    assert_int_equal(s.updates, 0);
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, NULL), 0);
    assert_false(s.present);
    lm_shr_state_deinit(&s);
}

/* Kafka 4.1.1's fencing (ShareCoordinatorShard): the highest leader epoch of the records and
 * the highest state epoch of the snapshots since the last tombstone; a write older in either is
 * refused, -1 is not checked; an initialization checks the state epoch alone. */
static void test_fence(void **state)
{
    (void)state;
    struct lm_shr_fence f;
    lm_shr_fence_init(&f);
    /* nothing recorded fences nothing; the first snapshot is epoch 0 */
    assert_int_equal(lm_shr_fence_write(&f, 0, 0), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_read(&f, 0), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_next_snapshot(&f), 0);
    struct lm_shr_value snap = {
        .snapshot_epoch = 0, .state_epoch = 2, .leader_epoch = 5, .start_offset = 10};
    lm_shr_fence_replay(&f, LM_SHR_SNAPSHOT, &snap);
    assert_int_equal(lm_shr_fence_next_snapshot(&f), 1);
    /* the old leader (epoch 4) after the new one wrote with 5: fenced */
    assert_int_equal(lm_shr_fence_write(&f, 4, 2), KAFKA_FENCED_LEADER_EPOCH);
    assert_int_equal(lm_shr_fence_write(&f, 5, 1), KAFKA_FENCED_STATE_EPOCH);
    assert_int_equal(lm_shr_fence_write(&f, 4, 1), KAFKA_FENCED_LEADER_EPOCH); /* leader first */
    assert_int_equal(lm_shr_fence_write(&f, 5, 2), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_write(&f, 6, 3), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_write(&f, -1, -1), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_read(&f, 4), KAFKA_FENCED_LEADER_EPOCH);
    assert_int_equal(lm_shr_fence_read(&f, -1), KAFKA_FENCED_LEADER_EPOCH); /* Kafka's */
    assert_int_equal(lm_shr_fence_read(&f, 5), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_initialize(&f, 1), KAFKA_FENCED_STATE_EPOCH);
    assert_int_equal(lm_shr_fence_initialize(&f, 2), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_initialize(&f, -1), KAFKA_NONE);
    /* an update raises the leader epoch, never lowers it; it carries no state epoch */
    struct lm_shr_value up = {.snapshot_epoch = 0, .leader_epoch = 7, .start_offset = -1};
    lm_shr_fence_replay(&f, LM_SHR_UPDATE, &up);
    assert_int_equal(lm_shr_fence_write(&f, 6, 2), KAFKA_FENCED_LEADER_EPOCH);
    up.leader_epoch = 3;
    lm_shr_fence_replay(&f, LM_SHR_UPDATE, &up);
    assert_int_equal(lm_shr_fence_write(&f, 6, 2), KAFKA_FENCED_LEADER_EPOCH);
    assert_int_equal(lm_shr_fence_write(&f, 7, 2), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_next_snapshot(&f), 1);
    /* an initialization's snapshot (leader epoch 0, a new state epoch) keeps the highest
     * leader epoch and raises the state epoch */
    struct lm_shr_value init = {
        .snapshot_epoch = 1, .state_epoch = 3, .leader_epoch = 0, .start_offset = 20};
    lm_shr_fence_replay(&f, LM_SHR_SNAPSHOT, &init);
    assert_int_equal(lm_shr_fence_write(&f, 7, 2), KAFKA_FENCED_STATE_EPOCH);
    assert_int_equal(lm_shr_fence_write(&f, 6, 3), KAFKA_FENCED_LEADER_EPOCH);
    assert_int_equal(lm_shr_fence_next_snapshot(&f), 2);
    /* a tombstone drops it all */
    lm_shr_fence_replay(&f, LM_SHR_SNAPSHOT, NULL);
    assert_false(f.present);
    assert_int_equal(lm_shr_fence_write(&f, 0, 0), KAFKA_NONE);
    assert_int_equal(lm_shr_fence_next_snapshot(&f), 0);

    /* a replayed state keeps the same fence; an update's leader epoch -1 keeps the state's */
    struct lm_shr_state s;
    lm_shr_state_init(&s);
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &snap), 0);
    up.leader_epoch = -1;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_UPDATE, &up), 0);
    assert_int_equal(s.leader_epoch, 5);
    assert_int_equal(lm_shr_fence_write(&s.fence, 4, 2), KAFKA_FENCED_LEADER_EPOCH);
    /* a snapshot initialized without a start offset (-1) is a state */
    init.start_offset = -1;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &init), 0);
    assert_true(s.present);
    assert_int_equal(s.start_offset, -1);
    assert_int_equal(s.state_epoch, 3);
    init.start_offset = -2;
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &init), LM_E_INVALID);
    lm_shr_state_deinit(&s);
}

/* Decoding for the epochs alone (no batch array): any number of batches, checked, not kept. */
static void test_decode_epochs(void **state)
{
    (void)state;
    struct lm_shr_batch bs[3] = {{1, 2, 0, 1}, {3, 4, 2, 1}, {5, 9, 4, 3}};
    struct lm_shr_value v = {4, 6, 8, 1, 0, 0, 3, bs};
    uint8_t buf[256];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_shr_value_encode(&w, LM_SHR_SNAPSHOT, &v), 0);
    struct lm_shr_value d;
    assert_int_equal(lm_shr_value_decode(buf, w.pos, LM_SHR_SNAPSHOT, &d, NULL, 0), 0);
    assert_int_equal(d.snapshot_epoch, 4);
    assert_int_equal(d.state_epoch, 6);
    assert_int_equal(d.leader_epoch, 8);
    assert_int_equal(d.n_batches, 0);
    assert_null(d.batches);
    for (size_t cut = 0; cut < w.pos; cut++)
        assert_int_not_equal(lm_shr_value_decode(buf, cut, LM_SHR_SNAPSHOT, &d, NULL, 0), 0);
    /* a bad batch is refused even when skipped: the last batch (20 bytes before the value's
     * tagged fields) gets a last offset (9) below its first (5) */
    buf[w.pos - 1 - 20 + 15] = 0;
    assert_int_equal(lm_shr_value_decode(buf, w.pos, LM_SHR_SNAPSHOT, &d, NULL, 0), LM_E_INVALID);
}

/* A share partition written as batches and restored from them holds the same states. */
static void test_save_restore(void **state)
{
    (void)state;
    struct lm_share_config cfg = {1000, 3, 100};
    struct lm_share_part sp;
    assert_int_equal(lm_share_part_init(&sp, &cfg), 0);
    lm_share_part_start(&sp, 0);
    struct lm_share_range r[16];
    assert_int_equal(lm_share_part_acquire(&sp, 0, 1, 0, 9, 10, 100, r, 16), 1);
    assert_int_equal(lm_share_part_ack(&sp, 1, 0, 1, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 3, 3, LM_SHARE_ACK_ACCEPT), KAFKA_NONE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 4, 4, LM_SHARE_ACK_REJECT), KAFKA_NONE);
    assert_int_equal(lm_share_part_ack(&sp, 1, 5, 6, LM_SHARE_ACK_RELEASE), KAFKA_NONE);
    /* 2 and 7-9 stay acquired: available after a restart, delivered once */
    struct lm_shr_batch b[16];
    int32_t n = lm_share_part_batches(&sp, b, 16);
    struct lm_shr_batch want[] = {{2, 2, 0, 1}, {3, 3, 2, 1}, {4, 4, 4, 1}, {5, 9, 0, 1}};
    assert_int_equal(n, 4);
    batches_equal(b, want, 4);
    assert_int_equal(lm_share_part_batches(&sp, b, 3), -1);

    /* through the bytes of a snapshot */
    uint8_t buf[512];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    struct lm_shr_value v = {0, 0, 0, sp.start, 0, 0, n, b};
    assert_int_equal(lm_shr_value_encode(&w, LM_SHR_SNAPSHOT, &v), 0);
    struct lm_shr_batch db[16];
    struct lm_shr_value dv;
    assert_int_equal(lm_shr_value_decode(buf, w.pos, LM_SHR_SNAPSHOT, &dv, db, 16), 0);
    struct lm_shr_state s;
    lm_shr_state_init(&s);
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &dv), 0);
    /* record 9 was delivered 3 times since: archived at the limit when restored */
    struct lm_shr_batch u = {9, 9, LM_SHARE_AVAILABLE, 3};
    struct lm_shr_value up = {0, 0, 0, -1, 0, 0, 1, &u};
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_UPDATE, &up), 0);

    struct lm_share_part sp2;
    assert_int_equal(lm_share_part_init(&sp2, &cfg), 0);
    lm_share_part_restore(&sp2, &s);
    assert_true(sp2.initialized);
    assert_int_equal(sp2.start, 2);
    assert_int_equal(sp2.end, 10);
    int32_t d;
    assert_int_equal(lm_share_part_state(&sp2, 2, &d), LM_SHARE_AVAILABLE);
    assert_int_equal(d, 1);
    assert_int_equal(lm_share_part_state(&sp2, 3, NULL), LM_SHARE_ACKNOWLEDGED);
    assert_int_equal(lm_share_part_state(&sp2, 4, NULL), LM_SHARE_ARCHIVED);
    assert_int_equal(lm_share_part_state(&sp2, 9, NULL), LM_SHARE_ARCHIVED);
    /* the next member gets 2 and 5-8, with their second delivery, never 3 and 4 */
    assert_int_equal(lm_share_part_acquire(&sp2, 0, 2, 0, 11, 12, 100, r, 16), 3);
    assert_int_equal(r[0].first, 2);
    assert_int_equal(r[0].last, 2);
    assert_int_equal(r[0].delivery_count, 2);
    assert_int_equal(r[1].first, 5);
    assert_int_equal(r[1].last, 8);
    assert_int_equal(r[1].delivery_count, 2);
    assert_int_equal(r[2].first, 10);
    assert_int_equal(r[2].last, 11);
    assert_int_equal(r[2].delivery_count, 1);
    /* a gap between batches restores as never delivered */
    struct lm_shr_batch gb[] = {{20, 20, 2, 1}, {25, 25, 0, 2}};
    struct lm_shr_value gv = {0, 0, 0, 20, 0, 0, 2, gb};
    assert_int_equal(lm_shr_state_replay(&s, LM_SHR_SNAPSHOT, &gv), 0);
    lm_share_part_restore(&sp2, &s);
    assert_int_equal(sp2.start, 21);
    assert_int_equal(sp2.end, 26);
    assert_int_equal(lm_share_part_state(&sp2, 22, &d), LM_SHARE_AVAILABLE);
    assert_int_equal(d, 0);
    lm_shr_state_deinit(&s);
    lm_share_part_deinit(&sp2);
    lm_share_part_deinit(&sp);
}

/* Kafka's SharePartitionKey.asCoordinatorKey: Uuid.toString() of 0102..10 is
 * AQIDBAUGBwgJCgsMDQ4PEA (base64url, no padding). */
static void test_coord_key(void **state)
{
    (void)state;
    char key[LM_SHR_COORD_KEY_MAX];
    int32_t n = lm_shr_coord_key((struct kafka_str){"grp:1", 5}, topic_id, 42, key);
    assert_int_equal(n, (int32_t)strlen("grp:1:AQIDBAUGBwgJCgsMDQ4PEA:42"));
    assert_memory_equal(key, "grp:1:AQIDBAUGBwgJCgsMDQ4PEA:42", (size_t)n);
    assert_true(lm_shr_coord_key_valid(key, n));
    const char *bad[] = {"",
                         ":AQIDBAUGBwgJCgsMDQ4PEA:1",
                         "g:AQIDBAUGBwgJCgsMDQ4PE:1",
                         "g:AQIDBAUGBwgJCgsMDQ4PE=:1",
                         "g:AQIDBAUGBwgJCgsMDQ4PEA:",
                         "g:AQIDBAUGBwgJCgsMDQ4PEA:-1",
                         "g:AQIDBAUGBwgJCgsMDQ4PEA:2147483648",
                         "gAQIDBAUGBwgJCgsMDQ4PEAA:1",
                         "g"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(lm_shr_coord_key_valid(bad[i], (int32_t)strlen(bad[i])));
    assert_true(lm_shr_coord_key_valid("g:AQIDBAUGBwgJCgsMDQ4PEA:2147483647", 35));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),        cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_replay),        cmocka_unit_test(test_save_restore),
        cmocka_unit_test(test_coord_key),     cmocka_unit_test(test_fence),
        cmocka_unit_test(test_decode_epochs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
