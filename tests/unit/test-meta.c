/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the on-media records (meta.c): format, open and
 * validation of the superblock, the control record and the generation
 * records.  Replay is in test-replay.c, generations and GC in
 * test-gc.c.
 *
 * Most tests run without workers: open, bind, write, pc_flush,
 * pc_cache_close, then poke at the file and reopen.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "gc.h"
#include "writeback.h"
#include "crc.h"
#include "format.h"
#include "meta.h"
#include "testutil.h"

/* 11 segments of 1 MiB after the namespace table (64 of 8 KiB) */
#define CSIZE (12 * TU_MIB + 512 * 1024)
#define CSEGS 11u
#define CAREA (20480u + 512 * 1024)     /* seg_area_off for CSIZE */
#define BSIZE (32 * TU_MIB)


/* ------------------------------------------------------------------ */

static void
test_format_reopen (void)
{
  const char *p = tu_fresh ("fmt");
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
  CU_ASSERT_EQUAL (sb.max_exports, PC_DEFAULT_MAX_EXPORTS);
  /* The table after the segment table; the default export in slot 0. */
  CU_ASSERT_EQUAL (sb.nstab_off % 4096, 0);
  CU_ASSERT_TRUE (sb.nstab_off >= PC_SEGTAB_OFF + CSEGS * PC_SEGTAB_ENTRY);
  CU_ASSERT_EQUAL (sb.seg_area_off,
                   sb.nstab_off + PC_DEFAULT_MAX_EXPORTS * PC_NS_ENTRY);
  {
    uint8_t *all = malloc (sb.seg_area_off);
    const struct pc_ns_rec *rec;

    CU_ASSERT_FATAL (all != NULL);
    CU_ASSERT_EQUAL_FATAL (tu_file_read (p, 0, all, sb.seg_area_off), 0);
    rec = pc_fmt_ns_at (all, &sb, 0);
    CU_ASSERT_FATAL (rec != NULL);
    CU_ASSERT_EQUAL (rec->name_len, 0);
    CU_ASSERT_EQUAL (rec->size, BSIZE);
    CU_ASSERT_PTR_NULL (pc_fmt_ns_at (all, &sb, 1));
    free (all);
  }
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
  CU_ASSERT_EQUAL (tu_type_at (c, 0, BSIZE), PC_MAP_UNCACHED);
  CU_ASSERT_EQUAL (pc_read (c, buf, sizeof buf, 12345, &tu_ee, &err), 0);
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
  const char *p = tu_fresh ("mis"), *copy = tu_fresh ("mis.orig");
  struct pc_config cfg;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
  cfg.backing_id = "disk-A";
  cfg.data_crc = 0;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  tu_write (c, 0, 8192, 1);
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
  CU_ASSERT_TRUE (tu_log_has ("resized"));
  pc_cache_close (c);

  /* The right parameters still open it, data intact. */
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 0, 8192, 1));
  pc_cache_close (c);
  unlink (p);
  unlink (copy);
}

static void
refuse_foreign (const char *p, int random)
{
  const char *copy = tu_fresh ("foreign.orig");
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
  tu_write (c, 4096, 4096, 9);
  pc_cache_close (c);
  CU_ASSERT_FALSE (tu_file_same (p, copy));
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 4096, 4096, 9));
  pc_cache_close (c);
  unlink (copy);
}

static void
test_foreign_zero (void)
{
  const char *p = tu_fresh ("zeroes");

  refuse_foreign (p, 0);
  unlink (p);
}

static void
test_foreign_random (void)
{
  const char *p = tu_fresh ("random");

  refuse_foreign (p, 1);
  unlink (p);
}

static void
test_format_force (void)
{
  const char *p = tu_fresh ("force");
  struct pc_config cfg;
  pc_cache *c;
  uint8_t uuid[16];

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  memcpy (uuid, c->sb.uuid, 16);
  tu_write (c, 0, 65536, 3);
  pc_cache_close (c);

  tu_config (&cfg, p, CSIZE);
  cfg.format = PC_FORMAT_FORCE;
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  CU_ASSERT_TRUE (pc_cache_is_new (c));
  CU_ASSERT_EQUAL_FATAL (pc_cache_bind (c, BSIZE), 0);
  CU_ASSERT_NOT_EQUAL (memcmp (c->sb.uuid, uuid, 16), 0);
  CU_ASSERT_EQUAL (c->log.head.seq, 1);
  CU_ASSERT_EQUAL (tu_type_at (c, 0, BSIZE), PC_MAP_UNCACHED);
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, 0, 65536, 0xEE));
  pc_cache_close (c);

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, 0, 65536, 0xEE));
  pc_cache_close (c);
  unlink (p);
}

