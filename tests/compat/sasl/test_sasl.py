"""SASL_PLAINTEXT against laminar (KIP-43, KIP-152, KIP-368, KIP-554), configured with Kafka's
own keys: kcat and confluent-kafka (librdkafka) with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN,
kafka-python with PLAIN (SaslHandshake v0's bare tokens), kafkajs with PLAIN and SCRAM-SHA-512;
a wrong password, an unknown user and a mechanism the listener does not enable each fail as the
client's authentication error and write nothing; the wire rules (only ApiVersions and the SASL
APIs before authentication, error codes 33/34/58, v0's bare tokens, the session lifetime,
re-authentication and an expired session); SCRAM users written at the first start
(laminar.scram.credentials) and changed with AlterUserScramCredentials survive a restart and a
kill -9.

    /usr/bin/python3 test_sasl.py --io uring|epoll [--java]

--java adds SaslSuite (the Java client and kafka-configs; needs tests/compat/java/prepare).
"""
import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker, free_port  # noqa: E402
from compat_util import check, java_cmd, restart_wait, run_scenario  # noqa: E402
from kafka_wire import Conn, carr, cstr, s8, s32, sbytes, sstr, uvar  # noqa: E402

PLAIN_JAAS = ('org.apache.kafka.common.security.plain.PlainLoginModule required '
              'username="admin" password="admin-secret" user_admin="admin-secret" '
              'user_alice="alice-secret";')
# librdkafka re-authenticates from 2.2 (KIP-368); Debian's 2.0.2 is disconnected when its
# session ends, as Kafka does with such clients, and reconnects: long enough for its checks.
REAUTH_MS = 5000


class SaslBroker(Broker):
    """A broker with a SASL_PLAINTEXT listener (the harness' port) and a PLAINTEXT one."""

    def __init__(self, io, **kw):
        self.plain_port = free_port()
        super().__init__(io=io, shards=2, **kw)

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] = "SASL_PLAINTEXT://%s:%d,PLAINTEXT://%s:%d" % (
            self.host, self.port, self.host, self.plain_port)
        return a


def config():
    return {
        "num.partitions": "1",
        "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512",
        "listener.name.sasl_plaintext.sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-512,"
                                                                "SCRAM-SHA-256",
        "listener.name.sasl_plaintext.plain.sasl.jaas.config": PLAIN_JAAS,
        "listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config":
            "org.apache.kafka.common.security.scram.ScramLoginModule required;",
        "sasl.mechanism.inter.broker.protocol": "PLAIN",
        "connections.max.reauth.ms": str(REAUTH_MS),
        "laminar.scram.credentials":
            "SCRAM-SHA-512=[name=bob,password=bob-secret];"
            "SCRAM-SHA-256=[name=bob,password=bob-secret,iterations=8192]",
    }


def kcat(b, mech, user, pw, *args, stdin=None, timeout=30):
    cmd = ["kcat", "-b", b.bootstrap, "-X", "security.protocol=SASL_PLAINTEXT",
           "-X", "sasl.mechanism=" + mech, "-X", "socket.timeout.ms=8000", "-m", "8"]
    if user is not None:
        cmd += ["-X", "sasl.username=" + user, "-X", "sasl.password=" + pw]
    cmd += list(args)
    p = subprocess.run(cmd, input=stdin, capture_output=True, timeout=timeout)
    return p.returncode, p.stdout.decode(), p.stderr.decode(errors="replace")


def kcat_read(b, topic, mech="PLAIN", user="admin", pw="admin-secret"):
    rc, out, err = kcat(b, mech, user, pw, "-C", "-t", topic, "-e", "-q", "-f", "%s\\n")
    check(rc == 0, "kcat read %s: %s" % (topic, err))
    return [line for line in out.splitlines() if line]


