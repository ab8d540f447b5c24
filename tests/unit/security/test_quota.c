/* Client quotas (broker/security/quota.h) and their metadata records (LM_META_QUOTA): KIP-55's
 * eight levels of precedence and the sensor names they give; Kafka's sampled rate (the
 * minimum window of samples - 1 windows, expiry of old samples) and throttle time; the bounded
 * sensor table (reuse of the least recently used, idle expiry); key and value validation; the
 * record's encoding, apply and removal, and the image's bound. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/meta/meta_state.h"
#include "broker/security/quota.h"
#include "common/lm_err.h"

static struct lm_quota_entry entry(uint8_t up, const char *u, uint8_t cp, const char *c, int k,
                                   double v)
{
    struct lm_quota_entry e;
    memset(&e, 0, sizeof(e));
    e.entity.user_part = up;
    e.entity.client_part = cp;
    snprintf(e.entity.user, sizeof(e.entity.user), "%s", u);
    snprintf(e.entity.client, sizeof(e.entity.client), "%s", c);
    e.set = (uint8_t)(1u << k);
    e.value[k] = v;
    return e;
}

enum { N = LM_QUOTA_PART_NONE, D = LM_QUOTA_PART_DEFAULT, Y = LM_QUOTA_PART_NAMED };

static void test_precedence(void **state)
{
    (void)state;
    const int P = LM_QUOTA_PRODUCER_BYTE_RATE;
    /* one entry per level, value = 10 * level; removing the best each round exposes the next */
    struct lm_quota_entry all[8] = {
        entry(N, "", D, "", P, 80),      entry(N, "", Y, "app", P, 70),
        entry(D, "", N, "", P, 60),      entry(D, "", D, "", P, 50),
        entry(D, "", Y, "app", P, 40),   entry(Y, "alice", N, "", P, 30),
        entry(Y, "alice", D, "", P, 20), entry(Y, "alice", Y, "app", P, 10),
    };
    const char *want_user[9] = {"", "alice", "alice", "alice", "alice", "alice", "alice", "", ""};
    const char *want_client[9] = {"", "app", "app", "", "app", "app", "", "app", "app"};
    for (int level = 1; level <= 8; level++) {
        double limit = -1;
        const char *tu = NULL, *tc = NULL;
        int got = lm_quota_resolve(all, (size_t)(9 - level), P, "alice", "app", &limit, &tu, &tc);
        assert_int_equal(got, level);
        assert_true(limit == 10.0 * level);
        assert_string_equal(tu, want_user[level]);
        assert_string_equal(tc, want_client[level]);
    }
    double limit = 0;
    const char *tu = NULL, *tc = NULL;
    /* another user and client only meet the defaults: /users/<default>/clients/<default>, a
     * sensor per (user, client) */
    assert_int_equal(lm_quota_resolve(all, 8, P, "bob", "other", &limit, &tu, &tc), 5);
    assert_true(limit == 50);
    assert_string_equal(tu, "bob");
    assert_string_equal(tc, "other");
    /* without it, /users/<default>: a sensor per user */
    struct lm_quota_entry no5[7] = {all[0], all[1], all[2], all[4], all[5], all[6], all[7]};
    assert_int_equal(lm_quota_resolve(no5, 7, P, "bob", "other", &limit, &tu, &tc), 6);
    assert_true(limit == 60);
    assert_string_equal(tu, "bob");
    assert_string_equal(tc, "");
    /* a key nobody set is unlimited */
    assert_int_equal(
        lm_quota_resolve(all, 8, LM_QUOTA_CONSUMER_BYTE_RATE, "alice", "app", &limit, &tu, &tc), 0);
    /* an entry order does not matter: the best level wins wherever it sits */
    struct lm_quota_entry rev[8];
    for (int i = 0; i < 8; i++)
        rev[i] = all[7 - i];
    assert_int_equal(lm_quota_resolve(rev, 8, P, "alice", "app", &limit, &tu, &tc), 1);
    assert_true(limit == 10);
}

static void test_rate_and_throttle(void **state)
{
    (void)state;
    struct lm_quota_window w = {.samples = 11, .window_ms = 1000};
    struct lm_quota_rate r;
    memset(&r, 0, sizeof(r));
    int64_t elapsed = 0;
    /* a first burst is measured over samples - 1 windows, not the few ms since it began */
    lm_quota_rate_record(&r, &w, 100000, 0);
    double rate = lm_quota_rate_measure(&r, &w, 0, &elapsed);
    assert_int_equal(elapsed, 10000);
    assert_true(rate == 10000.0);
    /* 20 s at 2000 B every 10 ms (200 KB/s): the rate settles at 200 KB/s over 11 windows */
    memset(&r, 0, sizeof(r));
    for (int64_t t = 0; t < 20000; t += 10)
        lm_quota_rate_record(&r, &w, 2000, t);
    rate = lm_quota_rate_measure(&r, &w, 19999, &elapsed);
    assert_true(elapsed >= 10000 && elapsed <= 11000);
    assert_true(rate > 190000 && rate < 210000);
    /* against a 100 KB/s quota the client must wait until the window has doubled */
    int64_t th = lm_quota_throttle_ms(rate, 100000, elapsed, 11000);
    assert_true(th >= 9000 && th <= 11000);
    assert_int_equal(lm_quota_throttle_ms(rate, 100000, elapsed, 3000), 3000);
    assert_int_equal(lm_quota_throttle_ms(99999, 100000, 10000, 11000), 0);
    assert_int_equal(lm_quota_throttle_ms(150000, 100000, 10000, 11000), 5000);
    assert_int_equal(lm_quota_throttle_ms(1, 0, 10000, 11000), 11000);
    /* after samples * window of silence every sample has expired */
    rate = lm_quota_rate_measure(&r, &w, 19999 + 11000, &elapsed);
    assert_true(rate == 0);
}

