/* Produce (advertised v0-12, served v3-12 as Kafka 4; v12's transactional batches join their
 * transaction through the leader, KIP-890 part 2): each partition's batches go to the
 * shard that owns the partition, are validated there (DESIGN.md §3: magic 2, lengths, CRC-32C,
 * records, bounded decompression; max.message.bytes), recompressed when the topic's
 * compression.type asks for another codec, and appended (offsets, leader epoch, LogAppendTime
 * by storage). acks=-1 flushes before answering (single node: the fdatasync is the
 * durability, DESIGN.md §3); acks=1 leaves it to flush.messages / flush.ms; acks=0 answers
 * nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "broker/metrics.h"
#include "broker/handlers/handlers_internal.h"
#include "broker/handlers/txn_internal.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "protocol/compress.h"
#include "protocol/crc32c.h"
#include "protocol/kafka_produce.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"

/* Record errors reported per partition (KIP-467 record_errors): the first ones only, enough
 * for a client to name the culprits; error_message still says why for the whole batch. */
enum { PRODUCE_RECORD_ERRORS_MAX = 16 };

struct rec_errs {
    int32_t index[PRODUCE_RECORD_ERRORS_MAX]; /* record positions in the batch, from 0 */
    uint32_t count;
};

struct pout {
    int64_t base_offset;
    int64_t log_append_time_ms;
    int64_t log_start_offset;
    const char *message;      /* static text for error_message (v8+), or NULL */
    struct rec_errs rec_errs; /* the records that made the batch fail (record_errors, v8+) */
    struct hsync_wait sync;   /* acks=-1: waiting for the partition's flush */
    struct hwork *w;
};

struct pctx {
    int16_t acks;
    int32_t throttle_ms; /* the producer byte-rate quota's throttle time */
    struct kafka_produce_request rq;
    struct kafka_produce_response resp;
};

/* Validates one batch with the shard's scratch for decompression, growing it when a batch
 * decompresses to more than it holds (bounded by HANDLERS_DECOMPRESS_BYTES_MAX). */
static int validate(struct hshard *hs, const uint8_t *buf, size_t len, struct kafka_batch_header *h)
{
    for (;;) {
        if (hs->scratch == NULL) {
            hs->scratch_cap = HANDLERS_SCRATCH_KEEP_BYTES;
            hs->scratch = malloc(hs->scratch_cap);
            if (hs->scratch == NULL)
                return LM_E_NOMEM;
        }
        if (hs->scratch_cap > HANDLERS_SCRATCH_KEEP_BYTES)
            hs->scratch_used_ms = broker_now_ms();
        int rc = kafka_batch_validate_buf(buf, len, hs->scratch, hs->scratch_cap, h);
        if (rc != LM_E_TOO_LARGE || hs->scratch_cap >= HANDLERS_DECOMPRESS_BYTES_MAX)
            return rc;
        free(hs->scratch);
        hs->scratch = NULL;
        size_t cap = hs->scratch_cap * 4;
        hs->scratch_cap = cap < HANDLERS_DECOMPRESS_BYTES_MAX ? cap : HANDLERS_DECOMPRESS_BYTES_MAX;
        hs->scratch = malloc(hs->scratch_cap);
        if (hs->scratch == NULL)
            return LM_E_NOMEM;
    }
}

void data_produce_scratch_trim(struct hshard *hs, uint64_t now_ms)
{
    if (hs->scratch == NULL || hs->scratch_cap <= HANDLERS_SCRATCH_KEEP_BYTES ||
        now_ms < hs->scratch_used_ms + HANDLERS_SCRATCH_IDLE_MS)
        return;
    hs->scratch_releases++;
    BLOG_INFO("shard %u: released the %zu KiB decompression scratch (idle; %llu released)", hs->id,
              hs->scratch_cap >> 10, (unsigned long long)hs->scratch_releases);
    free(hs->scratch);
    hs->scratch = NULL; /* allocated again at HANDLERS_SCRATCH_KEEP_BYTES on use */
    hs->scratch_cap = 0;
}

