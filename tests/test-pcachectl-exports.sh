#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcachectl on a cache of several exports (namespaces): info lists them,
# dump and check --export show one export at its own offsets, drain
# --export writes back one export and leaves the others dirty, drain to
# an NBD server writes each export to the server's export of the same
# name (given up after --timeout if the server does not open one), and
# a file target is refused unless --export picks one.
#
# The cache is made through nbdkit file dir= with write-back paused and
# then killed, so that everything stays dirty in it.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires_drain_backend file
requires_drain_backend nbd
requires nbdkit file --version
requires nbdkit --filter=delay null --version
requires python3 -c 'pass'
tmpdir
export tmp
export PMEM2_FORCE_GRANULARITY=page

MiB=1048576
d=$tmp/exports
mkdir "$d"
truncate -s 8M "$d/alpha"
truncate -s 4M "$d/beta"
ctl=$tmp/ctl

# The writes, kept in $tmp/model-NAME: the same offsets in both
# exports with different data, a zero, and ranges of one export only.
start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
    file dir="$d" pcache-dev="$cache" pcache-size=64M \
    pcache-segment-size=1M pcache-control="$ctl"
"$pcachectl" pause "$ctl"
nbdsh -c '
import os
tmp = os.environ["tmp"]
def connect(name):
    c = nbd.NBD()
    c.set_export_name(name)
    c.connect_unix(tmp + "/sock")
    return c
MiB = 1 << 20
a, b = connect("alpha"), connect("beta")
ma, mb = bytearray(8 * MiB), bytearray(4 * MiB)
def w(c, m, data, off):
    c.pwrite(data, off)
    m[off:off + len(data)] = data
w(a, ma, b"A" * 65536, 0)
w(b, mb, b"B" * 65536, 0)
a.flush(); b.flush()
w(a, ma, b"a" * 4096, 7 * MiB + 512)
w(b, mb, b"b" * 8192, 3 * MiB)
w(a, ma, b"C" * 1000, MiB + 100)
w(b, mb, b"D" * 4096, 2 * MiB)
# A zero over written data.
a.zero(4096, 4096)
ma[4096:8192] = bytes(4096)
a.flush(); b.flush()
assert a.pread(8 * MiB, 0) == bytes(ma)
assert b.pread(4 * MiB, 0) == bytes(mb)
open(tmp + "/model-alpha", "wb").write(bytes(ma))
open(tmp + "/model-beta", "wb").write(bytes(mb))
a.shutdown(); b.shutdown()
'
kill9_nbdkit "$pidfile"
wait_unlocked "$cache"
# Nothing was written back.
test -z "$(tr -d '\0' < "$d/alpha")"
test -z "$(tr -d '\0' < "$d/beta")"

# same FILE MODEL: the file holds exactly the model.
same ()
{
    python3 -c '
import sys
got, want = open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read()
if got != want:
    i = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
    sys.exit("%s: %d bytes, want %d; differs first at offset %d" % (sys.argv[1], len(got), len(want), i))
print("same:", sys.argv[1])
' "$1" "$2"
}
zeroes ()
{
    test -z "$(tr -d '\0' < "$1")"
}

# ---------------------------------------------------------------------
# info

expect_status 0 "$pcachectl" info "$cache"
expect_output "^exports: +2 of "
expect_output "^export 0: +'alpha', 8.0 MiB, dirty [1-9]"
expect_output "^export 1: +'beta', 4.0 MiB, dirty [1-9]"

# ---------------------------------------------------------------------
# dump

# Every export, each line naming its own, at its own offsets.
expect_status 0 "$pcachectl" dump --dirty "$cache"
grep -q "^#.* export$" "$tmp/out"
test "$(awk '!/^#/ && $8 == "'"'alpha'"'"' "$tmp/out" | wc -l)" -eq 4
test "$(awk '!/^#/ && $8 == "'"'beta'"'"' "$tmp/out" | wc -l)" -eq 3
test "$(awk '!/^#/ && $8 != "'"'alpha'"'" && $8 != "'"'beta'"'"' "$tmp/out" | wc -l)" -eq 0

