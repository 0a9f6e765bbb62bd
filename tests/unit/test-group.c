/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for write-back groups and FUA write-back.  Write-back runs
 * a batch at a time (pc_writeback_step) on a cache without workers, and
 * each test ends client epochs where it wants them (as a flush does):
 *  - strict order (the default) writes each epoch, then flushes;
 *  - a group takes up to N ended epochs, writes each block's final data
 *    once, then flushes once; the open epoch is never in a group, nor
 *    is an epoch write-back is inside (a part of it already down);
 *  - a group cut short by a failure is finished as the same group after
 *    a restart, even with groups turned off (its record binds);
 *  - a hold issued inside a group waits for the group's end;
 *  - auto grows while epochs pile up and falls back to 1 when idle;
 *  - a backend with native FUA gets small batches as FUA writes with
 *    no flush, larger ones as writes and a flush.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "group.h"
#include "hold.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)
#define BSIZE (32 * TU_MIB)
#define X 0                     /* the block every epoch rewrites */

static pc_cache *
open_group (const char *path, int group)
{
  struct pc_config cfg;

  tu_config (&cfg, path, CSIZE);
  cfg.cache_on_read = 0;
  cfg.wb_group = group;
  return tu_open (&cfg, BSIZE);
}

/* End the client epoch, as a flush does. */
static void
end_epoch (pc_cache *c)
{
  CU_ASSERT_EQUAL (pc_log_commit_all (c, 1), 0);
}

/* Epoch k (k = 1..n) writes X with seed 10 + k and block k with 20 + k. */
static void
epochs (pc_cache *c, unsigned from, unsigned n)
{
  unsigned k;

  for (k = from; k < from + n; k++) {
    tu_write (c, X, 4096, 10 + k);
    tu_write (c, (uint64_t) k * 65536, 4096, 20 + k);
    end_epoch (c);
  }
}

/* One epoch written back, away from the blocks under test: the first
 * batch after an open goes strictly (write-back may be inside the
 * cursor's epoch, as a crash leaves it), groups come after it.
 */
static void
warm (pc_cache *c)
{
  tu_write (c, 200 * 65536, 4096, 99);
  end_epoch (c);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
}

/* Bytes written to [off, off + 4096) by the backend's logged writes. */
static uint64_t
written (struct tu_mem *m, uint64_t off)
{
  uint64_t n = 0;
  size_t i;

  pthread_mutex_lock (&m->lock);
  for (i = 0; i < m->nlog; i++)
    if (m->log[i].op == TU_OP_WRITE && m->log[i].off <= off &&
        m->log[i].off + m->log[i].len > off)
      n += 4096;
  pthread_mutex_unlock (&m->lock);
  return n;
}

static uint64_t
flushes (struct tu_mem *m)
{
  uint64_t n;

  pthread_mutex_lock (&m->lock);
  n = m->nflush;
  pthread_mutex_unlock (&m->lock);
  return n;
}

static void
stats (pc_cache *c, struct pc_stats *st)
{
  pc_cache_get_stats (c, st);
}

