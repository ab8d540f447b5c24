/* storage/: the segmented log of one partition (DESIGN.md §3).
 *
 * On disk, like Kafka's log layout, in <log.dir>/<topic>-<partition>/:
 *   00000000000000000000.log        record batches v2 exactly as on the wire, baseOffset and
 *                                   partitionLeaderEpoch assigned; the bytes Fetch sends.
 *   00000000000000000000.index      sparse offset index, 8-byte entries
 *                                   {u32 BE relative last offset of a batch, u32 BE position};
 *                                   one entry after every index_interval_bytes of log.
 *   00000000000000000000.timeindex  12-byte entries {i64 BE max timestamp so far,
 *                                   u32 BE relative offset of that timestamp's batch}.
 *   00000000000000000000.txnindex   Kafka's aborted-transaction index, 34-byte entries (see
 *                                   "transactions" below); only where an abort marker is.
 *   leader-epoch-checkpoint         Kafka's text format: "0\n<n>\n<epoch> <start offset>\n"...
 *   partition.checkpoint            recovery point, log start offset, high watermark: two
 *                                   64-byte slots with a sequence number and CRC-32C, written
 *                                   alternately so a torn write leaves the previous one.
 * A segment is named by its base offset; the relative offsets in its indexes fit in 31 bits, so
 * a segment rolls before an offset would overflow them, as well as on segment_bytes and
 * segment_ms.
 *
 * Durability: appended bytes are written to the page cache at once; storage_log_flush() makes
 * them durable (fdatasync of the segments, then indexes, leader epochs and checkpoint when the
 * checkpoint is due). The flush policy (flush_messages, flush_ms) is applied on append and by
 * storage_log_tick(). Recovery on open trusts everything below the checkpointed recovery point
 * (after checking its indexes) and scans beyond it batch by batch (length, magic, CRC-32C,
 * offsets, leader epoch), truncating at the first bad or partial batch and rebuilding the indexes
 * it scanned. partitionLeaderEpoch lies outside the CRC, so the leader-epoch file is its check:
 * an append that starts a new epoch rewrites and syncs that file before writing the batch (once
 * per epoch), and a scanned batch must carry the epoch the file gives for its offset. Without
 * the file (missing or damaged) the epochs are rebuilt from the batches. The one write that is
 * not synced is a log's first (no file found at open, none written since: a new replica's
 * first epoch): a crash can only lose it or cut it, never leave an older whole version, so
 * recovery rebuilds from the batches; every later write is synced.
 *
 * Preallocation (cfg.preallocate_bytes): appending to a file changes its size and allocates
 * blocks, so each fdatasync after an append also commits a filesystem journal transaction; an
 * fdatasync of bytes written over blocks that are already allocated and written (and a size
 * that already covers them) does not (about half the latency on ext4). A flush of the active
 * segment therefore first writes zeros from the file's end to a step ahead of the log's end
 * (the step grows with the segment: at most preallocate_bytes, never past segment_bytes), and
 * that flush's fdatasync makes them durable with the data; the appends after it land on
 * written blocks. Only flushes that carry little (at most STORAGE_PREALLOC_FLUSH_MAX bytes of
 * appends since the flush before) write zeros: a large flush pays one journal commit for many
 * bytes, and zeros would double what a throughput-bound writer puts on the disk. The log's end is
 * kept in memory, not taken from the file size: a segment is cut to its end when it is sealed (a
 * roll) and when the log is closed, and recovery treats a batch header whose base offset and length
 * are all zero bytes at a batch boundary as the end of the segment, cutting the zeros after it. No
 * batch is ever all-zero there (a batch's length is at least 61), so the rule cannot hide one.
 * Zeros past the end that a crash left behind a torn write are cut with it, as before. Storage
 * reads stop at the log's end, never at the file's.
 *
 * Threads: a log is owned by one thread (the shard that owns the partition); nothing here locks.
 * Bounds: at most max_open_segments segments have open fds and loaded indexes (an LRU; the active
 * segment and segments pinned by a read result are never closed); a read walks at most one index
 * interval of batch headers per segment it touches. An open segment holds one fd (its .log): the
 * index files, the checkpoint and the directory are opened while they are written and synced
 * and closed after, so a log at rest holds one descriptor. storage_log_release_fds() closes
 * that one too (and any other) while the log is idle, keeping the log, its segments and their
 * indexes in memory: the next read, append or sync reopens the .log files it needs by path.
 *
 * Compaction (storage/compact.c, the section at the end of this file): a cleaner rewrites a sealed
 * segment <base>.log into <base>.log.cleaned (+ .index.cleaned, .timeindex.cleaned) with the
 * storage_segment writer, fsyncs them, renames each *.cleaned to *.swap, then calls
 * storage_log_swap_segment(), which renames the *.swap files over the originals and reloads the
 * segment. Readers that pinned the old segment keep reading the old inode through their fd, so
 * no reader ever sees a half-written file. The .log is renamed last: <base>.log.swap is the
 * commit point. On open, *.cleaned files are deleted; with a <base>.log.swap every <base>.*.swap
 * is completed by rename (indexes first), without one index .swap files are deleted; segments a
 * finished merged swap overlaps (its group's unlinks were cut short) are deleted.
 * Gaps: recovery and the index checks require the batches of a segment to be contiguous
 * (baseOffset = previous last offset + 1), because the base offset lies outside the CRC and
 * continuity is what catches a damaged one; a compacted segment has gaps, so the cleaner first
 * records its cleaned offset in cleaner-offset-checkpoint, and segments below it are checked for
 * increasing, not contiguous, offsets (and may end before the next segment begins). */
