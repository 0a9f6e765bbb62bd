#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A pcachectl built without liburing or libnbd (configure
# --without-liburing, --without-libnbd) refuses a drain to the kind of
# backing store it cannot reach with an error naming the library, and
# leaves the cache's dirty data alone.  Skipped when both are built in.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
if [ "${PCACHE_HAVE_LIBURING:-yes}" = yes ] &&
   [ "${PCACHE_HAVE_LIBNBD:-yes}" = yes ]; then
    echo "$0: test skipped: pcachectl has both drain backends"
    exit 77
fi
tmpdir

# A cache with dirty data: the error filter fails every write-back.
nbdkit -U - --filter="$PCACHE_FILTER" --filter=error memory 16M \
       error-pwrite-rate=1 \
       pcache-dev="$tmp/cache" pcache-size=16M pcache-segment-size=1M \
       --run 'nbdsh -u "$uri" -c "h.pwrite(b\"D\" * 4096, 0)" -c "h.flush()"'
truncate -s 16M "$tmp/disk.img"
expect_status 0 "$pcachectl" info "$tmp/cache"
grep -qx 'dirty bytes: *4096 (4.0 KiB)' "$tmp/out"

if [ "${PCACHE_HAVE_LIBURING:-yes}" != yes ]; then
    expect_status 1 "$pcachectl" drain "$tmp/cache" --to "$tmp/disk.img"
    grep -qF "built without liburing" "$tmp/out"
fi
if [ "${PCACHE_HAVE_LIBNBD:-yes}" != yes ]; then
    expect_status 1 "$pcachectl" drain "$tmp/cache" \
                  --to "nbd+unix:///?socket=$tmp/none.sock"
    grep -qF "built without libnbd" "$tmp/out"
fi
# Still dirty, still valid.
expect_status 0 "$pcachectl" info "$tmp/cache"
grep -qx 'dirty bytes: *4096 (4.0 KiB)' "$tmp/out"
expect_status 0 "$pcachectl" check "$tmp/cache"
