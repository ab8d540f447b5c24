"""What the shard runtime gives a cluster, over raw sockets against the test-only ping broker
(ping_broker.c), on one I/O backend:

- outbound connections (broker_peer): a "forward" request makes broker A connect to broker B
  and relay requests; responses are matched to their requests (several in flight, each
  answered with its own index), the in-flight bound refuses the excess, request headers v1 and
  v2 and response headers v0 and v1 parse; a refused connect, a peer killed mid-request, a
  request timeout and a connect timeout each come back as an error, and A keeps serving;
- UDP: each shard echoes datagrams sent to its UDP port (many datagrams, every shard);
- a dispatch table per listener: an API served on the INTERNAL listener is closed on the
  client one and the other way round; each listener reports its own advertised endpoint.

Usage: test_cluster_io.py --io uring|epoll [case ...]
$LAMINAR_BIN is the ping broker.
"""

import argparse
import os
import socket
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402

IO = "uring"
API_VERSIONS, XSHARD_ECHO, FORWARD, UDP_PORTS, INTERNAL_PING, WHOAMI = 18, 100, 103, 104, 105, 106
# LM_E_* codes (common/lm_err.h) as the forward handler reports them (negated)
LM_E_IO, LM_E_CLOSED, LM_E_TIMEOUT = 5, 14, 23
ECONNREFUSED, ECONNRESET = 111, 104


def frame(api_key, corr, body=b"", version=0, client_id=b"raw", flexible=False):
    hdr = struct.pack(">hhih", api_key, version, corr, len(client_id)) + client_id
    if flexible:
        hdr += b"\x00"
    return struct.pack(">i", len(hdr) + len(body)) + hdr + body


def recv_exact(s, n, timeout=20.0):
    s.settimeout(timeout)
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


def read_response(s, timeout=20.0):
    (size,) = struct.unpack(">i", recv_exact(s, 4, timeout))
    body = recv_exact(s, size, timeout)
    return struct.unpack(">i", body[:4])[0], body[4:]


def closed_by_peer(s, timeout=5.0):
    s.settimeout(timeout)
    try:
        while True:
            if not s.recv(65536):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def request(port, api_key, body=b"", version=0, flexible=False, timeout=20.0):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(frame(api_key, 7, body, version, flexible=flexible))
        corr, resp = read_response(s, timeout)
        check(corr == 7, "correlation id %d" % corr)
        return resp


def forward(a_port, to_port, api_key, payload=b"", count=1, version=0, flexible=False,
            request_timeout_ms=0, connect_timeout_ms=0, timeout=20.0):
    """Asks broker A (a_port) to relay `count` requests to 127.0.0.1:to_port. Returns
    (status, errno, accepted, refused, ok, matched, first response body)."""
    body = struct.pack(">iiiihhb", to_port, request_timeout_ms, connect_timeout_ms, count,
                       api_key, version, 1 if flexible else 0) + payload
    resp = request(a_port, FORWARD, body, timeout=timeout)
    status, err, accepted, refused, ok, matched = struct.unpack(">hiiiii", resp[:22])
    return status, err, accepted, refused, ok, matched, resp[22:]


# ---- cases -------------------------------------------------------------------------------------