def check_kcat(b):
    for mech, user, pw in (("SCRAM-SHA-512", "bob", "bob-secret"),
                           ("SCRAM-SHA-256", "bob", "bob-secret"),
                           ("PLAIN", "alice", "alice-secret")):
        topic = "kc-" + mech.lower()
        rc, _, err = kcat(b, mech, user, pw, "-P", "-t", topic,
                          stdin=("\n".join("%s-%d" % (mech, i) for i in range(20)) + "\n").encode())
        check(rc == 0, "kcat produce with %s: %s" % (mech, err))
        got = kcat_read(b, topic, mech, user, pw)
        check(got == ["%s-%d" % (mech, i) for i in range(20)], "kcat %s read back %r" % (mech, got))
        print("ok: kcat %s as %s produced and consumed 20 records" % (mech, user))
    for mech, user, pw, why in (("SCRAM-SHA-512", "bob", "wrong", "wrong password"),
                                ("SCRAM-SHA-512", "mallory", "x", "unknown user"),
                                ("PLAIN", "alice", "wrong", "wrong PLAIN password"),
                                ("PLAIN", "mallory", "x", "unknown PLAIN user")):
        rc, _, err = kcat(b, mech, user, pw, "-P", "-t", "kc-scram-sha-512",
                          stdin=b"must-not-exist\n", timeout=40)
        check(rc != 0 and "Authentication failed" in err,
              "kcat %s: rc=%d %s" % (why, rc, err[-300:]))
        print("ok: kcat %s refused (%s)" % (why, err.strip().splitlines()[0][-90:]))
    # a mechanism the listener does not enable: the broker answers 33 with its list
    rc, _, err = kcat(b, "OAUTHBEARER", None, None, "-X",
                      "enable.sasl.oauthbearer.unsecure.jwt=true", "-X",
                      "sasl.oauthbearer.config=principal=alice", "-P", "-t", "kc-scram-sha-512",
                      stdin=b"must-not-exist\n", timeout=40)
    check(rc != 0 and "Unsupported SASL mechanism" in err and "SCRAM-SHA-512" in err,
          "kcat OAUTHBEARER: rc=%d %s" % (rc, err[-300:]))
    print("ok: kcat mechanism not enabled refused (%s)" % err.strip().splitlines()[0][-90:])
    check("must-not-exist" not in kcat_read(b, "kc-scram-sha-512"), "a refused client wrote")
    # a plaintext client on the SASL listener is disconnected
    p = subprocess.run(["kcat", "-b", b.bootstrap, "-L", "-m", "3"], capture_output=True,
                       timeout=30)
    check(p.returncode != 0, "plaintext client on the SASL listener got metadata")
    # the PLAINTEXT listener still serves without authentication
    p = subprocess.run(["kcat", "-b", "%s:%d" % (b.host, b.plain_port), "-L", "-m", "8"],
                       capture_output=True, timeout=30)
    check(p.returncode == 0, "PLAINTEXT listener: %s" % p.stderr.decode()[-300:])


def check_librdkafka(b):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    def conf(mech, user, pw, **extra):
        c = {"bootstrap.servers": b.bootstrap, "security.protocol": "SASL_PLAINTEXT",
             "sasl.mechanism": mech, "sasl.username": user, "sasl.password": pw}
        c.update(extra)
        return c

    topic = "ck-scram"
    p = Producer(conf("SCRAM-SHA-512", "bob", "bob-secret", **{"enable.idempotence": True}))
    for i in range(100):
        p.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    check(p.flush(30) == 0, "confluent-kafka SCRAM-SHA-512 flush")
    c = Consumer(conf("SCRAM-SHA-512", "bob", "bob-secret", **{"group.id": "g-sasl",
                                                                "auto.offset.reset": "earliest"}))
    c.subscribe([topic])
    got, deadline = [], time.monotonic() + 40
    while time.monotonic() < deadline and len(got) < 100:
        m = c.poll(0.5)
        if m is not None and not m.error():
            got.append(m.value())
    c.commit(asynchronous=False)
    c.close()
    check(got == [b"v%d" % i for i in range(100)], "confluent-kafka read back %d" % len(got))
    print("ok: confluent-kafka SCRAM-SHA-512 idempotent produce, group consume and commit")

    for mech, user, pw, why in (("SCRAM-SHA-512", "bob", "wrong", "wrong password"),
                                ("SCRAM-SHA-512", "nobody", "x", "unknown user"),
                                ("PLAIN", "admin", "nope", "wrong PLAIN password")):
        errs = []
        p = Producer(conf(mech, user, pw, error_cb=lambda e: errs.append(e)))
        p.produce(topic, value=b"must-not-exist")
        p.flush(8)
        codes = [e.code() for e in errs]
        check(KafkaError._AUTHENTICATION in codes, "%s: errors %r" % (why, errs))
        print("ok: confluent-kafka %s -> _AUTHENTICATION (%s)" % (why, errs[0].str()[-70:]))
    # a mechanism the listener does not enable: librdkafka refuses before the exchange
    errs = []
    p = Producer({"bootstrap.servers": "%s:%d" % (b.host, b.plain_port),
                  "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
                  "sasl.username": "admin", "sasl.password": "admin-secret",
                  "error_cb": lambda e: errs.append(e)})
    p.produce(topic, value=b"must-not-exist")
    p.flush(8)
    check(errs, "SASL client on the PLAINTEXT listener: no error")
    c = Consumer(conf("PLAIN", "admin", "admin-secret", **{"group.id": "g-check",
                                                          "enable.auto.commit": False}))
    lo, hi = c.get_watermark_offsets(TopicPartition(topic, 0), timeout=20)
    c.close()
    check(hi == 100, "a refused client wrote: high watermark %d" % hi)


