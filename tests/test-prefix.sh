#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Crash consistency of ordered writeback.
#
# A writer (prefix.py) runs flush epochs of concurrent 4 KiB writes on
# four connections.  The backend is slowed down (delay filter below
# pcache) so that writeback lags behind, and nbdkit is killed with
# SIGKILL at a random moment, usually in the middle of writing back an
# epoch.  Whatever is in the cache then, the backing file alone must
# hold the state after some prefix of the epochs plus part of the next
# one (prefix.py check).
#
# Two exports (file dir=, one namespace each) run a writer each, with
# their own epochs: after the crash each backing file alone must be a
# prefix of its own writer's epochs, whatever the other's write-back did.
#
# With write-back groups (pcache-writeback-group=4, then auto), the
# backing file may instead be a prefix of epochs plus part of one
# group's final data (prefix.py check --group); the checker's own
# selftest first shows that it tells those apart from data of the middle
# of a group.
#
# The last trial also restarts on the same cache: after each crash the
# export (replayed from the cache) must hold every flushed epoch
# (check --durable), the writer carries on from the epoch after the
# last one it recorded, and in the end a draining shutdown must leave
# every flushed epoch on the backing file.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_nbdsh
requires python3 -c 'import nbd'
requires nbdkit --filter=delay null --version
requires nbdcopy --version
tmpdir

prefix="${top_srcdir:-.}/tests/prefix.py"
nblocks=4096                    # 16 MiB of 4 KiB blocks
state="$tmp/state"
pcache_args=(pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M
             pcache-commit-ms=50 pcache-gc-percent=10)

writer=
stop_writer ()
{
    if [ -n "$writer" ] && kill -0 "$writer" 2>/dev/null; then
        kill "$writer"
        wait "$writer" || true
    fi
    writer=
}
cleanup_fn stop_writer

# start_server: pcache over a slow file backend.
start_server ()
{
    rm -f "$sock"
    start_nbdkit -P "$tmp/pid" -U "$sock" \
        --filter="$PCACHE_FILTER" --filter=delay \
        file "$disk" wdelay=1ms "${pcache_args[@]}" ${extra_args[@]+"${extra_args[@]}"}
}
extra_args=()

epochs ()
{
    if [ -f "$state" ]; then wc -l < "$state"; else echo 0; fi
}

# start_writer SEED: the writer resumes after the last recorded epoch.
start_writer ()
{
    python3 "$prefix" write "$uri" "$1" $nblocks 4 "$state" &
    writer=$!
}

# crash_after N: wait until the writer has recorded N epochs, then a
# random 0.2-1.5 s more, then SIGKILL nbdkit.  The writer must still be
# running until then, and it must fail only because the server went
# away (prefix.py exits 2 when a request fails).
crash_after ()
{
    local i ms rc=0
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 300; i++ )); do
        [ "$(epochs)" -ge "$1" ] && break
        kill -0 "$writer" 2>/dev/null || break
        sleep 0.1
    done
    _pcache_xtrace_restore
    if [ "$(epochs)" -lt "$1" ]; then
        echo "$0: the writer did not get to epoch $1"
        exit 1
    fi
    ms=$(( 200 + RANDOM % 1301 ))
    sleep "$(printf '%d.%03d' $(( ms / 1000 )) $(( ms % 1000 )))"
    kill -0 "$writer"
    kill9_nbdkit "$tmp/pid"
    # The writer notices that the server is gone (bounded wait).
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 300; i++ )); do
        kill -0 "$writer" 2>/dev/null || break
        sleep 0.1
    done
    _pcache_xtrace_restore
    if kill -0 "$writer" 2>/dev/null; then
        echo "$0: the writer is still running 30 s after the crash"
        exit 1
    fi
    wait "$writer" || rc=$?
    writer=
    if [ "$rc" -ne 2 ]; then
        echo "$0: writer exited with status $rc"
        exit 1
    fi
}

# check [--durable] IMAGE: run the checker, keep its summary line.  With
# $group set, the group rule.
nprefix=0 npartial=0 ngroup=0 group=
check ()
{
    local out durable=
    if [ "$1" = "--durable" ]; then durable=--durable; shift; fi
    out=$(python3 "$prefix" check "$1" "$seed" $nblocks "$state" \
              $durable ${group:+--group $group}) || {
        echo "$out"
        echo "$0: prefix check of $1 failed (seed $seed)"
        exit 1
    }
    echo "$out"
    if [ -z "$durable" ]; then
        # P=p present=n total=t ...: count interesting crashes.
        set -- $out
        p=${2#P=} present=${3#present=} total=${4#total=}
        if [ "$p" -gt 1 ]; then nprefix=$((nprefix + 1)); fi
        if [ "$p" -gt 1 ] && [ "$present" -lt "$total" ]; then
            npartial=$((npartial + 1))
        fi
        case $out in *group=*) ngroup=$((ngroup + 1)) ;; esac
    fi
}

