"""Wire-level mutational fuzzer against a live laminar broker: the request frames real clients
sent (corpus.json, see capture.py) are mutated and sent over many connections while a healthy
client produces and consumes on its own topic. Fails when the broker exits, a healthy request
does not succeed within --healthy-bound seconds, a healthy record is not read back in order, a
response breaks the framing (size, correlation id, pipelined order), the broker's RSS passes
--max-rss-mib, the broker does not stop cleanly (exit 0, no sanitizer report) at the end, or it
does not come back and stay up --restart-check seconds on the fuzzed data directory.

    /usr/bin/python3 fuzz_wire.py --io uring|epoll [--duration 45] [--seed N] [--connections 6]
                                  [--exclude CLASS,...] [--crash-out FILE]
    /usr/bin/python3 fuzz_wire.py --io epoll --replay FILE   # resend a saved case

The seed is printed; a run with the same --seed sends the same frames per connection (the
interleaving between connections is up to the scheduler). On failure the last frames sent (all
connections, in order) go to --crash-out for --replay. Mutation classes (for --exclude, a
development aid only; the default run includes every class): %s
"""

import argparse
import base64
import collections
import json
import os
import random
import socket
import struct
import sys
import threading
import time
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "harness"))
from laminar_harness import Broker  # noqa: E402
import fw_wire as W  # noqa: E402

# Topics the corpus' frames name (capture.py creates them); the fuzzer creates them first.
SEED_TOPICS = ["fw-kcat", "fw-ck", "fw-kp", "fw-java", "fw-ck-doomed", "fw-kp-doomed",
               "fw-java-doomed"]
NAMES = SEED_TOPICS + ["fw-kcat-group", "fw-ck-group", "fw-kp-group", "fw-java-group"]
HEALTHY_TOPIC = "fw-healthy"
# Known broker bugs (being fixed elsewhere) live in their own classes so a development run can
# leave them out with --exclude; make test runs them all.
KNOWN_BUG_CLASSES = ["internal-topic-produce", "huge-partitions", "huge-prefix-trickle"]
CLASSES = ["bitflip", "interesting", "truncate", "extend", "varint", "count", "version",
           "apikey", "splice", "batch", "rename-topic", "internal-topic", "partitions",
           "prefix-lie", "burst", "half-close"] + KNOWN_BUG_CLASSES
SEND_MODES = ["prefix-lie", "burst", "half-close", "huge-prefix-trickle"]
__doc__ = __doc__ % ", ".join(CLASSES)

INTERESTING = {
    1: [0, 1, 0x7F, 0x80, 0xFF, 0x10, 0x40],
    2: [0, 1, 0x7FFF, 0x8000, 0xFFFF, 0x00FF, 0x0100, 0x4000],
    4: [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 0x0000FFFF, 0x00010000, 0x000F4240, 0x40000000],
    8: [0, 1, 0x7FFFFFFFFFFFFFFF, 0x8000000000000000, 0xFFFFFFFFFFFFFFFF, 0x00000000FFFFFFFF],
}
VARINTS = [b"\x00", b"\x01", b"\x02", b"\x7f", b"\x80\x01", b"\xff\x7f", b"\xff\xff\xff\xff\x07",
           b"\xff\xff\xff\xff\x0f", b"\xff\xff\xff\xff\xff", b"\xff" * 9 + b"\x01",
           b"\xff" * 12, b"\x80" * 10 + b"\x00", b"\x80"]
COUNTS32 = [-1, 0, 1, 2, 255, 256, 0xFFFF, 0x10000, 1000000, 0x7FFFFFFF, -0x80000000, -2]
COUNTS16 = [-1, 0, 1, 255, 256, 0x7FFF, -0x8000, -2]
BAD_NAMES = [b"", b".", b"..", b"a" * 249, b"a" * 250, b"b" * 1000, b"bad/name", b"\xff\xfe\x00",
             b"no-such-topic", b"fw-fz-0", b"fw-fz-1", b"fw-fz-2", b"fw-fz-3",
             b"__transaction_state"]
HUGE_PARTITIONS = [100000, 1 << 20, 0x7FFFFFFF, 10000, 5000]
SMALL_PARTITIONS = [-1, 0, -2, 1, 3, 7, -0x80000000]
PREFIX_LIES = ["+1", "+n", "-1", "-n", 0, -1, -0x80000000, 0x7FFFFFFF, 104857600, 104857601]
MAX_KEY_FLEX = 0x7FFF


class Failure(Exception):
    pass


class Run:
    """Shared state of one fuzz run: the stop flag, the first failure, the recent frames."""

    def __init__(self, args, broker, corpus, served):
        self.args = args
        self.b = broker
        self.corpus = corpus
        self.served = served
        self.by_api = collections.defaultdict(list)
        for e in corpus:
            self.by_api[e["api"]].append(e["frame"])
        self.enabled = [c for c in CLASSES if c not in args.exclude]
        self.payload_classes = [c for c in self.enabled if c not in SEND_MODES]
        self.stop = threading.Event()
        self.failure = None
        self.lock = threading.Lock()
        self.trickling = threading.Lock()
        self.recent = collections.deque(maxlen=args.keep_frames)
        self.stats = collections.Counter()
        self.corr = 1000
        self.t0 = time.monotonic()  # when the fuzzing starts (times in the crash file)

    def fail(self, why):
        if not self.b.alive() and self.b.proc is not None and \
                not why.startswith(("broker", "sanitizer")):
            time.sleep(0.1)  # let the exit status settle: a crash is the cause, not the symptom
            why = "broker exited (status %s); seen as: %s" % (self.b.proc.poll(), why)
        with self.lock:
            if self.failure is None:
                self.failure = why
        self.stop.set()

    def next_corr(self):
        with self.lock:
            self.corr += 1
            return self.corr

    def note(self, conn, what, data):
        with self.lock:
            self.recent.append((time.monotonic(), conn, what, data))
            for cls in what.split("+"):
                self.stats[cls] += 1

    def on(self, cls):
        return cls in self.enabled

    def allowed(self, p, applied):
        """False for a payload that an excluded known-bug class would cover though another
        class made it: with huge-partitions out, CreateTopics (19) and CreatePartitions (37) go
        out only unmutated or with small counts (any int32 there may be a partition count); with
        internal-topic-produce out, no Produce names __consumer_offsets."""
        key = struct.unpack_from(">h", p)[0] if len(p) >= 2 else -1
        ex = self.args.exclude
        if "huge-partitions" in ex and key in (19, 37) and \
                not set(applied) <= {"partitions", "rename-topic"}:
            return False
        if "internal-topic-produce" in ex and key == 0 and b"__consumer_offsets" in p:
            return False
        return True