expect_status 0 "$pcachectl" dump --dirty --export alpha "$cache"
offsets=$(awk '!/^#/ { print $3 }' "$tmp/out" | sort -n | tr '\n' ' ')
test "$offsets" = "0 4096 1048676 7340544 "
test "$(awk '!/^#/ && $8 != "'"'alpha'"'"' "$tmp/out" | wc -l)" -eq 0
awk '!/^#/ && $3 == 4096' "$tmp/out" | grep -q 'dirty,zero'
expect_status 0 "$pcachectl" dump --export beta "$cache"
offsets=$(awk '!/^#/ { print $3 }' "$tmp/out" | sort -n | tr '\n' ' ')
test "$offsets" = "0 2097152 3145728 "

expect_status 0 "$pcachectl" dump --json --export beta "$cache"
python3 -c "
import json
keys = [json.loads(l) for l in open('$tmp/out') if l.startswith('{')]
assert len(keys) == 3, keys
assert all(k['export'] == 'beta' and k['namespace'] == 1 for k in keys), keys
assert sorted(k['offset'] for k in keys) == [0, 2 << 20, 3 << 20], keys
"
expect_status 0 "$pcachectl" dump --json "$cache"
test "$(grep -c '"export":"alpha"' "$tmp/out")" -eq 4
test "$(grep -c '"export":"beta"' "$tmp/out")" -eq 3

expect_status 1 "$pcachectl" dump --export gamma "$cache"
expect_output "holds no export 'gamma'"

# ---------------------------------------------------------------------
# check

expect_status 0 "$pcachectl" check "$cache"
expect_output ': consistent$'
expect_output "^  export 'alpha': 4 keys, "
expect_output "^  export 'beta': 3 keys, "
expect_status 0 "$pcachectl" check --export beta "$cache"
expect_output ': consistent$'
expect_output ' 3 keys from key tail to head \(3 dirty'
expect_output "of export 'beta' only"
expect_status 1 "$pcachectl" check --export gamma "$cache"
expect_output "holds no export 'gamma'"

# ---------------------------------------------------------------------
# drain to a file: one export, picked with --export

truncate -s 8M "$tmp/fileA"
truncate -s 4M "$tmp/fileB"
cp "$cache" "$tmp/c1"

# Without --export: refused, naming the exports; nothing written.
expect_status 1 "$pcachectl" drain "$tmp/c1" --to "$tmp/fileA"
expect_output "holds 2 exports \('alpha', 'beta'\)"
expect_output 'pick it with --export'
zeroes "$tmp/fileA"
# An export the cache does not hold.
expect_status 1 "$pcachectl" drain "$tmp/c1" --export gamma --to "$tmp/fileA"
expect_output "holds no export 'gamma'"
# The wrong size: refused by the engine, naming the export.
expect_status 1 "$pcachectl" drain "$tmp/c1" --export beta --to "$tmp/fileA"
expect_output "export 'beta' is 8388608 bytes but the cache holds it as 4194304"
zeroes "$tmp/fileA"

expect_status 0 "$pcachectl" drain "$tmp/c1" --export alpha --to "$tmp/fileA"
expect_output "wrote back export 'alpha'"
expect_output 'the other exports are left as they are'
expect_output "other exports: 'beta' \([0-9.]+ KiB dirty\)"
same "$tmp/fileA" "$tmp/model-alpha"
# beta is still dirty, alpha is not.
expect_status 0 "$pcachectl" info "$tmp/c1"
expect_output "^export 0: +'alpha', 8.0 MiB, dirty 0 B"
expect_output "^export 1: +'beta', 4.0 MiB, dirty [1-9]"
expect_status 0 "$pcachectl" dump --dirty "$tmp/c1"
test "$(grep -vc '^#' "$tmp/out")" -eq 3
test "$(awk '!/^#/ && $8 != "'"'beta'"'"' "$tmp/out" | wc -l)" -eq 0
expect_status 0 "$pcachectl" check "$tmp/c1"

