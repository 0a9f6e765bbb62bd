#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Segment generation records hold two copies, both the newest.
#  A. One slot of the record of a segment holding flushed dirty data
#     flipped (either slot): nbdkit opens the cache and serves the data.
#  B. Both slots flipped: nbdkit and pcachectl check refuse, naming the
#     segment; pcachectl drain writes back what the checksums prove:
#     with data-crc, everything (the payload matches); a payload that
#     does not match, or a cache without data-crc, is skipped and
#     reported, and drain fails.  The cache itself is left unchanged.
#
# The data is written through nbdkit with every plugin write failing,
# so it stays dirty in the cache.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires nbdkit --filter=error null --version
requires cmp --version

requires_pcachectl
requires_drain_backend file
tmpdir

cat >"$tmp/model.py" <<'EOF'
MiB = 1048576
extents = [(MiB, b"S" * 65536), (5 * MiB + 512, b"T" * 4096)]

def writes(h):
    for off, data in extents:
        h.pwrite(data, off)
    h.zero(65536, 9 * MiB)
    h.flush()

def verify(read):
    for off, data in extents:
        assert read(len(data), off) == data, "offset %d" % off
    print("verified")

def verify_file(path):
    with open(path, "rb") as f:
        def read(n, off):
            f.seek(off)
            return f.read(n)
        verify(read)
EOF
# flip.py CACHE SEG SLOT...: flip a bit of the generation of segment SEG
# in each SLOT (the segment table is at 16 KiB, 32 bytes a segment).
cat >"$tmp/flip.py" <<'EOF'
import sys
path, seg, slots = sys.argv[1], int(sys.argv[2]), map(int, sys.argv[3:])
with open(path, "r+b") as f:
    for slot in slots:
        off = 16384 + seg * 32 + slot * 16 + 8
        f.seek(off)
        b = f.read(1)
        f.seek(off)
        f.write(bytes([b[0] ^ 4]))
EOF
# A 64M backing store full of 0xff, so zeroes and data both show.
head -c 64M /dev/zero | tr '\0' '\377' >"$tmp/pristine.img"

# pcache CACHE [NBDKIT-ARGS...]: pcache over disk.img, every write to
# which fails.
pcache ()
{
    local cache=$1
    shift
    nbdkit -U - --filter="$PCACHE_FILTER" --filter=error \
        file "$tmp/disk.img" error-pwrite=EIO error-pwrite-rate=100% \
        error-zero=EIO error-zero-rate=100% \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M "$@"
}

# make_cache CACHE DATA-CRC: the writes above, all dirty.
make_cache ()
{
    cp "$tmp/pristine.img" "$tmp/disk.img"
    pcache "$1" pcache-data-crc="$2" \
        --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/model.py\").read()); writes(h)"'
    cmp "$tmp/disk.img" "$tmp/pristine.img"
}

# The segment holding the payload of the extent at 1 MiB.
data_seg ()
{
    "$pcachectl" dump --dirty "$1" | awk '!/^#/ && $3 == 1048576 { split($5, a, ":"); print a[1] }'
}

serves_data ()
{
    pcache "$1" \
        --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/model.py\").read()); verify(h.pread)"'
}

make_cache "$tmp/crc" true
make_cache "$tmp/plain" false
seg=$(data_seg "$tmp/crc")
pseg=$(data_seg "$tmp/plain")
test -n "$seg"
test -n "$pseg"
# Payload extents in that segment of the plain cache (the T extent may
# share it or not).
pn=$("$pcachectl" dump --dirty "$tmp/plain" | awk -v s="$pseg" '!/^#/ { split($5, a, ":"); if ($5 != "-" && a[1] == s) n++ } END { print n }')

# ---------------------------------------------------------------------
# A. One slot.

for slot in 0 1; do
    cp "$tmp/plain" "$tmp/one"
    python3 "$tmp/flip.py" "$tmp/one" "$pseg" $slot
    serves_data "$tmp/one"
    expect_status 0 "$pcachectl" check "$tmp/one"
done

# ---------------------------------------------------------------------
# B. Both slots.

cp "$tmp/crc" "$tmp/both"
python3 "$tmp/flip.py" "$tmp/both" "$seg" 0 1
cp "$tmp/both" "$tmp/both.orig"
expect_status 1 serves_data "$tmp/both"
expect_output "generation record of segment $seg is corrupt in both slots"
expect_status 1 "$pcachectl" check "$tmp/both"
expect_output "generation record of segment $seg is corrupt in both slots"
expect_output "pcachectl drain can still write back"

# With data-crc: everything is proven and written back.
cp "$tmp/pristine.img" "$tmp/disk.img"
expect_status 0 "$pcachectl" drain "$tmp/both" --to "$tmp/disk.img"
expect_output 'rescue: 1 segment lost its generation record; wrote back 3 dirty extents .*skipped 0 '
expect_output 'format it again'
python3 -c "exec(open('$tmp/model.py').read()); verify_file('$tmp/disk.img')"
python3 - "$tmp/disk.img" <<'EOF'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(9 * 1048576)
    assert f.read(65536) == bytes(65536), "zeroed range"
EOF
cmp "$tmp/both" "$tmp/both.orig"

# A payload in the lost segment that no longer matches its checksum is
# skipped, the rest is written back.
cp "$tmp/both.orig" "$tmp/bad"
python3 - "$tmp/bad" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    d = f.read()
    i = d.find(b"S" * 65536)
    assert i > 0
    f.seek(i + 100)
    f.write(b"X")
EOF
cp "$tmp/pristine.img" "$tmp/disk.img"
expect_status 1 "$pcachectl" drain "$tmp/bad" --to "$tmp/disk.img"
expect_output "dirty extent at offset 1048576, length 65536 \(segment $seg\): skipped, the generation record of its segment is lost, and the payload does not match its checksum"
expect_output 'wrote back 2 dirty extents .*skipped 1 \(64.0 KiB\), whose data is lost'
python3 - "$tmp/disk.img" <<'EOF'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(1048576)
    assert f.read(65536) == b"\xff" * 65536
    f.seek(5 * 1048576 + 512)
    assert f.read(4096) == b"T" * 4096
EOF

# Without data-crc nothing proves the payload of the lost segment.
python3 "$tmp/flip.py" "$tmp/plain" "$pseg" 0 1
cp "$tmp/pristine.img" "$tmp/disk.img"
expect_status 1 "$pcachectl" drain "$tmp/plain" --to "$tmp/disk.img"
expect_output "offset 1048576, length 65536 \(segment $pseg\): skipped, the generation record of its segment is lost, and without data-crc"
expect_output "wrote back $((3 - pn)) dirty extents? .*skipped $pn "
python3 - "$tmp/disk.img" <<'EOF'
import sys
with open(sys.argv[1], "rb") as f:
    f.seek(1048576)
    assert f.read(65536) == b"\xff" * 65536
    f.seek(9 * 1048576)
    assert f.read(65536) == bytes(65536), "zeroed range"
EOF
