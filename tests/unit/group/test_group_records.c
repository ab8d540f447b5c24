/* __consumer_offsets record formats: golden bytes built by hand from Kafka's schemas
 * (OffsetCommitKey/Value, GroupMetadataKey/Value), round trips of every version, bad input,
 * and the group -> partition hash (Java String.hashCode, Utils.abs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "broker/group/group.h"
#include "broker/group/group_records.h"
#include "common/lm_err.h"

static struct kafka_str S(const char *s) {
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

static void
test_java_hash_and_partition(void **st)
{
    (void)st;
    /* expected values computed with Java's definition over UTF-16 code units */
    assert_int_equal(lm_gr_java_string_hash("", 0), 0);
    assert_int_equal(lm_gr_java_string_hash("a", 1), 97);
    assert_int_equal(lm_gr_java_string_hash("hello", 5), 99162322);
    assert_int_equal(lm_gr_java_string_hash("my-group", 8), -1906497762);
    assert_int_equal(lm_gr_java_string_hash("polygenelubricants", 18), INT32_MIN);
    assert_int_equal(lm_gr_java_string_hash("\xc3\xa9", 2), 233);             /* U+00E9 */
    assert_int_equal(lm_gr_java_string_hash("\xf0\x9f\x98\x80", 4), 1772899); /* U+1F600 */
    assert_int_equal(lm_gr_java_string_hash("gr\xc3\xbc\xc3\x9f"
                                            "e-\xce\xb3",
                                            10),
                     426791933);
    /* a malformed byte hashes as U+FFFD */
    assert_int_equal(lm_gr_java_string_hash("\xff", 1), 0xFFFD);
    assert_int_equal(lm_gr_java_string_hash("\xc3", 1), 0xFFFD);
    assert_int_equal(lm_gr_partition_for(S("a"), 50), 47);
    assert_int_equal(lm_gr_partition_for(S("hello"), 50), 22);
    assert_int_equal(lm_gr_partition_for(S("my-group"), 50), 12);
    assert_int_equal(lm_gr_partition_for(S("polygenelubricants"), 50), 0); /* abs(MIN) = 0 */
    assert_int_equal(lm_gr_partition_for(S("\xf0\x9f\x98\x80"), 50), 49);
    assert_int_equal(lm_gr_partition_for(S(""), 50), 0);
}

static size_t enc_key(const struct lm_gr_key *k, uint8_t *buf, size_t cap)
{
    struct kafka_writer w;
    kafka_writer_init(&w, buf, cap);
    assert_int_equal(lm_gr_key_encode(&w, k), 0);
    assert_int_equal(w.pos, lm_gr_key_size(k));
    return w.pos;
}

static void test_offset_key_golden(void **st)
{
    (void)st;
    uint8_t buf[64];
    struct lm_gr_key k = {.version = 1, .group = S("g1"), .topic = S("t"), .partition = 7};
    size_t n = enc_key(&k, buf, sizeof(buf));
    const uint8_t want[] = {0, 1, 0, 2, 'g', '1', 0, 1, 't', 0, 0, 0, 7};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, n);
    struct lm_gr_key d;
    assert_int_equal(lm_gr_key_decode(buf, n, &d), 0);
    assert_int_equal(d.version, 1);
    assert_true(kafka_str_eq(d.group, S("g1")));
    assert_true(kafka_str_eq(d.topic, S("t")));
    assert_int_equal(d.partition, 7);
    /* version 0 keys (older writers) decode the same way */
    const uint8_t v0[] = {0, 0, 0, 1, 'x', 0, 1, 'y', 0, 0, 0, 1};
    assert_int_equal(lm_gr_key_decode(v0, sizeof(v0), &d), 0);
    assert_int_equal(d.version, 0);
    assert_int_equal(d.partition, 1);
    for (size_t cut = 0; cut < n; cut++)
        assert_int_equal(lm_gr_key_decode(buf, cut, &d), LM_E_TRUNCATED);
}

static void test_group_key_golden(void **st)
{
    (void)st;
    uint8_t buf[64];
    struct lm_gr_key k = {.version = 2, .group = S("grp"), .topic = KAFKA_STR_NULL};
    size_t n = enc_key(&k, buf, sizeof(buf));
    const uint8_t want[] = {0, 2, 0, 3, 'g', 'r', 'p'};
    assert_int_equal(n, sizeof(want));
    assert_memory_equal(buf, want, n);
    struct lm_gr_key d;
    assert_int_equal(lm_gr_key_decode(buf, n, &d), 0);
    assert_int_equal(d.version, 2);
    assert_true(kafka_str_eq(d.group, S("grp")));
    const uint8_t v3[] = {0, 3, 0, 0};
    assert_int_equal(lm_gr_key_decode(v3, sizeof(v3), &d), LM_E_UNSUPPORTED);
}

