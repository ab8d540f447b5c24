#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#include <cmocka.h>

#include "broker/meta/meta_store.h"
#include "protocol/crc32c.h"
#include "broker/meta/topic_config.h"
#include "common/lm_err.h"

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/lm-meta-XXXXXX";
    char *d = mkdtemp(tmpl);
    assert_non_null(d);
    return strdup(d);
}

static void rm_rf(const char *dir)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

static void test_config_table_sorted_and_valid(void **state)
{
    (void)state;
    size_t n;
    const struct lm_topic_config_def *defs = lm_topic_config_defs(&n);
    assert_true(n > 20);
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            assert_true(strcmp(defs[i - 1].name, defs[i].name) < 0);
        /* every default validates against its own definition */
        assert_int_equal(lm_topic_config_validate(defs[i].name, defs[i].default_value), 0);
        assert_ptr_equal(lm_topic_config_find(defs[i].name), &defs[i]);
    }
    assert_null(lm_topic_config_find("no.such.config"));
}

static void test_config_validate(void **state)
{
    (void)state;
    assert_int_equal(lm_topic_config_validate("retention.ms", "-1"), 0);
    assert_int_equal(lm_topic_config_validate("retention.ms", "-2"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("retention.ms", "12x"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("segment.bytes", "1000"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("segment.bytes", "99999999999"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", "compact,delete"), 0);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", "compact,"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", "shred"), LM_E_INVALID);
    /* Kafka 4.x's ValidList.in: the empty list is allowed (no cleanup); blanks around items
     * are dropped; repeated or empty items are refused (KIP-1161) */
    assert_int_equal(lm_topic_config_validate("cleanup.policy", ""), 0);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", "  "), 0);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", " delete , compact "), 0);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", "delete,delete"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", "delete,,compact"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("cleanup.policy", ",delete"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("compression.type", "zstd"), 0);
    assert_int_equal(lm_topic_config_validate("compression.type", "brotli"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("preallocate", "yes"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("min.cleanable.dirty.ratio", "0.25"), 0);
    assert_int_equal(lm_topic_config_validate("min.cleanable.dirty.ratio", "2"), LM_E_INVALID);
    assert_int_equal(lm_topic_config_validate("bogus", "1"), LM_E_NOT_FOUND);
}

static void test_settings_resolution_order(void **state)
{
    (void)state;
    struct lm_topic_settings s;
    assert_int_equal(lm_topic_settings_resolve(NULL, 0, NULL, 0, &s), 0);
    assert_int_equal(s.retention_ms, 604800000);
    assert_int_equal(s.segment_bytes, 1073741824);
    assert_int_equal(s.max_message_bytes, 1048588);
    assert_true(s.cleanup_delete);
    assert_false(s.cleanup_compact);
    assert_int_equal(s.compression, -1);
    assert_false(s.preallocate); /* Kafka's default (storage.h, "Preallocation") */
    struct lm_config_entry on[] = {{"log.preallocate", "true"}};
    assert_int_equal(lm_topic_settings_resolve(NULL, 0, on, 1, &s), 0);
    assert_true(s.preallocate);
    struct lm_config_entry off[] = {{"preallocate", "false"}};
    assert_int_equal(lm_topic_settings_resolve(off, 1, on, 1, &s), 0);
    assert_false(s.preallocate);

    struct lm_config_entry broker[] = {{"log.retention.hours", "1"},
                                       {"log.segment.bytes", "2097152"},
                                       {"message.max.bytes", "5000"}};
    assert_int_equal(lm_topic_settings_resolve(NULL, 0, broker, 3, &s), 0);
    assert_int_equal(s.retention_ms, 3600000);
    assert_int_equal(s.segment_bytes, 2097152);
    assert_int_equal(s.max_message_bytes, 5000);

    struct lm_config_entry topic[] = {
        {"retention.ms", "1234"}, {"cleanup.policy", "compact"}, {"compression.type", "lz4"}};
    assert_int_equal(lm_topic_settings_resolve(topic, 3, broker, 3, &s), 0);
    assert_int_equal(s.retention_ms, 1234);
    assert_true(s.cleanup_compact);
    assert_false(s.cleanup_delete);
    assert_int_equal(s.compression, 3);
    struct lm_config_entry none[] = {{"cleanup.policy", ""}};
    assert_int_equal(lm_topic_settings_resolve(none, 1, broker, 3, &s), 0);
    assert_false(s.cleanup_compact); /* empty list: neither compaction nor deletion */
    assert_false(s.cleanup_delete);

    const char *v;
    enum lm_config_source src;
    assert_int_equal(lm_topic_config_effective("retention.ms", topic, 3, broker, 3, &v, &src), 0);
    assert_string_equal(v, "1234");
    assert_int_equal(src, LM_CONFIG_SOURCE_DYNAMIC_TOPIC);
    assert_int_equal(lm_topic_config_effective("segment.bytes", topic, 3, broker, 3, &v, &src), 0);
    assert_string_equal(v, "2097152");
    assert_int_equal(src, LM_CONFIG_SOURCE_STATIC_BROKER);
    assert_int_equal(lm_topic_config_effective("flush.ms", topic, 3, broker, 3, &v, &src), 0);
    assert_int_equal(src, LM_CONFIG_SOURCE_DEFAULT);
}

static void test_topic_names(void **state)
{
    (void)state;
    assert_int_equal(lm_meta_topic_name_valid("orders.v1_x-y"), 0);
    assert_int_equal(lm_meta_topic_name_valid(""), LM_E_INVALID);
    assert_int_equal(lm_meta_topic_name_valid("."), LM_E_INVALID);
    assert_int_equal(lm_meta_topic_name_valid(".."), LM_E_INVALID);
    assert_int_equal(lm_meta_topic_name_valid("a/b"), LM_E_INVALID);
    char longname[260];
    memset(longname, 'a', 250);
    longname[250] = 0;
    assert_int_equal(lm_meta_topic_name_valid(longname), LM_E_INVALID);
    longname[249] = 0;
    assert_int_equal(lm_meta_topic_name_valid(longname), 0);
}

static void test_record_roundtrip_and_truncation(void **state)
{
    (void)state;
    struct lm_config_entry cfg[] = {{"retention.ms", "1000"}, {"cleanup.policy", "compact"}};
    struct lm_meta_record r = {.type = LM_META_TOPIC_CREATE,
                               .topic = "orders",
                               .partition_count = 16,
                               .configs = cfg,
                               .config_count = 2};
    memset(r.topic_id, 7, 16);
    uint8_t buf[512];
    int n = lm_meta_record_encode(&r, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&r));
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_string_equal(d.topic, "orders");
    assert_int_equal(d.partition_count, 16);
    assert_memory_equal(d.topic_id, r.topic_id, 16);
    assert_int_equal(d.config_count, 2);
    assert_string_equal(d.configs[1].value, "compact");
    (void)dc;
    lm_meta_record_free(&d);
    /* every truncation is an error, never a crash or a leak */
    for (int cut = 0; cut < n; cut++)
        assert_int_not_equal(lm_meta_record_decode(buf, (size_t)cut, &d, &dc), 0);
    assert_int_equal(lm_meta_record_encode(&r, buf, 10), LM_E_TOO_LARGE);
}

/* A deletion naming its incarnation (DeleteTopics by id: the id rides in the record) deletes
 * that incarnation only: after the name was deleted and created again it is refused, so a node
 * whose image lagged cannot delete the new topic; one by name alone deletes whatever has the
 * name. The id survives encode/decode, and a record without it decodes as before. Leadership
 * announcements name their incarnation too. */
static void test_delete_names_its_incarnation(void **state)
{
    (void)state;
    struct lm_meta_state st;
    lm_meta_state_init(&st);
    struct lm_meta_record c = {.type = LM_META_TOPIC_CREATE, .topic = "t", .partition_count = 1};
    memset(c.topic_id, 1, 16);
    assert_int_equal(lm_meta_state_apply(&st, &c), 0);
    struct lm_meta_record del = {.type = LM_META_TOPIC_DELETE, .topic = "t"};
    memset(del.topic_id, 1, 16);
    assert_int_equal(lm_meta_state_apply(&st, &del), 0);
    memset(c.topic_id, 2, 16); /* the name again, a new incarnation */
    assert_int_equal(lm_meta_state_apply(&st, &c), 0);
    assert_int_equal(lm_meta_state_apply(&st, &del), LM_E_NOT_FOUND); /* the old id */
    assert_non_null(lm_meta_state_find(&st, "t"));
    uint8_t buf[128];
    int n = lm_meta_record_encode(&del, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&del));
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_memory_equal(d.topic_id, del.topic_id, 16);
    assert_int_equal(lm_meta_state_apply(&st, &d), LM_E_NOT_FOUND);
    lm_meta_record_free(&d);
    for (int cut = 1; cut < n; cut++)
        if (cut != n - 16) /* without the whole trailer: a deletion by name */
            assert_int_not_equal(lm_meta_record_decode(buf, (size_t)cut, &d, &dc), 0);
    struct lm_meta_record by_name = {.type = LM_META_TOPIC_DELETE, .topic = "t"};
    n = lm_meta_record_encode(&by_name, buf, sizeof(buf));
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_int_equal(lm_meta_state_apply(&st, &d), 0);
    lm_meta_record_free(&d);
    assert_null(lm_meta_state_find(&st, "t"));
    /* a leader of a deleted incarnation announcing late changes nothing of the new topic: its
     * epoch would stay above every announcement of the real leader */
    memset(c.topic_id, 3, 16);
    assert_int_equal(lm_meta_state_apply(&st, &c), 0);
    struct lm_meta_record lead = {.type = LM_META_PARTITION_LEADER,
                                  .topic = "t",
                                  .partition_count = 0,
                                  .broker_id = 2,
                                  .leader_epoch = 7};
    memset(lead.topic_id, 2, 16); /* the deleted incarnation */
    assert_int_equal(lm_meta_state_apply(&st, &lead), LM_E_STATE);
    n = lm_meta_record_encode(&lead, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&lead));
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_memory_equal(d.topic_id, lead.topic_id, 16);
    assert_int_equal(lm_meta_state_apply(&st, &d), LM_E_STATE);
    lm_meta_record_free(&d);
    memset(lead.topic_id, 3, 16);
    lead.leader_epoch = 1;
    assert_int_equal(lm_meta_state_apply(&st, &lead), 0);
    const struct lm_meta_topic *t = lm_meta_state_find(&st, "t");
    assert_non_null(t->leaders);
    assert_int_equal(t->leaders[0].epoch, 1);
    lm_meta_state_deinit(&st);
}

/* A deletion with an empty name names its topic by id alone (a node whose image did not know
 * the id forwards it so): it deletes that incarnation, through the record's encoding too, and
 * an id no topic has is NOT_FOUND. */
static void test_delete_by_id_alone(void **state)
{
    (void)state;
    struct lm_meta_state st;
    lm_meta_state_init(&st);
    struct lm_meta_record c = {.type = LM_META_TOPIC_CREATE, .topic = "t", .partition_count = 1};
    memset(c.topic_id, 4, 16);
    assert_int_equal(lm_meta_state_apply(&st, &c), 0);
    struct lm_meta_record del = {.type = LM_META_TOPIC_DELETE, .topic = ""};
    memset(del.topic_id, 5, 16); /* no topic has it */
    assert_int_equal(lm_meta_state_apply(&st, &del), LM_E_NOT_FOUND);
    struct lm_meta_record none = {.type = LM_META_TOPIC_DELETE, .topic = ""}; /* no id either */
    assert_int_equal(lm_meta_state_apply(&st, &none), LM_E_NOT_FOUND);
    assert_non_null(lm_meta_state_find(&st, "t"));
    memset(del.topic_id, 4, 16);
    uint8_t buf[64];
    int n = lm_meta_record_encode(&del, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&del));
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_int_equal(lm_meta_state_apply(&st, &d), 0);
    lm_meta_record_free(&d);
    assert_null(lm_meta_state_find(&st, "t"));
    assert_int_equal(lm_meta_state_apply(&st, &del), LM_E_NOT_FOUND); /* once only */
    lm_meta_state_deinit(&st);
}

/* A deleted topic's id is retired: a create of it (a submission retried after its first
 * attempt had committed and the topic was deleted since) is refused; the ring keeps the newest
 * LM_META_RETIRED_IDS_MAX ids, in records (snapshots) and copies too. */
static void test_deleted_id_never_returns(void **state)
{
    (void)state;
    struct lm_meta_state st;
    lm_meta_state_init(&st);
    struct lm_meta_record c = {.type = LM_META_TOPIC_CREATE, .topic = "t", .partition_count = 1};
    memset(c.topic_id, 7, 16);
    assert_int_equal(lm_meta_state_apply(&st, &c), 0);
    assert_false(lm_meta_state_id_retired(&st, c.topic_id));
    struct lm_meta_record del = {.type = LM_META_TOPIC_DELETE, .topic = "t"};
    memcpy(del.topic_id, c.topic_id, 16);
    assert_int_equal(lm_meta_state_apply(&st, &del), 0);
    assert_true(lm_meta_state_id_retired(&st, c.topic_id));
    assert_int_equal(lm_meta_state_apply(&st, &c), LM_E_EXISTS); /* the same id again */
    assert_null(lm_meta_state_find(&st, "t"));
    memset(c.topic_id, 8, 16); /* a new incarnation of the name is fine */
    assert_int_equal(lm_meta_state_apply(&st, &c), 0);

    /* the record form, round trip and truncation */
    struct lm_meta_record ret = {.type = LM_META_TOPIC_RETIRED};
    memset(ret.topic_id, 9, 16);
    uint8_t buf[64];
    int n = lm_meta_record_encode(&ret, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&ret));
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    for (int cut = 0; cut < n; cut++)
        assert_int_not_equal(lm_meta_record_decode(buf, (size_t)cut, &d, &dc), 0);
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_int_equal(d.type, LM_META_TOPIC_RETIRED);
    assert_memory_equal(d.topic_id, ret.topic_id, 16);
    assert_int_equal(lm_meta_state_apply(&st, &d), 0);
    lm_meta_record_free(&d);
    struct lm_meta_record zero = {.type = LM_META_TOPIC_RETIRED};
    assert_int_equal(lm_meta_state_apply(&st, &zero), LM_E_INVALID);
    assert_int_equal(st.retired_count, 2);

    /* bounded: past the bound the oldest is forgotten, the order kept */
    for (uint32_t i = 0; i < LM_META_RETIRED_IDS_MAX; i++) {
        memset(ret.topic_id, 0, 16);
        ret.topic_id[0] = 0xAA;
        memcpy(ret.topic_id + 1, &i, sizeof(i));
        assert_int_equal(lm_meta_state_apply(&st, &ret), 0);
    }
    assert_int_equal(st.retired_count, LM_META_RETIRED_IDS_MAX);
    uint8_t first[16];
    memset(first, 7, 16);
    assert_false(lm_meta_state_id_retired(&st, first));
    memset(first, 9, 16);
    assert_false(lm_meta_state_id_retired(&st, first));
    const uint8_t *oldest = lm_meta_state_retired_at(&st, 0);
    uint32_t k;
    memcpy(&k, oldest + 1, sizeof(k));
    assert_int_equal(k, 0); /* the two ids before the loop went first */
    memcpy(&k, lm_meta_state_retired_at(&st, LM_META_RETIRED_IDS_MAX - 1) + 1, sizeof(k));
    assert_int_equal(k, LM_META_RETIRED_IDS_MAX - 1);
    struct lm_meta_state cp;
    assert_int_equal(lm_meta_state_copy(&cp, &st), 0);
    assert_int_equal(cp.retired_count, st.retired_count);
    for (uint32_t i = 0; i < st.retired_count; i++)
        assert_memory_equal(lm_meta_state_retired_at(&cp, i), lm_meta_state_retired_at(&st, i), 16);
    lm_meta_state_deinit(&cp);
    lm_meta_state_deinit(&st);
}

