/* One segment: <base>.log with its sparse .index and .timeindex (DESIGN.md §3).
 *
 * Index rule, as Kafka's LogSegment.append: before a batch is recorded, if more than
 * index_interval_bytes have been written since the last entry, the batch gets an offset-index
 * entry {its last offset, its position} and the time index gets {max timestamp so far, its
 * offset} when that timestamp grew. Hence from the last index entry's position to the end of
 * the segment, all batches but the last add up to at most index_interval_bytes: that bound is
 * what a read walks, and what open checks to detect a truncated .index. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "storage/storage_internal.h"

#define SEG_HEADER_READ_BYTES (16 * 1024)

void seg_path(const struct storage_log *log, int64_t base, const char *ext, char *out, size_t cap)
{
    LM_ASSERT(base >= 0);
    int n = snprintf(out, cap, "%s/%020lld%s", log->dir, (long long)base, ext);
    LM_ASSERT(n > 0 && (size_t)n < cap);
}

struct segment *seg_new(int64_t base_offset, int64_t created_ms)
{
    LM_ASSERT(base_offset >= 0);
    struct segment *seg = calloc(1, sizeof(*seg));
    if (seg == NULL)
        return NULL;
    seg->base_offset = base_offset;
    seg->next_offset = base_offset;
    seg->max_timestamp = -1;
    seg->max_timestamp_offset = -1;
    seg->created_ms = created_ms;
    seg->log_fd = seg->index_fd = seg->time_fd = -1;
    seg->txn_fd = -1;
    return seg;
}

void seg_free(struct segment *seg)
{
    if (seg == NULL)
        return;
    LM_ASSERT(seg->log_fd < 0 && !seg->loaded && seg->pins == 0);
    txn_segment_free(seg);
    free(seg->index);
    free(seg->times);
    free(seg);
}

static void scan_cache_drop(struct storage_log *log)
{
    log->scan_buf_fd = -1;
    log->scan_buf_len = 0;
}

static int read_whole(int fd, uint8_t **out, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return LM_E_IO;
    size_t n = (size_t)st.st_size;
    *out = NULL;
    *len = 0;
    if (n == 0)
        return 0;
    uint8_t *buf = malloc(n);
    if (buf == NULL)
        return LM_E_NOMEM;
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, buf + got, n - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            free(buf);
            return LM_E_IO;
        }
        got += (size_t)r;
    }
    *out = buf;
    *len = n;
    return 0;
}

static int index_reserve(struct segment *seg, uint32_t need)
{
    if (need <= seg->index_cap)
        return 0;
    uint32_t cap = seg->index_cap ? seg->index_cap : 64;
    while (cap < need)
        cap *= 2;
    void *p = realloc(seg->index, (size_t)cap * sizeof(*seg->index));
    if (p == NULL)
        return LM_E_NOMEM;
    seg->index = p;
    seg->index_cap = cap;
    return 0;
}

static int times_reserve(struct segment *seg, uint32_t need)
{
    if (need <= seg->times_cap)
        return 0;
    uint32_t cap = seg->times_cap ? seg->times_cap : 64;
    while (cap < need)
        cap *= 2;
    void *p = realloc(seg->times, (size_t)cap * sizeof(*seg->times));
    if (p == NULL)
        return LM_E_NOMEM;
    seg->times = p;
    seg->times_cap = cap;
    return 0;
}

/* Loads the index files into memory as they are; *ok is false when their sizes are not whole
 * entries (a torn or truncated file). Structural checks against the log come in seg_load. */
static int seg_read_indexes(struct segment *seg, bool *ok)
{
    uint8_t *buf;
    size_t len;
    *ok = true;
    int rc = read_whole(seg->index_fd, &buf, &len);
    if (rc != 0)
        return rc;
    if (len % SEG_INDEX_ENTRY_BYTES != 0)
        *ok = false;
    uint32_t n = (uint32_t)(len / SEG_INDEX_ENTRY_BYTES);
    rc = index_reserve(seg, n);
    if (rc == 0) {
        for (uint32_t i = 0; i < n; i++) {
            seg->index[i].rel_offset = lm_get_be32(buf + (size_t)i * SEG_INDEX_ENTRY_BYTES);
            seg->index[i].position = lm_get_be32(buf + (size_t)i * SEG_INDEX_ENTRY_BYTES + 4);
        }
        seg->index_len = seg->index_written = n;
    }
    free(buf);
    if (rc != 0)
        return rc;
    rc = read_whole(seg->time_fd, &buf, &len);
    if (rc != 0)
        return rc;
    if (len % SEG_TIME_ENTRY_BYTES != 0)
        *ok = false;
    n = (uint32_t)(len / SEG_TIME_ENTRY_BYTES);
    rc = times_reserve(seg, n);
    if (rc == 0) {
        for (uint32_t i = 0; i < n; i++) {
            const uint8_t *p = buf + (size_t)i * SEG_TIME_ENTRY_BYTES;
            seg->times[i].timestamp = (int64_t)lm_get_be64(p);
            seg->times[i].rel_offset = lm_get_be32(p + 8);
        }
        seg->times_len = seg->times_written = n;
    }
    free(buf);
    return rc;
}

/* Opens an index file, creating it when missing; *missing notes that it had to be created for
 * an existing segment (it must then be rebuilt, never trusted empty). */
