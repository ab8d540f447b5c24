/* ShareFetch (78, v1) and ShareAcknowledge (79, v1): share group members acquire records of
 * share partitions and acknowledge them (KIP-932).
 *
 * Where the state lives:
 * - share sessions on the shard of the member's connection (the Java share consumer keeps one
 *   connection per broker), keyed by group and member id: the session's partitions and its
 *   next epoch (0 opens, -1 closes, otherwise the epoch the session expects:
 *   SHARE_SESSION_NOT_FOUND / INVALID_SHARE_SESSION_EPOCH otherwise). At most
 *   group.share.max.share.sessions (2000) per node, shared by the shards;
 * - share partitions (broker/group/share_partition.h) on the shard owning the topic partition,
 *   reached through the fan-out (data_fan.c), one per (group, topic, partition), created on
 *   first use with share.auto.offset.reset (the group's config, latest by default).
 * Both in memory; each share partition's state is written to __share_group_state
 * (share_state.h) after the passes that changed it, before the answer, and read back at its
 * first fetch after a start; its start offset is also checkpointed to share.checkpoint (below),
 * the fallback when the state topic holds nothing for it (see broker/README.md).
 *
 * A pass applies the request's acknowledgements (first pass only), then for each partition of
 * the session expires timed-out locks, reads whole batches from the first acquirable offset up
 * to the high watermark (the last stable offset under share.isolation.level read_committed)
 * and acquires the records they hold (at most max_records over the request), archiving control
 * batches and, under read_committed, aborted transactions' batches instead. The response
 * carries the batches as they are on disk and the AcquiredRecords ranges; the client hands out
 * only the acquired offsets. A pass that acquired nothing parks (struct sfetch) until new data,
 * records released or a lock deadline wake it, or max_wait_ms has passed. Closing a session
 * (epoch -1, or its connection closing) releases every record the member holds in its
 * partitions. DescribeShareGroupOffsets (90) reads the start offsets, AlterShareGroupOffsets
 * (91) and DeleteShareGroupOffsets (92) reset or drop them, and DeleteGroups of a share group
 * drops its state (end of this file). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker/group/share_partition.h"
#include "broker/handlers/group_api.h"
#include "broker/handlers/group_internal.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/handlers/share_state.h"
#include "broker/log.h"
#include "broker/partition/partition.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "protocol/kafka_messages.h"
#include "protocol/record_batch.h"

enum {
    SHARE_WAITERS_MAX = 1024,       /* parked ShareFetches watching one share partition */
    SHARE_REPASS_MAX = 64,          /* passes in a row that only archived (then it parks) */
    SHARE_SESSION_PARTS_MAX = 1000, /* partitions of one share session */
    SHARE_PARTS_MAX = 10000,        /* share partitions of one shard */
    SHARE_RANGES_MAX = 64,          /* acquired ranges of one partition in one response */
    SHARE_SESSIONS_NODE = 2000,     /* group.share.max.share.sessions (Kafka 4.1's default) */
    SHARE_ID_MAX = 255,
    SHARE_SESSION_IDLE_MS = 45000, /* group.share.session.timeout.ms's default */
};

struct ssess_part {
    uint8_t topic_id[16];
    int32_t partition;
};

struct ssess {
    char group[SHARE_ID_MAX + 1];
    char member[SHARE_ID_MAX + 1];
    int32_t epoch;    /* the next epoch the session expects */
    uint64_t used_ms; /* last request on it */
    uint64_t conn_id; /* the connection that opened it (broker_req_conn_id) */
    int32_t n, cap;
    struct ssess_part *parts;
};

/* A ShareFetch parked on a share partition (woken through hs_fetch_wake_send). */
struct swaiter {
    struct swaiter *next;
    uint32_t origin; /* its connection's shard */
    uint64_t fetch_id;
    uint64_t deadline_ms; /* its max_wait_ms: past it the entry is stale */
};

struct spart {
    struct spart *next;
    char *group; /* owned, NUL-terminated */
    char *topic;
    int32_t partition;
    uint8_t topic_id[16]; /* of the topic it was made for (a re-created topic starts over) */
    int64_t saved_start;  /* the SPSO the checkpoint holds (-1: none written) */
    /* __share_group_state (share_state.h): dirty when the state changed since it was last
     * written (acknowledgements, releases, lock timeouts, a start offset moved); the next
     * record is a snapshot when snap_next or after share_snapshot_every updates */
    bool dirty;
    bool snap_next;
    int32_t updates;
    int32_t snapshot_epoch;
    int32_t state_epoch;
    int32_t leader_epoch; /* of the data partition when the state was made or loaded */
    struct lm_share_part sp;
    /* Bumped when records may have become acquirable for another member: acknowledgements
     * (a release; an accept or reject that frees room in a full window), a session's release,
     * lock timeouts, a start offset moved. The fetches parked on it pass again, as Kafka's
     * DelayedShareFetchGroupKey is completed on these. */
    uint64_t changes;
    struct swaiter *waiters;
    int32_t n_waiters;
};

struct sshard {
    struct ssess *sess;
    int32_t n_sess, cap_sess, max_sess;
    struct spart *parts; /* the share partitions of partitions this shard owns */
    int32_t n_parts;
    struct sfetch *parked; /* ShareFetches between passes (watching or parked), by id */
};

/* ---- per-shard state ---- */

static struct sshard *sshard_of(struct hshard *hs)
{
    if (hs->share == NULL) {
        hs->share = calloc(1, sizeof(*hs->share));
        if (hs->share != NULL) {
            uint32_t n = hs->count ? hs->count : 1;
            hs->share->max_sess = (int32_t)((SHARE_SESSIONS_NODE + n - 1) / n);
        }
    }
    return hs->share;
}

static bool kstr_is(struct kafka_str s, const char *c)
{
    return s.len >= 0 && strlen(c) == (size_t)s.len && memcmp(c, s.ptr, (size_t)s.len) == 0;
}

static struct ssess *sess_find(struct sshard *ss, struct kafka_str group, struct kafka_str member)
{
    for (int32_t i = 0; i < ss->n_sess; i++)
        if (kstr_is(group, ss->sess[i].group) && kstr_is(member, ss->sess[i].member))
            return &ss->sess[i];
    return NULL;
}

static void sess_remove(struct sshard *ss, struct ssess *s)
{
    free(s->parts);
    int32_t i = (int32_t)(s - ss->sess);
    LM_ASSERT(i >= 0 && i < ss->n_sess);
    ss->sess[i] = ss->sess[ss->n_sess - 1];
    ss->n_sess--;
}