static void create(struct lm_meta_store *s, const char *name, int32_t parts, int expect)
{
    struct lm_meta_record r = {
        .type = LM_META_TOPIC_CREATE, .topic = name, .partition_count = parts};
    assert_int_equal(lm_meta_new_topic_id(r.topic_id), 0);
    assert_int_equal(lm_meta_store_commit(s, &r), expect);
}

static void test_store_persists_and_replays(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct lm_meta_store *s;
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    create(s, "a", 3, 0);
    create(s, "b", 1, 0);
    create(s, "a", 5, LM_E_EXISTS);
    create(s, "bad/name", 1, LM_E_INVALID);
    create(s, "zero", 0, LM_E_INVALID);
    struct lm_meta_record grow = {
        .type = LM_META_PARTITIONS_SET, .topic = "a", .partition_count = 6};
    assert_int_equal(lm_meta_store_commit(s, &grow), 0);
    grow.partition_count = 2; /* partitions never shrink */
    assert_int_equal(lm_meta_store_commit(s, &grow), LM_E_INVALID);
    struct lm_meta_record del = {.type = LM_META_TOPIC_DELETE, .topic = "b"};
    assert_int_equal(lm_meta_store_commit(s, &del), 0);
    assert_int_equal(lm_meta_store_commit(s, &del), LM_E_NOT_FOUND);
    struct lm_config_entry cfg[] = {{"retention.ms", "1000"}};
    struct lm_meta_record setc = {
        .type = LM_META_TOPIC_CONFIGS, .topic = "a", .configs = cfg, .config_count = 1};
    assert_int_equal(lm_meta_store_commit(s, &setc), 0);
    struct lm_config_entry badcfg[] = {{"retention.ms", "soon"}};
    setc.configs = badcfg;
    assert_int_equal(lm_meta_store_commit(s, &setc), LM_E_INVALID);
    int64_t first1, first2;
    assert_int_equal(lm_meta_store_alloc_producer_ids(s, 100, &first1), 0);
    assert_int_equal(lm_meta_store_alloc_producer_ids(s, 100, &first2), 0);
    assert_int_equal(first2, first1 + 100);

    /* a snapshot taken now is unaffected by later changes */
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(s);
    uint64_t v = lm_meta_store_version(s);
    assert_int_equal(snap->state.version, v);
    create(s, "c", 1, 0);
    assert_true(lm_meta_store_version(s) > v);
    assert_null(lm_meta_state_find(&snap->state, "c"));
    uint8_t id_a[16];
    memcpy(id_a, lm_meta_state_find(&snap->state, "a")->id, 16);
    lm_meta_store_close(s);
    /* the snapshot outlives the store */
    assert_int_equal(lm_meta_state_find(&snap->state, "a")->partition_count, 6);
    lm_meta_snapshot_release(snap);

    /* reopen: same state, producer ids keep growing */
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    snap = lm_meta_store_snapshot(s);
    const struct lm_meta_topic *a = lm_meta_state_find(&snap->state, "a");
    assert_non_null(a);
    assert_int_equal(a->partition_count, 6);
    assert_memory_equal(a->id, id_a, 16);
    assert_ptr_equal(lm_meta_state_find_id(&snap->state, id_a), a);
    assert_int_equal(a->config_count, 1);
    assert_string_equal(a->configs[0].value, "1000");
    assert_null(lm_meta_state_find(&snap->state, "b"));
    assert_non_null(lm_meta_state_find(&snap->state, "c"));
    lm_meta_snapshot_release(snap);
    int64_t first3;
    assert_int_equal(lm_meta_store_alloc_producer_ids(s, 1, &first3), 0);
    assert_int_equal(first3, first2 + 100);
    lm_meta_store_close(s);
    rm_rf(dir);
    free(dir);
}

