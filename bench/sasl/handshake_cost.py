"""The cost of SASL authentication on a new connection, against a laminar it starts: for N
connections each, the time from connect to the first Metadata answer over PLAINTEXT, SASL PLAIN
and SASL SCRAM-SHA-256/512 (the client's PBKDF2 is computed once, outside the timing, so the
figure is the broker's and the round trips' share). Prints p50/p99 per kind and the ratio to
PLAINTEXT. A figure, not a test.

    /usr/bin/python3 bench/sasl/handshake_cost.py [--laminar build/broker/laminar] [--n 500]
"""
import argparse
import base64
import hashlib
import hmac
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "compat", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402
from kafka_wire import Conn, s32, sbytes, sstr  # noqa: E402

PW = "bench-secret"


class SaslBroker(Broker):
    def __init__(self, binary, **kw):
        self.plain_port = free_port()
        super().__init__(io="uring", shards=2, binary=binary, **kw)

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "SASL_PLAINTEXT://%s:%d,PLAINTEXT://%s:%d" % (self.host, self.port, self.host,
                                                                 self.plain_port)
        return a


def auth(c, mech, token):
    r = c.call(17, 1, sstr(mech))
    assert r.i16() == 0
    r = c.call(36, 1, sbytes(token))
    assert r.i16() == 0, "auth failed"
    r.str()
    return r.bytes()


def scram(c, mech, salted_cache):
    algo = "sha256" if mech.endswith("256") else "sha512"
    cnonce = base64.b64encode(os.urandom(18)).decode()
    first_bare = "n=bench,r=" + cnonce
    r = c.call(17, 1, sstr(mech))
    assert r.i16() == 0
    r = c.call(36, 1, sbytes(("n,," + first_bare).encode()))
    assert r.i16() == 0
    r.str()
    server_first = r.bytes().decode()
    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
    key = (mech, attrs["s"], attrs["i"])
    if key not in salted_cache:
        salted_cache[key] = hashlib.pbkdf2_hmac(algo, PW.encode(), base64.b64decode(attrs["s"]),
                                                int(attrs["i"]))
    salted = salted_cache[key]
    ck = hmac.new(salted, b"Client Key", algo).digest()
    sk = hashlib.new(algo, ck).digest()
    without = "c=biws,r=" + attrs["r"]
    msg = ",".join([first_bare, server_first, without]).encode()
    sig = hmac.new(sk, msg, algo).digest()
    proof = bytes(a ^ b for a, b in zip(ck, sig))
    r = c.call(36, 1, sbytes((without + ",p=" + base64.b64encode(proof).decode()).encode()))
    assert r.i16() == 0, "scram failed"


def run(b, kind, n):
    times, cache = [], {}
    for _ in range(n):
        t0 = time.perf_counter()
        c = Conn(b.host, b.plain_port if kind == "PLAINTEXT" else b.port, "bench")
        if kind == "PLAIN":
            auth(c, "PLAIN", b"\x00bench\x00" + PW.encode())
        elif kind.startswith("SCRAM"):
            scram(c, kind, cache)
        c.call(3, 1, s32(0))
        times.append(time.perf_counter() - t0)
        c.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--laminar", default=os.path.join(HERE, "..", "..", "build", "broker",
                                                      "laminar"))
    ap.add_argument("--n", type=int, default=500)
    a = ap.parse_args()
    cfg = {"sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
           "listener.name.sasl_plaintext.plain.sasl.jaas.config":
               "org.apache.kafka.common.security.plain.PlainLoginModule required "
               "user_bench=\"%s\";" % PW,
           "laminar.scram.credentials": "SCRAM-SHA-256=[name=bench,password=%s];"
                                        "SCRAM-SHA-512=[name=bench,password=%s]" % (PW, PW),
           "laminar.http.listener": ""}
    b = SaslBroker(os.path.abspath(a.laminar), config=cfg)
    try:
        b.start()
        base = None
        for kind in ("PLAINTEXT", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"):
            run(b, kind, 20)  # warm-up
            p50, p99 = run(b, kind, a.n)
            base = base or p50
            print("%-14s connect+auth+Metadata p50 %7.3f ms  p99 %7.3f ms  x%.2f of PLAINTEXT"
                  % (kind, p50 * 1e3, p99 * 1e3, p50 / base))
        b.stop()
    finally:
        b.cleanup()


if __name__ == "__main__":
    main()