/* What refuses a record: a null key (compacted topic), or a CreateTime outside [lo, hi]. */
struct rec_rule {
    bool null_key;
    int64_t ts_lo, ts_hi;
};

/* Collects the positions of the batch's records (validated, so they parse and fit the scratch)
 * that break rule into e. A compacted topic refuses a null key, as Kafka's LogValidator does
 * ("Compacted topic cannot accept message without key", INVALID_RECORD): the cleaner could
 * never deduplicate it. Timestamps: KIP-937 bounds, per record (base + delta). */
static int find_bad_records(struct hshard *hs, const uint8_t *buf, size_t len,
                            const struct kafka_batch_header *h, const struct rec_rule *rule,
                            struct rec_errs *e)
{
    struct kafka_batch_reader r;
    e->count = 0;
    int rc = kafka_batch_reader_open_buf(&r, buf, len, hs->scratch, hs->scratch_cap);
    if (rc != 0)
        return rc;
    struct kafka_record_iter it;
    struct kafka_record rec;
    kafka_batch_reader_iter(&r, &it);
    for (int32_t i = 0; (rc = kafka_record_iter_next(&it, &rec)) == 1; i++) {
        /* Java's long addition wraps; so does this (a signed overflow would be undefined). */
        int64_t ts = (int64_t)((uint64_t)h->base_timestamp + (uint64_t)rec.timestamp_delta);
        bool bad =
            rule->null_key ? rec.key_len < 0 : ((ts >= 0 && ts < rule->ts_lo) || ts > rule->ts_hi);
        if (bad) {
            e->index[e->count++] = i;
            if (e->count == PRODUCE_RECORD_ERRORS_MAX)
                break;
        }
    }
    kafka_batch_reader_close(&r);
    return rc < 0 ? rc : 0;
}

/* Rewrites one batch with codec `to` (topic compression.type differs from the producer's):
 * decompress the records, compress them again, new header (codec bits, length, CRC). The
 * result is appended to *out (malloc'd, grown). Returns 0 or an LM_E_*. */
static int recompress(struct hshard *hs, const uint8_t *batch, size_t total, enum kafka_codec to,
                      uint8_t **out, size_t *out_len, size_t *out_cap)
{
    struct kafka_batch_reader r;
    int rc = kafka_batch_reader_open_buf(&r, batch, total, hs->scratch, hs->scratch_cap);
    if (rc != 0)
        return rc;
    uint8_t *z = NULL;
    size_t zlen = 0;
    rc = kafka_compress(to, r.records, r.records_size, &z, &zlen);
    kafka_batch_reader_close(&r);
    if (rc != 0)
        return rc;
    size_t need = KAFKA_BATCH_HEADER_SIZE + zlen;
    if (need > INT32_MAX) {
        free(z);
        return LM_E_TOO_LARGE;
    }
    if (*out_len + need > *out_cap) {
        size_t cap = (*out_len + need) * 2;
        uint8_t *nb = realloc(*out, cap);
        if (nb == NULL) {
            free(z);
            return LM_E_NOMEM;
        }
        *out = nb;
        *out_cap = cap;
    }
    uint8_t *b = *out + *out_len;
    memcpy(b, batch, KAFKA_BATCH_HEADER_SIZE);
    memcpy(b + KAFKA_BATCH_HEADER_SIZE, z, zlen);
    free(z);
    uint32_t blen = (uint32_t)(need - KAFKA_BATCH_LOG_OVERHEAD);
    b[8] = (uint8_t)(blen >> 24), b[9] = (uint8_t)(blen >> 16), b[10] = (uint8_t)(blen >> 8);
    b[11] = (uint8_t)blen;
    uint16_t attr = (uint16_t)((b[21] << 8) | b[22]);
    attr = (uint16_t)((attr & ~KAFKA_BATCH_ATTR_CODEC_MASK) | (uint16_t)to);
    b[21] = (uint8_t)(attr >> 8), b[22] = (uint8_t)attr;
    uint32_t crc =
        crc32c_update(0, b + KAFKA_BATCH_OFF_ATTRIBUTES, need - KAFKA_BATCH_OFF_ATTRIBUTES);
    b[17] = (uint8_t)(crc >> 24), b[18] = (uint8_t)(crc >> 16), b[19] = (uint8_t)(crc >> 8);
    b[20] = (uint8_t)crc;
    *out_len += need;
    return 0;
}

