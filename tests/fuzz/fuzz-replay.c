/* SPDX-License-Identifier: BSD-3-Clause */
/* fuzz-replay: libFuzzer target for opening and replaying a damaged
 * cache.
 *
 * A small valid cache (8 segments of 1 MiB, some writes, a flush, part
 * of it written back and collected) is made once.  The input is a list
 * of patches applied to the metadata area and the head of the first log
 * segment, and optionally CRC fix-ups so that crafted records get past
 * their checksums and reach the semantic checks behind them.  The image
 * is written to a tmpfs file and opened: pc_cache_open, pc_cache_bind, a
 * walk of the log, a few reads with a backend of zeroes, pc_cache_close.
 * Any crash, leak or undefined behaviour is a bug.
 *
 * Input:  byte 0   fix-ups: bit 0 reseal both superblocks, bit 1 both
 *                  control slots, bit 2 every generation slot, bit 3
 *                  every kset along the log from key_tail;
 *         then     patches: sel (1 byte), offset (2 bytes, LE), length
 *                  (1 byte), bytes.  sel % 4 picks the area: 0 the
 *                  superblocks and control slots, 1 the generation
 *                  table, 2 the first 64 KiB of log segment 0, 3 anywhere
 *                  in the metadata and segment 0 (offset * 16).
 *
 * Build (see tests/crash.mk):
 *   clang -fsanitize=fuzzer,address,undefined -Iinclude -Icore \
 *     tests/fuzz/fuzz-replay.c core/[a-z]*.c -lpmem2 -lisal ...
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1            /* built without config.h */
#endif
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pcache.h"
#include "cache_internal.h"
#include "gc.h"
#include "writeback.h"
#include "crc.h"
#include "format.h"
#include "meta.h"
#include "util.h"

#define NSEGS     PC_MIN_SEGMENTS
#define BACKING   ((uint64_t) 8 << 20)
#define LOGHEAD   (64u << 10)

static char path[256];
static uint8_t *base;          /* the valid image */
static uint8_t *img;           /* this run's image */
static uint64_t fsize, area_off, region;
static unsigned nstores;

static void
quiet_log (int level, const char *fmt, va_list ap)
{
  (void) level;
  (void) fmt;
  (void) ap;
}

static void
count_store (void *opaque, const void *addr, size_t len)
{
  (void) opaque;
  (void) addr;
  (void) len;
  nstores++;
}

static int
zb_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  (void) ctx;
  (void) off;
  (void) err;
  memset (buf, 0, len);
  return 0;
}

static int
zb_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off, int *err)
{
  (void) ctx;
  (void) buf;
  (void) len;
  (void) off;
  (void) err;
  return 0;
}

static int
zb_flush (void *ctx, int *err)
{
  (void) ctx;
  (void) err;
  return 0;
}

static const struct pc_backend_ops zero_ops = {
  .pread = zb_pread, .pwrite = zb_pwrite, .flush = zb_flush,
};

static int
put_file (const uint8_t *buf, uint64_t off, uint64_t len)
{
  int fd = open (path, O_WRONLY | O_CLOEXEC);
  int r = 0;

  if (fd == -1)
    return -1;
  while (len > 0) {
    ssize_t n = pwrite (fd, buf, len, off);
    if (n <= 0) {
      r = -1;
      break;
    }
    buf += n;
    off += n;
    len -= n;
  }
  close (fd);
  return r;
}

static int
get_file (uint8_t *buf, uint64_t len)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  uint64_t off = 0;

  if (fd == -1)
    return -1;
  while (off < len) {
    ssize_t n = pread (fd, buf + off, len - off, off);
    if (n <= 0)
      break;
    off += n;
  }
  close (fd);
  return off == len ? 0 : -1;
}

/* The base cache: writes spread over two kbufs, a flush, writeback of
 * the first epoch and GC, then more writes (dirty) and a zero.
 */
