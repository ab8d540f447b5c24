"""Partition reassignments (KIP-455) and manual assignments on a 4-node cluster (3 voters and a
fourth, broker-only node), driven by Kafka's own tools:

- kafka-topics creates an RF=3 topic on nodes 1,2,3 with a manual assignment; an idempotent
  acks=all producer writes to it;
- kafka-reassign-partitions --generate proposes a plan over 1,2,4; --execute of a plan that
  only reorders replicas completes at once (--verify: completed, Metadata in the new order);
- --execute of a move of a replica from node 3 to node 4: ListPartitionReassignments (--verify)
  shows it in progress, Metadata reports the union of the replicas with node 4 outside the ISR
  (as Kafka does), node 4 opens nothing, the partition keeps serving acks=all; --cancel puts
  the original replicas back; AlterPartitionReassignments' errors (unknown broker, duplicate,
  cancelling nothing) come back per partition;
- kafka-topics --alter --partitions with --replica-assignment adds a partition on 4,1,2 (a new
  Raft group on the named nodes, node 4 among them) that takes acks=all writes;
- every acknowledged record is read back once, at its offset.

The replica data movement (the partition leader adding node 4 as a Raft learner, promoting it,
removing node 3, and telling the controller) is not built: a reassignment that adds or removes
a replica stays in progress until cancelled, and this test checks exactly that.

    test_reassign.py --io uring
"""

import argparse
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cluster import (COMPAT, Node, admin, fail, leaders, run_cmd, run_cmd_rc,  # noqa: E402
                          wait_for)
from compat_util import java_cmd  # noqa: E402
from laminar_harness import free_port  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

TOPIC = "moves"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
TOPICS = "org.apache.kafka.tools.TopicCommand"


def tool(cp, main, *args, nodes, what, timeout=120):
    return run_cmd(java_cmd(cp, main, *args), what, timeout, nodes)


def json_file(obj):
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
    return path


def plan(moves):
    return {"version": 1, "partitions": [
        {"topic": TOPIC, "partition": p, "replicas": r, "log_dirs": ["any"] * len(r)}
        for p, r in moves]}


def describe(node):
    """{partition: (replicas, isr, leader)} as Metadata through node shows TOPIC."""
    md = admin(node).list_topics(topic=TOPIC, timeout=10)
    t = md.topics[TOPIC]
    if t.error is not None:
        raise RuntimeError("metadata: %s" % t.error)
    return {p.id: (list(p.replicas), list(p.isrs), p.leader) for p in t.partitions.values()}