static void
test_bad_version (void)
{
  const char *p = tu_fresh ("version"), *copy = tu_fresh ("version.orig");
  struct pc_sb sb;
  pc_cache *c;
  char want[64];

  c = tu_reopen (p, CSIZE, BSIZE, 0);
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
  c = tu_reopen (p, CSIZE, BSIZE, 0);
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
  const char *p = tu_fresh ("sbrep");
  pc_cache *c;

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  tu_write (c, 1 << 20, 4096, 5);
  pc_cache_close (c);

  /* Copy A: one flipped bit in nsegs. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_SB_OFF + offsetof (struct pc_sb, nsegs),
                                0x10), 0);
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->nsegs, CSEGS);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 1 << 20, 4096, 5));
  pc_cache_close (c);

  /* Copy B too (its uuid): refused. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_SB_SLOT + offsetof (struct pc_sb, uuid),
                                1), 0);
  tu_log_clear ();
  errno = 0;
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("corrupt"));
  pc_cache_close (c);

  /* Repair A only: opens again. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_SB_OFF + offsetof (struct pc_sb, nsegs),
                                0x10), 0);
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL (c);
  pc_cache_close (c);
  unlink (p);
}

/* pc_ctrl_store / pc_ctrl_load on a bare mapping. */
static void
test_ctrl_slots_unit (void)
{
  const char *p = tu_fresh ("ctrl-unit");
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
  /* Torn where the changes are: dirty_tail is in the old half. */
  memcpy (base + PC_CTRL_OFF + PC_CTRL_SLOT + offsetof (struct pc_ctrl,
                                                        dirty_tail),
          save + offsetof (struct pc_ctrl, dirty_tail),
          sizeof c - offsetof (struct pc_ctrl, dirty_tail));
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
  const char *p = tu_fresh ("ctrl");
  uint8_t save[sizeof (struct pc_ctrl)];
  pc_cache *c;
  int newest, older, i;
  uint64_t seq;

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  tu_write (c, 0, 4096, 11);
  tu_flush (c);
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
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->ctrl_slot, older);
  CU_ASSERT_EQUAL (c->ctrl.seq, seq - 1);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 0, 4096, 11));
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
                                  offsetof (struct pc_ctrl, gc_percent),
                                  save + offsetof (struct pc_ctrl, gc_percent),
                                  sizeof save - offsetof (struct pc_ctrl,
                                                          gc_percent)), 0);
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->ctrl_slot, newest);
  CU_ASSERT_EQUAL (c->ctrl.seq, seq);
  CU_ASSERT_NOT_EQUAL (c->ctrl.gc_percent, 55);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 0, 4096, 11));
  pc_cache_close (c);

  /* Both slots bad: refused, clearly. */
  CU_ASSERT_EQUAL (tu_file_xor (p, PC_CTRL_OFF + newest * PC_CTRL_SLOT + 20,
                                0x80), 0);
  tu_log_clear ();
  errno = 0;
  c = tu_reopen (p, CSIZE, BSIZE, 0);
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
  const char *p = tu_fresh ("gen-unit");
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
  const char *p = tu_fresh ("gen");
  uint64_t ent = PC_SEGTAB_OFF + 3 * PC_SEGTAB_ENTRY, gen;
  struct pc_segs *s;
  pc_cache *c;
  int slot;

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  s = &c->segs;
  /* Bump segment 3 twice, as reuse would. */
  slot = s->seg[3].gen_slot;
  pc_gen_store (c->pm, s->table + 3 * PC_SEGTAB_ENTRY, 1, &s->seg[3].gen_seq,
                &slot);
  pc_gen_store (c->pm, s->table + 3 * PC_SEGTAB_ENTRY, 2, &s->seg[3].gen_seq,
                &slot);
  pc_cache_close (c);

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->segs.seg[3].gen, 2);
  slot = c->segs.seg[3].gen_slot;
  pc_cache_close (c);

  /* Either slot corrupt: the newest generation all the same, and the
   * open (bound) writes the bad slot again.
   */
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + slot * sizeof (struct pc_gen_slot)
                                + 8, 4), 0);
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  gen = c->segs.seg[3].gen;
  CU_ASSERT_EQUAL (gen, 2);
  CU_ASSERT_TRUE (pc_gen_agree (c->segs.table + 3 * PC_SEGTAB_ENTRY));
  pc_cache_close (c);
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + (slot ^ 1) *
                                sizeof (struct pc_gen_slot) + 8, 4), 0);
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->segs.seg[3].gen, 2);
  pc_cache_close (c);

  /* Both: refused, naming the segment. */
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + 8, 4), 0);
  CU_ASSERT_EQUAL (tu_file_xor (p, ent + sizeof (struct pc_gen_slot) + 8, 4),
                   0);
  tu_log_clear ();
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NULL (c);
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("generation record of segment 3"));
  pc_cache_close (c);
  unlink (p);
}

