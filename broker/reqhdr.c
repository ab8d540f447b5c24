#include "broker/reqhdr.h"

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_rt.h"
#include "common/lm_endian.h"

int broker_reqhdr_parse_fixed(const uint8_t *frame, size_t len, struct broker_reqhdr *h)
{
    LM_ASSERT(frame != NULL || len == 0);
    if (len < 10)
        return LM_E_TRUNCATED;
    h->api_key = (int16_t)lm_get_be16(frame);
    h->api_version = (int16_t)lm_get_be16(frame + 2);
    h->correlation_id = (int32_t)lm_get_be32(frame + 4);
    h->client_id_len = (int16_t)lm_get_be16(frame + 8);
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

/* The tagged-field section of header v2 is skipped by the codec runtime (KIP-482: strictly
 * ascending tags, sizes checked against the bytes left), the same code the generated request
 * header decoder uses, so the runtime and the codec cannot disagree on it. */
int broker_reqhdr_skip_tags(const uint8_t *frame, size_t len, size_t *off)
{
    LM_ASSERT(*off <= len);
    struct kafka_reader r;
    kafka_reader_init(&r, frame, len);
    r.pos = *off;
    int rc = kafka_skip_tagged_fields(&r);
    if (rc != 0)
        return rc;
    LM_ASSERT(r.pos <= len);
    *off = r.pos;
    return 0;
}
