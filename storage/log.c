/* The partition log: a sorted list of segments, the last one active (DESIGN.md §3). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/records.h"
#include "storage/storage_internal.h"
#include "common/lm_grow.h"

/* Decompression bound when a timestamp lookup opens a compressed batch. */
#define STORAGE_TIMESTAMP_SEARCH_MAX_BYTES (64u << 20)

#define SYNC_BATCH_FDS 16

/* ---------------------------------------------------------------- config, reporting, clock */

void storage_config_default(struct storage_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->segment_bytes = 1u << 30;              /* log.segment.bytes */
    cfg->segment_ms = 7LL * 24 * 3600 * 1000;   /* log.roll.hours = 168 */
    cfg->index_interval_bytes = 4096;           /* log.index.interval.bytes */
    cfg->retention_bytes = -1;                  /* log.retention.bytes */
    cfg->retention_ms = 7LL * 24 * 3600 * 1000; /* log.retention.hours = 168 */
    cfg->flush_messages = -1;                   /* Long.MAX_VALUE in Kafka: off */
    cfg->flush_ms = -1;
    cfg->checkpoint_interval_bytes = 16u << 20;
    cfg->max_open_segments = 64;
}

void storage_report(struct storage_log *log, int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (log->cfg.report != NULL)
        log->cfg.report(log->cfg.report_ctx, level, msg);
    else
        fprintf(stderr, "storage %s: %s: %s\n", level ? "warn" : "info", log->dir, msg);
}

