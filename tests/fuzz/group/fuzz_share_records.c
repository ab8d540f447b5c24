/* libFuzzer target for __share_group_state records (share_records.h). The input is a list of
 * records: byte 0 of each says what follows (bit 0: snapshot or update; bit 1: a tombstone),
 * then a 2-byte length and the value's bytes (the key is fuzzed on the first record's bytes).
 * Oracles: a value that decodes re-encodes to bytes that decode to the same fields; replay keeps
 * its batches sorted, disjoint and at or above the start offset; a share partition restored from
 * any replayed state keeps its window within max_in_flight records. No read past the input
 * (ASan), no undefined behaviour (UBSan). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "broker/group/share_records.h"

enum { CAP = 256 };

static void check(bool ok)
{
    if (!ok)
        abort();
}

static bool batch_eq(const struct lm_shr_batch *a, const struct lm_shr_batch *b)
{
    return a->first == b->first && a->last == b->last && a->state == b->state &&
           a->delivery_count == b->delivery_count;
}

static void round_trip(int16_t type, const struct lm_shr_value *v)
{
    static uint8_t buf[64 + CAP * 20];
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    check(lm_shr_value_encode(&w, type, v) == 0);
    struct lm_shr_batch b[CAP];
    struct lm_shr_value d;
    check(lm_shr_value_decode(buf, w.pos, type, &d, b, CAP) == 0);
    check(d.snapshot_epoch == v->snapshot_epoch && d.leader_epoch == v->leader_epoch &&
          d.start_offset == v->start_offset && d.n_batches == v->n_batches);
    if (type == LM_SHR_SNAPSHOT)
        check(d.state_epoch == v->state_epoch && d.create_ms == v->create_ms &&
              d.write_ms == v->write_ms);
    for (int32_t i = 0; i < d.n_batches; i++)
        check(batch_eq(&b[i], &v->batches[i]));
}

static void state_check(const struct lm_shr_state *s)
{
    if (!s->present)
        return;
    for (int32_t i = 0; i < s->n; i++) {
        check(s->batches[i].first <= s->batches[i].last);
        check(s->batches[i].first >= s->start_offset);
        check(i == 0 || s->batches[i].first > s->batches[i - 1].last);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct lm_shr_key k;
    if (lm_shr_key_decode(data, size, &k) == 0) {
        uint8_t kb[512];
        struct kafka_writer w;
        kafka_writer_init(&w, kb, sizeof(kb));
        if (k.group.len <= 255) {
            check(lm_shr_key_encode(&w, &k) == 0);
            struct lm_shr_key k2;
            check(lm_shr_key_decode(kb, w.pos, &k2) == 0 && k2.type == k.type &&
                  k2.partition == k.partition && k2.group.len == k.group.len &&
                  memcmp(k2.topic_id, k.topic_id, 16) == 0);
        }
    }
    (void)lm_shr_coord_key_valid((const char *)data, size > 400 ? 400 : (int32_t)size);
    struct lm_shr_state s;
    lm_shr_state_init(&s);
    struct lm_share_config cfg = {1000, 5, 100};
    struct lm_share_part sp;
    if (lm_share_part_init(&sp, &cfg) != 0)
        return 0;
    size_t pos = 0;
    for (int n = 0; n < 64 && pos + 3 <= size; n++) {
        uint8_t op = data[pos];
        size_t len = ((size_t)data[pos + 1] << 8) | data[pos + 2];
        pos += 3;
        if (len > size - pos)
            len = size - pos;
        int16_t type = (op & 1) ? LM_SHR_UPDATE : LM_SHR_SNAPSHOT;
        /* exactly len bytes on the heap: ASan sees a read past them */
        uint8_t *v = malloc(len ? len : 1);
        if (v == NULL)
            break;
        memcpy(v, data + pos, len);
        pos += len;
        struct lm_shr_batch b[CAP];
        struct lm_shr_value val;
        if (op & 2) {
            check(lm_shr_state_replay(&s, type, NULL) == 0);
        } else if (lm_shr_value_decode(v, len, type, &val, b, CAP) == 0) {
            round_trip(type, &val);
            (void)lm_shr_state_replay(&s, type, &val);
        }
        free(v);
        state_check(&s);
        if (s.present && s.start_offset >= 0 && s.start_offset < INT64_MAX / 2) {
            lm_share_part_restore(&sp, &s);
            check(lm_share_part_in_flight(&sp) <= cfg.max_in_flight);
            struct lm_shr_batch out[100];
            check(lm_share_part_batches(&sp, out, 100) >= 0);
        }
    }
    lm_share_part_deinit(&sp);
    lm_shr_state_deinit(&s);
    return 0;
}
