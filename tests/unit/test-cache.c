/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for the data path with the background workers and an
 * in-memory backend: read misses and caching, odd writes, pc_map,
 * writeback content and ordering, a full cache, backend errors,
 * concurrent clients and a restart with dirty data.
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
#include "workers.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)     /* 23 segments of 1 MiB */
#define BSIZE (32 * TU_MIB)

/* A cache over mem, started unless opened with rig_open_idle. */
static int
rig_open_idle (struct tu_rig *r, const char *name,
               const struct pc_config *base, uint64_t csize, int init)
{
  return tu_rig_open (r, name, base, csize, BSIZE, init);
}

static int
rig_open (struct tu_rig *r, const char *name, const struct pc_config *base,
          uint64_t csize, int init)
{
  if (rig_open_idle (r, name, base, csize, init) == -1)
    return -1;
  return pc_cache_start (r->c, &r->be);
}

static void
rig_zero (struct tu_rig *r, uint64_t off, uint32_t len, unsigned flags)
{
  int err = 0;

  CU_ASSERT_EQUAL (pc_zero (r->c, len, off, flags, &err), 0);
  memset (r->model + off, 0, len);
}

static void
rig_trim (struct tu_rig *r, uint64_t off, uint32_t len)
{
  int err = 0;

  CU_ASSERT_EQUAL (pc_trim (r->c, len, off, 0, &err), 0);
  memset (r->model + off, 0, len);
}

static void
rig_drain (struct tu_rig *r)
{
  int err = 0;

  CU_ASSERT_EQUAL (pc_cache_drain (r->c, &err), 0);
}

/* Offset of the first difference, or -1. */
static long
first_diff (const uint8_t *a, const uint8_t *b, size_t len)
{
  size_t i;

  if (memcmp (a, b, len) == 0)
    return -1;
  for (i = 0; a[i] == b[i]; i++)
    ;
  return (long) i;
}

/* Reading [off, off+len) through the cache gives the model. */
static int
reads_model (struct tu_rig *r, uint64_t off, uint32_t len)
{
  uint8_t *b = malloc (len);
  int err = 0;
  long d = -2;

  if (pc_read (r->c, b, len, off, &r->be, &err) == 0)
    d = first_diff (b, r->model + off, len);
  if (d != -1)
    fprintf (stderr, "\nread [%" PRIu64 ", +%u) differs at +%ld\n", off,
             len, d);
  free (b);
  return d == -1;
}

/* The whole disk, read through the cache a MiB at a time. */
static int
disk_reads_model (struct tu_rig *r)
{
  uint64_t off;

  for (off = 0; off < BSIZE; off += TU_MIB)
    if (!reads_model (r, off, TU_MIB))
      return 0;
  return 1;
}

static int
disk_reads_model_cb (void *arg)
{
  return disk_reads_model (arg) ? 0 : 1;
}

/* disk_reads_model in a child process, the workers stopped first (fork
 * copies only this thread).  A read that crashes (ASan) then fails the
 * test instead of ending the program.
 */
static int
disk_reads_model_in_child (struct tu_rig *r)
{
  int st;

  pc_cache_stop (r->c);
  st = tu_in_child (disk_reads_model_cb, r);
  if (st != 0)
    fprintf (stderr, "\nreading child: exit status %d\n", st);
  return st == 0;
}

static int
backend_is_model (struct tu_rig *r)
{
  long d;

  pthread_mutex_lock (&r->mem->lock);
  d = first_diff (r->mem->buf, r->model, BSIZE);
  pthread_mutex_unlock (&r->mem->lock);
  if (d != -1)
    fprintf (stderr, "\nbackend differs from the model at %ld\n", d);
  return d == -1;
}

/* ------------------------------------------------------------------ */

static void
test_read_miss (void)
{
  struct tu_rig r;
  struct pc_stats st;
  uint64_t n0;
  const uint64_t off = TU_MIB + 100;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "miss", NULL, CSIZE, -1), 0);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 0, BSIZE), PC_MAP_UNCACHED);
  n0 = tu_mem_preads (r.mem);
  CU_ASSERT_TRUE (reads_model (&r, off, 65536));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 1);
  CU_ASSERT_EQUAL (tu_type_at (r.c, off, 65536), PC_MAP_CLEAN);
  CU_ASSERT_EQUAL (tu_type_at (r.c, off - 100, 100), PC_MAP_UNCACHED);
  /* Again: a hit. */
  CU_ASSERT_TRUE (reads_model (&r, off, 65536));
  CU_ASSERT_TRUE (reads_model (&r, off + 1000, 3));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 1);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.read_misses, 1);
  CU_ASSERT_EQUAL (st.read_hits, 2);
  /* Around it: only the two gaps go to the backend, once. */
  CU_ASSERT_TRUE (reads_model (&r, TU_MIB, 256 * 1024));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 3);
  CU_ASSERT_TRUE (reads_model (&r, TU_MIB, 256 * 1024));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 3);
  /* Across a stripe boundary. */
  CU_ASSERT_TRUE (reads_model (&r, 4 * TU_MIB - 4096, 8192));
  CU_ASSERT_TRUE (reads_model (&r, 4 * TU_MIB - 4096, 8192));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 5);
  /* Written over, part of the copy becomes data of the cache's own. */
  tu_rig_write (&r, off + 4096, 4096, 3);
  CU_ASSERT_EQUAL (tu_type_at (r.c, off + 4096, 4096), PC_MAP_DATA);
  CU_ASSERT_EQUAL (tu_type_at (r.c, off, 4096), PC_MAP_CLEAN);
  CU_ASSERT_EQUAL (tu_type_at (r.c, off + 8192, 4096), PC_MAP_CLEAN);
  /* A range past the end is refused. */
  {
    uint8_t b[16];
    int err = 0;
    CU_ASSERT_EQUAL (pc_read (r.c, b, 16, BSIZE - 8, &r.be, &err), -1);
    CU_ASSERT_EQUAL (err, EINVAL);
  }
  tu_rig_close (&r);
}

/* A read over many keys: a run of keys whose payloads follow each other
 * in a segment is pinned and copied as one, and neighbours whose
 * payloads do not (written in reverse, or one rewritten since) are kept
 * apart.
 */
