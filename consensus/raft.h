/* Raft as a pure state machine (etcd raft style; DESIGN.md §4, §7).
 *
 * Inputs: raft_tick (logical time), raft_step (a received message), raft_persisted (a storage
 * completion), and the proposal/admin calls. Output: raft_ready, which hands out hard state and
 * entries to persist, messages to send and committed entries to apply. There are no clocks,
 * sockets, threads or random calls in here: the election-timeout jitter comes from a PRNG whose
 * seed is part of struct raft_config.
 *
 * Indices are Kafka offsets. One Raft entry is one record batch covering the offset range
 * [first_index, last_index]; its term is the batch's partitionLeaderEpoch. Entries are
 * contiguous: next.first_index == prev.last_index + 1. Everything Raft reasons about (match,
 * next, commit, the prev of an append) is an entry boundary, i.e. the last offset of some batch
 * (or the log start - 1). Why ranges instead of "one batch = one index": storage, Fetch and the
 * high watermark all speak offsets, so commit = high watermark - 1 without any translation
 * table, and the log interface is served by a segment's offset index directly. A batch with a
 * given (last offset, epoch) is only ever produced by the single leader of that epoch, so two
 * logs that agree on the term at an offset agree on the whole batch and its boundaries (the
 * Log Matching argument of Raft §5.3 carries over to ranges).
 *
 * PERSIST BEFORE SEND. A ready with persist_id != 0 carries state the node must write (hard
 * state, entries overwriting the log from entries[0].first_index, or a new log start) in order;
 * after the write is durable the caller calls raft_persisted(persist_id), in increasing order.
 * The library enforces the rule itself: a message whose meaning depends on unpersisted state (any
 * message sent at a term/vote not yet durable; an append or vote response that acknowledges
 * entries or a vote not yet durable) is held inside and appears in a later ready's msgs only once
 * its persist_id has been reported. Every message in rd.msgs may therefore be sent at once. The
 * leader's own appends may go out before its local write (Raft thesis §10.2.1): its own match
 * only counts toward the commit index after raft_persisted. Committed entries are handed out for
 * applying only once they are durable locally.
 *
 * APPENDS ARE DESCRIPTORS. An APP in rd.msgs names its entries instead of carrying them: prev
 * (index, log_term), the range (index, ent_last] of n_entries whole batches whose last one has
 * term ent_last_term, and commit; entries is NULL. Raft never copies an entry per follower. The
 * shell (transport) fills the bytes from its log when it sends, with raft_log_resolve or
 * raft_msg_resolve, after it has written this ready's entries and log start (written, not
 * necessarily durable: a descriptor may name the leader's own entries of this very ready, which
 * go out before its write completes). Raft releases an APP only once every entry it names has
 * been handed out in a ready, so a shell that writes readies in order can always find them.
 *   - A descriptor borrows nothing: it is plain numbers, valid as long as the shell likes.
 *   - Resolving checks that the log still holds the range: the batch ending at ent_last has
 *     ent_last_term (then, by Log Matching, every batch before it is the one raft named) and
 *     nothing in the range is below the log start. The resolved entries borrow the log's bytes
 *     (valid until the log changes); raft_msg_resolve copies them into the message it builds.
 *   - If the log was truncated or compacted in between (a leader that lost its term and took
 *     another leader's entries, retention, DeleteRecords, a new log start) or a read failed,
 *     resolving fails: the shell drops that message and calls raft_append_unsent. Raft treats
 *     it as a lost message and sends that follower a fresh append (or the log start) later.
 * The receive side is unchanged: raft_step takes an APP with its entries (bytes included); an
 * unresolved descriptor is refused with LM_E_INVALID.
 *
 * LOG READS MAY FAIL. raft_log_ops.entry_at is a disk read for a partition log and may return an
 * error (LM_E_IO, LM_E_CRC, LM_E_CORRUPT, LM_E_NOMEM...). Raft never asserts on it: it does
 * what is safe without the answer, returns the first such error from the call that met it, and
 * retries later on its own. The cases:
 *   sending an append (leader)   prev term or a batch boundary unreadable: nothing goes to that
 *                                follower now; its progress is unchanged and the next
 *                                raft_tick sends it (append_owed in its progress)
 *   commit advancement (leader)  the term at the quorum match unreadable: commit stays; the next
 *                                raft_tick, append response or persist completion retries
 *   append response rejection    the backtracking lookup unreadable: next stays; the follower
 *     (leader)                   is probed again on its next heartbeat response
 *   receiving an append, a log   the prev/entry term or the rejection hint unreadable: the
 *     start or a vote request    message is dropped unanswered (as if lost; the sender retries)
 *                                after the common term handling; raft_step returns the error
 *   campaigning                  the last term unreadable: no election starts (term and vote
 *                                untouched); raft_tick returns the error and the next tick
 *                                tries again; raft_campaign / TIMEOUT_NOW return it
 *   applying                     a committed entry unreadable: rd.committed stops before it,
 *                                rd.err is set and the rest is retried after the next input
 *                                (tick, step, persist completion)
 *   raft_new                     the configuration history cannot be read: NULL
 * An error from any of these never leaves the node unsafe: the caller counts or logs it and
 * carries on. log_ops.start and last_index are metadata every log keeps in memory (Kafka's log
 * start offset and log end offset) and cannot fail.
 *
 * Pointers inside a ready stay valid until the next call into this raft handle, except that
 * raft_append_unsent may be called while walking rd.msgs. */
