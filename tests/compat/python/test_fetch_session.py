"""Incremental fetch sessions (KIP-227) with hand-built Fetch frames: a full fetch (epoch 0)
makes a session; incremental fetches name only what changed and are answered with only what
changed; stale epochs, unknown ids, topic-id mode switches, forgotten partitions, a parked
incremental fetch woken by an append, closing with epoch -1, a parked fetch ended (and
answered first) by a later Fetch on its session pipelined on the same connection; then the
cache's bounds: no slot for a newcomer while the sessions are young, the stale one evicted
first, then the smaller one by a larger newcomer. Last, Kafka's console consumer (the Java
client, which fetches with sessions) reads 20,000 records of 16 partitions exactly once while
/metrics shows its session.

    /usr/bin/python3 test_fetch_session.py --io uring|epoll
"""
import argparse
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, java_cmd, run_scenario  # noqa: E402
from laminar_harness import free_port  # noqa: E402

import confluent_kafka as ck  # noqa: E402
import kafka_wire  # noqa: E402
from kafka_wire import arr, carr, s32, s64, sstr, uvar  # noqa: E402

TOPIC = "fsess"
PARTS = 3
NONE, OUT_OF_RANGE = 0, 1
SESSION_NOT_FOUND, INVALID_EPOCH, TOPIC_ID_ERROR = 70, 71, 106


def produce(b, partition, n, tag="x"):
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False,
                     "linger.ms": 0})
    for i in range(n):
        p.produce(TOPIC, value=("%s%d" % (tag, i)).encode(), partition=partition)
    check(p.flush(30) == 0, "flush")


def fetch_v11_body(session_id, epoch, parts, forgotten=(), max_wait=0, min_bytes=0):
    topics = []
    if parts:
        topics.append(sstr(TOPIC) + arr([s32(p) + s32(-1) + s64(o) + s64(-1) + s32(1 << 20)
                                         for p, o in parts]))
    forg = [sstr(TOPIC) + arr([s32(p) for p in forgotten])] if forgotten else []
    return (s32(-1) + s32(max_wait) + s32(min_bytes) + s32(8 << 20) + b"\x00" + s32(session_id) +
            s32(epoch) + arr(topics) + arr(forg) + sstr(""))


def fetch_v11(c, session_id, epoch, parts, forgotten=(), max_wait=0, min_bytes=0):
    """Fetch v11 (topic names). parts: [(partition, offset)]; forgotten: [partition].
    Returns (error, session_id, {partition: (error, hw, log_start, record bytes)})."""
    r = c.call(1, 11, fetch_v11_body(session_id, epoch, parts, forgotten, max_wait, min_bytes))
    return fetch_v11_parse(r)


def fetch_v11_pipelined(c, *bodies):
    """Sends the Fetch v11 bodies back to back on c, then reads their answers (in order)."""
    first = c.corr + 1
    for body in bodies:
        c.send(1, 11, body)
    last, out = c.corr, []
    for i in range(len(bodies)):
        c.corr = first + i
        out.append(fetch_v11_parse(c.response()))
    c.corr = last
    return out


def fetch_v11_parse(r):
    r.i32()  # throttle
    err, sid = r.i16(), r.i32()
    out = {}
    for _ in range(r.i32()):
        check(r.str() == TOPIC, "fetch: topic name")
        for _ in range(r.i32()):
            part, perr, hw, _lso, lstart = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
            na = r.i32()
            for _ in range(max(na, 0)):
                r.i64(), r.i64()
            r.i32()  # preferred read replica
            recs = r.bytes()
            check(part not in out, "fetch: partition %d answered twice" % part)
            out[part] = (perr, hw, lstart, len(recs or b""))
    return err, sid, out


def fetch_v13_empty(c, session_id, epoch):
    """An incremental Fetch v13 (topic ids, flexible) naming no partition: (error, session)."""
    body = (s32(-1) + s32(0) + s32(0) + s32(1 << 20) + b"\x00" + s32(session_id) + s32(epoch) +
            carr([]) + carr([]) + uvar(1) + b"\x00")
    r = c.call(1, 13, body, flexible=True)
    r.i32()
    return r.i16(), r.i32()


