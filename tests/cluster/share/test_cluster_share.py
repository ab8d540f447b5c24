"""KIP-932 share-partition state on a 3-node cluster. For each of two share groups a
KafkaShareConsumer accepts, rejects and releases records of a replicated partition whose share
state belongs, by the key's hash, to a __share_group_state partition led by another node than
the data partition's leader, a different node for each group (the groups are chosen so): the
leader sends their states there (WriteShareGroupState). Then the data partition's leader is
killed (kill -9); the new leader reads the states back, one of them from the other node
whatever node the new leader is (ReadShareGroupState; the other from its own replica of the
state partition it now leads, or also remotely), and a new member of each group gets exactly
the records neither accepted nor rejected, never an accepted or rejected one. Last, a group
starting from the log's start acquires exactly the data records on the new leader, never the
Raft control batches (the LeaderChange record at offset 0, the new leader's after the data).

Before the kill, a third group whose group coordinator, share coordinator and data leader are
three different nodes (else the first two at least): the share offsets described (Admin listShareGroupOffsets and
kafka-share-groups --describe --offsets), altered (alterShareGroupOffsets) and deleted
(kafka-share-groups --delete-offsets) are the state the share coordinator holds, checked with a
ReadShareGroupStateSummary to it. After a reset, the data leader's share partition is read
again: at a new share session when nothing is in flight, else when its state write is fenced
(FENCED_STATE_EPOCH; x0..x2 held and released by a hand-built member first); a member gets every
record from the reset offset on, none below.

    test_cluster_share.py --io uring

Needs tests/compat/java/prepare to have run (lib/ and classes/).
"""
import argparse
import base64
import os
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "groups"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "share"))
from laminar_harness import free_port  # noqa: E402
import test_cluster as tc  # noqa: E402
import kraw  # noqa: E402
from compat_util import java_cmd  # noqa: E402
import test_share_wire as tw  # noqa: E402
import test_share_wire as sw  # noqa: E402
from test_share_wire import summary_state  # noqa: E402

JAVA = os.path.join(HERE, "..", "..", "compat", "java")
TOPIC, N = "cshare", 30
X = 3  # records x0..x2 the share offsets administration writes after the 2N


def cs(s):
    b = s.encode()
    return kraw.uvarint(len(b) + 1) + b


class R:
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
        v = None if n < 0 else self.b[self.p:self.p + n].decode()
        self.p += max(n, 0)
        return v

    def tags(self):
        for _ in range(self.uv()):
            self.uv()
            self.p += self.uv()


def topic_id(node, topic):
    """The topic's id (Metadata v12)."""
    c = kraw.Conn(node.host, node.port)
    try:
        body = kraw.uvarint(2) + b"\x00" * 16 + cs(topic) + b"\x00" + b"\x00\x00" + b"\x00"
        r = R(c.call(3, 12, body, True))
    finally:
        c.close()
    r.take(">i")
    for _ in range(r.uv() - 1):
        r.take(">i")
        r.s()
        r.take(">i")
        r.s()
        r.tags()
    r.s()
    r.take(">i")
    r.uv()
    err = r.take(">h")
    r.s()
    tid = r.b[r.p:r.p + 16]
    return tid if err == 0 else None


def share_coordinators(node, keys, key_type=2):
    """FindCoordinator v6 (key type 2: share coordinators, 0: group coordinators): {key: (node
    id, error)}."""
    c = kraw.Conn(node.host, node.port)
    try:
        body = struct.pack(">b", key_type) + kraw.uvarint(len(keys) + 1) + \
            b"".join(cs(k) for k in keys) + b"\x00"
        r = R(c.call(10, 6, body, True))
    finally:
        c.close()
    r.take(">i")
    out = {}
    for _ in range(r.uv() - 1):
        key, nid = r.s(), r.take(">i")
        r.s()
        r.take(">i")
        err = r.take(">h")
        r.s()
        r.tags()
        out[key] = (nid, err)
    return out


def state_summary(node, group, tid, partition):
    """ReadShareGroupStateSummary v0 at node: (error, state epoch, leader epoch, start)."""
    c = kraw.Conn(node.host, node.port)
    try:
        return summary_state(c, group, tid, partition)
    finally:
        c.close()


def values(out, tag):
    for line in out.splitlines():
        if line.startswith(tag + " "):
            return [v for v in line[len(tag) + 1:].split(",") if v]
        if line == tag:
            return []
    return None


