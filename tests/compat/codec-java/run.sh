#!/usr/bin/env bash
# ctest compat_codec_java: laminar's codec against kafka-clients' message classes, both ways.
#   run.sh CODEC_DUMP WORKDIR
# 1. codec_dump emit: our encodings of every api/version/seed (and the headers).
# 2. CodecCheck (one JVM): Java decodes and re-encodes each (must be identical), then encodes
#    messages of its own for every version both sides support.
# 3. codec_dump check: we decode and re-encode Java's messages (must be identical).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
dump=$1
work=$2
if [ ! -f "$here/classes/.complete" ] || [ ! -f "$here/../java/lib/.complete" ]; then
  echo "compat_codec_java: run $here/prepare first (scripts/prepare-compat does)" >&2
  exit 1
fi
mkdir -p "$work"
rm -f "$work/laminar.txt" "$work/java.txt"
"$dump" emit "$work/laminar.txt"
# C1 only and the serial collector: the run is a few seconds, C2 compilation would dominate.
# Both directions run even when the first fails, so one run shows every difference.
java_rc=0
java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC -cp "$here/classes:$here/../java/lib/*" \
  CodecCheck "$work/laminar.txt" "$work/java.txt" || java_rc=$?
c_rc=0
"$dump" check "$work/java.txt" || c_rc=$?
if [ "$java_rc" != 0 ] || [ "$c_rc" != 0 ]; then
  echo "compat_codec_java: FAILED (CodecCheck exit $java_rc, codec_dump check exit $c_rc)"
  exit 1
fi
