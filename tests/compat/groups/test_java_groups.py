"""The Java client (kafka-clients 4.1.1, defaults: idempotent producer) in scaling consumer
groups, Admin group/producer APIs and Kafka's ConsumerGroupCommand against laminar, in one
JVM (tests/compat/java/src/GroupSuite.java).

    test_java_groups.py --io uring|epoll [--classes DIR]

Needs tests/compat/java/prepare to have run (lib/ and classes/ with GroupSuite.class).
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


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--classes", default=os.path.join(JAVA, "classes"))
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(args.classes, "GroupSuite.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, config={"group.initial.rebalance.delay.ms": 300}) as b:
        cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1",
               "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
               "-cp", os.path.join(JAVA, "lib", "*") + ":" + args.classes,
               "GroupSuite", b.bootstrap]
        try:
            p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=240)
            out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT", -1
        print(out)
        alive = b.alive()
        status = b.stop()
        log = b.log_text()
        if rc != 0 or not alive or status != 0 or "runtime error" in log:
            print("FAIL: java rc=%s, broker alive=%s, broker exit=%s" % (rc, alive, status))
            print("---- broker log (tail) ----")
            print(log[-6000:])
            return 1
    print("java groups (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
