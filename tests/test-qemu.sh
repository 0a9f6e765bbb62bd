#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: qemu-img convert into the cache, compare through it, across a
# restart, and check that continuous writeback makes the backing file
# equal to the source.  With pcache-drain=true the backing file equals
# the source as soon as nbdkit has exited.
#
# The backing files start full of other random data, so the zero runs
# of the source must really be written (as zeroes or write-zeroes).

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires qemu-img --version
requires cmp --version
requires nbdkit file --version
requires flock --version

tmpdir
export tmp

# A 64 MiB source: random data with some zero runs.
src=$tmp/src.img
dd if=/dev/urandom of="$src" bs=1M count=64 status=none
dd if=/dev/zero of="$src" bs=1M seek=8 count=8 conv=notrunc status=none
dd if=/dev/zero of="$src" bs=4096 seek=$((40 * 256 + 3)) count=5 \
   conv=notrunc status=none
dd if=/dev/zero of="$src" bs=1M seek=60 count=1 conv=notrunc status=none

# new_disk FILE: a 64 MiB backing file of other random data.
new_disk ()
{
    dd if=/dev/urandom of="$1" bs=1M count=64 status=none
}

# converge SRC DISK: poll (up to 60 s) until DISK equals SRC.  A script,
# so that the --run commands (run by sh) can use it too.
cat > "$tmp/converge" <<'EOF'
for (( i = 0; i < 120; i++ )); do
    if cmp -s "$1" "$2"; then exit 0; fi
    sleep 0.5
done
echo "$0: $2 did not converge to $1 in 60 s"
cmp "$1" "$2"
exit 1
EOF

# stop PIDFILE CACHE: SIGTERM nbdkit, and wait for its cache to be free.
stop () { kill_nbdkit "$1"; wait_unlocked "$2"; }

# ---------------------------------------------------------------------
# Copy into the cache and compare, in one nbdkit run; writeback is
# continuous, so the backing file converges while nbdkit runs.

disk=$tmp/disk.img
new_disk "$disk"
pcache=(--filter="$PCACHE_FILTER" file "$disk"
        pcache-dev="$tmp/cache" pcache-size=256M)

nbdkit -U - "${pcache[@]}" --run '
    qemu-img convert -n -f raw -O raw "$tmp/src.img" "$uri" &&
    qemu-img compare -f raw -F raw "$tmp/src.img" "$uri" &&
    bash "$tmp/converge" "$tmp/src.img" "$tmp/disk.img"
'

# After a clean exit and a restart on the same cache.
nbdkit -U - "${pcache[@]}" --run '
    qemu-img compare -f raw -F raw "$tmp/src.img" "$uri"
'
qemu-img compare -f raw -F raw "$src" "$disk"

# ---------------------------------------------------------------------
# The same with nbdkit in the background, polling the backing file
# from outside, then comparing after a restart.

disk3=$tmp/disk3.img
new_disk "$disk3"
pcache3=(--filter="$PCACHE_FILTER" file "$disk3"
         pcache-dev="$tmp/cache3" pcache-size=256M)
uri3="nbd+unix://?socket=$tmp/sock"

rm -f "$tmp/sock"
start_nbdkit -P "$tmp/pid" -U "$tmp/sock" "${pcache3[@]}"
qemu-img convert -n -f raw -O raw "$src" "$uri3"
qemu-img compare -f raw -F raw "$src" "$uri3"
bash "$tmp/converge" "$src" "$disk3"
stop "$tmp/pid" "$tmp/cache3"

rm -f "$tmp/sock"
start_nbdkit -P "$tmp/pid" -U "$tmp/sock" "${pcache3[@]}"
qemu-img compare -f raw -F raw "$src" "$uri3"
kill_nbdkit "$tmp/pid"
qemu-img compare -f raw -F raw "$src" "$disk3"

# ---------------------------------------------------------------------
# pcache-drain=true: everything is on the backing file at exit.

disk2=$tmp/disk2.img
new_disk "$disk2"
nbdkit -U - --filter="$PCACHE_FILTER" file "$disk2" \
       pcache-dev="$tmp/cache2" pcache-size=256M pcache-drain=true --run '
    qemu-img convert -n -f raw -O raw "$tmp/src.img" "$uri"
'
cmp "$src" "$disk2"
