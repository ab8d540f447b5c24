/* raft_log_ops over a storage/ partition log (see raft_storage_log.h). */
#include "broker/partition/raft_storage_log.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"

/* A control batch holds one record whose key is {i16 version, i16 type} (KIP-98, KIP-595). */
#define CONTROL_BATCH_BYTES_MAX 4096

void raft_storage_log_init(struct raft_storage_log *sl, struct storage_log *log,
                           const struct raft_conf *conf, uint64_t start_term, size_t data_bytes_max)
{
    LM_ASSERT(log != NULL && conf != NULL);
    memset(sl, 0, sizeof(*sl));
    sl->log = log;
    sl->conf = *conf;
    sl->start_term = start_term;
    sl->data_bytes_max = data_bytes_max;
    sl->hide_from = -1;
    sl->start_base = sl->start_base_for = -1;
    for (uint32_t i = 0; i < RAFT_STORAGE_HDR_CACHE; i++)
        sl->hdrs[i] = (struct raft_storage_hdr){.first = 0, .last = -1};
}

/* The cached header of the batch holding index, or NULL (see the header's top). */
static const struct raft_storage_hdr *hdr_lookup(struct raft_storage_log *sl, int64_t index)
{
    uint64_t gen = storage_log_shape_gen(sl->log);
    if (gen != sl->hdr_shape_gen) {
        for (uint32_t i = 0; i < RAFT_STORAGE_HDR_CACHE; i++)
            sl->hdrs[i] = (struct raft_storage_hdr){.first = 0, .last = -1};
        sl->hdr_shape_gen = gen;
        return NULL;
    }
    int64_t active = storage_log_active_base(sl->log);
    for (uint32_t i = 0; i < RAFT_STORAGE_HDR_CACHE; i++) {
        const struct raft_storage_hdr *h = &sl->hdrs[i];
        if (h->first <= index && index <= h->last && h->first >= active)
            return h;
    }
    return NULL;
}

static void hdr_keep(struct raft_storage_log *sl, const struct raft_entry *e)
{
    if (e->type == RAFT_ENTRY_CONF || e->first_index < storage_log_active_base(sl->log) ||
        storage_log_shape_gen(sl->log) != sl->hdr_shape_gen)
        return;
    for (uint32_t i = 0; i < RAFT_STORAGE_HDR_CACHE; i++)
        if (sl->hdrs[i].first == e->first_index && sl->hdrs[i].last == e->last_index)
            return;
    sl->hdrs[sl->hdr_next] = (struct raft_storage_hdr){.first = e->first_index,
                                                       .last = e->last_index,
                                                       .term = e->term,
                                                       .bytes = e->bytes,
                                                       .type = (uint8_t)e->type};
    sl->hdr_next = (sl->hdr_next + 1) % RAFT_STORAGE_HDR_CACHE;
}

void raft_storage_log_release(struct raft_storage_log *sl)
{
    for (uint32_t i = 0; i < sl->n_bufs; i++)
        free(sl->bufs[i]);
    sl->n_bufs = 0;
    sl->data_bytes = 0;
}

void raft_storage_log_deinit(struct raft_storage_log *sl)
{
    raft_storage_log_release(sl);
    free(sl->bufs);
    sl->bufs = NULL;
    sl->log = NULL;
}

static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t pos);

/* Raft's first offset: the log start offset, or the start of the batch holding it. */
static int64_t raft_first(const struct raft_storage_log *sl)
{
    int64_t ls = storage_log_start_offset(sl->log);
    return sl->start_base_for == ls && sl->start_base >= 0 && sl->start_base < ls ? sl->start_base
                                                                                  : ls;
}

int64_t raft_storage_log_batch_base(const struct raft_storage_log *sl, int64_t offset)
{
    if (offset <= 0 || offset >= storage_log_end_offset(sl->log) ||
        offset < storage_log_start_offset(sl->log))
        return offset;
    struct storage_read_result res;
    if (storage_log_read(sl->log, offset, 1, STORAGE_NO_LIMIT, &res) != 0)
        return offset;
    int64_t base = offset;
    uint8_t hdr[KAFKA_BATCH_HEADER_SIZE];
    struct kafka_batch_header h;
    if (res.slice_count > 0 && res.slices[0].length >= KAFKA_BATCH_HEADER_SIZE &&
        pread_full(res.slices[0].fd, hdr, sizeof(hdr), res.slices[0].position) == 0 &&
        kafka_batch_header_parse(hdr, sizeof(hdr), &h) == 0 && h.base_offset >= 0 &&
        h.base_offset <= offset && kafka_batch_last_offset(&h) >= offset)
        base = h.base_offset;
    storage_read_result_release(sl->log, &res);
    return base;
}

