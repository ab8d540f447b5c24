/* Share-partition state (KIP-932): acquisition, locks, acknowledgements. See
 * share_partition.h. */
#include "broker/group/share_partition.h"
#include "broker/group/share_records.h"

#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"
#include "protocol/record_batch.h"

void lm_share_config_default(struct lm_share_config *cfg)
{
    cfg->lock_ms = 30000;
    cfg->delivery_limit = 5;
    cfg->max_in_flight = 2000;
}

uint64_t lm_share_member_hash(const char *id, int32_t len)
{
    uint64_t h = 1469598103934665603ULL;
    for (int32_t i = 0; i < len; i++) {
        h ^= (uint8_t)id[i];
        h *= 1099511628211ULL;
    }
    return h != 0 ? h : 1; /* 0 names no member */
}

int lm_share_part_init(struct lm_share_part *sp, const struct lm_share_config *cfg)
{
    LM_ASSERT(sp != NULL && cfg != NULL);
    LM_ASSERT(cfg->max_in_flight > 0 && cfg->max_in_flight <= LM_SHARE_IN_FLIGHT_MAX);
    LM_ASSERT(cfg->delivery_limit > 0 && cfg->lock_ms > 0);
    memset(sp, 0, sizeof(*sp));
    sp->cfg = *cfg;
    if (sp->cfg.delivery_limit > 255)
        sp->cfg.delivery_limit = 255; /* deliveries is a byte */
    sp->recs = calloc((size_t)cfg->max_in_flight, sizeof(*sp->recs));
    return sp->recs != NULL ? 0 : LM_E_NOMEM;
}

void lm_share_part_deinit(struct lm_share_part *sp)
{
    free(sp->recs);
    sp->recs = NULL;
}

/* The window's invariants: start <= end, at most max_in_flight records, head in the ring. */
static void window_check(const struct lm_share_part *sp)
{
    LM_ASSERT(sp->start <= sp->end);
    LM_ASSERT(sp->end - sp->start <= sp->cfg.max_in_flight);
    LM_ASSERT(sp->head >= 0 && sp->head < sp->cfg.max_in_flight);
}

static struct lm_share_rec *rec_at(const struct lm_share_part *sp, int64_t offset)
{
    LM_ASSERT(offset >= sp->start && offset < sp->end);
    int64_t i = (sp->head + (offset - sp->start)) % sp->cfg.max_in_flight;
    return &sp->recs[i];
}

static bool done(uint8_t state)
{
    return state == LM_SHARE_ACKNOWLEDGED || state == LM_SHARE_ARCHIVED;
}

/* Moves start over leading finished records. */
static void advance(struct lm_share_part *sp)
{
    while (sp->start < sp->end && done(rec_at(sp, sp->start)->state)) {
        sp->start++;
        sp->head = (sp->head + 1) % sp->cfg.max_in_flight;
    }
    if (sp->start == sp->end)
        sp->head = 0;
    window_check(sp);
}

void lm_share_part_start(struct lm_share_part *sp, int64_t offset)
{
    if (sp->initialized)
        return;
    LM_ASSERT(offset >= 0);
    sp->initialized = true;
    sp->start = sp->end = offset;
    sp->head = 0;
}

void lm_share_part_reset(struct lm_share_part *sp, int64_t offset)
{
    LM_ASSERT(offset >= 0);
    sp->initialized = true;
    sp->start = sp->end = offset;
    sp->head = 0;
}

void lm_share_part_clamp(struct lm_share_part *sp, int64_t log_start)
{
    if (!sp->initialized || log_start <= sp->start)
        return;
    if (log_start >= sp->end) {
        sp->start = sp->end = log_start;
        sp->head = 0;
        return;
    }
    while (sp->start < log_start) {
        rec_at(sp, sp->start)->state = LM_SHARE_ARCHIVED;
        sp->start++;
        sp->head = (sp->head + 1) % sp->cfg.max_in_flight;
    }
    advance(sp);
}

