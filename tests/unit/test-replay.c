/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for replay of the key log (replay.c, kset.c): newest
 * wins, CRC and sequence checks end the log, overlapping writes come
 * back as they were, payload checksums (data_crc) are verified.
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
#include "crc.h"
#include "format.h"
#include "meta.h"
#include "testutil.h"

#define CSIZE (12 * TU_MIB)     /* 11 segments of 1 MiB */
#define BSIZE (32 * TU_MIB)


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
  const char *p = tu_fresh ("replay");
  pc_cache *c;
  uint64_t before;
  size_t i;

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (i = 0; i < NSPOTS; i++)
    tu_write (c, spots[i].off, spots[i].len, 100 + i);
  tu_flush (c);
  pc_cache_close (c);

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  before = tu_mem_preads (tu_ee_mem);
  for (i = 0; i < NSPOTS; i++) {
    CU_ASSERT_EQUAL (tu_type_at (c, spots[i].off, spots[i].len), PC_MAP_DATA);
    CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, spots[i].off, spots[i].len,
                                      100 + i));
  }
  CU_ASSERT_EQUAL (tu_mem_preads (tu_ee_mem), before);    /* all hits */
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, 8192, 4096, 0xEE));
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, 4 * TU_MIB + 2048, 4096, 0xEE));
  pc_cache_close (c);
  unlink (p);
}

/* Unflushed writes: a kset committed because it was full survives a
 * crash; the keys still in RAM do not.
 */
static void
test_replay_full_kset (void)
{
  const char *p = tu_fresh ("fullkset"), *img = tu_fresh ("fullkset.crash");
  pc_cache *c;
  unsigned i;

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* 130 keys in stripe 0: one kbuf, committed at 128. */
  for (i = 0; i < PC_KSET_MAX_KEYS + 2; i++)
    tu_write (c, i * 8192, 4096, 200);
  CU_ASSERT_EQUAL (c->log.head.seq, 2);
  CU_ASSERT_EQUAL (tu_file_copy (p, img), 0);       /* crash now */
  pc_cache_close (c);

  c = tu_reopen (img, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (i = 0; i < PC_KSET_MAX_KEYS; i++)
    if (!tu_reads_pattern (c, &tu_ee, i * 8192, 4096, 200)) {
      CU_FAIL ("write of a full kset lost");
      break;
    }
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, PC_KSET_MAX_KEYS * 8192, 4096,
                                 0xEE));
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, (PC_KSET_MAX_KEYS + 1) * 8192,
                                 4096, 0xEE));
  pc_cache_close (c);

  /* A clean close commits them all. */
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, (PC_KSET_MAX_KEYS + 1) * 8192,
                                    4096, 200));
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
  const char *p = tu_fresh ("merge"), *img = tu_fresh ("merge.crash");
  const uint64_t stripe = UINT64_C (1) << PC_STRIPE_SHIFT;
  pc_cache *c;
  uint64_t seq;
  unsigned i;

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* One write in each stripe: one key in each of the PC_NKBUFS buffers. */
  CU_ASSERT_EQUAL_FATAL (BSIZE / stripe, PC_NKBUFS);
  seq = c->log.head.seq;
  for (i = 0; i < PC_NKBUFS; i++)
    tu_write (c, i * stripe, 4096, 300 + i);
  tu_flush (c);
  CU_ASSERT_EQUAL (c->log.head.seq, seq + 1);
  /* 100 keys in each of two buffers: 200 do not fit one kset. */
  seq = c->log.head.seq;
  for (i = 0; i < 100; i++) {
    tu_write (c, 8192 + i * 8192, 4096, 400);
    tu_write (c, stripe + 8192 + i * 8192, 4096, 401);
  }
  tu_flush (c);
  CU_ASSERT_EQUAL (c->log.head.seq, seq + 2);
  CU_ASSERT_EQUAL (tu_file_copy (p, img), 0);       /* crash now */
  pc_cache_close (c);

  c = tu_reopen (img, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  for (i = 0; i < PC_NKBUFS; i++)
    CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, i * stripe, 4096, 300 + i));
  for (i = 0; i < 100; i++)
    if (!tu_reads_pattern (c, &tu_ee, 8192 + i * 8192, 4096, 400) ||
        !tu_reads_pattern (c, &tu_ee, stripe + 8192 + i * 8192, 4096, 401)) {
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

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  if (!c)
    return 0;
  tu_write (c, KA, 4096, 301);
  tu_flush (c);
  tu_write (c, KB, 4096, 302);
  tu_flush (c);
  tu_write (c, KC, 4096, 303);
  tu_flush (c);
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
  pc_cache *c = tu_reopen (p, CSIZE, BSIZE, 0);

  CU_ASSERT_PTR_NULL (c);
  if (c)
    pc_cache_close (c);
  c = tu_reopen (p, CSIZE, BSIZE, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, KA, 4096, 301));
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, KB, 4096, 0xEE));
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, KC, 4096, 0xEE));
  CU_ASSERT_EQUAL (c->log.head.seq, 2);
  pc_cache_close (c);
}