int64_t raft_storage_log_start_refresh(struct raft_storage_log *sl)
{
    int64_t ls = storage_log_start_offset(sl->log);
    sl->start_base_for = ls;
    sl->start_base = raft_storage_log_batch_base(sl, ls);
    return sl->start_base;
}

static void ops_start(void *ctx, struct raft_log_start *out)
{
    struct raft_storage_log *sl = ctx;
    memset(out, 0, sizeof(*out));
    out->index = raft_first(sl) - 1;
    out->term = out->index < 0 ? 0 : sl->start_term;
    out->conf = sl->conf;
}

static int64_t ops_last_index(void *ctx)
{
    struct raft_storage_log *sl = ctx;
    int64_t leo = storage_log_end_offset(sl->log);
    if (sl->hide_from >= 0 && sl->hide_from < leo)
        leo = sl->hide_from;
    return leo - 1;
}

/* pread exactly len bytes (the slice's fd is a plain file descriptor, pinned by the result). */
static int pread_full(int fd, uint8_t *buf, size_t len, uint64_t pos)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(pos + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return LM_E_IO;
        got += (size_t)n;
    }
    return 0;
}

/* The type of a control batch from its first record key; NORMAL for anything else (transaction
 * markers are data to raft). A VotersRecord's value (the encoded configuration) goes to
 * *conf / *conf_len. */
static uint8_t control_type(const uint8_t *batch, size_t len, const struct kafka_batch_header *h,
                            const uint8_t **conf, uint32_t *conf_len)
{
    if (len <= KAFKA_BATCH_HEADER_SIZE || kafka_batch_codec(h) != KAFKA_CODEC_NONE)
        return RAFT_ENTRY_NORMAL;
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_record_iter_init(&it, batch + KAFKA_BATCH_HEADER_SIZE, len - KAFKA_BATCH_HEADER_SIZE,
                           h->records_count);
    if (kafka_record_iter_next(&it, &rec) != 1 || rec.key_len < 4)
        return RAFT_ENTRY_NORMAL;
    int16_t type = (int16_t)((rec.key[2] << 8) | rec.key[3]);
    if (type == RAFT_STORAGE_CONTROL_VOTERS && rec.value != NULL && rec.value_len > 0 &&
        (size_t)rec.value_len <= RAFT_STORAGE_CONF_BYTES_MAX) {
        *conf = rec.value;
        *conf_len = (uint32_t)rec.value_len;
        return RAFT_ENTRY_CONF;
    }
    return type == RAFT_STORAGE_CONTROL_LEADER_CHANGE ? RAFT_ENTRY_NOOP : RAFT_ENTRY_NORMAL;
}

