/* Unit tests for the on-media format: format, open and validation of
 * the superblock, control record and generation records, and replay of
 * the key log (newest wins, CRC and sequence checks, generations,
 * payload checksums).
 *
 * Most tests run without workers: open, bind, write, pc_flush,
 * pc_cache_close, then poke at the file and reopen.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "crc.h"
#include "format.h"
#include "meta.h"
#include "testutil.h"

#define CSIZE (12 * TU_MIB)     /* 11 segments of 1 MiB */
#define CSEGS 11u
#define CAREA 20480u            /* seg_area_off for CSIZE */
#define BSIZE (32 * TU_MIB)

static struct tu_mem *ee;       /* backend whose every byte is 0xEE */
static struct pc_backend eeb;

/* A fresh path (no file) for this test. */
static const char *
fresh (const char *name)
{
  const char *p = tu_path (name);

  unlink (p);
  return p;
}

/* Open (creating if needed) with the usual geometry.  Reads do not
 * cache (cache_on_read off), so that checking a cache never changes
 * its log.
 */
static pc_cache *
reopen (const char *path)
{
  struct pc_config cfg;

  tu_config (&cfg, path, CSIZE);
  cfg.cache_on_read = 0;
  return tu_open (&cfg, BSIZE);
}

/* Open accepting a damaged log: it ends at the first bad kset. */
static pc_cache *
reopen_lenient (const char *path)
{
  struct pc_config cfg;

  tu_config (&cfg, path, CSIZE);
  cfg.cache_on_read = 0;
  cfg.lenient_replay = 1;
  return tu_open (&cfg, BSIZE);
}

static void
wr (pc_cache *c, uint64_t off, uint32_t len, uint32_t seed)
{
  uint8_t *b = malloc (len);
  int err = 0;

  tu_fill (b, len, off, seed);
  CU_ASSERT_EQUAL (pc_write (c, b, len, off, 0, &err), 0);
  free (b);
}

static void
flush (pc_cache *c)
{
  int err = 0;

  CU_ASSERT_EQUAL (pc_flush (c, &err), 0);
}

/* Read through the cache (misses from the 0xEE backend); whether the
 * range holds the pattern.
 */
static int
has_pattern (pc_cache *c, uint64_t off, uint32_t len, uint32_t seed)
{
  uint8_t *b = malloc (len);
  int err = 0, ok;

  ok = pc_read (c, b, len, off, &eeb, &err) == 0 &&
    tu_check (b, len, off, seed) == -1;
  free (b);
  return ok;
}

/* Whether the range reads as the backend's 0xEE (not cached). */
static int
is_uncached (pc_cache *c, uint64_t off, uint32_t len)
{
  uint8_t *b = malloc (len);
  int err = 0, ok;

  ok = pc_read (c, b, len, off, &eeb, &err) == 0 &&
    tu_check_byte (b, len, 0xEE) == -1;
  free (b);
  return ok;
}

static int
map_type (pc_cache *c, uint64_t off, uint64_t len)
{
  struct tu_map m;

  if (tu_map_collect (c, off, len, &m) != 0 || m.overflow)
    return -2;
  return tu_map_type (&m, off, len);
}

/* Position in the file of log position pos. */
static uint64_t
pos_foff (pc_cache *c, const struct pc_pos *pos)
{
  return (uint64_t) (pc_seg_addr (c, pos->seg, pos->off) - c->base);
}

struct kinfo {
  struct pc_pos pos;
  uint64_t foff;
  struct pc_kset_hdr h;
};

/* Walk the live log from key_tail; returns the number of ksets. */
static size_t
walk_log (pc_cache *c, struct kinfo *v, size_t max)
{
  struct pc_pos pos = c->ctrl.key_tail;
  const struct pc_kset_hdr *h;
  const char *why;
  size_t n = 0;

  while (n < max && (h = pc_kset_at (c, &pos, &why)) != NULL) {
    v[n].pos = pos;
    v[n].foff = pos_foff (c, &pos);
    v[n].h = *h;
    pc_kset_next (c, h, &pos);
    n++;
  }
  return n;
}

/* The kset CRC seed of a closed cache file. */
static uint32_t
file_seed (const char *path)
{
  struct pc_sb sb;

  CU_ASSERT_EQUAL (tu_file_read (path, PC_SB_OFF, &sb, sizeof sb), 0);
  return pc_fmt_seed (sb.uuid);
}

/* ------------------------------------------------------------------ */

static void
test_format_reopen (void)
{
  const char *p = fresh ("fmt");
  struct pc_config cfg;
  pc_cache *c;
  struct pc_sb a, b, sb;
  uint8_t head[PC_SEGTAB_OFF];
  const char *why = NULL;
  struct pc_stats st;
  uint8_t uuid[16];
  int err = 0;
  uint8_t buf[4096];

  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-1";
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  CU_ASSERT_TRUE (pc_cache_is_new (c));
  CU_ASSERT_EQUAL_FATAL (pc_cache_bind (c, BSIZE), 0);
  memcpy (uuid, c->sb.uuid, 16);
  pc_cache_close (c);

  /* Both superblock copies on media, identical and valid. */
  CU_ASSERT_EQUAL_FATAL (tu_file_read (p, 0, head, sizeof head), 0);
  memcpy (&a, head + PC_SB_OFF, sizeof a);
  memcpy (&b, head + PC_SB_OFF + PC_SB_SLOT, sizeof b);
  CU_ASSERT_EQUAL (memcmp (&a, &b, sizeof a), 0);
  CU_ASSERT_EQUAL (pc_sb_load (head, CSIZE, &sb, &why), 0);
  CU_ASSERT_EQUAL (sb.magic, PC_SB_MAGIC);
  CU_ASSERT_EQUAL (sb.version, PC_FORMAT_VERSION);
  CU_ASSERT_EQUAL (sb.features, 0);
  CU_ASSERT_EQUAL (sb.seg_shift, 20);
  CU_ASSERT_EQUAL (sb.nsegs, CSEGS);
  CU_ASSERT_EQUAL (sb.file_size, CSIZE);
  CU_ASSERT_EQUAL (sb.backing_size, BSIZE);
  CU_ASSERT_EQUAL (sb.seg_area_off, CAREA);
  CU_ASSERT_STRING_EQUAL (sb.backing_id, "disk-1");
  CU_ASSERT_EQUAL (memcmp (sb.uuid, uuid, 16), 0);

  /* Reopen: not new, same identity, empty log. */
  cfg.size = 0;                 /* "use the existing size" */
  cfg.seg_size = 0;
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  CU_ASSERT_FALSE (pc_cache_is_new (c));
  CU_ASSERT_EQUAL_FATAL (pc_cache_bind (c, BSIZE), 0);
  CU_ASSERT_EQUAL (pc_cache_backing_size (c), BSIZE);
  CU_ASSERT_EQUAL (memcmp (c->sb.uuid, uuid, 16), 0);
  CU_ASSERT_EQUAL (c->nsegs, CSEGS);
  CU_ASSERT_EQUAL (c->seg_size, TU_MIB);
  /* The salt the format pins: the CRC32C of the uuid. */
  CU_ASSERT_EQUAL (c->geom.seed, pc_crc32c (uuid, 16));
  CU_ASSERT_EQUAL (c->ctrl.key_tail.seq, 1);
  CU_ASSERT_EQUAL (c->ctrl.key_tail.seg, c->ctrl.dirty_tail.seg);
  CU_ASSERT_EQUAL (c->ctrl.key_tail.off, c->ctrl.dirty_tail.off);
  CU_ASSERT_EQUAL (c->ctrl.key_tail.seq, c->ctrl.dirty_tail.seq);
  CU_ASSERT_EQUAL (c->log.head.seq, c->ctrl.key_tail.seq);
  CU_ASSERT_EQUAL (c->log.head.seg, c->ctrl.key_tail.seg);
  CU_ASSERT_EQUAL (c->log.head.off, c->ctrl.key_tail.off);
  pc_cache_get_stats (c, &st);
  CU_ASSERT_EQUAL (st.segs_total, CSEGS);
  CU_ASSERT_EQUAL (st.segs_used, 1);      /* the log's first segment */
  CU_ASSERT_EQUAL (st.dirty_ksets, 0);
  CU_ASSERT_EQUAL (map_type (c, 0, BSIZE), PC_MAP_UNCACHED);
  CU_ASSERT_EQUAL (pc_read (c, buf, sizeof buf, 12345, &eeb, &err), 0);
  CU_ASSERT_EQUAL (tu_check_byte (buf, sizeof buf, 0xEE), -1);
  pc_cache_close (c);
  unlink (p);
}

