#include "broker/reqhdr.h"

#include "common/lm_assert.h"
#include "common/lm_err.h"

static int16_t rd_i16(const uint8_t *p)
{
    return (int16_t)(((uint16_t)p[0] << 8) | p[1]);
}

static int32_t rd_i32(const uint8_t *p)
{
    return (int32_t)(((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) |
                     p[3]);
}

int broker_reqhdr_parse_fixed(const uint8_t *frame, size_t len, struct broker_reqhdr *h)
{
    LM_ASSERT(frame != NULL || len == 0);
    if (len < 10)
        return LM_E_TRUNCATED;
    h->api_key = rd_i16(frame);
    h->api_version = rd_i16(frame + 2);
    h->correlation_id = rd_i32(frame + 4);
    h->client_id_len = rd_i16(frame + 8);
    if (h->client_id_len < -1)
        return LM_E_INVALID;
    if (h->client_id_len == -1) {
        h->client_id = NULL;
        h->size_bytes = 10;
        return 0;
    }
    if ((size_t)h->client_id_len > len - 10)
        return LM_E_TRUNCATED;
    h->client_id = (const char *)frame + 10;
    h->size_bytes = 10 + (size_t)h->client_id_len;
    LM_ASSERT(h->size_bytes <= len);
    return 0;
}

static int rd_uvarint(const uint8_t *p, size_t len, size_t *off, uint32_t *out)
{
    uint32_t v = 0;
    for (int i = 0; i < 5; i++) {
        if (*off >= len)
            return LM_E_TRUNCATED;
        uint8_t b = p[(*off)++];
        if (i == 4 && (b & 0xf0) != 0)
            return LM_E_VARINT;
        v |= (uint32_t)(b & 0x7f) << (7 * i);
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return LM_E_VARINT;
}

int broker_reqhdr_skip_tags(const uint8_t *frame, size_t len, size_t *off)
{
    uint32_t count = 0;
    int rc = rd_uvarint(frame, len, off, &count);
    if (rc != 0)
        return rc;
    int64_t last_tag = -1;
    for (uint32_t i = 0; i < count; i++) {
        uint32_t tag = 0, size = 0;
        if ((rc = rd_uvarint(frame, len, off, &tag)) != 0)
            return rc;
        if ((int64_t)tag <= last_tag)
            return LM_E_TAG_ORDER;
        last_tag = tag;
        if ((rc = rd_uvarint(frame, len, off, &size)) != 0)
            return rc;
        if (size > len - *off)
            return LM_E_TRUNCATED;
        *off += size;
    }
    LM_ASSERT(*off <= len);
    return 0;
}