static void
test_read_runs (void)
{
  struct tu_rig r;
  const uint64_t base = 8 * TU_MIB;
  int i;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "runs", NULL, CSIZE, -1), 0);
  for (i = 0; i < 64; i++)
    tu_rig_write (&r, base + i * 4096, 4096, 1000 + i);
  for (i = 0; i < 64; i += 3)
    tu_rig_write (&r, base + i * 4096, 4096, 2000 + i);
  for (i = 8; i-- > 0; )
    tu_rig_write (&r, base + (64 + i) * 4096, 4096, 3000 + i);
  tu_rig_write (&r, base + 72 * 4096, 512, 4000);
  tu_rig_write (&r, base + 72 * 4096 + 512, 3584, 4001);
  CU_ASSERT_TRUE (reads_model (&r, base, 80 * 4096));
  CU_ASSERT_TRUE (reads_model (&r, base + 100, 70 * 4096));
  CU_ASSERT_TRUE (reads_model (&r, base + 63 * 4096 + 1, 10 * 4096));
  tu_rig_close (&r);
}

static void
test_no_cache_on_read (void)
{
  struct tu_rig r;
  struct pc_config cfg;
  uint64_t n0;

  pc_config_init (&cfg);
  cfg.cache_on_read = 0;
  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "nocor", &cfg, CSIZE, -1), 0);
  n0 = tu_mem_preads (r.mem);
  CU_ASSERT_TRUE (reads_model (&r, 8192, 65536));
  CU_ASSERT_TRUE (reads_model (&r, 8192, 65536));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0 + 2);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 0, BSIZE), PC_MAP_UNCACHED);
  /* Written data is still served from the cache. */
  tu_rig_write (&r, 8192, 4096, 5);
  n0 = tu_mem_preads (r.mem);
  CU_ASSERT_TRUE (reads_model (&r, 8192, 4096));
  CU_ASSERT_EQUAL (tu_mem_preads (r.mem), n0);
  tu_rig_close (&r);
}

/* Writes of odd sizes and places; pc_map. */
static const struct { uint64_t off; uint32_t len; } odd[] = {
  { 100000, 1 },
  { 3, 511 },
  { 4 * TU_MIB - 1000, 65536 },         /* crosses a 4 MiB stripe */
  { 10 * TU_MIB + 123, 1536 * 1024 + 7 },  /* longer than a segment */
  { 8 * TU_MIB - 1, 2 },                /* a byte each side of a stripe */
  { BSIZE - 1, 1 },                     /* last byte */
};
#define NODD (sizeof odd / sizeof odd[0])

static void
test_odd_writes (void)
{
  struct tu_rig r;
  struct tu_map m;
  size_t i;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "odd", NULL, CSIZE, -1), 0);
  for (i = 0; i < NODD; i++)
    tu_rig_write (&r, odd[i].off, odd[i].len, 10 + i);
  rig_zero (&r, 20 * TU_MIB, 8192, 0);
  rig_trim (&r, 20 * TU_MIB + 65536, 4096);

  /* Map before any read (reads of gaps cache them). */
  for (i = 0; i < NODD; i++)
    CU_ASSERT_EQUAL (tu_type_at (r.c, odd[i].off, odd[i].len), PC_MAP_DATA);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 20 * TU_MIB, 8192), PC_MAP_ZERO);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 20 * TU_MIB + 65536, 4096), PC_MAP_ZERO);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 0, 3), PC_MAP_UNCACHED);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 514, 100000 - 514), PC_MAP_UNCACHED);
  CU_ASSERT_EQUAL (tu_type_at (r.c, 20 * TU_MIB + 8192, 65536 - 8192),
                   PC_MAP_UNCACHED);
  /* The whole disk, in order, without holes. */
  CU_ASSERT_EQUAL (tu_map_collect (r.c, 0, BSIZE, &m), 0);
  CU_ASSERT_FALSE (m.overflow);
  CU_ASSERT_EQUAL (m.e[0].off, 0);
  for (i = 1; i < m.n; i++)
    CU_ASSERT_EQUAL (m.e[i].off, m.e[i - 1].off + m.e[i - 1].len);
  CU_ASSERT_EQUAL (m.e[m.n - 1].off + m.e[m.n - 1].len, BSIZE);
  /* NODD + 2 cached runs, a gap before each: nothing else. */
  CU_ASSERT_EQUAL (m.n, 2 * (NODD + 2));

  for (i = 0; i < NODD; i++)
    CU_ASSERT_TRUE (reads_model (&r, odd[i].off, odd[i].len));
  CU_ASSERT_TRUE (reads_model (&r, 0, 8192));
  CU_ASSERT_TRUE (reads_model (&r, 20 * TU_MIB, 128 * 1024));
  CU_ASSERT_TRUE (disk_reads_model (&r));
  tu_rig_close (&r);
}

/* After a drain, the backend holds exactly what was written. */
static void
test_writeback (void)
{
  struct tu_rig r;
  size_t i;
  int saw_trim = 0, saw_zero = 0;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "wb", NULL, CSIZE, -1), 0);
  tu_mem_log (r.mem, 1);
  for (i = 0; i < NODD; i++)
    tu_rig_write (&r, odd[i].off, odd[i].len, 20 + i);
  tu_rig_write (&r, 100000, 1, 40);      /* rewritten in the same epoch */
  rig_zero (&r, 20 * TU_MIB, 8192, 0);
  rig_zero (&r, 21 * TU_MIB, 8192, PC_MAY_TRIM);
  rig_trim (&r, 22 * TU_MIB, 12288);
  rig_drain (&r);
  CU_ASSERT_TRUE (backend_is_model (&r));
  pthread_mutex_lock (&r.mem->lock);
  CU_ASSERT (r.mem->nflush > 0);
  CU_ASSERT_EQUAL (r.mem->log[r.mem->nlog - 1].op, TU_OP_FLUSH);
  for (i = 0; i < r.mem->nlog; i++) {
    const struct tu_log_ent *e = &r.mem->log[i];
    if (e->op == TU_OP_TRIM && e->off == 22 * TU_MIB && e->len == 12288)
      saw_trim = 1;
    if (e->op == TU_OP_ZERO && e->off == 20 * TU_MIB && e->len == 8192)
      saw_zero = 1;
  }
  pthread_mutex_unlock (&r.mem->lock);
  CU_ASSERT_TRUE (saw_trim);
  CU_ASSERT_TRUE (saw_zero);

  /* More on top, then drain again. */
  tu_rig_write (&r, 20 * TU_MIB + 4096, 4096, 50);
  tu_rig_write (&r, 22 * TU_MIB, 512, 51);
  rig_drain (&r);
  CU_ASSERT_TRUE (backend_is_model (&r));
  CU_ASSERT_TRUE (disk_reads_model (&r));
  tu_rig_close (&r);
}

/* The backend always holds a prefix of the client's flush epochs: no
 * write of epoch k+1 reaches it before the flush that follows the last
 * write of epoch k.  With live workers writeback keeps up epoch by
 * epoch; with workers started only after the last epoch, the whole log
 * is there at once and the batches themselves must keep epochs apart.
 */
