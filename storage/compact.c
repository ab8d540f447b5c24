/* Log compaction (cleanup.policy=compact, DESIGN.md §3), after Kafka's LogCleaner.
 *
 * A pass has two phases, each done in bounded steps (storage_log_compact_step) so the shard that
 * owns the log never stalls for long:
 *   map:   the dirty part of the cleanable prefix (from the cleaned offset to the end of the last
 *          sealed segment below the caller's limit, older than min.compaction.lag.ms) is read
 *          batch by batch and every keyed record puts {16-byte hash of its key -> its offset}
 *          into a fixed-size open-addressing table (log.cleaner.dedupe.buffer.size). When the
 *          table would pass its load factor, the pass covers only the prefix mapped so far
 *          (map_end, a batch boundary), like Kafka's "offset map full".
 *   clean: every segment from the log start up to map_end is rewritten, in groups of adjacent
 *          segments whose sizes add up to at most segment.bytes, into <first base>.*.cleaned:
 *          a record below map_end survives when no later record has its key; a null-key record
 *          below map_end is dropped (Kafka rejects them on produce and the cleaner drops them);
 *          records at or above map_end are kept. Tombstones (null value) survive until the
 *          delete horizon of their batch passed: the first cleaning that keeps a tombstone sets
 *          attribute bit 6 and the base timestamp to now + delete.retention.ms (KIP-534); a
 *          later cleaning past that horizon drops it. A rewritten batch keeps its base offset,
 *          last offset delta (so producer sequences and offsets continue, as Kafka's
 *          MemoryRecords.filterTo), leader epoch, producer id/epoch/base sequence and codec,
 *          with a new CRC. An unchanged batch is copied byte for byte.
 *          Transactions (Kafka's CleanedTransactionMetadata): the prefix ends at the first
 *          unstable offset; a batch of an aborted transaction (the .txnindex) loses every record
 *          and maps no key; a marker stays while the group holds data of its transaction, else
 *          gets a delete horizon and goes once it passed (KIP-534, delete.retention.ms); the
 *          cleaned segment's .txnindex keeps the aborts whose data the group removed. Other
 *          control batches are kept.
 *          A batch left without records keeps an empty header only when it may be the last
 *          batch of its producer (Kafka keeps producer state that way), else it goes.
 * Swap, per group (the protocol at the top of storage.h): write and fsync the three .cleaned
 * files; rename .index/.timeindex then .log to .swap (the .log.swap is the commit point);
 * fsync the directory; rename the .swap files over <first base>.* (indexes first, .log last);
 * unlink the other segments of the group; fsync the directory. Recovery (log.c list_segments
 * and load_segments) finishes a committed swap, discards an uncommitted one, and deletes
 * segments overlapped by a merged segment whose swap finished before they were unlinked.
 * Before the first swap of a pass, <dir>/cleaner-offset-checkpoint records map_end (Kafka's
 * cleaner-offset-checkpoint): segments below it may have offset gaps, and recovery checks them
 * for increasing rather than contiguous offsets.
 *
 * The log stays usable between steps; a step revalidates that the segments it works on are
 * still there (retention, truncation abort the pass). Readers that pinned a replaced segment
 * keep its fd (a zombie) until they release it. */
#define _GNU_SOURCE 1 /* sync_file_range */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "common/lm_grow.h"
#include "protocol/crc32c.h"
#include "protocol/records.h"
#include "storage/storage_internal.h"

#define CMAP_ENTRY_BYTES         24
#define CMAP_LOAD_PERCENT        75
#define CPROD_SLOTS              1024
#define COMPACT_READ_CHUNK       (1u << 20)
#define COMPACT_WRITE_CHUNK      (1u << 20)
#define COMPACT_MAX_UNCOMPRESSED (64u << 20)
#define COMPACT_CHECKPOINT       "cleaner-offset-checkpoint"

/* Replaced segment files freed per step: the last close of a deleted file frees its pages and
 * extents inside close() (~35 ms for 32 MiB here, seconds for 1 GiB), so they shrink by
 * ftruncate in slices over the following steps instead (Kafka deletes them later too,
 * file.delete.delay.ms). */
#define COMPACT_DOOMED_MAX 64
#define COMPACT_TRIM_BYTES (8u << 20)

enum { CJ_MAP = 1, CJ_CLEAN, CJ_DRAIN };

struct cmap_entry {
    uint64_t h0, h1;
    int64_t offset; /* -1: empty slot */
};

struct cprod {
    int64_t pid; /* -1: empty */
    int64_t last_base;
};

/* A window over one segment file, refilled so that a whole batch is always in memory. */
struct creader {
    int fd;
    uint64_t at; /* file position of buf[0] */
    size_t len;
    uint8_t *buf;
    size_t cap;
};

struct storage_compactor {
    struct storage_compact_config cc;
    int phase;
    uint64_t gen;
    int64_t now_ms;
    int64_t dirty_start; /* offsets >= this (and < map_end) are in the map */
    int64_t limit;       /* end of the cleanable prefix (a segment base) */
    int64_t map_end;
    struct cmap_entry *map;
    uint32_t map_cap, map_count, map_max;
    struct cprod prods[CPROD_SLOTS];
    bool prods_full;
    int64_t cur_base; /* segment being read */
    uint64_t cur_pos;
    struct creader rd;
    /* clean phase: the group [group_first, group_end) of segment bases being written */
    int64_t group_first, group_end;
    struct segment *w;
    uint8_t *out;
    size_t out_len, out_cap;
    uint64_t out_file_pos;
    bool crashed;                      /* test hook fired: leave files as a crash would */
    int doomed_fd[COMPACT_DOOMED_MAX]; /* replaced, unlinked .log files still to free */
    uint64_t doomed_size[COMPACT_DOOMED_MAX];
    uint32_t doomed_count;
    struct storage_compact_stats st;
    /* clean phase, per group (Kafka CleanedTransactionMetadata): producers whose aborted
     * (resp. other transactional) data the group has shown since their last marker */
    int64_t *obs_aborted, *obs_committed;
    uint32_t n_obs_aborted, n_obs_committed, cap_obs_aborted, cap_obs_committed;
};

static int out_batch(struct storage_log *log, struct storage_compactor *c, const uint8_t *b,
                     size_t len);

/* ---------------------------------------------------------------- transactions */

static int pid_add(int64_t **set, uint32_t *n, uint32_t *cap, int64_t pid)
{
    for (uint32_t i = 0; i < *n; i++)
        if ((*set)[i] == pid)
            return 0;
    size_t c = *cap;
    int rc = lm_grow((void **)set, sizeof(**set), &c, (size_t)*n + 1, 16, 1u << 20);
    if (rc != 0)
        return rc;
    *cap = (uint32_t)c;
    (*set)[(*n)++] = pid;
    return 0;
}

static bool pid_take(int64_t *set, uint32_t *n, int64_t pid)
{
    for (uint32_t i = 0; i < *n; i++)
        if (set[i] == pid) {
            set[i] = set[--*n];
            return true;
        }
    return false;
}

/* Kafka CleanedTransactionMetadata.onBatchRead: a transactional data batch of an aborted
 * transaction goes (*discard); others mark their producer's transaction as seen. */
