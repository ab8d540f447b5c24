"""Real clients' transactions on a 3-node cluster with the transaction coordinator's node killed
mid-stream (kill -9), then restarted, the client running throughout (librdkafka's side is
test_cluster_txn.py). Per family, a fresh cluster (topics with 3 replicas; __transaction_state
gets 3 by the cluster), a client run with transactions open all the time, the node answering
FindCoordinator (key_type 1) for the client's transactional id killed while a transaction is
open, the client required to go on committing while that node is down, the node restarted, and
exactly-once checked at the end:

- franz: franz-go's consume-transform-produce (tests/compat/franz/franz_etl, a
  GroupTransactSession with read_committed fetches) over an input written by an idempotent
  producer; every input's transform is in the output exactly once under read_committed and
  nothing else (test_franz_txn.py's checker), the group's committed offsets are the input's end,
  no transaction is left open, and read_uncommitted holds the committed and the aborted records
  and nothing more;
- java: the Java client's transactional producer (TxnKill.java) committing numbered records in
  a loop, aborting and going on after abortable errors as the client's documentation says; a
  read_committed consumer must read every value of every committed transaction exactly once, in
  order in its partition, and nothing of the aborted ones; read_uncommitted must hold no value
  twice and none the program never sent;
- streams: Kafka Streams with exactly_once_v2 (StreamsEos.java, internal topics with 3
  replicas) while input keeps arriving; the node coordinating its transactional id (found with
  ListTransactions) is killed; for every word the read_committed output holds exactly the counts
  1..n in order (test_streams_eos.py's check).

Each checker is tried on hand-made lists first (it must catch a duplicate, a missing record...).

    /usr/bin/python3 test_cluster_txn_clients.py --io uring [--family java|streams|franz|all]
        [--evidence DIR]

--evidence DIR: on a failure, the nodes' logs and the client's output are copied there.
Needs tests/compat/franz/prepare and tests/compat/java/prepare to have run.
"""
import argparse
import collections
import os
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT = os.path.join(HERE, "..", "..", "compat")
JAVA = os.path.join(COMPAT, "java")
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(COMPAT, "harness"))
sys.path.insert(0, os.path.join(COMPAT, "groups"))
sys.path.insert(0, os.path.join(COMPAT, "franz"))
sys.path.insert(0, os.path.join(COMPAT, "txn"))
from laminar_harness import free_port  # noqa: E402
from compat_util import check, java_cmd  # noqa: E402
import test_cluster as tc  # noqa: E402
import kraw  # noqa: E402
import test_franz_txn as ft  # noqa: E402
import test_streams_eos as se  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

# what a failed run leaves for the evidence directory: {name: text}
EVIDENCE = {}


# ---------------------------------------------------------------- the cluster

class Cluster:
    """Three combined-mode nodes on 127.0.0.1..3 (test_cluster.Node)."""

    def __init__(self, io):
        port, cport = free_port(), free_port()
        voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
        self.nodes = [tc.Node(i, voters, port, cport, io) for i in range(1, 4)]
        for x in self.nodes:
            x.config["group.initial.rebalance.delay.ms"] = 300

    @property
    def bootstrap(self):
        """Every node: clients must find the others when one is down."""
        return ",".join(x.bootstrap for x in self.nodes)

    def live(self):
        return [x for x in self.nodes if x.alive()]

    def start(self):
        for x in self.nodes:
            x.start()
        self.wait_formed()

    def wait_formed(self):
        ids = {x.node_id for x in self.nodes}
        for x in self.nodes:
            tc.wait_for("node %d sees 3 brokers" % x.node_id,
                        lambda x=x: tc.cluster_view(x, 1)[0] == ids, 60, self.nodes)

    def create(self, topics):
        a = tc.admin(self.nodes[0])
        fs = a.create_topics([NewTopic(t, n, 3) for t, n in topics], request_timeout=30)
        for _, f in fs.items():
            f.result()
        for t, _ in topics:
            tc.wait_for("%s led" % t, lambda t=t: -1 not in tc.leaders(self.nodes[0], t).values(),
                        30, self.nodes)

    def coordinator(self, tid, timeout=60):
        """The live node that FindCoordinator (key_type 1: transaction) names for tid, as a
        live node answers it."""
        def ask():
            for x in self.live():
                try:
                    err, nid = find_coordinator(x, tid)
                except OSError:
                    continue
                if err == 0:
                    return next((n for n in self.live() if n.node_id == nid), None)
            return None
        return tc.wait_for("the coordinator of %s" % tid, ask, timeout, self.nodes)

    def kill(self, node):
        """kill -9 node; waits until the others fenced it."""
        node.kill9()
        rest = self.live()
        tc.wait_for("node %d fenced" % node.node_id,
                    lambda: node.node_id not in tc.cluster_view(rest[0])[0], 30, self.nodes)

    def restart(self, node):
        node.restart()
        self.wait_formed()

    def stop_and_check(self):
        """Stops every node: each must exit 0 and have logged no sanitizer report."""
        for x in self.nodes:
            rc = x.stop()
            log = x.log_text()
            check(rc == 0, "node %d exit status on stop: %s" % (x.node_id, rc))
            check("runtime error" not in log and "AddressSanitizer" not in log,
                  "a sanitizer report in node %d's log" % x.node_id)

    def keep_evidence(self, where):
        for x in self.nodes:
            try:
                shutil.copy(x.log_path, os.path.join(where, "node%d.log" % x.node_id))
            except OSError:
                pass

    def cleanup(self):
        for x in self.nodes:
            x.cleanup()


