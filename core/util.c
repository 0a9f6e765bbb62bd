/* SPDX-License-Identifier: BSD-3-Clause */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
/* Also without config.h (the fuzz target of check-crash). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE 1             /* pthread_setname_np, SCHED_BATCH */
#endif

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>

#include "util.h"

static void
default_log (int level, const char *fmt, va_list ap)
{
  if (level > 0)
    return;
  fputs ("pcache: ", stderr);
  vfprintf (stderr, fmt, ap);
  fputc ('\n', stderr);
}

static pc_log_fn log_fn = default_log;

void
pc_set_log (pc_log_fn fn)
{
  log_fn = fn ? fn : default_log;
}

unsigned pc_trace_mask;

void
pc_set_trace (unsigned mask)
{
  pc_trace_mask = mask;
}

void
pc_error (const char *fmt, ...)
{
  va_list ap;
  int saved = errno;

  va_start (ap, fmt);
  log_fn (0, fmt, ap);
  va_end (ap);
  errno = saved;
}

int
pc_fail (int e, const char *fmt, ...)
{
  va_list ap;

  va_start (ap, fmt);
  log_fn (0, fmt, ap);
  va_end (ap);
  errno = e;
  return -1;
}

void
pc_debug (const char *fmt, ...)
{
  va_list ap;
  int saved = errno;

  va_start (ap, fmt);
  log_fn (1, fmt, ap);
  va_end (ap);
  errno = saved;
}

static struct timespec
deadline_ms (unsigned ms)
{
  struct timespec ts;

  clock_gettime (CLOCK_REALTIME, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long) (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  return ts;
}

int
pc_cond_wait_ms (pthread_cond_t *cv, pthread_mutex_t *m, unsigned ms)
{
  struct timespec ts = deadline_ms (ms);

  return pthread_cond_timedwait (cv, m, &ts);
}

int
pc_mutex_lock_ms (pthread_mutex_t *m, unsigned ms)
{
  struct timespec ts;

  if (pthread_mutex_trylock (m) == 0)
    return 0;
  ts = deadline_ms (ms);
  return pthread_mutex_timedlock (m, &ts);
}

static uint64_t
clock_ms (clockid_t id)
{
  struct timespec ts;

  clock_gettime (id, &ts);
  return (uint64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t
pc_now_ms (void)
{
  return clock_ms (CLOCK_MONOTONIC);
}

uint64_t
pc_now_ms_coarse (void)
{
  return clock_ms (CLOCK_MONOTONIC_COARSE);
}

void
pc_thread_background (const char *name)
{
  struct sched_param sp = { .sched_priority = 0 };

  pthread_setname_np (pthread_self (), name);
  /* Best effort: without it the thread only runs as an ordinary one. */
  pthread_setschedparam (pthread_self (), SCHED_BATCH, &sp);
}