class Acked:
    """An idempotent acks=all producer that records every acknowledged (partition, offset)."""

    def __init__(self, node):
        self.at = {}
        self.errors = []
        self.node = node

    def _cb(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            key = (msg.partition(), msg.offset())
            if key in self.at:
                self.errors.append("offset %s acknowledged twice" % (key,))
            self.at[key] = msg.value().decode()

    def send(self, tag, n, partitions):
        # a producer per round: its metadata has every partition the topic has now
        self.p = Producer({"bootstrap.servers": self.node.bootstrap, "acks": "all",
                           "enable.idempotence": True, "linger.ms": 5})
        for i in range(n):
            self.p.produce(TOPIC, value=b"%s-%05d" % (tag.encode(), i),
                           partition=partitions[i % len(partitions)], on_delivery=self._cb)
            self.p.poll(0)
        left = self.p.flush(60)
        if left or self.errors:
            raise RuntimeError("produce %s: %d left, errors %s" % (tag, left, self.errors[:3]))


def read_back(node, acked, nodes):
    """Every acknowledged record once, at its offset."""
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "reassign-check",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    parts = sorted({p for p, _ in acked})
    c.assign([TopicPartition(TOPIC, p, 0) for p in parts])
    got = {}
    deadline = time.monotonic() + 60
    while len(got) < len(acked) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        key = (m.partition(), m.offset())
        if key in got:
            fail("record at %s read twice" % (key,), nodes)
        got[key] = m.value().decode()
    c.close()
    missing = [k for k in acked if got.get(k) != acked[k]]
    if missing:
        fail("%d of %d acknowledged records not read back at their offsets (first %s: %r)"
             % (len(missing), len(acked), missing[0], got.get(missing[0])), nodes)
    values = list(got.values())
    if len(values) != len(set(values)):
        fail("a record was read at two offsets", nodes)


def raw_reassign(node, partition, replicas):
    """AlterPartitionReassignments v0 for one partition of TOPIC (replicas None: cancel);
    the partition's error code. Flexible framing: compact strings and arrays, tagged fields."""
    import kafka_wire as w

    def cstr(s):
        return w.uvar(len(s) + 1) + s.encode()

    reps = w.uvar(0) if replicas is None else w.uvar(len(replicas) + 1) + b"".join(
        w.s32(r) for r in replicas)
    part = w.s32(partition) + reps + w.uvar(0)
    topic = cstr(TOPIC) + w.uvar(2) + part + w.uvar(0)
    body = w.s32(30000) + w.uvar(2) + topic + w.uvar(0)
    c = w.Conn(node.host, node.port, "test-reassign")
    try:
        r = c.call(45, 0, body, flexible=True)
    finally:
        c.close()
    r.i32()  # throttle
    top = r.i16()
    if top != 0:
        raise RuntimeError("AlterPartitionReassignments top-level error %d" % top)
    r.cstr()  # error message
    r.uvar()  # topics + 1
    r.cstr()
    r.uvar()  # partitions + 1
    r.i32()
    return r.i16()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    lib = os.path.join(COMPAT, "java", "lib")
    if not os.path.exists(os.path.join(lib, ".complete")):
        print("FAIL: tests/compat/java/prepare has not run")
        sys.exit(1)
    cp = os.path.join(lib, "*")
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
    nodes = [Node(i, voters, port, cport, args.io, observer=i == 4) for i in range(1, 5)]
    try:
        run(nodes, cp)
    finally:
        for x in nodes:
            x.cleanup()


def run(nodes, cp):
    for x in nodes:
        x.start(timeout_s=60)
    t0 = time.monotonic()
    wait_for("4 nodes registered", lambda: set(admin(nodes[0]).list_topics(timeout=5).brokers)
             == {1, 2, 3, 4}, 60, nodes)
    boot = nodes[0].bootstrap
    tool(cp, TOPICS, "--bootstrap-server", boot, "--create", "--topic", TOPIC,
         "--replica-assignment", "1:2:3,2:3:1,3:1:2", nodes=nodes, what="kafka-topics --create")
    wait_for("moves led", lambda: -1 not in leaders(nodes[1], TOPIC).values(), 60, nodes)
    acked = Acked(nodes[1])
    acked.send("a", 600, [0, 1, 2])

    # --generate: a proposal over 1,2,4 (the tool's own placement; not executed)
    moves = json_file({"version": 1, "topics": [{"topic": TOPIC}]})
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--generate",
               "--topics-to-move-json-file", moves, "--broker-list", "1,2,4", nodes=nodes,
               what="kafka-reassign-partitions --generate")
    if "Proposed partition reassignment configuration" not in out or '"replicas":[' not in out:
        print(out[-2000:])
        fail("--generate printed no proposal", nodes)

    # a reorder of partition 0's replicas: done at once
    reorder = json_file(plan([(0, [3, 1, 2])]))
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--execute", "--reassignment-json-file",
               reorder, nodes=nodes, what="kafka-reassign-partitions --execute (reorder)")
    if "Successfully started partition reassignment" not in out:
        print(out[-2000:])
        fail("--execute (reorder) did not start", nodes)
    out = tool(cp, REASSIGN, "--bootstrap-server", nodes[2].bootstrap, "--verify",
               "--preserve-throttles", "--reassignment-json-file", reorder, nodes=nodes,
               what="kafka-reassign-partitions --verify (reorder)")
    if "Reassignment of partition %s-0 is completed" % TOPIC not in out:
        print(out[-2000:])
        fail("--verify: the reorder is not reported completed", nodes)
    wait_for("partition 0 replicas 3,1,2 on every node",
             lambda: all(describe(x)[0][0] == [3, 1, 2] for x in nodes), 30, nodes)

    # move partition 1's replica off node 3 onto node 4: in progress (no data movement)
    move = json_file(plan([(1, [2, 4, 1])]))
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--execute", "--reassignment-json-file",
               move, nodes=nodes, what="kafka-reassign-partitions --execute (move)")
    if "Successfully started partition reassignment for %s-1" % TOPIC not in out:
        print(out[-2000:])
        fail("--execute (move) did not start", nodes)
    out = tool(cp, REASSIGN, "--bootstrap-server", nodes[3].bootstrap, "--verify",
               "--preserve-throttles", "--reassignment-json-file", move, nodes=nodes,
               what="kafka-reassign-partitions --verify (move)")
    if "Reassignment of partition %s-1 is still in progress" % TOPIC not in out:
        print(out[-2000:])
        fail("--verify: the move is not reported in progress", nodes)
    for x in nodes:
        reps, isr, leader = describe(x)[1]
        if reps != [2, 4, 1, 3] or 4 in isr or leader not in (1, 2, 3):
            fail("node %d: partition 1 during the move: replicas %s isr %s leader %d (want "
                 "the union 2,4,1,3 with 4 outside the ISR)" % (x.node_id, reps, isr, leader),
                 nodes)
    if os.path.exists(os.path.join(nodes[3].data_dir, "%s-1" % TOPIC)):
        fail("node 4 opened partition 1 before holding any of its data", nodes)
    # the partition still serves acks=all while the reassignment is pending
    acked.send("b", 300, [0, 1, 2])
    # Kafka's per-partition errors
    for reps, want, what in (([2, 9, 1], 39, "an unknown broker"),
                             ([2, 2, 1], 39, "a duplicate"), ([], 39, "an empty list")):
        got = raw_reassign(nodes[1], 2, reps)
        if got != want:
            fail("AlterPartitionReassignments with %s: error %d, want %d" % (what, got, want),
                 nodes)
    if raw_reassign(nodes[1], 2, None) != 85:
        fail("cancelling partition 2 (nothing in progress): want NO_REASSIGNMENT_IN_PROGRESS",
             nodes)

    # --cancel: the original replicas come back
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--cancel", "--preserve-throttles",
               "--reassignment-json-file", move, nodes=nodes,
               what="kafka-reassign-partitions --cancel")
    if "Successfully cancelled partition reassignment" not in out:
        print(out[-2000:])
        fail("--cancel did not report the cancel", nodes)
    # Kafka's revert keeps the union's order without the adding replicas: 2,1,3
    wait_for("partition 1 back on nodes 2,1,3 everywhere",
             lambda: all(describe(x)[1][0] == [2, 1, 3] for x in nodes), 30, nodes)
    rc, out = run_cmd_rc(java_cmd(cp, REASSIGN, "--bootstrap-server", boot, "--list"), 120)
    if rc != 0 or "No partition reassignments found" not in out:
        print(out[-2000:])
        fail("--list after the cancel still shows a reassignment (rc %d)" % rc, nodes)

    # a new partition with a manual assignment naming node 4 (a Raft group on 4,1,2)
    tool(cp, TOPICS, "--bootstrap-server", boot, "--alter", "--topic", TOPIC, "--partitions",
         "4", "--replica-assignment", "1:2:3,2:3:1,3:1:2,4:1:2", nodes=nodes,
         what="kafka-topics --alter --replica-assignment")
    wait_for("partition 3 on 4,1,2 led",
             lambda: describe(nodes[0]).get(3, ([], [], -1))[0] == [4, 1, 2] and
             describe(nodes[0])[3][2] in (4, 1, 2), 60, nodes)
    acked.send("c", 200, [3])
    if not os.path.isdir(os.path.join(nodes[3].data_dir, "%s-3" % TOPIC)):
        fail("node 4 holds no directory for partition 3", nodes)
    read_back(nodes[2], acked.at, nodes)
    print("ok: %d acknowledged records read back once at their offsets; reorder completed, "
          "move in progress then cancelled, manual assignment on 4,1,2 served (%.1f s)"
          % (len(acked.at), time.monotonic() - t0))


if __name__ == "__main__":
    main()