# ---- mutations ---------------------------------------------------------------------------------

def body_offset(rng, p):
    """A random offset in payload p (header + body), mostly past the fixed header fields."""
    if len(p) <= 10 or rng.random() < 0.1:
        return rng.randrange(max(len(p), 1))
    return rng.randrange(8, len(p))


def put_int(p, off, width, value):
    v = value & ((1 << (8 * width)) - 1)
    p[off:off + width] = v.to_bytes(width, "big")


def find_names(p, names):
    """Occurrences of known names in payload p with their length field: (start of the length
    field, end of the name, length-field kind 'i16' or 'uvar')."""
    out = []
    for name in names:
        nb = name.encode() if isinstance(name, str) else name
        pos = p.find(nb)
        while pos >= 0:
            end = pos + len(nb)
            if pos >= 2 and struct.unpack_from(">h", p, pos - 2)[0] == len(nb):
                out.append((pos - 2, end, "i16"))
            elif pos >= 1 and p[pos - 1] == len(nb) + 1:
                out.append((pos - 1, end, "uvar"))
            pos = p.find(nb, end)
    return out


def rename(p, occ, new):
    start, end, kind = occ
    enc = W.s16(len(new)) if kind == "i16" else W.uvar(len(new) + 1)
    return p[:start] + enc + new + p[end:]


def batch_length_field(p, start, old_len):
    """The records field's length before the batch at start: ('i32'|'uvar', field start) when it
    holds exactly the batch, else None."""
    if start >= 4 and struct.unpack_from(">i", p, start - 4)[0] == old_len:
        return ("i32", start - 4)
    enc = W.uvar(old_len + 1)
    if p[start - len(enc):start] == enc:
        return ("uvar", start - len(enc))
    return None


def replace_batch(p, start, end, new):
    """p with the batch p[start:end] replaced by new, its records length field updated."""
    field = batch_length_field(p, start, end - start)
    if field is None:
        return p[:start] + new + p[end:]
    kind, fstart = field
    enc = W.s32(len(new)) if kind == "i32" else W.uvar(len(new) + 1)
    return p[:fstart] + enc + new + p[end:]


def mutate_bytes(rng, b, lo):
    """One small byte-level mutation of bytearray b at offsets >= lo."""
    if len(b) <= lo:
        return
    off = rng.randrange(lo, len(b))
    r = rng.random()
    if r < 0.35:
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(lo, len(b))] ^= 1 << rng.randrange(8)
    elif r < 0.7:
        w = rng.choice([1, 2, 4, 8])
        if off + w <= len(b):
            put_int(b, off, w, rng.choice(INTERESTING[w]))
    else:
        v = rng.choice(VARINTS)
        b[off:off + (len(v) if rng.random() < 0.5 else 1)] = v


def mutate_batch(rng, p):
    """A mutation inside a v2 record batch of a Produce frame: header fields (attributes with
    every codec and the transactional/control bits, counts, offsets deltas, producer fields),
    record bytes, or for gzip the records after decompression (recompressed); the CRC-32C is
    recomputed most of the time so the decoder behind the CRC check is reached."""
    batches = W.find_batches(bytes(p))
    if not batches:
        return None
    start, end = rng.choice(batches)
    batch = bytearray(p[start:end])
    r = rng.random()
    codec = batch[22] & 7
    if r < 0.3:
        field = rng.choice([(21, 2), (23, 4), (57, 4), (43, 8), (51, 2), (53, 4), (12, 4),
                            (8, 4), (0, 8), (27, 8)])
        off, w = field
        if off == 21:
            attrs = rng.choice([0, 1, 2, 3, 4, 5, 6, 7]) | rng.choice([0, 0x10, 0x20, 0x30, 0x8])
            put_int(batch, off, w, attrs)
        else:
            put_int(batch, off, w, rng.choice(INTERESTING[w] + [rng.randrange(1 << (8 * w))]))
    elif r < 0.45 and codec == 1:
        try:
            inner = bytearray(zlib.decompress(bytes(batch[61:]), 31))
        except zlib.error:
            inner = bytearray(batch[61:])
        for _ in range(rng.randint(1, 3)):
            mutate_bytes(rng, inner, 0)
        if rng.random() < 0.2:
            inner = inner[:rng.randrange(len(inner) + 1)]
        co = zlib.compressobj(6, zlib.DEFLATED, 31)
        batch = batch[:61] + co.compress(bytes(inner)) + co.flush()
        put_int(batch, 8, 4, len(batch) - 12)
    else:
        for _ in range(rng.randint(1, 3)):
            mutate_bytes(rng, batch, 61 if rng.random() < 0.7 else 21)
        if rng.random() < 0.15:
            batch = batch[:rng.randrange(21, len(batch) + 1)]
            if rng.random() < 0.5:
                put_int(batch, 8, 4, len(batch) - 12)
    if rng.random() < 0.75 and len(batch) >= 21:
        batch = bytearray(W.fix_crc(bytes(batch), 0, len(batch)))
    return bytearray(replace_batch(bytes(p), start, end, bytes(batch)))