int64_t storage_now_ms(struct storage_log *log)
{
    if (log->cfg.clock != NULL)
        return log->cfg.clock(log->cfg.clock_ctx);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int storage_partition_dir(char *out, size_t cap, const char *log_dir, const char *topic,
                          int32_t partition)
{
    if (topic[0] == '\0' || strcmp(topic, ".") == 0 || strcmp(topic, "..") == 0 ||
        strchr(topic, '/') != NULL || partition < 0)
        return LM_E_INVALID;
    int n = snprintf(out, cap, "%s/%s-%d", log_dir, topic, (int)partition);
    if (n < 0 || (size_t)n >= cap)
        return LM_E_TOO_LARGE;
    return 0;
}

/* ---------------------------------------------------------------- leader epochs */

static struct segment *active(const struct storage_log *log)
{
    LM_ASSERT(log->seg_count > 0);
    return log->segs[log->seg_count - 1];
}

static int64_t log_end(const struct storage_log *log)
{
    return active(log)->next_offset;
}

/* A sealed segment lies beyond the recovery point (written at roll, not yet flushed). */
static bool sealed_beyond_recovery_point(const struct storage_log *log)
{
    return log->seg_count > 1 && log->recovery_point < log->segs[log->seg_count - 1]->base_offset;
}

int storage_epoch_observe(struct storage_log *log, int32_t epoch, int64_t base_offset)
{
    if (log->epoch_count > 0 && epoch <= log->epochs[log->epoch_count - 1].epoch)
        return 0;
    /* Kafka's LeaderEpochFileCache.assign: entries starting at or after the new epoch's start
     * are superseded (an epoch whose start was moved up to the log start, and nothing written
     * in it since, must not answer OffsetForLeaderEpoch next to the new one). */
    while (log->epoch_count > 0 && log->epochs[log->epoch_count - 1].start_offset >= base_offset) {
        log->epoch_count--;
        log->epochs_dirty = true;
    }
    if (LM_GROW(log->epochs, log->epoch_cap, (size_t)log->epoch_count + 1, 16) != 0)
        return LM_E_NOMEM;
    log->epochs[log->epoch_count++] = (struct epoch_entry){epoch, base_offset};
    log->epochs_dirty = true;
    return 0;
}

bool storage_epoch_matches(const struct storage_log *log, int32_t epoch, int64_t base_offset)
{
    LM_ASSERT(log->epoch_count > 0);
    uint32_t lo = 0, hi = log->epoch_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (log->epochs[mid].start_offset <= base_offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return epoch >= 0 && epoch <= log->epochs[0].epoch;
    LM_ASSERT(log->epochs[lo - 1].start_offset <= base_offset);
    return epoch == log->epochs[lo - 1].epoch;
}

/* Makes the epochs of the batches in buf[0..len) known before they are written: each larger
 * epoch starts an entry (the leader's at the log end, a follower's at its batch's base offset)
 * and the leader-epoch file is rewritten and synced once for them. A batch on disk thus always
 * has its epoch in the file, which is what lets recovery reject a batch whose epoch field (the
 * one header field outside the CRC and not checked by offset continuity) was damaged, instead
 * of adopting an epoch no leader had (Kafka's LeaderEpochFileCache.assign, which flushed the
 * checkpoint before the append went on, KIP-101). Once per new epoch. */
static void epochs_truncate_end(struct storage_log *log, int64_t end);

static int epochs_assign_ahead(struct storage_log *log, const uint8_t *buf, size_t len, bool leader,
                               int32_t epoch, int64_t leo)
{
    int rc = 0;
    uint32_t had = log->epoch_count;
    if (leader) {
        rc = storage_epoch_observe(log, epoch, leo);
    } else {
        size_t pos = 0;
        while (pos < len && rc == 0) {
            struct kafka_batch_header h;
            rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
            LM_ASSERT(rc == 0); /* checked by the caller */
            rc = storage_epoch_observe(log, h.partition_leader_epoch, h.base_offset);
            pos += kafka_batch_total_size(&h);
        }
    }
    if (rc == 0 && log->epochs_dirty)
        rc = epochs_write(log);
    if (rc != 0 && log->epoch_count > had) {
        /* Nothing of the append is written: its new epochs go (the file may still name them,
         * harmless: recovery drops entries past the log end) and are written again with the
         * next append that brings them; a full disk stays a retriable refusal. */
        epochs_truncate_end(log, log->epochs[had].start_offset);
        log->epochs_dirty = true;
    }
    return rc;
}

/* Removes epochs that start at or after end (Kafka LeaderEpochFileCache.truncateFromEnd). */
static void epochs_truncate_end(struct storage_log *log, int64_t end)
{
    while (log->epoch_count > 0 && log->epochs[log->epoch_count - 1].start_offset >= end) {
        log->epoch_count--;
        log->epochs_dirty = true;
    }
}

/* Drops epochs wholly below start; the one covering start now starts there (truncateFromStart). */
static void epochs_truncate_start(struct storage_log *log, int64_t start)
{
    uint32_t j = 0;
    while (j + 1 < log->epoch_count && log->epochs[j + 1].start_offset <= start)
        j++;
    if (j > 0) {
        memmove(log->epochs, log->epochs + j, (log->epoch_count - j) * sizeof(*log->epochs));
        log->epoch_count -= j;
        log->epochs_dirty = true;
    }
    if (log->epoch_count > 0 && log->epochs[0].start_offset < start) {
        log->epochs[0].start_offset = start;
        log->epochs_dirty = true;
    }
}

int32_t storage_log_latest_epoch(const struct storage_log *log)
{
    return log->epoch_count ? log->epochs[log->epoch_count - 1].epoch : -1;
}

void storage_log_epoch_end_offset(const struct storage_log *log, int32_t epoch, int32_t *out_epoch,
                                  int64_t *end_offset)
{
    *out_epoch = -1;
    *end_offset = -1;
    if (epoch < 0 || log->epoch_count == 0)
        return;
    if (epoch == log->epochs[log->epoch_count - 1].epoch) {
        *out_epoch = epoch;
        *end_offset = log_end(log);
        return;
    }
    /* Kafka LeaderEpochFileCache.endOffsetFor: the first larger epoch's start is the end. */
    uint32_t hi = 0;
    while (hi < log->epoch_count && log->epochs[hi].epoch <= epoch)
        hi++;
    if (hi == log->epoch_count)
        return;
    *end_offset = log->epochs[hi].start_offset;
    *out_epoch = hi > 0 ? log->epochs[hi - 1].epoch : epoch;
}

/* ---------------------------------------------------------------- segment list, LRU */

static int segs_reserve(struct storage_log *log, uint32_t need)
{
    return LM_GROW(log->segs, log->seg_cap, need, 16) == 0 ? 0 : LM_E_NOMEM;
}

/* Closes least recently used segments until one more can be opened. The active segment and
 * pinned segments stay open, so the bound can be exceeded by what readers hold. */
static int lru_shrink(struct storage_log *log, uint32_t keep)
{
    while (log->open_count > keep) {
        struct segment *victim = NULL;
        for (uint32_t i = 0; i + 1 < log->seg_count; i++) {
            struct segment *s = log->segs[i];
            if (s->loaded && s->pins == 0 && (victim == NULL || s->lru_tick < victim->lru_tick))
                victim = s;
        }
        if (victim == NULL)
            return 0;
        int rc = seg_close(log, victim);
        if (rc != 0) {
            log->failed = true; /* its unsynced bytes may be lost: stop acknowledging */
            return rc;
        }
    }
    return 0;
}

static int lru_make_room(struct storage_log *log)
{
    return lru_shrink(log, log->cfg.max_open_segments - 1);
}

int seg_use(struct storage_log *log, struct segment *seg)
{
    if (seg->loaded) {
        seg->lru_tick = ++log->lru_clock;
        return seg_fd(log, seg);
    }
    int rc = lru_make_room(log);
    if (rc != 0)
        return rc;
    return seg_open(log, seg, false);
}

static void seg_release_pin(struct storage_log *log, struct segment *seg)
{
    LM_ASSERT(seg->pins > 0);
    seg->pins--;
    if (seg->pins > 0 || !seg->zombie)
        return;
    struct segment **pp = &log->zombies;
    while (*pp != seg) {
        LM_ASSERT(*pp != NULL);
        pp = &(*pp)->next_zombie;
    }
    *pp = seg->next_zombie;
    seg_close(log, seg);
    seg_free(seg);
}

/* Removes segs[idx] from the log and deletes its files; a pinned segment lives on as a zombie
 * (its fds stay valid for the readers) until its last pin is released. */
static int remove_segment(struct storage_log *log, uint32_t idx)
{
    LM_ASSERT(idx < log->seg_count);
    struct segment *seg = log->segs[idx];
    memmove(log->segs + idx, log->segs + idx + 1, (log->seg_count - idx - 1) * sizeof(*log->segs));
    log->seg_count--;
    seg->zombie = true;
    int rc = seg_unlink_files(log, seg->base_offset);
    if (seg->pins > 0) {
        seg->next_zombie = log->zombies;
        log->zombies = seg;
        return rc;
    }
    seg_close(log, seg);
    seg_free(seg);
    return rc;
}

static int create_segment(struct storage_log *log, int64_t base)
{
    int rc = segs_reserve(log, log->seg_count + 1);
    if (rc == 0)
        rc = lru_make_room(log);
    if (rc != 0)
        return rc;
    struct segment *seg = seg_new(base, storage_now_ms(log));
    if (seg == NULL)
        return LM_E_NOMEM;
    rc = seg_open(log, seg, true);
    if (rc != 0) {
        seg_free(seg);
        return rc;
    }
    log->segs[log->seg_count++] = seg;
    return 0;
}

static int roll(struct storage_log *log)
{
    struct segment *old = active(log);
    int rc = seg_cut_preallocated(log, old);
    if (rc == 0)
        rc = seg_seal(log, old);
    if (rc != 0)
        return rc;
    return create_segment(log, old->next_offset);
}

/* ---------------------------------------------------------------- flush and checkpoint */

static int sync_fds(struct storage_log *log, int *fds, int *n)
{
    if (*n == 0)
        return 0;
    int rc = log->io->sync(log->io->ctx, fds, *n);
    *n = 0;
    return rc;
}

void storage_report_open_failed(struct storage_log *log, const char *path)
{
    int e = errno;
    storage_report(log, 1, "cannot open %s: %s", path, strerror(e));
    errno = e;
}

int storage_dir_sync(struct storage_log *log)
{
    int fd = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        storage_report_open_failed(log, log->dir);
        return LM_E_IO;
    }
    int rc = fsync(fd) == 0 ? 0 : LM_E_IO;
    close(fd);
    return rc;
}

void storage_release_fds(struct storage_log *log)
{
    if (log->sync_busy)
        return; /* the running sync's fds stay open until its last step */
    for (uint32_t i = 0; i < log->seg_count; i++)
        seg_index_release(log->segs[i]);
    checkpoint_close(log);
}

int storage_log_release_fds(struct storage_log *log)
{
    LM_ASSERT(log != NULL && !log->closing);
    /* Idle only: a running sync has fds in the owner's hands (an io_uring fsync must not see
     * its fd closed, or worse reused), a read result's slices borrow the fds of the segments
     * it pins, zombies are unlinked (no path to reopen them by), and a compaction pass keeps
     * fds and a read window keyed by fd between its steps. */
    if (log->sync_busy || log->zombies != NULL || storage_log_compacting(log))
        return LM_E_STATE;
    for (uint32_t i = 0; i < log->seg_count; i++)
        if (log->segs[i]->pins != 0 || log->segs[i]->index_pinned)
            return LM_E_STATE;
    /* Nothing is synced here (no blocking fdatasync on the owner's thread): a segment's
     * data_dirty, index_dirty and txn_dirty stay set, and the next flush reopens the files by
     * path and fdatasyncs them there; what was written through a closed fd waits in the page
     * cache as the file's dirty pages (seg_fd). Index entries still in memory stay there. */
    for (uint32_t i = 0; i < log->seg_count; i++) {
        struct segment *seg = log->segs[i];
        seg_index_release(seg);
        txn_segment_close(log, seg, false);
        if (seg->log_fd >= 0) {
            if (log->scan_buf_fd == seg->log_fd) {
                /* keyed by fd number, which a reopen of another segment may get */
                log->scan_buf_fd = -1;
                log->scan_buf_len = 0;
            }
            close(seg->log_fd);
            seg->log_fd = -1;
        }
    }
    checkpoint_close(log);
    log->fds_released = true;
    return 0;
}

bool storage_log_fds_released(const struct storage_log *log)
{
    return log->fds_released;
}

void storage_fds_reopened(struct storage_log *log)
{
    if (!log->fds_released)
        return;
    log->fds_released = false;
    /* not while the log closes: its owner is letting go of it */
    if (log->cfg.fds_reopened != NULL && !log->closing)
        log->cfg.fds_reopened(log->cfg.fds_reopened_ctx);
}

static int log_flush(struct storage_log *log, bool force_checkpoint);

/* Zeros ahead of the active segment's end (storage.h, "Preallocation"), written before a flush
 * that carries appends, so they become durable with it: not for the flushes of an open's
 * recovery or of a close, which leave the file ending at its last batch, nor for a flush that
 * carries more than STORAGE_PREALLOC_FLUSH_MAX bytes of appends (a throughput-bound writer:
 * the zeros would double its writes for a journal commit its large flush already amortizes). */
static void preallocate_active(struct storage_log *log)
{
    if (log->seg_count == 0)
        return;
    struct segment *seg = active(log);
    if (log->closing || log->unflushed_messages <= 0 || !seg->data_dirty)
        return;
    uint64_t from = log->prealloc_base == seg->base_offset ? log->prealloc_mark : 0;
    uint64_t carried = seg->size_bytes > from ? seg->size_bytes - from : 0;
    log->prealloc_base = seg->base_offset;
    log->prealloc_mark = seg->size_bytes;
    if (carried <= STORAGE_PREALLOC_FLUSH_MAX)
        seg_preallocate(log, seg);
}

int storage_log_flush(struct storage_log *log, bool force_checkpoint)
{
    int rc = log_flush(log, force_checkpoint);
    storage_release_fds(log);
    return rc;
}

static int log_flush(struct storage_log *log, bool force_checkpoint)
{
    if (log->failed)
        return LM_E_STATE;
    int fds[SYNC_BATCH_FDS];
    int n = 0, rc = 0;
    preallocate_active(log);
    /* Dirty segments form a suffix of the list (a flush cleans all of them). */
    for (uint32_t i = 0; i < log->seg_count && rc == 0; i++) {
        struct segment *s = log->segs[i];
        if (!s->data_dirty)
            continue;
        LM_ASSERT(s->loaded); /* the LRU syncs a dirty segment before it closes it */
        if ((rc = seg_fd(log, s)) != 0)
            break;
        fds[n++] = s->log_fd;
        if (n == SYNC_BATCH_FDS)
            rc = sync_fds(log, fds, &n);
    }
    if (rc == 0)
        rc = sync_fds(log, fds, &n);
    /* New segment files need their directory entries durable before their data counts. */
    if (rc == 0 && log->dir_dirty) {
        rc = storage_dir_sync(log);
        if (rc == 0)
            log->dir_dirty = false;
    }
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < log->seg_count; i++)
        log->segs[i]->data_dirty = false;
    log->flushed_offset = log_end(log);
    log->unflushed_messages = 0;
    log->first_unflushed_ms = -1;

    bool due =
        force_checkpoint || log->bytes_since_checkpoint >= log->cfg.checkpoint_interval_bytes;
    if (!due)
        return 0;
    /* Indexes below the new recovery point must be durable before the checkpoint says so. */
    for (uint32_t i = 0; i < log->seg_count && rc == 0; i++) {
        struct segment *s = log->segs[i];
        if (!s->loaded)
            continue;
        rc = seg_write_pending_index(log, s);
        if (rc == 0 && s->index_dirty && n + 2 > SYNC_BATCH_FDS)
            rc = sync_fds(log, fds, &n);
        if (rc == 0 && s->index_dirty && (rc = seg_index_open(log, s)) == 0) {
            fds[n++] = s->index_fd;
            fds[n++] = s->time_fd;
        }
        if (rc == 0 && s->txn_dirty && (rc = txn_segment_fd(log, s)) == 0) {
            if (n + 1 > SYNC_BATCH_FDS)
                rc = sync_fds(log, fds, &n);
            fds[n++] = s->txn_fd;
        }
    }
    if (rc == 0)
        rc = sync_fds(log, fds, &n);
    if (rc != 0)
        return rc;
    for (uint32_t i = 0; i < log->seg_count; i++) {
        if (!log->segs[i]->loaded)
            continue;
        log->segs[i]->index_dirty = false;
        log->segs[i]->txn_dirty = false;
    }
    if (log->epochs_dirty) {
        rc = epochs_write(log);
        if (rc != 0)
            return rc;
    }
    log->recovery_point = log->flushed_offset;
    rc = checkpoint_write(log);
    if (rc == 0)
        log->bytes_since_checkpoint = 0;
    return rc;
}

