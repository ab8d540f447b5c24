"""The Java client's transactional producer against the coordinator (TxnSuite.java): commits and
aborts read exactly by read_committed, a zombie fenced, consume-transform-produce with
sendOffsetsToTransaction, Admin listTransactions / describeTransactions; all of it with
transaction.version 2 (a new cluster's level: KIP-890 part 2) and again after the suite
downgraded it to 1 with Admin.updateFeatures. The broker is then restarted: the downgraded
level, kept in the metadata log, is still the finalized one.

    /usr/bin/python3 test_txn_java.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/ and classes/); fails if it has not.
"""
import argparse
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, java_cmd, run_client  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "groups"))
import kraw  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in ("lib/.complete", "classes/.complete", "classes/TxnSuite.class"):
        if not os.path.exists(os.path.join(JAVA, need)):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2) as b:
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes"),
                       "TxnSuite", b.bootstrap)
        if run_client(b, cmd, "java transactions", 150) != 0:
            return 1
        b.restart()
        fin = kraw.finalized_features(b.host, b.port)
        check(fin.get("transaction.version") == 1 and fin.get("metadata.version") == 27,
              "after a restart the finalized features are %s (transaction.version 1 wanted)"
              % fin)
        print("after a restart: transaction.version %d finalized" % fin["transaction.version"])
    print("java transactions (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