/* A record whose delivery ended without acknowledgement (lock timeout, release). */
static void give_back(struct lm_share_part *sp, struct lm_share_rec *r)
{
    r->state = r->deliveries >= sp->cfg.delivery_limit ? LM_SHARE_ARCHIVED : LM_SHARE_AVAILABLE;
    r->member = 0;
    r->deadline_ms = 0;
}

int32_t lm_share_part_expire(struct lm_share_part *sp, int64_t now_ms)
{
    int32_t n = 0;
    for (int64_t o = sp->start; o < sp->end; o++) {
        struct lm_share_rec *r = rec_at(sp, o);
        if (r->state == LM_SHARE_ACQUIRED && r->deadline_ms <= now_ms) {
            give_back(sp, r);
            n++;
        }
    }
    if (n > 0)
        advance(sp);
    return n;
}

int64_t lm_share_part_next(const struct lm_share_part *sp, int64_t log_end)
{
    if (!sp->initialized)
        return -1;
    for (int64_t o = sp->start; o < sp->end; o++)
        if (rec_at(sp, o)->state == LM_SHARE_AVAILABLE)
            return o;
    if (sp->end < log_end && sp->end - sp->start < sp->cfg.max_in_flight)
        return sp->end;
    return -1;
}

int32_t lm_share_part_acquire(struct lm_share_part *sp, int64_t now_ms, uint64_t member,
                              int64_t from, int64_t upto, int64_t log_end, int32_t max_records,
                              struct lm_share_range *out, int32_t max_ranges)
{
    return lm_share_part_acquire_skip(sp, now_ms, member, from, upto, log_end, max_records, NULL, 0,
                                      out, max_ranges, NULL);
}

int32_t lm_share_part_acquire_skip(struct lm_share_part *sp, int64_t now_ms, uint64_t member,
                                   int64_t from, int64_t upto, int64_t log_end, int32_t max_records,
                                   const struct lm_share_skip *skip, int32_t n_skip,
                                   struct lm_share_range *out, int32_t max_ranges,
                                   int32_t *archived)
{
    LM_ASSERT(member != 0 && max_ranges >= 0 && n_skip >= 0);
    LM_ASSERT(n_skip == 0 || skip != NULL);
    if (archived != NULL)
        *archived = 0;
    if (!sp->initialized || max_records <= 0 || max_ranges == 0)
        return 0;
    if (from < sp->start)
        from = sp->start;
    if (upto > log_end - 1)
        upto = log_end - 1;
    int32_t n = 0, taken = 0, k = 0, skipped = 0;
    for (int64_t o = from; o <= upto && taken < max_records; o++) {
        struct lm_share_rec *r;
        if (o >= sp->end) {
            if (o > sp->end || sp->end - sp->start >= sp->cfg.max_in_flight)
                break; /* the window is full (or a hole: never) */
            sp->end++;
            r = rec_at(sp, o);
            memset(r, 0, sizeof(*r));
            r->state = LM_SHARE_AVAILABLE;
        } else {
            r = rec_at(sp, o);
        }
        if (r->state != LM_SHARE_AVAILABLE)
            continue;
        while (k < n_skip && skip[k].last < o)
            k++;
        if (k < n_skip && skip[k].first <= o) {
            /* not for consumers: done without a delivery (Kafka archives them) */
            r->state = LM_SHARE_ARCHIVED;
            r->member = 0;
            r->deadline_ms = 0;
            skipped++;
            continue;
        }
        r->state = LM_SHARE_ACQUIRED;
        r->deliveries++;
        r->member = member;
        r->deadline_ms = now_ms + sp->cfg.lock_ms;
        taken++;
        if (n > 0 && out[n - 1].last == o - 1 && out[n - 1].delivery_count == r->deliveries) {
            out[n - 1].last = o;
        } else if (n < max_ranges) {
            out[n++] = (struct lm_share_range){o, o, r->deliveries};
        } else {
            /* no room for another range: undo this one */
            r->deliveries--;
            r->state = LM_SHARE_AVAILABLE;
            r->member = 0;
            taken--;
            break;
        }
    }
    LM_ASSERT(taken <= max_records);
    if (skipped > 0)
        advance(sp); /* archived records at the start move it */
    window_check(sp);
    if (archived != NULL)
        *archived = skipped;
    return n;
}