fresh ()
{
    rm -f "$disk" "$cache" "$state"
    truncate -s $(( nblocks * 4096 )) "$disk"
}

# Plain trials: crash, throw the cache away, check the backing file.
for trial in 1 2 3 4 5 6; do
    seed="t$trial-$RANDOM$RANDOM"
    fresh
    start_server
    start_writer "$seed"
    crash_after 2
    rm -f "$cache"
    check "$disk"
done

# Write-back groups.  The delay filter makes write-back lag, so that
# ended epochs pile up and go down as groups.
python3 "$prefix" selftest "$tmp"
for trial in 1 2 3 4; do
    seed="g$trial-$RANDOM$RANDOM"
    if [ "$trial" -le 2 ]; then
        extra_args=(pcache-writeback-group=4) group=4
    else
        extra_args=(pcache-writeback-group=auto) group=4096
    fi
    fresh
    start_server
    start_writer "$seed"
    crash_after 4
    rm -f "$cache"
    check "$disk"
done
extra_args=() group=
echo "crashes inside a write-back group: $ngroup"

# Two exports, a writer each; each backing file is checked against its
# own writer's schedule.
xdir=$tmp/exports
mkdir -p "$xdir"
for trial in 1 2 3; do
    rm -f "$cache" "$sock" "$tmp"/state-* "$xdir"/*
    truncate -s $(( nblocks * 4096 )) "$xdir/one" "$xdir/two"
    start_nbdkit -P "$tmp/pid" -U "$sock" \
        --filter="$PCACHE_FILTER" --filter=delay \
        file dir="$xdir" wdelay=1ms "${pcache_args[@]}"
    pids=()
    for x in one two; do
        python3 "$prefix" write "nbd+unix:///$x?socket=$sock" "x$trial-$x" \
            $nblocks 2 "$tmp/state-$x" &
        pids+=($!)
    done
    # Both writers flushed an epoch or two; then a crash mid-epoch.
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 300; i++ )); do
        n1=$(cat "$tmp/state-one" 2>/dev/null | wc -l)
        n2=$(cat "$tmp/state-two" 2>/dev/null | wc -l)
        [ "$n1" -ge 2 ] && [ "$n2" -ge 2 ] && break
        sleep 0.1
    done
    _pcache_xtrace_restore
    test "$n1" -ge 2 && test "$n2" -ge 2
    sleep "0.$(( 2 + RANDOM % 8 ))"
    kill9_nbdkit "$tmp/pid"
    for p in "${pids[@]}"; do
        rc=0
        wait "$p" || rc=$?
        test "$rc" -eq 2
    done
    rm -f "$cache"
    for x in one two; do
        python3 "$prefix" check "$xdir/$x" "x$trial-$x" $nblocks \
            "$tmp/state-$x"
    done
done

# Restart trial.  Restarting does not break the checker's schedule:
# writeback after replay goes on in log order from dirty_tail, and the
# resumed writer first rewrites (identically) the epoch that may have
# been cut short, so at any time the backing file is still epochs 1..k
# complete plus part of epoch k+1 of the same schedule.
seed="restart-$RANDOM$RANDOM"
fresh
start_server
start_writer "$seed"
crash_after 2
check "$disk"

start_server
nbdcopy "$uri" "$tmp/view"
check --durable "$tmp/view"
start_writer "$seed"
crash_after $(( $(epochs) + 2 ))
check "$disk"

# Without the delay filter, so that the draining shutdown is quick.
rm -f "$sock"
start_nbdkit -P "$tmp/pid" -U "$sock" \
    --filter="$PCACHE_FILTER" file "$disk" "${pcache_args[@]}" \
    pcache-drain=true
nbdcopy "$uri" "$tmp/view"
check --durable "$tmp/view"
kill_nbdkit "$tmp/pid"
check --durable "$disk"

# The test is only worth something if some crashes hit the backing file
# after the first epoch, in the middle of an epoch.
echo "crashes with P > 1: $nprefix, with a partial epoch P: $npartial"
if [ "$nprefix" -eq 0 ] || [ "$npartial" -eq 0 ]; then
    echo "$0: no crash left part of an epoch > 1 on the backing file"
    exit 1
fi
