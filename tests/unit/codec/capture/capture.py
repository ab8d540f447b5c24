#!/usr/bin/env python3
"""Throwaway capture of real client requests for the codec golden tests (not run by make test).

Listens on 127.0.0.1 (a free port), runs a client command against it, and for every request
frame the client sends: saves the first frame of each (api, version) of ApiVersions, Metadata,
Produce and Fetch as a hex fixture, and answers it with capture_answer (our own encoder) so the
client proceeds. See ../golden/README.md for the exact commands used.

  capture.py --client NAME --helper ./capture_answer --out ../golden -- CMD ARGS... ({port})
"""

import argparse
import os
import socket
import subprocess
import sys
import threading
import time

NAMES = {0: "produce", 1: "fetch", 3: "metadata", 18: "api_versions"}


def read_exact(conn, n):
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf


def serve_conn(conn, args, port, saved, lock):
    with conn:
        while True:
            head = read_exact(conn, 4)
            if head is None:
                return
            size = int.from_bytes(head, "big")
            if size <= 0 or size > (1 << 20):
                return
            frame = read_exact(conn, size)
            if frame is None:
                return
            key = int.from_bytes(frame[0:2], "big", signed=True)
            ver = int.from_bytes(frame[2:4], "big", signed=True)
            name = NAMES.get(key)
            if name is not None:
                fname = "%s_%s_v%d.hex" % (args.client, name, ver)
                with lock:
                    if fname not in saved:
                        saved.add(fname)
                        path = os.path.join(args.out, fname)
                        with open(path, "w") as fp:
                            fp.write("# client: %s\n" % args.describe)
                            fp.write("# request: %s (key %d) v%d, %d bytes (header + body, no "
                                     "size prefix)\n" % (name, key, ver, len(frame)))
                            fp.write("# command: %s\n" % " ".join(args.cmd))
                            h = frame.hex()
                            for i in range(0, len(h), 64):
                                fp.write(h[i:i + 64] + "\n")
                        print("capture: saved %s" % fname, file=sys.stderr)
            p = subprocess.run([args.helper, str(port)], input=frame, capture_output=True)
            sys.stderr.write(p.stderr.decode(errors="replace"))
            if p.returncode != 0:
                return
            conn.sendall(p.stdout)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--client", required=True, help="fixture name prefix, e.g. librdkafka")
    ap.add_argument("--describe", default="", help="client and version, for the fixture")
    ap.add_argument("--helper", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--timeout", type=float, default=20.0)
    ap.add_argument("cmd", nargs=argparse.REMAINDER)
    args = ap.parse_args()
    if args.cmd and args.cmd[0] == "--":
        args.cmd = args.cmd[1:]
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    port = lsock.getsockname()[1]
    saved, lock = set(), threading.Lock()
    cmd = [c.replace("{port}", str(port)) for c in args.cmd]
    args.cmd = [c.replace("{port}", "PORT") for c in args.cmd]
    print("capture: listening on 127.0.0.1:%d, running %s" % (port, cmd), file=sys.stderr)
    proc = subprocess.Popen(cmd)
    deadline = time.time() + args.timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            conn, _ = lsock.accept()
        except socket.timeout:
            continue
        threading.Thread(target=serve_conn, args=(conn, args, port, saved, lock),
                         daemon=True).start()
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
    lsock.close()
    print("capture: %d fixtures: %s" % (len(saved), " ".join(sorted(saved))), file=sys.stderr)


if __name__ == "__main__":
    main()