def find_coordinator(node, tid):
    """FindCoordinator v1 key_type 1 for tid sent to node: (error, node id)."""
    c = kraw.Conn(node.host, node.port, timeout=5)
    try:
        r = c.call(10, 1, kraw.s16str(tid) + b"\x01", False)
    finally:
        c.close()
    err, mlen = struct.unpack(">hh", r[4:8])
    pos = 8 + max(mlen, 0)
    return err, struct.unpack(">i", r[pos:pos + 4])[0]


def list_transactions(node):
    """ListTransactions v0 to node (the transactions it coordinates): [(id, pid, state)]."""
    c = kraw.Conn(node.host, node.port, timeout=5)
    try:
        r = c.call(66, 0, b"\x01\x01\x00", True)  # no state filter, no producer id filter
    finally:
        c.close()
    err = struct.unpack(">h", r[4:6])[0]
    check(err == 0, "ListTransactions on node %d: error %d" % (node.node_id, err))
    pos = 6

    def cstr():
        nonlocal pos
        n, pos = kraw.read_uv(r, pos)
        s = r[pos:pos + n - 1].decode()
        pos += n - 1
        return s
    n, pos = kraw.read_uv(r, pos)  # unknown state filters
    for _ in range(n - 1):
        cstr()
    n, pos = kraw.read_uv(r, pos)
    out = []
    for _ in range(n - 1):
        tid = cstr()
        pid = struct.unpack(">q", r[pos:pos + 8])[0]
        pos += 8
        state = cstr()
        _tags, pos = kraw.read_uv(r, pos)
        out.append((tid, pid, state))
    return out


class Child:
    """A client process; a thread reads its output lines into a queue (and keeps them all)."""

    def __init__(self, name, cmd):
        self.name = name
        self.lines = []
        self.q = queue.Queue()
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        EVIDENCE[name + ".out"] = self.lines

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append("%.3f %s" % (time.monotonic() - self.t0, line))
            self.q.put(line)
        self.q.put(None)

    def next(self, timeout_s, what):
        """The next line; fails after timeout_s without one or at the end of the output."""
        try:
            line = self.q.get(timeout=timeout_s)
        except queue.Empty:
            check(False, "%s: no output for %d s (%s)" % (self.name, timeout_s, what))
        check(line is not None, "%s exited (%s) %s" % (self.name, self.proc.wait(), what))
        return line

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.thread.join(5)


# ---------------------------------------------------------------- franz-go's ETL

FRANZ_N = 3000


