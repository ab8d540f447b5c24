/* Broker configuration (DESIGN.md §6): Kafka's server.properties keys where they mean the same,
 * parsed into a typed struct; laminar's own keys start with "laminar.". Every key given is also
 * kept as raw text (broker_config_get) so handlers can read topic defaults by Kafka's names.
 * Keys nobody reads are reported once each by broker_config_finish. */
#ifndef LAMINAR_BROKER_CONFIG_H
#define LAMINAR_BROKER_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { BROKER_LISTENERS_MAX = 8, BROKER_LOG_DIRS_MAX = 8, BROKER_PATH_BYTES_MAX = 1024 };

enum { BROKER_IP_OVERRIDES_MAX = 64 };

enum broker_io_mode { BROKER_IO_AUTO, BROKER_IO_URING, BROKER_IO_EPOLL };

/* process.roles (KRaft): bits of broker_config.process_roles */
enum { BROKER_ROLE_BROKER = 1, BROKER_ROLE_CONTROLLER = 2 };

enum { BROKER_LISTENER_NAME_BYTES = 32 };

struct broker_listener {
    char name[BROKER_LISTENER_NAME_BYTES]; /* "PLAINTEXT", or a custom listener name */
    char host[256];                        /* "" = every interface */
    uint16_t port;
};

struct broker_config_entry;

struct broker_config {
    int32_t node_id;
    struct broker_listener listeners[BROKER_LISTENERS_MAX];
    uint32_t listeners_count;
    struct broker_listener advertised[BROKER_LISTENERS_MAX]; /* defaults to listeners */
    uint32_t advertised_count;
    /* Listener roles, checked as KafkaConfig does (broker_config_check_supported fills them):
     * process.roles as BROKER_ROLE_* bits (0 when not set: laminar then serves as a combined
     * node and applies only the checks that do not depend on the roles);
     * controller.listener.names; and the inter-broker listener: inter.broker.listener.name,
     * else the one security.inter.broker.protocol names (PLAINTEXT), "" when the node has no
     * advertised broker listener of that name and none was asked for. */
    uint32_t process_roles;
    char controller_listener_names[BROKER_LISTENERS_MAX][BROKER_LISTENER_NAME_BYTES];
    uint32_t controller_listener_names_count;
    char inter_broker_listener[BROKER_LISTENER_NAME_BYTES];
    char log_dirs[BROKER_LOG_DIRS_MAX][BROKER_PATH_BYTES_MAX];
    uint32_t log_dirs_count;
    int32_t num_partitions;
    int16_t default_replication_factor;
    bool auto_create_topics_enable;
    int64_t log_segment_bytes;
    int64_t log_retention_ms; /* from .ms, else .minutes, else .hours (Kafka's precedence) */
    int64_t log_retention_bytes;
    int32_t socket_request_max_bytes;
    int32_t message_max_bytes;
    /* connections.max.idle.ms: close a connection with nothing in flight and no bytes either way
     * for this long (Kafka's default 600000); -1 disables the check */
    int64_t connections_max_idle_ms;
    /* connections.max.reauth.ms (KIP-368): a SASL session's lifetime, after which the client
     * re-authenticates on the same connection; 0 (Kafka's default): sessions never expire */
    int64_t connections_max_reauth_ms;
    /* sasl.server.max.receive.size: the largest frame a SASL listener reads before the
     * connection has authenticated (Kafka's default 524288) */
    int32_t sasl_server_max_receive_bytes;
    /* Per listener (same index as listeners): its security protocol authenticates with SASL
     * (SASL_PLAINTEXT, SASL_SSL) and runs over TLS (SSL, SASL_SSL). Filled by
     * broker_config_check_supported. */
    bool listener_sasl[BROKER_LISTENERS_MAX];
    bool listener_tls[BROKER_LISTENERS_MAX];
    /* The controller listener (the first of controller.listener.names) is SSL: node-to-node
     * connections (broker_peer) run TLS with that listener's ssl.* settings as a client.
     * Filled by broker_config_check_supported. */
    bool peer_tls;
    /* Connection quotas (Kafka's ConnectionQuotas; broker/connquota.h): Int.MaxValue = none */
    int32_t max_connections;              /* max.connections, broker-wide */
    int32_t max_connections_per_ip;       /* max.connections.per.ip */
    int32_t max_connection_creation_rate; /* max.connection.creation.rate, per second */
    struct broker_ip_override {
        uint8_t addr[16]; /* IPv6, or IPv4-mapped */
        int32_t count;
    } ip_overrides[BROKER_IP_OVERRIDES_MAX]; /* max.connections.per.ip.overrides host:count,... */
    uint32_t ip_overrides_count;
    /* Client quotas (broker/security/quota.h): the rate is measured over quota.window.num
     * samples of quota.window.size.seconds (Kafka's defaults 11 and 1) */
    int32_t quota_window_num;
    int32_t quota_window_size_seconds;
    /* Incremental fetch sessions (KIP-227): max.incremental.fetch.session.cache.slots (0: none
     * are made), the unused time after which one may be evicted (Kafka's fixed 120 s), and the
     * partitions all sessions of the node may cache together (memory bound) */
    int32_t fetch_session_slots;
    int64_t fetch_session_eviction_ms;
    int64_t fetch_session_partitions_max;
    /* runtime (laminar.*) */
    uint32_t shards;                  /* 0 = one per available CPU */
    enum broker_io_mode io_mode;      /* laminar.io */
    int64_t shard_memory_bytes_max;   /* queued.max.request.bytes, per shard */
    uint32_t connection_inflight_max; /* laminar.connection.inflight.max */
    uint32_t shard_connections_max;   /* laminar.shard.connections.max */
    int64_t shutdown_timeout_ms;      /* laminar.shutdown.timeout.ms */
    /* controlled.shutdown.enable: on SIGTERM a cluster node first hands its leaderships to
     * other replicas, for at most laminar.controlled.shutdown.timeout.ms */
    bool controlled_shutdown_enable;
    /* replica.lag.time.max.ms: a follower not caught up for longer leaves the ISR */
    int64_t replica_lag_time_max_ms;
    /* auto.leader.rebalance.enable, leader.imbalance.check.interval.seconds (hs_elect.c);
     * leader.imbalance.per.broker.percentage is parsed for Kafka 3 configs and unused */
    bool auto_leader_rebalance_enable;
    int64_t leader_imbalance_check_interval_s;
    int32_t leader_imbalance_per_broker_pct;
    int64_t controlled_shutdown_timeout_ms;
    bool bpf_enable;     /* laminar.bpf.enable */
    bool metrics_enable; /* laminar.metrics.enable: count on the data path */
    /* laminar.replication.zero.copy: a partition leader sends its batches to followers as
     * slices of its log files (sendfile / splice) rather than reading them first; only where
     * nothing must see the bytes on the way (no laminar.cluster.secret MAC, no peer TLS) */
    bool replication_zero_copy;
    /* laminar.raft.quiesce (default true): an idle replicated partition's Raft group stops
     * heartbeating (broker/README.md, "Replication"; consensus/README.md, "Quiescence") */
    bool raft_quiesce;
    int log_level; /* laminar.log.level: enum broker_log_level */
    /* RLIMIT_NOFILE's soft limit after broker_serve_main raised it to the hard limit: the
     * process' whole descriptor budget (connections, segment files, pipes). 0 until then. */
    uint64_t fd_limit;
    /* laminar.log.open.files.max: the descriptors the partition logs of this node may hold
     * at rest (the shards' open-log budgets, 2 counted per open log, at least 1 log per
     * shard); 0 (the default): three fifths of fd_limit, at least 64 logs per shard */
    int64_t log_open_files_max;
    /* private */
    struct broker_config_entry *entries;
    int64_t retention_minutes_, retention_hours_, retention_ms_;
};

