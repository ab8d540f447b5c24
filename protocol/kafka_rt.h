/* Kafka wire-format runtime used by the generated codec (protocol guide "Protocol Primitive
 * Types"; KIP-482 for compact types and tagged fields).
 *
 * - struct kafka_reader: bounds-checked cursor over an input buffer. Every read checks the bytes
 *   left first; strings and bytes point into the buffer (no copy).
 * - struct kafka_writer: cursor over a caller buffer; a write that does not fit fails with
 *   LM_E_FULL and leaves the cursor where it was.
 * - struct kafka_arena: bounded bump allocator for decoded arrays; the caller gives the maximum
 *   number of bytes, an allocation beyond it fails (NULL / LM_E_NOMEM), everything is freed at
 *   once.
 * All functions return 0 or a negative LM_E_* code (common/lm_err.h). */
#ifndef LAMINAR_PROTOCOL_KAFKA_RT_H
#define LAMINAR_PROTOCOL_KAFKA_RT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/lm_err.h"

/* A string: ptr/len, len -1 = null. Not NUL-terminated. */
struct kafka_str {
    const char *ptr;
    int32_t len;
};

/* Bytes (also records): ptr/len, len -1 = null. */
struct kafka_bytes {
    const uint8_t *ptr;
    int32_t len;
};

/* A uuid: 16 raw bytes (all zero = Kafka's ZERO_UUID). */
struct kafka_uuid {
    uint8_t b[16];
};

struct kafka_reader {
    const uint8_t *buf;
    size_t len;
    size_t pos;
};

struct kafka_writer {
    uint8_t *buf;
    size_t cap;
    size_t pos;
};

struct kafka_arena_chunk;

struct kafka_arena {
    struct kafka_arena_chunk *head; /* newest chunk first */
    size_t limit_bytes;             /* maximum bytes handed out (plus alignment) */
    size_t used_bytes;              /* bytes handed out so far, counting alignment */
};

#define KAFKA_STR_NULL   ((struct kafka_str){NULL, -1})
#define KAFKA_BYTES_NULL ((struct kafka_bytes){NULL, -1})
/* KAFKA_STR("lit") makes a kafka_str from a string literal. */
#define KAFKA_STR(lit) ((struct kafka_str){(lit), (int32_t)(sizeof(lit) - 1)})

/* Longest unsigned varint of 32 bits and varlong of 64 bits (KIP-482). */
#define KAFKA_VARINT_MAX_BYTES  5
#define KAFKA_VARLONG_MAX_BYTES 10

/* ---- arena ---- */

/* kafka_arena_init prepares an empty arena that hands out at most limit_bytes bytes. */
void kafka_arena_init(struct kafka_arena *a, size_t limit_bytes);
/* kafka_arena_deinit frees everything the arena handed out. */
void kafka_arena_deinit(struct kafka_arena *a);
/* kafka_arena_reset frees everything handed out; the arena can be used again. */
void kafka_arena_reset(struct kafka_arena *a);
/* kafka_arena_alloc returns size zeroed bytes aligned to align (a power of two <= 16), or NULL
 * when the limit would be exceeded or malloc fails. Owned by the arena. */
void *kafka_arena_alloc(struct kafka_arena *a, size_t size, size_t align);
/* kafka_arena_alloc_array returns count*elem_size zeroed bytes (NULL on overflow or limit). */
void *kafka_arena_alloc_array(struct kafka_arena *a, size_t count, size_t elem_size, size_t align);

/* ---- reader ---- */

/* kafka_reader_init sets a cursor at the start of buf[0..len); buf is borrowed. */
void kafka_reader_init(struct kafka_reader *r, const uint8_t *buf, size_t len);
/* kafka_reader_left returns the bytes not read yet. */
static inline size_t kafka_reader_left(const struct kafka_reader *r)
{
    return r->len - r->pos;
}
/* kafka_read_skip moves past n bytes. */
int kafka_read_skip(struct kafka_reader *r, size_t n);
/* kafka_read_sub makes sub a cursor over the next n bytes and moves r past them. */
int kafka_read_sub(struct kafka_reader *r, size_t n, struct kafka_reader *sub);

int kafka_read_bool(struct kafka_reader *r, bool *out);
int kafka_read_int8(struct kafka_reader *r, int8_t *out);
int kafka_read_int16(struct kafka_reader *r, int16_t *out);
int kafka_read_int32(struct kafka_reader *r, int32_t *out);
int kafka_read_int64(struct kafka_reader *r, int64_t *out);
int kafka_read_uint16(struct kafka_reader *r, uint16_t *out);
int kafka_read_uint32(struct kafka_reader *r, uint32_t *out);
int kafka_read_float64(struct kafka_reader *r, double *out);
int kafka_read_uuid(struct kafka_reader *r, struct kafka_uuid *out);
/* Unsigned varint (<= 5 bytes, value fits 32 bits) and varlong (<= 10 bytes); longer or
 * overflowing encodings fail with LM_E_VARINT. */