/* Every open that does not match the file is refused without touching
 * it, with a message naming the file and the problem.
 */
static void
test_reopen_mismatch (void)
{
  const char *p = fresh ("mis"), *copy = fresh ("mis.orig");
  struct pc_config cfg;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-A";
  cfg.data_crc = 0;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  wr (c, 0, 8192, 1);
  pc_cache_close (c);
  CU_ASSERT_EQUAL_FATAL (tu_file_copy (p, copy), 0);

#define REFUSED(what, word)                                             \
  do {                                                                  \
    tu_log_clear ();                                                    \
    errno = 0;                                                          \
    CU_ASSERT_EQUAL (pc_cache_open (&cfg, &c), -1);                     \
    CU_ASSERT_EQUAL (errno, EINVAL);                                    \
    CU_ASSERT_TRUE (tu_log_has (p));                                    \
    CU_ASSERT_TRUE (tu_log_has (word));                                 \
    if (!tu_log_has (p) || !tu_log_has (word))                          \
      fprintf (stderr, "\n%s: log was: %s", what, tu_log_text ());      \
    CU_ASSERT_TRUE (tu_file_same (p, copy));                            \
  } while (0)

  tu_config (&cfg, p, CSIZE + TU_MIB);
  cfg.backing_id = "disk-A";
  REFUSED ("size", "size");

  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-A";
  cfg.seg_size = 2 * TU_MIB;
  REFUSED ("seg size", "segment size");

  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-A";
  cfg.data_crc = 1;
  REFUSED ("data crc", "data-crc");

  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-B";
  REFUSED ("backing id", "disk-A");

  tu_config (&cfg, p, CSIZE);
  REFUSED ("no backing id", "disk-A");
#undef REFUSED

  /* Backing size is checked at bind. */
  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-A";
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  tu_log_clear ();
  errno = 0;
  CU_ASSERT_EQUAL (pc_cache_bind (c, BSIZE * 2), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("backing store"));
  pc_cache_close (c);

  /* The right parameters still open it, data intact. */
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (has_pattern (c, 0, 8192, 1));
  pc_cache_close (c);
  unlink (p);
  unlink (copy);
}

static void
refuse_foreign (const char *p, int random)
{
  const char *copy = fresh ("foreign.orig");
  struct pc_config cfg;
  pc_cache *c = NULL;
  int i;

  CU_ASSERT_EQUAL_FATAL (tu_file_make (p, CSIZE, random, 42), 0);
  CU_ASSERT_EQUAL_FATAL (tu_file_copy (p, copy), 0);
  /* With and without a size: an existing file is never formatted
   * under AUTO.
   */
  for (i = 0; i < 2; i++) {
    tu_config (&cfg, p, i ? CSIZE : 0);
    tu_log_clear ();
    errno = 0;
    CU_ASSERT_EQUAL (pc_cache_open (&cfg, &c), -1);
    CU_ASSERT_EQUAL (errno, EINVAL);
    CU_ASSERT_TRUE (tu_log_has ("not a pcache cache file"));
    CU_ASSERT_TRUE (tu_log_has (p));
    CU_ASSERT_TRUE (tu_file_same (p, copy));
  }

  /* FORCE does format it. */
  tu_config (&cfg, p, CSIZE);
  cfg.format = PC_FORMAT_FORCE;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  wr (c, 4096, 4096, 9);
  pc_cache_close (c);
  CU_ASSERT_FALSE (tu_file_same (p, copy));
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (has_pattern (c, 4096, 4096, 9));
  pc_cache_close (c);
  unlink (copy);
}

static void
test_foreign_zero (void)
{
  const char *p = fresh ("zeroes");

  refuse_foreign (p, 0);
  unlink (p);
}

static void
test_foreign_random (void)
{
  const char *p = fresh ("random");

  refuse_foreign (p, 1);
  unlink (p);
}

static void
test_format_force (void)
{
  const char *p = fresh ("force");
  struct pc_config cfg;
  pc_cache *c;
  uint8_t uuid[16];

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  memcpy (uuid, c->sb.uuid, 16);
  wr (c, 0, 65536, 3);
  pc_cache_close (c);

  tu_config (&cfg, p, CSIZE);
  cfg.format = PC_FORMAT_FORCE;
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  CU_ASSERT_TRUE (pc_cache_is_new (c));
  CU_ASSERT_EQUAL_FATAL (pc_cache_bind (c, BSIZE), 0);
  CU_ASSERT_NOT_EQUAL (memcmp (c->sb.uuid, uuid, 16), 0);
  CU_ASSERT_EQUAL (c->log.head.seq, 1);
  CU_ASSERT_EQUAL (map_type (c, 0, BSIZE), PC_MAP_UNCACHED);
  CU_ASSERT_TRUE (is_uncached (c, 0, 65536));
  pc_cache_close (c);

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (is_uncached (c, 0, 65536));
  pc_cache_close (c);
  unlink (p);
}

static void
test_bad_version (void)
{
  const char *p = fresh ("version"), *copy = fresh ("version.orig");
  struct pc_sb sb;
  pc_cache *c;
  char want[64];

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_close (c);
  CU_ASSERT_EQUAL_FATAL (tu_file_read (p, PC_SB_OFF, &sb, sizeof sb), 0);
  sb.version = PC_FORMAT_VERSION + 1;
  pc_sb_seal (&sb);
  CU_ASSERT_EQUAL (tu_file_write (p, PC_SB_OFF, &sb, sizeof sb), 0);
  CU_ASSERT_EQUAL (tu_file_write (p, PC_SB_OFF + PC_SB_SLOT, &sb, sizeof sb),
                   0);
  CU_ASSERT_EQUAL_FATAL (tu_file_copy (p, copy), 0);

  tu_log_clear ();
  errno = 0;
  c = reopen (p);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("version"));
  snprintf (want, sizeof want, "%u", PC_FORMAT_VERSION + 1);
  CU_ASSERT_TRUE (tu_log_has (want));
  CU_ASSERT_TRUE (tu_file_same (p, copy));
  pc_cache_close (c);
  unlink (p);
  unlink (copy);
}

