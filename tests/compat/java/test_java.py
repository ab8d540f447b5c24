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
    print("java compat (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
