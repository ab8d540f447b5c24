"""KIP-848 consumer groups on a 3-node cluster. The Java client's ConsumerProtocolSuite (a
group scaling 1 -> 3 -> 1, Admin describe, kafka-consumer-groups, a classic group next to a
consumer group) runs against the cluster, its groups coordinated by the nodes leading their
__consumer_offsets partitions. Then a member of another group commits through its
coordinator, that node is killed, and the new leader of the group's partition answers: the
member goes on there with its member id, epoch and partitions (the group's records are in the
replicated __consumer_offsets, loaded by the new leader: no UNKNOWN_MEMBER_ID, no rejoin) and
the committed offsets survived.

    test_cluster_kip848.py --io uring
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "groups"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "kip848"))
from laminar_harness import free_port  # noqa: E402
import test_cluster as tc  # noqa: E402
import kraw  # noqa: E402
import test_kip848_wire as w  # noqa: E402
from compat_util import java_cmd  # noqa: E402

import subprocess  # noqa: E402

JAVA = os.path.join(HERE, "..", "..", "compat", "java")
GROUP = "kc-fail"
TOPIC = "k848"  # created by the Java suite, 6 partitions


def coordinator_of(nodes, group):
    """The node leading the group's __consumer_offsets partition, as a live node sees it."""
    md = tc.admin(nodes[0]).list_topics(topic="__consumer_offsets", timeout=10)
    ps = md.topics["__consumer_offsets"].partitions
    h = tc.java_hash(group)
    h = h - (1 << 32) if h >= 1 << 31 else h
    # Kafka's Utils.abs(groupId.hashCode()) % partitions
    leader = ps[(0 if h == -(1 << 31) else abs(h)) % len(ps)].leader
    return next((x for x in nodes if x.node_id == leader), None)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(JAVA, "classes", "ConsumerProtocolSuite.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
    nodes = [tc.Node(i, voters, port, cport, args.io) for i in range(1, 4)]
    for x in nodes:
        x.config["group.consumer.heartbeat.interval.ms"] = 1000
    try:
        for x in nodes:
            x.start()
        ids = {1, 2, 3}
        for x in nodes:
            tc.wait_for("node %d sees 3 brokers" % x.node_id,
                        lambda x=x: tc.cluster_view(x, 1)[0] == ids, 30, nodes)
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes"),
                       "ConsumerProtocolSuite", nodes[0].bootstrap)
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=150)
        out = p.stdout.decode("utf-8", "replace")
        print(out)
        if p.returncode != 0 or "ALL OK" not in out:
            tc.fail("the Java suite against the cluster", nodes)
        print("java suite on the cluster: ok (%.1f s)" % (time.monotonic() - t0))

        coord = tc.wait_for("a leader for %s's partition" % GROUP,
                            lambda: coordinator_of(nodes, GROUP), 30, nodes)
        c = kraw.Conn(coord.host, coord.port)
        r = tc.wait_for("the coordinator takes the join",
                        lambda: (lambda r: r if r["error"] == 0 else None)(
                            w.heartbeat(c, GROUP, "kc-m", 0, topics=[TOPIC], owned=[])),
                        30, nodes)
        parts = sorted(r["assignment"][0][1])
        tid = r["assignment"][0][0]
        if r["epoch"] != 1 or parts != list(range(6)):
            tc.fail("join on the coordinator: %r" % r, nodes)
        e = w.offset_commit(c, 9, GROUP, 1, "kc-m", TOPIC, [(q, 3) for q in parts])
        if e != [0] * 6:
            tc.fail("commit through the coordinator: %r" % e, nodes)
        other = next(x for x in nodes if x is not coord)
        oc = kraw.Conn(other.host, other.port)
        r = w.heartbeat(oc, GROUP, "kc-m", 1, owned=[], rebalance_ms=-1)
        if r["error"] != 16:
            tc.fail("a node that is not the coordinator: %r" % r, nodes)
        oc.close()
        c.close()
        print("coordinator of %s: node %d; killing it" % (GROUP, coord.node_id))
        coord.kill9()
        rest = [x for x in nodes if x is not coord]
        tc.wait_for("node %d fenced" % coord.node_id,
                    lambda: coord.node_id not in tc.cluster_view(rest[0])[0], 30, rest)

        seen = []

        def new_answer():
            n = coordinator_of(rest, GROUP)
            if n is None:
                seen.append("no leader")
                return None
            cc = kraw.Conn(n.host, n.port)
            try:
                r = w.heartbeat(cc, GROUP, "kc-m", 1, owned=[(tid, parts)], rebalance_ms=-1)
            finally:
                cc.close()
            seen.append((n.node_id, r["error"]))
            # NOT_COORDINATOR / COORDINATOR_LOAD_IN_PROGRESS while leadership settles
            return (n, r) if r["error"] not in (14, 15, 16) else None
        found = None
        deadline = time.monotonic() + 40
        while found is None and time.monotonic() < deadline:
            try:
                found = new_answer()
            except Exception as e:  # a node not answering yet
                seen.append(repr(e))
            time.sleep(0.2)
        if found is None:
            tc.fail("the new coordinator answers: %r" % (seen[-5:],), rest)
        n, r = found
        if (r["error"] != 0 or r["epoch"] != 1 or
                (r["assignment"] is not None and sorted(r["assignment"][0][1]) != parts)):
            tc.fail("the member on the new coordinator: %r (want epoch 1, its partitions)" % r,
                    rest)
        c = kraw.Conn(n.host, n.port)
        d = w.cg_describe(c, [GROUP])[0]
        m = {x["id"]: x for x in d["members"]}
        if (d["error"] != 0 or d["epoch"] != 1 or list(m) != ["kc-m"] or
                m["kc-m"]["epoch"] != 1 or m["kc-m"]["assignment"] != [(TOPIC, parts)]):
            tc.fail("ConsumerGroupDescribe on the new coordinator: %r" % d, rest)
        err, offs = w.offset_fetch(c, GROUP, "kc-m", 1, TOPIC, parts)
        if err != 0 or any(offs[q] != 3 for q in parts):
            tc.fail("committed offsets after the failover: %r" % ((err, offs),), rest)
        c.close()
        print("failover to node %d: the member kept its id, epoch and partitions; offsets kept"
              % n.node_id)
        for x in rest:
            status = x.stop()
            log = x.log_text()
            if status != 0 or "runtime error" in log or "Sanitizer" in log:
                tc.fail("node %d exit %s or sanitizer report" % (x.node_id, status), [x])
    finally:
        for x in nodes:
            x.cleanup()
    print("cluster KIP-848: passed in %.1f s" % (time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
