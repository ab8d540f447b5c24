/* Records of a record batch v2: bounded iteration, batch reader and batch builder. */
#include "protocol/records.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/compress.h"
#include "protocol/crc32c.h"

/* ---- zigzag varints (protobuf encoding, used by Kafka since KIP-98) ---- */

/* Reads an unsigned LEB128 of at most max_bytes into *out; the last allowed byte may only
 * carry the bits the type has left (last_mask), so every accepted encoding is well formed. */
static int rec_read_uvarint(const uint8_t **pp, const uint8_t *end, int max_bytes,
                            uint8_t last_mask, uint64_t *out)
{
    const uint8_t *p = *pp;
    uint64_t v = 0;
    for (int i = 0; i < max_bytes; i++) {
        if (p == end)
            return LM_E_TRUNCATED;
        uint8_t b = *p++;
        if (i == max_bytes - 1 && (b & ~last_mask) != 0)
            return LM_E_VARINT;
        v |= (uint64_t)(b & 0x7F) << (7 * i);
        if ((b & 0x80) == 0) {
            *pp = p;
            *out = v;
            return 0;
        }
    }
    LM_UNREACHABLE();
    return LM_E_VARINT;
}

/* Signed varint: 32 bits, at most 5 bytes, the 5th holding the top 4 bits. */
static int rec_read_varint(const uint8_t **pp, const uint8_t *end, int32_t *out)
{
    uint64_t u;
    int rc = rec_read_uvarint(pp, end, 5, 0x0F, &u);
    if (rc < 0)
        return rc;
    uint32_t z = (uint32_t)u;
    *out = (int32_t)((z >> 1) ^ (0u - (z & 1u)));
    return 0;
}

/* Signed varlong: 64 bits, at most 10 bytes, the 10th holding the top bit. */
static int rec_read_varlong(const uint8_t **pp, const uint8_t *end, int64_t *out)
{
    uint64_t z;
    int rc = rec_read_uvarint(pp, end, 10, 0x01, &z);
    if (rc < 0)
        return rc;
    *out = (int64_t)((z >> 1) ^ (0u - (z & 1u)));
    return 0;
}

static size_t rec_varlong_size(int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    size_t n = 1;
    while (z >= 0x80) {
        z >>= 7;
        n++;
    }
    return n;
}

static uint8_t *rec_write_varlong(uint8_t *p, int64_t v)
{
    uint64_t z = ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
    while (z >= 0x80) {
        *p++ = (uint8_t)(z | 0x80);
        z >>= 7;
    }
    *p++ = (uint8_t)z;
    return p;
}

/* Inside a record a short read means the record's length prefix lies about its body. */
static int rec_body_err(int rc)
{
    return rc == LM_E_TRUNCATED ? LM_E_CORRUPT : rc;
}

/* Reads a length-prefixed byte field of the record body: -1 is null when nullable. */
static int rec_read_bytes(const uint8_t **pp, const uint8_t *end, bool nullable,
                          const uint8_t **data, int32_t *len)
{
    int rc = rec_read_varint(pp, end, len);
    if (rc < 0)
        return rec_body_err(rc);
    if (*len == -1 && nullable) {
        *data = NULL;
        return 0;
    }
    if (*len < 0 || (size_t)*len > (size_t)(end - *pp))
        return LM_E_CORRUPT;
    *data = *pp;
    *pp += *len;
    return 0;
}

/* ---- iteration ---- */

void kafka_record_iter_init(struct kafka_record_iter *it, const uint8_t *records, size_t size,
                            int32_t count)
{
    LM_ASSERT(it != NULL);
    LM_ASSERT(records != NULL || size == 0);
    it->pos = records;
    it->end = records + size;
    it->count = count;
    it->index = 0;
}

