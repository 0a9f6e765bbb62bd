/* SPDX-License-Identifier: BSD-3-Clause */
/* Unit tests for a failing backend: write-back reopens one whose
 * connection broke (at once after a connection-level error, every third
 * failed round after any other), goes on once it works again, and says
 * so in the statistics; a backend that cannot reopen is only retried.
 * The first cases run write-back a round at a time (pc_writeback_step),
 * so every reopen is where the test expects it; the last two run the
 * workers and drain.  No case depends on how long anything takes.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include <CUnit/CUnit.h>
#include <CUnit/Basic.h>

#include "cache_internal.h"
#include "writeback.h"
#include "testutil.h"

#define CSIZE (24 * TU_MIB)
#define BSIZE (32 * TU_MIB)
#define DLEN  (64 * 1024)

/* A backend over memory whose writes and flushes fail with err while
 * it is set, or for the next fail_left calls; a reopen heals it, after
 * failing itself reopen_fails times (a remote still down).  Its flushes
 * alone fail with flush_err while that is set.
 */
struct flaky {
  struct pc_backend inner;
  pthread_mutex_t lock;
  int err;
  int flush_err;
  unsigned flushes;                   /* flushes that succeeded */
  unsigned trims;                     /* trims, all failed */
  unsigned fail_left;
  unsigned reopen_fails;
  unsigned reopens;                   /* reopen calls, failed or not */
  unsigned calls;                     /* writes and flushes, failed or not */
  /* With lossy, a server that crashed: a reopen finds the bytes written
   * since the last flush that succeeded zeroed in mem (lost_lo to
   * lost_hi), and flushes working again.
   */
  int lossy;
  struct tu_mem *mem;
  uint64_t lost_lo, lost_hi;
};

static int
flaky_fails (struct flaky *f, int *err)
{
  int e = 0;

  pthread_mutex_lock (&f->lock);
  f->calls++;
  if (f->fail_left > 0) {
    f->fail_left--;
    e = ENOTCONN;
  }
  else
    e = f->err;
  pthread_mutex_unlock (&f->lock);
  if (e)
    *err = e;
  return e != 0;
}

static int
flaky_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct flaky *f = ctx;

  return f->inner.ops->pread (f->inner.ctx, buf, len, off, err);
}

static int
flaky_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
              int *err)
{
  struct flaky *f = ctx;

  if (flaky_fails (f, err))
    return -1;
  pthread_mutex_lock (&f->lock);
  if (f->lost_hi == f->lost_lo || off < f->lost_lo)
    f->lost_lo = off;
  if (off + len > f->lost_hi)
    f->lost_hi = off + len;
  pthread_mutex_unlock (&f->lock);
  return f->inner.ops->pwrite (f->inner.ctx, buf, len, off, err);
}

static int
flaky_flush (void *ctx, int *err)
{
  struct flaky *f = ctx;
  int e;

  if (flaky_fails (f, err))
    return -1;
  pthread_mutex_lock (&f->lock);
  e = f->flush_err;
  if (!e) {
    f->flushes++;
    f->lost_lo = f->lost_hi = 0;
  }
  pthread_mutex_unlock (&f->lock);
  if (e) {
    *err = e;
    return -1;
  }
  return f->inner.ops->flush (f->inner.ctx, err);
}

static int
flaky_reopen (void *ctx, int *err)
{
  struct flaky *f = ctx;
  int r = 0;

  pthread_mutex_lock (&f->lock);
  f->reopens++;
  if (f->reopen_fails > 0) {
    f->reopen_fails--;
    *err = ECONNREFUSED;
    r = -1;
  }
  else
    f->err = 0;
  if (r == 0 && f->lossy) {
    pthread_mutex_lock (&f->mem->lock);
    memset (f->mem->buf + f->lost_lo, 0, f->lost_hi - f->lost_lo);
    pthread_mutex_unlock (&f->mem->lock);
    f->lost_lo = f->lost_hi = 0;
    f->flush_err = 0;
  }
  pthread_mutex_unlock (&f->lock);
  return r;
}

static const struct pc_backend_ops flaky_ops = {
  .pread = flaky_pread, .pwrite = flaky_pwrite, .flush = flaky_flush,
  .reopen = flaky_reopen,
};

