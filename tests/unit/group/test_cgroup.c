/* Consumer-protocol groups (KIP-848): the assignors, the reconciliation rules (revocation
 * before assignment, epochs), errors, static members, timeouts, and randomized runs of
 * simulated clients checking that no partition is ever held by two members and that a stable
 * group ends with every subscribed partition assigned. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/cgroup.h"
#include "broker/group/cgroup_records.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static struct kafka_str S(const char *s) {
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

/* ---- a topic image ---- */

#define TOPICS_MAX 8

struct image {
    int n;
    char names[TOPICS_MAX][16];
    int32_t parts[TOPICS_MAX];
    uint8_t tag[TOPICS_MAX];
};

static void image_topic(void *ctx, size_t i, struct lm_cgroup_topic *out)
{
    struct image *im = ctx;
    memset(out, 0, sizeof(*out));
    out->name = S(im->names[i]);
    out->id.b[0] = im->tag[i];
    out->id.b[15] = (uint8_t)i;
    out->partitions = im->parts[i];
}

static struct lm_cgroup_image img_of(struct image *im)
{
    return (struct lm_cgroup_image){im, (size_t)im->n, image_topic};
}

static void image_add(struct image *im, const char *name, int32_t parts)
{
    snprintf(im->names[im->n], sizeof(im->names[0]), "%s", name);
    im->parts[im->n] = parts;
    im->tag[im->n] = 1;
    im->n++;
}

/* ---- a simulated client ---- */

#define OWN_MAX 256

struct client {
    char id[16];
    int32_t epoch; /* -1: not in the group */
    int n_own;
    struct lm_cgroup_tp own[OWN_MAX];
    const char *topics[2];
    int n_topics;
    int64_t last_hb_ms;
    /* lazy: a revocation completes only at a later heartbeat (randomly), as a client whose
     * revocation callback takes time; until then it keeps owning (and reporting) them */
    bool lazy;
    uint64_t rng;
    int64_t revoke_since_ms; /* -1: none pending; forced after 10 s (rebalance timeout 30 s) */
    int n_asg;
    struct lm_cgroup_tp asg[OWN_MAX];
};

static struct lm_cgroup_coord *coord_new(void)
{
    struct lm_cgroup_config cfg;
    lm_cgroup_config_default(&cfg);
    struct lm_cgroup_coord *c = NULL;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    return c;
}

static int tp_cmp_q(const void *a, const void *b)
{
    return lm_cgroup_tp_cmp(a, b);
}

/* Heartbeats as the client would: epoch 0 with the subscription when joining, else its
 * epoch and owned partitions; adopts the assignment of the answer. */
static int16_t client_hb(struct lm_cgroup_coord *c, struct image *im, int64_t now,
                         struct client *cl, int32_t epoch_override, struct lm_cgroup_hb_resp *out)
{
    struct lm_cgroup_hb_req r;
    memset(&r, 0, sizeof(r));
    r.group_id = S("g");
    r.member_id = S(cl->id);
    r.member_epoch = epoch_override != INT32_MIN ? epoch_override : cl->epoch < 0 ? 0 : cl->epoch;
    r.instance_id = KAFKA_STR_NULL;
    r.rack_id = KAFKA_STR_NULL;
    r.topic_regex = KAFKA_STR_NULL;
    r.server_assignor = KAFKA_STR_NULL;
    r.client_id = S("cl");
    r.client_host = S("/127.0.0.1");
    r.version = 1;
    struct kafka_str names[2];
    struct lm_cgroup_owned_topic owned[OWN_MAX];
    int32_t parts[OWN_MAX];
    r.rebalance_timeout_ms = 30000;
    r.n_topic_names = cl->n_topics;
    for (int i = 0; i < cl->n_topics; i++)
        names[i] = S(cl->topics[i]);
    r.topic_names = names;
    if (cl->lazy) {
        cl->rng = cl->rng * 6364136223846793005ull + 1442695040888963407ull;
        if (cl->revoke_since_ms >= 0 &&
            ((cl->rng >> 33) % 2 == 0 || now - cl->revoke_since_ms >= 10000)) {
            cl->revoke_since_ms = -1;
            int w = 0;
            for (int i = 0; i < cl->n_own; i++) {
                bool keep = false;
                for (int k = 0; k < cl->n_asg && !keep; k++)
                    keep = lm_cgroup_tp_cmp(&cl->own[i], &cl->asg[k]) == 0;
                if (keep)
                    cl->own[w++] = cl->own[i];
            }
            cl->n_own = w;
        }
    }
    int no = 0;
    if (r.member_epoch != 0) {
        for (int i = 0; i < cl->n_own; i++) {
            if (no == 0 || memcmp(owned[no - 1].topic_id.b, cl->own[i].topic_id.b, 16) != 0) {
                owned[no].topic_id = cl->own[i].topic_id;
                owned[no].partitions = &parts[i];
                owned[no].n_partitions = 0;
                no++;
            }
            parts[i] = cl->own[i].partition;
            owned[no - 1].n_partitions++;
        }
    }
    r.n_owned = no;
    r.owned = owned;
    struct lm_cgroup_image img = img_of(im);
    assert_int_equal(lm_cgroup_heartbeat(c, now, 0, &img, &r, out), 0);
    cl->last_hb_ms = now;
    if (getenv("CG_TRACE") != NULL)
        fprintf(stderr, "  hb %s t=%lld sent epoch %d owned %d -> err %d epoch %d has %d n %d\n",
                cl->id, (long long)now, r.member_epoch, cl->n_own, out->error_code,
                out->member_epoch, out->has_assignment, out->n_assigned);
    if (out->error_code == KAFKA_NONE) {
        cl->epoch = out->member_epoch;
        if (out->has_assignment && !cl->lazy) {
            assert_true(out->n_assigned <= OWN_MAX);
            cl->n_own = out->n_assigned;
            if (out->n_assigned > 0)
                memcpy(cl->own, out->assigned, (size_t)out->n_assigned * sizeof(*cl->own));
        } else if (out->has_assignment) {
            /* new partitions are taken at once, revoked ones given up later */
            assert_true(out->n_assigned <= OWN_MAX);
            cl->n_asg = out->n_assigned;
            if (out->n_assigned > 0)
                memcpy(cl->asg, out->assigned, (size_t)out->n_assigned * sizeof(*cl->asg));
            for (int k = 0; k < cl->n_asg; k++) {
                bool have = false;
                for (int i = 0; i < cl->n_own && !have; i++)
                    have = lm_cgroup_tp_cmp(&cl->own[i], &cl->asg[k]) == 0;
                if (!have) {
                    assert_true(cl->n_own < OWN_MAX);
                    cl->own[cl->n_own++] = cl->asg[k];
                }
            }
            qsort(cl->own, (size_t)cl->n_own, sizeof(cl->own[0]), tp_cmp_q);
            if (cl->n_own > cl->n_asg && cl->revoke_since_ms < 0)
                cl->revoke_since_ms = now;
        }
    }
    return out->error_code;
}

static void client_init(struct client *cl, const char *id, const char *topic)
{
    memset(cl, 0, sizeof(*cl));
    snprintf(cl->id, sizeof(cl->id), "%s", id);
    cl->epoch = -1;
    cl->topics[0] = topic;
    cl->n_topics = 1;
}

/* No partition in two clients' owned sets. */
static void check_disjoint(struct client *cls, int n)
{
    for (int a = 0; a < n; a++)
        for (int b = a + 1; b < n; b++)
            for (int i = 0; i < cls[a].n_own; i++)
                for (int k = 0; k < cls[b].n_own; k++)
                    if (lm_cgroup_tp_cmp(&cls[a].own[i], &cls[b].own[k]) == 0)
                        fail_msg("partition %d held by %s and %s", cls[a].own[i].partition,
                                 cls[a].id, cls[b].id);
}

/* ---- records (cgroup_records.h) and their replay ---- */

/* A copy of the records a coordinator emitted, in order: a __consumer_offsets log. */
struct rlog_entry {
    int32_t partition;
    uint8_t *key;
    int32_t key_len;
    uint8_t *value; /* NULL: tombstone */
    int32_t value_len;
};

struct rlog {
    size_t n, cap;
    struct rlog_entry *e;
};

static size_t rlog_take(struct rlog *l, struct lm_cgroup_coord *c)
{
    const struct lm_cgroup_record *r;
    size_t n = lm_cgroup_records(c, &r);
    for (size_t i = 0; i < n; i++) {
        if (l->n == l->cap) {
            l->cap = l->cap ? l->cap * 2 : 64;
            l->e = realloc(l->e, l->cap * sizeof(*l->e));
            assert_non_null(l->e);
        }
        struct rlog_entry *e = &l->e[l->n++];
        e->partition = r[i].partition;
        e->key_len = r[i].key.len;
        e->key = malloc((size_t)r[i].key.len);
        memcpy(e->key, r[i].key.ptr, (size_t)r[i].key.len);
        e->value = NULL;
        e->value_len = r[i].value.len;
        if (r[i].value.len >= 0) {
            e->value = malloc((size_t)r[i].value.len + 1);
            memcpy(e->value, r[i].value.ptr, (size_t)r[i].value.len);
        }
    }
    lm_cgroup_records_advance(c);
    return n;
}

static void rlog_free(struct rlog *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->e[i].key);
        free(l->e[i].value);
    }
    free(l->e);
    memset(l, 0, sizeof(*l));
}

/* A new coordinator loaded from the log (one __consumer_offsets partition). */
static struct lm_cgroup_coord *rlog_replay(const struct rlog *l, int64_t now)
{
    struct lm_cgroup_coord *c = coord_new();
    int64_t bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        const struct rlog_entry *e = &l->e[i];
        struct kafka_bytes k = {e->key, e->key_len};
        struct kafka_bytes v = {e->value, e->value != NULL ? e->value_len : -1};
        assert_int_equal(lm_cgroup_replay(c, 0, 1, k, v, &bad), 0);
    }
    assert_int_equal(bad, 0);
    assert_int_equal(lm_cgroup_load_end(c, 0, now, NULL, NULL), 0);
    assert_int_equal(lm_cgroup_records(c, &(const struct lm_cgroup_record *){NULL}), 0);
    return c;
}

