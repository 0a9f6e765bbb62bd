/* SPDX-License-Identifier: BSD-3-Clause */
/* crash-sim: power-loss simulator for the pcache engine.
 *
 * A deterministic workload runs against a fresh cache in a forked
 * child.  Every persist point of the engine (pc_pmem_set_hooks) and
 * every operation on the backend is a crash point.  The child keeps a
 * shadow "durable image" of the cache file: the after-hook copies each
 * persisted range (rounded out to 64-byte cache lines) from the mapping
 * into it.  The backend is a disk with a volatile write cache: writes
 * land in vol, flush copies vol to dur.
 *
 * A crash at point N dumps the durable image and the backend's durable
 * buffer.  Variants:
 *   cut   the power goes before store N: the images as they are;
 *   torn  store N (pmem) happened and a random subset of the cache
 *         lines not yet persisted reached the media (real pmem can
 *         evict lines early); at a backend point, a random subset of
 *         the blocks in the disk's volatile cache reached the platter.
 *
 * Two ways to get there:
 *   snapshot (default)  one child runs the whole workload; at each
 *                       selected point it dumps the images, reports the
 *                       point and waits until a verifier has been
 *                       started.  The durable image at point N is what
 *                       a power loss at N leaves, whatever the process
 *                       does afterwards.
 *   --kill              one child per point, which dumps the images at
 *                       point N and _exits (the literal power cut).
 * The child reports each operation it starts and completes through a
 * pipe, so the parent knows what was acknowledged.
 *
 * Each crash image is checked by a forked verifier:
 *   (a) every block whose write was acknowledged before a completed
 *       pc_flush, or written with FUA, reads back with that version or
 *       a newer one written since;
 *   (b) every 4 KiB block reads as one of the versions written to it,
 *       zeroes after a zero/trim, or its original content; never
 *       garbage, another block's data or a mix;
 *   (c) the backend's durable image is the state after all client
 *       epochs < P plus some of epoch P's writes, for some P;
 *   (d) the replayed cache works on: writes, flush, writeback, GC,
 *       reopen, read; once drained, the backend holds exactly what the
 *       cache serves.
 * Replay must not refuse any image a power loss can produce, except
 * one cut during format (refused as not a pcache file / corrupt: no
 * write was acknowledged yet).
 *
 * Workloads small and large serve one export (pc_cache_bind).  Workload
 * two serves two, each a namespace of the cache with a backend of its
 * own: "a" is opened (pc_ns_open, pc_ns_attach) after format, "b" after
 * the first round, and every operation then picks one of them.  Blocks
 * are numbered across both exports and a block's content names its
 * number, so one export's data on the other's backend never passes.
 * The checks hold per export: (a), (b) through its namespace's
 * addresses; (c) for each backend with a P of its own (client epochs
 * are global: a flush ends one for every export); (d) both namespaces
 * are found again with the same ids and, drained, each backend holds
 * what its namespace serves.  A crash inside pc_ns_open (the table
 * entry, then the namespace's control record) may leave the
 * namespace there or not, never anything else; once pc_ns_open
 * returned, the namespace must be there.  A sample always includes
 * every crash point of the namespace creations (cut and torn).
 *
 * With --group N|auto the workload runs with write-back groups
 * (pcache-writeback-group) and (c) is the group rule: the image is the
 * state after epochs < A plus any subset of the final data of a group
 * A..B of at most N epochs (see group_fits); a strict run keeps the
 * epoch rule.
 *
 * Usage: crash-sim [--workload small|large|two] [--all | --sample N]
 *                  [--torn] [--kill] [--seed S] [--jobs J] [--keep DIR]
 *                  [--group N|auto] [--verbose]
 * Exit status: 0 all crash points passed, 1 a violation, 2 usage/setup.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pcache.h"
#include "cache_internal.h"
#include "gc.h"
#include "writeback.h"
#include "pmem.h"
#include "util.h"
#include "testutil.h"

#define LINE            64u
#define STRIPE_BLOCKS   ((1u << PC_STRIPE_SHIFT) / TU_BLK)
#define EXIT_CRASHED    42
#define EXIT_WL_FAIL    3
#define PHASE_D_VER     0x40000000u

/* ------------------------------------------------------------------ */
/* Workloads. */

struct wl_ns {
  const char *name;             /* export name */
  uint64_t size;
};

struct wl_params {
  const char *name;
  uint64_t backing_size;        /* all the exports together */
  uint32_t nsegs;
  int data_crc;
  int rounds;
  int ops_per_round;            /* client ops per round: 4 + below this */
  int max_write_blocks;
  int burst_every;              /* rounds between zero bursts; 0: none */
  int burst_ksets;              /* full ksets (128 zero keys) per burst */
  /* 0: one export bound with pc_cache_bind (namespace 0 of export "",
   * opened by the format operation); else exports opened with
   * pc_ns_open, each with a backend of its own.
   */
  unsigned nns;
  struct wl_ns ns[2];
};

static const struct wl_params wl_small = {
  .name = "small", .backing_size = (4 << 20) + (512 << 10), .nsegs = 10, .data_crc = 0,
  .rounds = 60, .ops_per_round = 16, .max_write_blocks = 32,
  .burst_every = 12, .burst_ksets = 110,
};

static const struct wl_params wl_large = {
  .name = "large", .backing_size = 36 << 20, .nsegs = 16, .data_crc = 1,
  .rounds = 400, .ops_per_round = 40, .max_write_blocks = 16,
  .burst_every = 25, .burst_ksets = 80,
};

/* Two exports in one cache: namespaces "a" and "b", each with its own
 * backend; "b" is created after the first round, with data of "a" in
 * the log.
 */
static const struct wl_params wl_two = {
  .name = "two", .backing_size = (7 << 20) + (512 << 10), .nsegs = 10,
  .data_crc = 0, .rounds = 60, .ops_per_round = 16, .max_write_blocks = 32,
  .burst_every = 12, .burst_ksets = 110,
  .nns = 2, .ns = { { "a", (4 << 20) + (512 << 10) }, { "b", 3 << 20 } },
};

static uint64_t
cache_size_for (const struct wl_params *wp)
{
  uint64_t segtab = PC_ALIGN_UP (PC_SEGTAB_OFF + wp->nsegs * PC_SEGTAB_ENTRY,
                                 4096);
  return segtab + (uint64_t) PC_DEFAULT_MAX_EXPORTS * PC_NS_ENTRY +
    (uint64_t) wp->nsegs * PC_MIN_SEG_SIZE;
}

/* ------------------------------------------------------------------ */
/* Operations and the child -> parent stream. */

enum op_kind {
  OP_FORMAT = 1, OP_WRITE, OP_ZERO, OP_TRIM, OP_FLUSH, OP_READ, OP_WB,
  OP_GC, OP_MODE, OP_CLOSE, OP_NSOPEN, OP_MAX = OP_NSOPEN,
};

static const char *const op_names[] = {
  [OP_FORMAT] = "format", [OP_WRITE] = "write", [OP_ZERO] = "zero",
  [OP_TRIM] = "trim", [OP_FLUSH] = "flush", [OP_READ] = "read",
  [OP_WB] = "writeback-step", [OP_GC] = "gc", [OP_MODE] = "mode",
  [OP_CLOSE] = "close", [OP_NSOPEN] = "namespace-open",
};

struct op {
  uint8_t kind;
  uint8_t fua;
  uint16_t nblocks;
  uint32_t ver;                 /* OP_WRITE: version written */
  uint64_t block;               /* global block; OP_NSOPEN: export */
};

enum { M_START = 1, M_DONE, M_SNAP, M_END };

struct msg {
  uint32_t type;
  uint32_t variant;
  uint64_t a;                   /* op index, point */
  struct op op;
  uint64_t points;              /* M_START, M_DONE: crash points so far */
};

enum { V_CUT = 0, V_TORN = 1 };
#define VB_CUT  (1u << V_CUT)
#define VB_TORN (1u << V_TORN)
static const char *const variant_names[] = { "cut", "torn" };

/* A selected crash point. */
struct sel {
  uint64_t point;
  unsigned variants;
};

/* Kinds of point, for the selection and the report. */
enum { PK_PMEM_ONE, PK_PMEM_MULTI, PK_PMEM_PAYLOAD, PK_DRAIN, PK_BACKEND,
       PK_BACKEND_FLUSH };

/* ------------------------------------------------------------------ */
/* Options and shared statistics. */

static const struct wl_params *wp = &wl_small;
static uint64_t opt_seed = 1;
static int opt_all;
static long opt_sample = -1;
static int opt_torn;
static int opt_kill;
static int opt_jobs = 2;
static int opt_verbose;
static const char *opt_keep;
/* pcache-writeback-group for the workload: PC_UNSET (strict), 0 (auto)
 * or N; and the group size the check allows (1: the epoch rule).
 */
static int opt_group = PC_UNSET;
static unsigned group_max = 1;
static char tmpdir[256];

/* The exports of the workload.  Blocks are numbered globally: export i
 * holds blocks first .. first + nblocks - 1, and block g's content
 * names g, so data of one export found in the other reads as another
 * block's.  Export i is namespace i (the order they are created in a
 * new cache).
 */
#define MAX_NS 2
struct xns {
  const char *name;
  uint64_t size, first, nblocks;
};
static struct xns X[MAX_NS];
static unsigned nx;

static void
xns_setup (void)
{
  unsigned i;
  uint64_t first = 0;

  if (!wp->nns) {
    nx = 1;
    X[0] = (struct xns) { "", wp->backing_size, 0, wp->backing_size / TU_BLK };
    return;
  }
  nx = wp->nns;
  for (i = 0; i < nx; i++) {
    X[i] = (struct xns) { wp->ns[i].name, wp->ns[i].size, first,
                          wp->ns[i].size / TU_BLK };
    first += X[i].nblocks;
  }
  if (first * TU_BLK != wp->backing_size)
    abort ();
}

/* The export of global block g. */
static unsigned
blk_ns (uint64_t g)
{
  unsigned i = 0;

  while (i + 1 < nx && g >= X[i + 1].first)
    i++;
  return i;
}

/* The cache address of global block g. */
static uint64_t
blk_addr (uint64_t g)
{
  unsigned i = blk_ns (g);

  return pc_ns_addr (i, (g - X[i].first) * TU_BLK);
}

