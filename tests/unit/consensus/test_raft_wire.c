/* Raft wire codec tests: golden bytes, round trips of every message type, every truncation,
 * random byte flips (seeded; the seed is printed and RAFT_WIRE_SEED replays one), the entry and
 * byte limits, and the malformed messages both directions refuse. Every decode reads from a
 * buffer allocated at exactly the length given, so ASan sees any read past it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_assert.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "consensus/raft.h"
#include "consensus/raft_wire.h"

/* Header field offsets (raft_wire.h). */
#define OFF_VERSION   0
#define OFF_TYPE      1
#define OFF_REJECT    2
#define OFF_FORCE     3
#define OFF_INDEX     28
#define OFF_ENT_LAST  68
#define OFF_ENT_TERM  76
#define OFF_N_ENTRIES 84
/* Entry field offsets from the entry's start. */
#define ENT_FIRST 0
#define ENT_LAST  8
#define ENT_TYPE  24
#define ENT_LEN   25

#define SAMPLES_MAX 48

static uint8_t bytes_a[300], bytes_b[1], bytes_c[77], payload[37];
static struct raft_entry entries3[3];
static struct raft_msg samples[SAMPLES_MAX];
static size_t n_samples;

static void fill_pattern(uint8_t *p, size_t n, uint8_t seed)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(seed + i * 31u);
}

/* Every scalar field distinct and with high bits set, so a swapped or narrowed field shows. */
static struct raft_msg base_msg(uint8_t type)
{
    struct raft_msg m = {.type = type,
                         .reject = true,
                         .force = false,
                         .group = 0x0102030405060708ull,
                         .from = 0xA1B2C3D4u,
                         .to = 7,
                         .term = 0xF0E0D0C0B0A09080ull,
                         .index = 99,
                         .log_term = 0x8000000000000001ull,
                         .commit = -1,
                         .hint_index = INT64_MIN,
                         .hint_term = 42,
                         .ent_last = 99,
                         .ent_last_term = 0x8000000000000001ull};
    return m;
}

static void add_sample(struct raft_msg m)
{
    assert_true(n_samples < SAMPLES_MAX);
    samples[n_samples++] = m;
}

/* Builds the sample set: every type without entries, APPs with entries (one of them empty),
 * LOG_STARTs with a conf and payload, an empty one and a full conf. */
static void build_samples(void)
{
    n_samples = 0;
    fill_pattern(bytes_a, sizeof(bytes_a), 1);
    fill_pattern(bytes_b, sizeof(bytes_b), 2);
    fill_pattern(bytes_c, sizeof(bytes_c), 3);
    fill_pattern(payload, sizeof(payload), 4);
    entries3[0] = (struct raft_entry){.first_index = 100,
                                      .last_index = 104,
                                      .term = 3,
                                      .type = RAFT_ENTRY_NORMAL,
                                      .len = sizeof(bytes_a),
                                      .data = bytes_a};
    entries3[1] = (struct raft_entry){
        .first_index = 105, .last_index = 105, .term = 4, .type = RAFT_ENTRY_NOOP};
    entries3[2] = (struct raft_entry){.first_index = 106,
                                      .last_index = 200,
                                      .term = 0xFFFFFFFF00000004ull,
                                      .type = RAFT_ENTRY_CONF,
                                      .len = sizeof(bytes_c),
                                      .data = bytes_c};
    for (uint8_t t = 1; t < RAFT_MSG_TYPE_MAX; t++) {
        struct raft_msg m = base_msg(t);
        if (t == RAFT_MSG_LOG_START) {
            m.start.index = 0x7FFFFFFFFFFFFFF0ll;
            m.start.term = 9;
            m.start.conf = (struct raft_conf){
                .n_voters = 3, .voters = {1, 2, 0xFFFFFFFFu}, .n_learners = 2, .learners = {5, 6}};
            m.start.payload_len = sizeof(payload);
            m.start.payload = payload;
        }
        add_sample(m);
        struct raft_msg f = m;
        f.reject = !m.reject;
        f.force = !m.force;
        add_sample(f);
    }
    struct raft_msg app = base_msg(RAFT_MSG_APP);
    app.n_entries = 3;
    app.entries = entries3;
    app.ent_last = 200;
    app.ent_last_term = entries3[2].term;
    add_sample(app);
    app.n_entries = 1;
    app.entries = &entries3[1];
    app.index = 104;
    app.ent_last = 105;
    app.ent_last_term = 4;
    add_sample(app);
    static struct raft_entry one = {.first_index = -5, .last_index = -5, .len = 1, .data = bytes_b};
    app.index = -6;
    app.entries = &one;
    app.ent_last = -5;
    app.ent_last_term = 0;
    add_sample(app);
    struct raft_msg ls = base_msg(RAFT_MSG_LOG_START); /* empty log start */
    add_sample(ls);
    ls.start.conf.n_voters = RAFT_NODES_MAX;
    ls.start.conf.n_learners = RAFT_NODES_MAX;
    for (uint32_t i = 0; i < RAFT_NODES_MAX; i++) {
        ls.start.conf.voters[i] = i + 1;
        ls.start.conf.learners[i] = 0x80000000u + i;
    }
    ls.start.payload_len = 1;
    ls.start.payload = bytes_b;
    add_sample(ls);
    /* flags bit 2: a quiescing heartbeat and the answer of a follower that quiesced */
    struct raft_msg q = base_msg(RAFT_MSG_HEARTBEAT);
    q.quiesce = true;
    add_sample(q);
    q = base_msg(RAFT_MSG_HEARTBEAT_RESP);
    q.quiesce = true;
    add_sample(q);
}