def group_record(rng):
    """A record shaped like the group coordinator's own (__consumer_offsets, Kafka's
    GroupCoordinatorRecordSerde): an offset-commit key (v0/v1) or a group-metadata key (v2), and
    a value that is plausible, null (tombstone), random, or plausible with a byte mutated."""
    # the loader keeps a record only in the partition its group hashes to (Java String.hashCode,
    # 50 partitions): these three land in partitions 0, 1 and 2, where captured Produce frames go
    group = rng.choice([b"fw-poison-5", b"fw-poison-6", b"fw-poison-7", b"fw-poison-5",
                        b"fw-poison-6", b"fw-ck-group", b"", b"g" * 300])
    kver = rng.choice([0, 1, 2, 2, 3, -1])
    key = W.s16(kver) + W.sstr(group)
    if kver in (0, 1):
        key += W.sstr(rng.choice([b"fw-ck", b"fw-healthy", b"no-such"])) + \
            W.s32(rng.choice([0, 1, -1, 1000]))
        vver = rng.choice([0, 1, 2, 3, 4, 5, -1])
        val = W.s16(vver) + W.s64(rng.choice([0, 5, -1, 1 << 62]))
        if vver >= 3:
            val += W.s32(rng.choice([-1, 0, 7]))
        val += W.sstr(b"meta") + W.s64(int(time.time() * 1000))
        if vver == 1:
            val += W.s64(rng.choice([0, -1, 1 << 62]))
    else:
        vver = rng.choice([0, 1, 2, 3, 4, 5])
        members = b""
        n_members = rng.choice([1, 1, 2, 2, 3])
        for i in range(n_members):
            member = W.sstr(b"m-%d" % i)
            if vver >= 3:
                member += W.s16(-1)
            member += W.sstr(b"client") + W.sstr(b"/127.0.0.1")
            if vver >= 1:
                member += W.s32(rng.choice([0, 3000, 30000, -1, 0x7FFFFFFF]))
            member += W.s32(rng.choice([0, 6000, 10000, -1]))
            # subscription and assignment bytes: empty, a ConsumerProtocol v0 one, or junk
            for _ in range(2):
                blob = rng.choice([b"", W.s16(0) + W.arr([W.sstr(b"fw-ck")]) + W.s32(-1),
                                   b"\xff" * 3])
                member += W.s32(rng.choice([len(blob)] * 4 + [-1, 1 << 30])) + blob
            members += member
        val = (W.s16(vver) + W.sstr(b"consumer") + W.s32(rng.choice([0, 1, -1, 0x7FFFFFFF])) +
               W.sstr(rng.choice([b"range", b"", b"roundrobin"])) + W.sstr(b"m-0"))
        if vver >= 2:
            val += W.s64(rng.choice([0, -1, int(time.time() * 1000)]))
        val += W.s32(rng.choice([n_members] * 4 + [0, -1, 1000000])) + members
    r = rng.random()
    if r < 0.15:
        val = None
    elif r < 0.3:
        val = bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 48)))
    elif r < 0.6:
        b = bytearray(val)
        mutate_bytes(rng, b, 0)
        val = bytes(b)
    return key, val


def mutate(rng, run, fr):
    """One mutated payload (header + body, no length prefix) from corpus frame fr, and the list
    of classes applied. May return None when no enabled class applies."""
    p = bytearray(fr[4:])
    api = struct.unpack_from(">h", p, 0)[0]
    applied = []
    want = rng.choice([1, 1, 1, 2, 3])
    for _ in range(20):
        if len(applied) >= want:
            break
        cls = rng.choice(run.payload_classes)
        q = apply_class(rng, run, cls, p, api)
        if q is not None:
            p = q
            applied.append(cls)
    return p, applied


