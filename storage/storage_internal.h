/* Private to storage/: the segment and log structures shared by segment.c, checkpoint.c and
 * log.c. Nothing outside storage/ includes this. */
#ifndef LAMINAR_STORAGE_STORAGE_INTERNAL_H
#define LAMINAR_STORAGE_STORAGE_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "protocol/record_batch.h"
#include "common/lm_endian.h"
#include "storage/storage.h"

#define SEG_NAME_DIGITS       20
#define SEG_INDEX_ENTRY_BYTES 8
#define SEG_TIME_ENTRY_BYTES  12
/* Relative offsets in .index/.timeindex are stored as u32 but Kafka keeps them <= Int.MaxValue
 * (LogSegment.canConvertToRelativeOffset); a segment rolls before a batch would exceed it. */
#define SEG_REL_OFFSET_MAX INT32_MAX
/* Index entries written to the file once this many are pending in memory. */
#define SEG_INDEX_PENDING_MAX         512
#define STORAGE_SCAN_BUF_BYTES        (64 * 1024)
#define STORAGE_CHECKPOINT_SLOT_BYTES 64

struct seg_index_entry {
    uint32_t rel_offset; /* last offset of the batch at position, minus the segment base */
    uint32_t position;
};

struct seg_time_entry {
    int64_t timestamp;   /* largest timestamp in the segment up to rel_offset */
    uint32_t rel_offset; /* last offset of the batch that carries it, minus the segment base */
};

/* One segment. Metadata is always in memory; files and indexes only while "open" (LRU). */
struct segment {
    int64_t base_offset;
    int64_t next_offset; /* last offset + 1; == base_offset when empty */
    uint64_t size_bytes; /* the end of its batches: where the next append goes */
    /* The .log file's size as far as this process made it: size_bytes, or more while zeros
     * written ahead (preallocation, storage.h) follow the batches of the active segment. */
    uint64_t file_bytes;
    int64_t max_timestamp;        /* -1 when no batch */
    int64_t max_timestamp_offset; /* last offset of the batch carrying max_timestamp */
    int64_t created_ms;
    uint64_t bytes_since_index;

    /* loaded: open in the LRU sense (indexes in memory, counted in open_count). log_fd is
     * open while the segment is loaded, except after storage_log_release_fds closed it: then
     * seg_fd() reopens it by path at the next use. index_fd and time_fd are open only while
     * index bytes are written or fdatasynced (seg_index_open, seg_index_release; index_dirty
     * says a sync must reopen them): a loaded segment holds at most one descriptor at rest. */
    bool loaded;
    int log_fd, index_fd, time_fd;
    struct seg_index_entry *index;
    uint32_t index_len, index_cap, index_written; /* [0, written) are in the .index file */
    struct seg_time_entry *times;
    uint32_t times_len, times_cap, times_written;

    uint32_t pins;      /* read results naming this segment */
    uint64_t lru_tick;  /* last use, for closing the least recently used */
    bool data_dirty;    /* log bytes written since the last fdatasync */
    bool index_dirty;   /* index bytes written since the last fdatasync */
    bool sealed;        /* no longer the active segment */
    bool zombie;        /* removed from the log; freed when pins drops to 0 */
    bool index_missing; /* an index file did not exist when the segment was opened */
    bool index_torn;    /* an index file was not whole entries when the segment was opened */
    bool index_pinned;  /* index_fd and time_fd are in a running sync step (pins counts it) */
    bool compacted;     /* below the cleaned offset: offsets increase but may have gaps */
    struct segment *next_zombie;

    /* txn.c: the aborted transactions whose markers lie in this segment (its .txnindex), in
     * marker order; kept in memory while the segment is in the log */
    struct storage_aborted_txn *aborted;
    uint32_t aborted_len, aborted_cap;
    int txn_fd;     /* the .txnindex file while open for writing, else -1 */
    bool txn_dirty; /* .txnindex bytes written since its last fdatasync */
};

/* txn.c: a transaction of the log: open (end_offset -1) or closed by the marker at end_offset
 * (kept until the recovery point passes the marker, for the checkpoint's scan start). */
struct txn_open {
    int64_t producer_id;
    int64_t first_offset;
    int64_t end_offset;
};

struct epoch_entry {
    int32_t epoch;
    int64_t start_offset;
};

struct storage_log {
    char dir[PATH_MAX]; /* its directory is opened only to fsync it (storage_dir_sync) */
    struct storage_config cfg;
    const struct storage_io *io;

    struct segment **segs; /* sorted by base offset; the last is the active segment */
    uint32_t seg_count, seg_cap;
    struct segment *zombies;
    uint32_t open_count;
    uint64_t lru_clock;

