"""librdkafka's transactional producer (Debian's confluent-kafka) when the *client* process dies:

- killed producer: a child process inits a transactional producer, writes records to two
  partitions inside a transaction and is SIGKILLed with it open. Its successor with the same
  transactional.id gets a higher epoch (init_transactions), which aborts the open
  transaction at once (well before its 60 s timeout): read_committed sees only the
  successor's records, read_uncommitted the killed one's too, and the last stable offset
  is past the aborted records;
- killed producer, no successor: the coordinator aborts the transaction when its timeout
  passes; the last stable offset reaches the high watermark;
- consume-transform-produce with a crash: a child worker consumes an input topic
  (read_committed, group member), and for each batch begins a transaction, produces
  transformed records, sends its consumer offsets to the transaction and commits; every
  fourth batch it aborts instead and seeks back. It is SIGKILLed after a commit, in the middle
  of the next transaction (records produced and offsets sent). A second worker with the same
  transactional.id and group fences it and carries on from the committed offsets. The output
  read with read_committed holds every input record exactly once, and the group's committed
  offsets are at the end of the input.

    /usr/bin/python3 test_txn_librdkafka.py --io uring|epoll
"""
import argparse
import json
import os
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

IN_PARTS, OUT_PARTS, N_IN = 3, 2, 300


def create(bootstrap, topic, partitions):
    a = AdminClient({"bootstrap.servers": bootstrap})
    a.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)


def txn_producer(bootstrap, tid, timeout_ms=60000):
    p = ck.Producer({"bootstrap.servers": bootstrap, "transactional.id": tid,
                     "transaction.timeout.ms": timeout_ms, "linger.ms": 5})
    p.init_transactions(60)
    return p


def read_all(bootstrap, topic, partitions, isolation, expect, timeout_s=30):
    """(value, key) pairs of topic from the start; stops once `expect` arrived and nothing more
    came for a second, or at timeout_s."""
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "reader-" + isolation,
                     "isolation.level": isolation, "enable.auto.commit": False})
    c.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in range(partitions)])
    out = []
    deadline = time.monotonic() + timeout_s
    quiet_since = time.monotonic()
    while time.monotonic() < deadline:
        m = c.poll(0.2)
        if m is not None and m.error() is None:
            out.append(m.value().decode())
            quiet_since = time.monotonic()
        elif len(out) >= expect and time.monotonic() - quiet_since > 1.0:
            break
    c.close()
    return sorted(out)


def end_offsets(bootstrap, topic, partitions, isolation):
    """High watermark (read_uncommitted) or last stable offset (read_committed) per partition."""
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets",
                     "isolation.level": isolation})
    out = [c.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10, cached=False)[1]
           for p in range(partitions)]
    c.close()
    return out


def spawn(bootstrap, role, *args):
    """This script as a child process playing `role`; its stdout is a pipe of JSON lines."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "--child", role,
                             "--bootstrap", bootstrap] + [str(a) for a in args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def wait_line(proc, want, timeout_s):
    """Reads the child's lines until a JSON one with "event" == want; returns it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            check(False, "child exited (%s) before %s" % (proc.wait(), want))
        line = line.decode(errors="replace").rstrip()
        print("  child: " + line)
        if line.startswith("{"):
            ev = json.loads(line)
            if ev.get("event") == want:
                return ev
    proc.kill()
    check(False, "no %s from the child in %d s" % (want, timeout_s))


# ---------------------------------------------------------------- children

def emit(**ev):
    print(json.dumps(ev), flush=True)


def child_open_txn(bootstrap, tid, topic, timeout_ms):
    """Writes 10 records over two partitions of topic in a transaction, reports, then waits to
    be killed with the transaction open."""
    p = txn_producer(bootstrap, tid, timeout_ms)
    p.begin_transaction()
    for i in range(10):
        p.produce(topic, value=b"killed-%d" % i, partition=i % 2)
    p.flush(30)
    emit(event="open")
    time.sleep(600)


