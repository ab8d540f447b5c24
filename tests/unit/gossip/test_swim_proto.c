/* SWIM codec: round trips, golden header bytes, malformed input (truncation at every byte, bit
 * flips, bad fields), HMAC-SHA-256 checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "common/lm_err.h"
#include "gossip/swim_proto.h"

static const uint8_t key[] = "cluster-secret-0123456789";
#define KEY_LEN (sizeof(key) - 1)

static struct swim_msg sample_msg(void)
{
    return (struct swim_msg){.type = SWIM_MSG_PING_REQ,
                             .flags = 0,
                             .sender = {0x7f000001, 9094},
                             .sender_incarnation = 0x0102030405060708ULL,
                             .seq = 0xa1b2c3d4,
                             .target = {0x7f000002, 9095}};
}

static struct swim_update sample_update(int i)
{
    struct swim_update u;
    memset(&u, 0, sizeof(u));
    u.status = (uint8_t)(i % 4);
    u.addr = (struct swim_addr){0x7f000010u + (uint32_t)i, (uint16_t)(9000 + i)};
    u.incarnation = 100u + (uint64_t)i;
    if (u.status == SWIM_ALIVE) {
        u.has_meta = true;
        u.meta.node_id = i + 1;
        strcpy(u.meta.kafka_listener, "127.0.0.1:9092");
        strcpy(u.meta.raft_addr, "127.0.0.1:9093");
        if (i % 8 == 0)
            strcpy(u.meta.rack, "rack-a");
    }
    if (u.status == SWIM_SUSPECT) {
        u.has_from = true;
        u.from = (struct swim_addr){0x7f000003, 7};
    }
    return u;
}

/* Encodes sample_msg with n sample updates; returns the datagram length. */
static int build(uint8_t *buf, size_t cap, int n, bool hmac)
{
    struct swim_enc e;
    struct swim_msg m = sample_msg();
    assert_int_equal(swim_enc_begin(&e, buf, cap, &m, hmac), 0);
    for (int i = 0; i < n; i++) {
        struct swim_update u = sample_update(i);
        assert_int_equal(swim_enc_update(&e, &u), 0);
    }
    int len = swim_enc_finish(&e, key, KEY_LEN);
    assert_true(len > 0 && (size_t)len <= cap);
    return len;
}

static void test_round_trip(void **state)
{
    (void)state;
    for (int hmac = 0; hmac <= 1; hmac++) {
        uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
        int len = build(buf, sizeof(buf), 8, hmac);
        struct swim_msg m;
        struct swim_update ups[16];
        size_t n = 0;
        int rc = swim_decode(buf, (size_t)len, key, hmac ? KEY_LEN : 0, &m, ups, 16, &n);
        assert_int_equal(rc, 0);
        struct swim_msg want = sample_msg();
        assert_int_equal(m.type, want.type);
        assert_int_equal(m.flags, hmac ? SWIM_FLAG_HMAC : 0);
        assert_true(swim_addr_eq(&m.sender, &want.sender));
        assert_true(m.sender_incarnation == want.sender_incarnation);
        assert_int_equal(m.seq, want.seq);
        assert_true(swim_addr_eq(&m.target, &want.target));
        assert_int_equal(n, 8);
        for (int i = 0; i < 8; i++) {
            struct swim_update w = sample_update(i);
            assert_int_equal(ups[i].status, w.status);
            assert_true(swim_addr_eq(&ups[i].addr, &w.addr));
            assert_true(ups[i].incarnation == w.incarnation);
            assert_int_equal(ups[i].has_meta, w.has_meta);
            assert_int_equal(ups[i].has_from, w.has_from);
            assert_memory_equal(&ups[i].meta, &w.meta, sizeof(w.meta));
            if (w.has_from)
                assert_true(swim_addr_eq(&ups[i].from, &w.from));
        }
    }
}

/* The header is fixed: version byte first, then type, flags, count, sender, seq, target. */
static void test_golden_header(void **state)
{
    (void)state;
    uint8_t buf[512];
    int len = build(buf, sizeof(buf), 0, false);
    static const uint8_t golden[SWIM_HEADER_BYTES] = {
        0x01, 0x03, 0x00, 0x00, 0x7f, 0x00, 0x00, 0x01, 0x23, 0x86, 0x01, 0x02, 0x03, 0x04,
        0x05, 0x06, 0x07, 0x08, 0xa1, 0xb2, 0xc3, 0xd4, 0x7f, 0x00, 0x00, 0x02, 0x23, 0x87};
    assert_int_equal(len, SWIM_HEADER_BYTES);
    assert_memory_equal(buf, golden, SWIM_HEADER_BYTES);
    /* one dead update: status, uflags, ip, port, incarnation */
    struct swim_enc e;
    struct swim_msg m = sample_msg();
    assert_int_equal(swim_enc_begin(&e, buf, sizeof(buf), &m, false), 0);
    struct swim_update u = {.status = SWIM_DEAD, .addr = {0x0a000001, 1}, .incarnation = 5};
    assert_int_equal(swim_enc_update(&e, &u), 0);
    len = swim_enc_finish(&e, NULL, 0);
    static const uint8_t upd[16] = {2, 0, 10, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 5};
    assert_int_equal(len, SWIM_HEADER_BYTES + 16);
    assert_int_equal(buf[3], 1);
    assert_memory_equal(buf + SWIM_HEADER_BYTES, upd, 16);
}