struct stats {
  _Atomic uint64_t verified, verified_torn, violations, crashed_verifiers;
  _Atomic uint64_t format_refused, format_opened;
  _Atomic uint64_t prefix_partial, prefix_past0, max_prefix;
  _Atomic uint64_t prefix_group;      /* fit only the group rule */
  _Atomic uint64_t acked_durable_blocks, inflight[OP_MAX + 1];
  _Atomic uint64_t phase_d_runs;
  _Atomic uint64_t ns_present, ns_absent;  /* crashed in pc_ns_open */
  _Atomic uint64_t prefix_checks;
};
static struct stats *st;

static void
die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("crash-sim: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  exit (2);
}

static double
now_s (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ================================================================== */
/* The workload child. */

struct sim {
  char cache_path[PATH_MAX];
  uint64_t cache_size;
  uint8_t *map;                 /* the engine's mapping, found lazily */
  uint8_t *dur;                 /* durable image of the cache file */
  uint8_t *scratch;             /* torn images are built here */
  uint8_t *bscratch;            /* the backends' images, one after another */
  struct tu_mem *bk[MAX_NS];    /* export i's backend */
  unsigned nopen;               /* exports opened so far */
  uint64_t point;               /* crash points so far */
  uint64_t torn_at;             /* point whose after-hook makes a torn image */
  int snapshot;                 /* snapshot mode: report and go on */
  int counting;                 /* no dumps, just count */
  const struct sel *sel;
  size_t nsel, isel;
  int out_fd, go_fd;
  uint64_t rng;
  /* Workload state. */
  pc_cache *c;
  uint32_t *cur;                /* current version of each block */
  uint64_t nblocks;
  uint64_t nops;
  uint8_t *buf;
  /* Coverage: what the workload made the engine do. */
  uint64_t n_last, n_full, n_kset, n_gen, n_ctrl, n_payload, n_gen_format;
  int trace;                    /* $CRASH_SIM_TRACE: print LAST and gens */
};

static struct sim S;

static void
child_fail (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fprintf (stderr, "crash-sim: workload (op %" PRIu64 ", point %" PRIu64
           "): ", S.nops, S.point);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  _exit (EXIT_WL_FAIL);
}

static void
send_msg (const struct msg *m)
{
  const char *p = (const char *) m;
  size_t left = sizeof *m;

  while (left > 0) {
    ssize_t n = write (S.out_fd, p, left);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      _exit (EXIT_WL_FAIL);
    p += n;
    left -= n;
  }
}

/* The mapping of the cache file, from /proc/self/maps. */
static void
find_map (void)
{
  struct stat sb;
  FILE *f;
  char line[1024];

  if (stat (S.cache_path, &sb) == -1)
    child_fail ("stat %s: %m", S.cache_path);
  f = fopen ("/proc/self/maps", "r");
  if (!f)
    child_fail ("/proc/self/maps: %m");
  while (fgets (line, sizeof line, f)) {
    unsigned long start, end, off, ino;
    char perms[8];
    unsigned maj, min;

    if (sscanf (line, "%lx-%lx %7s %lx %x:%x %lu", &start, &end, perms, &off,
                &maj, &min, &ino) == 7 &&
        ino == sb.st_ino && off == 0 && end - start >= S.cache_size) {
      S.map = (uint8_t *) start;
      break;
    }
  }
  fclose (f);
  if (!S.map)
    child_fail ("cannot find the mapping of %s", S.cache_path);
}

static void
img_paths (uint64_t point, int variant, char *img, char *bk)
{
  snprintf (img, PATH_MAX, "%s/p%" PRIu64 "%c.img", tmpdir, point,
            "ct"[variant]);
  snprintf (bk, PATH_MAX, "%s/p%" PRIu64 "%c.bk", tmpdir, point,
            "ct"[variant]);
}

static int
bk_dirty (void)
{
  unsigned i;

  for (i = 0; i < nx; i++)
    if (S.bk[i]->dirty)
      return 1;
  return 0;
}

/* Which variants to dump at this point. */
static unsigned
want (uint64_t point, int kind)
{
  unsigned v = 0;

  if (S.counting)
    return 0;
  if (!S.sel) {
    /* Every point cut; torn where it can differ and matters: records
     * (not payload, whose key is never durable before it) and backend
     * flushes (where the disk's volatile cache is fullest).
     */
    v = VB_CUT;
    if (opt_torn && (kind == PK_PMEM_MULTI ||
                     (kind == PK_BACKEND_FLUSH && bk_dirty ())))
      v |= VB_TORN;
    return v;
  }
  while (S.isel < S.nsel && S.sel[S.isel].point < point)
    S.isel++;
  if (S.isel < S.nsel && S.sel[S.isel].point == point)
    v = S.sel[S.isel].variants;
  if (kind == PK_DRAIN && (v & VB_TORN))
    v = (v & ~VB_TORN) | VB_CUT;
  return v;
}

/* Power loss: write out what survives. */
static void
crash (int variant, int kind)
{
  char img[PATH_MAX], bk[PATH_MAX];
  const uint8_t *pm = S.dur;
  uint64_t r = tu_seed (opt_seed ^ (S.point * 7919) ^ variant), bo = 0;
  unsigned k;

  if (variant == V_TORN && kind != PK_BACKEND && S.map) {
    /* Lines stored but not yet persisted: some reach the media. */
    uint64_t i;

    memcpy (S.scratch, S.dur, S.cache_size);
    for (i = 0; i < S.cache_size; i += LINE)
      if (memcmp (S.map + i, S.dur + i, LINE) != 0 && (tu_rand (&r) & 1))
        memcpy (S.scratch + i, S.map + i, LINE);
    pm = S.scratch;
  }
  /* The backends' durable images, one after another. */
  for (k = 0; k < nx; k++) {
    struct tu_mem *m = S.bk[k];

    memcpy (S.bscratch + bo, m->dur, m->size);
    if (variant == V_TORN && m->dirty) {
      /* The disk wrote some of its volatile cache. */
      uint64_t i;

      for (i = 0; i < m->ndirty; i++)
        if (tu_rand (&r) & 1) {
          uint64_t o = m->dlist[i] * TU_BLK;
          memcpy (S.bscratch + bo + o, m->buf + o, TU_BLK);
        }
    }
    bo += m->size;
  }
  img_paths (S.point, variant, img, bk);
  if (tu_file_put (img, pm, S.cache_size) == -1 ||
      tu_file_put (bk, S.bscratch, bo) == -1)
    child_fail ("writing crash image: %m");
  if (!S.snapshot)
    _exit (EXIT_CRASHED);
  {
    struct msg m = { .type = M_SNAP, .variant = variant, .a = S.point };
    char go;

    send_msg (&m);
    while (read (S.go_fd, &go, 1) != 1)
      if (errno != EINTR)
        _exit (EXIT_WL_FAIL);
  }
}

static void
hook_before (void *opaque, const void *addr, size_t len)
{
  uintptr_t a = (uintptr_t) addr;
  int kind;
  unsigned v;

  (void) opaque;
  if (!S.map)
    find_map ();
  S.point++;
  if (!addr)
    kind = PK_DRAIN;
  else if (len >= TU_BLK)
    kind = PK_PMEM_PAYLOAD;
  else
    kind = (a / LINE != (a + len - 1) / LINE) ? PK_PMEM_MULTI : PK_PMEM_ONE;
  v = want (S.point, kind);
  if (v & VB_CUT)
    crash (V_CUT, kind);
  if (v & VB_TORN)
    S.torn_at = S.point;
}

static void
hook_after (void *opaque, const void *addr, size_t len)
{
  uint8_t *p = (uint8_t *) addr;
  uint64_t off, end;

  (void) opaque;
  if (S.torn_at == S.point && S.torn_at) {
    S.torn_at = 0;
    crash (V_TORN, PK_PMEM_MULTI);
  }
  if (!addr || !len)
    return;
  if (p < S.map || p + len > S.map + S.cache_size)
    child_fail ("persist outside the cache mapping");
  off = (uint64_t) (p - S.map) & ~(uint64_t) (LINE - 1);
  end = PC_ALIGN_UP ((uint64_t) (p - S.map) + len, LINE);
  memcpy (S.dur + off, S.map + off, end - off);

  /* Coverage. */
  if (S.c && S.c->seg_area_off && (uint64_t) (p - S.map) >= S.c->seg_area_off) {
    const struct pc_kset_hdr *h = (const void *) p;
    if (len >= sizeof *h && h->magic == PC_KSET_MAGIC &&
        len == PC_KSET_BYTES (h->nkeys)) {
      S.n_kset++;
      if (h->flags & PC_KSET_LAST)
        S.n_last++;
      if (S.trace && (h->flags & PC_KSET_LAST))
        fprintf (stderr, "trace: point %" PRIu64 " op %" PRIu64 ": LAST seq %"
                 PRIu64 " in segment %" PRIu64 " -> segment %u\n", S.point,
                 S.nops, h->seq, ((uint64_t) (p - S.map) - S.c->seg_area_off)
                 >> S.c->seg_shift, h->next_seg);
      if (h->nkeys == PC_KSET_MAX_KEYS)
        S.n_full++;
    }
    else if (len >= TU_BLK)
      S.n_payload++;
  }
  else if ((uint64_t) (p - S.map) >= PC_SEGTAB_OFF) {
    S.n_gen++;
    if (S.trace && len == sizeof (struct pc_gen_slot))
      fprintf (stderr, "trace: point %" PRIu64 " op %" PRIu64 ": segment %"
               PRIu64 " generation %" PRIu64 "\n", S.point, S.nops,
               ((uint64_t) (p - S.map) - PC_SEGTAB_OFF) / PC_SEGTAB_ENTRY,
               ((const struct pc_gen_slot *) p)->gen);
  }
  else if ((uint64_t) (p - S.map) >= PC_CTRL_OFF)
    S.n_ctrl++;
}

static void
hook_backend (void *opaque, int op)
{
  unsigned v;

  (void) opaque;
  S.point++;
  v = want (S.point, op == TU_OP_FLUSH ? PK_BACKEND_FLUSH : PK_BACKEND);
  if (v & VB_CUT)
    crash (V_CUT, PK_BACKEND);
  if (v & VB_TORN)
    crash (V_TORN, PK_BACKEND);
}

/* Operations: each is reported when started and when done. */
static uint64_t
op_start (struct op o)
{
  struct msg m = { .type = M_START, .a = S.nops, .op = o,
                   .points = S.point };

  send_msg (&m);
  return S.nops;
}

static void
op_done (uint64_t idx)
{
  struct msg m = { .type = M_DONE, .a = idx, .points = S.point };

  send_msg (&m);
  S.nops++;
}

static void
model_set (uint64_t blk, unsigned n, uint32_t v)
{
  unsigned i;

  for (i = 0; i < n; i++)
    S.cur[blk + i] = v;
}

static void
w_write (uint64_t blk, unsigned n, int fua)
{
  struct op o = { .kind = OP_WRITE, .fua = fua, .nblocks = n, .block = blk,
                  .ver = (uint32_t) S.nops };
  uint64_t idx;
  unsigned i;
  int err = 0;

  for (i = 0; i < n; i++)
    tu_block_fill (S.buf + (uint64_t) i * TU_BLK, blk + i, o.ver);
  idx = op_start (o);
  if (pc_write (S.c, S.buf, n * TU_BLK, blk_addr (blk), fua ? PC_FUA : 0,
                &err) == -1)
    child_fail ("pc_write: %s", strerror (err));
  model_set (blk, n, o.ver);
  op_done (idx);
}

static void
w_zero (int kind, uint64_t blk, unsigned n, int fua, int may_trim)
{
  struct op o = { .kind = kind, .fua = fua, .nblocks = n, .block = blk };
  uint64_t idx = op_start (o);
  unsigned flags = (fua ? PC_FUA : 0) | (may_trim ? PC_MAY_TRIM : 0);
  int err = 0, r;

  if (kind == OP_ZERO)
    r = pc_zero (S.c, (uint64_t) n * TU_BLK, blk_addr (blk), flags, &err);
  else
    r = pc_trim (S.c, (uint64_t) n * TU_BLK, blk_addr (blk), flags, &err);
  if (r == -1)
    child_fail ("pc_%s: %s", op_names[kind], strerror (err));
  model_set (blk, n, TU_V_ZERO);
  op_done (idx);
}

static void
w_flush (void)
{
  struct op o = { .kind = OP_FLUSH };
  uint64_t idx = op_start (o);
  int err = 0;

  if (pc_flush (S.c, &err) == -1)
    child_fail ("pc_flush: %s", strerror (err));
  op_done (idx);
}

static void
w_read (uint64_t blk, unsigned n)
{
  struct op o = { .kind = OP_READ, .nblocks = n, .block = blk };
  uint64_t idx = op_start (o);
  struct pc_backend fg = tu_mem_backend (S.bk[blk_ns (blk)]);
  unsigned i;
  int err = 0;

  if (pc_read (S.c, S.buf, n * TU_BLK, blk_addr (blk), &fg, &err) == -1)
    child_fail ("pc_read: %s", strerror (err));
  for (i = 0; i < n; i++) {
    uint32_t got = tu_block_decode (S.buf + (uint64_t) i * TU_BLK, blk + i);
    char b1[32], b2[32];

    if (got != S.cur[blk + i])
      child_fail ("read of block %" PRIu64 " returned %s, expected %s "
                  "(no crash yet)", blk + i,
                  tu_block_name (got, b1, sizeof b1),
                  tu_block_name (S.cur[blk + i], b2, sizeof b2));
  }
  op_done (idx);
}

static int
w_wb (void)
{
  struct op o = { .kind = OP_WB };
  uint64_t idx = op_start (o);
  int r = pc_writeback_step (S.c);

  if (r == -1)
    child_fail ("pc_writeback_step failed");
  op_done (idx);
  return r;
}

static void
w_gc (int force)
{
  struct op o = { .kind = OP_GC, .fua = force };
  uint64_t idx = op_start (o);

  if (pc_gc_run (S.c, force) < 0)
    child_fail ("pc_gc_run failed");
  op_done (idx);
}

/* Switch to another mode.  Leaving write-back drains first; with no
 * worker threads here, the workload writes back before the switch, so
 * the drain inside it finds nothing left to wait for.
 */
static void
w_mode (enum pc_mode m)
{
  struct op o = { .kind = OP_MODE, .block = m };
  uint64_t idx;
  int err = 0, n = 0;

  if (pc_cache_get_mode (S.c) == PC_MODE_WRITEBACK && m != PC_MODE_WRITEBACK) {
    w_flush ();
    while (w_wb () == 1)
      if (++n > 100000)
        child_fail ("writeback does not finish");
  }
  idx = op_start (o);
  if (pc_cache_set_mode (S.c, m, &err) == -1)
    child_fail ("pc_cache_set_mode %s: %s", pc_mode_name (m), strerror (err));
  op_done (idx);
}

static uint32_t
nfree (void)
{
  struct pc_stats s;

  pc_cache_get_stats (S.c, &s);
  return s.segs_total - s.segs_used;
}

/* Keep free segments: without worker threads a full cache would wait
 * forever for writeback.
 */
static void
make_room (uint32_t want_free)
{
  int n = 0;

  if (nfree () >= want_free)
    return;
  w_flush ();
  while (w_wb () == 1)
    if (++n > 100000)
      child_fail ("writeback does not finish");
  w_gc (1);
  if (nfree () < want_free)
    child_fail ("only %u free segments after writeback and GC", nfree ());
}

/* A run of n blocks within one open export (global block number). */
static uint64_t
pick_block (unsigned n)
{
  unsigned x = S.nopen > 1 ? tu_below (&S.rng, S.nopen) : 0;
  uint64_t r = tu_below (&S.rng, 100), b, nb = X[x].nblocks;

  if (r < 45)                                 /* a hot set */
    b = tu_below (&S.rng, 64);
  else if (r < 55 && nb > STRIPE_BLOCKS)      /* across a stripe edge */
    b = STRIPE_BLOCKS - n / 2 - tu_below (&S.rng, 2);
  else
    b = tu_below (&S.rng, nb);
  if (b + n > nb)
    b = nb - n;
  return X[x].first + b;
}

/* Open export i (its namespace is created: a table entry and a control
 * record) and attach its backend.
 */
static void
w_nsopen (unsigned i)
{
  struct op o = { .kind = OP_NSOPEN, .block = i };
  uint64_t idx = op_start (o);
  struct pc_backend bg = tu_mem_backend (S.bk[i]);
  uint32_t id;

  if (pc_ns_open (S.c, X[i].name, X[i].size, &id) == -1)
    child_fail ("pc_ns_open '%s': %m", X[i].name);
  if (id != i)
    child_fail ("export '%s' is namespace %u, expected %u", X[i].name, id, i);
  if (pc_ns_attach (S.c, id, &bg) == -1)
    child_fail ("pc_ns_attach '%s': %m", X[i].name);
  S.nopen = i + 1;
  op_done (idx);
}

static void
one_op (void)
{
  uint64_t x = tu_below (&S.rng, 100);
  unsigned n;

  if (x < 55) {
    n = tu_below (&S.rng, 5) == 0
      ? 2 + tu_below (&S.rng, wp->max_write_blocks - 1) : 1;
    make_room (5);
    w_write (pick_block (n), n, tu_below (&S.rng, 100) < 15);
  }
  else if (x < 62) {
    n = 1 + tu_below (&S.rng, 4);
    w_zero (OP_ZERO, pick_block (n), n, tu_below (&S.rng, 10) == 0,
            tu_below (&S.rng, 2));
  }
  else if (x < 67) {
    n = 1 + tu_below (&S.rng, 4);
    w_zero (OP_TRIM, pick_block (n), n, tu_below (&S.rng, 10) == 0, 0);
  }
  else if (x < 80) {
    n = 1 + tu_below (&S.rng, 8);
    make_room (5);
    w_read (pick_block (n), n);
  }
  else if (x < 86)
    w_flush ();
  else if (x < 93)
    w_wb ();
  else
    w_gc (tu_below (&S.rng, 2));
}

/* Many zero/trim keys on a few blocks of one stripe: full ksets of 128
 * keys that fill the log quickly (a LAST record every ~250 ksets) with
 * few persist points, and that writeback coalesces.
 */
static void
burst (void)
{
  uint64_t base;
  int k;
  unsigned i;

  for (k = 0; k < wp->burst_ksets; k++) {
    /* With several exports, each kset on the next one. */
    const struct xns *x = &X[k % S.nopen];

    base = x->first + (x->nblocks > 2 * STRIPE_BLOCKS ? STRIPE_BLOCKS : 0) +
      512;
    make_room (4);
    for (i = 0; i < PC_KSET_MAX_KEYS; i++) {
      uint64_t b = base + tu_below (&S.rng, 8);
      w_zero (tu_below (&S.rng, 4) == 0 ? OP_TRIM : OP_ZERO, b, 1,
              i == PC_KSET_MAX_KEYS - 1 && tu_below (&S.rng, 8) == 0, 0);
    }
    if (tu_below (&S.rng, 16) == 0)
      w_flush ();
    if (tu_below (&S.rng, 8) == 0)
      w_wb ();
  }
}

static void
workload (void)
{
  int r, i, n;

  for (r = 0; r < wp->rounds; r++) {
    /* The other exports come after the first round. */
    if (r == 1)
      while (S.nopen < nx)
        w_nsopen (S.nopen);
    n = 4 + tu_below (&S.rng, wp->ops_per_round);
    for (i = 0; i < n; i++)
      one_op ();
    /* Bursts fill the log, in write-back mode (elsewhere each of
     * their zeroes would be a backend request and a crash point).
     */
    if (wp->burst_every && r % wp->burst_every == wp->burst_every - 1) {
      if (pc_cache_get_mode (S.c) != PC_MODE_WRITEBACK)
        w_mode (PC_MODE_WRITEBACK);
      burst ();
    }
    if (tu_below (&S.rng, 10) < 7)
      w_flush ();
    n = tu_below (&S.rng, 4);
    for (i = 0; i < n; i++)
      w_wb ();
    if (tu_below (&S.rng, 3) == 0)
      w_gc (1);
    /* Now and then one round in write-through or write-around: their
     * invalidations and clean copies must replay as coherently.  One
     * round only: every write there is a backend write and a kset, so
     * crash points (each one checked by --all) would multiply.
     */
    if (pc_cache_get_mode (S.c) != PC_MODE_WRITEBACK)
      w_mode (PC_MODE_WRITEBACK);
    else if (tu_below (&S.rng, 6) == 0)
      w_mode ((enum pc_mode) (1 + tu_below (&S.rng, 2)));
  }
}

static void __attribute__ ((noreturn))
child_main (int out_fd, int go_fd, const struct sel *sel, size_t nsel,
            int snapshot, int counting)
{
  struct pc_config cfg;
  struct op o = { .kind = OP_FORMAT };
  uint64_t idx, b;
  unsigned i;

  memset (&S, 0, sizeof S);
  S.out_fd = out_fd;
  S.go_fd = go_fd;
  S.sel = sel;
  S.nsel = nsel;
  S.snapshot = snapshot;
  S.counting = counting;
  S.trace = counting && getenv ("CRASH_SIM_TRACE") != NULL;
  S.rng = tu_seed (opt_seed);
  S.cache_size = cache_size_for (wp);
  S.nblocks = wp->backing_size / TU_BLK;
  snprintf (S.cache_path, sizeof S.cache_path, "%s/cache-%d", tmpdir,
            (int) getpid ());
  S.dur = calloc (1, S.cache_size);       /* format creates a zero file */
  S.scratch = malloc (S.cache_size);
  S.cur = calloc (S.nblocks, sizeof *S.cur);
  S.buf = malloc ((uint64_t) (wp->max_write_blocks + 8) * TU_BLK);
  if (!S.dur || !S.scratch || !S.cur || !S.buf ||
      !(S.bscratch = malloc (wp->backing_size)))
    child_fail ("out of memory");
  for (i = 0; i < nx; i++) {
    if (!(S.bk[i] = tu_mem_new_volatile (X[i].size, 0)))
      child_fail ("out of memory");
    for (b = 0; b < X[i].nblocks; b++)
      tu_block_fill (S.bk[i]->dur + b * TU_BLK, X[i].first + b, 0);
    memcpy (S.bk[i]->buf, S.bk[i]->dur, X[i].size);
    S.bk[i]->hook = hook_backend;
  }

  tu_log_echo (1);
  tu_log_install ();
  pc_pmem_set_hooks (hook_before, hook_after, NULL);

  pc_config_init (&cfg);
  cfg.path = S.cache_path;
  cfg.size = S.cache_size;
  cfg.seg_size = PC_MIN_SEG_SIZE;
  cfg.data_crc = wp->data_crc;
  cfg.cache_on_read = 1;
  cfg.wb_group = opt_group;
  idx = op_start (o);
  if (pc_cache_open (&cfg, &S.c) == -1)
    child_fail ("pc_cache_open: %m");
  if (!wp->nns && pc_cache_bind (S.c, wp->backing_size) == -1)
    child_fail ("pc_cache_bind (format): %m");
  if (wp->nns && pc_cache_ready (S.c) == -1)
    child_fail ("pc_cache_ready (format): %m");
  if (S.c->nsegs != wp->nsegs)
    child_fail ("formatted %u segments, expected %u", S.c->nsegs, wp->nsegs);
  S.n_gen_format = S.n_gen;
  op_done (idx);
  if (!wp->nns) {
    struct pc_backend bg = tu_mem_backend (S.bk[0]);
    pc_cache_set_backend (S.c, &bg);
    S.nopen = 1;
  }
  else
    w_nsopen (0);

  workload ();

  if (counting) {
    struct pc_stats ps;
    uint64_t nw = 0, nf = 0;

    for (i = 0; i < nx; i++) {
      nw += S.bk[i]->npwrite + S.bk[i]->nzero + S.bk[i]->ntrim;
      nf += S.bk[i]->nflush;
    }
    pc_cache_get_stats (S.c, &ps);
    printf ("crash-sim:   workload coverage: %" PRIu64 " ksets (%" PRIu64
            " full, %" PRIu64 " LAST), %" PRIu64 " payload stores, %" PRIu64
            " control updates, %" PRIu64 " generation bumps, %" PRIu64
            " segments freed by GC, %" PRIu64 " writeback rounds, %"
            PRIu64 " backend writes, %" PRIu64 " backend flushes, %"
            PRIu64 " bytes left out as overwritten\n",
            S.n_kset, S.n_full, S.n_last, S.n_payload, S.n_ctrl,
            S.n_gen - S.n_gen_format,
            ps.gc_segments, ps.writeback_rounds, nw, nf,
            ps.writeback_skipped_bytes);
    for (i = 0; wp->nns && i < nx; i++)
      printf ("crash-sim:   export '%s' (namespace %u, %" PRIu64 " blocks "
              "from block %" PRIu64 "): %" PRIu64 " backend writes, %"
              PRIu64 " flushes, %" PRIu64 " reads\n", X[i].name, i,
              X[i].nblocks, X[i].first,
              S.bk[i]->npwrite + S.bk[i]->nzero + S.bk[i]->ntrim,
              S.bk[i]->nflush, S.bk[i]->npread);
    fflush (stdout);
  }
  o = (struct op) { .kind = OP_CLOSE };
  idx = op_start (o);
  pc_cache_close (S.c);
  S.c = NULL;
  op_done (idx);
  {
    struct msg m = { .type = M_END, .a = S.point };
    send_msg (&m);
  }
  unlink (S.cache_path);
  _exit (0);
}

/* ================================================================== */
/* The parent's record of the workload. */

struct oplog {
  struct op *ops;
  uint64_t nstarted, ncompleted, cap;
  uint64_t end_points;          /* from M_END */
  int ended;
};

static void
oplog_add (struct oplog *L, const struct msg *m)
{
  switch (m->type) {
  case M_START:
    if (m->a != L->nstarted || L->nstarted != L->ncompleted)
      die ("operation stream out of order");
    if (L->nstarted == L->cap) {
      L->cap = L->cap ? L->cap * 2 : 4096;
      L->ops = realloc (L->ops, L->cap * sizeof *L->ops);
      if (!L->ops)
        die ("out of memory");
    }
    L->ops[L->nstarted++] = m->op;
    break;
  case M_DONE:
    if (m->a != L->ncompleted || L->nstarted != L->ncompleted + 1)
      die ("operation stream out of order");
    L->ncompleted++;
    break;
  case M_END:
    L->ended = 1;
    L->end_points = m->a;
    break;
  }
}

/* Read one message; 0 at EOF. */
static int
read_msg (int fd, struct msg *m)
{
  char *p = (char *) m;
  size_t got = 0;

  while (got < sizeof *m) {
    ssize_t n = read (fd, p + got, sizeof *m - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      die ("read: %m");
    if (n == 0) {
      if (got)
        die ("truncated message");
      return 0;
    }
    got += n;
  }
  return 1;
}

/* ================================================================== */
/* The verifier. */

struct vctx {
  const struct oplog *L;
  uint64_t point;
  int variant;
  char img[PATH_MAX], bk[PATH_MAX];
  int violations;
};

static void
violation (struct vctx *v, const char *fmt, ...)
{
  va_list ap;
  const struct oplog *L = v->L;
  char where[256] = "";

  if (L->nstarted > L->ncompleted &&
      L->ops[L->nstarted - 1].kind == OP_NSOPEN)
    snprintf (where, sizeof where, ", during op %" PRIu64 " (%s '%s')",
              L->nstarted - 1, op_names[OP_NSOPEN],
              X[L->ops[L->nstarted - 1].block].name);
  else if (L->nstarted > L->ncompleted) {
    const struct op *o = &L->ops[L->nstarted - 1];
    snprintf (where, sizeof where, ", during op %" PRIu64 " (%s block %"
              PRIu64 " x%u%s)", L->nstarted - 1, op_names[o->kind], o->block,
              o->nblocks, o->fua ? " FUA" : "");
  }
  else
    snprintf (where, sizeof where, ", after op %" PRIu64, L->ncompleted - 1);
  va_start (ap, fmt);
  printf ("VIOLATION [workload %s seed %" PRIu64 " point %" PRIu64 " %s%s]: ",
          wp->name, opt_seed, v->point, variant_names[v->variant], where);
  vprintf (fmt, ap);
  putchar ('\n');
  va_end (ap);
  v->violations++;
}

/* Per-block history of the client's operations. */
struct hist {
  uint64_t *start;              /* nblocks + 1 offsets into ent */
  struct hent { uint64_t op; uint32_t val; uint32_t epoch; } *ent;
};

static void
hist_build (const struct oplog *L, uint64_t nblocks, struct hist *h)
{
  uint64_t i, total = 0, *fill;
  uint32_t epoch = 0;

  h->start = calloc (nblocks + 1, sizeof *h->start);
  fill = calloc (nblocks + 1, sizeof *fill);
  if (!h->start || !fill)
    die ("out of memory");
  for (i = 0; i < L->nstarted; i++) {
    const struct op *o = &L->ops[i];
    if (o->kind == OP_WRITE || o->kind == OP_ZERO || o->kind == OP_TRIM) {
      unsigned j;
      for (j = 0; j < o->nblocks; j++)
        h->start[o->block + j + 1]++;
      total += o->nblocks;
    }
  }
  for (i = 0; i < nblocks; i++)
    h->start[i + 1] += h->start[i];
  h->ent = malloc ((total ? total : 1) * sizeof *h->ent);
  if (!h->ent)
    die ("out of memory");
  for (i = 0; i < L->nstarted; i++) {
    const struct op *o = &L->ops[i];
    if (o->kind == OP_WRITE || o->kind == OP_ZERO || o->kind == OP_TRIM) {
      unsigned j;
      for (j = 0; j < o->nblocks; j++) {
        uint64_t b = o->block + j;
        struct hent *e = &h->ent[h->start[b] + fill[b]++];
        e->op = i;
        e->val = o->kind == OP_WRITE ? o->ver : TU_V_ZERO;
        e->epoch = epoch;
      }
    }
    else if (o->kind == OP_FLUSH && i < L->ncompleted)
      epoch++;
  }
  free (fill);
}

static void
hist_free (struct hist *h)
{
  free (h->start);
  free (h->ent);
}

static uint32_t
nepochs (const struct oplog *L)
{
  uint64_t i;
  uint32_t e = 0;

  for (i = 0; i < L->ncompleted; i++)
    if (L->ops[i].kind == OP_FLUSH)
      e++;
  return e;
}

/* (c) with write-back groups: the image is the state after epochs < A
 * plus, for a group of epochs A..B (B - A < group_max), any subset of
 * the group's final data: a block holds its value before A, or the
 * last value the group wrote to it.  A group of one epoch may also hold
 * any value of that epoch (a strict batch: an epoch too large for one
 * batch goes down in parts).  For each A, the B that every block fits
 * are counted as check_prefix counts its P.  Returns 1 if some A, B
 * fits.
 */
static int
group_fits (const struct hist *h, const uint32_t *bv, uint64_t first,
            uint64_t nblocks, uint32_t E, uint32_t *fitA, uint32_t *fitB)
{
  int64_t *diff = calloc (E + 2, sizeof *diff);
  uint32_t A, B;
  uint64_t b, k;
  int found = 0;

  if (!diff)
    die ("out of memory");
  for (A = 0; A <= E && !found; A++) {
    uint32_t Bmax = (uint32_t) PC_MIN ((uint64_t) A + group_max - 1, E);
    int64_t fit = 0;

    memset (diff, 0, (E + 2) * sizeof *diff);
    for (b = 0; b < nblocks; b++) {
      uint64_t s = h->start[first + b], e = h->start[first + b + 1];
      uint32_t base = 0;
      int64_t lo = -1, hi = -1;

      for (k = s; k < e && h->ent[k].epoch < A; k++)
        base = h->ent[k].val;
      if (bv[b] == base) {
        diff[A]++;
        diff[Bmax + 1]--;
        continue;
      }
#define ADD(a, z) do {                                          \
        int64_t a_ = (a), z_ = (z);                             \
        if (z_ > Bmax) z_ = Bmax;                               \
        if (a_ > z_) break;                                     \
        if (lo >= 0 && a_ <= hi + 1) { if (z_ > hi) hi = z_; }  \
        else {                                                  \
          if (lo >= 0) { diff[lo]++; diff[hi + 1]--; }          \
          lo = a_; hi = z_;                                     \
        }                                                       \
      } while (0)
      /* Any value of epoch A, for the group of A alone. */
      for (; k < e && h->ent[k].epoch == A; k++)
        if (h->ent[k].val == bv[b]) {
          ADD (A, A);
          break;
        }
      /* The last value of each epoch is final for B up to the epoch
       * before the block's next write.
       */
      for (k = s; k < e; k++) {
        uint32_t ep = h->ent[k].epoch;

        if (ep < A || (k + 1 < e && h->ent[k + 1].epoch == ep))
          continue;
        if (h->ent[k].val == bv[b])
          ADD (ep, k + 1 < e ? h->ent[k + 1].epoch - 1 : E);
      }
#undef ADD
      if (lo >= 0) {
        diff[lo]++;
        diff[hi + 1]--;
      }
    }
    for (B = A; B <= Bmax; B++) {
      fit += diff[B];
      if ((uint64_t) fit == nblocks) {
        *fitA = A;
        *fitB = B;
        found = 1;
        break;
      }
    }
  }
  free (diff);
  return found;
}

/* (c): the backend's durable image is epochs < P plus part of epoch P.
 *
 * For one block with operations k (epoch e_k, value v_k, in order), the
 * image fits P if it holds the value before epoch P (the original for
 * P <= e_0, v_k for e_k < P <= e_{k+1}) or a value of epoch P; so a
 * value v_k fits P in [e_k, e_{k+1}] (e_{k+1} = E for the last), the
 * original fits [0, e_0].  A P that every block fits is found by
 * counting, over P, the blocks that fit.
 */
static void
check_prefix (struct vctx *v, const struct hist *h, const uint8_t *img,
              unsigned x)
{
  /* Export x's blocks only: epochs are global, the P is its own. */
  const uint64_t nblocks = X[x].nblocks, first = X[x].first;
  const uint64_t *hs = h->start + first;
  uint32_t E = nepochs (v->L), *bv;
  int64_t *diff;
  uint64_t b, k, fit, best = 0;
  uint32_t P, bestP = 0, gA, gB;
  int found = 0;

  bv = malloc (nblocks * sizeof *bv);
  diff = calloc (E + 2, sizeof *diff);
  if (!bv || !diff)
    die ("out of memory");
  atomic_fetch_add (&st->prefix_checks, 1);
  for (b = 0; b < nblocks; b++) {
    uint64_t s = hs[b], e = hs[b + 1];
    int64_t lo = -1, hi = -1;           /* the interval being merged */

    bv[b] = tu_block_decode (img + b * TU_BLK, first + b);
    /* Intervals come in increasing order: merge and add them. */
#define ADD(a, z) do {                                          \
      int64_t a_ = (a), z_ = (z);                               \
      if (lo >= 0 && a_ <= hi + 1) { if (z_ > hi) hi = z_; }    \
      else {                                                    \
        if (lo >= 0) { diff[lo]++; diff[hi + 1]--; }            \
        lo = a_; hi = z_;                                       \
      }                                                         \
    } while (0)
    if (bv[b] == 0)
      ADD (0, s < e ? h->ent[s].epoch : E);
    for (k = s; k < e; k++)
      if (h->ent[k].val == bv[b])
        ADD (h->ent[k].epoch, k + 1 < e ? h->ent[k + 1].epoch : E);
#undef ADD
    if (lo >= 0) {
      diff[lo]++;
      diff[hi + 1]--;
    }
  }
  for (P = 0, fit = 0; P <= E; P++) {
    fit += diff[P];
    if (fit == nblocks) {
      found = 1;
      bestP = P;
      break;
    }
    if (fit > best) {
      best = fit;
      bestP = P;
    }
  }
  if (found) {
    int partial = 0;

    /* At an epoch boundary, or part of epoch P? */
    for (b = 0; b < nblocks && !partial; b++) {
      uint32_t end = 0;
      for (k = hs[b]; k < hs[b + 1] && h->ent[k].epoch <= bestP;
           k++)
        end = h->ent[k].val;
      if (bv[b] != end)
        partial = 1;
    }
    if (partial)
      atomic_fetch_add (&st->prefix_partial, 1);
    if (bestP > 0)
      atomic_fetch_add (&st->prefix_past0, 1);
    for (;;) {
      uint64_t m = atomic_load (&st->max_prefix);
      if (bestP <= m ||
          atomic_compare_exchange_weak (&st->max_prefix, &m, bestP))
        break;
    }
  }
  else if (group_max > 1 &&
           group_fits (h, bv, first, nblocks, E, &gA, &gB)) {
    /* Inside a group: epochs < gA, and part of gA..gB's final data. */
    atomic_fetch_add (&st->prefix_group, 1);
    if (opt_verbose > 1)
      printf ("crash-sim: point %" PRIu64 ": backend inside group %u..%u\n",
              v->point, gA, gB);
  }
  else {
    /* Name a block that does not fit the best P. */
    uint64_t bad_blk = 0;
    char b1[32];

    for (b = 0; b < nblocks; b++) {
      uint32_t base = 0;
      int ok;

      for (k = hs[b]; k < hs[b + 1] && h->ent[k].epoch < bestP;
           k++)
        base = h->ent[k].val;
      ok = bv[b] == base;
      for (; k < hs[b + 1] && h->ent[k].epoch == bestP; k++)
        if (h->ent[k].val == bv[b])
          ok = 1;
      if (!ok) {
        bad_blk = b;
        break;
      }
    }
    char who[64] = "";

    if (wp->nns)
      snprintf (who, sizeof who, " of export '%s'", X[x].name);
    violation (v, "backend%s durable image is not a prefix of the client's "
               "epochs%s%s: at best P=%u of %u, %" PRIu64 " of %" PRIu64
               " blocks fit; e.g. block %" PRIu64 " holds %s", who,
               wp->nns ? " restricted to its writes" : "",
               group_max > 1 ? ", nor of groups plus part of one" : "",
               bestP, E,
               best, nblocks, first + bad_blk,
               tu_block_name (bv[bad_blk], b1, sizeof b1));
  }
  free (bv);
  free (diff);
}

