/* The web console's endpoints (see console.h). */
#define _GNU_SOURCE
#include "broker/console/console.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "broker/console/json.h"
#include "broker/console/kclient.h"
#include "broker/log.h"
#include "common/lm_endian.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"
#include "protocol/record_batch.h"
#include "protocol/records.h"

#ifndef LAMINAR_VERSION
#define LAMINAR_VERSION "dev"
#endif

enum {
    CONSOLE_ARENA_BYTES = 32 << 20,    /* one call's requests and responses */
    CONSOLE_BODY_BYTES_MAX = 48 << 20, /* one call's JSON */
    CONSOLE_RECORDS_BYTES_DEFAULT = 256 << 10,
    CONSOLE_RECORDS_BYTES_MAX = 4 << 20, /* Fetch max_bytes of one record browser call */
    CONSOLE_RECORDS_MAX = 500,
    CONSOLE_UNCOMPRESSED_MAX = 16 << 20,
    CONSOLE_NAME_BYTES = 256,
    CONSOLE_LAG_TIMEOUT_MS = 2000, /* one read or write of the scrape's loopback calls */
    CONSOLE_LAG_BUDGET_MS = 3000,  /* the scrape's group lag, all groups */
};

static uint64_t console_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* ---- setup ---------------------------------------------------------------------------------- */

static bool is_controller_listener(const struct broker_config *cfg, const char *name)
{
    for (uint32_t i = 0; i < cfg->controller_listener_names_count; i++)
        if (strcasecmp(cfg->controller_listener_names[i], name) == 0)
            return true;
    return false;
}

/* The mechanisms listener l enables, as Kafka reads them (listener.name.<l>., else global). */
static const char *listener_mechanisms(const struct broker_config *cfg, const char *name)
{
    char key[128], lower[64];
    size_t n = strlen(name);
    if (n >= sizeof(lower))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        lower[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    snprintf(key, sizeof(key), "listener.name.%s.sasl.enabled.mechanisms", lower);
    const char *v = broker_config_get(cfg, key);
    return v != NULL ? v : broker_config_get(cfg, "sasl.enabled.mechanisms");
}

static bool list_has(const char *list, const char *item)
{
    size_t n = strlen(item);
    for (const char *p = list; p != NULL && *p != 0;) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e != 0 && *e != ',' && *e != ' ')
            e++;
        if ((size_t)(e - p) == n && strncasecmp(p, item, n) == 0)
            return true;
        p = e;
    }
    return false;
}

static void set_target(struct console *c, const struct broker_listener *l)
{
    const char *h = l->host;
    if (h[0] == 0 || strcmp(h, "0.0.0.0") == 0)
        h = "127.0.0.1";
    else if (strcmp(h, "::") == 0)
        h = "::1";
    snprintf(c->host, sizeof(c->host), "%s", h);
    c->port = l->port;
}

void console_setup(struct console *c, const struct broker_config *cfg)
{
    memset(c, 0, sizeof(*c));
    c->node_id = cfg->node_id;
    c->timeout_ms = 10000;
    const char *authz = broker_config_get(cfg, "authorizer.class.name");
    bool secure = authz != NULL && authz[0] != 0;
    for (uint32_t l = 0; l < cfg->listeners_count; l++)
        secure |= cfg->listener_sasl[l] || cfg->listener_tls[l];
    for (uint32_t l = 0; l < cfg->listeners_count; l++) {
        const struct broker_listener *li = &cfg->listeners[l];
        if (is_controller_listener(cfg, li->name) || cfg->listener_tls[l])
            continue;
        if (!secure && !cfg->listener_sasl[l]) {
            set_target(c, li);
            c->auth = CONSOLE_ANONYMOUS;
            return;
        }
        if (secure && cfg->listener_sasl[l]) {
            const char *m = listener_mechanisms(cfg, li->name);
            enum console_auth a = list_has(m, "PLAIN")           ? CONSOLE_PLAIN
                                  : list_has(m, "SCRAM-SHA-512") ? CONSOLE_SCRAM_SHA_512
                                  : list_has(m, "SCRAM-SHA-256") ? CONSOLE_SCRAM_SHA_256
                                                                 : CONSOLE_OFF;
            if (a != CONSOLE_OFF) {
                set_target(c, li);
                c->auth = a;
                return;
            }
        }
    }
    snprintf(c->why_off, sizeof(c->why_off),
             secure ? "security is on and no SASL_PLAINTEXT client listener enables PLAIN or "
                      "SCRAM (the console authenticates its users there)"
                    : "no PLAINTEXT client listener");
}

/* ---- helpers -------------------------------------------------------------------------------- */

struct call {
    const struct console *c;
    struct kclient k;
    struct kafka_arena a;
    struct broker_metrics_out *o;
    struct lm_json j;
};

static struct kafka_str kstr(const char *s)
{
    return (struct kafka_str){s, (int32_t)strlen(s)};
}

static bool kstr_eq(struct kafka_str a, const char *b)
{
    return a.len >= 0 && (size_t)a.len == strlen(b) && memcmp(a.ptr, b, (size_t)a.len) == 0;
}

static void error_body(struct console_response *r, int status, const char *msg)
{
    free(r->body.buf);
    memset(&r->body, 0, sizeof(r->body));
    r->status = status;
    r->type = "application/json";
    struct lm_json j;
    lm_json_init(&j, &r->body);
    lm_json_obj_begin(&j);
    lm_json_key(&j, "error");
    lm_json_str(&j, msg);
    lm_json_obj_end(&j);
}

static void j_err(struct lm_json *j, int16_t code)
{
    lm_json_key(j, "error");
    if (code == 0)
        lm_json_null(j);
    else
        lm_json_str(j, kafka_error_name(code));
}

/* The partitions of one topic in a Metadata response, or NULL. */
static const struct kafka_metadata_response_metadata_response_topic *
md_topic(const struct kafka_metadata_response *md, const char *name)
{
    for (int32_t t = 0; t < md->topics_count; t++)
        if (kstr_eq(md->topics[t].name, name))
            return &md->topics[t];
    return NULL;
}