static int open_index(const char *path, bool create, bool *missing)
{
    if (create)
        return open(path, O_RDWR | O_CLOEXEC | O_CREAT | O_TRUNC, 0644);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        *missing = true;
        fd = open(path, O_RDWR | O_CLOEXEC | O_CREAT, 0644);
    }
    return fd;
}

int seg_open(struct storage_log *log, struct segment *seg, bool create)
{
    LM_ASSERT(seg->log_fd < 0 && !seg->loaded && !seg->zombie);
    char path[PATH_MAX];
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
    seg_path(log, seg->base_offset, ".log", path, sizeof(path));
    seg->log_fd = open(path, flags, 0644);
    if (seg->log_fd < 0 && create && errno == EEXIST) {
        /* A leftover empty file of an earlier incarnation of this base offset (a reset). */
        seg->log_fd = open(path, O_RDWR | O_CLOEXEC | O_TRUNC, 0644);
    }
    /* A file that cannot be created on a full disk (a segment roll, a missing index made
     * again) is LM_E_FULL, as a write refused for want of space: nothing was written, and the
     * owner reopens the log once there is room (the controller's metadata log reopens only
     * then; as LM_E_IO it stayed failed until a restart). */
    if (seg->log_fd < 0) {
        int err = errno;
        storage_report_open_failed(log, path);
        return err == ENOSPC || err == EDQUOT ? LM_E_FULL : LM_E_IO;
    }
    int index_err = 0;
    seg_path(log, seg->base_offset, ".index", path, sizeof(path));
    seg->index_fd = open_index(path, create, &seg->index_missing);
    if (seg->index_fd < 0) {
        index_err = errno;
        storage_report_open_failed(log, path);
    }
    seg_path(log, seg->base_offset, ".timeindex", path, sizeof(path));
    seg->time_fd = open_index(path, create, &seg->index_missing);
    if (seg->time_fd < 0) {
        if (index_err == 0)
            index_err = errno;
        storage_report_open_failed(log, path);
    }
    storage_fds_reopened(log);
    seg->loaded = true;
    log->open_count++;
    seg->lru_tick = ++log->lru_clock;
    if (seg->index_fd < 0 || seg->time_fd < 0) {
        seg_close(log, seg);
        return index_err == ENOSPC || index_err == EDQUOT ? LM_E_FULL : LM_E_IO;
    }
    if (create) {
        /* a .txnindex left by an earlier incarnation of this base (its unlink cut short) would
         * be read as this segment's at the next open */
        seg_path(log, seg->base_offset, ".txnindex", path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT) {
            seg_close(log, seg);
            return LM_E_IO;
        }
        log->dir_dirty = true;
        log->dir_changes++;
        seg_index_release(seg);
        return 0;
    }
    bool ok;
    int rc = seg_read_indexes(seg, &ok);
    if (rc != 0) {
        seg_close(log, seg);
        return rc;
    }
    seg->index_torn = !ok;
    seg_index_release(seg);
    return 0;
}

int seg_fd(struct storage_log *log, struct segment *seg)
{
    LM_ASSERT(seg->loaded && !seg->zombie);
    if (seg->log_fd >= 0)
        return 0;
    /* Released by storage_log_release_fds: the same file by its name (a zombie is never
     * released, since release waits for pins, so the name is still this segment's). No
     * O_APPEND anywhere: appends are pwrite()s at seg->size_bytes, the write position lives
     * in memory. Bytes written through the closed fd and not yet synced are the file's dirty
     * pages, which an fdatasync through this one writes back (data_dirty stayed set). */
    char path[PATH_MAX];
    seg_path(log, seg->base_offset, ".log", path, sizeof(path));
    seg->log_fd = open(path, O_RDWR | O_CLOEXEC);
    if (seg->log_fd < 0) {
        storage_report_open_failed(log, path);
        return LM_E_IO;
    }
    storage_fds_reopened(log);
    return 0;
}

int seg_index_open(struct storage_log *log, struct segment *seg)
{
    if (seg->index_fd >= 0 && seg->time_fd >= 0)
        return 0;
    LM_ASSERT(seg->index_fd < 0 && seg->time_fd < 0);
    char path[PATH_MAX];
    seg_path(log, seg->base_offset, ".index", path, sizeof(path));
    seg->index_fd = open(path, O_RDWR | O_CLOEXEC);
    if (seg->index_fd < 0)
        storage_report_open_failed(log, path);
    seg_path(log, seg->base_offset, ".timeindex", path, sizeof(path));
    seg->time_fd = open(path, O_RDWR | O_CLOEXEC);
    if (seg->time_fd < 0)
        storage_report_open_failed(log, path);
    if (seg->index_fd >= 0 && seg->time_fd >= 0)
        return 0;
    if (seg->index_fd >= 0)
        close(seg->index_fd);
    if (seg->time_fd >= 0)
        close(seg->time_fd);
    seg->index_fd = seg->time_fd = -1;
    return LM_E_IO;
}

void seg_index_release(struct segment *seg)
{
    if (seg->index_pinned)
        return; /* a running sync step fdatasyncs them */
    if (seg->index_fd >= 0)
        close(seg->index_fd);
    if (seg->time_fd >= 0)
        close(seg->time_fd);
    seg->index_fd = seg->time_fd = -1;
}

