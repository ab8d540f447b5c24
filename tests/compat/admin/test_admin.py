"""Admin clients of Python against laminar: confluent-kafka-python's AdminClient (librdkafka)
and kafka-python's KafkaAdminClient, from Debian's packages, creating, describing, altering,
growing and deleting topics, with the error cases a user hits; then topics and configs must
survive kill -9 and a restart. Also: an empty cleanup.policy (IncrementalAlterConfigs SUBTRACT
of its last item, hand-built frames, or set directly) is accepted, described as "" and means no
cleanup at all, as in Kafka 4.x; the ACL APIs without an authorizer answer SECURITY_DISABLED
(kafka-python's admin client, and hand-built frames at every served version). Hand-built
frames also check the operability APIs: ApiVersions' feature tags, DescribeLogDirs at v1-4
(partition sizes equal the segment files in the log dir), DescribeTopicPartitions paging and
UpdateFeatures.

    test_admin.py --io uring|epoll

Debian's confluent-kafka (1.7) and kafka-python (2.0) have no IncrementalAlterConfigs; APPEND
and SUBTRACT are checked with the Java Admin client (tests/compat/java, ToolsSuite) and with
hand-built frames here.
"""

import argparse
import os
import socket
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402

NODE_ID = 5
failures = []


def check(ok, what, detail=None):
    if ok:
        print("ok: " + what)
    else:
        failures.append(what)
        print("FAIL: %s%s" % (what, "" if detail is None else ": %r" % (detail,)))


def error_code_of(future):
    """The Kafka error code a confluent-kafka admin future fails with (0 on success)."""
    from confluent_kafka import KafkaException
    try:
        future.result(timeout=20)
        return 0
    except KafkaException as e:
        return e.args[0].code()


def confluent_checks(bootstrap):
    from confluent_kafka import KafkaError
    from confluent_kafka.admin import (AdminClient, ConfigResource, ConfigSource, NewPartitions,
                                       NewTopic)
    a = AdminClient({"bootstrap.servers": bootstrap, "client.id": "laminar-ck-admin"})
    t = "ck-topic"
    fs = a.create_topics([NewTopic(t, num_partitions=3, replication_factor=1,
                                   config={"retention.ms": "100000", "cleanup.policy": "delete"})],
                         request_timeout=20)
    check(error_code_of(fs[t]) == 0, "confluent create_topics")
    fs = a.create_topics([NewTopic(t, num_partitions=3, replication_factor=1)])
    check(error_code_of(fs[t]) == KafkaError.TOPIC_ALREADY_EXISTS,
          "confluent create_topics twice: TOPIC_ALREADY_EXISTS")
    fs = a.create_topics([NewTopic("ck-rf3", num_partitions=1, replication_factor=3)])
    check(error_code_of(fs["ck-rf3"]) == KafkaError.INVALID_REPLICATION_FACTOR,
          "confluent create_topics rf=3: INVALID_REPLICATION_FACTOR")
    fs = a.create_topics([NewTopic("ck-badcfg", 1, 1, config={"cleanup.policy": "shred"})])
    check(error_code_of(fs["ck-badcfg"]) == KafkaError.INVALID_CONFIG,
          "confluent create_topics bad config: INVALID_CONFIG")
    fs = a.create_topics([NewTopic("ck-bad name", 1, 1)])
    check(error_code_of(fs["ck-bad name"]) == KafkaError.TOPIC_EXCEPTION,
          "confluent create_topics illegal name: INVALID_TOPIC_EXCEPTION")
    fs = a.create_topics([NewTopic("ck-validate", 2, 1)], validate_only=True)
    check(error_code_of(fs["ck-validate"]) == 0, "confluent create_topics validate_only")

    md = a.list_topics(timeout=20)
    check(t in md.topics and "ck-validate" not in md.topics and "ck-rf3" not in md.topics,
          "confluent list_topics", sorted(md.topics))
    parts = md.topics[t].partitions
    check(len(parts) == 3 and all(p.leader == NODE_ID for p in parts.values()),
          "confluent list_topics: 3 partitions led by node %d" % NODE_ID)

    res = ConfigResource("topic", t)
    cfg = a.describe_configs([res])[res].result(timeout=20)
    check(cfg["retention.ms"].value == "100000"
          and cfg["retention.ms"].source == ConfigSource.DYNAMIC_TOPIC_CONFIG.value,
          "confluent describe_configs: override", cfg.get("retention.ms"))
    check(cfg["segment.bytes"].value == "1073741824" and cfg["segment.bytes"].is_default
          and cfg["segment.bytes"].source == ConfigSource.DEFAULT_CONFIG.value,
          "confluent describe_configs: default", cfg.get("segment.bytes"))
    check(cfg["max.message.bytes"].value == "1048588",
          "confluent describe_configs: max.message.bytes")
    missing = ConfigResource("topic", "ck-missing")
    code = error_code_of(a.describe_configs([missing])[missing])
    check(code == KafkaError.UNKNOWN_TOPIC_OR_PART,
          "confluent describe_configs missing topic: UNKNOWN_TOPIC_OR_PARTITION", code)
    bres = ConfigResource("broker", str(NODE_ID))
    bcfg = a.describe_configs([bres])[bres].result(timeout=20)
    check("num.partitions" in bcfg and bcfg["num.partitions"].is_read_only
          and "log.retention.bytes" in bcfg, "confluent describe_configs broker",
          sorted(bcfg)[:10])

    # AlterConfigs replaces the whole override set.
    res = ConfigResource("topic", t, set_config={"cleanup.policy": "compact"})
    check(error_code_of(a.alter_configs([res])[res]) == 0, "confluent alter_configs")
    cfg = a.describe_configs([ConfigResource("topic", t)])
    cfg = list(cfg.values())[0].result(timeout=20)
    check(cfg["cleanup.policy"].value == "compact" and cfg["retention.ms"].value == "604800000",
          "confluent alter_configs replaced the overrides",
          (cfg["cleanup.policy"].value, cfg["retention.ms"].value))
    res = ConfigResource("topic", t, set_config={"retention.ms": "later"})
    check(error_code_of(a.alter_configs([res])[res]) == KafkaError.INVALID_CONFIG,
          "confluent alter_configs invalid value: INVALID_CONFIG")

    fs = a.create_partitions([NewPartitions(t, 5)])
    check(error_code_of(fs[t]) == 0, "confluent create_partitions to 5")
    check(len(a.list_topics(topic=t, timeout=20).topics[t].partitions) == 5,
          "confluent create_partitions: metadata shows 5")
    fs = a.create_partitions([NewPartitions(t, 2)])
    check(error_code_of(fs[t]) == KafkaError.INVALID_PARTITIONS,
          "confluent create_partitions decrease: INVALID_PARTITIONS")

    fs = a.delete_topics([t], operation_timeout=20)
    check(error_code_of(fs[t]) == 0, "confluent delete_topics")
    check(t not in a.list_topics(timeout=20).topics, "confluent delete_topics: gone")
    fs = a.delete_topics([t])
    check(error_code_of(fs[t]) == KafkaError.UNKNOWN_TOPIC_OR_PART,
          "confluent delete_topics missing: UNKNOWN_TOPIC_OR_PARTITION")


