#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A remote NBD server that is not up when nbdkit starts (nbd plugin):
# nbdkit starts all the same, as it does without the filter, and the
# first connection once the remote is up starts the cache.
#
#  1. --run with a remote that never comes: the client's connection
#     fails with the plugin's error, and nbdkit exits with the client's
#     status instead of waiting for good; no cache file is made.
#  2. A new cache: connections fail while the remote is down, and the
#     control socket says why; once it is up, one writes and flushes,
#     the control socket gives the statistics, and pcache-drain=true
#     writes the data down at exit.
#  3. A cache with dirty data (write-back paused, nbdkit killed): started
#     while the remote is down, it is replayed once the remote is up,
#     serves the data to four clients that connect at once (one of
#     them starts the cache), and writes it back.
#  4. A cache made for another size: the first connection once the
#     remote is up is refused naming the size, and so is the next one.
#  5. pcache-drain=true when the remote never came: nbdkit says the
#     cache was left as it was, and exits.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_nbdsh
requires_pcachectl
requires nbdkit file --version
requires nbdkit nbd --version

tmpdir
rsock=$tmp/remote.sock
rpid=$tmp/remote.pid
ctl=$tmp/ctl
truncate -s 16M "$disk"
export PMEM2_FORCE_GRANULARITY=page

front ()
{
    start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
        --filter="$PCACHE_FILTER" nbd socket="$rsock" \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-control="$ctl" "$@" 2>>"$tmp/log"
}

# ---------------------------------------------------------------------
# 1. --run, and the remote never comes.
expect_status 1 timeout 60 nbdkit -U - --filter="$PCACHE_FILTER" \
    nbd socket="$rsock" pcache-dev="$cache" pcache-size=32M \
    pcache-segment-size=1M \
    --run 'nbdsh -u "$uri" -c "print(h.get_size())"'
expect_output "pcache: the plugin cannot be opened now"
expect_output "nbd_connect_unix: connect"
test ! -e "$cache"

# ---------------------------------------------------------------------
# 2. A new cache, the remote comes later.
: >"$tmp/log"
front pcache-drain=true
grep -q "pcache: the plugin cannot be opened now" "$tmp/log"
expect_status 1 nbdsh -u "$uri" -c 'print(h.get_size())'
test ! -e "$cache"
expect_status 1 "$pcachectl" stats "$ctl"
expect_output "error: the cache has not started: the plugin could not be opened yet"
start_nbdkit -P "$rpid" -U "$rsock" file "$disk"
nbdsh -u "$uri" -c '
h.pwrite(b"A" * 65536, 1048576)
h.flush()
assert h.get_size() == 16 * 1048576
assert h.pread(65536, 1048576) == b"A" * 65536
'
expect_status 0 "$pcachectl" stats "$ctl"
expect_output '"backend_state":"ok"'
grep -q "the cache has started" "$tmp/log"
kill_nbdkit "$pidfile"
cmp <(head -c 65536 /dev/zero | tr '\0' A) \
    <(dd if="$disk" bs=65536 skip=16 count=1 status=none)

# ---------------------------------------------------------------------
# 3. Dirty data in the cache, the remote down at the restart.
wait_unlocked "$cache"
front
"$pcachectl" pause "$ctl"
nbdsh -u "$uri" -c '
h.pwrite(b"B" * 65536, 2097152)
h.flush()
'
expect_status 0 "$pcachectl" stats "$ctl"
expect_output '"dirty_bytes":65536,'
kill -9 "$(cat "$pidfile")"
rm -f "$pidfile"
kill_nbdkit "$rpid"
wait_unlocked "$cache"
: >"$tmp/log"
front
expect_status 1 nbdsh -u "$uri" -c 'print(h.get_size())'
start_nbdkit -P "$rpid" -U "$rsock" file "$disk"
# Four first connections at once: one starts the cache, the others wait
# for it and are served.
pids=()
for i in 1 2 3 4; do
    nbdsh -u "$uri" -c 'assert h.pread(65536, 2097152) == b"B" * 65536' &
    pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
test "$(grep -c "the cache has started" "$tmp/log")" -eq 1
expect_status 0 "$pcachectl" drain "$ctl"
cmp <(head -c 65536 /dev/zero | tr '\0' B) \
    <(dd if="$disk" bs=65536 skip=32 count=1 status=none)
kill_nbdkit "$pidfile"
kill_nbdkit "$rpid"

# ---------------------------------------------------------------------
# 4. The remote comes back at another size.
wait_unlocked "$cache"
: >"$tmp/log"
front
truncate -s 8M "$tmp/small"
start_nbdkit -P "$rpid" -U "$rsock" file "$tmp/small"
expect_status 1 nbdsh -u "$uri" -c 'print(h.get_size())'
grep -q "pcache-dev: $cache: export '' is 8388608 bytes but the cache holds it as 16777216 bytes" "$tmp/log"
expect_status 1 nbdsh -u "$uri" -c 'print(h.get_size())'
grep -q "cannot be used with this plugin" "$tmp/log"
kill_nbdkit "$pidfile"
kill_nbdkit "$rpid"

# ---------------------------------------------------------------------
# 5. pcache-drain=true, and the remote never came.
wait_unlocked "$cache"
: >"$tmp/log"
front pcache-drain=true
kill_nbdkit "$pidfile"
grep -q "pcache-drain: the plugin was never opened: $cache is left as it was" \
     "$tmp/log"