/* A group config: "g" has its own session timeout, 20 s. */
static int32_t session_of(void *ctx, struct kafka_str group)
{
    (void)ctx;
    return kafka_str_eq(group, S("g")) ? 20000 : 0;
}

static void assert_tps_equal(int32_t na, const struct lm_cgroup_tp *a, int32_t nb,
                             const struct lm_cgroup_tp *b)
{
    assert_int_equal(na, nb);
    for (int32_t i = 0; i < na; i++)
        assert_int_equal(lm_cgroup_tp_cmp(&a[i], &b[i]), 0);
}

static bool kstr_same(struct kafka_str a, struct kafka_str b)
{
    return a.len == b.len && (a.len <= 0 || memcmp(a.ptr, b.ptr, (size_t)a.len) == 0);
}

/* The group as ConsumerGroupDescribe shows it is the same in both coordinators. */
static void assert_same_group(struct lm_cgroup_coord *a, struct lm_cgroup_coord *b,
                              struct image *im, const char *group)
{
    struct lm_cgroup_image img = img_of(im);
    struct lm_cgroup_desc da, db;
    assert_int_equal(lm_cgroup_describe(a, &img, S(group), &da), 0);
    assert_int_equal(lm_cgroup_describe(b, &img, S(group), &db), 0);
    assert_int_equal(da.error_code, db.error_code);
    if (da.error_code != KAFKA_NONE)
        return;
    assert_string_equal(da.state, db.state);
    assert_int_equal(da.group_epoch, db.group_epoch);
    assert_int_equal(da.assignment_epoch, db.assignment_epoch);
    assert_int_equal(da.n_members, db.n_members);
    for (int32_t i = 0; i < da.n_members; i++) {
        const struct lm_cgroup_desc_member *x = &da.members[i], *y = &db.members[i];
        assert_true(kstr_same(x->member_id, y->member_id));
        assert_true(kstr_same(x->instance_id, y->instance_id));
        assert_true(kstr_same(x->client_id, y->client_id));
        assert_true(kstr_same(x->client_host, y->client_host));
        assert_true(kstr_same(x->topic_regex, y->topic_regex));
        assert_int_equal(x->member_epoch, y->member_epoch);
        assert_int_equal(x->n_topic_names, y->n_topic_names);
        for (int32_t k = 0; k < x->n_topic_names; k++)
            assert_true(kstr_same(x->topic_names[k], y->topic_names[k]));
        assert_tps_equal(x->n_assigned, x->assigned, y->n_assigned, y->assigned);
        assert_tps_equal(x->n_target, x->target, y->n_target, y->target);
    }
}

static struct kafka_uuid uuid_of(uint8_t tag)
{
    struct kafka_uuid u;
    memset(&u, 0, sizeof(u));
    u.b[0] = tag;
    u.b[15] = (uint8_t)(tag * 7);
    return u;
}

/* Every shorter prefix of a value is refused with an error; nothing is read past the end. */
static void assert_prefixes_refused(const uint8_t *buf, size_t len,
                                    int (*dec)(const uint8_t *, size_t))
{
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n + 1); /* exact size: ASan sees any read past it */
        memcpy(copy, buf, n);
        assert_true(dec(copy, n) < 0);
        free(copy);
    }
    assert_int_equal(dec(buf, len), 0);
}

static struct kafka_arena dec_arena;

static int dec_group(const uint8_t *b, size_t n)
{
    struct lm_cgr_group_value v;
    return lm_cgr_group_value_decode(b, n, &v);
}

static int dec_member(const uint8_t *b, size_t n)
{
    struct lm_cgr_member_value v;
    return lm_cgr_member_value_decode(b, n, &dec_arena, &v);
}

static int dec_current(const uint8_t *b, size_t n)
{
    struct lm_cgr_current_value v;
    return lm_cgr_current_value_decode(b, n, &dec_arena, &v);
}

static int dec_target(const uint8_t *b, size_t n)
{
    struct lm_cgr_parts v;
    return lm_cgr_target_member_value_decode(b, n, &dec_arena, &v);
}

static int dec_key(const uint8_t *b, size_t n)
{
    struct lm_cgr_key k;
    return lm_cgr_key_decode(b, n, &k);
}

static void test_record_codecs(void **state)
{
    (void)state;
    kafka_arena_init(&dec_arena, 1 << 20);
    uint8_t buf[512];
    struct kafka_writer w;

    /* keys: i16 type, then i16-length strings (Kafka's non-flexible key encoding) */
    kafka_writer_init(&w, buf, sizeof(buf));
    struct lm_cgr_key k = {LM_CGR_CURRENT_MEMBER, S("g"), S("m1")};
    assert_int_equal(lm_cgr_key_encode(&w, &k), 0);
    static const uint8_t key8[] = {0, 8, 0, 1, 'g', 0, 2, 'm', '1'};
    assert_int_equal(w.pos, sizeof(key8));
    assert_memory_equal(buf, key8, sizeof(key8));
    assert_int_equal(lm_cgr_key_type(buf, w.pos), 8);
    assert_prefixes_refused(buf, w.pos, dec_key);
    struct lm_cgr_key kd;
    assert_int_equal(lm_cgr_key_decode(buf, w.pos, &kd), 0);
    assert_int_equal(kd.type, 8);
    assert_true(kstr_same(kd.member, S("m1")));
    kafka_writer_init(&w, buf, sizeof(buf));
    k = (struct lm_cgr_key){LM_CGR_GROUP_EPOCH, S("grp"), KAFKA_STR_NULL};
    assert_int_equal(lm_cgr_key_encode(&w, &k), 0);
    static const uint8_t key3[] = {0, 3, 0, 3, 'g', 'r', 'p'};
    assert_memory_equal(buf, key3, sizeof(key3));
    assert_int_equal(w.pos, sizeof(key3));
    /* the classic offset and group keys are not these */
    static const uint8_t key2[] = {0, 2, 0, 1, 'g'};
    assert_int_equal(lm_cgr_key_decode(key2, sizeof(key2), &kd), LM_E_UNSUPPORTED);
    assert_false(lm_cgr_is_type(lm_cgr_key_type(key2, sizeof(key2))));
    assert_true(lm_cgr_is_type(LM_CGR_REGEX));
    k = (struct lm_cgr_key){LM_CGR_MEMBER, S("g"), KAFKA_STR_NULL};
    assert_int_equal(lm_cgr_key_encode(&w, &k), LM_E_INVALID);

    /* group epoch value: version 0, epoch, tagged MetadataHash */
    kafka_writer_init(&w, buf, sizeof(buf));
    struct lm_cgr_group_value gv = {5, false, 0};
    assert_int_equal(lm_cgr_group_value_encode(&w, &gv), 0);
    static const uint8_t gv0[] = {0, 0, 0, 0, 0, 5, 0};
    assert_int_equal(w.pos, sizeof(gv0));
    assert_memory_equal(buf, gv0, sizeof(gv0));
    kafka_writer_init(&w, buf, sizeof(buf));
    gv = (struct lm_cgr_group_value){7, true, 0x0102030405060708ll};
    assert_int_equal(lm_cgr_group_value_encode(&w, &gv), 0);
    static const uint8_t gv1[] = {0, 0, 0, 0, 0, 7, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8};
    assert_int_equal(w.pos, sizeof(gv1));
    assert_memory_equal(buf, gv1, sizeof(gv1));
    struct lm_cgr_group_value gd;
    assert_int_equal(lm_cgr_group_value_decode(buf, w.pos, &gd), 0);
    assert_int_equal(gd.epoch, 7);
    assert_true(gd.has_metadata_hash);
    assert_true(gd.metadata_hash == 0x0102030405060708ll);
    assert_prefixes_refused(buf, w.pos, dec_group);
    static const uint8_t gv_v1[] = {0, 1, 0, 0, 0, 5, 0};
    assert_int_equal(lm_cgr_group_value_decode(gv_v1, sizeof(gv_v1), &gd), LM_E_UNSUPPORTED);
    /* an unknown tagged field (a later version's) is skipped */
    static const uint8_t gv_tag[] = {0, 0, 0, 0, 0, 9, 1, 5, 2, 0xAA, 0xBB};
    assert_int_equal(lm_cgr_group_value_decode(gv_tag, sizeof(gv_tag), &gd), 0);
    assert_int_equal(gd.epoch, 9);
    assert_false(gd.has_metadata_hash);

    /* member metadata */
    struct kafka_str names[2] = {S("t0"), S("topic-1")};
    struct lm_cgr_member_value mv = {.instance_id = S("inst"),
                                     .rack_id = KAFKA_STR_NULL,
                                     .client_id = S("cid"),
                                     .client_host = S("/1.2.3.4"),
                                     .n_topic_names = 2,
                                     .topic_names = names,
                                     .topic_regex = KAFKA_STR_NULL,
                                     .rebalance_timeout_ms = 30000,
                                     .server_assignor = S("range")};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_cgr_member_value_encode(&w, &mv), 0);
    struct lm_cgr_member_value md;
    assert_int_equal(lm_cgr_member_value_decode(buf, w.pos, &dec_arena, &md), 0);
    assert_true(kstr_same(md.instance_id, S("inst")));
    assert_int_equal(md.rack_id.len, -1);
    assert_true(kstr_same(md.client_host, S("/1.2.3.4")));
    assert_int_equal(md.n_topic_names, 2);
    assert_true(kstr_same(md.topic_names[1], S("topic-1")));
    assert_int_equal(md.topic_regex.len, -1);
    assert_int_equal(md.rebalance_timeout_ms, 30000);
    assert_true(kstr_same(md.server_assignor, S("range")));
    assert_prefixes_refused(buf, w.pos, dec_member);
    /* a null client id is refused (not nullable in the schema) */
    buf[2 + 1 + 4 + 1] = 0; /* version, instance "inst", rack null: the client id's length */
    assert_int_equal(lm_cgr_member_value_decode(buf, w.pos, &dec_arena, &md), LM_E_INVALID);

    /* current assignment: partitions grouped by topic on the wire, sorted when decoded */
    struct lm_cgroup_tp as[3] = {{uuid_of(1), 0}, {uuid_of(1), 2}, {uuid_of(2), 1}};
    struct lm_cgroup_tp pe[1] = {{uuid_of(3), 4}};
    struct lm_cgr_current_value cv = {3, 2, 1, {3, as}, {1, pe}};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_cgr_current_value_encode(&w, &cv), 0);
    /* version, epochs, state, 2 topics: uuid, 2 partitions, tags; uuid, 1, tags; 1 topic ... */
    assert_int_equal(w.pos, 2 + 4 + 4 + 1 + 1 + (16 + 1 + 8 + 1) + (16 + 1 + 4 + 1) + 1 +
                                (16 + 1 + 4 + 1) + 1);
    struct lm_cgr_current_value cd;
    assert_int_equal(lm_cgr_current_value_decode(buf, w.pos, &dec_arena, &cd), 0);
    assert_int_equal(cd.member_epoch, 3);
    assert_int_equal(cd.prev_member_epoch, 2);
    assert_int_equal(cd.state, 1);
    assert_tps_equal(cd.assigned.n, cd.assigned.v, 3, as);
    assert_tps_equal(cd.pending.n, cd.pending.v, 1, pe);
    assert_prefixes_refused(buf, w.pos, dec_current);
    /* a list naming a partition twice is refused */
    struct lm_cgroup_tp dup[2] = {{uuid_of(1), 2}, {uuid_of(1), 2}};
    struct lm_cgr_parts dp = {2, dup};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_cgr_target_member_value_encode(&w, &dp), LM_E_INVALID);
    /* topics in another order than ours (Kafka writes them in map order) decode sorted */
    struct lm_cgr_parts tp2 = {1, &as[2]}, tp1 = {2, as};
    uint8_t t1[64], t2[64];
    struct kafka_writer w1, w2;
    kafka_writer_init(&w1, t1, sizeof(t1));
    kafka_writer_init(&w2, t2, sizeof(t2));
    assert_int_equal(lm_cgr_target_member_value_encode(&w1, &tp1), 0);
    assert_int_equal(lm_cgr_target_member_value_encode(&w2, &tp2), 0);
    /* build [topic 2, topic 1] by hand from the two encodings */
    size_t n = 0;
    buf[n++] = 0;
    buf[n++] = 0;
    buf[n++] = 3; /* two topics */
    memcpy(buf + n, t2 + 3, w2.pos - 4);
    n += w2.pos - 4;
    memcpy(buf + n, t1 + 3, w1.pos - 4);
    n += w1.pos - 4;
    buf[n++] = 0;
    struct lm_cgr_parts pd;
    assert_int_equal(lm_cgr_target_member_value_decode(buf, n, &dec_arena, &pd), 0);
    assert_tps_equal(pd.n, pd.v, 3, as);
    assert_prefixes_refused(buf, n, dec_target);
    /* the same topic twice with the same partition: refused */
    n = 0;
    buf[n++] = 0;
    buf[n++] = 0;
    buf[n++] = 3;
    memcpy(buf + n, t1 + 3, w1.pos - 4);
    n += w1.pos - 4;
    memcpy(buf + n, t1 + 3, w1.pos - 4);
    n += w1.pos - 4;
    buf[n++] = 0;
    assert_int_equal(lm_cgr_target_member_value_decode(buf, n, &dec_arena, &pd), LM_E_INVALID);

    /* garbage: never a crash, never a read past the end */
    uint64_t x = 12345;
    for (int round = 0; round < 20000; round++) {
        size_t len = (size_t)(round % 64);
        uint8_t *g = malloc(len + 1);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            g[i] = (uint8_t)(i < 2 ? 0 : x);
        }
        (void)dec_group(g, len);
        (void)dec_member(g, len);
        (void)dec_current(g, len);
        (void)dec_target(g, len);
        (void)dec_key(g, len);
        kafka_arena_reset(&dec_arena);
        free(g);
    }
    kafka_arena_deinit(&dec_arena);
}