def scenario_sessions(b):
    for p in range(PARTS):
        produce(b, p, 5)
    c = kafka_wire.Conn(b.host, b.port, "fsess-test", 15)

    # A sessionless fetch (epoch -1) makes no session.
    err, sid, out = fetch_v11(c, 0, -1, [(p, 0) for p in range(PARTS)])
    check(err == NONE and sid == 0 and len(out) == PARTS, "sessionless: %d %d %s" % (err, sid, out))

    # Full fetch, epoch 0: a session, every partition answered.
    err, sid, out = fetch_v11(c, 0, 0, [(p, 0) for p in range(PARTS)])
    check(err == NONE and sid > 0, "full fetch makes a session (%d, %d)" % (err, sid))
    check(sorted(out) == list(range(PARTS)) and all(o[1] == 5 and o[3] > 0 for o in out.values()),
          "full fetch answers every partition: %s" % out)

    # Incremental 1: the client moved to the end of each; nothing changed, nothing answered.
    err, sid1, out = fetch_v11(c, sid, 1, [(p, 5) for p in range(PARTS)])
    check(err == NONE and sid1 == sid and out == {}, "nothing new: %d %d %s" % (err, sid1, out))

    # New records in partition 1 only: an empty incremental request gets partition 1 alone.
    produce(b, 1, 3, "y")
    err, _, out = fetch_v11(c, sid, 2, [])
    check(err == NONE and list(out) == [1] and out[1][1] == 8 and out[1][3] > 0,
          "only the partition that grew: %s" % out)

    # The same epoch again (a duplicate): INVALID_FETCH_SESSION_EPOCH, no data, session 0.
    err, sid2, out = fetch_v11(c, sid, 2, [])
    check(err == INVALID_EPOCH and sid2 == 0 and out == {}, "stale epoch: %d %d" % (err, sid2))
    # ... and the session goes on at the next epoch (partition 1 still at 5: answered again).
    err, _, out = fetch_v11(c, sid, 3, [])
    check(err == NONE and list(out) == [1], "session after a stale epoch: %s" % out)

    # Partition 1 moves to 8, partition 0 is forgotten; new records in 0 are then not answered.
    err, _, out = fetch_v11(c, sid, 4, [(1, 8)], forgotten=[0])
    check(err == NONE and out == {}, "update + forget: %s" % out)
    produce(b, 0, 2, "z")
    err, _, out = fetch_v11(c, sid, 5, [])
    check(err == NONE and out == {}, "a forgotten partition is not fetched: %s" % out)
    # Added back at its end, it is answered once (its high watermark is news to the session).
    err, _, out = fetch_v11(c, sid, 6, [(0, 7)])
    check(err == NONE and list(out) == [0] and out[0][1] == 7 and out[0][3] == 0,
          "re-added partition: %s" % out)

    # An offset past the end is an error, answered every time it is asked.
    err, _, out = fetch_v11(c, sid, 7, [(2, 99)])
    check(err == NONE and out.get(2, (None,))[0] == OUT_OF_RANGE, "error answered: %s" % out)
    err, _, out = fetch_v11(c, sid, 8, [])
    check(err == NONE and out.get(2, (None,))[0] == OUT_OF_RANGE, "error again: %s" % out)
    err, _, out = fetch_v11(c, sid, 9, [(2, 5)])
    check(err == NONE and list(out) == [2] and out[2][0] == NONE, "error cleared: %s" % out)

    # Unknown id; a topic-id request on a by-name session.
    err, s, _ = fetch_v11(c, sid + 1, 1, [])
    check(err == SESSION_NOT_FOUND and s == 0, "unknown session: %d" % err)
    err, s = fetch_v13_empty(c, sid, 10)
    check(err == TOPIC_ID_ERROR and s == 0, "topic-id mode switch: %d" % err)

    # A parked incremental fetch is woken by an append to a session partition.
    t = threading.Timer(0.5, produce, (b, 2, 1, "w"))
    t.start()
    t0 = time.monotonic()
    err, _, out = fetch_v11(c, sid, 10, [], max_wait=8000, min_bytes=1)
    waited = time.monotonic() - t0
    t.join()
    check(err == NONE and list(out) == [2] and out[2][1] == 6 and out[2][3] > 0,
          "long poll answered with the partition that grew: %s" % out)
    check(waited < 6, "long poll woken by the append (%.1f s)" % waited)

    # A fetch of no partition is answered at once, not parked for max_wait (Kafka's
    # ReplicaManager: fetchInfos.isEmpty); the Java consumer's close() sends one.
    t0 = time.monotonic()
    err, s, out = fetch_v11(c, 0, -1, [], max_wait=8000, min_bytes=1)
    waited = time.monotonic() - t0
    check(err == NONE and s == 0 and not out and waited < 4,
          "empty sessionless fetch answered at once (%.1f s): %d %s" % (waited, err, out))

    # Epoch -1 closes the session; it is gone afterwards.
    err, s, out = fetch_v11(c, sid, -1, [(0, 0)])
    check(err == NONE and s == 0 and list(out) == [0], "close: %d %d %s" % (err, s, out))
    err, _, _ = fetch_v11(c, sid, 11, [])
    check(err == SESSION_NOT_FOUND, "closed session is gone: %d" % err)
    # A full fetch naming an old id closes it and makes a new one.
    err, sa, _ = fetch_v11(c, 0, 0, [(0, 0)])
    err2, sb, _ = fetch_v11(c, sa, 0, [(0, 0)])
    check(err == err2 == NONE and sa > 0 and sb > 0 and sa != sb, "reopen: %d %d" % (sa, sb))
    check(fetch_v11(c, sa, 1, [])[0] == SESSION_NOT_FOUND, "the replaced session is gone")
    check(fetch_v11(c, sb, 1, [])[0] == NONE, "the new session works")

    # A Fetch naming the session of a long-poll parked on the same connection (the Java
    # consumer's close(): epoch -1 pipelined behind its parked fetch) is answered after it, as
    # Kafka answers a connection's requests one at a time, and ends its wait: the parked fetch
    # answers at once, with its session intact, then the close. (Before, the close was applied
    # under the parked fetch, which answered FETCH_SESSION_ID_NOT_FOUND at max_wait_ms.)
    err, sc, out = fetch_v11(c, 0, 0, [(0, 0)])
    check(err == NONE and sc > 0, "session for the pipelined close: %d" % err)
    end = out[0][1]
    check(fetch_v11(c, sc, 1, [(0, end)])[0] == NONE, "moved to the end")
    t0 = time.monotonic()
    (e1, s1, o1), (e2, s2, o2) = fetch_v11_pipelined(
        c, fetch_v11_body(sc, 2, [], max_wait=60000, min_bytes=1), fetch_v11_body(sc, -1, []))
    waited = time.monotonic() - t0
    check(e1 == NONE and s1 == sc and o1 == {}, "parked fetch answered normally: %d %d %s"
          % (e1, s1, o1))
    check(e2 == NONE and s2 == 0, "then the close: %d %d" % (e2, s2))
    check(waited < 30, "the close ended the long poll (%.1f s of max_wait 60 s)" % waited)
    check(fetch_v11(c, sc, 3, [])[0] == SESSION_NOT_FOUND, "the pipelined close closed it")
    # Two incremental fetches pipelined on one session: in order, each epoch taken in turn.
    err, sd, out = fetch_v11(c, 0, 0, [(0, end)])
    check(err == NONE and sd > 0, "session for pipelined fetches: %d" % err)
    t0 = time.monotonic()
    (e1, s1, _), (e2, s2, _) = fetch_v11_pipelined(
        c, fetch_v11_body(sd, 1, [], max_wait=60000, min_bytes=1), fetch_v11_body(sd, 2, []))
    waited = time.monotonic() - t0
    check(e1 == NONE and s1 == sd and e2 == NONE and s2 == sd,
          "pipelined incremental fetches: %d %d / %d %d" % (e1, s1, e2, s2))
    check(waited < 30, "the second fetch ended the first's long poll (%.1f s)" % waited)
    check(fetch_v11(c, sd, 3, [])[0] == NONE, "the session goes on at epoch 3")
    c.close()