/* (a) and (b) for one block: is val allowed after the crash? */
static int
block_allowed (const struct oplog *L, const struct hist *h, uint64_t b,
               uint64_t last_flush, uint32_t val, uint64_t *durable_op)
{
  uint64_t k, d = h->start[b];
  int have_durable = 0;

  for (k = h->start[b]; k < h->start[b + 1]; k++) {
    const struct hent *e = &h->ent[k];
    const struct op *o = &L->ops[e->op];

    if ((last_flush != UINT64_MAX && e->op < last_flush) ||
        (o->fua && e->op < L->ncompleted)) {
      d = k;
      have_durable = 1;
    }
  }
  *durable_op = have_durable ? h->ent[d].op : UINT64_MAX;
  if (!have_durable && val == 0)
    return 1;
  for (k = d; k < h->start[b + 1]; k++)
    if (h->ent[k].val == val)
      return 1;
  return 0;
}

static void
describe_allowed (const struct hist *h, uint64_t b, uint64_t durable_op,
                  char *out, size_t len)
{
  uint64_t k;
  size_t n = 0;
  int first = 1;

  out[0] = 0;
  if (durable_op == UINT64_MAX)
    n += snprintf (out + n, len - n, "original");
  for (k = h->start[b]; k < h->start[b + 1] && n < len - 40; k++) {
    char b1[32];
    if (durable_op != UINT64_MAX && h->ent[k].op < durable_op)
      continue;
    n += snprintf (out + n, len - n, "%s%s(op %" PRIu64 ")",
                   (first && durable_op != UINT64_MAX) ? "" : ", ",
                   tu_block_name (h->ent[k].val, b1, sizeof b1), h->ent[k].op);
    first = 0;
  }
}

