/* Connection quotas (broker/connquota.c, Kafka's ConnectionQuotas): max.connections makes the
 * next connection wait until one is released, max.connection.creation.rate spaces them out,
 * max.connections.per.ip (and its overrides) refuses the one over the limit, and the bounded
 * per-address table stays consistent through heavy churn. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/config.h"
#include "broker/connquota.h"
#include "common/lm_err.h"

static struct sockaddr_in v4(uint32_t host_order)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1234)};
    a.sin_addr.s_addr = htonl(host_order);
    return a;
}

static int take(struct broker_connquota *q, uint32_t ip, uint64_t now_us,
                struct broker_connquota_slot *slot, uint32_t *retry_ms)
{
    struct sockaddr_in a = v4(ip);
    return broker_connquota_acquire(q, (struct sockaddr *)&a, now_us, slot, retry_ms);
}

static void per_ip_limit_and_overrides(void **state)
{
    (void)state;
    struct broker_config cfg;
    broker_config_init(&cfg);
    assert_int_equal(broker_config_set(&cfg, "max.connections.per.ip", "2"), 0);
    assert_int_equal(
        broker_config_set(&cfg, "max.connections.per.ip.overrides", "10.0.0.9:4, [::1]:1"), 0);
    assert_int_equal(cfg.ip_overrides_count, 2);
    struct broker_connquota q;
    assert_int_equal(broker_connquota_init(&q, &cfg), 0);
    struct broker_connquota_slot s[6];
    uint32_t retry = 0;
    assert_int_equal(take(&q, 0x0a000001, 0, &s[0], &retry), 0);
    assert_int_equal(take(&q, 0x0a000001, 0, &s[1], &retry), 0);
    assert_int_equal(take(&q, 0x0a000001, 0, &s[2], &retry), LM_E_FULL);
    assert_int_equal(broker_connquota_total(&q), 2);             /* the refused one holds nothing */
    assert_int_equal(take(&q, 0x0a000002, 0, &s[2], &retry), 0); /* another address */
    broker_connquota_release(&q, &s[0]);
    assert_int_equal(take(&q, 0x0a000001, 0, &s[0], &retry), 0);
    broker_connquota_release(&q, &s[0]);
    broker_connquota_release(&q, &s[1]);
    broker_connquota_release(&q, &s[2]);
    for (int i = 0; i < 4; i++) /* the override */
        assert_int_equal(take(&q, 0x0a000009, 0, &s[i], &retry), 0);
    assert_int_equal(take(&q, 0x0a000009, 0, &s[4], &retry), LM_E_FULL);
    for (int i = 0; i < 4; i++)
        broker_connquota_release(&q, &s[i]);
    struct sockaddr_in6 a6 = {.sin6_family = AF_INET6};
    a6.sin6_addr = in6addr_loopback;
    assert_int_equal(broker_connquota_acquire(&q, (struct sockaddr *)&a6, 0, &s[0], &retry), 0);
    assert_int_equal(broker_connquota_acquire(&q, (struct sockaddr *)&a6, 0, &s[1], &retry),
                     LM_E_FULL);
    broker_connquota_release(&q, &s[0]);
    assert_int_equal(broker_connquota_total(&q), 0);
    assert_int_equal(q.ips_used, 0);
    broker_connquota_deinit(&q);
    broker_config_deinit(&cfg);
}

static void bad_overrides_rejected(void **state)
{
    (void)state;
    struct broker_config cfg;
    broker_config_init(&cfg);
    assert_int_equal(broker_config_set(&cfg, "max.connections.per.ip.overrides", "1.2.3.4"),
                     LM_E_CONFIG);
    assert_int_equal(broker_config_set(&cfg, "max.connections.per.ip.overrides", "1.2.3.4:x"),
                     LM_E_CONFIG);
    assert_int_equal(broker_config_set(&cfg, "max.connections.per.ip.overrides", "1.2.3.4:-1"),
                     LM_E_CONFIG);
    assert_int_equal(broker_config_set(&cfg, "max.connections", "-1"), LM_E_CONFIG);
    assert_int_equal(broker_config_set(&cfg, "max.connections.per.ip.overrides", ""), 0);
    assert_int_equal(cfg.ip_overrides_count, 0);
    broker_config_deinit(&cfg);
}

