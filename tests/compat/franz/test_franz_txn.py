"""franz-go's transactional ETL against laminar: franz_etl (etl/main.go, a kgo.GroupTransactSession
with read_committed fetches and RequireStableFetchOffsets) consumes an input topic in a group and
writes one record per input record to an output topic, one transaction per poll. Checked from
outside with confluent-kafka (read_committed) for exactly-once:

- crash: the ETL is SIGKILLed in an open transaction (its records flushed to the output log)
  after the group's committed offsets show 3/8 of the input done (with franz-go's order of
  polling: one input partition entirely, a second one in part). At that point the
  committed output is exactly the output of the committed input, and the output's last stable
  offset is behind its high watermark by the open transaction's records. A second ETL with the
  same transactional id and group fences the first (its transaction is aborted) and finishes;
- aborts: the ETL ends every third transaction with TryAbort; the aborted records are in the log
  (read_uncommitted) and their input is processed again.

Either way, at the end: every input record's transform is in the output exactly once under
read_committed and nothing else, the group's committed offsets are the input's end offsets, and
no transaction is left open. The checker itself is tried first on hand-made lists (it must
catch a duplicate, a missing record, a stranger and a wrong key).

    /usr/bin/python3 test_franz_txn.py --io uring|epoll

Needs tests/compat/franz/prepare to have run (go build); fails if it has not.
"""
import argparse
import collections
import json
import os
import select
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

EXE = os.path.join(HERE, "franz_etl")
IN_PARTS, OUT_PARTS = 4, 3
N_CRASH, N_ABORT = 2000, 1000
CONF = {
    # timed-out transactions are looked for every half second (Kafka: 10 s)
    "transaction.abort.timed.out.transaction.cleanup.interval.ms": 500,
    "transaction.state.log.num.partitions": 4,
    "offsets.topic.num.partitions": 4,
    "group.initial.rebalance.delay.ms": 300,
}


# ---------------------------------------------------------------- the exactly-once checker

def exactly_once_problems(inputs, outputs):
    """inputs: the (key, value) pairs given to the ETL; outputs: the (key, value) pairs read from
    its output. Returns what is wrong (an empty list: each input's ("out-" + value, same key)
    is in the output exactly once, and nothing else is)."""
    want = collections.Counter((k, "out-" + v) for k, v in inputs)
    got = collections.Counter(outputs)
    problems = []
    dups = [kv for kv, n in got.items() if n > 1 and kv in want]
    if dups:
        problems.append("%d duplicated (first %s)" % (len(dups), sorted(dups)[:3]))
    strangers = [kv for kv in got if kv not in want]
    if strangers:
        problems.append("%d unexpected (first %s)" % (len(strangers), sorted(strangers)[:3]))
    missing = [kv for kv in want if kv not in got]
    if missing:
        problems.append("%d missing (first %s)" % (len(missing), sorted(missing)[:3]))
    return problems


def checker_self_test():
    ins = [("k1", "in-1"), ("k2", "in-2"), ("k3", "in-3")]
    good = [("k2", "out-in-2"), ("k3", "out-in-3"), ("k1", "out-in-1")]
    check(exactly_once_problems(ins, good) == [], "checker: a correct output flagged")
    cases = [("duplicate", good + [("k1", "out-in-1")], "duplicated"),
             ("missing", good[:2], "missing"),
             ("stranger", good + [("k9", "out-in-9")], "unexpected"),
             ("wrong key", good[:2] + [("k3", "out-in-1")], "unexpected")]
    for name, out, word in cases:
        p = exactly_once_problems(ins, out)
        check(any(word in x for x in p), "checker: a %s was not caught (%s)" % (name, p))
    print("checker self-test: ok (catches a duplicate, a missing record, a stranger, a wrong key)")


# ---------------------------------------------------------------- broker-side helpers

def create(b, topic, partitions):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def produce_inputs(b, topic, n):
    """n records with key k<i> and value in-<i> to partition i % IN_PARTS (idempotent)."""
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True,
                     "linger.ms": 5})
    inputs = []
    for i in range(n):
        kv = ("k%d" % i, "in-%d" % i)
        p.produce(topic, key=kv[0], value=kv[1], partition=i % IN_PARTS)
        inputs.append(kv)
    check(p.flush(30) == 0, "input records not delivered")
    check(end_offsets(b, topic, IN_PARTS, "read_uncommitted") == [n // IN_PARTS] * IN_PARTS,
          "input end offsets")
    return inputs


def end_offsets(b, topic, partitions, isolation):
    """High watermark (read_uncommitted) or last stable offset (read_committed) per partition."""
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "offsets",
                     "isolation.level": isolation})
    out = [c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10, cached=False)[1]
           for p in range(partitions)]
    c.close()
    return out


def committed(b, group, topic, partitions):
    """The group's committed offsets per partition (0 where none)."""
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                     "isolation.level": "read_committed", "enable.auto.commit": False})
    tps = c.committed([ck.TopicPartition(topic, p) for p in range(partitions)], 15)
    c.close()
    return [max(tp.offset, 0) for tp in tps]