/* Its trims always fail with EIO, and are counted. */
static int
flaky_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  struct flaky *f = ctx;

  (void) len;
  (void) off;
  pthread_mutex_lock (&f->lock);
  f->trims++;
  pthread_mutex_unlock (&f->lock);
  *err = EIO;
  return -1;
}

static const struct pc_backend_ops flaky_trim_ops = {
  .pread = flaky_pread, .pwrite = flaky_pwrite, .flush = flaky_flush,
  .trim = flaky_trim,
};

/* The same backend, but it cannot reopen. */
static const struct pc_backend_ops flaky_noreopen_ops = {
  .pread = flaky_pread, .pwrite = flaky_pwrite, .flush = flaky_flush,
};

struct rig {
  const char *path;
  struct tu_mem *mem;
  struct flaky f;
  struct pc_backend bg;
  pc_cache *c;
};

/* DLEN bytes of dirty data in the log: pattern 1 at offset 0. */
static void
rig_dirty (struct rig *r)
{
  tu_write (r->c, 0, DLEN, 1);
  tu_flush (r->c);
}

/* A cache with DLEN bytes of dirty data in the log, in front of a flaky
 * backend failing with err.
 */
static void
rig_open (struct rig *r, const char *name, int err, int can_reopen)
{
  struct pc_config cfg;

  memset (r, 0, sizeof *r);
  r->path = tu_fresh (name);
  r->mem = tu_mem_new (BSIZE, 0);
  r->f.inner = tu_mem_backend (r->mem);
  r->f.mem = r->mem;
  r->f.err = err;
  pthread_mutex_init (&r->f.lock, NULL);
  r->bg.ops = can_reopen ? &flaky_ops : &flaky_noreopen_ops;
  r->bg.ctx = &r->f;
  tu_config (&cfg, r->path, CSIZE);
  cfg.cache_on_read = 0;
  r->c = tu_open (&cfg, BSIZE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (r->c);
  rig_dirty (r);
}

static void
rig_close (struct rig *r)
{
  pc_cache_close (r->c);
  CU_ASSERT_EQUAL (tu_check (r->mem->buf, DLEN, 0, 1), -1);
  tu_mem_free (r->mem);
  pthread_mutex_destroy (&r->f.lock);
  unlink (r->path);
}

static unsigned
reopen_calls (struct rig *r)
{
  unsigned n;

  pthread_mutex_lock (&r->f.lock);
  n = r->f.reopens;
  pthread_mutex_unlock (&r->f.lock);
  return n;
}

static unsigned
backend_calls (struct rig *r)
{
  unsigned n;

  pthread_mutex_lock (&r->f.lock);
  n = r->f.calls;
  pthread_mutex_unlock (&r->f.lock);
  return n;
}

static void
set_err (struct rig *r, int err)
{
  pthread_mutex_lock (&r->f.lock);
  r->f.err = err;
  pthread_mutex_unlock (&r->f.lock);
}

static void
set_flush_err (struct rig *r, int err)
{
  pthread_mutex_lock (&r->f.lock);
  r->f.flush_err = err;
  pthread_mutex_unlock (&r->f.lock);
}

static void
stats (struct rig *r, struct pc_stats *st)
{
  pc_cache_get_stats (r->c, st);
}

/* Healthy, as the statistics say it (and as their JSON does), with
 * dirty bytes left.
 */
static void
check_ok (struct rig *r, uint64_t reopens, uint64_t dirty)
{
  struct pc_stats st;
  char json[2048];

  stats (r, &st);
  CU_ASSERT_EQUAL (st.backend_failing, 0);
  CU_ASSERT_EQUAL (st.backend_last_error, 0);
  CU_ASSERT_EQUAL (st.backend_failing_since, 0);
  CU_ASSERT_EQUAL (st.backend_reopens, reopens);
  CU_ASSERT_EQUAL (st.dirty_bytes, dirty);
  CU_ASSERT (pc_stats_json (&st, json, sizeof json) > 0);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, "\"backend_state\":\"ok\""));
  CU_ASSERT_PTR_NOT_NULL (strstr (json, "\"backend_last_error\":\"\""));
  CU_ASSERT_PTR_NOT_NULL (strstr (json, "\"backend_failing_since\":0,"));
}