int32_t lm_share_skips(const uint8_t *data, size_t len, bool read_committed,
                       const struct lm_share_aborted *aborted, int32_t n_aborted,
                       struct lm_share_skip *out, int32_t cap)
{
    LM_ASSERT(cap >= 0 && n_aborted >= 0);
    LM_ASSERT(len == 0 || data != NULL);
    int32_t n = 0;
    size_t at = 0;
    while (at + KAFKA_BATCH_HEADER_SIZE <= len) {
        struct kafka_batch_header h;
        if (kafka_batch_header_parse(data + at, len - at, &h) != 0)
            break;
        size_t size = kafka_batch_total_size(&h);
        int64_t first = h.base_offset, last = kafka_batch_last_offset(&h);
        bool skip = (h.attributes & KAFKA_BATCH_ATTR_CONTROL) != 0;
        if (!skip && read_committed && (h.attributes & KAFKA_BATCH_ATTR_TRANSACTIONAL) != 0) {
            /* inside one of its producer's aborted transactions: between the transaction's
             * first offset and its abort marker (Kafka's read_committed filtering) */
            for (int32_t i = 0; i < n_aborted && !skip; i++)
                skip = aborted[i].producer_id == h.producer_id &&
                       aborted[i].first_offset <= first && first < aborted[i].last_offset;
        }
        if (skip && last >= first) {
            if (n > 0 && out[n - 1].last + 1 >= first)
                out[n - 1].last = last > out[n - 1].last ? last : out[n - 1].last;
            else if (n < cap)
                out[n++] = (struct lm_share_skip){first, last};
            else
                break;
        }
        if (size > len - at)
            break; /* a partial batch at the end of the read */
        at += size;
    }
    LM_ASSERT(n <= cap);
    return n;
}

int64_t lm_share_part_lock_deadline(const struct lm_share_part *sp)
{
    int64_t d = INT64_MAX;
    for (int64_t o = sp->start; o < sp->end; o++) {
        const struct lm_share_rec *r = rec_at(sp, o);
        if (r->state == LM_SHARE_ACQUIRED && r->deadline_ms < d)
            d = r->deadline_ms;
    }
    return d;
}

int16_t lm_share_part_ack(struct lm_share_part *sp, uint64_t member, int64_t first, int64_t last,
                          int8_t type)
{
    if (type < LM_SHARE_ACK_GAP || type > LM_SHARE_ACK_REJECT || first > last || first < 0)
        return KAFKA_INVALID_REQUEST;
    if (!sp->initialized || last >= sp->end)
        return KAFKA_INVALID_RECORD_STATE;
    /* check first, so that a bad acknowledgement changes nothing */
    for (int64_t o = first < sp->start ? sp->start : first; o <= last; o++) {
        const struct lm_share_rec *r = rec_at(sp, o);
        if (type == LM_SHARE_ACK_GAP && r->state != LM_SHARE_ACQUIRED)
            continue;
        if (r->state != LM_SHARE_ACQUIRED || r->member != member)
            return KAFKA_INVALID_RECORD_STATE;
    }
    if (first < sp->start && type != LM_SHARE_ACK_GAP)
        return KAFKA_INVALID_RECORD_STATE;
    for (int64_t o = first < sp->start ? sp->start : first; o <= last; o++) {
        struct lm_share_rec *r = rec_at(sp, o);
        switch (type) {
        case LM_SHARE_ACK_ACCEPT:
            r->state = LM_SHARE_ACKNOWLEDGED;
            break;
        case LM_SHARE_ACK_RELEASE:
            give_back(sp, r);
            continue;
        case LM_SHARE_ACK_REJECT:
        case LM_SHARE_ACK_GAP: /* offsets with no record (compaction, control batches) */
            r->state = LM_SHARE_ARCHIVED;
            break;
        default:
            LM_UNREACHABLE();
        }
        r->member = 0;
        r->deadline_ms = 0;
    }
    advance(sp);
    /* every record of the range left ACQUIRED (a gap's unacquired ones were never in it) */
    LM_ASSERT(first < sp->start || lm_share_part_state(sp, first, NULL) != LM_SHARE_ACQUIRED);
    return KAFKA_NONE;
}

