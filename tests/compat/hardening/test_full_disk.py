"""A full disk is a retriable storage error, and the broker recovers when space comes back.

The log dir is a 16 MiB tmpfs (mounted here: root only; the test is skipped with a message
where mount is refused). A filler file takes half of it; producing incompressible batches
until the disk is full gets KAFKA_STORAGE_ERROR (56) on the wire with an error message, and
librdkafka retries it: its record is delivered once the filler is deleted, and the partition
takes records again without a restart; an offset commit meanwhile answers
COORDINATOR_NOT_AVAILABLE. Then the broker is restarted on a full disk with a partition that
has to write its partition.metadata to open: it starts, shows the partition offline (Metadata)
and answers KAFKA_STORAGE_ERROR for it; once space is freed it comes back by itself. Last, a 300-partition CreateTopics on a nearly full disk: the partitions that cannot open are
offline and answer KAFKA_STORAGE_ERROR, and all come back once space is freed."""

import argparse
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

KAFKA_STORAGE_ERROR = 56
LEADER_NOT_AVAILABLE = 5
COORDINATOR_NOT_AVAILABLE = 15


def fill(path, limit=None):
    """Writes zeros into path until ENOSPC (or limit bytes). Returns bytes written."""
    n = 0
    chunk = bytes(64 << 10)
    with open(path, "wb", buffering=0) as f:
        while limit is None or n < limit:
            try:
                n += f.write(chunk if limit is None else chunk[:min(len(chunk), limit - n)])
            except OSError:
                break
    return n


def free_bytes(path):
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def part_error(c, topic, partition):
    _, topics = kw.metadata_v7(c, [topic])
    parts = topics[topic][1]
    return [p for p in parts if p[0] == partition][0]


