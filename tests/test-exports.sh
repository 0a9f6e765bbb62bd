#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Multi-export plugins ("Exports" in the man page): each export of file
# dir= (and ondemand) has a namespace of its own in the one cache file.
#  A. Three exports of different sizes, two connections each, distinct
#     data interleaved with flushes: each reads back only its own.
#  B. kill -9 with all of it dirty (write-back paused): after a restart
#     each export reads back its data from the cache; the backing files
#     still hold none of it.
#  C. pcache-drain=true: each export connected once (its last client
#     writes it back), then nbdkit stops: each backing file holds exactly
#     its own data.
#  D. An export whose file was resized since is refused, naming it,
#     while another export is still served.
#  E. pcache-max-exports=2: a third export is refused, naming it.
#  F. ondemand dir=: two exports, written, read back, written back.
#  G. nbd dynamic-export=true in front of a second nbdkit serving a
#     directory: each remote export gets its own data, through a kill -9
#     and a restart.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires nbdkit file --version
requires flock --version
tmpdir
export tmp

d=$tmp/exports
mkdir "$d"
truncate -s 8M "$d/alpha"
truncate -s 20M "$d/beta"
truncate -s 3M "$d/gamma"
ctl=$tmp/ctl
log=$tmp/log

# serve ARGS...: pcache in front of file dir=$d, on $sock, logging to $log.
serve ()
{
    rm -f "$sock"
    start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
        --filter="$PCACHE_FILTER" file dir="$d" \
        pcache-dev="$cache" pcache-control="$ctl" "$@" 2>>"$log"
}

# The model: what each export must hold, kept in $tmp/model-NAME.
cat > "$tmp/lib.py" <<'EOF'
import os, random
tmp = os.environ["tmp"]
d = tmp + "/exports"
names = ["alpha", "beta", "gamma"]

def connect(name):
    c = nbd.NBD()
    c.set_export_name(name)
    c.connect_unix(tmp + "/sock")
    return c

def model(name):
    p = "%s/model-%s" % (tmp, name)
    if os.path.exists(p):
        return bytearray(open(p, "rb").read())
    return bytearray(os.path.getsize(d + "/" + name))

def save(name, m):
    open("%s/model-%s" % (tmp, name), "wb").write(bytes(m))

def first_diff(a, b):
    for i in range(min(len(a), len(b))):
        if a[i] != b[i]:
            return i
    return -1

def check(what, got, want):
    if got != want:
        i = first_diff(got, want)
        raise SystemExit("%s: differs first at offset %d: got %r, want %r"
                         % (what, i, got[i:i+8], want[i:i+8]))

def check_export(c, name, m):
    assert c.get_size() == len(m), (name, c.get_size(), len(m))
    step = 1 << 20
    for off in range(0, len(m), step):
        n = min(step, len(m) - off)
        check("%s [%d, +%d)" % (name, off, n), c.pread(n, off),
              bytes(m[off:off + n]))
EOF

# ---------------------------------------------------------------------
# A. Distinct data per export, through several connections.

serve pcache-size=256M pcache-segment-size=1M
# Nothing is written back until C: B checks the backing files are
# untouched.
$pcachectl pause "$ctl"
nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
rng = random.Random(1)
conns = {n: [connect(n), connect(n)] for n in names}
models = {n: model(n) for n in names}
for n in names:
    assert conns[n][0].get_size() == len(models[n])
for i in range(60):
    for k, n in enumerate(names):
        for j, c in enumerate(conns[n]):
            m = models[n]
            ln = rng.randint(1, 64 * 1024)
            off = rng.randint(0, len(m) - ln)
            data = bytes([0x41 + 8 * k + j + (i % 4)]) * ln
            c.pwrite(data, off)
            m[off:off + ln] = data
            if rng.random() < 0.3:
                c.flush()
    if i % 10 == 9:
        # A zero on one connection, read through the other.
        for n in names:
            m = models[n]
            off = rng.randint(0, len(m) - 8192)
            conns[n][0].zero(8192, off)
            m[off:off + 8192] = bytes(8192)
# The same offsets in every export: each keeps its own.
for k, n in enumerate(names):
    data = bytes([0x61 + k]) * 4096
    conns[n][1].pwrite(data, 1 << 20)
    models[n][1 << 20:(1 << 20) + 4096] = data
for n in names:
    conns[n][0].flush()
    for c in conns[n]:
        check_export(c, n, models[n])
    save(n, models[n])
for n in names:
    for c in conns[n]:
        c.shutdown()
'
# The last client of each export left with write-back paused: its data
# could not go down and stays in the cache, as the log says.
grep -F "export 'alpha'" "$log"

# ---------------------------------------------------------------------
# B. Crash with everything dirty; restart.

kill9_nbdkit "$pidfile"
wait_unlocked "$cache"
for f in alpha beta gamma; do
    test -z "$(tr -d '\0' < "$d/$f" | head -c 1)"
done

# ---------------------------------------------------------------------
# C. Restart, read back, write back at the last client's exit, drain.

serve pcache-drain=true
nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
for n in names:
    c = connect(n)
    check_export(c, n, model(n))
    c.shutdown()
'
kill_nbdkit "$pidfile"
wait_unlocked "$cache"
if grep -F "could not write everything back" "$log"; then exit 1; fi
python3 -c '
import os
exec(open(os.environ["tmp"] + "/lib.py").read().replace("import os, random", ""))
for n in names:
    fd = os.open(d + "/" + n, os.O_RDONLY)
    m = model(n)
    check("backing file " + n, os.pread(fd, len(m) + 1, 0), bytes(m))
    os.close(fd)
