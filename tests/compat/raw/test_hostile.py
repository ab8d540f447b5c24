"""Hostile clients against the broker runtime, one fresh broker per case, for both I/O backends:

  tricklers        two connections announce 100 MiB frames and trickle bytes; a healthy client's
                   requests keep being answered quickly and a 10 MiB request still gets through
                   (frame memory is charged as bytes arrive, not at the size prefix)
  waiters_released connections whose frames wait for memory are freed when their clients close
                   (the broker's fd count returns to where it was), and by the idle sweep when the
                   clients just go quiet
  fd_limit_flood   a broker started with a tiny fd limit (prlimit --nofile=N:N) flooded with
                   connections: accept backs off (log lines bounded, CPU low), open connections
                   are served, and new ones are once the flood closes; malformed frames log a
                   bounded number of lines
  per_ip_limit     max.connections.per.ip and its overrides close the connection over the limit
  max_connections  max.connections: the connection over the limit waits (not closed) until one
                   closes
  creation_rate    max.connection.creation.rate spreads a burst of connects over time
  bpf_burst        the sk_reuseport selector counts connections as it routes them: a burst of
                   non-blocking connects spreads exactly evenly, also one that arrives while
                   other connections close

Usage: test_hostile.py --io uring|epoll [case ...]; $LAMINAR_BIN is the test-only ping broker.
"""

import argparse
import errno
import os
import socket
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from laminar_harness import Broker  # noqa: E402
from test_raw import (API_VERSIONS, XSHARD_ECHO, check, closed_by_peer, frame,  # noqa: E402
                      read_response)

IO = "uring"


class LimitedBroker(Broker):
    """A broker started under `prlimit --nofile=N:N` (soft and hard: the broker raises its soft
    limit to the hard one at start)."""

    def __init__(self, nofile, **kw):
        super().__init__(**kw)
        self.nofile = nofile

    def args(self):
        return ["prlimit", "--nofile=%d:%d" % (self.nofile, self.nofile), "--"] + super().args()


def connect(b, src=None, timeout=10):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src:
        s.bind((src, 0))
    s.settimeout(timeout)
    s.connect((b.host, b.port))
    return s


def ping_on(s, corr=7, timeout=5.0):
    s.sendall(frame(API_VERSIONS, corr))
    got, _ = read_response(s, timeout)
    check(got == corr, "correlation %d, want %d" % (got, corr))


def ping(b, timeout=5.0):
    with connect(b) as s:
        ping_on(s, timeout=timeout)


def fd_count(b):
    return len(os.listdir("/proc/%d/fd" % b.pid))