static int txn_data_batch(struct storage_log *log, struct storage_compactor *c,
                          const struct kafka_batch_header *h, bool *discard)
{
    *discard = false;
    if (!(h->attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) || h->producer_id < 0)
        return 0;
    if (txn_batch_aborted(log, h->producer_id, h->base_offset, NULL)) {
        *discard = true;
        return pid_add(&c->obs_aborted, &c->n_obs_aborted, &c->cap_obs_aborted, h->producer_id);
    }
    return pid_add(&c->obs_committed, &c->n_obs_committed, &c->cap_obs_committed, h->producer_id);
}

/* Kafka CleanedTransactionMetadata.onControlBatchRead: whether a marker may go once its delete
 * horizon passed (its transaction has no data left in the group); an abort whose data the
 * group removed keeps its index entry in the cleaned segment. */
static int txn_marker_batch(struct storage_log *log, struct storage_compactor *c, const uint8_t *p,
                            const struct kafka_batch_header *h, bool *discardable)
{
    *discardable = false;
    int16_t type;
    int32_t coordinator_epoch;
    if (h->producer_id < 0 ||
        kafka_txn_marker_parse(p, kafka_batch_total_size(h), h, &type, &coordinator_epoch) != 0)
        return 0; /* another control record (Raft's): kept */
    if (type == KAFKA_CONTROL_COMMIT) {
        *discardable = !pid_take(c->obs_committed, &c->n_obs_committed, h->producer_id);
        return 0;
    }
    if (!pid_take(c->obs_aborted, &c->n_obs_aborted, h->producer_id)) {
        *discardable = true;
        return 0;
    }
    struct storage_aborted_txn e;
    if (!txn_batch_aborted(log, h->producer_id, h->base_offset, &e) ||
        e.last_offset != h->base_offset)
        e = (struct storage_aborted_txn){h->producer_id, h->base_offset, h->base_offset,
                                         h->base_offset + 1};
    return txn_segment_add(c->w, &e);
}

/* A marker that may go: dropped once its delete horizon passed, else kept with one set
 * (KIP-534, the first cleaning that finds it discardable). */
static int txn_marker_out(struct storage_log *log, struct storage_compactor *c, const uint8_t *p,
                          const struct kafka_batch_header *h)
{
    size_t total = kafka_batch_total_size(h);
    if (h->attributes & KAFKA_BATCH_ATTR_DELETE_HORIZON) {
        if (c->now_ms >= h->base_timestamp) {
            c->st.batches_rewritten++;
            return 0;
        }
        return out_batch(log, c, p, total);
    }
    struct kafka_batch_reader br;
    int rc = kafka_batch_reader_open(&br, p, total, COMPACT_MAX_UNCOMPRESSED);
    if (rc != 0)
        return rc;
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, h->base_offset, c->now_ms + c->cc.delete_retention_ms);
    b.partition_leader_epoch = h->partition_leader_epoch;
    b.attributes = (int16_t)(h->attributes | KAFKA_BATCH_ATTR_DELETE_HORIZON);
    b.producer_id = h->producer_id;
    b.producer_epoch = h->producer_epoch;
    b.base_sequence = h->base_sequence;
    struct kafka_record_iter it;
    struct kafka_record r;
    kafka_batch_reader_iter(&br, &it);
    while ((rc = kafka_record_iter_next(&it, &r)) == 1) {
        rc =
            kafka_batch_builder_append_at(&b, r.offset_delta, h->base_timestamp + r.timestamp_delta,
                                          r.key, r.key_len, r.value, r.value_len, NULL, 0);
        if (rc != 0)
            break;
    }
    kafka_batch_reader_close(&br);
    uint8_t *nb = NULL;
    size_t nlen = 0;
    if (rc == 0)
        rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &nb, &nlen);
    kafka_batch_builder_deinit(&b);
    if (rc != 0)
        return rc;
    lm_put_be32(nb + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)h->last_offset_delta);
    lm_put_be64(nb + KAFKA_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)h->max_timestamp);
    lm_put_be32(nb + KAFKA_BATCH_OFF_CRC, crc32c_update(0, nb + KAFKA_BATCH_OFF_ATTRIBUTES,
                                                        nlen - KAFKA_BATCH_OFF_ATTRIBUTES));
    c->st.batches_rewritten++;
    rc = out_batch(log, c, nb, nlen);
    free(nb);
    return rc;
}

/* ---------------------------------------------------------------- config */

void storage_compact_config_default(struct storage_compact_config *cc)
{
    memset(cc, 0, sizeof(*cc));
    cc->dedupe_buffer_bytes = 4u << 20;
    cc->min_cleanable_dirty_ratio = 0.5;
    cc->min_compaction_lag_ms = 0;
    cc->max_compaction_lag_ms = -1;
    cc->delete_retention_ms = 24LL * 3600 * 1000;
    cc->crash_at = STORAGE_COMPACT_CRASH_NONE;
}

int64_t storage_log_cleaned_offset(const struct storage_log *log)
{
    return log->cleaned_offset;
}

bool storage_log_compacting(const struct storage_log *log)
{
    return log->compactor != NULL;
}

/* ---------------------------------------------------------------- cleaner checkpoint */

int compact_checkpoint_load(struct storage_log *log)
{
    log->cleaned_offset = log->gaps_offset = 0;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", log->dir, COMPACT_CHECKPOINT);
    if (n < 0 || (size_t)n >= sizeof(path))
        return LM_E_TOO_LARGE;
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? 0 : LM_E_IO;
    long long v = 0, g = 0;
    int version = -1;
    bool ok =
        fscanf(f, "%d\n%lld\n%lld\n", &version, &v, &g) == 3 && version == 0 && v >= 0 && g >= v;
    fclose(f);
    if (!ok) {
        /* A damaged file only loses the relaxed check: recovery then treats compacted segments
         * as contiguous and may cut them, so say it loudly. */
        storage_report(log, 1, "%s unreadable; ignored", COMPACT_CHECKPOINT);
        return 0;
    }
    log->cleaned_offset = v;
    log->gaps_offset = g;
    return 0;
}

/* Writes "0\n<cleaned offset>\n<gaps offset>\n" durably: temp file, fsync, rename, directory
 * fsync. The gaps offset runs ahead of the cleaned offset while a pass swaps segments in. */
static int compact_checkpoint_write(struct storage_log *log, int64_t cleaned, int64_t gaps)
{
    char path[PATH_MAX], tmp[PATH_MAX];
    int n = snprintf(path, sizeof(path), "%s/%s", log->dir, COMPACT_CHECKPOINT);
    int m = snprintf(tmp, sizeof(tmp), "%s/%s.tmp", log->dir, COMPACT_CHECKPOINT);
    if (n < 0 || (size_t)n >= sizeof(path) || m < 0 || (size_t)m >= sizeof(tmp))
        return LM_E_TOO_LARGE;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return LM_E_IO;
    char buf[64];
    int len = snprintf(buf, sizeof(buf), "0\n%lld\n%lld\n", (long long)cleaned, (long long)gaps);
    struct iovec iov = {buf, (size_t)len};
    int rc = log->io->pwritev_sync(log->io->ctx, fd, &iov, 1, 0);
    close(fd);
    if (rc == 0 && rename(tmp, path) != 0)
        rc = LM_E_IO;
    if (rc == 0 && storage_dir_sync(log) != 0)
        rc = LM_E_IO;
    return rc;
}

