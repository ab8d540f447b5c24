"""A small network of Linux network namespaces for fault tests: one namespace per node, all on
one bridge, and the faults a real network has (partitions, one-way loss, delay, jitter, loss,
duplication, reordering), applied and healed while the nodes run.

    lab = NetLab(3)            # prefix lmf<pid>; subnet 10.77.<run>.0/24, <run> free on this host
    lab.up()                   # namespaces, bridge, veths; lab.addr(1) == "10.77.<run>.1"
    lab.popen_argv(1, argv)    # argv run inside node 1's namespace (nsenter: same pid)
    lab.cut(1, [2, 3], "both") # node 1 neither sends to nor receives from nodes 2 and 3
    lab.degrade(2, delay_ms=40, jitter_ms=20, loss_pct=2, dup_pct=1, reorder_pct=10)
    lab.heal()                 # every cut and every degradation removed
    lab.down()                 # everything the lab created is deleted (also after a failure)

Layout (names stay under the kernel's 15-character limit for interfaces):

    root namespace:   lmf<pid>c  10.77.<run>.254/24   the test's clients live here
                          |  veth
    lmf<pid>br:       bridge "sw0" ── cl (client end), v1 .. vN (node ends)
                          |  veth, one per node
    lmf<pid>n<i>:     eth0  10.77.<run>.<i>/24        node i listens and advertises here

The bridge has a namespace of its own so that nothing is forwarded through the root namespace's
firewall (with br_netfilter loaded, bridged frames traverse FORWARD, which Docker sets to DROP),
and the test never adds a rule outside namespaces it created.

Cuts are iptables DROP rules in a chain "LMF" inside the node's namespace, jumped to from INPUT
(incoming: matched by source address) and OUTPUT (outgoing: matched by destination address), so a
one-way cut is one rule on one side. Degradations use tc netem on both ends of the node's veth
(each end shapes what it sends). Where the kernel has no sch_netem, loss falls back to iptables'
statistic match, duplication to the TEE target (a copy to the same next hop), and delay, jitter
and reordering to an NFQUEUE that nfq_delay.py holds packets in; `lab.link_mode` says which.

Everything is named with the prefix lmf<pid> (test_faults.py's data directory too);
`cleanup_stale()` deletes what earlier runs whose process is gone left behind (a kill -9 of the
test), processes inside their namespaces included.
"""

import glob
import ipaddress
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
NFQ_HELPER = os.path.join(HERE, "nfq_delay.py")
PREFIX = "lmf"
CHAIN = "LMF"  # cuts
LINK_CHAIN = "LMFLINK"  # the fallback degradations (loss, duplication, queue to nfq_delay.py)


def _run(argv, check=True, quiet=False):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    if check and p.returncode != 0:
        raise RuntimeError("%s: exit %d: %s" % (" ".join(argv), p.returncode, out.strip()))
    if not quiet and p.returncode != 0:
        print("netlab: %s: exit %d: %s" % (" ".join(argv), p.returncode, out.strip()))
    return p.returncode, out


