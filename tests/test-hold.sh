#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Durable points: checkpoint returns once everything written before it
# is in the backing file; hold keeps the backing file still (an epoch
# boundary image, for a snapshot) while the client goes on writing,
# though write-back would otherwise run at once; drains and checkpoints
# are refused while held; release lets it catch up; and a hold ends by
# itself after pcache-hold-timeout.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
tmpdir

truncate -s 16M "$disk"
ctl="$tmp/ctl"
# writeback-percent=0 and max-age=1: without the hold, write-back would
# run as soon as anything is committed, and at the latest after 1 s.
start_nbdkit -P "$pidfile" -U "$sock" \
    --filter="$PCACHE_FILTER" file "$disk" \
    pcache-dev="$cache" pcache-size=64M pcache-segment-size=1M \
    pcache-writeback-percent=0 pcache-writeback-max-age=1 \
    pcache-hold-timeout=3 pcache-control="$ctl" pcache-drain=true
wait_for_socket "$ctl"

# stat_field NAME: one field of the stats, as JSON (true, false, 12).
stat_field ()
{
    $pcachectl stats "$ctl" |
        python3 -c "import json, sys; print(json.dumps(json.load(sys.stdin)['$1']))"
}
# wait_for FIELD VALUE: poll the stats until FIELD is VALUE (30 s at most).
wait_for ()
{
    local deadline=$((SECONDS + 30))
    until [ "$(stat_field "$1")" = "$2" ]; do
        [ $SECONDS -lt $deadline ] || { $pcachectl stats "$ctl"; return 1; }
        sleep 0.1
    done
}
stat_field client_epoch
stat_field backing_epoch

# write BYTE OFFSET LEN [flush]
write () { nbdsh -u "$uri" -c "h.pwrite(bytes([$1]) * $3, $2)${4:+; h.flush()}"; }
on_disk () { python3 -c "
import sys
with open('$disk', 'rb') as f:
    f.seek($2); sys.exit(f.read($3) != bytes([$1]) * $3)"; }

# Checkpoint: the data is in the file when it returns, at the epoch
# the stats then report.
write 0x11 0 1048576 flush
client=$(stat_field client_epoch)
$pcachectl checkpoint "$ctl" > "$tmp/out"
cat "$tmp/out"
epoch=$(sed -n 's/^ok //p' "$tmp/out")
[ "$epoch" -ge "$client" ]
[ "$(stat_field backing_epoch)" -ge "$epoch" ]
on_disk 0x11 0 1048576

# Hold: write-back stops at the nearest epoch boundary, at or after
# the last checkpoint, and names the epoch the backend holds.
$pcachectl hold "$ctl" > "$tmp/out"
cat "$tmp/out"
held=$(sed -n 's/^ok //p' "$tmp/out")
[ "$held" -ge "$epoch" ]
[ "$(stat_field backing_epoch)" = "$held" ]
[ "$(stat_field writeback_held)" = true ]
md5=$(md5sum < "$disk")

# Held: flushed writes stay in the cache although they are older than
# max-age would allow, so the backing file does not change.
write 0x33 2097152 1048576 flush
write 0x44 0 4096 flush
deadline=$((SECONDS + 30))
until [ "$(stat_field dirty_age_ms)" -ge 1500 ]; do
    [ $SECONDS -lt $deadline ] || exit 1
    sleep 0.1
done
[ "$(md5sum < "$disk")" = "$md5" ]
expect_status 1 $pcachectl checkpoint "$ctl"
grep 'held' "$tmp/out"
expect_status 1 $pcachectl drain "$ctl"
grep 'held' "$tmp/out"
[ "$(md5sum < "$disk")" = "$md5" ]
# Still readable through the cache.
nbdsh -u "$uri" -c 'assert h.pread(4096, 0) == b"\x44" * 4096'

# Release: write-back catches up.
$pcachectl release "$ctl"
[ "$(stat_field writeback_held)" = false ]
$pcachectl checkpoint "$ctl"
on_disk 0x33 2097152 1048576
on_disk 0x44 0 4096

# A hold nobody releases ends after pcache-hold-timeout (3 s).
$pcachectl hold "$ctl"
write 0x55 4194304 65536 flush
wait_for writeback_held false
$pcachectl checkpoint "$ctl"
on_disk 0x55 4194304 65536

# Held at exit, pcache-drain=true still writes everything back.
$pcachectl hold "$ctl"
write 0x66 0 65536 flush
kill_nbdkit "$pidfile"
on_disk 0x66 0 65536

# Hold needs write-back mode.
start_nbdkit -P "$pidfile" -U "$sock" \
    --filter="$PCACHE_FILTER" file "$disk" \
    pcache-dev="$cache" pcache-mode=writethrough pcache-control="$ctl"
wait_for_socket "$ctl"
expect_status 1 $pcachectl hold "$ctl"
grep 'needs write-back mode' "$tmp/out"