static int16_t rec_type(const struct rlog *l, size_t i)
{
    return lm_cgr_key_type(l->e[i].key, (size_t)l->e[i].key_len);
}

/* The records a join, an unchanged heartbeat, a leave and a deletion write, and a replay of
 * them giving the same group. */
static void test_records_of_changes(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 4);
    struct client a, b;
    client_init(&a, "a", "t");
    client_init(&b, "b", "t");
    struct lm_cgroup_hb_resp r;
    struct rlog log = {0};
    /* a join: member metadata, group epoch, target, target epoch, current assignment */
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(rlog_take(&log, c), 5);
    static const int16_t join[] = {5, 3, 7, 6, 8};
    for (size_t i = 0; i < 5; i++) {
        assert_int_equal(rec_type(&log, i), join[i]);
        assert_non_null(log.e[i].value);
    }
    /* nothing changed: nothing written */
    assert_int_equal(client_hb(c, &im, 10, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(rlog_take(&log, c), 0);
    /* b joins, a revokes, both reach the target */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(client_hb(c, &im, 20 + i, &b, INT32_MIN, &r), KAFKA_NONE);
        assert_int_equal(client_hb(c, &im, 20 + i, &a, INT32_MIN, &r), KAFKA_NONE);
        rlog_take(&log, c);
        struct lm_cgroup_coord *l = rlog_replay(&log, 30);
        assert_same_group(c, l, &im, "g");
        lm_cgroup_coord_free(l);
    }
    assert_int_equal(a.n_own, 2);
    assert_int_equal(b.n_own, 2);
    /* after a load the members go on with their epochs and partitions */
    struct lm_cgroup_coord *l = rlog_replay(&log, 40);
    struct client a2 = a, b2 = b;
    assert_int_equal(client_hb(l, &im, 41, &a2, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(r.member_epoch, a.epoch);
    assert_tps_equal(a2.n_own, a2.own, a.n_own, a.own);
    assert_int_equal(client_hb(l, &im, 41, &b2, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(r.member_epoch, b.epoch);
    assert_tps_equal(b2.n_own, b2.own, b.n_own, b.own);
    /* session timeouts start again at the load: a member silent since long before it is
     * fenced only a full session timeout after it */
    lm_cgroup_tick(l, 40 + 45000 - 1);
    assert_true(lm_cgroup_exists(l, S("g"), &(int32_t){0}));
    int32_t nm = 0;
    lm_cgroup_exists(l, S("g"), &nm);
    assert_int_equal(nm, 2);
    lm_cgroup_coord_free(l);
    /* the group's own session timeout (a GROUP config) is the one a load starts */
    l = coord_new();
    for (size_t i = 0; i < log.n; i++)
        assert_int_equal(
            lm_cgroup_replay(
                l, 0, 1, (struct kafka_bytes){log.e[i].key, log.e[i].key_len},
                (struct kafka_bytes){log.e[i].value, log.e[i].value ? log.e[i].value_len : -1},
                NULL),
            0);
    assert_int_equal(lm_cgroup_load_end(l, 0, 40, session_of, NULL), 0);
    assert_int_equal(lm_cgroup_next_deadline_ms(l), 40 + 20000);
    lm_cgroup_coord_free(l);
    /* b leaves: its three tombstones (current, target, metadata), then the new group epoch */
    size_t at = log.n;
    assert_int_equal(client_hb(c, &im, 50, &b, -1, &r), KAFKA_NONE);
    assert_int_equal(rlog_take(&log, c), 4);
    static const int16_t leave[] = {8, 7, 5, 3};
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(rec_type(&log, at + i), leave[i]);
        assert_true((log.e[at + i].value == NULL) == (i < 3));
    }
    l = rlog_replay(&log, 60);
    assert_same_group(c, l, &im, "g");
    lm_cgroup_coord_free(l);
    /* a leaves; the empty group is deleted: target epoch, partition metadata and group
     * epoch tombstones; a replay has no group */
    assert_int_equal(client_hb(c, &im, 70, &a, -1, &r), KAFKA_NONE);
    rlog_take(&log, c);
    at = log.n;
    assert_int_equal(lm_cgroup_delete(c, S("g")), 0);
    assert_int_equal(rlog_take(&log, c), 3);
    static const int16_t del[] = {6, 4, 3};
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(rec_type(&log, at + i), del[i]);
        assert_null(log.e[at + i].value);
    }
    l = rlog_replay(&log, 80);
    assert_int_equal(lm_cgroup_n_groups(l), 0);
    lm_cgroup_coord_free(l);
    /* a session timeout fences with tombstones too */
    struct client d;
    client_init(&d, "d", "t");
    assert_int_equal(client_hb(c, &im, 100, &d, INT32_MIN, &r), KAFKA_NONE);
    rlog_take(&log, c);
    assert_int_equal(lm_cgroup_tick(c, 100 + 45000), 0);
    at = log.n;
    assert_int_equal(rlog_take(&log, c), 4);
    assert_int_equal(rec_type(&log, at), 8);
    assert_null(log.e[at].value);
    assert_int_equal(rec_type(&log, at + 3), 3);
    l = rlog_replay(&log, 50000);
    assert_same_group(c, l, &im, "g");
    lm_cgroup_coord_free(l);
    rlog_free(&log);
    lm_cgroup_coord_free(c);
}

/* Records that do not decode, or of another partition, are skipped and counted; a load of
 * member records without their group leaves nothing. */
static void test_replay_bad_records(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    int64_t bad = 0;
    static const uint8_t key_short[] = {0, 8, 0};
    static const uint8_t key_member[] = {0, 5, 0, 1, 'g', 0, 1, 'm'};
    static const uint8_t junk[] = {0, 0, 0xff, 0xff};
    struct kafka_bytes none = {NULL, -1};
    assert_int_equal(lm_cgroup_replay(c, 0, 1, (struct kafka_bytes){key_short, 3}, none, &bad), 0);
    assert_int_equal(bad, 1);
    assert_int_equal(lm_cgroup_replay(c, 0, 1, (struct kafka_bytes){key_member, 8},
                                      (struct kafka_bytes){junk, 4}, &bad),
                     0);
    assert_int_equal(bad, 2);
    /* "g" (Java hash 103) is in partition 1 of 2, not 0 */
    assert_int_equal(lm_cgroup_replay(c, 0, 2, (struct kafka_bytes){key_member, 8}, none, &bad), 0);
    assert_int_equal(bad, 3);
    assert_int_equal(lm_cgroup_load_end(c, 0, 0, NULL, NULL), 0);
    assert_int_equal(lm_cgroup_n_groups(c), 0);
    lm_cgroup_coord_free(c);

    /* records that break the invariants (a log written by someone else, or damaged): two
     * members holding partition 1, b holding 2 as assigned and pending, a member epoch above
     * the group's; the load keeps each partition with one holder */
    c = coord_new();
    uint8_t kb[64], vb[256];
    struct kafka_writer kw, vw;
    struct lm_cgroup_tp pa[2] = {{uuid_of(1), 0}, {uuid_of(1), 1}};
    struct lm_cgroup_tp pb[2] = {{uuid_of(1), 1}, {uuid_of(1), 2}};
    struct lm_cgroup_tp pp[1] = {{uuid_of(1), 2}};
    struct kafka_str topic = S("t");
    for (int i = 0; i < 7; i++) {
        kafka_writer_init(&kw, kb, sizeof(kb));
        kafka_writer_init(&vw, vb, sizeof(vb));
        const char *mid = i % 2 == 0 && i < 6 ? "a" : "b";
        struct lm_cgr_key k = {LM_CGR_MEMBER, S("g"), S(mid)};
        struct lm_cgr_member_value mv = {.instance_id = KAFKA_STR_NULL,
                                         .rack_id = KAFKA_STR_NULL,
                                         .client_id = S("c"),
                                         .client_host = S("h"),
                                         .n_topic_names = 1,
                                         .topic_names = &topic,
                                         .topic_regex = KAFKA_STR_NULL,
                                         .rebalance_timeout_ms = 1000,
                                         .server_assignor = KAFKA_STR_NULL};
        struct lm_cgr_current_value cv = {3, 2, 0, {2, mid[0] == 'a' ? pa : pb}, {0, NULL}};
        if (i == 6) {
            cv.member_epoch = 9; /* above the group epoch */
            cv.pending = (struct lm_cgr_parts){1, pp};
            cv.state = 1;
        }
        struct lm_cgr_group_value gv = {3, false, 0};
        switch (i) {
        case 0:
        case 1:
            assert_int_equal(lm_cgr_member_value_encode(&vw, &mv), 0);
            break;
        case 2:
            k = (struct lm_cgr_key){LM_CGR_GROUP_EPOCH, S("g"), KAFKA_STR_NULL};
            assert_int_equal(lm_cgr_group_value_encode(&vw, &gv), 0);
            break;
        case 3:
            k = (struct lm_cgr_key){LM_CGR_TARGET_EPOCH, S("g"), KAFKA_STR_NULL};
            assert_int_equal(lm_cgr_target_epoch_value_encode(&vw, 3), 0);
            break;
        default:
            k.type = LM_CGR_CURRENT_MEMBER;
            assert_int_equal(lm_cgr_current_value_encode(&vw, &cv), 0);
            break;
        }
        assert_int_equal(lm_cgr_key_encode(&kw, &k), 0);
        assert_int_equal(lm_cgroup_replay(c, 0, 1, (struct kafka_bytes){kb, (int32_t)kw.pos},
                                          (struct kafka_bytes){vb, (int32_t)vw.pos}, &bad),
                         0);
    }
    assert_int_equal(bad, 3);
    assert_int_equal(lm_cgroup_load_end(c, 0, 0, NULL, NULL), 0);
    struct image im = {0};
    image_add(&im, "t", 4);
    struct lm_cgroup_image img = img_of(&im);
    struct lm_cgroup_desc d;
    assert_int_equal(lm_cgroup_describe(c, &img, S("g"), &d), 0);
    assert_int_equal(d.error_code, KAFKA_NONE);
    assert_int_equal(d.group_epoch, 3);
    assert_int_equal(d.n_members, 2);
    assert_tps_equal(d.members[0].n_assigned, d.members[0].assigned, 2, pa);
    assert_tps_equal(d.members[1].n_assigned, d.members[1].assigned, 1, pp);
    assert_int_equal(d.members[1].member_epoch, 0);
    lm_cgroup_coord_free(c);
}

/* ---- assignors ---- */

static void test_range_assignor(void **state)
{
    (void)state;
    struct lm_cgroup_atopic topics[2] = {{.id = {{1}}, .partitions = 7},
                                         {.id = {{2}}, .partitions = 2}};
    int32_t both[2] = {0, 1}, first[1] = {0};
    struct lm_cgroup_amember m[3] = {
        {.member_id = S("a"), .n_topics = 2, .topics = both},
        {.member_id = S("b"), .n_topics = 2, .topics = both},
        {.member_id = S("c"), .n_topics = 1, .topics = first},
    };
    assert_int_equal(lm_cgroup_assign("range", 2, topics, 3, m), 0);
    /* topic 1: 7 over 3 -> 3,2,2 consecutive; topic 2: 2 over a,b -> 1,1 */
    assert_int_equal(m[0].n_target, 4);
    assert_int_equal(m[1].n_target, 3);
    assert_int_equal(m[2].n_target, 2);
    assert_int_equal(m[0].target[0].partition, 0);
    assert_int_equal(m[0].target[2].partition, 2);
    assert_int_equal(m[0].target[3].topic_id.b[0], 2);
    assert_int_equal(m[1].target[0].partition, 3);
    assert_int_equal(m[2].target[0].partition, 5);
    assert_int_equal(m[2].target[1].partition, 6);
    for (int i = 0; i < 3; i++)
        free(m[i].target);
    assert_int_equal(lm_cgroup_assign("roundrobin", 2, topics, 3, m), LM_E_INVALID);
}

static void test_uniform_assignor_balanced_and_sticky(void **state)
{
    (void)state;
    struct lm_cgroup_atopic topics[1] = {{.id = {{1}}, .partitions = 6}};
    int32_t t0[1] = {0};
    struct lm_cgroup_amember one[1] = {{.member_id = S("a"), .n_topics = 1, .topics = t0}};
    assert_int_equal(lm_cgroup_assign("uniform", 1, topics, 1, one), 0);
    assert_int_equal(one[0].n_target, 6);
    /* a second and third member: 2 each, and a keeps 2 of the 6 it had */
    struct lm_cgroup_amember three[3] = {
        {.member_id = S("a"),
         .n_topics = 1,
         .topics = t0,
         .n_current = 6,
         .current = one[0].target},
        {.member_id = S("b"), .n_topics = 1, .topics = t0},
        {.member_id = S("c"), .n_topics = 1, .topics = t0},
    };
    assert_int_equal(lm_cgroup_assign("uniform", 1, topics, 3, three), 0);
    int seen[6] = {0};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(three[i].n_target, 2);
        for (int k = 0; k < 2; k++)
            seen[three[i].target[k].partition]++;
    }
    for (int p = 0; p < 6; p++)
        assert_int_equal(seen[p], 1);
    /* stickiness: b and c keep theirs when a leaves, and split a's */
    struct lm_cgroup_amember two[2] = {
        {.member_id = S("b"),
         .n_topics = 1,
         .topics = t0,
         .n_current = 2,
         .current = three[1].target},
        {.member_id = S("c"),
         .n_topics = 1,
         .topics = t0,
         .n_current = 2,
         .current = three[2].target},
    };
    assert_int_equal(lm_cgroup_assign("uniform", 1, topics, 2, two), 0);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(two[i].n_target, 3);
        for (int k = 0; k < 2; k++) {
            bool kept = false;
            for (int j = 0; j < 3; j++)
                kept |= two[i].target[j].partition == three[i + 1].target[k].partition;
            assert_true(kept);
        }
    }
    free(one[0].target);
    for (int i = 0; i < 3; i++)
        free(three[i].target);
    for (int i = 0; i < 2; i++)
        free(two[i].target);
}