#ifndef LAMINAR_STORAGE_STORAGE_H
#define LAMINAR_STORAGE_STORAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "storage/storage_io.h"

#define STORAGE_READ_SLICES_MAX 4
#define STORAGE_NO_LIMIT        INT64_MAX
/* Preallocation: a flush carrying more appended bytes than this writes no zeros ahead. */
#define STORAGE_PREALLOC_FLUSH_MAX (64u << 10)

struct storage_log;

/* Where storage reports what recovery dropped or rebuilt; `level` 0 info, 1 warning. */
typedef void (*storage_report_fn)(void *ctx, int level, const char *msg);
/* Wall clock in ms since the epoch; injected so tests control segment.ms and retention.ms. */
typedef int64_t (*storage_clock_fn)(void *ctx);

struct storage_config {
    uint64_t segment_bytes; /* segment.bytes: roll when a batch would not fit (<= 2^31-1) */
    int64_t segment_ms;     /* segment.ms: roll a non-empty segment older than this; -1 off */
    uint32_t index_interval_bytes; /* index.interval.bytes (default 4096) */
    int64_t retention_bytes;       /* retention.bytes; -1 unlimited */
    int64_t retention_ms;          /* retention.ms; -1 unlimited */
    int64_t flush_messages;        /* flush.messages: flush when this many are unflushed; -1 off */
    int64_t flush_ms;              /* flush.ms: flush data older than this; -1 off */
    uint64_t checkpoint_interval_bytes; /* write the checkpoint on a flush after this many bytes */
    uint32_t max_open_segments;         /* fds/index LRU bound, >= 2 */
    /* topic config preallocate (default false): a flush of the active segment first writes zeros
     * ahead of its end, up to this many bytes (0: never; see "Preallocation" above), so that
     * the fdatasyncs of the appends that follow need not journal the file's growth */
    uint64_t preallocate_bytes;
    bool log_append_time;        /* message.timestamp.type=LogAppendTime: stamp on append */
    const struct storage_io *io; /* NULL: storage_io_posix() */
    storage_clock_fn clock;      /* NULL: CLOCK_REALTIME */
    bool external_sync;          /* the owner runs flushes (storage_log_sync_*): append and
                                  * tick never fdatasync; storage_log_flush_due() says when */
    void *clock_ctx;
    storage_report_fn report; /* NULL: stderr */
    void *report_ctx;
    /* Called (may be NULL) when a log whose descriptors storage_log_release_fds() closed opens
     * one again (a read, an append, a sync, an index or transaction-index write), from inside
     * that call: the owner counts the log against its descriptor budget again. Once per
     * release. The callee must not call into this log. */
    void (*fds_reopened)(void *ctx);
    void *fds_reopened_ctx;
};