int seg_write_pending_index(struct storage_log *log, struct segment *seg)
{
    LM_ASSERT(seg->loaded);
    LM_ASSERT(seg->index_written <= seg->index_len && seg->times_written <= seg->times_len);
    if (seg->index_written == seg->index_len && seg->times_written == seg->times_len)
        return 0;
    int orc = seg_index_open(log, seg);
    if (orc != 0)
        return orc;
    uint8_t buf[SEG_INDEX_PENDING_MAX * SEG_TIME_ENTRY_BYTES];
    while (seg->index_written < seg->index_len) {
        uint32_t n = seg->index_len - seg->index_written;
        if (n > SEG_INDEX_PENDING_MAX)
            n = SEG_INDEX_PENDING_MAX;
        for (uint32_t i = 0; i < n; i++) {
            const struct seg_index_entry *e = &seg->index[seg->index_written + i];
            lm_put_be32(buf + i * SEG_INDEX_ENTRY_BYTES, e->rel_offset);
            lm_put_be32(buf + i * SEG_INDEX_ENTRY_BYTES + 4, e->position);
        }
        struct iovec iov = {buf, (size_t)n * SEG_INDEX_ENTRY_BYTES};
        int rc = log->io->pwritev_all(log->io->ctx, seg->index_fd, &iov, 1,
                                      (uint64_t)seg->index_written * SEG_INDEX_ENTRY_BYTES);
        if (rc != 0) {
            seg_index_release(seg);
            return rc;
        }
        seg->index_written += n;
        seg->index_dirty = true;
    }
    while (seg->times_written < seg->times_len) {
        uint32_t n = seg->times_len - seg->times_written;
        if (n > SEG_INDEX_PENDING_MAX)
            n = SEG_INDEX_PENDING_MAX;
        for (uint32_t i = 0; i < n; i++) {
            const struct seg_time_entry *e = &seg->times[seg->times_written + i];
            lm_put_be64(buf + i * SEG_TIME_ENTRY_BYTES, (uint64_t)e->timestamp);
            lm_put_be32(buf + i * SEG_TIME_ENTRY_BYTES + 8, e->rel_offset);
        }
        struct iovec iov = {buf, (size_t)n * SEG_TIME_ENTRY_BYTES};
        int rc = log->io->pwritev_all(log->io->ctx, seg->time_fd, &iov, 1,
                                      (uint64_t)seg->times_written * SEG_TIME_ENTRY_BYTES);
        if (rc != 0) {
            seg_index_release(seg);
            return rc;
        }
        seg->times_written += n;
        seg->index_dirty = true;
    }
    /* The bytes wait in the page cache for the index step of a sync, which reopens the
     * files to fdatasync them (index_dirty). */
    seg_index_release(seg);
    return 0;
}

int seg_close(struct storage_log *log, struct segment *seg)
{
    txn_segment_close(log, seg, !seg->zombie);
    if (!seg->loaded) {
        LM_ASSERT(seg->log_fd < 0 && seg->index_fd < 0 && seg->time_fd < 0);
        return 0;
    }
    int rc = 0;
    if (!seg->zombie) {
        rc = seg_write_pending_index(log, seg);
        /* Closing drops the chance to fdatasync later, so make the bytes durable now. */
        if (rc == 0 && seg->index_dirty)
            rc = seg_index_open(log, seg);
        if (rc == 0 && seg->index_dirty) {
            int fds[2] = {seg->index_fd, seg->time_fd};
            rc = log->io->sync(log->io->ctx, fds, 2);
            seg->index_dirty = rc != 0;
        }
        if (rc == 0 && seg->data_dirty)
            rc = seg_fd(log, seg); /* released: its dirty pages are the file's */
        if (rc == 0 && seg->data_dirty) {
            rc = log->io->sync(log->io->ctx, &seg->log_fd, 1);
            seg->data_dirty = rc != 0;
        }
    }
    if (seg->log_fd >= 0 && log->scan_buf_fd == seg->log_fd)
        scan_cache_drop(log);
    if (seg->log_fd >= 0)
        close(seg->log_fd);
    if (seg->index_fd >= 0)
        close(seg->index_fd);
    if (seg->time_fd >= 0)
        close(seg->time_fd);
    seg->log_fd = seg->index_fd = seg->time_fd = -1;
    free(seg->index);
    free(seg->times);
    seg->index = NULL;
    seg->times = NULL;
    seg->index_len = seg->index_cap = seg->index_written = 0;
    seg->times_len = seg->times_cap = seg->times_written = 0;
    LM_ASSERT(log->open_count > 0);
    log->open_count--;
    seg->loaded = false;
    return rc;
}

int seg_unlink_files(struct storage_log *log, int64_t base)
{
    static const char *const exts[] = {".log", ".index", ".timeindex", ".txnindex"};
    int rc = 0;
    for (size_t i = 0; i < LM_ARRAY_LEN(exts); i++) {
        char path[PATH_MAX];
        seg_path(log, base, exts[i], path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT)
            rc = LM_E_IO;
    }
    log->dir_dirty = true;
    log->dir_changes++;
    return rc;
}

