"""Transactions on a 3-node cluster: __transaction_state is created through the controller
(3 replicas, compact, min.insync.replicas 2) on the first FindCoordinator of a transactional id, the coordinator is the leader
of the id's partition, markers go to partition leaders on other nodes (WriteTxnMarkers). A
transactional producer commits and aborts; the coordinator's node is killed with a transaction
committed and one open; the new leader of the id's partition loads it, a new producer instance
with the same id is answered (the open transaction aborted), and a read_committed consumer reads
exactly the committed records. Also: a transactional batch for a partition not added to the
transaction, sent to a partition leader that is not the coordinator, is refused after that
leader asked the coordinator (KIP-890 part 1, AddPartitionsToTxn v4 verify_only), and one
sent before any coordinator exists is refused (NOT_ENOUGH_REPLICAS); a Produce v12 there joins
the transaction instead (KIP-890 part 2, AddPartitionsToTxn v5 to the coordinator) and EndTxn v5
answers the bumped epoch.

    test_cluster_txn.py --io uring
"""
import argparse
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402
import test_cluster as tc  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "groups"))
import kraw  # noqa: E402

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import ConfigResource, NewTopic  # noqa: E402

TOPIC = "ctx"
PARTS = 6


def txn_producer(node, tid):
    p = Producer({"bootstrap.servers": node.bootstrap, "transactional.id": tid,
                  "transaction.timeout.ms": 60000})
    p.init_transactions(60)
    return p


def read_committed(nodes, expect, timeout_s=60):
    c = Consumer({"bootstrap.servers": ",".join(n.bootstrap for n in nodes),
                  "group.id": "ctx-reader-%d" % time.monotonic_ns(),
                  "isolation.level": "read_committed", "enable.auto.commit": False})
    c.assign([TopicPartition(TOPIC, p, 0) for p in range(PARTS)])
    out = []
    deadline = time.monotonic() + timeout_s
    quiet = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            out.append(m.value().decode())
            quiet = time.monotonic()
        elif len(out) >= expect and time.monotonic() - quiet > 2:
            break
    c.close()
    return sorted(out)


INVALID_TXN_STATE = 48
NOT_ENOUGH_REPLICAS = 19


def no_coordinator_yet(nodes):
    """Before any transactional FindCoordinator there is no __transaction_state: a
    transactional batch (an idempotent producer id with the transactional bit and an id) finds
    no coordinator to check it and is refused with the retriable NOT_ENOUGH_REPLICAS, as Kafka
    does, not written where it would hold the partition's last stable offset."""
    leaders = tc.leaders(nodes[0], TOPIC)
    leader = next(x for x in nodes if x.node_id == leaders[0])
    conn = kraw.Conn(leader.host, leader.port)
    err, pid, epoch = conn.init_producer_id()
    if err != 0:
        tc.fail("idempotent InitProducerId: %d" % err, nodes)
    err, _ = conn.produce(TOPIC, 0, kraw.txn_batch(pid, epoch, 0, [b"unchecked"]),
                          transactional_id="ctx-early")
    conn.close()
    if err != NOT_ENOUGH_REPLICAS:
        tc.fail("a transactional batch with no coordinator known: %d" % err, nodes)
    print("ok: a transactional batch with no coordinator known refused (NOT_ENOUGH_REPLICAS)")


