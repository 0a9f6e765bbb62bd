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

# Every parameter of the filter's --help is in the SYNOPSIS, has an
# item in PARAMETERS and a row in the README's table, so they cannot
# drift apart.
if [ -n "${PCACHE_FILTER:-}" ] && [ -f "$PCACHE_FILTER" ]; then
    params=$(nbdkit --filter="$PCACHE_FILTER" null --help 2>&1 |
             sed -n 's/^\(pcache-[a-z-]*\)=.*/\1/p')
    test -n "$params"
    synopsis=$(sed -n '/^=head1 SYNOPSIS/,/^=head1 /p' "$pod")
    parameters=$(sed -n '/^=head1 PARAMETERS/,/^=head1 /p' "$pod")
    missing=()
    for p in $params; do
        grep -qE "(^|[[ ])$p=" <<<"$synopsis" || missing+=("SYNOPSIS: $p")
        grep -qE "^=item B<$p=" <<<"$parameters" ||
            missing+=("PARAMETERS: $p")
        grep -qE "^\| $p=" "${top_srcdir:-.}/README" ||
            missing+=("README: $p")
    done
    if [ ${#missing[@]} -ne 0 ]; then
        printf "$0: not documented: %s\n" "${missing[@]}"
        exit 1
    fi
fi