static int metadata(struct call *k, const char *topic, bool all, struct kafka_metadata_response *md)
{
    struct kafka_metadata_request rq;
    kafka_metadata_request_init(&rq);
    struct kafka_metadata_request_metadata_request_topic t = {0};
    if (topic != NULL) {
        t.name = kstr(topic);
        rq.topics = &t;
        rq.topics_count = 1;
    } else {
        rq.topics_count = all ? -1 : 0;
    }
    rq.allow_auto_topic_creation = false;
    return kclient_metadata(&k->k, 12, &rq, md, &k->a);
}

/* Offsets of every partition of topic (ListOffsets v7, timestamp ts: -1 latest, -2 earliest)
 * into out[partition] (-1 where unknown). */
static int list_offsets(struct call *k, const char *topic, int32_t nparts, int64_t ts,
                        int8_t isolation, int64_t *out)
{
    for (int32_t p = 0; p < nparts; p++)
        out[p] = -1;
    if (nparts <= 0)
        return 0;
    struct kafka_list_offsets_request rq;
    kafka_list_offsets_request_init(&rq);
    struct kafka_list_offsets_request_topic t = {0};
    t.name = kstr(topic);
    t.partitions = kafka_arena_alloc_array(&k->a, (size_t)nparts, sizeof(*t.partitions), 8);
    if (t.partitions == NULL)
        return LM_E_NOMEM;
    t.partitions_count = nparts;
    for (int32_t p = 0; p < nparts; p++) {
        t.partitions[p].partition_index = p;
        t.partitions[p].current_leader_epoch = -1;
        t.partitions[p].timestamp = ts;
    }
    rq.replica_id = -1;
    rq.isolation_level = isolation;
    rq.topics = &t;
    rq.topics_count = 1;
    struct kafka_list_offsets_response rs;
    int rc = kclient_list_offsets(&k->k, 7, &rq, &rs, &k->a);
    if (rc != 0)
        return rc;
    for (int32_t i = 0; i < rs.topics_count; i++)
        for (int32_t p = 0; p < rs.topics[i].partitions_count; p++) {
            const struct kafka_list_offsets_response_partition *rp = &rs.topics[i].partitions[p];
            if (rp->error_code == 0 && rp->partition_index >= 0 && rp->partition_index < nparts)
                out[rp->partition_index] = rp->offset;
        }
    return 0;
}

/* ---- /api/cluster --------------------------------------------------------------------------- */