static void
test_kset_crc_ends_replay (void)
{
  const char *p = tu_fresh ("ksetcrc");
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
  const char *p = tu_fresh ("ksettorn");
  uint8_t zero[16] = { 0 };
  struct kinfo k[8];
  pc_cache *c;

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (tu_file_write (p, k[2].foff + sizeof (struct pc_kset_hdr)
                                  + 16, zero, sizeof zero), 0);
  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, KA, 4096, 301));
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, KB, 4096, 302));
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, KC, 4096, 0xEE));
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
  const char *p = tu_fresh ("ksetseq");
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
  const char *p = tu_fresh ("ksetsalt");
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
  const char *p = tu_fresh ("ksetdead");
  struct kinfo k[8];
  pc_cache *c;

  CU_ASSERT_EQUAL_FATAL (three_ksets (p, k), 3);
  CU_ASSERT_EQUAL (tu_file_xor (p, k[1].foff + sizeof (struct pc_kset_hdr) +
                                offsetof (struct pc_key_rec, data_crc), 1), 0);
  check_only_first (p);

  c = tu_reopen (p, CSIZE, BSIZE, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  tu_write (c, KC, 4096, 304);
  tu_flush (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, KC, 4096, 304));
  CU_ASSERT_EQUAL (c->log.head.seq, 3);
  pc_cache_close (c);

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, KA, 4096, 301));
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, KB, 4096, 0xEE));
  /* The log must end after D's kset, not run on into the old kset 3. */
  CU_ASSERT_EQUAL (c->log.head.seq, 3);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, KC, 4096, 304));
  CU_ASSERT_FALSE (tu_reads_pattern (c, &tu_ee, KC, 4096, 303));
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

  CU_ASSERT_EQUAL_FATAL (pc_read (c, b, OV_LEN, area, &tu_ee, &err), 0);
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
  const char *p = tu_fresh ("overlap");
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
    tu_flush (c);
  }
  /* Variant 1: all steps of a case in one kset. */
  for (ci = 0; ci < OV_NCASES; ci++)
    for (si = 0; si < OV_MAXSTEPS; si++)
      if (ov_cases[ci][si].kind)
        ov_apply (c, &m[1], ov_area[1], ci, si);
  tu_flush (c);
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


/* data_crc: a payload byte that changed on media does not refuse the
 * open (replay leaves payload to the reads that hit it), but a read of
 * that dirty data fails.
 */
