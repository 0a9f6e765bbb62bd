/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for writeback's coalescing across batches: data that a
 * newer record of the same flush epoch overwrites is left out, never
 * data whose replacement belongs to a later epoch or is not yet in the
 * log, or by the time its turn in a batch comes.  Writeback runs a
 * batch at a time (pc_writeback_step) on a cache without workers, so
 * every batch boundary is where the test puts it.
 * Then the number of writers a round puts to work, and the wake-up of
 * a writer waiting for space.  Last, a hold: writeback finishes the
 * epoch it is in, then starts nothing of the next.  And the pace it
 * keeps between pcache-writeback-percent and pcache-gc-percent.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "gc.h"
#include "hold.h"
#include "kset.h"
#include "pace.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)
#define BSIZE (32 * TU_MIB)
#define FILLER (16 * TU_MIB)    /* where unrelated writes go */

static pc_cache *
open_at (const char *path)
{
  struct pc_config cfg;

  tu_config (&cfg, path, CSIZE);
  cfg.cache_on_read = 0;
  return tu_open (&cfg, BSIZE);
}

/* Put pending keys in the log as a kset, in the current epoch. */
static void
commit (pc_cache *c)
{
  CU_ASSERT_EQUAL (pc_log_commit_all (c, 0), 0);
}

/* n ksets of one 4K write each, away from the data under test. */
static void
fillers (pc_cache *c, unsigned n, uint32_t seed)
{
  unsigned i;

  for (i = 0; i < n; i++) {
    tu_write (c, FILLER + i * 4096, 4096, seed);
    commit (c);
  }
}

/* Bytes of backend writes that overlap [off, off+len) before log entry
 * upto (or all of them with upto = SIZE_MAX).
 */
static uint64_t
written (struct tu_mem *m, uint64_t off, uint64_t len, size_t upto)
{
  uint64_t n = 0;
  size_t i;

  pthread_mutex_lock (&m->lock);
  for (i = 0; i < m->nlog && i < upto; i++) {
    const struct tu_log_ent *e = &m->log[i];
    uint64_t s = PC_MAX (e->off, off), x = PC_MIN (e->off + e->len, off + len);

    if (e->op == TU_OP_WRITE && s < x)
      n += x - s;
  }
  pthread_mutex_unlock (&m->lock);
  return n;
}

static size_t
first_flush (struct tu_mem *m)
{
  size_t i;

  pthread_mutex_lock (&m->lock);
  for (i = 0; i < m->nlog && m->log[i].op != TU_OP_FLUSH; i++)
    ;
  pthread_mutex_unlock (&m->lock);
  return i;
}

static void
write_back_all (pc_cache *c)
{
  int r, n = 0;

  while ((r = pc_writeback_step (c)) == 1 && ++n < 1000)
    ;
  CU_ASSERT_EQUAL (r, 0);
}

static uint64_t
skipped (pc_cache *c)
{
  struct pc_stats st;

  pc_cache_get_stats (c, &st);
  return st.writeback_skipped_bytes;
}

/* A (8K) is in the first batch; B overwrites its second half in a later
 * batch of the same epoch.  The backend gets A's first half and B, and
 * never A's second half.
 */
