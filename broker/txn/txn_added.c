#include "broker/txn/txn_added.h"

#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_hash.h"

void txn_added_init(struct txn_added *c)
{
    for (size_t i = 0; i < TXN_ADDED_SLOTS; i++)
        c->slot[i].producer_id = -1;
    c->hits = c->misses = 0;
    memset(c->inflight, 0, sizeof(c->inflight));
    c->inflight_other = 0;
}

bool txn_added_busy(const struct txn_added *c, int64_t producer_id)
{
    if (c->inflight_other > 0)
        return true;
    for (size_t i = 0; i < TXN_ADDED_INFLIGHT; i++)
        if (c->inflight[i].n > 0 && c->inflight[i].producer_id == producer_id)
            return true;
    return false;
}

int txn_added_begin(struct txn_added *c, int64_t producer_id)
{
    int free_slot = -1;
    for (int i = 0; i < TXN_ADDED_INFLIGHT; i++) {
        if (c->inflight[i].n > 0 && c->inflight[i].producer_id == producer_id) {
            c->inflight[i].n++;
            return i;
        }
        if (c->inflight[i].n == 0 && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0) {
        c->inflight_other++;
        return -1;
    }
    c->inflight[free_slot].producer_id = producer_id;
    c->inflight[free_slot].n = 1;
    return free_slot;
}

void txn_added_end(struct txn_added *c, int token)
{
    if (token < 0) {
        LM_ASSERT(c->inflight_other > 0);
        c->inflight_other--;
        return;
    }
    LM_ASSERT(token < TXN_ADDED_INFLIGHT && c->inflight[token].n > 0);
    c->inflight[token].n--;
}

static size_t slot_of(int64_t producer_id, int16_t epoch, const uint8_t topic_id[16],
                      int32_t partition)
{
    uint64_t h = lm_fnv1a64(&producer_id, sizeof(producer_id));
    h = lm_fnv1a64_update(h, &epoch, sizeof(epoch));
    h = lm_fnv1a64_update(h, &partition, sizeof(partition));
    h = lm_fnv1a64_update(h, topic_id, 16);
    return (size_t)(h % TXN_ADDED_SLOTS);
}

bool txn_added_has(struct txn_added *c, int64_t producer_id, int16_t epoch,
                   const uint8_t topic_id[16], int32_t partition, uint64_t now_ms)
{
    const struct txn_added_entry *e = &c->slot[slot_of(producer_id, epoch, topic_id, partition)];
    bool hit = producer_id >= 0 && e->producer_id == producer_id && e->epoch == epoch &&
               e->partition == partition && memcmp(e->topic_id, topic_id, 16) == 0 &&
               now_ms < e->at_ms + TXN_ADDED_TTL_MS;
    if (hit)
        c->hits++;
    else
        c->misses++;
    return hit;
}

void txn_added_put(struct txn_added *c, int64_t producer_id, int16_t epoch,
                   const uint8_t topic_id[16], int32_t partition, uint64_t now_ms)
{
    if (producer_id < 0)
        return;
    struct txn_added_entry *e = &c->slot[slot_of(producer_id, epoch, topic_id, partition)];
    e->producer_id = producer_id;
    e->epoch = epoch;
    e->partition = partition;
    memcpy(e->topic_id, topic_id, 16);
    e->at_ms = now_ms;
}
