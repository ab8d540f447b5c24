"""Wire-level checks of the data-path handlers with hand-built frames (stdlib + confluent-kafka
to produce): ApiVersions ranges and KIP-511 fallback, Produce v0-2 refused as Kafka 4 does, a
known but unserved API answered UNSUPPORTED_VERSION, Produce v8 record_errors (KIP-467),
ListOffsets (every special timestamp at every version, KIP-734/405/1005/1023),
OffsetForLeaderEpoch, DeleteRecords, Fetch errors (out of range, KIP-320 epochs) and the
long-poll (woken by an append; max_wait honoured).

    /usr/bin/python3 test_protocol.py --io uring|epoll
"""
import argparse
import os
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402

import confluent_kafka as ck  # noqa: E402

TOPIC = "proto"


import kafka_wire  # noqa: E402
from kafka_wire import (Reader, arr, carr, crc32c, cstr, s16, s32, s64,  # noqa: E402,F401
                        sstr, uvar, zvar)


def record_batch(timestamps):
    """An uncompressed record batch v2, one keyed record per timestamp (for hand-built Produce)."""
    recs = b""
    for i, ts in enumerate(timestamps):
        key, val = b"k%d" % i, b"v%d" % i
        rec = (b"\x00" + zvar(ts - timestamps[0]) + zvar(i) + zvar(len(key)) + key +
               zvar(len(val)) + val + zvar(0))
        recs += zvar(len(rec)) + rec
    after_crc = (s16(0) + s32(len(timestamps) - 1) + s64(timestamps[0]) + s64(max(timestamps)) +
                 s64(-1) + s16(-1) + s32(-1) + s32(len(timestamps)) + recs)
    body = s32(-1) + b"\x02" + struct.pack(">I", crc32c(after_crc)) + after_crc
    return s64(0) + s32(len(body)) + body


TAGS = b"\x00"  # empty tagged-field section


class Conn(kafka_wire.Conn):
    def __init__(self, b):
        super().__init__(b.host, b.port, "proto-test", 15)

    def call(self, key, version, body, flexible=False):
        r = super().call(key, version, body, flexible)
        if flexible:
            check(self.header_tags == 0, "response header v1 tags")
        return r


def api_versions(r):
    err = r.i16()
    out = {}
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        out[k] = (lo, hi)
    return err, out


def produce(b, n):
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False})
    for i in range(n):
        p.produce(TOPIC, value=b"v%d" % i, partition=0, timestamp=1_600_000_000_000 + i * 10)
        if i % 7 == 0:
            p.flush(10)  # several batches
    check(p.flush(30) == 0, "flush")


def metadata_epochs(c, topic):
    """Metadata v7 for topic: {partition: (leader, leader_epoch)}."""
    r = c.call(3, 7, arr([sstr(topic)]) + b"\x00")
    r.i32()  # throttle
    for _ in range(r.i32()):
        r.i32(), r.str(), r.i32(), r.str()
    r.str()  # cluster id
    r.i32()  # controller
    out = {}
    check(r.i32() == 1, "metadata: one topic")
    err, name, _ = r.i16(), r.str(), r.i8()
    check(err == 0 and name == topic, "metadata topic %s: error %d" % (name, err))
    for _ in range(r.i32()):
        _, part, leader, epoch = r.i16(), r.i32(), r.i32(), r.i32()
        for _ in range(3):
            [r.i32() for _ in range(r.i32())]
        out[part] = (leader, epoch)
    return out


def fetch_v9(c, offset, epoch=-1, max_wait=0, min_bytes=0, topic=TOPIC):
    body = (s32(-1) + s32(max_wait) + s32(min_bytes) + s32(1 << 20) + b"\x00" + s32(0) + s32(-1) +
            arr([sstr(topic) + arr([s32(0) + s32(epoch) + s64(offset) + s64(-1) +
                                    s32(1 << 20)])]) + arr([]) + sstr(""))
    r = c.call(1, 9, body)
    r.i32()
    top = r.i16()
    r.i32()
    check(r.i32() == 1 and r.str() == topic and r.i32() == 1, "fetch shape")
    part, err, hw, lso, lstart = r.i32(), r.i16(), r.i64(), r.i64(), r.i64()
    na = r.i32()
    check(na <= 0, "aborted transactions")
    recs = r.bytes()
    check(part == 0 and top == 0, "fetch top error %d" % top)
    return err, hw, lso, lstart, recs