static struct ssess *sess_new(struct sshard *ss, struct kafka_str group, struct kafka_str member)
{
    if (ss->n_sess >= ss->max_sess) {
        /* full: the least recently used session goes if it was idle for a session timeout
         * (its member crashed or left without closing it; Kafka evicts such sessions too) */
        struct ssess *lru = NULL;
        for (int32_t i = 0; i < ss->n_sess; i++)
            if (lru == NULL || ss->sess[i].used_ms < lru->used_ms)
                lru = &ss->sess[i];
        if (lru == NULL || broker_now_ms() - lru->used_ms < SHARE_SESSION_IDLE_MS)
            return NULL;
        sess_remove(ss, lru);
    }
    if (ss->n_sess == ss->cap_sess) {
        int32_t cap = ss->cap_sess ? ss->cap_sess * 2 : 8;
        struct ssess *a = realloc(ss->sess, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return NULL;
        ss->sess = a;
        ss->cap_sess = cap;
    }
    struct ssess *s = &ss->sess[ss->n_sess++];
    memset(s, 0, sizeof(*s));
    memcpy(s->group, group.ptr, (size_t)group.len);
    memcpy(s->member, member.ptr, (size_t)member.len);
    return s;
}

static bool sess_has(const struct ssess *s, const uint8_t id[16], int32_t partition)
{
    for (int32_t i = 0; i < s->n; i++)
        if (s->parts[i].partition == partition && memcmp(s->parts[i].topic_id, id, 16) == 0)
            return true;
    return false;
}

static int sess_add(struct ssess *s, const uint8_t id[16], int32_t partition)
{
    if (sess_has(s, id, partition))
        return 0;
    if (s->n >= SHARE_SESSION_PARTS_MAX)
        return LM_E_FULL;
    if (s->n == s->cap) {
        int32_t cap = s->cap ? s->cap * 2 : 8;
        struct ssess_part *a = realloc(s->parts, (size_t)cap * sizeof(*a));
        if (a == NULL)
            return LM_E_NOMEM;
        s->parts = a;
        s->cap = cap;
    }
    memcpy(s->parts[s->n].topic_id, id, 16);
    s->parts[s->n].partition = partition;
    s->n++;
    return 0;
}

static void sess_forget(struct ssess *s, const uint8_t id[16], int32_t partition)
{
    for (int32_t i = 0; i < s->n; i++)
        if (s->parts[i].partition == partition && memcmp(s->parts[i].topic_id, id, 16) == 0) {
            s->parts[i] = s->parts[--s->n];
            return;
        }
}

static void spart_waiters_free(struct spart *p)
{
    while (p->waiters != NULL) {
        struct swaiter *w = p->waiters;
        p->waiters = w->next;
        free(w);
    }
    p->n_waiters = 0;
}

static void spart_free(struct spart *p)
{
    spart_waiters_free(p);
    lm_share_part_deinit(&p->sp);
    free(p->group);
    free(p->topic);
    free(p);
}

/* Wakes every ShareFetch parked on p (one-shot: they watch again if they park again). */
static void spart_wake(struct hshard *hs, struct spart *p)
{
    uint64_t now = broker_now_ms();
    for (struct swaiter *w = p->waiters; w != NULL; w = w->next)
        if (!hs->stopping && w->deadline_ms >= now)
            hs_fetch_wake_send(hs, w->origin, w->fetch_id);
    spart_waiters_free(p);
}

/* Parks fetch_id of shard origin on p until spart_wake; false when p holds SHARE_WAITERS_MAX
 * live ones already (the fetch then waits for data or its timer only). */
static bool spart_watch(struct spart *p, uint32_t origin, uint64_t fetch_id, uint64_t deadline_ms)
{
    uint64_t now = broker_now_ms();
    for (struct swaiter **pp = &p->waiters; *pp != NULL;) {
        struct swaiter *w = *pp;
        if (w->deadline_ms < now || (w->origin == origin && w->fetch_id == fetch_id)) {
            *pp = w->next; /* stale (its fetch answered), or this fetch's earlier watch */
            free(w);
            p->n_waiters--;
            continue;
        }
        pp = &w->next;
    }
    LM_ASSERT(p->n_waiters >= 0);
    if (p->n_waiters >= SHARE_WAITERS_MAX)
        return false;
    struct swaiter *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return false;
    *w = (struct swaiter){p->waiters, origin, fetch_id, deadline_ms};
    p->waiters = w;
    p->n_waiters++;
    return true;
}

static struct spart *spart_find(struct sshard *ss, struct kafka_str group, const char *topic,
                                size_t topic_len, int32_t partition)
{
    for (struct spart *p = ss->parts; p != NULL; p = p->next)
        if (p->partition == partition && kstr_is(group, p->group) &&
            strlen(p->topic) == topic_len && memcmp(p->topic, topic, topic_len) == 0)
            return p;
    return NULL;
}

/* The share partition of (group, topic, partition) on its owner shard, made on first use;
 * NULL when the shard holds SHARE_PARTS_MAX already or memory ran out. */
static struct spart *spart_get(struct sshard *ss, const struct lm_share_config *cfg,
                               struct kafka_str group, const char *topic, size_t topic_len,
                               int32_t partition)
{
    struct spart *found = spart_find(ss, group, topic, topic_len, partition);
    if (found != NULL)
        return found;
    if (ss->n_parts >= SHARE_PARTS_MAX)
        return NULL;
    struct spart *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->group = strndup(group.ptr, (size_t)group.len);
    p->topic = strndup(topic, topic_len);
    p->partition = partition;
    p->saved_start = -1;
    if (p->group == NULL || p->topic == NULL || lm_share_part_init(&p->sp, cfg) != 0) {
        free(p->group);
        free(p->topic);
        free(p);
        return NULL;
    }
    p->next = ss->parts;
    ss->parts = p;
    ss->n_parts++;
    return p;
}

void share_shard_free(struct hshard *hs)
{
    share_state_shard_free(hs);
    struct sshard *ss = hs->share;
    if (ss == NULL)
        return;
    LM_ASSERT(ss->parked == NULL);
    for (int32_t i = 0; i < ss->n_sess; i++)
        free(ss->sess[i].parts);
    free(ss->sess);
    while (ss->parts != NULL) {
        struct spart *p = ss->parts;
        ss->parts = p->next;
        spart_free(p);
    }
    free(ss);
    hs->share = NULL;
}

/* ---- connections that close ---- */

/* A release of what a member holds in one share partition, on the partition's owner. */
struct srelease {
    struct broker_xcall x;
    char group[SHARE_ID_MAX + 1];
    char topic[LM_TOPIC_NAME_MAX + 1];
    uint8_t topic_id[16];
    int32_t partition;
    uint64_t member_hash;
};

static void release_run(struct broker_shard *target, struct broker_xcall *x)
{
    struct srelease *r = x->arg;
    struct hshard *hs = broker_shard_user(target); /* NULL once the shard stopped */
    struct kafka_str g = {r->group, (int32_t)strlen(r->group)};
    struct spart *spt = hs != NULL && !hs->stopping && hs->share != NULL
                            ? spart_find(hs->share, g, r->topic, strlen(r->topic), r->partition)
                            : NULL;
    if (spt != NULL && spt->sp.initialized && memcmp(spt->topic_id, r->topic_id, 16) == 0 &&
        lm_share_part_release_member(&spt->sp, r->member_hash) > 0) {
        /* written with the share partition's next state record: an acquired record is
         * persisted as available with its delivery count already, so a crash before it
         * delivers the same records again */
        spt->dirty = true;
        spt->changes++;
        spart_wake(hs, spt); /* other members' parked fetches take them now */
    }
    broker_xcall_return(target, x);
}

static void release_done(struct broker_shard *origin, struct broker_xcall *x)
{
    (void)origin;
    free(x->arg);
}

/* The client connection conn_id is gone: the share sessions it opened close and their members'
 * acquired records in them are released, as Kafka's ShareSessionCache does on a disconnect
 * (ConnectionDisconnectListener, then ShareGroupListener.onMemberLeave: releaseSession). */
void share_conn_closed(struct hshard *hs, uint64_t conn_id)
{
    struct sshard *ss = hs->share;
    /* at shutdown nothing is released: the state written holds acquired records as available
     * already */
    if (ss == NULL || hs->stopping || broker_shard_draining(hs->shard))
        return;
    for (int32_t i = 0; i < ss->n_sess;) {
        struct ssess *s = &ss->sess[i];
        if (s->conn_id != conn_id) {
            i++;
            continue;
        }
        uint64_t member_hash = lm_share_member_hash(s->member, (int32_t)strlen(s->member));
        for (int32_t k = 0; k < s->n; k++) {
            struct htopic *t = hs_topic_by_id(hs, s->parts[k].topic_id);
            if (t == NULL || s->parts[k].partition < 0 ||
                s->parts[k].partition >= t->meta->partition_count)
                continue;
            size_t tl = strlen(t->meta->name);
            struct srelease *r = calloc(1, sizeof(*r));
            if (r == NULL || tl >= sizeof(r->topic)) {
                free(r);
                BLOG_WARN_LIMITED("share session of %s in %s: no memory to release its records; "
                                  "their locks run out",
                                  s->member, s->group);
                continue;
            }
            memcpy(r->group, s->group, sizeof(r->group));
            memcpy(r->topic, t->meta->name, tl + 1);
            memcpy(r->topic_id, s->parts[k].topic_id, 16);
            r->partition = s->parts[k].partition;
            r->member_hash = member_hash;
            r->x.run = release_run;
            r->x.done = release_done;
            r->x.arg = r;
            broker_shard_call(hs->shard, hs_owner(hs, r->topic, tl, r->partition), &r->x);
        }
        BLOG_DEBUG("share session of %s in %s closed with its connection (%d partitions)",
                   s->member, s->group, s->n);
        sess_remove(ss, s); /* the last one moves to i */
    }
}

/* ---- the share checkpoint ---- */

/* The share-partition start offsets (SPSO) of every group consuming a partition are kept in
 * `share.checkpoint` in the partition's directory, so that a restart (kill -9 included)
 * starts each share partition where its acknowledgements had got to: the records after it,
 * acquired, acknowledged above SPSO or never delivered, are delivered again (at least once),
 * none below it. Written by the shard tick (every HANDLERS_TICK_MS) when an SPSO moved and at
 * a clean shutdown, like producer.checkpoint: a temporary file renamed over the old one,
 * without an fsync (a process crash keeps it, a power loss may lose it and the share
 * partitions start from share.auto.offset.reset). Only the SPSO is kept, not the states of
 * the in-flight records (Kafka's __share_group_state keeps those too). The file: magic,
 * version, count, then per group its id length (u16), id and SPSO (i64), then the CRC-32C of
 * everything before it; big-endian. */
#define SHARE_CKPT_NAME    "share.checkpoint"
#define SHARE_CKPT_MAGIC   0x4C4D5343u /* "LMSC" */
#define SHARE_CKPT_VERSION 1
#define SHARE_CKPT_MAX     ((size_t)4 << 20)

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

static int ckpt_path(const struct hshard *hs, const char *topic, int32_t partition, char *out,
                     size_t cap)
{
    char dir[BROKER_PATH_BYTES_MAX + 300];
    int rc = storage_partition_dir(dir, sizeof(dir), hs->node->cfg->log_dirs[0], topic, partition);
    if (rc != 0)
        return rc;
    int n = snprintf(out, cap, "%s/%s", dir, SHARE_CKPT_NAME);
    return n > 0 && (size_t)n < cap ? 0 : LM_E_TOO_LARGE;
}

/* One group's entry of a checkpoint, pointing into the file's bytes. */
struct ckpt_ent {
    const uint8_t *group;
    size_t len;
    int64_t start;
};

/* Reads the checkpoint of (topic, partition): *ents (malloc'd, *buf holds the bytes they point
 * into; both the caller's to free) and their count, 0 when there is no file, or -1 (nothing
 * to free) when it is unusable (logged) or memory ran out. */
static int32_t ckpt_load(struct hshard *hs, const char *topic, int32_t partition, uint8_t **buf,
                         struct ckpt_ent **ents)
{
    *buf = NULL;
    *ents = NULL;
    char path[BROKER_PATH_BYTES_MAX + 340];
    if (ckpt_path(hs, topic, partition, path, sizeof(path)) != 0)
        return 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    off_t size = lseek(fd, 0, SEEK_END);
    uint8_t *b = size >= 14 && (size_t)size <= SHARE_CKPT_MAX ? malloc((size_t)size) : NULL;
    bool ok = b != NULL && pread(fd, b, (size_t)size, 0) == (ssize_t)size;
    close(fd);
    size_t n = (size_t)size;
    if (!ok || get_be(b, 4) != SHARE_CKPT_MAGIC || get_be(b + 4, 2) != SHARE_CKPT_VERSION ||
        get_be(b + n - 4, 4) != crc32c_update(0, b, n - 4)) {
        if (size > 0)
            BLOG_WARN("partition %s-%d: %s unusable; its share partitions start from "
                      "share.auto.offset.reset",
                      topic, partition, SHARE_CKPT_NAME);
        free(b);
        return -1;
    }
    uint32_t count = (uint32_t)get_be(b + 6, 4);
    if (count > (n - 14) / 10) /* an entry takes at least 10 bytes */
        count = (uint32_t)((n - 14) / 10);
    struct ckpt_ent *e = malloc((count > 0 ? count : 1) * sizeof(*e));
    if (e == NULL) {
        free(b);
        return -1;
    }
    size_t at = 10;
    uint32_t k = 0;
    for (uint32_t i = 0; i < count && at + 2 <= n - 4; i++) {
        size_t l = (size_t)get_be(b + at, 2);
        if (at + 2 + l + 8 > n - 4)
            break;
        e[k++] = (struct ckpt_ent){b + at + 2, l, (int64_t)get_be(b + at + 2 + l, 8)};
        at += 2 + l + 8;
    }
    *buf = b;
    *ents = e;
    return (int32_t)k;
}

static bool spart_here(const struct spart *p, const char *topic, int32_t partition)
{
    return p->partition == partition && strcmp(p->topic, topic) == 0;
}

/* Whether the checkpoint entry e is overridden by a share partition in memory. */
static bool ckpt_ent_in_memory(const struct sshard *ss, const struct ckpt_ent *e, const char *topic,
                               int32_t partition)
{
    for (const struct spart *p = ss->parts; p != NULL; p = p->next)
        if (spart_here(p, topic, partition) && p->sp.initialized && strlen(p->group) == e->len &&
            memcmp(p->group, e->group, e->len) == 0)
            return true;
    return false;
}

/* Writes the checkpoint of (topic, partition): every share partition of it here, and the
 * entries of the file for the groups that have none in memory (not fetched since the
 * restart), except drop_group's (NULL: none), whose state is being deleted. No entry left:
 * the file is removed. */
static int ckpt_write(struct hshard *hs, struct sshard *ss, const char *topic, int32_t partition,
                      const char *drop_group)
{
    uint8_t *old = NULL;
    struct ckpt_ent *ents = NULL;
    int32_t n_old = ckpt_load(hs, topic, partition, &old, &ents);
    size_t dl = drop_group != NULL ? strlen(drop_group) : 0;
    size_t size = 4 + 2 + 4 + 4;
    uint32_t count = 0;
    for (struct spart *p = ss->parts; p != NULL; p = p->next)
        if (spart_here(p, topic, partition) && p->sp.initialized &&
            (drop_group == NULL || strcmp(p->group, drop_group) != 0)) {
            size += 2 + strlen(p->group) + 8;
            count++;
        }
    for (int32_t i = 0; i < n_old; i++) {
        const struct ckpt_ent *e = &ents[i];
        bool dropped = drop_group != NULL && e->len == dl && memcmp(e->group, drop_group, dl) == 0;
        if (dropped || ckpt_ent_in_memory(ss, e, topic, partition)) {
            ents[i].len = SIZE_MAX; /* left out */
            continue;
        }
        size += 2 + e->len + 8;
        count++;
    }
    char path[BROKER_PATH_BYTES_MAX + 340], tmp[BROKER_PATH_BYTES_MAX + 350];
    int rc = ckpt_path(hs, topic, partition, path, sizeof(path));
    uint8_t *buf = NULL;
    if (rc == 0 && count == 0) {
        if (unlink(path) != 0 && errno != ENOENT)
            rc = LM_E_IO;
    } else if (rc == 0 && size > SHARE_CKPT_MAX) {
        rc = LM_E_TOO_LARGE;
    } else if (rc == 0 && (buf = malloc(size)) == NULL) {
        rc = LM_E_NOMEM;
    } else if (rc == 0) {
        put_be(buf, SHARE_CKPT_MAGIC, 4);
        put_be(buf + 4, SHARE_CKPT_VERSION, 2);
        put_be(buf + 6, count, 4);
        size_t at = 10;
        for (struct spart *p = ss->parts; p != NULL; p = p->next)
            if (spart_here(p, topic, partition) && p->sp.initialized &&
                (drop_group == NULL || strcmp(p->group, drop_group) != 0)) {
                size_t gl = strlen(p->group);
                put_be(buf + at, gl, 2);
                memcpy(buf + at + 2, p->group, gl);
                put_be(buf + at + 2 + gl, (uint64_t)p->sp.start, 8);
                at += 2 + gl + 8;
            }
        for (int32_t i = 0; i < n_old; i++)
            if (ents[i].len != SIZE_MAX) {
                put_be(buf + at, ents[i].len, 2);
                memcpy(buf + at + 2, ents[i].group, ents[i].len);
                put_be(buf + at + 2 + ents[i].len, (uint64_t)ents[i].start, 8);
                at += 2 + ents[i].len + 8;
            }
        LM_ASSERT(at + 4 == size);
        put_be(buf + at, crc32c_update(0, buf, at), 4);
        snprintf(tmp, sizeof(tmp), "%s.tmp", path);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        bool ok = fd >= 0 && write(fd, buf, size) == (ssize_t)size;
        if (fd >= 0)
            close(fd);
        if (!ok || rename(tmp, path) != 0) {
            rc = LM_E_IO;
            unlink(tmp);
        }
    }
    free(buf);
    free(old);
    free(ents);
    if (rc == 0)
        for (struct spart *p = ss->parts; p != NULL; p = p->next)
            if (spart_here(p, topic, partition))
                p->saved_start = p->sp.start;
    return rc;
}

/* The SPSO the checkpoint of (topic, partition) holds for group, or -1. */
static int64_t ckpt_read(struct hshard *hs, const char *topic, int32_t partition, const char *group)
{
    uint8_t *buf;
    struct ckpt_ent *ents;
    int32_t n = ckpt_load(hs, topic, partition, &buf, &ents);
    int64_t found = -1;
    size_t gl = strlen(group);
    for (int32_t i = 0; i < n; i++)
        if (ents[i].len == gl && memcmp(ents[i].group, group, gl) == 0)
            found = ents[i].start;
    free(buf);
    free(ents);
    return found >= 0 ? found : -1;
}

void share_shard_tick(struct hshard *hs)
{
    struct sshard *ss = hs->share;
    if (ss == NULL)
        return;
    for (struct spart *p = ss->parts; p != NULL; p = p->next) {
        if (!p->sp.initialized || p->sp.start == p->saved_start)
            continue;
        int rc = ckpt_write(hs, ss, p->topic, p->partition, NULL);
        if (rc != 0) {
            BLOG_WARN_LIMITED("partition %s-%d: writing %s: %s", p->topic, p->partition,
                              SHARE_CKPT_NAME, lm_strerror(rc));
            p->saved_start = p->sp.start; /* tried again when it moves again */
        }
    }
}

/* ---- one request ---- */

/* One partition of a request: what to do there and what came back. */
struct sitem {
    uint8_t topic_id[16];
    bool fetch;   /* acquire records */
    bool release; /* the session closes: give the member's records back */
    int32_t n_acks;
    const void *acks; /* kafka_share_{fetch,acknowledge}_request_acknowledgement_batch */
    bool acks_fetch;  /* acks are ShareFetch's struct (else ShareAcknowledge's) */
    /* out, written on the owner shard */
    int16_t ack_error;
    uint8_t *data;
    size_t len;
    int32_t n_ranges;
    struct lm_share_range *ranges;
    /* __share_group_state: the state to start from (share_load_start, malloc'd), and the
     * record this pass made to write (prec.n > 0) */
    bool need_load; /* out: the share partition waits for its state to be read */
    bool loaded;    /* the read ran (load->state NULL or not present: no state found) */
    bool load_pass; /* the pass after the read works on this item only (with the others') */
    struct lm_shr_state *load;
    struct share_prec prec;
    bool fenced;        /* its state write was fenced: the share partition is read again */
    int32_t load_epoch; /* the data partition's leader epoch the read is made in */
    /* what the pass saw (the watch compares), written on the owner shard */
    int64_t hw_seen;       /* the partition's high watermark (-1: not read) */
    int64_t leo_seen;      /* its log end */
    uint64_t changes_seen; /* the share partition's changes counter */
    bool progressed;       /* records archived without acquiring (control, aborted) */
    /* the watch's outcome */
    bool wake_now;         /* something moved since the pass: pass again */
    int64_t lock_deadline; /* the share partition's earliest lock deadline (INT64_MAX: none) */
};

/* A ShareFetch between passes, as a Fetch long-poll (data_fetch.c):
 *   READING --pass done, nothing acquired--> WATCHING --watch done--> PARKED (or READING)
 *   PARKED --wake (new data, records released)--> READING
 *   PARKED --timer (max_wait_ms, or a lock deadline before it) / drain--> READING */
enum sf_state { SF_READING, SF_WATCHING, SF_PARKED };

struct sfetch {
    struct broker_req *req;
    struct hshard *hs;
    struct sfetch *next; /* parked list */
    bool parked;
    uint64_t id; /* on the parked list: what waiters wake (hs->fetch_id_next) */
    uint8_t state;
    bool woken;       /* woken while not PARKED: pass again at once */
    int32_t repasses; /* passes in a row that only archived records */
    bool acknowledge; /* ShareAcknowledge */
    bool acks_done;   /* the first pass applied them */
    bool final;
    struct kafka_str group;
    struct kafka_str member;
    uint64_t member_hash;
    bool earliest;       /* share.auto.offset.reset */
    bool read_committed; /* share.isolation.level */
    int32_t lock_ms;     /* share.record.lock.duration.ms */
    int32_t max_wait_ms;
    uint64_t deadline_ms;
    int64_t budget_bytes;
    int32_t budget_records;
    size_t count;
    struct hwork *items;
    struct sitem *sitems;
    struct hfan fan;
    struct broker_timer timer;
    int16_t error;
    const char *error_message;
    struct kafka_share_fetch_response *fresp;
    struct kafka_share_acknowledge_response *aresp;
    int32_t state_parts;      /* __share_group_state's partitions (0: none, memory only) */
    struct share_load *loads; /* the reads of this pass's need_load items */
    struct share_prec *precs; /* the records of this pass, one slot per item */
    size_t n_loads;
    bool load_pass;   /* a pass for the items whose state was just read */
    bool new_session; /* a ShareFetch opening its session (epoch 0) */
};

static void pass_start(struct sfetch *sf);
static void pass_done(struct hfan *f);
static void watch_start(struct sfetch *sf);
static void pass_answer(struct sfetch *sf);
static void respond(struct sfetch *sf);

static int16_t apply_acks(struct lm_share_part *sp, uint64_t member, const struct sitem *it)
{
    int16_t first_err = KAFKA_NONE;
    for (int32_t b = 0; b < it->n_acks; b++) {
        int64_t first, last;
        const int8_t *types;
        int32_t nt;
        if (it->acks_fetch) {
            const struct kafka_share_fetch_acknowledgement_batch *a =
                &((const struct kafka_share_fetch_acknowledgement_batch *)it->acks)[b];
            first = a->first_offset;
            last = a->last_offset;
            types = a->acknowledge_types;
            nt = a->acknowledge_types_count;
        } else {
            const struct kafka_share_acknowledge_acknowledgement_batch *a =
                &((const struct kafka_share_acknowledge_acknowledgement_batch *)it->acks)[b];
            first = a->first_offset;
            last = a->last_offset;
            types = a->acknowledge_types;
            nt = a->acknowledge_types_count;
        }
        int16_t err = KAFKA_NONE;
        if (nt <= 0 || first > last || (nt != 1 && (int64_t)nt != last - first + 1)) {
            err = KAFKA_INVALID_REQUEST;
        } else if (nt == 1) {
            err = lm_share_part_ack(sp, member, first, last, types[0]);
        } else {
            /* one type per offset: runs of the same type at once */
            int64_t o = first;
            while (o <= last && err == KAFKA_NONE) {
                int64_t e = o;
                while (e < last && types[e + 1 - first] == types[o - first])
                    e++;
                err = lm_share_part_ack(sp, member, o, e, types[o - first]);
                o = e + 1;
            }
        }
        if (err != KAFKA_NONE && first_err == KAFKA_NONE)
            first_err = err;
    }
    return first_err;
}

/* The runs of the batches read into it->data that are not delivered (lm_share_skips): control
 * batches, and under read_committed those of aborted transactions overlapping [next, upto].
 * Returns them malloc'd (NULL with *n 0 when none), or NULL with *n -1 on failure. */
static struct lm_share_skip *share_skips(struct hpart *p, const struct sitem *it, int64_t next,
                                         int64_t upto, bool read_committed, int32_t *n)
{
    *n = 0;
    struct storage_aborted_txn *ab = NULL;
    uint32_t n_ab = 0;
    if (read_committed && hs_aborted_txns(p, next, upto + 1, &ab, &n_ab) != 0) {
        *n = -1;
        return NULL;
    }
    struct lm_share_aborted *a = n_ab > 0 ? malloc(n_ab * sizeof(*a)) : NULL;
    /* at most one run per batch, and a batch has at least a header */
    size_t cap = it->len / KAFKA_BATCH_HEADER_SIZE + 1;
    struct lm_share_skip *skip = malloc(cap * sizeof(*skip));
    if (skip == NULL || (n_ab > 0 && a == NULL)) {
        free(ab);
        free(a);
        free(skip);
        *n = -1;
        return NULL;
    }
    for (uint32_t i = 0; i < n_ab; i++)
        a[i] = (struct lm_share_aborted){ab[i].producer_id, ab[i].first_offset, ab[i].last_offset};
    free(ab);
    *n = lm_share_skips(it->data, it->len, read_committed, a, (int32_t)n_ab, skip, (int32_t)cap);
    free(a);
    if (*n == 0) {
        free(skip);
        return NULL;
    }
    return skip;
}

/* The pass on the partition's owner; returns the share partition it worked on, if any. */
static struct spart *share_op_run(struct hshard *hs, struct hpart *p, struct hwork *w,
                                  struct hfan *f)
{
    struct sfetch *sf = f->ctx;
    struct sitem *it = &sf->sitems[w - sf->items];
    struct sshard *ss = sshard_of(hs);
    w->error = KAFKA_NONE;
    if (ss == NULL) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return NULL;
    }
    if (p == NULL) {
        w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION; /* in a cluster: NOT_LEADER (data_fan.c) */
        return NULL;
    }
    if (!p->failed)
        (void)hs_part_open(p);
    /* closed by the open-log budget: acknowledgements still apply, the fetch waits for a
     * later pass; a replicated partition is answered from its leader only */
    bool closed = hs_part_budget_closed(p);
    if (!closed && (p->log == NULL || p->failed || p->part == NULL)) {
        w->error = KAFKA_KAFKA_STORAGE_ERROR;
        return NULL;
    }
    if (p->replicated && (closed || !partition_hw_known(p->part) ||
                          !partition_lease_valid(p->part, (int64_t)broker_now_ms()))) {
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        return NULL;
    }
    struct spart *spt =
        spart_get(ss, &hs->node->share_cfg, sf->group, w->topic, w->topic_len, w->partition);
    if (spt == NULL) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        BLOG_WARN_LIMITED("share partition %.*s-%d: no room for its state", (int)w->topic_len,
                          w->topic, w->partition);
        return NULL;
    }
    struct lm_share_part *sp = &spt->sp;
    int32_t epoch = p->replicated && p->part != NULL ? partition_leader_epoch(p->part) : 0;
    if (sf->new_session && it->fetch && !it->loaded && sp->initialized && !spt->dirty &&
        sf->state_parts > 0 && hs_cluster(hs->node) && lm_share_part_in_flight(sp) == 0)
        spt->leader_epoch = INT32_MIN; /* nothing held: read again, for an offsets reset made
                                        * where this partition is not led */
    if (memcmp(spt->topic_id, p->topic_id, 16) != 0 || sp->recs == NULL ||
        (sp->initialized && spt->leader_epoch != epoch)) {
        /* new, or its topic was deleted and made again under the same name: start over (and
         * again after a failed start over); or the partition's leadership moved since the
         * state was made here: read again from __share_group_state, where the leaders in
         * between wrote theirs */
        if (sp->initialized || sp->recs == NULL) {
            struct lm_share_config cfg = sp->cfg;
            lm_share_part_deinit(sp);
            if (lm_share_part_init(sp, &cfg) != 0) {
                w->error = KAFKA_UNKNOWN_SERVER_ERROR;
                return spt;
            }
            spt->saved_start = -1;
            spt->dirty = spt->snap_next = false;
            spt->updates = 0;
        }
        memcpy(spt->topic_id, p->topic_id, 16);
    }
    int64_t now = (int64_t)broker_now_ms();
    if (lm_share_part_expire(sp, now) > 0) {
        spt->dirty = true; /* Kafka writes the state when acquisition locks time out */
        spt->changes++;
    }
    if (!sf->acks_done && it->n_acks > 0) {
        it->ack_error = apply_acks(sp, sf->member_hash, it);
        spt->dirty = true;
        spt->changes++;
    }
    if (it->release && lm_share_part_release_member(sp, sf->member_hash) > 0) {
        spt->dirty = true;
        spt->changes++;
    }
    if (!it->fetch || closed)
        return spt;
    int64_t start = storage_log_start_offset(p->log);
    int64_t hw = partition_high_watermark(p->part);
    it->hw_seen = hw;
    it->leo_seen = storage_log_end_offset(p->log);
    if (!sp->initialized) {
        if (sf->state_parts > 0 && !it->loaded) {
            it->need_load = true; /* pass_done reads it, then passes again */
            it->load_epoch = epoch;
            return spt;
        }
        const struct lm_shr_state *ls = it->load;
        if (ls != NULL && ls->present && ls->start_offset >= 0 && ls->start_offset <= hw) {
            /* the state __share_group_state holds: the latest snapshot and its updates */
            lm_share_part_restore(sp, ls);
            spt->snapshot_epoch = ls->snapshot_epoch;
            spt->state_epoch = ls->state_epoch;
            spt->updates = ls->updates;
            BLOG_INFO("share partition %s-%d of %s: state read back, start offset %lld, %lld in "
                      "flight",
                      spt->topic, spt->partition, spt->group, (long long)sp->start,
                      (long long)lm_share_part_in_flight(sp));
        } else {
            /* none (or past the high watermark: the log lost its tail): where the
             * share.checkpoint of an earlier version had got to (upgrade; or a cluster whose
             * state partition is another node's), else the reset policy; the state topic gets
             * a first snapshot of it */
            int64_t saved = ckpt_read(hs, spt->topic, spt->partition, spt->group);
            lm_share_part_start(sp, saved >= 0     ? (saved < hw ? saved : hw)
                                    : sf->earliest ? start
                                                   : hw);
            spt->saved_start = saved >= 0 ? sp->start : -1;
            /* initialized without a start offset (InitializeShareGroupState -1): its epoch */
            if (ls != NULL && ls->present)
                spt->state_epoch = ls->state_epoch;
            spt->snap_next = true;
            spt->dirty = true;
            BLOG_INFO("share partition %s-%d of %s: no state%s, starts at %lld (%s)", spt->topic,
                      spt->partition, spt->group,
                      it->load == NULL && sf->state_parts > 0 ? " read" : "", (long long)sp->start,
                      saved >= 0     ? "share.checkpoint"
                      : sf->earliest ? "earliest"
                                     : "latest");
        }
        spt->leader_epoch = epoch;
    }
    int64_t before = sp->start;
    lm_share_part_clamp(sp, start);
    if (sp->start != before) {
        spt->dirty = true;
        spt->changes++;
    }
    if (sf->budget_records <= 0 || sf->budget_bytes <= 0)
        return spt;
    /* read_committed (share.isolation.level): up to the last stable offset only, as Kafka's
     * share fetch with FetchIsolation.TXN_COMMITTED */
    int64_t limit = sf->read_committed ? partition_last_stable_offset(p->part) : hw;
    int64_t next = lm_share_part_next(sp, limit);
    if (next < 0)
        return spt;
    struct storage_read_result res;
    int rc = sf->read_committed
                 ? partition_read_stable(p->part, next, (uint64_t)sf->budget_bytes, &res)
                 : partition_read(p->part, next, (uint64_t)sf->budget_bytes, true, &res);
    if (rc != 0) {
        w->error = h_storage_error(rc);
        return spt;
    }
    if (res.bytes == 0 || res.last_offset < next) {
        partition_read_release(p->part, &res);
        return spt;
    }
    it->data = malloc(res.bytes);
    it->ranges = malloc(SHARE_RANGES_MAX * sizeof(*it->ranges));
    if (it->data == NULL || it->ranges == NULL ||
        (rc = storage_read_result_copy(&res, it->data, res.bytes)) != 0) {
        free(it->data);
        free(it->ranges);
        it->data = NULL;
        it->ranges = NULL;
        partition_read_release(p->part, &res);
        w->error = rc != 0 ? h_storage_error(rc) : KAFKA_UNKNOWN_SERVER_ERROR;
        return spt;
    }
    it->len = res.bytes;
    int64_t upto = res.last_offset;
    partition_read_release(p->part, &res);
    int32_t n_skip = 0, archived = 0;
    struct lm_share_skip *skip = share_skips(p, it, next, upto, sf->read_committed, &n_skip);
    if (skip == NULL && n_skip < 0) {
        free(it->data);
        free(it->ranges);
        it->data = NULL;
        it->ranges = NULL;
        it->len = 0;
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return spt;
    }
    sp->cfg.lock_ms = sf->lock_ms; /* the group's, as it is now */
    it->n_ranges =
        lm_share_part_acquire_skip(sp, now, sf->member_hash, next, upto, limit, sf->budget_records,
                                   skip, n_skip, it->ranges, SHARE_RANGES_MAX, &archived);
    free(skip);
    if (archived > 0) {
        /* control records (and aborted ones under read_committed) are archived, as Kafka does:
         * never handed out, never delivered again; the state records it */
        spt->dirty = true;
        it->progressed = true;
    }
    if (it->n_ranges == 0) {
        free(it->data);
        free(it->ranges);
        it->data = NULL;
        it->ranges = NULL;
        it->len = 0;
        return spt;
    }
    for (int32_t i = 0; i < it->n_ranges; i++)
        sf->budget_records -= (int32_t)(it->ranges[i].last - it->ranges[i].first + 1);
    sf->budget_bytes -= (int64_t)it->len;
    return spt;
}

