"""Kafka's kafka-transactions tool (TransactionsCommand, in TxnToolsSuite.java): list, describe,
describe-producers, find-hanging, abort and forceTerminateTransaction, against a transactional
producer SIGKILLed with its transaction open (aborted by the tool long before its timeout; the
last stable offset advances) and against a hanging transaction.

The hanging transaction is made here with raw frames before the suite runs: the broker runs
with transaction.partition.verification.enable=false, so a transactional batch of "tools-hanging"
for th-0 is written without AddPartitionsToTxn and the coordinator never learns of it (with
verification on, the default, the batch would be refused). find-hanging must report it, abort
must end it.

    /usr/bin/python3 test_txn_tools.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/ and classes/); fails if it has not.
"""
import argparse
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "groups"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, java_cmd, run_client  # noqa: E402
import kraw  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR = 14, 15, 16


def hanging(b):
    """A transactional batch on th-0 that the coordinator does not know of."""
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic("th", 1, 1)])["th"].result(15)
    conn = kraw.Conn(b.host, b.port)
    # as a client does: FindCoordinator v1 (key type 1, transaction) until the coordinator is
    # there, then InitProducerId v1 (transactional id, timeout), retried while it loads
    deadline = time.monotonic() + 30
    while True:
        r = conn.call(10, 1, kraw.s16str("tools-hanging") + b"\x01", False)
        err = struct.unpack(">h", r[4:6])[0]
        if err == 0:
            r = conn.call(22, 1, kraw.s16str("tools-hanging") + struct.pack(">i", 60000), False)
            _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
            if err == 0:
                break
        check(err in (COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR)
              and time.monotonic() < deadline, "InitProducerId tools-hanging: %d" % err)
        time.sleep(0.2)
    err, off = conn.produce("th", 0, kraw.txn_batch(pid, epoch, 0, [b"hang-0", b"hang-1"]),
                            transactional_id="tools-hanging")
    check(err == 0 and off == 0, "unverified transactional batch: error %d offset %d" % (err, off))
    conn.close()
    print("hanging transaction of producer %d on th-0" % pid)
    return pid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in ("lib/.complete", "classes/.complete", "classes/TxnToolsSuite.class"):
        if not os.path.exists(os.path.join(JAVA, need)):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2,
                config={"transaction.partition.verification.enable": "false"}) as b:
        pid = hanging(b)
        cmd = java_cmd(os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes"),
                       "TxnToolsSuite", b.bootstrap, "run", str(pid))
        if run_client(b, cmd, "kafka-transactions tool", 150, runtime_errors=True) != 0:
            return 1
    print("kafka-transactions tool (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
