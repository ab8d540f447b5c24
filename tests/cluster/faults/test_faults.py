"""A fault campaign against a real laminar cluster: N nodes on 127.0.0.x, or (--net) each in a
network namespace of its own; idempotent acks=all producers and topic creations run while a
seeded schedule kills (kill -9) and restarts nodes, pauses them (SIGSTOP/SIGCONT) and stops them
gracefully, the controller leader included. With --net the schedule also breaks the network
between the nodes (netlab.py builds it; every fault is healed after a seeded duration):

- isolate: one node cut from every peer (sometimes from the clients too);
- isolate-controller: the controller leader cut from every peer, clients still reach it;
- split: the cluster split in two, the smaller side a minority (1/2 of 3, 2/3 of 5);
- one-way-out / one-way-in: what one node sends to its peers, or receives from them, dropped;
- bridge: two halves that cannot see each other and one node that sees both;
- leader-cut: a replicated partition's leader cut from its followers, not from clients;
- link: delay, jitter, loss, duplication and reordering on one node's link or on every link.

Two disk faults join only when --kinds names them (they change how the nodes run):

- slow-disk: every fsync of one node waits 25-400 ms first (the broker's fault-injection point
  laminar.fault.disk.control, which also routes its fsyncs through the sync thread);
- full-disk: one node's data directory (a tmpfs of its own, 1 GiB) filled to the last byte.

--kinds limits the schedule to the kinds named (comma-separated) and --cycles stops it after that
many faults instead of --seconds; campaign.py runs each kind for N cycles on 3 and 5 nodes and
prints the table. The last line of a run that got to its checkers is "summary: {json}".

Afterwards the checkers:

- every record acknowledged is read back at its acknowledged partition and offset, with its
  value (nothing acknowledged lost, no offset holding another record);
- no value is read twice (the idempotent producer's retries did not duplicate), and no
  idempotent producer stopped on a fatal error (librdkafka gives up on a sequence the broker
  refused as out of order);
- every topic whose creation was acknowledged exists, on every node, with the same leaders;
- no node logged an ERROR or a sanitizer report;
- with --net also: after the last heal every node is back, sees every node, and all nodes name
  the same leader for every partition of every topic checked; the high watermark a client reads
  per partition (ListOffsets, sampled all along the run) never goes back (--watermarks checks
  that without --net too).

    test_faults.py [--nodes 3] [--seconds 40] [--seed S] [--io uring] [--rf 1] [--net]
                   [--watermarks] [--keep-logs DIR] [--kinds K,K] [--cycles N]

The seed is printed; the same seed replays the same schedule (timings of the processes
themselves are not deterministic). With --net, a machine where network namespaces or iptables
cannot be used (not root, tools missing) prints "SKIPPED: <why>" and exits 0.
"""

import argparse
import json
import logging
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402
from kafka_wire import Conn, arr, s8, s32, s64, sstr  # noqa: E402
from test_cluster import Node, admin, cluster_view, fail, leaders, wait_for  # noqa: E402
import netlab  # noqa: E402

from confluent_kafka import (Consumer, KafkaError, KafkaException, Producer,  # noqa: E402
                             TopicPartition)
from confluent_kafka.admin import NewTopic  # noqa: E402