def check_kafka_python(b):
    import kafka
    p = kafka.KafkaProducer(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                            sasl_mechanism="PLAIN", sasl_plain_username="alice",
                            sasl_plain_password="alice-secret")
    for i in range(10):
        p.send("kp-plain", value=b"p%d" % i)
    p.flush(30)
    p.close()
    check(kcat_read(b, "kp-plain") == ["p%d" % i for i in range(10)], "kafka-python PLAIN")
    try:
        kafka.KafkaProducer(bootstrap_servers=b.bootstrap, security_protocol="SASL_PLAINTEXT",
                            sasl_mechanism="PLAIN", sasl_plain_username="alice",
                            sasl_plain_password="wrong", api_version_auto_timeout_ms=5000)
        check(False, "kafka-python wrong password connected")
    except kafka.errors.KafkaError as e:
        print("ok: kafka-python wrong PLAIN password refused (%s)" % type(e).__name__)
    print("ok: kafka-python PLAIN produced 10 records")


# ---- wire-level checks ---------------------------------------------------------------------

def handshake(c, mech, version=1):
    r = c.call(17, version, sstr(mech))
    err = r.i16()
    mechs = [r.str() for _ in range(r.i32())]
    return err, mechs


def authenticate(c, token, version=2):
    flex = version >= 2
    body = (uvar(len(token) + 1) + token + b"\x00") if flex else sbytes(token)
    r = c.call(36, version, body, flexible=flex)
    err = r.i16()
    msg = r.cstr() if flex else r.str()
    if flex:
        n = r.uvar() - 1
        tok = r.b[r.p:r.p + max(n, 0)]
        r.p += max(n, 0)
    else:
        tok = r.bytes()
    life = r.i64() if version >= 1 else 0
    return err, msg, tok, life


def closed(c):
    try:
        c.s.settimeout(5)
        return c.s.recv(1) == b""
    except (ConnectionResetError, OSError):
        return True


