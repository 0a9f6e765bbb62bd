#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A remote NBD server behind the nbd plugin restarts while dirty data
# waits for write-back: pcache alone (no retry filter) must reconnect
# and write it all back.
#
#  1. A remote nbdkit file serves a disk image on a Unix socket; pcache
#     runs in front of it with the nbd plugin.
#  2. A client writes A and flushes; once A is written back, the remote
#     is killed (-9), and the client, still connected to pcache, writes
#     B and flushes: B is acknowledged but cannot go down.
#  3. While the remote is down the statistics say backend_state
#     "failing", with a backend_last_error.
#  4. The remote is started again on the same socket; a drain through
#     the control socket ends, and A and B are both in the image, the
#     statistics say "ok" with at least one reopen, and the healing was
#     logged.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_nbdsh
requires_pcachectl
requires nbdkit file --version
requires nbdkit nbd --version

tmpdir
rsock=$tmp/remote.sock
rpid=$tmp/remote.pid
ctl=$tmp/ctl
truncate -s 64M "$disk"

start_remote ()
{
    start_nbdkit -P "$rpid" -U "$rsock" file "$disk"
}

start_remote
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" nbd socket="$rsock" \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
    pcache-control="$ctl" pcache-writeback-percent=0 2>"$tmp/log"

# The client side: steps 2 and 3.  Waits poll the statistics (or the
# remote's socket) with a deadline.
export ctl rsock rpid tmp pcachectl
nbdsh -u "$uri" -c '
import json, os, signal, socket, subprocess, time

def stats():
    out = subprocess.check_output([os.environ["pcachectl"], "stats",
                                   os.environ["ctl"]])
    return json.loads(out)

def wait_for(what, pred):
    end = time.monotonic() + 60
    while True:
        s = stats()
        if pred(s):
            return s
        if time.monotonic() > end:
            raise Exception("timed out waiting for " + what + ": " + str(s))
        time.sleep(0.1)

def remote_down():
    c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        c.connect(os.environ["rsock"])
        return False
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    finally:
        c.close()

tmp = os.environ["tmp"]
a = os.urandom(1024 * 1024)
b = os.urandom(1024 * 1024)
open(tmp + "/a", "wb").write(a)
open(tmp + "/b", "wb").write(b)

h.pwrite(a, 0)
h.flush()
s = wait_for("A written back", lambda s: s["dirty_bytes"] == 0)
assert s["backend_state"] == "ok", s
assert s["backend_last_error"] == "", s

os.kill(int(open(os.environ["rpid"]).read()), signal.SIGKILL)
end = time.monotonic() + 60
while not remote_down():
    assert time.monotonic() < end, "the remote does not go away"
    time.sleep(0.1)

h.pwrite(b, 4 * 1024 * 1024)
h.flush()
s = wait_for("write-back failing",
             lambda s: s["backend_state"] == "failing")
assert s["backend_last_error"] != "", s
assert s["backend_failing_since"] > 0, s
assert s["dirty_bytes"] > 0, s
h.shutdown()
'
"$pcachectl" stats "$ctl"

# 4. The remote comes back on the same socket (start_remote removes the
# one the killed server left).
start_remote
# Stop pcache before the remote at exit: nbdkit waits for its clients
# to leave before it exits on SIGTERM.
cleanup_fn kill_nbdkit "$pidfile"
timeout 120 "$pcachectl" drain "$ctl"
"$pcachectl" stats "$ctl" > "$tmp/stats"
cat "$tmp/stats"
grep '"dirty_bytes":0,' "$tmp/stats"
grep '"backend_state":"ok"' "$tmp/stats"
grep '"backend_last_error":""' "$tmp/stats"
grep '"backend_failing_since":0,' "$tmp/stats"
grep -E '"backend_reopens":[1-9]' "$tmp/stats"
grep "writeback resumed after" "$tmp/log"

cmp -n 1M "$tmp/a" "$disk"
cmp -i 0:4M -n 1M "$tmp/b" "$disk"
