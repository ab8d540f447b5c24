"""Kafka wire primitives for hand-built frames in the compat tests (stdlib only): the classic
encodings (int8..int64, int16-length strings, int32-length bytes and arrays, -1 = null), the
flexible ones (KIP-482: unsigned varints, compact strings and arrays), the zig-zag varints of
record fields, CRC-32C (what a v2 record batch carries over bytes 21..end), and a response
reader. Protocol-level helpers (requests, record batches) stay with the tests that need them.
"""

import socket
import struct


def s8(v):
    return struct.pack(">b", v)


def s16(v):
    return struct.pack(">h", v)


def s32(v):
    return struct.pack(">i", v)


def s64(v):
    return struct.pack(">q", v)


def sstr(s):
    """Classic (nullable) string: int16 length, -1 for None; str or bytes."""
    if s is None:
        return s16(-1)
    b = s.encode() if isinstance(s, str) else s
    return s16(len(b)) + b


def sbytes(b):
    """Classic (nullable) bytes: int32 length, -1 for None."""
    if b is None:
        return s32(-1)
    return s32(len(b)) + b


def arr(items):
    """Classic array of already-encoded items."""
    return s32(len(items)) + b"".join(items)


def uvar(n):
    """Unsigned varint, 7 bits a byte, least significant group first."""
    out = b""
    while True:
        b7 = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b7 | 0x80])
        else:
            return out + bytes([b7])


def zvar(n):
    """Zig-zag varint (record fields inside a v2 batch)."""
    return uvar((n << 1) ^ (n >> 63))


def cstr(s):
    """Compact (nullable) string: uvarint length + 1, 0 for None."""
    if s is None:
        return b"\x00"
    b = s.encode() if isinstance(s, str) else s
    return uvar(len(b) + 1) + b


def carr(items):
    """Compact array; each item carries its own tagged-field section."""
    return uvar(len(items) + 1) + b"".join(items)


def _crc_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        t.append(c)
    return t


_CRC_T = _crc_table()


def crc32c(data):
    """CRC-32C (Castagnoli), table-driven."""
    crc = 0xFFFFFFFF
    t = _CRC_T
    for byte in data:
        crc = t[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


class Reader:
    """Reads a response body front to back."""

    def __init__(self, b):
        self.b, self.p = b, 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.b, self.p)[0]
        self.p += struct.calcsize(fmt)
        return v

    def i8(self):
        return self.take(">b")

    def i16(self):
        return self.take(">h")

    def i32(self):
        return self.take(">i")

    def i64(self):
        return self.take(">q")

    def uvar(self):
        v, shift = 0, 0
        while True:
            b7 = self.b[self.p]
            self.p += 1
            v |= (b7 & 0x7F) << shift
            shift += 7
            if not b7 & 0x80:
                return v

    def _text(self, n):
        if n < 0:
            return None
        s = self.b[self.p:self.p + n].decode()
        self.p += n
        return s

    def str(self):
        """Classic nullable string."""
        return self._text(self.i16())

    nstr = str

    def cstr(self):
        """Compact nullable string."""
        return self._text(self.uvar() - 1)

    def bytes(self):
        """Classic nullable bytes."""
        n = self.i32()
        if n < 0:
            return None
        s = self.b[self.p:self.p + n]
        self.p += n
        return s

    def done(self):
        return self.p == len(self.b)


class Conn:
    """One blocking connection sending hand-built requests (request header v1, or v2 when
    flexible) and reading their responses (header v0, or v1 when flexible)."""

    def __init__(self, host, port, client_id, timeout=15):
        self.s = socket.create_connection((host, port), timeout=timeout)
        self.client_id = client_id
        self.corr = 0
        self.header_tags = 0  # tagged-field count of the last flexible response header

    def send(self, key, version, body, flexible=False):
        self.corr += 1
        hdr = s16(key) + s16(version) + s32(self.corr) + sstr(self.client_id)
        if flexible:
            hdr += b"\x00"
        self.s.sendall(s32(len(hdr) + len(body)) + hdr + body)

    def response(self, flexible=False, none_on_close=False):
        """The Reader past the response header; None when none_on_close and the broker closed
        the connection instead of answering."""
        try:
            head = self.recv(4)
        except (EOFError, ConnectionResetError):
            if none_on_close:
                return None
            raise
        r = Reader(self.recv(struct.unpack(">i", head)[0]))
        if r.i32() != self.corr:
            raise AssertionError("correlation id")
        if flexible:
            self.header_tags = r.uvar()
        return r

    def call(self, key, version, body, flexible=False):
        self.send(key, version, body, flexible)
        return self.response(flexible)

    def recv(self, n):
        buf = b""
        while len(buf) < n:
            c = self.s.recv(n - len(buf))
            if not c:
                raise EOFError("closed")
            buf += c
        return buf

    def close(self):
        self.s.close()
