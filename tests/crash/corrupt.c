/* SPDX-License-Identifier: BSD-3-Clause */
/* corrupt: damaged media.  A cache with data written and committed is
 * damaged in one place at a time (flipped bytes, torn records, and
 * records crafted with a valid CRC but impossible contents), then
 * opened.  Each open runs in a forked child, so a crash is caught.
 *
 * Every outcome must be one of:
 *   refused   pc_cache_open/bind fails and logs a message;
 *   opened    every 4 KiB block reads as a version that was written to
 *             it (or its original content, or zeroes after a zero or
 *             trim): never garbage, another block's data or a mix.
 *             The cache must then work on (write, flush, writeback,
 *             GC, reopen, read back).
 * Named cases also check which of the two is right (and the message),
 * or that the data is exactly the last written.  A sweep then flips
 * every byte of the fixed records and many bytes of the log.
 *
 * Usage: corrupt [--verbose] [--quick] [--jobs J]
 * Prints one line per named case, a summary of the sweep, and
 * "N passed, N failed".
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
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pcache.h"
#include "cache_internal.h"
#include "gc.h"
#include "writeback.h"
#include "crc.h"
#include "format.h"
#include "meta.h"
#include "util.h"
#include "testutil.h"

#define NSEGS       10
#define BACKING     ((uint64_t) (4 << 20) + (512 << 10))
#define NBLOCKS     (BACKING / TU_BLK)
#define PHASE_VER   0x40000000u

static char dir[256];
static int verbose, quick, opt_jobs = 2;

/* ------------------------------------------------------------------ */
/* Base caches and their history. */

enum base_kind { B_PLAIN, B_CRC, B_LAST, B_NBASES };
static const char *const base_names[] = { "plain", "data-crc", "with-LAST" };

struct base {
  char path[PATH_MAX];          /* pristine cache file */
  uint64_t size;
  uint8_t *backend;             /* backend content when the cache closed */
  /* Per block: every value it held, oldest first (0 = original). */
  uint32_t *hist[NBLOCKS];
  unsigned nhist[NBLOCKS];
};
static struct base bases[B_NBASES];