static void assert_msg_equal(const struct raft_msg *a, const struct raft_msg *b)
{
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->reject, b->reject);
    assert_int_equal(a->force, b->force);
    assert_int_equal(a->quiesce, b->quiesce);
    assert_true(a->group == b->group);
    assert_int_equal(a->from, b->from);
    assert_int_equal(a->to, b->to);
    assert_true(a->term == b->term);
    assert_true(a->index == b->index);
    assert_true(a->log_term == b->log_term);
    assert_true(a->commit == b->commit);
    assert_true(a->hint_index == b->hint_index);
    assert_true(a->hint_term == b->hint_term);
    assert_true(a->ent_last == b->ent_last);
    assert_true(a->ent_last_term == b->ent_last_term);
    assert_int_equal(a->n_entries, b->n_entries);
    for (uint32_t i = 0; i < a->n_entries; i++) {
        const struct raft_entry *x = &a->entries[i], *y = &b->entries[i];
        assert_true(x->first_index == y->first_index);
        assert_true(x->last_index == y->last_index);
        assert_true(x->term == y->term);
        assert_int_equal(x->type, y->type);
        assert_int_equal(x->len, y->len);
        if (x->len)
            assert_memory_equal(x->data, y->data, x->len);
    }
    if (a->type != RAFT_MSG_LOG_START)
        return;
    const struct raft_log_start *s = &a->start, *t = &b->start;
    assert_true(s->index == t->index);
    assert_true(s->term == t->term);
    assert_int_equal(s->conf.n_voters, t->conf.n_voters);
    assert_int_equal(s->conf.n_learners, t->conf.n_learners);
    for (uint32_t i = 0; i < s->conf.n_voters; i++)
        assert_int_equal(s->conf.voters[i], t->conf.voters[i]);
    for (uint32_t i = 0; i < s->conf.n_learners; i++)
        assert_int_equal(s->conf.learners[i], t->conf.learners[i]);
    assert_int_equal(s->payload_len, t->payload_len);
    if (s->payload_len)
        assert_memory_equal(s->payload, t->payload, s->payload_len);
}

static void assert_msg_empty(const struct raft_msg *m)
{
    static const struct raft_msg zero;
    assert_memory_equal(m, &zero, sizeof(zero));
}

/* Encodes m into a fresh buffer of exactly its size. */
static uint8_t *encode_new(const struct raft_msg *m, size_t *n)
{
    *n = raft_wire_size(m);
    uint8_t *buf = malloc(*n);
    assert_non_null(buf);
    assert_int_equal(raft_wire_encode(m, buf, *n), (int)*n);
    return buf;
}

/* The test links with -Wl,--wrap=malloc,--wrap=calloc (CMakeLists.txt): while counting is set,
 * every allocation's size is added to counted, the calls made inside lm_consensus included. */
void *__real_malloc(size_t n);
void *__real_calloc(size_t count, size_t size);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t count, size_t size);
static bool counting;
static size_t counted;

void *__wrap_malloc(size_t n)
{
    if (counting)
        counted += n;
    return __real_malloc(n);
}

void *__wrap_calloc(size_t count, size_t size)
{
    if (counting)
        counted += count * size;
    return __real_calloc(count, size);
}

/* raft_wire_decode, checking the allocation bound raft_wire.h promises: at most len bytes of
 * entry data and payload plus one struct raft_entry per RAFT_WIRE_ENTRY_SIZE bytes of input. */
static int decode_counted(const uint8_t *buf, size_t len, struct raft_msg *out, size_t *used)
{
    counted = 0;
    counting = true;
    int rc = raft_wire_decode(buf, len, out, used);
    counting = false;
    assert_true(counted <= len + len / RAFT_WIRE_ENTRY_SIZE * sizeof(struct raft_entry));
    return rc;
}

/* Decodes buf[0..len) from a copy of exactly len bytes (so ASan catches reads past it). */
static int decode_exact(const uint8_t *buf, size_t len, struct raft_msg *out, size_t *used)
{
    uint8_t *copy = malloc(len ? len : 1);
    assert_non_null(copy);
    if (len)
        memcpy(copy, buf, len);
    int rc = decode_counted(copy, len, out, used);
    free(copy);
    return rc;
}

