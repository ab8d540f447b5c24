/* Idempotent producers: InitProducerId 0-5, DescribeProducers 0, and the Produce
 * hooks (handlers.h struct handlers_producer_hooks) that run lm_producer_check before an
 * append and lm_producer_record after it, on the shard owning the partition.
 *
 * Producer state of a partition lives on its owner shard, created on first use: the
 * snapshot file `producer.snapshot` in the partition directory (written at clean shutdown,
 * single-voter partitions only) or the background checkpoint `producer.checkpoint` (below),
 * whichever covers more, and then the batch headers of the log from its offset on (Kafka's
 * ProducerStateManager recovery); after a kill -9 the checkpoint or old snapshot (or none)
 * plus the log rebuild the same state, so a retried batch is still recognised as a
 * duplicate.
 *
 * Producer ids come from the metadata store in blocks of PRODUCER_ID_BLOCK per shard
 * (lm_meta_store_alloc_producer_ids: ids are never reused after a restart; in a cluster they
 * come from blocks the controller granted the node, and InitProducerId answers
 * COORDINATOR_LOAD_IN_PROGRESS, as Kafka's does, while the node has none yet). InitProducerId with
 * a known producer id and epoch (v3+, KIP-360) bumps the epoch; Kafka 4 would hand out a new id for
 * a non-transactional producer, which clients accept just the same. A transactional id is refused
 * (transactions are not served yet): see init_producer_id() for the error chosen and why. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/handlers/group_internal.h"
#include "broker/handlers/txn_internal.h"
#include "broker/log.h"
#include "broker/producer/producer_state.h"
#include "common/lm_assert.h"
#include "protocol/crc32c.h"
#include "protocol/kafka_messages.h"
#include "protocol/records.h"

#define PRODUCER_ID_BLOCK 1000
/* Producers remembered per partition (allocated on first use; the idlest is evicted). */
#define PRODUCER_MAX_PER_PARTITION 1024
#define PRODUCER_BUCKETS           256
#define PRODUCER_SNAPSHOT_NAME     "producer.snapshot"

struct pstate {
    uint8_t topic_id[16];
    int32_t partition;
    struct lm_producer_state *s;
    bool dirty; /* changed since the last snapshot */
    struct pstate *next;
};

/* The shard's one checkpoint in the making (s NULL: none): the state of the log replayed
 * up to next, on its way to target. */
struct ckpt_job {
    struct lm_producer_state *s;
    uint8_t topic_id[16];
    int32_t partition;
    int64_t next, target;
    int32_t epoch; /* of the batch ending at next - 1, -1 when none was seen */
};

struct pshard {
    struct hshard *hs;
    struct pstate *buckets[PRODUCER_BUCKETS];
    int64_t pid_next, pid_end;
    struct ckpt_job job;
};

static size_t bucket_of(const uint8_t id[16], int32_t partition)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < 16; i++)
        h = (h ^ id[i]) * 1099511628211ull;
    h = (h ^ (uint32_t)partition) * 1099511628211ull;
    return (size_t)(h % PRODUCER_BUCKETS);
}

/* ---- loading: snapshot + log replay ---------------------------------------------------------- */

struct replay_ctx {
    struct lm_producer_state *s;
    int64_t n_bad;
    int64_t now_ms;
};

/* The log is untrusted input here: a batch whose producer fields cannot be state (negative
 * epoch or sequence) is skipped and counted, never the end of the partition's producers. */
static int replay_batch(void *ctx, const uint8_t *batch, size_t len,
                        const struct kafka_batch_header *h)
{
    struct replay_ctx *rc = ctx;
    struct lm_producer_state *s = rc->s;
    if (h->producer_id < 0)
        return 0;
    struct lm_producer_log_batch b = {
        .producer_id = h->producer_id,
        .epoch = h->producer_epoch,
        .base_seq = h->base_sequence,
        .last_offset_delta = h->last_offset_delta,
        .base_offset = h->base_offset,
        .max_timestamp_ms = h->max_timestamp,
        .is_control = (h->attributes & KAFKA_BATCH_ATTR_CONTROL) != 0,
        .transactional = (h->attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) != 0,
        .coordinator_epoch = -1,
    };
    if (b.is_control) {
        /* only transaction markers speak for a producer */
        int16_t type;
        if (kafka_txn_marker_parse(batch, len, h, &type, &b.coordinator_epoch) != 0)
            return 0;
    }
    if (lm_producer_replay(s, &b, rc->now_ms) != 0)
        rc->n_bad++;
    return 0;
}

static int part_file_path(const struct hpart *p, const char *name, char *out, size_t cap)
{
    char dir[BROKER_PATH_BYTES_MAX + 300];
    int rc = storage_partition_dir(dir, sizeof(dir), p->hs->node->cfg->log_dirs[0], p->topic,
                                   p->partition);
    if (rc != 0)
        return rc;
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap ? 0 : LM_E_TOO_LARGE;
}

static int snapshot_path(const struct hpart *p, char *out, size_t cap)
{
    return part_file_path(p, PRODUCER_SNAPSHOT_NAME, out, cap);
}

/* Reads the snapshot into s; returns the offset to replay from (log start if none). A
 * replicated partition has none (a snapshot written at some log end can be wrong after Raft
 * truncated and refilled the log below it, as a follower's log is): its state comes from the
 * checkpoint and the log each time this node becomes its leader, and is dropped when it stops
 * leading. */