/* Fills *cfg with Kafka's defaults (1 GiB segments, 7-day segment.ms and retention.ms, no size
 * retention, no flush policy, 4096-byte index interval) and a 64-segment LRU. */
void storage_config_default(struct storage_config *cfg);

/* Writes "<log_dir>/<topic>-<partition>" into out (cap bytes). Returns 0 or LM_E_TOO_LARGE, or
 * LM_E_INVALID when the topic is empty, "." / "..", or contains '/'. */
int storage_partition_dir(char *out, size_t cap, const char *log_dir, const char *topic,
                          int32_t partition);

/* Opens (creating the directory if missing; its parent must exist) and recovers the log in dir.
 * *out is heap-owned by the caller: free it with storage_log_close(). cfg is copied. */
int storage_log_open(const char *dir, const struct storage_config *cfg, struct storage_log **out);
/* Flushes, writes the checkpoint, closes every fd and frees the log. All read results must
 * have been released. Returns the first error of the final flush (the log is freed anyway). */
int storage_log_close(struct storage_log *log);
/* Closes the log's files without flushing or writing a checkpoint, as a crash would leave them
 * (the page cache keeps what was written): the next open recovers from the last checkpoint.
 * For bounding the open files of idle logs; cheap when the log was flushed (its checkpoint is
 * current). LM_E_STATE (log untouched) while reads pin segments, retired segments wait for
 * their readers or a compaction runs. */
int storage_log_close_unsynced(struct storage_log *log);
/* Closes every descriptor of an idle log (segment .log files of the LRU, .txnindex files, the
 * checkpoint) without syncing anything and without closing the log: for bounding the open
 * files of many logs that must stay open (replicated partitions, whose Raft state keeps
 * running). Every entry point that needs a descriptor reopens it by path (seg_use); unsynced
 * bytes stay the files' dirty pages, made durable by the next flush through the reopened fds.
 * LM_E_STATE (log untouched) while a sync runs (its fds are in the owner's hands), a read
 * result pins segments, retired segments wait for their readers or a compaction runs. */
int storage_log_release_fds(struct storage_log *log);
/* True from storage_log_release_fds() until a descriptor of the log is opened again. */
bool storage_log_fds_released(const struct storage_log *log);

struct storage_append_result {
    int64_t base_offset;    /* first offset of the first batch written */
    int64_t last_offset;    /* last offset of the last batch written */
    int64_t log_end_offset; /* next offset to be assigned */
    int64_t max_timestamp;  /* largest maxTimestamp among the batches */
    uint32_t batches;
    bool flushed; /* the flush policy made these batches durable before returning */
};

/* Appends the v2 batches in buf[0..len) as leader: checks each batch (header, length, CRC-32C,
 * magic), then assigns consecutive offsets from the log end offset, stamps
 * partitionLeaderEpoch = leader_epoch (the Raft term) and, under log_append_time, the append
 * time, rewriting the header in buf in place. leader_epoch must not be below the latest epoch;
 * a larger one is written to the leader-epoch file (synced, but for the log's first: see
 * "Durability") before the batches.
 * All or nothing: on error nothing is written. Returns 0 or LM_E_TRUNCATED, LM_E_MAGIC, LM_E_CRC,
 * LM_E_CORRUPT, LM_E_TOO_LARGE (batch over segment_bytes), LM_E_INVALID (epoch), LM_E_IO. */
int storage_log_append_leader(struct storage_log *log, uint8_t *buf, size_t len,
                              int32_t leader_epoch, struct storage_append_result *res);
/* Appends batches that already carry offsets and epochs (a follower, Raft log replication):
 * the first must start at the log end offset and each must continue the previous one; epochs
 * must not decrease; new ones reach the leader-epoch file first, as above. buf is not modified.
 * Returns as above, and LM_E_SEQUENCE on a gap. */
int storage_log_append_follower(struct storage_log *log, const uint8_t *buf, size_t len,
                                struct storage_append_result *res);

