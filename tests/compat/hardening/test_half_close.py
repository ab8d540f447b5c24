"""Requests a client sent before closing its connection are served (Kafka's selector closes
such a channel gracefully). An acks=0 producer that is destroyed right after its flush does
exactly this: its last Produce requests may still sit in the broker's socket buffer when its
FIN arrives, while the connection is paused at the in-flight bound. Those records must land.

Three clients, each pipelining acks=0 Produce requests (the in-flight bound is set to 2 so the
connection is paused when the FIN comes):
  close     sends everything and closes at once;
  half      sends everything and shuts down its sending side, then waits for the broker to close;
  partial   sends whole requests and half of one more, then closes: the whole ones land, the
            partial one does not, and the broker stays healthy.
The log end offset of the partition proves what landed."""

import argparse
import os
import socket
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from compat_util import check, run_scenario  # noqa: E402
import kwire as kw  # noqa: E402
from kwire import arr, s16, s32, sbytes, sstr  # noqa: E402

TOPIC = "half-close"
RECORDS_PER_REQUEST = 5
REQUESTS = 400


def produce_frame(corr, batch):
    body = (sstr(None) + s16(0) + s32(10000) +
            arr([sstr(TOPIC) + arr([s32(0) + sbytes(batch)])]))
    hdr = s16(0) + s16(7) + s32(corr) + sstr("half-close-test")
    return s32(len(hdr) + len(body)) + hdr + body


def frames(n, tag):
    out = []
    for i in range(n):
        recs = [(b"%s-%d-%d" % (tag, i, j), bytes(1024)) for j in range(RECORDS_PER_REQUEST)]
        out.append(produce_frame(i + 1, kw.record_batch(recs)))
    return out


def log_end(b):
    c = kw.Conn(b)
    try:
        err, off = kw.list_offsets_v1(c, TOPIC, 0)
        check(err == 0, "ListOffsets: error %d" % err)
        return off
    finally:
        c.close()


def wait_log_end(b, want, settle=1.0, timeout=30):
    """Waits until the log end reaches want, then a little longer: it must not pass it."""
    deadline = time.monotonic() + timeout
    off = log_end(b)
    while off < want and time.monotonic() < deadline:
        check(b.alive(), "broker died")
        time.sleep(0.05)
        off = log_end(b)
    time.sleep(settle)
    return log_end(b)


def scenario(b):
    c = kw.Conn(b)
    kw.metadata_v7(c, [TOPIC], auto_create=True)
    deadline = time.monotonic() + 30
    while True:
        err, _ = kw.produce_v7(c, TOPIC, 0, kw.record_batch([(b"first", b"x")]))
        if err == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    check(err == 0, "first produce: error %d" % err)
    c.close()
    expect = 1

    # close: everything, then close() at once.
    s = socket.create_connection((b.host, b.port), timeout=30)
    s.sendall(b"".join(frames(REQUESTS, b"close")))
    s.close()
    expect += REQUESTS * RECORDS_PER_REQUEST
    got = wait_log_end(b, expect)
    check(got == expect, "close: log end %d, want %d (%d records of the requests sent before "
          "the close lost)" % (got, expect, expect - got))

    # half: everything, shutdown(SHUT_WR), then the broker closes once it has served them.
    s = socket.create_connection((b.host, b.port), timeout=30)
    s.sendall(b"".join(frames(REQUESTS, b"half")))
    s.shutdown(socket.SHUT_WR)
    check(s.recv(1) == b"", "acks=0 requests got an answer")
    s.close()
    expect += REQUESTS * RECORDS_PER_REQUEST
    got = wait_log_end(b, expect)
    check(got == expect, "half close: log end %d, want %d" % (got, expect))

    # partial: whole requests, then half of one more, then close.
    fs = frames(REQUESTS // 4 + 1, b"partial")
    last = fs.pop()
    s = socket.create_connection((b.host, b.port), timeout=30)
    s.sendall(b"".join(fs) + last[:len(last) // 2])
    s.close()
    expect += len(fs) * RECORDS_PER_REQUEST
    got = wait_log_end(b, expect)
    check(got == expect, "partial: log end %d, want %d" % (got, expect))
    check("peer closed in the middle of a frame" in b.log_text(),
          "the partial request was not reported")
    check(log_end(b) == expect, "broker healthy after the partial request")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    io = ap.parse_args().io
    b = Broker(io=io, shards=2, config={"num.partitions": "1",
                                         "laminar.connection.inflight.max": "2"})
    return run_scenario(b, "half close (%s)" % io, lambda: scenario(b))


if __name__ == "__main__":
    sys.exit(main())