int kafka_record_iter_next(struct kafka_record_iter *it, struct kafka_record *out)
{
    LM_ASSERT(it != NULL && out != NULL);
    LM_ASSERT(it->pos <= it->end);
    if (it->count < 0)
        return LM_E_CORRUPT;
    if (it->index == it->count)
        return it->pos == it->end ? 0 : LM_E_CORRUPT; /* bytes left after the last record */
    if (it->pos == it->end)
        return LM_E_CORRUPT; /* fewer records than recordsCount */
    const uint8_t *p = it->pos;
    int32_t length;
    int rc = rec_read_varint(&p, it->end, &length);
    if (rc < 0)
        return rc;
    if (length < 0)
        return LM_E_CORRUPT;
    if ((size_t)length > (size_t)(it->end - p))
        return LM_E_TRUNCATED;
    const uint8_t *rend = p + length;
    if (p == rend)
        return LM_E_CORRUPT;
    out->attributes = (int8_t)*p++;
    rc = rec_read_varlong(&p, rend, &out->timestamp_delta);
    if (rc < 0)
        return rec_body_err(rc);
    rc = rec_read_varint(&p, rend, &out->offset_delta);
    if (rc < 0)
        return rec_body_err(rc);
    rc = rec_read_bytes(&p, rend, true, &out->key, &out->key_len);
    if (rc < 0)
        return rc;
    rc = rec_read_bytes(&p, rend, true, &out->value, &out->value_len);
    if (rc < 0)
        return rc;
    rc = rec_read_varint(&p, rend, &out->header_count);
    if (rc < 0)
        return rec_body_err(rc);
    /* A header takes at least two bytes (two one-byte varints): bound the loop up front. */
    if (out->header_count < 0 || (size_t)out->header_count > (size_t)(rend - p) / 2)
        return LM_E_CORRUPT;
    out->headers = p;
    for (int32_t i = 0; i < out->header_count; i++) {
        const uint8_t *d;
        int32_t l;
        /* Header keys are non-null strings (KIP-82); values may be null. */
        rc = rec_read_bytes(&p, rend, false, &d, &l);
        if (rc < 0)
            return rc;
        rc = rec_read_bytes(&p, rend, true, &d, &l);
        if (rc < 0)
            return rc;
    }
    if (p != rend)
        return LM_E_CORRUPT; /* the length prefix disagrees with the fields */
    out->headers_end = rend;
    it->pos = rend;
    it->index++;
    LM_ASSERT(it->index <= it->count);
    return 1;
}

void kafka_record_headers(const struct kafka_record *r, struct kafka_header_iter *it)
{
    LM_ASSERT(r != NULL && it != NULL);
    LM_ASSERT(r->headers <= r->headers_end);
    it->pos = r->headers;
    it->end = r->headers_end;
    it->left = r->header_count;
}

int kafka_header_iter_next(struct kafka_header_iter *it, struct kafka_record_header *out)
{
    LM_ASSERT(it != NULL && out != NULL);
    if (it->left <= 0)
        return 0;
    int rc = rec_read_bytes(&it->pos, it->end, false, &out->key, &out->key_len);
    if (rc < 0)
        return rc;
    rc = rec_read_bytes(&it->pos, it->end, true, &out->value, &out->value_len);
    if (rc < 0)
        return rc;
    it->left--;
    return 1;
}

/* ---- batch reader ---- */

static int rec_reader_header(struct kafka_batch_reader *r, const uint8_t *buf, size_t len)
{
    memset(r, 0, sizeof(*r));
    int rc = kafka_batch_header_parse(buf, len, &r->header);
    if (rc < 0)
        return rc;
    if (kafka_batch_total_size(&r->header) > len)
        return LM_E_TRUNCATED;
    if (kafka_batch_codec(&r->header) > KAFKA_CODEC_ZSTD)
        return LM_E_COMPRESSION;
    r->records = buf + KAFKA_BATCH_HEADER_SIZE;
    r->records_size = kafka_batch_total_size(&r->header) - KAFKA_BATCH_HEADER_SIZE;
    return 0;
}

int kafka_batch_reader_open(struct kafka_batch_reader *r, const uint8_t *buf, size_t len,
                            size_t max_uncompressed)
{
    LM_ASSERT(r != NULL);
    int rc = rec_reader_header(r, buf, len);
    if (rc < 0)
        return rc;
    enum kafka_codec codec = kafka_batch_codec(&r->header);
    if (codec == KAFKA_CODEC_NONE)
        return 0;
    uint8_t *owned;
    size_t size;
    rc =
        kafka_decompress_alloc(codec, r->records, r->records_size, max_uncompressed, &owned, &size);
    if (rc < 0) {
        memset(r, 0, sizeof(*r));
        return rc;
    }
    r->owned = owned;
    r->records = owned;
    r->records_size = size;
    return 0;
}