static int16_t validate_error(int rc, const char **msg)
{
    switch (rc) {
    case LM_E_MAGIC:
        *msg = "only record batches v2 (magic 2) are accepted";
        return KAFKA_INVALID_RECORD;
    case LM_E_CRC:
        *msg = "record batch CRC-32C mismatch";
        return KAFKA_CORRUPT_MESSAGE;
    case LM_E_TOO_LARGE:
        *msg = "record batch decompresses beyond the broker's bound";
        return KAFKA_MESSAGE_TOO_LARGE;
    case LM_E_COMPRESSION:
        *msg = "record batch does not decompress";
        return KAFKA_CORRUPT_MESSAGE;
    case LM_E_NOMEM:
        *msg = "out of memory validating the batch";
        return KAFKA_UNKNOWN_SERVER_ERROR;
    default:
        *msg = "record batch failed validation (lengths, record count or offsets)";
        return KAFKA_CORRUPT_MESSAGE;
    }
}

/* CreateTime bounds (KIP-937: message.timestamp.before.max.ms / after.max.ms), checked on the
 * batch header: maxTimestamp bounds every record from above exactly; baseTimestamp is the
 * first record's, which producers make the smallest. */
static bool timestamps_ok(const struct lm_topic_settings *st, const struct kafka_batch_header *h,
                          struct rec_rule *rule)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    int64_t now = (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
    rule->null_key = false;
    rule->ts_lo = INT64_MIN;
    rule->ts_hi = INT64_MAX;
    if (st->timestamp_after_max_ms >= 0 && st->timestamp_after_max_ms < INT64_MAX / 2)
        rule->ts_hi = now + st->timestamp_after_max_ms;
    if (st->timestamp_before_max_ms >= 0 && st->timestamp_before_max_ms < INT64_MAX / 2)
        rule->ts_lo = now - st->timestamp_before_max_ms;
    if (h->max_timestamp > rule->ts_hi)
        return false;
    if (h->base_timestamp >= 0 && h->base_timestamp < rule->ts_lo)
        return false;
    return true;
}

/* acks=-1: the batch is committed (one voter: the group-commit fsync covered it) or failed. */
static void produce_committed(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    struct pout *o = sw->arg;
    struct hwork *w = o->w;
    if (rc != 0) {
        /* Written but not committed: the client must not count it as acknowledged. Leadership
         * lost leaves the batch in the log, where the next leader may still commit it, so the
         * answer is one clients read as "possibly persisted" and retry with the same sequence
         * (the next leader's producer state then knows it). NOT_LEADER_OR_FOLLOWER, which
         * Kafka's DelayedProduce answers, tells librdkafka "not persisted": after an epoch bump
         * it sends such records again under new sequences, and a copy that was committed
         * stays in the log twice (fault campaign, a leader cut off from its followers). */
        w->error =
            rc == LM_E_STATE ? KAFKA_NOT_ENOUGH_REPLICAS_AFTER_APPEND : KAFKA_KAFKA_STORAGE_ERROR;
        o->message = rc == LM_E_STATE ? "leadership changed before commit; the batch may still "
                                        "be committed by the next leader"
                                      : "flush failed";
        o->base_offset = -1;
        if (rc == LM_E_STATE) /* a replicated partition changed leader: the client retries */
            BLOG_INFO_LIMITED("partition %s-%d: leadership lost before a batch was committed",
                              p->topic, p->partition);
        else
            BLOG_ERROR("partition %s-%d: commit: %s", p->topic, p->partition, lm_strerror(rc));
    } else if (p->log != NULL) {
        o->log_start_offset = storage_log_start_offset(p->log);
    }
    hfan_release(hs, w);
}