static void test_uniform_heterogeneous(void **state)
{
    (void)state;
    /* a subscribes to t0 (4 partitions) only, b to t0 and t1 (4): b takes all of t1 and a
     * all of t0 is not balanced; 4/4 is */
    struct lm_cgroup_atopic topics[2] = {{.id = {{1}}, .partitions = 4},
                                         {.id = {{2}}, .partitions = 4}};
    int32_t t0[1] = {0}, both[2] = {0, 1};
    struct lm_cgroup_amember m[2] = {
        {.member_id = S("a"), .n_topics = 1, .topics = t0},
        {.member_id = S("b"), .n_topics = 2, .topics = both},
    };
    assert_int_equal(lm_cgroup_assign("uniform", 2, topics, 2, m), 0);
    assert_int_equal(m[0].n_target, 4);
    assert_int_equal(m[1].n_target, 4);
    for (int k = 0; k < 4; k++)
        assert_int_equal(m[0].target[k].topic_id.b[0], 1);
    free(m[0].target);
    free(m[1].target);
}

/* Randomized: every partition of a subscribed topic goes to exactly one subscriber; uniform
 * with one shared subscription: counts differ by at most one, and each member keeps as many
 * of its current partitions as its count allows; otherwise no partition could move to a
 * subscriber holding two fewer; range: per topic, consecutive and balanced. */
