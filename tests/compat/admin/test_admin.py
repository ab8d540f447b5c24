"""Admin clients of Python against laminar: confluent-kafka-python's AdminClient (librdkafka)
and kafka-python's KafkaAdminClient, from Debian's packages, creating, describing, altering,
growing and deleting topics, with the error cases a user hits; then topics and configs must
survive kill -9 and a restart.

    test_admin.py --io uring|epoll

Debian's confluent-kafka (1.7) and kafka-python (2.0) have no IncrementalAlterConfigs; APPEND
and SUBTRACT are checked with the Java Admin client (tests/compat/java, ToolsSuite).
"""

import argparse
import os
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