/* A crash in the middle of an append leaves a torn tail: it is cut, everything before stays. */
static void test_store_cuts_torn_tail(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct lm_meta_store *s;
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    create(s, "kept", 2, 0);
    create(s, "torn", 2, 0);
    lm_meta_store_close(s);
    char path[512];
    snprintf(path, sizeof(path), "%s/__laminar_metadata/metadata.log", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    for (off_t cut = st.st_size - 1; cut > st.st_size - 20; cut--) {
        assert_int_equal(truncate(path, cut), 0);
        assert_int_equal(lm_meta_store_open(dir, &s), 0);
        struct lm_meta_snapshot *snap = lm_meta_store_snapshot(s);
        assert_non_null(lm_meta_state_find(&snap->state, "kept"));
        assert_null(lm_meta_state_find(&snap->state, "torn"));
        lm_meta_snapshot_release(snap);
        lm_meta_store_close(s);
        struct stat st2;
        assert_int_equal(stat(path, &st2), 0);
        assert_true(st2.st_size < cut); /* the torn record was cut off */
    }
    /* a flipped byte in the last record's payload fails its CRC: cut, not applied */
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    create(s, "flipped", 1, 0);
    lm_meta_store_close(s);
    assert_int_equal(stat(path, &st), 0);
    int fd = open(path, O_RDWR);
    uint8_t b;
    assert_int_equal(pread(fd, &b, 1, st.st_size - 3), 1);
    b ^= 0xff;
    assert_int_equal(pwrite(fd, &b, 1, st.st_size - 3), 1);
    close(fd);
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(s);
    assert_null(lm_meta_state_find(&snap->state, "flipped"));
    assert_non_null(lm_meta_state_find(&snap->state, "kept"));
    lm_meta_snapshot_release(snap);
    lm_meta_store_close(s);
    rm_rf(dir);
    free(dir);
}

/* A record with a good CRC that does not apply (a duplicate create, a payload that does not
 * decode) is skipped and counted; the store opens, keeps every other record and appends after
 * it. */
static void test_store_skips_records_that_do_not_apply(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct lm_meta_store *s;
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    create(s, "dup", 2, 0);
    lm_meta_store_close(s);
    char path[512];
    snprintf(path, sizeof(path), "%s/__laminar_metadata/metadata.log", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    uint8_t *frame = malloc((size_t)st.st_size);
    int fd = open(path, O_RDWR);
    assert_int_equal(pread(fd, frame, (size_t)st.st_size, 0), st.st_size);
    /* the same TOPIC_CREATE again (LM_E_EXISTS at replay) */
    assert_int_equal(pwrite(fd, frame, (size_t)st.st_size, st.st_size), st.st_size);
    /* a frame whose payload passes its CRC but is no record */
    uint8_t junk[8 + 5] = {0, 0, 0, 5, 0, 0, 0, 0, 0xee, 0xee, 0xee, 0xee, 0xee};
    uint32_t crc = crc32c_update(0, junk + 8, 5);
    junk[4] = (uint8_t)(crc >> 24), junk[5] = (uint8_t)(crc >> 16);
    junk[6] = (uint8_t)(crc >> 8), junk[7] = (uint8_t)crc;
    assert_int_equal(pwrite(fd, junk, sizeof(junk), 2 * st.st_size), (ssize_t)sizeof(junk));
    close(fd);
    free(frame);
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    assert_int_equal(lm_meta_store_bad_records(s), 2);
    create(s, "after", 1, 0);
    lm_meta_store_close(s);
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    assert_int_equal(lm_meta_store_bad_records(s), 2);
    struct lm_meta_snapshot *snap = lm_meta_store_snapshot(s);
    assert_int_equal(snap->state.topic_count, 2);
    assert_int_equal(lm_meta_state_find(&snap->state, "dup")->partition_count, 2);
    assert_non_null(lm_meta_state_find(&snap->state, "after"));
    lm_meta_snapshot_release(snap);
    lm_meta_store_close(s);
    rm_rf(dir);
    free(dir);
}

/* Cluster records: registrations, fences, assignments; encoded and applied. */
static void roundtrip(const struct lm_meta_record *r, struct lm_meta_state *s, int expect)
{
    uint8_t buf[1024];
    int n = lm_meta_record_encode(r, buf, sizeof(buf));
    assert_true(n > 0);
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), 0);
    assert_int_equal(d.type, r->type);
    assert_int_equal(lm_meta_state_apply(s, &d), expect);
    lm_meta_record_free(&d);
}

