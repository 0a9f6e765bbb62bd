#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: trim and write-zeroes.
#
# Over a backing file full of random data: write a pattern through the
# cache, then trim some ranges and write zeroes over others (with and
# without MAY_TRIM, i.e. NBD's NO_HOLE, and with FUA and FAST_ZERO;
# unaligned; crossing 4 MiB stripes; over data only the plugin has;
# partly rewritten afterwards).
# The zeroed and trimmed ranges read back as zeroes (pcache returns
# zeroes for trimmed ranges) and block status reports them with the
# zero flag; everything else is intact.  The same holds after kill -9,
# after writeback has reached the backing file (which then equals the
# expected image), and after a clean restart.

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires_nbdsh
requires nbdkit file --version
requires flock --version

tmpdir
export tmp

dd if=/dev/urandom of="$tmp/disk" bs=1M count=64 status=none

# crash PIDFILE CACHE: kill -9 nbdkit.  stop PIDFILE CACHE: SIGTERM.
crash () { kill9_nbdkit "$1"; wait_unlocked "$2"; }
stop () { kill_nbdkit "$1"; wait_unlocked "$2"; }

start ()
{
    rm -f "$sock"
    start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
                 file "$tmp/disk" pcache-dev="$tmp/cache" "$@"
}

cat > "$tmp/lib.py" <<'EOF'
import os, random, json

tmp = os.environ["tmp"]
M = 1 << 20
size = 64 * M

def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return min(len(a), len(b))

def check_all(expected, what):
    chunk = 8 * M
    for off in range(0, size, chunk):
        got = h.pread(chunk, off)
        want = bytes(expected[off:off + chunk])
        if got != want:
            i = first_diff(got, want)
            raise AssertionError(
                "%s: differs first at offset %d: got %r, expected %r"
                % (what, off + i, bytes(got[i:i + 16]), want[i:i + 16]))

def extents(off, n):
    """[(offset, length, flags)] covering the range, from base:allocation."""
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

def check_extents(zeroed, data, what):
    """Zeroed ranges must have the zero flag; data ranges must not."""
    for (a, n) in zeroed:
        for (o, l, f) in extents(a, n):
            if o < a + n and o + l > a:
                assert f & nbd.STATE_ZERO, \
                    "%s: zeroed range %d+%d: extent %d+%d has flags %d" \
                    % (what, a, n, o, l, f)
    for (a, n) in data:
        for (o, l, f) in extents(a, n):
            if o < a + n and o + l > a:
                assert not f & nbd.STATE_ZERO, \
                    "%s: data range %d+%d: extent %d+%d has flags %d" \
                    % (what, a, n, o, l, f)
EOF

# ---------------------------------------------------------------------
# Write, trim, zero.

start pcache-size=256M pcache-segment-size=1M
nbdsh --base-allocation -u "$uri" -c - <<'EOF'
exec(open(os.environ["tmp"] + "/lib.py").read())

assert h.can_trim() and h.can_zero() and h.can_fua()
assert h.can_meta_context(nbd.CONTEXT_BASE_ALLOCATION)

with open(tmp + "/disk", "rb") as f:
    expected = bytearray(f.read())
zeroed = []

# NBD write-zeroes may punch holes (nbdkit's MAY_TRIM) unless NO_HOLE.
MAY_TRIM = 0
NO_HOLE = nbd.CMD_FLAG_NO_HOLE

rng = random.Random(99)
buf = rng.randbytes(16 * M)
h.pwrite(buf, 0)
expected[0:16 * M] = buf
h.flush()

def z(off, n, flags=0):
    h.zero(n, off, flags)
    expected[off:off + n] = bytes(n)
    zeroed.append((off, n))

def t(off, n, flags=0):
    h.trim(n, off, flags)
    expected[off:off + n] = bytes(n)
    zeroed.append((off, n))

