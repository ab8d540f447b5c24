/* Consumer-group records of __consumer_offsets (see cgroup_records.h for the layouts). */
#include "broker/group/cgroup_records.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

int16_t lm_cgr_key_type(const uint8_t *key, size_t len)
{
    if (key == NULL || len < 2)
        return -1;
    return (int16_t)(((uint16_t)key[0] << 8) | key[1]);
}

bool lm_cgr_is_type(int16_t type)
{
    return (type >= LM_CGR_GROUP_EPOCH && type <= LM_CGR_CURRENT_MEMBER) || type == LM_CGR_REGEX;
}

static bool key_has_member(int16_t type)
{
    return type == LM_CGR_MEMBER || type == LM_CGR_TARGET_MEMBER || type == LM_CGR_CURRENT_MEMBER ||
           type == LM_CGR_REGEX;
}

/* ---- keys ---- */

int lm_cgr_key_encode(struct kafka_writer *w, const struct lm_cgr_key *k)
{
    if (!lm_cgr_is_type(k->type) || k->group.len < 0 ||
        (key_has_member(k->type) && k->member.len < 0))
        return LM_E_INVALID;
    LM_TRY(kafka_write_int16(w, k->type));
    LM_TRY(kafka_write_str(w, k->group));
    if (key_has_member(k->type))
        LM_TRY(kafka_write_str(w, k->member));
    return 0;
}

int lm_cgr_key_decode(const uint8_t *buf, size_t len, struct lm_cgr_key *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    *out = (struct lm_cgr_key){.group = KAFKA_STR_NULL, .member = KAFKA_STR_NULL};
    LM_TRY(kafka_read_int16(&r, &out->type));
    if (!lm_cgr_is_type(out->type))
        return LM_E_UNSUPPORTED;
    LM_TRY(kafka_read_str(&r, &out->group));
    if (out->group.len < 0)
        return LM_E_INVALID;
    if (key_has_member(out->type)) {
        LM_TRY(kafka_read_str(&r, &out->member));
        if (out->member.len < 0)
            return LM_E_INVALID;
    }
    return 0;
}

/* ---- partition lists: [TopicId uuid, Partitions []int32, tags] ---- */

static int32_t parts_topics(const struct lm_cgr_parts *p)
{
    int32_t nt = 0;
    for (int32_t i = 0; i < p->n; i++)
        nt += i == 0 || memcmp(p->v[i].topic_id.b, p->v[i - 1].topic_id.b, 16) != 0;
    return nt;
}

static int parts_encode(struct kafka_writer *w, const struct lm_cgr_parts *p)
{
    if (p->n < 0 || (p->n > 0 && p->v == NULL))
        return LM_E_INVALID;
    LM_TRY(kafka_write_compact_array_count(w, parts_topics(p)));
    for (int32_t i = 0; i < p->n;) {
        int32_t j = i + 1;
        while (j < p->n && memcmp(p->v[j].topic_id.b, p->v[i].topic_id.b, 16) == 0)
            j++;
        LM_TRY(kafka_write_uuid(w, &p->v[i].topic_id));
        LM_TRY(kafka_write_compact_array_count(w, j - i));
        for (int32_t k = i; k < j; k++) {
            if (k > i && p->v[k].partition <= p->v[k - 1].partition)
                return LM_E_INVALID; /* not sorted or not a set */
            LM_TRY(kafka_write_int32(w, p->v[k].partition));
        }
        LM_TRY(kafka_write_uvarint(w, 0));
        i = j;
    }
    return 0;
}

static int tp_sort_cmp(const void *a, const void *b)
{
    return lm_cgroup_tp_cmp(a, b);
}

