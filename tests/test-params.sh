#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: bad parameters and bad cache files are refused with a clear
# error, nbdkit exits non-zero, and a refused cache file is not touched.
#
# Every check is run even if an earlier one failed; the failures are
# listed at the end.

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires_nbdsh
requires nbdkit memory --version
requires timeout --version
requires md5sum --version

tmpdir

failures=()
fail ()
{
    echo "$0: FAIL: $*" >&2
    failures+=("$*")
}

# refused MSG... -- ARGS...
#
# Run nbdkit in the foreground with the pcache filter and ARGS.  It must
# exit with a non-zero status, and its stderr must contain every MSG.
# nbdkit still running after 20 s means the parameters were accepted.
refused ()
{
    local msgs=() m r=0
    while [ "$1" != "--" ]; do msgs+=("$1"); shift; done
    shift
    rm -f "$tmp/sock" "$tmp/err"
    timeout 20 nbdkit -f -U "$tmp/sock" --filter="$PCACHE_FILTER" "$@" \
            2>"$tmp/err" || r=$?
    cat "$tmp/err"
    if [ "$r" -eq 0 ]; then
        fail "nbdkit exited with status 0 for: $*"
        return
    fi
    if [ "$r" -eq 124 ]; then
        fail "nbdkit accepted (still running after 20 s): $*"
        return
    fi
    for m in "${msgs[@]}"; do
        if ! grep -qF -- "$m" "$tmp/err"; then
            fail "error for '$*' does not mention '$m'"
        fi
    done
}

# unchanged FILE SUM: the file's checksum is still SUM.
unchanged ()
{
    if [ "$(md5sum < "$1")" != "$2" ]; then
        fail "$1 was modified"
    fi
}

# works ARGS...: nbdkit with ARGS serves, and PYTHON (stdin) passes.
works ()
{
    if ! nbdkit -U - --filter="$PCACHE_FILTER" "$@" \
         --run 'nbdsh -u "$uri" -c -'; then
        fail "nbdkit did not work with: $*"
    fi
}

c=$tmp/new
m64=(memory 64M)

# ---------------------------------------------------------------------
# Bad parameters.

refused "pcache-dev" -- "${m64[@]}"
refused "pcache-dev" -- "${m64[@]}" pcache-size=256M
# An unknown parameter is named; a guess at pcache-dev's name gets it.
refused "pcache-sise: unknown pcache parameter" "--help' lists them" -- \
        "${m64[@]}" pcache-dev="$c" pcache-sise=256M
refused "pcache-file: unknown pcache parameter" "pcache-dev names the cache" -- \
        "${m64[@]}" pcache-file="$c" pcache-size=256M
refused "pcache-gc-percent" "91" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-gc-percent=91
refused "pcache-gc-percent" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-gc-percent=abc
refused "pcache-gc-percent" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-gc-percent=-1
refused "pcache-mode" "foo" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-mode=foo
refused "pcache-format" "maybe" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-format=maybe
refused "pcache-segment-size" "3M" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-segment-size=3M
refused "pcache-segment-size" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-segment-size=512K
refused "pcache-segment-size" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-segment-size=2G
refused "pcache-foo" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-foo=1
refused "pcache-size" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=0
refused "pcache-size" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=lots
refused "pcache-data-crc" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-data-crc=maybe
refused "pcache-cache-on-read" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-cache-on-read=maybe
refused "pcache-drain" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-drain=maybe
refused "pcache-seq-cutoff" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-seq-cutoff=abc
refused "pcache-stats-interval" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-stats-interval=0
refused "pcache-commit-ms" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-commit-ms=0
long_id=$(printf 'x%.0s' {1..64})
refused "pcache-backing-id" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-backing-id="$long_id"

# Paths that cannot work: refused at start, naming the parameter and
# the reason.
refused "pcache-dev: /dev/null: not a regular file or DAX device" -- \
        "${m64[@]}" pcache-dev=/dev/null
refused "pcache-dev: $tmp/none/c: No such file or directory" -- \
        "${m64[@]}" pcache-dev="$tmp/none/c" pcache-size=256M
refused "pcache-dev: $tmp: Is a directory" -- "${m64[@]}" pcache-dev="$tmp"
refused "pcache-stats: $tmp/none/s.json: directory $tmp/none: No such file" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M \
        pcache-stats="$tmp/none/s.json"