/* ---------------------------------------------------------------- key map */

/* 128-bit hash of a key: two independent 64-bit multiply-xorshift lanes (the map compares the
 * whole 128 bits, so a false "same key" needs a 2^-128 event, as Kafka's MD5-based map). */
static void key_hash(const uint8_t *p, size_t n, uint64_t *h0, uint64_t *h1)
{
    uint64_t a = 0x9e3779b97f4a7c15ULL ^ n, b = 0xc2b2ae3d27d4eb4fULL + n;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        a = (a ^ v) * 0xff51afd7ed558ccdULL;
        a ^= a >> 32;
        b = (b + v) * 0xc4ceb9fe1a85ec53ULL;
        b ^= b >> 29;
    }
    uint64_t v = 0;
    for (size_t k = 0; i + k < n; k++)
        v |= (uint64_t)p[i + k] << (8 * k);
    a = (a ^ v ^ 0x5bd1e995) * 0xff51afd7ed558ccdULL;
    b = (b + v + 0x27d4eb2f) * 0xc4ceb9fe1a85ec53ULL;
    a ^= a >> 33;
    a *= 0xc4ceb9fe1a85ec53ULL;
    a ^= a >> 33;
    b ^= b >> 31;
    b *= 0xff51afd7ed558ccdULL;
    b ^= b >> 31;
    *h0 = a;
    *h1 = b;
}

static struct cmap_entry *cmap_slot(struct storage_compactor *c, uint64_t h0, uint64_t h1)
{
    uint32_t mask = c->map_cap - 1;
    uint32_t i = (uint32_t)h0 & mask;
    for (uint32_t probes = 0; probes < c->map_cap; probes++) {
        struct cmap_entry *e = &c->map[i];
        if (e->offset < 0 || (e->h0 == h0 && e->h1 == h1))
            return e;
        i = (i + 1) & mask;
    }
    LM_ASSERT(!"key map has no free slot"); /* the load factor keeps free slots */
    return NULL;
}

static void cmap_put(struct storage_compactor *c, const uint8_t *key, int32_t key_len,
                     int64_t offset)
{
    uint64_t h0, h1;
    key_hash(key, (size_t)key_len, &h0, &h1);
    struct cmap_entry *e = cmap_slot(c, h0, h1);
    if (e->offset < 0) {
        LM_ASSERT(c->map_count < c->map_max);
        c->map_count++;
        e->h0 = h0;
        e->h1 = h1;
    }
    if (offset > e->offset)
        e->offset = offset;
}

static int64_t cmap_get(struct storage_compactor *c, const uint8_t *key, int32_t key_len)
{
    uint64_t h0, h1;
    key_hash(key, (size_t)key_len, &h0, &h1);
    return cmap_slot(c, h0, h1)->offset;
}

/* The last batch of each producer id in the mapped range; a full table answers "maybe last". */
static void cprod_put(struct storage_compactor *c, int64_t pid, int64_t base)
{
    uint32_t i = (uint32_t)((uint64_t)pid * 0x9e3779b97f4a7c15ULL >> 54) & (CPROD_SLOTS - 1);
    for (uint32_t k = 0; k < CPROD_SLOTS; k++, i = (i + 1) & (CPROD_SLOTS - 1)) {
        if (c->prods[i].pid == pid || c->prods[i].pid < 0) {
            c->prods[i].pid = pid;
            if (base > c->prods[i].last_base)
                c->prods[i].last_base = base;
            return;
        }
    }
    c->prods_full = true;
}

static bool cprod_maybe_last(const struct storage_compactor *c, int64_t pid, int64_t base)
{
    uint32_t i = (uint32_t)((uint64_t)pid * 0x9e3779b97f4a7c15ULL >> 54) & (CPROD_SLOTS - 1);
    for (uint32_t k = 0; k < CPROD_SLOTS; k++, i = (i + 1) & (CPROD_SLOTS - 1)) {
        if (c->prods[i].pid == pid)
            return base >= c->prods[i].last_base;
        if (c->prods[i].pid < 0)
            return true; /* not seen in the dirty range: this may be its last batch */
    }
    return true;
}

/* ---------------------------------------------------------------- reading */

static struct segment *find_seg(struct storage_log *log, int64_t base, uint32_t *idx)
{
    for (uint32_t i = 0; i < log->seg_count; i++) {
        if (log->segs[i]->base_offset == base) {
            if (idx != NULL)
                *idx = i;
            return log->segs[i];
        }
        if (log->segs[i]->base_offset > base)
            break;
    }
    return NULL;
}

/* Makes sure the segment has its fds; the LRU may have closed it between steps. */
static int seg_ready(struct storage_log *log, struct segment *seg)
{
    if (seg->loaded) {
        seg->lru_tick = ++log->lru_clock;
        return seg_fd(log, seg);
    }
    return seg_open(log, seg, false);
}

/* Points *p at the whole batch at pos of seg, refilling the window from pos when the batch is
 * not wholly in it (a chunk, or the whole batch when larger). */
static int creader_batch(struct creader *r, struct segment *seg, uint64_t pos, const uint8_t **p,
                         struct kafka_batch_header *h)
{
    size_t need = KAFKA_BATCH_HEADER_SIZE;
    for (int pass = 0; pass < 2; pass++) {
        if (r->fd == seg->log_fd && pos >= r->at && pos - r->at + need <= r->len) {
            size_t off = (size_t)(pos - r->at);
            int rc = kafka_batch_header_parse(r->buf + off, r->len - off, h);
            if (rc != 0)
                return rc;
            need = kafka_batch_total_size(h);
            if (pos + need > seg->size_bytes)
                return LM_E_TRUNCATED;
            if (off + need <= r->len) {
                *p = r->buf + off;
                return 0;
            }
        }
        if (pass == 1)
            break;
        size_t want = need > COMPACT_READ_CHUNK ? need : COMPACT_READ_CHUNK;
        if (want > seg->size_bytes - pos)
            want = (size_t)(seg->size_bytes - pos);
        if (want > r->cap) {
            uint8_t *nb = realloc(r->buf, want);
            if (nb == NULL)
                return LM_E_NOMEM;
            r->buf = nb;
            r->cap = want;
        }
        size_t got = 0;
        while (got < want) {
            ssize_t n = pread(seg->log_fd, r->buf + got, want - got, (off_t)(pos + got));
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                r->fd = -1;
                return LM_E_IO;
            }
            got += (size_t)n;
        }
        r->fd = seg->log_fd;
        r->at = pos;
        r->len = got;
        /* A header that parsed in the old window may now be whole: read it again. */
        need = KAFKA_BATCH_HEADER_SIZE > need ? KAFKA_BATCH_HEADER_SIZE : need;
    }
    return LM_E_TRUNCATED;
}

/* ---------------------------------------------------------------- job life */