/* Read every block of every export through the cache into vals. */
static int
read_all (struct vctx *v, pc_cache *c, struct tu_mem **bk, uint32_t *vals,
          const char *what)
{
  const unsigned chunk = 64;
  uint8_t *buf = malloc (chunk * TU_BLK);
  uint64_t b;
  unsigned x;
  int err = 0;

  if (!buf)
    die ("out of memory");
  for (x = 0; x < nx; x++) {
    struct pc_backend fg = tu_mem_backend (bk[x]);
    uint64_t end = X[x].first + X[x].nblocks;

    for (b = X[x].first; b < end; b += chunk) {
      unsigned n = end - b < chunk ? end - b : chunk, i;

      if (pc_read (c, buf, n * TU_BLK, blk_addr (b), &fg, &err) == -1) {
        violation (v, "%s: pc_read of block %" PRIu64 " failed: %s", what, b,
                   strerror (err));
        free (buf);
        return -1;
      }
      for (i = 0; i < n; i++)
        vals[b + i] = tu_block_decode (buf + (uint64_t) i * TU_BLK, b + i);
    }
  }
  free (buf);
  return 0;
}

static int
attach_all (struct vctx *v, pc_cache *c, struct tu_mem **bk)
{
  unsigned x;

  if (!wp->nns) {
    struct pc_backend bg = tu_mem_backend (bk[0]);
    pc_cache_set_backend (c, &bg);
    return 0;
  }
  for (x = 0; x < nx; x++) {
    struct pc_backend bg = tu_mem_backend (bk[x]);

    if (pc_ns_attach (c, x, &bg) == -1) {
      violation (v, "pc_ns_attach '%s' failed: %s", X[x].name,
                 tu_log_text ());
      return -1;
    }
  }
  return 0;
}

