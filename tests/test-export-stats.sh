#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# Per-export statistics ("exports" in the statistics) through nbdkit
# file dir=, with two exports used differently: one with an ordinary
# name, one whose name needs escaping in JSON.
#  A. With write-back paused, each export's requests, bytes and dirty
#     bytes, attached while a client is connected: in the control
#     socket's stats, in pcachectl stats --export, and in the stats file.
#  B. Resumed and drained: each export's write-back bytes, no dirty
#     bytes, backend ok.
#  C. pcachectl top shows a line for each export; stats --export of an
#     export that does not exist fails.
set -e -x
source "${top_srcdir:-.}/tests/functions.sh"
requires_filter_built
requires_nbdsh
requires_pcachectl
requires python3 -c 'pass'
requires nbdkit file --version
tmpdir
export tmp pcachectl

d=$tmp/exports
mkdir "$d"
odd='we"ird\ x'
truncate -s 8M "$d/alpha"
truncate -s 4M "$d/$odd"
ctl=$tmp/ctl
stats=$tmp/stats.json
export ctl stats odd

start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
    file dir="$d" pcache-dev="$cache" pcache-size=64M \
    pcache-segment-size=1M pcache-control="$ctl" \
    pcache-stats="$stats" pcache-stats-interval=1
$pcachectl pause "$ctl"

cat > "$tmp/lib.py" <<'EOF'
import json, os, subprocess, time
tmp = os.environ["tmp"]
ctl = os.environ["ctl"]
odd = os.environ["odd"]
pcachectl = os.environ["pcachectl"]

def connect(name):
    c = nbd.NBD()
    c.set_export_name(name)
    c.connect_unix(tmp + "/sock")
    return c

def ctl_stats(*args):
    out = subprocess.run([pcachectl, "stats"] + list(args), check=True,
                         stdout=subprocess.PIPE).stdout.decode()
    assert out.count("\n") == 1 or "--pretty" in args, out
    return json.loads(out)

def exports(st):
    return {e["name"]: e for e in st["exports"]}

def check(e, **want):
    for k, v in want.items():
        assert e[k] == v, (e["name"], k, e[k], v, e)
EOF

# ---------------------------------------------------------------------
# A. Counted apart, write-back paused.

nbdsh -c '
exec(open(os.environ["tmp"] + "/lib.py").read())
a = connect("alpha")
b = connect(odd)
for i in range(3):
    a.pwrite(b"A" * 65536, i * 65536)
a.pread(4096, 0)
b.pwrite(b"B" * 4096, 8192)
b.pread(8192, 0)
b.pread(8192, 1 << 20)
a.flush()
b.flush()

st = ctl_stats(ctl)
assert len(st["exports"]) == 2, st["exports"]
ex = exports(st)
check(ex["alpha"], size=8 << 20, reads=1, read_bytes=4096, writes=3,
      write_bytes=196608, dirty_bytes=196608, writeback_bytes=0,
      attached=True, backend_state="ok", backend_last_error="",
      backend_failing_since=0, backend_reopens=0)
check(ex[odd], size=4 << 20, reads=2, read_bytes=16384, writes=1,
      write_bytes=4096, dirty_bytes=4096, writeback_bytes=0, attached=True,
      backend_state="ok")
assert st["dirty_bytes"] == 196608 + 4096, st["dirty_bytes"]
assert st["writes"] == 4, st["writes"]

# --export: only that object, the same as in the whole.
for name in ("alpha", odd):
    e = ctl_stats(ctl, "--export", name)
    assert e == ex[name], (e, ex[name])
    assert "exports" not in e
e = ctl_stats(ctl, "--export", odd, "--pretty")
assert e["name"] == odd and e["writes"] == 1, e

# The raw line escapes the name.
raw = subprocess.run([pcachectl, "stats", ctl], check=True,
                     stdout=subprocess.PIPE).stdout.decode()
assert "\"name\":\"we\\\"ird\\\\ x\"" in raw, raw

# The stats file catches up within a few of its intervals.
for i in range(100):
    try:
        fs = exports(ctl_stats(os.environ["stats"]))
        if fs.get("alpha", {}).get("writes") == 3 and \
           fs.get(odd, {}).get("writes") == 1:
            break
    except (subprocess.CalledProcessError, ValueError, KeyError):
        pass
    time.sleep(0.2)
else:
    raise SystemExit("the stats file never showed the exports")
check(fs["alpha"], dirty_bytes=196608, write_bytes=196608, reads=1)
check(fs[odd], dirty_bytes=4096, write_bytes=4096, reads=2)
e = ctl_stats(os.environ["stats"], "--export", "alpha")
assert e["name"] == "alpha" and e["writes"] == 3, e

# -------------------------------------------------------------------
# B. Written back: each its own bytes.
subprocess.run([pcachectl, "resume", ctl], check=True)
subprocess.run([pcachectl, "drain", ctl], check=True)
ex = exports(ctl_stats(ctl))
check(ex["alpha"], dirty_bytes=0, writeback_bytes=196608,
      backend_state="ok", writes=3)
check(ex[odd], dirty_bytes=0, writeback_bytes=4096, backend_state="ok",
      writes=1)
assert ex["alpha"]["backing_epoch"] > 0

# ------------------------------------------------------------------
# C. top, while both are connected.
out = subprocess.run([pcachectl, "top", ctl, "--count", "1"], check=True,
                     stdout=subprocess.PIPE).stdout.decode()
print(out)
assert "exports:" in out, out
assert any(l.lstrip().startswith("\"alpha\"") and "3 writes" in l
           for l in out.splitlines()), out
assert any("we\\\"ird" in l and "1 writes" in l for l in out.splitlines()), out

a.shutdown()
b.shutdown()
'

expect_status 1 "$pcachectl" stats "$ctl" --export nosuch
expect_output "no export 'nosuch'"
# reset-stats zeroes every export's counters.
$pcachectl reset-stats "$ctl"
$pcachectl stats "$ctl" --export alpha > "$tmp/alpha.json"
python3 -c '
import json, sys
e = json.load(open(sys.argv[1]))
assert e["writes"] == 0 and e["reads"] == 0 and e["writeback_bytes"] == 0, e
' "$tmp/alpha.json"
kill_nbdkit "$pidfile"
