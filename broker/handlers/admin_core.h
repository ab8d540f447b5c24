/* Admin request handlers: CreateTopics, DeleteTopics, CreatePartitions, the reassignment APIs,
 * DescribeConfigs, AlterConfigs, IncrementalAlterConfigs, DescribeCluster, the ACL APIs,
 * DescribeLogDirs, DescribeTopicPartitions and the feature APIs.
 * Private to broker/handlers/admin_*.c and their unit tests.
 *
 * Each API is split in two: a pure core (this header) that takes a decoded request and fills
 * the response struct, reading and committing metadata through struct admin_env, and a thin
 * wrapper in admin_register.c that decodes the frame, calls the core and sends the encoded
 * response. The cores never touch a connection, so tests drive them with a real metadata store
 * and no runtime. Everything a core allocates (response arrays, strings) comes from the
 * kafka_arena it is given; strings of the request are borrowed.
 *
 * Metadata changes are committed synchronously (lm_meta_store_commit appends and fdatasyncs
 * the metadata log); request timeouts are therefore ignored. Partition logs are opened and
 * removed by the shards when they see the new metadata version (handlers.c), not here. */
#ifndef LAMINAR_BROKER_HANDLERS_ADMIN_CORE_H
#define LAMINAR_BROKER_HANDLERS_ADMIN_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "broker/config.h"
#include "broker/meta/meta_store.h"
#include "broker/security/authorizer.h"
#include "protocol/kafka_api.h"
#include "protocol/kafka_rt.h"

/* Versions served, each a full range of the generated codec (DESIGN.md §5). */
/* The group coordinator's internal topic (broker/handlers/group_internal.h). */
#define ADMIN_OFFSETS_TOPIC "__consumer_offsets"

#define ADMIN_CREATE_TOPICS_MIN             2
#define ADMIN_CREATE_TOPICS_MAX             7
#define ADMIN_DELETE_TOPICS_MIN             1
#define ADMIN_DELETE_TOPICS_MAX             6
#define ADMIN_CREATE_PARTITIONS_MIN         0
#define ADMIN_CREATE_PARTITIONS_MAX         3
#define ADMIN_DESCRIBE_CONFIGS_MIN          0
#define ADMIN_DESCRIBE_CONFIGS_MAX          4
#define ADMIN_ALTER_CONFIGS_MIN             0
#define ADMIN_ALTER_CONFIGS_MAX             2
#define ADMIN_INCREMENTAL_ALTER_CONFIGS_MIN 0
#define ADMIN_INCREMENTAL_ALTER_CONFIGS_MAX 1
#define ADMIN_DESCRIBE_USER_SCRAM_MIN       0
#define ADMIN_DESCRIBE_USER_SCRAM_MAX       0
#define ADMIN_ALTER_USER_SCRAM_MIN          0
#define ADMIN_ALTER_USER_SCRAM_MAX          0
#define ADMIN_DESCRIBE_CLIENT_QUOTAS_MIN    0
#define ADMIN_DESCRIBE_CLIENT_QUOTAS_MAX    1
#define ADMIN_ALTER_CLIENT_QUOTAS_MIN       0
#define ADMIN_ALTER_CLIENT_QUOTAS_MAX       1
#define ADMIN_DESCRIBE_CLUSTER_MIN          0
#define ADMIN_DESCRIBE_CLUSTER_MAX          2
/* The ACL APIs at Kafka 4.x's ranges (v0 of each was removed by KIP-896). */
#define ADMIN_DESCRIBE_ACLS_MIN 1
#define ADMIN_DESCRIBE_ACLS_MAX 3
#define ADMIN_CREATE_ACLS_MIN   1
#define ADMIN_CREATE_ACLS_MAX   3
#define ADMIN_DELETE_ACLS_MIN   1
#define ADMIN_DELETE_ACLS_MAX   3
/* Kafka 4.x's ranges (DescribeLogDirs v0 was removed by KIP-896). */
#define ADMIN_DESCRIBE_LOG_DIRS_MIN         1
#define ADMIN_DESCRIBE_LOG_DIRS_MAX         4
#define ADMIN_UPDATE_FEATURES_MIN           0
#define ADMIN_UPDATE_FEATURES_MAX           2
#define ADMIN_DESCRIBE_TOPIC_PARTITIONS_MIN 0
#define ADMIN_DESCRIBE_TOPIC_PARTITIONS_MAX 0
#define ADMIN_ALTER_REASSIGNMENTS_MIN       0
#define ADMIN_ALTER_REASSIGNMENTS_MAX       1
#define ADMIN_LIST_REASSIGNMENTS_MIN        0
#define ADMIN_LIST_REASSIGNMENTS_MAX        0
/* v0 is ListClientMetricsResources (KIP-714), v1 adds the type filter (KIP-1142). */
#define ADMIN_LIST_CONFIG_RESOURCES_MIN 0
#define ADMIN_LIST_CONFIG_RESOURCES_MAX 1
/* Kafka's max.request.partition.size.limit default: the most partitions DescribeTopicPartitions
 * returns in one response whatever the client asks (KIP-966). */
