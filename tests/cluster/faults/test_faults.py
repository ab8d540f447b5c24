"""A fault campaign against a real laminar cluster: N nodes on 127.0.0.x; idempotent acks=all
producers and topic creations run while a seeded schedule kills (kill -9) and restarts nodes, pauses them (SIGSTOP/SIGCONT)
and stops them gracefully, the controller leader included. Afterwards the checkers:

- every record acknowledged is read back at its acknowledged partition and offset, with its
  value (nothing acknowledged lost, no offset holding another record);
- no value is read twice (the idempotent producer's retries did not duplicate);
- every topic whose creation was acknowledged exists, on every node, with the same leaders;
- no node logged an ERROR or a sanitizer report.

    test_faults.py [--nodes 3] [--seconds 40] [--seed S] [--io uring]

The seed is printed; the same seed replays the same schedule (timings of the processes
themselves are not deterministic).
"""

import argparse
import os
import random
import signal
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402
from test_cluster import Node, admin, cluster_view, fail, leaders, wait_for  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402


class Load:
    """Producers and topic creations running in threads until stopped."""

    def __init__(self, nodes, topics):
        self.nodes = nodes
        self.topics = topics
        self.acked = {}  # value -> (topic, partition, offset)
        self.created = []  # topics whose CreateTopics was acknowledged
        self.failed_creates = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    def producer(self, idx):
        bs = ",".join(x.bootstrap for x in self.nodes)
        p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 2, "message.timeout.ms": 20000,
                      "topic.metadata.refresh.interval.ms": 1000})

        def cb(err, msg):
            if err is None:
                with self.lock:
                    self.acked[msg.value().decode()] = (msg.topic(), msg.partition(),
                                                        msg.offset())

        i = 0
        while not self.stop.is_set():
            topic = self.topics[i % len(self.topics)]
            try:
                p.produce(topic, value="p%d-%07d" % (idx, i), on_delivery=cb)
                i += 1
            except BufferError:
                p.poll(0.05)
            p.poll(0)
            if i % 50 == 0:
                time.sleep(0.01)  # a few thousand records per second: faults, not load
        p.flush(30)

    def creator(self):
        n = 0
        while not self.stop.is_set():
            node = random.choice(self.nodes)
            name = "created-%03d" % n
            n += 1
            try:
                a = admin(node)
                for _, f in a.create_topics([NewTopic(name, 3, 1)], request_timeout=10).items():
                    f.result(timeout=15)
                with self.lock:
                    self.created.append(name)
            except Exception:
                self.failed_creates += 1  # not acknowledged: it may or may not exist
            time.sleep(0.3)

    def start(self, producers):
        for i in range(producers):
            self.threads.append(threading.Thread(target=self.producer, args=(i,), daemon=True))
        self.threads.append(threading.Thread(target=self.creator, daemon=True))
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def campaign(nodes, rng, seconds, log):
    """Runs faults until `seconds` have passed; leaves every node running."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(1.0, 3.0))
        live = [x for x in nodes if x.alive()]
        try:
            _, ctl = cluster_view(live[0], timeout=3)
        except Exception:
            ctl = -1
        kind = rng.choice(["kill", "kill-controller", "pause", "stop"])
        target = next((x for x in live if x.node_id == ctl), None) \
            if kind == "kill-controller" else rng.choice(live)
        if target is None:
            target = rng.choice(live)
        t = "%.1f" % (seconds - (end - time.monotonic()))
        if kind in ("kill", "kill-controller"):
            log.append("%ss kill -9 node %d%s" % (t, target.node_id,
                                                 " (controller)" if target.node_id == ctl else ""))
            target.kill9()
            time.sleep(rng.uniform(0.5, 3.0))
            target.start()
        elif kind == "pause":
            d = rng.uniform(0.5, 4.0)
            log.append("%ss SIGSTOP node %d for %.1f s" % (t, target.node_id, d))
            os.kill(target.pid, signal.SIGSTOP)
            time.sleep(d)
            os.kill(target.pid, signal.SIGCONT)
        else:
            log.append("%ss SIGTERM node %d, then start" % (t, target.node_id))
            target.stop()
            time.sleep(rng.uniform(0.2, 2.0))
            target.start()


def read_all(node, topics):
    """Every record of topics, read directly by partition: value -> [(topic, partition, off)]."""
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "checker-%d" % time.time(),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = admin(node).list_topics(timeout=10)
    tps, ends = [], {}
    for t in topics:
        for p in md.topics[t].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            ends[(t, p)] = hi
            if hi > lo:
                tps.append(TopicPartition(t, p, lo))
    c.assign(tps)
    seen = {}
    left = {(tp.topic, tp.partition) for tp in tps}
    deadline = time.monotonic() + 60
    while left and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        seen.setdefault(m.value().decode(), []).append((m.topic(), m.partition(), m.offset()))
        if m.offset() + 1 >= ends[(m.topic(), m.partition())]:
            left.discard((m.topic(), m.partition()))
    c.close()
    return seen, left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rf", type=int, default=1,
                    help="replication factor of the loaded topics (3: a Raft group each)")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print("fault campaign: seed %d, %d nodes, rf %d, %.0f s (replay: --seed %d)"
          % (seed, args.nodes, args.rf, args.seconds, seed))
    rng = random.Random(seed)
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, args.nodes + 1))
    nodes = [Node(i, voters, port, cport, args.io) for i in range(1, args.nodes + 1)]
    try:
        for x in nodes:
            x.start()
        ids = {x.node_id for x in nodes}
        wait_for("cluster formed", lambda: cluster_view(nodes[0])[0] == ids, 30, nodes)
        topics = ["load-a", "load-b"]
        a = admin(nodes[0])
        for _, f in a.create_topics([NewTopic(t, 6, args.rf) for t in topics]).items():
            f.result()
        wait_for("leaders elected",
                 lambda: all(-1 not in leaders(nodes[0], t).values() for t in topics), 30, nodes)
        load = Load(nodes, topics)
        load.start(producers=2)
        log = []
        campaign(nodes, rng, args.seconds, log)
        for line in log:
            print("  fault:", line)
        wait_for("every node back", lambda: cluster_view(nodes[0])[0] == ids, 60, nodes)
        load.finish()
        print("load: %d records acknowledged, %d topics created (%d creations not "
              "acknowledged)" % (len(load.acked), len(load.created), load.failed_creates))
        if len(load.acked) == 0:
            fail("nothing was acknowledged", nodes)
        # checkers
        wait_for("every partition led",
                 lambda: all(-1 not in leaders(nodes[0], t).values() for t in topics), 60, nodes)
        seen, unfinished = read_all(nodes[-1], topics)
        if unfinished:
            fail("could not read to the end of %s" % sorted(unfinished), nodes)
        lost = [v for v in load.acked if v not in seen]
        moved = [v for v, at in load.acked.items() if v in seen and at not in seen[v]]
        dups = [v for v, at in seen.items() if len(at) > 1]
        if lost or moved or dups:
            fail("%d acknowledged records lost (e.g. %s), %d not at their acknowledged offset "
                 "(e.g. %s), %d read twice (e.g. %s)"
                 % (len(lost), lost[:3], len(moved), [(v, load.acked[v], seen[v])
                                                      for v in moved[:3]],
                    len(dups), [(v, seen[v]) for v in dups[:3]]), nodes)
        for x in nodes:
            have = set(admin(x).list_topics(timeout=10).topics)
            missing = [t for t in load.created if t not in have]
            if missing:
                fail("node %d lacks acknowledged topics %s" % (x.node_id, missing[:5]), nodes)
        ref = {t: leaders(nodes[0], t) for t in load.created[:20]}
        for x in nodes[1:]:
            for t, lead in ref.items():
                wait_for("node %d agreeing on %s" % (x.node_id, t),
                         lambda x=x, t=t, lead=lead: leaders(x, t) == lead, 10, nodes)
        for x in nodes:
            text = x.log_text()
            if " ERROR " in text or "AddressSanitizer" in text or "runtime error" in text:
                bad = [l for l in text.splitlines()
                       if " ERROR " in l or "Sanitizer" in l or "runtime error" in l]
                fail("node %d logged: %s" % (x.node_id, bad[:5]), [x])
        print("ok: %d faults; %d acknowledged records all at their offsets, none twice; "
              "%d acknowledged topics on every node, leaders agreed"
              % (len(log), len(load.acked), len(load.created)))
    finally:
        for x in nodes:
            if x.alive():
                try:
                    os.kill(x.pid, signal.SIGCONT)
                except OSError:
                    pass
            x.cleanup()


if __name__ == "__main__":
    main()