static void
make_base (void)
{
  struct pc_config cfg;
  struct pc_backend bg = { .ops = &zero_ops };
  pc_cache *c;
  uint8_t buf[4096];
  uint64_t i;
  int err;

  pc_config_init (&cfg);
  cfg.path = path;
  /* A small namespace table keeps the image small: it is fuzzed too. */
  cfg.max_exports = 2;
  fsize = PC_ALIGN_UP (PC_SEGTAB_OFF + NSEGS * PC_SEGTAB_ENTRY, 4096) +
    2 * PC_NS_ENTRY + (uint64_t) NSEGS * PC_MIN_SEG_SIZE;
  cfg.size = fsize;
  cfg.seg_size = PC_MIN_SEG_SIZE;
  cfg.data_crc = 1;
  if (pc_cache_open (&cfg, &c) == -1 || pc_cache_bind (c, BACKING) == -1) {
    fprintf (stderr, "fuzz-replay: cannot make the base cache\n");
    abort ();
  }
  pc_cache_set_backend (c, &bg);
  for (i = 0; i < 300; i++) {
    memset (buf, (int) i, sizeof buf);
    pc_write (c, buf, sizeof buf, (i * 7919 % 2048) * 4096, 0, &err);
  }
  pc_flush (c, &err);
  while (pc_writeback_step (c) == 1)
    ;
  pc_gc_run (c, 1);
  for (i = 0; i < 200; i++) {
    memset (buf, (int) (i + 77), sizeof buf);
    pc_write (c, buf, sizeof buf, (i * 31 % 2048) * 4096,
              i % 50 == 0 ? PC_FUA : 0, &err);
    if (i % 64 == 0)
      pc_flush (c, &err);
  }
  pc_zero (c, 65536, 1 << 20, PC_MAY_TRIM, &err);
  pc_trim (c, 8192, 3 << 20, 0, &err);
  pc_flush (c, &err);
  pc_writeback_step (c);
  area_off = c->seg_area_off;
  pc_cache_close (c);
  region = area_off + PC_MIN_SEG_SIZE;
  base = malloc (fsize);
  img = malloc (fsize);
  if (!base || !img || get_file (base, fsize) == -1)
    abort ();
}

static void
cleanup (void)
{
  unlink (path);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  const char *dir = getenv ("PCACHE_FUZZ_DIR");

  (void) argc;
  (void) argv;
  setenv ("PMEM2_FORCE_GRANULARITY", "CACHE_LINE", 0);
  pc_set_log (getenv ("PCACHE_FUZZ_VERBOSE") ? NULL : quiet_log);
  if (!dir || !*dir)
    dir = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf (path, sizeof path, "%s/pcache-fuzz-%d", dir, (int) getpid ());
  unlink (path);
  atexit (cleanup);
  make_base ();
  return 0;
}

/* CRC fix-ups. */
static void
reseal (uint8_t fix)
{
  unsigned i;

  if (fix & 1)
    for (i = 0; i < 2; i++) {
      struct pc_sb sb;
      memcpy (&sb, img + i * PC_SB_SLOT, sizeof sb);
      pc_sb_seal (&sb);
      memcpy (img + i * PC_SB_SLOT, &sb, sizeof sb);
    }
  if (fix & 2)
    for (i = 0; i < 2; i++) {
      struct pc_ctrl ct;
      memcpy (&ct, img + PC_CTRL_OFF + i * PC_CTRL_SLOT, sizeof ct);
      ct.crc = pc_rec_crc (&ct, sizeof ct);
      memcpy (img + PC_CTRL_OFF + i * PC_CTRL_SLOT, &ct, sizeof ct);
    }
  if (fix & 4)
    for (i = 0; i < 2 * NSEGS; i++) {
      struct pc_gen_slot g;
      memcpy (&g, img + PC_SEGTAB_OFF + i * sizeof g, sizeof g);
      g.crc = pc_rec_crc (&g, sizeof g);
      memcpy (img + PC_SEGTAB_OFF + i * sizeof g, &g, sizeof g);
    }
  if (fix & 8) {
    /* Walk segment 0 from key_tail, resealing each kset found. */
    struct pc_sb sb;
    struct pc_ctrl ct;
    /* Only segment 0 (region) is mutated, and a LAST kset leaves it:
     * the walk sees one segment.
     */
    struct pc_geom g = {
      .base = img, .seg_area_off = area_off, .nsegs = 1,
      .seg_shift = __builtin_ctz (PC_MIN_SEG_SIZE),
    };
    struct pc_pos pos;
    unsigned n;

    memcpy (&sb, img, sizeof sb);
    if (pc_ctrl_load (img, &ct) < 0 || ct.key_tail.seg != 0)
      return;
    g.seed = pc_fmt_seed (sb.uuid);
    pos = ct.key_tail;
    for (n = 0; n < 4096; n++) {
      const char *why;
      struct pc_kset_hdr *h =
        (struct pc_kset_hdr *) pc_fmt_kset_shape (&g, &pos, &why);

      if (!h || (h->flags & PC_KSET_LAST))
        break;
      h->crc = pc_kset_crc (g.seed, h);
      pc_fmt_kset_next (h, &pos);
    }
  }
}

