#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcachectl: info, dump, check (and corruption), drain to a file and to
# an NBD server, the refusals that protect the user, the control socket,
# and the command line.
#
# The cache is made through nbdkit with the error filter failing every
# write to the plugin, so nothing is written back: everything stays
# dirty in the cache for pcachectl to find.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires python3 -c 'pass'

requires_pcachectl
requires_drain_backend file
requires_drain_backend nbd
tmpdir

MiB=1048576

# The writes, and what a backing store that started as 0xff bytes must
# read back once they are written back.  The trimmed range may read as
# anything.
cat >"$tmp/model.py" <<'EOF'
MiB = 1048576

def writes(h):
    h.pwrite(b"A" * 65536, 0)
    h.pwrite(b"B" * 4096, MiB + 512)
    h.flush()
    h.pwrite(b"C" * 1000, 3 * MiB + 100)
    h.zero(65536, 8 * MiB)
    h.trim(65536, 10 * MiB)
    h.pwrite(b"E" * 4096, 0)
    h.flush()

def verify(read):
    ff = b"\xff"
    checks = [
        (0, b"E" * 4096),
        (4096, b"A" * 61440),
        (65536, ff * 4096),
        (MiB + 512, b"B" * 4096),
        (MiB, ff * 512),
        (3 * MiB + 100, b"C" * 1000),
        (3 * MiB, ff * 100),
        (8 * MiB, bytes(65536)),
        (8 * MiB - 512, ff * 512),
        (8 * MiB + 65536, ff * 512),
        (20 * MiB, ff * 65536),
    ]
    for off, want in checks:
        got = read(len(want), off)
        assert got == want, "offset %d: %r... != %r..." % (off, got[:8], want[:8])
    print("verified")

def verify_file(path):
    with open(path, "rb") as f:
        def read(n, off):
            f.seek(off)
            return f.read(n)
        verify(read)

def pristine_file(path):
    with open(path, "rb") as f:
        assert f.read() == b"\xff" * (64 * MiB), "backing store was written"
    print("pristine")
EOF

# A 64M backing store full of 0xff.
head -c $((64 * MiB)) /dev/zero | tr '\0' '\377' >"$tmp/pristine.img"
cp "$tmp/pristine.img" "$tmp/disk.img"

# make_cache CACHE [FILTER-ARGS...]: a 32M cache with 1M segments and
# data checksums, holding the writes above, all dirty.
make_cache ()
{
    local cache=$1
    shift
    nbdkit -U - --filter="$PCACHE_FILTER" --filter=error \
        file "$tmp/disk.img" error-pwrite=EIO error-pwrite-rate=100% \
        pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
        pcache-data-crc=true "$@" \
        --run 'nbdsh -u "$uri" -c "exec(open(\"'"$tmp"'/model.py\").read()); writes(h)"'
}

make_cache "$tmp/cache"
python3 -c "exec(open('$tmp/model.py').read()); pristine_file('$tmp/disk.img')"

# ---------------------------------------------------------------------
# info

expect_status 0 "$pcachectl" info "$tmp/cache"
expect_output '^format version: +2$'
expect_output "^export 0: +'', 64.0 MiB, dirty "
expect_output '^features: +data-crc$'
expect_output '^backing size: +67108864 '
expect_output '^segment size: +1048576 '
expect_output '^dirty bytes: +[1-9][0-9]*'
expect_output '^key head: +[0-9]+:[0-9]+ \(seq [0-9]+\)$'

expect_status 0 "$pcachectl" info --json "$tmp/cache"
expect_output '"dirty_bytes":[1-9][0-9]*'
expect_output '"data_crc":true'
python3 -c "import json, sys; d = json.load(open('$tmp/out')); assert d['dirty_keys'] == 6, d"
python3 -c "import json; d = json.load(open('$tmp/out')); e = d['exports']; \
assert len(e) == 1 and e[0]['name'] == '' and e[0]['dirty_bytes'] == d['dirty_bytes'], d"