def verify_across_nodes(nodes, a):
    """KIP-890 part 1 across nodes: a partition leader that is not the id's coordinator asks it
    (AddPartitionsToTxn v4 verify_only) before the first transactional write."""
    tid = "ctx-verify"
    def coordinator():
        ts = a.list_topics(timeout=10).topics["__transaction_state"].partitions
        leader = ts[(tc.java_hash(tid) & 0x7FFFFFFF) % len(ts)].leader
        return leader if leader >= 0 else None
    # its partition may still be electing its first leader
    coord_id = tc.wait_for("a leader for %s's partition" % tid, coordinator, 30, nodes)
    coord = next(x for x in nodes if x.node_id == coord_id)
    leaders = tc.leaders(nodes[0], TOPIC)
    part = next(p for p, l in leaders.items() if l != coord_id)
    leader = next(x for x in nodes if x.node_id == leaders[part])
    cc = kraw.Conn(coord.host, coord.port)
    deadline = time.monotonic() + 20
    while True:
        # the new leader loads the partition at its next tick: NOT_COORDINATOR (16) or
        # COORDINATOR_LOAD_IN_PROGRESS (14) until then, which clients retry
        r = cc.call(22, 1, kraw.s16str(tid) + struct.pack(">i", 60000), False)
        _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        if err not in (14, 15, 16) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if err != 0:
        tc.fail("InitProducerId %s on its coordinator: %d" % (tid, err), nodes)
    lc = kraw.Conn(leader.host, leader.port)

    def produce(value):
        deadline = time.monotonic() + 20
        while True:
            err, _ = lc.produce(TOPIC, part, kraw.txn_batch(pid, epoch, 0, [value]),
                                transactional_id=tid)
            if err != NOT_ENOUGH_REPLICAS or time.monotonic() > deadline:
                return err
            time.sleep(0.2)
    err = produce(b"stray")
    if err != INVALID_TXN_STATE:
        tc.fail("a transactional batch not added, on node %d (coordinator %d): %d"
                % (leader.node_id, coord_id, err), nodes)
    body = (kraw.s16str(tid) + struct.pack(">qh", pid, epoch) + struct.pack(">i", 1) +
            kraw.s16str(TOPIC) + struct.pack(">ii", 1, part))
    r = cc.call(24, 1, body, False)
    if struct.unpack(">h", r[-2:])[0] != 0:
        tc.fail("AddPartitionsToTxn %s: %d" % (tid, struct.unpack(">h", r[-2:])[0]), nodes)
    err = produce(b"verified")
    if err != 0:
        tc.fail("the added partition's batch: %d" % err, nodes)
    r = cc.call(26, 1, kraw.s16str(tid) + struct.pack(">qhb", pid, epoch, 0), False)  # abort
    if struct.unpack(">h", r[4:6])[0] != 0:
        tc.fail("EndTxn abort %s" % tid, nodes)
    # KIP-890 part 2 across nodes: a Produce v12 to a partition not added joins the transaction
    # through its leader, which asks the coordinator on the other node (AddPartitionsToTxn v5
    # without verify_only); EndTxn v5 then answers the bumped epoch (aborted: the committed
    # records this test counts stay the producer's)
    deadline = time.monotonic() + 20
    while True:
        err, _ = lc.produce(TOPIC, part, kraw.txn_batch(pid, epoch, 1, [b"implicit"]),
                            transactional_id=tid, version=12)
        if err != NOT_ENOUGH_REPLICAS or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if err != 0:
        tc.fail("Produce v12 to a partition not added, on node %d (coordinator %d): %d"
                % (leader.node_id, coord_id, err), nodes)
    err, state, _e, topics = kraw.describe_transaction(cc, tid)
    if err != 0 or state != "Ongoing" or topics != {TOPIC: [part]}:
        tc.fail("DescribeTransactions %s after the implicit add: %d %s %s"
                % (tid, err, state, topics), nodes)
    err, npid, nepoch = kraw.end_txn_v5(cc, tid, pid, epoch, False)
    if err != 0 or npid != pid or nepoch != epoch + 1:
        tc.fail("EndTxn v5 abort %s: %d, %d/%d after %d/%d" % (tid, err, npid, nepoch, pid,
                                                                epoch), nodes)
    cc.close()
    lc.close()
    print("ok: a batch for a partition not in the transaction refused on node %d, asked of the "
          "coordinator on node %d" % (leader.node_id, coord_id))


