/* Private to handlers.c and data_*.c: per-shard state (topics from the metadata snapshot, the
 * partition logs this shard owns), the cross-shard fan-out of per-partition work, and the
 * helpers to decode requests and encode responses with the generated codec. */
#ifndef LAMINAR_BROKER_HANDLERS_HANDLERS_INTERNAL_H
#define LAMINAR_BROKER_HANDLERS_HANDLERS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/handlers/handlers.h"
#include "broker/fetch/fetch_session.h"
#include "broker/meta/meta_store.h"
#include "broker/meta/topic_config.h"
#include "broker/partition/partition.h"
#include "broker/partition/state_file.h"
#include "broker/security/authorizer.h"
#include "broker/security/quota.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_errors.h"
#include "storage/storage.h"

/* Period of the shard tick: metadata reconciliation, flush.ms, waiter pruning. */
#define HANDLERS_TICK_MS 200
/* A node not heard from for this long (two election timeouts of 10 ticks) is silent to its
 * quiescent partitions (hs_node_silent). */
#define HANDLERS_NODE_SILENT_MS (20 * HANDLERS_TICK_MS)
/* Log growth between two producer-state checkpoints (laminar.producer.checkpoint.bytes). */
#define HANDLERS_PRODUCER_CHECKPOINT_BYTES ((uint64_t)64 << 20)
#define HANDLERS_HANDOFF_TICK_MS           20
/* Retention is enforced every this many ticks (log.retention.check.interval.ms, coarser). */
#define HANDLERS_RETENTION_TICKS 150
/* Upper bound of a decompressed batch when validating (scratch per shard grows up to this). */
#define HANDLERS_DECOMPRESS_BYTES_MAX ((size_t)256 << 20)
/* What the shard keeps of its scratch: one large batch must not pin up to 256 MiB per shard
 * for the life of the process, so a scratch grown beyond this is freed by the tick once no
 * batch has needed it for HANDLERS_SCRATCH_IDLE_MS (allocated again at this size on use). */
#define HANDLERS_SCRATCH_KEEP_BYTES ((size_t)1 << 20)
#define HANDLERS_SCRATCH_IDLE_MS    1000

struct hwaiter;
struct hpart;
struct hshard;

/* A request waiting on its partition: durable below `offset` (hs_sync_wait), or its append
 * acknowledged (hs_append: offset = its last offset + 1 when done). done runs on the owner
 * shard with 0 or an LM_E_*; the struct is the caller's until then. */
struct hsync_wait {
    int64_t offset;
    void (*done)(struct hshard *hs, struct hpart *p, struct hsync_wait *w, int rc);
    void *arg;
    struct hsync_wait *next;
    struct hpart *p_; /* private to handlers.c */
};

/* The fsyncs of the partition's group commit (partition_env.sync): one step in flight; they
 * run on the shard's ring or sync worker (broker_shard_fsync). */
struct hpart_sync {
    struct broker_fsync fs[STORAGE_SYNC_FDS_MAX];
    uint32_t pending;
    int rc;
    bool busy;
    bool in_done;      /* inside partition_sync_done */
    uint64_t start_us; /* when this group commit's fsyncs were handed out */
};

/* The partition's hard-state write (partition_env.write_state: Raft term and vote), run on the
 * shard's metadata worker (broker_shard_meta_job); one at a time. */
struct hpart_state {
    struct broker_meta_job job;
    const char *dir, *name, *line; /* the partition's, valid while busy */
    int len;
    bool busy;
    bool sync_id;         /* fdatasync partition.metadata before the state (hpart.id_unsynced) */
    bool sync_dir;        /* fsync the log's directory too (storage_log_dir_dirty) */
    uint64_t dir_changes; /* its changes when the write was issued */
    uint64_t issued_us;   /* when the write was handed to the metadata worker */
    struct state_file_staged staged; /* a batched write between stage and commit */
    bool issuing;                    /* inside write_state: a completion there is inline */
    bool in_done;                    /* inside partition_state_done */
};

