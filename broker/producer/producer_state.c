/* Idempotent producer state of one partition (see producer_state.h for the rules and their
 * sources). Entries live in one array sorted by producer id, allocated up front. */
#include "broker/producer/producer_state.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/crc32c.h"
#include "protocol/kafka_errors.h"
#include "protocol/kafka_rt.h"

struct entry {
    int64_t producer_id;
    int16_t epoch;
    uint8_t n_batches;
    int64_t last_update_ms;
    int32_t coordinator_epoch;
    int64_t txn_start_offset;
    struct lm_producer_batch batches[LM_PRODUCER_BATCHES_MAX]; /* oldest first */
};

struct lm_producer_state {
    uint32_t cap;
    uint32_t n;
    int64_t expiration_ms;
    uint64_t evictions;
    struct entry *entries; /* sorted by producer_id */
};

int lm_producer_state_new(uint32_t max_producers, int64_t expiration_ms,
                          struct lm_producer_state **out)
{
    if (max_producers == 0 || expiration_ms <= 0)
        return LM_E_INVALID;
    struct lm_producer_state *s = calloc(1, sizeof(*s));
    if (!s)
        return LM_E_NOMEM;
    s->entries = calloc(max_producers, sizeof(*s->entries));
    if (!s->entries) {
        free(s);
        return LM_E_NOMEM;
    }
    s->cap = max_producers;
    s->expiration_ms = expiration_ms;
    *out = s;
    return 0;
}

void lm_producer_state_free(struct lm_producer_state *s)
{
    if (!s)
        return;
    free(s->entries);
    free(s);
}

void lm_producer_state_clear(struct lm_producer_state *s)
{
    s->n = 0;
}

int32_t lm_producer_seq_add(int32_t seq, int32_t delta)
{
    LM_ASSERT(seq >= 0 && delta >= 0);
    if (seq > INT32_MAX - delta)
        return delta - (INT32_MAX - seq) - 1;
    return seq + delta;
}

