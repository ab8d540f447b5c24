/* DescribeLogDirs (35, KIP-113; v3 top-level error, v4 volume sizes KIP-827): the node's log
 * directories and the partitions in them, for kafka-log-dirs.sh (LogDirsCommand) and tools
 * such as MirrorMaker 2 and Cruise Control.
 *
 * A partition is listed when its directory holds live segment files ("<base>.log", not
 * .swap/.deleted/.cleaned leftovers), with the sum of their lengths read with stat(). That is
 * Kafka's UnifiedLog.size (the bytes of the batches) only for a closed log: an open one's active
 * segment can hold preallocated zeros past its end, so the request's handler then replaces the
 * sizes of open logs with their own, asked of the shards that hold them (hs_logdirs.c). A
 * single node has no follower and no
 * future log: offset lag 0, is_future_key false. Partition logs live in the first log dir
 * (handlers.c); other configured dirs are listed with no partitions. A dir that cannot be
 * resolved or stat'ed is KAFKA_STORAGE_ERROR as Kafka reports an offline dir. Partitions and
 * topics asked for that do not exist are left out, as Kafka's ReplicaManager does. */
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>

#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"
#include "storage/storage.h"

typedef struct kafka_describe_log_dirs_response_describe_log_dirs_result ld_result;
typedef struct kafka_describe_log_dirs_response_describe_log_dirs_topic ld_topic;
typedef struct kafka_describe_log_dirs_response_describe_log_dirs_partition ld_partition;

/* Is `name` a live segment file, "<digits>.log"? */
static bool segment_log_file(const char *name)
{
    size_t len = strlen(name);
    if (len < 5 || strcmp(name + len - 4, ".log") != 0)
        return false;
    for (size_t i = 0; i + 4 < len; i++) {
        if (name[i] < '0' || name[i] > '9')
            return false;
    }
    return true;
}

/* Sum of the segment files' sizes in dir; -1 when the directory cannot be read (a partition
 * whose directory a shard has not created yet has no log: it is left out). */
static int64_t partition_size(const char *dir)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return -1;
    int64_t total = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!segment_log_file(e->d_name))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, 0) == 0)
            total += (int64_t)st.st_size;
        /* A segment removed by retention between readdir and stat no longer counts. */
    }
    closedir(d);
    return total;
}

/* Is partition p of the request's topic entry asked for? */
typedef struct kafka_describe_log_dirs_request_describable_log_dir_topic ld_want;

/* The request's topic entries sorted by name, so each topic of the metadata finds its entries
 * by binary search: a request naming many topics or partitions costs O(n log n), not a scan
 * per partition. NULL (count 0) when every topic is asked for. */
struct ld_index {
    const ld_want **e;
    int32_t count;
};

static int kstr_cmp(struct kafka_str x, struct kafka_str y)
{
    int32_t lx = x.len > 0 ? x.len : 0, ly = y.len > 0 ? y.len : 0;
    int c = memcmp(x.ptr ? x.ptr : "", y.ptr ? y.ptr : "", (size_t)(lx < ly ? lx : ly));
    return c != 0 ? c : (lx > ly) - (lx < ly);
}

static int want_cmp(const void *x, const void *y)
{
    return kstr_cmp((*(const ld_want *const *)x)->topic, (*(const ld_want *const *)y)->topic);
}

static int index_build(const struct kafka_describe_log_dirs_request *rq, struct kafka_arena *a,
                       struct ld_index *ix)
{
    ix->e = NULL;
    ix->count = rq->topics_count > 0 ? rq->topics_count : 0;
    if (ix->count == 0)
        return 0;
    ix->e = kafka_arena_alloc_array(a, (size_t)ix->count, sizeof(*ix->e), 8);
    if (ix->e == NULL)
        return LM_E_NOMEM;
    for (int32_t i = 0; i < ix->count; i++)
        ix->e[i] = &rq->topics[i];
    qsort(ix->e, (size_t)ix->count, sizeof(*ix->e), want_cmp);
    return 0;
}

