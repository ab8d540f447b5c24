#!/usr/bin/python3
"""Capture record batches written by a real client (librdkafka via confluent_kafka).

Runs a tiny fake broker on 127.0.0.1 (free port) that answers just enough of the protocol for a
producer: ApiVersions (error 35 + v0 body, KIP-511), Metadata v0/v1 (one topic, one partition,
led by itself) and Produce v3-v7 (records captured, success answered). For each codec it produces
the five records below and writes the batch bytes of the first Produce request as hex to
<codec>.hex next to this script. Not run by the build or by ctest; see README.md.

Usage: /usr/bin/python3 capture_golden.py
"""
import os
import socket
import struct
import sys
import threading

import confluent_kafka

HERE = os.path.dirname(os.path.abspath(__file__))
TOPIC = "golden"
BASE_TS = 1700000000000

# (key, value, headers, timestamp): the test (test_batch_golden.c) expects exactly these.
RECORDS = [
    (b"k1", b"v1", [("h1", b"x"), ("h2", None)], BASE_TS + 1),
    (None, b"value-2", [], BASE_TS + 2),
    (b"k3", None, [], BASE_TS + 3),
    (b"", b"", [("empty", b"")], BASE_TS + 4),
    (b"k5", b"abc" * 700, [], BASE_TS + 5),
]

# api_key: (min, max) we advertise. librdkafka 2.0 gates features on these (rdkafka_feature.c):
# record batch v2 needs Produce 3 + Fetch 4, compression needs Produce 0 (PROTOCOL-NOTES.md),
# LZ4 needs FindCoordinator 0 (a 0.8.2 broker proxy), zstd needs Produce 7 + Fetch 10 (KIP-110).
# Only ApiVersions, Metadata and Produce are ever answered.
API_RANGES = {0: (0, 7), 1: (0, 10), 3: (0, 1), 10: (0, 0), 18: (0, 0)}


def s16(b, o):
    (n,) = struct.unpack_from(">h", b, o)
    return n, o + 2


def read_string(b, o):
    n, o = s16(b, o)
    if n < 0:
        return None, o
    return b[o:o + n].decode(), o + n


def enc_string(s):
    if s is None:
        return struct.pack(">h", -1)
    e = s.encode()
    return struct.pack(">h", len(e)) + e


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError
        buf += chunk
    return buf


class FakeBroker:
    def __init__(self):
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.captured = []
        self.lock = threading.Lock()
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(conn,), daemon=True).start()

    def serve(self, conn):
        try:
            while True:
                (size,) = struct.unpack(">i", recv_exact(conn, 4))
                req = recv_exact(conn, size)
                api_key, api_version, corr = struct.unpack_from(">hhi", req, 0)
                _client_id, o = read_string(req, 8)
                body = self.handle(api_key, api_version, req, o)
                if body is None:
                    continue
                resp = struct.pack(">i", corr) + body
                conn.sendall(struct.pack(">i", len(resp)) + resp)
        except (EOFError, ConnectionError):
            pass
        finally:
            conn.close()

    def handle(self, api_key, version, req, o):
        if api_key == 18:
            # Any version: error 35 (or 0 at v0) with a v0 body (KIP-511).
            err = 0 if version == 0 else 35
            body = struct.pack(">hi", err, len(API_RANGES))
            for k, (lo, hi) in sorted(API_RANGES.items()):
                body += struct.pack(">hhh", k, lo, hi)
            return body
        if api_key == 3:
            brokers = struct.pack(">i", 1) + struct.pack(">i", 1) + enc_string("127.0.0.1")
            brokers += struct.pack(">i", self.port)
            if version >= 1:
                brokers += enc_string(None)  # rack
            body = brokers
            if version >= 1:
                body += struct.pack(">i", 1)  # controller id
            body += struct.pack(">i", 1) + struct.pack(">h", 0) + enc_string(TOPIC)
            if version >= 1:
                body += b"\x00"  # is_internal
            body += struct.pack(">i", 1)  # one partition
            body += struct.pack(">hii", 0, 0, 1)  # error, partition 0, leader 1
            body += struct.pack(">ii", 1, 1) + struct.pack(">ii", 1, 1)  # replicas, isr
            return body
        if api_key == 0:
            # v3..v7 share the request layout; v5 adds log_start_offset to the response.
            assert 3 <= version <= 7, version
            _txn, o = read_string(req, o)
            acks, _timeout = struct.unpack_from(">hi", req, o)
            o += 6
            (ntopics,) = struct.unpack_from(">i", req, o)
            o += 4
            out = struct.pack(">i", ntopics)
            for _ in range(ntopics):
                name, o = read_string(req, o)
                (nparts,) = struct.unpack_from(">i", req, o)
                o += 4
                out += enc_string(name) + struct.pack(">i", nparts)
                for _ in range(nparts):
                    part, rlen = struct.unpack_from(">ii", req, o)
                    o += 8
                    with self.lock:
                        self.captured.append(req[o:o + rlen])
                    o += rlen
                    out += struct.pack(">ihqq", part, 0, 0, -1)
                    if version >= 5:
                        out += struct.pack(">q", 0)  # log_start_offset
            out += struct.pack(">i", 0)  # throttle
            return None if acks == 0 else out
        raise RuntimeError("unexpected api key %d v%d" % (api_key, version))


def capture(codec):
    broker = FakeBroker()
    p = confluent_kafka.Producer({
        "bootstrap.servers": "127.0.0.1:%d" % broker.port,
        "compression.codec": codec,
        "linger.ms": 200,
        "acks": 1,
        "api.version.request": True,
    })
    for key, value, headers, ts in RECORDS:
        p.produce(TOPIC, value=value, key=key, headers=headers, timestamp=ts, partition=0)
    left = p.flush(15)
    if left or not broker.captured:
        sys.exit("%s: nothing captured (%d left)" % (codec, left))
    batch = broker.captured[0]
    with open(os.path.join(HERE, codec + ".hex"), "w") as f:
        for i in range(0, len(batch), 32):
            f.write(batch[i:i + 32].hex() + "\n")
    print("%s: %d bytes, librdkafka %s" % (codec, len(batch), confluent_kafka.libversion()[0]))


if __name__ == "__main__":
    for c in ["none", "gzip", "snappy", "lz4", "zstd"]:
        capture(c)
