/* raft_log_ops over a storage/ partition log: the Raft log IS the partition log (DESIGN.md §4).
 *
 * An entry is one record batch: [baseOffset, baseOffset + lastOffsetDelta], term =
 * partitionLeaderEpoch from the batch header. Nothing is written twice and nothing is mirrored
 * in memory: an entry lookup is the storage offset-index lookup plus a 61-byte header read (and
 * the whole batch for control batches, whose first record key says LeaderChange = NOOP or
 * Voters = CONF, a CONF entry's data being the record's value). Batch
 * bytes are read only in "data" mode, which the owner turns on around raft_msg_resolve (the only
 * caller that needs them: an append going to a follower); elsewhere raft needs boundaries and
 * terms only (commit advancement, prev terms, applying, which for a partition applies nothing),
 * so entry_at then hands out data = NULL, len = 0 instead of reading every batch again.
 *
 * Those header lookups hit the same few batches again and again (the last entry for every
 * append and vote, the commit candidates), so the headers of the latest batches read (not
 * configuration entries, whose data raft needs) are kept in a small cache: valid while the
 * storage log has not been truncated or reset since (storage_log_shape_gen) and only for
 * batches of the active segment, which compaction never rewrites. A hit reads no file, so a
 * log whose descriptors the open-log budget released is not reopened for it.
 *
 * Data read in data mode is copied into buffers the adapter owns, bounded by data_bytes_max in
 * total, and valid until raft_storage_log_release() (raft_log_resolve keeps several entries at
 * once, so one reusable buffer would not do). Over the bound, entry_at returns LM_E_NOMEM,
 * which raft treats as a failed read and retries later (raft.h "LOG READS MAY FAIL").
 *
 * Log start: the offsets below storage_log_start_offset are gone; raft's start.index is that
 * minus 1, and start.term is the epoch of the batch ending there, which the owner supplies
 * (0 for a log starting at offset 0), together with the voter set in force there. */
#ifndef LAMINAR_BROKER_PARTITION_RAFT_STORAGE_LOG_H
#define LAMINAR_BROKER_PARTITION_RAFT_STORAGE_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "consensus/raft.h"
#include "storage/storage.h"

#define RAFT_STORAGE_LOG_BUFS_MAX 256 /* entries resolved at once (>= raft max_msg_entries) */

/* KIP-595's LeaderChange control record type: our NOOP entries are these batches. */
#define RAFT_STORAGE_CONTROL_LEADER_CHANGE 2
/* KIP-853's VotersRecord control record type: our CONF entries are these batches, the record's
 * value the configuration as raft_conf_encode writes it (raft's entry data). */
#define RAFT_STORAGE_CONTROL_VOTERS 6
#define RAFT_STORAGE_CONF_BYTES_MAX (8 + 8 * RAFT_NODES_MAX)
#define RAFT_STORAGE_HDR_CACHE      4 /* batch headers kept (see the top) */

struct raft_storage_hdr {
    int64_t first, last; /* first > last: empty slot */
    uint64_t term;
    uint32_t bytes;
    uint8_t type;
};

/* A test hook: return non-zero to make the read of the batch holding `index` fail with it. */
typedef int (*raft_storage_fault_fn)(void *ctx, int64_t index);

struct raft_storage_log {
    struct storage_log *log; /* borrowed */
    struct raft_conf conf;   /* voter set at the log start */
    uint64_t start_term;     /* epoch of the batch ending at raft's log start (below) */
    /* Raft's log start is a batch boundary, Kafka's log start offset (DeleteRecords) need not
     * be: when the batch holding the log start offset start_base_for begins below it, at
     * start_base, raft's log start is start_base - 1 and entries from start_base are read
     * (raft_storage_log_start_refresh; -1: not looked up). */
    int64_t start_base, start_base_for;
    bool data_mode; /* entry_at also reads the batch bytes */
    size_t data_bytes_max;
    size_t data_bytes;
    uint32_t n_bufs;
    uint8_t **bufs; /* RAFT_STORAGE_LOG_BUFS_MAX slots, allocated at the first data-mode read
                     * (a leader with followers): a lone voter never pays for them */
    /* >= 0: offsets from here on are not shown to raft yet. The leader writes a proposal to
     * storage first (validation and I/O errors leave raft untouched) and only then proposes
     * it; until then raft's view must end where it ended. */
    int64_t hide_from;
    raft_storage_fault_fn fault;
    void *fault_ctx;
    uint8_t conf_buf[RAFT_STORAGE_CONF_BYTES_MAX]; /* a CONF entry's data outside data mode */
    struct raft_storage_hdr hdrs[RAFT_STORAGE_HDR_CACHE];
    uint32_t hdr_next;      /* the slot the next header goes to */
    uint64_t hdr_shape_gen; /* storage_log_shape_gen when the cache was filled */
    uint64_t hdr_hits;      /* lookups the cache answered */
    uint64_t reads;         /* header reads (statistics for tests and metrics) */
    uint64_t data_reads;    /* whole-batch reads */
};

/* Binds sl to log (borrowed; it must outlive sl). conf is copied. */
void raft_storage_log_init(struct raft_storage_log *sl, struct storage_log *log,
                           const struct raft_conf *conf, uint64_t start_term,
                           size_t data_bytes_max);
/* Frees the data buffers. */
void raft_storage_log_deinit(struct raft_storage_log *sl);
/* Looks up the first offset of the batch holding the log's start offset (after the log start
 * moved or the log opened) and returns it: raft's log start is the offset before it. Returns
 * the log start offset itself when that begins a batch or cannot be read. */
int64_t raft_storage_log_start_refresh(struct raft_storage_log *sl);
/* The base offset of the batch holding offset (offset itself at or past the log end, below the
 * log start, or when the batch cannot be read). */
int64_t raft_storage_log_batch_base(const struct raft_storage_log *sl, int64_t offset);
/* Fills ops to read through sl. */
void raft_storage_log_ops(struct raft_storage_log *sl, struct raft_log_ops *ops);
/* Releases the data buffers handed out since the last release (their pointers die). */
void raft_storage_log_release(struct raft_storage_log *sl);
/* Reads the header of the batch holding index into *out (data NULL unless data mode). Returns 0,
 * LM_E_OUT_OF_RANGE (outside the log), LM_E_CORRUPT (no batch holds index: a compaction gap),
 * or the read error. */
int raft_storage_log_entry(struct raft_storage_log *sl, int64_t index, struct raft_entry *out);

#endif