int kafka_batch_reader_open_buf(struct kafka_batch_reader *r, const uint8_t *buf, size_t len,
                                uint8_t *scratch, size_t scratch_cap)
{
    LM_ASSERT(r != NULL);
    LM_ASSERT(scratch != NULL || scratch_cap == 0);
    int rc = rec_reader_header(r, buf, len);
    if (rc < 0)
        return rc;
    enum kafka_codec codec = kafka_batch_codec(&r->header);
    if (codec == KAFKA_CODEC_NONE)
        return 0;
    size_t size;
    rc = kafka_decompress(codec, r->records, r->records_size, scratch, scratch_cap, &size);
    if (rc < 0) {
        memset(r, 0, sizeof(*r));
        return rc;
    }
    r->records = scratch;
    r->records_size = size;
    return 0;
}

void kafka_batch_reader_iter(const struct kafka_batch_reader *r, struct kafka_record_iter *it)
{
    LM_ASSERT(r != NULL);
    kafka_record_iter_init(it, r->records, r->records_size, r->header.records_count);
}

void kafka_batch_reader_close(struct kafka_batch_reader *r)
{
    LM_ASSERT(r != NULL);
    free(r->owned);
    memset(r, 0, sizeof(*r));
}

/* ---- builder ---- */

void kafka_batch_builder_init(struct kafka_batch_builder *b, int64_t base_offset,
                              int64_t base_timestamp)
{
    LM_ASSERT(b != NULL);
    memset(b, 0, sizeof(*b));
    b->base_offset = base_offset;
    b->partition_leader_epoch = -1;
    b->base_timestamp = base_timestamp;
    b->producer_id = -1;
    b->producer_epoch = -1;
    b->base_sequence = -1;
    b->last_offset_delta = -1;
    b->max_timestamp = -1; /* RecordBatch.NO_TIMESTAMP until a record arrives */
}

void kafka_batch_builder_deinit(struct kafka_batch_builder *b)
{
    LM_ASSERT(b != NULL);
    free(b->buf);
    b->buf = NULL;
    b->size = b->cap = 0;
}

static int rec_builder_reserve(struct kafka_batch_builder *b, size_t want)
{
    LM_ASSERT(b->size <= b->cap);
    if (want <= b->cap - b->size)
        return 0;
    size_t ncap = b->cap ? b->cap : 256;
    while (ncap - b->size < want)
        ncap *= 2;
    uint8_t *nb = realloc(b->buf, ncap);
    if (nb == NULL)
        return LM_E_NOMEM;
    b->buf = nb;
    b->cap = ncap;
    return 0;
}

/* Size of a nullable length-prefixed field, or -1 if its length is invalid. */
static int64_t rec_field_size(const void *data, int32_t len, bool nullable)
{
    if (len == -1 && nullable)
        return 1;
    if (len < 0 || (len > 0 && data == NULL))
        return -1;
    return (int64_t)rec_varlong_size(len) + len;
}

static uint8_t *rec_write_field(uint8_t *p, const void *data, int32_t len)
{
    p = rec_write_varlong(p, len);
    if (len > 0) {
        memcpy(p, data, (size_t)len);
        p += len;
    }
    return p;
}

