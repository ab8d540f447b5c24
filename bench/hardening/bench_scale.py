"""Partition scale on one node: create time, RSS, Metadata latency and restart time for N
partitions, with the broker under the machine's default open-file limit (nothing raised by
this script). Figures only: nothing here asserts a number.

    /usr/bin/python3 bench/hardening/bench_scale.py [--partitions 10000] [--per-topic 1000]
        [--io uring|epoll] [--shards 2]

The broker binary comes from $LAMINAR_BIN, else build*/broker/laminar (use a Release build:
`make build` puts one in build/). Phases, each timed with the monotonic clock:
  create    one CreateTopics (v4) of N/per-topic topics of per-topic partitions each, until it
            answers; then until a Produce (v7, acks=1) of one record to every partition has
            succeeded, retrying partitions that answer a retriable error as a client does
            ("usable": every partition open and appendable);
  metadata  Metadata v5 for all topics (the response lists every partition), 20 times: p50/max;
            and Metadata of one topic, 200 times;
  restart   SIGTERM, start, then until every partition answers ListOffsets latest = 1 (clean);
            the same after kill -9 (crash).
RSS (VmRSS, VmHWM) of the broker after each phase.
"""
import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "python"))
from laminar_harness import Broker  # noqa: E402
from test_protocol import Conn, arr, record_batch, s16, s32, s64, sstr  # noqa: E402


