#include "broker/meta/topic_config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/lm_assert.h"
#include "common/lm_err.h"

#define I64_MAX_STR "9223372036854775807"

/* The most items of a list config with allowed values (cleanup.policy: delete, compact). */
#define LM_TOPIC_CONFIG_LIST_ITEMS_MAX 8

/* Sorted by name (lm_topic_config_find uses bsearch). Defaults are Kafka 4.x's. */
static const struct lm_topic_config_def config_defs[] = {
    {"cleanup.policy", LM_CONFIG_LIST, "delete", "log.cleanup.policy", "delete|compact", 0,
     "Retention policy of old segments: delete, compact, both, or empty (no cleanup: kept "
     "forever)."},
    {"compression.gzip.level", LM_CONFIG_INT, "-1", "compression.gzip.level", NULL, -1,
     "Compression level for gzip."},
    {"compression.lz4.level", LM_CONFIG_INT, "9", "compression.lz4.level", NULL, 1,
     "Compression level for lz4."},
    {"compression.type", LM_CONFIG_STRING, "producer", "compression.type",
     "uncompressed|zstd|lz4|snappy|gzip|producer", 0,
     "Final compression of the topic's data; producer keeps the producer's codec."},
    {"compression.zstd.level", LM_CONFIG_INT, "3", "compression.zstd.level", NULL, -131072,
     "Compression level for zstd."},
    {"delete.retention.ms", LM_CONFIG_LONG, "86400000", "log.cleaner.delete.retention.ms", NULL, 0,
     "How long tombstones are kept in compacted topics."},
    {"file.delete.delay.ms", LM_CONFIG_LONG, "60000", "log.segment.delete.delay.ms", NULL, 0,
     "Delay before a deleted segment file is removed."},
    {"flush.messages", LM_CONFIG_LONG, I64_MAX_STR, "log.flush.interval.messages", NULL, 1,
     "Messages accumulated before the log is forced to disk."},
    {"flush.ms", LM_CONFIG_LONG, I64_MAX_STR, "log.flush.interval.ms", NULL, 0,
     "Time before the log is forced to disk."},
    {"follower.replication.throttled.replicas", LM_CONFIG_LIST, "",
     "follower.replication.throttled.replicas", NULL, 0, "Throttled follower replicas."},
    {"index.interval.bytes", LM_CONFIG_INT, "4096", "log.index.interval.bytes", NULL, 0,
     "Bytes of log between two offset index entries."},
    {"leader.replication.throttled.replicas", LM_CONFIG_LIST, "",
     "leader.replication.throttled.replicas", NULL, 0, "Throttled leader replicas."},
    {"local.retention.bytes", LM_CONFIG_LONG, "-2", "log.local.retention.bytes", NULL, -2,
     "Local retention size with tiered storage (-2: retention.bytes)."},
    {"local.retention.ms", LM_CONFIG_LONG, "-2", "log.local.retention.ms", NULL, -2,
     "Local retention time with tiered storage (-2: retention.ms)."},
    {"max.compaction.lag.ms", LM_CONFIG_LONG, I64_MAX_STR, "log.cleaner.max.compaction.lag.ms",
     NULL, 1, "Longest time a record stays uncompacted."},
    {"max.message.bytes", LM_CONFIG_INT, "1048588", "message.max.bytes", NULL, 0,
     "Largest record batch size allowed."},
    {"message.timestamp.after.max.ms", LM_CONFIG_LONG, "3600000",
     "log.message.timestamp.after.max.ms", NULL, 0,
     "Largest allowed distance of a record timestamp into the future."},
    {"message.timestamp.before.max.ms", LM_CONFIG_LONG, I64_MAX_STR,
     "log.message.timestamp.before.max.ms", NULL, 0,
     "Largest allowed distance of a record timestamp into the past."},
    {"message.timestamp.type", LM_CONFIG_STRING, "CreateTime", "log.message.timestamp.type",
     "CreateTime|LogAppendTime", 0, "Whether record timestamps are the producer's or the log's."},
    {"min.cleanable.dirty.ratio", LM_CONFIG_DOUBLE, "0.5", "log.cleaner.min.cleanable.ratio", NULL,
     0, "Dirty ratio that triggers compaction."},
    {"min.compaction.lag.ms", LM_CONFIG_LONG, "0", "log.cleaner.min.compaction.lag.ms", NULL, 0,
     "Shortest time a record stays uncompacted."},
    {"min.insync.replicas", LM_CONFIG_INT, "1", "min.insync.replicas", NULL, 1,
     "Replicas that must acknowledge an acks=all write."},
    {"preallocate", LM_CONFIG_BOOLEAN, "false", "log.preallocate", NULL, 0,
     "Write zeros ahead of the active segment's end (steps up to 1 MiB), so that an fsync "
     "after an append need not journal the file's growth."},
    {"remote.storage.enable", LM_CONFIG_BOOLEAN, "false", NULL, NULL, 0,
     "Tiered storage for the topic."},
    {"retention.bytes", LM_CONFIG_LONG, "-1", "log.retention.bytes", NULL, -1,
     "Largest size of a partition before old segments are deleted (-1: no limit)."},
    {"retention.ms", LM_CONFIG_LONG, "604800000", "log.retention.ms", NULL, -1,
     "Longest time a segment is kept (-1: no limit)."},
    {"segment.bytes", LM_CONFIG_INT, "1073741824", "log.segment.bytes", NULL, 1048576,
     "Size of a segment file."},
    {"segment.index.bytes", LM_CONFIG_INT, "10485760", "log.index.size.max.bytes", NULL, 4,
     "Size of the offset index of a segment."},
    {"segment.jitter.ms", LM_CONFIG_LONG, "0", "log.roll.jitter.ms", NULL, 0,
     "Random jitter subtracted from segment.ms."},
    {"segment.ms", LM_CONFIG_LONG, "604800000", "log.roll.ms", NULL, 1,
     "Time after which a segment is rolled even if not full."},
    {"unclean.leader.election.enable", LM_CONFIG_BOOLEAN, "false", "unclean.leader.election.enable",
     NULL, 0, "Whether an out-of-sync replica may become leader."},
    {"write.caching", LM_CONFIG_BOOLEAN, "false", "laminar.write.caching.default", NULL, 0,
     "Acknowledge acks=all once a majority of replicas has the batch in memory instead of on "
     "disk (Kafka's guarantee; fsync every flush.ms, 100 ms unless set)."},
};

