"""A client batch that is wrong in its header gets Kafka's error and leaves the partition
serving: a record count that disagrees with the batch's offset range (Kafka's LogValidator:
"Inconsistent batch offset range", INVALID_RECORD 87) — one claiming 2^31 offsets for one
record used to take the partition offline — and a timestamp whose base + delta overflows
(Java's long arithmetic wraps; the broker must neither crash nor hang)."""

import argparse
import os
import struct
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402
from kwire import crc32c, s16, s32, s64, zvar  # noqa: E402

TOPIC = "batch-checks"
INVALID_RECORD = 87
CORRUPT_MESSAGE = 2


def raw_batch(values, last_offset_delta, base_ts=1_700_000_000_000, ts_delta=0):
    recs = b""
    for i, val in enumerate(values):
        rec = b"\x00" + zvar(ts_delta) + zvar(i) + zvar(-1) + zvar(len(val)) + val + zvar(0)
        recs += zvar(len(rec)) + rec
    after_crc = (s16(0) + s32(last_offset_delta) + s64(base_ts) + s64(base_ts) + s64(-1) +
                 s16(-1) + s32(-1) + s32(len(values)) + recs)
    body = s32(-1) + b"\x02" + struct.pack(">I", crc32c(after_crc)) + after_crc
    return s64(0) + s32(len(body)) + body


def produce_ok(c, what):
    deadline = time.monotonic() + 30
    while True:
        err, base = kw.produce_v7(c, TOPIC, 0, kw.record_batch([(b"k", what)]))
        if err == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(err == 0, "produce %r: error %d" % (what, err))
    return base


def scenario(b):
    c = kw.Conn(b)
    kw.metadata_v7(c, [TOPIC], auto_create=True)
    first = produce_ok(c, b"before")
    for delta, count in ((2**31 - 1, 1), (5, 3), (0, 2), (1, 1)):
        err, _ = kw.produce_v7(c, TOPIC, 0, raw_batch([b"v"] * count, delta))
        # INVALID_RECORD from the count check; CORRUPT_MESSAGE where the records' own offset
        # deltas already break the batch (the codec's validation runs first).
        check(err in (INVALID_RECORD, CORRUPT_MESSAGE),
              "batch of %d record(s) with last offset delta %d: error %d, want INVALID_RECORD"
              % (count, delta, err))
        print("  %d record(s), last offset delta %d: error %d" % (count, delta, err))
    # The partition still serves, with the next offset after the good record.
    after = produce_ok(c, b"after")
    check(after == first + 1, "offset after the refused batches %d, want %d" % (after, first + 1))
    # Overflowing timestamps: answered, whatever the verdict, and the broker stays up.
    for base_ts, ts_delta in ((2**63 - 1, 11), (-(2**63), -11)):
        err, _ = kw.produce_v7(c, TOPIC, 0, raw_batch([b"t"], 0, base_ts, ts_delta))
        check(b.alive(), "broker died on base timestamp %d + %d" % (base_ts, ts_delta))
        print("  base timestamp %d + delta %d: error %d" % (base_ts, ts_delta, err))
    produce_ok(c, b"last")
    err, end = kw.list_offsets_v1(c, TOPIC, 0)
    check(err == 0 and end >= after + 2, "log end %d after the last produce" % end)
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1"})
    return run_scenario(b, "batch checks (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
