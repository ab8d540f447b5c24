/* One partition: its storage log, its Raft group, the high watermark and the waiters on them
 * (DESIGN.md §4). A single node is the same code with one voter.
 *
 * Pure of the shard runtime: time comes in as now_ms, fsyncs go out through env->sync (the
 * broker hands them to broker_shard_fsync; a test completes them at once or later) and come back
 * through partition_sync_done, raft messages go out through env->send and come in through
 * partition_step. Completions are callbacks with a user pointer.
 *
 * The drive step (partition_drive, run after every input): raft ready -> write its entries
 * (the leader's own batches are already in storage: storage_log_append_leader wrote them when
 * they were proposed, so "persist" is only the fsync up to there; a follower's entries are
 * written with storage_log_append_follower after truncating a divergent tail; the NOOP of a new
 * term becomes a LeaderChange control batch) -> send messages (append descriptors resolved
 * against this log) -> one group-commit fsync for everything written -> raft_persisted ->
 * high watermark = raft commit + 1 (its only writer) -> waiters completed in offset order.
 *
 * acks=1 completes when the leader's append is in storage (page cache); acks=all when the
 * high watermark passes the batch, which for one voter is the local fsync. A lone voter's
 * acks=0/1 batches are visible (high watermark) at the append, as Kafka's with an ISR of one,
 * and reach the disk with the next fsync: an acks=all waiter's, flush.ms/flush.messages', or
 * the one that half a ring of readies not yet durable starts (raft's unstable tail stays
 * bounded). */
#ifndef LAMINAR_BROKER_PARTITION_PARTITION_H
#define LAMINAR_BROKER_PARTITION_PARTITION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/partition/raft_storage_log.h"
#include "consensus/raft.h"
#include "storage/storage.h"

struct partition;

/* Who appends (Kafka's AppendOrigin, ReplicaManager.appendRecords). */
enum partition_origin {
    PARTITION_ORIGIN_CLIENT = 0,  /* Produce: no internal topics, no control batches */
    PARTITION_ORIGIN_COORDINATOR, /* group/transaction coordinators: internal topics, markers */
    PARTITION_ORIGIN_REPLICATION, /* a follower's write of the leader's batches (raft only) */
};

/* A slice of one of this partition's log files (partition_env.send_app). */
struct partition_slice {
    int fd; /* the owner's: a dup(), closed by the owner once sent */
    uint64_t offset;
    size_t len;
};

/* What the owner supplies. */
struct partition_env {
    void *ctx;
    /* Make fds[0..n) durable (fsync where full[i], else fdatasync), then call
     * partition_sync_done(p, first error) (may be called from inside this call). */
    void (*sync)(void *ctx, struct partition *p, const int *fds, const bool *full, uint32_t n);
    /* Send one raft message (borrowed for the call; APP entries resolved). May be NULL for a
     * single voter. */
    void (*send)(void *ctx, struct partition *p, const struct raft_msg *m);
    /* Optional, zero-copy: send an APP whose entries carry no bytes (data NULL, len set), their
     * bytes being slices[0..n) back to back, in entry order: whole batches of this log,
     * sent from the files without reading them (raft_wire_encode_head then the slices). Used
     * for appends of data batches only; control batches, and anything that does not resolve
     * so, go through send with their bytes read. Takes the slices' fds in every case. Returns
     * 0, or an error when it could not send (then send is tried). */
    int (*send_app)(void *ctx, struct partition *p, const struct raft_msg *m,
                    struct partition_slice *slices, uint32_t n);
    /* Optional: replace the hard-state file dir/name with line[0..n) durably
     * (state_file_write: in place, in the file's other slot, fdatasync) off the
     * caller's thread, then call partition_state_done(p, its result) on the partition's
     * thread (may be called from inside this call). The strings are the partition's, valid
     * until then; one write at a time per partition (later term/vote changes wait in the
     * partition, only the latest is written). Raft hears of the readies that changed term or
     * vote (raft_persisted), and so sends what depends on them (vote answers, RequestVote,
     * anything of the new term), only once the write is durable. The owner must not close the
     * partition while a write runs. NULL: written synchronously in the drive step. */
    void (*write_state)(void *ctx, struct partition *p, const char *dir, const char *name,
                        const char *line, int n);
};