/* SCRAM credentials (KIP-554 records): upsert, replace, delete, copy, bounds, truncation. */
static void test_scram_records(void **state)
{
    (void)state;
    struct lm_meta_state s;
    lm_meta_state_init(&s);
    uint8_t salt[16], k1[64], k2[64];
    memset(salt, 1, sizeof(salt));
    memset(k1, 2, sizeof(k1));
    memset(k2, 3, sizeof(k2));
    struct lm_meta_record set = {.type = LM_META_SCRAM_SET,
                                 .user = "alice",
                                 .scram_mechanism = 2,
                                 .scram_iterations = 4096,
                                 .scram_salt = salt,
                                 .scram_salt_len = sizeof(salt),
                                 .scram_stored_key = k1,
                                 .scram_server_key = k2};
    roundtrip(&set, &s, 0);
    const struct lm_meta_scram *c = lm_meta_state_scram(&s, "alice", 2);
    assert_non_null(c);
    assert_int_equal(c->iterations, 4096);
    assert_int_equal(c->salt_len, 16);
    assert_memory_equal(c->stored_key, k1, 64);
    assert_memory_equal(c->server_key, k2, 64);
    assert_null(lm_meta_state_scram(&s, "alice", 1));
    /* replace in place, and a SHA-256 one beside it */
    set.scram_iterations = 8192;
    roundtrip(&set, &s, 0);
    assert_int_equal(s.scram_count, 1);
    assert_int_equal(lm_meta_state_scram(&s, "alice", 2)->iterations, 8192);
    set.scram_mechanism = 1;
    roundtrip(&set, &s, 0);
    assert_int_equal(s.scram_count, 2);
    /* copies are independent */
    struct lm_meta_state copy;
    assert_int_equal(lm_meta_state_copy(&copy, &s), 0);
    assert_int_equal(copy.scram_count, 2);
    /* refused: too few iterations, unknown mechanism, empty user, deleting what is not there */
    set.scram_iterations = 100;
    assert_int_equal(lm_meta_state_apply(&s, &set), LM_E_INVALID);
    set.scram_iterations = 4096;
    set.scram_mechanism = 3;
    assert_int_equal(lm_meta_state_check(&s, &set), LM_E_INVALID);
    set.scram_mechanism = 1;
    set.user = "";
    assert_int_equal(lm_meta_state_check(&s, &set), LM_E_INVALID);
    struct lm_meta_record del = {.type = LM_META_SCRAM_DELETE, .user = "bob", .scram_mechanism = 1};
    assert_int_equal(lm_meta_state_apply(&s, &del), LM_E_NOT_FOUND);
    del.user = "alice";
    roundtrip(&del, &s, 0);
    assert_null(lm_meta_state_scram(&s, "alice", 1));
    assert_non_null(lm_meta_state_scram(&s, "alice", 2));
    assert_non_null(lm_meta_state_scram(&copy, "alice", 1));
    lm_meta_state_deinit(&copy);
    /* every truncation of an encoded SET is an error */
    set.user = "alice";
    uint8_t buf[512];
    int n = lm_meta_record_encode(&set, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&set));
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    for (int cut = 0; cut < n; cut++)
        assert_int_not_equal(lm_meta_record_decode(buf, (size_t)cut, &d, &dc), 0);
    buf[2 + 2 + 5 + 1] = 9; /* the mechanism byte after the user string */
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &dc), LM_E_CORRUPT);
    lm_meta_state_deinit(&s);
}