static int64_t snapshot_load(const struct hpart *p, struct lm_producer_state *s)
{
    int64_t start = storage_log_start_offset(p->log), end = storage_log_end_offset(p->log);
    if (p->replicated)
        return start;
    char path[BROKER_PATH_BYTES_MAX + 340];
    if (snapshot_path(p, path, sizeof(path)) != 0)
        return start;
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return start;
    uint8_t *buf = NULL;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) > 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n)) != NULL && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf == NULL)
        return start;
    int64_t next = -1;
    int rc = lm_producer_snapshot_decode(s, buf, (size_t)n, &next);
    free(buf);
    /* A snapshot beyond the log end describes batches the log lost: rebuild from the log. */
    if (rc != 0 || next < start || next > end) {
        BLOG_WARN("partition %s-%d: producer snapshot unusable (%s, offset %lld, log %lld..%lld);"
                  " rebuilding from the log",
                  p->topic, p->partition, rc != 0 ? lm_strerror(rc) : "range", (long long)next,
                  (long long)start, (long long)end);
        lm_producer_state_clear(s);
        return start;
    }
    return next;
}

/* ---- checkpoints: the producer state of the committed, durable log -------------------------- */

/* Every replica of a partition, leader or follower, single voter or not, writes
 * `producer.checkpoint` in the background (producer_partition_tick): the producer state of the
 * log below an offset that was committed and durable here when it was written, so no Raft
 * truncation can take that prefix back. A node that becomes leader, or opens the log after a
 * crash, loads it and replays only the log after it instead of the whole log. The file: magic,
 * version, topic id, the offset it covers up to (next), the leader epoch of the batch ending
 * at next - 1 (-1: none), the CRC-32C of these, then the state as lm_producer_snapshot_encode
 * writes it (with its own CRC). It is written without an fsync (a torn or lost file fails its
 * checks and the log is replayed from the start). Loading checks the topic id and, where the
 * log still holds offset next - 1, that a batch of that epoch ends there: by Raft's log
 * matching the prefix is then the one the checkpoint saw. */
#define PRODUCER_CHECKPOINT_NAME "producer.checkpoint"
#define CKPT_MAGIC               0x4C4D5043u /* "LMPC" */
#define CKPT_VERSION             2           /* 1: before transactions were tracked */
#define CKPT_HEADER_BYTES        (4 + 2 + 16 + 8 + 4 + 4)
#define CKPT_FILE_BYTES_MAX      ((size_t)64 << 20)
#define CKPT_STEP_BYTES          ((uint64_t)32 << 20) /* log replayed per shard tick */

struct ckpt_header {
    uint8_t topic_id[16];
    int64_t next;
    int32_t epoch;
};

