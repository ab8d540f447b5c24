"""Hand-built Kafka frames for the hardening tests (stdlib only): primitives, record batches
with arbitrary keys and values, a blocking connection and a response reader."""

import struct

import kafka_wire
from kafka_wire import (Reader, arr, crc32c, s8, s16, s32, s64,  # noqa: F401
                        sbytes, sstr, uvar, zvar)


def record_batch(records, base_offset=0, ts=1_700_000_000_000, leader_epoch=-1, gzip=False):
    """A record batch v2 of (key, value) pairs (None for null), uncompressed or gzip."""
    recs = b""
    for i, (key, val) in enumerate(records):
        rec = b"\x00" + zvar(0) + zvar(i)
        rec += zvar(-1) if key is None else zvar(len(key)) + key
        rec += zvar(-1) if val is None else zvar(len(val)) + val
        rec += zvar(0)
        recs += zvar(len(rec)) + rec
    if gzip:
        import gzip as gz
        recs = gz.compress(recs, 6)
    after_crc = (s16(1 if gzip else 0) + s32(len(records) - 1) + s64(ts) + s64(ts) + s64(-1) +
                 s16(-1) + s32(-1) + s32(len(records)) + recs)
    body = s32(leader_epoch) + b"\x02" + struct.pack(">I", crc32c(after_crc)) + after_crc
    return s64(base_offset) + s32(len(body)) + body


def java_hash(s):
    """Java's String.hashCode (ASCII group ids)."""
    h = 0
    for ch in s:
        h = (31 * h + ord(ch)) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def offsets_partition(group, n=50):
    """Kafka's Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions."""
    h = java_hash(group)
    return (0 if h == -(1 << 31) else abs(h)) % n


def group_metadata_record(group, leader, members, generation=1, protocol="range",
                          session_ms=1000):
    """A __consumer_offsets group metadata record (key v2, value v3) as Kafka writes it."""
    key = s16(2) + sstr(group)
    ms = b""
    for m in members:
        ms += (sstr(m) + sstr(None) + sstr("cli") + sstr("/127.0.0.1") + s32(session_ms) +
               s32(session_ms) + sbytes(b"") + sbytes(b""))
    value = (s16(3) + sstr("consumer") + s32(generation) + sstr(protocol) + sstr(leader) +
             s64(1_700_000_000_000) + s32(len(members)) + ms)
    return key, value


class Conn(kafka_wire.Conn):
    def __init__(self, b, timeout=30):
        super().__init__(b.host, b.port, "hardening-test", timeout)


def produce_v7(c, topic, partition, batch, acks=-1, timeout_ms=10000):
    """Produce v7 of one batch to one partition: (error_code, base_offset)."""
    body = (sstr(None) + s16(acks) + s32(timeout_ms) +
            arr([sstr(topic) + arr([s32(partition) + sbytes(batch)])]))
    r = c.call(0, 7, body)
    r.i32()  # topics
    r.str()
    r.i32()  # partitions
    r.i32()  # index
    err = r.i16()
    base = r.i64()
    return err, base


def produce_v8(c, topic, partition, batch, acks=-1, timeout_ms=10000):
    """Produce v8 (error_message): (error_code, base_offset, error_message)."""
    body = (sstr(None) + s16(acks) + s32(timeout_ms) +
            arr([sstr(topic) + arr([s32(partition) + sbytes(batch)])]))
    r = c.call(0, 8, body)
    r.i32()
    r.str()
    r.i32()
    r.i32()
    err = r.i16()
    base = r.i64()
    r.i64()  # log append time
    r.i64()  # log start offset
    for _ in range(r.i32()):  # record_errors
        r.i32()
        r.str()
    return err, base, r.str()


def metadata_v7(c, topics, auto_create=False):
    """Metadata v7: (node_ids, {topic: (error, [(partition, error, leader, replicas, isr,
    offline)])})."""
    body = arr([sstr(t) for t in topics]) + (b"\x01" if auto_create else b"\x00")
    r = c.call(3, 7, body)
    r.i32()  # throttle
    nodes = []
    for _ in range(r.i32()):
        nodes.append(r.i32())
        r.str()
        r.i32()
        r.str()
    r.str()  # cluster id
    r.i32()  # controller
    out = {}
    for _ in range(r.i32()):
        err, name = r.i16(), r.str()
        r.i8()  # is_internal
        parts = []
        for _ in range(r.i32()):
            perr, idx, leader = r.i16(), r.i32(), r.i32()
            r.i32()  # leader epoch
            reps = [r.i32() for _ in range(r.i32())]
            isr = [r.i32() for _ in range(r.i32())]
            off = [r.i32() for _ in range(r.i32())]
            parts.append((idx, perr, leader, reps, isr, off))
        out[name] = (err, parts)
    return nodes, out


def fetch_v4(c, topic, partition, offset, max_wait=0):
    """Fetch v4 of one partition: its error code."""
    body = (s32(-1) + s32(max_wait) + s32(0) + s32(1 << 20) + s8(0) +
            arr([sstr(topic) + arr([s32(partition) + s64(offset) + s32(1 << 20)])]))
    r = c.call(1, 4, body)
    r.i32()  # throttle
    r.i32()  # topics
    r.str()
    r.i32()  # partitions
    r.i32()  # index
    return r.i16()


def list_offsets_v1(c, topic, partition, timestamp=-1):
    """ListOffsets v1 of one partition: (error, offset)."""
    body = s32(-1) + arr([sstr(topic) + arr([s32(partition) + s64(timestamp)])])
    r = c.call(2, 1, body)
    r.i32()  # topics
    r.str()
    r.i32()  # partitions
    r.i32()  # index
    err = r.i16()
    r.i64()  # timestamp
    return err, r.i64()


def delete_records_v1(c, topic, partition, offset):
    """DeleteRecords v1 of one partition: (error, low_watermark)."""
    body = arr([sstr(topic) + arr([s32(partition) + s64(offset)])]) + s32(10000)
    r = c.call(21, 1, body)
    r.i32()  # throttle
    r.i32()  # topics
    r.str()
    r.i32()  # partitions
    r.i32()  # index
    low = r.i64()
    return r.i16(), low


def offset_commit_v2(c, group, topic, partition, offset):
    """A simple (generation -1) OffsetCommit v2 of one partition: its error code."""
    body = (sstr(group) + s32(-1) + sstr("") + s64(-1) +
            arr([sstr(topic) + arr([s32(partition) + s64(offset) + sstr("")])]))
    r = c.call(8, 2, body)
    r.i32()  # topics
    r.str()
    r.i32()  # partitions
    r.i32()  # index
    return r.i16()
