#include "broker/frame.h"

#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

void broker_frame_reader_init(struct broker_frame_reader *fr, int32_t size_bytes_max,
                              broker_frame_alloc_fn alloc, void *alloc_ctx)
{
    LM_ASSERT(size_bytes_max > 0);
    LM_ASSERT(alloc != NULL);
    memset(fr, 0, sizeof(*fr));
    fr->size_bytes_max = size_bytes_max;
    fr->alloc = alloc;
    fr->alloc_ctx = alloc_ctx;
}

void broker_frame_reader_deinit(struct broker_frame_reader *fr, void (*free_fn)(void *, uint8_t *),
                                void *ctx)
{
    if (fr->buf != NULL) {
        LM_ASSERT(free_fn != NULL);
        free_fn(ctx, fr->buf);
    }
    fr->buf = NULL;
    fr->hdr_have = 0;
    fr->need = 0;
    fr->have = 0;
}

int broker_frame_reader_idle(const struct broker_frame_reader *fr)
{
    return fr->hdr_have == 0 && fr->buf == NULL;
}

int broker_frame_feed(struct broker_frame_reader *fr, const uint8_t *data, size_t len,
                      size_t *consumed, struct broker_frame *out)
{
    size_t used = 0;
    LM_ASSERT(data != NULL || len == 0);
    LM_ASSERT(fr->hdr_have <= 4 && fr->have <= fr->need);
    *consumed = 0;
    while (fr->hdr_have < 4) {
        if (used == len) {
            *consumed = used;
            return 0;
        }
        fr->hdr[fr->hdr_have++] = data[used++];
    }
    if (fr->buf == NULL) {
        /* The prefix is complete: validate it before allocating anything. */
        uint32_t raw = ((uint32_t)fr->hdr[0] << 24) | ((uint32_t)fr->hdr[1] << 16) |
                       ((uint32_t)fr->hdr[2] << 8) | (uint32_t)fr->hdr[3];
        int32_t size = (int32_t)raw;
        *consumed = used;
        if (size <= 0)
            return LM_E_INVALID;
        if (size > fr->size_bytes_max)
            return LM_E_TOO_LARGE;
        uint8_t *buf = NULL;
        int rc = fr->alloc(fr->alloc_ctx, (uint32_t)size, &buf);
        if (rc != 0)
            return rc;
        LM_ASSERT(buf != NULL);
        fr->buf = buf;
        fr->need = (uint32_t)size;
        fr->have = 0;
    }
    size_t take = len - used;
    if (take > fr->need - fr->have)
        take = fr->need - fr->have;
    if (take > 0)
        memcpy(fr->buf + fr->have, data + used, take);
    fr->have += (uint32_t)take;
    used += take;
    *consumed = used;
    if (fr->have < fr->need)
        return 0;
    out->body = fr->buf;
    out->size_bytes = fr->need;
    fr->buf = NULL;
    fr->hdr_have = 0;
    fr->need = 0;
    fr->have = 0;
    return 1;
}
