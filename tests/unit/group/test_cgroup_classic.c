/* Classic members of consumer groups (Kafka 4's mixed groups): the consumer protocol codec
 * (cproto.h), JoinGroup/SyncGroup/Heartbeat/LeaveGroup of a classic member beside a
 * consumer-protocol member (MEMBER_ID_REQUIRED first, the server's assignment through SyncGroup,
 * REBALANCE_IN_PROGRESS to rejoin, revocation through the owned partitions of the
 * subscription), their errors and timeouts, and the ClassicMemberMetadata record loaded back. */
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
#include "broker/group/cproto.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static struct kafka_str S(const char *s) {
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

/* ---- a topic image: "t" (4 partitions), "u" (2) ---- */

static const char *const TOPIC_NAMES[] = {"t", "u"};
static const int32_t TOPIC_PARTS[] = {4, 2};

static void image_topic(void *ctx, size_t i, struct lm_cgroup_topic *out)
{
    (void)ctx;
    memset(out, 0, sizeof(*out));
    out->name = S(TOPIC_NAMES[i]);
    out->id.b[0] = 1;
    out->id.b[15] = (uint8_t)i;
    out->partitions = TOPIC_PARTS[i];
}

static const struct lm_cgroup_image IMG = {NULL, 2, image_topic};

static struct lm_cgroup_coord *coord_new(void)
{
    struct lm_cgroup_config cfg;
    lm_cgroup_config_default(&cfg);
    struct lm_cgroup_coord *c = NULL;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    return c;
}

/* ---- the consumer protocol's bytes, written by hand as the Java client does ---- */

struct buf {
    uint8_t b[512];
    size_t n;
};

static void put16(struct buf *w, int16_t v)
{
    w->b[w->n++] = (uint8_t)((uint16_t)v >> 8);
    w->b[w->n++] = (uint8_t)v;
}

static void put32(struct buf *w, int32_t v)
{
    for (int s = 24; s >= 0; s -= 8)
        w->b[w->n++] = (uint8_t)((uint32_t)v >> s);
}

static void putstr(struct buf *w, const char *s)
{
    put16(w, (int16_t)strlen(s));
    memcpy(w->b + w->n, s, strlen(s));
    w->n += strlen(s);
}

/* Subscription v1 to topic "t" owning partitions own[0..n_own) of "t". */
static struct kafka_bytes subscription(struct buf *w, int16_t version, const int32_t *own,
                                       int n_own)
{
    w->n = 0;
    put16(w, version);
    put32(w, 1);
    putstr(w, "t");
    put32(w, -1); /* user data: null */
    if (version >= 1) {
        put32(w, n_own > 0 ? 1 : 0);
        if (n_own > 0) {
            putstr(w, "t");
            put32(w, n_own);
            for (int i = 0; i < n_own; i++)
                put32(w, own[i]);
        }
    }
    if (version >= 2)
        put32(w, -1);
    if (version >= 3)
        putstr(w, "rack-1");
    return (struct kafka_bytes){w->b, (int32_t)w->n};
}

/* Partitions of "t" in an Assignment, sorted; returns how many (-1: not an assignment). */
static int assigned_of(struct kafka_bytes b, int32_t *parts)
{
    struct kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    int32_t n;
    struct lm_cproto_tp *tps;
    int rc = lm_cproto_assignment_decode(b, &a, &n, &tps, NULL);
    int k = rc == 0 ? 0 : -1;
    for (int32_t i = 0; rc == 0 && i < n; i++) {
        assert_true(kafka_str_eq(tps[i].topic, S("t")));
        parts[k++] = tps[i].partition;
    }
    kafka_arena_deinit(&a);
    return k;
}

/* ---- a classic client ---- */

struct classic {
    char id[40];
    int32_t generation;
    int n_own;
    int32_t own[8];
    const char *protocol; /* "range" unless set */
    struct buf sub;
};

static struct lm_group_join_resp classic_join(struct lm_cgroup_coord *c, int64_t now,
                                              struct classic *cl)
{
    struct lm_group_protocol p = {
        S(cl->protocol != NULL ? cl->protocol : "range"),
        subscription(&cl->sub, 1, cl->own, cl->n_own),
    };
    struct lm_group_join_req r = {
        .group_id = S("g"),
        .member_id = S(cl->id),
        .group_instance_id = KAFKA_STR_NULL,
        .protocol_type = S("consumer"),
        .client_id = S("classic-client"),
        .client_host = S("/127.0.0.1"),
        .session_timeout_ms = 10000,
        .rebalance_timeout_ms = 30000,
        .require_known_member_id = true,
        .n_protocols = 1,
        .protocols = &p,
    };
    struct lm_group_join_resp out;
    assert_int_equal(lm_cgroup_classic_join(c, now, &IMG, &r, &out), 0);
    if (out.error_code == KAFKA_MEMBER_ID_REQUIRED || out.error_code == KAFKA_NONE) {
        assert_true(out.member_id.len > 0 && (size_t)out.member_id.len < sizeof(cl->id));
        memcpy(cl->id, out.member_id.ptr, (size_t)out.member_id.len);
        cl->id[out.member_id.len] = '\0';
    }
    if (out.error_code == KAFKA_NONE)
        cl->generation = out.generation_id;
    return out;
}

/* SyncGroup; on success the client owns what it is given. */
static int16_t classic_sync(struct lm_cgroup_coord *c, int64_t now, struct classic *cl)
{
    struct lm_group_sync_req r = {
        .group_id = S("g"),
        .generation_id = cl->generation,
        .member_id = S(cl->id),
        .group_instance_id = KAFKA_STR_NULL,
        .protocol_type = S("consumer"),
        .protocol_name = S(cl->protocol != NULL ? cl->protocol : "range"),
    };
    struct lm_group_sync_resp out;
    assert_int_equal(lm_cgroup_classic_sync(c, now, &IMG, &r, &out), 0);
    if (out.error_code == KAFKA_NONE) {
        assert_true(kafka_str_eq(out.protocol_type, S("consumer")));
        cl->n_own = assigned_of(out.assignment, cl->own);
        assert_true(cl->n_own >= 0);
    }
    return out.error_code;
}

static int16_t classic_hb(struct lm_cgroup_coord *c, int64_t now, const struct classic *cl)
{
    struct lm_group_heartbeat_req r = {S("g"), cl->generation, S(cl->id), KAFKA_STR_NULL};
    struct lm_group_heartbeat_resp out;
    assert_int_equal(lm_cgroup_classic_heartbeat(c, now, &r, &out), 0);
    return out.error_code;
}

/* ---- a consumer-protocol client (topic "t") ---- */

struct modern {
    const char *id;
    int32_t epoch;
    int32_t n_own;
    struct lm_cgroup_tp own[8];
};