static void max_connections_waits(void **state)
{
    (void)state;
    struct broker_config cfg;
    broker_config_init(&cfg);
    assert_int_equal(broker_config_set(&cfg, "max.connections", "3"), 0);
    struct broker_connquota q;
    assert_int_equal(broker_connquota_init(&q, &cfg), 0);
    struct broker_connquota_slot s[4];
    uint32_t retry = 0;
    for (int i = 0; i < 3; i++)
        assert_int_equal(take(&q, 0x0a000001 + (uint32_t)i, 0, &s[i], &retry), 0);
    assert_int_equal(take(&q, 0x0a000005, 0, &s[3], &retry), LM_E_AGAIN);
    assert_true(retry > 0);
    assert_int_equal(broker_connquota_total(&q), 3);
    broker_connquota_release(&q, &s[1]);
    assert_int_equal(take(&q, 0x0a000005, 0, &s[3], &retry), 0);
    broker_connquota_release(&q, &s[0]);
    broker_connquota_release(&q, &s[2]);
    broker_connquota_release(&q, &s[3]);
    assert_int_equal(broker_connquota_total(&q), 0);
    broker_connquota_deinit(&q);
    broker_config_deinit(&cfg);
}

static void creation_rate_spaces_connections(void **state)
{
    (void)state;
    struct broker_config cfg;
    broker_config_init(&cfg);
    assert_int_equal(broker_config_set(&cfg, "max.connection.creation.rate", "5"), 0);
    struct broker_connquota q;
    assert_int_equal(broker_connquota_init(&q, &cfg), 0);
    struct broker_connquota_slot s;
    uint32_t retry = 0;
    uint64_t now = 10u * 1000000u;
    for (int i = 0; i < 5; i++) { /* a burst of one second's worth */
        assert_int_equal(take(&q, 1, now, &s, &retry), 0);
        broker_connquota_release(&q, &s);
    }
    assert_int_equal(take(&q, 1, now, &s, &retry), LM_E_AGAIN);
    assert_in_range(retry, 150, 250); /* one per 200 ms */
    assert_int_equal(broker_connquota_total(&q), 0);
    assert_int_equal(take(&q, 1, now + 100000, &s, &retry), LM_E_AGAIN);
    assert_int_equal(take(&q, 1, now + 200000, &s, &retry), 0);
    broker_connquota_release(&q, &s);
    /* 10 s later: the burst is available again, not 50 saved-up connections */
    int ok = 0;
    for (int i = 0; i < 20; i++) {
        if (take(&q, 1, now + 10000000, &s, &retry) == 0) {
            ok++;
            broker_connquota_release(&q, &s);
        }
    }
    assert_int_equal(ok, 5);
    broker_connquota_deinit(&q);
    broker_config_deinit(&cfg);
}

/* Thousands of addresses coming and going in random order: the table (linear probing with
 * backward-shift deletion) must always find an address's entry. */
static void table_churn(void **state)
{
    (void)state;
    struct broker_config cfg;
    broker_config_init(&cfg);
    assert_int_equal(broker_config_set(&cfg, "max.connections.per.ip", "1"), 0);
    struct broker_connquota q;
    assert_int_equal(broker_connquota_init(&q, &cfg), 0);
    enum { N = 20000 };
    struct broker_connquota_slot *slots = calloc(N, sizeof(*slots));
    uint8_t *held = calloc(N, 1);
    assert_non_null(slots);
    assert_non_null(held);
    uint32_t live = 0, retry = 0, seed = 12345;
    for (int step = 0; step < 400000; step++) {
        seed = seed * 1103515245u + 12345u;
        uint32_t i = (seed >> 8) % N;
        if (held[i]) {
            if (seed & 1) {
                broker_connquota_release(&q, &slots[i]);
                held[i] = 0;
                live--;
            } else {
                struct broker_connquota_slot extra;
                assert_int_equal(take(&q, 0x0a000000 + i, 0, &extra, &retry), LM_E_FULL);
            }
        } else {
            assert_int_equal(take(&q, 0x0a000000 + i, 0, &slots[i], &retry), 0);
            held[i] = 1;
            live++;
        }
        assert_int_equal(q.ips_used, live);
    }
    for (uint32_t i = 0; i < N; i++)
        if (held[i])
            broker_connquota_release(&q, &slots[i]);
    assert_int_equal(q.ips_used, 0);
    assert_int_equal(broker_connquota_total(&q), 0);
    free(slots);
    free(held);
    broker_connquota_deinit(&q);
    broker_config_deinit(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(per_ip_limit_and_overrides),
        cmocka_unit_test(bad_overrides_rejected),
        cmocka_unit_test(max_connections_waits),
        cmocka_unit_test(creation_rate_spaces_connections),
        cmocka_unit_test(table_churn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