echo file >"$tmp/file"
refused "pcache-stats: $tmp/file/s.json: $tmp/file is not a directory" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M \
        pcache-stats="$tmp/file/s.json"
refused "pcache-stats: $tmp is a directory" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M pcache-stats="$tmp"
refused "pcache-control: $tmp/none/ctl: directory $tmp/none: No such file" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M \
        pcache-control="$tmp/none/ctl"
long_sock=$tmp/$(printf 'x%.0s' {1..120})
refused "pcache-control: $long_sock: path too long" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=256M \
        pcache-control="$long_sock"
# Root may write anywhere: a read-only directory stops only others.
if [ "$(id -u)" -ne 0 ]; then
    mkdir "$tmp/ro"
    chmod 555 "$tmp/ro"
    refused "pcache-stats: $tmp/ro/s.json: cannot write in $tmp/ro" \
            "Permission denied" -- \
            "${m64[@]}" pcache-dev="$c" pcache-size=256M \
            pcache-stats="$tmp/ro/s.json"
    refused "pcache-control: $tmp/ro/ctl" "Permission denied" -- \
            "${m64[@]}" pcache-dev="$c" pcache-size=256M \
            pcache-control="$tmp/ro/ctl"
    refused "pcache-dev: $tmp/ro/c" "Permission denied" -- \
            "${m64[@]}" pcache-dev="$tmp/ro/c" pcache-size=256M
fi
# None of these may have created the cache file.
if [ -e "$c" ]; then fail "a refused configuration created $c"; fi

# A missing file without pcache-size.
refused "$c" "does not exist" -- "${m64[@]}" pcache-dev="$c"
if [ -e "$c" ]; then fail "$c created without pcache-size"; fi

# An empty file (touch, mktemp) holds nothing: made into a cache like a
# missing one.  Without pcache-size, or with one too small, it is
# refused and left empty.
empty=$tmp/empty
touch "$empty"
refused "$empty" "is an empty file" -- "${m64[@]}" pcache-dev="$empty"
refused "pcache-size" "$empty" "at least 129M" -- \
        "${m64[@]}" pcache-dev="$empty" pcache-size=1M
if [ -s "$empty" ]; then fail "a refused $empty is no longer empty"; fi
works "${m64[@]}" pcache-dev="$empty" pcache-size=16M pcache-segment-size=1M \
      <<<'h.pwrite(b"e" * 4096, 0); h.flush()'
if [ "$(stat -c %s "$empty")" -ne $((16 << 20)) ]; then
    fail "$empty was not made 16M"
fi
works "${m64[@]}" pcache-dev="$empty" <<<'assert h.pread(4096, 0) == b"e" * 4096'

# A size too small for 8 segments: the error names the file, the
# parameters that set the minimum, and the minimum.
refused "pcache-size" "$c" "too small" "at least 129M" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=1M
refused "pcache-size" "$tmp/small7" "pcache-segment-size=1M" "at least 9M" -- \
        "${m64[@]}" pcache-dev="$tmp/small7" pcache-size=7M \
        pcache-segment-size=1M
refused "pcache-max-exports=240" "at least 10M" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=9M \
        pcache-segment-size=1M pcache-max-exports=240
# ... must leave nothing in the way of a good size afterwards.
works "${m64[@]}" pcache-dev="$c" pcache-size=16M pcache-segment-size=1M \
      <<<'assert h.get_size() == 64 << 20'
# The minimum is for a cache to be made: an existing one made with 1M
# segments opens with its own size, which the default 16M segments
# would not allow.
works "${m64[@]}" pcache-dev="$c" pcache-size=16M \
      <<<'assert h.get_size() == 64 << 20'
# ... but pcache-format=force would make one, so it is refused, and the
# old cache is untouched.
sum=$(md5sum < "$c")
refused "pcache-size" "at least 129M" -- \
        "${m64[@]}" pcache-dev="$c" pcache-size=16M pcache-format=force
