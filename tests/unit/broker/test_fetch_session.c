/* Incremental fetch sessions (broker/fetch/fetch_session.c): partitions added, updated,
 * forgotten and rotated with the index agreeing with the order; ids within the shard's range;
 * epochs; what an incremental response must carry; Kafka's eviction order (stale first, then
 * the cheapest evictable, privileged newcomers and young sessions); the partition budget. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/fetch/fetch_session.h"

static struct fsess_key name_key(const char *topic, int32_t p)
{
    return (struct fsess_key){.topic = topic, .topic_len = strlen(topic), .partition = p};
}

static struct fsess_key id_key(uint8_t id, int32_t p)
{
    struct fsess_key k = {.partition = p};
    memset(k.topic_id, id, 16);
    return k;
}

static void check_index(const struct fsess *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        const struct fsess_part *p = &s->parts[i];
        struct fsess_key k = {
            .topic = p->topic, .topic_len = p->topic_len, .partition = p->partition};
        memcpy(k.topic_id, p->topic_id, 16);
        assert_int_equal(fsess_lookup(s, &k), i);
    }
}

static void put_update_forget_rotate(void **state)
{
    (void)state;
    struct fsess_cache c;
    assert_int_equal(fsess_cache_init(&c, 4, 1000, 100000, 0, 1, 7), 0);
    struct fsess *s = fsess_create(&c, 0, false, false, 3000);
    assert_non_null(s);
    char name[32];
    for (int32_t i = 0; i < 3000; i++) {
        snprintf(name, sizeof(name), "topic-%d", i % 7);
        struct fsess_key k = name_key(name, i);
        assert_int_equal(fsess_put(&c, s, &k, 100, i, -1, -1, -1), i);
    }
    assert_int_equal(s->n, 3000);
    assert_int_equal(c.parts_total, 3000);
    check_index(s);
    /* an update keeps the position and changes the parameters */
    struct fsess_key k5 = name_key("topic-5", 5);
    assert_int_equal(fsess_put(&c, s, &k5, 7, 555, 3, 4, 5), 5);
    assert_int_equal(s->parts[5].fetch_offset, 555);
    assert_int_equal(s->parts[5].max_bytes, 7);
    assert_int_equal(s->n, 3000);
    /* same partition number, other topic: another entry */
    struct fsess_key other = name_key("topic-6", 5);
    assert_int_equal(fsess_lookup(s, &other), -1);
    /* forget keeps the order of the rest */
    assert_true(fsess_forget(&c, s, &k5));
    assert_false(fsess_forget(&c, s, &k5));
    fsess_forget_done(s);
    assert_int_equal(s->n, 2999);
    assert_int_equal(c.parts_total, 2999);
    assert_int_equal(s->parts[5].partition, 6);
    check_index(s);
    /* rotate: flagged ones to the back, both groups in order */
    bool *back = calloc(s->n, sizeof(*back));
    assert_non_null(back);
    back[0] = back[10] = back[2998] = true;
    assert_int_equal(fsess_rotate(s, back), 0);
    free(back);
    assert_int_equal(s->parts[0].partition, 1);
    assert_int_equal(s->parts[2996].partition, 0);
    assert_int_equal(s->parts[2997].partition, 11);
    assert_int_equal(s->parts[2998].partition, 2999);
    check_index(s);
    fsess_remove(&c, s->id);
    assert_int_equal(c.count, 0);
    assert_int_equal(c.parts_total, 0);
    fsess_cache_free(&c);
}

/* Forgetting several partitions of a request: marked, then dropped together, the rest kept in
 * order; a partition forgotten and added again in one request is one entry. */
