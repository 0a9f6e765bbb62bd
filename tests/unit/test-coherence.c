/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the coherence of cached data with the backend: clean
 * data (a read's fill, write-through's copy) must never be older than
 * what a write, zero or trim put on the backend, in every mode, however
 * the fill and the backend's change interleave, after a restart, and
 * across mode switches.
 *
 * The gated cases hold one backend call at a chosen point, so every
 * interleaving is reached deterministically; the randomized one races
 * writers, readers, flushes, eviction and mode switches.  Its length is
 * PC_RACE_SECONDS (default 2; scripts/soak runs it longer).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (12 * TU_MIB)     /* 11 segments of 1 MiB */
#define BSIZE (16 * TU_MIB)
#define BLK   4096u

/* ------------------------------------------------------------------ */
/* A backend that holds the first call of one kind until opened. */

struct gate {
  struct tu_hook hook;          /* first: the hook is the gate */
  pthread_mutex_t lock;
  pthread_cond_t cv;
  char op;                      /* enum tu_op to hold, 0 for none */
  int done;                     /* hold after the inner call */
  int held, open;
};

static void
gate_op (struct tu_hook *h, char op, uint64_t off, int done)
{
  struct gate *g = (struct gate *) h;

  (void) off;
  pthread_mutex_lock (&g->lock);
  if (op == g->op && done == g->done && !g->held) {
    g->held = 1;
    pthread_cond_broadcast (&g->cv);
    while (!g->open)
      pthread_cond_wait (&g->cv, &g->lock);
  }
  pthread_mutex_unlock (&g->lock);
}

static void
gate_arm (struct gate *g, char op, int done)
{
  pthread_mutex_lock (&g->lock);
  g->op = op;
  g->done = done;
  g->held = g->open = 0;
  pthread_mutex_unlock (&g->lock);
}

static void
gate_wait_held (struct gate *g)
{
  pthread_mutex_lock (&g->lock);
  while (!g->held)
    pthread_cond_wait (&g->cv, &g->lock);
  pthread_mutex_unlock (&g->lock);
}

static void
gate_open (struct gate *g)
{
  pthread_mutex_lock (&g->lock);
  g->open = 1;
  pthread_cond_broadcast (&g->cv);
  pthread_mutex_unlock (&g->lock);
}

/* ------------------------------------------------------------------ */
/* One case: a block cached (or not), changed by a write, zero or trim,
 * and read before, during and after the backend gets the change.
 */

enum change { CH_WRITE, CH_ZERO, CH_TRIM };
enum phase { FILL_BEFORE, FILL_DURING, FILL_AFTER };

static const char *const change_name[] = { "write", "zero", "trim" };
static const char *const phase_name[] = { "before", "during", "after" };
static const char change_op[] = { TU_OP_WRITE, TU_OP_ZERO, TU_OP_TRIM };

#define OFF (5 * TU_MIB + 10 * BLK)

struct tcase {
  struct pc_config cfg;
  pc_cache *c;
  struct tu_mem *mem;
  struct gate g;
  struct pc_backend gb;         /* mem behind the gate */
  enum change ch;
  int r;                        /* the thread's result */
  uint8_t buf[BLK];
};

static int
tc_change (struct tcase *t)
{
  uint8_t b[BLK];
  int err = 0;

  switch (t->ch) {
  case CH_WRITE:
    tu_fill (b, BLK, OFF, 2);
    return pc_write (t->c, b, BLK, OFF, 0, &err);
  case CH_ZERO:
    return pc_zero (t->c, BLK, OFF, 0, &err);
  default:
    return pc_trim (t->c, BLK, OFF, 0, &err);
  }
}

static void *
change_thread (void *arg)
{
  struct tcase *t = arg;

  t->r = tc_change (t);
  return NULL;
}