#ifndef LAMINAR_CONSENSUS_RAFT_H
#define LAMINAR_CONSENSUS_RAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RAFT_NODES_MAX          16 /* voters + learners in one group */
#define RAFT_READY_INFLIGHT_MAX 64 /* persists handed out and not yet reported */
#define RAFT_NONE               0u /* no node (node ids start at 1) */

enum raft_entry_type {
    RAFT_ENTRY_NORMAL = 0, /* a data batch */
    RAFT_ENTRY_NOOP = 1,   /* leader's first entry of its term (Kafka LeaderChange control batch) */
    RAFT_ENTRY_CONF = 2,   /* full new configuration (KIP-853 VotersRecord control batch) */
};

struct raft_entry {
    int64_t first_index; /* first Kafka offset of the batch */
    int64_t last_index;  /* last Kafka offset of the batch */
    uint64_t term;       /* partitionLeaderEpoch */
    uint8_t type;        /* enum raft_entry_type */
    uint32_t len;
    uint8_t *data;
    /* the entry's bytes in an append when data is not read (the log's batch size), 0 when
     * unknown: len counts then */
    uint32_t bytes;
};

/* A configuration: voters count for elections and commit; learners only receive the log. */
struct raft_conf {
    uint32_t n_voters;
    uint32_t voters[RAFT_NODES_MAX];
    uint32_t n_learners;
    uint32_t learners[RAFT_NODES_MAX];
};

/* The point the log starts after: entries <= index are gone (retention, DeleteRecords or a
 * snapshot). For a partition payload is empty; for the controller it is the state machine
 * snapshot at index. */
struct raft_log_start {
    int64_t index; /* last index covered; the log's first present offset is index + 1 */
    uint64_t term; /* term of the entry at index (0 for an empty log start) */
    struct raft_conf conf;
    uint32_t payload_len;
    uint8_t *payload;
};

struct raft_hard_state {
    uint64_t term;
    uint32_t vote;
    int64_t commit;
};

/* Log read interface. storage/ serves it from a partition log; consensus/raft_memlog.h is the
 * in-memory version for tests. Raft only reads through it; the caller writes what readies hand
 * out, then reports raft_persisted. For a partition log:
 *   entry_at(i)   the batch whose [baseOffset, baseOffset + lastOffsetDelta] holds offset i
 *                 (offset index lookup); term = partitionLeaderEpoch (so terms stay <= INT32_MAX);
 *                 type = NOOP/CONF for our control batches, NORMAL otherwise; data = batch bytes
 *   last_index    log end offset - 1
 *   start         log start offset - 1, the epoch of the batch ending there and the voter set
 *                 in force there (kept in the partition's checkpoint file beside the leader-epoch
 *                 cache); payload empty, or the controller's snapshot
 * Writes: a ready's entries mean "truncate to entries[0].first_index, then append"; a start
 * change means "delete everything, log start offset = start.index + 1". */