int raft_storage_log_entry(struct raft_storage_log *sl, int64_t index, struct raft_entry *out)
{
    LM_ASSERT(sl->log != NULL);
    memset(out, 0, sizeof(*out));
    if (index < raft_first(sl) || index >= storage_log_end_offset(sl->log))
        return LM_E_OUT_OF_RANGE;
    if (sl->fault) {
        int frc = sl->fault(sl->fault_ctx, index);
        if (frc)
            return frc;
    }
    if (!sl->data_mode) {
        const struct raft_storage_hdr *c = hdr_lookup(sl, index);
        if (c != NULL) {
            out->first_index = c->first;
            out->last_index = c->last;
            out->term = c->term;
            out->bytes = c->bytes;
            out->type = c->type;
            sl->hdr_hits++;
            return 0;
        }
    }
    /* max_bytes 1: "at least one whole batch" (KIP-74) gives exactly the batch holding index. */
    struct storage_read_result res;
    /* below the log start offset (in the batch holding it) storage reads from the start */
    int64_t ls = storage_log_start_offset(sl->log);
    int rc = storage_log_read(sl->log, index < ls ? ls : index, 1, STORAGE_NO_LIMIT, &res);
    if (rc)
        return rc;
    sl->reads++;
    uint8_t hdr[KAFKA_BATCH_HEADER_SIZE];
    struct kafka_batch_header h;
    if (res.slice_count == 0 || res.slices[0].length < KAFKA_BATCH_HEADER_SIZE) {
        rc = LM_E_CORRUPT;
        goto out;
    }
    rc = pread_full(res.slices[0].fd, hdr, sizeof(hdr), res.slices[0].position);
    if (rc == 0)
        rc = kafka_batch_header_parse(hdr, sizeof(hdr), &h);
    if (rc)
        goto out;
    size_t total = kafka_batch_total_size(&h);
    /* A compacted segment may have lost the batch holding index: raft needs contiguous
     * entries, so that is a log it cannot use (raft.h: missing = LM_E_CORRUPT). */
    if (h.base_offset > index || kafka_batch_last_offset(&h) < index ||
        total > res.slices[0].length || h.partition_leader_epoch < 0) {
        rc = LM_E_CORRUPT;
        goto out;
    }
    out->first_index = h.base_offset;
    out->last_index = kafka_batch_last_offset(&h);
    out->bytes = total <= UINT32_MAX ? (uint32_t)total : UINT32_MAX;
    out->term = (uint64_t)h.partition_leader_epoch;
    out->type = RAFT_ENTRY_NORMAL;
    bool control = (h.attributes & KAFKA_BATCH_ATTR_CONTROL) != 0;
    if (!sl->data_mode && !(control && total <= CONTROL_BATCH_BYTES_MAX))
        goto out;
    /* the first batch is read whatever its size (raft's messages start with one entry) */
    if (sl->n_bufs == RAFT_STORAGE_LOG_BUFS_MAX ||
        (sl->n_bufs > 0 && sl->data_bytes + total > sl->data_bytes_max) || total > UINT32_MAX) {
        rc = LM_E_NOMEM; /* raft retries after the owner released what it resolved */
        goto out;
    }
    if (sl->data_mode && sl->bufs == NULL) {
        sl->bufs = calloc(RAFT_STORAGE_LOG_BUFS_MAX, sizeof(*sl->bufs));
        if (sl->bufs == NULL) {
            rc = LM_E_NOMEM;
            goto out;
        }
    }
    uint8_t *buf = malloc(total);
    if (!buf) {
        rc = LM_E_NOMEM;
        goto out;
    }
    rc = pread_full(res.slices[0].fd, buf, total, res.slices[0].position);
    if (rc == 0 && !kafka_batch_crc_ok(buf, &h))
        rc = LM_E_CRC;
    if (rc) {
        free(buf);
        goto out;
    }
    const uint8_t *conf = NULL;
    uint32_t conf_len = 0;
    if (control)
        out->type = control_type(buf, total, &h, &conf, &conf_len);
    if (!sl->data_mode) {
        /* a configuration entry carries its configuration, which raft decodes at once */
        if (out->type == RAFT_ENTRY_CONF) {
            memcpy(sl->conf_buf, conf, conf_len);
            out->data = sl->conf_buf;
            out->len = conf_len;
        }
        free(buf);
        goto out;
    }
    sl->data_reads++;
    sl->bufs[sl->n_bufs++] = buf;
    sl->data_bytes += total;
    out->data = buf;
    out->len = (uint32_t)total;
    if (out->type == RAFT_ENTRY_CONF) { /* raft's CONF entries are the configuration itself */
        out->data = (uint8_t *)conf;
        out->len = conf_len;
    }
out:
    storage_read_result_release(sl->log, &res);
    if (rc)
        memset(out, 0, sizeof(*out));
    else
        hdr_keep(sl, out);
    return rc;
}

static int ops_entry_at(void *ctx, int64_t index, struct raft_entry *out)
{
    return raft_storage_log_entry(ctx, index, out);
}

void raft_storage_log_ops(struct raft_storage_log *sl, struct raft_log_ops *ops)
{
    ops->ctx = sl;
    ops->start = ops_start;
    ops->last_index = ops_last_index;
    ops->entry_at = ops_entry_at;
}