int kafka_batch_builder_append_at(struct kafka_batch_builder *b, int32_t offset_delta,
                                  int64_t timestamp_ms, const void *key, int32_t key_len,
                                  const void *value, int32_t value_len,
                                  const struct kafka_record_header *headers, int32_t header_count)
{
    LM_ASSERT(b != NULL);
    if (offset_delta <= b->last_offset_delta || offset_delta < 0 || header_count < 0 ||
        (header_count > 0 && headers == NULL))
        return LM_E_INVALID;
    /* Wrapping subtraction: the delta of any two int64 timestamps fits the varlong. */
    int64_t ts_delta = (int64_t)((uint64_t)timestamp_ms - (uint64_t)b->base_timestamp);
    int64_t body = 1 + (int64_t)rec_varlong_size(ts_delta) +
                   (int64_t)rec_varlong_size(offset_delta) +
                   (int64_t)rec_varlong_size(header_count);
    int64_t f = rec_field_size(key, key_len, true);
    int64_t g = rec_field_size(value, value_len, true);
    if (f < 0 || g < 0)
        return LM_E_INVALID;
    body += f + g;
    for (int32_t i = 0; i < header_count; i++) {
        f = rec_field_size(headers[i].key, headers[i].key_len, false);
        g = rec_field_size(headers[i].value, headers[i].value_len, true);
        if (f < 0 || g < 0)
            return LM_E_INVALID;
        body += f + g;
        if (body > INT32_MAX)
            return LM_E_TOO_LARGE;
    }
    if (body > INT32_MAX)
        return LM_E_TOO_LARGE;
    size_t total = rec_varlong_size(body) + (size_t)body;
    if (b->size + total > (size_t)INT32_MAX - KAFKA_BATCH_HEADER_SIZE)
        return LM_E_TOO_LARGE;
    int rc = rec_builder_reserve(b, total);
    if (rc < 0)
        return rc;
    uint8_t *start = b->buf + b->size;
    uint8_t *p = rec_write_varlong(start, body);
    uint8_t *body_start = p;
    *p++ = 0; /* record attributes: unused by Kafka, always 0 */
    p = rec_write_varlong(p, ts_delta);
    p = rec_write_varlong(p, offset_delta);
    p = rec_write_field(p, key, key_len);
    p = rec_write_field(p, value, value_len);
    p = rec_write_varlong(p, header_count);
    for (int32_t i = 0; i < header_count; i++) {
        p = rec_write_field(p, headers[i].key, headers[i].key_len);
        p = rec_write_field(p, headers[i].value, headers[i].value_len);
    }
    LM_ASSERT(p - body_start == body);
    LM_ASSERT((size_t)(p - start) == total);
    b->size += total;
    b->count++;
    b->last_offset_delta = offset_delta;
    if (b->count == 1 || timestamp_ms > b->max_timestamp)
        b->max_timestamp = timestamp_ms;
    return 0;
}

int kafka_batch_builder_append(struct kafka_batch_builder *b, int64_t timestamp_ms, const void *key,
                               int32_t key_len, const void *value, int32_t value_len,
                               const struct kafka_record_header *headers, int32_t header_count)
{
    LM_ASSERT(b != NULL);
    if (b->last_offset_delta == INT32_MAX)
        return LM_E_TOO_LARGE;
    return kafka_batch_builder_append_at(b, b->last_offset_delta + 1, timestamp_ms, key, key_len,
                                         value, value_len, headers, header_count);
}

static void rec_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void rec_put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void rec_put64(uint8_t *p, uint64_t v)
{
    rec_put32(p, (uint32_t)(v >> 32));
    rec_put32(p + 4, (uint32_t)v);
}

int kafka_batch_builder_finish(struct kafka_batch_builder *b, enum kafka_codec codec, uint8_t **out,
                               size_t *out_size)
{
    LM_ASSERT(b != NULL && out != NULL && out_size != NULL);
    if ((unsigned)codec > KAFKA_CODEC_ZSTD)
        return LM_E_INVALID;
    const uint8_t *section = b->buf;
    size_t section_size = b->size;
    uint8_t *compressed = NULL;
    if (codec != KAFKA_CODEC_NONE) {
        int rc = kafka_compress(codec, b->buf, b->size, &compressed, &section_size);
        if (rc < 0)
            return rc;
        section = compressed;
    }
    if (section_size > (size_t)INT32_MAX - KAFKA_BATCH_HEADER_SIZE) {
        free(compressed);
        return LM_E_TOO_LARGE;
    }
    size_t total = KAFKA_BATCH_HEADER_SIZE + section_size;
    uint8_t *buf = malloc(total);
    if (buf == NULL) {
        free(compressed);
        return LM_E_NOMEM;
    }
    int16_t attrs = (int16_t)((b->attributes & ~KAFKA_BATCH_ATTR_CODEC_MASK) | (int16_t)codec);
    rec_put64(buf + KAFKA_BATCH_OFF_BASE_OFFSET, (uint64_t)b->base_offset);
    rec_put32(buf + KAFKA_BATCH_OFF_LENGTH, (uint32_t)(total - KAFKA_BATCH_LOG_OVERHEAD));
    rec_put32(buf + KAFKA_BATCH_OFF_LEADER_EPOCH, (uint32_t)b->partition_leader_epoch);
    buf[KAFKA_BATCH_OFF_MAGIC] = KAFKA_BATCH_MAGIC_V2;
    rec_put16(buf + KAFKA_BATCH_OFF_ATTRIBUTES, (uint16_t)attrs);
    rec_put32(buf + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)b->last_offset_delta);
    rec_put64(buf + KAFKA_BATCH_OFF_BASE_TIMESTAMP, (uint64_t)b->base_timestamp);
    rec_put64(buf + KAFKA_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)b->max_timestamp);
    rec_put64(buf + KAFKA_BATCH_OFF_PRODUCER_ID, (uint64_t)b->producer_id);
    rec_put16(buf + KAFKA_BATCH_OFF_PRODUCER_EPOCH, (uint16_t)b->producer_epoch);
    rec_put32(buf + KAFKA_BATCH_OFF_BASE_SEQUENCE, (uint32_t)b->base_sequence);
    rec_put32(buf + KAFKA_BATCH_OFF_RECORDS_COUNT, (uint32_t)b->count);
    if (section_size > 0)
        memcpy(buf + KAFKA_BATCH_HEADER_SIZE, section, section_size);
    free(compressed);
    uint32_t crc =
        crc32c_update(0, buf + KAFKA_BATCH_OFF_ATTRIBUTES, total - KAFKA_BATCH_OFF_ATTRIBUTES);
    rec_put32(buf + KAFKA_BATCH_OFF_CRC, crc);
    *out = buf;
    *out_size = total;
    return 0;
}