const struct lm_topic_config_def *lm_topic_config_defs(size_t *count)
{
    *count = LM_ARRAY_LEN(config_defs);
    return config_defs;
}

static int def_cmp(const void *key, const void *elem)
{
    return strcmp((const char *)key, ((const struct lm_topic_config_def *)elem)->name);
}

const struct lm_topic_config_def *lm_topic_config_find(const char *name)
{
    if (name == NULL)
        return NULL;
    return bsearch(name, config_defs, LM_ARRAY_LEN(config_defs), sizeof(config_defs[0]), def_cmp);
}

static int parse_i64(const char *s, int64_t *out)
{
    if (s == NULL || *s == '\0')
        return LM_E_INVALID;
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0')
        return LM_E_INVALID;
    *out = v;
    return 0;
}

/* Is `word` one of the '|'-separated values? */
static bool enum_has(const char *values, const char *word, size_t word_len)
{
    const char *p = values;
    while (*p) {
        const char *bar = strchr(p, '|');
        size_t n = bar ? (size_t)(bar - p) : strlen(p);
        if (n == word_len && strncmp(p, word, n) == 0)
            return true;
        if (!bar)
            break;
        p = bar + 1;
    }
    return false;
}

/* Java's \\s and String.trim() as ConfigDef applies them to list values. */
static bool list_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v';
}

