"""Client quotas in a 3-node laminar cluster (127.0.0.1..3, combined mode): quotas are
controller metadata, so producer_byte_rate set on client id "slow" through node 1 (Kafka's
ConfigCommand, forwarded to the controller) is described through node 2 and throttles a
confluent-kafka producer on every node that leads one of its partitions, survives node 3's
kill -9 and its rebuild from the metadata log or a snapshot (laminar.metadata.snapshot.records
is small), and its removal through node 2 ends the throttling.

    test_cluster_quota.py --io uring|epoll
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402
import test_cluster as tc  # noqa: E402

JAVA_LIB = os.path.join(HERE, "..", "..", "compat", "java", "lib")
QUOTA = 50000


def configs(node, *args):
    cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
           "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn", "-cp", os.path.join(JAVA_LIB, "*"),
           "kafka.admin.ConfigCommand", "--bootstrap-server", node.bootstrap] + list(args)
    p = subprocess.run(cmd, capture_output=True, timeout=120)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    lines = [ln for ln in out.splitlines() if " INFO " not in ln and not ln.startswith("\t")]
    print("$ kafka-configs %s (node %d) -> %d\n%s" % (" ".join(args), node.node_id, p.returncode,
                                                      "\n".join(lines)[-1200:]))
    return p.returncode, out


def throttles(node, topic, seconds=3.0):
    """Produces 1000-byte records flat out as client id "slow" through node for `seconds`;
    returns the throttle events librdkafka reported, per broker id."""
    from confluent_kafka import Producer
    seen = {}
    p = Producer({"bootstrap.servers": node.bootstrap, "client.id": "slow", "linger.ms": 5,
                  "batch.size": 16384, "queue.buffering.max.messages": 2000,
                  "throttle_cb": lambda ev: seen.setdefault(ev.broker_id, []).append(
                      ev.throttle_time)})
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        try:
            p.produce(topic, value=b"x" * 1000)
        except BufferError:
            p.poll(0.01)
            continue
        p.poll(0)
    p.poll(0.5)
    p.purge()
    p.flush(10)
    got = {b: len([t for t in v if t > 0]) for b, v in seen.items()}
    print("throttle events through node %d by broker: %r" % (node.node_id, got))
    return {b: n for b, n in got.items() if n > 0}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(JAVA_LIB, ".complete")):
        print("FAIL: tests/compat/java/lib missing: run tests/compat/java/prepare first")
        return 1
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in (1, 2, 3))
    nodes = [tc.Node(i, voters, port, cport, args.io, snapshot_records=8) for i in (1, 2, 3)]
    n1, n2, n3 = nodes
    try:
        for x in nodes:
            x.start(timeout_s=60)
        tc.wait_for("the cluster forms", lambda: len(tc.cluster_view(n1)[0]) == 3, 60, nodes)
        tc.create(n1, "spread", 3)
        tc.wait_for("every partition has a leader",
                    lambda: -1 not in tc.leaders(n3, "spread").values(), 60, nodes)
        led = set(tc.leaders(n3, "spread").values())
        print("ok: 'spread' is led by nodes %s" % sorted(led))
        if throttles(n3, "spread"):
            tc.fail("'slow' throttled before any quota was set", nodes)
        rc, _ = configs(n1, "--alter", "--entity-type", "clients", "--entity-name", "slow",
                        "--add-config", "producer_byte_rate=%d" % QUOTA)
        if rc != 0:
            tc.fail("kafka-configs --alter through node 1", nodes)
        rc, out = configs(n2, "--describe", "--entity-type", "clients", "--entity-name", "slow")
        if rc != 0 or "producer_byte_rate=%d.0" % QUOTA not in out:
            tc.fail("kafka-configs --describe through node 2", nodes)
        print("ok: the quota set through node 1 is described through node 2")
        tc.wait_for("every leader of 'spread' throttles 'slow'",
                    lambda: set(throttles(n3, "spread")) >= led, 60, nodes)
        print("ok: nodes %s throttle 'slow'" % sorted(led))
        # more quota records, so that the controllers' snapshots (every 8 records) hold some
        for i in range(4):
            rc, _ = configs(n1, "--alter", "--entity-type", "clients", "--entity-name",
                            "other-%d" % i, "--add-config",
                            "producer_byte_rate=1000,consumer_byte_rate=1000")
            if rc != 0:
                tc.fail("kafka-configs --alter of other-%d" % i, nodes)
        n3.kill9()
        n3.start(timeout_s=60)
        tc.wait_for("node 3 back in the cluster",
                    lambda: len(tc.cluster_view(n1)[0]) == 3, 60, nodes)
        led = set(tc.leaders(n1, "spread").values())
        tc.wait_for("every leader throttles 'slow' after node 3's kill -9",
                    lambda: set(throttles(n1, "spread")) >= led, 60, nodes)
        if not any("controller: snapshot up to offset" in x.log_text() for x in nodes):
            tc.fail("no node wrote a metadata snapshot", nodes)
        log3 = n3.log_text()
        from_snapshot = ("image loaded from the snapshot" in log3 or
                         "image rebuilt from a snapshot" in log3)
        print("ok: after kill -9 node 3 (image %s) and the others throttle 'slow'" %
              ("from a snapshot" if from_snapshot else "replayed from the log"))
        rc, _ = configs(n2, "--alter", "--entity-type", "clients", "--entity-name", "slow",
                        "--delete-config", "producer_byte_rate")
        if rc != 0:
            tc.fail("kafka-configs --delete-config through node 2", nodes)
        tc.wait_for("no node throttles 'slow' once the quota is removed",
                    lambda: not throttles(n3, "spread", 2.0), 60, nodes)
        print("ok: the quota removed through node 2 no longer throttles")
        for x in nodes:
            log = x.log_text()
            if "runtime error" in log or "AddressSanitizer" in log:
                tc.fail("node %d logged a sanitizer report" % x.node_id, [x])
        print("PASS cluster quota (%s)" % args.io)
        return 0
    finally:
        for x in nodes:
            x.cleanup()


if __name__ == "__main__":
    sys.exit(main())