#define ADMIN_DESCRIBE_PARTITIONS_LIMIT 2000

/* ConfigResource.Type on the wire (KIP-133, KIP-412, KIP-714, KIP-848). */
enum admin_resource_type {
    ADMIN_RESOURCE_TOPIC = 2,
    ADMIN_RESOURCE_BROKER = 4,
    ADMIN_RESOURCE_BROKER_LOGGER = 8,
    ADMIN_RESOURCE_CLIENT_METRICS = 16,
    ADMIN_RESOURCE_GROUP = 32,
};

/* IncrementalAlterConfigs config_operation (KIP-339). */
enum admin_config_op {
    ADMIN_OP_SET = 0,
    ADMIN_OP_DELETE = 1,
    ADMIN_OP_APPEND = 2,
    ADMIN_OP_SUBTRACT = 3,
};

/* What the cores read and change. All borrowed. */
/* The controller mutation quota of a request (KIP-599, controller_mutation_rate): partitions
 * created, added or deleted count against the principal's and client's rate. */
struct admin_mutation_quota {
    /* whether the rate is over the quota already (the strict check before each topic) */
    bool (*exceeded)(void *ctx);
    /* records n partition mutations */
    void (*record)(void *ctx, double n);
    /* the throttle time the response gets (0 under the quota) */
    int32_t (*throttle_ms)(void *ctx);
    void *ctx;
};

struct admin_env {
    struct lm_meta_store *meta;
    const struct broker_config *cfg;
    const char *cluster_id;
    /* A partition's leader epoch as Metadata reports it (h_partition_epoch). */
    int32_t (*leader_epoch)(const void *epoch_ctx, const uint8_t topic_id[16], int32_t partition);
    const void *epoch_ctx;
    /* The endpoint of the listener the request came in on (what DescribeCluster lists for this
     * node); NULL means the first advertised listener. */
    const struct broker_listener *advertised;
    /* A cluster: changes are queued here by admin_commit and sent to the controller once the
     * core has run; their outcomes are written into the response before it is encoded. NULL
     * on a single node (admin_commit commits at once). */
    struct admin_defer *defer;
    /* A cluster: the controller leader's id (DescribeCluster), else -1. */
    int32_t controller_id;
    /* The authorizer's settings (NULL or disabled: everything is allowed and the ACL APIs
     * answer SECURITY_DISABLED) and who sent the request. */
    const struct authz_config *authz;
    struct authz_subject who;
    /* CreateTopics, DeleteTopics and CreatePartitions: the request's mutation quota */
    const struct admin_mutation_quota *mutations;
};

/* KIP-599 for one topic of CreateTopics (strict from v6), DeleteTopics (v5) or
 * CreatePartitions (v3): with a strict version and the rate over the quota already, sets
 * THROTTLING_QUOTA_EXCEEDED and *refused (the topic is refused); otherwise the caller goes on
 * and records its partitions with admin_mutations_record once done. Returns 0 or
 * LM_E_NOMEM. */
int admin_mutations_check(const struct admin_env *env, bool strict, struct kafka_arena *a,
                          int16_t *code, struct kafka_str *msg, bool *refused);
void admin_mutations_record(const struct admin_env *env, int32_t partitions);
int32_t admin_mutations_throttle_ms(const struct admin_env *env);

/* Whether the request's principal may perform op on resource (type, name) as the current
 * metadata image's ACLs say (admin_util.c). A name longer than 1023 bytes is refused unless
 * the authorizer is off or the principal is a super user. */
bool admin_allowed(const struct admin_env *env, int8_t op, int8_t type, struct kafka_str name);
/* Whether the authorizer is on for this request. */
bool admin_authz_on(const struct admin_env *env);
/* Kafka's authorized-operations bit field of resource (type, name) (every supported operation
 * with the authorizer off). */
int32_t admin_authorized_ops(const struct admin_env *env, int8_t type, const char *name);

