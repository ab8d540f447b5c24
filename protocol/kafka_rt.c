/* Kafka wire-format runtime: see kafka_rt.h. Big-endian fixed-width integers, varints and the
 * classic/compact string, bytes and array encodings of the protocol guide and KIP-482. */
#include "protocol/kafka_rt.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"

/* ---- arena ---- */

struct kafka_arena_chunk {
    struct kafka_arena_chunk *next;
    size_t cap;
    size_t used;
    _Alignas(16) uint8_t data[];
};

#define KAFKA_ARENA_CHUNK_MIN 4096u

void kafka_arena_init(struct kafka_arena *a, size_t limit_bytes)
{
    a->head = NULL;
    a->limit_bytes = limit_bytes;
    a->used_bytes = 0;
}

void kafka_arena_reset(struct kafka_arena *a)
{
    struct kafka_arena_chunk *c = a->head;
    while (c != NULL) {
        struct kafka_arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->used_bytes = 0;
}

void kafka_arena_deinit(struct kafka_arena *a)
{
    kafka_arena_reset(a);
}

void *kafka_arena_alloc(struct kafka_arena *a, size_t size, size_t align)
{
    LM_ASSERT(align != 0 && align <= 16 && (align & (align - 1)) == 0);
    LM_ASSERT(a->used_bytes <= a->limit_bytes);
    if (size == 0)
        size = 1; /* distinct non-NULL pointers keep "NULL = failure" unambiguous */
    if (size > a->limit_bytes - a->used_bytes)
        return NULL;
    struct kafka_arena_chunk *c = a->head;
    size_t off = 0;
    if (c != NULL) {
        off = (c->used + align - 1) & ~(align - 1);
        if (off > c->cap || c->cap - off < size)
            c = NULL;
    }
    if (c == NULL) {
        /* Grow geometrically but never past what the limit still allows. */
        size_t cap = a->head != NULL ? a->head->cap * 2 : KAFKA_ARENA_CHUNK_MIN;
        if (cap < size)
            cap = size;
        size_t room = a->limit_bytes - a->used_bytes;
        if (cap > room)
            cap = room;
        c = malloc(sizeof(*c) + cap);
        if (c == NULL)
            return NULL;
        c->next = a->head;
        c->cap = cap;
        c->used = 0;
        a->head = c;
        off = 0;
    }
    size_t charged = off - c->used + size;
    if (charged > a->limit_bytes - a->used_bytes)
        return NULL;
    a->used_bytes += charged;
    c->used = off + size;
    LM_ASSERT(c->used <= c->cap);
    void *p = c->data + off;
    memset(p, 0, size);
    return p;
}

void *kafka_arena_alloc_array(struct kafka_arena *a, size_t count, size_t elem_size, size_t align)
{
    if (elem_size != 0 && count > SIZE_MAX / elem_size)
        return NULL;
    return kafka_arena_alloc(a, count * elem_size, align);
}

/* ---- reader ---- */

void kafka_reader_init(struct kafka_reader *r, const uint8_t *buf, size_t len)
{
    LM_ASSERT(buf != NULL || len == 0);
    r->buf = buf;
    r->len = len;
    r->pos = 0;
}

int kafka_read_skip(struct kafka_reader *r, size_t n)
{
    if (kafka_reader_left(r) < n)
        return LM_E_TRUNCATED;
    r->pos += n;
    return 0;
}

int kafka_read_sub(struct kafka_reader *r, size_t n, struct kafka_reader *sub)
{
    if (kafka_reader_left(r) < n)
        return LM_E_TRUNCATED;
    kafka_reader_init(sub, r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

static uint64_t load_be(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static int read_be(struct kafka_reader *r, size_t n, uint64_t *out)
{
    if (kafka_reader_left(r) < n)
        return LM_E_TRUNCATED;
    *out = load_be(r->buf + r->pos, n);
    r->pos += n;
    return 0;
}

int kafka_read_bool(struct kafka_reader *r, bool *out)
{
    uint64_t v;
    int rc = read_be(r, 1, &v);
    if (rc == 0)
        *out = v != 0;
    return rc;
}

#define KAFKA_READ_FIXED(name, type, utype, n)                                                     \
    int kafka_read_##name(struct kafka_reader *r, type *out)                                       \
    {                                                                                              \
        uint64_t v;                                                                                \
        int rc = read_be(r, n, &v);                                                                \
        if (rc == 0)                                                                               \
            *out = (type)(utype)v;                                                                 \
        return rc;                                                                                 \
    }
KAFKA_READ_FIXED(int8, int8_t, uint8_t, 1)
KAFKA_READ_FIXED(int16, int16_t, uint16_t, 2)
KAFKA_READ_FIXED(int32, int32_t, uint32_t, 4)
KAFKA_READ_FIXED(int64, int64_t, uint64_t, 8)
KAFKA_READ_FIXED(uint16, uint16_t, uint16_t, 2)
KAFKA_READ_FIXED(uint32, uint32_t, uint32_t, 4)

int kafka_read_float64(struct kafka_reader *r, double *out)
{
    uint64_t v;
    int rc = read_be(r, 8, &v);
    if (rc == 0)
        memcpy(out, &v, sizeof(*out));
    return rc;
}

int kafka_read_uuid(struct kafka_reader *r, struct kafka_uuid *out)
{
    if (kafka_reader_left(r) < sizeof(out->b))
        return LM_E_TRUNCATED;
    memcpy(out->b, r->buf + r->pos, sizeof(out->b));
    r->pos += sizeof(out->b);
    return 0;
}

/* Reads an unsigned LEB128-style varint of at most max_bytes whose value fits in bits. */
static int read_uvar(struct kafka_reader *r, unsigned max_bytes, unsigned bits, uint64_t *out)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < max_bytes; i++) {
        if (r->pos >= r->len)
            return LM_E_TRUNCATED;
        uint8_t b = r->buf[r->pos++];
        unsigned shift = 7 * i;
        uint64_t part = (uint64_t)(b & 0x7f);
        /* The last byte may only carry the bits that still fit. */
        if (shift + 7 > bits && (part >> (bits - shift)) != 0)
            return LM_E_VARINT;
        v |= part << shift;
        if ((b & 0x80) == 0) {
            *out = v;
            return 0;
        }
    }
    return LM_E_VARINT;
}

int kafka_read_uvarint(struct kafka_reader *r, uint32_t *out)
{
    uint64_t v;
    int rc = read_uvar(r, KAFKA_VARINT_MAX_BYTES, 32, &v);
    if (rc == 0)
        *out = (uint32_t)v;
    return rc;
}

int kafka_read_uvarlong(struct kafka_reader *r, uint64_t *out)
{
    return read_uvar(r, KAFKA_VARLONG_MAX_BYTES, 64, out);
}

int kafka_read_varint(struct kafka_reader *r, int32_t *out)
{
    uint32_t v;
    int rc = kafka_read_uvarint(r, &v);
    if (rc == 0)
        *out = kafka_unzigzag32(v);
    return rc;
}

int kafka_read_varlong(struct kafka_reader *r, int64_t *out)
{
    uint64_t v;
    int rc = kafka_read_uvarlong(r, &v);
    if (rc == 0)
        *out = kafka_unzigzag64(v);
    return rc;
}

/* Points out at the next len bytes (len >= 0, already known to be sane). */
static int take(struct kafka_reader *r, int64_t len, const uint8_t **p)
{
    if ((uint64_t)len > kafka_reader_left(r))
        return LM_E_TRUNCATED;
    *p = r->buf + r->pos;
    r->pos += (size_t)len;
    return 0;
}

/* The body of a string or byte array whose length prefix said len: -1 is null (nothing to
 * take), other negatives are malformed, more than max bytes too large for the type. */
static int take_sized(struct kafka_reader *r, int64_t len, int64_t max, const uint8_t **p)
{
    if (len == -1)
        return 0;
    if (len < 0)
        return LM_E_INVALID;
    if (len > max)
        return LM_E_TOO_LARGE;
    return take(r, len, p);
}

static int read_str_body(struct kafka_reader *r, int64_t len, struct kafka_str *out)
{
    const uint8_t *p = NULL;
    /* Kafka strings are at most 32767 bytes (i16 length) even in compact form. */
    int rc = take_sized(r, len, INT16_MAX, &p);
    if (rc == 0)
        *out = len == -1 ? KAFKA_STR_NULL : (struct kafka_str){(const char *)p, (int32_t)len};
    return rc;
}

static int read_bytes_body(struct kafka_reader *r, int64_t len, struct kafka_bytes *out)
{
    const uint8_t *p = NULL;
    int rc = take_sized(r, len, INT32_MAX, &p);
    if (rc == 0)
        *out = len == -1 ? KAFKA_BYTES_NULL : (struct kafka_bytes){p, (int32_t)len};
    return rc;
}

int kafka_read_str(struct kafka_reader *r, struct kafka_str *out)
{
    int16_t len;
    int rc = kafka_read_int16(r, &len);
    return rc != 0 ? rc : read_str_body(r, len, out);
}

/* Compact forms: length + 1 as an unsigned varint, 0 for null. */
int kafka_read_compact_str(struct kafka_reader *r, struct kafka_str *out)
{
    uint32_t n;
    int rc = kafka_read_uvarint(r, &n);
    return rc != 0 ? rc : read_str_body(r, (int64_t)n - 1, out);
}

int kafka_read_bytes(struct kafka_reader *r, struct kafka_bytes *out)
{
    int32_t len;
    int rc = kafka_read_int32(r, &len);
    return rc != 0 ? rc : read_bytes_body(r, len, out);
}

int kafka_read_compact_bytes(struct kafka_reader *r, struct kafka_bytes *out)
{
    uint32_t n;
    int rc = kafka_read_uvarint(r, &n);
    return rc != 0 ? rc : read_bytes_body(r, (int64_t)n - 1, out);
}

/* Checks count elements of at least min_elem_bytes each against the bytes left, before the
 * caller allocates anything for them. */
static int check_count(const struct kafka_reader *r, size_t min_elem_bytes, uint64_t count)
{
    if (min_elem_bytes == 0)
        min_elem_bytes = 1;
    if (count > kafka_reader_left(r) / min_elem_bytes)
        return LM_E_TOO_LARGE;
    return 0;
}

int kafka_read_array_count(struct kafka_reader *r, size_t min_elem_bytes, int32_t *count)
{
    int32_t n;
    int rc = kafka_read_int32(r, &n);
    if (rc != 0)
        return rc;
    if (n < -1)
        return LM_E_INVALID;
    if (n > 0 && (rc = check_count(r, min_elem_bytes, (uint64_t)n)) != 0)
        return rc;
    *count = n;
    return 0;
}

int kafka_read_compact_array_count(struct kafka_reader *r, size_t min_elem_bytes, int32_t *count)
{
    uint32_t n;
    int rc = kafka_read_uvarint(r, &n);
    if (rc != 0)
        return rc;
    if (n == 0) {
        *count = -1;
        return 0;
    }
    if (n - 1 > INT32_MAX)
        return LM_E_TOO_LARGE;
    if ((rc = check_count(r, min_elem_bytes, n - 1)) != 0)
        return rc;
    *count = (int32_t)(n - 1);
    return 0;
}

int kafka_read_tag_header(struct kafka_reader *r, int64_t *last_tag, uint32_t *tag,
                          struct kafka_reader *sub)
{
    uint32_t t, size;
    int rc = kafka_read_uvarint(r, &t);
    if (rc != 0)
        return rc;
    if ((int64_t)t <= *last_tag)
        return LM_E_TAG_ORDER;
    if ((rc = kafka_read_uvarint(r, &size)) != 0)
        return rc;
    if ((rc = kafka_read_sub(r, size, sub)) != 0)
        return rc;
    *last_tag = t;
    *tag = t;
    return 0;
}

int kafka_skip_tagged_fields(struct kafka_reader *r)
{
    uint32_t n;
    int rc = kafka_read_uvarint(r, &n);
    if (rc != 0)
        return rc;
    int64_t last = -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t tag;
        struct kafka_reader sub;
        if ((rc = kafka_read_tag_header(r, &last, &tag, &sub)) != 0)
            return rc;
    }
    return 0;
}

/* ---- writer ---- */

void kafka_writer_init(struct kafka_writer *w, uint8_t *buf, size_t cap)
{
    LM_ASSERT(buf != NULL || cap == 0);
    w->buf = buf;
    w->cap = cap;
    w->pos = 0;
}

int kafka_write_raw(struct kafka_writer *w, const void *p, size_t n)
{
    if (w->cap - w->pos < n)
        return LM_E_FULL;
    if (n != 0)
        memcpy(w->buf + w->pos, p, n);
    w->pos += n;
    return 0;
}

static int write_be(struct kafka_writer *w, uint64_t v, size_t n)
{
    if (w->cap - w->pos < n)
        return LM_E_FULL;
    for (size_t i = 0; i < n; i++)
        w->buf[w->pos + i] = (uint8_t)(v >> (8 * (n - 1 - i)));
    w->pos += n;
    return 0;
}

int kafka_write_bool(struct kafka_writer *w, bool v)
{
    return write_be(w, v ? 1 : 0, 1);
}
int kafka_write_int8(struct kafka_writer *w, int8_t v)
{
    return write_be(w, (uint8_t)v, 1);
}
int kafka_write_int16(struct kafka_writer *w, int16_t v)
{
    return write_be(w, (uint16_t)v, 2);
}
int kafka_write_int32(struct kafka_writer *w, int32_t v)
{
    return write_be(w, (uint32_t)v, 4);
}
int kafka_write_int64(struct kafka_writer *w, int64_t v)
{
    return write_be(w, (uint64_t)v, 8);
}
int kafka_write_uint16(struct kafka_writer *w, uint16_t v)
{
    return write_be(w, v, 2);
}
int kafka_write_uint32(struct kafka_writer *w, uint32_t v)
{
    return write_be(w, v, 4);
}
int kafka_write_float64(struct kafka_writer *w, double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    return write_be(w, u, 8);
}
int kafka_write_uuid(struct kafka_writer *w, const struct kafka_uuid *v)
{
    return kafka_write_raw(w, v->b, sizeof(v->b));
}

int kafka_write_uvarlong(struct kafka_writer *w, uint64_t v)
{
    uint8_t tmp[KAFKA_VARLONG_MAX_BYTES];
    size_t n = 0;
    while (v >= 0x80) {
        tmp[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    tmp[n++] = (uint8_t)v;
    LM_ASSERT(n <= KAFKA_VARLONG_MAX_BYTES);
    return kafka_write_raw(w, tmp, n);
}

int kafka_write_uvarint(struct kafka_writer *w, uint32_t v)
{
    return kafka_write_uvarlong(w, v);
}

int kafka_write_varint(struct kafka_writer *w, int32_t v)
{
    return kafka_write_uvarlong(w, kafka_zigzag32(v));
}

int kafka_write_varlong(struct kafka_writer *w, int64_t v)
{
    return kafka_write_uvarlong(w, kafka_zigzag64(v));
}

/* Writes two pieces or nothing, so a failed write leaves the cursor unchanged. */
static int write_prefixed(struct kafka_writer *w, size_t start, int rc, const void *p, size_t n)
{
    if (rc == 0)
        rc = kafka_write_raw(w, p, n);
    if (rc != 0)
        w->pos = start;
    return rc;
}

int kafka_write_str(struct kafka_writer *w, struct kafka_str s)
{
    if (s.len < -1 || s.len > INT16_MAX)
        return LM_E_INVALID;
    size_t start = w->pos;
    int rc = kafka_write_int16(w, (int16_t)s.len);
    return write_prefixed(w, start, rc, s.ptr, s.len > 0 ? (size_t)s.len : 0);
}

int kafka_write_compact_str(struct kafka_writer *w, struct kafka_str s)
{
    if (s.len < -1 || s.len > INT16_MAX)
        return LM_E_INVALID;
    size_t start = w->pos;
    int rc = kafka_write_uvarint(w, (uint32_t)(s.len + 1));
    return write_prefixed(w, start, rc, s.ptr, s.len > 0 ? (size_t)s.len : 0);
}

int kafka_write_bytes(struct kafka_writer *w, struct kafka_bytes b)
{
    if (b.len < -1)
        return LM_E_INVALID;
    size_t start = w->pos;
    int rc = kafka_write_int32(w, b.len);
    return write_prefixed(w, start, rc, b.ptr, b.len > 0 ? (size_t)b.len : 0);
}

int kafka_write_compact_bytes(struct kafka_writer *w, struct kafka_bytes b)
{
    if (b.len < -1)
        return LM_E_INVALID;
    size_t start = w->pos;
    int rc = kafka_write_uvarint(w, (uint32_t)b.len + 1);
    return write_prefixed(w, start, rc, b.ptr, b.len > 0 ? (size_t)b.len : 0);
}

int kafka_write_array_count(struct kafka_writer *w, int32_t count)
{
    if (count < -1)
        return LM_E_INVALID;
    return kafka_write_int32(w, count);
}

int kafka_write_compact_array_count(struct kafka_writer *w, int32_t count)
{
    if (count < -1)
        return LM_E_INVALID;
    return kafka_write_uvarint(w, (uint32_t)count + 1);
}

/* ---- sizes ---- */

size_t kafka_size_uvarlong(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

size_t kafka_size_uvarint(uint32_t v)
{
    return kafka_size_uvarlong(v);
}

size_t kafka_size_varint(int32_t v)
{
    return kafka_size_uvarlong(kafka_zigzag32(v));
}

size_t kafka_size_varlong(int64_t v)
{
    return kafka_size_uvarlong(kafka_zigzag64(v));
}

bool kafka_str_eq(struct kafka_str a, struct kafka_str b)
{
    if (a.len != b.len)
        return false;
    return a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0;
}

bool kafka_uuid_is_zero(const struct kafka_uuid *u)
{
    for (size_t i = 0; i < sizeof(u->b); i++)
        if (u->b[i] != 0)
            return false;
    return true;
}
