#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Check the man page source with podchecker (errors and warnings fail).
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"

requires command -v podchecker

pod="${top_srcdir:-.}/man/nbdkit-pcache-filter.pod"
rc=0
out=$(podchecker -warnings -warnings "$pod" 2>&1) || rc=$?
echo "$out"
if [ "$rc" -ne 0 ]; then
    echo "$0: podchecker failed on $pod"
    exit 1
fi
if grep -q 'WARNING' <<<"$out"; then
    echo "$0: podchecker warnings in $pod"
    exit 1
fi