int32_t lm_share_part_release_member(struct lm_share_part *sp, uint64_t member)
{
    int32_t n = 0;
    for (int64_t o = sp->start; o < sp->end; o++) {
        struct lm_share_rec *r = rec_at(sp, o);
        if (r->state == LM_SHARE_ACQUIRED && r->member == member) {
            give_back(sp, r);
            n++;
        }
    }
    if (n > 0)
        advance(sp);
    return n;
}

int lm_share_part_state(const struct lm_share_part *sp, int64_t offset, int32_t *deliveries)
{
    if (deliveries != NULL)
        *deliveries = 0;
    if (offset < sp->start)
        return LM_SHARE_ACKNOWLEDGED;
    if (offset >= sp->end)
        return LM_SHARE_AVAILABLE;
    const struct lm_share_rec *r = rec_at(sp, offset);
    if (deliveries != NULL)
        *deliveries = r->deliveries;
    return r->state;
}

int64_t lm_share_part_in_flight(const struct lm_share_part *sp)
{
    return sp->end - sp->start;
}

int32_t lm_share_part_batches(const struct lm_share_part *sp, struct lm_shr_batch *out, int32_t cap)
{
    LM_ASSERT(cap >= 0);
    int32_t n = 0;
    for (int64_t o = sp->start; o < sp->end; o++) {
        const struct lm_share_rec *r = rec_at(sp, o);
        /* an acquired record is persisted as available: delivered again after a restart */
        int8_t state = r->state == LM_SHARE_ACQUIRED ? LM_SHARE_AVAILABLE : (int8_t)r->state;
        if (n > 0 && out[n - 1].last == o - 1 && out[n - 1].state == state &&
            out[n - 1].delivery_count == r->deliveries) {
            out[n - 1].last = o;
            continue;
        }
        if (n == cap)
            return -1;
        out[n++] = (struct lm_shr_batch){o, o, state, r->deliveries};
    }
    return n;
}

void lm_share_part_restore(struct lm_share_part *sp, const struct lm_shr_state *s)
{
    LM_ASSERT(s->present && s->start_offset >= 0);
    sp->initialized = true;
    sp->start = sp->end = s->start_offset;
    sp->head = 0;
    int64_t limit = sp->start + sp->cfg.max_in_flight; /* the window's bound */
    for (int32_t i = 0; i < s->n; i++) {
        const struct lm_shr_batch *b = &s->batches[i];
        LM_ASSERT(b->first >= sp->start && b->first <= b->last);
        for (int64_t o = b->first; o <= b->last && o < limit; o++) {
            while (sp->end <= o) { /* offsets no batch names: never delivered */
                struct lm_share_rec *gap =
                    &sp->recs[(sp->head + (sp->end - sp->start)) % sp->cfg.max_in_flight];
                memset(gap, 0, sizeof(*gap));
                sp->end++;
            }
            struct lm_share_rec *r = rec_at(sp, o);
            r->state = b->state == LM_SHARE_ACKNOWLEDGED || b->state == LM_SHARE_ARCHIVED
                           ? (uint8_t)b->state
                           : LM_SHARE_AVAILABLE;
            int32_t d = b->delivery_count;
            r->deliveries = (uint8_t)(d < 0 ? 0 : d > 255 ? 255 : d);
            /* a record delivered delivery_limit times and not acknowledged is done */
            if (r->state == LM_SHARE_AVAILABLE && r->deliveries >= sp->cfg.delivery_limit)
                r->state = LM_SHARE_ARCHIVED;
        }
    }
    advance(sp);
}
