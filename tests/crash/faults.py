#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# Helper of tests/crash/test-faults.sh: versioned 4 KiB blocks over NBD.
#
# Block b at version v is a header (magic, b, v) and filler derived from
# (b, v), so a block never passes for another block, another version or
# a mix.  Version 0 is the initial content of the backing file.
#
#   faults.py init FILE NBLOCKS             write version 0 to a file
#   faults.py fill URI LO HI VER [--flush]  write blocks [LO,HI) with VER
#   faults.py check URI LO HI VERS|any [--state FILE] [--errors-ok]
#       read [LO,HI) and check each block: VERS is a comma list of
#       allowed versions ("z" for zeroes), "any" allows any version of
#       the right block; --state FILE gives the exact version per block
#       ("block version" lines, later lines win); --errors-ok tolerates
#       read errors (counted) but never wrong data.
#   faults.py snap URI LO HI STATE          record every block's version
#   faults.py writer URI LO HI VER          async 1 MiB writes of VER over
#       [LO,HI), round after round, until killed
#   faults.py client URI IDX LO HI SEED STATE
#       one of many clients: writes, zeroes, trims, reads back, flushes
#       its blocks [LO,HI); after each flush appends the state to STATE
import hashlib
import os
import random
import struct
import sys

BLK = 4096
MAGIC = b"PCFAULT1"


def block(b, v):
    seed = hashlib.blake2b(b"%d:%d" % (b, v), digest_size=16).digest()
    return MAGIC + struct.pack("<QI", b, v) + bytes(12) + seed * 254


assert len(block(0, 0)) == BLK


def decode(data, b):
    """Version of one block, 'z' for zeroes, None for anything else."""
    if data[:8] != MAGIC:
        return "z" if data == bytes(BLK) else None
    bb, v = struct.unpack_from("<QI", data, 8)
    if bb != b or data != block(b, v):
        return None
    return v


def connect(uri):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


def cmd_init(path, n):
    with open(path, "r+b" if os.path.exists(path) else "wb") as f:
        for b in range(n):
            f.write(block(b, 0))


def cmd_fill(uri, lo, hi, ver, flush):
    h = connect(uri)
    chunk = 64
    for b in range(lo, hi, chunk):
        n = min(chunk, hi - b)
        h.pwrite(b"".join(block(b + i, ver) for i in range(n)), b * BLK)
    if flush:
        h.flush()
    h.shutdown()


def load_state(path):
    st = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 2:
                st[int(p[0])] = "z" if p[1] == "z" else int(p[1])
    return st


def cmd_check(uri, lo, hi, vers, state, errors_ok):
    import nbd
    h = connect(uri)
    allowed = None
    if vers != "any":
        allowed = set("z" if x == "z" else int(x) for x in vers.split(","))
    st = load_state(state) if state else {}
    bad = errors = 0
    chunk = 64
    for b in range(lo, hi, chunk):
        n = min(chunk, hi - b)
        try:
            data = h.pread(n * BLK, b * BLK)
        except nbd.Error as e:
            if not errors_ok:
                raise
            errors += 1
            continue
        for i in range(n):
            got = decode(data[i * BLK:(i + 1) * BLK], b + i)
            want = st.get(b + i)
            ok = got is not None and (
                got == want if want is not None else
                allowed is None or got in allowed)
            if not ok:
                bad += 1
                if bad <= 5:
                    print("block %d reads %s, expected %s" %
                          (b + i, got if got is not None else "garbage",
                           want if want is not None else vers))
    h.shutdown()
    print("check %d..%d: %d bad, %d read errors" % (lo, hi, bad, errors))
    return 1 if bad else 0


def cmd_snap(uri, lo, hi, path):
    h = connect(uri)
    chunk = 64
    bad = 0
    with open(path, "w") as out:
        for b in range(lo, hi, chunk):
            n = min(chunk, hi - b)
            data = h.pread(n * BLK, b * BLK)
            for i in range(n):
                got = decode(data[i * BLK:(i + 1) * BLK], b + i)
                if got is None:
                    bad += 1
                    print("block %d reads garbage" % (b + i))
                else:
                    out.write("%d %s\n" % (b + i, got))
    h.shutdown()
    return 1 if bad else 0


def cmd_writer(uri, lo, hi, ver):
    import nbd
    h = connect(uri)
    per = 256                        # blocks per request: 1 MiB
    b = lo
    while True:
        while h.aio_in_flight() < 16:
            n = min(per, hi - b)
            data = b"".join(block(b + i, ver) for i in range(n))
            h.aio_pwrite(nbd.Buffer.from_bytearray(bytearray(data)), b * BLK)
            b = lo if b + n >= hi else b + n
        h.poll(-1)
        while h.aio_peek_command_completed():
            pass


def cmd_client(uri, idx, lo, hi, seed, state):
    rng = random.Random(seed)
    h = connect(uri)
    cur = {}
    ver = 1000 * (idx + 1)
    out = open(state, "a")
    for rnd in range(6):
        for _ in range(40):
            r = rng.random()
            b = rng.randrange(lo, hi)
            n = min(rng.randint(1, 8), hi - b)
            if r < 0.7:
                ver += 1
                h.pwrite(b"".join(block(b + i, ver) for i in range(n)),
                         b * BLK)
                for i in range(n):
                    cur[b + i] = ver
            elif r < 0.8:
                h.zero(n * BLK, b * BLK)
                for i in range(n):
                    cur[b + i] = "z"
            elif r < 0.85:
                # A trimmed block reads as anything: rewrite it at once.
                h.trim(n * BLK, b * BLK)
                ver += 1
                h.pwrite(b"".join(block(b + i, ver) for i in range(n)),
                         b * BLK)
                for i in range(n):
                    cur[b + i] = ver
            else:
                data = h.pread(n * BLK, b * BLK)
                for i in range(n):
                    got = decode(data[i * BLK:(i + 1) * BLK], b + i)
                    want = cur.get(b + i, 0)
                    if got != want:
                        print("client %d: block %d reads %s, expected %s" %
                              (idx, b + i, got, want))
                        return 1
        h.flush()
        out.write("".join("%d %s\n" % kv for kv in sorted(cur.items())))
        out.flush()
    h.shutdown()
    return 0


def main():
    a = sys.argv[1:]
    if a[0] == "init":
        cmd_init(a[1], int(a[2]))
    elif a[0] == "fill":
        cmd_fill(a[1], int(a[2]), int(a[3]), int(a[4]), "--flush" in a)
    elif a[0] == "check":
        state = a[a.index("--state") + 1] if "--state" in a else None
        return cmd_check(a[1], int(a[2]), int(a[3]), a[4], state,
                         "--errors-ok" in a)
    elif a[0] == "snap":
        return cmd_snap(a[1], int(a[2]), int(a[3]), a[4])
    elif a[0] == "writer":
        cmd_writer(a[1], int(a[2]), int(a[3]), int(a[4]))
    elif a[0] == "client":
        return cmd_client(a[1], int(a[2]), int(a[3]), int(a[4]), int(a[5]),
                          a[6])
    else:
        print("unknown command", a[0])
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