struct partition_config {
    const char *dir;               /* the partition directory (storage_partition_dir) */
    struct storage_config storage; /* copied; external_sync is forced on */
    uint32_t node_id;
    uint64_t group;          /* raft group id on the wire */
    struct raft_conf voters; /* the replica set (voters) */
    /* The group may gain members (a reassignment of a partition of one replica): a lone voter
     * does not resume leadership as such (it elects itself at open, and its configuration can
     * change); a node outside the voters may open. */
    bool may_grow;
    bool internal_topic; /* __consumer_offsets, __transaction_state: coordinator only */
    uint32_t tick_ms;    /* one raft tick */
    uint32_t election_ticks, heartbeat_ticks;
    uint64_t rand_seed;
    uint32_t waiters_max;     /* acks=all and "persisted >= X" waiters, each */
    uint32_t watchers_max;    /* fetch watchers */
    size_t resolve_bytes_max; /* batch bytes resolved for one append message */
    /* Write caching (the topic's write.caching): this replica counts an entry towards the
     * commit, and acknowledges it to its leader, once it is written to the page cache rather
     * than once it is fsynced; the fsync follows the storage flush policy (flush.ms).
     * acks=all then means a majority holds the batch in memory, Kafka's own guarantee: it
     * survives process crashes, and the loss of a minority of machines, but not a power loss
     * of a majority before their next flush. Term, vote and log start stay durable first. */
    bool write_caching;
    /* Quiescence (consensus/raft.h, "QUIESCENCE"): a leader with everything replicated, no
     * waiter, no fsync under way and no read lease asked for within quiesce_read_ms stops
     * heartbeating, and its followers stop their election timers, until something wakes the
     * group. The owner must then call partition_wake on a quiescent follower whose leader's
     * node it has lost (README.md, "Quiescence"). */
    bool quiesce;
    uint32_t quiesce_read_ms;
    struct raft_stats *raft_stats; /* election counters (raft_config.stats); may be NULL */
};

/* Fills defaults: 100 ms ticks, election 10 / heartbeat 1 ticks, 1024 waiters, 1024 watchers,
 * 8 MiB resolve buffer, storage defaults. dir, node_id and voters are left to the caller. */
void partition_config_default(struct partition_config *cfg);

/* The result an append completion gets. */
struct partition_append_info {
    int64_t base_offset;
    int64_t last_offset;
    int32_t leader_epoch;
    int64_t log_start_offset;
};
/* err: 0, or LM_E_STATE (leadership lost before commit: NOT_LEADER_OR_FOLLOWER), LM_E_IO
 * (the log failed: KAFKA_STORAGE_ERROR), LM_E_CLOSED (partition closed). */
typedef void (*partition_append_fn)(void *user, int err, const struct partition_append_info *info);
/* Watch completions: err 0 when the high watermark reached the target, else as above. */
typedef void (*partition_watch_fn)(void *user, int err, int64_t high_watermark);

/* Opens (recovering storage) and starts the raft node: term = max(quorum-state file, latest
 * leader epoch), commit = the checkpointed high watermark - 1. A single voter campaigns at once
 * (it wins with a higher term). env is copied. *out owned by the caller (partition_close). */
int partition_open(const struct partition_config *cfg, const struct partition_env *env,
                   int64_t now_ms, struct partition **out);
/* Fails every waiter with LM_E_CLOSED, closes the storage log (a final flush) and frees p.
 * Returns the close's error. An fsync or hard-state write handed out must have completed. */
int partition_close(struct partition *p);
/* partition_close for a partition whose directory is removed next (a deleted topic's): no
 * final flush, unless storage cannot close the log without one (a compaction running). */
int partition_close_discard(struct partition *p);
/* Closes an idle lone voter without flushing (the broker's open-log budget): what is not
 * durable stays in the page cache and the next open recovers it, as after a crash of the
 * process, which for one voter loses nothing raft relies on (the next open commits the log it
 * finds). Returns LM_E_STATE, leaving p open, when p has other voters, an fsync in flight or
 * any waiter or watcher, or storage_log_close_unsynced's refusal; 0 when p is freed. */
