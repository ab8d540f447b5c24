/* Helpers shared by the codec tests: encode any message through the generic api table. */
#ifndef LAMINAR_TESTS_CODEC_TEST_UTIL_H
#define LAMINAR_TESTS_CODEC_TEST_UTIL_H

#include <stdint.h>
#include <stdlib.h>

#include "protocol/kafka_api.h"
#include "protocol/kafka_rt.h"
#include "protocol/kafka_sample.h"

/* One side (request or response) of an api. */
static inline const struct kafka_msg_ops *codec_ops(const struct kafka_api_info *api, int response)
{
    return response ? &api->response : &api->request;
}

static inline kafka_fill_fn codec_fill(int16_t key, int response)
{
    const struct kafka_sample_info *s = kafka_sample_lookup(key);
    if (s == NULL)
        return NULL;
    return response ? s->fill_response : s->fill_request;
}

/* codec_encode_sample fills a sample message and encodes it into a new malloc'ed buffer of
 * exactly its size. Returns the buffer (caller frees) and its length in *len. */
static inline uint8_t *codec_encode_sample(const struct kafka_api_info *api, int response,
                                           int16_t version, uint32_t seed, size_t *len)
{
    const struct kafka_msg_ops *ops = codec_ops(api, response);
    struct kafka_arena arena;
    kafka_arena_init(&arena, 1u << 20);
    void *m = calloc(1, ops->struct_size);
    if (m == NULL)
        abort();
    codec_fill(api->key, response)(m, version, &arena, seed);
    size_t n = ops->size(version, m);
    uint8_t *buf = malloc(n ? n : 1);
    if (buf == NULL)
        abort();
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    int rc = ops->encode(&w, version, m);
    if (rc != 0 || w.pos != n)
        abort();
    free(m);
    kafka_arena_deinit(&arena);
    *len = n;
    return buf;
}

#endif