struct raft_log_ops {
    void *ctx;
    /* start: the current log start (borrowed pointers, valid until the log changes). */
    void (*start)(void *ctx, struct raft_log_start *out);
    /* last_index: last offset present, or start.index for an empty log. */
    int64_t (*last_index)(void *ctx);
    /* entry_at: the batch containing offset index (start.index < index <= last); data borrowed
     * until the log changes. Returns 0, or the read's error (LM_E_IO, LM_E_CRC...): raft handles
     * it as described above. An offset in that range reported missing is LM_E_CORRUPT to raft. */
    int (*entry_at)(void *ctx, int64_t index, struct raft_entry *out);
};

enum raft_msg_type {
    RAFT_MSG_APP = 1,
    RAFT_MSG_APP_RESP,
    RAFT_MSG_VOTE,
    RAFT_MSG_VOTE_RESP,
    RAFT_MSG_PREVOTE,
    RAFT_MSG_PREVOTE_RESP,
    RAFT_MSG_HEARTBEAT,
    RAFT_MSG_HEARTBEAT_RESP,
    RAFT_MSG_LOG_START, /* InstallSnapshot: follower is behind the leader's log start */
    RAFT_MSG_TIMEOUT_NOW,
    RAFT_MSG_TYPE_MAX,
};

struct raft_msg {
    uint8_t type;
    bool reject;
    bool force; /* vote from a leadership transfer: ignore the leader lease */
    /* HEARTBEAT: the leader quiesces (raft_quiesce); HEARTBEAT_RESP: the follower did too */
    bool quiesce;
    uint64_t group;
    uint32_t from, to;
    uint64_t term;
    int64_t index;     /* APP: prev index; VOTE: last index; APP_RESP: match or rejected prev */
    uint64_t log_term; /* APP: prev term; VOTE: last term */
    int64_t commit;
    /* APP_RESP reject: fast backtracking hint (Raft §5.3, etcd). HEARTBEAT and APP: a context
     * of the shell's (raft sends 0), which the HEARTBEAT_RESP and a successful APP_RESP carry
     * back unchanged */
    int64_t hint_index;
    uint64_t hint_term;
    int64_t ent_last;            /* APP: last offset of the entries named (index when none) */
    uint64_t ent_last_term;      /* APP: term of the batch ending at ent_last */
    uint32_t n_entries;          /* APP: batches in (index, ent_last] */
    struct raft_entry *entries;  /* APP: NULL in a descriptor; n_entries entries once resolved */
    struct raft_log_start start; /* LOG_START */
};

enum raft_role { RAFT_FOLLOWER = 0, RAFT_PRE_CANDIDATE, RAFT_CANDIDATE, RAFT_LEADER };

/* Counters of elections and leadership changes, shared by the groups of one thread (the owner's
 * to read; raft only increments them). */
struct raft_stats {
    uint64_t timeout_campaigns; /* election timer ran out: a (pre-)campaign began */
    uint64_t elections;         /* real elections begun (term raised, own vote) */
    uint64_t elections_won;
    uint64_t quorum_stepdowns; /* a leader that heard from no majority for a timeout */
    uint64_t term_stepdowns;   /* a leader that met a higher term */
};

