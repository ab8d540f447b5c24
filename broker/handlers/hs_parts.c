/* A shard's partitions: lookup, storage settings, partition ids, the open-log budget (LRU),
 * opening, flushing, closing and reopening logs, the budgeted background work (opens,
 * directory removals) and the reconciliation of the topic table with the metadata store. */
#include "broker/handlers/handlers.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>
#include "broker/handlers/group_internal.h"
#include "broker/handlers/handlers_internal.h"
#include "common/lm_hash.h"
#include "broker/log.h"
#include "broker/producer/producer_state.h"
#include "broker/cluster/controller.h"
#include "broker/partition/partition_votes.h"
#include "broker/partition/state_file.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_messages.h"

/* ---- partitions: lookup, storage settings, directories ----------------------------------- */

/* The next attempt after a failed open: HANDLERS_RETRY_MIN_MS, doubling up to
 * HANDLERS_RETRY_MAX_MS while it keeps failing. */
static void part_schedule_retry(struct hpart *p)
{
    p->retry_ms = p->retry_ms == 0                          ? HANDLERS_RETRY_MIN_MS
                  : p->retry_ms * 2 > HANDLERS_RETRY_MAX_MS ? HANDLERS_RETRY_MAX_MS
                                                            : p->retry_ms * 2;
    p->retry_at_ms = broker_now_ms() + p->retry_ms;
}

struct htopic *hs_topic(struct hshard *hs, const char *name, size_t len)
{
    if (hs->bucket_count == 0 || name == NULL)
        return NULL;
    struct htopic *t = hs->buckets[lm_fnv1a64(name, len) % hs->bucket_count];
    for (; t != NULL; t = t->next)
        if (strlen(t->meta->name) == len && memcmp(t->meta->name, name, len) == 0)
            return t;
    return NULL;
}

struct htopic *hs_topic_by_id(struct hshard *hs, const uint8_t id[16])
{
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            if (memcmp(t->meta->id, id, 16) == 0)
                return t;
    return NULL;
}

static bool part_ensure_open(struct hpart *p);
static void oq_remove(struct hshard *hs, struct hpart *p);
static void oq_push(struct hshard *hs, struct hpart *p);
static void part_open_log(struct hpart *p);

struct hpart *hs_part_peek(struct hshard *hs, const char *topic, size_t len, int32_t partition)
{
    struct htopic *t = hs_topic(hs, topic, len);
    if (t == NULL || partition < 0 || partition >= t->meta->partition_count ||
        partition >= t->part_cap)
        return NULL;
    return t->parts[partition];
}

bool hs_part_open(struct hpart *p)
{
    if (p->open_pending && p->log == NULL) {
        /* A request needs it now: open it ahead of its turn in the work queue (a log queued
         * to be reopened serves as it is until then). */
        oq_remove(p->hs, p);
        part_open_log(p);
    } else if (p->log != NULL || p->idle_closed) {
        part_ensure_open(p);
    }
    return p->log != NULL;
}

struct hpart *hs_part(struct hshard *hs, const char *topic, size_t len, int32_t partition)
{
    struct hpart *p = hs_part_peek(hs, topic, len, partition);
    if (p != NULL)
        (void)hs_part_open(p);
    return p;
}

uint32_t hs_owner(struct hshard *hs, const char *topic, size_t len, int32_t partition)
{
    return broker_partition_shard(topic, len, partition, hs->count);
}

static void storage_report(void *ctx, int level, const char *msg)
{
    (void)ctx;
    if (level > 0)
        BLOG_WARN("storage: %s", msg);
    else
        BLOG_INFO("storage: %s", msg);
}

/* The largest step of zeros written ahead of a segment's end with preallocate=true. */
#define HS_PREALLOCATE_BYTES (1u << 20)

/* The flush.ms of a write-caching topic that sets none. */
#define WRITE_CACHING_FLUSH_MS 100

/* Kafka's "never" for flush.messages / flush.ms is Long.MAX_VALUE; storage says -1. */
static int64_t flush_policy(int64_t v)
{
    return v <= 0 || v >= INT64_MAX / 2 ? -1 : v;
}

static void storage_cfg_of(const struct lm_topic_settings *st, struct storage_config *c)
{
    storage_config_default(c);
    c->segment_bytes = st->segment_bytes > 0 ? (uint64_t)st->segment_bytes : c->segment_bytes;
    c->segment_ms = st->segment_ms > 0 ? st->segment_ms : -1;
    if (st->index_interval_bytes > 0)
        c->index_interval_bytes = (uint32_t)st->index_interval_bytes;
    c->retention_bytes = st->retention_bytes;
    c->retention_ms = st->retention_ms;
    if (!st->cleanup_delete) {
        /* cleanup.policy=compact alone: Kafka deletes no segment by time or size; the cleaner
         * keeps the latest record per key instead. */
        c->retention_bytes = -1;
        c->retention_ms = -1;
    }
    c->flush_messages = flush_policy(st->flush_messages);
    c->flush_ms = flush_policy(st->flush_ms);
    /* Write caching acknowledges from memory: without a flush.ms of its own the page cache
     * reaches the disk every WRITE_CACHING_FLUSH_MS (Redpanda's default for its write
     * caching), so what a majority acknowledged is on their disks soon after. */
    if (st->write_caching && c->flush_ms < 0)
        c->flush_ms = WRITE_CACHING_FLUSH_MS;
    c->log_append_time = st->timestamp_log_append;
    c->preallocate_bytes = st->preallocate ? HS_PREALLOCATE_BYTES : 0;
    c->external_sync = true; /* fsyncs run off the shard thread (hs_sync_wait) */
    c->report = storage_report;
}

static bool storage_cfg_same(const struct storage_config *a, const struct storage_config *b)
{
    return a->segment_bytes == b->segment_bytes && a->segment_ms == b->segment_ms &&
           a->index_interval_bytes == b->index_interval_bytes &&
           a->retention_bytes == b->retention_bytes && a->retention_ms == b->retention_ms &&
           a->flush_messages == b->flush_messages && a->flush_ms == b->flush_ms &&
           a->log_append_time == b->log_append_time && a->preallocate_bytes == b->preallocate_bytes;
}

/* A partition directory: log dir + "/" + topic (<= 249) + "-" + partition. */

void hs_rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[H_FILE_BYTES];
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        if (unlink(path) != 0)
            BLOG_WARN("cannot remove %s: %s", path, strerror(errno));
    }
    closedir(d);
    if (rmdir(dir) != 0)
        BLOG_WARN("cannot remove %s: %s", dir, strerror(errno));
}

static int part_dir(const struct hpart *p, char *out, size_t cap)
{
    return storage_partition_dir(out, cap, p->hs->node->cfg->log_dirs[0], p->topic, p->partition);
}

static void hex_id(const uint8_t id[16], char out[33])
{
    for (int i = 0; i < 16; i++)
        snprintf(out + 2 * i, 3, "%02x", id[i]);
}

static void part_env_write_state(void *ctx, struct partition *part, const char *dir,
                                 const char *name, const char *line, int n);

/* The vote ledger (partition_votes.h): <first log dir>/__laminar_votes/<topic id>-<partition>. */
static int votes_where(const struct hpart *p, char *ledger, size_t lcap, char key[48])
{
    char hex[33];
    hex_id(p->topic_id, hex);
    snprintf(key, 48, "%s-%d", hex, (int)p->partition);
    int n = snprintf(ledger, lcap, "%s/__laminar_votes", p->hs->node->cfg->log_dirs[0]);
    return n < 0 || (size_t)n >= lcap ? LM_E_TOO_LARGE : 0;
}

/* partition.metadata holds the topic id (as Kafka's does), so a directory left by a deleted
 * topic is never taken for a new topic of the same name, even after a crash. */
enum part_id { PART_ID_NONE, PART_ID_MATCH, PART_ID_OTHER, PART_ID_UNREADABLE };

static enum part_id part_id_check(const char *dir, const uint8_t id[16])
{
    char path[H_FILE_BYTES], want[33], got[64] = {0};
    if (snprintf(path, sizeof(path), "%s/partition.metadata", dir) >= (int)sizeof(path))
        return PART_ID_UNREADABLE;
    hex_id(id, want);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return errno == ENOENT ? PART_ID_NONE : PART_ID_UNREADABLE;
    bool parsed = fscanf(f, "version: 0\ntopic_id: %40s", got) == 1 && strlen(got) == 32;
    fclose(f);
    if (!parsed)
        return PART_ID_UNREADABLE;
    return strcmp(got, want) == 0 ? PART_ID_MATCH : PART_ID_OTHER;
}

