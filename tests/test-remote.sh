#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The claims of "Remote backends and scale-out" in the man page, with a
# remote nbdkit (file plugin) on a Unix socket and pcache in front of
# it through the nbd plugin:
#  A. pcache advertises multi-conn to its clients (nbd-client -C N).
#  B. A remote that does not advertise multi-conn is refused unless
#     pcache-assume-shared=true.
#  C. The remote drops: writes and flushes still succeed, cached reads
#     are served, uncached reads fail; once the remote is back they
#     still fail on that connection and work on a new one.
#  D. The host is lost (kill -9) with dirty data: the remote holds the
#     older image of the last written-back flush epoch, and
#     pcachectl drain CACHE --to URI writes the rest.
#  E. pcache-mode=writethrough: a write is on the remote when it is
#     acknowledged, before any flush.
#  F. pcache-drain=true: when nbdkit stops, the remote has everything
#     and the cache is empty (without it, the cache keeps its data).
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires_drain_backend nbd
requires nbdkit file --version
requires nbdkit nbd --version
requires nbdkit --filter=multi-conn null --version
tmpdir

rsock=$tmp/remote.sock
rpid=$tmp/remote.pid
ruri="nbd+unix:///?socket=$rsock"
ctl=$tmp/ctl
truncate -s 64M "$disk"

start_remote ()
{
    start_nbdkit -P "$rpid" -U "$rsock" file "$disk" "$@"
}

# pcache ARGS...: pcache in front of the remote, on $sock.
pcache ()
{
    rm -f "$cache"
    start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
        nbd socket="$rsock" \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-control="$ctl" "$@"
}

# on_remote PYTHON: run PYTHON with h connected to the remote directly.
on_remote ()
{
    nbdsh -u "$ruri" -c "$1"
}

# ---------------------------------------------------------------------
# A. Multi-conn, as the man page's nbd-client -C example needs.

start_remote
pcache
nbdsh -u "$uri" -c 'assert h.can_multi_conn()'
kill_nbdkit "$pidfile"

# ---------------------------------------------------------------------
# B. A remote without multi-conn.

kill_nbdkit "$rpid"
start_remote --filter=multi-conn multi-conn-mode=disable
rm -f "$cache" "$sock"
r=0
timeout 60 nbdkit -f -U "$sock" --filter="$PCACHE_FILTER" \
    nbd socket="$rsock" \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
    2>"$tmp/err" || r=$?
cat "$tmp/err"
test "$r" -eq 1
grep -qF "pcache-assume-shared=true" "$tmp/err"
pcache pcache-assume-shared=true
nbdsh -u "$uri" -c 'h.pwrite(b"S" * 4096, 0)' -c 'h.flush()' \
      -c 'assert h.pread(4096, 0) == b"S" * 4096'
kill_nbdkit "$pidfile"
kill_nbdkit "$rpid"

# ---------------------------------------------------------------------
# C. The remote drops and comes back.

start_remote
pcache
export rpid rsock disk
# Cache 0..1M (written), leave 8M..9M uncached; then the remote dies.
nbdsh -u "$uri" -c '
import os, subprocess
h.pwrite(b"H" * (1 << 20), 0)
h.flush()
assert h.pread(1 << 20, 0) == b"H" * (1 << 20)
subprocess.check_call(["kill", "-9", open(os.environ["rpid"]).read().strip()])
# Still served: writes, flushes and cached reads.
h.pwrite(b"W" * 65536, 2 << 20)
h.flush()
assert h.pread(1 << 20, 0) == b"H" * (1 << 20)
assert h.pread(65536, 2 << 20) == b"W" * 65536
# Not cached: fails.
try:
    h.pread(65536, 8 << 20)
    raise Exception("an uncached read succeeded with the remote down")
except nbd.Error as e:
    print("uncached read failed as expected:", e)
# The remote comes back; this connection still fails its misses.
subprocess.check_call(["bash", "-c",
    "rm -f \"$rsock\" \"$rpid\" && "
    "nbdkit -P \"$rpid\" -U \"$rsock\" file \"$disk\" || exit 1; "
    "for i in $(seq 600); do [ -s \"$rpid\" ] && exit 0; sleep 0.1; done; "
    "exit 1"])
try:
    h.pread(65536, 8 << 20)
    raise Exception("an uncached read succeeded on the old connection")
except nbd.Error as e:
    print("uncached read on the old connection failed as expected:", e)
' 2>&1
# A new connection reads the miss from the remote.
nbdsh -u "$uri" -c 'assert h.pread(65536, 8 << 20) == bytes(65536)'
kill_nbdkit "$pidfile"
kill_nbdkit "$rpid"

# ---------------------------------------------------------------------
# D. The host is lost with dirty data.

truncate -s 0 "$disk"; truncate -s 64M "$disk"
start_remote
pcache
nbdsh -u "$uri" -c 'h.pwrite(b"A" * 65536, 0)' -c 'h.flush()'
$pcachectl checkpoint "$ctl"            # A is on the remote
$pcachectl pause "$ctl"                 # nothing more goes down
nbdsh -u "$uri" -c 'h.pwrite(b"B" * 65536, 0)' \
      -c 'h.pwrite(b"C" * 65536, 1 << 20)' -c 'h.flush()'
kill9_nbdkit "$pidfile"
wait_unlocked "$cache"
# The remote: the older image, A and nothing of the later epoch.
on_remote 'assert h.pread(65536, 0) == b"A" * 65536
assert h.pread(65536, 1 << 20) == bytes(65536)'
# The cache file, once the host is back, writes the rest.
expect_status 0 "$pcachectl" drain "$cache" --to "$ruri"
on_remote 'assert h.pread(65536, 0) == b"B" * 65536
assert h.pread(65536, 1 << 20) == b"C" * 65536'
kill_nbdkit "$rpid"

# ---------------------------------------------------------------------
# E. Write-through: on the remote when acknowledged.

start_remote
pcache pcache-mode=writethrough
nbdsh -u "$uri" -c 'h.pwrite(b"T" * 65536, 4 << 20)'
on_remote 'assert h.pread(65536, 4 << 20) == b"T" * 65536'
kill_nbdkit "$pidfile"

# ---------------------------------------------------------------------
# F. pcache-drain=true: the remote is complete once nbdkit stopped.

pcache pcache-drain=true
nbdsh -u "$uri" -c 'h.pwrite(b"D" * 65536, 5 << 20)' -c 'h.flush()'
kill_nbdkit "$pidfile"
on_remote 'assert h.pread(65536, 5 << 20) == b"D" * 65536'
expect_status 0 "$pcachectl" info "$cache"
expect_output '^dirty bytes: +0$'
expect_output '^cached keys: +0$'
# Without it, the cache keeps what it holds.
start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
    nbd socket="$rsock" pcache-dev="$cache"
nbdsh -u "$uri" -c 'h.pwrite(b"E" * 65536, 6 << 20)' -c 'h.flush()'
kill_nbdkit "$pidfile"
expect_status 0 "$pcachectl" info "$cache"
expect_output '^cached keys: +[1-9]'
kill_nbdkit "$rpid"
