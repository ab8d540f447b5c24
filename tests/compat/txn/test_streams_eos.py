"""Kafka Streams with processing.guarantee=exactly_once_v2 (StreamsEos.java): a word count with
a repartition (groupBy word) and a state store (count), the record cache off so every input
record gives one output record.

The test writes (user, word) records to se-in while the application runs, SIGKILLs the
application mid-run (after some counts were committed, while input keeps arriving, with a
transaction open: records of it in se-out, the repartition topic and the changelog past their
last stable offsets), starts it again on the same state directory and waits until it caught
up. se-out read with read_committed must then hold, for every word, exactly the counts 1, 2,
..., n in order, n its true number of occurrences: a record processed twice (a duplicate in the
changelog's effect) or lost would show as a repeated, skipped or wrong count.

    /usr/bin/python3 test_streams_eos.py --io uring|epoll

Needs tests/compat/java/prepare to have run (lib/ with kafka-streams, classes/).
"""
import argparse
import collections
import os
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
JAVA = os.path.join(HERE, "..", "java")
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, java_cmd  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

WORDS = ["w%02d" % i for i in range(23)]
N_IN = 3000


class App:
    """The Streams application as a child JVM; its output lines are collected by a thread."""

    def __init__(self, bootstrap, state_dir, name, seconds=150, rf=1):
        """rf: the replication factor of the application's internal topics."""
        cp = os.path.join(JAVA, "lib", "*") + ":" + os.path.join(JAVA, "classes")
        self.name = name
        self.lines = []
        self.proc = subprocess.Popen(java_cmd(cp, "StreamsEos", bootstrap, state_dir,
                                              str(seconds), str(rf)),
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if line.startswith(("STATE", "UNCAUGHT", "EXIT")) or "ERROR" in line:
                print("  %s: %s" % (self.name, line), flush=True)

    def states(self):
        return [x.split()[1] for x in self.lines if x.startswith("STATE ")]

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.thread.join(5)

    def stop(self):
        """SIGTERM: Streams' shutdown hook is not installed, the JVM just exits."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.thread.join(5)


class Output:
    """A read_committed consumer of se-out kept open across the run: counts per word in order."""

    def __init__(self, bootstrap):
        self.c = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "se-check",
                              "isolation.level": "read_committed",
                              "enable.auto.commit": False})
        self.c.assign([ck.TopicPartition("se-out", p, ck.OFFSET_BEGINNING) for p in range(3)])
        self.seq = collections.defaultdict(list)
        self.n = 0

    def poll(self, seconds):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            for m in self.c.consume(500, 0.2):
                if m.error() is None:
                    self.seq[m.key().decode()].append(struct.unpack(">q", m.value())[0])
                    self.n += 1
        return self.n

    def close(self):
        self.c.close()


def open_txn_offsets(bootstrap):
    """High watermark minus last stable offset, summed per topic the application writes."""
    raw = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "se-hw",
                       "isolation.level": "read_uncommitted"})
    rc = ck.Consumer({"bootstrap.servers": bootstrap, "group.id": "se-lso",
                      "isolation.level": "read_committed"})
    out = {}
    for t in ("se-out", "se-app-by-word-repartition", "se-app-word-counts-changelog"):
        n = 0
        for p in range(3):
            tp = ck.TopicPartition(t, p)
            n += (raw.get_watermark_offsets(tp, timeout=10, cached=False)[1] -
                  rc.get_watermark_offsets(tp, timeout=10, cached=False)[1])
        out[t] = n
    raw.close()
    rc.close()
    return out


def writer(bootstrap, counts, progress, stop):
    """Writes N_IN (user, word) records to se-in at a steady pace (20 every 50 ms or so), so
    that the application has a transaction open nearly all the time."""
    p = ck.Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "acks": "all"})
    for i in range(N_IN):
        if stop.is_set():
            break
        w = WORDS[(i * 7 + i // 5) % len(WORDS)]
        p.produce("se-in", key=b"u%d" % (i % 11), value=w.encode())
        counts[w] += 1
        progress[0] = i + 1
        if i % 20 == 19:
            p.flush(30)
            time.sleep(0.05)
    p.flush(30)


def wait_for(what, cond, timeout_s, app=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        if app is not None:
            check(app.proc.poll() is None, "%s exited (%s) waiting for %s" %
                  (app.name, app.proc.returncode, what))
            check("ERROR" not in app.states(), "%s went to ERROR" % app.name)
        time.sleep(0.2)
    check(False, "timed out waiting for %s" % what)


def scenario(b, state_dir):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for t in ("se-in", "se-out"):
        a.create_topics([NewTopic(t, 3, 1)])[t].result(15)
    out = Output(b.bootstrap)
    counts = collections.Counter()
    progress = [0]
    stop = threading.Event()
    app = App(b.bootstrap, state_dir, "app1")
    app2 = None
    wt = threading.Thread(target=writer, args=(b.bootstrap, counts, progress, stop))
    try:
        wait_for("app1 RUNNING", lambda: "RUNNING" in app.states(), 60, app)
        wt.start()
        # kill once some counts are committed and input is still arriving
        wait_for("committed output from app1 and a transaction open",
                 lambda: out.poll(0.3) >= 300 and progress[0] < N_IN and
                 sum(open_txn_offsets(b.bootstrap).values()) > 0, 60, app)
        before_kill = out.n
        app.kill()
        pending = open_txn_offsets(b.bootstrap)
        print("app1 killed after %d committed outputs, %d inputs written; offsets past the "
              "last stable offset (its open transaction): %s" %
              (before_kill, progress[0], pending), flush=True)
        check(sum(pending.values()) > 0, "the kill did not land in an open transaction")
        time.sleep(1)
        app2 = App(b.bootstrap, state_dir, "app2")
        wt.join(60)
        check(not wt.is_alive(), "input writer did not finish")
        total = sum(counts.values())
        check(total == N_IN, "wrote %d inputs" % total)
        wait_for("every count in se-out", lambda: out.poll(0.5) >= N_IN, 90, app2)
        out.poll(2.0)  # anything more (a duplicate) would arrive now
    finally:
        stop.set()
        if wt.is_alive():
            wt.join(30)
        app.kill()
        if app2 is not None:
            app2.stop()
        out.close()
    bad = {w: s for w, s in out.seq.items() if s != list(range(1, counts[w] + 1))}
    for w, s in sorted(bad.items())[:5]:
        print("word %s: true count %d, output %s" % (w, counts[w], s))
    check(not bad, "%d words with wrong counts" % len(bad))
    check(set(out.seq) == set(counts), "words %s vs %s" % (sorted(out.seq), sorted(counts)))
    check(out.n == N_IN, "%d outputs for %d inputs" % (out.n, N_IN))
    # read_uncommitted also sees what the killed instance wrote in its open transaction
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "se-raw",
                     "isolation.level": "read_uncommitted"})
    raw = sum(c.get_watermark_offsets(ck.TopicPartition("se-out", p), timeout=10)[1]
              for p in range(3))
    c.close()
    print("se-out holds %d offsets for %d committed records (the rest: markers and the killed "
          "instance's aborted records)" % (raw, N_IN))
    print("streams exactly_once_v2: ok (%d inputs, %d words, final counts exact, no "
          "duplicate across the SIGKILL)" % (N_IN, len(counts)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    for need in ("lib/.complete", "classes/.complete", "classes/StreamsEos.class"):
        if not os.path.exists(os.path.join(JAVA, need)):
            print("FAIL: %s missing: run tests/compat/java/prepare first" % need)
            return 1
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2) as b, tempfile.TemporaryDirectory(
            prefix="laminar-streams-") as state_dir:
        try:
            scenario(b, state_dir)
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-60:]))
            raise
        check(b.alive(), "broker died")
        check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")
    print("streams eos (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))
    return 0


if __name__ == "__main__":
    sys.exit(main())