static bool part_id_matches(const char *dir, const uint8_t id[16], bool *exists)
{
    enum part_id r = part_id_check(dir, id);
    *exists = r != PART_ID_NONE;
    return r == PART_ID_MATCH;
}

/* Written to a temporary name and renamed: a full disk or a crash leaves either the whole
 * file or none, never an empty one that would look like another topic's directory. Without
 * sync the rename may reach the disk before the contents: a crash can then leave it empty,
 * which reads as unreadable and is written again, keeping the directory (part_open_log); the
 * caller makes it durable before the directory holds anything of the replica's
 * (id_unsynced). */
static int part_id_write(const char *dir, const uint8_t id[16], bool sync)
{
    char path[H_FILE_BYTES], tmp[H_FILE_BYTES + 8], hex[33];
    if (snprintf(path, sizeof(path), "%s/partition.metadata", dir) >= (int)sizeof(path) ||
        snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
        return LM_E_TOO_LARGE;
    hex_id(id, hex);
    /* A full disk (ENOSPC, EDQUOT; a short write) is LM_E_FULL, as in storage: the partition
     * stays offline and is retried, and the log line says the device is full, not that it
     * failed. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return errno == ENOSPC || errno == EDQUOT ? LM_E_FULL : LM_E_IO;
    char buf[80];
    int n = snprintf(buf, sizeof(buf), "version: 0\ntopic_id: %s\n", hex);
    ssize_t w = write(fd, buf, (size_t)n);
    int err = w == n ? 0 : w >= 0 ? ENOSPC : errno;
    if (err == 0 && sync && fdatasync(fd) != 0)
        err = errno;
    close(fd);
    if (err == 0 && rename(tmp, path) != 0)
        err = errno;
    if (err != 0) {
        unlink(tmp);
        return err == ENOSPC || err == EDQUOT ? LM_E_FULL : LM_E_IO;
    }
    return 0;
}

/* ---- open-log budget (LRU of open partition logs) ----------------------------------------- */

static void lru_unlink(struct hpart *p)
{
    struct hshard *hs = p->hs;
    if (hs == NULL || (p->lru_prev == NULL && hs->lru_head != p))
        return; /* not on the list */
    if (p->lru_prev != NULL)
        p->lru_prev->lru_next = p->lru_next;
    else
        hs->lru_head = p->lru_next;
    if (p->lru_next != NULL)
        p->lru_next->lru_prev = p->lru_prev;
    else
        hs->lru_tail = p->lru_prev;
    p->lru_prev = p->lru_next = NULL;
    LM_ASSERT(hs->open_logs > 0);
    hs->open_logs--;
}

static void lru_push_head(struct hpart *p)
{
    struct hshard *hs = p->hs;
    p->lru_prev = NULL;
    p->lru_next = hs->lru_head;
    if (hs->lru_head != NULL)
        hs->lru_head->lru_prev = p;
    else
        hs->lru_tail = p;
    hs->lru_head = p;
    hs->open_logs++;
}

/* Marks p's log as just used. */
static void lru_touch(struct hpart *p)
{
    if (p->hs == NULL || p->hs->lru_head == p)
        return;
    lru_unlink(p);
    lru_push_head(p);
}

/* Releases the descriptors of v's log, keeping the partition open (partition_release_fds):
 * off the LRU until storage reopens one (part_fds_reopened). False when v is not idle. */
static bool lru_release(struct hshard *hs, struct hpart *v)
{
    LM_ASSERT(v->part != NULL && !v->fds_released);
    if (partition_release_fds(v->part) != 0)
        return false;
    lru_unlink(v);
    v->fds_released = true;
    if (hs->fd_releases++ % 10000 == 0)
        BLOG_INFO("shard %u: open-log budget %u reached: descriptors of idle open logs "
                  "released (%llu so far), reopened when used",
                  hs->id, hs->open_logs_max, (unsigned long long)hs->fd_releases);
    return true;
}

/* Frees the least recently used idle logs' descriptors while the shard is over its open-log
 * budget: a lone voter's log is closed (partition and all, reopened by hs_part); a log that
 * must stay open (a replicated partition, whose Raft group answers its peers whatever the
 * clients do; an internal topic's, which its coordinator holds; one with fetches parked on it)
 * keeps its partition and only releases its descriptors, which storage reopens when the log is
 * used. release_only: never close (callers that may hold other partitions' logs).
 * Bounded: looks at a few candidates per call. */
static void lru_enforce(struct hshard *hs, const struct hpart *keep, bool release_only)
{
    uint32_t looked = 0;
    struct hpart *v = hs->lru_tail;
    while (hs->open_logs > hs->open_logs_max && v != NULL && looked++ < 32) {
        struct hpart *prev = v->lru_prev;
        /* Idle: no fsync in flight (its fds are in the ring). */
        if (v == keep || hs_part_busy(v) || v->dead || v->failed || v->reopen_pending ||
            v->part == NULL) {
            v = prev;
            continue;
        }
        /* A lone voter without parked fetches closes (its acks=all and persisted waiters only
         * exist while an fsync runs or is due); the others release. */
        if (release_only || v->replicated || v->waiters != NULL ||
            h_topic_internal(v->topic, strlen(v->topic))) {
            (void)lru_release(hs, v);
            v = prev;
            continue;
        }
        /* Closed without a flush (acks=1 appends of a lone voter are not fsynced): the bytes
         * stay in the page cache and the next open recovers them, as after a crash of the
         * process. A partition that cannot close so (compaction running, segments pinned)
         * stays open for now. */
        int64_t hw = partition_high_watermark(v->part);
        int64_t lso = partition_last_stable_offset(v->part);
        int64_t start = storage_log_start_offset(v->log), leo = storage_log_end_offset(v->log);
        if (partition_close_unsynced(v->part) != 0) {
            (void)lru_release(hs, v); /* not closable now (a watcher): its fds at least */
            v = prev;
            continue;
        }
        v->idle_hw = hw;
        v->idle_lso = lso;
        v->idle_start = start;
        v->idle_leo = leo;
        v->part = NULL;
        v->log = NULL;
        v->idle_closed = true;
        if (v->open_pending) /* queued to reopen: its next open reads the new settings */
            oq_remove(hs, v);
        lru_unlink(v);
        if (hs->idle_closes++ % 10000 == 0)
            BLOG_INFO("shard %u: open-log budget %u reached: idle logs closed (%llu so "
                      "far), reopened when used",
                      hs->id, hs->open_logs_max, (unsigned long long)hs->idle_closes);
        v = prev;
    }
}

static void part_open_log(struct hpart *p);

/* The log of p, opened again if the budget closed it; false when it cannot be opened (p is
 * then offline and retried by the tick). */
static bool part_ensure_open(struct hpart *p)
{
    if (p->log != NULL) {
        /* A released log is counted again once storage reopens a descriptor (the read or
         * append coming); room is made for it first. */
        struct hshard *hs = p->hs;
        if (!p->fds_released)
            lru_touch(p);
        if (hs != NULL && hs->open_logs > hs->open_logs_max)
            lru_enforce(hs, p, true);
        return true;
    }
    if (!p->idle_closed)
        return false;
    /* Every append starts its partition's fsync, and a partition stays open while that runs:
     * one request touching hundreds of idle partitions keeps them all open for a moment.
     * Past a quarter over the budget, a reopen waits (retriable KAFKA_STORAGE_ERROR) for the
     * fsyncs to end and free their logs, rather than run the process out of descriptors. */
    struct hshard *hs = p->hs;
    if (hs != NULL && hs->open_logs >= hs->open_logs_max + hs->open_logs_max / 4) {
        lru_enforce(hs, NULL, false);
        if (hs->open_logs >= hs->open_logs_max + hs->open_logs_max / 4)
            return false;
    }
    p->idle_closed = false;
    part_open_log(p);
    return p->log != NULL;
}

static void part_env_sync(void *ctx, struct partition *part, const int *fds, const bool *full,
                          uint32_t n);

/* storage_config.fds_reopened: storage opened a descriptor of p's released log (inside a
 * read, append or sync of it): counted on the LRU again, as the most recently used. The
 * budget is enforced at the next lookup or kick (never here: storage is mid-call). */
static void part_fds_reopened(void *ctx)
{
    struct hpart *p = ctx;
    if (!p->fds_released || p->hs == NULL)
        return; /* closing (part_close_log cleared it) */
    p->fds_released = false;
    lru_push_head(p);
}

/* After a storage failure the page cache may hold writes that never reached the disk: an
 * fsync that failed leaves them clean (Linux after a writeback error), so no later fsync
 * writes them, yet reads still see them. They are evicted before the log reopens, so its
 * recovery reads what the disk holds and not records this node never made durable (nor
 * acknowledged, nor counted towards a commit): trusting them would let them vanish in a
 * later crash after the node had acknowledged what follows them. */
static void part_drop_cache(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return;
    struct dirent *e;
    char path[H_FILE_BYTES];
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' ||
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) >= (int)sizeof(path))
            continue;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
    closedir(d);
}