static void assert_decode_corrupt(const uint8_t *buf, size_t len)
{
    struct raft_msg out;
    size_t used = 1;
    assert_int_equal(decode_exact(buf, len, &out, &used), LM_E_CORRUPT);
    assert_int_equal(used, 0);
    assert_msg_empty(&out);
}

static void test_golden(void **state)
{
    (void)state;
    struct raft_msg m = {.type = RAFT_MSG_VOTE,
                         .force = true,
                         .group = 0x0102030405060708ull,
                         .from = 1,
                         .to = 2,
                         .term = 5,
                         .index = 10,
                         .log_term = 4,
                         .commit = 9,
                         .hint_index = -1};
    static const uint8_t want[RAFT_WIRE_HEADER_SIZE] = {
        2,    3,    0,    1,                            /* version, type, reject, force */
        1,    2,    3,    4,    5,    6,    7,    8,    /* group */
        0,    0,    0,    1,    0,    0,    0,    2,    /* from, to */
        0,    0,    0,    0,    0,    0,    0,    5,    /* term */
        0,    0,    0,    0,    0,    0,    0,    10,   /* index */
        0,    0,    0,    0,    0,    0,    0,    4,    /* log_term */
        0,    0,    0,    0,    0,    0,    0,    9,    /* commit */
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, /* hint_index = -1 */
        0,    0,    0,    0,    0,    0,    0,    0,    /* hint_term */
        0,    0,    0,    0,    0,    0,    0,    0,    /* ent_last */
        0,    0,    0,    0,    0,    0,    0,    0,    /* ent_last_term */
        0,    0,    0,    0};                           /* n_entries */
    uint8_t buf[256];
    assert_int_equal(raft_wire_size(&m), sizeof(want));
    assert_int_equal(raft_wire_encode(&m, buf, sizeof(buf)), (int)sizeof(want));
    assert_memory_equal(buf, want, sizeof(want));

    /* A LOG_START's tail: index, term, the raft_conf_encode bytes, payload_len, payload. */
    struct raft_msg ls = {.type = RAFT_MSG_LOG_START,
                          .start = {.index = 7,
                                    .term = 2,
                                    .conf = {.n_voters = 1, .voters = {3}, .n_learners = 0},
                                    .payload_len = 2,
                                    .payload = (uint8_t *)"hi"}};
    static const uint8_t tail[] = {0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 2,   0,
                                   0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 2, 'h', 'i'};
    assert_int_equal(raft_wire_encode(&ls, buf, sizeof(buf)), RAFT_WIRE_HEADER_SIZE + sizeof(tail));
    assert_memory_equal(buf + RAFT_WIRE_HEADER_SIZE, tail, sizeof(tail));

    /* An APP's tail: the table (each entry's fixed part), then every entry's bytes. */
    static uint8_t d0[2] = {'a', 'b'}, d1[1] = {'c'};
    struct raft_entry es[2] = {
        {.first_index = 11,
         .last_index = 12,
         .term = 5,
         .type = RAFT_ENTRY_NORMAL,
         .len = 2,
         .data = d0},
        {.first_index = 13,
         .last_index = 13,
         .term = 5,
         .type = RAFT_ENTRY_NOOP,
         .len = 1,
         .data = d1},
    };
    struct raft_msg app = {.type = RAFT_MSG_APP,
                           .index = 10,
                           .n_entries = 2,
                           .entries = es,
                           .ent_last = 13,
                           .ent_last_term = 5};
    static const uint8_t app_tail[] = {0, 0, 0, 0, 0,  0, 0, 11, 0, 0, 0,   0,   0,  0, 0, 12,
                                       0, 0, 0, 0, 0,  0, 0, 5,  0, 0, 0,   0,   2,  0, 0, 0,
                                       0, 0, 0, 0, 13, 0, 0, 0,  0, 0, 0,   0,   13, 0, 0, 0,
                                       0, 0, 0, 0, 5,  1, 0, 0,  0, 1, 'a', 'b', 'c'};
    assert_int_equal(raft_wire_encode(&app, buf, sizeof(buf)),
                     RAFT_WIRE_HEADER_SIZE + sizeof(app_tail));
    assert_memory_equal(buf + RAFT_WIRE_HEADER_SIZE, app_tail, sizeof(app_tail));
}

/* raft_wire_encode_head writes exactly the encoding's bytes before the entries' bytes, with or
 * without the data pointers: head + the bytes back to back is the whole encoding. */