def apply_class(rng, run, cls, p, api):
    if cls == "bitflip":
        for _ in range(rng.randint(1, 8)):
            if p:
                p[body_offset(rng, p)] ^= 1 << rng.randrange(8)
        return p
    if cls == "interesting":
        w = rng.choice([1, 2, 4, 8])
        off = body_offset(rng, p)
        if off + w <= len(p):
            put_int(p, off, w, rng.choice(INTERESTING[w]))
        return p
    if cls == "truncate":
        return p[:rng.randrange(len(p) + 1)] if rng.random() < 0.3 else \
            p[:rng.randrange(min(8, len(p)), len(p) + 1)]
    if cls == "extend":
        extra = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 64)))
        if rng.random() < 0.5:
            return p + extra
        off = body_offset(rng, p)
        return p[:off] + extra + p[off:]
    if cls == "varint":
        v = rng.choice(VARINTS)
        # compact lengths and counts are small single bytes: prefer those positions
        cands = [i for i in range(10, len(p)) if 1 <= p[i] <= 40]
        off = rng.choice(cands) if cands and rng.random() < 0.7 else body_offset(rng, p)
        if rng.random() < 0.5:
            return p[:off] + v + p[off + 1:]
        return p[:off] + v + p[off:]
    if cls == "count":
        if rng.random() < 0.6:
            cands = [i for i in range(8, len(p) - 3)
                     if 0 <= struct.unpack_from(">i", p, i)[0] <= 64]
            if cands:
                put_int(p, rng.choice(cands), 4, rng.choice(COUNTS32))
        else:
            cands = [i for i in range(8, len(p) - 1)
                     if 0 <= struct.unpack_from(">h", p, i)[0] <= 255]
            if cands:
                put_int(p, rng.choice(cands), 2, rng.choice(COUNTS16))
        return p
    if cls == "version":
        lo, hi = run.served.get(api, (0, 12))
        put_int(p, 2, 2, rng.choice(list(range(-1, hi + 3)) + [0x7FFF, -0x8000, lo - 1]))
        return p
    if cls == "apikey":
        if rng.random() < 0.7:
            put_int(p, 0, 2, rng.choice(sorted(run.served)))
        else:
            put_int(p, 0, 2, rng.choice([4, 5, 6, 7, 17, 24, 25, 26, 27, 28, 29, 36, 50, 57, 68,
                                         77, 1000, -1, 0x7FFF, -0x8000]))
        return p
    if cls == "splice":
        same = run.by_api.get(api) or []
        other = rng.choice(same) if same and rng.random() < 0.6 else \
            rng.choice(run.corpus)["frame"]
        ob = other[4:]
        i = rng.randrange(min(10, len(p)), len(p) + 1)
        j = rng.randrange(min(10, len(ob)), len(ob) + 1)
        return p[:i] + ob[j:]
    if cls == "batch":
        return mutate_batch(rng, p)
    if cls in ("rename-topic", "internal-topic", "internal-topic-produce", "partitions",
               "huge-partitions"):
        occ = find_names(bytes(p), NAMES)
        if not occ:
            return None
        o = rng.choice(occ)
        if cls == "rename-topic":
            return bytearray(rename(bytes(p), o, rng.choice(BAD_NAMES + [n.encode() for n in
                                                                          SEED_TOPICS])))
        if cls in ("internal-topic", "internal-topic-produce"):
            if (api == 0) != (cls == "internal-topic-produce"):
                return None
            q = rename(bytes(p), o, b"__consumer_offsets")
            batches = W.find_batches(q)
            if api == 0 and batches and rng.random() < 0.8:
                # records the group loader will parse at the next start
                recs = [group_record(rng) for _ in range(rng.randint(1, 4))]
                start, end = batches[0]
                q = replace_batch(q, start, end, W.kv_batch(recs, int(time.time() * 1000)))
            return bytearray(q)
        # CreateTopics (19) and CreatePartitions (37): an int32 count follows the name; a fresh
        # name from a small pool so the create is not refused as existing
        if api not in (19, 37):
            return None
        lenfield = 2 if o[2] == "i16" else 1
        name = b"fw-fz-%d" % rng.randrange(4) if api == 19 else bytes(p[o[0] + lenfield:o[1]])
        q = bytearray(rename(bytes(p), o, name))
        at = o[0] + lenfield + len(name)
        if at + 4 > len(q):
            return None
        put_int(q, at, 4, rng.choice(HUGE_PARTITIONS if cls == "huge-partitions"
                                     else SMALL_PARTITIONS))
        return q
    raise AssertionError(cls)


# ---- the fuzzing connections -------------------------------------------------------------------

