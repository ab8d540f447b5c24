"""Duplicate suppression of idempotent batches, with hand-built Produce v9 requests (kraw.py):
a batch resent with the same producer id, epoch and sequence (as if its response was lost) is
answered with the original offset and appended once; a sequence gap is refused with
OUT_OF_ORDER_SEQUENCE_NUMBER, an old epoch with INVALID_PRODUCER_EPOCH; after a kill -9 and
after a clean restart the duplicate is still recognised (log replay, then snapshot).
Also: InitProducerId ids are never reused across restarts; DescribeProducers shows the producer
(confluent-kafka has no DescribeProducers, so that part uses the Java suite).

    /usr/bin/python3 test_idempotence.py --io uring|epoll
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
sys.path.insert(0, os.path.dirname(__file__))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait  # noqa: E402
import kraw  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "idem"
OUT_OF_ORDER_SEQUENCE_NUMBER = 45
INVALID_PRODUCER_EPOCH = 47


def high_watermark(b, partition=0):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "hw-probe"})
    try:
        return c.get_watermark_offsets(ck.TopicPartition(TOPIC, partition), timeout=10)[1]
    finally:
        c.close()


def read_values(b):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "reader",
                     "enable.auto.commit": False})
    c.assign([ck.TopicPartition(TOPIC, 0, ck.OFFSET_BEGINNING)])
    hw = high_watermark(b)
    out = []
    deadline = time.monotonic() + 30
    while len(out) < hw and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            out.append((m.offset(), m.value()))
    c.close()
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2) as b:
        try:
            scenario(b)
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-40:]))
            raise
    with Broker(io=args.io, shards=1, config={"producer.id.expiration.ms": 600}) as b:
        try:
            expiry(b)
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-40:]))
            raise
    with Broker(io=args.io, shards=1,
                config={"laminar.producer.checkpoint.bytes": CHECKPOINT_BYTES}) as b:
        try:
            checkpoint(b)
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-40:]))
            raise
    print("idempotence (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))


CHECKPOINT_BYTES = 4096
CKPT_TOPIC = "idem-ckpt"


def checkpoint(b):
    """The background producer-state checkpoint (laminar.producer.checkpoint.bytes): once the
    log grew past it the checkpoint file appears; after a kill -9 the state is loaded from it
    and only the log after it is replayed, and duplicates of batches on both sides of it are
    still recognised with their offsets. A checkpoint whose prefix the log no longer matches
    (rewritten epoch) is not used: the whole log is replayed."""
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(CKPT_TOPIC, num_partitions=1, replication_factor=1)])[
        CKPT_TOPIC].result(30)
    conn = kraw.Conn(b.host, b.port)
    err, pid, _ = conn.init_producer_id()
    check(err == 0, "InitProducerId")
    batches, seq, off = [], 0, 0
    pad = b"p" * 200
    for i in range(40):  # about 10 KiB of batches: past the checkpoint interval twice
        bt = kraw.idempotent_batch(pid, 0, seq, [b"r%d" % i + pad, b"s%d" % i + pad])
        check(conn.produce(CKPT_TOPIC, 0, bt) == (0, off), "append %d" % i)
        batches.append((bt, off))
        seq, off = seq + 2, off + 2
    path = os.path.join(b.data_dir, CKPT_TOPIC + "-0", "producer.checkpoint")
    deadline = time.monotonic() + 20
    while not os.path.exists(path):
        check(time.monotonic() < deadline, "no producer checkpoint written")
        time.sleep(0.1)
    # two more batches the checkpoint may not hold
    for i in range(40, 42):
        bt = kraw.idempotent_batch(pid, 0, seq, [b"r%d" % i])
        check(conn.produce(CKPT_TOPIC, 0, bt) == (0, off), "append %d" % i)
        batches.append((bt, off))
        seq, off = seq + 1, off + 1
    conn.close()

    restart_wait(b, kill=True)
    conn = kraw.Conn(b.host, b.port)
    # the five newest batches are remembered: some come from the checkpoint, some from the log
    for bt, o in batches[-5:]:
        check(conn.produce(CKPT_TOPIC, 0, bt) == (0, o), "duplicate at %d after kill -9" % o)
    loads = [ln for ln in b.log_text().splitlines()
             if CKPT_TOPIC + "-0: producer state loaded" in ln]
    check(loads, "no producer state load logged")
    replayed = int(loads[-1].rsplit("replayed from ", 1)[1].rstrip(")"))
    check(0 < replayed <= off, "state not taken from the checkpoint: %r" % loads[-1])
    nxt = kraw.idempotent_batch(pid, 0, seq, [b"next"])
    check(conn.produce(CKPT_TOPIC, 0, nxt) == (0, off), "next after kill -9")
    gap = kraw.idempotent_batch(pid, 0, seq + 5, [b"gap"])
    err, _ = conn.produce(CKPT_TOPIC, 0, gap)
    check(err == OUT_OF_ORDER_SEQUENCE_NUMBER, "gap after restart gave %d" % err)
    conn.close()

    # A checkpoint that claims another epoch for the batch before its offset is not used.
    b.kill9()
    with open(path, "r+b") as f:
        head = bytearray(f.read(38))
        head[30:34] = (12345).to_bytes(4, "big")
        crc = kraw.crc32c(bytes(head[:34]))
        head[34:38] = crc.to_bytes(4, "big")
        f.seek(0)
        f.write(head)
    n = b.log_text().count(" started:")
    b.restart()
    deadline = time.monotonic() + 60
    while b.log_text().count(" started:") <= n:
        check(b.alive() and time.monotonic() < deadline, "broker did not restart")
        time.sleep(0.05)
    conn = kraw.Conn(b.host, b.port)
    check(conn.produce(CKPT_TOPIC, 0, nxt) == (0, off), "duplicate after a foreign checkpoint")
    loads = [ln for ln in b.log_text().splitlines()
             if CKPT_TOPIC + "-0: producer state loaded" in ln]
    check(loads[-1].endswith("replayed from 0)"), "foreign checkpoint used: %r" % loads[-1])
    conn.close()
    check(b.stop() == 0, "broker exit status")
    log = b.log_text()
    check("ERROR" not in log and "AddressSanitizer" not in log, "errors in the log")


def expiry(b):
    """producer.id.expiration.ms: an idle producer is forgotten; its next batch is then taken
    with any sequence (Kafka since KIP-360), never refused as out of order."""
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[TOPIC] \
        .result(30)
    conn = kraw.Conn(b.host, b.port)
    err, pid, _ = conn.init_producer_id()
    check(err == 0, "InitProducerId")
    check(conn.produce(TOPIC, 0, kraw.idempotent_batch(pid, 0, 0, [b"x"])) == (0, 0), "x")
    err, _ = conn.produce(TOPIC, 0, kraw.idempotent_batch(pid, 0, 20, [b"early"]))
    check(err == OUT_OF_ORDER_SEQUENCE_NUMBER, "gap before expiry gave %d" % err)
    time.sleep(2.0)
    check(conn.produce(TOPIC, 0, kraw.idempotent_batch(pid, 0, 20, [b"late"])) == (0, 1),
          "after expiry any sequence is accepted")
    conn.close()


def scenario(b):
    if True:
        admin = AdminClient({"bootstrap.servers": b.bootstrap})
        fs = admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])
        fs[TOPIC].result(30)
        conn = kraw.Conn(b.host, b.port)
        err, pid, epoch = conn.init_producer_id()
        check(err == 0 and pid >= 0 and epoch == 0, "InitProducerId %r" % ((err, pid, epoch),))
        err2, pid2, _ = conn.init_producer_id()
        check(err2 == 0 and pid2 != pid, "second producer id %r" % pid2)

        b0 = kraw.idempotent_batch(pid, 0, 0, [b"a0", b"a1", b"a2"])
        check(conn.produce(TOPIC, 0, b0) == (0, 0), "first append")
        # The response was "lost": the client sends the very same bytes again.
        check(conn.produce(TOPIC, 0, b0) == (0, 0), "duplicate answered with its offset")
        check(high_watermark(b) == 3, "duplicate appended: hw %d" % high_watermark(b))
        b1 = kraw.idempotent_batch(pid, 0, 3, [b"b3", b"b4"])
        check(conn.produce(TOPIC, 0, b1) == (0, 3), "next sequence")
        check(conn.produce(TOPIC, 0, b0) == (0, 0), "older duplicate (window of five)")
        gap = kraw.idempotent_batch(pid, 0, 9, [b"gap"])
        err, _ = conn.produce(TOPIC, 0, gap)
        check(err == OUT_OF_ORDER_SEQUENCE_NUMBER, "gap gave %d" % err)
        # A bumped epoch restarts at sequence 0 (KIP-360); the old epoch is then fenced.
        e1 = kraw.idempotent_batch(pid, 1, 0, [b"c5"])
        check(conn.produce(TOPIC, 0, e1) == (0, 5), "epoch bump")
        old = kraw.idempotent_batch(pid, 0, 5, [b"old"])
        err, _ = conn.produce(TOPIC, 0, old)
        check(err == INVALID_PRODUCER_EPOCH, "old epoch gave %d" % err)
        check(high_watermark(b) == 6, "hw after refusals %d" % high_watermark(b))
        conn.close()

        # kill -9: no snapshot was written; the state is rebuilt from the log's batch headers.
        restart_wait(b, kill=True)
        conn = kraw.Conn(b.host, b.port)
        check(conn.produce(TOPIC, 0, e1) == (0, 5), "duplicate after kill -9")
        err, _ = conn.produce(TOPIC, 0, b1)
        check(err == INVALID_PRODUCER_EPOCH, "old epoch after kill -9 gave %d" % err)
        e1b = kraw.idempotent_batch(pid, 1, 1, [b"c6", b"c7"])
        check(conn.produce(TOPIC, 0, e1b) == (0, 6), "next after kill -9")
        err, pid3, _ = conn.init_producer_id()
        check(err == 0 and pid3 > pid2, "producer id reused after restart: %d" % pid3)
        conn.close()

        # Clean stop: the snapshot is written; the duplicate is recognised from it.
        restart_wait(b, kill=False)
        conn = kraw.Conn(b.host, b.port)
        check(conn.produce(TOPIC, 0, e1b) == (0, 6), "duplicate after clean restart")
        loads = [ln for ln in b.log_text().splitlines() if "idem-0: producer state loaded" in ln]
        check(loads and loads[-1].endswith("replayed from 8)"),
              "state not taken from the snapshot: %r" % loads[-1:])
        gap = kraw.idempotent_batch(pid, 1, 7, [b"gap"])
        err, _ = conn.produce(TOPIC, 0, gap)
        check(err == OUT_OF_ORDER_SEQUENCE_NUMBER, "gap after restart gave %d" % err)
        conn.close()

        vals = read_values(b)
        check([v for _, v in vals] == [b"a0", b"a1", b"a2", b"b3", b"b4", b"c5", b"c6", b"c7"],
              "log content %r" % vals)
        check(b.stop() == 0, "broker exit status")
        log = b.log_text()
        check("ERROR" not in log and "AddressSanitizer" not in log, "errors in the log")


if __name__ == "__main__":
    main()
