/* Transactions in the log (Kafka's ProducerStateManager.ongoingTxns, LogSegment/TransactionIndex):
 * the producers with an open transaction (their first offset gives the first unstable offset,
 * hence the last stable offset), and per segment the aborted-transaction index `.txnindex`.
 *
 * Every batch that enters the log (a leader's or a follower's append) passes txn_note_batch, so
 * leaders and Raft followers hold the same state. A transactional data batch opens its
 * producer's transaction (first offset = its base offset) unless one is open; a control batch
 * (a transaction marker: key {i16 version 0, i16 type: 0 abort, 1 commit}) closes it, and an
 * abort adds {producer id, first offset, marker offset, last stable offset} to the index of the
 * segment holding the marker. The last stable offset of an entry is Kafka's
 * ProducerStateManager.lastStableOffset(completedTxn): the first offset of the earliest other
 * open transaction, else the marker's offset + 1.
 *
 * .txnindex entries (Kafka's AbortedTxn, 34 bytes, big-endian): i16 version 0 | i64 producer id
 * | i64 first offset | i64 last offset | i64 last stable offset. They are held in memory per
 * segment (loaded at open) and written through; the index step of a sync makes them durable
 * before a checkpoint covers them.
 *
 * Recovery: the partition checkpoint records a scan start (checkpoint.c): the lower of the
 * recovery point and the first offset of every transaction open at the time or closed by a
 * marker at or after the recovery point. Open rebuilds the open transactions by walking the
 * batch headers from there to the log end, adding the index entries of abort markers the
 * segment does not hold yet (a crash may lose the tail of a .txnindex, never its middle:
 * entries are written in marker order). Entries past a segment's end (the log lost the
 * marker) are dropped at load. A truncation walks again from the scan start when the cut lies
 * at or above the checkpointed recovery point, else from the log start. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"
#include "protocol/records.h"
#include "storage/storage_internal.h"

#define TXN_INDEX_EXT         ".txnindex"
#define TXN_ENTRY_BYTES       34
#define TXN_CONTROL_BYTES_MAX 4096 /* a marker batch is ~80 bytes */
#define TXN_OPEN_MAX          (1u << 20)
#define TXN_ABORTED_MAX       (1u << 24)

/* ---- the table of transactions ----------------------------------------------------------------
 */

static struct txn_open *txn_find_open(struct storage_log *log, int64_t producer_id)
{
    for (uint32_t i = 0; i < log->txn_count; i++)
        if (log->txns[i].producer_id == producer_id && log->txns[i].end_offset < 0)
            return &log->txns[i];
    return NULL;
}

int64_t storage_log_first_unstable_offset(const struct storage_log *log)
{
    int64_t first = -1;
    for (uint32_t i = 0; i < log->txn_count; i++) {
        const struct txn_open *t = &log->txns[i];
        if (t->end_offset < 0 && (first < 0 || t->first_offset < first))
            first = t->first_offset;
    }
    return first;
}

int64_t txn_scan_start(const struct storage_log *log, int64_t recovery_point)
{
    int64_t s = recovery_point;
    for (uint32_t i = 0; i < log->txn_count; i++) {
        const struct txn_open *t = &log->txns[i];
        if ((t->end_offset < 0 || t->end_offset >= recovery_point) && t->first_offset < s)
            s = t->first_offset;
    }
    return s < 0 ? 0 : s;
}

void txn_prune(struct storage_log *log, int64_t recovery_point)
{
    uint32_t w = 0;
    for (uint32_t r = 0; r < log->txn_count; r++) {
        const struct txn_open *t = &log->txns[r];
        if (t->end_offset >= 0 && t->end_offset < recovery_point)
            continue;
        log->txns[w++] = *t;
    }
    log->txn_count = w;
}

static int txn_add_open(struct storage_log *log, int64_t producer_id, int64_t first_offset)
{
    if (log->txn_count == log->txn_cap) {
        /* closed transactions below what is durable are no longer needed for the scan start */
        txn_prune(log, log->flushed_offset);
        size_t cap = log->txn_cap;
        int rc = lm_grow((void **)&log->txns, sizeof(*log->txns), &cap, log->txn_count + 1, 16,
                         TXN_OPEN_MAX);
        if (rc != 0)
            return rc;
        log->txn_cap = (uint32_t)cap;
    }
    log->txns[log->txn_count++] = (struct txn_open){
        .producer_id = producer_id, .first_offset = first_offset, .end_offset = -1};
    return 0;
}

/* ---- .txnindex files --------------------------------------------------------------------------
 */

static void entry_encode(const struct storage_aborted_txn *e, uint8_t out[TXN_ENTRY_BYTES])
{
    lm_put_be16(out, 0);
    lm_put_be64(out + 2, (uint64_t)e->producer_id);
    lm_put_be64(out + 10, (uint64_t)e->first_offset);
    lm_put_be64(out + 18, (uint64_t)e->last_offset);
    lm_put_be64(out + 26, (uint64_t)e->last_stable_offset);
}