def run(cmd, timeout):
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout)
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return -1, (e.stdout or b"").decode("utf-8", "replace") + "\nTIMEOUT"


def hold_and_leave(nodes, g, coordinator, leader, tid):
    """A member (hand-built frames) joins g, acquires x0..x2 from the data leader, closes its
    share session (they are released: available, in flight) and leaves."""
    cg = next(x for x in nodes if x.node_id == coordinator)
    cd = next(x for x in nodes if x.node_id == leader)
    c1, c2 = kraw.Conn(cg.host, cg.port), kraw.Conn(cd.host, cd.port)
    try:
        r = sw.heartbeat(c1, "mx", 0, [TOPIC], group=g)
        deadline = time.monotonic() + 20
        while r["error"] == 0 and not r["assignment"] and time.monotonic() < deadline:
            time.sleep(0.3)
            r = sw.heartbeat(c1, "mx", r["epoch"], group=g)
        if r["error"] != 0 or not r["assignment"]:
            tc.fail("member mx of %s: no assignment: %r" % (g, r), nodes)
        got, epoch = [], 0
        while len(got) < 3 and time.monotonic() < deadline:
            f = sw.share_fetch(c2, "mx", epoch, tid, wait_ms=1000, group=g)
            if f["error"] != 0:
                tc.fail("member mx: ShareFetch %r" % f, nodes)
            epoch += 1
            got += [a for p in f["parts"] for a in (p["acquired"] or [])]
        print("member mx acquired %r" % got)
        if sum(last - first + 1 for first, last, _ in got) < 3:
            tc.fail("member mx did not acquire x0..x2: %r" % got, nodes)
        sw.share_fetch(c2, "mx", -1, tid, group=g)
        sw.heartbeat(c1, "mx", -1, group=g)
    finally:
        c1.close()
        c2.close()


