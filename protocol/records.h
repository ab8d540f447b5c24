/* Records inside a record batch v2: iteration and a batch builder.
 *
 * Record layout (Kafka protocol guide, "Record"; KIP-98; headers KIP-82), all varints signed
 * zigzag (varint at most 5 bytes, varlong at most 10):
 *   length varint, attributes i8, timestampDelta varlong, offsetDelta varint,
 *   keyLength varint (-1 null), key, valueLength varint (-1 null), value,
 *   headerCount varint, headers: [keyLength varint (>= 0), key, valueLength varint (-1 null),
 *   value]. The record's body is exactly `length` bytes after the length varint. */
#ifndef LAMINAR_PROTOCOL_RECORDS_H
#define LAMINAR_PROTOCOL_RECORDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "protocol/record_batch.h"

/* One record header; value_len -1 means a null value. Pointers borrow the batch bytes. */
struct kafka_record_header {
    const uint8_t *key;
    int32_t key_len;
    const uint8_t *value;
    int32_t value_len;
};

/* Iterator over the headers of one record (already checked when the record was read). */
struct kafka_header_iter {
    const uint8_t *pos;
    const uint8_t *end;
    int32_t left;
};

/* One decoded record. key/value point into the records section; len -1 means null (ptr NULL). */
struct kafka_record {
    int8_t attributes;
    int64_t timestamp_delta;
    int32_t offset_delta;
    const uint8_t *key;
    int32_t key_len;
    const uint8_t *value;
    int32_t value_len;
    int32_t header_count;
    const uint8_t *headers;     /* first header byte */
    const uint8_t *headers_end; /* one past the last header byte (= end of the record) */
};

/* Iterator over the records section of a batch (uncompressed bytes). */
struct kafka_record_iter {
    const uint8_t *pos;
    const uint8_t *end;
    int32_t count; /* records_count from the header */
    int32_t index; /* records returned so far */
};

/* kafka_record_iter_init starts iterating `count` records in records[0..size). Borrows records. */
void kafka_record_iter_init(struct kafka_record_iter *it, const uint8_t *records, size_t size,
                            int32_t count);

/* kafka_record_iter_next reads the next record into *out. Returns 1 with a record, 0 at a clean
 * end (exactly `count` records that end exactly at the end of the section), or LM_E_TRUNCATED
 * (a record runs past the end), LM_E_VARINT (over-long varint) or LM_E_CORRUPT (bad lengths,
 * trailing bytes, record count disagreeing with the bytes). Never reads outside the section. */
int kafka_record_iter_next(struct kafka_record_iter *it, struct kafka_record *out);

/* kafka_record_headers starts iterating the headers of a record returned by the iterator. */
void kafka_record_headers(const struct kafka_record *r, struct kafka_header_iter *it);

/* kafka_header_iter_next reads the next header. Returns 1, 0 at the end, or LM_E_CORRUPT. */
int kafka_header_iter_next(struct kafka_header_iter *it, struct kafka_record_header *out);

/* A batch opened for reading records: the header, and the uncompressed records section
 * (pointing into the batch itself, into a caller buffer, or into `owned`). */
struct kafka_batch_reader {
    struct kafka_batch_header header;
    const uint8_t *records;
    size_t records_size;
    uint8_t *owned; /* malloc'd decompression buffer or NULL; freed by kafka_batch_reader_close */
};

/* kafka_batch_reader_open parses the header of the batch at buf (len bytes available), checks
 * that the whole batch is present, and decompresses its records section into a buffer it
 * allocates (at most max_uncompressed bytes). Does NOT check the CRC (kafka_batch_validate
 * does). Borrows buf, which must outlive the reader. Returns 0 or LM_E_TRUNCATED, LM_E_MAGIC,
 * LM_E_CORRUPT, LM_E_COMPRESSION, LM_E_TOO_LARGE, LM_E_NOMEM; on error nothing is held. */
int kafka_batch_reader_open(struct kafka_batch_reader *r, const uint8_t *buf, size_t len,
                            size_t max_uncompressed);

/* kafka_batch_reader_open_buf is kafka_batch_reader_open decompressing into the caller's
 * scratch[0..scratch_cap) instead of allocating (LM_E_TOO_LARGE if it does not fit). */
int kafka_batch_reader_open_buf(struct kafka_batch_reader *r, const uint8_t *buf, size_t len,
                                uint8_t *scratch, size_t scratch_cap);

/* kafka_batch_reader_iter starts iterating the records of an open reader. */
void kafka_batch_reader_iter(const struct kafka_batch_reader *r, struct kafka_record_iter *it);