def read_all(b, topic, partitions, isolation, timeout_s=30):
    """(key, value) pairs of every partition from the start up to its end (the last stable offset
    with read_committed): reads until each partition reported its end."""
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader-" + isolation,
                     "isolation.level": isolation, "enable.auto.commit": False,
                     "enable.partition.eof": True})
    c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    out, at_end = [], set()
    deadline = time.monotonic() + timeout_s
    while len(at_end) < partitions:
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
        out.append((m.key().decode(), m.value().decode()))
    c.close()
    return out


def verify(b, inputs, tin, tout, group):
    """The end state: exactly once under read_committed, the group at the input's end, no open
    transaction in the output. Returns the output read with read_uncommitted."""
    got = read_all(b, tout, OUT_PARTS, "read_committed")
    problems = exactly_once_problems(inputs, got)
    check(not problems, "%s under read_committed: %d records: %s" %
          (tout, len(got), "; ".join(problems)))
    ends = end_offsets(b, tin, IN_PARTS, "read_uncommitted")
    offs = committed(b, group, tin, IN_PARTS)
    check(offs == ends, "group %s committed %s, %s ends at %s" % (group, offs, tin, ends))
    hw = end_offsets(b, tout, OUT_PARTS, "read_uncommitted")
    lso = end_offsets(b, tout, OUT_PARTS, "read_committed")
    check(hw == lso, "%s: a transaction is still open: high watermarks %s, last stable %s" %
          (tout, hw, lso))
    return read_all(b, tout, OUT_PARTS, "read_uncommitted")


# ---------------------------------------------------------------- the ETL process