'
expect_status 0 "$pcachectl" info "$cache"
expect_output '^dirty bytes: +0$'

# ---------------------------------------------------------------------
# D. A resized export is refused; the others are still served.

truncate -s 5M "$d/gamma"
: > "$log"
serve
nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
try:
    connect("gamma")
    raise SystemExit("the resized export gamma was served")
except nbd.Error as e:
    print("gamma refused as expected:", e)
c = connect("alpha")
check_export(c, "alpha", model("alpha"))
c.pwrite(b"Z" * 4096, 0)
assert c.pread(4096, 0) == b"Z" * 4096
c.shutdown()
c = connect("beta")
check_export(c, "beta", model("beta"))
c.shutdown()
'
kill_nbdkit "$pidfile"
cat "$log"
grep -E "gamma" "$log" | grep -qiE "refused|size"

# ---------------------------------------------------------------------
# E. pcache-max-exports=2: the third export is refused, naming it.

rm -f "$cache"
: > "$log"
serve pcache-size=64M pcache-segment-size=1M pcache-max-exports=2
nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
a = connect("alpha")
b = connect("beta")
try:
    connect("gamma")
    raise SystemExit("a third export was served with pcache-max-exports=2")
except nbd.Error as e:
    print("gamma refused as expected:", e)
a.pwrite(b"1" * 512, 0)
b.pwrite(b"2" * 512, 0)
assert a.pread(512, 0) == b"1" * 512
assert b.pread(512, 0) == b"2" * 512
a.shutdown()
b.shutdown()
'
kill_nbdkit "$pidfile"
cat "$log"
grep -F "gamma" "$log" | grep -q "refused"
# Out of range.
expect_status 1 nbdkit --filter="$PCACHE_FILTER" file dir="$d" \
    pcache-dev="$tmp/cache2" pcache-size=64M pcache-max-exports=241 --run true
expect_output 'pcache-max-exports'

# ---------------------------------------------------------------------
# F. ondemand: two exports.

if nbdkit ondemand --version >/dev/null 2>&1 &&
   command -v mkfs.ext4 >/dev/null 2>&1; then
    od=$tmp/ondemand
    mkdir "$od"
    rm -f "$cache" "$sock"
    start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
        --filter="$PCACHE_FILTER" ondemand dir="$od" size=64M \
        pcache-dev="$cache" pcache-size=128M pcache-segment-size=1M \
        pcache-drain=true 2>>"$log"
    nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
one = connect("one")
two = connect("two")
assert one.get_size() == two.get_size() == 64 << 20
one.pwrite(b"O" * 65536, 32 << 20)
two.pwrite(b"T" * 65536, 32 << 20)
one.flush()
two.flush()
assert one.pread(65536, 32 << 20) == b"O" * 65536
assert two.pread(65536, 32 << 20) == b"T" * 65536
one.shutdown()
two.shutdown()
c = connect("one")
assert c.pread(65536, 32 << 20) == b"O" * 65536
c.shutdown()
'
    kill_nbdkit "$pidfile"
    python3 -c '
import os
od = os.environ["tmp"] + "/ondemand"
for n, b in (("one", b"O"), ("two", b"T")):
    fd = os.open(od + "/" + n, os.O_RDONLY)
    assert os.pread(fd, 65536, 32 << 20) == b * 65536, n
    os.close(fd)
'
else
    echo "$0: ondemand part skipped (no ondemand plugin or mkfs.ext4)"
fi

# ---------------------------------------------------------------------
# G. The nbd plugin in front of a remote nbdkit with several exports.

if nbdkit nbd --version >/dev/null 2>&1; then
    rd=$tmp/remote
    mkdir "$rd"
    truncate -s 4M "$rd/east"
    truncate -s 6M "$rd/west"
    rsock=$tmp/remote.sock
    start_nbdkit -P "$tmp/remote.pid" -U "$rsock" file dir="$rd"
    rm -f "$cache" "$sock"
    nbdserve ()
    {
        rm -f "$sock"
        start_nbdkit -P "$pidfile" -U "$sock" --log=stderr \
            --filter="$PCACHE_FILTER" nbd socket="$rsock" dynamic-export=true \
            pcache-dev="$cache" pcache-control="$ctl" "$@" 2>>"$log"
    }
    nbdserve pcache-size=64M pcache-segment-size=1M
    $pcachectl pause "$ctl"
    nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
e = connect("east")
w = connect("west")
assert e.get_size() == 4 << 20 and w.get_size() == 6 << 20
for i in range(4):
    e.pwrite(bytes([0x45 + i]) * 65536, i << 20)
    w.pwrite(bytes([0x57 + i]) * 65536, i << 20)
    e.flush()
e.shutdown()
w.shutdown()
'
    kill9_nbdkit "$pidfile"
    wait_unlocked "$cache"
    nbdserve pcache-drain=true
    nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
for n, b in (("east", 0x45), ("west", 0x57)):
    c = connect(n)
    for i in range(4):
        assert c.pread(65536, i << 20) == bytes([b + i]) * 65536, (n, i)
    c.shutdown()
'
    kill_nbdkit "$pidfile"
    kill_nbdkit "$tmp/remote.pid"
    python3 -c '
import os
rd = os.environ["tmp"] + "/remote"
for n, b in (("east", 0x45), ("west", 0x57)):
    fd = os.open(rd + "/" + n, os.O_RDONLY)
    for i in range(4):
        assert os.pread(fd, 65536, i << 20) == bytes([b + i]) * 65536, (n, i)
    os.close(fd)
'
else
    echo "$0: nbd plugin part skipped (no nbd plugin)"
fi
