/* libFuzzer target: record batch v2 validation, record and header iteration, and every
 * decompressor on raw input. Properties checked beyond "no crash, no leak, no over-read":
 * a batch that validates iterates cleanly to exactly records_count records, and no
 * decompressor ever reports more output than its limit. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/compress.h"
#include "protocol/crc32c.h"
#include "protocol/records.h"

#define FUZZ_MAX_UNCOMPRESSED (1u << 20)

static uint8_t fuzz_scratch[FUZZ_MAX_UNCOMPRESSED];

static void fuzz_iterate(const uint8_t *buf, size_t len, int validate_rc,
                         const struct kafka_batch_header *vh)
{
    struct kafka_batch_reader r;
    int rc = kafka_batch_reader_open(&r, buf, len, FUZZ_MAX_UNCOMPRESSED);
    if (rc < 0) {
        LM_ASSERT(validate_rc < 0);
        LM_ASSERT(r.owned == NULL);
        return;
    }
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(&r, &it);
    int n = 0;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1) {
        LM_ASSERT(rec.key_len >= -1 && rec.value_len >= -1);
        LM_ASSERT(rec.key_len < 0 ||
                  (rec.key >= r.records && rec.key + rec.key_len <= r.records + r.records_size));
        struct kafka_header_iter hi;
        struct kafka_record_header h;
        kafka_record_headers(&rec, &hi);
        int hr, nh = 0;
        while ((hr = kafka_header_iter_next(&hi, &h)) == 1)
            nh++;
        LM_ASSERT(hr == 0 && nh == rec.header_count);
        n++;
    }
    if (validate_rc == 0) {
        LM_ASSERT(rc == 0);
        LM_ASSERT(n == vh->records_count);
    }
    kafka_batch_reader_close(&r);

    /* The caller-buffer path agrees with the allocating one. */
    struct kafka_batch_reader r2;
    int rc2 = kafka_batch_reader_open_buf(&r2, buf, len, fuzz_scratch, sizeof(fuzz_scratch));
    LM_ASSERT(rc2 == 0 || validate_rc < 0);
    if (rc2 == 0)
        kafka_batch_reader_close(&r2);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* 1. As given (the CRC almost never matches: exercises the header checks). */
    struct kafka_batch_header h;
    int rc = kafka_batch_validate(data, size, FUZZ_MAX_UNCOMPRESSED, &h);
    fuzz_iterate(data, size, rc, &h);

    /* 2. With batchLength and CRC made consistent, so the records and codecs are reached. */
    if (size >= KAFKA_BATCH_HEADER_SIZE && size <= INT32_MAX) {
        uint8_t *copy = malloc(size);
        LM_ASSERT(copy != NULL);
        memcpy(copy, data, size);
        copy[KAFKA_BATCH_OFF_MAGIC] = KAFKA_BATCH_MAGIC_V2;
        uint32_t bl = (uint32_t)(size - KAFKA_BATCH_LOG_OVERHEAD);
        copy[8] = (uint8_t)(bl >> 24);
        copy[9] = (uint8_t)(bl >> 16);
        copy[10] = (uint8_t)(bl >> 8);
        copy[11] = (uint8_t)bl;
        uint32_t crc = crc32c_update(0, copy + 21, size - 21);
        copy[17] = (uint8_t)(crc >> 24);
        copy[18] = (uint8_t)(crc >> 16);
        copy[19] = (uint8_t)(crc >> 8);
        copy[20] = (uint8_t)crc;
        rc = kafka_batch_validate(copy, size, FUZZ_MAX_UNCOMPRESSED, &h);
        LM_ASSERT(rc != LM_E_CRC && rc != LM_E_MAGIC);
        struct kafka_batch_header h2;
        LM_ASSERT(kafka_batch_validate_buf(copy, size, fuzz_scratch, sizeof(fuzz_scratch), &h2) ==
                  rc);
        fuzz_iterate(copy, size, rc, &h);
        free(copy);
    }

    /* 3. Raw decompression: first byte picks the codec, a small limit makes bombs cheap. */
    if (size >= 1) {
        enum kafka_codec codec = (enum kafka_codec)(data[0] % 5);
        size_t out_size = 0;
        rc = kafka_decompress(codec, data + 1, size - 1, fuzz_scratch, 64 * 1024, &out_size);
        LM_ASSERT(rc <= 0);
        LM_ASSERT(rc < 0 || out_size <= 64 * 1024);
        uint8_t *out = NULL;
        size_t out2 = 0;
        int rc2 = kafka_decompress_alloc(codec, data + 1, size - 1, 64 * 1024, &out, &out2);
        LM_ASSERT(rc2 == rc);
        if (rc2 == 0) {
            LM_ASSERT(out2 == out_size && memcmp(out, fuzz_scratch, out2) == 0);
            free(out);
        }
    }
    return 0;
}