static void test_head(void **state)
{
    (void)state;
    build_samples();
    uint32_t apps = 0;
    for (size_t i = 0; i < n_samples; i++) {
        struct raft_msg m = samples[i];
        uint8_t head[RAFT_WIRE_HEADER_SIZE + 8 * RAFT_WIRE_ENTRY_SIZE];
        if (m.type != RAFT_MSG_APP || m.n_entries == 0) {
            assert_int_equal(raft_wire_encode_head(&m, head, sizeof(head)), LM_E_INVALID);
            continue;
        }
        apps++;
        size_t n;
        uint8_t *whole = encode_new(&m, &n);
        size_t hn = raft_wire_head_size(&m);
        assert_true(hn <= sizeof(head));
        assert_int_equal(raft_wire_encode_head(&m, head, sizeof(head)), (int)hn);
        assert_memory_equal(head, whole, hn);
        size_t at = hn;
        for (uint32_t e = 0; e < m.n_entries; e++) {
            assert_memory_equal(whole + at, m.entries[e].data, m.entries[e].len);
            at += m.entries[e].len;
        }
        assert_int_equal(at, n);
        /* without data pointers, as a partition leader sends slices of its log */
        struct raft_entry bare[8];
        assert_true(m.n_entries <= 8);
        for (uint32_t e = 0; e < m.n_entries; e++) {
            bare[e] = m.entries[e];
            bare[e].data = NULL;
        }
        m.entries = bare;
        assert_int_equal(raft_wire_encode_head(&m, head, sizeof(head)), (int)hn);
        assert_memory_equal(head, whole, hn);
        if (n > hn) /* bytes announced without a pointer: the whole encoding needs them */
            assert_int_equal(raft_wire_encode(&m, whole, n), LM_E_INVALID);
        assert_int_equal(raft_wire_encode_head(&m, head, hn - 1), LM_E_TOO_LARGE);
        free(whole);
    }
    assert_true(apps > 0);
}

static void test_round_trip(void **state)
{
    (void)state;
    build_samples();
    int seen[RAFT_MSG_TYPE_MAX] = {0};
    for (size_t s = 0; s < n_samples; s++) {
        const struct raft_msg *m = &samples[s];
        size_t n;
        uint8_t *buf = encode_new(m, &n);
        struct raft_msg out;
        size_t used = 0;
        assert_int_equal(decode_exact(buf, n, &out, &used), 0);
        assert_int_equal(used, n);
        assert_msg_equal(&out, m);
        if (m->type != RAFT_MSG_LOG_START)
            assert_int_equal(out.start.payload_len, 0);
        /* Re-encoding the decoded message gives the same bytes. */
        uint8_t *again = malloc(n);
        assert_non_null(again);
        assert_int_equal(raft_wire_encode(&out, again, n), (int)n);
        assert_memory_equal(again, buf, n);
        free(again);
        raft_msg_deinit(&out);
        /* Trailing bytes (the next message) are left alone: used stops at this one. */
        uint8_t *more = malloc(n + 5);
        assert_non_null(more);
        memcpy(more, buf, n);
        memset(more + n, 0xEE, 5);
        assert_int_equal(decode_counted(more, n + 5, &out, &used), 0);
        assert_int_equal(used, n);
        assert_msg_equal(&out, m);
        raft_msg_deinit(&out);
        free(more);
        /* Too small a buffer. */
        uint8_t small[RAFT_WIRE_HEADER_SIZE];
        assert_int_equal(raft_wire_encode(m, small, RAFT_WIRE_HEADER_SIZE - 1), LM_E_TOO_LARGE);
        if (n > RAFT_WIRE_HEADER_SIZE) {
            uint8_t *short_buf = malloc(n - 1);
            assert_non_null(short_buf);
            assert_int_equal(raft_wire_encode(m, short_buf, n - 1), LM_E_TOO_LARGE);
            free(short_buf);
        }
        seen[m->type] += 1 + (int)m->n_entries;
        free(buf);
    }
    for (int t = 1; t < RAFT_MSG_TYPE_MAX; t++)
        assert_true(seen[t] >= 2);
    assert_true(seen[RAFT_MSG_APP] > 2 + 3); /* with entries as well */
}

static void test_truncations(void **state)
{
    (void)state;
    build_samples();
    for (size_t s = 0; s < n_samples; s++) {
        size_t n;
        uint8_t *buf = encode_new(&samples[s], &n);
        for (size_t k = 0; k < n; k++)
            assert_decode_corrupt(buf, k);
        free(buf);
    }
}

static uint64_t rng_next(uint64_t *x)
{
    /* xorshift64*: deterministic, reproducible from the printed seed. */
    *x ^= *x >> 12;
    *x ^= *x << 25;
    *x ^= *x >> 27;
    return *x * 0x2545F4914F6CDD1Dull;
}

