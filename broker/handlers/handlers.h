/* The Kafka request handlers of the broker (DESIGN.md §5), on top of the shard runtime
 * (broker/runtime.h), the generated codec (protocol/), storage (storage/) and the metadata
 * store (broker/meta/). This header is the contract between the handler files:
 *   handlers.c        setup, served-version table, ApiVersions, per-shard state, topic
 *                     reconciliation (opening/closing partition logs a shard owns)
 *   data_*.c          Metadata, Produce, Fetch, ListOffsets, OffsetForLeaderEpoch, DeleteRecords
 *   admin_*.c         CreateTopics, DeleteTopics, CreatePartitions, configs, DescribeCluster
 *   group_*.c         coordinator APIs, InitProducerId
 * Each group of files registers its APIs through handlers_serve() from its *_register(). */
#ifndef LAMINAR_BROKER_HANDLERS_HANDLERS_H
#define LAMINAR_BROKER_HANDLERS_HANDLERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/group/group.h"
#include "broker/group/cgroup.h"
#include "broker/group/sgroup.h"
#include "broker/group/share_partition.h"
#include "broker/txn/txn_coord.h"
#include "broker/meta/meta_store.h"
#include "broker/runtime.h"

/* Idempotent / transactional producer state plugs into Produce here. Both run on the
 * shard that owns the partition, for the batches of one partition of one Produce request,
 * after validation. before_append returns a Kafka error code: 0 appends; a duplicate batch
 * (PROTOCOL-NOTES: answered as success with its original offset) returns 0 and sets
 * *duplicate_base_offset >= 0, and nothing is appended. after_append gets the assigned base
 * offset. NULL hooks: no producer state (every batch appended as it comes). */
struct hshard;
struct handlers_producer_hooks {
    int16_t (*before_append)(struct hshard *hs, const char *topic, int32_t partition,
                             const uint8_t *batches, size_t len, int64_t *duplicate_base_offset);
    void (*after_append)(struct hshard *hs, const char *topic, int32_t partition,
                         const uint8_t *batches, size_t len, int64_t base_offset);
};

#define HANDLERS_PART_BUCKETS 1024
struct hepoch;
struct hoffline;

/* One broker node: the state its shards share (struct hshard holds each shard's own). Created
 * by broker_handlers_setup (dispatch->ctx), freed by dispatch->teardown; several nodes can
 * live in one process. Read-only after setup, except the metadata store (internally
 * synchronised; not on the data path) and the two partition tables below (their own locks). */
struct controller;

#define HANDLERS_GAUGE_SHARDS 128 /* broker/shard_internal.h BROKER_SHARDS_MAX */
/* The upper bounds of the group-commit fsync time histogram (laminar_log_flush_seconds), in
 * microseconds; one more bucket counts the rest (+Inf). Fine below a millisecond, where an
 * fdatasync of a few pages lands. */
#define HANDLERS_FLUSH_BOUNDS_US                                                                   \
    50, 100, 150, 200, 300, 400, 500, 750, 1000, 1500, 2000, 3000, 5000, 7500, 10000, 20000,       \
        50000, 100000, 250000, 1000000
enum { HANDLERS_FLUSH_BUCKETS = 21 };
/* Node ids whose liveness the node-pair pings track (a node with a higher id is never taken as
 * silent: its quiescent followers wait for its fence, as before the pings). */
#define HANDLERS_ALIVE_NODES     1024
#define HANDLERS_PART_GAUGES_MAX 1024 /* partitions with their own series, per shard */