/* One contiguous range of a segment file: send it with sendfile()/splice() or pread() it. */
struct storage_slice {
    int fd;            /* borrowed; valid until storage_read_result_release() */
    uint64_t position; /* file offset of the first byte */
    uint64_t length;   /* bytes, whole batches */
};

struct storage_read_result {
    struct storage_slice slices[STORAGE_READ_SLICES_MAX];
    void *pins[STORAGE_READ_SLICES_MAX]; /* internal: the segments kept open for the slices */
    uint32_t slice_count;
    uint64_t bytes;           /* sum of slice lengths */
    int64_t first_offset;     /* base offset of the first batch returned; -1 if none */
    int64_t last_offset;      /* last offset of the last batch returned; -1 if none */
    int64_t log_start_offset; /* at the time of the read */
    int64_t log_end_offset;
    int64_t high_watermark;
};

/* Reads whole batches starting with the batch that contains `offset` (so a fetch offset in the
 * middle of a batch returns that batch, as Kafka does; in a compacted segment, where whole
 * batches may be gone, the first batch ending at or after it), up to max_bytes, at least one
 * whole batch (KIP-74), only batches whose last offset is below max_offset (the high watermark
 * for consumers, STORAGE_NO_LIMIT for replicas), from at most STORAGE_READ_SLICES_MAX segments.
 * offset == log end offset gives an empty result. The result pins the segments it names until
 * storage_read_result_release(). Returns 0 or LM_E_OUT_OF_RANGE (below the log start offset or
 * above the log end offset), LM_E_IO. */
int storage_log_read(struct storage_log *log, int64_t offset, uint64_t max_bytes,
                     int64_t max_offset, struct storage_read_result *res);
/* Unpins the segments of a read result (idempotent). */
void storage_read_result_release(struct storage_log *log, struct storage_read_result *res);
/* Copies the bytes of a read result into buf (cap >= res->bytes) with pread(). Returns 0 or
 * LM_E_TOO_LARGE, LM_E_IO. For tools and tests; the broker sends the slices directly. */
int storage_read_result_copy(const struct storage_read_result *res, uint8_t *buf, size_t cap);

int64_t storage_log_start_offset(const struct storage_log *log);
int64_t storage_log_end_offset(const struct storage_log *log);
/* The offset below which everything is durable (flushed); <= log end offset. */
int64_t storage_log_flushed_offset(const struct storage_log *log);
/* The log's directory entries (files created or removed) not yet known durable: true with
 * *changes the count of such changes so far. A new log's (storage_log_open: nothing synced)
 * are made durable by its first flush, which then holds a descriptor of the directory while
 * it runs; an owner that fsyncs the directory (or syncs its file system) anyway, after
 * reading *changes, tells storage_log_dir_synced, and that first flush holds no directory. */
bool storage_log_dir_dirty(const struct storage_log *log, uint64_t *changes);
/* The directory was made durable by a sync that began after storage_log_dir_dirty returned
 * changes: clears the dirty mark unless entries changed since. */
void storage_log_dir_synced(struct storage_log *log, uint64_t changes);
/* True when a flush (storage_log_sync_begin) would move the recovery checkpoint usefully: a
 * sealed segment lies beyond it, or more than four checkpoint intervals of bytes were appended
 * since it was written. The owner starts one in the background, so a crash under acks=1
 * traffic recovers at most the active segment's recent tail, not everything ever written. */
bool storage_log_recovery_flush_wanted(const struct storage_log *log);
int64_t storage_log_high_watermark(const struct storage_log *log);
/* Total bytes of the segment files. */
uint64_t storage_log_size_bytes(const struct storage_log *log);
uint32_t storage_log_segment_count(const struct storage_log *log);
/* Bumped by every truncation (storage_log_truncate_to) and reset: batches read before at an
 * offset may differ from those there now only after it changed (compaction aside, which never
 * touches the active segment). */