# A missing cache is an error, and is not created.
expect_status 1 "$pcachectl" info "$tmp/nonexistent"
expect_output 'No such file'
test ! -e "$tmp/nonexistent"
# So is an empty file, which stays empty.
touch "$tmp/empty"
pcachectl_refuses "$tmp/empty" "$tmp/nonexistent" \
    "$tmp/empty: is an empty file, not a cache"
test ! -s "$tmp/empty"

# ---------------------------------------------------------------------
# dump

expect_status 0 "$pcachectl" dump --dirty "$tmp/cache"
offsets=$(awk '!/^#/ { print $3 }' "$tmp/out" | sort -n | tr '\n' ' ')
test "$offsets" = "0 0 1049088 3145828 8388608 10485760 "
awk '!/^#/ && $3 == 8388608' "$tmp/out" | grep -q 'dirty,zero'
awk '!/^#/ && $3 == 10485760' "$tmp/out" | grep -q 'dirty,trim'
awk '!/^#/ && $3 == 3145828' "$tmp/out" | grep -Eq " 1000 .*dirty +''$"
# The export column: every key is of export "" here.
test "$(awk '!/^#/ && $8 != "'"''"'"' "$tmp/out" | wc -l)" -eq 0
expect_status 0 "$pcachectl" dump --json "$tmp/cache"
test "$(grep -c '"dirty":true' "$tmp/out")" -eq 6

# ---------------------------------------------------------------------
# check

expect_status 0 "$pcachectl" check "$tmp/cache"
expect_output ': consistent$'
expect_output 'payload checksums? verified'

# A bad byte in a payload: the data checksum catches it.
cp "$tmp/cache" "$tmp/bad-payload"
python3 - "$tmp/bad-payload" <<'EOF'
import sys
with open(sys.argv[1], "r+b") as f:
    d = f.read()
    i = d.find(b"C" * 1000)
    assert i > 0
    f.seek(i + 500)
    f.write(b"X")
EOF
expect_status 1 "$pcachectl" check "$tmp/bad-payload"
expect_output 'problem'
expect_output 'payload checksum mismatch'
expect_output 'offset 3145828'

# A bad byte in the first kset of the log: replay would end the log
# there, and silently drop the ksets after it.
cp "$tmp/cache" "$tmp/bad-kset"
python3 - "$tmp/bad-kset" <<'EOF'
import struct, sys
with open(sys.argv[1], "r+b") as f:
    d = bytearray(f.read())
    pos = 0
    while True:
        i = d.find(b"KSET", pos)
        assert i > 0, "first kset not found"
        h = i - 4
        if h % 64 == 0 and struct.unpack_from("<Q", d, h + 8)[0] == 1:
            break
        pos = i + 1
    f.seek(h + 32 + 8)          # length of its first key
    f.write(b"\x99")
EOF
expect_status 1 "$pcachectl" check "$tmp/bad-kset"
expect_output 'key log is damaged|cut the log short'

# ---------------------------------------------------------------------
# drain to a file

# Wrong size: refused, nothing written.
truncate -s 32M "$tmp/small.img"
cp "$tmp/cache" "$tmp/c-small"
expect_status 1 "$pcachectl" drain "$tmp/c-small" --to "$tmp/small.img"
expect_output 'holds it as 67108864 bytes'
test "$(stat -c %s "$tmp/small.img")" -eq $((32 * MiB))
cmp "$tmp/small.img" <(head -c $((32 * MiB)) /dev/zero)

# The cache itself: refused.
expect_status 1 "$pcachectl" drain "$tmp/c-small" --to "$tmp/c-small"
expect_output 'the cache itself'

cp "$tmp/cache" "$tmp/c-file"
expect_status 0 "$pcachectl" drain "$tmp/c-file" --to "$tmp/disk.img"
expect_output 'the cache is now empty'
python3 -c "exec(open('$tmp/model.py').read()); verify_file('$tmp/disk.img')"
expect_status 0 "$pcachectl" info --json "$tmp/c-file"
expect_output '"dirty_bytes":0,'
expect_output '"cached_keys":0,'
expect_status 0 "$pcachectl" check "$tmp/c-file"

