"""max.broker.partitions (KIP-578's name): CreateTopics, CreatePartitions (validate_only too)
and Metadata auto-creation that would take the node above the limit are refused with
POLICY_VIOLATION and a message naming the limit; nothing is created; requests below it work.
The node here has 50 __consumer_offsets partitions and a limit of 60."""

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402

from confluent_kafka import KafkaError, KafkaException  # noqa: E402
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic  # noqa: E402

POLICY_VIOLATION = 44


def outcome(futures):
    """{name: None or the KafkaError} of an admin call."""
    out = {}
    for name, f in futures.items():
        try:
            f.result(30)
            out[name] = None
        except KafkaException as e:
            out[name] = e.args[0]
    return out


def topic_names(admin):
    return set(admin.list_topics(timeout=30).topics)


def metadata_auto_create(b, topic):
    """Metadata v4 for one topic with allow_auto_topic_creation: its topic error code."""
    c = kw.Conn(b)
    r = c.call(3, 4, kw.arr([kw.sstr(topic)]) + b"\x01")
    r.i32()  # throttle
    for _ in range(r.i32()):  # brokers
        r.i32()
        r.str()
        r.i32()
        r.str()
    r.str()  # cluster id
    r.i32()  # controller
    check(r.i32() == 1, "one topic")
    err = r.i16()
    c.close()
    return err


def scenario(b):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    for validate in (True, False):
        res = outcome(admin.create_topics([NewTopic("huge", 100000, 1)],
                                          validate_only=validate, operation_timeout=30))
        e = res["huge"]
        check(e is not None and e.code() == KafkaError.POLICY_VIOLATION,
              "100000 partitions (validate_only=%s): %r" % (validate, e))
        check("max.broker.partitions=60" in e.str(), "message %r" % e.str())
    check("huge" not in topic_names(admin), "huge was created")
    check(outcome(admin.create_topics([NewTopic("a", 8, 1)]))["a"] is None, "a (58 of 60)")
    e = outcome(admin.create_topics([NewTopic("b", 3, 1)]))["b"]
    check(e is not None and e.code() == KafkaError.POLICY_VIOLATION, "b: %r" % e)
    for validate in (True, False):
        e = outcome(admin.create_partitions([NewPartitions("a", 11)],
                                            validate_only=validate))["a"]
        check(e is not None and e.code() == KafkaError.POLICY_VIOLATION,
              "grow a to 11 (validate_only=%s): %r" % (validate, e))
    check(len(admin.list_topics(topic="a", timeout=30).topics["a"].partitions) == 8,
          "a grew")
    check(outcome(admin.create_partitions([NewPartitions("a", 10)]))["a"] is None,
          "grow a to 10 (60 of 60)")
    err = metadata_auto_create(b, "auto")
    check(err == POLICY_VIOLATION, "auto-create past the limit: error %d" % err)
    check("auto" not in topic_names(admin), "auto was created")
    # Room again after a deletion.
    check(outcome(admin.delete_topics(["a"], operation_timeout=30))["a"] is None, "delete a")
    check(outcome(admin.create_topics([NewTopic("b", 3, 1)]))["b"] is None, "b after delete")
    check(b.alive(), "broker alive")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1", "max.broker.partitions": "60"})
    return run_scenario(b, "partition limit (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