def features_across_nodes(nodes):
    """transaction.version is 2 on a new cluster; UpdateFeatures (kafka-features) sent to one
    node goes through the controller into the metadata, and every node's ApiVersions follows,
    down to 1 and back to 2."""
    for level, kind in ((2, None), (1, 2), (2, 1)):
        if kind is not None:
            x = nodes[level % len(nodes)]
            top, err = kraw.update_feature(x.host, x.port, "transaction.version", level, kind)
            if top != 0 or err != 0:
                tc.fail("UpdateFeatures transaction.version=%d on node %d: %d %d"
                        % (level, x.node_id, top, err), nodes)
        for x in nodes:
            tc.wait_for("node %d finalizes transaction.version %d" % (x.node_id, level),
                        lambda x=x: kraw.finalized_features(x.host, x.port).get(
                            "transaction.version") == level, 30, nodes)
    print("ok: transaction.version 2 -> 1 -> 2 through the controller, seen by every node")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
    nodes = [tc.Node(i, voters, port, cport, args.io) for i in range(1, 4)]
    try:
        for x in nodes:
            x.start()
        ids = {1, 2, 3}
        for x in nodes:
            tc.wait_for("node %d sees 3 brokers" % x.node_id,
                        lambda x=x: tc.cluster_view(x, 1)[0] == ids, 30, nodes)
        a = tc.admin(nodes[0])
        for _, f in a.create_topics([NewTopic(TOPIC, PARTS, 3)], request_timeout=30).items():
            f.result()
        tc.wait_for("ctx leaders", lambda: -1 not in tc.leaders(nodes[0], TOPIC).values(), 30,
                    nodes)
        no_coordinator_yet(nodes)
        # the first transactional producer creates __transaction_state (3 replicas)
        p = txn_producer(nodes[0], "ctx-tid")
        md = a.list_topics(topic="__transaction_state", timeout=10)
        ts = md.topics["__transaction_state"].partitions
        part = (tc.java_hash("ctx-tid") & 0x7FFFFFFF) % len(ts)
        if len(ts[part].replicas) != 3:
            tc.fail("__transaction_state-%d has %d replicas" % (part, len(ts[part].replicas)),
                    nodes)
        res = ConfigResource(ConfigResource.Type.TOPIC, "__transaction_state")
        cfgs = a.describe_configs([res])[res].result(15)
        if cfgs["min.insync.replicas"].value != "2" or cfgs["cleanup.policy"].value != "compact":
            tc.fail("__transaction_state configs: min.insync.replicas %s, cleanup.policy %s"
                    % (cfgs["min.insync.replicas"].value, cfgs["cleanup.policy"].value), nodes)
        verify_across_nodes(nodes, a)
        features_across_nodes(nodes)
        committed = []
        for r in range(6):
            p.begin_transaction()
            vals = ["c%d-%d" % (r, i) for i in range(12)]
            for i, v in enumerate(vals):
                p.produce(TOPIC, value=v.encode(), partition=i % PARTS)
            if r % 3 == 2:
                p.flush(30)
                p.abort_transaction(30)
            else:
                p.commit_transaction(30)
                committed += vals
        # one more open transaction, written but never ended
        p.begin_transaction()
        for i in range(PARTS):
            p.produce(TOPIC, value=b"open-%d" % i, partition=i)
        p.flush(30)
        md = a.list_topics(topic="__transaction_state", timeout=10)
        coord_id = md.topics["__transaction_state"].partitions[part].leader
        coord = next(x for x in nodes if x.node_id == coord_id)
        rest = [x for x in nodes if x is not coord]
        print("coordinator of ctx-tid: node %d (__transaction_state-%d); killing it"
              % (coord_id, part))
        coord.kill9()
        tc.wait_for("node %d fenced" % coord_id,
                    lambda: coord_id not in tc.cluster_view(rest[0])[0], 30, rest)
        del p  # the old instance is gone with its client
        # a new instance on the new coordinator: the open transaction is aborted first
        t1 = time.monotonic()
        p2 = None
        deadline = time.monotonic() + 90
        while p2 is None:
            try:
                p2 = txn_producer(rest[0], "ctx-tid")
            except KafkaException as e:
                if time.monotonic() > deadline:
                    tc.fail("init_transactions after the fail-over: %s" % e, rest)
                time.sleep(1)
        p2.begin_transaction()
        for i in range(PARTS):
            p2.produce(TOPIC, value=b"after-%d" % i, partition=i)
        p2.commit_transaction(60)
        committed += ["after-%d" % i for i in range(PARTS)]
        print("FIGURE new coordinator answered init_transactions %.1f s after the kill"
              % (time.monotonic() - t1))
        got = read_committed(rest, len(committed))
        if got != sorted(committed):
            missing = sorted(set(committed) - set(got))[:5]
            extra = sorted(set(got) - set(committed))[:5]
            tc.fail("read_committed after the fail-over: %d records, expected %d (missing %s, "
                    "extra %s)" % (len(got), len(committed), missing, extra), rest)
        print("ok: 3 nodes, coordinator killed mid-stream: %d committed records read exactly, "
              "aborted and open transactions invisible (%.1f s)"
              % (len(committed), time.monotonic() - t0))
    finally:
        for x in nodes:
            x.cleanup()


if __name__ == "__main__":
    main()
