"""Real Kafka clients against a 3-node laminar cluster while their partitions' leaders fail.

For each client family asked for (kcat, confluent-kafka/librdkafka, the Java client, franz-go,
kafka-python, kafkajs) the test starts a fresh 3-node cluster (combined mode, as
tests/cluster/nodes' Node), creates a topic with 3 partitions and replication factor 3 (a Raft
group per partition), and runs the family's own producer (acks=all, idempotent where the client
supports it) and group consumer (offsets committed after each batch) as separate processes.
While they run, the leader of the topic's partition 0 is

  (a) killed with kill -9 and restarted,
  (b) paused with SIGSTOP for longer than the partition election timeout (2-4 s), then SIGCONT,
  (c) stopped with SIGTERM and restarted,

and then (d) the group's coordinator (the leader of its __consumer_offsets partition) is killed
with kill -9 and restarted. After each fault both clients must make progress again (a client
that stays stuck fails the test). Then the consumer is closed and a new one started in the same
group, the producer finishes, and the new consumer reads to the end.

The checkers:
- every acknowledged record is in the partition log exactly once (at least once for a producer
  without idempotence), at the partition and offset it was acknowledged at, and each producer's
  records are in send order within a partition;
- every record the group consumers read is the one the log holds at that offset, and together
  they read every acknowledged record (but the one record kcat may lose when SIGTERM stops it,
  with its own log showing it was handed the record: see Kcat and Run.close_drop);
- committed offsets never go back: the group's offsets, sampled with OffsetFetch every 0.3 s
  through all the faults, never decrease; no sample is below a commit the client had already
  seen acknowledged; a consumer never re-reads below an offset whose commit it saw acknowledged;
  the consumer started after the fail-overs begins each partition exactly at the committed
  offset;
- every client process exits cleanly, and no node logged an ERROR or a sanitizer report.

Clients speak one line protocol on stdout (see pyclients.py): `ACK value partition offset`,
`NACK value error`, `READ value partition offset`, `COMMITTED partition offset`,
`COMMITFAIL error`, `DONE`; closing their stdin asks them to finish. kcat's producer is driven
from here (one kcat per partition, its delivery reports give the offsets).

    test_clients.py --io uring --family confluent,kcat [--pause-s 6]

A family whose client is not installed is skipped with a printed SKIP line; a family whose
prepared files are missing (tests/compat/*/prepare) fails.
"""

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
COMPAT = os.path.join(HERE, "..", "..", "compat")
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(COMPAT, "harness"))
from laminar_harness import free_port  # noqa: E402
from compat_util import java_cmd  # noqa: E402
from test_cluster import Node, admin, cluster_view, java_hash, leaders  # noqa: E402

from confluent_kafka import Consumer, TopicPartition  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

PARTITIONS = 3
PY = "/usr/bin/python3"
# After a SIGTERM the leader hands its leaderships over before it stops (controlled shutdown,
# as Kafka's): the consumer must read records the new leader wrote within this many seconds
# of the signal. The stop, a second down and the restart take about 3 s of it, the consumer's
# move to the new leader (a Fetch answered NOT_LEADER_OR_FOLLOWER, a metadata refresh) about
# 1 s; a consumer stuck on the partition (once seen for 45 s with kcat) fails here.
HANDOVER_READ_S = 10


class Failed(Exception):
    """A check failed; the message says which and why."""


# ---------------------------------------------------------------------------------------------
# What the clients report