# --keep: written back, but still cached (clean).
cp "$tmp/pristine.img" "$tmp/disk.img"
cp "$tmp/cache" "$tmp/c-keep"
expect_status 0 "$pcachectl" drain --keep "$tmp/c-keep" --to "$tmp/disk.img"
python3 -c "exec(open('$tmp/model.py').read()); verify_file('$tmp/disk.img')"
expect_status 0 "$pcachectl" info --json "$tmp/c-keep"
expect_output '"dirty_bytes":0,'
expect_output '"cached_keys":[1-9]'
expect_status 0 "$pcachectl" dump --dirty "$tmp/c-keep"
test "$(grep -vc '^#' "$tmp/out")" -eq 0

# ---------------------------------------------------------------------
# drain to an NBD server

cp "$tmp/pristine.img" "$tmp/nbd.img"
start_nbdkit -P "$tmp/nbd.pid" -U "$tmp/nbd.sock" file "$tmp/nbd.img"
cp "$tmp/cache" "$tmp/c-nbd"
expect_status 0 "$pcachectl" drain "$tmp/c-nbd" \
    --to "nbd+unix:///?socket=$tmp/nbd.sock"
nbdsh -u "nbd+unix:///?socket=$tmp/nbd.sock" \
    -c "exec(open('$tmp/model.py').read()); verify(lambda n, off: h.pread(n, off))"
expect_status 0 "$pcachectl" info --json "$tmp/c-nbd"
expect_output '"dirty_bytes":0,'
kill_nbdkit "$tmp/nbd.pid"

# An NBD server of the wrong size is refused too.
start_nbdkit -P "$tmp/mem.pid" -U "$tmp/mem.sock" memory 63M
expect_status 1 "$pcachectl" drain "$tmp/c-small" \
    --to "nbd+unix:///?socket=$tmp/mem.sock"
expect_output 'holds it as 67108864 bytes'
kill_nbdkit "$tmp/mem.pid"

# A server that fails every write: drain gives up after --timeout and
# the data stays dirty in the cache.
cp "$tmp/pristine.img" "$tmp/fail.img"
start_nbdkit -P "$tmp/fail.pid" -U "$tmp/fail.sock" --filter=error \
    file "$tmp/fail.img" error-pwrite=EIO error-pwrite-rate=100%
cp "$tmp/cache" "$tmp/c-fail"
expect_status 1 "$pcachectl" drain "$tmp/c-fail" --timeout=1 \
    --to "nbd+unix:///?socket=$tmp/fail.sock"
expect_output 'still dirty'
kill_nbdkit "$tmp/fail.pid"
expect_status 0 "$pcachectl" dump --dirty "$tmp/c-fail"
test "$(grep -vc '^#' "$tmp/out")" -eq 6

# ---------------------------------------------------------------------
# A cache made for an identified backing store.

cp "$tmp/pristine.img" "$tmp/disk.img"
make_cache "$tmp/c-id" pcache-backing-id=disk-1
expect_status 0 "$pcachectl" info "$tmp/c-id"
expect_output '^backing id: +disk-1$'
expect_status 1 "$pcachectl" drain "$tmp/c-id" --to "$tmp/disk.img"
expect_output 'backing-id'
expect_status 1 "$pcachectl" drain "$tmp/c-id" --to "$tmp/disk.img" \
    --backing-id=disk-2
expect_output 'disk-1'
python3 -c "exec(open('$tmp/model.py').read()); pristine_file('$tmp/disk.img')"
expect_status 0 "$pcachectl" drain "$tmp/c-id" --to "$tmp/disk.img" \
    --backing-id=disk-1
python3 -c "exec(open('$tmp/model.py').read()); verify_file('$tmp/disk.img')"

