"""KIP-932 share groups on the wire, with hand-built frames: ShareGroupHeartbeat errors,
ShareFetch share sessions (epochs, SHARE_SESSION_NOT_FOUND, INVALID_SHARE_SESSION_EPOCH),
acquisition from the share-partition start offset (share.auto.offset.reset latest),
ShareAcknowledge (accept, INVALID_RECORD_STATE for a record acknowledged twice), an
acknowledgement piggybacked on ShareFetch (release: the records come back with delivery count
2), a session closed with epoch -1 releasing what its member held (delivery count 2 for the next
member), ShareGroupDescribe, a topic deleted and made again (its share partition starts
over), and FindCoordinator key type 2 (the share coordinator: this node for a valid
"group:topicId:partition" key, INVALID_REQUEST for a malformed one or below v6), and the share
coordinator's WriteShareGroupState / ReadShareGroupState / DeleteShareGroupState (a state
written, read back, deleted), its fencing (an old leader's write after a new leader's refused
with FENCED_LEADER_EPOCH and changing nothing, an older state epoch FENCED_STATE_EPOCH), and
InitializeShareGroupState / ReadShareGroupStateSummary (83, 87).

    test_share_wire.py --io uring|epoll
"""
import argparse
import os
import struct
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "groups"))
from laminar_harness import Broker  # noqa: E402
from kraw import Conn, idempotent_batch, uvarint  # noqa: E402

FAILS = []
TOPIC, GROUP = "sw-t", "sw-g"


def check(ok, what, detail=None):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok or detail is None else " -- %r" % (detail,)))
    if not ok:
        FAILS.append(what)


def cs(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def carr(items):
    return uvarint(len(items) + 1) + b"".join(items)


TAGS = b"\x00"


class R:
    """A reader of a flexible response body."""

    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)
        self.p += struct.calcsize(fmt)
        return v[0]

    def uv(self):
        shift = v = 0
        while True:
            c = self.b[self.p]
            self.p += 1
            v |= (c & 0x7F) << shift
            shift += 7
            if not c & 0x80:
                return v

    def s(self):
        n = self.uv() - 1
        if n < 0:
            return None
        v = self.b[self.p:self.p + n].decode()
        self.p += n
        return v

    def raw(self):
        n = self.uv() - 1
        v = self.b[self.p:self.p + max(n, 0)]
        self.p += max(n, 0)
        return v

    def arr(self, fn):
        n = self.uv() - 1
        return None if n < 0 else [fn() for _ in range(n)]

    def uuid(self):
        v = self.b[self.p:self.p + 16]
        self.p += 16
        return v

    def tags(self):
        for _ in range(self.uv()):
            self.uv()
            self.p += self.uv()


def heartbeat(c, member, epoch, topics=None, group=GROUP):
    body = cs(group) + cs(member) + struct.pack(">i", epoch) + b"\x00"   # rack null
    body += b"\x00" if topics is None else carr([cs(t) for t in topics])
    body += TAGS
    r = R(c.call(76, 1, body, True))
    r.take(">i")
    out = {"error": r.take(">h"), "message": r.s(), "member": r.s(), "epoch": r.take(">i"),
           "interval": r.take(">i"), "assignment": None}
    if r.take(">b") >= 0:
        def tp():
            tid = r.uuid()
            ps = r.arr(lambda: r.take(">i"))
            r.tags()
            return (tid, ps)
        out["assignment"] = r.arr(tp)
        r.tags()
    return out


def ack_batches(acks):
    return carr([struct.pack(">qq", f, l) + carr([struct.pack(">b", t) for t in ts]) + TAGS
                 for f, l, ts in acks])


def share_fetch(c, member, epoch, tid, acks=(), wait_ms=300, max_records=100, group=GROUP,
                partitions=(0,)):
    body = cs(group) + cs(member) + struct.pack(">iiiiii", epoch, wait_ms, 1, 1 << 20,
                                                max_records, max_records)
    body += carr([tid + carr([struct.pack(">i", p) + ack_batches(acks if p == 0 else ()) + TAGS
                              for p in partitions]) + TAGS])
    body += carr([]) + TAGS                     # forgotten topics
    r = R(c.call(78, 1, body, True))
    r.take(">i")
    out = {"error": r.take(">h"), "message": r.s(), "lock_ms": r.take(">i"), "parts": []}

    def part():
        p = {"index": r.take(">i"), "error": r.take(">h")}
        r.s()
        p["ack_error"] = r.take(">h")
        r.s()
        r.take(">i")
        r.take(">i")
        r.tags()                                # current leader
        p["records"] = len(r.raw())

        def acq():
            a = (r.take(">q"), r.take(">q"), r.take(">h"))
            r.tags()
            return a
        p["acquired"] = r.arr(acq)
        r.tags()
        return p

    def topic():
        r.uuid()
        out["parts"] += r.arr(part)
        r.tags()
    r.arr(topic)
    return out


