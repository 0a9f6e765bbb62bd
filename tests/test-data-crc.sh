#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache-data-crc=true: every cache hit is checked.  A byte of the cache
# file is flipped while nbdkit is stopped, under a clean extent (cached
# by a read) and under a dirty one (a write that the error filter keeps
# from being written back).  After a restart, the clean range reads as
# the backend's data, the dirty one fails with EIO (every time), and the
# crc_errors statistic counts each bad extent once.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires nbdkit file --version
requires python3 -c 'pass'
requires_pcachectl
tmpdir

MiB=1048576
CLEAN=$((1 * MiB))              # cached by a read: 64 KiB of the backend
DIRTY=$((4 * MiB))              # written: 64 KiB of "D"

# A 16M backing store of 0xab bytes.
head -c $((16 * MiB)) /dev/zero | tr '\0' '\253' >"$disk"

# run NBDSH-SCRIPT: nbdkit over the disk with the cache, every write to
# the plugin failing so that dirty data stays dirty.
run ()
{
    script=$1 nbdkit -U - --filter="$PCACHE_FILTER" --filter=error \
        file "$disk" error-pwrite=EIO error-pwrite-rate=100% \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-data-crc=true pcache-stats="$tmp/stats" \
        --run 'nbdsh -u "$uri" -c "$script"'
}

run "
assert h.pread(65536, $CLEAN) == b'\xab' * 65536
h.pwrite(b'D' * 65536, $DIRTY)
h.flush()
assert h.pread(65536, $DIRTY) == b'D' * 65536
"

# Where the payloads are in the file: the dump gives each key's segment
# and offset in it; the superblock (format.h) where segment 0 starts.
expect_status 0 "$pcachectl" dump --json "$cache"
python3 - "$tmp/out" "$cache" $CLEAN $DIRTY <<'EOF'
import json, struct, sys

out, cache, clean, dirty = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
keys = [json.loads(l) for l in open(out) if l.startswith("{")]
with open(cache, "r+b") as f:
    sb = f.read(64)
    seg_shift, = struct.unpack_from("<I", sb, 20)
    seg_area_off, = struct.unpack_from("<Q", sb, 48)
    for off, dirty_want in ((clean, False), (dirty, True)):
        k, = [k for k in keys if k["offset"] == off and not k["zero"]]
        assert k["dirty"] == dirty_want, k
        assert k["length"] == 65536, k
        pos = seg_area_off + (k["segment"] << seg_shift) + k["segment_offset"]
        f.seek(pos + 1000)
        b = f.read(1)
        f.seek(pos + 1000)
        f.write(bytes([b[0] ^ 0x01]))
EOF

# Opening does not read payloads: the cache opens.  The clean range
# reads as the backend's data (and is cached again), the dirty one fails
# with EIO each time, while the rest of the disk reads on.
run "
import errno

def eio(off, n):
    try:
        h.pread(n, off)
    except nbd.Error as e:
        assert e.errno in ('EIO', errno.EIO), e
        return
    raise AssertionError('read at %d did not fail' % off)

assert h.pread(4096, $CLEAN + 8192) == b'\xab' * 4096
assert h.pread(65536, $CLEAN) == b'\xab' * 65536
assert h.pread(65536, $CLEAN) == b'\xab' * 65536
eio($DIRTY, 512)
eio($DIRTY + 60000, 4096)
assert h.pread(4096, $DIRTY + 65536) == b'\xab' * 4096
"
python3 - "$tmp/stats" <<'EOF'
import json, sys
st = json.load(open(sys.argv[1]))
assert st["crc_errors"] == 2, st
EOF

# The dirty extent is still in the cache, for pcachectl check to report.
expect_status 1 "$pcachectl" check "$cache"
expect_output "payload checksum mismatch.*dirty"