static void api_cluster(struct call *k, struct console_response *r)
{
    struct kafka_metadata_response md;
    int rc = metadata(k, NULL, true, &md);
    if (rc != 0) {
        error_body(r, 502, lm_strerror(rc));
        return;
    }
    struct lm_json *j = &k->j;
    int64_t partitions = 0, under = 0, offline = 0;
    for (int32_t t = 0; t < md.topics_count; t++)
        for (int32_t p = 0; p < md.topics[t].partitions_count; p++) {
            const struct kafka_metadata_response_metadata_response_partition *mp =
                &md.topics[t].partitions[p];
            partitions++;
            under += mp->isr_nodes_count < mp->replica_nodes_count;
            offline += mp->leader_id < 0;
        }
    lm_json_obj_begin(j);
    lm_json_key(j, "cluster_id");
    lm_json_strn(j, md.cluster_id.ptr, md.cluster_id.len);
    lm_json_key(j, "controller_id");
    lm_json_int(j, md.controller_id);
    lm_json_key(j, "node_id");
    lm_json_int(j, k->c->node_id);
    lm_json_key(j, "version");
    lm_json_str(j, "laminar " LAMINAR_VERSION);
    lm_json_key(j, "auth");
    lm_json_str(j, k->c->auth == CONSOLE_ANONYMOUS ? "none" : "basic");
    lm_json_key(j, "topics");
    lm_json_int(j, md.topics_count);
    lm_json_key(j, "partitions");
    lm_json_int(j, partitions);
    lm_json_key(j, "under_replicated_partitions");
    lm_json_int(j, under);
    lm_json_key(j, "offline_partitions");
    lm_json_int(j, offline);
    /* SWIM's view in a cluster; Metadata lists the live (unfenced) brokers alone, so members
     * SWIM holds dead or gone are added after them */
    enum { STATES_MAX = 64 };
    int32_t ids[STATES_MAX];
    uint8_t states[STATES_MAX];
    size_t nstates = k->c->node_states != NULL
                         ? k->c->node_states(k->c->node_states_ctx, ids, states, STATES_MAX)
                         : 0;
    static const char *const names[] = {"alive", "suspect", "dead", "left"};
    lm_json_key(j, "swim");
    lm_json_bool(j, nstates > 0);
    lm_json_key(j, "brokers");
    lm_json_arr_begin(j);
    for (int32_t b = 0; b < md.brokers_count; b++) {
        const struct kafka_metadata_response_metadata_response_broker *mb = &md.brokers[b];
        const char *state = nstates > 0 ? "unknown" : "alive";
        for (size_t i = 0; i < nstates; i++)
            if (ids[i] == mb->node_id)
                state = states[i] < 4 ? names[states[i]] : "unknown";
        lm_json_obj_begin(j);
        lm_json_key(j, "node_id");
        lm_json_int(j, mb->node_id);
        lm_json_key(j, "host");
        lm_json_strn(j, mb->host.ptr, mb->host.len);
        lm_json_key(j, "port");
        lm_json_int(j, mb->port);
        lm_json_key(j, "rack");
        lm_json_strn(j, mb->rack.ptr, mb->rack.len);
        lm_json_key(j, "state");
        lm_json_str(j, state);
        lm_json_key(j, "registered");
        lm_json_bool(j, true);
        lm_json_key(j, "controller");
        lm_json_bool(j, mb->node_id == md.controller_id);
        lm_json_obj_end(j);
    }
    for (size_t i = 0; i < nstates; i++) {
        bool listed = false;
        for (int32_t b = 0; b < md.brokers_count && !listed; b++)
            listed = md.brokers[b].node_id == ids[i];
        if (listed)
            continue;
        lm_json_obj_begin(j);
        lm_json_key(j, "node_id");
        lm_json_int(j, ids[i]);
        lm_json_key(j, "host");
        lm_json_null(j);
        lm_json_key(j, "port");
        lm_json_null(j);
        lm_json_key(j, "rack");
        lm_json_null(j);
        lm_json_key(j, "state");
        lm_json_str(j, states[i] < 4 ? names[states[i]] : "unknown");
        lm_json_key(j, "registered");
        lm_json_bool(j, false); /* fenced or gone: not in Metadata */
        lm_json_key(j, "controller");
        lm_json_bool(j, false);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    lm_json_obj_end(j);
}

/* ---- /api/topics ---------------------------------------------------------------------------- */

/* Sizes by topic and partition from DescribeLogDirs (topic NULL: all). */
static int log_dirs(struct call *k, const char *topic, int32_t nparts,
                    struct kafka_describe_log_dirs_response *rs)
{
    struct kafka_describe_log_dirs_request rq;
    kafka_describe_log_dirs_request_init(&rq);
    struct kafka_describe_log_dirs_request_describable_log_dir_topic t = {0};
    if (topic != NULL) {
        t.topic = kstr(topic);
        t.partitions = kafka_arena_alloc_array(&k->a, (size_t)nparts + 1, sizeof(int32_t), 8);
        if (t.partitions == NULL)
            return LM_E_NOMEM;
        for (int32_t p = 0; p < nparts; p++)
            t.partitions[p] = p;
        t.partitions_count = nparts;
        rq.topics = &t;
        rq.topics_count = 1;
    } else {
        rq.topics_count = -1;
    }
    return kclient_describe_log_dirs(&k->k, 4, &rq, rs, &k->a);
}

static int64_t topic_size(const struct kafka_describe_log_dirs_response *ld, struct kafka_str name,
                          int32_t partition)
{
    int64_t sum = 0;
    bool any = false;
    for (int32_t d = 0; d < ld->results_count; d++)
        for (int32_t t = 0; t < ld->results[d].topics_count; t++) {
            const struct kafka_describe_log_dirs_response_describe_log_dirs_topic *lt =
                &ld->results[d].topics[t];
            if (lt->name.len != name.len || memcmp(lt->name.ptr, name.ptr, (size_t)name.len) != 0)
                continue;
            for (int32_t p = 0; p < lt->partitions_count; p++)
                if (partition < 0 || lt->partitions[p].partition_index == partition) {
                    sum += lt->partitions[p].partition_size;
                    any = true;
                }
        }
    return any ? sum : -1;
}

static void api_topics(struct call *k, struct console_response *r)
{
    struct kafka_metadata_response md;
    int rc = metadata(k, NULL, true, &md);
    if (rc != 0) {
        error_body(r, 502, lm_strerror(rc));
        return;
    }
    struct kafka_describe_log_dirs_response ld;
    if (log_dirs(k, NULL, 0, &ld) != 0)
        ld.results_count = 0;
    struct lm_json *j = &k->j;
    lm_json_obj_begin(j);
    lm_json_key(j, "topics");
    lm_json_arr_begin(j);
    for (int32_t t = 0; t < md.topics_count; t++) {
        const struct kafka_metadata_response_metadata_response_topic *mt = &md.topics[t];
        int32_t rf = 0, under = 0;
        for (int32_t p = 0; p < mt->partitions_count; p++) {
            if (mt->partitions[p].replica_nodes_count > rf)
                rf = mt->partitions[p].replica_nodes_count;
            under += mt->partitions[p].isr_nodes_count < mt->partitions[p].replica_nodes_count;
        }
        lm_json_obj_begin(j);
        lm_json_key(j, "name");
        lm_json_strn(j, mt->name.ptr, mt->name.len);
        j_err(j, mt->error_code);
        lm_json_key(j, "internal");
        lm_json_bool(j, mt->is_internal);
        lm_json_key(j, "partitions");
        lm_json_int(j, mt->partitions_count > 0 ? mt->partitions_count : 0);
        lm_json_key(j, "replication_factor");
        lm_json_int(j, rf);
        lm_json_key(j, "under_replicated");
        lm_json_int(j, under);
        lm_json_key(j, "size_bytes");
        lm_json_int(j, topic_size(&ld, mt->name, -1));
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    lm_json_obj_end(j);
}

static void j_int_array(struct lm_json *j, const int32_t *v, int32_t n)
{
    lm_json_arr_begin(j);
    for (int32_t i = 0; i < n; i++)
        lm_json_int(j, v[i]);
    lm_json_arr_end(j);
}

static void topic_configs(struct call *k, const char *topic)
{
    struct lm_json *j = &k->j;
    struct kafka_describe_configs_request rq;
    kafka_describe_configs_request_init(&rq);
    struct kafka_describe_configs_request_describe_configs_resource res = {0};
    res.resource_type = 2; /* TOPIC */
    res.resource_name = kstr(topic);
    res.configuration_keys_count = -1;
    rq.resources = &res;
    rq.resources_count = 1;
    struct kafka_describe_configs_response rs;
    lm_json_key(j, "configs");
    if (kclient_describe_configs(&k->k, 4, &rq, &rs, &k->a) != 0 || rs.results_count != 1 ||
        rs.results[0].error_code != 0) {
        lm_json_null(j);
        return;
    }
    static const char *const sources[] = {"UNKNOWN",
                                          "DYNAMIC_TOPIC_CONFIG",
                                          "DYNAMIC_BROKER_CONFIG",
                                          "DYNAMIC_DEFAULT_BROKER_CONFIG",
                                          "STATIC_BROKER_CONFIG",
                                          "DEFAULT_CONFIG",
                                          "DYNAMIC_BROKER_LOGGER_CONFIG",
                                          "CLIENT_METRICS_CONFIG",
                                          "GROUP_CONFIG"};
    lm_json_arr_begin(j);
    for (int32_t i = 0; i < rs.results[0].configs_count; i++) {
        const struct kafka_describe_configs_response_describe_configs_resource_result *c =
            &rs.results[0].configs[i];
        lm_json_obj_begin(j);
        lm_json_key(j, "name");
        lm_json_strn(j, c->name.ptr, c->name.len);
        lm_json_key(j, "value");
        if (c->is_sensitive)
            lm_json_null(j);
        else
            lm_json_strn(j, c->value.ptr, c->value.len);
        lm_json_key(j, "source");
        lm_json_str(j, c->config_source >= 0 && c->config_source < 9 ? sources[c->config_source]
                                                                     : "UNKNOWN");
        lm_json_key(j, "sensitive");
        lm_json_bool(j, c->is_sensitive);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
}

static void api_topic(struct call *k, const char *topic, struct console_response *r)
{
    struct kafka_metadata_response md;
    int rc = metadata(k, topic, false, &md);
    if (rc != 0) {
        error_body(r, 502, lm_strerror(rc));
        return;
    }
    const struct kafka_metadata_response_metadata_response_topic *mt = md_topic(&md, topic);
    if (mt == NULL || mt->error_code != 0) {
        error_body(r, mt != NULL && mt->error_code == 29 ? 403 : 404,
                   mt != NULL ? kafka_error_name(mt->error_code) : "UNKNOWN_TOPIC_OR_PARTITION");
        return;
    }
    int32_t n = mt->partitions_count > 0 ? mt->partitions_count : 0;
    int64_t *hw = kafka_arena_alloc_array(&k->a, (size_t)n + 1, sizeof(int64_t) * 3, 8);
    if (hw == NULL) {
        error_body(r, 503, "too large");
        return;
    }
    int64_t *lso = hw + n + 1, *start = lso + n + 1;
    (void)list_offsets(k, topic, n, -1, 0, hw);
    (void)list_offsets(k, topic, n, -1, 1, lso);
    (void)list_offsets(k, topic, n, -2, 0, start);
    struct kafka_describe_log_dirs_response ld;
    if (log_dirs(k, topic, n, &ld) != 0)
        ld.results_count = 0;
    struct lm_json *j = &k->j;
    lm_json_obj_begin(j);
    lm_json_key(j, "name");
    lm_json_str(j, topic);
    lm_json_key(j, "internal");
    lm_json_bool(j, mt->is_internal);
    lm_json_key(j, "size_bytes");
    lm_json_int(j, topic_size(&ld, mt->name, -1));
    lm_json_key(j, "partitions");
    lm_json_arr_begin(j);
    for (int32_t i = 0; i < n; i++) {
        const struct kafka_metadata_response_metadata_response_partition *mp = &mt->partitions[i];
        int32_t p = mp->partition_index;
        bool in = p >= 0 && p < n;
        lm_json_obj_begin(j);
        lm_json_key(j, "partition");
        lm_json_int(j, p);
        j_err(j, mp->error_code);
        lm_json_key(j, "leader");
        lm_json_int(j, mp->leader_id);
        lm_json_key(j, "leader_epoch");
        lm_json_int(j, mp->leader_epoch);
        lm_json_key(j, "replicas");
        j_int_array(j, mp->replica_nodes, mp->replica_nodes_count);
        lm_json_key(j, "isr");
        j_int_array(j, mp->isr_nodes, mp->isr_nodes_count);
        lm_json_key(j, "offline_replicas");
        j_int_array(j, mp->offline_replicas, mp->offline_replicas_count);
        lm_json_key(j, "log_start_offset");
        lm_json_int(j, in ? start[p] : -1);
        lm_json_key(j, "high_watermark");
        lm_json_int(j, in ? hw[p] : -1);
        lm_json_key(j, "last_stable_offset");
        lm_json_int(j, in ? lso[p] : -1);
        lm_json_key(j, "size_bytes");
        lm_json_int(j, topic_size(&ld, mt->name, p));
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    topic_configs(k, topic);
    lm_json_obj_end(j);
}

/* ---- /api/groups ---------------------------------------------------------------------------- */

static int list_groups(struct call *k, struct kafka_list_groups_response *rs)
{
    struct kafka_list_groups_request rq;
    kafka_list_groups_request_init(&rq);
    rq.states_filter_count = 0;
    rq.types_filter_count = 0;
    return kclient_list_groups(&k->k, 4, &rq, rs, &k->a);
}

static void api_groups(struct call *k, struct console_response *r)
{
    struct kafka_list_groups_response rs;
    int rc = list_groups(k, &rs);
    if (rc != 0) {
        error_body(r, 502, lm_strerror(rc));
        return;
    }
    struct lm_json *j = &k->j;
    lm_json_obj_begin(j);
    j_err(j, rs.error_code);
    lm_json_key(j, "groups");
    lm_json_arr_begin(j);
    for (int32_t g = 0; g < rs.groups_count; g++) {
        lm_json_obj_begin(j);
        lm_json_key(j, "group_id");
        lm_json_strn(j, rs.groups[g].group_id.ptr, rs.groups[g].group_id.len);
        lm_json_key(j, "protocol_type");
        lm_json_strn(j, rs.groups[g].protocol_type.ptr, rs.groups[g].protocol_type.len);
        lm_json_key(j, "state");
        lm_json_strn(j, rs.groups[g].group_state.ptr, rs.groups[g].group_state.len);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    lm_json_obj_end(j);
}

/* A consumer protocol Assignment (ConsumerProtocolAssignment: version, topics of partitions,
 * user data) as JSON; null when the bytes are not one. */
static void j_assignment(struct lm_json *j, struct kafka_bytes b)
{
    struct kafka_reader r;
    int16_t version;
    int32_t nt;
    kafka_reader_init(&r, b.ptr, b.len > 0 ? (size_t)b.len : 0);
    if (b.len <= 0 || kafka_read_int16(&r, &version) != 0 || version < 0 ||
        kafka_read_int32(&r, &nt) != 0 || nt < 0 || (size_t)nt > kafka_reader_left(&r) / 6) {
        lm_json_null(j);
        return;
    }
    /* parse first, so a truncated assignment writes nothing partial */
    struct kafka_reader probe = r;
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_str name;
        int32_t np;
        if (kafka_read_str(&probe, &name) != 0 || name.len < 0 ||
            kafka_read_int32(&probe, &np) != 0 || np < 0 ||
            (size_t)np > kafka_reader_left(&probe) / 4 || kafka_read_skip(&probe, 4 * (size_t)np)) {
            lm_json_null(j);
            return;
        }
    }
    lm_json_arr_begin(j);
    for (int32_t t = 0; t < nt; t++) {
        struct kafka_str name;
        int32_t np, p;
        (void)kafka_read_str(&r, &name);
        (void)kafka_read_int32(&r, &np);
        lm_json_obj_begin(j);
        lm_json_key(j, "topic");
        lm_json_strn(j, name.ptr, name.len);
        lm_json_key(j, "partitions");
        lm_json_arr_begin(j);
        for (int32_t i = 0; i < np; i++) {
            (void)kafka_read_int32(&r, &p);
            lm_json_int(j, p);
        }
        lm_json_arr_end(j);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
}

/* Committed offsets of group (OffsetFetch v7, every topic). */
static int group_offsets(struct call *k, const char *group, struct kafka_offset_fetch_response *rs)
{
    struct kafka_offset_fetch_request rq;
    kafka_offset_fetch_request_init(&rq);
    rq.group_id = kstr(group);
    rq.topics_count = -1;
    rq.require_stable = false;
    int rc = kclient_offset_fetch(&k->k, 7, &rq, rs, &k->a);
    if (rc == 0 && rs->error_code != 0)
        return LM_E_STATE;
    return rc;
}

/* Log end offsets of the partitions a group committed, per topic of rs: ends[t][p]. */
static int64_t **group_ends(struct call *k, const struct kafka_offset_fetch_response *rs)
{
    int64_t **ends = kafka_arena_alloc_array(&k->a, (size_t)rs->topics_count + 1, sizeof(*ends), 8);
    if (ends == NULL)
        return NULL;
    for (int32_t t = 0; t < rs->topics_count; t++) {
        int32_t n = 0;
        for (int32_t p = 0; p < rs->topics[t].partitions_count; p++)
            if (rs->topics[t].partitions[p].partition_index + 1 > n)
                n = rs->topics[t].partitions[p].partition_index + 1;
        ends[t] = kafka_arena_alloc_array(&k->a, (size_t)n + 1, sizeof(int64_t), 8);
        char name[CONSOLE_NAME_BYTES];
        if (ends[t] == NULL || rs->topics[t].name.len <= 0 ||
            (size_t)rs->topics[t].name.len >= sizeof(name))
            return NULL;
        memcpy(name, rs->topics[t].name.ptr, (size_t)rs->topics[t].name.len);
        name[rs->topics[t].name.len] = 0;
        if (list_offsets(k, name, n, -1, 0, ends[t]) != 0)
            return NULL;
    }
    return ends;
}

static void api_group(struct call *k, const char *group, struct console_response *r)
{
    struct kafka_describe_groups_request rq;
    kafka_describe_groups_request_init(&rq);
    struct kafka_str g = kstr(group);
    rq.groups = &g;
    rq.groups_count = 1;
    struct kafka_describe_groups_response dg;
    int rc = kclient_describe_groups(&k->k, 5, &rq, &dg, &k->a);
    if (rc != 0 || dg.groups_count != 1) {
        error_body(r, 502, rc != 0 ? lm_strerror(rc) : "bad DescribeGroups response");
        return;
    }
    const struct kafka_describe_groups_response_described_group *d = &dg.groups[0];
    if (d->error_code != 0) {
        error_body(r, d->error_code == 30 ? 403 : 502, kafka_error_name(d->error_code));
        return;
    }
    if (kstr_eq(d->group_state, "Dead")) {
        error_body(r, 404, "GROUP_ID_NOT_FOUND");
        return;
    }
    struct kafka_offset_fetch_response of;
    bool have_offsets = group_offsets(k, group, &of) == 0;
    int64_t **ends = have_offsets ? group_ends(k, &of) : NULL;
    struct lm_json *j = &k->j;
    lm_json_obj_begin(j);
    lm_json_key(j, "group_id");
    lm_json_str(j, group);
    lm_json_key(j, "state");
    lm_json_strn(j, d->group_state.ptr, d->group_state.len);
    lm_json_key(j, "protocol_type");
    lm_json_strn(j, d->protocol_type.ptr, d->protocol_type.len);
    lm_json_key(j, "protocol");
    lm_json_strn(j, d->protocol_data.ptr, d->protocol_data.len);
    lm_json_key(j, "members");
    lm_json_arr_begin(j);
    bool consumer = kstr_eq(d->protocol_type, "consumer");
    for (int32_t m = 0; m < d->members_count; m++) {
        const struct kafka_describe_groups_response_member *mm = &d->members[m];
        lm_json_obj_begin(j);
        lm_json_key(j, "member_id");
        lm_json_strn(j, mm->member_id.ptr, mm->member_id.len);
        lm_json_key(j, "group_instance_id");
        lm_json_strn(j, mm->group_instance_id.ptr, mm->group_instance_id.len);
        lm_json_key(j, "client_id");
        lm_json_strn(j, mm->client_id.ptr, mm->client_id.len);
        lm_json_key(j, "client_host");
        lm_json_strn(j, mm->client_host.ptr, mm->client_host.len);
        lm_json_key(j, "assignment");
        if (consumer)
            j_assignment(j, mm->member_assignment);
        else
            lm_json_null(j);
        lm_json_obj_end(j);
    }
    lm_json_arr_end(j);
    lm_json_key(j, "offsets");
    int64_t total = 0;
    if (!have_offsets) {
        lm_json_null(j);
    } else {
        lm_json_arr_begin(j);
        for (int32_t t = 0; t < of.topics_count; t++)
            for (int32_t p = 0; p < of.topics[t].partitions_count; p++) {
                const struct kafka_offset_fetch_response_partition *op =
                    &of.topics[t].partitions[p];
                if (op->committed_offset < 0 || op->partition_index < 0)
                    continue;
                int64_t end = ends != NULL ? ends[t][op->partition_index] : -1;
                int64_t lag =
                    end >= 0 ? (end > op->committed_offset ? end - op->committed_offset : 0) : -1;
                if (lag > 0)
                    total += lag;
                lm_json_obj_begin(j);
                lm_json_key(j, "topic");
                lm_json_strn(j, of.topics[t].name.ptr, of.topics[t].name.len);
                lm_json_key(j, "partition");
                lm_json_int(j, op->partition_index);
                lm_json_key(j, "committed_offset");
                lm_json_int(j, op->committed_offset);
                lm_json_key(j, "log_end_offset");
                lm_json_int(j, end);
                lm_json_key(j, "lag");
                lm_json_int(j, lag);
                lm_json_key(j, "metadata");
                lm_json_strn(j, op->metadata.ptr, op->metadata.len);
                lm_json_obj_end(j);
            }
        lm_json_arr_end(j);
    }
    lm_json_key(j, "lag");
    lm_json_int(j, total);
    lm_json_obj_end(j);
}

/* ---- /api/records --------------------------------------------------------------------------- */

struct records_query {
    char topic[CONSOLE_NAME_BYTES];
    long long partition, offset, timestamp, max, bytes;
    bool by_timestamp;
};

/* Parses the record browser's query; false with *why for a 400. */
static bool records_query_parse(const char *q, struct records_query *out, const char **why)
{
    memset(out, 0, sizeof(*out));
    out->max = 50;
    out->bytes = CONSOLE_RECORDS_BYTES_DEFAULT;
    if (http_query_get(q, "topic", out->topic, sizeof(out->topic)) != 1 || out->topic[0] == 0) {
        *why = "topic= is required";
        return false;
    }
    if (http_query_int(q, "partition", 0, INT32_MAX, &out->partition) != 1) {
        *why = "partition= is required (0 .. 2^31-1)";
        return false;
    }
    int o = http_query_int(q, "offset", -2, INT64_MAX, &out->offset);
    int t = http_query_int(q, "timestamp", 0, INT64_MAX, &out->timestamp);
    if (o < 0 || t < 0 || (o == 1 && t == 1)) {
        *why = "offset= (-2 earliest, -1 latest, or an offset) or timestamp= (ms), not both";
        return false;
    }
    if (o == 0 && t == 0)
        out->offset = -2;
    out->by_timestamp = t == 1;
    if (http_query_int(q, "max", 1, CONSOLE_RECORDS_MAX, &out->max) < 0) {
        *why = "max= must be 1..500";
        return false;
    }
    if (http_query_int(q, "bytes", 1024, CONSOLE_RECORDS_BYTES_MAX, &out->bytes) < 0) {
        *why = "bytes= must be 1024..4194304";
        return false;
    }
    return true;
}

/* Writes the records of one batch from `from` on (at most *left of them). */
static int j_batch(struct lm_json *j, const uint8_t *buf, size_t len, int64_t from, long long *left,
                   int64_t *next)
{
    struct kafka_batch_reader br;
    int rc = kafka_batch_reader_open(&br, buf, len, CONSOLE_UNCOMPRESSED_MAX);
    if (rc != 0)
        return rc;
    const struct kafka_batch_header *h = &br.header;
    bool control = (h->attributes & 0x20) != 0;
    if (!control) {
        struct kafka_record_iter it;
        struct kafka_record rec;
        kafka_batch_reader_iter(&br, &it);
        while (*left > 0 && (rc = kafka_record_iter_next(&it, &rec)) == 1) {
            int64_t off = h->base_offset + rec.offset_delta;
            if (off < from)
                continue;
            (*left)--;
            *next = off + 1;
            lm_json_obj_begin(j);
            lm_json_key(j, "offset");
            lm_json_int(j, off);
            lm_json_key(j, "timestamp");
            lm_json_int(j, (h->attributes & 0x08) ? h->max_timestamp
                                                  : h->base_timestamp + rec.timestamp_delta);
            lm_json_key(j, "key");
            lm_json_base64(j, rec.key, rec.key_len);
            lm_json_key(j, "value");
            lm_json_base64(j, rec.value, rec.value_len);
            lm_json_key(j, "headers");
            lm_json_arr_begin(j);
            struct kafka_header_iter hi;
            struct kafka_record_header hd;
            kafka_record_headers(&rec, &hi);
            while (kafka_header_iter_next(&hi, &hd) == 1) {
                lm_json_obj_begin(j);
                lm_json_key(j, "key");
                lm_json_strn(j, (const char *)hd.key, hd.key_len);
                lm_json_key(j, "value");
                lm_json_base64(j, hd.value, hd.value_len);
                lm_json_obj_end(j);
            }
            lm_json_arr_end(j);
            lm_json_obj_end(j);
        }
        if (rc > 0)
            rc = 0;
    }
    if (*left > 0 && kafka_batch_last_offset(h) + 1 > *next)
        *next = kafka_batch_last_offset(h) + 1;
    kafka_batch_reader_close(&br);
    return rc < 0 ? rc : 0;
}

static void api_records(struct call *k, const char *query, struct console_response *r)
{
    struct records_query q;
    const char *why = NULL;
    if (!records_query_parse(query, &q, &why)) {
        error_body(r, 400, why);
        return;
    }
    int64_t from = q.offset;
    if (q.by_timestamp || from < 0) {
        struct kafka_metadata_response md;
        int rc = metadata(k, q.topic, false, &md);
        const struct kafka_metadata_response_metadata_response_topic *mt =
            rc == 0 ? md_topic(&md, q.topic) : NULL;
        if (mt == NULL || mt->error_code != 0 || q.partition >= mt->partitions_count) {
            error_body(r, 404, "unknown topic or partition");
            return;
        }
        int64_t *offs =
            kafka_arena_alloc_array(&k->a, (size_t)mt->partitions_count, sizeof(int64_t), 8);
        if (offs == NULL || list_offsets(k, q.topic, mt->partitions_count,
                                         q.by_timestamp ? q.timestamp : from, 0, offs) != 0) {
            error_body(r, 502, "ListOffsets failed");
            return;
        }
        from = offs[q.partition];
    }
    struct kafka_fetch_request rq;
    kafka_fetch_request_init(&rq);
    struct kafka_fetch_request_fetch_topic t = {0};
    struct kafka_fetch_request_fetch_partition p = {0};
    p.partition = (int32_t)q.partition;
    p.current_leader_epoch = -1;
    p.fetch_offset = from < 0 ? 0 : from;
    p.last_fetched_epoch = -1;
    p.log_start_offset = -1;
    p.partition_max_bytes = (int32_t)q.bytes;
    t.topic = kstr(q.topic);
    t.partitions = &p;
    t.partitions_count = 1;
    rq.replica_id = -1;
    rq.max_wait_ms = 0;
    rq.min_bytes = 0;
    rq.max_bytes = (int32_t)q.bytes;
    rq.isolation_level = 0;
    rq.session_id = 0;
    rq.session_epoch = -1;
    rq.topics = &t;
    rq.topics_count = 1;
    rq.forgotten_topics_data_count = 0;
    rq.rack_id = KAFKA_STR("");
    struct kafka_fetch_response rs;
    int rc = from < 0 ? 0 : kclient_fetch(&k->k, 12, &rq, &rs, &k->a);
    if (rc != 0) {
        error_body(r, 502, lm_strerror(rc));
        return;
    }
    const struct kafka_fetch_response_partition_data *pd = NULL;
    if (from >= 0)
        for (int32_t i = 0; i < rs.responses_count && pd == NULL; i++)
            for (int32_t x = 0; x < rs.responses[i].partitions_count; x++)
                if (rs.responses[i].partitions[x].partition_index == p.partition)
                    pd = &rs.responses[i].partitions[x];
    if (from >= 0 && (rs.error_code != 0 || pd == NULL)) {
        error_body(r, 502, rs.error_code != 0 ? kafka_error_name(rs.error_code) : "no partition");
        return;
    }
    if (pd != NULL && pd->error_code != 0) {
        int16_t e = pd->error_code;
        error_body(r, e == 29 ? 403 : e == 3 ? 404 : e == 1 ? 416 : 502, kafka_error_name(e));
        return;
    }
    struct lm_json *j = &k->j;
    lm_json_obj_begin(j);
    lm_json_key(j, "topic");
    lm_json_str(j, q.topic);
    lm_json_key(j, "partition");
    lm_json_int(j, q.partition);
    lm_json_key(j, "from_offset");
    lm_json_int(j, from);
    lm_json_key(j, "high_watermark");
    lm_json_int(j, pd != NULL ? pd->high_watermark : -1);
    lm_json_key(j, "last_stable_offset");
    lm_json_int(j, pd != NULL ? pd->last_stable_offset : -1);
    lm_json_key(j, "log_start_offset");
    lm_json_int(j, pd != NULL ? pd->log_start_offset : -1);
    lm_json_key(j, "records");
    lm_json_arr_begin(j);
    long long left = q.max;
    int64_t next = from < 0 ? -1 : from;
    if (pd != NULL && pd->records.len > 0) {
        const uint8_t *b = pd->records.ptr;
        size_t n = (size_t)pd->records.len;
        while (n > 0 && left > 0) {
            struct kafka_batch_header h;
            if (kafka_batch_header_parse(b, n, &h) != 0 || kafka_batch_total_size(&h) > n)
                break; /* a partial batch at the end of the fetch */
            if (j_batch(j, b, kafka_batch_total_size(&h), from, &left, &next) != 0)
                break;
            b += kafka_batch_total_size(&h);
            n -= kafka_batch_total_size(&h);
        }
    }
    lm_json_arr_end(j);
    lm_json_key(j, "next_offset");
    lm_json_int(j, next);
    lm_json_obj_end(j);
}

/* ---- routing -------------------------------------------------------------------------------- */

/* Opens the loopback connection as the request's user. 0, or a status with r filled. */
static int call_open(struct call *k, const struct http_request *req, struct console_response *r)
{
    char user[256], password[256];
    if (k->c->auth != CONSOLE_ANONYMOUS &&
        !http_basic_parse(req->authorization, user, sizeof(user), password, sizeof(password))) {
        error_body(r, 401, "authentication required");
        return 401;
    }
    int rc = kclient_open(&k->k, k->c->host, k->c->port, k->c->timeout_ms);
    if (rc != 0) {
        error_body(r, 503, "cannot reach the broker's listener");
        return 503;
    }
    switch (k->c->auth) {
    case CONSOLE_PLAIN:
        rc = kclient_sasl_plain(&k->k, user, password, &k->a);
        break;
    case CONSOLE_SCRAM_SHA_256:
        rc = kclient_sasl_scram(&k->k, "SCRAM-SHA-256", user, password, &k->a);
        break;
    case CONSOLE_SCRAM_SHA_512:
        rc = kclient_sasl_scram(&k->k, "SCRAM-SHA-512", user, password, &k->a);
        break;
    default:
        break;
    }
    if (k->c->auth != CONSOLE_ANONYMOUS)
        explicit_bzero(password, sizeof(password));
    if (rc != 0) {
        kclient_close(&k->k);
        error_body(r, rc == KCLIENT_REFUSED ? 401 : 502,
                   rc == KCLIENT_REFUSED ? "authentication failed" : lm_strerror(rc));
        return r->status;
    }
    return 0;
}

/* The name after prefix in path (one segment, non-empty), or NULL. */
static const char *segment(const char *path, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(path, prefix, n) != 0 || path[n] == 0 || strchr(path + n, '/') != NULL)
        return NULL;
    return path + n;
}

void console_serve(const struct console *c, const struct http_request *req,
                   struct console_response *out)
{
    memset(out, 0, sizeof(*out));
    out->status = 200;
    if (strcmp(req->path, "/") == 0 || strcmp(req->path, "/index.html") == 0) {
        if (c->auth == CONSOLE_OFF) {
            out->type = "text/plain; charset=utf-8";
            broker_metrics_printf(&out->body, "the laminar console is off: %s\n", c->why_off);
            out->status = 404;
            return;
        }
        if (c->auth != CONSOLE_ANONYMOUS) {
            /* the page too asks for credentials (checked by the broker like any call) */
            struct call k = {.c = c, .o = &out->body};
            kafka_arena_init(&k.a, 1 << 20);
            int st = call_open(&k, req, out);
            kclient_close(&k.k);
            kafka_arena_deinit(&k.a);
            if (st != 0)
                return;
        }
        out->type = "text/html; charset=utf-8";
        broker_metrics_printf(&out->body, "%.*s", (int)console_page_html_len, console_page_html);
        return;
    }
    if (strncmp(req->path, "/api/", 5) != 0) {
        error_body(out, 404, "not found");
        return;
    }
    if (c->auth == CONSOLE_OFF) {
        error_body(out, 404, c->why_off);
        return;
    }
    const char *name = NULL;
    enum { R_CLUSTER, R_TOPICS, R_TOPIC, R_GROUPS, R_GROUP, R_RECORDS } route;
    if (strcmp(req->path, "/api/cluster") == 0)
        route = R_CLUSTER;
    else if (strcmp(req->path, "/api/topics") == 0)
        route = R_TOPICS;
    else if ((name = segment(req->path, "/api/topics/")) != NULL)
        route = R_TOPIC;
    else if (strcmp(req->path, "/api/groups") == 0)
        route = R_GROUPS;
    else if ((name = segment(req->path, "/api/groups/")) != NULL)
        route = R_GROUP;
    else if (strcmp(req->path, "/api/records") == 0)
        route = R_RECORDS;
    else {
        error_body(out, 404, "not found");
        return;
    }
    if (name != NULL && strlen(name) >= CONSOLE_NAME_BYTES) {
        error_body(out, 400, "name too long");
        return;
    }
    struct call k = {.c = c, .o = &out->body};
    kafka_arena_init(&k.a, CONSOLE_ARENA_BYTES);
    if (call_open(&k, req, out) != 0) {
        kafka_arena_deinit(&k.a);
        return;
    }
    out->type = "application/json";
    lm_json_init(&k.j, &out->body);
    switch (route) {
    case R_CLUSTER:
        api_cluster(&k, out);
        break;
    case R_TOPICS:
        api_topics(&k, out);
        break;
    case R_TOPIC:
        api_topic(&k, name, out);
        break;
    case R_GROUPS:
        api_groups(&k, out);
        break;
    case R_GROUP:
        api_group(&k, name, out);
        break;
    case R_RECORDS:
        api_records(&k, req->query, out);
        break;
    }
    kclient_close(&k.k);
    kafka_arena_deinit(&k.a);
    if (out->status == 200 && (!lm_json_ok(&k.j) || out->body.len > CONSOLE_BODY_BYTES_MAX))
        error_body(out, 503, "answer too large or out of memory");
}

/* ---- group lag for /metrics ----------------------------------------------------------------- */

static void prom_label(struct broker_metrics_out *o, const char *s, int32_t len)
{
    /* Prometheus label values escape backslash, quote and newline */
    for (int32_t i = 0; i < len; i++) {
        char ch = s[i];
        if (ch == '\\' || ch == '"')
            broker_metrics_printf(o, "\\%c", ch);
        else if (ch == '\n')
            broker_metrics_printf(o, "\\n");
        else
            broker_metrics_printf(o, "%c", ch);
    }
}

void console_lag_metrics(const struct console *c, struct broker_metrics_out *o)
{
    if (c->auth != CONSOLE_ANONYMOUS)
        return;
    struct call k = {.c = c, .o = o};
    kafka_arena_init(&k.a, CONSOLE_ARENA_BYTES);
    struct kafka_list_groups_response lg;
    /* a scrape must not wait on a slow node for long: short reads, one budget for all groups */
    uint64_t deadline = console_now_ms() + CONSOLE_LAG_BUDGET_MS;
    if (kclient_open(&k.k, c->host, c->port, CONSOLE_LAG_TIMEOUT_MS) != 0 ||
        list_groups(&k, &lg) != 0) {
        kclient_close(&k.k);
        kafka_arena_deinit(&k.a);
        return;
    }
    /* the group ids outlive the arena's reset after each group */
    int32_t ngroups =
        lg.groups_count < CONSOLE_LAG_GROUPS_MAX ? lg.groups_count : CONSOLE_LAG_GROUPS_MAX;
    char(*groups)[CONSOLE_NAME_BYTES] =
        ngroups > 0 ? calloc((size_t)ngroups, CONSOLE_NAME_BYTES) : NULL;
    int32_t n = 0;
    for (int32_t g = 0; groups != NULL && g < ngroups; g++) {
        struct kafka_str gid = lg.groups[g].group_id;
        if (gid.len <= 0 || (size_t)gid.len >= CONSOLE_NAME_BYTES)
            continue;
        memcpy(groups[n], gid.ptr, (size_t)gid.len);
        groups[n++][gid.len] = 0;
    }
    kafka_arena_reset(&k.a);
    broker_metrics_printf(
        o, "# HELP laminar_consumergroup_committed_offset Committed offset per group and "
           "partition.\n# TYPE laminar_consumergroup_committed_offset gauge\n"
           "# HELP laminar_consumergroup_lag Log end offset minus committed offset per group and "
           "partition (kafka-consumer-groups' LAG).\n# TYPE laminar_consumergroup_lag gauge\n");
    for (int32_t g = 0; g < n && console_now_ms() < deadline; g++) {
        const char *group = groups[g];
        struct kafka_offset_fetch_response of;
        if (group_offsets(&k, group, &of) != 0) {
            kafka_arena_reset(&k.a);
            continue;
        }
        int64_t **ends = group_ends(&k, &of);
        if (ends == NULL)
            break;
        for (int32_t t = 0; t < of.topics_count; t++)
            for (int32_t p = 0; p < of.topics[t].partitions_count; p++) {
                const struct kafka_offset_fetch_response_partition *op =
                    &of.topics[t].partitions[p];
                if (op->committed_offset < 0 || op->partition_index < 0 ||
                    ends[t][op->partition_index] < 0)
                    continue;
                int64_t end = ends[t][op->partition_index];
                for (int m = 0; m < 2; m++) {
                    broker_metrics_printf(o, "%s{group=\"",
                                          m == 0 ? "laminar_consumergroup_committed_offset"
                                                 : "laminar_consumergroup_lag");
                    prom_label(o, group, (int32_t)strlen(group));
                    broker_metrics_printf(o, "\",topic=\"");
                    prom_label(o, of.topics[t].name.ptr, of.topics[t].name.len);
                    broker_metrics_printf(o, "\",partition=\"%d\"} %lld\n", op->partition_index,
                                          (long long)(m == 0 ? op->committed_offset
                                                             : (end > op->committed_offset
                                                                    ? end - op->committed_offset
                                                                    : 0)));
                }
            }
        kafka_arena_reset(&k.a); /* each group's answers are written: bound the arena per group */
    }
    free(groups);
    kclient_close(&k.k);
    kafka_arena_deinit(&k.a);
}
