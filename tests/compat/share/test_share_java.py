"""KIP-932 share groups with the Java client 4.1.1 against laminar: three KafkaShareConsumers
of one group on one partition, every record accepted exactly once; an abandoned member's
records redelivered to another member after the acquisition lock times out
(tests/compat/java/src/ShareGroupSuite.java, one JVM).

    test_share_java.py --io uring|epoll [--classes DIR]

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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--classes", default=os.path.join(JAVA, "classes"))
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(args.classes, "ShareGroupSuite.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    # The redelivery scenario's group sets a 2 s acquisition lock (the broker's stays at
    # Kafka's 30 s; a group config may go down to group.share.min.record.lock.duration.ms), and
    # a short heartbeat so members see the assignment quickly.
    config = {"group.share.min.record.lock.duration.ms": 1000,
              "group.share.heartbeat.interval.ms": 500}
    with Broker(io=args.io, shards=2, config=config) as b:
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + args.classes,
                       "ShareGroupSuite", b.bootstrap)
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=110)
            out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT", -1
        print(out)
        alive = b.alive()
        status = b.stop()
        log = b.log_text()
        # the client logs what it refuses in a response (a partition it did not ask for, ...)
        # as ERROR; the broker's ERROR lines and sanitizer reports fail the test too
        client_errors = [ln for ln in out.splitlines() if " ERROR " in ln]
        broker_errors = [ln for ln in log.splitlines()
                         if " ERROR " in ln or "runtime error" in ln]
        if rc != 0 or not alive or status != 0 or client_errors or broker_errors:
            print("FAIL: java rc=%s, broker alive=%s, broker exit=%s, client errors %d, "
                  "broker errors %d" % (rc, alive, status, len(client_errors),
                                        len(broker_errors)))
            print("\n".join(client_errors[:10] + broker_errors[:10]))
            print("---- broker log (tail) ----")
            print(log[-6000:])
            return 1
    print("java KIP-932 share groups (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
