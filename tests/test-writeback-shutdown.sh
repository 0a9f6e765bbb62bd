#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Stopping nbdkit while write-back waits in a filter that sleeps.
#
# The delay filter below pcache ends its sleeps early once nbdkit is
# shutting down, failing the request with ESHUTDOWN.  That is an
# interruption, not a failing backend:
#  1. SIGTERM while a write-back write sleeps in the delay filter (the
#     log filter shows it started and not ended): nbdkit exits, no
#     "writeback failed" error is logged, and the statistics written at
#     exit count the interrupted request in writeback_aborts, not in
#     writeback_errors.
#  2. The data was not lost: a restart without the delay filter writes
#     it back, and the backing file then holds what the client wrote.
#  3. pcache-drain=true through the same filter gives up at the first
#     interrupted request, with an error saying why, not after the
#     drain's 30 s grace; again a restart writes the data back.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires qemu-io --version
requires nbdkit --filter=delay null --version
requires nbdkit --filter=log null --version
tmpdir

stats=$tmp/stats.json
wlog=$tmp/requests.log
truncate -s 64M "$disk"
head -c 1M /dev/urandom > "$tmp/data"

pcache_args=(pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M
             pcache-stats="$stats" pcache-writeback-percent=0)

# 1. Write-back's requests sleep 60 s each in the delay filter.
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" --filter=log --filter=delay \
    file "$disk" logfile="$wlog" delay-write=60 \
    "${pcache_args[@]}" 2>"$tmp/run1.log"
qemu-io -f raw "$uri" -c "write -s $tmp/data 0 1M" -c flush

# A write-back write has started below pcache and has not ended.
{ _pcache_xtrace_off; } 2>/dev/null
for (( i = 0; i < 600; i++ )); do
    grep -q 'Write id=' "$wlog" 2>/dev/null && break
    sleep 0.1
done
_pcache_xtrace_restore
grep 'Write id=' "$wlog"
! grep -q 'Write.*return' "$wlog"

kill_nbdkit "$pidfile"
cat "$tmp/run1.log"
! grep -q 'writeback.*failed' "$tmp/run1.log"
python3 - "$stats" <<'EOF'
import json, sys
st = json.load (open (sys.argv[1]))
assert st["writeback_aborts"] >= 1, st
assert st["writeback_errors"] == 0, st
assert st["dirty_bytes"] == 1 << 20, st
EOF
# Nothing reached the backing file.
cmp -n 1M "$disk" /dev/zero

# 2. A restart without the delay filter writes it back.
wait_unlocked "$cache"
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" file "$disk" \
    "${pcache_args[@]}" pcache-drain=true 2>"$tmp/run2.log"
qemu-io -f raw "$uri" -r -c "read -v 0 512" > /dev/null
kill_nbdkit "$pidfile"
cat "$tmp/run2.log"
! grep -q 'writeback.*failed' "$tmp/run2.log"
cmp -n 1M "$disk" "$tmp/data"

# 3. pcache-drain=true through the delay filter: the drain's requests
#    end at once (nbdkit is shutting down), so it gives up at the first,
#    saying why, not after its 30 s grace; the data stays in the cache
#    and a restart without the filter drains it.
dd if=/dev/zero of="$disk" bs=1M count=1 conv=notrunc
head -c 1M /dev/urandom > "$tmp/data"
wait_unlocked "$cache"
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" --filter=delay \
    file "$disk" delay-write=60 \
    "${pcache_args[@]}" pcache-drain=true 2>"$tmp/run3.log"
qemu-io -f raw "$uri" -c "write -s $tmp/data 0 1M" -c flush
kill_nbdkit "$pidfile"
cat "$tmp/run3.log"
grep 'pcache-drain: could not write everything back.*drain through pcache-control' \
    "$tmp/run3.log"
grep 'server is shutting down' "$tmp/run3.log"
! grep -q 'gave up' "$tmp/run3.log"
cmp -n 1M "$disk" /dev/zero

wait_unlocked "$cache"
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" file "$disk" \
    "${pcache_args[@]}" pcache-drain=true 2>"$tmp/run4.log"
kill_nbdkit "$pidfile"
cat "$tmp/run4.log"
cmp -n 1M "$disk" "$tmp/data"
