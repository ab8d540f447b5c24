/* The node-wide partition tables: leader epochs other than the first, and offline partitions
 * (Metadata is answered on the request's shard, the partition lives on its owner). */
#include "broker/handlers/handlers.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/random.h>
#include <unistd.h>
#include "broker/handlers/group_internal.h"
#include "broker/handlers/handlers_internal.h"
#include "common/lm_hash.h"
#include "broker/log.h"
#include "broker/producer/producer_state.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_messages.h"

/* ---- leader epochs ------------------------------------------------------------------------- */

/* Epochs other than HANDLERS_LEADER_EPOCH_FIRST, shared by the node's shards (Metadata and
 * DescribeTopicPartitions answer on the request's shard). Almost every partition is at the
 * first term, so the table holds only the exceptions (logs from older terms, a quorum-state
 * from a later one) and is looked up only while it holds any. */
#define EPOCH_BUCKETS HANDLERS_PART_BUCKETS

struct hepoch {
    uint8_t id[16];
    int32_t partition;
    int32_t epoch;
    bool leads; /* this node's replica leads the (replicated) partition at epoch */
    struct hepoch *next;
};

static uint64_t epoch_hash(const uint8_t id[16], int32_t partition)
{
    return lm_fnv1a64(id, 16) ^ ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ull);
}

/* The chain of (id, partition); under epoch_lock. The table exists once an entry does. */
static struct hepoch **epoch_chain(struct handlers_ctx *h, const uint8_t id[16], int32_t partition)
{
    return &h->epoch_buckets[epoch_hash(id, partition) % h->epoch_nb];
}

/* Doubles the table past two entries per chain (under epoch_lock); without memory it stays. */
static void epoch_grow(struct handlers_ctx *h)
{
    size_t nb = h->epoch_nb * 2;
    struct hepoch **nbk = calloc(nb, sizeof(*nbk));
    if (nbk == NULL)
        return;
    for (size_t b = 0; b < h->epoch_nb; b++)
        while (h->epoch_buckets[b] != NULL) {
            struct hepoch *e = h->epoch_buckets[b];
            h->epoch_buckets[b] = e->next;
            size_t i = epoch_hash(e->id, e->partition) % nb;
            e->next = nbk[i];
            nbk[i] = e;
        }
    free(h->epoch_buckets);
    h->epoch_buckets = nbk;
    h->epoch_nb = nb;
}

int32_t h_partition_epoch(const struct handlers_ctx *node, const uint8_t topic_id[16],
                          int32_t partition)
{
    struct handlers_ctx *h = (struct handlers_ctx *)node; /* the lock, not the table */
    if (__atomic_load_n(&h->epoch_count, __ATOMIC_ACQUIRE) == 0)
        return HANDLERS_LEADER_EPOCH_FIRST;
    int32_t epoch = HANDLERS_LEADER_EPOCH_FIRST;
    pthread_mutex_lock(&h->epoch_lock);
    for (struct hepoch *e = *epoch_chain(h, topic_id, partition); e != NULL; e = e->next)
        if (e->partition == partition && memcmp(e->id, topic_id, 16) == 0) {
            epoch = e->epoch;
            break;
        }
    pthread_mutex_unlock(&h->epoch_lock);
    return epoch;
}

bool h_partition_local_leader(const struct handlers_ctx *node, const uint8_t topic_id[16],
                              int32_t partition, int32_t *epoch)
{
    struct handlers_ctx *h = (struct handlers_ctx *)node; /* the lock, not the table */
    if (__atomic_load_n(&h->epoch_count, __ATOMIC_ACQUIRE) == 0)
        return false;
    bool leads = false;
    pthread_mutex_lock(&h->epoch_lock);
    for (struct hepoch *e = *epoch_chain(h, topic_id, partition); e != NULL; e = e->next)
        if (e->partition == partition && memcmp(e->id, topic_id, 16) == 0) {
            leads = e->leads;
            *epoch = e->epoch;
            break;
        }
    pthread_mutex_unlock(&h->epoch_lock);
    return leads;
}

/* Records p's epoch, and whether this node's replica leads at it, for the other shards
 * (HANDLERS_LEADER_EPOCH_FIRST and not leading: no entry). */