static void *
read_thread (void *arg)
{
  struct tcase *t = arg;
  int err = 0;

  t->r = pc_read (t->c, t->buf, BLK, OFF, &t->gb, &err);
  return NULL;
}

/* Write back everything committed, one batch at a time. */
static void *
writeback_thread (void *arg)
{
  struct tcase *t = arg;
  int r;

  while ((r = pc_writeback_step (t->c)) == 1)
    ;
  t->r = r;
  return NULL;
}

/* Whether buf holds what the change left. */
static int
is_new (const struct tcase *t, const uint8_t *buf)
{
  return t->ch == CH_WRITE ? tu_check (buf, BLK, OFF, 2) == -1
    : tu_check_byte (buf, BLK, 0) == -1;
}

static int
is_old (const uint8_t *buf)
{
  return tu_check (buf, BLK, OFF, 1) == -1;
}

static int
tc_open (struct tcase *t)
{
  t->c = tu_open (&t->cfg, BSIZE);
  if (!t->c)
    return -1;
  pc_cache_set_backend (t->c, &t->gb);
  return 0;
}

static int
tc_read (struct tcase *t, uint8_t *buf)
{
  int err = 0;

  return pc_read (t->c, buf, BLK, OFF, &t->gb, &err);
}

/* A cache in MODE over a backend of pattern 1 behind an unarmed gate. */
static void
tc_setup (struct tcase *t, const char *name, enum pc_mode mode,
          enum change ch)
{
  memset (t, 0, sizeof *t);
  tu_config (&t->cfg, tu_fresh (name), CSIZE);
  t->cfg.mode = mode;
  t->ch = ch;
  t->mem = tu_mem_new (BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (t->mem);
  tu_fill (t->mem->buf, BSIZE, 0, 1);
  pthread_mutex_init (&t->g.lock, NULL);
  pthread_cond_init (&t->g.cv, NULL);
  t->g.hook.op = gate_op;
  t->g.hook.inner = tu_mem_backend (t->mem);
  t->gb = tu_hook_backend (&t->g.hook);
  CU_ASSERT_EQUAL_FATAL (tc_open (t), 0);
}

static void
tc_teardown (struct tcase *t)
{
  pc_cache_close (t->c);
  unlink (t->cfg.path);
  tu_mem_free (t->mem);
  pthread_mutex_destroy (&t->g.lock);
  pthread_cond_destroy (&t->g.cv);
}

static void
run_phase (struct tcase *t, enum phase ph)
{
  pthread_t th;
  uint8_t b[BLK];
  int wb = t->cfg.mode == PC_MODE_WRITEBACK, err = 0;

  switch (ph) {
  case FILL_BEFORE:
    /* A miss has read the old data when the change comes. */
    gate_arm (&t->g, TU_OP_READ, 1);
    CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL, read_thread, t), 0);
    gate_wait_held (&t->g);
    CU_ASSERT_EQUAL (tc_change (t), 0);
    gate_open (&t->g);
    pthread_join (th, NULL);
    CU_ASSERT_EQUAL (t->r, 0);
    CU_ASSERT (is_old (t->buf));
    break;
  case FILL_DURING:
    /* A read while the backend is being changed: write-back of the
     * change, or the write itself outside write-back.
     */
    CU_ASSERT_EQUAL_FATAL (tc_read (t, b), 0);        /* cached */
    if (wb) {
      CU_ASSERT_EQUAL (tc_change (t), 0);
      CU_ASSERT_EQUAL (pc_flush (t->c, &err), 0);
    }
    gate_arm (&t->g, change_op[t->ch], 0);
    CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL,
                                           wb ? writeback_thread
                                           : change_thread, t), 0);
    gate_wait_held (&t->g);
    CU_ASSERT_EQUAL (tc_read (t, b), 0);
    CU_ASSERT (wb ? is_new (t, b) : is_old (b));
    gate_open (&t->g);
    pthread_join (th, NULL);
    CU_ASSERT_EQUAL (t->r, 0);
    break;
  case FILL_AFTER:
    CU_ASSERT_EQUAL_FATAL (tc_read (t, b), 0);        /* cached */
    CU_ASSERT_EQUAL (tc_change (t), 0);
    break;
  }
  gate_arm (&t->g, 0, 0);
}

