#!/usr/bin/python3
"""CPU and memory of a laminar cluster holding many idle replicated partitions, for one
or more laminar binaries in the same invocation (the first is the reference of the ratios).

    bench/cluster/idle_partitions.py --bin build/broker/laminar [--bin OTHER] \\
        [--partitions 3000] [--seconds 20] [--repeat 2] [--nodes 3] [--rf 3] [--kill]
        [--log-open-files 4096] [--first-read] [--io uring|epoll] [--strace PREFIX]

Per binary and repetition: a fresh cluster of --nodes nodes (2 shards each, io_uring; nodes 1-3
combined mode, the controller quorum, nodes 4 and up brokers only), one topic of N partitions
with replication factor --rf (at most 10,000 partitions per CreateTopics request: more are
added with CreatePartitions), every partition led; then, with no
client traffic, the CPU seconds the three processes use in --seconds (utime + stime from
/proc), their RSS, the bytes the loopback carried meanwhile, and the open descriptors of the
node holding the most. Idle partitions cost heartbeats only: this is what Raft heartbeats per
partition cost a node. With --kill it then kills the last node with SIGKILL and measures the
fail-over (with RF > 1: until Metadata from node 1 shows every partition led by a live node) and
the restart (the killed node started again until it logs "started:", then until every partition
is led again). With --first-read, one record goes to each of partitions 1-3 before the window,
and after it the first watermark query (partition 1), fetch from offset 0 until its record
arrives (partition 2) and acks=all produce (partition 3) are timed, by clients connected
beforehand: what a client meets first on a partition idle that long (quiescent, if on).
Every node runs with laminar.log.open.files.max = --log-open-files (the
descriptors its partition logs may hold; 0: the broker's default, 3/5 of RLIMIT_NOFILE), so
with more replicas than that the descriptor count shows the open-log budget at work (a binary
without the key warns that it ignores it, and holds one descriptor per replica).
After the creation each node's log is counted: "leader at epoch" lines (every leadership this
node took, churn included), its own fencings by the controller and the SWIM suspicions and
deaths it saw. With --strace PREFIX every node's sync system calls (fsync, fdatasync, syncfs,
sync_file_range) from CreateTopics until every partition is led + 5 s are traced (strace -f,
PREFIX.NODE) and counted per thread: the shard threads' ("lm-shard-N", and the main thread's)
are the ones that stall an event loop, the sync worker's ("lm-sync", epoll's log fsyncs) and
the metadata worker's ("lm-meta", Raft state files) do not; io_uring's fsyncs are no system
calls and are not seen. A binary without thread names counts everything as its shard threads'.
Prints one line per run and a table of medians with ratios against the first binary. A --bin of
the form PATH,key=value,... runs that binary with those broker settings on every node (e.g.
build/broker/laminar,laminar.raft.quiesce=true), so one binary may be compared with itself.
"""

import argparse
import collections
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "cluster", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
import test_cluster as tc  # noqa: E402
from laminar_harness import free_port  # noqa: E402
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import NewPartitions, NewTopic  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def rss_mib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def lo_bytes():
    with open("/proc/net/dev") as f:
        for line in f:
            if line.strip().startswith("lo:"):
                return int(line.split(":", 1)[1].split()[0])
    return 0


CHUNK = 10000  # partitions per CreateTopics / CreatePartitions request


def led_without(node, topic, dead):
    """Every partition of topic led, and by none of the nodes in dead."""
    ls = tc.leaders(node, topic).values()
    return -1 not in ls and not any(x in dead for x in ls)


SYNC_CALLS = "fsync,fdatasync,syncfs,sync_file_range"