/* Make an opened cache ready and find the exports again: each
 * namespace whose pc_ns_open was acknowledged must be there before it
 * is opened again (a crash inside it may leave it or not, never
 * anything else), and opening all of them must give the same ids.
 * With check 0 (a reopen after replay), every namespace must be there.
 */
static int
v_bind (struct vctx *v, pc_cache *c, int check, const char *what)
{
  const struct oplog *L = v->L;
  unsigned x;
  uint64_t i;
  int acked[MAX_NS] = { 0 }, started[MAX_NS] = { 0 }, present = 0;
  int v0 = v->violations;

  if (!wp->nns) {
    if (pc_cache_bind (c, wp->backing_size) == -1) {
      violation (v, "%s: pc_cache_bind failed: %s", what, tu_log_text ());
      return -1;
    }
    return 0;
  }
  if (pc_cache_ready (c) == -1) {
    violation (v, "%s: pc_cache_ready failed: %s", what, tu_log_text ());
    return -1;
  }
  for (i = 0; i < L->nstarted; i++)
    if (L->ops[i].kind == OP_NSOPEN) {
      started[L->ops[i].block] = 1;
      if (i < L->ncompleted)
        acked[L->ops[i].block] = 1;
    }
  for (x = 0; x < pc_ns_slots (c); x++) {
    struct pc_ns_info *in = malloc (sizeof *in);
    int r;

    if (!in)
      die ("out of memory");
    r = pc_ns_info (c, x, in);
    if (r == 0 && x >= nx)
      violation (v, "%s: namespace %u ('%.64s') is there: nothing created "
                 "it", what, x, in->name);
    else if (r == 0 && (strcmp (in->name, X[x].name) != 0 ||
                        in->size != X[x].size))
      violation (v, "%s: namespace %u is '%.64s' of %" PRIu64 " bytes, "
                 "expected '%s' of %" PRIu64, what, x, in->name, in->size,
                 X[x].name, X[x].size);
    else if (r == 0 && check && !started[x])
      violation (v, "%s: namespace %u ('%s') is there before its "
                 "pc_ns_open started", what, x, X[x].name);
    else if (r != 0 && x < nx && (acked[x] || !check))
      violation (v, "%s: export '%s' (namespace %u) was created (pc_ns_open "
                 "acknowledged) but is gone", what, X[x].name, x);
    if (r == 0 && x < nx && check && started[x] && !acked[x])
      present = 1;
    free (in);
  }
  if (check && L->nstarted > L->ncompleted &&
      L->ops[L->nstarted - 1].kind == OP_NSOPEN)
    atomic_fetch_add (present ? &st->ns_present : &st->ns_absent, 1);
  if (v->violations != v0)
    return -1;
  for (x = 0; x < nx; x++) {
    uint32_t id;

    if (pc_ns_open (c, X[x].name, X[x].size, &id) == -1) {
      violation (v, "%s: pc_ns_open '%s' failed: %s", what, X[x].name,
                 tu_log_text ());
      return -1;
    }
    if (id != x) {
      violation (v, "%s: export '%s' is namespace %u, was %u", what,
                 X[x].name, id, x);
      return -1;
    }
  }
  return 0;
}

