/* Metadata image snapshots (meta_snapshot.h). */
#include "broker/cluster/meta_snapshot.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"

#define MAGIC      "LMSNAP01"
#define MAGIC_LEN  8
#define HEAD_BYTES (MAGIC_LEN + 8 + 4)

struct out {
    uint8_t *buf;
    size_t len, cap;
    uint32_t count;
    int rc;
};

static void put_record(struct out *o, const struct lm_meta_record *r)
{
    if (o->rc != 0)
        return;
    size_t n = lm_meta_record_size(r);
    if (o->len + 8 + n > o->cap) {
        size_t cap = o->cap * 2 > o->len + 8 + n ? o->cap * 2 : o->len + 8 + n + 4096;
        if (cap > META_SNAPSHOT_BYTES_MAX) {
            o->rc = LM_E_TOO_LARGE;
            return;
        }
        uint8_t *nb = realloc(o->buf, cap);
        if (nb == NULL) {
            o->rc = LM_E_NOMEM;
            return;
        }
        o->buf = nb;
        o->cap = cap;
    }
    int w = lm_meta_record_encode(r, o->buf + o->len + 8, n);
    if (w < 0) {
        o->rc = w;
        return;
    }
    lm_put_be32(o->buf + o->len, (uint32_t)w);
    lm_put_be32(o->buf + o->len + 4, crc32c_update(0, o->buf + o->len + 8, (size_t)w));
    o->len += 8 + (size_t)w;
    o->count++;
}