def strace_start(nodes, prefix):
    """One strace -f of the sync calls per node (PREFIX.NODE), attached before it returns."""
    tracers = []
    for x in nodes:
        tracers.append(subprocess.Popen(
            ["strace", "-f", "-qq", "-e", "trace=" + SYNC_CALLS, "-o",
             "%s.%d" % (prefix, x.node_id), "-p", str(x.pid)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    time.sleep(2)  # attached to every thread
    return tracers


def strace_count(nodes, prefix, tracers):
    """Stops the tracers; per node {thread kind: sync calls}, kinds from the thread names."""
    for t in tracers:
        t.send_signal(signal.SIGINT)
    for t in tracers:
        t.wait(60)
    out = []
    for x in nodes:
        per = collections.Counter()
        with open("%s.%d" % (prefix, x.node_id)) as f:
            for line in f:
                m = re.match(r"(\d+)\s+(\w+)\(", line)
                if m and m.group(2) in SYNC_CALLS.split(","):
                    per[int(m.group(1))] += 1
        kinds = collections.Counter()
        with open("/proc/%d/comm" % x.pid) as f:
            main_comm = f.read().strip()  # an unnamed thread's (a binary before the names)
        for tid, n in per.items():
            try:
                with open("/proc/%d/task/%d/comm" % (x.pid, tid)) as f:
                    comm = f.read().strip()
            except OSError:
                comm = "gone"
            kind = ("meta worker" if comm.startswith("lm-meta") else
                    "sync worker" if comm.startswith("lm-sync") else
                    "shard threads" if comm.startswith("lm-shard") or comm == main_comm else
                    "other (%s)" % comm)
            kinds[kind] += n
        out.append(kinds)
    return out


def wait_all_led(nodes, partitions, timeout_s):
    """Until node 1's Metadata shows every partition of "idle" led."""
    a = tc.admin(nodes[0])
    pause = max(0.1, partitions / 20000.0)
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        try:
            md = a.list_topics(topic="idle", timeout=30)
            t = md.topics.get("idle")
            if t is not None and t.error is None and len(t.partitions) == partitions:
                last = sum(1 for p in t.partitions.values() if p.leader < 0)
                if last == 0:
                    return
        except KafkaException as e:
            last = e
        time.sleep(pause)
    tc.fail("every partition led (last: %r leaderless)" % (last,), nodes)


def log_counts(x):
    """What node x's log says about the run: leaderships taken, its fencings, SWIM verdicts."""
    text = x.log_text()
    return {"leader_at_epoch": text.count(": leader at epoch "),
            "fenced": len(re.findall(r"controller: node %d fenced" % x.node_id, text)),
            "suspect": len(re.findall(r"gossip: node \d+ \S+ suspect", text)),
            "dead": len(re.findall(r"gossip: node \d+ \S+ dead", text))}


FIRST_READ_PARTS = (1, 2, 3)  # watermarks, fetch, produce (each its own partition)


def seed_records(node):
    """One record in each of FIRST_READ_PARTS (acks=all), before the idle window."""
    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all"})
    for part in FIRST_READ_PARTS:
        p.produce("idle", value=b"x", partition=part)
    if p.flush(30) != 0:
        raise RuntimeError("seed records not acknowledged")


def timed(what, fn):
    """Seconds fn took, and its error (a string) if it raised one."""
    t0 = time.monotonic()
    try:
        fn()
        return time.monotonic() - t0, None
    except KafkaException as e:
        return time.monotonic() - t0, "%s: %s" % (what, e.args[0].name())


def first_reads(node):
    """The first requests to long-idle partitions (idle for the whole CPU window): a watermark
    query (ListOffsets), a fetch from offset 0 until its record arrives, and an acks=all produce,
    each to its own partition, by clients connected (and their metadata fetched) beforehand."""
    wm_part, fetch_part, produce_part = FIRST_READ_PARTS
    c = Consumer({"bootstrap.servers": node.bootstrap, "group.id": "first-read",
                  "enable.auto.commit": False, "fetch.wait.max.ms": 500})
    p = Producer({"bootstrap.servers": node.bootstrap, "acks": "all", "linger.ms": 0})
    try:
        c.list_topics("idle", timeout=30)
        p.list_topics("idle", timeout=30)
        out = {}
        out["wm_s"], out["wm_err"] = timed(
            "watermarks", lambda: c.get_watermark_offsets(TopicPartition("idle", wm_part),
                                                          timeout=30))

        def fetch():
            c.assign([TopicPartition("idle", fetch_part, 0)])
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                m = c.poll(0.05)
                if m is None:
                    continue
                if m.error():
                    raise KafkaException(m.error())
                return
            raise RuntimeError("no record fetched in 30 s")
        out["fetch_s"], out["fetch_err"] = timed("fetch", fetch)

        def produce():
            errs = []
            p.produce("idle", value=b"y", partition=produce_part,
                      on_delivery=lambda e, _m: errs.append(e))
            p.flush(30)
            if errs and errs[0] is not None:
                raise KafkaException(errs[0])
        out["produce_s"], out["produce_err"] = timed("produce", produce)
        return out
    finally:
        c.close()


def run_once(binary, partitions, seconds, nnodes, rf, kill, log_open_files, first_read,
             io="uring", strace=None):
    # "PATH,key=value,...": the binary and broker settings of its nodes
    binary, *settings = binary.split(",")
    os.environ["LAMINAR_BIN"] = binary
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
    nodes = [tc.Node(i, voters, port, cport, io, observer=i > 3)
             for i in range(1, nnodes + 1)]
    for x in nodes:
        # the default bound (100,000 in the cluster's metadata) counts __consumer_offsets too
        x.config["max.broker.partitions"] = max(100000, 2 * partitions)
        for kv in settings:
            k, v = kv.split("=", 1)
            x.config[k] = v
        if log_open_files > 0:
            x.config["laminar.log.open.files.max"] = log_open_files
    try:
        for x in nodes:
            x.start()
        ids = set(range(1, nnodes + 1))
        tc.wait_for("cluster formed", lambda: tc.cluster_view(nodes[0], 1)[0] == ids, 60, nodes)
        a = tc.admin(nodes[0])
        tracers = strace_start(nodes, strace) if strace else []
        t0 = time.monotonic()
        for _, f in a.create_topics([NewTopic("idle", min(partitions, CHUNK), rf)],
                                    request_timeout=300).items():
            f.result()
        total = min(partitions, CHUNK)
        while total < partitions:
            total = min(partitions, total + CHUNK)
            for _, f in a.create_partitions([NewPartitions("idle", total)],
                                            request_timeout=300).items():
                f.result()
        # One Metadata of the whole topic per poll, at most every partitions/20,000 s: at
        # 100,000 partitions a poll every 0.1 s (tc.wait_for) kept a shard of node 1 busy
        # answering it and its replicas behind.
        wait_all_led(nodes, partitions, 1800 if partitions > 20000 else 900)
        led_s = time.monotonic() - t0
        if first_read:
            seed_records(nodes[0])
        time.sleep(5)  # elections and ISR announcements settle
        syncs = strace_count(nodes, strace, tracers) if tracers else None
        logs = [log_counts(x) for x in nodes]
        c0 = sum(cpu_s(x.pid) for x in nodes)
        b0 = lo_bytes()
        time.sleep(seconds)
        cpu = sum(cpu_s(x.pid) for x in nodes) - c0
        net = lo_bytes() - b0
        rss = sum(rss_mib(x.pid) for x in nodes)
        fds = max(open_fds(x.pid) for x in nodes)
        out = {"cpu_pct": 100.0 * cpu / seconds / nnodes, "net_mb_s": net / seconds / 1e6,
               "rss_mib": rss / nnodes, "led_s": led_s, "fds": fds, "logs": logs}
        if syncs is not None:
            out["syncs"] = syncs
        if first_read:
            out["first"] = first_reads(nodes[0])
        if kill:
            victim = nodes[-1]
            t0 = time.monotonic()
            victim.kill9()
            if rf > 1:
                tc.wait_for("fail-over", lambda: led_without(nodes[0], "idle", {victim.node_id}),
                            900, nodes)
                out["failover_s"] = time.monotonic() - t0
            t0 = time.monotonic()
            victim.start(timeout_s=900)
            out["restart_s"] = time.monotonic() - t0
            tc.wait_for("every partition led after the restart",
                        lambda: led_without(nodes[0], "idle", set()), 900, nodes)
            out["restart_led_s"] = time.monotonic() - t0
        return out
    finally:
        for x in nodes:
            x.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", required=True)
    ap.add_argument("--partitions", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=3, help="3 or more (nodes past 3: brokers only)")
    ap.add_argument("--rf", type=int, default=3)
    ap.add_argument("--kill", action="store_true",
                    help="then kill -9 the last node: fail-over and restart times")
    ap.add_argument("--first-read", action="store_true",
                    help="after the idle window: how long the first watermark query, fetch and "
                         "produce of long-idle partitions take")
    ap.add_argument("--log-open-files", type=int, default=4096,
                    help="laminar.log.open.files.max of every node (0: the broker's default)")
    ap.add_argument("--io", default="uring", choices=["uring", "epoll"],
                    help="I/O backend; with epoll the log fsyncs are system calls of the sync "
                    "worker thread, which --strace counts (io_uring's are not system calls)")
    ap.add_argument("--strace", metavar="PREFIX",
                    help="count each node's sync system calls per thread from CreateTopics "
                    "until every partition is led + 5 s (strace -f into PREFIX.NODE; slows "
                    "creation, so its times are not comparable with untraced runs)")
    args = ap.parse_args()
    print("idle partitions: %d partitions x RF %d on %d nodes, laminar.log.open.files.max %s, "
          "%d CPUs, load %.2f"
          % (args.partitions, args.rf, args.nodes, args.log_open_files or "default",
             os.cpu_count(), os.getloadavg()[0]))
    res = {b: [] for b in args.bin}
    for r in range(args.repeat):
        for b in args.bin:
            m = run_once(b, args.partitions, args.seconds, args.nodes, args.rf, args.kill,
                         args.log_open_files, args.first_read, args.io, args.strace)
            fr = m.pop("first", None)
            logs = m.pop("logs")
            syncs = m.pop("syncs", None)
            res[b].append(m)
            print("run %d %s: CPU %.1f%% of a core per node, loopback %.2f MB/s, RSS %.0f MiB "
                  "per node, all led after %.1f s, open descriptors %d (the most of a node)"
                  % (r + 1, b, m["cpu_pct"], m["net_mb_s"], m["rss_mib"], m["led_s"], m["fds"]),
                  flush=True)
            print("run %d %s: logs: leader at epoch %s; fenced %s; SWIM suspect %s, dead %s "
                  "(per node)" % (r + 1, b, "/".join(str(c["leader_at_epoch"]) for c in logs),
                                  "/".join(str(c["fenced"]) for c in logs),
                                  "/".join(str(c["suspect"]) for c in logs),
                                  "/".join(str(c["dead"]) for c in logs)), flush=True)
            if syncs is not None:
                replicas = args.partitions * args.rf / args.nodes
                for i, k in enumerate(syncs):
                    print("run %d %s: node %d syncs: %s; shard threads %.2f per replica"
                          % (r + 1, b, i + 1,
                             ", ".join("%s %d" % kv for kv in sorted(k.items())) or "none",
                             k["shard threads"] / replicas), flush=True)
            if fr is not None:
                print("run %d %s: first requests after %.0f s idle: watermarks %.3f s%s, fetch "
                      "%.3f s%s, produce acks=all %.3f s%s"
                      % (r + 1, b, args.seconds + 5,
                         fr["wm_s"], " (%s)" % fr["wm_err"] if fr["wm_err"] else "",
                         fr["fetch_s"], " (%s)" % fr["fetch_err"] if fr["fetch_err"] else "",
                         fr["produce_s"],
                         " (%s)" % fr["produce_err"] if fr["produce_err"] else ""), flush=True)
            if "restart_s" in m:
                print("run %d %s: after kill -9 of node %d: fail-over %s, restart %.1f s to "
                      "\"started:\", every partition led %.1f s after the restart began"
                      % (r + 1, b, args.nodes, "%.1f s" % m["failover_s"] if "failover_s" in m
                         else "- (RF=1: its partitions wait for it)", m["restart_s"],
                         m["restart_led_s"]), flush=True)
    ref = args.bin[0]
    print("\n| binary | CPU % per node | loopback MB/s | RSS MiB per node | all led (s) "
          "| descriptors (most of a node) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for b in args.bin:
        med = {k: statistics.median(m[k] for m in res[b]) for k in res[b][0]}
        refm = {k: statistics.median(m[k] for m in res[ref]) for k in res[ref][0]}
        cells = []
        for k in ("cpu_pct", "net_mb_s", "rss_mib", "led_s", "fds"):
            if k not in med:
                continue
            ratio = med[k] / refm[k] if refm[k] else float("nan")
            cells.append("%.2f (x%.2f)" % (med[k], ratio))
        print("| %s | %s |" % (b, " | ".join(cells)))


if __name__ == "__main__":
    main()
