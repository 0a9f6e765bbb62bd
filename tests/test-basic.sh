#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: basic data integrity over the file plugin.
#
# - nbdsh: pattern writes and reads at many offsets and sizes (unaligned,
#   crossing 4 MiB index stripes, larger than a 1 MiB segment), partial
#   overwrites, reads that miss and fill from the backend, flush, FUA;
#   the advertised capabilities;
# - the whole disk reads back after a clean restart;
# - qemu-io pattern checks;
# - block status: a dirty range that has not reached the backend yet is
#   reported as data, although the backend file still has a hole there.

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires_nbdsh
requires qemu-io --version
requires nbdkit --filter=error null --version
requires nbdkit file --version

tmpdir
export tmp

# A 64 MiB sparse backend with one region of known data, so that some
# reads miss the cache and must come from the plugin.
disk=$tmp/disk
python3 - "$disk" <<'EOF'
import random, sys
with open(sys.argv[1], "wb") as f:
    f.truncate(64 << 20)
    f.seek(32 << 20)
    f.write(random.Random(4242).randbytes(4 << 20))
EOF

# Common Python helpers, read by every nbdsh script below.
cat > "$tmp/lib.py" <<'EOF'
import os, random

tmp = os.environ["tmp"]

def pattern(seed, n):
    return random.Random(seed).randbytes(n)

def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))

def check_range(h, expected, off, n, what=""):
    got = h.pread(n, off)
    want = bytes(expected[off:off + n])
    if got != want:
        i = first_diff(got, want)
        raise AssertionError(
            "%s: read at offset %d length %d differs first at offset %d: "
            "got %r, expected %r" % (what, off, n, off + i,
                                     bytes(got[i:i + 16]), want[i:i + 16]))

def check_all(h, expected, what=""):
    chunk = 8 << 20
    for off in range(0, len(expected), chunk):
        check_range(h, expected, off, min(chunk, len(expected) - off), what)
EOF

pcache_args=(
    pcache-dev="$tmp/cache" pcache-size=32M pcache-segment-size=1M
)

# ---------------------------------------------------------------------
# 1. Pattern writes and reads through nbdsh.

nbdkit -U - --filter="$PCACHE_FILTER" file "$disk" "${pcache_args[@]}" \
       --run 'nbdsh -u "$uri" -c -' <<'EOF'
exec(open(os.environ["tmp"] + "/lib.py").read())

M = 1 << 20
size = h.get_size()
assert size == 64 * M, size

# Capabilities.
assert h.can_multi_conn(), "can_multi_conn"
assert h.can_fua(), "can_fua"
assert h.can_trim(), "can_trim"
assert h.can_zero(), "can_zero"
assert h.can_flush(), "can_flush"
assert not h.is_read_only(), "read-only"

# What the disk should contain: the backend's initial content.
with open(tmp + "/disk", "rb") as f:
    expected = bytearray(f.read())
assert len(expected) == size

# Reads that miss the cache: data region and hole.
check_range(h, expected, 32 * M + 12345, 100000, "miss in the data region")
check_range(h, expected, 40 * M, M, "miss in a hole")

seed = 0
def w(off, n, flags=0):
    global seed
    seed += 1
    buf = pattern(seed, n)
    h.pwrite(buf, off, flags)
    expected[off:off + n] = buf
    check_range(h, expected, off, n, "write at %d length %d" % (off, n))

# Aligned, tiny and unaligned writes.
w(0, 512)
w(512, 1)
w(4095, 2)
w(4096, 4096)
w(12345, 100000)
# Crossing the 4 MiB stripe boundaries.
w(4 * M - 3000, 6000)
w(8 * M - 1, 2)
w(12 * M - 4096, 8192)
# Larger than a 1 MiB segment, unaligned, and spanning several stripes.
w(10 * M + 7, 3 * M)
w(19 * M - 5, 5 * M + 10)
# Over the plugin's data region (partially cached data).
w(33 * M + 100, 200000)
w(36 * M - 50, 100)
# The very end of the disk.
w(size - 1000, 1000)
w(size - 1, 1)

# Partial overwrites of earlier writes.
w(4 * M - 100, 200)
w(11 * M, 1000)
w(12345 + 50, 10)
w(19 * M - 5, 3)
w(24 * M + 1, 4096)

# Read ranges spanning written and unwritten areas.
check_range(h, expected, 0, 200000, "span 0")
check_range(h, expected, 3 * M, 2 * M, "span 4M")
check_range(h, expected, 9 * M, 16 * M, "span 9M-25M")
check_all(h, expected, "before flush")

h.flush()
check_all(h, expected, "after flush")

# FUA writes.
seed = 1000
w(30 * M + 3, 70000, nbd.CMD_FLAG_FUA)
w(2 * M, 4096, nbd.CMD_FLAG_FUA)

# Random writes (sizes up to 256 KiB), with a seeded generator.
rng = random.Random(12345)
for i in range(300):
    n = rng.randint(1, 256 * 1024)
    off = rng.randint(0, size - n)
    w(off, n)
h.flush()
check_all(h, expected, "after random writes")

with open(tmp + "/expected", "wb") as f:
    f.write(expected)