static void
test_overwritten_later (void)
{
  const char *p = tu_fresh ("later");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_at (p);

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 8192, 1);                             /* A */
  commit (c);
  fillers (c, 40, 2);                             /* A's batch ends here */
  tu_write (c, 4096, 4096, 3);                          /* B */
  commit (c);
  write_back_all (c);
  CU_ASSERT_EQUAL (written (mem, 0, 4096, SIZE_MAX), 4096);
  CU_ASSERT_EQUAL (written (mem, 4096, 4096, SIZE_MAX), 4096);
  CU_ASSERT_EQUAL (tu_check (mem->buf, 4096, 0, 1), -1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + 4096, 4096, 4096, 3), -1);
  CU_ASSERT_EQUAL (skipped (c), 4096);
  CU_ASSERT_EQUAL (tu_check (mem->buf + FILLER, 40 * 4096, FILLER, 2), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* A client that rewrites data while a batch of the epoch it is still
 * writing goes down: the backend's write hook plays it, from inside the
 * batch's first write.  If the epoch is the same when the batch ends,
 * the rewritten extent, not yet down, is left out; if the client flushed
 * meanwhile (at backend write flush_at), it goes down after all, before
 * the batch's flush.
 */
struct racer {
  struct tu_hook hook;                /* first: the backend's opaque */
  pc_cache *c;
  unsigned writes;
  unsigned flush_at;
};

#define LATE_C (64 * 1024)

static void
racer_op (struct tu_hook *h, char op, uint64_t off, int done)
{
  struct racer *rc = (struct racer *) h;

  (void) off;
  if (op != TU_OP_WRITE || done)
    return;
  rc->writes++;
  if (rc->writes == 1)
    tu_write (rc->c, LATE_C, 4096, 9);
  if (rc->flush_at && rc->writes == rc->flush_at)
    tu_flush (rc->c);
}

static void
late (const char *name, unsigned flush_at, uint64_t old_down,
      uint64_t want_skipped)
{
  const char *p = tu_fresh (name);
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct racer rc = { .flush_at = flush_at };
  struct pc_backend bg;
  pc_cache *c = open_at (p);

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  rc.hook.inner = tu_mem_backend (mem);
  rc.hook.op = racer_op;
  rc.c = c;
  bg = tu_hook_backend (&rc.hook);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 4096, 1);                             /* A */
  tu_write (c, LATE_C, 4096, 2);                        /* C */
  tu_write (c, 2 * LATE_C, 4096, 3);                    /* D */
  commit (c);
  /* One batch, one writer: A, C and D in that order. */
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (written (mem, LATE_C, 4096, first_flush (mem)), old_down);
  CU_ASSERT_EQUAL (skipped (c), want_skipped);
  write_back_all (c);
  CU_ASSERT_EQUAL (written (mem, LATE_C, 4096, SIZE_MAX), old_down + 4096);
  CU_ASSERT_EQUAL (tu_check (mem->buf, 4096, 0, 1), -1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + LATE_C, 4096, LATE_C, 9), -1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + 2 * LATE_C, 4096, 2 * LATE_C, 3), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

static void
test_late_rewrite (void)
{
  late ("late", 0, 0, 4096);
}

static void
test_late_rewrite_flushed (void)
{
  late ("lateflush", 2, 4096, 0);
}

/* B comes after a client flush: A's epoch must reach the backend whole
 * before that flush, overwritten later or not.
 */
static void
test_overwritten_next_epoch (void)
{
  const char *p = tu_fresh ("epoch");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_at (p);

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 8192, 1);                             /* A */
  tu_flush (c);
  tu_write (c, 4096, 4096, 3);                          /* B */
  commit (c);
  write_back_all (c);
  CU_ASSERT_EQUAL (written (mem, 4096, 4096, first_flush (mem)), 4096);
  CU_ASSERT_EQUAL (written (mem, 4096, 4096, SIZE_MAX), 8192);
  CU_ASSERT_EQUAL (tu_check (mem->buf + 4096, 4096, 4096, 3), -1);
  CU_ASSERT_EQUAL (skipped (c), 0);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* B is still in a RAM key buffer when A's batch goes down: writeback
 * commits it before dirty_tail passes A, so a crash right after (the
 * file copied as it is) still finds B.  Left in RAM, B would be lost and
 * A, behind dirty_tail, would read back although the backend never got
 * it.
 */
