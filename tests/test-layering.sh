#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# The engine's files call each other one way: no cycle among the files
# of core/ (from the symbols each object file defines and uses), so each
# can be read, tested and changed from the bottom up.
set -e
source "${top_srcdir:-.}/tests/functions.sh"
requires nm --version
requires python3 -c 'pass'
"$top_srcdir/scripts/core-graph" "$top_builddir"