/* index of producer_id, or -(insertion point) - 1 */
static int64_t find(const struct lm_producer_state *s, int64_t producer_id)
{
    int64_t lo = 0, hi = s->n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        int64_t p = s->entries[mid].producer_id;
        if (p == producer_id)
            return mid;
        if (p < producer_id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -lo - 1;
}

/* Kafka ProducerAppendInfo.inSequence */
static bool in_sequence(int32_t last_seq, int32_t next_seq)
{
    return (int64_t)next_seq == (int64_t)last_seq + 1 || (next_seq == 0 && last_seq == INT32_MAX);
}

int lm_producer_check(const struct lm_producer_state *s, int64_t producer_id, int16_t epoch,
                      int32_t first_seq, int32_t last_seq, struct lm_producer_check_result *out)
{
    LM_ASSERT(s != NULL && out != NULL);
    memset(out, 0, sizeof(*out));
    out->known_epoch = -1;
    out->known_last_seq = -1;
    if (producer_id < 0 || epoch < 0 || first_seq < 0 || last_seq < 0)
        return LM_E_INVALID;
    int64_t i = find(s, producer_id);
    if (i < 0) {
        out->verdict = LM_PRODUCER_ACCEPT; /* unknown producer: any sequence (KIP-360) */
        return 0;
    }
    const struct entry *e = &s->entries[i];
    out->known_epoch = e->epoch;
    if (e->n_batches > 0)
        out->known_last_seq = e->batches[e->n_batches - 1].last_seq;
    if (epoch < e->epoch) {
        out->verdict = LM_PRODUCER_REJECT;
        out->error_code = KAFKA_INVALID_PRODUCER_EPOCH;
        return 0;
    }
    if (epoch > e->epoch) {
        /* a bumped epoch starts its sequences at 0 */
        out->verdict = first_seq == 0 ? LM_PRODUCER_ACCEPT : LM_PRODUCER_REJECT;
        out->error_code = first_seq == 0 ? KAFKA_NONE : KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        return 0;
    }
    for (int k = 0; k < e->n_batches; k++) {
        if (e->batches[k].first_seq == first_seq && e->batches[k].last_seq == last_seq) {
            out->verdict = LM_PRODUCER_DUPLICATE;
            out->dup = e->batches[k];
            return 0;
        }
    }
    if (e->n_batches == 0 || in_sequence(e->batches[e->n_batches - 1].last_seq, first_seq)) {
        /* n_batches == 0: the epoch is known (a marker or an InitProducerId bump) but no data
         * batch is: Kafka's currentLastSeq is NO_SEQUENCE (-1), so only 0 is in sequence */
        bool ok = e->n_batches > 0 || first_seq == 0;
        out->verdict = ok ? LM_PRODUCER_ACCEPT : LM_PRODUCER_REJECT;
        out->error_code = ok ? KAFKA_NONE : KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
        return 0;
    }
    out->verdict = LM_PRODUCER_REJECT;
    out->error_code = KAFKA_OUT_OF_ORDER_SEQUENCE_NUMBER;
    return 0;
}

/* Find or make the entry of producer_id; a full table evicts the producer idle longest. */
static struct entry *entry_get(struct lm_producer_state *s, int64_t producer_id)
{
    int64_t i = find(s, producer_id);
    if (i >= 0)
        return &s->entries[i];
    if (s->n == s->cap) {
        uint32_t oldest = 0;
        for (uint32_t k = 1; k < s->n; k++)
            if (s->entries[k].last_update_ms < s->entries[oldest].last_update_ms)
                oldest = k;
        memmove(&s->entries[oldest], &s->entries[oldest + 1],
                (size_t)(s->n - oldest - 1) * sizeof(*s->entries));
        s->n--;
        s->evictions++;
        i = find(s, producer_id);
        LM_ASSERT(i < 0);
    }
    i = -i - 1;
    memmove(&s->entries[i + 1], &s->entries[i], (size_t)(s->n - i) * sizeof(*s->entries));
    s->n++;
    struct entry *e = &s->entries[i];
    memset(e, 0, sizeof(*e));
    e->producer_id = producer_id;
    e->epoch = LM_PRODUCER_NO_EPOCH;
    e->coordinator_epoch = -1;
    e->txn_start_offset = -1;
    return e;
}

static void entry_append(struct entry *e, int16_t epoch, const struct lm_producer_batch *b)
{
    if (epoch != e->epoch) {
        /* Kafka ProducerAppendInfo: a new epoch drops the cached batches */
        e->epoch = epoch;
        e->n_batches = 0;
    }
    if (e->n_batches == LM_PRODUCER_BATCHES_MAX) {
        memmove(&e->batches[0], &e->batches[1],
                (LM_PRODUCER_BATCHES_MAX - 1) * sizeof(e->batches[0]));
        e->n_batches--;
    }
    e->batches[e->n_batches++] = *b;
    LM_ASSERT(e->n_batches <= LM_PRODUCER_BATCHES_MAX);
}

int lm_producer_record(struct lm_producer_state *s, int64_t producer_id, int16_t epoch,
                       const struct lm_producer_batch *b, int64_t now_ms)
{
    LM_ASSERT(s != NULL && b != NULL);
    if (producer_id < 0 || epoch < 0 || b->first_seq < 0 || b->last_seq < 0 ||
        b->last_offset < b->first_offset)
        return LM_E_INVALID;
    struct entry *e = entry_get(s, producer_id);
    if (e->epoch != LM_PRODUCER_NO_EPOCH && epoch < e->epoch)
        return LM_E_STATE; /* a check would have rejected it */
    entry_append(e, epoch, b);
    e->last_update_ms = now_ms;
    return 0;
}

/* Kafka ProducerAppendInfo.appendEndTxnMarker: maybeUpdateProducerEpoch, the transaction
 * closed, the coordinator epoch kept. */
static void marker_apply(struct entry *e, int16_t epoch, int32_t coordinator_epoch)
{
    if (epoch > e->epoch || e->epoch == LM_PRODUCER_NO_EPOCH) {
        e->epoch = epoch;
        e->n_batches = 0;
    }
    e->txn_start_offset = -1;
    if (coordinator_epoch > e->coordinator_epoch)
        e->coordinator_epoch = coordinator_epoch;
}

void lm_producer_check_txn(const struct lm_producer_state *s, int64_t producer_id,
                           bool transactional, int16_t *error)
{
    int64_t i = find(s, producer_id);
    *error = KAFKA_NONE;
    if (i >= 0 && !transactional && s->entries[i].txn_start_offset >= 0)
        *error = KAFKA_INVALID_TXN_STATE;
}

int lm_producer_txn_begin(struct lm_producer_state *s, int64_t producer_id, int64_t first_offset)
{
    int64_t i = find(s, producer_id);
    if (i < 0 || first_offset < 0)
        return LM_E_NOT_FOUND; /* lm_producer_record comes first */
    struct entry *e = &s->entries[i];
    /* the earliest batch opens it; a state loaded from a file is not trusted to be earlier */
    if (e->txn_start_offset < 0 || e->txn_start_offset > first_offset)
        e->txn_start_offset = first_offset;
    return 0;
}

int16_t lm_producer_check_marker(const struct lm_producer_state *s, int64_t producer_id,
                                 int16_t epoch, int32_t coordinator_epoch)
{
    int64_t i = find(s, producer_id);
    if (i < 0)
        return KAFKA_NONE;
    const struct entry *e = &s->entries[i];
    if (epoch < e->epoch)
        return KAFKA_INVALID_PRODUCER_EPOCH;
    if (coordinator_epoch < e->coordinator_epoch)
        return KAFKA_TRANSACTION_COORDINATOR_FENCED;
    return KAFKA_NONE;
}

int lm_producer_marker(struct lm_producer_state *s, int64_t producer_id, int16_t epoch,
                       int32_t coordinator_epoch, int64_t now_ms)
{
    LM_ASSERT(s != NULL);
    if (producer_id < 0 || epoch < 0)
        return LM_E_INVALID;
    struct entry *e = entry_get(s, producer_id);
    marker_apply(e, epoch, coordinator_epoch);
    e->last_update_ms = now_ms;
    LM_ASSERT(e->txn_start_offset == -1);
    return 0;
}

int64_t lm_producer_txn_open(const struct lm_producer_state *s, int64_t producer_id)
{
    int64_t i = find(s, producer_id);
    return i < 0 ? -1 : s->entries[i].txn_start_offset;
}

int lm_producer_replay(struct lm_producer_state *s, const struct lm_producer_log_batch *b,
                       int64_t now_ms)
{
    LM_ASSERT(s != NULL && b != NULL);
    if (b->producer_id < 0)
        return 0; /* not idempotent */
    if (b->epoch < 0 || b->last_offset_delta < 0 || (!b->is_control && b->base_seq < 0))
        return LM_E_CORRUPT;
    struct entry *e = entry_get(s, b->producer_id);
    e->last_update_ms = now_ms; /* recovered producers get a full expiration period */
    if (b->is_control) {
        marker_apply(e, b->epoch, b->coordinator_epoch);
        return 0;
    }
    if (b->transactional && e->txn_start_offset < 0)
        e->txn_start_offset = b->base_offset;
    struct lm_producer_batch pb = {
        .first_seq = b->base_seq,
        .last_seq = lm_producer_seq_add(b->base_seq, b->last_offset_delta),
        .first_offset = b->base_offset,
        .last_offset = b->base_offset + b->last_offset_delta,
        .timestamp_ms = b->max_timestamp_ms,
    };
    entry_append(e, b->epoch, &pb);
    return 0;
}

size_t lm_producer_expire(struct lm_producer_state *s, int64_t now_ms)
{
    uint32_t w = 0;
    size_t removed = 0;
    for (uint32_t r = 0; r < s->n; r++) {
        const struct entry *e = &s->entries[r];
        /* Kafka isProducerExpired: no open transaction and idle for the expiration time */
        if (e->txn_start_offset < 0 && now_ms - e->last_update_ms >= s->expiration_ms) {
            removed++;
            continue;
        }
        if (w != r)
            s->entries[w] = *e;
        w++;
    }
    s->n = w;
    return removed;
}

size_t lm_producer_state_count(const struct lm_producer_state *s)
{
    return s->n;
}

uint64_t lm_producer_state_evictions(const struct lm_producer_state *s)
{
    return s->evictions;
}

size_t lm_producer_describe(const struct lm_producer_state *s, struct lm_producer_info *rows,
                            size_t cap)
{
    size_t n = s->n < cap ? s->n : cap;
    for (size_t i = 0; i < n; i++) {
        const struct entry *e = &s->entries[i];
        const struct lm_producer_batch *last = e->n_batches ? &e->batches[e->n_batches - 1] : NULL;
        rows[i] = (struct lm_producer_info){
            .producer_id = e->producer_id,
            .epoch = e->epoch,
            .last_sequence = last ? last->last_seq : -1,
            .last_timestamp_ms = last ? last->timestamp_ms : -1,
            .coordinator_epoch = e->coordinator_epoch,
            .current_txn_start_offset = e->txn_start_offset,
        };
    }
    return n;
}

int lm_producer_get(const struct lm_producer_state *s, int64_t producer_id, int16_t *epoch,
                    struct lm_producer_batch batches[LM_PRODUCER_BATCHES_MAX], int *n_batches)
{
    int64_t i = find(s, producer_id);
    if (i < 0)
        return LM_E_NOT_FOUND;
    const struct entry *e = &s->entries[i];
    *epoch = e->epoch;
    *n_batches = e->n_batches;
    memcpy(batches, e->batches, (size_t)e->n_batches * sizeof(*batches));
    return 0;
}

/* ---- snapshot ---- */

#define SNAP_MAGIC        0x4C4D5053u /* "LMPS" */
#define SNAP_VERSION      2
#define SNAP_HEADER_BYTES (4 + 2 + 8 + 4)
#define SNAP_ENTRY_BYTES  (8 + 2 + 8 + 4 + 8 + 1)
#define SNAP_BATCH_BYTES  (4 + 4 + 8 + 8 + 8)

size_t lm_producer_snapshot_size(const struct lm_producer_state *s)
{
    size_t n = SNAP_HEADER_BYTES + 4;
    for (uint32_t i = 0; i < s->n; i++)
        n += SNAP_ENTRY_BYTES + (size_t)s->entries[i].n_batches * SNAP_BATCH_BYTES;
    return n;
}

int lm_producer_snapshot_encode(const struct lm_producer_state *s, int64_t next_offset,
                                uint8_t *buf, size_t cap, size_t *len)
{
    size_t need = lm_producer_snapshot_size(s);
    if (cap < need)
        return LM_E_FULL;
    struct kafka_writer w;
    kafka_writer_init(&w, buf, cap);
    LM_TRY(kafka_write_uint32(&w, SNAP_MAGIC));
    LM_TRY(kafka_write_uint16(&w, SNAP_VERSION));
    LM_TRY(kafka_write_int64(&w, next_offset));
    LM_TRY(kafka_write_uint32(&w, s->n));
    for (uint32_t i = 0; i < s->n; i++) {
        const struct entry *e = &s->entries[i];
        LM_TRY(kafka_write_int64(&w, e->producer_id));
        LM_TRY(kafka_write_int16(&w, e->epoch));
        LM_TRY(kafka_write_int64(&w, e->last_update_ms));
        LM_TRY(kafka_write_int32(&w, e->coordinator_epoch));
        LM_TRY(kafka_write_int64(&w, e->txn_start_offset));
        LM_TRY(kafka_write_int8(&w, (int8_t)e->n_batches));
        for (int k = 0; k < e->n_batches; k++) {
            const struct lm_producer_batch *b = &e->batches[k];
            LM_TRY(kafka_write_int32(&w, b->first_seq));
            LM_TRY(kafka_write_int32(&w, b->last_seq));
            LM_TRY(kafka_write_int64(&w, b->first_offset));
            LM_TRY(kafka_write_int64(&w, b->last_offset));
            LM_TRY(kafka_write_int64(&w, b->timestamp_ms));
        }
    }
    LM_TRY(kafka_write_uint32(&w, crc32c_update(0, buf, w.pos)));
    LM_ASSERT(w.pos == need);
    *len = w.pos;
    return 0;
}

static int snapshot_decode(struct lm_producer_state *s, const uint8_t *buf, size_t len,
                           int64_t *next_offset)
{
    if (len < SNAP_HEADER_BYTES + 4)
        return LM_E_TRUNCATED;
    struct kafka_reader r;
    kafka_reader_init(&r, buf + len - 4, 4);
    uint32_t crc;
    LM_TRY(kafka_read_uint32(&r, &crc));
    if (crc != crc32c_update(0, buf, len - 4))
        return LM_E_CRC;
    kafka_reader_init(&r, buf, len - 4);
    uint32_t magic, count;
    uint16_t version;
    LM_TRY(kafka_read_uint32(&r, &magic));
    LM_TRY(kafka_read_uint16(&r, &version));
    if (magic != SNAP_MAGIC)
        return LM_E_CORRUPT;
    if (version != SNAP_VERSION)
        return LM_E_UNSUPPORTED;
    LM_TRY(kafka_read_int64(&r, next_offset));
    LM_TRY(kafka_read_uint32(&r, &count));
    if (count > s->cap)
        return LM_E_FULL;
    if ((uint64_t)count * SNAP_ENTRY_BYTES > kafka_reader_left(&r))
        return LM_E_TRUNCATED;
    int64_t prev = -1;
    for (uint32_t i = 0; i < count; i++) {
        struct entry *e = &s->entries[i];
        memset(e, 0, sizeof(*e));
        int8_t nb;
        LM_TRY(kafka_read_int64(&r, &e->producer_id));
        LM_TRY(kafka_read_int16(&r, &e->epoch));
        LM_TRY(kafka_read_int64(&r, &e->last_update_ms));
        LM_TRY(kafka_read_int32(&r, &e->coordinator_epoch));
        LM_TRY(kafka_read_int64(&r, &e->txn_start_offset));
        LM_TRY(kafka_read_int8(&r, &nb));
        /* Untrusted file: ascending unique ids, a real epoch, a bounded batch list. */
        if (e->producer_id < 0 || e->producer_id <= prev || e->epoch < LM_PRODUCER_NO_EPOCH ||
            nb < 0 || nb > LM_PRODUCER_BATCHES_MAX)
            return LM_E_CORRUPT;
        prev = e->producer_id;
        e->n_batches = (uint8_t)nb;
        for (int k = 0; k < nb; k++) {
            struct lm_producer_batch *b = &e->batches[k];
            LM_TRY(kafka_read_int32(&r, &b->first_seq));
            LM_TRY(kafka_read_int32(&r, &b->last_seq));
            LM_TRY(kafka_read_int64(&r, &b->first_offset));
            LM_TRY(kafka_read_int64(&r, &b->last_offset));
            LM_TRY(kafka_read_int64(&r, &b->timestamp_ms));
            if (b->first_seq < 0 || b->last_seq < 0 || b->last_offset < b->first_offset)
                return LM_E_CORRUPT;
        }
        s->n = i + 1;
    }
    if (kafka_reader_left(&r) != 0)
        return LM_E_CORRUPT;
    return 0;
}

int lm_producer_snapshot_decode(struct lm_producer_state *s, const uint8_t *buf, size_t len,
                                int64_t *next_offset)
{
    s->n = 0;
    int rc = snapshot_decode(s, buf, len, next_offset);
    if (rc != 0)
        s->n = 0;
    return rc;
}