static void
test_overwriter_committed (void)
{
  const char *p = tu_fresh ("commit"), *q = tu_fresh ("commit-crash");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct tu_mem *ee = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem), eeb = tu_mem_backend (ee);
  uint8_t b[4096];
  pc_cache *c = open_at (p);
  int err = 0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 8192, 1);                             /* A */
  commit (c);
  fillers (c, 40, 2);
  tu_write (c, 4096, 4096, 3);                          /* B, not committed */
  CU_ASSERT_EQUAL_FATAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (written (mem, 4096, 4096, SIZE_MAX), 0);
  CU_ASSERT_EQUAL (skipped (c), 4096);
  CU_ASSERT_EQUAL_FATAL (tu_file_copy (p, q), 0);

  pc_cache_close (c);
  c = open_at (q);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (pc_read (c, b, 4096, 4096, &eeb, &err), 0);
  CU_ASSERT_EQUAL (tu_check (b, 4096, 4096, 3), -1);
  pc_cache_set_backend (c, &bg);
  write_back_all (c);
  CU_ASSERT_EQUAL (tu_check (mem->buf, 4096, 0, 1), -1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + 4096, 4096, 4096, 3), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  tu_mem_free (ee);
  unlink (p);
  unlink (q);
}

/* A record cut by many newer ones goes down whole, not in pieces; the
 * newer records then land on top of it.
 */
static void
test_fragmented (void)
{
  const char *p = tu_fresh ("frag");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  uint8_t *model = malloc (65536);
  pc_cache *c = open_at (p);
  unsigned i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 65536, 1);                            /* A */
  tu_fill (model, 65536, 0, 1);
  commit (c);
  fillers (c, 40, 2);
  for (i = 0; i < 12; i++) {                      /* 13 gaps between */
    tu_write (c, 4096 + i * 4608, 512, 10 + i);
    tu_fill (model + 4096 + i * 4608, 512, 4096 + i * 4608, 10 + i);
  }
  commit (c);
  CU_ASSERT_EQUAL_FATAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (written (mem, 0, 65536, SIZE_MAX), 65536);
  CU_ASSERT_EQUAL (skipped (c), 0);
  write_back_all (c);
  CU_ASSERT_EQUAL (memcmp (mem->buf, model, 65536), 0);
  pc_cache_close (c);
  free (model);
  tu_mem_free (mem);
  unlink (p);
}

/* A few newer records: A goes down in the pieces between them. */
static void
test_pieces (void)
{
  const char *p = tu_fresh ("pieces");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  uint8_t *model = malloc (65536);
  pc_cache *c = open_at (p);
  unsigned i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 65536, 1);                            /* A */
  tu_fill (model, 65536, 0, 1);
  commit (c);
  fillers (c, 40, 2);
  for (i = 0; i < 3; i++) {
    tu_write (c, 8192 + i * 16384, 4096, 10 + i);
    tu_fill (model + 8192 + i * 16384, 4096, 8192 + i * 16384, 10 + i);
  }
  commit (c);
  CU_ASSERT_EQUAL_FATAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (written (mem, 0, 65536, SIZE_MAX), 65536 - 3 * 4096);
  CU_ASSERT_EQUAL (skipped (c), 3 * 4096);
  write_back_all (c);
  CU_ASSERT_EQUAL (written (mem, 0, 65536, SIZE_MAX), 65536);
  CU_ASSERT_EQUAL (memcmp (mem->buf, model, 65536), 0);
  pc_cache_close (c);
  free (model);
  tu_mem_free (mem);
  unlink (p);
}

/* Holds a key buffer's lock until told to let go. */
struct holder {
  pthread_mutex_t *m;
  atomic_int held, release;
};

static void *
hold (void *arg)
{
  struct holder *h = arg;

  pthread_mutex_lock (h->m);
  atomic_store (&h->held, 1);
  while (!atomic_load (&h->release))
    usleep (1000);
  pthread_mutex_unlock (h->m);
  return NULL;
}

/* A key buffer another thread keeps locked (a writer waiting for log
 * space would): writeback must not wait for it, since its own GC may be
 * what frees the space.  It writes the batch unsifted instead.
 */
