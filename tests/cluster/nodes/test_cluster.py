"""A laminar cluster of N processes on 127.0.0.1..N: it forms, clients see one
cluster through any node, topics spread over every node, groups work across nodes, a dead
node's partitions go offline while the rest serve, a dead controller leader is replaced,
restarted nodes rejoin with their data. Prints FIGURE lines (formation, fail-over, CreateTopics
latency, memory per node).

    test_cluster.py --nodes 3 --io uring
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "compat", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402
from compat_util import java_cmd  # noqa: E402
import kafka_wire  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "compat", "groups"))
import kraw  # noqa: E402
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "compat", "txn"))
import test_txnpart as txn  # noqa: E402

COMPAT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "compat")

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer,  # noqa: E402
                             TopicPartition)
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def fail(msg, nodes=()):
    print("FAIL:", msg)
    for n in nodes:
        print("---- node %d log (tail) ----" % n.node_id)
        print("\n".join(n.log_text().splitlines()[-40:]))
    sys.exit(1)


class Node(Broker):
    """One combined-mode node (broker + controller voter) as a KRaft user configures it."""

    def __init__(self, node_id, voters, port, cport, io, observer=False, secret=None,
                 snapshot_records=None, rebalance_interval=None, http_port=None,
                 txn_verify=True):
        host = "127.0.0.%d" % node_id
        self.observer = observer  # process.roles=broker: reads the metadata log from voters
        cfg = {
            "process.roles": "broker" if observer else "broker,controller",
            "node.id": node_id,
            "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.quorum.voters": voters,
            # /metrics on 127.0.0.N:http_port when asked for (isr_follows_lag reads it)
            "laminar.http.listener": "" if http_port is None else "%s:%d" % (host, http_port),
            "broker.session.timeout.ms": 3000,
            # a follower behind for longer leaves the ISR (isr_follows_lag pauses one for less
            # than the session timeout: out of the ISR, not fenced)
            "replica.lag.time.max.ms": 1000,
            # producer-state checkpoints every 256 KiB of log (64 MiB by default): a new
            # leader's producer state comes from a checkpoint and a short replay, as on a
            # long-lived cluster, and the campaigns' duplicate checks cover that path
            "laminar.producer.checkpoint.bytes": 262144,
        }
        if not txn_verify:
            # hand-built transactional batches with no coordinator behind them
            # (replicated_transactions; KIP-890's check is cluster_txn's)
            cfg["transaction.partition.verification.enable"] = "false"
        if secret is not None:
            cfg["laminar.cluster.secret"] = secret
        if snapshot_records is not None:
            cfg["laminar.metadata.snapshot.records"] = snapshot_records
        if rebalance_interval is not None:
            cfg["leader.imbalance.check.interval.seconds"] = rebalance_interval
            # every partition led away from its preferred replica goes back (Kafka's default,
            # 10%, tolerates a few among the many __consumer_offsets partitions)
            cfg["leader.imbalance.per.broker.percentage"] = 0
        super().__init__(io=io, host=host, port=port, config=cfg)
        self.node_id = node_id
        self.cport = cport
        self.http_port = http_port

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "PLAINTEXT://%s:%d" % (self.host, self.port)
        if not self.observer:
            a[i + 1] += ",CONTROLLER://%s:%d" % (self.host, self.cport)
        a += ["--config", "advertised.listeners=PLAINTEXT://%s:%d" % (self.host, self.port)]
        return a


def admin(node):
    return AdminClient({"bootstrap.servers": node.bootstrap})


def cluster_view(node, timeout=5):
    """(set of broker ids, controller id) as Metadata through node shows them."""
    md = admin(node).list_topics(timeout=timeout)
    return set(md.brokers), md.controller_id


def wait_for(what, pred, timeout, nodes):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # a node not answering yet
            last = e
        time.sleep(0.1)
    fail("%s (last: %r)" % (what, last), nodes)


def create(node, name, partitions):
    t0 = time.monotonic()
    a = admin(node)  # kept alive until the results are in
    fs = a.create_topics([NewTopic(name, partitions, 1)], request_timeout=30)
    for _, f in fs.items():
        f.result()
    return time.monotonic() - t0


def leaders(node, topic):
    """{partition: leader} as node's Metadata shows topic; a topic the node does not know (or
    reports with an error) is {-1: -1}, so "-1 not in leaders(...).values()" means led."""
    md = admin(node).list_topics(topic=topic, timeout=10)
    t = md.topics.get(topic)
    if t is None or t.error is not None or not t.partitions:
        return {-1: -1}
    return {p.id: p.leader for p in t.partitions.values()}


def produce(node, topic, records, partition=None):
    """Produces records (values) with acks=all and idempotence; returns {value: partition}."""
    acked = {}
    errors = []

    def cb(err, msg):
        if err is not None:
            errors.append(err)
        else:
            acked[msg.value().decode()] = msg.partition()

    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all",
                  "enable.idempotence": True, "linger.ms": 5})
    for v in records:
        if partition is None:
            p.produce(topic, value=v, key=v, on_delivery=cb)
        else:
            p.produce(topic, value=v, partition=partition, on_delivery=cb)
        p.poll(0)
    left = p.flush(60)
    if left or errors:
        raise RuntimeError("produce: %d left, errors %s" % (left, errors[:3]))
    return acked


def rdkafka_debug(conf, name):
    """LAMINAR_TEST_RDKAFKA_DEBUG=<contexts> writes librdkafka's debug log of this client to
    <tmp>/rdkafka-<name>.log (evidence when a client stalls)."""
    ctx = os.environ.get("LAMINAR_TEST_RDKAFKA_DEBUG")
    if not ctx:
        return {}
    import logging
    log = logging.getLogger("rdkafka-" + name)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    fh = logging.FileHandler(os.path.join(tempfile.gettempdir(), "rdkafka-%s.log" % name))
    fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(fh)
    conf["debug"] = ctx
    return {"logger": log}


def consume_group(node, topic, group, expect, timeout=60):
    conf = {"bootstrap.servers": node.bootstrap, "group.id": group,
            "auto.offset.reset": "earliest", "enable.auto.commit": False}
    c = Consumer(conf, **rdkafka_debug(conf, "%s-%s" % (group, os.getpid())))
    c.subscribe([topic])
    got = {}
    deadline = time.monotonic() + timeout
    while len(got) < expect and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        got[m.value().decode()] = (m.partition(), m.offset())
    c.commit(asynchronous=False)
    committed = c.committed(
        [TopicPartition(topic, p) for p in {pp for pp, _ in got.values()}], timeout=10)
    c.close()
    return got, committed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--observers", type=int, default=0,
                    help="the last N nodes are process.roles=broker (not voters)")
    ap.add_argument("--secret", default=None, help="laminar.cluster.secret of every node")
    ap.add_argument("--snapshot-records", type=int, default=None,
                    help="laminar.metadata.snapshot.records (small: snapshots and trims happen)")
    ap.add_argument("--rebalance-interval", type=int, default=None,
                    help="leader.imbalance.check.interval.seconds: the automatic preferred "
                         "leader rebalance is checked (without --clients)")
    ap.add_argument("--clients", action="store_true",
                    help="also Kafka's TopicCommand, the Java client and franz-go")
    args = ap.parse_args()
    n = args.nodes
    port, cport, http_port = free_port(), free_port(), free_port()
    nv = n - args.observers
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, nv + 1))
    nodes = [Node(i, voters, port, cport, args.io, observer=i > nv, secret=args.secret,
                  snapshot_records=args.snapshot_records,
                  rebalance_interval=args.rebalance_interval, http_port=http_port,
                  txn_verify=False)
             for i in range(1, n + 1)]
    try:
        run(nodes, n, args.clients)
        if args.secret is not None:
            wrong_secret(nodes, voters, port, cport, args.io)
        if n >= 3:
            first_read_of_idle(nodes)
        isr_follows_lag(nodes)
        sequence_ahead(nodes)
        follower_catches_up_from_log_start(nodes)
        if args.clients:
            preferred_leaders(nodes, os.path.join(COMPAT, "java", "lib", "*"), None)
        elif args.rebalance_interval:
            preferred_leaders(nodes, None, args.rebalance_interval)
        coordinator_failover(nodes)
        paused_coordinator(nodes)
        replicated_transactions(nodes)
        if args.snapshot_records is not None:
            snapshots(nodes)
        if args.observers:
            # last: the node's replicas of the RF=1 topics above are lost with its disk
            producer_ids_after_disk_loss(nodes)
    finally:
        for x in nodes:
            x.cleanup()


def run_cmd_rc(cmd, timeout):
    """cmd's exit status and its output (stdout and stderr)."""
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def run_cmd(cmd, what, timeout, nodes):
    rc, out = run_cmd_rc(cmd, timeout)
    if rc != 0:
        print(out[-4000:])
        fail("%s exited %d" % (what, rc), nodes)
    return out


