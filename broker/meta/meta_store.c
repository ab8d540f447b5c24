#include "broker/meta/meta_store.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "common/lm_endian.h"

#define FRAME_HEADER 8

struct lm_meta_store {
    pthread_mutex_t lock; /* serialises commits and snapshot swaps; not on the data path */
    int fd;
    char path[PATH_MAX];
    struct lm_meta_state state;       /* the writer's copy */
    struct lm_meta_snapshot *current; /* published copy */
    uint64_t version;                 /* atomic mirror of current->state.version */
    uint64_t bad_records;             /* skipped at replay (lm_meta_store_bad_records) */
    int64_t partition_limit;          /* atomic; <= 0: none */
    /* Cluster mode (lm_meta_store_set_cluster): the published state is `image`, built from
     * the controller's committed log by lm_meta_store_apply; `state` and the file are not
     * used. -1 on a single node. */
    int32_t cluster_node;
    /* Cluster mode: the producer-id blocks the controller granted this process, ids handed
     * out from [pid_next, pid_end), then from [spare_from, spare_end); ask_* is the block
     * asked for while asking. */
    int64_t pid_next, pid_end, spare_from, spare_end, ask_from, ask_next;
    bool asking;
    /* lm_meta_store_hold: applies and resets change the image without publishing it, so the
     * shards never see an image that is being rebuilt (a snapshot's load) */
    bool held;
    struct lm_meta_state saved; /* the image when the hold began: put back by a failed rebuild */
    struct lm_meta_state image;
};

