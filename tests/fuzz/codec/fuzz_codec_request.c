/* libFuzzer target: any byte string as a request frame (header + body, no size prefix).
 * The api key and version come from the frame's first four bytes, as on the wire. Oracle: the
 * decoder never crashes or reads out of bounds (ASan/UBSan), and whatever it accepts re-encodes
 * to exactly size() bytes and round-trips (decode -> encode -> decode -> encode is stable). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "protocol/kafka_api.h"

static uint8_t *encode_frame(int hv, const struct kafka_request_header *h,
                             const struct kafka_api_info *api, int16_t ver, const void *m,
                             size_t *len)
{
    size_t n = kafka_request_header_size((int16_t)hv, h) + api->request.size(ver, m);
    uint8_t *buf = malloc(n ? n : 1);
    LM_ASSERT(buf != NULL);
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    LM_ASSERT(kafka_request_header_encode(&w, (int16_t)hv, h) == 0);
    LM_ASSERT(api->request.encode(&w, ver, m) == 0);
    LM_ASSERT(w.pos == n);
    *len = n;
    return buf;
}

static int decode_frame(const uint8_t *data, size_t size, struct kafka_request_header *h, void **m,
                        const struct kafka_api_info **api_out, int16_t *ver_out, int *hv_out,
                        struct kafka_arena *a)
{
    if (size < 4)
        return LM_E_TRUNCATED;
    int16_t key = (int16_t)(data[0] << 8 | data[1]);
    int16_t ver = (int16_t)(data[2] << 8 | data[3]);
    const struct kafka_api_info *api = kafka_api_lookup(key);
    int hv = kafka_request_header_version(key, ver);
    if (api == NULL || hv < 0)
        return LM_E_UNSUPPORTED;
    struct kafka_reader r;
    kafka_reader_init(&r, data, size);
    int rc = kafka_request_header_decode(&r, (int16_t)hv, h, a);
    if (rc != 0)
        return rc;
    *m = calloc(1, api->request.struct_size);
    LM_ASSERT(*m != NULL);
    rc = api->request.decode(&r, ver, *m, a);
    if (rc == 0 && kafka_reader_left(&r) != 0)
        rc = LM_E_INVALID; /* trailing bytes: a broker rejects the frame */
    *api_out = api;
    *ver_out = ver;
    *hv_out = hv;
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct kafka_arena a, a2;
    kafka_arena_init(&a, 1u << 22);
    kafka_arena_init(&a2, 1u << 22);
    struct kafka_request_header h, h2;
    void *m = NULL, *m2 = NULL;
    const struct kafka_api_info *api, *api2;
    int16_t ver, ver2;
    int hv, hv2;
    int rc = decode_frame(data, size, &h, &m, &api, &ver, &hv, &a);
    if (rc == 0) {
        size_t n1, n2;
        uint8_t *b1 = encode_frame(hv, &h, api, ver, m, &n1);
        LM_ASSERT(n1 <= size); /* re-encoding never grows: minimal varints, defaults dropped */
        LM_ASSERT(decode_frame(b1, n1, &h2, &m2, &api2, &ver2, &hv2, &a2) == 0);
        LM_ASSERT(api2 == api && ver2 == ver && hv2 == hv);
        uint8_t *b2 = encode_frame(hv2, &h2, api2, ver2, m2, &n2);
        LM_ASSERT(n1 == n2 && memcmp(b1, b2, n1) == 0);
        free(b1);
        free(b2);
    }
    free(m);
    free(m2);
    kafka_arena_deinit(&a);
    kafka_arena_deinit(&a2);
    return 0;
}
