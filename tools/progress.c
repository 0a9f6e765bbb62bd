/* SPDX-License-Identifier: BSD-3-Clause */
/* A status line on stderr, redrawn in place with \r, shown only when
 * stderr is a terminal.  Messages erase it first (see errmsg).
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "pcachectl.h"

static int enabled;
static int shown;               /* a status line is on the screen */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

static pthread_t ticker;
static int ticking;
static int ticker_stop;
static pthread_cond_t ticker_cv = PTHREAD_COND_INITIALIZER;
static progress_fn ticker_fn;
static void *ticker_opaque;

void
progress_init (void)
{
  const char *term = getenv ("TERM");

  enabled = isatty (2) && !(term && strcmp (term, "dumb") == 0);
}

int
progress_enabled (void)
{
  return enabled;
}

void
progress_lock (void)
{
  pthread_mutex_lock (&lock);
}

void
progress_unlock (void)
{
  pthread_mutex_unlock (&lock);
}

/* Caller holds the lock. */
void
progress_clear (void)
{
  if (shown) {
    fputs ("\r\033[K", stderr);
    fflush (stderr);
    shown = 0;
  }
}

static void
draw (const char *text)
{
  fprintf (stderr, "\r%s\033[K", text);
  fflush (stderr);
  shown = 1;
}

void
progress_show (const char *fmt, ...)
{
  char buf[256];
  va_list ap;

  if (!enabled)
    return;
  va_start (ap, fmt);
  vsnprintf (buf, sizeof buf, fmt, ap);
  va_end (ap);
  pthread_mutex_lock (&lock);
  draw (buf);
  pthread_mutex_unlock (&lock);
}

static void *
ticker_main (void *arg)
{
  (void) arg;
  pthread_mutex_lock (&lock);
  while (!ticker_stop) {
    struct timespec ts;
    char buf[256];

    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_nsec += 200 * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
      ts.tv_sec++;
      ts.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait (&ticker_cv, &lock, &ts);
    if (ticker_stop)
      break;
    /* fn reads counters only; calling it under the lock keeps the line
     * and the messages apart.
     */
    buf[0] = '\0';
    ticker_fn (ticker_opaque, buf, sizeof buf);
    if (buf[0])
      draw (buf);
  }
  progress_clear ();
  pthread_mutex_unlock (&lock);
  return NULL;
}

void
progress_ticker_start (progress_fn fn, void *opaque)
{
  if (!enabled || ticking)
    return;
  ticker_fn = fn;
  ticker_opaque = opaque;
  ticker_stop = 0;
  if (pthread_create (&ticker, NULL, ticker_main, NULL) == 0)
    ticking = 1;
}

void
progress_ticker_stop (void)
{
  if (ticking) {
    pthread_mutex_lock (&lock);
    ticker_stop = 1;
    pthread_cond_signal (&ticker_cv);
    pthread_mutex_unlock (&lock);
    pthread_join (ticker, NULL);
    ticking = 0;
  }
  pthread_mutex_lock (&lock);
  progress_clear ();
  pthread_mutex_unlock (&lock);
}