static void
test_busy_buffer (void)
{
  const char *p = tu_fresh ("busy");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_at (p);
  struct holder h;
  pthread_t t;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 8192, 1);                             /* A */
  commit (c);
  fillers (c, 40, 2);
  tu_write (c, 4096, 4096, 3);                          /* B */
  commit (c);
  h.m = &c->kbufs[PC_NKBUFS - 1].lock;
  atomic_init (&h.held, 0);
  atomic_init (&h.release, 0);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&t, NULL, hold, &h), 0);
  while (!atomic_load (&h.held))
    usleep (1000);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  atomic_store (&h.release, 1);
  pthread_join (t, NULL);
  CU_ASSERT_EQUAL (written (mem, 4096, 4096, first_flush (mem)), 4096);
  CU_ASSERT_EQUAL (skipped (c), 0);
  write_back_all (c);
  CU_ASSERT_EQUAL (tu_check (mem->buf + 4096, 4096, 4096, 3), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* Commits wake idle writeback only once the log has grown to the
 * sequence it waits for (wb_wake_seq), and never while it is busy.
 */
static void
test_commit_wakes (void)
{
  const char *p = tu_fresh ("wake");
  pc_cache *c = open_at (p);
  uint64_t kicks;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  kicks = c->kicks;
  fillers (c, 4, 1);                    /* writeback busy: no wake-up */
  CU_ASSERT_EQUAL (c->kicks, kicks);
  atomic_store (&c->wb_wake_seq, atomic_load (&c->log.head_seq) + 3);
  fillers (c, 2, 2);
  CU_ASSERT_EQUAL (c->kicks, kicks);
  fillers (c, 1, 3);                    /* the third kset wakes it */
  CU_ASSERT_EQUAL (c->kicks, kicks + 1);
  pc_cache_close (c);
  unlink (p);
}

/* Far below its thresholds, idle writeback lets more ksets pass between
 * looks (wb_wake_gap), so that clients wake it less often: 128 ksets of
 * 64 KiB into a 24 MiB cache that writes back past 90% wake it a few
 * times, where a look every WB_WAKE_KSETS would take 16 wake-ups.
 */
static void
test_idle_wakes_apart (void)
{
  const char *p = tu_fresh ("gap");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0);
  struct pc_backend be = tu_mem_backend (mem);
  struct pc_config cfg;
  uint64_t kicks, head;
  pc_cache *c;
  unsigned i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (mem);
  tu_config (&cfg, p, CSIZE);
  cfg.wb_percent = 90;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (c, &be), 0);
  pthread_mutex_lock (&c->bg_lock);
  kicks = c->kicks;
  pthread_mutex_unlock (&c->bg_lock);
  head = atomic_load (&c->log.head_seq);
  /* One stripe, one key buffer: a kset every PC_KSET_MAX_KEYS writes. */
  for (i = 0; i < 128 * PC_KSET_MAX_KEYS; i++)
    tu_write (c, (uint64_t) i * 512 % (4 * TU_MIB), 512, i);
  CU_ASSERT (atomic_load (&c->log.head_seq) - head >= 128);
  pthread_mutex_lock (&c->bg_lock);
  kicks = c->kicks - kicks;
  pthread_mutex_unlock (&c->bg_lock);
  CU_ASSERT (kicks <= 128 / 16);
  if (kicks > 128 / 16)
    fprintf (stderr, "%" PRIu64 " wake-ups\n", kicks);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* A backend that meters concurrency: the first `want` writes wait for
 * one another (up to 5 s, then it gives up and says so), and it keeps
 * the most writes it ever had in flight.
 */
struct meter {
  struct tu_hook hook;                  /* first: the hook is the meter */
  pthread_mutex_t lock;
  pthread_cond_t cv;
  unsigned want, now, most;
  int met, gave_up;
};

static void
meter_before (struct tu_hook *h)
{
  struct meter *m = (struct meter *) h;
  uint64_t t0 = pc_now_ms ();

  pthread_mutex_lock (&m->lock);
  m->now++;
  m->most = PC_MAX (m->most, m->now);
  if (m->now >= m->want)
    m->met = 1;
  pthread_cond_broadcast (&m->cv);
  while (!m->met && !m->gave_up) {
    if (pc_now_ms () - t0 >= 5000)
      m->gave_up = 1;
    else
      pc_cond_wait_ms (&m->cv, &m->lock, 100);
  }
  pthread_mutex_unlock (&m->lock);
}

