"""Kafka wire helpers shared by capture.py and fuzz_wire.py (stdlib only, /usr/bin/python3):
frame building and reading, CRC-32C, record batch v2 building/parsing, the corpus file.

A frame is the whole request as on the wire: int32 length prefix, request header
(api_key int16, api_version int16, correlation_id int32, client_id string[, tagged fields]) and
the body (Kafka's RequestHeader, KIP-482 for the flexible header v2).
"""

import base64
import json
import socket
import struct

from kafka_wire import arr, crc32c, s16, s32, s64, sstr, uvar, zvar  # noqa: F401

HERE_CORPUS = "corpus.json"


def read_uvar(b, p):
    v, shift = 0, 0
    while True:
        if p >= len(b) or shift > 63:
            raise ValueError("bad varint")
        c = b[p]
        p += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, p


def read_zvar(b, p):
    v, p = read_uvar(b, p)
    return (v >> 1) ^ -(v & 1), p


def record_batch(values, base_ts, key_prefix=b"k"):
    """An uncompressed record batch v2 with one keyed record per value (base offset 0)."""
    recs = b""
    for i, val in enumerate(values):
        key = key_prefix + b"%d" % i
        rec = (b"\x00" + zvar(i) + zvar(i) + zvar(len(key)) + key + zvar(len(val)) + val +
               zvar(0))
        recs += zvar(len(rec)) + rec
    after_crc = (s16(0) + s32(len(values) - 1) + s64(base_ts) + s64(base_ts + len(values) - 1) +
                 s64(-1) + s16(-1) + s32(-1) + s32(len(values)) + recs)
    body = s32(-1) + b"\x02" + struct.pack(">I", crc32c(after_crc)) + after_crc
    return s64(0) + s32(len(body)) + body


def kv_batch(records, base_ts):
    """An uncompressed record batch v2 of (key, value) records; None is a null key/value."""
    recs = b""
    for i, (key, val) in enumerate(records):
        rec = b"\x00" + zvar(0) + zvar(i)
        rec += zvar(-1) if key is None else zvar(len(key)) + key
        rec += zvar(-1) if val is None else zvar(len(val)) + val
        rec += zvar(0)
        recs += zvar(len(rec)) + rec
    after_crc = (s16(0) + s32(len(records) - 1) + s64(base_ts) + s64(base_ts) + s64(-1) +
                 s16(-1) + s32(-1) + s32(len(records)) + recs)
    body = s32(-1) + b"\x02" + struct.pack(">I", crc32c(after_crc)) + after_crc
    return s64(0) + s32(len(body)) + body


def parse_batches(data):
    """(offset, value) of every record in uncompressed v2 batches of a Fetch's records field;
    a trailing partial batch is ignored (Fetch may cut the last one)."""
    out = []
    p = 0
    while p + 61 <= len(data):
        base, blen = struct.unpack_from(">qi", data, p)
        end = p + 12 + blen
        if end > len(data):
            break
        attrs = struct.unpack_from(">h", data, p + 21)[0]
        if attrs & 7:
            raise ValueError("compressed batch in the healthy topic")
        if not attrs & 0x20:  # control batches carry no data records
            n = struct.unpack_from(">i", data, p + 57)[0]
            q = p + 61
            for _ in range(n):
                ln, q = read_zvar(data, q)
                r = q + 1
                _, r = read_zvar(data, r)  # timestamp delta
                od, r = read_zvar(data, r)
                kl, r = read_zvar(data, r)
                r += max(kl, 0)
                vl, r = read_zvar(data, r)
                out.append((base + od, data[r:r + vl] if vl >= 0 else None))
                q += ln
        p = end
    return out


def find_batches(frame):
    """Offsets (from the frame start) of the v2 record batches inside a frame, found by their
    shape and a matching CRC-32C (no schema needed): [(start, end)]."""
    found = []
    p = 0
    n = len(frame)
    while p + 61 <= n:
        if frame[p + 16] == 2:
            blen = struct.unpack_from(">i", frame, p + 8)[0]
            end = p + 12 + blen
            if 49 <= blen and end <= n:
                crc = struct.unpack_from(">I", frame, p + 17)[0]
                if crc == crc32c(frame[p + 21:end]):
                    found.append((p, end))
                    p = end
                    continue
        p += 1
    return found


def fix_crc(frame, start, end):
    """Recomputes the CRC-32C of the batch at frame[start:end] (bytes 21..end of the batch)."""
    b = bytearray(frame)
    struct.pack_into(">I", b, start + 17, crc32c(bytes(b[start + 21:end])))
    return bytes(b)


# ---- frames ------------------------------------------------------------------------------------

def frame(api_key, version, corr, body, client_id=b"fuzzwire", flexible=False):
    hdr = s16(api_key) + s16(version) + s32(corr) + sstr(client_id)
    if flexible:
        hdr += b"\x00"
    return s32(len(hdr) + len(body)) + hdr + body


def header_of(fr):
    """(api_key, api_version, correlation_id) of a frame (length prefix included)."""
    return struct.unpack_from(">hhi", fr, 4)


def with_len(payload):
    return s32(len(payload)) + payload


def recv_exact(s, n):
    buf = bytearray()
    while len(buf) < n:
        c = s.recv(n - len(buf))
        if not c:
            raise EOFError("closed after %d of %d bytes" % (len(buf), n))
        buf += c
    return bytes(buf)


def read_response(s):
    """One response: (correlation_id, rest of the response). EOFError when closed."""
    (n,) = struct.unpack(">i", recv_exact(s, 4))
    if n < 4 or n > (256 << 20):
        raise ValueError("response size %d" % n)
    data = recv_exact(s, n)
    return struct.unpack_from(">i", data)[0], data[4:]


def connect(host, port, timeout):
    s = socket.create_connection((host, port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def api_versions(host, port, timeout=10):
    """{api_key: (min, max)} the broker advertises (ApiVersions v0)."""
    with connect(host, port, timeout) as s:
        s.sendall(frame(18, 0, 1, b""))
        corr, body = read_response(s)
    err, n = struct.unpack_from(">hi", body)
    if err != 0:
        raise RuntimeError("ApiVersions error %d" % err)
    out = {}
    for i in range(n):
        k, lo, hi = struct.unpack_from(">hhh", body, 6 + 6 * i)
        out[k] = (lo, hi)
    return out


# ---- the corpus --------------------------------------------------------------------------------

def load_corpus(path):
    """[{api, version, client, frame(bytes)}] from the committed JSON file."""
    with open(path) as f:
        doc = json.load(f)
    out = []
    for e in doc["frames"]:
        d = dict(e)
        d["frame"] = base64.b64decode(e["frame"])
        out.append(d)
    return doc, out


def save_corpus(path, meta, entries):
    doc = dict(meta)
    doc["frames"] = [{"api": e["api"], "version": e["version"], "client": e["client"],
                      "frame": base64.b64encode(e["frame"]).decode()} for e in entries]
    with open(path, "w") as f:
        json.dump(doc, f, indent=0, sort_keys=True)
        f.write("\n")