/* Fills cfg with Kafka's defaults (and laminar's for its own keys). */
void broker_config_init(struct broker_config *cfg);
/* Frees the raw key/value store. */
void broker_config_deinit(struct broker_config *cfg);
/* Reads a Java .properties file (key=value, key: value, # and ! comments, \ continuations)
 * and applies each key with broker_config_set. Returns 0, LM_E_IO or LM_E_CONFIG (logged). */
int broker_config_load_file(struct broker_config *cfg, const char *path);
/* Applies one key; a later set of the same key wins. Returns 0 or LM_E_CONFIG (logged, with the
 * key and value) for a value of the wrong type or range. */
int broker_config_set(struct broker_config *cfg, const char *key, const char *value);
/* Applies "key=value". Returns 0 or LM_E_CONFIG. */
int broker_config_set_kv(struct broker_config *cfg, const char *kv);
/* Derives dependent values (retention precedence, advertised listeners), validates, and warns
 * once per key nothing reads. Returns 0 or LM_E_CONFIG. */
int broker_config_finish(struct broker_config *cfg);
/* Refuses settings laminar cannot honour, so it never serves with less protection than
 * configured: a controller listener whose security protocol is SASL_*, an
 * authorizer.class.name other than the ACL authorizer (checked by the handler layer), client quota
 * keys, ssl.* keys laminar does not read and SASL keys other than the mechanism and JAAS settings,
 * with a non-empty value other than Kafka's default. Checks the TLS settings of every SSL /
 * SASL_SSL listener by building its context (files readable, key matching its certificate). Fills
 * listener_sasl and listener_tls. Logs one error line naming the key. Returns 0, LM_E_UNSUPPORTED,
 * or LM_E_CONFIG for a malformed map, a listener without a protocol or bad TLS settings.
 * broker_config_finish runs it too. */
int broker_config_check_supported(struct broker_config *cfg);
/* Returns the raw text last set for key, or NULL. Borrowed from cfg. */
const char *broker_config_get(const struct broker_config *cfg, const char *key);
/* Marks key as read by some part (so finish does not warn about it). */
void broker_config_mark_used(struct broker_config *cfg, const char *key);
/* Number of keys finish reported as ignored (for tests). */
uint32_t broker_config_ignored_count(const struct broker_config *cfg);
/* True when name is one of controller.listener.names (case-insensitive, as Kafka's
 * ListenerName.normalised). */
bool broker_config_is_controller_listener(const struct broker_config *cfg, const char *name);
/* The advertised endpoint for listener `name`: advertised.listeners' entry of that name, else
 * the first advertised listener that is not a controller listener, else the first listener.
 * Never NULL. Borrowed from cfg. */
const struct broker_listener *broker_config_advertised_for(const struct broker_config *cfg,
                                                           const char *name);
/* The TLS settings of listener index `listener` (broker/security/tls.h): each ssl.* key laminar
 * reads from listener.name.<name lower-cased>.ssl.*, else from ssl.* (Kafka's ListenerName
 * prefix). Values are borrowed from cfg. */
struct broker_tls_settings;
void broker_config_tls_settings(const struct broker_config *cfg, uint32_t listener,
                                struct broker_tls_settings *out);
/* The same for a listener given by name (the controller listener of a node that does not
 * listen on it still connects to it). */
void broker_config_tls_settings_named(const struct broker_config *cfg, const char *name,
                                      struct broker_tls_settings *out);
/* Parses a comma-separated listener list "NAME://host:port,..." into out (max entries).
 * Returns the count or LM_E_CONFIG. */
int broker_config_parse_listeners(const char *text, struct broker_listener *out, uint32_t max);

#endif
