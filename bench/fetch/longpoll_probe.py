#!/usr/bin/python3
"""Long-poll answer time of Fetch on an empty partition, raw wire, against one broker.

    bench/fetch/longpoll_probe.py --bootstrap HOST:PORT [--rounds 5] [--max-wait-ms 500]
    bench/fetch/longpoll_probe.py --laminar BUILD_DIR --io uring|epoll --shards N [...]

Creates topic `lpprobe` (8 partitions, confluent_kafka's AdminClient), then on one connection
sends Fetch v11 (max_wait_ms, min_bytes=1) on each empty partition alone and times the answer;
with --laminar it prints each partition's owner shard (broker_partition_shard: FNV-1a 64 of
topic + big-endian partition), so a fetch on the connection's shard and one crossing to the
other shard are told apart (the connection's shard is the one whose partitions answer alike).
Then: every partition in one fetch; a full fetch making a session (epoch 0) followed by
incremental ones; a parked fetch with a request pipelined behind it (ApiVersions, then a
Fetch naming no partition with epoch -1, which is what the Java consumer's close() sends).
Prints ms per case; no assertion (timings are figures, not pass/fail).
"""
import argparse
import os
import statistics
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "harness"))
import kafka_wire  # noqa: E402
from kafka_wire import arr, s32, s64, sstr  # noqa: E402

TOPIC = "lpprobe"
PARTS = 8


def fnv1a64(data, h=0xcbf29ce484222325):
    for b in data:
        h ^= b
        h = (h * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h


def owner_shard(partition, nshards):
    return fnv1a64(struct.pack(">i", partition), fnv1a64(TOPIC.encode())) % nshards


def fetch_body(parts, max_wait, session_id=0, epoch=-1, min_bytes=1):
    topics = []
    if parts:
        topics.append(sstr(TOPIC) + arr([s32(p) + s32(-1) + s64(0) + s64(-1) + s32(1 << 20)
                                         for p in parts]))
    return (s32(-1) + s32(max_wait) + s32(min_bytes) + s32(8 << 20) + b"\x00" + s32(session_id) +
            s32(epoch) + arr(topics) + arr([]) + sstr(""))


def fetch_session_id(r):
    r.i32()  # throttle
    r.i16()  # error
    return r.i32()


def timed_call(c, key, ver, body):
    t0 = time.monotonic()
    r = c.call(key, ver, body)
    return (time.monotonic() - t0) * 1000.0, r


def pipelined(c, first, second):
    """Sends two requests back to back; ms until each answer (answers come in order)."""
    t0 = time.monotonic()
    c.send(*first)
    corr1 = c.corr
    c.send(*second)
    corr2 = c.corr
    c.corr = corr1
    c.response()
    t1 = (time.monotonic() - t0) * 1000.0
    c.corr = corr2
    c.response()
    t2 = (time.monotonic() - t0) * 1000.0
    return t1, t2


def fmt(xs):
    return "median %6.1f  min %6.1f  max %6.1f  [%s]" % (
        statistics.median(xs), min(xs), max(xs), " ".join("%.0f" % x for x in xs))


def probe(host, port, rounds, max_wait, nshards):
    c = kafka_wire.Conn(host, port, "lp-probe", 30)
    for p in range(PARTS):
        xs = [timed_call(c, 1, 11, fetch_body([p], max_wait))[0] for _ in range(rounds)]
        own = " shard %d" % owner_shard(p, nshards) if nshards else ""
        print("fetch p%d%s:        %s" % (p, own, fmt(xs)), flush=True)
    xs = [timed_call(c, 1, 11, fetch_body(list(range(PARTS)), max_wait))[0] for _ in range(rounds)]
    print("fetch all parts:     %s" % fmt(xs), flush=True)
    # a session: full fetch (epoch 0), then incremental ones naming nothing
    ms, r = timed_call(c, 1, 11, fetch_body(list(range(PARTS)), max_wait, 0, 0))
    sid = fetch_session_id(r)
    xs = [ms]
    for e in range(1, rounds):
        xs.append(timed_call(c, 1, 11, fetch_body([], max_wait, sid, e))[0])
    print("session (id %d):     %s" % (sid, fmt(xs)), flush=True)
    a, b = [], []
    for _ in range(rounds):
        t1, t2 = pipelined(c, (1, 11, fetch_body(list(range(PARTS)), max_wait)), (18, 0, b""))
        a.append(t1)
        b.append(t2)
    print("parked + ApiVersions: fetch %s\n                      apiver %s" % (fmt(a), fmt(b)))
    a, b = [], []
    for _ in range(rounds):
        t1, t2 = pipelined(c, (1, 11, fetch_body(list(range(PARTS)), max_wait)),
                           (1, 11, fetch_body([], max_wait)))
        a.append(t1)
        b.append(t2)
    print("parked + empty fetch: fetch %s\n                      empty  %s" % (fmt(a), fmt(b)))
    c.close()


def create_topic(bootstrap):
    import confluent_kafka.admin as cka
    a = cka.AdminClient({"bootstrap.servers": bootstrap})
    fs = a.create_topics([cka.NewTopic(TOPIC, PARTS, 1)])
    for f in fs.values():
        try:
            f.result(30)
        except Exception as e:  # exists already
            if "TOPIC_ALREADY_EXISTS" not in str(e):
                raise
    time.sleep(1.0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap")
    ap.add_argument("--laminar", help="BUILD_DIR: start BUILD_DIR/broker/laminar")
    ap.add_argument("--io", default="uring")
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--max-wait-ms", type=int, default=500)
    a = ap.parse_args()
    if a.laminar:
        from laminar_harness import Broker
        with Broker(io=a.io, shards=a.shards,
                    binary=os.path.join(a.laminar, "broker", "laminar")) as b:
            print("laminar --io %s --shards %d" % (a.io, a.shards), flush=True)
            create_topic(b.bootstrap)
            probe(b.host, b.port, a.rounds, a.max_wait_ms, a.shards)
        return
    host, port = a.bootstrap.rsplit(":", 1)
    create_topic(a.bootstrap)
    probe(host, int(port), a.rounds, a.max_wait_ms, 0)


if __name__ == "__main__":
    main()