static void
test_sb_replica (void)
{
  const char *p = fresh ("sbrep");
  pc_cache *c;

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  wr (c, 1 << 20, 4096, 5);
  pc_cache_close (c);

  /* Copy A: one flipped bit in nsegs. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_SB_OFF + offsetof (struct pc_sb, nsegs),
                                0x10), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->nsegs, CSEGS);
  CU_ASSERT_TRUE (has_pattern (c, 1 << 20, 4096, 5));
  pc_cache_close (c);

  /* Copy B too (its uuid): refused. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_SB_SLOT + offsetof (struct pc_sb, uuid),
                                1), 0);
  tu_log_clear ();
  errno = 0;
  c = reopen (p);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("corrupt"));
  pc_cache_close (c);

  /* Repair A only: opens again. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_SB_OFF + offsetof (struct pc_sb, nsegs),
                                0x10), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL (c);
  pc_cache_close (c);
  unlink (p);
}

/* pc_ctrl_store / pc_ctrl_load on a bare mapping. */
static void
test_ctrl_slots_unit (void)
{
  const char *p = fresh ("ctrl-unit");
  struct pc_pmem *pm;
  uint8_t *base, save[PC_CTRL_SLOT];
  struct pc_ctrl c = { 0 }, out;
  int created, slot = 1, i;

  CU_ASSERT_EQUAL_FATAL (pc_pmem_open (p, 65536, 1, &pm, &created), 0);
  base = pc_pmem_base (pm);
  CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), -1);  /* zeroes */

  for (i = 0; i < 5; i++) {
    c.key_tail.seq = 100 + i;
    c.dirty_tail.seq = 200 + i;
    pc_ctrl_store (pm, base, &c, &slot);
    CU_ASSERT_EQUAL (slot, i % 2);
    CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), slot);
    CU_ASSERT_EQUAL (out.seq, (uint64_t) i + 1);
    CU_ASSERT_EQUAL (out.key_tail.seq, 100u + i);
    CU_ASSERT_EQUAL (out.dirty_tail.seq, 200u + i);
  }
  /* Newest is slot 0, seq 5.  Flip a byte of it: slot 1 (seq 4) wins. */
  base[PC_CTRL_OFF + offsetof (struct pc_ctrl, dirty_tail)] ^= 0x40;
  CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), 1);
  CU_ASSERT_EQUAL (out.seq, 4);
  CU_ASSERT_EQUAL (out.dirty_tail.seq, 203);
  base[PC_CTRL_OFF + offsetof (struct pc_ctrl, dirty_tail)] ^= 0x40;
  CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), 0);

  /* A torn update of slot 1: new front, old back. */
  memcpy (save, base + PC_CTRL_OFF + PC_CTRL_SLOT, sizeof save);
  c.key_tail.seq = 777;
  c.dirty_tail.seq = 888;
  pc_ctrl_store (pm, base, &c, &slot);
  CU_ASSERT_EQUAL (slot, 1);
  CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), 1);
  memcpy (base + PC_CTRL_OFF + PC_CTRL_SLOT + sizeof c / 2,
          save + sizeof c / 2, sizeof c - sizeof c / 2);
  CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), 0);
  CU_ASSERT_EQUAL (out.seq, 5);
  CU_ASSERT_EQUAL (out.key_tail.seq, 104);

  /* Wrong magic with a right CRC is not a control record. */
  memcpy (&out, base + PC_CTRL_OFF, sizeof out);
  out.magic ^= 1;
  out.crc = pc_rec_crc (&out, sizeof out);
  memcpy (base + PC_CTRL_OFF, &out, sizeof out);
  CU_ASSERT_EQUAL (pc_ctrl_load (base, &out), -1);
  pc_pmem_close (pm);
  unlink (p);
}

/* Slot selection and corruption of the control record of a real cache. */
static void
test_ctrl_slots_cache (void)
{
  const char *p = fresh ("ctrl");
  uint8_t save[sizeof (struct pc_ctrl)];
  pc_cache *c;
  int newest, older, i;
  uint64_t seq;

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  wr (c, 0, 4096, 11);
  flush (c);
  for (i = 0; i < 3; i++)
    pc_ctrl_update (c, NULL, NULL);
  newest = c->ctrl_slot;
  older = newest ^ 1;
  seq = c->ctrl.seq;
  pc_cache_close (c);

  /* Newest slot corrupt: the older one is used, and the next update
   * goes over the corrupt slot, never over the good one.
   */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_CTRL_OFF + newest * PC_CTRL_SLOT +
                                offsetof (struct pc_ctrl, key_tail), 2), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->ctrl_slot, older);
  CU_ASSERT_EQUAL (c->ctrl.seq, seq - 1);
  CU_ASSERT_TRUE (has_pattern (c, 0, 4096, 11));
  pc_ctrl_update (c, NULL, NULL);
  CU_ASSERT_EQUAL (c->ctrl_slot, newest);
  {
    struct pc_ctrl out;
    CU_ASSERT_EQUAL (pc_ctrl_load (c->base, &out), newest);
    CU_ASSERT_EQUAL (out.seq, seq);
  }

  /* A torn update: half of the next record over the older slot.  The
   * update changes the back half (gc_percent), or the tear would not
   * show.
   */
  memcpy (save, c->base + PC_CTRL_OFF + older * PC_CTRL_SLOT, sizeof save);
  atomic_store (&c->gc_percent, 55);
  pc_ctrl_update (c, NULL, NULL);
  CU_ASSERT_EQUAL (c->ctrl_slot, older);
  pc_cache_close (c);
  CU_ASSERT_EQUAL (tu_file_write (p, PC_CTRL_OFF + older * PC_CTRL_SLOT +
                                  sizeof save / 2, save + sizeof save / 2,
                                  sizeof save - sizeof save / 2), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->ctrl_slot, newest);
  CU_ASSERT_EQUAL (c->ctrl.seq, seq);
  CU_ASSERT_NOT_EQUAL (c->ctrl.gc_percent, 55);
  CU_ASSERT_TRUE (has_pattern (c, 0, 4096, 11));
  pc_cache_close (c);

  /* Both slots bad: refused, clearly. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_CTRL_OFF + newest * PC_CTRL_SLOT + 20,
                                0x80), 0);
  tu_log_clear ();
  errno = 0;
  c = reopen (p);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("control record"));
  pc_cache_close (c);
  unlink (p);
}

/* pc_gen_store / pc_gen_load on a bare mapping. */
static void
test_gen_slots_unit (void)
{
  const char *p = fresh ("gen-unit");
  struct pc_pmem *pm;
  uint8_t *e;
  struct pc_gen_slot s;
  uint64_t gen;
  uint32_t seq, sseq;
  int created, slot, i;

  CU_ASSERT_EQUAL_FATAL (pc_pmem_open (p, 65536, 1, &pm, &created), 0);
  e = (uint8_t *) pc_pmem_base (pm) + PC_SEGTAB_OFF;
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), -1);

  sseq = 0;
  slot = 1;
  pc_gen_store (pm, e, 7, &sseq, &slot);
  CU_ASSERT_EQUAL (slot, 0);
  CU_ASSERT_EQUAL (sseq, 1);
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), 0);
  CU_ASSERT_EQUAL (gen, 7);
  CU_ASSERT_EQUAL (seq, 1);
  CU_ASSERT_TRUE (pc_gen_agree (e));
  pc_gen_store (pm, e, 8, &sseq, &slot);
  CU_ASSERT_EQUAL (slot, 1);
  CU_ASSERT (pc_gen_load (e, &gen, &seq) >= 0);
  CU_ASSERT_EQUAL (gen, 8);
  /* Both slots hold the newest record. */
  CU_ASSERT_TRUE (pc_gen_agree (e));

  /* One slot corrupt: the other is used, whichever it is, and it holds
   * the newest generation, never the one before.
   */
  e[sizeof s + 9] ^= 1;                 /* slot 1's gen */
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), 0);
  CU_ASSERT_EQUAL (gen, 8);
  CU_ASSERT_FALSE (pc_gen_agree (e));
  e[sizeof s + 9] ^= 1;
  e[2] ^= 1;                            /* slot 0's crc */
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), 1);
  CU_ASSERT_EQUAL (gen, 8);
  e[2] ^= 1;

  /* An update cut off after its first store: that store is newer. */
  s = (struct pc_gen_slot) { .seq = sseq + 1, .gen = 9 };
  s.crc = pc_rec_crc (&s, sizeof s);
  memcpy (e + (slot ^ 1) * sizeof s, &s, sizeof s);
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), slot ^ 1);
  CU_ASSERT_EQUAL (gen, 9);
  /* ... torn in its first store: the update did not happen. */
  e[(slot ^ 1) * sizeof s + 9] ^= 1;
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), slot);
  CU_ASSERT_EQUAL (gen, 8);

  /* Wrap-around of the 32-bit seq: the newest always wins. */
  s = (struct pc_gen_slot) { .seq = UINT32_MAX - 2, .gen = 100 };
  s.crc = pc_rec_crc (&s, sizeof s);
  memcpy (e, &s, sizeof s);
  memset (e + sizeof s, 0, sizeof s);
  CU_ASSERT_EQUAL (pc_gen_load (e, &gen, &seq), 0);
  sseq = seq;
  slot = 0;
  for (i = 1; i <= 6; i++) {
    pc_gen_store (pm, e, 100 + i, &sseq, &slot);
    CU_ASSERT (pc_gen_load (e, &gen, &seq) >= 0);
    CU_ASSERT_EQUAL (gen, 100u + i);
    CU_ASSERT_EQUAL (seq, (uint32_t) (UINT32_MAX - 2 + i));
    CU_ASSERT_TRUE (pc_gen_agree (e));
  }
  CU_ASSERT_TRUE (pc_seq32_newer (0, UINT32_MAX));
  CU_ASSERT_FALSE (pc_seq32_newer (UINT32_MAX, 0));
  pc_pmem_close (pm);
  unlink (p);
}

