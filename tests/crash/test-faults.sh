#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Faults around pcache in nbdkit (run by make check-crash):
#  1. backend faults below pcache (error and delay filters):
#     a. read errors: cached data always reads; a miss may fail but
#        never returns wrong data, and a failed fill caches nothing;
#     b. write, zero and trim errors during writeback of more data than
#        the cache holds: clients never see them, everything reads back,
#        and a draining shutdown leaves exactly the data on the backing
#        file;
#     c. a slow backend under a cache too small for the data: writes wait
#        for writeback (no deadlock) and read back;
#  2. clients killed with SIGKILL in the middle of large asynchronous
#     writes: the server goes on, every 4 KiB block holds some version
#     written to it, and after a flush and a crash (SIGKILL of nbdkit)
#     exactly what was read before;
#  3. 32 connections at once writing, zeroing, trimming, reading back
#     and flushing their own blocks; all of it survives a crash;
#  4. a backend that dies in the middle of write-back (every write
#     fails from then on), then a crash: a healthy restart drains
#     every acknowledged block to the backing file.
# Blocks are versioned (tests/crash/faults.py), so garbage, another
# block's data or a torn 4 KiB block is always caught.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires python3 -c 'import nbd'
requires nbdkit --filter=error null --version
requires nbdkit --filter=delay null --version
requires timeout --version
tmpdir

F=(python3 "${top_srcdir:-.}/tests/crash/faults.py")

# start LOG ARGS...: pcache (filter args first) over the file plugin.
start ()
{
    local log=$1
    shift
    rm -f "$sock"
    start_nbdkit -P "$tmp/pid" -U "$sock" --log=stderr \
        --filter="$PCACHE_FILTER" "$@" 2>>"$log"
}

fresh ()
{
    rm -f "$disk" "$cache"
    "${F[@]}" init "$disk" "$1"
}

# --------------------------------------------------------------------
# 1a. Read errors below pcache.  The cache holds all 16 MiB below the
# GC threshold: once written back (whenever the client pauses), the
# filled blocks are clean, and GC would be free to reclaim them.
fresh 4096                                      # 16 MiB
start "$tmp/log1a" --filter=error file "$disk" \
    error-pread=EIO error-pread-rate=30% \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M
"${F[@]}" fill "$uri" 0 512 1 --flush
"${F[@]}" check "$uri" 0 512 1                  # hits: no backend reads
for i in 1 2 3; do
    "${F[@]}" check "$uri" 512 4096 0 --errors-ok | tee "$tmp/out1a.$i"
done
# Whatever was filled must now read without errors or damage, and a
# last pass (the rate is per request) must still never return garbage.
"${F[@]}" check "$uri" 0 512 1
grep -q ', [1-9][0-9]* read errors' "$tmp/out1a.1" ||
    echo "note: no read error was injected in the first pass"
kill_nbdkit "$tmp/pid"

# --------------------------------------------------------------------
# 1b. Write, zero and trim errors below pcache, 48 MiB through 16 MiB.
fresh 16384                                     # 64 MiB
start "$tmp/log1b" --filter=error file "$disk" \
    error-pwrite=EIO error-pwrite-rate=50% \
    error-zero=EIO error-zero-rate=50% error-trim=EIO error-trim-rate=50% \
    pcache-dev="$cache" pcache-size=16M pcache-segment-size=1M \
    pcache-gc-percent=20 pcache-commit-ms=50 pcache-drain=true
timeout 300 "${F[@]}" fill "$uri" 0 12288 2 --flush
nbdsh -u "$uri" -c '
h.zero(8 << 20, 16 << 20)                # blocks 4096..6143
h.trim(1 << 20, 40 << 20)                # blocks 10240..10495
h.flush()
'
# The trimmed blocks read as zeroes or as what was there; through the
# cache now, and from the backing file alone once it is drained.
check_1b () {
    "${F[@]}" check "$uri" 0 4096 2
    "${F[@]}" check "$uri" 4096 6144 z
    "${F[@]}" check "$uri" 6144 10240 2
    "${F[@]}" check "$uri" 10240 10496 2,z
    "${F[@]}" check "$uri" 10496 12288 2
    "${F[@]}" check "$uri" 12288 16384 0
}
check_1b
kill_nbdkit "$tmp/pid"
grep "writeback failed" "$tmp/log1b"
if grep "could not write everything back" "$tmp/log1b"; then
    echo "$0: the drain gave up"
    exit 1
fi
# The backing file alone.
rm -f "$sock"
start_nbdkit -P "$tmp/pid" -U "$sock" file "$disk" --readonly
check_1b
kill_nbdkit "$tmp/pid"