def other_clients(nodes, n):
    """Kafka's TopicCommand creates a 48-partition topic through one node; the Java client
    produces through another (idempotent, acks=all) and Kafka's console consumer reads it back
    with a group through a third; franz-go runs its idempotent-producer and group checks."""
    lib = os.path.join(COMPAT, "java", "lib")
    if not os.path.exists(os.path.join(lib, ".complete")):
        fail("tests/compat/java/prepare has not run", nodes)
    cp = os.path.join(lib, "*")
    run_cmd(java_cmd(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                     nodes[-1].bootstrap, "--create", "--topic", "tools48", "--partitions", "48",
                     "--replication-factor", "1"), "kafka-topics --create", 120, nodes)
    desc = run_cmd(java_cmd(cp, "org.apache.kafka.tools.TopicCommand", "--bootstrap-server",
                            nodes[0].bootstrap, "--describe", "--topic", "tools48"),
                   "kafka-topics --describe", 120, nodes)
    led = Counter(int(line.split("Leader:")[1].split()[0])
                  for line in desc.splitlines() if "Leader:" in line)
    if sum(led.values()) != 48 or set(led) != {x.node_id for x in nodes}:
        print(desc)
        fail("kafka-topics --describe: leaders %s" % led, nodes)
    run_cmd(java_cmd(cp, "org.apache.kafka.tools.ProducerPerformance", "--topic", "tools48",
                     "--num-records", "20000", "--record-size", "100", "--throughput", "-1",
                     "--producer-props", "bootstrap.servers=" + nodes[0].bootstrap, "acks=all"),
            "ProducerPerformance", 180, nodes)
    out = run_cmd(java_cmd(cp, "org.apache.kafka.tools.consumer.ConsoleConsumer",
                           "--bootstrap-server", nodes[1 % n].bootstrap, "--topic", "tools48",
                           "--group", "java-group", "--from-beginning", "--max-messages",
                           "20000", "--timeout-ms", "60000"), "ConsoleConsumer", 180, nodes)
    lines = [line for line in out.splitlines() if len(line) == 100]
    if len(lines) != 20000:
        fail("ConsoleConsumer read %d of 20000 records" % len(lines), nodes)
    print("ok: kafka-topics created 48 partitions led by %s; Java producer 20,000 acks=all, "
          "console consumer (group) read all 20,000" % dict(sorted(led.items())))
    franz = os.path.join(COMPAT, "franz", "franz_check")
    if not os.access(franz, os.X_OK):
        fail("tests/compat/franz/prepare has not run", nodes)
    out = run_cmd([franz, nodes[n // 2].bootstrap], "franz_check", 180, nodes)
    print("ok: franz-go through node %d: %s" % (nodes[n // 2].node_id,
                                                out.strip().splitlines()[-1][:200]))


def snapshots(nodes):
    """With a small laminar.metadata.snapshot.records the nodes wrote snapshots and trimmed
    their logs, a node that was away rebuilt its image from another's snapshot, and a restart
    loads its own: every node still agrees on every topic's leaders."""
    logs = [x.log_text() for x in nodes]
    if not any("controller: snapshot up to offset" in t for t in logs):
        fail("no node wrote a metadata snapshot", nodes)
    rebuilt = sum("image rebuilt from a snapshot" in t for t in logs)
    # before: the reference (node 1 may have just restarted: it answers once caught up)
    topics = wait_for("node %d answering Metadata" % nodes[0].node_id,
                      lambda: set(admin(nodes[0]).list_topics(timeout=5).topics), 60, nodes)
    ids = {x.node_id for x in nodes}
    for x in nodes:  # every node knows them all before the restart
        wait_for("node %d with every topic" % x.node_id,
                 lambda x=x: set(admin(x).list_topics(timeout=10).topics) == topics, 30, nodes)
    for x in nodes:  # each restarts from its own snapshot and log
        x.stop()
    for x in nodes:
        x.start()
    for x in nodes:
        deadline = time.monotonic() + 30
        while True:
            try:
                view = cluster_view(x)[0]
                have = set(admin(x).list_topics(timeout=10).topics)
            except Exception as e:  # not answering yet
                view, have = set(), {repr(e)}
            if view == ids and have == topics:
                break
            if time.monotonic() > deadline:
                fail("node %d after a restart: brokers %s, topics differing %s"
                     % (x.node_id, sorted(view), sorted(have ^ topics)), nodes)
            time.sleep(0.2)
        if "image loaded from the snapshot" not in x.log_text():
            fail("node %d did not load its snapshot at restart" % x.node_id, [x])
    lead = leaders(nodes[0], "spread")
    for x in nodes:
        wait_for("node %d agreeing on leaders" % x.node_id,
                 lambda x=x: leaders(x, "spread") == lead, 10, nodes)
    print("ok: snapshots written and logs trimmed; %d node(s) rebuilt their image from "
          "another's snapshot; all %d restarted from their own" % (rebuilt, len(nodes)))


def java_hash(s):
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h


def metric(node, name):
    """The value of an unlabelled gauge in node's /metrics (None when it cannot be read)."""
    try:
        with urllib.request.urlopen("http://%s:%d/metrics" % (node.host, node.http_port),
                                    timeout=5) as r:
            for line in r.read().decode().splitlines():
                if line.startswith(name + " "):
                    return float(line.split()[1])
    except OSError:
        return None
    return None


def first_read_of_idle(nodes):
    """Reads of idle RF=3 partitions whose groups went quiescent (laminar.raft.quiesce, the
    default) and whose leader's lease ran out: the read wakes the group and waits the round
    trip its heartbeats take to renew the lease, then is answered. librdkafka's watermark query
    does not retry OFFSET_NOT_AVAILABLE (what such a read got before it waited)."""
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic("quiet", 3, 3)], request_timeout=30).items():
        f.result()
    wait_for("quiet led", lambda: -1 not in leaders(nodes[0], "quiet").values(), 30, nodes)
    p = Producer({"bootstrap.servers": nodes[0].bootstrap, "acks": "all"})
    for part in range(3):
        p.produce("quiet", value=b"q%d" % part, partition=part)
    if p.flush(30) != 0:
        raise SystemExit("FAIL: quiet: records not acknowledged")
    c = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": "quiet-read",
                  "enable.auto.commit": False})
    try:
        c.list_topics("quiet", timeout=10)
        time.sleep(4)  # quiescent, and the lease (0.9 s after the last heartbeat) run out
        for part in range(3):
            t0 = time.monotonic()
            lo, hi = c.get_watermark_offsets(TopicPartition("quiet", part), timeout=10)
            if lo != 0 or hi < 1:  # the leader's LeaderChange batch, then the record
                raise SystemExit("FAIL: quiet-%d: watermarks %s" % (part, (lo, hi)))
            print("quiet-%d: first watermark query after 4 s idle answered in %.3f s"
                  % (part, time.monotonic() - t0))
        time.sleep(12)  # past the read window (10 s): quiescent again
        c.assign([TopicPartition("quiet", part, 0) for part in range(3)])
        got, deadline = set(), time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            m = c.poll(0.1)
            if m is not None and m.error() is None:
                got.add(m.partition())
        if len(got) < 3:
            raise SystemExit("FAIL: quiet: fetched %s of 3 partitions within 10 s" % sorted(got))
    finally:
        c.close()
    print("ok: first reads of quiescent partitions answered")


