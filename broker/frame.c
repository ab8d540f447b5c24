#include "broker/frame.h"

#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_endian.h"

void broker_frame_reader_init(struct broker_frame_reader *fr, int32_t size_bytes_max,
                              broker_frame_grow_fn grow, void *grow_ctx)
{
    LM_ASSERT(size_bytes_max > 0);
    LM_ASSERT(grow != NULL);
    memset(fr, 0, sizeof(*fr));
    fr->size_bytes_max = size_bytes_max;
    fr->grow = grow;
    fr->grow_ctx = grow_ctx;
}

static void reader_reset(struct broker_frame_reader *fr)
{
    fr->buf = NULL;
    fr->hdr_have = 0;
    fr->need = 0;
    fr->have = 0;
    fr->cap = 0;
}

void broker_frame_reader_deinit(struct broker_frame_reader *fr, void (*free_fn)(void *, uint8_t *),
                                void *ctx)
{
    if (fr->buf != NULL) {
        LM_ASSERT(free_fn != NULL);
        free_fn(ctx, fr->buf);
    }
    reader_reset(fr);
}

int broker_frame_reader_idle(const struct broker_frame_reader *fr)
{
    return fr->hdr_have == 0 && fr->need == 0;
}

uint32_t broker_frame_reader_held(const struct broker_frame_reader *fr)
{
    return fr->cap;
}

int broker_frame_reader_completes(const struct broker_frame_reader *fr, const uint8_t *data,
                                  size_t len)
{
    LM_ASSERT(data != NULL || len == 0);
    if (fr->need > 0)
        return len >= (size_t)(fr->need - fr->have);
    /* Between frames or inside the prefix: the prefix's missing bytes come from data. */
    uint8_t hdr[4];
    memcpy(hdr, fr->hdr, fr->hdr_have);
    size_t from_data = 4 - fr->hdr_have;
    if (len < from_data)
        return 0;
    memcpy(hdr + fr->hdr_have, data, from_data);
    int32_t size = (int32_t)lm_get_be32(hdr);
    if (size <= 0 || size > fr->size_bytes_max)
        return 1; /* the reader rejects it: something for the caller to act on */
    return len - from_data >= (size_t)size;
}

/* The next buffer size: everything available now when it fits, else double (at least
 * BROKER_FRAME_GROW_MIN), never past the announced size. Doubling keeps the copies linear and
 * the memory held below twice the bytes received. */
static uint32_t next_cap(const struct broker_frame_reader *fr, size_t avail)
{
    uint64_t want = (uint64_t)fr->have + avail;
    uint64_t dbl = (uint64_t)fr->cap * 2;
    if (want < dbl)
        want = dbl;
    if (want < BROKER_FRAME_GROW_MIN)
        want = BROKER_FRAME_GROW_MIN;
    return want > fr->need ? fr->need : (uint32_t)want;
}

int broker_frame_feed(struct broker_frame_reader *fr, const uint8_t *data, size_t len,
                      size_t *consumed, struct broker_frame *out)
{
    size_t used = 0;
    LM_ASSERT(data != NULL || len == 0);
    LM_ASSERT(fr->hdr_have <= 4 && fr->have <= fr->cap && fr->cap <= fr->need);
    *consumed = 0;
    while (fr->hdr_have < 4) {
        if (used == len)
            return 0;
        fr->hdr[fr->hdr_have++] = data[used++];
        *consumed = used;
    }
    if (fr->need == 0) {
        /* The prefix is complete: validate it before allocating anything. */
        int32_t size = (int32_t)lm_get_be32(fr->hdr);
        if (size <= 0)
            return LM_E_INVALID;
        if (size > fr->size_bytes_max)
            return LM_E_TOO_LARGE;
        fr->need = (uint32_t)size;
    }
    while (fr->have < fr->need && used < len) {
        if (fr->have == fr->cap) {
            uint32_t cap = next_cap(fr, len - used);
            uint8_t *nb = NULL;
            int rc = fr->grow(fr->grow_ctx, fr->buf, fr->cap, cap, fr->need, &nb);
            if (rc != 0) {
                *consumed = used;
                return rc;
            }
            LM_ASSERT(nb != NULL);
            fr->buf = nb;
            fr->cap = cap;
        }
        size_t take = len - used;
        if (take > fr->cap - fr->have)
            take = fr->cap - fr->have;
        memcpy(fr->buf + fr->have, data + used, take);
        fr->have += (uint32_t)take;
        used += take;
    }
    *consumed = used;
    if (fr->have < fr->need)
        return 0;
    LM_ASSERT(fr->cap == fr->need);
    out->body = fr->buf;
    out->size_bytes = fr->need;
    reader_reset(fr);
    return 1;
}