def share_ack(c, member, epoch, tid, acks, group=GROUP):
    body = cs(group) + cs(member) + struct.pack(">i", epoch)
    body += carr([tid + carr([struct.pack(">i", 0) + ack_batches(acks) + TAGS]) + TAGS]) + TAGS
    r = R(c.call(79, 1, body, True))
    r.take(">i")
    out = {"error": r.take(">h"), "message": r.s(), "parts": []}

    def part():
        p = {"index": r.take(">i"), "error": r.take(">h")}
        r.s()
        r.take(">i")
        r.take(">i")
        r.tags()
        r.tags()
        return p

    def topic():
        r.uuid()
        out["parts"] += r.arr(part)
        r.tags()
    r.arr(topic)
    return out


def describe(c):
    r = R(c.call(77, 1, carr([cs(GROUP)]) + b"\x00" + TAGS, True))
    r.take(">i")

    def member():
        m = {"id": r.s()}
        r.s()
        m["epoch"] = r.take(">i")
        r.s()
        r.s()
        m["topics"] = r.arr(r.s)
        r.arr(lambda: (r.uuid(), r.s(), r.arr(lambda: r.take(">i")), r.tags()))
        r.tags()                                # assignment struct
        r.tags()
        return m

    def group():
        g = {"error": r.take(">h"), "message": r.s(), "id": r.s(), "state": r.s(),
             "epoch": r.take(">i"), "aepoch": r.take(">i"), "assignor": r.s()}
        g["members"] = r.arr(member)
        r.take(">i")
        r.tags()
        return g
    return r.arr(group)[0]


def acquired(out):
    return [a for p in out["parts"] for a in (p["acquired"] or [])]


def find_share_coordinator(c, keys, version=6):
    """FindCoordinator v4+ with key type 2: [(key, node, port, error)]."""
    body = struct.pack(">b", 2) + carr([cs(k) for k in keys]) + TAGS
    r = R(c.call(10, version, body, True))
    r.take(">i")
    out = []
    for _ in range(r.uv() - 1):
        key, node = r.s(), r.take(">i")
        r.s()
        port, err = r.take(">i"), r.take(">h")
        r.s()
        r.uv()
        out.append((key, node, port, err))
    return out


def state_call(c, key, group, tid, part):
    """A share coordinator API (83-87) v0 of one share partition (its partition data part,
    without its tagged fields): the reader at the partition's error code."""
    body = cs(group) + carr([tid + carr([part + TAGS]) + TAGS]) + TAGS
    r = R(c.call(key, 0, body, True))
    r.uv()
    r.take("16s")
    r.uv()
    r.take(">i")
    return r


def write_state(c, group, tid, partition, start, batches, state_epoch=1, leader_epoch=0):
    """WriteShareGroupState v0 of one share partition: its error."""
    bs = [struct.pack(">qqbh", f, l, st, n) + TAGS for f, l, st, n in batches]
    part = struct.pack(">iiiq", partition, state_epoch, leader_epoch, start) + carr(bs)
    return state_call(c, 85, group, tid, part).take(">h")


def delete_state(c, group, tid, partition):
    """DeleteShareGroupState v0 of one share partition: its error."""
    return state_call(c, 86, group, tid, struct.pack(">i", partition)).take(">h")


def initialize_state(c, group, tid, partition, state_epoch, start):
    """InitializeShareGroupState v0 of one share partition: its error."""
    part = struct.pack(">iiq", partition, state_epoch, start)
    return state_call(c, 83, group, tid, part).take(">h")


def summary_state(c, group, tid, partition, leader_epoch=-1):
    """ReadShareGroupStateSummary v0 of one share partition: (error, state epoch, leader epoch,
    start offset)."""
    r = state_call(c, 87, group, tid, struct.pack(">ii", partition, leader_epoch))
    err = r.take(">h")
    r.s()
    return err, r.take(">i"), r.take(">i"), r.take(">q")