/* A partition this shard owns. */
struct hpart {
    char *topic; /* owned copy */
    int32_t partition;
    uint8_t topic_id[16];
    /* The partition: its log, one-voter Raft group, high watermark and group commit
     * (broker/partition/). NULL when opening failed (answered KAFKA_STORAGE_ERROR). */
    struct partition *part;
    /* partition_storage(part), borrowed for the read paths (Fetch, ListOffsets, ...); every
     * write goes through part. NULL with part. */
    struct storage_log *log;
    struct storage_config scfg;
    bool write_caching;   /* the topic's write.caching (partition_config) */
    int32_t leader_epoch; /* partition_leader_epoch(part) at open (Raft term) */
    uint32_t gauge_slot;  /* its slot in the shard's part_gauges + 1; 0: none yet */
    /* its topic's BrokerTopicMetrics counters on this shard (broker_shard_topic_counters),
     * looked up at its first append; NULL before, and while metrics are off */
    uint64_t *topic_counters;
    int32_t gauge_epoch;          /* the leader epoch its gauges last showed */
    int64_t gauge_epoch_since_ms; /* wall clock when this node first saw that epoch */
    bool compact_flush_waiting;
    struct hwaiter *waiters; /* parked fetches of any shard waiting for appends here */
    bool waiters_fired;      /* some of them fired (partition_watch) */
    /* reads parked on this shard until the leader's lease is back (hs_lease_park) */
    struct hlease_wait *lease_waits;
    bool lease_rerun; /* a parked read runs again: it answers, it does not park */
    struct hpart_sync sync;
    struct hpart_state qsw;
    /* partition.metadata of a new replica written without its fdatasync (part_open_log): its
     * first Raft state write syncs it first, before any vote or append of this replica can
     * count, off the shard thread. */
    bool id_unsynced;
    struct hshard *hs; /* owner shard's state */
    bool dead;         /* closed while its sync or state write ran: freed when it ends */
    bool dead_delete_dir;
    bool keep_votes;     /* moved off this node: its Raft term and vote outlive its directory */
    bool reopen_pending; /* storage settings changed while its sync ran */
    /* Storage failures: a log that failed to open (log NULL) or that storage failed after a
     * write or fsync error is offline (Metadata: no leader, this node an offline replica;
     * Produce/Fetch: KAFKA_STORAGE_ERROR) and is opened again by the tick at retry_at_ms,
     * backing off from HANDLERS_RETRY_MIN_MS to HANDLERS_RETRY_MAX_MS. */
    bool failed;            /* log open but failed by storage: close and reopen */
    bool cache_suspect;     /* failed since its last open: the page cache is evicted first */
    bool offline;           /* registered as offline (h_partition_offline) */
    uint32_t retry_ms;      /* current backoff, 0 after a good open */
    uint32_t open_failures; /* consecutive failed opens (the first one is logged as error) */
    uint64_t retry_at_ms;
    /* Not opened yet: a refresh that brings more partitions than fit in one step's budget
     * (HANDLERS_STEP_BUDGET_MS) queues the rest; the shard's work timer opens them. Offline
     * meanwhile (Metadata: no leader yet; Produce/Fetch: retriable). A log whose storage
     * settings changed waits in the same queue to be reopened, open and serving meanwhile
     * (open_pending with log != NULL). */
    bool open_pending;
    struct hpart *oq_prev, *oq_next; /* hshard's open queue while open_pending */
    /* Open files are bounded per shard (HANDLERS_LOG_FDS per open log): the least recently
     * used idle logs are closed (idle_closed, not offline) and opened again by hs_part when a
     * request needs them. Every open log is on the shard's LRU list. */
    bool idle_closed;
    /* A log the budget could not close (a replicated partition: its Raft group keeps running;
     * or one with fetches parked on it) has its descriptors released instead
     * (partition_release_fds): off the LRU and not counted, the partition open. Storage reopens
     * them at the next read, append or sync and says so (part_fds_reopened): back on the LRU. */
    bool fds_released;
    /* A replica of a new group holding its own elections while the preferred one makes the
     * first (part_open_log), until this time at the latest (hs_first_election_check). */
    bool election_held;
    uint64_t election_hold_until_ms;
    /* While idle_closed, what the log showed as it closed: nothing can change them until it
     * opens again (appends open it first), so a Fetch at its end is answered without opening
     * it (a consumer of more partitions than the budget would otherwise reopen every log at
     * every poll). The high watermark may only grow at the next open (its recovery commits
     * the tail), never drop. */
    int64_t idle_hw, idle_lso, idle_start, idle_leo;
    struct hpart *lru_prev, *lru_next;
    /* A cluster partition with other replicas: its Raft group spans their nodes (raft ids =
     * node id + 1), messages through hs_cluster.c; the leader it last announced to the
     * controller (PARTITION_LEADER) and when it may announce again. */
    bool replicated;
    /* A partition of one replica that a reassignment grows (or whose log holds a Raft
     * configuration from one): a Raft group with peers all the same (raft ids node + 1). */
    bool grow;
    int16_t rf; /* replicas of a cluster partition (1 for one replica), else 0 */
    int32_t replicas[LM_META_REPLICATION_MAX];
    int32_t announced_epoch;
    uint64_t announce_at_ms;
    bool announce_confirmed; /* the image shows this node leading at announced_epoch */
    bool lead_published;     /* hs_part_set_epoch was told this replica leads */
    uint16_t announced_out;  /* ... with this ISR (lm_meta_leader.isr_out) */
    int32_t submitted_out;   /* the ISR last sent to the controller (-1: none this epoch) */
    uint64_t handoff_at_ms;  /* controlled shutdown: next leadership transfer attempt */
    uint32_t handoff_to;     /* ... and the raft id the last one went to */
    struct hisr *isr;        /* the leader's view of its followers (hs_cluster.c), or NULL */
    /* A leader's log start offset on its way to the followers (DeleteRecords: Kafka's
     * followers learn it from fetch responses), the replicas that have it (bit j) and when
     * to send again. */
    int64_t start_sync;
    uint16_t start_acked;
    uint64_t start_sync_at_ms;
    /* producer_idem.c: the offset its producer-state checkpoint covers up to (-1: none) and
     * the log size then; read from the file at the first tick that sees the log open. */
    bool pck_known;
    int64_t pck_next;
    uint64_t pck_size;
    int64_t pck_end_seen; /* the log end at its last look (0 before: a look happens) */
    /* A leader driving a reassignment (hs_reassign.c): when it may tell the controller again
     * that its group reached the target, and the step it logged last. */
    uint64_t reassign_done_at_ms;
    int32_t reassign_logged;
    /* The image no longer lists this replica but its Raft group still counts it as a voter or
     * learner, or a leader appends to it (a cancel after it was promoted, an image behind the
     * move that adds it back): it stays until the group removed it or this time, and past
     * it while this node's image may be behind (controller_image_fresh; leave_held: said so
     * in the log). */
    uint64_t leave_at_ms;
    bool leave_held;
    uint64_t leader_contact_ms; /* a leader's last append or heartbeat to this replica */
};

