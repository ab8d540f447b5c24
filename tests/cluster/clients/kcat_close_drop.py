"""Shows kcat's group consumer losing a record when SIGTERM stops it (test_clients.Kcat says
why), against one laminar node with no faults: a producer writes about 100 records/s to 3
partitions; each trial starts `kcat -G` as the client matrix does, stops it with SIGTERM after
a second or so of reading, and compares the group's committed offsets with the last offset kcat
printed per partition. A committed offset of last printed + 2 is a record kcat was handed
(librdkafka stored its offset + 1) and dropped unprinted. Not a ctest: it measures the client.

    LAMINAR_BIN=build-asan/broker/laminar /usr/bin/python3 \\
        tests/cluster/clients/kcat_close_drop.py [--trials 10] [--debug cgrp,fetch]

--debug keeps each trial's librdkafka log (kcat -d) in the printed directory.
"""
import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "compat", "harness"))
from laminar_harness import Broker  # noqa: E402

from confluent_kafka import Consumer, Producer, TopicPartition  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "close-drop"
PARTITIONS = 3


def produce(bootstrap, stop):
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    i = 0
    while not stop.is_set():
        p.produce(TOPIC, value=b"v%d" % i, partition=i % PARTITIONS)
        p.poll(0)
        i += 1
        time.sleep(0.01)
    p.flush(10)


def trial(bootstrap, n, workdir, debug):
    """(last offset printed, committed offset) per partition after one SIGTERM."""
    group = "close-drop-%d" % n
    cmd = ["kcat", "-E", "-b", bootstrap, "-G", group, "-u", "-q", "-f", "READ %s %p %o\\n",
           "-X", "auto.offset.reset=latest", "-X", "enable.auto.commit=true",
           "-X", "auto.commit.interval.ms=200", "-X", "session.timeout.ms=10000",
           "-X", "heartbeat.interval.ms=500"]
    if debug:
        cmd += ["-d", debug]
    with open(os.path.join(workdir, "trial-%d.err" % n), "w") as err:
        proc = subprocess.Popen(cmd + [TOPIC], stdout=subprocess.PIPE, stderr=err)
        last = {}

        def read():
            for line in proc.stdout:
                f = line.split()
                if len(f) == 4 and f[0] == b"READ":
                    last[int(f[2])] = max(last.get(int(f[2]), -1), int(f[3]))

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        deadline = time.monotonic() + 30
        while len(last) < PARTITIONS and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(random.uniform(0.5, 1.5))
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(30)
        reader.join(5)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        committed = {tp.partition: tp.offset for tp in c.committed(
            [TopicPartition(TOPIC, p) for p in range(PARTITIONS)], timeout=10)}
    finally:
        c.close()
    return rc, {p: (last.get(p), committed[p]) for p in range(PARTITIONS)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--debug", help="librdkafka debug contexts for kcat (-d)")
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="kcat-close-drop-")
    broker = Broker(io=args.io)
    broker.start()
    stop = threading.Event()
    producer = threading.Thread(target=produce, args=(broker.bootstrap, stop), daemon=True)
    lost = 0
    try:
        admin = AdminClient({"bootstrap.servers": broker.bootstrap})
        for f in admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1)],
                                     request_timeout=30).values():
            f.result()
        producer.start()
        for n in range(args.trials):
            rc, parts = trial(broker.bootstrap, n, workdir, args.debug)
            past = {p: lc for p, lc in parts.items()
                    if lc[0] is not None and lc[1] > lc[0] + 1}
            lost += bool(past)
            print("trial %d: kcat exited %d; partition: (last printed, committed) %s%s"
                  % (n, rc, parts, "; LOST the record after the last printed in %s"
                     % sorted(past) if past else ""), flush=True)
    finally:
        stop.set()
        producer.join(15)
        broker.stop()
        broker.cleanup()
    if args.debug:
        where = "; kcat's logs in %s" % workdir
    else:
        shutil.rmtree(workdir, ignore_errors=True)
        where = ""
    print("%d of %d SIGTERMs committed past a record kcat did not print%s"
          % (lost, args.trials, where))
    return 0


if __name__ == "__main__":
    sys.exit(main())