/* What a queued change's refusal means to the client (its Kafka error). */
enum admin_commit_kind {
    ADMIN_COMMIT_TOPIC = 0,  /* CreateTopics, DeleteTopics */
    ADMIN_COMMIT_TOPIC_ID,   /* DeleteTopics by a topic id (not found: UNKNOWN_TOPIC_ID) */
    ADMIN_COMMIT_CONFIGS,    /* AlterConfigs, IncrementalAlterConfigs */
    ADMIN_COMMIT_PARTITIONS, /* CreatePartitions */
    ADMIN_COMMIT_SCRAM,      /* AlterUserScramCredentials (topic is the user) */
    ADMIN_COMMIT_ACL,        /* CreateAcls, DeleteAcls */
    ADMIN_COMMIT_REASSIGN,   /* AlterPartitionReassignments */
    ADMIN_COMMIT_QUOTA,      /* AlterClientQuotas */
    ADMIN_COMMIT_FEATURE,    /* UpdateFeatures (topic is the feature) */
};

struct admin_defer_item {
    struct admin_defer_item *next;
    uint8_t *rec; /* the encoded record, in the arena */
    size_t len;
    enum admin_commit_kind kind;
    const char *topic;
    int16_t *code; /* where the outcome goes */
    struct kafka_str *msg;
    void *sub; /* the controller submission (admin_register.c) */
};

struct admin_defer {
    struct admin_defer_item *head, *tail;
    uint32_t count;
};

/* Commits r: at once on a single node (returns lm_meta_store_commit's result), or queued
 * for the controller in a cluster (returns 0; a refusal later sets *code and *msg). A
 * TOPIC_CREATE or PARTITIONS_SET without replicas gets an assignment over the live nodes
 * (LM_E_AGAIN when none is registered). */
int admin_commit(const struct admin_env *env, const struct lm_meta_record *r,
                 enum admin_commit_kind kind, struct kafka_arena *a, int16_t *code,
                 struct kafka_str *msg);

/* The cores: fill rs (initialised by the caller with kafka_<api>_response_init) for request rq
 * of the given version. Return 0, or LM_E_NOMEM when the arena is exhausted (the response is
 * then unusable). Per-topic and per-resource failures are Kafka error codes in rs. */
int admin_create_topics(const struct admin_env *env, int16_t version,
                        const struct kafka_create_topics_request *rq,
                        struct kafka_create_topics_response *rs, struct kafka_arena *a);
int admin_delete_topics(const struct admin_env *env, int16_t version,
                        const struct kafka_delete_topics_request *rq,
                        struct kafka_delete_topics_response *rs, struct kafka_arena *a);
int admin_create_partitions(const struct admin_env *env, int16_t version,
                            const struct kafka_create_partitions_request *rq,
                            struct kafka_create_partitions_response *rs, struct kafka_arena *a);
int admin_describe_configs(const struct admin_env *env, int16_t version,
                           const struct kafka_describe_configs_request *rq,
                           struct kafka_describe_configs_response *rs, struct kafka_arena *a);
int admin_alter_configs(const struct admin_env *env, int16_t version,
                        const struct kafka_alter_configs_request *rq,
                        struct kafka_alter_configs_response *rs, struct kafka_arena *a);
int admin_incremental_alter_configs(const struct admin_env *env, int16_t version,
                                    const struct kafka_incremental_alter_configs_request *rq,
                                    struct kafka_incremental_alter_configs_response *rs,
                                    struct kafka_arena *a);
int admin_describe_cluster(const struct admin_env *env, int16_t version,
                           const struct kafka_describe_cluster_request *rq,
                           struct kafka_describe_cluster_response *rs, struct kafka_arena *a);

/* Reassignments (admin_reassign.c, KIP-455). Alter: per partition, Kafka's checks (unknown
 * topic or partition, an empty, duplicate or unregistered target, a replica count change when
 * v1 forbids it, a cancel with nothing in progress) and one PARTITION_REASSIGN record for the
 * controller; a target the image already shows changes nothing, another target while a move
 * runs is REASSIGNMENT_IN_PROGRESS (cancel first). On a single node the only
 * target is the node itself and nothing moves. List: the partitions with adding or removing
 * replicas in the image, all of them or those named. */
int admin_alter_partition_reassignments(
    const struct admin_env *env, int16_t version,
    const struct kafka_alter_partition_reassignments_request *rq,
    struct kafka_alter_partition_reassignments_response *rs, struct kafka_arena *a);
int admin_list_partition_reassignments(const struct admin_env *env, int16_t version,
                                       const struct kafka_list_partition_reassignments_request *rq,
                                       struct kafka_list_partition_reassignments_response *rs,
                                       struct kafka_arena *a);

