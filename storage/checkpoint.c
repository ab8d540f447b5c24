/* The partition checkpoint (recovery point, log start offset, high watermark) and the
 * leader-epoch checkpoint.
 *
 * partition.checkpoint holds two 64-byte slots written alternately, each
 *   0 magic "LMCP"  4 u32 version 1  8 u64 sequence  16 i64 recovery point
 *   24 i64 log start offset  32 i64 high watermark  40 i64 transaction scan start (txn.c; zero
 *   in files written before it: a walk from the log start)  48 zero  60 u32 CRC-32C of 0..59
 * so one pwrite + fdatasync updates it and a torn write leaves the other slot intact (the
 * double-buffered superblock pattern) without a rename and directory fsync per flush.
 *
 * leader-epoch-checkpoint keeps Kafka's text format (LeaderEpochCheckpointFile, KIP-101):
 * "0\n<count>\n" then "<epoch> <start offset>\n" per entry; written to a .tmp file, synced and
 * renamed over the old one. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "storage/storage_internal.h"
#include "common/lm_grow.h"

#define CHECKPOINT_FILE      "partition.checkpoint"
#define EPOCH_FILE           "leader-epoch-checkpoint"
#define CHECKPOINT_MAGIC     0x4c4d4350u /* "LMCP" */
#define CHECKPOINT_VERSION   1
#define EPOCH_FILE_MAX_BYTES (16u << 20)

static int checkpoint_open(struct storage_log *log)
{
    if (log->checkpoint_fd >= 0)
        return 0;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", log->dir, CHECKPOINT_FILE);
    LM_ASSERT(n > 0 && (size_t)n < sizeof(path));
    log->checkpoint_fd = open(path, O_RDWR | O_CLOEXEC);
    if (log->checkpoint_fd < 0 && errno == ENOENT) {
        log->checkpoint_fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        log->dir_dirty = true; /* its directory entry must be durable too */
        log->dir_changes++;
    }
    if (log->checkpoint_fd < 0) {
        storage_report_open_failed(log, path);
        return LM_E_IO;
    }
    return 0;
}

void checkpoint_close(struct storage_log *log)
{
    if (log->checkpoint_fd >= 0)
        close(log->checkpoint_fd);
    log->checkpoint_fd = -1;
}

int checkpoint_load(struct storage_log *log, int64_t *recovery_point, int64_t *log_start,
                    int64_t *hw, bool *found)
{
    *found = false;
    int rc = checkpoint_open(log);
    if (rc != 0)
        return rc;
    uint8_t buf[2 * STORAGE_CHECKPOINT_SLOT_BYTES];
    ssize_t r = pread(log->checkpoint_fd, buf, sizeof(buf), 0);
    checkpoint_close(log);
    if (r < 0)
        return LM_E_IO;
    uint64_t best_seq = 0;
    for (int slot = 0; slot < 2; slot++) {
        if ((size_t)r < (size_t)(slot + 1) * STORAGE_CHECKPOINT_SLOT_BYTES)
            break;
        const uint8_t *p = buf + slot * STORAGE_CHECKPOINT_SLOT_BYTES;
        if (lm_get_be32(p) != CHECKPOINT_MAGIC || lm_get_be32(p + 4) != CHECKPOINT_VERSION)
            continue;
        if (crc32c_update(0, p, 60) != lm_get_be32(p + 60))
            continue;
        uint64_t seq = lm_get_be64(p + 8);
        int64_t rp = (int64_t)lm_get_be64(p + 16), ls = (int64_t)lm_get_be64(p + 24);
        int64_t h = (int64_t)lm_get_be64(p + 32);
        if (rp < 0 || ls < 0 || h < 0)
            continue;
        int64_t scan = (int64_t)lm_get_be64(p + 40);
        if (scan < 0 || scan > rp)
            continue;
        if (!*found || seq > best_seq) {
            *found = true;
            best_seq = seq;
            *recovery_point = rp;
            *log_start = ls;
            *hw = h;
            log->txn_ckpt_rp = rp;
            log->txn_ckpt_scan = scan;
        }
    }
    log->checkpoint_seq = best_seq;
    return 0;
}