/* acks 0/1: done at the local append (before partition_append returns). */
static void produce_appended(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    (void)hs;
    (void)p;
    (void)sw;
    LM_ASSERT(rc == 0);
}

/* A retried batch answered from the producer state with acks=-1 waits until the log is
 * committed up to `sw->offset` (its first copy may still be waiting). */
static void produce_dup_committed(struct hshard *hs, struct hpart *p, struct hsync_wait *sw, int rc)
{
    produce_committed(hs, p, sw, rc);
}

static void produce_op(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f)
{
    struct pctx *c = f->ctx;
    struct pout *o = w->out;
    const struct kafka_bytes *records = w->in;
    o->base_offset = -1;
    o->log_append_time_ms = -1;
    o->log_start_offset = -1;
    if (p == NULL) {
        w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
        return;
    }
    if (p->replicated && p->part != NULL &&
        (!partition_is_leader(p->part) || partition_transferring(p->part))) {
        /* a replica here, led elsewhere (or about to be): the client refreshes its metadata */
        w->error = KAFKA_NOT_LEADER_OR_FOLLOWER;
        return;
    }
    if (p->log == NULL || p->failed) {
        /* Offline (storage failed; the tick reopens it): retriable for the producer. */
        w->error = KAFKA_KAFKA_STORAGE_ERROR;
        o->message = p->open_pending ? "the partition's log is still opening"
                                     : "the partition's log is offline after a storage error";
        return;
    }
    const struct htopic *t = hs_topic(hs, w->topic, w->topic_len);
    LM_ASSERT(t != NULL);
    o->log_start_offset = storage_log_start_offset(p->log);
    if (p->replicated && c->acks == -1 && hs->snap != NULL) {
        /* min.insync.replicas under Raft: a majority must commit anyway; with fewer replicas
         * in sync than the setting (the ISR as this leader sees it) acks=all is refused at
         * once, as Kafka does (DESIGN.md) */
        int32_t in_sync = hs_isr_count(hs, p);
        if (in_sync < t->settings.min_insync_replicas) {
            w->error = KAFKA_NOT_ENOUGH_REPLICAS;
            o->message = "fewer replicas in sync than min.insync.replicas";
            return;
        }
    }
    if (records->len <= 0) {
        w->error = KAFKA_CORRUPT_MESSAGE;
        o->message = "no record batch";
        return;
    }
    /* The frame is this request's, untouched by its shard while we run: append in place. */
    uint8_t *buf = (uint8_t *)(uintptr_t)records->ptr;
    size_t len = (size_t)records->len;
    bool need_recompress = false;
    for (size_t pos = 0; pos < len;) {
        struct kafka_batch_header h;
        int rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        if (rc == 0 && kafka_batch_total_size(&h) > (size_t)t->settings.max_message_bytes) {
            /* max.message.bytes bounds a batch as sent (after compression), as Kafka. */
            w->error = KAFKA_MESSAGE_TOO_LARGE;
            o->message = "record batch larger than max.message.bytes";
            return;
        }
        if (rc == 0)
            rc = validate(hs, buf + pos, len - pos, &h);
        if (rc != 0) {
            w->error = validate_error(rc, &o->message);
            return;
        }
        if (h.attributes & KAFKA_BATCH_ATTR_CONTROL) {
            w->error = KAFKA_INVALID_RECORD;
            o->message = "clients may not write control batches";
            return;
        }
        /* Kafka's LogValidator: a client's batch holds as many records as its offset range. */
        if (h.records_count <= 0 || (int64_t)h.records_count != (int64_t)h.last_offset_delta + 1) {
            w->error = KAFKA_INVALID_RECORD;
            o->message = "Inconsistent batch offset range and count of records";
            return;
        }
        if (t->settings.cleanup_compact) {
            struct rec_rule rule = {.null_key = true};
            rc = find_bad_records(hs, buf + pos, len - pos, &h, &rule, &o->rec_errs);
            if (rc != 0) {
                o->rec_errs.count = 0;
                w->error = validate_error(rc, &o->message);
                return;
            }
            if (o->rec_errs.count > 0) {
                w->error = KAFKA_INVALID_RECORD;
                o->message = "Compacted topic cannot accept message without key";
                return;
            }
        }
        struct rec_rule ts_rule;
        if (!t->settings.timestamp_log_append && !timestamps_ok(&t->settings, &h, &ts_rule)) {
            w->error = KAFKA_INVALID_TIMESTAMP;
            o->message = "record timestamp outside message.timestamp.before/after.max.ms";
            /* Which records: only for the error answer, so the walk costs nothing otherwise. A
             * failed walk (cannot happen on a validated batch) leaves record_errors empty. */
            if (find_bad_records(hs, buf + pos, len - pos, &h, &ts_rule, &o->rec_errs) != 0)
                o->rec_errs.count = 0;
            return;
        }
        int32_t want = t->settings.compression;
        if (want >= 0 && (int32_t)kafka_batch_codec(&h) != want)
            need_recompress = true;
        pos += kafka_batch_total_size(&h);
    }
    uint8_t *owned = NULL;
    if (need_recompress) {
        size_t olen = 0, ocap = 0;
        for (size_t pos = 0; pos < len;) {
            struct kafka_batch_header h;
            int rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
            LM_ASSERT(rc == 0);
            rc = recompress(hs, buf + pos, kafka_batch_total_size(&h),
                            (enum kafka_codec)t->settings.compression, &owned, &olen, &ocap);
            if (rc != 0) {
                free(owned);
                w->error =
                    rc == LM_E_TOO_LARGE ? KAFKA_MESSAGE_TOO_LARGE : KAFKA_UNKNOWN_SERVER_ERROR;
                o->message = "recompression to the topic's compression.type failed";
                return;
            }
            pos += kafka_batch_total_size(&h);
        }
        buf = owned;
        len = olen;
    }
    const struct handlers_producer_hooks *ph = &hs->node->producer;
    /* Producer-state hook: idempotence / transactions decide here, before append. */
    if (ph->before_append != NULL) {
        int64_t dup = -1;
        int16_t e = ph->before_append(hs, p->topic, p->partition, buf, len, &dup);
        if (e == KAFKA_NONE && dup >= 0 && c->acks == -1 && p->replicated && p->part != NULL) {
            /* A retried batch of a replicated partition is acknowledged once committed (a
             * new leader may hold its first copy in its uncommitted tail): until then the
             * producer retries, with the same sequence (retriable, as Kafka's "written but
             * not to enough replicas yet"). */
            struct kafka_batch_header dh;
            if (kafka_batch_header_parse(buf, len, &dh) == 0 &&
                dup + dh.last_offset_delta >= partition_high_watermark(p->part)) {
                free(owned);
                w->error = KAFKA_NOT_ENOUGH_REPLICAS_AFTER_APPEND;
                o->message = "a retried batch that is not committed yet";
                return;
            }
        }
        if (e != KAFKA_NONE || dup >= 0) {
            w->error = e;
            o->base_offset = e == KAFKA_NONE ? dup : -1;
            free(owned);
            if (e == KAFKA_NONE && c->acks == -1) {
                /* A retried batch answered from the producer state: its first copy may still
                 * wait for its flush, so the duplicate waits too (the log end covers it). */
                o->sync.offset = storage_log_end_offset(p->log);
                o->sync.done = produce_dup_committed;
                o->sync.arg = o;
                o->w = w;
                hfan_hold(w);
                hs_sync_wait(hs, p, &o->sync);
            }
            return;
        }
    }
    /* Through the partition (ReplicaManager.appendRecords, origin client): acks=-1 answers
     * on commit, which for one voter is the group-commit fsync (DESIGN.md §3, off the shard
     * thread, shared by every append while one is in flight); acks 0/1 on the local append.
     * The high watermark is the partition's (raft commit + 1). */
    int acks = c->acks == -1 ? -1 : 1;
    o->sync.done = acks == -1 ? produce_committed : produce_appended;
    o->sync.arg = o;
    o->w = w;
    if (acks == -1)
        hfan_hold(w);
    int rc = hs_append(hs, p, PARTITION_ORIGIN_CLIENT, buf, len, acks, &o->sync);
    if (rc != 0) {
        if (acks == -1)
            hfan_release(hs, w);
        free(owned);
        w->error = h_storage_error(rc);
        o->message = lm_strerror(rc);
        BLOG_WARN_LIMITED("partition %s-%d: append: %s", p->topic, p->partition,
                          storage_io_strerror(rc));
        return;
    }
    /* buf was rewritten in place: the first batch has the base offset; the log append time
     * is the largest maxTimestamp among the batches (as storage_append_result's). */
    struct kafka_batch_header first, h;
    rc = kafka_batch_header_parse(buf, len, &first);
    LM_ASSERT(rc == 0);
    int64_t max_ts = first.max_timestamp;
    uint64_t nrecords = (uint64_t)first.records_count;
    for (size_t pos = kafka_batch_total_size(&first); pos < len;
         pos += kafka_batch_total_size(&h)) {
        rc = kafka_batch_header_parse(buf + pos, len - pos, &h);
        LM_ASSERT(rc == 0);
        if (h.max_timestamp > max_ts)
            max_ts = h.max_timestamp;
        nrecords += (uint64_t)h.records_count;
    }
    /* the topic's counters are looked up once per partition, not hashed by name per append */
    if (p->topic_counters == NULL)
        p->topic_counters = broker_shard_topic_counters(hs->shard, w->topic, w->topic_len);
    if (p->topic_counters != NULL) {
        broker_metric_add(&p->topic_counters[BROKER_C_MESSAGES_IN], nrecords);
        broker_metric_add(&p->topic_counters[BROKER_C_BYTES_IN], len);
    }
    if (ph->after_append != NULL)
        ph->after_append(hs, p->topic, p->partition, buf, len, first.base_offset);
    free(owned);
    if (w->error == KAFKA_NONE && (acks != -1 || o->base_offset == -1)) {
        o->base_offset = first.base_offset;
        if (t->settings.timestamp_log_append)
            o->log_append_time_ms = max_ts;
    }
    if (p->log != NULL)
        o->log_start_offset = storage_log_start_offset(p->log);
}