def case_forward_matches_responses(a, b):
    # ApiVersions v0 relayed: B's body comes back whole (header v1 request, v0 response).
    st, err, acc, ref, ok, _, body = forward(a.port, b.port, API_VERSIONS)
    check((st, acc, ref, ok) == (0, 1, 0, 1),
          "forward ApiVersions: %r" % ((st, err, acc, ref, ok),))
    check(struct.unpack(">hi", body[:6]) == (0, 3), "relayed ApiVersions body %r" % body[:8])
    # ApiVersions v3: request header v2 (tagged fields) to B; its response header stays v0.
    st, _, _, _, ok, _, body = forward(a.port, b.port, API_VERSIONS, version=3, flexible=True)
    check(st == 0 and ok == 1 and body[:2] == b"\x00\x00", "flexible ApiVersions relay")
    # whoami is flexible from v0 at B: response header v1, whose tagged fields A skips.
    st, _, _, _, ok, _, body = forward(a.port, b.port, WHOAMI, flexible=True)
    check(st == 0 and ok == 1, "whoami relay status %d" % st)
    (hl,) = struct.unpack(">h", body[1:3])
    check(body[3:3 + hl] == b"127.0.0.1" and struct.unpack(">i", body[3 + hl:])[0] == b.port,
          "whoami through a v1 response header: %r" % body)
    # 10 echo requests on one connection: at most 4 in flight (the rest refused with
    # LM_E_AGAIN), each answered with its own index; B's shards answer after different delays
    # but in request order, as a Kafka broker does.
    st, _, acc, ref, ok, matched, body = forward(a.port, b.port, XSHARD_ECHO,
                                                 struct.pack(">ii", 2, 30) + b"relayed",
                                                 count=10)
    check((st, acc, ref, ok, matched) == (0, 4, 6, 4, 4),
          "in-flight bound and matching: %r" % ((st, acc, ref, ok, matched),))
    check(body[8:-4] == b"relayed", "relayed echo payload %r" % body)


def case_forward_many_concurrent(a, b):
    # 40 clients forwarding at once over their own outbound connections, across A's shards.
    socks = []
    for i in range(40):
        s = socket.create_connection(("127.0.0.1", a.port), timeout=10)
        body = struct.pack(">iiiihhb", b.port, 0, 0, 3, XSHARD_ECHO, 0, 0) + \
            struct.pack(">ii", i % 3, i % 5) + b"c%d" % i
        s.sendall(frame(FORWARD, i, body))
        socks.append(s)
    for i, s in enumerate(socks):
        corr, resp = read_response(s)
        st, _, acc, _, ok, matched = struct.unpack(">hiiiii", resp[:22])
        check(corr == i and (st, acc, ok, matched) == (0, 3, 3, 3),
              "client %d: %r" % (i, (corr, st, acc, ok, matched)))
        check(resp[22 + 8:-4] == b"c%d" % i, "client %d payload %r" % (i, resp[22:]))
        s.close()


def case_connect_refused(a, b):
    port = free_port()  # nothing listens there
    t0 = time.monotonic()
    st, err, acc, _, ok, _, _ = forward(a.port, port, API_VERSIONS, count=3)
    check((st, err, acc, ok) == (LM_E_IO, ECONNREFUSED, 3, 0),
          "refused connect: status %d errno %d accepted %d ok %d" % (st, err, acc, ok))
    check(time.monotonic() - t0 < 5, "refusal took %.1f s" % (time.monotonic() - t0))


def case_request_timeout(a, b):
    # B answers after 3 s; A's request timeout is 300 ms: the connection closes, the call fails
    # with LM_E_TIMEOUT well before B would have answered.
    t0 = time.monotonic()
    st, err, acc, _, ok, _, _ = forward(a.port, b.port, XSHARD_ECHO,
                                        struct.pack(">ii", 0, 3000) + b"slow", count=2,
                                        request_timeout_ms=300)
    took = time.monotonic() - t0
    check((st, acc, ok) == (LM_E_TIMEOUT, 2, 0), "timeout: %r" % ((st, err, acc, ok),))
    check(0.25 < took < 2.5, "request timeout after %.2f s" % took)


def case_connect_timeout(a, b):
    # A listener whose accept queue is full and never accepted: further SYNs are dropped, so a
    # connect hangs until A's connect timeout (500 ms).
    lst = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lst.bind(("127.0.0.1", 0))
    lst.listen(0)
    port = lst.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            f.setblocking(False)
            f.connect_ex(("127.0.0.1", port))
            fillers.append(f)
        time.sleep(0.2)
        t0 = time.monotonic()
        st, err, acc, _, ok, _, _ = forward(a.port, port, API_VERSIONS, connect_timeout_ms=500,
                                            request_timeout_ms=60000)
        took = time.monotonic() - t0
        check((st, ok) == (LM_E_TIMEOUT, 0), "connect timeout: %r" % ((st, err, acc, ok),))
        check(0.4 < took < 4, "connect timeout after %.2f s" % took)
    finally:
        for f in fillers:
            f.close()
        lst.close()


