#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The control socket is made before nbdkit forks:
#  A. A path that cannot be bound (a missing directory, too long) makes
#     nbdkit --run and a daemonizing nbdkit exit with status 1 at once,
#     naming pcache-control, instead of serving without it.
#  B. Its mode is 0600 by default and pcache-control-mode when given; a
#     bad mode is refused naming the parameter.
#  C. A second nbdkit given the socket of a running one fails to start,
#     with --run or daemonizing, and the first one's socket still
#     answers.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_pcachectl
requires timeout --version
requires stat --version
tmpdir

ctl=$tmp/ctl

# run_status WANT MSG ARGS...: nbdkit --run with the pcache filter and
# ARGS exits with status WANT within 60 s, its stderr naming MSG.
run_status ()
{
    local want=$1 msg=$2 r=0
    shift 2
    rm -f "$tmp/c"
    timeout 60 nbdkit -U - --filter="$PCACHE_FILTER" memory 64M \
        pcache-dev="$tmp/c" pcache-size=32M pcache-segment-size=1M \
        "$@" --run 'exit 0' 2>"$tmp/err" || r=$?
    cat "$tmp/err"
    if [ "$r" -ne "$want" ]; then
        echo "$0: nbdkit --run $* exited with $r, not $want" >&2
        exit 1
    fi
    grep -qF -- "$msg" "$tmp/err"
}

# daemon_fails MSG ARGS...: a daemonizing nbdkit exits non-zero.
daemon_fails ()
{
    local msg=$1 r=0
    shift
    rm -f "$tmp/c" "$tmp/pid2" "$tmp/sock2"
    timeout 60 nbdkit -P "$tmp/pid2" -U "$tmp/sock2" \
        --filter="$PCACHE_FILTER" memory 64M \
        pcache-dev="$tmp/c" pcache-size=32M pcache-segment-size=1M \
        "$@" 2>"$tmp/err" || r=$?
    cat "$tmp/err"
    if [ "$r" -eq 0 ]; then
        if [ -s "$tmp/pid2" ]; then kill "$(<"$tmp/pid2")" || :; fi
        echo "$0: daemonizing nbdkit $* started" >&2
        exit 1
    fi
    grep -qF -- "$msg" "$tmp/err"
}

# ---------------------------------------------------------------------
# A. Paths that cannot be bound.

run_status 1 "pcache-control: $tmp/none/ctl" pcache-control="$tmp/none/ctl"
grep -qF "No such file or directory" "$tmp/err"
daemon_fails "pcache-control: $tmp/none/ctl" pcache-control="$tmp/none/ctl"
long=$tmp/$(printf 'x%.0s' {1..120})
run_status 1 "pcache-control: $long: path too long" pcache-control="$long"
daemon_fails "path too long" pcache-control="$long"

# ---------------------------------------------------------------------
# B. The socket's mode, seen from the --run command.

mode_is ()
{
    # The command runs while the socket exists.
    rm -f "$tmp/c"
    nbdkit -U - --filter="$PCACHE_FILTER" memory 64M \
        pcache-dev="$tmp/c" pcache-size=32M pcache-segment-size=1M \
        pcache-control="$ctl" "${@:2}" \
        --run "stat -c %a '$ctl' >'$tmp/mode'"
    test "$(<"$tmp/mode")" = "$1"
}

# Whatever the umask would have given.
umask 000
mode_is 600
mode_is 660 pcache-control-mode=0660
mode_is 600 pcache-control-mode=600
umask 077
mode_is 666 pcache-control-mode=0666
umask 022

for bad in 999 0400 01777 abc -0660 ''; do
    run_status 1 "pcache-control-mode" pcache-control="$ctl" \
               pcache-control-mode="$bad"
done
run_status 1 "pcache-control-mode: given without pcache-control" \
           pcache-control-mode=0660

# ---------------------------------------------------------------------
# C. A second nbdkit on the socket of a running one.

rm -f "$tmp/sock1"
start_nbdkit -P "$tmp/pid1" -U "$tmp/sock1" --filter="$PCACHE_FILTER" \
             memory 64M pcache-dev="$tmp/c1" pcache-size=32M \
             pcache-segment-size=1M pcache-control="$ctl"
$pcachectl stats "$ctl" >/dev/null
run_status 1 "pcache-control: $ctl: another process listens on this socket" \
           pcache-control="$ctl"
daemon_fails "another process listens on this socket" pcache-control="$ctl"
# The first one's socket is still there and answers.
test -S "$ctl"
$pcachectl stats "$ctl" | grep -q '"segments_total"'
kill_nbdkit "$tmp/pid1"
test ! -e "$ctl"