def read_state(c, group, tid, partition, leader_epoch=0):
    """ReadShareGroupState v0 of one share partition: (error, state epoch, start, batches)."""
    r = state_call(c, 84, group, tid, struct.pack(">ii", partition, leader_epoch))
    err = r.take(">h")
    r.s()
    epoch, start = r.take(">i"), r.take(">q")
    batches = []
    for _ in range(r.uv() - 1):
        batches.append((r.take(">q"), r.take(">q"), r.take(">b"), r.take(">h")))
        r.uv()
    return err, epoch, start, batches


def api_versions(c):
    """ApiVersions v0: {key: (min, max)}."""
    r = c.call(18, 0, b"", False)
    err, n = struct.unpack(">hi", r[:6])
    assert err == 0, err
    return {k: (lo, hi) for k, lo, hi in
            (struct.unpack(">hhh", r[6 + 6 * i:12 + 6 * i]) for i in range(n))}


def set_group_configs(c, group, configs):
    """IncrementalAlterConfigs v1 (SET) of a GROUP resource (type 32): the error codes."""
    ops = [cs(k) + struct.pack(">b", 0) + cs(v) + TAGS for k, v in configs.items()]
    body = carr([struct.pack(">b", 32) + cs(group) + carr(ops) + TAGS]) + b"\x00" + TAGS
    r = R(c.call(44, 1, body, True))
    r.take(">i")

    def res():
        e = r.take(">h")
        r.s()
        r.take(">b")
        r.s()
        r.tags()
        return e
    return r.arr(res)


def topic_id_of(c, topic, group):
    """Joins member "tid-probe" to group on topic for its topic id, then leaves."""
    r = heartbeat(c, "tid-probe", 0, [topic], group=group)
    deadline = time.monotonic() + 10
    while r["error"] == 0 and not r["assignment"] and time.monotonic() < deadline:
        time.sleep(0.1)
        r = heartbeat(c, "tid-probe", r["epoch"], group=group)
    heartbeat(c, "tid-probe", -1, group=group)
    return r["assignment"][0][0] if r["assignment"] else b"\x00" * 16


def in_thread(fn, *args, **kw):
    """Runs fn in a thread: a callable returning (result, monotonic time it returned)."""
    import threading
    out = {}

    def run():
        out["r"] = fn(*args, **kw)
        out["t"] = time.monotonic()
    th = threading.Thread(target=run)
    th.start()

    def join():
        th.join(30)
        return out.get("r"), out.get("t", float("inf"))
    return join


def broker_cpu_s(pid):
    """utime + stime of the broker process, in seconds."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def control_and_read_committed(b, a, c):
    """Control records are never acquired (archived: the transaction markers' offsets are in no
    AcquiredRecords range and never come back); share.isolation.level=read_committed acquires
    up to the last stable offset and never the records of an aborted transaction."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import NewTopic
    topic = "sw-tx"
    a.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    for g, cfg in (("sw-rc", {"share.auto.offset.reset": "earliest",
                              "share.isolation.level": "read_committed"}),
                   ("sw-ru", {"share.auto.offset.reset": "earliest"})):
        errs = set_group_configs(c, g, cfg)
        check(errs == [0], "group configs of %s: %r" % (g, cfg), errs)
    tp = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "sw-txp",
                   "linger.ms": 0})
    tp.init_transactions(30)

    def txn(values, commit):
        tp.begin_transaction()
        for v in values:
            tp.produce(topic, v, partition=0)
        tp.flush(30)
        if commit is True:
            tp.commit_transaction(30)
        elif commit is False:
            tp.abort_transaction(30)
    txn([b"a0", b"a1"], True)          # 0-1, commit marker 2
    txn([b"b0", b"b1"], False)         # 3-4, abort marker 5
    err, base = c.produce(topic, 0, idempotent_batch(-1, -1, -1, [b"c0"]), acks=1)
    check(err == 0 and base == 6, "a plain record at 6", (err, base))
    txn([b"d0"], None)                 # 7, its transaction still open
    tid = topic_id_of(c, topic, "sw-rc")
    f = share_fetch(c, "r1", 0, tid, group="sw-rc", wait_ms=500)
    check(f["error"] == 0 and acquired(f) == [(0, 1, 1), (6, 6, 1)],
          "read_committed: the committed records and the plain one, not the aborted ones nor "
          "the open transaction's (past the last stable offset) nor the markers", f)
    f = share_fetch(c, "r1", 1, tid, group="sw-rc", wait_ms=300)
    check(f["error"] == 0 and not acquired(f),
          "read_committed: nothing more while the transaction is open", f)
    tp.commit_transaction(30)           # marker 8
    f = share_fetch(c, "r1", 2, tid, group="sw-rc", wait_ms=2000)
    check(f["error"] == 0 and acquired(f) == [(7, 7, 1)],
          "read_committed: the record once its transaction committed", f)
    f = share_fetch(c, "u1", 0, tid, group="sw-ru", wait_ms=500)
    check(f["error"] == 0 and acquired(f) == [(0, 1, 1), (3, 4, 1), (6, 7, 1)],
          "read_uncommitted: every data record, aborted ones too, and no transaction marker "
          "(offsets 2, 5, 8)", f)
    # the markers were archived, not acquired: releasing everything brings back only records
    f = share_fetch(c, "u1", 1, tid, group="sw-ru", wait_ms=300,
                    acks=[(0, 1, [2]), (3, 4, [2]), (6, 7, [2])])
    check(f["error"] == 0 and f["parts"][0]["ack_error"] == 0 and
          acquired(f) == [(0, 1, 2), (3, 4, 2), (6, 7, 2)],
          "released records come back (delivery count 2), the markers never", f)
    f = share_fetch(c, "u1", 2, tid, group="sw-ru", wait_ms=300,
                    acks=[(0, 1, [1]), (3, 4, [1]), (6, 7, [1])])
    check(f["error"] == 0 and f["parts"][0]["ack_error"] == 0 and not acquired(f),
          "everything accepted: nothing left to acquire", f)
    tp.flush(5)