/* Strict: one batch and one flush per epoch; X goes down every time. */
static void
test_strict (void)
{
  const char *p = tu_fresh ("strict");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_group (p, PC_UNSET);
  struct pc_stats st;
  uint64_t e0;
  unsigned k;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  tu_mem_log (mem, 1);
  e0 = pc_client_epoch (c);
  epochs (c, 1, 3);
  for (k = 1; k <= 3; k++) {
    CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
    CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + k);
    CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 10 + k), -1);
  }
  CU_ASSERT_EQUAL (pc_writeback_step (c), 0);
  CU_ASSERT_EQUAL (written (mem, X), 3 * 4096);
  CU_ASSERT_EQUAL (flushes (mem), 3);
  stats (c, &st);
  CU_ASSERT_EQUAL (st.writeback_groups, 0);
  CU_ASSERT_EQUAL (st.writeback_flushes, 3);
  CU_ASSERT_EQUAL (st.writeback_group_epochs, 1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* A group of 4 over 6 ended epochs and an open one: the first batch is
 * epochs 1-4 with X written once (epoch 4's data) and one flush, the
 * second epochs 5-6, and the open epoch goes alone, strictly.
 */
static void
test_group (void)
{
  const char *p = tu_fresh ("group");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_group (p, 4);
  struct pc_stats st;
  uint64_t e0;
  unsigned k;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  warm (c);
  pthread_mutex_lock (&mem->lock);
  mem->nflush = 0;
  pthread_mutex_unlock (&mem->lock);
  tu_mem_log (mem, 1);
  e0 = pc_client_epoch (c);
  epochs (c, 1, 6);
  tu_write (c, 7 * 65536, 4096, 27);            /* the open epoch */
  CU_ASSERT_EQUAL (pc_log_commit_all (c, 0), 0);

  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + 4);
  CU_ASSERT_EQUAL (written (mem, X), 4096);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 14), -1);
  for (k = 1; k <= 4; k++)
    CU_ASSERT_EQUAL (tu_check (mem->buf + k * 65536, 4096, k * 65536,
                               20 + k), -1);
  CU_ASSERT_EQUAL (tu_check_byte (mem->buf + 5 * 65536, 4096, 0xEE), -1);
  CU_ASSERT_EQUAL (flushes (mem), 1);

  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + 6);
  CU_ASSERT_EQUAL (written (mem, X), 2 * 4096);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 16), -1);
  CU_ASSERT_EQUAL (tu_check_byte (mem->buf + 7 * 65536, 4096, 0xEE), -1);
  CU_ASSERT_EQUAL (flushes (mem), 2);

  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);  /* the open epoch, alone */
  CU_ASSERT_EQUAL (tu_check (mem->buf + 7 * 65536, 4096, 7 * 65536, 27), -1);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 0);
  stats (c, &st);
  CU_ASSERT_EQUAL (st.writeback_groups, 2);
  CU_ASSERT_EQUAL (st.writeback_flushes, 4);    /* and warm's */
  CU_ASSERT_EQUAL (st.writeback_group_epochs, 4);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* A group of 4 fails after its first write: the record is durable.  The
 * cache is closed dirty and opened again in strict mode; the first
 * batch is still the same four epochs (X goes down once, with epoch
 * 4's data), never epoch 1 alone.  A hold chosen while the group was in
 * flight waits for its end.
 */
struct cut {
  struct tu_hook h;                     /* first */
  struct tu_mem *mem;
  unsigned writes;
  int armed;
};

/* After the first write, every write fails (with its retries). */
static void
cut_after (struct tu_hook *h)
{
  struct cut *x = (struct cut *) h;

  if (x->armed && ++x->writes == 1) {
    pthread_mutex_lock (&x->mem->lock);
    x->mem->fail_writes = 1000;
    pthread_mutex_unlock (&x->mem->lock);
  }
}

static void
test_group_restart (void)
{
  const char *p = tu_fresh ("grouprestart");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  struct cut x = { { bg, NULL, cut_after, NULL }, mem, 0, 0 };
  struct pc_backend hb = tu_hook_backend (&x.h);
  pc_cache *c = open_group (p, 4);
  uint64_t e0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &hb);
  warm (c);
  x.armed = 1;
  e0 = pc_client_epoch (c);
  epochs (c, 1, 6);
  CU_ASSERT_EQUAL (pc_writeback_step (c), -1);
  /* X is down (the first write, epoch 4's data), the rest is not. */
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 14), -1);
  CU_ASSERT_EQUAL (tu_check_byte (mem->buf + 65536, 4096, 0xEE), -1);
  pthread_mutex_lock (&mem->lock);
  mem->fail_writes = 0;
  pthread_mutex_unlock (&mem->lock);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0);
  /* The group was let through: a hold now would end at its end. */
  CU_ASSERT_EQUAL (atomic_load (&c->wb_last_epoch), e0 + 4);
  pc_cache_close (c);

  c = open_group (p, PC_UNSET);
  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  pc_hold_init (c);
  CU_ASSERT_EQUAL (atomic_load (&c->wb_last_epoch), e0 + 4);
  tu_mem_log (mem, 1);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + 4);
  CU_ASSERT_EQUAL (written (mem, X), 4096);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 14), -1);
  for (unsigned k = 1; k <= 4; k++)
    CU_ASSERT_EQUAL (tu_check (mem->buf + k * 65536, 4096, k * 65536, 20 + k),
                     -1);
  /* Then strict again: epoch 5 alone. */
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + 5);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 15), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* Write-back inside an epoch (a batch of it went down while the client
 * was still writing it) finishes that epoch alone before any group:
 * else the backend would hold data of the epoch that is not the
 * group's final data beside data of later epochs.
 */
