#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Write loads several times larger than the cache.
#
# The cache (24M in 1M segments) is much smaller than the disk (128M),
# so writes must wait for writeback and garbage collection to free
# segments, again and again, and nothing may be lost or mixed up:
#  1. qemu-img convert 128M of random data (backend slowed down by the
#     delay filter), compare through the filter, and again after a
#     clean restart on the same cache;
#  2. the same with pcache-drain=true into a fresh disk: after nbdkit
#     exits, the backing file alone must equal the source;
#  3. 96M of random 4K writes (plus some unaligned ones) all over the
#     disk, checked against a model through the filter and, after a
#     draining exit, on the backing file.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_nbdsh
requires qemu-img --version
requires nbdkit --filter=delay null --version
tmpdir

pcache_args=(pcache-dev="$cache" pcache-size=24M pcache-segment-size=1M)

# start [--delay] [EXTRA-ARGS...]
start ()
{
    local delay=() wdelay=()
    if [ "$1" = "--delay" ]; then
        delay=(--filter=delay)
        wdelay=(wdelay=1ms)
        shift
    fi
    rm -f "$sock"
    start_nbdkit -P "$tmp/pid" -U "$sock" \
        --filter="$PCACHE_FILTER" "${delay[@]}" \
        file "$disk" "${wdelay[@]}" "${pcache_args[@]}" "$@"
}

head -c 128M /dev/urandom > "$tmp/src"
head -c 128M /dev/urandom > "$tmp/src2"

# 1. Through the filter, and again after a clean restart.
truncate -s 128M "$disk"
start --delay
qemu-img convert -n -W -m 8 -f raw -O raw "$tmp/src" "$uri"
qemu-img compare -f raw -F raw "$tmp/src" "$uri"
kill_nbdkit "$tmp/pid"
start
qemu-img compare -f raw -F raw "$tmp/src" "$uri"
kill_nbdkit "$tmp/pid"

# 2. Drain into a fresh disk; the backing file alone has the data.
# No delay filter here: it refuses to sleep once nbdkit shuts down, so
# nothing could be written through it at exit.
rm -f "$disk" "$cache"
truncate -s 128M "$disk"
start pcache-drain=true
qemu-img convert -n -W -m 8 -f raw -O raw "$tmp/src2" "$uri"
qemu-img compare -f raw -F raw "$tmp/src2" "$uri"
kill_nbdkit "$tmp/pid"
cmp "$tmp/src2" "$disk"

# 3. Random writes over that disk, through the (drained) cache.  The
# model starts as the disk's content; at the end it is saved to a file
# to compare with the backing file.
seed=$RANDOM
start pcache-drain=true
nbdsh -u "$uri" -c - <<EOF
import random

size = h.get_size()
assert size == 128 * 1024 * 1024
rng = random.Random($seed)
with open("$disk", "rb") as f:
    model = bytearray(f.read())

total = 0
while total < 96 * 1024 * 1024:
    if rng.randrange(8) == 0:
        # Unaligned: any offset, 1 byte to 12K.
        n = rng.randint(1, 12288)
        off = rng.randrange(size - n + 1)
    else:
        n = 4096
        off = rng.randrange(size // 4096) * 4096
    buf = rng.randbytes(n)
    h.pwrite(buf, off)
    model[off:off + n] = buf
    total += n
h.flush()

step = 1024 * 1024
for off in range(0, size, step):
    if h.pread(step, off) != model[off:off + step]:
        raise SystemExit("data differs from the model in [%d, %d)"
                         % (off, off + step))
with open("$tmp/model", "wb") as f:
    f.write(model)
EOF
kill_nbdkit "$tmp/pid"
cmp "$tmp/model" "$disk"
