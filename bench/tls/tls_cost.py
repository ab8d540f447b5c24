"""The cost of TLS on produce and fetch throughput: laminar's, and Apache Kafka 4.1's on the same
workload with the same client, side by side in one invocation. A figure, not a test.

    /usr/bin/python3 bench/tls/tls_cost.py [--build build-rel] [--io uring|epoll]
        [--only laminar,kafka] [--records 300000] [--size 1024] [--partitions 4]
        [--rounds 2] [--warmup 5]

Every broker gets a PLAINTEXT and an SSL listener on free loopback ports, the SSL one with the
same test certificate (a CA and a server certificate for IP 127.0.0.1 made with the openssl CLI
in a temp dir; the key, unencrypted PKCS#8, and the certificate in one PEM file):

  laminar  BUILD/broker/laminar serve, --shards 1 by default, ssl.keystore.type=PEM,
           ssl.keystore.location=that file, log.segment.bytes=1 GiB (Kafka's default)
  kafka    bench/kafka-ref/run start (single-node KRaft from the Maven jars in
           bench/kafka-ref/lib, its 1 GiB heap, G1) with KAFKA_REF_SSL_KEYSTORE=that file:
           listener SSL://127.0.0.1:PORT (listener.security.protocol.map ...,SSL:SSL),
           ssl.keystore.type=PEM, ssl.keystore.location=that file, every other ssl.* setting
           Kafka's default (TLSv1.2 and TLSv1.3 enabled, no client authentication)

Both are started first and both stay up; each then gets the same unmeasured warm-up (a JVM
compiles its hot paths first): per listener, --warmup seconds of bench_produce (acks=1), then
bench_consume of that topic to its end. Then, per round and per broker, per listener in turn
(PLAINTEXT, then SSL): bench_produce writes --records records of --size bytes (acks=1) to a
topic of its own with --partitions partitions, then bench_consume reads them back from the
beginning. The brokers take turns (laminar first in even rounds, kafka first in odd ones); only
one is ever being measured, the other sits idle. The best round of each case counts (the
machine is shared; the best is the least disturbed). The table: MB/s of record values per
broker, SSL/PLAINTEXT ratios, and laminar/kafka of the SSL rows; the load average is printed
before every case and at the end, and the TLS version and cipher each SSL listener negotiates
with `openssl s_client` (the client library, librdkafka, uses the same OpenSSL defaults).

--only picks the brokers (default: both when bench/kafka-ref/lib holds the Kafka jars and java
runs; otherwise laminar alone, with a note); `--only laminar --warmup 0` is this script's
earlier laminar-only measurement. The client's own TLS work (librdkafka, OpenSSL) runs on the
same machine and is part of the figure, as the broker's is. One RESULT line per broker.
"""
import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "compat", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402

KAFKA_REF = os.path.join(ROOT, "bench", "kafka-ref")
BROKERS = ("laminar", "kafka")
KINDS = ("PLAINTEXT", "SSL")


def log(msg):
    print(msg, flush=True)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def openssl(cwd, *args):
    subprocess.run(["openssl"] + list(args), cwd=cwd, check=True, capture_output=True)


