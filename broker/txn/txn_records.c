/* __transaction_state record formats (see txn_records.h for the layouts and their source). */
#include "broker/txn/txn_records.h"

#include <string.h>

#include "broker/txn/txn_coord.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

#define TR_KEY_VERSION 0

static bool str_eq(struct kafka_str a, struct kafka_str b)
{
    return a.len == b.len && (a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0);
}

size_t lm_tr_key_size(struct kafka_str transactional_id)
{
    return 2 + kafka_size_str(transactional_id);
}

int lm_tr_key_encode(struct kafka_str transactional_id, uint8_t *buf, size_t cap, size_t *len)
{
    LM_ASSERT(transactional_id.len >= 0);
    struct kafka_writer w;
    kafka_writer_init(&w, buf, cap);
    LM_TRY(kafka_write_int16(&w, TR_KEY_VERSION));
    LM_TRY(kafka_write_str(&w, transactional_id));
    *len = w.pos;
    LM_ASSERT(*len == lm_tr_key_size(transactional_id));
    return 0;
}

int lm_tr_key_decode(struct kafka_bytes key, struct kafka_str *transactional_id)
{
    if (key.len < 2)
        return LM_E_CORRUPT;
    struct kafka_reader r;
    kafka_reader_init(&r, key.ptr, (size_t)key.len);
    int16_t version;
    if (kafka_read_int16(&r, &version) != 0 || version != TR_KEY_VERSION)
        return LM_E_CORRUPT;
    if (kafka_read_str(&r, transactional_id) != 0 || transactional_id->len < 0)
        return LM_E_CORRUPT;
    return 0;
}

/* run_len returns how many partitions from i on share the topic of partition i. */
static int32_t run_len(const struct lm_tr_value *v, int32_t i)
{
    int32_t n = 1;
    while (i + n < v->n_partitions && str_eq(v->partitions[i + n].topic, v->partitions[i].topic))
        n++;
    return n;
}

/* tags_size returns the size of v1's tagged fields (those different from their default). */
static size_t tags_size(const struct lm_tr_value *v)
{
    size_t n = 0, k = 0;
    if (v->previous_producer_id != -1)
        n += 2 + 8, k++;
    if (v->next_producer_id != -1)
        n += 2 + 8, k++;
    if (v->client_tv != 0)
        n += 2 + 2, k++;
    return kafka_size_uvarint((uint32_t)k) + n;
}

size_t lm_tr_value_size(const struct lm_tr_value *v)
{
    bool flex = v->version >= 1;
    size_t n = 2 + 8 + 2 + 4 + 1 + 8 + 8;
    int32_t topics = 0;
    for (int32_t i = 0; i < v->n_partitions;) {
        int32_t k = run_len(v, i);
        if (flex)
            n += kafka_size_compact_str(v->partitions[i].topic) +
                 kafka_size_uvarint((uint32_t)k + 1) + 4 * (size_t)k + 1;
        else
            n += kafka_size_str(v->partitions[i].topic) + 4 + 4 * (size_t)k;
        i += k;
        topics++;
    }
    if (flex)
        n += kafka_size_uvarint(topics > 0 ? (uint32_t)topics + 1 : 0) + tags_size(v);
    else
        n += 4;
    return n;
}

static int write_count(struct kafka_writer *w, bool flex, int32_t n)
{
    return flex ? kafka_write_compact_array_count(w, n) : kafka_write_array_count(w, n);
}

/* write_tag writes one tagged field: tag, size, then the value big-endian. */
static int write_tag(struct kafka_writer *w, uint32_t tag, int64_t value, size_t width)
{
    LM_TRY(kafka_write_uvarint(w, tag));
    LM_TRY(kafka_write_uvarint(w, (uint32_t)width));
    return width == 8 ? kafka_write_int64(w, value) : kafka_write_int16(w, (int16_t)value);
}

int lm_tr_value_encode(const struct lm_tr_value *v, uint8_t *buf, size_t cap, size_t *len)
{
    LM_ASSERT(v->n_partitions >= 0 && v->n_partitions <= LM_TXN_PARTS_PER_TXN_MAX);
    LM_ASSERT(v->version == 0 || v->version == 1);
    bool flex = v->version >= 1;
    struct kafka_writer w;
    kafka_writer_init(&w, buf, cap);
    LM_TRY(kafka_write_int16(&w, v->version));
    LM_TRY(kafka_write_int64(&w, v->producer_id));
    LM_TRY(kafka_write_int16(&w, v->producer_epoch));
    LM_TRY(kafka_write_int32(&w, v->timeout_ms));
    LM_TRY(kafka_write_int8(&w, v->status));
    if (v->n_partitions == 0) {
        LM_TRY(write_count(&w, flex, -1));
    } else {
        int32_t topics = 0;
        for (int32_t i = 0; i < v->n_partitions; i += run_len(v, i))
            topics++;
        LM_TRY(write_count(&w, flex, topics));
        for (int32_t i = 0; i < v->n_partitions;) {
            int32_t k = run_len(v, i);
            LM_TRY(flex ? kafka_write_compact_str(&w, v->partitions[i].topic)
                        : kafka_write_str(&w, v->partitions[i].topic));
            LM_TRY(write_count(&w, flex, k));
            for (int32_t j = 0; j < k; j++)
                LM_TRY(kafka_write_int32(&w, v->partitions[i + j].partition));
            if (flex)
                LM_TRY(kafka_write_uvarint(&w, 0)); /* the topic entry's tagged fields */
            i += k;
        }
    }
    LM_TRY(kafka_write_int64(&w, v->update_ts_ms));
    LM_TRY(kafka_write_int64(&w, v->start_ts_ms));
    if (flex) {
        uint32_t k =
            (v->previous_producer_id != -1) + (v->next_producer_id != -1) + (v->client_tv != 0);
        LM_TRY(kafka_write_uvarint(&w, k));
        if (v->previous_producer_id != -1)
            LM_TRY(write_tag(&w, 0, v->previous_producer_id, 8));
        if (v->next_producer_id != -1)
            LM_TRY(write_tag(&w, 1, v->next_producer_id, 8));
        if (v->client_tv != 0)
            LM_TRY(write_tag(&w, 2, v->client_tv, 2));
    }
    *len = w.pos;
    LM_ASSERT(*len == lm_tr_value_size(v));
    return 0;
}