int seg_note_batch(struct storage_log *log, struct segment *seg, const struct kafka_batch_header *h,
                   uint64_t position)
{
    LM_ASSERT(h->base_offset >= seg->next_offset);
    LM_ASSERT(position == seg->size_bytes);
    int64_t last = kafka_batch_last_offset(h);
    LM_ASSERT(last - seg->base_offset <= SEG_REL_OFFSET_MAX);
    uint64_t size = kafka_batch_total_size(h);
    if (h->max_timestamp > seg->max_timestamp) {
        seg->max_timestamp = h->max_timestamp;
        seg->max_timestamp_offset = last;
    }
    if (seg->bytes_since_index > log->cfg.index_interval_bytes) {
        int rc = index_reserve(seg, seg->index_len + 1);
        if (rc != 0)
            return rc;
        seg->index[seg->index_len++] = (struct seg_index_entry){
            .rel_offset = (uint32_t)(last - seg->base_offset), .position = (uint32_t)position};
        if (seg->max_timestamp >= 0 &&
            (seg->times_len == 0 ||
             seg->max_timestamp > seg->times[seg->times_len - 1].timestamp)) {
            rc = times_reserve(seg, seg->times_len + 1);
            if (rc != 0)
                return rc;
            seg->times[seg->times_len++] = (struct seg_time_entry){
                .timestamp = seg->max_timestamp,
                .rel_offset = (uint32_t)(seg->max_timestamp_offset - seg->base_offset)};
        }
        seg->bytes_since_index = 0;
        if (seg->index_len - seg->index_written >= SEG_INDEX_PENDING_MAX) {
            rc = seg_write_pending_index(log, seg);
            if (rc != 0)
                return rc;
        }
    }
    seg->bytes_since_index += size;
    seg->size_bytes = position + size;
    seg->next_offset = last + 1;
    return 0;
}

int seg_seal(struct storage_log *log, struct segment *seg)
{
    LM_ASSERT(!seg->sealed && seg->loaded);
    if (seg->max_timestamp >= 0 &&
        (seg->times_len == 0 || seg->max_timestamp > seg->times[seg->times_len - 1].timestamp)) {
        int rc = times_reserve(seg, seg->times_len + 1);
        if (rc != 0)
            return rc;
        seg->times[seg->times_len++] = (struct seg_time_entry){
            .timestamp = seg->max_timestamp,
            .rel_offset = (uint32_t)(seg->max_timestamp_offset - seg->base_offset)};
    }
    seg->sealed = true;
    return seg_write_pending_index(log, seg);
}

/* pread() retried on EINTR: bytes read, 0 at the end, -1 on an error. */
static ssize_t pread_eintr(int fd, void *buf, size_t n, uint64_t at)
{
    ssize_t r;
    do {
        r = pread(fd, buf, n, (off_t)at);
    } while (r < 0 && errno == EINTR);
    return r;
}

/* Whether p[0..n) are all zero bytes (preallocated zeros, storage.h). */
static bool all_zero(const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i] != 0)
            return false;
    return true;
}

/* At least `need` (<= KAFKA_BATCH_HEADER_SIZE) bytes at position, through the header cache. */
static int seg_header_bytes(struct storage_log *log, struct segment *seg, uint64_t position,
                            size_t need, const uint8_t **out)
{
    LM_ASSERT(seg->log_fd >= 0 && need <= KAFKA_BATCH_HEADER_SIZE);
    if (position + need > seg->size_bytes)
        return LM_E_TRUNCATED;
    bool cached = log->scan_buf_fd == seg->log_fd && position >= log->scan_buf_pos &&
                  position + need <= log->scan_buf_pos + log->scan_buf_len;
    if (!cached) {
        uint64_t want = seg->size_bytes - position;
        if (want > SEG_HEADER_READ_BYTES)
            want = SEG_HEADER_READ_BYTES;
        ssize_t r = pread_eintr(seg->log_fd, log->scan_buf, want, position);
        if (r < 0)
            return LM_E_IO;
        if ((size_t)r < need)
            return LM_E_TRUNCATED;
        log->scan_buf_fd = seg->log_fd;
        log->scan_buf_pos = position;
        log->scan_buf_len = (size_t)r;
    }
    *out = log->scan_buf + (position - log->scan_buf_pos);
    return 0;
}

/* Preallocated zeros (storage.h): a batch's base offset and length all zero. */
#define ZERO_START_BYTES 12
static bool zero_batch_start(const uint8_t *p)
{
    return all_zero(p, ZERO_START_BYTES);
}

int seg_read_header(struct storage_log *log, struct segment *seg, uint64_t position,
                    struct kafka_batch_header *h)
{
    const uint8_t *p;
    int rc = seg_header_bytes(log, seg, position, KAFKA_BATCH_HEADER_SIZE, &p);
    if (rc != 0)
        return rc;
    rc = kafka_batch_header_parse(p, KAFKA_BATCH_HEADER_SIZE, h);
    if (rc != 0)
        return rc;
    if (position + kafka_batch_total_size(h) > seg->size_bytes)
        return LM_E_TRUNCATED;
    return 0;
}

/* Whether every byte of seg's file from pos to its end is zero (its preallocated tail). */
static int seg_zero_from(struct storage_log *log, struct segment *seg, uint64_t pos, bool *zero)
{
    scan_cache_drop(log);
    *zero = true;
    ssize_t r = 0;
    while (*zero &&
           (r = pread_eintr(seg->log_fd, log->scan_buf, STORAGE_SCAN_BUF_BYTES, pos)) > 0) {
        *zero = all_zero(log->scan_buf, (size_t)r);
        pos += (uint64_t)r;
    }
    return *zero && r < 0 ? LM_E_IO : 0;
}