unchanged "$c" "$sum"
# ... and must make a daemonizing nbdkit exit non-zero.
rm -f "$tmp/small" "$tmp/pid" "$tmp/sock"
r=0
nbdkit -P "$tmp/pid" -U "$tmp/sock" --filter="$PCACHE_FILTER" "${m64[@]}" \
       pcache-dev="$tmp/small" pcache-size=1M 2>"$tmp/err" || r=$?
cat "$tmp/err"
if [ "$r" -eq 0 ]; then
    fail "daemonized nbdkit exited with status 0 for pcache-size=1M"
    # Do not leave the daemon (or its zombie) behind.
    if [ -s "$tmp/pid" ]; then kill "$(<"$tmp/pid")" 2>/dev/null || :; fi
fi

# ---------------------------------------------------------------------
# A file that is not a cache: refused, untouched.

rnd=$tmp/random
dd if=/dev/urandom of="$rnd" bs=1M count=32 status=none
sum=$(md5sum < "$rnd")
refused "$rnd" "not a pcache cache file" -- "${m64[@]}" pcache-dev="$rnd"
unchanged "$rnd" "$sum"
refused "$rnd" "not a pcache cache file" -- \
        "${m64[@]}" pcache-dev="$rnd" pcache-size=32M
unchanged "$rnd" "$sum"
refused "$rnd" "not a pcache cache file" -- \
        "${m64[@]}" pcache-dev="$rnd" pcache-format=auto pcache-segment-size=1M
unchanged "$rnd" "$sum"
# Also when nbdkit daemonizes.
rm -f "$tmp/pid" "$tmp/sock"
r=0
nbdkit -P "$tmp/pid" -U "$tmp/sock" --filter="$PCACHE_FILTER" "${m64[@]}" \
       pcache-dev="$rnd" 2>"$tmp/err" || r=$?
cat "$tmp/err"
if [ "$r" -eq 0 ]; then
    fail "daemonized nbdkit exited with status 0 for a random file"
    if [ -s "$tmp/pid" ]; then kill "$(<"$tmp/pid")" 2>/dev/null || :; fi
elif ! grep -qF "not a pcache cache file" "$tmp/err"; then
    fail "daemonized nbdkit: no 'not a pcache cache file' message"
fi
unchanged "$rnd" "$sum"

# pcache-format=force formats it, and it then works as a cache.
works "${m64[@]}" pcache-dev="$rnd" pcache-format=force \
      pcache-segment-size=1M <<'EOF'
h.pwrite(b"forced" * 1000, 4096)
h.flush()
assert h.pread(6000, 4096) == b"forced" * 1000
EOF
works "${m64[@]}" pcache-dev="$rnd" <<'EOF'
assert h.pread(6000, 4096) == b"forced" * 1000
EOF

# ---------------------------------------------------------------------
# A valid cache reopened with other fixed options.

v=$tmp/valid
works "${m64[@]}" pcache-dev="$v" pcache-size=16M pcache-segment-size=1M \
      pcache-backing-id=disk-a <<'EOF'
h.pwrite(b"valid!" * 1000, 1 << 20)
h.flush()
EOF
sum=$(md5sum < "$v")

refused "$v" -- "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a \
        pcache-segment-size=2M
unchanged "$v" "$sum"
refused "$v" -- "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a \
        pcache-data-crc=true
unchanged "$v" "$sum"
refused "$v" "disk-a" -- "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-b
unchanged "$v" "$sum"
refused "$v" "disk-a" -- "${m64[@]}" pcache-dev="$v"
unchanged "$v" "$sum"
refused "$v" -- "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a \
        pcache-size=32M
unchanged "$v" "$sum"
# Made for a 64M backend, used with a 32M one.
refused "$v" -- memory 32M pcache-dev="$v" pcache-backing-id=disk-a
refused "$v" -- memory 128M pcache-dev="$v" pcache-backing-id=disk-a

# With the options it was made with, it still works and holds the data.
works "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a \
      pcache-segment-size=1M pcache-data-crc=false pcache-size=16M <<'EOF'
assert h.pread(6000, 1 << 20) == b"valid!" * 1000
EOF

# The mode is not fixed at format time.
for mode in writethrough writearound writeback; do
    works "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a \
          pcache-mode=$mode <<'EOF'
assert h.pread(6000, 1 << 20) == b"valid!" * 1000
EOF
done

# ---------------------------------------------------------------------
# A damaged superblock.