    int64_t log_start_offset;
    int64_t high_watermark;
    int64_t recovery_point; /* as in the last checkpoint written */
    int64_t flushed_offset; /* durable end of the log */
    int64_t unflushed_messages;
    /* Preallocation's view of the last flush with appends: the active segment (by base offset)
     * and where its batches ended then, so the next one knows how many bytes it carries. */
    int64_t prealloc_base;
    uint64_t prealloc_mark;
    int64_t first_unflushed_ms; /* -1 when nothing unflushed */
    uint64_t bytes_since_checkpoint;
    bool dir_dirty;       /* directory entries created or removed since the last directory fsync */
    bool failed;          /* an I/O error left the log in an unknown state: refuse further writes */
    uint64_t dir_changes; /* count of dir_dirty settings (an async sync clears only its own) */
    uint64_t sync_gen;    /* bumped by truncation/reset: an async sync begun before is stale */
    uint64_t shape_gen;   /* bumped by every truncation and reset (storage_log_shape_gen) */
    bool sync_busy;       /* an asynchronous sync (storage_log_sync_begin) is in progress */
    /* storage_log_release_fds closed every descriptor; the first reopen clears it and calls
     * cfg.fds_reopened */
    bool fds_released;
    bool closing; /* free_log runs: no fds_reopened call to the owner */

    int checkpoint_fd; /* open while a checkpoint is written and not yet synced, else -1 */
    uint64_t checkpoint_seq;

    int64_t cleaned_offset; /* compact.c: offsets below were compacted by a finished pass */
    int64_t gaps_offset;    /* compact.c: segments based below may have offset gaps */
    struct storage_compactor *compactor; /* compact.c: the running pass, or NULL */

    struct epoch_entry *epochs;
    uint32_t epoch_count, epoch_cap;
    bool epochs_dirty;
    /* The leader-epoch file was found at open or written since: every write of it is synced.
     * The first write of a log that never had one is not (see epochs_write). */
    bool epochs_file;
    /* While open recovers: the leader-epoch file was loaded and names the epoch of every batch
     * (append writes it before the first batch of a new epoch), so a scanned batch must carry
     * the epoch it gives for its offset instead of teaching the cache a new one. */
    bool epochs_check;

    struct txn_open *txns; /* txn.c */
    uint32_t txn_count, txn_cap;
    int64_t txn_ckpt_rp;   /* the recovery point of the last checkpoint written or loaded */
    int64_t txn_ckpt_scan; /* and its transaction scan start */

    uint8_t *scan_buf; /* STORAGE_SCAN_BUF_BYTES, header walks */
    uint64_t scan_buf_pos;
    size_t scan_buf_len;
    int scan_buf_fd;
};