static int checkpoint_write_slot(struct storage_log *log, bool sync)
{
    int rc = checkpoint_open(log);
    if (rc != 0)
        return rc;
    uint8_t p[STORAGE_CHECKPOINT_SLOT_BYTES];
    memset(p, 0, sizeof(p));
    uint64_t seq = log->checkpoint_seq + 1;
    lm_put_be32(p, CHECKPOINT_MAGIC);
    lm_put_be32(p + 4, CHECKPOINT_VERSION);
    lm_put_be64(p + 8, seq);
    lm_put_be64(p + 16, (uint64_t)log->recovery_point);
    lm_put_be64(p + 24, (uint64_t)log->log_start_offset);
    lm_put_be64(p + 32, (uint64_t)log->high_watermark);
    int64_t scan = txn_scan_start(log, log->recovery_point);
    lm_put_be64(p + 40, (uint64_t)scan);
    lm_put_be32(p + 60, crc32c_update(0, p, 60));
    struct iovec iov = {p, sizeof(p)};
    uint64_t at = (seq & 1) * STORAGE_CHECKPOINT_SLOT_BYTES;
    rc = sync ? log->io->pwritev_sync(log->io->ctx, log->checkpoint_fd, &iov, 1, at)
              : log->io->pwritev_all(log->io->ctx, log->checkpoint_fd, &iov, 1, at);
    if (rc != 0)
        return rc;
    log->checkpoint_seq = seq;
    log->txn_ckpt_rp = log->recovery_point;
    log->txn_ckpt_scan = scan;
    txn_prune(log, log->recovery_point);
    return 0;
}

int checkpoint_write(struct storage_log *log)
{
    int rc = checkpoint_write_slot(log, true);
    if (!log->sync_busy)
        checkpoint_close(log);
    return rc;
}

int checkpoint_write_nosync(struct storage_log *log)
{
    return checkpoint_write_slot(log, false);
}

static int parse_i64(const char **p, const char *end, int64_t *out)
{
    const char *s = *p;
    bool neg = false;
    if (s < end && *s == '-') {
        neg = true;
        s++;
    }
    if (s >= end || *s < '0' || *s > '9')
        return LM_E_CORRUPT;
    int64_t v = 0;
    while (s < end && *s >= '0' && *s <= '9') {
        if (v > (INT64_MAX - (*s - '0')) / 10)
            return LM_E_CORRUPT;
        v = v * 10 + (*s - '0');
        s++;
    }
    *out = neg ? -v : v;
    *p = s;
    return 0;
}

static int expect_char(const char **p, const char *end, char c)
{
    if (*p >= end || **p != c)
        return LM_E_CORRUPT;
    (*p)++;
    return 0;
}