/* Kafka's ISR as a replicated partition's leader sees it: when each replica (index in
 * hpart.replicas) last caught up with the log end it had at an earlier look, as Kafka's
 * lastCaughtUpTimeMs; out of sync when that is older than replica.lag.time.max.ms or its node
 * is fenced. */
struct hisr {
    int64_t prev_last; /* the leader's last offset at the previous look */
    uint64_t prev_ms;  /* ... and its time */
    uint64_t caught_ms[LM_META_REPLICATION_MAX];
    uint16_t out; /* bit j: replica j out of sync */
};

/* Descriptors counted per open partition log, for the open-log budget derived from
 * RLIMIT_NOFILE: the active segment's .log it holds at rest, and one for what a log opens while
 * it syncs (index files, checkpoint, directory: storage.h) or a read reopens. */
#define HANDLERS_LOG_FDS                2
#define HANDLERS_FIRST_ELECTION_HOLD_MS 60000 /* see part_open_log */

/* The longest a shard spends in one step of opening partition logs or removing the
 * directories of deleted ones (a topic of 100,000 partitions is created or deleted over many
 * loop turns, with every other request served in between). */
#define HANDLERS_STEP_BUDGET_MS 5
/* A single node's metadata refresh always opens (or removes) this many synchronously,
 * whatever the time: a topic of ordinary size is usable as soon as CreateTopics answers.
 * Each open creates a directory and five files (2-4 ms on this project's test machine when
 * many inodes were freed recently): 1,024 held a shard for seconds while a 10,000-partition
 * topic was created, and the wire fuzzer's healthy client timed out behind it under ASan. */
#define HANDLERS_STEP_OPS_MIN 128

/* A partition directory of a deleted topic, removed by the work timer unless it has become
 * another topic's meanwhile (same name created again). */
struct hdir_removal {
    struct hdir_removal *next;
    uint8_t topic_id[16];
    char dir[]; /* NUL-terminated */
};

/* Backoff of reopening a partition whose log failed (Kafka takes a failed log dir offline
 * until restart; a single node would lose the partition for good, so it retries). */
#define HANDLERS_RETRY_MIN_MS 1000
#define HANDLERS_RETRY_MAX_MS 5000
/* How long a replica the image dropped stays while its Raft group still counts it as a voter
 * (hs_parts.c part_may_leave): several election timeouts, for the leader to remove it. */
#define HANDLERS_LEAVE_GRACE_MS 10000

/* A topic of the current metadata snapshot (every topic, owned partitions or not). */
struct htopic {
    const struct lm_meta_topic *meta; /* borrowed from the shard's snapshot */
    struct lm_topic_settings settings;
    int32_t part_cap;     /* length of parts */
    struct hpart **parts; /* [partition] -> owned partition or NULL */
    struct htopic *next;  /* hash chain */
    bool seen;
};

struct hfetch;

struct gshard;
struct pshard;
struct hpeer;
struct detached;
struct tshard;

/* Per-shard state of the handler layer (broker_shard_user). */
struct hshard {
    struct broker_shard *shard;
    struct handlers_ctx *node;        /* the broker node this shard serves */
    struct gshard *group;             /* group coordinator state (group_coord.c) */
    struct pshard *producers;         /* idempotent producer state (producer_idem.c) */
    struct tshard *txn;               /* transaction coordinator state (txn_shard.c) */
    struct sshard *share;             /* share sessions and share partitions (share_fetch.c) */
    struct sspeers *share_peers;      /* connections to share coordinators (share_state.c) */
    int64_t group_clock_ms;           /* group_now_ms: the last wall-clock time handed out */
    uint32_t open_failures_this_tick; /* failed opens logged since the last tick */
    uint64_t open_us, opens;          /* log opens (recovery included): time and count */
    /* partitions' append messages with batches sent, and their batch bytes: zero-copy (slices
     * of the log files, hs_raft_send_app) and read first (hs_raft_send) */
    uint64_t repl_apps_zc, repl_bytes_zc, repl_apps_copy, repl_bytes_copy;
    uint64_t compact_steps;                      /* compaction steps run (bounded by bytes each) */
    uint64_t flushes, flush_us;                  /* group-commit fsyncs completed and their time */
    uint64_t flush_hist[HANDLERS_FLUSH_BUCKETS]; /* the same by time (HANDLERS_FLUSH_BOUNDS_US) */
    uint32_t leaving; /* partitions the image dropped that wait for their group (hs_parts.c) */
    uint32_t id, count;
    struct lm_meta_snapshot *snap;
    uint64_t version;
    struct htopic **buckets;
    size_t bucket_count;
    size_t topic_count;
    uint8_t *scratch; /* batch validation (decompression) */
    size_t scratch_cap;
    uint64_t scratch_used_ms;  /* last time a batch needed more than the kept size */
    uint64_t scratch_releases; /* grown scratches freed by the tick (logged) */
    struct broker_timer tick;
    uint32_t ticks;
    uint64_t tick_version; /* the image version the last shard tick looked at */
    /* Budgeted background work: partitions to open, directories to remove. */
    struct hpart *oq_head, *oq_tail;
    uint32_t oq_len;
    struct hdir_removal *rm_head, *rm_tail;
    struct broker_timer work;
    uint64_t step_deadline_ms; /* synchronous opens/removals allowed until then */
    uint32_t step_ops;         /* ... and while fewer than HANDLERS_STEP_OPS_MIN were done */
    struct hpart *lru_head, *lru_tail; /* open logs, most recently used first */
    uint32_t open_logs, open_logs_max;
    uint64_t idle_closes;                /* logs closed for the budget (logged now and then) */
    uint64_t fd_releases;                /* logs whose descriptors the budget released (likewise) */
    struct raft_stats raft_stats;        /* elections of this shard's groups (raft.h) */
    struct raft_stats raft_stats_logged; /* as last logged */
    uint64_t raft_stats_logged_ms;
    uint64_t raft_in[RAFT_MSG_TYPE_MAX];    /* raft messages delivered here since logged, by type */
    uint64_t tick_prev_ms, tick_gap_max_ms; /* the longest gap between shard ticks since logged */
    /* Raft state writes (term, vote) completed since logged: count, summed and longest time
     * from issue to completion (queueing on the metadata workers included) */
    uint64_t state_writes, state_write_us, state_write_us_max;
    struct hfetch *parked;     /* parked fetches of connections on this shard */
    struct hfetch *on_session; /* incremental fetches in flight, by session (data_fetch.c) */
    struct fsess_cache fsess;  /* incremental fetch sessions of this shard's connections */
    /* Topic defaults of the current snapshot in precedence order: this node's dynamic broker
     * configs, the cluster-wide dynamic defaults, then server.properties
     * (node->broker_topic_configs); the strings are borrowed from snap and the node. NULL
     * (allocation failed): server.properties alone. */
    struct lm_config_entry *topic_defaults;
    size_t topic_default_count;
    struct hpeer *peers; /* replication: one connection per other node (hs_cluster.c) */
    size_t n_peers;
    uint32_t detached_inflight;           /* hs_submit_detached calls not answered yet */
    struct detached *detached;            /* ... and those calls (hs_cluster.c) */
    struct broker_timer raft_batch_timer; /* sends the coalesced heartbeats (hs_cluster.c) */
    bool raft_batch_armed;
    uint64_t fetch_id_next;
    uint8_t zc_nonce[8]; /* random: Fetch's record markers (data_fetch.c) */
    bool stopping;
    uint64_t rebalance_at_ms;    /* next automatic preferred-leader check (hs_elect.c) */
    bool handoff_reported;       /* controlled shutdown: counted in node->handoff_shards */
    uint32_t handoff_held;       /* leaderships last added to node->handoff_led */
    struct lm_quota_table quota; /* client quota sensors (hs_quota.c); empty until first use */
};