static int read_s(struct kafka_reader *r, bool flex, struct kafka_str *s)
{
    int rc = flex ? kafka_read_compact_str(r, s) : kafka_read_str(r, s);
    if (rc != 0 || s->len < 0)
        return LM_E_CORRUPT;
    return 0;
}

static int read_count(struct kafka_reader *r, bool flex, size_t min_elem, int32_t *n)
{
    int rc = flex ? kafka_read_compact_array_count(r, min_elem, n)
                  : kafka_read_array_count(r, min_elem, n);
    return rc != 0 ? LM_E_CORRUPT : 0;
}

/* read_partitions reads the nullable topic array into an arena array of (topic, partition). */
static int read_partitions(struct kafka_reader *r, bool flex, struct kafka_arena *arena,
                           struct lm_tr_value *v)
{
    int32_t n_topics;
    LM_TRY(read_count(r, flex, 2, &n_topics));
    v->n_partitions = 0;
    v->partitions = NULL;
    if (n_topics <= 0)
        return 0;
    /* a first pass counts the partitions so the array is allocated once */
    struct kafka_reader scan = *r;
    size_t total = 0;
    for (int32_t t = 0; t < n_topics; t++) {
        struct kafka_str topic;
        int32_t n;
        LM_TRY(read_s(&scan, flex, &topic));
        LM_TRY(read_count(&scan, flex, 4, &n));
        if (n > 0 && kafka_read_skip(&scan, 4 * (size_t)n) != 0)
            return LM_E_CORRUPT;
        total += n > 0 ? (size_t)n : 0;
        if (flex && kafka_skip_tagged_fields(&scan) != 0)
            return LM_E_CORRUPT;
    }
    if (total > LM_TXN_PARTS_PER_TXN_MAX)
        return LM_E_CORRUPT;
    if (total > 0) {
        v->partitions = kafka_arena_alloc_array(arena, total, sizeof(*v->partitions),
                                                _Alignof(struct lm_txn_topic_partition));
        if (v->partitions == NULL)
            return LM_E_NOMEM;
    }
    for (int32_t t = 0; t < n_topics; t++) {
        struct kafka_str topic;
        int32_t n;
        LM_TRY(read_s(r, flex, &topic));
        LM_TRY(read_count(r, flex, 4, &n));
        for (int32_t j = 0; j < n; j++) {
            int32_t p;
            if (kafka_read_int32(r, &p) != 0)
                return LM_E_CORRUPT;
            LM_ASSERT((size_t)v->n_partitions < total);
            v->partitions[v->n_partitions++] = (struct lm_txn_topic_partition){topic, p};
        }
        if (flex && kafka_skip_tagged_fields(r) != 0)
            return LM_E_CORRUPT;
    }
    LM_ASSERT((size_t)v->n_partitions == total);
    return 0;
}

/* read_value_tags reads v1's tagged fields: 0 previous producer id, 1 next producer id,
 * 2 client transaction version; others are skipped. */
static int read_value_tags(struct kafka_reader *r, struct lm_tr_value *v)
{
    uint32_t n;
    if (kafka_read_uvarint(r, &n) != 0)
        return LM_E_CORRUPT;
    int64_t last = -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t tag;
        struct kafka_reader sub;
        if (kafka_read_tag_header(r, &last, &tag, &sub) != 0)
            return LM_E_CORRUPT;
        if (tag == 0 && kafka_read_int64(&sub, &v->previous_producer_id) != 0)
            return LM_E_CORRUPT;
        if (tag == 1 && kafka_read_int64(&sub, &v->next_producer_id) != 0)
            return LM_E_CORRUPT;
        if (tag == 2 && kafka_read_int16(&sub, &v->client_tv) != 0)
            return LM_E_CORRUPT;
    }
    return 0;
}

int lm_tr_value_decode(struct kafka_bytes value, struct kafka_arena *arena, struct lm_tr_value *v)
{
    memset(v, 0, sizeof(*v));
    v->previous_producer_id = -1;
    v->next_producer_id = -1;
    if (value.len < 2)
        return LM_E_CORRUPT;
    struct kafka_reader r;
    kafka_reader_init(&r, value.ptr, (size_t)value.len);
    if (kafka_read_int16(&r, &v->version) != 0 || v->version < 0 || v->version > 1)
        return LM_E_CORRUPT;
    bool flex = v->version >= 1;
    if (kafka_read_int64(&r, &v->producer_id) != 0 ||
        kafka_read_int16(&r, &v->producer_epoch) != 0 ||
        kafka_read_int32(&r, &v->timeout_ms) != 0 || kafka_read_int8(&r, &v->status) != 0)
        return LM_E_CORRUPT;
    if (v->status < LM_TXN_EMPTY || v->status > LM_TXN_PREPARE_EPOCH_FENCE)
        return LM_E_CORRUPT;
    LM_TRY(read_partitions(&r, flex, arena, v));
    if (kafka_read_int64(&r, &v->update_ts_ms) != 0 || kafka_read_int64(&r, &v->start_ts_ms) != 0)
        return LM_E_CORRUPT;
    if (flex)
        LM_TRY(read_value_tags(&r, v));
    return 0;
}
