/* Cluster metadata as a pure state machine: topics (name, id, partition count, config
 * overrides) and the producer-id allocator, changed only by applying records. On a single node
 * the records live in a local log (meta_store.h); in a cluster the same records become the
 * entries of the controller's Raft log (DESIGN.md §4), so nothing here knows about files. */
#ifndef LAMINAR_BROKER_META_META_STATE_H
#define LAMINAR_BROKER_META_META_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/meta/topic_config.h"
#include "broker/security/authorizer.h"
#include "broker/security/quota.h"

#define LM_TOPIC_NAME_MAX        249 /* Kafka's limit on topic names */
#define LM_META_PARTITIONS_MAX   100000
#define LM_META_CONFIGS_MAX      64
#define LM_META_CONFIG_VALUE_MAX 4096

enum lm_meta_record_type {
    LM_META_TOPIC_CREATE = 1,   /* topic, topic_id, partition_count, configs */
    LM_META_TOPIC_DELETE = 2,   /* topic */
    LM_META_PARTITIONS_SET = 3, /* topic, partition_count (only grows) */
    LM_META_TOPIC_CONFIGS = 4,  /* topic, configs: replaces every override of the topic */
    LM_META_PRODUCER_IDS = 5,   /* producer_id_next: ids below it are handed out */
    /* Cluster (the controller's log): a node's registration and its liveness. */
    LM_META_BROKER_REGISTER = 6, /* broker_id, incarnation, rack, endpoints (unfenced) */
    LM_META_BROKER_FENCE = 7,    /* broker_id, incarnation, fenced */
    /* A replicated partition's Raft group elected a leader, or its leader's view of the ISR
     * changed (KRaft's PartitionChangeRecord role): topic, partition (partition_count),
     * broker_id = the leader, leader_epoch, isr_out. */
    LM_META_PARTITION_LEADER = 8,
    /* SCRAM credentials (KIP-554, KRaft's UserScramCredentialRecord): user, scram_mechanism,
     * scram_iterations, scram_salt, scram_stored_key, scram_server_key (insert or replace) */
    LM_META_SCRAM_SET = 9,
    LM_META_SCRAM_DELETE = 10, /* user, scram_mechanism */
    /* ACL bindings (KIP-801, KRaft's AccessControlEntryRecord / RemoveAccessControlEntryRecord):
     * acl_id and the binding (acl_*) to add; acl_id alone to remove. */
    LM_META_ACL_CREATE = 11,
    LM_META_ACL_DELETE = 12,
    /* A replicated partition's replica set changes (KIP-455; KRaft's PartitionChangeRecord
     * replicas, addingReplicas, removingReplicas): topic, partition (partition_count),
     * replicas (replication_factor of them) = its replicas from now on, adding and removing
     * = the nodes a reassignment in progress adds and removes (both empty: none is). */
    LM_META_PARTITION_REASSIGN = 13,
    /* A client quota (KIP-546, KRaft's ClientQuotaRecord): the entity (quota_user_part /
     * quota_user, quota_client_part / quota_client), quota_key, and quota_value to set it or
     * quota_remove to drop it. An entity left without keys leaves the image. */
    LM_META_QUOTA = 14,
    /* Dynamic broker configs (KRaft's ConfigRecord for BROKER resources): broker_id (a node,
     * or -1 for the cluster-wide default) and configs, which replace every dynamic config of
     * that entity (none: the entity leaves the image). Keys and values as
     * lm_broker_dynamic_config_validate accepts them. */
    LM_META_BROKER_CONFIGS = 15,
    /* Dynamic group configs (KRaft's ConfigRecord for GROUP resources): group and configs,
     * which replace every config of that group (none: the group leaves the image). Keys and
     * values as lm_group_config_validate accepts them. */
    LM_META_GROUP_CONFIGS = 16,
    /* A finalized feature level (KIP-584, KRaft's FeatureLevelRecord): feature, feature_level.
     * Only transaction.version (0-2) is changeable; UpdateFeatures writes it. */
    LM_META_FEATURE_LEVEL = 17,
    /* A topic id that may never be created again (topic_id): TOPIC_DELETE retires the id it
     * removes; snapshots carry the retired ids as these records, oldest first. */
    LM_META_TOPIC_RETIRED = 18,
    /* A block of producer ids for one node (Kafka's ProducerIdsRecord, granted through the
     * controller as AllocateProducerIds): broker_id, producer_id_from, producer_id_next = the
     * block [from, next). Applies only where producer_id_next is from (a node asking with a
     * stale image is refused and asks again), so no two nodes are ever granted one id, and a
     * node that lost its disk cannot hand out the ids it handed out before. */
    LM_META_PRODUCER_ID_BLOCK = 19,
};