class Load:
    """Producers and topic creations running in threads until stopped."""

    def __init__(self, nodes, topics):
        self.nodes = nodes
        self.topics = topics
        self.acked = {}  # value -> (topic, partition, offset)
        self.created = []  # topics whose CreateTopics was acknowledged
        self.failed_creates = 0
        self.delivery_errors = 0  # not acknowledged: may or may not be in the log
        self.fatal = []  # a producer's fatal error (librdkafka's idempotence gave up): why
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.threads = []

    @staticmethod
    def producer_log(idx):
        return os.path.join(tempfile.gettempdir(), "producer-%d.log" % idx)

    def producer_evidence(self, idx, limit=60):
        """The lines of producer idx's librdkafka log that say why its epoch moved."""
        keys = ("ERRSEQ", "UNKPID", "BUMP", "DRAIN", "FATAL", "NEWPID", "timed out", "fatal",
                "encountered error")
        try:
            with open(self.producer_log(idx), errors="replace") as f:
                lines = [ln.rstrip() for ln in f if any(k in ln for k in keys)
                         and "wait for outstanding requests" not in ln]
        except OSError:
            return []
        return lines[-limit:]

    def producer(self, idx, bootstrap):
        bs = ",".join(x.bootstrap for x in bootstrap)

        def on_error(err):
            if err.fatal() or err.code() == KafkaError._FATAL:
                with self.lock:
                    self.fatal.append("producer %d: %s" % (idx, err.str()))

        # librdkafka's idempotence log (PID acquisitions, epoch bumps and the broker answers
        # that caused them) goes to a file of its own: the evidence when a check fails
        log = logging.getLogger("producer-%d" % idx)
        log.propagate = False
        log.setLevel(logging.DEBUG)
        fh = logging.FileHandler(self.producer_log(idx))
        fh.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(fh)
        p = Producer({"bootstrap.servers": bs, "acks": "all", "enable.idempotence": True,
                      "linger.ms": 2, "message.timeout.ms": 20000,
                      "topic.metadata.refresh.interval.ms": 1000, "error_cb": on_error,
                      "debug": "eos,msg"}, logger=log)

        def cb(err, msg):
            with self.lock:
                if err is None:
                    self.acked[msg.value().decode()] = (msg.topic(), msg.partition(),
                                                        msg.offset())
                else:
                    self.delivery_errors += 1

        i = 0
        while not self.stop.is_set():
            topic = self.topics[i % len(self.topics)]
            try:
                p.produce(topic, value="p%d-%07d" % (idx, i), on_delivery=cb)
                i += 1
            except BufferError:
                p.poll(0.05)
            except KafkaException as e:  # fatal: this producer cannot go on
                try:
                    p.poll(0.5)  # serves error_cb, which has librdkafka's reason
                except KafkaException as why:  # or raises it
                    e = why
                with self.lock:
                    if not any(f.startswith("producer %d:" % idx) for f in self.fatal):
                        self.fatal.append("producer %d: %s" % (idx, e))
                break
            p.poll(0)
            if i % 50 == 0:
                time.sleep(0.01)  # a few thousand records per second: faults, not load
        try:
            p.flush(30)
        except KafkaException:
            pass  # a fatal producer: its reason is recorded above

    def creator(self):
        n = 0
        while not self.stop.is_set():
            node = random.choice(self.nodes)
            name = "created-%03d" % n
            n += 1
            try:
                a = admin(node)
                for _, f in a.create_topics([NewTopic(name, 3, 1)], request_timeout=10).items():
                    f.result(timeout=15)
                with self.lock:
                    self.created.append(name)
            except Exception:
                self.failed_creates += 1  # not acknowledged: it may or may not exist
            time.sleep(0.3)

    def start(self, producers, lone=None):
        """producers bootstrapped from every node; with lone, one more that knows only that
        node (in a partition it may be the minority's only door)."""
        for i in range(producers):
            self.threads.append(threading.Thread(target=self.producer, args=(i, self.nodes),
                                                 daemon=True))
        if lone is not None:
            self.threads.append(threading.Thread(target=self.producer,
                                                 args=(producers, [lone]), daemon=True))
        self.threads.append(threading.Thread(target=self.creator, daemon=True))
        for t in self.threads:
            t.start()

    def finish(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def campaign(nodes, rng, seconds, log):
    """Runs faults until `seconds` have passed; leaves every node running."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(1.0, 3.0))
        live = [x for x in nodes if x.alive()]
        try:
            _, ctl = cluster_view(live[0], timeout=3)
        except Exception:
            ctl = -1
        kind = rng.choice(["kill", "kill-controller", "pause", "stop"])
        target = next((x for x in live if x.node_id == ctl), None) \
            if kind == "kill-controller" else rng.choice(live)
        if target is None:
            target = rng.choice(live)
        t = "%.1f" % (seconds - (end - time.monotonic()))
        if kind in ("kill", "kill-controller"):
            log.append("%ss kill -9 node %d%s" % (t, target.node_id,
                                                 " (controller)" if target.node_id == ctl else ""))
            target.kill9()
            time.sleep(rng.uniform(0.5, 3.0))
            target.start()
        elif kind == "pause":
            d = rng.uniform(0.5, 4.0)
            log.append("%ss SIGSTOP node %d for %.1f s" % (t, target.node_id, d))
            os.kill(target.pid, signal.SIGSTOP)
            time.sleep(d)
            os.kill(target.pid, signal.SIGCONT)
        else:
            log.append("%ss SIGTERM node %d, then start" % (t, target.node_id))
            target.stop()
            time.sleep(rng.uniform(0.2, 2.0))
            target.start()


NET_PORT, NET_CPORT = 9092, 9093  # each node has a namespace, so fixed ports do not collide


class NetNode(Node):
    """A node listening and advertising on its namespace's address, started inside it."""

    def __init__(self, node_id, voters, io, lab):
        super().__init__(node_id, voters, NET_PORT, NET_CPORT, io)
        self.lab = lab
        self.host = lab.addr(node_id)  # Node.args() builds listeners from self.host

    def args(self):
        return self.lab.popen_argv(self.node_id, super().args())


class Watermarks:
    """Samples every partition's high watermark as a client reads it (ListOffsets latest,
    through librdkafka's query_watermark_offsets) until stopped; records every sample lower than
    one read before for the same partition."""

    def __init__(self, nodes, topics, partitions, t0):
        self.nodes = nodes
        self.tps = [(t, p) for t in topics for p in range(partitions)]
        self.t0 = t0
        self.high = {}  # (topic, partition) -> highest watermark read so far
        self.back = []  # (seconds into the run, topic, partition, read, highest before, views)
        self.samples = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        c = Consumer({"bootstrap.servers": ",".join(x.bootstrap for x in self.nodes),
                      "group.id": "hw-sampler", "enable.auto.commit": False,
                      "topic.metadata.refresh.interval.ms": 1000})
        while not self.stop.is_set():
            for t, p in self.tps:
                try:
                    _, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=2,
                                                    cached=False)
                except Exception:  # no leader reachable now: nothing observed
                    continue
                if hi is None or hi < 0:
                    continue
                self.samples += 1
                before = self.high.get((t, p), -1)
                if hi < before:
                    when = time.monotonic() - self.t0
                    views = self.leader_views(t, p) if len(self.back) < 5 else None
                    self.back.append((when, t, p, hi, before, views))
                    print("  watermark of %s-%d went back: %d after %d (%.1f s; leaders seen by "
                          "each node: %s)" % (t, p, hi, before, when, views), flush=True)
                else:
                    self.high[(t, p)] = hi
            self.stop.wait(0.2)
        c.close()

    def leader_views(self, topic, p):
        """{node: (the leader it names, its own ListOffsets answer)}: the evidence of a
        regression."""
        views = {}
        for x in self.nodes:
            try:
                md = admin(x).list_topics(topic=topic, timeout=2)
                lead = md.topics[topic].partitions[p].leader
            except Exception:
                lead = "?"
            views[x.node_id] = (lead, list_offsets_latest(x, topic, p))
        return views