static pc_cache *
v_open (struct vctx *v, const char *img, int cache_on_read, const char *what)
{
  struct pc_config cfg;
  pc_cache *c;

  pc_config_init (&cfg);
  cfg.path = img;
  cfg.cache_on_read = cache_on_read;
  tu_log_clear ();
  if (pc_cache_open (&cfg, &c) == -1) {
    violation (v, "%s: pc_cache_open failed: %s", what, tu_log_text ());
    return NULL;
  }
  if (v_bind (v, c, 0, what) == -1) {
    pc_cache_close (c);
    return NULL;
  }
  return c;
}

static int
wb_all (struct vctx *v, pc_cache *c, const char *what)
{
  int n = 0, r;

  while ((r = pc_writeback_step (c)) == 1)
    if (++n > 1000000)
      break;
  if (r != 0) {
    violation (v, "%s: writeback did not finish (%d): %s", what, r,
               tu_log_text ());
    return -1;
  }
  return 0;
}

/* (d): the replayed cache works on. */
static void
phase_d (struct vctx *v, pc_cache *c, struct tu_mem **bk, uint32_t *view,
         uint64_t nblocks)
{
  uint64_t r = tu_seed (opt_seed * 31 + v->point * 2 + v->variant);
  uint32_t *vals = malloc (nblocks * sizeof *vals);
  uint8_t *buf = malloc (TU_BLK);
  uint64_t b;
  unsigned i;
  int err = 0, bad = 0;

  if (!vals || !buf)
    die ("out of memory");
  atomic_fetch_add (&st->phase_d_runs, 1);
  for (i = 0; i < 16; i++) {
    uint32_t ver = PHASE_D_VER + i;

    b = tu_below (&r, nblocks);
    if (i < 2) {
      if (pc_zero (c, TU_BLK, blk_addr (b), 0, &err) == -1) {
        violation (v, "after replay: pc_zero failed: %s", strerror (err));
        goto out;
      }
      view[b] = TU_V_ZERO;
      continue;
    }
    tu_block_fill (buf, b, ver);
    if (pc_write (c, buf, TU_BLK, blk_addr (b), (i & 1) ? PC_FUA : 0,
                  &err) == -1) {
      violation (v, "after replay: pc_write failed: %s", strerror (err));
      goto out;
    }
    view[b] = ver;
  }
  if (pc_flush (c, &err) == -1) {
    violation (v, "after replay: pc_flush failed: %s", strerror (err));
    goto out;
  }
  pc_writeback_step (c);
  if (pc_gc_run (c, 1) < 0) {
    violation (v, "after replay: pc_gc_run failed");
    goto out;
  }
  pc_cache_close (c);
  c = NULL;

  /* Reopen: what was written after the crash, and everything else as
   * first read, must be there.
   */
  c = v_open (v, v->img, 1, "second reopen");
  if (!c)
    goto out;
  if (attach_all (v, c, bk) == -1 ||
      read_all (v, c, bk, vals, "second reopen") == -1)
    goto out;
  for (b = 0; b < nblocks && bad < 5; b++)
    if (vals[b] != view[b]) {
      char b1[32], b2[32];
      violation (v, "second reopen: block %" PRIu64 " reads %s, expected %s",
                 b, tu_block_name (vals[b], b1, sizeof b1),
                 tu_block_name (view[b], b2, sizeof b2));
      bad++;
    }
  /* Drain: then the backend alone must hold what the cache serves. */
  if (pc_flush (c, &err) == -1) {
    violation (v, "drain: pc_flush failed: %s", strerror (err));
    goto out;
  }
  if (wb_all (v, c, "drain") == -1)
    goto out;
  if (pc_gc_run (c, 1) < 0) {
    violation (v, "drain: pc_gc_run failed");
    goto out;
  }
  /* Each backend: its own export's blocks (named by their global
   * number, so the other export's data would not pass).
   */
  for (b = 0; b < nblocks && bad < 5; b++) {
    unsigned x = blk_ns (b);
    uint32_t got = tu_block_decode (bk[x]->dur + (b - X[x].first) * TU_BLK,
                                    b);
    if (got != view[b]) {
      char b1[32], b2[32], who[64] = "";

      if (wp->nns)
        snprintf (who, sizeof who, " of export '%s' at offset %" PRIu64,
                  X[x].name, (b - X[x].first) * TU_BLK);
      violation (v, "drained backend: block %" PRIu64 "%s holds %s, the "
                 "cache served %s", b, who, tu_block_name (got, b1, sizeof b1),
                 tu_block_name (view[b], b2, sizeof b2));
      bad++;
    }
  }
  if (read_all (v, c, bk, vals, "after drain") == -1)
    goto out;
  for (b = 0; b < nblocks && bad < 5; b++)
    if (vals[b] != view[b]) {
      char b1[32], b2[32];
      violation (v, "after drain and GC: block %" PRIu64 " reads %s, "
                 "expected %s", b, tu_block_name (vals[b], b1, sizeof b1),
                 tu_block_name (view[b], b2, sizeof b2));
      bad++;
    }
 out:
  if (c)
    pc_cache_close (c);
  free (vals);
  free (buf);
}

