#!/usr/bin/env python3
# SPDX-License-Identifier: BSD-3-Clause
# Crash-consistency workload and checker for pcache (see test-prefix.sh).
#
#   prefix.py write URI SEED NBLOCKS NCONN STATEFILE [MAXEPOCHS]
#   prefix.py check IMAGE SEED NBLOCKS STATEFILE [--durable] [--group N]
#   prefix.py selftest TMPDIR
#
# The writer runs flush epochs e = 1, 2, ...  In epoch e it writes a
# set of distinct 4 KiB blocks chosen deterministically from (SEED, e),
# spread over NCONN connections with all writes in flight at once, then
# flushes on one connection and appends "e\n" to STATEFILE (fsynced):
# epoch e was flushed.  The next epoch starts only after that.  If
# STATEFILE already records epochs, the writer resumes at the epoch
# after the last one recorded (it rewrites an epoch that may have been
# cut short, with the same content, which keeps the schedule valid).
# It exits 0 after MAXEPOCHS epochs (default: never), 2 if an NBD
# request fails (e.g. the server was killed).
#
# Each block written in epoch e holds a 16-byte header (b"PFX1", u32
# epoch, u64 block number, little-endian) and filler derived from
# (SEED, e, block).
#
# The checker reads IMAGE (a raw image: the backing file, or a copy of
# the export) and verifies:
#  - every block is all zero (never written, epoch 0) or exactly the
#    content written to that block in the epoch its header names (so
#    torn, mixed, misplaced or foreign data is caught);
#  - with P the highest epoch found, the image is the state after all
#    epochs < P plus a subset of the writes of epoch P: for a block b,
#    with L the last epoch < P that wrote b (0 if none), tag(b) is L or
#    P if epoch P wrote b, else L;
#  - P <= S + 1, where S is the last epoch recorded in STATEFILE (the
#    writer never starts epoch S + 2 before recording S + 1);
#  - with --group N (write-back groups of up to N epochs, N > 1), the
#    image may instead be the state after all epochs < A plus a subset
#    of the final data of one group of epochs A..B, B - A < N: for a
#    block b, tag(b) is the last epoch < A that wrote b, or the last
#    epoch <= B that wrote b if that is >= A;
#  - with --durable (IMAGE is what the server serves after a crash):
#    every flushed epoch survived, i.e. P >= S, and epoch S is complete
#    if P == S.
# It prints a summary line
#   prefix: P=.. present=.. total=.. S=.. written=..
# (present/total: blocks of epoch P found / written by epoch P), with
# " group=A..B" appended when only the group rule fits, and
# exits 1 on a violation, naming the blocks and tags.

import bisect
import hashlib
import os
import random
import struct
import sys

BLOCK = 4096
HDR = struct.Struct("<4sIQ")
MAGIC = b"PFX1"
MAX_PER_EPOCH = 64


def schedule(seed, nblocks, e):
    """The distinct blocks written in epoch e, in issue order."""
    rng = random.Random("pcache-prefix:%s:%d" % (seed, e))
    k = rng.randint(1, min(MAX_PER_EPOCH, nblocks))
    return rng.sample(range(nblocks), k)


def content(seed, e, b):
    filler = hashlib.shake_128(("%s:%d:%d" % (seed, e, b)).encode())
    return HDR.pack(MAGIC, e, b) + filler.digest(BLOCK - HDR.size)


def last_recorded(statefile):
    """Last epoch recorded in STATEFILE (0 if none)."""
    s = 0
    try:
        with open(statefile) as f:
            for line in f:
                if line.endswith("\n") and line.strip():
                    s = int(line)
    except FileNotFoundError:
        pass
    return s


