"""Consumer-group records of KIP-848 in __consumer_offsets as Kafka 4.1 reads them: a group
goes through a join, a second member (revocation, then its partitions), a static member's
temporary leave, leaves and a DeleteGroups; then Kafka's own DumpLogSegments (kafka_2.13
4.1.1, --offsets-decoder: Kafka's GroupCoordinatorRecordSerde) decodes laminar's segment of
__consumer_offsets, and every record is checked: its type, its fields, the tombstones.

    test_kip848_records.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/).
"""
import argparse
import base64
import glob
import json
import os
import subprocess
import sys
import struct
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "groups"))
from laminar_harness import Broker  # noqa: E402
from kraw import Conn, uvarint  # noqa: E402
import test_kip848_wire as w  # noqa: E402

FAILS = []


def check(ok, what, detail=None):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok or detail is None else " -- %r" % (detail,)))
    if not ok:
        FAILS.append(what)


def dump(segment):
    """(type, key data, payload data or None for a tombstone) of every record, as Kafka's
    DumpLogSegments decodes them."""
    cmd = ["java", "-Xshare:auto", "-XX:TieredStopAtLevel=1", "-cp", os.path.join(JAVA, "lib", "*"),
           "kafka.tools.DumpLogSegments", "--files", segment, "--offsets-decoder",
           "--print-data-log"]
    out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         timeout=120).stdout.decode("utf-8", "replace")
    recs = []
    for line in out.splitlines():
        if not line.startswith("| offset:"):
            continue
        k = line.index(" key: ")
        p = line.index(" payload: ")
        key = json.loads(line[k + 6:p])
        payload = line[p + 10:]
        recs.append((int(key["type"]), key["data"],
                     None if payload == "<DELETE>" else json.loads(payload)))
    return out, recs


def classic_join(c, group, member, topic):
    """JoinGroup v9 of a classic consumer subscribed to topic (ConsumerProtocolSubscription
    v1, owning nothing): (error, generation, member id)."""
    s16 = lambda v: struct.pack(">h", len(v.encode())) + v.encode()
    meta = struct.pack(">h", 1) + w.i32(1) + s16(topic) + w.i32(-1) + w.i32(0)
    proto = w.cs("range") + uvarint(len(meta) + 1) + meta + w.TAGS
    body = w.cs(group) + w.i32(20000) + w.i32(30000) + w.cs(member) + w.cns(None)
    body += w.cs("consumer") + w.carr([proto]) + w.cns(None) + w.TAGS
    r = w.R(c.call(11, 9, body, True))
    r.take(">i")
    err, gen = r.take(">h"), r.take(">i")
    r.s()
    r.s()
    r.s()
    r.take(">b")
    return err, gen, r.s()


