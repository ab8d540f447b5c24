"""Fetch sessions (KIP-227): what a consumer of many partitions costs per fetch with and without
an incremental session. One broker, one topic of --partitions partitions (1,000) holding a few
records each; a trickle producer appends one record to one partition every --trickle-ms; a
fetcher loops for --seconds with max_wait 0 at each partition's end, three ways in turn:

  sessionless   every request lists every partition (epoch -1), every response answers all
  session       a full fetch (epoch 0) then incremental ones naming only partitions that
                returned records (their offsets moved), answered with only what changed

Printed per mode: fetches per second, request and response bytes per fetch, and the ratios
session/sessionless. Figures only; nothing asserts a number.

    /usr/bin/python3 bench/fetch/bench_fetch_session.py [--partitions 1000] [--seconds 5]
        [--io uring] [--binary build-rel/broker/laminar]
"""
import argparse
import os
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
from laminar_harness import Broker, binary_path  # noqa: E402
from kafka_wire import Reader, arr, s16, s32, s64, sstr  # noqa: E402

import confluent_kafka as ck  # noqa: E402

TOPIC = "fsbench"


class Wire:
    """A minimal blocking request/response connection that counts bytes both ways."""

    def __init__(self, host, port):
        self.s = socket.create_connection((host, port), timeout=30)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.corr = 0
        self.sent = self.recvd = 0

    def call(self, key, version, body):
        self.corr += 1
        hdr = s16(key) + s16(version) + s32(self.corr) + sstr("fsbench")
        frame = s32(len(hdr) + len(body)) + hdr + body
        self.s.sendall(frame)
        self.sent += len(frame)
        n = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(n)
        self.recvd += 4 + n
        r = Reader(data)
        assert r.i32() == self.corr
        return r

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise EOFError("closed")
            buf += chunk
        return bytes(buf)


def fetch(w, sid, epoch, parts):
    """Fetch v11; parts {partition: offset}. Returns (error, session, {partition: next offset
    known from the answer (hw when records came)})."""
    topics = [sstr(TOPIC) + arr([s32(p) + s32(-1) + s64(o) + s64(-1) + s32(1 << 20)
                                 for p, o in sorted(parts.items())])] if parts else []
    body = (s32(-1) + s32(0) + s32(0) + s32(50 << 20) + b"\x00" + s32(sid) + s32(epoch) +
            arr(topics) + arr([]) + sstr(""))
    r = w.call(1, 11, body)
    r.i32()
    err, sid = r.i16(), r.i32()
    moved = {}
    for _ in range(r.i32()):
        r.str()
        for _ in range(r.i32()):
            part, _perr, hw, _lso, _ls = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
            for _ in range(max(r.i32(), 0)):
                r.i64(), r.i64()
            r.i32()
            recs = r.bytes()
            if recs:
                moved[part] = hw
    return err, sid, moved


def run_mode(b, partitions, seconds, session):
    w = Wire(b.host, b.port)
    offsets = {p: 0 for p in range(partitions)}
    # start at each partition's end (a first full fetch tells the high watermarks)
    _, _, moved = fetch(w, 0, -1, offsets)
    offsets.update(moved)
    sid, epoch = 0, -1
    if session:
        err, sid, moved = fetch(w, 0, 0, offsets)
        assert err == 0 and sid > 0, "no session (%d %d)" % (err, sid)
        offsets.update(moved)
        epoch = 1
    w.sent = w.recvd = 0
    n, got = 0, 0
    changed = {}
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        if session:
            err, _, moved = fetch(w, sid, epoch, changed)
            epoch += 1
        else:
            err, _, moved = fetch(w, 0, -1, offsets)
        assert err == 0, "fetch error %d" % err
        offsets.update(moved)
        changed = dict(moved)
        got += len(moved)
        n += 1
    dt = time.monotonic() - t0
    w.s.close()
    return {"fetches/s": n / dt, "req B/fetch": w.sent / n, "resp B/fetch": w.recvd / n,
            "partitions with records/fetch": got / n}


def trickle(b, partitions, stop, every_ms):
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 0})
    i = 0
    while not stop.is_set():
        p.produce(TOPIC, value=b"t%d" % i, partition=i % partitions)
        p.poll(0)
        i += 1
        time.sleep(every_ms / 1000.0)
    p.flush(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=1000)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--trickle-ms", type=float, default=5)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--binary", default=None)
    a = ap.parse_args()
    binary = a.binary or binary_path()
    with Broker(io=a.io, shards=2, binary=binary,
                config={"num.partitions": a.partitions}) as b:
        p = ck.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
        for i in range(a.partitions * 3):
            p.produce(TOPIC, value=b"x%d" % i, partition=i % a.partitions)
        assert p.flush(60) == 0
        stop = threading.Event()
        t = threading.Thread(target=trickle, args=(b, a.partitions, stop, a.trickle_ms))
        t.start()
        time.sleep(0.5)
        try:
            res = {"sessionless": run_mode(b, a.partitions, a.seconds, False),
                   "session": run_mode(b, a.partitions, a.seconds, True)}
        finally:
            stop.set()
            t.join()
    print("binary %s, %d partitions, one record every %.1f ms, %.0f s per mode, io %s" %
          (binary, a.partitions, a.trickle_ms, a.seconds, a.io))
    keys = list(res["sessionless"])
    print("%-32s %14s %14s %10s" % ("", "sessionless", "session", "ratio"))
    for k in keys:
        x, y = res["sessionless"][k], res["session"][k]
        print("%-32s %14.1f %14.1f %10.3f" % (k, x, y, y / x if x else float("nan")))


if __name__ == "__main__":
    main()
