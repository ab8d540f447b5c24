/* codec_dump: the C half of the codec cross-check against kafka-clients' own message classes.
 *
 *   codec_dump emit FILE    encode sample messages (every api key in kafka_api_table, request
 *                           and response, every version we support, seeds 0..3, plus the
 *                           request and response headers) and write one line per message.
 *   codec_dump check FILE   read lines in the same format (written by the Java checker from
 *                           messages Java built), decode each, require every byte consumed,
 *                           re-encode at the same version and require identical bytes.
 *
 * Line format: "<key> <req|resp> <version> <seed> <hex>", key -1 for the headers (req = the
 * request header, resp = the response header), hex "-" for an empty body. The sample fillers
 * (lm_protocol_sample) put a non-default value in every field on the wire at the version; odd
 * seeds make nullable fields null instead. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_rt.h"
#include "protocol/kafka_sample.h"

#define DUMP_SEEDS       4u
#define DUMP_ARENA_BYTES (4u << 20)
#define HEADER_KEY       (-1)

/* One message kind: the generic entry points plus its filler and version range. */
struct dump_kind {
    int16_t key;
    const char *name;
    int is_response;
    int16_t min_version;
    int16_t max_version;
    struct kafka_msg_ops ops;
    kafka_fill_fn fill;
};

/* The headers are not in kafka_api_table; wrap their typed functions in the generic shape. */
static void req_header_init(void *m)
{
    kafka_request_header_init(m);
}

static int req_header_decode(struct kafka_reader *r, int16_t v, void *m, struct kafka_arena *a)
{
    return kafka_request_header_decode(r, v, m, a);
}

static int req_header_encode(struct kafka_writer *w, int16_t v, const void *m)
{
    return kafka_request_header_encode(w, v, m);
}

static size_t req_header_size(int16_t v, const void *m)
{
    return kafka_request_header_size(v, m);
}

static void req_header_fill(void *m, int16_t v, struct kafka_arena *a, uint32_t seed)
{
    kafka_request_header_fill_sample(m, v, a, seed);
}

static void resp_header_init(void *m)
{
    kafka_response_header_init(m);
}

static int resp_header_decode(struct kafka_reader *r, int16_t v, void *m, struct kafka_arena *a)
{
    return kafka_response_header_decode(r, v, m, a);
}

static int resp_header_encode(struct kafka_writer *w, int16_t v, const void *m)
{
    return kafka_response_header_encode(w, v, m);
}

static size_t resp_header_size(int16_t v, const void *m)
{
    return kafka_response_header_size(v, m);
}

static void resp_header_fill(void *m, int16_t v, struct kafka_arena *a, uint32_t seed)
{
    kafka_response_header_fill_sample(m, v, a, seed);
}

static const struct dump_kind header_kinds[2] = {
    {HEADER_KEY,
     "RequestHeader",
     0,
     KAFKA_REQUEST_HEADER_MIN_VERSION,
     KAFKA_REQUEST_HEADER_MAX_VERSION,
     {sizeof(struct kafka_request_header), req_header_init, req_header_decode, req_header_encode,
      req_header_size, -1},
     req_header_fill},
    {HEADER_KEY,
     "ResponseHeader",
     1,
     KAFKA_RESPONSE_HEADER_MIN_VERSION,
     KAFKA_RESPONSE_HEADER_MAX_VERSION,
     {sizeof(struct kafka_response_header), resp_header_init, resp_header_decode,
      resp_header_encode, resp_header_size, -1},
     resp_header_fill},
};

/* find_kind fills *k for (key, is_response); -1 if we have no such message. */
static int find_kind(int16_t key, int is_response, struct dump_kind *k)
{
    if (key == HEADER_KEY) {
        *k = header_kinds[is_response ? 1 : 0];
        return 0;
    }
    const struct kafka_api_info *api = kafka_api_lookup(key);
    const struct kafka_sample_info *s = kafka_sample_lookup(key);
    if (api == NULL || s == NULL)
        return -1;
    k->key = key;
    k->name = api->name;
    k->is_response = is_response;
    k->min_version = api->min_version;
    k->max_version = api->max_version;
    k->ops = is_response ? api->response : api->request;
    k->fill = is_response ? s->fill_response : s->fill_request;
    return 0;
}

/* encode_one fills a sample, encodes it into a malloc'd *out (caller frees) and checks that
 * our own decoder reads it back to the same bytes, so a failure here is ours, not Java's. */
