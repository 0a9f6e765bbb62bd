#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A backend that rejects every write, and a cache full of dirty data:
# a write that needs space fails with EIO after pcache-full-timeout
# instead of hanging; so do zeroes once the key log cannot grow; reads
# of cached data, overwrites in place and flushes go on working; once
# the backend heals, writes succeed again, and after kill -9 and a
# restart everything acknowledged reaches the backing file.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires nbdkit --filter=error null --version
requires timeout --version
tmpdir

truncate -s 64M "$disk"
touch "$tmp/fail"
start_nbdkit -P "$pidfile" -U "$sock" \
    --filter="$PCACHE_FILTER" --filter=error file "$disk" \
    error-pwrite=EIO error-pwrite-rate=100% error-pwrite-file="$tmp/fail" \
    error-zero=EIO error-zero-rate=100% error-zero-file="$tmp/fail" \
    pcache-dev="$cache" pcache-size=16M pcache-segment-size=1M \
    pcache-full-timeout=2 pcache-drain=true

# Fill with 1M writes until one fails.  Without the timeout the write
# would block for ever: timeout(1) turns that into a failure.
timeout 300 nbdsh -u "$uri" -c '
import errno, json
MiB = 1 << 20
done = 0
for i in range(48):
    try:
        h.pwrite(bytes([65 + i % 26]) * MiB, i * MiB)
        done += 1
    except nbd.Error as e:
        assert e.errno in ("EIO", errno.EIO), e
        break
assert 0 < done < 16, done
print("acknowledged", done, "MiB")
# The next write that needs space fails too (no new wait per write).
try:
    h.pwrite(b"x" * MiB, 40 * MiB)
    assert False, "a write into a full cache succeeded"
except nbd.Error as e:
    assert e.errno in ("EIO", errno.EIO), e
# Cached data reads back, and a flush of it succeeds.
for i in range(done):
    assert h.pread(MiB, i * MiB) == bytes([65 + i % 26]) * MiB, i
h.flush()
open("'"$tmp"'/done", "w").write(str(done))
# Zeroes take no payload, only log space: once the log has no segment
# left they fail too, after the same timeout, instead of hanging.
for i in range(1000000):
    try:
        h.zero(4096, 48 * MiB + (i % 2048) * 8192)
    except nbd.Error as e:
        assert e.errno in ("EIO", errno.EIO), e
        print("log full after", i, "zeroes")
        break
else:
    assert False, "a million zeroes fitted in a full cache"
for i in range(done):
    assert h.pread(MiB, i * MiB) == bytes([65 + i % 26]) * MiB, i
'

# Heal the backend: write-back catches up and writes succeed again
# (retried until they do: write-back backs off after failures).
rm "$tmp/fail"
timeout 300 nbdsh -u "$uri" -c '
import errno
MiB = 1 << 20
while True:
    try:
        h.pwrite(b"Z" * MiB, 40 * MiB)
        break
    except nbd.Error as e:
        assert e.errno in ("EIO", errno.EIO), e
h.flush()
'
# A crash, then a restart that drains: with pcache-drain=true the
# backing file alone holds every acknowledged write.
kill9_nbdkit "$pidfile"
start_nbdkit -P "$pidfile" -U "$sock" \
    --filter="$PCACHE_FILTER" file "$disk" \
    pcache-dev="$cache" pcache-drain=true
kill_nbdkit "$pidfile"

python3 - "$disk" "$(cat "$tmp/done")" <<'PY'
import sys
MiB = 1 << 20
done = int(sys.argv[2])
with open(sys.argv[1], "rb") as f:
    for i in range(done):
        f.seek(i * MiB)
        assert f.read(MiB) == bytes([65 + i % 26]) * MiB, i
    f.seek(40 * MiB)
    assert f.read(MiB) == b"Z" * MiB
print("backing file holds all", done + 1, "acknowledged MiB")
PY