static void test_truncation_every_byte(void **state)
{
    (void)state;
    for (int hmac = 0; hmac <= 1; hmac++) {
        uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
        int len = build(buf, sizeof(buf), 12, hmac);
        for (int cut = 0; cut < len; cut++) {
            /* an exact-size copy, so ASan catches any read past the cut */
            uint8_t *exact = test_malloc(cut > 0 ? (size_t)cut : 1);
            memcpy(exact, buf, (size_t)cut);
            struct swim_msg m;
            struct swim_update ups[16];
            size_t n = 99;
            int rc = swim_decode(exact, (size_t)cut, key, hmac ? KEY_LEN : 0, &m, ups, 16, &n);
            assert_true(rc < 0);
            assert_int_equal(n, 0);
            test_free(exact);
        }
    }
}

static void test_bit_flips(void **state)
{
    (void)state;
    uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
    int len = build(buf, sizeof(buf), 6, true);
    for (int i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            struct swim_msg m;
            struct swim_update ups[16];
            size_t n = 0;
            int rc = swim_decode(buf, (size_t)len, key, KEY_LEN, &m, ups, 16, &n);
            /* with a secret every change is caught: by the version check or by the HMAC */
            assert_true(rc == LM_E_CRC || (i == 0 && rc == LM_E_UNSUPPORTED) ||
                        (i == 2 && rc == LM_E_INVALID));
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    /* unauthenticated: arbitrary mutations never crash and never over-read (ASan) */
    len = build(buf, sizeof(buf), 10, false);
    uint64_t x = 12345;
    int ok = 0;
    for (int iter = 0; iter < 20000; iter++) {
        uint8_t copy[SWIM_PACKET_SIZE_DEFAULT];
        memcpy(copy, buf, (size_t)len);
        for (int k = 0; k < 1 + iter % 4; k++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
            copy[(x >> 33) % (uint64_t)len] = (uint8_t)(x >> 20);
        }
        size_t cut = (size_t)len - (size_t)(iter % 3);
        uint8_t *exact = test_malloc(cut);
        memcpy(exact, copy, cut);
        struct swim_msg m;
        struct swim_update ups[16];
        size_t n = 0;
        int rc = swim_decode(exact, cut, NULL, 0, &m, ups, 16, &n);
        if (rc == 0) {
            ok++;
            assert_true(n <= 16);
            for (size_t j = 0; j < n; j++) {
                assert_true(ups[j].status <= SWIM_STATUS_MAX);
                assert_true(strlen(ups[j].meta.kafka_listener) < SWIM_META_ADDR_MAX);
            }
        }
        test_free(exact);
    }
    assert_true(ok > 0 && ok < 20000); /* some mutations hit ignored bytes, most are rejected */
}

static void test_hmac_key_rules(void **state)
{
    (void)state;
    uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
    struct swim_msg m;
    struct swim_update ups[16];
    size_t n;
    int len = build(buf, sizeof(buf), 3, true);
    static const uint8_t wrong[] = "cluster-secret-0123456788";
    assert_int_equal(swim_decode(buf, (size_t)len, wrong, KEY_LEN, &m, ups, 16, &n), LM_E_CRC);
    assert_int_equal(swim_decode(buf, (size_t)len, NULL, 0, &m, ups, 16, &n), LM_E_CRC);
    len = build(buf, sizeof(buf), 3, false);
    assert_int_equal(swim_decode(buf, (size_t)len, key, KEY_LEN, &m, ups, 16, &n), LM_E_CRC);
    assert_int_equal(swim_decode(buf, (size_t)len, NULL, 0, &m, ups, 16, &n), 0);
    assert_int_equal(n, 3);
}

/* Writes a datagram by hand: header (count c) + raw update bytes. */
static size_t raw(uint8_t *buf, uint8_t type, uint8_t c, const uint8_t *body, size_t body_len)
{
    struct swim_enc e;
    struct swim_msg m = sample_msg();
    m.type = type;
    assert_int_equal(swim_enc_begin(&e, buf, 512, &m, false), 0);
    assert_int_equal(swim_enc_finish(&e, NULL, 0), SWIM_HEADER_BYTES);
    buf[3] = c;
    memcpy(buf + SWIM_HEADER_BYTES, body, body_len);
    return SWIM_HEADER_BYTES + body_len;
}

static void test_bad_fields(void **state)
{
    (void)state;
    uint8_t buf[512];
    struct swim_msg m;
    struct swim_update ups[4];
    size_t n;
    uint8_t u[64] = {0};
    size_t len = raw(buf, SWIM_MSG_PING, 0, u, 0);
    buf[0] = 2;
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_UNSUPPORTED);
    buf[0] = 1;
    buf[1] = 0;
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    buf[1] = 6;
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    buf[1] = 1;
    buf[2] = 0x80; /* unknown flag */
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    buf[2] = 0;
    /* trailing garbage after the announced updates */
    len = raw(buf, SWIM_MSG_PING, 0, u, 5);
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_CORRUPT);
    /* unknown status */
    u[0] = 4;
    len = raw(buf, SWIM_MSG_PING, 1, u, 16);
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    /* unknown update flag */
    u[0] = 0;
    u[1] = 4;
    len = raw(buf, SWIM_MSG_PING, 1, u, 16);
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    /* more updates than the caller's array */
    u[1] = 0;
    len = raw(buf, SWIM_MSG_PING, 5, u, 16);
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_TOO_LARGE);
    /* metadata: meta length past the end */
    u[1] = 1;
    u[16] = 0;
    u[17] = 40;
    len = raw(buf, SWIM_MSG_PING, 1, u, 18 + 10);
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_TRUNCATED);
    /* metadata: node id of the wrong width */
    uint8_t mid[] = {SWIM_META_NODE_ID, 3, 0, 0, 1};
    u[17] = sizeof(mid);
    memcpy(u + 18, mid, sizeof(mid));
    len = raw(buf, SWIM_MSG_PING, 1, u, 18 + sizeof(mid));
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    /* metadata: embedded NUL in a string */
    uint8_t nul[] = {SWIM_META_RACK, 3, 'a', 0, 'b'};
    memcpy(u + 18, nul, sizeof(nul));
    u[17] = sizeof(nul);
    len = raw(buf, SWIM_MSG_PING, 1, u, 18 + sizeof(nul));
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    /* metadata: string longer than its field */
    uint8_t lng[2 + 40] = {SWIM_META_RACK, 40};
    memset(lng + 2, 'r', 40);
    memcpy(u + 18, lng, sizeof(lng));
    u[17] = sizeof(lng);
    len = raw(buf, SWIM_MSG_PING, 1, u, 18 + sizeof(lng));
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), LM_E_INVALID);
    /* metadata: an unknown key is skipped, known ones still read */
    uint8_t unk[] = {99, 2, 'x', 'y', SWIM_META_RACK, 2, 'r', '1'};
    memcpy(u + 18, unk, sizeof(unk));
    u[17] = sizeof(unk);
    len = raw(buf, SWIM_MSG_PING, 1, u, 18 + sizeof(unk));
    assert_int_equal(swim_decode(buf, len, NULL, 0, &m, ups, 4, &n), 0);
    assert_int_equal(n, 1);
    assert_string_equal(ups[0].meta.rack, "r1");
}