struct raft_config {
    uint32_t id;
    uint64_t group;
    uint32_t election_ticks; /* randomized timeout in [election_ticks, 2*election_ticks) */
    uint32_t heartbeat_ticks;
    uint32_t max_inflight;    /* append messages in flight per follower (flow control) */
    uint32_t max_msg_entries; /* entries per append message */
    /* bytes of entries per append message (0: no bound); the first entry goes whatever its
     * size, so a follower behind by many large batches catches up in bounded messages */
    uint32_t max_msg_bytes;
    uint32_t max_apply_entries; /* committed entries per ready */
    bool pre_vote;
    bool check_quorum;
    uint64_t rand_seed;
    int64_t applied; /* state machine position on start (-1: log start) */
    /* The log holds no CONF entries: the configuration is the log start's, so raft_new reads
     * no entry to rebuild the history (O(1) instead of one read per entry) and
     * raft_propose_conf is refused (LM_E_STATE). A partition with a fixed replica set. */
    bool conf_fixed;
    /* The log is the state machine: committed entries are not handed out in readies (applied
     * follows commit without reading them). */
    bool no_apply;
    /* When the configuration is this node alone: start as leader at term max(hs term, last
     * log term, 1) with vote = self, without an election and without a NOOP entry, and commit
     * entries of earlier terms directly. Safe because no other node can ever lead or vote in
     * a one-voter group, so Raft's §5.4.2 rule (commit earlier terms only through one of your
     * own) guards against nothing; and the hard state needs no write, since every start
     * derives the same term from the same log. Requires conf_fixed. */
    bool lone_resume;
    struct raft_stats *stats; /* may be NULL */
};

struct raft_ready {
    uint64_t persist_id; /* != 0: persist what follows, then call raft_persisted(persist_id) */
    bool hs_changed;
    struct raft_hard_state hs;
    bool start_changed; /* drop the whole log; it now starts after start.index */
    struct raft_log_start start;
    size_t n_entries; /* overwrite the log from entries[0].first_index */
    const struct raft_entry *entries;
    size_t n_msgs; /* send now (their dependencies are durable) */
    const struct raft_msg *msgs;
    size_t n_committed; /* apply in order; also after a start_changed restore */
    const struct raft_entry *committed;
    int err; /* != 0: a log read failed while filling committed (see LOG READS MAY FAIL) */
    bool soft_changed;
    enum raft_role role;
    uint32_t leader;
};

enum raft_progress_state { RAFT_PR_PROBE = 0, RAFT_PR_REPLICATE, RAFT_PR_SNAPSHOT };

/* A leader's view of one peer (read-only to callers). */
struct raft_progress {
    uint32_t id;
    int64_t match, next;
    uint8_t state;
    bool probe_sent, recent_active;
    bool append_owed; /* an append to it was put off by a failed read: the next tick sends it */
    int64_t pending_start;
    uint32_t inflight_count, inflight_head;
    int64_t *inflight; /* ring of last indices sent, max_inflight long */
};

struct raft;

/* raft_new builds a node from its durable state: the log (borrowed for the raft's lifetime) and
 * the last persisted hard state (copied; NULL for a fresh node). Returns NULL on bad config, out
 * of memory or a failed log read. */
struct raft *raft_new(const struct raft_config *cfg, const struct raft_log_ops *log,
                      const struct raft_hard_state *hs);
/* raft_free releases the node and everything it owns. */
void raft_free(struct raft *r);

/* raft_tick advances logical time by one tick and retries what a failed log read put off.
 * Returns 0 or the error of a log read that failed during this tick (the tick still happened). */
int raft_tick(struct raft *r);
/* raft_step handles one received message (borrowed; entries are copied). LM_E_INVALID for a
 * message not for this node or group, a malformed one, or an unresolved APP descriptor; a log
 * read error when one made raft drop the message or put off a send (see LOG READS MAY FAIL). */
int raft_step(struct raft *r, const struct raft_msg *m);
/* raft_campaign starts an election now (pre-vote first when enabled); a log read error leaves
 * the node as it was. */
int raft_campaign(struct raft *r);
/* raft_hold_elections(r, true): a follower whose election timer runs out does not campaign
 * (pre-vote included) until raft_hold_elections(r, false); then the next tick past the timeout
 * does. raft_campaign still campaigns. For the replicas of a new group while its preferred
 * replica, alive, makes the first election. */
void raft_hold_elections(struct raft *r, bool hold);
/* raft_propose appends a data batch of `count` offsets (leader only; LM_E_STATE elsewhere,
 * LM_E_AGAIN during a leadership transfer). data is copied. *last_out gets its last offset. */