def case_peer_dies_mid_request(a, b):
    # B is killed (-9) while it holds a relayed request: A's call fails (peer closed or reset)
    # at once, not at the 30 s request timeout; A keeps serving; B comes back for later cases.
    with socket.create_connection(("127.0.0.1", a.port), timeout=10) as s:
        body = struct.pack(">iiiihhb", b.port, 0, 0, 1, XSHARD_ECHO, 0, 0) + \
            struct.pack(">ii", 1, 5000) + b"doomed"
        s.sendall(frame(FORWARD, 9, body))
        time.sleep(0.5)
        t0 = time.monotonic()
        b.kill9()
        corr, resp = read_response(s, timeout=10)
        took = time.monotonic() - t0
    st, err, acc, _, ok, _ = struct.unpack(">hiiiii", resp[:22])
    check(corr == 9 and acc == 1 and ok == 0, "dead peer: %r" % ((corr, st, err, acc, ok),))
    check(st == LM_E_CLOSED or (st == LM_E_IO and err == ECONNRESET),
          "dead peer status %d errno %d" % (st, err))
    check(took < 3, "dead peer noticed after %.2f s" % took)
    b.restart()
    st, _, _, _, ok, _, _ = forward(a.port, b.port, API_VERSIONS)
    check(st == 0 and ok == 1, "forward after the peer restarted")


def case_udp_echo(a, b):
    resp = request(a.port, UDP_PORTS)
    (n,) = struct.unpack(">i", resp[:4])
    ports = struct.unpack(">%dH" % n, resp[4:4 + 2 * n])
    check(n == a.shards and all(ports), "udp ports %r" % (ports,))
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("127.0.0.1", 0))
    u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    u.settimeout(0.5)
    got = {}
    total, rounds = 0, 0
    # 300 datagrams per shard in bursts of 50 (sizes 1 .. 1400 bytes), every byte checked.
    for shard, port in enumerate(ports):
        want = {}
        for burst in range(6):
            for k in range(50):
                i = burst * 50 + k
                data = struct.pack(">i", i) + bytes((i + j) & 255 for j in range(i * 7 % 1397))
                want[i] = data
                u.sendto(data, ("127.0.0.1", port))
            deadline = time.monotonic() + 5
            while len(got.get(shard, {})) < (burst + 1) * 50 and time.monotonic() < deadline:
                try:
                    d, src = u.recvfrom(65536)
                except socket.timeout:
                    continue
                sid = struct.unpack(">i", d[:4])[0]
                check(src == ("127.0.0.1", ports[sid]), "echo from %r" % (src,))
                (i,) = struct.unpack(">i", d[4:8])
                check(d[4:] == want[i] if sid == shard else True, "echo %d differs" % i)
                got.setdefault(sid, {})[i] = True
            rounds += 1
        total += len(got.get(shard, {}))
        check(len(got.get(shard, {})) == 300,
              "shard %d echoed %d of 300 datagrams" % (shard, len(got.get(shard, {}))))
    # a 60000-byte datagram (one provided buffer holds up to 64 KiB) comes back whole
    big = bytes(i * 31 & 255 for i in range(60000))
    u.sendto(big, ("127.0.0.1", ports[-1]))
    deadline = time.monotonic() + 5
    back = None
    while back is None and time.monotonic() < deadline:
        try:
            d, _ = u.recvfrom(65536)
        except socket.timeout:
            continue
        if len(d) == 60004:
            back = d
    check(back is not None and back[4:] == big, "60000-byte datagram not echoed whole")
    u.close()
    check(total == 300 * n, "total %d" % total)


