#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcachectl drain --to an NBD server keeps write-back's requests in
# flight side by side on its connection, as the filter's own
# write-back does, instead of waiting out one round trip at a time.
# Through nbdkit's log filter, over a store whose every request takes
# a 100 ms round trip (tests/nbdkit-rtt-filter.c), the log must show a
# write begun while another is still in flight; and the data must then
# read back whole.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires_drain_backend nbd
requires_rtt_filter
tmpdir

# 64 dirty 4K extents, 64K apart so that none merge, in one epoch (no
# flush between them): write-back may write them all at once.
dirty_cache "
for i in range(64):
    h.pwrite(bytes([i + 1]) * 4096, i * 65536)
h.flush()
"
expect_status 0 "$pcachectl" info "$cache"
grep -qx 'dirty bytes: *262144 (256.0 KiB)' "$tmp/out"

truncate -s 16M "$disk"
start_nbdkit -P "$pidfile" -U "$sock" --filter=log --filter="$rtt_filter" \
    file "$disk" rtt=100ms logfile="$tmp/log"
expect_status 0 "$pcachectl" drain "$cache" \
    --to "nbd+unix:///?socket=$sock"
nbdsh -u "nbd+unix:///?socket=$sock" -c '
for i in range(64):
    assert h.pread(4096, i * 65536) == bytes([i + 1]) * 4096, i
'
kill_nbdkit "$pidfile"

# The most writes in flight at once: the log has a line as each
# request reaches the filter, and one ("...Write") as it is answered.
max=$(awk '/ connection=[0-9]+ Write id=/ { if (++n > m) m = n }
           / connection=[0-9]+ \.\.\.Write id=/ { n-- }
           END { print m + 0 }' "$tmp/log")
echo "at most $max writes in flight"
test "$max" -gt 1