def child_worker(bootstrap, crash_after):
    """Consume-transform-produce over rk-in -> rk-out until the committed input offsets reach
    the end. With crash_after > 0: after that many records are committed, it writes the next
    batch and sends its offsets, reports "mid" and waits to be killed."""
    p = txn_producer(bootstrap, "rk-worker")
    c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "rk-ctp",
                     "isolation.level": "read_committed", "enable.auto.commit": False,
                     "auto.offset.reset": "earliest", "session.timeout.ms": 6000,
                     "heartbeat.interval.ms": 500})
    c.subscribe(["rk-in"])
    committed_records, batches, aborts = 0, 0, 0
    end = {p_: None for p_ in range(IN_PARTS)}
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        msgs = [m for m in c.consume(25, 0.5) if m.error() is None]
        if not msgs:
            assigned = c.assignment()
            if len(assigned) == IN_PARTS:
                for tp in assigned:
                    if end[tp.partition] is None:
                        end[tp.partition] = c.get_watermark_offsets(tp, timeout=10)[1]
                done = {tp.partition: tp.offset for tp in c.committed(assigned, 10)}
                if all(done[k] >= end[k] for k in end):
                    break
            continue
        start = {}
        for m in msgs:
            start.setdefault(m.partition(), m.offset())
        batches += 1
        p.begin_transaction()
        for m in msgs:
            out = m.value().replace(b"in-", b"out-")
            p.produce("rk-out", value=out, partition=m.offset() % OUT_PARTS)
        p.send_offsets_to_transaction(c.position(c.assignment()), c.consumer_group_metadata(),
                                      30)
        if crash_after and committed_records >= crash_after:
            p.flush(30)
            emit(event="mid", committed=committed_records, pending=len(msgs))
            time.sleep(600)
        if batches % 4 == 0:
            p.abort_transaction(30)
            aborts += 1
            for part, off in start.items():
                c.seek(ck.TopicPartition("rk-in", part, off))
            continue
        p.commit_transaction(30)
        committed_records += len(msgs)
    emit(event="done", committed=committed_records, batches=batches, aborts=aborts)
    c.close()


# ---------------------------------------------------------------- scenarios

def killed_producer(b):
    create(b.bootstrap, "rk-kill", 2)
    child = spawn(b.bootstrap, "open", "rk-killed", "rk-kill", 60000)
    try:
        wait_line(child, "open", 60)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    hw = end_offsets(b.bootstrap, "rk-kill", 2, "read_uncommitted")
    lso = end_offsets(b.bootstrap, "rk-kill", 2, "read_committed")
    check(hw == [5, 5] and lso == [0, 0], "with the transaction open: hw %s lso %s" % (hw, lso))
    t0 = time.monotonic()
    p = txn_producer(b.bootstrap, "rk-killed")  # fences the killed one, aborts its transaction
    fence_s = time.monotonic() - t0
    check(fence_s < 30, "init_transactions of the successor took %.1f s" % fence_s)
    p.begin_transaction()
    for i in range(6):
        p.produce("rk-kill", value=b"next-%d" % i, partition=i % 2)
    p.commit_transaction(30)
    got = read_all(b.bootstrap, "rk-kill", 2, "read_committed", expect=6)
    check(got == sorted("next-%d" % i for i in range(6)), "read_committed saw %s" % got)
    got = read_all(b.bootstrap, "rk-kill", 2, "read_uncommitted", expect=16)
    want = sorted(["next-%d" % i for i in range(6)] + ["killed-%d" % i for i in range(10)])
    check(got == want, "read_uncommitted saw %s" % got)
    # each partition: 5 aborted records, an abort marker, 3 committed ones, a commit marker
    hw = end_offsets(b.bootstrap, "rk-kill", 2, "read_uncommitted")
    lso = end_offsets(b.bootstrap, "rk-kill", 2, "read_committed")
    check(hw == [10, 10] and lso == hw, "after the successor's commit: hw %s lso %s" % (hw, lso))
    print("killed producer: ok (successor fenced it in %.1f s; lso %s)" % (fence_s, lso))