int epochs_load(struct storage_log *log, bool *found)
{
    *found = false;
    log->epoch_count = 0;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", log->dir, EPOCH_FILE);
    LM_ASSERT(n > 0 && (size_t)n < sizeof(path));
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : LM_E_IO;
    log->epochs_file = true; /* even damaged: a later write must not leave it behind */
    char *buf = malloc(EPOCH_FILE_MAX_BYTES);
    if (buf == NULL) {
        close(fd);
        return LM_E_NOMEM;
    }
    ssize_t len = read(fd, buf, EPOCH_FILE_MAX_BYTES);
    close(fd);
    if (len < 0) {
        free(buf);
        return LM_E_IO;
    }
    const char *p = buf, *end = buf + len;
    int64_t version, count;
    int rc = parse_i64(&p, end, &version);
    if (rc == 0)
        rc = expect_char(&p, end, '\n');
    if (rc == 0)
        rc = parse_i64(&p, end, &count);
    if (rc == 0)
        rc = expect_char(&p, end, '\n');
    if (rc == 0 && (version != 0 || count < 0 || count > (int64_t)(EPOCH_FILE_MAX_BYTES / 4)))
        rc = LM_E_CORRUPT;
    for (int64_t i = 0; rc == 0 && i < count; i++) {
        int64_t epoch, start;
        rc = parse_i64(&p, end, &epoch);
        if (rc == 0)
            rc = expect_char(&p, end, ' ');
        if (rc == 0)
            rc = parse_i64(&p, end, &start);
        if (rc == 0)
            rc = expect_char(&p, end, '\n');
        if (rc != 0)
            break;
        if (epoch < 0 || epoch > INT32_MAX || start < 0) {
            rc = LM_E_CORRUPT;
            break;
        }
        if (log->epoch_count > 0) {
            const struct epoch_entry *prev = &log->epochs[log->epoch_count - 1];
            if (epoch <= prev->epoch || start < prev->start_offset) {
                rc = LM_E_CORRUPT;
                break;
            }
        }
        if (log->epoch_count == log->epoch_cap) {
            if (LM_GROW(log->epochs, log->epoch_cap, (size_t)log->epoch_count + 1, 16) != 0) {
                rc = LM_E_NOMEM;
                break;
            }
        }
        log->epochs[log->epoch_count++] = (struct epoch_entry){(int32_t)epoch, start};
    }
    if (rc == 0 && p != end)
        rc = LM_E_CORRUPT;
    free(buf);
    if (rc == LM_E_CORRUPT) {
        storage_report(log, 1, "%s is damaged; rebuilding leader epochs from the log", EPOCH_FILE);
        log->epoch_count = 0;
        return 0;
    }
    if (rc != 0)
        return rc;
    *found = true;
    return 0;
}

/* The first write of a log that never had the file (none found at open, none written since:
 * a new partition's first epoch) is not synced, neither its contents nor its rename. A crash
 * can then leave no file, or an empty or cut one, which recovery takes for missing or damaged
 * and rebuilds the epochs from the batches: never a whole file that names fewer epochs than
 * the durable batches carry, because there is no older version of it to fall back to, and every
 * later write is synced (contents before the rename, the directory after). What the first
 * write costs is the check of the first epoch's batches until the file reaches the disk by
 * itself; what it saves is a new replica's fdatasync and directory fsync on the shard thread,
 * two of the syncs that creating and electing thousands of partitions at once queued. */
int epochs_write(struct storage_log *log)
{
    bool sync = log->epochs_file;
    char path[PATH_MAX], tmp[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", log->dir, EPOCH_FILE);
    LM_ASSERT(n > 0 && (size_t)n < sizeof(path));
    n = snprintf(tmp, sizeof(tmp), "%s/%s.tmp", log->dir, EPOCH_FILE);
    LM_ASSERT(n > 0 && (size_t)n < sizeof(tmp));
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return LM_E_IO;
    FILE *f = fdopen(fd, "w");
    if (f == NULL) {
        close(fd);
        return LM_E_IO;
    }
    int ok = fprintf(f, "0\n%u\n", log->epoch_count) > 0;
    for (uint32_t i = 0; ok && i < log->epoch_count; i++)
        ok = fprintf(f, "%" PRId32 " %" PRId64 "\n", log->epochs[i].epoch,
                     log->epochs[i].start_offset) > 0;
    ok = ok && fflush(f) == 0 && (!sync || fdatasync(fd) == 0);
    int err = ok ? 0 : errno;
    if (fclose(f) != 0 && ok) {
        ok = 0;
        err = errno;
    }
    if (!ok) {
        unlink(tmp);
        return err == ENOSPC || err == EDQUOT ? LM_E_FULL : LM_E_IO;
    }
    if (rename(tmp, path) != 0)
        return LM_E_IO;
    log->epochs_file = true;
    if (sync && storage_dir_sync(log) != 0)
        return LM_E_IO;
    log->epochs_dirty = false;
    return 0;
}
