"""The cost of TLS on produce and fetch throughput, against a laminar it starts with a PLAINTEXT
and an SSL listener (certificates made with the openssl CLI in the broker's temp dir). For each
listener, bench_produce writes -n records of -s bytes (acks=1) to a topic of its own, then
bench_consume reads them back from the beginning; the MB/s of both and the SSL/PLAINTEXT ratio
are printed, from the same invocation. A figure, not a test.

    /usr/bin/python3 bench/tls/tls_cost.py [--build build-rel] [--io uring|epoll]
        [--records 300000] [--size 1024] [--partitions 4] [--rounds 2]

Each listener runs --rounds times, alternating, and the best round counts (the machine is
shared; the best is the least disturbed). The client's own TLS work (librdkafka, OpenSSL) runs
on the same machine and is part of the figure, as the broker's is.
"""
import argparse
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402


def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


class TlsBenchBroker(Broker):
    """PLAINTEXT on plain_port, SSL on the harness' port."""

    def __init__(self, binary, io, shards):
        self.plain_port = free_port()
        super().__init__(io=io, shards=shards, binary=binary)
        d = self.tmp
        openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
                "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench ca")
        openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
                "broker.csr", "-subj", "/CN=localhost")
        with open(os.path.join(d, "san.ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        openssl(d, "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.ext")
        with open(os.path.join(d, "store.pem"), "w") as f:
            f.write(open(os.path.join(d, "broker.key")).read())
            f.write(open(os.path.join(d, "broker.pem")).read())
        self.ca = os.path.join(d, "ca.pem")
        self.config.update({"ssl.keystore.type": "PEM",
                            "ssl.keystore.location": os.path.join(d, "store.pem"),
                            "laminar.http.listener": "", "log.segment.bytes": str(1 << 30)})

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "SSL://%s:%d,PLAINTEXT://%s:%d" % (self.host, self.port, self.host,
                                                     self.plain_port)
        return a


def result(out):
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if m is None:
        raise RuntimeError("no RESULT line:\n" + out)
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def run_tool(tool, bootstrap, topic, args, extra):
    cmd = [tool, "-b", bootstrap, "-t", topic] + args
    for kv in extra:
        cmd += ["-X", kv]
    p = subprocess.run(cmd, capture_output=True, timeout=300)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    if p.returncode != 0:
        raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), out[-2000:]))
    return result(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build-rel"))
    ap.add_argument("--io", default="uring")
    ap.add_argument("--shards", type=int, default=1)
    ap.add_argument("--records", type=int, default=300000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    laminar = os.path.join(a.build, "broker", "laminar")
    produce = os.path.join(a.build, "bench", "broker", "bench_produce")
    consume = os.path.join(a.build, "bench", "broker", "bench_consume")
    b = TlsBenchBroker(laminar, a.io, a.shards)
    best = {}
    try:
        b.start()
        kinds = {
            "PLAINTEXT": ("%s:%d" % (b.host, b.plain_port), []),
            "SSL": ("%s:%d" % (b.host, b.port),
                    ["security.protocol=ssl", "ssl.ca.location=" + b.ca]),
        }
        for rnd in range(a.rounds):
            for kind, (bootstrap, extra) in kinds.items():
                topic = "tls-bench-%s-%d" % (kind.lower(), rnd)
                common = ["-n", str(a.records), "-s", str(a.size), "-p", str(a.partitions)]
                pr = run_tool(produce, bootstrap, topic, common + ["-a", "1"], extra)
                cr = run_tool(consume, bootstrap, topic, common, extra)
                p_mb, c_mb = float(pr["mb_s"]), float(cr["mb_s"])
                print("round %d %-9s produce %8.1f MB/s   fetch %8.1f MB/s" % (rnd, kind, p_mb,
                                                                              c_mb))
                old = best.get(kind, (0.0, 0.0))
                best[kind] = (max(old[0], p_mb), max(old[1], c_mb))
    finally:
        b.cleanup()
    pt, ssl = best["PLAINTEXT"], best["SSL"]
    print("\nbackend %s, %d shard(s), %d records of %d bytes, %d partitions, best of %d:" % (
        a.io, a.shards, a.records, a.size, a.partitions, a.rounds))
    print("%-10s %14s %14s" % ("", "produce MB/s", "fetch MB/s"))
    print("%-10s %14.1f %14.1f" % ("PLAINTEXT", pt[0], pt[1]))
    print("%-10s %14.1f %14.1f" % ("SSL", ssl[0], ssl[1]))
    print("%-10s %14.2f %14.2f" % ("SSL/PLAIN", ssl[0] / pt[0], ssl[1] / pt[1]))
    print("RESULT plain_produce_mb_s=%.1f plain_fetch_mb_s=%.1f ssl_produce_mb_s=%.1f "
          "ssl_fetch_mb_s=%.1f produce_ratio=%.3f fetch_ratio=%.3f" % (
              pt[0], pt[1], ssl[0], ssl[1], ssl[0] / pt[0], ssl[1] / pt[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
