"""More partitions than open files: under RLIMIT_NOFILE 1024 (soft and hard, so the broker
cannot raise it), 1,500 partitions are created, each gets two records (retriable errors
retried as a client does), and every one answers ListOffsets with its end offset 2 and
Fetch without error, while the broker's descriptors stay under the limit (idle logs are
closed and reopened on demand); a librdkafka consumer assigned every partition at once reads
every record and reaches the end of every partition (a Fetch of more partitions than the budget
holds must not answer KAFKA_STORAGE_ERROR for the rest), and a record produced afterwards to a
closed partition reaches that consumer; after kill -9 and a restart every record is still there."""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402
import confluent_kafka as ck  # noqa: E402

FD_LIMIT = 1024
TOPICS = ["many-a", "many-b"]
PARTS = 750


class LimitedBroker(Broker):
    def args(self):
        return ["prlimit", "--nofile=%d:%d" % (FD_LIMIT, FD_LIMIT)] + super().args()


def fds(b):
    return len(os.listdir("/proc/%d/fd" % b.pid))


def produce_round(c, round_no, timeout_s=120):
    """One record to every partition, retrying the partitions that answer an error."""
    left = {t: list(range(PARTS)) for t in TOPICS}
    deadline = time.monotonic() + timeout_s
    errors = {}
    while left:
        check(time.monotonic() < deadline, "round %d: every partition appended (left: %d, "
              "errors %s)" % (round_no, sum(map(len, left.values())), errors))
        nxt = {}
        for t, plist in left.items():
            batch = kw.record_batch([(b"k", b"%s-%d" % (t.encode(), round_no))])
            body = (kw.sstr(None) + kw.s16(1) + kw.s32(10000) +
                    kw.arr([kw.sstr(t) + kw.arr([kw.s32(p) + kw.sbytes(batch) for p in plist])]))
            r = c.call(0, 7, body)
            for _ in range(r.i32()):
                r.str()
                for _ in range(r.i32()):
                    p, err = r.i32(), r.i16()
                    r.i64(), r.i64(), r.i64()
                    if err != 0:
                        errors[err] = errors.get(err, 0) + 1
                        nxt.setdefault(t, []).append(p)
        left = nxt
        if left:
            time.sleep(0.1)
    # only retriable codes while logs open: KAFKA_STORAGE_ERROR (56, "still opening")
    check(set(errors) <= {56}, "round %d: only retriable errors (%s)" % (round_no, errors))


def end_offsets(c):
    out = {}
    for t in TOPICS:
        body = kw.s32(-1) + kw.arr([kw.sstr(t) + kw.arr([kw.s32(p) + kw.s64(-1)
                                                         for p in range(PARTS)])])
        r = c.call(2, 1, body)
        for _ in range(r.i32()):
            r.str()
            for _ in range(r.i32()):
                p, err = r.i32(), r.i16()
                r.i64()
                off = r.i64()
                out[(t, p)] = off if err == 0 else ("error", err)
    return out


def check_all(b, what, late=0):
    c = kw.Conn(b, timeout=120)
    offs = end_offsets(c)
    bad = {k: v for k, v in offs.items() if v != 2 + (late if k == (TOPICS[0], 7) else 0)}
    check(not bad, "%s: every partition ends at offset 2 (%d do not, e.g. %s)"
          % (what, len(bad), list(bad.items())[:3]))
    for t in TOPICS:
        for p in range(0, PARTS, 37):
            check(kw.fetch_v4(c, t, p, 0) == 0, "%s: fetch %s-%d" % (what, t, p))
    n = fds(b)
    check(n < FD_LIMIT - 64, "%s: broker holds %d descriptors (limit %d)" % (what, n, FD_LIMIT))
    c.close()
    return n


def consume_all(b, timeout_s=120):
    """A consumer of every partition: every record read, the end of every partition reached,
    then a new record on a partition closed for the budget read too."""
    c = ck.Consumer({"bootstrap.servers": b.bootstrap, "group.id": "many-unused",
                     "enable.partition.eof": True, "enable.auto.commit": False})
    try:
        c.assign([ck.TopicPartition(t, p, 0) for t in TOPICS for p in range(PARTS)])
        got, eof, errors = {}, set(), {}
        deadline = time.monotonic() + timeout_s
        while len(eof) < len(TOPICS) * PARTS:
            check(time.monotonic() < deadline, "consumer: %d records, %d partitions at their end "
                  "of %d (errors %s)" % (sum(got.values()), len(eof), len(TOPICS) * PARTS,
                                         errors))
            m = c.poll(0.5)
            if m is None:
                continue
            if m.error() is not None:
                if m.error().code() == ck.KafkaError._PARTITION_EOF:
                    eof.add((m.topic(), m.partition()))
                else:
                    errors[m.error().name()] = errors.get(m.error().name(), 0) + 1
                continue
            got[(m.topic(), m.partition())] = got.get((m.topic(), m.partition()), 0) + 1
        check(all(got.get((t, p)) == 2 for t in TOPICS for p in range(PARTS)),
              "consumer: two records from every partition")
        check(not errors, "consumer errors: %s" % errors)
        pr = ck.Producer({"bootstrap.servers": b.bootstrap, "acks": "all"})
        pr.produce(TOPICS[0], value=b"late", partition=7)
        check(pr.flush(30) == 0, "late record acknowledged")
        while True:
            check(time.monotonic() < deadline + 60, "consumer: the late record")
            m = c.poll(0.5)
            if m is not None and m.error() is None:
                check((m.topic(), m.partition(), m.offset(), m.value()) ==
                      (TOPICS[0], 7, 2, b"late"), "late record %r" % ((m.topic(), m.partition(),
                                                                       m.offset()),))
                return
    finally:
        c.close()


def scenario(b):
    c = kw.Conn(b, timeout=300)
    body = kw.arr([kw.sstr(t) + kw.s32(PARTS) + kw.s16(1) + kw.arr([]) + kw.arr([])
                   for t in TOPICS]) + kw.s32(120000) + b"\x00"
    r = c.call(19, 4, body)
    r.i32()
    for _ in range(r.i32()):
        name, err, _msg = r.str(), r.i16(), r.str()
        check(err == 0, "create %s" % name)
    produce_round(c, 1)
    produce_round(c, 2)
    c.close()
    n = check_all(b, "running")
    check("open-log budget" in b.log_text(), "the broker closed idle logs for its budget")
    consume_all(b)
    b.kill9()
    b.start(timeout_s=120)
    m = check_all(b, "after kill -9", late=1)
    print("ok: %d partitions under RLIMIT_NOFILE %d: %d descriptors running, %d after restart"
          % (len(TOPICS) * PARTS, FD_LIMIT, n, m))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = LimitedBroker(io=io, shards=2, config={"num.partitions": "1"})
    return run_scenario(b, "many partitions, few files (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
