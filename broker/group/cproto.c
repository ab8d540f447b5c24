/* The classic consumer protocol's subscription and assignment bytes (cproto.h). */
#include "broker/group/cproto.h"

#include <string.h>

#include "common/lm_err.h"

int16_t lm_cproto_version(struct kafka_bytes b)
{
    struct kafka_reader r;
    int16_t v;
    if (b.len < 2)
        return -1;
    kafka_reader_init(&r, b.ptr, (size_t)b.len);
    if (kafka_read_int16(&r, &v) != 0 || v < 0)
        return -1;
    return v;
}

/* [topic string, partitions [i32]] appended to *out (arena-grown). */
static int read_topic_parts(struct kafka_reader *r, struct kafka_arena *arena, int32_t *n_out,
                            struct lm_cproto_tp **out)
{
    int32_t nt;
    LM_TRY(kafka_read_array_count(r, 6, &nt));
    if (nt < 0)
        return LM_E_INVALID;
    /* count first on a copy so the array is allocated once */
    struct kafka_reader probe = *r;
    int64_t total = 0;
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_str name;
        int32_t np;
        LM_TRY(kafka_read_str(&probe, &name));
        LM_TRY(kafka_read_array_count(&probe, 4, &np));
        if (name.len < 0 || np < 0)
            return LM_E_INVALID;
        LM_TRY(kafka_read_skip(&probe, 4 * (size_t)np));
        total += np;
    }
    struct lm_cproto_tp *v = total > 0 ? kafka_arena_alloc_array(arena, (size_t)total, sizeof(*v),
                                                                 _Alignof(struct lm_cproto_tp))
                                       : NULL;
    if (total > 0 && v == NULL)
        return LM_E_NOMEM;
    int32_t k = 0;
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_str name;
        int32_t np;
        LM_TRY(kafka_read_str(r, &name));
        LM_TRY(kafka_read_array_count(r, 4, &np));
        for (int32_t i = 0; i < np; i++) {
            v[k].topic = name;
            LM_TRY(kafka_read_int32(r, &v[k].partition));
            k++;
        }
    }
    *n_out = k;
    *out = v;
    return 0;
}

int lm_cproto_sub_decode(struct kafka_bytes b, struct kafka_arena *arena, struct lm_cproto_sub *out)
{
    memset(out, 0, sizeof(*out));
    out->rack_id = KAFKA_STR_NULL;
    if (b.len < 0)
        return LM_E_INVALID;
    struct kafka_reader r;
    kafka_reader_init(&r, b.ptr, (size_t)b.len);
    LM_TRY(kafka_read_int16(&r, &out->version));
    if (out->version < 0)
        return LM_E_INVALID;
    int16_t v = out->version > LM_CPROTO_SUB_VERSION_MAX ? LM_CPROTO_SUB_VERSION_MAX : out->version;
    int32_t n;
    LM_TRY(kafka_read_array_count(&r, 2, &n));
    if (n < 0)
        return LM_E_INVALID;
    out->topics = n > 0 ? kafka_arena_alloc_array(arena, (size_t)n, sizeof(struct kafka_str),
                                                  _Alignof(struct kafka_str))
                        : NULL;
    if (n > 0 && out->topics == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++) {
        LM_TRY(kafka_read_str(&r, &out->topics[i]));
        if (out->topics[i].len < 0)
            return LM_E_INVALID;
    }
    out->n_topics = n;
    struct kafka_bytes user;
    LM_TRY(kafka_read_bytes(&r, &user));
    if (v >= 1)
        LM_TRY(read_topic_parts(&r, arena, &out->n_owned, &out->owned));
    if (v >= 2) {
        int32_t generation;
        LM_TRY(kafka_read_int32(&r, &generation));
    }
    if (v >= 3)
        LM_TRY(kafka_read_str(&r, &out->rack_id));
    return 0;
}

size_t lm_cproto_assignment_size(int32_t n, const struct lm_cproto_tp *tps)
{
    size_t size = 2 + 4 + 4; /* version, topic count, null user data */
    for (int32_t i = 0; i < n; i++) {
        if (i == 0 || !kafka_str_eq(tps[i].topic, tps[i - 1].topic))
            size += 2 + (size_t)tps[i].topic.len + 4;
        size += 4;
    }
    return size;
}

int lm_cproto_assignment_encode(struct kafka_writer *w, int16_t version, int32_t n,
                                const struct lm_cproto_tp *tps)
{
    if (version < 0)
        version = 0;
    if (version > LM_CPROTO_ASSIGN_VERSION_MAX)
        version = LM_CPROTO_ASSIGN_VERSION_MAX;
    LM_TRY(kafka_write_int16(w, version));
    int32_t nt = 0;
    for (int32_t i = 0; i < n; i++)
        nt += i == 0 || !kafka_str_eq(tps[i].topic, tps[i - 1].topic);
    LM_TRY(kafka_write_array_count(w, nt));
    for (int32_t i = 0; i < n;) {
        int32_t j = i;
        while (j < n && kafka_str_eq(tps[j].topic, tps[i].topic))
            j++;
        LM_TRY(kafka_write_str(w, tps[i].topic));
        LM_TRY(kafka_write_array_count(w, j - i));
        for (int32_t k = i; k < j; k++)
            LM_TRY(kafka_write_int32(w, tps[k].partition));
        i = j;
    }
    return kafka_write_bytes(w, KAFKA_BYTES_NULL);
}

int lm_cproto_assignment_decode(struct kafka_bytes b, struct kafka_arena *arena, int32_t *n,
                                struct lm_cproto_tp **out, struct kafka_bytes *user_data)
{
    *n = 0;
    *out = NULL;
    if (user_data != NULL)
        *user_data = KAFKA_BYTES_NULL;
    if (b.len < 0)
        return LM_E_INVALID;
    struct kafka_reader r;
    kafka_reader_init(&r, b.ptr, (size_t)b.len);
    int16_t version;
    LM_TRY(kafka_read_int16(&r, &version));
    if (version < 0)
        return LM_E_INVALID;
    LM_TRY(read_topic_parts(&r, arena, n, out));
    struct kafka_bytes ud;
    LM_TRY(kafka_read_bytes(&r, &ud));
    if (user_data != NULL)
        *user_data = ud;
    return 0;
}