static int parts_decode(struct kafka_reader *r, struct kafka_arena *arena, struct lm_cgr_parts *out)
{
    int32_t nt;
    /* smallest topic: uuid, empty array, empty tags */
    LM_TRY(kafka_read_compact_array_count(r, 18, &nt));
    if (nt < 0)
        return LM_E_INVALID;
    if (nt > LM_CGR_TOPICS_MAX)
        return LM_E_TOO_LARGE;
    /* a first pass over a copy of the reader counts the partitions */
    struct kafka_reader scan = *r;
    int64_t total = 0;
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_uuid id;
        int32_t np;
        LM_TRY(kafka_read_uuid(&scan, &id));
        LM_TRY(kafka_read_compact_array_count(&scan, 4, &np));
        if (np < 0)
            return LM_E_INVALID;
        LM_TRY(kafka_read_skip(&scan, (size_t)np * 4));
        LM_TRY(kafka_skip_tagged_fields(&scan));
        total += np;
    }
    if (total > LM_CGROUP_ASSIGNED_MAX)
        return LM_E_TOO_LARGE;
    struct lm_cgroup_tp *v = NULL;
    if (total > 0) {
        v = kafka_arena_alloc_array(arena, (size_t)total, sizeof(*v),
                                    _Alignof(struct lm_cgroup_tp));
        if (v == NULL)
            return LM_E_NOMEM;
    }
    int32_t n = 0;
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_uuid id;
        int32_t np;
        LM_TRY(kafka_read_uuid(r, &id));
        LM_TRY(kafka_read_compact_array_count(r, 4, &np));
        for (int32_t k = 0; k < np; k++) {
            LM_ASSERT(n < total);
            v[n].topic_id = id;
            LM_TRY(kafka_read_int32(r, &v[n].partition));
            if (v[n].partition < 0)
                return LM_E_INVALID;
            n++;
        }
        LM_TRY(kafka_skip_tagged_fields(r));
    }
    LM_ASSERT(n == total);
    /* Kafka writes topics in map order: sort, and refuse a list naming a partition twice */
    if (n > 1)
        qsort(v, (size_t)n, sizeof(*v), tp_sort_cmp);
    for (int32_t i = 1; i < n; i++)
        if (lm_cgroup_tp_cmp(&v[i - 1], &v[i]) == 0)
            return LM_E_INVALID;
    *out = (struct lm_cgr_parts){n, v};
    return 0;
}

/* ---- values ---- */

static size_t uvarint_size(uint32_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static int read_value_version(struct kafka_reader *r)
{
    int16_t version;
    LM_TRY(kafka_read_int16(r, &version));
    return version == LM_CGR_VALUE_VERSION ? 0 : LM_E_UNSUPPORTED;
}

static int read_nonnull(struct kafka_reader *r, struct kafka_str *s)
{
    LM_TRY(kafka_read_compact_str(r, s));
    return s->len < 0 ? LM_E_INVALID : 0;
}

int lm_cgr_group_value_encode(struct kafka_writer *w, const struct lm_cgr_group_value *v)
{
    LM_TRY(kafka_write_int16(w, LM_CGR_VALUE_VERSION));
    LM_TRY(kafka_write_int32(w, v->epoch));
    if (!v->has_metadata_hash)
        return kafka_write_uvarint(w, 0);
    LM_TRY(kafka_write_uvarint(w, 1));
    LM_TRY(kafka_write_uvarint(w, 0)); /* tag 0: MetadataHash */
    LM_TRY(kafka_write_uvarint(w, 8));
    return kafka_write_int64(w, v->metadata_hash);
}

int lm_cgr_group_value_decode(const uint8_t *buf, size_t len, struct lm_cgr_group_value *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    *out = (struct lm_cgr_group_value){0};
    LM_TRY(read_value_version(&r));
    LM_TRY(kafka_read_int32(&r, &out->epoch));
    uint32_t n;
    LM_TRY(kafka_read_uvarint(&r, &n));
    int64_t last = -1;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t tag;
        struct kafka_reader sub;
        LM_TRY(kafka_read_tag_header(&r, &last, &tag, &sub));
        if (tag == 0) {
            LM_TRY(kafka_read_int64(&sub, &out->metadata_hash));
            out->has_metadata_hash = true;
        }
    }
    return 0;
}

