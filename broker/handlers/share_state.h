/* The share-partition state topic, __share_group_state (KIP-932's share coordinator): where a
 * share partition's state goes, its creation, and two fan-outs run by the request handlers of
 * share_fetch.c: appending records to state partitions (answered once durable, acks=-1 as
 * __consumer_offsets commits) and reading a share partition's state back (the latest snapshot
 * and the updates after it, share_records.h); here when this node leads the state partition,
 * else through Kafka's persister APIs (Initialize/Read/Write/DeleteShareGroupState,
 * ReadShareGroupStateSummary) to the node that does, which this file also serves. Where a state
 * partition is led, its appends are fenced as Kafka's share coordinator fences them (older leader
 * or state epochs refused, share_prec).
 *
 * Placement as Kafka's ShareCoordinatorService.partitionFor: the state partition of a share
 * partition is abs(javaHash("groupId:topicId:partition")) % partition count. The topic is made
 * like __consumer_offsets, compacted with no retention: on a single node at the first share
 * group heartbeat or fetch, in a cluster through the controller (replication factor
 * share.coordinator.state.topic.replication.factor, 3, capped by the live nodes). */
#ifndef LAMINAR_BROKER_HANDLERS_SHARE_STATE_H
#define LAMINAR_BROKER_HANDLERS_SHARE_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/group/share_records.h"
#include "broker/handlers/handlers_internal.h"

#define SHARE_STATE_TOPIC     "__share_group_state"
#define SHARE_STATE_TOPIC_LEN (sizeof(SHARE_STATE_TOPIC) - 1)

/* Reads share.coordinator.state.topic.num.partitions (50), ...replication.factor (3) and
 * share.coordinator.snapshot.update.records.per.snapshot (500) into node. 0 or LM_E_CONFIG. */
int share_state_config(struct handlers_ctx *node);

/* The state topic's partition count as this shard sees it, or 0 when it does not exist yet;
 * with create, a missing topic is created (single node: at once, then its count; a cluster:
 * submitted to the controller, 0 until it is there). */
int32_t share_state_partitions(struct hshard *hs, bool create);

/* The state partition of a share partition among n. */
int32_t share_state_partition_for(struct kafka_str group, const uint8_t topic_id[16],
                                  int32_t partition, int32_t n);

/* A batch of records for one state partition: keys and values (value NULL, len -1: a
 * tombstone), in one malloc'd block (mem), freed by share_prec_free. Where the state partition
 * is led, the append is checked against the epochs the share partition's state records there
 * hold (Kafka's ShareCoordinatorShard fencing, lm_shr_fence_*): a state write
 * (SHARE_CHECK_WRITE) with the writer's leader and state epochs, an initialization
 * (SHARE_CHECK_INIT) with its state epoch; a refused one gets FENCED_LEADER_EPOCH or
 * FENCED_STATE_EPOCH and is not appended. */
#define SHARE_PREC_RECORDS_MAX 2
enum { SHARE_CHECK_NONE = 0, SHARE_CHECK_WRITE, SHARE_CHECK_INIT };
struct share_prec {
    int32_t state_partition;
    int32_t n;
    struct {
        const uint8_t *key;
        int32_t key_len;
        const uint8_t *value;
        int32_t value_len;
    } r[SHARE_PREC_RECORDS_MAX];
    uint8_t *mem;
    int8_t check;         /* SHARE_CHECK_* */
    bool next_snapshot;   /* r[0] is a snapshot that gets the next snapshot epoch there */
    int32_t leader_epoch; /* the writer's (-1: not checked) */
    int32_t state_epoch;  /* the writer's (-1: not checked) */
    int64_t start_offset; /* SHARE_CHECK_INIT: the initialization's */
    int16_t error;        /* out: KAFKA_NONE once durable */
};

/* share_prec_state fills pr with one record of share partition (group, topic_id, partition):
 * a snapshot or update (type) with value v, a state write checked with v's leader and state
 * epochs. 0 or LM_E_*. */
int share_prec_state(struct share_prec *pr, int32_t state_partition, struct kafka_str group,
                     const uint8_t topic_id[16], int32_t partition, int16_t type,
                     const struct lm_shr_value *v);
/* share_prec_initialize fills pr with Kafka's InitializeShareGroupState record of a share
 * partition: a snapshot with state_epoch and start_offset (-1: not initialized), leader epoch
 * 0, no batches, the next snapshot epoch. 0 or LM_E_*. */
int share_prec_initialize(struct share_prec *pr, int32_t state_partition, struct kafka_str group,
                          const uint8_t topic_id[16], int32_t partition, int32_t state_epoch,
                          int64_t start_offset, int64_t now_ms);
/* share_prec_tombstones fills pr with the tombstones of both keys of the share partition. */
int share_prec_tombstones(struct share_prec *pr, int32_t state_partition, struct kafka_str group,
                          const uint8_t topic_id[16], int32_t partition);
void share_prec_free(struct share_prec *pr);

/* Appends recs[i] (those with n > 0) to their state partitions, each once durable; then runs
 * done(ctx) on req's shard. A state partition led by another node (a cluster) gets the record as
 * a WriteShareGroupState to that node (tombstones as a DeleteShareGroupState). recs[i].error tells
 * each outcome (NOT_LEADER_OR_FOLLOWER: not written, no leader reachable). The array is borrowed
 * until done. Returns false on arena exhaustion (done not called). */
bool share_persist_start(struct broker_req *req, struct share_prec *recs, size_t n,
                         void (*done)(void *ctx), void *ctx);

/* A share partition whose state to read back. */
struct share_load {
    int32_t state_partition;
    struct kafka_str group;
    uint8_t topic_id[16];
    int32_t partition;
    size_t item;  /* the caller's */
    bool summary; /* the start offset and epochs only (ReadShareGroupStateSummary to another
                   * node: no batches; state->leader_epoch filled) */
    /* a read by the share partition's leader in its leader epoch (else -1 is sent): an older
     * one than the state's records hold is FENCED_LEADER_EPOCH, a newer one is written first
     * (Kafka's ReadShareGroupState) */
    bool with_epoch;
    int32_t leader_epoch;
    struct lm_shr_state *state; /* out, malloc'd (present false: none found); NULL on failure */
    int16_t error;              /* out */
};

/* Reads loads[i]'s states from their state partitions (here, or with a ReadShareGroupState to
 * the node leading one), then runs done(ctx) on req's shard. Returns false on arena exhaustion
 * (done not called). */
bool share_load_start(struct broker_req *req, struct share_load *loads, size_t n,
                      void (*done)(void *ctx), void *ctx);

/* Serves InitializeShareGroupState (83), ReadShareGroupState (84), WriteShareGroupState (85),
 * DeleteShareGroupState (86) and ReadShareGroupStateSummary (87), v0 (Kafka 4.1's): the share
 * coordinator's side of share_persist_start and share_load_start between the nodes of a
 * cluster, and the summaries the share admin calls read. */
int share_state_register(struct broker_dispatch *d);
/* Closes the shard's connections to other nodes' share coordinators (shard stop). */
void share_state_shard_free(struct hshard *hs);

#endif