int kafka_read_uvarint(struct kafka_reader *r, uint32_t *out);
int kafka_read_uvarlong(struct kafka_reader *r, uint64_t *out);
/* Zigzag-encoded signed varint / varlong (record fields). */
int kafka_read_varint(struct kafka_reader *r, int32_t *out);
int kafka_read_varlong(struct kafka_reader *r, int64_t *out);
/* Classic string: i16 length, -1 = null; other negative lengths are LM_E_INVALID. */
int kafka_read_str(struct kafka_reader *r, struct kafka_str *out);
/* Compact string: uvarint length+1, 0 = null. */
int kafka_read_compact_str(struct kafka_reader *r, struct kafka_str *out);
/* Classic bytes: i32 length, -1 = null. */
int kafka_read_bytes(struct kafka_reader *r, struct kafka_bytes *out);
/* Compact bytes: uvarint length+1, 0 = null. */
int kafka_read_compact_bytes(struct kafka_reader *r, struct kafka_bytes *out);
/* Classic array count (i32, -1 = null) checked against the bytes left: count elements need at
 * least count*min_elem_bytes bytes (min_elem_bytes >= 1), else LM_E_TOO_LARGE. */
int kafka_read_array_count(struct kafka_reader *r, size_t min_elem_bytes, int32_t *count);
/* Compact array count (uvarint count+1, 0 = null), checked the same way. */
int kafka_read_compact_array_count(struct kafka_reader *r, size_t min_elem_bytes, int32_t *count);
/* kafka_read_tag_header reads one tagged field's tag and size (KIP-482), checks that the tag
 * is above *last_tag (strictly ascending, else LM_E_TAG_ORDER; start with -1) and that size
 * bytes are left, and makes sub a cursor over the payload. */
int kafka_read_tag_header(struct kafka_reader *r, int64_t *last_tag, uint32_t *tag,
                          struct kafka_reader *sub);
/* kafka_skip_tagged_fields reads a whole tagged-field section and skips every field. */
int kafka_skip_tagged_fields(struct kafka_reader *r);

/* ---- writer ---- */

/* kafka_writer_init sets a cursor at the start of buf[0..cap); buf is borrowed. */
void kafka_writer_init(struct kafka_writer *w, uint8_t *buf, size_t cap);
int kafka_write_raw(struct kafka_writer *w, const void *p, size_t n);
int kafka_write_bool(struct kafka_writer *w, bool v);
int kafka_write_int8(struct kafka_writer *w, int8_t v);
int kafka_write_int16(struct kafka_writer *w, int16_t v);
int kafka_write_int32(struct kafka_writer *w, int32_t v);
int kafka_write_int64(struct kafka_writer *w, int64_t v);
int kafka_write_uint16(struct kafka_writer *w, uint16_t v);
int kafka_write_uint32(struct kafka_writer *w, uint32_t v);
int kafka_write_float64(struct kafka_writer *w, double v);
int kafka_write_uuid(struct kafka_writer *w, const struct kafka_uuid *v);
int kafka_write_uvarint(struct kafka_writer *w, uint32_t v);
int kafka_write_uvarlong(struct kafka_writer *w, uint64_t v);
int kafka_write_varint(struct kafka_writer *w, int32_t v);
int kafka_write_varlong(struct kafka_writer *w, int64_t v);
/* Strings and bytes: len -1 writes null; len < -1 or too long for the encoding: LM_E_INVALID. */
int kafka_write_str(struct kafka_writer *w, struct kafka_str s);
int kafka_write_compact_str(struct kafka_writer *w, struct kafka_str s);
int kafka_write_bytes(struct kafka_writer *w, struct kafka_bytes b);
int kafka_write_compact_bytes(struct kafka_writer *w, struct kafka_bytes b);
/* Array counts: -1 writes null. */
int kafka_write_array_count(struct kafka_writer *w, int32_t count);
int kafka_write_compact_array_count(struct kafka_writer *w, int32_t count);

/* ---- sizes (exact encoded sizes) ---- */

size_t kafka_size_uvarint(uint32_t v);
size_t kafka_size_uvarlong(uint64_t v);
size_t kafka_size_varint(int32_t v);
size_t kafka_size_varlong(int64_t v);
static inline size_t kafka_size_str(struct kafka_str s)
{
    return 2 + (s.len > 0 ? (size_t)s.len : 0);
}
static inline size_t kafka_size_compact_str(struct kafka_str s)
{
    return s.len < 0 ? 1 : kafka_size_uvarint((uint32_t)s.len + 1) + (size_t)s.len;
}
static inline size_t kafka_size_bytes(struct kafka_bytes b)
{
    return 4 + (b.len > 0 ? (size_t)b.len : 0);
}
static inline size_t kafka_size_compact_bytes(struct kafka_bytes b)
{
    return b.len < 0 ? 1 : kafka_size_uvarint((uint32_t)b.len + 1) + (size_t)b.len;
}
static inline size_t kafka_size_compact_array_count(int32_t count)
{
    return count < 0 ? 1 : kafka_size_uvarint((uint32_t)count + 1);
}

/* ---- zigzag (record fields) ---- */

static inline uint32_t kafka_zigzag32(int32_t v)
{
    return ((uint32_t)v << 1) ^ (uint32_t)(v >> 31);
}
static inline int32_t kafka_unzigzag32(uint32_t v)
{
    return (int32_t)((v >> 1) ^ (~(v & 1) + 1));
}
static inline uint64_t kafka_zigzag64(int64_t v)
{
    return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63);
}
static inline int64_t kafka_unzigzag64(uint64_t v)
{
    return (int64_t)((v >> 1) ^ (~(v & 1) + 1));
}

/* kafka_str_eq compares two strings (null equals only null). */
bool kafka_str_eq(struct kafka_str a, struct kafka_str b);
/* kafka_uuid_is_zero tells whether u is all zeros. */
bool kafka_uuid_is_zero(const struct kafka_uuid *u);

#endif
