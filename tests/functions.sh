# SPDX-License-Identifier: BSD-3-Clause
# pcache integration test helpers (bash).  -*- shell-script -*-
#
# Usage at the top of a test:
#
#   set -e -x
#   source "${top_srcdir:-.}/tests/functions.sh"
#   requires_filter_built
#   requires_nbdsh
#   tmpdir                      # sets $tmp, removed on exit
#   start_nbdkit -P "$tmp/pid" -U "$tmp/sock" \
#       --filter="$PCACHE_FILTER" memory 64M \
#       pcache-dev="$tmp/cache" pcache-size=256M
#   nbdsh -u "nbd+unix://?socket=$tmp/sock" -c '...'
#
# A test that exits 77 is reported as skipped.  Tests must not set their
# own EXIT trap: register cleanups with cleanup_fn instead.

# ---------------------------------------------------------------------
# Cleanup hooks, run in reverse order of registration on exit.

_pcache_cleanup_hooks=()

# cleanup_fn CMD [ARGS...]
#
# Register a command to run when the test exits (normally, on error or
# on INT/TERM).  Hooks run last-registered first.
cleanup_fn ()
{
    local q
    printf -v q '%q ' "$@"
    _pcache_cleanup_hooks+=("$q")
}

_pcache_run_cleanup ()
{
    local status=$? i
    # Cleanup must not be cut short by set -e.
    set +e
    trap - EXIT INT QUIT TERM
    for (( i = ${#_pcache_cleanup_hooks[@]} - 1; i >= 0; i-- )); do
        eval "${_pcache_cleanup_hooks[i]}"
    done
    _pcache_cleanup_hooks=()
    # A hook that detected a failure (e.g. nbdkit did not exit) sets
    # _pcache_cleanup_failed, which turns a passing test into a failure.
    if [ "$status" -eq 0 ] && [ -n "${_pcache_cleanup_failed:-}" ]; then
        status=1
    fi
    exit "$status"
}

trap '_pcache_run_cleanup' EXIT
trap 'exit 130' INT
trap 'exit 131' QUIT
trap 'exit 143' TERM

# ---------------------------------------------------------------------
# Skipping.

# requires CMD [ARGS...]
#
# Run the command (output discarded); skip the test if it fails.
requires ()
{
    ( "$@" ) </dev/null >/dev/null 2>&1 || {
        echo "$0: test skipped because this command failed: $*"
        exit 77
    }
}

# requires_not CMD [ARGS...]
#
# Skip the test if the command succeeds.
requires_not ()
{
    if ( "$@" ) </dev/null >/dev/null 2>&1; then
        echo "$0: test skipped because this command succeeded: $*"
        exit 77
    fi
}

# requires_root
requires_root ()
{
    if [ "$(id -u)" -ne 0 ]; then
        echo "$0: test skipped because it must run as root"
        exit 77
    fi
}

# requires_filter_built
#
# The filter must have been built: $PCACHE_FILTER is set by the
# Makefile (make check).  A missing filter is a failure, not a skip.
requires_filter_built ()
{
    if [ -z "${PCACHE_FILTER:-}" ]; then
        echo "$0: PCACHE_FILTER is not set (run the tests with make check)"
        exit 1
    fi
    if [ ! -f "$PCACHE_FILTER" ]; then
        echo "$0: filter not built: $PCACHE_FILTER"
        exit 1
    fi
}

# requires_nbdsh
#
# nbdsh must work with the nbd Python module (see PATH in Makefile.am).
requires_nbdsh ()
{
    requires nbdsh -c 'import nbd; exit(0)'
}

# requires_pcachectl
#
# The admin tool must have been built: sets $pcachectl from $PCACHECTL,
# which the Makefile sets (make check).
requires_pcachectl ()
{
    if [ -z "${PCACHECTL:-}" ] || [ ! -x "$PCACHECTL" ]; then
        echo "$0: PCACHECTL is not set to the built pcachectl (run the tests with make check)"
        exit 1
    fi
    pcachectl=$PCACHECTL
}

# requires_drain_backend file|nbd
#
# pcachectl drain --to a file needs liburing, --to an NBD URI libnbd,
# either of which configure may have left out (--without-liburing,
# --without-libnbd): skip the test then.  The Makefile says which.
requires_drain_backend ()
{
    local have lib
    case "$1" in
        file) have=${PCACHE_HAVE_LIBURING:-yes}; lib=liburing ;;
        nbd) have=${PCACHE_HAVE_LIBNBD:-yes}; lib=libnbd ;;
        *) echo "$0: requires_drain_backend: file or nbd, not '$1'" >&2
           exit 1 ;;
    esac
    if [ "$have" != yes ]; then
        echo "$0: test skipped: pcachectl was built without $lib"
        exit 77
    fi
}