/* Dynamic broker configs (BROKER_CONFIGS records): per node and cluster-wide default, replace,
 * remove, copy, validation of keys and values, truncation. */
/* FEATURE_LEVEL records: transaction.version 0-2 only, kept by a copy of the image. */
static void test_feature_level_records(void **state)
{
    (void)state;
    struct lm_meta_state s;
    lm_meta_state_init(&s);
    assert_int_equal(lm_meta_state_transaction_version(&s), LM_META_TRANSACTION_VERSION_DEFAULT);
    assert_int_equal(lm_meta_state_transaction_version(NULL), 2);
    struct lm_meta_record r = {.type = LM_META_FEATURE_LEVEL,
                               .feature = LM_META_FEATURE_TRANSACTION_VERSION,
                               .feature_level = 1};
    assert_int_equal(lm_meta_state_check(&s, &r), 0);
    roundtrip(&r, &s, 0);
    assert_int_equal(lm_meta_state_transaction_version(&s), 1);
    struct lm_meta_state copy;
    assert_int_equal(lm_meta_state_copy(&copy, &s), 0);
    assert_int_equal(lm_meta_state_transaction_version(&copy), 1);
    lm_meta_state_deinit(&copy);
    r.feature_level = 0;
    roundtrip(&r, &s, 0);
    assert_int_equal(lm_meta_state_transaction_version(&s), 0);
    r.feature_level = 3;
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    r.feature_level = 1;
    r.feature = "metadata.version";
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    lm_meta_state_deinit(&s);
}

static void test_broker_config_records(void **state)
{
    (void)state;
    struct lm_meta_state s;
    lm_meta_state_init(&s);
    struct lm_config_entry two[] = {{"log.retention.ms", "1000"},
                                    {"leader.replication.throttled.rate", "5000"}};
    struct lm_meta_record r = {
        .type = LM_META_BROKER_CONFIGS, .broker_id = 3, .configs = two, .config_count = 2};
    roundtrip(&r, &s, 0);
    struct lm_config_entry one[] = {{"message.max.bytes", "2000"}};
    struct lm_meta_record d = {.type = LM_META_BROKER_CONFIGS,
                               .broker_id = LM_META_BROKER_DEFAULT,
                               .configs = one,
                               .config_count = 1};
    roundtrip(&d, &s, 0);
    const struct lm_meta_broker_configs *b = lm_meta_state_broker_configs(&s, 3);
    assert_non_null(b);
    assert_int_equal(b->count, 2);
    assert_string_equal(b->configs[1].value, "5000");
    b = lm_meta_state_broker_configs(&s, LM_META_BROKER_DEFAULT);
    assert_non_null(b);
    assert_string_equal(b->configs[0].name, "message.max.bytes");
    assert_null(lm_meta_state_broker_configs(&s, 1));
    struct lm_meta_state copy;
    assert_int_equal(lm_meta_state_copy(&copy, &s), 0);
    /* replace node 3's set with one key, then remove it */
    r.config_count = 1;
    roundtrip(&r, &s, 0);
    assert_int_equal(lm_meta_state_broker_configs(&s, 3)->count, 1);
    r.config_count = 0;
    roundtrip(&r, &s, 0);
    assert_null(lm_meta_state_broker_configs(&s, 3));
    assert_non_null(lm_meta_state_broker_configs(&s, LM_META_BROKER_DEFAULT));
    assert_int_equal(lm_meta_state_broker_configs(&copy, 3)->count, 2);
    lm_meta_state_deinit(&copy);
    /* refused: a key that is not dynamic, a bad value, a repeated key, node -2 */
    struct lm_config_entry bad[] = {{"listeners", "PLAINTEXT://:1"}};
    r.configs = bad;
    r.config_count = 1;
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    struct lm_config_entry badv[] = {{"log.retention.hours", "soon"}};
    r.configs = badv;
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    struct lm_config_entry rep[] = {{"log.retention.ms", "1"}, {"log.retention.ms", "2"}};
    r.configs = rep;
    r.config_count = 2;
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    r.configs = one;
    r.config_count = 1;
    r.broker_id = -2;
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    assert_int_equal(lm_broker_dynamic_config_validate("log.cleanup.policy", "compact,delete"), 0);
    assert_int_equal(lm_broker_dynamic_config_validate("node.id", "1"), LM_E_NOT_FOUND);
    assert_int_equal(lm_broker_dynamic_config_validate("follower.replication.throttled.rate", "-1"),
                     LM_E_INVALID);
    /* every truncation of an encoded record is an error */
    r.broker_id = 7;
    r.configs = two;
    r.config_count = 2;
    uint8_t buf[512];
    int n = lm_meta_record_encode(&r, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&r));
    struct lm_meta_record dd;
    struct lm_config_entry *dc;
    for (int cut = 0; cut < n; cut++)
        assert_int_not_equal(lm_meta_record_decode(buf, (size_t)cut, &dd, &dc), 0);
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &dd, &dc), 0);
    assert_int_equal(dd.broker_id, 7);
    assert_int_equal(dd.config_count, 2);
    assert_string_equal(dd.configs[0].name, "log.retention.ms");
    lm_meta_record_free(&dd);
    lm_meta_state_deinit(&s);
}

