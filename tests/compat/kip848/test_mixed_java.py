"""Mixed groups (Kafka 4): a classic consumer and a consumer-protocol consumer of the Java
client 4.1 sharing a consumer group, and an online upgrade of a classic group whose consumers
are restarted one by one with group.protocol=consumer (tests/compat/java/src/MixedGroupSuite.java,
one JVM).

    test_mixed_java.py --io uring|epoll [--classes DIR]

Needs tests/compat/java/prepare to have run (lib/ and classes/).
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
                 os.path.join(args.classes, "MixedGroupSuite.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    # short heartbeats and no initial rebalance delay keep the run short
    config = {"group.consumer.heartbeat.interval.ms": 500,
              "group.initial.rebalance.delay.ms": 0}
    with Broker(io=args.io, shards=2, config=config) as b:
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + args.classes,
                       "MixedGroupSuite", b.bootstrap)
        if run_client(b, cmd, "java", 150, runtime_errors=True) != 0:
            return 1
    print("java mixed groups (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