def isr_follows_lag(nodes):
    """The ISR is the leader's view of who keeps up: a follower paused (SIGSTOP) under load
    leaves the ISR after replica.lag.time.max.ms (1 s) while still registered (its session
    is 3 s), and comes back once it has caught up after SIGCONT."""
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic("isr", 1, 3)], request_timeout=30).items():
        f.result()
    wait_for("isr led", lambda: -1 not in leaders(nodes[0], "isr").values(), 30, nodes)

    via = [nodes[0]]  # asked for Metadata: a node that is not paused

    def part():
        return admin(via[0]).list_topics(topic="isr", timeout=10).topics["isr"].partitions[0]

    p0 = part()
    _, ctl = cluster_view(nodes[0])
    # a follower that is not the controller leader (pausing that one would move the controller)
    fid = next((r for r in p0.replicas if r != p0.leader and r != ctl),
               next(r for r in p0.replicas if r != p0.leader))
    if sorted(p0.isrs) != sorted(p0.replicas):
        fail("isr: a fresh partition's ISR %s is not its replicas %s" % (p0.isrs, p0.replicas),
             nodes)
    follower = next(x for x in nodes if x.node_id == fid)
    others = [x for x in nodes if x is not follower]
    via[0] = others[0]
    stop = threading.Event()

    def load():
        pr = Producer({"bootstrap.servers": ",".join(x.bootstrap for x in others), "acks": "1",
                       "linger.ms": 5})
        i = 0
        while not stop.is_set():
            try:
                pr.produce("isr", value=b"v%d" % i)
                i += 1
            except BufferError:
                pass
            pr.poll(0.001)
        pr.flush(10)

    th = threading.Thread(target=load)
    th.start()
    try:
        time.sleep(0.3)
        os.kill(follower.pid, signal.SIGSTOP)
        seen = None
        deadline = time.monotonic() + 2.8  # before its session (3 s) ends
        while time.monotonic() < deadline and seen is None:
            p = part()
            brokers, _ = cluster_view(others[0])
            if fid not in p.isrs and fid in brokers:
                seen = (p.isrs, time.monotonic())
                leader = next(x for x in nodes if x.node_id == p.leader)
                if leader.http_port is not None:
                    # the gauge is the leader's shards' as of their last tick (200 ms)
                    gauge = "kafka_server_replicamanager_underreplicatedpartitions"
                    under, until = None, time.monotonic() + 0.6
                    while time.monotonic() < until and not (under or 0) >= 1:
                        under = metric(leader, gauge)
                        time.sleep(0.05)
                    seen = seen + (under,)
            time.sleep(0.05)
        os.kill(follower.pid, signal.SIGCONT)
        if seen is None:
            fail("isr: node %d paused for 2.8 s stayed in the ISR of isr-0 (or was fenced "
                 "first)" % fid, nodes)
        print("isr: node %d paused: ISR %s while it was still registered" % (fid, seen[0]))
        if len(seen) > 2 and not (seen[2] or 0) >= 1:
            fail("isr: the leader's /metrics showed %r under-replicated partitions while node "
                 "%d was out of the ISR" % (seen[2], fid), nodes)
        wait_for("node %d back in the ISR" % fid, lambda: fid in part().isrs, 30, nodes)
        if nodes[0].http_port is not None:
            gauge = "kafka_server_replicamanager_underreplicatedpartitions"
            wait_for("no partition under-replicated on any node",
                     lambda: all(metric(x, gauge) == 0 for x in nodes), 30, nodes)
            led = sum(metric(x, "kafka_server_replicamanager_leadercount") or 0 for x in nodes)
            total = sum(len(t.partitions) for t in
                        admin(nodes[0]).list_topics(timeout=10).topics.values())
            if led != total:
                fail("metrics: the nodes' leader counts add up to %d, the cluster has %d "
                     "partitions" % (led, total), nodes)
            # SWIM: every voter sees every node alive once the paused one is back
            alive = 'laminar_swim_members{state="alive"}'
            wait_for("every node's SWIM sees %d alive" % len(nodes),
                     lambda: all(metric(x, alive) == len(nodes) for x in nodes), 30, nodes)
            # the console's cluster view: every node registered and alive to SWIM
            with urllib.request.urlopen("http://%s:%d/api/cluster" %
                                        (nodes[0].host, nodes[0].http_port), timeout=10) as r:
                c = json.loads(r.read())
            got = sorted((x["node_id"], x["state"], x["registered"]) for x in c["brokers"])
            if not c["swim"] or got != [(x.node_id, "alive", True) for x in nodes]:
                fail("console: /api/cluster shows %r" % got, nodes)
            print("metrics: under-replicated %r on the leader while node %d was out of the "
                  "ISR, 0 everywhere after; leader counts add up to %d partitions; SWIM %d alive"
                  % (seen[2], fid, total, len(nodes)))
    finally:
        stop.set()
        th.join()


