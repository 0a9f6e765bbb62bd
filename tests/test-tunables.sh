#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Steering a running cache through the control socket: pcachectl set,
# pause, resume and reset-stats, over the file plugin.
#  A. Each tunable, at the ends of its range and in between, set with
#     pcachectl set, reads back in the statistics; so does the mode, and
#     the older request gc-percent N still works.
#  B. Bad values and unknown keys are refused with an error naming the
#     key, and change nothing.
#  C. writeback-threads raised and lowered while a client writes: the
#     write-back thread rebuilds its pool (its helper threads, named
#     pcache-wb-io, are counted), and after a drain the backing file
#     holds what was written.
#  D. While write-back is paused, data written does not reach the
#     backing file; a drain and a switch to write-through fail at once
#     saying so.  reset-stats zeroes the event counters but not
#     dirty_bytes.  After resume a drain writes everything back and
#     dirty_bytes ends at 0 (it did not wrap).
#  E. pcachectl pause, resume and reset-stats: usage and exit status.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires python3 -c 'pass'
requires timeout --version
tmpdir

ctl=$tmp/ctl
MiB=$((1 << 20))
truncate -s $((64 * MiB)) "$disk"
start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
    file "$disk" pcache-dev="$cache" pcache-size=32M \
    pcache-segment-size=1M pcache-control="$ctl"
pid=$(<"$pidfile")
# The control socket may come a little after the NBD socket.
for (( i = 0; i < 600; i++ )); do
    [ -S "$ctl" ] && break
    sleep 0.1
done

# stat FIELD: a field of the statistics (booleans as true/false).
stat ()
{
    "$pcachectl" stats "$ctl" | python3 -c '
import json, sys
v = json.load (sys.stdin)[sys.argv[1]]
print (str (v).lower () if isinstance (v, bool) else v)' "$1"
}

# The tunables as the statistics show them, for "nothing changed".
tunables ()
{
    "$pcachectl" stats "$ctl" | python3 -c '
import json, sys
d = json.load (sys.stdin)
print ([d[k] for k in ("gc_percent", "writeback_percent",
                       "writeback_threads", "cache_on_read", "seq_cutoff",
                       "full_timeout", "writeback_max_age", "export_quota",
                       "writeback_group", "mode",
                       "writeback_paused")])'
}

# One request line, straight to the socket; prints the reply.
say ()
{
    python3 - "$ctl" "$1" <<'EOF'
import socket, sys
s = socket.socket (socket.AF_UNIX)
s.connect (sys.argv[1])
s.settimeout (60)
s.sendall (sys.argv[2].encode () + b"\n")
print (s.makefile ("rb").readline ().decode ().rstrip ("\n"))
EOF
}

# set_ok KEY VALUE FIELD WANT: set it, and the statistics show WANT.
set_ok ()
{
    expect_status 0 "$pcachectl" set "$ctl" "$1" "$2"
    expect_output '^ok$'
    test "$(stat "$3")" = "$4"
}

