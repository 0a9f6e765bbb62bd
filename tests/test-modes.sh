#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Cache modes, the sequential-read cutoff and switching mode at run time.
#  A. writethrough: a write is on the plugin before it is acknowledged
#     (the backing file holds it at once) and reads of it hit the cache.
#  B. writearound: a write is on the plugin at once and is not cached;
#     reads of it are cached afterwards.
#  C. A write-through write over data cached earlier in write-back mode
#     survives kill -9: the older cached copy must not resurface.
#  D. writeback -> writethrough through the control socket first writes
#     back every dirty extent (the backing file then holds them all).
#  E. pcache-seq-cutoff: a long sequential read is not inserted, a short
#     random one is.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_nbdsh
tmpdir

ctl="$tmp/ctl"
truncate -s 64M "$disk"

start ()
{
    start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
        file "$disk" pcache-dev="$cache" pcache-size=32M \
        pcache-segment-size=1M pcache-control="$ctl" "$@"
}

# What the control socket says of one statistic.
stat ()
{
    python3 - "$ctl" "$1" <<'EOF'
import json, socket, sys
s = socket.socket (socket.AF_UNIX)
s.connect (sys.argv[1])
s.sendall (b"stats\n")
print (json.loads (s.makefile ().readline ())[sys.argv[2]])
EOF
}

ctl_say ()
{
    python3 - "$ctl" "$1" <<'EOF'
import socket, sys
s = socket.socket (socket.AF_UNIX)
s.connect (sys.argv[1])
s.sendall ((sys.argv[2] + "\n").encode ())
print (s.makefile ().readline ().strip ())
EOF
}

# file_has OFFSET LEN BYTE: the backing file holds BYTE over the range.
file_has ()
{
    python3 - "$disk" "$@" <<'EOF'
import sys
path, off, n, byte = sys.argv[1], int (sys.argv[2]), int (sys.argv[3]), int (sys.argv[4], 0)
with open (path, "rb") as f:
    f.seek (off)
    data = f.read (n)
bad = [i for i in range (n) if data[i] != byte]
if bad:
    print ("%s: byte %d is %#x, not %#x" % (path, off + bad[0], data[bad[0]], byte))
    sys.exit (1)
EOF
}

# ---------------------------------------------------------------------
# A. writethrough
start pcache-mode=writethrough
nbdsh -u "$uri" -c 'h.pwrite (b"\x11" * 65536, 1 << 20)'
file_has $((1 << 20)) 65536 0x11
test "$(stat write_through_bytes)" -eq 65536
hits=$(stat read_hits)
nbdsh -u "$uri" -c 'assert h.pread (65536, 1 << 20) == b"\x11" * 65536'
test "$(stat read_hits)" -eq $((hits + 1))
test "$(stat dirty_bytes)" -eq 0
kill_nbdkit "$pidfile"; wait_unlocked "$cache"

# ---------------------------------------------------------------------
# B. writearound
start pcache-mode=writearound
nbdsh -u "$uri" -c 'h.pwrite (b"\x22" * 65536, 2 << 20)'
file_has $((2 << 20)) 65536 0x22
misses=$(stat read_misses)
nbdsh -u "$uri" -c 'assert h.pread (65536, 2 << 20) == b"\x22" * 65536'
test "$(stat read_misses)" -eq $((misses + 1))
hits=$(stat read_hits)
nbdsh -u "$uri" -c 'assert h.pread (65536, 2 << 20) == b"\x22" * 65536'
test "$(stat read_hits)" -eq $((hits + 1))
kill_nbdkit "$pidfile"; wait_unlocked "$cache"

# ---------------------------------------------------------------------
# C. Cached in write-back, overwritten in write-through, then kill -9.
start pcache-mode=writeback
nbdsh -u "$uri" -c 'h.pwrite (b"\x33" * 65536, 3 << 20); h.flush ()'
kill_nbdkit "$pidfile"; wait_unlocked "$cache"
start pcache-mode=writethrough
nbdsh -u "$uri" -c 'h.pwrite (b"\x44" * 65536, 3 << 20)'
kill9_nbdkit "$pidfile"; wait_unlocked "$cache"
start pcache-mode=writeback
nbdsh -u "$uri" -c 'assert h.pread (65536, 3 << 20) == b"\x44" * 65536'
file_has $((3 << 20)) 65536 0x44

# ---------------------------------------------------------------------
# D. Switch to writethrough with dirty data: it is written back first.
# Write-back is held off by a commit interval longer than the test, so
# the data is dirty (and uncommitted) when the switch comes.
kill_nbdkit "$pidfile"; wait_unlocked "$cache"
start pcache-mode=writeback pcache-commit-ms=60000
nbdsh -u "$uri" -c '
for i in range (16):
    h.pwrite (bytes ([0x50 + i]) * 4096, (4 << 20) + i * 8192)
'
test "$(stat dirty_bytes)" -eq $((16 * 4096))
file_has $((4 << 20)) 4096 0
test "$(ctl_say "mode writethrough")" = ok
test "$(stat mode)" = writethrough
test "$(stat dirty_bytes)" -eq 0
for i in $(seq 0 15); do
    file_has $(( (4 << 20) + i * 8192 )) 4096 $((0x50 + i))
done
test "$(ctl_say "mode sideways")" != ok
test "$(ctl_say "mode writeback")" = ok
kill_nbdkit "$pidfile"; wait_unlocked "$cache"

# ---------------------------------------------------------------------
# E. Sequential cutoff: 8 MiB read sequentially in 256K requests with a
# 1M cutoff is mostly not inserted; reading it again misses.
rm -f "$cache"
start pcache-seq-cutoff=1M
nbdsh -u "$uri" -c '
for i in range (32):
    h.pread (256 * 1024, (16 << 20) + i * 256 * 1024)
'
test "$(stat seq_bypass_bytes)" -ge $((6 << 20))
misses=$(stat read_misses)
nbdsh -u "$uri" -c 'h.pread (256 * 1024, (16 << 20) + 31 * 256 * 1024)'
test "$(stat read_misses)" -eq $((misses + 1))
# A short read elsewhere is inserted: read twice, the second one hits.
nbdsh -u "$uri" -c 'h.pread (4096, 40 << 20)'
hits=$(stat read_hits)
nbdsh -u "$uri" -c 'h.pread (4096, 40 << 20)'
test "$(stat read_hits)" -eq $((hits + 1))
