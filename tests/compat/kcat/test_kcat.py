"""kcat against laminar: metadata (-L), produce keys/values/headers from a file (-P -l),
read back identically (-C -e -J), start offsets (-o N, -o -N) and timestamps (-o s@ts).

    /usr/bin/python3 test_kcat.py --io uring|epoll
"""
import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402

KCAT = "kcat"


def kcat(b, *args, stdin=None, timeout=60):
    cmd = [KCAT, "-b", b.bootstrap, "-X", "socket.timeout.ms=10000"] + list(args)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (" ".join(cmd), p.returncode,
                                                   p.stderr.decode(errors="replace")))
    return p.stdout.decode()


def consume_json(b, topic, *extra):
    out = kcat(b, "-C", "-t", topic, "-e", "-J", "-q", *extra)
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def scenario(b):
    tmp = b.tmp
    # -P with keys (-K) and headers (-H) from a file (-l), to partition 1 of a new topic.
    n = 200
    msgs = ["key-%03d:value-%03d-%s" % (i, i, "x" * (i % 37)) for i in range(n)]
    path = os.path.join(tmp, "input.txt")
    with open(path, "w") as f:
        f.write("\n".join(msgs) + "\n")
    kcat(b, "-P", "-t", "kc", "-p", "1", "-K:", "-H", "h1=one", "-H", "h2=two", "-l", path)
    meta = kcat(b, "-L", "-t", "kc")
    check('topic "kc" with 3 partitions' in meta, "metadata: " + meta)
    check("leader 1, replicas: 1, isrs: 1" in meta, "metadata leader: " + meta)
    full = kcat(b, "-L")
    check("broker 1 at %s" % b.bootstrap in full, "brokers: " + full)

    recs = consume_json(b, "kc", "-p", "1")
    check(len(recs) == n, "read back %d of %d" % (len(recs), n))
    for i, r in enumerate(recs):
        k, v = msgs[i].split(":", 1)
        check(r["offset"] == i and r["partition"] == 1, "offset/partition %r" % r)
        check(r["key"] == k and r["payload"] == v, "key/value %r" % r)
        check(r["headers"] == ["h1", "one", "h2", "two"], "headers %r" % r)
        check(r["tstype"] == "create" and r["ts"] > 0, "timestamp %r" % r)
    # Reading twice gives the same bytes (timestamps included).
    again = consume_json(b, "kc", "-p", "1")
    check(again == recs, "second read differs")
    # Other partitions are empty.
    check(consume_json(b, "kc", "-p", "0") == [], "partition 0 not empty")

    # -o offsets: absolute, relative from the end, and with a count.
    got = consume_json(b, "kc", "-p", "1", "-o", "150")
    check([r["offset"] for r in got] == list(range(150, n)), "-o 150")
    got = consume_json(b, "kc", "-p", "1", "-o", "-5")
    check([r["offset"] for r in got] == list(range(n - 5, n)), "-o -5")
    got = consume_json(b, "kc", "-p", "1", "-o", "10", "-c", "3")
    check([r["offset"] for r in got] == [10, 11, 12], "-o 10 -c 3")

    # -o s@ts: a second batch produced later starts at its first offset.
    time.sleep(0.05)
    kcat(b, "-P", "-t", "kc", "-p", "1", "-K:", stdin=b"late-1:a\nlate-2:b\n")
    recs = consume_json(b, "kc", "-p", "1")
    check(len(recs) == n + 2, "after second produce %d" % len(recs))
    ts_late = recs[n]["ts"]
    check(ts_late > recs[n - 1]["ts"], "timestamps not increasing")
    got = consume_json(b, "kc", "-p", "1", "-o", "s@%d" % ts_late)
    check([r["key"] for r in got] == ["late-1", "late-2"], "s@ts gave %r" % got)
    got = consume_json(b, "kc", "-p", "1", "-o", "s@%d" % recs[0]["ts"])
    check(len(got) == n + 2, "s@first ts gave %d" % len(got))

    # A large value round-trips; null key.
    big = os.urandom(300 * 1024).hex().encode()  # 600 KiB, under kcat's 1 MB input limit
    kcat(b, "-P", "-t", "big", "-p", "0", stdin=big, timeout=60)
    out = subprocess.run([KCAT, "-b", b.bootstrap, "-C", "-t", "big", "-e", "-q", "-D", "",
                          "-f", "%s"], capture_output=True, timeout=60).stdout
    check(out == big, "big value: %d vs %d bytes" % (len(out), len(big)))
    check(b.alive(), "broker died")
    rc = b.stop()
    check(rc == 0, "exit status %s" % rc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "3"})
    return run_scenario(b, "kcat (%s)" % io, lambda: scenario(b), trace=False)


if __name__ == "__main__":
    sys.exit(main())