def list_offsets_latest(node, topic, p):
    """One node's own answer to ListOffsets v4 (latest, read_uncommitted) for topic-p, as
    "error E offset O epoch L" or why there is none."""
    try:
        c = Conn(node.host, node.port, "hw-evidence", timeout=2)
    except OSError as e:
        return "unreachable (%s)" % e.__class__.__name__
    try:
        body = s32(-1) + s8(0) + arr([sstr(topic) + arr([s32(p) + s32(-1) + s64(-1)])])
        r = c.call(2, 4, body)
        r.i32()  # throttle
        for _ in range(r.i32()):
            r.str()
            for _ in range(r.i32()):
                r.i32()
                err, _, off, epoch = r.i16(), r.i64(), r.i64(), r.i32()
                return "error %d offset %d epoch %d" % (err, off, epoch)
        return "no partition in the answer"
    except Exception as e:
        return "no answer (%s)" % e.__class__.__name__
    finally:
        c.close()


def batch_at(node, topic, p, offset):
    """The header of the record batch holding topic-p's offset in node's log (Fetch v4, read as
    a replica would not: a consumer's fetch, so up to the high watermark): base offset, last
    offset, partition leader epoch (the Raft term that wrote it), producer id, epoch and first
    sequence. The evidence of a duplicate or of an acknowledgement without an offset."""
    try:
        c = Conn(node.host, node.port, "batch-evidence", timeout=5)
    except OSError as e:
        return "unreachable (%s)" % e.__class__.__name__
    try:
        body = (s32(-1) + s32(0) + s32(1) + s32(1 << 20) + s8(0)
                + arr([sstr(topic) + arr([s32(p) + s64(offset) + s32(1 << 20)])]))
        r = c.call(1, 4, body)
        r.i32()  # throttle
        for _ in range(r.i32()):
            r.str()
            for _ in range(r.i32()):
                r.i32()
                err = r.i16()
                r.i64(), r.i64()  # high watermark, last stable offset
                n = r.i32()
                for _ in range(max(n, 0)):
                    r.i64(), r.i64()
                records = r.bytes() or b""
                if err != 0:
                    return "error %d" % err
                pos = 0
                while pos + 61 <= len(records):
                    base, length, epoch = struct.unpack_from(">qii", records, pos)
                    last_delta = struct.unpack_from(">i", records, pos + 23)[0]
                    pid, pepoch, seq = struct.unpack_from(">qhi", records, pos + 43)
                    if base <= offset <= base + last_delta:
                        return ("offsets %d..%d epoch %d producer %d/%d sequence %d"
                                % (base, base + last_delta, epoch, pid, pepoch, seq))
                    pos += 12 + length
                return "not in the answer"
        return "no partition in the answer"
    except Exception as e:
        return "no answer (%s)" % e.__class__.__name__
    finally:
        c.close()


BATCH_RE = re.compile(r"offsets (\d+)\.\.(\d+) epoch (-?\d+) producer (-?\d+)/(-?\d+) "
                      r"sequence (-?\d+)")
MSGSET_ERR_RE = re.compile(r"(\S+) \[(\d+)\]: MessageSet with \d+ message\(s\) "
                           r"\(MsgId \d+, BaseSeq (-?\d+)\) encountered error: (.*) "
                           r"\(actions ([^)]*)\)")


NOT_LEADER_ERR = "Broker: Not leader for partition"
# librdkafka's message.timeout.ms expiring while the batch waited in the client's queue: that
# attempt was never sent, so it says nothing of what the broker wrote (RD_KAFKA_RESP_ERR__TIMED_OUT_QUEUE)
QUEUE_TIMEOUT_ERR = "Local: Timed out in queue"


def explained_by_epoch_bump(first, second, failures):
    """Whether a record whose first copy is in batch `first` and second in batch `second` (each
    (producer id, producer epoch, base sequence)) is explained by librdkafka's epoch bump, given
    the failures the producer's log reports for the first batch as (error, actions).
    Explained: the same producer id, a later epoch, at least one failure classed
    MsgPossiblyPersisted, and every failure classed MsgNotPersisted a Not-leader refusal or a
    timeout in the client's queue (an attempt never sent). The
    broker checks leadership before it appends, and answers a batch it appended but could not
    commit with NOT_ENOUGH_REPLICAS_AFTER_APPEND (possibly persisted), so a refusal wrote
    nothing and the first copy came from an attempt the client was told may have been
    persisted. Any other not-persisted answer (the broker saying a write did not happen) keeps
    the duplicate a broker fault."""
    (pid1, ep1, _), (pid2, ep2, _) = first, second
    if pid1 != pid2 or ep2 <= ep1:
        return False
    if not any("MsgPossiblyPersisted" in a for _, a in failures):
        return False
    return all(e.startswith(NOT_LEADER_ERR) or e.startswith(QUEUE_TIMEOUT_ERR)
               for e, a in failures if "MsgNotPersisted" in a)


# the most copies of one record the epoch-bump rule is applied to (each bump after a
# possibly-persisted failure adds one: three copies after two bumps were seen, 5-node split)
COPIES_EXPLAINED_MAX = 5


def explained_copies(batches, failures):
    """Whether the copies of one record, in batches (producer id, epoch, base sequence) in log
    order, are all explained by librdkafka's epoch bumps: each copy but the last failed
    possibly-persisted (failures[k], the producer's log for copy k's batch) and the next came
    under a later epoch of the same producer id (explained_by_epoch_bump pair by pair)."""
    return len(batches) >= 2 and all(
        explained_by_epoch_bump(batches[k], batches[k + 1], failures[k])
        for k in range(len(batches) - 1))


