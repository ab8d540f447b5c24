"""Transactions on the partition side, with hand-built frames (kraw.py for InitProducerId and
Produce v9; WriteTxnMarkers v0, Fetch v4 and ListOffsets v2 built here):

- transactional batches (attribute 0x10) of two producers and a plain batch: the last stable
  offset (ListOffsets isolation_level 1, Fetch last_stable_offset) stops at the first open
  transaction, read_committed Fetch returns nothing past it;
- WriteTxnMarkers abort for one producer and commit for the other: the LSO moves, a
  read_committed Fetch returns the aborted transaction (producer id, first offset), an older
  coordinator epoch is TRANSACTION_COORDINATOR_FENCED, an older producer epoch
  INVALID_PRODUCER_EPOCH, an unknown topic UNKNOWN_TOPIC_OR_PARTITION;
- a librdkafka consumer (isolation.level read_committed) sees only committed and plain records,
  one with read_uncommitted sees all;
- kill -9 with a transaction open, and again after its abort: the LSO and the aborted list
  survive recovery (.txnindex and the log).

    /usr/bin/python3 test_txnpart.py --io uring|epoll
"""
import argparse
import os
import struct
import sys
import time

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
sys.path.insert(0, os.path.join(HERE, "..", "groups"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, restart_wait  # noqa: E402
import kraw  # noqa: E402

import confluent_kafka as ck  # noqa: E402
from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

TOPIC = "txn"
UNKNOWN_TOPIC_OR_PARTITION = 3
INVALID_PRODUCER_EPOCH = 47
INVALID_TXN_STATE = 48
TRANSACTION_COORDINATOR_FENCED = 52
TRANSACTIONAL_ID_AUTHORIZATION_FAILED = 53
# The batches here are written without a coordinator (WriteTxnMarkers by hand): they carry this
# transactional id, and the broker runs with transaction.partition.verification.enable=false.
TID = "txnpart"


def txn_batch(producer_id, epoch, base_seq, values, transactional=True):
    """Record batch v2 like kraw.idempotent_batch, with the transactional attribute."""
    recs = b"".join(kraw.record(i, v) for i, v in enumerate(values))
    ts = int(time.time() * 1000)
    attrs = 0x10 if transactional else 0
    after_crc = struct.pack(">hiqqqhii", attrs, len(values) - 1, ts, ts, producer_id, epoch,
                            base_seq, len(values)) + recs
    body = struct.pack(">ibI", -1, 2, kraw.crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def txn_produce(conn, batch):
    """Produce v9 of batch to TOPIC-0 with the transactional id TID: (error, base offset)."""
    return conn.produce(TOPIC, 0, batch, transactional_id=TID)


def s16str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class R:
    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)
        self.p += struct.calcsize(fmt)
        return v if len(v) > 1 else v[0]

    def str(self):
        n = self.take(">h")
        s = self.b[self.p:self.p + n].decode()
        self.p += n
        return s


def write_markers(conn, markers):
    """WriteTxnMarkers v0: markers = [(pid, epoch, commit, coordinator_epoch, topic, [parts])].
    Returns {(pid, topic, partition): error}."""
    body = struct.pack(">i", len(markers))
    for pid, epoch, commit, cepoch, topic, parts in markers:
        body += struct.pack(">qhb", pid, epoch, 1 if commit else 0)
        body += struct.pack(">i", 1) + s16str(topic)
        body += struct.pack(">i", len(parts)) + b"".join(struct.pack(">i", p) for p in parts)
        body += struct.pack(">i", cepoch)
    r = R(conn.call(27, 0, body, False))
    out = {}
    for _ in range(r.take(">i")):
        pid = r.take(">q")
        for _ in range(r.take(">i")):
            name = r.str()
            for _ in range(r.take(">i")):
                idx, err = r.take(">ih")
                out[(pid, name, idx)] = err
    return out


def marker(conn, pid, epoch, commit, cepoch, topic=TOPIC, partition=0):
    return write_markers(conn, [(pid, epoch, commit, cepoch, topic, [partition])])[
        (pid, topic, partition)]


def fetch(conn, offset, isolation, topic=TOPIC):
    """Fetch v4 of partition 0. Returns (error, hw, lso, aborted [(pid, first)] or None,
    [(offset, value, is_control)] of the records returned)."""
    body = struct.pack(">iiiib", -1, 0, 1, 1 << 20, isolation)
    body += struct.pack(">i", 1) + s16str(topic)
    body += struct.pack(">i", 1) + struct.pack(">iqi", 0, offset, 1 << 20)
    r = R(conn.call(1, 4, body, False))
    r.take(">i")
    check(r.take(">i") == 1, "one topic")
    r.str()
    check(r.take(">i") == 1, "one partition")
    _idx, err, hw, lso = r.take(">ihqq")
    n = r.take(">i")
    aborted = None if n < 0 else [r.take(">qq") for _ in range(n)]
    size = r.take(">i")
    recs = r.b[r.p:r.p + max(size, 0)]
    return err, hw, lso, aborted, parse_records(recs)


def parse_records(buf):
    out, pos = [], 0
    while pos + 61 <= len(buf):
        base, blen = struct.unpack_from(">qi", buf, pos)
        attrs = struct.unpack_from(">h", buf, pos + 21)[0]
        count = struct.unpack_from(">i", buf, pos + 57)[0]
        p = pos + 61
        for _ in range(count):
            ln, p = uvarint_z(buf, p)
            end = p + ln
            p += 1
            _tsd, p = uvarint_z(buf, p)
            od, p = uvarint_z(buf, p)
            kl, p = uvarint_z(buf, p)
            p += max(kl, 0)
            vl, p = uvarint_z(buf, p)
            val = buf[p:p + vl] if vl >= 0 else None
            out.append((base + od, val, bool(attrs & 0x20)))
            p = end
        pos += 12 + blen
    return out


def uvarint_z(b, p):
    shift = v = 0
    while True:
        x = b[p]
        p += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return (v >> 1) ^ -(v & 1), p


def list_latest(conn, isolation, topic=TOPIC):
    """ListOffsets v2 latest of partition 0 -> (error, offset)."""
    body = struct.pack(">ib", -1, isolation) + struct.pack(">i", 1) + s16str(topic)
    body += struct.pack(">i", 1) + struct.pack(">iq", 0, -1)
    r = R(conn.call(2, 2, body, False))
    r.take(">i")
    r.take(">i")
    r.str()
    r.take(">i")
    _idx, err, _ts, off = r.take(">ihqq")
    return err, off


def describe_producers(conn, topic=TOPIC):
    """DescribeProducers v0 (flexible) of partition 0 -> {pid: (epoch, coordinator epoch,
    current transaction start offset)}."""
    t = topic.encode()
    body = kraw.uvarint(2) + kraw.uvarint(len(t) + 1) + t + kraw.uvarint(2)
    body += struct.pack(">i", 0) + b"\x00" + b"\x00"
    r = conn.call(61, 0, body, True)
    pos = 4

    def uv():
        nonlocal pos
        shift = v = 0
        while True:
            x = r[pos]
            pos += 1
            v |= (x & 0x7F) << shift
            shift += 7
            if not x & 0x80:
                return v
    out = {}
    for _ in range(uv() - 1):
        n = uv() - 1
        pos += n
        for _ in range(uv() - 1):
            _idx, err = struct.unpack_from(">ih", r, pos)
            pos += 6
            check(err == 0, "DescribeProducers error %d" % err)
            n = uv() - 1
            pos += max(n, 0)
            for _ in range(uv() - 1):
                pid, epoch, _seq, _ts, cep, start = struct.unpack_from(">qiiqiq", r, pos)
                pos += 36 + 1
                out[pid] = (epoch, cep, start)
            pos += 1
        pos += 1
    return out


def java_hash(s):
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h & 0x80000000 else h


def offsets_partition(group, n=50):
    h = java_hash(group)
    return 0 if h == -(1 << 31) else abs(h) % n


def txn_offset_commit(conn, group, pid, epoch, offsets):
    """TxnOffsetCommit v0 of {partition: offset} of TOPIC -> {partition: error}."""
    body = s16str("txid") + s16str(group) + struct.pack(">qh", pid, epoch)
    body += struct.pack(">i", 1) + s16str(TOPIC) + struct.pack(">i", len(offsets))
    for p, off in sorted(offsets.items()):
        body += struct.pack(">iqh", p, off, -1)
    r = R(conn.call(28, 0, body, False))
    r.take(">i")
    out = {}
    for _ in range(r.take(">i")):
        r.str()
        for _ in range(r.take(">i")):
            idx, err = r.take(">ih")
            out[idx] = err
    return out


def offset_fetch(conn, group, partitions, require_stable):
    """OffsetFetch v7 (flexible) of TOPIC -> {partition: (offset, error)}."""
    def cstr(x):
        x = x.encode()
        return kraw.uvarint(len(x) + 1) + x
    body = cstr(group) + kraw.uvarint(2) + cstr(TOPIC) + kraw.uvarint(len(partitions) + 1)
    body += b"".join(struct.pack(">i", p) for p in partitions) + b"\x00"
    body += struct.pack(">b", 1 if require_stable else 0) + b"\x00"
    r = conn.call(9, 7, body, True)
    pos = 4

    def uv():
        nonlocal pos
        shift = v = 0
        while True:
            x = r[pos]
            pos += 1
            v |= (x & 0x7F) << shift
            shift += 7
            if not x & 0x80:
                return v
    out = {}
    for _ in range(uv() - 1):
        n = uv() - 1  # the topic name
        pos += n
        for _ in range(uv() - 1):
            idx, off, _le = struct.unpack_from(">iqi", r, pos)
            pos += 16
            n = uv() - 1
            pos += max(n, 0)
            err = struct.unpack_from(">h", r, pos)[0]
            pos += 2
            pos += 1  # tags
            out[idx] = (off, err)
        pos += 1
    return out


def consume(b, isolation, want_min, timeout=30):
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "txn-" + isolation,
                     "enable.auto.commit": False, "isolation.level": isolation})
    c.assign([ck.TopicPartition(TOPIC, 0, ck.OFFSET_BEGINNING)])
    out, deadline = [], time.monotonic() + timeout
    idle_until = None
    while time.monotonic() < deadline:
        m = c.poll(0.3)
        if m is not None and m.error() is None:
            out.append(m.value())
            continue
        if len(out) >= want_min:
            idle_until = idle_until or time.monotonic() + 1.5
            if time.monotonic() > idle_until:
                break
    c.close()
    return out