static void put_be(uint8_t *out, uint64_t v, int bytes)
{
    for (int i = bytes - 1; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t get_be(const uint8_t *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++)
        v = v << 8 | in[i];
    return v;
}

static void ckpt_header_encode(const struct ckpt_header *h, uint8_t out[CKPT_HEADER_BYTES])
{
    put_be(out, CKPT_MAGIC, 4);
    put_be(out + 4, CKPT_VERSION, 2);
    memcpy(out + 6, h->topic_id, 16);
    put_be(out + 22, (uint64_t)h->next, 8);
    put_be(out + 30, (uint32_t)h->epoch, 4);
    put_be(out + 34, crc32c_update(0, out, 34), 4);
}

static int ckpt_header_decode(const uint8_t *in, size_t len, struct ckpt_header *h)
{
    if (len < CKPT_HEADER_BYTES || get_be(in, 4) != CKPT_MAGIC)
        return LM_E_CORRUPT;
    if (get_be(in + 4, 2) != CKPT_VERSION)
        return LM_E_UNSUPPORTED;
    if (get_be(in + 34, 4) != crc32c_update(0, in, 34))
        return LM_E_CRC;
    memcpy(h->topic_id, in + 6, 16);
    h->next = (int64_t)get_be(in + 22, 8);
    h->epoch = (int32_t)(uint32_t)get_be(in + 30, 4);
    return h->next >= 0 ? 0 : LM_E_CORRUPT;
}

/* Reads a whole small file (at most max bytes) into *out (malloc'd). */
static int file_read_all(const char *path, size_t max, uint8_t **out, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? LM_E_NOT_FOUND : LM_E_IO;
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *buf = NULL;
    int rc = size < 0 ? LM_E_IO : (size_t)size > max ? LM_E_TOO_LARGE : 0;
    if (rc == 0 && (buf = malloc(size > 0 ? (size_t)size : 1)) == NULL)
        rc = LM_E_NOMEM;
    for (size_t got = 0; rc == 0 && got < (size_t)size;) {
        ssize_t n = pread(fd, buf + got, (size_t)size - got, (off_t)got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            rc = LM_E_IO;
        else
            got += (size_t)n;
    }
    close(fd);
    if (rc != 0) {
        free(buf);
        return rc;
    }
    *out = buf;
    *len = (size_t)size;
    return 0;
}

struct first_batch {
    bool found;
    struct kafka_batch_header h;
};

static int first_batch_fn(void *ctx, const uint8_t *batch, size_t len,
                          const struct kafka_batch_header *h)
{
    (void)batch;
    (void)len;
    struct first_batch *f = ctx;
    f->found = true;
    f->h = *h;
    return 1; /* one is enough */
}

/* Whether p's log is the history the checkpoint saw below h->next. */
static bool ckpt_prefix_matches(const struct hpart *p, const struct ckpt_header *h)
{
    if (memcmp(h->topic_id, p->topic_id, 16) != 0)
        return false;
    int64_t start = storage_log_start_offset(p->log), end = storage_log_end_offset(p->log);
    if (h->next > end)
        return false;
    if (h->next <= start)
        return true; /* only committed batches go below the log start */
    struct first_batch f = {0};
    int rc = group_log_scan_range(p->log, h->next - 1, h->next, 1, first_batch_fn, &f, NULL);
    return (rc == 0 || rc == 1) && f.found && kafka_batch_last_offset(&f.h) == h->next - 1 &&
           f.h.partition_leader_epoch == h->epoch;
}

/* Loads p's checkpoint into s when it fits p's log and covers more than `better_than`.
 * Returns the offset to replay from (>= the log start), or -1 with s untouched. */
static int64_t ckpt_load(const struct hpart *p, struct lm_producer_state *s, int64_t better_than,
                         int32_t *epoch_out)
{
    char path[BROKER_PATH_BYTES_MAX + 340];
    uint8_t *buf = NULL;
    size_t len = 0;
    if (part_file_path(p, PRODUCER_CHECKPOINT_NAME, path, sizeof(path)) != 0 ||
        file_read_all(path, CKPT_FILE_BYTES_MAX, &buf, &len) != 0)
        return -1;
    struct ckpt_header h;
    int64_t start = storage_log_start_offset(p->log), from = -1, snext = -1;
    int rc = ckpt_header_decode(buf, len, &h);
    if (rc == 0 && (h.next > start ? h.next : start) > better_than && ckpt_prefix_matches(p, &h)) {
        rc = lm_producer_snapshot_decode(s, buf + CKPT_HEADER_BYTES, len - CKPT_HEADER_BYTES,
                                         &snext);
        if (rc == 0 && snext == h.next) {
            from = h.next > start ? h.next : start;
            if (epoch_out != NULL)
                *epoch_out = h.epoch;
        } else {
            lm_producer_state_clear(s);
            BLOG_WARN("partition %s-%d: producer checkpoint unusable (%s); not used", p->topic,
                      p->partition, rc != 0 ? lm_strerror(rc) : "offset");
        }
    }
    free(buf);
    return from;
}

/* Reads only the checkpoint's header: the offset it covers up to, or -1. */
static int64_t ckpt_peek(const struct hpart *p)
{
    char path[BROKER_PATH_BYTES_MAX + 340];
    if (part_file_path(p, PRODUCER_CHECKPOINT_NAME, path, sizeof(path)) != 0)
        return -1;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    uint8_t buf[CKPT_HEADER_BYTES];
    ssize_t n = pread(fd, buf, sizeof(buf), 0);
    close(fd);
    struct ckpt_header h;
    if (n != (ssize_t)sizeof(buf) || ckpt_header_decode(buf, sizeof(buf), &h) != 0 ||
        memcmp(h.topic_id, p->topic_id, 16) != 0)
        return -1;
    return h.next;
}

static int ckpt_write(const struct hpart *p, const struct ckpt_job *j)
{
    char path[BROKER_PATH_BYTES_MAX + 340], tmp[BROKER_PATH_BYTES_MAX + 350];
    int rc = part_file_path(p, PRODUCER_CHECKPOINT_NAME, path, sizeof(path));
    if (rc != 0)
        return rc;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    size_t body = lm_producer_snapshot_size(j->s), n = 0;
    uint8_t *buf = malloc(CKPT_HEADER_BYTES + body);
    if (buf == NULL)
        return LM_E_NOMEM;
    struct ckpt_header h = {.next = j->next, .epoch = j->epoch};
    memcpy(h.topic_id, j->topic_id, 16);
    ckpt_header_encode(&h, buf);
    rc = lm_producer_snapshot_encode(j->s, j->next, buf + CKPT_HEADER_BYTES, body, &n);
    if (rc == 0) {
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        size_t total = CKPT_HEADER_BYTES + n;
        bool ok = fd >= 0 && write(fd, buf, total) == (ssize_t)total;
        if (fd >= 0)
            close(fd);
        if (!ok || rename(tmp, path) != 0) {
            rc = LM_E_IO;
            unlink(tmp);
        }
    }
    free(buf);
    return rc;
}

static void ckpt_job_end(struct pshard *ps)
{
    lm_producer_state_free(ps->job.s);
    memset(&ps->job, 0, sizeof(ps->job));
}

struct ckpt_replay {
    struct replay_ctx r;
    bool scanned;
    int32_t epoch;
};

static int ckpt_replay_batch(void *ctx, const uint8_t *batch, size_t len,
                             const struct kafka_batch_header *h)
{
    struct ckpt_replay *c = ctx;
    c->scanned = true;
    c->epoch = h->partition_leader_epoch;
    return replay_batch(&c->r, batch, len, h);
}

/* Starts the shard's checkpoint job on p: from p's checkpoint (or its log start) up to what is
 * committed and durable now. */
static void ckpt_start(struct pshard *ps, struct hpart *p, uint64_t size)
{
    p->pck_size = size; /* tried at this size: the next try waits for more growth */
    int64_t target = partition_high_watermark(p->part);
    int64_t durable = partition_durable_offset(p->part);
    if (durable < target)
        target = durable;
    if (target <= p->pck_next)
        return;
    struct ckpt_job *j = &ps->job;
    if (lm_producer_state_new(PRODUCER_MAX_PER_PARTITION, ps->hs->node->producer_expiration_ms,
                              &j->s) != 0) {
        j->s = NULL;
        return;
    }
    j->epoch = -1;
    int64_t from = ckpt_load(p, j->s, INT64_MIN, &j->epoch);
    if (from < 0) {
        from = storage_log_start_offset(p->log);
        j->epoch = -1;
    }
    if (from >= target) {
        ckpt_job_end(ps);
        return;
    }
    memcpy(j->topic_id, p->topic_id, 16);
    j->partition = p->partition;
    j->next = from;
    j->target = target;
}

/* One bounded step of the job on p; writes the checkpoint once the job reached its target. */
static void ckpt_step(struct pshard *ps, struct hpart *p)
{
    struct ckpt_job *j = &ps->job;
    if (j->target > storage_log_end_offset(p->log)) {
        ckpt_job_end(ps); /* the log is no longer the one the job began on */
        return;
    }
    struct ckpt_replay c = {.r = {j->s, 0, group_now_ms(ps->hs)}, .epoch = -1};
    int64_t next = j->next;
    int rc = group_log_scan_range(p->log, j->next, j->target, CKPT_STEP_BYTES, ckpt_replay_batch,
                                  &c, &next);
    if (rc != 0) {
        BLOG_WARN("partition %s-%d: producer checkpoint: %s", p->topic, p->partition,
                  lm_strerror(rc));
        ckpt_job_end(ps);
        return;
    }
    if (c.scanned)
        j->epoch = c.epoch;
    bool progressed = next > j->next;
    j->next = next;
    if (next < j->target && progressed)
        return; /* the next tick goes on */
    if (j->next > p->pck_next && (rc = ckpt_write(p, j)) == 0) {
        p->pck_next = j->next;
        BLOG_DEBUG("partition %s-%d: producer checkpoint at %lld", p->topic, p->partition,
                   (long long)j->next);
    } else if (rc != 0) {
        BLOG_WARN_LIMITED("partition %s-%d: producer checkpoint not written: %s", p->topic,
                          p->partition, lm_strerror(rc));
    }
    ckpt_job_end(ps);
}

void producer_partition_tick(struct pshard *ps, struct hpart *p)
{
    if (ps == NULL || p->log == NULL || p->part == NULL || p->failed || p->dead)
        return;
    if (!p->pck_known) {
        p->pck_known = true;
        p->pck_next = ckpt_peek(p);
        p->pck_size = p->pck_next >= 0 ? storage_log_size_bytes(p->log) : 0;
    }
    struct ckpt_job *j = &ps->job;
    if (j->s != NULL) {
        if (j->partition == p->partition && memcmp(j->topic_id, p->topic_id, 16) == 0)
            ckpt_step(ps, p);
        return;
    }
    /* a log whose end did not move since the last look did not grow: no segment walk */
    int64_t end = storage_log_end_offset(p->log);
    if (end == p->pck_end_seen)
        return;
    p->pck_end_seen = end;
    uint64_t size = storage_log_size_bytes(p->log);
    if (size < p->pck_size)
        p->pck_size = size; /* retention or compaction made it smaller */
    if (size - p->pck_size >= ps->hs->node->producer_checkpoint_bytes)
        ckpt_start(ps, p, size);
}

static struct pstate *pstate_get(struct pshard *ps, const struct hpart *p)
{
    size_t b = bucket_of(p->topic_id, p->partition);
    for (struct pstate *e = ps->buckets[b]; e != NULL; e = e->next)
        if (e->partition == p->partition && memcmp(e->topic_id, p->topic_id, 16) == 0)
            return e;
    if (p->log == NULL)
        return NULL;
    struct pstate *e = calloc(1, sizeof(*e));
    if (e == NULL)
        return NULL;
    if (lm_producer_state_new(PRODUCER_MAX_PER_PARTITION, ps->hs->node->producer_expiration_ms,
                              &e->s) != 0) {
        free(e);
        return NULL;
    }
    memcpy(e->topic_id, p->topic_id, 16);
    e->partition = p->partition;
    int64_t from = snapshot_load(p, e->s);
    bool snapshot_used = from > storage_log_start_offset(p->log);
    int64_t ck = ckpt_load(p, e->s, snapshot_used ? from : INT64_MIN, NULL);
    if (ck >= 0)
        from = ck;
    struct replay_ctx rctx = {e->s, 0, group_now_ms(ps->hs)};
    int rc = group_log_scan(p->log, from, replay_batch, &rctx);
    if (rc != 0) {
        BLOG_ERROR("partition %s-%d: producer state replay: %s", p->topic, p->partition,
                   lm_strerror(rc));
        lm_producer_state_free(e->s);
        free(e);
        return NULL;
    }
    if (rctx.n_bad > 0)
        BLOG_WARN("partition %s-%d: producer state: skipped %lld batches with bad producer "
                  "fields",
                  p->topic, p->partition, (long long)rctx.n_bad);
    BLOG_INFO("partition %s-%d: producer state loaded (%zu producers, replayed from %lld)",
              p->topic, p->partition, lm_producer_state_count(e->s), (long long)from);
    e->next = ps->buckets[b];
    ps->buckets[b] = e;
    return e;
}

/* ---- Produce hooks --------------------------------------------------------------------------- */

/* A refused batch that starts after what the state knows of its producer: a later epoch not
 * starting at 0, or a gap after the producer's last known sequence (not a replay of an older
 * batch, nor an older epoch). */
static bool seq_ahead(const struct kafka_batch_header *h, const struct lm_producer_check_result *r)
{
    if (r->error_code != KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER || r->known_epoch < 0)
        return false;
    if (h->producer_epoch > r->known_epoch)
        return h->base_sequence != 0;
    if (h->producer_epoch < r->known_epoch)
        return false;
    if (r->known_last_seq < 0)
        return h->base_sequence != 0;
    /* sequences wrap at INT32_MAX: "after" is within half the space past the last one */
    uint32_t dist = (uint32_t)h->base_sequence - (uint32_t)r->known_last_seq;
    if (h->base_sequence < r->known_last_seq)
        dist = (uint32_t)(h->base_sequence + (INT32_MAX - r->known_last_seq)) + 1u;
    return dist > 1u && dist < (1u << 30);
}

static int16_t before_append(struct hshard *hs, const char *topic, int32_t partition,
                             const uint8_t *batches, size_t len, int64_t *dup_offset)
{
    struct kafka_batch_header h;
    if (kafka_batch_header_parse(batches, len, &h) != 0)
        return KAFKA_CORRUPT_MESSAGE; /* validated before: cannot happen */
    if (h.producer_id < 0)
        return KAFKA_NONE; /* not idempotent */
    struct pshard *ps = hs->producers;
    LM_ASSERT(ps != NULL);
    const struct hpart *p = hs_part(hs, topic, strlen(topic), partition);
    LM_ASSERT(p != NULL);
    struct pstate *e = pstate_get(ps, p);
    if (e == NULL)
        return KAFKA_KAFKA_STORAGE_ERROR;
    struct lm_producer_check_result res;
    int32_t last =
        lm_producer_seq_add(h.base_sequence >= 0 ? h.base_sequence : 0, h.last_offset_delta);
    int rc = lm_producer_check(e->s, h.producer_id, h.producer_epoch, h.base_sequence, last, &res);
    if (rc != 0)
        return KAFKA_INVALID_RECORD;
    if (res.verdict == LM_PRODUCER_DUPLICATE) {
        /* Already in the log: success with the original offset, nothing appended. */
        *dup_offset = res.dup.first_offset;
        return KAFKA_NONE;
    }
    if (res.verdict == LM_PRODUCER_REJECT && p->replicated && seq_ahead(&h, &res)) {
        /* A batch ahead of what this leader's log holds of its producer. A leader that no
         * longer leads (cut off, its successor not heard of yet) sees exactly this when the
         * producer went on with the new leader: OUT_OF_ORDER_SEQUENCE_NUMBER would make the
         * client give up (librdkafka: a fatal error when the batch is the next it expects)
         * or bump its epoch for nothing. NOT_LEADER_OR_FOLLOWER sends it to refresh its
         * metadata and retry in order; where this node does lead, the batches before the
         * gap come first on the retry (a client retries in sequence order), and a gap that
         * stays ends in the client's delivery timeout and its epoch bump. */
        BLOG_INFO_LIMITED("partition %s-%d: producer %lld epoch %d seq %d..%d is ahead of this "
                          "leader's log (known epoch %d, last seq %d): answered "
                          "NOT_LEADER_OR_FOLLOWER",
                          topic, partition, (long long)h.producer_id, h.producer_epoch,
                          h.base_sequence, last, res.known_epoch, res.known_last_seq);
        return KAFKA_NOT_LEADER_OR_FOLLOWER;
    }
    if (res.verdict == LM_PRODUCER_REJECT) {
        /* A refusal makes the client bump its epoch or give up: worth a line each time. */
        BLOG_INFO_LIMITED("partition %s-%d: producer %lld epoch %d seq %d..%d refused (%s): "
                          "known epoch %d, last seq %d",
                          topic, partition, (long long)h.producer_id, h.producer_epoch,
                          h.base_sequence, last, kafka_error_name(res.error_code), res.known_epoch,
                          res.known_last_seq);
        return res.error_code;
    }
    int16_t txn_error;
    lm_producer_check_txn(e->s, h.producer_id, (h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) != 0,
                          &txn_error);
    if (txn_error != KAFKA_NONE)
        return txn_error;
    /* More batches of the same producer in one request must continue the sequence. */
    for (size_t pos = kafka_batch_total_size(&h); pos < len;) {
        struct kafka_batch_header n;
        if (kafka_batch_header_parse(batches + pos, len - pos, &n) != 0)
            return KAFKA_CORRUPT_MESSAGE;
        if (n.producer_id != h.producer_id || n.producer_epoch != h.producer_epoch ||
            n.base_sequence != lm_producer_seq_add(last, 1))
            return KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        last = lm_producer_seq_add(n.base_sequence, n.last_offset_delta);
        pos += kafka_batch_total_size(&n);
    }
    return KAFKA_NONE;
}

static void after_append(struct hshard *hs, const char *topic, int32_t partition,
                         const uint8_t *batches, size_t len, int64_t base_offset)
{
    struct kafka_batch_header h;
    if (kafka_batch_header_parse(batches, len, &h) != 0 || h.producer_id < 0)
        return;
    struct pshard *ps = hs->producers;
    const struct hpart *p = hs_part(hs, topic, strlen(topic), partition);
    LM_ASSERT(p != NULL);
    struct pstate *e = pstate_get(ps, p);
    if (e == NULL)
        return;
    int64_t off = base_offset, now = group_now_ms(hs);
    for (size_t pos = 0; pos < len;) {
        if (kafka_batch_header_parse(batches + pos, len - pos, &h) != 0)
            break;
        struct lm_producer_batch b = {
            .first_seq = h.base_sequence,
            .last_seq = lm_producer_seq_add(h.base_sequence, h.last_offset_delta),
            .first_offset = off,
            .last_offset = off + h.last_offset_delta,
            .timestamp_ms = h.max_timestamp,
        };
        int rc = lm_producer_record(e->s, h.producer_id, h.producer_epoch, &b, now);
        if (rc == 0 && (h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL))
            rc = lm_producer_txn_begin(e->s, h.producer_id, off);
        if (rc != 0)
            BLOG_WARN("partition %s-%d: producer %lld: record: %s", topic, partition,
                      (long long)h.producer_id, lm_strerror(rc));
        e->dirty = true;
        off += (int64_t)h.last_offset_delta + 1;
        pos += kafka_batch_total_size(&h);
    }
}

/* ---- transaction markers -------------------------------------------------------------------- */

int16_t producer_marker_check(struct hshard *hs, const struct hpart *p, int64_t producer_id,
                              int16_t epoch, int32_t coordinator_epoch)
{
    struct pstate *e = pstate_get(hs->producers, p);
    if (e == NULL)
        return KAFKA_KAFKA_STORAGE_ERROR;
    return lm_producer_check_marker(e->s, producer_id, epoch, coordinator_epoch);
}

void producer_marker_appended(struct hshard *hs, const struct hpart *p, int64_t producer_id,
                              int16_t epoch, int32_t coordinator_epoch)
{
    struct pstate *e = pstate_get(hs->producers, p);
    if (e == NULL)
        return; /* rebuilt from the log, marker included, when next loaded */
    int rc = lm_producer_marker(e->s, producer_id, epoch, coordinator_epoch, group_now_ms(hs));
    if (rc != 0)
        BLOG_WARN("partition %s-%d: producer %lld: marker: %s", p->topic, p->partition,
                  (long long)producer_id, lm_strerror(rc));
    e->dirty = true;
}

/* ---- shard lifecycle ------------------------------------------------------------------------- */

int producer_shard_start(struct hshard *hs, struct pshard **out)
{
    struct pshard *ps = calloc(1, sizeof(*ps));
    if (ps == NULL)
        return LM_E_NOMEM;
    ps->hs = hs;
    hs->producers = ps;
    *out = ps;
    return 0;
}

static const struct hpart *part_by_id(struct hshard *hs, const uint8_t id[16], int32_t partition)
{
    struct htopic *t = hs_topic_by_id(hs, id);
    if (t == NULL || partition >= t->part_cap)
        return NULL;
    return t->parts[partition];
}

static void snapshot_write(const struct hpart *p, struct pstate *e)
{
    char path[BROKER_PATH_BYTES_MAX + 340], tmp[BROKER_PATH_BYTES_MAX + 350];
    if (snapshot_path(p, path, sizeof(path)) != 0)
        return;
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    size_t cap = lm_producer_snapshot_size(e->s), n = 0;
    uint8_t *buf = malloc(cap);
    if (buf == NULL ||
        lm_producer_snapshot_encode(e->s, storage_log_end_offset(p->log), buf, cap, &n) != 0) {
        free(buf);
        BLOG_WARN("partition %s-%d: producer snapshot not written", p->topic, p->partition);
        return;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    bool ok = fd >= 0 && write(fd, buf, n) == (ssize_t)n && fdatasync(fd) == 0;
    if (fd >= 0)
        close(fd);
    free(buf);
    if (!ok || rename(tmp, path) != 0) {
        BLOG_WARN("partition %s-%d: producer snapshot: %s", p->topic, p->partition,
                  strerror(errno));
        unlink(tmp);
        return;
    }
    e->dirty = false;
}

void producer_shard_flush(struct pshard *ps)
{
    if (ps == NULL)
        return;
    for (size_t b = 0; b < PRODUCER_BUCKETS; b++)
        for (struct pstate *e = ps->buckets[b]; e != NULL; e = e->next) {
            const struct hpart *p = part_by_id(ps->hs, e->topic_id, e->partition);
            if (e->dirty && p != NULL && p->log != NULL && !p->replicated)
                snapshot_write(p, e);
        }
}

uint64_t producer_shard_count(const struct pshard *ps)
{
    uint64_t n = 0;
    for (size_t b = 0; ps != NULL && b < PRODUCER_BUCKETS; b++)
        for (const struct pstate *e = ps->buckets[b]; e != NULL; e = e->next)
            n += e->s != NULL ? lm_producer_state_count(e->s) : 0;
    return n;
}

int64_t producer_expire_period_ms(const struct hshard *hs)
{
    int64_t half = hs->node->producer_expiration_ms / 2;
    return half >= 10000 ? 10000 : half < 100 ? 100 : half;
}

void producer_shard_expire(struct pshard *ps, int64_t now_ms)
{
    if (ps == NULL)
        return;
    for (size_t b = 0; b < PRODUCER_BUCKETS; b++) {
        struct pstate **pe = &ps->buckets[b];
        while (*pe != NULL) {
            struct pstate *e = *pe;
            if (ps->job.s != NULL &&
                part_by_id(ps->hs, ps->job.topic_id, ps->job.partition) == NULL)
                ckpt_job_end(ps); /* its partition left this shard */
            /* A partition gone from this shard (topic deleted) drops its state. */
            if (part_by_id(ps->hs, e->topic_id, e->partition) == NULL) {
                *pe = e->next;
                lm_producer_state_free(e->s);
                free(e);
                continue;
            }
            if (lm_producer_expire(e->s, now_ms) > 0)
                e->dirty = true;
            pe = &e->next;
        }
    }
}

void producer_partition_reset(struct pshard *ps, const uint8_t topic_id[16], int32_t partition)
{
    if (ps == NULL)
        return;
    for (struct pstate **pe = &ps->buckets[bucket_of(topic_id, partition)]; *pe != NULL;
         pe = &(*pe)->next) {
        struct pstate *e = *pe;
        if (e->partition == partition && memcmp(e->topic_id, topic_id, 16) == 0) {
            *pe = e->next;
            lm_producer_state_free(e->s);
            free(e);
            return;
        }
    }
}

void producer_shard_stop(struct pshard *ps)
{
    if (ps == NULL)
        return;
    for (size_t b = 0; b < PRODUCER_BUCKETS; b++) {
        struct pstate *e = ps->buckets[b];
        while (e != NULL) {
            struct pstate *next = e->next;
            lm_producer_state_free(e->s);
            free(e);
            e = next;
        }
    }
    ckpt_job_end(ps);
    if (ps->hs->producers == ps)
        ps->hs->producers = NULL;
    free(ps);
}

/* ---- InitProducerId (0-5) -------------------------------------------------------------------- */

static int alloc_producer_id(struct pshard *ps, int64_t *out);

int producer_alloc_id(struct hshard *hs, int64_t *out)
{
    LM_ASSERT(hs->producers != NULL);
    return alloc_producer_id(hs->producers, out);
}

static void pid_block_answer(struct hshard *hs, void *arg, int rc)
{
    struct lm_meta_store *meta = arg;
    bool again = lm_meta_store_producer_block_answer(meta, rc);
    if (rc != 0 && !again)
        BLOG_DEBUG("producer ids: no block granted yet: %s", lm_strerror(rc));
    /* another node's block came first: ask for the one after it */
    if (again && hs != NULL)
        producer_ids_refill(hs);
}

void producer_ids_refill(struct hshard *hs)
{
    if (!hs_cluster(hs->node) || hs->stopping)
        return;
    struct lm_meta_record r;
    if (!lm_meta_store_producer_block_wanted(hs->node->meta, &r))
        return;
    int rc = hs_submit_answered(hs, &r, pid_block_answer, hs->node->meta);
    if (rc != 0)
        (void)lm_meta_store_producer_block_answer(hs->node->meta, rc);
}

static int alloc_producer_id(struct pshard *ps, int64_t *out)
{
    if (ps->pid_next >= ps->pid_end) {
        int64_t first = 0;
        int rc = lm_meta_store_alloc_producer_ids(ps->hs->node->meta, PRODUCER_ID_BLOCK, &first);
        producer_ids_refill(ps->hs);
        if (rc != 0)
            return rc;
        ps->pid_next = first;
        ps->pid_end = first + PRODUCER_ID_BLOCK;
    }
    *out = ps->pid_next++;
    return 0;
}

static void init_producer_id(struct broker_req *req)
{
    struct kafka_init_producer_id_request rq;
    kafka_init_producer_id_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    struct kafka_init_producer_id_response resp;
    kafka_init_producer_id_response_init(&resp);
    resp.throttle_time_ms = 0;
    resp.producer_id = -1;
    resp.producer_epoch = -1;
    /* KafkaApis.handleInitProducerIdRequest: WRITE on the transactional id, or for an
     * idempotent producer IDEMPOTENT_WRITE on the cluster or WRITE on any topic */
    if (rq.transactional_id.len >= 0 &&
        !h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TRANSACTIONAL_ID, rq.transactional_id)) {
        resp.error_code = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        h_respond(req, &resp);
        return;
    }
    if (rq.transactional_id.len < 0 && !h_allowed_cluster(req, AUTHZ_OP_IDEMPOTENT_WRITE) &&
        !h_allowed_any(req, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC)) {
        resp.error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        h_respond(req, &resp);
        return;
    }
    if (rq.transactional_id.len >= 0) {
        /* the transaction coordinator of the id (txn_api.c) */
        txn_init_producer_id(req, rq.transactional_id, rq.transaction_timeout_ms,
                             req->api_version >= 3 ? rq.producer_id : -1,
                             req->api_version >= 3 ? rq.producer_epoch : -1);
        return;
    }
    struct pshard *ps = hs_of(req->shard)->producers;
    LM_ASSERT(ps != NULL);
    if (req->api_version >= 3 && rq.producer_id >= 0 && rq.producer_epoch >= 0 &&
        rq.producer_epoch < INT16_MAX - 1) {
        /* KIP-360: a producer that lost track of its sequences bumps its epoch and keeps its
         * id; the partitions accept the new epoch from sequence 0. */
        resp.error_code = KAFKA_NONE;
        resp.producer_id = rq.producer_id;
        resp.producer_epoch = (int16_t)(rq.producer_epoch + 1);
        h_respond(req, &resp);
        return;
    }
    int64_t pid = -1;
    int rc = alloc_producer_id(ps, &pid);
    if (rc == LM_E_AGAIN) {
        /* in a cluster, no block of ids from the controller yet (one is asked for) */
        resp.error_code = KAFKA_COORDINATOR_LOAD_IN_PROGRESS;
    } else if (rc != 0) {
        BLOG_ERROR("producer id allocation: %s", lm_strerror(rc));
        resp.error_code = KAFKA_COORDINATOR_NOT_AVAILABLE;
    } else {
        resp.error_code = KAFKA_NONE;
        resp.producer_id = pid;
        resp.producer_epoch = 0;
    }
    h_respond(req, &resp);
}

/* ---- DescribeProducers (0) ------------------------------------------------------------------- */

struct dp_ctx {
    struct kafka_describe_producers_response resp;
};

static void describe_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct kafka_describe_producers_response_partition_response *o = w->out;
    o->error_message = KAFKA_STR_NULL;
    o->active_producers_count = 0;
    if (p == NULL || p->log == NULL) {
        o->error_code = p == NULL ? KAFKA_UNKNOWN_TOPIC_OR_PARTITION : KAFKA_KAFKA_STORAGE_ERROR;
        return;
    }
    struct pstate *e = pstate_get(hs->producers, p);
    if (e == NULL) {
        o->error_code = KAFKA_KAFKA_STORAGE_ERROR;
        return;
    }
    size_t n = lm_producer_state_count(e->s);
    /* The fan-out is sequential, so this shard alone uses the request's arena now. */
    struct lm_producer_info *rows = h_alloc(f->req, n, sizeof(*rows));
    o->active_producers = h_alloc(f->req, n, sizeof(*o->active_producers));
    if (rows == NULL || o->active_producers == NULL) {
        o->error_code = KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    n = lm_producer_describe(e->s, rows, n);
    for (size_t i = 0; i < n; i++) {
        struct kafka_describe_producers_response_producer_state *s = &o->active_producers[i];
        s->producer_id = rows[i].producer_id;
        s->producer_epoch = rows[i].epoch;
        s->last_sequence = rows[i].last_sequence;
        s->last_timestamp = rows[i].last_timestamp_ms;
        s->coordinator_epoch = rows[i].coordinator_epoch;
        s->current_txn_start_offset = rows[i].current_txn_start_offset;
    }
    o->active_producers_count = (int32_t)n;
    o->error_code = KAFKA_NONE;
}

static void describe_finish(struct hfan *f)
{
    struct dp_ctx *c = f->ctx;
    for (size_t i = 0; i < f->count; i++) {
        struct kafka_describe_producers_response_partition_response *o = f->items[i].out;
        if (f->items[i].owner == HWORK_DONE)
            o->error_code = f->items[i].error;
    }
    h_respond(f->req, &c->resp);
}

static void describe_producers(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_describe_producers_request rq;
    kafka_describe_producers_request_init(&rq);
    if (!h_decode(req, &rq))
        return;
    struct dp_ctx *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    if (c == NULL || f == NULL)
        goto nomem;
    kafka_describe_producers_response_init(&c->resp);
    c->resp.throttle_time_ms = 0;
    int32_t nt = rq.topics_count > 0 ? rq.topics_count : 0;
    size_t n = 0;
    for (int32_t i = 0; i < nt; i++)
        n += rq.topics[i].partition_indexes_count > 0 ? (size_t)rq.topics[i].partition_indexes_count
                                                      : 0;
    struct hwork *items = h_alloc(req, n, sizeof(*items));
    c->resp.topics = h_alloc(req, (size_t)nt, sizeof(*c->resp.topics));
    if (items == NULL || c->resp.topics == NULL)
        goto nomem;
    c->resp.topics_count = nt;
    size_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        const struct kafka_describe_producers_request_topic_request *t = &rq.topics[i];
        struct kafka_describe_producers_response_topic_response *o = &c->resp.topics[i];
        int32_t np = t->partition_indexes_count > 0 ? t->partition_indexes_count : 0;
        o->name = t->name;
        o->partitions = h_alloc(req, (size_t)np, sizeof(*o->partitions));
        if (o->partitions == NULL)
            goto nomem;
        o->partitions_count = np;
        struct htopic *ht = t->name.len > 0 ? hs_topic(hs, t->name.ptr, (size_t)t->name.len) : NULL;
        /* KafkaApis.handleDescribeProducersRequest: READ on the topic */
        bool denied = !h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, t->name);
        for (int32_t j = 0; j < np; j++, k++) {
            struct hwork *w = &items[k];
            o->partitions[j].partition_index = t->partition_indexes[j];
            o->partitions[j].error_message = KAFKA_STR_NULL;
            w->topic = t->name.ptr;
            w->topic_len = t->name.len > 0 ? (size_t)t->name.len : 0;
            w->partition = t->partition_indexes[j];
            w->out = &o->partitions[j];
            if (denied) {
                w->error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
                w->owner = HWORK_DONE;
                continue;
            }
            if (ht == NULL || w->partition < 0 || w->partition >= ht->meta->partition_count) {
                w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                w->owner = HWORK_DONE;
                continue;
            }
            w->owner = hs_owner(hs, w->topic, w->topic_len, w->partition);
        }
    }
    if (!hfan_init(f, req, items, n, describe_op, describe_finish, c))
        goto nomem;
    f->sequential = true;
    hfan_start(f);
    return;
nomem:
    h_close(req, "arena exhausted");
}

