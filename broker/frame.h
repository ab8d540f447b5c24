/* Frame reader: splits a TCP byte stream into Kafka request frames (i32 big-endian length
 * prefix, then that many bytes). The length is checked against the limit
 * (socket.request.max.bytes) BEFORE anything is allocated (DESIGN.md §7); a negative or
 * too-large prefix is an error and the caller closes the connection, as Kafka does. */
#ifndef LAMINAR_BROKER_FRAME_H
#define LAMINAR_BROKER_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Allocates room for a frame body of n bytes; returns 0 and sets *out, or LM_E_AGAIN when the
 * memory budget is exhausted (the reader keeps its state and the caller retries later). The
 * returned memory is owned by whoever receives the finished frame. */
typedef int (*broker_frame_alloc_fn)(void *ctx, uint32_t size_bytes, uint8_t **out);

struct broker_frame_reader {
    uint8_t hdr[4];
    uint32_t hdr_have;
    uint8_t *buf; /* body being filled, NULL while reading the prefix */
    uint32_t need;
    uint32_t have;
    int32_t size_bytes_max;
    broker_frame_alloc_fn alloc;
    void *alloc_ctx;
};

/* A finished frame: body of size_bytes, owned by the receiver (allocated by alloc). */
struct broker_frame {
    uint8_t *body;
    uint32_t size_bytes;
};

/* Initialises a reader with the frame limit and the body allocator. */
void broker_frame_reader_init(struct broker_frame_reader *fr, int32_t size_bytes_max,
                              broker_frame_alloc_fn alloc, void *alloc_ctx);
/* Frees a partially filled body, if any, with free_fn (may be NULL when nothing was taken). */
void broker_frame_reader_deinit(struct broker_frame_reader *fr, void (*free_fn)(void *, uint8_t *),
                                void *ctx);
/* Feeds up to len bytes. Returns 1 with *out set when a frame completed (more bytes may remain:
 * *consumed says how many were used), 0 when all bytes were consumed and no frame completed,
 * LM_E_AGAIN when the allocator refused (feed again later, *consumed bytes were used),
 * LM_E_TOO_LARGE for a prefix above the limit and LM_E_INVALID for a prefix <= 0. */
int broker_frame_feed(struct broker_frame_reader *fr, const uint8_t *data, size_t len,
                      size_t *consumed, struct broker_frame *out);
/* True when the reader is between frames (no partial prefix or body held). */
int broker_frame_reader_idle(const struct broker_frame_reader *fr);

#endif