static void job_close_writer(struct storage_log *log, struct storage_compactor *c, bool unlink_it)
{
    if (c->w == NULL)
        return;
    c->w->zombie = true; /* no pending-index writes or syncs on close */
    seg_close(log, c->w);
    seg_free(c->w);
    c->w = NULL;
    if (!unlink_it)
        return;
    static const char *const exts[] = {".log.cleaned", ".index.cleaned", ".timeindex.cleaned"};
    for (size_t i = 0; i < LM_ARRAY_LEN(exts); i++) {
        char path[PATH_MAX];
        seg_path(log, c->group_first, exts[i], path, sizeof(path));
        unlink(path);
    }
}

static void doomed_close(struct storage_log *log, struct storage_compactor *c, uint32_t k)
{
    LM_ASSERT(k < c->doomed_count);
    close(c->doomed_fd[k]);
    c->doomed_count--;
    c->doomed_fd[k] = c->doomed_fd[c->doomed_count];
    c->doomed_size[k] = c->doomed_size[c->doomed_count];
    (void)log;
}

/* Frees replaced files in COMPACT_TRIM_BYTES slices, counting a quarter of each slice against
 * the step's budget (dropping pages costs less than reading them). */
static void doomed_trim(struct storage_log *log, struct storage_compactor *c, uint64_t budget,
                        uint64_t *spent)
{
    while (c->doomed_count > 0 && *spent < budget) {
        uint32_t k = c->doomed_count - 1;
        uint64_t size = c->doomed_size[k];
        uint64_t left = size > COMPACT_TRIM_BYTES ? size - COMPACT_TRIM_BYTES : 0;
        /* Advisory: should the shrink fail, close() frees the rest at once. */
        if (left == 0 || ftruncate(c->doomed_fd[k], (off_t)left) != 0)
            doomed_close(log, c, k);
        else
            c->doomed_size[k] = left;
        *spent += (size - left) / 4 + 1;
    }
}

static void job_free(struct storage_log *log)
{
    struct storage_compactor *c = log->compactor;
    if (c == NULL)
        return;
    while (c->doomed_count > 0)
        doomed_close(log, c, c->doomed_count - 1);
    job_close_writer(log, c, !c->crashed);
    free(c->map);
    free(c->rd.buf);
    free(c->out);
    free(c->obs_aborted);
    free(c->obs_committed);
    free(c);
    log->compactor = NULL;
}

void compact_free(struct storage_log *log)
{
    job_free(log);
}

void storage_log_compact_abort(struct storage_log *log)
{
    job_free(log);
}

/* The cleanable prefix: sealed segments wholly below clean_up_to, the high watermark and the
 * flushed offset whose records are all older than
 * min.compaction.lag.ms. Returns its end (a segment base) or the first segment's base. */
static int64_t cleanable_end_if(struct storage_log *log, const struct storage_compact_config *cc,
                                int64_t clean_up_to, int64_t now, bool flushed_only)
{
    int64_t lim = clean_up_to;
    if (lim > log->high_watermark)
        lim = log->high_watermark;
    /* Kafka LogCleanerManager: never past the first unstable offset (an open transaction may
     * still be aborted) */
    int64_t unstable = storage_log_first_unstable_offset(log);
    if (unstable >= 0 && lim > unstable)
        lim = unstable;
    /* Only durable records may supersede: a crash must not take the newer value of a key after
     * the cleaner dropped its older, durable one (under acks=all the high watermark already
     * waits for the fdatasync; otherwise storage_log_compact_flush_wanted asks for a flush). */
    if (flushed_only && lim > log->flushed_offset)
        lim = log->flushed_offset;
    int64_t end = log->segs[0]->base_offset;
    for (uint32_t i = 0; i + 1 < log->seg_count; i++) {
        struct segment *s = log->segs[i];
        int64_t next_base = log->segs[i + 1]->base_offset;
        if (next_base > lim || !s->sealed)
            break;
        if (cc->min_compaction_lag_ms > 0 && s->max_timestamp >= 0 &&
            now - s->max_timestamp < cc->min_compaction_lag_ms)
            break;
        end = next_base;
    }
    return end;
}

static int64_t cleanable_end(struct storage_log *log, const struct storage_compact_config *cc,
                             int64_t clean_up_to, int64_t now)
{
    return cleanable_end_if(log, cc, clean_up_to, now, true);
}

/* The dirty-ratio and max-lag rule over the prefix below end. */
static bool due_below(struct storage_log *log, const struct storage_compact_config *cc, int64_t end,
                      int64_t now)
{
    uint64_t total = 0, dirty = 0;
    int64_t oldest_dirty_ts = -1;
    for (uint32_t i = 0; i < log->seg_count && log->segs[i]->base_offset < end; i++) {
        struct segment *s = log->segs[i];
        total += s->size_bytes;
        if (s->next_offset > log->cleaned_offset && s->size_bytes > 0) {
            dirty += s->size_bytes;
            if (oldest_dirty_ts < 0)
                oldest_dirty_ts = s->max_timestamp;
        }
    }
    if (dirty == 0)
        return false;
    /* max.compaction.lag.ms (KIP-354): a dirty segment that old is cleaned whatever the ratio. */
    if (cc->max_compaction_lag_ms >= 0 && oldest_dirty_ts >= 0 &&
        now - oldest_dirty_ts >= cc->max_compaction_lag_ms)
        return true;
    return (double)dirty / (double)total >= cc->min_cleanable_dirty_ratio;
}

bool storage_log_compact_due(struct storage_log *log, const struct storage_compact_config *cc,
                             int64_t clean_up_to)
{
    if (log->failed)
        return false;
    if (log->compactor != NULL)
        return true;
    int64_t now = storage_now_ms(log);
    return due_below(log, cc, cleanable_end(log, cc, clean_up_to, now), now);
}

int64_t storage_log_compact_flush_wanted(struct storage_log *log,
                                         const struct storage_compact_config *cc,
                                         int64_t clean_up_to)
{
    if (log->failed || log->compactor != NULL)
        return -1;
    int64_t now = storage_now_ms(log);
    if (due_below(log, cc, cleanable_end(log, cc, clean_up_to, now), now))
        return -1;
    int64_t end = cleanable_end_if(log, cc, clean_up_to, now, false);
    if (end <= log->flushed_offset || !due_below(log, cc, end, now))
        return -1;
    return end;
}

