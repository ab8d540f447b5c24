/* __consumer_offsets record formats (see group_records.h for the layouts and their source). */
#include "broker/group/group_records.h"

#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

/* ---- Java String.hashCode over UTF-16 code units ---- */

/* utf8_next decodes one code point at s[*i], advancing *i; a malformed byte gives U+FFFD and
 * advances by one (Java's CharsetDecoder REPLACE action, one replacement per bad byte for the
 * common cases: stray continuation bytes, truncated sequences, overlongs, surrogates). */
static uint32_t utf8_next(const unsigned char *s, size_t len, size_t *i)
{
    unsigned char c = s[*i];
    uint32_t cp;
    size_t need;
    uint32_t min;
    if (c < 0x80) {
        *i += 1;
        return c;
    } else if (c >= 0xC2 && c <= 0xDF) {
        cp = c & 0x1F, need = 1, min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        cp = c & 0x0F, need = 2, min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        cp = c & 0x07, need = 3, min = 0x10000;
    } else {
        *i += 1;
        return 0xFFFD;
    }
    for (size_t k = 1; k <= need; k++) {
        if (*i + k >= len || (s[*i + k] & 0xC0) != 0x80) {
            *i += 1;
            return 0xFFFD;
        }
        cp = (cp << 6) | (s[*i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
        *i += 1;
        return 0xFFFD;
    }
    *i += need + 1;
    return cp;
}

int32_t lm_gr_java_string_hash(const char *s, size_t len)
{
    const unsigned char *u = (const unsigned char *)s;
    uint32_t h = 0; /* unsigned arithmetic: Java int overflow wraps the same way */
    size_t i = 0;
    while (i < len) {
        size_t before = i;
        uint32_t cp = utf8_next(u, len, &i);
        LM_ASSERT(i > before && i <= len);
        if (cp >= 0x10000) {
            /* a supplementary code point is two UTF-16 code units (surrogate pair) */
            uint32_t v = cp - 0x10000;
            h = h * 31u + (0xD800u + (v >> 10));
            h = h * 31u + (0xDC00u + (v & 0x3FFu));
        } else {
            h = h * 31u + cp;
        }
    }
    return (int32_t)h;
}

int32_t lm_gr_partition_for(struct kafka_str group_id, int32_t n_partitions)
{
    LM_ASSERT(n_partitions > 0);
    int32_t h = lm_gr_java_string_hash(group_id.ptr, group_id.len > 0 ? (size_t)group_id.len : 0);
    /* Kafka's Utils.abs: Integer.MIN_VALUE maps to 0, not to itself as Math.abs would. */
    int32_t a = h == INT32_MIN ? 0 : (h < 0 ? -h : h);
    int32_t p = a % n_partitions;
    LM_ASSERT(p >= 0 && p < n_partitions);
    return p;
}

/* ---- keys ---- */

size_t lm_gr_key_size(const struct lm_gr_key *k)
{
    if (k->version == LM_GR_KEY_GROUP)
        return 2 + kafka_size_str(k->group);
    return 2 + kafka_size_str(k->group) + kafka_size_str(k->topic) + 4;
}

int lm_gr_key_encode(struct kafka_writer *w, const struct lm_gr_key *k)
{
    if (k->version < 0 || k->version > LM_GR_KEY_GROUP || k->group.len < 0)
        return LM_E_INVALID;
    size_t start = w->pos;
    LM_TRY(kafka_write_int16(w, k->version));
    LM_TRY(kafka_write_str(w, k->group));
    if (k->version != LM_GR_KEY_GROUP) {
        if (k->topic.len < 0)
            return LM_E_INVALID;
        LM_TRY(kafka_write_str(w, k->topic));
        LM_TRY(kafka_write_int32(w, k->partition));
    }
    LM_ASSERT(w->pos - start == lm_gr_key_size(k));
    return 0;
}

int lm_gr_key_decode(const uint8_t *buf, size_t len, struct lm_gr_key *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    memset(out, 0, sizeof(*out));
    out->topic = KAFKA_STR_NULL;
    LM_TRY(kafka_read_int16(&r, &out->version));
    if (out->version < 0 || out->version > LM_GR_KEY_GROUP)
        return LM_E_UNSUPPORTED;
    LM_TRY(kafka_read_str(&r, &out->group));
    if (out->group.len < 0)
        return LM_E_INVALID;
    if (out->version != LM_GR_KEY_GROUP) {
        LM_TRY(kafka_read_str(&r, &out->topic));
        LM_TRY(kafka_read_int32(&r, &out->partition));
        if (out->topic.len < 0)
            return LM_E_INVALID;
    }
    return 0;
}

/* ---- helpers for classic vs flexible encodings ---- */

static size_t size_s(bool flex, struct kafka_str s)
{
    return flex ? kafka_size_compact_str(s) : kafka_size_str(s);
}

static size_t size_b(bool flex, struct kafka_bytes b)
{
    return flex ? kafka_size_compact_bytes(b) : kafka_size_bytes(b);
}

static int write_s(struct kafka_writer *w, bool flex, struct kafka_str s)
{
    return flex ? kafka_write_compact_str(w, s) : kafka_write_str(w, s);
}

static int write_b(struct kafka_writer *w, bool flex, struct kafka_bytes b)
{
    return flex ? kafka_write_compact_bytes(w, b) : kafka_write_bytes(w, b);
}

static int read_s(struct kafka_reader *r, bool flex, struct kafka_str *s)
{
    return flex ? kafka_read_compact_str(r, s) : kafka_read_str(r, s);
}

static int read_b(struct kafka_reader *r, bool flex, struct kafka_bytes *b)
{
    return flex ? kafka_read_compact_bytes(r, b) : kafka_read_bytes(r, b);
}

/* ---- offset commit value ---- */

size_t lm_gr_offset_value_size(const struct lm_gr_offset_value *v)
{
    bool flex = v->version >= 4;
    size_t n = 2 + 8 + size_s(flex, v->metadata) + 8;
    if (v->version >= 3)
        n += 4;
    if (v->version == 1)
        n += 8;
    if (flex)
        n += 1; /* empty tagged-field section */
    return n;
}

int lm_gr_offset_value_encode(struct kafka_writer *w, const struct lm_gr_offset_value *v)
{
    if (v->version < 0 || v->version > 4 || v->metadata.len < 0)
        return LM_E_INVALID;
    bool flex = v->version >= 4;
    size_t start = w->pos;
    LM_TRY(kafka_write_int16(w, v->version));
    LM_TRY(kafka_write_int64(w, v->offset));
    if (v->version >= 3)
        LM_TRY(kafka_write_int32(w, v->leader_epoch));
    LM_TRY(write_s(w, flex, v->metadata));
    LM_TRY(kafka_write_int64(w, v->commit_ts_ms));
    if (v->version == 1)
        LM_TRY(kafka_write_int64(w, v->expire_ts_ms));
    if (flex)
        LM_TRY(kafka_write_uvarint(w, 0));
    LM_ASSERT(w->pos - start == lm_gr_offset_value_size(v));
    return 0;
}

int lm_gr_offset_value_decode(const uint8_t *buf, size_t len, struct lm_gr_offset_value *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    memset(out, 0, sizeof(*out));
    out->leader_epoch = -1;
    out->expire_ts_ms = -1;
    LM_TRY(kafka_read_int16(&r, &out->version));
    if (out->version < 0 || out->version > 4)
        return LM_E_UNSUPPORTED;
    bool flex = out->version >= 4;
    LM_TRY(kafka_read_int64(&r, &out->offset));
    if (out->version >= 3)
        LM_TRY(kafka_read_int32(&r, &out->leader_epoch));
    LM_TRY(read_s(&r, flex, &out->metadata));
    if (out->metadata.len < 0)
        return LM_E_INVALID;
    LM_TRY(kafka_read_int64(&r, &out->commit_ts_ms));
    if (out->version == 1)
        LM_TRY(kafka_read_int64(&r, &out->expire_ts_ms));
    if (flex)
        LM_TRY(kafka_skip_tagged_fields(&r));
    return 0;
}

/* ---- group metadata value ---- */

static size_t member_size(int16_t ver, const struct lm_gr_member *m)
{
    bool flex = ver >= 4;
    size_t n = size_s(flex, m->member_id);
    if (ver >= 3)
        n += size_s(flex, m->instance_id);
    n += size_s(flex, m->client_id) + size_s(flex, m->client_host);
    if (ver >= 1)
        n += 4;
    n += 4 + size_b(flex, m->subscription) + size_b(flex, m->assignment);
    if (flex)
        n += 1;
    return n;
}

size_t lm_gr_group_value_size(const struct lm_gr_group_value *v)
{
    bool flex = v->version >= 4;
    size_t n = 2 + size_s(flex, v->protocol_type) + 4 + size_s(flex, v->protocol) +
               size_s(flex, v->leader);
    if (v->version >= 2)
        n += 8;
    n += flex ? kafka_size_compact_array_count(v->n_members) : 4;
    for (int32_t i = 0; i < v->n_members; i++)
        n += member_size(v->version, &v->members[i]);
    if (flex)
        n += 1;
    return n;
}

int lm_gr_group_value_encode(struct kafka_writer *w, const struct lm_gr_group_value *v)
{
    if (v->version < 0 || v->version > 4 || v->protocol_type.len < 0 || v->n_members < 0)
        return LM_E_INVALID;
    bool flex = v->version >= 4;
    size_t start = w->pos;
    LM_TRY(kafka_write_int16(w, v->version));
    LM_TRY(write_s(w, flex, v->protocol_type));
    LM_TRY(kafka_write_int32(w, v->generation));
    LM_TRY(write_s(w, flex, v->protocol));
    LM_TRY(write_s(w, flex, v->leader));
    if (v->version >= 2)
        LM_TRY(kafka_write_int64(w, v->state_ts_ms));
    if (flex)
        LM_TRY(kafka_write_compact_array_count(w, v->n_members));
    else
        LM_TRY(kafka_write_array_count(w, v->n_members));
    for (int32_t i = 0; i < v->n_members; i++) {
        const struct lm_gr_member *m = &v->members[i];
        if (m->member_id.len < 0 || m->client_id.len < 0 || m->client_host.len < 0 ||
            m->subscription.len < 0 || m->assignment.len < 0)
            return LM_E_INVALID;
        LM_TRY(write_s(w, flex, m->member_id));
        if (v->version >= 3)
            LM_TRY(write_s(w, flex, m->instance_id));
        LM_TRY(write_s(w, flex, m->client_id));
        LM_TRY(write_s(w, flex, m->client_host));
        if (v->version >= 1)
            LM_TRY(kafka_write_int32(w, m->rebalance_timeout_ms));
        LM_TRY(kafka_write_int32(w, m->session_timeout_ms));
        LM_TRY(write_b(w, flex, m->subscription));
        LM_TRY(write_b(w, flex, m->assignment));
        if (flex)
            LM_TRY(kafka_write_uvarint(w, 0));
    }
    if (flex)
        LM_TRY(kafka_write_uvarint(w, 0));
    LM_ASSERT(w->pos - start == lm_gr_group_value_size(v));
    return 0;
}

int lm_gr_group_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                             struct lm_gr_group_value *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    memset(out, 0, sizeof(*out));
    out->state_ts_ms = -1;
    LM_TRY(kafka_read_int16(&r, &out->version));
    if (out->version < 0 || out->version > 4)
        return LM_E_UNSUPPORTED;
    bool flex = out->version >= 4;
    LM_TRY(read_s(&r, flex, &out->protocol_type));
    if (out->protocol_type.len < 0)
        return LM_E_INVALID;
    LM_TRY(kafka_read_int32(&r, &out->generation));
    LM_TRY(read_s(&r, flex, &out->protocol));
    LM_TRY(read_s(&r, flex, &out->leader));
    if (out->version >= 2)
        LM_TRY(kafka_read_int64(&r, &out->state_ts_ms));
    int32_t n;
    /* smallest member: four empty strings/bytes plus two i32s */
    if (flex)
        LM_TRY(kafka_read_compact_array_count(&r, 8, &n));
    else
        LM_TRY(kafka_read_array_count(&r, 8, &n));
    if (n < 0)
        return LM_E_INVALID;
    out->n_members = n;
    if (n > 0) {
        out->members = kafka_arena_alloc_array(arena, (size_t)n, sizeof(*out->members),
                                               _Alignof(struct lm_gr_member));
        if (!out->members)
            return LM_E_NOMEM;
    }
    for (int32_t i = 0; i < n; i++) {
        struct lm_gr_member *m = &out->members[i];
        m->instance_id = KAFKA_STR_NULL;
        LM_TRY(read_s(&r, flex, &m->member_id));
        if (out->version >= 3)
            LM_TRY(read_s(&r, flex, &m->instance_id));
        LM_TRY(read_s(&r, flex, &m->client_id));
        LM_TRY(read_s(&r, flex, &m->client_host));
        if (out->version >= 1)
            LM_TRY(kafka_read_int32(&r, &m->rebalance_timeout_ms));
        LM_TRY(kafka_read_int32(&r, &m->session_timeout_ms));
        if (out->version < 1)
            m->rebalance_timeout_ms = m->session_timeout_ms;
        LM_TRY(read_b(&r, flex, &m->subscription));
        LM_TRY(read_b(&r, flex, &m->assignment));
        if (flex)
            LM_TRY(kafka_skip_tagged_fields(&r));
        if (m->member_id.len < 0 || m->client_id.len < 0 || m->client_host.len < 0)
            return LM_E_INVALID;
    }
    if (flex)
        LM_TRY(kafka_skip_tagged_fields(&r));
    return 0;
}
