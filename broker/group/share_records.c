/* __share_group_state records and their replay (see share_records.h for the layouts). */
#include "broker/group/share_records.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

/* A state batch's encoded size: two i64, an i8, an i16 and an empty tagged-field section. */
#define SHR_BATCH_BYTES 20

int16_t lm_shr_key_type(const uint8_t *key, size_t len)
{
    if (key == NULL || len < 2)
        return -1;
    return (int16_t)(((uint16_t)key[0] << 8) | key[1]);
}

int32_t lm_shr_coord_key(struct kafka_str group, const uint8_t topic_id[16], int32_t partition,
                         char *out)
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    LM_ASSERT(group.len >= 0 && group.len <= 255);
    int32_t n = 0;
    memcpy(out, group.ptr, (size_t)group.len);
    n += group.len;
    out[n++] = ':';
    /* 16 bytes: five 3-byte groups (20 digits) and one byte (2 digits) */
    for (int i = 0; i < 16; i += 3) {
        uint32_t v = (uint32_t)topic_id[i] << 16;
        if (i + 1 < 16)
            v |= (uint32_t)topic_id[i + 1] << 8;
        if (i + 2 < 16)
            v |= topic_id[i + 2];
        out[n++] = b64[(v >> 18) & 63];
        out[n++] = b64[(v >> 12) & 63];
        if (i + 1 < 16)
            out[n++] = b64[(v >> 6) & 63];
        if (i + 2 < 16)
            out[n++] = b64[v & 63];
    }
    n += snprintf(out + n, 13, ":%d", partition);
    LM_ASSERT(n <= LM_SHR_COORD_KEY_MAX);
    return n;
}