static int encode_one(const struct dump_kind *k, int16_t v, uint32_t seed, uint8_t **out,
                      size_t *out_len)
{
    struct kafka_arena a;
    kafka_arena_init(&a, DUMP_ARENA_BYTES);
    void *m = calloc(1, k->ops.struct_size);
    void *m2 = calloc(1, k->ops.struct_size);
    size_t n = 0;
    uint8_t *buf = NULL, *buf2 = NULL;
    int rc = LM_E_NOMEM;
    if (m == NULL || m2 == NULL)
        goto out;
    k->ops.init(m);
    k->fill(m, v, &a, seed);
    n = k->ops.size(v, m);
    buf = malloc(n + 1);
    buf2 = malloc(n + 1);
    if (buf == NULL || buf2 == NULL)
        goto out;
    struct kafka_writer w;
    kafka_writer_init(&w, buf, n);
    rc = k->ops.encode(&w, v, m);
    if (rc == 0 && w.pos != n)
        rc = LM_E_INVALID;
    if (rc != 0)
        goto out;
    struct kafka_reader r;
    kafka_reader_init(&r, buf, n);
    k->ops.init(m2);
    rc = k->ops.decode(&r, v, m2, &a);
    if (rc == 0 && r.pos != n)
        rc = LM_E_INVALID;
    if (rc != 0)
        goto out;
    kafka_writer_init(&w, buf2, n);
    rc = k->ops.encode(&w, v, m2);
    if (rc == 0 && (w.pos != n || memcmp(buf, buf2, n) != 0))
        rc = LM_E_INVALID;
out:
    if (rc == 0) {
        *out = buf;
        *out_len = n;
        buf = NULL;
    }
    free(buf);
    free(buf2);
    free(m);
    free(m2);
    kafka_arena_deinit(&a);
    return rc;
}

static int write_line(FILE *f, const struct dump_kind *k, int16_t v, uint32_t seed,
                      const uint8_t *b, size_t n)
{
    if (fprintf(f, "%d %s %d %" PRIu32 " ", k->key, k->is_response ? "resp" : "req", v, seed) < 0)
        return LM_E_IO;
    if (n == 0 && fputc('-', f) == EOF)
        return LM_E_IO;
    for (size_t i = 0; i < n; i++)
        if (fprintf(f, "%02x", b[i]) < 0)
            return LM_E_IO;
    return fputc('\n', f) == EOF ? LM_E_IO : 0;
}

static int emit_kind(FILE *f, const struct dump_kind *k, unsigned *count)
{
    for (int16_t v = k->min_version; v <= k->max_version; v++) {
        for (uint32_t seed = 0; seed < DUMP_SEEDS; seed++) {
            uint8_t *b = NULL;
            size_t n = 0;
            int rc = encode_one(k, v, seed, &b, &n);
            if (rc != 0) {
                fprintf(stderr, "codec_dump: %s %s v%d seed %" PRIu32 ": own round trip: %s\n",
                        k->name, k->is_response ? "response" : "request", v, seed, lm_strerror(rc));
                return rc;
            }
            rc = write_line(f, k, v, seed, b, n);
            free(b);
            if (rc != 0)
                return rc;
            (*count)++;
        }
    }
    return 0;
}

static int cmd_emit(const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) {
        fprintf(stderr, "codec_dump: %s: %s\n", path, strerror(errno));
        return 1;
    }
    unsigned count = 0;
    int rc = 0;
    for (int side = 0; side < 2 && rc == 0; side++)
        rc = emit_kind(f, &header_kinds[side], &count);
    for (size_t i = 0; i < kafka_api_count && rc == 0; i++) {
        for (int side = 0; side < 2 && rc == 0; side++) {
            struct dump_kind k;
            rc = find_kind(kafka_api_table[i].key, side, &k);
            if (rc != 0)
                fprintf(stderr, "codec_dump: api key %d has no sample filler\n",
                        kafka_api_table[i].key);
            else
                rc = emit_kind(f, &k, &count);
        }
    }
    if (fclose(f) != 0 && rc == 0)
        rc = LM_E_IO;
    if (rc != 0)
        return 1;
    printf("codec_dump: wrote %u messages (%zu apis + 2 headers, seeds 0-%u) to %s\n", count,
           kafka_api_count, DUMP_SEEDS - 1, path);
    return 0;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* parse_hex decodes hex (or "-" for empty) into a malloc'd buffer of *n bytes. */