/* The broker-level topic defaults hs resolves topic settings with (hshard.topic_defaults). */
const struct lm_config_entry *hs_topic_defaults(const struct hshard *hs, size_t *count);

/* ---- hs_cluster.c: the handler layer in a cluster ---- */
bool hs_cluster(const struct handlers_ctx *h);
/* True when partition p of t has a replica on this node (always on a single node). */
bool hs_local_replica(const struct handlers_ctx *h, const struct lm_meta_topic *t, int32_t p);
/* A new assignment of partitions first..first+partitions-1 over the live registered nodes
 * (placement.h; malloc'd into *out). LM_E_AGAIN when no node is registered yet, LM_E_FULL
 * when rf exceeds the live nodes. */
int hs_assign(const struct lm_meta_state *st, int32_t first, int32_t partitions, int16_t rf,
              int32_t **out);
/* Sends r to the controller without waiting for the outcome. */
int hs_submit_detached(struct hshard *hs, const struct lm_meta_record *r);
/* hs_submit_detached with the verdict given to answer, on this shard (hs NULL: the shard
 * stopped before it came). */
int hs_submit_answered(struct hshard *hs, const struct lm_meta_record *r,
                       void (*answer)(struct hshard *hs, void *arg, int rc), void *arg);
/* Bound of a shard's detached submissions in flight; hs_submit_room: below it. Leader
 * announcements wait for room (auto-creation does not). */
#define HS_DETACHED_INFLIGHT_MAX 64
bool hs_submit_room(const struct hshard *hs);
/* The shard stops: its detached submissions no longer name it (their answers may come after
 * it is gone). */
void hs_detached_orphan(struct hshard *hs);
/* Replicated partitions: the raft group id of a partition, its env.send, the receive side
 * (controller_set_partition_handler), leadership changes seen after an input (announced to
 * the controller; epoch and producer state follow), and the shard's peers' teardown. */
uint64_t hs_raft_group(const uint8_t topic_id[16], int32_t partition);
void hs_raft_send(void *ctx, struct partition *part, const struct raft_msg *m);
/* partition_env.send_app: an APP whose batches go as slices of the log files. */
int hs_raft_send_app(void *ctx, struct partition *part, const struct raft_msg *m,
                     struct partition_slice *slices, uint32_t n);
/* Whether partitions' appends may go zero-copy (laminar.replication.zero.copy, and nothing
 * that must read the bytes on the way: no cluster-secret MAC, no peer TLS). */
bool hs_raft_zero_copy(const struct hshard *hs);
void hs_partition_recv(void *ctx, struct broker_req *req, const uint8_t *body, size_t len);
/* Node-pair liveness for quiescent partitions (consensus/README.md, "Quiescence"): shard 0
 * sends every other node of the image a NODE_PING (its node id) at each tick on its
 * replication connection; the receiver stamps the sender in handlers_ctx.node_alive_ms
 * (hs_node_heard), as every raft message received does for its sender. hs_node_silent:
 * `node` was heard from since this process started, but neither it nor (last_contact_ms) a
 * leader message of the partition within HANDLERS_NODE_SILENT_MS. */
void hs_node_ping(struct hshard *hs, uint64_t now_ms);
void hs_node_heard(struct handlers_ctx *h, int32_t node, uint64_t now_ms);
bool hs_node_silent(const struct hshard *hs, int32_t node, uint64_t last_contact_ms,
                    uint64_t now_ms);