def check_wire(b):
    host, port = b.host, b.port
    plain = b"\x00admin\x00admin-secret"
    # Metadata before authentication closes the connection
    c = Conn(host, port, "wire")
    c.send(3, 1, s32(-1))
    check(c.response(none_on_close=True) is None, "Metadata before SASL was answered")
    c.close()
    # before authentication a frame above sasl.server.max.receive.size (512 KiB) closes
    c = Conn(host, port, "wire")
    c.s.sendall(s32(600000) + b"\x00" * 1024)
    check(closed(c), "a 600000-byte frame before authentication was accepted")
    # ApiVersions is served before authentication and lists 17, 36, 50, 51
    c = Conn(host, port, "wire")
    r = c.call(18, 0, b"")
    check(r.i16() == 0, "ApiVersions error")
    keys = {}
    for _ in range(r.i32()):
        k, lo, hi = r.i16(), r.i16(), r.i16()
        keys[k] = (lo, hi)
    check(keys.get(17) == (0, 1) and keys.get(36) == (0, 2) and keys.get(50) == (0, 0) and
          keys.get(51) == (0, 0), "advertised SASL/SCRAM versions %r" % {k: keys.get(k) for k in
                                                                       (17, 36, 50, 51)})
    # an unknown mechanism: 33 with the enabled list, then close
    err, mechs = handshake(c, "GSSAPI")
    check(err == 33 and mechs == ["PLAIN", "SCRAM-SHA-512", "SCRAM-SHA-256"],
          "unsupported mechanism: %d %r" % (err, mechs))
    check(closed(c), "connection open after UNSUPPORTED_SASL_MECHANISM")
    # SaslAuthenticate before SaslHandshake: 34 and close
    c = Conn(host, port, "wire")
    err, msg, _, _ = authenticate(c, plain)
    check(err == 34, "authenticate before handshake: %d" % err)
    check(closed(c), "connection open after ILLEGAL_SASL_STATE")
    # SaslHandshake v0: the token travels as a bare frame and so does the answer (KIP-43)
    c = Conn(host, port, "wire")
    err, mechs = handshake(c, "PLAIN", version=0)
    check(err == 0 and "PLAIN" in mechs, "handshake v0: %d" % err)
    c.s.sendall(s32(len(plain)) + plain)
    check(c.recv(4) == s32(0), "v0 PLAIN answer: an empty bare frame")
    check(c.call(3, 1, s32(-1)) is not None, "Metadata after a v0 exchange")
    c.close()
    c = Conn(host, port, "wire")
    handshake(c, "PLAIN", version=0)
    bad = b"\x00admin\x00nope"
    c.s.sendall(s32(len(bad)) + bad)
    check(closed(c), "connection open after a failed v0 exchange")
    # wrong password: 58 with a message, then close
    c = Conn(host, port, "wire")
    check(handshake(c, "PLAIN")[0] == 0, "handshake PLAIN")
    err, msg, _, _ = authenticate(c, b"\x00admin\x00nope", version=1)
    check(err == 58 and msg and "Authentication failed" in msg, "wrong password: %d %r" % (err, msg))
    check(closed(c), "connection open after SASL_AUTHENTICATION_FAILED")
    # malformed PLAIN token
    c = Conn(host, port, "wire")
    handshake(c, "PLAIN")
    err, msg, _, _ = authenticate(c, b"\x00\x00\x00\x00garbage", version=1)
    check(err == 58, "malformed PLAIN: %d" % err)
    check(closed(c), "connection open after a malformed token")
    # success: session lifetime (KIP-368), Metadata served, a second SaslAuthenticate is 34
    c = Conn(host, port, "wire")
    check(handshake(c, "PLAIN")[0] == 0, "handshake PLAIN")
    err, msg, _, life = authenticate(c, plain, version=1)
    check(err == 0 and life == REAUTH_MS, "PLAIN ok: %d %r lifetime %d" % (err, msg, life))
    r = c.call(3, 1, s32(-1))
    check(r is not None, "Metadata after authentication")
    # once authenticated, frames up to socket.request.max.bytes: a 620 KB Metadata v4 (2600
    # unknown topics, no auto-creation) is read and answered
    names = [sstr("nosuch-%04d-" % i + "x" * 228) for i in range(2600)]
    body = s32(len(names)) + b"".join(names) + s8(0)
    r = c.call(3, 4, body)
    check(r is not None and len(body) > 600000, "a 620 KB request after authentication")
    err, msg, _, _ = authenticate(c, plain, version=1)
    check(err == 34, "SaslAuthenticate after success: %d" % err)
    # re-authentication on the same connection keeps it open; a changed principal does not
    check(handshake(c, "PLAIN")[0] == 0, "re-auth handshake")
    err, _, _, life = authenticate(c, plain, version=1)
    check(err == 0 and life == REAUTH_MS, "re-authenticated")
    check(handshake(c, "PLAIN")[0] == 0, "re-auth handshake 2")
    err, msg, _, _ = authenticate(c, b"\x00alice\x00alice-secret", version=1)
    check(err == 58 and "principal" in (msg or ""), "principal change: %d %r" % (err, msg))
    check(closed(c), "connection open after a principal change")
    # an expired session: the next request closes the connection
    c = Conn(host, port, "wire")
    handshake(c, "PLAIN")
    check(authenticate(c, plain, version=1)[0] == 0, "auth for expiry")
    time.sleep(REAUTH_MS / 1000 + 0.3)
    c.send(3, 1, s32(-1))
    check(c.response(none_on_close=True) is None, "request after session expiry was answered")
    # SaslHandshake on the PLAINTEXT listener: 34, connection stays
    c = Conn(host, b.plain_port, "wire")
    err, _ = handshake(c, "PLAIN")
    check(err == 34, "handshake on PLAINTEXT listener: %d" % err)
    check(c.call(3, 1, s32(-1)) is not None, "PLAINTEXT listener after a handshake")
    c.close()
    print("ok: wire rules (pre-auth gate, 33/34/58, handshake v0 bare tokens, session lifetime, "
          "re-auth, expiry)")


