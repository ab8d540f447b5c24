"""confluent-kafka-python and kafka-python against laminar: produce with keys, values,
headers and timestamps, read everything back with assign-based consumers (no groups yet),
seek to offsets and timestamps (offsets_for_times), watermarks.

    /usr/bin/python3 test_python_clients.py --io uring|epoll
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402

N = 3000
PARTS = 4
TS0 = 1_700_000_000_000


def expected(i, client):
    return (("key-%d" % i).encode(), ("%s-value-%d-" % (client, i)).encode() * (1 + i % 5),
            [("idx", str(i).encode()), ("client", client.encode())], TS0 + i)


def run_confluent(b):
    import confluent_kafka as ck
    topic = "py-confluent"
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False,
                     "acks": "all", "compression.codec": "lz4", "linger.ms": 5})
    errors = []

    def dr(err, msg):
        if err is not None:
            errors.append(err)

    for i in range(N):
        k, v, h, ts = expected(i, "confluent")
        while True:
            try:
                p.produce(topic, value=v, key=k, headers=h, timestamp=ts, partition=i % PARTS,
                          on_delivery=dr)
                break
            except BufferError:
                p.poll(0.05)
        p.poll(0)
    check(p.flush(60) == 0, "confluent flush left messages")
    check(not errors, "confluent delivery errors %r" % errors[:3])

    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused-assign-only",
                     "enable.auto.commit": False, "fetch.wait.max.ms": 100})
    lo, hi = c.get_watermark_offsets(ck.TopicPartition(topic, 1), timeout=10)
    check((lo, hi) == (0, N // PARTS), "watermarks %r" % ((lo, hi),))
    c.assign([ck.TopicPartition(topic, q, ck.OFFSET_BEGINNING) for q in range(PARTS)])
    nxt = {q: q for q in range(PARTS)}
    got = 0
    deadline = time.monotonic() + 60
    while got < N and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is None or m.error():
            continue
        i = nxt[m.partition()]
        k, v, h, ts = expected(i, "confluent")
        check(m.offset() == i // PARTS, "offset %d vs %d" % (m.offset(), i // PARTS))
        check(m.key() == k and m.value() == v, "key/value at %d" % i)
        check(m.headers() == h, "headers %r" % (m.headers(),))
        check(m.timestamp() == (ck.TIMESTAMP_CREATE_TIME, ts), "ts %r" % (m.timestamp(),))
        nxt[m.partition()] += PARTS
        got += 1
    check(got == N, "confluent consumed %d of %d" % (got, N))
    # offsets_for_times: the record with timestamp TS0+401 is index 401 -> partition 1.
    r = c.offsets_for_times([ck.TopicPartition(topic, 1, TS0 + 401)], timeout=10)
    check(r[0].offset == 401 // PARTS, "offsets_for_times %r" % r)
    c.close()
    print("confluent-kafka ok (%d records)" % N)


def run_kafka_python(b):
    import kafka
    from kafka.structs import TopicPartition
    topic = "py-kafka"
    p = kafka.KafkaProducer(bootstrap_servers=b.bootstrap, acks=1, compression_type="gzip",
                            linger_ms=5)
    futs = []
    for i in range(N):
        k, v, h, ts = expected(i, "kafka")
        futs.append(p.send(topic, value=v, key=k, headers=h, timestamp_ms=ts,
                           partition=i % PARTS))
    p.flush(60)
    offs = [f.get(timeout=30).offset for f in futs]
    check(offs == [i // PARTS for i in range(N)], "kafka-python offsets")
    p.close()

    c = kafka.KafkaConsumer(bootstrap_servers=b.bootstrap, group_id=None,
                            enable_auto_commit=False, consumer_timeout_ms=5000)
    tps = [TopicPartition(topic, q) for q in range(PARTS)]
    c.assign(tps)
    c.seek_to_beginning()
    end = c.end_offsets(tps)
    check(all(end[tp] == N // PARTS for tp in tps), "end_offsets %r" % end)
    nxt = {q: q for q in range(PARTS)}
    got = 0
    for m in c:
        i = nxt[m.partition]
        k, v, h, ts = expected(i, "kafka")
        check(m.offset == i // PARTS and m.key == k and m.value == v, "record %d" % i)
        check(list(m.headers) == h and m.timestamp == ts, "headers/ts at %d" % i)
        nxt[m.partition] += PARTS
        got += 1
        if got == N:
            break
    check(got == N, "kafka-python consumed %d of %d" % (got, N))
    # Seek into the middle, and by timestamp.
    tp = TopicPartition(topic, 2)
    c.assign([tp])
    c.seek(tp, 100)
    m = next(c)
    check(m.offset == 100 and m.key == expected(100 * PARTS + 2, "kafka")[0], "seek 100")
    r = c.offsets_for_times({tp: TS0 + 2 + 4 * 300})
    check(r[tp].offset == 300 and r[tp].timestamp == TS0 + 2 + 4 * 300, "offsets_for_times %r" % r)
    c.close()
    print("kafka-python ok (%d records)" % N)


def wait_for(cond, what, timeout_s=10):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for " + what)


def run_reconcile(b):
    """Admin changes reach the shards: new partitions open, deleted topics' logs are removed,
    a topic created again under the same name starts empty."""
    import confluent_kafka as ck
    from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    topic = "recreate"
    for f in a.create_topics([NewTopic(topic, 6, 1)]).values():
        f.result(15)
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False})
    for i in range(60):
        p.produce(topic, value=b"old-%d" % i, partition=i % 6)
    check(p.flush(30) == 0, "flush old")
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused"})
    check(c.get_watermark_offsets(ck.TopicPartition(topic, 5), timeout=10) == (0, 10), "hw 10")
    dirs = lambda: [d for d in os.listdir(b.data_dir) if d.startswith(topic + "-")]  # noqa: E731
    check(len(dirs()) == 6, "partition directories %r" % dirs())
    for f in a.delete_topics([topic]).values():
        f.result(15)
    wait_for(lambda: not dirs(), "deleted topic's directories to go")
    for f in a.create_topics([NewTopic(topic, 3, 1)]).values():
        f.result(15)
    wait_for(lambda: len(dirs()) == 3, "recreated topic's directories")
    check(c.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=10) == (0, 0),
          "recreated topic not empty")
    for f in a.create_partitions([NewPartitions(topic, 5)]).values():
        f.result(15)
    wait_for(lambda: len(dirs()) == 5, "new partitions' directories")
    got = []
    p.produce(topic, value=b"new", partition=4, on_delivery=lambda e, m: got.append((e, m)))
    check(p.flush(30) == 0 and got and got[0][0] is None and got[0][1].offset() == 0,
          "produce to an added partition: %r" % got)
    c.close()
    print("admin reconciliation ok")


def clients(b):
    run_confluent(b)
    run_kafka_python(b)
    run_reconcile(b)
    check(b.alive(), "broker died")
    rc = b.stop()
    check(rc == 0, "exit status %s" % rc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": str(PARTS)})
    return run_scenario(b, "python clients (%s)" % io, lambda: clients(b))


if __name__ == "__main__":
    sys.exit(main())