/* The most ids one PRODUCER_ID_BLOCK grants. */
#define LM_META_PRODUCER_ID_BLOCK_MAX ((int64_t)1 << 24)

/* The most retired topic ids the image remembers (a FIFO: the oldest goes first). A
 * TOPIC_CREATE of a retired id is refused: a submission retried after its first attempt had
 * committed (its answer lost with a leader change) must not bring back a topic deleted since. */
#define LM_META_RETIRED_IDS_MAX 4096

#define LM_META_FEATURE_TRANSACTION_VERSION "transaction.version"
#define LM_META_TRANSACTION_VERSION_MAX     2
/* transaction.version of a metadata image that never recorded one: a new cluster's level, as
 * Kafka 4.1 formats it (the latest production level, 2). */
#define LM_META_TRANSACTION_VERSION_DEFAULT 2

/* The most groups with configs the image holds (IncrementalAlterConfigs past it fails). */
#define LM_META_GROUP_CONFIGS_MAX 10000
#define LM_META_GROUP_NAME_MAX    255 /* bytes of a group id with configs */

/* The node id of the cluster-wide default entity of LM_META_BROKER_CONFIGS. */
#define LM_META_BROKER_DEFAULT (-1)

/* The most quota entities the image holds (AlterClientQuotas past it fails with
 * POLICY_VIOLATION). */
#define LM_META_QUOTAS_MAX 10000

/* The most ACL bindings the image holds (bounded memory; CreateAcls past it fails with
 * POLICY_VIOLATION). */
#define LM_META_ACLS_MAX 10000

#define LM_META_SCRAM_USER_MAX  255 /* bytes of a user name */
#define LM_META_SCRAM_SALT_MAX  128
#define LM_META_SCRAM_KEY_MAX   64 /* SHA-512 */
#define LM_META_SCRAM_USERS_MAX 100000
#define LM_META_SCRAM_ITERS_MIN 4096  /* Kafka's ScramMechanism minimum */
#define LM_META_SCRAM_ITERS_MAX 16384 /* Kafka's ScramControlManager maximum */

/* A SCRAM credential (RFC 5802 §3's stored values). mechanism: Kafka's ScramMechanism type, 1
 * SCRAM-SHA-256 (32-byte keys), 2 SCRAM-SHA-512 (64-byte keys). */
struct lm_meta_scram {
    char user[LM_META_SCRAM_USER_MAX + 1];
    int8_t mechanism;
    int32_t iterations;
    uint32_t salt_len;
    uint8_t salt[LM_META_SCRAM_SALT_MAX];
    uint8_t stored_key[LM_META_SCRAM_KEY_MAX];
    uint8_t server_key[LM_META_SCRAM_KEY_MAX];
};

#define LM_META_BROKERS_MAX     1024
#define LM_META_RACK_MAX        64
#define LM_META_ENDPOINTS_MAX   512
#define LM_META_REPLICATION_MAX 16