static void test_random_flips(void **state)
{
    (void)state;
    build_samples();
    uint64_t seed = 0x5EED0001ull;
    const char *env = getenv("RAFT_WIRE_SEED");
    if (env)
        seed = strtoull(env, NULL, 0);
    printf("test_random_flips: seed %#llx (RAFT_WIRE_SEED replays)\n", (unsigned long long)seed);
    uint64_t x = seed ? seed : 1;
    unsigned ok = 0, refused = 0;
    for (size_t s = 0; s < n_samples; s++) {
        size_t n;
        uint8_t *orig = encode_new(&samples[s], &n);
        uint8_t *buf = malloc(n);
        assert_non_null(buf);
        for (int iter = 0; iter < 3000; iter++) {
            memcpy(buf, orig, n);
            unsigned flips = 1 + (unsigned)(rng_next(&x) % 4);
            for (unsigned f = 0; f < flips; f++) {
                size_t pos = (size_t)(rng_next(&x) % n);
                uint64_t r = rng_next(&x);
                switch (r % 4) {
                case 0: /* one bit */
                    buf[pos] ^= (uint8_t)(1u << ((r >> 8) % 8));
                    break;
                case 1: /* a random byte */
                    buf[pos] = (uint8_t)(r >> 8);
                    break;
                case 2: /* a length or count's low byte, small: often still in bounds */
                    buf[pos] = (uint8_t)((r >> 8) % 3);
                    break;
                default: /* a big-endian u32 at pos set to an extreme */
                    if (pos + 4 <= n)
                        lm_put_be32(buf + pos, (r >> 8) & 1 ? 0xFFFFFFFFu : 0x7FFFFFFFu);
                    break;
                }
            }
            struct raft_msg out;
            size_t used = 0;
            int rc = decode_counted(buf, n, &out, &used);
            if (rc != 0) {
                assert_int_equal(rc, LM_E_CORRUPT);
                assert_int_equal(used, 0);
                assert_msg_empty(&out);
                refused++;
                continue;
            }
            ok++;
            assert_true(used > 0 && used <= n);
            assert_int_equal(raft_wire_size(&out), used);
            uint8_t *again = malloc(used);
            assert_non_null(again);
            assert_int_equal(raft_wire_encode(&out, again, used), (int)used);
            assert_memory_equal(again, buf, used);
            free(again);
            raft_msg_deinit(&out);
        }
        free(buf);
        free(orig);
    }
    printf("test_random_flips: %u decoded and re-encoded identically, %u refused\n", ok, refused);
    assert_true(ok > 0 && refused > 0);
}

/* A valid APP of n one-offset entries after index 0, without bytes (entries allocated). */
static struct raft_msg app_of(uint32_t n)
{
    struct raft_msg m = {.type = RAFT_MSG_APP, .index = 0, .ent_last = n, .ent_last_term = 1};
    m.entries = calloc(n, sizeof(*m.entries));
    assert_non_null(m.entries);
    m.n_entries = n;
    for (uint32_t i = 0; i < n; i++)
        m.entries[i] = (struct raft_entry){.first_index = i + 1, .last_index = i + 1, .term = 1};
    return m;
}

/* Appends to the encoding of app_of(n) one more entry by hand, giving n + 1 entries. */
static uint8_t *append_entry_by_hand(uint32_t n, size_t *len)
{
    struct raft_msg m = app_of(n);
    size_t base;
    uint8_t *enc = encode_new(&m, &base);
    free(m.entries);
    *len = base + RAFT_WIRE_ENTRY_SIZE;
    uint8_t *buf = calloc(1, *len);
    assert_non_null(buf);
    memcpy(buf, enc, base);
    free(enc);
    uint8_t *e = buf + base;
    lm_put_be64(e + ENT_FIRST, n + 1);
    lm_put_be64(e + ENT_LAST, n + 1);
    lm_put_be64(e + 16, 1); /* term */
    lm_put_be32(buf + OFF_N_ENTRIES, n + 1);
    lm_put_be64(buf + OFF_ENT_LAST, n + 1);
    return buf;
}

static void test_entry_limit(void **state)
{
    (void)state;
    struct raft_msg m = app_of(RAFT_WIRE_ENTRIES_MAX + 1);
    uint8_t *big = malloc(raft_wire_size(&m));
    assert_non_null(big);
    assert_int_equal(raft_wire_encode(&m, big, raft_wire_size(&m)), LM_E_TOO_LARGE);
    free(big);
    free(m.entries);

    m = app_of(RAFT_WIRE_ENTRIES_MAX);
    size_t n;
    uint8_t *buf = encode_new(&m, &n);
    struct raft_msg out;
    size_t used;
    assert_int_equal(decode_exact(buf, n, &out, &used), 0);
    assert_msg_equal(&out, &m);
    raft_msg_deinit(&out);
    free(buf);
    free(m.entries);

    /* The hand-built extension decodes at the limit and is refused one past it. */
    buf = append_entry_by_hand(RAFT_WIRE_ENTRIES_MAX - 1, &n);
    assert_int_equal(decode_exact(buf, n, &out, &used), 0);
    assert_int_equal(out.n_entries, RAFT_WIRE_ENTRIES_MAX);
    assert_int_equal(used, n);
    raft_msg_deinit(&out);
    free(buf);
    buf = append_entry_by_hand(RAFT_WIRE_ENTRIES_MAX, &n);
    assert_decode_corrupt(buf, n);
    free(buf);
}