def client_epoch_bump_dups(load, nodes, dups, seen):
    """Splits duplicates into those the client explains and the others. librdkafka's idempotent
    producer bumps its epoch when messages time out, and then sends again, under the new epoch
    and new sequence numbers, the records of a batch whose request failed with an error it
    classes as possibly persisted (a broken connection, a timeout): if that first write did
    land, the record is in the log twice, with any broker (confluentinc/librdkafka#4953). Such a
    duplicate is explained when its first copy's batch (producer epoch, base sequence) is one
    the producer's own log reports failed as MsgPossiblyPersisted, and the second copy is under
    a later epoch of the same producer id (explained_by_epoch_bump). Returns (explained,
    unexplained, evidence)."""
    failed = {}  # producer idx -> {(topic, partition, base seq): [(error, actions)...]}
    cache = {}
    explained, other, evidence = [], [], []
    for v in dups:
        idx = int(v[1:].split("-")[0])
        if idx not in failed:
            failed[idx] = {}
            try:
                with open(load.producer_log(idx), errors="replace") as f:
                    for ln in f:
                        m = MSGSET_ERR_RE.search(ln)
                        if m:
                            key = (m.group(1), int(m.group(2)), int(m.group(3)))
                            failed[idx].setdefault(key, []).append((m.group(4), m.group(5)))
            except OSError:
                pass
        copies = sorted(seen[v], key=lambda at: at[2])
        batches = []
        for at in copies[:COPIES_EXPLAINED_MAX]:
            # the leader may be busy or moving (a loaded machine): an answer that is not a
            # batch is asked again before the duplicate counts as unexplained
            for attempt in range(5):
                if at not in cache or BATCH_RE.search(cache[at]) is None:
                    if attempt:
                        time.sleep(2)
                    cache[at] = batch_from_leader(nodes, *at)
            m = BATCH_RE.search(cache[at])
            batches.append(None if m is None else
                           (int(m.group(4)), int(m.group(5)), int(m.group(6))))
        ok = False
        if 2 <= len(copies) <= COPIES_EXPLAINED_MAX and None not in batches:
            # each copy but the last: its batch failed possibly-persisted, and the next copy
            # came under a later epoch (a bump after each such failure, as many as happened)
            fails = [failed[idx].get((copies[k][0], copies[k][1], batches[k][2]), [])
                     for k in range(len(copies))]
            ok = explained_copies(batches, fails)
            if len(evidence) < 3:
                evidence.append("%s: %s (client: %s) then %s%s"
                                % (v, cache[copies[0]],
                                   [a for _, a in fails[0]] or "no failure logged",
                                   cache[copies[1]],
                                   " and %d more copies" % (len(copies) - 2)
                                   if len(copies) > 2 else ""))
        (explained if ok else other).append(v)
    return explained, other, evidence


def batch_from_leader(nodes, topic, p, offset):
    """batch_at() from the first node that answers without an error (the leader)."""
    answers = []
    for x in nodes:
        a = batch_at(x, topic, p, offset)
        if a.startswith("offsets"):
            return "node %d: %s" % (x.node_id, a)
        answers.append("node %d: %s" % (x.node_id, a))
    return "; ".join(answers)


NET_FAULTS = ["kill", "kill-controller", "pause", "stop", "isolate", "isolate-controller",
              "split", "one-way-out", "one-way-in", "bridge", "leader-cut", "link"]
DISK_FAULTS = ["slow-disk", "full-disk"]
FULL_DISK_BYTES = 1 << 30


