"""Dynamic broker configs (KIP-226) with Kafka's own kafka-configs (ConfigCommand) against
laminar: a cluster-wide default (--entity-default) and a per-node value (--entity-name) of
message.max.bytes, which Produce enforces at once (a 5,000-byte record refused under the
default of 2,000, accepted under the node's 10,000); the topic describes the value with its
dynamic sources and synonyms; keys that are not dynamic and bad values are refused; the
replication throttle kafka-reassign-partitions sets is accepted; everything survives kill -9;
--delete-config restores the static value. GROUP config resources (kafka-configs --entity-type
groups) are set, described, bounded, kept and deleted.

    /usr/bin/python3 test_dynamic_configs.py --io uring|epoll
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, java_cmd, restart_wait, run_scenario  # noqa: E402

import confluent_kafka as ck  # noqa: E402

NODE = 4
TOPIC = "dyncfg"
LIB = os.path.join(HERE, "..", "java", "lib")


def configs(b, *args):
    """kafka-configs against broker b: (exit status, output)."""
    p = subprocess.run(java_cmd(os.path.join(LIB, "*"), "kafka.admin.ConfigCommand",
                                "--bootstrap-server", b.bootstrap, *args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def produce(b, size):
    """Produces one record of `size` bytes: None when acknowledged, else the error's name."""
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "message.max.bytes": 1 << 20,
                     "enable.idempotence": False, "retries": 0})
    out = []
    p.produce(TOPIC, value=b"x" * size, on_delivery=lambda err, _m: out.append(err))
    p.flush(30)
    check(len(out) == 1, "delivery report")
    return None if out[0] is None else out[0].name()


def produce_eventually(b, size, want, timeout=5.0):
    """Shards apply a dynamic config at their next metadata refresh: retry for a moment."""
    deadline = time.monotonic() + timeout
    while True:
        got = produce(b, size)
        if got == want or time.monotonic() > deadline:
            return got
        time.sleep(0.2)


def wide_reopen(b):
    """A storage default changed for the whole node (log.segment.bytes) reaches the logs of
    every partition: more than one step can reopen, so the rest are queued and reopened in the
    background while they keep serving. A producer on another topic sees no error meanwhile,
    and a partition of the wide topic rolls at the new size."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("wide", 2000, 1)])["wide"].result(60)
    errors = []
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "message.max.bytes": 1 << 20,
                     "linger.ms": 0, "message.timeout.ms": 20000})
    for part in range(0, 2000, 97):  # records in a spread of the wide topic's partitions
        p.produce("wide", value=b"w", partition=part,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
    p.flush(60)
    check(not errors, "produce to the wide topic: %s" % errors[:3])
    rc, out = configs(b, "--entity-type", "brokers", "--entity-default", "--alter",
                      "--add-config", "log.segment.bytes=1048576")
    check(rc == 0, "set log.segment.bytes:\n" + out)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the reopen runs meanwhile
        p.produce(TOPIC, value=b"during", on_delivery=lambda err, _m: errors.append(err)
                  if err else None)
        p.flush(20)
    check(not errors, "a producer during the reopen: %s" % errors[:3])
    # 2.4 MB of 8 KB records, one per batch (under the node's message.max.bytes=10000), rolls
    # 1 MiB segments
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "batch.num.messages": 1, "linger.ms": 0})
    for _ in range(300):
        p.produce("wide", value=b"s" * 8000, partition=1,
                  on_delivery=lambda err, _m: errors.append(err) if err else None)
        p.poll(0)
    p.flush(60)
    check(not errors, "2.4 MB to wide-1: %s" % errors[:3])
    d = os.path.join(b.data_dir, "wide-1")
    segs = [f for f in os.listdir(d) if f.endswith(".log")]
    check(len(segs) >= 3, "wide-1 rolled at the new segment size: %s" % sorted(segs))
    check("reopening" in b.log_text(), "the reopen was logged")
    rc, out = configs(b, "--entity-type", "brokers", "--entity-default", "--alter",
                      "--delete-config", "log.segment.bytes")
    check(rc == 0, "delete log.segment.bytes:\n" + out)
    check(admin.delete_topics(["wide"])["wide"].result(60) is None, "delete wide")


def group_configs(b):
    """GROUP config resources with kafka-configs --entity-type groups: set, describe (the set
    value as GROUP_CONFIG, the rest at the broker's defaults), bounds and unknown names refused
    with Kafka's messages, kept through kill -9 (checked by the caller), deleted."""
    rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--alter",
                      "--add-config", "consumer.session.timeout.ms=50000,"
                      "consumer.heartbeat.interval.ms=6000")
    check(rc == 0 and "Completed updating config for group g-cfg" in out,
          "set group configs:\n" + out)
    rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--describe",
                      "--all")
    check(rc == 0 and "consumer.session.timeout.ms=50000" in out and
          "consumer.heartbeat.interval.ms=6000" in out and
          "share.record.lock.duration.ms=30000" in out, "describe the group:\n" + out)
    for bad, why in (("consumer.session.timeout.ms=1000",
                      "consumer.session.timeout.ms must be greater than or equal to "
                      "group.consumer.min.session.timeout.ms"),
                     ("consumer.heartbeat.interval.ms=60000",
                      "consumer.heartbeat.interval.ms must be less than or equal to "
                      "group.consumer.max.heartbeat.interval.ms"),
                     ("no.such.config=1", "no.such.config")):
        rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--alter",
                          "--add-config", bad)
        check(rc != 0 and why in out, "%s refused:\n%s" % (bad, out))
    rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--describe",
                      "--all")
    check(rc == 0 and "consumer.session.timeout.ms=50000" in out,
          "the refused changes left the group as it was:\n" + out)
    # without --all the tool lists the groups with configs (ListConfigResources) first
    rc, out = configs(b, "--entity-type", "groups", "--describe")
    check(rc == 0 and "g-cfg" in out and "consumer.session.timeout.ms=50000" in out,
          "describe every group with configs:\n" + out)


