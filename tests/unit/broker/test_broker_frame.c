/* Frame reader: split and merged reads, the length limit checked before allocating, memory
 * taken as bytes arrive (not at the prefix), and allocator refusal (backpressure) keeping the
 * reader's state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "broker/frame.h"
#include "common/lm_err.h"

struct alloc_ctx {
    int calls;
    int refuse; /* refuse this many calls first */
    uint32_t last_size;
    uint32_t last_cap;
    uint32_t max_cap;
};

static int frame_test_alloc(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap,
                            uint32_t size, uint8_t **out)
{
    struct alloc_ctx *a = ctx;
    a->calls++;
    a->last_size = size;
    assert_true(new_cap > old_cap && new_cap <= size);
    assert_true((old == NULL) == (old_cap == 0));
    if (a->refuse > 0) {
        a->refuse--;
        return LM_E_AGAIN;
    }
    a->last_cap = new_cap;
    if (new_cap > a->max_cap)
        a->max_cap = new_cap;
    *out = realloc(old, new_cap);
    return *out ? 0 : LM_E_NOMEM;
}

static void frame_test_free(void *ctx, uint8_t *p)
{
    (void)ctx;
    free(p);
}

static size_t put_frame(uint8_t *dst, const char *body)
{
    uint32_t n = (uint32_t)strlen(body);
    dst[0] = (uint8_t)(n >> 24);
    dst[1] = (uint8_t)(n >> 16);
    dst[2] = (uint8_t)(n >> 8);
    dst[3] = (uint8_t)n;
    memcpy(dst + 4, body, n);
    return 4 + n;
}

static void merged_frames_in_one_read(void **state)
{
    (void)state;
    struct alloc_ctx a = {0};
    struct broker_frame_reader fr;
    broker_frame_reader_init(&fr, 1024, frame_test_alloc, &a);
    uint8_t buf[64];
    size_t len = put_frame(buf, "hello");
    len += put_frame(buf + len, "kafka!");
    len += put_frame(buf + len, "x");
    const char *want[] = {"hello", "kafka!", "x"};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        size_t used = 0;
        struct broker_frame f;
        assert_int_equal(broker_frame_feed(&fr, buf + off, len - off, &used, &f), 1);
        off += used;
        assert_int_equal(f.size_bytes, strlen(want[i]));
        assert_memory_equal(f.body, want[i], f.size_bytes);
        free(f.body);
    }
    assert_int_equal(off, len);
    assert_true(broker_frame_reader_idle(&fr));
    broker_frame_reader_deinit(&fr, frame_test_free, NULL);
}

static void split_byte_by_byte(void **state)
{
    (void)state;
    struct alloc_ctx a = {0};
    struct broker_frame_reader fr;
    broker_frame_reader_init(&fr, 1024, frame_test_alloc, &a);
    uint8_t buf[64];
    size_t len = put_frame(buf, "split across reads");
    int frames = 0;
    for (size_t i = 0; i < len; i++) {
        size_t used = 0;
        struct broker_frame f;
        int rc = broker_frame_feed(&fr, buf + i, 1, &used, &f);
        assert_int_equal(used, 1);
        if (i + 1 < len) {
            assert_int_equal(rc, 0);
            assert_false(broker_frame_reader_idle(&fr));
        } else {
            assert_int_equal(rc, 1);
            assert_memory_equal(f.body, "split across reads", f.size_bytes);
            free(f.body);
            frames++;
        }
    }
    assert_int_equal(frames, 1);
    assert_int_equal(a.calls, 1); /* allocated once, with the first body byte */
    broker_frame_reader_deinit(&fr, frame_test_free, NULL);
}

static void limit_checked_before_allocating(void **state)
{
    (void)state;
    struct alloc_ctx a = {0};
    struct broker_frame_reader fr;
    const uint8_t prefixes[][4] = {
        {0x7f, 0xff, 0xff, 0xff}, /* 2 GiB - 1 */
        {0x80, 0x00, 0x00, 0x00}, /* "2 GiB": negative as an i32 */
        {0xff, 0xff, 0xff, 0xfb}, /* -5 */
        {0x00, 0x00, 0x00, 0x00}, /* empty frame */
        {0x00, 0x00, 0x04, 0x01}, /* limit + 1 */
    };
    const int want[] = {LM_E_TOO_LARGE, LM_E_INVALID, LM_E_INVALID, LM_E_INVALID, LM_E_TOO_LARGE};
    for (size_t i = 0; i < 5; i++) {
        broker_frame_reader_init(&fr, 1024, frame_test_alloc, &a);
        size_t used = 0;
        struct broker_frame f;
        assert_int_equal(broker_frame_feed(&fr, prefixes[i], 4, &used, &f), want[i]);
        broker_frame_reader_deinit(&fr, frame_test_free, NULL);
    }
    assert_int_equal(a.calls, 0);
    /* exactly the limit is accepted */
    broker_frame_reader_init(&fr, 1024, frame_test_alloc, &a);
    const uint8_t ok[4] = {0, 0, 4, 0};
    size_t used = 0;
    struct broker_frame f;
    assert_int_equal(broker_frame_feed(&fr, ok, 4, &used, &f), 0);
    assert_int_equal(a.calls, 0); /* nothing held for a prefix alone */
    assert_false(broker_frame_reader_idle(&fr));
    const uint8_t one = 7;
    assert_int_equal(broker_frame_feed(&fr, &one, 1, &used, &f), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.last_size, 1024);
    assert_int_equal(broker_frame_reader_held(&fr),
                     BROKER_FRAME_GROW_MIN < 1024 ? BROKER_FRAME_GROW_MIN : 1024);
    broker_frame_reader_deinit(&fr, frame_test_free, NULL); /* frees the partial body */
}