struct handlers_ctx {
    struct broker_config *cfg;
    struct lm_meta_store *meta;
    /* The controller group (broker/cluster/controller.h) when controller.quorum.voters is
     * set: the metadata comes from its log and every partition has an assigned node. NULL on
     * a single node. */
    struct controller *ctl;
    char cluster_id[32]; /* base64url of 16 random bytes, persisted next to the metadata */
    /* The versions we serve per API key: what ApiVersions advertises. A key with max < 0 is
     * not served. Filled by handlers_serve(). */
    struct {
        int16_t min_version, max_version;
    } served[BROKER_API_KEYS_MAX];
    /* The handler of each served key (handlers_serve); the runtime calls one dispatcher that
     * refreshes the shard's metadata view and checks the version first. */
    broker_handler_fn fns[BROKER_API_KEYS_MAX];
    struct handlers_producer_hooks producer; /* set at registration, read-only afterwards */
    /* Broker-level values of topic configs (server.properties synonyms), for
     * lm_topic_settings_resolve. */
    struct lm_config_entry *broker_topic_configs;
    size_t broker_topic_config_count;
    /* The group coordinator's settings (group_coord.c) and producer.id.expiration.ms. */
    struct lm_group_config group_cfg;
    struct lm_cgroup_config cgroup_cfg; /* consumer-protocol groups (KIP-848) */
    struct lm_sgroup_config sgroup_cfg; /* share groups (KIP-932) */
    struct lm_share_config share_cfg;   /* share partitions (KIP-932) */
    /* __share_group_state (share_state.c): share.coordinator.state.topic.num.partitions (50),
     * ...replication.factor (3), share.coordinator.snapshot.update.records.per.snapshot (500) */
    int32_t share_state_partitions;
    int32_t share_state_rf;
    int32_t share_snapshot_every;
    struct lm_txn_config txn_cfg; /* the transaction coordinator's (txn_shard.c) */
    /* transaction.partition.verification.enable (true): a transactional Produce is checked
     * with the coordinator before its first write to a partition (KIP-890 part 1) */
    bool txn_verify_partitions;
    int64_t producer_expiration_ms;
    uint64_t producer_checkpoint_bytes; /* laminar.producer.checkpoint.bytes */
    /* Leader epochs other than the first, and offline partitions, for every shard (Metadata is
     * answered on the request's shard, the partition lives on its owner): chained hashes,
     * each under its lock, looked at only while their count is not 0. */
    pthread_mutex_t epoch_lock;
    struct hepoch **epoch_buckets; /* epoch_nb chains (HANDLERS_PART_BUCKETS at first), doubled
                                    * past two entries per chain: nearly every partition has an
                                    * entry once its leadership moved (100,000 in a cluster) */
    size_t epoch_nb;
    uint32_t epoch_count; /* atomic */
    pthread_mutex_t offline_lock;
    struct hoffline *offline_buckets[HANDLERS_PART_BUCKETS];
    uint32_t offline_count; /* atomic */
    /* controller_mutation_rate sensors (hs_quota.c): one table for the node, as Kafka counts
     * mutations where its controller is, under its lock (topic changes are rare); made on
     * first use */
    pthread_mutex_t mutation_lock;
    struct lm_quota_table mutation_quota;
    /* Controlled shutdown (hs_cluster.c), all atomic: set on SIGTERM; the leaderships the
     * shards still hold; how many shards have counted theirs; the shards running. */
    /* Per node id (below HANDLERS_ALIVE_NODES), atomic: when any shard last received a
     * NODE_PING or a raft message from that node (hs_node_heard), 0 never. Quiescent
     * partitions go by it (hs_node_silent). */
    uint64_t node_alive_ms[HANDLERS_ALIVE_NODES];
    bool handoff;
    int32_t handoff_led;
    uint32_t handoff_shards;
    uint32_t shard_count;
    /* SASL listeners' mechanisms and PLAIN users (sasl_api.c); read-only after setup */
    struct sasl_node *sasl;
    /* The metadata log was empty when this process opened it (a first start: where
     * laminar.scram.credentials applies, as kafka-storage format --add-scram does) */
    bool meta_fresh;
    /* The ACL authorizer's settings (authorizer.class.name, super.users,
     * allow.everyone.if.no.acl.found); read-only after setup */
    struct authz_config authz;
    /* Each shard's partition counts for /metrics, stored (atomic) at the end of its tick and
     * summed by the scrape: replicas here, those led here, led here with fewer replicas in
     * sync than assigned (Kafka's UnderReplicatedPartitions) and with fewer than
     * min.insync.replicas (UnderMinIsrPartitionCount); its incremental fetch sessions, the
     * partitions they cache and the evictions so far (FetchSessionCache). */
    struct handlers_shard_gauges {
        uint32_t replicas, leaders, under_replicated, under_min_isr;
        uint32_t quiescent; /* replicated partitions whose Raft group is quiescent here */
        /* storage of the open logs, and the records appended but not committed (log end -
         * high watermark: waiting for replication or the group-commit fsync) */
        uint64_t segments, log_bytes, commit_lag, commit_lag_max;
        uint64_t open_us, opens, compact_steps, flushes, flush_us; /* running totals */
        uint64_t flush_hist[HANDLERS_FLUSH_BUCKETS]; /* flushes by time (not cumulative) */
        uint32_t fetch_sessions;
        uint64_t fetch_session_partitions, fetch_session_evictions;
        uint64_t producer_ids; /* idempotent producers held over the shard's partitions */
        /* transactional batches of Produce v12+: partitions the coordinator was asked
         * about, and those already known added (txn_added.h) */
        uint64_t txn_checks_asked, txn_checks_skipped;
        /* append messages with batches sent to followers, and their batch bytes: as slices
         * of the log files (zero-copy) or read first (copy) */
        uint64_t repl_apps_zc, repl_bytes_zc, repl_apps_copy, repl_bytes_copy;
    } shard_gauges[HANDLERS_GAUGE_SHARDS];
    /* Per-partition gauges of each shard (NULL until the shard starts; freed with the node,
     * after the HTTP thread stopped): a slot per partition the shard has held, claimed at its
     * first tick and written at every tick; a scrape shows the slots written at the shard's
     * last two ticks. Past the table's size, partitions are counted in `untracked`. */
    struct handlers_part_gauges {
        uint32_t tick; /* the shard's tick count, stored after its slots */
        uint32_t used, untracked;
        struct handlers_part_slot {
            uint8_t ready; /* release-stored once topic/partition are written */
            uint8_t topic_len;
            char topic[250];
            int32_t partition;
            uint32_t tick;          /* the shard tick that last wrote it */
            int32_t leader_epoch;   /* Raft term */
            int32_t leader;         /* node id, -1 none */
            int64_t commit_lag;     /* log end - high watermark */
            int64_t epoch_since_ms; /* wall clock when this node first saw leader_epoch */
        } slots[HANDLERS_PART_GAUGES_MAX];
    } * part_gauges[HANDLERS_GAUGE_SHARDS];
};

