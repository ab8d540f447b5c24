#include "broker/cluster/placement.h"

#include "common/lm_err.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "protocol/kafka_errors.h"

static bool has_rack(const struct placement_node *n)
{
    return n->rack != NULL && n->rack[0] != '\0';
}

static int cmp_id(const void *a, const void *b)
{
    const struct placement_node *x = *(const struct placement_node *const *)a;
    const struct placement_node *y = *(const struct placement_node *const *)b;
    return (x->id > y->id) - (x->id < y->id);
}

static int cmp_rack_id(const void *a, const void *b)
{
    const struct placement_node *x = *(const struct placement_node *const *)a;
    const struct placement_node *y = *(const struct placement_node *const *)b;
    int r = strcmp(x->rack, y->rack);
    return r != 0 ? r : cmp_id(a, b);
}

/* The follower j of a partition whose first replica is at index first (Kafka's replicaIndex):
 * a shift in 1 .. n-1, so never the first replica itself. */
static uint32_t follower_index(uint32_t first, uint64_t shift, uint32_t j, uint32_t n)
{
    uint32_t step = 1 + (uint32_t)((shift + j) % (n - 1));
    return (first + step) % n;
}

/* Racks in order, each rack's nodes in id order, taken one per rack in turn (Kafka's
 * getRackAlternatedBrokerList). by_rack is sorted by (rack, id); out gets the interleaving and
 * rack_of[i] the rack number of out[i]. */
static void interleave_racks(const struct placement_node **by_rack, uint32_t n,
                             const struct placement_node **out, uint32_t *rack_of,
                             uint32_t *rack_count)
{
    uint32_t *first = malloc(sizeof(*first) * (n + 1));
    uint32_t *next = malloc(sizeof(*next) * (n + 1));
    LM_ASSERT(first != NULL && next != NULL);
    uint32_t racks = 0;
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || strcmp(by_rack[i]->rack, by_rack[i - 1]->rack) != 0)
            first[racks++] = i;
    first[racks] = n;
    for (uint32_t r = 0; r < racks; r++)
        next[r] = first[r];
    uint32_t k = 0, r = 0;
    while (k < n) {
        if (next[r] < first[r + 1]) {
            rack_of[k] = r;
            out[k++] = by_rack[next[r]++];
        }
        r = (r + 1) % racks;
    }
    *rack_count = racks;
    free(first);
    free(next);
}

int16_t placement_assign(const struct placement_node *nodes, uint32_t node_count,
                         int32_t first_partition, int32_t partitions, int16_t rf, uint32_t start,
                         uint32_t shift, int32_t *out)
{
    if (partitions <= 0 || first_partition < 0)
        return KAFKA_INVALID_PARTITIONS;
    if (node_count == 0 || node_count > PLACEMENT_NODES_MAX)
        return KAFKA_INVALID_REQUEST;
    if (rf <= 0 || (uint32_t)rf > node_count)
        return KAFKA_INVALID_REPLICATION_FACTOR;
    uint32_t n = node_count;
    const struct placement_node **sorted = malloc(sizeof(*sorted) * n);
    const struct placement_node **order = malloc(sizeof(*order) * n);
    uint32_t *rack_of = calloc(n, sizeof(*rack_of));
    bool *taken_node = calloc(n, sizeof(*taken_node));
    bool *taken_rack = calloc(n, sizeof(*taken_rack));
    LM_ASSERT(sorted != NULL && order != NULL && rack_of != NULL && taken_node != NULL &&
              taken_rack != NULL);
    bool racks = true;
    for (uint32_t i = 0; i < n; i++) {
        sorted[i] = &nodes[i];
        racks = racks && has_rack(&nodes[i]);
    }
    qsort(sorted, n, sizeof(*sorted), cmp_id);
    int16_t err = 0;
    for (uint32_t i = 1; i < n && err == 0; i++)
        if (sorted[i]->id == sorted[i - 1]->id)
            err = KAFKA_INVALID_REQUEST;
    uint32_t rack_count = 1;
    if (err == 0 && racks) {
        qsort(sorted, n, sizeof(*sorted), cmp_rack_id);
        interleave_racks(sorted, n, order, rack_of, &rack_count);
    } else if (err == 0) {
        memcpy(order, sorted, sizeof(*order) * n);
    }
    start %= n;
    /* Kafka's nextReplicaShift grows by one every n partitions counted from partition 0. */
    uint64_t base_shift = shift % n;
    for (int32_t i = 0; i < partitions && err == 0; i++) {
        uint32_t p = (uint32_t)(first_partition + i);
        uint64_t sh = base_shift + p / n;
        uint32_t lead = (uint32_t)((p + start) % n);
        int32_t *row = out + (size_t)i * (size_t)rf;
        row[0] = order[lead]->id;
        if (rf == 1)
            continue;
        memset(taken_node, 0, sizeof(*taken_node) * n);
        memset(taken_rack, 0, sizeof(*taken_rack) * n);
        taken_node[lead] = true;
        taken_rack[rack_of[lead]] = true;
        uint32_t nodes_used = 1, racks_used = 1, k = 0;
        for (int16_t j = 1; j < rf; j++) {
            for (;;) {
                /* Rack-aware shifts move in whole rounds of racks (Kafka: shift * numRacks). */
                uint32_t x = follower_index(lead, racks ? sh * rack_count : sh, k++, n);
                bool rack_ok = !racks || !taken_rack[rack_of[x]] || racks_used == rack_count;
                bool node_ok = !taken_node[x] || nodes_used == n;
                if (rack_ok && node_ok) {
                    row[j] = order[x]->id;
                    if (!taken_node[x])
                        nodes_used++;
                    if (!taken_rack[rack_of[x]])
                        racks_used++;
                    taken_node[x] = true;
                    taken_rack[rack_of[x]] = true;
                    break;
                }
                LM_ASSERT(k < 4u * n * n); /* some node is always acceptable within n tries */
            }
        }
    }
    free(sorted);
    free(order);
    free(rack_of);
    free(taken_node);
    free(taken_rack);
    return err;
}

