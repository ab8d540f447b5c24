/* Private to txn_shard.c and txn_api.c: the transaction coordinator in the broker.
 *
 * Placement, as the group coordinator's: one lm_txn_coord (broker/txn/) per shard, holding the
 * transactional ids of the __transaction_state partitions that shard owns
 * (broker_partition_shard). Requests are decoded on the connection's shard and carried to the
 * owner of the id's partition by a cross-shard call (struct top); the answer comes back the
 * same way once the coordinator produced it, which for a state change is after its record
 * was committed to __transaction_state (write before answer). Transaction markers go to the
 * shard owning each partition (struct in txn_shard.c), which appends them as WriteTxnMarkers
 * does and reports back when they are committed. */
#ifndef LAMINAR_BROKER_HANDLERS_TXN_INTERNAL_H
#define LAMINAR_BROKER_HANDLERS_TXN_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/handlers/handlers_internal.h"
#include "broker/txn/txn_coord.h"

#define TXN_STATE_TOPIC     "__transaction_state"
#define TXN_STATE_TOPIC_LEN (sizeof(TXN_STATE_TOPIC) - 1)

enum top_kind { TOP_INIT = 1, TOP_ADD, TOP_ADD_OFFSETS, TOP_END, TOP_DESCRIBE, TOP_LIST };

/* One call to the coordinator of one transactional id, in the request's arena. The inputs'
 * strings point into the decoded request. The owner shard writes the outputs (arrays
 * allocated by the origin beforehand) and returns the call. */
struct top {
    struct broker_xcall x;
    struct broker_req *req;
    uint32_t owner;
    uint8_t kind; /* enum top_kind */
    union {
        struct lm_txn_init_req init;
        struct lm_txn_add_req add;
        struct lm_txn_add_offsets_req add_offsets;
        struct lm_txn_end_req end;
    } in;
    /* outputs */
    int16_t error_code;
    int64_t producer_id;
    int16_t producer_epoch;
    int16_t *part_errors; /* ADD: one per in.add.partitions */
    /* DESCRIBE: a copy of the id's state, strings in the request's arena */
    bool found;
    struct lm_txn_info info;
    /* LIST: filled by txn_api.c's callback on the owner shard */
    void (*list_fn)(struct top *op, const struct lm_txn_info *info);
    void *list_ctx;
    bool nomem;
    /* runs on the origin shard once the call returned */
    void (*finish)(struct top *op);
    /* the node to send a verify-only AddPartitionsToTxn to, -1: this node's coordinator */
    int32_t remote_node;
};

/* Shard lifecycle (hs_shard.c): start loads the owned __transaction_state partitions (single
 * node), drain answers the waiting calls NOT_COORDINATOR, stop frees. */
int txn_shard_start(struct hshard *hs);
/* Loads the shard's __transaction_state partitions this node came to lead (a single node:
 * each once the topic exists and the partition is open) and unloads the others (called by the
 * shard tick). */
void txn_cluster_sync(struct hshard *hs);
/* A single node: creates __transaction_state when missing (the first FindCoordinator of a
 * transactional id, as Kafka); *created tells whether this call did. */
int txn_state_topic_create(struct hshard *hs, bool *created);
/* The creation record of __transaction_state for rf replicas (compact, no retention,
 * min.insync.replicas = transaction.state.log.min.isr capped at rf), without assignment; its
 * configs live in *sc, which must outlive r's use. */
struct txn_topic_scratch {
    struct lm_config_entry configs[4];
    char min_isr[12];
};
int txn_state_topic_record(const struct handlers_ctx *node, int16_t rf,
                           struct txn_topic_scratch *sc, struct lm_meta_record *r);
void txn_shard_drain(struct hshard *hs);
void txn_shard_stop(struct hshard *hs);

/* txn_call sends op to its owner shard (op->owner), which runs it on its coordinator. */
void txn_call(struct top *op);
/* txn_owner_of returns the shard of the id's __transaction_state partition. */
uint32_t txn_owner_of(struct hshard *hs, struct kafka_str transactional_id);

/* producer_alloc_id hands out a new producer id from the shard's block (producer_idem.c). */
int producer_alloc_id(struct hshard *hs, int64_t *out);

/* Registers AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, DescribeTransactions and
 * ListTransactions (txn_api.c); reads the transaction configs and creates
 * __transaction_state (txn_shard.c: txn_setup). */
int txn_api_register(struct broker_dispatch *d);
int txn_setup(struct handlers_ctx *node);
/* The transactional half of InitProducerId (txn_api.c), called by producer_idem.c. */
void txn_init_producer_id(struct broker_req *req, struct kafka_str transactional_id,
                          int32_t timeout_ms, int64_t producer_id, int16_t producer_epoch);

/* KIP-890 part 1: the transactional batches of a Produce (items on the request's shard, before
 * the fan-out) are checked with the coordinator of transactional_id (AddPartitionsToTxn
 * verify_only; over the network when it is on another node): a partition not added to the
 * producer's ongoing transaction is refused (INVALID_TXN_STATE), so a late or stray batch cannot
 * open a transaction the coordinator does not know of. Returns true when a check was started: it
 * starts f itself once the answer is in; false when nothing needs checking (the caller starts f).
 */
bool txn_produce_verify(struct broker_req *req, struct kafka_str transactional_id,
                        struct hwork *items, size_t n, struct hfan *f);
/* The shard's cache of partitions added to transaction version 2 transactions (txn_added.h),
 * NULL when it cannot be had (out of memory, stopping). */
struct txn_added *txn_shard_added(struct hshard *hs);
/* Its lookups so far: misses (asked the coordinator) and hits (skipped); unchanged when none. */
void txn_shard_added_counts(struct hshard *hs, uint64_t *asked, uint64_t *skipped);
/* KIP-890 part 2: TxnOffsetCommit v5+ of a transaction version 2 client adds the group's
 * __consumer_offsets partition to the transaction itself (there is no AddOffsetsToTxn): the
 * coordinator of transactional_id is asked (here or over the network), then done(ctx, error)
 * runs on the request's shard with 0 or the TxnOffsetCommit error to answer. Returns false
 * when nothing was started (out of memory, a bad id): the caller answers itself. */
bool txn_offsets_add(struct broker_req *req, struct kafka_str transactional_id, int64_t pid,
                     int16_t epoch, struct kafka_str group_id,
                     void (*done)(void *ctx, int16_t error_code), void *ctx);
/* txn_coordinator_node returns the node leading the id's __transaction_state partition in the
 * shard's metadata (this node on a single node), -1 when unknown. */
int32_t txn_coordinator_node(struct hshard *hs, struct kafka_str transactional_id);
/* txn_remote_verify sends op (an AddPartitionsToTxn of a partition leader) to the coordinator
 * on node as AddPartitionsToTxn v4 with verify_only, or v5 without it for an implicit add of
 * transaction version 2 (Kafka's AddPartitionsToTxnManager); op->part_errors are filled and
 * op->finish runs on this shard when the answer (or a failure: COORDINATOR_NOT_AVAILABLE) is
 * in. Returns 0, or an LM_E_* with nothing sent. */
int txn_remote_verify(struct top *op, int32_t node);

#endif