static void test_offset_value_golden(void **st)
{
    (void)st;
    uint8_t buf[64];
    struct kafka_writer w;
    struct lm_gr_offset_value v = {.version = 3,
                                   .offset = 0x0102,
                                   .leader_epoch = 5,
                                   .metadata = S("md"),
                                   .commit_ts_ms = 0x0A0B,
                                   .expire_ts_ms = -1};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_gr_offset_value_encode(&w, &v), 0);
    const uint8_t want3[] = {0, 3, 0, 0,   0,   0, 0, 0, 1, 2, 0, 0,    0,
                             5, 0, 2, 'm', 'd', 0, 0, 0, 0, 0, 0, 0x0A, 0x0B};
    assert_int_equal(w.pos, sizeof(want3));
    assert_memory_equal(buf, want3, w.pos);
    struct lm_gr_offset_value d;
    assert_int_equal(lm_gr_offset_value_decode(buf, w.pos, &d), 0);
    assert_int_equal(d.offset, 0x0102);
    assert_int_equal(d.leader_epoch, 5);
    assert_true(kafka_str_eq(d.metadata, S("md")));
    assert_int_equal(d.commit_ts_ms, 0x0A0B);
    assert_int_equal(d.expire_ts_ms, -1);

    /* v1: no leader epoch, an expire timestamp after the commit timestamp */
    v.version = 1;
    v.expire_ts_ms = 0x0C;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_gr_offset_value_encode(&w, &v), 0);
    const uint8_t want1[] = {0, 1, 0, 0, 0, 0,    0,    0, 1, 2, 0, 2, 'm', 'd', 0,
                             0, 0, 0, 0, 0, 0x0A, 0x0B, 0, 0, 0, 0, 0, 0,   0,   0x0C};
    assert_int_equal(w.pos, sizeof(want1));
    assert_memory_equal(buf, want1, w.pos);
    assert_int_equal(lm_gr_offset_value_decode(buf, w.pos, &d), 0);
    assert_int_equal(d.leader_epoch, -1);
    assert_int_equal(d.expire_ts_ms, 0x0C);

    /* v0 and v2 share one layout */
    const uint8_t v0[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4};
    assert_int_equal(lm_gr_offset_value_decode(v0, sizeof(v0), &d), 0);
    assert_int_equal(d.offset, 9);
    assert_int_equal(d.metadata.len, 0);
    assert_int_equal(d.commit_ts_ms, 4);
    uint8_t v2[sizeof(v0)];
    memcpy(v2, v0, sizeof(v0));
    v2[1] = 2;
    assert_int_equal(lm_gr_offset_value_decode(v2, sizeof(v2), &d), 0);
    assert_int_equal(d.version, 2);

    /* v4: flexible (compact string, tagged fields) */
    v.version = 4;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_gr_offset_value_encode(&w, &v), 0);
    const uint8_t want4[] = {0, 4, 0,   0,   0, 0, 0, 0, 1, 2, 0,    0,    0,
                             5, 3, 'm', 'd', 0, 0, 0, 0, 0, 0, 0x0A, 0x0B, 0};
    assert_int_equal(w.pos, sizeof(want4));
    assert_memory_equal(buf, want4, w.pos);
    assert_int_equal(lm_gr_offset_value_decode(buf, w.pos, &d), 0);
    assert_int_equal(d.leader_epoch, 5);
    for (size_t cut = 0; cut < sizeof(want4); cut++)
        assert_int_not_equal(lm_gr_offset_value_decode(want4, cut, &d), 0);
    const uint8_t v5[] = {0, 5, 0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(lm_gr_offset_value_decode(v5, sizeof(v5), &d), LM_E_UNSUPPORTED);
}