# ---------------------------------------------------------------------
# A cache held by a running nbdkit: info, check and dump read it live
# and read-only, with a warning; drain refuses it; its control socket
# and stats file work.

cp "$tmp/cache" "$tmp/c-busy"
control=
if nbdkit --filter="$PCACHE_FILTER" null --help 2>&1 |
        grep -q 'pcache-control='; then
    control="pcache-control=$tmp/ctl pcache-stats=$tmp/stats.json"
fi
start_nbdkit -P "$tmp/busy.pid" -U "$tmp/busy.sock" \
    --filter="$PCACHE_FILTER" memory 64M pcache-dev="$tmp/c-busy" $control
# Some writes and reads while the checks below look.
nbdsh -u "nbd+unix://?socket=$tmp/busy.sock" -c '
h.pwrite(b"L" * 65536, 32 * 1048576)
h.flush()
h.pread(4096, 32 * 1048576)
'
live_warning='warning: .*c-busy is in use by a running nbdkit: what is shown is live and may be changing'
expect_status 0 "$pcachectl" info "$tmp/c-busy"
expect_output "$live_warning"
expect_output '^dirty keys: +[0-9]+$'
expect_output '^segments: +[0-9]+ total'
expect_status 0 "$pcachectl" info --json "$tmp/c-busy"
expect_output '^\{"path":.*"dirty_keys":[0-9]+'
expect_status 0 "$pcachectl" dump "$tmp/c-busy"
expect_output "$live_warning"
expect_output '^ +[0-9]+ +[0-9]+ +33554432 +65536 '
expect_status 0 "$pcachectl" check "$tmp/c-busy"
expect_output "$live_warning"
expect_output ': (consistent|clean)$'
expect_output 'checked live'
# Writing to it is still refused.
expect_status 1 "$pcachectl" drain "$tmp/c-busy" --to "$tmp/disk.img"
expect_output 'in use'

if [ -n "$control" ]; then
    expect_status 0 "$pcachectl" stats "$tmp/ctl"
    expect_output '^\{.*"dirty_ksets":[0-9]+.*\}$'
    expect_status 0 "$pcachectl" stats --pretty "$tmp/ctl"
    expect_output '^  "writes": [0-9]+,$'
    expect_status 0 "$pcachectl" set "$tmp/ctl" gc-percent 50
    expect_output '^ok$'
    expect_status 1 "$pcachectl" set "$tmp/ctl" gc-percent 95
    expect_output 'error'
    expect_status 0 "$pcachectl" drain "$tmp/ctl"
    expect_output '^ok$'
    # top: two blocks, one second apart, with every label.
    expect_status 0 "$pcachectl" top --count 2 --interval 1 "$tmp/ctl"
    test "$(grep -c '^pcache .*ctl  up [0-9.]* s  mode writeback$' "$tmp/out")" -eq 2
    for label in 'read hit rate' dirty 'write-back rate' epochs backend \
                 write-back; do
        test "$(grep -c "^$label: " "$tmp/out")" -eq 2
    done
    expect_output '^read hit rate: +([0-9.]+% \([0-9]+/[0-9]+\)|-) interval, [0-9.]+% \([0-9]+/[0-9]+\) total$'
    expect_output '^dirty: +[0-9.]+ [KMG]?i?B \([0-9.]+% of [0-9.]+ MiB\)$'
    expect_output '^write-back rate: +[0-9.]+ [KMG]?i?B/s over 1\.[0-9] s'
    expect_output '^epochs: +client [0-9]+, backing [0-9]+$'
    expect_output '^backend: +ok$'
    expect_output '^write-back: +not held, not paused$'
    expect_status 2 "$pcachectl" top --interval 0 "$tmp/ctl"
    expect_status 1 "$pcachectl" top --count 1 "$tmp/c-busy"
    expect_output 'not a socket'
    # The socket and the cache file mixed up: each named for what it is.
    expect_status 1 "$pcachectl" stats "$tmp/c-busy"
    expect_output "c-busy: a cache file, not statistics: 'pcachectl info .*c-busy' shows what it holds"
    for cmd in info check dump; do
        expect_status 1 "$pcachectl" $cmd "$tmp/ctl"
        expect_output "ctl: is a socket, not a cache: this command reads the cache file \(pcache-dev\); 'pcachectl stats .*ctl' asks the running filter"
    done
    # The stats file is written at start and then periodically.
    for (( i = 0; i < 100; i++ )); do
        [ -s "$tmp/stats.json" ] && break
        sleep 0.1
    done
    expect_status 0 "$pcachectl" stats "$tmp/stats.json"
    expect_output '^\{.*\}$'