static void
ordering (int live)
{
  enum { EPOCHS = 10, WRITES = 12 };
  struct tu_rig r;
  uint64_t rnd = 12345;
  uint8_t *b = malloc (32768);
  long last[EPOCHS + 2], first[EPOCHS + 2];
  size_t i, n;
  int e, w, err = 0, bad = 0;

  CU_ASSERT_EQUAL_FATAL (rig_open_idle (&r, "order", NULL, CSIZE, 0xEE), 0);
  if (live)
    CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.be), 0);
  tu_mem_log (r.mem, 1);
  for (e = 1; e <= EPOCHS; e++) {
    for (w = 0; w < WRITES; w++) {
      uint32_t len = 4096 + tu_rand (&rnd) % (32768 - 4096 + 1);
      uint64_t off = tu_rand (&rnd) % (BSIZE - len);

      memset (b, e, len);       /* every piece's first byte is e */
      CU_ASSERT_EQUAL (pc_write (r.c, b, len, off, 0, &err), 0);
      memset (r.model + off, e, len);
    }
    CU_ASSERT_EQUAL (pc_flush (r.c, &err), 0);
  }
  if (!live)
    CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.be), 0);
  rig_drain (&r);
  CU_ASSERT_TRUE (backend_is_model (&r));

  pthread_mutex_lock (&r.mem->lock);
  n = r.mem->nlog;
  for (e = 0; e < EPOCHS + 2; e++)
    last[e] = first[e] = -1;
  for (i = 0; i < n; i++) {
    const struct tu_log_ent *x = &r.mem->log[i];
    if (x->op != TU_OP_WRITE)
      continue;
    if (x->first < 1 || x->first > EPOCHS) {
      bad++;
      continue;
    }
    if (first[x->first] == -1)
      first[x->first] = i;
    last[x->first] = i;
  }
  CU_ASSERT_EQUAL (bad, 0);
  for (e = 1; e <= EPOCHS; e++)
    CU_ASSERT (last[e] >= 0);   /* every epoch reached the backend */
  for (e = 1; e < EPOCHS; e++) {
    long f = -1;
    for (i = last[e] + 1; i < n; i++)
      if (r.mem->log[i].op == TU_OP_FLUSH) {
        f = i;
        break;
      }
    CU_ASSERT (f >= 0);
    if (first[e + 1] >= 0 && first[e + 1] < f) {
      fprintf (stderr, "\nepoch %d write at %ld before the flush at %ld "
               "after epoch %d\n", e + 1, first[e + 1], f, e);
      CU_FAIL ("write of a later epoch before the flush");
    }
  }
  pthread_mutex_unlock (&r.mem->lock);
  free (b);
  tu_rig_close (&r);
}

static void
test_ordering_live (void)
{
  ordering (1);
}

static void
test_ordering_backlog (void)
{
  ordering (0);
}

/* Writeback's width, on an idle rig (no workers) whose dirty count and
 * client activity are set by hand: held back below
 * pcache-writeback-percent while the client is busy, one writer just
 * past it, more as the backlog grows, all of them at the GC threshold,
 * and all of them whenever the client is quiet or a drain waits.  A
 * client that only reads holds it back below the GC threshold.
 */
static void
busy (pc_cache *c, int writing)
{
  atomic_store (&c->last_io_ms, pc_now_ms ());
  if (writing)
    atomic_store (&c->last_write_ms, pc_now_ms ());
  else
    atomic_store (&c->last_write_ms, pc_now_ms () - PC_WB_IDLE_MS - 1);
}

static void
test_wb_width (void)
{
  struct pc_config cfg;
  struct tu_rig r;
  uint64_t size, dirty = 0;
  unsigned pct, w, prev = 0;

  pc_config_init (&cfg);
  cfg.wb_percent = 10;
  cfg.gc_percent = 70;
  cfg.wb_threads = 16;
  CU_ASSERT_EQUAL_FATAL (rig_open_idle (&r, "wbw", &cfg, CSIZE, 0), 0);
  size = (uint64_t) r.c->nsegs << r.c->seg_shift;

  /* Nothing dirty: nothing to hold back. */
  busy (r.c, 1);
  CU_ASSERT_EQUAL (pc_wb_width (r.c), 16);
  for (pct = 1; pct <= 75; pct++) {
    uint64_t want = size * pct / 100;

    PC_COUNT (r.c, dirty_bytes, want - dirty);
    dirty = want;
    /* A busy client, whatever the time the loop has taken. */
    busy (r.c, 1);
    w = pc_wb_width (r.c);
    /* At 10 and 70 the percentage the cache works out may round down. */
    if (pct < 10) {
      CU_ASSERT_EQUAL (w, 0);
    }
    else if (pct == 10) {
      CU_ASSERT (w <= 1);
    }
    else if (pct == 11) {
      CU_ASSERT_EQUAL (w, 1);
    }
    else if (pct > 70) {
      CU_ASSERT_EQUAL (w, 16);
    }
    else {
      CU_ASSERT (w >= prev && w >= 1 && w <= 16);
    }
    prev = w;
  }
  /* Halfway between the thresholds: about half the writers. */
  PC_UNCOUNT (r.c, dirty_bytes, dirty - size * 40 / 100);
  dirty = size * 40 / 100;
  busy (r.c, 1);
  w = pc_wb_width (r.c);
  CU_ASSERT (w >= 7 && w <= 9);
  /* At a pace that writes the 30% past the threshold in PC_WB_PACE_S. */
  CU_ASSERT (pc_wb_pace (r.c) >= size * 30 / 100 / PC_WB_PACE_S - size / 100);
  CU_ASSERT (pc_wb_pace (r.c) <= size * 30 / 100 / PC_WB_PACE_S + size / 100);
  /* Eager writeback (pcache-writeback-percent=0) keeps none. */
  atomic_store (&r.c->wb_percent, 0);
  CU_ASSERT (pc_wb_width (r.c) >= 1);
  CU_ASSERT_EQUAL (pc_wb_pace (r.c), 0);
  atomic_store (&r.c->wb_percent, 10);
  /* Reads only: nothing new to absorb, writeback waits. */
  busy (r.c, 0);
  CU_ASSERT_EQUAL (pc_wb_width (r.c), 0);
  /* Past the GC threshold it goes on regardless. */
  PC_COUNT (r.c, dirty_bytes, size * 35 / 100);
  CU_ASSERT_EQUAL (pc_wb_width (r.c), 16);
  CU_ASSERT_EQUAL (pc_wb_pace (r.c), 0);
  PC_UNCOUNT (r.c, dirty_bytes, size * 35 / 100);

  /* Below the threshold again: held back, unless the client is quiet
   * or someone drains.
   */
  PC_UNCOUNT (r.c, dirty_bytes, dirty - size * 5 / 100);
  busy (r.c, 1);
  CU_ASSERT_EQUAL (pc_wb_width (r.c), 0);
  atomic_store (&r.c->last_io_ms, pc_now_ms () - PC_WB_IDLE_MS - 1);
  CU_ASSERT_EQUAL (pc_wb_width (r.c), 16);
  CU_ASSERT_EQUAL (pc_wb_pace (r.c), 0);
  busy (r.c, 1);
  atomic_fetch_add (&r.c->drainers, 1);
  CU_ASSERT_EQUAL (pc_wb_width (r.c), 16);
  atomic_fetch_sub (&r.c->drainers, 1);

  /* The count is not real dirty data: clear it before closing. */
  PC_UNCOUNT (r.c, dirty_bytes, size * 5 / 100);
  tu_rig_close (&r);
}