/* One change. Strings and arrays are borrowed from the caller. */
struct lm_meta_record {
    enum lm_meta_record_type type;
    const char *topic;
    uint8_t topic_id[16];
    int32_t partition_count;
    const struct lm_config_entry *configs;
    size_t config_count;
    int64_t producer_id_next;
    int64_t producer_id_from; /* PRODUCER_ID_BLOCK */
    /* TOPIC_CREATE (every partition) and PARTITIONS_SET (the new ones): the replica
     * assignment in a cluster, replicas[i * replication_factor + j] = replica j of partition
     * (first new partition + i), replica 0 the preferred leader. NULL on a single node (every
     * partition is the local node's). */
    const int32_t *replicas;
    int16_t replication_factor;
    int32_t replicas_partitions; /* PARTITIONS_SET: rows in replicas (new partitions) */
    /* BROKER_REGISTER, BROKER_FENCE */
    int32_t broker_id;
    uint64_t incarnation;  /* a new value per process start */
    const char *rack;      /* REGISTER: "" for none */
    const char *endpoints; /* REGISTER: advertised listeners, "NAME://host:port,..." */
    bool fenced;           /* FENCE */
    int32_t leader_epoch;  /* PARTITION_LEADER */
    /* PARTITION_LEADER: bit j = replica j out of sync (an encoding trailer; records written
     * before it decode as 0). The same leader and epoch with another mask changes the ISR. */
    uint16_t isr_out;
    const char *group; /* GROUP_CONFIGS */
    /* SCRAM_SET, SCRAM_DELETE */
    const char *user;
    int8_t scram_mechanism;
    int32_t scram_iterations;
    const uint8_t *scram_salt;
    uint32_t scram_salt_len;
    const uint8_t *scram_stored_key; /* lm_meta_scram_key_len(scram_mechanism) bytes */
    const uint8_t *scram_server_key;
    /* ACL_CREATE (all), ACL_DELETE (acl_id) */
    uint8_t acl_id[16];
    int8_t acl_resource_type, acl_pattern_type, acl_operation, acl_permission;
    const char *acl_name, *acl_principal, *acl_host;
    /* PARTITION_REASSIGN: subsets of replicas, disjoint */
    const int32_t *adding;
    int16_t n_adding;
    const int32_t *removing;
    int16_t n_removing;
    /* PARTITION_REASSIGN from the partition's leader (Kafka's AlterPartition role): its Raft
     * group's configuration is the target, replicas; applies only while that reassignment is
     * still in progress (a cancel or a new target since refuses it, LM_E_STATE). An encoding
     * trailer: records without it decode as false. */
    bool reassign_done;
    /* PARTITION_REASSIGN from AlterPartitionReassignments: planned from the replicas the
     * requesting node's image lists (a new target, a cancel), so it applies only while it still
     * lists every replica the partition lists (LM_E_STATE otherwise). A record planned from an
     * image behind the controller's, or racing another request planned from the same image,
     * would drop a replica the move in progress is adding, which the partition's Raft group may
     * count as a voter already: only the leader's completion (reassign_done), sent once the
     * group committed the removal, drops replicas. An encoding trailer (2): records without it
     * (and snapshots, which set the state as it is) decode as false. */
    bool reassign_keep;
    /* PARTITION_REASSIGN: the number of a move (lm_meta_moved.move; 0: unknown). A request's
     * (a new target, a cancel) is not in its encoding: the controller's log gives it at apply,
     * lm_meta_record_stamp. A completion carries the number of the move the leader finished
     * (trailer 3: u8 3, be64 number) and applies only to that move: one retried late, after a
     * cancel and a new move to the same target, would otherwise drop a replica the cancel put
     * back, which the group may count as a voter again. A snapshot's record carries the number
     * of the move it restores (trailer 4: u8 4, be64 number). Records without these trailers
     * (written before them) decode as 0. */
    int64_t reassign_move;
    /* QUOTA: the parts are enum lm_quota_part; a name only with LM_QUOTA_PART_NAMED */
    uint8_t quota_user_part, quota_client_part;
    const char *quota_user, *quota_client;
    int8_t quota_key; /* enum lm_quota_key */
    double quota_value;
    bool quota_remove;
    /* FEATURE_LEVEL */
    const char *feature;
    int16_t feature_level;
};

/* The dynamic configs of one broker entity (a node, or LM_META_BROKER_DEFAULT). */
struct lm_meta_broker_configs {
    int32_t node;
    struct lm_config_entry *configs; /* owned */
    size_t count;
};

/* The dynamic configs of one group. */
struct lm_meta_group_configs {
    char *group;                     /* owned */
    struct lm_config_entry *configs; /* owned */
    size_t count;
};

/* A registered node: its advertised listeners and whether it is fenced (not alive). */
struct lm_meta_broker {
    int32_t id;
    uint64_t incarnation;
    bool fenced;
    char rack[LM_META_RACK_MAX + 1];
    char endpoints[LM_META_ENDPOINTS_MAX + 1];
};