static void test_byte_limit(void **state)
{
    (void)state;
    /* One entry whose bytes bring the message to exactly RAFT_WIRE_BYTES_MAX. */
    uint32_t len = (uint32_t)(RAFT_WIRE_BYTES_MAX - RAFT_WIRE_HEADER_SIZE - RAFT_WIRE_ENTRY_SIZE);
    uint8_t *data = malloc((size_t)len + 2);
    assert_non_null(data);
    fill_pattern(data, (size_t)len + 2, 9);
    struct raft_entry e = {.first_index = 1, .last_index = 1, .term = 1, .len = len, .data = data};
    struct raft_msg m = {.type = RAFT_MSG_APP,
                         .index = 0,
                         .n_entries = 1,
                         .entries = &e,
                         .ent_last = 1,
                         .ent_last_term = 1};
    assert_int_equal(raft_wire_size(&m), RAFT_WIRE_BYTES_MAX);
    uint8_t *buf = malloc(RAFT_WIRE_BYTES_MAX + 1);
    assert_non_null(buf);
    assert_int_equal(raft_wire_encode(&m, buf, RAFT_WIRE_BYTES_MAX + 1), (int)RAFT_WIRE_BYTES_MAX);
    struct raft_msg out;
    size_t used;
    assert_int_equal(decode_counted(buf, RAFT_WIRE_BYTES_MAX, &out, &used), 0);
    assert_int_equal(used, RAFT_WIRE_BYTES_MAX);
    assert_int_equal(out.entries[0].len, len);
    assert_memory_equal(out.entries[0].data, data, len);
    raft_msg_deinit(&out);

    /* One byte more: the encoder refuses it, and so does the decoder when it is on the wire. */
    e.len = len + 1;
    assert_int_equal(raft_wire_encode(&m, buf, RAFT_WIRE_BYTES_MAX + 1), LM_E_TOO_LARGE);
    lm_put_be32(buf + RAFT_WIRE_HEADER_SIZE + ENT_LEN, len + 1);
    buf[RAFT_WIRE_BYTES_MAX] = data[len];
    assert_int_equal(decode_counted(buf, RAFT_WIRE_BYTES_MAX + 1, &out, &used), LM_E_CORRUPT);
    assert_msg_empty(&out);

    /* A LOG_START payload: its fixed part (28 bytes) is one smaller than an entry's, so len + 1
     * bytes make exactly RAFT_WIRE_BYTES_MAX and len + 2 one too many. */
    struct raft_msg ls = {.type = RAFT_MSG_LOG_START,
                          .start = {.payload_len = len + 1, .payload = data}};
    assert_int_equal(raft_wire_size(&ls), RAFT_WIRE_BYTES_MAX);
    assert_int_equal(raft_wire_encode(&ls, buf, RAFT_WIRE_BYTES_MAX), (int)RAFT_WIRE_BYTES_MAX);
    assert_int_equal(decode_counted(buf, RAFT_WIRE_BYTES_MAX, &out, &used), 0);
    assert_int_equal(used, RAFT_WIRE_BYTES_MAX);
    assert_int_equal(out.start.payload_len, len + 1);
    assert_memory_equal(out.start.payload, data, len + 1);
    raft_msg_deinit(&out);
    ls.start.payload_len = len + 2;
    assert_int_equal(raft_wire_size(&ls), RAFT_WIRE_BYTES_MAX + 1);
    assert_int_equal(raft_wire_encode(&ls, buf, RAFT_WIRE_BYTES_MAX + 1), LM_E_TOO_LARGE);
    lm_put_be32(buf + RAFT_WIRE_HEADER_SIZE + 24, len + 2); /* after index, term, conf counts */
    buf[RAFT_WIRE_BYTES_MAX] = data[len + 1];
    assert_int_equal(decode_counted(buf, RAFT_WIRE_BYTES_MAX + 1, &out, &used), LM_E_CORRUPT);
    assert_msg_empty(&out);
    free(buf);
    free(data);
}