/* Generation records of a real cache. */
static void
test_gen_slots_cache (void)
{
  const char *p = fresh ("gen");
  uint64_t ent = PC_SEGTAB_OFF + 3 * PC_SEGTAB_ENTRY, gen;
  struct pc_segs *s;
  pc_cache *c;
  int slot;

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  s = &c->segs;
  /* Bump segment 3 twice, as reuse would. */
  slot = s->seg[3].gen_slot;
  pc_gen_store (c->pm, s->table + 3 * PC_SEGTAB_ENTRY, 1, &s->seg[3].gen_seq,
                &slot);
  pc_gen_store (c->pm, s->table + 3 * PC_SEGTAB_ENTRY, 2, &s->seg[3].gen_seq,
                &slot);
  pc_cache_close (c);

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->segs.seg[3].gen, 2);
  slot = c->segs.seg[3].gen_slot;
  pc_cache_close (c);

  /* Either slot corrupt: the newest generation all the same, and the
   * open (bound) writes the bad slot again.
   */
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + slot * sizeof (struct pc_gen_slot)
                                + 8, 4), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  gen = c->segs.seg[3].gen;
  CU_ASSERT_EQUAL (gen, 2);
  CU_ASSERT_TRUE (pc_gen_agree (c->segs.table + 3 * PC_SEGTAB_ENTRY));
  pc_cache_close (c);
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + (slot ^ 1) *
                                sizeof (struct pc_gen_slot) + 8, 4), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->segs.seg[3].gen, 2);
  pc_cache_close (c);

  /* Both: refused, naming the segment. */
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + 8, 4), 0);
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + sizeof (struct pc_gen_slot) + 8, 4),
                   0);
  tu_log_clear ();
  c = reopen (p);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("generation record of segment 3"));
  pc_cache_close (c);
  unlink (p);
}

/* ------------------------------------------------------------------ */
/* Replay. */

static const struct { uint64_t off; uint32_t len; } spots[] = {
  { 0, 4096 },
  { 5000, 700 },
  { 3 * TU_MIB, 128 * 1024 },
  { 4 * TU_MIB - 2048, 4096 },          /* crosses a stripe */
  { 20 * TU_MIB + 1, TU_MIB + 3 },      /* longer than a segment */
  { BSIZE - 512, 512 },                 /* last sector */
};
#define NSPOTS (sizeof spots / sizeof spots[0])

static void
test_replay_basic (void)
{
  const char *p = fresh ("replay");
  pc_cache *c;
  uint64_t before;
  size_t i;

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (i = 0; i < NSPOTS; i++)
    wr (c, spots[i].off, spots[i].len, 100 + i);
  flush (c);
  pc_cache_close (c);

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  before = tu_mem_preads (ee);
  for (i = 0; i < NSPOTS; i++) {
    CU_ASSERT_EQUAL (map_type (c, spots[i].off, spots[i].len), PC_MAP_DATA);
    CU_ASSERT_TRUE (has_pattern (c, spots[i].off, spots[i].len, 100 + i));
  }
  CU_ASSERT_EQUAL (tu_mem_preads (ee), before);    /* all hits */
  CU_ASSERT_TRUE (is_uncached (c, 8192, 4096));
  CU_ASSERT_TRUE (is_uncached (c, 4 * TU_MIB + 2048, 4096));
  pc_cache_close (c);
  unlink (p);
}

/* Unflushed writes: a kset committed because it was full survives a
 * crash; the keys still in RAM do not.
 */
static void
test_replay_full_kset (void)
{
  const char *p = fresh ("fullkset"), *img = fresh ("fullkset.crash");
  pc_cache *c;
  unsigned i;

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* 130 keys in stripe 0: one kbuf, committed at 128. */
  for (i = 0; i < PC_KSET_MAX_KEYS + 2; i++)
    wr (c, i * 8192, 4096, 200);
  CU_ASSERT_EQUAL (c->log.head.seq, 2);
  CU_ASSERT_EQUAL (tu_file_copy (p, img), 0);       /* crash now */
  pc_cache_close (c);

  c = reopen (img);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (i = 0; i < PC_KSET_MAX_KEYS; i++)
    if (!has_pattern (c, i * 8192, 4096, 200)) {
      CU_FAIL ("write of a full kset lost");
      break;
    }
  CU_ASSERT_TRUE (is_uncached (c, PC_KSET_MAX_KEYS * 8192, 4096));
  CU_ASSERT_TRUE (is_uncached (c, (PC_KSET_MAX_KEYS + 1) * 8192, 4096));
  pc_cache_close (c);

  /* A clean close commits them all. */
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (has_pattern (c, (PC_KSET_MAX_KEYS + 1) * 8192, 4096, 200));
  pc_cache_close (c);
  unlink (p);
  unlink (img);
}

/* A flush puts every key buffer in as few ksets as hold them, never a
 * buffer split between two; after a crash, replay finds every record.
 */
