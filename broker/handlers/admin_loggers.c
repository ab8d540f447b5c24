/* BROKER_LOGGER resources (KIP-412): DescribeConfigs lists the node's loggers and their
 * levels, IncrementalAlterConfigs sets them at runtime, as Kafka's ConfigAdminManager and
 * Log4jController do for kafka-configs --entity-type broker-loggers.
 *
 * laminar has one logger, Kafka's root logger "root", whose level is broker/log.c's
 * process-wide minimum level. Kafka's levels map onto laminar's four: TRACE and DEBUG to
 * DEBUG, FATAL and ERROR to ERROR; DescribeConfigs shows laminar's level (what is in effect).
 * Validation and error codes as Kafka's: an unknown logger INVALID_CONFIG "Logger X does not
 * exist!", a level outside Kafka's list INVALID_CONFIG, deleting the root logger's level, APPEND
 * and SUBTRACT INVALID_REQUEST; the resource name must be this node's id. */
#include <stdlib.h>
#include <string.h>

#include "broker/handlers/admin_core.h"
#include "broker/log.h"
#include "common/lm_assert.h"
#include "common/lm_err.h"
#include "protocol/kafka_errors.h"

#define ROOT_LOGGER  "root"
#define VALID_LEVELS "DEBUG, ERROR, FATAL, INFO, TRACE, WARN" /* Kafka's LogLevelConfig */
/* ConfigSource.DYNAMIC_BROKER_LOGGER_CONFIG on the wire (KIP-412). */
#define SOURCE_DYNAMIC_BROKER_LOGGER 6

static const struct {
    const char *name;
    enum broker_log_level level;
} levels[] = {
    {"TRACE", BROKER_LOG_DEBUG}, {"DEBUG", BROKER_LOG_DEBUG}, {"INFO", BROKER_LOG_INFO},
    {"WARN", BROKER_LOG_WARN},   {"ERROR", BROKER_LOG_ERROR}, {"FATAL", BROKER_LOG_ERROR},
};

static const char *level_name(enum broker_log_level l)
{
    switch (l) {
    case BROKER_LOG_DEBUG:
        return "DEBUG";
    case BROKER_LOG_INFO:
        return "INFO";
    case BROKER_LOG_WARN:
        return "WARN";
    case BROKER_LOG_ERROR:
        return "ERROR";
    }
    return "INFO";
}

/* The resource name must be this node's id (Kafka: "Broker id must not be empty" /
 * "Unexpected broker id"). Returns 0 or LM_E_NOMEM; *ok tells whether it is. */
static int logger_resource_check(const struct admin_env *env, struct kafka_str name,
                                 struct kafka_arena *a, int16_t *code, struct kafka_str *msg,
                                 bool *ok)
{
    char *s = NULL;
    *ok = false;
    if (admin_cstr(a, name, &s) != 0)
        return LM_E_NOMEM;
    if (s == NULL || s[0] == '\0') {
        *code = KAFKA_INVALID_REQUEST;
        return admin_fmt(a, msg, "Broker id must not be empty");
    }
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v != env->cfg->node_id) {
        *code = KAFKA_INVALID_REQUEST;
        return admin_fmt(a, msg, "Unexpected broker id, expected %d but received %s",
                         env->cfg->node_id, s);
    }
    *ok = true;
    return 0;
}

int admin_logger_describe(const struct admin_env *env, int16_t version,
                          const struct kafka_describe_configs_request_describe_configs_resource *r,
                          struct kafka_arena *a,
                          struct kafka_describe_configs_response_describe_configs_result *res)
{
    (void)version;
    bool ok = false;
    int rc =
        logger_resource_check(env, r->resource_name, a, &res->error_code, &res->error_message, &ok);
    if (rc != 0 || !ok)
        return rc;
    bool wanted = r->configuration_keys_count < 0;
    for (int32_t i = 0; !wanted && i < r->configuration_keys_count; i++)
        wanted = admin_kstr_eq(r->configuration_keys[i], ROOT_LOGGER);
    res->configs_count = 0;
    if (!wanted)
        return 0;
    res->configs = kafka_arena_alloc_array(a, 1, sizeof(*res->configs), 8);
    if (res->configs == NULL)
        return LM_E_NOMEM;
    res->configs[0] = (struct kafka_describe_configs_response_describe_configs_resource_result){
        .name = admin_kstr(ROOT_LOGGER),
        .value = admin_kstr(level_name(broker_log_get_level())),
        .read_only = false,
        .is_default = false,
        .config_source = SOURCE_DYNAMIC_BROKER_LOGGER,
        .is_sensitive = false,
        .synonyms = NULL,
        .synonyms_count = 0,
        .config_type = 0, /* Kafka leaves a logger's type UNKNOWN */
        .documentation = KAFKA_STR_NULL,
    };
    res->configs_count = 1;
    return 0;
}

typedef struct kafka_incremental_alter_configs_request_alter_configs_resource iac_resource;

int admin_logger_alter(const struct admin_env *env, bool validate_only, const iac_resource *r,
                       struct kafka_arena *a, int16_t *code, struct kafka_str *msg)
{
    bool ok = false;
    int rc = logger_resource_check(env, r->resource_name, a, code, msg, &ok);
    if (rc != 0 || !ok)
        return rc;
    int32_t n = r->configs_count > 0 ? r->configs_count : 0;
    int set_to = -1;
    /* Every operation is validated before any applies, as Kafka validates the whole set. */
    for (int32_t i = 0; i < n; i++) {
        char *name = NULL, *value = NULL;
        if (admin_cstr(a, r->configs[i].name, &name) != 0 ||
            admin_cstr(a, r->configs[i].value, &value) != 0)
            return LM_E_NOMEM;
        int8_t op = r->configs[i].config_operation;
        if (op == ADMIN_OP_APPEND || op == ADMIN_OP_SUBTRACT) {
            *code = KAFKA_INVALID_REQUEST;
            return admin_fmt(a, msg, "%s operation is not allowed for the BROKER_LOGGER resource",
                             op == ADMIN_OP_APPEND ? "APPEND" : "SUBTRACT");
        }
        if (op != ADMIN_OP_SET && op != ADMIN_OP_DELETE) {
            *code = KAFKA_INVALID_REQUEST;
            return admin_fmt(a, msg,
                             "Unknown operation type %d is not allowed for the BROKER_LOGGER "
                             "resource",
                             op);
        }
        if (name == NULL || strcmp(name, ROOT_LOGGER) != 0) {
            *code = KAFKA_INVALID_CONFIG;
            return admin_fmt(a, msg, "Logger %s does not exist!", name ? name : "null");
        }
        if (op == ADMIN_OP_DELETE) {
            *code = KAFKA_INVALID_REQUEST;
            return admin_fmt(a, msg, "Removing the log level of the root logger is not allowed");
        }
        int found = -1;
        for (size_t k = 0; value != NULL && k < LM_ARRAY_LEN(levels); k++) {
            if (strcmp(levels[k].name, value) == 0)
                found = (int)levels[k].level;
        }
        if (found < 0) {
            *code = KAFKA_INVALID_CONFIG;
            return admin_fmt(a, msg,
                             "Cannot set the log level of %s to %s as it is not a supported log "
                             "level. Valid log levels are " VALID_LEVELS,
                             name, value ? value : "null");
        }
        set_to = found;
    }
    if (set_to >= 0 && !validate_only) {
        BLOG_INFO("admin: updating the log level of root to %s",
                  level_name((enum broker_log_level)set_to));
        broker_log_set_level((enum broker_log_level)set_to);
    }
    return 0;
}