int meta_snapshot_encode(const struct lm_meta_state *st, int64_t last, uint8_t **out, size_t *len)
{
    struct out o = {.cap = 4096};
    o.buf = malloc(o.cap);
    if (o.buf == NULL)
        return LM_E_NOMEM;
    o.len = HEAD_BYTES;
    for (size_t i = 0; i < st->broker_count; i++) {
        const struct lm_meta_broker *b = &st->brokers[i];
        struct lm_meta_record r = {.type = LM_META_BROKER_REGISTER,
                                   .broker_id = b->id,
                                   .incarnation = b->incarnation,
                                   .rack = b->rack,
                                   .endpoints = b->endpoints};
        put_record(&o, &r);
        if (b->fenced) {
            struct lm_meta_record f = {.type = LM_META_BROKER_FENCE,
                                       .broker_id = b->id,
                                       .incarnation = b->incarnation,
                                       .fenced = true};
            put_record(&o, &f);
        }
    }
    for (size_t i = 0; i < st->topic_count; i++) {
        const struct lm_meta_topic *t = &st->topics[i];
        struct lm_meta_record r = {.type = LM_META_TOPIC_CREATE,
                                   .topic = t->name,
                                   .partition_count = t->partition_count,
                                   .configs = t->configs,
                                   .config_count = t->config_count,
                                   .replicas = t->replicas,
                                   .replication_factor = t->replicas ? t->replication_factor : 0};
        memcpy(r.topic_id, t->id, 16);
        put_record(&o, &r);
        /* reassigned partitions before their leaders: a leader's out-of-sync bits are
         * positions in the replicas these set */
        for (size_t k = 0; k < t->moved_count; k++) {
            const struct lm_meta_moved *m = &t->moved[k];
            struct lm_meta_record mv = {.type = LM_META_PARTITION_REASSIGN,
                                        .topic = t->name,
                                        .partition_count = m->partition,
                                        .replicas = m->replicas,
                                        .replication_factor = m->n,
                                        .adding = m->adding,
                                        .n_adding = m->n_adding,
                                        .removing = m->removing,
                                        .n_removing = m->n_removing,
                                        .reassign_move = m->move}; /* trailer 4 */
            put_record(&o, &mv);
        }
        for (int32_t p = 0; t->leaders != NULL && p < t->partition_count; p++) {
            if (t->leaders[p].leader < 0)
                continue;
            struct lm_meta_record l = {.type = LM_META_PARTITION_LEADER,
                                       .topic = t->name,
                                       .partition_count = p,
                                       .broker_id = t->leaders[p].leader,
                                       .leader_epoch = t->leaders[p].epoch,
                                       .isr_out = t->leaders[p].isr_out};
            put_record(&o, &l);
        }
    }
    for (size_t i = 0; i < st->scram_count; i++) {
        const struct lm_meta_scram *c = &st->scram[i];
        struct lm_meta_record r = {.type = LM_META_SCRAM_SET,
                                   .user = c->user,
                                   .scram_mechanism = c->mechanism,
                                   .scram_iterations = c->iterations,
                                   .scram_salt = c->salt,
                                   .scram_salt_len = c->salt_len,
                                   .scram_stored_key = c->stored_key,
                                   .scram_server_key = c->server_key};
        put_record(&o, &r);
    }
    for (size_t i = 0; i < st->acl_count; i++) {
        const struct authz_acl *acl = &st->acls[i];
        struct lm_meta_record r = {.type = LM_META_ACL_CREATE,
                                   .acl_resource_type = acl->resource_type,
                                   .acl_pattern_type = acl->pattern_type,
                                   .acl_operation = acl->operation,
                                   .acl_permission = acl->permission,
                                   .acl_name = acl->name,
                                   .acl_principal = acl->principal,
                                   .acl_host = acl->host};
        memcpy(r.acl_id, acl->id, 16);
        put_record(&o, &r);
    }
    for (size_t i = 0; i < st->quota_count; i++) {
        const struct lm_quota_entry *q = &st->quotas[i];
        for (int k = 0; k < LM_QUOTA_KEY_COUNT; k++) {
            if ((q->set & (1u << k)) == 0)
                continue;
            struct lm_meta_record r = {.type = LM_META_QUOTA,
                                       .quota_user_part = q->entity.user_part,
                                       .quota_user = q->entity.user,
                                       .quota_client_part = q->entity.client_part,
                                       .quota_client = q->entity.client,
                                       .quota_key = (int8_t)k,
                                       .quota_value = q->value[k]};
            put_record(&o, &r);
        }
    }
    for (size_t i = 0; i < st->broker_config_count; i++) {
        const struct lm_meta_broker_configs *b = &st->broker_configs[i];
        struct lm_meta_record r = {.type = LM_META_BROKER_CONFIGS,
                                   .broker_id = b->node,
                                   .configs = b->configs,
                                   .config_count = b->count};
        put_record(&o, &r);
    }
    for (size_t i = 0; i < st->group_config_count; i++) {
        const struct lm_meta_group_configs *g = &st->group_configs[i];
        struct lm_meta_record r = {.type = LM_META_GROUP_CONFIGS,
                                   .group = g->group,
                                   .configs = g->configs,
                                   .config_count = g->count};
        put_record(&o, &r);
    }
    for (uint32_t i = 0; i < st->retired_count; i++) {
        struct lm_meta_record r = {.type = LM_META_TOPIC_RETIRED};
        memcpy(r.topic_id, lm_meta_state_retired_at(st, i), 16);
        put_record(&o, &r);
    }
    if (st->producer_id_next > 0) {
        /* the blocks granted so far, as one allocator position */
        struct lm_meta_record r = {.type = LM_META_PRODUCER_IDS,
                                   .producer_id_next = st->producer_id_next};
        put_record(&o, &r);
    }
    if (st->transaction_version >= 0) {
        struct lm_meta_record r = {.type = LM_META_FEATURE_LEVEL,
                                   .feature = LM_META_FEATURE_TRANSACTION_VERSION,
                                   .feature_level = st->transaction_version};
        put_record(&o, &r);
    }
    if (o.rc != 0) {
        free(o.buf);
        return o.rc;
    }
    memcpy(o.buf, MAGIC, MAGIC_LEN);
    lm_put_be64(o.buf + MAGIC_LEN, (uint64_t)last);
    lm_put_be32(o.buf + MAGIC_LEN + 8, o.count);
    *out = o.buf;
    *len = o.len;
    return 0;
}

/* Walks the records; with store NULL only checks them. */
static int walk(struct lm_meta_store *store, const uint8_t *buf, size_t len, uint32_t count)
{
    size_t pos = HEAD_BYTES;
    for (uint32_t i = 0; i < count; i++) {
        if (len - pos < 8)
            return LM_E_CORRUPT;
        uint32_t n = lm_get_be32(buf + pos);
        if (n > len - pos - 8 || crc32c_update(0, buf + pos + 8, n) != lm_get_be32(buf + pos + 4))
            return LM_E_CORRUPT;
        if (store != NULL) {
            struct lm_meta_record r;
            struct lm_config_entry *cfg = NULL;
            int rc = lm_meta_record_decode(buf + pos + 8, n, &r, &cfg);
            if (rc == 0) {
                rc = lm_meta_store_apply(store, &r);
                lm_meta_record_free(&r);
            }
            if (rc != 0)
                return rc;
        }
        pos += 8 + n;
    }
    return pos == len ? 0 : LM_E_CORRUPT;
}