EOF

# ---------------------------------------------------------------------
# 2. Everything reads back after a clean restart.

nbdkit -U - --filter="$PCACHE_FILTER" file "$disk" "${pcache_args[@]}" \
       --run 'nbdsh -u "$uri" -c -' <<'EOF'
exec(open(os.environ["tmp"] + "/lib.py").read())
with open(tmp + "/expected", "rb") as f:
    expected = f.read()
check_all(h, expected, "after restart")
EOF

# ---------------------------------------------------------------------
# 3. qemu-io pattern checks (qemu-io exits 1 on a pattern mismatch).

nbdkit -U - --filter="$PCACHE_FILTER" file "$disk" "${pcache_args[@]}" \
       --run '
    qemu-io -f raw "$uri" \
        -c "w -P 0xaa 0 1M" \
        -c "w -P 0x55 4194000 500000" \
        -c "w -P 0x11 1000 3000" \
        -c "w -P 0xcc 20M 3M" \
        -c "w -P 0x33 22M 64k" \
        -c "flush" \
        -c "r -P 0xaa 0 1000" \
        -c "r -P 0x11 1000 3000" \
        -c "r -P 0xaa 4000 1044576" \
        -c "r -P 0x55 4194000 500000" \
        -c "r -P 0xcc 20M 2M" \
        -c "r -P 0x33 22M 64k" \
        -c "r -P 0xcc 23134208 983040" &&
    qemu-io -f raw "$uri" \
        -c "r -P 0xaa 4000 1044576" \
        -c "r -P 0x55 4194000 500000" \
        -c "r -P 0x33 22M 64k"
'

# ---------------------------------------------------------------------
# 4. Block status of dirty data that is not on the backend yet.
#
# The error filter under pcache fails every backend write while
# $tmp/hold exists, so the written range stays dirty in the cache and
# the backend file keeps its hole.  Then writeback is let through and
# must catch up.

disk2=$tmp/disk2
truncate -s 64M "$disk2"
touch "$tmp/hold"
nbdkit -U - --filter="$PCACHE_FILTER" --filter=error file "$disk2" \
       pcache-dev="$tmp/cache2" pcache-size=32M pcache-segment-size=1M \
       error-pwrite=EIO error-pwrite-rate=100% \
       error-pwrite-file="$tmp/hold" \
       --run 'nbdsh --base-allocation -u "$uri" -c -' <<'EOF'
exec(open(os.environ["tmp"] + "/lib.py").read())
import errno, time

M = 1 << 20
off, n = 5 * M + 4096, 3 * M
buf = pattern(77, n)

def extents(off, n):
    """[(offset, length, flags)] for the range, from base:allocation."""
    out = []
    def cb(metacontext, offset, entries, err):
        if metacontext != nbd.CONTEXT_BASE_ALLOCATION:
            return
        o = offset
        for i in range(0, len(entries), 2):
            out.append((o, entries[i], entries[i + 1]))
            o += entries[i]
    end = off + n
    while off < end:
        before = len(out)
        h.block_status(end - off, off, cb)
        assert len(out) > before, "no extents at %d" % off
        off = out[-1][0] + out[-1][1]
    return out

def backend_has_data(off, n):
    """True if the backend file has any allocated data in the range."""
    fd = os.open(tmp + "/disk2", os.O_RDONLY)
    try:
        try:
            d = os.lseek(fd, off, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return False
            raise
        return d < off + n
    finally:
        os.close(fd)

assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)

# Before: all of it is a hole, in the backend and as reported.
assert not backend_has_data(0, 64 * M)
for (o, l, f) in extents(off, n):
    assert f == nbd.STATE_HOLE | nbd.STATE_ZERO, (o, l, f)

h.pwrite(buf, off)
h.flush()

# The backend still has its hole: writeback is being refused.
assert not backend_has_data(off, n), "backend written while held"

# The dirty range must be reported as data, neither hole nor zero.
for (o, l, f) in extents(off, n):
    assert f & (nbd.STATE_HOLE | nbd.STATE_ZERO) == 0, \
        "dirty range reported as %d at offset %d length %d" % (f, o, l)
# Just outside it, still the backend's hole, even once read into the
# cache.
assert h.pread(M, off + n) == bytes(M)
for (o, l, f) in extents(off + n, M):
    assert f == nbd.STATE_HOLE | nbd.STATE_ZERO, (o, l, f)
for (o, l, f) in extents(off - 4096, 4096):
    assert f == nbd.STATE_HOLE | nbd.STATE_ZERO, (o, l, f)
assert h.pread(n, off) == buf

# Let writeback through; it must catch up (bounded wait).
os.unlink(tmp + "/hold")
deadline = time.monotonic() + 60
while True:
    with open(tmp + "/disk2", "rb") as f:
        f.seek(off)
        if f.read(n) == buf:
            break
    assert time.monotonic() < deadline, "writeback did not reach the backend"
    time.sleep(0.2)
assert backend_has_data(off, n)
for (o, l, f) in extents(off, n):
    assert f & (nbd.STATE_HOLE | nbd.STATE_ZERO) == 0, (o, l, f)
assert h.pread(n, off) == buf
EOF