def scenario_eviction(b):
    for p in range(PARTS):
        produce(b, p, 1)
    c = kafka_wire.Conn(b.host, b.port, "fsess-evict", 15)
    _, a, _ = fetch_v11(c, 0, 0, [(0, 0)])
    _, bb, _ = fetch_v11(c, 0, 0, [(1, 0)])
    check(a > 0 and bb > 0, "two sessions fit two slots")
    _, s, _ = fetch_v11(c, 0, 0, [(p, 0) for p in range(PARTS)])
    check(s == 0, "no slot: young sessions are not evicted (got %d)" % s)
    time.sleep(2.0)
    check(fetch_v11(c, bb, 1, [(1, 1)])[0] == NONE, "b used")
    _, cc, _ = fetch_v11(c, 0, 0, [(p, 0) for p in range(PARTS)])
    check(cc > 0, "the stale session made room")
    check(fetch_v11(c, a, 1, [])[0] == SESSION_NOT_FOUND, "the stale session (a) was evicted")
    # b is old but in use: a larger newcomer evicts the smaller one (b), not c.
    _, d, _ = fetch_v11(c, 0, 0, [(p, 0) for p in range(PARTS)])
    check(d > 0, "a larger newcomer evicts the smaller old session")
    check(fetch_v11(c, bb, 2, [])[0] == SESSION_NOT_FOUND, "b was evicted")
    check(fetch_v11(c, cc, 1, [])[0] == NONE, "c stays")
    c.close()