static void
one_case (enum pc_mode mode, enum change ch, enum phase ph)
{
  struct tcase t;
  uint8_t b[BLK];
  int wb = mode == PC_MODE_WRITEBACK, err = 0, i;
  char name[64];

  snprintf (name, sizeof name, "%s-%s-%s", pc_mode_name (mode),
            change_name[ch], phase_name[ph]);
  tc_setup (&t, name, mode, ch);

  run_phase (&t, ph);

  /* Read twice: the first may fill, the second hits what it filled. */
  for (i = 0; i < 2; i++) {
    CU_ASSERT_EQUAL (tc_read (&t, b), 0);
    if (!is_new (&t, b))
      fprintf (stderr, "\n%s: read %d: old data\n", name, i + 1);
    CU_ASSERT (is_new (&t, b));
  }
  if (!wb)
    CU_ASSERT (is_new (&t, t.mem->buf + OFF));

  /* What the log holds says the same after a restart. */
  CU_ASSERT_EQUAL (pc_flush (t.c, &err), 0);
  pc_cache_close (t.c);
  t.cfg.size = 0;
  CU_ASSERT_EQUAL_FATAL (tc_open (&t), 0);
  CU_ASSERT_EQUAL (tc_read (&t, b), 0);
  if (!is_new (&t, b))
    fprintf (stderr, "\n%s: after a restart: old data\n", name);
  CU_ASSERT (is_new (&t, b));
  if (wb) {
    writeback_thread (&t);
    CU_ASSERT_EQUAL (t.r, 0);
    CU_ASSERT (is_new (&t, t.mem->buf + OFF));
  }
  tc_teardown (&t);
}

static void
cases (enum pc_mode mode)
{
  int ch, ph;

  for (ch = CH_WRITE; ch <= CH_TRIM; ch++)
    for (ph = FILL_BEFORE; ph <= FILL_AFTER; ph++)
      one_case (mode, ch, ph);
}

static void test_writeback (void) { cases (PC_MODE_WRITEBACK); }
static void test_writethrough (void) { cases (PC_MODE_WRITETHROUGH); }
static void test_writearound (void) { cases (PC_MODE_WRITEAROUND); }

/* Two write-throughs of one block at once may reach the backend in
 * either order: whichever the backend keeps, the cache must not hold
 * the other.  The first is held in the backend while the second goes
 * all the way down; then the first lands last.
 */
static void
test_overlapping_writes (void)
{
  struct tcase t;
  pthread_t th;
  uint8_t b[BLK];
  int err = 0;

  tc_setup (&t, "overlap", PC_MODE_WRITETHROUGH, CH_WRITE);

  gate_arm (&t.g, TU_OP_WRITE, 0);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&th, NULL, change_thread, &t), 0);
  gate_wait_held (&t.g);
  tu_fill (b, BLK, OFF, 3);
  CU_ASSERT_EQUAL (pc_write (t.c, b, BLK, OFF, 0, &err), 0);
  /* A read meanwhile must not cache what the held write will replace. */
  CU_ASSERT_EQUAL (tc_read (&t, b), 0);
  CU_ASSERT_EQUAL (tu_check (b, BLK, OFF, 3), -1);
  gate_open (&t.g);
  pthread_join (th, NULL);
  CU_ASSERT_EQUAL (t.r, 0);
  CU_ASSERT_EQUAL (pc_index_tree (&t.c->index, OFF)->orphans, 0);

  CU_ASSERT (is_new (&t, t.mem->buf + OFF));      /* seed 2 landed last */
  CU_ASSERT_EQUAL (tc_read (&t, b), 0);
  CU_ASSERT (is_new (&t, b));
  CU_ASSERT_EQUAL (tc_read (&t, b), 0);
  CU_ASSERT (is_new (&t, b));
  tc_teardown (&t);
}