/* A LIST value against its allowed items, as Kafka 4.2's ConfigDef parses and checks it
 * (parseType LIST, ValidList.in, KIP-1161): the value is trimmed, and an empty value is the
 * empty list, which ValidList.in allows (for cleanup.policy it means no cleanup at all,
 * "infinite retention" in TopicConfig's documentation); otherwise items are split at commas
 * with the blanks around them dropped, and each must be non-empty, allowed and not repeated
 * ("values must not be duplicated"). */
static int list_validate(const char *values, const char *value)
{
    const char *p = value;
    const char *end = value + strlen(value);
    while (p < end && list_space(*p))
        p++;
    while (end > p && list_space(end[-1]))
        end--;
    if (p == end)
        return 0;
    const char *items[LM_TOPIC_CONFIG_LIST_ITEMS_MAX];
    size_t lens[LM_TOPIC_CONFIG_LIST_ITEMS_MAX];
    size_t count = 0;
    while (true) {
        const char *comma = memchr(p, ',', (size_t)(end - p));
        const char *stop = comma ? comma : end;
        const char *q = stop;
        while (p < q && list_space(*p))
            p++;
        while (q > p && list_space(q[-1]))
            q--;
        size_t n = (size_t)(q - p);
        if (n == 0 || !enum_has(values, p, n))
            return LM_E_INVALID;
        for (size_t i = 0; i < count; i++) {
            if (lens[i] == n && memcmp(items[i], p, n) == 0)
                return LM_E_INVALID;
        }
        /* Every allowed item at most once: the allowed set bounds the count. */
        LM_ASSERT(count < LM_TOPIC_CONFIG_LIST_ITEMS_MAX);
        items[count] = p;
        lens[count++] = n;
        if (comma == NULL)
            return 0;
        p = comma + 1;
    }
}

int lm_topic_config_validate(const char *name, const char *value)
{
    const struct lm_topic_config_def *def = lm_topic_config_find(name);
    if (def == NULL)
        return LM_E_NOT_FOUND;
    if (value == NULL)
        return LM_E_INVALID;
    switch (def->type) {
    case LM_CONFIG_BOOLEAN:
        return (strcmp(value, "true") == 0 || strcmp(value, "false") == 0) ? 0 : LM_E_INVALID;
    case LM_CONFIG_INT:
    case LM_CONFIG_SHORT:
    case LM_CONFIG_LONG: {
        int64_t v;
        if (parse_i64(value, &v) != 0 || v < def->min_value)
            return LM_E_INVALID;
        if (def->type == LM_CONFIG_INT && v > INT32_MAX)
            return LM_E_INVALID;
        return 0;
    }
    case LM_CONFIG_DOUBLE: {
        char *end = NULL;
        errno = 0;
        double d = strtod(value, &end);
        if (errno != 0 || end == value || *end != '\0' || d < 0.0 || d > 1.0)
            return LM_E_INVALID;
        return 0;
    }
    case LM_CONFIG_STRING:
        if (def->valid_values && !enum_has(def->valid_values, value, strlen(value)))
            return LM_E_INVALID;
        return 0;
    case LM_CONFIG_LIST:
        return def->valid_values ? list_validate(def->valid_values, value) : 0;
    case LM_CONFIG_CLASS:
    case LM_CONFIG_PASSWORD:
        return 0;
    }
    return LM_E_INVALID;
}

