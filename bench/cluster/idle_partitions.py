#!/usr/bin/python3
"""CPU and memory of a 3-node laminar cluster holding many idle replicated partitions, for one
or more laminar binaries in the same invocation (the first is the reference of the ratios).

    bench/cluster/idle_partitions.py --bin build/broker/laminar [--bin OTHER] \\
        [--partitions 3000] [--seconds 20] [--repeat 2] [--log-open-files 4096]

Per binary and repetition: a fresh 3-node cluster (combined mode, 2 shards each, io_uring),
one topic of N partitions with replication factor 3, every partition led; then, with no
client traffic, the CPU seconds the three processes use in --seconds (utime + stime from
/proc), their RSS, the bytes the loopback carried meanwhile, and the open descriptors of the
node holding the most. Idle partitions cost heartbeats only: this is what Raft heartbeats per
partition cost a node. Every node runs with laminar.log.open.files.max = --log-open-files (the
descriptors its partition logs may hold; 0: the broker's default, 3/5 of RLIMIT_NOFILE), so
with more replicas than that the descriptor count shows the open-log budget at work (a binary
without the key warns that it ignores it, and holds one descriptor per replica).
Prints one line per run and a table of medians with ratios against the first binary.
"""

import argparse
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "cluster", "nodes"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
import test_cluster as tc  # noqa: E402
from laminar_harness import free_port  # noqa: E402
from confluent_kafka.admin import NewTopic  # noqa: E402

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


def run_once(binary, partitions, seconds, log_open_files):
    os.environ["LAMINAR_BIN"] = binary
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in range(1, 4))
    nodes = [tc.Node(i, voters, port, cport, "uring") for i in range(1, 4)]
    if log_open_files > 0:
        for x in nodes:
            x.config["laminar.log.open.files.max"] = log_open_files
    try:
        for x in nodes:
            x.start()
        ids = {1, 2, 3}
        tc.wait_for("cluster formed", lambda: tc.cluster_view(nodes[0], 1)[0] == ids, 60, nodes)
        a = tc.admin(nodes[0])
        t0 = time.monotonic()
        for _, f in a.create_topics([NewTopic("idle", partitions, 3)],
                                    request_timeout=120).items():
            f.result()
        tc.wait_for("every partition led",
                    lambda: -1 not in tc.leaders(nodes[0], "idle").values(), 900, nodes)
        led_s = time.monotonic() - t0
        time.sleep(5)  # elections and ISR announcements settle
        c0 = sum(cpu_s(x.pid) for x in nodes)
        b0 = lo_bytes()
        time.sleep(seconds)
        cpu = sum(cpu_s(x.pid) for x in nodes) - c0
        net = lo_bytes() - b0
        rss = sum(rss_mib(x.pid) for x in nodes)
        fds = max(open_fds(x.pid) for x in nodes)
        return {"cpu_pct": 100.0 * cpu / seconds / 3, "net_mb_s": net / seconds / 1e6,
                "rss_mib": rss / 3, "led_s": led_s, "fds": fds}
    finally:
        for x in nodes:
            x.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", action="append", required=True)
    ap.add_argument("--partitions", type=int, default=3000)
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--log-open-files", type=int, default=4096,
                    help="laminar.log.open.files.max of every node (0: the broker's default)")
    args = ap.parse_args()
    print("idle partitions: %d partitions x RF 3 on 3 nodes, laminar.log.open.files.max %s, "
          "%d CPUs, load %.2f"
          % (args.partitions, args.log_open_files or "default", os.cpu_count(),
             os.getloadavg()[0]))
    res = {b: [] for b in args.bin}
    for r in range(args.repeat):
        for b in args.bin:
            m = run_once(b, args.partitions, args.seconds, args.log_open_files)
            res[b].append(m)
            print("run %d %s: CPU %.1f%% of a core per node, loopback %.2f MB/s, RSS %.0f MiB "
                  "per node, all led after %.1f s, open descriptors %d (the most of a node)"
                  % (r + 1, b, m["cpu_pct"], m["net_mb_s"], m["rss_mib"], m["led_s"], m["fds"]),
                  flush=True)
    ref = args.bin[0]
    print("\n| binary | CPU % per node | loopback MB/s | RSS MiB per node | all led (s) "
          "| descriptors (most of a node) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for b in args.bin:
        med = {k: statistics.median(m[k] for m in res[b]) for k in res[b][0]}
        refm = {k: statistics.median(m[k] for m in res[ref]) for k in res[ref][0]}
        cells = []
        for k in ("cpu_pct", "net_mb_s", "rss_mib", "led_s", "fds"):
            ratio = med[k] / refm[k] if refm[k] else float("nan")
            cells.append("%.2f (x%.2f)" % (med[k], ratio))
        print("| %s | %s |" % (b, " | ".join(cells)))


if __name__ == "__main__":
    main()
