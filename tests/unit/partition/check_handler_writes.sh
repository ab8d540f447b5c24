#!/bin/sh
# The partition module is the only writer of a partition log and of its high watermark
# (broker/partition/README.md): handlers read storage, and append, truncate, move the log
# start or the high watermark only through partition_* calls. Fails, naming the lines, when a
# storage write call appears anywhere in broker/ outside broker/partition/.
# Usage: check_handler_writes.sh <source root>
root=${1:?source root}
pattern='storage_log_(append|truncate|set_high_watermark|advance_start|reset|enforce_retention)[a-z_]*[[:space:]]*\('
hits=$(grep -rnE "$pattern" "$root/broker" --include='*.c' --include='*.h' |
       grep -v "^$root/broker/partition/")
if [ -n "$hits" ]; then
    echo "storage writes outside broker/partition/ (use partition_append/advance_start/tick):"
    echo "$hits"
    exit 1
fi
# The self-check: the pattern must find the partition's own writes, or it checks nothing.
if ! grep -qE "$pattern" "$root/broker/partition/partition.c"; then
    echo "pattern matches nothing in broker/partition/partition.c: the check is broken"
    exit 1
fi
echo "no storage writes outside broker/partition/"