static void part_open_log(struct hpart *p)
{
    char dir[H_DIR_BYTES];
    p->failed = false;
    if (part_dir(p, dir, sizeof(dir)) != 0) {
        BLOG_ERROR("partition %s-%d: bad directory name", p->topic, p->partition);
        hs_part_set_offline(p, true);
        p->retry_ms = HANDLERS_RETRY_MAX_MS;
        p->retry_at_ms = UINT64_MAX; /* never opens: the name cannot change */
        return;
    }
    if (p->cache_suspect) {
        part_drop_cache(dir);
        p->cache_suspect = false;
    }
    enum part_id pid = part_id_check(dir, p->topic_id);
    if (pid == PART_ID_NONE && p->hs->node->ctl != NULL &&
        !controller_caught_up(p->hs->node->ctl)) {
        /* No replica here yet, while this node's image may still be behind (a restart): the
         * partition may belong to an incarnation that was deleted, and whose directory this
         * node removed, before the restart. Created now, empty, it would answer its Raft group
         * with the votes the removed directory held forgotten, and let a stale replica become
         * a second leader in an epoch (whole-cluster simulation seed 396, with reassignments).
         * It is created once the image has caught up past this start's registration. */
        if (p->open_failures++ == 0)
            BLOG_INFO("partition %s-%d: no replica here yet; created once the metadata has "
                      "caught up",
                      p->topic, p->partition);
        hs_part_set_offline(p, true);
        part_schedule_retry(p);
        return;
    }
    if (pid == PART_ID_OTHER && p->hs->node->ctl != NULL &&
        !controller_caught_up(p->hs->node->ctl)) {
        /* Another incarnation's directory, while this node's image may still be behind (after
         * a restart it fills from the controller's log, whose unsynced tail a crash may have
         * cut): the directory can belong to a NEWER incarnation this image does not know yet,
         * with acknowledged records and Raft votes in it. It is kept, and the partition stays
         * offline, until the image has caught up past this start's registration: then every
         * incarnation created before the directory is in it, and a mismatch means deleted. */
        if (p->open_failures++ == 0)
            BLOG_INFO("partition %s-%d: directory of another incarnation; kept until the "
                      "metadata has caught up",
                      p->topic, p->partition);
        hs_part_set_offline(p, true);
        part_schedule_retry(p);
        return;
    }
    if (pid == PART_ID_OTHER) {
        BLOG_WARN("partition %s-%d: directory belongs to an older topic of that name; removed",
                  p->topic, p->partition);
        hs_rm_dir(dir);
        pid = PART_ID_NONE;
    } else if (pid == PART_ID_UNREADABLE) {
        /* Damaged or unreadable (not another topic's id): keep the data, write it again. */
        BLOG_WARN_LIMITED("partition %s-%d: partition.metadata unreadable; rewriting it", p->topic,
                          p->partition);
    }
    if (pid == PART_ID_NONE) {
        /* A replica this node gave up before starts from the term and vote it had. */
        char ledger[H_DIR_BYTES], key[48];
        int vrc = votes_where(p, ledger, sizeof(ledger), key);
        if (vrc == 0)
            vrc = partition_votes_restore(ledger, key, dir);
        if (vrc != 0) {
            if (p->open_failures++ == 0)
                BLOG_ERROR("partition %s-%d: cannot restore its Raft vote: %s; offline, "
                           "retrying",
                           p->topic, p->partition, lm_strerror(vrc));
            hs_part_set_offline(p, true);
            part_schedule_retry(p);
            return;
        }
    }
    /* A one-voter Raft group over the partition's log (broker/partition/README.md). */
    struct partition_config pc;
    partition_config_default(&pc);
    pc.dir = dir;
    pc.storage = p->scfg;
    pc.storage.fds_reopened = part_fds_reopened;
    pc.storage.fds_reopened_ctx = p;
    p->fds_released = false;
    pc.write_caching = p->write_caching;
    int32_t node = p->hs->node->cfg->node_id;
    pc.node_id = node > 0 ? (uint32_t)node : 1;
    pc.voters.n_voters = 1;
    pc.voters.voters[0] = pc.node_id;
    pc.internal_topic = h_topic_internal(p->topic, strlen(p->topic));
    pc.tick_ms = HANDLERS_TICK_MS;
    pc.election_ticks = 10;
    pc.heartbeat_ticks = 1;
    pc.raft_stats = p->hs != NULL ? &p->hs->raft_stats : NULL;
    struct partition_env env = {
        .ctx = p, .sync = part_env_sync, .send = NULL, .write_state = part_env_write_state};
    /* A cluster partition with other replicas: one Raft group over their nodes. */
    p->replicated = false;
    int16_t rf = p->rf;
    const int32_t *reps = p->replicas;
    /* one replica: a Raft group with peers while a reassignment grows it, or once its log
     * holds a configuration (raft-conf: broker/partition/README.md) */
    char marker[H_DIR_BYTES + 16];
    bool grow =
        rf == 1 &&
        (p->grow || (snprintf(marker, sizeof(marker), "%s/raft-conf", dir) < (int)sizeof(marker) &&
                     access(marker, F_OK) == 0));
    if ((rf > 1 || grow) && rf <= RAFT_NODES_MAX && p->hs != NULL && hs_cluster(p->hs->node)) {
        p->replicated = true;
        pc.may_grow = grow;
        p->announced_epoch = -1;
        p->announce_confirmed = false;
        pc.node_id = (uint32_t)node + 1u; /* raft ids: node id + 1 */
        pc.voters.n_voters = 0;
        for (int16_t i = 0; i < rf; i++)
            pc.voters.voters[pc.voters.n_voters++] = (uint32_t)reps[i] + 1u;
        pc.group = hs_raft_group(p->topic_id, p->partition);
        uint64_t seed = 0;
        if (getrandom(&seed, sizeof(seed), 0) != (ssize_t)sizeof(seed))
            seed = broker_now_ms() ^ pc.group;
        pc.rand_seed = seed;
        env.send = hs_raft_send;
        /* idle groups stop heartbeating; the shard tick wakes a quiescent follower whose
         * leader's node the image fences (hs_shard.c) */
        pc.quiesce = p->hs->node->cfg->raft_quiesce;
        if (hs_raft_zero_copy(p->hs))
            env.send_app = hs_raft_send_app;
    }
    /* Bounds of acks=all produces and persisted waiters in flight on one partition (grown on
     * demand): well above what max.in.flight.requests per producer brings. */
    pc.waiters_max = 1u << 16;
    pc.watchers_max = 1u << 16;
    p->part = NULL;
    p->log = NULL;
    uint64_t open_t0 = broker_now_us();
    int rc = partition_open(&pc, &env, (int64_t)broker_now_ms(), &p->part);
    p->hs->open_us += broker_now_us() - open_t0;
    p->hs->opens++;
    if (rc == 0)
        p->log = partition_storage(p->part);
    /* A new replica of a Raft group (term 0: it never persisted a term, so it votes or takes
     * appends only after a state write) leaves partition.metadata's fdatasync to that write,
     * on the metadata worker: creating 10,000 partitions is then no longer 10,000 fdatasyncs
     * on the shard threads. Any other (a lone replica, one with a term) syncs it now. A replica
     * still at term 0 when reopened (after a restart, say) has its file synced by that first
     * write too: the process that wrote it may have ended before syncing it. */
    bool defer = rc == 0 && p->replicated && partition_leader_epoch(p->part) == 0;
    if (rc == 0 && pid != PART_ID_MATCH)
        rc = part_id_write(dir, p->topic_id, !defer);
    if (rc == 0 && defer)
        p->id_unsynced = true;
    if (rc != 0) {
        /* The first failure is an error; the retries every few seconds are not news. */
        if (p->open_failures++ == 0 &&
            ++p->hs->open_failures_this_tick <= OPEN_FAILURES_LOGGED_PER_TICK)
            BLOG_ERROR("partition %s-%d: cannot open log in %s: %s; offline, retrying", p->topic,
                       p->partition, dir, storage_io_strerror(rc));
        else
            BLOG_DEBUG("partition %s-%d: reopen %u failed: %s", p->topic, p->partition,
                       p->open_failures, storage_io_strerror(rc));
        if (p->part != NULL)
            partition_close(p->part);
        p->part = NULL;
        p->log = NULL;
        hs_part_set_offline(p, true);
        part_schedule_retry(p);
        return;
    }
    /* A first open waiting in the open queue, or a reopen after the open-log budget closed
     * the log, is no news: only a recovery from failed opens is. */
    if (p->offline && p->open_failures > 0)
        BLOG_INFO("partition %s-%d: log open again (after %u failed attempts); online", p->topic,
                  p->partition, p->open_failures);
    hs_part_set_offline(p, false);
    p->open_failures = 0;
    p->retry_ms = 0;
    if (p->hs != NULL)
        hs_waiters_arm(p->hs, p); /* fetches parked on it while it was closed */
    if (p->hs != NULL) {
        lru_push_head(p);
        lru_enforce(p->hs, p, false);
    }
    /* A group that never elected anyone (a new partition): its preferred replica campaigns
     * at once instead of after an election timeout, so a new topic has its leaders in a few
     * round trips, as Kafka's controller names them at creation. Pre-vote keeps it harmless
     * where others know better (their logs are longer, or the others are not open yet: the
     * election timeout then tries again). */
    if (p->replicated && p->rf > 1 && p->replicas[0] == node &&
        partition_leader_epoch(p->part) == 0) {
        int crc = partition_campaign(p->part);
        if (crc != 0 && crc != LM_E_STATE)
            BLOG_DEBUG("partition %s-%d: first campaign: %s", p->topic, p->partition,
                       lm_strerror(crc));
    } else if (p->replicated && p->rf > 1 && partition_leader_epoch(p->part) == 0 &&
               p->hs != NULL) {
        /* The others leave that first election to it (it campaigns again after each of its
         * own timeouts): they hold theirs while its node is registered and not fenced, for at
         * most HANDLERS_FIRST_ELECTION_HOLD_MS (hs_first_election_check). With thousands of
         * groups created at once, their pre-votes and elections, each a state write on three
         * nodes, competed with the preferred replicas' and kept most groups leaderless for
         * minutes (10,000 x RF=3 on one 2-core machine). */
        partition_hold_elections(p->part, true);
        p->election_held = true;
        p->election_hold_until_ms = broker_now_ms() + HANDLERS_FIRST_ELECTION_HOLD_MS;
    }
    /* The raft term (one voter: kept across reopens, partition.h). */
    p->leader_epoch = partition_leader_epoch(p->part);
    p->lead_published = p->replicated && partition_is_leader(p->part);
    hs_part_set_epoch(p, p->leader_epoch, p->lead_published);
}