def kafka_python_checks(bootstrap):
    from kafka.admin import (ConfigResource, ConfigResourceType, KafkaAdminClient, NewPartitions,
                             NewTopic)
    from kafka.errors import TopicAlreadyExistsError
    a = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="laminar-kp-admin",
                         request_timeout_ms=20000)
    try:
        t = "kp-topic"
        r = a.create_topics([NewTopic(t, 2, 1, topic_configs={"retention.ms": "5000"})])
        check([e[1] for e in r.topic_errors] == [0], "kafka-python create_topics", r)
        try:
            r = a.create_topics([NewTopic(t, 2, 1)])
            dup = [e[1] for e in r.topic_errors] == [36]
        except TopicAlreadyExistsError:
            dup = True
        check(dup, "kafka-python create_topics twice: TOPIC_ALREADY_EXISTS")
        check(t in a.list_topics(), "kafka-python list_topics")
        cluster = a.describe_cluster()
        check(cluster["controller_id"] == NODE_ID and len(cluster["brokers"]) == 1,
              "kafka-python describe_cluster", cluster)

        r = a.describe_configs([ConfigResource(ConfigResourceType.TOPIC, t)],
                               include_synonyms=True)
        res = r[0].resources[0]
        entries = {e[0]: e for e in res[4]}
        check(res[0] == 0 and entries["retention.ms"][1] == "5000"
              and entries["retention.ms"][3] == 1 and entries["cleanup.policy"][1] == "delete",
              "kafka-python describe_configs", entries.get("retention.ms"))
        syn = entries["retention.ms"][5]
        check(len(syn) >= 2 and syn[0][0] == "retention.ms" and syn[-1][2] == 5,
              "kafka-python describe_configs synonyms", syn)
        r = a.describe_configs([ConfigResource(ConfigResourceType.BROKER, str(NODE_ID),
                                               {"num.partitions": None})])
        res = r[0].resources[0]
        check(res[0] == 0 and [e[0] for e in res[4]] == ["num.partitions"],
              "kafka-python describe_configs broker with a key filter", res)

        r = a.create_partitions({t: NewPartitions(4)})
        check([e[1] for e in r.topic_errors] == [0], "kafka-python create_partitions", r)

        r = a.delete_topics([t])
        check([e[1] for e in r.topic_error_codes] == [0], "kafka-python delete_topics", r)
        check(t not in a.list_topics(), "kafka-python delete_topics: gone")
    finally:
        a.close()


def raw_malformed(host, port):
    """A CreateTopics request whose body is cut short: Kafka closes the connection, and so must
    we; the broker goes on serving."""
    import socket
    import struct
    client = b"raw"
    # request header v2 (CreateTopics v5 is flexible): key, version, correlation id, client id,
    # no tagged fields; then a body announcing 3 topics and ending.
    hdr = struct.pack(">hhih", 19, 5, 77, len(client)) + client + b"\x00"
    body = b"\x04" + b"\x06abc"
    frame = hdr + body
    with socket.create_connection((host, port), timeout=10) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        try:
            got = s.recv(4096)
        except ConnectionResetError:
            got = b""
    check(got == b"", "malformed CreateTopics: connection closed without a response", got)