/* Dynamic group configs (GROUP_CONFIGS records): set, replace, remove, copy, validation,
 * truncation. */
static void test_group_config_records(void **state)
{
    (void)state;
    struct lm_meta_state s;
    lm_meta_state_init(&s);
    struct lm_config_entry two[] = {{"consumer.session.timeout.ms", "50000"},
                                    {"share.auto.offset.reset", "by_duration:PT1H"}};
    struct lm_meta_record r = {
        .type = LM_META_GROUP_CONFIGS, .group = "g1", .configs = two, .config_count = 2};
    roundtrip(&r, &s, 0);
    struct lm_meta_record o = r;
    o.group = "g2";
    o.config_count = 1;
    roundtrip(&o, &s, 0);
    const struct lm_meta_group_configs *g = lm_meta_state_group_configs(&s, "g1");
    assert_non_null(g);
    assert_int_equal(g->count, 2);
    assert_string_equal(g->configs[1].value, "by_duration:PT1H");
    assert_null(lm_meta_state_group_configs(&s, "g3"));
    struct lm_meta_state copy;
    assert_int_equal(lm_meta_state_copy(&copy, &s), 0);
    r.config_count = 0; /* removes g1 */
    roundtrip(&r, &s, 0);
    assert_null(lm_meta_state_group_configs(&s, "g1"));
    assert_non_null(lm_meta_state_group_configs(&s, "g2"));
    assert_int_equal(lm_meta_state_group_configs(&copy, "g1")->count, 2);
    lm_meta_state_deinit(&copy);
    /* refused: unknown key, bad values, repeated key, empty group */
    struct lm_config_entry bad[][1] = {{{"session.timeout.ms", "50000"}},
                                       {{"consumer.session.timeout.ms", "0"}},
                                       {{"share.isolation.level", "dirty"}},
                                       {{"share.auto.offset.reset", "by_duration:-PT1H"}},
                                       {{"streams.num.standby.replicas", "-1"}}};
    r.config_count = 1;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        r.configs = bad[i];
        assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    }
    struct lm_config_entry rep[] = {{"consumer.session.timeout.ms", "50000"},
                                    {"consumer.session.timeout.ms", "50001"}};
    r.configs = rep;
    r.config_count = 2;
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    r.configs = two;
    r.group = "";
    assert_int_equal(lm_meta_state_check(&s, &r), LM_E_INVALID);
    r.group = "g1";
    uint8_t buf[512];
    int n = lm_meta_record_encode(&r, buf, sizeof(buf));
    assert_int_equal(n, (int)lm_meta_record_size(&r));
    struct lm_meta_record dd;
    struct lm_config_entry *dc;
    for (int cut = 0; cut < n; cut++)
        assert_int_not_equal(lm_meta_record_decode(buf, (size_t)cut, &dd, &dc), 0);
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &dd, &dc), 0);
    assert_string_equal(dd.group, "g1");
    assert_int_equal(dd.config_count, 2);
    lm_meta_record_free(&dd);
    lm_meta_state_deinit(&s);
}

/* A rebuild of the cluster image (reset, then every record again) runs held: readers keep
 * seeing the old image, never the empty or partial one, and the whole new one appears at once. */
static void test_image_rebuild_is_atomic(void **state)
{
    (void)state;
    char *dir = make_tmpdir();
    struct lm_meta_store *s;
    assert_int_equal(lm_meta_store_open(dir, &s), 0);
    assert_int_equal(lm_meta_store_set_cluster(s, 1), 0);
    int32_t rep[] = {1, 1};
    struct lm_meta_record t = {.type = LM_META_TOPIC_CREATE,
                               .topic = "kept",
                               .partition_count = 2,
                               .replicas = rep,
                               .replication_factor = 1};
    memset(t.topic_id, 7, 16);
    assert_int_equal(lm_meta_store_apply(s, &t), 0);
    uint64_t v0 = lm_meta_store_version(s);
    assert_int_equal(lm_meta_store_hold(s, true, true), 0);
    assert_int_equal(lm_meta_store_reset_image(s), 0);
    struct lm_meta_snapshot *mid = lm_meta_store_snapshot(s);
    assert_non_null(lm_meta_state_find(&mid->state, "kept")); /* not the empty image */
    lm_meta_snapshot_release(mid);
    assert_int_equal(lm_meta_store_version(s), v0);
    struct lm_meta_record t2 = t;
    t2.topic = "later";
    memset(t2.topic_id, 8, 16);
    assert_int_equal(lm_meta_store_apply(s, &t2), 0);
    mid = lm_meta_store_snapshot(s);
    assert_null(lm_meta_state_find(&mid->state, "later")); /* not a partial one either */
    lm_meta_snapshot_release(mid);
    assert_int_equal(lm_meta_store_apply(s, &t), 0);
    assert_int_equal(lm_meta_store_hold(s, false, true), 0);
    struct lm_meta_snapshot *after = lm_meta_store_snapshot(s);
    assert_true(lm_meta_store_version(s) > v0);
    assert_non_null(lm_meta_state_find(&after->state, "kept"));
    assert_non_null(lm_meta_state_find(&after->state, "later"));
    lm_meta_snapshot_release(after);
    /* a rebuild that fails half way puts the image it began with back */
    uint64_t v1 = lm_meta_store_version(s);
    assert_int_equal(lm_meta_store_hold(s, true, true), 0);
    assert_int_equal(lm_meta_store_reset_image(s), 0);
    assert_int_equal(lm_meta_store_apply(s, &t), 0);
    assert_int_equal(lm_meta_store_hold(s, false, false), 0);
    after = lm_meta_store_snapshot(s);
    assert_true(lm_meta_store_version(s) > v1);
    assert_non_null(lm_meta_state_find(&after->state, "later"));
    lm_meta_snapshot_release(after);
    assert_int_equal(lm_meta_store_apply(s, &t2), LM_E_EXISTS); /* the writer's image too */
    lm_meta_store_close(s);
    rm_rf(dir);
    free(dir);
}

/* Producer ids in a cluster: two nodes ask the controller for blocks against the same image;
 * the log applies the first and refuses the second (asked against an older image), which asks
 * again; no id is handed out twice, by two nodes or by one node before and after it lost its
 * data directory. */
struct pid_log {
    struct lm_meta_record r[8];
    int verdict[8];
    size_t n;
};