static int16_t modern_hb(struct lm_cgroup_coord *c, int64_t now, struct modern *m)
{
    struct kafka_str names[1] = {S("t")};
    int32_t parts[8];
    struct lm_cgroup_owned_topic ow = {.n_partitions = m->n_own, .partitions = parts};
    for (int32_t i = 0; i < m->n_own; i++) {
        ow.topic_id = m->own[i].topic_id;
        parts[i] = m->own[i].partition;
    }
    struct lm_cgroup_hb_req r = {
        .group_id = S("g"),
        .member_id = S(m->id),
        .member_epoch = m->epoch,
        .instance_id = KAFKA_STR_NULL,
        .rack_id = KAFKA_STR_NULL,
        .rebalance_timeout_ms = 30000,
        .n_topic_names = 1,
        .topic_names = names,
        .topic_regex = KAFKA_STR_NULL,
        .server_assignor = KAFKA_STR_NULL,
        .n_owned = m->epoch == 0 ? 0 : (m->n_own > 0 ? 1 : 0),
        .owned = &ow,
        .client_id = S("modern-client"),
        .client_host = S("/127.0.0.1"),
        .version = 1,
    };
    struct lm_cgroup_hb_resp out;
    assert_int_equal(lm_cgroup_heartbeat(c, now, 0, &IMG, &r, &out), 0);
    if (out.error_code == KAFKA_NONE) {
        m->epoch = out.member_epoch;
        if (out.has_assignment) {
            assert_true(out.n_assigned <= 8);
            m->n_own = out.n_assigned;
            if (out.n_assigned > 0)
                memcpy(m->own, out.assigned, (size_t)out.n_assigned * sizeof(*m->own));
        }
    }
    return out.error_code;
}

static const struct lm_cgroup_desc_member *desc_member(const struct lm_cgroup_desc *d,
                                                       const char *id)
{
    for (int32_t i = 0; i < d->n_members; i++)
        if (kafka_str_eq(d->members[i].member_id, S(id)))
            return &d->members[i];
    fail_msg("no member %s", id);
    return NULL;
}

/* The classic and the modern client together own every partition of "t", once. */
static void assert_split(const struct classic *cl, const struct modern *m)
{
    int seen[4] = {0};
    for (int i = 0; i < cl->n_own; i++)
        seen[cl->own[i]]++;
    for (int32_t i = 0; i < m->n_own; i++)
        seen[m->own[i].partition]++;
    for (int p = 0; p < 4; p++)
        assert_int_equal(seen[p], 1);
}

/* ---- tests ---- */

static void test_cproto_codec(void **state)
{
    (void)state;
    struct kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    struct buf w;
    int32_t own[2] = {3, 1};
    for (int16_t v = 0; v <= 4; v++) {
        struct kafka_bytes b = subscription(&w, v, own, 2);
        struct lm_cproto_sub s;
        assert_int_equal(lm_cproto_sub_decode(b, &a, &s), 0);
        assert_int_equal(s.version, v);
        assert_int_equal(lm_cproto_version(b), v);
        assert_int_equal(s.n_topics, 1);
        assert_true(kafka_str_eq(s.topics[0], S("t")));
        assert_int_equal(s.n_owned, v >= 1 ? 2 : 0);
        if (v >= 1)
            assert_int_equal(s.owned[0].partition, 3);
        assert_int_equal(s.rack_id.len, v >= 3 ? 6 : -1);
        /* every prefix is refused (v0 ends after its user data) */
        for (size_t n = 0; n < w.n; n++) {
            uint8_t *copy = malloc(n + 1);
            memcpy(copy, w.b, n);
            assert_true(lm_cproto_sub_decode((struct kafka_bytes){copy, (int32_t)n}, &a, &s) < 0);
            free(copy);
        }
    }
    /* Assignment v1: t [0, 2], u [1], null user data: golden bytes */
    struct lm_cproto_tp tps[3] = {{S("t"), 0}, {S("t"), 2}, {S("u"), 1}};
    size_t size = lm_cproto_assignment_size(3, tps);
    uint8_t out[64];
    struct kafka_writer kw;
    kafka_writer_init(&kw, out, sizeof(out));
    assert_int_equal(lm_cproto_assignment_encode(&kw, 1, 3, tps), 0);
    static const uint8_t golden[] = {0, 1, 0, 0, 0, 2, 0, 1, 't',  0,    0,    0,
                                     2, 0, 0, 0, 0, 0, 0, 0, 2,    0,    1,    'u',
                                     0, 0, 0, 1, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff};
    assert_int_equal(kw.pos, sizeof(golden));
    assert_int_equal(size, sizeof(golden));
    assert_memory_equal(out, golden, sizeof(golden));
    int32_t n;
    struct lm_cproto_tp *back;
    struct kafka_bytes ud;
    assert_int_equal(
        lm_cproto_assignment_decode((struct kafka_bytes){out, (int32_t)kw.pos}, &a, &n, &back, &ud),
        0);
    assert_int_equal(ud.len, -1);
    assert_int_equal(n, 3);
    assert_true(kafka_str_eq(back[2].topic, S("u")));
    assert_int_equal(back[2].partition, 1);
    /* mutated encodings: decoded or refused, never read past their end (ASan) */
    uint64_t rng = 42;
    int n_sub_ok = 0, n_asg_ok = 0;
    for (int it = 0; it < 20000; it++) {
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        struct buf m;
        if (it % 2 == 0) {
            subscription(&m, (int16_t)((rng >> 33) % 5), own, 2);
        } else {
            memcpy(m.b, golden, sizeof(golden));
            m.n = sizeof(golden);
        }
        for (int k = 0; k < 1 + (int)((rng >> 40) % 3); k++) {
            rng = rng * 6364136223846793005ull + 1442695040888963407ull;
            static const uint8_t vals[] = {0, 1, 2, 0x7f, 0xff};
            m.b[(rng >> 33) % m.n] = (rng >> 20) % 2 ? vals[(rng >> 50) % 5] : (uint8_t)(rng >> 56);
        }
        size_t len = (rng >> 10) % 3 == 0 ? (size_t)((rng >> 13) % m.n) : m.n;
        uint8_t *copy = malloc(len + 1);
        memcpy(copy, m.b, len);
        struct kafka_bytes bb = {copy, (int32_t)len};
        struct lm_cproto_sub sr;
        if (lm_cproto_sub_decode(bb, &a, &sr) == 0) {
            assert_true(sr.n_topics >= 0 && sr.n_owned >= 0 && (size_t)sr.n_owned <= len);
            n_sub_ok++;
        }
        int32_t nn;
        struct lm_cproto_tp *tt;
        if (lm_cproto_assignment_decode(bb, &a, &nn, &tt, NULL) == 0) {
            assert_true(nn >= 0 && (size_t)nn <= len);
            n_asg_ok++;
        }
        free(copy);
        kafka_arena_reset(&a);
    }
    assert_true(n_sub_ok > 1000 && n_asg_ok > 1000); /* not only refusals */
    /* a version above the highest known is written as the highest */
    kafka_writer_init(&kw, out, sizeof(out));
    assert_int_equal(lm_cproto_assignment_encode(&kw, 7, 0, NULL), 0);
    assert_int_equal(lm_cproto_version((struct kafka_bytes){out, (int32_t)kw.pos}), 3);
    kafka_arena_deinit(&a);
}

