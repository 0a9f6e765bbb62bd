#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache-drain=true empties the cache at exit; a clean exit without it
# keeps dirty data in the cache.
#  A. Write, exit with pcache-drain=true: the backing file has the data.
#     Then change the backing file behind pcache's back (punch a hole
#     in written data, overwrite other written data) and restart on
#     the same cache: the extents and the data seen through pcache
#     must be the backing file's new ones, i.e. nothing stale is left.
#  B. With every backend write failing (error filter below pcache),
#     write, shut down cleanly without drain: the backing file is
#     untouched, and the data is still served after a restart (still
#     with failing writes, so it can only come from the cache); a
#     draining restart without the error filter then writes it back.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_nbdsh
requires nbdinfo --version
requires nbdcopy --version
requires nbdkit --filter=error null --version
requires fallocate --help
tmpdir

pcache_args=(pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M)

# start [--errors] [EXTRA-ARGS...]
start ()
{
    local errfilter=() errargs=()
    if [ "$1" = "--errors" ]; then
        errfilter=(--filter=error)
        errargs=(error-pwrite=EIO error-pwrite-rate=100%)
        shift
    fi
    rm -f "$sock"
    start_nbdkit -P "$tmp/pid" -U "$sock" \
        --filter="$PCACHE_FILTER" "${errfilter[@]}" \
        file "$disk" "${errargs[@]}" "${pcache_args[@]}" "$@"
}

# write_data EXPECTED: write random data in a few places, flush, and
# save what the whole disk should then hold to EXPECTED.
write_data ()
{
    nbdsh -u "$uri" -c - <<EOF
import os

size = h.get_size()
model = bytearray(size)
for off, n in [(0, 1 << 20), (8 << 20, 4 << 20), (20 << 20, 65536),
               ((30 << 20) + 123, 1000)]:
    buf = os.urandom(n)
    h.pwrite(buf, off)
    model[off:off + n] = buf
h.flush()
with open("$1", "wb") as f:
    f.write(model)
EOF
}

# The map of the backing file, straight from the file plugin.
file_map ()
{
    nbdkit -U - file "$disk" --run 'nbdinfo --map "$uri"'
}

# A. Drain, then no stale data.
truncate -s 32M "$disk"
start pcache-drain=true
write_data "$tmp/expected"
kill_nbdkit "$tmp/pid"
cmp "$tmp/expected" "$disk"

fallocate -p -o 8M -l 2M "$disk"
head -c 1M /dev/urandom > "$tmp/new"
dd if="$tmp/new" of="$disk" conv=notrunc
file_map > "$tmp/map.file"
cat "$tmp/map.file"
# The punched hole (8M-10M) must have joined the hole after the first
# 1M, or the map comparison proves nothing.
grep -E '^ +1048576 +9437184 +3 +hole,zero$' "$tmp/map.file"

start
nbdinfo --map "$uri" > "$tmp/map.pcache"
cat "$tmp/map.pcache"
diff -u "$tmp/map.file" "$tmp/map.pcache"
nbdcopy "$uri" "$tmp/read"
cmp "$disk" "$tmp/read"
kill_nbdkit "$tmp/pid"

# B. A clean exit without drain keeps dirty data.
rm -f "$disk" "$cache"
truncate -s 32M "$disk"
start --errors
write_data "$tmp/expected"
kill_nbdkit "$tmp/pid"
cmp -n 32M "$disk" /dev/zero

start --errors
nbdcopy "$uri" "$tmp/read"
cmp "$tmp/expected" "$tmp/read"
kill_nbdkit "$tmp/pid"
cmp -n 32M "$disk" /dev/zero

start pcache-drain=true
nbdcopy "$uri" "$tmp/read"
cmp "$tmp/expected" "$tmp/read"
kill_nbdkit "$tmp/pid"
cmp "$tmp/expected" "$disk"