int lm_cgr_member_value_encode(struct kafka_writer *w, const struct lm_cgr_member_value *v)
{
    if (v->client_id.len < 0 || v->client_host.len < 0 || v->n_topic_names < 0)
        return LM_E_INVALID;
    LM_TRY(kafka_write_int16(w, LM_CGR_VALUE_VERSION));
    LM_TRY(kafka_write_compact_str(w, v->instance_id));
    LM_TRY(kafka_write_compact_str(w, v->rack_id));
    LM_TRY(kafka_write_compact_str(w, v->client_id));
    LM_TRY(kafka_write_compact_str(w, v->client_host));
    LM_TRY(kafka_write_compact_array_count(w, v->n_topic_names));
    for (int32_t i = 0; i < v->n_topic_names; i++) {
        if (v->topic_names[i].len < 0)
            return LM_E_INVALID;
        LM_TRY(kafka_write_compact_str(w, v->topic_names[i]));
    }
    LM_TRY(kafka_write_compact_str(w, v->topic_regex));
    LM_TRY(kafka_write_int32(w, v->rebalance_timeout_ms));
    LM_TRY(kafka_write_compact_str(w, v->server_assignor));
    if (!v->has_classic)
        return kafka_write_uvarint(w, 0);
    /* tag 0: ClassicMemberMetadata, sized first (presence byte, session timeout, protocols,
     * the struct's empty tagged fields) */
    size_t size = 1 + 4 + uvarint_size((uint32_t)v->n_classic_protocols + 1) + 1;
    for (int32_t i = 0; i < v->n_classic_protocols; i++) {
        const struct lm_cgr_protocol *p = &v->classic_protocols[i];
        if (p->name.len < 0 || p->metadata.len < 0)
            return LM_E_INVALID;
        size += uvarint_size((uint32_t)p->name.len + 1) + (size_t)p->name.len +
                uvarint_size((uint32_t)p->metadata.len + 1) + (size_t)p->metadata.len + 1;
    }
    if (size > INT32_MAX)
        return LM_E_INVALID;
    LM_TRY(kafka_write_uvarint(w, 1));
    LM_TRY(kafka_write_uvarint(w, 0));
    LM_TRY(kafka_write_uvarint(w, (uint32_t)size));
    LM_TRY(kafka_write_int8(w, 1));
    LM_TRY(kafka_write_int32(w, v->classic_session_timeout_ms));
    LM_TRY(kafka_write_compact_array_count(w, v->n_classic_protocols));
    for (int32_t i = 0; i < v->n_classic_protocols; i++) {
        LM_TRY(kafka_write_compact_str(w, v->classic_protocols[i].name));
        LM_TRY(kafka_write_compact_bytes(w, v->classic_protocols[i].metadata));
        LM_TRY(kafka_write_uvarint(w, 0));
    }
    LM_TRY(kafka_write_uvarint(w, 0));
    return kafka_write_uvarint(w, 0);
}

/* ClassicMemberMetadata from its tagged field's data. */
static int read_classic(struct kafka_reader *r, struct kafka_arena *arena,
                        struct lm_cgr_member_value *out)
{
    int8_t present;
    LM_TRY(kafka_read_int8(r, &present));
    if (present < 0)
        return 0;
    LM_TRY(kafka_read_int32(r, &out->classic_session_timeout_ms));
    int32_t n;
    LM_TRY(kafka_read_compact_array_count(r, 3, &n));
    if (n < 0)
        return LM_E_INVALID;
    struct lm_cgr_protocol *v = n > 0 ? kafka_arena_alloc_array(arena, (size_t)n, sizeof(*v),
                                                                _Alignof(struct lm_cgr_protocol))
                                      : NULL;
    if (n > 0 && v == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < n; i++) {
        LM_TRY(read_nonnull(r, &v[i].name));
        LM_TRY(kafka_read_compact_bytes(r, &v[i].metadata));
        if (v[i].metadata.len < 0)
            return LM_E_INVALID;
        LM_TRY(kafka_skip_tagged_fields(r));
    }
    LM_TRY(kafka_skip_tagged_fields(r));
    out->has_classic = true;
    out->n_classic_protocols = n;
    out->classic_protocols = v;
    return 0;
}