def list_offsets_v(c, v, topic, ts, epoch=-1, isolation=0):
    """ListOffsets at version v (1-11) for partition 0 of topic: (partition, error, timestamp,
    offset, leader_epoch), leader_epoch None below v4."""
    flex = v >= 6
    part = s32(0) + (s32(epoch) if v >= 4 else b"") + s64(ts)
    if flex:
        body = (s32(-1) + bytes([isolation]) + carr([cstr(topic) + carr([part + TAGS]) + TAGS]) +
                (s32(5000) if v >= 10 else b"") + TAGS)
    else:
        body = (s32(-1) + (bytes([isolation]) if v >= 2 else b"") +
                arr([sstr(topic) + arr([part])]))
    r = c.call(2, v, body, flexible=flex)
    if v >= 2:
        r.i32()  # throttle
    if flex:
        check(r.uvar() == 2 and r.cstr() == topic and r.uvar() == 2, "list offsets v%d shape" % v)
    else:
        check(r.i32() == 1 and r.str() == topic and r.i32() == 1, "list offsets v%d shape" % v)
    out = (r.i32(), r.i16(), r.i64(), r.i64(), r.i32() if v >= 4 else None)
    if flex:
        check(r.uvar() == 0, "partition tags")
    return out


# The first ListOffsets version that may carry each special timestamp (Kafka 4.x's
# ReplicaManager.timestampMinSupportedVersion): -1 latest, -2 earliest, -3 max timestamp
# (KIP-734), -4 earliest local (KIP-405), -5 latest tiered (KIP-1005), -6 earliest pending
# upload (KIP-1023).
SPECIAL_MIN_VERSION = {-1: 1, -2: 1, -3: 7, -4: 8, -5: 9, -6: 11}