# ---- hand-built frames (classic and flexible encodings) -------------------------------------

import kafka_wire  # noqa: E402
from kafka_wire import Reader, arr, carr, cstr, uvar  # noqa: E402,F401
from kafka_wire import s8 as i8, s16 as i16, s32 as i32, sstr as nstr  # noqa: E402


class Frames(kafka_wire.Conn):
    """One connection sending hand-built requests and reading the answers."""

    def __init__(self, host, port):
        super().__init__(host, port, "raw-admin", 15)

    def call(self, key, version, body, flexible):
        """The response body after its header, or None when the broker closed the
        connection."""
        self.send(key, version, body, flexible)
        return self.response(flexible, none_on_close=True)


# IncrementalAlterConfigs operations (KIP-339).
OP_SET, OP_DELETE, OP_APPEND, OP_SUBTRACT = 0, 1, 2, 3


def incremental_alter(f, topic, ops, validate_only=False):
    """IncrementalAlterConfigs v0 on one topic: ops is [(name, op, value)]; returns
    (error_code, error_message)."""
    body = arr([i8(2) + nstr(topic) + arr([nstr(n) + i8(op) + nstr(v) for n, op, v in ops])])
    r = f.call(44, 0, body + i8(1 if validate_only else 0), False)
    r.i32()
    check(r.i32() == 1, "incremental alter: one response")
    err, msg = r.i16(), r.nstr()
    check(r.i8() == 2 and r.nstr() == topic, "incremental alter: resource echoed")
    return err, msg


def describe_topic_config(f, topic, name):
    """DescribeConfigs v1 of one key with synonyms: (value, source, [(name, value, source)])."""
    r = f.call(32, 1, arr([i8(2) + nstr(topic) + arr([nstr(name)])]) + i8(1), False)
    r.i32()
    check(r.i32() == 1, "describe configs: one result")
    err, _ = r.i16(), r.nstr()
    check(err == 0 and r.i8() == 2 and r.nstr() == topic, "describe configs: result", err)
    n = r.i32()
    check(n == 1, "describe configs: one entry", n)
    check(r.nstr() == name, "describe configs: the key")
    value = r.nstr()
    r.i8()  # read_only
    source = r.i8()
    r.i8()  # is_sensitive
    syn = [(r.nstr(), r.nstr(), r.i8()) for _ in range(r.i32())]
    return value, source, syn


def list_offset(f, topic, ts):
    """ListOffsets v1 of partition 0: the offset."""
    r = f.call(2, 1, i32(-1) + arr([nstr(topic) + arr([i32(0) + struct.pack(">q", ts)])]),
               False)
    check(r.i32() == 1 and r.nstr() == topic and r.i32() == 1, "list offsets shape")
    r.i32()
    err = r.i16()
    r.take(">q")
    off = r.take(">q")
    check(err == 0, "list offsets error", err)
    return off


def read_all(bootstrap, topic):
    """Every record of partition 0 from the start up to the high watermark: [(offset, key)]."""
    import confluent_kafka as ck
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "unused-" + topic,
                     "enable.auto.commit": False})
    try:
        _, hw = c.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=15)
        c.assign([ck.TopicPartition(topic, 0, ck.OFFSET_BEGINNING)])
        got = []
        deadline = time.monotonic() + 30
        while (not got or got[-1][0] < hw - 1) and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append((m.offset(), m.key()))
        return got
    finally:
        c.close()