/* pc_cache_min_size is the boundary the format itself draws: a cache of
 * that size holds PC_MIN_SEGMENTS segments, 4K less is refused with an
 * error that names the file and the minimum, and makes no file.
 */
static void
test_min_size (void)
{
  static const struct { uint64_t seg; unsigned exports; } v[] = {
    { PC_MIN_SEG_SIZE, 1 }, { PC_MIN_SEG_SIZE, 0 },
    { 2 * PC_MIN_SEG_SIZE, PC_MAX_EXPORTS },
  };
  unsigned i;

  CU_ASSERT_EQUAL (pc_cache_min_size (3 << 20, 0), 0);
  CU_ASSERT_EQUAL (pc_cache_min_size (0, PC_MAX_EXPORTS + 1), 0);
  CU_ASSERT_EQUAL (pc_cache_min_size (0, 0),
                   pc_cache_min_size (PC_DEFAULT_SEG_SIZE,
                                      PC_DEFAULT_MAX_EXPORTS));
  for (i = 0; i < sizeof v / sizeof v[0]; i++) {
    uint64_t min = pc_cache_min_size (v[i].seg, v[i].exports);
    const char *p = tu_fresh ("minsize");
    struct pc_config cfg;
    pc_cache *c;
    char want[64];

    CU_ASSERT_FATAL (min > PC_MIN_SEGMENTS * v[i].seg);
    tu_config (&cfg, p, min - 4096);
    cfg.seg_size = v[i].seg;
    cfg.max_exports = v[i].exports;
    tu_log_clear ();
    errno = 0;
    c = tu_open (&cfg, BSIZE);
    CU_ASSERT_PTR_NULL (c);
    CU_ASSERT_EQUAL (errno, EINVAL);
    CU_ASSERT_TRUE (tu_log_has (p));
    snprintf (want, sizeof want, "at least %" PRIu64 " bytes", min);
    CU_ASSERT_TRUE (tu_log_has (want));
    CU_ASSERT_EQUAL (access (p, F_OK), -1);
    pc_cache_close (c);

    cfg.size = min;
    c = tu_open (&cfg, BSIZE);
    CU_ASSERT_PTR_NOT_NULL_FATAL (c);
    CU_ASSERT_EQUAL (c->nsegs, PC_MIN_SEGMENTS);
    pc_cache_close (c);
    unlink (p);
  }
}

/* A store larger than a namespace can hold (4 PiB) is refused before
 * the new cache file is formatted, and the file is not left behind;
 * one of 4 PiB is taken.
 */
static void
test_too_large (void)
{
  const char *p = tu_fresh ("toolarge");
  const uint64_t max = (uint64_t) 1 << 52;
  struct pc_config cfg;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  tu_log_clear ();
  errno = 0;
  CU_ASSERT_EQUAL (pc_cache_bind (c, max + 4096), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has ("a namespace holds at most 4 PiB"));
  CU_ASSERT_EQUAL (access (p, F_OK), -1);
  pc_cache_close (c);
  CU_ASSERT_EQUAL (access (p, F_OK), -1);

  CU_ASSERT_EQUAL_FATAL (pc_cache_open (&cfg, &c), 0);
  CU_ASSERT_EQUAL (pc_cache_bind (c, max), 0);
  CU_ASSERT_EQUAL (pc_cache_backing_size (c), max);
  pc_cache_close (c);
  CU_ASSERT_EQUAL (access (p, F_OK), 0);
  unlink (p);
}

/* ------------------------------------------------------------------ */

static const struct tu_case cases[] = {
  { "format and reopen", test_format_reopen },
  { "reopen with other parameters", test_reopen_mismatch },
  { "zero file refused", test_foreign_zero },
  { "random file refused", test_foreign_random },
  { "format=force", test_format_force },
  { "wrong format version", test_bad_version },
  { "superblock replica", test_sb_replica },
  { "control slots (unit)", test_ctrl_slots_unit },
  { "control slots (cache)", test_ctrl_slots_cache },
  { "generation slots (unit)", test_gen_slots_unit },
  { "generation slots (cache)", test_gen_slots_cache },
  { "smallest cache", test_min_size },
  { "a store too large", test_too_large },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("meta", cases, 120, BSIZE);   /* a hang is a failure */
}
