#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache-export-quota: one export written flat out over a slow plugin
# never holds more than its share of the cache dirty (sampled from the
# statistics while it writes), and another export's writes go on
# meanwhile; every write of both is acknowledged and reads back.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires nbdkit file --version
requires nbdkit --filter=delay null --version
tmpdir
export tmp

d=$tmp/exports
mkdir "$d"
truncate -s 160M "$d/noisy"
truncate -s 32M "$d/quiet"
ctl=$tmp/ctl

# A slow plugin and one write-back writer: write-back cannot keep up
# with the noisy export, which without a quota would fill the cache.
start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
    --filter=delay file dir="$d" delay-write=40ms \
    pcache-dev="$cache" pcache-size=64M pcache-segment-size=1M \
    pcache-control="$ctl" pcache-export-quota=25 pcache-writeback-threads=1

cat > "$tmp/noisy.py" <<'EOF'
import os
h.set_export_name("noisy")
h.connect_unix(os.environ["tmp"] + "/sock")
for i in range(96):
    h.pwrite(bytes([i % 250 + 1]) * (1 << 20), i << 20)
h.flush()
for i in range(96):
    assert h.pread(4096, i << 20) == bytes([i % 250 + 1]) * 4096, i
open(os.environ["tmp"] + "/noisy.done", "w").write("ok")
EOF
nbdsh -c 'exec(open(os.environ["tmp"] + "/noisy.py").read())' &
noisy=$!

# The quiet export writes while the noisy one does.
nbdsh -c '
import os
h.set_export_name("quiet")
h.connect_unix(os.environ["tmp"] + "/sock")
for i in range(16):
    h.pwrite(bytes([0xA0 + i]) * (1 << 20), i << 20)
    h.flush()
for i in range(16):
    assert h.pread(1 << 20, i << 20) == bytes([0xA0 + i]) * (1 << 20), i
'

# Sample the noisy export's dirty data, as the engine counts it (the
# statistics of the control socket), until its writer is done.
samples=0
: > "$tmp/max"
while kill -0 $noisy 2>/dev/null; do
    if "$pcachectl" stats "$ctl" > "$tmp/stats" 2>/dev/null; then
        python3 - "$tmp/stats" >> "$tmp/max" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
limit = d["segments_total"] * d["segment_size"] // 100 * 25
noisy = [e for e in d["exports"] if e["name"] == "noisy"]
print(noisy[0]["dirty_bytes"] if noisy else 0, limit)
EOF
        samples=$((samples + 1))
    fi
done
wait $noisy
test -f "$tmp/noisy.done"
cat "$tmp/max"
test "$samples" -ge 1
python3 - "$tmp/max" <<'EOF'
import sys
rows = [tuple(map(int, l.split())) for l in open(sys.argv[1]) if l.strip()]
assert rows, "no sample"
worst = max(r[0] for r in rows)
limit = rows[0][1]
print("noisy export: at most %d bytes dirty of a quota of %d" % (worst, limit))
assert worst <= limit, (worst, limit)
assert worst > limit // 2, "the noisy export never came near its quota"
EOF
kill_nbdkit "$pidfile"