/* A replicated partition's leader (-1 while none is known), its epoch (Raft term) and which
 * replicas it does not count in sync (bit j: replica j of the assignment has not caught up
 * within replica.lag.time.max.ms, as the leader sees it). */
struct lm_meta_leader {
    int32_t leader;
    int32_t epoch;
    uint16_t isr_out;
};

/* A partition whose replicas are not its row of the topic's assignment: reassigned, or being
 * reassigned (adding / removing not empty). During a reassignment replicas is the target
 * followed by the original replicas that are not in it, as Kafka's PartitionReassignmentReplicas
 * orders them: the target is replicas minus removing, the original replicas minus adding. */
struct lm_meta_moved {
    int32_t partition;
    int16_t n, n_adding, n_removing;
    /* The number of the last request (a new target, a cancel) applied to the partition: the
     * controller log offset of its record + 1, so any two moves of a partition differ, on
     * every node alike whatever snapshot it started from (a counter kept in the image would
     * count differently on a node that loaded a snapshot written before the counter existed).
     * 0: unknown (restored from a snapshot written before move numbers). A completion applies
     * only with this number (or an unknown one, lm_meta_record.reassign_move). */
    int64_t move;
    int32_t replicas[LM_META_REPLICATION_MAX];
    int32_t adding[LM_META_REPLICATION_MAX];
    int32_t removing[LM_META_REPLICATION_MAX];
};

struct lm_meta_topic {
    char name[LM_TOPIC_NAME_MAX + 1];
    uint8_t id[16];
    int32_t partition_count;
    struct lm_config_entry *configs; /* owned */
    size_t config_count;
    int32_t *replicas; /* owned; partition_count * replication_factor, or NULL (single node) */
    int16_t replication_factor;
    /* Per partition, what its Raft group's leader last announced (PARTITION_LEADER); NULL
     * until the first such record (owned). */
    struct lm_meta_leader *leaders;
    /* The partitions PARTITION_REASSIGN moved off their row of replicas, sorted by partition
     * (owned; empty for most topics). */
    struct lm_meta_moved *moved;
    size_t moved_count;
    size_t moved_cap;
};

struct lm_meta_state {
    struct lm_meta_topic *topics; /* owned, unsorted; lookups are linear over a bounded set */
    size_t topic_count;
    size_t topic_cap;
    int64_t producer_id_next;
    struct lm_meta_broker *brokers; /* owned, sorted by id */
    size_t broker_count;
    size_t broker_cap;
    struct lm_meta_scram *scram; /* owned, unsorted */
    size_t scram_count;
    size_t scram_cap;
    /* ACL bindings, sorted by authz_acl_cmp (the authorizer's index), owned */
    struct authz_acl *acls;
    size_t acl_count;
    size_t acl_cap;
    /* client quotas, one entry per entity with at least one key set, unsorted, owned */
    struct lm_quota_entry *quotas;
    size_t quota_count;
    size_t quota_cap;
    /* dynamic broker configs, one entry per entity with at least one set, unsorted, owned */
    struct lm_meta_broker_configs *broker_configs;
    size_t broker_config_count;
    size_t broker_config_cap;
    /* dynamic group configs, one entry per group with at least one set, unsorted, owned */
    struct lm_meta_group_configs *group_configs;
    size_t group_config_count;
    size_t group_config_cap;
    /* retired topic ids (LM_META_TOPIC_RETIRED), a ring of up to LM_META_RETIRED_IDS_MAX:
     * retired[(retired_head + i) % retired_cap] is the i-th oldest, owned */
    uint8_t (*retired)[16];
    uint32_t retired_count;
    uint32_t retired_head;
    uint32_t retired_cap;
    /* the finalized transaction.version, -1 while no FEATURE_LEVEL record set it (then
     * LM_META_TRANSACTION_VERSION_DEFAULT applies) */
    int16_t transaction_version;
    uint64_t version; /* bumped by every applied record */
};

/* Whether id is among the image's retired topic ids. */
bool lm_meta_state_id_retired(const struct lm_meta_state *s, const uint8_t id[16]);
/* The i-th oldest retired topic id (i < s->retired_count). */
const uint8_t *lm_meta_state_retired_at(const struct lm_meta_state *s, uint32_t i);