def scram_alter(b, user, mech, password, iterations=4096, delete=False):
    """AlterUserScramCredentials v0 on the PLAINTEXT listener; returns [(user, code, msg)]."""
    import hashlib
    salt = os.urandom(24)
    algo = "sha256" if mech == 1 else "sha512"
    salted = hashlib.pbkdf2_hmac(algo, password.encode(), salt, iterations)
    dels = carr([cstr(user) + s8(mech) + b"\x00"]) if delete else carr([])
    ups = carr([]) if delete else carr([cstr(user) + s8(mech) + s32(iterations) +
                                        uvar(len(salt) + 1) + salt + uvar(len(salted) + 1) +
                                        salted + b"\x00"])
    c = Conn(b.host, b.plain_port, "wire")
    r = c.call(51, 0, dels + ups + b"\x00", flexible=True)
    r.i32()
    out = []
    for _ in range(r.uvar() - 1):
        out.append((r.cstr(), r.i16(), r.cstr()))
        r.uvar()
    c.close()
    return out


def check_restart(b):
    # bob (from laminar.scram.credentials) and carol (AlterUserScramCredentials) after restart
    res = scram_alter(b, "carol", 2, "carol-secret")
    check(res == [("carol", 0, None)], "alter carol: %r" % res)
    res = scram_alter(b, "carol", 2, "carol-secret", iterations=100)
    check(res[0][1] == 93, "too few iterations: %r" % res)
    res = scram_alter(b, "nobody", 1, "x", delete=True)
    check(res[0][1] == 91, "delete missing: %r" % res)
    res = scram_alter(b, "carol", 3, "x")
    check(res[0][1] == 33, "unknown mechanism: %r" % res)
    restart_wait(b, kill=False)
    rc, _, err = kcat(b, "SCRAM-SHA-512", "carol", "carol-secret", "-L")
    check(rc == 0, "carol after restart: %s" % err)
    rc, _, err = kcat(b, "SCRAM-SHA-256", "bob", "bob-secret", "-L")
    check(rc == 0, "bob after restart: %s" % err)
    res = scram_alter(b, "bob", 1, "", delete=True)
    check(res == [("bob", 0, None)], "delete bob's SHA-256: %r" % res)
    restart_wait(b, kill=True)
    rc, _, err = kcat(b, "SCRAM-SHA-256", "bob", "bob-secret", "-L", timeout=40)
    check(rc != 0, "a deleted credential still logs in after kill -9")
    rc, _, err = kcat(b, "SCRAM-SHA-512", "bob", "bob-secret", "-L")
    check(rc == 0, "bob's SHA-512 after kill -9: %s" % err)
    print("ok: SCRAM credentials survive restart and kill -9 (created, deleted)")


def check_kafkajs(b):
    js = os.path.join(HERE, "..", "kafkajs")
    if not os.path.isdir(os.path.join(js, "node_modules", "kafkajs")):
        raise AssertionError("tests/compat/kafkajs/node_modules missing: run "
                             "tests/compat/kafkajs/prepare")
    p = subprocess.run(["node", os.path.join(js, "kafkajs_sasl.js"), b.bootstrap],
                       capture_output=True, timeout=120, cwd=js)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    print(out.strip())
    check(p.returncode == 0, "kafkajs_sasl.js failed")