def scenario(b, mnt):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("t", 1, 1)])["t"].result(30)
    filler = os.path.join(mnt, "filler")
    fill(filler, 8 << 20)
    c = kw.Conn(b)
    err, msg = 0, None
    for i in range(200):
        err, _, msg = kw.produce_v8(c, "t", 0, kw.record_batch([(b"k", os.urandom(200_000))]))
        if err != 0:
            break
    check(err == KAFKA_STORAGE_ERROR and msg, "full disk: error %d %r, want 56" % (err, msg))
    # An offset commit cannot be persisted either: COORDINATOR_NOT_AVAILABLE, the error Kafka's
    # coordinator maps a failed append to and every client retries (Java's consumer treats
    # KAFKA_STORAGE_ERROR in an OffsetCommit response as fatal).
    fill(os.path.join(mnt, "filler2"))
    err = kw.offset_commit_v2(c, "g", "t", 0, 1)
    check(err == COORDINATOR_NOT_AVAILABLE, "offset commit on a full disk: error %d" % err)
    os.unlink(os.path.join(mnt, "filler2"))
    # librdkafka retries it (retriable): a record produced while the disk is full is still
    # pending a while later, and is delivered once space is freed, without a restart.
    got = []
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all",
                     "retry.backoff.ms": 100, "message.timeout.ms": 60000})
    p.produce("t", value=os.urandom(200_000), partition=0, on_delivery=lambda e, m: got.append(e))
    p.poll(2)
    check(got == [], "librdkafka gave up on the full disk: %r" % got)
    os.unlink(filler)
    check(p.flush(30) == 0 and len(got) == 1 and got[0] is None,
          "librdkafka delivery after freeing space: %r" % got)
    err, base, _ = kw.produce_v8(c, "t", 0, kw.record_batch([(b"k", os.urandom(200_000))]))
    check(err == 0 and base >= 0, "produce after freeing space: error %d" % err)
    err = kw.offset_commit_v2(c, "g", "t", 0, 1)
    check(err == 0, "offset commit after freeing space: error %d" % err)
    check(kw.fetch_v4(c, "t", 0, 0) == 0, "fetch after freeing space")
    c.close()
    check(b.alive(), "broker alive")

    # Restart on a full disk; t-0 must write its partition.metadata to open.
    check(b.stop() == 0, "clean stop")
    os.unlink(os.path.join(mnt, "t-0", "partition.metadata"))
    fill(filler)
    restart_wait(b, kill=False)
    c = kw.Conn(b)
    _, perr, leader, _, _, off = part_error(c, "t", 0)
    check(perr == LEADER_NOT_AVAILABLE and leader == -1 and len(off) == 1,
          "t-0 on a full disk: error %d leader %d offline %r" % (perr, leader, off))
    err, _, _ = kw.produce_v8(c, "t", 0, kw.record_batch([(b"k", b"v")]))
    check(err == KAFKA_STORAGE_ERROR, "produce to the offline t-0: %d" % err)
    os.unlink(filler)
    deadline = time.monotonic() + 30
    while part_error(c, "t", 0)[1] != 0:
        check(time.monotonic() < deadline, "t-0 did not come back within 30 s of freeing space")
        time.sleep(0.2)
    err, base, _ = kw.produce_v8(c, "t", 0, kw.record_batch([(b"k", b"v")]))
    check(err == 0 and base > 0, "produce after t-0 came back: error %d base %d" % (err, base))

    # A large CreateTopics on a nearly full disk: the metadata record fits, most partitions
    # cannot write their files. It answers success (the topic exists, as in Kafka), but the
    # partitions that failed are offline in Metadata and answer KAFKA_STORAGE_ERROR, never a
    # silent timeout; all of them come back once space is freed.
    fill(filler)
    os.unlink(filler)
    fill(filler, max(0, free_bytes(mnt) - (256 << 10)))
    admin.create_topics([NewTopic("many", 300, 1)])["many"].result(30)
    deadline = time.monotonic() + 30
    while True:
        _, topics = kw.metadata_v7(c, ["many"])
        parts = topics["many"][1]
        offline = [p[0] for p in parts if p[1] == LEADER_NOT_AVAILABLE]
        if len(parts) == 300 and offline:
            break
        check(time.monotonic() < deadline, "no partition of many offline on a full disk")
        time.sleep(0.2)
    check(all(p[2] == -1 for p in parts if p[0] in offline), "offline partitions have a leader")
    err, _, _ = kw.produce_v8(c, "many", offline[0], kw.record_batch([(b"k", b"v")]),
                                timeout_ms=5000)
    check(err == KAFKA_STORAGE_ERROR, "produce to offline many-%d: %d" % (offline[0], err))
    print("many: %d of 300 partitions offline on the full disk" % len(offline))
    os.unlink(filler)
    deadline = time.monotonic() + 60
    while True:
        _, topics = kw.metadata_v7(c, ["many"])
        left = [p[0] for p in topics["many"][1] if p[1] != 0]
        if not left:
            break
        check(time.monotonic() < deadline,
              "%d partitions of many still offline: %r" % (len(left), left[:10]))
        time.sleep(0.5)
    err, base, _ = kw.produce_v8(c, "many", offline[0], kw.record_batch([(b"k", b"v")]))
    check(err == 0 and base == 0, "produce to many-%d after freeing space: %d" % (offline[0], err))
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    mnt = tempfile.mkdtemp(prefix="laminar-tmpfs-")
    m = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", mnt],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if m.returncode != 0:
        print("SKIP full disk (%s): cannot mount a tmpfs (needs root): %s" %
              (io, m.stdout.decode("utf-8", "replace").strip()))
        os.rmdir(mnt)
        return 0
    try:
        b = Broker(io=io, shards=2, data_dir=mnt,
                   config={"num.partitions": "1", "offsets.topic.num.partitions": "2"})
        return run_scenario(b, "full disk (%s)" % io, lambda: scenario(b, mnt))
    finally:
        subprocess.run(["umount", "-l", mnt])
        os.rmdir(mnt)


if __name__ == "__main__":
    sys.exit(main())
