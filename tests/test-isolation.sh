#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: one client never reads another's data through the cache.
#  - tmpdisk (a private disk per connection) is refused, even with
#    pcache-assume-shared=true: a second client must never read what
#    the first one wrote.
#  - A plugin that does not advertise multi-conn is refused at startup
#    unless pcache-assume-shared=true.
#  - Only the plugin's default export is served: with an sh plugin
#    serving exports "", a and b, connections to a and b are refused
#    with an error naming the export, the default export keeps working,
#    only it is listed, and after a drain its data is in its own file
#    and nowhere else.  A plugin that names its default export is
#    refused for it too.
#  - file dir= (a plugin with one disk per export name) lists its own
#    exports through pcache, and a client of one export never reads
#    another's data (each has a namespace: test-exports.sh tests them
#    in depth).
#
# Every check runs even if an earlier one failed; the failures are
# listed at the end.

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires_nbdsh
requires nbdkit sh --version
requires nbdkit file --version
requires timeout --version
requires cmp --version

tmpdir
export tmp

failures=()
fail ()
{
    echo "$0: FAIL: $*" >&2
    failures+=("$*")
}

# check_err R MSG...: nbdkit exited with status R (from timeout) and
# its stderr ($tmp/err) contains every MSG.
check_err ()
{
    local r=$1 m
    shift
    if [ "$r" -eq 0 ]; then
        fail "nbdkit exited with status 0, expected: $*"
        return
    fi
    if [ "$r" -eq 124 ]; then
        fail "nbdkit still running after the timeout, expected: $*"
        return
    fi
    if [ "$r" -gt 128 ]; then
        fail "nbdkit died with signal $((r - 128)), expected: $*"
        return
    fi
    for m in "$@"; do
        if ! grep -qF -- "$m" "$tmp/err"; then
            fail "nbdkit's errors do not mention '$m'"
        fi
    done
}

# refused CACHE MSG... -- ARGS...
#
# nbdkit with the pcache filter on cache file CACHE and ARGS must refuse
# to start, naming every MSG, and must not create CACHE.
refused ()
{
    local cache=$1 msgs=() r=0
    shift
    while [ "$1" != "--" ]; do msgs+=("$1"); shift; done
    shift
    rm -f "$tmp/sock" "$tmp/err"
    timeout 20 nbdkit -f -U "$tmp/sock" --filter="$PCACHE_FILTER" "$@" \
            pcache-dev="$cache" pcache-size=32M pcache-segment-size=1M \
            2>"$tmp/err" || r=$?
    cat "$tmp/err"
    check_err "$r" "${msgs[@]}"
    if [ -e "$cache" ]; then
        fail "refused plugin ($*): $cache was created"
    fi
}

# serve PY ARGS...
#
# Run nbdkit with the pcache filter and ARGS, and the Python file PY in
# nbdsh against it; PY finds the socket in $unixsocket.  Sets r to the
# exit status, nbdkit's errors are in $tmp/err.
serve ()
{
    local py=$1
    shift
    r=0
    timeout 60 nbdkit -U - --filter="$PCACHE_FILTER" "$@" \
            --run 'export unixsocket; nbdsh -c - < "$tmp/'"$py"'"' \
            2>"$tmp/err" || r=$?
    cat "$tmp/err"
}

# ---------------------------------------------------------------------
# A. tmpdisk: client 2 must not read client 1's secret.

cat > "$tmp/secret.py" <<'EOF'
import os
import sys

def connect():
    h = nbd.NBD()
    h.connect_unix(os.environ["unixsocket"])
    return h

secret = b"SECRET-of-client-1"
h1 = connect()
h1.pwrite(secret, 0)
h1.flush()
h1.shutdown()
h2 = connect()
if h2.pread(len(secret), 0) == secret:
    sys.exit("LEAK: client 2 read client 1's data")
EOF