static void refusal_keeps_state(void **state)
{
    (void)state;
    struct alloc_ctx a = {.refuse = 2};
    struct broker_frame_reader fr;
    broker_frame_reader_init(&fr, 1024, frame_test_alloc, &a);
    uint8_t buf[32];
    size_t len = put_frame(buf, "abc");
    size_t used = 0;
    struct broker_frame f;
    assert_int_equal(broker_frame_feed(&fr, buf, len, &used, &f), LM_E_AGAIN);
    assert_int_equal(used, 4); /* prefix consumed, body left for later */
    assert_int_equal(broker_frame_feed(&fr, NULL, 0, &used, &f), 0); /* nothing to hold */
    assert_int_equal(used, 0);
    assert_int_equal(broker_frame_feed(&fr, buf + 4, len - 4, &used, &f), LM_E_AGAIN);
    assert_int_equal(used, 0);
    assert_int_equal(broker_frame_feed(&fr, buf + 4, len - 4, &used, &f), 1);
    assert_int_equal(used, 3);
    assert_memory_equal(f.body, "abc", 3);
    free(f.body);
    assert_int_equal(a.calls, 3);
    broker_frame_reader_deinit(&fr, frame_test_free, NULL);
}

/* A 100 MiB prefix followed by a trickle holds about what was sent (below twice it, at least
 * the first piece), not the 100 MiB announced; the frame still completes byte-exact when all of
 * it arrives, with linear copying (doubling). */
static void grows_with_bytes_received(void **state)
{
    (void)state;
    struct alloc_ctx a = {0};
    struct broker_frame_reader fr;
    const uint32_t size = 100u << 20;
    broker_frame_reader_init(&fr, (int32_t)size, frame_test_alloc, &a);
    uint8_t prefix[4] = {(uint8_t)(size >> 24), (uint8_t)(size >> 16), (uint8_t)(size >> 8),
                         (uint8_t)size};
    size_t used = 0;
    struct broker_frame f;
    assert_int_equal(broker_frame_feed(&fr, prefix, 4, &used, &f), 0);
    uint8_t *chunk = malloc(1 << 20);
    assert_non_null(chunk);
    size_t sent = 0;
    for (int i = 0; i < 1000; i++) { /* trickle: 10 bytes at a time */
        for (int k = 0; k < 10; k++)
            chunk[k] = (uint8_t)((sent + (size_t)k) * 7);
        assert_int_equal(broker_frame_feed(&fr, chunk, 10, &used, &f), 0);
        sent += 10;
        assert_true(broker_frame_reader_held(&fr) <=
                    (sent * 2 > BROKER_FRAME_GROW_MIN ? sent * 2 : BROKER_FRAME_GROW_MIN));
    }
    int calls_trickle = a.calls;
    assert_true(calls_trickle <= 3);
    int rc = 0;
    while (sent < size) {
        size_t n = size - sent < (1u << 20) ? size - sent : (1u << 20);
        for (size_t k = 0; k < n; k++)
            chunk[k] = (uint8_t)((sent + k) * 7);
        rc = broker_frame_feed(&fr, chunk, n, &used, &f);
        assert_int_equal(used, n);
        sent += n;
        assert_true(broker_frame_reader_held(&fr) <= 2 * sent || rc == 1);
    }
    assert_int_equal(rc, 1);
    assert_int_equal(f.size_bytes, size);
    assert_int_equal(a.max_cap, size);
    assert_true(a.calls < 20); /* doubling, not a grow per read */
    for (size_t k = 0; k < size; k += 4093)
        assert_int_equal(f.body[k], (uint8_t)(k * 7));
    assert_true(broker_frame_reader_idle(&fr));
    free(f.body);
    free(chunk);
    broker_frame_reader_deinit(&fr, frame_test_free, NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merged_frames_in_one_read),       cmocka_unit_test(split_byte_by_byte),
        cmocka_unit_test(limit_checked_before_allocating), cmocka_unit_test(refusal_keeps_state),
        cmocka_unit_test(grows_with_bytes_received),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
