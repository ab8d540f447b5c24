"""Broker-level topic defaults from server.properties keys (message.max.bytes,
log.segment.bytes) reach the partitions a topic opens, not only DescribeConfigs.

    test_broker_defaults.py --io uring|epoll
"""

import argparse
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402

failures = []


def check(ok, what, detail=None):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok or detail is None else ": %r" % (detail,)))
    if not ok:
        failures.append(what)


def produce(bootstrap, topic, value, count):
    """Sends count records of value; returns the list of delivery errors (None = delivered)."""
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bootstrap, "message.max.bytes": 10_000_000,
                  "linger.ms": 0, "acks": "all", "compression.type": "none",
                  "batch.num.messages": 1})
    results = []
    for _ in range(count):
        p.produce(topic, value=value, key=b"k",
                  on_delivery=lambda err, msg: results.append(err))
        p.poll(0)
    p.flush(30)
    return results


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    broker = Broker(io=args.io, config={"message.max.bytes": "20000",
                                        "log.segment.bytes": "1048576",
                                        "num.partitions": "1"})
    broker.start()
    try:
        from confluent_kafka import KafkaError
        # A 50 KB record is over the broker's message.max.bytes (20000): refused by the broker.
        errs = produce(broker.bootstrap, "defaults-big", b"x" * 50_000, 1)
        check(len(errs) == 1 and errs[0] is not None
              and errs[0].code() == KafkaError.MSG_SIZE_TOO_LARGE,
              "record over broker message.max.bytes refused with MESSAGE_TOO_LARGE", errs)
        # 2.4 MB of 8 KB records (one per batch) with log.segment.bytes = 1 MiB rolls several segments.
        errs = produce(broker.bootstrap, "defaults-roll", b"y" * 8_000, 300)
        check(all(e is None for e in errs), "300 records of 8 KB delivered",
              [e for e in errs if e is not None][:3])
        segs = glob.glob(os.path.join(broker.data_dir, "defaults-roll-0", "*.log"))
        check(len(segs) >= 3, "log.segment.bytes=1048576 rolled segments", sorted(segs))
    finally:
        broker.stop()
        broker.cleanup()
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