static int
walk_fn (void *opaque, const struct pc_key_info *k)
{
  (void) opaque;
  (void) k;
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  static int file_ok;
  struct pc_config cfg;
  pc_cache *c;
  uint8_t fix = size ? data[0] : 0;
  size_t i = size ? 1 : 0;
  struct pc_backend fg = { .ops = &zero_ops };
  uint8_t buf[16384];
  int err;

  memcpy (img, base, region);
  while (i + 4 <= size) {
    uint8_t sel = data[i];
    uint32_t off = data[i + 1] | (uint32_t) data[i + 2] << 8, len = data[i + 3];
    uint64_t at, lim;

    i += 4;
    if (len > size - i)
      len = size - i;
    switch (sel % 4) {
    case 0: at = off % PC_SEGTAB_OFF; lim = PC_SEGTAB_OFF; break;
    case 1:
      at = PC_SEGTAB_OFF + off % (area_off - PC_SEGTAB_OFF);
      lim = area_off;
      break;
    case 2: at = area_off + off % LOGHEAD; lim = region; break;
    default: at = ((uint64_t) off * 16) % region; lim = region; break;
    }
    if (len > lim - at)
      len = lim - at;
    memcpy (img + at, data + i, len);
    i += len;
  }
  reseal (fix);

  /* The file holds the base outside the region unless a run stored
   * there; then it is written whole again.
   */
  if (!file_ok) {
    if (put_file (base, 0, fsize) == -1)
      abort ();
    file_ok = 1;
  }
  if (put_file (img, 0, region) == -1)
    abort ();

  nstores = 0;
  pc_pmem_set_hooks (count_store, NULL, NULL);
  pc_config_init (&cfg);
  cfg.path = path;
  cfg.cache_on_read = 0;
  cfg.lenient_replay = fix >> 7;
  if (pc_cache_open (&cfg, &c) == 0) {
    if (pc_cache_bind (c, BACKING) == 0) {
      struct pc_info info;

      pc_cache_set_backend (c, &fg);
      pc_cache_info (c, &info);
      pc_cache_walk (c, walk_fn, NULL);
      pc_cache_verify_data (c, NULL, NULL);
      pc_read (c, buf, sizeof buf, 0, &fg, &err);
      pc_read (c, buf, sizeof buf, (1 << 20) - 4096, &fg, &err);
      pc_read (c, buf, 4096, (uint64_t) (data[size ? size - 1 : 0] % 64) << 15,
               &fg, &err);
      pc_read (c, buf, sizeof buf, BACKING - sizeof buf, &fg, &err);
    }
    pc_cache_close (c);
  }
  pc_pmem_set_hooks (NULL, NULL, NULL);
  if (nstores)
    file_ok = 0;
  return 0;
}