int partition_close_unsynced(struct partition *p);
/* Closes the descriptors of p's log while it is idle, keeping p, its Raft group and its log
 * open (storage_log_release_fds: the next read, append or sync reopens them by path; unsynced
 * bytes stay the files' dirty pages for the next fsync). For the open-log budget of
 * partitions that cannot be closed (other voters). Returns 0 or LM_E_STATE (a group commit in
 * flight, a read result held, a compaction running, or a failed log). */
int partition_release_fds(struct partition *p);

/* Appends batches (buf rewritten in place: offsets, partitionLeaderEpoch = the raft term) as
 * the leader. acks: 0 or 1 complete before returning, -1 once committed. Returns 0 (done is
 * called, maybe later) or, without calling done: LM_E_STATE (not the leader, or handing its
 * leadership over), LM_E_INVALID (internal topic or control batch from a client, REPLICATION
 * origin), LM_E_FULL (too many acks=all waiters), LM_E_AGAIN (a new leader's first entry not
 * written yet), LM_E_IO, or a batch check error. */
int partition_append(struct partition *p, enum partition_origin origin, uint8_t *buf, size_t len,
                     int acks, partition_append_fn done, void *user);
/* Reads like storage_log_read, up to the high watermark when committed_only (consumers) or the
 * log end (replicas, tools). Release with partition_read_release. */
int partition_read(struct partition *p, int64_t offset, uint64_t max_bytes, bool committed_only,
                   struct storage_read_result *res);
/* Reads as partition_read for a read_committed consumer: up to the last stable offset. */
int partition_read_stable(struct partition *p, int64_t offset, uint64_t max_bytes,
                          struct storage_read_result *res);
void partition_read_release(struct partition *p, struct storage_read_result *res);
/* Calls fn once the high watermark is >= hw_min (at once if it is). Returns a watch id > 0 or
 * LM_E_FULL. */
int64_t partition_watch(struct partition *p, int64_t hw_min, partition_watch_fn fn, void *user);
/* Removes a watch without calling it (a fetch that timed out). */
void partition_unwatch(struct partition *p, int64_t id);
/* Calls fn once every offset < offset is durable ("persisted >= X"); starts an fsync.
 * Returns 0 (fn is called, maybe at once, with 0 or the partition's error) or, without
 * calling fn, the partition's error, LM_E_INVALID (offset below a queued one), LM_E_FULL or
 * LM_E_NOMEM. */
int partition_wait_persisted(struct partition *p, int64_t offset, partition_watch_fn fn,
                             void *user);

/* Advances time: raft ticks, retention, flush.ms. */
int partition_tick(struct partition *p, int64_t now_ms);
/* Advances time for the flush policy (flush.ms) and, for a group with other voters, raft's
 * ticks, and drives: the owner's frequent tick between retention checks. */
int partition_clock(struct partition *p, int64_t now_ms);
/* A raft message received for this partition (borrowed). */
int partition_step(struct partition *p, const struct raft_msg *m);
/* A leader's single-server configuration change (raft_propose_conf; a reassignment, KIP-455).
 * The first one writes "raft-conf": from then on opens rebuild the configuration from the
 * log. LM_E_STATE for a lone voter's group or a follower, LM_E_AGAIN while the previous change
 * is uncommitted or a learner has not caught up (see raft_propose_conf). */
int partition_propose_conf(struct partition *p, enum raft_conf_op op, uint32_t node);
/* A leader's configuration change is not committed yet. */
bool partition_conf_pending(const struct partition *p);
/* Starts an election now (tests, controlled failover). */
int partition_campaign(struct partition *p);
/* Holds or releases this replica's own elections (raft_hold_elections). */
void partition_hold_elections(struct partition *p, bool hold);
/* Hands leadership to voter `to` (raft_transfer_leader: TimeoutNow once it has caught up; the
 * transfer is abandoned after an election timeout). LM_E_STATE when not the leader. */
int partition_transfer_leader(struct partition *p, uint32_t to);
/* The voter a leader should hand over to: of the other voters heard from within the last
 * election timeout that usable (may be NULL) accepts, the one with the longest matched log.
 * RAFT_NONE when not the leader or none qualifies. */
uint32_t partition_handoff_target(const struct partition *p, bool (*usable)(void *ctx, uint32_t id),
                                  void *ctx);
/* The fsync handed to env->sync finished with rc. */
void partition_sync_done(struct partition *p, int rc);

