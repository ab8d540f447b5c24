/* Record batch compression codecs (see compress.h for the wire formats). */
#include "protocol/compress.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <lz4frame.h>
#include <snappy-c.h>
#include <zlib.h>
#include <zstd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_endian.h"

/* zstd's own default limit (ZSTD_WINDOWLOG_LIMIT_DEFAULT, 128 MiB), set explicitly so a frame
 * cannot ask the decoder for a larger window whatever the library's default becomes. Not tied
 * to the output limit: the Java client streams without a pledged size, so its frames declare
 * the level's full window (2 MiB at level 3) even for small batches. */
#define KC_ZSTD_WINDOW_LOG_MAX 27
#define KC_ZSTD_LEVEL          3

static const uint8_t kc_xerial_magic[8] = {0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0};
#define KC_XERIAL_HEADER_SIZE 16 /* magic + i32 version + i32 compatible version */

const char *kafka_codec_name(enum kafka_codec codec)
{
    switch (codec) {
    case KAFKA_CODEC_NONE:
        return "none";
    case KAFKA_CODEC_GZIP:
        return "gzip";
    case KAFKA_CODEC_SNAPPY:
        return "snappy";
    case KAFKA_CODEC_LZ4:
        return "lz4";
    case KAFKA_CODEC_ZSTD:
        return "zstd";
    }
    return "unknown";
}

/* ---- bounded output sink ----
 * Either the caller's fixed buffer or a heap buffer grown geometrically up to `max`. When the
 * limit is reached and a streaming decoder still wants room, it is handed a 1-byte probe: if
 * it writes anything there, the output is over the limit (LM_E_TOO_LARGE); if it finishes
 * without writing, the output fit exactly. */
struct kc_sink {
    uint8_t *buf;
    size_t len;
    size_t cap;
    size_t max;
    bool grow;
    bool probing;
    uint8_t probe;
};

static int kc_sink_reserve(struct kc_sink *s, size_t want)
{
    LM_ASSERT(s->len <= s->cap && s->cap <= s->max);
    if (want > s->max - s->len)
        return LM_E_TOO_LARGE;
    if (want <= s->cap - s->len)
        return 0;
    LM_ASSERT(s->grow);
    size_t ncap = s->cap > s->max / 2 ? s->max : s->cap * 2;
    if (ncap < s->len + want)
        ncap = s->len + want;
    uint8_t *nb = realloc(s->buf, ncap > 0 ? ncap : 1);
    if (nb == NULL)
        return LM_E_NOMEM;
    s->buf = nb;
    s->cap = ncap;
    return 0;
}

/* Room for a streaming decoder: whatever is free, growing if full, else the probe byte. */
static int kc_sink_space(struct kc_sink *s, uint8_t **p, size_t *room)
{
    if (s->cap == s->len && s->len < s->max) {
        int rc = kc_sink_reserve(s, 1);
        if (rc < 0)
            return rc;
    }
    if (s->cap > s->len) {
        s->probing = false;
        *p = s->buf + s->len;
        *room = s->cap - s->len;
    } else {
        s->probing = true;
        *p = &s->probe;
        *room = 1;
    }
    return 0;
}

static int kc_sink_commit(struct kc_sink *s, size_t produced)
{
    if (s->probing)
        return produced > 0 ? LM_E_TOO_LARGE : 0;
    LM_ASSERT(produced <= s->cap - s->len);
    s->len += produced;
    return 0;
}

/* ---- gzip ---- */

static int kc_gzip_decompress(struct kc_sink *s, const uint8_t *src, size_t n)
{
    if (n > UINT_MAX)
        return LM_E_TOO_LARGE;
    z_stream z;
    memset(&z, 0, sizeof(z));
    /* 15 + 16: a 32 KiB window and the gzip wrapper only, as Kafka's GZIPInputStream. */
    if (inflateInit2(&z, 15 + 16) != Z_OK)
        return LM_E_NOMEM;
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)n;
    int rc = 0;
    for (;;) {
        uint8_t *p;
        size_t room;
        rc = kc_sink_space(s, &p, &room);
        if (rc < 0)
            break;
        uInt chunk = room > UINT_MAX ? UINT_MAX : (uInt)room;
        z.next_out = p;
        z.avail_out = chunk;
        int zr = inflate(&z, Z_NO_FLUSH);
        rc = kc_sink_commit(s, chunk - z.avail_out);
        if (rc < 0)
            break;
        if (zr == Z_STREAM_END) {
            if (z.avail_in == 0)
                break;
            /* Another gzip member follows (RFC 1952 allows concatenation; GZIPInputStream
             * reads them all). */
            if (inflateReset(&z) != Z_OK) {
                rc = LM_E_COMPRESSION;
                break;
            }
            continue;
        }
        if (zr == Z_OK)
            continue;
        /* Z_BUF_ERROR with output room means the input ended mid-stream; anything else is
         * corrupt data (or Z_MEM_ERROR). */
        rc = zr == Z_MEM_ERROR ? LM_E_NOMEM : LM_E_COMPRESSION;
        break;
    }
    inflateEnd(&z);
    return rc;
}

