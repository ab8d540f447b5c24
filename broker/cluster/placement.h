/* Replica placement for new partitions: which nodes hold each partition's replicas, the first
 * being the preferred leader. Kafka's assignment (AdminUtils.assignReplicasToBrokers, the one
 * CreateTopics and CreatePartitions have used since rack awareness, KIP-36):
 *
 * - Nodes sorted by id (rack-unaware) or interleaved rack by rack (rack-aware: racks sorted,
 *   each rack's nodes sorted, one from each rack in turn).
 * - Partition p's first replica is node (p + start) mod n: leaders go round robin, so every node
 *   leads floor or ceil of partitions / n.
 * - Replica j > 0 sits at a shift from the first that changes every n partitions, so the
 *   followers of one node's partitions spread over all other nodes.
 * - Rack-aware: a follower is skipped while its rack already holds a replica of the partition
 *   and some rack holds none, or its node does and some node holds none.
 * - Racks are used only when every node has one (Kafka's RackAwareMode.Safe); otherwise the
 *   rack-unaware order.
 *
 * Pure: the random start and shift come in as arguments (Kafka draws both at random per call). */
#ifndef LAMINAR_BROKER_CLUSTER_PLACEMENT_H
#define LAMINAR_BROKER_CLUSTER_PLACEMENT_H

#include <stdint.h>

#include "broker/meta/meta_state.h"

struct placement_node {
    int32_t id;
    const char *rack; /* NULL or "": no rack */
};

/* Assigns replicas to partitions first_partition .. first_partition + partitions - 1 (a
 * CreatePartitions continues the numbering, which moves the round robin on as Kafka does).
 * out[i * rf + j] = node id of replica j of partition first_partition + i. nodes need not be
 * sorted; ids must be distinct. start and shift are any values (taken mod the node count).
 * Returns 0, or a Kafka error code: INVALID_PARTITIONS (partitions <= 0 or first_partition < 0),
 * INVALID_REPLICATION_FACTOR (rf <= 0 or rf > nodes), INVALID_REQUEST (no nodes, duplicate ids,
 * more than PLACEMENT_NODES_MAX nodes). */
enum { PLACEMENT_NODES_MAX = 4096 };
int16_t placement_assign(const struct placement_node *nodes, uint32_t node_count,
                         int32_t first_partition, int32_t partitions, int16_t rf, uint32_t start,
                         uint32_t shift, int32_t *out);

/* Checks an explicit assignment (CreateTopics' assignments, CreatePartitions' new ones):
 * partitions x rf node ids, each row without duplicates, every id among nodes. Returns 0 or
 * INVALID_REPLICA_ASSIGNMENT (Kafka's answer to each of those), INVALID_REPLICATION_FACTOR for
 * rf <= 0. */
int16_t placement_check_explicit(const struct placement_node *nodes, uint32_t node_count,
                                 const int32_t *replicas, int32_t partitions, int16_t rf);

/* placement_assign over the registered, unfenced nodes of st (their racks included): *out
 * malloc'd, partitions x rf. Returns 0, LM_E_AGAIN (no live node), LM_E_FULL (rf above the
 * live nodes), LM_E_INVALID or LM_E_NOMEM. */
int placement_assign_live(const struct lm_meta_state *st, int32_t first, int32_t partitions,
                          int16_t rf, uint32_t start, uint32_t shift, int32_t **out);

#endif