static int job_begin(struct storage_log *log, const struct storage_compact_config *cc,
                     int64_t clean_up_to, bool *started)
{
    *started = false;
    if (log->failed)
        return LM_E_STATE;
    int64_t now = storage_now_ms(log);
    int64_t end = cleanable_end(log, cc, clean_up_to, now);
    int64_t dirty = log->cleaned_offset;
    if (dirty < log->segs[0]->base_offset)
        dirty = log->segs[0]->base_offset;
    if (dirty >= end)
        return 0;
    uint64_t slots = cc->dedupe_buffer_bytes / CMAP_ENTRY_BYTES;
    uint32_t cap = 16;
    while ((uint64_t)cap * 2 <= slots && cap < (1u << 30))
        cap *= 2;
    struct storage_compactor *c = calloc(1, sizeof(*c));
    if (c == NULL)
        return LM_E_NOMEM;
    c->map = malloc((size_t)cap * sizeof(*c->map));
    if (c->map == NULL) {
        free(c);
        return LM_E_NOMEM;
    }
    for (uint32_t i = 0; i < cap; i++)
        c->map[i].offset = -1;
    for (uint32_t i = 0; i < CPROD_SLOTS; i++)
        c->prods[i] = (struct cprod){-1, -1};
    c->map_cap = cap;
    c->map_max = (uint32_t)((uint64_t)cap * CMAP_LOAD_PERCENT / 100);
    c->cc = *cc;
    c->phase = CJ_MAP;
    c->gen = log->sync_gen;
    c->now_ms = now;
    c->dirty_start = dirty;
    c->limit = end;
    c->map_end = dirty;
    c->rd.fd = -1;
    /* Start mapping in the segment that holds the first dirty offset. */
    uint32_t i = 0;
    while (i + 1 < log->seg_count && log->segs[i + 1]->base_offset <= dirty)
        i++;
    c->cur_base = log->segs[i]->base_offset;
    c->cur_pos = 0;
    for (uint32_t k = 0; k < log->seg_count && log->segs[k]->base_offset < end; k++)
        c->st.segments_before++;
    log->compactor = c;
    *started = true;
    return 0;
}

/* ---------------------------------------------------------------- map phase */

/* The next segment base after base below the limit, or -1. */
static int64_t next_base_below(struct storage_log *log, int64_t base, int64_t limit)
{
    for (uint32_t i = 0; i < log->seg_count; i++)
        if (log->segs[i]->base_offset > base)
            return log->segs[i]->base_offset < limit ? log->segs[i]->base_offset : -1;
    return -1;
}

static int start_clean(struct storage_log *log, struct storage_compactor *c);

static int map_step(struct storage_log *log, struct storage_compactor *c, uint64_t budget,
                    uint64_t *spent)
{
    while (*spent < budget) {
        struct segment *seg = find_seg(log, c->cur_base, NULL);
        if (seg == NULL)
            return LM_E_AGAIN; /* removed meanwhile: abandon the pass */
        int rc = seg_ready(log, seg);
        if (rc != 0)
            return rc;
        if (c->cur_pos >= seg->size_bytes) {
            int64_t nb = next_base_below(log, c->cur_base, c->limit);
            if (nb < 0) {
                c->map_end = c->limit;
                return start_clean(log, c);
            }
            c->cur_base = nb;
            c->cur_pos = 0;
            continue;
        }
        const uint8_t *p;
        struct kafka_batch_header h;
        rc = creader_batch(&c->rd, seg, c->cur_pos, &p, &h);
        if (rc != 0)
            return rc;
        size_t total = kafka_batch_total_size(&h);
        int64_t last = kafka_batch_last_offset(&h);
        /* Kafka buildOffsetMap: an aborted transaction's records supersede nothing */
        bool aborted = (h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) && h.producer_id >= 0 &&
                       txn_batch_aborted(log, h.producer_id, h.base_offset, NULL);
        if (last >= c->dirty_start && !(h.attributes & KAFKA_BATCH_ATTR_CONTROL) && !aborted) {
            if (c->map_count + (uint32_t)h.records_count > c->map_max) {
                if (c->map_end <= c->dirty_start)
                    return LM_E_FULL;       /* not even one batch fits the dedupe buffer */
                return start_clean(log, c); /* clean the prefix the map covers */
            }
            struct kafka_batch_reader br;
            rc = kafka_batch_reader_open(&br, p, total, COMPACT_MAX_UNCOMPRESSED);
            if (rc != 0)
                return rc;
            struct kafka_record_iter it;
            struct kafka_record r;
            kafka_batch_reader_iter(&br, &it);
            while ((rc = kafka_record_iter_next(&it, &r)) == 1) {
                int64_t off = h.base_offset + r.offset_delta;
                if (r.key_len >= 0 && off >= c->dirty_start)
                    cmap_put(c, r.key, r.key_len, off);
            }
            kafka_batch_reader_close(&br);
            if (rc != 0)
                return rc;
            if (h.producer_id >= 0)
                cprod_put(c, h.producer_id, h.base_offset);
        }
        if (last >= c->dirty_start)
            c->map_end = last + 1;
        c->cur_pos += total;
        *spent += total;
        c->st.bytes_read += total;
    }
    return 0;
}

/* ---------------------------------------------------------------- clean phase */

static int open_writer(struct storage_log *log, struct storage_compactor *c, struct segment *first)
{
    struct segment *w = seg_new(first->base_offset, first->created_ms);
    if (w == NULL)
        return LM_E_NOMEM;
    static const char *const exts[] = {".log.cleaned", ".index.cleaned", ".timeindex.cleaned"};
    int *fds[] = {&w->log_fd, &w->index_fd, &w->time_fd};
    for (size_t i = 0; i < LM_ARRAY_LEN(exts); i++) {
        char path[PATH_MAX];
        seg_path(log, first->base_offset, exts[i], path, sizeof(path));
        *fds[i] = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    }
    w->loaded = true;
    log->open_count++;
    /* The writer keeps its index fds (reopening by name would find the original segment's
     * files, not the .cleaned ones) until it is installed. */
    w->index_pinned = true;
    c->w = w;
    c->out_len = 0;
    c->out_file_pos = 0;
    if (w->log_fd < 0 || w->index_fd < 0 || w->time_fd < 0)
        return LM_E_IO;
    return 0;
}

/* Chooses the next group from the segment with base `from`: adjacent segments below map_end
 * whose sizes add up to at most segment.bytes and whose offsets fit one segment's relative
 * offsets (Kafka LogCleaner.groupSegmentsBySize). */
static int next_group(struct storage_log *log, struct storage_compactor *c, int64_t from)
{
    uint32_t i;
    struct segment *first = find_seg(log, from, &i);
    if (first == NULL)
        return LM_E_AGAIN;
    uint64_t size = 0;
    uint32_t j = i;
    while (j + 1 < log->seg_count && log->segs[j]->base_offset < c->map_end) {
        struct segment *s = log->segs[j];
        if (j > i && (size + s->size_bytes > log->cfg.segment_bytes ||
                      s->next_offset - 1 - first->base_offset > SEG_REL_OFFSET_MAX))
            break;
        size += s->size_bytes;
        j++;
    }
    LM_ASSERT(j > i);
    c->group_first = from;
    c->group_end = log->segs[j]->base_offset;
    c->n_obs_aborted = c->n_obs_committed = 0;
    c->cur_base = from;
    c->cur_pos = 0;
    return open_writer(log, c, first);
}

static int start_clean(struct storage_log *log, struct storage_compactor *c)
{
    LM_ASSERT(c->map_end > c->dirty_start && c->map_end <= c->limit);
    /* Before any segment with gaps exists, recovery must know to expect them. */
    int64_t gaps = c->map_end > log->gaps_offset ? c->map_end : log->gaps_offset;
    int rc = compact_checkpoint_write(log, log->cleaned_offset, gaps);
    if (rc != 0)
        return rc;
    log->gaps_offset = gaps;
    c->phase = CJ_CLEAN;
    c->st.map_end = c->map_end;
    return next_group(log, c, log->segs[0]->base_offset);
}

