"""Durability across kill -9: a producer with acks=all writes continuously, the broker is
killed with SIGKILL in the middle, restarted on the same data directory, and every
acknowledged record must be read back at its acknowledged offset with its value; topics
(and their partition counts) survive too. A second cycle stops cleanly (SIGTERM) and checks
again, then DeleteRecords-free reads confirm nothing was duplicated.

    /usr/bin/python3 test_restart.py --io uring|epoll
"""
import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402

import confluent_kafka as ck  # noqa: E402

PARTS = 4
TOPIC = "durable"


def produce_until(b, stop, acked, seq_start):
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                     "enable.idempotence": False, "linger.ms": 2, "retries": 0,
                     "message.timeout.ms": 3000, "socket.timeout.ms": 2000})

    def dr(err, msg):
        if err is None:
            acked[(msg.partition(), msg.offset())] = msg.value()

    i = seq_start
    while not stop.is_set():
        try:
            p.produce(TOPIC, value=b"rec-%08d" % i, partition=i % PARTS, on_delivery=dr)
            i += 1
        except BufferError:
            pass
        p.poll(0.001 if i % 50 else 0.01)
    p.flush(5)
    return i


def read_all(b):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused-assign-only",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    out = {}
    ends = {}
    for q in range(PARTS):
        lo, hi = c.get_watermark_offsets(ck.TopicPartition(TOPIC, q), timeout=10)
        check(lo == 0, "log start %d" % lo)
        ends[q] = hi
    c.assign([ck.TopicPartition(TOPIC, q, ck.OFFSET_BEGINNING) for q in range(PARTS)])
    want = sum(ends.values())
    deadline = time.monotonic() + 60
    while len(out) < want and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        key = (m.partition(), m.offset())
        check(key not in out, "offset read twice %r" % (key,))
        out[key] = m.value()
    c.close()
    check(len(out) == want, "read %d of %d records" % (len(out), want))
    for q in range(PARTS):
        offs = sorted(o for (pp, o) in out if pp == q)
        check(offs == list(range(ends[q])), "partition %d has gaps" % q)
    return out


def cycle(b, acked, seq, crash):
    stop = threading.Event()
    res = {}
    t = threading.Thread(target=lambda: res.setdefault("seq", produce_until(b, stop, acked, seq)))
    t.start()
    time.sleep(2.5)
    n_before = len(acked)
    if crash:
        b.kill9()
    else:
        check(b.stop() == 0, "clean stop failed")
    time.sleep(0.3)
    stop.set()
    t.join(30)
    check(n_before > 100, "too few records acknowledged before the kill (%d)" % n_before)
    b.restart()
    got = read_all(b)
    missing = [k for k, v in acked.items() if got.get(k) != v]
    check(not missing, "%d acknowledged records lost or changed, e.g. %r" %
          (len(missing), missing[:5]))
    return res.get("seq", seq), len(got)


def scenario(b):
    acked = {}
    seq, n = cycle(b, acked, 0, crash=True)
    print("kill -9: %d acknowledged, %d in the log after restart" % (len(acked), n))
    seq, n = cycle(b, acked, seq, crash=False)
    print("SIGTERM: %d acknowledged, %d in the log after restart" % (len(acked), n))
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused"})
    md = c.list_topics(TOPIC, timeout=10)
    check(len(md.topics[TOPIC].partitions) == PARTS, "partition count after restarts")
    c.close()
    check(b.stop() == 0, "final stop")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": str(PARTS)})
    return run_scenario(b, "restart (%s)" % io, lambda: scenario(b), tail=4000)


if __name__ == "__main__":
    sys.exit(main())
