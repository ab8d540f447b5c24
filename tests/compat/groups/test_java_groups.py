"""The Java client (kafka-clients 4.1.1, defaults: idempotent producer) in scaling consumer
groups, Admin group/producer APIs and Kafka's ConsumerGroupCommand against laminar, in one
JVM (tests/compat/java/src/GroupSuite.java).

    test_java_groups.py --io uring|epoll [--classes DIR]

Needs tests/compat/java/prepare to have run (lib/ and classes/ with GroupSuite.class).
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import java_cmd, run_client  # noqa: E402


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
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + args.classes, "GroupSuite",
                       b.bootstrap)
        if run_client(b, cmd, "java", 240, runtime_errors=True) != 0:
            return 1
    print("java groups (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