def cpu_seconds(b):
    with open("/proc/%d/stat" % b.pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_until(pred, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def log_lines(b, text):
    return [line for line in b.log_text().splitlines() if text in line]


# ---- cases -------------------------------------------------------------------------------------

def case_tricklers(b):
    """queued.max.request.bytes 64 MiB, socket.request.max.bytes 100 MiB (defaults)."""
    size = 100 << 20
    tricklers = [connect(b) for _ in range(2)]
    for t in tricklers:
        t.sendall(struct.pack(">i", size) + struct.pack(">hhih", XSHARD_ECHO, 0, 1, 0))
    healthy = connect(b)
    worst, n, t0, corr = 0.0, 0, time.monotonic(), 0
    while time.monotonic() - t0 < 3.0:
        for t in tricklers:
            t.sendall(b"\x00" * 100)
        corr += 1
        t1 = time.monotonic()
        ping_on(healthy, corr, timeout=5.0)
        worst = max(worst, time.monotonic() - t1)
        n += 1
        time.sleep(0.05)
    check(worst < 0.5, "a healthy request took %.2f s while two clients trickled" % worst)
    # A large legitimate request (10 MiB, echoed back) still gets through meanwhile.
    payload = bytes(range(256)) * (10 << 12)
    t1 = time.monotonic()
    healthy.sendall(frame(XSHARD_ECHO, 4242, struct.pack(">ii", 0, 0) + payload))
    got, body = read_response(healthy, timeout=30)
    big_s = time.monotonic() - t1
    check(got == 4242 and body[8:] == payload, "10 MiB request not echoed")
    rss = b.rss_kib()
    print("  %d pings, worst %.3f s; 10 MiB request answered in %.2f s; RSS %d MiB"
          % (n, worst, big_s, rss >> 10))
    for t in tricklers:
        check(not closed_by_peer(t, 0.05), "a trickler was closed")
        t.close()
    healthy.close()


def case_waiters_released(b):
    """queued.max.request.bytes 1 MiB, connections.max.idle.ms 3000, one shard: a request
    holding 1000 KiB for 8 s leaves no room; 40 connections then send the first half of 40 KiB
    requests, which wait for memory. Their clients close: nothing more can complete, the broker
    frees them at once. Waiters that sent whole requests before closing keep them (Kafka serves
    requests received before a close) until memory frees or the idle sweep, like waiters whose
    clients stay silent: both are closed by connections.max.idle.ms, not kept forever."""
    time.sleep(0.5)  # the harness's readiness probe connection must be gone first
    base = fd_count(b)
    holder = connect(b)
    holder.sendall(frame(XSHARD_ECHO, 1, struct.pack(">ii", 0, 8000) + b"h" * (1000 << 10)))
    time.sleep(0.3)
    big = frame(XSHARD_ECHO, 2, struct.pack(">ii", 0, 0) + b"w" * (40 << 10))

    def open_waiters(n, data=big):
        ws = []
        for _ in range(n):
            w = connect(b)
            w.setblocking(False)
            try:
                w.send(data)
            except BlockingIOError:
                pass
            ws.append(w)
        return ws

    waiters = open_waiters(40, big[:len(big) // 2])
    check(wait_until(lambda: fd_count(b) >= base + 41, 5),
          "waiters not accepted (%d fds, %d before)" % (fd_count(b), base))
    time.sleep(0.5)
    held = fd_count(b)
    for w in waiters:  # they wait for memory: no response yet
        try:
            data = w.recv(4)
            raise AssertionError("a waiter got %r" % data)
        except BlockingIOError:
            pass
    for w in waiters:
        w.close()
    t0 = time.monotonic()
    ok = wait_until(lambda: fd_count(b) <= base + 1, 2.5)
    print("  broker fds: %d idle, %d with 40 waiters, %d %.2f s after their clients closed"
          % (base, held, fd_count(b), time.monotonic() - t0))
    check(ok, "waiting connections not released after their clients closed (%d fds, %d before)"
          % (fd_count(b), base))
    # Waiters whose clients stay: closed by connections.max.idle.ms (3 s), not kept forever.
    waiters = open_waiters(5)
    t0 = time.monotonic()
    closed = all(closed_by_peer(w, 7.0 - (time.monotonic() - t0)) for w in waiters)
    check(closed, "waiting connections outlived connections.max.idle.ms")
    print("  5 silent waiters closed by the idle sweep after %.1f s" % (time.monotonic() - t0))
    for w in waiters:
        w.close()
    # Whole requests, then the client's close: held like silent waiters, then freed.
    base_now = fd_count(b)
    waiters = open_waiters(5)
    check(wait_until(lambda: fd_count(b) >= base_now + 5, 5), "whole-request waiters not accepted")
    for w in waiters:
        w.close()
    t0 = time.monotonic()
    ok = wait_until(lambda: fd_count(b) <= base_now, 7.0)
    check(ok, "closed whole-request waiters not freed (%d fds, %d before)"
          % (fd_count(b), base_now))
    print("  5 whole-request waiters whose clients closed freed after %.1f s"
          % (time.monotonic() - t0))
    got, _ = read_response(holder, timeout=15)
    check(got == 1, "holder's request lost")
    holder.close()
    ping(b)


def case_fd_limit_flood(b):
    """Broker under nofile 64, one shard: 300 connections. Accepts hit EMFILE; the broker backs
    off instead of spinning."""
    flood = []
    for _ in range(300):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex((b.host, b.port))
        check(rc in (0, errno.EINPROGRESS), "connect: %s" % os.strerror(rc))
        flood.append(s)
    time.sleep(1.0)
    check(b.alive(), "broker died under the flood")
    cpu0, t0 = cpu_seconds(b), time.monotonic()
    lines0 = len(b.log_text().splitlines())
    time.sleep(3.0)
    cpu = (cpu_seconds(b) - cpu0) / (time.monotonic() - t0)
    emfile = log_lines(b, "accept: ")
    grew = len(b.log_text().splitlines()) - lines0
    print("  flood: %d accept lines, log grew %d lines in 3 s, CPU %.0f%%, %d broker fds"
          % (len(emfile), grew, cpu * 100, fd_count(b)))
    check(any("Too many open files" in line for line in emfile), "no EMFILE: limit not reached")
    check(len(emfile) <= 12, "%d accept log lines" % len(emfile))
    check(cpu < 0.3, "broker used %.0f%% CPU while out of descriptors" % (cpu * 100))
    # Connections the broker did accept are served meanwhile.
    served = 0
    for s in flood[:5]:
        s.setblocking(True)
        s.settimeout(5)
        ping_on(s, 11)
        served += 1
    check(served == 5, "accepted connections not served")
    for s in flood:
        s.close()
    t1 = time.monotonic()
    check(wait_until(lambda: _ping_ok(b), 8.0, 0.2), "broker does not serve after the flood")
    print("  served a new connection %.2f s after the flood closed" % (time.monotonic() - t1))
    # Malformed frames: one warning each, but a bounded number of lines.
    before = len(log_lines(b, "frame length rejected"))
    for _ in range(100):
        with connect(b) as s:
            s.sendall(b"\xff\xff\xff\xf0garbage")
            closed_by_peer(s, 2.0)
    n = len(log_lines(b, "frame length rejected")) - before
    print("  100 malformed frames: %d log lines" % n)
    check(1 <= n <= 10, "%d lines for 100 malformed frames" % n)
    ping(b)


def _ping_ok(b):
    try:
        ping(b, timeout=1.0)
        return True
    except Exception:
        return False


def case_per_ip_limit(b):
    """max.connections.per.ip=3, overrides 127.0.0.2:5."""
    time.sleep(0.5)  # the harness's readiness probe connection must be gone first
    for src, limit in (("127.0.0.1", 3), ("127.0.0.2", 5)):
        conns = [connect(b, src) for _ in range(limit)]
        for i, s in enumerate(conns):
            ping_on(s, i + 1)
        extra = connect(b, src)
        check(closed_by_peer(extra, 3.0), "connection %d from %s not closed" % (limit + 1, src))
        extra.close()
        for s in conns:  # still served
            ping_on(s, 99)
        conns[0].close()
        time.sleep(0.3)
        again = connect(b, src)
        ping_on(again, 5)
        again.close()
        for s in conns[1:]:
            s.close()
    check(log_lines(b, "max.connections.per.ip"), "no log line for the refused connection")
    time.sleep(0.3)


def case_max_connections(b):
    """max.connections=4 over 2 shards: the fifth connection waits, then is served when one of
    the four closes."""
    time.sleep(0.5)  # the harness's readiness probe connection must be gone first
    conns = [connect(b) for _ in range(4)]
    for i, s in enumerate(conns):
        ping_on(s, i + 1)
    fifth = connect(b)  # the kernel completes the handshake; the broker does not take it yet
    fifth.sendall(frame(API_VERSIONS, 55))
    fifth.settimeout(1.0)
    try:
        data = fifth.recv(4)
        raise AssertionError("fifth connection served (%r) over max.connections" % data)
    except socket.timeout:
        pass
    conns[0].close()
    t0 = time.monotonic()
    got, _ = read_response(fifth, timeout=5)
    check(got == 55, got)
    print("  fifth connection served %.2f s after one of four closed" % (time.monotonic() - t0))
    for s in conns[1:] + [fifth]:
        s.close()


def case_creation_rate(b):
    """max.connection.creation.rate=5: 15 connections at once are all served, over about 2 s
    (a burst of 5, then one per 200 ms); none is closed. The rate is one budget for both
    shards, so which connections get the burst depends on which shard accepts first: the
    answers are timed in the order they arrive, not in the order the connections were made."""
    import selectors
    t0 = time.monotonic()
    conns = [connect(b) for _ in range(15)]
    for i, s in enumerate(conns):
        s.sendall(frame(API_VERSIONS, i + 1))
    sel = selectors.DefaultSelector()
    for i, s in enumerate(conns):
        sel.register(s, selectors.EVENT_READ, i)
    times = []
    deadline = t0 + 20
    while len(times) < len(conns):
        left = deadline - time.monotonic()
        check(left > 0, "only %d of 15 connections served after 20 s" % len(times))
        for key, _ in sel.select(timeout=left):
            i = key.data
            got, _ = read_response(conns[i], timeout=10)
            check(got == i + 1, got)
            times.append(time.monotonic() - t0)
            sel.unregister(conns[i])
    sel.close()
    print("  15 connections served after %s s" % ", ".join("%.1f" % t for t in times[::3]))
    check(times[-1] >= 1.4, "15 connections served in %.2f s at 5 per second" % times[-1])
    check(times[0] < 1.0, "the first connection served waited %.2f s" % times[0])
    for s in conns:
        s.close()


def _burst(b, n, old=(), pause_every=0):
    """n non-blocking connects; every pause_every connects, a short pause (the shards accept
    meanwhile) and one of `old` closed. Returns the sockets, once each has been served."""
    socks, old = [], list(old)
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        s.connect_ex((b.host, b.port))
        socks.append(s)
        if pause_every and i % pause_every == pause_every - 1:
            if old:
                old.pop().close()
            time.sleep(0.0005)
    for s in socks:
        s.setblocking(True)
        s.settimeout(5)
        ping_on(s, 3)  # also waits until each one is accepted
    return socks


def _spread(b, socks):
    ours = set("127.0.0.1:%d " % s.getsockname()[1] for s in socks)
    per_shard = {}
    for line in b.log_text().splitlines():
        if " open from " in line and any(p in line for p in ours):
            shard = line.split("shard=")[1].split()[0]
            per_shard[shard] = per_shard.get(shard, 0) + 1
    return per_shard


def case_bpf_burst(b):
    log = b.log_text()
    if "BPF selector not loaded" in log or "built without BPF" in log:
        print("  SKIP bpf_burst: " + [l for l in log.splitlines() if "BPF" in l][0])
        return
    check("BPF least-connections selector attached" in log, "selector not attached")
    first = _burst(b, 30)
    spread = _spread(b, first)
    print("  burst of 30: %r" % spread)
    check(sorted(spread.values()) == [10, 10, 10], "spread %r" % spread)
    # 150 more while the first 30 close (the shards accept and close during the burst), then,
    # once those closes are counted, 150 more: the 300 open at the end are spread exactly.
    second = _burst(b, 150, old=first, pause_every=5)
    time.sleep(0.3)
    second += _burst(b, 150)
    spread = _spread(b, second)
    print("  300 while 30 closed: %r" % spread)
    check(sorted(spread.values()) == [100, 100, 100], "spread %r" % spread)
    for s in second:
        s.close()


CASES = {
    "tricklers": (case_tricklers, dict(shards=1, config={
        "socket.request.max.bytes": 100 << 20, "queued.max.request.bytes": 64 << 20})),
    "waiters_released": (case_waiters_released, dict(shards=1, config={
        "queued.max.request.bytes": 1 << 20, "connections.max.idle.ms": 3000})),
    "fd_limit_flood": (case_fd_limit_flood, dict(shards=1, nofile=64)),
    "per_ip_limit": (case_per_ip_limit, dict(shards=2, config={
        "max.connections.per.ip": 3, "max.connections.per.ip.overrides": "127.0.0.2:5"})),
    "max_connections": (case_max_connections, dict(shards=2, config={"max.connections": 4})),
    "creation_rate": (case_creation_rate, dict(shards=2, config={
        "max.connection.creation.rate": 5})),
    "bpf_burst": (case_bpf_burst, dict(shards=3, extra_args=["--log-level", "debug"])),
}


def run_case(name):
    fn, kw = CASES[name]
    kw = dict(kw)
    nofile = kw.pop("nofile", None)
    if nofile:
        b = LimitedBroker(nofile, io=IO, **kw)
    else:
        b = Broker(io=IO, **kw)
    t0 = time.monotonic()
    try:
        b.start()
        fn(b)
        check(b.alive(), "broker died")
        rc = b.stop()
        check(rc == 0, "exit status %s" % rc)
        print("PASS %s (%.1f s)" % (name, time.monotonic() - t0))
        return True
    except Exception:
        traceback.print_exc()
        print("FAIL %s; log tail:\n%s" % (name, b.log_text()[-3000:]))
        return False
    finally:
        b.cleanup()


def main():
    global IO
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    IO = args.io
    ok = True
    for name in args.cases or list(CASES):
        ok = run_case(name) and ok
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