static int out_flush(struct storage_log *log, struct storage_compactor *c)
{
    if (c->out_len == 0)
        return 0;
    struct iovec iov = {c->out, c->out_len};
    int rc = log->io->pwritev_all(log->io->ctx, c->w->log_fd, &iov, 1, c->out_file_pos);
    if (rc != 0)
        return rc;
    /* Start writeback now so the fdatasync before the swap (on the owner's thread) finds little
     * left to write; advisory: a write error surfaces in that fdatasync. */
    (void)sync_file_range(c->w->log_fd, (off64_t)c->out_file_pos, (off64_t)c->out_len,
                          SYNC_FILE_RANGE_WRITE);
    c->out_file_pos += c->out_len;
    c->out_len = 0;
    return 0;
}

/* Appends one finished batch to the writer: buffered bytes, index entries as on append. */
static int out_batch(struct storage_log *log, struct storage_compactor *c, const uint8_t *b,
                     size_t len)
{
    struct kafka_batch_header h;
    int rc = kafka_batch_header_parse(b, len, &h);
    LM_ASSERT(rc == 0 && kafka_batch_total_size(&h) == len);
    if (c->out_len + len > c->out_cap) {
        if ((rc = out_flush(log, c)) != 0)
            return rc;
        if (len > c->out_cap) {
            size_t cap = len > COMPACT_WRITE_CHUNK ? len : COMPACT_WRITE_CHUNK;
            uint8_t *nb = realloc(c->out, cap);
            if (nb == NULL)
                return LM_E_NOMEM;
            c->out = nb;
            c->out_cap = cap;
        }
    }
    memcpy(c->out + c->out_len, b, len);
    c->out_len += len;
    c->st.bytes_written += len;
    return seg_note_batch(log, c->w, &h, c->w->size_bytes);
}

static int headers_of(const struct kafka_record *r, struct kafka_record_header **hdrs, int32_t *cap)
{
    if (r->header_count > *cap) {
        void *p = realloc(*hdrs, (size_t)r->header_count * sizeof(**hdrs));
        if (p == NULL)
            return LM_E_NOMEM;
        *hdrs = p;
        *cap = r->header_count;
    }
    struct kafka_header_iter hi;
    kafka_record_headers(r, &hi);
    for (int32_t k = 0; k < r->header_count; k++) {
        int rc = kafka_header_iter_next(&hi, &(*hdrs)[k]);
        if (rc != 1)
            return rc < 0 ? rc : LM_E_CORRUPT;
    }
    return 0;
}

/* The empty header of a batch whose records all went (its offsets and producer fields). */
static int txn_empty_batch(struct storage_log *log, struct storage_compactor *c,
                           const struct kafka_batch_header *h)
{
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, h->base_offset, h->max_timestamp);
    b.partition_leader_epoch = h->partition_leader_epoch;
    b.attributes = (int16_t)(h->attributes & ~KAFKA_BATCH_ATTR_CODEC_MASK);
    b.producer_id = h->producer_id;
    b.producer_epoch = h->producer_epoch;
    b.base_sequence = h->base_sequence;
    uint8_t *nb = NULL;
    size_t nlen = 0;
    int rc = kafka_batch_builder_finish(&b, KAFKA_CODEC_NONE, &nb, &nlen);
    kafka_batch_builder_deinit(&b);
    if (rc != 0)
        return rc;
    lm_put_be32(nb + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)h->last_offset_delta);
    lm_put_be64(nb + KAFKA_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)h->max_timestamp);
    lm_put_be32(nb + KAFKA_BATCH_OFF_CRC, crc32c_update(0, nb + KAFKA_BATCH_OFF_ATTRIBUTES,
                                                        nlen - KAFKA_BATCH_OFF_ATTRIBUTES));
    rc = out_batch(log, c, nb, nlen);
    free(nb);
    return rc;
}

/* Filters one batch into the writer (see the top of the file for the rules). */
static int clean_batch(struct storage_log *log, struct storage_compactor *c, const uint8_t *p,
                       const struct kafka_batch_header *h)
{
    size_t total = kafka_batch_total_size(h);
    c->st.records_read += (uint64_t)h->records_count;
    bool discard = false;
    int rc;
    if (h->attributes & KAFKA_BATCH_ATTR_CONTROL) {
        c->st.records_kept += (uint64_t)h->records_count;
        if ((rc = txn_marker_batch(log, c, p, h, &discard)) != 0)
            return rc;
        return discard ? txn_marker_out(log, c, p, h) : out_batch(log, c, p, total);
    }
    if ((rc = txn_data_batch(log, c, h, &discard)) != 0)
        return rc;
    if (discard) {
        /* an aborted transaction's batch: every record goes (Kafka discardBatchRecords); an
         * empty header stays where it may be its producer's last batch */
        c->st.batches_rewritten++;
        if (!cprod_maybe_last(c, h->producer_id, h->base_offset))
            return 0;
        return txn_empty_batch(log, c, h);
    }
    if (h->base_offset >= c->map_end) {
        c->st.records_kept += (uint64_t)h->records_count;
        return out_batch(log, c, p, total);
    }
    struct kafka_batch_reader br;
    rc = kafka_batch_reader_open(&br, p, total, COMPACT_MAX_UNCOMPRESSED);
    if (rc != 0)
        return rc;
    bool horizon_set = (h->attributes & KAFKA_BATCH_ATTR_DELETE_HORIZON) != 0;
    bool horizon_passed = horizon_set && c->now_ms >= h->base_timestamp;
    /* Pass 1: which records stay, and whether a kept tombstone needs a horizon. */
    int32_t kept = 0, removed = 0;
    bool tombstone_kept = false;
    struct kafka_record_iter it;
    struct kafka_record r;
    kafka_batch_reader_iter(&br, &it);
    while ((rc = kafka_record_iter_next(&it, &r)) == 1) {
        int64_t off = h->base_offset + r.offset_delta;
        bool keep;
        if (off >= c->map_end)
            keep = true;
        else if (r.key_len < 0)
            keep = false;
        else
            keep = off >= cmap_get(c, r.key, r.key_len);
        if (keep && r.value_len < 0) {
            if (horizon_passed) {
                keep = false;
                c->st.tombstones_removed++;
            } else {
                tombstone_kept = true;
            }
        }
        kept += keep;
        removed += !keep;
    }
    if (rc != 0) {
        kafka_batch_reader_close(&br);
        return rc;
    }
    bool set_horizon = tombstone_kept && !horizon_set;
    c->st.records_kept += (uint64_t)kept;
    if (removed == 0 && !set_horizon) {
        kafka_batch_reader_close(&br);
        return out_batch(log, c, p, total);
    }
    c->st.batches_rewritten++;
    if (kept == 0) {
        kafka_batch_reader_close(&br);
        if (h->producer_id < 0 || !cprod_maybe_last(c, h->producer_id, h->base_offset))
            return 0; /* the batch goes */
    }
    /* Pass 2: rebuild with the same header fields, offsets and codec. */
    int64_t base_ts = h->base_timestamp;
    int16_t attrs = h->attributes;
    if (set_horizon) {
        base_ts = c->now_ms + c->cc.delete_retention_ms; /* KIP-534 delete horizon */
        attrs |= KAFKA_BATCH_ATTR_DELETE_HORIZON;
    }
    if (kept == 0)
        base_ts = h->max_timestamp; /* Kafka's empty header carries maxTimestamp */
    struct kafka_batch_builder b;
    kafka_batch_builder_init(&b, h->base_offset, base_ts);
    b.partition_leader_epoch = h->partition_leader_epoch;
    b.attributes = attrs;
    b.producer_id = h->producer_id;
    b.producer_epoch = h->producer_epoch;
    b.base_sequence = h->base_sequence;
    struct kafka_record_header *hdrs = NULL;
    int32_t hdr_cap = 0;
    kafka_batch_reader_iter(&br, &it);
    while (kept > 0 && (rc = kafka_record_iter_next(&it, &r)) == 1) {
        int64_t off = h->base_offset + r.offset_delta;
        bool keep;
        if (off >= c->map_end)
            keep = true;
        else if (r.key_len < 0)
            keep = false;
        else
            keep = off >= cmap_get(c, r.key, r.key_len);
        if (keep && r.value_len < 0 && horizon_passed)
            keep = false;
        if (!keep)
            continue;
        rc = headers_of(&r, &hdrs, &hdr_cap);
        if (rc == 0)
            rc = kafka_batch_builder_append_at(
                &b, r.offset_delta, h->base_timestamp + r.timestamp_delta, r.key, r.key_len,
                r.value, r.value_len, hdrs, r.header_count);
        if (rc != 0)
            break;
    }
    free(hdrs);
    kafka_batch_reader_close(&br);
    if (rc < 0) {
        kafka_batch_builder_deinit(&b);
        return rc;
    }
    uint8_t *nb;
    size_t nlen;
    rc = kafka_batch_builder_finish(&b, kafka_batch_codec(h), &nb, &nlen);
    kafka_batch_builder_deinit(&b);
    if (rc != 0)
        return rc;
    /* Keep the original last offset (MemoryRecords.filterTo overrideLastOffset) so offsets and
     * producer sequences continue; LogAppendTime batches keep their append time. */
    lm_put_be32(nb + KAFKA_BATCH_OFF_LAST_OFFSET_DELTA, (uint32_t)h->last_offset_delta);
    if (kept == 0 || (h->attributes & KAFKA_BATCH_ATTR_LOG_APPEND_TIME))
        lm_put_be64(nb + KAFKA_BATCH_OFF_MAX_TIMESTAMP, (uint64_t)h->max_timestamp);
    lm_put_be32(nb + KAFKA_BATCH_OFF_CRC, crc32c_update(0, nb + KAFKA_BATCH_OFF_ATTRIBUTES,
                                                        nlen - KAFKA_BATCH_OFF_ATTRIBUTES));
    rc = out_batch(log, c, nb, nlen);
    free(nb);
    return rc;
}