static void
die (const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  fputs ("corrupt: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
  va_end (ap);
  exit (2);
}

static void
hist_add (struct base *B, uint64_t blk, uint32_t v)
{
  B->hist[blk] = realloc (B->hist[blk], (B->nhist[blk] + 1) * sizeof (uint32_t));
  if (!B->hist[blk])
    die ("out of memory");
  B->hist[blk][B->nhist[blk]++] = v;
}

static uint32_t
final_of (const struct base *B, uint64_t blk)
{
  return B->nhist[blk] ? B->hist[blk][B->nhist[blk] - 1] : 0;
}

/* 0 not allowed, 1 the last value, 2 an older one (rolled back). */
static int
allowed (const struct base *B, uint64_t blk, uint32_t v)
{
  unsigned i;

  if (v == final_of (B, blk))
    return 1;
  if (v == 0)
    return 2;
  for (i = 0; i < B->nhist[blk]; i++)
    if (B->hist[blk][i] == v)
      return 2;
  return 0;
}

struct bctx {
  struct base *B;
  pc_cache *c;
  struct tu_mem *bk;
  uint32_t ver;
  uint8_t buf[TU_BLK] __attribute__ ((aligned (64)));
};

static void
b_write (struct bctx *x, uint64_t blk)
{
  int err;

  tu_block_fill (x->buf, blk, ++x->ver);
  if (pc_write (x->c, x->buf, TU_BLK, blk * TU_BLK, 0, &err) == -1)
    die ("base: pc_write: %s", strerror (err));
  hist_add (x->B, blk, x->ver);
}

static void
b_zero (struct bctx *x, uint64_t blk, int trim)
{
  int err, r;

  if (trim)
    r = pc_trim (x->c, TU_BLK, blk * TU_BLK, 0, &err);
  else
    r = pc_zero (x->c, TU_BLK, blk * TU_BLK, 0, &err);
  if (r == -1)
    die ("base: pc_zero: %s", strerror (err));
  hist_add (x->B, blk, TU_V_ZERO);
}

static void
b_flush (struct bctx *x)
{
  int err;

  if (pc_flush (x->c, &err) == -1)
    die ("base: pc_flush: %s", strerror (err));
}

static void
b_wb_all (struct bctx *x)
{
  int r, n = 0;

  while ((r = pc_writeback_step (x->c)) == 1)
    n++;
  if (r != 0)
    die ("base: writeback failed");
}

/* The base workload:
 *   e1  blocks 0..299, flushed, written back, GC'd (a data segment is
 *       freed and its generation bumped, then reused by e2);
 *  [with-LAST: 260 full ksets of zero keys on blocks 1000..1007, so the
 *   live log crosses into a second segment through a LAST record]
 *   e2  three epochs of 130 writes over blocks 200..589, one of them
 *       written back (dirty_tail then points mid-log);
 *   e3  zeroes and trims;
 *   e4  50 writes left uncommitted until close.
 */
static void
make_base (enum base_kind kind)
{
  struct base *B = &bases[kind];
  struct bctx x = { .B = B };
  struct pc_config cfg;
  struct pc_backend bg;
  uint64_t b;
  int i, e;

  memset (B, 0, sizeof *B);
  snprintf (B->path, sizeof B->path, "%s/base-%s", dir, base_names[kind]);
  B->size = PC_ALIGN_UP (PC_SEGTAB_OFF + NSEGS * PC_SEGTAB_ENTRY, 4096) +
    (uint64_t) PC_DEFAULT_MAX_EXPORTS * PC_NS_ENTRY +
    (uint64_t) NSEGS * PC_MIN_SEG_SIZE;
  if (!(x.bk = tu_mem_new_volatile (BACKING, 0)))
    die ("out of memory");
  for (b = 0; b < NBLOCKS; b++)
    tu_block_fill (x.bk->buf + b * TU_BLK, b, 0);
  memcpy (x.bk->dur, x.bk->buf, BACKING);

  pc_config_init (&cfg);
  cfg.path = B->path;
  cfg.size = B->size;
  cfg.seg_size = PC_MIN_SEG_SIZE;
  cfg.data_crc = kind == B_CRC;
  if (pc_cache_open (&cfg, &x.c) == -1 || pc_cache_bind (x.c, BACKING) == -1)
    die ("base: cannot make %s: %s", B->path, tu_log_text ());
  bg = tu_mem_backend (x.bk);
  pc_cache_set_backend (x.c, &bg);

  for (b = 0; b < 300; b++)
    b_write (&x, b);
  b_flush (&x);
  b_wb_all (&x);
  pc_gc_run (x.c, 1);

  if (kind == B_LAST) {
    /* Live payload keys before the LAST record. */
    for (b = 600; b < 620; b++)
      b_write (&x, b);
    b_flush (&x);
    for (i = 0; i < 260 * (int) PC_KSET_MAX_KEYS; i++) {
      int err;
      if (pc_zero (x.c, TU_BLK, (1000 + i % 8) * (uint64_t) TU_BLK, 0,
                   &err) == -1)
        die ("base: pc_zero: %s", strerror (err));
    }
    for (i = 0; i < 8; i++)
      hist_add (B, 1000 + i, TU_V_ZERO);
    b_flush (&x);
  }

  for (e = 0; e < 3; e++) {
    for (i = 0; i < 130; i++)
      b_write (&x, 200 + e * 130 + i);
    b_flush (&x);
    if (e == 0 && kind != B_LAST)
      pc_writeback_step (x.c);
  }
  for (i = 0; i < 10; i++)
    b_zero (&x, 250 + i * 3, i & 1);
  b_flush (&x);
  for (i = 0; i < 50; i++)
    b_write (&x, 700 + i * 7);
  pc_cache_close (x.c);
  B->backend = x.bk->buf;
  x.bk->buf = NULL;
  tu_mem_free (x.bk);
}

/* ------------------------------------------------------------------ */
/* A damaged copy, mapped for editing. */

struct img {
  uint8_t *p;
  uint64_t size, newsize;
  struct pc_sb sb;
  struct pc_ctrl ctrl;
  int ctrl_slot;                /* newest */
  struct pc_geom geom;          /* of sb, over p */
  /* The live log, from key_tail. */
  struct kpos { uint32_t seg, off; uint64_t seq, fo; } ks[1024];
  unsigned nks;
  int dirty_idx;                /* index of the kset at dirty_tail */
};

static uint64_t
seg_fo (const struct img *m, uint32_t seg, uint32_t off)
{
  return (uint64_t) (pc_fmt_seg_addr (&m->geom, seg, off) - m->p);
}

static struct pc_kset_hdr *
hdr_at (struct img *m, unsigned i)
{
  return (struct pc_kset_hdr *) (m->p + m->ks[i].fo);
}

static void
reseal_kset (struct img *m, struct pc_kset_hdr *h)
{
  h->crc = pc_kset_crc (m->geom.seed, h);
}

static void
img_parse (struct img *m)
{
  const char *why;
  struct pc_pos pos;

  if (pc_sb_load (m->p, m->size, &m->sb, &why) == -1)
    die ("base superblock: %s", why);
  m->ctrl_slot = pc_ctrl_load (m->p, &m->ctrl);
  if (m->ctrl_slot < 0)
    die ("base control record unreadable");
  pc_fmt_geom (&m->geom, m->p, &m->sb);
  pos = m->ctrl.key_tail;
  m->nks = 0;
  m->dirty_idx = -1;
  for (;;) {
    const struct pc_kset_hdr *h;

    if (pos.seg == m->ctrl.dirty_tail.seg && pos.off == m->ctrl.dirty_tail.off &&
        pos.seq == m->ctrl.dirty_tail.seq)
      m->dirty_idx = m->nks;
    h = pc_fmt_kset_at (&m->geom, &pos, &why);
    if (!h || m->nks == 1024)
      break;
    m->ks[m->nks++] = (struct kpos) { pos.seg, pos.off, pos.seq,
                                      seg_fo (m, pos.seg, pos.off) };
    pc_fmt_kset_next (h, &pos);
  }
}

static int
img_map (const char *path, struct img *m)
{
  int fd = open (path, O_RDWR | O_CLOEXEC);
  struct stat sb;

  memset (m, 0, sizeof *m);
  if (fd == -1 || fstat (fd, &sb) == -1)
    return -1;
  m->size = sb.st_size;
  m->p = mmap (NULL, m->size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close (fd);
  if (m->p == MAP_FAILED)
    return -1;
  img_parse (m);
  return 0;
}

static void
img_unmap (struct img *m)
{
  msync (m->p, m->size, MS_SYNC);
  munmap (m->p, m->size);
}

/* First kset (from index from) that holds keys, not a LAST. */
static int
find_kset (struct img *m, int from, int with_keys)
{
  unsigned i;

  for (i = from; i < m->nks; i++) {
    struct pc_kset_hdr *h = hdr_at (m, i);
    if (!(h->flags & PC_KSET_LAST) == !!with_keys)
      return i;
  }
  return -1;
}

static struct pc_key_rec *
key_of (struct img *m, int ki, unsigned k)
{
  return (struct pc_key_rec *) (hdr_at (m, ki) + 1) + k;
}

/* First payload key of a kset. */
static int
payload_key (struct img *m, int ki)
{
  struct pc_kset_hdr *h = hdr_at (m, ki);
  unsigned k;

  for (k = 0; k < h->nkeys; k++)
    if (!(key_of (m, ki, k)->flags & PC_KF_ZERO))
      return k;
  return -1;
}

/* ------------------------------------------------------------------ */
/* Opening a damaged copy and judging the outcome. */

enum outcome { O_REFUSED, O_EXACT, O_ROLLBACK, O_WRONG, O_CRASH, O_BROKEN,
               O_EIO };
static const char *const outcome_names[] = {
  "refused", "opened (exact)", "opened (some blocks rolled back)",
  "WRONG DATA", "CRASHED", "BROKEN (cannot go on after open)",
  "opened (a read of damaged data fails)",
};

struct result {
  enum outcome o;
  char msg[600];
  unsigned rolled;              /* blocks with an older version */
  unsigned stores;              /* persist points seen (the file changed) */
};

static unsigned nstores;
static void
count_store (void *opaque, const void *addr, size_t len)
{
  (void) opaque;
  (void) addr;
  (void) len;
  nstores++;
}

/* In the child: open, read everything, go on (unless light). */
static void
try_open (const struct base *B, const char *path, int lenient, int light,
          struct result *res)
{
  struct pc_config cfg;
  pc_cache *c;
  struct tu_mem *bk;
  struct pc_backend fg;
  uint8_t *buf = malloc (64 * TU_BLK);
  uint64_t b;
  int err, i;
  unsigned bad = 0;

  memset (res, 0, sizeof *res);
  if (!buf || !(bk = tu_mem_new_volatile (BACKING, 0)))
    die ("out of memory");
  memcpy (bk->buf, B->backend, BACKING);
  memcpy (bk->dur, B->backend, BACKING);
  fg = tu_mem_backend (bk);

  pc_config_init (&cfg);
  cfg.path = path;
  cfg.cache_on_read = 0;
  cfg.lenient_replay = lenient;
  tu_log_clear ();
  if (pc_cache_open (&cfg, &c) == -1 || (pc_cache_bind (c, BACKING) == -1 &&
                                         (pc_cache_close (c), 1))) {
    res->o = O_REFUSED;
    snprintf (res->msg, sizeof res->msg, "%s", tu_log_text ());
    if (!res->msg[0])
      snprintf (res->msg, sizeof res->msg, "(refused without a message!)");
    goto out;
  }
  pc_cache_set_backend (c, &fg);
  res->o = O_EXACT;
  for (b = 0; b < NBLOCKS; b += 64) {
    unsigned n = NBLOCKS - b < 64 ? NBLOCKS - b : 64, j;

    if (pc_read (c, buf, n * TU_BLK, b * TU_BLK, &fg, &err) == -1) {
      /* Dirty data that fails its data checksum is never returned. */
      int crc = err == EIO && strstr (tu_log_text (), "fails its checksum");

      res->o = crc ? O_EIO : O_BROKEN;
      snprintf (res->msg, sizeof res->msg, "pc_read of block %" PRIu64
                " failed: %s%s%s", b, strerror (err), crc ? ": " : "",
                crc ? tu_log_text () : "");
      pc_cache_close (c);
      goto out;
    }
    for (j = 0; j < n; j++) {
      uint32_t v = tu_block_decode (buf + (uint64_t) j * TU_BLK, b + j);
      int a = allowed (B, b + j, v);

      if (a == 2)
        res->rolled++;
      if (a == 0 && bad++ == 0) {
        char b1[32], b2[32];
        res->o = O_WRONG;
        snprintf (res->msg, sizeof res->msg, "block %" PRIu64 " reads %s "
                  "(last written: %s)", b + j,
                  tu_block_name (v, b1, sizeof b1),
                  tu_block_name (final_of (B, b + j), b2, sizeof b2));
      }
    }
  }
  if (res->o == O_WRONG) {
    pc_cache_close (c);
    goto out;
  }
  if (res->rolled)
    res->o = O_ROLLBACK;
  if (light) {
    pc_cache_close (c);
    goto out;
  }

  /* Go on: write, flush, write back, GC, reopen, read back. */
  for (i = 0; i < 8; i++) {
    tu_block_fill (buf + (uint64_t) i * TU_BLK, 900 + i, PHASE_VER + i);
    if (pc_write (c, buf + (uint64_t) i * TU_BLK, TU_BLK,
                  (900 + i) * (uint64_t) TU_BLK, 0, &err) == -1)
      break;
  }
  if (i < 8 || pc_flush (c, &err) == -1) {
    res->o = O_BROKEN;
    snprintf (res->msg, sizeof res->msg, "write/flush after open failed: %s",
              strerror (err));
    pc_cache_close (c);
    goto out;
  }
  while ((i = pc_writeback_step (c)) == 1)
    ;
  pc_gc_run (c, 1);
  pc_cache_close (c);
  cfg.lenient_replay = 0;
  tu_log_clear ();
  if (pc_cache_open (&cfg, &c) == -1 || (pc_cache_bind (c, BACKING) == -1 &&
                                         (pc_cache_close (c), 1))) {
    res->o = O_BROKEN;
    snprintf (res->msg, sizeof res->msg, "reopen failed: %s", tu_log_text ());
    goto out;
  }
  pc_cache_set_backend (c, &fg);
  if (pc_read (c, buf, 8 * TU_BLK, 900 * (uint64_t) TU_BLK, &fg, &err) == -1)
    i = -1;
  else
    for (i = 0; i < 8; i++)
      if (tu_block_decode (buf + (uint64_t) i * TU_BLK, 900 + i) !=
          PHASE_VER + (uint32_t) i)
        break;
  if (i != 8) {
    res->o = O_BROKEN;
    snprintf (res->msg, sizeof res->msg, "data written after the open did "
              "not survive a reopen (block %d)", 900 + i);
  }
  pc_cache_close (c);
 out:
  res->stores = nstores;
  tu_mem_free (bk);
  free (buf);
}

/* Run try_open in a child; the result comes back through a pipe. */
static void
judge (const struct base *B, const char *path, int lenient, int light,
       struct result *res)
{
  int p[2], status;
  pid_t pid;
  ssize_t n;

  if (pipe (p) == -1)
    die ("pipe: %m");
  fflush (stdout);
  pid = fork ();
  if (pid == -1)
    die ("fork: %m");
  if (pid == 0) {
    struct result r;
    close (p[0]);
    nstores = 0;
    pc_pmem_set_hooks (count_store, NULL, NULL);
    try_open (B, path, lenient, light, &r);
    if (write (p[1], &r, sizeof r) != sizeof r)
      _exit (3);
    _exit (0);
  }
  close (p[1]);
  memset (res, 0, sizeof *res);
  n = read (p[0], res, sizeof *res);
  close (p[0]);
  waitpid (pid, &status, 0);
  if (n != sizeof *res || !WIFEXITED (status) || WEXITSTATUS (status) != 0) {
    res->o = O_CRASH;
    snprintf (res->msg, sizeof res->msg, "child %s %d",
              WIFSIGNALED (status) ? "died of signal" : "exited with",
              WIFSIGNALED (status) ? WTERMSIG (status) : WEXITSTATUS (status));
  }
}

/* ------------------------------------------------------------------ */
/* Named cases. */

enum expect {
  X_EXACT,                      /* opens, data exactly the last written */
  X_ALLOWED,                    /* opens, data allowed (maybe rolled back) */
  X_REFUSE,                     /* refused, message contains want */
  X_EITHER,                     /* refused with want, or opens allowed */
  X_REPORT,                     /* anything safe; just report */
  X_EIO,                        /* opens, a read fails, logged with want */
};

struct tcase {
  const char *name;
  enum base_kind base;
  /* Damage m; may set *lenient.  Returns 0, or -1 if not applicable. */
  int (*damage) (struct img *m, int *lenient);
  enum expect expect;
  const char *want;
};

static int npass, nfail;

static void
flip (struct img *m, uint64_t off, uint8_t x)
{
  m->p[off] ^= x;
}

/* Superblock. */
static int d_sb_a (struct img *m, int *l) { (void) l; flip (m, PC_SB_OFF + 40, 0x01); return 0; }
static int d_sb_b (struct img *m, int *l) { (void) l; flip (m, PC_SB_SLOT + 40, 0x80); return 0; }
static int d_sb_both (struct img *m, int *l)
{ (void) l; flip (m, PC_SB_OFF + 60, 1); flip (m, PC_SB_SLOT + 100, 1); return 0; }
static int d_sb_torn (struct img *m, int *l)
{ (void) l; memset (m->p + PC_SB_OFF + 64, 0, 64); return 0; }
static int d_sb_magic (struct img *m, int *l)
{ (void) l; memset (m->p, 0, 2 * PC_SB_SLOT); return 0; }

static void
sb_rewrite (struct img *m, void (*fn) (struct pc_sb *))
{
  struct pc_sb sb;
  int i;

  for (i = 0; i < 2; i++) {
    memcpy (&sb, m->p + i * PC_SB_SLOT, sizeof sb);
    fn (&sb);
    pc_sb_seal (&sb);
    memcpy (m->p + i * PC_SB_SLOT, &sb, sizeof sb);
  }
}
static void f_version (struct pc_sb *sb) { sb->version = 3; }
static void f_feature (struct pc_sb *sb) { sb->features |= 1u << 7; }
static void f_shift (struct pc_sb *sb) { sb->seg_shift = 19; }
static void f_nsegs (struct pc_sb *sb) { sb->nsegs += 1; }
static void f_area (struct pc_sb *sb) { sb->seg_area_off += 4096; }
static void f_v1 (struct pc_sb *sb) { sb->version = 1; }
static void f_nstab (struct pc_sb *sb) { sb->nstab_off += 4096; }
static int d_sb_version (struct img *m, int *l) { (void) l; sb_rewrite (m, f_version); return 0; }
static int d_sb_feature (struct img *m, int *l) { (void) l; sb_rewrite (m, f_feature); return 0; }
static int d_sb_shift (struct img *m, int *l) { (void) l; sb_rewrite (m, f_shift); return 0; }
static int d_sb_nsegs (struct img *m, int *l) { (void) l; sb_rewrite (m, f_nsegs); return 0; }
static int d_sb_area (struct img *m, int *l) { (void) l; sb_rewrite (m, f_area); return 0; }
static int d_sb_v1 (struct img *m, int *l) { (void) l; sb_rewrite (m, f_v1); return 0; }
static int d_sb_nstab (struct img *m, int *l) { (void) l; sb_rewrite (m, f_nstab); return 0; }
/* The default export's table entry: a bad CRC frees the slot, and the
 * keys that name it no longer have a namespace.
 */
static int d_ns_entry (struct img *m, int *l)
{
  struct pc_sb sb;

  (void) l;
  memcpy (&sb, m->p, sizeof sb);
  flip (m, sb.nstab_off + 20, 0x01);
  return 0;
}
/* The entry resealed with another size: the export is refused. */
static int d_ns_size (struct img *m, int *l)
{
  struct pc_sb sb;
  struct pc_ns_rec *rec;

  (void) l;
  memcpy (&sb, m->p, sizeof sb);
  rec = (struct pc_ns_rec *) (m->p + sb.nstab_off);
  rec->size += 4096;
  pc_fmt_ns_seal (rec);
  return 0;
}

/* Control record. */
static uint64_t
ctrl_off (int slot)
{
  return PC_CTRL_OFF + (uint64_t) slot * PC_CTRL_SLOT;
}
static int d_ctrl_new (struct img *m, int *l)
{ (void) l; flip (m, ctrl_off (m->ctrl_slot) + 20, 0x04); return 0; }
static int d_ctrl_old (struct img *m, int *l)
{ (void) l; flip (m, ctrl_off (m->ctrl_slot ^ 1) + 20, 0x04); return 0; }
static int d_ctrl_both (struct img *m, int *l)
{ (void) l; flip (m, ctrl_off (0) + 9, 1); flip (m, ctrl_off (1) + 30, 1); return 0; }
static int d_ctrl_torn (struct img *m, int *l)
{ (void) l; memset (m->p + ctrl_off (m->ctrl_slot) + 32, 0xff, 24); return 0; }

static void
ctrl_rewrite (struct img *m, struct pc_ctrl *c)
{
  c->crc = pc_rec_crc (c, sizeof *c);
  memcpy (m->p + ctrl_off (m->ctrl_slot), c, sizeof *c);
}
static int d_ctrl_kt_seg (struct img *m, int *l)
{ struct pc_ctrl c = m->ctrl; (void) l; c.key_tail.seg = NSEGS + 3; ctrl_rewrite (m, &c); return 0; }
static int d_ctrl_dt_before_kt (struct img *m, int *l)
{ struct pc_ctrl c = m->ctrl; (void) l; c.dirty_tail.seq = c.key_tail.seq - 1; ctrl_rewrite (m, &c); return 0; }
static int d_ctrl_dt_past_head (struct img *m, int *l)
{ struct pc_ctrl c = m->ctrl; (void) l; c.dirty_tail.seq += 100000; ctrl_rewrite (m, &c); return 0; }
static int d_ctrl_kt_misaligned (struct img *m, int *l)
{ struct pc_ctrl c = m->ctrl; (void) l; c.key_tail.off += 3; ctrl_rewrite (m, &c); return 0; }
static int d_ctrl_kt_off_huge (struct img *m, int *l)
{ struct pc_ctrl c = m->ctrl; (void) l; c.key_tail.off = UINT32_MAX - 63; c.dirty_tail = c.key_tail; ctrl_rewrite (m, &c); return 0; }
/* Newest slot replaced by the older one's content with a higher seq: a
 * valid record whose cursors are stale.
 */
static int d_ctrl_stale_valid (struct img *m, int *l)
{
  struct pc_ctrl c;
  (void) l;
  memcpy (&c, m->p + ctrl_off (m->ctrl_slot ^ 1), sizeof c);
  c.seq = m->ctrl.seq + 1;
  ctrl_rewrite (m, &c);
  return 0;
}

/* Generation slots: the segment with the highest generation. */
static uint32_t
busiest_seg (struct img *m, uint64_t *gen)
{
  uint32_t i, best = 0;
  uint64_t bg = 0;

  for (i = 0; i < m->sb.nsegs; i++) {
    uint64_t g;
    uint32_t seq;
    if (pc_gen_load (m->p + PC_SEGTAB_OFF + (uint64_t) i * PC_SEGTAB_ENTRY,
                     &g, &seq) >= 0 && g >= bg) {
      bg = g;
      best = i;
    }
  }
  *gen = bg;
  return best;
}

static int
newest_gen_slot (struct img *m, uint32_t seg)
{
  uint64_t g;
  uint32_t seq;
  return pc_gen_load (m->p + PC_SEGTAB_OFF + (uint64_t) seg * PC_SEGTAB_ENTRY,
                      &g, &seq);
}
static int d_gen_new (struct img *m, int *l)
{
  uint64_t g;
  uint32_t s = busiest_seg (m, &g);
  (void) l;
  if (g == 0)
    return -1;
  flip (m, PC_SEGTAB_OFF + s * PC_SEGTAB_ENTRY + newest_gen_slot (m, s) * 16 + 8, 1);
  return 0;
}
static int d_gen_old (struct img *m, int *l)
{
  uint64_t g;
  uint32_t s = busiest_seg (m, &g);
  (void) l;
  flip (m, PC_SEGTAB_OFF + s * PC_SEGTAB_ENTRY + (newest_gen_slot (m, s) ^ 1) * 16 + 8, 1);
  return 0;
}
/* A segment holding the payload of a live dirty key of a flushed epoch
 * (from dirty_tail on), preferring one still at generation 0 (where a
 * single-slot record once had no second copy at all).
 */
static int
dirty_seg (struct img *m, uint32_t *seg)
{
  unsigned i, k;
  int found = 0;

  for (i = m->dirty_idx > 0 ? m->dirty_idx : 0; i < m->nks; i++) {
    struct pc_kset_hdr *h = hdr_at (m, i);

    for (k = 0; !(h->flags & PC_KSET_LAST) && k < h->nkeys; k++) {
      struct pc_key_rec *r = key_of (m, i, k);
      uint64_t g;
      uint32_t seq;

      if (!(r->flags & PC_KF_DIRTY) || (r->flags & PC_KF_ZERO) ||
          pc_gen_load (m->p + PC_SEGTAB_OFF + (uint64_t) r->seg *
                       PC_SEGTAB_ENTRY, &g, &seq) < 0 ||
          (uint32_t) g != r->gen)
        continue;
      if (!found || g == 0)
        *seg = r->seg;
      found = 1;
      if (g == 0)
        return 0;
    }
  }
  return found ? 0 : -1;
}
static int
flip_dirty_gen (struct img *m, int slot0, int slot1)
{
  uint32_t s;

  if (dirty_seg (m, &s) == -1)
    return -1;
  if (slot0)
    flip (m, PC_SEGTAB_OFF + s * PC_SEGTAB_ENTRY + 8, 0x04);
  if (slot1)
    flip (m, PC_SEGTAB_OFF + s * PC_SEGTAB_ENTRY + 16 + 8, 0x04);
  return 0;
}
static int d_gen_dirty_0 (struct img *m, int *l) { (void) l; return flip_dirty_gen (m, 1, 0); }
static int d_gen_dirty_1 (struct img *m, int *l) { (void) l; return flip_dirty_gen (m, 0, 1); }
static int d_gen_dirty_both (struct img *m, int *l) { (void) l; return flip_dirty_gen (m, 1, 1); }
static int d_gen_both (struct img *m, int *l)
{
  (void) l;
  flip (m, PC_SEGTAB_OFF + 3 * PC_SEGTAB_ENTRY + 4, 1);
  flip (m, PC_SEGTAB_OFF + 3 * PC_SEGTAB_ENTRY + 16 + 4, 1);
  return 0;
}

/* Ksets. */
static int d_kset_mid_hdr (struct img *m, int *l)
{
  int k = find_kset (m, m->dirty_idx > 0 ? m->dirty_idx : 1, 1);
  (void) l;
  if (k < 0 || k + 1 >= (int) m->nks)
    return -1;
  flip (m, m->ks[k].fo + 24, 0x01);      /* nkeys */
  return 0;
}
static int d_kset_mid_key (struct img *m, int *l)
{
  int k = find_kset (m, m->dirty_idx > 0 ? m->dirty_idx : 1, 1);
  (void) l;
  if (k < 0 || k + 1 >= (int) m->nks)
    return -1;
  flip (m, m->ks[k].fo + 32 + 5 * 32 + 9, 0x10);   /* key 5, len */
  return 0;
}
static int d_kset_mid_lenient (struct img *m, int *l)
{
  *l = 1;
  return d_kset_mid_key (m, l);
}
static int d_kset_last (struct img *m, int *l)
{
  (void) l;
  if (m->nks < 2)
    return -1;
  flip (m, m->ks[m->nks - 1].fo + 40, 0x01);
  return 0;
}
static int d_kset_before_dirty (struct img *m, int *l)
{
  (void) l;
  if (m->dirty_idx < 1)
    return -1;
  flip (m, m->ks[0].fo + 32 + 3, 0x01);
  return 0;
}
static int d_kset_torn_tail (struct img *m, int *l)
{
  struct pc_kset_hdr *h;
  (void) l;
  if (m->nks < 2)
    return -1;
  h = hdr_at (m, m->nks - 1);
  if (h->nkeys < 3)
    return -1;
  memset ((uint8_t *) h + 64, 0, 64);     /* one cache line never landed */
  return 0;
}
static int d_kset_nkeys_crafted (struct img *m, int *l)
{
  int k = find_kset (m, 0, 1);
  struct pc_kset_hdr *h;
  (void) l;
  if (k < 0)
    return -1;
  h = hdr_at (m, k);
  h->nkeys = 200;
  reseal_kset (m, h);
  return 0;
}
static int d_kset_seq_crafted (struct img *m, int *l)
{
  int k = find_kset (m, 1, 1);
  struct pc_kset_hdr *h;
  (void) l;
  if (k < 0)
    return -1;
  h = hdr_at (m, k);
  h->seq += 5;
  reseal_kset (m, h);
  return 0;
}

/* Keys crafted with a valid CRC. */
static int
craft_key (struct img *m, void (*fn) (struct pc_key_rec *, struct img *),
           int want_payload)
{
  int k = find_kset (m, 0, 1), i;

  while (k >= 0) {
    i = want_payload ? payload_key (m, k) : 0;
    if (i >= 0)
      break;
    k = find_kset (m, k + 1, 1);
  }
  if (k < 0)
    return -1;
  fn (key_of (m, k, i), m);
  reseal_kset (m, hdr_at (m, k));
  return 0;
}
static void k_off (struct pc_key_rec *r, struct img *m) { (void) m; r->off = BACKING; }
static void k_off_huge (struct pc_key_rec *r, struct img *m) { (void) m; r->off = UINT64_MAX - 4095; }
static void k_len0 (struct pc_key_rec *r, struct img *m) { (void) m; r->len = 0; }
static void k_len_big (struct pc_key_rec *r, struct img *m) { (void) m; r->len = 8 << 20; }
static void k_cross (struct pc_key_rec *r, struct img *m) { (void) m; r->off = (4 << 20) - 4096; r->len = 8192; }
static void k_flags (struct pc_key_rec *r, struct img *m) { (void) m; r->flags |= 1u << 12; }
static void k_seg (struct pc_key_rec *r, struct img *m) { r->seg = m->sb.nsegs; }
static void k_segoff (struct pc_key_rec *r, struct img *m) { (void) m; r->seg_off = PC_MIN_SEG_SIZE - 2048; }
static void k_segoff_huge (struct pc_key_rec *r, struct img *m) { (void) m; r->seg_off = UINT32_MAX - 100; }
static void
k_into_log (struct pc_key_rec *r, struct img *m)
{
  uint64_t g;
  uint32_t seq;
  r->seg = m->ctrl.key_tail.seg;
  r->seg_off = 0;
  pc_gen_load (m->p + PC_SEGTAB_OFF + (uint64_t) r->seg * PC_SEGTAB_ENTRY,
               &g, &seq);
  r->gen = (uint32_t) g;
}
static void k_gen_future (struct pc_key_rec *r, struct img *m) { (void) m; r->gen += 7; }
static int d_key_off (struct img *m, int *l) { (void) l; return craft_key (m, k_off, 0); }
static int d_key_off_huge (struct img *m, int *l) { (void) l; return craft_key (m, k_off_huge, 0); }
static int d_key_len0 (struct img *m, int *l) { (void) l; return craft_key (m, k_len0, 0); }
static int d_key_len_big (struct img *m, int *l) { (void) l; return craft_key (m, k_len_big, 0); }
static int d_key_cross (struct img *m, int *l) { (void) l; return craft_key (m, k_cross, 0); }
static int d_key_flags (struct img *m, int *l) { (void) l; return craft_key (m, k_flags, 0); }
static int d_key_seg (struct img *m, int *l) { (void) l; return craft_key (m, k_seg, 1); }
static int d_key_segoff (struct img *m, int *l) { (void) l; return craft_key (m, k_segoff, 1); }
static int d_key_segoff_huge (struct img *m, int *l) { (void) l; return craft_key (m, k_segoff_huge, 1); }
static int d_key_into_log (struct img *m, int *l) { (void) l; return craft_key (m, k_into_log, 1); }
static int d_key_gen_future (struct img *m, int *l) { (void) l; return craft_key (m, k_gen_future, 1); }

/* Payload (data CRC caches). */
static int d_payload (struct img *m, int *l)
{
  int k = find_kset (m, m->dirty_idx > 0 ? m->dirty_idx : 0, 1), i;
  struct pc_key_rec *r;
  (void) l;
  if (k < 0 || (i = payload_key (m, k)) < 0)
    return -1;
  r = key_of (m, k, i);
  flip (m, seg_fo (m, r->seg, r->seg_off) + 1000, 0x20);
  return 0;
}

/* LAST records (with-LAST base). */
static int
find_last (struct img *m)
{
  return find_kset (m, 0, 0);
}
static int d_last_crc (struct img *m, int *l)
{
  int k = find_last (m);
  (void) l;
  if (k < 0)
    return -1;
  flip (m, m->ks[k].fo + 28, 0x01);      /* next_seg, CRC now wrong */
  return 0;
}
static int d_last_oob (struct img *m, int *l)
{
  int k = find_last (m);
  struct pc_kset_hdr *h;
  (void) l;
  if (k < 0)
    return -1;
  h = hdr_at (m, k);
  h->next_seg = m->sb.nsegs + 1;
  reseal_kset (m, h);
  return 0;
}
static int d_last_self (struct img *m, int *l)
{
  int k = find_last (m);
  struct pc_kset_hdr *h;
  (void) l;
  if (k < 0)
    return -1;
  h = hdr_at (m, k);
  h->next_seg = m->ks[k].seg;
  reseal_kset (m, h);
  return 0;
}
static int d_last_data (struct img *m, int *l)
{
  int k = find_last (m), j, i;
  struct pc_kset_hdr *h;
  (void) l;
  if (k < 0)
    return -1;
  /* A segment holding live data named before the LAST. */
  for (j = 0; j < k; j++)
    if ((i = payload_key (m, j)) >= 0)
      break;
  if (j == k)
    return -1;
  h = hdr_at (m, k);
  h->next_seg = key_of (m, j, i)->seg;
  reseal_kset (m, h);
  return 0;
}
static int d_last_free (struct img *m, int *l)
{
  int k = find_last (m);
  struct pc_kset_hdr *h;
  uint32_t s, used[64] = { 0 };
  unsigned i, j;
  (void) l;
  if (k < 0)
    return -1;
  /* A segment nothing uses: the log then ends there (no kset). */
  for (i = 0; i < m->nks; i++) {
    struct pc_kset_hdr *x = hdr_at (m, i);
    used[m->ks[i].seg] = 1;
    for (j = 0; j < x->nkeys; j++)
      if (!(key_of (m, i, j)->flags & PC_KF_ZERO))
        used[key_of (m, i, j)->seg] = 1;
  }
  for (s = 0; s < m->sb.nsegs && used[s]; s++)
    ;
  if (s == m->sb.nsegs)
    return -1;
  h = hdr_at (m, k);
  h->next_seg = s;
  reseal_kset (m, h);
  return 0;
}
static int d_last_torn_next (struct img *m, int *l)
{
  int k = find_last (m);
  (void) l;
  if (k < 0 || k + 1 >= (int) m->nks)
    return -1;
  /* The first kset of the next segment is damaged: the log ends
   * there, though ksets follow it in that segment.
   */
  flip (m, m->ks[k + 1].fo + 40, 0x01);
  return 0;
}

/* The file itself. */
static int d_file_short (struct img *m, int *l)
{
  (void) l;
  m->newsize = m->size - PC_MIN_SEG_SIZE;  /* applied by the caller */
  return 0;
}

static const struct tcase cases[] = {
  { "superblock copy A flipped", B_PLAIN, d_sb_a, X_EXACT, NULL },
  { "superblock copy B flipped", B_PLAIN, d_sb_b, X_EXACT, NULL },
  { "superblock both copies flipped", B_PLAIN, d_sb_both, X_REFUSE, "corrupt" },
  { "superblock copy A torn (a line lost)", B_PLAIN, d_sb_torn, X_EXACT, NULL },
  { "superblock both copies zeroed", B_PLAIN, d_sb_magic, X_REFUSE, "not a pcache" },
  { "superblock version 2 (valid CRC)", B_PLAIN, d_sb_version, X_REFUSE, "version" },
  { "superblock unknown feature (valid CRC)", B_PLAIN, d_sb_feature, X_REFUSE, "feature" },
  { "superblock segment shift 19 (valid CRC)", B_PLAIN, d_sb_shift, X_REFUSE, "geometry" },
  { "superblock nsegs+1 (valid CRC)", B_PLAIN, d_sb_nsegs, X_REFUSE, "geometry" },
  { "superblock segment area moved (valid CRC)", B_PLAIN, d_sb_area, X_REFUSE, "geometry" },
  { "superblock version 1 (valid CRC)", B_PLAIN, d_sb_v1, X_REFUSE, "version 1" },
  { "superblock namespace table moved (valid CRC)", B_PLAIN, d_sb_nstab, X_REFUSE, "geometry" },
  { "namespace entry flipped", B_PLAIN, d_ns_entry, X_REFUSE, "namespace" },
  { "namespace entry resized (valid CRC)", B_PLAIN, d_ns_size, X_REFUSE, "resized" },
  { "file shorter than formatted", B_PLAIN, d_file_short, X_REFUSE, "bytes" },
  { "control newest slot flipped", B_PLAIN, d_ctrl_new, X_REPORT, NULL },
  { "control older slot flipped", B_PLAIN, d_ctrl_old, X_EXACT, NULL },
  { "control newest slot torn", B_PLAIN, d_ctrl_torn, X_REPORT, NULL },
  { "control both slots flipped", B_PLAIN, d_ctrl_both, X_REFUSE, "control record" },
  { "control key_tail segment out of range (valid CRC)", B_PLAIN, d_ctrl_kt_seg, X_REFUSE, "out of range" },
  { "control dirty_tail before key_tail (valid CRC)", B_PLAIN, d_ctrl_dt_before_kt, X_REFUSE, "out of range" },
  { "control dirty_tail past the log head (valid CRC)", B_PLAIN, d_ctrl_dt_past_head, X_REFUSE, "dirty cursor" },
  { "control key_tail misaligned (valid CRC)", B_PLAIN, d_ctrl_kt_misaligned, X_REFUSE, NULL },
  { "control key_tail offset 4G-64 (valid CRC)", B_PLAIN, d_ctrl_kt_off_huge, X_EITHER, NULL },
  { "control newest = stale cursors (valid CRC)", B_PLAIN, d_ctrl_stale_valid, X_REPORT, NULL },
  { "generation newest slot flipped", B_PLAIN, d_gen_new, X_EXACT, NULL },
  { "generation older slot flipped", B_PLAIN, d_gen_old, X_EXACT, NULL },
  { "generation both slots flipped", B_PLAIN, d_gen_both, X_REFUSE, "generation record" },
  { "generation slot 0 of a dirty segment flipped", B_PLAIN, d_gen_dirty_0, X_EXACT, NULL },
  { "generation slot 1 of a dirty segment flipped", B_PLAIN, d_gen_dirty_1, X_EXACT, NULL },
  { "generation slot 0 of a dirty segment flipped (data CRC)", B_CRC, d_gen_dirty_0, X_EXACT, NULL },
  { "generation both slots of a dirty segment flipped", B_PLAIN, d_gen_dirty_both, X_REFUSE, "generation record" },
  { "kset mid-log header flipped (strict)", B_PLAIN, d_kset_mid_hdr, X_REFUSE, "damaged" },
  { "kset mid-log key flipped (strict)", B_PLAIN, d_kset_mid_key, X_REFUSE, "damaged" },
  { "kset mid-log key flipped (lenient)", B_PLAIN, d_kset_mid_lenient, X_ALLOWED, NULL },
  { "kset before dirty_tail flipped", B_PLAIN, d_kset_before_dirty, X_REFUSE, NULL },
  { "last kset flipped (= torn commit)", B_PLAIN, d_kset_last, X_ALLOWED, NULL },
  { "last kset torn (a line lost)", B_PLAIN, d_kset_torn_tail, X_ALLOWED, NULL },
  { "kset nkeys=200 (valid CRC)", B_PLAIN, d_kset_nkeys_crafted, X_REFUSE, NULL },
  { "kset seq+5 (valid CRC)", B_PLAIN, d_kset_seq_crafted, X_REFUSE, NULL },
  { "key offset = backing size (valid CRC)", B_PLAIN, d_key_off, X_REFUSE, "out of bounds" },
  { "key offset near 2^64 (valid CRC)", B_PLAIN, d_key_off_huge, X_REFUSE, "namespace the table does not hold" },
  { "key length 0 (valid CRC)", B_PLAIN, d_key_len0, X_REFUSE, "out of bounds" },
  { "key length 8M (valid CRC)", B_PLAIN, d_key_len_big, X_REFUSE, "out of bounds" },
  { "key across a stripe (valid CRC)", B_PLAIN, d_key_cross, X_REFUSE, "out of bounds" },
  { "key unknown flag (valid CRC)", B_PLAIN, d_key_flags, X_REFUSE, "out of bounds" },
  { "key segment out of range (valid CRC)", B_PLAIN, d_key_seg, X_REFUSE, "out of bounds" },
  { "key payload past segment end (valid CRC)", B_PLAIN, d_key_segoff, X_REFUSE, "out of bounds" },
  { "key payload offset 4G (valid CRC)", B_PLAIN, d_key_segoff_huge, X_REFUSE, "out of bounds" },
  { "key payload in the log (valid CRC)", B_PLAIN, d_key_into_log, X_REFUSE, "log" },
  { "key generation from the future (valid CRC)", B_PLAIN, d_key_gen_future, X_REPORT, NULL },
  { "payload flipped (data CRC)", B_CRC, d_payload, X_EIO, "checksum" },
  { "LAST record flipped (strict)", B_LAST, d_last_crc, X_REFUSE, NULL },
  { "LAST to segment out of range (valid CRC)", B_LAST, d_last_oob, X_REFUSE, NULL },
  { "LAST to its own segment (valid CRC)", B_LAST, d_last_self, X_REFUSE, "linked twice" },
  { "LAST to a data segment (valid CRC)", B_LAST, d_last_data, X_REFUSE, "data" },
  { "LAST to an unused segment (valid CRC)", B_LAST, d_last_free, X_REFUSE, NULL },
  { "first kset after LAST flipped", B_LAST, d_last_torn_next, X_EITHER, NULL },
};

static int
check_expect (const struct tcase *t, const struct result *r)
{
  if (r->o == O_WRONG || r->o == O_CRASH || r->o == O_BROKEN)
    return 0;
  if (r->o == O_REFUSED && strstr (r->msg, "without a message"))
    return 0;
  switch (t->expect) {
  case X_EXACT:
    return r->o == O_EXACT;
  case X_ALLOWED:
    return r->o == O_EXACT || r->o == O_ROLLBACK;
  case X_REFUSE:
    return r->o == O_REFUSED && (!t->want || strstr (r->msg, t->want));
  case X_EITHER:
    return r->o != O_REFUSED || !t->want || strstr (r->msg, t->want);
  case X_REPORT:
    return 1;
  case X_EIO:
    return r->o == O_EIO && (!t->want || strstr (r->msg, t->want));
  }
  return 0;
}

static void
first_line (const char *in, char *out, size_t len)
{
  const char *p = strstr (in, ": ");
  size_t n;

  /* Drop the path prefix, keep the first line. */
  if (p && p - in < 200 && in[0] == '/')
    in = p + 2;
  n = strcspn (in, "\n");
  if (n >= len)
    n = len - 1;
  memcpy (out, in, n);
  out[n] = 0;
}

static void
run_case (const struct tcase *t, unsigned idx)
{
  struct base *B = &bases[t->base];
  char path[PATH_MAX];
  struct img m;
  struct result r;
  int lenient = 0, rc;
  char line[300];

  snprintf (path, sizeof path, "%s/case-%u", dir, idx);
  if (tu_file_copy (B->path, path) == -1 || img_map (path, &m) == -1)
    die ("%s: %m", path);
  rc = t->damage (&m, &lenient);
  img_unmap (&m);
  if (rc == -1) {
    printf ("FAIL  %-52s  (the base cache has nothing to damage here)\n",
            t->name);
    nfail++;
    unlink (path);
    return;
  }
  if (m.newsize && truncate (path, m.newsize) == -1)
    die ("truncate: %m");
  judge (B, path, lenient, 0, &r);
  first_line (r.msg, line, sizeof line);
  if (check_expect (t, &r)) {
    npass++;
    printf ("ok    %-52s  %s", t->name, outcome_names[r.o]);
  }
  else {
    nfail++;
    printf ("FAIL  %-52s  %s", t->name, outcome_names[r.o]);
  }
  if (r.o == O_ROLLBACK)
    printf (": %u blocks older", r.rolled);
  if (line[0])
    printf (": %s", line);
  putchar ('\n');
  unlink (path);
}

/* ------------------------------------------------------------------ */
/* Sweep: flip one byte at a time.  Each worker keeps its own copy of
 * the base; a judge that stored nothing left it as it was, so only the
 * flipped byte is put back, else the copy is made again.  Every 16th
 * flip that opens is judged again in full (the cache must go on).
 */

struct sweep_stats {
  uint64_t n, refused, exact, rolled, bad, full;
};

static void
sweep_one (const struct base *B, const char *path, uint64_t off, uint8_t x,
           const char *region, int job, uint64_t k, struct sweep_stats *ss)
{
  struct result r;
  uint8_t b;

  if (tu_file_read (path, off, &b, 1) == -1)
    die ("pread: %m");
  b ^= x;
  if (tu_file_write (path, off, &b, 1) == -1)
    die ("pwrite: %m");
  judge (B, path, 0, 1, &r);
  if ((r.o == O_EXACT || r.o == O_ROLLBACK) && k % 16 == 0) {
    char full[PATH_MAX];

    snprintf (full, sizeof full, "%s/full-%d", dir, job);
    if (tu_file_copy (path, full) == -1)
      die ("%s: %m", full);
    judge (B, full, 0, 0, &r);
    unlink (full);
    ss->full++;
  }
  ss->n++;
  switch (r.o) {
  case O_REFUSED:
    if (strstr (r.msg, "without a message"))
      goto bad;
    ss->refused++;
    break;
  case O_EXACT: ss->exact++; break;
  case O_ROLLBACK:
    ss->rolled++;
    if (verbose) {
      char line[300];
      first_line (r.msg, line, sizeof line);
      printf ("      sweep: %s byte %" PRIu64 " ^ 0x%02x: %u blocks rolled "
              "back\n", region, off, x, r.rolled);
    }
    break;
  default:
  bad:
    ss->bad++;
    {
      char line[300];
      first_line (r.msg, line, sizeof line);
      printf ("FAIL  sweep: %s byte %" PRIu64 " ^ 0x%02x: %s: %s\n", region,
              off, x, outcome_names[r.o], line);
    }
  }
  if (r.stores) {
    if (tu_file_copy (B->path, path) == -1)
      die ("%s: %m", path);
  }
  else {
    b ^= x;
    if (tu_file_write (path, off, &b, 1) == -1)
      die ("pwrite: %m");
  }
}

/* Sweep [off, off+len) with stride, in opt_jobs processes. */
static void
sweep (const struct base *B, const char *region, uint64_t off, uint64_t len,
       unsigned stride, struct sweep_stats *total)
{
  int p[2], j;
  pid_t pids[16];

  if (pipe (p) == -1)
    die ("pipe: %m");
  fflush (stdout);
  for (j = 0; j < opt_jobs; j++) {
    pids[j] = fork ();
    if (pids[j] == 0) {
      struct sweep_stats ss = { 0 };
      char path[PATH_MAX];
      uint64_t i, k = 0;

      close (p[0]);
      snprintf (path, sizeof path, "%s/sweep-%d", dir, j);
      if (tu_file_copy (B->path, path) == -1)
        die ("%s: %m", path);
      for (i = 0; i < len; i += stride, k++)
        if ((int) (k % opt_jobs) == j)
          sweep_one (B, path, off + i,
                     (uint8_t) (1u << (k % 8)) | (k & 8 ? 0x80 : 0), region,
                     j, k / opt_jobs, &ss);
      unlink (path);
      fflush (stdout);
      if (write (p[1], &ss, sizeof ss) != sizeof ss)
        _exit (1);
      _exit (0);
    }
  }
  close (p[1]);
  for (j = 0; j < opt_jobs; j++) {
    struct sweep_stats ss;
    int status;

    if (read (p[0], &ss, sizeof ss) == sizeof ss) {
      total->n += ss.n;
      total->refused += ss.refused;
      total->exact += ss.exact;
      total->rolled += ss.rolled;
      total->bad += ss.bad;
      total->full += ss.full;
    }
    else
      total->bad++;
    waitpid (pids[j], &status, 0);
  }
  close (p[0]);
}

static void
run_sweeps (void)
{
  struct base *B = &bases[B_PLAIN];
  struct img m;
  struct sweep_stats ss = { 0 };
  char path[PATH_MAX];
  unsigned i, log_stride = quick ? 31 : 5;
  double t0;
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  t0 = ts.tv_sec + ts.tv_nsec / 1e9;
  snprintf (path, sizeof path, "%s/parse", dir);
  if (tu_file_copy (B->path, path) == -1 || img_map (path, &m) == -1)
    die ("%s: %m", path);
  sweep (B, "superblock A", PC_SB_OFF, sizeof (struct pc_sb), quick ? 5 : 1, &ss);
  sweep (B, "superblock B", PC_SB_SLOT, sizeof (struct pc_sb), quick ? 5 : 1, &ss);
  sweep (B, "control slot 0", ctrl_off (0), sizeof (struct pc_ctrl), 1, &ss);
  sweep (B, "control slot 1", ctrl_off (1), sizeof (struct pc_ctrl), 1, &ss);
  sweep (B, "generation table", PC_SEGTAB_OFF, NSEGS * PC_SEGTAB_ENTRY,
         quick ? 3 : 1, &ss);
  for (i = 0; i < m.nks; i++) {
    struct pc_kset_hdr *h = hdr_at (&m, i);
    char name[64];
    snprintf (name, sizeof name, "kset %" PRIu64, m.ks[i].seq);
    sweep (B, name, m.ks[i].fo, PC_KSET_BYTES (h->nkeys),
           h->nkeys > 4 ? log_stride : 1, &ss);
  }
  /* Also the LAST base's LAST record and the kset after it. */
  img_unmap (&m);
  unlink (path);
  {
    struct base *BL = &bases[B_LAST];
    int k;

    if (tu_file_copy (BL->path, path) == -1 || img_map (path, &m) == -1)
      die ("%s: %m", path);
    k = find_last (&m);
    if (k >= 0) {
      sweep (BL, "LAST record", m.ks[k].fo, sizeof (struct pc_kset_hdr), 1, &ss);
      if (k + 1 < (int) m.nks)
        sweep (BL, "kset after LAST", m.ks[k + 1].fo,
               PC_KSET_BYTES (hdr_at (&m, k + 1)->nkeys), log_stride * 3, &ss);
    }
    img_unmap (&m);
    unlink (path);
  }
  clock_gettime (CLOCK_MONOTONIC, &ts);
  printf ("%s  sweep: %" PRIu64 " single-byte flips of superblocks, control "
          "slots, generations and ksets: %" PRIu64 " refused, %" PRIu64
          " opened exact, %" PRIu64 " opened with blocks rolled back, %"
          PRIu64 " bad; %" PRIu64 " went on after the open (%.1f s)\n",
          ss.bad ? "FAIL" : "ok  ", ss.n, ss.refused, ss.exact, ss.rolled,
          ss.bad, ss.full, ts.tv_sec + ts.tv_nsec / 1e9 - t0);
  if (ss.bad)
    nfail++;
  else
    npass++;
}

static void
cleanup (void)
{
  char cmd[PATH_MAX + 32];

  if (dir[0]) {
    snprintf (cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system (cmd) != 0)
      fprintf (stderr, "corrupt: cannot remove %s\n", dir);
  }
}

static pid_t main_pid;

static void
on_signal (int sig)
{
  if (getpid () == main_pid)
    cleanup ();
  signal (sig, SIG_DFL);
  raise (sig);
}

int
main (int argc, char **argv)
{
  unsigned i;
  int o;

  while ((o = getopt (argc, argv, "vqj:")) != -1) {
    switch (o) {
    case 'v': verbose++; break;
    case 'q': quick = 1; break;
    case 'j': opt_jobs = atoi (optarg); break;
    default:
      fprintf (stderr, "usage: corrupt [-v] [-q] [-j JOBS]\n");
      return 2;
    }
  }
  if (opt_jobs < 1 || opt_jobs > 16)
    opt_jobs = 2;
  setvbuf (stdout, NULL, _IOLBF, 0);
  setenv ("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 0);
  tu_log_echo (verbose);
  tu_log_install ();
  if (tu_mkdtemp (dir, sizeof dir, "corrupt") == -1)
    die ("mkdtemp: %m");
  atexit (cleanup);
  main_pid = getpid ();
  signal (SIGINT, on_signal);
  signal (SIGTERM, on_signal);
  signal (SIGHUP, on_signal);
  for (i = 0; i < B_NBASES; i++)
    make_base (i);

  for (i = 0; i < sizeof cases / sizeof cases[0]; i++)
    run_case (&cases[i], i);
  run_sweeps ();

  printf ("corrupt: %d passed, %d failed\n", npass, nfail);
  return nfail ? 1 : 0;
}