/* Asks node `leader` to hand topic-partition's leadership to node target (ElectLeaders). done
 * gets the answer: rc 0 and a 2-byte Kafka error code in call->resp. *call_out is the call to
 * free in done. Returns 0, or an error without calling done. */
int hs_elect_send(struct hshard *hs, int32_t leader, const char *topic, int32_t partition,
                  int32_t target, void (*done)(struct broker_shard *, struct broker_call *, int),
                  void *arg, void **call_out);
void hs_leader_check(struct hshard *hs, struct hpart *p, uint64_t now_ms);
/* Releases p's held first election (part_open_log) once its group has a term, the hold has
 * lasted HANDLERS_FIRST_ELECTION_HOLD_MS, or the preferred replica's node is fenced. */
void hs_first_election_check(struct hshard *hs, struct hpart *p, uint64_t now_ms);
/* The leader's new follower bookkeeping after its replica set changed (a reassignment). */
void hs_isr_reset(struct hpart *p, uint64_t now_ms);
/* A reassignment (KIP-455) as p's leader drives it (hs_reassign.c), after every input and tick:
 * the next single-server change of its Raft group towards the image's target (the replicas
 * minus those being removed), one at a time; once the configuration is the target and
 * committed, the completion goes to the controller (PARTITION_REASSIGN, reassign_done) until
 * the image shows it. A cancel's target is the original replicas: learners go, removed
 * replicas come back. */
void hs_reassign_step(struct hshard *hs, struct hpart *p, uint64_t now_ms);
/* A leader sends its log start offset (p->start_sync) to the replicas that have not
 * acknowledged it (called from hs_leader_check; DeleteRecords sets it). */
void hs_log_start_sync(struct hshard *hs, struct hpart *p, uint64_t now_ms);
/* The ISR of a quiescent leader whose followers are all in it: every follower is caught up
 * now (it matched the leader's end before the group quiesced, and nothing was appended since),
 * as hs_leader_check would find, without its lookups. */
void hs_isr_quiet(struct hpart *p, uint64_t now_ms);
/* Whether replica node has acknowledged the leader's log start (true when there is none to
 * send): leadership goes only to such a replica (ElectLeaders, handoff, rebalance), so a log
 * start set by DeleteRecords never moves back. */
bool hs_has_log_start(const struct hshard *hs, const struct hpart *p, int32_t node);
/* Whether this leader of p has had replica j caught up within replica.lag.time.max.ms (its
 * own ISR bookkeeping, sampled every half tick: raft's per-election-period "recently active"
 * flag alone is reset at each election tick, and a check on the same period can always land
 * just after the reset). */
bool hs_replica_in_sync(const struct hshard *hs, const struct hpart *p, int16_t j, uint64_t now_ms);
/* How many replicas of p are in sync as its leader sees them (all when p is not a replicated
 * partition led here). */
int32_t hs_isr_count(const struct hshard *hs, const struct hpart *p);
void hs_peers_close(struct hshard *hs);
/* Controlled shutdown: the dispatch's handoff hooks (begin sets node->handoff; done: every
 * shard has counted its leaderships and none is left) and the shard tick's step while
 * node->handoff is set (hands each leadership this shard holds, the controller's included,
 * to the most caught-up live replica; once raft abandons a transfer that did not complete,
 * at most every HS_HANDOFF_RETRY_MS, to another replica when there is one). */
#define HS_HANDOFF_RETRY_MS 500
void hs_handoff_begin(void *ctx);
bool hs_handoff_done(void *ctx);
void hs_handoff_step(struct hshard *hs, uint64_t now_ms);

/* ---- hs_elect.c: ElectLeaders and auto.leader.rebalance.enable ---- */
void hs_elect_leaders(struct broker_req *req);
/* On the shard tick: every leader.imbalance.check.interval.seconds, hands each partition this
 * shard leads back to its preferred replica once that replica is in sync (KRaft's rule). */
void hs_rebalance_check(struct hshard *hs, uint64_t now_ms);

/* ---- handlers.c ---- */

/* The handler-layer state of shard s. */
struct hshard *hs_of(struct broker_shard *s);

/* ---- authorization (hs_authz.c, broker/security/authorizer.h) ---- */
/* The node's authorizer settings and who sent req (host in req's arena). */
void h_subject(struct broker_req *req, const struct authz_config **cfg, struct authz_subject *who);
/* Whether the authorizer is on (authorizer.class.name). */
bool h_authz_on(struct broker_req *req);
/* Whether req's principal may perform op on resource (type, name[0..len)), as the shard's
 * metadata image says; always true with the authorizer off. */
bool h_allowed(struct broker_req *req, int8_t op, int8_t type, const char *name, size_t len);
bool h_allowed_k(struct broker_req *req, int8_t op, int8_t type, struct kafka_str name);
/* op on the cluster resource ("kafka-cluster"). */
bool h_allowed_cluster(struct broker_req *req, int8_t op);
/* Kafka's authorizeByResourceType: op on at least one resource of type. */
bool h_allowed_any(struct broker_req *req, int8_t op, int8_t type);
/* Kafka's authorized-operations bit field of resource (type, name) for req's principal. */
int32_t h_authorized_ops(struct broker_req *req, int8_t type, const char *name);
/* Brings the shard's topic table and partition logs up to the metadata store's version. */
void hs_refresh(struct hshard *hs);
/* The shard tick's look at the partitions waiting to leave (hpart.leave_at_ms). */
void hs_leaving_check(struct hshard *hs);
/* Topic by name (not NUL-terminated) or by id, or NULL. */
struct htopic *hs_topic(struct hshard *hs, const char *name, size_t len);
struct htopic *hs_topic_by_id(struct hshard *hs, const uint8_t id[16]);
/* The owned partition, or NULL (unknown topic/partition, or owned by another shard). Its log
 * is opened if the open-log budget closed it or it waits in the open queue (p->log stays NULL
 * when that fails). */