/* ---- asynchronous flush (group commit) ---------------------------------------------------- */

static void part_free(struct hshard *hs, struct hpart *p, bool delete_dir);
static void oq_remove(struct hshard *hs, struct hpart *p);
static void dir_remove_or_queue(struct hshard *hs, const char *dir, const uint8_t id[16]);

static void part_reopen(struct hshard *hs, struct hpart *p);

/* After any input to p's partition: a failure takes p offline, a moved high watermark wakes
 * the parked fetches, and a close or reopen deferred while an fsync ran happens now. */
void hs_part_kick(struct hshard *hs, struct hpart *p)
{
    if (p->sync.in_done || p->qsw.in_done)
        return; /* the completion kicks once partition_sync_done (_state_done) returned */
    if (p->part != NULL) {
        int failed = partition_failed(p->part);
        if (failed)
            hs_part_failed(hs, p, failed);
    }
    hs_wake_fired(hs, p);
    hs_lease_waits_check(hs, p, broker_now_ms()); /* a heartbeat's answer renewed the lease */
    if (hs_part_busy(p))
        return; /* closing or reopening waits for the fsync's end */
    if (p->dead) {
        part_free(hs, p, p->dead_delete_dir);
        return;
    }
    if (p->part == NULL)
        return;
    if (p->reopen_pending) {
        p->reopen_pending = false;
        part_reopen(hs, p);
    }
    /* Partitions left open over the budget because their fsync ran close once it ended. */
    if (hs->open_logs > hs->open_logs_max && !hs_part_busy(p))
        lru_enforce(hs, p->sync.in_done ? NULL : p, false);
}

/* A read parked until its partition's lease is back (hs_lease_park). */
struct hlease_wait {
    struct hlease_wait *next;
    struct hwork *w;
    struct hfan *f;
    uint64_t deadline_ms;
    int16_t give_up;
};

bool hs_lease_park(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f,
                   uint64_t max_ms, int16_t give_up)
{
    uint64_t now = broker_now_ms();
    if (p->lease_rerun || p->part == NULL || max_ms == 0 || hs->stopping ||
        !partition_lease_coming(p->part, (int64_t)now))
        return false;
    struct hlease_wait *lw = malloc(sizeof(*lw));
    if (lw == NULL)
        return false;
    *lw = (struct hlease_wait){
        .next = p->lease_waits, .w = w, .f = f, .deadline_ms = now + max_ms, .give_up = give_up};
    p->lease_waits = lw;
    hfan_hold(w);
    return true;
}

void hs_lease_waits_check(struct hshard *hs, struct hpart *p, uint64_t now_ms)
{
    if (p->lease_waits == NULL || p->lease_rerun)
        return;
    bool lease = p->part != NULL && !p->failed && p->log != NULL &&
                 partition_lease_valid(p->part, (int64_t)now_ms);
    /* taken off the list first: a run may park nothing (lease_rerun), but it may kick p */
    struct hlease_wait *due = NULL, **at = &p->lease_waits;
    while (*at != NULL) {
        struct hlease_wait *lw = *at;
        if (lease || now_ms >= lw->deadline_ms || p->part == NULL ||
            !partition_lease_coming(p->part, (int64_t)now_ms)) {
            *at = lw->next;
            lw->next = due;
            due = lw;
        } else {
            at = &lw->next;
        }
    }
    while (due != NULL) {
        struct hlease_wait *lw = due;
        due = lw->next;
        p->lease_rerun = true;
        lw->w->error = KAFKA_NONE;
        lw->f->op(hs, p, lw->w, lw->f);
        p->lease_rerun = false;
        hfan_release(hs, lw->w);
        free(lw);
    }
}

void hs_lease_waits_drop(struct hshard *hs, struct hpart *p)
{
    if (hs == NULL)
        hs = p->hs; /* part_free at teardown */
    LM_ASSERT(hs != NULL || p->lease_waits == NULL);
    while (p->lease_waits != NULL) {
        struct hlease_wait *lw = p->lease_waits;
        p->lease_waits = lw->next;
        lw->w->error = lw->give_up;
        hfan_release(hs, lw->w);
        free(lw);
    }
}

static void sync_fsync_done(struct broker_shard *s, struct broker_fsync *f, int rc)
{
    (void)s;
    struct hpart *p = f->arg;
    struct hpart_sync *ps = &p->sync;
    LM_ASSERT(ps->busy && ps->pending > 0);
    if (rc != 0 && ps->rc == 0)
        ps->rc = rc;
    if (--ps->pending > 0)
        return;
    uint64_t us = broker_now_us() - ps->start_us;
    static const uint64_t bounds[] = {HANDLERS_FLUSH_BOUNDS_US};
    _Static_assert(sizeof(bounds) / sizeof(bounds[0]) + 1 == HANDLERS_FLUSH_BUCKETS,
                   "one bucket per bound and +Inf");
    uint32_t b = 0;
    while (b < HANDLERS_FLUSH_BUCKETS - 1 && us > bounds[b])
        b++;
    p->hs->flush_hist[b]++;
    p->hs->flushes++;
    p->hs->flush_us += us;
    ps->busy = false;
    ps->in_done = true; /* partition_sync_done may hand out the next step at once */
    if (p->part != NULL)
        partition_sync_done(p->part, ps->rc);
    ps->in_done = false;
    hs_part_kick(p->hs, p);
}

/* partition_env.sync: the partition's group-commit fsyncs, off the shard thread
 * (broker_shard_fsync: the ring or the sync worker). */
