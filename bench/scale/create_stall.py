#!/usr/bin/env python3
"""How long other clients wait while a large topic is created and deleted on one node.

    /usr/bin/python3 bench/scale/create_stall.py BUILD [--partitions 10000] [--hold 8]
        [--acks 1|all] [--bin NAME=PATH ...]

For each binary (BUILD/broker/laminar, or every --bin): a fresh single-node broker (2 shards,
io_uring) on free loopback ports; a two-partition topic `h`; a producer sending rounds of one
record to each of its partitions (linger 0, each round flushed) for the whole run; after 1 s a
topic of --partitions partitions is created, --hold seconds later deleted, --hold seconds later
the run ends. Prints how long CreateTopics and DeleteTopics took to answer, how many rounds
completed and the five slowest rounds with when they started (seconds after the CreateTopics).
A round is as slow as the slower of the two shards: a shard that opens or closes thousands of
logs in one go holds every request it owns. A benchmark, not a test: nothing is asserted."""
import argparse
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
from laminar_harness import Broker  # noqa: E402
from confluent_kafka import Producer  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def run(path, args):
    os.environ["LAMINAR_BIN"] = path
    b = Broker(io="uring", shards=2, config={"num.partitions": "1"})
    b.start()
    try:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        admin.create_topics([NewTopic("h", 2, 1)])["h"].result(30)
        p = Producer({"bootstrap.servers": b.bootstrap, "acks": args.acks, "linger.ms": 0})
        rounds = []
        stop = threading.Event()

        def produce():
            while not stop.is_set():
                t = time.monotonic()
                for part in (0, 1):
                    p.produce("h", b"x", partition=part)
                p.flush(30)
                rounds.append((t, time.monotonic() - t))

        th = threading.Thread(target=produce)
        th.start()
        time.sleep(1)
        t0 = time.monotonic()
        admin.create_topics([NewTopic("big", args.partitions, 1)])["big"].result(120)
        created = time.monotonic() - t0
        time.sleep(args.hold)
        t1 = time.monotonic()
        admin.delete_topics(["big"])["big"].result(120)
        deleted = time.monotonic() - t1
        time.sleep(args.hold)
        stop.set()
        th.join()
        worst = sorted(rounds, key=lambda r: -r[1])[:5]
        return created, deleted, len(rounds), [(t - t0, w) for t, w in worst]
    finally:
        b.stop()
        b.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("--bin", action="append", default=[], help="NAME=PATH, repeatable")
    ap.add_argument("--partitions", type=int, default=10000)
    ap.add_argument("--hold", type=float, default=8.0)
    ap.add_argument("--acks", default="1", choices=["0", "1", "all"])
    args = ap.parse_args()
    bins = [x.split("=", 1) for x in args.bin] or [
        ["laminar", os.path.join(args.build, "broker", "laminar")]]
    print("| binary | CreateTopics answered | DeleteTopics answered | rounds | slowest rounds "
          "(s, at s after the create) |")
    print("| --- | --- | --- | --- | --- |")
    for name, path in bins:
        created, deleted, n, worst = run(path, args)
        print("| %s | %.2f s | %.2f s | %d | %s |" % (
            name, created, deleted, n,
            ", ".join("%.2f at %+.1f" % (w, t) for t, w in worst)),
            flush=True)


if __name__ == "__main__":
    sys.exit(main())
