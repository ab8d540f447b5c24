"""kafkajs (npm, 2.x) against laminar: starts a broker, runs kafkajs_check.js.

    test_kafkajs.py --io uring|epoll

Needs tests/compat/kafkajs/prepare to have run (node_modules/kafkajs); fails if it has not.
"""

import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import run_client  # noqa: E402

NODE_ID = 2


def run_js(script, label, config=None):
    """Starts a broker (node id NODE_ID, with config), runs `node script BOOTSTRAP NODE_ID` and
    reports "<label> (<io>): passed". The exit status of the test script."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(HERE, "node_modules", "kafkajs", "package.json")):
        print("FAIL: node_modules/kafkajs missing: run tests/compat/kafkajs/prepare first")
        return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, extra_args=["--node-id", str(NODE_ID)], config=config) as b:
        cmd = ["node", os.path.join(HERE, script), b.bootstrap, str(NODE_ID)]
        if run_client(b, cmd, "node", 120, cwd=HERE,
                      env=dict(os.environ, KAFKAJS_NO_PARTITIONER_WARNING="1")) != 0:
            return 1
    print("%s (%s): passed in %.1f s" % (label, args.io, time.monotonic() - t0))
    return 0


def main():
    return run_js("kafkajs_check.js", "kafkajs compat")

if __name__ == "__main__":
    sys.exit(main())
