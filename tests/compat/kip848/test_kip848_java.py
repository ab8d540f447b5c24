"""KIP-848 consumer groups (group.protocol=consumer) with the Java client 4.1 against laminar:
a group scaling 1 -> 3 -> 1 while a producer writes, Admin describeConsumerGroups
(ConsumerGroupDescribe) and listGroups, kafka-consumer-groups, and a classic group next to a
consumer-protocol group (tests/compat/java/src/ConsumerProtocolSuite.java, one JVM).

    test_kip848_java.py --io uring|epoll [--classes DIR]

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
                 os.path.join(args.classes, "ConsumerProtocolSuite.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    # A short heartbeat interval: a member waiting for partitions another member releases
    # gets them at its next heartbeat (Kafka's default is 5 s).
    config = {"group.consumer.heartbeat.interval.ms": 1000}
    with Broker(io=args.io, shards=2, config=config) as b:
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + args.classes,
                       "ConsumerProtocolSuite", b.bootstrap)
        if run_client(b, cmd, "java", 240, runtime_errors=True) != 0:
            return 1
    print("java KIP-848 groups (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
