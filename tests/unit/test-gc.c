/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for segment generations (gc.c): a segment that GC
 * reclaims gets a new generation, and a key record of an older one is
 * stale to replay, to reads and to GC.
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
#include "gc.h"
#include "writeback.h"
#include "crc.h"
#include "format.h"
#include "meta.h"
#include "testutil.h"

#define CSIZE (12 * TU_MIB)     /* 11 segments of 1 MiB */
#define BSIZE (32 * TU_MIB)


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
  tu_write (c, GX, TU_MIB, 401);
  tu_write (c, GY, 4096, 402);                /* retires X's segment */
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
  const char *p = tu_fresh ("gen-reclaim");
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
  CU_ASSERT_EQUAL (tu_type_at (c, GX, TU_MIB), PC_MAP_UNCACHED);
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
  const char *p = tu_fresh ("gen-stale");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_key_rec keys[2];
  uint64_t crafted;
  uint32_t xs;
  pc_cache *c;

  c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  tu_flush (c);
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

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->log.head.seq, crafted + 1);
  CU_ASSERT_EQUAL (c->segs.seg[xs].gen, 1);
  /* Nothing live points into X's segment. */
  CU_ASSERT_EQUAL (c->segs.seg[xs].role, PC_SEG_FREE);
  CU_ASSERT_EQUAL (pc_seg_refs (&c->segs, xs), 0);
  CU_ASSERT_EQUAL (tu_type_at (c, GZ, 4096), PC_MAP_ZERO);
  CU_ASSERT_EQUAL (tu_type_at (c, GW, 4096), PC_MAP_UNCACHED);
  CU_ASSERT_TRUE (tu_reads_byte (c, &tu_ee, GW, 4096, 0xEE));
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
  const char *p = tu_fresh ("gen-gap");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct gap_stale g = { NULL, mem };
  uint32_t xs;
  int st;

  g.c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (g.c);
  CU_ASSERT_EQUAL (tu_type_at (g.c, 0, GX), PC_MAP_UNCACHED);
  CU_ASSERT_EQUAL (tu_type_at (g.c, GX, TU_MIB), PC_MAP_UNCACHED);
  st = tu_in_child (gap_stale_read, &g);
  if (st != 0)
    fprintf (stderr, "\nchild exit status %d\n", st);
  CU_ASSERT_EQUAL (st, 0);
  pc_cache_close (g.c);
  tu_mem_free (mem);
  unlink (p);
}

/* A read over a stale key and the keys after it: dropping the stale
 * key moves the others in their leaf, and the read must still find
 * each of them.
 */
static void
test_read_stale_then_keys (void)
{
  const char *p = tu_fresh ("gen-keys");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend fg = tu_mem_backend (mem);
  const uint32_t len = TU_MIB + 16 * 4096;
  uint8_t *b = malloc (len);
  uint64_t before;
  uint32_t xs;
  pc_cache *c;
  int err = 0, i;

  c = gen_setup (p, mem, &xs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  /* Keys after X, every other block, each in a payload of its own. */
  for (i = 0; i < 16; i += 2)
    tu_write (c, GX + TU_MIB + i * 4096, 4096, 500 + i);
  before = tu_mem_preads (mem);
  CU_ASSERT_EQUAL (pc_read (c, b, len, GX, &fg, &err), 0);
  CU_ASSERT_EQUAL (tu_check (b, TU_MIB, GX, 401), -1);
  for (i = 0; i < 16; i++) {
    uint64_t o = GX + TU_MIB + i * 4096;

    if (i % 2 == 0) {
      CU_ASSERT_EQUAL (tu_check (b + (o - GX), 4096, o, 500 + i), -1);
    }
    else {
      CU_ASSERT_EQUAL (tu_check_byte (b + (o - GX), 4096, 0xEE), -1);
    }
  }
  /* X and the eight gaps between the keys, each read once. */
  CU_ASSERT_EQUAL (tu_mem_preads (mem), before + 9);
  pc_cache_close (c);
  tu_mem_free (mem);
  free (b);
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
  const char *p = tu_fresh ("gen-gc");
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
  tu_write (c, 16 * TU_MIB, (uint32_t) (c->seg_size - c->heads[0].off), 601);
  tu_write (c, 20 * TU_MIB, 4096, 602);                       /* D */
  key = pc_tree_find (pc_index_tree (&c->index, 20 * TU_MIB), 20 * TU_MIB, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (key);
  CU_ASSERT_EQUAL_FATAL (key->seg, xs);
  CU_ASSERT_EQUAL (key->gen, 1);
  tu_flush (c);                                            /* K1 */
  memset (keys, 0, sizeof keys);
  keys[0] = (struct pc_key_rec) { .off = GZ, .len = 4096,
                                  .flags = PC_KF_DIRTY | PC_KF_ZERO };
  keys[1] = (struct pc_key_rec) { .off = GW, .len = 4096, .seg = xs,
                                  .seg_off = 0, .gen = 0,
                                  .flags = PC_KF_DIRTY };
  craft_kset (c, keys, 2);                              /* K2 */
  c->log.epoch++;                                       /* as a flush */
  k3seq = c->log.head.seq;
  tu_write (c, 24 * TU_MIB, 4096, 603);                       /* E */
  tu_flush (c);                                            /* K3 */
  pc_cache_close (c);

  c = tu_reopen (p, CSIZE, BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (c->log.head.seq, k3seq + 1);
  CU_ASSERT_EQUAL (c->segs.seg[xs].role, PC_SEG_DATA);
  CU_ASSERT_EQUAL (pc_seg_refs (&c->segs, xs), 2);
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 24 * TU_MIB, 4096, 603));
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
  CU_ASSERT_TRUE (tu_reads_pattern (c, &tu_ee, 24 * TU_MIB, 4096, 603));
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* ------------------------------------------------------------------ */

static const struct tu_case cases[] = {
  { "generation after reclaim", test_generation_reclaim },
  { "stale record skipped at replay", test_generation_stale_record },
  { "read: gap then stale key", test_read_gap_then_stale },
  { "read: stale key, then keys", test_read_stale_then_keys },
  { "GC and stale records", test_gc_skips_stale_record },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("gc", cases, 120, BSIZE);   /* a hang is a failure */
}
