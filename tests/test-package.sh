#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The Debian package (debian/): build it with dpkg-buildpackage in a
# copy of the source tree, install it, use the installed filter by its
# short name and the installed pcachectl, then purge it so that the
# machine is left as it was.  Needs root (dpkg -i) and the build tools
# (debhelper); not in make check (it takes minutes): make check-package.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_root
requires command -v dpkg-buildpackage
requires command -v dh
requires command -v nbdinfo

pkg=nbdkit-pcache-filter
filterdir=$(pkg-config --variable=filterdir nbdkit)

# An installed package is not this test's to remove.
if dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null |
        grep -qx installed; then
    echo "$0: $pkg is already installed: not touching it"
    exit 77
fi

# Not /dev/shm: the build is large.  The cache of the smoke test goes
# to /dev/shm (emulated pmem), as in the other tests.
work=$(mktemp -d "${TMPDIR:-/tmp}/pcache-pkg.XXXXXX")
cleanup_fn rm -rf "$work"
tmpdir

# The source tree without its build directories and autotools outputs:
# the files git knows (and new ones not ignored), or all of a dist tree.
src=$(cd "${abs_top_srcdir:-${top_srcdir:-.}}" && pwd)
mkdir "$work/src"
if git -C "$src" rev-parse --show-toplevel >/dev/null 2>&1 &&
        [ "$(git -C "$src" rev-parse --show-toplevel)" = "$src" ]; then
    (cd "$src" && git ls-files -z --cached --others --exclude-standard |
         xargs -0 -I{} sh -c '[ -e "{}" ] && printf "%s\0" "{}"' |
         tar --null -T - -cf -) | tar -C "$work/src" -xf -
else
    tar -C "$src" --exclude='./build*' --exclude='./_build' -cf - . |
        tar -C "$work/src" -xf -
fi

start=$(date +%s)
(cd "$work/src" &&
     DEB_BUILD_OPTIONS=nocheck dpkg-buildpackage -us -uc -b) \
    >"$work/build.log" 2>&1 || { tail -50 "$work/build.log"; exit 1; }
echo "package built in $(( $(date +%s) - start )) s"
deb=$(echo "$work"/${pkg}_*.deb)
[ -f "$deb" ]

# What the package holds and needs.
dpkg-deb -c "$deb"
dpkg-deb -c "$deb" | grep -E " \./${filterdir#/}/nbdkit-pcache-filter\.so$"
dpkg-deb -c "$deb" | grep -E ' \./usr/sbin/pcachectl$'
dpkg-deb -c "$deb" | grep -E ' \./usr/share/man/man1/nbdkit-pcache-filter\.1\.gz$'
dpkg-deb -c "$deb" | grep -E ' \./usr/share/man/man8/pcachectl\.8\.gz$'
dpkg-deb -c "$deb" | grep -E ' \./lib/systemd/system/pcache@\.service$'
dpkg-deb -c "$deb" | grep -E ' \./lib/systemd/system/pcache@\.socket$'
dpkg-deb -c "$deb" | grep -E ' \./usr/share/doc/nbdkit-pcache-filter/copyright$'
if dpkg-deb -c "$deb" | grep -E '\.la$'; then
    echo "$0: the package holds a libtool archive"
    exit 1
fi
depends=$(dpkg-deb -f "$deb" Depends)
echo "Depends: $depends"
grep -F "nbdkit (= $(dpkg-query -W -f='${Version}' nbdkit))" <<<"$depends"

cleanup_fn dpkg --purge "$pkg"
dpkg -i "$deb"

# The installed filter, by its short name.
[ -f "$filterdir/nbdkit-pcache-filter.so" ]
[ ! -e "$filterdir/nbdkit-pcache-filter.la" ]
nbdkit --filter=pcache memory 1G pcache-dev="$tmp/c" pcache-size=256M \
    --run 'nbdinfo $uri' >"$tmp/out"
cat "$tmp/out"
grep -E 'export-size: +1073741824' "$tmp/out"
/usr/sbin/pcachectl --version | grep -E '^pcachectl [0-9]'
[ -f /etc/pcache/example.conf ]

dpkg --purge "$pkg"
[ ! -e "$filterdir/nbdkit-pcache-filter.so" ]
[ ! -e /usr/sbin/pcachectl ]
[ ! -e /etc/pcache/example.conf ]
echo "total $(( $(date +%s) - start )) s"
