"""Internal topics are the coordinators' own (Kafka ReplicaManager: "Cannot append to internal
topic", INVALID_TOPIC_EXCEPTION): a client's Produce to __consumer_offsets or
__transaction_state is refused, and so is DeleteRecords on them. A poisonous group record that
is already on disk (a group whose leader is not a member, written straight into the
partition's segment while the broker is down) is skipped at load with one warning line: the
broker stays up past the session timeout the record names, the group can be joined, and the
rest of the partition (a committed offset) still loads."""

import argparse
import glob
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402

import confluent_kafka as ck  # noqa: E402

INVALID_TOPIC_EXCEPTION = 17
PARTITIONS = 4  # offsets.topic.num.partitions (small: fewer directories to look at)


def commit_good(b):
    """Group "good" commits offset 1 of t-0 (a valid record in __consumer_offsets)."""
    p = ck.Producer({"bootstrap.servers": b.bootstrap})
    p.produce("t", value=b"x", partition=0)
    check(p.flush(30) == 0, "produce to t")
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "good",
                     "enable.auto.commit": False})
    c.commit(offsets=[ck.TopicPartition("t", 0, 1)], asynchronous=False)
    c.close()


def committed(b, group):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": group,
                     "enable.auto.commit": False})
    try:
        return c.committed([ck.TopicPartition("t", 0)], timeout=30)[0].offset
    finally:
        c.close()


def append_to_segment(part_dir, records):
    """Appends a batch of records after the last batch of the partition's newest segment, with
    the next offset, as if an older broker had accepted it (storage's recovery scans batches
    past the checkpoint and keeps whole ones with a good CRC)."""
    logs = sorted(glob.glob(os.path.join(part_dir, "*.log")))
    check(logs, "no segment in %s" % part_dir)
    path = logs[-1]
    data = open(path, "rb").read()
    nxt = int(os.path.basename(path).split(".")[0])
    pos = 0
    while pos + 12 <= len(data):
        base, blen = struct.unpack_from(">qi", data, pos)
        if blen <= 0 or pos + 12 + blen > len(data):
            break
        nxt = base + struct.unpack_from(">i", data, pos + 23)[0] + 1
        pos += 12 + blen
    check(pos == len(data), "segment %s does not end on a batch" % path)
    with open(path, "ab") as f:
        f.write(kw.record_batch(records, base_offset=nxt, leader_epoch=0))
    return nxt


def scenario(b):
    commit_good(b)
    check(committed(b, "good") == 1, "good group offset before")
    part = kw.offsets_partition("evil", PARTITIONS)
    key, value = kw.group_metadata_record("evil", leader="ghost", members=["m1"],
                                          session_ms=1000)
    batch = kw.record_batch([(key, value)])
    c = kw.Conn(b)
    err, base, msg = kw.produce_v8(c, "__consumer_offsets", part, batch)
    check(err == INVALID_TOPIC_EXCEPTION and base == -1,
          "Produce to __consumer_offsets: error %d base %d" % (err, base))
    check(msg == "Cannot append to internal topic __consumer_offsets", "message %r" % msg)
    # Refused by name, before the topic is looked up (it does not exist here).
    err, _, msg = kw.produce_v8(c, "__transaction_state", 0, batch)
    check(err == INVALID_TOPIC_EXCEPTION, "Produce to __transaction_state: error %d" % err)
    # acks=1 too; the connection stays usable afterwards.
    err, _ = kw.produce_v7(c, "__consumer_offsets", part, batch, acks=1)
    check(err == INVALID_TOPIC_EXCEPTION, "Produce v7 acks=1: error %d" % err)
    # DeleteRecords would drop the groups' offsets with the records (Kafka refuses it too).
    err, low = kw.delete_records_v1(c, "__consumer_offsets", part, -1)
    check(err == INVALID_TOPIC_EXCEPTION, "DeleteRecords on __consumer_offsets: error %d" % err)
    err, base = kw.produce_v7(c, "t", 0, kw.record_batch([(b"k", b"v")]))
    check(err == 0 and base == 1, "ordinary produce after the refusal: %d %d" % (err, base))
    c.close()

    # The same record, on disk already: stop, append it to the segment, start again.
    check(b.stop() == 0, "clean stop")
    part_dir = os.path.join(b.data_dir, "__consumer_offsets-%d" % part)
    append_to_segment(part_dir, [(key, value)])
    restart_wait(b, kill=False)
    log = b.log_text()
    check("__consumer_offsets-%d: loaded" % part in log and "skipped 1 bad records" in log,
          "no warning about the skipped record:\n%s" % log[-3000:])
    # Past the session timeout the record named (1 s; the coordinator ticks every 200 ms):
    # before the fix the expiry of "m1" left the ghost leader and the next rebalance aborted.
    time.sleep(3)
    check(b.alive(), "broker died after loading the poisonous record")
    cons = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "evil",
                        "session.timeout.ms": 6000, "auto.offset.reset": "earliest"})
    cons.subscribe(["t"])
    got = None
    deadline = time.monotonic() + 60
    while got is None and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is not None and m.error() is None:
            got = m
    cons.close()
    check(got is not None, "a consumer of group evil got no record")
    check(b.alive(), "broker died after the evil group rebalanced")
    check(committed(b, "good") == 1, "good group offset after the restart")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1",
                                        "offsets.topic.num.partitions": str(PARTITIONS),
                                        "group.initial.rebalance.delay.ms": "0"})
    return run_scenario(b, "internal topics (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
