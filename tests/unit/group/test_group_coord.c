/* Group coordinator state machine: every transition, timeout and error path, static
 * membership, delayed (parked) responses, offsets, admin APIs, persistence and replay.
 * The fixture keeps a fake __consumer_offsets log of every record the coordinator emitted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/group.h"
#include "broker/group/group_records.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static struct kafka_str S(const char *s) {
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

static struct kafka_str
N(void) {
    return KAFKA_STR_NULL;
}

static bool
seq(struct kafka_str a, const char *b)
{
    return a.len >= 0 && kafka_str_eq(a, S(b));
}

/* ---- fixture ---- */

#define LOG_MAX 4096

struct logrec {
    int32_t partition;
    struct kafka_bytes key, value;
};

static struct {
    struct lm_group_coord *c;
    struct lm_group_config cfg;
    int64_t now;
    struct logrec log[LOG_MAX];
    size_t n_log;
    size_t n_records_last; /* records in the last ready looked at */
} F;

static void log_clear(void)
{
    for (size_t i = 0; i < F.n_log; i++) {
        free((void *)F.log[i].key.ptr);
        free((void *)F.log[i].value.ptr);
    }
    F.n_log = 0;
}

static int setup_cfg(void **st, int32_t initial_delay_ms, int32_t max_size)
{
    (void)st;
    memset(&F, 0, sizeof(F));
    lm_group_config_default(&F.cfg);
    F.cfg.initial_rebalance_delay_ms = initial_delay_ms;
    F.cfg.max_size = max_size;
    F.cfg.rand_seed = 42;
    F.now = 1000000;
    return lm_group_coord_new(&F.cfg, &F.c);
}

static int setup(void **st)
{
    return setup_cfg(st, 0, INT32_MAX);
}

static int setup_delay(void **st)
{
    return setup_cfg(st, 3000, INT32_MAX);
}

static int setup_max2(void **st)
{
    return setup_cfg(st, 0, 2);
}

static int teardown(void **st)
{
    (void)st;
    lm_group_coord_free(F.c);
    log_clear();
    return 0;
}

static struct kafka_bytes dupb(struct kafka_bytes b)
{
    if (b.len < 0)
        return KAFKA_BYTES_NULL;
    uint8_t *p = malloc((size_t)b.len + 1);
    memcpy(p, b.ptr, (size_t)b.len);
    return (struct kafka_bytes){p, b.len};
}

/* flush: "append" the ready's records to the fake log, then advance. */
static void flush(void)
{
    struct lm_group_ready rd;
    lm_group_coord_ready(F.c, &rd);
    for (size_t i = 0; i < rd.n_records; i++) {
        assert_true(F.n_log < LOG_MAX);
        F.log[F.n_log].partition = rd.records[i].partition;
        F.log[F.n_log].key = dupb(rd.records[i].key);
        F.log[F.n_log].value = dupb(rd.records[i].value);
        F.n_log++;
    }
    lm_group_coord_advance(F.c);
}

static const struct lm_group_resp *resp(uint64_t token)
{
    struct lm_group_ready rd;
    lm_group_coord_ready(F.c, &rd);
    F.n_records_last = rd.n_records;
    const struct lm_group_resp *found = NULL;
    for (size_t i = 0; i < rd.n_resps; i++) {
        if (rd.resps[i].token == token) {
            assert_null(found); /* exactly one response per request */
            found = &rd.resps[i];
        }
    }
    return found;
}

static size_t n_resps(void)
{
    struct lm_group_ready rd;
    lm_group_coord_ready(F.c, &rd);
    return rd.n_resps;
}

static size_t n_records(void)
{
    struct lm_group_ready rd;
    lm_group_coord_ready(F.c, &rd);
    return rd.n_records;
}

static void tick(int64_t ms)
{
    F.now += ms;
    assert_int_equal(lm_group_coord_tick(F.c, F.now), 0);
}

static struct lm_group_info info(const char *g)
{
    struct lm_group_info i;
    assert_int_equal(lm_group_coord_info(F.c, S(g), &i), 0);
    return i;
}

/* consumer protocol subscription v0 for a comma-separated topic list */
static size_t sub_bytes(const char *topics, uint8_t *buf)
{
    size_t n = 0;
    buf[n++] = 0;
    buf[n++] = 0;
    size_t count_at = n;
    n += 4;
    uint32_t count = 0;
    const char *p = topics;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t l = e ? (size_t)(e - p) : strlen(p);
        buf[n++] = (uint8_t)(l >> 8);
        buf[n++] = (uint8_t)l;
        memcpy(buf + n, p, l);
        n += l;
        count++;
        p += l + (e ? 1 : 0);
    }
    buf[count_at] = 0, buf[count_at + 1] = 0, buf[count_at + 2] = 0,
    buf[count_at + 3] = (uint8_t)count;
    memset(buf + n, 0xff, 4); /* null user data */
    return n + 4;
}

struct jo {
    const char *group;
    const char *member;    /* NULL: "" */
    const char *instance;  /* NULL: null */
    const char *ptype;     /* NULL: "consumer" */
    const char *protocols; /* NULL: "range" */
    const char *topics;    /* NULL: "t1" */
    int32_t session_ms;    /* 0: 10000 */
    int32_t rebalance_ms;  /* 0: 20000 */
    bool old_version;      /* true: v0-3 (no MEMBER_ID_REQUIRED round trip) */
    const char *client;    /* NULL: "cli" */
};