/* Makes the record that writes spt's state to __share_group_state: its whole window (start
 * offset and state batches) as an update, or as a snapshot every share_snapshot_every updates
 * (Kafka's share.coordinator.snapshot.update.records.per.snapshot) and first. */
static void state_record(struct hshard *hs, struct sfetch *sf, struct spart *spt, struct sitem *it)
{
    struct lm_share_part *sp = &spt->sp;
    LM_ASSERT(sp->initialized && it->prec.n == 0);
    int32_t cap = (int32_t)lm_share_part_in_flight(sp);
    struct lm_shr_batch *b = malloc((size_t)(cap > 0 ? cap : 1) * sizeof(*b));
    if (b == NULL) {
        BLOG_WARN_LIMITED("share partition %s-%d: no memory to write its state", spt->topic,
                          spt->partition);
        return; /* still dirty: the next pass tries again */
    }
    int32_t n = lm_share_part_batches(sp, b, cap);
    LM_ASSERT(n >= 0 && n <= cap);
    bool snap = spt->snap_next || spt->updates >= hs->node->share_snapshot_every;
    int64_t now = group_now_ms(hs);
    struct lm_shr_value v = {.snapshot_epoch = spt->snapshot_epoch + (snap ? 1 : 0),
                             .state_epoch = spt->state_epoch,
                             .leader_epoch = spt->leader_epoch,
                             .start_offset = sp->start,
                             .create_ms = now,
                             .write_ms = now,
                             .n_batches = n,
                             .batches = b};
    struct kafka_str g = {spt->group, (int32_t)strlen(spt->group)};
    int32_t state_p = share_state_partition_for(g, spt->topic_id, spt->partition, sf->state_parts);
    int rc = share_prec_state(&it->prec, state_p, g, spt->topic_id, spt->partition,
                              snap ? LM_SHR_SNAPSHOT : LM_SHR_UPDATE, &v);
    free(b);
    if (rc != 0) {
        BLOG_WARN_LIMITED("share partition %s-%d: encoding its state: %s", spt->topic,
                          spt->partition, lm_strerror(rc));
        return;
    }
    spt->dirty = false;
    if (snap) {
        spt->snap_next = false;
        spt->snapshot_epoch++;
        spt->updates = 0;
    } else {
        spt->updates++;
    }
}