int raft_propose(struct raft *r, const void *data, uint32_t len, uint32_t count, int64_t *last_out);

enum raft_conf_op { RAFT_CONF_ADD_LEARNER = 1, RAFT_CONF_PROMOTE, RAFT_CONF_REMOVE };
/* raft_propose_conf proposes one single-server change (Raft thesis §4.1). Rejected with
 * LM_E_AGAIN while a change is uncommitted or the leader has no committed entry of its term yet,
 * and a PROMOTE of a learner that has not caught up to the commit index. */
int raft_propose_conf(struct raft *r, enum raft_conf_op op, uint32_t node);
/* raft_conf_unfix lets a node opened with conf_fixed change its configuration from now on
 * (raft_propose_conf): its history is empty, the log start's configuration is in force. It
 * drops lone_resume too (which requires a fixed configuration). */
void raft_conf_unfix(struct raft *r);
/* raft_conf_pending: a leader's last configuration change is not committed yet (another one is
 * refused until it is). */
bool raft_conf_pending(const struct raft *r);
/* raft_transfer_leader hands leadership to voter `to` (TimeoutNow once it is caught up). A log
 * read error means the transfer stands and its catch-up append goes out at the next tick. */
int raft_transfer_leader(struct raft *r, uint32_t to);
/* raft_append_unsent reports that the shell could not send APP descriptor m from a ready
 * (raft_log_resolve failed with err: the log was truncated or compacted since, or a read
 * failed). Raft takes it as a lost message: a follower in pipelined replication goes back to
 * probing from its match, and the next tick sends it a fresh append, or its log start if the
 * range is gone. Reports of another term or from a former leader are ignored. It sends nothing
 * itself and does not invalidate the ready being walked. */
int raft_append_unsent(struct raft *r, const struct raft_msg *m, int err);

/* QUIESCENCE (CockroachDB's quiesced ranges). A group with nothing to replicate needs no
 * heartbeats, and a node with thousands of idle groups spends its time on them. The shell asks
 * a leader to quiesce when it sees no use for heartbeats; raft agrees only when every member's
 * match is the last index, which is committed, durable and of the leader's term, with no
 * transfer, configuration change or retried send under way. It then sends each member a last
 * HEARTBEAT with quiesce set and stops: raft_tick does nothing (no heartbeat, no check-quorum).
 * A follower that holds exactly that log, committed and durable, quiesces too and says so in
 * its answer (quiesce set); one that does not answers with reject set, which wakes the leader.
 * A quiescent follower's ticks do nothing either: no election timer.
 *   Waking: any raft_step except the leader's quiescing heartbeat (at a follower) and a plain
 *   heartbeat answer of its term (at the leader); raft_propose, raft_propose_conf,
 *   raft_transfer_leader, raft_campaign, raft_append_unsent; raft_wake. A leader that wakes
 *   heartbeats at once and starts a fresh check-quorum period in which no follower counts as
 *   active yet; a follower that wakes keeps its leader and starts a fresh election timeout.
 *   Becoming follower or leader (a new term) ends quiescence.
 *   Safety: raft's own safety never depends on ticks. Liveness does: a quiescent follower
 *   never times out, so the shell must raft_wake it when its leader's node is lost; then it
 *   campaigns after an election timeout like a follower whose leader just went silent, and
 *   grants no vote before that (its check-quorum lease runs from the wake, which comes after
 *   its last contact with the leader). A quiescent leader cut off from its followers keeps
 *   its role until something wakes it: it is the shell's business not to take that role as a
 *   read lease (consensus/README.md, "Quiescence"). */
/* raft_quiesce asks a leader to quiesce; true when it did (or already was). */
bool raft_quiesce(struct raft *r);
/* raft_wake ends quiescence (nothing when not quiescent). */
void raft_wake(struct raft *r);
/* raft_wake_silent wakes a quiescent follower whose shell has not delivered it a message from
 * its leader for silent_ticks ticks (counted from the latest APP, HEARTBEAT or LOG_START it
 * received from anyone: never less than the truth): its election timer resumes as if it had
 * ticked all along, capped one tick short of election_ticks, so it grants votes from its next
 * tick when that long has passed (never before an awake follower would) and campaigns after
 * its randomized timeout; and it sends its leader a refused HEARTBEAT_RESP, which wakes a
 * quiescent leader that is still there: its heartbeats then arrive before anyone votes. A
 * leader wakes as with raft_wake. */