def list_offsets_specials(b, c):
    """Every special timestamp at every version 1-11, checked against a log whose largest
    timestamp sits in the middle, after DeleteRecords moved its start: what Kafka 4.x answers
    on a broker without tiered storage. Unknown negative values and specials below their
    version are UNSUPPORTED_VERSION for the partition; the connection stays usable."""
    from confluent_kafka.admin import AdminClient, NewTopic
    topic = "specials"
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    for f in a.create_topics([NewTopic(topic, 1, 1)]).values():
        f.result(15)
    now = int(time.time() * 1000)
    # Offsets 0-4; the largest timestamp is at offset 2, and offset 3 repeats it (the first
    # record carrying it is the answer).
    stamps = [now - 5000, now - 4000, now + 1000, now + 1000, now - 1000]
    batch = record_batch(stamps)
    r = c.call(0, 8, s16(-1) + s16(1) + s32(10000) +
               arr([sstr(topic) + arr([s32(0) + s32(len(batch)) + batch])]))
    check(r.i32() == 1 and r.str() == topic and r.i32() == 1 and r.i32() == 0 and r.i16() == 0,
          "produce the specials batch")
    # acks=1 answers at the local append; the records are committed (high watermark) after the
    # partition's group-commit fsync, which DeleteRecords needs: wait as a consumer would.
    deadline = time.monotonic() + 10
    while list_offsets_v(c, 1, topic, -1)[3] != 5:
        check(time.monotonic() < deadline, "specials batch committed")
        time.sleep(0.01)
    body = arr([sstr(topic) + arr([s32(0) + s64(1)])]) + s32(5000)
    r = c.call(21, 1, body)
    r.i32()
    check(r.i32() == 1 and r.str() == topic and r.i32() == 1 and r.i32() == 0 and
          r.i64() == 1 and r.i16() == 0, "delete records of specials to 1")
    ep = metadata_epochs(c, topic)[0][1]
    expect = {
        -1: (0, -1, 5, ep),    # latest: the high watermark, with the leader epoch
        -2: (0, -1, 1, ep),    # earliest: the log start offset
        -3: (0, now + 1000, 2, ep),  # the first record with the largest timestamp
        -4: (0, -1, 1, ep),    # earliest local = earliest without tiered storage
        -5: (0, -1, -1, -1),   # nothing tiered: no offset, no epoch, no error
        -6: (0, -1, -1, -1),   # nothing pending upload either
    }
    for v in range(1, 12):
        for ts, want in sorted(expect.items()):
            part, err, got_ts, off, ep = list_offsets_v(c, v, topic, ts)
            if v < SPECIAL_MIN_VERSION[ts]:
                want = (35, -1, -1, -1)
            got = (err, got_ts, off, ep if v >= 4 else want[3])
            check(part == 0 and got == want,
                  "ListOffsets v%d timestamp %d: %r, want %r" % (v, ts, got, want))
        for ts in (-7, -100, -(1 << 63)):
            got = list_offsets_v(c, v, topic, ts)[1:4]
            check(got == (35, -1, -1), "ListOffsets v%d timestamp %d: %r" % (v, ts, got))
        # A plain timestamp still works at every version: the first record at or after it
        # that is still in the log (offset 0 is deleted; offset 1 is the first at or after
        # now - 4500).
        got = list_offsets_v(c, v, topic, now - 4500)[1:4]
        check(got == (0, now - 4000, 1), "ListOffsets v%d by timestamp: %r" % (v, got))
        got = list_offsets_v(c, v, topic, now - 2000)[1:4]
        check(got == (0, now + 1000, 2), "ListOffsets v%d by timestamp (unordered): %r" %
              (v, got))
    # read_committed (v2+) sees the same offsets: nothing transactional is open.
    check(list_offsets_v(c, 9, topic, -1, isolation=1)[1:4] == (0, -1, 5),
          "latest read_committed")
    # A leader epoch check happens before the special value is looked at.
    check(list_offsets_v(c, 9, topic, -5, epoch=ep + 1)[1] == 75, "-5 with a future epoch")
    # A partition asked twice (even under two entries of its topic) is INVALID_REQUEST at
    # each place (ListOffsetsRequest.duplicatePartitions); another one is answered.
    def part(p, ts):
        return s32(p) + s32(-1) + s64(ts) + TAGS

    body = (s32(-1) + b"\x00" +
            carr([cstr(topic) + carr([part(0, -1), part(1, -1)]) + TAGS,
                  cstr(TOPIC) + carr([part(0, -2)]) + TAGS,
                  cstr(topic) + carr([part(0, -2)]) + TAGS]) + TAGS)
    r = c.call(2, 7, body, flexible=True)
    r.i32()
    got = []
    for _ in range(r.uvar() - 1):
        name = r.cstr()
        for _ in range(r.uvar() - 1):
            got.append((name, r.i32(), r.i16(), r.i64(), r.i64(), r.i32()))
            r.uvar()
        r.uvar()
    check(got == [(topic, 0, 42, -1, -1, -1), (topic, 1, 3, -1, -1, -1),
                  (TOPIC, 0, 0, -1, 0, metadata_epochs(c, TOPIC)[0][1]),
                  (topic, 0, 42, -1, -1, -1)],
          "duplicate partitions: %r" % got)


