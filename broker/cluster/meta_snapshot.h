/* Snapshots of the cluster metadata image, so the controller's log can be trimmed: the image at
 * an offset, written as the records that rebuild it (meta_state.h encoding): every broker's
 * registration (and fence), every topic's creation with its configs and full assignment, the
 * partitions reassigned since (replicas, adding, removing) and the partitions' leaders.
 *
 * Layout: "LMSNAP01", i64 last offset covered, u32 record count, then per record u32 length,
 * u32 CRC-32C, the record. A file is written whole (temporary name, fdatasync, rename, directory
 * fsync) as <dir>/snapshot-<last, 20 digits>; older ones are removed after. */
#ifndef LAMINAR_BROKER_CLUSTER_META_SNAPSHOT_H
#define LAMINAR_BROKER_CLUSTER_META_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "broker/meta/meta_store.h"

#define META_SNAPSHOT_BYTES_MAX ((size_t)256 << 20)

/* Encodes st as covering offsets <= last into *out (malloc'd, *len bytes). */
int meta_snapshot_encode(const struct lm_meta_state *st, int64_t last, uint8_t **out, size_t *len);
/* Checks buf whole (magic, lengths, CRCs, count), then resets store's image and applies the
 * records. Returns 0 with *last, LM_E_CORRUPT (nothing changed), or an apply error. */
int meta_snapshot_load(struct lm_meta_store *store, const uint8_t *buf, size_t len, int64_t *last);
/* The last offset a snapshot covers, read from its head without loading it. Returns 0 or
 * LM_E_CORRUPT. */
int meta_snapshot_last(const uint8_t *buf, size_t len, int64_t *last);
/* Writes buf as dir's newest snapshot and removes the older ones. 0 or LM_E_IO. */
int meta_snapshot_write(const char *dir, int64_t last, const uint8_t *buf, size_t len);
/* The newest snapshot file of dir: 0 with *buf (malloc'd) and *len, LM_E_NOT_FOUND, LM_E_IO. */
int meta_snapshot_read_latest(const char *dir, uint8_t **buf, size_t *len);

#endif
