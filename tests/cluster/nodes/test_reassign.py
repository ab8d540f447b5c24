"""Partition reassignments (KIP-455) and manual assignments on a 4-node cluster (3 voters and a
fourth, broker-only node), driven by Kafka's own tools, under an idempotent acks=all producer:

- kafka-topics creates an RF=3 topic on nodes 1,2,3 (manual assignment);
- kafka-reassign-partitions --generate proposes a plan over 1,2,4; --execute of a plan that only
  reorders replicas completes at once;
- a cancel: with node 4 stopped (SIGSTOP), a move of partition 0 onto it stays in progress
  (--verify; Metadata reports the union of the replicas, node 4 outside the ISR), --cancel puts
  the original replicas back and the leader removes the learner it had added;
- AlterPartitionReassignments' per-partition errors (unknown broker, duplicate, empty list,
  cancelling nothing);
- every partition moves off node 3 onto node 4 (--execute, then --verify until completed): the
  leader adds node 4 as a Raft learner, which catches up, is promoted, and node 3 is removed
  (the leader hands over first where it is node 3); node 4 is killed (-9) in the middle of its
  catch-up, node 1 (a leader and controller voter) is killed and restarted while node 4 is
  down, then node 4 restarts; once complete node 3 is killed (-9) and every acknowledged record is
  read back once at its offset, from the new leaders and again after kafka-leader-election has
  put node 4 in front where it is the preferred replica;
- a partition of one replica whose log start DeleteRecords moved grows to three (RF 1 -> 3)
  under writes (the new replicas catch up from the leader's log start), node 4 is elected its
  leader and serves every acknowledged record past the log start;
- kafka-topics --alter --partitions with --replica-assignment adds a partition on 4,1,2;
- with node 3 dead, a partition on 3,1,2 is moved to 4,1,2 and completes; every record
  acknowledged before and during the move is read back from node 4.

    test_reassign.py --io uring
"""

import argparse
import json
import os
import signal
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_cluster import (COMPAT, Node, admin, fail, leaders, run_cmd, run_cmd_rc,  # noqa: E402
                          wait_for, wire_call)
import kafka_wire  # noqa: E402
from compat_util import java_cmd  # noqa: E402
from laminar_harness import free_port  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402

TOPIC = "moves"
DEAD = "deadmove"
REASSIGN = "org.apache.kafka.tools.reassign.ReassignPartitionsCommand"
ELECT = "org.apache.kafka.tools.LeaderElectionCommand"
TOPICS = "org.apache.kafka.tools.TopicCommand"


def tool(cp, main, *args, nodes, what, timeout=120):
    return run_cmd(java_cmd(cp, main, *args), what, timeout, nodes)


def json_file(obj):
    fd, path = tempfile.mkstemp(suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f)
    return path


def plan(moves, topic=TOPIC):
    return {"version": 1, "partitions": [
        {"topic": topic, "partition": p, "replicas": r, "log_dirs": ["any"] * len(r)}
        for p, r in moves]}


def describe(node, topic=TOPIC):
    """{partition: (replicas, isr, leader)} as Metadata through node shows topic."""
    md = admin(node).list_topics(topic=topic, timeout=10)
    t = md.topics[topic]
    if t.error is not None:
        raise RuntimeError("metadata: %s" % t.error)
    return {p.id: (list(p.replicas), list(p.isrs), p.leader) for p in t.partitions.values()}