def end_offsets(cl, topic, parts, isolation, timeout_s=30):
    """test_franz_txn.end_offsets, retried while a partition's new leader answers the
    retriable OFFSET_NOT_AVAILABLE (its high watermark not caught up yet, KIP-207)."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return ft.end_offsets(cl, topic, parts, isolation)
        except ck.KafkaException as e:
            err = e.args[0]
            if ((not err.retriable() and err.code() not in (5, 6, 78)) or
                    time.monotonic() > deadline):
                raise
            time.sleep(0.3)


def produce_inputs(cl, topic, n):
    """n records with key k<i> and value in-<i> to partition i % IN_PARTS (idempotent); as
    test_franz_txn.produce_inputs, less its end offsets check (the partitions' leader change
    control batches count on a cluster)."""
    p = ck.Producer({"bootstrap.servers": cl.bootstrap, "enable.idempotence": True,
                     "linger.ms": 5})
    inputs = []
    for i in range(n):
        kv = ("k%d" % i, "in-%d" % i)
        p.produce(topic, key=kv[0], value=kv[1], partition=i % ft.IN_PARTS)
        inputs.append(kv)
    check(p.flush(30) == 0, "input records not delivered")
    return inputs


def verify(cl, inputs, tin, tout, group, ends):
    """test_franz_txn.verify against the input's end offsets when the ETL started: exactly once
    under read_committed, the group at the input's end, no transaction open in the output.
    Returns the output read with read_uncommitted."""
    got = ft.read_all(cl, tout, ft.OUT_PARTS, "read_committed")
    problems = ft.exactly_once_problems(inputs, got)
    check(not problems, "%s under read_committed: %d records: %s" %
          (tout, len(got), "; ".join(problems)))
    offs = ft.committed(cl, group, tin, ft.IN_PARTS)
    check(offs == ends, "group %s committed %s, %s ended at %s" % (group, offs, tin, ends))
    hw = end_offsets(cl, tout, ft.OUT_PARTS, "read_uncommitted")
    lso = end_offsets(cl, tout, ft.OUT_PARTS, "read_committed")
    check(hw == lso, "%s: a transaction is still open: high watermarks %s, last stable %s" %
          (tout, hw, lso))
    return ft.read_all(cl, tout, ft.OUT_PARTS, "read_uncommitted")


def franz(cl):
    check(os.access(ft.EXE, os.X_OK), "%s missing: run tests/compat/franz/prepare" % ft.EXE)
    ft.checker_self_test()
    tin, tout, group, tid = "ctc-in", "ctc-out", "ctc-group", "ctc-etl"
    cl.create([(tin, ft.IN_PARTS), (tout, ft.OUT_PARTS)])
    inputs = produce_inputs(cl, tin, FRANZ_N)
    # a partition's Raft leader changes are control batches in its log: the end offsets taken
    # now (as the ETL takes them at its start) are the input's end; later ones may be past it
    ends = end_offsets(cl, tin, ft.IN_PARTS, "read_uncommitted")
    t0 = time.monotonic()
    flags = ["--in", tin, "--out", tout, "--group", group, "--txn-id", tid, "--pause-ms", 150,
             "--deadline-s", 400, "--end-offsets", ",".join(str(o) for o in ends)]
    if os.environ.get("LAMINAR_TEST_FRANZ_DEBUG"):
        flags.append("--debug")
    ev_lines = []
    EVIDENCE["franz_etl.out"] = ev_lines
    victim, t_kill, after_kill, records = None, None, 0, 0
    aborted, done, successors = [], None, []
    last_open, failed_open = 0, 0
    etl = ft.Etl(cl, "etl", *flags)
    try:
        while done is None:
            try:
                for ev in etl.events(120):
                    ev_lines.append("%.3f %s %s" % (time.monotonic() - t0, etl.name, ev))
                    if ev["event"] == "open":
                        last_open = ev["records"]
                    elif ev["event"] == "commit":
                        records += ev["records"]
                        if victim is not None and not victim.alive():
                            after_kill += 1
                    elif ev["event"] == "abort":
                        aborted.append(ev)
                    elif ev["event"] == "done":
                        done = ev
                        break
                    if (victim is None and ev["event"] == "open" and
                            records >= FRANZ_N // 4 and etl.caught_up()):
                        victim = cl.coordinator(tid)
                        t_kill = time.monotonic()
                        print("franz: killing node %d, the coordinator of %s, in an open "
                              "transaction (%d records committed)"
                              % (victim.node_id, tid, records), flush=True)
                        cl.kill(victim)
                    if victim is not None and not victim.alive() and after_kill >= 3:
                        print("franz: %d transactions committed %.1f s after the kill with node "
                              "%d down; restarting it" % (after_kill, time.monotonic() - t_kill,
                                                          victim.node_id), flush=True)
                        cl.restart(victim)
            except AssertionError as e:
                # franz-go (v1.18.1) does not ride over its coordinator's node dying: the first
                # refused dial to it fails AddOffsetsToTxn / EndTxn without a retry (the
                # coordinator is forgotten after 3 refused dials only), and End's errors are
                # final ("no returned error is retryable"). What its application does then:
                # a new session with the same transactional id and group, which fences the old
                # one. Only that, once, while the node is down; anything else fails the test.
                msg = str(e)
                if (successors or victim is None or victim.alive() or
                        "End: unable to dial" not in msg or
                        ("%s:%d" % (victim.host, victim.port)) not in msg):
                    raise
                print("franz: %s; starting a successor session (same transactional id and "
                      "group), node %d still down" % (msg, victim.node_id), flush=True)
                successors.append(msg)
                failed_open += last_open  # its open transaction: aborted by the successor
                etl.kill()
                etl = ft.Etl(cl, "etl-2", *flags)
        check(etl.proc.wait(30) == 0, "%s exit status" % etl.name)
    finally:
        etl.kill()
    check(victim is not None, "the ETL was done before the coordinator could be killed")
    check(victim.alive(), "the ETL was done before the killed node was restarted")
    secs = time.monotonic() - t0
    check(records == FRANZ_N, "the ETL committed %d records of %d" % (records, FRANZ_N))
    raw = verify(cl, inputs, tin, tout, group, ends)
    extra = sum(ev["records"] for ev in aborted) + failed_open
    check(len(raw) == FRANZ_N + extra, "%s under read_uncommitted: %d records, expected %d "
          "committed and %d aborted" % (tout, len(raw), FRANZ_N, extra))
    print("franz: ok: %d inputs exactly once under read_committed across the coordinator's "
          "kill -9; %d transactions aborted (%s); %s; last instance: %d committed, %d Begin "
          "retries; %.1f s"
          % (FRANZ_N, len(aborted),
             "; ".join(ev.get("produce_error") or "asked" for ev in aborted)[:300],
             "the session rode over the kill" if not successors else
             "the first session failed (%s) and a successor finished" % successors[0],
             done["commits"], done["begin_retries"], secs))
    if successors:
        print("FIGURE franz-go did not ride over its coordinator's node dying: End failed on a "
              "refused dial; a successor session finished exactly once")


# ---------------------------------------------------------------- the Java producer

JAVA_TOPIC, JAVA_PARTS, JAVA_TXNS, JAVA_PER = "ctc-java", 6, 60, 30


def numbered_problems(committed, aborted, got, parts, committed_only=True):
    """committed, aborted: the (first, last) value ranges of committed and aborted transactions;
    got: the (partition, value) pairs read, in each partition's order. Returns what is wrong.
    committed_only (read_committed): every committed value exactly once, none aborted, each in
    partition value % parts, ascending in its partition. Else (read_uncommitted): no value twice,
    every committed one there, none the producer never sent."""
    want = set(v for a, b in committed for v in range(a, b + 1))
    gone = set(v for a, b in aborted for v in range(a, b + 1))
    cnt = collections.Counter(v for _, v in got)
    problems = []
    dups = sorted(v for v, n in cnt.items() if n > 1)
    if dups:
        problems.append("%d duplicated (first %s)" % (len(dups), dups[:5]))
    missing = sorted(want - set(cnt))
    if missing:
        problems.append("%d missing (first %s)" % (len(missing), missing[:5]))
    strangers = sorted(set(cnt) - want - gone)
    if strangers:
        problems.append("%d never sent (first %s)" % (len(strangers), strangers[:5]))
    if committed_only:
        visible = sorted(set(cnt) & gone)
        if visible:
            problems.append("%d of aborted transactions visible (first %s)"
                            % (len(visible), visible[:5]))
    misplaced = [(p, v) for p, v in got if v % parts != p]
    if misplaced:
        problems.append("%d in the wrong partition (first %s)" % (len(misplaced), misplaced[:5]))
    if committed_only:
        last = {}
        for p, v in got:
            if v <= last.get(p, -1):
                problems.append("partition %d: %d after %d" % (p, v, last[p]))
                break
            last[p] = v
    return problems


def numbered_self_test():
    committed, aborted = [(0, 5), (12, 17)], [(6, 11)]
    good = [(v % 3, v) for v in list(range(0, 6)) + list(range(12, 18))]
    good.sort(key=lambda pv: (pv[0], pv[1]))
    check(numbered_problems(committed, aborted, good, 3) == [], "checker: a correct read flagged")
    check(numbered_problems(committed, aborted, good + [(0, 6)], 3, False) == [],
          "checker: an aborted record under read_uncommitted flagged")
    cases = [("duplicate", good + [(0, 12)], "duplicated"),
             ("missing", good[1:], "missing"),
             ("stranger", good + [(0, 30)], "never sent"),
             ("aborted record", good + [(0, 6)], "aborted"),
             ("misplaced record", [(1 - p if p < 2 else p, v) for p, v in good], "wrong partition"),
             ("reordering", [(0, 12), (0, 0)] + [pv for pv in good if pv[0] != 0 or
                                                 pv[1] not in (0, 12)], "after")]
    for name, got, word in cases:
        p = numbered_problems(committed, aborted, got, 3)
        check(any(word in x for x in p), "checker: a %s was not caught (%s)" % (name, p))
    print("checker self-test: ok (catches a duplicate, a missing record, a stranger, an aborted "
          "record, a misplaced one, a reordering)")


def read_partitions(bootstrap, topic, parts, isolation, timeout_s=60):
    """(partition, value) of every record of topic up to each partition's end (the last stable
    offset with read_committed), in each partition's order."""
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "ctc-reader-" + isolation,
                     "isolation.level": isolation, "enable.auto.commit": False,
                     "enable.partition.eof": True})
    c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(parts)])
    out, at_end = [], set()
    deadline = time.monotonic() + timeout_s
    while len(at_end) < parts:
        check(time.monotonic() < deadline, "reading %s (%s): only partitions %s reached their "
              "end in %d s" % (topic, isolation, sorted(at_end), timeout_s))
        m = c.poll(0.2)
        if m is None:
            continue
        if m.error() is not None:
            check(m.error().code() == ck.KafkaError._PARTITION_EOF,
                  "reading %s: %s" % (topic, m.error()))
            at_end.add(m.partition())
            continue
        at_end.discard(m.partition())
        out.append((m.partition(), int(m.value().decode())))
    c.close()
    return out