/* Sizes announced beyond the bytes left: refused before anything is allocated for them. */
static void test_sizes_beyond_input(void **state)
{
    (void)state;
    build_samples();
    struct raft_msg app = samples[2 * (RAFT_MSG_TYPE_MAX - 1)]; /* APP with 3 entries */
    assert_int_equal(app.n_entries, 3);
    size_t n;
    uint8_t *buf = encode_new(&app, &n);
    uint8_t *bad = malloc(n);
    assert_non_null(bad);
    const uint32_t counts[] = {4, 100, RAFT_WIRE_ENTRIES_MAX, 0xFFFFFFFFu};
    for (size_t i = 0; i < LM_ARRAY_LEN(counts); i++) {
        memcpy(bad, buf, n);
        lm_put_be32(bad + OFF_N_ENTRIES, counts[i]);
        assert_decode_corrupt(bad, n);
    }
    const uint32_t lens[] = {sizeof(bytes_a) + 1, (uint32_t)n, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < LM_ARRAY_LEN(lens); i++) {
        memcpy(bad, buf, n);
        lm_put_be32(bad + RAFT_WIRE_HEADER_SIZE + ENT_LEN, lens[i]);
        assert_decode_corrupt(bad, n);
    }
    free(bad);
    free(buf);

    struct raft_msg ls = samples[2 * (RAFT_MSG_LOG_START - 1)];
    assert_int_equal(ls.type, RAFT_MSG_LOG_START);
    buf = encode_new(&ls, &n);
    bad = malloc(n);
    assert_non_null(bad);
    size_t conf_at = RAFT_WIRE_HEADER_SIZE + 16;
    size_t plen_at = conf_at + 8 + 4 * (3 + 2);
    const uint32_t plens[] = {sizeof(payload) + 1, 0x7FFFFFFFu, 0xFFFFFFFFu};
    for (size_t i = 0; i < LM_ARRAY_LEN(plens); i++) {
        memcpy(bad, buf, n);
        lm_put_be32(bad + plen_at, plens[i]);
        assert_decode_corrupt(bad, n);
    }
    /* n_voters / n_learners over RAFT_NODES_MAX, or more than the bytes left. */
    const uint32_t nodes[] = {RAFT_NODES_MAX + 1, 0xFFFFFFFFu, 14};
    for (size_t i = 0; i < LM_ARRAY_LEN(nodes); i++) {
        for (size_t which = 0; which < 2; which++) {
            memcpy(bad, buf, n);
            lm_put_be32(bad + conf_at + 4 * which, nodes[i]);
            assert_decode_corrupt(bad, n);
        }
    }
    free(bad);
    free(buf);
}

/* Patches one field of a valid encoding and expects the decoder to refuse it. */
struct patch {
    const char *what;
    size_t off;
    int width; /* 1, 4 or 8 bytes */
    uint64_t value;
};

static void test_malformed_refused(void **state)
{
    (void)state;
    /* APP after index 9: entries [10, 12] term 2 and [13, 15] term 3. */
    static uint8_t d[2] = {1, 2};
    struct raft_entry es[2] = {
        {.first_index = 10, .last_index = 12, .term = 2, .len = 1, .data = d},
        {.first_index = 13, .last_index = 15, .term = 3, .len = 1, .data = d + 1},
    };
    struct raft_msg m = {.type = RAFT_MSG_APP,
                         .term = 3,
                         .index = 9,
                         .log_term = 1,
                         .n_entries = 2,
                         .entries = es,
                         .ent_last = 15,
                         .ent_last_term = 3};
    size_t n;
    uint8_t *buf = encode_new(&m, &n);
    /* The table holds both fixed parts back to back; the bytes follow it. */
    const size_t e0 = RAFT_WIRE_HEADER_SIZE, e1 = e0 + RAFT_WIRE_ENTRY_SIZE;
    const struct patch patches[] = {
        {"version 0", OFF_VERSION, 1, 0},
        {"version 1 (bytes after each entry)", OFF_VERSION, 1, 1},
        {"version 3", OFF_VERSION, 1, 3},
        {"type 0", OFF_TYPE, 1, 0},
        {"type past the last", OFF_TYPE, 1, RAFT_MSG_TYPE_MAX},
        {"type 255", OFF_TYPE, 1, 255},
        {"entries on a heartbeat", OFF_TYPE, 1, RAFT_MSG_HEARTBEAT},
        {"entries on a log start", OFF_TYPE, 1, RAFT_MSG_LOG_START},
        {"reject 2", OFF_REJECT, 1, 2},
        {"flags 255", OFF_FORCE, 1, 255},
        {"flags 4 (unknown)", OFF_FORCE, 1, 4},
        {"first entry not after index", OFF_INDEX, 8, 8},
        {"index INT64_MAX", OFF_INDEX, 8, (uint64_t)INT64_MAX},
        {"gap between entries", e1 + ENT_FIRST, 8, 14},
        {"overlap between entries", e1 + ENT_FIRST, 8, 12},
        {"first > last", e1 + ENT_LAST, 8, 12},
        {"last entry not ent_last", OFF_ENT_LAST, 8, 16},
        {"last entry term not ent_last_term", OFF_ENT_TERM, 8, 2},
        {"entry type 3", e0 + ENT_TYPE, 1, 3},
        {"entry type 255", e1 + ENT_TYPE, 1, 255},
    };
    uint8_t *bad = malloc(n);
    assert_non_null(bad);
    for (size_t i = 0; i < LM_ARRAY_LEN(patches); i++) {
        const struct patch *p = &patches[i];
        memcpy(bad, buf, n);
        if (p->width == 1)
            bad[p->off] = (uint8_t)p->value;
        else if (p->width == 4)
            lm_put_be32(bad + p->off, (uint32_t)p->value);
        else
            lm_put_be64(bad + p->off, p->value);
        printf("malformed: %s\n", p->what);
        assert_decode_corrupt(bad, n);
    }
    /* first > last alone: a single entry [13, 12] after index 12, ent_last 12. */
    struct raft_entry one = {.first_index = 10, .last_index = 12, .term = 2};
    struct raft_msg m1 = {.type = RAFT_MSG_APP,
                          .index = 9,
                          .n_entries = 1,
                          .entries = &one,
                          .ent_last = 12,
                          .ent_last_term = 2};
    size_t n1;
    uint8_t *b1 = encode_new(&m1, &n1);
    lm_put_be64(b1 + OFF_INDEX, 12);
    lm_put_be64(b1 + e0 + ENT_FIRST, 13);
    assert_decode_corrupt(b1, n1);
    free(b1);
    free(bad);
    free(buf);
}

