"""kafkajs (npm, 2.x) consumer groups against laminar: starts a broker, runs kafkajs_group.js.

    test_kafkajs.py --io uring|epoll

Needs tests/compat/kafkajs/prepare to have run (node_modules/kafkajs); fails if it has not.
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402

NODE_ID = 2


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(HERE, "node_modules", "kafkajs", "package.json")):
        print("FAIL: node_modules/kafkajs missing: run tests/compat/kafkajs/prepare first")
        return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, extra_args=["--node-id", str(NODE_ID)],
                config={"group.initial.rebalance.delay.ms": 300}) as b:
        try:
            p = subprocess.run(["node", os.path.join(HERE, "kafkajs_group.js"), b.bootstrap,
                                str(NODE_ID)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=120, cwd=HERE,
                               env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1"))
            out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT", -1
        print(out)
        alive = b.alive()
        status = b.stop()
        if rc != 0 or not alive or status != 0:
            print("FAIL: node rc=%s, broker alive=%s, broker exit=%s" % (rc, alive, status))
            print("---- broker log (tail) ----")
            print(b.log_text()[-6000:])
            return 1
    print("kafkajs groups (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