static void
meter_after (struct tu_hook *h)
{
  struct meter *m = (struct meter *) h;

  pthread_mutex_lock (&m->lock);
  m->now--;
  pthread_mutex_unlock (&m->lock);
}

/* A round of width w has exactly w writers at work, whether the pool
 * wakes all of its helpers (w = pcache-writeback-threads) or some.
 */
static void
test_width (void)
{
  static const unsigned widths[] = { 1, 3, 8 };
  const unsigned n = 64;
  unsigned i, j;

  for (i = 0; i < sizeof widths / sizeof widths[0]; i++) {
    const char *p = tu_fresh ("width");
    struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
    struct meter m = {
      .hook = { tu_mem_backend (mem), meter_before, meter_after },
      .want = widths[i],
    };
    struct pc_backend bg = tu_hook_backend (&m.hook);
    struct pc_config cfg;
    pc_cache *c;
    int r, rounds = 0;

    pthread_mutex_init (&m.lock, NULL);
    pthread_cond_init (&m.cv, NULL);
    tu_config (&cfg, p, CSIZE);
    cfg.cache_on_read = 0;
    cfg.wb_threads = 8;
    c = tu_open (&cfg, BSIZE);
    CU_ASSERT_PTR_NOT_NULL_FATAL (c);
    pc_cache_set_backend (c, &bg);
    /* Every other block: no two extents merge into one write. */
    for (j = 0; j < n; j++)
      tu_write (c, j * 8192, 4096, 7);
    commit (c);
    while ((r = pc_writeback_step_width (c, widths[i])) == 1 && ++rounds < 100)
      ;
    CU_ASSERT_EQUAL (r, 0);
    CU_ASSERT_EQUAL (m.gave_up, 0);
    CU_ASSERT_EQUAL (m.most, widths[i]);
    for (j = 0; j < n; j++)
      CU_ASSERT_EQUAL (tu_check (mem->buf + j * 8192, 4096, j * 8192, 7), -1);
    pc_cache_close (c);
    tu_mem_free (mem);
    pthread_mutex_destroy (&m.lock);
    pthread_cond_destroy (&m.cv);
    unlink (p);
  }
}

/* Waiting for space.  A cache of under 16 segments has one data head,
 * and with pcache-gc-percent at its maximum, the log's reserve can be
 * all that is free while usage stays below the GC threshold.
 */
#define SPACE_CSIZE (14 * TU_MIB)

struct space_writer {
  pc_cache *c;
  pthread_t t;
  pthread_mutex_t lock;
  pthread_cond_t cv;
  int r, done;
};

static void *
space_write (void *arg)
{
  struct space_writer *w = arg;
  uint8_t b[4096];
  int err = 0, r;

  tu_fill (b, sizeof b, 0, 9);
  r = pc_write (w->c, b, sizeof b, 0, 0, &err);
  pthread_mutex_lock (&w->lock);
  w->r = r;
  w->done = 1;
  pthread_cond_signal (&w->cv);
  pthread_mutex_unlock (&w->lock);
  return NULL;
}

static void
start_writer (struct space_writer *w)
{
  w->done = 0;
  CU_ASSERT_EQUAL_FATAL (pthread_create (&w->t, NULL, space_write, w), 0);
}

/* Fill every segment but the log's reserve, the head's too, with
 * written-back data that only GC frees: the next write must wait.
 */
static void
fill_clean (pc_cache *c)
{
  uint64_t off = 0;

  while (pc_segs_nfree (&c->segs) > PC_LOG_RESERVE ||
         c->heads[0].off < c->seg_size) {
    tu_write (c, off % FILLER, 4096, 5);
    off += 4096;
  }
  commit (c);
  write_back_all (c);
}