static void forget_many(void **state)
{
    (void)state;
    struct fsess_cache c;
    assert_int_equal(fsess_cache_init(&c, 4, 1000, 100000, 0, 1, 7), 0);
    struct fsess *s = fsess_create(&c, 0, false, false, 100);
    assert_non_null(s);
    char name[32];
    struct fsess_key k[100];
    for (int32_t i = 0; i < 100; i++) {
        snprintf(name, sizeof(name), "t%d", i);
        k[i] = name_key(strdup(name), i);
        assert_int_equal(fsess_put(&c, s, &k[i], 100, i, -1, -1, -1), i);
    }
    for (int32_t i = 0; i < 100; i += 3)
        assert_true(fsess_forget(&c, s, &k[i]));
    assert_false(fsess_forget(&c, s, &k[0]));
    assert_int_equal(fsess_lookup(s, &k[3]), -1);
    assert_int_equal(c.parts_total, 66);
    fsess_forget_done(s);
    assert_int_equal(s->n, 66);
    for (uint32_t j = 0; j < s->n; j++)
        assert_true(s->parts[j].partition % 3 != 0 &&
                    (j == 0 || s->parts[j].partition > s->parts[j - 1].partition));
    check_index(s);
    /* forgotten then put again before the removal is carried out: one entry, at the end */
    assert_true(fsess_forget(&c, s, &k[1]));
    assert_int_equal(fsess_put(&c, s, &k[1], 5, 55, -1, -1, -1), 66);
    fsess_forget_done(s);
    assert_int_equal(s->n, 66);
    assert_int_equal(s->parts[65].partition, 1);
    assert_int_equal(s->parts[65].fetch_offset, 55);
    check_index(s);
    fsess_remove(&c, s->id);
    assert_int_equal(c.parts_total, 0);
    fsess_cache_free(&c);
    for (int32_t i = 0; i < 100; i++)
        free((char *)k[i].topic);
}

static void ids_and_epochs(void **state)
{
    (void)state;
    struct fsess_cache c[3];
    for (uint32_t i = 0; i < 3; i++)
        assert_int_equal(fsess_cache_init(&c[i], 100, 1000, 1000, i, 3, 1 + i), 0);
    for (int n = 0; n < 50; n++)
        for (uint32_t i = 0; i < 3; i++) {
            struct fsess *s = fsess_create(&c[i], 0, false, true, 1);
            assert_non_null(s);
            assert_true(s->id > 0);
            assert_true(fsess_id_ours(&c[i], s->id));
            for (uint32_t j = 0; j < 3; j++)
                if (j != i) {
                    assert_false(fsess_id_ours(&c[j], s->id));
                    assert_null(fsess_find(&c[j], s->id));
                }
            assert_ptr_equal(fsess_find(&c[i], s->id), s);
            assert_int_equal(s->epoch, 1);
        }
    assert_false(fsess_id_ours(&c[0], 0));
    assert_int_equal(fsess_next_epoch(1), 2);
    assert_int_equal(fsess_next_epoch(INT32_MAX), 1);
    assert_int_equal(fsess_next_epoch(FSESS_FINAL_EPOCH), FSESS_FINAL_EPOCH);
    for (uint32_t i = 0; i < 3; i++)
        fsess_cache_free(&c[i]);
}

static void must_respond(void **state)
{
    (void)state;
    struct fsess_part p = {.high_watermark = -1, .local_log_start = -1};
    /* first answer: everything is news */
    assert_true(fsess_must_respond(&p, 0, 10, 0, 0, false, true));
    assert_false(fsess_must_respond(&p, 0, 10, 0, 0, false, true));
    assert_true(fsess_must_respond(&p, 5, 10, 0, 0, false, true));  /* records */
    assert_true(fsess_must_respond(&p, 0, 11, 0, 0, false, false)); /* hw moved, not kept */
    assert_int_equal(p.high_watermark, 10);
    assert_true(fsess_must_respond(&p, 0, 10, 3, 0, false, true)); /* log start moved */
    assert_false(fsess_must_respond(&p, 0, 10, 3, 0, false, true));
    assert_true(fsess_must_respond(&p, 0, 10, 3, 0, true, true)); /* diverging epoch */
    /* an error is always answered, and the partition answered again once it clears */
    assert_true(fsess_must_respond(&p, 0, -1, -1, 1, false, true));
    assert_true(fsess_must_respond(&p, 0, -1, -1, 1, false, true));
    assert_true(fsess_must_respond(&p, 0, 10, 3, 0, false, true));
    assert_false(fsess_must_respond(&p, 0, 10, 3, 0, false, true));
}