struct hpart *hs_part(struct hshard *hs, const char *topic, size_t len, int32_t partition);
/* Whether p's log is closed by the open-log budget (not failed): its idle_* offsets stand. */
static inline bool hs_part_budget_closed(const struct hpart *p)
{
    return p->log == NULL && p->idle_closed && !p->failed;
}
/* As hs_part, but the log is left as it is (closed or not). */
struct hpart *hs_part_peek(struct hshard *hs, const char *topic, size_t len, int32_t partition);
/* Opens p's log as hs_part would; whether it is open now. */
bool hs_part_open(struct hpart *p);
/* Owner shard of a partition. */
uint32_t hs_owner(struct hshard *hs, const char *topic, size_t len, int32_t partition);
/* Calls w->done once p is durable below w->offset: at once when it is, else after the
 * partition's next asynchronous flush (never an fdatasync on the shard thread). */
void hs_sync_wait(struct hshard *hs, struct hpart *p, struct hsync_wait *w);
/* Appends batches to p through its partition (partition_append with origin; buf rewritten in
 * place: offsets, epoch). Returns 0 (w->done is called, at once for acks 0/1, on commit for
 * acks=-1) or an LM_E_* without calling it. */
int hs_append(struct hshard *hs, struct hpart *p, enum partition_origin origin, uint8_t *buf,
              size_t len, int acks, struct hsync_wait *w);
/* After an input to p's partition: failure -> offline, high watermark moved -> wake fetches,
 * deferred close/reopen. */
void hs_part_kick(struct hshard *hs, struct hpart *p);
/* p's partition has an fsync or a hard-state write running: it may not close (nor reopen)
 * until it ends (hs_part_kick then does what waited). */
static inline bool hs_part_busy(const struct hpart *p)
{
    return p->sync.busy || p->qsw.busy;
}
/* Wakes every parked fetch waiting on p (close, reopen, failure), or only those whose
 * partition_watch fired (fired_only: hs_part_kick). */
void hs_wake_waiters(struct hshard *hs, struct hpart *p);
void hs_wake_fired(struct hshard *hs, struct hpart *p);
/* Drops the waiter *w of p (its fetch answered by timeout), unwatching it. */
void hs_waiter_drop(struct hpart *p, struct hwaiter **w);
/* Arms the waiters registered while p's log was closed, now that it is open again. */
void hs_waiters_arm(struct hshard *hs, struct hpart *p);
/* Creates a topic with the broker's defaults (Metadata auto-create). 0 or LM_E_*. */
int hs_create_topic(struct hshard *hs, const char *name, int32_t partitions);

/* Decodes req's body into msg (struct kafka_<api>_request, allocated by the caller). On a
 * malformed body the connection is closed and the request completed: returns false. */
bool h_decode(struct broker_req *req, void *msg);
/* Encodes msg (struct kafka_<api>_response) at the request's version into the arena and
 * responds; closes the connection if that fails. */
void h_respond(struct broker_req *req, const void *msg);
/* h_respond in two steps: encode into the arena (false: arena exhausted; nothing completed),
 * then broker_req_respond(req, *out, *out_len) or h_close. The request (and its arena) may be freed
 * by broker_req_respond, so nothing of it may be touched afterwards. */
bool h_encode(struct broker_req *req, const void *msg, const uint8_t **out, size_t *out_len);
/* Completes req by closing its connection (logged with why). */
void h_close(struct broker_req *req, const char *why);
/* Arena allocation of n zeroed elements (NULL on exhaustion). */
void *h_alloc(struct broker_req *req, size_t n, size_t size);
/* Copies a kafka_str into a NUL-terminated arena string (NULL on exhaustion or null). */
char *h_strdup(struct broker_req *req, struct kafka_str s);
/* Maps an LM_E_* from storage to a Kafka error code. */
int16_t h_storage_error(int rc);
/* A new partition's leader epoch: the first Raft term (a lone voter starts there and keeps it
 * across reopens; broker/partition/README.md). */
#define HANDLERS_LEADER_EPOCH_FIRST 1
/* The leader epoch of a partition from any shard (Metadata is answered on the request's shard,
 * the partition lives on its owner): what its owner registered at open, or
 * HANDLERS_LEADER_EPOCH_FIRST. */
int32_t h_partition_epoch(const struct handlers_ctx *node, const uint8_t topic_id[16],
                          int32_t partition);
/* A connection to node's inter-broker listener kept in *peer (the transaction markers' and the
 * share-state calls'): the open one while healthy; a failed one is closed and reopened no
 * sooner than 500 ms later (*retry_at_ms); NULL while there is none (or stopping). */
struct broker_peer *hs_inter_broker_peer(struct hshard *hs, int32_t node, struct broker_peer **peer,
                                         uint64_t *retry_at_ms, bool stopping,
                                         const char *client_id);
/* Whether this node's replica of a replicated partition leads it, with *epoch its term; from
 * any shard. */
bool h_partition_local_leader(const struct handlers_ctx *node, const uint8_t topic_id[16],
                              int32_t partition, int32_t *epoch);
/* Whether the partition is offline (its log failed to open or failed since), from any
 * shard: one atomic load while no partition is offline. */
bool h_partition_offline(const struct handlers_ctx *node, const uint8_t topic_id[16],
                         int32_t partition);