def sequence_ahead(nodes):
    """An idempotent batch whose sequence is ahead of what a replicated partition's leader
    holds of its producer (what a leader that was cut off sees once the producer went on with
    its successor) is answered NOT_LEADER_OR_FOLLOWER, so the client refreshes its metadata
    and retries in order; a client takes OUT_OF_ORDER_SEQUENCE_NUMBER there as fatal. A
    partition with one replica still answers OUT_OF_ORDER_SEQUENCE_NUMBER; on both a batch in
    sequence after the refusal is appended."""
    a = admin(nodes[0])
    fs = a.create_topics([NewTopic("seq3", 1, 3), NewTopic("seq1", 1, 1)], request_timeout=30)
    for _, f in fs.items():
        f.result()
    for topic, want in (("seq3", 6), ("seq1", 45)):
        wait_for("%s led" % topic, lambda: -1 not in leaders(nodes[0], topic).values(), 30,
                 nodes)
        lead = next(x for x in nodes if x.node_id == leaders(nodes[0], topic)[0])
        conn = kraw.Conn(lead.host, lead.port)
        try:
            err, pid, epoch = conn.init_producer_id()
            if err != 0:
                fail("%s: InitProducerId gave %d" % (topic, err), nodes)
            first = conn.produce(topic, 0, kraw.idempotent_batch(pid, epoch, 0, [b"s0", b"s1"]))
            gap = conn.produce(topic, 0, kraw.idempotent_batch(pid, epoch, 7, [b"gap"]))
            after = conn.produce(topic, 0, kraw.idempotent_batch(pid, epoch, 2, [b"s2"]))
            bump = conn.produce(topic, 0, kraw.idempotent_batch(pid, epoch + 1, 4, [b"e1"]))
        finally:
            conn.close()
        # (a replicated partition's log starts with its first leader's control batch)
        if first[0] != 0 or gap[0] != want or after != (0, first[1] + 2) or bump[0] != want:
            fail("%s: first %r, a sequence gap %r, the next in sequence %r, a new epoch not "
                 "starting at 0 %r (expected error %d for both refusals)"
                 % (topic, first, gap, after, bump, want), nodes)
    print("ok: a sequence ahead of the leader's log: NOT_LEADER_OR_FOLLOWER with three "
          "replicas, OUT_OF_ORDER_SEQUENCE_NUMBER with one")


def preferred_leaders(nodes, tool, rebalance):
    """Preferred leaders (each partition's first replica): a node killed and restarted comes
    back leading nothing, then the partitions it prefers to lead return to it, through Kafka's
    kafka-leader-election tool (ElectLeaders) when tool is set, through the automatic rebalance
    (auto.leader.rebalance.enable, leader.imbalance.check.interval.seconds=rebalance) when
    rebalance is set."""
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic("pref", 12, 3)], request_timeout=30).items():
        f.result()
    wait_for("pref led", lambda: -1 not in leaders(nodes[0], "pref").values(), 30, nodes)

    def parts():
        t = admin(nodes[0]).list_topics(topic="pref", timeout=10).topics["pref"]
        return sorted(t.partitions.values(), key=lambda p: p.id)

    _, ctl = cluster_view(nodes[0])
    voters = [x for x in nodes if not x.observer]
    victim = next(x for x in reversed(voters) if x.node_id != ctl)
    prefers = [p.id for p in parts() if p.replicas[0] == victim.node_id]
    victim.kill9()
    rest = [x for x in nodes if x is not victim]
    wait_for("node %d fenced" % victim.node_id,
             lambda: victim.node_id not in cluster_view(rest[0])[0], 20, rest)
    wait_for("pref led without node %d" % victim.node_id,
             lambda: -1 not in leaders(rest[0], "pref").values(), 30, rest)
    victim.start()
    # every partition it is a replica of lists it in its ISR at some point (under load a
    # follower may drop out of one ISR while it enters another)
    in_isr = set()
    mine = {p.id for p in parts() if victim.node_id in p.replicas}

    def back():
        in_isr.update(p.id for p in parts() if victim.node_id in p.isrs)
        return mine <= in_isr

    wait_for("node %d back in every ISR" % victim.node_id, back, 60, nodes)
    away = [p.id for p in parts() if p.leader != p.replicas[0]]
    if tool is not None and prefers and not away:  # (the rebalance may have moved them already)
        fail("pref: partitions %s preferring node %d kept it as leader across its death"
             % (prefers, victim.node_id), nodes)
    t0 = time.monotonic()
    if tool is not None:
        # Kafka refuses a preferred election while the preferred replica is out of the ISR
        # (PREFERRED_LEADER_NOT_AVAILABLE); with replica.lag.time.max.ms at 1 s a node that
        # has just restarted under ASan can drop out again, so the operator's tool is run
        # once the node is in sync for every partition it prefers, and run again when it
        # reports that refusal, as an operator would.
        out = ""
        for attempt in range(5):
            wait_for("node %d in the ISR of %s at once" % (victim.node_id, prefers),
                     lambda: all(victim.node_id in p.isrs for p in parts()
                                 if p.id in prefers), 60, nodes)
            cmd = java_cmd(tool, "org.apache.kafka.tools.LeaderElectionCommand",
                           "--bootstrap-server", nodes[-1].bootstrap, "--election-type",
                           "PREFERRED", "--all-topic-partitions")
            rc, out = run_cmd_rc(cmd, 120)
            if rc == 0:
                break
            if "PreferredLeaderNotAvailable" not in out or attempt == 4:
                print(out[-3000:])
                fail("kafka-leader-election exited %d" % rc, nodes)
            print("pref: kafka-leader-election refused (preferred replica out of sync), "
                  "run again")
            time.sleep(1)
        if away and "Successfully completed leader election" not in out:
            print(out[-3000:])
            fail("kafka-leader-election did not report an election", nodes)
        how = "kafka-leader-election"
    else:
        how = "the automatic rebalance (every %d s)" % rebalance
    def off():
        return ["pref-%d leader %d replicas %s isr %s" % (p.id, p.leader, p.replicas, p.isrs)
                for p in parts() if p.leader != p.replicas[0]]

    try:
        wait_for("every pref partition led by its preferred replica", lambda: not off(),
                 10 if tool is not None else 60, [])
    except SystemExit:
        fail("pref partitions not led by their preferred replica (node %d's Metadata): %s"
             % (nodes[0].node_id, off()), nodes)
    print("FIGURE preferred leaders: %d of 12 partitions led elsewhere after node %d's restart, "
          "all back to their preferred replica %.2f s after %s"
          % (len(away), victim.node_id, time.monotonic() - t0, how))


def wire_call(node, key, version, body):
    """One request in Kafka's classic (non-flexible) framing to node; the response Reader."""
    c = kafka_wire.Conn(node.host, node.port, "test-cluster")
    try:
        return c.call(key, version, body)
    finally:
        c.close()


