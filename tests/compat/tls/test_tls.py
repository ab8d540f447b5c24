"""SSL and SASL_SSL listeners against laminar, configured with Kafka's own keys.

Certificates are made at test time with the openssl CLI in the broker's temp dir: a CA, the
broker's certificate (SAN IP:127.0.0.1), a client certificate (CN=Alice,OU=Payments) and a
second, unrelated CA. The broker serves four listeners:

  SSL        SSL, no client authentication, keystore from ssl.keystore.location (PEM file)
  SASL_SSL   SASL_SSL with PLAIN and SCRAM-SHA-256; its keystore inline
             (listener.name.sasl_ssl.ssl.keystore.key/.certificate.chain), the key encrypted
             (ssl.key.password)
  MTLS       SSL with ssl.client.auth=required, a PEM truststore and
             ssl.principal.mapping.rules RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT
  PLAINTEXT  for comparison

Checks: kcat (-X security.protocol=ssl) and confluent-kafka produce and consume over SSL
(records up to 300 KB, a consumer group); SASL_SSL with SCRAM-SHA-256 and PLAIN, a wrong
password refused; MTLS with the client certificate works and the broker logs the mapped
principal User:alice@payments, without one the client is refused; a client trusting the other
CA fails its handshake; plaintext Kafka requests, random bytes, a stalled handshake and
consumers killed mid-fetch at the SSL listener are closed (logged at INFO) while other clients
keep being served; 200 idle TLS connections cost the broker a bounded amount of memory each; the
Java client with security.protocol=SSL and ssl.truststore.type=PEM, and with a PEM keystore on
MTLS (--java); a missing keystore file, a key that does not match its certificate and a bad
ssl.client.auth each stop the start-up with a message naming the key.

    /usr/bin/python3 test_tls.py --io uring|epoll [--java]
"""
import argparse
import os
import random
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker, binary_path, free_port  # noqa: E402
from compat_util import check, java_cmd, run_scenario  # noqa: E402

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" user_admin="admin-secret" '
              'user_alice="alice-secret";')
KEY_PASSWORD = "broker-key-pw"


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    check(p.returncode == 0, "openssl %s: %s" % (args[0], p.stderr.decode(errors="replace")))


def make_certs(d):
    """CA, broker (SAN IP:127.0.0.1) and client certificates, and an unrelated CA."""
    for ca in ("ca", "wrongca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca + ".key",
                "-out", ca + ".pem", "-days", "2", "-subj", "/CN=laminar test " + ca, cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, subj, ext in (("broker", "/O=laminar/CN=localhost", True),
                            ("client", "/OU=Payments/CN=Alice", False)):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key",
                "-out", name + ".csr", "-subj", subj, cwd=d)
        args = ["x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2"]
        if ext:
            args += ["-extfile", "san.ext"]
        openssl(*args, cwd=d)
    # the broker's keystore: key and chain in one PEM file (ssl.keystore.location)
    with open(os.path.join(d, "broker-store.pem"), "w") as f:
        f.write(open(os.path.join(d, "broker.key")).read())
        f.write(open(os.path.join(d, "broker.pem")).read())
    # the same key encrypted (PKCS#8), for the inline keystore with ssl.key.password
    openssl("pkcs8", "-topk8", "-in", "broker.key", "-out", "broker-enc.key", "-v2", "aes-256-cbc",
            "-passout", "pass:" + KEY_PASSWORD, cwd=d)


