#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A plugin whose writes succeed but whose flush fails.
#
# Write-back's writes are not down until a flush after them succeeds:
# the plugin may lose them on a crash until then, and the ordering
# promise (the backing image is always an earlier point in time) needs
# each epoch flushed before the next one starts.  The eval plugin
# below writes to a file and fails its flush until a flag file exists.
#  1. While the flush fails: the data stays dirty, a drain with a time
#     limit gives up with the plugin's error, and no flush is counted,
#     though the writes themselves reached the file.
#  2. Once the flush works: a drain succeeds, nothing is dirty, and the
#     backing file holds what the client wrote.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_pcachectl
requires qemu-io --version
requires nbdkit eval --version
tmpdir

ctl=$tmp/ctl
ok=$tmp/flush-ok
truncate -s 64M "$disk"
head -c 64K /dev/urandom > "$tmp/data"

# Its errors go to a file (not syslog, as a daemon's do).
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" \
    eval get_size="echo 67108864" \
         pread="dd if='$disk' skip=\$4 count=\$3 iflag=count_bytes,skip_bytes status=none" \
         pwrite="dd of='$disk' seek=\$4 conv=notrunc oflag=seek_bytes status=none" \
         flush="test -e '$ok' || { echo EIO flush refused >&2; exit 1; }" \
         can_write="exit 0" can_flush="exit 0" can_multi_conn="exit 0" \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
    pcache-control="$ctl" pcache-writeback-percent=0 2>"$tmp/nbdkit.log"

stat_of ()
{
    "$pcachectl" stats "$ctl" --pretty | sed -n "s/^  \"$1\": \\(.*\\),\$/\\1/p"
}

# 1. The flush fails.
qemu-io -f raw "$uri" -c "write -s $tmp/data 0 64K" -c flush
drain_fails "$ctl" 1 'Input/output error'
test "$(stat_of dirty_bytes)" -eq 65536
test "$(stat_of writeback_flushes)" -eq 0
test "$(stat_of backend_state)" = '"failing"'
# The writes themselves went through.
cmp -n 65536 "$tmp/data" "$disk"

# 2. The flush works again.
touch "$ok"
"$pcachectl" drain "$ctl"
test "$(stat_of dirty_bytes)" -eq 0
test "$(stat_of writeback_flushes)" -ge 1
test "$(stat_of backend_state)" = '"ok"'
kill_nbdkit "$pidfile"
cmp -n 65536 "$tmp/data" "$disk"
cat "$tmp/nbdkit.log"
grep -F 'writeback failed (Input/output error)' "$tmp/nbdkit.log"