static void
check_failing (struct rig *r, int err, const char *name, uint64_t reopens)
{
  struct pc_stats st;
  char json[2048], want[64];

  stats (r, &st);
  CU_ASSERT_EQUAL (st.backend_failing, 1);
  CU_ASSERT_EQUAL (st.backend_last_error, err);
  CU_ASSERT (st.backend_failing_since > 0);
  CU_ASSERT_EQUAL (st.backend_reopens, reopens);
  CU_ASSERT_EQUAL (st.dirty_bytes, DLEN);
  CU_ASSERT (pc_stats_json (&st, json, sizeof json) > 0);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, "\"backend_state\":\"failing\""));
  snprintf (want, sizeof want, "\"backend_last_error\":\"%s\"", name);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, want));
}

/* A broken connection (ENOTCONN) is reopened by the round that sees
 * it; the next round goes through.
 */
static void
test_conn_error (void)
{
  struct rig r;

  rig_open (&r, "conn", ENOTCONN, 1);
  pc_cache_set_backend (r.c, &r.bg);
  check_ok (&r, 0, DLEN);
  tu_log_clear ();
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (reopen_calls (&r), 1);
  CU_ASSERT (tu_log_has ("writeback failed"));
  check_failing (&r, ENOTCONN, "ENOTCONN", 1);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), 1);
  CU_ASSERT_EQUAL (reopen_calls (&r), 1);
  CU_ASSERT (tu_log_has ("writeback resumed"));
  check_ok (&r, 1, 0);
  rig_close (&r);
}

/* While the remote stays down, every failed round tries once more; only
 * a reopen that works is counted.
 */
static void
test_reopen_fails (void)
{
  struct rig r;

  rig_open (&r, "refused", ECONNRESET, 1);
  r.f.reopen_fails = 2;
  pc_cache_set_backend (r.c, &r.bg);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (reopen_calls (&r), 1);
  check_failing (&r, ECONNRESET, "ECONNRESET", 0);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (reopen_calls (&r), 2);
  check_failing (&r, ECONNRESET, "ECONNRESET", 0);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (reopen_calls (&r), 3);
  check_failing (&r, ECONNRESET, "ECONNRESET", 1);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), 1);
  check_ok (&r, 1, 0);
  rig_close (&r);
}

/* An error that says nothing of the connection (EIO) is retried as it
 * is twice; the third failed round in a row reopens.
 */
static void
test_other_error (void)
{
  struct rig r;
  unsigned i;

  rig_open (&r, "eio", EIO, 1);
  pc_cache_set_backend (r.c, &r.bg);
  for (i = 1; i < PC_WB_REOPEN_FAILS; i++) {
    CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
    CU_ASSERT_EQUAL (reopen_calls (&r), 0);
    check_failing (&r, EIO, "EIO", 0);
  }
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (reopen_calls (&r), 1);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), 1);
  check_ok (&r, 1, 0);
  rig_close (&r);
}

/* ESHUTDOWN (nbdkit, or the remote, shutting down) interrupts a round:
 * it is not retried at once, counts as an abort and is not reported as
 * an error; an error of another kind after it is, and so is the
 * recovery from that.  An episode of interruptions only heals quietly.
 */
static void
test_shutdown (void)
{
  struct rig r;
  struct pc_stats st;
  char json[2048];

  rig_open (&r, "shutdown", ESHUTDOWN, 0);
  pc_cache_set_backend (r.c, &r.bg);
  tu_log_clear ();
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (backend_calls (&r), 1);
  stats (&r, &st);
  CU_ASSERT_EQUAL (st.writeback_aborts, 1);
  CU_ASSERT_EQUAL (st.writeback_errors, 0);
  CU_ASSERT (pc_stats_json (&st, json, sizeof json) > 0);
  CU_ASSERT_PTR_NOT_NULL (strstr (json, "\"writeback_aborts\":1,"));
  CU_ASSERT_FALSE (tu_log_has ("writeback"));
  check_failing (&r, ESHUTDOWN, "ESHUTDOWN", 0);

  /* Then the plugin fails for real: three tries, one report. */
  set_err (&r, EIO);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  CU_ASSERT_EQUAL (backend_calls (&r), 4);
  stats (&r, &st);
  CU_ASSERT_EQUAL (st.writeback_aborts, 1);
  CU_ASSERT_EQUAL (st.writeback_errors, 3);
  CU_ASSERT (tu_log_has ("writeback failed (Input/output error)"));
  check_failing (&r, EIO, "EIO", 0);
  set_err (&r, 0);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), 1);
  CU_ASSERT (tu_log_has ("writeback resumed"));
  check_ok (&r, 0, 0);

  /* Interrupted, then back: nothing to report either way. */
  rig_dirty (&r);
  tu_log_clear ();
  set_err (&r, ESHUTDOWN);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  check_failing (&r, ESHUTDOWN, "ESHUTDOWN", 0);
  set_err (&r, 0);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), 1);
  check_ok (&r, 0, 0);
  CU_ASSERT_FALSE (tu_log_has ("writeback"));
  stats (&r, &st);
  CU_ASSERT_EQUAL (st.writeback_aborts, 2);
  CU_ASSERT_EQUAL (st.writeback_errors, 3);
  rig_close (&r);
}

