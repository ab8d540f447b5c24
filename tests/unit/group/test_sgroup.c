/* Share groups (KIP-932): membership epochs, the simple assignor (every subscriber of a topic
 * gets partitions of it, shared when members outnumber partitions), errors, leave and session
 * timeouts, describe and metadata changes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/sgroup.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

static struct kafka_str S(const char *s) {
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

struct image {
    int n;
    const char *names[4];
    int32_t parts[4];
};

static void image_topic(void *ctx, size_t i, struct lm_cgroup_topic *out)
{
    struct image *im = ctx;
    memset(out, 0, sizeof(*out));
    out->name = S(im->names[i]);
    out->id.b[0] = (uint8_t)(i + 1);
    out->partitions = im->parts[i];
}

static struct lm_cgroup_image img_of(struct image *im)
{
    return (struct lm_cgroup_image){im, (size_t)im->n, image_topic};
}

static struct lm_sgroup_hb_resp hb(struct lm_sgroup_coord *c, int64_t now, struct image *im,
                                   const char *member, int32_t epoch, int32_t n_topics,
                                   const char *const *topics)
{
    struct kafka_str names[4];
    for (int32_t i = 0; i < n_topics; i++)
        names[i] = S(topics[i]);
    struct lm_sgroup_hb_req rq = {
        .group_id = S("g"),
        .member_id = S(member),
        .member_epoch = epoch,
        .rack_id = {NULL, -1},
        .n_topic_names = n_topics,
        .topic_names = names,
        .client_id = S("client"),
        .client_host = S("/127.0.0.1"),
    };
    struct lm_cgroup_image img = img_of(im);
    struct lm_sgroup_hb_resp r;
    assert_int_equal(lm_sgroup_heartbeat(c, now, &img, &rq, &r), 0);
    return r;
}

static struct lm_sgroup_coord *coord(void)
{
    struct lm_sgroup_config cfg;
    lm_sgroup_config_default(&cfg);
    cfg.max_size = 3;
    struct lm_sgroup_coord *c;
    assert_int_equal(lm_sgroup_coord_new(&cfg, &c), 0);
    return c;
}

static const char *const T[] = {"t"};

static void test_join_and_shared_partition(void **state)
{
    (void)state;
    struct image im = {1, {"t"}, {1}};
    struct lm_sgroup_coord *c = coord();
    struct lm_sgroup_hb_resp r = hb(c, 0, &im, "a", 0, 1, T);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_true(r.has_assignment);
    assert_int_equal(r.member_epoch, 1);
    assert_int_equal(r.n_assigned, 1);
    assert_int_equal(r.assigned[0].partition, 0);
    /* a second member of a one-partition topic shares partition 0 */
    r = hb(c, 10, &im, "b", 0, 1, T);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_int_equal(r.member_epoch, 2);
    assert_int_equal(r.n_assigned, 1);
    assert_int_equal(r.assigned[0].partition, 0);
    /* a's next heartbeat at its old epoch moves it to the new epoch, same assignment */
    r = hb(c, 20, &im, "a", 1, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_true(r.has_assignment);
    assert_int_equal(r.member_epoch, 2);
    assert_int_equal(r.n_assigned, 1);
    /* then nothing changes: no assignment on the wire */
    r = hb(c, 30, &im, "a", 2, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_false(r.has_assignment);
    lm_sgroup_coord_free(c);
}

static void test_spread_and_metadata(void **state)
{
    (void)state;
    struct image im = {1, {"t"}, {4}};
    struct lm_sgroup_coord *c = coord();
    hb(c, 0, &im, "a", 0, 1, T);
    struct lm_sgroup_hb_resp r = hb(c, 0, &im, "b", 0, 1, T);
    assert_int_equal(r.n_assigned, 2); /* b: partitions 1 and 3 */
    assert_int_equal(r.assigned[0].partition, 1);
    assert_int_equal(r.assigned[1].partition, 3);
    r = hb(c, 0, &im, "a", 1, -1, NULL);
    assert_int_equal(r.n_assigned, 2);
    assert_int_equal(r.assigned[0].partition, 0);
    assert_int_equal(r.assigned[1].partition, 2);
    int32_t e = r.member_epoch;
    /* partitions added: the epoch moves and the spread includes them */
    im.parts[0] = 6;
    r = hb(c, 0, &im, "a", e, -1, NULL);
    assert_true(r.member_epoch > e);
    assert_true(r.has_assignment);
    assert_int_equal(r.n_assigned, 3);
    lm_sgroup_coord_free(c);
}

static void test_errors_leave_timeout(void **state)
{
    (void)state;
    struct image im = {1, {"t"}, {1}};
    struct lm_sgroup_coord *c = coord();
    struct lm_sgroup_hb_resp r = hb(c, 0, &im, "a", 0, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST); /* join without a subscription */
    r = hb(c, 0, &im, "", 0, 1, T);
    assert_int_equal(r.error_code, KAFKA_INVALID_REQUEST);
    r = hb(c, 0, &im, "x", 3, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_UNKNOWN_MEMBER_ID);
    r = hb(c, 0, &im, "a", 0, 1, T);
    assert_int_equal(r.member_epoch, 1);
    r = hb(c, 0, &im, "a", 7, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_FENCED_MEMBER_EPOCH);
    int32_t eb = hb(c, 0, &im, "b", 0, 1, T).member_epoch;
    assert_int_equal(eb, 2);
    hb(c, 0, &im, "c", 0, 1, T);
    r = hb(c, 0, &im, "d", 0, 1, T);
    assert_int_equal(r.error_code, KAFKA_GROUP_MAX_SIZE_REACHED);
    /* leave */
    r = hb(c, 0, &im, "c", -1, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_int_equal(r.member_epoch, -1);
    int32_t n;
    assert_true(lm_sgroup_exists(c, S("g"), &n));
    assert_int_equal(n, 2);
    assert_true(lm_sgroup_member_ok(c, S("g"), S("a")));
    assert_false(lm_sgroup_member_ok(c, S("g"), S("c")));
    /* b heartbeats later, a does not: a's session (45 s) ends first */
    r = hb(c, 40000, &im, "b", eb, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_NONE);
    assert_int_equal(r.member_epoch, 4); /* c left: epoch 4 */
    assert_int_equal(lm_sgroup_next_deadline_ms(c), 45000);
    assert_int_equal(lm_sgroup_tick(c, 45000), 1);
    assert_false(lm_sgroup_member_ok(c, S("g"), S("a")));
    r = hb(c, 45001, &im, "a", 1, -1, NULL);
    assert_int_equal(r.error_code, KAFKA_UNKNOWN_MEMBER_ID);
    struct lm_sgroup_desc d;
    assert_int_equal(lm_sgroup_describe(c, S("g"), &d), 0);
    assert_int_equal(d.error_code, KAFKA_NONE);
    assert_string_equal(d.state, "Stable");
    assert_string_equal(d.assignor, "simple");
    assert_int_equal(d.n_members, 1);
    assert_int_equal(d.members[0].n_assigned, 1);
    assert_int_equal(lm_sgroup_delete(c, S("g")), LM_E_EXISTS);
    assert_int_equal(lm_sgroup_tick(c, 200000), 1);
    assert_int_equal(lm_sgroup_describe(c, S("g"), &d), 0);
    assert_string_equal(d.state, "Empty");
    assert_int_equal(lm_sgroup_delete(c, S("g")), 0);
    assert_int_equal(lm_sgroup_describe(c, S("nope"), &d), 0);
    assert_int_equal(d.error_code, KAFKA_GROUP_ID_NOT_FOUND);
    lm_sgroup_coord_free(c);
}

/* Every member subscribed to a topic gets at least one partition of it, and every partition
 * is assigned, for any member and partition counts. */
static void test_assignor_covers(void **state)
{
    (void)state;
    for (int32_t parts = 1; parts <= 7; parts++) {
        for (int32_t members = 1; members <= 5; members++) {
            struct image im = {1, {"t"}, {parts}};
            struct lm_sgroup_config cfg;
            lm_sgroup_config_default(&cfg);
            struct lm_sgroup_coord *c;
            assert_int_equal(lm_sgroup_coord_new(&cfg, &c), 0);
            char ids[5][4];
            for (int32_t m = 0; m < members; m++) {
                snprintf(ids[m], sizeof(ids[m]), "m%d", (int)m);
                hb(c, 0, &im, ids[m], 0, 1, T);
            }
            int covered[8] = {0};
            struct lm_sgroup_desc d;
            assert_int_equal(lm_sgroup_describe(c, S("g"), &d), 0);
            assert_int_equal(d.n_members, members);
            for (int32_t m = 0; m < d.n_members; m++) {
                assert_true(d.members[m].n_assigned >= 1);
                for (int32_t k = 0; k < d.members[m].n_assigned; k++)
                    covered[d.members[m].assigned[k].partition]++;
            }
            for (int32_t p = 0; p < parts; p++)
                assert_true(covered[p] >= 1);
            lm_sgroup_coord_free(c);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_and_shared_partition),
        cmocka_unit_test(test_spread_and_metadata),
        cmocka_unit_test(test_errors_leave_timeout),
        cmocka_unit_test(test_assignor_covers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