/* ------------------------------------------------------------------ */
/* Randomized: each block has one writer, which stamps it with rising
 * versions (a write, or a zero or trim that reads as zeroes); readers
 * check that what they read is a version between the last one
 * acknowledged before the read began and the last one begun by its end.
 */

#define RB_BLOCKS   (BSIZE / BLK)
#define RB_WRITERS  3
#define RB_READERS  3

struct race {
  pc_cache *c;
  struct tu_mem *mem;
  struct tu_hook hook;          /* yields inside backend calls */
  struct pc_backend be;
  _Atomic uint64_t started[RB_BLOCKS], acked[RB_BLOCKS];
  _Atomic int stop;
  _Atomic uint64_t writes, reads, switches, bad;
  uint64_t deadline_ms;
};

struct racer {
  struct race *rc;
  unsigned id;
};

/* Whether version v of blk is a zero or a trim (else a write). */
static int
rb_zeroish (uint64_t blk, uint64_t v)
{
  uint64_t x = (blk * UINT64_C (0x9E3779B97F4A7C15)) ^ (v * 0xD1B54A32D1ULL);

  return v > 0 && (x >> 29) % 5 == 0;
}

static void
rb_stamp (uint8_t *b, uint64_t blk, uint64_t v)
{
  tu_fill (b, BLK, blk * BLK, (uint32_t) v + 7);
  memcpy (b, &blk, 8);
  memcpy (b + 8, &v, 8);
}

/* The version b holds: a stamp's, or with *zero set, any zero. */
static int
rb_decode (const uint8_t *b, uint64_t blk, uint64_t *v, int *zero)
{
  uint64_t sb;

  *zero = tu_check_byte (b, BLK, 0) == -1;
  if (*zero)
    return 0;
  memcpy (&sb, b, 8);
  memcpy (v, b + 8, 8);
  if (sb != blk || tu_check (b + 16, BLK - 16, blk * BLK + 16,
                             (uint32_t) *v + 7) != -1)
    return -1;
  return 0;
}

/* Widen the windows between the cache's steps and the backend's. */
static void
rb_yield (struct tu_hook *h, char op, uint64_t off, int done)
{
  static _Thread_local uint64_t s;
  int n;

  (void) h;
  (void) done;
  if (!s)
    s = (uint64_t) pthread_self () | 1;
  n = (int) (tu_rand (&s) % 4);
  (void) off;
  if (op != TU_OP_FLUSH)
    while (n-- > 0)
      sched_yield ();
}

static int
rb_ok (uint64_t blk, uint64_t lo, uint64_t hi, const uint8_t *b)
{
  uint64_t v = 0, x;
  int zero;

  if (rb_decode (b, blk, &v, &zero) == -1)
    return 0;
  if (!zero)
    return v >= lo && v <= hi && !rb_zeroish (blk, v);
  for (x = lo; x <= hi; x++)
    if (rb_zeroish (blk, x))
      return 1;
  return 0;
}