static void test_table(void **state)
{
    (void)state;
    struct lm_quota_table t;
    struct lm_quota_window w = {.samples = 11, .window_ms = 1000};
    assert_int_equal(lm_quota_table_init(&t, 0, w), LM_E_INVALID);
    assert_int_equal(lm_quota_table_init(&t, 2, w), 0);
    const int P = LM_QUOTA_PRODUCER_BYTE_RATE;
    /* 10 KB/s: 50 KB at once is 5 KB/s over the 10 s minimum window; 150 KB more 1 ms later is
     * 200 KB over 10.001 s, 19998 B/s: wait (19998 - 10000) / 10000 * 10001 ms */
    assert_int_equal(lm_quota_table_record(&t, P, "alice", "", 10000, 50000, 0), 0);
    int64_t th = lm_quota_table_record(&t, P, "alice", "", 10000, 150000, 1);
    assert_int_equal(th, 9999);
    /* the consumer sensor of the same names is another sensor */
    assert_int_equal(
        lm_quota_table_record(&t, LM_QUOTA_CONSUMER_BYTE_RATE, "alice", "", 10000, 1000, 2), 0);
    assert_non_null(lm_quota_table_find(&t, P, "alice", "", 3));
    assert_int_equal(t.evictions, 0);
    /* a third sensor in a table of two reuses the least recently used (alice's producer) */
    assert_int_equal(lm_quota_table_record(&t, P, "bob", "", 10000, 1, 4), 0);
    assert_int_equal(t.evictions, 1);
    assert_null(lm_quota_table_find(&t, P, "alice", "", 5));
    assert_non_null(lm_quota_table_find(&t, P, "bob", "", 5));
    /* an hour idle: the sensor is gone and its slot free (no eviction counted) */
    assert_null(lm_quota_table_find(&t, P, "bob", "", 4 + LM_QUOTA_SENSOR_IDLE_MS));
    assert_int_equal(
        lm_quota_table_record(&t, P, "carol", "c1", 10000, 1, 4 + LM_QUOTA_SENSOR_IDLE_MS), 0);
    assert_int_equal(t.evictions, 1);
    /* a byte-rate throttle is not bounded by the window (QuotaUtils.throttleTime): 1 MB at
     * once against 10 KB/s is 100 KB/s over 10 s, a wait of 9 windows of 10 s */
    assert_int_equal(lm_quota_table_record(&t, P, "dave", "", 10000, 1000000, 10), 90000);
    /* names past the limit are cut, and still find their sensor */
    char longname[400];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_int_equal(lm_quota_table_record(&t, P, longname, "", 10000, 1, 5), 0);
    assert_non_null(lm_quota_table_find(&t, P, longname, "", 6));
    lm_quota_table_deinit(&t);
}

static void test_keys_and_values(void **state)
{
    (void)state;
    assert_int_equal(lm_quota_key_parse("producer_byte_rate", 18), LM_QUOTA_PRODUCER_BYTE_RATE);
    assert_int_equal(lm_quota_key_parse("consumer_byte_rate", 18), LM_QUOTA_CONSUMER_BYTE_RATE);
    assert_int_equal(lm_quota_key_parse("request_percentage", 18), LM_QUOTA_REQUEST_PERCENTAGE);
    assert_int_equal(lm_quota_key_parse("controller_mutation_rate", 24),
                     LM_QUOTA_CONTROLLER_MUTATION_RATE);
    assert_int_equal(lm_quota_key_parse("producer_byte_rat", 17), -1);
    assert_int_equal(lm_quota_key_parse("connection_creation_rate", 24), -1);
    assert_string_equal(lm_quota_key_name(LM_QUOTA_CONSUMER_BYTE_RATE), "consumer_byte_rate");
    assert_null(lm_quota_value_invalid(LM_QUOTA_PRODUCER_BYTE_RATE, 100000));
    assert_non_null(lm_quota_value_invalid(LM_QUOTA_PRODUCER_BYTE_RATE, 1000.5));
    assert_non_null(lm_quota_value_invalid(LM_QUOTA_PRODUCER_BYTE_RATE, -1));
    assert_null(lm_quota_value_invalid(LM_QUOTA_REQUEST_PERCENTAGE, 12.5));
    assert_non_null(lm_quota_value_invalid(LM_QUOTA_CONTROLLER_MUTATION_RATE, -0.5));
    struct lm_quota_entity e;
    memset(&e, 0, sizeof(e));
    assert_false(lm_quota_entity_valid(&e)); /* no part at all */
    e.user_part = LM_QUOTA_PART_NAMED;
    assert_false(lm_quota_entity_valid(&e)); /* an empty name */
    strcpy(e.user, "alice");
    assert_true(lm_quota_entity_valid(&e));
    e.client_part = LM_QUOTA_PART_DEFAULT;
    assert_true(lm_quota_entity_valid(&e));
}