int16_t placement_check_explicit(const struct placement_node *nodes, uint32_t node_count,
                                 const int32_t *replicas, int32_t partitions, int16_t rf)
{
    if (rf <= 0)
        return KAFKA_INVALID_REPLICATION_FACTOR;
    if (partitions <= 0)
        return KAFKA_INVALID_REPLICA_ASSIGNMENT;
    for (int32_t p = 0; p < partitions; p++) {
        const int32_t *row = replicas + (size_t)p * (size_t)rf;
        for (int16_t j = 0; j < rf; j++) {
            bool known = false;
            for (uint32_t i = 0; i < node_count && !known; i++)
                known = nodes[i].id == row[j];
            if (!known)
                return KAFKA_INVALID_REPLICA_ASSIGNMENT;
            for (int16_t k = 0; k < j; k++)
                if (row[k] == row[j])
                    return KAFKA_INVALID_REPLICA_ASSIGNMENT;
        }
    }
    return 0;
}

int placement_assign_live(const struct lm_meta_state *st, int32_t first, int32_t partitions,
                          int16_t rf, uint32_t start, uint32_t shift, int32_t **out)
{
    *out = NULL;
    struct placement_node *nodes = malloc((st->broker_count + 1) * sizeof(*nodes));
    if (nodes == NULL)
        return LM_E_NOMEM;
    uint32_t n = 0;
    for (size_t i = 0; i < st->broker_count && n < PLACEMENT_NODES_MAX; i++) {
        if (st->brokers[i].fenced)
            continue;
        nodes[n].id = st->brokers[i].id;
        nodes[n].rack = st->brokers[i].rack;
        n++;
    }
    int rc = 0;
    int32_t *ids = NULL;
    if (n == 0)
        rc = LM_E_AGAIN; /* no live node registered yet */
    else if ((ids = malloc((size_t)partitions * (size_t)(rf > 0 ? rf : 1) * sizeof(int32_t))) ==
             NULL)
        rc = LM_E_NOMEM;
    if (rc == 0) {
        int16_t err = placement_assign(nodes, n, first, partitions, rf, start, shift, ids);
        if (err != 0)
            rc = err == KAFKA_INVALID_REPLICATION_FACTOR ? LM_E_FULL : LM_E_INVALID;
    }
    free(nodes);
    if (rc != 0) {
        free(ids);
        return rc;
    }
    *out = ids;
    return 0;
}
