/* Raft messages on the wire between nodes: one message per encoding, big-endian fixed-width
 * fields behind a format version byte. An APP travels resolved (its entries' bytes included);
 * a LOG_START with its configuration and payload. Decoding checks every length against the
 * bytes present and the limits below, so any input is either refused (LM_E_CORRUPT) or
 * yields a message raft_step can take; nothing is read out of bounds. */
#ifndef LAMINAR_CONSENSUS_RAFT_WIRE_H
#define LAMINAR_CONSENSUS_RAFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/raft.h"

#define RAFT_WIRE_VERSION     1
#define RAFT_WIRE_ENTRIES_MAX 4096
#define RAFT_WIRE_BYTES_MAX   (64u << 20)

/* Encoded size of m (an APP with n_entries > 0 must be resolved). */
size_t raft_wire_size(const struct raft_msg *m);
/* Writes m into buf (cap bytes). Returns the bytes written, LM_E_TOO_LARGE (cap, or beyond
 * the limits) or LM_E_INVALID (an unresolved APP, an unknown type). */
int raft_wire_encode(const struct raft_msg *m, uint8_t *buf, size_t cap);
/* Decodes one message from buf[0..len): *out owns its entries' bytes and the log start's
 * payload (release with raft_msg_deinit), *used = bytes consumed. Returns 0, LM_E_CORRUPT
 * for anything malformed (truncated, unknown type or version, sizes beyond the bytes left or
 * the limits, entries not contiguous, an APP whose entries disagree with ent_last), or
 * LM_E_NOMEM; on error nothing is held. */
int raft_wire_decode(const uint8_t *buf, size_t len, struct raft_msg *out, size_t *used);

#endif