static const struct lm_group_config_def group_defs[] = {
    {"consumer.heartbeat.interval.ms", LM_CONFIG_INT, "5000",
     "group.consumer.heartbeat.interval.ms", 1, "group.consumer.min.heartbeat.interval.ms", 5000,
     "group.consumer.max.heartbeat.interval.ms", 15000,
     "The heartbeat interval given to the members of a consumer group."},
    {"consumer.session.timeout.ms", LM_CONFIG_INT, "45000", "group.consumer.session.timeout.ms", 1,
     "group.consumer.min.session.timeout.ms", 45000, "group.consumer.max.session.timeout.ms", 60000,
     "The timeout to detect client failures when using the consumer group protocol."},
    {"share.auto.offset.reset", LM_CONFIG_STRING, "latest", NULL, 0, NULL, 0, NULL, 0,
     "The strategy to initialize the share-partition start offset."},
    {"share.heartbeat.interval.ms", LM_CONFIG_INT, "5000", "group.share.heartbeat.interval.ms", 1,
     "group.share.min.heartbeat.interval.ms", 5000, "group.share.max.heartbeat.interval.ms", 15000,
     "The heartbeat interval given to the members of a share group."},
    {"share.isolation.level", LM_CONFIG_STRING, "read_uncommitted", NULL, 0, NULL, 0, NULL, 0,
     "Controls how to read records written transactionally."},
    {"share.record.lock.duration.ms", LM_CONFIG_INT, "30000", "group.share.record.lock.duration.ms",
     1000, "group.share.min.record.lock.duration.ms", 15000,
     "group.share.max.record.lock.duration.ms", 60000,
     "The record acquisition lock duration in milliseconds for share groups."},
    {"share.session.timeout.ms", LM_CONFIG_INT, "45000", "group.share.session.timeout.ms", 1,
     "group.share.min.session.timeout.ms", 45000, "group.share.max.session.timeout.ms", 60000,
     "The timeout to detect client failures when using the share group protocol."},
    {"streams.heartbeat.interval.ms", LM_CONFIG_INT, "5000", "group.streams.heartbeat.interval.ms",
     1, "group.streams.min.heartbeat.interval.ms", 5000, "group.streams.max.heartbeat.interval.ms",
     15000, "The heartbeat interval given to the members."},
    {"streams.num.standby.replicas", LM_CONFIG_INT, "0", "group.streams.num.standby.replicas", 0,
     NULL, 0, "group.streams.max.standby.replicas", 2,
     "The number of standby replicas for each task."},
    {"streams.session.timeout.ms", LM_CONFIG_INT, "45000", "group.streams.session.timeout.ms", 1,
     "group.streams.min.session.timeout.ms", 45000, "group.streams.max.session.timeout.ms", 60000,
     "The timeout to detect client failures when using the streams group protocol."},
};

const struct lm_group_config_def *lm_group_config_defs(size_t *count)
{
    *count = LM_ARRAY_LEN(group_defs);
    return group_defs;
}

const struct lm_group_config_def *lm_group_config_find(const char *name)
{
    for (size_t i = 0; name != NULL && i < LM_ARRAY_LEN(group_defs); i++)
        if (strcmp(group_defs[i].name, name) == 0)
            return &group_defs[i];
    return NULL;
}

int lm_group_config_validate(const char *name, const char *value)
{
    const struct lm_group_config_def *def = lm_group_config_find(name);
    if (def == NULL)
        return LM_E_NOT_FOUND;
    if (value == NULL)
        return LM_E_INVALID;
    if (def->type == LM_CONFIG_INT) {
        int64_t v;
        return parse_i64(value, &v) == 0 && v >= def->type_min && v <= INT32_MAX ? 0 : LM_E_INVALID;
    }
    if (strcmp(name, "share.isolation.level") == 0)
        return strcmp(value, "read_committed") == 0 || strcmp(value, "read_uncommitted") == 0
                   ? 0
                   : LM_E_INVALID;
    /* share.auto.offset.reset: latest, earliest or by_duration:<ISO-8601 duration, not
     * negative> */
    if (strcmp(value, "latest") == 0 || strcmp(value, "earliest") == 0)
        return 0;
    const char *prefix = "by_duration:";
    size_t pl = strlen(prefix);
    if (strncmp(value, prefix, pl) != 0 || value[pl] != 'P' || value[pl + 1] == '\0' ||
        strchr(value + pl, '-') != NULL)
        return LM_E_INVALID;
    for (const char *c = value + pl + 1; *c; c++)
        if (strchr("0123456789.DTHMS", *c) == NULL)
            return LM_E_INVALID;
    return 0;
}

