#!/bin/sh
# A broker node is an object (struct handlers_ctx and its shards' struct hshard): several can
# live in one process. Fails, naming them, when an object file of broker/ defines writable
# file-scope or thread-local data other than the process-wide log sink (broker/log.h: the
# level, the thread's shard tag and the rate limits of BLOG_*_LIMITED). Const tables that only
# need relocating (.data.rel.ro) are read-only after start and pass.
# Usage: check_broker_state.sh <build dir>
build=${1:?build dir}
objs=$(find "$build/broker" -name '*.c.o')
[ -n "$objs" ] || { echo "no broker object files under $build/broker: the check is broken"; exit 1; }
hits=
for o in $objs; do
    h=$(objdump -t "$o" |
        awk 'NF >= 4 { sec = $(NF - 2) } NF < 4 { next }
             sec ~ /^\.(data|bss|tdata|tbss)(\.|$)/ && sec !~ /^\.data\.rel\.ro/ &&
             $0 !~ / F / && $0 !~ / d / && $0 !~ /df / { print $NF }' |
        grep -v -E '^(g_level|t_shard|blog_limit_\.[0-9]+)$' |
        grep -v -E 'asan|ubsan|__odr|__sancov|^\.L' |
        sed "s|^|$(basename "$o"): |")
    [ -z "$h" ] || hits="$hits$h
"
done
if [ -n "$hits" ]; then
    echo "writable file-scope or thread-local state in broker/ (put it in the node or shard):"
    printf '%s' "$hits"
    exit 1
fi
# The self-check: the log sink's level must be found, or the scan sees nothing.
if ! objdump -t $(find "$build/broker" -name 'log.c.o') | grep -q ' g_level$'; then
    echo "g_level not found in broker/log.c.o: the check is broken"
    exit 1
fi
echo "no writable file-scope or thread-local state in broker/ beyond the log sink"
