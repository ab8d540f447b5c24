/* Record batch v2 header parsing and full validation (see record_batch.h for the layout). */
#include "protocol/record_batch.h"

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "protocol/records.h"
#include "common/lm_endian.h"

int kafka_batch_header_parse(const uint8_t *buf, size_t len, struct kafka_batch_header *out)
{
    LM_ASSERT(out != NULL);
    LM_ASSERT(buf != NULL || len == 0);
    if (len < KAFKA_BATCH_HEADER_SIZE)
        return LM_E_TRUNCATED;
    /* Magic first: an older message set (v0/v1) has a different layout after offset 16. */
    int8_t magic = (int8_t)buf[KAFKA_BATCH_OFF_MAGIC];
    if (magic != KAFKA_BATCH_MAGIC_V2)
        return LM_E_MAGIC;
    int32_t batch_length = (int32_t)lm_get_be32(buf + KAFKA_BATCH_OFF_LENGTH);
    if (batch_length < KAFKA_BATCH_HEADER_SIZE - KAFKA_BATCH_LOG_OVERHEAD)
        return LM_E_CORRUPT;
    out->base_offset = (int64_t)lm_get_be64(buf + KAFKA_BATCH_OFF_BASE_OFFSET);
    out->batch_length = batch_length;
    out->partition_leader_epoch = (int32_t)lm_get_be32(buf + KAFKA_BATCH_OFF_LEADER_EPOCH);
    out->magic = magic;
    out->crc = lm_get_be32(buf + KAFKA_BATCH_OFF_CRC);
    out->attributes = (int16_t)lm_get_be16(buf + KAFKA_BATCH_OFF_ATTRIBUTES);
    out->last_offset_delta = (int32_t)lm_get_be32(buf + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA);
    out->base_timestamp = (int64_t)lm_get_be64(buf + KAFKA_BATCH_OFF_BASE_TIMESTAMP);
    out->max_timestamp = (int64_t)lm_get_be64(buf + KAFKA_BATCH_OFF_MAX_TIMESTAMP);
    out->producer_id = (int64_t)lm_get_be64(buf + KAFKA_BATCH_OFF_PRODUCER_ID);
    out->producer_epoch = (int16_t)lm_get_be16(buf + KAFKA_BATCH_OFF_PRODUCER_EPOCH);
    out->base_sequence = (int32_t)lm_get_be32(buf + KAFKA_BATCH_OFF_BASE_SEQUENCE);
    out->records_count = (int32_t)lm_get_be32(buf + KAFKA_BATCH_OFF_RECORDS_COUNT);
    LM_ASSERT(kafka_batch_total_size(out) >= KAFKA_BATCH_HEADER_SIZE);
    return 0;
}

bool kafka_batch_crc_ok(const uint8_t *buf, const struct kafka_batch_header *h)
{
    LM_ASSERT(buf != NULL && h != NULL);
    size_t total = kafka_batch_total_size(h);
    LM_ASSERT(total >= KAFKA_BATCH_HEADER_SIZE);
    uint32_t crc =
        crc32c_update(0, buf + KAFKA_BATCH_OFF_ATTRIBUTES, total - KAFKA_BATCH_OFF_ATTRIBUTES);
    return crc == h->crc;
}

/* Walks every record checking the framing (kafka_record_iter_next) and the offset deltas:
 * strictly increasing within 0..last_offset_delta. Gaps are allowed because compaction keeps
 * a batch's lastOffsetDelta while removing records (KIP-98 keeps it for producer state). */
static int rb_check_records(const struct kafka_batch_reader *r)
{
    const struct kafka_batch_header *h = &r->header;
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(r, &it);
    int64_t prev = -1;
    int rc;
    while ((rc = kafka_record_iter_next(&it, &rec)) == 1) {
        if (rec.offset_delta <= prev || rec.offset_delta > h->last_offset_delta)
            return LM_E_CORRUPT;
        prev = rec.offset_delta;
    }
    if (rc < 0)
        return rc;
    LM_ASSERT(it.index == h->records_count);
    return 0;
}

/* Checks that need only the raw bytes: presence, magic, CRC, count, codec. */
static int rb_check_frame(const uint8_t *buf, size_t len, struct kafka_batch_header *out)
{
    LM_ASSERT(out != NULL);
    int rc = kafka_batch_header_parse(buf, len, out);
    if (rc < 0)
        return rc;
    if (kafka_batch_total_size(out) > len)
        return LM_E_TRUNCATED;
    if (!kafka_batch_crc_ok(buf, out))
        return LM_E_CRC;
    if (out->records_count < 0)
        return LM_E_CORRUPT;
    /* Codecs 5..7 do not exist (KIP-110 added zstd as 4, the last one). */
    if (kafka_batch_codec(out) > KAFKA_CODEC_ZSTD)
        return LM_E_COMPRESSION;
    return 0;
}

int kafka_batch_validate(const uint8_t *buf, size_t len, size_t max_uncompressed,
                         struct kafka_batch_header *out)
{
    int rc = rb_check_frame(buf, len, out);
    if (rc < 0)
        return rc;
    struct kafka_batch_reader r;
    rc = kafka_batch_reader_open(&r, buf, len, max_uncompressed);
    if (rc < 0)
        return rc;
    rc = rb_check_records(&r);
    kafka_batch_reader_close(&r);
    return rc;
}

int kafka_batch_validate_buf(const uint8_t *buf, size_t len, uint8_t *scratch, size_t scratch_cap,
                             struct kafka_batch_header *out)
{
    int rc = rb_check_frame(buf, len, out);
    if (rc < 0)
        return rc;
    struct kafka_batch_reader r;
    rc = kafka_batch_reader_open_buf(&r, buf, len, scratch, scratch_cap);
    if (rc < 0)
        return rc;
    rc = rb_check_records(&r);
    kafka_batch_reader_close(&r);
    return rc;
}

void kafka_batch_set_base_offset(uint8_t *buf, int64_t base_offset)
{
    LM_ASSERT(buf != NULL);
    lm_put_be64(buf + KAFKA_BATCH_OFF_BASE_OFFSET, (uint64_t)base_offset);
}

void kafka_batch_set_leader_epoch(uint8_t *buf, int32_t epoch)
{
    LM_ASSERT(buf != NULL);
    lm_put_be32(buf + KAFKA_BATCH_OFF_LEADER_EPOCH, (uint32_t)epoch);
}

void kafka_batch_set_log_append_time(uint8_t *buf, size_t total_size, int64_t timestamp_ms)
{
    LM_ASSERT(buf != NULL);
    LM_ASSERT(total_size >= KAFKA_BATCH_HEADER_SIZE);
    LM_ASSERT(lm_get_be32(buf + KAFKA_BATCH_OFF_LENGTH) + (size_t)KAFKA_BATCH_LOG_OVERHEAD ==
              total_size);
    uint16_t attrs = lm_get_be16(buf + KAFKA_BATCH_OFF_ATTRIBUTES);
    attrs |= KAFKA_BATCH_ATTR_LOG_APPEND_TIME;
    buf[KAFKA_BATCH_OFF_ATTRIBUTES] = (uint8_t)(attrs >> 8);
    buf[KAFKA_BATCH_OFF_ATTRIBUTES + 1] = (uint8_t)attrs;
    lm_put_be64(buf + KAFKA_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)timestamp_ms);
    uint32_t crc =
        crc32c_update(0, buf + KAFKA_BATCH_OFF_ATTRIBUTES, total_size - KAFKA_BATCH_OFF_ATTRIBUTES);
    lm_put_be32(buf + KAFKA_BATCH_OFF_CRC, crc);
}
