/* Frame reader: splits a TCP byte stream into Kafka request frames (i32 big-endian length
 * prefix, then that many bytes). The length is checked against the limit
 * (socket.request.max.bytes) BEFORE anything is allocated (DESIGN.md §7); a negative or
 * too-large prefix is an error and the caller closes the connection, as Kafka does.
 * The body buffer grows as bytes arrive (never beyond the announced size), so memory is held
 * for bytes actually received: a client that announces 100 MiB and trickles holds what it sent,
 * not what it announced. */
#ifndef LAMINAR_BROKER_FRAME_H
#define LAMINAR_BROKER_FRAME_H

#include <stddef.h>
#include <stdint.h>

/* Grows the body buffer of a frame of size_bytes from old_cap to new_cap bytes (old is NULL and
 * old_cap 0 for the first piece; old_cap < new_cap <= size_bytes). Returns 0 and sets *out (the
 * first old_cap bytes kept, old no longer valid), or LM_E_AGAIN when the memory budget refuses
 * (the reader keeps its state and old; the caller feeds again later). The memory belongs to
 * whoever receives the finished frame. */
typedef int (*broker_frame_grow_fn)(void *ctx, uint8_t *old, uint32_t old_cap, uint32_t new_cap,
                                    uint32_t size_bytes, uint8_t **out);

enum { BROKER_FRAME_GROW_MIN = 65536 }; /* smallest piece of a frame whose bytes arrive slowly */

struct broker_frame_reader {
    uint8_t hdr[4];
    uint32_t hdr_have;
    uint8_t *buf;  /* body being filled, NULL until its first bytes arrive */
    uint32_t need; /* announced size; 0 while reading the prefix */
    uint32_t have;
    uint32_t cap; /* bytes of buf */
    int32_t size_bytes_max;
    broker_frame_grow_fn grow;
    void *grow_ctx;
};

/* A finished frame: body of size_bytes, owned by the receiver (allocated by grow). */
struct broker_frame {
    uint8_t *body;
    uint32_t size_bytes;
};

/* Initialises a reader with the frame limit and the body allocator. */
void broker_frame_reader_init(struct broker_frame_reader *fr, int32_t size_bytes_max,
                              broker_frame_grow_fn grow, void *grow_ctx);
/* Frees a partially filled body, if any, with free_fn (may be NULL when nothing was taken). */
void broker_frame_reader_deinit(struct broker_frame_reader *fr, void (*free_fn)(void *, uint8_t *),
                                void *ctx);
/* Feeds up to len bytes. Returns 1 with *out set when a frame completed (more bytes may remain:
 * *consumed says how many were used), 0 when all bytes were consumed and no frame completed,
 * LM_E_AGAIN when the allocator refused (feed the rest again later, *consumed bytes were used),
 * LM_E_TOO_LARGE for a prefix above the limit and LM_E_INVALID for a prefix <= 0. */
int broker_frame_feed(struct broker_frame_reader *fr, const uint8_t *data, size_t len,
                      size_t *consumed, struct broker_frame *out);
/* True when the reader is between frames (no partial prefix or body held). */
int broker_frame_reader_idle(const struct broker_frame_reader *fr);
/* Bytes of the partial body held (its buffer's size), 0 between frames. */
uint32_t broker_frame_reader_held(const struct broker_frame_reader *fr);
/* True when len bytes of data, fed after what the reader holds, would finish a frame (or be
 * rejected by it): the frame in progress, or between frames a whole prefix and body. */
int broker_frame_reader_completes(const struct broker_frame_reader *fr, const uint8_t *data,
                                  size_t len);

#endif