/* lm_meta_state_transaction_version returns the finalized transaction.version of an image
 * (its default when never set; s may be NULL: no image yet). */
int16_t lm_meta_state_transaction_version(const struct lm_meta_state *s);

/* The key length of a SCRAM mechanism (32 or 64), 0 for an unknown one. */
size_t lm_meta_scram_key_len(int8_t mechanism);
/* The credential of user for mechanism, or NULL. */
const struct lm_meta_scram *lm_meta_state_scram(const struct lm_meta_state *s, const char *user,
                                                int8_t mechanism);

/* The binding with id, or NULL (linear: removals are rare admin work). */
const struct authz_acl *lm_meta_state_acl(const struct lm_meta_state *s, const uint8_t id[16]);
/* The binding equal to the one r carries (authz_acl_cmp), or NULL. */
const struct authz_acl *lm_meta_state_acl_same(const struct lm_meta_state *s,
                                               const struct lm_meta_record *r);

/* The dynamic configs of a node (or LM_META_BROKER_DEFAULT), or NULL when it has none. */
const struct lm_meta_broker_configs *lm_meta_state_broker_configs(const struct lm_meta_state *s,
                                                                  int32_t node);
/* The dynamic configs of a group, or NULL when it has none. */
const struct lm_meta_group_configs *lm_meta_state_group_configs(const struct lm_meta_state *s,
                                                                const char *group);
/* The quota entry of the entity r names (LM_META_QUOTA), or NULL. */
const struct lm_quota_entry *lm_meta_state_quota(const struct lm_meta_state *s,
                                                 const struct lm_meta_record *r);
/* The entity of a LM_META_QUOTA record, copied into e; false when a name does not fit. */
bool lm_meta_quota_entity(const struct lm_meta_record *r, struct lm_quota_entity *e);

void lm_meta_state_init(struct lm_meta_state *s);
void lm_meta_state_deinit(struct lm_meta_state *s);
/* lm_meta_state_copy makes dst an independent deep copy of src (dst uninitialised). */
int lm_meta_state_copy(struct lm_meta_state *dst, const struct lm_meta_state *src);

/* lm_meta_topic_name_valid checks Kafka's rules: 1..249 chars of [a-zA-Z0-9._-], not "." or
 * "..". */
int lm_meta_topic_name_valid(const char *name);

/* lm_meta_state_check tells whether r would apply: 0, or LM_E_EXISTS (topic or id taken),
 * LM_E_NOT_FOUND (no such topic), LM_E_INVALID (bad name, count, config). No change. */
int lm_meta_state_check(const struct lm_meta_state *s, const struct lm_meta_record *r);
/* lm_meta_state_apply checks then applies r. Returns what lm_meta_state_check returns, or
 * LM_E_NOMEM; on error the state is unchanged. */
int lm_meta_state_apply(struct lm_meta_state *s, const struct lm_meta_record *r);

/* lm_meta_state_partition_total is the number of partitions of every topic together. */
int64_t lm_meta_state_partition_total(const struct lm_meta_state *s);
/* lm_meta_state_busiest_replicas is the most replicas any registered, unfenced broker holds
 * (current replica lists: a move's targets count), or -1 when no broker is live. One pass over
 * every replica list; counts is scratch the caller gives, broker_count entries. */
int64_t lm_meta_state_busiest_replicas(const struct lm_meta_state *s, int64_t *counts);
/* lm_meta_state_partitions_added is how many partitions applying r would add (0 when r adds
 * none or would not apply). */
int64_t lm_meta_state_partitions_added(const struct lm_meta_state *s,
                                       const struct lm_meta_record *r);

const struct lm_meta_topic *lm_meta_state_find(const struct lm_meta_state *s, const char *name);
const struct lm_meta_topic *lm_meta_state_find_id(const struct lm_meta_state *s,
                                                  const uint8_t id[16]);
const struct lm_meta_broker *lm_meta_state_broker(const struct lm_meta_state *s, int32_t id);
/* Host and port of b's endpoint for listener (case-insensitive), else its first; false when
 * its endpoints do not parse. */
bool lm_meta_broker_endpoint(const struct lm_meta_broker *b, const char *listener, char *host,
                             size_t host_cap, uint16_t *port);
