"""A tiny hand-built Kafka client for tests that need exact bytes: InitProducerId v1 and
Produce v9 (flexible, KIP-482) with idempotent record batches v2 (CRC-32C computed here).
Stdlib only."""
import socket
import struct
import time


def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


_T = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = _T[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def zigzag(n):
    return (n << 1) ^ (n >> 63)


def uvarint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def varint(n):
    return uvarint(zigzag(n) & 0xFFFFFFFFFFFFFFFF)


def record(offset_delta, value, key=None):
    body = bytearray()
    body += b"\x00"                      # attributes
    body += varint(0)                    # timestamp delta
    body += varint(offset_delta)
    if key is None:
        body += varint(-1)
    else:
        body += varint(len(key)) + key
    body += varint(len(value)) + value
    body += varint(0)                    # headers
    return varint(len(body)) + bytes(body)


def idempotent_batch(producer_id, epoch, base_seq, values, ts_ms=1_700_000_000_000):
    """Record batch v2 (magic 2) of values, uncompressed, with producer id/epoch/sequence."""
    recs = b"".join(record(i, v) for i, v in enumerate(values))
    after_crc = struct.pack(">hiqqqhii", 0, len(values) - 1, ts_ms, ts_ms, producer_id, epoch,
                            base_seq, len(values)) + recs
    crc = crc32c(after_crc)
    body = struct.pack(">ibI", -1, 2, crc) + after_crc   # leader epoch, magic, crc
    return struct.pack(">qi", 0, len(body)) + body


def txn_batch(producer_id, epoch, base_seq, values, ts_ms=None):
    """A transactional record batch v2 (attributes 0x10) of values."""
    recs = b"".join(record(i, v) for i, v in enumerate(values))
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    after_crc = struct.pack(">hiqqqhii", 0x10, len(values) - 1, ts, ts, producer_id, epoch,
                            base_seq, len(values)) + recs
    body = struct.pack(">ibI", -1, 2, crc32c(after_crc)) + after_crc
    return struct.pack(">qi", 0, len(body)) + body


def s16str(s):
    """A classic (i16 length) string."""
    b = s.encode()
    return struct.pack(">h", len(b)) + b


def cstr(s):
    """A compact (flexible) string."""
    b = s.encode()
    return uvarint(len(b) + 1) + b


def read_uv(r, pos):
    shift = v = 0
    while True:
        c = r[pos]
        pos += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, pos


def end_txn_v5(conn, tid, pid, epoch, commit):
    """EndTxn v5: (error, producer id, producer epoch) of the answer."""
    body = cstr(tid) + struct.pack(">qhb", pid, epoch, 1 if commit else 0) + b"\x00"
    r = conn.call(26, 5, body, True)
    _thr, err, npid, nepoch = struct.unpack(">ihqh", r[:16])
    return err, npid, nepoch


def describe_transaction(conn, tid):
    """DescribeTransactions v0 of one id: (error, state, epoch, {topic: [partitions]})."""
    r = conn.call(65, 0, uvarint(2) + cstr(tid) + b"\x00", True)
    pos = 4
    n, pos = read_uv(r, pos)
    assert n - 1 == 1, n
    err = struct.unpack(">h", r[pos:pos + 2])[0]
    pos += 2
    ln, pos = read_uv(r, pos)
    pos += ln - 1
    ln, pos = read_uv(r, pos)
    state = r[pos:pos + ln - 1].decode()
    pos += ln - 1
    _tmo, _start, _pid, epoch = struct.unpack(">iqqh", r[pos:pos + 22])
    pos += 22
    topics = {}
    nt, pos = read_uv(r, pos)
    for _ in range(nt - 1):
        ln, pos = read_uv(r, pos)
        name = r[pos:pos + ln - 1].decode()
        pos += ln - 1
        npart, pos = read_uv(r, pos)
        topics[name] = list(struct.unpack(">%di" % (npart - 1), r[pos:pos + 4 * (npart - 1)]))
        pos += 4 * (npart - 1)
        _tags, pos = read_uv(r, pos)
    return err, state, epoch, topics



class Conn:
    def __init__(self, host, port, timeout=10):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.corr = 0

    def close(self):
        self.s.close()

    def _recv(self, n):
        buf = bytearray()
        while len(buf) < n:
            chunk = self.s.recv(n - len(buf))
            if not chunk:
                raise ConnectionError("broker closed the connection")
            buf += chunk
        return bytes(buf)

    def call(self, key, version, body, flexible):
        self.corr += 1
        cid = b"kraw"
        hdr = struct.pack(">hhih", key, version, self.corr, len(cid)) + cid
        if flexible:
            hdr += b"\x00"
        msg = hdr + body
        self.s.sendall(struct.pack(">i", len(msg)) + msg)
        n = struct.unpack(">i", self._recv(4))[0]
        resp = self._recv(n)
        corr = struct.unpack(">i", resp[:4])[0]
        assert corr == self.corr, (corr, self.corr)
        return resp[5:] if flexible else resp[4:]   # header v1 has an empty tag section

    def init_producer_id(self):
        """InitProducerId v1, transactional id null. Returns (error, producer id, epoch)."""
        body = struct.pack(">hi", -1, 60000)
        r = self.call(22, 1, body, False)
        _thr, err, pid, epoch = struct.unpack(">ihqh", r[:16])
        return err, pid, epoch

    def produce(self, topic, partition, batch, acks=-1, transactional_id=None, version=9):
        """Produce v9 (flexible; version 9-12 share the layout). Returns (error code, base
        offset) of the one partition."""
        t = topic.encode()
        body = bytearray()
        if transactional_id is None:
            body += uvarint(0)                      # transactional id: null
        else:
            tid = transactional_id.encode()
            body += uvarint(len(tid) + 1) + tid
        body += struct.pack(">hi", acks, 30000)
        body += uvarint(2)                          # one topic
        body += uvarint(len(t) + 1) + t
        body += uvarint(2)                          # one partition
        body += struct.pack(">i", partition)
        body += uvarint(len(batch) + 1) + batch
        body += b"\x00"                             # partition tags
        body += b"\x00"                             # topic tags
        body += b"\x00"                             # request tags
        r = self.call(0, version, bytes(body), True)
        pos = 0

        def uv():
            nonlocal pos
            shift = v = 0
            while True:
                b = r[pos]
                pos += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    return v
        ntopics = uv() - 1
        assert ntopics == 1, ntopics
        nlen = uv() - 1
        pos += nlen
        nparts = uv() - 1
        assert nparts == 1, nparts
        idx, err, base = struct.unpack(">ihq", r[pos:pos + 14])
        assert idx == partition
        return err, base


def finalized_features(host, port):
    """ApiVersions v3's finalized features {name: level} (raw frames; its response header is
    v0 whatever the version, KIP-511)."""
    c = Conn(host, port)
    cid = b"kraw"
    msg = (struct.pack(">hhih", 18, 3, 1, len(cid)) + cid + b"\x00" +
           cstr("raw") + cstr("1") + b"\x00")
    c.s.sendall(struct.pack(">i", len(msg)) + msg)
    r = c._recv(struct.unpack(">i", c._recv(4))[0])[4:]
    c.close()
    assert struct.unpack(">h", r[:2])[0] == 0, "ApiVersions v3: an error"
    n, pos = read_uv(r, 2)
    for _ in range(n - 1):
        _tags, pos = read_uv(r, pos + 6)
    pos += 4
    fin = {}
    ntags, pos = read_uv(r, pos)
    for _ in range(ntags):
        tag, pos = read_uv(r, pos)
        size, pos = read_uv(r, pos)
        if tag == 2:
            q = pos
            nf, q = read_uv(r, q)
            for _ in range(nf - 1):
                ln, q = read_uv(r, q)
                name = r[q:q + ln - 1].decode()
                q += ln - 1
                hi, _lo = struct.unpack(">hh", r[q:q + 4])
                _tags, q = read_uv(r, q + 4)
                fin[name] = hi
        pos += size
    return fin




def update_feature(host, port, name, level, upgrade_type):
    """UpdateFeatures v1 of one feature (upgrade_type 1 upgrade, 2 safe downgrade): (top-level
    error, the feature's error)."""
    c = Conn(host, port)
    body = (struct.pack(">i", 60000) + uvarint(2) + cstr(name) +
            struct.pack(">hb", level, upgrade_type) + b"\x00" + b"\x00" + b"\x00")
    r = c.call(57, 1, body, True)
    c.close()
    top = struct.unpack(">h", r[4:6])[0]
    ln, pos = read_uv(r, 6)
    pos += max(ln - 1, 0)
    n, pos = read_uv(r, pos)
    assert n - 1 == 1, n
    ln, pos = read_uv(r, pos)
    pos += ln - 1
    return top, struct.unpack(">h", r[pos:pos + 2])[0]