static int mkdir_p(const char *dir)
{
    char tmp[PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof(tmp))
        return LM_E_INVALID;
    memcpy(tmp, dir, n + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = 0;
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return LM_E_IO;
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        return LM_E_IO;
    return 0;
}

static int publish(struct lm_meta_store *s)
{
    struct lm_meta_snapshot *snap = calloc(1, sizeof(*snap));
    if (snap == NULL)
        return LM_E_NOMEM;
    int rc = lm_meta_state_copy(&snap->state, s->cluster_node >= 0 ? &s->image : &s->state);
    if (rc != 0) {
        free(snap);
        return rc;
    }
    snap->refs = 1; /* the store's reference */
    struct lm_meta_snapshot *old = s->current;
    s->current = snap;
    __atomic_store_n(&s->version, snap->state.version, __ATOMIC_RELEASE);
    if (old)
        lm_meta_snapshot_release(old);
    return 0;
}

/* Replays the file; cuts a torn or corrupt tail (a crash in the middle of an append). */
static int replay(struct lm_meta_store *s)
{
    struct stat st;
    if (fstat(s->fd, &st) != 0)
        return LM_E_IO;
    off_t pos = 0;
    uint8_t hdr[FRAME_HEADER];
    uint8_t *buf = NULL;
    int rc = 0;
    off_t first_bad = -1;
    int first_bad_rc = 0;
    while (pos + FRAME_HEADER <= st.st_size) {
        if (pread(s->fd, hdr, FRAME_HEADER, pos) != FRAME_HEADER) {
            rc = LM_E_IO;
            break;
        }
        uint32_t len = lm_get_be32(hdr), crc = lm_get_be32(hdr + 4);
        if (len == 0 || len > LM_META_RECORD_BYTES_MAX || pos + FRAME_HEADER + len > st.st_size)
            break;
        uint8_t *nb = realloc(buf, len);
        if (nb == NULL) {
            rc = LM_E_NOMEM;
            break;
        }
        buf = nb;
        if (pread(s->fd, buf, len, pos + FRAME_HEADER) != (ssize_t)len) {
            rc = LM_E_IO;
            break;
        }
        if (crc32c_update(0, buf, len) != crc)
            break;
        struct lm_meta_record r;
        struct lm_config_entry *cfg = NULL;
        rc = lm_meta_record_decode(buf, len, &r, &cfg);
        if (rc == 0) {
            rc = lm_meta_state_apply(&s->state, &r);
            lm_meta_record_free(&r);
        }
        if (rc == LM_E_NOMEM)
            break;
        if (rc != 0) {
            /* A record that passed its CRC but does not decode or apply (an older bug, a
             * damaged or foreign file) is untrusted input: skipped and counted, the state
             * keeps every record that applies. */
            if (first_bad < 0) {
                first_bad = pos;
                first_bad_rc = rc;
            }
            s->bad_records++;
            rc = 0;
        }
        pos += FRAME_HEADER + len;
    }
    free(buf);
    if (rc != 0)
        return rc;
    if (s->bad_records > 0)
        fprintf(stderr,
                "laminar: metadata log %s: skipped %llu records that do not apply "
                "(first at %lld: %s)\n",
                s->path, (unsigned long long)s->bad_records, (long long)first_bad,
                lm_strerror(first_bad_rc));
    if (pos != st.st_size) {
        fprintf(stderr, "laminar: metadata log %s: cutting %lld torn bytes at %lld\n", s->path,
                (long long)(st.st_size - pos), (long long)pos);
        if (ftruncate(s->fd, pos) != 0 || fdatasync(s->fd) != 0)
            return LM_E_IO;
    }
    return 0;
}

int lm_meta_store_open(const char *dir, struct lm_meta_store **out)
{
    *out = NULL;
    struct lm_meta_store *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return LM_E_NOMEM;
    pthread_mutex_init(&s->lock, NULL);
    lm_meta_state_init(&s->state);
    lm_meta_state_init(&s->image);
    lm_meta_state_init(&s->saved);
    s->cluster_node = -1;
    s->fd = -1;
    char sub[PATH_MAX];
    int rc = LM_E_INVALID;
    if (snprintf(sub, sizeof(sub), "%s/__laminar_metadata", dir) >= (int)sizeof(sub) ||
        snprintf(s->path, sizeof(s->path), "%s/metadata.log", sub) >= (int)sizeof(s->path))
        goto fail;
    if ((rc = mkdir_p(sub)) != 0)
        goto fail;
    s->fd = open(s->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (s->fd < 0) {
        rc = LM_E_IO;
        goto fail;
    }
    if ((rc = replay(s)) != 0 || (rc = publish(s)) != 0)
        goto fail;
    *out = s;
    return 0;
fail:
    lm_meta_store_close(s);
    return rc;
}

void lm_meta_store_close(struct lm_meta_store *s)
{
    if (s == NULL)
        return;
    if (s->fd >= 0)
        close(s->fd);
    if (s->current)
        lm_meta_snapshot_release(s->current);
    lm_meta_state_deinit(&s->state);
    lm_meta_state_deinit(&s->image);
    lm_meta_state_deinit(&s->saved);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

static int append_record(struct lm_meta_store *s, const struct lm_meta_record *r)
{
    size_t len = lm_meta_record_size(r);
    if (len > LM_META_RECORD_BYTES_MAX)
        return LM_E_TOO_LARGE;
    uint8_t *frame = malloc(FRAME_HEADER + len);
    if (frame == NULL)
        return LM_E_NOMEM;
    int n = lm_meta_record_encode(r, frame + FRAME_HEADER, len);
    LM_ASSERT(n == (int)len);
    lm_put_be32(frame, (uint32_t)len);
    lm_put_be32(frame + 4, crc32c_update(0, frame + FRAME_HEADER, len));
    off_t end = lseek(s->fd, 0, SEEK_END);
    int rc = 0;
    if (end < 0 || pwrite(s->fd, frame, FRAME_HEADER + len, end) != (ssize_t)(FRAME_HEADER + len))
        rc = LM_E_IO;
    else if (fdatasync(s->fd) != 0)
        rc = LM_E_IO;
    if (rc != 0 && end >= 0) {
        /* leave no partial record behind for the next append to follow */
        if (ftruncate(s->fd, end) != 0)
            rc = LM_E_IO;
    }
    free(frame);
    return rc;
}

static int commit_locked(struct lm_meta_store *s, const struct lm_meta_record *r)
{
    int rc = lm_meta_state_check(&s->state, r);
    int64_t limit = __atomic_load_n(&s->partition_limit, __ATOMIC_RELAXED);
    if (rc == 0 && limit > 0) {
        int64_t added = lm_meta_state_partitions_added(&s->state, r);
        if (added > 0 && lm_meta_state_partition_total(&s->state) + added > limit)
            rc = LM_E_FULL;
    }
    if (rc == 0)
        rc = append_record(s, r);
    if (rc == 0) {
        rc = lm_meta_state_apply(&s->state, r);
        LM_ASSERT(rc != LM_E_EXISTS && rc != LM_E_NOT_FOUND && rc != LM_E_INVALID);
    }
    if (rc == 0)
        rc = publish(s);
    return rc;
}

int lm_meta_store_commit(struct lm_meta_store *s, const struct lm_meta_record *r)
{
    pthread_mutex_lock(&s->lock);
    int rc = s->cluster_node >= 0 ? LM_E_STATE : commit_locked(s, r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

struct lm_meta_snapshot *lm_meta_store_snapshot(struct lm_meta_store *s)
{
    pthread_mutex_lock(&s->lock);
    struct lm_meta_snapshot *snap = s->current;
    LM_ASSERT(snap != NULL);
    __atomic_add_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL);
    pthread_mutex_unlock(&s->lock);
    return snap;
}

uint64_t lm_meta_store_version(const struct lm_meta_store *s)
{
    return __atomic_load_n(&s->version, __ATOMIC_ACQUIRE);
}

void lm_meta_snapshot_release(struct lm_meta_snapshot *snap)
{
    if (snap == NULL)
        return;
    int left = __atomic_sub_fetch(&snap->refs, 1, __ATOMIC_ACQ_REL);
    LM_ASSERT(left >= 0);
    if (left == 0) {
        lm_meta_state_deinit(&snap->state);
        free(snap);
    }
}

int lm_meta_new_topic_id(uint8_t id[16])
{
    do {
        if (getrandom(id, 16, 0) != 16)
            return LM_E_IO;
    } while (id[0] == 0 && memcmp(id, id + 1, 15) == 0);
    return 0;
}

int lm_meta_store_alloc_producer_ids(struct lm_meta_store *s, int64_t count, int64_t *first)
{
    if (count <= 0)
        return LM_E_INVALID;
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (s->cluster_node >= 0) {
        if (count > LM_META_PRODUCER_BLOCK_IDS) {
            rc = LM_E_INVALID;
        } else {
            if (s->pid_end - s->pid_next < count && s->spare_end > s->spare_from) {
                /* what is left of the block is too little: the spare's turn */
                s->pid_next = s->spare_from;
                s->pid_end = s->spare_end;
                s->spare_from = s->spare_end = 0;
            }
            if (s->pid_end - s->pid_next < count) {
                rc = LM_E_AGAIN;
            } else {
                *first = s->pid_next;
                s->pid_next += count;
            }
        }
        pthread_mutex_unlock(&s->lock);
        return rc;
    }
    int64_t start = s->state.producer_id_next;
    struct lm_meta_record r = {.type = LM_META_PRODUCER_IDS, .producer_id_next = start + count};
    rc = commit_locked(s, &r);
    pthread_mutex_unlock(&s->lock);
    if (rc == 0)
        *first = start;
    return rc;
}

bool lm_meta_store_producer_block_wanted(struct lm_meta_store *s, struct lm_meta_record *r)
{
    pthread_mutex_lock(&s->lock);
    bool want = s->cluster_node >= 0 && !s->asking && s->spare_end == s->spare_from;
    if (want) {
        s->asking = true;
        s->ask_from = s->image.producer_id_next;
        s->ask_next = s->ask_from + LM_META_PRODUCER_BLOCK_IDS;
        *r = (struct lm_meta_record){.type = LM_META_PRODUCER_ID_BLOCK,
                                     .broker_id = s->cluster_node,
                                     .producer_id_from = s->ask_from,
                                     .producer_id_next = s->ask_next};
    }
    pthread_mutex_unlock(&s->lock);
    return want;
}

bool lm_meta_store_producer_block_answer(struct lm_meta_store *s, int rc)
{
    pthread_mutex_lock(&s->lock);
    LM_ASSERT(s->asking);
    s->asking = false;
    bool again = false;
    if (rc == 0) {
        LM_ASSERT(s->spare_end == s->spare_from);
        s->spare_from = s->ask_from;
        s->spare_end = s->ask_next;
    } else {
        again = rc == LM_E_STATE && s->image.producer_id_next != s->ask_from;
    }
    pthread_mutex_unlock(&s->lock);
    return again;
}

int lm_meta_store_set_cluster(struct lm_meta_store *s, int32_t node_id)
{
    if (node_id < 0 || node_id >= (1 << 22))
        return LM_E_INVALID;
    pthread_mutex_lock(&s->lock);
    s->cluster_node = node_id;
    lm_meta_state_deinit(&s->image);
    lm_meta_state_init(&s->image);
    /* versions only grow: shards compare them to tell a stale snapshot */
    s->image.version = s->state.version + 1;
    int rc = publish(s);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int lm_meta_store_apply(struct lm_meta_store *s, const struct lm_meta_record *r)
{
    pthread_mutex_lock(&s->lock);
    int rc = s->cluster_node >= 0 ? lm_meta_state_apply(&s->image, r) : LM_E_STATE;
    if (rc == 0 && !s->held)
        rc = publish(s);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int lm_meta_store_reset_image(struct lm_meta_store *s)
{
    pthread_mutex_lock(&s->lock);
    int rc = LM_E_STATE;
    if (s->cluster_node >= 0) {
        uint64_t v = s->image.version;
        lm_meta_state_deinit(&s->image);
        lm_meta_state_init(&s->image);
        s->image.version = v + 1;
        rc = s->held ? 0 : publish(s);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int lm_meta_store_hold(struct lm_meta_store *s, bool hold, bool keep)
{
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    if (hold && !s->held) {
        lm_meta_state_deinit(&s->saved);
        lm_meta_state_init(&s->saved);
        rc = s->cluster_node >= 0 ? lm_meta_state_copy(&s->saved, &s->image) : 0;
        s->held = rc == 0;
    } else if (!hold && s->held) {
        s->held = false;
        if (keep) {
            if (s->cluster_node >= 0)
                rc = publish(s);
        } else {
            /* the published image is still the saved one: the image goes back to it, with a
             * version past everything the rebuild used */
            uint64_t v = s->image.version;
            lm_meta_state_deinit(&s->image);
            s->image = s->saved;
            s->image.version = v + 1;
            lm_meta_state_init(&s->saved);
            rc = publish(s);
        }
        lm_meta_state_deinit(&s->saved);
        lm_meta_state_init(&s->saved);
    }
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int lm_meta_store_check(struct lm_meta_store *s, const struct lm_meta_record *r)
{
    pthread_mutex_lock(&s->lock);
    int rc = lm_meta_state_check(s->cluster_node >= 0 ? &s->image : &s->state, r);
    pthread_mutex_unlock(&s->lock);
    return rc;
}

int32_t lm_meta_store_cluster_node(const struct lm_meta_store *s)
{
    return s->cluster_node;
}

uint64_t lm_meta_store_bad_records(const struct lm_meta_store *s)
{
    return s->bad_records;
}

void lm_meta_store_set_partition_limit(struct lm_meta_store *s, int64_t limit)
{
    __atomic_store_n(&s->partition_limit, limit, __ATOMIC_RELAXED);
}

int64_t lm_meta_store_partition_limit(const struct lm_meta_store *s)
{
    return __atomic_load_n(&s->partition_limit, __ATOMIC_RELAXED);
}