class TlsBroker(Broker):
    """SSL (the harness' port), SASL_SSL, MTLS and PLAINTEXT listeners."""

    def __init__(self, io, **kw):
        self.sasl_port = free_port()
        self.mtls_port = free_port()
        self.plain_port = free_port()
        super().__init__(io=io, shards=2, **kw)
        d = self.tmp
        make_certs(d)
        self.ca = os.path.join(d, "ca.pem")
        self.wrong_ca = os.path.join(d, "wrongca.pem")
        self.client_cert = os.path.join(d, "client.pem")
        self.client_key = os.path.join(d, "client.key")
        self.config.update({
            "num.partitions": "1",
            "laminar.http.listener": "",
            "listener.security.protocol.map":
                "SSL:SSL,SASL_SSL:SASL_SSL,MTLS:SSL,PLAINTEXT:PLAINTEXT",
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": os.path.join(d, "broker-store.pem"),
            "ssl.enabled.protocols": "TLSv1.2,TLSv1.3",
            "laminar.ssl.reload.check.ms": "200",
            "listener.name.sasl_ssl.ssl.keystore.location": "",
            "listener.name.sasl_ssl.ssl.keystore.key":
                open(os.path.join(d, "broker-enc.key")).read(),
            "listener.name.sasl_ssl.ssl.keystore.certificate.chain":
                open(os.path.join(d, "broker.pem")).read(),
            "listener.name.sasl_ssl.ssl.key.password": KEY_PASSWORD,
            "listener.name.mtls.ssl.client.auth": "required",
            "listener.name.mtls.ssl.truststore.type": "PEM",
            "listener.name.mtls.ssl.truststore.location": self.ca,
            "listener.name.mtls.ssl.principal.mapping.rules":
                "RULE:^CN=(.*?),OU=(.*?)$/$1@$2/L,DEFAULT",
            "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256",
            "listener.name.sasl_ssl.plain.sasl.jaas.config": PLAIN_JAAS,
            "listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config":
                "org.apache.kafka.common.security.scram.ScramLoginModule required;",
            "laminar.scram.credentials": "SCRAM-SHA-256=[name=bob,password=bob-secret]",
        })

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        h = self.host
        a[i + 1] = "SSL://%s:%d,SASL_SSL://%s:%d,MTLS://%s:%d,PLAINTEXT://%s:%d" % (
            h, self.port, h, self.sasl_port, h, self.mtls_port, h, self.plain_port)
        return a


