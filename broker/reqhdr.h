/* Request header parsing (PROTOCOL-NOTES "Encodings"): v1 = api_key i16, api_version i16,
 * correlation_id i32, client_id nullable i16 string; v2 adds a tagged-field section.
 * This is the runtime's own small parser of the fixed part (it must not allocate: it runs
 * before the request's arena exists); the tagged-field section is skipped by the codec
 * runtime's kafka_skip_tagged_fields (protocol/kafka_rt.h). */
#ifndef LAMINAR_BROKER_REQHDR_H
#define LAMINAR_BROKER_REQHDR_H

#include <stddef.h>
#include <stdint.h>

struct broker_reqhdr {
    int16_t api_key;
    int16_t api_version;
    int32_t correlation_id;
    const char *client_id; /* points into the frame, not NUL-terminated; NULL when null */
    int16_t client_id_len; /* -1 when null */
    size_t size_bytes;     /* bytes the fixed part used */
};

/* Parses the fixed part (header v1) of frame[0..len). Returns 0, or LM_E_TRUNCATED /
 * LM_E_INVALID. Pointers in h borrow from frame. */
int broker_reqhdr_parse_fixed(const uint8_t *frame, size_t len, struct broker_reqhdr *h);
/* Skips a KIP-482 tagged-field section at frame[*off..len), advancing *off. Returns 0 or
 * LM_E_TRUNCATED / LM_E_VARINT / LM_E_TAG_ORDER. */
int broker_reqhdr_skip_tags(const uint8_t *frame, size_t len, size_t *off);

#endif