static void join(uint64_t tok, struct jo o)
{
    struct lm_group_protocol protos[4];
    static uint8_t meta[4][256];
    char names[256];
    snprintf(names, sizeof(names), "%s", o.protocols ? o.protocols : "range");
    int n = 0;
    for (char *save = NULL, *t = strtok_r(names, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        size_t ml = sub_bytes(o.topics ? o.topics : "t1", meta[n]);
        protos[n].name = S(t);
        protos[n].metadata = (struct kafka_bytes){meta[n], (int32_t)ml};
        n++;
    }
    struct lm_group_join_req r = {
        .group_id = S(o.group ? o.group : "g"),
        .member_id = S(o.member ? o.member : ""),
        .group_instance_id = o.instance ? S(o.instance) : N(),
        .protocol_type = S(o.ptype ? o.ptype : "consumer"),
        .client_id = S(o.client ? o.client : "cli"),
        .client_host = S("/127.0.0.1"),
        .session_timeout_ms = o.session_ms ? o.session_ms : 10000,
        .rebalance_timeout_ms = o.rebalance_ms ? o.rebalance_ms : 20000,
        .require_known_member_id = !o.old_version,
        .n_protocols = n,
        .protocols = protos,
    };
    assert_int_equal(lm_group_join(F.c, F.now, tok, &r), 0);
}

static int16_t join_err(uint64_t tok)
{
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    assert_int_equal(r->kind, LM_GROUP_RESP_JOIN);
    return r->u.join.error_code;
}

/* copy of a join response's member id (valid until the next join_mid call for the slot) */
static char *join_mid(uint64_t tok, char *out)
{
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    memcpy(out, r->u.join.member_id.ptr, (size_t)r->u.join.member_id.len);
    out[r->u.join.member_id.len] = 0;
    return out;
}

static void sync_req(uint64_t tok, const char *g, int32_t gen, const char *member,
                     const char *instance, int n, const char *const *ids, const char *const *asg)
{
    struct lm_group_assignment as[8];
    for (int i = 0; i < n; i++) {
        as[i].member_id = S(ids[i]);
        as[i].assignment = (struct kafka_bytes){(const uint8_t *)asg[i], (int32_t)strlen(asg[i])};
    }
    struct lm_group_sync_req r = {.group_id = S(g),
                                  .generation_id = gen,
                                  .member_id = S(member),
                                  .group_instance_id = instance ? S(instance) : N(),
                                  .protocol_type = N(),
                                  .protocol_name = N(),
                                  .n_assignments = n,
                                  .assignments = as};
    assert_int_equal(lm_group_sync(F.c, F.now, tok, &r), 0);
}

static int16_t sync_err(uint64_t tok)
{
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    assert_int_equal(r->kind, LM_GROUP_RESP_SYNC);
    return r->u.sync.error_code;
}

static bool sync_asg(uint64_t tok, const char *want)
{
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    return r->u.sync.error_code == 0 && r->u.sync.assignment.len == (int32_t)strlen(want) &&
           memcmp(r->u.sync.assignment.ptr, want, strlen(want)) == 0;
}

static int16_t hb(uint64_t tok, const char *g, int32_t gen, const char *member,
                  const char *instance)
{
    struct lm_group_heartbeat_req r = {.group_id = S(g),
                                       .generation_id = gen,
                                       .member_id = S(member),
                                       .group_instance_id = instance ? S(instance) : N()};
    assert_int_equal(lm_group_heartbeat(F.c, F.now, tok, &r), 0);
    const struct lm_group_resp *x = resp(tok);
    assert_non_null(x);
    assert_int_equal(x->kind, LM_GROUP_RESP_HEARTBEAT);
    int16_t e = x->u.heartbeat.error_code;
    return e;
}

static int16_t leave1(uint64_t tok, const char *g, const char *member, const char *instance)
{
    struct lm_group_leave_member m = {.member_id = S(member),
                                      .group_instance_id = instance ? S(instance) : N()};
    struct lm_group_leave_req r = {.group_id = S(g), .n_members = 1, .members = &m};
    assert_int_equal(lm_group_leave(F.c, F.now, tok, &r), 0);
    const struct lm_group_resp *x = resp(tok);
    assert_non_null(x);
    if (x->u.leave.error_code)
        return x->u.leave.error_code;
    assert_int_equal(x->u.leave.n_members, 1);
    return x->u.leave.members[0].error_code;
}

/* one dynamic member through the KIP-394 round trip; returns its id in out */
static void join_new(uint64_t tok, struct jo o, char *out)
{
    join(tok, o);
    assert_int_equal(join_err(tok), KAFKA_MEMBER_ID_REQUIRED);
    join_mid(tok, out);
    flush();
    o.member = out;
    join(tok + 1, o);
}

/* A one-member group, Stable, generation 1, assignment "A". */
static void one_member_stable(const char *g, char *m1)
{
    join_new(1, (struct jo){.group = g}, m1);
    assert_int_equal(join_err(2), 0);
    flush();
    const char *ids[] = {m1}, *as[] = {"A"};
    sync_req(3, g, 1, m1, NULL, 1, ids, as);
    assert_true(sync_asg(3, "A"));
    flush();
    assert_int_equal(info(g).state, LM_GROUP_STABLE);
}

/* After one_member_stable: m2 joins, m1 rejoins and, as leader, assigns a1 to itself and a2 to
 * m2 (generation 2, both synced). o names the group and the join options of both members. */
static void two_members_stable(struct jo o, char *m1, char *m2, const char *a1, const char *a2)
{
    one_member_stable(o.group, m1);
    join_new(10, o, m2);
    flush();
    o.member = m1;
    join(12, o);
    flush();
    const char *ids[] = {m1, m2}, *as[] = {a1, a2};
    sync_req(13, o.group, 2, m1, NULL, 2, ids, as);
    sync_req(14, o.group, 2, m2, NULL, 0, NULL, NULL);
    flush();
}

/* ---- tests ---- */

static void test_member_id_required_round_trip(void **st)
{
    (void)st;
    char m1[128];
    join((uint64_t)1, (struct jo){.group = "g", .client = "app"});
    const struct lm_group_resp *r = resp(1);
    assert_non_null(r);
    assert_int_equal(r->u.join.error_code, KAFKA_MEMBER_ID_REQUIRED);
    assert_int_equal(r->u.join.generation_id, -1);
    /* Kafka's member id shape: client id, '-', a UUID */
    assert_int_equal(r->u.join.member_id.len, 3 + 1 + 36);
    assert_memory_equal(r->u.join.member_id.ptr, "app-", 4);
    join_mid(1, m1);
    assert_int_equal(n_records(), 0);
    flush();
    struct lm_group_info i = info("g");
    assert_int_equal(i.state, LM_GROUP_EMPTY);
    assert_int_equal(i.n_pending_members, 1);
    assert_int_equal(i.n_members, 0);
    /* rejoin with the id: with no initial delay the rebalance completes at once */
    join(2, (struct jo){.group = "g", .member = m1, .client = "app"});
    r = resp(2);
    assert_non_null(r);
    assert_int_equal(r->u.join.error_code, 0);
    assert_int_equal(r->u.join.generation_id, 1);
    assert_true(seq(r->u.join.member_id, m1));
    assert_true(seq(r->u.join.leader, m1));
    assert_true(seq(r->u.join.protocol_name, "range"));
    assert_true(seq(r->u.join.protocol_type, "consumer"));
    assert_int_equal(r->u.join.n_members, 1);
    assert_true(seq(r->u.join.members[0].member_id, m1));
    flush();
    i = info("g");
    assert_int_equal(i.state, LM_GROUP_COMPLETING_REBALANCE);
    assert_int_equal(i.n_pending_members, 0);
    /* an unknown member id is refused, a v0-3 join gets an id without the round trip */
    join(3, (struct jo){.group = "g", .member = "nobody"});
    assert_int_equal(join_err(3), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
    join(4, (struct jo){.group = "g2", .old_version = true});
    assert_int_equal(join_err(4), 0);
    flush();
}

static void test_single_member_full_cycle(void **st)
{
    (void)st;
    char m1[128];
    join_new(1, (struct jo){.group = "g"}, m1);
    assert_int_equal(join_err(2), 0);
    assert_int_equal(n_records(), 0); /* a join alone persists nothing */
    flush();
    assert_int_equal(hb(5, "g", 1, m1, NULL), 0); /* heartbeats fine while completing */
    flush();
    const char *ids[] = {m1, "stranger"}, *as[] = {"A", "X"};
    sync_req(3, "g", 1, m1, NULL, 2, ids, as);
    assert_true(sync_asg(3, "A"));
    assert_int_equal(n_records(), 1); /* group metadata, to append before the response */
    flush();
    struct lm_group_info i = info("g");
    assert_int_equal(i.state, LM_GROUP_STABLE);
    assert_int_equal(i.generation_id, 1);
    /* the persisted record decodes to the group */
    struct logrec *lr = &F.log[F.n_log - 1];
    assert_int_equal(lr->partition, lm_group_partition_of(F.c, S("g")));
    struct kafka_arena a;
    kafka_arena_init(&a, 1 << 16);
    struct lm_gr_group_value v;
    assert_int_equal(lm_gr_group_value_decode(lr->value.ptr, (size_t)lr->value.len, &a, &v), 0);
    assert_int_equal(v.generation, 1);
    assert_true(seq(v.protocol, "range"));
    assert_true(seq(v.leader, m1));
    assert_int_equal(v.n_members, 1);
    assert_true(seq(v.members[0].client_host, "/127.0.0.1"));
    assert_int_equal(v.members[0].session_timeout_ms, 10000);
    assert_int_equal(v.members[0].rebalance_timeout_ms, 20000);
    assert_int_equal(v.members[0].assignment.len, 1);
    kafka_arena_deinit(&a);
    /* a Stable group answers a repeated SyncGroup with the assignment at once */
    sync_req(4, "g", 1, m1, NULL, 0, NULL, NULL);
    assert_true(sync_asg(4, "A"));
    flush();
    /* a follower-style rejoin with unchanged metadata gets the current generation back;
     * the leader's rejoin forces a rebalance */
    join(6, (struct jo){.group = "g", .member = m1});
    assert_int_equal(join_err(6), 0);
    assert_int_equal(resp(6)->u.join.generation_id, 2);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_COMPLETING_REBALANCE);
    /* leaving empties the group: generation bump, Empty record */
    assert_int_equal(leave1(7, "g", m1, NULL), 0);
    flush();
    i = info("g");
    assert_int_equal(i.state, LM_GROUP_EMPTY);
    assert_int_equal(i.generation_id, 3);
    assert_int_equal(i.n_members, 0);
    assert_int_equal(i.protocol_name.len, -1);
}

static void test_multi_member_join_released_together(void **st)
{
    (void)st;
    char m1[128], m2[128];
    one_member_stable("g", m1);
    /* a second member joins; the first gets REBALANCE_IN_PROGRESS on its heartbeat and
     * rejoins; the second must never see UNKNOWN_MEMBER_ID (the Tansu bug) */
    join_new(10, (struct jo){.group = "g", .client = "second"}, m2);
    assert_null(resp(11)); /* parked */
    flush();
    assert_int_equal(info("g").state, LM_GROUP_PREPARING_REBALANCE);
    assert_int_equal(hb(12, "g", 1, m1, NULL), KAFKA_REBALANCE_IN_PROGRESS);
    flush();
    /* a third consumer arriving now goes through the round trip too and is waited for */
    char m3[128];
    join((uint64_t)20, (struct jo){.group = "g", .client = "third"});
    assert_int_equal(join_err(20), KAFKA_MEMBER_ID_REQUIRED);
    join_mid(20, m3);
    flush();
    join(13, (struct jo){.group = "g", .member = m1});
    assert_int_equal(n_resps(), 0); /* m3 is pending: the join waits for it */
    flush();
    join(21, (struct jo){.group = "g", .member = m3, .client = "third"});
    /* all three parked joins come out in one ready */
    assert_int_equal(n_resps(), 3);
    const struct lm_group_resp *r1 = resp(13), *r2 = resp(11), *r3 = resp(21);
    assert_non_null(r1);
    assert_non_null(r2);
    assert_non_null(r3);
    assert_int_equal(r1->u.join.error_code, 0);
    assert_int_equal(r2->u.join.error_code, 0);
    assert_int_equal(r3->u.join.error_code, 0);
    assert_int_equal(r1->u.join.generation_id, 2);
    assert_int_equal(r2->u.join.generation_id, 2);
    assert_true(seq(r2->u.join.leader, m1));
    assert_int_equal(r1->u.join.n_members, 3); /* leader sees everyone */
    assert_int_equal(r2->u.join.n_members, 0);
    assert_int_equal(r3->u.join.n_members, 0);
    flush();
    /* followers' SyncGroups park until the leader's arrives */
    sync_req(30, "g", 2, m2, NULL, 0, NULL, NULL);
    sync_req(31, "g", 2, m3, NULL, 0, NULL, NULL);
    assert_int_equal(n_resps(), 0);
    assert_int_equal(info("g").n_awaiting_sync, 2);
    const char *ids[] = {m1, m2}, *as[] = {"a1", "a2"}; /* m3 left out: empty assignment */
    sync_req(32, "g", 2, m1, NULL, 2, ids, as);
    assert_int_equal(n_resps(), 3);
    assert_true(sync_asg(32, "a1"));
    assert_true(sync_asg(30, "a2"));
    assert_true(sync_asg(31, ""));
    assert_int_equal(n_records(), 1);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_STABLE);
    assert_int_equal(info("g").n_members, 3);
}

