/* SPSC mailbox (order, full, two-thread stress) and the in-order response queue. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "broker/mailbox.h"
#include "broker/respq.h"
#include "common/lm_err.h"

static void mailbox_order_and_full(void **state)
{
    (void)state;
    struct broker_mailbox mb;
    assert_int_equal(broker_mailbox_init(&mb, 8), 0);
    uintptr_t v;
    for (v = 1; v <= 8; v++)
        assert_int_equal(broker_mailbox_push(&mb, (void *)v), 0);
    assert_int_equal(broker_mailbox_push(&mb, (void *)(uintptr_t)9), LM_E_FULL);
    assert_int_equal(broker_mailbox_count(&mb), 8);
    for (v = 1; v <= 3; v++)
        assert_int_equal((uintptr_t)broker_mailbox_pop(&mb), v);
    /* wraps around: room for three more, then full again */
    for (v = 9; v <= 11; v++)
        assert_int_equal(broker_mailbox_push(&mb, (void *)v), 0);
    assert_int_equal(broker_mailbox_push(&mb, (void *)(uintptr_t)12), LM_E_FULL);
    for (v = 4; v <= 11; v++)
        assert_int_equal((uintptr_t)broker_mailbox_pop(&mb), v);
    assert_null(broker_mailbox_pop(&mb));
    broker_mailbox_deinit(&mb);
}

enum { STRESS_ITEMS = 200000 };

static void *producer(void *arg)
{
    struct broker_mailbox *mb = arg;
    uintptr_t fulls = 0;
    for (uintptr_t v = 1; v <= STRESS_ITEMS; v++) {
        while (broker_mailbox_push(mb, (void *)v) == LM_E_FULL) {
            fulls++;
            sched_yield();
        }
    }
    return (void *)fulls;
}

static void mailbox_two_threads(void **state)
{
    (void)state;
    struct broker_mailbox mb;
    assert_int_equal(broker_mailbox_init(&mb, 64), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, producer, &mb), 0);
    uintptr_t want = 1;
    while (want <= STRESS_ITEMS) {
        void *p = broker_mailbox_pop(&mb);
        if (p == NULL) {
            sched_yield();
            continue;
        }
        assert_int_equal((uintptr_t)p, want); /* FIFO, nothing lost or duplicated */
        want++;
    }
    void *fulls = NULL;
    pthread_join(t, &fulls);
    assert_null(broker_mailbox_pop(&mb));
    broker_mailbox_deinit(&mb);
}

static void respq_out_of_order_completion(void **state)
{
    (void)state;
    struct broker_respq q;
    assert_int_equal(broker_respq_init(&q, 4), 0);
    uint64_t s[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(broker_respq_reserve(&q, &s[i]), 0);
    uint64_t extra;
    assert_int_equal(broker_respq_reserve(&q, &extra), LM_E_FULL); /* in-flight bound */
    int items[4] = {0, 1, 2, 3};
    broker_respq_complete(&q, s[2], &items[2]);
    broker_respq_complete(&q, s[1], &items[1]);
    assert_null(broker_respq_peek(&q)); /* the oldest has not completed */
    broker_respq_complete(&q, s[0], &items[0]);
    assert_ptr_equal(broker_respq_pop(&q), &items[0]);
    assert_ptr_equal(broker_respq_pop(&q), &items[1]);
    assert_ptr_equal(broker_respq_pop(&q), &items[2]);
    assert_null(broker_respq_peek(&q)); /* 3 still pending */
    assert_int_equal(broker_respq_inflight(&q), 1);
    /* room again: reserve wraps over popped slots */
    uint64_t s4, s5;
    assert_int_equal(broker_respq_reserve(&q, &s4), 0);
    assert_int_equal(broker_respq_reserve(&q, &s5), 0);
    assert_true(s4 == s[3] + 1 && s5 == s4 + 1);
    broker_respq_complete(&q, s5, &items[1]);
    broker_respq_complete(&q, s4, &items[0]);
    assert_null(broker_respq_peek(&q));
    broker_respq_complete(&q, s[3], &items[3]);
    assert_ptr_equal(broker_respq_pop(&q), &items[3]);
    assert_ptr_equal(broker_respq_pop(&q), &items[0]);
    assert_ptr_equal(broker_respq_pop(&q), &items[1]);
    assert_int_equal(broker_respq_inflight(&q), 0);
    broker_respq_deinit(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mailbox_order_and_full),
        cmocka_unit_test(mailbox_two_threads),
        cmocka_unit_test(respq_out_of_order_completion),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