def follower_catches_up_from_log_start(nodes):
    """A follower that was down while its leader moved the log start past everything it has
    (DeleteRecords) catches up from the new log start (Raft's log-start install: its old log
    is dropped), then leads: every record after the log start is there at its offset."""
    _, ctl = cluster_view(nodes[0])
    voters = [x for x in nodes if not x.observer]
    f = next(x for x in reversed(voters) if x.node_id != ctl)
    others = [x for x in nodes if x is not f]
    rest = [x.node_id for x in others[:2]]
    a = admin(others[0])
    nt = NewTopic("ls", 1, replica_assignment=[[f.node_id] + rest])
    for _, fu in a.create_topics([nt], request_timeout=30).items():
        fu.result()
    wait_for("ls led", lambda: -1 not in leaders(others[0], "ls").values(), 30, nodes)
    produce(others[0], "ls", ["a%05d" % i for i in range(500)], partition=0)
    f.kill9()
    wait_for("node %d fenced" % f.node_id,
             lambda: f.node_id not in cluster_view(others[0])[0], 20, others)
    wait_for("ls led without node %d" % f.node_id,
             lambda: -1 not in leaders(others[0], "ls").values(), 30, others)
    at = {}  # acknowledged offset -> value
    pr = Producer({"bootstrap.servers": others[0].bootstrap, "acks": "all",
                   "enable.idempotence": True, "linger.ms": 5})
    for i in range(1500):
        pr.produce("ls", value=b"b%05d" % i, partition=0,
                   on_delivery=lambda e, m: e is None and at.__setitem__(m.offset(),
                                                                          m.value().decode()))
    pr.flush(60)
    if len(at) != 1500:
        fail("ls: %d of 1500 acknowledged with a replica down" % len(at), others)
    lead = next(x for x in others if x.node_id == leaders(others[0], "ls")[0])
    body = (kafka_wire.arr([kafka_wire.sstr("ls") + kafka_wire.arr(
        [kafka_wire.s32(0) + kafka_wire.s64(1200)])]) + kafka_wire.s32(10000))
    r = wire_call(lead, 21, 0, body)  # DeleteRecords v0
    r.i32()
    r.i32()
    r.str()
    r.i32()
    part, low, err = r.i32(), r.i64(), r.i16()
    if err != 0 or low != 1200:
        fail("DeleteRecords to 1200 on the leader: error %d, low watermark %d" % (err, low),
             others)
    f.start()
    wait_for("node %d back in the ISR of ls" % f.node_id,
             lambda: f.node_id in admin(others[0]).list_topics(topic="ls", timeout=10)
             .topics["ls"].partitions[0].isrs, 60, nodes)
    # the returned follower is the preferred replica: elect it (ElectLeaders v1); until it has
    # the leader's log start it is not eligible (PREFERRED_LEADER_NOT_AVAILABLE, retried)
    def elect():
        body = kafka_wire.s8(0) + kafka_wire.arr([kafka_wire.sstr("ls") + kafka_wire.arr(
            [kafka_wire.s32(0)])]) + kafka_wire.s32(20000)
        r = wire_call(others[0], 43, 1, body)
        r.i32()
        top = r.i16()
        r.i32()
        r.str()
        r.i32()
        r.i32()
        err = r.i16()
        if top != 0 or err not in (0, 80):
            fail("ElectLeaders for ls-0: %d/%d" % (top, err), nodes)
        return err == 0

    wait_for("ElectLeaders makes node %d lead ls-0" % f.node_id, elect, 30, nodes)
    # the answering node's image shows it; node f's own within moments
    wait_for("ls-0 led by node %d in its own Metadata" % f.node_id,
             lambda: leaders(f, "ls")[0] == f.node_id, 30, nodes)
    c = Consumer({"bootstrap.servers": f.bootstrap, "group.id": "ls-read",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.assign([TopicPartition("ls", 0, 1200)])
    got = {}
    deadline = time.monotonic() + 60
    while len(got) < len([o for o in at if o >= 1200]) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got[m.offset()] = m.value().decode()
    lo, _ = c.get_watermark_offsets(TopicPartition("ls", 0), timeout=10)
    c.close()
    want = {o: v for o, v in at.items() if o >= 1200}
    if got != want or lo != 1200:
        diff = sorted(o for o in set(got) | set(want) if got.get(o) != want.get(o))
        fail("ls-0 on the caught-up follower: %d records (want %d), first %s, log start %d; "
             "first differences %s"
             % (len(got), len(want), min(got) if got else None, lo,
                [(o, got.get(o), want.get(o)) for o in diff[:5]]), nodes)
    print("ok: a follower down across DeleteRecords caught up from the log start (1200) and, "
          "elected, serves its %d acknowledged records from there, log start 1200" % len(want))


def replicated_transactions(nodes):
    """Transactions on a partition of three replicas: every replica's log tracks the open
    transactions and the aborted-transaction index, so after the leader is killed the new one
    answers the same last stable offset and aborted list to a read_committed Fetch, and takes
    the next marker."""
    topic = "txn3"
    ids = {x.node_id for x in nodes}
    wait_for("every node registered", lambda: cluster_view(nodes[0])[0] >= ids, 60, nodes)
    a = admin(nodes[0])
    # A node the step before paused can be listed in node 0's Metadata while the controller
    # still holds it fenced (its first heartbeat after SIGCONT not yet answered): CreateTopics
    # then answers INVALID_REPLICATION_FACTOR ("only 2 broker(s) are registered"), retriable.
    deadline = time.monotonic() + 30
    while True:
        f = a.create_topics([NewTopic(topic, 1, 3)], request_timeout=30)[topic]
        try:
            f.result()
            break
        except KafkaException as e:
            if e.args[0].code() != KafkaError.INVALID_REPLICATION_FACTOR or \
                    time.monotonic() > deadline:
                raise
            time.sleep(0.5)
    # the leader as one Metadata answer names it (a later answer may be between two leaders,
    # e.g. while the automatic rebalance hands the partition to its preferred replica)
    def named_leader():
        led = leaders(nodes[0], topic).get(0, -1)
        return led if led in ids else None

    led = wait_for("txn3 led", named_leader, 30, nodes)
    lead = next(x for x in nodes if x.node_id == led)
    conn = kraw.Conn(lead.host, lead.port)
    err, pa, _ = conn.init_producer_id()
    err2, pb, _ = conn.init_producer_id()
    ea, a0 = conn.produce(topic, 0, txn.txn_batch(pa, 0, 0, [b"a0", b"a1"]),
                          transactional_id="txn3-a")
    eb, b0 = conn.produce(topic, 0, txn.txn_batch(pb, 0, 0, [b"b0"]), transactional_id="txn3-b")
    abort = txn.marker(conn, pa, 0, False, 1, topic=topic)
    if (err, err2, ea, eb, abort) != (0, 0, 0, 0, 0):
        fail("setup: %r" % ((err, err2, ea, eb, abort),), nodes)
    before = txn.fetch(conn, a0, 1, topic=topic)
    conn.close()
    if before[0] != 0 or before[2] != b0 or before[3] != [(pa, a0)]:
        fail("leader: fetch %r (want LSO %d, aborted %r)" % (before[:4], b0, [(pa, a0)]), nodes)
    lead.kill9()
    rest = [x for x in nodes if x is not lead]

    seen = []  # the last observation, for the failure message

    def new_leader_view():
        led = leaders(rest[0], topic)[0]
        seen[:] = ["node %d names leader %d" % (rest[0].node_id, led)]
        if led in (-1, lead.node_id):
            return None
        n = next(x for x in rest if x.node_id == led)
        c = kraw.Conn(n.host, n.port)
        try:
            r = txn.fetch(c, a0, 1, topic=topic)
        finally:
            c.close()
        seen.append("its fetch %r" % (r[:4],))
        return (n, r) if r[0] == 0 else None
    try:
        n, after = wait_for("the new leader's read_committed fetch", new_leader_view, 60, [])
    except SystemExit:
        for x in rest:
            print("---- node %d log, lines naming %s ----" % (x.node_id, topic))
            print("\n".join([ln for ln in x.log_text().splitlines() if topic in ln][-30:]))
        fail("the new leader's read_committed fetch: %s" % "; ".join(seen), rest)
    if after[2] != b0 or after[3] != [(pa, a0)]:
        fail("new leader %d: LSO %d, aborted %r (the old leader said %d, %r)"
             % (n.node_id, after[2], after[3], b0, [(pa, a0)]), rest)
    conn = kraw.Conn(n.host, n.port)
    commit = txn.marker(conn, pb, 0, True, 1, topic=topic)
    end = txn.fetch(conn, a0, 1, topic=topic)
    conn.close()
    if commit != 0 or end[2] != end[1]:
        fail("commit on the new leader: %d, LSO %d HW %d" % (commit, end[2], end[1]), rest)
    lead.start()
    print("ok: transactions on 3 replicas: node %d killed, the new leader %d served LSO %d and "
          "the aborted list, then the commit" % (lead.node_id, n.node_id, b0))


def coordinator_failover(nodes):
    """Replicated __consumer_offsets (offsets.topic.replication.factor 3, Kafka's default):
    a group commits, the node leading its offsets partition (its coordinator) is killed, and
    the group resumes on the new coordinator from the offsets it committed."""
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic("gf", 6, 3)], request_timeout=30).items():
        f.result()
    wait_for("gf leaders", lambda: -1 not in leaders(nodes[0], "gf").values(), 30, nodes)
    values = ["g%05d" % i for i in range(3000)]
    produce(nodes[0], "gf", values)
    c = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": "gfail",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe(["gf"])
    first = set()
    deadline = time.monotonic() + 60
    while len(first) < 1000 and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            first.add(m.value().decode())
    c.commit(asynchronous=False)
    parts = [TopicPartition("gf", p) for p in range(6)]
    before = {tp.partition: tp.offset for tp in c.committed(parts, timeout=10)}
    c.close()
    md = admin(nodes[0]).list_topics(topic="__consumer_offsets", timeout=10)
    offsets = md.topics["__consumer_offsets"].partitions
    p = (java_hash("gfail") & 0x7FFFFFFF) % len(offsets)
    if len(offsets[p].replicas) < 3:
        fail("__consumer_offsets has %d replicas, not 3" % len(offsets[p].replicas), nodes)
    coord = next(x for x in nodes if x.node_id == offsets[p].leader)
    rest = [x for x in nodes if x is not coord]
    # a topic with a replica on the node about to die, min.insync.replicas = its 3 replicas
    misr = NewTopic("misr", 1, replica_assignment=[[coord.node_id] + [x.node_id for x in rest[:2]]],
                    config={"min.insync.replicas": "3"})
    for _, f in a.create_topics([misr], request_timeout=30).items():
        f.result()
    wait_for("misr led", lambda: -1 not in leaders(nodes[0], "misr").values(), 30, nodes)
    coord.kill9()
    # min.insync.replicas=3 with a replica's node down: acks=all is refused at once
    wait_for("node %d fenced" % coord.node_id,
             lambda: coord.node_id not in cluster_view(rest[0])[0], 20, rest)
    errs = []
    pr = Producer({"bootstrap.servers": rest[0].bootstrap, "acks": "all", "retries": 0,
                   "message.timeout.ms": 10000})
    pr.produce("misr", value=b"x", on_delivery=lambda e, m: errs.append(e))
    pr.flush(15)
    if not errs or errs[0] is None or errs[0].code() != KafkaError.NOT_ENOUGH_REPLICAS:
        fail("acks=all below min.insync.replicas answered %s" % errs, rest)
    c = Consumer({"bootstrap.servers": rest[0].bootstrap, "group.id": "gfail",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    after = wait_for("the group's committed offsets on the new coordinator",
                     lambda: {tp.partition: tp.offset
                              for tp in c.committed(parts, timeout=5)} == before, 60, rest)
    c.subscribe(["gf"])
    rest_read = set()
    deadline = time.monotonic() + 60
    while len(first | rest_read) < len(values) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and not m.error():
            rest_read.add(m.value().decode())
    c.close()
    if first | rest_read != set(values):
        fail("after the coordinator's loss the group read %d of %d"
             % (len(first | rest_read), len(values)), rest)
    coord.start()
    print("ok: coordinator (node %d, leader of __consumer_offsets-%d, 3 replicas) killed: the "
          "group's committed offsets (%d) survived and it read the rest; acks=all below "
          "min.insync.replicas: NOT_ENOUGH_REPLICAS"
          % (coord.node_id, p, sum(v for v in before.values() if v > 0)))
    return after


def offset_fetch_v1(conn, group, topic, partition):
    """OffsetFetch v1 on an open connection: (error_code, committed_offset) of one partition."""
    body = (kafka_wire.sstr(group) +
            kafka_wire.arr([kafka_wire.sstr(topic) + kafka_wire.arr([kafka_wire.s32(partition)])]))
    r = conn.call(9, 1, body)
    got = {}
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            part, off = r.i32(), r.i64()
            r.str()
            got[part] = (r.i16(), off)
    return got[partition]


def paused_coordinator(nodes):
    """A coordinator paused (SIGSTOP) while another node takes its offsets partition over and
    the group commits there: woken, with an OffsetFetch already waiting in its socket, it
    answers NOT_COORDINATOR or the newer offset, never the one it had (it lost its read lease
    while paused)."""
    group, topic = "gpause", "gp"
    ids = {x.node_id for x in nodes}
    wait_for("every node registered", lambda: cluster_view(nodes[0], 1)[0] == ids, 30, nodes)
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic(topic, 1, 3)], request_timeout=30).items():
        f.result()
    wait_for("gp led", lambda: -1 not in leaders(nodes[0], topic).values(), 30, nodes)
    md = admin(nodes[0]).list_topics(topic="__consumer_offsets", timeout=10)
    n_off = len(md.topics["__consumer_offsets"].partitions)
    p = (java_hash(group) & 0x7FFFFFFF) % n_off

    def offsets_leader(node):
        m = admin(node).list_topics(topic="__consumer_offsets", timeout=10)
        return m.topics["__consumer_offsets"].partitions[p].leader

    def find_coordinator(node):
        """The group's coordinator as node answers FindCoordinator v1 (what clients use)."""
        r = wire_call(node, 10, 1, kafka_wire.sstr(group) + kafka_wire.s8(0))
        r.i32()
        err = r.i16()
        r.str()
        nid = r.i32()
        return nid if err == 0 else -1

    wait_for("a coordinator for %s" % group, lambda: find_coordinator(nodes[0]) > 0, 30, nodes)
    coord = next(x for x in nodes if x.node_id == find_coordinator(nodes[0]))
    rest = [x for x in nodes if x is not coord]

    def commit(node, off):
        c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": group,
                      "enable.auto.commit": False})
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    c.commit(offsets=[TopicPartition(topic, 0, off)], asynchronous=False)
                    return
                except Exception as e:  # the coordinator moving: retried
                    if time.monotonic() > deadline:
                        fail("commit of %d: %s" % (off, e), nodes)
                    time.sleep(0.3)
        finally:
            c.close()

    commit(coord, 5)
    old = kafka_wire.Conn(coord.host, coord.port, "test-cluster")
    seen = set()
    deadline = time.monotonic() + 30
    while True:
        got = offset_fetch_v1(old, group, topic, 0)
        if got == (0, 5):
            break
        seen.add(got)
        if time.monotonic() > deadline:
            fail("node %d never answered OffsetFetch with offset 5: (error, offset) %s"
                 % (coord.node_id, sorted(seen)), nodes)
        time.sleep(0.1)
    os.kill(coord.pid, signal.SIGSTOP)
    try:
        wait_for("__consumer_offsets-%d led elsewhere" % p,
                 lambda: offsets_leader(rest[0]) not in (coord.node_id, -1), 30, rest)
        commit(rest[0], 9)
        old.send(9, 1, kafka_wire.sstr(group) + kafka_wire.arr(
            [kafka_wire.sstr(topic) + kafka_wire.arr([kafka_wire.s32(0)])]))
    finally:
        os.kill(coord.pid, signal.SIGCONT)
    r = old.response()
    old.close()
    r.i32()
    r.str()
    r.i32()
    part, off = r.i32(), r.i64()
    r.str()
    err = r.i16()
    if err == 0 and off != 9:
        fail("the woken coordinator (node %d) answered offset %d, not 9 (stale)"
             % (coord.node_id, off), nodes)
    if err not in (0, 16):  # NOT_COORDINATOR
        fail("the woken coordinator answered error %d" % err, nodes)
    # the group goes on from the newer commit through any node
    c = Consumer({"bootstrap.servers": nodes[0].bootstrap, "group.id": group,
                  "enable.auto.commit": False})
    wait_for("committed offset 9 seen through node %d" % nodes[0].node_id,
             lambda: [tp.offset for tp in c.committed([TopicPartition(topic, 0)], timeout=5)]
             == [9], 30, nodes)
    c.close()
    print("ok: coordinator (node %d) paused while node %d took __consumer_offsets-%d over and "
          "the group committed there: woken, it answered %s"
          % (coord.node_id, offsets_leader(rest[0]), p,
             "NOT_COORDINATOR" if err else "the newer offset"))