static void produce_finish(struct hfan *f)
{
    struct pctx *c = f->ctx;
    struct broker_req *req = f->req;
    size_t k = 0;
    for (int32_t i = 0; i < c->resp.responses_count; i++) {
        struct kafka_produce_response_topic_produce_response *tr = &c->resp.responses[i];
        for (int32_t j = 0; j < tr->partition_responses_count; j++, k++) {
            struct kafka_produce_response_partition_produce_response *pr =
                &tr->partition_responses[j];
            const struct hwork *w = &f->items[k];
            const struct pout *o = w->out;
            pr->error_code = w->error;
            if (w->error != KAFKA_NONE)
                broker_shard_topic_add(req->shard, w->topic, w->topic_len, BROKER_C_PRODUCE_FAILED,
                                       1);
            pr->base_offset = o->base_offset;
            pr->log_append_time_ms = o->log_append_time_ms;
            pr->log_start_offset = o->log_start_offset;
            if (w->error != KAFKA_NONE && o->message != NULL)
                pr->error_message = (struct kafka_str){o->message, (int32_t)strlen(o->message)};
            if (w->error != KAFKA_NONE && o->rec_errs.count > 0) {
                /* KIP-467: (batch_index, message) per refused record; without memory for the
                 * array the answer keeps error_message only. */
                struct kafka_produce_response_batch_index_and_error_message *re =
                    h_alloc(req, o->rec_errs.count, sizeof(*re));
                if (re != NULL) {
                    for (uint32_t r = 0; r < o->rec_errs.count; r++) {
                        re[r].batch_index = o->rec_errs.index[r];
                        re[r].batch_index_error_message = pr->error_message;
                    }
                    pr->record_errors = re;
                    pr->record_errors_count = (int32_t)o->rec_errs.count;
                }
            }
        }
    }
    LM_ASSERT(k == f->count);
    c->resp.throttle_time_ms = c->throttle_ms;
    if (c->acks == 0) {
        /* KafkaApis closes the connection of an acks=0 producer whose request failed, the
         * only way it learns; done here for a denied topic, so a producer without WRITE does
         * not keep sending into the void */
        for (size_t i = 0; i < f->count; i++)
            if (f->items[i].error == KAFKA_TOPIC_AUTHORIZATION_FAILED) {
                broker_req_close_after(req);
                break;
            }
        broker_req_respond_none(req);
        return;
    }
    h_respond(req, &c->resp);
}