static void test_initial_rebalance_delay(void **st)
{
    (void)st;
    /* KIP-134: a new group waits 3 s, extended by 3 s while members keep arriving, bounded by
     * the rebalance timeout (here 10 s: at most 3 + 3 + 3 + 1) */
    char ids[5][128];
    join_new(1, (struct jo){.group = "g", .rebalance_ms = 10000}, ids[0]);
    assert_null(resp(2));
    flush();
    assert_int_equal(info("g").state, LM_GROUP_PREPARING_REBALANCE);
    tick(0); /* the first tick schedules the offset retention check */
    assert_int_equal(lm_group_coord_next_deadline_ms(F.c), F.now + 3000);
    tick(2999);
    assert_int_equal(n_resps(), 0);
    join_new(10, (struct jo){.group = "g", .rebalance_ms = 10000}, ids[1]);
    flush();
    tick(1); /* the first delay ends with a new member: extended by 3 s */
    assert_int_equal(n_resps(), 0);
    tick(2999);
    assert_int_equal(n_resps(), 0);
    tick(1); /* no member came in the second period: complete */
    assert_int_equal(n_resps(), 2);
    assert_int_equal(join_err(2), 0);
    assert_int_equal(join_err(11), 0);
    assert_int_equal(resp(2)->u.join.generation_id, 1);
    flush();

    /* bound: members arriving in every period still complete by the rebalance timeout */
    char x[128];
    join_new(100, (struct jo){.group = "h", .rebalance_ms = 7000}, x);
    flush();
    int64_t start = F.now;
    int k = 0;
    while (n_resps() == 0) {
        assert_true(F.now - start <= 7000);
        if ((F.now - start) % 3000 == 1500) {
            join_new(200 + 2 * (uint64_t)k, (struct jo){.group = "h", .rebalance_ms = 7000}, x);
            k++;
        }
        if (n_resps() == 0)
            tick(500);
    }
    assert_int_equal(F.now - start, 7000); /* 3000 + 3000 + min(3000, 1000) */
    assert_int_equal(info("h").state, LM_GROUP_COMPLETING_REBALANCE);
    assert_int_equal(info("h").n_members, 1 + k);
    flush();
}