void raft_wake_silent(struct raft *r, uint32_t silent_ticks);
/* raft_quiescent says whether the group is quiescent on this node. */
bool raft_quiescent(const struct raft *r);

/* raft_has_ready says whether raft_ready would return anything. */
bool raft_has_ready(const struct raft *r);
/* raft_ready fills rd (pointers owned by r, valid until the next call on r). */
void raft_ready(struct raft *r, struct raft_ready *rd);
/* raft_persisted reports that everything in the ready with this persist_id is durable.
 * LM_E_INVALID for an id out of order; otherwise 0 or the error of a log read that put off a
 * commit advancement (the completion itself is recorded). */
int raft_persisted(struct raft *r, uint64_t persist_id);

/* Queries. */
enum raft_role raft_role(const struct raft *r);
uint64_t raft_term(const struct raft *r);
uint32_t raft_leader(const struct raft *r);
uint32_t raft_id(const struct raft *r);
int64_t raft_commit(const struct raft *r);
int64_t raft_applied(const struct raft *r);
int64_t raft_last_index(const struct raft *r);
/* raft_log_term gives the term at offset index of this node's (possibly unpersisted) log. */
int raft_log_term(const struct raft *r, int64_t index, uint64_t *term);
/* raft_conf is the latest configuration in the log (used as soon as appended, thesis §4.1). */
const struct raft_conf *raft_conf(const struct raft *r);
/* raft_conf_at is the configuration in force at offset index (for a new log start). */
int raft_conf_at(const struct raft *r, int64_t index, struct raft_conf *out);
/* raft_transferring: a leader handing its leadership over (raft_transfer_leader), which
 * refuses proposals (LM_E_AGAIN) until the transfer completes or is abandoned. */
bool raft_transferring(const struct raft *r);
/* raft_progress returns the leader's progress for a peer, or NULL. */
const struct raft_progress *raft_progress(const struct raft *r, uint32_t id);

/* Helpers. */
bool raft_conf_is_voter(const struct raft_conf *c, uint32_t id);
bool raft_conf_is_learner(const struct raft_conf *c, uint32_t id);
/* raft_conf_encode writes c into buf (cap bytes); returns bytes written or LM_E_TOO_LARGE. */
int raft_conf_encode(const struct raft_conf *c, uint8_t *buf, size_t cap);
int raft_conf_decode(const uint8_t *buf, size_t len, struct raft_conf *out);
/* raft_log_resolve fills out[0..m->n_entries) with the entries APP descriptor m names, read
 * through log (data borrowed from the log, valid until it changes). Returns 0; LM_E_OUT_OF_RANGE
 * when part of the range is at or below the log start (compacted since); LM_E_NOT_FOUND when the
 * log no longer holds the batches named (truncated, or overwritten by another term); a read
 * error from the log; LM_E_INVALID when m is not an APP or cap is too small. */
int raft_log_resolve(const struct raft_log_ops *log, const struct raft_msg *m,
                     struct raft_entry *out, uint32_t cap);
/* raft_msg_resolve is raft_msg_copy for the wire: an APP descriptor gets its entries resolved
 * through log and copied into dst (the bytes a transport sends); other messages are copied as
 * they are. On error (see raft_log_resolve) dst holds nothing to free. */
int raft_msg_resolve(struct raft_msg *dst, const struct raft_msg *src,
                     const struct raft_log_ops *log);
/* raft_msg_copy deep-copies src into dst (entries and payload allocated); raft_msg_deinit frees. */
int raft_msg_copy(struct raft_msg *dst, const struct raft_msg *src);
void raft_msg_deinit(struct raft_msg *m);
const char *raft_msg_type_name(uint8_t type);
const char *raft_role_name(enum raft_role role);

#endif