uint64_t storage_log_shape_gen(const struct storage_log *log);
/* The base offset of the active (last) segment. */
int64_t storage_log_active_base(const struct storage_log *log);
/* The epoch of the last entry of the leader-epoch cache, or -1. */
int32_t storage_log_latest_epoch(const struct storage_log *log);

/* Sets the high watermark (single node: after the flush policy; Raft: the commit index),
 * clamped to [log start, log end]. Persisted with the next checkpoint. */
void storage_log_set_high_watermark(struct storage_log *log, int64_t hw);
/* Moves the log start offset forward (DeleteRecords, Raft snapshot): offset must be <= the high
 * watermark; whole segments below it are deleted. Persists the checkpoint. Returns 0 or
 * LM_E_OUT_OF_RANGE, LM_E_IO. */
int storage_log_advance_start(struct storage_log *log, int64_t offset);
/* Removes every offset >= offset (Raft: a follower's divergent suffix; KIP-101/KIP-279). If
 * offset falls inside a batch the whole batch goes, so the new log end offset is that batch's
 * base; if that cuts below the log start offset, or offset is below it, the log is emptied
 * and restarts at the log start offset (resp. at offset). Persists the
 * checkpoint and leader-epoch file. Returns 0 or LM_E_IO. */
int storage_log_truncate_to(struct storage_log *log, int64_t offset);
/* Empties the log and restarts it at offset (Kafka truncateFullyAndStartAt; Raft snapshot). */
int storage_log_reset(struct storage_log *log, int64_t offset);

/* Makes everything appended durable: fdatasync of dirty segments, then (when the checkpoint is
 * due, or force_checkpoint) their indexes, the leader-epoch file and the checkpoint. */
int storage_log_flush(struct storage_log *log, bool force_checkpoint);
/* Applies time-based policies at now: flush.ms. Call periodically. Returns 0 or LM_E_IO. */
int storage_log_tick(struct storage_log *log);
/* Asynchronous flush, for an owner that runs the fsyncs elsewhere (the broker: its shard's
 * io_uring ring or sync worker, so no fdatasync blocks a shard, DESIGN.md §2). The log hands out
 * the fds of one step at a time; the owner makes every one durable (fdatasync, or fsync where
 * `full`) and calls storage_log_sync_step() with the first error. Steps: (1) data: the dirty
 * segments, oldest first, and the directory after a roll; after it flushed offset >=
 * end_offset; (2) when the checkpoint is due: the index files, after their pending entries are
 * written; (3) the checkpoint slot, after it is written. Between steps the log stays usable
 * (appends, reads, another sync must wait: at most one per log). Inside these calls only
 * pwrite()s to the page cache happen (index entries, checkpoint slot), plus, when the leader-
 * epoch cache changed since the file was last written, the rewrite of that small file (write +
 * fdatasync + rename; a new epoch rewrites it on append already). A failed step marks the log
 * failed. */
#define STORAGE_SYNC_FDS_MAX 16
struct storage_sync {
    int fds[STORAGE_SYNC_FDS_MAX];   /* to make durable in this step; valid until the next call */
    bool full[STORAGE_SYNC_FDS_MAX]; /* fsync (a directory) rather than fdatasync */
    uint32_t fd_count;               /* may be 0: call storage_log_sync_step at once */
    int64_t end_offset;              /* offsets below are durable after the data step */
    /* private */
    int stage_;
    uint64_t gen_;
    uint64_t dir_changes_;
    bool dir_;
    int dir_fd_; /* the directory, opened for this sync's data step */
    void *segs_[STORAGE_SYNC_FDS_MAX];
    int64_t seg_next_[STORAGE_SYNC_FDS_MAX];
    uint32_t seg_count_;
};
/* Starts an asynchronous flush of everything appended so far (or of the oldest
 * STORAGE_SYNC_FDS_MAX - 1 dirty segments): fills sy with the data step (segments pinned until
 * it completes). Returns 0, LM_E_STATE (failed log) or LM_E_IO (the directory, when it needs an
 * fsync, or a released segment file could not be opened). */
int storage_log_sync_begin(struct storage_log *log, struct storage_sync *sy);
/* Completes the current step (rc: 0 when every fd of sy was synced, else the first error) and
 * fills sy with the next one; *done when none is left. Returns 0 or the error (log failed). */
