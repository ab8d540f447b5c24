/* Kafka record batch v2 (magic 2): the unit of storage and transfer.
 *
 * Layout (Kafka protocol guide, "Record Batch"; KIP-98):
 *   0 baseOffset i64   8 batchLength i32   12 partitionLeaderEpoch i32   16 magic i8
 *   17 crc u32 (CRC-32C of bytes 21..end)  21 attributes i16   23 lastOffsetDelta i32
 *   27 baseTimestamp i64   35 maxTimestamp i64   43 producerId i64   51 producerEpoch i16
 *   53 baseSequence i32    57 recordsCount i32   61 records...
 * All integers big-endian. batchLength counts the bytes after the batchLength field, so a
 * whole batch is batchLength + 12 bytes.
 *
 * This header is the contract between protocol/ (which implements it), storage/ and broker/. */
#ifndef LAMINAR_PROTOCOL_RECORD_BATCH_H
#define LAMINAR_PROTOCOL_RECORD_BATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KAFKA_BATCH_HEADER_SIZE 61
/* Bytes before and including batchLength: baseOffset + batchLength. */
#define KAFKA_BATCH_LOG_OVERHEAD 12
#define KAFKA_BATCH_MAGIC_V2     2

/* Field offsets inside a batch. */
#define KAFKA_BATCH_OFF_BASE_OFFSET       0
#define KAFKA_BATCH_OFF_LENGTH            8
#define KAFKA_BATCH_OFF_LEADER_EPOCH      12
#define KAFKA_BATCH_OFF_MAGIC             16
#define KAFKA_BATCH_OFF_CRC               17
#define KAFKA_BATCH_OFF_ATTRIBUTES        21
#define KAFKA_BATCH_OFF_LAST_OFFSET_DELTA 23
#define KAFKA_BATCH_OFF_BASE_TIMESTAMP    27
#define KAFKA_BATCH_OFF_MAX_TIMESTAMP     35
#define KAFKA_BATCH_OFF_PRODUCER_ID       43
#define KAFKA_BATCH_OFF_PRODUCER_EPOCH    51
#define KAFKA_BATCH_OFF_BASE_SEQUENCE     53
#define KAFKA_BATCH_OFF_RECORDS_COUNT     57

/* attributes bits */
#define KAFKA_BATCH_ATTR_CODEC_MASK      0x07
#define KAFKA_BATCH_ATTR_LOG_APPEND_TIME 0x08
#define KAFKA_BATCH_ATTR_TRANSACTIONAL   0x10
#define KAFKA_BATCH_ATTR_CONTROL         0x20
#define KAFKA_BATCH_ATTR_DELETE_HORIZON  0x40

enum kafka_codec {
    KAFKA_CODEC_NONE = 0,
    KAFKA_CODEC_GZIP = 1,
    KAFKA_CODEC_SNAPPY = 2,
    KAFKA_CODEC_LZ4 = 3,
    KAFKA_CODEC_ZSTD = 4,
};

/* The decoded 61-byte header of one batch. */
struct kafka_batch_header {
    int64_t base_offset;
    int32_t batch_length; /* bytes after this field */
    int32_t partition_leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
};

/* Total bytes of the batch on the wire/disk: batch_length + 12. */
static inline size_t kafka_batch_total_size(const struct kafka_batch_header *h)
{
    return (size_t)h->batch_length + KAFKA_BATCH_LOG_OVERHEAD;
}
static inline int64_t kafka_batch_last_offset(const struct kafka_batch_header *h)
{
    return h->base_offset + h->last_offset_delta;
}
static inline enum kafka_codec kafka_batch_codec(const struct kafka_batch_header *h)
{
    return (enum kafka_codec)(h->attributes & KAFKA_BATCH_ATTR_CODEC_MASK);
}

/* kafka_batch_header_parse decodes the header at buf (needs len >= 61). Checks only that the
 * bytes are there, magic is 2 and batch_length is at least 49; does not check the CRC or that
 * the whole batch is present. Returns 0 or LM_E_TRUNCATED / LM_E_MAGIC / LM_E_CORRUPT. */
int kafka_batch_header_parse(const uint8_t *buf, size_t len, struct kafka_batch_header *out);

/* kafka_batch_validate fully checks one batch that starts at buf: the whole batch fits in len,
 * magic 2, CRC-32C over attributes..end, records_count >= 0, and, for an uncompressed batch,
 * that the records parse, there are exactly records_count of them, their offset deltas are
 * 0..last_offset_delta in increasing order and they end exactly at the batch end. For a
 * compressed batch the records are decompressed (bounded by max_uncompressed bytes) and checked
 * the same way. Fills *out with the header. Returns 0 or LM_E_TRUNCATED, LM_E_MAGIC, LM_E_CRC,
 * LM_E_CORRUPT, LM_E_COMPRESSION, LM_E_TOO_LARGE. */
int kafka_batch_validate(const uint8_t *buf, size_t len, size_t max_uncompressed,
                         struct kafka_batch_header *out);

/* kafka_batch_validate_buf is kafka_batch_validate decompressing into the caller's
 * scratch[0..scratch_cap) (which bounds the uncompressed size) instead of allocating, for the
 * data path. Same results as kafka_batch_validate(buf, len, scratch_cap, out). */
int kafka_batch_validate_buf(const uint8_t *buf, size_t len, uint8_t *scratch, size_t scratch_cap,
                             struct kafka_batch_header *out);

/* kafka_batch_crc_ok checks only the CRC of a batch whose header has been parsed and whose
 * kafka_batch_total_size() bytes are all present at buf. */
bool kafka_batch_crc_ok(const uint8_t *buf, const struct kafka_batch_header *h);

/* In-place header rewrites used on append. Neither touches bytes covered by the CRC except
 * kafka_batch_set_log_append_time, which recomputes it. */
void kafka_batch_set_base_offset(uint8_t *buf, int64_t base_offset);
void kafka_batch_set_leader_epoch(uint8_t *buf, int32_t epoch);
/* Sets the LogAppendTime attribute and maxTimestamp, then recomputes the CRC. */
void kafka_batch_set_log_append_time(uint8_t *buf, size_t total_size, int64_t timestamp_ms);

#endif