/* A positive integer setting into *out (left 0 when the key is not set). */
static int positive_config(struct broker_config *cfg, const char *key, long long *out)
{
    *out = 0;
    const char *v = broker_config_get(cfg, key);
    if (v == NULL)
        return 0;
    broker_config_mark_used(cfg, key);
    char *end = NULL;
    long long n = strtoll(v, &end, 10);
    if (end == v || *end != 0 || n < 1) {
        BLOG_ERROR("%s=%s: expected a positive integer", key, v);
        return LM_E_CONFIG;
    }
    *out = n;
    return 0;
}

int producer_register(struct broker_dispatch *d)
{
    struct handlers_ctx *node = d->ctx;
    struct broker_config *cfg = node->cfg;
    long long n = 0;
    int rc = positive_config(cfg, "producer.id.expiration.ms", &n);
    if (rc == 0 && n > 0)
        node->producer_expiration_ms = n;
    if (rc == 0 && (rc = positive_config(cfg, "laminar.producer.checkpoint.bytes", &n)) == 0 &&
        n > 0)
        node->producer_checkpoint_bytes = (uint64_t)n;
    if (rc != 0)
        return rc;
    node->producer.before_append = before_append;
    node->producer.after_append = after_append;
    if ((rc = txn_markers_register(d)) != 0 ||
        (rc = handlers_serve(d, KAFKA_INIT_PRODUCER_ID_KEY, 0, 5, init_producer_id)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DESCRIBE_PRODUCERS_KEY, 0, 0, describe_producers)) != 0)
        return rc;
    return 0;
}