static void *
rb_reader (void *arg)
{
  struct racer *me = arg;
  struct race *rc = me->rc;
  uint64_t s = 1000 + me->id, acked[2], blk;
  uint8_t b[BLK];
  int err = 0;

  while (!atomic_load (&rc->stop)) {
    /* Sometimes the neighbour too: reads that span two blocks. */
    unsigned n = tu_rand (&s) % 4 == 0 ? 2 : 1;
    uint8_t bb[2 * BLK];
    unsigned i;

    blk = tu_rand (&s) % (RB_BLOCKS - 1);
    acked[0] = atomic_load (&rc->acked[blk]);
    acked[1] = atomic_load (&rc->acked[blk + 1]);
    if (pc_read (rc->c, bb, n * BLK, blk * BLK, &rc->be, &err) == -1) {
      atomic_fetch_add (&rc->bad, 1);
      break;
    }
    for (i = 0; i < n; i++) {
      uint64_t from = acked[i], to = atomic_load (&rc->started[blk + i]);

      memcpy (b, bb + i * BLK, BLK);
      if (!rb_ok (blk + i, from, to, b)) {
        uint64_t v = 0;
        int zero = 0;

        rb_decode (b, blk + i, &v, &zero);
        char what[32];

        if (zero)
          snprintf (what, sizeof what, "zeroes");
        else
          snprintf (what, sizeof what, "v%" PRIu64, v);
        fprintf (stderr, "\nblock %" PRIu64 ": acked v%" PRIu64 ", begun v%"
                 PRIu64 ", read %s (mode %s)\n", blk + i, from, to, what,
                 pc_mode_name (pc_cache_get_mode (rc->c)));
        atomic_fetch_add (&rc->bad, 1);
      }
    }
    atomic_fetch_add (&rc->reads, 1);
  }
  return NULL;
}

static int
rb_apply (struct race *rc, uint64_t blk, uint64_t v, uint64_t *s)
{
  uint8_t b[BLK];
  int err = 0;

  if (!rb_zeroish (blk, v)) {
    rb_stamp (b, blk, v);
    return pc_write (rc->c, b, BLK, blk * BLK,
                     tu_rand (s) % 16 == 0 ? PC_FUA : 0, &err);
  }
  if (tu_rand (s) % 2)
    return pc_zero (rc->c, BLK, blk * BLK, 0, &err);
  return pc_trim (rc->c, BLK, blk * BLK, 0, &err);
}

static void *
rb_writer (void *arg)
{
  struct racer *me = arg;
  struct race *rc = me->rc;
  uint64_t s = 77 + me->id, n = 0;
  int err = 0;

  while (!atomic_load (&rc->stop)) {
    /* Blocks blk with blk % RB_WRITERS == id are this writer's. */
    uint64_t blk = tu_rand (&s) % (RB_BLOCKS / RB_WRITERS) * RB_WRITERS +
      me->id;
    uint64_t v = atomic_load (&rc->started[blk]) + 1;

    atomic_store (&rc->started[blk], v);
    if (rb_apply (rc, blk, v, &s) == -1) {
      atomic_fetch_add (&rc->bad, 1);
      break;
    }
    atomic_store (&rc->acked[blk], v);
    atomic_fetch_add (&rc->writes, 1);
    if (++n % 64 == 0 && pc_flush (rc->c, &err) == -1)
      atomic_fetch_add (&rc->bad, 1);
    /* Writer 0 switches the mode now and then. */
    if (me->id == 0 && n % 700 == 0) {
      enum pc_mode m = (enum pc_mode) (tu_rand (&s) % 3);

      if (pc_cache_set_mode (rc->c, m, &err) == -1)
        atomic_fetch_add (&rc->bad, 1);
      atomic_fetch_add (&rc->switches, 1);
    }
    if (pc_now_ms () >= rc->deadline_ms)
      atomic_store (&rc->stop, 1);
  }
  return NULL;
}

/* With data_crc, every hit is checked against its checksum too: the
 * race (eviction reusing segments under readers' pins) must never make
 * good data look bad.
 */