def classic_leave(c, group, member):
    """LeaveGroup v5 of one member: its error."""
    body = w.cs(group) + w.carr([w.cs(member) + w.cns(None) + w.cns(None) + w.TAGS]) + w.TAGS
    r = w.R(c.call(13, 5, body, True))
    r.take(">i")
    top = r.take(">h")
    n = r.uv() - 1
    errs = []
    for _ in range(n):
        r.s()
        r.s()
        errs.append(r.take(">h"))
        r.tags()
    return top, errs


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.path.exists(os.path.join(JAVA, "lib", ".complete")):
        print("FAIL: %s missing: run tests/compat/java/prepare first" % os.path.join(JAVA, "lib"))
        return 1
    t0 = time.monotonic()
    # one __consumer_offsets partition: every record is in one segment
    config = {"offsets.topic.num.partitions": 1, "group.consumer.heartbeat.interval.ms": 1000}
    with Broker(io=args.io, shards=1, config=config) as b:
        from confluent_kafka.admin import AdminClient, NewTopic
        a = AdminClient({"bootstrap.servers": b.bootstrap})
        a.create_topics([NewTopic("kr-t", 4, 1)])["kr-t"].result(30)
        c = Conn(b.host, b.port)
        w.find_coordinators(c, ["kr-g"])
        r = w.heartbeat(c, "kr-g", "m-1", 0, topics=["kr-t"], owned=[])
        deadline = time.monotonic() + 15
        while (r["error"] != 0 or not r["assignment"]) and time.monotonic() < deadline:
            time.sleep(0.2)
            r = w.heartbeat(c, "kr-g", "m-1", 0 if r["error"] else r["epoch"], topics=["kr-t"],
                            owned=[])
        check(r["error"] == 0 and r["epoch"] == 1, "m-1 joins", r)
        tid = r["assignment"][0][0]
        r = w.heartbeat(c, "kr-g", "m-2", 0, topics=["kr-t"], owned=[], instance="i-2",
                        assignor="range")
        check(r["error"] == 0 and r["epoch"] == 2, "static m-2 joins (range)", r)
        r = w.heartbeat(c, "kr-g", "m-1", 1, owned=[(tid, [0, 1, 2, 3])], rebalance_ms=-1)
        kept = sorted(r["assignment"][0][1])
        r = w.heartbeat(c, "kr-g", "m-1", 1, owned=[(tid, kept)], rebalance_ms=-1)
        check(r["error"] == 0 and r["epoch"] == 2, "m-1 revokes two", r)
        r = w.heartbeat(c, "kr-g", "m-2", 2, owned=[], rebalance_ms=-1, instance="i-2")
        got2 = sorted(r["assignment"][0][1])
        r = w.heartbeat(c, "kr-g", "m-2", -2, owned=None, rebalance_ms=-1, instance="i-2")
        check(r["error"] == 0 and r["epoch"] == -2, "m-2 leaves for a while (-2)", r)
        r = w.heartbeat(c, "kr-g", "m-3", 0, topics=["kr-t"], owned=[], instance="i-2",
                        assignor="range")
        check(r["error"] == 0 and r["epoch"] == 2 and sorted(r["assignment"][0][1]) == got2,
              "instance i-2 back as m-3: same epoch and partitions", r)
        # a classic member joins the consumer group (ClassicMemberMetadata), then leaves
        err, _, cm = classic_join(c, "kr-g", "", "kr-t")
        check(err == 79 and cm, "classic member: MEMBER_ID_REQUIRED first", err)
        err, gen, _ = classic_join(c, "kr-g", cm, "kr-t")
        check(err == 0 and gen == 3, "classic member joins the consumer group: generation 3",
              (err, gen))
        check(classic_leave(c, "kr-g", cm) == (0, [0]), "classic member leaves (LeaveGroup)")
        for m, e in (("m-1", 2), ("m-3", 2)):
            r = w.heartbeat(c, "kr-g", m, -1, owned=None, rebalance_ms=-1)
            check(r["error"] == 0, "%s leaves" % m, r)
        check(w.delete_groups(c, "kr-g") == 0, "DeleteGroups")
        c.close()
        status = b.stop()
        check(status == 0, "the broker exited cleanly", status)
        segs = sorted(glob.glob(os.path.join(b.data_dir, "__consumer_offsets-0", "*.log")))
        check(len(segs) >= 1, "a segment of __consumer_offsets-0", segs)
        out, recs = "", []
        for s in segs:
            o, rs = dump(s)
            out += o
            recs += rs
        bad = [line for line in out.splitlines() if "Exception" in line or "Unknown" in line or
               "error" in line.lower()]
        check(not bad and len(recs) > 0, "Kafka's decoder reads every record (%d)" % len(recs),
              bad[:5] or out[-2000:])
        tid_s = base64.urlsafe_b64encode(tid).decode().rstrip("=")

        def find(t, member=None, pred=lambda v: True):
            return [v for ty, k, v in recs if ty == t and (member is None or
                    k.get("memberId") == member) and pred(v)]

        types = [t for t, _, _ in recs]
        check(types[:5] == [5, 3, 7, 6, 8], "a join writes member, epoch, target, target epoch, "
              "current assignment", types[:5])
        m1 = find(5, "m-1")[0]["data"]
        check(m1["clientId"] == "kraw" and m1["clientHost"] == "/127.0.0.1" and
              m1["subscribedTopicNames"] == ["kr-t"] and m1["rebalanceTimeoutMs"] == 30000 and
              m1["instanceId"] is None and m1["serverAssignor"] is None,
              "member metadata of m-1", m1)
        m2 = find(5, "m-2")[0]["data"]
        check(m2["instanceId"] == "i-2" and m2["serverAssignor"] == "range",
              "member metadata of the static m-2", m2)
        epochs = [v["data"]["epoch"] for v in find(3) if v is not None]
        check(epochs[:3] == [1, 2, 3] and all("metadataHash" in v["data"] for v in find(3) if v),
              "group epochs 1, 2, 3 with a metadata hash", epochs)
        cmeta = find(5, cm)[0]["data"]
        cmm = cmeta.get("classicMemberMetadata") or {}
        check(cmm.get("sessionTimeoutMs") == 20000 and
              [p["name"] for p in cmm.get("supportedProtocols", [])] == ["range"] and
              cmeta["subscribedTopicNames"] == ["kr-t"] and m1.get("classicMemberMetadata") is None,
              "member metadata of the classic member: ClassicMemberMetadata", cmeta)
        t1 = find(7, "m-1")[0]["data"]["topicPartitions"]
        check(t1 == [{"topicId": tid_s, "partitions": [0, 1, 2, 3]}],
              "m-1's first target: the topic by id, all four", t1)
        unrev = find(8, "m-1", lambda v: v is not None and v["data"]["state"] == 1)
        check(len(unrev) == 1 and unrev[0]["data"]["memberEpoch"] == 1 and
              unrev[0]["data"]["partitionsPendingRevocation"][0]["partitions"] ==
              sorted(set(range(4)) - set(kept)),
              "m-1 told to revoke: state 1 (unrevoked partitions), the two pending", unrev)
        stat = find(8, "m-2", lambda v: v is not None and v["data"]["memberEpoch"] == -2)
        check(len(stat) == 1 and stat[0]["data"]["previousMemberEpoch"] == 2 and
              stat[0]["data"]["assignedPartitions"][0]["partitions"] == got2,
              "m-2's temporary leave: epoch -2, its partitions kept", stat)
        for m in ("m-1", "m-2", "m-3", cm):
            last = {t: v for t, k, v in recs if k.get("memberId") == m}
            check(all(last.get(t, 1) is None for t in (5, 7, 8)) and len(last) == 3,
                  "%s: its last records are tombstones (5, 7, 8)" % m, last)
        tail = [(t, v) for t, _, v in recs[-3:]]
        check(tail == [(6, None), (4, None), (3, None)],
              "DeleteGroups: tombstones of target epoch, partition metadata, group epoch", tail)
    print("%d failure(s); %.1f s" % (len(FAILS), time.monotonic() - t0))
    return 1 if FAILS else 0


if __name__ == "__main__":
    sys.exit(main())