static void apply_both(struct lm_meta_store *a, struct lm_meta_store *b,
                       const struct lm_meta_record *r, int want, struct pid_log *log)
{
    assert_true(log->n < 8);
    log->r[log->n] = *r;
    log->verdict[log->n++] = want;
    uint8_t buf[64];
    int n = lm_meta_record_encode(r, buf, sizeof(buf));
    assert_true(n > 0);
    struct lm_meta_record d;
    struct lm_config_entry *cfg;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)n, &d, &cfg), 0);
    assert_int_equal(d.type, LM_META_PRODUCER_ID_BLOCK);
    assert_int_equal(lm_meta_store_apply(a, &d), want);
    assert_int_equal(lm_meta_store_apply(b, &d), want);
}

static void test_producer_id_blocks(void **state)
{
    (void)state;
    char *dir1 = make_tmpdir(), *dir2 = make_tmpdir();
    struct lm_meta_store *n1, *n2;
    assert_int_equal(lm_meta_store_open(dir1, &n1), 0);
    assert_int_equal(lm_meta_store_open(dir2, &n2), 0);
    assert_int_equal(lm_meta_store_set_cluster(n1, 1), 0);
    assert_int_equal(lm_meta_store_set_cluster(n2, 2), 0);
    int64_t id;
    assert_int_equal(lm_meta_store_alloc_producer_ids(n1, 1000, &id), LM_E_AGAIN); /* none yet */
    struct lm_meta_record r1, r2, r;
    assert_true(lm_meta_store_producer_block_wanted(n1, &r1));
    assert_false(lm_meta_store_producer_block_wanted(n1, &r)); /* one ask at a time */
    assert_true(lm_meta_store_producer_block_wanted(n2, &r2));
    assert_int_equal(r1.producer_id_from, r2.producer_id_from);
    assert_int_equal(r1.broker_id, 1);
    /* the log: node 2's ask first; node 1's was asked against an older image */
    struct pid_log log = {.n = 0};
    apply_both(n1, n2, &r2, 0, &log);
    apply_both(n1, n2, &r1, LM_E_STATE, &log);
    assert_false(lm_meta_store_producer_block_answer(n2, 0));
    assert_true(lm_meta_store_producer_block_answer(n1, LM_E_STATE)); /* lost: ask again */
    assert_true(lm_meta_store_producer_block_wanted(n1, &r1));
    assert_int_equal(r1.producer_id_from, r2.producer_id_next);
    apply_both(n1, n2, &r1, 0, &log);
    assert_false(lm_meta_store_producer_block_answer(n1, 0));
    int64_t seen[2 * LM_META_PRODUCER_BLOCK_IDS / 1000 + 1];
    size_t nseen = 0;
    for (int i = 0; i < LM_META_PRODUCER_BLOCK_IDS / 1000; i++) {
        assert_int_equal(lm_meta_store_alloc_producer_ids(n1, 1000, &seen[nseen++]), 0);
        assert_int_equal(lm_meta_store_alloc_producer_ids(n2, 1000, &seen[nseen++]), 0);
    }
    assert_int_equal(lm_meta_store_alloc_producer_ids(n1, 1000, &id), LM_E_AGAIN); /* used up */
    /* a refusal with the image unchanged (no controller yet) waits for the next ask */
    assert_true(lm_meta_store_producer_block_wanted(n1, &r1));
    assert_false(lm_meta_store_producer_block_answer(n1, LM_E_TIMEOUT));
    assert_int_equal(lm_meta_store_alloc_producer_ids(n1, 1000, &id), LM_E_AGAIN);
    assert_int_equal(lm_meta_store_alloc_producer_ids(n1, LM_META_PRODUCER_BLOCK_IDS + 1, &id),
                     LM_E_INVALID);
    /* node 1 loses its disk: the new process replays the log and is granted a new block */
    lm_meta_store_close(n1);
    rm_rf(dir1);
    free(dir1);
    dir1 = make_tmpdir();
    assert_int_equal(lm_meta_store_open(dir1, &n1), 0);
    assert_int_equal(lm_meta_store_set_cluster(n1, 1), 0);
    for (size_t i = 0; i < log.n; i++)
        assert_int_equal(lm_meta_store_apply(n1, &log.r[i]), log.verdict[i]);
    assert_int_equal(lm_meta_store_alloc_producer_ids(n1, 1000, &id), LM_E_AGAIN);
    assert_true(lm_meta_store_producer_block_wanted(n1, &r1));
    assert_int_equal(r1.producer_id_from, 2 * LM_META_PRODUCER_BLOCK_IDS);
    struct pid_log log2 = {.n = 0};
    apply_both(n1, n2, &r1, 0, &log2);
    assert_false(lm_meta_store_producer_block_answer(n1, 0));
    assert_int_equal(lm_meta_store_alloc_producer_ids(n1, 1000, &seen[nseen++]), 0);
    lm_meta_store_close(n1);
    lm_meta_store_close(n2);
    rm_rf(dir1);
    rm_rf(dir2);
    free(dir1);
    free(dir2);
    for (size_t i = 0; i < nseen; i++)
        for (size_t j = i + 1; j < nseen; j++)
            assert_true(seen[i] + 1000 <= seen[j] || seen[j] + 1000 <= seen[i]);
}

