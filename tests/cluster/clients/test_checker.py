"""The client matrix's excuse for kcat (test_clients.Run.close_drop), without a cluster: an
acknowledged record no consumer read counts as kcat's own loss on SIGTERM only in the one shape
that loss has (the record after the first consumer's last read in its partition, its offset + 1
stored by that consumer's librdkafka at the close and committed, no other record unread, the
kcat family); every other shape stays a failure.

    /usr/bin/python3 tests/cluster/clients/test_checker.py
"""
import os
import shutil
import sys
from types import SimpleNamespace

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import test_clients as tc  # noqa: E402

P = 1  # the partition of the cases; partition 0 is read whole
REMOVE = ("%%7|1796630917.917|REMOVE|rdkafka#consumer-1| [thrd:main]: Removing fo-kcat [%d] "
          "from assignment (started=true, pending=false, queried=false, stored offset=%s)\n")


def failures(family, last_read1, stored, committed, unread=(6,), gap=None):
    """check_reads' failures for partition P holding offsets 0..9 (none at `gap`): the first
    consumer read 0..last_read1, the second from the committed offset on, `unread` offsets
    read by neither; kcat's log says it stored `stored` at its close (None: no such line)."""
    run = tc.Run(family, "uring", 6, False)
    try:
        run.t0 = run.events.t0
        # the fields check_reads reads of the two consumers and the sampler
        run.consumer, run.consumer2 = SimpleNamespace(), SimpleNamespace()
        run.consumer.name, run.consumer2.name = "kcat-consumer1", "kcat-consumer2"
        run.consumer.err_path = os.path.join(run.workdir, "kcat-consumer1.err")
        run.sampler = SimpleNamespace()
        run.sampler.samples = []
        with open(run.consumer.err_path, "w") as f:
            f.write(REMOVE % (P, "5"))  # an earlier revoke: the close's line is the last
            f.write(REMOVE % (0, "10"))
            if stored is not None:
                f.write(REMOVE % (P, stored))
        by_pos = {}
        reads = []
        for p in (0, P):
            for off in range(10):
                if p == P and off == gap:
                    continue
                v = "kcat-%07d" % (p * 100 + off)
                by_pos[(p, off)] = v
                run.events.ack(v, p, off)
                if p == P and off in unread:
                    continue
                if p == 0 or off <= last_read1:
                    reads.append(("kcat-consumer1", v, p, off, run.t0 + 1.0))
                elif off >= committed and off not in unread:
                    reads.append(("kcat-consumer2", v, p, off, run.t0 + 2.0))
        run.events.reads = reads
        run.committed_at_restart = {0: 10, P: committed}
        run.check_reads(by_pos)
        return run.failures
    finally:
        shutil.rmtree(run.workdir, ignore_errors=True)


def main():
    kcat = tc.Kcat()
    cases = [
        # (what, failures expected, arguments)
        ("kcat lost the record after its last read, stored and committed past it", False,
         (kcat, 5, "7", 7)),
        ("as above, a control batch (no record) before it", False,
         (kcat, 4, "7", 7, (6,), 5)),
        ("the first consumer had not read the record before it", True, (kcat, 4, "7", 7)),
        ("a record in the middle of the first consumer's reads", True,
         (kcat, 8, "9", 9, (6,))),
        ("librdkafka had not stored it (never handed to kcat)", True, (kcat, 5, "6", 7)),
        ("kcat's close stored nothing", True, (kcat, 5, "INVALID", 7)),
        ("no cgrp debug log", True, (kcat, 5, None, 7)),
        ("the committed offset is not just past it", True, (kcat, 5, "7", 8)),
        ("a second record unread too", True, (kcat, 5, "7", 7, (6, 8))),
        ("a family whose consumer loses nothing on close", True,
         (tc.Python("confluent"), 5, "7", 7)),
    ]
    bad = 0
    for what, want, args in cases:
        got = failures(*args)
        ok = bool(got) == want
        bad += not ok
        print("%s %s: %s" % ("ok  " if ok else "FAIL", what,
                             "; ".join(got)[:200] if got else "no failure"))
    # a failure names what settles it: the reads around the record and what kcat stored
    got = failures(kcat, 4, "7", 7)
    if not any("stored 7" in f and "kcat-consumer1" in f for f in got):
        print("FAIL: the unread record's evidence is missing: %s" % got)
        bad += 1
    print("%s: %d of %d cases" % ("FAIL" if bad else "PASS", len(cases) + 1 - bad, len(cases) + 1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
