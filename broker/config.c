#include "broker/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "broker/log.h"
#include "broker/security/authorizer.h"
#include "broker/security/tls.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"

struct broker_config_entry {
    struct broker_config_entry *next;
    char *key;
    char *value;
    bool used;
    bool warned;
};

enum key_type { K_I32, K_I16, K_I64, K_BOOL, K_U32, K_SPECIAL, K_RAW };

struct key_spec {
    const char *key;
    enum key_type type;
    size_t offset;
    int64_t min, max;
};

#define OFF(f) offsetof(struct broker_config, f)
/* Keys with a typed field. K_SPECIAL ones are parsed by apply_special; K_RAW ones are Kafka keys
 * that handlers read by name through broker_config_get. */
static const struct key_spec g_keys[] = {
    {"node.id", K_I32, OFF(node_id), 0, INT32_MAX},
    {"broker.id", K_I32, OFF(node_id), 0, INT32_MAX},
    {"listeners", K_SPECIAL, 0, 0, 0},
    {"advertised.listeners", K_SPECIAL, 0, 0, 0},
    {"log.dirs", K_SPECIAL, 0, 0, 0},
    {"log.dir", K_SPECIAL, 0, 0, 0},
    {"num.partitions", K_I32, OFF(num_partitions), 1, INT32_MAX},
    {"default.replication.factor", K_I16, OFF(default_replication_factor), 1, INT16_MAX},
    {"auto.create.topics.enable", K_BOOL, OFF(auto_create_topics_enable), 0, 1},
    {"log.segment.bytes", K_I64, OFF(log_segment_bytes), 14, INT32_MAX},
    {"log.retention.ms", K_I64, OFF(retention_ms_), -1, INT64_MAX},
    {"log.retention.minutes", K_I64, OFF(retention_minutes_), -1, INT32_MAX},
    {"log.retention.hours", K_I64, OFF(retention_hours_), -1, INT32_MAX},
    {"log.retention.bytes", K_I64, OFF(log_retention_bytes), -1, INT64_MAX},
    {"socket.request.max.bytes", K_I32, OFF(socket_request_max_bytes), 1, INT32_MAX},
    {"message.max.bytes", K_I32, OFF(message_max_bytes), 0, INT32_MAX},
    {"connections.max.idle.ms", K_I64, OFF(connections_max_idle_ms), -1, INT64_MAX},
    {"connections.max.reauth.ms", K_I64, OFF(connections_max_reauth_ms), 0, INT64_MAX},
    {"sasl.server.max.receive.size", K_I32, OFF(sasl_server_max_receive_bytes), 1, INT32_MAX},
    {"max.connections", K_I32, OFF(max_connections), 0, INT32_MAX},
    {"max.connections.per.ip", K_I32, OFF(max_connections_per_ip), 0, INT32_MAX},
    {"max.connections.per.ip.overrides", K_SPECIAL, 0, 0, 0},
    {"max.connection.creation.rate", K_I32, OFF(max_connection_creation_rate), 0, INT32_MAX},
    {"quota.window.num", K_I32, OFF(quota_window_num), 1, 64},
    {"quota.window.size.seconds", K_I32, OFF(quota_window_size_seconds), 1, 3600},
    {"max.incremental.fetch.session.cache.slots", K_I32, OFF(fetch_session_slots), 0, INT32_MAX},
    {"laminar.fetch.session.eviction.ms", K_I64, OFF(fetch_session_eviction_ms), 0, INT32_MAX},
    {"laminar.fetch.session.partitions.max", K_I64, OFF(fetch_session_partitions_max), 0,
     INT32_MAX},
    {"queued.max.request.bytes", K_I64, OFF(shard_memory_bytes_max), -1, INT64_MAX},
    {"laminar.shards", K_U32, OFF(shards), 0, 1024},
    {"laminar.log.open.files.max", K_I64, OFF(log_open_files_max), 0, INT32_MAX},
    {"laminar.io", K_SPECIAL, 0, 0, 0},
    {"laminar.connection.inflight.max", K_U32, OFF(connection_inflight_max), 1, 65536},
    {"laminar.shard.connections.max", K_U32, OFF(shard_connections_max), 1, 1 << 22},
    {"laminar.shutdown.timeout.ms", K_I64, OFF(shutdown_timeout_ms), 0, INT32_MAX},
    {"replica.lag.time.max.ms", K_I64, OFF(replica_lag_time_max_ms), 0, INT32_MAX},
    {"auto.leader.rebalance.enable", K_BOOL, OFF(auto_leader_rebalance_enable), 0, 1},
    {"leader.imbalance.check.interval.seconds", K_I64, OFF(leader_imbalance_check_interval_s), 1,
     INT32_MAX},
    {"leader.imbalance.per.broker.percentage", K_I32, OFF(leader_imbalance_per_broker_pct), 0, 100},
    {"controlled.shutdown.enable", K_BOOL, OFF(controlled_shutdown_enable), 0, 1},
    {"laminar.controlled.shutdown.timeout.ms", K_I64, OFF(controlled_shutdown_timeout_ms), 0,
     INT32_MAX},
    {"laminar.bpf.enable", K_BOOL, OFF(bpf_enable), 0, 1},
    {"laminar.metrics.enable", K_BOOL, OFF(metrics_enable), 0, 1},
    {"laminar.replication.zero.copy", K_BOOL, OFF(replication_zero_copy), 0, 1},
    {"laminar.raft.quiesce", K_BOOL, OFF(raft_quiesce), 0, 1},
    {"laminar.http.listener", K_RAW, 0, 0, 0},
    /* tests only: a file naming a delay every fsync waits (shard_services.c) */
    {"laminar.fault.disk.control", K_RAW, 0, 0, 0},
    /* the ACL authorizer (broker/security/authorizer.h, parsed by the handler layer) */
    {"authorizer.class.name", K_RAW, 0, 0, 0},
    {"super.users", K_RAW, 0, 0, 0},
    {"allow.everyone.if.no.acl.found", K_RAW, 0, 0, 0},
    {"laminar.log.level", K_SPECIAL, 0, 0, 0},
    /* Read by name by the handler layer (topic defaults, Kafka's names). */
    {"log.cleanup.policy", K_RAW, 0, 0, 0},
    {"compression.type", K_RAW, 0, 0, 0},
    {"log.message.timestamp.type", K_RAW, 0, 0, 0},
    {"min.insync.replicas", K_RAW, 0, 0, 0},
    {"log.flush.interval.messages", K_RAW, 0, 0, 0},
    {"log.flush.interval.ms", K_RAW, 0, 0, 0},
    {"log.preallocate", K_RAW, 0, 0, 0},
    {"log.roll.ms", K_RAW, 0, 0, 0},
    {"log.roll.hours", K_RAW, 0, 0, 0},
    {"offsets.topic.num.partitions", K_RAW, 0, 0, 0},
    {"offsets.topic.replication.factor", K_RAW, 0, 0, 0},
    {"group.initial.rebalance.delay.ms", K_RAW, 0, 0, 0},
    {"group.min.session.timeout.ms", K_RAW, 0, 0, 0},
    {"group.max.session.timeout.ms", K_RAW, 0, 0, 0},
    {"offsets.retention.minutes", K_RAW, 0, 0, 0},
    {"delete.topic.enable", K_RAW, 0, 0, 0},
    /* Read by broker_config_check_supported. */
    {"listener.security.protocol.map", K_RAW, 0, 0, 0},
    {"controller.listener.names", K_RAW, 0, 0, 0},
    {"inter.broker.listener.name", K_RAW, 0, 0, 0},
    {"process.roles", K_RAW, 0, 0, 0},
    /* The cluster (broker/cluster/controller.c). */
    {"controller.quorum.voters", K_RAW, 0, 0, 0},
    {"broker.session.timeout.ms", K_RAW, 0, 0, 0},
    {"broker.rack", K_RAW, 0, 0, 0},
    {"cluster.id", K_RAW, 0, 0, 0},
    {"laminar.cluster.secret", K_RAW, 0, 0, 0},
    {"laminar.gossip.listener", K_RAW, 0, 0, 0},
    {"laminar.metadata.snapshot.records", K_RAW, 0, 0, 0},
};
#undef OFF