static void test_cluster_records(void **state)
{
    (void)state;
    struct lm_meta_state s;
    lm_meta_state_init(&s);
    struct lm_meta_record reg = {.type = LM_META_BROKER_REGISTER,
                                 .broker_id = 3,
                                 .incarnation = 77,
                                 .rack = "r1",
                                 .endpoints = "PLAINTEXT://127.0.0.3:9092"};
    roundtrip(&reg, &s, 0);
    reg.broker_id = 1;
    reg.rack = "";
    reg.endpoints = "PLAINTEXT://127.0.0.1:9092";
    roundtrip(&reg, &s, 0);
    assert_int_equal(s.broker_count, 2);
    assert_int_equal(s.brokers[0].id, 1); /* sorted by id */
    assert_string_equal(s.brokers[1].endpoints, "PLAINTEXT://127.0.0.3:9092");
    assert_string_equal(s.brokers[1].rack, "r1");
    struct lm_meta_record fence = {
        .type = LM_META_BROKER_FENCE, .broker_id = 3, .incarnation = 77, .fenced = true};
    roundtrip(&fence, &s, 0);
    assert_true(lm_meta_state_broker(&s, 3)->fenced);
    fence.incarnation = 76; /* about an earlier process of the node */
    roundtrip(&fence, &s, LM_E_STATE);
    fence.broker_id = 9;
    roundtrip(&fence, &s, LM_E_NOT_FOUND);
    reg.broker_id = 3; /* a restart registers again, unfenced */
    reg.incarnation = 78;
    roundtrip(&reg, &s, 0);
    assert_false(lm_meta_state_broker(&s, 3)->fenced);
    assert_int_equal(s.broker_count, 2);

    int32_t rep[] = {1, 3, 3, 1};
    struct lm_meta_record t = {.type = LM_META_TOPIC_CREATE,
                               .topic = "spread",
                               .partition_count = 2,
                               .replicas = rep,
                               .replication_factor = 2};
    memset(t.topic_id, 5, 16);
    roundtrip(&t, &s, 0);
    const struct lm_meta_topic *tp = lm_meta_state_find(&s, "spread");
    int16_t n;
    const int32_t *row = lm_meta_topic_replicas(tp, 1, &n);
    assert_int_equal(n, 2);
    assert_int_equal(row[0], 3);
    assert_null(lm_meta_topic_replicas(tp, 2, &n));
    int32_t more[] = {1, 3};
    struct lm_meta_record grow = {.type = LM_META_PARTITIONS_SET,
                                  .topic = "spread",
                                  .partition_count = 3,
                                  .replicas = more,
                                  .replication_factor = 2,
                                  .replicas_partitions = 1};
    roundtrip(&grow, &s, 0);
    row = lm_meta_topic_replicas(lm_meta_state_find(&s, "spread"), 2, &n);
    assert_int_equal(row[1], 3);
    grow.partition_count = 4;
    grow.replicas = NULL; /* an assigned topic does not grow without an assignment */
    grow.replication_factor = 0;
    roundtrip(&grow, &s, LM_E_INVALID);
    int32_t dup[] = {2, 2};
    t.topic = "dup";
    t.partition_count = 1;
    t.replicas = dup;
    memset(t.topic_id, 6, 16);
    roundtrip(&t, &s, LM_E_INVALID);

    /* leader and ISR (PARTITION_LEADER): a newer epoch, then only that leader changes the
     * ISR at its epoch; older epochs and other nodes change nothing */
    struct lm_meta_record lead = {.type = LM_META_PARTITION_LEADER,
                                  .topic = "spread",
                                  .partition_count = 1,
                                  .broker_id = 3,
                                  .leader_epoch = 4};
    roundtrip(&lead, &s, 0);
    tp = lm_meta_state_find(&s, "spread");
    int32_t ep;
    assert_int_equal(lm_meta_topic_leader(tp, 1, &ep), 3);
    assert_int_equal(ep, 4);
    assert_int_equal(lm_meta_topic_isr_out(tp, 1), 0);
    int32_t isr[2], off[2], n_isr, n_off;
    lm_meta_state_partition_isr(&s, tp, 1, 1, isr, &n_isr, off, &n_off);
    assert_int_equal(n_isr, 2);
    assert_int_equal(n_off, 0);
    roundtrip(&lead, &s, LM_E_STATE); /* the same again: no change */
    lead.isr_out = 2;                 /* replica 1 (node 1) fell behind */
    roundtrip(&lead, &s, 0);
    tp = lm_meta_state_find(&s, "spread");
    assert_int_equal(lm_meta_topic_isr_out(tp, 1), 2);
    lm_meta_state_partition_isr(&s, tp, 1, 1, isr, &n_isr, off, &n_off);
    assert_int_equal(n_isr, 1);
    assert_int_equal(isr[0], 3);
    lead.broker_id = 1; /* not the leader of epoch 4 */
    lead.isr_out = 0;
    roundtrip(&lead, &s, LM_E_STATE);
    lead.leader_epoch = 3; /* an older election */
    roundtrip(&lead, &s, LM_E_STATE);
    lead.leader_epoch = 5; /* a new leader starts with every replica in sync */
    roundtrip(&lead, &s, 0);
    tp = lm_meta_state_find(&s, "spread");
    assert_int_equal(lm_meta_topic_leader(tp, 1, &ep), 1);
    assert_int_equal(lm_meta_topic_isr_out(tp, 1), 0);
    /* a fenced replica is offline, not in the ISR */
    fence.broker_id = 3;
    fence.incarnation = 78;
    roundtrip(&fence, &s, 0);
    lm_meta_state_partition_isr(&s, tp, 1, 1, isr, &n_isr, off, &n_off);
    assert_int_equal(n_isr, 1);
    assert_int_equal(isr[0], 1);
    assert_int_equal(n_off, 1);
    assert_int_equal(off[0], 3);
    /* a record written before the ISR trailer existed decodes with every replica in sync */
    uint8_t buf[256];
    lead.isr_out = 0;
    int len = lm_meta_record_encode(&lead, buf, sizeof(buf));
    assert_true(len > 2);
    struct lm_meta_record d;
    struct lm_config_entry *dc;
    assert_int_equal(lm_meta_record_decode(buf, (size_t)len - 2, &d, &dc), 0);
    assert_int_equal(d.leader_epoch, 5);
    assert_int_equal(d.isr_out, 0);
    lm_meta_record_free(&d);
    assert_int_equal(lm_meta_record_decode(buf, (size_t)len - 3, &d, &dc), LM_E_TRUNCATED);

    struct lm_meta_state c;
    assert_int_equal(lm_meta_state_copy(&c, &s), 0);
    assert_int_equal(c.broker_count, 2);
    row = lm_meta_topic_replicas(lm_meta_state_find(&c, "spread"), 2, &n);
    assert_int_equal(row[0], 1);
    assert_int_equal(lm_meta_topic_leader(lm_meta_state_find(&c, "spread"), 1, &ep), 1);
    lm_meta_state_deinit(&c);
    lm_meta_state_deinit(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cluster_records),
        cmocka_unit_test(test_delete_names_its_incarnation),
        cmocka_unit_test(test_delete_by_id_alone),
        cmocka_unit_test(test_deleted_id_never_returns),
        cmocka_unit_test(test_image_rebuild_is_atomic),
        cmocka_unit_test(test_scram_records),
        cmocka_unit_test(test_feature_level_records),
        cmocka_unit_test(test_broker_config_records),
        cmocka_unit_test(test_group_config_records),
        cmocka_unit_test(test_config_table_sorted_and_valid),
        cmocka_unit_test(test_config_validate),
        cmocka_unit_test(test_settings_resolution_order),
        cmocka_unit_test(test_topic_names),
        cmocka_unit_test(test_record_roundtrip_and_truncation),
        cmocka_unit_test(test_store_persists_and_replays),
        cmocka_unit_test(test_store_cuts_torn_tail),
        cmocka_unit_test(test_producer_id_blocks),
        cmocka_unit_test(test_store_skips_records_that_do_not_apply),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