static void part_env_sync(void *ctx, struct partition *part, const int *fds, const bool *full,
                          uint32_t n)
{
    struct hpart *p = ctx;
    struct hpart_sync *ps = &p->sync;
    LM_ASSERT(!ps->busy && n <= STORAGE_SYNC_FDS_MAX);
    if (n == 0) {
        partition_sync_done(part, 0);
        return;
    }
    ps->busy = true;
    ps->rc = 0;
    ps->pending = n;
    ps->start_us = broker_now_us();
    for (uint32_t i = 0; i < n; i++)
        broker_shard_fsync(p->hs->shard, &ps->fs[i], fds[i], !full[i], sync_fsync_done, p);
}

/* The metadata worker's part of a hard-state write (any thread: only the job's strings). */
static int state_write_run(struct broker_meta_job *j)
{
    struct hpart *p = j->arg;
    if (p->qsw.sync_id) {
        char path[H_FILE_BYTES];
        if (snprintf(path, sizeof(path), "%s/partition.metadata", p->qsw.dir) >= (int)sizeof(path))
            return LM_E_TOO_LARGE;
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return LM_E_IO;
        int rc = fdatasync(fd) == 0 ? 0 : LM_E_IO;
        close(fd);
        if (rc != 0)
            return rc;
    }
    /* a new log's directory entries too, so that its first flush need not (sync_dir) */
    return state_file_write_dir(p->qsw.dir, p->qsw.name, p->qsw.line, p->qsw.len, p->qsw.sync_dir);
}

/* state_write_run split for a batch (broker_meta_job.stage): one syncfs makes many replicas'
 * writes durable, partition.metadata of a new one included (id_unsynced). */
static int state_write_stage(struct broker_meta_job *j, int *fd)
{
    struct hpart *p = j->arg;
    return state_file_stage(p->qsw.dir, p->qsw.name, p->qsw.line, p->qsw.len, &p->qsw.staged, fd);
}

static int state_write_commit(struct broker_meta_job *j, int rc)
{
    struct hpart *p = j->arg;
    if (rc != 0) {
        state_file_abort(p->qsw.dir, p->qsw.name, &p->qsw.staged);
        return LM_E_IO;
    }
    return state_file_commit(p->qsw.dir, p->qsw.name, &p->qsw.staged);
}

static void state_write_done(struct broker_shard *s, struct broker_meta_job *j, int rc)
{
    (void)s;
    struct hpart *p = j->arg;
    struct hpart_state *q = &p->qsw;
    LM_ASSERT(q->busy && !q->in_done);
    q->busy = false;
    if (rc == 0 && q->sync_id)
        p->id_unsynced = false;
    /* the write synced the log's directory (a dir fsync, or a syncfs of its file system) */
    if (rc == 0 && q->sync_dir && p->log != NULL && !p->dead)
        storage_log_dir_synced(p->log, q->dir_changes);
    if (p->hs != NULL) {
        uint64_t took = broker_now_us() - q->issued_us;
        p->hs->state_writes++;
        p->hs->state_write_us += took;
        if (took > p->hs->state_write_us_max)
            p->hs->state_write_us_max = took;
    }
    q->in_done = true; /* partition_state_done may hand out the next write at once */
    if (p->part != NULL)
        partition_state_done(p->part, rc);
    q->in_done = false;
    if (q->issuing)
        return; /* inline (inside write_state): the caller's input checks and kicks */
    /* what raft sent once the write was durable may have been its campaign's last step */
    if (p->replicated && p->part != NULL && !p->dead)
        hs_leader_check(p->hs, p, broker_now_ms());
    hs_part_kick(p->hs, p);
}

/* partition_env.write_state: Raft's term and vote on the shard's metadata worker, so a
 * thousand new replicas' elections do not make the shard wait for two thousand disk syncs
 * (SWIM and the controller run here). */
static void part_env_write_state(void *ctx, struct partition *part, const char *dir,
                                 const char *name, const char *line, int n)
{
    (void)part;
    struct hpart *p = ctx;
    struct hpart_state *q = &p->qsw;
    LM_ASSERT(!q->busy);
    q->dir = dir;
    q->name = name;
    q->line = line;
    q->len = n;
    q->sync_id = p->id_unsynced;
    /* A new log's directory, not synced at creation (storage_log_open), is synced by this
     * write too: its first flush then holds no descriptor of it. Creating thousands of
     * replicas made as many first flushes run at once, each holding one. */
    q->sync_dir = p->log != NULL && storage_log_dir_dirty(p->log, &q->dir_changes);
    q->issued_us = broker_now_us();
    q->busy = true;
    q->job.run = state_write_run;
    q->job.stage = state_write_stage;
    q->job.commit = state_write_commit;
    q->job.done = state_write_done;
    q->job.arg = p;
    bool outer = q->issuing;
    q->issuing = true;
    broker_shard_meta_job(p->hs->shard, &q->job);
    q->issuing = outer;
}

static void sync_wait_fired(void *user, int err, int64_t hw)
{
    (void)hw;
    struct hsync_wait *w = user;
    struct hpart *p = w->p_;
    w->done(p->hs, p, w, err);
}

void hs_sync_wait(struct hshard *hs, struct hpart *p, struct hsync_wait *w)
{
    LM_ASSERT(p->hs == hs && w->done != NULL);
    w->next = NULL;
    w->p_ = p;
    if (p->part == NULL) {
        w->done(hs, p, w, LM_E_STATE);
        return;
    }
    int rc = partition_wait_persisted(p->part, w->offset, sync_wait_fired, w);
    if (rc != 0)
        w->done(hs, p, w, rc); /* not queued (partition.h) */
    hs_part_kick(hs, p);
}

static void append_fired(void *user, int err, const struct partition_append_info *info)
{
    struct hsync_wait *w = user;
    struct hpart *p = w->p_;
    if (err == 0)
        w->offset = info->last_offset + 1;
    w->done(p->hs, p, w, err);
}

int hs_append(struct hshard *hs, struct hpart *p, enum partition_origin origin, uint8_t *buf,
              size_t len, int acks, struct hsync_wait *w)
{
    LM_ASSERT(p->hs == hs && w->done != NULL);
    if (p->part == NULL || p->failed)
        return LM_E_STATE;
    w->next = NULL;
    w->p_ = p;
    int rc = partition_append(p->part, origin, buf, len, acks, append_fired, w);
    /* A log storage failed answers LM_E_STATE to every append (storage.h): offline. A leader
     * handing its leadership over refuses appends with LM_E_STATE too: that is not a failure. */
    if (rc == LM_E_STATE && partition_is_leader(p->part) && !partition_transferring(p->part))
        hs_part_failed(hs, p, rc);
    hs_part_kick(hs, p);
    return rc;
}

void hs_part_failed(struct hshard *hs, struct hpart *p, int rc)
{
    (void)hs;
    if (p->failed || p->log == NULL)
        return;
    BLOG_ERROR("partition %s-%d: storage failed (%s); offline until its log reopens", p->topic,
               p->partition, storage_io_strerror(rc));
    p->failed = true;
    p->cache_suspect = true;
    hs_part_set_offline(p, true);
    p->retry_ms = 0;
    p->retry_at_ms = 0; /* the next tick reopens it (recovery from the checkpoint) */
}

/* Closes p's partition (waiters fail with LM_E_CLOSED) and its open-log slot; without a final
 * flush when its directory is removed next (discard). */
static void part_close_log_as(struct hpart *p, bool discard)
{
    if (p->part == NULL)
        return;
    LM_ASSERT(!hs_part_busy(p));
    lru_unlink(p);
    p->fds_released = false; /* off the LRU already; its final flush may reopen fds */
    int rc = discard ? partition_close_discard(p->part) : partition_close(p->part);
    if (rc != 0)
        BLOG_DEBUG("partition %s-%d: close: %s", p->topic, p->partition, lm_strerror(rc));
    p->part = NULL;
    p->log = NULL;
}

static void part_close_log(struct hpart *p)
{
    part_close_log_as(p, false);
}

/* Storage settings changed: close and open again (storage reads its config at open). */
static void part_reopen(struct hshard *hs, struct hpart *p)
{
    hs_wake_waiters(hs, p);
    hs_lease_waits_drop(hs, p);
    part_close_log(p);
    p->idle_closed = false;
    part_open_log(p);
}

/* Reopens the log of p after a storage failure (the tick, at p->retry_at_ms). */
void hs_part_retry(struct hshard *hs, struct hpart *p)
{
    LM_ASSERT(!hs_part_busy(p) && !p->dead);
    hs_wake_waiters(hs, p);
    part_close_log(p);
    part_open_log(p);
    if (p->log == NULL)
        return;
    hs_wake_waiters(hs, p);
    group_partition_reopened(hs, p);
}