static void
test_flush_merges_ksets (void)
{
  const char *p = fresh ("merge"), *img = fresh ("merge.crash");
  const uint64_t stripe = UINT64_C (1) << PC_STRIPE_SHIFT;
  pc_cache *c;
  uint64_t seq;
  unsigned i;

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* One write in each stripe: one key in each of the PC_NKBUFS buffers. */
  CU_ASSERT_EQUAL_FATAL (BSIZE / stripe, PC_NKBUFS);
  seq = c->log.head.seq;
  for (i = 0; i < PC_NKBUFS; i++)
    wr (c, i * stripe, 4096, 300 + i);
  flush (c);
  CU_ASSERT_EQUAL (c->log.head.seq, seq + 1);
  /* 100 keys in each of two buffers: 200 do not fit one kset. */
  seq = c->log.head.seq;
  for (i = 0; i < 100; i++) {
    wr (c, 8192 + i * 8192, 4096, 400);
    wr (c, stripe + 8192 + i * 8192, 4096, 401);
  }
  flush (c);
  CU_ASSERT_EQUAL (c->log.head.seq, seq + 2);
  CU_ASSERT_EQUAL (tu_file_copy (p, img), 0);       /* crash now */
  pc_cache_close (c);

  c = reopen (img);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (i = 0; i < PC_NKBUFS; i++)
    CU_ASSERT_TRUE (has_pattern (c, i * stripe, 4096, 300 + i));
  for (i = 0; i < 100; i++)
    if (!has_pattern (c, 8192 + i * 8192, 4096, 400) ||
        !has_pattern (c, stripe + 8192 + i * 8192, 4096, 401)) {
      CU_FAIL ("a flushed write lost");
      break;
    }
  pc_cache_close (c);
  unlink (p);
  unlink (img);
}

#define KA 0
#define KB (64 * 1024)
#define KC (128 * 1024)

/* Three flush epochs, one kset each; returns the ksets found. */
static size_t
three_ksets (const char *p, struct kinfo *k)
{
  pc_cache *c;
  size_t n;

  c = reopen (p);
  if (!c)
    return 0;
  wr (c, KA, 4096, 301);
  flush (c);
  wr (c, KB, 4096, 302);
  flush (c);
  wr (c, KC, 4096, 303);
  flush (c);
  n = walk_log (c, k, 8);
  pc_cache_close (c);
  return n;
}

/* Kset 2 of 3 is bad.  Kset 3 proves it is damage, not a torn commit:
 * a strict open refuses rather than silently drop kset 3's data; a
 * lenient one ends the log at kset 2.
 */