/* The node serving req. */
struct handlers_ctx *h_node(const struct broker_req *req);

/* ---- hs_quota.c: client byte-rate quotas (KIP-13, KIP-55) ---- */
/* Whether a quota of key k governs req's (user, client id), its value in *limit. */
bool h_quota_limit(struct broker_req *req, int k, double *limit);
/* Records bytes of key k for req's (user, client id) and returns the throttle time in ms that
 * Kafka's ClientQuotaManager would give (0 within the quota or without one). */
int32_t h_quota_record(struct broker_req *req, int k, double bytes);
/* Records the handler time of req so far against its request_percentage quota (Kafka's
 * request quota) and, over it, mutes its connection; the throttle time, 0 without a quota. */
int32_t h_request_quota(struct broker_req *req);
/* Takes back bytes recorded (Kafka's unrecordQuotaSensor: a throttled Fetch returns nothing). */
void h_quota_unrecord(struct broker_req *req, int k, double bytes);
/* Whether req's sensor of key k is over its quota already (nothing recorded). */
bool h_quota_exceeded(struct broker_req *req, int k);
/* Frees the shard's sensors. */
void hs_quota_free(struct hshard *hs);
/* Called on the owner shard when storage reports the log of p failed (an append answered
 * LM_E_STATE, a flush failed): p goes offline and the tick reopens it. */
void hs_part_failed(struct hshard *hs, struct hpart *p, int rc);

/* Kafka's internal topics (Topic.isInternal: __consumer_offsets, __transaction_state): shown
 * as is_internal in Metadata; clients may not Produce to them, only the coordinators' own
 * append path writes them. */
bool h_topic_internal(const char *name, size_t len);

/* ---- fan-out of per-partition work to owner shards (data_fan.c) ---- */

/* hwork.owner of an item already answered on the request's shard (no shard runs it). */
#define HWORK_DONE UINT32_MAX

struct hfan_call;

struct hwork {
    struct hfan_call *call_; /* private to data_fan.c */
    const char *topic;
    size_t topic_len;
    int32_t partition;
    uint32_t owner;
    int16_t error;
    const void *in; /* handler-specific, in the request's arena, read-only on the owner */
    void *out;      /* handler-specific, written on the owner */
};

struct hfan;
/* Runs on the owner shard for each item it owns; p is NULL when the partition is not there. */
typedef void (*hfan_op)(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f);
typedef void (*hfan_finish)(struct hfan *f);

struct hfan_call {
    struct broker_xcall x;
    struct hfan *f;
    uint32_t target;
    uint32_t holds; /* items still running (hfan_hold) + 1 while run_items runs */
};

struct hfan {
    struct broker_req *req;
    struct hshard *origin;
    struct hwork *items;
    size_t count;
    hfan_op op;
    hfan_finish finish;
    void *ctx;
    bool sequential; /* one shard at a time, in order (Fetch's byte budget) */
    bool peek;       /* ops get partitions as they are (hs_part_peek), not opened for them */
    /* private */
    struct hfan_call *calls; /* one per target shard */
    uint32_t call_count;
    uint32_t next_call;
    uint32_t pending;
};

/* Prepares f for items[0..count) of req (allocates the per-target calls in the arena).
 * Returns false on arena exhaustion. */
bool hfan_init(struct hfan *f, struct broker_req *req, struct hwork *items, size_t count,
               hfan_op op, hfan_finish finish, void *ctx);
/* Runs op for every item on its owner shard, then finish on this shard (maybe at once). */
void hfan_start(struct hfan *f);
/* Called by op on the owner shard to finish item w later (e.g. after an fsync); the owner's
 * part of the fan-out returns once every held item is released with hfan_release (on the same
 * owner shard). */
void hfan_hold(struct hwork *w);
void hfan_release(struct hshard *hs, struct hwork *w);

/* DescribeLogDirs (hs_logdirs.c): replaces the sizes admin_describe_log_dirs read from segment
 * file lengths in rs by each open log's own size, asked of the partitions' owner shards, then
 * calls respond(req, api, rs). Returns false (nothing sent) when the arena is exhausted. */
typedef void (*h_respond_fn)(struct broker_req *req, const struct kafka_api_info *api, void *rs);
struct kafka_describe_log_dirs_response;
bool h_logdirs_sizes(struct broker_req *req, const struct kafka_api_info *api,
                     struct kafka_describe_log_dirs_response *rs, h_respond_fn respond);

/* Reads of a replicated partition whose leader a read just woke from quiescence
 * (partition_lease_coming): the lease its heartbeats renew is one round trip away. Called by
 * an hfan op that found no lease: holds w (hfan_hold) until the lease is valid or max_ms have
 * passed (bounded by the lease period), then runs f->op for it again, which then answers with
 * what it finds. Returns false when the read is to be answered now (no lease coming, a run
 * that was itself parked, out of memory). */
bool hs_lease_park(struct hshard *hs, struct hpart *p, struct hwork *w, struct hfan *f,
                   uint64_t max_ms, int16_t give_up);
/* Runs p's parked reads again once its lease is valid, and those past their bound (the shard
 * tick); _drop answers them all with their give_up error at once (p goes away). */
void hs_lease_waits_check(struct hshard *hs, struct hpart *p, uint64_t now_ms);
void hs_lease_waits_drop(struct hshard *hs, struct hpart *p);