def scenario(b):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic(TOPIC, num_partitions=1, replication_factor=1)])[
        TOPIC].result(30)
    conn = kraw.Conn(b.host, b.port)
    err, pa, _ = conn.init_producer_id()
    check(err == 0, "InitProducerId a")
    err, pb, _ = conn.init_producer_id()
    check(err == 0, "InitProducerId b")

    # transactional records without the transactional id they belong to are refused (Kafka:
    # TRANSACTIONAL_ID_AUTHORIZATION_FAILED) and not written
    err, _ = conn.produce(TOPIC, 0, txn_batch(pa, 0, 0, [b"no-id"]))
    check(err == TRANSACTIONAL_ID_AUTHORIZATION_FAILED, "transactional batch without id: %d" % err)
    check(txn_produce(conn, txn_batch(pa, 0, 0, [b"a0", b"a1"])) == (0, 0), "a 0-1")
    check(conn.produce(TOPIC, 0, txn_batch(-1, -1, -1, [b"plain2"], False)) == (0, 2), "plain 2")
    check(txn_produce(conn, txn_batch(pb, 0, 0, [b"b3", b"b4"])) == (0, 3), "b 3-4")
    # a plain batch of a producer inside its transaction (Kafka: INVALID_TXN_STATE)
    err, _ = conn.produce(TOPIC, 0, txn_batch(pa, 0, 2, [b"x"], False))
    check(err == INVALID_TXN_STATE, "plain batch inside a transaction gave %d" % err)

    check(list_latest(conn, 1) == (0, 0), "LSO at the first open transaction")
    check(list_latest(conn, 0) == (0, 5), "HW")
    err, hw, lso, aborted, recs = fetch(conn, 0, 1)
    check(err == 0 and hw == 5 and lso == 0, "fetch committed: %r" % ((err, hw, lso),))
    check(recs == [] and aborted in (None, []), "nothing stable yet: %r %r" % (recs, aborted))
    err, hw, lso, aborted, recs = fetch(conn, 0, 0)
    check(err == 0 and lso == 0 and aborted is None and len(recs) == 5,
          "read_uncommitted sees all: %r" % ((err, lso, aborted, recs),))

    # abort a: marker at 5; b still open from 3
    check(marker(conn, pa, 0, False, 5) == 0, "abort marker for a")
    check(list_latest(conn, 1) == (0, 3), "LSO at b's first offset")
    err, hw, lso, aborted, recs = fetch(conn, 0, 1)
    check(err == 0 and hw == 6 and lso == 3, "after abort: %r" % ((err, hw, lso),))
    check(aborted == [(pa, 0)], "aborted list %r" % aborted)
    check([o for o, _, _ in recs] == [0, 1, 2], "read_committed stops at the LSO: %r" % recs)
    # fencing: an older coordinator epoch, then an older producer epoch
    check(marker(conn, pa, 0, True, 4) == TRANSACTION_COORDINATOR_FENCED, "old coordinator")
    check(marker(conn, pa, 1, False, 5) == 0, "abort at a bumped epoch")
    check(marker(conn, pa, 0, False, 5) == INVALID_PRODUCER_EPOCH, "old producer epoch")
    err, _ = txn_produce(conn, txn_batch(pa, 0, 2, [b"zombie"]))
    check(err == INVALID_PRODUCER_EPOCH, "fenced producer's batch gave %d" % err)
    check(marker(conn, pb, 0, True, 5, topic="no-such-topic") == UNKNOWN_TOPIC_OR_PARTITION,
          "unknown topic")
    got = describe_producers(conn)
    check(got.get(pb) == (0, -1, 3) and got.get(pa) == (1, 5, -1),
          "DescribeProducers: %r" % got)
    # commit b: marker at 7 (6 is a's second abort)
    check(marker(conn, pb, 0, True, 5) == 0, "commit marker for b")
    check(list_latest(conn, 1) == (0, 8), "LSO = HW once nothing is open")
    err, hw, lso, aborted, recs = fetch(conn, 0, 1)
    check(err == 0 and hw == 8 and lso == 8, "after commit: %r" % ((err, hw, lso),))
    # the abort at the bumped epoch had no data: Kafka indexes it as a transaction at its marker
    check(aborted == [(pa, 0), (pa, 6)], "aborted list after commit %r" % aborted)
    err, hw, lso, aborted, recs = fetch(conn, 6, 1)
    check(aborted == [(pa, 6)], "a fetch from 6: %r" % aborted)
    err, hw, lso, aborted, recs = fetch(conn, 7, 1)
    check(aborted in (None, []), "nothing aborted from 7 on: %r" % aborted)

    got = consume(b, "read_committed", 3)
    check(sorted(got) == [b"b3", b"b4", b"plain2"], "read_committed consumer saw %r" % got)
    got = consume(b, "read_uncommitted", 5)
    check(sorted(got) == [b"a0", b"a1", b"b3", b"b4", b"plain2"],
          "read_uncommitted consumer saw %r" % got)

    # kill -9 with a transaction open (c at 8)
    err, pc, _ = conn.init_producer_id()
    check(err == 0, "InitProducerId c")
    check(txn_produce(conn, txn_batch(pc, 0, 0, [b"c8"])) == (0, 8), "c 8")
    check(conn.produce(TOPIC, 0, txn_batch(-1, -1, -1, [b"plain9"], False)) == (0, 9), "plain 9")
    conn.close()
    restart_wait(b, kill=True)
    conn = kraw.Conn(b.host, b.port)
    check(list_latest(conn, 1) == (0, 8), "LSO after kill -9: %r" % (list_latest(conn, 1),))
    err, hw, lso, aborted, recs = fetch(conn, 0, 1)
    check(lso == 8 and aborted == [(pa, 0), (pa, 6)], "after kill -9: %r" % ((lso, aborted),))
    # the producer state knows c's transaction is open: a plain batch of c is refused
    err, _ = conn.produce(TOPIC, 0, txn_batch(pc, 0, 1, [b"x"], False))
    check(err == INVALID_TXN_STATE, "c's open transaction forgotten: %d" % err)
    check(marker(conn, pc, 0, False, 5) == 0, "abort c")
    conn.close()
    restart_wait(b, kill=True)
    conn = kraw.Conn(b.host, b.port)
    check(list_latest(conn, 1) == (0, 11), "LSO after the abort and kill -9")
    err, hw, lso, aborted, recs = fetch(conn, 0, 1)
    check(sorted(aborted or []) == sorted([(pa, 0), (pa, 6), (pc, 8)]), "aborted after kill -9: %r"
          % aborted)
    check(os.path.getsize(os.path.join(b.data_dir, TOPIC + "-0",
                                       "%020d.txnindex" % 0)) == 34 * 3, ".txnindex entries")
    conn.close()
    got = consume(b, "read_committed", 4)
    check(sorted(got) == [b"b3", b"b4", b"plain2", b"plain9"], "after restarts: %r" % got)
    group_offsets(b)
    check(b.stop() == 0, "broker exit status")
    log = b.log_text()
    check("ERROR" not in log and "AddressSanitizer" not in log, "errors in the log")