static void test_assignors_randomized(void **state)
{
    (void)state;
    uint64_t x = 88172645463325252ull;
#define RND(n) ((x ^= x << 13, x ^= x >> 7, x ^= x << 17), (int32_t)(x % (uint64_t)(n)))
    for (int round = 0; round < 600; round++) {
        int32_t nt = 1 + RND(4), nm = 1 + RND(8);
        struct lm_cgroup_atopic topics[4];
        for (int32_t t = 0; t < nt; t++)
            topics[t] =
                (struct lm_cgroup_atopic){.id = {{(uint8_t)(t + 1)}}, .partitions = RND(20)};
        bool homo = RND(2) == 0;
        const char *assignor = RND(3) == 0 ? "range" : "uniform";
        int32_t subs[8][4], nsubs[8];
        struct lm_cgroup_tp cur[8][80];
        int32_t ncur[8];
        struct lm_cgroup_amember m[8];
        for (int32_t i = 0; i < nm; i++) {
            nsubs[i] = 0;
            for (int32_t t = 0; t < nt; t++)
                if (homo || RND(2) == 0)
                    subs[i][nsubs[i]++] = t;
            /* a random current assignment, possibly stale (partitions gone, overlaps) */
            ncur[i] = RND(10);
            for (int32_t k = 0; k < ncur[i]; k++)
                cur[i][k] = (struct lm_cgroup_tp){.topic_id = {{(uint8_t)(1 + RND(nt))}},
                                                  .partition = RND(22)};
            m[i] = (struct lm_cgroup_amember){.member_id = S("m"),
                                              .n_topics = nsubs[i],
                                              .topics = subs[i],
                                              .n_current = ncur[i],
                                              .current = cur[i]};
        }
        assert_int_equal(lm_cgroup_assign(assignor, nt, topics, nm, m), 0);
        int32_t owner[4][20];
        memset(owner, -1, sizeof(owner));
        for (int32_t i = 0; i < nm; i++) {
            for (int32_t k = 0; k < m[i].n_target; k++) {
                int32_t t = m[i].target[k].topic_id.b[0] - 1, p = m[i].target[k].partition;
                assert_true(t >= 0 && t < nt && p >= 0 && p < topics[t].partitions);
                assert_int_equal(owner[t][p], -1);
                owner[t][p] = i;
                bool sub = false;
                for (int32_t j = 0; j < nsubs[i]; j++)
                    sub |= subs[i][j] == t;
                assert_true(sub);
            }
        }
        for (int32_t t = 0; t < nt; t++) {
            bool any = false;
            for (int32_t i = 0; i < nm; i++)
                for (int32_t j = 0; j < nsubs[i]; j++)
                    any |= subs[i][j] == t;
            for (int32_t p = 0; p < topics[t].partitions; p++)
                assert_true(any ? owner[t][p] >= 0 : owner[t][p] == -1);
        }
        if (strcmp(assignor, "uniform") == 0 && homo) {
            int32_t lo = INT32_MAX, hi = 0, total = 0;
            for (int32_t t = 0; t < nt; t++)
                total += topics[t].partitions;
            for (int32_t i = 0; i < nm; i++) {
                lo = m[i].n_target < lo ? m[i].n_target : lo;
                hi = m[i].n_target > hi ? m[i].n_target : hi;
                /* sticky: it keeps min(valid current it alone claims first, its count) */
                int32_t kept = 0;
                for (int32_t k = 0; k < m[i].n_target; k++)
                    for (int32_t j = 0; j < ncur[i]; j++)
                        if (lm_cgroup_tp_cmp(&m[i].target[k], &cur[i][j]) == 0) {
                            kept++;
                            break;
                        }
                int32_t valid_unique = 0;
                for (int32_t j = 0; j < ncur[i]; j++) {
                    int32_t t = cur[i][j].topic_id.b[0] - 1;
                    bool dup = false, earlier = false;
                    for (int32_t q = 0; q < j; q++)
                        dup |= lm_cgroup_tp_cmp(&cur[i][q], &cur[i][j]) == 0;
                    for (int32_t q = 0; q < i; q++)
                        for (int32_t r = 0; r < ncur[q]; r++)
                            earlier |= lm_cgroup_tp_cmp(&cur[q][r], &cur[i][j]) == 0;
                    valid_unique += !dup && !earlier && cur[i][j].partition < topics[t].partitions;
                }
                int32_t quota = total / nm;
                assert_true(kept >= (valid_unique < quota ? valid_unique : quota));
            }
            assert_true(hi - lo <= 1);
        } else if (strcmp(assignor, "uniform") == 0) {
            for (int32_t t = 0; t < nt; t++)
                for (int32_t p = 0; p < topics[t].partitions; p++) {
                    int32_t o = owner[t][p];
                    if (o < 0)
                        continue;
                    for (int32_t i = 0; i < nm; i++)
                        for (int32_t j = 0; j < nsubs[i]; j++)
                            if (subs[i][j] == t)
                                assert_false(m[i].n_target < m[o].n_target - 1);
                }
        } else {
            for (int32_t t = 0; t < nt; t++) {
                int32_t nsub = 0;
                for (int32_t i = 0; i < nm; i++)
                    for (int32_t j = 0; j < nsubs[i]; j++)
                        nsub += subs[i][j] == t;
                for (int32_t p = 1; p < topics[t].partitions; p++)
                    assert_true(owner[t][p] >= owner[t][p - 1]); /* consecutive ranges */
                for (int32_t i = 0; i < nm; i++) {
                    int32_t n = 0;
                    for (int32_t p = 0; p < topics[t].partitions; p++)
                        n += owner[t][p] == i;
                    if (nsub > 0 && n > 0)
                        assert_true(n == topics[t].partitions / nsub ||
                                    n == topics[t].partitions / nsub + 1);
                }
            }
        }
        for (int32_t i = 0; i < nm; i++)
            free(m[i].target);
    }
#undef RND
}

/* ---- reconciliation ---- */

/* lm_cgroup_check_commit of a plain OffsetCommit of partitions parts[0..n) of topic "t". */
static int16_t check_commit(struct lm_cgroup_coord *c, struct image *im, const char *group,
                            const char *member, int32_t epoch, int16_t version,
                            const int32_t *parts, int32_t n)
{
    struct lm_cgroup_commit_tp tps[16];
    assert_true(n <= 16);
    for (int32_t i = 0; i < n; i++)
        tps[i] = (struct lm_cgroup_commit_tp){S("t"), parts[i]};
    struct lm_cgroup_image img = img_of(im);
    struct lm_cgroup_commit cm = {.group_id = S(group),
                                  .member_id = S(member),
                                  .member_epoch = epoch,
                                  .api_version = version,
                                  .n_partitions = n,
                                  .partitions = tps};
    return lm_cgroup_check_commit(c, &img, &cm);
}