static void share_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct sfetch *sf = f->ctx;
    struct sitem *it = &sf->sitems[w - sf->items];
    if (sf->load_pass && !it->load_pass)
        return; /* done in the pass before, its outcome kept */
    it->hw_seen = it->leo_seen = -1;
    it->progressed = false;
    struct sshard *ss = hs->share;
    struct spart *before = ss != NULL && w->topic != NULL
                               ? spart_find(ss, sf->group, w->topic, w->topic_len, w->partition)
                               : NULL;
    uint64_t changes = before != NULL ? before->changes : 0;
    struct spart *spt = share_op_run(hs, p, w, f);
    if (spt == NULL)
        return;
    if (spt->dirty && spt->sp.initialized && sf->state_parts > 0)
        state_record(hs, sf, spt, it);
    it->changes_seen = spt->changes;
    if (spt->waiters == NULL)
        return;
    /* other members' fetches parked on it: pass again when records may be theirs now; and
     * when this pass took locks that run out before their max_wait (their timers did not
     * count on them) */
    bool wake = spt != before || spt->changes != changes;
    int64_t lock_end = (int64_t)broker_now_ms() + spt->sp.cfg.lock_ms;
    for (struct swaiter *x = spt->waiters; x != NULL && !wake && it->n_ranges > 0; x = x->next)
        wake = (int64_t)x->deadline_ms > lock_end;
    if (wake)
        spart_wake(hs, spt);
}

static void free_items(struct sfetch *sf)
{
    for (size_t i = 0; i < sf->count; i++) {
        if (sf->sitems[i].load != NULL) {
            lm_shr_state_deinit(sf->sitems[i].load);
            free(sf->sitems[i].load);
            sf->sitems[i].load = NULL;
        }
        sf->sitems[i].loaded = sf->sitems[i].need_load = sf->sitems[i].load_pass = false;
        share_prec_free(&sf->sitems[i].prec);
        free(sf->sitems[i].data);
        free(sf->sitems[i].ranges);
        sf->sitems[i].data = NULL;
        sf->sitems[i].ranges = NULL;
        sf->sitems[i].len = 0;
        sf->sitems[i].n_ranges = 0;
    }
}

static void parked_remove(struct sfetch *sf)
{
    if (!sf->parked)
        return;
    struct sshard *ss = sf->hs->share;
    for (struct sfetch **pp = &ss->parked; *pp != NULL; pp = &(*pp)->next)
        if (*pp == sf) {
            *pp = sf->next;
            break;
        }
    sf->parked = false;
}

/* Whether item i is in the response: partitions fetched or acknowledged in this request (the
 * client refuses others, such as those a closing session only released). */
static bool answered(const struct sfetch *sf, size_t i)
{
    return sf->sitems[i].fetch || sf->sitems[i].n_acks > 0;
}

/* Groups the answered items by topic id into the response's topics (items are in topic id
 * order). */
static void respond(struct sfetch *sf)
{
    struct broker_req *req = sf->req;
    parked_remove(sf);
    broker_timer_cancel(req->shard, &sf->timer);
    int32_t nt = 0, np = 0;
    const uint8_t *last_id = NULL;
    for (size_t i = 0; i < sf->count; i++) {
        if (!answered(sf, i))
            continue;
        nt += last_id == NULL || memcmp(sf->sitems[i].topic_id, last_id, 16) != 0;
        last_id = sf->sitems[i].topic_id;
        np++;
    }
    const struct kafka_str emsg =
        sf->error_message != NULL
            ? (struct kafka_str){sf->error_message, (int32_t)strlen(sf->error_message)}
            : KAFKA_STR_NULL;
    const void *msg;
    int32_t k = -1, q = 0;
    last_id = NULL;
    if (!sf->acknowledge) {
        struct kafka_share_fetch_response *o = sf->fresp;
        o->error_code = sf->error;
        o->error_message = emsg;
        o->acquisition_lock_timeout_ms = sf->lock_ms;
        struct kafka_share_fetch_response_share_fetchable_topic_response *t =
            h_alloc(req, (size_t)nt, sizeof(*t));
        struct kafka_share_fetch_response_partition_data *pd =
            h_alloc(req, (size_t)np, sizeof(*pd));
        if ((nt > 0 && t == NULL) || (np > 0 && pd == NULL)) {
            free_items(sf);
            h_close(req, "arena exhausted");
            return;
        }
        for (size_t i = 0; i < sf->count; i++) {
            const struct sitem *it = &sf->sitems[i];
            if (!answered(sf, i))
                continue;
            if (last_id == NULL || memcmp(it->topic_id, last_id, 16) != 0) {
                k++;
                memcpy(t[k].topic_id.b, it->topic_id, 16);
                t[k].partitions = &pd[q];
                t[k].partitions_count = 0;
                last_id = it->topic_id;
            }
            struct kafka_share_fetch_response_partition_data *d = &pd[q++];
            memset(d, 0, sizeof(*d));
            d->partition_index = sf->items[i].partition;
            d->error_code = sf->items[i].error;
            d->error_message = KAFKA_STR_NULL;
            d->acknowledge_error_code = it->ack_error;
            d->acknowledge_error_message = KAFKA_STR_NULL;
            d->current_leader.leader_id = -1;
            d->current_leader.leader_epoch = -1;
            d->records = (struct kafka_bytes){it->data != NULL ? it->data : (const uint8_t *)"",
                                              (int32_t)it->len};
            d->acquired_records = h_alloc(req, (size_t)it->n_ranges, sizeof(*d->acquired_records));
            if (it->n_ranges > 0 && d->acquired_records == NULL) {
                free_items(sf);
                h_close(req, "arena exhausted");
                return;
            }
            for (int32_t r = 0; r < it->n_ranges; r++)
                d->acquired_records[r] = (struct kafka_share_fetch_response_acquired_records){
                    it->ranges[r].first, it->ranges[r].last, it->ranges[r].delivery_count};
            d->acquired_records_count = it->n_ranges;
            t[k].partitions_count++;
        }
        o->responses = t;
        o->responses_count = nt;
        msg = o;
    } else {
        struct kafka_share_acknowledge_response *o = sf->aresp;
        o->error_code = sf->error;
        o->error_message = emsg;
        struct kafka_share_acknowledge_response_share_acknowledge_topic_response *t =
            h_alloc(req, (size_t)nt, sizeof(*t));
        struct kafka_share_acknowledge_response_partition_data *pd =
            h_alloc(req, (size_t)np, sizeof(*pd));
        if ((nt > 0 && t == NULL) || (np > 0 && pd == NULL)) {
            h_close(req, "arena exhausted");
            return;
        }
        for (size_t i = 0; i < sf->count; i++) {
            const struct sitem *it = &sf->sitems[i];
            if (!answered(sf, i))
                continue;
            if (last_id == NULL || memcmp(it->topic_id, last_id, 16) != 0) {
                k++;
                memcpy(t[k].topic_id.b, it->topic_id, 16);
                t[k].partitions = &pd[q];
                t[k].partitions_count = 0;
                last_id = it->topic_id;
            }
            struct kafka_share_acknowledge_response_partition_data *d = &pd[q++];
            memset(d, 0, sizeof(*d));
            d->partition_index = sf->items[i].partition;
            d->error_code = sf->items[i].error != KAFKA_NONE ? sf->items[i].error : it->ack_error;
            d->error_message = KAFKA_STR_NULL;
            d->current_leader.leader_id = -1;
            d->current_leader.leader_epoch = -1;
            t[k].partitions_count++;
        }
        o->responses = t;
        o->responses_count = nt;
        msg = o;
    }
    LM_ASSERT(k + 1 == nt && q == np);
    const uint8_t *buf;
    size_t len;
    bool ok = h_encode(req, msg, &buf, &len);
    free_items(sf);
    if (ok)
        broker_req_respond(req, buf, len);
    else
        h_close(req, "share fetch response does not fit the request arena");
}

static void timer_fired(struct broker_shard *s, struct broker_timer *t)
{
    (void)s;
    struct sfetch *sf = t->arg;
    if (sf->state == SF_PARKED)
        pass_start(sf);
}

void share_fetch_wake(struct hshard *hs, uint64_t fetch_id)
{
    struct sshard *ss = hs->share;
    struct sfetch *sf = ss != NULL ? ss->parked : NULL;
    while (sf != NULL && sf->id != fetch_id)
        sf = sf->next;
    if (sf == NULL)
        return; /* answered already */
    if (sf->state == SF_PARKED) {
        broker_timer_cancel(hs->shard, &sf->timer);
        pass_start(sf);
    } else {
        sf->woken = true;
    }
}

/* The client connection conn_id closes: its parked ShareFetches answer at once (the answers
 * are dropped), rather than at their max_wait_ms, so that the connection is freed and its
 * sessions close (share_conn_closed) now. One reading or watching answers after its pass. */
void share_conn_closing(struct hshard *hs, uint64_t conn_id)
{
    struct sshard *ss = hs->share;
    struct sfetch *sf = ss != NULL ? ss->parked : NULL;
    while (sf != NULL) {
        struct sfetch *next = sf->next; /* respond unlinks sf and frees it with its request */
        if (broker_req_conn_id(sf->req) == conn_id) {
            sf->final = true;
            if (sf->state == SF_PARKED)
                respond(sf);
        }
        sf = next;
    }
}

/* The watch on a fetched partition's owner: pass again at once when the log or the share
 * partition moved since the pass; else a waiter for the high watermark (new data) and one on
 * the share partition (records released), and its earliest lock deadline for the timer. */
static void watch_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct sfetch *sf = f->ctx;
    struct sitem *it = &sf->sitems[w - sf->items];
    it->lock_deadline = INT64_MAX;
    if (!it->fetch)
        return;
    struct sshard *ss = sshard_of(hs);
    bool closed = p != NULL && hs_part_budget_closed(p);
    if (p == NULL || ss == NULL ||
        (!closed &&
         (p->part == NULL || p->log == NULL || partition_high_watermark(p->part) != it->hw_seen ||
          storage_log_end_offset(p->log) != it->leo_seen))) {
        it->wake_now = true;
        return;
    }
    struct spart *spt = spart_find(ss, sf->group, w->topic, w->topic_len, w->partition);
    if (spt != NULL && spt->changes != it->changes_seen) {
        it->wake_now = true;
        return;
    }
    /* read_committed waits for the last stable offset, which moves with the high watermark
     * (the marker that ends a transaction is committed like any record) */
    int64_t target = (closed ? p->idle_hw : it->hw_seen) + 1;
    if (!hs_waiter_add(hs, p, f->origin->id, sf->id, sf->deadline_ms, target)) {
        it->wake_now = true;
        return;
    }
    if (spt == NULL)
        return;
    if (!spart_watch(spt, f->origin->id, sf->id, sf->deadline_ms))
        BLOG_WARN_LIMITED("share partition %s-%d of %s: %d fetches parked on it; one more waits "
                          "for new data or its timer only",
                          spt->topic, spt->partition, spt->group, SHARE_WAITERS_MAX);
    it->lock_deadline = lm_share_part_lock_deadline(&spt->sp);
}

static void watch_done(struct hfan *f)
{
    struct sfetch *sf = f->ctx;
    sf->state = SF_PARKED;
    bool again = sf->final || sf->woken;
    int64_t at = (int64_t)sf->deadline_ms;
    for (size_t i = 0; i < sf->count; i++) {
        again = again || sf->sitems[i].wake_now;
        if (sf->sitems[i].lock_deadline < at)
            at = sf->sitems[i].lock_deadline; /* a lock runs out first: its record returns */
    }
    int64_t now = (int64_t)broker_now_ms();
    if (again || at <= now) {
        pass_start(sf);
        return;
    }
    if (broker_timer_start(sf->req->shard, &sf->timer, (uint64_t)(at - now), timer_fired, sf) !=
        0) {
        sf->final = true;
        pass_start(sf);
    }
}

/* Nothing acquired: park on the partitions (woken by new data, released records, lock
 * timeouts) until max_wait_ms, as Kafka's DelayedShareFetch in its purgatory. */
static void watch_start(struct sfetch *sf)
{
    if (!sf->parked) {
        struct sshard *ss = sf->hs->share;
        sf->id = sf->hs->fetch_id_next++;
        sf->next = ss->parked;
        ss->parked = sf;
        sf->parked = true;
    }
    sf->state = SF_WATCHING;
    sf->woken = false;
    for (size_t i = 0; i < sf->count; i++)
        sf->sitems[i].wake_now = false;
    if (!hfan_init(&sf->fan, sf->req, sf->items, sf->count, watch_op, watch_done, sf)) {
        sf->final = true;
        respond(sf);
        return;
    }
    sf->fan.peek = true; /* a closed log is watched closed */
    hfan_start(&sf->fan);
}

static void pass_loaded(void *ctx)
{
    struct sfetch *sf = ctx;
    for (size_t k = 0; k < sf->n_loads; k++) {
        struct share_load *ld = &sf->loads[k];
        struct sitem *it = &sf->sitems[ld->item];
        LM_ASSERT(it->need_load && it->load == NULL);
        it->load = ld->state; /* NULL: the read failed, the item starts without it */
        it->loaded = true;
        it->need_load = false;
        it->load_pass = true;
        if (ld->error != KAFKA_NONE && ld->error != KAFKA_NOT_LEADER_OR_FOLLOWER)
            BLOG_WARN_LIMITED("share partition %.*s-%d: its state was not read (error %d)",
                              (int)sf->items[ld->item].topic_len, sf->items[ld->item].topic,
                              sf->items[ld->item].partition, ld->error);
    }
    sf->n_loads = 0;
    /* again for those items only: the others keep what they acquired */
    sf->load_pass = true;
    if (!hfan_init(&sf->fan, sf->req, sf->items, sf->count, share_op, pass_done, sf)) {
        sf->final = true;
        respond(sf);
        return;
    }
    sf->fan.sequential = true;
    sf->fan.peek = true;
    hfan_start(&sf->fan);
}

static void pass_after_persist(struct sfetch *sf);

/* On the owner shard: a share partition whose state write was fenced is read again at its next
 * use (its leader epoch no longer matches). */
static void fenced_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    (void)p;
    struct sfetch *sf = f->ctx;
    struct sitem *it = &sf->sitems[w - sf->items];
    if (!it->fenced || hs->share == NULL)
        return;
    for (struct spart *s = hs->share->parts; s != NULL; s = s->next)
        if (s->partition == w->partition && kstr_is(sf->group, s->group) &&
            strlen(s->topic) == w->topic_len && memcmp(s->topic, w->topic, w->topic_len) == 0) {
            BLOG_INFO("share partition %s-%d of %s: its state write was fenced; read again",
                      s->topic, s->partition, s->group);
            s->leader_epoch = INT32_MIN;
        }
}

static void fenced_done(struct hfan *f)
{
    struct sfetch *sf = f->ctx;
    for (size_t i = 0; i < sf->count; i++)
        sf->sitems[i].fenced = false;
    pass_after_persist(sf);
}

/* After the records of the pass are durable: the share partitions fenced dropped, the reads
 * the pass asked for, else the answer. */