class Disks:
    """The disk faults of a run: each node's fsync delay file (slow-disk) and its data
    directory on a tmpfs of its own (full-disk), filled by a ballast file while the fault is
    on. heal() lifts every disk fault; release() unmounts."""

    def __init__(self, nodes, kinds):
        self.slow = "slow-disk" in kinds
        self.full = "full-disk" in kinds
        self.mounted = []
        self.nodes = nodes
        for x in nodes:
            if self.slow:
                x.config["laminar.fault.disk.control"] = self.control(x)
            if self.full:
                subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%d" % FULL_DISK_BYTES,
                                "lmfdisk", x.data_dir], check=True)
                self.mounted.append(x.data_dir)

    @staticmethod
    def control(x):
        return os.path.join(x.tmp, "fault-disk-delay")

    @staticmethod
    def ballast(x):
        return os.path.join(x.data_dir, ".fault-ballast")

    def delay(self, x, ms):
        with open(self.control(x) + ".new", "w") as f:
            f.write("%d\n" % ms)
        os.replace(self.control(x) + ".new", self.control(x))

    def fill(self, x):
        """Fills x's data filesystem to the last byte; returns the bytes the ballast took."""
        chunk = b"\0" * (1 << 20)
        n = 0
        with open(self.ballast(x), "wb", buffering=0) as f:
            while True:
                try:
                    w = f.write(chunk)
                except OSError:  # ENOSPC: a smaller write may still fit
                    if len(chunk) <= 4096:
                        break
                    chunk = chunk[:len(chunk) // 16]
                    continue
                n += w
        return n

    def heal(self):
        for x in self.nodes:
            if self.slow:
                self.delay(x, 0)
            if self.full and os.path.exists(self.ballast(x)):
                os.unlink(self.ballast(x))

    def release(self):
        for d in self.mounted:
            subprocess.run(["umount", "-l", d], check=False)
        self.mounted = []


def controller_of(live):
    """The controller leader's id as the first answering node names it, else -1."""
    for x in live:
        try:
            _, ctl = cluster_view(x, timeout=2)
            if ctl is not None and ctl >= 0:
                return ctl
        except Exception:
            continue
    return -1


def net_campaign(nodes, lab, rng, seconds, topics, log, kinds=NET_FAULTS, cycles=None,
                 disks=None):
    """Process, network and disk faults of kinds, one at a time, until `seconds` have passed
    (or `cycles` faults ran). Every step draws the same random numbers whatever the cluster's
    state, so a seed replays its schedule; each network or disk fault is healed after its drawn
    duration. Leaves every node running, no fault on."""
    t_end = time.monotonic() + seconds if cycles is None else float("inf")
    done = 0
    t0 = time.monotonic()
    ids = [x.node_id for x in nodes]
    by_id = {x.node_id: x for x in nodes}
    n = len(nodes)

    def note(text):
        line = "%5.1fs %s" % (time.monotonic() - t0, text)
        log.append(line)
        print("  fault:", line, flush=True)

    while time.monotonic() < t_end and (cycles is None or done < cycles):
        done += 1
        gap = rng.uniform(1.0, 3.0)
        kind = rng.choice(kinds)
        pick = rng.random()  # which node, for a fault that needs one
        dur = rng.uniform(1.0, 8.0)  # until it is healed (restart and pause: shorter)
        flag = rng.random()  # isolate: the clients too; link: every node's link
        order = ids[:]
        rng.shuffle(order)  # the sides of a split or a bridge
        delay = rng.randint(5, 80)
        jitter = int(rng.random() * delay)
        loss, dup, reorder = rng.choice([0, 0.5, 2, 5]), rng.choice([0, 1, 5]), \
            rng.choice([0, 10, 25])
        where = (rng.choice(topics), rng.randrange(6))  # leader-cut: which partition's leader
        time.sleep(gap)
        live = [x for x in nodes if x.alive()]
        target = live[int(pick * len(live))]
        ctl = controller_of(live) if kind in ("kill-controller", "isolate-controller") else -1
        if kind.endswith("-controller"):
            if ctl in by_id and by_id[ctl].alive():
                target = by_id[ctl]
            else:
                note("(no controller leader known: node %d instead)" % target.node_id)
        tid = target.node_id
        others = [j for j in ids if j != tid]
        if kind in ("kill", "kill-controller"):
            note("kill -9 node %d%s, restart after %.1f s"
                 % (tid, " (controller)" if tid == ctl else "", dur * 0.375))
            target.kill9()
            time.sleep(dur * 0.375)
            target.start()
            continue
        if kind == "pause":
            note("SIGSTOP node %d for %.1f s" % (tid, dur * 0.5))
            os.kill(target.pid, signal.SIGSTOP)
            time.sleep(dur * 0.5)
            os.kill(target.pid, signal.SIGCONT)
            continue
        if kind == "stop":
            note("SIGTERM node %d, start after %.1f s" % (tid, dur * 0.25))
            target.stop()
            time.sleep(dur * 0.25)
            target.start()
            continue
        if kind == "slow-disk":
            ms = delay * 5
            note("slow disk on node %d: every fsync %d ms slower for %.1f s" % (tid, ms, dur))
            disks.delay(target, ms)
            time.sleep(dur)
            disks.delay(target, 0)
            note("healed")
            continue
        if kind == "full-disk":
            took = disks.fill(target)
            note("full disk on node %d (a %d MiB ballast) for %.1f s"
                 % (tid, took >> 20, dur))
            time.sleep(dur)
            disks.heal()
            note("healed")
            continue
        if kind == "isolate":
            clients = flag < 0.4
            note("isolate node %d from its peers%s for %.1f s"
                 % (tid, " and the clients" if clients else "", dur))
            lab.cut(tid, others, "both", clients=clients)
        elif kind == "isolate-controller":
            note("isolate node %d%s from its peers (clients reach it) for %.1f s"
                 % (tid, " (controller)" if tid == ctl else "", dur))
            lab.cut(tid, others, "both")
        elif kind == "split":
            k = (n - 1) // 2
            note("split %s | %s for %.1f s" % (sorted(order[:k]), sorted(order[k:]), dur))
            lab.separate(order[:k], order[k:])
        elif kind == "one-way-out":
            note("node %d's packets to its peers dropped (it still receives) for %.1f s"
                 % (tid, dur))
            lab.cut(tid, others, "out")
        elif kind == "one-way-in":
            note("packets from its peers to node %d dropped (it still sends) for %.1f s"
                 % (tid, dur))
            lab.cut(tid, others, "in")
        elif kind == "bridge":
            h = (n - 1) // 2
            a, b, hub = order[:h], order[h:2 * h], order[2 * h:]
            note("bridge: %s and %s cannot see each other, %s sees both, for %.1f s"
                 % (sorted(a), sorted(b), sorted(hub), dur))
            lab.separate(a, b)
        elif kind == "leader-cut":
            t, p = where
            try:
                md = admin(live[0]).list_topics(topic=t, timeout=5)
                part = md.topics[t].partitions[p]
                leader, replicas = part.leader, list(part.replicas)
            except Exception:
                leader, replicas = -1, []
            followers = [j for j in replicas if j != leader]
            if leader in by_id and followers:
                note("leader-cut: node %d (leader of %s-%d) cut from its followers %s, clients "
                     "reach it, for %.1f s" % (leader, t, p, followers, dur))
                lab.cut(leader, followers, "both")
            else:
                note("leader-cut: %s-%d has no leader with followers now: isolate node %d for "
                     "%.1f s" % (t, p, tid, dur))
                lab.cut(tid, others, "both")
        else:  # link
            victims = ids if flag < 0.3 else [tid]
            note("link of %s: delay %d ms, jitter %d ms, loss %.1f%%, duplicate %d%%, reorder "
                 "%d%% for %.1f s" % ("every node" if len(victims) == n else "node %d" % tid,
                                     delay, jitter, loss, dup, reorder, dur))
            for j in victims:
                lab.degrade(j, delay_ms=delay, jitter_ms=jitter, loss_pct=loss, dup_pct=dup,
                            reorder_pct=reorder)
        time.sleep(dur)
        lab.heal()
        note("healed")


def every_node_back(nodes, timeout):
    """Waits until every node runs and each one lists every node as a live broker."""
    ids = {x.node_id for x in nodes}
    for x in nodes:
        wait_for("node %d listing every node" % x.node_id,
                 lambda x=x: x.alive() and cluster_view(x)[0] == ids, timeout, nodes)


def leaders_agree(nodes, topics, timeout):
    """Waits until every node names a leader for every partition of topics, the same on all
    nodes: (partitions, None), or after timeout (0, the partitions where they differ)."""
    deadline = time.monotonic() + timeout
    diff = None
    while True:
        views = {}
        try:
            for x in nodes:
                md = admin(x).list_topics(timeout=10)
                views[x.node_id] = {(t, p.id): p.leader for t in topics
                                    for p in md.topics[t].partitions.values()}
        except Exception as e:  # a node not answering, or a topic it does not list
            diff = repr(e)
        else:
            first = next(iter(views.values()))
            keys = set().union(*(set(v) for v in views.values()))
            diff = {"%s-%d" % k: {j: v.get(k) for j, v in views.items()} for k in sorted(keys)
                    if len({v.get(k) for v in views.values()}) > 1 or first.get(k, -1) < 0}
            if not diff:
                return len(keys), None
        if time.monotonic() > deadline:
            return 0, dict(list(diff.items())[:8]) if isinstance(diff, dict) else diff
        time.sleep(0.5)


def read_all(node, topics):
    """Every record of topics, read directly by partition: value -> [(topic, partition, off)]."""
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "checker-%d" % time.time(),
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    md = admin(node).list_topics(timeout=10)
    tps, ends = [], {}
    for t in topics:
        for p in md.topics[t].partitions:
            lo, hi = c.get_watermark_offsets(TopicPartition(t, p), timeout=10)
            ends[(t, p)] = hi
            if hi > lo:
                tps.append(TopicPartition(t, p, lo))
    c.assign(tps)
    seen = {}
    left = {(tp.topic, tp.partition) for tp in tps}
    # a minute without a record ends it (not a minute in all: a long campaign leaves millions
    # of records, which a loaded machine reads for minutes)
    deadline = time.monotonic() + 60
    last = {}
    while left and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            # a partition whose log ends in control batches (a Raft LeaderChange after the last
            # election, a transaction marker) delivers no record at its last offset: the
            # consumer's position passing the end says it was read through
            if left:
                for tp in c.position([TopicPartition(t, p) for t, p in left]):
                    if tp.offset >= ends[(tp.topic, tp.partition)]:
                        left.discard((tp.topic, tp.partition))
            continue
        deadline = time.monotonic() + 60
        last[(m.topic(), m.partition())] = m.offset()
        # the same position handed out again by the client (a refetch) is one record; the
        # same value at two positions is a duplicate in the log
        at = seen.setdefault(m.value().decode(), [])
        if (m.topic(), m.partition(), m.offset()) not in at:
            at.append((m.topic(), m.partition(), m.offset()))
        if m.offset() + 1 >= ends[(m.topic(), m.partition())]:
            left.discard((m.topic(), m.partition()))
    if left:
        pos = {(tp.topic, tp.partition): tp.offset
               for tp in c.position([TopicPartition(t, p) for t, p in left])}
        for tp in sorted(left):
            lo, hi = c.get_watermark_offsets(TopicPartition(*tp), timeout=10)
            print("unfinished %s-%d: watermarks asked before the read %d, now %d..%d; last "
                  "record read at %s; consumer position %s" % (tp[0], tp[1], ends[tp], lo, hi,
                                                               last.get(tp), pos.get(tp)))
    c.close()
    return seen, left


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--nodes", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=40)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--rf", type=int, default=1,
                    help="replication factor of the loaded topics (3: a Raft group each)")
    ap.add_argument("--net", action="store_true",
                    help="each node in a network namespace; network faults join the schedule")
    ap.add_argument("--watermarks", action="store_true",
                    help="sample and check high watermarks without --net too (--net always does)")
    ap.add_argument("--keep-logs", default=None, metavar="DIR",
                    help="copy every node's log to DIR/node-N.log at the end (evidence)")
    ap.add_argument("--kinds", default=None,
                    help="comma-separated fault kinds (with --net: %s)"
                    % ",".join(NET_FAULTS + DISK_FAULTS))
    ap.add_argument("--cycles", type=int, default=None,
                    help="stop after this many faults (with --net), not after --seconds")
    ap.add_argument("--topic-config", action="append", default=[], metavar="KEY=VALUE",
                    help="a config of the loaded topics (repeatable), e.g. write.caching=true: "
                    "acknowledged from the replicas' page cache, which process kills, pauses and "
                    "network faults leave in place, so nothing acknowledged may be lost either")
    args = ap.parse_args()
    if any("=" not in kv for kv in args.topic_config):
        ap.error("--topic-config wants KEY=VALUE")
    args.topic_config = dict(kv.split("=", 1) for kv in args.topic_config)
    kinds = args.kinds.split(",") if args.kinds else NET_FAULTS
    unknown = [k for k in kinds if k not in NET_FAULTS + DISK_FAULTS]
    if unknown or ((args.kinds or args.cycles) and not args.net):
        ap.error("--kinds and --cycles need --net; known kinds: %s"
                 % ",".join(NET_FAULTS + DISK_FAULTS))
    args.kinds = kinds
    if "full-disk" in kinds and os.geteuid() != 0:
        print("SKIPPED: full-disk needs root (a tmpfs per node)")
        return
    if args.net:
        why = netlab.unavailable()
        if why is not None:
            print("SKIPPED: network fault campaign: %s" % why)
            return
        netlab.cleanup_stale()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    print("fault campaign: seed %d, %d nodes, rf %d, %s%s (replay: --seed %d)"
          % (seed, args.nodes, args.rf,
             "%d cycles" % args.cycles if args.cycles else "%.0f s" % args.seconds,
             ", faults: %s" % ",".join(args.kinds) if args.net else "", seed), flush=True)
    args.seed = seed
    rng = random.Random(seed)
    # a SIGTERM (ctest's timeout, a user) still runs the clean-up below
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    # the nodes' data directories under one directory of this run's own (lmf<pid>-...), removed
    # at the end, and by a later run's clean-up if this process dies first
    data_root = tempfile.mkdtemp(prefix="%s%d-" % (netlab.PREFIX, os.getpid()))
    tempfile.tempdir = data_root
    lab, nodes, disks = None, [], None
    try:
        if args.net:
            lab = netlab.NetLab(args.nodes)
            lab.up()
            voters = ",".join("%d@%s:%d" % (i, lab.addr(i), NET_CPORT)
                              for i in range(1, args.nodes + 1))
            nodes = [NetNode(i, voters, args.io, lab) for i in range(1, args.nodes + 1)]
            disks = Disks(nodes, args.kinds)
        else:
            port, cport = free_port(), free_port()
            voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport)
                              for i in range(1, args.nodes + 1))
            nodes = [Node(i, voters, port, cport, args.io) for i in range(1, args.nodes + 1)]
        run(args, rng, nodes, lab, disks)
    finally:
        for x in nodes:
            if x.alive():
                try:
                    os.kill(x.pid, signal.SIGCONT)
                except OSError:
                    pass
            x.stop()
            if args.keep_logs and os.path.exists(x.log_path):
                os.makedirs(args.keep_logs, exist_ok=True)
                shutil.copy(x.log_path, os.path.join(args.keep_logs, "node-%d.log" % x.node_id))
        if disks is not None:
            disks.release()
        for x in nodes:
            x.cleanup()
        if args.keep_logs:
            for name in os.listdir(data_root):
                if name.startswith("producer-") and name.endswith(".log"):
                    os.makedirs(args.keep_logs, exist_ok=True)
                    shutil.copy(os.path.join(data_root, name), args.keep_logs)
        if lab is not None:
            lab.down()
        tempfile.tempdir = None
        shutil.rmtree(data_root, ignore_errors=True)