/* A classic member joins a consumer group: MEMBER_ID_REQUIRED, then a join that waits for the
 * partitions the modern member still holds, a heartbeat that tells it to rejoin once they are
 * free, and the split of the topic between the two. */
static void test_classic_joins_consumer_group(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct modern m = {.id = "modern-a"};
    assert_int_equal(modern_hb(c, 0, &m), KAFKA_NONE);
    assert_int_equal(m.epoch, 1);
    assert_int_equal(m.n_own, 4);

    struct classic cl = {0};
    struct lm_group_join_resp j = classic_join(c, 10, &cl);
    assert_int_equal(j.error_code, KAFKA_MEMBER_ID_REQUIRED);
    assert_true(strlen(cl.id) > 0);
    int32_t n_members = 0;
    assert_true(lm_cgroup_exists(c, S("g"), &n_members));
    assert_int_equal(n_members, 1); /* not a member until it joins with its id */

    j = classic_join(c, 20, &cl);
    assert_int_equal(j.error_code, KAFKA_NONE);
    assert_int_equal(j.generation_id, 2);
    assert_true(kafka_str_eq(j.protocol_type, S("consumer")));
    assert_true(kafka_str_eq(j.protocol_name, S("range")));
    assert_int_equal(j.leader.len, 0);
    assert_int_equal(j.n_members, 0);
    /* its partitions are still the modern member's: nothing yet */
    assert_int_equal(classic_sync(c, 30, &cl), KAFKA_NONE);
    assert_int_equal(cl.n_own, 0);
    assert_int_equal(classic_hb(c, 40, &cl), KAFKA_NONE);

    /* the modern member gives up two partitions */
    assert_int_equal(modern_hb(c, 50, &m), KAFKA_NONE);
    assert_int_equal(m.n_own, 2);
    assert_int_equal(m.epoch, 1);
    assert_int_equal(modern_hb(c, 60, &m), KAFKA_NONE);
    assert_int_equal(m.epoch, 2);

    /* now free: the classic member is told to rejoin, and gets them */
    assert_int_equal(classic_hb(c, 70, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    j = classic_join(c, 80, &cl);
    assert_int_equal(j.error_code, KAFKA_NONE);
    assert_int_equal(j.generation_id, 2);
    assert_int_equal(classic_sync(c, 90, &cl), KAFKA_NONE);
    assert_int_equal(cl.n_own, 2);
    assert_split(&cl, &m);
    assert_int_equal(classic_hb(c, 100, &cl), KAFKA_NONE);

    /* its commits carry its generation (any OffsetCommit version); another is
     * ILLEGAL_GENERATION, for fetches too */
    struct lm_cgroup_commit_tp ctp = {S("t"), cl.own[0]};
    struct lm_cgroup_commit cm = {.group_id = S("g"),
                                  .member_id = S(cl.id),
                                  .member_epoch = cl.generation,
                                  .api_version = 8,
                                  .n_partitions = 1,
                                  .partitions = &ctp};
    assert_int_equal(lm_cgroup_check_commit(c, &IMG, &cm), KAFKA_NONE);
    cm.member_epoch = cl.generation - 1;
    assert_int_equal(lm_cgroup_check_commit(c, &IMG, &cm), KAFKA_ILLEGAL_GENERATION);
    assert_int_equal(lm_cgroup_check_fetch(c, S("g"), S(cl.id), cl.generation), KAFKA_NONE);
    assert_int_equal(lm_cgroup_check_fetch(c, S("g"), S(cl.id), 0), KAFKA_ILLEGAL_GENERATION);

    struct lm_cgroup_desc d;
    assert_int_equal(lm_cgroup_describe(c, &IMG, S("g"), &d), 0);
    assert_string_equal(d.state, "Stable");
    assert_int_equal(d.n_members, 2);
    assert_true(desc_member(&d, cl.id)->classic);
    assert_false(desc_member(&d, "modern-a")->classic);
    assert_true(kafka_str_eq(desc_member(&d, cl.id)->client_id, S("classic-client")));
    assert_int_equal(desc_member(&d, cl.id)->n_topic_names, 1);
    lm_cgroup_coord_free(c);
}

/* A classic member holding partitions gives some up through a rejoin whose subscription still
 * owns them (cooperative), then rejoins without them. */
static void test_classic_revokes_through_rejoin(void **state)
{
    (void)state;
    /* no downgrade when the modern member leaves below */
    struct lm_cgroup_config cfg;
    lm_cgroup_config_default(&cfg);
    cfg.migration = LM_CGROUP_MIGRATION_UPGRADE;
    struct lm_cgroup_coord *c;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    struct modern m0 = {.id = "modern-0"};
    assert_int_equal(modern_hb(c, 0, &m0), KAFKA_NONE);
    struct classic cl = {0};
    classic_join(c, 1, &cl);
    assert_int_equal(classic_join(c, 2, &cl).error_code, KAFKA_NONE);
    /* the modern member leaves: the classic one is alone and takes the topic */
    m0.epoch = LM_CGROUP_LEAVE_EPOCH;
    assert_int_equal(modern_hb(c, 3, &m0), KAFKA_NONE);
    assert_int_equal(classic_hb(c, 4, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    assert_int_equal(classic_join(c, 5, &cl).error_code, KAFKA_NONE);
    assert_int_equal(classic_sync(c, 6, &cl), KAFKA_NONE);
    assert_int_equal(cl.n_own, 4);
    int32_t gen = cl.generation;

    /* a modern member joins: the classic one must rejoin */
    struct modern m = {.id = "modern-b"};
    assert_int_equal(modern_hb(c, 10, &m), KAFKA_NONE);
    assert_int_equal(m.n_own, 0);
    assert_int_equal(classic_hb(c, 20, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    /* rejoining with all four owned: told to keep two, at its old generation */
    struct lm_group_join_resp j = classic_join(c, 30, &cl);
    assert_int_equal(j.error_code, KAFKA_NONE);
    assert_int_equal(j.generation_id, gen);
    assert_int_equal(classic_sync(c, 40, &cl), KAFKA_NONE);
    assert_int_equal(cl.n_own, 2);
    /* still revoking (the server has not seen it let go): rejoin */
    assert_int_equal(classic_hb(c, 50, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    assert_int_equal(modern_hb(c, 55, &m), KAFKA_NONE);
    assert_int_equal(m.n_own, 0); /* not before the classic member let go */
    j = classic_join(c, 60, &cl);
    assert_int_equal(j.error_code, KAFKA_NONE);
    assert_true(j.generation_id > gen);
    assert_int_equal(classic_sync(c, 70, &cl), KAFKA_NONE);
    assert_int_equal(cl.n_own, 2);
    assert_int_equal(classic_hb(c, 80, &cl), KAFKA_NONE);
    assert_int_equal(modern_hb(c, 90, &m), KAFKA_NONE);
    assert_int_equal(m.n_own, 2);
    assert_split(&cl, &m);
    lm_cgroup_coord_free(c);
}

static void test_classic_errors(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct modern m = {.id = "modern-a"};
    assert_int_equal(modern_hb(c, 0, &m), KAFKA_NONE);
    struct buf w;
    struct lm_group_protocol p = {S("range"), subscription(&w, 1, NULL, 0)};
    struct lm_group_join_req r = {
        .group_id = S("g"),
        .member_id = S("x"),
        .group_instance_id = KAFKA_STR_NULL,
        .protocol_type = S("connect"),
        .client_id = S("c"),
        .client_host = S("/h"),
        .session_timeout_ms = 10000,
        .rebalance_timeout_ms = 30000,
        .require_known_member_id = true,
        .n_protocols = 1,
        .protocols = &p,
    };
    struct lm_group_join_resp j;
    assert_int_equal(lm_cgroup_classic_join(c, 1, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    r.protocol_type = S("consumer");
    r.session_timeout_ms = 1000; /* below group.min.session.timeout.ms */
    assert_int_equal(lm_cgroup_classic_join(c, 1, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_INVALID_SESSION_TIMEOUT);
    r.session_timeout_ms = 10000;
    assert_int_equal(lm_cgroup_classic_join(c, 1, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_NONE);
    /* a second classic member must share a protocol with the first */
    struct lm_group_protocol p2 = {S("roundrobin"), p.metadata};
    r.member_id = S("y");
    r.protocols = &p2;
    assert_int_equal(lm_cgroup_classic_join(c, 2, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    /* a subscription that does not parse */
    struct lm_group_protocol bad = {S("range"), {(const uint8_t *)"\0", 1}};
    r.protocols = &bad;
    assert_int_equal(lm_cgroup_classic_join(c, 2, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_UNKNOWN_SERVER_ERROR);

    struct lm_group_sync_req s = {S("g"),        99,         S("x"), KAFKA_STR_NULL,
                                  S("consumer"), S("range"), 0,      NULL};
    struct lm_group_sync_resp so;
    assert_int_equal(lm_cgroup_classic_sync(c, 3, &IMG, &s, &so), 0);
    assert_int_equal(so.error_code, KAFKA_ILLEGAL_GENERATION);
    s.generation_id = 2;
    s.protocol_name = S("roundrobin");
    assert_int_equal(lm_cgroup_classic_sync(c, 3, &IMG, &s, &so), 0);
    assert_int_equal(so.error_code, KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    s.member_id = S("modern-a"); /* not a classic member */
    assert_int_equal(lm_cgroup_classic_sync(c, 3, &IMG, &s, &so), 0);
    assert_int_equal(so.error_code, KAFKA_UNKNOWN_MEMBER_ID);

    struct lm_group_heartbeat_req h = {S("g"), 1, S("x"), KAFKA_STR_NULL};
    struct lm_group_heartbeat_resp ho;
    assert_int_equal(lm_cgroup_classic_heartbeat(c, 4, &h, &ho), 0);
    assert_int_equal(ho.error_code, KAFKA_ILLEGAL_GENERATION);
    h.member_id = S("nobody");
    assert_int_equal(lm_cgroup_classic_heartbeat(c, 4, &h, &ho), 0);
    assert_int_equal(ho.error_code, KAFKA_UNKNOWN_MEMBER_ID);

    /* LeaveGroup: the modern member cannot leave so, the classic one can */
    struct lm_group_leave_member lv[2] = {{S("modern-a"), KAFKA_STR_NULL},
                                          {S("x"), KAFKA_STR_NULL}};
    struct lm_group_leave_req l = {S("g"), 2, lv};
    struct lm_group_leave_resp lo;
    assert_int_equal(lm_cgroup_classic_leave(c, 5, &l, &lo), 0);
    assert_int_equal(lo.error_code, KAFKA_NONE);
    assert_int_equal(lo.n_members, 2);
    assert_int_equal(lo.members[0].error_code, KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(lo.members[1].error_code, KAFKA_NONE);
    int32_t n = 0;
    assert_true(lm_cgroup_exists(c, S("g"), &n));
    assert_int_equal(n, 1);
    struct lm_cgroup_desc d;
    assert_int_equal(lm_cgroup_describe(c, &IMG, S("g"), &d), 0);
    assert_int_equal(d.group_epoch, 3); /* modern join 1, classic join 2, leave 3 */

    /* a full group */
    lm_cgroup_coord_free(c);
    struct lm_cgroup_config cfg;
    lm_cgroup_config_default(&cfg);
    cfg.max_size = 1;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    m.epoch = 0;
    assert_int_equal(modern_hb(c, 0, &m), KAFKA_NONE);
    r.member_id = S("x");
    r.protocols = &p;
    assert_int_equal(lm_cgroup_classic_join(c, 1, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_GROUP_MAX_SIZE_REACHED);
    lm_cgroup_coord_free(c);
}

/* Static classic members (group.instance.id): no MEMBER_ID_REQUIRED; a restart (unknown member
 * id) replaces the member, which keeps its epoch and partitions under a new id; an active
 * consumer-protocol member keeps its instance id (UNRELEASED_INSTANCE_ID). */
static void test_classic_static(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct modern m = {.id = "modern-a"};
    assert_int_equal(modern_hb(c, 0, &m), KAFKA_NONE);
    struct buf w;
    struct lm_group_protocol p = {S("range"), subscription(&w, 1, NULL, 0)};
    struct lm_group_join_req r = {
        .group_id = S("g"),
        .member_id = S(""),
        .group_instance_id = S("i-1"),
        .protocol_type = S("consumer"),
        .client_id = S("c"),
        .client_host = S("/h"),
        .session_timeout_ms = 10000,
        .rebalance_timeout_ms = 30000,
        .require_known_member_id = true,
        .n_protocols = 1,
        .protocols = &p,
    };
    struct lm_group_join_resp j;
    assert_int_equal(lm_cgroup_classic_join(c, 1, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_NONE);
    char first[40];
    snprintf(first, sizeof(first), "%.*s", (int)j.member_id.len, j.member_id.ptr);
    int32_t gen = j.generation_id;
    /* the same instance restarts: a new member id, the same epoch, no new group epoch */
    assert_int_equal(lm_cgroup_classic_join(c, 2, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_NONE);
    assert_false(kafka_str_eq(j.member_id, S(first)));
    assert_int_equal(j.generation_id, gen);
    struct lm_cgroup_desc d;
    assert_int_equal(lm_cgroup_describe(c, &IMG, S("g"), &d), 0);
    assert_int_equal(d.n_members, 2);
    assert_int_equal(d.group_epoch, gen);
    /* the old incarnation is fenced */
    struct lm_group_heartbeat_req h = {S("g"), gen, S(first), S("i-1")};
    struct lm_group_heartbeat_resp ho;
    assert_int_equal(lm_cgroup_classic_heartbeat(c, 3, &h, &ho), 0);
    assert_int_equal(ho.error_code, KAFKA_FENCED_INSTANCE_ID);
    h.member_id = j.member_id;
    assert_int_equal(lm_cgroup_classic_heartbeat(c, 3, &h, &ho), 0);
    assert_int_equal(ho.error_code, KAFKA_NONE);
    lm_cgroup_coord_free(c);

    /* an active static consumer-protocol member keeps its instance */
    c = coord_new();
    struct kafka_str names[1] = {S("t")};
    struct lm_cgroup_hb_req hb = {.group_id = S("g"),
                                  .member_id = S("modern-s"),
                                  .member_epoch = 0,
                                  .instance_id = S("i-1"),
                                  .rack_id = KAFKA_STR_NULL,
                                  .rebalance_timeout_ms = 30000,
                                  .n_topic_names = 1,
                                  .topic_names = names,
                                  .topic_regex = KAFKA_STR_NULL,
                                  .server_assignor = KAFKA_STR_NULL,
                                  .n_owned = 0,
                                  .client_id = S("c"),
                                  .client_host = S("/h"),
                                  .version = 1};
    struct lm_cgroup_hb_resp hr;
    assert_int_equal(lm_cgroup_heartbeat(c, 0, 0, &IMG, &hb, &hr), 0);
    assert_int_equal(hr.error_code, KAFKA_NONE);
    assert_int_equal(lm_cgroup_classic_join(c, 1, &IMG, &r, &j), 0);
    assert_int_equal(j.error_code, KAFKA_UNRELEASED_INSTANCE_ID);
    lm_cgroup_coord_free(c);
}

/* A join not followed by a sync within the rebalance timeout, a rejoin not done within it, and a
 * session without heartbeats (the classic session timeout) each fence the member. */
static void test_classic_timeouts(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct modern m = {.id = "modern-a"};
    assert_int_equal(modern_hb(c, 0, &m), KAFKA_NONE);
    struct classic cl = {0};
    classic_join(c, 0, &cl);
    assert_int_equal(classic_join(c, 0, &cl).error_code, KAFKA_NONE);
    /* no sync: fenced at the rebalance timeout (30 s), the modern member heartbeating */
    assert_int_equal(lm_cgroup_next_deadline_ms(c), 10000); /* its session comes first */
    assert_int_equal(modern_hb(c, 5000, &m), KAFKA_NONE);   /* told to give up two */
    assert_int_equal(classic_hb(c, 9000, &cl), KAFKA_NONE);
    assert_int_equal(modern_hb(c, 10000, &m), KAFKA_NONE); /* gave them up */
    /* free now: the classic member is to rejoin, and heartbeats meanwhile */
    for (int64_t t = 15000; t < 30000; t += 5000) {
        assert_int_equal(modern_hb(c, t, &m), KAFKA_NONE);
        assert_int_equal(classic_hb(c, t + 1, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    }
    assert_int_equal(lm_cgroup_tick(c, 29999), 0);
    assert_int_equal(classic_hb(c, 29999, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    assert_int_equal(lm_cgroup_tick(c, 30000), 0);
    assert_int_equal(classic_hb(c, 30001, &cl), KAFKA_UNKNOWN_MEMBER_ID);

    /* synced, then silent: fenced at its own session timeout (10 s) */
    memset(&cl, 0, sizeof(cl));
    classic_join(c, 40000, &cl);
    assert_int_equal(classic_join(c, 40000, &cl).error_code, KAFKA_NONE);
    assert_int_equal(classic_sync(c, 40001, &cl), KAFKA_NONE);
    assert_int_equal(modern_hb(c, 45000, &m), KAFKA_NONE);
    assert_int_equal(lm_cgroup_tick(c, 50000), 0);
    assert_int_equal(classic_hb(c, 50001, &cl), KAFKA_NONE);
    assert_int_equal(modern_hb(c, 55000, &m), KAFKA_NONE);
    assert_int_equal(lm_cgroup_tick(c, 60001), 0);
    assert_int_equal(classic_hb(c, 60002, &cl), KAFKA_UNKNOWN_MEMBER_ID);

    /* told to rejoin and never does: fenced at the rebalance timeout */
    memset(&cl, 0, sizeof(cl));
    classic_join(c, 61000, &cl);
    assert_int_equal(classic_join(c, 61000, &cl).error_code, KAFKA_NONE);
    assert_int_equal(classic_sync(c, 61001, &cl), KAFKA_NONE);
    struct modern m2 = {.id = "modern-b"};
    assert_int_equal(modern_hb(c, 62000, &m2), KAFKA_NONE);
    assert_int_equal(classic_hb(c, 63000, &cl), KAFKA_REBALANCE_IN_PROGRESS);
    for (int64_t t = 66000; t < 95000; t += 3000) {
        assert_int_equal(modern_hb(c, t, &m), KAFKA_NONE);
        assert_int_equal(modern_hb(c, t, &m2), KAFKA_NONE);
        assert_int_equal(lm_cgroup_tick(c, t), 0);
        int16_t e = classic_hb(c, t, &cl);
        assert_int_equal(e, t < 93000 ? KAFKA_REBALANCE_IN_PROGRESS : KAFKA_UNKNOWN_MEMBER_ID);
    }
    lm_cgroup_coord_free(c);
}

/* The member metadata record carries ClassicMemberMetadata; a coordinator loaded from the records
 * has the classic member back with its protocols and session timeout. */
static void test_classic_records_load(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct modern m = {.id = "modern-a"};
    assert_int_equal(modern_hb(c, 0, &m), KAFKA_NONE);
    struct classic cl = {0};
    classic_join(c, 1, &cl);
    assert_int_equal(classic_join(c, 2, &cl).error_code, KAFKA_NONE);
    assert_int_equal(classic_sync(c, 3, &cl), KAFKA_NONE);

    /* the records, as a __consumer_offsets log, replayed into a new coordinator */
    struct lm_cgroup_coord *l = coord_new();
    const struct lm_cgroup_record *r;
    size_t n = lm_cgroup_records(c, &r);
    int64_t bad = 0;
    bool saw_classic = false;
    struct kafka_arena a;
    kafka_arena_init(&a, 1 << 20);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(lm_cgroup_replay(l, 0, 1, r[i].key, r[i].value, &bad), 0);
        if (lm_cgr_key_type(r[i].key.ptr, (size_t)r[i].key.len) == LM_CGR_MEMBER &&
            r[i].value.len > 0) {
            struct lm_cgr_member_value v;
            assert_int_equal(
                lm_cgr_member_value_decode(r[i].value.ptr, (size_t)r[i].value.len, &a, &v), 0);
            if (v.has_classic) {
                saw_classic = true;
                assert_int_equal(v.classic_session_timeout_ms, 10000);
                assert_int_equal(v.n_classic_protocols, 1);
                assert_true(kafka_str_eq(v.classic_protocols[0].name, S("range")));
                assert_int_equal(v.classic_protocols[0].metadata.len, (int32_t)cl.sub.n);
            }
        }
    }
    kafka_arena_deinit(&a);
    assert_true(saw_classic);
    assert_int_equal(bad, 0);
    lm_cgroup_records_advance(c);
    assert_int_equal(lm_cgroup_load_end(l, 0, 1000, NULL, NULL), 0);
    struct lm_cgroup_desc d;
    assert_int_equal(lm_cgroup_describe(l, &IMG, S("g"), &d), 0);
    assert_int_equal(d.n_members, 2);
    assert_true(desc_member(&d, cl.id)->classic);
    assert_false(desc_member(&d, "modern-a")->classic);
    /* it goes on with its generation; its session is its own 10 s from the load */
    assert_int_equal(classic_hb(l, 1001, &cl), KAFKA_NONE);
    assert_int_equal(classic_sync(l, 1002, &cl), KAFKA_NONE);
    assert_int_equal(lm_cgroup_next_deadline_ms(l), 11002);
    lm_cgroup_coord_free(l);
    lm_cgroup_coord_free(c);
}

/* ---- migration ---- */

struct exported {
    struct buf subs[3];
    struct buf asgs[3];
    struct lm_group_protocol protos[3];
    struct lm_group_export_member ms[3];
    struct lm_group_export ex;
};

/* Assignment of "t" partitions parts[0..n) (v1) into w. */
static struct kafka_bytes assignment_of(struct buf *w, const int32_t *parts, int n)
{
    struct lm_cproto_tp tps[8];
    for (int i = 0; i < n; i++)
        tps[i] = (struct lm_cproto_tp){S("t"), parts[i]};
    struct kafka_writer kw;
    kafka_writer_init(&kw, w->b, sizeof(w->b));
    assert_int_equal(lm_cproto_assignment_encode(&kw, 1, n, tps), 0);
    w->n = kw.pos;
    return (struct kafka_bytes){w->b, (int32_t)w->n};
}

/* A classic group "g" at generation 5: "c1" holds t-0, t-1, "c2" t-2, t-3. */
static void classic_export(struct exported *e)
{
    static const int32_t p1[] = {0, 1}, p2[] = {2, 3};
    static const char *const ids[] = {"c1", "c2"};
    for (int i = 0; i < 2; i++) {
        e->protos[i] =
            (struct lm_group_protocol){S("range"), subscription(&e->subs[i], 1, NULL, 0)};
        e->ms[i] = (struct lm_group_export_member){
            .member_id = S(ids[i]),
            .instance_id = KAFKA_STR_NULL,
            .client_id = S("classic-client"),
            .client_host = S("/127.0.0.1"),
            .session_timeout_ms = 10000,
            .rebalance_timeout_ms = 30000,
            .n_protocols = 1,
            .protocols = &e->protos[i],
            .subscription = e->protos[i].metadata,
            .assignment = assignment_of(&e->asgs[i], i == 0 ? p1 : p2, 2),
        };
    }
    e->ex = (struct lm_group_export){S("g"), 5, 2, e->ms, false};
}

/* A classic group becomes a consumer group keeping its members, their assignments and its
 * generation; a modern member joining takes partitions from them once they rejoined. */
static void test_upgrade(void **state)
{
    (void)state;
    struct lm_cgroup_coord *c = coord_new();
    struct exported e;
    classic_export(&e);
    assert_null(lm_cgroup_upgrade_refusal(c, 2, S("consumer")));
    assert_string_equal(lm_cgroup_upgrade_refusal(c, 2, S("connect")),
                        "the group does not use the consumer embedded protocol");
    assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), 0);
    assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), LM_E_EXISTS);
    const struct lm_cgroup_record *r;
    /* 2 member metadata, group epoch, 2 targets, target epoch, 2 current assignments */
    size_t nr = lm_cgroup_records(c, &r);
    assert_int_equal(nr, 8);
    static const int16_t types[] = {5, 5, 3, 7, 7, 6, 8, 8};
    for (size_t i = 0; i < nr; i++)
        assert_int_equal(lm_cgr_key_type(r[i].key.ptr, (size_t)r[i].key.len), types[i]);
    /* loaded back, it is the same group */
    struct lm_cgroup_coord *l = coord_new();
    for (size_t i = 0; i < nr; i++)
        assert_int_equal(lm_cgroup_replay(l, 0, 1, r[i].key, r[i].value, NULL), 0);
    assert_int_equal(lm_cgroup_load_end(l, 0, 0, NULL, NULL), 0);
    lm_cgroup_records_advance(c);
    struct lm_cgroup_coord *both[2] = {c, l};
    for (int k = 0; k < 2; k++) {
        struct lm_cgroup_desc d;
        assert_int_equal(lm_cgroup_describe(both[k], &IMG, S("g"), &d), 0);
        assert_string_equal(d.state, "Stable");
        assert_int_equal(d.group_epoch, 5);
        assert_int_equal(d.assignment_epoch, 5);
        assert_int_equal(d.n_members, 2);
        const struct lm_cgroup_desc_member *m1 = desc_member(&d, "c1");
        assert_true(m1->classic);
        assert_int_equal(m1->member_epoch, 5);
        assert_int_equal(m1->n_assigned, 2);
        assert_int_equal(m1->assigned[1].partition, 1);
        assert_int_equal(m1->n_target, 2);
    }
    lm_cgroup_coord_free(l);

    struct classic c1 = {.id = "c1", .generation = 5, .n_own = 2, .own = {0, 1}};
    struct classic c2 = {.id = "c2", .generation = 5, .n_own = 2, .own = {2, 3}};
    assert_int_equal(classic_hb(c, 10, &c1), KAFKA_NONE);
    assert_int_equal(classic_sync(c, 11, &c1), KAFKA_NONE);
    assert_int_equal(c1.n_own, 2);
    struct modern m = {.id = "modern-a"};
    assert_int_equal(modern_hb(c, 20, &m), KAFKA_NONE);
    assert_int_equal(m.epoch, 6);
    assert_int_equal(m.n_own, 0);
    /* the classic members rejoin (eager: owning nothing) and the modern one gets its share */
    struct classic *cls[2] = {&c1, &c2};
    for (int i = 0; i < 2; i++) {
        assert_int_equal(classic_hb(c, 30, cls[i]), KAFKA_REBALANCE_IN_PROGRESS);
        cls[i]->n_own = 0;
        struct lm_group_join_resp j = classic_join(c, 31, cls[i]);
        assert_int_equal(j.error_code, KAFKA_NONE);
        assert_int_equal(j.generation_id, 6);
        assert_int_equal(classic_sync(c, 32, cls[i]), KAFKA_NONE);
    }
    assert_int_equal(modern_hb(c, 40, &m), KAFKA_NONE);
    assert_true(m.n_own >= 1);
    int seen[4] = {0};
    for (int i = 0; i < c1.n_own; i++)
        seen[c1.own[i]]++;
    for (int i = 0; i < c2.n_own; i++)
        seen[c2.own[i]]++;
    for (int32_t i = 0; i < m.n_own; i++)
        seen[m.own[i].partition]++;
    for (int p = 0; p < 4; p++)
        assert_int_equal(seen[p], 1);
    lm_cgroup_coord_free(c);

    /* a subscription that does not parse: no upgrade, nothing written */
    c = coord_new();
    e.ms[1].subscription = (struct kafka_bytes){(const uint8_t *)"\0", 1};
    assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), LM_E_INVALID);
    assert_false(lm_cgroup_exists(c, S("g"), NULL));
    assert_int_equal(lm_cgroup_records(c, &r), 0);
    lm_cgroup_coord_free(c);
    /* an assignment with user data (a custom assignor's): Kafka 4.1 refuses to drop it */
    c = coord_new();
    classic_export(&e);
    struct buf ud;
    memcpy(ud.b, e.asgs[0].b, e.asgs[0].n - 4);
    ud.n = e.asgs[0].n - 4;
    put32(&ud, 2);
    put16(&ud, 0x0101);
    e.ms[0].assignment = (struct kafka_bytes){ud.b, (int32_t)ud.n};
    assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), LM_E_UNSUPPORTED);
    assert_false(lm_cgroup_exists(c, S("g"), NULL));
    lm_cgroup_coord_free(c);
    /* the policy and group.consumer.max.size */
    struct lm_cgroup_config cfg;
    lm_cgroup_config_default(&cfg);
    cfg.migration = LM_CGROUP_MIGRATION_DOWNGRADE;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    assert_string_equal(lm_cgroup_upgrade_refusal(c, 2, S("consumer")),
                        "online upgrade is disabled");
    lm_cgroup_coord_free(c);
    cfg.migration = LM_CGROUP_MIGRATION_UPGRADE;
    cfg.max_size = 1;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    assert_string_equal(lm_cgroup_upgrade_refusal(c, 2, S("consumer")),
                        "the group size exceeds the consumer group maximum size");
    assert_null(lm_cgroup_upgrade_refusal(c, 1, S("consumer")));
    lm_cgroup_coord_free(c);
}

/* An upgraded group with one modern member; the modern member leaving (or fenced) makes it a
 * classic group again, unless the policy forbids it. */
static struct lm_cgroup_coord *mixed_group(enum lm_cgroup_migration policy, struct modern *m)
{
    struct lm_cgroup_config cfg;
    lm_cgroup_config_default(&cfg);
    cfg.migration = policy;
    struct lm_cgroup_coord *c;
    assert_int_equal(lm_cgroup_coord_new(&cfg, &c), 0);
    struct exported e;
    classic_export(&e);
    assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), 0);
    *m = (struct modern){.id = "modern-a"};
    assert_int_equal(modern_hb(c, 10, m), KAFKA_NONE);
    lm_cgroup_records_advance(c);
    return c;
}

static void test_downgrade(void **state)
{
    (void)state;
    struct modern m;
    struct lm_cgroup_coord *c = mixed_group(LM_CGROUP_MIGRATION_BIDIRECTIONAL, &m);
    m.epoch = LM_CGROUP_LEAVE_EPOCH;
    assert_int_equal(modern_hb(c, 20, &m), KAFKA_NONE);
    assert_false(lm_cgroup_exists(c, S("g"), NULL));
    /* every record of the group got its tombstone: 3 members x 3, then 6, 4, 3 */
    const struct lm_cgroup_record *r;
    size_t nr = lm_cgroup_records(c, &r);
    assert_int_equal(nr, 12);
    for (size_t i = 0; i < nr; i++)
        assert_int_equal(r[i].value.len, -1);
    assert_int_equal(lm_cgr_key_type(r[nr - 1].key.ptr, (size_t)r[nr - 1].key.len), 3);
    lm_cgroup_records_advance(c);

    struct lm_group_export ex;
    assert_true(lm_cgroup_downgrade_take(c, &IMG, &ex));
    assert_true(kafka_str_eq(ex.group_id, S("g")));
    assert_true(ex.rebalance);
    assert_int_equal(ex.generation, 6);
    assert_int_equal(ex.n_members, 2);
    int32_t parts[8];
    int total = 0;
    for (int32_t i = 0; i < ex.n_members; i++) {
        assert_int_equal(ex.members[i].session_timeout_ms, 10000);
        assert_int_equal(ex.members[i].rebalance_timeout_ms, 30000);
        assert_int_equal(ex.members[i].n_protocols, 1);
        assert_true(kafka_str_eq(ex.members[i].protocols[0].name, S("range")));
        int n = assigned_of(ex.members[i].assignment, parts);
        assert_true(n >= 1);
        total += n;
    }
    assert_int_equal(total, 3); /* the target: the modern member had one */

    /* the classic coordinator takes it: Stable at the generation, then rebalancing */
    struct lm_group_config gcfg;
    lm_group_config_default(&gcfg);
    struct lm_group_coord *gc;
    assert_int_equal(lm_group_coord_new(&gcfg, &gc), 0);
    assert_int_equal(lm_group_convert_in(gc, 30, &ex), 0);
    assert_false(lm_cgroup_downgrade_take(c, &IMG, &ex));
    struct lm_group_info info;
    assert_int_equal(lm_group_coord_info(gc, S("g"), &info), 0);
    assert_int_equal(info.state, LM_GROUP_PREPARING_REBALANCE);
    assert_int_equal(info.n_members, 2);
    assert_int_equal(info.generation_id, 6);
    assert_true(kafka_str_eq(info.protocol_name, S("range")));
    struct lm_group_ready rd;
    assert_true(lm_group_coord_ready(gc, &rd));
    assert_int_equal(rd.n_records, 1); /* the group metadata */
    assert_true(rd.records[0].value.len > 0);
    lm_group_coord_advance(gc);
    struct lm_group_heartbeat_req h = {S("g"), 6, S("c1"), KAFKA_STR_NULL};
    assert_int_equal(lm_group_heartbeat(gc, 31, 7, &h), 0);
    assert_true(lm_group_coord_ready(gc, &rd));
    assert_int_equal(rd.n_resps, 1);
    assert_int_equal(rd.resps[0].u.heartbeat.error_code, KAFKA_REBALANCE_IN_PROGRESS);
    lm_group_coord_advance(gc);

    /* and back: exported, its members leave for a consumer group, its offsets-only group
     * stays with a tombstone for its metadata */
    struct lm_group_export back;
    assert_int_equal(lm_group_export(gc, S("g"), &back), 0);
    assert_int_equal(back.n_members, 2);
    assert_int_equal(back.generation, 6);
    assert_true(kafka_str_eq(back.members[0].member_id, S("c1")) ||
                kafka_str_eq(back.members[1].member_id, S("c1")));
    assert_int_equal(lm_group_convert_out(gc, 40, S("g")), 0);
    assert_int_equal(lm_group_coord_info(gc, S("g"), &info), 0);
    assert_int_equal(info.n_members, 0);
    assert_int_equal(info.state, LM_GROUP_EMPTY);
    assert_int_equal(lm_group_export(gc, S("g"), &back), LM_E_NOT_FOUND);
    assert_true(lm_group_coord_ready(gc, &rd));
    assert_int_equal(rd.n_records, 1);
    assert_int_equal(rd.records[0].value.len, -1);
    lm_group_coord_advance(gc);
    lm_group_coord_free(gc);
    lm_cgroup_coord_free(c);

    /* without the downgrade in the policy the group stays a consumer group */
    c = mixed_group(LM_CGROUP_MIGRATION_UPGRADE, &m);
    m.epoch = LM_CGROUP_LEAVE_EPOCH;
    assert_int_equal(modern_hb(c, 20, &m), KAFKA_NONE);
    int32_t n = 0;
    assert_true(lm_cgroup_exists(c, S("g"), &n));
    assert_int_equal(n, 2);
    assert_false(lm_cgroup_downgrade_take(c, &IMG, &ex));
    lm_cgroup_coord_free(c);

    /* Kafka 4.1: a classic member leaving a group left with classic members only downgrades
     * it as well (an upgraded group no consumer-protocol member joined) */
    {
        struct exported e;
        classic_export(&e);
        c = coord_new();
        assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), 0);
        struct lm_group_leave_member lv2 = {S("c2"), KAFKA_STR_NULL};
        struct lm_group_leave_req l2 = {S("g"), 1, &lv2};
        struct lm_group_leave_resp lo2;
        assert_int_equal(lm_cgroup_classic_leave(c, 20, &l2, &lo2), 0);
        assert_int_equal(lo2.members[0].error_code, KAFKA_NONE);
        assert_false(lm_cgroup_exists(c, S("g"), NULL));
        assert_true(lm_cgroup_downgrade_take(c, &IMG, &ex));
        assert_int_equal(ex.n_members, 1);
        assert_int_equal(ex.generation, 5);
        assert_true(kafka_str_eq(ex.members[0].member_id, S("c1")));
        lm_cgroup_coord_free(c);
    }

    /* a classic static member taking the place of the last consumer-protocol member (a
     * static one that left for a while) downgrades it; it rebalances only when the
     * subscription changed */
    for (int changed = 0; changed < 2; changed++) {
        struct exported e;
        classic_export(&e);
        c = coord_new();
        assert_int_equal(lm_cgroup_upgrade(c, 0, 0, &IMG, &e.ex), 0);
        struct kafka_str names[1] = {S("t")};
        struct lm_cgroup_hb_req hb = {.group_id = S("g"),
                                      .member_id = S("modern-s"),
                                      .member_epoch = 0,
                                      .instance_id = S("i-9"),
                                      .rack_id = KAFKA_STR_NULL,
                                      .rebalance_timeout_ms = 30000,
                                      .n_topic_names = 1,
                                      .topic_names = names,
                                      .topic_regex = KAFKA_STR_NULL,
                                      .server_assignor = KAFKA_STR_NULL,
                                      .n_owned = 0,
                                      .client_id = S("c"),
                                      .client_host = S("/h"),
                                      .version = 1};
        struct lm_cgroup_hb_resp hr;
        assert_int_equal(lm_cgroup_heartbeat(c, 1, 0, &IMG, &hb, &hr), 0);
        assert_int_equal(hr.error_code, KAFKA_NONE);
        hb.member_epoch = LM_CGROUP_STATIC_LEAVE_EPOCH;
        hb.n_topic_names = -1;
        hb.rebalance_timeout_ms = -1;
        hb.n_owned = -1;
        assert_int_equal(lm_cgroup_heartbeat(c, 2, 0, &IMG, &hb, &hr), 0);
        assert_int_equal(hr.error_code, KAFKA_NONE);
        assert_true(lm_cgroup_exists(c, S("g"), NULL));
        assert_false(lm_cgroup_downgrade_take(c, &IMG, &ex));
        struct buf w;
        struct lm_group_protocol p = {S("range"), subscription(&w, 1, NULL, 0)};
        if (changed)
            memcpy(w.b + 8, "u", 1); /* the subscription names "u" instead of "t" */
        struct lm_group_join_req r = {.group_id = S("g"),
                                      .member_id = S(""),
                                      .group_instance_id = S("i-9"),
                                      .protocol_type = S("consumer"),
                                      .client_id = S("c"),
                                      .client_host = S("/h"),
                                      .session_timeout_ms = 10000,
                                      .rebalance_timeout_ms = 30000,
                                      .require_known_member_id = true,
                                      .n_protocols = 1,
                                      .protocols = &p};
        struct lm_group_join_resp j;
        assert_int_equal(lm_cgroup_classic_join(c, 3, &IMG, &r, &j), 0);
        assert_int_equal(j.error_code, KAFKA_NONE);
        assert_int_equal(j.generation_id, 6);
        assert_false(lm_cgroup_exists(c, S("g"), NULL));
        assert_true(lm_cgroup_downgrade_take(c, &IMG, &ex));
        assert_int_equal(ex.n_members, 3);
        assert_int_equal(ex.generation, 6);
        assert_int_equal(ex.rebalance, changed == 1);
        lm_cgroup_coord_free(c);
    }

    /* a fenced modern member (session timeout) downgrades it too; a classic member leaving
     * while a modern one stays does not */
    c = mixed_group(LM_CGROUP_MIGRATION_BIDIRECTIONAL, &m);
    struct lm_group_leave_member lv = {S("c2"), KAFKA_STR_NULL};
    struct lm_group_leave_req l = {S("g"), 1, &lv};
    struct lm_group_leave_resp lo;
    assert_int_equal(lm_cgroup_classic_leave(c, 20, &l, &lo), 0);
    assert_false(lm_cgroup_downgrade_take(c, &IMG, &ex));
    /* c1 goes on (rejoining when told); the modern member is silent */
    struct classic c1 = {.id = "c1", .generation = 5};
    for (int64_t t = 1000; t <= 45000; t += 3000) {
        if (classic_hb(c, t, &c1) == KAFKA_REBALANCE_IN_PROGRESS) {
            assert_int_equal(classic_join(c, t, &c1).error_code, KAFKA_NONE);
            assert_int_equal(classic_sync(c, t, &c1), KAFKA_NONE);
        }
        assert_int_equal(lm_cgroup_tick(c, t), 0);
    }
    assert_int_equal(lm_cgroup_tick(c, 45009), 0);
    assert_true(lm_cgroup_exists(c, S("g"), NULL));
    assert_int_equal(lm_cgroup_tick(c, 45010), 0);
    assert_false(lm_cgroup_exists(c, S("g"), NULL));
    assert_true(lm_cgroup_downgrade_take(c, &IMG, &ex));
    assert_int_equal(ex.n_members, 1);
    assert_true(kafka_str_eq(ex.members[0].member_id, S("c1")));
    lm_cgroup_coord_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cproto_codec),
        cmocka_unit_test(test_classic_joins_consumer_group),
        cmocka_unit_test(test_classic_revokes_through_rejoin),
        cmocka_unit_test(test_classic_errors),
        cmocka_unit_test(test_classic_static),
        cmocka_unit_test(test_classic_timeouts),
        cmocka_unit_test(test_classic_records_load),
        cmocka_unit_test(test_upgrade),
        cmocka_unit_test(test_downgrade),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