def empty_cleanup_policy(b):
    """cleanup.policy emptied by SUBTRACT of its last item: accepted and described as "" (source
    DYNAMIC_TOPIC_CONFIG), and it means no cleanup (Kafka 4.x: "an empty list means infinite
    retention"): a record without a key is accepted (no compaction), old segments stay although
    retention.ms is 1 and duplicates stay although the cleaner runs; control topics whose
    policy still says delete / compact lose their old segments / duplicates meanwhile."""
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    roll = {"segment.ms": "100", "min.cleanable.dirty.ratio": "0.01"}
    topics = {
        "pol-none": dict(roll, **{"cleanup.policy": "compact", "retention.ms": "1"}),
        "pol-compact": dict(roll, **{"cleanup.policy": "delete,compact"}),
        "pol-delete": dict(roll, **{"cleanup.policy": "delete", "retention.ms": "1"}),
    }
    fs = a.create_topics([NewTopic(t, 1, 1, config=c) for t, c in topics.items()])
    for t, fut in fs.items():
        check(error_code_of(fut) == 0, "create %s" % t)
    f = Frames(b.host, b.port)
    try:
        check(incremental_alter(f, "pol-none", [("cleanup.policy", OP_SUBTRACT, "compact")])
              == (0, None), "SUBTRACT the last cleanup.policy item")
        check(incremental_alter(f, "pol-compact", [("cleanup.policy", OP_SUBTRACT, "delete")])
              == (0, None), "SUBTRACT delete from delete,compact")
        value, source, syn = describe_topic_config(f, "pol-none", "cleanup.policy")
        check((value, source) == ("", 1), "empty cleanup.policy described", (value, source))
        check(syn == [("cleanup.policy", "", 1), ("log.cleanup.policy", "delete", 5)],
              "empty cleanup.policy synonyms", syn)
        check(describe_topic_config(f, "pol-compact", "cleanup.policy")[:2] == ("compact", 1),
              "cleanup.policy after SUBTRACT delete")
        # SUBTRACT from the empty list, and APPEND to it (validate only): both accepted.
        check(incremental_alter(f, "pol-none", [("cleanup.policy", OP_SUBTRACT, "delete")])
              == (0, None), "SUBTRACT from the empty list")
        check(incremental_alter(f, "pol-none", [("cleanup.policy", OP_APPEND, "delete")],
                                validate_only=True) == (0, None), "APPEND to the empty list")
        check(describe_topic_config(f, "pol-none", "cleanup.policy")[:2] == ("", 1),
              "validate_only left the empty list")
        # What Kafka 4.2's ValidList refuses (KIP-1161): repeated and empty items.
        err, msg = incremental_alter(f, "pol-none", [("cleanup.policy", OP_SET, "delete,delete")])
        check(err == 40 and "must not be duplicated" in (msg or ""), "repeated item refused",
              (err, msg))
        err, msg = incremental_alter(f, "pol-none", [("cleanup.policy", OP_SET, "delete,")])
        check(err == 40 and "must not be empty" in (msg or ""), "empty item refused", (err, msg))
        check(incremental_alter(f, "pol-none", [("cleanup.policy", OP_SET, " compact , delete")],
                                validate_only=True) == (0, None), "blanks around items")

        p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False,
                         "retries": 0, "linger.ms": 0})
        errs = {}

        def dr(err, msg):
            errs.setdefault(msg.topic(), []).append(err)

        # A record without a key: accepted unless the policy says compact.
        p.produce("pol-none", value=b"no key", partition=0, on_delivery=dr)
        p.produce("pol-compact", value=b"no key", partition=0, on_delivery=dr)
        p.flush(20)
        check(errs.get("pol-none") == [None], "keyless record accepted with no policy",
              errs.get("pol-none"))
        e = errs.get("pol-compact") or [None]
        check(e[0] is not None and e[0].code() == ck.KafkaError.INVALID_RECORD,
              "keyless record refused once compact", e)
        # Rounds of updates to a few keys, spaced so segments roll (segment.ms = 100).
        produced = {t: 1 if t == "pol-none" else 0 for t in topics}
        for rnd in range(6):
            for t in topics:
                for k in range(5):
                    p.produce(t, key=b"k%d" % k, value=b"r%d" % rnd, partition=0, on_delivery=dr)
                    produced[t] += 1
            p.flush(20)
            time.sleep(0.3)
        for t in topics:
            p.produce(t, key=b"last", value=b"x", partition=0, on_delivery=dr)  # roll once more
            produced[t] += 1
        p.flush(20)
        check(all(e is None for t in topics for e in errs.get(t, [])[1 if t != "pol-none"
                                                                      else 0:]),
              "updates acknowledged", errs)
        # The controls show retention and the cleaner ran (retention every 30 s).
        deadline = time.monotonic() + 75
        deleted = compacted = False
        while time.monotonic() < deadline and not (deleted and compacted):
            time.sleep(2)
            deleted = deleted or list_offset(f, "pol-delete", -2) > 0
            compacted = compacted or len(read_all(b.bootstrap, "pol-compact")) < \
                produced["pol-compact"]
        check(deleted, "control: retention deleted old segments of the delete topic")
        check(compacted, "control: the cleaner compacted the compact topic")
        got = read_all(b.bootstrap, "pol-none")
        check(list_offset(f, "pol-none", -2) == 0 and
              [o for o, _ in got] == list(range(produced["pol-none"])),
              "empty policy: every record kept", (len(got), produced["pol-none"]))
        # Set directly to "" (AlterConfigs through kafka-python) and at creation: accepted.
        from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient
        kp = KafkaAdminClient(bootstrap_servers=b.bootstrap, request_timeout_ms=20000)
        try:
            r = kp.alter_configs([ConfigResource(ConfigResourceType.TOPIC, "pol-delete",
                                                 {"cleanup.policy": ""})])
            check([x[0] for x in r.resources] == [0], "AlterConfigs cleanup.policy=\"\"", r)
        finally:
            kp.close()
        check(describe_topic_config(f, "pol-delete", "cleanup.policy")[:2] == ("", 1),
              "cleanup.policy set to \"\" described")
        fs = a.create_topics([NewTopic("pol-created", 1, 1, config={"cleanup.policy": ""})])
        check(error_code_of(fs["pol-created"]) == 0, "create with cleanup.policy=\"\"")
    finally:
        f.close()


ACL_DESCRIBE_MESSAGE = "No Authorizer is configured on the broker"
ACL_ALTER_MESSAGE = "No Authorizer is configured."