static const uint8_t prealloc_zeros[64 * 1024];

void seg_preallocate(struct storage_log *log, struct segment *seg)
{
    uint64_t max = log->cfg.preallocate_bytes;
    if (max == 0 || seg->sealed || seg->log_fd < 0)
        return;
    uint64_t end = seg->size_bytes;
    if (seg->file_bytes < end)
        seg->file_bytes = end;
    /* The step grows with the segment, so a small log gets few zeros: at most as many as it
     * has bytes (and one page), at most preallocate_bytes. */
    uint64_t step = end < max ? end : max;
    if (step < 4096)
        step = 4096;
    if (seg->file_bytes - end >= step / 2)
        return;
    uint64_t target = (end + step + 4095) & ~(uint64_t)4095;
    if (target > log->cfg.segment_bytes)
        target = log->cfg.segment_bytes;
    while (seg->file_bytes < target) {
        uint64_t n = target - seg->file_bytes;
        if (n > sizeof(prealloc_zeros))
            n = sizeof(prealloc_zeros);
        ssize_t w = pwrite(seg->log_fd, prealloc_zeros, (size_t)n, (off_t)seg->file_bytes);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return; /* a full disk: the appends find their own room, or report it */
        seg->file_bytes += (uint64_t)w;
    }
}

int seg_cut_preallocated(struct storage_log *log, struct segment *seg)
{
    if (seg->file_bytes <= seg->size_bytes)
        return 0;
    int rc = seg_fd(log, seg);
    if (rc != 0)
        return rc;
    scan_cache_drop(log);
    if (ftruncate(seg->log_fd, (off_t)seg->size_bytes) != 0)
        return LM_E_IO;
    seg->file_bytes = seg->size_bytes;
    seg->data_dirty = true; /* its new size goes to disk with the next flush */
    return 0;
}

int seg_find_position(struct storage_log *log, struct segment *seg, int64_t offset,
                      uint64_t *position, struct kafka_batch_header *h, bool *found)
{
    LM_ASSERT(seg->log_fd >= 0);
    *found = false;
    uint64_t pos = 0;
    if (offset > seg->base_offset) {
        /* Largest entry whose batch ends at or before offset: the batch holding offset starts
         * at or after its position. */
        uint64_t rel = (uint64_t)(offset - seg->base_offset);
        uint32_t lo = 0, hi = seg->index_len;
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            if (seg->index[mid].rel_offset <= rel)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo > 0)
            pos = seg->index[lo - 1].position;
    }
    /* Bounded: from that entry to the batch holding offset is at most one index interval
     * plus one batch, unless the index is damaged (then the loop still ends at the file end). */
    while (pos < seg->size_bytes) {
        int rc = seg_read_header(log, seg, pos, h);
        if (rc != 0)
            return rc;
        if (kafka_batch_last_offset(h) >= offset) {
            *found = true;
            break;
        }
        pos += kafka_batch_total_size(h);
    }
    *position = pos;
    return 0;
}

struct walk {
    bool zero_end;      /* stopped at preallocated zeros (a zero batch start) before the end */
    int64_t first_last; /* last offset of the first batch walked, -1 if none */
    uint64_t end_pos;
    uint64_t last_size;
    uint64_t bytes;
    int64_t next_offset;
};

/* Walks batch headers (no CRC: this region is trusted) from pos until the end of the segment or,
 * when stop_base >= 0, until the batch starting at stop_base. Updates the segment's next
 * offset and max timestamp. Fails on any header that does not continue the previous batch. */
static int seg_walk(struct storage_log *log, struct segment *seg, uint64_t pos, int64_t stop_base,
                    struct walk *w)
{
    w->zero_end = false;
    w->first_last = -1;
    w->end_pos = pos;
    w->last_size = 0;
    w->bytes = 0;
    w->next_offset = seg->next_offset;
    while (pos < seg->size_bytes) {
        /* Stop before reading the batch at stop_base: it is past the trusted region and may be
         * torn, which the CRC scan that follows will find. */
        if (stop_base >= 0 && w->bytes > 0 && w->next_offset == stop_base)
            break;
        const uint8_t *raw;
        int rc = seg_header_bytes(log, seg, pos, ZERO_START_BYTES, &raw);
        if (rc == LM_E_IO)
            return rc;
        bool zero = rc == 0 && zero_batch_start(raw);
        if (rc == LM_E_TRUNCATED && (rc = seg_zero_from(log, seg, pos, &zero)) != 0)
            return rc; /* fewer bytes left than a batch start: zeros, or a partial header */
        if (zero) {
            w->zero_end = true;
            break;
        }
        struct kafka_batch_header h;
        rc = seg_read_header(log, seg, pos, &h);
        if (rc != 0)
            return rc;
        if (stop_base >= 0 && h.base_offset >= stop_base)
            return LM_E_CORRUPT; /* the trusted region does not end at stop_base */
        if (h.last_offset_delta < 0 ||
            kafka_batch_last_offset(&h) - seg->base_offset > SEG_REL_OFFSET_MAX)
            return LM_E_CORRUPT;
        /* Compacted segments (below the cleaned offset) have gaps between batches. */
        if (w->bytes > 0 &&
            (seg->compacted ? h.base_offset < w->next_offset : h.base_offset != w->next_offset))
            return LM_E_SEQUENCE;
        if (w->bytes == 0 && h.base_offset < seg->base_offset)
            return LM_E_SEQUENCE;
        uint64_t size = kafka_batch_total_size(&h);
        if (h.max_timestamp > seg->max_timestamp) {
            seg->max_timestamp = h.max_timestamp;
            seg->max_timestamp_offset = kafka_batch_last_offset(&h);
        }
        if (w->bytes == 0)
            w->first_last = kafka_batch_last_offset(&h);
        w->next_offset = kafka_batch_last_offset(&h) + 1;
        w->last_size = size;
        w->bytes += size;
        pos += size;
        w->end_pos = pos;
    }
    /* Reaching the end (or preallocated zeros) is fine when the stop point is exactly there. */
    if (stop_base >= 0 && (w->zero_end || pos >= seg->size_bytes) && w->next_offset != stop_base)
        return LM_E_NOT_FOUND;
    seg->next_offset = w->next_offset;
    return 0;
}