def new_producer_id(node, timeout=30):
    """A new producer id from node (InitProducerId v0, no transactional id), retried while the
    node has no block of ids from the controller yet (COORDINATOR_LOAD_IN_PROGRESS)."""
    end = time.monotonic() + timeout
    while True:
        try:
            r = wire_call(node, 22, 0, kafka_wire.s16(-1) + kafka_wire.s32(60000))
        except (OSError, EOFError):  # not serving clients yet (catching up with the metadata)
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
            continue
        r.i32()  # throttle_time_ms
        err, pid = r.i16(), r.i64()
        if err == 0:
            return pid
        if err != 14 or time.monotonic() > end:  # COORDINATOR_LOAD_IN_PROGRESS
            fail("InitProducerId on node %d: error %d" % (node.node_id, err), [node])
        time.sleep(0.2)


def producer_ids_after_disk_loss(nodes):
    """Producer ids are granted by the controller, so no two nodes hand out the same one and a
    node that lost its data directory does not hand out again the ids it handed out before
    (with node-local counters it started over, and a new producer's first batch matched an
    old producer's state: answered as a duplicate and never written)."""
    victim = next(x for x in reversed(nodes) if x.observer)  # not a controller voter
    handed = [new_producer_id(x) for x in nodes for _ in range(3)]
    if len(set(handed)) != len(handed):
        fail("producer ids handed out twice: %s" % sorted(handed), nodes)
    victim.kill9()
    shutil.rmtree(victim.data_dir)
    os.makedirs(victim.data_dir)
    victim.start()
    wait_for("node %d back with an empty disk" % victim.node_id,
             lambda: victim.node_id in cluster_view(nodes[0])[0], 30, nodes)
    again = [new_producer_id(victim) for _ in range(3)]
    # the controller grants blocks in increasing order: every id of a block granted after the
    # restart is above every id handed out before it (by any node, in any earlier step too)
    if min(again) <= max(handed) or len(set(again)) != 3:
        fail("after losing its disk node %d handed out %s: not above the ids handed out "
             "before (%s)" % (victim.node_id, again, sorted(handed)), nodes)
    print("ok: producer ids unique over %d nodes and after node %d lost its disk (%s, then %s)"
          % (len(nodes), victim.node_id, handed[:2], again[:2]))


