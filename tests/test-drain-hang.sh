#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcachectl drain --to an NBD server that stops answering gives up
# after --timeout instead of waiting for good, and loses nothing:
#  A. A server that accepts the connection and never speaks: the
#     handshake is given up, naming the server and --timeout.
#  B. A server whose requests hang (nbdkit's pause filter, paused): the
#     write-back request is given up, the drain ends with the data
#     still dirty in the cache; once the server answers again, a drain
#     writes it all.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires_drain_backend nbd
requires nbdkit --filter=pause null --version
requires python3 -c 'pass'
tmpdir

# A cache with dirty data: the error filter fails every write-back.
dirty_cache '
h.pwrite(b"D" * 8192, 65536)
h.flush()
'
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *8192 (8.0 KiB)' "$tmp/out"

# ---------------------------------------------------------------------
# A. A listening socket that nobody reads: connect() succeeds, and the
# server's greeting never comes.
python3 -c '
import socket, sys, time
s = socket.socket(socket.AF_UNIX)
s.bind(sys.argv[1])
s.listen(4)
time.sleep(3600)
' "$tmp/mute.sock" &
cleanup_fn kill "$!"
wait_for_socket "$tmp/mute.sock" "$!"
expect_status 1 timeout 60 "$pcachectl" drain "$cache" --timeout=1 \
    --to "nbd+unix:///?socket=$tmp/mute.sock"
grep -qF "socket=$tmp/mute.sock: the server did not complete the NBD handshake in 1 s (--timeout)" \
     "$tmp/out"
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *8192 (8.0 KiB)' "$tmp/out"

# ---------------------------------------------------------------------
# B. Requests that hang: the server is paused before the drain starts.
pausectl="$tmp/pause"
truncate -s 16M "$disk"
start_nbdkit -P "$pidfile" -U "$sock" --filter=pause file "$disk" \
    pause-control="$pausectl"
pause ()
{
    python3 -c '
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.settimeout(60)
s.sendall(sys.argv[2].encode())
assert s.recv(1) == sys.argv[2].upper().encode()
' "$pausectl" "$1"
}
pause p
cleanup_fn pause r
expect_status 1 timeout 60 "$pcachectl" drain "$cache" --timeout=1 \
    --to "$uri"
grep -qF "no answer to a write of 8192 bytes at offset 65536 for 1 s" \
     "$tmp/out"
grep -qF 'still dirty; nothing is lost' "$tmp/out"
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *8192 (8.0 KiB)' "$tmp/out"
cmp <(head -c 8192 /dev/zero) \
    <(dd if="$disk" bs=4096 skip=16 count=2 status=none)
pause r

# The server answers again: the data goes down.
expect_status 0 timeout 60 "$pcachectl" drain "$cache" --timeout=10 \
    --to "$uri"
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *0' "$tmp/out"
cmp <(head -c 8192 /dev/zero | tr '\0' D) \
    <(dd if="$disk" bs=4096 skip=16 count=2 status=none)
kill_nbdkit "$pidfile"
