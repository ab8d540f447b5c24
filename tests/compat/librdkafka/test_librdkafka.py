"""Runs rdk_compat (librdkafka C) against a laminar broker with 16 partitions per new topic.

    /usr/bin/python3 test_librdkafka.py --io uring|epoll --bin path/to/rdk_compat [--records N]
Records per codec default to $LAMINAR_COMPAT_RECORDS or 100000.
"""
import argparse
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--bin", required=True)
    ap.add_argument("--records", type=int,
                    default=int(os.environ.get("LAMINAR_COMPAT_RECORDS", "100000")))
    a = ap.parse_args()
    b = Broker(io=a.io, shards=2, config={"num.partitions": "16"})
    try:
        b.start()
        t0 = time.monotonic()
        p = subprocess.run([a.bin, b.bootstrap, str(a.records)], timeout=900)
        print("rdk_compat took %.1f s" % (time.monotonic() - t0))
        ok = p.returncode == 0 and b.alive()
        rc = b.stop()
        if rc != 0:
            ok = False
            print("broker exit status %s" % rc)
        if not ok:
            print("FAIL librdkafka (%s); broker log tail:\n%s" % (a.io, b.log_text()[-4000:]))
            return 1
        print("PASS librdkafka (%s)" % a.io)
        return 0
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
