#!/usr/bin/python3
"""What many partitions cost one laminar node: creation, memory, descriptors, a full Metadata,
produce and consume over all of them, idle CPU, and a restart.

    bench/scale/partitions.py BUILD_DIR [--partitions 10000] [--records 500000] [--idle 20]
                              [--shards 2] [--keep]

One fresh single-node broker (io_uring backend, --shards shards, the open-log budget as the
broker sizes it from RLIMIT_NOFILE) on free loopback ports, data in a temporary directory.
Steps, each printed as it ends:
  create   CreateTopics of one topic with N partitions (replication factor 1), then the time
           until Metadata names a leader for every one;
  memory   RSS and open descriptors of the broker after creation;
  metadata the time of a Metadata request naming the topic, as librdkafka's list_topics sees
           it (median of 5);
  idle     the broker's CPU (utime + stime from /proc) over --idle seconds with no client;
  produce  build/bench/broker/bench_produce -p N -a all over every partition (1 KiB records,
           round-robin): records/s and MB/s; RSS and descriptors after;
  consume  build/bench/broker/bench_consume of the whole topic from the start (partitions
           assigned directly): records/s;
  restart  SIGTERM: seconds until the process exits; a new process on the same data: seconds
           until Metadata names a leader for every partition again, and RSS then.
Memory per partition is (RSS after creation - RSS of the same broker before it) / N.
A benchmark, not a test: nothing asserts a figure; nothing is registered with ctest.
"""

import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from confluent_kafka.admin import AdminClient, NewTopic

TICKS = os.sysconf("SC_CLK_TCK")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_s(pid):
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except FileNotFoundError:
            pass
    return total / TICKS


def status(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class Broker:
    def __init__(self, binary, data, shards):
        self.binary, self.data, self.shards = binary, data, shards
        self.port, self.http = free_port(), free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(os.path.dirname(self.data), "broker.log"), "ab")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [self.binary, "serve", "--listeners", "PLAINTEXT://127.0.0.1:%d" % self.port,
             "--log-dirs", self.data, "--shards", str(self.shards),
             "--config", "laminar.http.listener=127.0.0.1:%d" % self.http],
            stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit("broker exited with %d; see %s" % (self.proc.returncode,
                                                                     self.log.name))
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.5).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("broker not listening after 120 s")

    def stop(self):
        if self.proc is None:
            return 0.0
        t = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(120)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None
        self.log.close()
        return time.monotonic() - t

    @property
    def bootstrap(self):
        return "127.0.0.1:%d" % self.port


def wait_led(admin, topic, n, timeout=600):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            md = admin.list_topics(topic, timeout=30)
            t = md.topics.get(topic)
            if t is not None and t.error is None and len(t.partitions) == n and \
                    all(p.leader >= 0 for p in t.partitions.values()):
                return
        except Exception:  # noqa: BLE001 - the broker may still be starting
            pass
        time.sleep(0.1)
    raise SystemExit("not every partition of %s led after %d s" % (topic, timeout))


