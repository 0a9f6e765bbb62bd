#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Dirty data in the cache, and a plugin that cannot be written now (an
# eval plugin whose can_write is false, as the file plugin's is on a
# read-only mount).
#  1. Clients get a read-only export that serves the cached data; the
#     write-back of it fails with EROFS (nbdkit does not abort), a drain
#     with a time limit gives up with that error, and the backing file
#     is untouched.
#  2. nbdkit -r over a plugin that can be written: clients cannot write,
#     but the data acknowledged before still goes to the plugin.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_pcachectl
requires_nbdsh
requires nbdkit eval --version
tmpdir

ctl=$tmp/ctl
truncate -s 64M "$disk"

# start CAN_WRITE [NBDKIT-OPTIONS...]
start ()
{
    local can_write=$1
    shift
    start_nbdkit -P "$pidfile" -U "$sock" --log=stderr "$@" \
        --filter="$PCACHE_FILTER" \
        eval get_size="echo 67108864" \
             pread="dd if='$disk' skip=\$4 count=\$3 iflag=count_bytes,skip_bytes status=none" \
             pwrite="dd of='$disk' seek=\$4 conv=notrunc oflag=seek_bytes status=none" \
             can_write="$can_write" can_flush="exit 0" can_multi_conn="exit 0" \
             flush="exit 0" \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-control="$ctl" pcache-writeback-percent=100
}

dirty ()
{
    "$pcachectl" stats "$ctl" --pretty | sed -n 's/^  "dirty_bytes": \(.*\),$/\1/p'
}

# Leave 64K dirty in the cache.
start "exit 0"
nbdsh -u "$uri" -c 'h.pwrite(b"R" * 65536, 1 << 20); h.flush()'
test "$(dirty)" -eq 65536
kill9_nbdkit "$pidfile"
wait_unlocked "$cache"

# 1. The plugin cannot be written.
start "exit 3" 2>"$tmp/ro.log"
nbdsh -u "$uri" -c '
assert h.is_read_only()
assert h.pread(65536, 1 << 20) == b"R" * 65536
'
drain_fails "$ctl" 2 'Read-only file system'
test "$(dirty)" -eq 65536
"$pcachectl" stats "$ctl" --pretty | grep -F '"backend_state": "failing",'
kill_nbdkit "$pidfile"
cat "$tmp/ro.log"
grep -F 'writeback failed (Read-only file system)' "$tmp/ro.log"
if grep -F 'Assertion' "$tmp/ro.log"; then
    echo "$0: nbdkit aborted" >&2
    exit 1
fi
cmp -n $((2 << 20)) /dev/zero "$disk"

# 2. nbdkit -r, a plugin that can be written.
start "exit 0" -r 2>"$tmp/r.log"
nbdsh -u "$uri" -c '
assert h.is_read_only()
assert h.pread(65536, 1 << 20) == b"R" * 65536
'
"$pcachectl" drain --timeout=60 "$ctl"
test "$(dirty)" -eq 0
kill_nbdkit "$pidfile"
cat "$tmp/r.log"
cmp -n 1048576 /dev/zero "$disk"
cmp -i 0:1048576 -n 65536 <(head -c 65536 /dev/zero | tr '\0' R) "$disk"