def _pid_is_ours(pid):
    """True while pid is a running test that may own lmf<pid> names."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    return "python" in cmd


def unavailable():
    """Why this machine cannot run the lab (a sentence), or None when it can."""
    if os.geteuid() != 0:
        return "not root (network namespaces, veths and iptables need CAP_NET_ADMIN)"
    for tool in ("ip", "iptables", "tc", "nsenter"):
        if shutil.which(tool) is None:
            return "%s is not installed (scripts/install-deps installs iproute2, iptables)" % tool
    probe = "%s%dprobe" % (PREFIX, os.getpid())
    try:
        rc, out = _run(["ip", "netns", "add", probe], check=False, quiet=True)
        if rc != 0:
            return "cannot create a network namespace: %s" % out.strip()
        rc, out = _run(["ip", "netns", "exec", probe, "iptables", "-N", CHAIN], check=False,
                       quiet=True)
        if rc != 0:
            return "iptables does not work in a network namespace: %s" % out.strip()
        rc, out = _run(["ip", "-n", probe, "link", "add", "name", "va", "type", "veth", "peer",
                        "name", "vb"], check=False, quiet=True)
        if rc != 0:
            return "cannot create a veth pair: %s" % out.strip()
        rc, out = _run(["ip", "-n", probe, "link", "add", "name", "sw0", "type", "bridge"],
                       check=False, quiet=True)
        if rc != 0:
            return "cannot create a bridge: %s" % out.strip()
        return None
    finally:
        _run(["ip", "netns", "del", probe], check=False, quiet=True)


def cleanup_stale():
    """Deletes namespaces, root-namespace links and temporary directories named lmf<pid>...
    whose test is gone."""
    pat = re.compile(r"^%s(\d+)" % PREFIX)
    _, out = _run(["ip", "netns", "list"], check=False, quiet=True)
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pat.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_is_ours(int(m.group(1))):
            print("netlab: removing stale namespace %s" % name)
            _kill_in_netns(name)
            _run(["ip", "netns", "del", name], check=False)
    _, out = _run(["ip", "-o", "link", "show"], check=False, quiet=True)
    for line in out.splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        name = parts[1].strip().split("@")[0]
        m = pat.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_is_ours(int(m.group(1))):
            print("netlab: removing stale link %s" % name)
            _run(["ip", "link", "del", name], check=False, quiet=True)  # maybe gone with its peer
    for path in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*-*")):
        m = pat.match(os.path.basename(path))
        if m and int(m.group(1)) != os.getpid() and not _pid_is_ours(int(m.group(1))):
            print("netlab: removing stale data directory %s" % path)
            shutil.rmtree(path, ignore_errors=True)


def _kill_in_netns(ns):
    """SIGKILLs processes left inside namespace ns (a broker or nfq_delay.py of a dead test)."""
    _, out = _run(["ip", "netns", "pids", ns], check=False, quiet=True)
    for pid in out.split():
        try:
            os.kill(int(pid), 9)
        except (OSError, ValueError):
            pass


def _free_octet(start):
    """A third octet R in 1..250 with no route of this host overlapping 10.77.R.0/24."""
    _, out = _run(["ip", "-4", "route", "show", "table", "all"], check=False, quiet=True)
    nets = []
    for line in out.splitlines():
        word = line.split()[0] if line.split() else ""
        if word in ("broadcast", "local", "unicast", "multicast"):
            word = line.split()[1]
        try:
            nets.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue  # "default" and the like
    for k in range(250):
        r = (start + k) % 250 + 1
        mine = ipaddress.ip_network("10.77.%d.0/24" % r)
        if not any(mine.overlaps(n) for n in nets if n.prefixlen > 0):
            return r
    raise RuntimeError("no free 10.77.R.0/24 on this host")


class NetLab:
    """N node namespaces on one bridge (see the module comment)."""

    def __init__(self, n):
        assert 1 <= n <= 20
        self.n = n
        self.prefix = "%s%d" % (PREFIX, os.getpid())
        assert len(self.prefix) + 3 <= 15, "interface names must fit IFNAMSIZ"
        self.brns = self.prefix + "br"
        self.client_if = self.prefix + "c"
        self.run = None
        self.created = []  # namespaces, in creation order
        self.link_mode = None  # "netem" or "iptables+nfqueue", decided by up()
        self.nfq = {}  # node -> nfq_delay.py process
        self.degraded = set()

    # names and addresses
    def ns(self, i):
        return "%sn%d" % (self.prefix, i)

    def addr(self, i):
        return "10.77.%d.%d" % (self.run, i)

    @property
    def client_addr(self):
        return "10.77.%d.254" % self.run

    def popen_argv(self, i, argv):
        """argv to start inside node i's namespace; nsenter execs, so the pid is the program's."""
        return ["nsenter", "--net=/run/netns/%s" % self.ns(i), "--"] + list(argv)

    # building and removing
    def up(self):
        self.run = _free_octet(os.getpid() % 250)
        try:
            self._up()
        except Exception:
            self.down()
            raise
        print("netlab: %d namespaces %s..%s on 10.77.%d.0/24 (clients at %s), link faults by %s"
              % (self.n, self.ns(1), self.ns(self.n), self.run, self.client_addr,
                 self.link_mode))

    def _ns_add(self, name):
        _run(["ip", "netns", "add", name])
        self.created.append(name)
        _run(["ip", "-n", name, "link", "set", "lo", "up"])

    def _up(self):
        self._ns_add(self.brns)
        b = ["ip", "-n", self.brns]
        _run(b + ["link", "add", "name", "sw0", "type", "bridge"])
        # no spanning tree and no forward delay: the ports forward at once
        _run(b + ["link", "set", "dev", "sw0", "type", "bridge", "forward_delay", "0",
                  "stp_state", "0"])
        _run(b + ["link", "set", "dev", "sw0", "up"])
        # the client end: created in the root namespace, its peer moved into the bridge's
        _run(["ip", "link", "add", "name", self.client_if, "type", "veth", "peer", "name",
              self.prefix + "cb"])
        _run(["ip", "link", "set", self.prefix + "cb", "netns", self.brns])
        _run(b + ["link", "set", self.prefix + "cb", "name", "cl", "master", "sw0", "up"])
        _run(["ip", "addr", "add", self.client_addr + "/24", "dev", self.client_if])
        _run(["ip", "link", "set", self.client_if, "up"])
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            self._ns_add(ns)
            v, p = "%sv%d" % (self.prefix, i), "%sp%d" % (self.prefix, i)
            _run(["ip", "link", "add", "name", v, "type", "veth", "peer", "name", p])
            _run(["ip", "link", "set", v, "netns", self.brns])
            _run(["ip", "link", "set", p, "netns", ns])
            _run(b + ["link", "set", v, "name", "v%d" % i, "master", "sw0", "up"])
            _run(["ip", "-n", ns, "link", "set", p, "name", "eth0"])
            _run(["ip", "-n", ns, "addr", "add", self.addr(i) + "/24", "dev", "eth0"])
            _run(["ip", "-n", ns, "link", "set", "eth0", "up"])
            x = ["ip", "netns", "exec", ns, "iptables"]
            for chain in (CHAIN, LINK_CHAIN):  # cuts first: a queued packet's ACCEPT ends INPUT
                _run(x + ["-N", chain])
                _run(x + ["-A", "INPUT", "-j", chain])
                _run(x + ["-A", "OUTPUT", "-j", chain])
        rc, _ = _run(["tc", "-n", self.brns, "qdisc", "add", "dev", "v1", "root", "netem",
                      "delay", "1ms"], check=False, quiet=True)
        if rc == 0:
            _run(["tc", "-n", self.brns, "qdisc", "del", "dev", "v1", "root"], check=False)
            self.link_mode = "netem"
        else:
            self.link_mode = "iptables+nfqueue"  # this kernel has no sch_netem
        self._wait_reachable()

    def _wait_reachable(self):
        """Waits until the root namespace reaches every node address (ARP, bridge learning)."""
        import socket
        deadline = time.monotonic() + 10
        for i in range(1, self.n + 1):
            # a closed port answers with a RST once the address is reachable
            while True:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(0.5)
                try:
                    s.connect((self.addr(i), 9))
                    break
                except ConnectionRefusedError:
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise RuntimeError("node address %s unreachable" % self.addr(i))
                    time.sleep(0.1)
                finally:
                    s.close()

    def down(self):
        """Deletes everything up() created; safe to call twice and after a partial up()."""
        for proc in self.nfq.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.nfq.clear()
        for ns in reversed(self.created):
            if ns != self.brns:
                _kill_in_netns(ns)  # a node the test could not stop
            _run(["ip", "netns", "del", ns], check=False)
        self.created = []
        _run(["ip", "link", "del", self.client_if], check=False, quiet=True)
        for i in range(1, self.n + 1):  # veths left in the root by a failed up()
            for name in ("%sv%d" % (self.prefix, i), "%sp%d" % (self.prefix, i)):
                _run(["ip", "link", "del", name], check=False, quiet=True)

    # faults
    def _ipt(self, i, *args):
        _run(["ip", "netns", "exec", self.ns(i), "iptables"] + list(args))

    def cut(self, i, peers, direction, clients=False):
        """Drops node i's traffic with peers: "out" what i sends them, "in" what i receives from
        them, "both" either way. clients=True cuts the test's client address too."""
        assert direction in ("in", "out", "both")
        addrs = [self.addr(j) for j in peers if j != i]
        if clients:
            addrs.append(self.client_addr)
        for a in addrs:
            if direction in ("out", "both"):
                self._ipt(i, "-A", CHAIN, "-d", a, "-j", "DROP")
            if direction in ("in", "both"):
                self._ipt(i, "-A", CHAIN, "-s", a, "-j", "DROP")

    def separate(self, side_a, side_b):
        """No traffic between any node of side_a and any node of side_b (both directions)."""
        for i in side_a:
            self.cut(i, side_b, "both")
        for j in side_b:
            self.cut(j, side_a, "both")

    def degrade(self, i, delay_ms=0, jitter_ms=0, loss_pct=0.0, dup_pct=0.0, reorder_pct=0.0):
        """Node i's link (both directions) delays, jitters, loses, duplicates and reorders."""
        self.degraded.add(i)
        if self.link_mode == "netem":
            spec = ["delay", "%dms" % max(delay_ms, 1)]
            if jitter_ms:
                spec += ["%dms" % jitter_ms]
            if loss_pct:
                spec += ["loss", "%.2f%%" % loss_pct]
            if dup_pct:
                spec += ["duplicate", "%.2f%%" % dup_pct]
            if reorder_pct:
                spec += ["reorder", "%.2f%%" % reorder_pct]
            _run(["tc", "-n", self.ns(i), "qdisc", "replace", "dev", "eth0", "root", "netem"]
                 + spec)
            _run(["tc", "-n", self.brns, "qdisc", "replace", "dev", "v%d" % i, "root", "netem"]
                 + spec)
            return
        # No sch_netem: iptables in node i's namespace, on its own traffic in both directions.
        if loss_pct:
            self._ipt(i, "-A", LINK_CHAIN, "-m", "statistic", "--mode", "random",
                      "--probability", "%.4f" % (loss_pct / 100.0), "-j", "DROP")
        if dup_pct:
            # TEE sends a copy of an outgoing packet to the next hop, which on a bridge is the
            # destination itself: that node receives the packet twice
            for j in range(1, self.n + 1):
                if j != i:
                    self._ipt(i, "-t", "mangle", "-A", "POSTROUTING", "-d", self.addr(j),
                              "-m", "statistic", "--mode", "random", "--probability",
                              "%.4f" % (dup_pct / 100.0), "-j", "TEE", "--gateway",
                              self.addr(j))
        if delay_ms or jitter_ms or reorder_pct:
            qnum = 7
            proc = subprocess.Popen(
                self.popen_argv(i, [sys.executable, NFQ_HELPER, "--queue", str(qnum),
                                    "--delay-ms", str(delay_ms), "--jitter-ms", str(jitter_ms),
                                    "--reorder-pct", str(reorder_pct),
                                    "--seed", str(i * 1000 + delay_ms)]),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            line = proc.stdout.readline().decode("utf-8", "replace")
            if not line.startswith("nfq_delay: bound"):
                proc.kill()
                proc.wait()
                raise RuntimeError("nfq_delay.py did not start: %s" % line.strip())
            self.nfq[i] = proc
            # --queue-bypass: should the helper die, packets pass instead of being dropped
            self._ipt(i, "-A", LINK_CHAIN, "-i", "eth0", "-j", "NFQUEUE", "--queue-num",
                      str(qnum), "--queue-bypass")
            self._ipt(i, "-A", LINK_CHAIN, "-o", "eth0", "-j", "NFQUEUE", "--queue-num",
                      str(qnum), "--queue-bypass")

    def heal(self):
        """Removes every cut and degradation; the nodes keep running."""
        for i in range(1, self.n + 1):
            self._ipt(i, "-F", CHAIN)
        for i in sorted(self.degraded):
            if self.link_mode == "netem":
                _run(["tc", "-n", self.ns(i), "qdisc", "del", "dev", "eth0", "root"],
                     check=False, quiet=True)
                _run(["tc", "-n", self.brns, "qdisc", "del", "dev", "v%d" % i, "root"],
                     check=False, quiet=True)
            else:
                self._ipt(i, "-F", LINK_CHAIN)
                self._ipt(i, "-t", "mangle", "-F", "POSTROUTING")
                proc = self.nfq.pop(i, None)
                if proc is not None:
                    proc.terminate()  # releases the packets it holds (accepted) and exits
                    try:
                        proc.wait(5)
                    except subprocess.TimeoutExpired:
                        proc.kill()
                        proc.wait()
        self.degraded.clear()