# requires_rtt_filter
#
# Sets $rtt_filter to tests/nbdkit-rtt-filter.so, a store with a round
# trip, from the build tree of $PCACHE_FILTER, for the drain tests below
# nbdkit's log filter, and requires both filters.
requires_rtt_filter ()
{
    rtt_filter="${PCACHE_FILTER%/plugin/.libs/*}/tests/.libs/nbdkit-rtt-filter.so"
    if [ ! -f "$rtt_filter" ]; then
        echo "$0: test filter not built: $rtt_filter"
        exit 1
    fi
    requires nbdkit --filter=log null --version
}

# dirty_cache PYTHON
#
# Make $cache, 16M with 1M segments, in front of a 16M memory disk that
# fails every write, and run PYTHON in nbdsh against it: everything it
# writes stays dirty in the cache, for a drain to write back.
dirty_cache ()
{
    requires nbdkit --filter=error null --version
    nbdkit -U - --filter="$PCACHE_FILTER" --filter=error memory 16M \
           error-pwrite-rate=1 \
           pcache-dev="$cache" pcache-size=16M pcache-segment-size=1M \
           --run "nbdsh -u \"\$uri\" -c '$1'"
}

# ---------------------------------------------------------------------
# Checking a command's outcome.

# expect_status N CMD [ARGS...]
#
# Run CMD, keep its output in $tmp/out (shown too), and fail unless it
# exits with status N.
expect_status ()
{
    local want=$1 rc=0
    shift
    "$@" >"$tmp/out" 2>&1 || rc=$?
    cat "$tmp/out"
    if [ "$rc" -ne "$want" ]; then
        echo "$0: expected exit status $want, got $rc: $*"
        exit 1
    fi
}

# expect_output REGEX
#
# The output kept by the last expect_status must match REGEX (grep -E).
expect_output ()
{
    if ! grep -Eq -- "$1" "$tmp/out"; then
        echo "$0: output does not match '$1'"
        exit 1
    fi
}

# pcachectl_refuses CACHE BACKING REGEX
#
# pcachectl info, check and dump of CACHE, and a drain of it to BACKING,
# each exit 1 with output matching REGEX (needs requires_pcachectl).
pcachectl_refuses ()
{
    local cmd
    for cmd in info check dump; do
        expect_status 1 "$pcachectl" $cmd "$1"
        expect_output "$3"
    done
    expect_status 1 "$pcachectl" drain "$1" --to "$2"
    expect_output "$3"
}

# drain_fails SOCKET SECONDS ERROR
#
# pcachectl drain --timeout=SECONDS of the filter at control socket
# SOCKET exits 1 with "error: drain: ERROR".
drain_fails ()
{
    expect_status 1 "$pcachectl" drain --timeout="$2" "$1"
    if ! grep -qF -- "error: drain: $3" "$tmp/out"; then
        echo "$0: the drain did not fail with '$3'"
        exit 1
    fi
}

# ---------------------------------------------------------------------
# Temporary directory.

# tmpdir
#
# Create a private directory under /dev/shm (so that pcache files can
# be used as emulated pmem) and set $tmp to it, and $disk, $cache,
# $sock, $uri and $pidfile to names in it.  It is removed on exit.
# Falls back to $TMPDIR or /tmp if /dev/shm is not writable.
tmpdir ()
{
    local base=/dev/shm
    if [ ! -d "$base" ] || [ ! -w "$base" ]; then
        base=${TMPDIR:-/tmp}
    fi
    tmp=$(mktemp -d "$base/pcache-test.XXXXXXXXXX")
    cleanup_fn rm -rf "$tmp"
    # The usual names in it: a backing disk, a cache, a server socket,
    # its URI and a pid file.
    disk=$tmp/disk
    cache=$tmp/cache
    sock=$tmp/sock
    uri="nbd+unix:///?socket=$sock"
    pidfile=$tmp/pid
}

# ---------------------------------------------------------------------
# Running nbdkit in the background.