static void test_group_value_golden(void **st)
{
    (void)st;
    uint8_t buf[256];
    struct lm_gr_member m = {
        .member_id = S("m1"),
        .instance_id = S("i"),
        .client_id = S("c"),
        .client_host = S("/h"),
        .rebalance_timeout_ms = 0x0100,
        .session_timeout_ms = 0x0200,
        .subscription = {(const uint8_t *)"\x01\x02", 2},
        .assignment = {(const uint8_t *)"\x03", 1},
    };
    struct lm_gr_group_value v = {.version = 3,
                                  .protocol_type = S("consumer"),
                                  .generation = 4,
                                  .protocol = S("range"),
                                  .leader = S("m1"),
                                  .state_ts_ms = 0x99,
                                  .n_members = 1,
                                  .members = &m};
    struct kafka_writer w;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_gr_group_value_encode(&w, &v), 0);
    const uint8_t want[] = {
        0, 3,                                          /* version */
        0, 8, 'c', 'o', 'n', 's', 'u', 'm',  'e', 'r', /* protocol type */
        0, 0, 0,   4,                                  /* generation */
        0, 5, 'r', 'a', 'n', 'g', 'e',                 /* protocol */
        0, 2, 'm', '1',                                /* leader */
        0, 0, 0,   0,   0,   0,   0,   0x99,           /* current state timestamp */
        0, 0, 0,   1,                                  /* one member */
        0, 2, 'm', '1', 0,   1,   'i', 0,    1,   'c',
        0, 2, '/', 'h', 0,   0,   1,   0, /* rebalance timeout */
        0, 0, 2,   0,                     /* session timeout */
        0, 0, 0,   2,   1,   2,           /* subscription */
        0, 0, 0,   1,   3,                /* assignment */
    };
    assert_int_equal(w.pos, sizeof(want));
    assert_memory_equal(buf, want, w.pos);

    struct kafka_arena a;
    kafka_arena_init(&a, 4096);
    struct lm_gr_group_value d;
    assert_int_equal(lm_gr_group_value_decode(buf, w.pos, &a, &d), 0);
    assert_int_equal(d.generation, 4);
    assert_true(kafka_str_eq(d.protocol, S("range")));
    assert_int_equal(d.state_ts_ms, 0x99);
    assert_int_equal(d.n_members, 1);
    assert_true(kafka_str_eq(d.members[0].instance_id, S("i")));
    assert_int_equal(d.members[0].rebalance_timeout_ms, 0x100);
    assert_int_equal(d.members[0].assignment.len, 1);
    for (size_t cut = 0; cut < sizeof(want); cut++)
        assert_int_not_equal(lm_gr_group_value_decode(want, cut, &a, &d), 0);

    /* an empty group (Kafka writes this when the last member leaves): null protocol/leader */
    struct lm_gr_group_value e = {.version = 3,
                                  .protocol_type = S("consumer"),
                                  .generation = 5,
                                  .protocol = KAFKA_STR_NULL,
                                  .leader = KAFKA_STR_NULL,
                                  .state_ts_ms = 1};
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_gr_group_value_encode(&w, &e), 0);
    const uint8_t want_e[] = {0,   3, 0, 8, 'c', 'o',  'n',  's',  'u',  'm', 'e',
                              'r', 0, 0, 0, 5,   0xff, 0xff, 0xff, 0xff, 0,   0,
                              0,   0, 0, 0, 0,   1,    0,    0,    0,    0};
    assert_int_equal(w.pos, sizeof(want_e));
    assert_memory_equal(buf, want_e, w.pos);
    assert_int_equal(lm_gr_group_value_decode(buf, w.pos, &a, &d), 0);
    assert_int_equal(d.protocol.len, -1);
    assert_int_equal(d.n_members, 0);

    /* older versions: v0 has neither rebalance timeout nor state timestamp nor instance id */
    const uint8_t v0[] = {0, 0,    0, 1, 'x', 0, 0,   0, 1, 0xff, 0xff, 0xff, 0xff,
                          0, 0,    0, 1, 0,   1, 'm', 0, 1, 'c',  0,    0,    0,
                          0, 0x10, 0, 0, 0,   0, 0,   0, 0, 0,    0};
    assert_int_equal(lm_gr_group_value_decode(v0, sizeof(v0), &a, &d), 0);
    assert_int_equal(d.state_ts_ms, -1);
    assert_int_equal(d.members[0].session_timeout_ms, 0x1000);
    assert_int_equal(d.members[0].rebalance_timeout_ms, 0x1000);
    assert_int_equal(d.members[0].instance_id.len, -1);

    /* v4 flexible round trip */
    v.version = 4;
    kafka_writer_init(&w, buf, sizeof(buf));
    assert_int_equal(lm_gr_group_value_encode(&w, &v), 0);
    assert_int_equal(w.pos, lm_gr_group_value_size(&v));
    assert_int_equal(buf[2], 9); /* compact string: length + 1 */
    assert_int_equal(lm_gr_group_value_decode(buf, w.pos, &a, &d), 0);
    assert_int_equal(d.version, 4);
    assert_true(kafka_str_eq(d.members[0].client_host, S("/h")));
    assert_int_equal(d.members[0].subscription.len, 2);
    kafka_arena_deinit(&a);
}

static void collect(void *ctx, struct kafka_str t)
{
    int *n = ctx;
    assert_true(kafka_str_eq(t, *n == 0 ? S("orders") : S("pay")));
    (*n)++;
}

static void test_consumer_subscription(void **st)
{
    (void)st;
    /* ConsumerProtocolSubscription v1: topics, user data (null), owned partitions (empty) */
    const uint8_t sub[] = {0, 1, 0,   0,   0,   2,    0,    6,    'o',  'r', 'd', 'e', 'r', 's',
                           0, 3, 'p', 'a', 'y', 0xff, 0xff, 0xff, 0xff, 0,   0,   0,   0};
    int n = 0;
    assert_int_equal(
        lm_group_consumer_subscription_topics((struct kafka_bytes){sub, sizeof(sub)}, collect, &n),
        0);
    assert_int_equal(n, 2);
    n = 0;
    assert_int_not_equal(
        lm_group_consumer_subscription_topics((struct kafka_bytes){sub, 10}, collect, &n), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_java_hash_and_partition),
        cmocka_unit_test(test_offset_key_golden),
        cmocka_unit_test(test_group_key_golden),
        cmocka_unit_test(test_offset_value_golden),
        cmocka_unit_test(test_group_value_golden),
        cmocka_unit_test(test_consumer_subscription),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