/* SCRAM credentials (admin_scram.c, KIP-554). Return LM_E_INVALID for a request with more
 * than 4096 operations or users (the connection is closed). */
int admin_describe_user_scram_credentials(
    const struct admin_env *env, int16_t version,
    const struct kafka_describe_user_scram_credentials_request *rq,
    struct kafka_describe_user_scram_credentials_response *rs, struct kafka_arena *a);
int admin_alter_user_scram_credentials(const struct admin_env *env, int16_t version,
                                       const struct kafka_alter_user_scram_credentials_request *rq,
                                       struct kafka_alter_user_scram_credentials_response *rs,
                                       struct kafka_arena *a);

/* Client quotas (admin_quotas.c, KIP-546): LM_META_QUOTA records. Return LM_E_INVALID for a
 * request with more than 4096 entries or components, or 64 entity parts or ops in an entry
 * (the connection is closed). */
int admin_describe_client_quotas(const struct admin_env *env, int16_t version,
                                 const struct kafka_describe_client_quotas_request *rq,
                                 struct kafka_describe_client_quotas_response *rs,
                                 struct kafka_arena *a);
int admin_alter_client_quotas(const struct admin_env *env, int16_t version,
                              const struct kafka_alter_client_quotas_request *rq,
                              struct kafka_alter_client_quotas_response *rs, struct kafka_arena *a);

/* The ACL APIs (admin_acls.c, KIP-140, KIP-290): bindings stored as LM_META_ACL_CREATE /
 * _DELETE records; SECURITY_DISABLED when the authorizer is off, as Kafka answers them.
 * Return LM_E_INVALID for a request Kafka cannot parse (an UNKNOWN enum code), which closes
 * the connection. */
int admin_describe_acls(const struct admin_env *env, int16_t version,
                        const struct kafka_describe_acls_request *rq,
                        struct kafka_describe_acls_response *rs, struct kafka_arena *a);
int admin_create_acls(const struct admin_env *env, int16_t version,
                      const struct kafka_create_acls_request *rq,
                      struct kafka_create_acls_response *rs, struct kafka_arena *a);
int admin_delete_acls(const struct admin_env *env, int16_t version,
                      const struct kafka_delete_acls_request *rq,
                      struct kafka_delete_acls_response *rs, struct kafka_arena *a);

/* DescribeLogDirs (admin_logdirs.c): every configured log dir with the partitions asked for
 * (a null topic list: all) and their on-disk size, read from the partition directories. */
int admin_describe_log_dirs(const struct admin_env *env, int16_t version,
                            const struct kafka_describe_log_dirs_request *rq,
                            struct kafka_describe_log_dirs_response *rs, struct kafka_arena *a);
/* DescribeTopicPartitions (admin_describe_partitions.c, KIP-966): topics sorted by name from
 * the cursor on, at most min(response_partition_limit, ADMIN_DESCRIBE_PARTITIONS_LIMIT)
 * partitions, next_cursor where the next page starts. A bad cursor (a topic the request does
 * not list, a negative partition) fails the request: every requested topic INVALID_REQUEST. */
int admin_describe_topic_partitions(const struct admin_env *env, int16_t version,
                                    const struct kafka_describe_topic_partitions_request *rq,
                                    struct kafka_describe_topic_partitions_response *rs,
                                    struct kafka_arena *a);

/* ListConfigResources (admin_config_resources.c, KIP-714, KIP-1142): the brokers, broker
 * loggers and topics of the image by type (laminar holds no group or client metrics configs);
 * a type the version does not support fails the request with UNSUPPORTED_VERSION. */
int admin_list_config_resources(const struct admin_env *env, int16_t version,
                                const struct kafka_list_config_resources_request *rq,
                                struct kafka_list_config_resources_response *rs,
                                struct kafka_arena *a);

/* Feature flags (admin_features.c, KIP-584). admin_features_fill sets the supported and
 * finalized features of an ApiVersions response of the given version (arrays in the arena;
 * only v3+ carries them); 0 or LM_E_NOMEM.
 * admin_update_features answers UpdateFeatures: laminar's levels are fixed, so only an update
 * to the level already finalized succeeds. */
int admin_features_fill(const struct admin_env *env, int16_t version,
                        struct kafka_api_versions_response *rs, struct kafka_arena *a);
int admin_update_features(const struct admin_env *env, int16_t version,
                          const struct kafka_update_features_request *rq,
                          struct kafka_update_features_response *rs, struct kafka_arena *a);