class Worker(threading.Thread):
    def __init__(self, run, idx, sweep):
        super().__init__(daemon=True)
        self.run_ = run
        self.idx = idx
        self.rng = random.Random("%d:%d" % (run.args.seed, idx))
        self.sweep = sweep
        self.sock = None

    def conn(self):
        if self.sock is None:
            try:
                self.sock = W.connect(self.run_.b.host, self.run_.b.port, 5)
            except OSError as e:
                if not self.run_.stop.is_set() and self.run_.b.alive():
                    self.run_.stats["connect-error"] += 1
                time.sleep(0.05)
                raise e
            self.sock.settimeout(self.run_.args.read_timeout)
        return self.sock

    def drop(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def run(self):
        r = self.run_
        try:
            for fr in self.sweep:
                if r.stop.is_set():
                    return
                self.send_one(fr, "sweep")
            while not r.stop.is_set():
                self.step()
        except Failure as e:
            r.fail(str(e))
        except Exception as e:  # noqa: BLE001 - a bug in the fuzzer itself fails the run
            import traceback
            traceback.print_exc()
            r.fail("fuzzer worker %d: %r" % (self.idx, e))
        finally:
            self.drop()

    def pick(self):
        return self.rng.choice(self.run_.corpus)["frame"]

    def payload(self):
        r = self.run_
        while True:
            fr = self.pick()
            p, applied = mutate(self.rng, r, fr)
            if r.allowed(p, applied):
                break
        if len(p) >= 8:
            put_int(p, 4, 4, r.next_corr())
        return bytes(p), applied

    def step(self):
        r, rng = self.run_, self.rng
        mode = rng.random()
        if mode < 0.1 and r.on("burst"):
            self.burst()
        elif mode < 0.18 and r.on("half-close"):
            self.half_close()
        elif mode < 0.23 and r.on("prefix-lie"):
            self.prefix_lie()
        elif mode < 0.235 and r.on("huge-prefix-trickle") and r.trickling.acquire(False):
            try:  # one at a time: each holds its connection for seconds
                self.trickle()
            finally:
                r.trickling.release()
        else:
            p, applied = self.payload()
            self.send_one(W.with_len(p), "+".join(applied) or "none")

    def send_one(self, fr, what):
        """Sends one frame with an honest length prefix and reads one response (or a close)."""
        r = self.run_
        try:
            s = self.conn()
            r.note(self.idx, what, fr)
            s.sendall(fr)
            corr, _ = W.read_response(s)
        except (socket.timeout, EOFError, OSError):
            self.drop()
            r.stats["closed-or-silent"] += 1
            return
        except ValueError as e:
            raise Failure("bad response framing to %s frame: %s" % (what, e))
        r.stats["answered"] += 1
        if len(fr) >= 12:
            want = struct.unpack_from(">i", fr, 8)[0]
            if corr != want:
                raise Failure("response correlation id %d to a request with %d (%s)"
                              % (corr, want, what))

    def burst(self):
        """Several frames in one write (pipelined), then their responses in order."""
        r = self.run_
        frames = []
        for _ in range(self.rng.randint(2, 16)):
            p, _ = self.payload() if self.rng.random() < 0.7 else (self.pick()[4:], [])
            p = bytearray(p)
            if len(p) >= 8:
                put_int(p, 4, 4, r.next_corr())
            frames.append(W.with_len(bytes(p)))
        try:
            s = self.conn()
            data = b"".join(frames)
            r.note(self.idx, "burst", data)
            s.sendall(data)
            # responses come in request order; only a Produce (acks=0) may go unanswered
            pending = [(struct.unpack_from(">hhi", fr, 4) if len(fr) >= 12 else (-1, 0, None))
                       for fr in frames]
            while pending:
                corr, _ = W.read_response(s)
                r.stats["answered"] += 1
                while pending and pending[0][2] != corr:
                    key, ver, want = pending.pop(0)
                    if key != 0 and want is not None:
                        raise Failure("pipelined burst: response %d while %d (api %d v%d) is "
                                      "unanswered" % (corr, want, key, ver))
                if not pending:
                    raise Failure("pipelined burst: response with unknown correlation id %d"
                                  % corr)
                pending.pop(0)
        except (socket.timeout, EOFError, OSError):
            pass
        except ValueError as e:
            raise Failure("bad response framing in a burst: %s" % e)
        self.drop()

    def half_close(self):
        """A frame (sometimes cut short), then shutdown(SHUT_WR): the broker answers or closes;
        either way the connection must end."""
        r = self.run_
        p, _ = self.payload()
        fr = W.with_len(p)
        if self.rng.random() < 0.4:
            fr = fr[:self.rng.randrange(len(fr) + 1)]
        try:
            s = self.conn()
            r.note(self.idx, "half-close", fr)
            s.sendall(fr)
            s.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + r.args.read_timeout * 3
            while time.monotonic() < deadline and s.recv(65536):
                pass
        except (socket.timeout, OSError):
            pass
        self.drop()

    def prefix_lie(self):
        """An intact payload behind a length prefix that lies (larger, smaller, negative,
        huge); whatever the broker does, it must not die or stall others."""
        r = self.run_
        p, _ = self.payload() if self.rng.random() < 0.5 else (self.pick()[4:], [])
        lie = self.rng.choice(PREFIX_LIES)
        n = len(p)
        if lie == "+1":
            n += 1
        elif lie == "+n":
            n += self.rng.randint(2, 4096)
        elif lie == "-1":
            n -= 1
        elif lie == "-n":
            n = self.rng.randrange(max(n, 1))
        else:
            n = lie
        fr = struct.pack(">I", n & 0xFFFFFFFF) + p
        try:
            s = self.conn()
            r.note(self.idx, "prefix-lie", fr)
            s.sendall(fr)
            while True:
                W.read_response(s)
        except (socket.timeout, EOFError, OSError, ValueError):
            pass
        self.drop()

    def trickle(self):
        """A 100 MiB length prefix, then the rest one byte at a time (slowloris)."""
        r = self.run_
        p, _ = self.payload()
        fr = W.s32(self.rng.choice([104857600, 104857600 - 1, 50 << 20])) + p
        try:
            s = self.conn()
            r.note(self.idx, "huge-prefix-trickle", fr)
            s.sendall(fr[:4])
            # longer than the healthy client's bound, so a shard that stops serving the others
            # while it waits for this frame is caught
            t_end = time.monotonic() + self.rng.uniform(2, 1.5 * r.args.healthy_bound)
            i = 4
            while time.monotonic() < t_end and not r.stop.is_set():
                n = self.rng.choice([1, 1, 100, 4096])
                s.sendall(fr[i:i + n] or b"\x00" * n)
                i += n
                time.sleep(0.05)
        except OSError:
            pass
        self.drop()


# ---- the healthy client ------------------------------------------------------------------------

# Kafka's retriable partition errors a client retries: NOT_LEADER_OR_FOLLOWER,
# LEADER_NOT_AVAILABLE, REQUEST_TIMED_OUT, KAFKA_STORAGE_ERROR.
RETRIABLE = {6, 5, 7, 56}


class Healthy(threading.Thread):
    """Produces (acks=all) and fetches on its own topic over its own connection; every request
    must succeed within the bound; the offsets it gets back must follow each other; every record
    fetched must be the one it produced at that offset."""

    def __init__(self, run, halt):
        super().__init__(daemon=True)
        self.run_ = run
        self.halt = halt
        self.sent = {}  # offset -> value
        self.next_offset = 0
        self.verified = 0
        self.requests = 0
        self.slowest = 0.0
        self.sock = None
        self.corr = 0
        self.t0 = run.t0
        self.slow = []  # (start s, request, seconds) of requests over 1 s

    def successor(self, halt):
        """A new thread that goes on with this one's records (after a broker restart), reading
        back from offset 0 on a new connection."""
        h = Healthy(self.run_, halt)
        h.sent, h.next_offset, h.requests = self.sent, self.next_offset, self.requests
        h.slowest, h.slow = self.slowest, self.slow
        return h

    def call(self, key, version, body, what):
        bound = self.run_.args.healthy_bound
        if self.sock is None:
            self.sock = W.connect(self.run_.b.host, self.run_.b.port, bound)
        self.corr += 1
        t = time.monotonic()
        try:
            self.sock.sendall(W.frame(key, version, self.corr, body, client_id=b"healthy"))
            corr, body = W.read_response(self.sock)
        except (OSError, EOFError, ValueError) as e:
            raise Failure("healthy %s failed after %.1f s: %r" % (what, time.monotonic() - t, e))
        dt = time.monotonic() - t
        self.slowest = max(self.slowest, dt)
        if dt > 1.0:
            self.slow.append((round(t - self.t0, 2), what, round(dt, 2)))
        self.requests += 1
        if corr != self.corr:
            raise Failure("healthy %s: correlation id %d, want %d" % (what, corr, self.corr))
        return body

    def produce(self):
        n = 1 + self.requests % 4
        vals = [b"healthy-%08d" % (self.next_offset + i) for i in range(n)]
        batch = W.record_batch(vals, int(time.time() * 1000))
        body = (W.s16(-1) + W.s16(-1) + W.s32(10000) +
                W.arr([W.sstr(HEALTHY_TOPIC) + W.arr([W.s32(0) + W.s32(len(batch)) + batch])]))
        first_error = None
        while True:
            r = self.call(0, 8, body, "produce")
            # topics[1]{name, partitions[1]{index, error, base_offset, ...}}
            nlen = struct.unpack_from(">h", r, 4)[0]
            q = 6 + nlen + 4
            _, err, base = struct.unpack_from(">ihq", r, q)
            if not self.retry(err, first_error):
                break
            first_error = first_error or time.monotonic()
        if err != 0 or base != self.next_offset:
            raise Failure("healthy produce: error %d base offset %d, want 0 and %d"
                          % (err, base, self.next_offset))
        for i, v in enumerate(vals):
            self.sent[base + i] = v
        self.next_offset += n

    def retry(self, err, first_error):
        """A retriable error (the partition offline or still opening, as after a restart
        with many partitions) is retried as a client would, within the healthy bound."""
        if err not in RETRIABLE:
            return False
        if first_error is not None and (time.monotonic() - first_error >
                                        self.run_.args.healthy_bound):
            return False
        time.sleep(0.05)
        return True

    def fetch(self):
        first_error = None
        while True:
            hw = self.fetch_once()
            if hw is not None:
                return hw
            if not self.retry(self.last_error, first_error):
                raise Failure("healthy fetch at %d: error %d/%d" % (self.verified,
                                                                     self.last_top,
                                                                     self.last_error))
            first_error = first_error or time.monotonic()

    def fetch_once(self):
        body = (W.s32(-1) + W.s32(100) + W.s32(1) + W.s32(1 << 20) + b"\x00" + W.s32(0) +
                W.s32(-1) + W.arr([W.sstr(HEALTHY_TOPIC) + W.arr([
                    W.s32(0) + W.s32(-1) + W.s64(self.verified) + W.s64(-1) + W.s32(1 << 20)])]) +
                W.arr([]) + W.sstr(""))
        r = self.call(1, 11, body, "fetch")
        # throttle, error, session, responses[1]{name, partitions[1]{index, error, hw, lso,
        # log_start, aborted[], preferred_read_replica, records}}
        _, top, _ = struct.unpack_from(">ihi", r, 0)
        nlen = struct.unpack_from(">h", r, 14)[0]
        q = 16 + nlen + 4
        _, err, hw = struct.unpack_from(">ihq", r, q)
        q += 4 + 2 + 8 + 8 + 8
        na = struct.unpack_from(">i", r, q)[0]
        q += 4 + max(na, 0) * 16 + 4
        rl = struct.unpack_from(">i", r, q)[0]
        recs = r[q + 4:q + 4 + max(rl, 0)]
        if top != 0 or err != 0:
            self.last_top, self.last_error = top, err
            return None
        for off, val in W.parse_batches(recs):
            if off < self.verified:
                continue
            if off != self.verified or self.sent.get(off) != val:
                raise Failure("healthy fetch: offset %d value %r, want offset %d value %r"
                              % (off, val, self.verified, self.sent.get(self.verified)))
            self.verified += 1
        return hw

    def run(self):
        r = self.run_
        try:
            while not self.halt.is_set():
                self.produce()
                if self.requests % 3 == 0:
                    self.fetch()
                if self.requests % 20 == 0:
                    self.call(3, 1, W.s32(-1), "metadata")
                time.sleep(0.01)
        except Failure as e:
            r.fail(str(e))
        except Exception as e:  # noqa: BLE001
            import traceback
            traceback.print_exc()
            r.fail("healthy client: %r" % e)

    def read_all(self):
        """After the fuzzing: every record produced, read back in order."""
        deadline = time.monotonic() + 30
        while self.verified < self.next_offset:
            if time.monotonic() > deadline:
                raise Failure("healthy read-back stuck at %d of %d" % (self.verified,
                                                                        self.next_offset))
            self.fetch()


# ---- setup, RSS, report, replay ----------------------------------------------------------------

def create_topics(b, names, partitions=1):
    """CreateTopics v4; every topic must be created or exist already (error 36)."""
    topics = [W.sstr(n) + W.s32(partitions) + W.s16(1) + W.arr([]) + W.arr([]) for n in names]
    with W.connect(b.host, b.port, 30) as s:
        s.sendall(W.frame(19, 4, 7, W.arr(topics) + W.s32(20000) + b"\x00"))
        _, r = W.read_response(s)
    q = 4
    n = struct.unpack_from(">i", r, q)[0]
    q += 4
    for _ in range(n):
        nl = struct.unpack_from(">h", r, q)[0]
        name = r[q + 2:q + 2 + nl]
        q += 2 + nl
        err, ml = struct.unpack_from(">hh", r, q)
        q += 4 + max(ml, 0)
        if err not in (0, 36):
            raise RuntimeError("creating %s: error %d" % (name, err))


def replay_corpus(run):
    """Every corpus frame once, unmutated, on one connection: the frames still work against
    this broker (most answer); returns (answered, total)."""
    answered = 0
    s = None
    for e in run.corpus:
        try:
            if s is None:
                s = W.connect(run.b.host, run.b.port, 5)
            p = bytearray(e["frame"][4:])
            put_int(p, 4, 4, run.next_corr())
            s.sendall(W.with_len(bytes(p)))
            W.read_response(s)
            answered += 1
        except (OSError, EOFError, ValueError):
            if s is not None:
                s.close()
            s = None
    if s is not None:
        s.close()
    return answered, len(run.corpus)


def rss_status(pid):
    out = {}
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    out[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return out


def version_sweep(run):
    """One corpus frame per (API key, client) with its header's api_version set to every
    version from -1 to two past the highest served, plus the int16 extremes."""
    firsts = {}
    for e in run.corpus:
        firsts.setdefault((e["api"], e["client"]), e["frame"])
    out = []
    for (api, _), fr in sorted(firsts.items()):
        hi = run.served.get(api, (0, 12))[1]
        for v in list(range(-1, hi + 3)) + [0x7FFF, -0x8000]:
            p = bytearray(fr[4:])
            put_int(p, 2, 2, v)
            put_int(p, 4, 4, 900000 + len(out))
            if run.allowed(p, ["version"]):
                out.append(W.with_len(bytes(p)))
    return out


def watch(run, b, seconds, rss):
    """Watches the broker for seconds (or until the run fails): alive, RSS under the bound;
    rss["max"] and rss["samples"] (KiB, count) are updated."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and run.failure is None:
        time.sleep(0.2)
        if not b.alive():
            run.fail("broker exited (status %s)" % b.proc.poll())
            break
        st = rss_status(b.pid)
        if "VmRSS" in st:
            rss["samples"] += 1
            rss["max"] = max(rss["max"], st["VmRSS"])
            if st["VmRSS"] > run.args.max_rss_mib * 1024:
                run.fail("broker RSS %d MiB over --max-rss-mib %d"
                         % (st["VmRSS"] // 1024, run.args.max_rss_mib))
    return rss


def stop_checked(run, b):
    """SIGTERM: exit status 0 and no sanitizer report (LeakSanitizer runs at exit)."""
    alive = b.alive()
    rc = b.stop()
    log = b.log_text()
    if not alive:
        run.fail("broker exited")
    elif rc != 0:
        run.fail("broker exit status %s on SIGTERM" % rc)
    elif "ERROR: AddressSanitizer" in log or "runtime error" in log or \
            "ERROR: LeakSanitizer" in log:
        run.fail("sanitizer report in the broker log")


def restart_check(run, b, healthy):
    """Restarts the broker on its data directory: it must come back and stay up for
    --restart-check seconds with whatever the fuzzing stored (internal topics, groups, configs)
    while the healthy client reads every record back and goes on producing."""
    t = time.monotonic()
    try:
        b.start()
    except RuntimeError as e:
        run.fail("broker did not restart after the fuzzing: %s" % str(e)[:300])
        return healthy
    halt = threading.Event()
    h = healthy.successor(halt)
    try:
        h.read_all()
    except Failure as e:
        run.fail("after restart: %s" % e)
        return h
    h.start()
    watch(run, b, run.args.restart_check, {"max": 0, "samples": 0})
    halt.set()
    h.join(run.args.healthy_bound + 5)
    if run.failure is None:
        try:
            h.read_all()
        except Failure as e:
            run.fail("after restart: %s" % e)
    if run.failure is None:
        stop_checked(run, b)
    print("restart: broker up %.0f s on the fuzzed data; healthy records read back %d of %d"
          % (time.monotonic() - t, h.verified, h.next_offset))
    return h


def save_crash(run, path, why):
    frames = [{"t": round(t - run.t0, 4), "conn": c, "what": w,
               "frame": base64.b64encode(d).decode()}
              for t, c, w, d in run.recent]
    doc = {"seed": run.args.seed, "io": run.args.io, "failure": why,
           "exclude": sorted(run.args.exclude), "frames": frames,
           "broker_log_tail": run.b.log_text()[-20000:]}
    with open(path, "w") as f:
        json.dump(doc, f, indent=1)
    print("saved the last %d frames to %s (replay: fuzz_wire.py --io %s --replay %s)"
          % (len(frames), path, run.args.io, path))


def replay(args):
    with open(args.replay) as f:
        doc = json.load(f)
    config = {"num.partitions": "1"}
    config.update(doc.get("broker_config", {}))
    b = Broker(io=args.io, shards=args.shards, config=config)
    try:
        b.start()
        create_topics(b, SEED_TOPICS + [HEALTHY_TOPIC])
        socks = {}
        for e in doc["frames"]:
            c = e.get("conn", 0)
            try:
                if c not in socks:
                    socks[c] = W.connect(b.host, b.port, 5)
                socks[c].sendall(base64.b64decode(e["frame"]))
                if e.get("what") == "half-close":
                    socks.pop(c).shutdown(socket.SHUT_WR)
                elif e.get("await_response"):  # hand-made cases: the next frame needs this done
                    socks[c].settimeout(300)
                    W.read_response(socks[c])
            except (OSError, EOFError, ValueError):
                socks.pop(c, None)
            time.sleep(args.replay_gap)
            if not b.alive():
                break
        probe = "sigterm_after" not in doc  # a case about shutdown: no probe before SIGTERM
        time.sleep(doc.get("sigterm_after", 3))
        alive = b.alive()
        if alive and args.restart_check > 0:
            # what the frames stored must not keep the broker from coming back (group loader)
            rc = b.stop()
            print("stopped (exit %s); restarting on the same data for %.0f s"
                  % (rc, args.restart_check))
            try:
                b.start()
                deadline = time.monotonic() + args.restart_check
                while b.alive() and time.monotonic() < deadline:
                    time.sleep(0.2)
            except RuntimeError as e:
                print("restart failed: %s" % str(e)[:2000])
            alive = b.alive() and rc == 0
        ok = alive
        if alive and probe:
            try:
                W.api_versions(b.host, b.port, timeout=args.healthy_bound)
            except (OSError, EOFError, ValueError) as e:
                print("FAIL: broker alive but ApiVersions failed: %r" % e)
                ok = False
        for s in socks.values():
            s.close()
        print("replayed %d frames: broker %s" % (len(doc["frames"]),
                                                  "alive" if alive else "DIED"))
        rc = b.stop()
        log = b.log_text()
        if rc != 0 or "ERROR: AddressSanitizer" in log or "runtime error" in log:
            ok = False
            print("broker exit %s; log tail:\n%s" % (rc, log[-6000:]))
        print("PASS replay" if ok else "FAIL replay")
        return 0 if ok else 1
    finally:
        b.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--io", default="uring")
    ap.add_argument("--duration", type=float, default=45.0, help="fuzzing time, seconds")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--connections", type=int, default=6)
    ap.add_argument("--shards", type=int, default=2)
    ap.add_argument("--exclude", default="", help="comma-separated mutation classes to leave out")
    ap.add_argument("--corpus", default=os.path.join(HERE, W.HERE_CORPUS))
    ap.add_argument("--read-timeout", type=float, default=0.5)
    ap.add_argument("--healthy-bound", type=float, default=10.0)
    ap.add_argument("--max-rss-mib", type=int, default=3072)
    ap.add_argument("--keep-frames", type=int, default=5000)
    ap.add_argument("--crash-out", default=None)
    ap.add_argument("--restart-check", type=float, default=15.0,
                    help="seconds the broker must stay up after a restart on the fuzzed data")
    ap.add_argument("--keep-log", default=None, help="copy the broker log to this file")
    ap.add_argument("--replay", default=None)
    ap.add_argument("--replay-gap", type=float, default=0.002)
    args = ap.parse_args()
    args.exclude = set(x for x in args.exclude.split(",") if x)
    unknown = args.exclude - set(CLASSES)
    if unknown:
        ap.error("unknown classes %s (known: %s)" % (sorted(unknown), ", ".join(CLASSES)))
    if args.replay:
        return replay(args)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    crash_out = args.crash_out or os.path.abspath("fuzzwire-crash-%s-%d.json" % (args.io,
                                                                                  args.seed))
    print("fuzz_wire: io=%s seed=%d duration=%.0fs connections=%d exclude=%s"
          % (args.io, args.seed, args.duration, args.connections,
             ",".join(sorted(args.exclude)) or "-"), flush=True)
    doc, corpus = W.load_corpus(args.corpus)
    b = Broker(io=args.io, shards=args.shards, config={"num.partitions": "1"})
    t_start = time.monotonic()
    run = None
    try:
        b.start()
        served = W.api_versions(b.host, b.port)
        missing = sorted(set(served) - set(e["api"] for e in corpus))
        if missing:
            print("FAIL: the corpus has no frame of served API keys %s: run capture.py" % missing)
            return 1
        run = Run(args, b, corpus, served)
        create_topics(b, SEED_TOPICS + [HEALTHY_TOPIC])
        answered, total = replay_corpus(run)
        print("corpus: %d frames over %d API keys; unmutated replay: %d answered"
              % (total, len(run.by_api), answered), flush=True)
        base = rss_status(b.pid)
        sweep = version_sweep(run)
        run.t0 = time.monotonic()
        healthy = Healthy(run, run.stop)
        workers = [Worker(run, i, sweep[i::args.connections]) for i in range(args.connections)]
        healthy.start()
        for w in workers:
            w.start()
        rss = watch(run, b, args.duration, {"max": 0, "samples": 0})
        run.stop.set()
        for w in workers:
            w.join(15)
        healthy.join(args.healthy_bound + 5)
        if run.failure is None:
            try:
                healthy.read_all()
            except Failure as e:
                run.fail(str(e))
        st = rss_status(b.pid) if b.alive() else {}
        print("sent: %s" % ", ".join("%s=%d" % kv for kv in sorted(run.stats.items())))
        print("healthy client: %d requests, %d records produced and read back %d, slowest "
              "request %.2f s" % (healthy.requests, healthy.next_offset, healthy.verified,
                                  healthy.slowest))
        print("broker RSS: start %d MiB, max sampled %d MiB (%d samples), VmHWM %d MiB, end %d "
              "MiB" % (base.get("VmRSS", 0) // 1024, rss["max"] // 1024, rss["samples"],
                       st.get("VmHWM", 0) // 1024, st.get("VmRSS", 0) // 1024), flush=True)
        if run.failure is None:
            stop_checked(run, b)
        if run.failure is None and args.restart_check > 0:
            healthy = restart_check(run, b, healthy)
        if healthy.slow:
            print("healthy requests over 1 s (start s, request, s): %s" % healthy.slow[:20])
        if args.keep_log:
            with open(args.keep_log, "w") as f:
                f.write(b.log_text())
        if run.failure is not None:
            print("FAIL fuzz_wire (io=%s seed=%d, %.0f s): %s"
                  % (args.io, args.seed, time.monotonic() - t_start, run.failure))
            save_crash(run, crash_out, run.failure)
            print("---- broker log (tail) ----\n%s" % b.log_text()[-8000:])
            return 1
        print("PASS fuzz_wire (io=%s seed=%d, %.0f s)" % (args.io, args.seed,
                                                          time.monotonic() - t_start))
        return 0
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
