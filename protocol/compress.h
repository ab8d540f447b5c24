/* Compression codecs of record batches (attributes bits 0-2): gzip, snappy, lz4, zstd.
 *
 * Wire formats, as Kafka's clients write them:
 *   gzip   - RFC 1952 gzip members (zlib with the gzip wrapper).
 *   snappy - the Java client writes xerial framing (snappy-java SnappyOutputStream): magic
 *            0x82 "SNAPPY" 0, i32 version 1, i32 compatible version 1, then blocks of i32
 *            big-endian length + raw snappy; librdkafka writes plain raw snappy. Both are read.
 *   lz4    - the LZ4 frame format (KIP-57).
 *   zstd   - zstd frames (KIP-110).
 * Every decompressor is bounded: output beyond the limit is LM_E_TOO_LARGE, bad input is
 * LM_E_COMPRESSION, and nothing grows past the limit. */
#ifndef LAMINAR_PROTOCOL_COMPRESS_H
#define LAMINAR_PROTOCOL_COMPRESS_H

#include <stddef.h>
#include <stdint.h>

#include "protocol/record_batch.h"

/* snappy-java's default block size, used when we write xerial framing. */
#define KAFKA_SNAPPY_XERIAL_BLOCK_SIZE (32 * 1024)

/* kafka_compress compresses src[0..src_size) with codec into a malloc'd buffer *out (the caller
 * free()s it) of *out_size bytes. Snappy is written with xerial framing, as the Java client
 * does. KAFKA_CODEC_NONE copies. Returns 0 or LM_E_INVALID (unknown codec), LM_E_NOMEM,
 * LM_E_TOO_LARGE (input too large for the codec), LM_E_COMPRESSION. */
int kafka_compress(enum kafka_codec codec, const uint8_t *src, size_t src_size, uint8_t **out,
                   size_t *out_size);

/* kafka_snappy_compress_raw compresses src as one plain (unframed) snappy block, as librdkafka
 * does, into a malloc'd *out (caller free()s). Returns 0 or LM_E_NOMEM / LM_E_COMPRESSION. */
int kafka_snappy_compress_raw(const uint8_t *src, size_t src_size, uint8_t **out, size_t *out_size);

/* kafka_decompress decompresses src into the caller's dst[0..dst_cap) and sets *out_size.
 * Returns 0, LM_E_TOO_LARGE if the output would exceed dst_cap, LM_E_COMPRESSION on bad or
 * truncated input, LM_E_INVALID for an unknown codec, LM_E_NOMEM. Allocates only the codec's
 * own context, freed before returning. */
int kafka_decompress(enum kafka_codec codec, const uint8_t *src, size_t src_size, uint8_t *dst,
                     size_t dst_cap, size_t *out_size);

/* kafka_decompress_alloc decompresses src into a buffer it allocates and grows geometrically up
 * to max_size bytes; on success *out (malloc'd, caller free()s; never NULL) holds *out_size
 * bytes. Same errors as kafka_decompress (LM_E_TOO_LARGE beyond max_size); on error nothing is
 * left allocated. */
int kafka_decompress_alloc(enum kafka_codec codec, const uint8_t *src, size_t src_size,
                           size_t max_size, uint8_t **out, size_t *out_size);

/* kafka_codec_name returns "none", "gzip", "snappy", "lz4", "zstd" or "unknown". */
const char *kafka_codec_name(enum kafka_codec codec);

#endif