def wrong_secret(nodes, voters, port, cport, io):
    """A node with another laminar.cluster.secret is refused: it never registers, and the
    voters log why."""
    intruder = Node(len(nodes) + 1, voters, port, cport, io, observer=True, secret="wrong")
    try:
        intruder.start()
        time.sleep(3)
        ids, _ = cluster_view(nodes[0])
        if intruder.node_id in ids:
            fail("a node with the wrong cluster secret joined", nodes + [intruder])
        if not any("laminar.cluster.secret" in x.log_text() for x in nodes):
            fail("no voter logged the refused requests", nodes)
        print("ok: a node with the wrong laminar.cluster.secret is refused")
    finally:
        intruder.cleanup()


def run(nodes, n, clients):
    t0 = time.monotonic()
    for x in nodes:
        x.start()

    ids = {x.node_id for x in nodes}
    # 1. The cluster forms: every node shows every node and one controller.
    for x in nodes:
        wait_for("node %d sees %d brokers" % (x.node_id, n),
                 lambda x=x: cluster_view(x, 1)[0] == ids and cluster_view(x, 1)[1] in ids, 30,
                 nodes)
    formed = time.monotonic() - t0
    print("FIGURE cluster of %d nodes formed (start to every node listing all) in %.2f s"
          % (n, formed))
    kc = run_cmd(["kcat", "-b", nodes[-1].bootstrap, "-L"], "kcat -L", 30, nodes)
    listed = {int(line.split()[1]) for line in kc.splitlines()
              if line.strip().startswith("broker ") and " at " in line}
    if listed != ids or "(controller)" not in kc:
        print(kc)
        fail("kcat -L lists %s" % sorted(listed), nodes)
    a0 = admin(nodes[0])
    if hasattr(a0, "describe_cluster"):  # confluent-kafka >= 2.0
        d = a0.describe_cluster(request_timeout=10).result()
        if {b.id for b in d.nodes} != ids or d.controller.id not in ids:
            fail("DescribeCluster: %s controller %s" % (d.nodes, d.controller), nodes)

    # 2. A 48-partition topic created through another node spreads over all of them.
    create(nodes[1 % n], "spread", 48)
    # CreateTopics answers once the topic is committed; in a cluster each node opens its
    # partitions in bounded steps after that, so a leader may be named a moment later (clients
    # retry LEADER_NOT_AVAILABLE meanwhile, as with Kafka)
    lead = wait_for("every spread partition led",
                    lambda: (lambda ld: ld if -1 not in ld.values() else None)(
                        leaders(nodes[0], "spread")), 30, nodes)
    per = Counter(lead.values())
    if set(per) != ids or max(per.values()) - min(per.values()) > 1:
        fail("48 partitions not spread evenly: %s" % per, nodes)
    for x in nodes:  # each node's image catches up with the committed log within moments
        wait_for("node %d agreeing on leaders" % x.node_id,
                 lambda x=x: leaders(x, "spread") == lead, 10, nodes)
    lat1 = [create(nodes[i % n], "one-%d" % i, 1) for i in range(5)]
    lat1000 = create(nodes[-1], "thousand", 1000)
    print("FIGURE CreateTopics (forwarded to the controller when needed): 1 partition median "
          "%.1f ms; 1,000 partitions %.1f ms" % (sorted(lat1)[2] * 1000, lat1000 * 1000))

    # 3. Produce through node 1, consume with a group through the last node.
    values = ["r%05d" % i for i in range(6000)]
    acked = produce(nodes[0], "spread", values)
    if len(acked) != len(values):
        fail("acked %d of %d" % (len(acked), len(values)), nodes)
    got, committed = consume_group(nodes[-1], "spread", "g1", len(values))
    if set(got) != set(values):
        fail("group consumed %d of %d" % (len(got), len(values)), nodes)
    if sum(tp.offset for tp in committed) != len(values):
        fail("committed offsets sum %d" % sum(tp.offset for tp in committed), nodes)
    if clients:
        other_clients(nodes, n)
    rss = [x.rss_kib() for x in nodes]
    print("FIGURE memory per node (RSS, ASan build when run by make test): %s MiB"
          % ", ".join("%.1f" % (r / 1024) for r in rss))

    # 4. A node that is not the controller leader dies: its partitions lose their leader, the
    # others keep serving.
    _, ctl = cluster_view(nodes[0])
    victim = next(x for x in reversed(nodes) if x.node_id != ctl)  # an observer if any
    victim.kill9()
    others = [x for x in nodes if x is not victim]
    wait_for("node %d fenced" % victim.node_id,
             lambda: victim.node_id not in cluster_view(others[0])[0], 20, others)
    lead = leaders(others[0], "spread")
    offline = [p for p, l in lead.items() if l == -1]
    if len(offline) != per[victim.node_id]:
        fail("offline partitions %d, expected %d" % (len(offline), per[victim.node_id]), others)
    live_p = next(p for p, l in lead.items() if l != -1)
    more = produce(others[0], "spread", ["alive%03d" % i for i in range(100)], partition=live_p)
    if len(more) != 100:
        fail("produce to a live partition with a node down", others)
    # it comes back with its data
    victim.start()
    wait_for("node %d back" % victim.node_id,
             lambda: victim.node_id in cluster_view(others[0])[0], 20, nodes)
    wait_for("partitions of node %d led again" % victim.node_id,
             lambda: -1 not in leaders(others[0], "spread").values(), 20, nodes)

    # 5. The controller leader dies: another is elected and admin requests keep working.
    _, ctl = cluster_view(nodes[0])
    leader = next(x for x in nodes if x.node_id == ctl)
    rest = [x for x in nodes if x is not leader]
    t_kill = time.monotonic()
    leader.kill9()

    def new_leader():
        _, c = cluster_view(rest[0])
        if c == ctl or c not in ids:
            return False
        create(rest[0], "after-failover-%d" % int(time.monotonic() * 1000), 3)
        return c

    newc = wait_for("a new controller leader", new_leader, 30, rest)
    print("FIGURE controller fail-over (kill -9 of the leader to a CreateTopics answered by "
          "the new one, node %d -> %d): %.2f s (election timeout 1-2 s)"
          % (ctl, newc, time.monotonic() - t_kill))
    leader.start()
    wait_for("every node back", lambda: cluster_view(rest[0])[0] == ids, 30, nodes)
    wait_for("every partition led", lambda: -1 not in leaders(nodes[0], "spread").values(), 30,
             nodes)

    # 6. A node stopped with SIGTERM first hands the leaderships it holds to other replicas
    # (controlled shutdown), then leaves at once (fenced before its session times out).
    last = nodes[-1]
    # (the controller leader too: it hands that leadership over as well)
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic("handoff", 6, 3)], request_timeout=30).items():
        try:
            f.result()
        except Exception as e:  # noqa: BLE001
            fail("creating an RF=3 topic: %s" % e, nodes)
    wait_for("every handoff partition led",
             lambda: -1 not in leaders(nodes[0], "handoff").values(), 30, nodes)
    held = [p for p, l in leaders(nodes[0], "handoff").items() if l == last.node_id]
    t_stop = time.monotonic()
    last.stop()
    if "controlled shutdown: leaderships moved" not in last.log_text():
        fail("node %d stopped without handing over its leaderships" % last.node_id, nodes)
    wait_for("partitions %s of node %d led elsewhere" % (held, last.node_id),
             lambda: all(leaders(nodes[0], "handoff")[p] not in (-1, last.node_id)
                         for p in held), 10, nodes)
    wait_for("node %d fenced after SIGTERM" % last.node_id,
             lambda: last.node_id not in cluster_view(nodes[0])[0], 20, nodes)
    took = time.monotonic() - t_stop
    m = re.search(r"leaderships moved in (\d+) ms", last.log_text())
    handoff = int(m.group(1)) / 1000 if m else 0.0
    print("FIGURE graceful leave (SIGTERM to the node's absence from Metadata): %.2f s, of which "
          "%.2f s handing over its leaderships (broker.session.timeout.ms=3000)"
          % (took, handoff))
    # after the handoff its leaving heartbeat fences it at once, not its session's end
    if took - handoff > 2.5:
        fail("node %d left %.2f s after its handoff: not at once" % (last.node_id,
                                                                     took - handoff), nodes)
    last.start()
    wait_for("node %d back" % last.node_id,
             lambda: last.node_id in cluster_view(nodes[0])[0], 20, nodes)

    # 7. Nothing acknowledged was lost: a fresh group reads every record.
    expect = set(values) | set(more)
    got, _ = consume_group(nodes[n // 2], "spread", "g-final", len(expect))
    if set(got) != expect:
        fail("after the failures a group read %d of %d acknowledged records"
             % (len(set(got) & expect), len(expect)), nodes)
    for x in nodes:
        if "ERROR" in x.log_text() or "AddressSanitizer" in x.log_text():
            fail("node %d logged an error" % x.node_id, [x])
    print("ok: %d-node cluster: formed, spread, groups, node loss and return, controller "
          "fail-over, %d acknowledged records all read back" % (n, len(expect)))



if __name__ == "__main__":
    main()