/* A backend that holds its n-th write until opened. */
struct gate {
  struct tu_hook hook;                  /* first: the hook is the gate */
  pthread_mutex_t lock;
  pthread_cond_t cv;
  unsigned writes, at;
  int held, open;
};

static void
gate_before (struct tu_hook *h)
{
  struct gate *g = (struct gate *) h;

  pthread_mutex_lock (&g->lock);
  if (++g->writes == g->at) {
    g->held = 1;
    pthread_cond_broadcast (&g->cv);
    while (!g->open)
      pthread_cond_wait (&g->cv, &g->lock);
  }
  pthread_mutex_unlock (&g->lock);
}

static unsigned
gate_writes (struct gate *g)
{
  unsigned n;

  pthread_mutex_lock (&g->lock);
  n = g->writes;
  pthread_mutex_unlock (&g->lock);
  return n;
}

/* A read of cached data: the client is busy, and only reading. */
static void
hit (struct tu_rig *r, uint64_t off)
{
  uint8_t b[4096];
  int err = 0;

  CU_ASSERT_EQUAL (pc_read (r->c, b, sizeof b, off, &r->be, &err), 0);
}

/* A client that turns to reads only in the middle of a batch pauses it
 * at the next extent; when the client goes quiet, the batch goes on
 * where it stopped rather than from the start.
 */
static void
test_wb_pause (void)
{
  struct pc_config cfg;
  struct tu_rig r;
  struct gate g = { .hook.before = gate_before, .at = 4 };
  struct pc_backend gb = tu_hook_backend (&g.hook);
  struct pc_stats st;
  const unsigned n = 64;
  uint64_t size, extra, t0;
  unsigned i;

  pc_config_init (&cfg);
  cfg.wb_percent = 10;
  cfg.gc_percent = 70;
  cfg.wb_threads = 1;                 /* one writer: extents in order */
  CU_ASSERT_EQUAL_FATAL (rig_open_idle (&r, "wbp", &cfg, CSIZE, 0), 0);
  pthread_mutex_init (&g.lock, NULL);
  pthread_cond_init (&g.cv, NULL);
  g.hook.inner = r.be;
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &gb), 0);
  size = (uint64_t) r.c->nsegs << r.c->seg_shift;

  /* Below pcache-writeback-percent with a busy client: held.  Then a
   * backlog between the thresholds (counted, not written) starts it.
   */
  for (i = 0; i < n; i++)
    tu_rig_write (&r, i * 8192, 4096, 500 + i);
  CU_ASSERT_EQUAL (pc_log_commit_all (r.c, 0), 0);
  extra = size * 40 / 100;
  PC_COUNT (r.c, dirty_bytes, extra);
  busy (r.c, 1);
  pc_kick_workers (r.c);

  /* At the gate, the client stops writing and reads. */
  pthread_mutex_lock (&g.lock);
  while (!g.held)
    pthread_cond_wait (&g.cv, &g.lock);
  busy (r.c, 0);
  g.open = 1;
  pthread_cond_broadcast (&g.cv);
  pthread_mutex_unlock (&g.lock);

  /* Reading on until writeback waits again: nothing past the gate. */
  t0 = pc_now_ms ();
  while (atomic_load (&r.c->wb_wake_seq) == UINT64_MAX &&
         pc_now_ms () - t0 < 20000)
    hit (&r, 0);
  CU_ASSERT_NOT_EQUAL (atomic_load (&r.c->wb_wake_seq), UINT64_MAX);
  hit (&r, 0);
  CU_ASSERT_EQUAL (gate_writes (&g), g.at);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.writeback_rounds, 0);

  /* Quiet: the rest of the batch, each extent once. */
  atomic_store (&r.c->last_io_ms, pc_now_ms () - PC_WB_IDLE_MS - 1);
  pc_kick_workers (r.c);
  t0 = pc_now_ms ();
  do
    pc_cache_get_stats (r.c, &st);
  while (st.writeback_rounds == 0 && pc_now_ms () - t0 < 20000 &&
         sched_yield () == 0);
  CU_ASSERT_EQUAL (st.writeback_rounds, 1);
  CU_ASSERT_EQUAL (gate_writes (&g), n);
  CU_ASSERT_EQUAL (memcmp (r.mem->buf, r.model, n * 8192), 0);

  PC_UNCOUNT (r.c, dirty_bytes, extra);
  tu_rig_close (&r);
  pthread_mutex_destroy (&g.lock);
  pthread_cond_destroy (&g.cv);
}

static void
test_full_cache (void)
{
  struct tu_rig r;
  struct pc_stats st;
  uint64_t rnd = 777, total = 0, target = 5 * 12 * TU_MIB, gens;
  uint32_t i;
  uint8_t *b = malloc (65536);
  uint32_t seed = 1000;
  int err = 0;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "full", NULL, 12 * TU_MIB, -1), 0);
  while (total < target) {
    uint32_t len = (4096 + tu_rand (&rnd) % (65536 - 4096 + 1)) & ~511u;
    uint64_t off = (tu_rand (&rnd) % (BSIZE - len)) & ~(uint64_t) 511;

    tu_fill (b, len, off, seed++);
    if (pc_write (r.c, b, len, off, 0, &err) != 0) {
      CU_FAIL ("pc_write failed with a full cache");
      break;
    }
    memcpy (r.model + off, b, len);
    total += len;
  }
  rig_drain (&r);
  CU_ASSERT_TRUE (backend_is_model (&r));
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.dirty_ksets, 0);
  /* Data segments were reclaimed and reused many times over. */
  for (i = 0, gens = 0; i < r.c->nsegs; i++)
    gens += r.c->segs.seg[i].gen;
  CU_ASSERT (gens >= 4 * r.c->nsegs);
  /* Many index entries now point into reclaimed segments. */
  CU_ASSERT_TRUE (disk_reads_model_in_child (&r));
  free (b);
  tu_rig_close (&r);
}

