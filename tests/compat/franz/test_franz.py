"""franz-go (idempotent producer by default, consumer groups with the cooperative-sticky and
range balancers) against laminar: starts a broker, runs franz_check (main.go).

    test_franz.py --io uring|epoll

Needs tests/compat/franz/prepare to have run (go build); fails if it has not.
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402


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
        try:
            p = subprocess.run([exe, b.bootstrap], stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, timeout=150)
            out, rc = p.stdout.decode("utf-8", "replace"), p.returncode
        except subprocess.TimeoutExpired as e:
            out, rc = (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT", -1
        print(out)
        alive = b.alive()
        status = b.stop()
        log = b.log_text()
        if rc != 0 or not alive or status != 0 or "runtime error" in log:
            print("FAIL: franz rc=%s, broker alive=%s, broker exit=%s" % (rc, alive, status))
            print("---- broker log (tail) ----")
            print(log[-6000:])
            return 1
    print("franz-go (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