static void
random_race (int data_crc)
{
  struct race *rc = calloc (1, sizeof *rc);
  struct racer w[RB_WRITERS], rd[RB_READERS];
  pthread_t wt[RB_WRITERS], rt[RB_READERS];
  const char *env = getenv ("PC_RACE_SECONDS");
  unsigned secs = env ? (unsigned) atoi (env) : 2, i;
  struct pc_config cfg;
  struct pc_stats st;
  uint64_t blk;
  uint8_t b[BLK];
  int err = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (rc);
  rc->mem = tu_mem_new (BSIZE, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (rc->mem);
  for (blk = 0; blk < RB_BLOCKS; blk++)
    rb_stamp (rc->mem->buf + blk * BLK, blk, 0);
  rc->hook.inner = tu_mem_backend (rc->mem);
  rc->hook.op = rb_yield;
  rc->be = tu_hook_backend (&rc->hook);
  tu_config (&cfg, tu_fresh ("race"), CSIZE);
  cfg.gc_percent = 30;          /* evict often */
  cfg.commit_ms = 5;
  cfg.data_crc = data_crc;
  rc->c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (rc->c);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (rc->c, &rc->be), 0);

  rc->deadline_ms = pc_now_ms () + secs * 1000u;
  for (i = 0; i < RB_WRITERS; i++) {
    w[i] = (struct racer) { rc, i };
    CU_ASSERT_EQUAL_FATAL (pthread_create (&wt[i], NULL, rb_writer, &w[i]),
                           0);
  }
  for (i = 0; i < RB_READERS; i++) {
    rd[i] = (struct racer) { rc, i };
    CU_ASSERT_EQUAL_FATAL (pthread_create (&rt[i], NULL, rb_reader, &rd[i]),
                           0);
  }
  for (i = 0; i < RB_WRITERS; i++)
    pthread_join (wt[i], NULL);
  atomic_store (&rc->stop, 1);
  for (i = 0; i < RB_READERS; i++)
    pthread_join (rt[i], NULL);
  CU_ASSERT_EQUAL (atomic_load (&rc->bad), 0);

  /* At rest, the cache and (once drained) the backend hold the last
   * version of every block.
   */
  CU_ASSERT_EQUAL (pc_cache_drain (rc->c, &err), 0);
  for (blk = 0; blk < RB_BLOCKS; blk++) {
    uint64_t v = atomic_load (&rc->acked[blk]);

    CU_ASSERT_EQUAL (pc_read (rc->c, b, BLK, blk * BLK, &rc->be, &err), 0);
    if (!rb_ok (blk, v, v, b) || !rb_ok (blk, v, v, rc->mem->buf + blk * BLK))
      fprintf (stderr, "\nblock %" PRIu64 ": last v%" PRIu64 " not read\n",
               blk, v);
    CU_ASSERT (rb_ok (blk, v, v, b));
    CU_ASSERT (rb_ok (blk, v, v, rc->mem->buf + blk * BLK));
  }
  pc_cache_get_stats (rc->c, &st);
  fprintf (stderr, "\n  %" PRIu64 " writes, %" PRIu64 " reads, %" PRIu64
           " mode switches, %" PRIu64 " GC segments\n",
           atomic_load (&rc->writes), atomic_load (&rc->reads),
           atomic_load (&rc->switches), st.gc_segments);
  CU_ASSERT (atomic_load (&rc->switches) > 0);
  CU_ASSERT_EQUAL (st.crc_errors, 0);
  pc_cache_close (rc->c);
  unlink (cfg.path);
  tu_mem_free (rc->mem);
  free (rc);
}

static void
test_random_race (void)
{
  random_race (0);
}

static void
test_random_race_crc (void)
{
  random_race (1);
}

static const struct tu_case suite_cases[] = {
  { "write-back: change x fill before/during/after", test_writeback },
  { "write-through: change x fill before/during/after", test_writethrough },
  { "write-around: change x fill before/during/after", test_writearound },
  { "overlapping write-throughs", test_overlapping_writes },
  { "random race with mode switches", test_random_race },
  { "random race, data CRC checked on hits", test_random_race_crc },
  { NULL, NULL },
};

int
main (void)
{
  const char *env = getenv ("PC_RACE_SECONDS");
  unsigned race_s = env ? (unsigned) atoi (env) : 0;

  return tu_main ("coherence", suite_cases, 120 + race_s, 0); /* a hang fails */
}