def tool(build, name, args):
    out = subprocess.run([os.path.join(build, "bench", "broker", name)] + args,
                         capture_output=True, text=True, timeout=900)
    line = next((x for x in out.stdout.splitlines() if x.startswith("RESULT ")), None)
    if out.returncode != 0 or line is None:
        raise SystemExit("%s failed (%d): %s %s" % (name, out.returncode, out.stdout[-2000:],
                                                    out.stderr[-2000:]))
    return dict(kv.split("=", 1) for kv in line.split()[1:])


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("build")
    ap.add_argument("--partitions", type=int, default=10000)
    ap.add_argument("--records", type=int, default=500000)
    ap.add_argument("--idle", type=float, default=20)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    binary = os.path.join(args.build, "broker", "laminar")
    n = args.partitions
    work = tempfile.mkdtemp(prefix="laminar-scale.")
    b = Broker(binary, os.path.join(work, "data"), args.shards)
    fig = {}
    print("scale: %d partitions on one node, %d shards, %d CPUs, load %.2f, work %s" %
          (n, args.shards, os.cpu_count(), os.getloadavg()[0], work), flush=True)
    try:
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        wait_led(admin, "__consumer_offsets", 50)
        rss0 = status(b.proc.pid, "VmRSS")
        t = time.monotonic()
        for f in admin.create_topics([NewTopic("scale", n, 1)], request_timeout=600).values():
            f.result()
        fig["create_s"] = time.monotonic() - t
        wait_led(admin, "scale", n)
        fig["led_s"] = time.monotonic() - t
        print("create   CreateTopics answered in %.2f s, every partition led after %.2f s" %
              (fig["create_s"], fig["led_s"]), flush=True)
        time.sleep(2)
        pid = b.proc.pid
        fig["rss_mib"] = status(pid, "VmRSS") / 1024
        fig["kib_per_part"] = (status(pid, "VmRSS") - rss0) / n
        fig["fds"] = fds(pid)
        print("memory   RSS %.1f MiB (%.1f KiB per partition over the empty broker's %.1f MiB), "
              "%d descriptors open" % (fig["rss_mib"], fig["kib_per_part"], rss0 / 1024,
                                       fig["fds"]), flush=True)
        times = []
        for _ in range(5):
            t = time.monotonic()
            md = admin.list_topics("scale", timeout=60)
            times.append(time.monotonic() - t)
            assert len(md.topics["scale"].partitions) == n
        fig["metadata_ms"] = statistics.median(times) * 1000
        print("metadata one topic of %d partitions: %.1f ms (median of 5, client decode "
              "included)" % (n, fig["metadata_ms"]), flush=True)
        c0 = cpu_s(pid)
        time.sleep(args.idle)
        fig["idle_pct"] = 100 * (cpu_s(pid) - c0) / args.idle
        print("idle     %.2f%% of a core over %.0f s" % (fig["idle_pct"], args.idle), flush=True)
        r = tool(args.build, "bench_produce", ["-b", b.bootstrap, "-t", "scale", "--no-create",
                                                "-p", str(n), "-a", "all", "-n",
                                                str(args.records)])
        fig["produce_rec_s"] = float(r["rec_s"])
        fig["produce_mb_s"] = float(r["mb_s"])
        fig["rss_after_mib"] = status(pid, "VmRSS") / 1024
        fig["fds_after"] = fds(pid)
        print("produce  acks=all over %d partitions: %.0f records/s, %.1f MB/s; RSS %.1f MiB, "
              "%d descriptors" % (n, fig["produce_rec_s"], fig["produce_mb_s"],
                                  fig["rss_after_mib"], fig["fds_after"]), flush=True)
        r = tool(args.build, "bench_consume", ["-b", b.bootstrap, "-t", "scale", "-n",
                                                str(args.records)])
        fig["consume_rec_s"] = float(r["rec_s"])
        print("consume  %.0f records/s, %.1f MB/s" % (fig["consume_rec_s"], float(r["mb_s"])),
              flush=True)
        fig["stop_s"] = b.stop()
        t = time.monotonic()
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        wait_led(admin, "scale", n)
        fig["restart_led_s"] = time.monotonic() - t
        time.sleep(1)
        fig["rss_restart_mib"] = status(b.proc.pid, "VmRSS") / 1024
        print("restart  stopped in %.2f s; every partition led %.2f s after the new process "
              "started; RSS %.1f MiB" % (fig["stop_s"], fig["restart_led_s"],
                                        fig["rss_restart_mib"]), flush=True)
    finally:
        b.stop()
        if args.keep:
            print("work directory kept: %s" % work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    print("\n| partitions | all led after create (s) | RSS MiB | KiB per partition | fds | "
          "Metadata ms | idle CPU %% | produce acks=all rec/s | consume rec/s | stop s | "
          "restart to all led (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("| %d | %.2f | %.1f | %.1f | %d | %.1f | %.2f | %.0f | %.0f | %.2f | %.2f |" % (
        n, fig["led_s"], fig["rss_mib"], fig["kib_per_part"], fig["fds"], fig["metadata_ms"],
        fig["idle_pct"], fig["produce_rec_s"], fig["consume_rec_s"], fig["stop_s"],
        fig["restart_led_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
