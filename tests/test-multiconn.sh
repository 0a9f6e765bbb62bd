#!/usr/bin/env bash
# SPDX-License-Identifier: BSD-3-Clause
# pcache: multi-conn.  Four clients write in parallel, each on its own
# connection: its own region (synchronous, overlapping rewrites) and its
# own blocks of a shared region (asynchronous, up to 64 writes in
# flight), interleaved with the other clients' blocks.  They stay
# connected and never flush.  A fifth connection checks that it sees
# every client's data, and sends one flush.  Then nbdkit is killed with
# SIGKILL and restarted: everything must read back.  (can_multi_conn
# promises that a flush on any connection persists the completed writes
# of all connections.)
#
# The backend is the memory plugin, which is empty after the restart, so
# what reads back comes from the cache.

source "${top_srcdir:-.}/tests/functions.sh"
set -e
set -x

requires_filter_built
requires_nbdsh
requires nbdkit memory --version
requires flock --version

tmpdir
export tmp
export uri="nbd+unix://?socket=$sock"
nclients=4


start ()
{
    rm -f "$sock"
    start_nbdkit -P "$pidfile" -U "$sock" --filter="$PCACHE_FILTER" \
                 memory 64M pcache-dev="$cache" "$@"
}

# The writes of every client, generated the same way by the clients and
# by the checker.
cat > "$tmp/plan.py" <<'EOF'
import random

M = 1 << 20
SIZE = 64 * M
NCLIENTS = 4
SHARED_LO, SHARED_HI = 32 * M, 48 * M
BLK = 4096

def own_region(i):
    return i * 8 * M, (i + 1) * 8 * M

# Owner of each block of the shared region.
_owners = random.Random(7).choices(range(NCLIENTS),
                                   k=(SHARED_HI - SHARED_LO) // BLK)

def owned_blocks(i):
    return [SHARED_LO + b * BLK for b, o in enumerate(_owners) if o == i]

def plan(i):
    """The client's writes, in order: (offset, data, async)."""
    rng = random.Random(1000 + i)
    lo, hi = own_region(i)
    out = []
    # Synchronous writes in the own region, overlapping each other.
    for k in range(150):
        n = rng.randint(1, 256 * 1024)
        off = rng.randint(lo, hi - n)
        out.append((off, rng.randbytes(n), False))
    # Asynchronous whole-block writes to the owned shared blocks.
    for off in owned_blocks(i):
        out.append((off, rng.randbytes(BLK), True))
    # Then synchronous partial rewrites of some owned blocks.
    for off in rng.sample(owned_blocks(i), 100):
        a = rng.randint(0, BLK - 1)
        n = rng.randint(1, BLK - a)
        out.append((off + a, rng.randbytes(n), False))
    return out

def expected_image():
    img = bytearray(SIZE)
    for i in range(NCLIENTS):
        for off, data, _ in plan(i):
            img[off:off + len(data)] = data
    return img

def first_diff(a, b):
    for k in range(min(len(a), len(b))):
        if a[k] != b[k]:
            return k
    return min(len(a), len(b))

def check_image(h, what):
    img = expected_image()
    chunk = 8 * M
    for off in range(0, SIZE, chunk):
        got = h.pread(chunk, off)
        want = bytes(img[off:off + chunk])
        if got != want:
            k = first_diff(got, want)
            raise AssertionError(
                "%s: differs first at offset %d: got %r, expected %r"
                % (what, off + k, bytes(got[k:k + 16]), want[k:k + 16]))
EOF

cat > "$tmp/client.py" <<'EOF'
import os, time
tmp = os.environ["tmp"]
i = int(os.environ["client"])
exec(open(tmp + "/plan.py").read())

assert h.can_multi_conn(), "client %d: no multi-conn" % i
writes = plan(i)
inflight = []
for off, data, is_async in writes:
    if is_async:
        while h.aio_in_flight() >= 64:
            h.poll(-1)
        buf = nbd.Buffer.from_bytearray(bytearray(data))
        inflight.append((h.aio_pwrite(buf, off), buf))
    else:
        # Complete the asynchronous writes first: a later synchronous
        # write may overlap one of them.
        while h.aio_in_flight() > 0:
            h.poll(-1)
        h.pwrite(data, off)
while h.aio_in_flight() > 0:
    h.poll(-1)
for cookie, buf in inflight:
    assert h.aio_command_completed(cookie)

# All writes completed (and none flushed): tell the test, and stay
# connected until nbdkit has been killed.
with open("%s/done-%d" % (tmp, i), "w") as f:
    f.write("%d writes\n" % len(writes))
deadline = time.monotonic() + 60
while not os.path.exists(tmp + "/release"):
    assert time.monotonic() < deadline, "client %d: never released" % i
    time.sleep(0.1)
EOF

# A long commit interval: only the flush commits the clients' writes.
start pcache-size=256M pcache-segment-size=1M pcache-commit-ms=60000

pids=()
for (( i = 0; i < nclients; i++ )); do
    client=$i nbdsh -u "$uri" -c 'exec(open(os.environ["tmp"] + "/client.py").read())' &
    pids+=($!)
done
# On failure, do not leave the clients waiting.
cleanup_fn touch "$tmp/release"

# Wait until every client has completed its writes (bounded; a client
# that exits early has failed).
{ set +x; } 2>/dev/null
for (( t = 0; t < 600; t++ )); do
    ndone=0
    for (( i = 0; i < nclients; i++ )); do
        if [ -e "$tmp/done-$i" ]; then
            ndone=$((ndone + 1))
        elif ! kill -0 "${pids[i]}" 2>/dev/null; then
            set -x
            echo "$0: client $i exited before completing its writes"
            exit 1
        fi
    done
    [ "$ndone" -eq "$nclients" ] && break
    sleep 0.1
done
set -x
[ "$ndone" -eq "$nclients" ]
cat "$tmp"/done-*

# Another connection sees every client's data, and flushes once.
nbdsh -u "$uri" -c - <<'EOF'
exec(open(os.environ["tmp"] + "/plan.py").read())
assert h.can_multi_conn()
check_image(h, "before the flush")
h.flush()
EOF

# Crash, with the writers still connected, and restart.
kill9_nbdkit "$pidfile"
touch "$tmp/release"
for pid in "${pids[@]}"; do
    wait "$pid" || :           # their connection died with the server
done
wait_unlocked "$cache"
start

nbdsh -u "$uri" -c - <<'EOF'
exec(open(os.environ["tmp"] + "/plan.py").read())
check_image(h, "after kill -9 and restart")
EOF
kill_nbdkit "$pidfile"