def admin_offsets(nodes, cp, boot, leader, tid, b64):
    """Share offsets administration of a group whose coordinator is neither the data
    partition's leader nor its share coordinator (the state partition's leader; when no
    candidate has the three on three nodes, its share coordinator at least is another node than
    its coordinator): the Admin's
    listShareGroupOffsets and kafka-share-groups --describe read the state where it is led
    (ReadShareGroupStateSummary), alterShareGroupOffsets writes it there
    (InitializeShareGroupState in the next state epoch) and kafka-share-groups --delete-offsets
    deletes it there (DeleteShareGroupState)."""
    names = ["csa%d" % i for i in range(40)] + ["adm-%s" % ("q" * i) for i in range(1, 20)]
    skeys = {g: "%s:%s:0" % (g, b64) for g in names}
    scoord = tc.wait_for("share coordinators of the admin candidates", lambda: (
        lambda got: got if all(v[1] == 0 for v in got.values()) else None)(
            share_coordinators(nodes[0], list(skeys.values()))), 30, nodes)
    gcoord = tc.wait_for("group coordinators of the admin candidates", lambda: (
        lambda got: got if all(v[1] == 0 for v in got.values()) else None)(
            share_coordinators(nodes[0], names, key_type=0)), 30, nodes)
    # three nodes if there is such a group (the hashes of a group id and of its share key are
    # not independent), else a share coordinator other than the group coordinator
    pick = [g for g in names if len({leader, scoord[skeys[g]][0], gcoord[g][0]}) == 3] or \
        [g for g in names if scoord[skeys[g]][0] != gcoord[g][0]]
    if not pick:
        tc.fail("no admin group with a share coordinator other than its coordinator: %r %r"
                % (scoord, gcoord), nodes)
    g = pick[0]
    snode = next(x for x in nodes if x.node_id == scoord[skeys[g]][0])

    def trail():
        for x in nodes:
            for ln in x.log_text().splitlines():
                if g in ln or "ShareGroupState" in ln or "refused" in ln or "fenced" in ln:
                    print("node %d: %s" % (x.node_id, ln))
    print("admin group %s: coordinator %d, share coordinator %d, data leader %d"
          % (g, gcoord[g][0], snode.node_id, leader))
    for attempt in range(4):
        # a member that joins and fetches for 3 s (again when its assignment came too late to
        # fetch: no share partition, no state yet)
        rc, out = run(java_cmd(cp, "ShareAdmin", "join", boot, TOPIC, g), 60)
        print(out)
        if rc != 0:
            tc.fail("%s: join (rc %s)" % (g, rc), nodes)
        if state_summary(snode, g, tid, 0)[3] >= 0:
            break

    def describe(want, what):
        rc, out = run(java_cmd(cp, "ShareAdmin", "describe", boot, TOPIC, g), 60)
        got = [ln.split()[1] for ln in out.splitlines() if ln.startswith("START ")]
        sm = state_summary(snode, g, tid, 0)
        print("%s: listShareGroupOffsets %s; summary at node %d %r" % (what, got, snode.node_id,
                                                                       sm))
        if want is None:  # the log end, where the share partition started (latest)
            want = sm[3] if sm[3] >= 2 * N else 2 * N
        if rc != 0 or got != [str(want)] or sm[0] != 0 or sm[3] != want:
            trail()
            tc.fail("%s: start offset %s (summary %r), want %d" % (what, got, sm, want), nodes)
        return sm

    sm = describe(None, "after the member left")
    end = sm[3]
    tool = "org.apache.kafka.tools.consumer.group.ShareGroupCommand"
    rc, out = run(java_cmd(cp, tool, "--bootstrap-server", boot, "--describe", "--group", g,
                           "--offsets"), 60)
    print(out)
    rows = [ln.split() for ln in out.splitlines() if ln.split()[:3] == [g, TOPIC, "0"]]
    if rc != 0 or len(rows) != 1 or rows[0][-1] != str(end):
        tc.fail("kafka-share-groups --describe --offsets: %r, want start offset %d"
                % (rows, end), nodes)
    rc, out = run(java_cmd(cp, "ShareAdmin", "reset", boot, TOPIC, g, "5"), 60)
    print(out)
    if rc != 0:
        tc.fail("alterShareGroupOffsets of %s to 5 (rc %s)" % (g, rc), nodes)
    sm2 = describe(5, "after alterShareGroupOffsets to 5")
    if sm2[1] != sm[1] + 1:
        tc.fail("the alteration's state epoch %d, want %d" % (sm2[1], sm[1] + 1), nodes)
    rc, out = run(java_cmd(cp, tool, "--bootstrap-server", boot, "--delete-offsets", "--group",
                           g, "--topic", TOPIC), 60)
    print(out)
    if rc != 0 or "Successful" not in out:
        tc.fail("kafka-share-groups --delete-offsets (rc %s)" % rc, nodes)
    rc, out = run(java_cmd(cp, "ShareAdmin", "describe", boot, TOPIC, g), 60)
    sm = state_summary(snode, g, tid, 0)
    print("after --delete-offsets: %s; summary %r" % (out.split("\n")[0], sm))
    if "START -1" not in out or sm != (0, 0, 0, -1):
        tc.fail("after --delete-offsets: %r, summary %r" % (out, sm), nodes)
    rc, out = run(java_cmd(cp, tool, "--bootstrap-server", boot, "--delete-offsets", "--group",
                           g, "--topic", TOPIC), 60)
    print(out)
    if "no offset information" not in out.lower():
        tc.fail("kafka-share-groups --delete-offsets again: not 'no offset information'", nodes)
    rc, out = run(java_cmd(cp, "ShareAdmin", "reset", boot, TOPIC, g, "7"), 60)
    if rc != 0:
        tc.fail("alterShareGroupOffsets of %s to 7 (rc %s)" % (g, rc), nodes)
    describe(7, "after alterShareGroupOffsets to 7")
    shift = end - 2 * N  # r<i> is at offset i + shift (the log starts with another record)
    from7 = set("r%d" % i for i in range(7 - shift, 2 * N))
    below = set("r%d" % i for i in range(7 - shift))

    def consume(want, what):
        rc, out = run(java_cmd(cp, "ShareAdmin", "consume", boot, TOPIC, g, str(len(want))), 90)
        got = set(values(out, "GOT") or [])
        print("%s: got %d distinct; missing %s; below 7 %s"
              % (what, len(got), sorted(want - got), sorted(got & below)))
        if rc != 0 or not want <= got or got & below:
            trail()
            tc.fail("%s (rc %s): %s" % (what, rc, out[-2000:]), nodes)

    # the data leader still holds the share partition it had, at the log end with nothing in
    # flight: a member's new share session reads its state again, so it gets every record from
    # 7 on, none below
    consume(from7, "a member after the reset to 7")
    # records x0..x2 acquired and released by a member that leaves (in flight, available), the
    # group reset to 7 again: the leader's share partition is not idle, a new session keeps it;
    # its first state write is fenced (FENCED_STATE_EPOCH), then it reads the state again, so a
    # member gets everything from 7 on (x0..x2 maybe twice), nothing below
    from confluent_kafka import Producer
    pr = Producer({"bootstrap.servers": boot})
    for i in range(X):
        pr.produce(TOPIC, value=b"x%d" % i, partition=0)
    if pr.flush(30) != 0:
        tc.fail("produce x0..x2", nodes)
    hold_and_leave(nodes, g, gcoord[g][0], leader, tid)
    rc, out = run(java_cmd(cp, "ShareAdmin", "reset", boot, TOPIC, g, "7"), 60)
    if rc != 0:
        tc.fail("alterShareGroupOffsets of %s to 7 again (rc %s)" % (g, rc), nodes)
    consume(from7 | set("x%d" % i for i in range(X)), "a member after the second reset to 7")
    fenced = [ln for x in nodes for ln in x.log_text().splitlines()
              if "of %s: its state write was fenced" % g in ln]
    print("fenced share partitions read again: %d" % len(fenced))
    if not fenced:
        tc.fail("the data leader's share partition of %s was not fenced" % g, nodes)