static void seg_drop_index_from(struct segment *seg, uint32_t keep_index, uint32_t keep_times)
{
    LM_ASSERT(keep_index <= seg->index_len && keep_times <= seg->times_len);
    seg->index_len = keep_index;
    if (seg->index_written > keep_index)
        seg->index_written = keep_index;
    seg->times_len = keep_times;
    if (seg->times_written > keep_times)
        seg->times_written = keep_times;
}

/* Cuts the index files to what is written of the in-memory arrays. */
static int seg_trim_index_files(struct storage_log *log, struct segment *seg)
{
    int rc = seg_index_open(log, seg);
    if (rc != 0)
        return rc;
    off_t index_size = (off_t)seg->index_written * SEG_INDEX_ENTRY_BYTES;
    off_t time_size = (off_t)seg->times_written * SEG_TIME_ENTRY_BYTES;
    struct stat ist, tst;
    if (fstat(seg->index_fd, &ist) != 0 || fstat(seg->time_fd, &tst) != 0) {
        seg_index_release(seg);
        return LM_E_IO;
    }
    if (ist.st_size != index_size || tst.st_size != time_size) {
        if (ftruncate(seg->index_fd, index_size) != 0 || ftruncate(seg->time_fd, time_size) != 0)
            rc = LM_E_IO;
        else
            seg->index_dirty = true;
    }
    seg_index_release(seg);
    return rc;
}

/* Structural check of the loaded indexes against the segment file. */
static bool seg_indexes_sane(const struct segment *seg)
{
    for (uint32_t i = 0; i < seg->index_len; i++) {
        const struct seg_index_entry *e = &seg->index[i];
        if (e->rel_offset > SEG_REL_OFFSET_MAX || e->position >= seg->size_bytes)
            return false;
        if (i > 0 && (e->rel_offset <= seg->index[i - 1].rel_offset ||
                      e->position <= seg->index[i - 1].position))
            return false;
    }
    for (uint32_t i = 0; i < seg->times_len; i++) {
        const struct seg_time_entry *e = &seg->times[i];
        if (e->rel_offset > SEG_REL_OFFSET_MAX)
            return false;
        if (i > 0 && (e->timestamp <= seg->times[i - 1].timestamp ||
                      e->rel_offset < seg->times[i - 1].rel_offset))
            return false;
    }
    return true;
}

/* Resets metadata to "nothing indexed" and the state after the entries kept, before a walk or
 * a scan continues from the last kept index entry. */
static uint64_t seg_reset_meta_to_index(struct segment *seg)
{
    seg->max_timestamp = -1;
    seg->max_timestamp_offset = -1;
    if (seg->times_len > 0) {
        seg->max_timestamp = seg->times[seg->times_len - 1].timestamp;
        seg->max_timestamp_offset = seg->base_offset + seg->times[seg->times_len - 1].rel_offset;
    }
    seg->next_offset = seg->base_offset;
    uint64_t pos = 0;
    if (seg->index_len > 0) {
        const struct seg_index_entry *e = &seg->index[seg->index_len - 1];
        pos = e->position;
        /* The batch at e->position starts right after the batch before it; its own base is
         * unknown until read, so the walk accepts any base >= the segment base first. */
    }
    return pos;
}

/* CRC-checked scan from pos (a batch boundary whose metadata is already in seg) to the end of
 * the file; truncates the file at the first batch that is partial, malformed, fails its CRC or
 * does not continue the offsets. */