/* At the server's exit (pc_cache_exiting) a drain ends at the first
 * ESHUTDOWN, not after its grace period; one from before the exit, the
 * backend well again since, does not end it.
 */
static void
test_exit_drain (void)
{
  struct rig r;
  int err = 0;

  rig_open (&r, "exitdrain", ESHUTDOWN, 0);
  pc_cache_set_backend (r.c, &r.bg);
  CU_ASSERT_EQUAL (pc_writeback_step (r.c), -1);
  check_failing (&r, ESHUTDOWN, "ESHUTDOWN", 0);
  set_err (&r, 0);
  pc_cache_exiting (r.c);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), 0);
  check_ok (&r, 0, 0);

  set_err (&r, ESHUTDOWN);
  rig_dirty (&r);
  tu_log_clear ();
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), -1);
  CU_ASSERT_EQUAL (err, ESHUTDOWN);
  CU_ASSERT (tu_log_has ("the server is shutting down"));
  CU_ASSERT_FALSE (tu_log_has ("gave up"));
  set_err (&r, 0);
  rig_close (&r);
}

/* The workers: a drain waits through the failure and the reopen. */
static void
test_workers_reopen (void)
{
  struct rig r;
  int err = 0;

  rig_open (&r, "wreopen", ENOTCONN, 1);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), 0);
  CU_ASSERT (reopen_calls (&r) >= 1);
  check_ok (&r, reopen_calls (&r), 0);
  rig_close (&r);
}

/* A backend that cannot reopen fails for a while (ENOTCONN: it would be
 * reopened if it could), then works again by itself: write-back keeps
 * retrying, backing off, and gets there.
 */
static void
test_workers_no_reopen (void)
{
  struct rig r;
  struct pc_stats st;
  int err = 0;

  rig_open (&r, "wnoreopen", 0, 0);
  r.f.fail_left = 12;                   /* 4 rounds of 3 tries */
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), 0);
  CU_ASSERT_EQUAL (reopen_calls (&r), 0);
  stats (&r, &st);
  CU_ASSERT (st.writeback_errors >= 12);
  check_ok (&r, 0, 0);
  rig_close (&r);
}

/* A drain's own limit: it gives up, with the backend's error and the
 * data still dirty, once write-back has failed that long; with 0 it
 * waits through the failures until the backend works again.
 */
static void
test_drain_timeout (void)
{
  struct rig r;
  int err = 0;

  rig_open (&r, "draintimeout", EIO, 0);
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  tu_log_clear ();
  CU_ASSERT_EQUAL (pc_cache_drain_timeout (r.c, 1, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  CU_ASSERT (tu_log_has ("drain gave up: writeback has failed for 1 s"));
  check_failing (&r, EIO, "EIO", 0);

  pthread_mutex_lock (&r.f.lock);
  r.f.err = 0;
  r.f.fail_left = 12;                   /* 4 rounds of 3 tries */
  pthread_mutex_unlock (&r.f.lock);
  CU_ASSERT_EQUAL (pc_cache_drain_timeout (r.c, 0, &err), 0);
  check_ok (&r, 0, 0);
  rig_close (&r);
}

/* Writes that went down are not down until a flush after them has
 * succeeded: the workers' retry, with nothing left to write, flushes
 * again, and the data stays dirty until a flush succeeds.  (A step
 * reloads its batch and writes it all again, so only the workers, who
 * keep a failed batch loaded, can tell.)
 */
static void
test_flush_fails (void)
{
  struct rig r;
  struct pc_stats st;
  int err = 0;

  rig_open (&r, "flushfails", 0, 0);
  r.f.flush_err = EIO;
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  CU_ASSERT_EQUAL (pc_cache_drain_timeout (r.c, 1, &err), -1);
  CU_ASSERT_EQUAL (err, EIO);
  check_failing (&r, EIO, "EIO", 0);
  stats (&r, &st);
  CU_ASSERT_EQUAL (st.writeback_flushes, 0);

  set_flush_err (&r, 0);
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), 0);
  check_ok (&r, 0, 0);
  stats (&r, &st);
  CU_ASSERT (st.writeback_flushes >= 1);
  rig_close (&r);
}

