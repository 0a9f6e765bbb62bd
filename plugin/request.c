/* SPDX-License-Identifier: BSD-3-Clause */
/* Requests of the pcache filter's control socket: one line in, one
 * line out.  Parsing is strict: a request with a word too many or too
 * few, a number with anything else in it or out of range, or a control
 * character is refused with a reply naming what was wrong, and changes
 * nothing.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "request.h"
#include "stats.h"

#define USAGE "stats, gc-percent N, mode MODE, drain, checkpoint, hold or " \
  "release"

/* Serialises gc-percent changes from concurrent clients. */
static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;

/* A whole number 0..max, digits only: no sign, no junk, no overflow. */
static int
parse_percent (const char *s, int max, int *out, const char **why)
{
  int v = 0;

  if (!*s) {
    *why = "is empty";
    return -1;
  }
  for (; *s; s++) {
    if (!isdigit ((unsigned char) *s)) {
      *why = "is not a whole number";
      return -1;
    }
    v = v * 10 + (*s - '0');
    if (v > max) {
      *why = "is out of range";
      return -1;
    }
  }
  *out = v;
  return 0;
}

static void
req_gc_percent (pc_cache *cache, char **args, int nargs, char *reply,
                size_t len)
{
  const char *why;
  int v, r;

  if (nargs != 1) {
    snprintf (reply, len, "error: gc-percent takes one argument, a "
              "percentage 0..%d", PC_MAX_GC_PERCENT);
    return;
  }
  if (parse_percent (args[0], PC_MAX_GC_PERCENT, &v, &why) == -1) {
    snprintf (reply, len, "error: gc-percent: '%s' %s (0..%d)", args[0],
              why, PC_MAX_GC_PERCENT);
    return;
  }
  pthread_mutex_lock (&gc_lock);
  r = pc_cache_set_gc_percent (cache, v);
  pthread_mutex_unlock (&gc_lock);
  if (r == -1)
    snprintf (reply, len, "error: gc-percent: %m");
  else
    snprintf (reply, len, "ok");
}

/* A cache call failed with ERR. */
static void
cache_error (char *reply, size_t len, const char *req, int err)
{
  if (err == ESHUTDOWN)
    snprintf (reply, len, "error: %s: nbdkit is shutting down", req);
  else if (err == EBUSY)
    snprintf (reply, len, "error: %s: write-back is held (release it "
              "first)", req);
  else if (err == ECANCELED)
    snprintf (reply, len, "error: %s: released while it waited", req);
  else
    snprintf (reply, len, "error: %s: %s", req, strerror (err));
}

static void
req_mode (pc_cache *cache, char **args, int nargs, char *reply, size_t len)
{
  enum pc_mode m;
  int err = 0;

  if (nargs != 1)
    snprintf (reply, len, "error: mode takes one argument: writeback, "
              "writethrough or writearound");
  else if (pc_mode_parse (args[0], &m) == -1)
    snprintf (reply, len, "error: unknown mode '%s' (writeback, "
              "writethrough, writearound)", args[0]);
  else if (pc_cache_set_mode (cache, m, &err) == -1)
    cache_error (reply, len, "mode", err);
  else
    snprintf (reply, len, "ok");
}

static void
req_stats (pc_cache *cache, char **args, int nargs, char *reply, size_t len)
{
  if (nargs != 0)
    snprintf (reply, len, "error: stats takes no argument");
  else if (pcache_stats_line (cache, reply, len) < 0)
    snprintf (reply, len, "error: stats do not fit");
}

static void
req_drain (pc_cache *cache, char **args, int nargs, char *reply, size_t len)
{
  int err = 0;

  if (nargs != 0)
    snprintf (reply, len, "error: drain takes no argument");
  else if (pc_cache_drain (cache, &err) == -1)
    cache_error (reply, len, "drain", err);
  else
    snprintf (reply, len, "ok");
}

/* checkpoint: a drain that names the epoch now on the backend. */
static void
req_checkpoint (pc_cache *cache, char **args, int nargs, char *reply,
                size_t len)
{
  uint64_t epoch;
  int err = 0;

  (void) args;
  if (nargs != 0)
    snprintf (reply, len, "error: checkpoint takes no argument");
  else if (pc_cache_checkpoint (cache, &epoch, &err) == -1)
    cache_error (reply, len, "checkpoint", err);
  else
    snprintf (reply, len, "ok %" PRIu64, epoch);
}

/* hold: the reply names the epoch whose image the backend keeps. */
static void
req_hold (pc_cache *cache, char **args, int nargs, char *reply, size_t len)
{
  uint64_t epoch;
  int err = 0;

  (void) args;
  if (nargs != 0)
    snprintf (reply, len, "error: hold takes no argument");
  else if (pc_cache_hold (cache, &epoch, &err) == -1) {
    if (err == EINVAL)
      snprintf (reply, len, "error: hold: writes go straight to the backend "
                "in %s mode; a hold needs write-back mode",
                pc_mode_name (pc_cache_get_mode (cache)));
    else
      cache_error (reply, len, "hold", err);
  }
  else
    snprintf (reply, len, "ok %" PRIu64, epoch);
}

static void
req_release (pc_cache *cache, char **args, int nargs, char *reply,
             size_t len)
{
  (void) args;
  if (nargs != 0)
    snprintf (reply, len, "error: release takes no argument");
  else {
    pc_cache_release (cache);
    snprintf (reply, len, "ok");
  }
}

/* Split LINE in place into at most MAX words at blanks; returns the
 * number of words, more than MAX if there are more.
 */
static int
split_words (char *line, char **words, int max)
{
  int n = 0;
  char *p = line;

  for (;;) {
    p += strspn (p, " \t");
    if (!*p)
      return n;
    if (n < max)
      words[n] = p;
    n++;
    p += strcspn (p, " \t");
    if (*p)
      *p++ = '\0';
  }
}

static int
has_control_char (const char *line, size_t len)
{
  for (size_t i = 0; i < len; i++) {
    unsigned char ch = line[i];

    if ((ch < 0x20 && ch != '\t') || ch == 0x7f)
      return 1;
  }
  return 0;
}

void
pcache_request (pc_cache *cache, char *line, size_t len, char *reply,
                size_t rlen)
{
  char *w[3];
  int n;

  if (len > 0 && line[len - 1] == '\r')
    len--;
  if (has_control_char (line, len)) {
    snprintf (reply, rlen, "error: the request contains a control "
              "character");
    return;
  }
  line[len] = '\0';
  n = split_words (line, w, 3);
  if (n == 0)
    snprintf (reply, rlen, "error: empty request (expected " USAGE ")");
  else if (n > 3)
    snprintf (reply, rlen, "error: too many words in the request "
              "(expected " USAGE ")");
  else if (strcmp (w[0], "stats") == 0)
    req_stats (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "gc-percent") == 0)
    req_gc_percent (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "mode") == 0)
    req_mode (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "drain") == 0)
    req_drain (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "checkpoint") == 0)
    req_checkpoint (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "hold") == 0)
    req_hold (cache, w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "release") == 0)
    req_release (cache, w + 1, n - 1, reply, rlen);
  else
    snprintf (reply, rlen, "error: unknown request '%s' (expected "
              USAGE ")", w[0]);
}