# --------------------------------------------------------------------
# 1c. A slow backend and a cache much smaller than the data.
fresh 16384
start "$tmp/log1c" --filter=delay file "$disk" wdelay=5ms rdelay=2ms \
    pcache-dev="$cache" pcache-size=12M pcache-segment-size=1M \
    pcache-commit-ms=20
timeout 300 "${F[@]}" fill "$uri" 0 16384 3
timeout 300 "${F[@]}" fill "$uri" 4096 8192 4 --flush
"${F[@]}" check "$uri" 0 4096 3
"${F[@]}" check "$uri" 4096 8192 4
"${F[@]}" check "$uri" 8192 16384 3
kill_nbdkit "$tmp/pid"

# --------------------------------------------------------------------
# 2. Clients killed in the middle of large writes.
fresh 16384
start "$tmp/log2" --filter=delay file "$disk" wdelay=2ms \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M
for round in 1 2 3 4 5; do
    "${F[@]}" writer "$uri" 0 16384 "$round" &
    w=$!
    sleep "0.$(( 3 + RANDOM % 7 ))"
    kill -KILL "$w"
    wait "$w" || true
    # The server goes on; every block holds one version of itself.
    "${F[@]}" check "$uri" 0 16384 any
done
# Let requests of the dead clients finish, then pin the state down.
sleep 2
"${F[@]}" snap "$uri" 0 16384 "$tmp/snap2"
# The killed writers must have got some writes through.
awk '$2 != 0 { n++ } END { print n " blocks rewritten"; exit !n }' "$tmp/snap2"
nbdsh -u "$uri" -c 'h.flush()'
"${F[@]}" check "$uri" 0 16384 any --state "$tmp/snap2"
kill9_nbdkit "$tmp/pid"
wait_unlocked "$cache"
start "$tmp/log2" file "$disk" \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M
"${F[@]}" check "$uri" 0 16384 any --state "$tmp/snap2"
kill_nbdkit "$tmp/pid"

# --------------------------------------------------------------------
# 3. 32 connections at once.
fresh 8192                                      # 32 MiB
start "$tmp/log3" --threads=64 file "$disk" \
    pcache-dev="$cache" pcache-size=24M pcache-segment-size=1M \
    pcache-commit-ms=20
nclients=32
per=$(( 8192 / nclients ))
pids=()
for (( i = 0; i < nclients; i++ )); do
    timeout 300 "${F[@]}" client "$uri" $i $(( i * per )) \
        $(( (i + 1) * per )) $(( 17 + i )) "$tmp/state3.$i" &
    pids+=($!)
done
for p in "${pids[@]}"; do
    wait "$p"
done
check_clients ()
{
    local i
    for (( i = 0; i < nclients; i++ )); do
        "${F[@]}" check "$uri" $(( i * per )) $(( (i + 1) * per )) 0 \
            --state "$tmp/state3.$i"
    done
}
check_clients
kill9_nbdkit "$tmp/pid"
wait_unlocked "$cache"
start "$tmp/log3" file "$disk" \
    pcache-dev="$cache" pcache-size=24M pcache-segment-size=1M
check_clients
kill_nbdkit "$tmp/pid"
# --------------------------------------------------------------------
# 4. The backend dies during write-back, then nbdkit crashes.  The
# dirty data fits the cache: only write-back sees the backend fail.
fresh 8192
rm -f "$tmp/dead"
start "$tmp/log4" --filter=error file "$disk" \
    error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file="$tmp/dead" \
    pcache-dev="$cache" pcache-size=64M pcache-segment-size=1M \
    pcache-writeback-percent=0 pcache-commit-ms=20
"${F[@]}" fill "$uri" 0 2048 5 --flush
touch "$tmp/dead"
"${F[@]}" fill "$uri" 1024 4096 6 --flush
check_4 () {
    "${F[@]}" check "$uri" 0 1024 5
    "${F[@]}" check "$uri" 1024 4096 6
    "${F[@]}" check "$uri" 4096 8192 0
}
check_4
kill9_nbdkit "$tmp/pid"
wait_unlocked "$cache"
rm "$tmp/dead"
start "$tmp/log4" file "$disk" pcache-dev="$cache" pcache-drain=true
kill_nbdkit "$tmp/pid"
rm -f "$sock"
start_nbdkit -P "$tmp/pid" -U "$sock" file "$disk" --readonly
check_4
kill_nbdkit "$tmp/pid"

echo "$0: all fault tests passed"