/* ---------------------------------------------------------------- asynchronous flush */

enum { SYNC_DATA = 1, SYNC_INDEX, SYNC_CHECKPOINT, SYNC_DONE };

bool storage_log_dir_dirty(const struct storage_log *log, uint64_t *changes)
{
    *changes = log->dir_changes;
    return log->dir_dirty;
}

void storage_log_dir_synced(struct storage_log *log, uint64_t changes)
{
    if (log->dir_changes == changes)
        log->dir_dirty = false;
}

bool storage_log_flush_due(const struct storage_log *log)
{
    if (log->failed || log->flushed_offset >= log_end(log))
        return false;
    if (log->cfg.flush_messages > 0 && log->unflushed_messages >= log->cfg.flush_messages)
        return true;
    return log->cfg.flush_ms >= 0 && log->first_unflushed_ms >= 0 &&
           storage_now_ms((struct storage_log *)log) - log->first_unflushed_ms >= log->cfg.flush_ms;
}

int storage_log_sync_begin(struct storage_log *log, struct storage_sync *sy)
{
    LM_ASSERT(!log->sync_busy);
    memset(sy, 0, sizeof(*sy));
    if (log->failed)
        return LM_E_STATE;
    sy->dir_fd_ = -1;
    if (log->dir_dirty) {
        sy->dir_fd_ = open(log->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (sy->dir_fd_ < 0) {
            storage_report_open_failed(log, log->dir);
            return LM_E_IO;
        }
    }
    sy->stage_ = SYNC_DATA;
    sy->gen_ = log->sync_gen;
    sy->end_offset = log_end(log);
    /* Dirty segments form a suffix; the oldest first so end_offset stays contiguous. */
    uint32_t first = log->seg_count;
    while (first > 0 && log->segs[first - 1]->data_dirty)
        first--;
    /* Released descriptors first (storage_log_release_fds): reopened by path, the fdatasync
     * through the new fd writes back what was written through the old one (fdatasync covers
     * the file's dirty pages, not the fd's). A writeback error that hit the file while no fd
     * was open is still reported to this fd's first fsync: since Linux 4.16 an fd opened
     * after an error nobody has seen yet sees it once (errseq_t; 4.13-4.15 missed it). */
    for (uint32_t i = first; i < log->seg_count && i - first < STORAGE_SYNC_FDS_MAX - 1; i++) {
        LM_ASSERT(log->segs[i]->loaded);
        int rc = seg_fd(log, log->segs[i]);
        if (rc != 0) {
            if (sy->dir_fd_ >= 0)
                close(sy->dir_fd_);
            sy->dir_fd_ = -1;
            return rc;
        }
    }
    /* Zeros ahead of the active segment's end ride on this data step (storage.h). */
    if (first < log->seg_count && log->seg_count - first <= STORAGE_SYNC_FDS_MAX - 1)
        preallocate_active(log);
    for (uint32_t i = first; i < log->seg_count; i++) {
        struct segment *seg = log->segs[i];
        if (sy->fd_count == STORAGE_SYNC_FDS_MAX - 1) {
            sy->end_offset = seg->base_offset; /* the rest waits for the next sync */
            break;
        }
        LM_ASSERT(seg->log_fd >= 0);
        seg->pins++; /* the LRU must not close it while its fsync runs */
        sy->segs_[sy->seg_count_] = seg;
        sy->seg_next_[sy->seg_count_++] = seg->next_offset;
        sy->fds[sy->fd_count++] = seg->log_fd;
    }
    if (sy->dir_fd_ >= 0) {
        sy->dir_ = true;
        sy->dir_changes_ = log->dir_changes;
        sy->full[sy->fd_count] = true;
        sy->fds[sy->fd_count++] = sy->dir_fd_;
    }
    if (sy->end_offset == log_end(log)) {
        log->unflushed_messages = 0;
        log->first_unflushed_ms = -1;
    }
    log->sync_busy = true;
    return 0;
}

/* The data step is over: unpin, and on success record what became durable (unless the log was
 * truncated meanwhile: then the offsets name other bytes). */
static void sync_data_done(struct storage_log *log, struct storage_sync *sy, bool ok)
{
    bool current = ok && sy->gen_ == log->sync_gen;
    for (uint32_t i = 0; i < sy->seg_count_; i++) {
        struct segment *seg = sy->segs_[i];
        /* Written again since the step began: still dirty for the next sync. */
        if (current && !seg->zombie && seg->next_offset == sy->seg_next_[i])
            seg->data_dirty = false;
        seg_release_pin(log, seg);
    }
    sy->seg_count_ = 0;
    if (sy->dir_fd_ >= 0)
        close(sy->dir_fd_);
    sy->dir_fd_ = -1;
    if (!current)
        return;
    if (sy->dir_ && log->dir_changes == sy->dir_changes_)
        log->dir_dirty = false;
    int64_t end = sy->end_offset < log_end(log) ? sy->end_offset : log_end(log);
    if (log->flushed_offset < end)
        log->flushed_offset = end;
}

/* The index step is over: its segments' index fds close, their pins go. */
static void sync_index_done(struct storage_log *log, struct storage_sync *sy)
{
    for (uint32_t i = 0; i < sy->seg_count_; i++) {
        struct segment *seg = sy->segs_[i];
        LM_ASSERT(seg->index_pinned);
        seg->index_pinned = false;
        seg_index_release(seg);
        seg_release_pin(log, seg);
    }
    sy->seg_count_ = 0;
}

static int sync_step(struct storage_log *log, struct storage_sync *sy, int rc, bool *done)
{
    LM_ASSERT(log->sync_busy && sy->stage_ >= SYNC_DATA && sy->stage_ < SYNC_DONE);
    *done = false;
    int stage = sy->stage_;
    sy->fd_count = 0;
    memset(sy->full, 0, sizeof(sy->full));
    if (stage == SYNC_DATA)
        sync_data_done(log, sy, rc == 0);
    if (stage == SYNC_INDEX)
        sync_index_done(log, sy);
    if (rc == 0 && log->failed)
        rc = LM_E_STATE;
    if (rc != 0) {
        /* After a failed fsync the page cache state is unknown (the "fsyncgate" lesson): the
         * log refuses further writes, recovery at restart decides what survived. */
        log->failed = true;
        log->sync_busy = false;
        sy->stage_ = SYNC_DONE;
        *done = true;
        return rc;
    }
    if (stage == SYNC_DATA) {
        /* A sealed segment below the new durable end moves the recovery point at once, so
         * recovery after a crash reads at most the active segment (Kafka flushes at roll). */
        bool due = (log->bytes_since_checkpoint >= log->cfg.checkpoint_interval_bytes ||
                    sealed_beyond_recovery_point(log)) &&
                   sy->gen_ == log->sync_gen;
        if (!due) {
            log->sync_busy = false;
            sy->stage_ = SYNC_DONE;
            *done = true;
            return 0;
        }
        /* Indexes below the new recovery point must be durable before the checkpoint says so;
         * the recovery point is what this sync made durable, never more. */
        log->bytes_since_checkpoint = 0;
        sy->stage_ = SYNC_INDEX;
        for (uint32_t i = 0; i < log->seg_count && rc == 0; i++) {
            struct segment *seg = log->segs[i];
            if (!seg->loaded)
                continue;
            rc = seg_write_pending_index(log, seg);
            if (rc == 0 && seg->index_dirty && sy->fd_count + 2 <= STORAGE_SYNC_FDS_MAX &&
                (rc = seg_index_open(log, seg)) == 0) {
                /* Pinned (the LRU keeps the segment, release keeps the fds) until the step
                 * ends: sync_index_done. */
                seg->pins++;
                seg->index_pinned = true;
                sy->segs_[sy->seg_count_++] = seg;
                sy->fds[sy->fd_count++] = seg->index_fd;
                sy->fds[sy->fd_count++] = seg->time_fd;
                seg->index_dirty = false;
            }
            if (rc == 0 && seg->txn_dirty && sy->fd_count + 1 <= STORAGE_SYNC_FDS_MAX &&
                (rc = txn_segment_fd(log, seg)) == 0) {
                /* open until the log is released (never while a sync runs) or closed */
                sy->fds[sy->fd_count++] = seg->txn_fd;
                seg->txn_dirty = false;
            }
        }
        if (rc != 0)
            return sync_step(log, sy, rc, done);
        if (sy->fd_count > 0)
            return 0;
        stage = SYNC_INDEX; /* nothing to sync: straight to the checkpoint */
    }
    if (stage == SYNC_INDEX) {
        sy->stage_ = SYNC_CHECKPOINT;
        if (log->epochs_dirty && (rc = epochs_write(log)) != 0)
            return sync_step(log, sy, rc, done);
        if (log->recovery_point < sy->end_offset && sy->end_offset <= log->flushed_offset)
            log->recovery_point = sy->end_offset;
        if ((rc = checkpoint_write_nosync(log)) != 0)
            return sync_step(log, sy, rc, done);
        sy->fds[sy->fd_count++] = log->checkpoint_fd;
        return 0;
    }
    LM_ASSERT(stage == SYNC_CHECKPOINT);
    log->sync_busy = false;
    sy->stage_ = SYNC_DONE;
    *done = true;
    return 0;
}

int storage_log_sync_step(struct storage_log *log, struct storage_sync *sy, int rc, bool *done)
{
    rc = sync_step(log, sy, rc, done);
    /* Index fds are closed as they are written and when the index step ends
     * (sync_index_done): only the checkpoint's can be left, so no walk over the segments on
     * every group commit. */
    if (*done)
        checkpoint_close(log);
    return rc;
}

int storage_log_tick(struct storage_log *log)
{
    if (log->failed)
        return LM_E_STATE;
    if (log->cfg.external_sync)
        return 0; /* the owner polls storage_log_flush_due() */
    if (log->cfg.flush_ms >= 0 && log->first_unflushed_ms >= 0 &&
        storage_now_ms(log) - log->first_unflushed_ms >= log->cfg.flush_ms)
        return storage_log_flush(log, false);
    return 0;
}

/* ---------------------------------------------------------------- open and close */

static bool parse_seg_name(const char *name, const char *ext, int64_t *base)
{
    size_t el = strlen(ext);
    if (strlen(name) != SEG_NAME_DIGITS + el || strcmp(name + SEG_NAME_DIGITS, ext) != 0)
        return false;
    int64_t v = 0;
    for (int i = 0; i < SEG_NAME_DIGITS; i++) {
        if (name[i] < '0' || name[i] > '9' || v > (INT64_MAX - (name[i] - '0')) / 10)
            return false;
        v = v * 10 + (name[i] - '0');
    }
    *base = v;
    return true;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static bool join_path(char *out, size_t cap, const char *dir, const char *name, size_t name_len)
{
    size_t dl = strlen(dir);
    if (dl + 1 + name_len + 1 > cap)
        return false;
    memcpy(out, dir, dl);
    out[dl] = '/';
    memcpy(out + dl + 1, name, name_len);
    out[dl + 1 + name_len] = '\0';
    return true;
}

/* Lists the segment base offsets in the directory, finishing or discarding interrupted
 * compaction swaps (see storage.h) and removing temporary and orphan files. */
static int list_segments(struct storage_log *log, int64_t **bases_out, uint32_t *count_out)
{
    static const char *const exts[] = {".log", ".index", ".timeindex"};
    int64_t *bases = NULL;
    uint32_t count = 0, cap = 0;
    /* Pass 0 removes temporaries and settles index .swap files (completed when their .log.swap,
     * the commit point, exists; else deleted); pass 1 completes .log.swap; pass 2 lists. */
    for (int pass = 0; pass < 3; pass++) {
        DIR *d = opendir(log->dir);
        if (d == NULL) {
            free(bases);
            return LM_E_IO;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            const char *name = e->d_name;
            char path[PATH_MAX], to[PATH_MAX];
            size_t nl = strlen(name);
            if (!join_path(path, sizeof(path), log->dir, name, nl))
                continue; /* not a name of ours: too long to be one */
            if (pass < 2) {
                bool swap = nl > 5 && strcmp(name + nl - 5, ".swap") == 0;
                bool log_swap = swap && nl > 9 && strcmp(name + nl - 9, ".log.swap") == 0;
                if (pass == 0 && ((nl > 8 && strcmp(name + nl - 8, ".cleaned") == 0) ||
                                  (nl > 4 && strcmp(name + nl - 4, ".tmp") == 0))) {
                    storage_report(log, 0, "removing leftover %s", name);
                    unlink(path);
                } else if (swap && log_swap == (pass == 1)) {
                    if (!join_path(to, sizeof(to), log->dir, name, nl - 5))
                        continue;
                    if (!log_swap) {
                        int64_t b;
                        char base_name[SEG_NAME_DIGITS + 1], committed[PATH_MAX];
                        if (nl < SEG_NAME_DIGITS)
                            continue;
                        memcpy(base_name, name, SEG_NAME_DIGITS);
                        base_name[SEG_NAME_DIGITS] = '\0';
                        if (!parse_seg_name(base_name, "", &b))
                            continue;
                        seg_path(log, b, ".log.swap", committed, sizeof(committed));
                        if (access(committed, F_OK) != 0) {
                            storage_report(log, 0, "discarding uncommitted swap %s", name);
                            unlink(path);
                            continue;
                        }
                    }
                    storage_report(log, 0, "completing swap of %s", name);
                    if (rename(path, to) != 0) {
                        closedir(d);
                        free(bases);
                        return LM_E_IO;
                    }
                }
                continue;
            }
            int64_t base;
            if (parse_seg_name(name, exts[0], &base)) {
                if (count == cap) {
                    cap = cap ? cap * 2 : 16;
                    void *p = realloc(bases, cap * sizeof(*bases));
                    if (p == NULL) {
                        closedir(d);
                        free(bases);
                        return LM_E_NOMEM;
                    }
                    bases = p;
                }
                bases[count++] = base;
            } else if (parse_seg_name(name, exts[1], &base) ||
                       parse_seg_name(name, exts[2], &base)) {
                seg_path(log, base, ".log", to, sizeof(to));
                if (access(to, F_OK) != 0) {
                    storage_report(log, 0, "removing orphan index %s", name);
                    unlink(path);
                }
            }
        }
        closedir(d);
    }
    if (count > 0)
        qsort(bases, count, sizeof(*bases), cmp_i64);
    *bases_out = bases;
    *count_out = count;
    return 0;
}

/* Rebuilds leader epochs of the trusted part (below limit) of a segment from batch headers,
 * for when the leader-epoch file is missing or damaged. */
static int walk_epochs(struct storage_log *log, struct segment *seg, int64_t limit)
{
    struct stat st;
    if (fstat(seg->log_fd, &st) != 0)
        return LM_E_IO;
    seg->size_bytes = (uint64_t)st.st_size;
    uint64_t pos = 0;
    while (pos < seg->size_bytes) {
        struct kafka_batch_header h;
        if (seg_read_header(log, seg, pos, &h) != 0 || h.base_offset >= limit)
            break;
        int rc = storage_epoch_observe(log, h.partition_leader_epoch, h.base_offset);
        if (rc != 0)
            return rc;
        pos += kafka_batch_total_size(&h);
    }
    return 0;
}

static void free_log(struct storage_log *log)
{
    log->closing = true;
    compact_free(log);
    for (uint32_t i = 0; i < log->seg_count; i++) {
        LM_ASSERT(log->segs[i]->pins == 0);
        seg_close(log, log->segs[i]);
        seg_free(log->segs[i]);
    }
    LM_ASSERT(log->zombies == NULL);
    checkpoint_close(log);
    free(log->segs);
    free(log->epochs);
    free(log->txns);
    free(log->scan_buf);
    free(log);
}

static int load_segments(struct storage_log *log, int64_t rp, bool epochs_found)
{
    int64_t *bases;
    uint32_t count;
    int rc = list_segments(log, &bases, &count);
    if (rc != 0)
        return rc;
    rc = segs_reserve(log, count + 1);
    for (uint32_t i = 0; i < count && rc == 0; i++) {
        struct segment *seg = seg_new(bases[i], storage_now_ms(log));
        if (seg == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        rc = lru_make_room(log);
        if (rc == 0)
            rc = seg_open(log, seg, false);
        if (rc != 0) {
            seg_free(seg);
            break;
        }
        log->segs[log->seg_count++] = seg;
        int64_t recover_from = (i + 1 < count && bases[i + 1] <= rp) ? INT64_MAX : rp;
        if (!epochs_found && seg->base_offset < rp) {
            rc = walk_epochs(log, seg, rp);
            if (rc != 0)
                break;
        }
        bool truncated = false;
        seg->compacted = seg->base_offset < log->gaps_offset;
        rc = seg_load(log, seg, recover_from, &truncated);
        if (rc == 0)
            rc = txn_segment_load(log, seg);
        if (rc != 0)
            break;
        if (recover_from != INT64_MAX)
            seg->data_dirty = true; /* read back from the page cache: sync before trusting */
        /* A merged compacted segment whose swap finished before the rest of its group was
         * unlinked (compact.c): the segments it overlaps are that group's leftovers. */
        while (seg->compacted && !truncated && i + 1 < count && bases[i + 1] < seg->next_offset) {
            storage_report(log, 0, "removing segment %020lld merged into %020lld by compaction",
                           (long long)bases[i + 1], (long long)seg->base_offset);
            rc = seg_unlink_files(log, bases[i + 1]);
            if (rc != 0)
                break;
            memmove(bases + i + 1, bases + i + 2, (count - i - 2) * sizeof(*bases));
            count--;
        }
        if (rc != 0)
            break;
        bool overlap = i + 1 < count && bases[i + 1] < seg->next_offset;
        /* A scanned segment that ends before the next one starts lost its tail (unsynced bytes
         * of a power cut, cut at a batch boundary): the offsets after it would be a hole. */
        bool hole = recover_from != INT64_MAX && !seg->compacted && i + 1 < count &&
                    bases[i + 1] > seg->next_offset;
        if (hole)
            storage_report(log, 1,
                           "segment %020lld ends at offset %lld but the next starts at "
                           "%lld",
                           (long long)seg->base_offset, (long long)seg->next_offset,
                           (long long)bases[i + 1]);
        if (truncated || overlap || hole) {
            /* Nothing after a torn write is exposed: later segments go. */
            for (uint32_t j = i + 1; j < count; j++) {
                storage_report(log, 1, "deleting segment %020lld after the damage at offset %lld",
                               (long long)bases[j], (long long)seg->next_offset);
                rc = seg_unlink_files(log, bases[j]);
                if (rc != 0)
                    break;
            }
            break;
        }
        if (i + 1 < count) {
            rc = seg_seal(log, seg);
            seg->sealed = true;
        }
    }
    free(bases);
    return rc;
}

int storage_log_open(const char *dir, const struct storage_config *cfg, struct storage_log **out)
{
    *out = NULL;
    if (cfg->segment_bytes < KAFKA_BATCH_HEADER_SIZE + KAFKA_BATCH_LOG_OVERHEAD ||
        cfg->segment_bytes > INT32_MAX || cfg->max_open_segments < 2 ||
        cfg->index_interval_bytes == 0)
        return LM_E_CONFIG;
    if (strlen(dir) + 1 + SEG_NAME_DIGITS + 16 >= PATH_MAX)
        return LM_E_TOO_LARGE;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST)
        return LM_E_IO;
    struct storage_log *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return LM_E_NOMEM;
    snprintf(log->dir, sizeof(log->dir), "%s", dir);
    log->cfg = *cfg;
    log->io = cfg->io != NULL ? cfg->io : storage_io_posix();
    log->checkpoint_fd = -1;
    log->scan_buf_fd = -1;
    log->first_unflushed_ms = -1;
    log->scan_buf = malloc(STORAGE_SCAN_BUF_BYTES);
    if (log->scan_buf == NULL) {
        free_log(log);
        return LM_E_NOMEM;
    }
    int64_t rp = 0, ls = 0, hw = 0;
    bool ck_found, ep_found;
    int rc = checkpoint_load(log, &rp, &ls, &hw, &ck_found);
    if (rc == 0)
        rc = epochs_load(log, &ep_found);
    log->epochs_check = rc == 0 && ep_found && log->epoch_count > 0;
    if (rc == 0)
        rc = compact_checkpoint_load(log);
    if (rc == 0 && !ck_found)
        rp = ls = hw = 0;
    if (rc == 0)
        rc = load_segments(log, rp, ep_found);
    log->epochs_check = false;
    bool created = false; /* no checkpoint, no segment: a new log */
    if (rc == 0 && log->seg_count == 0) {
        created = !ck_found && !ep_found && ls == 0;
        rc = create_segment(log, ls);
    }
    if (rc != 0) {
        free_log(log);
        return rc;
    }
    int64_t leo = log_end(log);
    log->log_start_offset = ls > log->segs[0]->base_offset ? ls : log->segs[0]->base_offset;
    if (log->log_start_offset > leo) {
        /* Data below the checkpointed log start was lost with unflushed writes: restart the log
         * at the start offset rather than expose a hole. */
        storage_report(log, 1, "log ends at %lld below its start offset %lld; restarting there",
                       (long long)leo, (long long)log->log_start_offset);
        rc = storage_log_reset(log, log->log_start_offset);
        if (rc != 0) {
            free_log(log);
            return rc;
        }
        leo = log_end(log);
    }
    epochs_truncate_end(log, leo);
    epochs_truncate_start(log, log->log_start_offset);
    log->high_watermark = hw < log->log_start_offset ? log->log_start_offset : hw > leo ? leo : hw;
    log->recovery_point = rp > leo ? leo : rp;
    log->flushed_offset = log->recovery_point;
    /* The open transactions: walked from the checkpoint's scan start (txn.c). */
    rc = txn_rebuild(log, ck_found ? log->txn_ckpt_scan : 0);
    if (rc != 0) {
        free_log(log);
        return rc;
    }
    /* A log closed cleanly (its checkpoint covers its end; nothing was recovered, trimmed or
     * created) has nothing to make durable: opening it costs no write and no fsync, which is
     * what reopening idle logs on demand needs. Anything else is written and synced now. */
    bool unchanged = ck_found && rp == leo && hw == log->high_watermark &&
                     txn_scan_start(log, rp) == log->txn_ckpt_scan && ls == log->log_start_offset &&
                     !log->epochs_dirty && !log->dir_dirty;
    /* A new log (an empty directory, or none) has nothing to make durable yet either: its
     * files' directory entries are synced by its first flush (dir_dirty, storage_log_flush
     * and storage_log_sync_begin), before any of its records counts as durable, and a crash
     * before that leaves a directory that opens as a new log again. Creating a partition thus
     * costs no fsync: 10,000 created at once on one node were ~20,000 directory fsyncs and
     * checkpoint fdatasyncs on the shard threads, saturating the disk's flushes. */
    bool fresh = created && leo == 0 && !log->epochs_dirty;
    rc = unchanged || fresh ? 0 : storage_log_flush(log, true);
    if (rc != 0) {
        free_log(log);
        return rc;
    }
    storage_release_fds(log); /* recovery's index and checkpoint fds */
    *out = log;
    return 0;
}

int storage_log_close_unsynced(struct storage_log *log)
{
    LM_ASSERT(log != NULL);
    if (log->zombies != NULL || storage_log_compacting(log))
        return LM_E_STATE;
    for (uint32_t i = 0; i < log->seg_count; i++)
        if (log->segs[i]->pins != 0)
            return LM_E_STATE;
    free_log(log);
    return 0;
}

int storage_log_close(struct storage_log *log)
{
    if (log == NULL)
        return 0;
    log->closing = true; /* the final flush may reopen released fds: no word to the owner */
    int rc = log->failed ? LM_E_STATE : 0;
    /* The file ends at its last batch again (Kafka's tools read it to its end); the flush
     * makes the new size durable. */
    if (rc == 0 && log->seg_count > 0 && active(log)->loaded)
        rc = seg_cut_preallocated(log, active(log));
    if (rc == 0)
        rc = storage_log_flush(log, true);
    free_log(log);
    return rc;
}

/* ---------------------------------------------------------------- append */

/* Writes buf[0..len) (whole batches) at the end of seg and records them. */
static int write_run(struct storage_log *log, struct segment *seg, const uint8_t *buf, size_t len,
                     bool sync)
{
    if (len == 0)
        return 0;
    int rc = seg_fd(log, seg);
    if (rc != 0)
        return rc;
    struct iovec iov = {(void *)buf, len};
    uint64_t at = seg->size_bytes;
    rc = sync ? log->io->pwritev_sync(log->io->ctx, seg->log_fd, &iov, 1, at)
              : log->io->pwritev_all(log->io->ctx, seg->log_fd, &iov, 1, at);
    if (rc != 0) {
        /* Take back a partial write so the file ends at a batch boundary. */
        if (ftruncate(seg->log_fd, (off_t)at) != 0)
            log->failed = true;
        seg->file_bytes = at;
        return rc;
    }
    seg->data_dirty = !sync;
    size_t pos = 0;
    while (pos < len) {
        struct kafka_batch_header h;
        rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        LM_ASSERT(rc == 0); /* checked before writing */
        /* Its epoch entered the leader-epoch cache and file before the write. */
        LM_ASSERT(h.partition_leader_epoch <= storage_log_latest_epoch(log));
        rc = seg_note_batch(log, seg, &h, at + pos);
        if (rc == 0)
            rc = txn_note_batch(log, seg, buf + pos, kafka_batch_total_size(&h), &h);
        if (rc != 0)
            return rc;
        pos += kafka_batch_total_size(&h);
    }
    log->bytes_since_checkpoint += len;
    return 0;
}

static bool needs_roll(struct storage_log *log, const struct segment *seg, uint64_t pending,
                       uint64_t batch_size, int64_t last_offset, int64_t now)
{
    uint64_t size = seg->size_bytes + pending;
    if (size == 0)
        return false;
    if (size + batch_size > log->cfg.segment_bytes)
        return true;
    if (last_offset - seg->base_offset > SEG_REL_OFFSET_MAX)
        return true;
    return log->cfg.segment_ms >= 0 && now - seg->created_ms >= log->cfg.segment_ms;
}

static int append(struct storage_log *log, uint8_t *buf, size_t len, bool leader, int32_t epoch,
                  struct storage_append_result *res)
{
    memset(res, 0, sizeof(*res));
    res->base_offset = res->last_offset = res->max_timestamp = -1;
    if (log->failed)
        return LM_E_STATE;
    if (len == 0)
        return LM_E_TRUNCATED;
    int64_t leo0 = log_end(log);
    int32_t latest = storage_log_latest_epoch(log);
    if (leader && (epoch < 0 || epoch < latest))
        return LM_E_INVALID;

    /* Pass 1: check every batch before anything is written (all or nothing). */
    int64_t next = leo0, msgs = 0;
    int32_t prev_epoch = latest;
    size_t pos = 0;
    uint32_t batches = 0;
    while (pos < len) {
        struct kafka_batch_header h;
        int rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        if (rc != 0)
            return rc;
        size_t size = kafka_batch_total_size(&h);
        if (size > len - pos)
            return LM_E_TRUNCATED;
        if (h.last_offset_delta < 0 || h.records_count < 0)
            return LM_E_CORRUPT;
        if (!kafka_batch_crc_ok(buf + pos, &h))
            return LM_E_CRC;
        if (size > log->cfg.segment_bytes)
            return LM_E_TOO_LARGE;
        if (!leader) {
            if (h.base_offset != next)
                return LM_E_SEQUENCE;
            if (h.partition_leader_epoch < prev_epoch || h.partition_leader_epoch < 0)
                return LM_E_INVALID;
            prev_epoch = h.partition_leader_epoch;
        }
        if (next > INT64_MAX - 1 - h.last_offset_delta)
            return LM_E_TOO_LARGE;
        next += (int64_t)h.last_offset_delta + 1;
        msgs += h.records_count;
        batches++;
        pos += size;
    }

    int64_t now = storage_now_ms(log);
    bool will_flush = !log->cfg.external_sync && log->cfg.flush_messages > 0 &&
                      log->unflushed_messages + msgs >= log->cfg.flush_messages;
    if (log->cfg.flush_ms >= 0 && !log->cfg.external_sync) {
        int64_t first = log->first_unflushed_ms >= 0 ? log->first_unflushed_ms : now;
        will_flush = will_flush || now - first >= log->cfg.flush_ms;
    }

    int rc = epochs_assign_ahead(log, buf, len, leader, epoch, leo0);
    if (rc != 0)
        return rc;

    /* Pass 2: stamp offsets and epochs, roll where needed, write runs of whole batches. */
    struct segment *seg = active(log);
    size_t run = 0;
    next = leo0;
    pos = 0;
    bool rolled = false;
    while (pos < len) {
        struct kafka_batch_header h;
        rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        LM_ASSERT(rc == 0);
        size_t size = kafka_batch_total_size(&h);
        if (leader) {
            kafka_batch_set_base_offset(buf + pos, next);
            kafka_batch_set_leader_epoch(buf + pos, epoch);
            if (log->cfg.log_append_time)
                kafka_batch_set_log_append_time(buf + pos, size, now);
            rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
            LM_ASSERT(rc == 0 && h.base_offset == next);
        }
        if (res->max_timestamp < h.max_timestamp)
            res->max_timestamp = h.max_timestamp;
        if (needs_roll(log, seg, pos - run, size, kafka_batch_last_offset(&h), now)) {
            rc = write_run(log, seg, buf + run, pos - run, false);
            if (rc == 0)
                rc = roll(log);
            if (rc != 0)
                break;
            rolled = true;
            seg = active(log);
            run = pos;
        }
        next = kafka_batch_last_offset(&h) + 1;
        pos += size;
    }
    if (rc == 0) {
        /* One linked write+sync when this append is all a flush would have to sync. */
        bool sync = will_flush && !rolled && !log->dir_dirty && !seg->data_dirty &&
                    (log->seg_count < 2 || !log->segs[log->seg_count - 2]->data_dirty);
        rc = write_run(log, seg, buf + run, len - run, sync);
        if (rc == 0 && sync) {
            log->flushed_offset = log_end(log);
            log->unflushed_messages = 0;
            log->first_unflushed_ms = -1;
            res->flushed = true;
            will_flush = log->bytes_since_checkpoint >= log->cfg.checkpoint_interval_bytes;
        }
    }
    if (rc != 0) {
        if (log_end(log) != leo0 && !log->failed) {
            int trc = storage_log_truncate_to(log, leo0);
            if (trc != 0)
                log->failed = true;
        }
        /* An epoch assigned ahead for batches that were not written is forgotten. */
        epochs_truncate_end(log, log_end(log));
        return rc;
    }
    if (!res->flushed) {
        log->unflushed_messages += msgs;
        if (log->first_unflushed_ms < 0)
            log->first_unflushed_ms = now;
    }
    res->base_offset = leo0;
    res->last_offset = log_end(log) - 1;
    res->log_end_offset = log_end(log);
    res->batches = batches;
    if (will_flush) {
        rc = storage_log_flush(log, false);
        if (rc != 0)
            return rc;
        res->flushed = true;
    }
    return 0;
}

int storage_log_append_leader(struct storage_log *log, uint8_t *buf, size_t len,
                              int32_t leader_epoch, struct storage_append_result *res)
{
    return append(log, buf, len, true, leader_epoch, res);
}

int storage_log_append_follower(struct storage_log *log, const uint8_t *buf, size_t len,
                                struct storage_append_result *res)
{
    /* The follower path never writes into buf (leader == false). */
    return append(log, (uint8_t *)buf, len, false, -1, res);
}

/* ---------------------------------------------------------------- read */

uint32_t find_segment(const struct storage_log *log, int64_t offset)
{
    uint32_t lo = 0, hi = log->seg_count;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (log->segs[mid]->base_offset <= offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo > 0 ? lo - 1 : 0;
}

/* Extends a slice that starts with one batch ending at *end (last offset *last) over the
 * following batches of seg, up to byte position limit and below max_offset. The index jumps
 * over whole intervals so at most one interval of headers is read. */
static int extend_slice(struct storage_log *log, struct segment *seg, uint64_t limit,
                        int64_t max_offset, uint64_t *end, int64_t *last)
{
    if (limit >= seg->size_bytes && seg->next_offset <= max_offset) {
        *end = seg->size_bytes;
        *last = seg->next_offset - 1;
        return 0;
    }
    uint32_t lo = 0, hi = seg->index_len;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        const struct seg_index_entry *e = &seg->index[mid];
        if (e->position <= limit && seg->base_offset + (int64_t)e->rel_offset < max_offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    bool known = true;
    if (lo > 0 && seg->index[lo - 1].position > *end) {
        *end = seg->index[lo - 1].position;
        known = false;
    }
    while (*end < seg->size_bytes) {
        struct kafka_batch_header h;
        int rc = seg_read_header(log, seg, *end, &h);
        if (rc != 0)
            return rc;
        if (*end + kafka_batch_total_size(&h) > limit ||
            kafka_batch_last_offset(&h) >= max_offset) {
            if (!known)
                *last = h.base_offset - 1;
            return 0;
        }
        *end += kafka_batch_total_size(&h);
        *last = kafka_batch_last_offset(&h);
        known = true;
    }
    if (!known)
        *last = seg->next_offset - 1;
    return 0;
}

int storage_log_read(struct storage_log *log, int64_t offset, uint64_t max_bytes,
                     int64_t max_offset, struct storage_read_result *res)
{
    memset(res, 0, sizeof(*res));
    res->first_offset = res->last_offset = -1;
    res->log_start_offset = log->log_start_offset;
    res->log_end_offset = log_end(log);
    res->high_watermark = log->high_watermark;
    if (offset < log->log_start_offset || offset > log_end(log))
        return LM_E_OUT_OF_RANGE;
    uint32_t i = find_segment(log, offset);
    int64_t cur = offset;
    int rc = 0;
    while (i < log->seg_count && res->slice_count < STORAGE_READ_SLICES_MAX) {
        struct segment *seg = log->segs[i];
        if (cur >= seg->next_offset) {
            i++;
            continue;
        }
        rc = seg_use(log, seg);
        if (rc != 0)
            break;
        uint64_t start;
        struct kafka_batch_header h;
        bool found;
        rc = seg_find_position(log, seg, cur, &start, &h, &found);
        if (rc != 0)
            break;
        if (!found) {
            i++;
            continue;
        }
        uint64_t size0 = kafka_batch_total_size(&h);
        if (kafka_batch_last_offset(&h) >= max_offset)
            break;
        if (res->bytes > 0 && res->bytes + size0 > max_bytes)
            break;
        uint64_t room = max_bytes > res->bytes ? max_bytes - res->bytes : 0;
        if (room < size0)
            room = size0; /* KIP-74: the first batch goes whole even if larger than max_bytes */
        uint64_t limit = room > seg->size_bytes - start ? seg->size_bytes : start + room;
        uint64_t end = start + size0;
        int64_t last = kafka_batch_last_offset(&h);
        rc = extend_slice(log, seg, limit, max_offset, &end, &last);
        if (rc != 0)
            break;
        if (res->slice_count == 0)
            res->first_offset = h.base_offset;
        struct storage_slice *s = &res->slices[res->slice_count];
        s->fd = seg->log_fd;
        s->position = start;
        s->length = end - start;
        res->pins[res->slice_count++] = seg;
        seg->pins++;
        res->bytes += end - start;
        res->last_offset = last;
        if (end < seg->size_bytes)
            break;
        cur = seg->next_offset;
        i++;
    }
    if (rc != 0) {
        storage_read_result_release(log, res);
        return rc;
    }
    return 0;
}

void storage_read_result_release(struct storage_log *log, struct storage_read_result *res)
{
    for (uint32_t i = 0; i < res->slice_count; i++) {
        if (res->pins[i] != NULL)
            seg_release_pin(log, res->pins[i]);
        res->pins[i] = NULL;
    }
    /* Back under the bound once readers let go; a failure here marks the log failed. */
    if (!log->failed)
        (void)lru_shrink(log, log->cfg.max_open_segments);
}

int storage_read_result_copy(const struct storage_read_result *res, uint8_t *buf, size_t cap)
{
    if (res->bytes > cap)
        return LM_E_TOO_LARGE;
    size_t at = 0;
    for (uint32_t i = 0; i < res->slice_count; i++) {
        const struct storage_slice *s = &res->slices[i];
        uint64_t done = 0;
        while (done < s->length) {
            ssize_t r =
                pread(s->fd, buf + at + done, s->length - done, (off_t)(s->position + done));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return LM_E_IO;
            done += (uint64_t)r;
        }
        at += s->length;
    }
    return 0;
}

/* ---------------------------------------------------------------- accessors */

int64_t storage_log_start_offset(const struct storage_log *log)
{
    return log->log_start_offset;
}

int64_t storage_log_end_offset(const struct storage_log *log)
{
    return log_end(log);
}

int64_t storage_log_flushed_offset(const struct storage_log *log)
{
    return log->flushed_offset;
}

/* The recovery point lags the log end by more than RECOVERY_LAG_CHECKPOINTS checkpoint
 * intervals, or stops below a sealed segment. */
#define RECOVERY_LAG_CHECKPOINTS 4

bool storage_log_recovery_flush_wanted(const struct storage_log *log)
{
    if (log->failed || log->sync_busy || log->flushed_offset >= log_end(log))
        return false;
    return sealed_beyond_recovery_point(log) ||
           log->bytes_since_checkpoint >=
               RECOVERY_LAG_CHECKPOINTS * (uint64_t)log->cfg.checkpoint_interval_bytes;
}

int64_t storage_log_high_watermark(const struct storage_log *log)
{
    return log->high_watermark;
}

uint64_t storage_log_size_bytes(const struct storage_log *log)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < log->seg_count; i++)
        n += log->segs[i]->size_bytes;
    return n;
}

uint32_t storage_log_segment_count(const struct storage_log *log)
{
    return log->seg_count;
}

void storage_log_set_high_watermark(struct storage_log *log, int64_t hw)
{
    if (hw < log->log_start_offset)
        hw = log->log_start_offset;
    if (hw > log_end(log))
        hw = log_end(log);
    log->high_watermark = hw;
}

/* ---------------------------------------------------------------- truncation, retention */

int storage_log_reset(struct storage_log *log, int64_t offset)
{
    log->shape_gen++;
    if (log->failed)
        return LM_E_STATE;
    if (offset < 0)
        return LM_E_INVALID;
    int rc = 0;
    while (log->seg_count > 0 && rc == 0)
        rc = remove_segment(log, log->seg_count - 1);
    if (rc == 0)
        rc = create_segment(log, offset);
    if (rc != 0) {
        log->failed = true;
        return rc;
    }
    log->log_start_offset = log->high_watermark = log->recovery_point = offset;
    log->flushed_offset = offset;
    log->txn_count = 0;
    log->txn_ckpt_rp = log->txn_ckpt_scan = offset;
    log->unflushed_messages = 0;
    log->first_unflushed_ms = -1;
    log->epoch_count = 0;
    log->epochs_dirty = true;
    return storage_log_flush(log, true);
}

int storage_log_truncate_to(struct storage_log *log, int64_t offset)
{
    log->shape_gen++;
    if (log->failed)
        return LM_E_STATE;
    if (offset >= log_end(log))
        return 0;
    if (offset < log->log_start_offset)
        return storage_log_reset(log, offset);
    int rc = 0;
    while (log->seg_count > 1 && active(log)->base_offset > offset && rc == 0)
        rc = remove_segment(log, log->seg_count - 1);
    struct segment *seg = active(log);
    if (rc == 0)
        rc = seg_use(log, seg);
    if (rc == 0) {
        uint64_t pos;
        struct kafka_batch_header h;
        bool found;
        rc = seg_find_position(log, seg, offset, &pos, &h, &found);
        if (rc == 0 && found)
            rc = seg_truncate_at(log, seg, pos);
        if (rc == 0)
            rc = txn_segment_cut(log, seg);
        log->sync_gen++;
    }
    if (rc != 0) {
        log->failed = true;
        return rc;
    }
    seg->sealed = false;
    int64_t leo = log_end(log);
    if (leo < log->log_start_offset) {
        /* The cut took the batch holding the log start: nothing visible is left, so restart
         * at the log start rather than move it backwards. */
        return storage_log_reset(log, log->log_start_offset);
    }
    epochs_truncate_end(log, leo);
    rc = txn_after_truncate(log, leo);
    if (rc != 0) {
        log->failed = true;
        return rc;
    }
    if (log->high_watermark > leo)
        log->high_watermark = leo;
    if (log->recovery_point > leo)
        log->recovery_point = leo;
    if (log->flushed_offset > leo)
        log->flushed_offset = leo;
    /* Make the cut durable before anything new is appended over it: a crash must not bring
     * back a removed segment behind newer data. */
    return storage_log_flush(log, true);
}

int storage_log_advance_start(struct storage_log *log, int64_t offset)
{
    log->sync_gen++;
    if (log->failed)
        return LM_E_STATE;
    if (offset > log->high_watermark)
        return LM_E_OUT_OF_RANGE;
    if (offset <= log->log_start_offset)
        return 0;
    log->log_start_offset = offset;
    int rc = 0;
    while (log->seg_count > 1 && log->segs[1]->base_offset <= offset && rc == 0)
        rc = remove_segment(log, 0);
    epochs_truncate_start(log, offset);
    if (rc != 0)
        return rc;
    return storage_log_flush(log, true);
}

int storage_log_enforce_retention(struct storage_log *log, uint32_t *deleted)
{
    uint32_t n = 0;
    int rc = 0;
    if (log->failed)
        return LM_E_STATE;
    int64_t now = storage_now_ms(log);
    while (log->seg_count > 1 && rc == 0) {
        struct segment *s = log->segs[0];
        bool below_start = log->segs[1]->base_offset <= log->log_start_offset;
        bool committed = s->next_offset <= log->high_watermark;
        bool too_old = log->cfg.retention_ms >= 0 && s->max_timestamp >= 0 &&
                       now - s->max_timestamp > log->cfg.retention_ms;
        bool too_big =
            log->cfg.retention_bytes >= 0 &&
            storage_log_size_bytes(log) - s->size_bytes >= (uint64_t)log->cfg.retention_bytes;
        if (!(below_start || (committed && (too_old || too_big))))
            break;
        rc = remove_segment(log, 0);
        n++;
    }
    if (deleted != NULL)
        *deleted = n;
    if (rc != 0)
        return rc;
    if (n == 0)
        return 0;
    if (log->segs[0]->base_offset > log->log_start_offset)
        log->log_start_offset = log->segs[0]->base_offset;
    epochs_truncate_start(log, log->log_start_offset);
    return storage_log_flush(log, true);
}

/* ---------------------------------------------------------------- timestamps */

/* In the batch at position, the first record whose timestamp is >= ts (exact: == ts). Under
 * LogAppendTime every record carries the batch's maxTimestamp. */
static int batch_find_record(struct storage_log *log, struct segment *seg, uint64_t position,
                             const struct kafka_batch_header *h, int64_t ts, bool exact,
                             int64_t *offset, int64_t *found_ts)
{
    *offset = h->base_offset;
    *found_ts = h->max_timestamp;
    if (h->attributes & KAFKA_BATCH_ATTR_LOG_APPEND_TIME)
        return 0;
    size_t size = kafka_batch_total_size(h);
    uint8_t *buf = malloc(size);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t got = 0;
    while (got < size) {
        ssize_t r = pread(seg->log_fd, buf + got, size - got, (off_t)(position + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return LM_E_IO;
        }
        got += (size_t)r;
    }
    struct kafka_batch_reader rd;
    int rc = kafka_batch_reader_open(&rd, buf, size, STORAGE_TIMESTAMP_SEARCH_MAX_BYTES);
    if (rc == 0) {
        struct kafka_record_iter it;
        struct kafka_record rec;
        kafka_batch_reader_iter(&rd, &it);
        while (kafka_record_iter_next(&it, &rec) == 1) {
            int64_t rts = h->base_timestamp + rec.timestamp_delta;
            if (exact ? rts == ts : rts >= ts) {
                *offset = h->base_offset + rec.offset_delta;
                *found_ts = rts;
                break;
            }
        }
        kafka_batch_reader_close(&rd);
    } else {
        /* A batch we cannot open still answers at batch granularity. */
        storage_report(log, 1, "timestamp search: batch at offset %lld: %s",
                       (long long)h->base_offset, lm_strerror(rc));
    }
    free(buf);
    return rc == LM_E_NOMEM ? rc : 0;
}

int storage_log_offset_for_timestamp(struct storage_log *log, int64_t ts, int64_t *offset,
                                     int64_t *found_ts)
{
    *offset = *found_ts = -1;
    for (uint32_t i = 0; i < log->seg_count; i++) {
        struct segment *seg = log->segs[i];
        if (seg->max_timestamp < ts || seg->next_offset <= log->log_start_offset)
            continue;
        int rc = seg_use(log, seg);
        if (rc != 0)
            return rc;
        /* The last time entry below ts: every record up to its offset is older than ts. */
        int64_t from = seg->base_offset;
        for (uint32_t k = 0; k < seg->times_len && seg->times[k].timestamp < ts; k++)
            from = seg->base_offset + seg->times[k].rel_offset;
        if (from < log->log_start_offset)
            from = log->log_start_offset;
        uint64_t pos;
        struct kafka_batch_header h;
        bool found;
        rc = seg_find_position(log, seg, from, &pos, &h, &found);
        while (rc == 0 && found && pos < seg->size_bytes) {
            rc = seg_read_header(log, seg, pos, &h);
            if (rc != 0)
                break;
            if (h.max_timestamp >= ts && kafka_batch_last_offset(&h) >= log->log_start_offset) {
                rc = batch_find_record(log, seg, pos, &h, ts, false, offset, found_ts);
                if (rc == 0 && *offset < log->log_start_offset)
                    *offset = log->log_start_offset;
                return rc;
            }
            pos += kafka_batch_total_size(&h);
        }
        if (rc != 0)
            return rc;
    }
    return 0;
}

int storage_log_max_timestamp(struct storage_log *log, int64_t *offset, int64_t *ts)
{
    *offset = *ts = -1;
    struct segment *best = NULL;
    for (uint32_t i = 0; i < log->seg_count; i++) {
        struct segment *seg = log->segs[i];
        if (seg->next_offset > log->log_start_offset && seg->max_timestamp >= 0 &&
            (best == NULL || seg->max_timestamp > best->max_timestamp))
            best = seg;
    }
    if (best == NULL)
        return 0;
    int rc = seg_use(log, best);
    if (rc != 0)
        return rc;
    uint64_t pos;
    struct kafka_batch_header h;
    bool found;
    rc = seg_find_position(log, best, best->max_timestamp_offset, &pos, &h, &found);
    if (rc != 0)
        return rc;
    if (!found)
        return LM_E_CORRUPT;
    return batch_find_record(log, best, pos, &h, best->max_timestamp, true, offset, ts);
}

/* storage_log_swap_segment and the rest of compaction: compact.c. */

uint64_t storage_log_shape_gen(const struct storage_log *log)
{
    return log->shape_gen;
}

int64_t storage_log_active_base(const struct storage_log *log)
{
    return log->seg_count > 0 ? log->segs[log->seg_count - 1]->base_offset : log->log_start_offset;
}
