/* Wire codec for Raft messages between nodes (struct raft_msg of raft.h).
 *
 * Format version 2, all integers big-endian and fixed-width (common/lm_endian.h):
 *   header (88 bytes)   version u8 (= 2), type u8, reject u8 (0/1), flags u8 (1: force,
 *                       2: quiesce), group u64, from u32, to u32, term u64, index i64,
 *                       log_term u64, commit i64, hint_index i64, hint_term u64, ent_last
 *                       i64, ent_last_term u64, n_entries u32
 *   n_entries times     first_index i64, last_index i64, term u64, type u8, len u32 (the table)
 *   then                every entry's len bytes, in order, back to back
 *   LOG_START only      index i64, term u64, conf (raft_conf_encode: n_voters u32, n_learners
 *                       u32, voters, learners), payload_len u32, payload_len bytes
 * An APP travels resolved (raft.h, "APPENDS ARE DESCRIPTORS"): its entries carry their bytes.
 * Only an APP carries entries; the log start is sent for LOG_START only (other messages decode
 * with a zeroed start). A decoder takes no length prefix: framing is the transport's, and
 * *used says where the next message starts.
 *
 * Version 2 puts the entries' bytes after the table (version 1 put each entry's bytes after its
 * fixed part) so that a partition leader sends a run of batches as one slice of its log file,
 * without reading it (raft_wire_encode_head). Nodes of both versions do not understand each
 * other: a cluster is upgraded from 1 to 2 all at once.
 *
 * The encoder only writes what the decoder accepts and the decoder accepts exactly one
 * encoding per message, so decode then encode gives back the same bytes. */
#ifndef LAMINAR_CONSENSUS_RAFT_WIRE_H
#define LAMINAR_CONSENSUS_RAFT_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "consensus/raft.h"

#define RAFT_WIRE_VERSION     2
#define RAFT_WIRE_ENTRIES_MAX 4096                       /* entries in one message */
#define RAFT_WIRE_BYTES_MAX   ((size_t)64 * 1024 * 1024) /* encoded size of one message */
#define RAFT_WIRE_HEADER_SIZE 88
#define RAFT_WIRE_ENTRY_SIZE  29 /* an entry's fixed part, before its bytes */

/* raft_wire_size is the encoded size of m, for a message raft_wire_encode accepts (an APP must
 * be resolved: entries != NULL when n_entries > 0). It reads only the fields that are encoded. */
size_t raft_wire_size(const struct raft_msg *m);
/* raft_wire_encode writes m (borrowed) into buf (cap bytes). Returns the bytes written;
 * LM_E_TOO_LARGE when they exceed cap or RAFT_WIRE_BYTES_MAX or n_entries exceeds
 * RAFT_WIRE_ENTRIES_MAX; LM_E_INVALID for a message the decoder would refuse: an unknown type,
 * an unresolved APP, entries on a message other than APP, entries that are not contiguous from
 * index + 1 or whose last one is not (ent_last, ent_last_term), an entry type beyond
 * RAFT_ENTRY_CONF, a LOG_START conf with more than RAFT_NODES_MAX voters or learners, or bytes
 * announced with a NULL pointer. */
int raft_wire_encode(const struct raft_msg *m, uint8_t *buf, size_t cap);
/* The header and entry table of an APP with entries (raft_wire_head_size(m) bytes): its
 * encoding is these bytes followed by every entry's len bytes in order, which the caller sends
 * from wherever they are (a partition log's file). Entries need no data pointer here. Returns
 * the bytes written, or as raft_wire_encode (LM_E_INVALID also for another type or no
 * entries; LM_E_TOO_LARGE when the whole message would exceed RAFT_WIRE_BYTES_MAX). */
size_t raft_wire_head_size(const struct raft_msg *m);
int raft_wire_encode_head(const struct raft_msg *m, uint8_t *buf, size_t cap);
/* raft_wire_decode decodes one message from buf[0..len): fills *out (owning its entries' bytes
 * and the log start payload: release with raft_msg_deinit) and *used (bytes consumed). Returns
 * 0; LM_E_NOMEM when an allocation fails; LM_E_CORRUPT for anything malformed: truncated input,
 * another version, an unknown message or entry type, reject other than 0/1, flags other than
 * 0-3, n_entries, len or payload_len beyond what is left in buf or beyond RAFT_WIRE_ENTRIES_MAX /
 * RAFT_WIRE_BYTES_MAX, entries on a message other than APP, entries not contiguous
 * (entries[0].first_index != index + 1, entries[i+1].first_index != entries[i].last_index + 1)
 * or first_index > last_index, n_voters/n_learners > RAFT_NODES_MAX, an APP whose last entry
 * does not match ent_last/ent_last_term. On error *out holds nothing to free (all zero) and
 * *used is 0. Never reads out of bounds; allocates at most len bytes of entry data and payload
 * plus the entries array (n_entries structs, checked against the bytes left first). */
int raft_wire_decode(const uint8_t *buf, size_t len, struct raft_msg *out, size_t *used);

#endif