def scenario(b):
    if not os.path.exists(os.path.join(LIB, ".complete")):
        raise AssertionError("tests/compat/java/prepare has not run")
    check(produce(b, 5000) is None, "a 5,000-byte record before any dynamic config")

    rc, out = configs(b, "--entity-type", "brokers", "--entity-default", "--alter",
                      "--add-config", "message.max.bytes=2000")
    check(rc == 0 and "Completed updating default config for brokers in the cluster" in out,
          "set the cluster-wide default:\n" + out)
    rc, out = configs(b, "--entity-type", "brokers", "--entity-default", "--describe")
    check(rc == 0 and "message.max.bytes=2000" in out, "describe the default:\n" + out)
    got = produce_eventually(b, 5000, "MSG_SIZE_TOO_LARGE")
    check(got == "MSG_SIZE_TOO_LARGE", "5,000 bytes over the dynamic default: %s" % got)

    rc, out = configs(b, "--entity-type", "brokers", "--entity-name", str(NODE), "--alter",
                      "--add-config", "message.max.bytes=10000,leader.replication.throttled.rate=1000")
    check(rc == 0 and "Completed updating config for broker %d" % NODE in out,
          "set the node's value and a throttle:\n" + out)
    got = produce_eventually(b, 5000, None)
    check(got is None, "the node's value beats the default: %s" % got)
    rc, out = configs(b, "--entity-type", "brokers", "--entity-name", str(NODE), "--describe")
    check(rc == 0 and "message.max.bytes=10000" in out and
          "leader.replication.throttled.rate=1000" in out and "log.dirs" not in out,
          "describe the node's dynamic configs:\n" + out)
    rc, out = configs(b, "--entity-type", "topics", "--entity-name", TOPIC, "--describe", "--all")
    check(rc == 0 and "max.message.bytes=10000 sensitive=false synonyms={"
          "DYNAMIC_BROKER_CONFIG:message.max.bytes=10000, "
          "DYNAMIC_DEFAULT_BROKER_CONFIG:message.max.bytes=2000" in out,
          "the topic's value, its sources and synonyms:\n" + out)

    rc, out = configs(b, "--entity-type", "brokers", "--entity-name", str(NODE), "--alter",
                      "--add-config", "num.partitions=7")
    check(rc != 0 and "Cannot update these configs dynamically" in out,
          "a key that is not dynamic is refused:\n" + out)
    rc, out = configs(b, "--entity-type", "brokers", "--entity-default", "--alter",
                      "--add-config", "log.retention.ms=soon")
    check(rc != 0 and "Invalid value soon for configuration log.retention.ms" in out,
          "a bad value is refused:\n" + out)
    # The admin client waits default.api.timeout.ms (60 s) for a node 5 to appear in the
    # metadata, possibly twice (describe, then alter): 15 s keeps the call inside its 120 s
    # limit on a loaded machine
    cmd_cfg = os.path.join(b.tmp, "admin-15s.properties")
    with open(cmd_cfg, "w") as f:
        f.write("default.api.timeout.ms=15000\nrequest.timeout.ms=10000\n")
    rc, out = configs(b, "--command-config", cmd_cfg, "--entity-type", "brokers",
                      "--entity-name", str(NODE + 1), "--alter", "--add-config",
                      "message.max.bytes=1")
    check(rc != 0, "another node's id is refused here:\n" + out)

    wide_reopen(b)
    group_configs(b)

    restart_wait(b, kill=True)
    rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--describe",
                      "--all")
    check(rc == 0 and "consumer.session.timeout.ms=50000" in out,
          "group configs kept through kill -9:\n" + out)
    rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--alter",
                      "--delete-config", "consumer.session.timeout.ms,consumer.heartbeat.interval.ms")
    check(rc == 0, "delete the group configs:\n" + out)
    rc, out = configs(b, "--entity-type", "groups", "--entity-name", "g-cfg", "--describe",
                      "--all")
    check(rc == 0 and "consumer.session.timeout.ms=45000" in out,
          "group configs deleted:\n" + out)
    rc, out = configs(b, "--entity-type", "brokers", "--entity-name", str(NODE), "--describe")
    check(rc == 0 and "message.max.bytes=10000" in out, "kept through kill -9:\n" + out)
    check(produce(b, 5000) is None, "the node's value after the restart")

    rc, out = configs(b, "--entity-type", "brokers", "--entity-name", str(NODE), "--alter",
                      "--delete-config", "message.max.bytes")
    check(rc == 0, "delete the node's value:\n" + out)
    got = produce_eventually(b, 5000, "MSG_SIZE_TOO_LARGE")
    check(got == "MSG_SIZE_TOO_LARGE", "back under the default: %s" % got)
    rc, out = configs(b, "--entity-type", "brokers", "--entity-default", "--alter",
                      "--delete-config", "message.max.bytes")
    check(rc == 0, "delete the default:\n" + out)
    got = produce_eventually(b, 5000, None)
    check(got is None, "back to the static value: %s" % got)
    rc, out = configs(b, "--entity-type", "brokers", "--entity-name", str(NODE), "--describe")
    check(rc == 0 and "message.max.bytes" not in out and
          "leader.replication.throttled.rate=1000" in out, "what is left:\n" + out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    a = ap.parse_args()
    b = Broker(io=a.io, config={"node.id": NODE})
    sys.exit(run_scenario(b, "dynamic broker configs", lambda: scenario(b)))


if __name__ == "__main__":
    main()
