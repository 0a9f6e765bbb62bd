#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A cache file copied sparse (cp --sparse=always) has holes where it
# held zeroes; a store into one, or on tmpfs even a read through the
# mapping, raises SIGBUS once the filesystem is full.
#  A. A sparse copy of a cache holding dirty data: pcachectl info, check
#     and dump refuse it, naming the file, and leave it sparse; nbdkit
#     opens it, serves the data and leaves it fully allocated.
#  B. (root) The sparse copy on a small tmpfs that cannot hold it whole:
#     nbdkit and pcachectl fail with an error naming the file (ENOSPC
#     where they would allocate), never by a signal.  So does nbdkit
#     given an empty file there to make a cache of, which stays empty.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires nbdkit --filter=error null --version
requires stat --version

requires_pcachectl
requires_drain_backend file
tmpdir

# allocated FILE: true if every byte of FILE has a block.
allocated ()
{
    local blocks unit size
    read -r blocks unit size < <(stat -c '%b %B %s' "$1")
    [ $((blocks * unit)) -ge "$size" ]
}

# has_holes FILE (a function: "! allocated" would not stop set -e).
has_holes ()
{
    ! allocated "$1"
}

cat >"$tmp/model.py" <<'EOF'
MiB = 1048576
extents = [(MiB, b"S" * 65536), (5 * MiB + 512, b"T" * 4096)]

def writes(h):
    for off, data in extents:
        h.pwrite(data, off)
    h.flush()

def verify(h):
    for off, data in extents:
        assert h.pread(len(data), off) == data, "offset %d" % off
    print("verified")
EOF
truncate -s 64M "$tmp/disk.img"

# pcache [CACHE] [NBDKIT-ARGS...]: nbdkit with pcache over the disk, all
# of whose writes fail, so the data stays dirty in the cache and reads
# of it can only come from there.
pcache ()
{
    local cache=$1
    shift
    nbdkit -U - --filter="$PCACHE_FILTER" --filter=error \
        file "$tmp/disk.img" error-pwrite=EIO error-pwrite-rate=100% \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-data-crc=true "$@"
}

pcache "$tmp/cache" \
    --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/model.py\").read()); writes(h)"'
allocated "$tmp/cache"

# ---------------------------------------------------------------------
# A.

cp --sparse=always "$tmp/cache" "$tmp/sparse"
cp --sparse=always "$tmp/cache" "$tmp/sparse2"
has_holes "$tmp/sparse"

for cmd in info check dump; do
    expect_status 1 "$pcachectl" $cmd "$tmp/sparse"
    expect_output "$tmp/sparse: the cache file is sparse"
done
has_holes "$tmp/sparse"

pcache "$tmp/sparse" \
    --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/model.py\").read()); verify(h)"'
allocated "$tmp/sparse"
expect_status 0 "$pcachectl" check "$tmp/sparse"
expect_output ': consistent$'

# pcachectl drain allocates the file itself, then drains it.
expect_status 0 "$pcachectl" drain "$tmp/sparse2" --to "$tmp/disk.img"
allocated "$tmp/sparse2"
python3 - "$tmp/disk.img" <<'EOF'
import sys
MiB = 1048576
with open(sys.argv[1], "rb") as f:
    f.seek(MiB)
    assert f.read(65536) == b"S" * 65536
    f.seek(5 * MiB + 512)
    assert f.read(4096) == b"T" * 4096
EOF
truncate -s 0 "$tmp/disk.img"
truncate -s 64M "$tmp/disk.img"

# ---------------------------------------------------------------------
# B.

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: part B skipped: mounting a small tmpfs needs root"
    exit 77
fi
mkdir "$tmp/small"
if ! mount -t tmpfs -o size=8M tmpfs "$tmp/small"; then
    echo "$0: part B skipped: cannot mount a tmpfs"
    exit 77
fi
cleanup_fn umount "$tmp/small"
cp --sparse=always "$tmp/cache" "$tmp/small/cache"
has_holes "$tmp/small/cache"

expect_status 1 pcache "$tmp/small/cache" --run 'nbdsh -u "$uri" -c "pass"'
expect_output "$tmp/small/cache: the cache file is sparse .*No space left on device"

pcachectl_refuses "$tmp/small/cache" "$tmp/disk.img" \
    "$tmp/small/cache: the cache file is sparse"
expect_output "$tmp/small/cache: the cache file is sparse .*No space left on device"

# An empty file there cannot be made a cache of either: the error names
# it, and it is left in place, empty.
touch "$tmp/small/empty"
expect_status 1 pcache "$tmp/small/empty" --run 'nbdsh -u "$uri" -c "pass"'
expect_output "$tmp/small/empty: cannot allocate .*No space left on device"
test -e "$tmp/small/empty"
test ! -s "$tmp/small/empty"