def write(uri, seed, nblocks, nconn, statefile, maxepochs=None):
    import nbd

    handles = []
    for _ in range(nconn):
        h = nbd.NBD()
        h.connect_uri(uri)
        handles.append(h)
    if handles[0].get_size() < nblocks * BLOCK:
        sys.exit("prefix: export is smaller than %d blocks" % nblocks)
    if nconn > 1 and not handles[0].can_multi_conn():
        sys.exit("prefix: server does not advertise multi-conn")

    start = last_recorded(statefile) + 1
    state = open(statefile, "a")
    e = start
    while maxepochs is None or e < start + maxepochs:
        # Issue every write of the epoch, round-robin over the
        # connections, then wait for all of them: the server sees up
        # to 64 concurrent writes on NCONN connections.
        inflight = []
        for i, b in enumerate(schedule(seed, nblocks, e)):
            h = handles[i % nconn]
            buf = nbd.Buffer.from_bytearray(bytearray(content(seed, e, b)))
            inflight.append((h, h.aio_pwrite(buf, b * BLOCK), buf))
        for h, cookie, _ in inflight:
            while not h.aio_command_completed(cookie):
                h.poll(-1)
        # Multi-conn: a flush on one connection covers the writes
        # completed on all of them.
        handles[e % nconn].flush()
        state.write("%d\n" % e)
        state.flush()
        os.fsync(state.fileno())
        e += 1
    for h in handles:
        h.shutdown()


def group_fit(seed, nblocks, tags, p, group):
    """Some (A, B) of the group rule that every tag fits, or None."""
    writes = [[] for _ in range(nblocks)]     # epochs that wrote b, in order
    for e in range(1, p + 1):
        for b in schedule(seed, nblocks, e):
            writes[b].append(e)
    for a in range(p, max(1, p - group + 1) - 1, -1):
        lo, hi = p, a + group - 1
        for b in range(nblocks):
            t = tags[b]
            w = writes[b]
            i = bisect.bisect_left(w, a)
            before = w[i - 1] if i > 0 else 0
            if t == before:
                continue
            if t < a:
                lo, hi = 1, 0
                break
            j = bisect.bisect_right(w, t)
            lo = max(lo, t)
            if j < len(w):
                hi = min(hi, w[j] - 1)
            if lo > hi:
                break
        if lo <= hi:
            return a, lo
    return None


def check(image, seed, nblocks, statefile, durable, group=1):
    tags = []
    bad = []
    with open(image, "rb") as f:
        for b in range(nblocks):
            data = f.read(BLOCK)
            if len(data) != BLOCK:
                sys.exit("prefix: %s is smaller than %d blocks" %
                         (image, nblocks))
            if data.count(0) == BLOCK:
                tags.append(0)
                continue
            magic, e, blk = HDR.unpack_from(data)
            if magic != MAGIC or blk != b or e == 0:
                bad.append("block %d: not a block written by the writer "
                           "(header %r)" % (b, data[:HDR.size]))
                tags.append(-1)
            elif data != content(seed, e, b):
                bad.append("block %d: header says epoch %d but the data "
                           "differs (torn or mixed block)" % (b, e))
                tags.append(-1)
            else:
                tags.append(e)

    s = last_recorded(statefile)
    p = max(tags)
    last = [0] * nblocks          # last epoch < p that wrote each block
    for e in range(1, p):
        for b in schedule(seed, nblocks, e):
            last[b] = e
    in_p = set(schedule(seed, nblocks, p)) if p > 0 else set()
    present = 0
    for b in range(nblocks):
        t = tags[b]
        if t < 0:
            continue
        if b in in_p:
            if t == p:
                present += 1
            elif t != last[b]:
                bad.append("block %d: epoch %d, but it holds epoch %d or "
                           "%d (epochs < %d complete, %d partial)"
                           % (b, t, last[b], p, p, p))
        elif t != last[b]:
            bad.append("block %d: epoch %d, but after epochs < %d it holds "
                       "epoch %d (epoch %d does not write it)"
                       % (b, t, p, last[b], p))

    if p > s + 1:
        bad.append("epoch %d found, but the writer only recorded %d "
                   "(it cannot have started epoch %d)" % (p, s, p))
    if durable:
        if p < s:
            bad.append("flushed epoch %d lost: the image only has epochs "
                       "up to %d" % (s, p))
        elif p == s and present != len(in_p):
            bad.append("flushed epoch %d is incomplete: %d of its %d "
                       "blocks" % (s, present, len(in_p)))

    fit = None
    if bad and group > 1 and min(tags) >= 0 and p <= s + 1:
        fit = group_fit(seed, nblocks, tags, p, group)
        if fit:
            bad = []
    print("prefix: P=%d present=%d total=%d S=%d written=%d%s"
          % (p, present, len(in_p), s, sum(1 for t in tags if t > 0),
             " group=%d..%d" % fit if fit else ""))
    if bad:
        for m in bad[:20]:
            print("prefix: VIOLATION: " + m)
        if len(bad) > 20:
            print("prefix: ... %d violations in all" % len(bad))
        sys.exit(1)


