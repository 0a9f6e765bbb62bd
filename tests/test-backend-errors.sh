#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Backend write errors during writeback.
#
# The error filter sits below pcache, so clients never see its errors:
# only writeback does, and it must keep the data and retry.
#  1. Half of the backend writes fail while 64M go through a 24M cache
#     with pcache-drain=true: everything reads back, the failures are
#     reported ("writeback failed"), and after the draining exit the
#     backing file equals the source.  (Writeback retries a failed
#     write twice at once before it reports; at 50% that happens to
#     about one in eight writes, so with the ~100 writes of this test
#     a report is all but certain; at 20% it was not.)
#  2. Every backend write fails: writes and flushes to pcache still
#     succeed and read back, nothing reaches the backing file, a clean
#     shutdown does not hang, and the data survives in the cache: a
#     restart without the error filter drains it to the backing file.
#  3. Every backend trim fails: a trim is advisory, so write-back leaves
#     it out and the writes logged after it still go down; a draining
#     exit writes everything else back, with no error.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires qemu-img --version
requires qemu-io --version
requires nbdkit --filter=error null --version
tmpdir

pcache_args=(pcache-dev="$cache" pcache-size=24M pcache-segment-size=1M)

# start LOG [--errors RATE] [EXTRA-ARGS...]
start ()
{
    local log=$1 errfilter=() errargs=()
    shift
    if [ "$1" = "--errors" ]; then
        errfilter=(--filter=error)
        errargs=(error-pwrite=EIO error-pwrite-rate="$2")
        shift 2
    elif [ "$1" = "--trim-errors" ]; then
        errfilter=(--filter=error)
        errargs=(error-trim=EIO error-trim-rate=100%)
        shift
    fi
    rm -f "$sock"
    # A daemonized nbdkit sends errors to syslog unless told otherwise.
    start_nbdkit -P "$tmp/pid" -U "$sock" --log=stderr \
        --filter="$PCACHE_FILTER" "${errfilter[@]}" \
        file "$disk" "${errargs[@]}" "${pcache_args[@]}" "$@" 2>"$log"
}

# wait_for_log LOG STRING: bounded poll for STRING in LOG.
wait_for_log ()
{
    local i
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 300; i++ )); do
        if grep -q "$2" "$1"; then
            _pcache_xtrace_restore
            return 0
        fi
        sleep 0.1
    done
    _pcache_xtrace_restore
    echo "$0: '$2' did not appear in $1"
    return 1
}

# 1. Intermittent failures.
head -c 64M /dev/urandom > "$tmp/src"
truncate -s 64M "$disk"
start "$tmp/log1" --errors 50% pcache-drain=true
qemu-img convert -n -W -m 8 -f raw -O raw "$tmp/src" "$uri"
qemu-img compare -f raw -F raw "$tmp/src" "$uri"
kill_nbdkit "$tmp/pid"
grep "writeback failed" "$tmp/log1"
if grep "pcache-drain: could not write everything back" "$tmp/log1"; then
    echo "$0: the drain gave up"
    exit 1
fi
cmp "$tmp/src" "$disk"

# 2. The backend fails every write.
rm -f "$disk" "$cache"
truncate -s 64M "$disk"
head -c 8M /dev/urandom > "$tmp/src2"
start "$tmp/log2" --errors 100%
qemu-img convert -n -f raw -O raw "$tmp/src2" "$uri"
qemu-img compare -f raw -F raw "$tmp/src2" "$uri"
# Let writeback fail for a while, then shut down cleanly.
wait_for_log "$tmp/log2" "writeback failed"
qemu-img compare -f raw -F raw "$tmp/src2" "$uri"
kill_nbdkit "$tmp/pid"
# Nothing got through to the backing file...
cmp -n 64M "$disk" /dev/zero
# ...and the cache still has it all.
start "$tmp/log3" pcache-drain=true
qemu-img compare -f raw -F raw "$tmp/src2" "$uri"
kill_nbdkit "$tmp/pid"
cmp -n 8M "$tmp/src2" "$disk"
cmp -i 8M:8M -n 56M "$disk" /dev/zero

# 3. The backend fails every trim.
rm -f "$disk" "$cache"
head -c 8M /dev/urandom > "$disk"
cp "$disk" "$tmp/before"
head -c 1M /dev/urandom > "$tmp/src3"
start "$tmp/log4" --trim-errors pcache-drain=true
qemu-io -f raw "$uri" -c 'discard 0 1M' -c "write -s $tmp/src3 4M 1M" -c flush
kill_nbdkit "$tmp/pid"
grep 'injecting EIO error into trim' "$tmp/log4"
if grep -E 'writeback failed|could not write everything back' "$tmp/log4"; then
    echo "$0: a failed trim held up write-back"
    exit 1
fi
# The trimmed range may read back as anything; the write is down.
cmp -i 4M:0 -n 1M "$disk" "$tmp/src3"
cmp -i 1M:1M -n 3M "$disk" "$tmp/before"