/* Writeback survives backend errors: writes are still acknowledged and
 * the data gets down once the backend recovers.
 */
static void
test_backend_errors (void)
{
  struct tu_rig r;
  struct pc_stats st;
  uint64_t e0;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "errors", NULL, CSIZE, -1), 0);
  tu_mem_fail (r.mem, 3, 0);
  tu_rig_write (&r, 0, 65536, 60);
  tu_rig_write (&r, 5 * TU_MIB, 4096, 61);
  rig_zero (&r, 6 * TU_MIB, 4096, 0);
  rig_drain (&r);
  CU_ASSERT_EQUAL (r.mem->nfailed, 3);
  CU_ASSERT_EQUAL (r.mem->fail_writes, 0);
  CU_ASSERT_TRUE (backend_is_model (&r));
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT (st.writeback_errors > 0);
  e0 = st.writeback_errors;

  /* A failed flush: the batch is not done until a flush succeeds. */
  tu_mem_fail (r.mem, 0, 1);
  tu_rig_write (&r, 7 * TU_MIB, 8192, 62);
  rig_drain (&r);
  CU_ASSERT_EQUAL (r.mem->nfailed, 4);
  CU_ASSERT_TRUE (backend_is_model (&r));
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT (st.writeback_errors > e0);
  CU_ASSERT_TRUE (disk_reads_model (&r));
  tu_rig_close (&r);
}

/* ------------------------------------------------------------------ */
/* Concurrent clients.  Every 4 KiB block written carries a stamp in
 * each of its 8-byte words: block number, writer, write number.  Any
 * block read at any time must be one whole stamped block of the right
 * place; at the end each block holds its owner's final stamp.
 */

#define CC_BASE (2 * TU_MIB)
#define CC_BLOCKS 1024u                 /* 4 MiB, across a stripe edge */
#define CC_WRITERS 3
#define CC_OPS 200
#define CC_FINAL 0xFFFFFu

static inline uint64_t
stamp (uint64_t blk, unsigned tid, unsigned n)
{
  return (blk << 24) | ((uint64_t) tid << 20) | n;
}

static void
stamp_fill (uint8_t *b, uint64_t blk, unsigned nblk, unsigned tid,
            unsigned n)
{
  unsigned i, j;

  for (i = 0; i < nblk; i++) {
    uint64_t s = stamp (blk + i, tid, n);
    for (j = 0; j < 4096 / 8; j++)
      memcpy (b + i * 4096 + j * 8, &s, 8);
  }
}

/* Whether every block of b is one whole stamp of the right block. */
static int
stamp_ok (const uint8_t *b, uint64_t blk, unsigned nblk)
{
  unsigned i, j;

  for (i = 0; i < nblk; i++) {
    uint64_t s;
    memcpy (&s, b + i * 4096, 8);
    if (s >> 24 != blk + i)
      return 0;
    for (j = 1; j < 4096 / 8; j++)
      if (memcmp (b + i * 4096 + j * 8, &s, 8) != 0)
        return 0;
  }
  return 1;
}

struct cc {
  struct tu_rig *r;
  pthread_barrier_t bar;
  atomic_int writers_left;
  atomic_int errors;
  atomic_long reads;
};

struct cc_arg {
  struct cc *cc;
  unsigned tid;
};

static void *
cc_writer (void *arg)
{
  struct cc_arg *a = arg;
  struct cc *cc = a->cc;
  uint8_t *b = malloc (16 * 4096);
  uint64_t rnd = 1000 + a->tid;
  unsigned i;
  int err = 0;

  /* Phase 1: overlapping random writes. */
  for (i = 1; i <= CC_OPS; i++) {
    unsigned n = 1 + tu_rand (&rnd) % 16;
    uint64_t blk = tu_rand (&rnd) % (CC_BLOCKS - n + 1);

    stamp_fill (b, blk, n, a->tid, i);
    if (pc_write (cc->r->c, b, n * 4096, CC_BASE + blk * 4096, 0, &err))
      atomic_fetch_add (&cc->errors, 1);
    if (i % 50 == 0 && pc_flush (cc->r->c, &err))
      atomic_fetch_add (&cc->errors, 1);
  }
  pthread_barrier_wait (&cc->bar);
  /* Phase 2: each block by its owner only. */
  for (i = a->tid; i < CC_BLOCKS; i += CC_WRITERS) {
    stamp_fill (b, i, 1, a->tid, CC_FINAL);
    if (pc_write (cc->r->c, b, 4096, CC_BASE + i * 4096ULL, 0, &err))
      atomic_fetch_add (&cc->errors, 1);
  }
  atomic_fetch_sub (&cc->writers_left, 1);
  free (b);
  return NULL;
}

static void *
cc_reader (void *arg)
{
  struct cc *cc = arg;
  uint8_t *b = malloc (32 * 4096);
  uint64_t rnd = 4242;
  int err = 0;

  while (atomic_load (&cc->writers_left) > 0) {
    unsigned n = 1 + tu_rand (&rnd) % 32;
    uint64_t blk = tu_rand (&rnd) % (CC_BLOCKS - n + 1);

    if (pc_read (cc->r->c, b, n * 4096, CC_BASE + blk * 4096, &cc->r->be,
                 &err) != 0 || !stamp_ok (b, blk, n))
      atomic_fetch_add (&cc->errors, 1);
    atomic_fetch_add (&cc->reads, 1);
  }
  free (b);
  return NULL;
}

static void
concurrency (void)
{
  struct tu_rig r;
  struct cc cc;
  struct cc_arg args[CC_WRITERS];
  pthread_t w[CC_WRITERS], rd;
  unsigned i;
  int err = 0;

  if (rig_open (&r, "conc", NULL, CSIZE, 0) == -1) {
    CU_FAIL ("cannot open the cache");
    return;
  }
  /* The backend starts with stamps of writer 15, so every block is
   * always a valid stamp.
   */
  pthread_mutex_lock (&r.mem->lock);
  stamp_fill (r.mem->buf + CC_BASE, 0, CC_BLOCKS, 15, 0);
  pthread_mutex_unlock (&r.mem->lock);
  memset (&cc, 0, sizeof cc);
  cc.r = &r;
  atomic_store (&cc.writers_left, CC_WRITERS);
  pthread_barrier_init (&cc.bar, NULL, CC_WRITERS);
  if (pthread_create (&rd, NULL, cc_reader, &cc) != 0)
    abort ();
  for (i = 0; i < CC_WRITERS; i++) {
    args[i] = (struct cc_arg) { &cc, i };
    if (pthread_create (&w[i], NULL, cc_writer, &args[i]) != 0)
      abort ();
  }
  for (i = 0; i < CC_WRITERS; i++)
    pthread_join (w[i], NULL);
  pthread_join (rd, NULL);
  pthread_barrier_destroy (&cc.bar);
  CU_ASSERT_EQUAL (atomic_load (&cc.errors), 0);
  CU_ASSERT (atomic_load (&cc.reads) > 0);

  CU_ASSERT_EQUAL (pc_flush (r.c, &err), 0);
  rig_drain (&r);
  /* Final content: the owner's last stamp everywhere. */
  memcpy (r.model, r.mem->buf, BSIZE);          /* outside the area */
  for (i = 0; i < CC_BLOCKS; i++)
    stamp_fill (r.model + CC_BASE + i * 4096ULL, i, 1, i % CC_WRITERS,
                CC_FINAL);
  CU_ASSERT_TRUE (backend_is_model (&r));
  CU_ASSERT_TRUE (reads_model (&r, CC_BASE, CC_BLOCKS * 4096));
  tu_rig_close (&r);
}