/* The writer's wait has no timeout to fall back on: if it is not done
 * within 30 s, it missed its wake-up.  It is then freed (GC, and a
 * broadcast for a wait that would not check for space) to end the test.
 */
static void
join_writer (struct space_writer *w)
{
  uint64_t end = pc_now_ms () + 30000;
  int missed = 0;

  pthread_mutex_lock (&w->lock);
  while (!w->done) {
    if (pc_now_ms () < end) {
      pc_cond_wait_ms (&w->cv, &w->lock, 1000);
      continue;
    }
    missed = 1;
    pthread_mutex_unlock (&w->lock);
    pc_gc_run (w->c, 1);
    pthread_mutex_lock (&w->c->segs.free_lock);
    pthread_cond_broadcast (&w->c->segs.free_cv);
    pthread_mutex_unlock (&w->c->segs.free_lock);
    pthread_mutex_lock (&w->lock);
    pc_cond_wait_ms (&w->cv, &w->lock, 1000);
  }
  pthread_mutex_unlock (&w->lock);
  pthread_join (w->t, NULL);
  CU_ASSERT_EQUAL (missed, 0);
  CU_ASSERT_EQUAL (w->r, 0);
}

/* A writer that finds no free segment is woken by the GC that frees
 * one, whether GC runs before the writer waits or while it does, and
 * without the timed retry.
 */
static void
test_space_wakes (void)
{
  const char *p = tu_fresh ("space");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  struct space_writer w;
  struct pc_config cfg;
  pc_cache *c;
  uint64_t seq;
  int err = 0;

  tu_config (&cfg, p, SPACE_CSIZE);
  cfg.cache_on_read = 0;
  cfg.gc_percent = PC_MAX_GC_PERCENT;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (c->nheads, 1);
  CU_ASSERT_FATAL ((uint64_t) (c->nsegs - PC_LOG_RESERVE) * 100 <=
                   (uint64_t) c->nsegs * PC_MAX_GC_PERCENT);
  pc_cache_set_backend (c, &bg);
  c->segs.wait_ms = 3600 * 1000;
  w.c = c;
  pthread_mutex_init (&w.lock, NULL);
  pthread_cond_init (&w.cv, NULL);

  /* GC between the writer's failed allocation and its wait: the writer
   * is held where it kicks the (absent) workers, after it committed the
   * key buffers, which the zero record shows.
   */
  fill_clean (c);
  CU_ASSERT_EQUAL (pc_zero (c, 4096, FILLER, 0, &err), 0);
  pthread_mutex_lock (&c->bg_lock);
  seq = atomic_load (&c->log.head_seq);
  start_writer (&w);
  while (atomic_load (&c->log.head_seq) == seq)
    usleep (1000);
  /* Not yet a waiter, below the threshold: GC must see it is needed. */
  CU_ASSERT (pc_gc_run (c, 0) > 0);
  pthread_mutex_unlock (&c->bg_lock);
  join_writer (&w);

  /* GC while the writer waits. */
  fill_clean (c);
  start_writer (&w);
  while (pc_segs_waiters (&c->segs) == 0)
    usleep (1000);
  CU_ASSERT (pc_gc_run (c, 0) > 0);
  join_writer (&w);

  pc_cache_close (c);
  tu_mem_free (mem);
  pthread_mutex_destroy (&w.lock);
  pthread_cond_destroy (&w.cv);
  unlink (p);
}

/* Epoch 1 takes two batches (more ksets than a batch holds), epoch 2
 * one.  Held after the first batch, writeback still finishes epoch 1,
 * which the backend then holds whole, and writes nothing of epoch 2
 * until released.  The backing epoch follows.
 */