def metric(port, name):
    text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read()
    m = re.search(r"^%s (\d+)$" % re.escape(name), text.decode(), re.M)
    check(m is not None, "metric %s missing" % name)
    return int(m.group(1))


SESSIONS = "kafka_server_fetchsessioncache_numincrementalfetchsessions"
CACHED = "kafka_server_fetchsessioncache_numincrementalfetchpartitionscached"


def scenario_java(b, http_port):
    lib = os.path.join(os.path.dirname(__file__), "..", "java", "lib")
    if not os.path.exists(os.path.join(lib, ".complete")):
        raise AssertionError("tests/compat/java/prepare has not run")
    check(metric(http_port, SESSIONS) == 0, "no session before the consumer")
    n = 20000
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "linger.ms": 5})
    for i in range(n):
        p.produce("fsjava", value=b"r%06d" % i, partition=i % 16)
    check(p.flush(60) == 0, "flush")
    # one record more than there are: the consumer reads all, then idles (fetching with its
    # session) until its 10 s timeout; the session is closed when it exits (epoch -1). The
    # timeout also bounds the JVM's start and group join before the first record, which took
    # more than 4 s on a loaded machine (ConsoleConsumer: TimeoutException, 0 records)
    proc = subprocess.Popen(
        java_cmd(os.path.join(lib, "*"), "org.apache.kafka.tools.consumer.ConsoleConsumer",
                 "--bootstrap-server", b.bootstrap, "--topic", "fsjava", "--group", "fsj",
                 "--from-beginning", "--max-messages", str(n + 1), "--timeout-ms", "10000"),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    most = [0, 0]
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout.read().splitlines()))
    reader.start()
    deadline = time.monotonic() + 180
    while proc.poll() is None and time.monotonic() < deadline:
        most = [max(most[0], metric(http_port, SESSIONS)), max(most[1], metric(http_port, CACHED))]
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
    reader.join()
    out = b"\n".join(lines).decode("utf-8", "replace")
    got = [line for line in out.splitlines() if re.fullmatch(r"r\d{6}", line)]
    check(len(got) == n and len(set(got)) == n,
          "console consumer read %d records (%d distinct) of %d:\n%s" %
          (len(got), len(set(got)), n, out[-2000:]))
    check(most[0] >= 1 and most[1] >= 16,
          "the Java consumer fetched with a session (at most %d sessions, %d partitions)" %
          tuple(most))
    time.sleep(0.5)
    check(metric(http_port, SESSIONS) == 0, "the consumer closed its session when it left")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    a = ap.parse_args()
    b = Broker(io=a.io, shards=2, config={"num.partitions": PARTS})
    rc = run_scenario(b, "fetch sessions", lambda: scenario_sessions(b))
    cfg = {"num.partitions": PARTS, "max.incremental.fetch.session.cache.slots": 2,
           "laminar.fetch.session.eviction.ms": 1500}
    e = Broker(io=a.io, shards=1, config=cfg)
    rc |= run_scenario(e, "fetch session eviction", lambda: scenario_eviction(e))
    http = free_port()
    # No initial rebalance delay: the console consumer's --timeout-ms covers its first
    # poll, which would otherwise hold the group's 3 s join delay plus the client's start-up
    # (over 4 s on a loaded machine, when it was 4 s: no record read, TimeoutException)
    j = Broker(io=a.io, shards=2, config={"num.partitions": 16,
                                          "group.initial.rebalance.delay.ms": 0,
                                          "laminar.http.listener": "127.0.0.1:%d" % http})
    rc |= run_scenario(j, "fetch sessions: Java consumer", lambda: scenario_java(j, http))
    sys.exit(rc)


if __name__ == "__main__":
    main()
