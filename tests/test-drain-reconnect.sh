#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcachectl drain --to an NBD server that dies in the middle and comes
# back connects again and finishes, in order and whole: write-back
# retries what failed, and reopens the backend after the connection's
# error, as the filter does with a plugin's.
#
# The dirty data is twenty flush epochs of four 4K writes, so the
# drain takes at least twenty times two round trips (writes, then a
# flush) of the 200 ms store below: once the server has answered the
# first write it is killed (kill -9), and a new one is started on the
# same socket and image.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires_drain_backend nbd
requires_rtt_filter
tmpdir

dirty_cache "
for e in range(20):
    for i in range(4):
        n = e * 4 + i
        h.pwrite(bytes([n + 1]) * 4096, n * 65536)
    h.flush()
"
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *327680 (320.0 KiB)' "$tmp/out"

truncate -s 16M "$disk"
server ()
{
    start_nbdkit -P "$pidfile" -U "$sock" --filter=log \
        --filter="$rtt_filter" file "$disk" rtt=200ms logfile="$1"
}
server "$tmp/log1"
"$pcachectl" drain "$cache" --timeout=60 \
    --to "nbd+unix:///?socket=$sock" >"$tmp/drain.out" 2>&1 &
drain_pid=$!
cleanup_fn kill "$drain_pid"

# Until the first write is answered.
for (( i = 0; i < 600; i++ )); do
    grep -q '\.\.\.Write id=' "$tmp/log1" && break
    sleep 0.1
done
grep -q '\.\.\.Write id=' "$tmp/log1"
kill9_nbdkit "$pidfile"
server "$tmp/log2"

status=0
wait "$drain_pid" || status=$?
cat "$tmp/drain.out"
test "$status" -eq 0
grep -q 'connected again' "$tmp/drain.out"
# The new server took writes and flushes.
grep -q '\.\.\.Write id=.* return=0' "$tmp/log2"
grep -q '\.\.\.Flush id=.* return=0' "$tmp/log2"

nbdsh -u "nbd+unix:///?socket=$sock" -c '
for n in range(80):
    assert h.pread(4096, n * 65536) == bytes([n + 1]) * 4096, n
'
kill_nbdkit "$pidfile"
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *0' "$tmp/out"