static void pass_persisted(void *ctx)
{
    struct sfetch *sf = ctx;
    bool fenced = false;
    for (size_t i = 0; i < sf->count; i++) {
        struct share_prec *pr = &sf->precs[i];
        if (pr->n == 0)
            continue;
        struct sitem *it = &sf->sitems[i];
        if (pr->error == KAFKA_NOT_LEADER_OR_FOLLOWER) {
            /* no leader of the state partition known or reachable now (a cluster): not
             * written, the share partition keeps its state in memory (and share.checkpoint);
             * the next write carries it, as each write holds the whole state */
            BLOG_INFO_LIMITED("share partition %.*s-%d: %s-%d has no reachable leader; state "
                              "not written",
                              (int)sf->items[i].topic_len, sf->items[i].topic,
                              sf->items[i].partition, SHARE_STATE_TOPIC, pr->state_partition);
        } else if (pr->error != KAFKA_NONE && it->n_acks > 0 && it->ack_error == KAFKA_NONE) {
            it->ack_error = pr->error; /* the acknowledgement is not durable */
        }
        if (pr->error == KAFKA_FENCED_STATE_EPOCH || pr->error == KAFKA_FENCED_LEADER_EPOCH) {
            it->fenced = true;
            fenced = true;
        }
        share_prec_free(pr);
    }
    if (fenced) {
        /* the share coordinator holds a newer state (an offsets reset, a newer leader): the
         * share partitions are dropped on their owners and read again, as Kafka drops a fenced
         * SharePartition */
        if (hfan_init(&sf->fan, sf->req, sf->items, sf->count, fenced_op, fenced_done, sf)) {
            sf->fan.peek = true;
            hfan_start(&sf->fan);
            return;
        }
        BLOG_WARN_LIMITED("share fetch: arena exhausted; fenced share partitions kept");
    }
    pass_after_persist(sf);
}

static void pass_after_persist(struct sfetch *sf)
{
    sf->n_loads = 0;
    for (size_t i = 0; i < sf->count; i++) {
        struct sitem *it = &sf->sitems[i];
        if (!it->need_load)
            continue;
        sf->loads[sf->n_loads++] = (struct share_load){
            .state_partition = share_state_partition_for(sf->group, it->topic_id,
                                                         sf->items[i].partition, sf->state_parts),
            .group = sf->group,
            .partition = sf->items[i].partition,
            .item = i,
            .with_epoch = true,
            .leader_epoch = it->load_epoch};
        memcpy(sf->loads[sf->n_loads - 1].topic_id, it->topic_id, 16);
    }
    if (sf->n_loads > 0) {
        if (!share_load_start(sf->req, sf->loads, sf->n_loads, pass_loaded, sf)) {
            sf->final = true;
            respond(sf);
        }
        return;
    }
    pass_answer(sf);
}

static void pass_done(struct hfan *f)
{
    struct sfetch *sf = f->ctx;
    sf->acks_done = true;
    sf->load_pass = false;
    sf->new_session = false; /* its first pass only */
    for (size_t i = 0; i < sf->count; i++) {
        sf->precs[i] = sf->sitems[i].prec; /* moved: the persist owns it */
        memset(&sf->sitems[i].prec, 0, sizeof(sf->sitems[i].prec));
    }
    if (!share_persist_start(sf->req, sf->precs, sf->count, pass_persisted, sf)) {
        for (size_t i = 0; i < sf->count; i++)
            share_prec_free(&sf->precs[i]);
        sf->final = true;
        respond(sf);
    }
}

/* The pass is over: the answer, or another pass later (nothing acquired yet). */
static void pass_answer(struct sfetch *sf)
{
    struct broker_req *req = sf->req;
    /* piggybacked acknowledgements do not end the wait: Kafka answers a ShareFetch once its
     * fetch part completes (KafkaApis combines both futures), so an acknowledging consumer's
     * fetch still long-polls; a ShareFetch with nothing to fetch answers at once */
    bool any = sf->acknowledge, fetching = false;
    for (size_t i = 0; i < sf->count && !any; i++) {
        any = sf->sitems[i].n_ranges > 0 || sf->items[i].error != KAFKA_NONE;
        fetching = fetching || sf->sitems[i].fetch;
    }
    if (!fetching)
        any = true;
    uint64_t now = broker_now_ms();
    if (any || sf->final || sf->max_wait_ms <= 0 || now >= sf->deadline_ms ||
        broker_req_conn_closing(req) || broker_shard_draining(req->shard) || sf->hs->stopping) {
        respond(sf);
        return;
    }
    /* nothing acquired, but records were archived (control batches, aborted transactions):
     * what follows them may be acquirable, read on */
    bool progressed = false;
    for (size_t i = 0; i < sf->count && !progressed; i++)
        progressed = sf->sitems[i].progressed;
    if (progressed && sf->repasses < SHARE_REPASS_MAX) {
        sf->repasses++;
        pass_start(sf);
        return;
    }
    sf->repasses = 0;
    watch_start(sf);
}

static void pass_start(struct sfetch *sf)
{
    sf->state = SF_READING;
    sf->woken = false;
    free_items(sf);
    sf->budget_records = sf->budget_records > 0 ? sf->budget_records : 0;
    if (!hfan_init(&sf->fan, sf->req, sf->items, sf->count, share_op, pass_done, sf)) {
        sf->final = true;
        respond(sf);
        return;
    }
    sf->fan.sequential = true; /* one byte and record budget over the shards */
    sf->fan.peek = true;
    hfan_start(&sf->fan);
}

void share_fetch_drain(struct hshard *hs)
{
    struct sshard *ss = hs->share;
    if (ss == NULL)
        return;
    /* shutdown: every parked fetch answers with what it has now (one watching answers when
     * its watch is done) */
    struct sfetch *sf = ss->parked;
    while (sf != NULL) {
        struct sfetch *next = sf->next; /* pass_start may answer sf and unlink it */
        sf->final = true;
        if (sf->state == SF_PARKED) {
            broker_timer_cancel(hs->shard, &sf->timer);
            pass_start(sf);
        }
        sf = next;
    }
}

/* The group's share.auto.offset.reset ("earliest" sets sf->earliest) and
 * share.record.lock.duration.ms (sf->lock_ms; the broker's when the group has none). */
static void group_configs_read(struct sfetch *sf)
{
    struct hshard *hs = sf->hs;
    struct kafka_str group = sf->group;
    sf->earliest = false;
    sf->read_committed = false;
    sf->lock_ms = hs->node->share_cfg.lock_ms;
    hs_refresh(hs);
    if (hs->snap == NULL || hs->snap->state.group_config_count == 0 || group.len <= 0 ||
        group.len > LM_META_GROUP_NAME_MAX)
        return;
    char g[LM_META_GROUP_NAME_MAX + 1];
    memcpy(g, group.ptr, (size_t)group.len);
    g[group.len] = '\0';
    const struct lm_meta_group_configs *gc = lm_meta_state_group_configs(&hs->snap->state, g);
    for (size_t i = 0; gc != NULL && i < gc->count; i++) {
        if (strcmp(gc->configs[i].name, "share.auto.offset.reset") == 0) {
            sf->earliest = strcmp(gc->configs[i].value, "earliest") == 0;
        } else if (strcmp(gc->configs[i].name, "share.isolation.level") == 0) {
            sf->read_committed = strcmp(gc->configs[i].value, "read_committed") == 0;
        } else if (strcmp(gc->configs[i].name, "share.record.lock.duration.ms") == 0) {
            long long v = strtoll(gc->configs[i].value, NULL, 10);
            if (v >= 1000 && v <= INT32_MAX)
                sf->lock_ms = (int32_t)v;
        }
    }
}

/* One partition named in the request: its acknowledgements. */
struct rpart {
    const uint8_t *topic_id;
    int32_t partition;
    int32_t n_acks;
    const void *acks;
};

/* Builds the items: the session's partitions (fetch; release when closing) and the request's
 * partitions with acknowledgements, in topic id order (the response groups by topic). */
static bool items_build(struct sfetch *sf, const struct ssess *s, const struct rpart *rp,
                        int32_t nrp, bool fetch, bool release, bool acks_fetch)
{
    struct broker_req *req = sf->req;
    struct hshard *hs = sf->hs;
    size_t cap = (size_t)(s != NULL ? s->n : 0) + (size_t)nrp;
    sf->items = h_alloc(req, cap, sizeof(*sf->items));
    sf->sitems = h_alloc(req, cap, sizeof(*sf->sitems));
    sf->precs = h_alloc(req, cap, sizeof(*sf->precs));
    sf->loads = h_alloc(req, cap, sizeof(*sf->loads));
    if (cap > 0 &&
        (sf->items == NULL || sf->sitems == NULL || sf->precs == NULL || sf->loads == NULL))
        return false;
    if (cap > 0)
        memset(sf->precs, 0, cap * sizeof(*sf->precs));
    size_t n = 0;
    for (int32_t i = 0; s != NULL && i < s->n; i++) {
        memset(&sf->sitems[n], 0, sizeof(sf->sitems[n]));
        memcpy(sf->sitems[n].topic_id, s->parts[i].topic_id, 16);
        sf->sitems[n].fetch = fetch;
        sf->sitems[n].release = release;
        sf->items[n].partition = s->parts[i].partition;
        n++;
    }
    for (int32_t i = 0; i < nrp; i++) {
        size_t at = n;
        for (size_t j = 0; j < n; j++)
            if (sf->items[j].partition == rp[i].partition &&
                memcmp(sf->sitems[j].topic_id, rp[i].topic_id, 16) == 0)
                at = j;
        if (at == n) {
            if (rp[i].n_acks <= 0)
                continue;
            memset(&sf->sitems[n], 0, sizeof(sf->sitems[n]));
            memcpy(sf->sitems[n].topic_id, rp[i].topic_id, 16);
            sf->items[n].partition = rp[i].partition;
            n++;
        }
        sf->sitems[at].n_acks = rp[i].n_acks > 0 ? rp[i].n_acks : 0;
        sf->sitems[at].acks = rp[i].acks;
        sf->sitems[at].acks_fetch = acks_fetch;
    }
    /* sort by topic id (insertion: sessions are small) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i;
             j > 0 && memcmp(sf->sitems[j - 1].topic_id, sf->sitems[j].topic_id, 16) > 0; j--) {
            struct sitem t = sf->sitems[j];
            sf->sitems[j] = sf->sitems[j - 1];
            sf->sitems[j - 1] = t;
            int32_t p = sf->items[j].partition;
            sf->items[j].partition = sf->items[j - 1].partition;
            sf->items[j - 1].partition = p;
        }
    sf->count = n;
    for (size_t i = 0; i < n; i++) {
        struct hwork *w = &sf->items[i];
        struct sitem *it = &sf->sitems[i];
        w->in = it;
        w->out = it;
        w->error = KAFKA_NONE;
        struct htopic *t = hs_topic_by_id(hs, it->topic_id);
        if (t == NULL) {
            w->error = KAFKA_UNKNOWN_TOPIC_ID;
            w->owner = HWORK_DONE;
            continue;
        }
        size_t tl = strlen(t->meta->name);
        w->topic = h_strdup(req, (struct kafka_str){t->meta->name, (int32_t)tl});
        w->topic_len = tl;
        if (w->topic == NULL)
            return false;
        if (!h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC,
                         (struct kafka_str){w->topic, (int32_t)tl})) {
            w->error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
            w->owner = HWORK_DONE;
            continue;
        }
        if (w->partition < 0 || w->partition >= t->meta->partition_count) {
            w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            w->owner = HWORK_DONE;
            continue;
        }
        w->owner = hs_owner(hs, w->topic, tl, w->partition);
    }
    return true;
}

/* Session checks common to both APIs; returns the Kafka error, the session in *out (NULL when
 * it was closed or never existed). */
static int16_t session_step(struct sfetch *sf, int32_t epoch, struct ssess **out)
{
    struct sshard *ss = sshard_of(sf->hs);
    *out = NULL;
    if (ss == NULL)
        return KAFKA_UNKNOWN_SERVER_ERROR;
    struct ssess *s = sess_find(ss, sf->group, sf->member);
    if (epoch == 0) {
        if (sf->acknowledge)
            return KAFKA_INVALID_SHARE_SESSION_EPOCH;
        if (s != NULL)
            sess_remove(ss, s);
        s = sess_new(ss, sf->group, sf->member);
        if (s == NULL)
            return KAFKA_SHARE_SESSION_LIMIT_REACHED;
        s->epoch = 1;
        s->conn_id = broker_req_conn_id(sf->req);
        s->used_ms = broker_now_ms();
        *out = s;
        return KAFKA_NONE;
    }
    if (s == NULL)
        return KAFKA_SHARE_SESSION_NOT_FOUND;
    if (epoch != -1 && epoch != s->epoch)
        return KAFKA_INVALID_SHARE_SESSION_EPOCH;
    if (epoch != -1)
        s->epoch = s->epoch == INT32_MAX ? 1 : s->epoch + 1;
    s->used_ms = broker_now_ms();
    *out = s;
    return KAFKA_NONE;
}

static struct sfetch *sfetch_new(struct broker_req *req, struct kafka_str group,
                                 struct kafka_str member)
{
    struct sfetch *sf = h_alloc(req, 1, sizeof(*sf));
    if (sf == NULL)
        return NULL;
    memset(sf, 0, sizeof(*sf));
    sf->req = req;
    sf->hs = hs_of(req->shard);
    sf->timer.heap_index_ = UINT32_MAX;
    sf->lock_ms = sf->hs->node->share_cfg.lock_ms;
    sf->group = group;
    sf->member = member;
    sf->member_hash = member.len > 0 ? lm_share_member_hash(member.ptr, member.len) : 1;
    return sf;
}

/* Top-level checks: ids present and short enough, READ on the group. */
static int16_t check_ids(struct broker_req *req, struct sfetch *sf)
{
    if (sf->group.len <= 0 || sf->member.len <= 0 || sf->group.len > SHARE_ID_MAX ||
        sf->member.len > SHARE_ID_MAX) {
        sf->error_message = "GroupId and MemberId must be set.";
        return KAFKA_INVALID_REQUEST;
    }
    if (!h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_GROUP, sf->group))
        return KAFKA_GROUP_AUTHORIZATION_FAILED;
    return KAFKA_NONE;
}