/* Run a test body in a child process (no _FATAL asserts in it: those
 * would jump back into the child's copy of the runner).  A crash there,
 * such as an ASan report from a worker thread, fails this test instead
 * of ending the whole program.
 */
struct body { void (*fn) (void); };

static int
isolated_cb (void *arg)
{
  const struct body *b = arg;
  unsigned before = CU_get_number_of_failures (), i = 0;
  const CU_FailureRecord *f;

  b->fn ();
  for (f = CU_get_failure_list (); f; f = f->pNext, i++)
    if (i >= before)
      fprintf (stderr, "\n    (in child) %s:%u - %s", f->strFileName,
               f->uiLineNumber, f->strCondition);
  return CU_get_number_of_failures () > before;
}

static void
isolated (void (*fn) (void))
{
  struct body b = { fn };
  int st = tu_in_child (isolated_cb, &b);

  if (st != 0)
    fprintf (stderr, "\n    child exit status %d\n", st);
  CU_ASSERT_EQUAL (st, 0);
}

static void
test_concurrency (void)
{
  isolated (concurrency);
}

/* ------------------------------------------------------------------ */

/* Closing with dirty data (no drain) keeps it: a restart serves it from
 * the cache, and writes it back to the new backend.
 */
static void
test_restart_dirty (void)
{
  const char *p = tu_fresh ("restart");
  struct tu_mem *a = tu_mem_new (BSIZE, 0xAA), *b = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend ab = tu_mem_backend (a), bb = tu_mem_backend (b);
  struct pc_config cfg;
  struct pc_stats st;
  uint8_t buf[65536];
  pc_cache *c;
  int err = 0, i;

  tu_config (&cfg, p, CSIZE);
  cfg.commit_ms = 60000;        /* nothing is committed before close */
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (c, &ab), 0);
  for (i = 0; i < 8; i++) {
    tu_fill (buf, sizeof buf, i * TU_MIB + 512, 70 + i);
    CU_ASSERT_EQUAL (pc_write (c, buf, sizeof buf, i * TU_MIB + 512, 0, &err),
                     0);
  }
  CU_ASSERT_EQUAL (pc_zero (c, 4096, 30 * TU_MIB, 0, &err), 0);
  pc_cache_close (c);
  CU_ASSERT_EQUAL (a->npwrite, 0);      /* never written back */

  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_get_stats (c, &st);
  CU_ASSERT (st.dirty_ksets > 0);
  for (i = 0; i < 8; i++) {
    CU_ASSERT_EQUAL (pc_read (c, buf, sizeof buf, i * TU_MIB + 512, &bb,
                              &err), 0);
    CU_ASSERT_EQUAL (tu_check (buf, sizeof buf, i * TU_MIB + 512, 70 + i), -1);
  }
  CU_ASSERT_EQUAL (pc_read (c, buf, 4096, 30 * TU_MIB, &bb, &err), 0);
  CU_ASSERT_EQUAL (tu_check_byte (buf, 4096, 0), -1);
  CU_ASSERT_EQUAL (b->npread, 0);

  /* The new backend gets the dirty data. */
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (c, &bb), 0);
  CU_ASSERT_EQUAL (pc_cache_drain (c, &err), 0);
  for (i = 0; i < 8; i++)
    CU_ASSERT_EQUAL (tu_check (b->buf + i * TU_MIB + 512, sizeof buf,
                               i * TU_MIB + 512, 70 + i), -1);
  CU_ASSERT_EQUAL (tu_check_byte (b->buf + 30 * TU_MIB, 4096, 0), -1);
  CU_ASSERT_EQUAL (tu_check_byte (b->buf, 512, 0xEE), -1);
  pc_cache_close (c);
  tu_mem_free (a);
  tu_mem_free (b);
  unlink (p);
}

/* ------------------------------------------------------------------ */

/* A cache opened in write-through mode over dirty data of a write-back
 * run writes that data back before taking a write: else the older data
 * would later land over the newer on the backend.  A read just before
 * the start keeps writeback held back, as a busy client would.
 */
static void
test_reopen_writethrough (void)
{
  const char *p = tu_fresh ("reopen-wt");
  struct tu_mem *m = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend be = tu_mem_backend (m);
  struct pc_config cfg;
  uint8_t buf[4096];
  pc_cache *c;
  int err = 0;

  tu_config (&cfg, p, CSIZE);
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  tu_fill (buf, sizeof buf, 8192, 1);
  CU_ASSERT_EQUAL (pc_write (c, buf, sizeof buf, 8192, 0, &err), 0);
  CU_ASSERT_EQUAL (pc_flush (c, &err), 0);
  pc_cache_close (c);                   /* never started: still dirty */
  CU_ASSERT_EQUAL (m->npwrite, 0);

  cfg.mode = PC_MODE_WRITETHROUGH;
  c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  CU_ASSERT_EQUAL (pc_read (c, buf, sizeof buf, 0, &be, &err), 0);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (c, &be), 0);
  tu_fill (buf, sizeof buf, 8192, 2);
  CU_ASSERT_EQUAL (pc_write (c, buf, sizeof buf, 8192, 0, &err), 0);
  CU_ASSERT_EQUAL (pc_cache_drain (c, &err), 0);
  CU_ASSERT_EQUAL (tu_check (m->buf + 8192, sizeof buf, 8192, 2), -1);
  CU_ASSERT_EQUAL (pc_read (c, buf, sizeof buf, 8192, &be, &err), 0);
  CU_ASSERT_EQUAL (tu_check (buf, sizeof buf, 8192, 2), -1);
  pc_cache_close (c);
  tu_mem_free (m);
  unlink (p);
}

