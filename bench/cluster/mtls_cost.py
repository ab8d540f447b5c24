"""The cost of node-to-node TLS on replicated produce: a 3-node laminar cluster (127.0.0.1..3,
combined mode) whose CONTROLLER listener is PLAINTEXT, then the same cluster with CONTROLLER:SSL
and ssl.client.auth=required (certificates from the openssl CLI: a CA, one per node with SAN
IP:127.0.0.N). Everything else is the same: laminar.cluster.secret on both, clients on the
PLAINTEXT listener. For each, bench_produce writes -n records of -s bytes with acks=all to an
RF=3 topic of -p partitions (created first, leaders spread over the nodes), and the MB/s of
record values and the SSL/PLAINTEXT ratio are printed. A figure, not a test. Each round waits
for the preferred leaders (2 per node, automatic rebalance every second) before producing.
Runs are kept short (40000 records by default): longer acks=all runs on this 2-core machine
stall the cluster whatever the controller listener (seen at 55000 records, without TLS too).

    /usr/bin/python3 bench/cluster/mtls_cost.py [--build build] [--io uring|epoll]
        [--records 40000] [--size 1024] [--partitions 6] [--rounds 2]

Each mode runs --rounds times on a fresh cluster, alternating; the best round counts (the
machine is shared). All three nodes, their TLS and the client share the same cores.
"""
import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
sys.path.insert(0, os.path.join(ROOT, "tests", "cluster", "nodes"))
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "harness"))
from laminar_harness import free_port  # noqa: E402


def openssl(d, *args):
    subprocess.run(["openssl"] + list(args), cwd=d, check=True, capture_output=True)


def make_certs(d):
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out",
            "ca.pem", "-days", "2", "-subj", "/CN=bench ca")
    for i in (1, 2, 3):
        n = "node-%d" % i
        with open(os.path.join(d, n + ".ext"), "w") as f:
            f.write("subjectAltName=IP:127.0.0.%d\n" % i)
        openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", n + ".key", "-out",
                n + ".csr", "-subj", "/CN=" + n)
        openssl(d, "x509", "-req", "-in", n + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", n + ".pem", "-days", "2", "-extfile", n + ".ext")
        with open(os.path.join(d, n + "-store.pem"), "w") as f:
            f.write(open(os.path.join(d, n + ".key")).read())
            f.write(open(os.path.join(d, n + ".pem")).read())


def result(out):
    m = re.search(r"^RESULT (.*)$", out, re.M)
    if m is None:
        raise RuntimeError("no RESULT line:\n" + out)
    return dict(kv.split("=", 1) for kv in m.group(1).split())


def run_round(tc, kind, certs, a, produce, rnd):
    port, cport = free_port(), free_port()
    voters = ",".join("%d@127.0.0.%d:%d" % (i, i, cport) for i in (1, 2, 3))
    nodes = []
    for i in (1, 2, 3):
        # preferred leaders come back within a second: every round runs with 2 leaders per node
        n = tc.Node(i, voters, port, cport, a.io, secret="bench-secret", rebalance_interval=1)
        n.config["laminar.http.listener"] = ""
        n.config["log.segment.bytes"] = str(1 << 30)
        if kind == "SSL":
            pre = "listener.name.controller."
            n.config.update({
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:SSL",
                pre + "ssl.keystore.type": "PEM",
                pre + "ssl.keystore.location": os.path.join(certs, "node-%d-store.pem" % i),
                pre + "ssl.truststore.type": "PEM",
                pre + "ssl.truststore.location": os.path.join(certs, "ca.pem"),
                pre + "ssl.client.auth": "required",
            })
        nodes.append(n)
    try:
        for n in nodes:
            n.start(timeout_s=60)
        from confluent_kafka.admin import AdminClient, NewTopic
        topic = "mtls-bench-%s-%d" % (kind.lower(), rnd)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if len(AdminClient({"bootstrap.servers": nodes[0].bootstrap})
                       .list_topics(timeout=5).brokers) == 3:
                    break
            except Exception:  # noqa: BLE001 - not serving yet
                pass
            time.sleep(0.2)
        adm = AdminClient({"bootstrap.servers": nodes[0].bootstrap})
        for f in adm.create_topics([NewTopic(topic, a.partitions, 3)],
                                   request_timeout=30).values():
            f.result()
        balanced = [1, 1, 2, 2, 3, 3] * (a.partitions // 6)
        while time.monotonic() < deadline and (
                sorted(tc.leaders(nodes[0], topic).values()) != balanced):
            time.sleep(0.2)
        cmd = [produce, "-b", nodes[0].bootstrap, "-t", topic, "-n", str(a.records), "-s",
               str(a.size), "-p", str(a.partitions), "-a", "all", "-T", "300"]
        p = subprocess.run(cmd, capture_output=True, timeout=330)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        if p.returncode != 0:
            raise RuntimeError("%s failed:\n%s" % (" ".join(cmd), out[-2000:]))
        r = result(out)
        if kind == "SSL" and not all("TLS established" in n.log_text() for n in nodes):
            raise RuntimeError("SSL round without TLS peer connections")
        return float(r["mb_s"]), tc.leaders(nodes[0], topic)
    finally:
        for n in nodes:
            n.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--io", default="uring")
    ap.add_argument("--records", type=int, default=40000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=6, help="a multiple of 6")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--modes", default="PLAINTEXT,SSL", help=argparse.SUPPRESS)
    a = ap.parse_args()
    os.environ["LAMINAR_BIN"] = os.path.join(a.build, "broker", "laminar")
    produce = os.path.join(a.build, "bench", "broker", "bench_produce")
    import test_cluster as tc
    certs = tempfile.mkdtemp(prefix="laminar-test-mtls-bench-")
    best, every = {}, {}
    try:
        make_certs(certs)
        for rnd in range(a.rounds):
            for kind in a.modes.split(","):
                mb, lead = run_round(tc, kind, certs, a, produce, rnd)
                print("round %d controller %-9s acks=all produce %8.1f MB/s (leaders %s)"
                      % (rnd, kind, mb, sorted(lead.values())), flush=True)
                best[kind] = max(best.get(kind, 0.0), mb)
                every.setdefault(kind, []).append(mb)
    finally:
        subprocess.run(["rm", "-rf", certs])
    if len(best) < 2:
        return 0
    pt, ssl = best["PLAINTEXT"], best["SSL"]
    print("\n3 nodes, backend %s, RF=3, acks=all, %d records of %d bytes, %d partitions, "
          "best of %d:" % (a.io, a.records, a.size, a.partitions, a.rounds))
    med = {k: sorted(v)[len(v) // 2] for k, v in every.items()}
    print("%-22s %10s %10s" % ("", "best MB/s", "median"))
    print("%-22s %10.1f %10.1f" % ("controller PLAINTEXT", pt, med["PLAINTEXT"]))
    print("%-22s %10.1f %10.1f" % ("controller SSL (mTLS)", ssl, med["SSL"]))
    print("%-22s %10.2f %10.2f" % ("SSL/PLAINTEXT", ssl / pt, med["SSL"] / med["PLAINTEXT"]))
    print("RESULT plain_mb_s=%.1f ssl_mb_s=%.1f ratio=%.3f median_ratio=%.3f" % (
        pt, ssl, ssl / pt, med["SSL"] / med["PLAINTEXT"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