def run(args, rng, nodes, lab, disks):
    for x in nodes:
        x.start()
    ids = {x.node_id for x in nodes}
    wait_for("cluster formed", lambda: cluster_view(nodes[0])[0] == ids, 30, nodes)
    topics = ["load-a", "load-b"]
    a = admin(nodes[0])
    for _, f in a.create_topics([NewTopic(t, 6, args.rf, config=args.topic_config)
                                 for t in topics]).items():
        f.result()
    wait_for("leaders elected",
             lambda: all(-1 not in leaders(nodes[0], t).values() for t in topics), 30, nodes)
    load = Load(nodes, topics)
    marks = Watermarks(nodes, topics, 6, time.monotonic())
    if args.net or args.watermarks:
        marks.thread.start()
    load.start(producers=2, lone=nodes[-1] if args.net else None)
    log = []
    t_faults = time.monotonic()
    try:
        if args.net:
            net_campaign(nodes, lab, rng, args.seconds, topics, log, args.kinds, args.cycles,
                         disks)
        else:
            campaign(nodes, rng, args.seconds, log)
    finally:
        if lab is not None:
            lab.heal()
        if disks is not None:
            disks.heal()
    print("fault timeline (seed %d):" % args.seed)
    for line in log:
        print("  fault:", line)
    if args.net:
        every_node_back(nodes, 60)
    else:
        wait_for("every node back", lambda: cluster_view(nodes[0])[0] == ids, 60, nodes)
    load.finish()
    marks.stop.set()
    if marks.thread.is_alive():
        marks.thread.join(30)
    print("load: %d records acknowledged, %d delivery errors (not acknowledged), %d topics "
          "created (%d creations not acknowledged) in %.0f s of faults"
          % (len(load.acked), load.delivery_errors, len(load.created), load.failed_creates,
             time.monotonic() - t_faults))
    if len(load.acked) == 0:
        fail("nothing was acknowledged", nodes)
    # checkers: each one runs; every problem found is named at the end
    class Problems(list):
        """Each problem is printed when found too: a long log cut in the middle (CI keeps its
        head and tail) still shows it next to the schedule."""

        def append(self, what):
            print("problem: %s" % what, flush=True)
            super().append(what)

    problems = Problems()
    wait_for("every partition led",
             lambda: all(-1 not in leaders(nodes[0], t).values() for t in topics), 60, nodes)
    if args.net:
        agreed, diff = leaders_agree(nodes, topics + load.created, 30)
        if diff:
            problems.append("nodes disagree on leaders (or name none) 30 s after the heal: %s"
                            % diff)
        else:
            print("ok: after the heal all %d nodes name the same leader for all %d partitions"
                  % (len(nodes), agreed))
    # a node restarted at the end of the schedule may still be catching up its metadata
    wait_for("node %d listing the loaded topics" % nodes[-1].node_id,
             lambda: set(topics) <= set(admin(nodes[-1]).list_topics(timeout=5).topics), 30,
             nodes)
    seen, unfinished = read_all(nodes[-1], topics)
    if unfinished:
        fail("could not read to the end of %s" % sorted(unfinished), nodes)
    lost = [v for v in load.acked if v not in seen]
    # an acknowledgement without an offset: the produce response's base_offset was -1
    blind = [v for v, at in load.acked.items() if at[2] is None and v in seen]
    moved = [v for v, at in load.acked.items()
             if v in seen and at[2] is not None and at not in seen[v]]
    dups = [v for v, at in seen.items() if len(at) > 1]
    client_dups = []
    if dups:
        client_dups, dups, why = client_epoch_bump_dups(load, nodes, dups, seen)
        if client_dups:
            print("note: %d records in the log twice because librdkafka's idempotent producer "
                  "bumped its epoch and sent again records whose first request failed as "
                  "possibly persisted (a client limitation, confluentinc/librdkafka#4953; not "
                  "counted as a broker fault), e.g. %s" % (len(client_dups), why))
    if lost or moved or dups:
        problems.append("%d acknowledged records lost (e.g. %s), %d not at their acknowledged "
                        "offset (e.g. %s), %d read twice (e.g. %s)"
                        % (len(lost), lost[:3], len(moved),
                           [(v, load.acked[v], seen[v]) for v in moved[:3]],
                           len(dups), [(v, seen[v]) for v in dups[:3]]))
    if dups:
        v = dups[0]
        problems.append("the batches holding the first duplicate %s: %s"
                        % (v, [batch_from_leader(nodes, *at) for at in seen[v]]))
        idx = int(v[1:].split("-")[0])
        print("---- producer %d: librdkafka's idempotence log (epoch moves) ----" % idx)
        for ln in load.producer_evidence(idx):
            print(ln)
    if blind:
        # librdkafka's idempotent producer reports a message whose request failed as
        # "possibly persisted" (a timeout, NOT_ENOUGH_REPLICAS_AFTER_APPEND) as delivered,
        # without an offset, once a later batch of the same producer is acknowledged: its
        # sequence proves the broker has it (Kafka brokers are seen the same way). The check
        # that matters is above: each of them is in the log exactly once.
        print("note: %d records acknowledged by the client without an offset (implied by a "
              "later acknowledgement), each read exactly once, e.g. %s; the batch holding %s: "
              "%s" % (len(blind), [(v, load.acked[v][:2], seen[v]) for v in blind[:3]],
                      blind[0], batch_from_leader(nodes, *seen[blind[0]][0])))
    if load.fatal:
        problems.append("%d idempotent producer(s) stopped by a fatal error: %s"
                        % (len(load.fatal), load.fatal))
    for x in nodes:
        have = set(admin(x).list_topics(timeout=10).topics)
        missing = [t for t in load.created if t not in have]
        if missing:
            problems.append("node %d lacks acknowledged topics %s" % (x.node_id, missing[:5]))
    ref = {t: leaders(nodes[0], t) for t in load.created[:20]}
    for x in nodes[1:]:
        for t, lead in ref.items():
            deadline = time.monotonic() + 10
            while leaders(x, t) != lead and time.monotonic() < deadline:
                time.sleep(0.1)
            if leaders(x, t) != lead:
                problems.append("node %d names leaders %s for %s, node %d %s"
                                % (x.node_id, leaders(x, t), t, nodes[0].node_id, lead))
    if marks.back:
        problems.append("the high watermark went back %d times (of %d samples), e.g. %s"
                        % (len(marks.back), marks.samples,
                           ["%s-%d: %d after %d at %.1f s, leaders %s"
                            % (t, p, hi, before, when, views)
                            for when, t, p, hi, before, views in marks.back[:5]]))
    elif marks.samples:
        print("ok: %d high-watermark samples, none lower than one before" % marks.samples)
    # a full disk is an error the broker reports as one ("no space left on the device")
    expected = ("no space left on the device",) if "full-disk" in (args.kinds or []) else ()
    for x in nodes:
        text = x.log_text()
        bad = [ln for ln in text.splitlines()
               if (" ERROR " in ln and not any(e in ln for e in expected))
               or "Sanitizer" in ln or "runtime error" in ln]
        if bad:
            problems.append("node %d logged: %s" % (x.node_id, bad[:5]))
    faults = len([ln for ln in log if "healed" not in ln])
    print("summary: %s" % json.dumps({
        "seed": args.seed, "nodes": len(nodes), "kinds": args.kinds if args.net else None,
        "faults": faults, "acked": len(load.acked), "lost": len(lost), "moved": len(moved),
        "duplicated": len(dups), "client_duplicated": len(client_dups),
        "watermark_back": len(marks.back),
        "topics_created": len(load.created), "problems": len(problems)}), flush=True)
    if problems:
        fail("seed %d: %d problem(s):\n  - %s" % (args.seed, len(problems),
                                                    "\n  - ".join(problems)), nodes)
    print("ok: %d faults; %d acknowledged records all at their offsets, none twice; "
          "%d acknowledged topics on every node, leaders agreed"
          % (faults, len(load.acked), len(load.created)))


if __name__ == "__main__":
    main()
