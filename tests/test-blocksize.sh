#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# A plugin with block size constraints (nbdkit-blocksize-policy-filter
# below pcache: 4K minimum, 64K maximum, misfits refused).
#
# A write that write-back could never send to such a plugin must not be
# acknowledged from the cache: it would stay dirty for ever.
#  1. pcache advertises the plugin's constraints and refuses, with
#     EINVAL and a logged reason, every request the plugin would refuse:
#     reads and writes not aligned to 4K or over 64K, zero, trim and
#     block status not aligned.  Requests that fit are served, written back by a drain,
#     and reach the file.
#  2. nbdkit-blocksize-filter below pcache takes unaligned requests for
#     such a plugin: pcache then sees no minimum, and a 512-byte write
#     is acknowledged, written back and on the file.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires_filter_built
requires_pcachectl
requires_nbdsh
requires nbdkit --filter=blocksize-policy null --version
requires nbdkit --filter=blocksize null --version
tmpdir

ctl=$tmp/ctl
truncate -s 64M "$disk"

start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" --filter=blocksize-policy \
    file "$disk" \
    blocksize-minimum=4096 blocksize-maximum=65536 \
    blocksize-error-policy=error \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
    pcache-control="$ctl" pcache-writeback-percent=100 2>"$tmp/nbdkit.log"

# 1. Misfits are refused, the rest is served.
nbdsh --base-allocation -u "$uri" -c '
import errno

assert h.get_block_size(nbd.SIZE_MINIMUM) == 4096
assert h.get_block_size(nbd.SIZE_MAXIMUM) == 65536
# Send what libnbd would otherwise refuse before the server sees it.
h.set_strict_mode(0)

def refused(what, f):
    try:
        f()
    except nbd.Error as e:
        assert e.errnum == errno.EINVAL, (what, e)
        return
    raise AssertionError("%s was accepted" % what)

refused("a short write", lambda: h.pwrite(b"a" * 512, 0))
refused("a misaligned write", lambda: h.pwrite(b"a" * 4096, 512))
refused("a write over the maximum", lambda: h.pwrite(b"a" * 131072, 0))
refused("a short zero", lambda: h.zero(512, 0))
refused("a misaligned trim", lambda: h.trim(4096, 1024))
refused("a short read", lambda: h.pread(512, 0))
refused("a read over the maximum", lambda: h.pread(131072, 0))
refused("misaligned block status",
        lambda: h.block_status(4096, 512, lambda *a: 0))

h.pwrite(b"b" * 65536, 1 << 20)
h.pwrite(b"c" * 4096, (1 << 20) + 4096, nbd.CMD_FLAG_FUA)
h.zero(1 << 20, 4 << 20)      # over the maximum, which binds only data
h.trim(8192, 8 << 20)
h.flush()
assert h.pread(65536, 1 << 20) == b"b" * 4096 + b"c" * 4096 + b"b" * 57344
'
# A write-back that could not send something would fail here.
"$pcachectl" drain --timeout=10 "$ctl"
"$pcachectl" stats "$ctl" --pretty | grep -F '"dirty_bytes": 0,'
kill_nbdkit "$pidfile"
cat "$tmp/nbdkit.log"
for what in 'pwrite request rejected: count 512 is not a multiple' \
            'pwrite request rejected: offset 512 is not a multiple' \
            'pwrite request rejected: count 131072 is larger than' \
            'zero request rejected: count 512' \
            'trim request rejected: offset 1024' \
            'pread request rejected: count 512' \
            'pread request rejected: count 131072' \
            'extents request rejected: offset 512'; do
    grep -F "$what" "$tmp/nbdkit.log"
done
grep -F "minimum block size 4096" "$tmp/nbdkit.log"
grep -F "maximum block size 65536" "$tmp/nbdkit.log"
if grep -F 'writeback failed' "$tmp/nbdkit.log"; then
    echo "$0: write-back failed" >&2
    exit 1
fi
# Nothing refused reached the file; the rest did.
cmp -n 1048576 /dev/zero "$disk"
{ head -c 4096 /dev/zero | tr '\0' b; head -c 4096 /dev/zero | tr '\0' c
  head -c 57344 /dev/zero | tr '\0' b; } > "$tmp/expect"
cmp -i 0:1048576 -n 65536 "$tmp/expect" "$disk"

# 2. nbdkit-blocksize-filter below pcache takes unaligned requests.
rm -f "$cache"
start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
    --filter="$PCACHE_FILTER" --filter=blocksize --filter=blocksize-policy \
    file "$disk" minblock=4096 \
    blocksize-minimum=4096 blocksize-error-policy=error \
    pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
    pcache-control="$ctl" pcache-writeback-percent=100 2>"$tmp/nbdkit2.log"
nbdsh -u "$uri" -c '
assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
h.pwrite(b"d" * 512, 512)
h.flush()
'
"$pcachectl" drain --timeout=10 "$ctl"
kill_nbdkit "$pidfile"
cat "$tmp/nbdkit2.log"
cmp -n 512 /dev/zero "$disk"
cmp -i 0:512 -n 512 <(head -c 512 /dev/zero | tr '\0' d) "$disk"
if grep -F 'rejected' "$tmp/nbdkit2.log"; then
    echo "$0: a request was refused" >&2
    exit 1
fi