def make_certs(d):
    """A CA and a server certificate (SAN IP:127.0.0.1) signed by it, in d. Returns the CA's
    path and that of the keystore: the key (PKCS#8, unencrypted) and the certificate in one PEM
    file, as both brokers read it (ssl.keystore.type=PEM)."""
    openssl(d, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
            "-out", "ca.pem", "-days", "2", "-subj", "/CN=bench ca")
    openssl(d, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out",
            "broker.csr", "-subj", "/CN=localhost")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl(d, "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "broker.pem", "-days", "2", "-extfile", "san.ext")
    store = os.path.join(d, "store.pem")
    with open(store, "w") as f:
        for name in ("broker.key", "broker.pem"):
            with open(os.path.join(d, name)) as part:
                f.write(part.read())
    return os.path.join(d, "ca.pem"), store


class TlsBenchBroker(Broker):
    """PLAINTEXT on plain_port, SSL on the harness' port."""

    def __init__(self, binary, io, shards, store):
        self.plain_port = free_port()
        super().__init__(io=io, shards=shards, binary=binary)
        self.config.update({"ssl.keystore.type": "PEM", "ssl.keystore.location": store,
                            "laminar.http.listener": "", "log.segment.bytes": str(1 << 30)})

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "SSL://%s:%d,PLAINTEXT://%s:%d" % (self.host, self.port, self.host,
                                                     self.plain_port)
        return a


class Laminar:
    name = "laminar"

    def __init__(self, binary, io, shards, store):
        self.broker = TlsBenchBroker(binary, io, shards, store)
        self.bootstraps = {}

    def start(self):
        b = self.broker
        b.start()
        self.bootstraps = {"PLAINTEXT": "%s:%d" % (b.host, b.plain_port),
                           "SSL": "%s:%d" % (b.host, b.port)}

    def stop(self):
        self.broker.cleanup()


class Kafka:
    name = "kafka"

    def __init__(self, work, store):
        self.work = os.path.join(work, "kafka")
        self.store = store
        self.bootstraps = {}
        self.started = False

    def start(self):
        env = dict(os.environ, KAFKA_REF_SSL_KEYSTORE=self.store)
        self.started = True  # run may have left a process even when it fails
        p = subprocess.run([os.path.join(KAFKA_REF, "run"), "start", self.work], env=env,
                           capture_output=True, text=True)
        plain = re.search(r"^BOOTSTRAP=(\S+)", p.stdout, re.M)
        ssl = re.search(r"^SSL_BOOTSTRAP=(\S+)", p.stdout, re.M)
        if p.returncode != 0 or not plain or not ssl:
            raise RuntimeError("Apache Kafka did not start (bench/kafka-ref/run start):\n%s%s"
                               % (p.stdout, p.stderr))
        self.bootstraps = {"PLAINTEXT": plain.group(1), "SSL": ssl.group(1)}

    def stop(self):
        if self.started:
            subprocess.run([os.path.join(KAFKA_REF, "run"), "stop", self.work],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.started = False


def kafka_missing():
    """Why Kafka cannot run here, or None."""
    lib = os.path.join(KAFKA_REF, "lib")
    if not any(re.match(r"kafka_2\.13-.*\.jar$", n) for n in
               (os.listdir(lib) if os.path.isdir(lib) else ())):
        return "no Kafka jars in %s (bench/kafka-ref/fetch copies them from Maven)" % lib
    java = os.environ.get("KAFKA_REF_JAVA", "java")
    if shutil.which(java) is None:
        return "no java (%s) to run Kafka" % java
    return None


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


def negotiated(bootstrap, ca):
    """'TLSv1.3 TLS_AES_256_GCM_SHA384' as openssl s_client negotiates it at bootstrap."""
    try:
        p = subprocess.run(["openssl", "s_client", "-connect", bootstrap, "-CAfile", ca],
                           stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=20)
    except subprocess.TimeoutExpired:
        return "? (openssl s_client timed out)"
    m = re.search(r"^New, (\S+), Cipher is (\S+)", p.stdout, re.M)
    v = re.search(r"^Verify return code: (.*)$", p.stdout, re.M)
    if not m:
        return "? (openssl s_client: %s)" % (p.stderr.strip().splitlines() or ["no answer"])[-1]
    return "%s %s, verify: %s" % (m.group(1), m.group(2), v.group(1) if v else "?")


def fmt(x, spec):
    return spec % x if x is not None else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build-rel"))
    ap.add_argument("--io", default="uring", help="laminar's I/O backend (uring, epoll)")
    ap.add_argument("--shards", type=int, default=1, help="laminar's shards")
    ap.add_argument("--only", default=None,
                    help="brokers, comma-separated: laminar, kafka (default: both, or laminar"
                    " alone when Kafka's jars or java are missing)")
    ap.add_argument("--records", type=int, default=300000)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--warmup", type=float, default=5,
                    help="seconds of unmeasured produce per listener and broker, each followed"
                    " by a consume of it (0: no warm-up)")
    a = ap.parse_args()
    if a.rounds < 1 or a.records < 1 or a.warmup < 0:
        ap.error("bad --rounds/--records/--warmup")
    missing = kafka_missing()
    if a.only is None:
        only = ["laminar", "kafka"]
        if missing:
            log("note: %s: laminar only" % missing)
            only = ["laminar"]
    else:
        only = [t.strip() for t in a.only.split(",") if t.strip()]
        bad = [t for t in only if t not in BROKERS]
        if bad or not only:
            ap.error("--only: laminar and/or kafka, not %s" % (",".join(bad) or "nothing"))
        if "kafka" in only and missing:
            ap.error("--only kafka: %s" % missing)
    only = [t for t in BROKERS if t in only]

    laminar_bin = os.path.join(a.build, "broker", "laminar")
    produce = os.path.join(a.build, "bench", "broker", "bench_produce")
    consume = os.path.join(a.build, "bench", "broker", "bench_consume")
    need = [produce, consume] + ([laminar_bin] if "laminar" in only else [])
    absent = [n for n in need if not os.access(n, os.X_OK)]
    if absent:
        log("tls_cost: not built: %s" % ", ".join(absent))
        return 1

    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    work = tempfile.mkdtemp(prefix="laminar-tls-cost.")
    brokers = []
    best = {}  # (broker, kind) -> [produce MB/s, fetch MB/s]
    tls = {}
    load_before = loadavg()
    log("tls_cost: %s; nproc %d, load average %s" % (", ".join(only), os.cpu_count() or 0,
                                                     load_before))
    common = ["-s", str(a.size), "-p", str(a.partitions)]
    try:
        ca, store = make_certs(work)
        client = {"PLAINTEXT": [], "SSL": ["security.protocol=ssl", "ssl.ca.location=" + ca]}
        for name in only:
            brokers.append(Laminar(laminar_bin, a.io, a.shards, store) if name == "laminar"
                           else Kafka(work, store))
        for b in brokers:
            b.start()
            tls[b.name] = negotiated(b.bootstraps["SSL"], ca)
            log("%s: PLAINTEXT %s, SSL %s (%s)" % (b.name, b.bootstraps["PLAINTEXT"],
                                                  b.bootstraps["SSL"], tls[b.name]))
        if a.warmup > 0:
            for b in brokers:
                for kind in KINDS:
                    log("[load %s] %s %s: warm-up, produce %g s and consume it" % (
                        loadavg(), b.name, kind, a.warmup))
                    topic = "tls-bench-warm-%s" % kind.lower()
                    run_tool(produce, b.bootstraps[kind], topic, common + [
                        "-a", "1", "-d", str(a.warmup), "-T", str(int(a.warmup) + 120)],
                        client[kind])
                    run_tool(consume, b.bootstraps[kind], topic, common + ["-T", "300"],
                             client[kind])
        for rnd in range(a.rounds):
            for b in (brokers if rnd % 2 == 0 else brokers[::-1]):
                for kind in KINDS:
                    load = loadavg()
                    topic = "tls-bench-%s-%d" % (kind.lower(), rnd)
                    args = common + ["-n", str(a.records), "-l", b.name]
                    pr = run_tool(produce, b.bootstraps[kind], topic, args + ["-a", "1"],
                                  client[kind])
                    cr = run_tool(consume, b.bootstraps[kind], topic, args, client[kind])
                    p_mb, c_mb = float(pr["mb_s"]), float(cr["mb_s"])
                    log("[load %s] round %d %-7s %-9s produce %8.1f MB/s   fetch %8.1f MB/s" % (
                        load, rnd, b.name, kind, p_mb, c_mb))
                    old = best.get((b.name, kind), (0.0, 0.0))
                    best[(b.name, kind)] = (max(old[0], p_mb), max(old[1], c_mb))
    except KeyboardInterrupt:
        log("tls_cost: interrupted")
        return 130
    finally:
        for b in brokers:
            b.stop()
        shutil.rmtree(work, ignore_errors=True)

    def cell(name, kind, i):
        return best[(name, kind)][i] if (name, kind) in best else None

    rows = []
    for i, what in ((0, "produce"), (1, "fetch")):
        vals = {n: (cell(n, "PLAINTEXT", i), cell(n, "SSL", i)) for n in only}
        rows.append(("PLAINTEXT %s MB/s" % what, {n: fmt(v[0], "%.1f") for n, v in vals.items()},
                     ""))
        lk = ""
        if len(only) == 2 and vals["kafka"][1]:
            lk = "%.2f" % (vals["laminar"][1] / vals["kafka"][1])
        rows.append(("SSL %s MB/s" % what, {n: fmt(v[1], "%.1f") for n, v in vals.items()}, lk))
        rows.append(("%s SSL/PLAINTEXT" % what, {n: fmt(v[1] / v[0] if v[0] else None, "%.2f")
                                                 for n, v in vals.items()}, ""))
    log("\nlaminar: backend %s, %d shard(s); %d records of %d bytes, %d partitions, acks=1;"
        " best of %d round(s) after %s" % (
            a.io, a.shards, a.records, a.size, a.partitions, a.rounds,
            "a %g s warm-up per listener" % a.warmup if a.warmup > 0 else "no warm-up"))
    for n in only:
        log("%s SSL: %s" % (n, tls[n]))
    log("load average: %s before, %s after (nproc %d)" % (load_before, loadavg(),
                                                          os.cpu_count() or 0))
    head = ["", *only] + (["laminar/kafka"] if len(only) == 2 else [])
    width = [24] + [14] * (len(head) - 1)
    log("".join(("%-*s" if j == 0 else "%*s") % (width[j], h) for j, h in enumerate(head)))
    for label, cells, lk in rows:
        line = [label] + [cells[n] for n in only] + ([lk] if len(only) == 2 else [])
        log("".join(("%-*s" if j == 0 else "%*s") % (width[j], c) for j, c in enumerate(line)))
    for n in only:
        pt, ssl = best[(n, "PLAINTEXT")], best[(n, "SSL")]
        log("RESULT broker=%s plain_produce_mb_s=%.1f plain_fetch_mb_s=%.1f ssl_produce_mb_s=%.1f"
            " ssl_fetch_mb_s=%.1f produce_ratio=%.3f fetch_ratio=%.3f" % (
                n, pt[0], pt[1], ssl[0], ssl[1], ssl[0] / pt[0], ssl[1] / pt[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
