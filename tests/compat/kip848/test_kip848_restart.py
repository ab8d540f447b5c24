"""Two Java consumers (group.protocol=consumer, KeepsMembership.java) of one KIP-848 group
across a crash of the broker (kill -9, then a restart on the same data directory): the group
comes back from __consumer_offsets, so each consumer goes on with its member id, epoch and
partitions, no partition lost or revoked, and the records produced after the restart are
consumed once. With --mixed the second consumer uses the classic protocol (a classic member
of the consumer group, its ClassicMemberMetadata loaded back).

    test_kip848_restart.py --io uring|epoll [--mixed]

Needs tests/compat/java/prepare to have run (lib/ and classes/).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import java_cmd  # noqa: E402

TOPIC = "keep-t"
PARTS = 4


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--mixed", action="store_true",
                    help="the second consumer uses the classic protocol (a mixed group)")
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(JAVA, "classes", "KeepsMembership.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    config = {"group.consumer.heartbeat.interval.ms": 1000}
    with Broker(io=args.io, shards=2, config=config) as b:
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        a.create_topics([NewTopic(TOPIC, PARTS, 1)])[TOPIC].result(30)
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes"),
                       "KeepsMembership", b.bootstrap, TOPIC, str(PARTS),
                       *(["classic"] if args.mixed else []))
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        out = []
        ready = False
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            line = p.stdout.readline().decode("utf-8", "replace")
            if not line:
                break
            out.append(line)
            if line.startswith("READY"):
                ready = True
                break
        if not ready:
            p.kill()
            print("".join(out))
            print("FAIL: the consumers did not settle")
            return 1
        print(out[-1].strip())
        t_restart = time.monotonic()
        b.kill9()
        b.restart()
        print("broker killed and restarted in %.1f s" % (time.monotonic() - t_restart))
        p.stdin.write(b"RESTARTED\n")
        p.stdin.flush()
        try:
            rest, _ = p.communicate(timeout=90)
        except subprocess.TimeoutExpired:
            p.kill()
            rest, _ = p.communicate()
        text = "".join(out) + rest.decode("utf-8", "replace")
        print(rest.decode("utf-8", "replace"))
        alive = b.alive()
        status = b.stop()
        log = b.log_text()
        if p.returncode != 0 or "ALL OK" not in text or not alive or status != 0 or \
                "runtime error" in log:
            print("FAIL: java rc=%s, broker alive=%s exit=%s" % (p.returncode, alive, status))
            print(log[-4000:])
            return 1
    print("java consumers across a broker crash (%s): passed in %.1f s"
          % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
