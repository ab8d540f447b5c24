"""Start-up guards of `laminar serve`:

- settings laminar cannot honour (an SSL / SASL_SSL listener, directly or through
  listener.security.protocol.map, without a keystore; a SASL listener without a mechanism
  laminar serves or without PLAIN's users; TLS keys laminar does not read, other SASL and
  quota keys, an authorizer other than Kafka's ACL authorizer, a malformed super.users; a controller listener that is not PLAINTEXT) stop the
  start: exit status non-zero, exactly one ERROR line naming the key, the log dir untouched;
- the settings of Kafka's shipped config/server.properties, config/kraft/*.properties and
  config/controller.properties still start and serve;
- a second broker on a port the first one listens on exits with a clear error, and every new
  connection still reaches the first broker (same cluster id), where SO_REUSEPORT alone would
  have split them between two brokers with different data;
- a second broker on the same log dir exits with a clear error naming the dir (the `.lock`
  file, as Kafka's LogManager), and a kill -9'd broker leaves no stale lock behind.

    test_startup_guards.py --io uring|epoll
"""

import argparse
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker, binary_path, free_port  # noqa: E402

failures = []


def check(ok, what, detail=None):
    print(("ok: " if ok else "FAIL: ") + what + ("" if ok or detail is None else ": %r" % (detail,)))
    if not ok:
        failures.append(what)


def env():
    e = dict(os.environ)
    e.setdefault("ASAN_OPTIONS", "abort_on_error=0")
    return e


def run_refused(args, timeout=30):
    """Runs `laminar serve args` expecting it to stop by itself; returns (exit status, output)."""
    try:
        p = subprocess.run([binary_path(), "serve"] + args, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=timeout, env=env())
        return p.returncode, p.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        return None, (e.stdout or b"").decode("utf-8", "replace") + "\n(still running: killed)"


def error_lines(out):
    return [l for l in out.splitlines() if " ERROR " in l or "ERROR:" in l]


def metadata_cluster_id(port, timeout=10):
    """One fresh connection, one Metadata v2 request (all topics): the cluster id answered."""
    body = struct.pack(">i", -1)  # topics: null = all
    client = b"startup-guard"
    hdr = struct.pack(">hhih", 3, 2, 7, len(client)) + client
    req = hdr + body
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(req)) + req)
        n = struct.unpack(">i", recv_exact(s, 4))[0]
        data = recv_exact(s, n)
    off = 4  # correlation id
    (count,) = struct.unpack_from(">i", data, off)
    off += 4
    for _ in range(count):
        off += 4  # node id
        (hl,) = struct.unpack_from(">h", data, off)
        off += 2 + hl + 4  # host, port
        (rl,) = struct.unpack_from(">h", data, off)
        off += 2 + max(rl, 0)
    (cl,) = struct.unpack_from(">h", data, off)
    return data[off + 2:off + 2 + cl].decode() if cl >= 0 else None


def recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(buf), n))
        buf += chunk
    return buf


# --- 9: settings that cannot be honoured ------------------------------------------------------