def selftest(tmpdir):
    """The group rule's checker tells a group's final data from data of
    the middle of a group: synthetic images, no server."""
    seed, nb, a, b = "selftest", 256, 5, 8
    state = os.path.join(tmpdir, "selftest.state")
    with open(state, "w") as f:
        f.write("".join("%d\n" % e for e in range(1, 12)))
    final = {}
    for e in range(a, b + 1):
        for blk in schedule(seed, nb, e):
            final[blk] = e

    def image(name, extra):
        img = bytearray(nb * BLOCK)
        for e in range(1, a):
            for blk in schedule(seed, nb, e):
                img[blk * BLOCK:(blk + 1) * BLOCK] = content(seed, e, blk)
        for blk, e in extra:
            img[blk * BLOCK:(blk + 1) * BLOCK] = content(seed, e, blk)
        path = os.path.join(tmpdir, name)
        with open(path, "wb") as f:
            f.write(img)
        return path

    def verdict(path, group):
        pid = os.fork()
        if pid == 0:
            sys.stdout = open(os.devnull, "w")
            try:
                check(path, seed, nb, state, False, group)
            except SystemExit as ex:
                os._exit(1 if ex.code else 0)
            os._exit(0)
        return os.waitpid(pid, 0)[1] == 0

    rng = random.Random(1)
    good = image("good", [(k, e) for k, e in sorted(final.items())
                          if rng.random() < 0.5] +
                 [(k, b) for k in schedule(seed, nb, b)])
    # A block that epoch a wrote and a later epoch of the group rewrote,
    # holding epoch a's data beside data of epoch b.
    mid = next(k for k in schedule(seed, nb, a) if final[k] != a)
    bad = image("bad", [(mid, a)] + [(k, b) for k in schedule(seed, nb, b)
                                     if k != mid])
    want = [(good, 4, True), (good, 3, False), (good, 1, False),
            (bad, 4, False), (bad, 8, False)]
    for path, group, ok in want:
        if verdict(path, group) != ok:
            sys.exit("prefix: selftest: %s with --group %d: expected %s"
                     % (os.path.basename(path), group,
                        "a pass" if ok else "a violation"))
    print("prefix: selftest passed")


def main(argv):
    if len(argv) >= 6 and argv[0] == "write" and len(argv) <= 7:
        import nbd
        try:
            write(argv[1], argv[2], int(argv[3]), int(argv[4]), argv[5],
                  int(argv[6]) if len(argv) == 7 else None)
        except nbd.Error as ex:
            print("prefix: write: %s" % ex, file=sys.stderr)
            sys.exit(2)
    elif len(argv) == 2 and argv[0] == "selftest":
        selftest(argv[1])
    elif len(argv) >= 5 and argv[0] == "check":
        opts = argv[5:]
        durable = "--durable" in opts
        group = 1
        if durable:
            opts.remove("--durable")
        if len(opts) == 2 and opts[0] == "--group" and opts[1].isdigit() \
                and int(opts[1]) >= 1:
            group = int(opts[1])
        elif opts:
            sys.exit("prefix: check: unknown options %r" % opts)
        check(argv[1], argv[2], int(argv[3]), argv[4], durable, group)
    else:
        sys.exit("usage: prefix.py write URI SEED NBLOCKS NCONN STATEFILE "
                 "[MAXEPOCHS]\n"
                 "       prefix.py check IMAGE SEED NBLOCKS STATEFILE "
                 "[--durable] [--group N]")


if __name__ == "__main__":
    main(sys.argv[1:])
