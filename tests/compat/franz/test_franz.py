"""franz-go (idempotent producer by default, consumer groups with the cooperative-sticky and
range balancers) against laminar: starts a broker, runs franz_check (main.go).

    test_franz.py --io uring|epoll

Needs tests/compat/franz/prepare to have run (go build); fails if it has not.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import run_client  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    exe = os.path.join(HERE, "franz_check")
    if not os.access(exe, os.X_OK):
        print("FAIL: %s missing: run tests/compat/franz/prepare first" % exe)
        return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, config={"group.initial.rebalance.delay.ms": 300}) as b:
        if run_client(b, [exe, b.bootstrap], "franz", 150, runtime_errors=True) != 0:
            return 1
    print("franz-go (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