REFUSED = [
    # (extra args, text the one error line must contain)
    (["--listeners", "SASL_SSL://127.0.0.1:{p}"],
     "security protocol SASL_SSL needs sasl.enabled.mechanisms"),
    (["--listeners", "SASL_SSL://127.0.0.1:{p}", "--config", "sasl.enabled.mechanisms=PLAIN",
      "--config", "listener.name.sasl_ssl.plain.sasl.jaas.config=x"],
     "SASL_SSL://127.0.0.1:{p}: a TLS listener needs ssl.keystore.location"),
    (["--listeners", "SSL://127.0.0.1:{p}"], "SSL://127.0.0.1:{p}: a TLS listener needs"),
    (["--listeners", "SSL://127.0.0.1:{p}", "--config", "ssl.keystore.location=/nonexistent.pem"],
     "ssl.keystore.location: cannot read '/nonexistent.pem'"),
    (["--listeners", "SASL_PLAINTEXT://127.0.0.1:{p}"],
     "security protocol SASL_PLAINTEXT needs sasl.enabled.mechanisms"),
    (["--listeners", "SASL_PLAINTEXT://127.0.0.1:{p}", "--config",
      "sasl.enabled.mechanisms=GSSAPI"], "SASL mechanism GSSAPI is not supported"),
    (["--listeners", "SASL_PLAINTEXT://127.0.0.1:{p}", "--config",
      "sasl.enabled.mechanisms=PLAIN"], "listener.name.sasl_plaintext.plain.sasl.jaas.config"),
    (["--listeners", "PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{q}",
      "--config", "controller.listener.names=CONTROLLER",
      "--config", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SASL_PLAINTEXT"],
     "controller listener CONTROLLER://127.0.0.1:{q}: security protocol SASL_PLAINTEXT"),
    (["--listeners", "PLAINTEXT://127.0.0.1:{p},SSL://127.0.0.1:{q}"],
     "SSL://127.0.0.1:{q}: a TLS listener needs"),
    (["--listeners", "EXTERNAL://127.0.0.1:{p}",
      "--config", "listener.security.protocol.map=EXTERNAL:SASL_SSL"],
     "EXTERNAL://127.0.0.1:{p}: security protocol SASL_SSL needs"),
    (["--listeners", "PLAINTEXT://127.0.0.1:{p},CONTROLLER://127.0.0.1:{q}",
      "--config", "controller.listener.names=CONTROLLER",
      "--config", "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:SSL"],
     "CONTROLLER://127.0.0.1:{q}: a TLS listener needs"),
    (["--listeners", "PLAINTEXT://127.0.0.1:{p}",
      "--advertised-listeners", "SASL_SSL://127.0.0.1:{p}"], "SASL_SSL is not in listeners"),
    (["--listeners", "INTERNAL://127.0.0.1:{p}"], "listener INTERNAL has no security protocol"),
    (["--config", "ssl.keymanager.algorithm=PKIX"], "ssl.keymanager.algorithm"),
    (["--config", "ssl.secure.random.implementation=SHA1PRNG"],
     "ssl.secure.random.implementation"),
    (["--config", "sasl.kerberos.service.name=kafka"], "sasl.kerberos.service.name"),
    (["--config", "listener.name.plaintext.sasl.jaas.config=x"],
     "listener.name.plaintext.sasl.jaas.config"),
    (["--config", "listener.name.plaintext.ssl.engine.factory.class=x"],
     "listener.name.plaintext.ssl.engine.factory.class"),
    (["--config", "security.inter.broker.protocol=SASL_SSL"], "security.inter.broker.protocol"),
    (["--config", "authorizer.class.name=com.example.MyAuthorizer"], "authorizer.class.name"),
    (["--config", "super.users=admin"], "super.users"),
    (["--config", "allow.everyone.if.no.acl.found=maybe"], "allow.everyone.if.no.acl.found"),
    (["--config", "client.quota.callback.class=com.example.Quotas"], "client.quota.callback.class"),
    (["--config", "quota.consumer.default=5"], "quota.consumer.default"),
    (["--config", "controller.quota.window.num=3"], "controller.quota.window.num"),
]


def refused_settings(io, tmp):
    for i, (args, expect) in enumerate(REFUSED):
        p, q = free_port(), free_port()
        data = os.path.join(tmp, "refused-%d" % i)
        a = ["--io", io, "--shards", "1", "--log-dirs", data]
        if "--listeners" not in args:
            a += ["--listeners", "PLAINTEXT://127.0.0.1:%d" % p]
        a += [x.format(p=p, q=q) for x in args]
        rc, out = run_refused(a)
        errs = error_lines(out)
        want = expect.format(p=p, q=q)
        check(rc not in (0, None), "refused %s: exit status non-zero" % want, rc)
        check(len(errs) == 1 and want in errs[0] and
              ("not supported" in errs[0] or "no security protocol" in errs[0] or
               "needs sasl.enabled.mechanisms" in errs[0] or "is not set" in errs[0] or
               "a TLS listener needs" in errs[0] or "cannot read" in errs[0] or
               "is not in listeners" in errs[0]),
              "refused %s: one error line naming it" % want, errs or out[-2000:])
        check(not os.path.exists(data), "refused %s: log dir untouched" % want)


# Kafka's shipped broker configurations (the key lines, comments shortened). Ports 9092/9093,
# localhost and the log dirs are rewritten to free loopback ports and a temporary directory.
STOCK = {
    # config/server.properties, Kafka 4.0 (combined broker+controller)
    "4.0 config/server.properties": """
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
#log.flush.interval.messages=10000
#log.flush.interval.ms=1000
log.retention.hours=168
#log.retention.bytes=1073741824
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
""",
    # config/kraft/server.properties, Kafka 3.x
    "3.x config/kraft/server.properties": """
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
""",
    # config/kraft/broker.properties, Kafka 3.x
    "3.x config/kraft/broker.properties": """
process.roles=broker
node.id=2
controller.quorum.voters=1@localhost:9093
listeners=PLAINTEXT://localhost:9092
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-broker-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
""",
    # config/controller.properties, Kafka 4.0: no map, the controller listener is PLAINTEXT
    "4.0 config/controller.properties": """
process.roles=controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=CONTROLLER://:9093
advertised.listeners=CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
#listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kraft-controller-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
""",
    # config/server.properties, Kafka 2.x/3.x ZooKeeper mode
    "zookeeper-era config/server.properties": """
broker.id=0
#listeners=PLAINTEXT://:9092
#advertised.listeners=PLAINTEXT://your.host.name:9092
#listener.security.protocol.map=PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
listeners=PLAINTEXT://:9092
num.network.threads=3
num.io.threads=8
socket.send.buffer.bytes=102400
socket.receive.buffer.bytes=102400
socket.request.max.bytes=104857600
log.dirs=/tmp/kafka-logs
num.partitions=1
num.recovery.threads.per.data.dir=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.segment.bytes=1073741824
log.retention.check.interval.ms=300000
zookeeper.connect=localhost:2181
zookeeper.connection.timeout.ms=18000
group.initial.rebalance.delay.ms=0
""",
}


def wait_started(proc, log_path, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with open(log_path, "rb") as f:
            if b" started:" in f.read():
                return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    return False


def stock_configs_start(io, tmp):
    for name, text in STOCK.items():
        p, q = free_port(), free_port()
        data = os.path.join(tmp, "stock-" + name.replace(" ", "_").replace("/", "_"))
        lines = []
        for line in text.strip().splitlines():
            if line.startswith("log.dirs="):
                line = "log.dirs=" + data
            line = (line.replace("://:", "://127.0.0.1:").replace("localhost", "127.0.0.1")
                    .replace(":9092", ":%d" % p).replace(":9093", ":%d" % q))
            lines.append(line)
        path = data + ".properties"
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n")
        serve_port = p if any(l.startswith("listeners=") and ":%d" % p in l for l in lines) else q
        log_path = data + ".log"
        with open(log_path, "wb") as log:
            proc = subprocess.Popen([binary_path(), "serve", path, "--io", io, "--shards", "1"],
                                    stdout=log, stderr=subprocess.STDOUT, env=env())
        started = wait_started(proc, log_path)
        cluster = None
        # a KRaft config is a one-voter cluster: its node closes client connections until it
        # has replayed the metadata log past its own registration (moments), as clients retry
        deadline = time.monotonic() + 15
        while started and not isinstance(cluster, str) and time.monotonic() < deadline:
            try:
                cluster = metadata_cluster_id(serve_port)
            except OSError as e:
                cluster = e
                time.sleep(0.1)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        with open(log_path, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        if any(l.strip() == "process.roles=broker" for l in lines):
            # a broker-only node whose controller quorum is not running: as Kafka's broker it
            # starts and waits for the controller, serving no client until it has registered
            check(started and not isinstance(cluster, str),
                  "%s: starts and waits for its controller (clients refused meanwhile)" % name,
                  cluster if started else out[-3000:])
        else:
            check(started and isinstance(cluster, str) and len(cluster) > 0,
                  "%s: starts and answers Metadata on %d" % (name, serve_port),
                  cluster if started else out[-3000:])
        check(rc == 0 and not error_lines(out), "%s: clean exit, no error lines" % name,
              (rc, error_lines(out)))


# --- 10: a second broker on the same port or log dir -----------------------------------------

def second_on_same_port(io, tmp):
    a = Broker(io=io, shards=2)
    a.start()
    b = None
    try:
        cluster_a = metadata_cluster_id(a.port)
        data_b = os.path.join(tmp, "second-port")
        log_b = os.path.join(tmp, "second-port.log")
        with open(log_b, "wb") as log:
            b = subprocess.Popen([binary_path(), "serve", "--listeners",
                                  "PLAINTEXT://127.0.0.1:%d" % a.port, "--log-dirs", data_b,
                                  "--io", io, "--shards", "2"],
                                 stdout=log, stderr=subprocess.STDOUT, env=env())
        # New connections while the second process runs (it waits for the port a few seconds
        # before giving up) and after it is gone: each must reach the first broker's data.
        ids = {}
        deadline = time.monotonic() + 20
        while b.poll() is None and time.monotonic() < deadline:
            cid = metadata_cluster_id(a.port)
            ids[cid] = ids.get(cid, 0) + 1
            time.sleep(0.005)
        for _ in range(48):
            cid = metadata_cluster_id(a.port)
            ids[cid] = ids.get(cid, 0) + 1
        if b.poll() is None:
            b.kill()
        rc = b.wait()
        with open(log_b, "rb") as f:
            out = f.read().decode("utf-8", "replace")
        errs = error_lines(out)
        check(rc not in (0, -signal.SIGKILL), "second broker on port %d: exit status non-zero"
              % a.port, (rc, out[-2000:]))
        check(len(errs) == 1 and "port %d is already in use" % a.port in errs[0],
              "second broker on the same port: one clear error line", errs or out[-2000:])
        check(not os.path.exists(data_b), "second broker on the same port: its log dir untouched")
        check(list(ids) == [cluster_a] and ids[cluster_a] > 48,
              "every new connection (%d) served by the first broker" % sum(ids.values()), ids)
        check(a.alive(), "first broker still running")
    finally:
        if b is not None and b.poll() is None:
            b.kill()
            b.wait()
        rc = a.stop()
        check(rc == 0, "first broker exits cleanly", rc)
        a.cleanup()


def second_on_same_dir(io, tmp):
    a = Broker(io=io, shards=2)
    a.start()
    try:
        cluster_a = metadata_cluster_id(a.port)
        port_b = free_port()
        rc, out = run_refused(["--listeners", "PLAINTEXT://127.0.0.1:%d" % port_b,
                               "--log-dirs", a.data_dir, "--io", io, "--shards", "2"], timeout=20)
        errs = error_lines(out)
        check(rc not in (0, None), "second broker on the same log dir: exit status non-zero",
              (rc, out[-2000:]))
        check(len(errs) == 1 and a.data_dir in errs[0] and "in use by another process" in errs[0],
              "second broker on the same log dir: one error line naming the dir",
              errs or out[-2000:])
        check(os.path.exists(os.path.join(a.data_dir, ".lock")), "log dir has a .lock file")
        check(a.alive() and metadata_cluster_id(a.port) == cluster_a,
              "first broker still serving its data")
        # A crash releases the lock with the process: the restart on the same dir starts.
        a.kill9()
        a.restart()
        check(metadata_cluster_id(a.port) == cluster_a, "restart after kill -9 on the same dir")
    finally:
        rc = a.stop()
        check(rc == 0, "broker exits cleanly", rc)
        a.cleanup()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--io", default="uring")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="laminar-startup-")
    try:
        refused_settings(args.io, tmp)
        stock_configs_start(args.io, tmp)
        second_on_same_port(args.io, tmp)
        second_on_same_dir(args.io, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print("%d failed" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