static int kc_gzip_compress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_size)
{
    if (n > UINT_MAX / 2)
        return LM_E_TOO_LARGE;
    z_stream z;
    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return LM_E_NOMEM;
    /* deflateBound does not count the gzip wrapper's 18 bytes on every zlib version. */
    size_t bound = deflateBound(&z, (uLong)n) + 32;
    uint8_t *buf = malloc(bound);
    if (buf == NULL) {
        deflateEnd(&z);
        return LM_E_NOMEM;
    }
    z.next_in = (Bytef *)(uintptr_t)src;
    z.avail_in = (uInt)n;
    z.next_out = buf;
    z.avail_out = (uInt)bound;
    int zr = deflate(&z, Z_FINISH);
    size_t produced = bound - z.avail_out;
    deflateEnd(&z);
    if (zr != Z_STREAM_END) {
        free(buf);
        return LM_E_COMPRESSION;
    }
    *out = buf;
    *out_size = produced;
    return 0;
}

/* ---- snappy ---- */

/* One raw snappy block: its length preamble is checked against the limit before decoding. */
static int kc_snappy_raw_block(struct kc_sink *s, const uint8_t *src, size_t n)
{
    size_t ulen;
    if (snappy_uncompressed_length((const char *)src, n, &ulen) != SNAPPY_OK)
        return LM_E_COMPRESSION;
    int rc = kc_sink_reserve(s, ulen);
    if (rc < 0)
        return rc;
    size_t got = ulen;
    char empty;
    char *dst = ulen > 0 ? (char *)s->buf + s->len : &empty; /* s->buf may be NULL if ulen 0 */
    if (snappy_uncompress((const char *)src, n, dst, &got) != SNAPPY_OK)
        return LM_E_COMPRESSION;
    LM_ASSERT(got == ulen);
    s->len += got;
    return 0;
}

static int kc_snappy_decompress(struct kc_sink *s, const uint8_t *src, size_t n)
{
    /* Like snappy-java's SnappyInputStream (and librdkafka): xerial framing if the magic is
     * there, else one raw block. */
    if (n < sizeof(kc_xerial_magic) || memcmp(src, kc_xerial_magic, sizeof(kc_xerial_magic)))
        return kc_snappy_raw_block(s, src, n);
    if (n < KC_XERIAL_HEADER_SIZE)
        return LM_E_COMPRESSION;
    size_t pos = KC_XERIAL_HEADER_SIZE;
    while (pos < n) {
        if (n - pos < 4)
            return LM_E_COMPRESSION;
        uint32_t blen = lm_get_be32(src + pos);
        pos += 4;
        if (blen > INT32_MAX || blen > n - pos)
            return LM_E_COMPRESSION;
        int rc = kc_snappy_raw_block(s, src + pos, blen);
        if (rc < 0)
            return rc;
        pos += blen;
    }
    LM_ASSERT(pos == n);
    return 0;
}

int kafka_snappy_compress_raw(const uint8_t *src, size_t n, uint8_t **out, size_t *out_size)
{
    LM_ASSERT(src != NULL || n == 0);
    size_t bound = snappy_max_compressed_length(n);
    uint8_t *buf = malloc(bound > 0 ? bound : 1);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t clen = bound;
    if (snappy_compress((const char *)src, n, (char *)buf, &clen) != SNAPPY_OK) {
        free(buf);
        return LM_E_COMPRESSION;
    }
    *out = buf;
    *out_size = clen;
    return 0;
}