static void part_close(struct hshard *hs, struct hpart *p, bool delete_dir)
{
    /* Parked fetches waiting here are woken so they answer (with UNKNOWN_TOPIC...). */
    hs_wake_waiters(hs, p);
    if (hs_part_busy(p)) {
        /* Its fsyncs hold the segment files: close and free when the sync ends. */
        p->dead = true;
        p->dead_delete_dir = delete_dir;
        return;
    }
    part_free(hs, p, delete_dir);
}

static void part_free(struct hshard *hs, struct hpart *p, bool delete_dir)
{
    LM_ASSERT(!hs_part_busy(p));
    if (p->leave_at_ms != 0 && hs != NULL)
        hs->leaving--;
    if (p->open_pending)
        oq_remove(hs, p);
    hs_wake_waiters(hs, p);
    hs_lease_waits_drop(hs, p);
    /* a deleted replica's log is not flushed: its directory goes next (a replica moved off
     * this node keeps only its Raft vote, written durably by each state write) */
    part_close_log_as(p, delete_dir);
    if (delete_dir) {
        char dir[H_DIR_BYTES], ledger[H_DIR_BYTES], key[48];
        int rc = part_dir(p, dir, sizeof(dir));
        /* A replica moved off this node keeps its Raft term and vote (partition_votes.h); a
         * deleted topic's do not matter (a new one of that name has another id). */
        if (rc == 0 && p->keep_votes && p->replicated && p->hs != NULL &&
            (rc = votes_where(p, ledger, sizeof(ledger), key)) == 0)
            rc = partition_votes_save(ledger, key, dir);
        if (rc == 0)
            dir_remove_or_queue(hs, dir, p->topic_id);
        else
            BLOG_WARN("partition %s-%d: its Raft vote could not be kept (%s); its directory "
                      "stays",
                      p->topic, p->partition, lm_strerror(rc));
        BLOG_DEBUG("partition %s-%d deleted", p->topic, p->partition);
    }
    hs_part_set_offline(p, false);
    hs_part_set_epoch(p, HANDLERS_LEADER_EPOCH_FIRST, false);
    free(p->isr);
    free(p->topic);
    free(p);
}

static struct hpart *part_new(const struct htopic *t, int32_t partition)
{
    struct hpart *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->topic = strdup(t->meta->name);
    if (p->topic == NULL) {
        free(p);
        return NULL;
    }
    p->partition = partition;
    memcpy(p->topic_id, t->meta->id, 16);
    p->leader_epoch = HANDLERS_LEADER_EPOCH_FIRST;
    storage_cfg_of(&t->settings, &p->scfg);
    p->write_caching = t->settings.write_caching;
    /* its replica set: the replicas holding its data (a reassignment's adding replicas are
     * not among them); a reassignment that only reorders them moves the preferred leader
     * (topic_sync_parts) */
    int32_t reps[LM_META_REPLICATION_MAX];
    int16_t rf = lm_meta_topic_current_replicas(t->meta, partition, reps);
    if (rf >= 1) {
        p->rf = rf;
        memcpy(p->replicas, reps, (size_t)rf * sizeof(int32_t));
        p->grow = rf == 1 && lm_meta_topic_reassigning(t->meta, partition);
    }
    return p;
}

/* ---- budgeted background work: opening partitions, removing deleted directories --------- */

static void work_run(struct broker_shard *s, struct broker_timer *t);

static void work_arm(struct hshard *hs)
{
    if (hs->stopping || hs->work.heap_index_ != UINT32_MAX)
        return;
    if (broker_timer_start(hs->shard, &hs->work, 1, work_run, hs) != 0)
        BLOG_ERROR("shard %u: cannot arm the partition work timer", hs->id);
}

/* True while the current step may still do a synchronous open or removal. */
bool hs_step_has_budget(const struct hshard *hs)
{
    return hs->step_ops < HANDLERS_STEP_OPS_MIN || broker_now_ms() < hs->step_deadline_ms;
}

static void oq_remove(struct hshard *hs, struct hpart *p)
{
    LM_ASSERT(p->open_pending && hs->oq_len > 0);
    if (p->oq_prev != NULL)
        p->oq_prev->oq_next = p->oq_next;
    else
        hs->oq_head = p->oq_next;
    if (p->oq_next != NULL)
        p->oq_next->oq_prev = p->oq_prev;
    else
        hs->oq_tail = p->oq_prev;
    p->oq_prev = p->oq_next = NULL;
    p->open_pending = false;
    hs->oq_len--;
}

/* Opens p now when the step's budget allows (or it is an internal topic's, which its
 * coordinator loads at once), else queues it for the work timer. */
static void part_open_or_queue(struct hshard *hs, struct hpart *p)
{
    if (hs_step_has_budget(hs) || h_topic_internal(p->topic, strlen(p->topic))) {
        hs->step_ops++;
        part_open_log(p);
        return;
    }
    hs_part_set_offline(p, true);
    oq_push(hs, p);
}

/* Reopens p's log (its storage settings changed) now when the step's budget allows, else
 * queues the reopen and serves from the open log until its turn: a broker-wide change reopens
 * every partition of the node, which one step must not do at once. */
static void part_reopen_or_queue(struct hshard *hs, struct hpart *p)
{
    LM_ASSERT(p->log != NULL && !hs_part_busy(p));
    if (hs_step_has_budget(hs) || h_topic_internal(p->topic, strlen(p->topic))) {
        hs->step_ops++;
        part_reopen(hs, p);
        return;
    }
    oq_push(hs, p);
}

static void oq_push(struct hshard *hs, struct hpart *p)
{
    if (p->open_pending)
        return;
    p->open_pending = true;
    p->oq_prev = hs->oq_tail;
    p->oq_next = NULL;
    if (hs->oq_tail != NULL)
        hs->oq_tail->oq_next = p;
    else
        hs->oq_head = p;
    hs->oq_tail = p;
    hs->oq_len++;
    work_arm(hs);
}

/* Removes dir now when the budget allows, else queues the removal; either way only while it
 * is still this topic's (or holds no topic id yet): another incarnation of the name may own it
 * by now (the close was deferred while a sync ran), or may have owned it all along (a
 * partition never opened because its directory was a newer incarnation than a restarted
 * node's image knew, see part_open_log). */
static void dir_remove_or_queue(struct hshard *hs, const char *dir, const uint8_t id[16])
{
    bool exists = false;
    if (hs_step_has_budget(hs) || hs->stopping) {
        hs->step_ops++;
        if (part_id_matches(dir, id, &exists) || !exists)
            hs_rm_dir(dir);
        else
            BLOG_INFO("%s: kept, another incarnation of the topic owns it", dir);
        return;
    }
    size_t len = strlen(dir);
    struct hdir_removal *r = malloc(sizeof(*r) + len + 1);
    if (r == NULL) {
        hs_rm_dir(dir); /* no memory to defer it: do it now */
        return;
    }
    r->next = NULL;
    memcpy(r->topic_id, id, 16);
    memcpy(r->dir, dir, len + 1);
    if (hs->rm_tail != NULL)
        hs->rm_tail->next = r;
    else
        hs->rm_head = r;
    hs->rm_tail = r;
    work_arm(hs);
}

static void work_run(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct hshard *hs = t->arg;
    hs->step_deadline_ms = broker_now_ms() + HANDLERS_STEP_BUDGET_MS;
    hs->step_ops = HANDLERS_STEP_OPS_MIN; /* the timer's steps are bounded by time alone */
    uint32_t done = 0;
    /* Removals first: a name deleted and created again gets its old directory out of the way
     * (an old directory found at open is removed by its topic-id check anyway). */
    while (hs->rm_head != NULL && (done++ < 8 || hs_step_has_budget(hs))) {
        struct hdir_removal *r = hs->rm_head;
        hs->rm_head = r->next;
        if (hs->rm_head == NULL)
            hs->rm_tail = NULL;
        bool exists = false;
        if (part_id_matches(r->dir, r->topic_id, &exists) || !exists)
            hs_rm_dir(r->dir);
        free(r);
    }
    while (hs->oq_head != NULL && (done++ < 8 || hs_step_has_budget(hs))) {
        struct hpart *p = hs->oq_head;
        oq_remove(hs, p);
        if (p->log != NULL) { /* its storage settings changed */
            if (hs_part_busy(p))
                p->reopen_pending = true;
            else
                part_reopen(hs, p);
            continue;
        }
        part_open_log(p);
        if (p->log != NULL)
            hs_wake_waiters(hs, p);
    }
    hs->step_deadline_ms = 0;
    if (hs->rm_head != NULL || hs->oq_head != NULL)
        work_arm(hs);
    else
        BLOG_DEBUG("shard %u: partition work queue empty", hs->id);
}