/* The replicas of partition p of t (count in *n), or NULL when t has no assignment (single
 * node) or p is out of range. */
const int32_t *lm_meta_topic_replicas(const struct lm_meta_topic *t, int32_t p, int16_t *n);
/* The reassignment state of partition p of t, or NULL when its replicas are its row of the
 * topic's assignment. */
const struct lm_meta_moved *lm_meta_topic_moved(const struct lm_meta_topic *t, int32_t p);
/* True while partition p of t has a reassignment in progress (adding or removing replicas). */
bool lm_meta_topic_reassigning(const struct lm_meta_topic *t, int32_t p);
/* The replicas of partition p of t that hold its data now: its replicas minus those a
 * reassignment is still adding (in order). Returns their count (0: no assignment). */
int16_t lm_meta_topic_current_replicas(const struct lm_meta_topic *t, int32_t p,
                                       int32_t out[LM_META_REPLICATION_MAX]);
/* Kafka's PartitionReassignmentReplicas: the state a reassignment of a partition whose replicas
 * hold its data is `current` (n_current) to `target` (n_target) starts in: replicas = target
 * then the current ones not in it, adding = target minus current, removing = current minus
 * target. When nothing is added or removed the move is done at once: replicas = target.
 * out->partition is left to the caller. LM_E_INVALID when a list is empty, too long, or names
 * a node twice, or the union does not fit LM_META_REPLICATION_MAX. */
int lm_meta_reassign_plan(const int32_t *current, int16_t n_current, const int32_t *target,
                          int16_t n_target, struct lm_meta_moved *out);

/* The node leading partition p of t: its only current replica, or for a replicated partition
 * the leader its Raft group announced (PARTITION_LEADER); -1 when that node is fenced or none is
 * known; self for a partition without an assignment (a single node). */
int32_t lm_meta_state_partition_leader(const struct lm_meta_state *st,
                                       const struct lm_meta_topic *t, int32_t p, int32_t self);
/* Partition p's ISR and offline replicas as the image shows them: offline, the replicas on
 * nodes not registered or fenced; ISR, the others its leader counts in sync (none while it
 * has no live leader), never a replica a reassignment is still adding; for a partition without an
 * assignment (single node) the ISR is self. isr and offline have room for every replica. */
void lm_meta_state_partition_isr(const struct lm_meta_state *st, const struct lm_meta_topic *t,
                                 int32_t p, int32_t self, int32_t *isr, int32_t *n_isr,
                                 int32_t *offline, int32_t *n_offline);
/* The elected leader of partition p and its epoch (PARTITION_LEADER), or -1 and -1. */
int32_t lm_meta_topic_leader(const struct lm_meta_topic *t, int32_t p, int32_t *epoch);
/* The replicas of partition p its leader counts out of sync (lm_meta_leader.isr_out; 0 when
 * none was announced). */
uint16_t lm_meta_topic_isr_out(const struct lm_meta_topic *t, int32_t p);

/* Record encoding (for the local log and, later, the controller log). */
/* lm_meta_record_size returns the encoded size of r. */
size_t lm_meta_record_size(const struct lm_meta_record *r);
/* lm_meta_record_encode writes r into buf (cap bytes); returns bytes written or LM_E_TOO_LARGE. */
int lm_meta_record_encode(const struct lm_meta_record *r, uint8_t *buf, size_t cap);
/* lm_meta_record_decode parses buf; strings point into buf, configs are allocated into
 * *configs_out and replicas into out->replicas (the caller frees both with
 * lm_meta_record_free). Returns 0 or LM_E_*. */
int lm_meta_record_decode(const uint8_t *buf, size_t len, struct lm_meta_record *out,
                          struct lm_config_entry **configs_out);
/* What the controller's log gives a record it applies at offset: a PARTITION_REASSIGN request
 * (not a completion) starts or cancels a move numbered offset + 1 (lm_meta_moved.move). Every
 * node applies the same record at the same offset, so every image numbers the move alike. */
void lm_meta_record_stamp(struct lm_meta_record *r, int64_t offset);
/* Frees what lm_meta_record_decode allocated into r. */
void lm_meta_record_free(struct lm_meta_record *r);
void lm_meta_configs_free(struct lm_config_entry *configs, size_t count);

#endif