def topic_configs(b, c):
    """Topic configs reach the data path: compression.type (recompression), LogAppendTime,
    max.message.bytes."""
    from confluent_kafka.admin import AdminClient, NewTopic
    a = AdminClient({"bootstrap.servers": b.bootstrap})
    fs = a.create_topics([
        NewTopic("recomp", 1, 1, config={"compression.type": "zstd"}),
        NewTopic("appendtime", 1, 1, config={"message.timestamp.type": "LogAppendTime"}),
        NewTopic("small", 1, 1, config={"max.message.bytes": "2000"})])
    for f in fs.values():
        f.result(15)
    p = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False,
                     "compression.codec": "none", "retries": 0})
    errs = []
    for i in range(20):
        p.produce("recomp", value=b"same-same-same-%d" % i, partition=0)
        p.produce("appendtime", value=b"t%d" % i, partition=0, timestamp=1_000_000 + i)
    p.produce("small", value=b"x" * 5000, partition=0, on_delivery=lambda e, m: errs.append(e))
    p.flush(30)  # its own batch: the whole batch is refused, as Kafka does
    p.produce("small", value=b"y" * 100, partition=0, on_delivery=lambda e, m: errs.append(e))
    check(p.flush(30) == 0, "flush")
    del p
    check(len(errs) == 2 and errs[0] is not None and
          errs[0].code() == ck.KafkaError.MSG_SIZE_TOO_LARGE and errs[1] is None,
          "max.message.bytes: %r" % errs)
    err, hw, _, _, recs = fetch_v9(c, 0, topic="recomp")
    check(err == 0 and hw == 20 and len(recs) > 61, "fetch recomp")
    attrs = struct.unpack_from(">h", recs, 21)[0]
    check(attrs & 7 == 4, "stored codec %d, want zstd (4)" % (attrs & 7))
    cons = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "unused"})
    cons.assign([ck.TopicPartition("recomp", 0, 0), ck.TopicPartition("appendtime", 0, 0)])
    got = {"recomp": [], "appendtime": []}
    deadline = time.monotonic() + 30
    t_before = int(time.time() * 1000) - 120_000
    while sum(len(v) for v in got.values()) < 40 and time.monotonic() < deadline:
        m = cons.poll(0.5)
        if m is None or m.error():
            continue
        got[m.topic()].append(m)
    cons.close()
    check([m.value() for m in got["recomp"]] == [b"same-same-same-%d" % i for i in range(20)],
          "recompressed values")
    check(len(got["appendtime"]) == 20, "appendtime count")
    for m in got["appendtime"]:
        tt, ts = m.timestamp()
        check(tt == ck.TIMESTAMP_LOG_APPEND_TIME and ts > t_before,
              "LogAppendTime %r" % ((tt, ts),))