int storage_log_sync_step(struct storage_log *log, struct storage_sync *sy, int rc, bool *done);
/* Whether flush.messages / flush.ms ask for a flush now (for external_sync owners). */
bool storage_log_flush_due(const struct storage_log *log);
/* Deletes whole sealed segments beyond retention.bytes / retention.ms (by their largest
 * timestamp) or wholly below the log start offset, never past the high watermark; moves the log
 * start offset to the first kept segment. *deleted (may be NULL) gets the number deleted. */
int storage_log_enforce_retention(struct storage_log *log, uint32_t *deleted);

/* ListOffsets by timestamp: the first offset whose record timestamp is >= ts (record-exact; a
 * compressed batch is decompressed to find it). *offset = -1 and
 * *found_ts = -1 when no record qualifies. Returns 0 or LM_E_IO. */
int storage_log_offset_for_timestamp(struct storage_log *log, int64_t ts, int64_t *offset,
                                     int64_t *found_ts);
/* ListOffsets MAX_TIMESTAMP (KIP-734): the offset of the first record carrying the largest
 * timestamp, and that timestamp; -1/-1 if the log is empty. */
int storage_log_max_timestamp(struct storage_log *log, int64_t *offset, int64_t *ts);

/* OffsetForLeaderEpoch (KIP-101, KIP-279), as Kafka's LeaderEpochFileCache.endOffsetFor: for
 * the latest epoch, (it, log end offset); otherwise the largest known epoch <= `epoch` (or
 * `epoch` itself when below all) and the start offset of the first larger epoch. Both -1 when
 * epoch is -1, above the latest, or the log has no epochs. */
void storage_log_epoch_end_offset(const struct storage_log *log, int32_t epoch, int32_t *out_epoch,
                                  int64_t *end_offset);

/* Compaction hook (see the top of this file): replaces the sealed segment with base offset
 * `base_offset` by its *.swap files (renamed over it, reloaded, marked compacted). Returns 0 or
 * LM_E_NOT_FOUND, LM_E_STATE (the active segment, or a compaction pass running), LM_E_IO. */
int storage_log_swap_segment(struct storage_log *log, int64_t base_offset);

/* ---- transactions (storage/txn.c; Kafka's ongoing transactions and .txnindex) ----
 * <base>.txnindex beside each segment holds Kafka's AbortedTxn entries for the abort markers in
 * that segment (34 bytes: i16 version 0, i64 producer id, i64 first offset, i64 last offset,
 * i64 last stable offset); deleted with the segment. */
struct storage_aborted_txn {
    int64_t producer_id;
    int64_t first_offset;       /* the transaction's first offset */
    int64_t last_offset;        /* its abort marker's offset */
    int64_t last_stable_offset; /* when the marker was written */
};
/* The first offset of the earliest open transaction in the log, or -1 (Kafka's first unstable
 * offset; the last stable offset is min(it, high watermark)). */
int64_t storage_log_first_unstable_offset(const struct storage_log *log);
/* The aborted transactions overlapping [from, upper) (Kafka collectAbortedTransactions), into
 * out[0..cap); *n gets the count. LM_E_FULL when more than cap. */
int storage_log_aborted_txns(struct storage_log *log, int64_t from, int64_t upper,
                             struct storage_aborted_txn *out, uint32_t cap, uint32_t *n);

/* ---- compaction (storage/compact.c; cleanup.policy=compact, Kafka's LogCleaner) ----
 * A pass maps the dirty part of the cleanable prefix (key -> latest offset in a bounded table),
 * then rewrites the sealed segments below the mapped end in groups up to segment_bytes, keeping
 * the latest record per key, tombstones until their delete horizon (KIP-534), control batches,
 * base/last offsets, producer fields and codecs, and swaps each group in with the
 * .cleaned -> .swap -> rename protocol described at the top of this file. Work is done in
 * bounded steps; the pass lives in the log between steps and is abandoned when its segments
 * change (retention, truncation) or the log closes. */