static int
verify (struct vctx *v)
{
  const struct oplog *L = v->L;
  uint64_t nblocks = wp->backing_size / TU_BLK, b, last_flush = UINT64_MAX;
  struct tu_mem *bk[MAX_NS] = { NULL };
  struct hist h;
  uint32_t *vals;
  pc_cache *c;
  unsigned x;
  int bad = 0;

  tu_log_echo (opt_verbose);
  tu_log_install ();
  pc_pmem_set_hooks (NULL, NULL, NULL);
  if (!(vals = malloc (nblocks * sizeof *vals)))
    die ("out of memory");
  /* The backends' images, one after another. */
  for (x = 0; x < nx; x++) {
    if (!(bk[x] = tu_mem_new_volatile (X[x].size, 0)))
      die ("out of memory");
    if (tu_file_read (v->bk, X[x].first * TU_BLK, bk[x]->dur,
                      X[x].size) == -1)
      die ("%s: %m", v->bk);
    memcpy (bk[x]->buf, bk[x]->dur, X[x].size);
  }
  hist_build (L, nblocks, &h);
  for (b = 0; b < L->ncompleted; b++)
    if (L->ops[b].kind == OP_FLUSH)
      last_flush = b;
  if (L->nstarted > L->ncompleted)
    atomic_fetch_add (&st->inflight[L->ops[L->nstarted - 1].kind], 1);

  /* (c), for each backend on its own */
  for (x = 0; x < nx; x++)
    check_prefix (v, &h, bk[x]->dur, x);

  /* Replay. */
  {
    struct pc_config cfg;

    pc_config_init (&cfg);
    cfg.path = v->img;
    cfg.cache_on_read = 0;
    tu_log_clear ();
    if (pc_cache_open (&cfg, &c) == -1) {
      if (L->ncompleted == 0 &&
          (tu_log_has ("not a pcache cache file") || tu_log_has ("corrupt"))) {
        atomic_fetch_add (&st->format_refused, 1);
        goto done;
      }
      violation (v, "replay refused the crash image: %s", tu_log_text ());
      goto done;
    }
    if (L->ncompleted == 0)
      atomic_fetch_add (&st->format_opened, 1);
    if (v_bind (v, c, 1, "after replay") == -1) {
      pc_cache_close (c);
      goto done;
    }
  }
  if (attach_all (v, c, bk) == -1) {
    pc_cache_close (c);
    goto done;
  }

  /* (a), (b) */
  if (read_all (v, c, bk, vals, "after replay") == -1) {
    pc_cache_close (c);
    goto done;
  }
  for (b = 0; b < nblocks; b++) {
    uint64_t dop;

    if (!block_allowed (L, &h, b, last_flush, vals[b], &dop)) {
      if (bad++ < 5) {
        char b1[32], allowed[512];
        describe_allowed (&h, b, dop, allowed, sizeof allowed);
        violation (v, "after replay block %" PRIu64 " reads %s; allowed: %s",
                   b, tu_block_name (vals[b], b1, sizeof b1), allowed);
      }
    }
    else if (dop != UINT64_MAX)
      atomic_fetch_add (&st->acked_durable_blocks, 1);
  }
  if (bad) {
    pc_cache_close (c);
    goto done;
  }

  /* (d) */
  phase_d (v, c, bk, vals, nblocks);

 done:
  hist_free (&h);
  for (x = 0; x < nx; x++)
    tu_mem_free (bk[x]);
  free (vals);
  return v->violations;
}

/* Verify one crash image (in a process of its own) and exit. */
static void __attribute__ ((noreturn))
verify_and_exit (const struct oplog *L, uint64_t point, int variant)
{
  struct vctx v = { .L = L, .point = point, .variant = variant };
  char keep[PATH_MAX * 2];
  int n;

  img_paths (point, variant, v.img, v.bk);
  if (opt_keep) {
    snprintf (keep, sizeof keep, "%s/%s-s%" PRIu64 "-p%" PRIu64 "%c.img",
              opt_keep, wp->name, opt_seed, point, "ct"[variant]);
    tu_file_copy (v.img, keep);
  }
  n = verify (&v);
  if (opt_keep) {
    if (n == 0)
      unlink (keep);
    else {
      printf ("  kept %s\n", keep);
      snprintf (keep, sizeof keep, "%s/%s-s%" PRIu64 "-p%" PRIu64 "%c.bk",
                opt_keep, wp->name, opt_seed, point, "ct"[variant]);
      tu_file_copy (v.bk, keep);
    }
  }
  unlink (v.img);
  unlink (v.bk);
  atomic_fetch_add (&st->verified, 1);
  if (variant == V_TORN)
    atomic_fetch_add (&st->verified_torn, 1);
  atomic_fetch_add (&st->violations, n);
  fflush (stdout);
  _exit (n ? 1 : 0);
}

/* Verify one crash image in a forked process; returns its pid. */
static pid_t
spawn_verifier (const struct oplog *L, uint64_t point, int variant)
{
  pid_t pid;

  fflush (stdout);
  fflush (stderr);
  pid = fork ();
  if (pid == -1)
    die ("fork: %m");
  if (pid == 0)
    verify_and_exit (L, point, variant);
  return pid;
}

/* Children the parent waits for: verifiers (snapshot) or trials (kill). */
struct job {
  pid_t pid;
  uint64_t point;
  int variant;
};
static struct job *jobs;
static int njobs;
/* The workload child, which reap may collect too. */
static pid_t wl_pid = -1;
static int wl_status, wl_done;

static void
reap (int block)
{
  int status, i;
  pid_t pid = waitpid (-1, &status, block ? 0 : WNOHANG);

  if (pid <= 0)
    return;
  if (pid == wl_pid) {
    wl_status = status;
    wl_done = 1;
    return;
  }
  for (i = 0; i < njobs; i++)
    if (jobs[i].pid == pid)
      break;
  if (i == njobs)
    return;
  if (WIFSIGNALED (status) || (WIFEXITED (status) && WEXITSTATUS (status) > 1)) {
    printf ("VIOLATION [workload %s seed %" PRIu64 " point %" PRIu64
            " %s]: verifier died (%s %d)\n", wp->name, opt_seed,
            jobs[i].point, variant_names[jobs[i].variant],
            WIFSIGNALED (status) ? "signal" : "status",
            WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status));
    atomic_fetch_add (&st->violations, 1);
    atomic_fetch_add (&st->crashed_verifiers, 1);
  }
  jobs[i] = jobs[--njobs];
}

static void
add_job (pid_t pid, uint64_t point, int variant)
{
  jobs[njobs++] = (struct job) { pid, point, variant };
}

/* ------------------------------------------------------------------ */
/* Running the workload child. */

struct run {
  pid_t pid;
  int fd;                       /* messages from the child */
  int go;                       /* go bytes to the child */
};

static void
start_child (struct run *R, const struct sel *sel, size_t nsel, int snapshot,
             int counting)
{
  int p[2], g[2];

  if (pipe2 (p, O_CLOEXEC) == -1 || pipe2 (g, O_CLOEXEC) == -1)
    die ("pipe: %m");
  fflush (stdout);
  fflush (stderr);
  R->pid = fork ();
  if (R->pid == -1)
    die ("fork: %m");
  if (R->pid == 0) {
    close (p[0]);
    close (g[1]);
    child_main (p[1], g[0], sel, nsel, snapshot, counting);
  }
  close (p[1]);
  close (g[0]);
  wl_pid = R->pid;
  wl_done = 0;
  R->fd = p[0];
  R->go = g[1];
}

static int
finish_child (struct run *R, const char *what)
{
  int status;

  close (R->fd);
  close (R->go);
  if (wl_done)
    status = wl_status;
  else
    while (waitpid (R->pid, &status, 0) == -1)
      if (errno != EINTR)
        die ("waitpid: %m");
  wl_pid = -1;
  wl_done = 0;
  if (WIFEXITED (status))
    return WEXITSTATUS (status);
  fprintf (stderr, "crash-sim: %s: workload child died of signal %d\n",
           what, WTERMSIG (status));
  return 256 + WTERMSIG (status);
}

/* The crash points inside namespace creations (pc_ns_open of a new
 * export), which a sample always includes: there are only a few.
 */
#define MAX_NS_POINTS 64
static uint64_t ns_points[MAX_NS_POINTS];
static size_t n_ns_points;

/* Count the crash points of the workload. */
static uint64_t
count_points (uint64_t *nops)
{
  struct run R;
  struct oplog L = { 0 };
  struct msg m;
  uint64_t ns_from = 0;
  int r, in_ns = 0;

  start_child (&R, NULL, 0, 1, 1);
  while (read_msg (R.fd, &m)) {
    if (m.type == M_START && m.op.kind == OP_NSOPEN) {
      in_ns = 1;
      ns_from = m.points + 1;
    }
    else if (m.type == M_DONE && in_ns) {
      for (; ns_from <= m.points && n_ns_points < MAX_NS_POINTS; ns_from++)
        ns_points[n_ns_points++] = ns_from;
      in_ns = 0;
    }
    oplog_add (&L, &m);
  }
  r = finish_child (&R, "counting run");
  if (r != 0 || !L.ended) {
    printf ("VIOLATION [workload %s seed %" PRIu64 "]: the workload fails "
            "without any crash (exit %d)\n", wp->name, opt_seed, r);
    exit (1);
  }
  *nops = L.ncompleted;
  free (L.ops);
  return L.end_points;
}

/* Snapshot mode: one workload run, a verifier per selected point. */
static void
run_snapshot (const struct sel *sel, size_t nsel, uint64_t *points_seen)
{
  struct run R;
  struct oplog L = { 0 };
  struct msg m;
  int r;

  start_child (&R, sel, nsel, 1, 0);
  while (read_msg (R.fd, &m)) {
    if (m.type != M_SNAP) {
      oplog_add (&L, &m);
      continue;
    }
    while (njobs >= opt_jobs)
      reap (1);
    add_job (spawn_verifier (&L, m.a, m.variant), m.a, m.variant);
    if (write (R.go, "g", 1) != 1)
      die ("write: %m");
    reap (0);
  }
  r = finish_child (&R, "snapshot run");
  while (njobs > 0)
    reap (1);
  if (r != 0 || !L.ended) {
    printf ("VIOLATION [workload %s seed %" PRIu64 "]: workload child "
            "failed (exit %d)\n", wp->name, opt_seed, r);
    atomic_fetch_add (&st->violations, 1);
  }
  *points_seen = L.end_points;
  free (L.ops);
}

/* Kill mode: a child per point, which dies there. */
static void __attribute__ ((noreturn))
kill_trial (const struct sel *s)
{
  struct run R;
  struct oplog L = { 0 };
  struct msg m;
  int r;

  start_child (&R, s, 1, 0, 0);
  while (read_msg (R.fd, &m))
    oplog_add (&L, &m);
  r = finish_child (&R, "kill trial");
  {
    /* The dead child's cache file. */
    char cache[PATH_MAX];
    snprintf (cache, sizeof cache, "%s/cache-%d", tmpdir, (int) R.pid);
    unlink (cache);
  }
  if (r == EXIT_CRASHED)
    verify_and_exit (&L, s->point, (s->variants & VB_CUT) ? V_CUT : V_TORN);
  printf ("VIOLATION [workload %s seed %" PRIu64 " point %" PRIu64 "]: "
          "workload child did not crash there (exit %d)\n", wp->name,
          opt_seed, s->point, r);
  fflush (stdout);
  _exit (2);
}