def scenario(b):
    c = Conn(b)
    err, apis = api_versions(c.call(18, 0, b""))
    check(err == 0, "ApiVersions v0 error %d" % err)
    for k, rng in {0: (0, 12), 1: (4, 17), 2: (1, 11), 3: (0, 12), 18: (0, 4), 21: (0, 2),
                   23: (2, 4)}.items():
        check(apis.get(k) == rng, "api %d advertised %r, want %r" % (k, apis.get(k), rng))
    # KIP-511: a too-new ApiVersions gets error 35 and a v0 body with our ranges.
    hdr = s16(18) + s16(42) + s32(777) + sstr("x") + b"\x00"
    c.s.sendall(s32(len(hdr) + 2) + hdr + b"\x00\x00")
    n = struct.unpack(">i", c.recv(4))[0]
    r = Reader(c.recv(n))
    check(r.i32() == 777, "corr")
    err, apis2 = api_versions(r)
    check(err == 35 and apis2 == apis, "ApiVersions v42: error %d" % err)

    produce(b, 50)
    # Produce v2 (message format v0/v1 era) is refused per partition as Kafka 4 does.
    body = s16(1) + s32(1000) + arr([sstr(TOPIC) + arr([s32(0) + s32(-1)])])
    r = c.call(0, 2, body)
    check(r.i32() == 1 and r.str() == TOPIC and r.i32() == 1, "produce v2 shape")
    check(r.i32() == 0 and r.i16() == 35, "produce v2 not UNSUPPORTED_VERSION")
    # A known API nobody serves yet (EndTxn, while it is not advertised): answered with
    # UNSUPPORTED_VERSION in its top-level error code; the connection stays usable.
    if 26 not in apis:
        r = c.call(26, 0, sstr("txn") + s64(1) + s16(0) + b"\x01")
        r.i32()
        check(r.i16() == 35, "EndTxn not answered UNSUPPORTED_VERSION")
    else:
        print("note: EndTxn is served now; unserved-API check skipped")
    err, _ = api_versions(c.call(18, 0, b""))
    check(err == 0, "connection unusable after an unserved API")
    # A served API at a version we do not serve and without a top-level error code
    # (ListOffsets v12): the connection is closed, as Kafka does.
    c2 = Conn(b)
    try:
        c2.call(2, 12, s32(-1) + b"\x00" + carr([]) + s32(0) + TAGS, flexible=True)
        check(False, "ListOffsets v12 answered")
    except EOFError:
        pass
    c2.s.close()

    # A record two hours in the future (message.timestamp.after.max.ms = 1 h by default).
    errs = []
    pf = ck.Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": False,
                      "retries": 0})
    pf.produce(TOPIC, value=b"future", partition=0,
               timestamp=int(time.time() * 1000) + 2 * 3600 * 1000,
               on_delivery=lambda e, m: errs.append(e))
    pf.flush(30)
    check(len(errs) == 1 and errs[0] is not None and
          errs[0].code() == ck.KafkaError.INVALID_TIMESTAMP, "future record: %r" % errs)
    del pf
    # The same refusal on the wire, Produce v8: record_errors (KIP-467) names the record at
    # position 1 of 3 (the only one in the future), besides error_message.
    now = int(time.time() * 1000)
    batch = record_batch([now, now + 2 * 3600 * 1000, now + 1])
    body = (s16(-1) + s16(1) + s32(10000) +
            arr([sstr(TOPIC) + arr([s32(0) + s32(len(batch)) + batch])]))
    r = c.call(0, 8, body)
    check(r.i32() == 1 and r.str() == TOPIC and r.i32() == 1 and r.i32() == 0, "produce v8 shape")
    perr, _, _, _ = r.i16(), r.i64(), r.i64(), r.i64()
    check(perr == 32, "produce v8 future record: error %d, want INVALID_TIMESTAMP" % perr)
    rec_errs = [(r.i32(), r.str()) for _ in range(r.i32())]
    emsg = r.str()
    check([i for i, _ in rec_errs] == [1] and rec_errs[0][1] and emsg,
          "record_errors %r, error_message %r" % (rec_errs, emsg))

    # ListOffsets v7 (flexible): earliest, latest, max timestamp (KIP-734), by timestamp.
    def list_offsets(ts, epoch=-1):
        return list_offsets_v(c, 7, TOPIC, ts, epoch)

    # The leader epoch Metadata publishes is the one every data API fences on (KIP-320):
    # current_leader_epoch older is FENCED_LEADER_EPOCH (74), newer UNKNOWN_LEADER_EPOCH (75).
    leader, E = metadata_epochs(c, TOPIC)[0]
    check(leader >= 0 and E >= 1, "metadata leader %d epoch %d" % (leader, E))
    check(list_offsets(-2)[1:4:2] == (0, 0), "earliest")
    check(list_offsets(-1)[1:4:2] == (0, 50), "latest")
    _, e, ts, off, ep = list_offsets(-3)
    check((e, ts, off, ep) == (0, 1_600_000_000_000 + 490, 49, E), "max timestamp")
    _, e, ts, off, _ = list_offsets(1_600_000_000_000 + 205)
    check((e, off, ts) == (0, 21, 1_600_000_000_000 + 210), "by timestamp %r" % ((e, off, ts),))
    check(list_offsets(1_700_000_000_000)[3] == -1, "timestamp after the end")
    check(list_offsets(-1, epoch=E)[1:4:2] == (0, 50), "ListOffsets at Metadata's epoch")
    check(list_offsets(-1, epoch=E + 1)[1] == 75, "ListOffsets: UNKNOWN_LEADER_EPOCH")
    check(list_offsets(-1, epoch=E - 1)[1] == 74, "ListOffsets: FENCED_LEADER_EPOCH")
    list_offsets_specials(b, c)

    # OffsetForLeaderEpoch v2: the current epoch ends at the log end; a newer current epoch
    # is unknown, an older one fenced.
    def ofle(cur, ep):
        body = arr([sstr(TOPIC) + arr([s32(0) + s32(cur) + s32(ep)])])
        r = c.call(23, 2, body)
        r.i32()
        check(r.i32() == 1 and r.str() == TOPIC and r.i32() == 1, "ofle shape")
        return r.i16(), r.i32(), r.i32(), r.i64()

    check(ofle(E, E) == (0, 0, E, 50), "OffsetForLeaderEpoch %r" % (ofle(E, E),))
    check(ofle(-1, E) == (0, 0, E, 50), "OffsetForLeaderEpoch without a current epoch")
    check(ofle(E + 1, E)[0] == 75, "OffsetForLeaderEpoch: UNKNOWN_LEADER_EPOCH")
    check(ofle(E - 1, E)[0] == 74, "OffsetForLeaderEpoch: FENCED_LEADER_EPOCH")

    # Fetch: whole batch from mid-batch offset, out of range, fenced epoch.
    err, hw, lso, lstart, recs = fetch_v9(c, 3)
    check(err == 0 and hw == 50 and lso == 50 and lstart == 0 and len(recs) > 61, "fetch")
    base = struct.unpack(">q", recs[:8])[0]
    check(base <= 3, "fetch starts with the batch holding offset 3 (base %d)" % base)
    check(fetch_v9(c, 51)[0] == 1, "fetch beyond the end: OFFSET_OUT_OF_RANGE")
    check(fetch_v9(c, 0, epoch=E)[0] == 0, "fetch at Metadata's epoch")
    check(fetch_v9(c, 0, epoch=E + 1)[0] == 75, "fetch: UNKNOWN_LEADER_EPOCH")
    check(fetch_v9(c, 0, epoch=E - 1)[0] == 74, "fetch: FENCED_LEADER_EPOCH")

    # DeleteRecords v1: moves the log start; beyond the high watermark is out of range.
    def delete_records(off):
        body = arr([sstr(TOPIC) + arr([s32(0) + s64(off)])]) + s32(5000)
        r = c.call(21, 1, body)
        r.i32()
        check(r.i32() == 1 and r.str() == TOPIC and r.i32() == 1, "delete shape")
        return r.i32(), r.i64(), r.i16()

    check(delete_records(10) == (0, 10, 0), "delete records to 10")
    check(delete_records(1000)[2] == 1, "delete beyond HW")
    check(list_offsets(-2)[3] == 10, "earliest after delete")
    check(fetch_v9(c, 5)[0] == 1, "fetch below log start")
    check(fetch_v9(c, 10)[3] == 10, "log start offset in fetch")

    # Long-poll: a fetch at the end parks, an append wakes it well before max_wait.
    t = threading.Timer(0.5, lambda: produce(b, 1))
    t0 = time.monotonic()
    t.start()
    err, hw, _, _, recs = fetch_v9(c, 50, max_wait=10000, min_bytes=1)
    dt = time.monotonic() - t0
    t.join()
    check(err == 0 and hw == 51 and len(recs) > 0, "long-poll woke without data")
    check(0.3 < dt < 8, "long-poll answered after %.2f s" % dt)
    t0 = time.monotonic()
    err, _, _, _, recs = fetch_v9(c, 51, max_wait=400, min_bytes=1)
    dt = time.monotonic() - t0
    check(err == 0 and len(recs) == 0 and 0.3 < dt < 5, "max_wait: %.2f s" % dt)
    topic_configs(b, c)
    c.s.close()
    check(b.alive(), "broker died")
    check(b.stop() == 0, "exit status")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1"})
    return run_scenario(b, "protocol (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