def acl_checks_kafka_python(bootstrap):
    """kafka-python's describe/create/delete ACLs see SecurityDisabledError, as against a Kafka
    broker without an authorizer."""
    from kafka.admin import (ACL, ACLFilter, ACLOperation, ACLPermissionType,
                             ACLResourcePatternType, KafkaAdminClient, ResourcePattern,
                             ResourcePatternFilter, ResourceType)
    from kafka.errors import SecurityDisabledError
    a = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=20000)
    try:
        flt = ACLFilter(principal=None, host="*", operation=ACLOperation.ANY,
                        permission_type=ACLPermissionType.ANY,
                        resource_pattern=ResourcePatternFilter(ResourceType.ANY, None,
                                                               ACLResourcePatternType.ANY))
        try:
            a.describe_acls(flt)
            check(False, "kafka-python describe_acls: no error")
        except SecurityDisabledError as e:
            check(ACL_DESCRIBE_MESSAGE in str(e), "kafka-python describe_acls: SECURITY_DISABLED",
                  str(e)[-200:])
        acl = ACL(principal="User:alice", host="*", operation=ACLOperation.READ,
                  permission_type=ACLPermissionType.ALLOW,
                  resource_pattern=ResourcePattern(ResourceType.TOPIC, "t",
                                                   ACLResourcePatternType.LITERAL))
        r = a.create_acls([acl])
        check(r["succeeded"] == [] and [e for _, e in r["failed"]] == [SecurityDisabledError],
              "kafka-python create_acls: SECURITY_DISABLED", r)
        r = a.delete_acls([flt, flt])
        check([(m, e) for _, m, e in r] == [([], SecurityDisabledError)] * 2,
              "kafka-python delete_acls: SECURITY_DISABLED per filter", r)
    finally:
        a.close()


def acl_checks_raw(host, port):
    """Every served version (1-3) of the three ACL APIs on the wire: SECURITY_DISABLED with
    Kafka's messages, one result per creation / filter; an UNKNOWN (0) enum closes the
    connection as Kafka's request parser does; v0 (removed in Kafka 4.0, KIP-896) is not
    served."""
    for v in (1, 2, 3):
        flex = v >= 2
        s_ = cstr if flex else nstr
        a_ = carr if flex else arr
        tags = b"\x00" if flex else b""
        f = Frames(host, port)
        try:
            # DescribeAcls: resource type ANY, name null, pattern ANY, principal null, host
            # null, operation ANY, permission ANY.
            body = i8(1) + s_(None) + i8(1) + s_(None) + s_(None) + i8(1) + i8(1) + tags
            r = f.call(29, v, body, flex)
            r.i32()
            err, msg = r.i16(), (r.cstr() if flex else r.nstr())
            n = (r.uvar() - 1) if flex else r.i32()
            check((err, msg, n) == (54, ACL_DESCRIBE_MESSAGE, 0),
                  "DescribeAcls v%d: SECURITY_DISABLED" % v, (err, msg, n))
            # CreateAcls with two creations.
            creation = (i8(2) + s_("t") + i8(3) + s_("User:alice") + s_("*") + i8(3) + i8(3) +
                        tags)
            r = f.call(30, v, a_([creation, creation]) + tags, flex)
            r.i32()
            n = (r.uvar() - 1) if flex else r.i32()
            res = []
            for _ in range(n):
                res.append((r.i16(), r.cstr() if flex else r.nstr()))
                if flex:
                    r.uvar()
            check(res == [(54, ACL_ALTER_MESSAGE)] * 2, "CreateAcls v%d: SECURITY_DISABLED" % v,
                  res)
            # DeleteAcls with one filter.
            flt = (i8(1) + s_(None) + i8(1) + s_(None) + s_(None) + i8(1) + i8(1) + tags)
            r = f.call(31, v, a_([flt]) + tags, flex)
            r.i32()
            n = (r.uvar() - 1) if flex else r.i32()
            check(n == 1, "DeleteAcls v%d: one filter result" % v, n)
            err, msg = r.i16(), (r.cstr() if flex else r.nstr())
            m = (r.uvar() - 1) if flex else r.i32()
            check((err, msg, m) == (54, ACL_ALTER_MESSAGE, 0),
                  "DeleteAcls v%d: SECURITY_DISABLED" % v, (err, msg, m))
            # operation UNKNOWN (0): Kafka cannot parse the request and closes.
            bad = i8(1) + s_(None) + i8(1) + s_(None) + s_(None) + i8(0) + i8(1) + tags
            check(f.call(29, v, bad, flex) is None, "DescribeAcls v%d UNKNOWN: closed" % v)
        finally:
            f.close()
    f = Frames(host, port)
    try:
        body = i8(1) + nstr(None) + nstr(None) + nstr(None) + i8(1) + i8(1)
        r = f.call(29, 0, body, False)
        check(r is not None and (r.i32(), r.i16()) == (0, 35), "DescribeAcls v0: unsupported")
    finally:
        f.close()



# ---- operability APIs on the wire: ApiVersions features, DescribeLogDirs,
# DescribeTopicPartitions, UpdateFeatures -------------------------------------------------

def read_tags(r):
    """A tagged-field section: {tag: bytes}."""
    out = {}
    for _ in range(r.uvar()):
        tag, size = r.uvar(), r.uvar()
        out[tag] = r.b[r.p:r.p + size]
        r.p += size
    return out