static int rename_ext(struct storage_log *log, int64_t base, const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];
    seg_path(log, base, from, a, sizeof(a));
    seg_path(log, base, to, b, sizeof(b));
    return rename(a, b) == 0 ? 0 : LM_E_IO;
}

/* The group is written: make it durable, commit it (.swap), install it (see the top). */
static int finish_group(struct storage_log *log, struct storage_compactor *c)
{
    struct segment *w = c->w;
    int rc = out_flush(log, c);
    if (rc == 0) {
        /* seg_seal's final time entry and pending index entries. */
        rc = seg_seal(log, w);
    }
    if (rc == 0) {
        int fds[3] = {w->log_fd, w->index_fd, w->time_fd};
        rc = log->io->sync(log->io->ctx, fds, 3);
    }
    if (rc != 0)
        return rc;
    if (c->cc.crash_at == STORAGE_COMPACT_CRASH_CLEANED)
        goto crash;
    rc = rename_ext(log, w->base_offset, ".index.cleaned", ".index.swap");
    if (rc == 0)
        rc = rename_ext(log, w->base_offset, ".timeindex.cleaned", ".timeindex.swap");
    if (rc == 0)
        rc = rename_ext(log, w->base_offset, ".log.cleaned", ".log.swap");
    if (rc == 0 && storage_dir_sync(log) != 0)
        rc = LM_E_IO;
    if (rc != 0)
        return rc;
    if (c->cc.crash_at == STORAGE_COMPACT_CRASH_SWAP)
        goto crash;
    /* Committed: from here a failure leaves recovery to finish the swap. */
    rc = rename_ext(log, w->base_offset, ".index.swap", ".index");
    if (rc == 0)
        rc = rename_ext(log, w->base_offset, ".timeindex.swap", ".timeindex");
    if (rc == 0)
        rc = rename_ext(log, w->base_offset, ".log.swap", ".log");
    if (rc != 0) {
        log->failed = true;
        return rc;
    }
    if (c->cc.crash_at == STORAGE_COMPACT_CRASH_RENAMED)
        goto crash;
    /* Replace the group in memory; readers keep the old fds through zombie segments. */
    uint32_t i = 0;
    struct segment *first = find_seg(log, c->group_first, &i);
    LM_ASSERT(first != NULL); /* nothing ran between the last check and here */
    uint32_t j = i;
    while (j < log->seg_count && log->segs[j]->base_offset < c->group_end)
        j++;
    LM_ASSERT(j > i && j < log->seg_count);
    /* The merged segment's .txnindex: the aborts whose data this cleaning removed (Kafka's
     * cleaned transaction index); the others' markers may go (their data is gone). */
    rc = txn_segment_rewrite(log, w);
    if (rc != 0) {
        log->failed = true;
        return rc;
    }
    for (uint32_t k = i; k < j; k++) {
        struct segment *old = log->segs[k];
        old->zombie = true;
        if (k > i && seg_unlink_files(log, old->base_offset) != 0)
            rc = LM_E_IO;
        if (old->pins > 0) {
            old->next_zombie = log->zombies;
            log->zombies = old;
            continue;
        }
        if (old->log_fd >= 0 && c->doomed_count < COMPACT_DOOMED_MAX) {
            /* Keep the unlinked file open and free it in slices over the next steps. */
            c->doomed_fd[c->doomed_count] = old->log_fd;
            c->doomed_size[c->doomed_count++] = old->size_bytes;
            if (log->scan_buf_fd == old->log_fd) {
                log->scan_buf_fd = -1;
                log->scan_buf_len = 0;
            }
            old->log_fd = -1;
        }
        seg_close(log, old);
        seg_free(old);
    }
    w->compacted = true;
    w->data_dirty = false;
    w->index_dirty = false;
    w->index_pinned = false;
    seg_index_release(w); /* synced above; reopened by their new names when written */
    w->lru_tick = ++log->lru_clock;
    log->segs[i] = w;
    memmove(log->segs + i + 1, log->segs + j, (log->seg_count - j) * sizeof(*log->segs));
    log->seg_count -= j - i - 1;
    c->w = NULL;
    c->rd.fd = -1; /* the window may show a replaced file */
    if (rc == 0 && storage_dir_sync(log) != 0)
        rc = LM_E_IO;
    if (rc != 0)
        log->failed = true;
    c->st.segments_after++;
    return rc;
crash:
    c->crashed = true;
    return LM_E_STATE;
}