enum storage_compact_crash {
    STORAGE_COMPACT_CRASH_NONE = 0,
    STORAGE_COMPACT_CRASH_CLEANED, /* tests: stop after the .cleaned files are durable */
    STORAGE_COMPACT_CRASH_SWAP,    /* tests: stop after the .cleaned -> .swap renames */
    STORAGE_COMPACT_CRASH_RENAMED, /* tests: stop after .swap -> final, before unlinking */
};

struct storage_compact_config {
    uint64_t dedupe_buffer_bytes;     /* log.cleaner.dedupe.buffer.size: the key map's memory */
    double min_cleanable_dirty_ratio; /* min.cleanable.dirty.ratio */
    int64_t min_compaction_lag_ms;    /* min.compaction.lag.ms: younger segments wait */
    int64_t max_compaction_lag_ms;    /* max.compaction.lag.ms (KIP-354); -1 none */
    int64_t delete_retention_ms;      /* delete.retention.ms: tombstone lifetime after cleaning */
    enum storage_compact_crash crash_at; /* tests only: leave the files as a crash there would */
};

struct storage_compact_stats {
    int64_t map_end;     /* offsets below were compacted (the new cleaned offset) */
    uint64_t bytes_read; /* map + clean reads */
    uint64_t bytes_written;
    uint64_t records_read; /* in the clean phase */
    uint64_t records_kept;
    uint64_t tombstones_removed;
    uint64_t batches_rewritten;
    uint32_t segments_before; /* segments in the cleanable prefix when the pass began */
    uint32_t segments_after;  /* segments the pass wrote */
};

/* Fills *cc with Kafka's defaults (ratio 0.5, no lags, 1-day delete retention) and a 4 MiB
 * dedupe buffer (~130k keys per pass). */
void storage_compact_config_default(struct storage_compact_config *cc);
/* Whether a pass should run: the cleanable prefix (sealed segments below
 * min(clean_up_to, high watermark, flushed offset) older than min.compaction.lag.ms: only
 * durable records supersede older ones) has a dirty ratio (bytes
 * of segments past the cleaned offset / all its bytes) >= min.cleanable.dirty.ratio, or its
 * oldest dirty segment passed max.compaction.lag.ms. True while a pass is running. */
bool storage_log_compact_due(struct storage_log *log, const struct storage_compact_config *cc,
                             int64_t clean_up_to);
/* When no pass is due only because sealed segments are not flushed yet (acks=1 without a flush
 * policy): the offset a flush must reach for one to be due; else -1. The owner then runs an
 * (asynchronous) flush, so compaction never waits for an unrelated one. */
int64_t storage_log_compact_flush_wanted(struct storage_log *log,
                                         const struct storage_compact_config *cc,
                                         int64_t clean_up_to);
/* Starts a pass when none runs (there is something to clean), then does at most about
 * budget_bytes of reading (whole batches; at least one). *busy: the pass continues at the next
 * call; when it ends, *stats (may be NULL) gets its figures. cc is copied when a pass starts.
 * Returns 0 (also when a pass was abandoned because its segments changed) or LM_E_FULL (one
 * batch has more keys than the dedupe buffer holds), LM_E_IO, LM_E_NOMEM, a batch parse error,
 * or LM_E_STATE when a test crash point fired (close the log, then reopen it). */
int storage_log_compact_step(struct storage_log *log, const struct storage_compact_config *cc,
                             int64_t clean_up_to, uint64_t budget_bytes, bool *busy,
                             struct storage_compact_stats *stats);
/* A whole pass at once (steps until done): for tools, tests and benchmarks. */
int storage_log_compact(struct storage_log *log, const struct storage_compact_config *cc,
                        int64_t clean_up_to, struct storage_compact_stats *stats);
/* Abandons a running pass and removes its temporary files (no-op without one). */
void storage_log_compact_abort(struct storage_log *log);
/* Whether a pass is running. */
bool storage_log_compacting(const struct storage_log *log);
/* The offset below which the log has been compacted (cleaner-offset-checkpoint); 0 if never. */
int64_t storage_log_cleaned_offset(const struct storage_log *log);

#endif
