/* consensus/raft_wire: every message type round-trips field for field; every truncation and
 * random corruption of a valid encoding is refused or decodes to something that re-encodes
 * identically; nothing leaks (ASan) and nothing reads out of bounds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "consensus/raft_wire.h"

static struct raft_entry ents[3];
static uint8_t d0[5] = {1, 2, 3, 4, 5}, d2[3] = {9, 8, 7};

static struct raft_msg app_msg(void)
{
    ents[0] =
        (struct raft_entry){.first_index = 10, .last_index = 14, .term = 3, .len = 5, .data = d0};
    ents[1] = (struct raft_entry){
        .first_index = 15, .last_index = 15, .term = 3, .type = RAFT_ENTRY_NOOP};
    ents[2] = (struct raft_entry){.first_index = 16,
                                  .last_index = 20,
                                  .term = 4,
                                  .len = 3,
                                  .data = d2,
                                  .type = RAFT_ENTRY_NORMAL};
    return (struct raft_msg){.type = RAFT_MSG_APP,
                             .group = 7,
                             .from = 1,
                             .to = 2,
                             .term = 4,
                             .index = 9,
                             .log_term = 2,
                             .commit = 12,
                             .ent_last = 20,
                             .ent_last_term = 4,
                             .n_entries = 3,
                             .entries = ents};
}

static void same(const struct raft_msg *a, const struct raft_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->force, b->force);
    assert_int_equal(a->group, b->group);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_int_equal(a->term, b->term);
    assert_int_equal(a->index, b->index);
    assert_int_equal(a->log_term, b->log_term);
    assert_int_equal(a->commit, b->commit);
    assert_int_equal(a->hint_index, b->hint_index);
    assert_int_equal(a->hint_term, b->hint_term);
    assert_int_equal(a->ent_last, b->ent_last);
    assert_int_equal(a->ent_last_term, b->ent_last_term);
    assert_int_equal(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        assert_int_equal(a->entries[i].first_index, b->entries[i].first_index);
        assert_int_equal(a->entries[i].last_index, b->entries[i].last_index);
        assert_int_equal(a->entries[i].term, b->entries[i].term);
        assert_int_equal(a->entries[i].type, b->entries[i].type);
        assert_int_equal(a->entries[i].len, b->entries[i].len);
        if (a->entries[i].len)
            assert_memory_equal(a->entries[i].data, b->entries[i].data, a->entries[i].len);
    }
    if (a->type == RAFT_MSG_LOG_START) {
        assert_int_equal(a->start.index, b->start.index);
        assert_int_equal(a->start.term, b->start.term);
        assert_int_equal(a->start.conf.n_voters, b->start.conf.n_voters);
        assert_memory_equal(a->start.conf.voters, b->start.conf.voters,
                            a->start.conf.n_voters * sizeof(uint32_t));
        assert_int_equal(a->start.conf.n_learners, b->start.conf.n_learners);
        assert_int_equal(a->start.payload_len, b->start.payload_len);
        if (a->start.payload_len)
            assert_memory_equal(a->start.payload, b->start.payload, a->start.payload_len);
    }
}

static void roundtrip(const struct raft_msg *m)
{
    size_t n = raft_wire_size(m);
    uint8_t *buf = malloc(n);
    assert_non_null(buf);
    assert_int_equal(raft_wire_encode(m, buf, n), (int)n);
    assert_int_equal(raft_wire_encode(m, buf, n - 1), LM_E_TOO_LARGE);
    struct raft_msg d;
    size_t used = 0;
    assert_int_equal(raft_wire_decode(buf, n, &d, &used), 0);
    assert_int_equal(used, n);
    same(m, &d);
    raft_msg_deinit(&d);
    /* every truncation is refused, without a leak */
    for (size_t cut = 0; cut < n; cut++) {
        int rc = raft_wire_decode(buf, cut, &d, &used);
        assert_int_not_equal(rc, 0);
        assert_null(d.entries);
    }
    free(buf);
}

static void test_every_type(void **state)
{
    (void)state;
    struct raft_msg app = app_msg();
    roundtrip(&app);
    struct raft_msg hb = {.type = RAFT_MSG_HEARTBEAT,
                          .group = 0,
                          .from = 3,
                          .to = 1,
                          .term = 9,
                          .commit = 100,
                          .index = -1,
                          .ent_last = -1};
    roundtrip(&hb);
    for (uint8_t t = RAFT_MSG_APP_RESP; t < RAFT_MSG_TYPE_MAX; t++) {
        struct raft_msg m = {.type = t,
                             .reject = t % 2,
                             .force = t == RAFT_MSG_VOTE,
                             .group = 1ull << 40,
                             .from = 2,
                             .to = 5,
                             .term = t * 11ull,
                             .index = t * 3,
                             .log_term = 2,
                             .commit = -1,
                             .hint_index = 44,
                             .hint_term = 6,
                             .ent_last = t * 3};
        if (t == RAFT_MSG_LOG_START) {
            static uint8_t snap[] = "snapshot payload";
            m.start = (struct raft_log_start){
                .index = 500,
                .term = 7,
                .conf = {.n_voters = 3, .voters = {1, 2, 3}, .n_learners = 1, .learners = {9}},
                .payload_len = sizeof(snap),
                .payload = snap};
        }
        roundtrip(&m);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    uint8_t buf[4096];
    struct raft_msg m = app_msg();
    m.entries = NULL; /* a descriptor */
    assert_int_equal(raft_wire_encode(&m, buf, sizeof(buf)), LM_E_INVALID);
    m = app_msg();
    int n = raft_wire_encode(&m, buf, sizeof(buf));
    assert_true(n > 0);
    struct raft_msg d;
    size_t used;
    /* version, type */
    buf[0] = 2;
    assert_int_equal(raft_wire_decode(buf, (size_t)n, &d, &used), LM_E_CORRUPT);
    buf[0] = RAFT_WIRE_VERSION;
    buf[1] = RAFT_MSG_TYPE_MAX;
    assert_int_equal(raft_wire_decode(buf, (size_t)n, &d, &used), LM_E_CORRUPT);
    /* entries that disagree with ent_last */
    m.ent_last = 21;
    n = raft_wire_encode(&m, buf, sizeof(buf));
    assert_int_equal(raft_wire_decode(buf, (size_t)n, &d, &used), LM_E_CORRUPT);
    /* a gap between entries */
    m = app_msg();
    ents[1].first_index = 16;
    ents[1].last_index = 15;
    n = raft_wire_encode(&m, buf, sizeof(buf));
    assert_int_equal(raft_wire_decode(buf, (size_t)n, &d, &used), LM_E_CORRUPT);
}

static void test_corruption(void **state)
{
    (void)state;
    struct raft_msg m = app_msg();
    uint8_t good[512], buf[512], again[1024];
    int n = raft_wire_encode(&m, good, sizeof(good));
    assert_true(n > 0);
    uint64_t seed = 88172645463325252ull;
    for (int round = 0; round < 20000; round++) {
        memcpy(buf, good, (size_t)n);
        int flips = 1 + round % 4;
        for (int f = 0; f < flips; f++) {
            seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
            buf[seed % (uint64_t)n] ^= (uint8_t)(1u << (seed >> 32) % 8);
        }
        struct raft_msg d;
        size_t used;
        if (raft_wire_decode(buf, (size_t)n, &d, &used) != 0)
            continue;
        int k = raft_wire_encode(&d, again, sizeof(again));
        assert_int_equal(k, (int)used);
        assert_memory_equal(again, buf, used);
        raft_msg_deinit(&d);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_corruption),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