class Acked:
    """Idempotent acks=all producers that record every acknowledged (partition, offset)."""

    def __init__(self, node, topic=TOPIC):
        self.at = {}
        self.errors = []
        self.node = node
        self.topic = topic
        self.stop = threading.Event()
        self.thread = None

    def _cb(self, err, msg):
        if err is not None:
            self.errors.append(err)
        else:
            key = (msg.partition(), msg.offset())
            if key in self.at:
                self.errors.append("offset %s acknowledged twice" % (key,))
            self.at[key] = msg.value().decode()

    def _producer(self):
        return Producer({"bootstrap.servers": self.node.bootstrap, "acks": "all",
                         "enable.idempotence": True, "linger.ms": 5,
                         "message.timeout.ms": 120000})

    def send(self, tag, n, partitions, size=0):
        # a producer per round: its metadata has every partition the topic has now
        p = self._producer()
        pad = b"x" * size
        for i in range(n):
            p.produce(self.topic, value=b"%s-%06d" % (tag.encode(), i) + pad,
                      partition=partitions[i % len(partitions)], on_delivery=self._cb)
            p.poll(0)
        left = p.flush(120)
        if left or self.errors:
            raise RuntimeError("produce %s: %d left, errors %s" % (tag, left, self.errors[:3]))

    def start(self, tag, partitions):
        """Keeps producing in a thread until finish()."""
        def loop():
            p = self._producer()
            i = 0
            while not self.stop.is_set():
                for _ in range(50):
                    p.produce(self.topic, value=b"%s-%06d" % (tag.encode(), i),
                              partition=partitions[i % len(partitions)], on_delivery=self._cb)
                    i += 1
                p.poll(0.02)
            self.left = p.flush(120)
        self.stop.clear()
        self.thread = threading.Thread(target=loop, daemon=True)
        self.thread.start()

    def finish(self, nodes):
        self.stop.set()
        self.thread.join(180)
        if self.thread.is_alive() or self.left or self.errors:
            fail("background producer: %s left, errors %s"
                 % (getattr(self, "left", "?"), self.errors[:3]), nodes)


def read_back(node, acked, nodes, topic=TOPIC):
    """Every acknowledged record once, at its offset (from the lowest acknowledged one)."""
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "reassign-check",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    parts = sorted({p for p, _ in acked})
    c.assign([TopicPartition(topic, p, min(o for q, o in acked if q == p)) for p in parts])
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


