#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: flushed and FUA writes survive kill -9 of nbdkit.
#
# nbdkit runs as a daemon on a fixed socket (pcache-commit-ms left at
# its default).  Each cycle reads back everything that must be there,
# writes new data (some followed by a flush, some with FUA and no flush,
# some neither), then kills nbdkit with SIGKILL and restarts it on the
# same cache file, without pcache-size.
#
# Two backends:
# - file: the backend keeps whatever was written back;
# - memory: the backend loses everything at each restart, so whatever
#   reads back must come from the cache.  (The cache is large enough that
#   garbage collection never reclaims written-back data here.)
#
# Disk layout of each cycle's writes:
#   [0, 48M) and [56M, 64M)  flushed writes, then FUA writes with no flush
#   [48M, 56M)               writes neither flushed nor FUA before the
#                            crash: their content after the crash is not
#                            checked, but once read back (and flushed) it
#                            must stay.

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires_nbdsh
requires nbdkit file --version
requires nbdkit memory --version
requires flock --version

tmpdir
export tmp

truncate -s 64M "$tmp/disk"

cat > "$tmp/cycle.py" <<'EOF'
import os, random

tmp = os.environ["tmp"]
variant = os.environ["variant"]
cycle = int(os.environ["cycle"])
final = os.environ.get("final") == "1"
M = 1 << 20
size = 64 * M
UNK_LO, UNK_HI = 48 * M, 56 * M
exp_path = "%s/expected-%s" % (tmp, variant)

assert h.get_size() == size

def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))

def check_range(off, n, what):
    got = h.pread(n, off)
    want = bytes(expected[off:off + n])
    if got != want:
        i = first_diff(got, want)
        raise AssertionError(
            "%s cycle %d: %s: differs first at offset %d: got %r, expected %r"
            % (variant, cycle, what, off + i, bytes(got[i:i + 16]),
               want[i:i + 16]))

if cycle == 0:
    expected = bytearray(size)
else:
    with open(exp_path, "rb") as f:
        expected = bytearray(f.read())
    # Everything flushed or FUA before the crash reads back.
    chunk = 8 * M
    for off in range(0, UNK_LO, chunk):
        check_range(off, min(chunk, UNK_LO - off), "after restart")
    check_range(UNK_HI, size - UNK_HI, "after restart")
    # The region of unflushed writes: adopt what is there now; the flush
    # below makes it durable, so from now on it must not change.
    expected[UNK_LO:UNK_HI] = h.pread(UNK_HI - UNK_LO, UNK_LO)

if final:
    raise SystemExit(0)

rng = random.Random(1000 * cycle + (0 if variant == "file" else 500))

def rand_known_range(maxlen):
    n = rng.randint(1, maxlen)
    while True:
        off = rng.randint(0, size - n)
        if off + n <= UNK_LO or off >= UNK_HI:
            return off, n

def w(off, n, flags=0):
    buf = rng.randbytes(n)
    h.pwrite(buf, off, flags)
    return buf

# Flushed writes.
for i in range(40):
    off, n = rand_known_range(192 * 1024)
    expected[off:off + n] = w(off, n)
# One large, unaligned write spanning several 4 MiB stripes.
off = rng.randint(0, 20 * M)
expected[off:off + 5 * M + 3] = w(off, 5 * M + 3)
h.flush()

# FUA writes, no flush.  Some overwrite a range just written without
# FUA: after the crash the FUA data must win.
for i in range(30):
    off, n = rand_known_range(128 * 1024)
    if i % 3 == 0:
        w(off, n)
        w(off + n // 4, n // 2)
    expected[off:off + n] = w(off, n, nbd.CMD_FLAG_FUA)

# Neither flushed nor FUA.
for i in range(30):
    n = rng.randint(1, 128 * 1024)
    off = rng.randint(UNK_LO, UNK_HI - n)
    w(off, n)

# Everything written in this connection reads back before the crash.
check_range(0, UNK_LO, "before the crash")
check_range(UNK_HI, size - UNK_HI, "before the crash")

with open(exp_path, "wb") as f:
    f.write(expected)
EOF

# run_cycle VARIANT CYCLE: check and write through the running nbdkit.
run_cycle ()
{
    variant=$1 cycle=$2 final=${3:-0} \
        nbdsh -u "$uri" -c 'exec(open(os.environ["tmp"] + "/cycle.py").read())'
}

# crash PIDFILE CACHE: kill -9 nbdkit.  stop PIDFILE CACHE: SIGTERM.
crash () { kill9_nbdkit "$1"; wait_unlocked "$2"; }
stop () { kill_nbdkit "$1"; wait_unlocked "$2"; }

# start VARIANT [ARGS...]: start nbdkit in the background on $sock.
start ()
{
    local backend
    case $1 in
        file) backend=(file "$tmp/disk") ;;
        memory) backend=(memory 64M) ;;
    esac
    shift
    # nbdkit does not remove its socket when it exits or is killed.
    rm -f "$sock"
    start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
                 "${backend[@]}" pcache-dev="$tmp/cache-$variant" "$@"
}

# check_prefaulted CACHE: the serving process, which nbdkit forked into
# after the cache was opened, has every page of the cache mapped (a fork
# copies no page table entries of a shared mapping), so log appends take
# no page faults.  The first cycle alone touches well under half of it.
check_prefaulted ()
{
    local rss size
    rss=$(awk -v f="$1" '$NF == f { m = 1; next } m && /^Rss:/ { print $2; exit }' \
              "/proc/$(<"$pidfile")/smaps")
    size=$(( $(stat -c %s "$1") / 1024 ))
    if [ "$rss" != "$size" ]; then
        echo "$0: $1: $rss KiB of $size KiB mapped in the serving process" >&2
        exit 1
    fi
}

# check_background: the serving process's writeback and timer threads
# run as SCHED_BATCH (policy 3 in /proc/PID/task/TID/sched), so that
# their wake-ups do not preempt the threads that serve clients.
check_background ()
{
    local pid=$(<"$pidfile") t comm policy n=0
    for t in /proc/$pid/task/*; do
        # A thread may end between the listing and the reading (a
        # client's, or a write-back helper the pool let go).
        comm=$(cat "$t/comm" 2>/dev/null) || continue
        case $comm in pcache-*) ;; *) continue ;; esac
        policy=$(awk '$1 == "policy" { print $3 }' "$t/sched" 2>/dev/null) ||
            continue
        if [ "$policy" != 3 ]; then
            echo "$0: thread $comm has scheduling policy $policy, not SCHED_BATCH" >&2
            exit 1
        fi
        n=$((n + 1))
    done
    if [ $n -lt 3 ]; then
        echo "$0: only $n pcache threads in the serving process" >&2
        exit 1
    fi
}

for variant in file memory; do
    start $variant pcache-size=256M pcache-segment-size=1M
    run_cycle $variant 0
    check_prefaulted "$tmp/cache-$variant"
    check_background

    for cycle in 1 2 3; do
        crash "$pidfile" "$tmp/cache-$variant"
        start $variant
        run_cycle $variant $cycle
    done

    # A last crash, then check only.
    crash "$pidfile" "$tmp/cache-$variant"
    start $variant
    run_cycle $variant 4 1

    # A clean shutdown keeps everything too.
    stop "$pidfile" "$tmp/cache-$variant"
    start $variant
    run_cycle $variant 5 1
    kill_nbdkit "$pidfile"
done