static void
check_only_first (const char *p)
{
  pc_cache *c = reopen (p);

  CU_ASSERT_PTR_NULL (c);
  if (c)
    pc_cache_close (c);
  c = reopen_lenient (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (has_pattern (c, KA, 4096, 301));
  CU_ASSERT_TRUE (is_uncached (c, KB, 4096));
  CU_ASSERT_TRUE (is_uncached (c, KC, 4096));
  CU_ASSERT_EQUAL (c->log.head.seq, 2);
  pc_cache_close (c);
}

static void
test_kset_crc_ends_replay (void)
{
  const char *p = fresh ("ksetcrc");
  struct kinfo k[8];

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (k[0].h.seq, 1);
  CU_ASSERT_EQUAL (k[1].h.seq, 2);
  CU_ASSERT_EQUAL (k[2].h.seq, 3);
  CU_ASSERT_EQUAL (k[1].h.nkeys, 1);
  CU_ASSERT_TRUE (k[1].h.epoch > k[0].h.epoch);
  /* One byte of the key (its unused data_crc field): only the kset CRC
   * can tell.
   */
  CU_ASSERT_EQUAL (tu_file_xor (p, k[1].foff + sizeof (struct pc_kset_hdr) +
                                offsetof (struct pc_key_rec, data_crc), 1), 0);
  check_only_first (p);
  unlink (p);
}

/* A commit torn by a crash: the last kset's key only half there. */
static void
test_kset_torn_tail (void)
{
  const char *p = fresh ("ksettorn");
  uint8_t zero[16] = { 0 };
  struct kinfo k[8];
  pc_cache *c;

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (tu_file_write (p, k[2].foff + sizeof (struct pc_kset_hdr)
                                  + 16, zero, sizeof zero), 0);
  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (has_pattern (c, KA, 4096, 301));
  CU_ASSERT_TRUE (has_pattern (c, KB, 4096, 302));
  CU_ASSERT_TRUE (is_uncached (c, KC, 4096));
  CU_ASSERT_EQUAL (c->log.head.seq, 3);
  pc_cache_close (c);
  unlink (p);
}

/* Sequence: a valid kset whose seq is not the next one is not part of
 * the log (a stale kset from an earlier use of the segment).
 */
static void
test_kset_seq_ends_replay (void)
{
  const char *p = fresh ("ksetseq");
  struct kinfo k[8];
  struct pc_kset_hdr h;
  uint8_t buf[PC_KSET_BYTES (1)];

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (tu_file_read (p, k[1].foff, buf, sizeof buf), 0);
  memcpy (&h, buf, sizeof h);
  h.seq = 1;                          /* from "an earlier use" */
  memcpy (buf, &h, sizeof h);
  h.crc = pc_kset_crc (file_seed (p), (struct pc_kset_hdr *) buf);
  memcpy (buf, &h, sizeof h);
  CU_ASSERT_EQUAL (tu_file_write (p, k[1].foff, buf, sizeof buf), 0);
  check_only_first (p);
  unlink (p);
}

/* The kset CRC is salted with the cache's uuid: a kset sealed with a
 * plain CRC32C (as from another cache) is not accepted.
 */
static void
test_kset_salt (void)
{
  const char *p = fresh ("ksetsalt");
  struct kinfo k[8];
  struct pc_kset_hdr h;
  uint8_t buf[PC_KSET_BYTES (1)];

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (tu_file_read (p, k[1].foff, buf, sizeof buf), 0);
  memcpy (&h, buf, sizeof h);
  CU_ASSERT_EQUAL (h.crc, pc_kset_crc (file_seed (p),
                                       (struct pc_kset_hdr *) buf));
  h.crc = pc_kset_crc (0, (struct pc_kset_hdr *) buf);
  memcpy (buf, &h, sizeof h);
  CU_ASSERT_EQUAL (tu_file_write (p, k[1].foff, buf, sizeof buf), 0);
  check_only_first (p);
  unlink (p);
}

/* After replay stopped at a bad kset, the ksets behind it must stay
 * dead.  Here kset 2 is damaged, so the write in kset 3 (C at KC) is
 * lost at the next open.  The client then writes D over KC: one key,
 * so its kset lands exactly where kset 2 was, with seq 2, and the next
 * position the log expects (seq 3) is where the old kset 3 still lies.
 * Newest wins: after another restart KC must read D, never C.
 */
static void
test_truncated_log_stays_truncated (void)
{
  const char *p = fresh ("ksetdead");
  struct kinfo k[8];
  pc_cache *c;

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (tu_file_xor (p, k[1].foff + sizeof (struct pc_kset_hdr) +
                                offsetof (struct pc_key_rec, data_crc), 1), 0);
  check_only_first (p);

  c = reopen_lenient (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  wr (c, KC, 4096, 304);
  flush (c);
  CU_ASSERT_TRUE (has_pattern (c, KC, 4096, 304));
  CU_ASSERT_EQUAL (c->log.head.seq, 3);
  pc_cache_close (c);

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (has_pattern (c, KA, 4096, 301));
  CU_ASSERT_TRUE (is_uncached (c, KB, 4096));
  /* The log must end after D's kset, not run on into the old kset 3. */
  CU_ASSERT_EQUAL (c->log.head.seq, 3);
  CU_ASSERT_TRUE (has_pattern (c, KC, 4096, 304));
  CU_ASSERT_FALSE (has_pattern (c, KC, 4096, 303));
  pc_cache_close (c);
  unlink (p);
}

/* ------------------------------------------------------------------ */
/* Overlaps through the engine, before and after replay. */

#define OV_REGION (64 * 1024)
#define OV_BASE (16 * 1024)             /* start of the case in its region */
#define OV_MAXSTEPS 3

struct ov_step { char kind; int32_t start; uint32_t len; };
static const struct ov_step ov_cases[][OV_MAXSTEPS] = {
  { { 'w', 0, 16384 }, { 'w', 4096, 8192 } },             /* middle */
  { { 'w', 0, 16384 }, { 'w', 0, 4096 } },                /* front */
  { { 'w', 0, 16384 }, { 'w', -4096, 8192 } },            /* over front */
  { { 'w', 0, 16384 }, { 'w', 12288, 4096 } },            /* back */
  { { 'w', 0, 16384 }, { 'w', 12288, 8192 } },            /* over back */
  { { 'w', 0, 16384 }, { 'w', 0, 16384 } },               /* whole */
  { { 'w', 0, 16384 }, { 'w', -4096, 24576 } },           /* superset */
  { { 'w', 0, 16384 }, { 'z', 4096, 4096 } },             /* zero middle */
  { { 'w', 0, 16384 }, { 't', 8192, 4096 } },             /* trim middle */
  { { 'w', 0, 16384 }, { 'z', 2048, 16384 } },            /* zero over back */
  { { 'z', 0, 16384 }, { 'w', 6144, 1024 } },             /* data in zero */
  { { 't', 0, 16384 }, { 'w', 0, 3072 } },                /* data on trim */
  { { 'w', 0, 16384 }, { 'w', 4096, 8192 }, { 'w', 6144, 8192 } },
  { { 'w', 0, 8192 }, { 'w', 8192, 8192 }, { 'w', 4096, 8192 } },
  { { 'w', 0, 16384 }, { 'w', 1000, 1 }, { 'w', 5003, 511 } },
  { { 'w', 0, 16384 }, { 'z', 0, 16384 }, { 'w', 16383, 2 } },
};
#define OV_NCASES (sizeof ov_cases / sizeof ov_cases[0])
/* Variant 0 (a flush between steps) at 1 MiB, variant 1 (all in one
 * kset) across the stripe boundary at 4 MiB.
 */
static const uint64_t ov_area[2] = { TU_MIB, 4 * TU_MIB - 8 * OV_REGION };
#define OV_LEN (OV_NCASES * OV_REGION)

struct ov_model {
  uint8_t data[OV_LEN];
  uint8_t type[OV_LEN];
};

static void
ov_apply (pc_cache *c, struct ov_model *m, uint64_t area, size_t ci,
          unsigned si)
{
  const struct ov_step *s = &ov_cases[ci][si];
  uint64_t rel = ci * OV_REGION + OV_BASE + s->start;
  uint64_t off = area + rel;
  uint32_t seed = 1000 + ci * 10 + si;
  int err = 0;

  switch (s->kind) {
  case 'w': {
    uint8_t *b = malloc (s->len);
    tu_fill (b, s->len, off, seed);
    CU_ASSERT_EQUAL (pc_write (c, b, s->len, off, 0, &err), 0);
    memcpy (m->data + rel, b, s->len);
    memset (m->type + rel, PC_MAP_DATA, s->len);
    free (b);
    break;
  }
  case 'z':
    CU_ASSERT_EQUAL (pc_zero (c, s->len, off, 0, &err), 0);
    memset (m->data + rel, 0, s->len);
    memset (m->type + rel, PC_MAP_ZERO, s->len);
    break;
  case 't':
    CU_ASSERT_EQUAL (pc_trim (c, s->len, off, 0, &err), 0);
    memset (m->data + rel, 0, s->len);
    memset (m->type + rel, PC_MAP_ZERO, s->len);
    break;
  default:
    break;
  }
}

static void
ov_check (pc_cache *c, const struct ov_model *m, uint64_t area,
          const char *when)
{
  uint8_t *b = malloc (OV_LEN);
  struct tu_map map;
  size_t ci, i;
  int err = 0;

  /* Map first: reads must not change it (cache_on_read is off). */
  CU_ASSERT_EQUAL (tu_map_collect (c, area, OV_LEN, &map), 0);
  CU_ASSERT_FALSE (map.overflow);
  for (i = 0; i < OV_LEN; ) {
    size_t j = i;
    while (j < OV_LEN && m->type[j] == m->type[i])
      j++;
    if (tu_map_type (&map, area + i, j - i) != m->type[i]) {
      fprintf (stderr, "\n%s: map of [%zu,%zu) is not %d\n", when, i, j,
               m->type[i]);
      CU_FAIL ("pc_map disagrees with the model");
      break;
    }
    i = j;
  }

  CU_ASSERT_EQUAL_FATAL (pc_read (c, b, OV_LEN, area, &eeb, &err), 0);
  for (ci = 0; ci < OV_NCASES; ci++) {
    size_t r = ci * OV_REGION;
    if (memcmp (b + r, m->data + r, OV_REGION) != 0) {
      for (i = r; b[i] == m->data[i]; i++)
        ;
      fprintf (stderr, "\n%s: case %zu differs at +%zu\n", when, ci,
               i - r - OV_BASE);
      CU_FAIL ("data differs from the model");
    }
  }
  free (b);
}

static void
test_overlaps (void)
{
  const char *p = fresh ("overlap");
  struct ov_model *m = malloc (2 * sizeof *m);
  struct pc_config cfg;
  pc_cache *c;
  unsigned si, v;
  size_t ci;

  memset (m[0].data, 0xEE, OV_LEN);
  memset (m[0].type, PC_MAP_UNCACHED, OV_LEN);
  m[1] = m[0];
  tu_config (&cfg, p, CSIZE);
  cfg.cache_on_read = 0;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* Variant 0: each step in its own kset (flush between steps). */
  for (si = 0; si < OV_MAXSTEPS; si++) {
    for (ci = 0; ci < OV_NCASES; ci++)
      if (ov_cases[ci][si].kind)
        ov_apply (c, &m[0], ov_area[0], ci, si);
    flush (c);
  }
  /* Variant 1: all steps of a case in one kset. */
  for (ci = 0; ci < OV_NCASES; ci++)
    for (si = 0; si < OV_MAXSTEPS; si++)
      if (ov_cases[ci][si].kind)
        ov_apply (c, &m[1], ov_area[1], ci, si);
  flush (c);
  for (v = 0; v < 2; v++)
    ov_check (c, &m[v], ov_area[v], v ? "same kset, live" : "ksets, live");
  pc_cache_close (c);

  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (v = 0; v < 2; v++)
    ov_check (c, &m[v], ov_area[v],
              v ? "same kset, replayed" : "ksets, replayed");
  pc_cache_close (c);
  free (m);
  unlink (p);
}

/* ------------------------------------------------------------------ */
/* Generations. */

#define GX (64 * 1024)                  /* 1 MiB: fills segment 1 */
#define GY (4 * TU_MIB)
#define GZ (8 * TU_MIB)
#define GW (12 * TU_MIB)

/* Write X (one full data segment) and Y, write back, reclaim. */
static pc_cache *
gen_setup (const char *p, struct tu_mem *mem, uint32_t *xseg)
{
  struct pc_backend bg = tu_mem_backend (mem);
  struct pc_config cfg;
  struct pc_tree *t;
  struct pc_key *k;
  pc_cache *c;
  int err = 0;

  tu_config (&cfg, p, CSIZE);
  cfg.gc_percent = 0;
  c = tu_open (&cfg, BSIZE);
  if (!c)
    return NULL;
  CU_ASSERT_EQUAL (pc_cache_start (c, &bg), 0);
  wr (c, GX, TU_MIB, 401);
  wr (c, GY, 4096, 402);                /* retires X's segment */
  t = pc_index_tree (&c->index, GX);
  k = pc_tree_find (t, GX, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  CU_ASSERT_EQUAL (k->len, TU_MIB);
  *xseg = k->seg;
  CU_ASSERT_EQUAL (c->segs.seg[*xseg].gen, 0);
  CU_ASSERT_EQUAL (pc_cache_drain (c, &err), 0);
  /* Stop the workers: nothing may change behind the checks. */
  pc_cache_stop (c);
  pc_gc_run (c, 1);
  return c;
}

static void
test_generation_reclaim (void)
{
  const char *p = fresh ("gen-reclaim");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend fg = tu_mem_backend (mem);
  uint8_t *b = malloc (TU_MIB);
  uint64_t gen, before;
  uint32_t seq, xs;
  pc_cache *c;
  int err = 0;

  c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* X's segment was reclaimed: its generation went up, on media too. */
  CU_ASSERT_EQUAL (c->segs.seg[xs].gen, 1);
  CU_ASSERT_EQUAL (c->segs.seg[xs].role, PC_SEG_FREE);
  CU_ASSERT (pc_gen_load (c->segs.table + xs * PC_SEGTAB_ENTRY, &gen, &seq)
             >= 0);
  CU_ASSERT_EQUAL (gen, 1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + GX, TU_MIB, GX, 401), -1);

  /* The index entry is stale: the read goes to the backend. */
  CU_ASSERT_EQUAL (map_type (c, GX, TU_MIB), PC_MAP_UNCACHED);
  before = tu_mem_preads (mem);
  CU_ASSERT_EQUAL (pc_read (c, b, TU_MIB, GX, &fg, &err), 0);
  CU_ASSERT_EQUAL (tu_check (b, TU_MIB, GX, 401), -1);
  CU_ASSERT_EQUAL (tu_mem_preads (mem), before + 1);
  /* Y's segment is still the data head's: still a hit. */
  before = tu_mem_preads (mem);
  CU_ASSERT_EQUAL (pc_read (c, b, 4096, GY, &fg, &err), 0);
  CU_ASSERT_EQUAL (tu_check (b, 4096, GY, 402), -1);
  CU_ASSERT_EQUAL (tu_mem_preads (mem), before);
  pc_cache_close (c);
  tu_mem_free (mem);
  free (b);
  unlink (p);
}

/* Write a kset with the given keys at the log head of an idle cache, as
 * a commit would.
 */
static void
craft_kset (pc_cache *c, const struct pc_key_rec *keys, uint16_t n)
{
  uint8_t buf[PC_KSET_BYTES (PC_KSET_MAX_KEYS)];
  struct pc_kset_hdr *h = (struct pc_kset_hdr *) buf;
  struct pc_log *lg = &c->log;

  CU_ASSERT_FATAL (lg->head.off + pc_kset_span (n) + PC_KSET_ALIGN
                   <= c->seg_size);
  memset (buf, 0, sizeof buf);
  h->magic = PC_KSET_MAGIC;
  h->seq = lg->head.seq;
  h->epoch = lg->epoch;
  h->nkeys = n;
  memcpy (h + 1, keys, n * sizeof *keys);
  h->crc = pc_kset_crc (c->geom.seed, h);
  pc_pmem_copy (c->pm, pc_seg_addr (c, lg->head.seg, lg->head.off), buf,
                PC_KSET_BYTES (n));
  lg->head.off += pc_kset_span (n);
  lg->head.seq++;
  atomic_store (&lg->head_seq, lg->head.seq);
}

/* A key record carrying an old generation is skipped at replay. */
static void
test_generation_stale_record (void)
{
  const char *p = fresh ("gen-stale");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_key_rec keys[2];
  uint64_t crafted;
  uint32_t xs;
  pc_cache *c;

  c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  flush (c);
  memset (keys, 0, sizeof keys);
  /* A live zero key, to show the kset was replayed ... */
  keys[0] = (struct pc_key_rec) { .off = GZ, .len = 4096,
                                  .flags = PC_KF_DIRTY | PC_KF_ZERO };
  /* ... and a data key into X's segment at its old generation. */
  keys[1] = (struct pc_key_rec) { .off = GW, .len = 4096, .seg = xs,
                                  .seg_off = 0, .gen = 0,
                                  .flags = PC_KF_DIRTY };
  crafted = c->log.head.seq;
  craft_kset (c, keys, 2);
  pc_cache_close (c);

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->log.head.seq, crafted + 1);
  CU_ASSERT_EQUAL (c->segs.seg[xs].gen, 1);
  /* Nothing live points into X's segment. */
  CU_ASSERT_EQUAL (c->segs.seg[xs].role, PC_SEG_FREE);
  CU_ASSERT_EQUAL (pc_seg_refs (&c->segs, xs), 0);
  CU_ASSERT_EQUAL (map_type (c, GZ, 4096), PC_MAP_ZERO);
  CU_ASSERT_EQUAL (map_type (c, GW, 4096), PC_MAP_UNCACHED);
  CU_ASSERT_TRUE (is_uncached (c, GW, 4096));
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* A read that meets an uncached gap and then a stale key (its segment
 * reclaimed) must work.  Run in a child: a crash there (use-after-free
 * under ASan) fails this test and not the whole program.
 */
struct gap_stale { pc_cache *c; struct tu_mem *mem; };

static int
gap_stale_read (void *arg)
{
  struct gap_stale *g = arg;
  struct pc_backend fg = tu_mem_backend (g->mem);
  uint32_t len = GX + TU_MIB;
  uint8_t *b = malloc (len);
  int err = 0, r = 0;

  if (pc_read (g->c, b, len, 0, &fg, &err) != 0)
    r = 2;
  else if (tu_check_byte (b, GX, 0xEE) != -1 ||
           tu_check (b + GX, TU_MIB, GX, 401) != -1)
    r = 3;
  free (b);
  return r;
}

static void
test_read_gap_then_stale (void)
{
  const char *p = fresh ("gen-gap");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct gap_stale g = { NULL, mem };
  uint32_t xs;
  int st;

  g.c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (g.c);
  CU_ASSERT_EQUAL (map_type (g.c, 0, GX), PC_MAP_UNCACHED);
  CU_ASSERT_EQUAL (map_type (g.c, GX, TU_MIB), PC_MAP_UNCACHED);
  st = tu_in_child (gap_stale_read, &g);
  if (st != 0)
    fprintf (stderr, "\nchild exit status %d\n", st);
  CU_ASSERT_EQUAL (st, 0);
  pc_cache_close (g.c);
  tu_mem_free (mem);
  unlink (p);
}

/* GC must treat a record that replay found stale as replay did: it
 * took no segment reference for it, so GC must not drop one.
 *
 * Log: K1 = {fill, D} (D in segment xs at generation 1), K2 = crafted
 * {zero, stale record for xs at generation 0}, K3 = {E} (E in xs), one
 * flush epoch each.  After replay xs holds two references (D, E).
 * Writeback gets K1 and K2 down but not yet K3 (E is dirty), and GC
 * reclaims K1 and K2: xs must keep E's reference and E must still read
 * from the cache, since the backend does not have it.
 */
static void
test_gc_skips_stale_record (void)
{
  const char *p = fresh ("gen-gc");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  struct pc_key_rec keys[2];
  struct pc_key *key;
  uint64_t k3seq;
  uint32_t xs;
  pc_cache *c;

  c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* Fill the head's segment so that the next write takes xs. */
  wr (c, 16 * TU_MIB, (uint32_t) (c->seg_size - c->heads[0].off), 601);
  wr (c, 20 * TU_MIB, 4096, 602);                       /* D */
  key = pc_tree_find (pc_index_tree (&c->index, 20 * TU_MIB), 20 * TU_MIB, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (key);
  CU_ASSERT_EQUAL_FATAL (key->seg, xs);
  CU_ASSERT_EQUAL (key->gen, 1);
  flush (c);                                            /* K1 */
  memset (keys, 0, sizeof keys);
  keys[0] = (struct pc_key_rec) { .off = GZ, .len = 4096,
                                  .flags = PC_KF_DIRTY | PC_KF_ZERO };
  keys[1] = (struct pc_key_rec) { .off = GW, .len = 4096, .seg = xs,
                                  .seg_off = 0, .gen = 0,
                                  .flags = PC_KF_DIRTY };
  craft_kset (c, keys, 2);                              /* K2 */
  c->log.epoch++;                                       /* as a flush */
  k3seq = c->log.head.seq;
  wr (c, 24 * TU_MIB, 4096, 603);                       /* E */
  flush (c);                                            /* K3 */
  pc_cache_close (c);

  c = reopen (p);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->log.head.seq, k3seq + 1);
  CU_ASSERT_EQUAL (c->segs.seg[xs].role, PC_SEG_DATA);
  CU_ASSERT_EQUAL (pc_seg_refs (&c->segs, xs), 2);
  CU_ASSERT_TRUE (has_pattern (c, 24 * TU_MIB, 4096, 603));
  /* Write back K1, then K2; K3 stays dirty. */
  pc_cache_set_backend (c, &bg);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL_FATAL (c->ctrl.dirty_tail.seq, k3seq);
  CU_ASSERT_EQUAL (tu_check_byte (mem->buf + 24 * TU_MIB, 4096, 0xEE), -1);
  pc_gc_run (c, 1);
  CU_ASSERT_EQUAL (c->ctrl.key_tail.seq, k3seq);
  CU_ASSERT_EQUAL (pc_seg_refs (&c->segs, xs), 1);
  CU_ASSERT_EQUAL (c->segs.seg[xs].role, PC_SEG_DATA);
  CU_ASSERT_EQUAL (c->segs.seg[xs].gen, 1);
  CU_ASSERT_TRUE (has_pattern (c, 24 * TU_MIB, 4096, 603));
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* data_crc: a payload byte that changed on media is refused at open. */
static void
test_data_crc (void)
{
  const char *p = fresh ("datacrc");
  struct pc_config cfg;
  struct pc_key *k;
  uint64_t foff;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
  cfg.data_crc = 1;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (c->data_crc);
  wr (c, 40960, 8192, 501);
  flush (c);
  k = pc_tree_find (pc_index_tree (&c->index, 40960), 40960, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  foff = pc_seg_addr (c, k->seg, k->seg_off) - c->base;
  pc_cache_close (c);

  cfg.data_crc = PC_UNSET;      /* as formatted */
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (c->data_crc);
  CU_ASSERT_TRUE (has_pattern (c, 40960, 8192, 501));
  pc_cache_close (c);

  CU_ASSERT_EQUAL (tu_file_xor (p, foff + 5000, 0x01), 0);
  tu_log_clear ();
  errno = 0;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("checksum"));
  pc_cache_close (c);
  unlink (p);
}

/* ------------------------------------------------------------------ */

int
main (void)
{
  CU_pSuite s;
  int fails;

  alarm (120);                  /* a hang is a failure */
  tu_log_install ();
  if (!tu_dir_create ())
    return 1;
  ee = tu_mem_new (BSIZE, 0xEE);
  eeb = tu_mem_backend (ee);

  if (CU_initialize_registry () != CUE_SUCCESS)
    return 1;
  s = CU_add_suite ("meta", NULL, NULL);
  if (!s ||
      !CU_add_test (s, "format and reopen", test_format_reopen) ||
      !CU_add_test (s, "reopen with other parameters", test_reopen_mismatch) ||
      !CU_add_test (s, "zero file refused", test_foreign_zero) ||
      !CU_add_test (s, "random file refused", test_foreign_random) ||
      !CU_add_test (s, "format=force", test_format_force) ||
      !CU_add_test (s, "wrong format version", test_bad_version) ||
      !CU_add_test (s, "superblock replica", test_sb_replica) ||
      !CU_add_test (s, "control slots (unit)", test_ctrl_slots_unit) ||
      !CU_add_test (s, "control slots (cache)", test_ctrl_slots_cache) ||
      !CU_add_test (s, "generation slots (unit)", test_gen_slots_unit) ||
      !CU_add_test (s, "generation slots (cache)", test_gen_slots_cache) ||
      !CU_add_test (s, "replay", test_replay_basic) ||
      !CU_add_test (s, "replay after crash: full kset",
                    test_replay_full_kset) ||
      !CU_add_test (s, "a flush merges key buffers",
                    test_flush_merges_ksets) ||
      !CU_add_test (s, "kset CRC ends replay", test_kset_crc_ends_replay) ||
      !CU_add_test (s, "torn kset ends replay", test_kset_torn_tail) ||
      !CU_add_test (s, "kset seq ends replay", test_kset_seq_ends_replay) ||
      !CU_add_test (s, "kset CRC is salted", test_kset_salt) ||
      !CU_add_test (s, "truncated log stays truncated",
                    test_truncated_log_stays_truncated) ||
      !CU_add_test (s, "overlaps and replay", test_overlaps) ||
      !CU_add_test (s, "generation after reclaim", test_generation_reclaim) ||
      !CU_add_test (s, "stale record skipped at replay",
                    test_generation_stale_record) ||
      !CU_add_test (s, "read: gap then stale key", test_read_gap_then_stale) ||
      !CU_add_test (s, "GC and stale records", test_gc_skips_stale_record) ||
      !CU_add_test (s, "data_crc", test_data_crc)) {
    CU_cleanup_registry ();
    return 1;
  }
  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  fails = CU_get_number_of_failures () != 0 || CU_get_error () != CUE_SUCCESS;
  CU_cleanup_registry ();
  tu_mem_free (ee);
  tu_dir_remove ();
  return fails ? 1 : 0;
}