/* The connection breaks after the batch's writes went down, before its
 * flush: the server crashed, and the new connection's server has lost
 * them.  Write-back writes the batch again, whole, before it flushes;
 * a flush alone would end the drain with the data gone from both.
 */
static void
test_lost_connection (void)
{
  struct rig r;
  int err = 0;

  rig_open (&r, "lostconn", 0, 1);
  r.f.flush_err = ENOTCONN;
  r.f.lossy = 1;
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), 0);
  CU_ASSERT_EQUAL (reopen_calls (&r), 1);
  check_ok (&r, 1, 0);
  CU_ASSERT_EQUAL (tu_check (r.mem->buf, DLEN, 0, 1), -1);
  rig_close (&r);
}

/* Other errors bring a reopen every third failed round, which finds
 * the server as it was: a batch keeps what it got down then, and is
 * not written again (a backend failing some of its writes would never
 * see one finish).  The one extent here goes down once.
 */
static void
test_reopen_keeps_batch (void)
{
  struct rig r;
  int err = 0;

  rig_open (&r, "keepbatch", 0, 1);
  r.f.flush_err = EIO;
  CU_ASSERT_EQUAL_FATAL (pc_cache_start (r.c, &r.bg), 0);
  CU_ASSERT_EQUAL (pc_cache_drain_timeout (r.c, 1, &err), -1);
  CU_ASSERT (reopen_calls (&r) >= 1);
  set_flush_err (&r, 0);
  CU_ASSERT_EQUAL (pc_cache_drain (r.c, &err), 0);
  pthread_mutex_lock (&r.mem->lock);
  CU_ASSERT_EQUAL (r.mem->npwrite, 1);
  pthread_mutex_unlock (&r.mem->lock);
  rig_close (&r);
}

/* A trim is advisory: one the plugin fails is left out, and the data
 * logged after it still goes down.
 */
static void
test_trim_fails (void)
{
  struct rig r;
  struct pc_stats st;
  int err = 0;

  rig_open (&r, "trimfails", 0, 0);
  r.bg.ops = &flaky_trim_ops;
  CU_ASSERT_EQUAL (pc_trim (r.c, DLEN, 2 * DLEN, 0, &err), 0);
  tu_write (r.c, 4 * DLEN, DLEN, 2);
  tu_flush (r.c);
  pc_cache_set_backend (r.c, &r.bg);
  while (pc_writeback_step (r.c) == 1)
    ;
  CU_ASSERT_EQUAL (r.f.trims, 1);
  stats (&r, &st);
  CU_ASSERT_EQUAL (st.writeback_errors, 0);
  CU_ASSERT_EQUAL (st.dirty_bytes, 0);
  CU_ASSERT_EQUAL (st.backend_failing, 0);
  CU_ASSERT_EQUAL (tu_check (r.mem->buf + 4 * DLEN, DLEN, 4 * DLEN, 2), -1);
  rig_close (&r);
}

static const struct tu_case cases[] = {
  { "broken connection reopened", test_conn_error },
  { "reopen retried while refused", test_reopen_fails },
  { "other errors reopen after three rounds", test_other_error },
  { "a shutdown interrupts, it does not fail", test_shutdown },
  { "at exit a drain ends at a shutdown", test_exit_drain },
  { "workers reopen and drain", test_workers_reopen },
  { "no reopen: retried until it works", test_workers_no_reopen },
  { "a drain's own time limit", test_drain_timeout },
  { "a failed flush is retried", test_flush_fails },
  { "writes lost with a connection go again", test_lost_connection },
  { "a reopen after other errors keeps the batch",
    test_reopen_keeps_batch },
  { "a failed trim is left out", test_trim_fails },
  { NULL, NULL },
};

int
main (void)
{
  return tu_main ("health", cases, 120, 0);   /* a hang is a failure */
}