int txn_segment_fd(struct storage_log *log, struct segment *seg)
{
    if (seg->txn_fd >= 0)
        return 0;
    char path[PATH_MAX];
    seg_path(log, seg->base_offset, TXN_INDEX_EXT, path, sizeof(path));
    /* An existing file (reopened after storage_log_release_fds, or to sync it) is no new
     * directory entry; only a created one makes the directory dirty. */
    seg->txn_fd = open(path, O_RDWR | O_CLOEXEC);
    if (seg->txn_fd < 0 && errno == ENOENT) {
        seg->txn_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (seg->txn_fd >= 0) {
            log->dir_dirty = true;
            log->dir_changes++;
        }
    }
    if (seg->txn_fd < 0) {
        storage_report_open_failed(log, path);
        return LM_E_IO;
    }
    storage_fds_reopened(log);
    return 0;
}

/* Rewrites the file to hold exactly the entries in memory (after a cut). */
static int txn_file_trim(struct storage_log *log, struct segment *seg)
{
    int rc = txn_segment_fd(log, seg);
    if (rc != 0)
        return rc;
    if (ftruncate(seg->txn_fd, (off_t)seg->aborted_len * TXN_ENTRY_BYTES) != 0)
        return LM_E_IO;
    seg->txn_dirty = true;
    return 0;
}

static int txn_index_append(struct storage_log *log, struct segment *seg,
                            const struct storage_aborted_txn *e)
{
    LM_ASSERT(e->last_offset >= seg->base_offset && e->first_offset <= e->last_offset);
    size_t cap = seg->aborted_cap;
    int rc = lm_grow((void **)&seg->aborted, sizeof(*seg->aborted), &cap, seg->aborted_len + 1, 4,
                     TXN_ABORTED_MAX);
    if (rc != 0)
        return rc;
    seg->aborted_cap = (uint32_t)cap;
    if ((rc = txn_segment_fd(log, seg)) != 0)
        return rc;
    uint8_t buf[TXN_ENTRY_BYTES];
    entry_encode(e, buf);
    struct iovec iov = {buf, sizeof(buf)};
    rc = log->io->pwritev_all(log->io->ctx, seg->txn_fd, &iov, 1,
                              (uint64_t)seg->aborted_len * TXN_ENTRY_BYTES);
    if (rc != 0)
        return rc;
    seg->aborted[seg->aborted_len++] = *e;
    seg->txn_dirty = true;
    return 0;
}