static void
test_data_crc (void)
{
  const char *p = tu_fresh ("datacrc");
  struct pc_config cfg;
  struct pc_key *k;
  uint64_t foff;
  pc_cache *c;

  tu_config (&cfg, p, CSIZE);
  cfg.data_crc = 1;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (c->data_crc);
  tu_write (c, 40960, 8192, 501);
  tu_flush (c);
  k = pc_tree_find (pc_index_tree (&c->index, 40960), 40960, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (k);
  foff = pc_seg_addr (c, k->seg, k->seg_off) - c->base;
  pc_cache_close (c);

  cfg.data_crc = PC_UNSET;      /* as formatted */
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_TRUE (c->data_crc);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 40960, 8192, 501));
  pc_cache_close (c);

  CU_ASSERT_EQUAL (tu_file_xor (p, foff + 5000, 0x01), 0);
  tu_log_clear ();
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  {
    uint8_t b[512];
    int err = 0;

    CU_ASSERT_EQUAL (pc_read (c, b, sizeof b, 40960, &tu_ee, &err), -1);
    CU_ASSERT_EQUAL (err, EIO);
  }
  CU_ASSERT_TRUE (tu_log_has (p));
  CU_ASSERT_TRUE (tu_log_has ("checksum"));
  pc_cache_close (c);
  unlink (p);
}

/* ------------------------------------------------------------------ */

/* ------------------------------------------------------------------ */
/* A live look (pcachectl on a cache nbdkit holds) while the cache runs
 * on: between the look's reading of the generation records and its
 * walk of the log, the running cache writes back, GC frees segments
 * and new data and log ksets reuse them.  The look then meets keys and
 * log links newer than the records it read: changes, not damage.
 */

static struct tu_rig *churn_rig;
static unsigned churn_writes;

/* Write over the cache three times, so that every segment is freed and
 * reused at least once, and commit it all.
 */
static void
churn (struct pc_cache *look)
{
  uint64_t st = tu_seed (41);
  unsigned i, n = 3 * CSIZE / 65536;

  (void) look;
  for (i = 0; i < n; i++) {
    uint64_t off = tu_below (&st, BSIZE / 65536) * 65536;

    tu_rig_write (churn_rig, off, 65536, 500 + churn_writes++);
    if (i % 16 == 15)
      tu_flush (churn_rig->c);
  }
  tu_flush (churn_rig->c);
}

static void
test_live_look (void)
{
  struct pc_config cfg;
  struct tu_rig r;
  pc_cache *look = NULL;
  unsigned i;

  CU_ASSERT_EQUAL_FATAL (tu_rig_open (&r, "live", NULL, CSIZE, BSIZE, 0), 0);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.be), 0);
  churn_rig = &r;
  for (i = 0; i < 3; i++) {
    /* The cache holds data from before, then changes under the look. */
    churn (NULL);
    pc_live_look_hook = churn;
    pc_config_init (&cfg);
    cfg.path = r.path;
    cfg.format = PC_FORMAT_AUTO;
    cfg.live = 1;
    tu_log_clear ();
    if (pc_cache_open (&cfg, &look) == -1)
      fprintf (stderr, "look %u: %s\n", i, tu_log_text ());
    pc_live_look_hook = NULL;
    CU_ASSERT_PTR_NOT_NULL (look);
    pc_cache_close (look);
    look = NULL;
  }
  tu_rig_close (&r);
}

static const struct tu_case cases[] = {
  { "replay", test_replay_basic },
  { "replay after crash: full kset", test_replay_full_kset },
  { "a flush merges key buffers", test_flush_merges_ksets },
  { "kset CRC ends replay", test_kset_crc_ends_replay },
  { "torn kset ends replay", test_kset_torn_tail },
  { "kset seq ends replay", test_kset_seq_ends_replay },
  { "kset CRC is salted", test_kset_salt },
  { "truncated log stays truncated", test_truncated_log_stays_truncated },
  { "overlaps and replay", test_overlaps },
  { "data_crc", test_data_crc },
  { "a live look while the cache churns", test_live_look },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("replay", cases, 120, BSIZE);   /* a hang is a failure */
}