def check_java(b):
    java = os.path.join(HERE, "..", "java")
    cp = os.path.join(java, "lib", "*") + ":" + os.path.join(java, "classes")
    if not os.path.exists(os.path.join(java, "classes", "SaslSuite.class")):
        raise AssertionError("tests/compat/java/classes/SaslSuite.class missing: run "
                             "tests/compat/java/prepare")
    p = subprocess.run(java_cmd(cp, "SaslSuite", b.bootstrap, b.tmp), capture_output=True,
                       timeout=240)
    out = p.stdout.decode(errors="replace") + p.stderr.decode(errors="replace")
    print("\n".join(l for l in out.splitlines() if l.startswith(("ok:", "SaslSuite", "$"))))
    check(p.returncode == 0, "SaslSuite failed:\n" + out[-4000:])


class ControllerBroker(SaslBroker):
    """A one-voter KRaft node (process.roles=broker,controller): metadata changes go through
    the controller's Raft log (admin_commit's cluster path) instead of the local file."""

    def __init__(self, io):
        self.ctl_port = free_port()
        super().__init__(io, config={
            "process.roles": "broker,controller", "controller.listener.names": "CONTROLLER",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,"
                                              "SASL_PLAINTEXT:SASL_PLAINTEXT",
            "inter.broker.listener.name": "PLAINTEXT",
            "sasl.enabled.mechanisms": "SCRAM-SHA-256,SCRAM-SHA-512",
            "laminar.http.listener": ""}, extra_args=["--node-id", "1"])
        self.config["controller.quorum.voters"] = "1@%s:%d" % (self.host, self.ctl_port)

    def args(self):
        a = super().args()
        i = a.index("--listeners")
        a[i + 1] += ",CONTROLLER://%s:%d" % (self.host, self.ctl_port)
        return a


def controller_scenario(b):
    """AlterUserScramCredentials committed through the controller, a login with it, a
    refusal answered from the controller's check, and the credential after a restart (the
    controller's log replayed)."""
    deadline = time.monotonic() + 30
    while True:
        try:
            res = scram_alter(b, "dave", 2, "dave-secret")
        except Exception as e:  # noqa: BLE001 - closed until the node has caught up
            res = repr(e)
        if res == [("dave", 0, None)] or time.monotonic() > deadline:
            break
        # the controller group elects its leader after start, and the node serves clients
        # once it has replayed the metadata log past its own registration
        time.sleep(0.5)
    check(res == [("dave", 0, None)], "alter through the controller: %r" % res)
    res = scram_alter(b, "nobody", 1, "x", delete=True)
    check(res[0][1] == 91, "delete missing through the controller: %r" % res)
    rc, _, err = kcat(b, "SCRAM-SHA-512", "dave", "dave-secret", "-L")
    check(rc == 0, "dave via the controller: %s" % err)
    restart_wait(b, kill=False)
    deadline = time.monotonic() + 30
    while True:
        rc, _, err = kcat(b, "SCRAM-SHA-512", "dave", "dave-secret", "-L")
        if rc == 0 or time.monotonic() > deadline:
            break
    check(rc == 0, "dave after a restart (controller log): %s" % err)
    rc, _, err = kcat(b, "SCRAM-SHA-512", "dave", "wrong", "-L")
    check(rc != 0, "wrong password through the controller's credential")
    print("ok: SCRAM credentials through the controller (one voter), kept across a restart")
    check(b.stop() == 0, "broker exit status")


def scenario(b, java):
    check_wire(b)
    check_kcat(b)
    check_librdkafka(b)
    check_kafka_python(b)
    check_kafkajs(b)
    if java:
        check_java(b)
    check_restart(b)
    check(b.alive(), "broker died")
    check(b.stop() == 0, "broker exit status")
    check("runtime error" not in b.log_text(), "sanitizer runtime error in the log")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    ap.add_argument("--java", action="store_true")
    args = ap.parse_args()
    b = SaslBroker(args.io, config=config())
    rc = run_scenario(b, "sasl (%s)" % args.io, lambda: scenario(b, args.java))
    c = ControllerBroker(args.io)
    return rc | run_scenario(c, "sasl through the controller (%s)" % args.io,
                             lambda: controller_scenario(c))


if __name__ == "__main__":
    sys.exit(main())