/* The hard-state write handed to env->write_state finished with rc (0, LM_E_FULL, LM_E_IO,
 * LM_E_TOO_LARGE): a failure fails the partition (KAFKA_STORAGE_ERROR until reopened; LM_E_FULL
 * says the disk was full and the owner retries), success lets raft send what waited for it. */
void partition_state_done(struct partition *p, int rc);
/* Runs the drive step until nothing is left to do (called by every input above). */
int partition_drive(struct partition *p);
/* DeleteRecords (KIP-107): moves the log start to offset (<= the high watermark: only
 * committed batches go, as with a raft snapshot) and raft's log start with it. Returns 0 or
 * storage_log_advance_start's error. */
int partition_advance_start(struct partition *p, int64_t offset);

/* Queries. */
int64_t partition_high_watermark(const struct partition *p);
/* min(the log's first unstable offset (storage_log_first_unstable_offset), high watermark) */
int64_t partition_last_stable_offset(const struct partition *p);
int64_t partition_log_end_offset(const struct partition *p);
int64_t partition_log_start_offset(const struct partition *p);
int64_t partition_durable_offset(const struct partition *p);
bool partition_is_leader(const struct partition *p);
/* A leader knows the high watermark once it has committed an entry of its own term (Raft
 * §5.4.2, the leader's no-op): before that its commit index is what it had as a follower,
 * or what its checkpoint said after a restart, possibly far below what the previous leader
 * exposed. False on a follower. */
bool partition_hw_known(struct partition *p);
/* A leader's read lease (Raft thesis §6.4.1): a majority of the voters answered it within
 * the last half of (election_ticks - 1) ticks before now_ms, and it is not handing its
 * leadership over. None of those voters votes for another leader or campaigns within an
 * election timeout of hearing from it (check-quorum), so while the lease holds no other leader
 * can have exposed a higher high watermark: its high watermark is the partition's. (A voter
 * that restarts within the lease forgets it heard from this leader; a restart takes longer
 * than the lease.) False on a follower. */
bool partition_lease_valid(struct partition *p, int64_t now_ms);
/* A quiescent group (partition_config.quiesce): no raft ticks, no heartbeats. Asking a
 * quiescent leader for its lease wakes it (heartbeats go out; the lease it had from the answers
 * to its last heartbeats still counts), and keeps it from quiescing for quiesce_read_ms. */
bool partition_quiescent(const struct partition *p);
/* Whether a read woke this quiescent leader (partition_lease_valid) less than the lease
 * period ago: its heartbeats are out and their answers, one round trip away, renew the lease.
 * The owner parks a read that found no lease meanwhile (it would otherwise answer a retriable
 * error that not every client retries) and asks again when the answers are in. */
bool partition_lease_coming(const struct partition *p, int64_t now_ms);
/* Wakes a quiescent group on this node (its leader's node is lost, or anything the owner
 * wants heartbeats for); nothing when it is not quiescent. A follower's election timer resumes
 * as if it had run since the last leader message it received (raft_wake_silent): it votes and
 * campaigns as soon as an awake follower would have. */
int partition_wake(struct partition *p);
/* Wakes a quiescent follower whose leader's node may be gone (the owner has not heard from it
 * for a while, but nothing says it is down): a fresh election timeout from now, and its leader
 * is asked whether it is there (a refused heartbeat answer, raft_wake_silent with no silence):
 * a leader that is there heartbeats and keeps its group; one that is not is replaced an
 * election timeout later. A leader wakes as with partition_wake. */
int partition_wake_unsure(struct partition *p);
/* Sets the time the next inputs are recorded at (the lease's answers): the shell calls it
 * with the current time before partition_step; ticks still come from partition_clock. */
void partition_set_clock(struct partition *p, int64_t now_ms);
/* A leader handing its leadership over (partition_transfer_leader): appends are refused. */
bool partition_transferring(const struct partition *p);
uint32_t partition_leader(const struct partition *p);
int32_t partition_leader_epoch(const struct partition *p);
/* The first storage or drive error that made the partition fail (KAFKA_STORAGE_ERROR), or 0. */
int partition_failed(const struct partition *p);
/* Borrowed internals for tests and the transport. */
struct storage_log *partition_storage(struct partition *p);
struct raft_storage_log *partition_raft_log(struct partition *p);
struct raft *partition_raft(struct partition *p);

#endif