int txn_segment_load(struct storage_log *log, struct segment *seg)
{
    char path[PATH_MAX];
    seg_path(log, seg->base_offset, TXN_INDEX_EXT, path, sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : LM_E_IO;
    off_t size = lseek(fd, 0, SEEK_END);
    if (size < 0 || (uint64_t)size / TXN_ENTRY_BYTES > TXN_ABORTED_MAX) {
        close(fd);
        return size < 0 ? LM_E_IO : LM_E_TOO_LARGE;
    }
    uint32_t n = (uint32_t)(size / TXN_ENTRY_BYTES);
    uint8_t *buf = malloc((size_t)n * TXN_ENTRY_BYTES + 1);
    int rc = buf == NULL ? LM_E_NOMEM : 0;
    size_t want = (size_t)n * TXN_ENTRY_BYTES;
    for (size_t got = 0; rc == 0 && got < want;) {
        ssize_t r = pread(fd, buf + got, want - got, (off_t)got);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            rc = LM_E_IO;
        else
            got += (size_t)r;
    }
    close(fd);
    size_t cap = 0;
    if (rc == 0 && n > 0)
        rc = lm_grow((void **)&seg->aborted, sizeof(*seg->aborted), &cap, n, n, TXN_ABORTED_MAX);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    seg->aborted_cap = (uint32_t)cap;
    /* Keep the prefix of well-formed entries inside the segment, in marker order: a torn or
     * lost tail is written again by the recovery walk. */
    uint32_t kept = 0;
    for (uint32_t i = 0; i < n; i++) {
        const uint8_t *p = buf + (size_t)i * TXN_ENTRY_BYTES;
        struct storage_aborted_txn e = {
            .producer_id = (int64_t)lm_get_be64(p + 2),
            .first_offset = (int64_t)lm_get_be64(p + 10),
            .last_offset = (int64_t)lm_get_be64(p + 18),
            .last_stable_offset = (int64_t)lm_get_be64(p + 26),
        };
        if (lm_get_be16(p) != 0 || e.producer_id < 0 || e.first_offset < 0 ||
            e.first_offset > e.last_offset || e.last_offset < seg->base_offset ||
            e.last_offset >= seg->next_offset ||
            (kept > 0 && e.last_offset <= seg->aborted[kept - 1].last_offset))
            break;
        seg->aborted[kept++] = e;
    }
    free(buf);
    seg->aborted_len = kept;
    if (kept != n || (uint64_t)size != want) {
        storage_report(log, 1, "%020lld%s: kept %u of %u entries", (long long)seg->base_offset,
                       TXN_INDEX_EXT, kept, n);
        return txn_file_trim(log, seg);
    }
    return 0;
}

int txn_segment_cut(struct storage_log *log, struct segment *seg)
{
    uint32_t n = seg->aborted_len;
    while (seg->aborted_len > 0 &&
           seg->aborted[seg->aborted_len - 1].last_offset >= seg->next_offset)
        seg->aborted_len--;
    return seg->aborted_len == n ? 0 : txn_file_trim(log, seg);
}

void txn_segment_close(struct storage_log *log, struct segment *seg, bool sync)
{
    if (seg->txn_fd < 0)
        return;
    if (sync && seg->txn_dirty && log->io->sync(log->io->ctx, &seg->txn_fd, 1) == 0)
        seg->txn_dirty = false;
    close(seg->txn_fd);
    seg->txn_fd = -1;
}

void txn_segment_free(struct segment *seg)
{
    LM_ASSERT(seg->txn_fd < 0);
    free(seg->aborted);
    seg->aborted = NULL;
    seg->aborted_len = seg->aborted_cap = 0;
}

/* ---- batches ----------------------------------------------------------------------------------
 */

/* Applies one batch at offset h->base_offset in seg; index_missing_only: an abort adds its
 * entry only when the segment has none at or after the marker (a recovery walk). */
static int note(struct storage_log *log, struct segment *seg, const uint8_t *batch, size_t len,
                const struct kafka_batch_header *h, bool index_missing_only)
{
    if (!(h->attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) || h->producer_id < 0)
        return 0;
    struct txn_open *t = txn_find_open(log, h->producer_id);
    if (!(h->attributes & KAFKA_BATCH_ATTR_CONTROL)) {
        /* below the cleaned offset every transaction had ended (the cleaner stops at the first
         * unstable offset) and its marker may be gone */
        if (t != NULL || h->base_offset < log->cleaned_offset)
            return 0;
        return txn_add_open(log, h->producer_id, h->base_offset);
    }
    int16_t type;
    int32_t coordinator_epoch;
    if (kafka_txn_marker_parse(batch, len, h, &type, &coordinator_epoch) != 0)
        return 0;
    int64_t marker = h->base_offset;
    /* Kafka's appendEndTxnMarker: a marker without data of its producer here still completes
     * a (empty) transaction at its own offset. */
    int64_t first = t != NULL ? t->first_offset : marker;
    if (t != NULL)
        t->end_offset = marker;
    if (type == KAFKA_CONTROL_COMMIT)
        return 0;
    int64_t lso = marker + 1;
    for (uint32_t i = 0; i < log->txn_count; i++) {
        const struct txn_open *o = &log->txns[i];
        if (o->end_offset < 0 && o->producer_id != h->producer_id && o->first_offset < lso)
            lso = o->first_offset;
    }
    if (index_missing_only && seg->aborted_len > 0 &&
        seg->aborted[seg->aborted_len - 1].last_offset >= marker)
        return 0;
    struct storage_aborted_txn e = {.producer_id = h->producer_id,
                                    .first_offset = first,
                                    .last_offset = marker,
                                    .last_stable_offset = lso};
    return txn_index_append(log, seg, &e);
}

int txn_note_batch(struct storage_log *log, struct segment *seg, const uint8_t *batch, size_t len,
                   const struct kafka_batch_header *h)
{
    return note(log, seg, batch, len, h, false);
}

int txn_rebuild(struct storage_log *log, int64_t from)
{
    log->txn_count = 0;
    if (from < log->log_start_offset)
        from = log->log_start_offset;
    uint8_t *buf = NULL;
    int rc = 0;
    for (uint32_t i = find_segment(log, from); i < log->seg_count && rc == 0; i++) {
        struct segment *seg = log->segs[i];
        if (seg->next_offset <= from)
            continue;
        if ((rc = seg_use(log, seg)) != 0)
            break;
        uint64_t pos;
        struct kafka_batch_header h;
        bool found;
        rc = seg_find_position(log, seg, from, &pos, &h, &found);
        while (rc == 0 && found && pos < seg->size_bytes) {
            rc = seg_read_header(log, seg, pos, &h);
            if (rc != 0)
                break;
            size_t total = kafka_batch_total_size(&h);
            const uint8_t *bytes = NULL;
            if ((h.attributes & KAFKA_BATCH_ATTR_CONTROL) &&
                (h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) && total <= TXN_CONTROL_BYTES_MAX) {
                if (buf == NULL && (buf = malloc(TXN_CONTROL_BYTES_MAX)) == NULL) {
                    rc = LM_E_NOMEM;
                    break;
                }
                ssize_t r = pread(seg->log_fd, buf, total, (off_t)pos);
                if (r != (ssize_t)total) {
                    rc = LM_E_IO;
                    break;
                }
                bytes = buf;
            }
            if (bytes != NULL || !(h.attributes & KAFKA_BATCH_ATTR_CONTROL))
                rc = note(log, seg, bytes, bytes != NULL ? total : 0, &h, true);
            pos += total;
        }
    }
    free(buf);
    return rc;
}

int txn_after_truncate(struct storage_log *log, int64_t offset)
{
    int64_t from = offset >= log->txn_ckpt_rp ? log->txn_ckpt_scan : log->log_start_offset;
    return txn_rebuild(log, from);
}

/* ---- reads ------------------------------------------------------------------------------------
 */

int storage_log_aborted_txns(struct storage_log *log, int64_t from, int64_t upper,
                             struct storage_aborted_txn *out, uint32_t cap, uint32_t *n)
{
    *n = 0;
    if (log->seg_count == 0 || upper <= from)
        return 0;
    /* Kafka UnifiedLog.collectAbortedTransactions / TransactionIndex.collectAbortedTxns: every
     * entry overlapping [from, upper), searching the segments from the one holding `from` until
     * an entry's last stable offset reaches upper (no later marker can close a transaction
     * that began below it). */
    for (uint32_t i = find_segment(log, from); i < log->seg_count; i++) {
        const struct segment *seg = log->segs[i];
        bool complete = false;
        for (uint32_t k = 0; k < seg->aborted_len; k++) {
            const struct storage_aborted_txn *e = &seg->aborted[k];
            if (e->last_offset >= from && e->first_offset < upper) {
                if (*n == cap)
                    return LM_E_FULL;
                out[(*n)++] = *e;
            }
            if (e->last_stable_offset >= upper)
                complete = true;
        }
        if (complete)
            break;
    }
    return 0;
}

/* ---- compaction -------------------------------------------------------------------------------
 */

int txn_segment_rewrite(struct storage_log *log, struct segment *seg)
{
    if (seg->aborted_len == 0 && seg->txn_fd < 0) {
        char path[PATH_MAX];
        seg_path(log, seg->base_offset, TXN_INDEX_EXT, path, sizeof(path));
        if (unlink(path) != 0 && errno != ENOENT)
            return LM_E_IO;
        return 0;
    }
    int rc = txn_segment_fd(log, seg);
    for (uint32_t k = 0; rc == 0 && k < seg->aborted_len; k++) {
        uint8_t buf[TXN_ENTRY_BYTES];
        entry_encode(&seg->aborted[k], buf);
        struct iovec iov = {buf, sizeof(buf)};
        rc =
            log->io->pwritev_all(log->io->ctx, seg->txn_fd, &iov, 1, (uint64_t)k * TXN_ENTRY_BYTES);
    }
    if (rc == 0)
        rc = txn_file_trim(log, seg);
    if (rc == 0 && log->io->sync(log->io->ctx, &seg->txn_fd, 1) != 0)
        rc = LM_E_IO;
    if (rc == 0)
        seg->txn_dirty = false;
    return rc;
}

int txn_segment_add(struct segment *seg, const struct storage_aborted_txn *e)
{
    size_t cap = seg->aborted_cap;
    int rc = lm_grow((void **)&seg->aborted, sizeof(*seg->aborted), &cap, seg->aborted_len + 1, 4,
                     TXN_ABORTED_MAX);
    if (rc != 0)
        return rc;
    seg->aborted_cap = (uint32_t)cap;
    seg->aborted[seg->aborted_len++] = *e;
    return 0;
}

bool txn_batch_aborted(const struct storage_log *log, int64_t producer_id, int64_t offset,
                       struct storage_aborted_txn *out)
{
    /* Entries are in marker order: once one's last stable offset is past `offset`, every
     * transaction open at `offset` had ended before that marker, so its entry came earlier. */
    for (uint32_t i = find_segment(log, offset); i < log->seg_count; i++) {
        const struct segment *seg = log->segs[i];
        for (uint32_t k = 0; k < seg->aborted_len; k++) {
            const struct storage_aborted_txn *e = &seg->aborted[k];
            if (e->producer_id == producer_id && e->first_offset <= offset &&
                offset <= e->last_offset) {
                if (out != NULL)
                    *out = *e;
                return true;
            }
            if (e->last_offset >= offset && e->last_stable_offset > offset)
                return false;
        }
    }
    return false;
}
