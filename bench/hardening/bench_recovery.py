"""Recovery after kill -9 under acks=1 load: how long a restart takes to serve every partition
again, after GIB of 1 KiB records were written with no flush policy (acks=1 never fsyncs, so
only segment rolls and the background flushes can advance the recovery checkpoint). Figures
only: nothing here asserts a number.

    /usr/bin/python3 bench/hardening/bench_recovery.py [--gib 8] [--partitions 16] [--io uring]

Needs a build with broker/laminar and bench/broker/bench_produce ($LAMINAR_BIN, else
build*/...; use a Release build). Steps: start, produce --gib GiB with bench_produce (acks=1,
round-robin over the partitions), read each partition's end offset, kill -9 the broker at once,
then restart from the same data, cold (after `echo 3 > /proc/sys/vm/drop_caches`, when
permitted; --warm keeps the page cache), measuring from exec until every
partition answers ListOffsets latest with at least the end offset seen before the kill (records
acknowledged with acks=1 and not yet written back may be lost by a real power cut; kill -9 keeps
the page cache, so here every one of them must be back).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "python"))
from laminar_harness import Broker, binary_path  # noqa: E402
from test_protocol import Conn, arr, s32, s64, sstr  # noqa: E402

TOPIC = "recovery"


def end_offsets(b, parts):
    c = Conn(b)
    c.s.settimeout(600)
    body = s32(-1) + b"\x00" + arr([sstr(TOPIC) + arr([s32(p) + s64(-1) for p in range(parts)])])
    r = c.call(2, 2, body)
    r.i32()
    out = {}
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            p = r.i32()
            err, _ts, off = r.i16(), r.i64(), r.i64()
            out[p] = off if err == 0 else None
    c.s.close()
    return out


def restart_timed(b, parts, want):
    t0 = time.monotonic()
    b.start(timeout_s=600)
    t_port = time.monotonic() - t0
    while True:
        try:
            got = end_offsets(b, parts)
            if all(got.get(p) is not None and got[p] >= want[p] for p in range(parts)):
                return t_port, time.monotonic() - t0, got
        except (OSError, EOFError):
            pass
        if time.monotonic() - t0 > 600:
            return t_port, float("nan"), {}
        time.sleep(0.02)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=8.0)
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--warm", action="store_true", help="keep the page cache (default: drop it)")
    a = ap.parse_args()
    lam = binary_path()
    bench_produce = os.path.join(os.path.dirname(os.path.dirname(lam)), "bench", "broker",
                                 "bench_produce")
    records = int(a.gib * (1 << 30) / 1024)
    b = Broker(io=a.io, shards=2)
    try:
        b.start()
        t0 = time.monotonic()
        out = subprocess.run([bench_produce, "-b", b.bootstrap, "-t", TOPIC, "-p",
                              str(a.partitions), "-a", "1", "-n", str(records), "-s", "1024",
                              "-T", "3600"], capture_output=True, text=True)
        secs = time.monotonic() - t0
        print("recovery: produced %d x 1 KiB (%.2f GiB) acks=1 into %d partitions in %.1f s"
              % (records, a.gib, a.partitions, secs))
        if out.returncode != 0:
            print(out.stdout[-2000:], out.stderr[-2000:])
            return 1
        want = end_offsets(b, a.partitions)
        b.kill9()
        print("  killed (-9) with end offsets summing to %d" % sum(want.values()))
        kind = "warm"
        if not a.warm:
            try:
                os.sync()
                with open("/proc/sys/vm/drop_caches", "w") as f:
                    f.write("3\n")
                kind = "cold"
            except OSError as e:
                print("  cannot drop caches (%s): warm restart" % e)
        t_port, t_all, got = restart_timed(b, a.partitions, want)
        lost = sum(max(0, want[p] - got.get(p, 0)) for p in range(a.partitions)) if got else -1
        print("  restart after kill -9 (%s cache): serving in %.2f s, every partition at its "
              "end offset in %.2f s, records missing: %d" % (kind, t_port, t_all, lost))
    finally:
        b.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