/* The tunables' ranges are those of the startup parameters; in range a
 * value is taken and reads back, out of range it is refused (EINVAL,
 * the name logged) and nothing changes.
 */
static const struct {
  enum pc_tunable t;
  const char *name;
  uint64_t min, max;
} want_tunables[] = {
  { PC_TUNE_GC_PERCENT, "gc-percent", 0, 90 },
  { PC_TUNE_WB_PERCENT, "writeback-percent", 0, 100 },
  { PC_TUNE_WB_THREADS, "writeback-threads", 1, 64 },
  { PC_TUNE_CACHE_ON_READ, "cache-on-read", 0, 1 },
  { PC_TUNE_SEQ_CUTOFF, "seq-cutoff", 0, INT64_MAX },
  { PC_TUNE_FULL_TIMEOUT, "full-timeout", 0, 86400 },
  { PC_TUNE_WB_MAX_AGE, "writeback-max-age", 0, 86400 },
  { PC_TUNE_EXPORT_QUOTA, "export-quota", 1, 100 },
  { PC_TUNE_WB_GROUP, "writeback-group", 1, 4096 },
};

/* v is refused for t, and the value stays as it was. */
static void
tunable_refused (pc_cache *c, enum pc_tunable t, uint64_t v)
{
  uint64_t was = pc_cache_get_tunable (c, t);
  struct pc_config cfg;

  pc_config_init (&cfg);
  tu_log_clear ();
  errno = 0;
  CU_ASSERT_EQUAL (pc_cache_set_tunable (c, t, v), -1);
  CU_ASSERT_EQUAL (errno, EINVAL);
  CU_ASSERT_TRUE (tu_log_has (pc_tunable_info (t)->name));
  CU_ASSERT_EQUAL (pc_cache_get_tunable (c, t), was);
  CU_ASSERT_EQUAL (pc_config_set_tunable (&cfg, t, v), -1);
}

static void
test_tunables (void)
{
  struct tu_rig r;
  struct pc_config cfg;
  struct pc_stats st;
  enum pc_tunable t;
  char json[4096];
  unsigned i;

  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "tun", NULL, CSIZE, 0), 0);
  CU_ASSERT_EQUAL (sizeof want_tunables / sizeof *want_tunables,
                   PC_TUNE_COUNT);
  for (i = 0; i < sizeof want_tunables / sizeof *want_tunables; i++) {
    const struct pc_tunable_info *in = pc_tunable_info (want_tunables[i].t);

    t = want_tunables[i].t;
    CU_ASSERT_PTR_NOT_NULL_FATAL (in);
    CU_ASSERT_STRING_EQUAL (in->name, want_tunables[i].name);
    CU_ASSERT_EQUAL (in->min, want_tunables[i].min);
    CU_ASSERT_EQUAL (in->max, want_tunables[i].max);
    CU_ASSERT_EQUAL (pc_tunable_lookup (in->name, &t), 0);
    CU_ASSERT_EQUAL (t, want_tunables[i].t);
    CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, t, in->min), 0);
    CU_ASSERT_EQUAL (pc_cache_get_tunable (r.c, t), in->min);
    CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, t, in->max), 0);
    CU_ASSERT_EQUAL (pc_cache_get_tunable (r.c, t), in->max);
    tunable_refused (r.c, t, in->max + 1);
    if (in->zero_word) {
      /* 0 is the word's ("auto"), besides the range. */
      CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, t, 0), 0);
      CU_ASSERT_EQUAL (pc_cache_get_tunable (r.c, t), 0);
    }
    else if (in->min > 0)
      tunable_refused (r.c, t, in->min - 1);
    pc_config_init (&cfg);
    CU_ASSERT_EQUAL (pc_config_set_tunable (&cfg, t, in->max), 0);
  }
  CU_ASSERT_PTR_NULL (pc_tunable_info (PC_TUNE_COUNT));
  CU_ASSERT_EQUAL (pc_tunable_lookup ("writeback-max-speed", &t), -1);
  CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, PC_TUNE_COUNT, 0), -1);
  CU_ASSERT_EQUAL (pc_cache_set_gc_percent (r.c, -1), -1);

  /* Where the values go. */
  CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, PC_TUNE_FULL_TIMEOUT, 5), 0);
  CU_ASSERT_EQUAL (atomic_load (&r.c->full_timeout_ms), 5000);
  CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, PC_TUNE_GC_PERCENT, 33), 0);
  CU_ASSERT_EQUAL (r.c->ctrl.gc_percent, 33);   /* kept for a restart */
  pc_config_init (&cfg);
  CU_ASSERT_EQUAL (pc_config_set_tunable (&cfg, PC_TUNE_FULL_TIMEOUT, 7), 0);
  CU_ASSERT_EQUAL (pc_config_set_tunable (&cfg, PC_TUNE_WB_THREADS, 3), 0);
  CU_ASSERT_EQUAL (pc_config_set_tunable (&cfg, PC_TUNE_SEQ_CUTOFF, 9), 0);
  CU_ASSERT_EQUAL (cfg.full_timeout_s, 7);
  CU_ASSERT_EQUAL (cfg.wb_threads, 3);
  CU_ASSERT_EQUAL (cfg.seq_cutoff, 9);

  /* The statistics show them. */
  CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, PC_TUNE_WB_THREADS, 7), 0);
  CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, PC_TUNE_CACHE_ON_READ, 0), 0);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.tunables[PC_TUNE_WB_THREADS], 7);
  CU_ASSERT_EQUAL (st.gc_percent, 33);
  CU_ASSERT_TRUE_FATAL (pc_stats_json (&st, json, sizeof json) > 0);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, ",\"writeback_threads\":7,"));
  CU_ASSERT_PTR_NOT_NULL (strstr (json, ",\"cache_on_read\":false,"));
  CU_ASSERT_PTR_NOT_NULL (strstr (json, ",\"full_timeout\":5,"));
  CU_ASSERT_PTR_NOT_NULL (strstr (json, ",\"writeback_paused\":false}"));
  CU_ASSERT_PTR_NOT_NULL (strstr (json, ",\"writeback_group\":\"auto\","));
  CU_ASSERT_EQUAL (pc_cache_set_tunable (r.c, PC_TUNE_WB_GROUP, 8), 0);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_TRUE_FATAL (pc_stats_json (&st, json, sizeof json) > 0);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, ",\"writeback_group\":8,"));
  CU_ASSERT_EQUAL (pc_stats_json (&st, json, 40), -1);
  tu_rig_close (&r);
}

/* Paused write-back writes nothing back, and a drain or a switch out of
 * write-back mode fails at once; reset-stats zeroes the counters but
 * not dirty_bytes, which the drain after resume brings to 0.
 */
