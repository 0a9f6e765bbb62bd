#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache-writeback-max-age bounds how stale the backing store gets: a
# trickle of small writes with a flush every 10, far below
# pcache-writeback-percent, still reaches the backing file itself (read
# directly, not through pcache) within the bound plus slack.  Without
# the bound nothing of it would be written back while the client keeps
# writing.  The stats report the age of the oldest dirty data.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
tmpdir

max_age=2
slack=4
truncate -s 64M "$disk"
ctl="$tmp/ctl"
start_nbdkit -P "$pidfile" -U "$sock" \
    --filter="$PCACHE_FILTER" file "$disk" \
    pcache-dev="$cache" pcache-size=256M pcache-segment-size=1M \
    pcache-writeback-max-age=$max_age pcache-control="$ctl"
wait_for_socket "$ctl"

$pcachectl stats "$ctl" > "$tmp/stats"
grep '"writeback_max_age":2,' "$tmp/stats"

# Write 4K blocks every 50 ms, flushing every 10, for 10 s.  After each
# flush, every write flushed more than max-age + slack ago must be in
# the backing file.  The client never pauses long enough for idle
# write-back (200 ms), and its dirty data stays far under 10% of the
# cache, so only the age bound can write it back.
nbdsh -u "$uri" -c '
import json, os, socket, time
disk = "'"$disk"'"
max_age, slack = '$max_age', '$slack'
flushed = []                            # (time, number of blocks)
n = 0
checked = 0
ages = []
start = time.monotonic()
fd = os.open(disk, os.O_RDONLY)
while time.monotonic() - start < 10:
    h.pwrite(bytes([1 + n % 250]) * 4096, n * 4096)
    n += 1
    if n % 10 == 0:
        h.flush()
        now = time.monotonic()
        flushed.append((now, n))
        old = [b for (t, b) in flushed if now - t > max_age + slack]
        for i in range(checked, old[-1] if old else 0):
            assert os.pread(fd, 4096, i * 4096) == bytes([1 + i % 250]) * 4096, \
                "block %d flushed over %d s ago is not on the backend" % (i, max_age + slack)
            checked = i + 1
    time.sleep(0.05)
print("wrote", n, "blocks; checked", checked, "on the backing file")
assert checked >= 10 * 5, checked
'

# Once written back, no dirty data has an age.
deadline=$((SECONDS + 30))
while :; do
    $pcachectl stats "$ctl" > "$tmp/stats"
    grep -q '"dirty_bytes":0,' "$tmp/stats" && break
    [ $SECONDS -lt $deadline ] || { cat "$tmp/stats"; exit 1; }
    sleep 0.2
done
grep '"dirty_age_ms":0,' "$tmp/stats"