def status_kib(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def create_topics(c, names, parts):
    body = arr([sstr(n) + s32(parts) + s16(1) + arr([]) + arr([]) for n in names])
    body += s32(600000) + b"\x00"
    r = c.call(19, 4, body)
    r.i32()  # throttle
    errors = {}
    for _ in range(r.i32()):
        name, err, msg = r.str(), r.i16(), r.str()
        if err != 0:
            errors[name] = (err, msg)
    return errors


def produce_all(c, names, parts, batch, timeout_s=600):
    """acks=1 Produce of one batch to every partition (one request per topic), repeating for the
    partitions that answered a (retriable) error, as a client would, until all succeeded.
    Returns (rounds, errors seen in the first round)."""
    left = {n: list(range(parts)) for n in names}
    rounds = first_errors = 0
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        rounds += 1
        nxt = {}
        for n, plist in left.items():
            body = s16(-1) + s16(1) + s32(60000)
            body += arr([sstr(n) + arr([s32(p) + s32(len(batch)) + batch for p in plist])])
            r = c.call(0, 7, body)
            for _ in range(r.i32()):
                r.str()
                for _ in range(r.i32()):
                    p = r.i32()
                    err = r.i16()
                    r.i64(), r.i64(), r.i64()
                    if err != 0:
                        nxt.setdefault(n, []).append(p)
        if rounds == 1:
            first_errors = sum(len(v) for v in nxt.values())
        left = nxt
        if left:
            time.sleep(0.1)
    return rounds, first_errors, sum(len(v) for v in left.values())


def metadata(c, names):
    """Metadata v5; returns (topics, partitions without error and with a leader)."""
    body = (s32(-1) if names is None else arr([sstr(n) for n in names])) + b"\x00"
    r = c.call(3, 5, body)
    r.i32()
    for _ in range(r.i32()):
        r.i32(), r.str(), r.i32(), r.str()
    r.str(), r.i32()
    topics = ok = 0
    for _ in range(r.i32()):
        r.i16(), r.str(), r.i8()
        topics += 1
        for _ in range(r.i32()):
            err, _p, leader = r.i16(), r.i32(), r.i32()
            for _ in range(3):
                for _ in range(r.i32()):
                    r.i32()
            ok += err == 0 and leader >= 0
    return topics, ok


def latest_offsets_ok(c, names, parts, want):
    """ListOffsets v2 latest for every partition; the number that answer `want` without error."""
    ok = 0
    for n in names:
        body = s32(-1) + b"\x00" + arr([sstr(n) + arr([s32(p) + s64(-1) for p in range(parts)])])
        r = c.call(2, 2, body)
        r.i32()
        for _ in range(r.i32()):
            r.str()
            for _ in range(r.i32()):
                r.i32()
                err, _ts, off = r.i16(), r.i64(), r.i64()
                ok += err == 0 and off == want
    return ok


def wait_usable(b, names, parts, timeout_s):
    """Time from now until every partition answers ListOffsets latest = 1."""
    t0 = time.monotonic()
    total = len(names) * parts
    while True:
        try:
            c = Conn(b)
            c.s.settimeout(600)
            if latest_offsets_ok(c, names, parts, 1) == total:
                return time.monotonic() - t0
        except (OSError, EOFError):
            pass
        if time.monotonic() - t0 > timeout_s:
            return float("nan")
        time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=10000)
    ap.add_argument("--per-topic", type=int, default=1000)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--shards", type=int, default=2)
    a = ap.parse_args()
    ntopics = max(1, a.partitions // a.per_topic)
    names = ["scale-%04d" % i for i in range(ntopics)]
    total = ntopics * a.per_topic
    print("scale: %d partitions in %d topics, io=%s shards=%d, RLIMIT_NOFILE of this shell %s"
          % (total, ntopics, a.io, a.shards, os.popen("ulimit -n; ulimit -Hn").read().split()))
    b = Broker(io=a.io, shards=a.shards,
               config={"max.broker.partitions": str(total + 1000)})
    try:
        b.start()
        print("  idle broker: RSS %d KiB, fds %d" % (status_kib(b.pid, "VmRSS"), fd_count(b.pid)))
        c = Conn(b)
        c.s.settimeout(600)
        t0 = time.monotonic()
        errs = create_topics(c, names, a.per_topic)
        t_create = time.monotonic() - t0
        if errs:
            print("  CreateTopics errors: %s" % list(errs.items())[:3])
        batch = record_batch([1_700_000_000_000])
        t0 = time.monotonic()
        rounds, first, failed = produce_all(c, names, a.per_topic, batch)
        t_usable = time.monotonic() - t0
        print("  create: CreateTopics answered in %.2f s; a record produced to every partition "
              "in %.2f s (%d rounds; %d retriable errors in the first; %d never succeeded)"
              % (t_create, t_usable, rounds, first, failed))
        print("  after create: RSS %d KiB (HWM %d), fds %d"
              % (status_kib(b.pid, "VmRSS"), status_kib(b.pid, "VmHWM"), fd_count(b.pid)))
        lat = []
        for _ in range(20):
            t0 = time.monotonic()
            topics, ok = metadata(c, None)
            lat.append(time.monotonic() - t0)
        print("  Metadata v5 (all %d topics, %d partitions online): p50 %.1f ms, max %.1f ms"
              % (topics, ok, statistics.median(lat) * 1e3, max(lat) * 1e3))
        lat = []
        for i in range(200):
            t0 = time.monotonic()
            metadata(c, [names[i % ntopics]])
            lat.append(time.monotonic() - t0)
        lat.sort()
        print("  Metadata (one topic of %d partitions): p50 %.2f ms, p99 %.2f ms"
              % (a.per_topic, lat[len(lat) // 2] * 1e3, lat[int(len(lat) * 0.99)] * 1e3))
        c.s.close()
        for kind in ("clean", "kill -9"):
            t0 = time.monotonic()
            if kind == "clean":
                b.stop(timeout_s=300)
            else:
                b.kill9()
            t_stop = time.monotonic() - t0
            t0 = time.monotonic()
            b.start(timeout_s=600)
            t_port = time.monotonic() - t0
            t_all = t_port + wait_usable(b, names, a.per_topic, 600)
            print("  restart (%s): stop %.2f s, serving %.2f s, every partition answers %.2f s; "
                  "RSS %d KiB, fds %d" % (kind, t_stop, t_port, t_all,
                                          status_kib(b.pid, "VmRSS"), fd_count(b.pid)))
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