static int kc_snappy_compress_xerial(const uint8_t *src, size_t n, uint8_t **out, size_t *out_size)
{
    const size_t block = KAFKA_SNAPPY_XERIAL_BLOCK_SIZE;
    size_t blocks = (n + block - 1) / block;
    size_t per_block = 4 + snappy_max_compressed_length(block);
    if (blocks > (SIZE_MAX - KC_XERIAL_HEADER_SIZE) / per_block)
        return LM_E_TOO_LARGE;
    size_t bound = KC_XERIAL_HEADER_SIZE + blocks * per_block;
    uint8_t *buf = malloc(bound);
    if (buf == NULL)
        return LM_E_NOMEM;
    memcpy(buf, kc_xerial_magic, sizeof(kc_xerial_magic));
    lm_put_be32(buf + 8, 1);  /* version */
    lm_put_be32(buf + 12, 1); /* minimum compatible version */
    size_t pos = KC_XERIAL_HEADER_SIZE;
    for (size_t off = 0; off < n; off += block) {
        size_t len = n - off < block ? n - off : block;
        size_t clen = bound - pos - 4;
        if (snappy_compress((const char *)src + off, len, (char *)buf + pos + 4, &clen) !=
            SNAPPY_OK) {
            free(buf);
            return LM_E_COMPRESSION;
        }
        lm_put_be32(buf + pos, (uint32_t)clen);
        pos += 4 + clen;
    }
    LM_ASSERT(pos <= bound);
    *out = buf;
    *out_size = pos;
    return 0;
}

/* ---- lz4 (frame format) ---- */

static int kc_lz4_decompress(struct kc_sink *s, const uint8_t *src, size_t n)
{
    LZ4F_dctx *ctx = NULL;
    if (LZ4F_isError(LZ4F_createDecompressionContext(&ctx, LZ4F_VERSION)))
        return LM_E_NOMEM;
    size_t pos = 0;
    int rc = 0;
    for (;;) {
        uint8_t *p;
        size_t room;
        rc = kc_sink_space(s, &p, &room);
        if (rc < 0)
            break;
        size_t dst_size = room;
        size_t src_size = n - pos;
        size_t hint = LZ4F_decompress(ctx, p, &dst_size, src + pos, &src_size, NULL);
        if (LZ4F_isError(hint)) {
            rc = LM_E_COMPRESSION;
            break;
        }
        pos += src_size;
        rc = kc_sink_commit(s, dst_size);
        if (rc < 0)
            break;
        /* hint 0: a frame ended and was flushed; further input would be another frame. */
        if (hint == 0 && pos == n)
            break;
        if (pos == n && dst_size < room) {
            rc = LM_E_COMPRESSION; /* the frame is cut short */
            break;
        }
        if (src_size == 0 && dst_size == 0) {
            rc = LM_E_COMPRESSION; /* no progress possible */
            break;
        }
    }
    LZ4F_freeDecompressionContext(ctx);
    return rc;
}

static int kc_lz4_compress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_size)
{
    LZ4F_preferences_t prefs;
    memset(&prefs, 0, sizeof(prefs));
    /* 64 KiB independent blocks, as Kafka's KafkaLZ4BlockOutputStream writes by default. */
    prefs.frameInfo.blockSizeID = LZ4F_max64KB;
    prefs.frameInfo.blockMode = LZ4F_blockIndependent;
    size_t bound = LZ4F_compressFrameBound(n, &prefs);
    uint8_t *buf = malloc(bound);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t clen = LZ4F_compressFrame(buf, bound, src, n, &prefs);
    if (LZ4F_isError(clen)) {
        free(buf);
        return LM_E_COMPRESSION;
    }
    *out = buf;
    *out_size = clen;
    return 0;
}

/* ---- zstd ---- */

static int kc_zstd_decompress(struct kc_sink *s, const uint8_t *src, size_t n)
{
    ZSTD_DCtx *ctx = ZSTD_createDCtx();
    if (ctx == NULL)
        return LM_E_NOMEM;
    if (ZSTD_isError(ZSTD_DCtx_setParameter(ctx, ZSTD_d_windowLogMax, KC_ZSTD_WINDOW_LOG_MAX))) {
        ZSTD_freeDCtx(ctx);
        return LM_E_COMPRESSION;
    }
    ZSTD_inBuffer in = {src, n, 0};
    int rc = 0;
    for (;;) {
        uint8_t *p;
        size_t room;
        rc = kc_sink_space(s, &p, &room);
        if (rc < 0)
            break;
        ZSTD_outBuffer ob = {p, room, 0};
        size_t in_before = in.pos;
        size_t r = ZSTD_decompressStream(ctx, &ob, &in);
        if (ZSTD_isError(r)) {
            rc = LM_E_COMPRESSION;
            break;
        }
        rc = kc_sink_commit(s, ob.pos);
        if (rc < 0)
            break;
        /* r == 0: a frame is complete and flushed; more input would be a further frame. */
        if (r == 0 && in.pos == in.size)
            break;
        if (in.pos == in.size && ob.pos < ob.size) {
            rc = LM_E_COMPRESSION; /* input ended inside a frame */
            break;
        }
        if (in.pos == in_before && ob.pos == 0) {
            rc = LM_E_COMPRESSION;
            break;
        }
    }
    ZSTD_freeDCtx(ctx);
    return rc;
}