/* ---- data_*.c ---- */
/* Frees the shard's grown scratch once idle (HANDLERS_SCRATCH_IDLE_MS); called by the tick. */
void data_produce_scratch_trim(struct hshard *hs, uint64_t now_ms);
void data_metadata(struct broker_req *req);
void data_produce(struct broker_req *req);
void data_fetch(struct broker_req *req);
/* ShareFetch and ShareAcknowledge (share_fetch.c, KIP-932): registration, shutdown (parked
 * share fetches answer at once) and the shard's share state freed at its stop. */
int share_fetch_register(struct broker_dispatch *d);
void share_fetch_drain(struct hshard *hs);
void share_shard_free(struct hshard *hs);
/* Writes the share checkpoints whose start offsets moved (shard tick, clean shutdown). */
void share_shard_tick(struct hshard *hs);
/* DeleteGroups of share groups (group_api.c): drops the groups' share-partition state and
 * checkpoint entries on every partition this node holds, then sends resp on req. */
void share_groups_forget(struct broker_req *req, const struct kafka_str *groups, int32_t n,
                         void *resp);
void data_list_offsets(struct broker_req *req);
void data_offset_for_leader_epoch(struct broker_req *req);
void data_delete_records(struct broker_req *req);
/* Fetch long-poll plumbing (data_fetch.c). */
void data_fetch_wake(struct hshard *hs, uint64_t fetch_id);
/* Wakes fetch fetch_id (a Fetch or a ShareFetch: one id space, hs->fetch_id_next) of shard
 * origin: data_fetch_wake there, through a cross-shard call. */
void hs_fetch_wake_send(struct hshard *hs, uint32_t origin, uint64_t fetch_id);
/* Parks fetch fetch_id of shard origin on p until p's high watermark reaches target (then
 * hs_fetch_wake_send; dropped by the tick past deadline_ms); a log the open-log budget closed
 * is watched once it opens. False when it could not (no memory, the watch table full): the
 * caller reads again now. */
bool hs_waiter_add(struct hshard *hs, struct hpart *p, uint32_t origin, uint64_t fetch_id,
                   uint64_t deadline_ms, int64_t target);
/* A ShareFetch of this shard parked under fetch_id passes again (share_fetch.c). */
void share_fetch_wake(struct hshard *hs, uint64_t fetch_id);
/* A client connection of this shard closes: its parked ShareFetches answer now (dropped), so
 * that it is freed at once (share_fetch.c). */
void share_conn_closing(struct hshard *hs, uint64_t conn_id);
/* A client connection of this shard is gone: its share sessions close (share_fetch.c). */
void share_conn_closed(struct hshard *hs, uint64_t conn_id);
/* The aborted transactions of p's log overlapping [from, upper) (Kafka
 * collectAbortedTransactions), malloc'd into *out (NULL when none), for read_committed reads.
 * Returns 0 or an LM_E_*. */
int hs_aborted_txns(struct hpart *p, int64_t from, int64_t upper, struct storage_aborted_txn **out,
                    uint32_t *count);
void data_fetch_drain(struct hshard *hs);

/* A parked fetch's waiter on an owner shard (one-shot): a partition_watch for a high
 * watermark past the one its pass saw. */
struct hwaiter {
    uint32_t origin;
    uint64_t fetch_id;
    uint64_t deadline_ms;
    struct hwaiter *next;
    struct hpart *p;
    int64_t watch_id; /* 0: registered while the log was closed, armed when it opens */
    int64_t target;   /* the high watermark it waits for */
    bool fired;       /* the partition called it: woken by hs_part_kick, outside the drive step */
};

/* Checks a client's current_leader_epoch (KIP-320): NONE, FENCED_LEADER_EPOCH or
 * UNKNOWN_LEADER_EPOCH. -1 means "not given". */
static inline int16_t h_check_epoch(const struct hpart *p, int32_t current_leader_epoch)
{
    if (current_leader_epoch < 0 || current_leader_epoch == p->leader_epoch)
        return KAFKA_NONE;
    return current_leader_epoch < p->leader_epoch ? KAFKA_FENCED_LEADER_EPOCH
                                                  : KAFKA_UNKNOWN_LEADER_EPOCH;
}

/* ---- shared by handlers.c, hs_registry.c, hs_parts.c and hs_shard.c (the handler layer's
 * node and shard state, split by concern) ---- */

#define H_DIR_BYTES (BROKER_PATH_BYTES_MAX + 300)
/* A file in it. */
#define H_FILE_BYTES (H_DIR_BYTES + 300)

/* Open failures logged as errors per shard per tick: a large CreateTopics on a full disk
 * would otherwise log one line per partition at once; the rest are counted and the tick
 * reports how many. */
#define OPEN_FAILURES_LOGGED_PER_TICK 8

/* Defined in one of these files, used by another. */
/* Frees every entry of the node's epoch and offline tables (node teardown). */
void hs_registry_clear(struct handlers_ctx *h);
void hs_part_set_epoch(struct hpart *p, int32_t epoch, bool leads);
void hs_part_set_offline(struct hpart *p, bool offline);
void hs_rm_dir(const char *dir);
void hs_part_retry(struct hshard *hs, struct hpart *p);
bool hs_step_has_budget(const struct hshard *hs);
void hs_topic_free(struct hshard *hs, struct htopic *t, bool delete_dirs);
int hs_shard_start(struct broker_shard *s, void *ctx);
void hs_conn_closing(struct broker_shard *s, void *ctx, uint64_t conn_id);
void hs_conn_closed(struct broker_shard *s, void *ctx, uint64_t conn_id);
void hs_shard_drain(struct broker_shard *s, void *ctx);
void hs_shard_flush(struct broker_shard *s, void *ctx);
void hs_shard_stop(struct broker_shard *s, void *ctx);

#endif