static void test_encode_refuses(void **state)
{
    (void)state;
    uint8_t buf[1024];
    struct raft_msg m = {.type = RAFT_MSG_APP, .index = 9, .n_entries = 2, .ent_last = 15};
    assert_int_equal(raft_wire_encode(&m, buf, sizeof(buf)), LM_E_INVALID); /* unresolved */

    struct raft_msg t = {.type = 0};
    assert_int_equal(raft_wire_encode(&t, buf, sizeof(buf)), LM_E_INVALID);
    t.type = RAFT_MSG_TYPE_MAX;
    assert_int_equal(raft_wire_encode(&t, buf, sizeof(buf)), LM_E_INVALID);
    t.type = 200;
    assert_int_equal(raft_wire_encode(&t, buf, sizeof(buf)), LM_E_INVALID);

    static uint8_t d[1] = {7};
    struct raft_entry es[2] = {{.first_index = 10, .last_index = 12, .term = 2},
                               {.first_index = 13, .last_index = 15, .term = 3}};
    struct raft_msg ok = {.type = RAFT_MSG_APP,
                          .index = 9,
                          .n_entries = 2,
                          .entries = es,
                          .ent_last = 15,
                          .ent_last_term = 3};
    assert_true(raft_wire_encode(&ok, buf, sizeof(buf)) > 0);
    struct raft_msg x = ok;
    x.type = RAFT_MSG_APP_RESP; /* entries only travel in an APP */
    assert_int_equal(raft_wire_encode(&x, buf, sizeof(buf)), LM_E_INVALID);
    x = ok;
    x.index = 8;
    assert_int_equal(raft_wire_encode(&x, buf, sizeof(buf)), LM_E_INVALID);
    x = ok;
    x.ent_last = 14;
    assert_int_equal(raft_wire_encode(&x, buf, sizeof(buf)), LM_E_INVALID);
    x = ok;
    x.ent_last_term = 2;
    assert_int_equal(raft_wire_encode(&x, buf, sizeof(buf)), LM_E_INVALID);
    es[1].first_index = 14;
    assert_int_equal(raft_wire_encode(&ok, buf, sizeof(buf)), LM_E_INVALID);
    es[1].first_index = 16; /* > last */
    es[1].last_index = 15;
    ok.index = 9;
    es[0].last_index = 15;
    assert_int_equal(raft_wire_encode(&ok, buf, sizeof(buf)), LM_E_INVALID);
    es[0].last_index = 12;
    es[1].first_index = 13;
    es[1].type = 3;
    assert_int_equal(raft_wire_encode(&ok, buf, sizeof(buf)), LM_E_INVALID);
    es[1].type = RAFT_ENTRY_CONF;
    es[1].len = 1; /* bytes announced, none given */
    assert_int_equal(raft_wire_encode(&ok, buf, sizeof(buf)), LM_E_INVALID);
    es[1].data = d;
    assert_true(raft_wire_encode(&ok, buf, sizeof(buf)) > 0);

    struct raft_msg ls = {.type = RAFT_MSG_LOG_START};
    ls.start.conf.n_voters = RAFT_NODES_MAX + 1;
    assert_int_equal(raft_wire_encode(&ls, buf, sizeof(buf)), LM_E_INVALID);
    ls.start.conf.n_voters = 1;
    ls.start.conf.n_learners = RAFT_NODES_MAX + 1;
    assert_int_equal(raft_wire_encode(&ls, buf, sizeof(buf)), LM_E_INVALID);
    ls.start.conf.n_learners = 0;
    ls.start.payload_len = 3; /* payload announced, none given */
    assert_int_equal(raft_wire_encode(&ls, buf, sizeof(buf)), LM_E_INVALID);
    ls.start.payload_len = 0;
    assert_true(raft_wire_encode(&ls, buf, sizeof(buf)) > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_head),
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_truncations),
        cmocka_unit_test(test_random_flips),
        cmocka_unit_test(test_entry_limit),
        cmocka_unit_test(test_byte_limit),
        cmocka_unit_test(test_sizes_beyond_input),
        cmocka_unit_test(test_malformed_refused),
        cmocka_unit_test(test_encode_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