if nbdkit tmpdisk --version >/dev/null 2>&1; then
    for extra in "" pcache-assume-shared=true; do
        rm -f "$tmp/c-tmpdisk"
        serve secret.py tmpdisk 32M command='truncate -s $size "$disk"' \
              pcache-dev="$tmp/c-tmpdisk" pcache-size=32M \
              pcache-segment-size=1M ${extra:+"$extra"}
        if grep -qF "LEAK:" "$tmp/err"; then
            fail "tmpdisk${extra:+ with $extra}: client 2 read client 1's data"
        fi
        check_err "$r" "tmpdisk" "private disk"
        if [ -e "$tmp/c-tmpdisk" ]; then
            fail "tmpdisk: a cache file was created"
        fi
    done
else
    echo "$0: no tmpdisk plugin, part A skipped"
fi

# ---------------------------------------------------------------------
# An sh plugin with the exports "" (the default), a and b, each a file
# of its own in $tmp.  Its default export is named $DEFAULT_EXPORT
# (default ""); with NO_MULTI_CONN set it does not advertise multi-conn.

size=$((4 << 20))
cat > "$tmp/exports.sh" <<'EOF'
#!/usr/bin/env bash
file () { echo "$tmp/export-${1:-default}.img"; }
case "$1" in
    thread_model) echo parallel ;;
    list_exports) echo NAMES; echo ""; echo a; echo b ;;
    default_export) echo "${DEFAULT_EXPORT:-}" ;;
    open)
        case "$3" in
            ""|a|b) echo "${3:-default}" ;;
            *) echo "no export $3" >&2; exit 1 ;;
        esac ;;
    get_size) stat -L -c %s "$(file "$2")" ;;
    pread) dd if="$(file "$2")" skip="$4" count="$3" \
              iflag=skip_bytes,count_bytes status=none ;;
    pwrite) dd of="$(file "$2")" seek="$4" conv=notrunc oflag=seek_bytes \
               status=none ;;
    can_write|can_flush|flush) exit 0 ;;
    can_multi_conn) if [ -n "${NO_MULTI_CONN:-}" ]; then exit 3; fi ;;
    *) exit 2 ;;
esac
EOF
chmod +x "$tmp/exports.sh"

new_exports ()
{
    local e
    for e in default a b; do
        rm -f "$tmp/export-$e.img"
        truncate -s "$size" "$tmp/export-$e.img"
    done
}

# Checks run against the sh plugin.  The default export takes a write,
# a and b are refused, and the default export still reads back, on the
# same connection and on a new one.  Only the default export is listed.
cat > "$tmp/exports.py" <<'EOF'
import os

sock = os.environ["unixsocket"]
data = b"written-to-the-default-export" * 100

def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(sock)
    return h

def refused(name):
    try:
        h = connect(name)
    except nbd.Error as e:
        print("export %r refused: %s" % (name, e))
        return
    raise AssertionError("export %r is served: %r" % (name, h.pread(32, 0)))

h = connect("")
h.pwrite(data, 4096)
h.flush()
refused("a")
refused("b")
assert h.pread(len(data), 4096) == data
h2 = connect("")
assert h2.pread(len(data), 4096) == data
h2.shutdown()
h.shutdown()

names = []
def add(name, description):
    names.append(name)
    return 0
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_unix(sock)
h.opt_list(add)
h.opt_abort()
assert names == [""], "listed exports: %r" % names
EOF

cat > "$tmp/readback.py" <<'EOF'
import os

h = nbd.NBD()
h.connect_unix(os.environ["unixsocket"])
data = b"written-to-the-default-export" * 100
assert h.pread(len(data), 4096) == data
EOF

# After a drain, only the default export's file holds the data: read
# the files directly (a, b) and through the plugin alone (the default).
check_drained ()
{
    local e
    for e in a b; do
        if ! cmp -n "$size" "$tmp/export-$e.img" /dev/zero; then
            fail "$1: data reached export $e"
        fi
    done
    if ! nbdkit -U - sh "$tmp/exports.sh" \
         --run 'export unixsocket; nbdsh -c - < "$tmp/readback.py"'; then
        fail "$1: the default export's file does not hold its data"
    fi
}

# B. Exports: a and b refused, the default works.
new_exports
serve exports.py sh "$tmp/exports.sh" pcache-dev="$tmp/c-exports" \
      pcache-size=32M pcache-segment-size=1M pcache-drain=true