/* Whether a partition's records start with a transactional batch (Kafka's
 * RequestUtils.hasTransactionalRecords looks at the batches the same way). */
static bool request_has_transactional(const struct kafka_produce_request *rq)
{
    for (int32_t i = 0; i < rq->topic_data_count; i++) {
        const struct kafka_produce_request_topic_produce_data *td = &rq->topic_data[i];
        for (int32_t j = 0; j < td->partition_data_count; j++) {
            const struct kafka_bytes *rec = &td->partition_data[j].records;
            struct kafka_batch_header h;
            if (rec->len >= 61 && kafka_batch_header_parse(rec->ptr, (size_t)rec->len, &h) == 0 &&
                (h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL))
                return true;
        }
    }
    return false;
}

void data_produce(struct broker_req *req)
{
    struct pctx *c = h_alloc(req, 1, sizeof(*c));
    struct hfan *f = h_alloc(req, 1, sizeof(*f));
    if (c == NULL || f == NULL) {
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    kafka_produce_request_init(&c->rq);
    if (!h_decode(req, &c->rq))
        return;
    struct hshard *hs = hs_of(req->shard);
    c->acks = c->rq.acks;
    /* KafkaApis.handleProduceRequest: the request's size counts against the producer byte
     * rate of its (user, client id), errors or not; over the quota the response carries the
     * throttle time and the connection reads nothing more until it has passed (KIP-219), an
     * acks=0 producer, which gets no response, included. Kafka reads one request of a
     * connection at a time; here requests are pipelined, so the bytes are counted and the
     * connection muted as the request arrives, before the requests behind it are read. */
    c->throttle_ms = h_quota_record(req, LM_QUOTA_PRODUCER_BYTE_RATE, (double)req->body_len);
    if (c->throttle_ms > 0) {
        broker_shard_counter_add(req->shard, BROKER_C_PRODUCE_THROTTLED, 1);
        broker_req_throttle(req, (uint32_t)c->throttle_ms);
    }
    /* Kafka 4 answers v0-2 (message formats v0/v1) UNSUPPORTED_VERSION (KIP-896). */
    int16_t common = KAFKA_NONE;
    if (req->api_version < 3)
        common = KAFKA_UNSUPPORTED_VERSION;
    else if (c->acks != 0 && c->acks != 1 && c->acks != -1)
        common = KAFKA_INVALID_REQUIRED_ACKS;
    else if (c->rq.transactional_id.len >= 0 &&
             !h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TRANSACTIONAL_ID, c->rq.transactional_id))
        common = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED; /* KafkaApis.handleProduceRequest */
    else if (c->rq.transactional_id.len < 0 && request_has_transactional(&c->rq))
        /* transactional records need the id they belong to (KafkaApis refuses them without
         * one as unauthorized): without it no coordinator could verify the partition was
         * added, and the transaction would hang the partition's last stable offset */
        common = KAFKA_TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
    if (common != KAFKA_NONE && c->acks == 0)
        c->acks = 1; /* an error must be seen */
    kafka_produce_response_init(&c->resp);
    c->resp.throttle_time_ms = 0;
    int32_t nt = c->rq.topic_data_count > 0 ? c->rq.topic_data_count : 0;
    size_t n = 0;
    for (int32_t i = 0; i < nt; i++)
        n += c->rq.topic_data[i].partition_data_count > 0
                 ? (size_t)c->rq.topic_data[i].partition_data_count
                 : 0;
    c->resp.responses = h_alloc(req, (size_t)nt, sizeof(*c->resp.responses));
    struct hwork *items = h_alloc(req, n, sizeof(*items));
    struct pout *outs = h_alloc(req, n, sizeof(*outs));
    if (c->resp.responses == NULL || items == NULL || outs == NULL) {
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    c->resp.responses_count = nt;
    size_t k = 0;
    for (int32_t i = 0; i < nt; i++) {
        const struct kafka_produce_request_topic_produce_data *td = &c->rq.topic_data[i];
        struct kafka_produce_response_topic_produce_response *tr = &c->resp.responses[i];
        int32_t np = td->partition_data_count > 0 ? td->partition_data_count : 0;
        tr->name = td->name;
        tr->partition_responses = h_alloc(req, (size_t)np, sizeof(*tr->partition_responses));
        if (tr->partition_responses == NULL) {
            broker_req_close_after(req);
            broker_req_respond_none(req);
            return;
        }
        tr->partition_responses_count = np;
        /* WRITE on the topic (KafkaApis: an idempotent producer needs nothing more in 4.x) */
        bool denied =
            common == KAFKA_NONE && !h_allowed_k(req, AUTHZ_OP_WRITE, AUTHZ_RES_TOPIC, td->name);
        for (int32_t j = 0; j < np; j++, k++) {
            struct kafka_produce_response_partition_produce_response *pr =
                &tr->partition_responses[j];
            /* Defaults of the generated (static) init: -1s, null message, no leader hint. */
            pr->log_append_time_ms = -1;
            pr->log_start_offset = -1;
            pr->error_message = KAFKA_STR_NULL;
            pr->current_leader.leader_id = -1;
            pr->current_leader.leader_epoch = -1;
            pr->index = td->partition_data[j].index;
            struct hwork *w = &items[k];
            w->topic = td->name.ptr;
            w->topic_len = td->name.len > 0 ? (size_t)td->name.len : 0;
            w->partition = td->partition_data[j].index;
            w->in = &td->partition_data[j].records;
            w->out = &outs[k];
            outs[k].base_offset = outs[k].log_append_time_ms = outs[k].log_start_offset = -1;
            w->owner = hs->id;
            if (common != KAFKA_NONE) {
                w->error = common;
                w->owner = HWORK_DONE; /* answered here, no shard runs it */
                continue;
            }
            if (denied) {
                w->error = KAFKA_TOPIC_AUTHORIZATION_FAILED;
                w->owner = HWORK_DONE;
                continue;
            }
            if (h_topic_internal(w->topic, w->topic_len)) {
                /* Kafka's ReplicaManager refuses client appends to internal topics before
                 * looking at the partition: the coordinators own their records (a forged
                 * group record could otherwise poison every later load). */
                w->error = KAFKA_INVALID_TOPIC_EXCEPTION;
                w->owner = HWORK_DONE;
                char *m = h_alloc(req, 1, 64 + w->topic_len);
                if (m != NULL) {
                    snprintf(m, 64 + w->topic_len, "Cannot append to internal topic %.*s",
                             (int)w->topic_len, w->topic);
                    outs[k].message = m;
                }
                continue;
            }
            struct htopic *t = td->name.len > 0 ? hs_topic(hs, w->topic, w->topic_len) : NULL;
            if (t == NULL || w->partition < 0 || w->partition >= t->meta->partition_count) {
                w->error = KAFKA_UNKNOWN_TOPIC_OR_PARTITION;
                w->owner = HWORK_DONE;
                continue;
            }
            w->owner = hs_owner(hs, w->topic, w->topic_len, w->partition);
        }
    }
    LM_ASSERT(k == n);
    if (!hfan_init(f, req, items, n, produce_op, produce_finish, c)) {
        broker_req_close_after(req);
        broker_req_respond_none(req);
        return;
    }
    /* transactional batches: verified with the coordinator first (KIP-890 part 1), or from v12
     * added to their transaction by it (part 2) */
    if (!txn_produce_verify(req, c->rq.transactional_id, items, n, f))
        hfan_start(f);
}
