/* The controller: cluster metadata as one Raft group (group 0) over the nodes named by
 * controller.quorum.voters (DESIGN.md §4), and every node's image of it.
 *
 * The group's log is a partition log (broker/partition/: the same Raft, storage and group
 * commit as any partition) in <first log dir>/__cluster_metadata-0. Each batch holds one
 * metadata record (broker/meta/meta_state.h); the committed log, applied in order by every
 * node to its lm_meta_store (lm_meta_store_apply), is the cluster's metadata. The controller
 * lives on shard 0 of each node:
 *
 * - Raft messages travel as internal requests (API key CONTROLLER_API_KEY, Kafka framing) over
 *   the voters' CONTROLLER listeners; a received one is handed to shard 0.
 * - controller_submit (any shard) proposes a record: at once on the leader, else forwarded to
 *   the leader (KIP-590's role); done once the record is committed and applied on this node,
 *   with the apply's verdict (a record that does not apply changes nothing anywhere).
 * - Every node registers (BROKER_REGISTER: its advertised listeners, rack, a fresh
 *   incarnation per start) and sends a heartbeat to the leader each second; the leader fences
 *   a node not heard for broker.session.timeout.ms and unfences it when it is heard again
 *   (KRaft's broker heartbeats), or that SWIM (membership.h) declares dead, so Metadata lists
 *   live nodes only.
 * - Every laminar.metadata.snapshot.records applied records a node snapshots its image
 *   (meta_snapshot.h) and trims its log; a node behind a trimmed log loads another's snapshot.
 * - A process.roles=broker node is an observer: it reads the committed log from the voters.
 * - With laminar.cluster.secret every internal request carries an HMAC-SHA256 of its body. */
#ifndef LAMINAR_BROKER_CLUSTER_CONTROLLER_H
#define LAMINAR_BROKER_CLUSTER_CONTROLLER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/meta/meta_store.h"
#include "broker/runtime.h"

/* laminar's internal API (never a Kafka key: Kafka's stay well below it), served on the
 * controller listeners only. */
#define CONTROLLER_API_KEY    127
#define CONTROLLER_VOTERS_MAX 5
#define CONTROLLER_SHARD      0u

struct controller;

struct controller_voter {
    int32_t id;
    char host[256];
    uint16_t port;
};

/* Parses controller.quorum.voters ("1@h1:9093,2@h2:9093,..."). Returns the count (0 when the
 * key is unset or empty: a single node), or LM_E_CONFIG with a message in err. */
int controller_parse_voters(const char *v, struct controller_voter *out, size_t cap, char *err,
                            size_t err_len);

/* Creates the node's controller (before the runtime starts; nothing runs until
 * controller_shard_start on shard 0). Switches store to cluster mode. Returns 0, LM_E_CONFIG
 * (a message is logged) or LM_E_NOMEM. */
int controller_create(const struct broker_config *cfg, struct lm_meta_store *store,
                      struct controller **out);
void controller_destroy(struct controller *c);
/* True when cfg asks for a cluster (controller.quorum.voters set). */
bool controller_configured(const struct broker_config *cfg);

/* Shard 0's hooks. */
int controller_shard_start(struct controller *c, struct broker_shard *s);
/* Shutdown begins: submissions not yet proposed fail with LM_E_CLOSED. */
void controller_shard_drain(struct controller *c);
void controller_shard_stop(struct controller *c);

/* Internal requests about one replicated partition (the first body byte): its raft traffic
 * (PARTITION_RAFT) and a request to its leader to hand leadership to a replica
 * (PARTITION_ELECT, ElectLeaders). After the cluster secret's check they go to fn on the
 * receiving shard with the whole body, that byte included (fn answers req). */