class Events:
    """Everything the client processes printed, with the time each line arrived here."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.lock = threading.Lock()
        self.acks = {}  # value -> (partition, offset, t)
        self.ack_dups = []  # value acknowledged twice (a client bug)
        self.nacks = []  # (value, error)
        self.reads = []  # (instance, value, partition, offset, t)
        self.commits = []  # (instance, partition, offset, t) acknowledged to the client
        self.commit_fails = []  # (instance, error, t)

    def ack(self, value, p, off):
        with self.lock:
            if value in self.acks:
                self.ack_dups.append(value)
            self.acks[value] = (p, off, time.monotonic())

    def handle(self, instance, line):
        f = line.split()
        if not f:
            return
        with self.lock:
            now = time.monotonic()
            if f[0] == "READ" and len(f) == 4:
                self.reads.append((instance, f[1], int(f[2]), int(f[3]), now))
            elif f[0] == "COMMITTED" and len(f) == 3:
                self.commits.append((instance, int(f[1]), int(f[2]), now))
            elif f[0] == "COMMITFAIL":
                self.commit_fails.append((instance, line[11:], now))
            elif f[0] == "NACK":
                self.nacks.append((f[1], line))
        if f[0] == "ACK" and len(f) == 4:
            self.ack(f[1], int(f[2]), int(f[3]))

    def counts(self, instance=None, partition=None):
        """(acknowledgements, reads by instance) so far, of one partition if given."""
        with self.lock:
            return (sum(1 for a in self.acks.values() if partition in (None, a[0])),
                    sum(1 for r in self.reads
                        if instance in (None, r[0]) and partition in (None, r[2])))


class ClientProc:
    """One client process: stdout lines go to Events (and a file), stderr to a file."""

    def __init__(self, name, cmd, events, workdir, env=None, cwd=None, stop_signal=None,
                 on_line=None, says_done=True, t0=None):
        self.name = name
        self.events = events
        self.stop_signal = stop_signal  # None: close stdin to ask it to finish
        self.out_path = os.path.join(workdir, name + ".out")
        self.err_path = os.path.join(workdir, name + ".err")
        self.lines_done = False
        self.on_line = on_line
        self.t0 = time.monotonic() if t0 is None else t0  # .out lines carry the run's time
        self.says_done = says_done  # prints DONE when it finishes (kcat does not)
        self._err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self._err, env=env, cwd=cwd)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        with open(self.out_path, "w") as log:
            for raw in self.proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write("%8.3f %s\n" % (time.monotonic() - self.t0, line))
                log.flush()
                if self.on_line:
                    self.on_line(line)
                else:
                    self.events.handle(self.name, line)
                if line.startswith("DONE"):
                    self.lines_done = True

    def finish(self, timeout):
        """Asks the client to finish and waits; returns a problem (str) or None."""
        try:
            if self.stop_signal is None:
                self.proc.stdin.close()
            else:
                self.proc.send_signal(self.stop_signal)
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return "%s did not finish within %d s (killed)" % (self.name, timeout)
        self.reader.join(10)
        self._err.close()
        if rc != 0:
            return "%s exited %d" % (self.name, rc)
        if self.says_done and not self.lines_done:
            return "%s exited without DONE" % self.name
        return None

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def exited(self):
        """None while running, else the exit status."""
        return self.proc.poll()

    def tail(self, n=15):
        text = []
        for path in (self.err_path, self.out_path):
            try:
                with open(path, "rb") as f:
                    lines = f.read().decode("utf-8", "replace").splitlines()
                text.append("  %s: ...\n    %s" % (os.path.basename(path),
                                                  "\n    ".join(lines[-n:])))
            except OSError:
                pass
        return "\n".join(text)


class KcatProducer:
    """kcat -P, one process per partition fed from here at about 100 records/s in all: kcat
    prints a delivery report per record at -v -v, in send order for an idempotent producer, so
    the k-th report of a process is the k-th line it was given."""

    DELIVERED = re.compile(r"Message delivered to partition (\d+) \(offset (-?\d+)\)")

    def __init__(self, bootstrap, topic, prefix, events, workdir):
        self.events = events
        self.lock = threading.Lock()
        self.sent = {p: [] for p in range(PARTITIONS)}
        self.reported = {p: 0 for p in range(PARTITIONS)}
        self.procs = {}
        for p in range(PARTITIONS):
            # -E: kcat exits on any client error by default, "all broker connections are
            # down" included, which librdkafka reports while the one node this process talks
            # to is restarting and its connections to the others are idle-closed
            cmd = ["kcat", "-P", "-E", "-b", bootstrap, "-t", topic, "-p", str(p), "-K", ":",
                   "-v", "-v", "-X", "acks=all", "-X", "enable.idempotence=true",
                   "-X", "linger.ms=5", "-X", "message.timeout.ms=120000",
                   "-X", "topic.metadata.refresh.interval.ms=1000"]
            self.procs[p] = subprocess.Popen(cmd, stdin=subprocess.PIPE,
                                             stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE)
            threading.Thread(target=self._reports, args=(p, workdir), daemon=True).start()
        self.prefix = prefix
        self.stop = threading.Event()
        self.feeder = threading.Thread(target=self._feed, daemon=True)
        self.feeder.start()
        self.name = "kcat-producer"

    def _feed(self):
        seq = 0
        while not self.stop.is_set():
            p = seq % PARTITIONS
            v = "%s-%07d" % (self.prefix, seq)
            with self.lock:
                self.sent[p].append(v)
            self.procs[p].stdin.write(("%s:%s\n" % (v, v)).encode())
            self.procs[p].stdin.flush()
            seq += 1
            time.sleep(0.01)

    def _reports(self, p, workdir):
        with open(os.path.join(workdir, "kcat-producer-%d.err" % p), "w") as log:
            for raw in self.procs[p].stderr:
                line = raw.decode("utf-8", "replace").rstrip("\n")
                log.write(line + "\n")
                m = self.DELIVERED.search(line)
                failed = "Delivery failed" in line
                if not m and not failed:
                    continue
                with self.lock:
                    k = self.reported[p]
                    self.reported[p] += 1
                    v = self.sent[p][k] if k < len(self.sent[p]) else "?"
                if m:
                    if int(m.group(1)) != p:
                        self.events.nacks.append((v, "report for partition %s" % m.group(1)))
                    self.events.ack(v, p, int(m.group(2)))
                else:
                    self.events.nacks.append((v, line))

    def finish(self, timeout):
        self.stop.set()
        self.feeder.join(5)
        problems = []
        for p, proc in self.procs.items():
            proc.stdin.close()
        deadline = time.monotonic() + timeout
        for p, proc in self.procs.items():
            try:
                rc = proc.wait(max(1, deadline - time.monotonic()))
                if rc != 0:
                    problems.append("kcat -P -p %d exited %d" % (p, rc))
            except subprocess.TimeoutExpired:
                proc.kill()
                problems.append("kcat -P -p %d did not finish within %d s" % (p, timeout))
        time.sleep(0.5)  # the report readers drain stderr
        with self.lock:
            for p in self.procs:
                if self.reported[p] != len(self.sent[p]):
                    problems.append("kcat -p %d: %d records given, %d delivery reports"
                                    % (p, len(self.sent[p]), self.reported[p]))
        return "; ".join(problems) or None

    def exited(self):
        return next((pr.poll() for pr in self.procs.values() if pr.poll() is not None), None)

    def kill(self):
        self.stop.set()
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def tail(self, n=15):
        return "  (kcat producer logs in the work directory)"


# ---------------------------------------------------------------------------------------------
# Client families: how to start each one's producer and consumer


class Family:
    name = None
    idempotent = True
    # The consumer may lose the one record it was handed when its stop signal arrived, with
    # that record's offset committed by its close: kcat (Kcat says why, Run.close_drop how
    # the checker tells that from a broker losing a record).
    close_drops_one = False

    def missing(self):
        """Why this family cannot run here (None when it can); `fatal` marks a missing
        prepared file (a failure) rather than a missing client program (a skip)."""
        return None, False

    def prepare(self, workdir):
        pass

    def producer(self, bootstrap, topic, prefix, events, workdir):
        return ClientProc("%s-producer" % self.name,
                          self.cmd("produce", bootstrap, topic, prefix), events, workdir,
                          env=self.env(), t0=events.t0)

    def consumer(self, instance, bootstrap, topic, group, events, workdir):
        return ClientProc(instance, self.cmd("consume", bootstrap, topic, group), events,
                          workdir, env=self.env(), t0=events.t0)

    def env(self):
        return None


class Python(Family):
    def __init__(self, name):
        self.name = name
        self.idempotent = name == "confluent"

    def missing(self):
        mod = "confluent_kafka" if self.name == "confluent" else "kafka"
        r = subprocess.run([PY, "-c", "import " + mod], capture_output=True)
        return ("%s has no %s module" % (PY, mod), False) if r.returncode else (None, False)

    def cmd(self, mode, bootstrap, topic, arg):
        return [PY, os.path.join(HERE, "pyclients.py"), self.name, mode, bootstrap, topic, arg]


class Kcat(Family):
    name = "kcat"
    # kcat 1.7.1 (kcat.c, kafkaconsumer_run and consume_cb) loses a record on SIGTERM, with
    # its offset committed: its loop is
    #     while (conf.run) { m = rd_kafka_consumer_poll(rk, 100); consume_cb(m); ... }
    # and consume_cb starts with `if (!conf.run) return;`. When the signal (whose handler
    # clears conf.run) lands while consumer_poll waits, and a record arrives before the
    # 100 ms are up, consumer_poll hands it over and librdkafka stores its offset + 1
    # (enable.auto.offset.store=true, the default: "store offset of last message provided
    # to application"; rd_kafka_fetch_op_app_prepare in rd_kafka_consume0); consume_cb then
    # drops it unprinted, the loop ends, and rd_kafka_consumer_close commits the stored
    # offsets of the revoked partitions (enable.auto.commit). One record at most: the loop
    # polls no more after the signal. kcat_close_drop.py shows it against one laminar node
    # and no faults: 12 of 27 SIGTERMs under a 100 records/s producer lost one so, the
    # committed offset being the last printed + 2 (kcat printed up to 280 of partition 0;
    # librdkafka's log: "Enqueue 1 message(s) ... on close-drop [0] fetch queue (...,
    # last_offset 281, ...)", in the same millisecond "Closing consumer", then "Removing
    # close-drop [0] from assignment (... stored offset=282)", "OffsetCommit for 3
    # partition(s) ...: unassigned partitions: returned: Success"). Here (ASan, 3 nodes) the
    # records reached kcat in bursts 1.3-1.5 s apart in the runs looked at, so the signal
    # seldom lands in the last 100 ms before one: none in 45 runs, the old flake.
    close_drops_one = True

    def missing(self):
        return (None, False) if shutil.which("kcat") else ("kcat is not installed", False)

    def producer(self, bootstrap, topic, prefix, events, workdir):
        return KcatProducer(bootstrap, topic, prefix, events, workdir)

    def consumer(self, instance, bootstrap, topic, group, events, workdir):
        # The balanced consumer (-G) with librdkafka's auto-commit every 200 ms; SIGTERM
        # closes it (a final commit, LeaveGroup). -E as for the producer.
        cmd = ["kcat", "-E", "-b", bootstrap, "-G", group, "-u", "-q", "-f", "READ %s %p %o\\n",
               "-X", "auto.offset.reset=earliest", "-X", "enable.auto.commit=true",
               "-X", "auto.commit.interval.ms=200", "-X", "session.timeout.ms=10000",
               "-X", "heartbeat.interval.ms=500",
               "-X", "topic.metadata.refresh.interval.ms=1000"]
        # librdkafka's debug log, to the .err file: always cgrp (its "Removing ... from
        # assignment (... stored offset=N)" lines show what the close commits, which
        # close_drop reads) and metadata (which node each Metadata answer came from and the
        # leader it gave each partition: once kcat went back from partition 0's new leader
        # to the old one 5 ms after moving, and fetched from it, answered "Not leader for
        # partition", for 45 s), LAMINAR_CLIENT_DEBUG's contexts as well (e.g. fetch)
        debug = ["cgrp", "metadata"]
        debug += [c for c in os.environ.get("LAMINAR_CLIENT_DEBUG", "").split(",")
                  if c and c not in debug]
        cmd += ["-d", ",".join(debug)]
        cmd.append(topic)
        return ClientProc(instance, cmd, events, workdir, stop_signal=signal.SIGTERM,
                          says_done=False, t0=events.t0)


class Java(Family):
    name = "java"

    def missing(self):
        if not shutil.which("java") or not shutil.which("javac"):
            return "java/javac not installed", False
        if not os.path.exists(os.path.join(COMPAT, "java", "lib", ".complete")):
            return "tests/compat/java/lib missing: run tests/compat/java/prepare", True
        return None, False

    def prepare(self, workdir):
        self.classes = os.path.join(workdir, "classes")
        os.makedirs(self.classes, exist_ok=True)
        lib = os.path.join(COMPAT, "java", "lib", "*")
        subprocess.run(["javac", "-d", self.classes, "-cp", lib,
                        os.path.join(HERE, "FailoverClient.java")], check=True)
        self.cp = lib + ":" + self.classes

    def cmd(self, mode, bootstrap, topic, arg):
        return java_cmd(self.cp, "FailoverClient", mode, bootstrap, topic, arg)


class Franz(Family):
    name = "franz"

    def missing(self):
        return (None, False) if shutil.which("go") else ("go is not installed", False)

    def prepare(self, workdir):
        self.exe = os.path.join(workdir, "franz_failover")
        r = subprocess.run(["go", "build", "-o", self.exe, "."], cwd=os.path.join(HERE, "franz"),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        if r.returncode != 0:
            raise Failed("go build of tests/cluster/clients/franz failed (its modules are "
                         "those of tests/compat/franz: run its prepare):\n"
                         + r.stdout.decode("utf-8", "replace")[-3000:])

    def cmd(self, mode, bootstrap, topic, arg):
        return [self.exe, mode, bootstrap, topic, arg]


class Kafkajs(Family):
    name = "kafkajs"

    def missing(self):
        if not shutil.which("node"):
            return "node is not installed", False
        if not os.path.exists(os.path.join(COMPAT, "kafkajs", "node_modules", "kafkajs")):
            return "tests/compat/kafkajs/node_modules missing: run its prepare", True
        return None, False

    def env(self):
        e = dict(os.environ)
        e["NODE_PATH"] = os.path.join(COMPAT, "kafkajs", "node_modules")
        return e

    def cmd(self, mode, bootstrap, topic, arg):
        return ["node", os.path.join(HERE, "kafkajs_failover.js"), mode, bootstrap, topic, arg]


FAMILIES = {f.name: f for f in [Kcat(), Python("confluent"), Java(), Franz(),
                                Python("kafkapython"), Kafkajs()]}


# ---------------------------------------------------------------------------------------------
# The cluster and the faults


class Sampler:
    """OffsetFetch of the group every 0.3 s (a consumer handle that never joins):
    [(t_start, t_end, {partition: offset})]."""

    def __init__(self, bootstrap, topic, group):
        self.c = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                           "enable.auto.commit": False, "log_level": 2})
        self.tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        self.samples = []
        self.errors = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def fetch(self):
        t0 = time.monotonic()
        got = self.c.committed(self.tps, timeout=3)
        offs = {tp.partition: tp.offset for tp in got if tp.error is None}
        return t0, time.monotonic(), offs

    def _run(self):
        while not self.stop.is_set():
            try:
                self.samples.append(self.fetch())
            except Exception:  # the coordinator moving: no sample this time
                self.errors += 1
            time.sleep(0.3)

    def close(self):
        self.stop.set()
        self.thread.join(10)
        self.c.close()


class Run:
    """One family's run against its own 3-node cluster."""

    def __init__(self, family, io, pause_s, keep, seed_loss=False):
        self.family = family
        self.seed_loss = seed_loss  # the checkers' self-test: hide one acknowledged record
        self.io = io
        self.pause_s = pause_s
        self.keep = keep
        self.events = Events()
        self.workdir = tempfile.mkdtemp(prefix="laminar-clients-%s-" % family.name)
        self.topic = "fo-" + family.name
        self.group = "fo-group-" + family.name
        self.faults = []  # (label, node id, t, outage to the first new ack, to its read)
        self.procs = []
        self.finished = []  # client processes asked to finish
        self.failures = []

    def log(self, msg):
        print("[%s %6.1fs] %s" % (self.family.name, time.monotonic() - self.t0, msg),
              flush=True)

    # -- cluster helpers ---------------------------------------------------------------------
    def node(self, node_id):
        return next(x for x in self.nodes if x.node_id == node_id)

    def live(self):
        return [x for x in self.nodes if x.alive()]

    def wait(self, what, pred, timeout):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            self.clients_running()
            try:
                last = pred()
                if last:
                    return last
            except Exception as e:  # a node not answering yet
                last = e
            time.sleep(0.2)
        raise Failed("%s (last: %r)" % (what, last))

    def leader_node(self, partition):
        """The node leading the topic's partition as some live node's Metadata shows it, or
        None while it has no leader."""
        for x in self.live():
            try:
                lead = leaders(x, self.topic).get(partition, -1)
            except Exception:  # this node not answering: ask another
                continue
            if lead != -1:
                return self.node(lead)
        return None

    def coordinator(self):
        md = admin(self.live()[0]).list_topics(topic="__consumer_offsets", timeout=10)
        parts = md.topics["__consumer_offsets"].partitions
        p = (java_hash(self.group) & 0x7FFFFFFF) % len(parts)
        return parts[p].leader, p, len(parts[p].replicas)

    def healthy(self):
        """Every node in the cluster and every partition of the topic and of the group's
        offsets partition led."""
        ids = {x.node_id for x in self.nodes}
        for x in self.nodes:
            if cluster_view(x)[0] != ids:
                return False
        if -1 in leaders(self.nodes[0], self.topic).values():
            return False
        try:
            return self.coordinator()[0] != -1
        except KeyError:  # __consumer_offsets not created yet
            return True

    def progress(self, label, instance, since, partition=None, timeout=45):
        """Waits for new acknowledgements and new reads (of partition if given) after a
        fault: a client that stays stuck is a failure."""
        need = 20
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.clients_running()
            a, r = self.events.counts(instance, partition)
            if a >= since[0] + need and r >= since[1] + need:
                return
            time.sleep(0.1)
        a, r = self.events.counts(instance, partition)
        raise Failed("after %s the clients are stuck: %d new acknowledgements, %d new reads "
                     "%sin %d s" % (label, a - since[0], r - since[1],
                                    "" if partition is None else "of partition %d " % partition,
                                    timeout))

    def clients_running(self):
        """Raises Failed if a client process exited before it was asked to finish."""
        for pr in self.procs:
            if pr not in self.finished and pr.exited() is not None:
                raise Failed("%s exited with status %s before it was asked to finish:\n%s"
                             % (pr.name, pr.exited(), pr.tail(5)))

    def committed_high(self):
        """The highest committed offset of each partition sampled so far."""
        high = {}
        for _, _, offs in list(self.sampler.samples):
            for p, off in offs.items():
                high[p] = max(high.get(p, -1), off)
        return high

    # -- the faults ------------------------------------------------------------------------
    def acked_end(self, partition):
        """The highest offset of partition acknowledged so far (-1: none)."""
        with self.events.lock:
            return max((a[1] for a in self.events.acks.values() if a[0] == partition),
                       default=-1)

    def first_read_beyond(self, partition, offset, since):
        """When the first consumer first read a record of partition beyond offset after since,
        or None."""
        with self.events.lock:
            got = [r[4] for r in self.events.reads if r[0] == self.consumer.name and
                   r[2] == partition and r[3] > offset and r[4] > since]
        return min(got) if got else None

    def fault(self, label, target, action, partition=None, read_within=None):
        """Applies action to target, waits for the cluster to be whole again and for the
        clients (on partition, if given) to progress; with no partition (the coordinator's
        loss) a commit beyond every offset committed before must be visible too.

        Once the action is over (the node stopped or paused at least a second, then back), the
        records of partition beyond the last one acknowledged then are the new leader's: with
        read_within, the consumer must read one (after the action) within that many seconds of
        the fault."""
        since = self.events.counts(self.consumer.name, partition)
        before = self.committed_high()
        t = time.monotonic()
        self.log("%s node %d" % (label, target.node_id))
        action(target)
        t_back = time.monotonic()
        old_end = None if partition is None else self.acked_end(partition)
        self.wait("the cluster healthy again after %s" % label, self.healthy, 60)
        if read_within is not None:
            self.wait("the consumer reading partition %d from its new leader within %d s of %s "
                      "(an offset beyond %d, the last acknowledged when the old leader had "
                      "stopped)" % (partition, read_within, label, old_end),
                      lambda: self.first_read_beyond(partition, old_end, t_back),
                      max(0.5, t + read_within - time.monotonic()))
        self.progress(label, self.consumer.name, since, partition)
        if partition is None:
            self.wait("a commit beyond %s after %s" % (before, label),
                      lambda: any(off > before.get(p, -1)
                                  for p, off in self.committed_high().items()), 45)
        with self.events.lock:
            after = sorted(a[2] for a in self.events.acks.values()
                           if a[2] > t and partition in (None, a[0]))
        gap = after[0] - t if after else float("nan")
        fresh = None if partition is None else self.first_read_beyond(partition, old_end, t_back)
        read_gap = fresh - t if fresh is not None else float("nan")
        self.faults.append((label, target.node_id, t - self.t0, gap, read_gap))
        self.log("%s: clients progressing again (first acknowledgement%s %.1f s after the "
                 "fault, first read of a record the new leader wrote %.1f s)"
                 % (label, "" if partition is None else " on partition %d" % partition, gap,
                    read_gap))

    def kill9(self, x):
        x.kill9()
        time.sleep(1)
        x.start()

    def pause(self, x):
        os.kill(x.pid, signal.SIGSTOP)
        time.sleep(self.pause_s)
        os.kill(x.pid, signal.SIGCONT)

    def sigterm(self, x):
        x.stop()
        time.sleep(1)
        x.start()

    # -- the run -----------------------------------------------------------------------------
    def start_cluster(self):
        port, cport = free_port(), free_port()
        voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
        self.nodes = [Node(i, voters, port, cport, self.io) for i in range(1, 4)]
        for x in self.nodes:
            x.start()
        ids = {x.node_id for x in self.nodes}
        self.wait("the cluster formed", lambda: cluster_view(self.nodes[0])[0] == ids, 30)
        a = admin(self.nodes[0])
        for _, f in a.create_topics([NewTopic(self.topic, PARTITIONS, 3)],
                                    request_timeout=30).items():
            f.result()
        self.wait("the topic's partitions led",
                  lambda: -1 not in leaders(self.nodes[0], self.topic).values(), 60)
        self.bootstrap = ",".join(x.bootstrap for x in self.nodes)

    def run(self):
        self.t0 = self.events.t0 = time.monotonic()
        self.family.prepare(self.workdir)
        self.start_cluster()
        self.log("cluster up; topic %s (%d partitions, replication factor 3)"
                 % (self.topic, PARTITIONS))
        ev = self.events
        self.producer = self.family.producer(self.bootstrap, self.topic, self.family.name, ev,
                                             self.workdir)
        self.procs.append(self.producer)
        self.consumer = self.family.consumer("%s-consumer1" % self.family.name, self.bootstrap,
                                             self.topic, self.group, ev, self.workdir)
        self.procs.append(self.consumer)
        self.progress("start", self.consumer.name, (0, 0), timeout=60)
        self.sampler = Sampler(self.bootstrap, self.topic, self.group)
        self.wait("a first committed offset",
                  lambda: any(s[2] and max(s[2].values()) >= 0 for s in self.sampler.samples),
                  30)
        for label, action in (("kill -9", self.kill9), ("SIGSTOP %.0f s" % self.pause_s,
                                                        self.pause),
                              ("SIGTERM", self.sigterm)):
            target = self.wait("partition 0 led", lambda: self.leader_node(0), 30)
            self.fault(label + " of partition 0's leader", target, action, partition=0,
                       read_within=HANDOVER_READ_S if action == self.sigterm else None)
        coord, cp, replicas = self.wait("the group's coordinator", lambda: (
            self.coordinator() if self.coordinator()[0] != -1 else None), 30)
        if replicas < 3:
            raise Failed("__consumer_offsets-%d has %d replicas, not 3" % (cp, replicas))
        self.fault("kill -9 of the group coordinator (__consumer_offsets-%d)" % cp,
                   self.node(coord), self.kill9)

        # The consumer leaves; a new one in the same group resumes from the committed offsets.
        self.finished.append(self.consumer)
        problem = self.consumer.finish(60)
        if problem:
            self.failures.append(problem)
        def fetch_all():
            offs = self.sampler.fetch()[2]
            return offs if len(offs) == PARTITIONS else None

        committed = self.wait("the committed offsets after the first consumer closed",
                              fetch_all, 30)
        self.committed_at_restart = committed
        self.log("first consumer closed; committed offsets %s" % dict(sorted(committed.items())))
        self.consumer2 = self.family.consumer("%s-consumer2" % self.family.name,
                                              self.bootstrap, self.topic, self.group, ev,
                                              self.workdir)
        self.procs.append(self.consumer2)
        time.sleep(2)
        self.finished.append(self.producer)
        problem = self.producer.finish(150)
        if problem:
            self.failures.append(problem)
        self.log("producer finished: %d acknowledged, %d not" % (len(ev.acks), len(ev.nacks)))
        self.log_ends = self.ends()
        self.wait("the second consumer reading to the end of every partition",
                  self.caught_up, 90)
        self.finished.append(self.consumer2)
        problem = self.consumer2.finish(60)
        if problem:
            self.failures.append(problem)
        self.sampler.close()
        self.check()

    def ends(self):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "ends"})
        try:
            return {p: c.get_watermark_offsets(TopicPartition(self.topic, p), timeout=10)[1]
                    for p in range(PARTITIONS)}
        finally:
            c.close()

    def caught_up(self):
        """The second consumer read every acknowledged record at or after the offsets
        committed when it started (offsets, not the log end: a log also has offsets no
        consumer sees, such as a control batch)."""
        with self.events.lock:
            read = {(p, off) for inst, _, p, off, _ in self.events.reads
                    if inst == self.consumer2.name}
            want = {(p, off) for p, off, _ in self.events.acks.values()
                    if off >= self.committed_at_restart.get(p, -1)}
        return want <= read

    def read_log(self):
        """The topic as it is: [(partition, offset, value)] per partition, from offset 0 to
        the high watermark, read by partition (no group)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "reference-reader",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        ends = self.ends()
        c.assign([TopicPartition(self.topic, p, 0) for p in range(PARTITIONS)])
        got = {p: [] for p in range(PARTITIONS)}
        deadline = time.monotonic() + 60

        def short():
            pos = c.position([TopicPartition(self.topic, p) for p in range(PARTITIONS)])
            return {tp.partition: (tp.offset, ends[tp.partition]) for tp in pos
                    if ends[tp.partition] > 0 and tp.offset < ends[tp.partition]}

        while short() and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is None or m.error():
                continue
            got[m.partition()].append((m.offset(), m.value().decode()))
        left = short()
        c.close()
        if left:
            raise Failed("the reference reader could not read to the end: %s "
                         "(partition: (position, end))" % left)
        return got

    # -- the checkers ------------------------------------------------------------------------
    def check(self):
        """Runs every checker; what fails goes to self.failures."""
        log, by_pos = self.check_log()
        reads, commits = self.check_reads(by_pos)
        self.check_commits(reads, commits, by_pos)
        self.check_nodes()
        ev = self.events
        for label, node_id, t, gap, read_gap in self.faults:
            self.log("fault at %.1fs: %s (node %d), first acknowledgement after %.1f s, "
                     "first read of a record the new leader wrote after %.1f s"
                     % (t, label, node_id, gap, read_gap))
        read_values = {r[1] for r in reads}
        self.log("%d acknowledged, %d in the log, %d read by the group (%d re-read), "
                 "%d commits acknowledged, %d commit failures, %d offset samples (%d failed)"
                 % (len(ev.acks), sum(len(x) for x in log.values()), len(read_values),
                    len(reads) - len(read_values), len(commits), len(ev.commit_fails),
                    len(self.sampler.samples), self.sampler.errors))

    def check_log(self):
        """The producer's acknowledgements against the log: nothing lost, moved, duplicated
        (idempotent producers) or out of send order. Returns the log and {(p, off): value}."""
        ev = self.events
        fails = self.failures
        if ev.nacks:
            fails.append("%d records not acknowledged, e.g. %s" % (len(ev.nacks), ev.nacks[:3]))
        if ev.ack_dups:
            fails.append("records acknowledged twice: %s" % ev.ack_dups[:5])
        if not ev.acks:
            fails.append("nothing was acknowledged")
        log = self.read_log()
        at = {}  # value -> [(partition, offset)]
        by_pos = {}
        for p, recs in log.items():
            prev = -1
            for off, v in recs:
                if off <= prev:
                    fails.append("the reference reader went back in partition %d: %d after %d"
                                 % (p, off, prev))
                prev = off
                at.setdefault(v, []).append((p, off))
                by_pos[(p, off)] = v
        if self.seed_loss and ev.acks:  # as if the log had lost one acknowledged record
            v = sorted(ev.acks)[len(ev.acks) // 2]
            for pos in at.pop(v, []):
                del by_pos[pos]
        lost = [v for v in ev.acks if v not in at]
        moved = [(v, ev.acks[v][:2], at[v]) for v in ev.acks
                 if v in at and ev.acks[v][:2] not in at[v]]
        twice = [(v, at[v]) for v in at if len(at[v]) > 1]
        unknown = [v for v in at if not v.startswith(self.family.name + "-")]
        if lost:
            fails.append("%d acknowledged records not in the log, e.g. %s"
                         % (len(lost), [(v, ev.acks[v][:2]) for v in lost[:5]]))
        if moved:
            fails.append("%d acknowledged records not at their acknowledged offset, e.g. %s"
                         % (len(moved), moved[:5]))
        if twice and self.family.idempotent:
            fails.append("the idempotent producer's records are in the log more than once: "
                         "%d, e.g. %s" % (len(twice), twice[:5]))
        if unknown:
            fails.append("records nobody sent in the log: %s" % unknown[:5])
        # send order per partition: acknowledged offsets increase with the sequence number
        for p in range(PARTITIONS):
            mine = sorted((int(v.rsplit("-", 1)[1]), off) for v, (pp, off, _) in ev.acks.items()
                          if pp == p)
            bad = [(a, b) for a, b in zip(mine, mine[1:]) if b[1] <= a[1]]
            if bad:
                fails.append("partition %d not in send order: (seq, offset) %s"
                             % (p, bad[:3]))
        return log, by_pos

    def check_reads(self, by_pos):
        """The group's reads against the log: each is the record at its offset, and together
        they cover every acknowledged record. Returns (reads, commits) as reported."""
        ev = self.events
        fails = self.failures
        with ev.lock:
            reads = list(ev.reads)
            commits = list(ev.commits)
        wrong = [(v, p, off, by_pos.get((p, off))) for _, v, p, off, _ in reads
                 if by_pos.get((p, off)) != v]
        if wrong:
            fails.append("%d group reads are not the record the log holds at their offset "
                         "(None: no record there, e.g. a control batch), e.g. %s "
                         "(value, partition, offset, log's value)" % (len(wrong), wrong[:5]))
        read_values = {r[1] for r in reads}
        unread = [v for v in ev.acks if v not in read_values]
        dropped = self.close_drop(unread, reads, by_pos)
        if dropped:
            unread.remove(dropped)
            p, off = ev.acks[dropped][:2]
            self.log("%s lost %s (partition %d offset %d) on its SIGTERM: handed to it "
                     "(librdkafka stored offset %d) but not printed, and its close committed "
                     "%d; kcat's behaviour, not the broker's (see Kcat)"
                     % (self.consumer.name, dropped, p, off, off + 1, off + 1))
        if unread:
            fails.append("%d acknowledged records never read by the group, e.g. %s"
                         % (len(unread), [(v, ev.acks[v][:2]) for v in sorted(unread)[:5]]))
            for v in sorted(unread)[:3]:
                fails.append(self.unread_evidence(v, reads))
        return reads, commits

    def close_stored(self):
        """{partition: offset} librdkafka stored for the first consumer's partitions when its
        close revoked them, the offsets the close commits, from its cgrp debug log (the last
        "Removing <topic> [p] from assignment (..., stored offset=N)" line per partition;
        INVALID when nothing was stored). Empty for a family without that log."""
        pat = re.compile(r"Removing %s \[(\d+)\] from assignment \(.*stored offset=(-?\w+)\)"
                         % re.escape(self.topic))
        stored = {}
        try:
            with open(self.consumer.err_path, "rb") as f:
                for line in f.read().decode("utf-8", "replace").splitlines():
                    m = pat.search(line)
                    if m:
                        stored[int(m.group(1))] = m.group(2)
        except OSError:
            pass
        return stored

    def close_drop(self, unread, reads, by_pos):
        """The one unread record a family with close_drops_one may lose when the first
        consumer is stopped, or None. Excused only if all of these hold, which is what that
        loss looks like and what a broker losing the record (a fetch answer that skipped it,
        a commit nobody made, a position moved past it) does not produce: it is the only
        one; it is the record after the last one the first consumer read in its partition
        (nothing of that partition read at or after it); librdkafka in that consumer stored
        its offset + 1 when the close revoked the partition (stored only when a record is
        handed to the application, enable.auto.offset.store); and the group's committed
        offset after the close is exactly that offset + 1."""
        if not self.family.close_drops_one or len(unread) != 1:
            return None
        v = unread[0]
        p, off = self.events.acks[v][:2]
        mine = [o for inst, _, pp, o, _ in reads if inst == self.consumer.name and pp == p]
        before = [o for (pp, o) in by_pos if pp == p and o < off]
        if (max(mine) if mine else None) != (max(before) if before else None):
            return None
        if self.close_stored().get(p) != str(off + 1):
            return None
        if self.committed_at_restart.get(p) != off + 1:
            return None
        return v

    def unread_evidence(self, v, reads):
        """What settles whose fault an unread record is: each consumer's reads around it in
        its partition, the committed offset after the first consumer's close and what that
        consumer's librdkafka had stored then (kcat)."""
        p, off = self.events.acks[v][:2]
        near = {}
        for inst, _, pp, o, t in reads:
            if pp == p and off - 3 <= o <= off + 3:
                near.setdefault(inst, []).append("%d@%.1fs" % (o, t - self.t0))
        with self.events.lock:
            seen = [(i, o, "%.1fs" % (t - self.t0)) for i, pp, o, t in self.events.commits
                    if pp == p and off - 3 <= o <= off + 4]
        passed = next(("%d at %.1fs" % (s[2][p], s[0] - self.t0) for s in self.sampler.samples
                       if s[2].get(p, -1) > off), "never")
        return ("unread %s (partition %d offset %d): reads of offsets %d..%d by consumer "
                "(offset@time) %s; commits the clients saw acknowledged near it %s; the "
                "sampled committed offset first passed it: %s; committed after the first "
                "consumer's close %s, which its librdkafka had stored %s"
                % (v, p, off, off - 3, off + 3, near or "none", seen or "none", passed,
                   getattr(self, "committed_at_restart", {}).get(p),
                   self.close_stored().get(p, "(no cgrp debug log)")))

    def check_commits(self, reads, commits, by_pos):
        """Committed offsets never go back: not in the samples, not below a commit a client
        saw acknowledged (in the samples or in where a consumer re-reads from), and the
        consumer started after the fail-overs resumes exactly where the group committed."""
        fails = self.failures
        # a consumer never goes back below a commit it saw acknowledged
        acked_commit = {}
        last_read = {}
        events = sorted([(t, "c", inst, p, off) for inst, p, off, t in commits] +
                        [(t, "r", inst, p, off) for inst, _, p, off, t in reads])
        below = []
        for t, kind, inst, p, off in events:
            if kind == "c":
                acked_commit[p] = max(acked_commit.get(p, -1), off)
                continue
            if off <= last_read.get((inst, p), -1) and off < acked_commit.get(p, -1):
                below.append((inst, p, off, acked_commit[p]))
            last_read[(inst, p)] = off
        if below:
            fails.append("a consumer re-read below an acknowledged commit: %s "
                         "(instance, partition, offset, commit)" % below[:5])
        # the sampled committed offsets never go back, nor below an acknowledged commit
        samples = self.sampler.samples
        high = {}
        back = []
        for t0, t1, offs in samples:
            for p, off in offs.items():
                if off < high.get(p, (-1001, 0))[0]:
                    back.append((p, high[p][0], off, "%.1fs" % (t0 - self.t0)))
                high[p] = max(high.get(p, (-1001, 0)), (off, t0))
        if back:
            fails.append("committed offsets went back: %s (partition, before, after, at)"
                         % back[:5])
        under = []
        for inst, p, off, tc in commits:
            later = [s for s in samples if s[0] > tc and p in s[2] and s[2][p] < off]
            if later:
                under.append((inst, p, off, later[0][2][p], "%.1fs" % (later[0][0] - self.t0)))
        if under:
            fails.append("OffsetFetch answered less than an acknowledged commit: %s "
                         "(instance, partition, committed, fetched, at)" % under[:5])
        # the second consumer starts at the committed offsets: not before (committed
        # offsets went back), and skipping no record (offsets without a record, such as a new
        # Raft leader's batch, are not seen by consumers)
        first = {}
        for inst, _, p, off, _ in reads:
            if inst == self.consumer2.name and p not in first:
                first[p] = off
        resumed = []
        for p, off in first.items():
            c = max(self.committed_at_restart.get(p, -1), 0)
            skipped = [o for (pp, o) in by_pos if pp == p and c <= o < off]
            if off < c or skipped:
                resumed.append((p, c, off, skipped[:3]))
        if resumed:
            fails.append("the consumer started after the fail-overs did not resume at the "
                         "committed offsets: %s (partition, committed, first read, records "
                         "skipped)" % resumed)

    def check_nodes(self):
        """No node logged an ERROR or a sanitizer report."""
        for x in self.nodes:
            bad = [line for line in x.log_text().splitlines()
                   if " ERROR " in line or "Sanitizer" in line or "runtime error" in line]
            if bad:
                self.failures.append("node %d logged: %s" % (x.node_id, bad[:5]))

    def cleanup(self):
        for pr in self.procs:
            pr.kill()
        for x in getattr(self, "nodes", []):  # all at once: each waits for its peers' leave
            if x.alive():
                try:
                    os.kill(x.pid, signal.SIGCONT)
                    os.kill(x.pid, signal.SIGTERM)
                except OSError:
                    pass
        for x in getattr(self, "nodes", []):
            if self.keep and os.path.exists(x.log_path):  # the evidence outlives the cluster
                shutil.copy(x.log_path, os.path.join(self.workdir, "node-%d.log" % x.node_id))
            x.cleanup()
        if not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def evidence(self):
        for pr in self.procs:
            print("---- %s ----\n%s" % (pr.name, pr.tail()))
        for x in getattr(self, "nodes", []):
            print("---- node %d log (tail) ----" % x.node_id)
            print("\n".join(x.log_text().splitlines()[-30:]))
        print("client output kept in %s" % self.workdir)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--io", default="uring")
    ap.add_argument("--family", default=",".join(FAMILIES),
                    help="comma-separated: " + ", ".join(FAMILIES))
    ap.add_argument("--pause-s", type=float, default=6.0,
                    help="SIGSTOP length (longer than the 2-4 s partition election timeout)")
    ap.add_argument("--keep", action="store_true", help="keep the clients' output files")
    ap.add_argument("--self-test", action="store_true",
                    help="hide one acknowledged record from the checkers: passes only if they "
                         "report it lost")
    args = ap.parse_args()
    status = 0
    for name in args.family.split(","):
        fam = FAMILIES[name]
        why, fatal = fam.missing()
        if why:
            print("%s %s: %s" % ("FAIL" if fatal else "SKIP", name, why), flush=True)
            status |= 1 if fatal else 0
            continue
        run = Run(fam, args.io, args.pause_s, args.keep, seed_loss=args.self_test)
        t0 = time.monotonic()
        try:
            run.run()
        except Failed as e:
            run.failures.append(str(e))
        except Exception as e:  # noqa: BLE001 (a broken run is a failure with its evidence)
            run.failures.append("%s: %s" % (type(e).__name__, e))
        if args.self_test:
            caught = any("acknowledged records not in the log" in f for f in run.failures)
            print("%s %s self-test: the checkers %s the hidden record (%s)"
                  % ("PASS" if caught else "FAIL", name, "caught" if caught else "missed",
                     "; ".join(run.failures)[:600]), flush=True)
            status |= 0 if caught else 1
        elif run.failures:
            run.keep = True
            for f in run.failures:
                print("FAIL %s: %s" % (name, f))
            run.evidence()
            status = 1
        else:
            print("PASS %s (%s): 4 fail-overs, %d acknowledged records all in the log once "
                  "and read by the group, committed offsets never went back; %.1f s"
                  % (name, args.io, len(run.events.acks), time.monotonic() - t0), flush=True)
        run.cleanup()
    return status


if __name__ == "__main__":
    sys.exit(main())