def control_never_acquired(leader, tid, nodes):
    """A group starting from the log's start (share.auto.offset.reset=earliest) on the new
    leader acquires exactly the 2N + X data records: never the Raft control batches the replicated
    partition holds (the LeaderChange record at offset 0, and the new leader's)."""
    c = kraw.Conn(leader.host, leader.port)
    errs = tw.set_group_configs(c, "csg-early", {"share.auto.offset.reset": "earliest"})
    if errs != [0]:
        tc.fail("group config of csg-early: %r" % errs, nodes)
    got, epoch = [], 0
    deadline = time.monotonic() + 30
    while len(got) < 2 * N + X and time.monotonic() < deadline:
        f = tw.share_fetch(c, "e1", epoch, tid, group="csg-early", wait_ms=1000,
                           max_records=1000)
        epoch += 1
        if f["error"] != 0:
            tc.fail("csg-early ShareFetch: %r" % f, nodes)
        got += [o for first, last, _ in tw.acquired(f) for o in range(first, last + 1)]
    c.close()
    print("csg-early acquired offsets %s" % got)
    if len(got) != 2 * N + X or len(set(got)) != len(got) or 0 in got:
        tc.fail("csg-early: %d offsets acquired (want the %d data records, never offset 0's "
                "LeaderChange): %s" % (len(got), 2 * N + X, got), nodes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in (os.path.join(JAVA, "lib", ".complete"),
                 os.path.join(JAVA, "classes", "ShareRestart.class")):
        if not os.path.exists(need):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
    nodes = [tc.Node(i, voters, port, cport, args.io) for i in range(1, 4)]
    for x in nodes:
        x.config["group.share.record.lock.duration.ms"] = 60000
        x.config["group.share.heartbeat.interval.ms"] = 500
        x.config["share.coordinator.state.topic.num.partitions"] = 3
    cp = os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes")
    try:
        for x in nodes:
            x.start()
        ids = {1, 2, 3}
        for x in nodes:
            tc.wait_for("node %d sees 3 brokers" % x.node_id,
                        lambda x=x: tc.cluster_view(x, 1)[0] == ids, 30, nodes)
        from confluent_kafka.admin import NewTopic
        a = tc.admin(nodes[0])
        a.create_topics([NewTopic(TOPIC, 1, 3)], request_timeout=30)[TOPIC].result()
        leader = tc.wait_for("a leader of %s-0" % TOPIC,
                             lambda: (lambda v: v if v >= 0 else None)(
                                 tc.leaders(nodes[0], TOPIC).get(0, -1)), 30, nodes)
        tid = tc.wait_for("the topic id", lambda: topic_id(nodes[0], TOPIC), 30, nodes)
        b64 = base64.urlsafe_b64encode(tid).decode().rstrip("=")
        # the share coordinators of candidate groups (__share_group_state made at the first
        # lookup, then led): a group whose state partition another node leads
        keys = {"csg%d" % i: "csg%d:%s:0" % (i, b64) for i in range(12)}

        def coordinators():
            got = share_coordinators(nodes[0], list(keys.values()))
            return got if all(v[1] == 0 and v[0] >= 0 for v in got.values()) else None
        coords = tc.wait_for("share coordinators", coordinators, 60, nodes)
        groups = {}
        for g, k in keys.items():
            if coords[k][0] != leader and coords[k][0] not in groups:
                groups[coords[k][0]] = g
        if len(groups) != 2:
            tc.fail("no two candidate groups with share coordinators other than the data "
                    "leader %d: %r" % (leader, coords), nodes)
        print("data leader %d; share coordinators: %s" % (
            leader, ", ".join("%s on %d" % (g, n) for n, g in sorted(groups.items()))))
        boot = ",".join(x.bootstrap for x in nodes)
        before = {}
        # the second group's member joins and fetches first, so that its share partition
        # starts at the empty log's end too (when its first fetch is in time; else at the
        # first group's records' end: what it can get starts at the first record it saw)
        second = list(groups.values())[1]
        rc, out = run(java_cmd(cp, "ShareAdmin", "join", boot, TOPIC, second), 60)
        print(out)
        if rc != 0:
            tc.fail("%s: join (rc %s)" % (second, rc), nodes)
        for k, g in enumerate(groups.values()):
            # records r(k*N)..: both groups see both runs' records
            rc, out = run(java_cmd(cp, "ShareRestart", "mixed", boot, TOPIC, g, str(N),
                                   str(k * N)), 90)
            print(out)
            accepted, rejected = values(out, "ACCEPTED"), values(out, "REJECTED")
            released = values(out, "RELEASED")
            if rc != 0 or not accepted or not rejected or released is None or \
                    "COMMIT-ERRORS" in out:
                tc.fail("%s: the first consumer did not accept, reject and release (rc %s)"
                        % (g, rc), nodes)
            before[g] = (accepted, rejected, released)
        admin_offsets(nodes, cp, boot, leader, tid, b64)
        dead = next(x for x in nodes if x.node_id == leader)
        print("killing the data leader, node %d" % leader)
        dead.kill9()
        rest = [x for x in nodes if x is not dead]
        tc.wait_for("node %d fenced" % leader,
                    lambda: leader not in tc.cluster_view(rest[0])[0], 30, rest)
        new = tc.wait_for("a new leader of %s-0" % TOPIC,
                          lambda: (lambda v: v if v >= 0 and v != leader else None)(
                              tc.leaders(rest[0], TOPIC).get(0, -1)), 30, rest)
        print("new data leader %d" % new)
        boot = ",".join(x.bootstrap for x in rest)
        outcome = []
        for g, (accepted, rejected, released) in before.items():
            done = set(accepted) | set(rejected)
            start = min(int(v[1:]) for v in accepted + rejected + released)
            want = sorted(set("r%d" % i for i in range(start, 2 * N)) - done)
            rc, out = run(java_cmd(cp, "ShareRestart", "after", boot, TOPIC, g,
                                   str(len(want))), 90)
            print(out)
            got = values(out, "GOT") or []
            again = sorted(set(got) & done)
            missing = sorted(set(want) - set(got))
            print("%s: accepted %d, rejected %d, released %d before; got %d after; accepted "
                  "or rejected delivered again %s; never delivered %s"
                  % (g, len(accepted), len(rejected), len(released), len(got), again, missing))
            outcome.append((g, rc != 0 or bool(again) or bool(missing) or "DUP 0" not in out))
        # where each share partition started, on each node
        for x in nodes:
            for ln in x.log_text().splitlines():
                if "share partition" in ln or "ShareGroupState" in ln:
                    print("node %d: %s" % (x.node_id, ln))
        bad = [g for g, failed in outcome if failed]
        if bad:
            tc.fail("%s after the fail-over" % bad, rest)
        control_never_acquired(next(x for x in rest if x.node_id == new), tid, nodes)
        errors = [ln for x in rest for ln in x.log_text().splitlines()
                  if " ERROR " in ln or "runtime error" in ln]
        if errors:
            tc.fail("ERROR lines: %s" % errors[:5], rest)
    finally:
        for x in nodes:
            if x.alive():
                x.stop()
    print("share-partition state across a leader fail-over (%s): passed in %.1f s"
          % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