static void
test_inside (void)
{
  const char *p = tu_fresh ("inside");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_group (p, 4);
  uint64_t e0;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  warm (c);
  e0 = pc_client_epoch (c);
  tu_write (c, X, 4096, 11);                    /* epoch 1, still open */
  CU_ASSERT_EQUAL (pc_log_commit_all (c, 0), 0);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 11), -1);
  tu_write (c, 65536, 4096, 21);                /* more of epoch 1 */
  end_epoch (c);
  epochs (c, 2, 3);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);   /* the rest of epoch 1 */
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + 1);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 11), -1);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);   /* then 2..4 as a group */
  CU_ASSERT_EQUAL (pc_backing_epoch (c), e0 + 4);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 14), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* Auto: while ended epochs pile up faster than write-back takes them,
 * the group doubles; once write-back catches up it shrinks, and idle it
 * is 1 again.
 */
static void
test_auto (void)
{
  const char *p = tu_fresh ("auto");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_group (p, 0);
  struct pc_stats st;
  unsigned want = 1, i, from = 1;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  pc_cache_set_backend (c, &bg);
  warm (c);
  for (i = 0; i < 5; i++) {
    epochs (c, from, 3 * want);
    from += 3 * want;
    CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
    want *= 2;
    stats (c, &st);
    CU_ASSERT_EQUAL (st.writeback_group_epochs, want);
  }
  while (pc_writeback_step (c) == 1)
    ;
  stats (c, &st);
  CU_ASSERT_EQUAL (st.writeback_group_epochs, 1);
  CU_ASSERT_EQUAL (st.dirty_bytes, 0);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 10 + from - 1), -1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

/* A backend with native FUA. */
static _Atomic unsigned nfua;
static struct pc_backend_ops fua_ops;
static int (*mem_pwrite) (void *, const void *, uint32_t, uint64_t, int *);

static int
fua_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off, int *err)
{
  atomic_fetch_add (&nfua, 1);
  return mem_pwrite (ctx, buf, len, off, err);
}

/* An epoch of two writes goes down as two FUA writes and no flush; one
 * of more writes than write-back has writers as writes and a flush.
 */
static void
test_fua (void)
{
  const char *p = tu_fresh ("fua");
  struct tu_mem *mem = tu_mem_new (BSIZE, 0xEE);
  struct pc_backend bg = tu_mem_backend (mem);
  pc_cache *c = open_group (p, PC_UNSET);
  struct pc_stats st;
  unsigned k;

  CU_ASSERT_PTR_NOT_NULL_FATAL (c);
  fua_ops = *bg.ops;
  mem_pwrite = bg.ops->pwrite;
  fua_ops.pwrite_fua = fua_pwrite;
  bg.ops = &fua_ops;
  pc_cache_set_backend (c, &bg);
  CU_ASSERT_EQUAL (pc_cache_set_tunable (c, PC_TUNE_WB_THREADS, 4), 0);
  epochs (c, 1, 1);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (atomic_load (&nfua), 2);
  CU_ASSERT_EQUAL (flushes (mem), 0);
  CU_ASSERT_EQUAL (tu_check (mem->buf + X, 4096, X, 11), -1);

  for (k = 0; k < 5; k++)
    tu_write (c, (uint64_t) (k + 10) * 65536, 4096, 40 + k);
  end_epoch (c);
  CU_ASSERT_EQUAL (pc_writeback_step (c), 1);
  CU_ASSERT_EQUAL (atomic_load (&nfua), 2);
  CU_ASSERT_EQUAL (flushes (mem), 1);
  stats (c, &st);
  CU_ASSERT_EQUAL (st.writeback_fua_writes, 2);
  CU_ASSERT_EQUAL (st.writeback_flushes, 1);
  pc_cache_close (c);
  tu_mem_free (mem);
  unlink (p);
}

static const struct tu_case cases[] = {
  { "strict: an epoch, a flush", test_strict },
  { "a group: final data once, one flush", test_group },
  { "a group cut short is finished after a restart", test_group_restart },
  { "no group starts inside an epoch", test_inside },
  { "auto grows and falls back", test_auto },
  { "FUA instead of a flush", test_fua },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("group", cases, 120, 0);
}
