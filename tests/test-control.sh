#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The statistics file and the control socket.
#  A. A symlink planted at the stats file's temporary name (FILE.tmp) is
#     not followed, at start or at exit: its target is unchanged and the
#     stats file is still written.
#  B. Malformed control requests get an error reply naming what was
#     wrong, and change nothing; an over-long line gets an error reply,
#     even when the client is still sending it.
#  C. Silent and slow-drip clients do not delay another client's stats:
#     it is answered while they are still waiting.
#  D. A drain held up by a paused plugin does not delay another client's
#     stats either, and completes once the plugin resumes.
#  E. The socket path: a live socket, a regular file or a symlink there
#     is refused and left alone; a stale socket is replaced.
#  F. nbdkit exits with control clients connected, and removes its
#     socket.
#  G. A drain that cannot end (the plugin fails every write) does not
#     hold up the exit of nbdkit: it is answered that nbdkit is shutting
#     down.  One with a time limit (drain SECS, pcachectl drain
#     --timeout) gives up with the plugin's error once write-back has
#     failed that long.
#  H. So does one, with ETIMEDOUT, while the plugin does not answer at
#     all (paused); once it answers again, a drain ends.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_pcachectl
requires_nbdsh
requires python3 -c 'pass'
requires nbdkit --filter=pause null --version
tmpdir

ctl="$tmp/ctl"
pausectl="$tmp/pause"
stats="$tmp/stats.json"

start ()
{
    start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
        --filter=pause memory 64M pause-control="$pausectl" \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-control="$ctl" "$@"
}

# Control socket client.  Every wait for a reply has a generous timeout
# that only turns a hang into a failure; nothing depends on timing.
cat >"$tmp/ctl.py" <<'EOF'
import codecs, json, select, socket, sys

def connect (path):
    s = socket.socket (socket.AF_UNIX)
    s.connect (path)
    return s

def reply_of (s):
    s.settimeout (60)
    return s.makefile ("rb").readline ().decode ().rstrip ("\n")

def say (path, line):
    s = connect (path)
    s.sendall (line + b"\n")
    r = reply_of (s)
    s.close ()
    return r

def stats (path):
    return json.loads (say (path, b"stats"))

# Not answered and not closed yet.
def pending (s):
    r, _, _ = select.select ([s], [], [], 0)
    return not r

def pause (path, cmd):
    s = connect (path)
    s.sendall (cmd)
    s.settimeout (60)
    assert s.recv (1) == cmd.upper ()
    s.close ()

def cmd_say (path, line):
    print (say (path, codecs.escape_decode (line.encode ())[0]))

def cmd_stat (path, field):
    print (stats (path)[field])

# A line much longer than the limit: the client is still sending it
# when the reply is written.
def cmd_long (path, n):
    s = connect (path)
    s.sendall (b"x" * int (n) + b"\n")
    print (reply_of (s))

def cmd_waiting (path):
    silent = [connect (path) for _ in range (3)]
    drip = connect (path)
    drip.sendall (b"sta")
    json.loads (say (path, b"stats"))
    for c in silent + [drip]:
        assert pending (c), "a waiting client was served before stats"
    drip.sendall (b"ts\n")
    json.loads (reply_of (drip))
    print ("not delayed")

def cmd_drain (path, pausectl):
    d = connect (path)
    d.sendall (b"drain\n")
    st = stats (path)
    assert st["dirty_bytes"] > 0, st
    assert pending (d), "the drain ended with the plugin paused"
    pause (pausectl, b"r")
    r = reply_of (d)
    assert r == "ok", r
    print ("not delayed")

def cmd_pause (pausectl, c):
    pause (pausectl, c.encode ())

# At cleanup: a plugin left paused by a failed check would hold up the
# exit of nbdkit.
def cmd_resume (pausectl):
    try:
        pause (pausectl, b"r")
    except OSError:
        pass

# A drain that stays waiting: print "waiting" once another client got
# stats meanwhile, then the drain's reply.
def cmd_drain_held (path):
    d = connect (path)
    d.sendall (b"drain\n")
    st = stats (path)
    assert st["dirty_bytes"] > 0, st
    assert pending (d), "the drain ended with every write failing"
    print ("waiting", flush=True)
    print (reply_of (d))

# Clients connected while nbdkit stops: each is answered or closed.
def cmd_hold (path, n):
    cs = [connect (path) for _ in range (int (n))]
    print ("ready", flush=True)
    for c in cs:
        reply_of (c)