static struct broker_config_entry *entry_find(const struct broker_config *cfg, const char *key)
{
    for (struct broker_config_entry *e = cfg->entries; e != NULL; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

static const struct key_spec *spec_find(const char *key)
{
    for (size_t i = 0; i < LM_ARRAY_LEN(g_keys); i++)
        if (strcmp(g_keys[i].key, key) == 0)
            return &g_keys[i];
    return NULL;
}

void broker_config_init(struct broker_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->node_id = 1;
    cfg->num_partitions = 1;
    cfg->default_replication_factor = 1;
    cfg->auto_create_topics_enable = true;
    cfg->log_segment_bytes = 1073741824;
    cfg->retention_ms_ = INT64_MIN; /* unset */
    cfg->retention_minutes_ = INT64_MIN;
    cfg->retention_hours_ = 168;
    cfg->log_retention_bytes = -1;
    cfg->socket_request_max_bytes = 104857600;
    cfg->message_max_bytes = 1048588;
    cfg->connections_max_idle_ms = 600000;
    cfg->sasl_server_max_receive_bytes = 524288;
    cfg->max_connections = INT32_MAX;
    cfg->max_connections_per_ip = INT32_MAX;
    cfg->max_connection_creation_rate = INT32_MAX;
    cfg->quota_window_num = 11;
    cfg->quota_window_size_seconds = 1;
    cfg->fetch_session_slots = 1000;
    cfg->fetch_session_eviction_ms = 120000;
    cfg->fetch_session_partitions_max = 200000;
    cfg->shards = 0;
    cfg->io_mode = BROKER_IO_AUTO;
    cfg->shard_memory_bytes_max = -1;
    cfg->connection_inflight_max = 64;
    cfg->shard_connections_max = 65536;
    cfg->shutdown_timeout_ms = 10000;
    cfg->controlled_shutdown_enable = true;
    cfg->replica_lag_time_max_ms = 30000;
    cfg->auto_leader_rebalance_enable = true;
    cfg->leader_imbalance_check_interval_s = 300;
    cfg->leader_imbalance_per_broker_pct = 10;
    cfg->controlled_shutdown_timeout_ms = 5000;
    cfg->bpf_enable = true;
    cfg->metrics_enable = true;
    cfg->replication_zero_copy = true;
    cfg->raft_quiesce = true;
    cfg->log_level = BROKER_LOG_INFO;
    snprintf(cfg->log_dirs[0], sizeof(cfg->log_dirs[0]), "%s", "/tmp/kraft-combined-logs");
    cfg->log_dirs_count = 1;
    int rc =
        broker_config_parse_listeners("PLAINTEXT://:9092", cfg->listeners, BROKER_LISTENERS_MAX);
    LM_ASSERT(rc == 1);
    cfg->listeners_count = 1;
}

void broker_config_deinit(struct broker_config *cfg)
{
    struct broker_config_entry *e = cfg->entries;
    while (e != NULL) {
        struct broker_config_entry *next = e->next;
        free(e->key);
        free(e->value);
        free(e);
        e = next;
    }
    cfg->entries = NULL;
}

static int parse_i64(const char *value, int64_t *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno != 0 || end == value || *end != '\0')
        return LM_E_CONFIG;
    *out = v;
    return 0;
}

static int parse_bool(const char *value, bool *out)
{
    if (strcasecmp(value, "true") == 0) {
        *out = true;
        return 0;
    }
    if (strcasecmp(value, "false") == 0) {
        *out = false;
        return 0;
    }
    return LM_E_CONFIG;
}

/* The next item of a comma-separated list at *pos (empty items and spaces around items
 * skipped), advancing *pos past it; false at the end of the list. */
static bool list_next(const char **pos, const char **item, size_t *len)
{
    const char *p = *pos;
    while (*p == ' ' || *p == ',')
        p++;
    if (*p == '\0')
        return false;
    const char *end = strchr(p, ',');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    *pos = end ? end + 1 : p + n;
    while (n > 0 && p[n - 1] == ' ')
        n--;
    *item = p;
    *len = n;
    return true;
}

int broker_config_parse_listeners(const char *text, struct broker_listener *out, uint32_t max)
{
    uint32_t n = 0;
    const char *pos = text, *p;
    size_t len;
    while (list_next(&pos, &p, &len)) {
        if (n == max)
            return LM_E_CONFIG;
        char item[512];
        if (len >= sizeof(item))
            return LM_E_CONFIG;
        memcpy(item, p, len);
        item[len] = '\0';
        char *sep = strstr(item, "://");
        if (sep == NULL || sep == item || (size_t)(sep - item) >= sizeof(out[n].name))
            return LM_E_CONFIG;
        memset(&out[n], 0, sizeof(out[n]));
        memcpy(out[n].name, item, (size_t)(sep - item));
        char *hp = sep + 3;
        char *colon = NULL;
        if (hp[0] == '[') { /* [ipv6]:port */
            char *close = strchr(hp, ']');
            if (close == NULL || close[1] != ':')
                return LM_E_CONFIG;
            *close = '\0';
            hp++;
            colon = close + 1;
        } else {
            colon = strrchr(hp, ':');
            if (colon == NULL)
                return LM_E_CONFIG;
            *colon = '\0';
        }
        if (strlen(hp) >= sizeof(out[n].host))
            return LM_E_CONFIG;
        snprintf(out[n].host, sizeof(out[n].host), "%s", hp);
        int64_t port = 0;
        if (parse_i64(colon + 1, &port) != 0 || port < 0 || port > 65535)
            return LM_E_CONFIG;
        out[n].port = (uint16_t)port;
        n++;
    }
    return n == 0 ? LM_E_CONFIG : (int)n;
}

/* max.connections.per.ip.overrides: "host:count,host:count" (Kafka's format; a host name is
 * resolved once here, as Kafka does at configuration time). The count follows the last ':', so
 * IPv6 literals work. An empty value clears the list. */
static char *trim(char *s);

static int parse_ip_overrides(struct broker_config *cfg, const char *value)
{
    uint32_t n = 0;
    const char *pos = value, *p;
    size_t len;
    while (list_next(&pos, &p, &len)) {
        char item[300];
        if (len >= sizeof(item) || n == BROKER_IP_OVERRIDES_MAX)
            return LM_E_CONFIG;
        memcpy(item, p, len);
        item[len] = '\0';
        char *colon = strrchr(item, ':');
        int64_t count = 0;
        if (colon == NULL || colon == item || parse_i64(trim(colon + 1), &count) != 0 ||
            count < 0 || count > INT32_MAX)
            return LM_E_CONFIG;
        *colon = '\0';
        char *host = trim(item);
        if (host[0] == '[' && host[strlen(host) - 1] == ']') {
            host[strlen(host) - 1] = '\0';
            host++;
        }
        struct broker_ip_override *o = &cfg->ip_overrides[n];
        memset(o, 0, sizeof(*o));
        struct in_addr a4;
        struct in6_addr a6;
        if (inet_pton(AF_INET, host, &a4) == 1) {
            o->addr[10] = o->addr[11] = 0xff;
            memcpy(o->addr + 12, &a4, 4);
        } else if (inet_pton(AF_INET6, host, &a6) == 1) {
            memcpy(o->addr, &a6, 16);
        } else {
            struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
            struct addrinfo *res = NULL;
            if (getaddrinfo(host, NULL, &hints, &res) != 0 || res == NULL)
                return LM_E_CONFIG;
            o->addr[10] = o->addr[11] = 0xff;
            memcpy(o->addr + 12, &((struct sockaddr_in *)(void *)res->ai_addr)->sin_addr, 4);
            freeaddrinfo(res);
        }
        o->count = (int32_t)count;
        n++;
    }
    cfg->ip_overrides_count = n;
    return 0;
}

static int apply_special(struct broker_config *cfg, const char *key, const char *value)
{
    if (strcmp(key, "max.connections.per.ip.overrides") == 0)
        return parse_ip_overrides(cfg, value);
    if (strcmp(key, "listeners") == 0 || strcmp(key, "advertised.listeners") == 0) {
        bool adv = key[0] == 'a';
        int n = broker_config_parse_listeners(value, adv ? cfg->advertised : cfg->listeners,
                                              BROKER_LISTENERS_MAX);
        if (n < 0)
            return n;
        *(adv ? &cfg->advertised_count : &cfg->listeners_count) = (uint32_t)n;
        return 0;
    }
    if (strcmp(key, "log.dirs") == 0 || strcmp(key, "log.dir") == 0) {
        /* log.dirs wins over log.dir, as in Kafka. */
        if (strcmp(key, "log.dir") == 0 && entry_find(cfg, "log.dirs") != NULL)
            return 0;
        uint32_t n = 0;
        const char *p = value;
        while (*p != '\0') {
            const char *end = strchr(p, ',');
            size_t len = end ? (size_t)(end - p) : strlen(p);
            if (len > 0) {
                if (n == BROKER_LOG_DIRS_MAX || len >= BROKER_PATH_BYTES_MAX)
                    return LM_E_CONFIG;
                memcpy(cfg->log_dirs[n], p, len);
                cfg->log_dirs[n][len] = '\0';
                n++;
            }
            if (end == NULL)
                break;
            p = end + 1;
        }
        if (n == 0)
            return LM_E_CONFIG;
        cfg->log_dirs_count = n;
        return 0;
    }
    if (strcmp(key, "laminar.io") == 0) {
        if (strcmp(value, "auto") == 0)
            cfg->io_mode = BROKER_IO_AUTO;
        else if (strcmp(value, "uring") == 0 || strcmp(value, "io_uring") == 0)
            cfg->io_mode = BROKER_IO_URING;
        else if (strcmp(value, "epoll") == 0)
            cfg->io_mode = BROKER_IO_EPOLL;
        else
            return LM_E_CONFIG;
        return 0;
    }
    if (strcmp(key, "laminar.log.level") == 0) {
        static const char *const names[] = {"debug", "info", "warn", "error"};
        for (int i = 0; i < 4; i++) {
            if (strcasecmp(value, names[i]) == 0) {
                cfg->log_level = i;
                return 0;
            }
        }
        return LM_E_CONFIG;
    }
    LM_UNREACHABLE();
    return LM_E_CONFIG;
}

static int apply_typed(struct broker_config *cfg, const struct key_spec *s, const char *value)
{
    char *base = (char *)cfg;
    int64_t v = 0;
    switch (s->type) {
    case K_RAW:
        return 0;
    case K_SPECIAL:
        return apply_special(cfg, s->key, value);
    case K_BOOL:
        return parse_bool(value, (bool *)(base + s->offset));
    case K_I16:
    case K_I32:
    case K_I64:
    case K_U32:
        if (parse_i64(value, &v) != 0 || v < s->min || v > s->max)
            return LM_E_CONFIG;
        if (s->type == K_I16)
            *(int16_t *)(base + s->offset) = (int16_t)v;
        else if (s->type == K_I32)
            *(int32_t *)(base + s->offset) = (int32_t)v;
        else if (s->type == K_U32)
            *(uint32_t *)(base + s->offset) = (uint32_t)v;
        else
            *(int64_t *)(base + s->offset) = v;
        return 0;
    }
    LM_UNREACHABLE();
    return LM_E_CONFIG;
}

int broker_config_set(struct broker_config *cfg, const char *key, const char *value)
{
    LM_ASSERT(key != NULL && value != NULL);
    if (key[0] == '\0') {
        BLOG_ERROR("config: empty key");
        return LM_E_CONFIG;
    }
    struct broker_config_entry *e = entry_find(cfg, key);
    if (e == NULL) {
        e = calloc(1, sizeof(*e));
        if (e == NULL || (e->key = strdup(key)) == NULL) {
            free(e);
            return LM_E_NOMEM;
        }
        e->next = cfg->entries;
        cfg->entries = e;
    }
    char *v = strdup(value);
    if (v == NULL)
        return LM_E_NOMEM;
    free(e->value);
    e->value = v;
    const struct key_spec *s = spec_find(key);
    if (s == NULL)
        return 0; /* kept raw; warned about in finish unless someone marks it used */
    e->used = true;
    int rc = apply_typed(cfg, s, value);
    if (rc != 0)
        BLOG_ERROR("config: invalid value for %s: '%s'", key, value);
    return rc;
}

int broker_config_set_kv(struct broker_config *cfg, const char *kv)
{
    const char *eq = strchr(kv, '=');
    if (eq == NULL || eq == kv) {
        BLOG_ERROR("config: expected key=value, got '%s'", kv);
        return LM_E_CONFIG;
    }
    char key[256];
    size_t klen = (size_t)(eq - kv);
    if (klen >= sizeof(key))
        return LM_E_CONFIG;
    memcpy(key, kv, klen);
    key[klen] = '\0';
    return broker_config_set(cfg, key, eq + 1);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

int broker_config_load_file(struct broker_config *cfg, const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        BLOG_ERROR("config: cannot open %s", path);
        return LM_E_IO;
    }
    char line[8192];
    char logical[16384];
    size_t have = 0;
    int rc = 0;
    unsigned lineno = 0;
    while (rc == 0 && fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        char *s = have == 0 ? trim(line) : trim(line); /* continuation lines drop leading space */
        if (have == 0 && (s[0] == '#' || s[0] == '!' || s[0] == '\0'))
            continue;
        size_t n = strlen(s);
        bool cont = n > 0 && s[n - 1] == '\\';
        if (cont)
            s[--n] = '\0';
        if (have + n + 1 > sizeof(logical)) {
            BLOG_ERROR("config: %s:%u: line too long", path, lineno);
            rc = LM_E_CONFIG;
            break;
        }
        memcpy(logical + have, s, n);
        have += n;
        logical[have] = '\0';
        if (cont)
            continue;
        have = 0;
        /* key ends at the first unescaped '=', ':' or whitespace (Java Properties). */
        char *k = logical;
        char *p = k;
        while (*p != '\0' && *p != '=' && *p != ':' && !isspace((unsigned char)*p))
            p++;
        char *v = p;
        if (*v != '\0') {
            *v++ = '\0';
            v = trim(v);
            if (*v == '=' || *v == ':')
                v = trim(v + 1);
        }
        rc = broker_config_set(cfg, k, v);
        if (rc != 0)
            BLOG_ERROR("config: %s:%u: cannot apply %s", path, lineno, k);
    }
    if (rc == 0 && ferror(f))
        rc = LM_E_IO;
    fclose(f);
    return rc;
}

const char *broker_config_get(const struct broker_config *cfg, const char *key)
{
    struct broker_config_entry *e = entry_find(cfg, key);
    return e ? e->value : NULL;
}

void broker_config_mark_used(struct broker_config *cfg, const char *key)
{
    struct broker_config_entry *e = entry_find(cfg, key);
    if (e != NULL)
        e->used = true;
}

uint32_t broker_config_ignored_count(const struct broker_config *cfg)
{
    uint32_t n = 0;
    for (struct broker_config_entry *e = cfg->entries; e != NULL; e = e->next)
        n += e->warned;
    return n;
}

/* Settings laminar cannot honour yet. Serving anyway would give clients less than the operator
 * asked for (plaintext instead of TLS, no authentication, no ACLs, no throttling), so start-up
 * stops instead. An empty value asks for nothing and is accepted; so is Kafka's default for the
 * keys whose default means "off" (`harmless`). Any other ssl./sasl. value is refused, defaults
 * included: they only exist to configure TLS/SASL listeners. Names are Kafka 4's (KafkaConfig,
 * SslConfigs, SaslConfigs, ServerQuotaConfigs, StandardAuthorizer).
 * Replication throttles are not here: a single node replicates nothing. */
struct refused_key {
    const char *key;      /* exact key, or a prefix when it ends with '.' */
    const char *harmless; /* value accepted besides "", or NULL */
    const char *feature;
};

static const struct refused_key g_refused[] = {
    {"ssl.", NULL,
     "this TLS setting (laminar reads the PEM keystore and truststore settings, "
     "ssl.client.auth, ssl.enabled.protocols, ssl.cipher.suites, ssl.protocol and "
     "ssl.principal.mapping.rules)"},
    {"sasl.", NULL,
     "this SASL setting (laminar reads sasl.enabled.mechanisms and "
     "listener.name.<l>.<mechanism>.sasl.jaas.config)"},
    {"security.providers", NULL, "TLS/SASL security providers"},
    {"security.inter.broker.protocol", "PLAINTEXT", "TLS between brokers"},
    {"principal.builder.class",
     "org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder",
     "authentication"},
    {"delegation.token.secret.key", NULL, "delegation tokens"},
    {"delegation.token.master.key", NULL, "delegation tokens"},
    {"client.quota.callback.class", NULL, "client quotas"},
    {"quota.", NULL, "client quotas"},
    {"controller.quota.window.num", "11", "controller mutation quotas"},
    {"controller.quota.window.size.seconds", "1", "controller mutation quotas"},
};

/* The SASL keys laminar reads (broker/handlers/sasl_api.c): the mechanisms and, per listener,
 * the JAAS config of each. The inter-broker and controller mechanisms are accepted: laminar's
 * node-to-node traffic goes over the controller listener (PLAINTEXT, laminar.cluster.secret). */
static bool sasl_key_served(const char *key)
{
    static const char *const oauth[] = {"sasl.oauthbearer.jwks.endpoint.url",
                                        "sasl.oauthbearer.expected.audience",
                                        "sasl.oauthbearer.expected.issuer",
                                        "sasl.oauthbearer.sub.claim.name",
                                        "sasl.oauthbearer.scope.claim.name",
                                        "sasl.oauthbearer.clock.skew.seconds",
                                        "sasl.oauthbearer.jwks.endpoint.refresh.ms",
                                        "sasl.oauthbearer.jwks.endpoint.retry.backoff.ms",
                                        "sasl.oauthbearer.jwks.endpoint.retry.backoff.max.ms"};
    for (size_t i = 0; i < LM_ARRAY_LEN(oauth); i++)
        if (strcmp(key, oauth[i]) == 0)
            return true; /* OAUTHBEARER's secured validator (sasl_api.c) */
    return strcmp(key, "sasl.enabled.mechanisms") == 0 ||
           strcmp(key, "sasl.server.max.receive.size") == 0 ||
           strcmp(key, "sasl.mechanism.inter.broker.protocol") == 0 ||
           strcmp(key, "sasl.mechanism.controller.protocol") == 0;
}

/* The ssl.* keys laminar reads (broker/security/tls.h). */
static bool tls_key_served(const char *key)
{
    for (int k = 0; k < BROKER_TLS_KEYS_COUNT; k++)
        if (strcmp(key, broker_tls_key_name((enum broker_tls_key)k)) == 0)
            return true;
    return false;
}

static const struct refused_key *refused_find(const char *key)
{
    if (sasl_key_served(key) || tls_key_served(key) || strcmp(key, "quota.window.num") == 0 ||
        strcmp(key, "quota.window.size.seconds") == 0)
        return NULL;
    for (size_t i = 0; i < LM_ARRAY_LEN(g_refused); i++) {
        const char *k = g_refused[i].key;
        size_t n = strlen(k);
        if (k[n - 1] == '.' ? strncmp(key, k, n) == 0 : strcmp(key, k) == 0)
            return &g_refused[i];
    }
    return NULL;
}

/* Per-listener overrides `listener.name.<listener>.<key>` (Kafka's ListenerName prefix), SASL
 * ones also as `listener.name.<listener>.<mechanism>.sasl.<key>`. */
static const struct refused_key *refused_find_any(const char *key)
{
    static const struct refused_key listener_sasl = {
        "sasl.", NULL,
        "this SASL setting (laminar reads sasl.enabled.mechanisms and "
        "listener.name.<l>.<mechanism>.sasl.jaas.config)"};
    static const char prefix[] = "listener.name.";
    if (strncmp(key, prefix, sizeof(prefix) - 1) != 0)
        return refused_find(key);
    const char *rest = strchr(key + sizeof(prefix) - 1, '.');
    if (rest == NULL)
        return NULL;
    static const struct refused_key listener_reauth = {"connections.max.reauth.ms", "0",
                                                       "per-listener SASL re-authentication"};
    if (strcmp(rest + 1, "sasl.enabled.mechanisms") == 0)
        return NULL;
    if (strcmp(rest + 1, "connections.max.reauth.ms") == 0)
        return &listener_reauth;
    /* listener.name.<l>.<mechanism>.sasl.jaas.config */
    const char *mech_end = strchr(rest + 1, '.');
    if (mech_end != NULL && strcmp(mech_end, ".sasl.jaas.config") == 0)
        return NULL;
    /* listener.name.<l>.oauthbearer.sasl.server.callback.handler.class and the secured
     * validator's sasl.oauthbearer.* keys under the mechanism prefix (sasl_api.c) */
    if (mech_end != NULL && strncmp(rest + 1, "oauthbearer.", 12) == 0 &&
        (strcmp(mech_end, ".sasl.server.callback.handler.class") == 0 ||
         (strncmp(mech_end + 1, "sasl.oauthbearer.", 17) == 0 && sasl_key_served(mech_end + 1))))
        return NULL;
    const struct refused_key *r = refused_find(rest + 1);
    if ((r == NULL || sasl_key_served(rest + 1)) && strstr(rest, "sasl.") != NULL)
        r = &listener_sasl;
    return r;
}

static bool is_security_protocol(const char *s, size_t n)
{
    static const char *const names[] = {"PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"};
    for (size_t i = 0; i < LM_ARRAY_LEN(names); i++)
        if (strlen(names[i]) == n && strncasecmp(names[i], s, n) == 0)
            return true;
    return false;
}

/* One item of a comma-separated list (Kafka's Csv.parseCsvMap): `key` or `key:value`, with
 * spaces around either trimmed. */
struct csv_item {
    const char *key, *value; /* value NULL when the item has no ':' */
    size_t key_len, value_len;
};

static const char *trim_span(const char *p, size_t *n)
{
    while (*n > 0 && *p == ' ') {
        p++;
        (*n)--;
    }
    while (*n > 0 && p[*n - 1] == ' ')
        (*n)--;
    return p;
}

/* Parses the item at *pos and advances past it. Returns false at the end of the list. */
static bool csv_next(const char **pos, struct csv_item *it)
{
    const char *p;
    size_t n;
    if (!list_next(pos, &p, &n))
        return false;
    const char *colon = memchr(p, ':', n);
    it->key_len = colon ? (size_t)(colon - p) : n;
    it->key = trim_span(p, &it->key_len);
    it->value = NULL;
    it->value_len = 0;
    if (colon != NULL) {
        it->value_len = n - (size_t)(colon + 1 - p);
        it->value = trim_span(colon + 1, &it->value_len);
    }
    return true;
}

/* Finds name among the keys of a list, case-insensitively (Kafka upper-cases listener names). */
static bool csv_find(const char *list, const char *name, struct csv_item *out)
{
    size_t nlen = strlen(name);
    const char *pos = list;
    while (csv_next(&pos, out))
        if (out->key_len == nlen && strncasecmp(out->key, name, nlen) == 0)
            return true;
    return false;
}

/* Checks every `NAME:PROTOCOL` item of listener.security.protocol.map. */
static int check_protocol_map(const char *map)
{
    const char *pos = map;
    struct csv_item it;
    while (csv_next(&pos, &it)) {
        if (it.key_len == 0 || it.value == NULL || !is_security_protocol(it.value, it.value_len)) {
            BLOG_ERROR("config: listener.security.protocol.map: invalid entry '%.*s' (expected "
                       "NAME:PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)",
                       (int)(it.value ? (size_t)(it.value + it.value_len - it.key) : it.key_len),
                       it.key);
            return LM_E_CONFIG;
        }
    }
    return 0;
}

/* Kafka's rule (KafkaConfig.effectiveListenerSecurityProtocolMap): the map when set, else the
 * protocol names themselves, with controller.listener.names defaulting to PLAINTEXT. */
static int check_listener(const struct broker_config *cfg, const char *which,
                          const struct broker_listener *l, bool *sasl, bool *tls)
{
    const char *map = broker_config_get(cfg, "listener.security.protocol.map");
    const char *controllers = broker_config_get(cfg, "controller.listener.names");
    const char *proto = NULL;
    size_t proto_len = 0;
    struct csv_item it;
    if (map != NULL && map[0] != '\0') {
        if (csv_find(map, l->name, &it)) {
            proto = it.value;
            proto_len = it.value_len;
        }
    } else if (is_security_protocol(l->name, strlen(l->name))) {
        proto = l->name;
        proto_len = strlen(l->name);
    } else if (controllers != NULL && csv_find(controllers, l->name, &it)) {
        proto = "PLAINTEXT";
        proto_len = 9;
    }
    if (proto == NULL) {
        BLOG_ERROR("config: %s: listener %s has no security protocol; map it in "
                   "listener.security.protocol.map (e.g. %s:PLAINTEXT)",
                   which, l->name, l->name);
        return LM_E_CONFIG;
    }
    LM_ASSERT(is_security_protocol(proto, proto_len));
    *sasl = proto_len >= 5 && strncasecmp(proto, "SASL_", 5) == 0;
    *tls = (proto_len == 3 && strncasecmp(proto, "SSL", 3) == 0) ||
           (proto_len == 8 && strncasecmp(proto, "SASL_SSL", 8) == 0);
    if (*sasl && controllers != NULL && csv_find(controllers, l->name, &it)) {
        BLOG_ERROR("config: %s: controller listener %s://%s:%u: security protocol %.*s is not "
                   "supported there (node-to-node traffic runs PLAINTEXT or SSL, with client "
                   "certificates and laminar.cluster.secret)",
                   which, l->name, l->host, l->port, (int)proto_len, proto);
        return LM_E_UNSUPPORTED;
    }
    return 0;
}

/* Copies a listener name (trimmed span) into out; false when it does not fit. */
static bool name_copy(char out[BROKER_LISTENER_NAME_BYTES], const char *p, size_t n)
{
    if (n == 0 || n >= BROKER_LISTENER_NAME_BYTES)
        return false;
    memcpy(out, p, n);
    out[n] = '\0';
    return true;
}

bool broker_config_is_controller_listener(const struct broker_config *cfg, const char *name)
{
    for (uint32_t i = 0; i < cfg->controller_listener_names_count; i++)
        if (strcasecmp(cfg->controller_listener_names[i], name) == 0)
            return true;
    return false;
}

const struct broker_listener *broker_config_advertised_for(const struct broker_config *cfg,
                                                           const char *name)
{
    for (uint32_t i = 0; i < cfg->advertised_count; i++)
        if (strcasecmp(cfg->advertised[i].name, name) == 0)
            return &cfg->advertised[i];
    for (uint32_t i = 0; i < cfg->advertised_count; i++)
        if (!broker_config_is_controller_listener(cfg, cfg->advertised[i].name))
            return &cfg->advertised[i];
    return cfg->advertised_count > 0 ? &cfg->advertised[0] : &cfg->listeners[0];
}

static bool listed(const struct broker_listener *ls, uint32_t n, const char *name)
{
    for (uint32_t i = 0; i < n; i++)
        if (strcasecmp(ls[i].name, name) == 0)
            return true;
    return false;
}

/* Kafka's effective protocol map has an entry for name (see check_listener). */
static bool protocol_mapped(const struct broker_config *cfg, const char *name)
{
    const char *map = broker_config_get(cfg, "listener.security.protocol.map");
    struct csv_item it;
    if (map != NULL && map[0] != '\0')
        return csv_find(map, name, &it);
    return is_security_protocol(name, strlen(name)) ||
           broker_config_is_controller_listener(cfg, name);
}

/* process.roles, controller.listener.names and the inter-broker listener, with KafkaConfig's
 * checks of how they fit the listeners (validateValues and the KRaft role checks). The
 * effective advertised broker listeners are advertised.listeners (else listeners) without the
 * controller listeners; the controller listeners serve only the quorum. With process.roles
 * unset (laminar's own single-node start, which Kafka 4 would refuse) only the checks that do
 * not depend on the roles apply. Returns 0 or LM_E_CONFIG after one error line. */
static int check_listener_roles(struct broker_config *cfg)
{
    const char *roles = broker_config_get(cfg, "process.roles");
    const char *controllers = broker_config_get(cfg, "controller.listener.names");
    const char *ibl = broker_config_get(cfg, "inter.broker.listener.name");
    const char *ibp = broker_config_get(cfg, "security.inter.broker.protocol");
    cfg->process_roles = 0;
    cfg->controller_listener_names_count = 0;
    cfg->inter_broker_listener[0] = '\0';
    const char *pos = roles ? roles : "", *p;
    size_t n;
    while (list_next(&pos, &p, &n)) {
        uint32_t bit = n == 6 && strncmp(p, "broker", 6) == 0         ? BROKER_ROLE_BROKER
                       : n == 10 && strncmp(p, "controller", 10) == 0 ? BROKER_ROLE_CONTROLLER
                                                                      : 0;
        if (bit == 0 || (cfg->process_roles & bit) != 0) {
            BLOG_ERROR("config: process.roles: '%.*s' is not a role, or given twice (expected "
                       "broker, controller or both)",
                       (int)n, p);
            return LM_E_CONFIG;
        }
        cfg->process_roles |= bit;
    }
    pos = controllers ? controllers : "";
    while (list_next(&pos, &p, &n)) {
        uint32_t i = cfg->controller_listener_names_count;
        if (i == BROKER_LISTENERS_MAX ||
            !name_copy(cfg->controller_listener_names[i], trim_span(p, &n), n)) {
            BLOG_ERROR("config: controller.listener.names: too many names, or '%.*s' is too "
                       "long",
                       (int)n, p);
            return LM_E_CONFIG;
        }
        cfg->controller_listener_names_count++;
    }
    bool explicit_ibl = ibl != NULL && ibl[0] != '\0';
    if (explicit_ibl && ibp != NULL) {
        BLOG_ERROR("config: only one of inter.broker.listener.name and "
                   "security.inter.broker.protocol should be set");
        return LM_E_CONFIG;
    }
    /* Without inter.broker.listener.name the listener is named after the protocol (Kafka's
     * ListenerName.forSecurityProtocol); laminar accepts PLAINTEXT and SASL_PLAINTEXT. */
    const char *ib_name = explicit_ibl ? ibl : ibp != NULL && ibp[0] != '\0' ? ibp : "PLAINTEXT";
    char ib[BROKER_LISTENER_NAME_BYTES];
    size_t ib_len = strlen(ib_name);
    if (!name_copy(ib, trim_span(ib_name, &ib_len), ib_len)) {
        BLOG_ERROR("config: inter.broker.listener.name: '%s' is not a listener name", ib_name);
        return LM_E_CONFIG;
    }
    if (explicit_ibl && !protocol_mapped(cfg, ib)) {
        BLOG_ERROR("config: listener with name %s defined in inter.broker.listener.name not "
                   "found in listener.security.protocol.map",
                   ib);
        return LM_E_CONFIG;
    }
    const struct broker_listener *adv = cfg->advertised_count ? cfg->advertised : cfg->listeners;
    uint32_t adv_n = cfg->advertised_count ? cfg->advertised_count : cfg->listeners_count;
    uint32_t adv_brokers = 0;
    char names[BROKER_LISTENERS_MAX * BROKER_LISTENER_NAME_BYTES] = ""; /* for the messages */
    size_t names_len = 0;
    for (uint32_t i = 0; i < adv_n; i++) {
        if (strcmp(adv[i].host, "0.0.0.0") == 0) {
            BLOG_ERROR("config: advertised.listeners cannot use the nonroutable meta-address "
                       "0.0.0.0 (listener %s); use a routable IP address",
                       adv[i].name);
            return LM_E_CONFIG;
        }
        if (broker_config_is_controller_listener(cfg, adv[i].name))
            continue;
        adv_brokers++;
        size_t nl = strnlen(adv[i].name, BROKER_LISTENER_NAME_BYTES - 1);
        if (names_len + 1 + nl < sizeof(names)) {
            if (names_len > 0)
                names[names_len++] = ',';
            memcpy(names + names_len, adv[i].name, nl);
            names_len += nl;
            names[names_len] = '\0';
        }
        if (!listed(cfg->listeners, cfg->listeners_count, adv[i].name)) {
            BLOG_ERROR("config: advertised.listeners listener names must be equal to or a "
                       "subset of the ones defined in listeners; %s is not in listeners",
                       adv[i].name);
            return LM_E_CONFIG;
        }
    }
    bool ib_advertised = false;
    for (uint32_t i = 0; i < adv_n && !ib_advertised; i++)
        ib_advertised = strcasecmp(adv[i].name, ib) == 0 &&
                        !broker_config_is_controller_listener(cfg, adv[i].name);
    uint32_t listeners_ctl = 0;
    for (uint32_t i = 0; i < cfg->listeners_count; i++)
        listeners_ctl += broker_config_is_controller_listener(cfg, cfg->listeners[i].name);
    if (cfg->process_roles & BROKER_ROLE_CONTROLLER) {
        for (uint32_t i = 0; i < cfg->controller_listener_names_count; i++) {
            if (!listed(cfg->listeners, cfg->listeners_count, cfg->controller_listener_names[i])) {
                BLOG_ERROR("config: controller.listener.names must only contain values "
                           "appearing in listeners when running the KRaft controller role (%s "
                           "is not)",
                           cfg->controller_listener_names[i]);
                return LM_E_CONFIG;
            }
        }
        if (cfg->controller_listener_names_count == 0) {
            BLOG_ERROR("config: controller.listener.names must contain at least one value "
                       "appearing in listeners when running the KRaft controller role");
            return LM_E_CONFIG;
        }
    }
    if (cfg->process_roles == BROKER_ROLE_CONTROLLER) {
        if (listeners_ctl != cfg->listeners_count) {
            BLOG_ERROR("config: listeners must only contain KRaft controller listeners from "
                       "controller.listener.names when process.roles=controller");
            return LM_E_CONFIG;
        }
        if (explicit_ibl && broker_config_is_controller_listener(cfg, ib)) {
            BLOG_ERROR("config: controller.listener.names must not contain an explicitly set "
                       "inter.broker.listener.name when process.roles=controller");
            return LM_E_CONFIG;
        }
        return 0; /* no broker listener: no inter-broker one either */
    }
    if (cfg->process_roles == BROKER_ROLE_BROKER) {
        if (cfg->controller_listener_names_count == 0 || listeners_ctl != 0) {
            BLOG_ERROR("config: controller.listener.names must contain at least one value, "
                       "none of them in listeners, when running KRaft with just the broker "
                       "role");
            return LM_E_CONFIG;
        }
        for (uint32_t i = 0; i < cfg->controller_listener_names_count; i++) {
            if (!protocol_mapped(cfg, cfg->controller_listener_names[i])) {
                BLOG_ERROR("config: controller listener with name %s defined in "
                           "controller.listener.names not found in "
                           "listener.security.protocol.map",
                           cfg->controller_listener_names[i]);
                return LM_E_CONFIG;
            }
        }
    }
    if (cfg->process_roles & BROKER_ROLE_BROKER) {
        if (adv_brokers == 0) {
            BLOG_ERROR("config: there must be at least one broker advertised listener; perhaps "
                       "all listeners appear in controller.listener.names?");
            return LM_E_CONFIG;
        }
        if (!ib_advertised) {
            BLOG_ERROR("config: inter.broker.listener.name must be a listener name defined in "
                       "advertised.listeners; the valid options based on currently configured "
                       "listeners are %s",
                       names);
            return LM_E_CONFIG;
        }
    } else if (explicit_ibl && !ib_advertised) {
        /* process.roles unset: an inter-broker listener asked for must still exist */
        BLOG_ERROR("config: inter.broker.listener.name must be a listener name defined in "
                   "advertised.listeners; the valid options based on currently configured "
                   "listeners are %s",
                   names);
        return LM_E_CONFIG;
    }
    if (ib_advertised)
        memcpy(cfg->inter_broker_listener, ib, sizeof(ib));
    return 0;
}

/* A SASL_PLAINTEXT listener needs mechanisms laminar serves and, for PLAIN, its users: checked
 * here, before anything touches the log dirs (the JAAS text itself is parsed by the handler
 * layer, broker/handlers/sasl_api.c). Kafka's key names, its ListenerName prefix lower-cased. */
static int check_sasl_listener(const struct broker_config *cfg, const struct broker_listener *l,
                               bool tls)
{
    char key[BROKER_LISTENER_NAME_BYTES + 64], lower[BROKER_LISTENER_NAME_BYTES];
    size_t n = strnlen(l->name, sizeof(lower) - 1);
    for (size_t i = 0; i < n; i++)
        lower[i] = (char)(l->name[i] >= 'A' && l->name[i] <= 'Z' ? l->name[i] + 32 : l->name[i]);
    lower[n] = '\0';
    snprintf(key, sizeof(key), "listener.name.%s.sasl.enabled.mechanisms", lower);
    const char *list = broker_config_get(cfg, key);
    if (list == NULL)
        list = broker_config_get(cfg, "sasl.enabled.mechanisms");
    if (list == NULL || list[0] == '\0') {
        BLOG_ERROR("config: listener %s://%s:%u: security protocol %s needs "
                   "sasl.enabled.mechanisms (Kafka's default GSSAPI is not supported; laminar "
                   "serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER)",
                   l->name, l->host, l->port, tls ? "SASL_SSL" : "SASL_PLAINTEXT");
        return LM_E_CONFIG;
    }
    static const char *const served[] = {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER"};
    const char *pos = list, *p;
    bool plain = false;
    while (list_next(&pos, &p, &n)) {
        p = trim_span(p, &n);
        bool ok = false;
        for (size_t i = 0; i < LM_ARRAY_LEN(served) && !ok; i++)
            ok = strlen(served[i]) == n && strncmp(served[i], p, n) == 0;
        if (!ok) {
            BLOG_ERROR("config: listener %s: SASL mechanism %.*s is not supported (laminar "
                       "serves PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 and OAUTHBEARER)",
                       l->name, (int)n, p);
            return LM_E_UNSUPPORTED;
        }
        plain |= n == 5;
    }
    snprintf(key, sizeof(key), "listener.name.%s.plain.sasl.jaas.config", lower);
    if (plain && broker_config_get(cfg, key) == NULL) {
        BLOG_ERROR("config: listener %s enables PLAIN but %s is not set (a PlainLoginModule "
                   "with user_<name>=\"<password>\" options; a static JAAS file is not read)",
                   l->name, key);
        return LM_E_CONFIG;
    }
    return 0;
}

/* Listener name lower-cased: Kafka's ListenerName.configPrefix. */
static void listener_lower(const char *name, char out[BROKER_LISTENER_NAME_BYTES])
{
    size_t n = strnlen(name, BROKER_LISTENER_NAME_BYTES - 1);
    for (size_t i = 0; i < n; i++)
        out[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    out[n] = '\0';
}

void broker_config_tls_settings(const struct broker_config *cfg, uint32_t listener,
                                struct broker_tls_settings *out)
{
    LM_ASSERT(listener < cfg->listeners_count);
    broker_config_tls_settings_named(cfg, cfg->listeners[listener].name, out);
}

void broker_config_tls_settings_named(const struct broker_config *cfg, const char *name,
                                      struct broker_tls_settings *out)
{
    memset(out, 0, sizeof(*out));
    snprintf(out->listener, sizeof(out->listener), "%s", name);
    char lower[BROKER_LISTENER_NAME_BYTES];
    listener_lower(name, lower);
    for (int k = 0; k < BROKER_TLS_KEYS_COUNT; k++) {
        const char *base = broker_tls_key_name((enum broker_tls_key)k);
        snprintf(out->key[k], sizeof(out->key[k]), "listener.name.%s.%s", lower, base);
        out->value[k] = broker_config_get(cfg, out->key[k]);
        if (out->value[k] == NULL) {
            snprintf(out->key[k], sizeof(out->key[k]), "%s", base);
            out->value[k] = broker_config_get(cfg, base);
        }
    }
}

/* An SSL / SASL_SSL listener's settings make a context (files read, the key matches its
 * certificate, values known); the runtime builds it again when it starts. */
static int check_tls_listener(struct broker_config *cfg, uint32_t i)
{
    struct broker_tls_settings st;
    broker_config_tls_settings(cfg, i, &st);
    for (int k = 0; k < BROKER_TLS_KEYS_COUNT; k++)
        if (st.value[k] != NULL)
            broker_config_mark_used(cfg, st.key[k]);
    char err[512];
    struct broker_tls_ctx *ctx = NULL;
    int rc = broker_tls_ctx_new(&st, &ctx, err, sizeof(err));
    if (rc == LM_E_CONFIG)
        BLOG_ERROR("config: listener %s://%s:%u: %s", cfg->listeners[i].name,
                   cfg->listeners[i].host, cfg->listeners[i].port, err);
    else if (rc != 0)
        BLOG_ERROR("config: listener %s: TLS context: %s", cfg->listeners[i].name, lm_strerror(rc));
    broker_tls_ctx_free(ctx);
    return rc;
}

/* Node-to-node connections go to the peers' controller listener (the first of
 * controller.listener.names, as Kafka's controller channel does): when it is SSL they run TLS
 * as a client with that listener's settings (keystore = the node's client certificate,
 * truststore = the CAs its peers' certificates must chain to), checked here by building the
 * client context. */
static int check_peer_tls(struct broker_config *cfg)
{
    bool checked_before = cfg->peer_tls; /* serve.c checks twice: warn once */
    cfg->peer_tls = false;
    if (cfg->controller_listener_names_count == 0)
        return 0;
    struct broker_listener l = {0};
    snprintf(l.name, sizeof(l.name), "%s", cfg->controller_listener_names[0]);
    bool sasl = false, tls = false;
    int rc = check_listener(cfg, "controller.listener.names", &l, &sasl, &tls);
    if (rc != 0 || !tls)
        return rc;
    cfg->peer_tls = true;
    struct broker_tls_settings st;
    broker_config_tls_settings_named(cfg, l.name, &st);
    for (int k = 0; k < BROKER_TLS_KEYS_COUNT; k++)
        if (st.value[k] != NULL)
            broker_config_mark_used(cfg, st.key[k]);
    /* with the authorizer on, internal requests need a super user's certificate: without
     * client authentication every peer is User:ANONYMOUS and the cluster cannot form */
    const char *authz = broker_config_get(cfg, "authorizer.class.name");
    const char *ca = st.value[BROKER_TLS_CLIENT_AUTH];
    if (!checked_before && authz != NULL && authz[0] != '\0' &&
        (ca == NULL || strcasecmp(ca, "none") == 0))
        BLOG_WARN("config: controller listener %s is SSL without ssl.client.auth and the "
                  "authorizer is on: node-to-node requests are refused unless User:ANONYMOUS is "
                  "in super.users (set %s=required)",
                  l.name, st.key[BROKER_TLS_CLIENT_AUTH]);
    char err[512];
    struct broker_tls_ctx *ctx = NULL;
    rc = broker_tls_ctx_new_client(&st, &ctx, err, sizeof(err));
    if (rc == LM_E_CONFIG)
        BLOG_ERROR("config: controller listener %s (node-to-node connections): %s", l.name, err);
    else if (rc != 0)
        BLOG_ERROR("config: controller listener %s: client TLS context: %s", l.name,
                   lm_strerror(rc));
    broker_tls_ctx_free(ctx);
    return rc;
}

int broker_config_check_supported(struct broker_config *cfg)
{
    /* The list is newest first: report the key given first, as a reader of the file would. */
    const struct broker_config_entry *bad = NULL;
    const struct refused_key *why = NULL;
    for (const struct broker_config_entry *e = cfg->entries; e != NULL; e = e->next) {
        const struct refused_key *r = refused_find_any(e->key);
        if (r == NULL || e->value[0] == '\0' ||
            (r->harmless != NULL && strcasecmp(e->value, r->harmless) == 0))
            continue;
        if (strcmp(e->key, "security.inter.broker.protocol") == 0 &&
            strcasecmp(e->value, "SASL_PLAINTEXT") == 0)
            continue;
        bad = e;
        why = r;
    }
    if (bad != NULL) {
        BLOG_ERROR("config: %s is not supported yet (%s is not implemented); remove it to start",
                   bad->key, why->feature);
        return LM_E_UNSUPPORTED;
    }
    /* The ACL authorizer's keys (broker/security/authorizer.h): another authorizer class or a
     * malformed super.users stops the start before anything is written. */
    struct authz_config authz;
    const char *authz_why = NULL;
    if (authz_config_parse(&authz, broker_config_get(cfg, "authorizer.class.name"),
                           broker_config_get(cfg, "super.users"),
                           broker_config_get(cfg, "allow.everyone.if.no.acl.found"),
                           &authz_why) != 0) {
        BLOG_ERROR("config: %s: this setting is not supported; fix it to start", authz_why);
        return LM_E_UNSUPPORTED;
    }
    const char *map = broker_config_get(cfg, "listener.security.protocol.map");
    int rc = map != NULL ? check_protocol_map(map) : 0;
    for (uint32_t i = 0; rc == 0 && i < cfg->listeners_count; i++)
        rc = check_listener(cfg, "listeners", &cfg->listeners[i], &cfg->listener_sasl[i],
                            &cfg->listener_tls[i]);
    for (uint32_t i = 0; rc == 0 && i < cfg->advertised_count; i++) {
        bool sasl = false, tls = false;
        rc = check_listener(cfg, "advertised.listeners", &cfg->advertised[i], &sasl, &tls);
    }
    for (uint32_t i = 0; rc == 0 && i < cfg->listeners_count; i++)
        if (cfg->listener_sasl[i])
            rc = check_sasl_listener(cfg, &cfg->listeners[i], cfg->listener_tls[i]);
    for (uint32_t i = 0; rc == 0 && i < cfg->listeners_count; i++)
        if (cfg->listener_tls[i])
            rc = check_tls_listener(cfg, i);
    if (rc == 0)
        rc = check_listener_roles(cfg);
    if (rc == 0)
        rc = check_peer_tls(cfg);
    return rc;
}

int broker_config_finish(struct broker_config *cfg)
{
    int rc = broker_config_check_supported(cfg);
    if (rc != 0)
        return rc;
    if (cfg->retention_ms_ != INT64_MIN)
        cfg->log_retention_ms = cfg->retention_ms_;
    else if (cfg->retention_minutes_ != INT64_MIN)
        cfg->log_retention_ms = cfg->retention_minutes_ < 0 ? -1 : cfg->retention_minutes_ * 60000;
    else
        cfg->log_retention_ms = cfg->retention_hours_ < 0 ? -1 : cfg->retention_hours_ * 3600000;
    if (cfg->advertised_count == 0) {
        memcpy(cfg->advertised, cfg->listeners, sizeof(cfg->listeners));
        cfg->advertised_count = cfg->listeners_count;
    }
    if (cfg->shard_memory_bytes_max <= 0)
        cfg->shard_memory_bytes_max = 64ll << 20;
    for (struct broker_config_entry *e = cfg->entries; e != NULL; e = e->next) {
        if (!e->used && !e->warned) {
            e->warned = true;
            BLOG_WARN("config: ignoring key %s (not used by laminar)", e->key);
        }
    }
    if (cfg->listeners_count == 0) {
        BLOG_ERROR("config: no listeners");
        return LM_E_CONFIG;
    }
    for (uint32_t i = 0; i < cfg->listeners_count; i++) {
        if (cfg->listeners[i].port == 0) {
            BLOG_ERROR("config: listener %s needs a port", cfg->listeners[i].name);
            return LM_E_CONFIG;
        }
    }
    return 0;
}