UNSTABLE_OFFSET_COMMIT = 88


def group_offsets(b):
    """TxnOffsetCommit writes pending offsets; OffsetFetch with require_stable answers
    UNSTABLE_OFFSET_COMMIT, without it the old offset; a commit marker on the group's
    __consumer_offsets partition makes them visible, an abort drops them; both survive a
    kill -9 (the group load replays transactional batches and markers)."""
    group = "txg"
    part = offsets_partition(group)
    conn = kraw.Conn(b.host, b.port)
    err, pid, _ = conn.init_producer_id()
    check(err == 0, "InitProducerId")
    check(txn_offset_commit(conn, group, pid, 0, {0: 5}) == {0: 0}, "TxnOffsetCommit")
    got = offset_fetch(conn, group, [0], True)
    check(got == {0: (-1, UNSTABLE_OFFSET_COMMIT)}, "require_stable while pending: %r" % got)
    got = offset_fetch(conn, group, [0], False)
    check(got == {0: (-1, 0)}, "pending offset visible: %r" % got)
    check(marker(conn, pid, 0, True, 1, topic="__consumer_offsets", partition=part) == 0,
          "commit marker on __consumer_offsets-%d" % part)
    got = offset_fetch(conn, group, [0], True)
    check(got == {0: (5, 0)}, "committed offset after the marker: %r" % got)
    # an aborted one leaves 5; one left open is pending across a kill -9
    err, pid2, _ = conn.init_producer_id()
    check(txn_offset_commit(conn, group, pid2, 0, {0: 9}) == {0: 0}, "TxnOffsetCommit 2")
    check(marker(conn, pid2, 0, False, 1, topic="__consumer_offsets", partition=part) == 0,
          "abort marker")
    check(offset_fetch(conn, group, [0], True) == {0: (5, 0)}, "abort dropped the offset")
    err, pid3, _ = conn.init_producer_id()
    check(txn_offset_commit(conn, group, pid3, 0, {0: 12}) == {0: 0}, "TxnOffsetCommit 3")
    conn.close()
    restart_wait(b, kill=True)
    conn = kraw.Conn(b.host, b.port)
    deadline = time.monotonic() + 20
    while True:
        got = offset_fetch(conn, group, [0], True)
        if got[0][1] != 14 or time.monotonic() > deadline:  # COORDINATOR_LOAD_IN_PROGRESS
            break
        time.sleep(0.2)
    check(got == {0: (-1, UNSTABLE_OFFSET_COMMIT)}, "pending after kill -9: %r" % got)
    check(offset_fetch(conn, group, [0], False) == {0: (5, 0)}, "committed after kill -9")
    check(marker(conn, pid3, 0, True, 1, topic="__consumer_offsets", partition=part) == 0,
          "commit marker 3")
    check(offset_fetch(conn, group, [0], True) == {0: (12, 0)}, "offset 12 committed")
    conn.close()
    restart_wait(b, kill=True)
    conn = kraw.Conn(b.host, b.port)
    deadline = time.monotonic() + 20
    while True:
        got = offset_fetch(conn, group, [0], True)
        if got[0][1] != 14 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    check(got == {0: (12, 0)}, "committed by the marker after kill -9: %r" % got)
    conn.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    t0 = time.monotonic()
    with Broker(io=args.io, shards=2,
                config={"transaction.partition.verification.enable": "false"}) as b:
        try:
            scenario(b)
        except BaseException:
            print("---- broker log (tail) ----\n" + "\n".join(b.log_text().splitlines()[-40:]))
            raise
    print("txnpart (%s): ok in %.1f s" % (args.io, time.monotonic() - t0))


if __name__ == "__main__":
    main()