int lm_broker_dynamic_config_validate(const char *name, const char *value)
{
    static const struct {
        const char *key;
        int64_t min;
    } longs[] = {
        {"log.retention.minutes", -1},
        {"log.retention.hours", -1},
        {"log.roll.hours", 1},
        {"log.roll.jitter.hours", 0},
        {"leader.replication.throttled.rate", 0},
        {"follower.replication.throttled.rate", 0},
        {"replica.alter.log.dirs.io.max.bytes.per.second", 0},
    };
    if (name == NULL)
        return LM_E_NOT_FOUND;
    for (size_t i = 0; i < LM_ARRAY_LEN(longs); i++) {
        if (strcmp(longs[i].key, name) != 0)
            continue;
        int64_t v;
        return value != NULL && parse_i64(value, &v) == 0 && v >= longs[i].min ? 0 : LM_E_INVALID;
    }
    size_t n = 0;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&n);
    for (size_t i = 0; i < n; i++) {
        if (defs[i].broker_synonym != NULL && strcmp(defs[i].broker_synonym, name) == 0)
            return lm_topic_config_validate(defs[i].name, value);
    }
    return LM_E_NOT_FOUND;
}

static const char *entry_find(const struct lm_config_entry *list, size_t count, const char *name)
{
    for (size_t i = 0; i < count; i++) {
        if (list[i].name && strcmp(list[i].name, name) == 0)
            return list[i].value;
    }
    return NULL;
}

/* Broker keys with other units that stand for a synonym (Kafka: log.retention.hours etc.).
 * Returns a freshly computed value in buf, or NULL. */
static const char *broker_unit_synonym(const char *topic_name, const struct lm_config_entry *broker,
                                       size_t broker_count, char *buf, size_t buf_len)
{
    static const struct {
        const char *topic_name, *broker_key;
        int64_t factor;
    } units[] = {
        {"retention.ms", "log.retention.minutes", 60000},
        {"retention.ms", "log.retention.hours", 3600000},
        {"segment.ms", "log.roll.hours", 3600000},
        {"segment.jitter.ms", "log.roll.jitter.hours", 3600000},
    };
    for (size_t i = 0; i < LM_ARRAY_LEN(units); i++) {
        if (strcmp(units[i].topic_name, topic_name) != 0)
            continue;
        const char *v = entry_find(broker, broker_count, units[i].broker_key);
        int64_t n;
        if (v && parse_i64(v, &n) == 0) {
            if (n > 0 && n > INT64_MAX / units[i].factor)
                n = INT64_MAX;
            else
                n = n < 0 ? -1 : n * units[i].factor;
            snprintf(buf, buf_len, "%lld", (long long)n);
            return buf;
        }
    }
    return NULL;
}

int lm_topic_config_effective(const char *name, const struct lm_config_entry *topic,
                              size_t topic_count, const struct lm_config_entry *broker,
                              size_t broker_count, const char **value,
                              enum lm_config_source *source)
{
    const struct lm_topic_config_def *def = lm_topic_config_find(name);
    if (def == NULL)
        return LM_E_NOT_FOUND;
    const char *v = entry_find(topic, topic_count, name);
    if (v) {
        *value = v;
        *source = LM_CONFIG_SOURCE_DYNAMIC_TOPIC;
        return 0;
    }
    if (def->broker_synonym) {
        v = entry_find(broker, broker_count, def->broker_synonym);
        if (v) {
            *value = v;
            *source = LM_CONFIG_SOURCE_STATIC_BROKER;
            return 0;
        }
    }
    *value = def->default_value;
    *source = LM_CONFIG_SOURCE_DEFAULT;
    return 0;
}