int meta_snapshot_last(const uint8_t *buf, size_t len, int64_t *last)
{
    if (len < HEAD_BYTES || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return LM_E_CORRUPT;
    *last = (int64_t)lm_get_be64(buf + MAGIC_LEN);
    return 0;
}

int meta_snapshot_load(struct lm_meta_store *store, const uint8_t *buf, size_t len, int64_t *last)
{
    if (len < HEAD_BYTES || memcmp(buf, MAGIC, MAGIC_LEN) != 0)
        return LM_E_CORRUPT;
    uint32_t count = lm_get_be32(buf + MAGIC_LEN + 8);
    int rc = walk(NULL, buf, len, count);
    if (rc != 0)
        return rc;
    /* the shards see the old image until the new one is whole */
    rc = lm_meta_store_hold(store, true, true);
    if (rc != 0)
        return rc;
    rc = lm_meta_store_reset_image(store);
    if (rc == 0)
        rc = walk(store, buf, len, count);
    int hrc = lm_meta_store_hold(store, false, rc == 0);
    if (rc == 0)
        rc = hrc;
    if (rc == 0)
        *last = (int64_t)lm_get_be64(buf + MAGIC_LEN);
    return rc;
}

static bool snapshot_name(const char *name, int64_t *last)
{
    if (strncmp(name, "snapshot-", 9) != 0 || strlen(name) != 9 + 20)
        return false;
    if (strspn(name + 9, "0123456789") != 20)
        return false;
    *last = strtoll(name + 9, NULL, 10);
    return true;
}

int meta_snapshot_write(const char *dir, int64_t last, const uint8_t *buf, size_t len)
{
    char tmp[PATH_MAX], path[PATH_MAX];
    if (snprintf(tmp, sizeof(tmp), "%s/snapshot.tmp", dir) >= (int)sizeof(tmp) ||
        snprintf(path, sizeof(path), "%s/snapshot-%020lld", dir, (long long)last) >=
            (int)sizeof(path))
        return LM_E_INVALID;
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        return LM_E_IO;
    size_t off = 0;
    while (off < len) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    bool ok = off == len && fdatasync(fd) == 0;
    close(fd);
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return LM_E_IO;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd >= 0) {
        ok = fsync(dfd) == 0;
        close(dfd);
    }
    if (dfd < 0 || !ok)
        return LM_E_IO;
    DIR *d = opendir(dir);
    if (d != NULL) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            int64_t other;
            char old[PATH_MAX];
            if (snapshot_name(e->d_name, &other) && other < last &&
                snprintf(old, sizeof(old), "%s/%s", dir, e->d_name) < (int)sizeof(old))
                unlink(old);
        }
        closedir(d);
    }
    return 0;
}

int meta_snapshot_read_latest(const char *dir, uint8_t **buf, size_t *len)
{
    DIR *d = opendir(dir);
    if (d == NULL)
        return errno == ENOENT ? LM_E_NOT_FOUND : LM_E_IO;
    int64_t best = -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        int64_t last;
        if (snapshot_name(e->d_name, &last) && last > best)
            best = last;
    }
    closedir(d);
    if (best < 0)
        return LM_E_NOT_FOUND;
    char path[PATH_MAX];
    if (snprintf(path, sizeof(path), "%s/snapshot-%020lld", dir, (long long)best) >=
        (int)sizeof(path))
        return LM_E_INVALID;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return LM_E_IO;
    struct stat sb;
    int rc = 0;
    uint8_t *b = NULL;
    if (fstat(fd, &sb) != 0 || sb.st_size <= 0 || (size_t)sb.st_size > META_SNAPSHOT_BYTES_MAX)
        rc = LM_E_CORRUPT;
    else if ((b = malloc((size_t)sb.st_size)) == NULL)
        rc = LM_E_NOMEM;
    else if (pread(fd, b, (size_t)sb.st_size, 0) != sb.st_size)
        rc = LM_E_IO;
    close(fd);
    if (rc != 0) {
        free(b);
        return rc;
    }
    *buf = b;
    *len = (size_t)sb.st_size;
    return 0;
}