static struct fsess *make(struct fsess_cache *c, uint64_t now, bool priv, uint32_t n)
{
    struct fsess *s = fsess_create(c, now, priv, true, n);
    if (s == NULL)
        return NULL;
    for (uint32_t i = 0; i < n; i++) {
        struct fsess_key k = id_key(1, (int32_t)i);
        assert_true(fsess_put(c, s, &k, 1, 0, -1, -1, -1) >= 0);
    }
    return s;
}

static void eviction_order(void **state)
{
    (void)state;
    struct fsess_cache c;
    assert_int_equal(fsess_cache_init(&c, 2, 100, 1000, 0, 1, 3), 0);
    struct fsess *a = make(&c, 0, false, 5);
    struct fsess *b = make(&c, 0, false, 2);
    assert_non_null(a);
    assert_non_null(b);
    int32_t ida = a->id, idb = b->id;
    /* full, both young: no unprivileged newcomer gets in, however large */
    assert_null(make(&c, 50, false, 50));
    /* a privileged one evicts the cheapest unprivileged, young or not (b: fewer partitions) */
    struct fsess *f = make(&c, 60, true, 1);
    assert_non_null(f);
    int32_t idf = f->id;
    assert_null(fsess_find(&c, idb));
    assert_non_null(fsess_find(&c, ida));
    /* a is old now but in use, f privileged and young: a newcomer smaller than a waits */
    fsess_touch(fsess_find(&c, ida), 150);
    fsess_touch(f, 150);
    assert_null(make(&c, 180, false, 4));
    /* equal size does not evict either (ties keep the incumbent) */
    assert_null(make(&c, 180, false, 5));
    /* larger does: a goes */
    struct fsess *g = make(&c, 180, false, 6);
    assert_non_null(g);
    assert_null(fsess_find(&c, ida));
    assert_non_null(fsess_find(&c, idf));
    /* unused past eviction_ms: the least recently used goes first, whatever its size */
    fsess_touch(g, 400);
    struct fsess *h = make(&c, 420, false, 1);
    assert_non_null(h);
    assert_null(fsess_find(&c, idf));
    assert_non_null(fsess_find(&c, g->id));
    assert_int_equal(c.evictions, 3);
    assert_int_equal(c.count, 2);
    fsess_cache_free(&c);
}

static void budgets(void **state)
{
    (void)state;
    struct fsess_cache c;
    assert_int_equal(fsess_cache_init(&c, 10, 100, 8, 0, 1, 5), 0);
    assert_null(fsess_create(&c, 0, false, true, 9)); /* larger than the whole budget */
    struct fsess *s = make(&c, 0, false, 6);
    assert_non_null(s);
    struct fsess *t = fsess_create(&c, 0, false, true, 4);
    assert_non_null(t);
    struct fsess_key k;
    for (int32_t i = 0; i < 2; i++) {
        k = id_key(2, i);
        assert_true(fsess_put(&c, t, &k, 1, 0, -1, -1, -1) >= 0);
    }
    k = id_key(2, 2);
    assert_int_equal(fsess_put(&c, t, &k, 1, 0, -1, -1, -1), -1); /* budget spent */
    k = id_key(2, 1);
    assert_int_equal(fsess_put(&c, t, &k, 9, 9, -1, -1, -1), 1); /* updates still work */
    fsess_remove(&c, s->id);
    k = id_key(2, 2);
    assert_int_equal(fsess_put(&c, t, &k, 1, 0, -1, -1, -1), 2);
    fsess_cache_free(&c);
    /* no slots: no sessions */
    assert_int_equal(fsess_cache_init(&c, 0, 100, 8, 0, 1, 5), 0);
    assert_null(fsess_create(&c, 0, false, true, 1));
    fsess_cache_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(put_update_forget_rotate), cmocka_unit_test(forget_many),
        cmocka_unit_test(ids_and_epochs),           cmocka_unit_test(must_respond),
        cmocka_unit_test(eviction_order),           cmocka_unit_test(budgets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