static void test_encoder_bound(void **state)
{
    (void)state;
    for (int hmac = 0; hmac <= 1; hmac++) {
        uint8_t buf[SWIM_PACKET_SIZE_DEFAULT];
        struct swim_enc e;
        struct swim_msg m = sample_msg();
        assert_int_equal(swim_enc_begin(&e, buf, sizeof(buf), &m, hmac), 0);
        int added = 0;
        for (int i = 0;; i++) {
            struct swim_update u = sample_update(i * 4); /* alive, with metadata */
            size_t before = e.len;
            int rc = swim_enc_update(&e, &u);
            if (rc == LM_E_FULL) {
                assert_int_equal(e.len, before);
                break;
            }
            assert_int_equal(rc, 0);
            assert_int_equal(e.len - before, swim_enc_update_size(&u));
            added++;
        }
        int len = swim_enc_finish(&e, key, KEY_LEN);
        assert_true(len > 0 && len <= SWIM_PACKET_SIZE_DEFAULT);
        assert_true(len > SWIM_PACKET_SIZE_DEFAULT - 80); /* nearly full */
        assert_true(added > 10);
        struct swim_update ups[SWIM_UPDATES_MAX];
        size_t n;
        assert_int_equal(
            swim_decode(buf, (size_t)len, key, hmac ? KEY_LEN : 0, &m, ups, SWIM_UPDATES_MAX, &n),
            0);
        assert_int_equal((int)n, added);
    }
    uint8_t small[100];
    struct swim_enc e;
    struct swim_msg m = sample_msg();
    assert_int_equal(swim_enc_begin(&e, small, sizeof(small), &m, false), LM_E_INVALID);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_golden_header),
        cmocka_unit_test(test_truncation_every_byte),
        cmocka_unit_test(test_bit_flips),
        cmocka_unit_test(test_hmac_key_rules),
        cmocka_unit_test(test_bad_fields),
        cmocka_unit_test(test_encoder_bound),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