static void test_session_timeout_expiry(void **st)
{
    (void)st;
    char m1[128], m2[128];
    two_members_stable((struct jo){.group = "g"}, m1, m2, "a", "b");
    assert_int_equal(info("g").state, LM_GROUP_STABLE);
    /* m1 heartbeats, m2 goes silent: after 10 s m2 is removed and the group rebalances */
    for (int i = 0; i < 3; i++) {
        tick(3000);
        assert_int_equal(hb(20 + (uint64_t)i, "g", 2, m1, NULL), 0);
        flush();
    }
    tick(999);
    assert_int_equal(info("g").n_members, 2);
    tick(1); /* 10 s since m2's last sign of life */
    assert_int_equal(info("g").n_members, 1);
    assert_int_equal(info("g").state, LM_GROUP_PREPARING_REBALANCE);
    assert_int_equal(hb(30, "g", 2, m2, NULL), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(hb(31, "g", 2, m1, NULL), KAFKA_REBALANCE_IN_PROGRESS);
    flush();
    join(32, (struct jo){.group = "g", .member = m1});
    assert_int_equal(join_err(32), 0);
    assert_int_equal(resp(32)->u.join.generation_id, 3);
    flush();
    /* wrong generation */
    assert_int_equal(hb(33, "g", 2, m1, NULL), KAFKA_ILLEGAL_GENERATION);
    assert_int_equal(hb(34, "nogroup", 1, m1, NULL), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
    /* a member that never syncs after its JoinGroup response is removed after the
     * rebalance timeout (pending sync) and the group rebalances to Empty */
    tick(20000);
    assert_int_equal(info("g").n_members, 0);
    assert_int_equal(info("g").state, LM_GROUP_EMPTY);
    flush();
}

static void test_rebalance_timeout_drops_laggards(void **st)
{
    (void)st;
    char m1[128], m2[128], m3[128];
    two_members_stable((struct jo){.group = "g", .rebalance_ms = 5000, .session_ms = 30000}, m1, m2,
                       "a", "b");
    /* m3 joins; m2 rejoins, m1 keeps heartbeating but never rejoins */
    join_new(20, (struct jo){.group = "g", .rebalance_ms = 5000, .session_ms = 30000}, m3);
    flush();
    join(22, (struct jo){.group = "g", .member = m2, .rebalance_ms = 5000, .session_ms = 30000});
    assert_int_equal(n_resps(), 0);
    flush();
    tick(2500);
    assert_int_equal(hb(23, "g", 2, m1, NULL), KAFKA_REBALANCE_IN_PROGRESS);
    flush();
    tick(2499);
    assert_int_equal(n_resps(), 0);
    tick(1); /* rebalance timeout (the members' largest, 5 s) */
    assert_int_equal(n_resps(), 2);
    assert_int_equal(join_err(21), 0);
    assert_int_equal(join_err(22), 0);
    /* the old leader m1 did not rejoin: a joined member leads */
    assert_false(seq(resp(22)->u.join.leader, m1));
    flush();
    assert_int_equal(info("g").n_members, 2);
    assert_int_equal(hb(24, "g", 3, m1, NULL), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
}

static void test_leader_leaves_mid_rebalance(void **st)
{
    (void)st;
    char m1[128], m2[128], m3[128];
    two_members_stable((struct jo){.group = "g"}, m1, m2, "a", "b");
    join_new(20, (struct jo){.group = "g"}, m3);
    flush();
    assert_true(seq(info("g").leader, m1));
    /* the leader leaves while the group is preparing */
    assert_int_equal(leave1(30, "g", m1, NULL), 0);
    assert_true(seq(info("g").leader, m2)); /* handed to the first remaining member */
    flush();
    join(31, (struct jo){.group = "g", .member = m2});
    assert_int_equal(n_resps(), 2); /* m2 and m3 released together */
    assert_true(seq(resp(31)->u.join.leader, m2));
    assert_int_equal(resp(31)->u.join.n_members, 2);
    assert_int_equal(resp(21)->u.join.n_members, 0);
    assert_int_equal(resp(21)->u.join.generation_id, 3);
    flush();
    /* the leader leaving while CompletingRebalance: parked follower syncs get
     * REBALANCE_IN_PROGRESS */
    sync_req(32, "g", 3, m3, NULL, 0, NULL, NULL);
    assert_int_equal(n_resps(), 0);
    assert_int_equal(leave1(33, "g", m2, NULL), 0);
    assert_int_equal(sync_err(32), KAFKA_REBALANCE_IN_PROGRESS);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_PREPARING_REBALANCE);
    assert_true(seq(info("g").leader, m3));
}

static void test_static_membership(void **st)
{
    (void)st;
    char a1[128], b1[128], a2[128];
    /* two static members, Stable */
    join(1, (struct jo){.group = "g", .instance = "ia"});
    assert_int_equal(join_err(1), 0); /* static members skip the KIP-394 round trip */
    join_mid(1, a1);
    assert_memory_equal(a1, "ia-", 3); /* Kafka: instance id + UUID */
    flush();
    assert_int_equal(info("g").state, LM_GROUP_COMPLETING_REBALANCE);
    const char *i1[] = {a1}, *s1[] = {"A"};
    sync_req(2, "g", 1, a1, "ia", 1, i1, s1);
    flush();
    join(3, (struct jo){.group = "g", .instance = "ib"});
    assert_null(resp(3)); /* parked until a1 rejoins */
    flush();
    join(4, (struct jo){.group = "g", .member = a1, .instance = "ia"});
    assert_int_equal(n_resps(), 2);
    join_mid(3, b1);
    flush();
    const char *i2[] = {a1, b1}, *s2[] = {"A2", "B2"};
    sync_req(5, "g", 2, a1, "ia", 2, i2, s2);
    sync_req(6, "g", 2, b1, "ib", 0, NULL, NULL);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_STABLE);

    /* "ia" restarts within the session timeout: joins with no member id, same protocols.
     * It replaces the old id without a rebalance: the answer comes at once, current
     * generation, and the leader named is the OLD id (so it does not re-assign) */
    join(7, (struct jo){.group = "g", .instance = "ia"});
    const struct lm_group_resp *r = resp(7);
    assert_non_null(r);
    assert_int_equal(r->u.join.error_code, 0);
    assert_int_equal(r->u.join.generation_id, 2);
    assert_true(seq(r->u.join.leader, a1));
    join_mid(7, a2);
    assert_string_not_equal(a1, a2);
    assert_int_equal(n_records(), 1); /* the new member id is persisted */
    flush();
    assert_int_equal(info("g").state, LM_GROUP_STABLE);
    assert_int_equal(info("g").generation_id, 2);
    assert_true(seq(info("g").leader, a2)); /* leadership follows the instance */
    /* the new incarnation syncs to its old assignment */
    sync_req(8, "g", 2, a2, "ia", 0, NULL, NULL);
    assert_true(sync_asg(8, "A2"));
    flush();
    /* the old incarnation is fenced everywhere */
    assert_int_equal(hb(9, "g", 2, a1, "ia"), KAFKA_FENCED_INSTANCE_ID);
    sync_req(10, "g", 2, a1, "ia", 0, NULL, NULL);
    assert_int_equal(sync_err(10), KAFKA_FENCED_INSTANCE_ID);
    join(11, (struct jo){.group = "g", .member = a1, .instance = "ia"});
    assert_int_equal(join_err(11), KAFKA_FENCED_INSTANCE_ID);
    struct lm_group_commit_part cp = {
        .partition = 0, .offset = 1, .leader_epoch = -1, .metadata = S("")};
    struct lm_group_commit_topic ct = {.name = S("t1"), .n_partitions = 1, .partitions = &cp};
    struct lm_group_commit_req cr = {.group_id = S("g"),
                                     .generation_id = 2,
                                     .member_id = S(a1),
                                     .group_instance_id = S("ia"),
                                     .retention_ms = -1,
                                     .n_topics = 1,
                                     .topics = &ct};
    assert_int_equal(lm_group_commit(F.c, F.now, 12, &cr), 0);
    assert_int_equal(resp(12)->u.commit.topics[0].partitions[0].error_code,
                     KAFKA_FENCED_INSTANCE_ID);
    assert_int_equal(leave1(13, "g", a1, "ia"), KAFKA_FENCED_INSTANCE_ID);
    /* an unknown instance id with a member id: UNKNOWN_MEMBER_ID */
    join(14, (struct jo){.group = "g", .member = b1, .instance = "zz"});
    assert_int_equal(join_err(14), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_STABLE);

    /* a static rejoin with no protocol in common with the others is refused, as for anyone */
    join(15, (struct jo){.group = "g", .instance = "ib", .protocols = "roundrobin"});
    assert_int_equal(join_err(15), KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_STABLE);
}

static void test_static_rejoin_changes_protocol(void **st)
{
    (void)st;
    char a1[128], b1[128];
    join(1, (struct jo){.group = "g", .instance = "ia", .protocols = "range,roundrobin"});
    join_mid(1, a1);
    flush();
    const char *i1[] = {a1}, *s1[] = {"A"};
    sync_req(2, "g", 1, a1, "ia", 1, i1, s1);
    flush();
    assert_true(seq(info("g").protocol_name, "range"));
    /* the only member restarts preferring roundrobin: the next choice changes -> rebalance */
    join(3, (struct jo){.group = "g", .instance = "ia", .protocols = "roundrobin,range"});
    assert_int_equal(join_err(3), 0);
    join_mid(3, b1);
    assert_int_equal(resp(3)->u.join.generation_id, 2);
    assert_true(seq(resp(3)->u.join.protocol_name, "roundrobin"));
    flush();
    assert_int_equal(hb(4, "g", 2, a1, "ia"), KAFKA_FENCED_INSTANCE_ID);
    flush();
    /* a static member replaced while its SyncGroup is parked: the parked one is fenced */
    sync_req(5, "g", 2, b1, "ia", 0, NULL, NULL); /* b1 is leader: completes at once */
    flush();
    assert_int_equal(info("g").state, LM_GROUP_STABLE);
}

static void test_static_member_parked_join_fenced(void **st)
{
    (void)st;
    char a1[128], b1[128];
    join(1, (struct jo){.group = "g", .instance = "ia"});
    join_mid(1, a1);
    flush();
    const char *i1[] = {a1}, *s1[] = {"A"};
    sync_req(2, "g", 1, a1, "ia", 1, i1, s1);
    flush();
    join(3, (struct jo){.group = "g", .instance = "ib"}); /* rebalance: a1 must rejoin */
    flush();
    join(4, (struct jo){.group = "g", .member = a1, .instance = "ia"});
    join_mid(3, b1);
    flush();                                      /* both released, gen 2, CompletingRebalance */
    sync_req(5, "g", 2, b1, "ib", 0, NULL, NULL); /* follower parks */
    assert_int_equal(n_resps(), 0);
    /* "ia" restarts during CompletingRebalance: Kafka rebalances again */
    join(6, (struct jo){.group = "g", .instance = "ia"});
    assert_null(resp(6)); /* parked in the new rebalance */
    assert_int_equal(sync_err(5), KAFKA_REBALANCE_IN_PROGRESS);
    flush();
    assert_int_equal(info("g").state, LM_GROUP_PREPARING_REBALANCE);
    /* another restart of "ia" while its new join is parked: the parked one is fenced */
    join(7, (struct jo){.group = "g", .instance = "ia"});
    assert_int_equal(join_err(6), KAFKA_FENCED_INSTANCE_ID);
    flush();
    join(8, (struct jo){.group = "g", .member = b1, .instance = "ib"});
    assert_int_equal(n_resps(), 2);
    assert_int_equal(join_err(7), 0);
    assert_int_equal(join_err(8), 0);
    assert_int_equal(resp(8)->u.join.generation_id, 3);
    flush();
}

static void test_protocol_type_and_selection(void **st)
{
    (void)st;
    char m1[128], m2[128], m3[128];
    join_new(1, (struct jo){.group = "g", .protocols = "range,roundrobin"}, m1);
    flush();
    /* different protocol type, or no protocol in common: INCONSISTENT_GROUP_PROTOCOL */
    join(3, (struct jo){.group = "g", .ptype = "connect"});
    assert_int_equal(join_err(3), KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    join(4, (struct jo){.group = "g", .protocols = "sticky"});
    assert_int_equal(join_err(4), KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    join(5, (struct jo){.group = "g2", .protocols = ""});
    assert_int_equal(join_err(5), KAFKA_INCONSISTENT_GROUP_PROTOCOL); /* empty list */
    flush();
    /* votes: m1 prefers range, m2 and m3 prefer roundrobin -> roundrobin */
    join_new(10, (struct jo){.group = "g", .protocols = "roundrobin,range"}, m2);
    flush();
    join_new(20, (struct jo){.group = "g", .protocols = "roundrobin,range,sticky"}, m3);
    flush();
    join(30, (struct jo){.group = "g", .member = m1, .protocols = "range,roundrobin"});
    assert_int_equal(n_resps(), 3);
    assert_true(seq(resp(30)->u.join.protocol_name, "roundrobin"));
    assert_true(seq(resp(21)->u.join.protocol_name, "roundrobin"));
    flush();
    /* SyncGroup v5 protocol name check (KIP-559) */
    struct lm_group_sync_req r = {.group_id = S("g"),
                                  .generation_id = 2,
                                  .member_id = S(m2),
                                  .group_instance_id = N(),
                                  .protocol_type = S("consumer"),
                                  .protocol_name = S("range")};
    assert_int_equal(lm_group_sync(F.c, F.now, 40, &r), 0);
    assert_int_equal(sync_err(40), KAFKA_INCONSISTENT_GROUP_PROTOCOL);
    r.protocol_name = S("roundrobin");
    assert_int_equal(lm_group_sync(F.c, F.now, 41, &r), 0);
    assert_null(resp(41)); /* right names: parked until the leader syncs */
    flush();
}

static void test_group_max_size(void **st)
{
    (void)st;
    char m1[128], m2[128], m3[128];
    join_new(1, (struct jo){.group = "g"}, m1);
    flush();
    join_new(10, (struct jo){.group = "g"}, m2);
    flush();
    assert_int_equal(info("g").n_members, 2);
    /* while preparing, the count is of members that (re)joined: a third new one still gets
     * its member id (Kafka acceptJoiningMember uses numAwaiting) ... */
    join((uint64_t)20, (struct jo){.group = "g"});
    assert_int_equal(join_err(20), KAFKA_MEMBER_ID_REQUIRED);
    join_mid(20, m3);
    flush();
    join(30, (struct jo){.group = "g", .member = m1});
    flush();
    /* ... once both joined (2 awaiting) it is refused, and stays out */
    join(21, (struct jo){.group = "g", .member = m3});
    assert_int_equal(join_err(21), KAFKA_GROUP_MAX_SIZE_REACHED);
    assert_int_equal(resp(21)->u.join.member_id.len, 0);
    flush();
    assert_int_equal(info("g").n_members, 2);
    join(22, (struct jo){.group = "g"});
    assert_int_equal(join_err(22), KAFKA_GROUP_MAX_SIZE_REACHED);
    flush();
    assert_int_equal(info("g").n_members, 2);
}

static void test_request_validation(void **st)
{
    (void)st;
    join(1, (struct jo){.group = "g", .session_ms = 1000});
    assert_int_equal(join_err(1), KAFKA_INVALID_SESSION_TIMEOUT);
    join(2, (struct jo){.group = "g", .session_ms = 1800001});
    assert_int_equal(join_err(2), KAFKA_INVALID_SESSION_TIMEOUT);
    join(3, (struct jo){.group = ""});
    assert_int_equal(join_err(3), KAFKA_INVALID_GROUP_ID);
    join(4, (struct jo){.group = "g", .member = "m-unknown"});
    assert_int_equal(join_err(4), KAFKA_UNKNOWN_MEMBER_ID); /* group does not exist */
    sync_req(5, "g", 1, "m", NULL, 0, NULL, NULL);
    assert_int_equal(sync_err(5), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(leave1(6, "g", "m", NULL), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
    assert_int_equal(lm_group_coord_n_groups(F.c), 0); /* no group made by failed joins */
    /* not the coordinator / loading */
    int32_t p = lm_group_partition_of(F.c, S("g"));
    assert_int_equal(lm_group_coord_unload(F.c, p), 0);
    join(7, (struct jo){.group = "g"});
    assert_int_equal(join_err(7), KAFKA_NOT_COORDINATOR);
    assert_int_equal(hb(8, "g", 1, "m", NULL), KAFKA_NOT_COORDINATOR);
    flush();
    assert_int_equal(lm_group_coord_load_begin(F.c, p), 0);
    join(9, (struct jo){.group = "g"});
    assert_int_equal(join_err(9), KAFKA_COORDINATOR_LOAD_IN_PROGRESS);
    struct lm_group_list_req lr = {0};
    assert_int_equal(lm_group_list(F.c, F.now, 10, &lr), 0);
    assert_int_equal(resp(10)->u.list.error_code, KAFKA_COORDINATOR_LOAD_IN_PROGRESS);
    flush();
    assert_int_equal(lm_group_coord_load_end(F.c, p, F.now), 0);
    join(11, (struct jo){.group = "g"});
    assert_int_equal(join_err(11), KAFKA_MEMBER_ID_REQUIRED);
    flush();
}

static void test_unload_answers_parked(void **st)
{
    (void)st;
    char m1[128], m2[128];
    one_member_stable("g", m1);
    join_new(10, (struct jo){.group = "g"}, m2);
    assert_null(resp(11));
    flush();
    assert_int_equal(lm_group_coord_unload(F.c, lm_group_partition_of(F.c, S("g"))), 0);
    assert_int_equal(join_err(11), KAFKA_NOT_COORDINATOR);
    flush();
    assert_int_equal(lm_group_coord_n_groups(F.c), 0);
}

static void test_pending_member_expires(void **st)
{
    (void)st;
    char m1[128], p[128];
    one_member_stable("g", m1);
    join((uint64_t)10, (struct jo){.group = "g", .session_ms = 8000});
    join_mid(10, p);
    flush();
    /* the pending member never comes back; the group is not rebalancing for it */
    assert_int_equal(info("g").n_pending_members, 1);
    assert_int_equal(info("g").state, LM_GROUP_STABLE);
    tick(4000);
    assert_int_equal(hb(11, "g", 1, m1, NULL), 0);
    flush();
    tick(4000);
    assert_int_equal(info("g").n_pending_members, 0);
    /* and its late join with the expired id is unknown */
    join(12, (struct jo){.group = "g", .member = p});
    assert_int_equal(join_err(12), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
    /* a pending member holds a rebalance until it joins or expires */
    join((uint64_t)20, (struct jo){.group = "g", .session_ms = 8000});
    join_mid(20, p);
    flush();
    join(21, (struct jo){.group = "g", .member = m1}); /* leader rejoin: rebalance */
    assert_int_equal(n_resps(), 0);
    flush();
    tick(8000);
    assert_int_equal(join_err(21), 0); /* released once the pending id expired */
    flush();
    /* LeaveGroup of a pending member id is accepted */
    join((uint64_t)30, (struct jo){.group = "g"});
    join_mid(30, p);
    flush();
    assert_int_equal(leave1(31, "g", p, NULL), 0);
    flush();
    assert_int_equal(info("g").n_pending_members, 0);
}

static void test_new_member_join_timeout(void **st)
{
    (void)st;
    /* a static member that never rejoins keeps the rebalance open; the new member parked in
     * its JoinGroup is dropped after NewMemberJoinTimeoutMs (5 min) */
    char a1[128], n1[128];
    join(1, (struct jo){
                .group = "g", .instance = "ia", .session_ms = 1800000, .rebalance_ms = 1000000});
    join_mid(1, a1);
    flush();
    const char *ids[] = {a1}, *as[] = {"A"};
    sync_req(2, "g", 1, a1, "ia", 1, ids, as);
    flush();
    join_new(3, (struct jo){.group = "g", .rebalance_ms = 1000000}, n1);
    flush();
    for (int i = 0; i < 59; i++) {
        tick(5000);
        hb(100 + (uint64_t)i, "g", 1, a1, "ia");
        flush();
    }
    assert_int_equal(n_resps(), 0);
    tick(5000);
    assert_int_equal(join_err(4), KAFKA_UNKNOWN_MEMBER_ID);
    flush();
    assert_int_equal(info("g").n_members, 1);
}

static void test_leave_batched(void **st)
{
    (void)st;
    char a1[128], b1[128], c1[128];
    join(1, (struct jo){.group = "g", .instance = "ia"});
    join_mid(1, a1);
    flush();
    const char *i1[] = {a1}, *s1[] = {"A"};
    sync_req(2, "g", 1, a1, "ia", 1, i1, s1);
    flush();
    join_new(3, (struct jo){.group = "g"}, b1);
    flush();
    join(5, (struct jo){.group = "g", .member = a1, .instance = "ia"});
    flush();
    join_new(6, (struct jo){.group = "g"}, c1);
    flush();
    /* v3+: one request, several members: by instance id only (admin), by member id, unknown,
     * fenced */
    struct lm_group_leave_member ms[] = {
        {.member_id = S(""), .group_instance_id = S("ia")},
        {.member_id = S(b1), .group_instance_id = N()},
        {.member_id = S("ghost"), .group_instance_id = N()},
        {.member_id = S("other"), .group_instance_id = S("ia")},
        {.member_id = S(""), .group_instance_id = S("nope")},
    };
    struct lm_group_leave_req r = {.group_id = S("g"), .n_members = 5, .members = ms};
    assert_int_equal(lm_group_leave(F.c, F.now, 10, &r), 0);
    const struct lm_group_resp *x = resp(10);
    assert_non_null(x);
    assert_int_equal(x->u.leave.error_code, 0);
    assert_int_equal(x->u.leave.n_members, 5);
    assert_int_equal(x->u.leave.members[0].error_code, 0);
    assert_int_equal(x->u.leave.members[1].error_code, 0);
    assert_int_equal(x->u.leave.members[2].error_code, KAFKA_UNKNOWN_MEMBER_ID);
    /* "ia" is gone by then, so the 4th is unknown rather than fenced */
    assert_int_equal(x->u.leave.members[3].error_code, KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(x->u.leave.members[4].error_code, KAFKA_UNKNOWN_MEMBER_ID);
    assert_true(seq(x->u.leave.members[1].member_id, b1));
    /* only c1 is left: its parked join completes the rebalance */
    assert_int_equal(join_err(7), 0);
    assert_int_equal(resp(7)->u.join.n_members, 1);
    flush();
    struct lm_group_leave_req r2 = {.group_id = S("nogroup"), .n_members = 1, .members = &ms[1]};
    assert_int_equal(lm_group_leave(F.c, F.now, 11, &r2), 0);
    assert_int_equal(resp(11)->u.leave.members[0].error_code, KAFKA_UNKNOWN_MEMBER_ID);
    flush();
}

/* ---- offsets ---- */

static void commit(uint64_t tok, const char *g, int32_t gen, const char *member, const char *topic,
                   int32_t part, int64_t off, const char *md, int64_t ret)
{
    struct lm_group_commit_part cp = {
        .partition = part, .offset = off, .leader_epoch = 3, .metadata = md ? S(md) : N()};
    struct lm_group_commit_topic ct = {.name = S(topic), .n_partitions = 1, .partitions = &cp};
    struct lm_group_commit_req cr = {.group_id = S(g),
                                     .generation_id = gen,
                                     .member_id = S(member),
                                     .group_instance_id = N(),
                                     .retention_ms = ret,
                                     .n_topics = 1,
                                     .topics = &ct};
    assert_int_equal(lm_group_commit(F.c, F.now, tok, &cr), 0);
}

static int16_t commit_err(uint64_t tok)
{
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    assert_int_equal(r->kind, LM_GROUP_RESP_COMMIT);
    assert_int_equal(r->u.commit.n_topics, 1);
    return r->u.commit.topics[0].partitions[0].error_code;
}

static struct lm_group_fetch_part fetch1(uint64_t tok, const char *g, const char *topic,
                                         int32_t part)
{
    struct lm_group_fetch_topic ft = {.name = S(topic), .n_partitions = 1, .partitions = &part};
    struct lm_group_fetch_group fg = {.group_id = S(g), .n_topics = 1, .topics = &ft};
    struct lm_group_fetch_req fr = {.n_groups = 1, .groups = &fg};
    assert_int_equal(lm_group_fetch(F.c, F.now, tok, &fr), 0);
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    return r->u.fetch.groups[0].topics[0].partitions[0];
}

static void test_offset_commit_checks(void **st)
{
    (void)st;
    char m1[128];
    /* simple consumer: generation -1, no member, a new group: allowed, group Empty */
    commit(1, "simple", -1, "", "t", 0, 42, "hello", -1);
    assert_int_equal(commit_err(1), 0);
    assert_int_equal(n_records(), 1);
    flush();
    assert_int_equal(info("simple").state, LM_GROUP_EMPTY);
    assert_int_equal(info("simple").protocol_type.len, -1);
    struct lm_group_fetch_part p = fetch1(2, "simple", "t", 0);
    assert_int_equal(p.offset, 42);
    assert_int_equal(p.leader_epoch, 3);
    assert_true(seq(p.metadata, "hello")); /* metadata round-trips */
    flush();
    /* generation >= 0 for a group we do not know: ILLEGAL_GENERATION */
    commit(3, "unknown", 4, "m", "t", 0, 1, "", -1);
    assert_int_equal(commit_err(3), KAFKA_ILLEGAL_GENERATION);
    flush();
    one_member_stable("g", m1);
    commit(4, "g", 1, m1, "t", 0, 10, NULL, -1);
    assert_int_equal(commit_err(4), 0);
    flush();
    p = fetch1(5, "g", "t", 0);
    assert_int_equal(p.offset, 10);
    assert_true(seq(p.metadata, "")); /* null metadata stored as "" */
    flush();
    commit(6, "g", 0, m1, "t", 0, 11, "", -1);
    assert_int_equal(commit_err(6), KAFKA_ILLEGAL_GENERATION);
    commit(7, "g", 1, "ghost", "t", 0, 11, "", -1);
    assert_int_equal(commit_err(7), KAFKA_UNKNOWN_MEMBER_ID);
    commit(8, "g", -1, "", "t", 0, 11, "", -1); /* simple commit into a group with members */
    assert_int_equal(commit_err(8), KAFKA_UNKNOWN_MEMBER_ID);
    assert_int_equal(n_records(), 0);
    flush();
    /* metadata larger than offset.metadata.max.bytes */
    char big[5000];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    commit(9, "g", 1, m1, "t", 1, 5, big, -1);
    assert_int_equal(commit_err(9), KAFKA_OFFSET_METADATA_TOO_LARGE);
    flush();
    /* during PreparingRebalance commits are allowed; during CompletingRebalance not */
    char m2[128];
    join_new(10, (struct jo){.group = "g"}, m2);
    flush();
    commit(12, "g", 1, m1, "t", 0, 12, "", -1);
    assert_int_equal(commit_err(12), 0);
    flush();
    join(13, (struct jo){.group = "g", .member = m1});
    flush();
    commit(14, "g", 2, m1, "t", 0, 13, "", -1);
    assert_int_equal(commit_err(14), KAFKA_REBALANCE_IN_PROGRESS);
    flush();
    assert_int_equal(fetch1(15, "g", "t", 0).offset, 12);
    assert_int_equal(fetch1(16, "g", "t", 9).offset, -1);    /* never committed */
    assert_int_equal(fetch1(17, "none", "t", 0).offset, -1); /* unknown group: -1, no error */
    assert_int_equal(fetch1(18, "none", "t", 0).error_code, 0);
    flush();
}

static void test_offset_fetch_all_and_multi(void **st)
{
    (void)st;
    commit(1, "a", -1, "", "t2", 1, 21, "x", -1);
    commit(2, "a", -1, "", "t1", 0, 10, "y", -1);
    commit(3, "a", -1, "", "t2", 0, 20, "z", -1);
    commit(4, "b", -1, "", "t1", 5, 99, "", -1);
    flush();
    struct lm_group_fetch_group fg[] = {
        {.group_id = S("a"), .n_topics = -1},
        {.group_id = S("b"), .n_topics = -1},
        {.group_id = S("c"), .n_topics = -1},
    };
    struct lm_group_fetch_req fr = {.n_groups = 3, .groups = fg, .require_stable = true};
    assert_int_equal(lm_group_fetch(F.c, F.now, 5, &fr), 0);
    const struct lm_group_resp *r = resp(5);
    assert_int_equal(r->u.fetch.n_groups, 3);
    const struct lm_group_fetch_group_resp *a = &r->u.fetch.groups[0];
    assert_true(seq(a->group_id, "a"));
    assert_int_equal(a->n_topics, 2);
    assert_true(seq(a->topics[0].name, "t1"));
    assert_int_equal(a->topics[0].n_partitions, 1);
    assert_true(seq(a->topics[1].name, "t2"));
    assert_int_equal(a->topics[1].n_partitions, 2);
    assert_int_equal(a->topics[1].partitions[0].offset, 20);
    assert_int_equal(a->topics[1].partitions[1].offset, 21);
    assert_true(seq(a->topics[1].partitions[1].metadata, "x"));
    assert_int_equal(r->u.fetch.groups[1].topics[0].partitions[0].offset, 99);
    assert_int_equal(r->u.fetch.groups[2].n_topics, 0);
    assert_int_equal(r->u.fetch.groups[2].error_code, 0);
    flush();
}

static void test_describe_and_list(void **st)
{
    (void)st;
    char m1[128];
    one_member_stable("g", m1);
    commit(1, "simple", -1, "", "t", 0, 1, "", -1);
    join((uint64_t)2,
         (struct jo){
             .group = "conn", .ptype = "connect", .protocols = "default", .old_version = true});
    flush();
    struct kafka_str ids[] = {S("g"), S("conn"), S("missing")};
    assert_int_equal(lm_group_describe(F.c, F.now, 3, 3, ids), 0);
    const struct lm_group_resp *r = resp(3);
    const struct lm_group_describe_group *d = r->u.describe.groups;
    assert_true(d[0].found);
    assert_true(seq(d[0].state, "Stable"));
    assert_true(seq(d[0].protocol_type, "consumer"));
    assert_true(seq(d[0].protocol_data, "range"));
    assert_int_equal(d[0].n_members, 1);
    assert_true(seq(d[0].members[0].client_id, "cli"));
    assert_true(seq(d[0].members[0].client_host, "/127.0.0.1"));
    assert_int_equal(d[0].members[0].assignment.len, 1);
    assert_true(d[0].members[0].metadata.len > 0);
    assert_true(seq(d[1].state, "CompletingRebalance"));
    assert_true(seq(d[1].protocol_data, "")); /* not Stable: no protocol, no metadata */
    assert_int_equal(d[1].members[0].metadata.len, 0);
    assert_false(d[2].found);
    assert_int_equal(d[2].error_code, 0);
    assert_true(seq(d[2].state, "Dead"));
    flush();

    struct lm_group_list_req all = {0};
    assert_int_equal(lm_group_list(F.c, F.now, 4, &all), 0);
    assert_int_equal(resp(4)->u.list.n_groups, 3);
    flush();
    struct kafka_str states[] = {S("stable"), S("Empty")};
    struct lm_group_list_req f = {.n_states = 2, .states = states};
    assert_int_equal(lm_group_list(F.c, F.now, 5, &f), 0);
    r = resp(5);
    assert_int_equal(r->u.list.n_groups, 2);
    for (int i = 0; i < 2; i++) {
        assert_true(seq(r->u.list.groups[i].group_id, "g") ||
                    seq(r->u.list.groups[i].group_id, "simple"));
        assert_true(seq(r->u.list.groups[i].type, "classic"));
    }
    flush();
    struct kafka_str types[] = {S("consumer")};
    struct lm_group_list_req t = {.n_types = 1, .types = types};
    assert_int_equal(lm_group_list(F.c, F.now, 6, &t), 0);
    assert_int_equal(resp(6)->u.list.n_groups, 0); /* every group here is "classic" */
    flush();
}

static size_t count_tombstones(size_t from)
{
    size_t n = 0;
    for (size_t i = from; i < F.n_log; i++)
        n += F.log[i].value.len < 0;
    return n;
}

static void test_delete_groups(void **st)
{
    (void)st;
    char m1[128];
    one_member_stable("g", m1);
    commit(1, "e", -1, "", "t", 0, 1, "", -1);
    commit(2, "e", -1, "", "t", 1, 2, "", -1);
    flush();
    size_t mark = F.n_log;
    struct kafka_str ids[] = {S("g"), S("e"), S("missing"), S("")};
    assert_int_equal(lm_group_delete(F.c, F.now, 3, 4, ids), 0);
    const struct lm_group_resp *r = resp(3);
    assert_int_equal(r->u.del.results[0].error_code, KAFKA_NON_EMPTY_GROUP);
    assert_int_equal(r->u.del.results[1].error_code, 0);
    assert_int_equal(r->u.del.results[2].error_code, KAFKA_GROUP_ID_NOT_FOUND);
    assert_int_equal(r->u.del.results[3].error_code, KAFKA_GROUP_ID_NOT_FOUND);
    flush();
    assert_int_equal(count_tombstones(mark), 3); /* two offsets + the group */
    assert_int_equal(lm_group_coord_info(F.c, S("e"), &(struct lm_group_info){0}), LM_E_NOT_FOUND);
    assert_int_equal(fetch1(4, "e", "t", 0).offset, -1);
    flush();
}

static void test_offset_delete(void **st)
{
    (void)st;
    char m1[128];
    join_new(1, (struct jo){.group = "g", .topics = "t1,t3"}, m1);
    flush();
    const char *ids[] = {m1}, *as[] = {"A"};
    sync_req(3, "g", 1, m1, NULL, 1, ids, as);
    flush();
    commit(4, "g", 1, m1, "t1", 0, 5, "", -1);
    commit(5, "g", 1, m1, "t2", 0, 6, "", -1);
    flush();
    int32_t p0 = 0;
    struct lm_group_fetch_topic ts[] = {{.name = S("t1"), .n_partitions = 1, .partitions = &p0},
                                        {.name = S("t2"), .n_partitions = 1, .partitions = &p0}};
    struct lm_group_offset_delete_req r = {.group_id = S("g"), .n_topics = 2, .topics = ts};
    size_t mark = F.n_log;
    assert_int_equal(lm_group_offset_delete(F.c, F.now, 6, &r), 0);
    const struct lm_group_resp *x = resp(6);
    assert_int_equal(x->u.offset_delete.error_code, 0);
    assert_int_equal(x->u.offset_delete.topics[0].partitions[0].error_code,
                     KAFKA_GROUP_SUBSCRIBED_TO_TOPIC);
    assert_int_equal(x->u.offset_delete.topics[1].partitions[0].error_code, 0);
    flush();
    assert_int_equal(count_tombstones(mark), 1);
    assert_int_equal(fetch1(7, "g", "t1", 0).offset, 5);
    assert_int_equal(fetch1(8, "g", "t2", 0).offset, -1);
    flush();
    /* an Empty group: any offset goes */
    assert_int_equal(leave1(9, "g", m1, NULL), 0);
    flush();
    struct lm_group_offset_delete_req r1 = {.group_id = S("g"), .n_topics = 1, .topics = ts};
    assert_int_equal(lm_group_offset_delete(F.c, F.now, 10, &r1), 0);
    assert_int_equal(resp(10)->u.offset_delete.topics[0].partitions[0].error_code, 0);
    flush();
    assert_int_equal(fetch1(11, "g", "t1", 0).offset, -1);
    flush();
    /* a non-consumer group with members: NON_EMPTY_GROUP; unknown group: GROUP_ID_NOT_FOUND */
    join((uint64_t)12, (struct jo){.group = "c", .ptype = "connect", .old_version = true});
    flush();
    struct lm_group_offset_delete_req r2 = {.group_id = S("c"), .n_topics = 1, .topics = ts};
    assert_int_equal(lm_group_offset_delete(F.c, F.now, 13, &r2), 0);
    assert_int_equal(resp(13)->u.offset_delete.error_code, KAFKA_NON_EMPTY_GROUP);
    r2.group_id = S("zzz");
    assert_int_equal(lm_group_offset_delete(F.c, F.now, 14, &r2), 0);
    assert_int_equal(resp(14)->u.offset_delete.error_code, KAFKA_GROUP_ID_NOT_FOUND);
    flush();
}

static void test_offset_retention(void **st)
{
    (void)st;
    const int64_t day = 24LL * 3600 * 1000, ret = 7 * day;
    char m1[128];
    one_member_stable("g", m1);
    commit(1, "g", 1, m1, "t1", 0, 5, "", -1);
    commit(2, "simple", -1, "", "t", 0, 1, "", -1);
    commit(3, "explicit", -1, "", "t", 0, 1, "", day); /* v2-4 retention_time_ms */
    flush();
    /* the v1 value with expire timestamp is what Kafka writes for an explicit retention */
    struct lm_gr_offset_value v;
    const struct logrec *lr = &F.log[F.n_log - 1];
    assert_int_equal(lm_gr_offset_value_decode(lr->value.ptr, (size_t)lr->value.len, &v), 0);
    assert_int_equal(v.version, 1);
    assert_int_equal(v.expire_ts_ms, F.now + day);
    tick(day);
    flush();
    assert_int_equal(lm_group_coord_info(F.c, S("explicit"), &(struct lm_group_info){0}),
                     LM_E_NOT_FOUND); /* expired, then the empty group went Dead */
    /* a Stable consumer group keeps offsets of subscribed topics however old */
    for (int i = 0; i < 8; i++) {
        tick(day);
        assert_int_equal(hb(10 + (uint64_t)i, "g", 1, m1, NULL), KAFKA_UNKNOWN_MEMBER_ID);
        flush();
        /* "g" became Empty at the tick before this loop (its member's session ran out):
         * its offsets live 7 days from then, i.e. through i == 5 */
        if (i < 6)
            assert_int_equal(fetch1(50 + (uint64_t)i, "g", "t1", 0).offset, 5);
        if (i == 6)
            assert_int_equal(lm_group_coord_info(F.c, S("g"), &(struct lm_group_info){0}),
                             LM_E_NOT_FOUND);
        flush();
    }
    /* (the member stopped heartbeating long ago: the group is Empty since ~10 s in) */
    assert_int_equal(lm_group_coord_info(F.c, S("simple"), &(struct lm_group_info){0}),
                     LM_E_NOT_FOUND);
    /* the Empty group's offsets expired 7 days after it became Empty */
    assert_int_equal(lm_group_coord_info(F.c, S("g"), &(struct lm_group_info){0}), LM_E_NOT_FOUND);
    (void)ret;
}

static void test_offset_retention_stable_subscribed(void **st)
{
    (void)st;
    const int64_t day = 24LL * 3600 * 1000;
    char m1[128];
    join_new(1, (struct jo){.group = "g", .session_ms = 1800000, .topics = "t1"}, m1);
    flush();
    const char *ids[] = {m1}, *as[] = {"A"};
    sync_req(3, "g", 1, m1, NULL, 1, ids, as);
    commit(4, "g", 1, m1, "t1", 0, 5, "", -1);
    commit(5, "g", 1, m1, "t9", 0, 6, "", -1); /* not subscribed */
    flush();
    for (int i = 0; i < 8 * 24 * 3; i++) { /* 8 days of heartbeats every 20 min */
        F.now += 1200000;
        assert_int_equal(hb(100 + (uint64_t)i, "g", 1, m1, NULL), 0);
        assert_int_equal(lm_group_coord_tick(F.c, F.now), 0);
        flush();
    }
    assert_int_equal(fetch1(6, "g", "t1", 0).offset, 5);
    assert_int_equal(fetch1(7, "g", "t9", 0).offset, -1);
    flush();
    (void)day;
}

/* ---- persistence and replay ---- */

static void reload(void)
{
    lm_group_coord_free(F.c);
    assert_int_equal(lm_group_coord_new(&F.cfg, &F.c), 0);
    int64_t bad = 0;
    for (int32_t p = 0; p < F.cfg.offsets_topic_partitions; p++) {
        assert_int_equal(lm_group_coord_load_begin(F.c, p), 0);
        for (size_t i = 0; i < F.n_log; i++)
            if (F.log[i].partition == p)
                assert_int_equal(lm_group_coord_replay(F.c, p, F.log[i].key, F.log[i].value, &bad),
                                 0);
        assert_int_equal(lm_group_coord_load_end(F.c, p, F.now), 0);
    }
    assert_int_equal(bad, 0);
}

/* Reloads from the fake log, whose records all came from transactions of producers 77 and
 * 78 (in that order); with markers: a commit of 77 and an abort of 78 after them. */
static void reload_txn(bool markers)
{
    lm_group_coord_free(F.c);
    assert_int_equal(lm_group_coord_new(&F.cfg, &F.c), 0);
    int64_t bad = 0;
    int32_t p = lm_group_partition_of(F.c, S("tg"));
    assert_int_equal(lm_group_coord_load_begin(F.c, p), 0);
    for (size_t i = 0; i < F.n_log; i++)
        assert_int_equal(
            lm_group_coord_replay_txn(F.c, p, i == 0 ? 77 : 78, F.log[i].key, F.log[i].value, &bad),
            0);
    if (markers) {
        assert_int_equal(lm_group_coord_replay_marker(F.c, p, 77, true), 0);
        assert_int_equal(lm_group_coord_replay_marker(F.c, p, 78, false), 0);
    }
    assert_int_equal(lm_group_coord_load_end(F.c, p, F.now), 0);
    assert_int_equal(bad, 0);
}

/* TxnOffsetCommit: the offset is written in the producer's transactional records, pending
 * (OffsetFetch does not show it; require_stable answers UNSTABLE_OFFSET_COMMIT) until the
 * commit marker; an abort drops it; a load replays the transactional records and markers. */
static void txn_commit(uint64_t tok, const char *g, int64_t pid, int32_t part, int64_t off)
{
    struct lm_group_commit_part cp = {
        .partition = part, .offset = off, .leader_epoch = 2, .metadata = S("m")};
    struct lm_group_commit_topic ct = {.name = S("t"), .n_partitions = 1, .partitions = &cp};
    struct lm_group_txn_commit_req tr = {.commit = {.group_id = S(g),
                                                    .generation_id = -1,
                                                    .member_id = S(""),
                                                    .group_instance_id = N(),
                                                    .retention_ms = -1,
                                                    .n_topics = 1,
                                                    .topics = &ct},
                                         .producer_id = pid,
                                         .producer_epoch = 3};
    assert_int_equal(lm_group_txn_commit(F.c, F.now, tok, &tr), 0);
}

static int16_t fetch_stable_err(uint64_t tok, const char *g, int32_t part)
{
    struct lm_group_fetch_topic ft = {.name = S("t"), .n_partitions = 1, .partitions = &part};
    struct lm_group_fetch_group fg = {.group_id = S(g), .n_topics = 1, .topics = &ft};
    struct lm_group_fetch_req fr = {.n_groups = 1, .groups = &fg, .require_stable = true};
    assert_int_equal(lm_group_fetch(F.c, F.now, tok, &fr), 0);
    const struct lm_group_resp *r = resp(tok);
    assert_non_null(r);
    return r->u.fetch.groups[0].topics[0].partitions[0].error_code;
}

static void test_txn_offset_commit(void **st)
{
    (void)st;
    int32_t part = lm_group_partition_of(F.c, S("tg"));
    txn_commit(1, "tg", 77, 0, 100);
    assert_int_equal(commit_err(1), KAFKA_NONE);
    struct lm_group_ready rd;
    lm_group_coord_ready(F.c, &rd);
    assert_int_equal(rd.n_records, 1);
    assert_int_equal(rd.records[0].producer_id, 77);
    assert_int_equal(rd.records[0].producer_epoch, 3);
    assert_int_equal(rd.records[0].partition, part);
    flush();
    txn_commit(2, "tg", 78, 1, 200); /* another producer, another partition */
    assert_int_equal(commit_err(2), KAFKA_NONE);
    flush();
    assert_int_equal(fetch1(3, "tg", "t", 0).offset, -1);
    flush();
    assert_int_equal(fetch_stable_err(4, "tg", 0), KAFKA_UNSTABLE_OFFSET_COMMIT);
    flush();
    assert_int_equal(fetch_stable_err(5, "tg", 2), KAFKA_NONE); /* nothing pending there */
    flush();
    /* a load with both transactions open keeps both pending */
    reload_txn(false);
    assert_int_equal(fetch_stable_err(6, "tg", 0), KAFKA_UNSTABLE_OFFSET_COMMIT);
    flush();
    assert_int_equal(lm_group_txn_complete(F.c, part, 77, true), 0);
    assert_int_equal(n_records(), 0); /* the marker is the record */
    struct lm_group_fetch_part fp = fetch1(7, "tg", "t", 0);
    assert_int_equal(fp.offset, 100);
    assert_int_equal(fp.leader_epoch, 2);
    flush();
    assert_int_equal(fetch_stable_err(8, "tg", 0), KAFKA_NONE);
    flush();
    assert_int_equal(lm_group_txn_complete(F.c, part, 78, false), 0);
    assert_int_equal(fetch1(9, "tg", "t", 1).offset, -1);
    flush();
    assert_int_equal(fetch_stable_err(10, "tg", 1), KAFKA_NONE);
    flush();
    /* the same from the log: commit marker for 77, abort for 78 */
    reload_txn(true);
    assert_int_equal(fetch1(11, "tg", "t", 0).offset, 100);
    flush();
    assert_int_equal(fetch1(12, "tg", "t", 1).offset, -1);
    flush();
    assert_int_equal(fetch_stable_err(13, "tg", 1), KAFKA_NONE);
    flush();
}

static void test_replay_rebuilds_state(void **st)
{
    (void)st;
    char m1[128], m2[128], s1[128];
    two_members_stable((struct jo){.group = "g"}, m1, m2, "a1", "a2");
    commit(15, "g", 2, m1, "t1", 0, 100, "meta-1", -1);
    commit(16, "g", 2, m2, "t1", 1, 200, "meta-2", -1);
    commit(17, "g", 2, m2, "t1", 1, 201, "meta-3", -1); /* the later one wins */
    commit(18, "simple", -1, "", "x", 3, 7, "", -1);
    commit(19, "gone", -1, "", "x", 0, 1, "", -1);
    join(20, (struct jo){.group = "st", .instance = "i1"});
    join_mid(20, s1);
    flush();
    const char *sid[] = {s1}, *sas[] = {"S"};
    sync_req(21, "st", 1, s1, "i1", 1, sid, sas);
    flush();
    struct kafka_str del[] = {S("gone")};
    assert_int_equal(lm_group_delete(F.c, F.now, 22, 1, del), 0);
    flush();
    struct lm_group_info before = info("g");
    size_t groups_before = lm_group_coord_n_groups(F.c);
    assert_int_equal(groups_before, 3);

    F.now += 2000; /* the broker restarts */
    reload();
    assert_int_equal(lm_group_coord_n_groups(F.c), groups_before);
    struct lm_group_info after = info("g");
    assert_int_equal(after.state, LM_GROUP_STABLE);
    assert_int_equal(after.generation_id, before.generation_id);
    assert_int_equal(after.n_members, 2);
    assert_true(seq(after.leader, m1));
    assert_true(seq(after.protocol_name, "range"));
    assert_int_equal(info("simple").state, LM_GROUP_EMPTY);
    struct lm_group_fetch_part p = fetch1(30, "g", "t1", 1);
    assert_int_equal(p.offset, 201);
    assert_true(seq(p.metadata, "meta-3"));
    assert_int_equal(p.leader_epoch, 3);
    assert_int_equal(fetch1(31, "simple", "x", 3).offset, 7);
    assert_int_equal(fetch1(32, "gone", "x", 0).offset, -1);
    flush();
    assert_int_equal(lm_group_coord_info(F.c, S("gone"), &(struct lm_group_info){0}),
                     LM_E_NOT_FOUND);
    /* members carry on where they were: heartbeat, sync to their assignment, commit */
    assert_int_equal(hb(33, "g", 2, m2, NULL), 0);
    sync_req(34, "g", 2, m2, NULL, 0, NULL, NULL);
    assert_true(sync_asg(34, "a2"));
    commit(35, "g", 2, m1, "t1", 0, 101, "", -1);
    assert_int_equal(commit_err(35), 0);
    flush();
    /* a static member restarting after the broker restart is still recognised */
    join(36, (struct jo){.group = "st", .instance = "i1"});
    assert_int_equal(join_err(36), 0);
    assert_int_equal(resp(36)->u.join.generation_id, 1);
    flush();
    assert_int_equal(hb(37, "st", 1, s1, "i1"), KAFKA_FENCED_INSTANCE_ID);
    flush();
    /* members that do not come back after the restart expire after their session */
    tick(5000);
    commit(38, "g", 2, m1, "t1", 0, 101, "", -1); /* a commit counts as a heartbeat */
    flush();
    tick(5000);
    assert_int_equal(info("g").n_members, 1); /* m2 was silent since the restart */
    flush();

    /* a second replay of the longer log gives the same answers again */
    reload();
    assert_int_equal(fetch1(40, "g", "t1", 0).offset, 101);
    flush();
    int64_t bad = 0;
    int32_t pg = lm_group_partition_of(F.c, S("g"));
    assert_int_equal(lm_group_coord_load_begin(F.c, pg), 0);
    uint8_t junk[] = {0, 9, 0, 0};
    assert_int_equal(lm_group_coord_replay(F.c, pg, (struct kafka_bytes){junk, 4},
                                           (struct kafka_bytes){junk, 4}, &bad),
                     0);
    assert_int_equal(bad, 1); /* unknown record types are skipped and counted */
    assert_int_equal(lm_group_coord_load_end(F.c, pg, F.now), 0);
}

/* Encodes a record key or value into a malloc'd buffer (value: group value when gv != NULL). */
static struct kafka_bytes enc_key(const struct lm_gr_key *k)
{
    size_t n = lm_gr_key_size(k);
    uint8_t *b = malloc(n);
    struct kafka_writer w;
    kafka_writer_init(&w, b, n);
    assert_int_equal(lm_gr_key_encode(&w, k), 0);
    return (struct kafka_bytes){b, (int32_t)n};
}

static struct kafka_bytes enc_group(const struct lm_gr_group_value *v)
{
    size_t n = lm_gr_group_value_size(v);
    uint8_t *b = malloc(n);
    struct kafka_writer w;
    kafka_writer_init(&w, b, n);
    assert_int_equal(lm_gr_group_value_encode(&w, v), 0);
    return (struct kafka_bytes){b, (int32_t)n};
}

static struct kafka_bytes enc_offset(const struct lm_gr_offset_value *v)
{
    size_t n = lm_gr_offset_value_size(v);
    uint8_t *b = malloc(n);
    struct kafka_writer w;
    kafka_writer_init(&w, b, n);
    assert_int_equal(lm_gr_offset_value_encode(&w, v), 0);
    return (struct kafka_bytes){b, (int32_t)n};
}

/* A group record whose invariants do not hold (written by anyone who could append to
 * __consumer_offsets, or damaged on disk) is skipped and counted; the records around it load
 * and the coordinator keeps running through the session timeouts of the members it named. */
static void test_replay_skips_insane_group_values(void **st)
{
    (void)st;
    int32_t pg = lm_group_partition_of(F.c, S("g"));
    struct lm_gr_key gk = {.version = LM_GR_KEY_GROUP, .group = S("g"), .topic = N()};
    struct lm_gr_key ok = {
        .version = LM_GR_KEY_OFFSET_V1, .group = S("g"), .topic = S("t1"), .partition = 0};
    struct lm_gr_offset_value ov = {.version = 3,
                                    .offset = 42,
                                    .leader_epoch = -1,
                                    .metadata = S(""),
                                    .commit_ts_ms = F.now,
                                    .expire_ts_ms = -1};
    struct lm_gr_member ms[2] = {
        {.member_id = S("m1"),
         .instance_id = N(),
         .client_id = S("c"),
         .client_host = S("/h"),
         .rebalance_timeout_ms = 10000,
         .session_timeout_ms = 10000,
         .subscription = {(const uint8_t *)"", 0},
         .assignment = {(const uint8_t *)"", 0}},
        {.member_id = S("m2"),
         .instance_id = N(),
         .client_id = S("c"),
         .client_host = S("/h"),
         .rebalance_timeout_ms = 10000,
         .session_timeout_ms = 10000,
         .subscription = {(const uint8_t *)"", 0},
         .assignment = {(const uint8_t *)"", 0}},
    };
    struct lm_gr_group_value ghost = {.version = 3,
                                      .protocol_type = S("consumer"),
                                      .generation = 1,
                                      .protocol = S("range"),
                                      .leader = S("ghost"),
                                      .state_ts_ms = F.now,
                                      .n_members = 1,
                                      .members = ms};
    struct lm_gr_group_value dup = ghost;
    dup.leader = S("m1");
    dup.n_members = 2;
    ms[1].member_id = S("m1"); /* the same member twice */
    struct lm_gr_group_value noproto = ghost;
    noproto.leader = S("m1");
    noproto.protocol = N();
    struct lm_gr_group_value zero_session = ghost;
    zero_session.leader = S("m1");
    struct lm_gr_member zs = ms[0];
    zs.session_timeout_ms = 0;
    zero_session.members = &zs;
    struct kafka_bytes key = enc_key(&gk), okey = enc_key(&ok), oval = enc_offset(&ov);
    struct kafka_bytes bad_values[] = {enc_group(&ghost), enc_group(&dup), enc_group(&noproto),
                                       enc_group(&zero_session)};
    int64_t bad = 0;
    assert_int_equal(lm_group_coord_load_begin(F.c, pg), 0);
    assert_int_equal(lm_group_coord_replay(F.c, pg, okey, oval, &bad), 0);
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
        assert_int_equal(lm_group_coord_replay(F.c, pg, key, bad_values[i], &bad), 0);
    assert_int_equal(lm_group_coord_load_end(F.c, pg, F.now), 0);
    assert_int_equal(bad, 4);
    struct lm_group_info gi = info("g");
    assert_int_equal(gi.state, LM_GROUP_EMPTY);
    assert_int_equal(gi.n_members, 0);
    assert_int_equal(fetch1(1, "g", "t1", 0).offset, 42);
    flush();
    /* past every session timeout the records named, then a member joins the group */
    tick(30000);
    flush();
    char m[128];
    join(2, (struct jo){.group = "g"});
    join_mid(2, m);
    flush();
    join(3, (struct jo){.group = "g", .member = m});
    assert_int_equal(join_err(3), 0);
    flush();
    free((void *)key.ptr);
    free((void *)okey.ptr);
    free((void *)oval.ptr);
    for (size_t i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++)
        free((void *)bad_values[i].ptr);
}

static void test_deterministic_member_ids(void **st)
{
    (void)st;
    char a[128], b[128];
    join((uint64_t)1, (struct jo){.group = "g"});
    join_mid(1, a);
    flush();
    lm_group_coord_free(F.c);
    assert_int_equal(lm_group_coord_new(&F.cfg, &F.c), 0);
    join((uint64_t)1, (struct jo){.group = "g"});
    join_mid(1, b);
    flush();
    assert_string_equal(a, b); /* same seed, same ids: runs replay exactly */
    join((uint64_t)2, (struct jo){.group = "g"});
    join_mid(2, b);
    assert_string_not_equal(a, b);
    assert_int_equal(b[3 + 1 + 14], '4'); /* UUID version nibble */
    flush();
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_member_id_required_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_single_member_full_cycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_member_join_released_together, setup, teardown),
        cmocka_unit_test_setup_teardown(test_initial_rebalance_delay, setup_delay, teardown),
        cmocka_unit_test_setup_teardown(test_session_timeout_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rebalance_timeout_drops_laggards, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_leaves_mid_rebalance, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_membership, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_rejoin_changes_protocol, setup, teardown),
        cmocka_unit_test_setup_teardown(test_static_member_parked_join_fenced, setup, teardown),
        cmocka_unit_test_setup_teardown(test_protocol_type_and_selection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_max_size, setup_max2, teardown),
        cmocka_unit_test_setup_teardown(test_request_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unload_answers_parked, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pending_member_expires, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_member_join_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leave_batched, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_commit_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_fetch_all_and_multi, setup, teardown),
        cmocka_unit_test_setup_teardown(test_describe_and_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_groups, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_retention, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offset_retention_stable_subscribed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_txn_offset_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_rebuilds_state, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replay_skips_insane_group_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deterministic_member_ids, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