/* The first entry naming topic (or count when none does); entries naming it follow it. */
static int32_t index_first(const struct ld_index *ix, const char *topic)
{
    struct kafka_str key = admin_kstr(topic);
    int32_t lo = 0, hi = ix->count;
    while (lo < hi) {
        int32_t mid = lo + (hi - lo) / 2;
        if (kstr_cmp(ix->e[mid]->topic, key) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < ix->count && kstr_cmp(ix->e[lo]->topic, key) == 0 ? lo : ix->count;
}

/* One topic's partitions present in log_dir: every one when all, else those the index's
 * entries for the topic list (out-of-range indexes are ignored, as Kafka finds no log for
 * them). o->partitions_count 0 means none found. */
static int describe_topic(const char *log_dir, const struct lm_meta_topic *t, bool all,
                          const struct ld_index *ix, struct kafka_arena *a, ld_topic *o)
{
    o->partitions_count = 0;
    o->partitions = NULL;
    if (t->partition_count <= 0)
        return 0;
    bool *wanted = kafka_arena_alloc_array(a, (size_t)t->partition_count, sizeof(bool), 1);
    o->partitions =
        kafka_arena_alloc_array(a, (size_t)t->partition_count, sizeof(*o->partitions), 8);
    if (wanted == NULL || o->partitions == NULL)
        return LM_E_NOMEM;
    memset(wanted, all, (size_t)t->partition_count * sizeof(bool));
    if (!all) {
        for (int32_t i = index_first(ix, t->name);
             i < ix->count && admin_kstr_eq(ix->e[i]->topic, t->name); i++) {
            for (int32_t k = 0; k < ix->e[i]->partitions_count; k++) {
                int32_t p = ix->e[i]->partitions[k];
                if (p >= 0 && p < t->partition_count)
                    wanted[p] = true;
            }
        }
    }
    for (int32_t p = 0; p < t->partition_count; p++) {
        if (!wanted[p])
            continue;
        char dir[PATH_MAX];
        if (storage_partition_dir(dir, sizeof(dir), log_dir, t->name, p) != 0)
            continue;
        int64_t size = partition_size(dir);
        if (size < 0)
            continue;
        o->partitions[o->partitions_count++] = (ld_partition){
            .partition_index = p,
            .partition_size = size,
            .offset_lag = 0,
            .is_future_key = false,
        };
    }
    return 0;
}

/* Fills one log dir's result; partitions only when with_partitions (the first dir). */
static int describe_dir(const struct admin_env *env, const char *configured, bool with_partitions,
                        const struct kafka_describe_log_dirs_request *rq, struct kafka_arena *a,
                        ld_result *res)
{
    *res = (ld_result){.error_code = KAFKA_NONE, .total_bytes = -1, .usable_bytes = -1};
    char abs[PATH_MAX];
    struct statvfs vfs;
    if (realpath(configured, abs) == NULL || statvfs(abs, &vfs) != 0) {
        BLOG_WARN("DescribeLogDirs: log dir %s: %s", configured, strerror(errno));
        res->error_code = KAFKA_KAFKA_STORAGE_ERROR;
        res->log_dir = admin_kstr(configured);
        return 0;
    }
    char *path = NULL;
    if (admin_cstr(a, admin_kstr(abs), &path) != 0)
        return LM_E_NOMEM;
    res->log_dir = admin_kstr(path);
    /* Kafka's FileStore.getTotalSpace / getUsableSpace: usable is what a non-root writer
     * may still take (f_bavail). */
    res->total_bytes = (int64_t)vfs.f_blocks * (int64_t)vfs.f_frsize;
    res->usable_bytes = (int64_t)vfs.f_bavail * (int64_t)vfs.f_frsize;
    if (!with_partitions)
        return 0;

    bool all = rq->topics_count < 0;
    struct ld_index ix;
    int rc = index_build(rq, a, &ix);
    if (rc != 0)
        return rc;
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(env->meta);
    const struct lm_meta_state *st = &snap->state;
    res->topics = kafka_arena_alloc_array(a, st->topic_count > 0 ? st->topic_count : 1,
                                          sizeof(*res->topics), 8);
    if (res->topics == NULL)
        rc = LM_E_NOMEM;
    for (size_t i = 0; rc == 0 && i < st->topic_count; i++) {
        const struct lm_meta_topic *t = &st->topics[i];
        if (!all && index_first(&ix, t->name) == ix.count)
            continue;
        ld_topic *o = &res->topics[res->topics_count];
        rc = describe_topic(abs, t, all, &ix, a, o);
        if (rc == 0 && o->partitions_count > 0) {
            char *name = NULL; /* copied: the snapshot is released before encoding */
            rc = admin_cstr(a, admin_kstr(t->name), &name);
            o->name = admin_kstr(name);
            res->topics_count++;
        }
    }
    lm_meta_snapshot_release(snap);
    return rc;
}

int admin_describe_log_dirs(const struct admin_env *env, int16_t version,
                            const struct kafka_describe_log_dirs_request *rq,
                            struct kafka_describe_log_dirs_response *rs, struct kafka_arena *a)
{
    LM_ASSERT(version >= ADMIN_DESCRIBE_LOG_DIRS_MIN && version <= ADMIN_DESCRIBE_LOG_DIRS_MAX);
    LM_ASSERT(env->meta != NULL && env->cfg != NULL && env->cfg->log_dirs_count > 0);
    int32_t n = (int32_t)env->cfg->log_dirs_count;
    if (ADMIN_RESULTS(a, rs, results, n) != 0)
        return LM_E_NOMEM;
    rs->error_code = KAFKA_NONE;
    if (!admin_allowed(env, AUTHZ_OP_DESCRIBE, AUTHZ_RES_CLUSTER, admin_kstr(AUTHZ_CLUSTER_NAME))) {
        /* KafkaApis.handleDescribeLogDirsRequest: DESCRIBE on the cluster */
        rs->error_code = KAFKA_CLUSTER_AUTHORIZATION_FAILED;
        rs->results_count = 0;
        return 0;
    }
    for (int32_t i = 0; i < n; i++) {
        int rc = describe_dir(env, env->cfg->log_dirs[i], i == 0, rq, a, &rs->results[i]);
        if (rc != 0)
            return rc;
    }
    return 0;
}