static void
test_hold_boundary (void)
{
  const char *p = tu_fresh ("hold");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_at (p);
  uint64_t e1;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  pc_hold_init (c);
  e1 = pc_log_epoch (c);
  fillers (c, 50, 1);
  CU_ASSERT_EQUAL (pc_log_commit_all (c, 1), 0);
  tu_write (c, 0, 8192, 2);
  CU_ASSERT_EQUAL (pc_log_commit_all (c, 1), 0);
  CU_ASSERT_EQUAL (pc_client_epoch (c), e1 + 1);

  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e1 - 1);
  CU_ASSERT_NOT_EQUAL (tu_check (mem->buf + FILLER, 50 * 4096, FILLER, 1), -1);
  /* What pc_cache_hold does without waiting: writeback is inside e1. */
  CU_ASSERT_EQUAL (atomic_load (&c->wb_last_epoch), e1);
  atomic_store (&c->hold_epoch, e1);
  atomic_store (&c->hold, 1);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);           /* the rest of e1 */
  CU_ASSERT_EQUAL (pc_writeback_step (c), 0);           /* held */
  CU_ASSERT_EQUAL (pc_writeback_step (c), 0);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + FILLER, 50 * 4096, FILLER, 1), -1);
  CU_ASSERT_EQUAL (tu_check_byte (mem->buf, 8192, 0xEE), -1);
  CU_ASSERT (pc_dirty_age_ms (c) < 60000);

  pc_cache_release (c);
  write_back_all (c);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e1 + 1);
  CU_ASSERT_EQUAL (tu_check (mem->buf, 8192, 0, 2), -1);
  CU_ASSERT_EQUAL (pc_dirty_age_ms (c), 0);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* More ksets dirty than the ring of commit marks holds, committed in
 * less than a step: one mark covers them, and their age is known (a
 * client flushing after every write must not look like one whose data
 * is too old).  Once the oldest dirty kset's mark has left the ring, the
 * age shown is a lower bound (the oldest mark left), and write-back
 * counts the data as too old for any bound.
 */
