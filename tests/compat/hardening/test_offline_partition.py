"""A partition whose log cannot be opened is offline, says so, and comes back by itself: its
directory is replaced by a plain file while the broker is down. After the start Metadata shows
it as Kafka shows a partition without a live leader (LEADER_NOT_AVAILABLE, leader -1, this node
in offline_replicas); Produce, Fetch and ListOffsets answer KAFKA_STORAGE_ERROR (retriable), not
a timeout; the other partition works. Once the file is removed the shard's retry timer opens
the log again without any metadata change or restart, and it takes records."""

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

KAFKA_STORAGE_ERROR = 56
LEADER_NOT_AVAILABLE = 5


def part_state(c, topic, partition):
    nodes, topics = kw.metadata_v7(c, [topic])
    err, parts = topics[topic]
    check(err == 0, "topic error %d" % err)
    return nodes[0], [p for p in parts if p[0] == partition][0]


def scenario(b):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("t", 2, 1)])["t"].result(30)
    c = kw.Conn(b)
    one = kw.record_batch([(b"k", b"v")])
    for p in (0, 1):
        err, _, _ = kw.produce_v8(c, "t", p, one)
        check(err == 0, "produce t-%d: %d" % (p, err))
    c.close()
    check(b.stop() == 0, "clean stop")
    d = os.path.join(b.data_dir, "t-0")
    shutil.rmtree(d)
    with open(d, "w") as f:
        f.write("not a directory\n")
    restart_wait(b, kill=False)
    c = kw.Conn(b)
    node, (_, perr, leader, reps, isr, off) = part_state(c, "t", 0)
    check(perr == LEADER_NOT_AVAILABLE and leader == -1 and off == [node] and reps == [node],
          "offline t-0 in Metadata: error %d leader %d replicas %r offline %r" %
          (perr, leader, reps, off))
    _, (_, perr, leader, _, _, off) = part_state(c, "t", 1)
    check(perr == 0 and leader == node and off == [], "t-1 is online")
    err, base, msg = kw.produce_v8(c, "t", 0, one)
    check(err == KAFKA_STORAGE_ERROR and base == -1 and msg, "produce t-0: %d %r" % (err, msg))
    check(kw.fetch_v4(c, "t", 0, 0) == KAFKA_STORAGE_ERROR, "fetch t-0")
    check(kw.list_offsets_v1(c, "t", 0)[0] == KAFKA_STORAGE_ERROR, "list offsets t-0")
    err, base, _ = kw.produce_v8(c, "t", 1, one)
    check(err == 0 and base == 1, "produce t-1 while t-0 is offline: %d %d" % (err, base))
    check("t-0: cannot open log" in b.log_text(), "the open failure is logged")
    # Several retries fail meanwhile (every 1-5 s); it stays offline and the broker up.
    time.sleep(3)
    check(b.alive(), "broker alive")
    check(part_state(c, "t", 0)[1][1] == LEADER_NOT_AVAILABLE, "t-0 still offline")
    os.unlink(d)
    deadline = time.monotonic() + 30
    while part_state(c, "t", 0)[1][1] != 0:
        check(time.monotonic() < deadline, "t-0 did not come back within 30 s")
        time.sleep(0.2)
    _, (_, perr, leader, _, _, off) = part_state(c, "t", 0)
    check(leader == node and off == [], "t-0 back: leader %d offline %r" % (leader, off))
    err, base, _ = kw.produce_v8(c, "t", 0, one)
    check(err == 0 and base == 0, "produce t-0 after it came back: %d %d" % (err, base))
    check(kw.fetch_v4(c, "t", 0, 0) == 0, "fetch t-0 after it came back")
    check("t-0: log open again" in b.log_text(), "the recovery is logged")
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1"})
    return run_scenario(b, "offline partition (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