def kcat(b, *args, port=None, extra=(), stdin=None, timeout=40):
    cmd = ["kcat", "-b", "%s:%d" % (b.host, port or b.port), "-X", "security.protocol=ssl",
           "-X", "ssl.ca.location=" + b.ca, "-X", "socket.timeout.ms=8000"] + list(extra)
    p = subprocess.run(cmd + list(args), input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode(errors="replace")


def check_kcat(b):
    lines = ["line %d %s" % (i, "k" * (i * 1000)) for i in range(50)]
    rc, _, err = kcat(b, "-P", "-t", "tls-kcat", stdin=("\n".join(lines) + "\n").encode())
    check(rc == 0, "kcat produce over SSL: %s" % err)
    rc, out, err = kcat(b, "-C", "-t", "tls-kcat", "-e", "-q", "-f", "%s\\n")
    check(rc == 0 and out.splitlines() == lines, "kcat consume over SSL: rc %d %s" % (rc, err))
    rc, out, err = kcat(b, "-L")
    check(rc == 0 and "ssl://127.0.0.1:%d" % b.port in out, "kcat metadata: %s %s" % (out, err))
    print("ok: kcat -X security.protocol=ssl produce, consume and metadata")


def ck_conf(b, port, **kw):
    c = {"bootstrap.servers": "%s:%d" % (b.host, port), "security.protocol": "SSL",
         "ssl.ca.location": b.ca}
    c.update(kw)
    return c


def produce_consume(conf, topic, values, group):
    from confluent_kafka import Consumer, Producer
    p = Producer(dict(conf, **{"enable.idempotence": True}))
    for i, v in enumerate(values):
        p.produce(topic, key=b"k%d" % i, value=v)
        p.poll(0)
    check(p.flush(30) == 0, "flush to %s" % topic)
    c = Consumer(dict(conf, **{"group.id": group, "auto.offset.reset": "earliest",
                               "enable.auto.commit": False}))
    c.subscribe([topic])
    got = []
    deadline = time.monotonic() + 40
    while len(got) < len(values) and time.monotonic() < deadline:
        m = c.poll(0.5)
        if m is not None and m.error() is None:
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    check(got == values, "%s: read back %d of %d, in order" % (topic, len(got), len(values)))


def refused(conf, what):
    """A client that must not get metadata: list_topics fails."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient
    errs = []
    a = AdminClient(dict(conf, error_cb=lambda e: errs.append(e)))
    try:
        a.list_topics(timeout=6)
    except KafkaException as e:
        print("ok: %s refused (%s; %s)" % (what, str(e)[:60],
                                           errs[0].str()[-80:] if errs else "no error_cb"))
        return
    raise AssertionError("%s: the client got metadata" % what)


def check_librdkafka(b):
    values = [os.urandom(random.Random(i).randint(0, 300000)) for i in range(40)]
    produce_consume(ck_conf(b, b.port), "tls-ck", values, "g-tls")
    print("ok: confluent-kafka SSL idempotent produce, group consume of records up to 300 KB")
    for mech, user, pw in (("SCRAM-SHA-256", "bob", "bob-secret"),
                           ("PLAIN", "alice", "alice-secret")):
        conf = ck_conf(b, b.sasl_port, **{"security.protocol": "SASL_SSL",
                                          "sasl.mechanism": mech, "sasl.username": user,
                                          "sasl.password": pw})
        produce_consume(conf, "tls-sasl-" + mech.lower(),
                        [b"%s-%d" % (mech.encode(), i) for i in range(100)], "g-" + mech)
        print("ok: confluent-kafka SASL_SSL %s produce and group consume" % mech)
    refused(ck_conf(b, b.sasl_port, **{"security.protocol": "SASL_SSL",
                                       "sasl.mechanism": "SCRAM-SHA-256",
                                       "sasl.username": "bob", "sasl.password": "wrong"}),
            "SASL_SSL SCRAM-SHA-256 with a wrong password")
    mtls = ck_conf(b, b.mtls_port, **{"ssl.certificate.location": b.client_cert,
                                      "ssl.key.location": b.client_key})
    produce_consume(mtls, "tls-mtls", [b"m%d" % i for i in range(30)], "g-mtls")
    check("principal User:alice@payments" in b.log_text(),
          "the broker logs the mapped principal User:alice@payments")
    print("ok: ssl.client.auth=required with a client certificate; principal User:alice@payments")
    refused(ck_conf(b, b.mtls_port), "ssl.client.auth=required without a client certificate")
    refused(ck_conf(b, b.port, **{"ssl.ca.location": b.wrong_ca}), "a client trusting another CA")
    check("TLS handshake failed" in b.log_text(), "failed handshakes are logged")


def api_versions_frame():
    body = struct.pack(">hhih", 18, 0, 7, 4) + b"evil"
    return struct.pack(">i", len(body)) + body


def closed_by_broker(s, timeout=10):
    """Reads until the broker closes s (an alert may come first). True when it did."""
    s.settimeout(timeout)
    try:
        while True:
            d = s.recv(65536)
            if not d:
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def connect_retry(b):
    """A connection to the SSL listener; a refused connect is tried again (twice at most): on
    loopback the kernel may reuse a client port whose previous connection the broker has not
    finished closing yet (tcp_tw_reuse), and that SYN is answered with a reset."""
    for attempt in range(3):
        try:
            return socket.create_connection((b.host, b.port))
        except ConnectionRefusedError:
            check(b.alive(), "broker died")
            print("retry: connect refused (attempt %d)" % attempt)
            time.sleep(0.1)
    raise AssertionError("the SSL listener refused 3 connects in a row")


def check_garbage(b):
    rng = random.Random(int(os.environ.get("LAMINAR_SEED", "0")) or int(time.time()))
    # a stalled handshake (a few bytes of a ClientHello) stays open meanwhile
    stalled = socket.create_connection((b.host, b.port))
    stalled.sendall(b"\x16\x03\x01\x02\x00\x01\x00")
    s = socket.create_connection((b.host, b.port))
    s.sendall(api_versions_frame())
    check(closed_by_broker(s), "a plaintext Kafka request at the SSL listener is closed")
    s.close()
    closed = 0
    for i in range(120):
        s = connect_retry(b)
        n = rng.randint(1, 20000)
        data = bytearray(rng.getrandbits(8) for _ in range(n))
        if i % 3 == 0:  # a plausible record header first, then noise
            data[0:5] = b"\x16\x03" + bytes([rng.randint(0, 4)]) + struct.pack(">H", min(n, 16384))
        try:
            s.sendall(bytes(data))
            s.shutdown(socket.SHUT_WR) if i % 2 else None
            closed += closed_by_broker(s, timeout=5)
        except (ConnectionResetError, BrokenPipeError):
            closed += 1
        s.close()
    print("ok: %d of 120 random-byte clients closed by the broker" % closed)
    check(closed >= 100, "random bytes: the broker closed %d of 120 connections" % closed)
    # consumers that vanish in the middle of a large fetch response (the response is being
    # encrypted and sent in chunks; the close must drop it cleanly on either backend)
    for i in range(6):
        p = subprocess.Popen(["kcat", "-b", b.bootstrap, "-X", "security.protocol=ssl",
                              "-X", "ssl.ca.location=" + b.ca, "-C", "-t", "tls-ck", "-o",
                              "beginning", "-q", "-f", "%o\\n"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.2 + 0.15 * i)
        p.kill()
        p.wait()
    rc, out, err = kcat(b, "-L")
    check(rc == 0, "a client after the garbage: %s" % err)
    check(b.alive(), "broker alive after the garbage")
    stalled.close()
    print("ok: plaintext, random bytes, a stalled handshake and consumers killed mid-fetch at "
          "the SSL listener; others served")


def check_tls12(b):
    """A client limited to TLS 1.2 (ssl.enabled.protocols serves both): ApiVersions answered."""
    import ssl
    ctx = ssl.create_default_context(cafile=b.ca)
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with ctx.wrap_socket(socket.create_connection((b.host, b.port)),
                         server_hostname="127.0.0.1") as s:
        s.sendall(api_versions_frame())
        size = struct.unpack(">i", s.recv(4))[0]
        check(s.version() == "TLSv1.2" and size > 6, "TLS 1.2: %s, %d" % (s.version(), size))
        print("ok: a TLS 1.2 client (%s) got its ApiVersions answer" % s.cipher()[0])


def check_idle_memory(b, n=200):
    """n established TLS connections, each having had a request answered, then idle: the
    broker's growth per connection is printed and bounded (the engine releases its buffers
    while a connection is idle)."""
    import ssl
    ctx = ssl.create_default_context(cafile=b.ca)
    conns = []
    before = b.rss_kib()
    retried = 0
    try:
        while len(conns) < n:
            s = ctx.wrap_socket(socket.create_connection((b.host, b.port)),
                                server_hostname="127.0.0.1")
            s.sendall(api_versions_frame())
            head = s.recv(4)
            if len(head) != 4:
                # seen twice in ~10 runs under ASan on epoll: the connection ended right after
                # its handshake with nothing in the broker's log but the peer's close (not
                # understood); allowed twice, and counted
                retried += 1
                print("retry: a connection ended before its answer (%r)" % head)
                check(retried <= 2, "connections ended before their answer: %d" % retried)
                s.close()
                continue
            size = struct.unpack(">i", head)[0]
            got = 0
            while got < size:
                got += len(s.recv(size - got))
            conns.append(s)
        time.sleep(0.5)
        per_kib = (b.rss_kib() - before) / n
        print("ok: %d idle TLS connections: %.1f KiB of broker RSS each" % (n, per_kib))
        # ASan keeps freed memory in quarantine and adds shadow memory, so each connection's
        # handshake buffers stay counted there (~350 KiB); a release build holds ~17 KiB
        asan = b"libasan" in subprocess.run(["ldd", b.binary], capture_output=True).stdout
        bound = 1024 if asan else 64
        check(per_kib < bound, "idle TLS connection costs %.1f KiB (bound %d)" % (per_kib, bound))
    finally:
        for s in conns:
            s.close()


def check_java(b):
    java = os.path.join(HERE, "..", "java")
    cp = os.path.join(java, "lib", "*") + ":" + os.path.join(java, "classes")
    if not os.path.exists(os.path.join(java, "classes", "TlsSuite.class")):
        raise AssertionError("tests/compat/java/classes/TlsSuite.class missing: run "
                             "tests/compat/java/prepare")
    store = os.path.join(b.tmp, "client-store.pem")
    with open(store, "w") as f:
        f.write(open(b.client_key).read() + open(b.client_cert).read())
    p = subprocess.run(java_cmd(cp, "TlsSuite", b.bootstrap, b.ca, b.wrong_ca,
                                "%s:%d" % (b.host, b.mtls_port), store),
                       capture_output=True, timeout=240)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    print("\n".join(l for l in out.splitlines() if l.startswith(("ok:", "TlsSuite"))))
    check(p.returncode == 0, "TlsSuite failed:\n" + out[-4000:])


def check_bad_config(b):
    """Start-up refused, naming the key: a missing keystore file, a key of another cert."""
    d = b.tmp
    cases = (
        ({"ssl.keystore.location": os.path.join(d, "missing.pem")},
         "ssl.keystore.location: cannot read"),
        ({"ssl.keystore.location": "", "ssl.keystore.key": open(os.path.join(d, "client.key")).read(),
          "ssl.keystore.certificate.chain": open(os.path.join(d, "broker.pem")).read()},
         "ssl.keystore.key: the private key does not match the certificate"),
        ({"ssl.keystore.location": os.path.join(d, "broker-store.pem"),
          "ssl.client.auth": "maybe"}, "ssl.client.auth=maybe"),
    )
    for extra, want in cases:
        port = free_port()
        cmd = [binary_path(), "serve", "--listeners", "SSL://127.0.0.1:%d" % port,
               "--log-dirs", os.path.join(d, "bad-data"), "--io", b.io,
               "--config", "laminar.http.listener=", "--config", "ssl.keystore.type=PEM"]
        for k, v in extra.items():
            cmd += ["--config", "%s=%s" % (k, v)]
        p = subprocess.run(cmd, capture_output=True, timeout=30, env=b.env)
        out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
        check(p.returncode != 0 and want in out,
              "bad TLS config refused with '%s': rc %d\n%s" % (want, p.returncode, out[-1500:]))
        print("ok: start-up refused: %s" % [l for l in out.splitlines() if want in l][0][-140:])


def peer_cert(b):
    """The certificate (DER) a new connection to the SSL listener is shown."""
    import ssl
    ctx = ssl.create_default_context(cafile=b.ca)
    with ctx.wrap_socket(connect_retry(b), server_hostname="localhost") as t:
        return t.getpeercert(binary_form=True)


def tls_api_versions(t):
    """ApiVersions v0 on an open TLS socket: its correlation id comes back."""
    t.sendall(api_versions_frame())
    head = b""
    while len(head) < 8:
        chunk = t.recv(8 - len(head))
        check(chunk, "connection closed before the ApiVersions response")
        head += chunk
    size, corr = struct.unpack(">ii", head)
    left = size - 4
    while left > 0:
        chunk = t.recv(min(left, 65536))
        check(chunk, "connection closed in the ApiVersions response")
        left -= len(chunk)
    return corr


def check_reload(b):
    """A renewed keystore file (replaced as certificate tools do) is picked up without a
    restart: new connections get the new certificate, a connection opened before keeps working;
    a keystore that does not load is refused with an error and the last good one stays."""
    import ssl
    d = b.tmp
    store = os.path.join(d, "broker-store.pem")
    before = peer_cert(b)
    ctx = ssl.create_default_context(cafile=b.ca)
    old_conn = ctx.wrap_socket(connect_retry(b), server_hostname="localhost")
    check(tls_api_versions(old_conn) == 7, "ApiVersions before the reload")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "renewed.key", "-out",
            "renewed.csr", "-subj", "/O=laminar renewed/CN=localhost", cwd=d)
    openssl("x509", "-req", "-in", "renewed.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", "renewed.pem", "-days", "2", "-extfile", "san.ext", cwd=d)
    with open(store + ".tmp", "w") as f:
        f.write(open(os.path.join(d, "renewed.key")).read())
        f.write(open(os.path.join(d, "renewed.pem")).read())
    os.replace(store + ".tmp", store)
    deadline = time.monotonic() + 10
    after = before
    while after == before and time.monotonic() < deadline:
        time.sleep(0.2)
        after = peer_cert(b)
    check(after != before, "the renewed certificate was not served within 10 s")
    check("certificates reloaded" in b.log_text(), "the reload was not logged")
    check(tls_api_versions(old_conn) == 7, "the connection opened before the reload broke")
    old_conn.close()
    with open(store, "w") as f:  # half written: the key without its certificate
        f.write(open(os.path.join(d, "renewed.key")).read())
    deadline = time.monotonic() + 10
    while "do not load" not in b.log_text() and time.monotonic() < deadline:
        time.sleep(0.2)
    check("do not load" in b.log_text(), "a broken keystore was not reported")
    check(peer_cert(b) == after, "a broken keystore replaced the last good certificate")
    with open(store + ".tmp", "w") as f:  # the renewed store again, for what follows
        f.write(open(os.path.join(d, "renewed.key")).read())
        f.write(open(os.path.join(d, "renewed.pem")).read())
    os.replace(store + ".tmp", store)
    print("ok: a renewed keystore is served to new connections without a restart; old "
          "connections go on; a broken one is refused")


def scenario(b, java):
    check_kcat(b)
    check_librdkafka(b)
    check_garbage(b)
    check_tls12(b)
    check_idle_memory(b)
    check_reload(b)
    if java:
        check_java(b)
    check(b.alive(), "broker died")
    check_bad_config(b)
    check(b.stop() == 0, "broker exit status")
    check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")
    check("AddressSanitizer" not in b.log_text(), "AddressSanitizer report in the log")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--java", action="store_true")
    args = ap.parse_args()
    b = TlsBroker(args.io)
    return run_scenario(b, "tls (%s)" % args.io, lambda: scenario(b, args.java))


if __name__ == "__main__":
    sys.exit(main())