# corrupt FILE OFFSET: overwrite 8 bytes.
corrupt ()
{
    printf 'XXXXXXXX' | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

# One copy damaged: the other one is used.
cp "$v" "$tmp/one"
corrupt "$tmp/one" 24
works "${m64[@]}" pcache-dev="$tmp/one" pcache-backing-id=disk-a <<'EOF'
assert h.pread(6000, 1 << 20) == b"valid!" * 1000
EOF
cp "$v" "$tmp/one-b"
corrupt "$tmp/one-b" $((4096 + 24))
works "${m64[@]}" pcache-dev="$tmp/one-b" pcache-backing-id=disk-a <<'EOF'
assert h.pread(6000, 1 << 20) == b"valid!" * 1000
EOF

# Both copies damaged in their fields: corrupt.
cp "$v" "$tmp/both"
corrupt "$tmp/both" 24
corrupt "$tmp/both" $((4096 + 24))
sum=$(md5sum < "$tmp/both")
refused "$tmp/both" "corrupt" -- \
        "${m64[@]}" pcache-dev="$tmp/both" pcache-backing-id=disk-a
unchanged "$tmp/both" "$sum"

# Both copies damaged at bytes 8..16 (the magic number): refused.
cp "$v" "$tmp/magic"
corrupt "$tmp/magic" 8
corrupt "$tmp/magic" $((4096 + 8))
sum=$(md5sum < "$tmp/magic")
refused "$tmp/magic" -- \
        "${m64[@]}" pcache-dev="$tmp/magic" pcache-backing-id=disk-a
unchanged "$tmp/magic" "$sum"
if ! grep -qE "corrupt|not a pcache cache file" "$tmp/err"; then
    fail "damaged magic: the error says neither corrupt nor not a cache"
fi

# ---------------------------------------------------------------------
# A cache in use by a running nbdkit.

rm -f "$tmp/sock1"
start_nbdkit -P "$tmp/pid1" -U "$tmp/sock1" --filter="$PCACHE_FILTER" \
             "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a
refused "$v" "in use" -- "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a
refused "$v" "in use" -- "${m64[@]}" pcache-dev="$v" pcache-backing-id=disk-a \
        pcache-format=force
# The first one is unharmed.
nbdsh -u "nbd+unix://?socket=$tmp/sock1" \
      -c 'assert h.pread(6000, 1 << 20) == b"valid!" * 1000'
kill_nbdkit "$tmp/pid1"

# ---------------------------------------------------------------------
# Debug flags: -D pcache.writeback=1 and -D pcache.gc=1 trace each batch
# written back and each GC round (debug lines, shown with -v).  With
# pcache-drain=true the exit writes everything back and collects it, so
# both kinds of line are certain.

# traced [-D FLAG...]: write and flush once; $tmp/trace gets stderr.
traced ()
{
    rm -f "$tmp/trace-cache"
    if ! nbdkit -f -v -U - --filter="$PCACHE_FILTER" "$@" "${m64[@]}" \
         pcache-dev="$tmp/trace-cache" pcache-size=32M \
         pcache-segment-size=1M pcache-drain=true \
         --run 'nbdsh -u "$uri" -c "h.pwrite(bytes(range(256)) * 256, 0)" \
                                -c "h.flush()"' 2>"$tmp/trace"; then
        cat "$tmp/trace"
        fail "nbdkit with the debug flags '$*' failed"
    fi
}

traced -D pcache.writeback=1 -D pcache.gc=1
grep -E ': writeback: [0-9]+ bytes down, dirty_tail at kset [0-9]+$' \
     "$tmp/trace" || fail "-D pcache.writeback=1: no writeback trace line"
grep -E ': gc: [0-9]+ segments freed, key_tail at kset [0-9]+$' \
     "$tmp/trace" || fail "-D pcache.gc=1: no gc trace line"
traced
if grep -E ': (writeback|gc): .* at kset ' "$tmp/trace"; then
    fail "trace lines without the debug flags"
fi

# ---------------------------------------------------------------------

if [ ${#failures[@]} -ne 0 ]; then
    set +x
    echo "$0: ${#failures[@]} check(s) failed:" >&2
    printf '  %s\n' "${failures[@]}" >&2
    exit 1
fi