# Over data written through the cache.
t(1 * M + 512, 100000)
z(3 * M + 7, 200000, NO_HOLE)
z(5 * M, M, MAY_TRIM)
z(7 * M - 100, 300, nbd.CMD_FLAG_FUA | NO_HOLE)
z(4 * M - 5000, 10000, nbd.CMD_FLAG_FUA | MAY_TRIM)
t(8 * M - 3, 6, nbd.CMD_FLAG_FUA)
t(12 * M, 64 * 1024, nbd.CMD_FLAG_FUA)
z(9 * M + 1, 2 * M, nbd.CMD_FLAG_FAST_ZERO | NO_HOLE)
z(13 * M + 11, 1, NO_HOLE)
# Over data that only the plugin has.
z(20 * M + 3, 500000, NO_HOLE)
t(24 * M - 1000, 2000)
z(28 * M, 8 * M + 5, MAY_TRIM)
t(40 * M + 4096, 3 * M, nbd.CMD_FLAG_FUA)
# The last byte of the disk.
z(size - 1, 1)

# Zeroing twice, and trimming zeroes.
z(3 * M + 100, 1000)
t(5 * M + 100, 1000)

# Part of a zeroed range rewritten, and data written over a trim.
buf = rng.randbytes(4096)
h.pwrite(buf, 5 * M + 4096)
expected[5 * M + 4096:5 * M + 8192] = buf
zeroed.remove((5 * M, M))
zeroed += [(5 * M, 4096), (5 * M + 8192, M - 8192)]
buf = rng.randbytes(1000)
h.pwrite(buf, 1 * M + 10000)
expected[1 * M + 10000:1 * M + 11000] = buf
zeroed.remove((1 * M + 512, 100000))
zeroed += [(1 * M + 512, 10000 - 512), (1 * M + 11000, 100000 + 512 - 11000)]

data = [(0, 4096), (2 * M, 4096), (5 * M + 4096, 4096),
        (1 * M + 10000, 1000), (14 * M, M), (48 * M, M)]

check_all(expected, "after trim and zero")
check_extents(zeroed, data, "after trim and zero")
h.flush()

# FUA zero and trim, with no flush before the crash.
z(44 * M + 5, 70000, nbd.CMD_FLAG_FUA)
t(46 * M, 128 * 1024, nbd.CMD_FLAG_FUA)
z(16 * M - 1, 2, nbd.CMD_FLAG_FUA | NO_HOLE)
check_all(expected, "after FUA trim and zero")

with open(tmp + "/expected", "wb") as f:
    f.write(expected)
with open(tmp + "/ranges.json", "w") as f:
    json.dump({"zeroed": zeroed, "data": data}, f)
EOF

cat > "$tmp/check.py" <<'EOF'
exec(open(os.environ["tmp"] + "/lib.py").read())
what = os.environ["what"]
with open(tmp + "/expected", "rb") as f:
    expected = f.read()
with open(tmp + "/ranges.json") as f:
    r = json.load(f)
check_all(expected, what)
check_extents(r["zeroed"], r["data"], what)
EOF
check ()
{
    what="$1" nbdsh --base-allocation -u "$uri" \
        -c 'exec(open(os.environ["tmp"] + "/check.py").read())'
}

# ---------------------------------------------------------------------
# After kill -9.

crash "$pidfile" "$tmp/cache"
start
check "after kill -9"

# Writeback brings the backing file to the expected image (bounded wait).
{ set +x; } 2>/dev/null
converged=
for (( i = 0; i < 120; i++ )); do
    if cmp -s "$tmp/expected" "$tmp/disk"; then converged=1; break; fi
    sleep 0.5
done
set -x
if [ -z "$converged" ]; then
    echo "$0: the backing file did not converge in 60 s"
    cmp "$tmp/expected" "$tmp/disk" || :
    exit 1
fi
check "after writeback"

# ---------------------------------------------------------------------
# After a clean restart.

stop "$pidfile" "$tmp/cache"
start
check "after restart"
kill_nbdkit "$pidfile"