def api_versions(f, v):
    """ApiVersions v3+: ({key: (min, max)}, supported {name: (min, max)}, epoch,
    finalized {name: (min, max)})."""
    r = f.call(18, v, cstr("raw") + cstr("1") + b"\x00", True)
    # The response header of ApiVersions is v0 always (KIP-511): the reader skipped a tag
    # byte that is the error code's first byte; step back.
    r.p -= 1
    check(r.i16() == 0, "ApiVersions v%d: no error" % v)
    keys = {}
    for _ in range(r.uvar() - 1):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        r.uvar()
        keys[k] = (lo, hi)
    r.i32()
    tags = read_tags(r)
    sup, fin, epoch = {}, {}, -1
    if 0 in tags:
        t = Reader(tags[0])
        for _ in range(t.uvar() - 1):
            name, lo, hi = t.cstr(), t.i16(), t.i16()
            t.uvar()
            sup[name] = (lo, hi)
    if 1 in tags:
        epoch = struct.unpack(">q", tags[1])[0]
    if 2 in tags:
        t = Reader(tags[2])
        for _ in range(t.uvar() - 1):
            name, hi, lo = t.cstr(), t.i16(), t.i16()
            t.uvar()
            fin[name] = (lo, hi)
    check(r.done(), "ApiVersions v%d: whole body read" % v)
    return keys, sup, epoch, fin


def describe_log_dirs(f, v, topics):
    """DescribeLogDirs v1-4; topics None (all) or [(name, [partitions])]. Returns
    (top error, [(error, dir, {(topic, p): (size, lag, future)}, total, usable)])."""
    flex = v >= 2
    s_, a_ = (cstr, carr) if flex else (nstr, arr)
    tags = b"\x00" if flex else b""
    if topics is None:
        body = (b"\x00" if flex else i32(-1))
    else:
        body = a_([s_(t) + (uvar(len(ps) + 1) if flex else i32(len(ps))) +
                   b"".join(i32(p) for p in ps) + tags for t, ps in topics])
    r = f.call(35, v, body + tags, flex)
    if r is None:
        return None
    r.i32()
    top = r.i16() if v >= 3 else 0
    dirs = []
    for _ in range((r.uvar() - 1) if flex else r.i32()):
        err, d = r.i16(), (r.cstr() if flex else r.nstr())
        parts = {}
        for _ in range((r.uvar() - 1) if flex else r.i32()):
            name = r.cstr() if flex else r.nstr()
            for _ in range((r.uvar() - 1) if flex else r.i32()):
                p, size, lag, fut = r.i32(), r.take(">q"), r.take(">q"), r.i8()
                if flex:
                    r.uvar()
                parts[(name, p)] = (size, lag, fut)
            if flex:
                r.uvar()
        total = usable = -1
        if v >= 4:
            total, usable = r.take(">q"), r.take(">q")
        if flex:
            r.uvar()
        dirs.append((err, d, parts, total, usable))
    if flex:
        r.uvar()
    check(r.done(), "DescribeLogDirs v%d: whole body read" % v)
    return top, dirs


def describe_topic_partitions(f, names, limit, cursor):
    """DescribeTopicPartitions v0: ([(error, name, [partition])], next cursor or None)."""
    body = carr([cstr(n) + b"\x00" for n in names]) + i32(limit)
    body += (b"\xff" if cursor is None else
             b"\x01" + cstr(cursor[0]) + i32(cursor[1]) + b"\x00")
    r = f.call(75, 0, body + b"\x00", True)
    r.i32()
    topics = []
    for _ in range(r.uvar() - 1):
        err, name = r.i16(), r.cstr()
        r.p += 16 + 1  # topic id, is_internal
        parts = []
        for _ in range(r.uvar() - 1):
            perr, idx, leader, epoch = r.i16(), r.i32(), r.i32(), r.i32()
            for _ in range(5):  # replicas, isr, elr, last known elr, offline
                n = r.uvar() - 1
                r.p += 4 * max(n, 0)
            r.uvar()
            parts.append((perr, idx, leader))
        r.i32()
        r.uvar()
        topics.append((err, name, parts))
    nxt = None
    if r.i8() == 1:
        nxt = (r.cstr(), r.i32())
        r.uvar()
    r.uvar()
    check(r.done(), "DescribeTopicPartitions: whole body read")
    return topics, nxt


def elect_leaders(f, v, election_type, topics):
    """ElectLeaders v1 (classic) or v2 (flexible): (top error, {(topic, partition): error})."""
    flex = v >= 2
    enc_s, enc_a = (cstr, carr) if flex else (nstr, arr)
    tag = b"\x00" if flex else b""
    if topics is None:
        tp = b"\x00" if flex else i32(-1)
    else:
        tp = enc_a([enc_s(t) + enc_a([i32(q) for q in ps]) + tag for t, ps in topics])
    r = f.call(43, v, i8(election_type) + tp + i32(5000) + tag, flex)
    r.i32()
    top = r.i16()
    out = {}
    for _ in range((r.uvar() - 1) if flex else r.i32()):
        t = r.cstr() if flex else r.str()
        for _ in range((r.uvar() - 1) if flex else r.i32()):
            q, err = r.i32(), r.i16()
            r.cstr() if flex else r.str()
            if flex:
                r.uvar()
            out[(t, q)] = err
        if flex:
            r.uvar()
    if flex:
        r.uvar()
    check(r.done(), "ElectLeaders v%d: whole body read" % v)
    return top, out