/* kafka_batch_reader_close frees what the reader owns (safe on a zeroed reader). */
void kafka_batch_reader_close(struct kafka_batch_reader *r);

/* Builder of one batch, for tests, benchmarks and the broker's own records (control records,
 * group-coordinator records). Set the public fields after kafka_batch_builder_init, append
 * records, then finish. Records are kept uncompressed in a growing heap buffer until finish. */
struct kafka_batch_builder {
    /* public, set before the first append */
    int64_t base_offset;
    int32_t partition_leader_epoch; /* default -1, as producers send */
    int16_t attributes;             /* non-codec bits: transactional, control, ... */
    int64_t base_timestamp;
    int64_t producer_id;    /* default -1 */
    int16_t producer_epoch; /* default -1 */
    int32_t base_sequence;  /* default -1 */
    /* private */
    uint8_t *buf;
    size_t size;
    size_t cap;
    int32_t count;
    int32_t last_offset_delta;
    int64_t max_timestamp;
};

/* kafka_batch_builder_init starts an empty batch with the given base offset and timestamp. */
void kafka_batch_builder_init(struct kafka_batch_builder *b, int64_t base_offset,
                              int64_t base_timestamp);

/* kafka_batch_builder_append adds a record at the next offset delta (last + 1). key/value may be
 * NULL with len -1 for null; headers[0..header_count) are copied. Returns 0 or
 * LM_E_INVALID (bad length), LM_E_TOO_LARGE (batch over INT32_MAX bytes), LM_E_NOMEM. */
int kafka_batch_builder_append(struct kafka_batch_builder *b, int64_t timestamp_ms, const void *key,
                               int32_t key_len, const void *value, int32_t value_len,
                               const struct kafka_record_header *headers, int32_t header_count);

/* kafka_batch_builder_append_at is append with an explicit offset delta, which must be larger
 * than the previous one (gaps are allowed, as after compaction). */
int kafka_batch_builder_append_at(struct kafka_batch_builder *b, int32_t offset_delta,
                                  int64_t timestamp_ms, const void *key, int32_t key_len,
                                  const void *value, int32_t value_len,
                                  const struct kafka_record_header *headers, int32_t header_count);

/* kafka_batch_builder_finish compresses the records with codec, fills the header (lengths,
 * lastOffsetDelta, maxTimestamp, CRC) and returns the whole batch in *out (malloc'd; the caller
 * free()s it) of *out_size bytes. The builder stays valid (deinit it). Returns 0 or
 * LM_E_INVALID (unknown codec), LM_E_TOO_LARGE, LM_E_NOMEM, LM_E_COMPRESSION. */
int kafka_batch_builder_finish(struct kafka_batch_builder *b, enum kafka_codec codec, uint8_t **out,
                               size_t *out_size);

/* kafka_batch_builder_deinit frees the builder's buffer. */
void kafka_batch_builder_deinit(struct kafka_batch_builder *b);

/* Control record types (KIP-98): key = i16 version (0), i16 type; value = i16 version (0),
 * i32 coordinator epoch. */
#define KAFKA_CONTROL_ABORT  0
#define KAFKA_CONTROL_COMMIT 1

/* kafka_control_record_encode writes a control record's 4-byte key and 6-byte value. */
void kafka_control_record_encode(int16_t type, int32_t coordinator_epoch, uint8_t key[4],
                                 uint8_t value[6]);

/* kafka_txn_marker_build makes a transaction marker (KIP-98): a control batch (attributes
 * control | transactional, base offset 0, sequence -1) of the producer id and epoch, holding one
 * record with key {0, type} and value {0, coordinator_epoch}. *out malloc'd. Returns 0 or
 * LM_E_INVALID (negative id or epoch, unknown type), LM_E_NOMEM. */
int kafka_txn_marker_build(int64_t producer_id, int16_t producer_epoch, int16_t type,
                           int32_t coordinator_epoch, int64_t timestamp_ms, uint8_t **out,
                           size_t *out_size);
/* kafka_txn_marker_parse reads a control batch's marker: its type (KAFKA_CONTROL_ABORT or
 * _COMMIT) and coordinator epoch (-1 when the value is short). LM_E_INVALID for anything else
 * (another control record such as Raft's LeaderChange, a compressed or unreadable batch). */
int kafka_txn_marker_parse(const uint8_t *batch, size_t len, const struct kafka_batch_header *h,
                           int16_t *type, int32_t *coordinator_epoch);

#endif