static void
test_age_past_ring (void)
{
  const char *p = tu_fresh ("agering");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_at (p);
  uint64_t head, now;
  int err = 0;
  unsigned i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  CU_ASSERT_EQUAL (pc_cache_set_tunable (c, PC_TUNE_WB_MAX_AGE, 3600), 0);
  for (i = 0; i < PC_LOG_TIMES + 64; i++) {
    CU_ASSERT_EQUAL (pc_zero (c, 4096, (uint64_t) (i % 64) * 4096, 0, &err),
                     0);
    commit (c);
  }
  CU_ASSERT (pc_dirty_age_ms (c) < 60000);
  CU_ASSERT_FALSE (pc_dirty_too_old (c));

  /* A mark for every step since: the oldest dirty kset's is gone. */
  head = atomic_load (&c->log.head_seq);
  now = pc_now_ms ();
  pthread_mutex_lock (&c->log.lock);
  for (i = 0; i < PC_LOG_TIMES; i++)
    pc_log_mark (&c->log, head - 1, now, 0);
  pthread_mutex_unlock (&c->log.lock);
  CU_ASSERT (pc_dirty_age_ms (c) < 60000);
  CU_ASSERT_TRUE (pc_dirty_too_old (c));
  write_back_all (c);
  CU_ASSERT_EQUAL (pc_dirty_age_ms (c), 0);
  CU_ASSERT_FALSE (pc_dirty_too_old (c));
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* The pace's credit, on a clock the test moves: it grows at the rate,
 * a write spends it and may leave it owed, and a pause saves a tenth of
 * a second's worth at most.
 */
static void
test_pace (void)
{
  struct pc_pace p;
  uint64_t t = 1000000, sent = 0, ms;

  pc_pace_init (&p);
  /* No pace: always, whatever was spent. */
  pc_pace_spend (&p, 1 << 30);
  CU_ASSERT_TRUE (pc_pace_ok (&p, 0, t));
  CU_ASSERT_TRUE (pc_pace_ok (&p, 0, t));
  /* Paced from nothing: a millisecond's worth first. */
  CU_ASSERT_FALSE (pc_pace_ok (&p, 1000000, t));
  CU_ASSERT_TRUE (pc_pace_ok (&p, 1000000, t + 1));
  pc_pace_spend (&p, 1000);             /* the 1000 bytes it grew */
  CU_ASSERT_FALSE (pc_pace_ok (&p, 1000000, t + 1));
  /* A 64 KiB write is owed for 66 ms: not before, then again. */
  pc_pace_spend (&p, 65536);
  CU_ASSERT_FALSE (pc_pace_ok (&p, 1000000, t + 66));
  CU_ASSERT_TRUE (pc_pace_ok (&p, 1000000, t + 67));
  /* Calls closer together than a byte's worth lose no time: at 500
   * bytes a second, 1000 owed are paid in 2 s of calls a millisecond
   * apart.
   */
  pc_pace_spend (&p, 1464);
  for (ms = t + 68; ms < t + 67 + 1990; ms++)
    pc_pace_ok (&p, 500, ms);
  CU_ASSERT_FALSE (pc_pace_ok (&p, 500, t + 67 + 1990));
  for (ms = t + 67 + 1991; ms < t + 67 + 2004; ms++)
    pc_pace_ok (&p, 500, ms);
  CU_ASSERT_TRUE (pc_pace_ok (&p, 500, t + 67 + 2004));
  /* A long pause saves a tenth of a second's worth, no more. */
  t += 100000;
  CU_ASSERT_TRUE (pc_pace_ok (&p, 1000000, t));
  pc_pace_spend (&p, 100000);
  CU_ASSERT_FALSE (pc_pace_ok (&p, 1000000, t));
  /* Over a long run, writes of any size average the rate. */
  for (ms = 0; ms < 10000; ms++) {
    while (pc_pace_ok (&p, 1000000, t + ms)) {
      uint64_t len = 4096 << (ms % 9);

      pc_pace_spend (&p, len);
      sent += len;
    }
  }
  /* 9999 ms at 1 MB/s, and the last write's debt at most. */
  CU_ASSERT (sent >= 9999000 && sent < 9999000 + (4096 << 8));
  pc_pace_destroy (&p);
}

/* Writeback's writes spend its pace, byte for byte; zeroes, which move
 * no data, do not.
 */
static void
test_pace_spent (void)
{
  const char *p = tu_fresh ("pace");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_at (p);
  int err;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  tu_write (c, 0, 8192, 1);
  tu_write (c, 65536, 4096, 2);
  CU_ASSERT_EQUAL (pc_zero (c, 1 << 20, 1 << 20, 0, &err), 0);
  commit (c);
  /* From no credit: what the round writes is owed after it. */
  CU_ASSERT_TRUE (pc_pace_ok (&c->wb_pace, 0, pc_now_ms ()));
  write_back_all (c);
  CU_ASSERT_EQUAL (written (mem, 0, BSIZE, SIZE_MAX), 12288);
  CU_ASSERT_EQUAL (c->wb_pace.credit, -12288);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

static const struct tu_case cases[] = {
  { "overwritten in a later batch", test_overwritten_later },
  { "overwritten in the next epoch", test_overwritten_next_epoch },
  { "rewritten while its batch goes down", test_late_rewrite },
  { "rewritten, then flushed, while its batch goes down",
    test_late_rewrite_flushed },
  { "overwriter committed first", test_overwriter_committed },
  { "fragmented record goes whole", test_fragmented },
  { "record in pieces", test_pieces },
  { "busy key buffer", test_busy_buffer },
  { "commits wake idle writeback", test_commit_wakes },
  { "far below its thresholds, fewer wake-ups", test_idle_wakes_apart },
  { "a round has width writers", test_width },
  { "freed space wakes a writer", test_space_wakes },
  { "a hold stops at an epoch boundary", test_hold_boundary },
  { "dirty age past the ring of commit times", test_age_past_ring },
  { "a pace in bytes a second", test_pace },
  { "writeback spends its pace", test_pace_spent },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("writeback", cases, 120, 0);   /* a hang is a failure */
}