# _pcache_pid_alive PID
#
# True if the process exists and is not a finished zombie.  A
# daemonized nbdkit is not our child, and in a container the reaper may
# be slow or absent, so a killed nbdkit can linger as a zombie.  Its
# main thread turns zombie while other threads are still exiting (and
# may still hold the cache's lock), so a zombie counts as gone only once
# it has a single task left.
_pcache_pid_alive ()
{
    local stat tasks
    kill -0 "$1" 2>/dev/null || return 1
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    # The state is the first field after the parenthesised command name.
    stat=${stat##*) }
    [ "${stat%% *}" != Z ] && return 0
    tasks=(/proc/"$1"/task/*)
    [ "${#tasks[@]}" -gt 1 ] && [ -e "${tasks[1]}" ]
}

# _pcache_xtrace_off / _pcache_xtrace_restore
#
# Polling loops run without set -x tracing to keep the test logs short.
_pcache_xtrace_off ()
{
    case $- in
        *x*) _pcache_xtrace=1; set +x ;;
        *) _pcache_xtrace= ;;
    esac
}
_pcache_xtrace_restore ()
{
    if [ -n "$_pcache_xtrace" ]; then set -x; fi
}

# _pcache_pid_from_file PIDFILE
_pcache_pid_from_file ()
{
    local pid
    if [ ! -s "$1" ]; then
        echo "$0: pidfile $1 missing or empty" >&2
        return 1
    fi
    pid=$(<"$1")
    case "$pid" in
        ''|*[!0-9]*)
            echo "$0: pidfile $1 does not contain a pid: $pid" >&2
            return 1 ;;
    esac
    echo "$pid"
}

# start_nbdkit -P PIDFILE [-U SOCKET] ARGS...
#
# Run nbdkit, which daemonizes itself (do not pass -f or --run).  Waits
# up to 60 s for the pidfile and (if -U was given) the socket to
# appear, and registers kill_nbdkit as a cleanup hook.
start_nbdkit ()
{
    local pidfile='' sock='' i
    if [ "$1" != "-P" ] || [ -z "${2:-}" ]; then
        echo "$0: start_nbdkit: first arguments must be -P PIDFILE" >&2
        return 1
    fi
    pidfile=$2
    if [ "${3:-}" = "-U" ]; then
        sock=${4:?start_nbdkit: -U needs a socket}
    fi
    rm -f "$pidfile"
    # nbdkit leaves its socket behind when killed.
    if [ -n "$sock" ]; then rm -f "$sock"; fi

    # Register the cleanup before starting, so that an nbdkit that
    # writes its pidfile late is still killed.
    cleanup_fn kill_nbdkit "$pidfile"

    # nbdkit checks its configuration and opens the cache before it
    # forks, so a bad parameter shows up here as a non-zero status.
    if ! nbdkit -v "$@"; then
        echo "$0: nbdkit failed to start" >&2
        return 1
    fi

    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 600; i++ )); do
        if [ -s "$pidfile" ] && { [ -z "$sock" ] || [ -S "$sock" ]; }; then
            _pcache_xtrace_restore
            return 0
        fi
        # Stop waiting early if nbdkit died after writing its pidfile.
        if [ -s "$pidfile" ] && ! _pcache_pid_alive "$(<"$pidfile")"; then
            _pcache_xtrace_restore
            echo "$0: nbdkit exited during startup" >&2
            return 1
        fi
        sleep 0.1
    done
    _pcache_xtrace_restore
    echo "$0: nbdkit did not start within 60 s (pidfile $pidfile${sock:+, socket $sock})" >&2
    return 1
}

# kill_nbdkit PIDFILE
#
# SIGTERM nbdkit and wait up to 60 s for it to exit (its .cleanup
# writes back and flushes).  If it does not, SIGKILL it and fail.
# Does nothing if the pidfile is missing (nbdkit never started, or was
# already killed).
kill_nbdkit ()
{
    local pidfile=$1 pid i
    [ -s "$pidfile" ] || return 0
    pid=$(_pcache_pid_from_file "$pidfile") || return 1
    rm -f "$pidfile"
    _pcache_pid_alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 600; i++ )); do
        _pcache_pid_alive "$pid" || { _pcache_xtrace_restore; return 0; }
        sleep 0.1
    done
    _pcache_xtrace_restore
    echo "$0: nbdkit (pid $pid) did not exit within 60 s of SIGTERM, killing it" >&2
    kill -KILL "$pid" 2>/dev/null || true
    _pcache_cleanup_failed=1
    return 1
}

# wait_unlocked FILE
#
# Wait (up to 60 s) until no process holds the lock of the cache FILE,
# for a restart on the same cache.
wait_unlocked ()
{
    local i
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 600; i++ )); do
        if flock -n "$1" true; then _pcache_xtrace_restore; return 0; fi
        sleep 0.1
    done
    _pcache_xtrace_restore
    echo "$0: $1 is still locked 60 s after nbdkit was stopped" >&2
    return 1
}

# wait_for_socket PATH [PID]
#
# Wait (up to 60 s) until PATH is a socket: the control socket of a
# server that start_nbdkit saw listen, which opens it just after, or
# the socket of a server started by hand as PID, whose death ends the
# wait.
wait_for_socket ()
{
    local i
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 600; i++ )); do
        if [ -S "$1" ]; then _pcache_xtrace_restore; return 0; fi
        if [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null; then
            _pcache_xtrace_restore
            echo "$0: process $2 died before $1 appeared" >&2
            return 1
        fi
        sleep 0.1
    done
    _pcache_xtrace_restore
    echo "$0: $1 is not a socket 60 s after nbdkit started" >&2
    return 1
}

# kill9_nbdkit PIDFILE
#
# Simulate a crash: SIGKILL nbdkit and wait until the process is gone,
# so that its cache file can be reopened at once.
kill9_nbdkit ()
{
    local pidfile=$1 pid i
    pid=$(_pcache_pid_from_file "$pidfile") || return 1
    rm -f "$pidfile"
    kill -KILL "$pid" 2>/dev/null || true
    { _pcache_xtrace_off; } 2>/dev/null
    for (( i = 0; i < 600; i++ )); do
        _pcache_pid_alive "$pid" || { _pcache_xtrace_restore; return 0; }
        sleep 0.1
    done
    _pcache_xtrace_restore
    echo "$0: nbdkit (pid $pid) still exists 60 s after SIGKILL" >&2
    return 1
}