void hs_topic_free(struct hshard *hs, struct htopic *t, bool delete_dirs)
{
    for (int32_t i = 0; i < t->part_cap; i++)
        if (t->parts[i] != NULL)
            part_close(hs, t->parts[i], delete_dirs);
    free(t->parts);
    free(t);
}

/* p's replica set follows the image (the replicas holding its data): a reassignment that
 * reordered them moves its preferred leader, one that finished changed them (the leader's
 * follower bookkeeping starts again). */
static void part_replicas_follow(struct hpart *p, const struct lm_meta_topic *m)
{
    int32_t reps[LM_META_REPLICATION_MAX];
    int16_t n = lm_meta_topic_current_replicas(m, p->partition, reps);
    if (!p->replicated || n < 1 ||
        (n == p->rf && memcmp(reps, p->replicas, (size_t)n * sizeof(int32_t)) == 0))
        return;
    bool same_set = n == p->rf;
    for (int16_t i = 0; i < n && same_set; i++) {
        bool have = false;
        for (int16_t j = 0; j < n && !have; j++)
            have = p->replicas[j] == reps[i];
        same_set = have;
    }
    memcpy(p->replicas, reps, (size_t)n * sizeof(int32_t));
    p->rf = n;
    if (!same_set) {
        BLOG_INFO("partition %s-%d: replica set changed (%d replicas)", p->topic, p->partition, n);
        p->start_acked = 0; /* positions changed: the log start goes out again */
    }
    hs_isr_reset(p, broker_now_ms());
}

/* Whether p, which the image no longer lists here, may close and delete its data now: not
 * while its Raft group (as this replica knows it) still counts it as a voter, which a cancel
 * after its promotion leaves until the leader removes it, for at most HANDLERS_LEAVE_GRACE_MS
 * (a removed replica may never hear of its removal). */
static void topic_sync_parts(struct hshard *hs, struct htopic *t);

static bool part_may_leave(struct hshard *hs, struct hpart *p)
{
    uint64_t now = broker_now_ms();
    /* A learner counts as much as a voter: it may be promoted at any moment (its leader sees
     * it caught up), and a voter that dropped its copy would vote with an empty log. So does
     * a replica a leader appended to within the grace, whatever its own configuration says
     * (it may be behind the one adding it back). */
    bool member = false;
    if (p->replicated && p->part != NULL && !p->dead) {
        const struct raft_conf *c = raft_conf(partition_raft(p->part));
        uint32_t self = (uint32_t)hs->node->cfg->node_id + 1u;
        /* A leader hears from no leader: while it leads, its group counts it (it hands the
         * leadership over before it is removed, hs_reassign.c), so it is its own contact. */
        if (partition_is_leader(p->part)) {
            p->leader_contact_ms = now;
            if (p->leave_at_ms != 0)
                p->leave_at_ms = now + HANDLERS_LEAVE_GRACE_MS;
        }
        member =
            raft_conf_is_voter(c, self) || raft_conf_is_learner(c, self) ||
            (p->leader_contact_ms != 0 && now < p->leader_contact_ms + HANDLERS_LEAVE_GRACE_MS);
    }
    if (!member)
        return true;
    if (p->leave_at_ms != 0 && now >= p->leave_at_ms) {
        /* The grace is for a replica its group removed without telling it. Only an image
         * known to be current says that: one that lags (the controller leader out of reach,
         * the metadata log failed) may predate a reassignment that added this replica back,
         * and the group counts this copy as a voter. Deleting a voter's log lets an empty
         * copy vote and count toward commits (whole-cluster simulation seed 82518 on
         * eb2d8c3: node 3's image, stuck at metadata offset 33 for 20 s, still had it moved
         * off by offset 25 while offsets 36 and 66 had moved it back; node 3 deleted its
         * copy while a voter of epoch 3). */
        if (hs->node->ctl == NULL || controller_image_fresh(hs->node->ctl, now))
            return true;
        if (!p->leave_held)
            BLOG_INFO("partition %s-%d: no longer a replica in this node's metadata and still "
                      "a member of its group, but the metadata may be behind: kept until it is "
                      "current",
                      p->topic, p->partition);
        p->leave_held = true;
        return false;
    }
    if (p->leave_at_ms == 0) {
        p->leave_at_ms = now + HANDLERS_LEAVE_GRACE_MS;
        hs->leaving++;
        BLOG_INFO("partition %s-%d: no longer a replica here, still a member of its group: "
                  "leaving once removed from it",
                  p->topic, p->partition);
    }
    return false;
}

void hs_leaving_check(struct hshard *hs)
{
    if (hs->leaving == 0)
        return;
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            topic_sync_parts(hs, t);
}

/* Opens the owned partitions of t below its partition count that are not open yet, and
 * reopens logs whose storage settings changed. */
static void topic_sync_parts(struct hshard *hs, struct htopic *t)
{
    int32_t n = t->meta->partition_count;
    if (n > t->part_cap) {
        struct hpart **np = realloc(t->parts, (size_t)n * sizeof(*np));
        if (np == NULL) {
            BLOG_ERROR("topic %s: out of memory growing partitions", t->meta->name);
            return;
        }
        memset(np + t->part_cap, 0, (size_t)(n - t->part_cap) * sizeof(*np));
        t->parts = np;
        t->part_cap = n;
    }
    size_t name_len = strlen(t->meta->name);
    uint32_t reopens = 0;
    for (int32_t i = 0; i < n; i++) {
        if (hs_owner(hs, t->meta->name, name_len, i) != hs->id)
            continue;
        if (!hs_local_replica(hs->node, t->meta, i)) {
            if (t->parts[i] != NULL && i < t->part_cap && part_may_leave(hs, t->parts[i])) {
                /* a reassignment moved it off this node (its Raft group removed this
                 * replica before the controller finished the move), or a cancel took back
                 * a replica that was being added: its data goes */
                BLOG_INFO("partition %s-%d: no longer a replica here; closing and deleting it",
                          t->meta->name, i);
                t->parts[i]->keep_votes = true; /* it may be moved back (partition_votes.h) */
                part_close(hs, t->parts[i], true);
                t->parts[i] = NULL;
            }
            continue;
        }
        struct hpart *p = t->parts[i];
        if (p != NULL && p->leave_at_ms != 0) { /* listed again */
            p->leave_at_ms = 0;
            p->leave_held = false;
            hs->leaving--;
        }
        bool grows = p != NULL && !p->grow && p->rf == 1 && lm_meta_topic_reassigning(t->meta, i);
        if (grows) /* its next open makes it a Raft group that can take peers */
            p->grow = true;
        if (p != NULL && (p->open_pending || p->idle_closed)) {
            storage_cfg_of(&t->settings, &p->scfg); /* read when its turn to open comes */
            p->write_caching = t->settings.write_caching;
            continue;
        }
        if (grows && !p->replicated) {
            /* a reassignment grows a partition of one replica: its log reopens as a Raft
             * group (hs_reassign.c adds the peers) */
            BLOG_INFO("partition %s-%d: reassigned from one replica: reopening it as a Raft "
                      "group",
                      t->meta->name, i);
            if (hs_part_busy(p))
                p->reopen_pending = true;
            else if (p->log != NULL)
                part_reopen(hs, p);
            continue;
        }
        if (p != NULL)
            part_replicas_follow(p, t->meta);
        if (p != NULL) {
            struct storage_config c;
            storage_cfg_of(&t->settings, &c);
            if (storage_cfg_same(&c, &p->scfg) && p->write_caching == t->settings.write_caching)
                continue;
            p->scfg = c;
            p->write_caching = t->settings.write_caching;
            if (p->log == NULL) /* offline: the tick's next open reads the new settings */
                continue;
            /* Storage reads its config at open: reopen (recovery from the checkpoint). */
            BLOG_DEBUG("partition %s-%d: storage settings changed: reopening its log",
                       t->meta->name, i);
            reopens++;
            if (hs_part_busy(p)) {
                p->reopen_pending = true; /* when the sync ends */
                continue;
            }
            part_reopen_or_queue(hs, p);
            continue;
        }
        t->parts[i] = part_new(t, i);
        if (t->parts[i] == NULL) {
            BLOG_ERROR("partition %s-%d: out of memory", t->meta->name, i);
        } else {
            t->parts[i]->hs = hs;
            part_open_or_queue(hs, t->parts[i]);
        }
    }
    if (reopens > 0)
        BLOG_INFO("topic %s: storage settings changed: reopening %u partition logs of shard %u",
                  t->meta->name, reopens, hs->id);
}