static void
run_kill (const struct sel *sel, size_t nsel)
{
  size_t i;

  for (i = 0; i < nsel; i++) {
    struct sel one = sel[i];
    pid_t pid;

    /* One variant per trial. */
    if ((one.variants & VB_CUT) && (one.variants & VB_TORN)) {
      one.variants = VB_CUT;
      while (njobs >= opt_jobs)
        reap (1);
      fflush (stdout);
      pid = fork ();
      if (pid == 0)
        kill_trial (&one);
      add_job (pid, one.point, V_CUT);
      one.variants = VB_TORN;
    }
    while (njobs >= opt_jobs)
      reap (1);
    fflush (stdout);
    pid = fork ();
    if (pid == -1)
      die ("fork: %m");
    if (pid == 0)
      kill_trial (&one);
    add_job (pid, one.point, (one.variants & VB_CUT) ? V_CUT : V_TORN);
  }
  while (njobs > 0)
    reap (1);
}

static int
sel_cmp (const void *a, const void *b)
{
  const struct sel *x = a, *y = b;
  return x->point < y->point ? -1 : x->point > y->point;
}

static void
cleanup_tmpdir (void)
{
  char cmd[PATH_MAX + 32];

  if (!tmpdir[0])
    return;
  snprintf (cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  if (system (cmd) != 0)
    fprintf (stderr, "crash-sim: could not remove %s\n", tmpdir);
}

static pid_t main_pid;

static void
on_signal (int sig)
{
  /* Only the parent cleans up; children just die. */
  if (getpid () == main_pid)
    cleanup_tmpdir ();
  signal (sig, SIG_DFL);
  raise (sig);
}

static void
usage (void)
{
  fprintf (stderr,
           "usage: crash-sim [--workload small|large|two] [--all | --sample N]\n"
           "                 [--torn] [--kill] [--seed S] [--jobs J]\n"
           "                 [--group N|auto] [--keep DIR] [--verbose]\n");
  exit (2);
}

int
main (int argc, char **argv)
{
  static const struct option lopts[] = {
    { "workload", required_argument, NULL, 'w' },
    { "all", no_argument, NULL, 'a' },
    { "sample", required_argument, NULL, 's' },
    { "torn", no_argument, NULL, 't' },
    { "kill", no_argument, NULL, 'k' },
    { "seed", required_argument, NULL, 'S' },
    { "jobs", required_argument, NULL, 'j' },
    { "keep", required_argument, NULL, 'K' },
    { "group", required_argument, NULL, 'g' },
    { "verbose", no_argument, NULL, 'v' },
    { "help", no_argument, NULL, 'h' },
    { NULL, 0, NULL, 0 },
  };
  struct sel *sel = NULL;
  size_t nsel = 0;
  uint64_t total, nops, seen = 0;
  double t0 = now_s ();
  int o;

  while ((o = getopt_long (argc, argv, "w:as:tkS:j:K:g:vh", lopts, NULL)) != -1) {
    switch (o) {
    case 'w':
      if (!strcmp (optarg, "small"))
        wp = &wl_small;
      else if (!strcmp (optarg, "large"))
        wp = &wl_large;
      else if (!strcmp (optarg, "two"))
        wp = &wl_two;
      else
        usage ();
      break;
    case 'a': opt_all = 1; break;
    case 's': opt_sample = atol (optarg); break;
    case 't': opt_torn = 1; break;
    case 'k': opt_kill = 1; break;
    case 'S': opt_seed = strtoull (optarg, NULL, 0); break;
    case 'j': opt_jobs = atoi (optarg); break;
    case 'K': opt_keep = optarg; break;
    case 'v': opt_verbose++; break;
    case 'g':
      if (!strcmp (optarg, "auto"))
        opt_group = 0;
      else if ((opt_group = atoi (optarg)) < 1 || opt_group > PC_MAX_WB_GROUP)
        usage ();
      group_max = opt_group ? (unsigned) opt_group : PC_MAX_WB_GROUP;
      break;
    default: usage ();
    }
  }
  if (optind != argc || opt_jobs < 1 || (opt_all && opt_sample >= 0))
    usage ();
  if (!opt_all && opt_sample < 0)
    opt_all = 1;
  xns_setup ();
  setvbuf (stdout, NULL, _IOLBF, 0);
  /* The cache files live on tmpfs; treat it as real persistent memory
   * (flush instructions, no msync).
   */
  setenv ("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 0);
  if (tu_mkdtemp (tmpdir, sizeof tmpdir, "crash") == -1)
    die ("mkdtemp: %m");
  atexit (cleanup_tmpdir);
  main_pid = getpid ();
  signal (SIGINT, on_signal);
  signal (SIGTERM, on_signal);
  signal (SIGHUP, on_signal);
  st = mmap (NULL, sizeof *st, PROT_READ | PROT_WRITE,
             MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  jobs = calloc (opt_jobs + 1, sizeof *jobs);
  if (st == MAP_FAILED || !jobs)
    die ("out of memory");
  memset (st, 0, sizeof *st);

  total = count_points (&nops);
  printf ("crash-sim: workload %s seed %" PRIu64 ": %" PRIu64 " operations, "
          "%" PRIu64 " crash points (persist points and backend writes)\n",
          wp->name, opt_seed, nops, total);

  if (opt_all && !opt_kill) {
    run_snapshot (NULL, 0, &seen);
  }
  else {
    uint64_t r = tu_seed (opt_seed ^ UINT64_C (0xc0ffee));
    size_t i, want;

    if (opt_all)
      want = total;
    else
      want = opt_sample < (long) total ? (size_t) opt_sample : total;
    sel = calloc (want + n_ns_points + 1, sizeof *sel);
    if (!sel)
      die ("out of memory");
    if (opt_all)
      for (i = 0; i < want; i++)
        sel[i] = (struct sel) { i + 1, VB_CUT | (opt_torn ? VB_TORN : 0) };
    else {
      /* Distinct random points. */
      while (nsel < want) {
        uint64_t p = 1 + tu_below (&r, total);
        for (i = 0; i < nsel; i++)
          if (sel[i].point == p)
            break;
        if (i < nsel)
          continue;
        sel[nsel].point = p;
        sel[nsel].variants = (opt_torn && (tu_rand (&r) & 1)) ? VB_TORN
          : VB_CUT;
        nsel++;
      }
      /* And every point of a namespace creation, cut and torn. */
      for (i = 0; i < n_ns_points; i++) {
        unsigned vb = VB_CUT | (opt_torn ? VB_TORN : 0);
        size_t j;

        for (j = 0; j < nsel; j++)
          if (sel[j].point == ns_points[i])
            break;
        if (j == nsel)
          sel[nsel++] = (struct sel) { ns_points[i], vb };
        else
          sel[j].variants |= vb;
      }
      qsort (sel, nsel, sizeof *sel, sel_cmp);
    }
    if (opt_all)
      nsel = want;
    if (opt_kill)
      run_kill (sel, nsel);
    else
      run_snapshot (sel, nsel, &seen);
  }
  if (!opt_kill && seen != total) {
    printf ("VIOLATION [workload %s seed %" PRIu64 "]: the workload is not "
            "deterministic: %" PRIu64 " crash points, then %" PRIu64 "\n",
            wp->name, opt_seed, total, seen);
    atomic_fetch_add (&st->violations, 1);
  }

  printf ("crash-sim: workload %s seed %" PRIu64 " (%s%s%s): %" PRIu64
          " crash images verified (%" PRIu64 " torn), %" PRIu64
          " violations, %.1f s\n",
          wp->name, opt_seed, opt_kill ? "kill" : "snapshot",
          opt_all ? ", every point" : ", sampled", opt_torn ? ", torn" : "",
          (uint64_t) st->verified, (uint64_t) st->verified_torn,
          (uint64_t) st->violations, now_s () - t0);
  printf ("crash-sim:   crashes during format %" PRIu64 " (%" PRIu64
          " refused cleanly as not a pcache file, %" PRIu64 " opened), write %"
          PRIu64 ", zero/trim %" PRIu64 ", flush %" PRIu64 ", read %" PRIu64
          ", writeback %" PRIu64 ", gc %" PRIu64 ", mode switch %" PRIu64
          ", close %" PRIu64 "\n",
          (uint64_t) st->inflight[OP_FORMAT], (uint64_t) st->format_refused,
          (uint64_t) st->format_opened, (uint64_t) st->inflight[OP_WRITE],
          (uint64_t) (st->inflight[OP_ZERO] + st->inflight[OP_TRIM]),
          (uint64_t) st->inflight[OP_FLUSH], (uint64_t) st->inflight[OP_READ],
          (uint64_t) st->inflight[OP_WB], (uint64_t) st->inflight[OP_GC],
          (uint64_t) st->inflight[OP_MODE], (uint64_t) st->inflight[OP_CLOSE]);
  if (wp->nns)
    printf ("crash-sim:   exports %u: crashes during namespace creation %"
            PRIu64 " of its %zu points (namespace there after replay %"
            PRIu64 ", not yet %" PRIu64 "); %" PRIu64 " backend images "
            "checked for a prefix of their own\n", nx,
            (uint64_t) st->inflight[OP_NSOPEN], n_ns_points,
            (uint64_t) st->ns_present, (uint64_t) st->ns_absent,
            (uint64_t) st->prefix_checks);
  printf ("crash-sim:   backend prefix: past epoch 0 in %" PRIu64
          " images, a partial epoch in %" PRIu64 ", highest P %" PRIu64
          "; blocks checked against a durable ack: %" PRIu64 "\n",
          (uint64_t) st->prefix_past0, (uint64_t) st->prefix_partial,
          (uint64_t) st->max_prefix, (uint64_t) st->acked_durable_blocks);
  if (group_max > 1)
    printf ("crash-sim:   write-back groups (%s): %" PRIu64 " images inside "
            "a group, fitting only the group rule\n",
            opt_group ? "N" : "auto", (uint64_t) st->prefix_group);
  free (sel);
  free (jobs);
  return st->violations ? 1 : 0;
}