static bool b64url_digit(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

bool lm_shr_coord_key_valid(const char *key, int32_t len)
{
    if (key == NULL || len < 1 + 1 + 22 + 1 + 1)
        return false;
    int32_t colon = len - 1;
    while (colon >= 0 && key[colon] != ':')
        colon--;
    int32_t digits = len - colon - 1;
    if (colon < 1 + 1 + 22 || digits < 1 || digits > 10)
        return false;
    int64_t partition = 0;
    for (int32_t i = colon + 1; i < len; i++) {
        if (key[i] < '0' || key[i] > '9')
            return false;
        partition = partition * 10 + (key[i] - '0');
    }
    if (partition > INT32_MAX || key[colon - 23] != ':')
        return false;
    for (int32_t i = colon - 22; i < colon; i++)
        if (!b64url_digit(key[i]))
            return false;
    return colon - 23 >= 1; /* a group before the topic id */
}

static bool type_ok(int16_t type)
{
    return type == LM_SHR_SNAPSHOT || type == LM_SHR_UPDATE;
}

int lm_shr_key_encode(struct kafka_writer *w, const struct lm_shr_key *k)
{
    if (!type_ok(k->type) || k->group.len < 0)
        return LM_E_INVALID;
    struct kafka_uuid id;
    memcpy(id.b, k->topic_id, 16);
    LM_TRY(kafka_write_int16(w, k->type));
    LM_TRY(kafka_write_str(w, k->group));
    LM_TRY(kafka_write_uuid(w, &id));
    return kafka_write_int32(w, k->partition);
}

int lm_shr_key_decode(const uint8_t *buf, size_t len, struct lm_shr_key *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    memset(out, 0, sizeof(*out));
    out->group = KAFKA_STR_NULL;
    LM_TRY(kafka_read_int16(&r, &out->type));
    if (!type_ok(out->type))
        return LM_E_UNSUPPORTED;
    LM_TRY(kafka_read_str(&r, &out->group));
    if (out->group.len < 0)
        return LM_E_INVALID;
    struct kafka_uuid id;
    LM_TRY(kafka_read_uuid(&r, &id));
    memcpy(out->topic_id, id.b, 16);
    LM_TRY(kafka_read_int32(&r, &out->partition));
    LM_ASSERT(r.pos <= len);
    return 0;
}

static bool batch_ok(const struct lm_shr_batch *b)
{
    return b->first >= 0 && b->first <= b->last &&
           (b->state == LM_SHARE_AVAILABLE || b->state == LM_SHARE_ACKNOWLEDGED ||
            b->state == LM_SHARE_ARCHIVED) &&
           b->delivery_count >= 0;
}

int lm_shr_value_encode(struct kafka_writer *w, int16_t type, const struct lm_shr_value *v)
{
    if (!type_ok(type) || v->n_batches < 0 || v->n_batches > LM_SHR_BATCHES_MAX ||
        (v->n_batches > 0 && v->batches == NULL))
        return LM_E_INVALID;
    for (int32_t i = 0; i < v->n_batches; i++)
        if (!batch_ok(&v->batches[i]))
            return LM_E_INVALID;
    LM_TRY(kafka_write_int16(w, LM_SHR_VALUE_VERSION));
    LM_TRY(kafka_write_int32(w, v->snapshot_epoch));
    if (type == LM_SHR_SNAPSHOT)
        LM_TRY(kafka_write_int32(w, v->state_epoch));
    LM_TRY(kafka_write_int32(w, v->leader_epoch));
    LM_TRY(kafka_write_int64(w, v->start_offset));
    if (type == LM_SHR_SNAPSHOT) {
        LM_TRY(kafka_write_int64(w, v->create_ms));
        LM_TRY(kafka_write_int64(w, v->write_ms));
    }
    LM_TRY(kafka_write_uvarint(w, (uint32_t)v->n_batches + 1));
    for (int32_t i = 0; i < v->n_batches; i++) {
        const struct lm_shr_batch *b = &v->batches[i];
        LM_TRY(kafka_write_int64(w, b->first));
        LM_TRY(kafka_write_int64(w, b->last));
        LM_TRY(kafka_write_int8(w, b->state));
        LM_TRY(kafka_write_int16(w, b->delivery_count));
        LM_TRY(kafka_write_uvarint(w, 0)); /* the batch's tagged fields */
    }
    return kafka_write_uvarint(w, 0); /* the value's tagged fields */
}

int lm_shr_value_decode(const uint8_t *buf, size_t len, int16_t type, struct lm_shr_value *out,
                        struct lm_shr_batch *batches, int32_t cap)
{
    LM_ASSERT(batches == NULL || cap >= 0);
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    memset(out, 0, sizeof(*out));
    if (!type_ok(type))
        return LM_E_UNSUPPORTED;
    int16_t version;
    LM_TRY(kafka_read_int16(&r, &version));
    if (version != LM_SHR_VALUE_VERSION)
        return LM_E_UNSUPPORTED;
    LM_TRY(kafka_read_int32(&r, &out->snapshot_epoch));
    if (type == LM_SHR_SNAPSHOT)
        LM_TRY(kafka_read_int32(&r, &out->state_epoch));
    LM_TRY(kafka_read_int32(&r, &out->leader_epoch));
    LM_TRY(kafka_read_int64(&r, &out->start_offset));
    if (type == LM_SHR_SNAPSHOT) {
        LM_TRY(kafka_read_int64(&r, &out->create_ms));
        LM_TRY(kafka_read_int64(&r, &out->write_ms));
    }
    int32_t n;
    LM_TRY(kafka_read_compact_array_count(&r, SHR_BATCH_BYTES, &n));
    if (n < 0)
        return LM_E_INVALID; /* StateBatches is not nullable */
    if (batches != NULL && n > cap)
        return LM_E_TOO_LARGE;
    for (int32_t i = 0; i < n; i++) {
        struct lm_shr_batch skipped;
        struct lm_shr_batch *b = batches != NULL ? &batches[i] : &skipped;
        LM_TRY(kafka_read_int64(&r, &b->first));
        LM_TRY(kafka_read_int64(&r, &b->last));
        LM_TRY(kafka_read_int8(&r, &b->state));
        LM_TRY(kafka_read_int16(&r, &b->delivery_count));
        LM_TRY(kafka_skip_tagged_fields(&r));
        if (!batch_ok(b))
            return LM_E_INVALID;
    }
    LM_TRY(kafka_skip_tagged_fields(&r));
    LM_ASSERT(r.pos <= len);
    out->n_batches = batches != NULL ? n : 0;
    out->batches = batches != NULL && n > 0 ? batches : NULL;
    return 0;
}

/* ---- fencing ---- */

void lm_shr_fence_init(struct lm_shr_fence *f)
{
    f->present = false;
    f->leader_epoch = INT32_MIN;
    f->state_epoch = INT32_MIN;
    f->snapshot_epoch = -1;
}

void lm_shr_fence_replay(struct lm_shr_fence *f, int16_t type, const struct lm_shr_value *v)
{
    if (v == NULL) {
        lm_shr_fence_init(f);
        return;
    }
    f->present = true;
    if (v->leader_epoch > f->leader_epoch)
        f->leader_epoch = v->leader_epoch;
    if (type == LM_SHR_SNAPSHOT) {
        if (v->state_epoch > f->state_epoch)
            f->state_epoch = v->state_epoch;
        f->snapshot_epoch = v->snapshot_epoch;
    }
}

int16_t lm_shr_fence_write(const struct lm_shr_fence *f, int32_t leader_epoch, int32_t state_epoch)
{
    if (leader_epoch != -1 && f->leader_epoch > leader_epoch)
        return KAFKA_FENCED_LEADER_EPOCH;
    if (state_epoch != -1 && f->state_epoch > state_epoch)
        return KAFKA_FENCED_STATE_EPOCH;
    return KAFKA_NONE;
}

int16_t lm_shr_fence_initialize(const struct lm_shr_fence *f, int32_t state_epoch)
{
    return state_epoch != -1 && f->state_epoch > state_epoch ? KAFKA_FENCED_STATE_EPOCH
                                                             : KAFKA_NONE;
}

int16_t lm_shr_fence_read(const struct lm_shr_fence *f, int32_t leader_epoch)
{
    return f->leader_epoch > leader_epoch ? KAFKA_FENCED_LEADER_EPOCH : KAFKA_NONE;
}

int32_t lm_shr_fence_next_snapshot(const struct lm_shr_fence *f)
{
    return f->present && f->snapshot_epoch < INT32_MAX ? f->snapshot_epoch + 1 : 0;
}

/* ---- replay ---- */

void lm_shr_state_init(struct lm_shr_state *s)
{
    memset(s, 0, sizeof(*s));
    s->start_offset = -1;
    lm_shr_fence_init(&s->fence);
}

void lm_shr_state_deinit(struct lm_shr_state *s)
{
    free(s->batches);
    lm_shr_state_init(s);
}

static int reserve(struct lm_shr_state *s, int32_t n)
{
    if (n > LM_SHR_BATCHES_MAX)
        return LM_E_TOO_LARGE;
    if (n <= s->cap)
        return 0;
    int32_t cap = s->cap ? s->cap : 16;
    while (cap < n)
        cap = cap > LM_SHR_BATCHES_MAX / 2 ? LM_SHR_BATCHES_MAX : cap * 2;
    struct lm_shr_batch *b = realloc(s->batches, (size_t)cap * sizeof(*b));
    if (b == NULL)
        return LM_E_NOMEM;
    s->batches = b;
    s->cap = cap;
    return 0;
}

/* Overlays nb on the sorted, disjoint batches: what they held of [nb.first, nb.last] is
 * replaced (a batch straddling it keeps its parts outside). */
static int overlay(struct lm_shr_state *s, const struct lm_shr_batch *nb)
{
    /* at most one batch splits in two, and nb comes in: n + 2 */
    LM_TRY(reserve(s, s->n + 2));
    struct lm_shr_batch *tmp = malloc((size_t)(s->n + 2) * sizeof(*tmp));
    if (tmp == NULL)
        return LM_E_NOMEM;
    int32_t m = 0;
    bool placed = false;
    for (int32_t i = 0; i < s->n; i++) {
        struct lm_shr_batch b = s->batches[i];
        if (b.last < nb->first) {
            tmp[m++] = b;
            continue;
        }
        if (b.first < nb->first) { /* its head, before nb */
            struct lm_shr_batch h = b;
            h.last = nb->first - 1;
            tmp[m++] = h;
        }
        if (!placed && b.first <= nb->last) {
            tmp[m++] = *nb;
            placed = true;
        }
        if (b.last > nb->last) { /* its tail, after nb */
            if (!placed) {
                tmp[m++] = *nb;
                placed = true;
            }
            struct lm_shr_batch t = b;
            if (t.first <= nb->last)
                t.first = nb->last + 1;
            tmp[m++] = t;
        }
    }
    if (!placed)
        tmp[m++] = *nb;
    LM_ASSERT(m <= s->n + 2);
    memcpy(s->batches, tmp, (size_t)m * sizeof(*tmp));
    s->n = m;
    free(tmp);
    return 0;
}

/* Drops what lies below the start offset. */
static void trim(struct lm_shr_state *s)
{
    int32_t m = 0;
    for (int32_t i = 0; i < s->n; i++) {
        struct lm_shr_batch b = s->batches[i];
        if (b.last < s->start_offset)
            continue;
        if (b.first < s->start_offset)
            b.first = s->start_offset;
        s->batches[m++] = b;
    }
    s->n = m;
}

static bool value_ok(const struct lm_shr_value *v)
{
    if (v->n_batches < 0 || v->n_batches > LM_SHR_BATCHES_MAX ||
        (v->n_batches > 0 && v->batches == NULL))
        return false;
    for (int32_t i = 0; i < v->n_batches; i++)
        if (!batch_ok(&v->batches[i]))
            return false;
    return true;
}

int lm_shr_state_replay(struct lm_shr_state *s, int16_t type, const struct lm_shr_value *v)
{
    if (!type_ok(type))
        return LM_E_INVALID;
    if (v == NULL) {
        lm_shr_state_deinit(s);
        return 0;
    }
    /* a snapshot's start offset -1: initialized without one (InitializeShareGroupState) */
    if (!value_ok(v) || (type == LM_SHR_SNAPSHOT && v->start_offset < -1) ||
        (type == LM_SHR_UPDATE && v->start_offset < -1))
        return LM_E_INVALID;
    if (type == LM_SHR_SNAPSHOT) {
        LM_TRY(reserve(s, v->n_batches));
        lm_shr_fence_replay(&s->fence, type, v);
        s->n = 0;
        s->present = true;
        s->snapshot_epoch = v->snapshot_epoch;
        s->state_epoch = v->state_epoch;
        s->leader_epoch = v->leader_epoch;
        s->start_offset = v->start_offset;
        s->updates = 0;
        bool sorted = true; /* as Kafka and laminar write them: copied as they are */
        for (int32_t i = 1; i < v->n_batches && sorted; i++)
            sorted = v->batches[i].first > v->batches[i - 1].last;
        if (sorted) {
            if (v->n_batches > 0)
                memcpy(s->batches, v->batches, (size_t)v->n_batches * sizeof(*s->batches));
            s->n = v->n_batches;
        } else {
            for (int32_t i = 0; i < v->n_batches; i++)
                LM_TRY(overlay(s, &v->batches[i]));
        }
        trim(s);
        return 0;
    }
    if (!s->present) {
        /* an update with no snapshot before it (Kafka writes a snapshot first): its start
         * offset, else 0 */
        s->present = true;
        s->start_offset = 0;
        s->n = 0;
    }
    lm_shr_fence_replay(&s->fence, type, v);
    s->snapshot_epoch = v->snapshot_epoch;
    if (v->leader_epoch != -1) /* Kafka's merge: -1 keeps it */
        s->leader_epoch = v->leader_epoch;
    if (v->start_offset >= 0)
        s->start_offset = v->start_offset;
    for (int32_t i = 0; i < v->n_batches; i++)
        LM_TRY(overlay(s, &v->batches[i]));
    trim(s);
    s->updates++;
    LM_ASSERT(s->n <= s->cap || s->n == 0);
    return 0;
}