fi
kill_nbdkit "$tmp/busy.pid"
expect_status 0 "$pcachectl" info "$tmp/c-busy"

# A stats file that is not one.
echo 'hello' >"$tmp/not-stats"
expect_status 1 "$pcachectl" stats "$tmp/not-stats"
expect_status 1 "$pcachectl" set "$tmp/not-stats" gc-percent 50
expect_output 'not a socket'

# ---------------------------------------------------------------------
# check on a live cache under load: the server writes back and reuses
# segments while the check reads, so one look can see keys whose data
# is already replaced (a checksum mismatch, a dirty key in a reused
# segment).  Only what two looks in a row find may be reported: no
# check here may fail.  (About one look in twenty sees such a change.)

start_nbdkit -P "$tmp/load.pid" -U "$tmp/load.sock" \
    --filter="$PCACHE_FILTER" memory 256M pcache-dev="$tmp/c-load" \
    pcache-size=16M pcache-segment-size=1M pcache-data-crc=true
nbdsh -u "nbd+unix://?socket=$tmp/load.sock" -c '
import random, time
end = time.time() + 15
i = 0
while time.time() < end:
    h.pwrite(random.randbytes(65536), random.randrange(0, 4000) * 65536)
    i += 1
    if i % 16 == 0:
        h.flush()
' &
writer=$!
sleep 1
checks=0
while kill -0 "$writer" 2>/dev/null; do
    expect_status 0 "$pcachectl" check "$tmp/c-load"
    expect_output ': (consistent|clean)$'
    checks=$((checks + 1))
done
wait "$writer"
echo "$checks live checks under load"
[ "$checks" -ge 3 ]
kill_nbdkit "$tmp/load.pid"

# ---------------------------------------------------------------------
# Command line and man page.

if command -v podchecker >/dev/null; then
    podchecker -warnings -warnings "${top_srcdir:-.}/man/pcachectl.pod" \
        >"$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
    cat "$tmp/out"
    if grep -q WARNING "$tmp/out"; then exit 1; fi
fi

expect_status 0 "$pcachectl" --help
expect_output '^Usage:'
expect_output 'drain CACHE --to BACKING'
expect_status 0 "$pcachectl" -h
expect_status 0 "$pcachectl" help
expect_status 0 "$pcachectl" info --help
expect_status 0 "$pcachectl" --version
expect_output '^pcachectl [0-9]'

expect_status 2 "$pcachectl"
expect_output 'no command'
expect_status 2 "$pcachectl" frobnicate
expect_output "unknown command 'frobnicate'"
expect_status 2 "$pcachectl" --frobnicate
expect_output "unknown option '--frobnicate'"
expect_status 2 "$pcachectl" info
expect_output 'missing CACHE'
expect_status 2 "$pcachectl" info "$tmp/cache" extra
expect_output "unexpected argument 'extra'"
expect_status 2 "$pcachectl" info --frobnicate "$tmp/cache"
expect_status 2 "$pcachectl" drain "$tmp/cache"
expect_output 'missing --to'
expect_status 2 "$pcachectl" drain "$tmp/cache" --to
expect_output 'needs a value'
expect_status 2 "$pcachectl" drain "$tmp/cache" --to "$tmp/disk.img" \
    --timeout=soon
expect_status 2 "$pcachectl" set "$tmp/ctl" gc-percent
expect_output 'missing'