void hs_part_set_epoch(struct hpart *p, int32_t epoch, bool leads)
{
    struct handlers_ctx *h = p->hs->node;
    pthread_mutex_lock(&h->epoch_lock);
    if (h->epoch_buckets == NULL) {
        if (epoch == HANDLERS_LEADER_EPOCH_FIRST && !leads) {
            pthread_mutex_unlock(&h->epoch_lock);
            return; /* nothing to record */
        }
        h->epoch_buckets = calloc(EPOCH_BUCKETS, sizeof(*h->epoch_buckets));
        if (h->epoch_buckets == NULL) { /* Metadata shows the first epoch: clients refresh */
            pthread_mutex_unlock(&h->epoch_lock);
            return;
        }
        h->epoch_nb = EPOCH_BUCKETS;
    }
    struct hepoch **e = epoch_chain(h, p->topic_id, p->partition);
    while (*e != NULL &&
           !((*e)->partition == p->partition && memcmp((*e)->id, p->topic_id, 16) == 0))
        e = &(*e)->next;
    if (*e != NULL && epoch == HANDLERS_LEADER_EPOCH_FIRST && !leads) {
        struct hepoch *gone = *e;
        *e = gone->next;
        free(gone);
        __atomic_sub_fetch(&h->epoch_count, 1, __ATOMIC_RELEASE);
    } else if (*e != NULL) {
        (*e)->epoch = epoch;
        (*e)->leads = leads;
    } else if (epoch != HANDLERS_LEADER_EPOCH_FIRST || leads) {
        struct hepoch *n = calloc(1, sizeof(*n));
        if (n != NULL) { /* without memory Metadata shows the first epoch: clients refresh */
            memcpy(n->id, p->topic_id, 16);
            n->partition = p->partition;
            n->epoch = epoch;
            n->leads = leads;
            struct hepoch **chain = epoch_chain(h, p->topic_id, p->partition);
            n->next = *chain;
            *chain = n;
            uint32_t count = __atomic_add_fetch(&h->epoch_count, 1, __ATOMIC_RELEASE);
            if (count > 2 * h->epoch_nb)
                epoch_grow(h);
        }
    }
    pthread_mutex_unlock(&h->epoch_lock);
}

/* ---- offline partitions ------------------------------------------------------------------ */

/* Partitions whose log failed, shared by the node's shards: Metadata is answered on the
 * request's shard, the log lives on the owner. A chained hash under one lock, taken only while
 * some partition is offline (offline_count is checked first). */
#define OFFLINE_BUCKETS HANDLERS_PART_BUCKETS

struct hoffline {
    uint8_t id[16];
    int32_t partition;
    struct hoffline *next;
};

static size_t offline_bucket(const uint8_t id[16], int32_t partition)
{
    return (lm_fnv1a64(id, 16) ^ ((uint64_t)(uint32_t)partition * 0x9e3779b97f4a7c15ull)) %
           OFFLINE_BUCKETS;
}

bool h_partition_offline(const struct handlers_ctx *node, const uint8_t topic_id[16],
                         int32_t partition)
{
    struct handlers_ctx *h = (struct handlers_ctx *)node; /* the lock, not the table */
    if (__atomic_load_n(&h->offline_count, __ATOMIC_ACQUIRE) == 0)
        return false;
    bool found = false;
    pthread_mutex_lock(&h->offline_lock);
    for (struct hoffline *o = h->offline_buckets[offline_bucket(topic_id, partition)]; o != NULL;
         o = o->next)
        if (o->partition == partition && memcmp(o->id, topic_id, 16) == 0) {
            found = true;
            break;
        }
    pthread_mutex_unlock(&h->offline_lock);
    return found;
}

void hs_part_set_offline(struct hpart *p, bool offline)
{
    if (p->offline == offline)
        return;
    struct handlers_ctx *h = p->hs->node;
    size_t b = offline_bucket(p->topic_id, p->partition);
    pthread_mutex_lock(&h->offline_lock);
    if (offline) {
        struct hoffline *o = calloc(1, sizeof(*o));
        if (o != NULL) {
            memcpy(o->id, p->topic_id, 16);
            o->partition = p->partition;
            o->next = h->offline_buckets[b];
            h->offline_buckets[b] = o;
            __atomic_add_fetch(&h->offline_count, 1, __ATOMIC_RELEASE);
            p->offline = true;
        }
    } else {
        for (struct hoffline **o = &h->offline_buckets[b]; *o != NULL; o = &(*o)->next) {
            if ((*o)->partition == p->partition && memcmp((*o)->id, p->topic_id, 16) == 0) {
                struct hoffline *gone = *o;
                *o = gone->next;
                free(gone);
                __atomic_sub_fetch(&h->offline_count, 1, __ATOMIC_RELEASE);
                break;
            }
        }
        p->offline = false;
    }
    pthread_mutex_unlock(&h->offline_lock);
}

void hs_registry_clear(struct handlers_ctx *h)
{
    for (size_t b = 0; b < h->epoch_nb; b++)
        while (h->epoch_buckets[b] != NULL) {
            struct hepoch *e = h->epoch_buckets[b];
            h->epoch_buckets[b] = e->next;
            free(e);
        }
    free(h->epoch_buckets);
    h->epoch_buckets = NULL;
    h->epoch_nb = 0;
    for (size_t b = 0; b < HANDLERS_PART_BUCKETS; b++) {
        while (h->offline_buckets[b] != NULL) {
            struct hoffline *o = h->offline_buckets[b];
            h->offline_buckets[b] = o->next;
            free(o);
        }
    }
}