static void
test_pause_reset (void)
{
  struct pc_config cfg;
  struct pc_stats st;
  struct tu_rig r;
  uint64_t t0;
  int err = 0;

  pc_config_init (&cfg);
  cfg.wb_percent = 0;                   /* write back at once, if let */
  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "pause", &cfg, CSIZE, 0), 0);
  CU_ASSERT_EQUAL (pc_cache_pause_writeback (r.c, 1), 0);
  CU_ASSERT_EQUAL (pc_cache_pause_writeback (r.c, 1), 0);
  tu_rig_write (&r, 65536, 65536, 3);
  CU_ASSERT_EQUAL (pc_flush (r.c, &err), 0);
  hit (&r, 65536);
  /* A quiet client: write-back would run now. */
  atomic_store (&r.c->last_io_ms, pc_now_ms () - PC_WB_IDLE_MS - 1);
  pc_kick_workers (r.c);
  usleep (300 * 1000);
  pthread_mutex_lock (&r.mem->lock);
  CU_ASSERT_EQUAL (r.mem->npwrite, 0);
  pthread_mutex_unlock (&r.mem->lock);

  t0 = pc_now_ms ();
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), -1);
  CU_ASSERT_EQUAL (err, EBUSY);
  err = 0;
  CU_ASSERT_EQUAL (pc_cache_set_mode (r.c, PC_MODE_WRITETHROUGH, &err), -1);
  CU_ASSERT_EQUAL (err, EBUSY);
  CU_ASSERT_TRUE (pc_now_ms () - t0 < 5000);
  CU_ASSERT_EQUAL (pc_cache_get_mode (r.c), PC_MODE_WRITEBACK);

  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.writeback_paused, 1);
  CU_ASSERT_EQUAL (st.dirty_bytes, 65536);
  CU_ASSERT_TRUE (st.read_hits > 0 && st.writes > 0);
  pc_cache_reset_stats (r.c);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.read_hits, 0);
  CU_ASSERT_EQUAL (st.read_hit_bytes, 0);
  CU_ASSERT_EQUAL (st.writes, 0);
  CU_ASSERT_EQUAL (st.write_bytes, 0);
  CU_ASSERT_EQUAL (st.dirty_bytes, 65536);
  CU_ASSERT_TRUE (st.dirty_ksets > 0);

  CU_ASSERT_EQUAL (pc_cache_pause_writeback (r.c, 0), 0);
  rig_drain (&r);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.writeback_paused, 0);
  CU_ASSERT_EQUAL (st.dirty_bytes, 0);
  CU_ASSERT_EQUAL (st.writeback_bytes, 65536);
  CU_ASSERT_EQUAL (first_diff (r.mem->buf, r.model, BSIZE), -1);
  tu_rig_close (&r);
}

/* Every setter, the pause and the reset, from another thread while a
 * client writes and reads (for the thread sanitizer): the write-back
 * pool is rebuilt under load, and nothing is lost.
 */
struct churn {
  pc_cache *c;
  atomic_int stop;
};

static void *
churn_main (void *arg)
{
  struct churn *ch = arg;
  static const unsigned threads[] = { 1, 16, 2, 64, 3 };
  unsigned i;

  for (i = 0; !atomic_load (&ch->stop); i++) {
    pc_cache_set_tunable (ch->c, PC_TUNE_WB_THREADS, threads[i % 5]);
    pc_cache_set_tunable (ch->c, PC_TUNE_WB_PERCENT, i % 3 * 10);
    pc_cache_set_tunable (ch->c, PC_TUNE_CACHE_ON_READ, i % 2);
    pc_cache_set_tunable (ch->c, PC_TUNE_SEQ_CUTOFF, i % 4 * 65536);
    pc_cache_set_tunable (ch->c, PC_TUNE_FULL_TIMEOUT, 10 + i % 2);
    pc_cache_set_tunable (ch->c, PC_TUNE_GC_PERCENT, 50 + i % 30);
    pc_cache_pause_writeback (ch->c, i % 4 == 1);
    if (i % 8 == 0)
      pc_cache_reset_stats (ch->c);
    usleep (2000);
  }
  pc_cache_pause_writeback (ch->c, 0);
  return NULL;
}

static void
test_tunables_live (void)
{
  struct pc_config cfg;
  struct churn ch;
  struct pc_stats st;
  struct tu_rig r;
  uint64_t seed = tu_seed (17);
  pthread_t t;
  int err = 0;
  unsigned i;

  pc_config_init (&cfg);
  cfg.wb_percent = 0;
  CU_ASSERT_EQUAL_FATAL (rig_open (&r, "live", &cfg, CSIZE, -1), 0);
  ch.c = r.c;
  atomic_init (&ch.stop, 0);
  CU_ASSERT_EQUAL_FATAL (pthread_create (&t, NULL, churn_main, &ch), 0);
  for (i = 0; i < 600; i++) {
    uint64_t off = tu_below (&seed, BSIZE / 65536) * 65536;

    tu_rig_write (&r, off, 65536, 900 + i);
    hit (&r, tu_below (&seed, BSIZE / 4096) * 4096);
    if (i % 16 == 15)
      CU_ASSERT_EQUAL (pc_flush (r.c, &err), 0);
  }
  atomic_store (&ch.stop, 1);
  pthread_join (t, NULL);
  rig_drain (&r);
  pc_cache_get_stats (r.c, &st);
  CU_ASSERT_EQUAL (st.dirty_bytes, 0);
  CU_ASSERT_EQUAL (st.writeback_paused, 0);
  CU_ASSERT_EQUAL (first_diff (r.mem->buf, r.model, BSIZE), -1);
  tu_rig_close (&r);
}

static const struct tu_case cases[] = {
  { "read miss, then cached", test_read_miss },
  { "a read over runs of keys", test_read_runs },
  { "cache_on_read=0", test_no_cache_on_read },
  { "odd writes and pc_map", test_odd_writes },
  { "writeback content", test_writeback },
  { "writeback ordering", test_ordering_live },
  { "writeback ordering, backlog", test_ordering_backlog },
  { "full cache", test_full_cache },
  { "writeback width follows the backlog", test_wb_width },
  { "a read-only client pauses a batch", test_wb_pause },
  { "backend errors", test_backend_errors },
  { "concurrent clients", test_concurrency },
  { "restart with dirty data", test_restart_dirty },
  { "reopened in write-through over dirty data", test_reopen_writethrough },
  { "tunables: ranges, values, statistics", test_tunables },
  { "paused write-back, reset statistics", test_pause_reset },
  { "tunables, pause and reset under a writer", test_tunables_live },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("cache", cases, 120, 0);   /* a hang is a failure */
}