/* log.c */
void storage_report(struct storage_log *log, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int64_t storage_now_ms(struct storage_log *log);
/* Observes a batch's epoch at base_offset: a larger epoch starts a new leader-epoch entry. */
int storage_epoch_observe(struct storage_log *log, int32_t epoch, int64_t base_offset);
/* Whether a batch at base_offset may carry epoch according to the leader-epoch cache: the epoch
 * of the last entry starting at or before it; below the first entry (the log start was moved
 * into the middle of its batch) at most the first entry's epoch. */
bool storage_epoch_matches(const struct storage_log *log, int32_t epoch, int64_t base_offset);

/* Reports (warning) that path could not be opened, naming errno (EMFILE, ENOENT, ...). */
void storage_report_open_failed(struct storage_log *log, const char *path);
/* fsync of the log's directory (opened and closed around it). Returns 0 or LM_E_IO. */
int storage_dir_sync(struct storage_log *log);
/* Closes the descriptors a log holds only while writing (index files, checkpoint) once no
 * sync needs them: a log at rest holds its active segment's .log and nothing else. */
void storage_release_fds(struct storage_log *log);

/* Index of the segment holding offset (0 when below the first). */
uint32_t find_segment(const struct storage_log *log, int64_t offset);
/* Opens seg's files if closed (the LRU) or released, and marks it used. */
int seg_use(struct storage_log *log, struct segment *seg);
/* Notes that a descriptor of a released log was opened again (storage_log_release_fds). */
void storage_fds_reopened(struct storage_log *log);

/* txn.c */
/* Applies a batch just appended to seg: opens or closes its producer's transaction, indexes an
 * abort. */
int txn_note_batch(struct storage_log *log, struct segment *seg, const uint8_t *batch, size_t len,
                   const struct kafka_batch_header *h);
/* Rebuilds the transaction table by walking batch headers from `from` (clamped to the log
 * start) to the log end, adding index entries the segments lack. */
int txn_rebuild(struct storage_log *log, int64_t from);
/* After a truncation: rebuilds the table from where the checkpoint allows. */
int txn_after_truncate(struct storage_log *log, int64_t offset);
/* The checkpoint's scan start for recovery_point (see txn.c). */
int64_t txn_scan_start(const struct storage_log *log, int64_t recovery_point);
/* Forgets closed transactions whose markers lie below recovery_point. */
void txn_prune(struct storage_log *log, int64_t recovery_point);
/* Loads seg's .txnindex (after seg_load set its end), dropping entries past the end. */
int txn_segment_load(struct storage_log *log, struct segment *seg);
/* Drops seg's entries past its (cut) end. */
int txn_segment_cut(struct storage_log *log, struct segment *seg);
/* Opens seg's .txnindex fd if closed (creating the file). Returns 0 or LM_E_IO. */
int txn_segment_fd(struct storage_log *log, struct segment *seg);
/* Closes the .txnindex fd, making it durable first when sync. */
void txn_segment_close(struct storage_log *log, struct segment *seg, bool sync);
/* Writes seg's whole .txnindex from memory and syncs it (a compacted segment's). */
int txn_segment_rewrite(struct storage_log *log, struct segment *seg);
/* Compaction: adds an entry to seg in memory (the cleaned segment's index). */
int txn_segment_add(struct segment *seg, const struct storage_aborted_txn *e);
/* Whether the batch of producer_id at offset belongs to an aborted transaction of the log's
 * index (its entry into *out, may be NULL). */
bool txn_batch_aborted(const struct storage_log *log, int64_t producer_id, int64_t offset,
                       struct storage_aborted_txn *out);
/* Frees seg's entries (its fd is closed). */
void txn_segment_free(struct segment *seg);

/* segment.c */
void seg_path(const struct storage_log *log, int64_t base, const char *ext, char *out, size_t cap);
struct segment *seg_new(int64_t base_offset, int64_t created_ms);
/* Opens (creating when create) the three files and, for an existing segment, loads the index
 * files as trusted (only structural checks). Counts in log->open_count. */
int seg_open(struct storage_log *log, struct segment *seg, bool create);
/* Writes pending index entries and closes the files, freeing the index arrays. */
int seg_close(struct storage_log *log, struct segment *seg);
void seg_free(struct segment *seg);
int seg_unlink_files(struct storage_log *log, int64_t base);
/* Reopens the .log fd of a loaded segment by path when storage_log_release_fds closed it.
 * Returns 0 or LM_E_IO (reported with the path and errno). */
int seg_fd(struct storage_log *log, struct segment *seg);
/* Opens the .index and .timeindex fds if closed (the files exist: seg_open made them). */
int seg_index_open(struct storage_log *log, struct segment *seg);
/* Closes them unless a running sync step holds them (index_pinned). */
void seg_index_release(struct segment *seg);
/* Writes index entries still in memory to the index files (opening them). */
int seg_write_pending_index(struct storage_log *log, struct segment *seg);
/* Records a batch just written at position into the segment's metadata and indexes. */
int seg_note_batch(struct storage_log *log, struct segment *seg, const struct kafka_batch_header *h,
                   uint64_t position);
/* Preallocation (storage.h): writes zeros past the end of the active segment seg when fewer
 * are left than half its step. Best effort: a failure (a full disk) leaves the file as it was
 * or with fewer zeros, which only costs the speed-up. Returns nothing. */
void seg_preallocate(struct storage_log *log, struct segment *seg);
/* Cuts the zeros preallocated past seg's end (a roll, a close). Returns 0 or LM_E_IO. */
int seg_cut_preallocated(struct storage_log *log, struct segment *seg);
/* Appends a final time-index entry, as Kafka does when a segment becomes inactive. */
int seg_seal(struct storage_log *log, struct segment *seg);
/* Reads the header of the batch at position into *h; checks that it parses and that the whole
 * batch lies within the segment. Returns 0, LM_E_TRUNCATED or a parse error. */
int seg_read_header(struct storage_log *log, struct segment *seg, uint64_t position,
                    struct kafka_batch_header *h);
/* Position of the first batch whose last offset is >= offset (seg->size_bytes if none); *h
 * gets its header when found. Walks at most one index interval. */
int seg_find_position(struct storage_log *log, struct segment *seg, int64_t offset,
                      uint64_t *position, struct kafka_batch_header *h, bool *found);
/* Loads an existing segment at open: checks the indexes against the log and rebuilds them when
 * they are damaged; then, from recover_from (an offset; INT64_MAX: trust all), scans batch by
 * batch with CRC and truncates at the first bad one. *truncated reports a truncation. */
int seg_load(struct storage_log *log, struct segment *seg, int64_t recover_from, bool *truncated);
/* Cuts the segment at position (a batch boundary): the log file, index entries and metadata. */
int seg_truncate_at(struct storage_log *log, struct segment *seg, uint64_t position);

/* compact.c */
/* Reads cleaner-offset-checkpoint into log->cleaned_offset (0 when missing). */
int compact_checkpoint_load(struct storage_log *log);
/* Abandons a running pass (removing its .cleaned files) and frees it. */
void compact_free(struct storage_log *log);

/* checkpoint.c */
int checkpoint_load(struct storage_log *log, int64_t *recovery_point, int64_t *log_start,
                    int64_t *hw, bool *found);
int checkpoint_write(struct storage_log *log);
/* Closes the checkpoint fd if open. */
void checkpoint_close(struct storage_log *log);
int epochs_load(struct storage_log *log, bool *found);
int epochs_write(struct storage_log *log);

#endif
/* The checkpoint slot written to the page cache only (the caller syncs checkpoint_fd). */
int checkpoint_write_nosync(struct storage_log *log);