# Helper threads of the write-back pool.
wb_helpers ()
{
    grep -lx pcache-wb-io /proc/"$pid"/task/*/comm 2>/dev/null | wc -l
}

# wait_helpers N: the pool gets N helpers within 30 s.
wait_helpers ()
{
    local i
    for (( i = 0; i < 300; i++ )); do
        [ "$(wb_helpers)" -eq "$1" ] && return 0
        sleep 0.1
    done
    echo "$0: $(wb_helpers) write-back helper threads, expected $1"
    exit 1
}

# ---------------------------------------------------------------------
# A. Every tunable reads back.

set_ok gc-percent 0 gc_percent 0
set_ok gc-percent 90 gc_percent 90
set_ok gc-percent 55 gc_percent 55
test "$(say 'gc-percent 60')" = ok
test "$(stat gc_percent)" = 60
test "$(say 'set gc-percent 65')" = ok
test "$(stat gc_percent)" = 65
set_ok writeback-percent 0 writeback_percent 0
set_ok writeback-percent 100 writeback_percent 100
set_ok writeback-percent 25 writeback_percent 25
set_ok writeback-threads 1 writeback_threads 1
set_ok writeback-threads 64 writeback_threads 64
set_ok writeback-threads 3 writeback_threads 3
set_ok cache-on-read off cache_on_read false
set_ok cache-on-read 1 cache_on_read true
set_ok cache-on-read false cache_on_read false
set_ok cache-on-read on cache_on_read true
set_ok seq-cutoff 0 seq_cutoff 0
set_ok seq-cutoff 2M seq_cutoff $((2 * MiB))
set_ok seq-cutoff 3k seq_cutoff 3072
set_ok seq-cutoff 9223372036854775807 seq_cutoff 9223372036854775807
set_ok seq-cutoff 123456 seq_cutoff 123456
set_ok full-timeout 0 full_timeout 0
set_ok full-timeout 86400 full_timeout 86400
set_ok full-timeout 30 full_timeout 30
set_ok writeback-max-age 0 writeback_max_age 0
set_ok writeback-max-age 86400 writeback_max_age 86400
set_ok writeback-max-age 30 writeback_max_age 30
set_ok export-quota 1 export_quota 1
set_ok export-quota 100 export_quota 100
set_ok export-quota 40 export_quota 40
set_ok writeback-group auto writeback_group auto
set_ok writeback-group 4096 writeback_group 4096
set_ok writeback-group 1 writeback_group 1
test "$(stat writeback_group_epochs)" = 1
set_ok mode writethrough mode writethrough
set_ok mode writeback mode writeback
test "$(stat writeback_paused)" = false

# ---------------------------------------------------------------------
# B. Bad values change nothing.

before=$(tunables)
# set_bad KEY VALUE: refused, naming the key.  (-- lets VALUE be -1.)
set_bad ()
{
    expect_status 1 "$pcachectl" set -- "$ctl" "$1" "$2"
    expect_output "error: $1: '"
}
set_bad gc-percent 91
set_bad gc-percent -1
set_bad gc-percent +5
set_bad gc-percent 5x
set_bad gc-percent 18446744073709551626
set_bad writeback-percent 101
set_bad writeback-threads 0
set_bad writeback-threads 65
set_bad writeback-threads 0x4
set_bad cache-on-read maybe
set_bad cache-on-read yes
set_bad cache-on-read 2
set_bad seq-cutoff 8E
set_bad seq-cutoff 9223372036854775808
set_bad seq-cutoff 1.5M
set_bad seq-cutoff 4Q
set_bad seq-cutoff K
set_bad seq-cutoff -1
set_bad full-timeout 86401
set_bad full-timeout 10s
set_bad writeback-max-age 86401
set_bad export-quota 0
set_bad export-quota 101
set_bad writeback-group 0
set_bad writeback-group 4097
set_bad writeback-group Auto
expect_status 1 "$pcachectl" set "$ctl" mode fast
expect_output "'fast'"
expect_status 1 "$pcachectl" set "$ctl" bogus 1
expect_output "unknown key 'bogus'"
case "$(say 'set gc-percent')" in "error: set "*) ;; *) exit 1 ;; esac
case "$(say 'set')" in "error: set "*) ;; *) exit 1 ;; esac
case "$(say 'pause now')" in "error: pause "*) ;; *) exit 1 ;; esac
case "$(say 'reset-stats all')" in "error: reset-stats "*) ;; *) exit 1 ;; esac
test "$(tunables)" = "$before"

# ---------------------------------------------------------------------
# C. The write-back pool follows writeback-threads while a client
# writes (write-back running all along: writeback-percent 0).

set_ok writeback-percent 0 writeback_percent 0
set_ok writeback-threads 16 writeback_threads 16
wait_helpers 15
nbdsh -u "$uri" -c - <<EOF &
import os, time

MiB = 1 << 20
model = bytearray(48 * MiB)
deadline = time.monotonic() + 60
i = 0
while not os.path.exists("$tmp/stop") and time.monotonic() < deadline:
    off = (i * 7 % 48) * MiB
    buf = os.urandom(MiB)
    h.pwrite(buf, off)
    model[off:off + MiB] = buf
    i += 1
    if i % 8 == 0:
        h.flush()
h.flush()
with open("$tmp/model", "wb") as f:
    f.write(model)
EOF
writer=$!
for n in 1 8 2 32 1 4; do
    set_ok writeback-threads $n writeback_threads $n
    wait_helpers $((n - 1))
done
touch "$tmp/stop"
wait "$writer"
expect_status 0 "$pcachectl" drain "$ctl"
test "$(stat dirty_bytes)" -eq 0
cmp -n $((48 * MiB)) "$tmp/model" "$disk"

# ---------------------------------------------------------------------
# D. Pause, reset-stats, resume.

expect_status 0 "$pcachectl" pause "$ctl"
expect_output '^ok$'
expect_status 0 "$pcachectl" pause "$ctl"          # twice is fine
test "$(stat writeback_paused)" = true

# New data where the disk holds zeroes, flushed, then read twice (hits).
nbdsh -u "$uri" -c - <<EOF
import os

buf = os.urandom(4 << 20)
h.pwrite(buf, 56 << 20)
h.flush()
assert h.pread(4 << 20, 56 << 20) == buf
assert h.pread(4 << 20, 56 << 20) == buf
with open("$tmp/paused", "wb") as f:
    f.write(buf)
EOF
# Long enough for write-back of a quiet client (writeback-percent 0).
sleep 2
# not_on_disk: the paused data has not reached the backing file.
not_on_disk ()
{
    python3 - "$disk" <<'EOF'
import sys
with open (sys.argv[1], "rb") as f:
    f.seek (56 << 20)
    assert f.read (4 << 20) == bytes (4 << 20), "written back while paused"
EOF
}
not_on_disk
dirty=$(stat dirty_bytes)
test "$dirty" -ge $((4 * MiB))
test "$(stat read_hits)" -gt 0

# A drain, and a switch out of write-back (which drains), fail at once.
start=$SECONDS
expect_status 1 timeout 20 "$pcachectl" drain "$ctl"
expect_output 'error: drain: write-back is paused'
expect_status 1 timeout 20 "$pcachectl" set "$ctl" mode writethrough
expect_output 'error: mode: write-back is paused'
test $((SECONDS - start)) -lt 10
test "$(stat mode)" = writeback

# reset-stats zeroes the counters, not dirty_bytes.
expect_status 0 "$pcachectl" reset-stats "$ctl"
expect_output '^ok$'
"$pcachectl" stats "$ctl" | python3 -c '
import json, sys
d = json.load (sys.stdin)
for k in ("read_hits", "read_misses", "read_hit_bytes", "read_miss_bytes",
          "writes", "write_hits", "write_bytes", "writeback_bytes",
          "writeback_rounds", "writeback_errors", "writeback_aborts",
          "full_timeouts",
          "seq_bypass_bytes", "write_through_bytes"):
    assert d[k] == 0, (k, d)
assert d["dirty_bytes"] == int (sys.argv[1]), d
assert d["segments_used"] > 0 and d["dirty_ksets"] > 0, d
assert d["writeback_paused"] is True, d' "$dirty"
not_on_disk

# Resume: the drain completes, everything is on the disk.
expect_status 0 "$pcachectl" resume "$ctl"
expect_output '^ok$'
test "$(stat writeback_paused)" = false
expect_status 0 timeout 120 "$pcachectl" drain "$ctl"
expect_output '^ok$'
test "$(stat dirty_bytes)" -eq 0
test "$(stat writeback_bytes)" -gt 0
cmp -i 0:$((56 * MiB)) -n $((4 * MiB)) "$tmp/paused" "$disk"
set_ok mode writethrough mode writethrough

# ---------------------------------------------------------------------
# E. pcachectl usage.

for cmd in pause resume reset-stats; do
    expect_status 2 "$pcachectl" $cmd
    expect_output 'missing SOCKET'
    expect_status 2 "$pcachectl" $cmd "$ctl" extra
    expect_output "unexpected argument 'extra'"
    expect_status 1 "$pcachectl" $cmd "$tmp/nonexistent"
    expect_status 1 "$pcachectl" $cmd "$disk"
    expect_output 'not a socket'
done
expect_status 0 "$pcachectl" --help
expect_output 'pause.resume.reset-stats SOCKET'
