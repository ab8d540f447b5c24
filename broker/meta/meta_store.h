/* The single-node home of cluster metadata: an append-only file of metadata records
 * (<log.dir>/__laminar_metadata/metadata.log), each framed as u32 length, u32 CRC-32C, payload,
 * replayed into an lm_meta_state at open (a torn tail is cut off), and published to readers
 * as immutable, reference-counted snapshots. In a cluster the controller's Raft log takes the
 * file's place; the records and the state machine stay the same. */
#ifndef LAMINAR_BROKER_META_META_STORE_H
#define LAMINAR_BROKER_META_META_STORE_H

#include <stdint.h>

#include "broker/meta/meta_state.h"

#define LM_META_RECORD_BYTES_MAX (1 << 20)

struct lm_meta_store;

/* A read-only view of the state at one version. Take with lm_meta_store_snapshot, give back
 * with lm_meta_snapshot_release; never modified while anyone holds it. */
struct lm_meta_snapshot {
    struct lm_meta_state state;
    int refs; /* atomic */
};

/* lm_meta_store_open opens (creating if needed) the metadata log under dir and replays it.
 * A record with a good CRC that does not decode or apply is skipped, counted and reported
 * (one line on stderr). Returns 0 or LM_E_IO / LM_E_NOMEM. */
int lm_meta_store_open(const char *dir, struct lm_meta_store **out);
/* lm_meta_store_bad_records is how many records the replay at open skipped. */
uint64_t lm_meta_store_bad_records(const struct lm_meta_store *store);
/* lm_meta_store_close frees the store; snapshots still held stay valid until released. */
void lm_meta_store_close(struct lm_meta_store *store);

/* lm_meta_store_commit checks r against the current state, appends it durably (fdatasync),
 * applies it and publishes a new snapshot. Thread-safe (serialised internally). Returns 0 or
 * the lm_meta_state_check error, LM_E_FULL (partition limit) or LM_E_IO. */
int lm_meta_store_commit(struct lm_meta_store *store, const struct lm_meta_record *r);

/* The per-node partition limit (KIP-578's max.broker.partitions): a commit that would raise
 * the total partition count above it fails with LM_E_FULL, checked under the commit lock so
 * concurrent creations cannot pass it together. limit <= 0: none (the default). Replay at
 * open is never limited. */
void lm_meta_store_set_partition_limit(struct lm_meta_store *store, int64_t limit);
int64_t lm_meta_store_partition_limit(const struct lm_meta_store *store);

/* lm_meta_store_snapshot returns the newest snapshot with a reference taken. */
struct lm_meta_snapshot *lm_meta_store_snapshot(struct lm_meta_store *store);
/* lm_meta_store_version is the version of the newest snapshot (cheap: one atomic load), so a
 * shard can tell whether its cached snapshot is stale. */
uint64_t lm_meta_store_version(const struct lm_meta_store *store);
void lm_meta_snapshot_release(struct lm_meta_snapshot *snap);

/* lm_meta_new_topic_id fills id with 16 random bytes (never all zero), for CreateTopics. */
int lm_meta_new_topic_id(uint8_t id[16]);

/* lm_meta_store_alloc_producer_ids reserves `count` producer ids and returns the first in
 * *first; never an id handed out before, even after a crash. On a single node the counter is
 * persisted before returning. In a cluster the ids come from the blocks the controller granted
 * this node (below): LM_E_AGAIN while it holds none (ask again later), LM_E_INVALID for more
 * than LM_META_PRODUCER_BLOCK_IDS at once. */
int lm_meta_store_alloc_producer_ids(struct lm_meta_store *store, int64_t count, int64_t *first);

/* ---- cluster mode ----
 * lm_meta_store_set_cluster switches the store to a cluster node's: the published state is
 * the image of the controller's committed log, built by lm_meta_store_apply in log order
 * (nothing is written locally: the log is the controller's); lm_meta_store_commit refuses
 * with LM_E_STATE (changes go through the controller). Call before any reader starts.
 * Returns 0, LM_E_INVALID (node id beyond 2^22) or LM_E_NOMEM. */
int lm_meta_store_set_cluster(struct lm_meta_store *store, int32_t node_id);
/* Applies one committed record of the controller's log and publishes the new state. Returns 0
 * or the lm_meta_state_apply refusal (the record changes nothing; every node refuses it the
 * same way), LM_E_STATE on a single node, LM_E_NOMEM. */
int lm_meta_store_apply(struct lm_meta_store *store, const struct lm_meta_record *r);
/* Empties the cluster image (a snapshot is loaded next) and publishes it with a higher
 * version. LM_E_STATE on a single node. */
int lm_meta_store_reset_image(struct lm_meta_store *store);
/* With hold set, lm_meta_store_apply and lm_meta_store_reset_image change the image without
 * publishing it; clearing hold publishes the result once (keep) or puts back the image the hold
 * began with (!keep: a rebuild that failed half way). A rebuild from a snapshot (reset, then
 * every record) runs held: a shard that looked in between would take the topics not yet
 * replayed for deleted, and remove their partitions' data. Returns 0 or LM_E_NOMEM. */
int lm_meta_store_hold(struct lm_meta_store *store, bool hold, bool keep);
/* lm_meta_state_check against the published state. */
int lm_meta_store_check(struct lm_meta_store *store, const struct lm_meta_record *r);
/* Producer ids in a cluster: the controller grants each node blocks of
 * LM_META_PRODUCER_BLOCK_IDS ids (PRODUCER_ID_BLOCK records), so no two nodes, and no two
 * processes of one node, ever hand out the same id, whatever happened to their disks (Kafka's
 * AllocateProducerIds). A node holds the block it hands ids out of and one spare; a block is
 * never used by a later process (a restart asks for new ones).
 * lm_meta_store_producer_block_wanted: true when the node has no spare and is not asking
 * already; *r is then the record to submit (the next block of the image as this node sees
 * it), and the answer goes to lm_meta_store_producer_block_answer (rc 0: committed and
 * applied, the block is the node's). The answer returns true when the ask lost to another
 * node's block the image shows now: ask again at once. */
#define LM_META_PRODUCER_BLOCK_IDS 10000
bool lm_meta_store_producer_block_wanted(struct lm_meta_store *store, struct lm_meta_record *r);
bool lm_meta_store_producer_block_answer(struct lm_meta_store *store, int rc);
/* The node id given to lm_meta_store_set_cluster, or -1 on a single node. */
int32_t lm_meta_store_cluster_node(const struct lm_meta_store *store);

#endif