static int parse_hex(const char *hex, uint8_t **out, size_t *n)
{
    size_t len = strcmp(hex, "-") == 0 ? 0 : strlen(hex);
    if (len % 2 != 0)
        return LM_E_INVALID;
    uint8_t *b = malloc(len / 2 + 1);
    if (b == NULL)
        return LM_E_NOMEM;
    for (size_t i = 0; i < len / 2; i++) {
        int hi = hex_nibble(hex[2 * i]), lo = hex_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            free(b);
            return LM_E_INVALID;
        }
        b[i] = (uint8_t)(hi << 4 | lo);
    }
    *out = b;
    *n = len / 2;
    return 0;
}

/* check_one decodes Java's bytes and re-encodes them; prints why and returns 1 on mismatch. */
static int check_one(const struct dump_kind *k, int16_t v, const char *seed, const uint8_t *b,
                     size_t n)
{
    const char *dir = k->is_response ? "response" : "request";
    struct kafka_arena a;
    kafka_arena_init(&a, DUMP_ARENA_BYTES);
    void *m = calloc(1, k->ops.struct_size);
    uint8_t *out = malloc(n + 1);
    int bad = 1;
    LM_ASSERT(m != NULL && out != NULL);
    k->ops.init(m);
    struct kafka_reader r;
    kafka_reader_init(&r, b, n);
    int rc = k->ops.decode(&r, v, m, &a);
    if (rc != 0) {
        printf("FAIL %s %s v%d seed %s: decode of Java's %zu bytes: %s (at offset %zu)\n", k->name,
               dir, v, seed, n, lm_strerror(rc), r.pos);
        goto out;
    }
    if (r.pos != n) {
        printf("FAIL %s %s v%d seed %s: decode left %zu of Java's %zu bytes unread\n", k->name, dir,
               v, seed, n - r.pos, n);
        goto out;
    }
    size_t n2 = k->ops.size(v, m);
    struct kafka_writer w;
    kafka_writer_init(&w, out, n);
    rc = k->ops.encode(&w, v, m);
    if (rc != 0 || n2 != n || w.pos != n) {
        printf("FAIL %s %s v%d seed %s: laminar re-encodes %zu bytes (size %zu, %s), Java's "
               "message has %zu\n",
               k->name, dir, v, seed, w.pos, n2, lm_strerror(rc), n);
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        if (out[i] != b[i]) {
            printf("FAIL %s %s v%d seed %s: re-encoded bytes differ first at offset %zu "
                   "(ours %02x, Java %02x)\n",
                   k->name, dir, v, seed, i, out[i], b[i]);
            goto out;
        }
    }
    bad = 0;
out:
    free(out);
    free(m);
    kafka_arena_deinit(&a);
    return bad;
}

static int cmd_check(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        fprintf(stderr, "codec_dump: %s: %s\n", path, strerror(errno));
        return 1;
    }
    unsigned passed = 0, failed = 0, lineno = 0;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        char dir[8], seed[16];
        int key, version, used = 0;
        if (sscanf(line, "%d %7s %d %15s %n", &key, dir, &version, seed, &used) != 4 || used == 0) {
            printf("FAIL %s:%u: malformed line\n", path, lineno);
            failed++;
            continue;
        }
        char *hex = line + used;
        hex[strcspn(hex, " \r\n")] = '\0';
        struct dump_kind k;
        if (find_kind((int16_t)key, strcmp(dir, "resp") == 0, &k) != 0) {
            printf("FAIL %s:%u: api key %d unknown to laminar\n", path, lineno, key);
            failed++;
            continue;
        }
        uint8_t *b = NULL;
        size_t n = 0;
        if (parse_hex(hex, &b, &n) != 0) {
            printf("FAIL %s:%u: bad hex\n", path, lineno);
            failed++;
            continue;
        }
        if (check_one(&k, (int16_t)version, seed, b, n) != 0)
            failed++;
        else
            passed++;
        free(b);
    }
    free(line);
    fclose(f);
    printf("codec_dump check (Java-encoded -> laminar decode/re-encode): %u passed, %u failed\n",
           passed, failed);
    return failed != 0 || passed == 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && strcmp(argv[1], "emit") == 0)
        return cmd_emit(argv[2]);
    if (argc == 3 && strcmp(argv[1], "check") == 0)
        return cmd_check(argv[2]);
    fprintf(stderr, "usage: codec_dump emit FILE | codec_dump check FILE\n");
    return 2;
}