static int kc_zstd_compress(const uint8_t *src, size_t n, uint8_t **out, size_t *out_size)
{
    size_t bound = ZSTD_compressBound(n);
    if (ZSTD_isError(bound))
        return LM_E_TOO_LARGE;
    uint8_t *buf = malloc(bound);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t clen = ZSTD_compress(buf, bound, src, n, KC_ZSTD_LEVEL);
    if (ZSTD_isError(clen)) {
        free(buf);
        return LM_E_COMPRESSION;
    }
    *out = buf;
    *out_size = clen;
    return 0;
}

/* ---- dispatch ---- */

static int kc_decompress_into(enum kafka_codec codec, struct kc_sink *s, const uint8_t *src,
                              size_t n)
{
    /* Every compressed format starts with a header, so empty input is never valid (and the
     * decoders below can assume src is a real pointer). */
    if (codec != KAFKA_CODEC_NONE && n == 0)
        return (unsigned)codec <= KAFKA_CODEC_ZSTD ? LM_E_COMPRESSION : LM_E_INVALID;
    switch (codec) {
    case KAFKA_CODEC_NONE: {
        int rc = kc_sink_reserve(s, n);
        if (rc < 0)
            return rc;
        if (n > 0)
            memcpy(s->buf + s->len, src, n);
        s->len += n;
        return 0;
    }
    case KAFKA_CODEC_GZIP:
        return kc_gzip_decompress(s, src, n);
    case KAFKA_CODEC_SNAPPY:
        return kc_snappy_decompress(s, src, n);
    case KAFKA_CODEC_LZ4:
        return kc_lz4_decompress(s, src, n);
    case KAFKA_CODEC_ZSTD:
        return kc_zstd_decompress(s, src, n);
    }
    return LM_E_INVALID;
}

int kafka_decompress(enum kafka_codec codec, const uint8_t *src, size_t src_size, uint8_t *dst,
                     size_t dst_cap, size_t *out_size)
{
    LM_ASSERT(src != NULL || src_size == 0);
    LM_ASSERT(dst != NULL || dst_cap == 0);
    LM_ASSERT(out_size != NULL);
    struct kc_sink s = {.buf = dst, .len = 0, .cap = dst_cap, .max = dst_cap, .grow = false};
    int rc = kc_decompress_into(codec, &s, src, src_size);
    if (rc < 0)
        return rc;
    LM_ASSERT(s.len <= dst_cap);
    *out_size = s.len;
    return 0;
}

int kafka_decompress_alloc(enum kafka_codec codec, const uint8_t *src, size_t src_size,
                           size_t max_size, uint8_t **out, size_t *out_size)
{
    LM_ASSERT(src != NULL || src_size == 0);
    LM_ASSERT(out != NULL && out_size != NULL);
    /* Start near a typical ratio and double from there, so a small batch does not cost a
     * max_size allocation and a bomb stops at max_size. */
    size_t cap = src_size < SIZE_MAX / 4 ? src_size * 4 : SIZE_MAX;
    if (cap < 4096)
        cap = 4096;
    if (cap > max_size)
        cap = max_size;
    struct kc_sink s = {
        .buf = malloc(cap > 0 ? cap : 1), .cap = cap, .max = max_size, .grow = true};
    if (s.buf == NULL)
        return LM_E_NOMEM;
    int rc = kc_decompress_into(codec, &s, src, src_size);
    if (rc < 0) {
        free(s.buf);
        return rc;
    }
    LM_ASSERT(s.len <= max_size);
    *out = s.buf;
    *out_size = s.len;
    return 0;
}

int kafka_compress(enum kafka_codec codec, const uint8_t *src, size_t src_size, uint8_t **out,
                   size_t *out_size)
{
    LM_ASSERT(src != NULL || src_size == 0);
    LM_ASSERT(out != NULL && out_size != NULL);
    switch (codec) {
    case KAFKA_CODEC_NONE: {
        uint8_t *buf = malloc(src_size > 0 ? src_size : 1);
        if (buf == NULL)
            return LM_E_NOMEM;
        if (src_size > 0)
            memcpy(buf, src, src_size);
        *out = buf;
        *out_size = src_size;
        return 0;
    }
    case KAFKA_CODEC_GZIP:
        return kc_gzip_compress(src, src_size, out, out_size);
    case KAFKA_CODEC_SNAPPY:
        return kc_snappy_compress_xerial(src, src_size, out, out_size);
    case KAFKA_CODEC_LZ4:
        return kc_lz4_compress(src, src_size, out, out_size);
    case KAFKA_CODEC_ZSTD:
        return kc_zstd_compress(src, src_size, out, out_size);
    }
    return LM_E_INVALID;
}