static int seg_scan_recover(struct storage_log *log, struct segment *seg, uint64_t pos,
                            bool *truncated)
{
    struct stat st;
    if (fstat(seg->log_fd, &st) != 0)
        return LM_E_IO;
    uint64_t file_size = (uint64_t)st.st_size;
    LM_ASSERT(pos <= file_size);
    seg->size_bytes = pos;
    const uint8_t *map = NULL;
    if (file_size > 0) {
        map = mmap(NULL, file_size, PROT_READ, MAP_SHARED, seg->log_fd, 0);
        if (map == MAP_FAILED)
            return LM_E_IO;
    }
    int rc = 0;
    const char *why = NULL;
    int32_t prev_epoch = -1;
    bool first = seg->next_offset == seg->base_offset;
    bool zero_tail = false;
    while (pos < file_size) {
        struct kafka_batch_header h;
        uint64_t left = file_size - pos;
        if (left < ZERO_START_BYTES || zero_batch_start(map + pos)) {
            /* preallocated zeros (storage.h), or a torn write's tail that reads as zeros */
            zero_tail = all_zero(map + pos, (size_t)left);
            why = left < ZERO_START_BYTES ? "partial batch header" : "zeros after the last batch";
            break;
        }
        if (left < KAFKA_BATCH_HEADER_SIZE) {
            why = "partial batch header";
            break;
        }
        int prc = kafka_batch_header_parse(map + pos, (size_t)left, &h);
        if (prc != 0) {
            why = lm_strerror(prc);
            break;
        }
        if (kafka_batch_total_size(&h) > left) {
            why = "partial batch";
            break;
        }
        /* The base offset is outside the CRC, so continuity is what protects it; a compacted
         * segment only keeps offsets increasing (batches removed whole leave gaps). */
        bool cont =
            seg->compacted ? h.base_offset >= seg->next_offset : h.base_offset == seg->next_offset;
        if (first ? h.base_offset < seg->base_offset : !cont) {
            why = "offsets do not continue";
            break;
        }
        if (h.last_offset_delta < 0 || h.records_count < 0 ||
            kafka_batch_last_offset(&h) - seg->base_offset > SEG_REL_OFFSET_MAX) {
            why = "bad offset delta or record count";
            break;
        }
        if (!kafka_batch_crc_ok(map + pos, &h)) {
            why = "CRC-32C mismatch";
            break;
        }
        if (h.partition_leader_epoch < prev_epoch) {
            why = "leader epoch goes backwards";
            break;
        }
        /* The epoch is outside the CRC: with the leader-epoch file at hand (written before any
         * batch of a new epoch) the batch must carry the epoch it names for this offset; a
         * damaged one would otherwise become the log's latest epoch. Without the file the
         * epochs are learnt from the batches. */
        if (log->epochs_check &&
            !storage_epoch_matches(log, h.partition_leader_epoch, h.base_offset)) {
            why = "leader epoch not the one in the leader-epoch checkpoint";
            break;
        }
        prev_epoch = h.partition_leader_epoch;
        rc = seg_note_batch(log, seg, &h, pos);
        if (rc == 0 && !log->epochs_check)
            rc = storage_epoch_observe(log, h.partition_leader_epoch, h.base_offset);
        if (rc != 0)
            break;
        first = false;
        pos += kafka_batch_total_size(&h);
    }
    if (map != NULL)
        munmap((void *)map, file_size);
    if (rc != 0)
        return rc;
    /* Only zeros after the last batch: the preallocated tail, cut quietly. */
    if (zero_tail) {
        storage_report(log, 0, "segment %020lld: cutting %llu preallocated bytes",
                       (long long)seg->base_offset, (unsigned long long)(file_size - pos));
        scan_cache_drop(log);
        if (ftruncate(seg->log_fd, (off_t)pos) != 0)
            return LM_E_IO;
        seg->data_dirty = true;
        file_size = pos;
    }
    *truncated = pos < file_size;
    if (*truncated) {
        storage_report(log, 1,
                       "segment %020lld: %s at position %llu; truncated %llu bytes, log now ends "
                       "at offset %lld",
                       (long long)seg->base_offset, why, (unsigned long long)pos,
                       (unsigned long long)(file_size - pos), (long long)seg->next_offset);
        scan_cache_drop(log);
        if (ftruncate(seg->log_fd, (off_t)pos) != 0)
            return LM_E_IO;
        seg->data_dirty = true;
    }
    seg->size_bytes = pos;
    return 0;
}

static int seg_rebuild(struct storage_log *log, struct segment *seg, bool *truncated,
                       const char *why)
{
    storage_report(log, 1, "segment %020lld: rebuilding indexes (%s)", (long long)seg->base_offset,
                   why);
    seg_drop_index_from(seg, 0, 0);
    seg->max_timestamp = seg->max_timestamp_offset = -1;
    seg->next_offset = seg->base_offset;
    seg->bytes_since_index = 0;
    int rc = seg_trim_index_files(log, seg);
    if (rc != 0)
        return rc;
    return seg_scan_recover(log, seg, 0, truncated);
}

static int seg_load_(struct storage_log *log, struct segment *seg, int64_t recover_from,
                     bool *truncated);

int seg_load(struct storage_log *log, struct segment *seg, int64_t recover_from, bool *truncated)
{
    int rc = seg_load_(log, seg, recover_from, truncated);
    seg->file_bytes = seg->size_bytes; /* every path ends with the file cut to its batches */
    return rc;
}

