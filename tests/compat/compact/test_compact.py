"""Log compaction against the real broker (cleanup.policy=compact), with confluent-kafka:

1. a compacted topic (segment.ms short so segments roll, min.cleanable.dirty.ratio=0.01) gets
   many updates to few keys; a record without a key is refused with INVALID_RECORD (Kafka's
   "Compacted topic cannot accept message without key");
2. the cleaner runs on its own (shard tick); a consumer from the beginning then sees exactly the
   latest value of every key, at the offset it was acknowledged at, and far fewer records than
   were produced (the first record may sit above the fetch offset: gaps are normal);
3. a consumer group commits offsets many times, so __consumer_offsets rolls and is compacted;
   after a restart the committed offsets are still the last ones, and the compacted topic still
   reads back the same (recovery accepts the gaps of compacted segments).

    /usr/bin/python3 test_compact.py --io uring|epoll
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic  # noqa: E402

TOPIC = "compacted"
PARTS = 2
KEYS = 20
ROUNDS = 12
PER_ROUND = 25  # updates of every key per round
GROUP = "compact-cg"


def produce_updates(b, latest):
    """ROUNDS rounds of PER_ROUND updates to each key, 0.4 s apart so segments roll."""
    # acks=1 and no flush policy: the cleaner itself asks for the flush it needs (only durable
    # records supersede), so this also covers that path.
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "1", "linger.ms": 5,
                     "enable.idempotence": False})
    errors = []

    def dr(err, msg):
        if err is not None:
            errors.append(err)
        else:
            latest[msg.key()] = (msg.partition(), msg.offset(), msg.value())

    produced = 0
    for r in range(ROUNDS):
        for u in range(PER_ROUND):
            for k in range(KEYS):
                key = b"key-%02d" % k
                p.produce(TOPIC, key=key, value=b"%s:r%02d:u%03d" % (key, r, u),
                          partition=k % PARTS, on_delivery=dr)
                produced += 1
            p.poll(0)
        p.flush(10)
        time.sleep(0.4)
    p.flush(10)
    check(not errors, "produce errors: %s" % errors[:3])
    return produced


def roll_active(b, latest):
    """One more record per partition after segment.ms: the segments holding the updates seal."""
    time.sleep(0.5)
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "1"})

    def dr(err, msg):
        check(err is None, "filler: %s" % err)
        latest[msg.key()] = (msg.partition(), msg.offset(), msg.value())

    for q in range(PARTS):
        p.produce(TOPIC, key=b"filler-%d" % q, value=b"f", partition=q, on_delivery=dr)
    p.flush(10)


def null_key_refused(b):
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "retries": 0,
                     "enable.idempotence": False, "message.timeout.ms": 5000})
    res = []
    p.produce(TOPIC, value=b"no key", partition=0, on_delivery=lambda e, m: res.append(e))
    p.flush(10)
    check(len(res) == 1 and res[0] is not None, "null key accepted: %s" % res)
    check(res[0].code() == ck.KafkaError.INVALID_RECORD, "null key error %s" % res[0])


def read_all(b):
    """Every record of the topic from the beginning: {(partition, offset): (key, value)}."""
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader-%d" % time.time_ns(),
                     "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    ends = {}
    for q in range(PARTS):
        lo, hi = c.get_watermark_offsets(ck.TopicPartition(TOPIC, q), timeout=10)
        ends[q] = hi
    c.assign([ck.TopicPartition(TOPIC, q, ck.OFFSET_BEGINNING) for q in range(PARTS)])
    out = {}
    done = set(q for q in range(PARTS) if ends[q] == 0)
    deadline = time.monotonic() + 30
    while len(done) < PARTS and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None:
            continue
        check(m.error() is None, "consume: %s" % m.error())
        out[(m.partition(), m.offset())] = (m.key(), m.value())
        if m.offset() >= ends[m.partition()] - 1:
            done.add(m.partition())
    c.close()
    check(len(done) == PARTS, "did not reach the end: %s of %s" % (sorted(done), ends))
    return out


def compacted_view_ok(recs, latest):
    """The latest record of each key is there at its offset, and nothing older of that key."""
    newest = {}
    for (q, off), (k, v) in sorted(recs.items()):
        newest[k] = (q, off, v)
    for k, want in latest.items():
        if newest.get(k) != want:
            return False
    per_key = {}
    for (q, off), (k, v) in recs.items():
        per_key[k] = per_key.get(k, 0) + 1
    return all(n == 1 for n in per_key.values())


def commit_many(b, n):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": GROUP,
                     "enable.auto.commit": False})
    last = None
    for i in range(n):
        last = [ck.TopicPartition(TOPIC, q, 1000 + i * PARTS + q) for q in range(PARTS)]
        c.commit(offsets=last, asynchronous=False)
        if i % 40 == 39:
            time.sleep(0.35)  # log.roll.ms: the offsets log rolls between bursts
    c.close()
    return {tp.partition: tp.offset for tp in last}


def committed(b):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": GROUP,
                     "enable.auto.commit": False})
    got = c.committed([ck.TopicPartition(TOPIC, q) for q in range(PARTS)], timeout=10)
    c.close()
    return {tp.partition: tp.offset for tp in got}


def run(io):
    b = Broker(io=io, shards=2, config={"offsets.topic.num.partitions": "2"})
    try:
        b.start()
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        fs = admin.create_topics([NewTopic(TOPIC, PARTS, 1, config={
            "cleanup.policy": "compact", "segment.ms": "300",
            "min.cleanable.dirty.ratio": "0.01", "delete.retention.ms": "60000"})])
        for f in fs.values():
            f.result(10)
        # __consumer_offsets rolls and is cleaned quickly too (AlterConfigs replaces the whole
        # set, so the coordinator's own settings are repeated). Broker-level log.roll.ms does not
        # reach partition settings today, hence the topic-level override.
        fs = admin.alter_configs([ConfigResource("topic", "__consumer_offsets", set_config={
            "cleanup.policy": "compact", "retention.ms": "-1", "retention.bytes": "-1",
            "segment.ms": "300", "min.cleanable.dirty.ratio": "0.01"})])
        for f in fs.values():
            f.result(10)
        null_key_refused(b)
        latest = {}
        produced = produce_updates(b, latest)
        roll_active(b, latest)
        deadline = time.monotonic() + 60
        while True:
            recs = read_all(b)
            if compacted_view_ok(recs, latest):
                break
            check(time.monotonic() < deadline,
                  "not compacted after 60 s: %d records for %d keys" % (len(recs), len(latest)))
            time.sleep(1)
        print("compacted: %d produced, %d read back for %d keys" % (produced, len(recs),
                                                                    len(latest)))
        check(len(recs) < produced / 10, "too many records left: %d" % len(recs))

        want = commit_many(b, 400)
        check(committed(b) == want, "committed before the restart")
        deadline = time.monotonic() + 60
        while "__consumer_offsets-" not in "".join(
                line for line in b.log_text().splitlines() if "compacted up to offset" in line):
            check(time.monotonic() < deadline, "__consumer_offsets never compacted")
            time.sleep(0.5)
            # Any commit appends to the offsets log; its active segment then rolls (log.roll.ms).
            want = commit_many(b, 1)
        time.sleep(0.5)
        check(b.stop() == 0, "clean stop")
        b.start()
        got = committed(b)
        check(got == want, "committed after the restart: %s, want %s" % (got, want))
        recs2 = read_all(b)
        check(recs2 == recs, "compacted topic differs after the restart")
        check(b.stop() == 0, "final stop")
        check("ERROR" not in b.log_text() and "AddressSanitizer" not in b.log_text(),
              "errors in the broker log")
        print("PASS compact (%s)" % io)
        return 0
    except Exception as e:  # noqa: BLE001
        print("FAIL compact (%s): %s\nlog tail:\n%s" % (io, e, b.log_text()[-6000:]))
        return 1
    finally:
        b.cleanup()


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring", choices=["uring", "epoll"])
    sys.exit(run(ap.parse_args().io))