def batches_bytes(path):
    """Bytes of the record batches at the start of a segment file: a batch is its 12-byte
    header (base offset, length) and length bytes more; the walk stops at zeros (preallocated
    space ahead of the log's end, broker/README.md) or at the file's end."""
    with open(path, "rb") as fh:
        data = fh.read()
    pos = 0
    while pos + 12 <= len(data):
        length = struct.unpack_from(">i", data, pos + 8)[0]
        if length <= 0 or pos + 12 + length > len(data):
            break
        pos += 12 + length
    return pos


def segment_bytes(d):
    """A partition's size as Kafka's UnifiedLog.size counts it: its segments' batches."""
    return sum(batches_bytes(os.path.join(d, n)) for n in os.listdir(d)
               if n.endswith(".log") and n[:-4].isdigit())


def ops_checks_raw(b):
    """The operability APIs at every served version on the wire."""
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    # preallocate=true: the open logs' segment files then hold zeros past their batches (written
    # by the flushes of the small appends below), which DescribeLogDirs must not count: it
    # reports each log's own size
    fs = a.create_topics([NewTopic("ops-raw", 3, 1, config={"preallocate": "true"})])
    check(error_code_of(fs["ops-raw"]) == 0, "create ops-raw")
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(300):
        p.produce("ops-raw", b"v" * 500, partition=i % 2)
    check(p.flush(20) == 0, "produce to ops-raw")
    for i in range(4):  # one small acks=all append per flush: zeros are written ahead
        p.produce("ops-raw", b"s" * 100, partition=i % 2)
        check(p.flush(20) == 0, "small produce to ops-raw")
    f = Frames(b.host, b.port)
    try:
        for v in (3, 4):
            keys, sup, epoch, fin = api_versions(f, v)
            check(keys.get(35) == (1, 4) and keys.get(57) == (0, 2) and keys.get(75) == (0, 0),
                  "ApiVersions v%d advertises DescribeLogDirs 1-4, UpdateFeatures 0-2, "
                  "DescribeTopicPartitions 0" % v, (keys.get(35), keys.get(57), keys.get(75)))
            # group.version 1 (KIP-848 consumer groups) and share.version 1 (KIP-932 share
            # groups) are served and finalized.
            check(sup.get("metadata.version") == (7, 27) and
                  sup.get("group.version") == ((0, 1) if v >= 4 else (1, 1)) and
                  sup.get("share.version") == ((0, 1) if v >= 4 else (1, 1)) and
                  fin == {"metadata.version": (27, 27), "group.version": (1, 1),
                          "share.version": (1, 1), "transaction.version": (2, 2)} and
                  epoch >= 0,
                  "ApiVersions v%d features" % v, (sup, fin, epoch))
            # Before v4 no range may start at 0 (KAFKA-17011): 0-2 is sent as 1-2.
            check(sup.get("transaction.version") == ((0, 2) if v >= 4 else (1, 2)) and
                  all(lo > 0 for lo, _ in sup.values()) == (v < 4),
                  "ApiVersions v%d: level-0 ranges only from v4" % v, sup)

        data = os.path.realpath(b.data_dir)
        want = {("ops-raw", q): segment_bytes(os.path.join(data, "ops-raw-%d" % q))
                for q in range(3)}
        check(want[("ops-raw", 0)] >= 150 * 500 and want[("ops-raw", 2)] == 0,
              "ops-raw segment files hold what was produced", want)
        for v in (1, 2, 3, 4):
            top, dirs = describe_log_dirs(f, v, None)
            err, d, parts, total, usable = dirs[0]
            got = {k: s for k, (s, lag, fut) in parts.items() if k[0] == "ops-raw"}
            check(top == 0 and len(dirs) == 1 and err == 0 and d == data and got == want and
                  all(lag == 0 and fut == 0 for _, lag, fut in parts.values()) and
                  ((total > 0 and 0 <= usable <= total) if v >= 4 else total == -1),
                  "DescribeLogDirs v%d (all topics): sizes equal the segments' batches" % v,
                  (top, d, got, want, total, usable))
        top, dirs = describe_log_dirs(f, 4, [("ops-raw", [1, 7]), ("missing", [0])])
        check(sorted(dirs[0][2]) == [("ops-raw", 1)],
              "DescribeLogDirs filter: only the existing partition asked for", dirs[0][2])
        check(describe_log_dirs(f, 0, None) is None, "DescribeLogDirs v0 (removed): closed")
    finally:
        f.close()

    f = Frames(b.host, b.port)
    try:
        seen, pages, cursor = [], 0, None
        while True:
            topics, cursor = describe_topic_partitions(f, ["ops-raw", "nope"], 2, cursor)
            pages += 1
            for err, name, parts in topics:
                seen += [(name, err, idx, leader) for _, idx, leader in parts] or [(name, err)]
            if cursor is None or pages > 5:
                break
        check(pages == 2 and seen == [("nope", 3), ("ops-raw", 0, 0, NODE_ID),
                                       ("ops-raw", 0, 1, NODE_ID), ("ops-raw", 0, 2, NODE_ID)],
              "DescribeTopicPartitions pages of 2 follow the cursor", (pages, seen))
        topics, cursor = describe_topic_partitions(f, ["ops-raw"], 10, ("other", 0))
        check([t[0] for t in topics] == [42], "DescribeTopicPartitions: cursor on a topic not "
              "asked for is INVALID_REQUEST", topics)
        # UpdateFeatures v1: the finalized level again succeeds, a level past the supported
        # range does not.
        upd = (cstr("metadata.version") + i16(27) + i8(1) + b"\x00" +
               cstr("transaction.version") + i16(3) + i8(1) + b"\x00")
        r = f.call(57, 1, i32(60000) + uvar(3) + upd + i8(0) + b"\x00", True)
        r.i32()
        top, msg = r.i16(), r.cstr()
        res = []
        for _ in range(r.uvar() - 1):
            res.append((r.cstr(), r.i16()))
            r.cstr()
            r.uvar()
        check(top == 0 and res == [("metadata.version", 0), ("transaction.version", 95)],
              "UpdateFeatures v1: same level ok, a change INVALID_UPDATE_VERSION", (top, res))
        # ElectLeaders on a single node: every partition is led by its only (preferred)
        # replica; an unknown topic is UNKNOWN_TOPIC_OR_PARTITION; a null list elects nothing.
        for v in (1, 2):
            top, res = elect_leaders(f, v, 0, [("ops-raw", [0, 2]), ("nope", [0])])
            check(top == 0 and res == {("ops-raw", 0): 84, ("ops-raw", 2): 84, ("nope", 0): 3},
                  "ElectLeaders v%d: ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION" % v, res)
            top, res = elect_leaders(f, v, 0, None)
            check(top == 0 and res == {}, "ElectLeaders v%d (all partitions): none needed" % v,
                  res)
        top, res = elect_leaders(f, 1, 1, [("ops-raw", [1])])
        check(res == {("ops-raw", 1): 84}, "ElectLeaders UNCLEAN with a leader: not needed", res)
        top, res = elect_leaders(f, 1, 7, [("ops-raw", [1])])
        check(res == {("ops-raw", 1): 42}, "ElectLeaders: unknown election type", res)
    finally:
        f.close()


