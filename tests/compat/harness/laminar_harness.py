"""Start and stop a `laminar` broker for tests (stdlib only, /usr/bin/python3).

    from laminar_harness import Broker
    with Broker(io="uring") as b:          # free loopback port, fresh temp data dir
        sock = socket.create_connection(("127.0.0.1", b.port))
        ...
        b.kill9(); b.restart()              # same port, same data dir

The binary comes from $LAMINAR_BIN (CTest sets it to the built target), else from the first of
build*/broker/laminar under the repository root. Logs go to <tmpdir>/broker.log (b.log_text()).
"""

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def binary_path(env="LAMINAR_BIN"):
    """Path of the broker binary: $<env>, else a build tree's broker/laminar."""
    path = os.environ.get(env)
    if path:
        return path
    for cand in sorted(glob.glob(os.path.join(ROOT, "build*", "broker", "laminar"))):
        if os.access(cand, os.X_OK):
            return cand
    raise RuntimeError("laminar binary not found: set %s or build broker/laminar" % env)


_PORTS_GIVEN = set()


def free_port(host="127.0.0.1"):
    """A TCP port on host that was free a moment ago (bind to 0, read it, close), never one
    this process was given before: two calls in a row may otherwise get the same port back
    from the kernel (nothing binds it in between), and a cluster test then put its Kafka and
    controller listeners on one port."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _PORTS_GIVEN:
            _PORTS_GIVEN.add(port)
            return port
    raise RuntimeError("no fresh free port after 100 tries")


def wait_port(host, port, timeout_s, proc=None):
    """Waits until host:port accepts a TCP connection; False on timeout or if proc exits."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.05)
    return False


class Broker:
    """One broker process on a free loopback port with its own data directory."""

    def __init__(self, io="uring", shards=2, binary=None, host="127.0.0.1", port=None,
                 config=None, extra_args=(), data_dir=None, env=None):
        self.io = io
        self.shards = shards
        self.binary = binary or binary_path()
        self.host = host
        self.port = port or free_port(host)
        self.config = dict(config or {})
        self.extra_args = list(extra_args)
        self.tmp = tempfile.mkdtemp(prefix="laminar-test-")
        self.data_dir = data_dir or os.path.join(self.tmp, "data")
        os.makedirs(self.data_dir, exist_ok=True)
        self.log_path = os.path.join(self.tmp, "broker.log")
        self.env = dict(os.environ)
        # ASan's leak check would fail a kill -9'd process' successor for nothing; keep it for
        # the clean SIGTERM exit (the default), and make ASan reports land in the log.
        self.env.setdefault("ASAN_OPTIONS", "abort_on_error=0")
        if env:
            self.env.update(env)
        self.proc = None
        self._log = None

    @property
    def bootstrap(self):
        return "%s:%d" % (self.host, self.port)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def args(self):
        a = [self.binary, "serve", "--listeners", "PLAINTEXT://%s:%d" % (self.host, self.port),
             "--log-dirs", self.data_dir, "--io", self.io]
        if self.shards:
            a += ["--shards", str(self.shards)]
        for k, v in self.config.items():
            a += ["--config", "%s=%s" % (k, v)]
        return a + self.extra_args

    def start(self, timeout_s=30):
        """Starts the process and waits until it accepts connections."""
        assert self.proc is None or self.proc.poll() is not None, "already running"
        # The log is appended to across restarts: wait for a "started:" line of THIS process.
        starts_before = self.log_text().count(" started:")
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env)
        ok = wait_port(self.host, self.port, timeout_s, self.proc)
        # The port accepts as soon as it is bound; "started:" is logged once every shard serves.
        deadline = time.monotonic() + timeout_s
        while ok and self.log_text().count(" started:") <= starts_before:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                ok = False
                break
            time.sleep(0.02)
        if not ok:
            rc = self.proc.poll()
            self.stop()
            raise RuntimeError("broker did not start (exit %s); log:\n%s" % (rc, self.log_text()))
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout_s=20):
        """SIGTERM, then SIGKILL after timeout_s. Returns the exit status (negative = signal)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        rc = self.proc.returncode
        if self._log:
            self._log.close()
            self._log = None
        return rc

    def kill9(self):
        """SIGKILL (a crash); the data directory stays for restart()."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self._log:
            self._log.close()
            self._log = None

    def restart(self, timeout_s=30):
        """Starts again on the same port and data directory (after stop() or kill9())."""
        if self.alive():
            self.stop()
        return self.start(timeout_s)

    def rss_kib(self):
        """Resident set size of the broker (VmRSS from /proc/<pid>/status), in KiB."""
        with open("/proc/%d/status" % self.proc.pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def cleanup(self):
        """Stops the broker and removes its directory (kept, and named, when the environment
        sets LAMINAR_KEEP_DATA=1: for looking into a failure)."""
        self.stop()
        if os.environ.get("LAMINAR_KEEP_DATA") == "1":
            print("kept %s" % self.tmp)
            return
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.cleanup()
        return False