void kafka_control_record_encode(int16_t type, int32_t coordinator_epoch, uint8_t key[4],
                                 uint8_t value[6])
{
    LM_ASSERT(type == KAFKA_CONTROL_ABORT || type == KAFKA_CONTROL_COMMIT);
    rec_put16(key, 0); /* key version */
    rec_put16(key + 2, (uint16_t)type);
    rec_put16(value, 0); /* value version */
    rec_put32(value + 2, (uint32_t)coordinator_epoch);
}

int kafka_txn_marker_build(int64_t producer_id, int16_t producer_epoch, int16_t type,
                           int32_t coordinator_epoch, int64_t timestamp_ms, uint8_t **out,
                           size_t *out_size)
{
    if (producer_id < 0 || producer_epoch < 0 ||
        (type != KAFKA_CONTROL_ABORT && type != KAFKA_CONTROL_COMMIT))
        return LM_E_INVALID;
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, 0, timestamp_ms);
    b.attributes = KAFKA_BATCH_ATTR_CONTROL | KAFKA_BATCH_ATTR_TRANSACTIONAL;
    b.producer_id = producer_id;
    b.producer_epoch = producer_epoch;
    uint8_t key[4], value[6];
    kafka_control_record_encode(type, coordinator_epoch, key, value);
    int rc = kafka_batch_builder_append(&b, timestamp_ms, key, 4, value, 6, NULL, 0);
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, out, out_size);
    kafka_batch_builder_deinit(&b);
    return rc;
}

int kafka_txn_marker_parse(const uint8_t *batch, size_t len, const struct kafka_batch_header *h,
                           int16_t *type, int32_t *coordinator_epoch)
{
    if (!(h->attributes & KAFKA_BATCH_ATTR_CONTROL) || len <= KAFKA_BATCH_HEADER_SIZE ||
        kafka_batch_codec(h) != KAFKA_CODEC_NONE)
        return LM_E_INVALID;
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_record_iter_init(&it, batch + KAFKA_BATCH_HEADER_SIZE, len - KAFKA_BATCH_HEADER_SIZE,
                           h->records_count);
    if (kafka_record_iter_next(&it, &rec) != 1 || rec.key == NULL || rec.key_len < 4)
        return LM_E_INVALID;
    int16_t t = (int16_t)((rec.key[2] << 8) | rec.key[3]);
    if (rec.key[0] != 0 || rec.key[1] != 0 ||
        (t != KAFKA_CONTROL_ABORT && t != KAFKA_CONTROL_COMMIT))
        return LM_E_INVALID;
    *type = t;
    *coordinator_epoch = -1;
    if (rec.value != NULL && rec.value_len >= 6)
        *coordinator_epoch =
            (int32_t)(((uint32_t)rec.value[2] << 24) | ((uint32_t)rec.value[3] << 16) |
                      ((uint32_t)rec.value[4] << 8) | rec.value[5]);
    return 0;
}