globals ()["cmd_" + sys.argv[1].replace ("-", "_")] (*sys.argv[2:])
EOF
ctlpy ()
{
    python3 "$tmp/ctl.py" "$@"
}

# expect_error REQUEST WORD: the reply is an error naming WORD.
expect_error ()
{
    local r
    r=$(ctlpy say "$ctl" "$1")
    case "$r" in
        "error: "*"$2"*) ;;
        *) echo "$0: '$1' got '$r', not an error naming '$2'"; exit 1 ;;
    esac
}

# ---------------------------------------------------------------------
# A. The stats file's temporary name is a planted symlink.
echo precious >"$tmp/victim"
ln -s "$tmp/victim" "$stats.tmp"
start pcache-stats="$stats"
# The file is written at start.
for (( i = 0; i < 600; i++ )); do
    [ -s "$stats" ] && break
    sleep 0.1
done
test "$(cat "$tmp/victim")" = precious
test -f "$stats" && test ! -L "$stats"
python3 -c "import json, sys; json.load (open (sys.argv[1]))" "$stats"

# ---------------------------------------------------------------------
# B. Malformed requests change nothing.
test "$(ctlpy say "$ctl" 'gc-percent 40')" = ok
test "$(ctlpy say "$ctl" 'mode writearound')" = ok
expect_error 'gc-percent 4294967346' 'out of range'
expect_error 'gc-percent 50junk' 'not a whole number'
expect_error 'gc-percent -1' 'gc-percent'
expect_error 'gc-percent +50' 'gc-percent'
expect_error 'gc-percent 91' 'out of range'
expect_error 'gc-percent' 'gc-percent'
expect_error 'gc-percent 50 50' 'gc-percent'
expect_error 'mode writeback extra' 'mode'
expect_error 'mode' 'mode'
expect_error 'mode bogus' "'bogus'"
expect_error 'stats now' 'stats'
expect_error 'drain now' 'not a whole number'
expect_error 'drain -1' 'not a whole number'
expect_error 'drain 31536001' 'out of range'
expect_error 'drain 1 2' 'at most one argument'
expect_error 'stats\x00junk' 'control character'
expect_error 'frobnicate' "'frobnicate'"
expect_error '' 'empty'
test "$(ctlpy stat "$ctl" gc_percent)" -eq 40
test "$(ctlpy stat "$ctl" mode)" = writearound
# The longest line accepted (255 bytes), one byte too long, and one far
# too long.
ctlpy say "$ctl" "stats$(printf '%250s' '')" | grep '^{'
test "$(ctlpy long "$ctl" 256)" = 'error: request longer than 255 bytes'
test "$(ctlpy long "$ctl" 524288)" = 'error: request longer than 255 bytes'
test "$(ctlpy say "$ctl" 'mode writeback')" = ok

# At exit, the stats file is written once more: plant the symlink again.
ln -s "$tmp/victim" "$stats.tmp"
kill_nbdkit "$pidfile"
test "$(cat "$tmp/victim")" = precious
test -f "$stats" && test ! -L "$stats"
grep -q '"mode":"writeback"' "$stats"
# F. The socket went with nbdkit.
test ! -e "$ctl"

# ---------------------------------------------------------------------
# C, D. Waiting clients and a drain do not hold up stats.
start
ctlpy waiting "$ctl"

# The plugin pauses before anything is written, so the write below stays
# dirty in the cache and a drain cannot end until it resumes.
cleanup_fn ctlpy resume "$pausectl"
ctlpy pause "$pausectl" p
nbdsh -u "$uri" -c 'h.pwrite (b"\x55" * 65536, 0); h.flush ()'
ctlpy drain "$ctl" "$pausectl"
test "$(ctlpy stat "$ctl" dirty_bytes)" -eq 0

# F. Stopping with clients connected.
coproc HOLD { ctlpy hold "$ctl" 3; }
hold_pid=$HOLD_PID
read -r line <&"${HOLD[0]}"
test "$line" = ready
kill_nbdkit "$pidfile"
wait "$hold_pid"
test ! -e "$ctl"

# ---------------------------------------------------------------------
# timed_drains_fail ERROR: after a write, a drain of 1 s (control
# request) and one of 2 s (pcachectl drain --timeout) fail with ERROR.
timed_drains_fail ()
{
    nbdsh -u "$uri" -c 'h.pwrite (b"\x55" * 65536, 0); h.flush ()'
    test "$(ctlpy say "$ctl" 'drain 1')" = "error: drain: $1"
    drain_fails "$ctl" 2 "$1"
}

