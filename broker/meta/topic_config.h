/* Topic configuration: Kafka's topic config names, types, defaults and broker synonyms, and the
 * typed settings a partition uses. Values are kept as strings, exactly as clients send them in
 * CreateTopics/AlterConfigs, and resolved (topic override > broker config > Kafka default) into
 * a typed struct. Source of names and defaults: Kafka's topic-level configuration reference. */
#ifndef LAMINAR_BROKER_META_TOPIC_CONFIG_H
#define LAMINAR_BROKER_META_TOPIC_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* DescribeConfigs v3+ config_type values (KIP-336). */
enum lm_config_type {
    LM_CONFIG_BOOLEAN = 1,
    LM_CONFIG_STRING = 2,
    LM_CONFIG_INT = 3,
    LM_CONFIG_SHORT = 4,
    LM_CONFIG_LONG = 5,
    LM_CONFIG_DOUBLE = 6,
    LM_CONFIG_LIST = 7,
    LM_CONFIG_CLASS = 8,
    LM_CONFIG_PASSWORD = 9,
};

/* DescribeConfigs config_source values (KIP-226). */
enum lm_config_source {
    LM_CONFIG_SOURCE_UNKNOWN = 0,
    LM_CONFIG_SOURCE_DYNAMIC_TOPIC = 1,
    LM_CONFIG_SOURCE_DYNAMIC_BROKER = 2,
    LM_CONFIG_SOURCE_DYNAMIC_DEFAULT_BROKER = 3,
    LM_CONFIG_SOURCE_STATIC_BROKER = 4,
    LM_CONFIG_SOURCE_DEFAULT = 5,
    LM_CONFIG_SOURCE_DYNAMIC_BROKER_LOGGER = 6,
    LM_CONFIG_SOURCE_CLIENT_METRICS = 7,
    LM_CONFIG_SOURCE_GROUP = 8,
};

struct lm_topic_config_def {
    const char *name; /* topic config name, e.g. "retention.ms" */
    enum lm_config_type type;
    const char *default_value;  /* Kafka's default as a string */
    const char *broker_synonym; /* server.properties key that sets the default, or NULL */
    const char *valid_values;   /* '|'-separated allowed values for enumerations, or NULL */
    int64_t min_value;          /* for numbers */
    const char *doc;
};

/* One key=value pair; both strings are owned by whoever owns the array. */
struct lm_config_entry {
    char *name;
    char *value;
};

/* Typed settings of a topic after resolution; what storage and handlers read. */
struct lm_topic_settings {
    bool cleanup_delete;
    bool cleanup_compact;
    int32_t compression; /* -1 = "producer", else enum kafka_codec; */
    int64_t delete_retention_ms;
    int64_t flush_messages;
    int64_t flush_ms;
    int32_t index_interval_bytes;
    int32_t max_message_bytes;
    bool timestamp_log_append; /* message.timestamp.type=LogAppendTime */
    bool write_caching;        /* write.caching: acks=all from memory (partition.h) */
    bool preallocate;          /* preallocate: zeros written ahead of the log's end (storage.h) */
    int64_t timestamp_before_max_ms;
    int64_t timestamp_after_max_ms;
    int64_t min_compaction_lag_ms;
    int32_t min_insync_replicas;
    int64_t retention_bytes;
    int64_t retention_ms;
    int32_t segment_bytes;
    int64_t segment_ms;
    int32_t segment_index_bytes;
};

/* lm_topic_config_defs returns the table of known topic configs (sorted by name) and its
 * length in *count. */
const struct lm_topic_config_def *lm_topic_config_defs(size_t *count);
/* lm_topic_config_find returns the definition of a topic config name, or NULL if unknown. */
const struct lm_topic_config_def *lm_topic_config_find(const char *name);
/* lm_topic_config_validate checks a value against its definition (type, range, enumeration).
 * Returns 0, LM_E_NOT_FOUND for an unknown name, or LM_E_INVALID. */
int lm_topic_config_validate(const char *name, const char *value);

/* Broker configs that may change at run time (the part of Kafka's DynamicBrokerConfig laminar
 * serves): the broker synonym of every topic config and the keys in other units standing for
 * one (log.retention.hours, ...), i.e. the defaults of every topic, and the replication
 * throttles (leader./follower.replication.throttled.rate). Returns 0, LM_E_NOT_FOUND for a
 * key that is not dynamic, or LM_E_INVALID for a value the key refuses. */
int lm_broker_dynamic_config_validate(const char *name, const char *value);

/* A group config (Kafka's GroupConfig, GROUP config resources): its default is the broker key
 * broker_default when set, else default_value; a value must lie within the broker bounds
 * min_key / max_key (their defaults when unset; NULL: no such bound), besides type_min. */
struct lm_group_config_def {
    const char *name;
    enum lm_config_type type;
    const char *default_value;
    const char *broker_default;
    int64_t type_min;
    const char *min_key;
    int64_t min_default;
    const char *max_key;
    int64_t max_default;
    const char *doc;
};
const struct lm_group_config_def *lm_group_config_defs(size_t *count);
const struct lm_group_config_def *lm_group_config_find(const char *name);
/* Checks a group config value's type and Kafka's static validator (not the broker bounds).
 * Returns 0, LM_E_NOT_FOUND for an unknown name, or LM_E_INVALID. */
int lm_group_config_validate(const char *name, const char *value);

/* lm_topic_settings_resolve computes typed settings: each name takes the topic's value if
 * set, else the broker's value for its synonym if set, else Kafka's default. Either list may
 * be empty. Values are assumed valid (checked by lm_topic_config_validate when stored); an
 * invalid one returns LM_E_INVALID. */
int lm_topic_settings_resolve(const struct lm_config_entry *topic, size_t topic_count,
                              const struct lm_config_entry *broker, size_t broker_count,
                              struct lm_topic_settings *out);

/* lm_topic_config_effective tells the value and source a name has for a topic: used by
 * DescribeConfigs. *value points into one of the lists or the definition table (borrowed). */
int lm_topic_config_effective(const char *name, const struct lm_config_entry *topic,
                              size_t topic_count, const struct lm_config_entry *broker,
                              size_t broker_count, const char **value,
                              enum lm_config_source *source);

#endif
