/* Golden bytes from real clients (golden/NAME.hex, captured as golden/README.md says): each request
 * frame decodes (header + body, every byte consumed) and re-encodes byte for byte. */
#include <ctype.h>
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "protocol/kafka_api.h"

#ifndef CODEC_GOLDEN_DIR
#error "CODEC_GOLDEN_DIR must name the fixture folder"
#endif

/* Reads a fixture: '#' lines are comments, the rest is hex. Returns a malloc'ed buffer. */
static uint8_t *read_hex(const char *path, size_t *len)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t cap = 1 << 16, n = 0;
    uint8_t *out = malloc(cap);
    assert_non_null(out);
    char line[4096];
    while (fgets(line, sizeof(line), f) != NULL) {
        if (line[0] == '#')
            continue;
        int hi = -1;
        for (char *p = line; *p; p++) {
            if (isspace((unsigned char)*p))
                continue;
            assert_true(isxdigit((unsigned char)*p));
            int d = isdigit((unsigned char)*p) ? *p - '0' : (tolower((unsigned char)*p) - 'a' + 10);
            if (hi < 0) {
                hi = d;
            } else {
                if (n == cap) {
                    cap *= 2;
                    out = realloc(out, cap);
                    assert_non_null(out);
                }
                out[n++] = (uint8_t)(hi << 4 | d);
                hi = -1;
            }
        }
        assert_int_equal(hi, -1);
    }
    fclose(f);
    *len = n;
    return out;
}

static void check_frame(const char *name, const uint8_t *frame, size_t len)
{
    assert_true(len >= 4);
    int16_t key = (int16_t)(frame[0] << 8 | frame[1]);
    int16_t ver = (int16_t)(frame[2] << 8 | frame[3]);
    const struct kafka_api_info *api = kafka_api_lookup(key);
    if (api == NULL)
        fail_msg("%s: api key %d has no schema", name, key);
    int hv = kafka_request_header_version(key, ver);
    if (hv < 0)
        fail_msg("%s: %s v%d outside our range %d-%d", name, api->name, ver, api->min_version,
                 api->max_version);
    /* exactly-sized copy so ASan sees any over-read */
    uint8_t *in = malloc(len);
    assert_non_null(in);
    memcpy(in, frame, len);
    struct kafka_arena a;
    kafka_arena_init(&a, 1u << 20);
    struct kafka_reader r;
    kafka_reader_init(&r, in, len);
    struct kafka_request_header h;
    int rc = kafka_request_header_decode(&r, (int16_t)hv, &h, &a);
    assert_int_equal(rc, 0);
    assert_int_equal(h.request_api_key, key);
    assert_int_equal(h.request_api_version, ver);
    void *m = calloc(1, api->request.struct_size);
    assert_non_null(m);
    rc = api->request.decode(&r, ver, m, &a);
    if (rc != 0 || kafka_reader_left(&r) != 0)
        fail_msg("%s: %s v%d decode rc %s, %zu bytes left", name, api->name, ver, lm_errname(rc),
                 kafka_reader_left(&r));
    size_t n = kafka_request_header_size((int16_t)hv, &h) + api->request.size(ver, m);
    assert_int_equal(n, len);
    uint8_t *out = malloc(n);
    assert_non_null(out);
    struct kafka_writer w;
    kafka_writer_init(&w, out, n);
    assert_int_equal(kafka_request_header_encode(&w, (int16_t)hv, &h), 0);
    assert_int_equal(api->request.encode(&w, ver, m), 0);
    assert_int_equal(w.pos, len);
    if (memcmp(out, frame, len) != 0) {
        size_t i = 0;
        while (out[i] == frame[i])
            i++;
        fail_msg("%s: re-encoded bytes differ first at offset %zu", name, i);
    }
    printf("%-40s %-12s v%-2d %5zu bytes: decoded and re-encoded identically\n", name, api->name,
           ver, len);
    free(out);
    free(m);
    free(in);
    kafka_arena_deinit(&a);
}

/* The next golden frame (a *.hex file) of d, with its file name in *name (valid until the next
 * call), or NULL after the last. The caller frees the frame. */
static uint8_t *next_frame(DIR *d, const char **name, size_t *len)
{
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t nl = strlen(e->d_name);
        if (nl < 5 || strcmp(e->d_name + nl - 4, ".hex") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", CODEC_GOLDEN_DIR, e->d_name);
        *name = e->d_name;
        return read_hex(path, len);
    }
    return NULL;
}

static void test_golden_frames(void **state)
{
    (void)state;
    DIR *d = opendir(CODEC_GOLDEN_DIR);
    assert_non_null(d);
    int files = 0, by_client[3] = {0}, by_api[4] = {0};
    const char *name;
    size_t len;
    uint8_t *frame;
    while ((frame = next_frame(d, &name, &len)) != NULL) {
        check_frame(name, frame, len);
        int16_t key = (int16_t)(frame[0] << 8 | frame[1]);
        by_api[0] += key == 18;
        by_api[1] += key == 3;
        by_api[2] += key == 0;
        by_api[3] += key == 1;
        by_client[0] += strncmp(name, "librdkafka", 10) == 0;
        by_client[1] += strncmp(name, "kafka_python", 12) == 0;
        by_client[2] += strncmp(name, "java", 4) == 0;
        free(frame);
        files++;
    }
    closedir(d);
    /* The fixtures must cover the three clients and the four apis, else this proves little. */
    assert_true(files >= 12);
    for (int i = 0; i < 3; i++)
        assert_true(by_client[i] >= 3);
    for (int i = 0; i < 4; i++)
        assert_true(by_api[i] >= 3);
}

/* A flipped byte inside a golden frame still never crashes the decoder. */
static void test_golden_mutations(void **state)
{
    (void)state;
    DIR *d = opendir(CODEC_GOLDEN_DIR);
    assert_non_null(d);
    const char *name;
    size_t len;
    uint8_t *frame;
    while ((frame = next_frame(d, &name, &len)) != NULL) {
        int16_t key = (int16_t)(frame[0] << 8 | frame[1]);
        int16_t ver = (int16_t)(frame[2] << 8 | frame[3]);
        const struct kafka_api_info *api = kafka_api_lookup(key);
        int hv = kafka_request_header_version(key, ver);
        assert_non_null(api);
        void *m = calloc(1, api->request.struct_size);
        for (size_t cut = 4; cut < len; cut++) {
            uint8_t *in = malloc(cut);
            memcpy(in, frame, cut);
            struct kafka_arena a;
            kafka_arena_init(&a, 1u << 20);
            struct kafka_reader r;
            kafka_reader_init(&r, in, cut);
            struct kafka_request_header h;
            int rc = kafka_request_header_decode(&r, (int16_t)hv, &h, &a);
            if (rc == 0)
                rc = api->request.decode(&r, ver, m, &a);
            assert_true(rc < 0); /* every truncation of a real frame is an error */
            kafka_arena_deinit(&a);
            free(in);
        }
        free(m);
        free(frame);
    }
    closedir(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden_frames),
        cmocka_unit_test(test_golden_mutations),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