const struct lm_config_entry *hs_topic_defaults(const struct hshard *hs, size_t *count)
{
    if (hs->topic_defaults == NULL) {
        *count = hs->node->broker_topic_config_count;
        return hs->node->broker_topic_configs;
    }
    *count = hs->topic_default_count;
    return hs->topic_defaults;
}

/* hshard.topic_defaults for image st (which the shard holds from now on). */
static void topic_defaults_build(struct hshard *hs, const struct lm_meta_state *st)
{
    const struct handlers_ctx *h = hs->node;
    const struct lm_meta_broker_configs *layer[2] = {
        lm_meta_state_broker_configs(st, h->cfg->node_id),
        lm_meta_state_broker_configs(st, LM_META_BROKER_DEFAULT)};
    size_t n = h->broker_topic_config_count;
    for (int l = 0; l < 2; l++)
        n += layer[l] != NULL ? layer[l]->count : 0;
    free(hs->topic_defaults);
    hs->topic_defaults = malloc((n ? n : 1) * sizeof(*hs->topic_defaults));
    hs->topic_default_count = 0;
    if (hs->topic_defaults == NULL) {
        BLOG_ERROR("out of memory building the dynamic topic defaults; server.properties only");
        return;
    }
    size_t k = 0;
    for (int l = 0; l < 2; l++)
        for (size_t i = 0; layer[l] != NULL && i < layer[l]->count; i++)
            hs->topic_defaults[k++] = layer[l]->configs[i];
    for (size_t i = 0; i < h->broker_topic_config_count; i++)
        hs->topic_defaults[k++] = h->broker_topic_configs[i];
    hs->topic_default_count = k;
}

static void settings_of(const struct hshard *hs, const struct lm_meta_topic *m,
                        struct lm_topic_settings *st)
{
    size_t nd = 0;
    const struct lm_config_entry *d = hs_topic_defaults(hs, &nd);
    if (lm_topic_settings_resolve(m->configs, m->config_count, d, nd, st) != 0) {
        BLOG_WARN("topic %s: invalid config, using defaults", m->name);
        lm_topic_settings_resolve(NULL, 0, d, nd, st);
    }
}

void hs_refresh(struct hshard *hs)
{
    struct lm_meta_store *meta = hs->node->meta;
    uint64_t v = lm_meta_store_version(meta);
    if (v == hs->version && hs->snap != NULL)
        return;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(meta);
    const struct lm_meta_state *st = &snap->state;
    /* Opens and directory removals beyond one step's budget go to the work timer. A single
     * node opens at least HANDLERS_STEP_OPS_MIN at once (CreateTopics answers with its
     * partitions usable). A cluster's partitions are usable only once their Raft group has a
     * leader, and opening a replicated one makes several synchronous fsyncs (its directory,
     * checkpoint, Raft state): a thousand at once held shard 0, which runs the controller and
     * SWIM, for seconds and got nodes fenced while a large topic was created. There the step is
     * bounded by time alone, as the work timer's are. */
    hs->step_deadline_ms = broker_now_ms() + HANDLERS_STEP_BUDGET_MS;
    hs->step_ops = hs_cluster(hs->node) ? HANDLERS_STEP_OPS_MIN : 0;
    size_t nb = st->topic_count * 2 + 16;
    struct htopic **nbk = calloc(nb, sizeof(*nbk));
    if (nbk == NULL) {
        lm_meta_snapshot_release(snap);
        BLOG_ERROR("out of memory refreshing metadata");
        return;
    }
    topic_defaults_build(hs, st);
    /* 1: mark the topics that survive (same name and id). */
    for (size_t b = 0; b < hs->bucket_count; b++)
        for (struct htopic *t = hs->buckets[b]; t != NULL; t = t->next)
            t->seen = false;
    for (size_t i = 0; i < st->topic_count; i++) {
        const struct lm_meta_topic *m = &st->topics[i];
        struct htopic *t = hs_topic(hs, m->name, strlen(m->name));
        if (t != NULL && memcmp(t->meta->id, m->id, 16) == 0)
            t->seen = true;
    }
    /* 2: delete the others first, so a topic deleted and created again under the same name
     * gets a fresh directory. */
    for (size_t b = 0; b < hs->bucket_count; b++) {
        struct htopic **pt = &hs->buckets[b];
        while (*pt != NULL) {
            struct htopic *t = *pt;
            if (t->seen) {
                pt = &t->next;
                continue;
            }
            *pt = t->next;
            BLOG_INFO("topic %s (shard %u): deleted", t->meta->name, hs->id);
            hs_topic_free(hs, t, true);
        }
    }
    /* 3: build the new table, opening the partitions this shard owns. */
    for (size_t i = 0; i < st->topic_count; i++) {
        const struct lm_meta_topic *m = &st->topics[i];
        size_t len = strlen(m->name);
        struct htopic *t = hs_topic(hs, m->name, len);
        if (t == NULL) {
            /* New: not in the old chains, so it goes straight into the new table. */
            if ((t = calloc(1, sizeof(*t))) == NULL) {
                BLOG_ERROR("topic %s: out of memory", m->name);
                continue;
            }
            uint64_t h = lm_fnv1a64(m->name, len) % nb;
            t->next = nbk[h];
            nbk[h] = t;
        }
        t->meta = m;
        settings_of(hs, m, &t->settings);
        topic_sync_parts(hs, t);
    }
    /* Relink every topic into the new buckets (the old chains are read before relinking). */
    struct htopic *all = NULL;
    for (size_t b = 0; b < hs->bucket_count; b++) {
        struct htopic *t = hs->buckets[b];
        while (t != NULL) {
            struct htopic *next = t->next;
            t->next = all;
            all = t;
            t = next;
        }
    }
    free(hs->buckets);
    hs->buckets = nbk;
    hs->bucket_count = nb;
    while (all != NULL) {
        struct htopic *next = all->next;
        uint64_t h = lm_fnv1a64(all->meta->name, strlen(all->meta->name)) % nb;
        all->next = nbk[h];
        nbk[h] = all;
        all = next;
    }
    hs->topic_count = st->topic_count;
    if (hs->snap != NULL)
        lm_meta_snapshot_release(hs->snap);
    hs->snap = snap;
    hs->version = v;
}

int hs_create_topic(struct hshard *hs, const char *name, int32_t partitions)
{
    struct lm_meta_record r = {0};
    r.type = LM_META_TOPIC_CREATE;
    r.topic = name;
    r.partition_count = partitions;
    int rc = lm_meta_new_topic_id(r.topic_id);
    if (rc == 0 && hs_cluster(hs->node)) {
        /* The controller creates it; as Kafka's auto-creation, the client hears
         * LEADER_NOT_AVAILABLE until the topic is there, and asks again. */
        struct lm_meta_snapshot *snap = lm_meta_store_snapshot(hs->node->meta);
        int32_t *ids = NULL;
        int16_t rf = hs->node->cfg->default_replication_factor > 0
                         ? (int16_t)hs->node->cfg->default_replication_factor
                         : 1;
        rc = hs_assign(&snap->state, 0, partitions, rf, &ids);
        lm_meta_snapshot_release(snap);
        if (rc == 0) {
            r.replicas = ids;
            r.replication_factor = rf;
            rc = hs_submit_detached(hs, &r);
            free(ids);
        }
        if (rc == 0 || rc == LM_E_AGAIN) {
            BLOG_INFO("topic %s: auto-creation with %d partitions sent to the controller", name,
                      partitions);
            return LM_E_AGAIN;
        }
        return rc;
    }
    if (rc == 0)
        rc = lm_meta_store_commit(hs->node->meta, &r);
    if (rc == 0)
        BLOG_INFO("topic %s auto-created with %d partitions", name, partitions);
    hs_refresh(hs);
    return rc;
}

void hs_first_election_check(struct hshard *hs, struct hpart *p, uint64_t now_ms)
{
    if (!p->election_held || p->part == NULL)
        return;
    bool release = now_ms >= p->election_hold_until_ms || partition_leader_epoch(p->part) != 0;
    if (!release) {
        /* the preferred replica's node gone (or never registered): no reason to wait */
        const struct lm_meta_broker *b =
            hs->snap != NULL ? lm_meta_state_broker(&hs->snap->state, p->replicas[0]) : NULL;
        release = b == NULL || b->fenced;
    }
    if (release) {
        partition_hold_elections(p->part, false);
        p->election_held = false;
    }
}
