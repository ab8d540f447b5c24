"""Holds packets queued by iptables' NFQUEUE target for a while before accepting them: delay,
jitter and reordering for kernels without sch_netem (netlab.py uses it in that case).

    nfq_delay.py --queue 7 --delay-ms 40 --jitter-ms 20 --reorder-pct 10 [--seed S]

Each packet is accepted delay +- jitter (uniform) after it arrived; with probability reorder-pct
it is accepted at once instead, overtaking the ones held (as netem's "reorder" does). Prints
"nfq_delay: bound queue N" once the kernel confirmed the binding. On SIGTERM it accepts every
packet it still holds and exits (packets left in a queue whose reader closed are dropped).

It speaks nfnetlink_queue directly over a netlink socket (linux/netfilter/nfnetlink_queue.h),
asking for packet metadata only (NFQNL_COPY_META): the verdict accepts the packet unchanged.
"""

import argparse
import heapq
import random
import select
import signal
import socket
import struct
import sys
import time

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_NO_ENOBUFS = 5
NLM_F_REQUEST, NLM_F_ACK = 1, 4
NLMSG_ERROR = 2
NFNL_SUBSYS_QUEUE = 3
NFQNL_MSG_PACKET, NFQNL_MSG_VERDICT, NFQNL_MSG_CONFIG = 0, 1, 2
NFQA_PACKET_HDR = 1
NFQA_VERDICT_HDR = 2
NFQA_CFG_CMD, NFQA_CFG_PARAMS, NFQA_CFG_QUEUE_MAXLEN = 1, 2, 3
NFQA_CFG_MASK, NFQA_CFG_FLAGS = 4, 5
NFQA_CFG_F_FAIL_OPEN = 1  # a full queue accepts instead of dropping
NFQNL_CFG_CMD_BIND = 1
NFQNL_COPY_META = 1
NF_ACCEPT = 1
HELD_MAX = 4096  # packets held at once; the kernel queue is bounded the same


def attr(kind, payload):
    n = 4 + len(payload)
    return struct.pack("=HH", n, kind) + payload + b"\0" * ((4 - n % 4) % 4)


def message(msg, queue, attrs, flags=NLM_F_REQUEST, seq=0):
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + b"".join(attrs)
    kind = (NFNL_SUBSYS_QUEUE << 8) | msg
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


def parse(buf):
    """Yields (type, payload after the nlmsghdr) for each netlink message in buf."""
    off = 0
    while off + 16 <= len(buf):
        n, kind, _, _, _ = struct.unpack_from("=IHHII", buf, off)
        if n < 16:
            break
        yield kind, buf[off + 16:off + n]
        off += (n + 3) & ~3


def attrs_of(payload):
    """{type: bytes} of the attributes after the nfgenmsg header."""
    out, off = {}, 4
    while off + 4 <= len(payload):
        n, kind = struct.unpack_from("=HH", payload, off)
        if n < 4:
            break
        out[kind & 0x7FFF] = payload[off + 4:off + n]
        off += (n + 3) & ~3
    return out


class Queue:
    def __init__(self, num):
        self.num = num
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.setsockopt(SOL_NETLINK, NETLINK_NO_ENOBUFS, 1)
        self.sock.bind((0, 0))

    def config(self, attrs):
        self.sock.send(message(NFQNL_MSG_CONFIG, self.num, attrs, NLM_F_REQUEST | NLM_F_ACK))
        for kind, payload in parse(self.sock.recv(65536)):
            if kind == NLMSG_ERROR:
                err = struct.unpack_from("=i", payload)[0]
                if err != 0:
                    raise OSError(-err, "nfnetlink_queue config refused")

    def bind(self):
        self.config([attr(NFQA_CFG_CMD, struct.pack("=BxH", NFQNL_CFG_CMD_BIND,
                                                    socket.htons(socket.AF_INET)))])
        self.config([attr(NFQA_CFG_PARAMS, struct.pack("!IB", 0, NFQNL_COPY_META)),
                     attr(NFQA_CFG_QUEUE_MAXLEN, struct.pack("!I", HELD_MAX)),
                     attr(NFQA_CFG_MASK, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN)),
                     attr(NFQA_CFG_FLAGS, struct.pack("!I", NFQA_CFG_F_FAIL_OPEN))])

    def accept(self, packet_id):
        self.sock.send(message(NFQNL_MSG_VERDICT, self.num,
                               [attr(NFQA_VERDICT_HDR, struct.pack("!II", NF_ACCEPT, packet_id))]))

    def packets(self):
        """Packet ids of the queued-packet messages available now."""
        ids = []
        buf = self.sock.recv(1 << 20)
        for kind, payload in parse(buf):
            if kind == (NFNL_SUBSYS_QUEUE << 8) | NFQNL_MSG_PACKET:
                hdr = attrs_of(payload).get(NFQA_PACKET_HDR)
                if hdr is not None and len(hdr) >= 4:
                    ids.append(struct.unpack_from("!I", hdr)[0])
        return ids


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--queue", type=int, required=True)
    ap.add_argument("--delay-ms", type=float, default=0)
    ap.add_argument("--jitter-ms", type=float, default=0)
    ap.add_argument("--reorder-pct", type=float, default=0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    q = Queue(a.queue)
    q.bind()
    print("nfq_delay: bound queue %d" % a.queue, flush=True)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    held = []  # heap of (release time, arrival sequence, packet id)
    seq = 0
    while not stopping:
        now = time.monotonic()
        while held and held[0][0] <= now:
            q.accept(heapq.heappop(held)[2])
        wait = min(held[0][0] - now, 0.2) if held else 0.2
        try:
            ready, _, _ = select.select([q.sock], [], [], max(wait, 0))
        except InterruptedError:
            continue
        if not ready:
            continue
        for pid in q.packets():
            if len(held) >= HELD_MAX or rng.random() * 100 < a.reorder_pct:
                q.accept(pid)
                continue
            d = a.delay_ms + rng.uniform(-a.jitter_ms, a.jitter_ms)
            seq += 1
            heapq.heappush(held, (time.monotonic() + max(d, 0) / 1000.0, seq, pid))
    for _, _, pid in held:
        q.accept(pid)
    sys.exit(0)


if __name__ == "__main__":
    main()