def java(cl):
    for need in ("lib/.complete", "classes/TxnKill.class"):
        check(os.path.exists(os.path.join(JAVA, need)),
              "%s missing: run tests/compat/java/prepare" % need)
    numbered_self_test()
    tid = "ctc-java-tid"
    cl.create([(JAVA_TOPIC, JAVA_PARTS)])
    cp = os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes")
    t0 = time.monotonic()
    prog = Child("TxnKill", java_cmd(cp, "TxnKill", cl.bootstrap, JAVA_TOPIC, tid,
                                     str(JAVA_TXNS), str(JAVA_PER), str(JAVA_PARTS), "300"))
    committed, aborted, retries = [], [], []
    victim, t_kill, after_kill, done = None, None, 0, None
    try:
        while done is None:
            line = prog.next(90, "%d transactions committed, node %s %s" % (
                len(committed), victim.node_id if victim else "-",
                "down" if victim and not victim.alive() else "up"))
            w = line.split()
            if not w:
                continue
            if w[0] == "COMMIT":
                committed.append((int(w[1]), int(w[2])))
                if victim is not None and not victim.alive():
                    after_kill += 1
            elif w[0] == "ABORT":
                aborted.append((int(w[1]), int(w[2])))
                print("  TxnKill: %s" % line, flush=True)
            elif w[0] == "RETRY":
                retries.append(line)
                print("  TxnKill: %s" % line, flush=True)
            elif w[0] == "DONE":
                done = line
            elif w[0] == "FATAL" or "Exception" in line:
                print("  TxnKill: %s" % line, flush=True)
            # in the pause between the records' acknowledgement and the commit (a loaded
            # machine may see the COMMIT line already queued: then at a later one)
            if (victim is None and w[0] == "OPEN" and len(committed) >= JAVA_TXNS // 4 and
                    (prog.q.empty() or len(committed) >= JAVA_TXNS // 2)):
                in_open = prog.q.empty()
                victim = cl.coordinator(tid)
                t_kill = time.monotonic()
                print("java: killing node %d, the coordinator of %s, %s (%d committed)"
                      % (victim.node_id, tid, "in an open transaction" if in_open else
                         "after an OPEN line (its COMMIT line already queued)", len(committed)),
                      flush=True)
                cl.kill(victim)
            if victim is not None and not victim.alive() and after_kill >= 3:
                print("java: %d transactions committed %.1f s after the kill with node %d down; "
                      "restarting it" % (after_kill, time.monotonic() - t_kill, victim.node_id),
                      flush=True)
                cl.restart(victim)
        rc = prog.proc.wait(30)
        check(rc == 0, "TxnKill exit status %s" % rc)
    finally:
        prog.kill()
    check(victim is not None, "TxnKill was done before the coordinator could be killed")
    check(victim.alive(), "TxnKill was done before the killed node was restarted")
    secs = time.monotonic() - t0
    check(len(committed) == JAVA_TXNS, "%d transactions committed" % len(committed))
    got = read_partitions(cl.bootstrap, JAVA_TOPIC, JAVA_PARTS, "read_committed")
    problems = numbered_problems(committed, aborted, got, JAVA_PARTS)
    check(not problems, "%s under read_committed: %d records: %s"
          % (JAVA_TOPIC, len(got), "; ".join(problems)))
    raw = read_partitions(cl.bootstrap, JAVA_TOPIC, JAVA_PARTS, "read_uncommitted")
    problems = numbered_problems(committed, aborted, raw, JAVA_PARTS, committed_only=False)
    check(not problems, "%s under read_uncommitted: %d records: %s"
          % (JAVA_TOPIC, len(raw), "; ".join(problems)))
    hw = end_offsets(cl, JAVA_TOPIC, JAVA_PARTS, "read_uncommitted")
    lso = end_offsets(cl, JAVA_TOPIC, JAVA_PARTS, "read_committed")
    check(hw == lso, "a transaction is still open: high watermarks %s, last stable %s"
          % (hw, lso))
    print("java: ok: %d transactions of %d records committed across the coordinator's kill -9 "
          "(%d aborted and retried, %d timed-out calls retried), %d records read exactly once "
          "under read_committed, %d in the log, %.1f s"
          % (len(committed), JAVA_PER, len(aborted), len(retries), len(got), len(raw), secs))


# ---------------------------------------------------------------- Kafka Streams

def streams_writer(bootstrap, counts, progress, stop, n):
    """n (user, word) records to se-in, 20 every 100 ms or so (test_streams_eos's words)."""
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all",
                     "enable.idempotence": True})
    for i in range(n):
        if stop.is_set():
            break
        w = se.WORDS[(i * 7 + i // 5) % len(se.WORDS)]
        p.produce("se-in", key=b"u%d" % (i % 11), value=w.encode())
        counts[w] += 1
        progress[0] = i + 1
        if i % 20 == 19:
            p.flush(60)
            time.sleep(0.1)
    check(p.flush(60) == 0, "se-in records not delivered")


def streams_tids(cl):
    out = []
    for x in cl.live():
        out += [t for t, _pid, _st in list_transactions(x) if t.startswith("se-app-")]
    return sorted(set(out))


def streams(cl, state_dir):
    for need in ("lib/.complete", "classes/StreamsEos.class"):
        check(os.path.exists(os.path.join(JAVA, need)),
              "%s missing: run tests/compat/java/prepare" % need)
    n_in = se.N_IN
    cl.create([("se-in", 3), ("se-out", 3)])
    out = se.Output(cl.bootstrap)
    counts = collections.Counter()
    progress = [0]
    stop = threading.Event()
    t0 = time.monotonic()
    app = se.App(cl.bootstrap, state_dir, "app", seconds=500, rf=3)
    EVIDENCE["streams.out"] = app.lines
    wt = threading.Thread(target=streams_writer,
                          args=(cl.bootstrap, counts, progress, stop, n_in))
    victim = None
    try:
        se.wait_for("app RUNNING", lambda: "RUNNING" in app.states(), 120, app)
        wt.start()
        se.wait_for("committed output and a transaction open",
                    lambda: out.poll(0.3) >= 300 and progress[0] < n_in and
                    sum(se.open_txn_offsets(cl.bootstrap).values()) > 0, 120, app)
        tids = streams_tids(cl)
        check(len(tids) == 1, "the application's transactional ids: %s" % tids)
        victim = cl.coordinator(tids[0])
        print("streams: killing node %d, the coordinator of %s (%d outputs committed, %d "
              "inputs written)" % (victim.node_id, tids[0], out.n, progress[0]), flush=True)
        t_kill = time.monotonic()
        n_kill = out.n
        cl.kill(victim)
        se.wait_for("300 more outputs with node %d down" % victim.node_id,
                    lambda: out.poll(0.5) >= n_kill + 300, 120, app)
        print("streams: %d more outputs %.1f s after the kill with node %d down; restarting it"
              % (out.n - n_kill, time.monotonic() - t_kill, victim.node_id), flush=True)
        cl.restart(victim)
        wt.join(120)
        check(not wt.is_alive(), "input writer did not finish")
        check(sum(counts.values()) == n_in, "wrote %d inputs" % sum(counts.values()))
        se.wait_for("every count in se-out", lambda: out.poll(0.5) >= n_in, 180, app)
        out.poll(3.0)  # anything more (a duplicate) would arrive now
        check(app.proc.poll() is None and "ERROR" not in app.states(),
              "the application stopped: %s" % app.states())
    finally:
        stop.set()
        if wt.is_alive():
            wt.join(30)
        app.stop()
        out.close()
    bad = {w: s for w, s in out.seq.items() if s != list(range(1, counts[w] + 1))}
    for w, s in sorted(bad.items())[:5]:
        print("word %s: true count %d, output %s" % (w, counts[w], s))
    check(not bad, "%d words with wrong counts" % len(bad))
    check(set(out.seq) == set(counts), "words %s vs %s" % (sorted(out.seq), sorted(counts)))
    check(out.n == n_in, "%d outputs for %d inputs" % (out.n, n_in))
    print("streams: ok: exactly_once_v2 across the coordinator's kill -9: %d inputs, %d words, "
          "every count exact, states %s, %.1f s"
          % (n_in, len(counts), " ".join(app.states()), time.monotonic() - t0))


# ---------------------------------------------------------------- main

def run_family(fam, io, evidence):
    t0 = time.monotonic()
    cl = Cluster(io)
    EVIDENCE.clear()
    ok = False
    state_dir = tempfile.mkdtemp(prefix="laminar-ctc-streams-")
    try:
        cl.start()
        if fam == "franz":
            franz(cl)
        elif fam == "java":
            java(cl)
        else:
            streams(cl, state_dir)
        cl.stop_and_check()
        ok = True
    except (Exception, SystemExit) as e:  # check(), test_cluster.fail(), a client error
        print("FAIL %s: %s" % (fam, e), flush=True)
        for x in cl.nodes:
            print("---- node %d log (tail) ----" % x.node_id)
            print("\n".join(x.log_text().splitlines()[-30:]))
    finally:
        if not ok and evidence:
            where = os.path.join(evidence, "%s-%s" % (fam, time.strftime("%Y%m%d-%H%M%S")))
            os.makedirs(where, exist_ok=True)
            cl.keep_evidence(where)
            for name, lines in EVIDENCE.items():
                with open(os.path.join(where, name), "w") as f:
                    f.write("\n".join(lines) + "\n")
            print("evidence kept in %s" % where)
        cl.cleanup()
        shutil.rmtree(state_dir, ignore_errors=True)
    print("%s %s (%s) in %.1f s" % ("PASS" if ok else "FAIL", fam, io, time.monotonic() - t0),
          flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--family", default="all", choices=("franz", "java", "streams", "all"))
    ap.add_argument("--evidence", default=None)
    args = ap.parse_args()
    fams = ("franz", "java", "streams") if args.family == "all" else (args.family,)
    results = [run_family(f, args.io, args.evidence) for f in fams]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
