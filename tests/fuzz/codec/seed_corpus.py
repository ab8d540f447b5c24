#!/usr/bin/env python3
"""Turns the golden request frames (hex) into binary seed files for fuzz_codec_request."""
import os
import sys

src, dst = sys.argv[1], sys.argv[2]
os.makedirs(dst, exist_ok=True)
for name in sorted(os.listdir(src)):
    if not name.endswith(".hex"):
        continue
    with open(os.path.join(src, name)) as fp:
        hextext = "".join(l.strip() for l in fp if not l.startswith("#"))
    with open(os.path.join(dst, "golden_" + name[:-4]), "wb") as out:
        out.write(bytes.fromhex(hextext))
