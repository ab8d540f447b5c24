"""The Java client and Kafka's command-line tools against laminar, in one JVM (ToolsSuite):
ProduceConsume (enable.idempotence=false) per codec, kafka-topics and kafka-configs.

    test_java.py --io uring|epoll [--codecs none,lz4]

Needs tests/compat/java/prepare to have run (lib/ and classes/); fails if it has not.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import java_cmd, run_client  # noqa: E402

NODE_ID = 3


def logger_level_took_effect(log):
    """ToolsSuite (OpsChecks) sets the root logger to DEBUG through kafka-configs
    --entity-type broker-loggers, opens connections, and sets it back to INFO: the broker logs
    DEBUG lines (connections opened) only between the two changes."""
    lines = log.splitlines()
    on = [i for i, l in enumerate(lines) if "updating the log level of root to DEBUG" in l]
    off = [i for i, l in enumerate(lines) if "updating the log level of root to INFO" in l]
    if not on or not off or off[0] < on[0]:
        print("FAIL: the broker log has no root level change to DEBUG and back")
        return False
    debug = [i for i, l in enumerate(lines) if " DEBUG " in l]
    inside = [i for i in debug if on[0] < i < off[0]]
    outside = [i for i in debug if i < on[0] or i > off[0]]
    if not inside or outside:
        print("FAIL: DEBUG lines inside the DEBUG window %d, outside %d" %
              (len(inside), len(outside)))
        return False
    print("ok: broker-loggers root=DEBUG took effect (%d DEBUG lines, none outside)" %
          len(inside))
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--codecs", default="none,lz4")
    args = ap.parse_args()
    for need in ("lib/.complete", "classes/.complete", "classes/ToolsSuite.class"):
        if not os.path.exists(os.path.join(HERE, need)):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, extra_args=["--node-id", str(NODE_ID)]) as b:
        cmd = java_cmd(os.path.join(HERE, "lib", "*") + ":" + os.path.join(HERE, "classes"),
                       "ToolsSuite", b.bootstrap, str(NODE_ID), *args.codecs.split(","))
        if run_client(b, cmd, "java", 240) != 0:
            return 1
        if not logger_level_took_effect(b.log_text()):
            return 1
    print("java compat (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