# G. A drain still waiting at exit.
# Its errors go to a file (not syslog, as a daemon's do).
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr --filter="$PCACHE_FILTER" \
    --filter=error memory 64M error-pwrite=EIO error-pwrite-rate=100% \
    pcache-dev="$tmp/cache3" pcache-size=32M pcache-segment-size=1M \
    pcache-control="$ctl" 2>"$tmp/g.log"
timed_drains_fail 'Input/output error'
# Each gave up at its own limit, not the filter's 30 s.
grep -F 'drain gave up: writeback has failed for 1 s' "$tmp/g.log"
grep -F 'drain gave up: writeback has failed for 2 s' "$tmp/g.log"
# Options of a drain to a backing store are refused, not ignored.
for opt in --keep --backing-id=x; do
    r=0
    "$pcachectl" drain "$opt" "$ctl" 2>"$tmp/err" || r=$?
    cat "$tmp/err"
    test "$r" -eq 2
    grep -F -- "${opt%%=*} needs --to" "$tmp/err"
done
test "$(ctlpy stat "$ctl" dirty_bytes)" -eq 65536
# Its output comes through a FIFO that stays open after it exits.
mkfifo "$tmp/drain.out"
ctlpy drain-held "$ctl" >"$tmp/drain.out" &
drain_pid=$!
exec {drain_fd}<"$tmp/drain.out"
read -r line <&"$drain_fd"
test "$line" = waiting
kill_nbdkit "$pidfile"
read -r line <&"$drain_fd"
test "$line" = 'error: drain: nbdkit is shutting down'
wait "$drain_pid"
exec {drain_fd}<&-
test ! -e "$ctl"

# ---------------------------------------------------------------------
# H. A drain with a time limit while the plugin hangs (paused before
# anything is written back).
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr --filter="$PCACHE_FILTER" \
    --filter=pause memory 64M pause-control="$pausectl" \
    pcache-dev="$tmp/cache4" pcache-size=32M pcache-segment-size=1M \
    pcache-control="$ctl" 2>"$tmp/h.log"
ctlpy pause "$pausectl" p
timed_drains_fail 'Connection timed out'
test "$(ctlpy stat "$ctl" dirty_bytes)" -eq 65536
# The plugin answers again: nothing was lost, and a drain ends.
ctlpy pause "$pausectl" r
"$pcachectl" drain --timeout=60 "$ctl"
test "$(ctlpy stat "$ctl" dirty_bytes)" -eq 0
kill_nbdkit "$pidfile"
cat "$tmp/h.log"
grep -F 'drain gave up: the plugin has not answered writeback for 1 s' \
     "$tmp/h.log"
grep -F 'drain gave up: the plugin has not answered writeback for 2 s' \
     "$tmp/h.log"

# ---------------------------------------------------------------------
# E. What is at the socket path.
# refused WHAT MSG: nbdkit with pcache-control=$ctl, in the foreground,
# exits non-zero naming MSG.  Still running after 60 s means accepted.
refused ()
{
    local r=0
    # nbdkit leaves its own socket behind when it fails.
    rm -f "$tmp/sock2"
    timeout 60 nbdkit -f -U "$tmp/sock2" --filter="$PCACHE_FILTER" \
        memory 64M pcache-dev="$tmp/cache2" pcache-size=32M \
        pcache-segment-size=1M pcache-control="$ctl" 2>"$tmp/err" || r=$?
    cat "$tmp/err"
    if [ "$r" -eq 0 ] || [ "$r" -eq 124 ]; then
        echo "$0: nbdkit accepted pcache-control=$ctl over $1"
        exit 1
    fi
    grep -qF -- "$2" "$tmp/err"
}

echo keep >"$ctl"
refused 'a regular file' 'not a socket'
test "$(cat "$ctl")" = keep
rm "$ctl"

ln -s "$tmp/victim" "$ctl"
refused 'a symlink' 'not a socket'
test -L "$ctl" && test "$(cat "$tmp/victim")" = precious
rm "$ctl"

# A live socket: the first nbdkit keeps it.
start
refused 'a live socket' 'another process listens'
ctlpy stat "$ctl" mode

# A stale socket, left by kill -9, is replaced.
kill9_nbdkit "$pidfile"
test -S "$ctl"
wait_unlocked "$cache"
start
ctlpy stat "$ctl" mode