static struct lm_meta_record qrec(uint8_t up, const char *u, uint8_t cp, const char *c, int k,
                                  double v, bool remove)
{
    return (struct lm_meta_record){.type = LM_META_QUOTA,
                                   .quota_user_part = up,
                                   .quota_user = u,
                                   .quota_client_part = cp,
                                   .quota_client = c,
                                   .quota_key = (int8_t)k,
                                   .quota_value = v,
                                   .quota_remove = remove};
}

static void test_records(void **state)
{
    (void)state;
    struct lm_meta_state st;
    lm_meta_state_init(&st);
    const int P = LM_QUOTA_PRODUCER_BYTE_RATE, C = LM_QUOTA_CONSUMER_BYTE_RATE;
    struct lm_meta_record r = qrec(Y, "alice", D, NULL, P, 1048576, false);
    uint8_t buf[1024];
    int n = lm_meta_record_encode(&r, buf, sizeof(buf));
    assert_true(n > 0);
    struct lm_meta_record d;
    struct lm_config_entry *cfg = NULL;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &cfg), 0);
    assert_int_equal(d.type, LM_META_QUOTA);
    assert_int_equal(d.quota_user_part, Y);
    assert_string_equal(d.quota_user, "alice");
    assert_int_equal(d.quota_client_part, D);
    assert_int_equal(d.quota_key, P);
    assert_true(d.quota_value == 1048576);
    assert_false(d.quota_remove);
    /* a truncated record does not decode */
    assert_int_not_equal(lm_meta_record_decode(buf, (size_t)n - 1, &d, &cfg), 0);
    assert_int_equal(lm_meta_state_apply(&st, &r), 0);
    struct lm_meta_record r2 = qrec(Y, "alice", D, NULL, C, 2048, false);
    assert_int_equal(lm_meta_state_apply(&st, &r2), 0);
    assert_int_equal(st.quota_count, 1);
    assert_int_equal(st.quotas[0].set, 3);
    /* bad ones: a negative value, no part, an unknown key */
    struct lm_meta_record bad = qrec(Y, "alice", N, NULL, P, -5, false);
    assert_int_equal(lm_meta_state_apply(&st, &bad), LM_E_INVALID);
    bad = qrec(N, NULL, N, NULL, P, 5, false);
    assert_int_equal(lm_meta_state_apply(&st, &bad), LM_E_INVALID);
    bad = qrec(Y, "alice", N, NULL, 9, 5, false);
    assert_int_equal(lm_meta_state_apply(&st, &bad), LM_E_INVALID);
    /* a copy of the image keeps the quotas */
    struct lm_meta_state cp;
    assert_int_equal(lm_meta_state_copy(&cp, &st), 0);
    assert_int_equal(cp.quota_count, 1);
    assert_true(cp.quotas[0].value[C] == 2048);
    lm_meta_state_deinit(&cp);
    /* removing both keys drops the entity */
    struct lm_meta_record rm = qrec(Y, "alice", D, NULL, P, 0, true);
    assert_int_equal(lm_meta_state_apply(&st, &rm), 0);
    assert_int_equal(st.quota_count, 1);
    assert_int_equal(st.quotas[0].set, 1u << C);
    rm.quota_key = (int8_t)C;
    assert_int_equal(lm_meta_state_apply(&st, &rm), 0);
    assert_int_equal(st.quota_count, 0);
    /* the image's bound */
    char name[32];
    for (int i = 0; i < LM_META_QUOTAS_MAX; i++) {
        snprintf(name, sizeof(name), "c%d", i);
        struct lm_meta_record q = qrec(N, NULL, Y, name, P, 1000, false);
        assert_int_equal(lm_meta_state_apply(&st, &q), 0);
    }
    struct lm_meta_record over = qrec(N, NULL, Y, "one-more", P, 1000, false);
    assert_int_equal(lm_meta_state_apply(&st, &over), LM_E_FULL);
    lm_meta_state_deinit(&st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_precedence), cmocka_unit_test(test_rate_and_throttle),
        cmocka_unit_test(test_table),      cmocka_unit_test(test_keys_and_values),
        cmocka_unit_test(test_records),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