def waking(b, a, c):
    """A ShareFetch parked until max_wait_ms is answered as soon as it can acquire: on new data,
    on records another member releases, when a lock runs out, and when the connection of the
    member holding records closes (its share session closes, its records are released, as
    Kafka's ShareSessionCache does on a disconnect); and an idle parked ShareFetch costs no
    CPU (it is not re-polled)."""
    from confluent_kafka.admin import NewTopic
    topic = "sw-wk"
    a.create_topics([NewTopic(topic, 1, 1), NewTopic("sw-idle", 16, 1)])
    time.sleep(0.5)
    for g, cfg in (("sw-wk", {"share.auto.offset.reset": "earliest"}),
                   ("sw-lk", {"share.auto.offset.reset": "earliest",
                              "share.record.lock.duration.ms": "1000"})):
        errs = set_group_configs(c, g, cfg)
        check(errs == [0], "group configs of %s: %r" % (g, cfg), errs)
    tid = topic_id_of(c, topic, "sw-wk")
    c1, c2, c3 = Conn(b.host, b.port), Conn(b.host, b.port), Conn(b.host, b.port)
    f = share_fetch(c1, "w1", 0, tid, group="sw-wk", wait_ms=100)
    check(f["error"] == 0 and not acquired(f), "w1 opens its session on an empty topic", f)
    # new data
    join = in_thread(share_fetch, c1, "w1", 1, tid, group="sw-wk", wait_ms=5000)
    time.sleep(0.5)
    t_prod = time.monotonic()
    err, _ = c.produce(topic, 0, idempotent_batch(-1, -1, -1, [b"x0"]), acks=1)
    f, t_done = join()
    check(f is not None and acquired(f) == [(0, 0, 1)] and t_done - t_prod < 0.3,
          "a parked ShareFetch is answered when a record is produced (%.0f ms after it)" %
          ((t_done - t_prod) * 1000), f)
    # another member's release
    f = share_fetch(c2, "w2", 0, tid, group="sw-wk", wait_ms=100)
    check(f["error"] == 0 and not acquired(f), "w2: nothing while w1 holds offset 0", f)
    join = in_thread(share_fetch, c2, "w2", 1, tid, group="sw-wk", wait_ms=5000)
    time.sleep(0.5)
    k = share_ack(c1, "w1", 2, tid, [(0, 0, [2])], group="sw-wk")
    t_rel = time.monotonic()
    f, t_done = join()
    check(k["error"] == 0 and f is not None and acquired(f) == [(0, 0, 2)] and
          t_done - t_rel < 0.3,
          "w2's parked ShareFetch is answered when w1 releases offset 0 (%.0f ms after)" %
          ((t_done - t_rel) * 1000), (k, f))
    # the holder's connection closes, with a ShareFetch of its parked for 10 s: its session
    # closes at once and offset 0 is released (the lock is 30 s), its acquisition given back
    # (delivery count 2 again: Kafka's releaseAcquiredRecords), so w1 gets it with count 2
    def fetch_until_closed(*a, **kw):
        try:
            return share_fetch(*a, **kw)
        except (ConnectionError, OSError):
            return None
    in_thread(fetch_until_closed, c2, "w2", 2, tid, group="sw-wk", wait_ms=10000)
    join = in_thread(share_fetch, c1, "w1", 3, tid, group="sw-wk", wait_ms=5000)
    time.sleep(0.5)
    import socket
    c2.s.shutdown(socket.SHUT_RDWR)
    c2.close()
    t_close = time.monotonic()
    f, t_done = join()
    check(f is not None and acquired(f) == [(0, 0, 2)] and t_done - t_close < 1.0,
          "w1's parked ShareFetch gets offset 0 once w2's connection closed, w2's own "
          "ShareFetch parked (%.0f ms after)" % ((t_done - t_close) * 1000), f)
    # a lock that runs out (1 s in group sw-lk)
    f = share_fetch(c1, "l1", 0, tid, group="sw-lk", wait_ms=100)
    t_acq = time.monotonic()
    check(f["error"] == 0 and acquired(f) == [(0, 0, 1)], "l1 acquires offset 0 for 1 s", f)
    f = share_fetch(c3, "l2", 0, tid, group="sw-lk", wait_ms=100)
    join = in_thread(share_fetch, c3, "l2", 1, tid, group="sw-lk", wait_ms=5000)
    f, t_done = join()
    check(f is not None and acquired(f) == [(0, 0, 2)] and 0.8 < t_done - t_acq < 1.6,
          "l2's parked ShareFetch gets offset 0 when l1's lock runs out (%.0f ms after the "
          "acquisition)" % ((t_done - t_acq) * 1000), f)
    # a ShareFetch that acknowledges still long-polls for records (Kafka answers it when its
    # fetch part completes)
    t0 = time.monotonic()
    f = share_fetch(c3, "l2", 2, tid, group="sw-lk", wait_ms=600, acks=[(0, 0, [1])])
    check(f["error"] == 0 and f["parts"][0]["ack_error"] == 0 and not acquired(f) and
          0.5 < time.monotonic() - t0 < 2.0,
          "a ShareFetch with an acknowledgement and nothing to acquire waits max_wait_ms "
          "(%.0f ms)" % ((time.monotonic() - t0) * 1000), f)
    c1.close()
    c3.close()
    # idle consumers: ShareFetches of 16 partitions parked for 2 s each on an empty topic
    itid = topic_id_of(c, "sw-idle", "sw-idle")
    conns = [Conn(b.host, b.port) for _ in range(40)]
    for i, cc in enumerate(conns):
        share_fetch(cc, "i%d" % i, 0, itid, group="sw-idle", wait_ms=0, partitions=range(16))
    cpu0, t0 = broker_cpu_s(b.pid), time.monotonic()

    def idle(cc, member):
        for epoch in range(1, 3):
            share_fetch(cc, member, epoch, itid, group="sw-idle", wait_ms=2000)  # the session's
    joins = [in_thread(idle, cc, "i%d" % i) for i, cc in enumerate(conns)]
    for j in joins:
        j()
    cpu = broker_cpu_s(b.pid) - cpu0
    wall = time.monotonic() - t0
    check(3.9 < wall < 5.0 and cpu < 0.03 * wall,
          "40 idle parked ShareFetches of 16 partitions for %.1f s: broker CPU %.0f ms (%.1f%%)" %
          (wall, cpu * 1000, 100 * cpu / wall))
    for cc in conns:
        cc.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2, config={"group.share.heartbeat.interval.ms": 500,
                                               "group.share.min.record.lock.duration.ms": 1000}) as b:
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        a.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(30)
        c = Conn(b.host, b.port)

        def produce(values):
            err, _ = c.produce(TOPIC, 0, idempotent_batch(-1, -1, -1, values), acks=1)
            check(err == 0, "produce %d records" % len(values), err)

        r = heartbeat(c, "m1", 0)
        check(r["error"] == 42, "join without a subscription: INVALID_REQUEST", r)
        r = heartbeat(c, "m9", 4)
        check(r["error"] == 25, "heartbeat of an unknown member: UNKNOWN_MEMBER_ID", r)
        r = heartbeat(c, "m1", 0, [TOPIC])
        deadline = time.monotonic() + 10
        while r["error"] == 0 and not r["assignment"] and time.monotonic() < deadline:
            time.sleep(0.2)
            r = heartbeat(c, "m1", r["epoch"])
        check(r["error"] == 0 and r["member"] == "m1" and r["epoch"] >= 1 and r["assignment"]
              and r["assignment"][0][1] == [0], "m1 joins and is assigned partition 0", r)
        tid = r["assignment"][0][0] if r["assignment"] else b"\x00" * 16
        epoch1 = r["epoch"]
        import base64
        skey = "%s:%s:0" % (GROUP, base64.urlsafe_b64encode(tid).decode().rstrip("="))
        fc = find_share_coordinator(c, [skey, GROUP + ":nope:0", ":%s:0" % skey.split(":")[1]])
        check(len(fc) == 3 and fc[0][0] == skey and fc[0][3] == 0 and fc[0][1] >= 0 and
              fc[0][2] == b.port and [x[3] for x in fc[1:]] == [42, 42],
              "FindCoordinator key type 2: this node for the share partition's key, "
              "INVALID_REQUEST for malformed keys", fc)
        fc = find_share_coordinator(c, [skey], version=5)
        check([x[3] for x in fc] == [42], "FindCoordinator v5 with key type 2: INVALID_REQUEST",
              fc)
        st = read_state(c, "sw-state", tid, 0)
        check(st[0] == 0 and st[2] == -1 and not st[3],
              "ReadShareGroupState of a share partition without state: start offset -1", st)
        err = write_state(c, "sw-state", tid, 0, 100, [(100, 104, 0, 1), (105, 105, 2, 1),
                                                         (106, 107, 4, 3)], state_epoch=2)
        check(err == 0, "WriteShareGroupState of a share partition", err)
        st = read_state(c, "sw-state", tid, 0)
        check(st == (0, 2, 100, [(100, 104, 0, 1), (105, 105, 2, 1), (106, 107, 4, 3)]),
              "ReadShareGroupState reads it back", st)
        check({k: v for k, v in api_versions(c).items() if 83 <= k <= 87} ==
              {k: (0, 0) for k in range(83, 88)},
              "ApiVersions: Initialize/Read/Write/Delete ShareGroupState and "
              "ReadShareGroupStateSummary v0 (Kafka 4.1's)", api_versions(c))
        # Kafka's fencing (ShareCoordinatorShard): the share partition's leader moves from
        # leader epoch 4 to 5; the old leader's write after it is refused and changes nothing
        batches = [(100, 104, 0, 1), (105, 106, 2, 1)]
        err = write_state(c, "sw-state", tid, 0, 100, batches, state_epoch=2, leader_epoch=4)
        err2 = write_state(c, "sw-state", tid, 0, 101, batches[1:], state_epoch=2,
                           leader_epoch=5)
        check((err, err2) == (0, 0), "WriteShareGroupState with leader epochs 4, then 5",
              (err, err2))
        err = write_state(c, "sw-state", tid, 0, 107, [], state_epoch=2, leader_epoch=4)
        check(err == 74, "the old leader's (epoch 4) write after it: FENCED_LEADER_EPOCH", err)
        st = read_state(c, "sw-state", tid, 0, leader_epoch=5)
        check(st == (0, 2, 101, [(105, 106, 2, 1)]),
              "the state is the new leader's, nothing of the refused write", st)
        err = write_state(c, "sw-state", tid, 0, 107, [], state_epoch=1, leader_epoch=5)
        check(err == 124, "a write with an older state epoch: FENCED_STATE_EPOCH", err)
        st = read_state(c, "sw-state", tid, 0, leader_epoch=4)
        check(st[0] == 74, "ReadShareGroupState with the old leader epoch: FENCED_LEADER_EPOCH",
              st)
        sm = summary_state(c, "sw-state", tid, 0)
        check(sm == (0, 2, 5, 101), "ReadShareGroupStateSummary: state epoch, leader epoch and "
              "start offset", sm)
        # InitializeShareGroupState: a snapshot with a new state epoch and start offset
        err = initialize_state(c, "sw-state", tid, 0, 3, 150)
        st = read_state(c, "sw-state", tid, 0, leader_epoch=5)
        sm = summary_state(c, "sw-state", tid, 0)
        check(err == 0 and st == (0, 3, 150, []) and sm == (0, 3, 0, 150),
              "InitializeShareGroupState: state epoch 3, start offset 150, no batches",
              (err, st, sm))
        err = initialize_state(c, "sw-state", tid, 0, 2, 10)
        check(err == 124, "InitializeShareGroupState with an older state epoch: "
              "FENCED_STATE_EPOCH", err)
        errs = (write_state(c, "sw-state", tid, 0, 150, [], state_epoch=2, leader_epoch=5),
                write_state(c, "sw-state", tid, 0, 150, [], state_epoch=3, leader_epoch=4),
                write_state(c, "sw-state", tid, 0, 151, [(151, 151, 2, 1)], state_epoch=3,
                            leader_epoch=5))
        check(errs == (124, 74, 0), "after it: the old state epoch and the old leader epoch "
              "are refused, the new state epoch written", errs)
        st = read_state(c, "sw-state", tid, 0, leader_epoch=5)
        check(st == (0, 3, 151, [(151, 151, 2, 1)]), "the state after the initialization", st)
        # a new leader's read with its leader epoch (9) records it: the leader before it (8) is
        # fenced before the new one wrote anything
        st = read_state(c, "sw-state", tid, 0, leader_epoch=9)
        sm = summary_state(c, "sw-state", tid, 0)
        errs = (write_state(c, "sw-state", tid, 0, 152, [], state_epoch=3, leader_epoch=8),
                write_state(c, "sw-state", tid, 0, 152, [], state_epoch=3, leader_epoch=9))
        check(st == (0, 3, 151, [(151, 151, 2, 1)]) and sm == (0, 3, 9, 151) and
              errs == (74, 0), "ReadShareGroupState with a newer leader epoch records it: a "
              "write of the leader before it is FENCED_LEADER_EPOCH", (st, sm, errs))
        err = initialize_state(c, "sw-state", tid, 0, 4, -1)
        st = read_state(c, "sw-state", tid, 0, leader_epoch=9)
        sm = summary_state(c, "sw-state", tid, 0)
        check(err == 0 and st == (0, 4, -1, []) and sm == (0, 4, 0, -1),
              "InitializeShareGroupState without a start offset (-1)", (err, st, sm))
        sm = summary_state(c, "sw-state", tid, 1)
        sm2 = summary_state(c, "sw-state", b"\x07" * 16, 0)
        sm3 = summary_state(c, "sw-none", tid, 0)
        check(sm[0] == 3 and sm2[0] == 3 and sm3 == (0, 0, 0, -1),
              "ReadShareGroupStateSummary of an unknown partition or topic: "
              "UNKNOWN_TOPIC_OR_PARTITION; of no state: start offset -1, epochs 0",
              (sm, sm2, sm3))
        err = initialize_state(c, "sw-state", tid, 0, 5, -2)
        check(err == 42, "InitializeShareGroupState with start offset -2: INVALID_REQUEST", err)
        err = write_state(c, "sw-state", tid, 0, -5, [])
        check(err == 42, "WriteShareGroupState with a negative start offset: INVALID_REQUEST",
              err)
        err = write_state(c, "sw-state", tid, 0, 10, [(12, 11, 0, 1)])
        check(err == 42, "WriteShareGroupState with a bad batch: INVALID_REQUEST", err)
        err = delete_state(c, "sw-state", tid, 0)
        st = read_state(c, "sw-state", tid, 0)
        check(err == 0 and st[0] == 0 and st[2] == -1 and not st[3],
              "DeleteShareGroupState: the state is gone", (err, st))
        r = heartbeat(c, "m1", epoch1 + 7)
        check(r["error"] == 110, "a wrong member epoch: FENCED_MEMBER_EPOCH", r)

        produce([b"a%d" % i for i in range(5)])   # before the first fetch: skipped (latest)
        f = share_fetch(c, "m2", 3, tid)
        check(f["error"] == 122, "ShareFetch of no session with epoch 3: SHARE_SESSION_NOT_FOUND", f)
        f = share_fetch(c, "m1", 0, tid, wait_ms=200)
        check(f["error"] == 0 and not acquired(f) and f["lock_ms"] == 30000,
              "epoch 0 opens the session; the share partition starts at the log end", f)
        produce([b"b%d" % i for i in range(5)])   # offsets 5..9
        f = share_fetch(c, "m1", 1, tid)
        check(f["error"] == 0 and acquired(f) == [(5, 9, 1)] and f["parts"][0]["records"] > 0,
              "epoch 1 acquires offsets 5-9, delivery count 1, with their batch", f)
        f = share_fetch(c, "m1", 5, tid)
        check(f["error"] == 123, "a skipped epoch: INVALID_SHARE_SESSION_EPOCH", f)
        k = share_ack(c, "m1", 0, tid, [(5, 6, [1])])
        check(k["error"] == 123, "ShareAcknowledge with epoch 0: INVALID_SHARE_SESSION_EPOCH", k)
        k = share_ack(c, "m1", 2, tid, [(5, 6, [1])])
        check(k["error"] == 0 and [p["error"] for p in k["parts"]] == [0],
              "ShareAcknowledge accepts 5-6", k)
        k = share_ack(c, "m1", 3, tid, [(5, 5, [1])])
        check(k["error"] == 0 and [p["error"] for p in k["parts"]] == [121],
              "accepting 5 again: INVALID_RECORD_STATE", k)
        # one type per offset: 7 rejected, 8-9 released; they come back in the same fetch
        f = share_fetch(c, "m1", 4, tid, acks=[(7, 9, [3, 2, 2])])
        check(f["error"] == 0 and f["parts"][0]["ack_error"] == 0 and
              acquired(f) == [(8, 9, 2)],
              "piggybacked acknowledgement (7 rejected, 8-9 released): 8-9 again, count 2", f)
        f = share_fetch(c, "m1", -1, tid)
        check(f["error"] == 0 and not acquired(f), "epoch -1 closes the session", f)
        f = share_fetch(c, "m1", 6, tid)
        check(f["error"] == 122, "the closed session is gone: SHARE_SESSION_NOT_FOUND", f)
        f = share_fetch(c, "m3", 0, tid)
        check(f["error"] == 0 and acquired(f) == [(8, 9, 2)],
              "what the closed session held goes to another member, delivery count 2 (the "
              "acquisition a session close gives back does not count, as Kafka's "
              "releaseAcquiredRecords)", f)
        d = describe(c)
        check(d["error"] == 0 and d["state"] == "Stable" and d["assignor"] == "simple" and
              [m["id"] for m in d["members"]] == ["m1"] and d["members"][0]["topics"] == [TOPIC],
              "ShareGroupDescribe: Stable, assignor simple, member m1", d)
        r = heartbeat(c, "m1", -1)
        check(r["error"] == 0 and r["epoch"] == -1, "m1 leaves", r)
        check(describe(c)["state"] == "Empty", "the group is empty")
        # the topic deleted and made again: its share partition starts over (at the new log's
        # end), not at the old one's start offset
        a.delete_topics([TOPIC])[TOPIC].result(30)
        time.sleep(0.5)
        a.create_topics([NewTopic(TOPIC, 1, 1)])[TOPIC].result(30)
        r = heartbeat(c, "m4", 0, [TOPIC])
        deadline = time.monotonic() + 10
        while r["error"] == 0 and (not r["assignment"] or r["assignment"][0][0] == tid) and \
                time.monotonic() < deadline:
            time.sleep(0.2)
            r = heartbeat(c, "m4", r["epoch"])
        tid2 = r["assignment"][0][0] if r["assignment"] else b"\x00" * 16
        check(r["error"] == 0 and tid2 != tid, "m4 is assigned the new topic id", r)
        f = share_fetch(c, "m4", 0, tid2, wait_ms=200)
        produce([b"c0", b"c1"])
        f = share_fetch(c, "m4", 1, tid2)
        check(f["error"] == 0 and acquired(f) == [(0, 1, 1)],
              "the re-created topic's records 0-1 are acquired", f)
        control_and_read_committed(b, a, c)
        waking(b, a, c)
        c.close()
        status = b.stop()
        log = b.log_text()
        errors = [ln for ln in log.splitlines() if " ERROR " in ln or "runtime error" in ln]
        check(status == 0 and not errors, "broker exits cleanly with no ERROR line", errors[:5])
    if FAILS:
        print("FAILED: %d checks" % len(FAILS))
        return 1
    print("share groups on the wire (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