static void test_revocation_before_assignment(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 6);
    struct client a, b;
    client_init(&a, "a", "t");
    client_init(&b, "b", "t");
    struct lm_cgroup_hb_resp r;
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.epoch, 1);
    assert_int_equal(a.n_own, 6);
    assert_int_equal(r.heartbeat_interval_ms, 5000);
    /* b joins: epoch 2; a still holds everything, so b gets nothing yet */
    assert_int_equal(client_hb(c, &im, 10, &b, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(b.epoch, 2);
    assert_int_equal(b.n_own, 0);
    /* a is told to give up 3 and keeps epoch 1 */
    assert_int_equal(client_hb(c, &im, 20, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_true(r.has_assignment);
    assert_int_equal(a.epoch, 1);
    assert_int_equal(a.n_own, 3);
    /* b still waits: the 3 are a's until a acknowledges */
    assert_int_equal(client_hb(c, &im, 30, &b, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(b.n_own, 0);
    struct lm_cgroup_desc d;
    struct lm_cgroup_image img = img_of(&im);
    assert_int_equal(lm_cgroup_describe(c, &img, S("g"), &d), 0);
    assert_string_equal(d.state, "Reconciling");
    /* a acknowledges (owned = its 3): epoch 2; then b gets its 3 */
    assert_int_equal(client_hb(c, &im, 40, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.epoch, 2);
    assert_int_equal(client_hb(c, &im, 50, &b, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(b.n_own, 3);
    struct client cls[2] = {a, b};
    check_disjoint(cls, 2);
    assert_int_equal(lm_cgroup_describe(c, &img, S("g"), &d), 0);
    assert_string_equal(d.state, "Stable");
    assert_int_equal(d.group_epoch, 2);
    assert_int_equal(d.assignment_epoch, 2);
    assert_int_equal(d.n_members, 2);
    assert_string_equal(d.assignor, "uniform");
    /* an unchanged heartbeat carries no assignment */
    assert_int_equal(client_hb(c, &im, 60, &b, INT32_MIN, &r), KAFKA_NONE);
    lm_cgroup_coord_free(c);
}

/* KIP-1251 assignment epochs: a commit with an epoch behind the member's passes for the
 * partitions the member has held since that epoch or earlier (the heartbeat answer that moved
 * it on may still be on its way), and fails for any other; after a load the epochs start again
 * at the member's (the strict check). */
static void test_commit_assignment_epochs(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 6);
    struct rlog log = {0};
    struct client a, b;
    client_init(&a, "a", "t");
    client_init(&b, "b", "t");
    struct lm_cgroup_hb_resp r;
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE); /* epoch 1, all 6 */
    assert_int_equal(client_hb(c, &im, 10, &b, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(client_hb(c, &im, 20, &a, INT32_MIN, &r), KAFKA_NONE); /* gives 3 up */
    int32_t a_first[3], a_gone[3];
    int na = 0, ng = 0;
    for (int32_t p = 0; p < 6; p++) {
        bool kept = false;
        for (int i = 0; i < a.n_own; i++)
            kept = kept || a.own[i].partition == p;
        if (kept)
            a_first[na++] = p;
        else
            a_gone[ng++] = p;
    }
    assert_int_equal(na, 3);
    assert_int_equal(ng, 3);
    /* while revoking, a's epoch stays 1: the partitions it gives up are still its own */
    assert_int_equal(a.epoch, 1);
    assert_int_equal(check_commit(c, &im, "g", "a", 1, 9, a_gone, 3), KAFKA_NONE);
    assert_int_equal(client_hb(c, &im, 30, &a, INT32_MIN, &r), KAFKA_NONE); /* acknowledged */
    assert_int_equal(a.epoch, 2);
    assert_int_equal(client_hb(c, &im, 40, &b, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(b.epoch, 2);
    assert_int_equal(b.n_own, 3);
    /* a at epoch 1 still for the three it kept; not for those b holds now */
    assert_int_equal(check_commit(c, &im, "g", "a", 1, 9, a_first, 3), KAFKA_NONE);
    assert_int_equal(check_commit(c, &im, "g", "a", 1, 9, a_gone, 1), KAFKA_STALE_MEMBER_EPOCH);
    int32_t mixed[2] = {a_first[0], a_gone[0]};
    assert_int_equal(check_commit(c, &im, "g", "a", 2, 9, mixed, 2), KAFKA_NONE);
    assert_int_equal(check_commit(c, &im, "g", "a", 1, 9, mixed, 2), KAFKA_STALE_MEMBER_EPOCH);
    /* b's were handed to it at 2: epoch 1 is refused, as is an epoch ahead of b's */
    int32_t b_parts[3] = {b.own[0].partition, b.own[1].partition, b.own[2].partition};
    assert_int_equal(check_commit(c, &im, "g", "b", 1, 9, b_parts, 3), KAFKA_STALE_MEMBER_EPOCH);
    assert_int_equal(check_commit(c, &im, "g", "b", 3, 9, b_parts, 3), KAFKA_STALE_MEMBER_EPOCH);
    /* b leaves: a takes all six at epoch 3 with nothing to give up; its commit sent at epoch
     * 2 (before that answer reached it) passes for what it held at 2 */
    assert_int_equal(client_hb(c, &im, 50, &b, LM_CGROUP_LEAVE_EPOCH, &r), KAFKA_NONE);
    assert_int_equal(client_hb(c, &im, 60, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.epoch, 3);
    assert_int_equal(a.n_own, 6);
    assert_int_equal(check_commit(c, &im, "g", "a", 2, 9, a_first, 3), KAFKA_NONE);
    assert_int_equal(check_commit(c, &im, "g", "a", 2, 9, b_parts, 1), KAFKA_STALE_MEMBER_EPOCH);
    assert_int_equal(check_commit(c, &im, "g", "a", 3, 9, b_parts, 3), KAFKA_NONE);
    /* a topic the image does not have: refused at an old epoch */
    struct lm_cgroup_commit_tp other = {S("nope"), 0};
    struct lm_cgroup_image img = img_of(&im);
    struct lm_cgroup_commit cm = {.group_id = S("g"),
                                  .member_id = S("a"),
                                  .member_epoch = 2,
                                  .api_version = 9,
                                  .n_partitions = 1,
                                  .partitions = &other};
    assert_int_equal(lm_cgroup_check_commit(c, &img, &cm), KAFKA_STALE_MEMBER_EPOCH);
    /* a coordinator that loads the group from its records starts the epochs at the member's */
    rlog_take(&log, c);
    struct lm_cgroup_coord *c2 = rlog_replay(&log, 100);
    assert_int_equal(check_commit(c2, &im, "g", "a", 3, 9, a_first, 3), KAFKA_NONE);
    assert_int_equal(check_commit(c2, &im, "g", "a", 2, 9, a_first, 3), KAFKA_STALE_MEMBER_EPOCH);
    lm_cgroup_coord_free(c2);
    rlog_free(&log);
    lm_cgroup_coord_free(c);
}

static void test_errors(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 2);
    struct client a, x;
    client_init(&a, "a", "t");
    client_init(&x, "x", "t");
    struct lm_cgroup_hb_resp r;
    /* a heartbeat of a group not held, or of an unknown member: UNKNOWN_MEMBER_ID */
    x.epoch = 3;
    assert_int_equal(client_hb(c, &im, 0, &x, INT32_MIN, &r), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(client_hb(c, &im, 0, &x, INT32_MIN, &r), KAFKA_UNKNOWN_MEMBER_ID);
    /* an epoch ahead of the member's: fenced; an old epoch that is not the previous one too */
    assert_int_equal(client_hb(c, &im, 1, &a, 7, &r), KAFKA_FENCED_MEMBER_EPOCH);
    struct lm_cgroup_hb_req q;
    memset(&q, 0, sizeof(q));
    q.group_id = S("g");
    q.member_id = S("");
    q.member_epoch = 0;
    q.version = 1;
    q.instance_id = q.rack_id = q.topic_regex = q.server_assignor = KAFKA_STR_NULL;
    q.n_topic_names = -1;
    q.n_owned = 0;
    struct lm_cgroup_image img = img_of(&im);
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST); /* v1: member id required */
    /* ids longer than a record key's i16 string: refused before any state changes */
    char *longid = malloc(40000);
    memset(longid, 'x', 40000);
    q.member_id = (struct kafka_str){longid, 40000};
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST);
    q.member_id = S("n");
    q.group_id = (struct kafka_str){longid, 40000};
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST);
    free(longid);
    q.group_id = S("g");
    q.member_id = S("n");
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST); /* no rebalance timeout */
    q.rebalance_timeout_ms = 1000;
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST); /* no subscription */
    struct kafka_str t = S("t");
    q.topic_names = &t;
    q.n_topic_names = 1;
    q.server_assignor = S("sticky");
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_UNSUPPORTED_ASSIGNOR);
    q.server_assignor = KAFKA_STR_NULL;
    q.topic_regex = S("t(");
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REGULAR_EXPRESSION);
    assert_true(kafka_str_eq(r.member_id, S("n"))); /* readable after the call */
    char longre[1100];
    memset(longre, 'a', sizeof(longre));
    q.topic_regex = (struct kafka_str){longre, (int32_t)sizeof(longre)};
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_INVALID_REGULAR_EXPRESSION);
    /* v0 with an empty member id: the coordinator names the member */
    q.topic_regex = KAFKA_STR_NULL;
    q.version = 0;
    q.member_id = S("");
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_int_equal(r.member_id.len, 22);
    /* offset commit / fetch checks */
    assert_int_equal(check_commit(c, &im, "g", "a", a.epoch, 9, NULL, 0), KAFKA_NONE);
    assert_int_equal(check_commit(c, &im, "g", "a", a.epoch + 1, 9, NULL, 0),
                     KAFKA_STALE_MEMBER_EPOCH);
    assert_int_equal(check_commit(c, &im, "g", "a", a.epoch, 8, NULL, 0),
                     KAFKA_UNSUPPORTED_VERSION);
    assert_int_equal(check_commit(c, &im, "g", "zz", 1, 9, NULL, 0), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(check_commit(c, &im, "g", "", -1, 9, NULL, 0),
                     KAFKA_UNKNOWN_MEMBER_ID); /* group not empty */
    assert_int_equal(check_commit(c, &im, "other", "", -1, 2, NULL, 0), KAFKA_NONE);
    assert_int_equal(lm_cgroup_check_fetch(c, S("g"), KAFKA_STR_NULL, -1), KAFKA_NONE);
    assert_int_equal(lm_cgroup_check_fetch(c, S("g"), S("a"), a.epoch + 1),
                     KAFKA_STALE_MEMBER_EPOCH);
    assert_int_equal(lm_cgroup_check_fetch(c, S("g"), S("q"), 1), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(lm_cgroup_delete(c, S("g")), LM_E_EXISTS);
    lm_cgroup_coord_free(c);
}

static bool keep_all(void *ctx, struct kafka_str id)
{
    (void)ctx;
    (void)id;
    return true;
}

static bool keep_none(void *ctx, struct kafka_str id)
{
    (void)ctx;
    (void)id;
    return false;
}

static void test_leave_static_and_timeouts(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 4);
    struct client a, b;
    client_init(&a, "a", "t");
    client_init(&b, "b", "t");
    struct lm_cgroup_hb_resp r;
    struct lm_cgroup_image img = img_of(&im);
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(client_hb(c, &im, 0, &b, INT32_MIN, &r), KAFKA_NONE);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(client_hb(c, &im, 1, &a, INT32_MIN, &r), KAFKA_NONE);
        assert_int_equal(client_hb(c, &im, 1, &b, INT32_MIN, &r), KAFKA_NONE);
    }
    assert_int_equal(a.n_own, 2);
    assert_int_equal(b.n_own, 2);
    /* b leaves: a gets everything on its next heartbeat, at a new epoch */
    int32_t e = a.epoch;
    assert_int_equal(client_hb(c, &im, 2, &b, -1, &r), KAFKA_NONE);
    assert_int_equal(r.member_epoch, -1);
    assert_int_equal(client_hb(c, &im, 3, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.n_own, 4);
    assert_true(a.epoch > e);
    /* the session timeout fences a silent member */
    assert_int_equal(lm_cgroup_next_deadline_ms(c), 3 + 45000);
    lm_cgroup_tick(c, 3 + 44999);
    assert_true(lm_cgroup_exists(c, S("g"), NULL));
    int32_t n = -1;
    lm_cgroup_tick(c, 3 + 45000);
    assert_true(lm_cgroup_exists(c, S("g"), &n));
    assert_int_equal(n, 0);
    assert_int_equal(client_hb(c, &im, 50000, &a, INT32_MIN, &r), KAFKA_UNKNOWN_MEMBER_ID);
    struct lm_cgroup_desc d;
    assert_int_equal(lm_cgroup_describe(c, &img, S("g"), &d), 0);
    assert_string_equal(d.state, "Empty");
    assert_int_equal(lm_cgroup_describe(c, &img, S("nope"), &d), 0);
    assert_int_equal(d.error_code, KAFKA_GROUP_ID_NOT_FOUND);

    /* static members: a temporary leave (-2) keeps the assignment; the instance back under a
     * new member id takes it over without a new epoch; an active instance id is refused */
    struct lm_cgroup_hb_req q;
    memset(&q, 0, sizeof(q));
    struct kafka_str t = S("t");
    q.group_id = S("s");
    q.member_id = S("m1");
    q.instance_id = S("i1");
    q.rack_id = q.topic_regex = q.server_assignor = KAFKA_STR_NULL;
    q.rebalance_timeout_ms = 1000;
    q.n_topic_names = 1;
    q.topic_names = &t;
    q.version = 1;
    assert_int_equal(lm_cgroup_heartbeat(c, 100000, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_NONE);
    int32_t se = r.member_epoch;
    assert_int_equal(r.n_assigned, 4);
    q.member_id = S("m2");
    assert_int_equal(lm_cgroup_heartbeat(c, 100000, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_UNRELEASED_INSTANCE_ID);
    q.member_id = S("m1");
    q.member_epoch = -2;
    assert_int_equal(lm_cgroup_heartbeat(c, 100001, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_int_equal(r.member_epoch, -2);
    /* the temporary leave is in the records: a coordinator loaded from them keeps the
     * assignment for the instance, which takes it over there too */
    struct rlog log = {0};
    rlog_take(&log, c);
    struct lm_cgroup_coord *l = rlog_replay(&log, 100001);
    assert_same_group(c, l, &im, "s");
    assert_int_equal(lm_cgroup_describe(l, &img, S("s"), &d), 0);
    assert_int_equal(d.members[0].member_epoch, -2);
    struct lm_cgroup_hb_resp lr;
    q.member_id = S("m2");
    q.member_epoch = 0;
    assert_int_equal(lm_cgroup_heartbeat(l, 100002, 0, &img, &q, &lr), 0);
    assert_int_equal(lr.error_code, KAFKA_NONE);
    assert_int_equal(lr.member_epoch, se);
    assert_int_equal(lr.n_assigned, 4);
    lm_cgroup_coord_free(l);
    q.member_id = S("m2");
    q.member_epoch = 0;
    assert_int_equal(lm_cgroup_heartbeat(c, 100002, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_int_equal(r.member_epoch, se);
    assert_int_equal(r.n_assigned, 4);
    assert_int_equal(lm_cgroup_describe(c, &img, S("s"), &d), 0);
    assert_int_equal(d.n_members, 1);
    assert_int_equal(d.group_epoch, se);
    assert_true(kafka_str_eq(d.members[0].member_id, S("m2")));
    /* m1's records got their tombstones: a load has m2 only */
    rlog_take(&log, c);
    l = rlog_replay(&log, 100003);
    assert_same_group(c, l, &im, "s");
    assert_int_equal(lm_cgroup_describe(l, &img, S("s"), &d), 0);
    assert_int_equal(d.n_members, 1);
    lm_cgroup_coord_free(l);
    rlog_free(&log);
    /* a static member gone for good: the session timeout removes it */
    q.member_epoch = -2;
    assert_int_equal(lm_cgroup_heartbeat(c, 100003, 0, &img, &q, &r), 0);
    lm_cgroup_tick(c, 100003 + 45000);
    assert_true(lm_cgroup_exists(c, S("s"), &n));
    assert_int_equal(n, 0);
    assert_int_equal(lm_cgroup_delete(c, S("s")), 0);
    assert_false(lm_cgroup_exists(c, S("s"), NULL));
    /* empty groups go unless the shell keeps them (committed offsets); "g" is empty */
    assert_int_equal(lm_cgroup_drop_empty(c, keep_all, NULL), 0);
    assert_true(lm_cgroup_exists(c, S("g"), NULL));
    assert_int_equal(lm_cgroup_drop_empty(c, keep_none, NULL), 1);
    assert_false(lm_cgroup_exists(c, S("g"), NULL));
    lm_cgroup_unload(c, 0);
    assert_int_equal(lm_cgroup_n_groups(c), 0);
    lm_cgroup_coord_free(c);
}

static void test_rebalance_timeout_fences(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 2);
    struct client a, b;
    client_init(&a, "a", "t");
    client_init(&b, "b", "t");
    struct lm_cgroup_hb_resp r;
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(client_hb(c, &im, 0, &b, INT32_MIN, &r), KAFKA_NONE);
    /* a is asked to revoke one partition and never acknowledges: fenced after its 30 s
     * rebalance timeout, and b gets both */
    struct client before = a;
    assert_int_equal(client_hb(c, &im, 1000, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.n_own, 1);
    memcpy(a.own, before.own, sizeof(a.own)); /* keeps owning both */
    a.n_own = 2;
    assert_int_equal(client_hb(c, &im, 2000, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(lm_cgroup_next_deadline_ms(c), 1000 + 30000);
    assert_int_equal(client_hb(c, &im, 20000, &b, INT32_MIN, &r), KAFKA_NONE);
    lm_cgroup_tick(c, 31000);
    assert_int_equal(client_hb(c, &im, 31001, &a, INT32_MIN, &r), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(client_hb(c, &im, 31002, &b, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(b.n_own, 2);
    lm_cgroup_coord_free(c);
}

static void test_metadata_change_bumps_epoch(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t", 2);
    struct client a;
    client_init(&a, "a", "t");
    struct lm_cgroup_hb_resp r;
    assert_int_equal(client_hb(c, &im, 0, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.n_own, 2);
    int32_t e = a.epoch;
    im.parts[0] = 5; /* new partitions */
    assert_int_equal(client_hb(c, &im, 1, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.epoch, e + 1);
    assert_int_equal(a.n_own, 5);
    im.n = 0; /* topic deleted */
    assert_int_equal(client_hb(c, &im, 2, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.n_own, 0);
    assert_int_equal(a.epoch, e + 1); /* revocation first, at the same epoch */
    assert_int_equal(client_hb(c, &im, 3, &a, INT32_MIN, &r), KAFKA_NONE);
    assert_int_equal(a.epoch, e + 2);
    /* a regex subscription picks up a topic created later */
    image_add(&im, "logs-1", 3);
    struct client b;
    client_init(&b, "b", "none");
    b.n_topics = 0;
    struct lm_cgroup_hb_req q;
    memset(&q, 0, sizeof(q));
    q.group_id = S("re");
    q.member_id = S("b");
    q.instance_id = q.rack_id = q.server_assignor = KAFKA_STR_NULL;
    q.topic_regex = S("logs-[0-9]+");
    q.rebalance_timeout_ms = 1000;
    q.n_topic_names = -1;
    q.version = 1;
    struct lm_cgroup_image img = img_of(&im);
    assert_int_equal(lm_cgroup_heartbeat(c, 10, 0, &img, &q, &r), 0);
    assert_int_equal(r.n_assigned, 3);
    image_add(&im, "logs-2", 1);
    image_add(&im, "logs-2x", 1);
    img = img_of(&im);
    q.member_epoch = r.member_epoch;
    q.topic_regex = KAFKA_STR_NULL;
    q.rebalance_timeout_ms = -1;
    assert_int_equal(lm_cgroup_heartbeat(c, 11, 0, &img, &q, &r), 0);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_true(r.has_assignment);
    assert_int_equal(r.n_assigned, 4);
    lm_cgroup_coord_free(c);
}

/* Random but well-formed records (any member, epoch, state, partitions, tombstones, in any
 * order) load into groups the calls serve without breaking an invariant: heartbeats of
 * random members, ticks and describes after the load never hand a partition to two members. */
static void test_replay_random_records(void **state)
{
    (void)state;
    static const char *members[] = {"a", "b", "c", "d"};
    uint64_t x = 99;
#define RND() (x ^= x << 13, x ^= x >> 7, x ^= x << 17, x)
    for (int run = 0; run < 300; run++) {
        struct lm_cgroup_coord *c = coord_new();
        int64_t bad = 0;
        int n = (int)(RND() % 40);
        for (int i = 0; i < n; i++) {
            uint8_t kb[64], vb[512];
            struct kafka_writer kw, vw;
            kafka_writer_init(&kw, kb, sizeof(kb));
            kafka_writer_init(&vw, vb, sizeof(vb));
            static const int16_t types[] = {3, 4, 5, 6, 7, 8, 16};
            int16_t t = types[RND() % 7];
            const char *m = members[RND() % 4];
            struct lm_cgr_key k = {t, S("g"), t == 16 ? S("t.*") : S(m)};
            if (t == 3 || t == 4 || t == 6)
                k.member = KAFKA_STR_NULL;
            struct lm_cgroup_tp tp[6];
            int np = (int)(RND() % 6);
            for (int j = 0; j < np; j++)
                tp[j] = (struct lm_cgroup_tp){uuid_of(1), (int32_t)j * 2 + (int32_t)(RND() % 2)};
            struct lm_cgr_parts parts = {np, tp};
            struct kafka_str topic = S("t");
            bool tomb = RND() % 5 == 0 || t == 4 || t == 16;
            int rc = 0;
            if (!tomb) {
                switch (t) {
                case 3:
                    rc = lm_cgr_group_value_encode(
                        &vw, &(struct lm_cgr_group_value){(int32_t)(RND() % 6), RND() % 2 == 0,
                                                          (int64_t)RND()});
                    break;
                case 5: {
                    struct lm_cgr_member_value mv = {
                        .instance_id = RND() % 3 == 0 ? S("i") : KAFKA_STR_NULL,
                        .rack_id = KAFKA_STR_NULL,
                        .client_id = S("c"),
                        .client_host = S("h"),
                        .n_topic_names = RND() % 3 == 0 ? 0 : 1,
                        .topic_names = &topic,
                        .topic_regex = RND() % 4 == 0 ? S("t|u") : KAFKA_STR_NULL,
                        .rebalance_timeout_ms = (int32_t)(RND() % 3) * 1000 - 1000,
                        .server_assignor = RND() % 2 ? S("range") : KAFKA_STR_NULL};
                    rc = lm_cgr_member_value_encode(&vw, &mv);
                    break;
                }
                case 6:
                    rc = lm_cgr_target_epoch_value_encode(&vw, (int32_t)(RND() % 6));
                    break;
                case 7:
                    rc = lm_cgr_target_member_value_encode(&vw, &parts);
                    break;
                case 8: {
                    struct lm_cgroup_tp pend[1] = {{uuid_of(1), (int32_t)(RND() % 12)}};
                    struct lm_cgr_current_value cv = {(int32_t)(RND() % 8) - 2,
                                                      (int32_t)(RND() % 8) - 2,
                                                      (int8_t)(RND() % 4),
                                                      parts,
                                                      {(int32_t)(RND() % 2), pend}};
                    rc = lm_cgr_current_value_encode(&vw, &cv);
                    break;
                }
                }
            }
            assert_int_equal(rc, 0);
            assert_int_equal(lm_cgr_key_encode(&kw, &k), 0);
            struct kafka_bytes v =
                tomb ? (struct kafka_bytes){NULL, -1} : (struct kafka_bytes){vb, (int32_t)vw.pos};
            assert_int_equal(
                lm_cgroup_replay(c, 0, 1, (struct kafka_bytes){kb, (int32_t)kw.pos}, v, &bad), 0);
        }
        assert_int_equal(lm_cgroup_load_end(c, 0, 1000, session_of, NULL), 0);
        struct image im = {0};
        image_add(&im, "t", 12);
        struct lm_cgroup_image img = img_of(&im);
        struct lm_cgroup_desc d;
        int64_t now = 1000;
        struct client cls[4];
        for (int i = 0; i < 4; i++) {
            client_init(&cls[i], members[i], "t");
            cls[i].epoch = (int32_t)(RND() % 5) - 1;
        }
        for (int step = 0; step < 60; step++) {
            struct client *cl = &cls[RND() % 4];
            struct lm_cgroup_hb_resp r;
            now += (int64_t)(RND() % 3000);
            int16_t e = client_hb(c, &im, now, cl, INT32_MIN, &r);
            if (e != KAFKA_NONE) {
                cl->epoch = -1;
                cl->n_own = 0;
            }
            lm_cgroup_tick(c, now);
            lm_cgroup_records_advance(c);
            assert_int_equal(lm_cgroup_describe(c, &img, S("g"), &d), 0);
            /* what the coordinator holds: no partition in two members */
            for (int32_t a = 0; d.error_code == KAFKA_NONE && a < d.n_members; a++)
                for (int32_t b = a + 1; b < d.n_members; b++)
                    for (int32_t i = 0; i < d.members[a].n_assigned; i++)
                        for (int32_t j = 0; j < d.members[b].n_assigned; j++)
                            assert_int_not_equal(lm_cgroup_tp_cmp(&d.members[a].assigned[i],
                                                                  &d.members[b].assigned[j]),
                                                 0);
        }
        lm_cgroup_coord_free(c);
    }
#undef RND
}

/* ---- randomized: simulated clients join, leave, crash, heartbeat; topics grow ---- */

#define SIM_CLIENTS 6

static void sim_run(uint64_t seed)
{
    struct lm_cgroup_coord *c = coord_new();
    struct image im = {0};
    image_add(&im, "t0", 3);
    image_add(&im, "t1", 5);
    struct client cls[SIM_CLIENTS];
    for (int i = 0; i < SIM_CLIENTS; i++) {
        char id[8];
        snprintf(id, sizeof(id), "m%d", i);
        client_init(&cls[i], id, "t0");
        cls[i].lazy = true;
        cls[i].revoke_since_ms = -1;
        cls[i].rng = seed * 31 + (uint64_t)i;
        if (i % 2 == 1) {
            cls[i].topics[1] = "t1";
            cls[i].n_topics = 2;
        }
    }
    uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
    int64_t now = 0;
    struct lm_cgroup_hb_resp r;
    struct rlog log = {0};
    for (int step = 0; step < 400; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int who = (int)(x % SIM_CLIENTS);
        int what = (int)((x >> 8) % 20);
        now += (int64_t)((x >> 16) % 2000);
        struct client *cl = &cls[who];
        if (getenv("CG_TRACE") != NULL)
            fprintf(stderr, "seed %llu step %d: %s what %d epoch %d own %d\n",
                    (unsigned long long)seed, step, cl->id, what, cl->epoch, cl->n_own);
        if (what == 0 && cl->epoch >= 0) {
            client_hb(c, &im, now, cl, -1, &r); /* leave */
            cl->epoch = -1;
            cl->n_own = 0;
            cl->n_asg = 0;
            cl->revoke_since_ms = -1;
        } else if (what == 1 && im.parts[1] < 12) {
            im.parts[1]++;
        } else {
            int16_t e = client_hb(c, &im, now, cl, INT32_MIN, &r);
            if (e == KAFKA_UNKNOWN_MEMBER_ID || e == KAFKA_FENCED_MEMBER_EPOCH) {
                /* the client lost its partitions and joins again */
                cl->epoch = -1;
                cl->n_own = 0;
                cl->n_asg = 0;
                cl->revoke_since_ms = -1;
            } else {
                assert_int_equal(e, KAFKA_NONE);
            }
        }
        /* live clients heartbeat well within their session and rebalance timeouts, so only
         * explicit leaves remove members */
        for (int i = 0; i < SIM_CLIENTS; i++) {
            if (cls[i].epoch >= 0 && now - cls[i].last_hb_ms > 20000) {
                assert_int_equal(client_hb(c, &im, now, &cls[i], INT32_MIN, &r), KAFKA_NONE);
                check_disjoint(cls, SIM_CLIENTS);
            }
        }
        lm_cgroup_tick(c, now);
        check_disjoint(cls, SIM_CLIENTS);
        /* the records written so far load into the same group */
        rlog_take(&log, c);
        if (step % 50 == 49) {
            struct lm_cgroup_coord *l = rlog_replay(&log, now);
            assert_same_group(c, l, &im, "g");
            lm_cgroup_coord_free(l);
        }
    }
    /* stable membership: every member heartbeats until nothing changes; then every
     * subscribed partition is held by exactly one member, and the group is Stable */
    for (int round = 0; round < 30; round++) {
        now += 100;
        for (int i = 0; i < SIM_CLIENTS; i++) {
            if (cls[i].epoch < 0 && i % 3 != 0)
                continue;
            int16_t e = client_hb(c, &im, now, &cls[i], INT32_MIN, &r);
            assert_int_equal(e, KAFKA_NONE);
            check_disjoint(cls, SIM_CLIENTS);
        }
    }
    int held = 0;
    bool any_t1 = false;
    for (int i = 0; i < SIM_CLIENTS; i++) {
        held += cls[i].n_own;
        any_t1 |= cls[i].epoch >= 0 && cls[i].n_topics == 2;
    }
    assert_int_equal(held, im.parts[0] + (any_t1 ? im.parts[1] : 0));
    struct lm_cgroup_desc d;
    struct lm_cgroup_image img = img_of(&im);
    assert_int_equal(lm_cgroup_describe(c, &img, S("g"), &d), 0);
    assert_string_equal(d.state, "Stable");
    for (int i = 0; i < d.n_members; i++)
        assert_int_equal(d.members[i].member_epoch, d.assignment_epoch);
    /* a coordinator loaded from the records answers every member as this one does */
    rlog_take(&log, c);
    struct lm_cgroup_coord *l = rlog_replay(&log, now);
    assert_same_group(c, l, &im, "g");
    for (int i = 0; i < SIM_CLIENTS; i++) {
        if (cls[i].epoch < 0)
            continue;
        struct client x1 = cls[i], x2 = cls[i];
        struct lm_cgroup_hb_resp r1, r2;
        assert_int_equal(client_hb(c, &im, now + 1, &x1, INT32_MIN, &r1), KAFKA_NONE);
        assert_int_equal(client_hb(l, &im, now + 1, &x2, INT32_MIN, &r2), KAFKA_NONE);
        assert_int_equal(r1.member_epoch, r2.member_epoch);
        assert_true(r2.has_assignment);
        assert_tps_equal(x1.n_own, x1.own, x2.n_own, x2.own);
    }
    assert_same_group(c, l, &im, "g");
    lm_cgroup_coord_free(l);
    rlog_free(&log);
    lm_cgroup_coord_free(c);
}

static void test_randomized_no_double_ownership(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 200; seed++)
        sim_run(seed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_range_assignor),
        cmocka_unit_test(test_uniform_assignor_balanced_and_sticky),
        cmocka_unit_test(test_uniform_heterogeneous),
        cmocka_unit_test(test_assignors_randomized),
        cmocka_unit_test(test_revocation_before_assignment),
        cmocka_unit_test(test_commit_assignment_epochs),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_leave_static_and_timeouts),
        cmocka_unit_test(test_rebalance_timeout_fences),
        cmocka_unit_test(test_metadata_change_bumps_epoch),
        cmocka_unit_test(test_randomized_no_double_ownership),
        cmocka_unit_test(test_record_codecs),
        cmocka_unit_test(test_records_of_changes),
        cmocka_unit_test(test_replay_bad_records),
        cmocka_unit_test(test_replay_random_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
