"""acks=all answers only after the fsync that covers the append, and that fsync does not block
the shard. The broker runs with the test hook LAMINAR_TEST_FSYNC_GATE=<file>: while the file
exists, finished fsyncs are held back by the runtime (broker/shard.c). With the gate closed:
  - an acks=all record gets no delivery report and the partition's high watermark stays put
    (consumers never see data that is not durable);
  - acks=1 produce and metadata on the same broker (one shard: the same thread) still answer;
then the gate opens and the acks=all record is acknowledged at offset 0 and becomes visible.
A topic with write.caching=true answers acks=all from memory instead: with the gate closed its
record is acknowledged and visible at once, and it survives a kill -9 of the broker (the page
cache outlives the process) with its high watermark.

    /usr/bin/python3 test_durable_ack.py --io uring|epoll
"""
import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402


def create(b, name, config=None):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic(name, 1, 1, config=config or {})]).values():
        f.result(20)


def described(b, topic, name):
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    res = ck.admin.ConfigResource(ck.admin.ConfigResource.Type.TOPIC, topic)
    for f in a.describe_configs([res]).values():
        return f.result(20)[name].value


def high_watermark(b, topic):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused-assign-only"})
    try:
        return c.get_watermark_offsets(ck.TopicPartition(topic, 0), timeout=10)[1]
    finally:
        c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    gate = os.path.join(tempfile.mkdtemp(prefix="laminar-gate-"), "gate")
    b = Broker(io=io, shards=1, env={"LAMINAR_TEST_FSYNC_GATE": gate})
    try:
        b.start()
        create(b, "gated")
        create(b, "free")
        create(b, "cached", {"write.caching": "true"})
        check(described(b, "cached", "write.caching") == "true" and
              described(b, "gated", "write.caching") == "false", "write.caching not described")
        open(gate, "w").close()  # from here on, fsync completions are held back
        reports = []
        pa = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
                          "enable.idempotence": False, "message.timeout.ms": 30000})
        pa.produce("gated", value=b"durable-first", partition=0,
                   on_delivery=lambda err, msg: reports.append((err, msg.offset())))
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            pa.poll(0.1)
        check(not reports, "acks=all answered before its fsync completed: %r" % reports)
        check(high_watermark(b, "gated") == 0,
              "high watermark moved before the data was durable")
        # The same (only) shard keeps serving while the fsync is outstanding.
        p1 = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": 1, "linger.ms": 0,
                          "enable.idempotence": False})
        ok = []
        p1.produce("free", value=b"x", partition=0,
                   on_delivery=lambda err, msg: ok.append(err))
        check(p1.flush(10) == 0 and ok == [None], "acks=1 produce blocked behind an fsync")
        check(high_watermark(b, "free") == 1, "acks=1 record not visible")
        check(not reports, "acks=all answered while its fsync is still held")
        # (another connection: responses on pa's come in request order, behind "gated")
        pc = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all", "linger.ms": 0,
                          "enable.idempotence": False, "message.timeout.ms": 30000})
        cached = []
        pc.produce("cached", value=b"from-memory", partition=0,
                   on_delivery=lambda err, msg: cached.append((err, msg.offset())))
        deadline = time.monotonic() + 10.0
        while not cached and time.monotonic() < deadline:
            pc.poll(0.1)
        check(cached == [(None, 0)], "write.caching: acks=all not answered from memory: %r" %
              cached)
        check(high_watermark(b, "cached") == 1, "write.caching: record not visible")
        check(not reports, "acks=all answered while its fsync is still held")
        os.unlink(gate)
        deadline = time.monotonic() + 10.0
        while not reports and time.monotonic() < deadline:
            pa.poll(0.1)
        check(reports == [(None, 0)], "acks=all not acknowledged after the fsync: %r" % reports)
        check(high_watermark(b, "gated") == 1, "high watermark did not follow the fsync")
        pa.flush(10)
        pc.flush(10)
        b.kill9()
        b.restart()
        check(high_watermark(b, "cached") == 1, "write.caching: record lost to a process crash")
        c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused-assign-only",
                         "enable.auto.commit": False})
        c.assign([ck.TopicPartition("cached", 0, 0)])
        m = c.poll(10)
        c.close()
        check(m is not None and m.error() is None and m.value() == b"from-memory" and
              m.offset() == 0, "write.caching: record not read back after the crash")
        check(b.stop() == 0, "clean stop failed")
        print("acks=all held while its fsync was held; shard kept serving (%s)" % io)
    except Exception:
        sys.stderr.write(b.log_text()[-4000:])
        raise
    finally:
        if os.path.exists(gate):
            os.unlink(gate)
        b.cleanup()


if __name__ == "__main__":
    main()