def create_before_crash(bootstrap):
    """Creates a topic, grows it and sets a config: all must survive kill -9."""
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic
    a = AdminClient({"bootstrap.servers": bootstrap})
    t = "crash-topic"
    check(error_code_of(a.create_topics([NewTopic(t, 2, 1, config={"retention.ms": "777"})])[t])
          == 0, "before kill -9: create")
    check(error_code_of(a.create_partitions([NewPartitions(t, 3)])[t]) == 0,
          "before kill -9: grow to 3")
    res = ConfigResource("topic", t, set_config={"retention.ms": "777",
                                                 "cleanup.policy": "compact"})
    check(error_code_of(a.alter_configs([res])[res]) == 0, "before kill -9: alter configs")
    check(error_code_of(a.delete_topics(["ck-validate-none"])["ck-validate-none"]) != 0,
          "before kill -9: deleting a missing topic fails")


def check_after_crash(bootstrap):
    from confluent_kafka.admin import AdminClient, ConfigResource
    a = AdminClient({"bootstrap.servers": bootstrap})
    t = "crash-topic"
    md = a.list_topics(timeout=20)
    check(t in md.topics and len(md.topics[t].partitions) == 3,
          "after kill -9: topic with 3 partitions", sorted(md.topics))
    res = ConfigResource("topic", t)
    cfg = a.describe_configs([res])[res].result(timeout=20)
    check(cfg["retention.ms"].value == "777" and cfg["cleanup.policy"].value == "compact",
          "after kill -9: configs kept",
          (cfg["retention.ms"].value, cfg["cleanup.policy"].value))
    check("kp-topic" not in md.topics and "ck-topic" not in md.topics,
          "after kill -9: deleted topics stay deleted", sorted(md.topics))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, extra_args=["--node-id", str(NODE_ID)]) as b:
        for name, fn in (("confluent-kafka", confluent_checks),
                         ("kafka-python", kafka_python_checks)):
            try:
                fn(b.bootstrap)
            except Exception as e:  # a client exception is a failed check, not a crash
                import traceback
                traceback.print_exc()
                check(False, "%s raised %r" % (name, e))
        for name, fn in (("empty cleanup.policy", lambda: empty_cleanup_policy(b)),
                         ("acls (kafka-python)", lambda: acl_checks_kafka_python(b.bootstrap)),
                         ("acls (frames)", lambda: acl_checks_raw(b.host, b.port)),
                         ("operability (frames)", lambda: ops_checks_raw(b))):
            try:
                fn()
            except Exception as e:
                import traceback
                traceback.print_exc()
                check(False, "%s raised %r" % (name, e))
        try:
            raw_malformed(b.host, b.port)
            create_before_crash(b.bootstrap)
            b.kill9()
            b.restart()
            check_after_crash(b.bootstrap)
        except Exception as e:
            import traceback
            traceback.print_exc()
            check(False, "restart checks raised %r" % (e,))
        alive = b.alive()
        status = b.stop()
        check(alive and status == 0, "broker stayed up and exited cleanly", (alive, status))
        if failures:
            print("---- broker log (tail) ----")
            print(b.log_text()[-6000:])
    print("admin compat (%s): %d failure(s) in %.1f s" % (args.io, len(failures),
                                                          time.monotonic() - t0))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
