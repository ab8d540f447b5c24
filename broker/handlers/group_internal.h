/* Private to handlers.c, group_*.c and producer_*.c: the per-shard state of the group
 * coordinator (broker/group/) and of idempotent producers (broker/producer/), and the shard
 * lifecycle hooks handlers.c calls.
 *
 * Placement: one lm_group_coord per shard. A shard's coordinator has loaded exactly
 * the __consumer_offsets partitions that shard owns (broker_partition_shard); the others are
 * unloaded in it, so a request routed to the wrong shard would get NOT_COORDINATOR. Group
 * requests are decoded on the connection's shard, translated to lm_group_* requests in the
 * request's arena and sent with a cross-shard call to the owner of the group's partition;
 * requests naming several groups (DescribeGroups, DeleteGroups, OffsetFetch v8+, ListGroups)
 * send one call per group (per shard for ListGroups) one after another, so only one shard at a
 * time touches the request's arena. Records the coordinator emits are appended to the owned
 * __consumer_offsets partition and flushed before any response of the same ready leaves
 * (persist before send). */
#ifndef LAMINAR_BROKER_HANDLERS_GROUP_INTERNAL_H
#define LAMINAR_BROKER_HANDLERS_GROUP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "broker/handlers/handlers_internal.h"
#include "protocol/record_batch.h"

#define GROUP_OFFSETS_TOPIC     "__consumer_offsets"
#define GROUP_OFFSETS_TOPIC_LEN (sizeof(GROUP_OFFSETS_TOPIC) - 1)

/* Called by handlers.c on each shard: after the shard's first metadata refresh (loads the
 * owned __consumer_offsets partitions), at drain (answers parked joins/syncs), at flush
 * (producer-state snapshots) and at stop (frees). start returns 0 or an LM_E_*. */
int group_shard_start(struct hshard *hs);
void group_shard_drain(struct hshard *hs);
void group_shard_flush(struct hshard *hs);
void group_shard_stop(struct hshard *hs);
/* Called by handlers.c on the owner shard when a partition's log opened again after a storage
 * failure: its producer state is rebuilt from the log on next use (recovery may have cut what
 * memory still holds), and a __consumer_offsets partition's groups are loaded again. */
void group_partition_reopened(struct hshard *hs, const struct hpart *p);
/* A cluster: loads the shard's __consumer_offsets partitions whose replica became this
 * node's and unloads the others (called by the shard tick). */
void group_cluster_sync(struct hshard *hs);
/* Reads an integer config key into *out when set (marked used), checking [min, max];
 * LM_E_CONFIG (logged) when it does not parse or is out of range. */
int group_config_i64(struct broker_config *cfg, const char *key, int64_t min, int64_t max,
                     int64_t *out);
/* Creates a coordinator's topic (compact, no retention) with want partitions on a single node
 * when missing and `create`; *have gets the partitions it has (an existing topic keeps its
 * count; count_key names the config in the warning), want while it does not exist. A cluster:
 * nothing here, *have = want. */
int group_internal_topic_ensure(struct lm_meta_store *meta, const char *topic,
                                const char *count_key, int32_t want, bool create, int32_t *have);
/* The creation record of __consumer_offsets (compact, no retention), without assignment. */
int group_offsets_topic_record(const struct handlers_ctx *node, struct lm_meta_record *r);

/* ---- producer_*.c ---- */

/* Per-shard producer side: state of the idempotent producers of each owned partition, loaded
 * lazily (snapshot + log replay) on first use. */
struct pshard;
int producer_shard_start(struct hshard *hs, struct pshard **out);
void producer_shard_flush(struct pshard *ps);
/* The producers the shard holds state of, over all its partitions. */
uint64_t producer_shard_count(const struct pshard *ps);
void producer_shard_stop(struct pshard *ps);
/* How often the group timer runs producer_shard_expire: 10 s, or half of
 * producer.id.expiration.ms when that is shorter (at least 100 ms). */
int64_t producer_expire_period_ms(const struct hshard *hs);
/* Forgets idle producers (producer.id.expiration.ms) and drops the state of partitions this
 * shard no longer has; called from the group timer. */
void producer_shard_expire(struct pshard *ps, int64_t now_ms);
/* Drops the producer state of one partition (rebuilt from snapshot + log on next use). */
void producer_partition_reset(struct pshard *ps, const uint8_t topic_id[16], int32_t partition);
/* The shard tick's visit of partition p (log open): advances the shard's producer-state
 * checkpoint of the committed, durable log (producer_idem.c) when p grew enough since its last
 * one, a bounded step per call. */
void producer_partition_tick(struct pshard *ps, struct hpart *p);
/* In a cluster: asks the controller for a block of producer ids when the node holds no spare
 * (lm_meta_store_producer_block_wanted); called by the shard tick and after each block a
 * shard takes, so that a block is ready before InitProducerId needs it. */
void producer_ids_refill(struct hshard *hs);
/* Registers InitProducerId and DescribeProducers and the Produce hooks. */
int producer_register(struct broker_dispatch *d);
/* Transaction markers on partition p (owner shard): whether a marker of producer_id at epoch
 * from coordinator_epoch may be appended (lm_producer_check_marker; KAFKA_STORAGE_ERROR when
 * the state cannot be loaded), and, once appended, its effect on the producer state. */
int16_t producer_marker_check(struct hshard *hs, const struct hpart *p, int64_t producer_id,
                              int16_t epoch, int32_t coordinator_epoch);
void producer_marker_appended(struct hshard *hs, const struct hpart *p, int64_t producer_id,
                              int16_t epoch, int32_t coordinator_epoch);
/* A transaction marker of producer_id was committed on partition p (owner shard): when p is a
 * __consumer_offsets partition, its groups' pending transactional offsets are settled. */
void group_txn_marker(struct hshard *hs, const struct hpart *p, int64_t producer_id, bool commit);
/* Registers WriteTxnMarkers (txn_markers.c). */
int txn_markers_register(struct broker_dispatch *d);

/* Calls fn for every batch of log from offset `from` on, in order (whole batches read back
 * with pread; the first may start before from). Returns 0, fn's error or a storage error. */
typedef int (*group_batch_fn)(void *ctx, const uint8_t *batch, size_t len,
                              const struct kafka_batch_header *h);
int group_log_scan(struct storage_log *log, int64_t from, group_batch_fn fn, void *ctx);
/* group_log_scan over the batches that end before `to`, stopping once about max_bytes were
 * scanned (whole 1 MiB reads); *next (may be NULL) gets the offset after the last batch
 * scanned, where a later call goes on. */
int group_log_scan_range(struct storage_log *log, int64_t from, int64_t to, uint64_t max_bytes,
                         group_batch_fn fn, void *ctx, int64_t *next);

/* The wall clock in ms, never going backwards within the process (persisted timestamps:
 * commit times, producer last-update times). */
int64_t group_now_ms(struct hshard *hs);

#endif