def case_listener_tables(a, b):
    # a.port is PLAINTEXT (client table), a.internal the INTERNAL listener's own table.
    check(request(a.internal, INTERNAL_PING) == b"internal", "internal ping on INTERNAL")
    for port, api, what in ((a.port, INTERNAL_PING, "internal API on the client listener"),
                            (a.internal, XSHARD_ECHO, "client API on the internal listener")):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(frame(api, 1, struct.pack(">ii", 0, 0)))
            check(closed_by_peer(s), what + " was not closed")
    # both serve ApiVersions; each reports its own advertised endpoint (listener index too)
    check(struct.unpack(">hi", request(a.internal, API_VERSIONS)[:6]) == (0, 3), "ApiVersions")
    for port, idx, host, adv_port in ((a.port, 0, b"127.0.0.1", a.port),
                                      (a.internal, 1, b"internal.example", a.internal + 1000)):
        body = request(port, WHOAMI, flexible=True)
        # response header v1: an empty tagged-field byte, then the body
        check(body[0] == 0, "header v1 tags %r" % body[:2])
        body = body[1:]
        (hl,) = struct.unpack(">h", body[1:3])
        got = (body[0], body[3:3 + hl], struct.unpack(">i", body[3 + hl:])[0])
        check(got == (idx, host, adv_port), "whoami on %d: %r" % (port, got))
    # forwarding works from the internal listener too
    st, _, _, _, ok, _, _ = forward(a.internal, b.port, API_VERSIONS)
    check(st == 0 and ok == 1, "forward from the internal listener")
    check(a.alive() and "unknown api key 105" in a.log_text(), "refusal logged")


CASES = [case_forward_matches_responses, case_forward_many_concurrent, case_connect_refused,
         case_request_timeout, case_connect_timeout, case_udp_echo, case_listener_tables,
         case_peer_dies_mid_request]


def main():
    global IO
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("cases", nargs="*")
    args = ap.parse_args()
    IO = args.io
    selected = [c for c in CASES if not args.cases or c.__name__[5:] in args.cases]
    internal = free_port()
    port = free_port()
    listeners = "PLAINTEXT://127.0.0.1:%d,INTERNAL://127.0.0.1:%d" % (port, internal)
    a = Broker(io=IO, shards=3, port=port, extra_args=[
        "--listeners", listeners,
        "--advertised-listeners", "PLAINTEXT://127.0.0.1:%d,INTERNAL://internal.example:%d"
        % (port, internal + 1000),
        "--config", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
        "--config", "inter.broker.listener.name=INTERNAL"])
    a.internal = internal
    b = Broker(io=IO, shards=2)
    ok = True
    try:
        a.start()
        b.start()
        check(("%s backend" % ("io_uring" if IO == "uring" else "epoll")) in a.log_text(),
              "wrong backend")
        for case in selected:
            t0 = time.monotonic()
            try:
                case(a, b)
                check(a.alive(), "broker A died")
                print("PASS %s (%.1f s)" % (case.__name__[5:], time.monotonic() - t0))
            except Exception:
                ok = False
                traceback.print_exc()
                print("FAIL %s" % case.__name__[5:])
                print("A log:\n" + a.log_text()[-3000:])
                if not a.alive():
                    a.restart()
                if not b.alive():
                    b.restart()
        for name, br in (("A", a), ("B", b)):
            rc = br.stop()
            if rc != 0:
                ok = False
                print("FAIL broker %s exit status %s; log tail:\n%s"
                      % (name, rc, br.log_text()[-4000:]))
            if "ERROR: AddressSanitizer" in br.log_text() or "LeakSanitizer" in br.log_text():
                ok = False
                print("FAIL broker %s sanitizer report:\n%s" % (name, br.log_text()[-6000:]))
    finally:
        a.cleanup()
        b.cleanup()
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