static int seg_load_(struct storage_log *log, struct segment *seg, int64_t recover_from,
                     bool *truncated)
{
    LM_ASSERT(seg->log_fd >= 0);
    *truncated = false;
    struct stat st;
    if (fstat(seg->log_fd, &st) != 0)
        return LM_E_IO;
    seg->size_bytes = (uint64_t)st.st_size;
    bool whole = !seg->index_torn; /* as seg_open found the index files */
    bool sane = whole && seg_indexes_sane(seg);
    bool missing = seg->index_missing;
    seg->index_missing = false;
    if (recover_from <= seg->base_offset) {
        /* Nothing of this segment is covered by the checkpoint: scan it all. */
        seg_drop_index_from(seg, 0, 0);
        seg->next_offset = seg->base_offset;
        seg->bytes_since_index = 0;
        int rc = seg_trim_index_files(log, seg);
        return rc != 0 ? rc : seg_scan_recover(log, seg, 0, truncated);
    }
    if (missing)
        return seg_rebuild(log, seg, truncated, "index file missing");
    if (recover_from == INT64_MAX && !sane)
        return seg_rebuild(log, seg, truncated,
                           whole ? "entries out of order or past the end" : "torn index file");
    if (recover_from == INT64_MAX) {
        /* Trusted: check the tail after the last index entry against the index rule, which a
         * truncated .index breaks; a mismatch means the index cannot be trusted. */
        uint64_t pos = seg_reset_meta_to_index(seg);
        struct walk w;
        int rc = seg_walk(log, seg, pos, -1, &w);
        if (rc == LM_E_IO || rc == LM_E_NOMEM)
            return rc;
        if (rc != 0)
            return seg_rebuild(log, seg, truncated, "log does not match the index");
        if (w.zero_end) {
            /* A sealed segment whose cut (seg_cut_preallocated) a crash undid: zeros only
             * after its last batch, or it is damaged. */
            bool zero;
            rc = seg_zero_from(log, seg, w.end_pos, &zero);
            if (rc != 0)
                return rc;
            if (!zero)
                return seg_rebuild(log, seg, truncated, "zeros inside the log");
            storage_report(log, 0, "segment %020lld: cutting %llu preallocated bytes",
                           (long long)seg->base_offset,
                           (unsigned long long)(seg->size_bytes - w.end_pos));
            if (ftruncate(seg->log_fd, (off_t)w.end_pos) != 0)
                return LM_E_IO;
            seg->size_bytes = w.end_pos;
            seg->data_dirty = true;
        }
        if (w.end_pos != seg->size_bytes || w.bytes - w.last_size > log->cfg.index_interval_bytes)
            return seg_rebuild(log, seg, truncated, "index shorter than the log");
        if (seg->index_len > 0 &&
            w.first_last != seg->base_offset + seg->index[seg->index_len - 1].rel_offset)
            return seg_rebuild(log, seg, truncated, "last index entry does not match the log");
        seg->bytes_since_index = w.bytes;
        return 0;
    }
    /* The checkpoint's recovery point lies in this segment: keep index entries below it, walk
     * to it, and scan with CRC from there. */
    uint32_t keep = 0, keep_t = 0;
    while (keep < seg->index_len &&
           seg->base_offset + (int64_t)seg->index[keep].rel_offset < recover_from)
        keep++;
    while (keep_t < seg->times_len &&
           seg->base_offset + (int64_t)seg->times[keep_t].rel_offset < recover_from)
        keep_t++;
    seg_drop_index_from(seg, keep, keep_t);
    int rc = seg_trim_index_files(log, seg);
    if (rc != 0)
        return rc;
    /* Entries past the recovery point may describe bytes a crash took; only the kept ones
     * must make sense. */
    if (!seg_indexes_sane(seg))
        return seg_rebuild(log, seg, truncated, "entries out of order or past the end");
    uint64_t pos = seg_reset_meta_to_index(seg);
    struct walk w;
    rc = seg_walk(log, seg, pos, recover_from, &w);
    if (rc == LM_E_IO || rc == LM_E_NOMEM)
        return rc;
    if (rc != 0)
        return seg_rebuild(log, seg, truncated, "recovery point not at a batch boundary");
    seg->bytes_since_index = w.bytes;
    return seg_scan_recover(log, seg, w.end_pos, truncated);
}

int seg_truncate_at(struct storage_log *log, struct segment *seg, uint64_t position)
{
    LM_ASSERT(seg->log_fd >= 0 && position <= seg->size_bytes);
    scan_cache_drop(log);
    if (ftruncate(seg->log_fd, (off_t)position) != 0)
        return LM_E_IO;
    seg->size_bytes = position;
    seg->file_bytes = position;
    seg->data_dirty = true;
    uint32_t keep = 0;
    while (keep < seg->index_len && seg->index[keep].position < position)
        keep++;
    seg_drop_index_from(seg, keep, seg->times_len);
    /* Recompute the end offset and the tail's timestamps from the last kept entry, then drop
     * time entries past the new end. */
    uint64_t pos = keep > 0 ? seg->index[keep - 1].position : 0;
    seg->next_offset = seg->base_offset;
    seg->max_timestamp = seg->max_timestamp_offset = -1;
    struct walk w;
    int rc = seg_walk(log, seg, pos, -1, &w);
    if (rc != 0)
        return rc;
    uint32_t keep_t = 0;
    while (keep_t < seg->times_len &&
           seg->base_offset + (int64_t)seg->times[keep_t].rel_offset < seg->next_offset)
        keep_t++;
    seg_drop_index_from(seg, keep, keep_t);
    if (keep_t > 0 && seg->times[keep_t - 1].timestamp > seg->max_timestamp) {
        seg->max_timestamp = seg->times[keep_t - 1].timestamp;
        seg->max_timestamp_offset = seg->base_offset + seg->times[keep_t - 1].rel_offset;
    }
    seg->bytes_since_index = w.bytes;
    return seg_trim_index_files(log, seg);
}
