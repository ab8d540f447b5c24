"""KIP-848 consumer groups on the wire, with hand-built frames: ConsumerGroupHeartbeat and
ConsumerGroupDescribe answers and errors, and how the classic group APIs treat a consumer
group (OffsetCommit/OffsetFetch member checks, JoinGroup, DescribeGroups, ListGroups type
filter, DeleteGroups), the reverse (a heartbeat for a classic group with members), the
session timeout, and a restart of the broker (the group and its members come back from
__consumer_offsets; a deleted group stays deleted).

    test_kip848_wire.py --io uring|epoll
    test_kip848_wire.py --bootstrap HOST:PORT --interval MS   (a broker already running, e.g.
        Apache Kafka 4.1 with group.consumer.heartbeat.interval.ms=MS and a 3 s
        group.consumer.session.timeout.ms, to check these expectations against it)
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
from kraw import Conn, uvarint  # noqa: E402

FAILS = []


def check(ok, what, detail=None):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok or detail is None else " -- %r" % (detail,)))
    if not ok:
        FAILS.append(what)


# ---- encoding (flexible versions) ----

def cs(s):
    b = s.encode()
    return uvarint(len(b) + 1) + b


def cns(s):
    return b"\x00" if s is None else cs(s)


def carr(items):
    return uvarint(len(items) + 1) + b"".join(items)


def i32(v):
    return struct.pack(">i", v)


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


# ---- calls ----

def heartbeat(c, group, member, epoch, topics=None, owned=None, rebalance_ms=30000,
              assignor=None, instance=None, version=1, regex=None):
    body = cs(group) + cs(member) + i32(epoch) + cns(instance) + cns(None) + i32(rebalance_ms)
    body += b"\x00" if topics is None else carr([cs(t) for t in topics])
    if version >= 1:
        body += cns(regex)
    body += cns(assignor)
    if owned is None:
        body += b"\x00"
    else:
        body += carr([tid + carr([i32(p) for p in ps]) + TAGS for tid, ps in owned])
    body += TAGS
    r = R(c.call(68, version, body, True))
    r.take(">i")
    out = {"error": r.take(">h"), "message": r.s(), "member": r.s(), "epoch": r.take(">i"),
           "interval": r.take(">i")}
    present = r.take(">b")
    out["assignment"] = None
    if present >= 0:
        def tp():
            tid = r.uuid()
            ps = r.arr(lambda: r.take(">i"))
            r.tags()
            return (tid, ps)
        out["assignment"] = r.arr(tp)
        r.tags()
    return out


def cg_describe(c, groups):
    body = carr([cs(g) for g in groups]) + b"\x00" + TAGS
    r = R(c.call(69, 1, body, True))
    r.take(">i")

    def assignment():
        def tp():
            tid, name = r.uuid(), r.s()
            ps = r.arr(lambda: r.take(">i"))
            r.tags()
            return (name, sorted(ps))
        v = r.arr(tp)
        r.tags()
        return v

    def member():
        m = {"id": r.s(), "instance": r.s(), "rack": r.s(), "epoch": r.take(">i"),
             "client": r.s(), "host": r.s(), "topics": r.arr(r.s), "regex": r.s(),
             "assignment": assignment(), "target": assignment(), "type": r.take(">b")}
        r.tags()
        return m

    def group():
        g = {"error": r.take(">h"), "message": r.s(), "id": r.s(), "state": r.s(),
             "epoch": r.take(">i"), "assignment_epoch": r.take(">i"), "assignor": r.s(),
             "members": r.arr(member), "ops": r.take(">i")}
        r.tags()
        return g
    return r.arr(group)


def offset_commit(c, version, group, epoch, member, topic, parts):
    ps = [i32(p) + struct.pack(">qi", off, -1) + cns(None) + TAGS for p, off in parts]
    body = cs(group) + i32(epoch) + cs(member) + cns(None) + carr([cs(topic) + carr(ps) + TAGS])
    body += TAGS
    r = R(c.call(8, version, body, True))
    r.take(">i")

    def part():
        v = (r.take(">i"), r.take(">h"))
        r.tags()
        return v

    def tp():
        r.s()
        v = r.arr(part)
        r.tags()
        return v
    return [e for t in r.arr(tp) for _, e in t]


def offset_fetch(c, group, member, epoch, topic, parts):
    body = carr([cs(group) + cns(member) + i32(epoch) +
                 carr([cs(topic) + carr([i32(p) for p in parts]) + TAGS]) + TAGS])
    body += b"\x00" + TAGS
    r = R(c.call(9, 9, body, True))
    r.take(">i")

    def part():
        v = (r.take(">i"), r.take(">q"), r.take(">i"), r.s(), r.take(">h"))
        r.tags()
        return v

    def tp():
        r.s()
        v = r.arr(part)
        r.tags()
        return v

    def grp():
        gid = r.s()
        topics = r.arr(tp)
        err = r.take(">h")
        r.tags()
        return (err, {p[0]: p[1] for t in topics for p in t})
    return r.arr(grp)[0]


def join_group(c, group, member):
    proto = cs("range") + uvarint(1) + TAGS   # empty metadata (compact bytes)
    body = cs(group) + i32(30000) + i32(30000) + cs(member) + cns(None) + cs("consumer")
    body += carr([proto]) + cns(None) + TAGS
    r = R(c.call(11, 9, body, True))
    r.take(">i")
    err, gen = r.take(">h"), r.take(">i")
    r.s()
    r.s()
    r.s()
    r.take(">b")
    return err, gen, r.s()


def describe_groups(c, version, group):
    body = carr([cs(group)]) + b"\x00" + TAGS
    r = R(c.call(15, version, body, True))
    r.take(">i")
    n = r.uv() - 1
    assert n == 1
    err = r.take(">h")
    msg = r.s() if version >= 6 else None
    return {"error": err, "message": msg, "id": r.s(), "state": r.s(), "ptype": r.s()}


def offset_delete(c, group, topic, parts):
    """OffsetDelete v0: (top-level error, {partition: error})."""
    s16 = lambda v: struct.pack(">h", len(v.encode())) + v.encode()
    body = s16(group) + i32(1) + s16(topic) + i32(len(parts)) + b"".join(i32(p) for p in parts)
    r = c.call(47, 0, body, False)
    err, _thr, nt = struct.unpack_from(">hii", r, 0)
    p, out = 10, {}
    for _ in range(nt):
        n = struct.unpack_from(">h", r, p)[0]
        p += 2 + n
        np_ = struct.unpack_from(">i", r, p)[0]
        p += 4
        for _ in range(np_):
            q, e = struct.unpack_from(">ih", r, p)
            p += 6
            out[q] = e
    return err, out


def list_groups(c, types):
    body = carr([]) + carr([cs(t) for t in types]) + TAGS
    r = R(c.call(16, 5, body, True))
    r.take(">i")
    r.take(">h")

    def grp():
        v = (r.s(), r.s(), r.s(), r.s())
        r.tags()
        return v
    return {g[0]: g for g in r.arr(grp)}


def delete_groups(c, group):
    r = R(c.call(42, 2, carr([cs(group)]) + TAGS, True))
    r.take(">i")
    n = r.uv() - 1
    assert n == 1
    r.s()
    return r.take(">h")


class External:
    """A broker this script did not start (--bootstrap)."""

    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.host, port = bootstrap.rsplit(":", 1)
        self.port = int(port)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def alive(self):
        return True

    def stop(self):
        return 0

    def log_text(self):
        return ""


def find_coordinators(c, groups, timeout_s=30):
    """FindCoordinator v4 until every group has one (Kafka creates __consumer_offsets on the
    first lookup); the tests talk to a single node, which must be it."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = b"\x00" + carr([cs(g) for g in groups]) + TAGS
        r = R(c.call(10, 4, body, True))
        r.take(">i")

        def one():
            v = (r.s(), r.take(">i"), r.s(), r.take(">i"), r.take(">h"), r.s())
            r.tags()
            return v
        got = r.arr(one)
        if all(e == 0 for _, _, _, _, e, _ in got) or time.monotonic() > deadline:
            return got
        time.sleep(0.3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--bootstrap")
    ap.add_argument("--interval", type=int, default=1500)
    args = ap.parse_args()
    t0 = time.monotonic()
    config = {"group.consumer.heartbeat.interval.ms": args.interval,
              "group.consumer.session.timeout.ms": 3000,
              "group.initial.rebalance.delay.ms": 0}
    with (External(args.bootstrap) if args.bootstrap else
          Broker(io=args.io, shards=2, config=config)) as b:
        interval = args.interval
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        fs = a.create_topics([NewTopic("kw-t", 4, 1)])
        fs["kw-t"].result(30)
        c = Conn(b.host, b.port)
        got = find_coordinators(c, ["kw-g", "kw-v0", "kw-classic", "kw-s"])
        check(all(e == 0 for _, _, _, _, e, _ in got), "FindCoordinator of the groups", got)

        # join: the member gets every partition at epoch 1 (Kafka may answer the first
        # heartbeat before its metadata image has the new topic: heartbeat until it comes)
        r = heartbeat(c, "kw-g", "m-1", 0, topics=["kw-t"], owned=[])
        deadline = time.monotonic() + 15
        while ((r["error"] in (14, 15, 16) or (r["error"] == 0 and not r["assignment"])) and
               time.monotonic() < deadline):
            time.sleep(0.2)
            r = heartbeat(c, "kw-g", "m-1", 0 if r["error"] else r["epoch"], topics=["kw-t"],
                          owned=[])
        parts = r["assignment"] and sorted(r["assignment"][0][1])
        check(r["error"] == 0 and r["epoch"] == 1 and r["interval"] == interval and
              r["member"] == "m-1" and parts == [0, 1, 2, 3],
              "heartbeat v1 join: epoch 1, all four partitions", r)
        tid = r["assignment"][0][0]
        # a group's own consumer.heartbeat.interval.ms (GROUP config resource, set with
        # IncrementalAlterConfigs v0) is what its members are told
        def s16(v):
            return struct.pack(">h", v)

        def sstr(v):
            return s16(len(v)) + v.encode()
        # (the session timeout must stay above it: this broker's default is 3000)
        body = (i32(1) + struct.pack(">b", 32) + sstr("kw-cfg") + i32(2) +
                sstr("consumer.heartbeat.interval.ms") + struct.pack(">b", 0) + sstr("6000") +
                sstr("consumer.session.timeout.ms") + struct.pack(">b", 0) + sstr("50000") +
                b"\x00")
        ia = R(c.call(44, 0, body, False))
        ia.take(">i")
        check(ia.take(">i") == 1 and ia.take(">h") == 0, "IncrementalAlterConfigs of group kw-cfg")
        find_coordinators(c, ["kw-cfg"])
        deadline = time.monotonic() + 15
        while True:
            rc = heartbeat(c, "kw-cfg", "m-cfg", 0, topics=["kw-t"], owned=[])
            if rc["error"] == 0 and rc["interval"] == 6000 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        check(rc["error"] == 0 and rc["interval"] == 6000,
              "a member of kw-cfg is told the group's heartbeat interval, 6000", rc)
        heartbeat(c, "kw-cfg", "m-cfg", -1, rebalance_ms=-1)  # leave
        # an unchanged heartbeat carries no assignment
        r = heartbeat(c, "kw-g", "m-1", 1, topics=None, owned=None, rebalance_ms=-1)
        check(r["error"] == 0 and r["epoch"] == 1 and r["assignment"] is None,
              "unchanged heartbeat: no assignment", r)
        # errors
        r = heartbeat(c, "kw-g", "m-1", 5, owned=[(tid, [0, 1, 2, 3])], rebalance_ms=-1)
        check(r["error"] == 110, "epoch ahead: FENCED_MEMBER_EPOCH", r)
        r = heartbeat(c, "kw-g", "", 0, topics=["kw-t"], owned=[])
        check(r["error"] == 42, "v1 without member id: INVALID_REQUEST", r)
        r = heartbeat(c, "kw-g", "m-x", 0, topics=["kw-t"], owned=[], assignor="sticky")
        check(r["error"] == 112, "unknown server assignor: UNSUPPORTED_ASSIGNOR", r)
        r = heartbeat(c, "kw-g", "m-x", 3, owned=[], rebalance_ms=-1)
        check(r["error"] == 25, "unknown member: UNKNOWN_MEMBER_ID", r)
        r = heartbeat(c, "kw-g", "m-x", 0, regex="kw-(", owned=[])
        check(r["error"] == 128, "bad regex: INVALID_REGULAR_EXPRESSION", r)
        r = heartbeat(c, "kw-v0", "", 0, topics=["kw-t"], owned=[], version=0)
        check(r["error"] == 0 and len(r["member"] or "") == 22 and r["epoch"] == 1,
              "heartbeat v0: the coordinator names the member", r)

        # a second member: m-1 is told to give up two partitions and keeps epoch 1
        r2 = heartbeat(c, "kw-g", "m-2", 0, topics=["kw-t"], owned=[])
        check(r2["error"] == 0 and r2["epoch"] == 2 and r2["assignment"] == [],
              "second member: epoch 2, nothing until m-1 revokes", r2)
        r = heartbeat(c, "kw-g", "m-1", 1, owned=[(tid, [0, 1, 2, 3])], rebalance_ms=-1)
        kept = sorted(r["assignment"][0][1]) if r["assignment"] else None
        check(r["error"] == 0 and r["epoch"] == 1 and kept is not None and len(kept) == 2,
              "m-1 told to revoke two, still epoch 1", r)
        d = cg_describe(c, ["kw-g"])[0]
        check(d["error"] == 0 and d["state"] == "Reconciling" and d["epoch"] == 2 and
              d["assignment_epoch"] == 2 and len(d["members"]) == 2,
              "ConsumerGroupDescribe while reconciling", d)
        r = heartbeat(c, "kw-g", "m-1", 1, owned=[(tid, kept)], rebalance_ms=-1)
        check(r["error"] == 0 and r["epoch"] == 2, "m-1 acknowledges: epoch 2", r)
        r2 = heartbeat(c, "kw-g", "m-2", 2, owned=[], rebalance_ms=-1)
        got2 = sorted(r2["assignment"][0][1]) if r2["assignment"] else []
        check(r2["error"] == 0 and len(got2) == 2 and not set(got2) & set(kept),
              "m-2 gets the other two", r2)
        d = cg_describe(c, ["kw-g", "kw-none"])
        m = {x["id"]: x for x in d[0]["members"]}
        check(d[0]["state"] == "Stable" and d[0]["assignor"] == "uniform" and
              m["m-1"]["assignment"] == [("kw-t", kept)] and
              m["m-2"]["assignment"] == [("kw-t", got2)] and
              m["m-2"]["target"] == [("kw-t", got2)] and m["m-1"]["topics"] == ["kw-t"] and
              m["m-1"]["client"] == "kraw" and m["m-1"]["host"] == "/127.0.0.1" and
              m["m-1"]["type"] == 1,
              "ConsumerGroupDescribe: Stable, members and assignments by name", d[0])
        check(d[1]["error"] == 69 and d[1]["state"] == "" and
              d[1]["message"] == "Group kw-none not found.",
              "ConsumerGroupDescribe of an unknown id: GROUP_ID_NOT_FOUND", d[1])

        # KIP-1251 assignment epochs (Kafka 4.3): a commit at an epoch behind the member's
        # passes for the partitions it has held since that epoch (the heartbeat answer that
        # moved it on may still be on its way); one it did not hold then fails the request
        if args.bootstrap:
            print("skipped against another broker: KIP-1251 commits")
        else:
            e = offset_commit(c, 9, "kw-g", 1, "m-1", "kw-t", [(p, 4) for p in kept])
            check(e == [0, 0], "OffsetCommit v9 at the epoch before, of partitions held since "
                  "then: accepted", e)
            e = offset_commit(c, 9, "kw-g", 1, "m-1", "kw-t", [(kept[0], 4), (got2[0], 4)])
            check(e == [113, 113], "OffsetCommit v9 at the epoch before with a partition "
                  "another member holds now: STALE_MEMBER_EPOCH", e)

        # the group is in __consumer_offsets: after a restart the members go on with their
        # ids, epochs and assignments (no UNKNOWN_MEMBER_ID, no rebalance)
        if args.bootstrap:
            print("skipped against another broker: the restart")
        else:
            c.close()
            t_restart = time.monotonic()
            b.restart()
            c = Conn(b.host, b.port)
            find_coordinators(c, ["kw-g"])
            r = heartbeat(c, "kw-g", "m-1", 2, owned=[(tid, kept)], rebalance_ms=-1)
            got1 = sorted(r["assignment"][0][1]) if r["assignment"] else None
            check(r["error"] == 0 and r["epoch"] == 2 and got1 in (None, kept),
                  "after a restart m-1 heartbeats with its id and epoch 2: accepted, same "
                  "partitions (%.1f s)" % (time.monotonic() - t_restart), r)
            r2 = heartbeat(c, "kw-g", "m-2", 2, owned=[(tid, got2)], rebalance_ms=-1)
            g2 = sorted(r2["assignment"][0][1]) if r2["assignment"] else None
            check(r2["error"] == 0 and r2["epoch"] == 2 and g2 in (None, got2),
                  "after a restart m-2 heartbeats with its id and epoch 2: accepted", r2)
            d = cg_describe(c, ["kw-g"])[0]
            m = {x["id"]: x for x in d["members"]}
            check(d["error"] == 0 and d["state"] == "Stable" and d["epoch"] == 2 and
                  d["assignment_epoch"] == 2 and sorted(m) == ["m-1", "m-2"] and
                  m["m-1"]["assignment"] == [("kw-t", kept)] and
                  m["m-2"]["assignment"] == [("kw-t", got2)] and
                  m["m-1"]["topics"] == ["kw-t"] and m["m-1"]["client"] == "kraw" and
                  m["m-1"]["epoch"] == 2,
                  "ConsumerGroupDescribe after the restart: the same members, epochs and "
                  "assignments", d)
            # kw-cfg's only member left before: emptied without offsets, the group was
            # dropped with its tombstones and stays gone
            d = cg_describe(c, ["kw-cfg"])[0]
            check(d["error"] == 69, "kw-cfg, emptied and dropped before, stays gone", d)

        # OffsetCommit / OffsetFetch with the member epoch
        e = offset_commit(c, 9, "kw-g", 2, "m-1", "kw-t", [(p, 5) for p in kept])
        check(e == [0, 0], "OffsetCommit v9 at the member's epoch", e)
        # (after the restart: the assignment epochs of a loaded group start at the member's)
        e = offset_commit(c, 9, "kw-g", 1, "m-1", "kw-t", [(kept[0], 6)])
        check(e == [113], "OffsetCommit v9 at an old epoch: STALE_MEMBER_EPOCH", e)
        e = offset_commit(c, 9, "kw-g", 2, "m-9", "kw-t", [(kept[0], 6)])
        check(e == [25], "OffsetCommit v9 of an unknown member: UNKNOWN_MEMBER_ID", e)
        e = offset_commit(c, 8, "kw-g", 2, "m-1", "kw-t", [(kept[0], 6)])
        check(e == [35], "OffsetCommit v8 by a consumer-protocol member: UNSUPPORTED_VERSION", e)
        e = offset_commit(c, 9, "kw-g", -1, "", "kw-t", [(kept[0], 6)])
        check(e == [25], "admin commit to a group with members: UNKNOWN_MEMBER_ID", e)
        err, offs = offset_fetch(c, "kw-g", "m-1", 2, "kw-t", kept)
        check(err == 0 and all(offs[p] == 5 for p in kept), "OffsetFetch v9 by the member",
              (err, offs))
        err, offs = offset_fetch(c, "kw-g", "m-1", 1, "kw-t", kept)
        check(err == 113, "OffsetFetch v9 at an old epoch: STALE_MEMBER_EPOCH", (err, offs))
        err, offs = offset_fetch(c, "kw-g", None, -1, "kw-t", kept)
        check(err == 0 and offs[kept[0]] == 5, "OffsetFetch v9 without a member (admin)",
              (err, offs))

        # the classic APIs on a consumer group
        # Kafka 4 lets a classic member into a consumer group (a mixed group): MEMBER_ID_REQUIRED
        # first, as for a classic group
        err, _, mid = join_group(c, "kw-g", "")
        check(err == 79 and mid, "JoinGroup of a consumer group: MEMBER_ID_REQUIRED first", err)
        g5 = describe_groups(c, 5, "kw-g")
        check(g5["error"] == 0 and g5["state"] == "Dead" and g5["ptype"] == "",
              "DescribeGroups v5 of a consumer group: Dead", g5)
        g6 = describe_groups(c, 6, "kw-g")
        check(g6["error"] == 69 and g6["message"] == "Group kw-g is not a classic group.",
              "DescribeGroups v6 of a consumer group: GROUP_ID_NOT_FOUND", g6)
        # a classic group with a member: a heartbeat for it is refused
        err, _, mid = join_group(c, "kw-classic", "")
        check(err == 79 and mid, "classic JoinGroup: MEMBER_ID_REQUIRED first", err)
        err, gen, _ = join_group(c, "kw-classic", mid)
        check(err == 0 and gen == 1, "classic JoinGroup with its id: generation 1", (err, gen))
        # a malformed joining heartbeat is refused for what it is before any upgrade is tried
        # (Kafka validates the request first), and the classic group stays as it was
        r = heartbeat(c, "kw-classic", "m-c", 0, topics=["kw-t"], owned=[], rebalance_ms=-1)
        check(r["error"] == 42 and
              r["message"] == "RebalanceTimeoutMs must be provided in first request.",
              "malformed joining heartbeat for a classic group: INVALID_REQUEST", r)
        g6 = describe_groups(c, 6, "kw-classic")
        check(g6["error"] == 0 and g6["state"] == "CompletingRebalance" and g6["ptype"] == "consumer",
              "the classic group after the malformed heartbeat", g6)
        r = heartbeat(c, "kw-classic", "m-c", 0, topics=["kw-t"], owned=[])
        # (Kafka's message tells why it cannot upgrade the classic group)
        check(r["error"] == 69 and "kw-classic" in (r["message"] or ""),
              "heartbeat for a classic group with members: GROUP_ID_NOT_FOUND", r)
        ls = list_groups(c, ["consumer"])
        check("kw-g" in ls and ls["kw-g"][1:] == ("consumer", "Stable", "consumer") and
              "kw-classic" not in ls, "ListGroups v5 types [consumer]", ls)
        ls = list_groups(c, ["Classic"])
        check("kw-classic" in ls and "kw-g" not in ls and ls["kw-classic"][3] == "classic",
              "ListGroups v5 types [Classic]", ls)
        ls = list_groups(c, [])
        check("kw-g" in ls and "kw-classic" in ls and "kw-v0" in ls,
              "ListGroups v5 without a filter lists both kinds once", ls)

        # OffsetDelete: not for the topics the members subscribe to
        err, res = offset_delete(c, "kw-g", "kw-t", kept)
        check(err == 0 and res == {q: 86 for q in kept},
              "OffsetDelete of a subscribed topic: GROUP_SUBSCRIBED_TO_TOPIC", (err, res))
        # DeleteGroups: refused while members are in, then it goes (offsets with it)
        check(delete_groups(c, "kw-g") == 68, "DeleteGroups with members: NON_EMPTY_GROUP")
        for mem, ep in (("m-1", 2), ("m-2", 2)):
            r = heartbeat(c, "kw-g", mem, -1, owned=None, rebalance_ms=-1)
            check(r["error"] == 0 and r["epoch"] == -1, "%s leaves" % mem, r)
        d = cg_describe(c, ["kw-g"])[0]
        check(d["state"] == "Empty" and d["members"] == [] and d["epoch"] == 4,
              "Empty after both left, epoch 4", d)
        err, res = offset_delete(c, "kw-g", "kw-t", kept[:1])
        check(err == 0 and res == {kept[0]: 0}, "OffsetDelete once nobody subscribes",
              (err, res))
        check(delete_groups(c, "kw-g") == 0, "DeleteGroups of the empty consumer group")
        d = cg_describe(c, ["kw-g"])[0]
        err, offs = offset_fetch(c, "kw-g", None, -1, "kw-t", kept)
        check(d["error"] == 69 and offs[kept[0]] == -1, "deleted with its offsets", (d, offs))
        if not args.bootstrap:
            # the deletion's tombstones keep it deleted across a restart
            c.close()
            b.restart()
            c = Conn(b.host, b.port)
            find_coordinators(c, ["kw-g"])
            d = cg_describe(c, ["kw-g"])[0]
            r = heartbeat(c, "kw-g", "m-1", 4, owned=[], rebalance_ms=-1)
            check(d["error"] == 69 and r["error"] == 25,
                  "after a restart the deleted group is still gone", (d, r))

        # session timeout (3 s here): a silent member is removed
        r = heartbeat(c, "kw-s", "m-s", 0, topics=["kw-t"], owned=[])
        check(r["error"] == 0, "kw-s joins", r)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            d = cg_describe(c, ["kw-s"])[0]
            if not d["members"]:
                break
            time.sleep(0.3)
        # with no committed offsets the empty group goes at once (Kafka: at its next cleanup)
        check(not d["members"] and (d["state"] == "Empty" or d["error"] == 69),
              "the session timeout removed the silent member", d)
        r = heartbeat(c, "kw-s", "m-s", 1, owned=[], rebalance_ms=-1)
        check(r["error"] == 25, "its next heartbeat: UNKNOWN_MEMBER_ID", r)
        c.close()
        alive = b.alive()
        status = b.stop()
        log = b.log_text()
        bad = "runtime error" in log or "AddressSanitizer" in log or "LeakSanitizer" in log
        check(alive and status == 0 and not bad, "the broker stayed up and exited cleanly",
              (alive, status, log[-3000:] if bad or status != 0 else ""))
    if not args.bootstrap:
        # group.consumer.migration.policy=disabled: a consumer-protocol member joining a
        # classic group of consumers is refused with Kafka 4.1's reason
        with Broker(io=args.io, shards=1,
                    config={"group.consumer.migration.policy": "disabled"}) as b:
            c = Conn(b.host, b.port)
            find_coordinators(c, ["kw-p"])
            err, _, mid = join_group(c, "kw-p", "")
            err, _, _ = join_group(c, "kw-p", mid)
            r = heartbeat(c, "kw-p", "m-p", 0, topics=["kw-t"], owned=[])
            check(r["error"] == 69 and r["message"] == "Cannot upgrade classic group kw-p to "
                  "consumer group because online upgrade is disabled.",
                  "migration policy disabled: no upgrade", r)
            c.close()
            check(b.stop() == 0, "the second broker exited cleanly")
    print("%d failure(s); %.1f s" % (len(FAILS), time.monotonic() - t0))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
