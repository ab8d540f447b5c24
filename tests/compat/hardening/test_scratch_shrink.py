"""A shard's decompression scratch grown by one large batch is given back: a gzip batch that
decompresses to 40 MiB grows the owner shard's scratch to 64 MiB; once no batch has needed it
for a second the shard's tick frees it and says so in the log (with a running count). The next
large batch grows it again and it is freed again; small batches in between work throughout."""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402

from confluent_kafka.admin import AdminClient, NewTopic  # noqa: E402

RELEASED = re.compile(r"shard (\d+): released the (\d+) KiB decompression scratch "
                      r"\(idle; (\d+) released\)")


def wait_released(b, count):
    """Waits (the tick runs every 200 ms) for the count-th release line; returns its KiB."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        m = [x for x in RELEASED.finditer(b.log_text()) if int(x.group(3)) == count]
        if m:
            return int(m[0].group(2))
        check(b.alive(), "broker died")
        time.sleep(0.1)
    raise AssertionError("no release #%d of the scratch in the log" % count)


def scenario(b):
    admin = AdminClient({"bootstrap.servers": b.bootstrap})
    admin.create_topics([NewTopic("big", 1, 1)])["big"].result(30)
    c = kw.Conn(b)
    err, base = kw.produce_v7(c, "big", 0, kw.record_batch([(b"k", b"v")]))
    check(err == 0, "small produce: error %d" % err)
    large = kw.record_batch([(b"k", bytes(40 << 20))], gzip=True)
    check(len(large) < 1 << 20, "the gzip batch fits max.message.bytes")
    for round_ in (1, 2):
        err, base = kw.produce_v7(c, "big", 0, large)
        check(err == 0, "large produce #%d: error %d" % (round_, err))
        kib = wait_released(b, round_)
        check(kib >= 40 << 10, "released scratch of %d KiB, want >= 40 MiB" % kib)
        err, _ = kw.produce_v7(c, "big", 0, kw.record_batch([(b"k", b"small")], gzip=True))
        check(err == 0, "small gzip produce after the release: error %d" % err)
    time.sleep(1.5)
    # Small batches never grow the scratch past the kept 1 MiB: nothing more is released.
    check(len(list(RELEASED.finditer(b.log_text()))) == 2, "released more than twice")
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1"})
    return run_scenario(b, "scratch shrink (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