static void share_fetch(struct broker_req *req)
{
    struct kafka_share_fetch_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_share_fetch_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_share_fetch_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_share_fetch_response_init(resp);
    struct sfetch *sf = sfetch_new(req, rq->group_id, rq->member_id);
    if (sf == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    sf->fresp = resp;
    sf->error = check_ids(req, sf);
    struct ssess *s = NULL;
    if (sf->error == KAFKA_NONE)
        sf->error = session_step(sf, rq->share_session_epoch, &s);
    if (sf->error != KAFKA_NONE) {
        respond(sf);
        return;
    }
    sf->new_session = rq->share_session_epoch == 0;
    bool closing = rq->share_session_epoch == -1;
    int32_t nrp = 0;
    for (int32_t i = 0; i < rq->topics_count; i++)
        nrp += rq->topics[i].partitions_count > 0 ? rq->topics[i].partitions_count : 0;
    struct rpart *rp = h_alloc(req, (size_t)nrp, sizeof(*rp));
    if (nrp > 0 && rp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    int32_t k = 0;
    for (int32_t i = 0; i < rq->topics_count; i++) {
        const struct kafka_share_fetch_request_fetch_topic *t = &rq->topics[i];
        for (int32_t j = 0; j < t->partitions_count; j++) {
            const struct kafka_share_fetch_request_fetch_partition *p = &t->partitions[j];
            rp[k++] = (struct rpart){t->topic_id.b, p->partition_index,
                                     p->acknowledgement_batches_count, p->acknowledgement_batches};
            if (!closing && sess_add(s, t->topic_id.b, p->partition_index) != 0) {
                sf->error = KAFKA_INVALID_REQUEST;
                sf->error_message = "Too many partitions in the share session.";
                respond(sf);
                return;
            }
        }
    }
    for (int32_t i = 0; !closing && i < rq->forgotten_topics_data_count; i++)
        for (int32_t j = 0; j < rq->forgotten_topics_data[i].partitions_count; j++)
            sess_forget(s, rq->forgotten_topics_data[i].topic_id.b,
                        rq->forgotten_topics_data[i].partitions[j]);
    if (!items_build(sf, s, rp, nrp, !closing, closing, true)) {
        h_close(req, "arena exhausted");
        return;
    }
    if (closing)
        sess_remove(sshard_of(sf->hs), s);
    group_configs_read(sf);
    /* __share_group_state, made at the first share fetch when missing (Kafka: at the share
     * coordinator's first use); without it (a cluster, until the controller made it) the
     * state stays in memory */
    sf->state_parts = share_state_partitions(sf->hs, true);
    sf->max_wait_ms = closing ? 0 : rq->max_wait_ms;
    sf->deadline_ms = broker_now_ms() + (uint64_t)(sf->max_wait_ms > 0 ? sf->max_wait_ms : 0);
    sf->budget_bytes = rq->max_bytes > 0 ? rq->max_bytes : INT32_MAX;
    sf->budget_records = rq->max_records > 0 ? rq->max_records : 500;
    pass_start(sf);
}

static void share_acknowledge(struct broker_req *req)
{
    struct kafka_share_acknowledge_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_share_acknowledge_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_share_acknowledge_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_share_acknowledge_response_init(resp);
    struct sfetch *sf = sfetch_new(req, rq->group_id, rq->member_id);
    if (sf == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    sf->acknowledge = true;
    sf->aresp = resp;
    sf->error = check_ids(req, sf);
    struct ssess *s = NULL;
    if (sf->error == KAFKA_NONE)
        sf->error = session_step(sf, rq->share_session_epoch, &s);
    if (sf->error != KAFKA_NONE) {
        respond(sf);
        return;
    }
    bool closing = rq->share_session_epoch == -1;
    int32_t nrp = 0;
    for (int32_t i = 0; i < rq->topics_count; i++)
        nrp += rq->topics[i].partitions_count > 0 ? rq->topics[i].partitions_count : 0;
    struct rpart *rp = h_alloc(req, (size_t)nrp, sizeof(*rp));
    if (nrp > 0 && rp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    int32_t k = 0;
    for (int32_t i = 0; i < rq->topics_count; i++) {
        const struct kafka_share_acknowledge_request_acknowledge_topic *t = &rq->topics[i];
        for (int32_t j = 0; j < t->partitions_count; j++)
            rp[k++] = (struct rpart){t->topic_id.b, t->partitions[j].partition_index,
                                     t->partitions[j].acknowledgement_batches_count,
                                     t->partitions[j].acknowledgement_batches};
    }
    /* only the acknowledged partitions answer; a closing session also releases the rest */
    if (!items_build(sf, closing ? s : NULL, rp, nrp, false, closing, false)) {
        h_close(req, "arena exhausted");
        return;
    }
    if (closing)
        sess_remove(sshard_of(sf->hs), s);
    sf->state_parts = share_state_partitions(sf->hs, false);
    pass_start(sf);
}

static void describe_share_group_offsets(struct broker_req *req);
static void alter_share_group_offsets(struct broker_req *req);
static void delete_share_group_offsets(struct broker_req *req);

int share_fetch_register(struct broker_dispatch *d)
{
    int rc;
    if ((rc = share_state_register(d)) != 0)
        return rc;
    if ((rc = handlers_serve(d, KAFKA_ALTER_SHARE_GROUP_OFFSETS_KEY, 0, 0,
                             alter_share_group_offsets)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DELETE_SHARE_GROUP_OFFSETS_KEY, 0, 0,
                             delete_share_group_offsets)) != 0)
        return rc;
    if ((rc = handlers_serve(d, KAFKA_SHARE_FETCH_KEY, 1, 1, share_fetch)) != 0 ||
        (rc = handlers_serve(d, KAFKA_SHARE_ACKNOWLEDGE_KEY, 1, 1, share_acknowledge)) != 0 ||
        (rc = handlers_serve(d, KAFKA_DESCRIBE_SHARE_GROUP_OFFSETS_KEY, 0, 0,
                             describe_share_group_offsets)) != 0)
        return rc;
    return 0;
}

/* ---- DescribeShareGroupOffsets (90, v0) ---- */

/* One (group, topic partition) asked about; start written on the partition's owner (what
 * this node holds), then replaced by what the share partition's state in __share_group_state
 * says, read where its state partition is led (ReadShareGroupStateSummary to another node, as
 * Kafka's GroupCoordinatorService reads the persister's summaries). */
struct doitem {
    struct kafka_str group;
    bool only_with_state; /* topics null: left out unless the group has state there */
    int64_t start;
    int32_t leader_epoch;
};

struct dsoffsets {
    struct broker_req *req;
    struct kafka_describe_share_group_offsets_request *rq;
    struct kafka_describe_share_group_offsets_response *resp;
    size_t count;
    struct hwork *items;
    struct doitem *ditems;
    int32_t *group_of; /* item -> group index */
    struct hfan fan;
    int32_t state_parts;
    struct share_load *loads;
    size_t n_loads;
};

static void doffsets_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct dsoffsets *d = f->ctx;
    struct doitem *it = &d->ditems[w - d->items];
    w->error = KAFKA_NONE;
    it->start = -1;
    it->leader_epoch = -1;
    struct sshard *ss = hs->share;
    for (struct spart *s = ss != NULL ? ss->parts : NULL; s != NULL; s = s->next)
        if (s->partition == w->partition && kstr_is(it->group, s->group) &&
            strlen(s->topic) == w->topic_len && memcmp(s->topic, w->topic, w->topic_len) == 0) {
            it->start = s->sp.initialized ? s->sp.start : -1;
            it->leader_epoch = s->leader_epoch;
            return;
        }
    /* not used since the start: what the checkpoint holds */
    if (p != NULL && it->group.len > 0 && it->group.len <= SHARE_ID_MAX) {
        char g[SHARE_ID_MAX + 1];
        memcpy(g, it->group.ptr, (size_t)it->group.len);
        g[it->group.len] = '\0';
        it->start = ckpt_read(hs, p->topic, p->partition, g);
    }
}

static void doffsets_answer(struct dsoffsets *d);

/* The states read: each one found replaces what this node held. */
static void doffsets_loaded(void *ctx)
{
    struct dsoffsets *d = ctx;
    for (size_t k = 0; k < d->n_loads; k++) {
        struct share_load *ld = &d->loads[k];
        struct doitem *it = &d->ditems[ld->item];
        if (ld->error == KAFKA_NONE && ld->state != NULL && ld->state->present) {
            it->start = ld->state->start_offset;
            it->leader_epoch = ld->state->leader_epoch;
        } else if (ld->error != KAFKA_NONE && ld->error != KAFKA_NOT_LEADER_OR_FOLLOWER) {
            BLOG_INFO_LIMITED("share partition %.*s-%d of %.*s: state summary not read (error "
                              "%d)",
                              (int)d->items[ld->item].topic_len, d->items[ld->item].topic,
                              d->items[ld->item].partition, (int)it->group.len, it->group.ptr,
                              ld->error);
        }
        if (ld->state != NULL) {
            lm_shr_state_deinit(ld->state);
            free(ld->state);
            ld->state = NULL;
        }
    }
    doffsets_answer(d);
}

/* The owners are done: the states in __share_group_state, then the answer. */
static void doffsets_done(struct hfan *f)
{
    struct dsoffsets *d = f->ctx;
    struct hshard *hs = hs_of(d->req->shard);
    d->n_loads = 0;
    if (d->state_parts > 0) {
        d->loads = h_alloc(d->req, d->count ? d->count : 1, sizeof(*d->loads));
        if (d->loads == NULL) {
            h_close(d->req, "arena exhausted");
            return;
        }
        for (size_t i = 0; i < d->count; i++) {
            const struct hwork *w = &d->items[i];
            struct htopic *ht =
                w->error == KAFKA_NONE ? hs_topic(hs, w->topic, w->topic_len) : NULL;
            if (ht == NULL)
                continue;
            struct share_load *ld = &d->loads[d->n_loads++];
            *ld = (struct share_load){
                .state_partition = share_state_partition_for(d->ditems[i].group, ht->meta->id,
                                                             w->partition, d->state_parts),
                .group = d->ditems[i].group,
                .partition = w->partition,
                .item = i,
                .summary = true};
            memcpy(ld->topic_id, ht->meta->id, 16);
        }
    }
    if (d->n_loads > 0) {
        if (!share_load_start(d->req, d->loads, d->n_loads, doffsets_loaded, d))
            h_close(d->req, "arena exhausted");
        return;
    }
    doffsets_answer(d);
}

static void doffsets_answer(struct dsoffsets *d)
{
    struct broker_req *req = d->req;
    struct hshard *hs = hs_of(req->shard);
    /* items are in request order: group, then topic, then partition */
    size_t k = 0;
    for (int32_t g = 0; g < d->resp->groups_count; g++) {
        struct
            kafka_describe_share_group_offsets_response_describe_share_group_offsets_response_group
                *rg = &d->resp->groups[g];
        if (rg->error_code != KAFKA_NONE)
            continue;
        size_t first = k;
        while (k < d->count && d->group_of[k] == g)
            k++;
        /* topics: runs of the same name */
        int32_t nt = 0;
        for (size_t i = first; i < k; i++)
            if (!(d->ditems[i].only_with_state && d->ditems[i].start < 0) &&
                (i == first || d->items[i].topic != d->items[i - 1].topic))
                nt++;
        rg->topics = h_alloc(req, (size_t)nt, sizeof(*rg->topics));
        struct
            kafka_describe_share_group_offsets_response_describe_share_group_offsets_response_partition
                *parts = h_alloc(req, k - first, sizeof(*parts));
        if ((nt > 0 && rg->topics == NULL) || (k > first && parts == NULL)) {
            h_close(req, "arena exhausted");
            return;
        }
        int32_t t = -1, q = 0;
        const char *last = NULL;
        for (size_t i = first; i < k; i++) {
            const struct hwork *w = &d->items[i];
            const struct doitem *it = &d->ditems[i];
            if (it->only_with_state && it->start < 0)
                continue;
            if (last == NULL || w->topic != last) {
                t++;
                last = w->topic;
                struct
                    kafka_describe_share_group_offsets_response_describe_share_group_offsets_response_topic
                        *rt = &rg->topics[t];
                memset(rt, 0, sizeof(*rt));
                rt->topic_name = (struct kafka_str){w->topic, (int32_t)w->topic_len};
                struct htopic *ht = hs_topic(hs, w->topic, w->topic_len);
                if (ht != NULL)
                    memcpy(rt->topic_id.b, ht->meta->id, 16);
                rt->partitions = &parts[q];
            }
            struct
                kafka_describe_share_group_offsets_response_describe_share_group_offsets_response_partition
                    *rp = &parts[q++];
            memset(rp, 0, sizeof(*rp));
            rp->partition_index = w->partition;
            rp->start_offset = w->error == KAFKA_NONE ? it->start : -1;
            rp->leader_epoch = w->error == KAFKA_NONE && it->start >= 0 ? it->leader_epoch : -1;
            rp->error_code = w->error;
            rp->error_message = KAFKA_STR_NULL;
            rg->topics[t].partitions_count++;
        }
        rg->topics_count = nt;
        LM_ASSERT(t + 1 == nt);
    }
    h_respond(req, d->resp);
}

static void describe_share_group_offsets(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct dsoffsets *d = h_alloc(req, 1, sizeof(*d));
    struct kafka_describe_share_group_offsets_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_describe_share_group_offsets_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (d == NULL || rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_describe_share_group_offsets_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_describe_share_group_offsets_response_init(resp);
    memset(d, 0, sizeof(*d));
    d->req = req;
    d->rq = rq;
    d->resp = resp;
    int32_t ng = rq->groups_count > 0 ? rq->groups_count : 0;
    resp->groups = h_alloc(req, (size_t)ng, sizeof(*resp->groups));
    if (ng > 0 && resp->groups == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    resp->groups_count = ng;
    hs_refresh(hs);
    const struct lm_meta_state *st = hs->snap != NULL ? &hs->snap->state : NULL;
    /* count the items first */
    size_t n = 0;
    for (int32_t g = 0; g < ng; g++) {
        const struct
            kafka_describe_share_group_offsets_request_describe_share_group_offsets_request_group
                *q = &rq->groups[g];
        if (q->topics_count < 0) {
            for (size_t i = 0; st != NULL && i < st->topic_count; i++)
                n += st->topics[i].name[0] != '_' ? (size_t)st->topics[i].partition_count : 0;
        } else {
            for (int32_t t = 0; t < q->topics_count; t++)
                n += q->topics[t].partitions_count > 0 ? (size_t)q->topics[t].partitions_count : 0;
        }
    }
    d->items = h_alloc(req, n, sizeof(*d->items));
    d->ditems = h_alloc(req, n, sizeof(*d->ditems));
    d->group_of = h_alloc(req, n, sizeof(*d->group_of));
    if (n > 0 && (d->items == NULL || d->ditems == NULL || d->group_of == NULL)) {
        h_close(req, "arena exhausted");
        return;
    }
    size_t k = 0;
    for (int32_t g = 0; g < ng; g++) {
        const struct
            kafka_describe_share_group_offsets_request_describe_share_group_offsets_request_group
                *q = &rq->groups[g];
        struct
            kafka_describe_share_group_offsets_response_describe_share_group_offsets_response_group
                *rg = &resp->groups[g];
        memset(rg, 0, sizeof(*rg));
        rg->group_id = q->group_id;
        rg->error_message = KAFKA_STR_NULL;
        if (q->group_id.len <= 0) {
            rg->error_code = KAFKA_INVALID_GROUP_ID;
            continue;
        }
        if (!h_allowed_k(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_GROUP, q->group_id)) {
            rg->error_code = KAFKA_GROUP_AUTHORIZATION_FAILED;
            continue;
        }
        int32_t ntq =
            q->topics_count < 0 ? (st != NULL ? (int32_t)st->topic_count : 0) : q->topics_count;
        for (int32_t t = 0; t < ntq; t++) {
            const char *name;
            size_t len;
            int32_t np;
            const int32_t *given = NULL;
            if (q->topics_count < 0) {
                if (st->topics[t].name[0] == '_')
                    continue; /* internal topics hold no share state */
                len = strlen(st->topics[t].name);
                /* copied: the shard's metadata image may change before the answer */
                name = h_strdup(req, (struct kafka_str){st->topics[t].name, (int32_t)len});
                if (name == NULL) {
                    h_close(req, "arena exhausted");
                    return;
                }
                np = st->topics[t].partition_count;
            } else {
                name = h_strdup(req, q->topics[t].topic_name);
                if (name == NULL) {
                    h_close(req, "arena exhausted");
                    return;
                }
                len = q->topics[t].topic_name.len > 0 ? (size_t)q->topics[t].topic_name.len : 0;
                np = q->topics[t].partitions_count > 0 ? q->topics[t].partitions_count : 0;
                given = q->topics[t].partitions;
            }
            struct htopic *ht = len > 0 ? hs_topic(hs, name, len) : NULL;
            bool allowed = h_allowed_k(req, AUTHZ_OP_DESCRIBE, AUTHZ_RES_TOPIC,
                                       (struct kafka_str){name, (int32_t)len});
            for (int32_t j = 0; j < np; j++, k++) {
                struct hwork *w = &d->items[k];
                memset(w, 0, sizeof(*w));
                w->topic = name;
                w->topic_len = len;
                w->partition = given != NULL ? given[j] : j;
                d->ditems[k] = (struct doitem){q->group_id, q->topics_count < 0, -1, -1};
                d->group_of[k] = g;
                if (!allowed) {
                    w->error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
                    w->owner = HWORK_DONE;
                } else if (ht == NULL || w->partition < 0 ||
                           w->partition >= ht->meta->partition_count) {
                    w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                    w->owner = HWORK_DONE;
                } else {
                    w->owner = hs_owner(hs, name, len, w->partition);
                }
            }
        }
    }
    d->count = k;
    LM_ASSERT(k <= n);
    d->state_parts = share_state_partitions(hs, false);
    if (!hfan_init(&d->fan, req, d->items, d->count, doffsets_op, doffsets_done, d)) {
        h_close(req, "arena exhausted");
        return;
    }
    d->fan.peek = true; /* no log opened for it */
    hfan_start(&d->fan);
}

/* ---- AlterShareGroupOffsets (91, v0), DeleteShareGroupOffsets (92, v0), DeleteGroups ---- */

/* As Kafka (KafkaApis, GroupCoordinatorService, GroupMetadataManager 4.1): READ on the group
 * (Alter) or DELETE (Delete), else GROUP_AUTHORIZATION_FAILED; READ on each topic, else its
 * partitions (topics) are TOPIC_AUTHORIZATION_FAILED; an unknown topic or partition is
 * UNKNOWN_TOPIC_OR_PARTITION. The group must be a share group (GROUP_ID_NOT_FOUND) without
 * members (NON_EMPTY_GROUP), checked on its coordinator shard (GOP_SG_OFFSETS). Then each
 * partition's owner shard resets (Alter) or drops (Delete) the group's share partition and
 * writes the partition's checkpoint at once, so the change survives a crash. A start offset
 * below 0 drops the state too: the share partition starts from share.auto.offset.reset, as
 * Kafka's uninitialized start offset (-1). In a cluster the state is the partition leader's:
 * another node answers NOT_LEADER_OR_FOLLOWER for a reset. DeleteGroups of an empty share
 * group drops its state on every partition of the node (share_groups_forget). */

enum { SA_ALTER = 1, SA_DELETE, SA_FORGET };

struct saitem {
    struct kafka_str group;
    int64_t offset; /* SA_ALTER */
    int32_t topic;  /* index of the request's topic */
    bool had_state; /* SA_DELETE, SA_FORGET: the group had state there (out) */
    bool prefailed; /* answered on the request's shard (authorization, unknown) */
    /* the partition is not led here (a cluster): its state is changed only where its state
     * partition is led, after reading it (Alter: an initialization in the next state epoch;
     * Delete: tombstones, when it has state) */
    bool state_only;
};

struct sadmin {
    struct broker_req *req;
    int kind;
    void *rq;
    void *resp;
    struct sg_offsets_check check;
    size_t count;
    struct hwork *items;
    struct saitem *aitems;
    struct hfan fan;
    /* __share_group_state: its partitions (0: none yet), the records each item writes (a
     * snapshot of the new start offset, or tombstones) before the answer */
    int32_t state_parts;
    struct share_prec *precs;
    struct share_load *loads; /* the state_only items' reads */
    size_t n_loads;
    void (*answer)(struct hfan *f);
};

/* Drops group's share partition of (topic, partition) here and its checkpoint entry; true
 * when it had one. */
static bool state_drop(struct hshard *hs, struct sshard *ss, struct kafka_str group,
                       const char *topic, size_t topic_len, int32_t partition, int16_t *err)
{
    char g[SHARE_ID_MAX + 1], t[LM_TOPIC_NAME_MAX + 1];
    if (group.len <= 0 || group.len > SHARE_ID_MAX || topic_len == 0 ||
        topic_len > LM_TOPIC_NAME_MAX)
        return false;
    memcpy(g, group.ptr, (size_t)group.len);
    g[group.len] = '\0';
    memcpy(t, topic, topic_len);
    t[topic_len] = '\0';
    bool had = false;
    for (struct spart **pp = ss != NULL ? &ss->parts : NULL; pp != NULL && *pp != NULL;) {
        struct spart *p = *pp;
        if (p->partition == partition && strcmp(p->topic, t) == 0 && strcmp(p->group, g) == 0) {
            had = had || p->sp.initialized;
            *pp = p->next;
            ss->n_parts--;
            spart_free(p);
            continue;
        }
        pp = &p->next;
    }
    if (ckpt_read(hs, t, partition, g) >= 0)
        had = true;
    if (had && ss != NULL) {
        int rc = ckpt_write(hs, ss, t, partition, g);
        if (rc != 0) {
            BLOG_WARN_LIMITED("partition %s-%d: writing %s: %s", t, partition, SHARE_CKPT_NAME,
                              lm_strerror(rc));
            *err = KAFKA_KAFKA_STORAGE_ERROR;
        }
    }
    return had;
}

static void sadmin_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct sadmin *d = f->ctx;
    struct saitem *it = &d->aitems[w - d->items];
    w->error = KAFKA_NONE;
    bool cluster = hs_cluster(hs->node);
    if (p == NULL) {
        /* not on this node: in a cluster, its state where its state partition is led */
        if (cluster && d->kind != SA_FORGET && d->state_parts > 0)
            it->state_only = true;
        else
            w->error = d->kind == SA_FORGET ? KAFKA_NONE : KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    struct sshard *ss = sshard_of(hs);
    if (ss == NULL) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    if (d->kind != SA_ALTER || it->offset < 0) {
        it->had_state =
            state_drop(hs, ss, it->group, w->topic, w->topic_len, w->partition, &w->error);
        if (cluster && d->kind == SA_DELETE && d->state_parts > 0 && !it->had_state) {
            /* none here: whether it has state is what its state partition's leader holds */
            it->state_only = true;
            return;
        }
        /* tombstones of both keys (Kafka's DeleteShareGroupState); DeleteGroups, which looks
         * at every partition of the node, writes them where the group had state */
        if (d->state_parts > 0 && (d->kind != SA_FORGET || it->had_state)) {
            int rc = share_prec_tombstones(
                &d->precs[w - d->items],
                share_state_partition_for(it->group, p->topic_id, w->partition, d->state_parts),
                it->group, p->topic_id, w->partition);
            if (rc != 0)
                w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        }
        return;
    }
    if (p->replicated &&
        (p->part == NULL || !partition_lease_valid(p->part, (int64_t)broker_now_ms()))) {
        /* a follower here: its state where its state partition is led */
        if (cluster && d->state_parts > 0) {
            (void)state_drop(hs, ss, it->group, w->topic, w->topic_len, w->partition, &w->error);
            it->state_only = true;
        } else {
            w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        }
        return;
    }
    struct spart *spt =
        spart_get(ss, &hs->node->share_cfg, it->group, w->topic, w->topic_len, w->partition);
    if (spt == NULL) {
        w->error = KAFKA_UNKNOWN_SERVER_ERROR;
        return;
    }
    lm_share_part_reset(&spt->sp, it->offset);
    memcpy(spt->topic_id, p->topic_id, 16);
    spt->leader_epoch = p->replicated && p->part != NULL ? partition_leader_epoch(p->part) : 0;
    spt->dirty = spt->snap_next = false;
    spt->updates = 0;
    if (d->state_parts > 0) {
        /* a snapshot of the new start, in a new state epoch (Kafka's InitializeShareGroupState
         * after AlterShareGroupOffsets) */
        spt->state_epoch++;
        spt->snapshot_epoch++;
        struct lm_shr_value v = {.snapshot_epoch = spt->snapshot_epoch,
                                 .state_epoch = spt->state_epoch,
                                 .leader_epoch = spt->leader_epoch,
                                 .start_offset = it->offset,
                                 .create_ms = group_now_ms(hs),
                                 .write_ms = group_now_ms(hs)};
        if (share_prec_state(
                &d->precs[w - d->items],
                share_state_partition_for(it->group, p->topic_id, w->partition, d->state_parts),
                it->group, p->topic_id, w->partition, LM_SHR_SNAPSHOT, &v) != 0)
            w->error = KAFKA_UNKNOWN_SERVER_ERROR;
    }
    int rc = ckpt_write(hs, ss, spt->topic, spt->partition, NULL);
    if (rc != 0) {
        BLOG_WARN_LIMITED("partition %s-%d: writing %s: %s", spt->topic, spt->partition,
                          SHARE_CKPT_NAME, lm_strerror(rc));
        w->error = KAFKA_KAFKA_STORAGE_ERROR;
    }
}

static struct kafka_str err_msg(int16_t err)
{
    if (err == KAFKA_NONE)
        return KAFKA_STR_NULL;
    const char *m = kafka_error_message(err);
    return (struct kafka_str){m, (int32_t)strlen(m)};
}

static void topic_id_of(struct hshard *hs, const char *name, size_t len, uint8_t out[16])
{
    struct htopic *ht = len > 0 ? hs_topic(hs, name, len) : NULL;
    if (ht != NULL)
        memcpy(out, ht->meta->id, 16);
    else
        memset(out, 0, 16);
}

static void sadmin_persisted(void *ctx)
{
    struct sadmin *d = ctx;
    for (size_t i = 0; i < d->count; i++) {
        struct share_prec *pr = &d->precs[i];
        if (pr->n == 0)
            continue;
        /* NOT_LEADER_OR_FOLLOWER: the state partition's leader is not reachable, not written
         * there (a cluster); share.checkpoint still holds the change on this node, unless the
         * partition is not led here: then nothing holds it */
        bool kept = pr->error == KAFKA_NOT_LEADER_OR_FOLLOWER && !d->aitems[i].state_only;
        if (pr->error != KAFKA_NONE && !kept && d->items[i].error == KAFKA_NONE)
            d->items[i].error = pr->error == KAFKA_NOT_LEADER_OR_FOLLOWER
                                    ? KAFKA_COORDINATOR_NOT_AVAILABLE
                                    : pr->error;
        share_prec_free(pr);
    }
    d->answer(&d->fan);
}

static void sadmin_persist(struct sadmin *d)
{
    if (!share_persist_start(d->req, d->precs, d->count, sadmin_persisted, d)) {
        for (size_t i = 0; i < d->count; i++)
            share_prec_free(&d->precs[i]);
        h_close(d->req, "arena exhausted");
    }
}

/* The states of the partitions not led here are read: the records that change them. */
static void sadmin_loaded(void *ctx)
{
    struct sadmin *d = ctx;
    struct hshard *hs = hs_of(d->req->shard);
    for (size_t k = 0; k < d->n_loads; k++) {
        struct share_load *ld = &d->loads[k];
        size_t i = ld->item;
        struct saitem *it = &d->aitems[i];
        const struct lm_shr_state *st = ld->state;
        if (ld->error != KAFKA_NONE || st == NULL) {
            d->items[i].error = ld->error == KAFKA_NOT_LEADER_OR_FOLLOWER || ld->error == KAFKA_NONE
                                    ? KAFKA_COORDINATOR_NOT_AVAILABLE
                                    : ld->error;
        } else if (d->kind == SA_ALTER) {
            /* Kafka's AlterShareGroupOffsets: InitializeShareGroupState in the next state
             * epoch (the share partition's leader, fenced by it, reads the state again) */
            if (share_prec_initialize(&d->precs[i], ld->state_partition, it->group, ld->topic_id,
                                      ld->partition, (st->present ? st->state_epoch : 0) + 1,
                                      it->offset >= 0 ? it->offset : -1, group_now_ms(hs)) != 0)
                d->items[i].error = KAFKA_UNKNOWN_SERVER_ERROR;
        } else if (st->present) {
            it->had_state = true;
            if (share_prec_tombstones(&d->precs[i], ld->state_partition, it->group, ld->topic_id,
                                      ld->partition) != 0)
                d->items[i].error = KAFKA_UNKNOWN_SERVER_ERROR;
        }
        if (ld->state != NULL) {
            lm_shr_state_deinit(ld->state);
            free(ld->state);
            ld->state = NULL;
        }
    }
    sadmin_persist(d);
}

/* The owners are done: the states of the partitions not led here read, their records written,
 * then the answer. */
static void sadmin_done(struct hfan *f)
{
    struct sadmin *d = f->ctx;
    struct hshard *hs = hs_of(d->req->shard);
    d->n_loads = 0;
    for (size_t i = 0; i < d->count; i++) {
        struct saitem *it = &d->aitems[i];
        const struct hwork *w = &d->items[i];
        if (!it->state_only || w->error != KAFKA_NONE)
            continue;
        share_prec_free(&d->precs[i]); /* a follower's tombstones: made again after the read */
        struct htopic *ht = hs_topic(hs, w->topic, w->topic_len);
        if (ht == NULL) {
            d->items[i].error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            continue;
        }
        if (d->loads == NULL)
            d->loads = h_alloc(d->req, d->count, sizeof(*d->loads));
        if (d->loads == NULL) {
            h_close(d->req, "arena exhausted");
            return;
        }
        struct share_load *ld = &d->loads[d->n_loads++];
        *ld = (struct share_load){.state_partition = share_state_partition_for(
                                      it->group, ht->meta->id, w->partition, d->state_parts),
                                  .group = it->group,
                                  .partition = w->partition,
                                  .item = i,
                                  .summary = true};
        memcpy(ld->topic_id, ht->meta->id, 16);
    }
    if (d->n_loads > 0) {
        if (!share_load_start(d->req, d->loads, d->n_loads, sadmin_loaded, d)) {
            for (size_t i = 0; i < d->count; i++)
                share_prec_free(&d->precs[i]);
            h_close(d->req, "arena exhausted");
        }
        return;
    }
    sadmin_persist(d);
}

static void alter_done(struct hfan *f)
{
    struct sadmin *d = f->ctx;
    struct broker_req *req = d->req;
    struct hshard *hs = hs_of(req->shard);
    struct kafka_alter_share_group_offsets_request *rq = d->rq;
    struct kafka_alter_share_group_offsets_response *resp = d->resp;
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->responses = h_alloc(req, (size_t)nt, sizeof(*resp->responses));
    struct kafka_alter_share_group_offsets_response_alter_share_group_offsets_response_partition
        *parts = h_alloc(req, d->count, sizeof(*parts));
    if ((nt > 0 && resp->responses == NULL) || (d->count > 0 && parts == NULL)) {
        h_close(req, "arena exhausted");
        return;
    }
    int32_t t_out = 0;
    size_t q = 0, i = 0;
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_alter_share_group_offsets_response_alter_share_group_offsets_response_topic
            *rt = &resp->responses[t_out];
        memset(rt, 0, sizeof(*rt));
        rt->topic_name = rq->topics[t].topic_name;
        rt->partitions = &parts[q];
        for (; i < d->count && d->aitems[i].topic == t; i++) {
            struct
                kafka_alter_share_group_offsets_response_alter_share_group_offsets_response_partition
                    *rp = &parts[q++];
            rp->partition_index = d->items[i].partition;
            rp->error_code = d->items[i].error;
            rp->error_message = err_msg(rp->error_code);
            rt->partitions_count++;
        }
        if (rt->partitions_count == 0)
            continue;
        struct htopic *ht = hs_topic(hs, rt->topic_name.ptr,
                                     rt->topic_name.len > 0 ? (size_t)rt->topic_name.len : 0);
        if (ht != NULL)
            memcpy(rt->topic_id.b, ht->meta->id, 16);
        t_out++;
    }
    resp->responses_count = t_out;
    h_respond(req, resp);
}

static void delete_done(struct hfan *f)
{
    struct sadmin *d = f->ctx;
    struct broker_req *req = d->req;
    struct hshard *hs = hs_of(req->shard);
    struct kafka_delete_share_group_offsets_request *rq = d->rq;
    struct kafka_delete_share_group_offsets_response *resp = d->resp;
    bool top = resp->error_code != KAFKA_NONE;
    int32_t nt = rq->topics_count > 0 ? rq->topics_count : 0;
    resp->responses = h_alloc(req, (size_t)nt, sizeof(*resp->responses));
    if (nt > 0 && resp->responses == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    int32_t t_out = 0;
    size_t i = 0;
    for (int32_t t = 0; t < nt; t++) {
        /* the topic's items: one per partition, or one prefailed */
        int16_t err = KAFKA_NONE;
        bool had = false, prefailed = false, any = false;
        for (; i < d->count && d->aitems[i].topic == t; i++) {
            any = true;
            prefailed = prefailed || d->aitems[i].prefailed;
            had = had || d->aitems[i].had_state;
            if (d->items[i].error != KAFKA_NONE && err == KAFKA_NONE)
                err = d->items[i].error;
        }
        if (!any || (top && !prefailed))
            continue;
        struct kafka_delete_share_group_offsets_response_delete_share_group_offsets_response_topic
            *rt = &resp->responses[t_out++];
        memset(rt, 0, sizeof(*rt));
        rt->topic_name = rq->topics[t].topic_name;
        rt->error_message = KAFKA_STR_NULL;
        if (prefailed) {
            rt->error_code = err;
            rt->error_message = err_msg(err);
            continue;
        }
        topic_id_of(hs, rt->topic_name.ptr, (size_t)rt->topic_name.len, rt->topic_id.b);
        if (!had && err == KAFKA_NONE) {
            /* GroupMetadataManager.sharePartitionsEligibleForOffsetDeletion */
            static const char none[] = "There is no offset information to delete.";
            rt->error_code = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            rt->error_message = (struct kafka_str){none, (int32_t)sizeof(none) - 1};
        } else {
            rt->error_code = err;
            rt->error_message = err_msg(err);
        }
    }
    resp->responses_count = t_out;
    h_respond(req, resp);
}

static void forget_done(struct hfan *f)
{
    struct sadmin *d = f->ctx;
    h_respond(d->req, d->resp);
}

/* After the coordinator's check: the owners' work, or the answer with the group's error. */
static void sadmin_then(struct greq *g)
{
    struct sadmin *d = g->aux;
    int16_t err = d->check.error;
    struct kafka_str msg = KAFKA_STR_NULL;
    if (err != KAFKA_NONE) {
        if (d->kind == SA_DELETE && d->check.message[0] != '\0') {
            /* Delete answers the exception's message, Alter the error's default one */
            msg = (struct kafka_str){d->check.message, (int32_t)strlen(d->check.message)};
        } else {
            msg = err_msg(err);
        }
        /* Alter: each partition carries the group's error too. Kafka 4.1's KafkaApis drops the
         * coordinator's top-level error when it builds the response, and the 4.1.1 Admin
         * reads only the partitions' errors: so a client sees NON_EMPTY_GROUP,
         * GROUP_ID_NOT_FOUND or NOT_COORDINATOR (then looks the coordinator up again). */
        for (size_t i = 0; i < d->count; i++)
            if (!d->aitems[i].prefailed) {
                d->items[i].owner = HWORK_DONE;
                d->items[i].error = err;
            }
    }
    if (d->kind == SA_ALTER) {
        struct kafka_alter_share_group_offsets_response *r = d->resp;
        r->error_code = err;
        r->error_message = msg;
    } else {
        struct kafka_delete_share_group_offsets_response *r = d->resp;
        r->error_code = err;
        r->error_message = msg;
    }
    d->answer = d->kind == SA_ALTER ? alter_done : delete_done;
    if (!hfan_init(&d->fan, d->req, d->items, d->count, sadmin_op, sadmin_done, d)) {
        h_close(d->req, "arena exhausted");
        return;
    }
    d->fan.peek = true; /* no log opened for it */
    hfan_start(&d->fan);
}

static struct sadmin *sadmin_new(struct broker_req *req, int kind, void *rq, void *resp, size_t n)
{
    struct sadmin *d = h_alloc(req, 1, sizeof(*d));
    if (d == NULL)
        return NULL;
    memset(d, 0, sizeof(*d));
    d->req = req;
    d->kind = kind;
    d->rq = rq;
    d->resp = resp;
    d->items = h_alloc(req, n, sizeof(*d->items));
    d->aitems = h_alloc(req, n, sizeof(*d->aitems));
    d->precs = h_alloc(req, n, sizeof(*d->precs));
    if (n > 0 && (d->items == NULL || d->aitems == NULL || d->precs == NULL))
        return NULL;
    if (n > 0)
        memset(d->precs, 0, n * sizeof(*d->precs));
    d->state_parts = share_state_partitions(hs_of(req->shard), false);
    return d;
}

/* Item k for (topic, partition): prefailed with err when err != NONE, else for its owner. */
static void sadmin_item(struct hshard *hs, struct sadmin *d, size_t k, struct kafka_str group,
                        int32_t topic, const char *name, size_t len, int32_t partition,
                        int64_t offset, int16_t err)
{
    struct hwork *w = &d->items[k];
    memset(w, 0, sizeof(*w));
    w->topic = name;
    w->topic_len = len;
    w->partition = partition;
    w->error = err;
    w->owner = err != KAFKA_NONE ? HWORK_DONE : hs_owner(hs, name, len, partition);
    d->aitems[k] = (struct saitem){group, offset, topic, false, err != KAFKA_NONE, false};
}

/* Starts the coordinator's check of d's group (acl_op on it), then sadmin_then. */
static void sadmin_check(struct broker_req *req, struct sadmin *d, struct kafka_str group,
                         int8_t acl_op)
{
    struct hshard *hs = hs_of(req->shard);
    d->check.group_id = group;
    d->check.error = KAFKA_NONE;
    struct greq *g = group_api_greq_new(req, d->resp, 1);
    if (g == NULL)
        return;
    g->aux = d;
    g->then = sadmin_then;
    group_api_gop_set(g, 0, GOP_SG_OFFSETS, group_owner_of(hs, group), &d->check, 1, acl_op, group);
    group_ops_start(g);
}

static void alter_share_group_offsets(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_alter_share_group_offsets_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_alter_share_group_offsets_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_alter_share_group_offsets_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_alter_share_group_offsets_response_init(resp);
    resp->error_message = KAFKA_STR_NULL;
    if (rq->group_id.len <= 0 || rq->topics_count <= 0) {
        /* GroupCoordinatorService: an empty id is INVALID_GROUP_ID, no topics an empty
         * answer */
        resp->error_code = rq->group_id.len <= 0 ? KAFKA_INVALID_GROUP_ID : KAFKA_NONE;
        resp->error_message = err_msg(resp->error_code);
        h_respond(req, resp);
        return;
    }
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++)
        n += rq->topics[t].partitions_count > 0 ? (size_t)rq->topics[t].partitions_count : 0;
    struct sadmin *d = sadmin_new(req, SA_ALTER, rq, resp, n);
    if (d == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    hs_refresh(hs);
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count; t++) {
        const struct kafka_alter_share_group_offsets_request_alter_share_group_offsets_request_topic
            *q = &rq->topics[t];
        char *name = h_strdup(req, q->topic_name);
        if (name == NULL) {
            h_close(req, "arena exhausted");
            return;
        }
        size_t len = q->topic_name.len > 0 ? (size_t)q->topic_name.len : 0;
        struct htopic *ht = len > 0 ? hs_topic(hs, name, len) : NULL;
        bool allowed = h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, q->topic_name);
        for (int32_t j = 0; j < q->partitions_count; j++, k++) {
            int32_t part = q->partitions[j].partition_index;
            int16_t err = KAFKA_NONE;
            if (!allowed)
                err = KAFKA_TOPIC_AUTHORIZATION_FAILED;
            else if (ht == NULL || part < 0 || part >= ht->meta->partition_count)
                err = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
            sadmin_item(hs, d, k, rq->group_id, t, name, len, part, q->partitions[j].start_offset,
                        err);
        }
    }
    d->count = k;
    sadmin_check(req, d, rq->group_id, AUTHZ_OP_READ);
}

static void delete_share_group_offsets(struct broker_req *req)
{
    struct hshard *hs = hs_of(req->shard);
    struct kafka_delete_share_group_offsets_request *rq = h_alloc(req, 1, sizeof(*rq));
    struct kafka_delete_share_group_offsets_response *resp = h_alloc(req, 1, sizeof(*resp));
    if (rq == NULL || resp == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    kafka_delete_share_group_offsets_request_init(rq);
    if (!h_decode(req, rq))
        return;
    kafka_delete_share_group_offsets_response_init(resp);
    resp->error_message = KAFKA_STR_NULL;
    if (rq->group_id.len <= 0 || rq->topics_count <= 0) {
        resp->error_code = rq->group_id.len <= 0 ? KAFKA_INVALID_GROUP_ID : KAFKA_NONE;
        resp->error_message = err_msg(resp->error_code);
        h_respond(req, resp);
        return;
    }
    hs_refresh(hs);
    /* one item per partition of a known, allowed topic; one prefailed item for the others */
    size_t n = 0;
    for (int32_t t = 0; t < rq->topics_count; t++) {
        struct kafka_str tn = rq->topics[t].topic_name;
        struct htopic *ht = tn.len > 0 ? hs_topic(hs, tn.ptr, (size_t)tn.len) : NULL;
        n += ht != NULL && ht->meta->partition_count > 0 ? (size_t)ht->meta->partition_count : 1;
    }
    struct sadmin *d = sadmin_new(req, SA_DELETE, rq, resp, n);
    if (d == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    size_t k = 0;
    for (int32_t t = 0; t < rq->topics_count && k < n; t++) {
        struct kafka_str tn = rq->topics[t].topic_name;
        char *name = h_strdup(req, tn);
        if (name == NULL) {
            h_close(req, "arena exhausted");
            return;
        }
        size_t len = tn.len > 0 ? (size_t)tn.len : 0;
        struct htopic *ht = len > 0 ? hs_topic(hs, name, len) : NULL;
        int32_t np = ht != NULL ? ht->meta->partition_count : 0;
        if (!h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, tn) || np <= 0) {
            int16_t err = h_allowed_k(req, AUTHZ_OP_READ, AUTHZ_RES_TOPIC, tn)
                              ? KAFKA_UNKNOWN_TOPIC_OR_PARTITION
                              : KAFKA_TOPIC_AUTHORIZATION_FAILED;
            sadmin_item(hs, d, k++, rq->group_id, t, name, len, 0, -1, err);
            continue;
        }
        for (int32_t j = 0; j < np && k < n; j++)
            sadmin_item(hs, d, k++, rq->group_id, t, name, len, j, -1, KAFKA_NONE);
    }
    d->count = k;
    sadmin_check(req, d, rq->group_id, AUTHZ_OP_DELETE);
}

void share_groups_forget(struct broker_req *req, const struct kafka_str *groups, int32_t n,
                         void *resp)
{
    struct hshard *hs = hs_of(req->shard);
    hs_refresh(hs);
    const struct lm_meta_state *st = hs->snap != NULL ? &hs->snap->state : NULL;
    size_t per = 0;
    for (size_t i = 0; st != NULL && i < st->topic_count; i++)
        per += st->topics[i].name[0] != '_' ? (size_t)st->topics[i].partition_count : 0;
    size_t count = per * (size_t)(n > 0 ? n : 0);
    struct sadmin *d = sadmin_new(req, SA_FORGET, NULL, resp, count);
    if (d == NULL) {
        h_close(req, "arena exhausted");
        return;
    }
    size_t k = 0;
    for (int32_t g = 0; g < n; g++)
        for (size_t i = 0; st != NULL && i < st->topic_count; i++) {
            if (st->topics[i].name[0] == '_')
                continue; /* internal topics hold no share state */
            size_t len = strlen(st->topics[i].name);
            /* copied: the shard's metadata image may change before the answer */
            char *name = h_strdup(req, (struct kafka_str){st->topics[i].name, (int32_t)len});
            if (name == NULL) {
                h_close(req, "arena exhausted");
                return;
            }
            for (int32_t j = 0; j < st->topics[i].partition_count && k < count; j++)
                sadmin_item(hs, d, k++, groups[g], -1, name, len, j, -1, KAFKA_NONE);
        }
    d->count = k;
    d->answer = forget_done;
    if (!hfan_init(&d->fan, req, d->items, d->count, sadmin_op, sadmin_done, d)) {
        h_close(req, "arena exhausted");
        return;
    }
    d->fan.peek = true;
    hfan_start(&d->fan);
}