/* handlers_serve registers fn for api_key and records [min_version, max_version] as served
 * (advertised by ApiVersions). The range must lie inside the generated codec's range; a
 * request outside it is answered by the runtime-independent helper
 * handlers_respond_unsupported. Returns 0 or LM_E_INVALID. */
int handlers_serve(struct broker_dispatch *d, int16_t api_key, int16_t min_version,
                   int16_t max_version, broker_handler_fn fn);

/* Registration functions of each group of handler files. */
int handlers_data_register(struct broker_dispatch *d);
int handlers_admin_register(struct broker_dispatch *d);
/* Fills ApiVersions v3+'s supported and finalized features (admin_features.c) in req's arena.
 * Returns 0 or LM_E_NOMEM. */
struct kafka_api_versions_response;
int handlers_admin_features_fill(struct broker_req *req, struct kafka_api_versions_response *rs);
/* Group coordinator APIs, InitProducerId, DescribeProducers and the Produce producer-state
 * hooks (group_*.c, producer_*.c); creates __consumer_offsets when missing. */
int handlers_group_register(struct broker_dispatch *d);

/* Called by broker/main.c: creates the node (d->ctx), opens the metadata store under the first
 * log dir, registers every handler. Returns 0 or an LM_E_* (then nothing is left allocated).
 * d->teardown frees the node once the runtime has stopped. */
int broker_handlers_setup(struct broker_dispatch *d, struct broker_config *cfg);

/* Answers req as Kafka answers a version it does not serve: UNSUPPORTED_VERSION in the
 * response's top-level error code when the API has one in that version (ApiVersions: a v0 body
 * listing our ranges, KIP-511), else the connection is closed. Completes req. */
void handlers_respond_unsupported(struct broker_req *req);

#endif