def killed_no_successor(b):
    """No successor: the coordinator aborts the killed producer's transaction when its 3 s
    timeout passes, and the last stable offset reaches the high watermark."""
    create(b.bootstrap, "rk-orphan", 2)
    child = spawn(b.bootstrap, "open", "rk-orphan", "rk-orphan", 3000)
    try:
        wait_line(child, "open", 60)
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    t0 = time.monotonic()
    check(end_offsets(b.bootstrap, "rk-orphan", 2, "read_committed") == [0, 0],
          "lso with the transaction open")
    while True:
        lso = end_offsets(b.bootstrap, "rk-orphan", 2, "read_committed")
        if lso == [6, 6]:  # 5 records and an abort marker each
            break
        check(time.monotonic() - t0 < 30, "the timed-out transaction was not aborted: lso %s" % lso)
        time.sleep(0.2)
    waited = time.monotonic() - t0
    check(end_offsets(b.bootstrap, "rk-orphan", 2, "read_uncommitted") == [6, 6], "hw")
    got = read_all(b.bootstrap, "rk-orphan", 2, "read_committed", expect=0, timeout_s=3)
    check(got == [], "read_committed saw %s" % got)
    print("killed producer without a successor: ok (aborted on timeout %.1f s after the kill)"
          % waited)


def crash_ctp(b):
    create(b.bootstrap, "rk-in", IN_PARTS)
    create(b.bootstrap, "rk-out", OUT_PARTS)
    src = ck.Producer({"bootstrap.servers": b.bootstrap})
    for i in range(N_IN):
        src.produce("rk-in", value=b"in-%d" % i, partition=i % IN_PARTS)
    src.flush(30)
    first = spawn(b.bootstrap, "worker", 100)
    try:
        mid = wait_line(first, "mid", 90)
        first.send_signal(signal.SIGKILL)
        first.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    check(mid["committed"] >= 100, "crashed after %s records" % mid["committed"])
    second = spawn(b.bootstrap, "worker", 0)
    try:
        done = wait_line(second, "done", 120)
        check(second.wait(30) == 0, "second worker exit status")
    finally:
        if second.poll() is None:
            second.kill()
            second.wait()
    check(done["aborts"] >= 1, "the second worker aborted no transaction: %s" % done)
    check(mid["committed"] + done["committed"] == N_IN,
          "committed %d + %d records of %d" % (mid["committed"], done["committed"], N_IN))
    got = read_all(b.bootstrap, "rk-out", OUT_PARTS, "read_committed", expect=N_IN)
    want = sorted("out-%d" % i for i in range(N_IN))
    dups = len(got) - len(set(got))
    check(got == want, "output: %d records, %d duplicates, %d missing" %
          (len(got), dups, len(set(want) - set(got))))
    raw = read_all(b.bootstrap, "rk-out", OUT_PARTS, "read_uncommitted", expect=N_IN)
    check(len(raw) > N_IN, "read_uncommitted saw no aborted record (%d)" % len(raw))
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "rk-ctp"})
    committed = c.committed([ck.TopicPartition("rk-in", p) for p in range(IN_PARTS)], 10)
    c.close()
    offs = [tp.offset for tp in committed]
    check(offs == [N_IN // IN_PARTS] * IN_PARTS, "committed offsets %s" % offs)
    print("consume-transform-produce with a SIGKILLed worker: ok (%d exactly once, %d aborted "
          "records in the log)" % (N_IN, len(raw) - N_IN))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--child")
    ap.add_argument("--bootstrap")
    ap.add_argument("rest", nargs="*")
    args = ap.parse_args()
    if args.child == "open":
        return child_open_txn(args.bootstrap, args.rest[0], args.rest[1], int(args.rest[2]))
    if args.child == "worker":
        return child_worker(args.bootstrap, int(args.rest[0]))
    t0 = time.monotonic()
    # timed-out transactions are looked for every half second (Kafka: 10 s)
    with Broker(io=args.io, shards=2,
                config={"transaction.abort.timed.out.transaction.cleanup.interval.ms": 500}) as b:
        try:
            killed_producer(b)
            killed_no_successor(b)
            crash_ctp(b)
            check(b.alive(), "broker died")
            check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-60:]))
            raise
    print("librdkafka transactions (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))


if __name__ == "__main__":
    sys.exit(main())