class Etl:
    """franz_etl as a child process; events() yields its JSON lines as dicts."""

    def __init__(self, b, name, *flags):
        self.name = name
        self.proc = subprocess.Popen([EXE, "etl", b.bootstrap] + [str(f) for f in flags],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.buf = b""
        self.t0 = time.monotonic()

    def events(self, timeout_s):
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\n" not in self.buf:
                left = deadline - time.monotonic()
                check(left > 0, "%s: nothing for %d s" % (self.name, timeout_s))
                ready, _, _ = select.select([self.proc.stdout], [], [], left)
                if ready:
                    chunk = os.read(self.proc.stdout.fileno(), 65536)
                    if not chunk:
                        check(False, "%s exited (%s) before it was done" %
                              (self.name, self.proc.wait()))
                    self.buf += chunk
            line, self.buf = self.buf.split(b"\n", 1)
            line = line.decode(errors="replace")
            if not line.startswith("{"):
                print("  %s: %s" % (self.name, line))
                check(not line.startswith("FAIL"), "%s: %s" % (self.name, line))
                continue
            ev = json.loads(line)
            if ev["event"] not in ("open", "commit"):
                print("  %s: %s" % (self.name, line))
            yield ev

    def caught_up(self):
        """True when no later line is waiting to be read."""
        return (b"\n" not in self.buf and
                not select.select([self.proc.stdout], [], [], 0)[0])

    def kill(self):
        """SIGKILL to this child's pid."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def finish(self, timeout_s):
        """Events up to "done"; checks the exit status. Returns the done event with "aborted"
        (the abort events), "first_commit_s" (from the start) and "steady_rate" (records/s
        committed between the first commit and the last) added."""
        aborted, commits = [], []
        for ev in self.events(timeout_s):
            if ev["event"] == "commit":
                commits.append((time.monotonic() - self.t0, ev["records"]))
            if ev["event"] == "abort":
                aborted.append(ev)
            if ev["event"] == "done":
                check(self.proc.wait(30) == 0, "%s exit status" % self.name)
                check(len(commits) >= 2, "%s: %d commits" % (self.name, len(commits)))
                span = max(commits[-1][0] - commits[0][0], 0.001)
                ev.update(aborted=aborted, first_commit_s=commits[0][0],
                          steady_rate=sum(n for _, n in commits[1:]) / span)
                return ev


# ---------------------------------------------------------------- scenarios

def crash(b):
    create(b, "etl-in", IN_PARTS)
    create(b, "etl-out", OUT_PARTS)
    inputs = produce_inputs(b, "etl-in", N_CRASH)
    t0 = time.monotonic()
    first = Etl(b, "etl-1", "--pause-ms", 300)
    armed, last_total, killed_records = False, 0, None
    try:
        for ev in first.events(120):
            if ev["event"] == "commit":
                last_total = ev["total"]
                if not armed and last_total >= N_CRASH * 3 // 8:
                    # progress as the broker has it, not only as the ETL says
                    offs = committed(b, "etl-group", "etl-in", IN_PARTS)
                    armed = sum(offs) >= N_CRASH * 3 // 8
            elif ev["event"] == "done":
                check(False, "etl-1 was done before it could be killed")
            elif ev["event"] == "open" and armed and first.caught_up():
                first.kill()  # in the 300 ms between the flush and End
                killed_records = ev["records"]
                break
    finally:
        first.kill()
    first_s = time.monotonic() - t0
    offs = committed(b, "etl-group", "etl-in", IN_PARTS)
    check(sum(offs) == last_total, "at the kill the group committed %s (%d), the ETL said %d" %
          (offs, sum(offs), last_total))
    check(sum(offs) < N_CRASH, "the ETL was done before the kill")
    # the committed output is the output of exactly the committed input
    done_in = [kv for i, kv in enumerate(inputs) if i // IN_PARTS < offs[i % IN_PARTS]]
    got = read_all(b, "etl-out", OUT_PARTS, "read_committed")
    problems = exactly_once_problems(done_in, got)
    check(not problems, "at the kill: etl-out under read_committed against the %d committed "
          "inputs: %s" % (len(done_in), "; ".join(problems)))
    hw = end_offsets(b, "etl-out", OUT_PARTS, "read_uncommitted")
    lso = end_offsets(b, "etl-out", OUT_PARTS, "read_committed")
    check(sum(hw) - sum(lso) == killed_records,
          "at the kill: etl-out high watermarks %s, last stable %s; the open transaction had %d "
          "records" % (hw, lso, killed_records))
    print("crash: etl-1 killed with a transaction of %d records open, %d inputs committed "
          "(offsets %s), etl-out hw %s lso %s" % (killed_records, sum(offs), offs, hw, lso))

    t1 = time.monotonic()
    second = Etl(b, "etl-2")
    try:
        done = second.finish(150)
    finally:
        second.kill()
    second_s = time.monotonic() - t1
    check(done["records"] == N_CRASH - last_total,
          "etl-2 committed %d records, %d were left" % (done["records"], N_CRASH - last_total))
    raw = verify(b, inputs, "etl-in", "etl-out", "etl-group")
    extra = killed_records + sum(ev["records"] for ev in done["aborted"])
    check(len(raw) == N_CRASH + extra, "etl-out under read_uncommitted: %d records, expected %d "
          "committed and %d aborted" % (len(raw), N_CRASH, extra))
    print("crash: ok (%d records exactly once)" % N_CRASH)
    print("FIGURE franz-go ETL, killed and restarted: etl-1 committed %d records in %.1f s "
          "(300 ms pause per transaction); etl-2 fenced it (%d Begin retries on "
          "CONCURRENT_TRANSACTIONS), committed first %.1f s after its start (its group join "
          "waits out the dead member's 6 s session), and %d transactions (%d aborted), %d "
          "records in %.1f s in all (%.0f records/s from its first commit to its last)" %
          (last_total, first_s, done["begin_retries"], done["first_commit_s"], done["commits"],
           done["aborts"], done["records"], second_s, done["steady_rate"]))


def aborts(b):
    create(b, "etl-in-a", IN_PARTS)
    create(b, "etl-out-a", OUT_PARTS)
    inputs = produce_inputs(b, "etl-in-a", N_ABORT)
    t0 = time.monotonic()
    etl = Etl(b, "etl-a", "--in", "etl-in-a", "--out", "etl-out-a", "--group", "etl-group-a",
              "--txn-id", "etl-txn-a", "--abort-every", 3)
    try:
        done = etl.finish(150)
    finally:
        etl.kill()
    secs = time.monotonic() - t0
    asked = [ev for ev in done["aborted"] if ev["asked"]]
    check(len(asked) >= 3, "only %d transactions aborted on purpose" % len(asked))
    check(done["records"] == N_ABORT, "committed %d records of %d" % (done["records"], N_ABORT))
    raw = verify(b, inputs, "etl-in-a", "etl-out-a", "etl-group-a")
    extra = sum(ev["records"] for ev in done["aborted"])
    check(len(raw) == N_ABORT + extra, "etl-out-a under read_uncommitted: %d records, expected "
          "%d committed and %d aborted" % (len(raw), N_ABORT, extra))
    check(set(raw) == set((k, "out-" + v) for k, v in inputs),
          "an aborted transaction's output is not among the committed outputs")
    print("aborts: ok (%d records exactly once, %d aborted records invisible)" % (N_ABORT, extra))
    print("FIGURE franz-go ETL with every third transaction aborted: %d committed, %d aborted "
          "transactions, %d records in %.1f s (%.0f records/s from the first commit to the "
          "last)" % (done["commits"], done["aborts"], N_ABORT, secs, done["steady_rate"]))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    if not os.access(EXE, os.X_OK):
        print("FAIL: %s missing: run tests/compat/franz/prepare first" % EXE)
        return 1
    t0 = time.monotonic()
    b = Broker(io=args.io, shards=2, config=CONF)
    try:
        checker_self_test()
        b.start()
        crash(b)
        aborts(b)
        check(b.alive(), "broker died")
        check(b.stop() == 0, "broker exit status on stop")
        log = b.log_text()
        check("runtime error" not in log and "AddressSanitizer" not in log,
              "sanitizer report in the broker log")
    except AssertionError as e:
        print("FAIL: %s" % e)
        print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-60:]))
        return 1
    finally:
        b.cleanup()
    print("franz-go transactional ETL (%s): passed in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