static int clean_step(struct storage_log *log, struct storage_compactor *c, uint64_t budget,
                      uint64_t *spent, bool *done)
{
    while (*spent < budget) {
        if (c->w == NULL) {
            /* Between groups: the next one starts at the segment after the last group. */
            if (c->group_end >= c->map_end || find_seg(log, c->group_end, NULL) == NULL ||
                c->group_end >= log->segs[log->seg_count - 1]->base_offset) {
                *done = true;
                return 0;
            }
            int rc = next_group(log, c, c->group_end);
            if (rc != 0)
                return rc;
        }
        struct segment *seg = find_seg(log, c->cur_base, NULL);
        if (seg == NULL || seg == log->segs[log->seg_count - 1])
            return LM_E_AGAIN;
        int rc = seg_ready(log, seg);
        if (rc != 0)
            return rc;
        if (c->cur_pos >= seg->size_bytes) {
            int64_t nb = next_base_below(log, c->cur_base, c->group_end);
            if (nb >= 0) {
                c->cur_base = nb;
                c->cur_pos = 0;
                continue;
            }
            rc = finish_group(log, c);
            if (rc != 0)
                return rc;
            continue;
        }
        const uint8_t *p;
        struct kafka_batch_header h;
        rc = creader_batch(&c->rd, seg, c->cur_pos, &p, &h);
        if (rc != 0)
            return rc;
        rc = clean_batch(log, c, p, &h);
        if (rc != 0)
            return rc;
        size_t total = kafka_batch_total_size(&h);
        c->cur_pos += total;
        *spent += total;
        c->st.bytes_read += total;
    }
    return 0;
}

/* ---------------------------------------------------------------- entry points */

int storage_log_compact_step(struct storage_log *log, const struct storage_compact_config *cc,
                             int64_t clean_up_to, uint64_t budget_bytes, bool *busy,
                             struct storage_compact_stats *stats)
{
    *busy = false;
    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    if (log->failed) {
        job_free(log);
        return LM_E_STATE;
    }
    if (log->compactor == NULL) {
        bool started;
        int rc = job_begin(log, cc, clean_up_to, &started);
        if (rc != 0 || !started)
            return rc;
    }
    struct storage_compactor *c = log->compactor;
    LM_ASSERT(c->crashed == false);
    if (c->gen != log->sync_gen) {
        job_free(log); /* truncated or reset: the plan names other bytes */
        return 0;
    }
    uint64_t spent = 0;
    bool done = false;
    int rc = 0;
    c->rd.fd = -1; /* fds may have been closed and reused, segments swapped, since the last step */
    doomed_trim(log, c, budget_bytes, &spent);
    if (c->phase == CJ_MAP && spent < budget_bytes)
        rc = map_step(log, c, budget_bytes, &spent);
    if (rc == 0 && c->phase == CJ_CLEAN && spent < budget_bytes)
        rc = clean_step(log, c, budget_bytes, &spent, &done);
    if (rc == LM_E_AGAIN) {
        storage_report(log, 0, "compaction of %s abandoned: its segments changed", log->dir);
        job_free(log);
        return 0;
    }
    if (rc != 0) {
        if (!c->crashed)
            storage_report(log, 1, "compaction of %s failed: %s", log->dir, lm_strerror(rc));
        if (c->crashed)
            return rc; /* the test hook: keep the job (and its files) until the log closes */
        job_free(log);
        return rc;
    }
    if (done) {
        c->phase = CJ_DRAIN;
        rc = compact_checkpoint_write(log, c->map_end, log->gaps_offset);
        if (rc != 0) {
            storage_report(log, 1, "compaction: cleaner checkpoint: %s", lm_strerror(rc));
            job_free(log);
            return rc;
        }
        log->cleaned_offset = c->map_end;
        const char *name = strrchr(log->dir, '/');
        storage_report(log, 0,
                       "%s: compacted up to offset %lld: %llu -> %llu bytes, %u -> %u segments, "
                       "%llu of %llu records kept",
                       name != NULL ? name + 1 : log->dir, (long long)c->map_end,
                       (unsigned long long)c->st.bytes_read,
                       (unsigned long long)c->st.bytes_written, c->st.segments_before,
                       c->st.segments_after, (unsigned long long)c->st.records_kept,
                       (unsigned long long)c->st.records_read);
    }
    if (c->phase == CJ_DRAIN && c->doomed_count == 0) {
        if (stats != NULL)
            *stats = c->st;
        job_free(log);
        return 0;
    }
    *busy = true;
    return 0;
}

int storage_log_compact(struct storage_log *log, const struct storage_compact_config *cc,
                        int64_t clean_up_to, struct storage_compact_stats *stats)
{
    bool busy = true;
    int rc = 0;
    if (stats != NULL)
        memset(stats, 0, sizeof(*stats));
    for (uint32_t turns = 0; busy && rc == 0; turns++) {
        LM_ASSERT(turns < UINT32_MAX);
        struct storage_compact_stats st;
        rc = storage_log_compact_step(log, cc, clean_up_to, 64u << 20, &busy, &st);
        if (rc == 0 && !busy && stats != NULL)
            *stats = st;
    }
    return rc;
}

int storage_log_swap_segment(struct storage_log *log, int64_t base_offset)
{
    uint32_t i;
    struct segment *old = find_seg(log, base_offset, &i);
    if (old == NULL || i + 1 >= log->seg_count || log->compactor != NULL)
        return old == NULL ? LM_E_NOT_FOUND : LM_E_STATE;
    int rc = rename_ext(log, base_offset, ".index.swap", ".index");
    if (rc == 0)
        rc = rename_ext(log, base_offset, ".timeindex.swap", ".timeindex");
    if (rc == 0)
        rc = rename_ext(log, base_offset, ".log.swap", ".log");
    if (rc != 0)
        return rc;
    struct segment *seg = seg_new(base_offset, old->created_ms);
    if (seg == NULL)
        return LM_E_NOMEM;
    seg->compacted = true;
    /* the .txnindex is not swapped: the entries stay with the base offset */
    seg->aborted = old->aborted;
    seg->aborted_len = old->aborted_len;
    seg->aborted_cap = old->aborted_cap;
    old->aborted = NULL;
    old->aborted_len = old->aborted_cap = 0;
    old->zombie = true;
    if (old->pins > 0) {
        old->next_zombie = log->zombies;
        log->zombies = old;
    } else {
        seg_close(log, old);
        seg_free(old);
    }
    log->segs[i] = seg;
    bool truncated = false;
    rc = seg_open(log, seg, false);
    if (rc == 0)
        rc = seg_load(log, seg, INT64_MAX, &truncated);
    if (rc == 0 && seg->loaded && !seg->sealed)
        rc = seg_seal(log, seg);
    if (rc == 0 && storage_dir_sync(log) != 0)
        rc = LM_E_IO;
    if (rc != 0)
        log->failed = true;
    return rc;
}