if [ "$r" -ne 0 ]; then
    fail "sh plugin with exports: the default export did not work alone"
fi
for e in a b; do
    if ! grep -qF "export '$e' refused" "$tmp/err"; then
        fail "no error naming export '$e'"
    fi
done
check_drained "sh plugin with exports"

# C. The default export named 'a' by the plugin: refused, both as ""
# and as a.
cat > "$tmp/named.py" <<'EOF'
import os

for name in ["", "a"]:
    h = nbd.NBD()
    h.set_export_name(name)
    try:
        h.connect_unix(os.environ["unixsocket"])
    except nbd.Error as e:
        print("export %r refused: %s" % (name, e))
        continue
    raise AssertionError("export %r is served" % name)
EOF
new_exports
DEFAULT_EXPORT=a serve named.py sh "$tmp/exports.sh" \
    pcache-dev="$tmp/c-named" pcache-size=32M pcache-segment-size=1M
if [ "$r" -ne 0 ]; then
    fail "a named default export was served"
fi
if ! grep -qF "names its default export 'a'" "$tmp/err"; then
    fail "no error naming the default export 'a'"
fi

# D. No multi-conn: refused at startup, unless pcache-assume-shared=true.
new_exports
NO_MULTI_CONN=1 refused "$tmp/c-nomc" "multi-conn" "pcache-assume-shared" \
    -- sh "$tmp/exports.sh"
NO_MULTI_CONN=1 serve exports.py sh "$tmp/exports.sh" \
    pcache-dev="$tmp/c-nomc" pcache-size=32M pcache-segment-size=1M \
    pcache-drain=true pcache-assume-shared=true
if [ "$r" -ne 0 ]; then
    fail "pcache-assume-shared=true: the default export did not work"
fi
check_drained "pcache-assume-shared=true"

# D2. curl reads one remote image alike on every connection: accepted
# without multi-conn, and what it serves reads back through the cache.
if nbdkit curl --version >/dev/null 2>&1; then
    printf 'curl-image' > "$tmp/remote.img"
    truncate -s 1M "$tmp/remote.img"
    cat > "$tmp/curl.py" <<'EOF'
import os
h = nbd.NBD()
h.connect_unix(os.environ["unixsocket"])
assert h.pread(10, 0) == b"curl-image"
assert h.pread(10, 0) == b"curl-image"
EOF
    serve curl.py curl "file://$tmp/remote.img" \
        pcache-dev="$tmp/c-curl" pcache-size=32M pcache-segment-size=1M
    if [ "$r" -ne 0 ]; then
        fail "curl: refused or did not serve its image"
    fi
fi

# ---------------------------------------------------------------------
# E. file dir=: its exports are listed, and one export never shows
# another's data, even at the same offsets.

mkdir "$tmp/dir"
truncate -s 4M "$tmp/dir/disk" "$tmp/dir/other"
cat > "$tmp/dir.py" <<'EOF'
import os

def connect(name):
    h = nbd.NBD()
    h.set_export_name(name)
    h.connect_unix(os.environ["unixsocket"])
    return h

names = []
h = nbd.NBD()
h.set_opt_mode(True)
h.connect_unix(os.environ["unixsocket"])
h.opt_list(lambda name, desc: names.append(name))
h.opt_abort()
assert sorted(names) == ["disk", "other"], "listed exports: %r" % names
a = connect("disk")
b = connect("other")
a.pwrite(b"A-secret" * 512, 0)
a.flush()
assert b.pread(4096, 0) == bytes(4096), "other export shows disk's data"
b.pwrite(b"B-secret" * 512, 0)
assert a.pread(4096, 0) == b"A-secret" * 512
EOF
serve dir.py file dir="$tmp/dir" pcache-dev="$tmp/c-dir" pcache-size=32M \
    pcache-segment-size=1M
if [ "$r" -ne 0 ]; then
    fail "file dir=: exports not listed, not served or not kept apart"
fi

# ---------------------------------------------------------------------

if [ ${#failures[@]} -ne 0 ]; then
    set +x
    echo "$0: ${#failures[@]} check(s) failed:" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