int lm_cgr_member_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                               struct lm_cgr_member_value *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    *out = (struct lm_cgr_member_value){0};
    LM_TRY(read_value_version(&r));
    LM_TRY(kafka_read_compact_str(&r, &out->instance_id));
    LM_TRY(kafka_read_compact_str(&r, &out->rack_id));
    LM_TRY(read_nonnull(&r, &out->client_id));
    LM_TRY(read_nonnull(&r, &out->client_host));
    int32_t n;
    LM_TRY(kafka_read_compact_array_count(&r, 1, &n));
    if (n < 0)
        return LM_E_INVALID;
    if (n > LM_CGROUP_SUBSCRIBED_MAX)
        return LM_E_TOO_LARGE;
    struct kafka_str *names = NULL;
    if (n > 0) {
        names =
            kafka_arena_alloc_array(arena, (size_t)n, sizeof(*names), _Alignof(struct kafka_str));
        if (names == NULL)
            return LM_E_NOMEM;
    }
    for (int32_t i = 0; i < n; i++)
        LM_TRY(read_nonnull(&r, &names[i]));
    out->n_topic_names = n;
    out->topic_names = names;
    LM_TRY(kafka_read_compact_str(&r, &out->topic_regex));
    LM_TRY(kafka_read_int32(&r, &out->rebalance_timeout_ms));
    LM_TRY(kafka_read_compact_str(&r, &out->server_assignor));
    uint32_t nt;
    LM_TRY(kafka_read_uvarint(&r, &nt));
    int64_t last = -1;
    for (uint32_t i = 0; i < nt; i++) {
        uint32_t tag;
        struct kafka_reader sub;
        LM_TRY(kafka_read_tag_header(&r, &last, &tag, &sub));
        if (tag == 0)
            LM_TRY(read_classic(&sub, arena, out));
    }
    return 0;
}

int lm_cgr_target_epoch_value_encode(struct kafka_writer *w, int32_t assignment_epoch)
{
    LM_TRY(kafka_write_int16(w, LM_CGR_VALUE_VERSION));
    LM_TRY(kafka_write_int32(w, assignment_epoch));
    return kafka_write_uvarint(w, 0);
}

int lm_cgr_target_epoch_value_decode(const uint8_t *buf, size_t len, int32_t *assignment_epoch)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    LM_TRY(read_value_version(&r));
    LM_TRY(kafka_read_int32(&r, assignment_epoch));
    return kafka_skip_tagged_fields(&r);
}

int lm_cgr_target_member_value_encode(struct kafka_writer *w, const struct lm_cgr_parts *p)
{
    LM_TRY(kafka_write_int16(w, LM_CGR_VALUE_VERSION));
    LM_TRY(parts_encode(w, p));
    return kafka_write_uvarint(w, 0);
}

int lm_cgr_target_member_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                                      struct lm_cgr_parts *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    *out = (struct lm_cgr_parts){0};
    LM_TRY(read_value_version(&r));
    LM_TRY(parts_decode(&r, arena, out));
    return kafka_skip_tagged_fields(&r);
}

int lm_cgr_current_value_encode(struct kafka_writer *w, const struct lm_cgr_current_value *v)
{
    LM_TRY(kafka_write_int16(w, LM_CGR_VALUE_VERSION));
    LM_TRY(kafka_write_int32(w, v->member_epoch));
    LM_TRY(kafka_write_int32(w, v->prev_member_epoch));
    LM_TRY(kafka_write_int8(w, v->state));
    LM_TRY(parts_encode(w, &v->assigned));
    LM_TRY(parts_encode(w, &v->pending));
    return kafka_write_uvarint(w, 0);
}

int lm_cgr_current_value_decode(const uint8_t *buf, size_t len, struct kafka_arena *arena,
                                struct lm_cgr_current_value *out)
{
    struct kafka_reader r;
    kafka_reader_init(&r, buf, len);
    *out = (struct lm_cgr_current_value){0};
    LM_TRY(read_value_version(&r));
    LM_TRY(kafka_read_int32(&r, &out->member_epoch));
    LM_TRY(kafka_read_int32(&r, &out->prev_member_epoch));
    LM_TRY(kafka_read_int8(&r, &out->state));
    LM_TRY(parts_decode(&r, arena, &out->assigned));
    LM_TRY(parts_decode(&r, arena, &out->pending));
    return kafka_skip_tagged_fields(&r);
}
