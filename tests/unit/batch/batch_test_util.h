/* Helpers shared by the batch tests: a deterministic set of records, building a batch of them
 * with any codec, and checking that iteration gives them back exactly. */
#ifndef LAMINAR_TESTS_UNIT_BATCH_UTIL_H
#define LAMINAR_TESTS_UNIT_BATCH_UTIL_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "protocol/records.h"

#define BT_BASE_TS     1700000000000LL
#define BT_MAX_HEADERS 3

struct bt_rec {
    int64_t ts;
    char key[32];
    int32_t key_len;
    char value[400];
    int32_t value_len;
    int32_t nh;
    char hk[BT_MAX_HEADERS][16];
    char hv[BT_MAX_HEADERS][16];
    struct kafka_record_header h[BT_MAX_HEADERS];
};

/* Record i of the standard set: null keys, null and empty values, 0..2 headers (some with
 * null values), timestamps not monotonic (so maxTimestamp is a real maximum). */
static inline void bt_rec_make(struct bt_rec *r, int i)
{
    memset(r, 0, sizeof(*r));
    r->ts = BT_BASE_TS + i * 3 + ((i % 4 == 2) ? 50 : 0) - ((i % 6 == 5) ? 2 : 0);
    if (i % 5 == 0) {
        r->key_len = -1;
    } else {
        r->key_len = snprintf(r->key, sizeof(r->key), "key-%d", i);
    }
    if (i % 7 == 3) {
        r->value_len = -1;
    } else if (i % 11 == 4) {
        r->value_len = 0;
    } else {
        r->value_len = (i * 37) % 300 + 1;
        for (int k = 0; k < r->value_len; k++)
            r->value[k] = (char)('a' + (k * 13 + i) % 26);
    }
    r->nh = i % 3;
    for (int j = 0; j < r->nh; j++) {
        int kl = snprintf(r->hk[j], sizeof(r->hk[j]), "h%d", j);
        r->h[j].key = (const uint8_t *)r->hk[j];
        r->h[j].key_len = kl;
        if (j == 1 && i % 2) {
            r->h[j].value = NULL;
            r->h[j].value_len = -1;
        } else {
            int vl = snprintf(r->hv[j], sizeof(r->hv[j]), "hv-%d-%d", i, j);
            r->h[j].value = (const uint8_t *)r->hv[j];
            r->h[j].value_len = vl;
        }
    }
}

/* Builds the first n standard records into one batch; returns the malloc'd batch. */
static inline uint8_t *bt_build(enum kafka_codec codec, int n, size_t *size)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 1000, BT_BASE_TS);
    b.producer_id = 77;
    b.producer_epoch = 3;
    b.base_sequence = 12;
    for (int i = 0; i < n; i++) {
        struct bt_rec r;
        bt_rec_make(&r, i);
        int rc =
            kafka_batch_builder_append(&b, r.ts, r.key_len < 0 ? NULL : r.key, r.key_len,
                                       r.value_len < 0 ? NULL : r.value, r.value_len, r.h, r.nh);
        if (rc != 0) {
            fprintf(stderr, "append %d: %s\n", i, lm_errname(rc));
            abort();
        }
    }
    uint8_t *out = NULL;
    int rc = kafka_batch_builder_finish(&b, codec, &out, size);
    kafka_batch_builder_deinit(&b);
    if (rc != 0) {
        fprintf(stderr, "finish: %s\n", lm_errname(rc));
        abort();
    }
    return out;
}

static inline int bt_bytes_eq(const uint8_t *p, int32_t plen, const char *want, int32_t wlen)
{
    if (plen != wlen)
        return 0;
    if (plen < 0)
        return p == NULL;
    return plen == 0 || memcmp(p, want, (size_t)plen) == 0;
}

/* Recomputes the CRC of a batch in place (after a deliberate edit). */
static inline void bt_fix_crc(uint8_t *buf, size_t total)
{
    uint32_t c =
        crc32c_update(0, buf + KAFKA_BATCH_OFF_ATTRIBUTES, total - KAFKA_BATCH_OFF_ATTRIBUTES);
    buf[17] = (uint8_t)(c >> 24);
    buf[18] = (uint8_t)(c >> 16);
    buf[19] = (uint8_t)(c >> 8);
    buf[20] = (uint8_t)c;
}

static inline void bt_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Validates a copy of buf[0..len) in a heap block of exactly len bytes, so ASan reports any
 * read past len. */
static inline int bt_validate_exact(const uint8_t *buf, size_t len, size_t max,
                                    struct kafka_batch_header *h)
{
    uint8_t *copy = malloc(len > 0 ? len : 1);
    if (copy == NULL)
        abort();
    if (len > 0)
        memcpy(copy, buf, len);
    int rc = kafka_batch_validate(copy, len, max, h);
    free(copy);
    return rc;
}

#endif