def verify_until(cp, plan_file, parts, nodes, timeout, topic=TOPIC):
    """--verify until every partition of the plan is reported completed; the last output."""
    deadline = time.monotonic() + timeout
    out = ""
    while time.monotonic() < deadline:
        rc, out = run_cmd_rc(java_cmd(cp, REASSIGN, "--bootstrap-server", nodes[0].bootstrap,
                                      "--verify",
                                      "--reassignment-json-file", plan_file), 120)
        if rc == 0 and all("Reassignment of partition %s-%d is completed" % (topic, p) in out
                           for p in parts):
            return out
        time.sleep(1)
    print(out[-3000:])
    fail("--verify: not every partition of %s completed in %d s" % (parts, timeout), nodes)


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
    # a partition on 1,2,3 that moves off node 3 after node 3 died (at the end)
    tool(cp, TOPICS, "--bootstrap-server", boot, "--create", "--topic", DEAD,
         "--replica-assignment", "3:1:2", nodes=nodes, what="kafka-topics --create (dead move)")
    wait_for("%s led" % DEAD, lambda: -1 not in leaders(nodes[1], DEAD).values(), 60, nodes)
    dead_acked = Acked(nodes[1], topic=DEAD)
    dead_acked.send("d", 2000, [0], size=100)
    acked = Acked(nodes[1])
    # enough data that node 4's catch-up takes a while (a restart in the middle of it)
    acked.send("a", 12000, [0, 1, 2], size=1000)

    # --generate: a proposal over 1,2,4 (the tool's own placement; not executed)
    moves = json_file({"version": 1, "topics": [{"topic": TOPIC}]})
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--generate",
               "--topics-to-move-json-file", moves, "--broker-list", "1,2,4", nodes=nodes,
               what="kafka-reassign-partitions --generate")
    if "Proposed partition reassignment configuration" not in out or '"replicas":[' not in out:
        print(out[-2000:])
        fail("--generate printed no proposal", nodes)

    # a reorder of partition 1's replicas: done at once
    reorder = json_file(plan([(1, [3, 2, 1])]))
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--execute", "--reassignment-json-file",
               reorder, "--throttle", "50000000", nodes=nodes,
               what="kafka-reassign-partitions --execute --throttle (reorder)")
    if ("Successfully started partition reassignment" not in out or
            "The inter-broker throttle limit was set to 50000000 B/s" not in out):
        print(out[-2000:])
        fail("--execute --throttle (reorder) did not start", nodes)
    out = verify_until(cp, reorder, [1], nodes, 30)
    if "Clearing broker-level throttles on brokers" not in out:
        print(out[-2000:])
        fail("--verify did not clear the throttles (dynamic broker configs)", nodes)
    wait_for("partition 1 replicas 3,2,1 on every node",
             lambda: all(describe(x)[1][0] == [3, 2, 1] for x in nodes), 30, nodes)

    # a cancel: node 4 stopped, so the move onto it cannot finish
    os.kill(nodes[3].pid, signal.SIGSTOP)
    try:
        move0 = json_file(plan([(0, [1, 2, 4])]))
        out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--execute",
                   "--reassignment-json-file", move0, nodes=nodes,
                   what="kafka-reassign-partitions --execute (to be cancelled)")
        if "Successfully started partition reassignment for %s-0" % TOPIC not in out:
            print(out[-2000:])
            fail("--execute (to be cancelled) did not start", nodes)
        out = tool(cp, REASSIGN, "--bootstrap-server", nodes[2].bootstrap, "--verify",
                   "--reassignment-json-file", move0, nodes=nodes,
                   what="kafka-reassign-partitions --verify (in progress)")
        if "Reassignment of partition %s-0 is still in progress" % TOPIC not in out:
            print(out[-2000:])
            fail("--verify: the move onto a stopped node is not reported in progress", nodes)
        for x in nodes[:3]:
            reps, isr, leader = describe(x)[0]
            if reps != [1, 2, 4, 3] or 4 in isr or leader not in (1, 2, 3):
                fail("node %d: partition 0 during the move: replicas %s isr %s leader %d (want "
                     "the union 1,2,4,3 with 4 outside the ISR)" % (x.node_id, reps, isr, leader),
                     nodes)
        # Kafka's per-partition errors
        for reps, want, what in (([2, 9, 1], 39, "an unknown broker"),
                                 ([2, 2, 1], 39, "a duplicate"), ([], 39, "an empty list")):
            got = raw_reassign(nodes[1], 2, reps)
            if got != want:
                fail("AlterPartitionReassignments with %s: error %d, want %d"
                     % (what, got, want), nodes)
        if raw_reassign(nodes[1], 2, None) != 85:
            fail("cancelling partition 2 (nothing in progress): want "
                 "NO_REASSIGNMENT_IN_PROGRESS", nodes)
        # --preserve-throttles: clearing them alters every broker's configs, and node 4 is
        # stopped (Kafka's tool would wait for it just the same)
        out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--cancel", "--preserve-throttles",
                   "--reassignment-json-file", move0, nodes=nodes,
                   what="kafka-reassign-partitions --cancel")
        if "Successfully cancelled partition reassignment" not in out:
            print(out[-2000:])
            fail("--cancel did not report the cancel", nodes)
        wait_for("partition 0 back on nodes 1,2,3",
                 lambda: all(describe(x)[0][0] == [1, 2, 3] for x in nodes[:3]), 30, nodes)
    finally:
        os.kill(nodes[3].pid, signal.SIGCONT)
    rc, out = run_cmd_rc(java_cmd(cp, REASSIGN, "--bootstrap-server", boot, "--list"), 120)
    if rc != 0 or "No partition reassignments found" not in out:
        print(out[-2000:])
        fail("--list after the cancel still shows a reassignment (rc %d)" % rc, nodes)

    # RF 1 -> 3 (the tool allows a replica count change unless told otherwise)
    tool(cp, TOPICS, "--bootstrap-server", boot, "--create", "--topic", "grow",
         "--replica-assignment", "2", nodes=nodes, what="kafka-topics --create grow")
    wait_for("grow led", lambda: -1 not in leaders(nodes[1], "grow").values(), 60, nodes)
    grown = Acked(nodes[0], "grow")
    grown.send("g", 2000, [0], size=100)
    # DeleteRecords below 1200 first: the new replicas catch up from the leader's log start
    body = (kafka_wire.arr([kafka_wire.sstr("grow") + kafka_wire.arr(
        [kafka_wire.s32(0) + kafka_wire.s64(1200)])]) + kafka_wire.s32(10000))
    r = wire_call(nodes[1], 21, 0, body)  # DeleteRecords v0, to the leader (node 2)
    r.i32()
    r.i32()
    r.str()
    r.i32()
    _, low, err = r.i32(), r.i64(), r.i16()
    if err != 0 or low != 1200:
        fail("DeleteRecords on grow-0 to 1200: error %d, low watermark %d" % (err, low), nodes)
    grown.at = {k: v for k, v in grown.at.items() if k[1] >= 1200}
    grow_plan = json_file(plan([(0, [4, 2, 1])], "grow"))
    tool(cp, REASSIGN, "--bootstrap-server", boot, "--execute", "--reassignment-json-file",
         grow_plan, nodes=nodes, what="kafka-reassign-partitions --execute (RF 1 -> 3)")
    grown.send("h", 500, [0])  # while it grows
    verify_until(cp, grow_plan, [0], nodes, 60, "grow")
    wait_for("grow-0 on 4,2,1 with a full ISR",
             lambda: describe(nodes[0], "grow")[0][0] == [4, 2, 1] and
             sorted(describe(nodes[0], "grow")[0][1]) == [1, 2, 4], 60, nodes)
    for attempt in range(10):
        rc, out = run_cmd_rc(java_cmd(cp, ELECT, "--bootstrap-server", boot, "--election-type",
                                      "PREFERRED", "--topic", "grow", "--partition", "0"), 120)
        if leaders(nodes[0], "grow")[0] == 4:
            break
        time.sleep(2)
    if leaders(nodes[0], "grow")[0] != 4:
        print(out[-2000:])
        fail("grow-0 not led by node 4 after kafka-leader-election", nodes)
    read_back(nodes[3], grown.at, nodes, "grow")

    # every partition off node 3 onto node 4, under load; node 4 restarted mid catch-up
    acked.start("b", [0, 1, 2])
    target = {0: [1, 2, 4], 1: [4, 2, 1], 2: [4, 1, 2]}
    move = json_file(plan(sorted(target.items())))
    t_move = time.monotonic()
    out = tool(cp, REASSIGN, "--bootstrap-server", boot, "--execute", "--reassignment-json-file",
               move, nodes=nodes, what="kafka-reassign-partitions --execute (move)")
    if "Successfully started partition reassignment" not in out:
        print(out[-2000:])
        fail("--execute (move) did not start", nodes)
    # node 4 is killed while it holds part of a moved partition (stopped first, so what it
    # holds at the kill is what is measured)
    def part_bytes(node, p):
        d = os.path.join(node.data_dir, "%s-%d" % (TOPIC, p))
        return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d)
                   if f.endswith(".log")) if os.path.isdir(d) else 0

    deadline = time.monotonic() + 30
    while not any(part_bytes(nodes[3], p) > 0 for p in target):
        if time.monotonic() > deadline:
            fail("node 4 received nothing of the moved partitions", nodes)
        time.sleep(0.005)
    os.kill(nodes[3].pid, signal.SIGSTOP)
    mid = {p: (part_bytes(nodes[3], p), part_bytes(nodes[0], p)) for p in target}
    nodes[3].kill9()
    if not any(0 < have < want for have, want in mid.values()):
        fail("node 4 was not in the middle of a catch-up when killed: %s" % mid, nodes)
    print("node 4 killed mid catch-up (bytes held / leader's, per partition): %s" % mid)
    # while node 4 is down no move can finish: node 1 (a partition leader and a controller
    # voter) is killed and restarted in the middle of them too
    nodes[0].kill9()
    time.sleep(1)
    nodes[0].start(timeout_s=60)
    nodes[3].start(timeout_s=60)
    verify_until(cp, move, sorted(target), nodes, 120)
    move_s = time.monotonic() - t_move
    acked.finish(nodes)
    for x in nodes:
        wait_for("node %d: the moved replicas" % x.node_id,
                 lambda: all(describe(x)[p][0] == target[p] for p in target), 30, nodes)
    wait_for("node 3 deleted the moved partitions",
             lambda: not any(os.path.exists(os.path.join(nodes[2].data_dir, "%s-%d" % (TOPIC, p)))
                             for p in target), 30, nodes)
    nodes[2].kill9()
    rest = [x for x in nodes if x is not nodes[2]]
    wait_for("every partition led without node 3",
             lambda: all(v in (1, 2, 4) for v in leaders(nodes[0], TOPIC).values()), 60, rest)
    read_back(nodes[1], acked.at, rest)
    # a move off the dead node 3: node 4 replaces it (the Raft group's new configuration has a
    # majority of live voters, 1 and 2, in the old one and the new one)
    dead_plan = json_file(plan([(0, [4, 1, 2])], topic=DEAD))
    tool(cp, REASSIGN, "--bootstrap-server", rest[0].bootstrap, "--execute",
         "--reassignment-json-file", dead_plan, nodes=rest,
         what="kafka-reassign-partitions --execute (off the dead node 3)")
    dead_acked.send("e", 500, [0])  # while it moves
    verify_until(cp, dead_plan, [0], rest, 120, topic=DEAD)
    wait_for("%s-0 on 4,1,2 with node 4 in sync" % DEAD,
             lambda: describe(rest[0], DEAD)[0][0] == [4, 1, 2] and
             4 in describe(rest[0], DEAD)[0][1], 60, rest)
    read_back(rest[2], dead_acked.at, rest, topic=DEAD)
    print("ok: a partition moved off the dead node 3 onto node 4; its %d acknowledged records "
          "read back" % len(dead_acked.at))
    # node 4 in front where it is the preferred replica
    for attempt in range(10):
        rc, out = run_cmd_rc(java_cmd(cp, ELECT, "--bootstrap-server", nodes[0].bootstrap,
                                      "--election-type", "PREFERRED", "--all-topic-partitions"),
                             120)
        if all(leaders(nodes[0], TOPIC)[p] == 4 for p in (1, 2)):
            break
        time.sleep(2)
    if not all(leaders(nodes[0], TOPIC)[p] == 4 for p in (1, 2)):
        print(out[-2000:])
        fail("node 4 does not lead partitions 1 and 2 after kafka-leader-election", rest)
    read_back(nodes[3], acked.at, rest)

    # a new partition with a manual assignment naming node 4 (a Raft group on 4,1,2)
    tool(cp, TOPICS, "--bootstrap-server", boot, "--alter", "--topic", TOPIC, "--partitions",
         "4", "--replica-assignment", "1:2:4,4:2:1,4:1:2,4:1:2", nodes=rest,
         what="kafka-topics --alter --replica-assignment")
    wait_for("partition 3 on 4,1,2 led",
             lambda: describe(nodes[0]).get(3, ([], [], -1))[0] == [4, 1, 2] and
             describe(nodes[0])[3][2] in (4, 1, 2), 60, rest)
    acked.send("c", 200, [3])
    read_back(nodes[1], acked.at, rest)
    print("FIGURE reassign_move_s %.1f (3 partitions, node 4 restarted once)" % move_s)
    print("ok: %d acknowledged records read back once at their offsets after every partition "
          "moved off node 3 (killed after), a cancel, a reorder and a manual assignment (%.1f s)"
          % (len(acked.at), time.monotonic() - t0))


if __name__ == "__main__":
    main()