/* Resolve one name to a string: topic, broker synonym (incl. unit synonyms), default. */
static const char *resolve_str(const char *name, const struct lm_config_entry *topic,
                               size_t topic_count, const struct lm_config_entry *broker,
                               size_t broker_count, char *buf, size_t buf_len)
{
    const char *v = NULL;
    enum lm_config_source src;
    int rc = lm_topic_config_effective(name, topic, topic_count, broker, broker_count, &v, &src);
    LM_ASSERT(rc == 0);
    if (src == LM_CONFIG_SOURCE_DEFAULT) {
        const char *u = broker_unit_synonym(name, broker, broker_count, buf, buf_len);
        if (u)
            return u;
    }
    return v;
}

int lm_topic_settings_resolve(const struct lm_config_entry *topic, size_t topic_count,
                              const struct lm_config_entry *broker, size_t broker_count,
                              struct lm_topic_settings *out)
{
    char buf[32];
    int64_t n;
    memset(out, 0, sizeof(*out));
#define RESOLVE(name) resolve_str(name, topic, topic_count, broker, broker_count, buf, sizeof(buf))
#define RESOLVE_I64(name, field)                                                                   \
    do {                                                                                           \
        if (parse_i64(RESOLVE(name), &n) != 0)                                                     \
            return LM_E_INVALID;                                                                   \
        out->field = n;                                                                            \
    } while (0)
#define RESOLVE_I32(name, field)                                                                   \
    do {                                                                                           \
        if (parse_i64(RESOLVE(name), &n) != 0 || n > INT32_MAX || n < INT32_MIN)                   \
            return LM_E_INVALID;                                                                   \
        out->field = (int32_t)n;                                                                   \
    } while (0)

    /* Validated items are "delete" and "compact" only; the empty list sets neither (no
     * retention by time or size, no compaction). */
    const char *policy = RESOLVE("cleanup.policy");
    out->cleanup_delete = strstr(policy, "delete") != NULL;
    out->cleanup_compact = strstr(policy, "compact") != NULL;

    static const char *const codecs[] = {"uncompressed", "gzip", "snappy", "lz4", "zstd"};
    const char *comp = RESOLVE("compression.type");
    out->compression = -1;
    for (size_t i = 0; i < LM_ARRAY_LEN(codecs); i++) {
        if (strcmp(comp, codecs[i]) == 0)
            out->compression = (int32_t)i;
    }
    if (out->compression == -1 && strcmp(comp, "producer") != 0)
        return LM_E_INVALID;

    RESOLVE_I64("delete.retention.ms", delete_retention_ms);
    RESOLVE_I64("flush.messages", flush_messages);
    RESOLVE_I64("flush.ms", flush_ms);
    RESOLVE_I32("index.interval.bytes", index_interval_bytes);
    RESOLVE_I32("max.message.bytes", max_message_bytes);
    out->timestamp_log_append = strcmp(RESOLVE("message.timestamp.type"), "LogAppendTime") == 0;
    RESOLVE_I64("message.timestamp.before.max.ms", timestamp_before_max_ms);
    RESOLVE_I64("message.timestamp.after.max.ms", timestamp_after_max_ms);
    RESOLVE_I64("min.compaction.lag.ms", min_compaction_lag_ms);
    RESOLVE_I32("min.insync.replicas", min_insync_replicas);
    RESOLVE_I64("retention.bytes", retention_bytes);
    RESOLVE_I64("retention.ms", retention_ms);
    RESOLVE_I32("segment.bytes", segment_bytes);
    RESOLVE_I64("segment.ms", segment_ms);
    RESOLVE_I32("segment.index.bytes", segment_index_bytes);
    out->write_caching = strcmp(RESOLVE("write.caching"), "true") == 0;
    out->preallocate = strcmp(RESOLVE("preallocate"), "true") == 0;
#undef RESOLVE_I32
#undef RESOLVE_I64
#undef RESOLVE
    return 0;
}
