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
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, java_cmd, run_client  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "groups"))
import kraw  # noqa: E402


def finalized_features(b):
    """ApiVersions v3's finalized features {name: level} (raw frames; its response header is
    v0 whatever the version, KIP-511)."""
    c = kraw.Conn(b.host, b.port)
    cid = b"kraw"
    msg = (struct.pack(">hhih", 18, 3, 1, len(cid)) + cid + b"\x00" +
           kraw.cstr("raw") + kraw.cstr("1") + b"\x00")
    c.s.sendall(struct.pack(">i", len(msg)) + msg)
    r = c._recv(struct.unpack(">i", c._recv(4))[0])[4:]
    c.close()
    check(struct.unpack(">h", r[:2])[0] == 0, "ApiVersions v3: an error")
    n, pos = kraw.read_uv(r, 2)
    for _ in range(n - 1):
        _tags, pos = kraw.read_uv(r, pos + 6)
    pos += 4
    fin = {}
    ntags, pos = kraw.read_uv(r, pos)
    for _ in range(ntags):
        tag, pos = kraw.read_uv(r, pos)
        size, pos = kraw.read_uv(r, pos)
        if tag == 2:
            q = pos
            nf, q = kraw.read_uv(r, q)
            for _ in range(nf - 1):
                ln, q = kraw.read_uv(r, q)
                name = r[q:q + ln - 1].decode()
                q += ln - 1
                hi, _lo = struct.unpack(">hh", r[q:q + 4])
                _tags, q = kraw.read_uv(r, q + 4)
                fin[name] = hi
        pos += size
    return fin


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
        fin = finalized_features(b)
        check(fin.get("transaction.version") == 1 and fin.get("metadata.version") == 27,
              "after a restart the finalized features are %s (transaction.version 1 wanted)"
              % fin)
        print("after a restart: transaction.version %d finalized" % fin["transaction.version"])
    print("java transactions (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
