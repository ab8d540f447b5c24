"""Producer-state recovery: how long the first idempotent Produce after a kill -9 takes, when a
partition holds GIB of idempotent batches. That request loads the partition's producer state:
from the background checkpoint (`producer.checkpoint`) plus the log after it, or, without one
(a build before checkpoints, or --checkpoint-bytes larger than the log), by replaying the whole
log. A new leader of a replicated partition pays the same load when it takes over. Figures
only: nothing here asserts a number.

    /usr/bin/python3 bench/hardening/bench_producer_state.py [--gib 2] [--io uring]
        [--binary A --binary B ...]

Each --binary (default: $LAMINAR_BIN, else build*/broker/laminar) is measured in turn on a
fresh data directory: start, produce --gib GiB of 1 KiB records to one partition with
bench_produce (idempotent, acks=all, 1 MiB batches), wait 3 s (checkpoint jobs run at the
shard tick, 8 MiB a tick), kill -9, restart, then time one idempotent Produce of a new
producer id (kraw) from send to answer; the broker's "producer state loaded" line says where
the replay began. Warm page cache (kill -9 keeps it): the figure is CPU and copy cost, a cold
disk adds its read time.
"""
import argparse
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "harness"))
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "groups"))
from laminar_harness import Broker, binary_path  # noqa: E402
import kraw  # noqa: E402

TOPIC = "pstate"


def bench_produce_path(binary):
    build = os.path.dirname(os.path.dirname(os.path.abspath(binary)))
    p = os.path.join(build, "bench", "broker", "bench_produce")
    if os.path.exists(p):
        return p
    for b in ("build-rel", "build"):
        q = os.path.join(ROOT, b, "bench", "broker", "bench_produce")
        if os.path.exists(q):
            return q
    sys.exit("bench_produce not found: build bench/broker")


def measure(binary, args):
    b = Broker(io=args.io, shards=1, binary=binary)
    try:
        b.start()
        n = int(args.gib * (1 << 30) / 1024)
        t0 = time.monotonic()
        subprocess.run([bench_produce_path(binary), "-b", b.bootstrap, "-t", TOPIC, "-p", "1",
                        "-n", str(n), "-s", "1024", "-a", "all", "-T", "600",
                        "-X", "enable.idempotence=true", "-X", "linger.ms=20",
                        "-X", "batch.size=1048576"],
                       check=True, stdout=subprocess.DEVNULL)
        wrote = time.monotonic() - t0
        time.sleep(3.0)
        b.kill9()
        b.start()
        conn = kraw.Conn(b.host, b.port)
        err, pid, _ = conn.init_producer_id()
        assert err == 0, err
        t1 = time.perf_counter()
        err, off = conn.produce(TOPIC, 0, kraw.idempotent_batch(pid, 0, 0, [b"x"]))
        took = time.perf_counter() - t1
        conn.close()
        assert err == 0, err
        loads = [ln for ln in b.log_text().splitlines()
                 if TOPIC + "-0: producer state loaded" in ln]
        return wrote, took, off, loads[-1].split("producer state loaded ", 1)[1] if loads else "?"
    finally:
        b.stop()
        shutil.rmtree(b.tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--gib", type=float, default=2.0)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--binary", action="append")
    args = ap.parse_args()
    binaries = args.binary or [binary_path()]
    print("producer-state recovery: %.1f GiB of idempotent 1 KiB records in one partition, "
          "kill -9, first idempotent Produce timed (%d CPUs, load %.2f)"
          % (args.gib, os.cpu_count(), os.getloadavg()[0]))
    rows = []
    for bin_ in binaries:
        wrote, took, off, line = measure(bin_, args)
        rows.append((bin_, took))
        print("  %-45s wrote in %5.1f s; first Produce after restart %8.1f ms (offset %d; %s)"
              % (bin_, wrote, took * 1000, off, line))
    if len(rows) > 1:
        for bin_, took in rows[1:]:
            print("  %s / %s: %.3f" % (bin_, rows[0][0], took / rows[0][1]))


if __name__ == "__main__":
    main()