#define CONTROLLER_KIND_PARTITION_RAFT  6
#define CONTROLLER_KIND_PARTITION_ELECT 7
/* ... and from its leader to a follower: the log start offset DeleteRecords set (i64). */
#define CONTROLLER_KIND_PARTITION_LOG_START 8
/* ... and several partitions' raft messages for one node in one request (heartbeats and their
 * answers, coalesced per node pair): u16 count, then per message u16 topic length, topic, i32
 * partition, u32 length, the raft_wire message. */
#define CONTROLLER_KIND_PARTITION_RAFT_BATCH 9
/* ... and a node's liveness to another node, per node pair on the replication connections
 * (then the sender's i32 node id; answered at once with one byte): the receiver takes it as
 * news from that node, which its quiescent partitions' followers go by. */
#define CONTROLLER_KIND_NODE_PING 10
typedef void (*controller_partition_fn)(void *ctx, struct broker_req *req, const uint8_t *body,
                                        size_t len);
void controller_set_partition_handler(struct controller *c, controller_partition_fn fn, void *ctx);
/* Bytes of the MAC after an internal request body (0 without a cluster secret), and writing
 * it after buf[0..len) (false when it cannot be computed). */
size_t controller_mac_bytes(const struct controller *c);
bool controller_sign(const struct controller *c, uint8_t *buf, size_t len);

/* Serves an internal request (the handler layer registers CONTROLLER_API_KEY on the
 * controller listeners' tables and calls this with the node's controller). */
void controller_handle(struct controller *c, struct broker_req *req);

/* Controlled shutdown, on the controller's shard: while this node leads the controller
 * group, hands the leadership to the most caught-up voter (again each second until it has
 * moved). Returns whether this node still leads. */
bool controller_handoff(struct controller *c);

/* Whether this node has applied the metadata log past its own registration (then its image
 * is as complete as the cluster's was when it joined). Any thread. */
bool controller_caught_up(const struct controller *c);

/* Whether this node's metadata image held, within about the last second, everything the
 * controller group had committed as far as this node could tell (its metadata log working,
 * a leader of the current term heard and its commit index applied; an observer: a fetch
 * answer applied up to its high watermark). False while the node is cut off from the
 * controller leader or its metadata log failed: the image may lag the cluster's by any
 * amount. Any thread. */
bool controller_image_fresh(const struct controller *c, uint64_t now);

/* The current leader of the controller group as this node knows it, or -1. Any thread. */
int32_t controller_leader(const struct controller *c);
/* SWIM members by state (alive, suspect, dead, left) as of the controller's last tick; safe
 * from any thread (for /metrics). */
void controller_swim_counts(const struct controller *c, uint32_t out[4]);
/* The SWIM members (node id, state: 0 alive, 1 suspect, 2 dead, 3 left) as of the controller's
 * last tick, at most cap; safe from any thread (the console). The result may mix two ticks. */
enum { CONTROLLER_SWIM_STATES_MAX = 64 };
size_t controller_swim_states(const struct controller *c, int32_t *ids, uint8_t *states,
                              size_t cap);
int32_t controller_node_id(const struct controller *c);

/* A record for the controller. The caller owns the struct and rec until done runs on the
 * calling shard. rc: 0 (committed and applied here), the apply's refusal (LM_E_EXISTS,
 * LM_E_NOT_FOUND, LM_E_INVALID, LM_E_FULL, LM_E_STATE), LM_E_TIMEOUT (no leader took it within
 * timeout_ms) or LM_E_CLOSED (shutting down). offset: where it was committed. */
struct controller_submit {
    const uint8_t *rec;
    size_t len;
    uint32_t timeout_ms; /* 0: 15000 */
    void (*done)(struct broker_shard *s, struct controller_submit *sub);
    void *arg;
    int rc;
    int64_t offset;
    /* private */
    struct broker_xcall x_;
    struct controller *c_;
    struct controller_submit *next_;
    uint64_t deadline_ms_;
    uint64_t retry_at_ms_;
    int state_;
    uint32_t leader_;
    void *call_;
};
void controller_submit(struct controller *c, struct broker_shard *s, struct controller_submit *sub);

#endif