# Then the other: nothing else is dirty, so the cache is emptied.
expect_status 0 "$pcachectl" drain "$tmp/c1" --export beta --to "$tmp/fileB"
expect_output 'the cache is now empty'
same "$tmp/fileB" "$tmp/model-beta"
same "$tmp/fileA" "$tmp/model-alpha"
expect_status 0 "$pcachectl" info --json "$tmp/c1"
expect_output '"dirty_bytes":0,'
expect_output '"cached_keys":0,'

# ---------------------------------------------------------------------
# drain to an NBD server: each export to its export of the same name

d2=$tmp/exports2
mkdir "$d2"
truncate -s 8M "$d2/alpha"
truncate -s 4M "$d2/beta"
start_nbdkit -P "$tmp/nbd.pid" -U "$tmp/nbd.sock" file dir="$d2"
cp "$cache" "$tmp/c2"

# A URI naming one export, with several in the cache: refused.
expect_status 1 "$pcachectl" drain "$tmp/c2" \
    --to "nbd+unix:///alpha?socket=$tmp/nbd.sock"
expect_output "names export 'alpha'"
zeroes "$d2/alpha"

expect_status 0 "$pcachectl" drain "$tmp/c2" \
    --to "nbd+unix:///?socket=$tmp/nbd.sock"
expect_output "each export to the server's export of the same name: 'alpha' \(.*\), 'beta' \(.*\); the cache is now empty"
same "$d2/alpha" "$tmp/model-alpha"
same "$d2/beta" "$tmp/model-beta"
expect_status 0 "$pcachectl" info --json "$tmp/c2"
expect_output '"dirty_bytes":0,'
expect_output '"cached_keys":0,'

# --export with a URI: that export to the export the URI names.
truncate -s 0 "$d2/alpha"; truncate -s 8M "$d2/alpha"
cp "$cache" "$tmp/c3"
expect_status 0 "$pcachectl" drain "$tmp/c3" --export alpha --keep \
    --to "nbd+unix:///alpha?socket=$tmp/nbd.sock"
expect_output "wrote back export 'alpha'"
same "$d2/alpha" "$tmp/model-alpha"
expect_status 0 "$pcachectl" info "$tmp/c3"
expect_output "^export 1: +'beta', 4.0 MiB, dirty [1-9]"
kill_nbdkit "$tmp/nbd.pid"

# A server without one of the exports: refused before anything is
# written.
d3=$tmp/exports3
mkdir "$d3"
truncate -s 8M "$d3/alpha"
start_nbdkit -P "$tmp/nbd3.pid" -U "$tmp/nbd3.sock" file dir="$d3"
cp "$cache" "$tmp/c4"
expect_status 1 "$pcachectl" drain "$tmp/c4" \
    --to "nbd+unix:///?socket=$tmp/nbd3.sock"
expect_output "export 'beta'"
zeroes "$d3/alpha"
kill_nbdkit "$tmp/nbd3.pid"
expect_status 0 "$pcachectl" info "$tmp/c4"
expect_output "^export 0: +'alpha', 8.0 MiB, dirty [1-9]"

# A server that does not open an export (nbdkit's delay filter holds
# the answer to NBD_OPT_GO): given up after --timeout, naming the
# export, with nothing written.
start_nbdkit -P "$tmp/slow.pid" -U "$tmp/slow.sock" --filter=delay \
    file dir="$d2" delay-open=60
cp "$cache" "$tmp/c5"
expect_status 1 timeout 50 "$pcachectl" drain "$tmp/c5" --timeout=1 \
    --to "nbd+unix:///?socket=$tmp/slow.sock"
expect_output "export 'alpha': the server did not answer the request to open it in 1 s \(--timeout\)"
kill_nbdkit "$tmp/slow.pid"
expect_status 0 "$pcachectl" info "$tmp/c5"
expect_output "^export 0: +'alpha', 8.0 MiB, dirty [1-9]"
expect_output "^export 1: +'beta', 4.0 MiB, dirty [1-9]"

# --export with a control socket: a usage error.
expect_status 2 "$pcachectl" drain "$ctl" --export alpha