/* BROKER_LOGGER resources (admin_loggers.c, KIP-412), called by the config cores for one
 * resource: describe fills res (error code and message included); alter validates every
 * operation and, unless validate_only, applies them. 0 or LM_E_NOMEM. */
int admin_logger_describe(const struct admin_env *env, int16_t version,
                          const struct kafka_describe_configs_request_describe_configs_resource *r,
                          struct kafka_arena *a,
                          struct kafka_describe_configs_response_describe_configs_result *res);
int admin_logger_alter(
    const struct admin_env *env, bool validate_only,
    const struct kafka_incremental_alter_configs_request_alter_configs_resource *r,
    struct kafka_arena *a, int16_t *code, struct kafka_str *msg);

/* ---- helpers shared by the admin files (admin_util.c) ---- */

/* admin_kstr borrows a C string as a kafka_str (NULL gives a null string). */
struct kafka_str admin_kstr(const char *s);
/* admin_cstr copies s into the arena as a NUL-terminated string; *out is NULL when s is null.
 * Returns 0 or LM_E_NOMEM. */
int admin_cstr(struct kafka_arena *a, struct kafka_str s, char **out);
/* admin_fmt formats a message into the arena. Returns 0 or LM_E_NOMEM. */
int admin_fmt(struct kafka_arena *a, struct kafka_str *out, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* admin_kstr_eq tells whether s (not null) equals the C string c. */
bool admin_kstr_eq(struct kafka_str s, const char *c);
/* admin_kstr_same tells whether two strings are equal (two nulls are equal). */
bool admin_kstr_same(struct kafka_str x, struct kafka_str y);
/* admin_mark_duplicates sets (*dup)[i] for every i whose key occurs more than once among
 * keys[0..n), in O(n log n) so a request with many entries cannot stall the shard (Kafka
 * answers every occurrence of a duplicate with INVALID_REQUEST). *dup is in the arena.
 * Returns 0 or LM_E_NOMEM. */
int admin_mark_duplicates(struct kafka_arena *a, const struct kafka_str *keys, int32_t n,
                          bool **dup);
/* admin_mark_duplicate_names is admin_mark_duplicates over one kafka_str member of n request
 * entries: first points at the member in entry 0 (NULL when n is 0), stride is the size of an
 * entry. Returns 0 or LM_E_NOMEM. */
int admin_mark_duplicate_names(struct kafka_arena *a, const struct kafka_str *first, size_t stride,
                               int32_t n, bool **dup);

/* ADMIN_RESULTS starts a response of n (>= 0) results in member ARR of rs: no throttle, the
 * array in the arena (one element at least) and ARR##_count. 0 or LM_E_NOMEM. */
#define ADMIN_RESULTS(a, rs, ARR, n)                                                               \
    ({                                                                                             \
        (rs)->throttle_time_ms = 0;                                                                \
        (rs)->ARR =                                                                                \
            kafka_arena_alloc_array((a), (size_t)((n) > 0 ? (n) : 1), sizeof(*(rs)->ARR), 8);      \
        if ((rs)->ARR != NULL)                                                                     \
            (rs)->ARR##_count = (n);                                                               \
        (rs)->ARR != NULL ? 0 : LM_E_NOMEM;                                                        \
    })

/* The broker's settings that stand for topic defaults (each topic config's broker synonym and
 * the unit keys log.retention.minutes|hours, log.roll.hours, log.roll.jitter.hours) in
 * precedence order: this node's dynamic configs, the cluster-wide dynamic defaults, then
 * server.properties and the command line, each with its source; unset keys are absent (a key
 * may appear in several layers: the first wins). Arrays in the arena. */
struct admin_broker_entries {
    struct lm_config_entry *e;
    enum lm_config_source *source;
    size_t count;
};
int admin_broker_topic_entries(const struct admin_env *env, struct kafka_arena *a,
                               struct admin_broker_entries *out);

/* One topic config as DescribeConfigs shows it: the effective value and where it comes from,
 * topic override > broker key (incl. unit keys, Kafka's ms > minutes > hours precedence) >
 * Kafka default. broker_key names the broker key that supplied it (NULL unless
 * STATIC_BROKER). Strings in the arena or borrowed from the inputs. */
struct admin_topic_value {
    const char *value;
    enum lm_config_source source;
    const char *broker_key;
};
int admin_topic_config_value(const struct lm_topic_config_def *def,
                             const struct lm_config_entry *topic, size_t topic_count,
                             const struct admin_broker_entries *brk, struct kafka_arena *a,
                             struct admin_topic_value *out);

#endif
