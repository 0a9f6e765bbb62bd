/* SPDX-License-Identifier: BSD-3-Clause */
/* The statistics file of the pcache filter: the engine's statistics
 * as one line of JSON, rewritten every pcache-stats-interval seconds
 * and at exit.
 *
 * It is written to FILE.tmp, created exclusively (a name already there
 * is removed, never followed), and renamed over FILE, so a reader never
 * sees half of it and a planted link is never written through.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "stats.h"

static pc_cache *cache;
static char *stats_path;
static unsigned stats_interval = 5;
static int stats_failing;       /* the last write failed: report once */
static pthread_t stats_thread;
static int stats_running;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stopping;

/* The totals, then each export in use, in id order. */
int
pcache_stats_line (pc_cache *c, char *buf, size_t len)
{
  uint32_t slots = pc_ns_slots (c), i;
  struct pc_ns_stats *ns = calloc (slots ? slots : 1, sizeof *ns);
  struct pc_stats st;
  size_t n = 0;
  int r;

  if (!ns)
    return -1;
  pc_cache_get_stats (c, &st);
  for (i = 0; i < slots; i++)
    if (pc_ns_get_stats (c, i, &ns[n]) == 0)
      n++;
  r = pc_stats_json_exports (&st, ns, n, buf, len);
  free (ns);
  return r;
}

size_t
pcache_stats_max (pc_cache *c)
{
  return PC_STATS_JSON_MAX (pc_ns_slots (c));
}

static void
stats_error (const char *path)
{
  if (!stats_failing)
    nbdkit_error ("pcache-stats: %s: %m", path);
  else
    nbdkit_debug ("pcache-stats: %s: %m", path);
  stats_failing = 1;
}

/* Create TMP for writing, never through a symlink or into a file that
 * is already there: whatever has that name (a leftover of a crash, or
 * something planted) is removed first; unlink does not follow links.
 */
static int
create_tmp (const char *tmp)
{
  const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
  int fd = open (tmp, flags, 0644);

  if (fd == -1 && errno == EEXIST) {
    if (unlink (tmp) == -1)
      return -1;
    fd = open (tmp, flags, 0644);
  }
  return fd;
}

static int
write_all (int fd, const char *buf, size_t len)
{
  while (len > 0) {
    ssize_t r = write (fd, buf, len);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1)
      return -1;
    buf += r;
    len -= r;
  }
  return 0;
}

/* Replace the file atomically, so readers never see half of it. */
static void
write_stats_file (void)
{
  size_t max = pcache_stats_max (cache);
  char *buf = malloc (max + 1), *tmp;
  int n = buf ? pcache_stats_line (cache, buf, max) : -1, fd;

  if (n < 0 || asprintf (&tmp, "%s.tmp", stats_path) == -1) {
    free (buf);
    return;
  }
  buf[n++] = '\n';
  fd = create_tmp (tmp);
  if (fd == -1) {
    stats_error (tmp);
    free (tmp);
    free (buf);
    return;
  }
  if (write_all (fd, buf, n) == -1 || close (fd) == -1) {
    stats_error (tmp);
    unlink (tmp);
  }
  else if (rename (tmp, stats_path) == -1) {
    stats_error (stats_path);
    unlink (tmp);
  }
  else
    stats_failing = 0;
  free (tmp);
  free (buf);
}

static void *
stats_main (void *arg)
{
  (void) arg;
  pthread_mutex_lock (&lock);
  while (!stopping) {
    struct timespec ts;

    pthread_mutex_unlock (&lock);
    write_stats_file ();
    pthread_mutex_lock (&lock);
    clock_gettime (CLOCK_REALTIME, &ts);
    ts.tv_sec += stats_interval;
    while (!stopping &&
           pthread_cond_timedwait (&cond, &lock, &ts) != ETIMEDOUT)
      ;
  }
  pthread_mutex_unlock (&lock);
  return NULL;
}

int
pcache_stats_config (const char *path, unsigned interval)
{
  if (path) {
    free (stats_path);
    stats_path = nbdkit_absolute_path (path);
    if (!stats_path)
      return -1;
  }
  if (interval)
    stats_interval = interval;
  return 0;
}

/* Said at start rather than as a write error later (which only -v
 * would show after the first): the file's directory exists, and a
 * file can be made there, which also covers a read-only filesystem
 * and a user that may not write there.
 */
int
pcache_stats_check (void)
{
  char *dir, *tmp;
  struct stat st;
  int fd, r = -1;

  if (!stats_path)
    return 0;
  dir = strdup (stats_path);
  if (!dir || asprintf (&tmp, "%s.tmp", stats_path) == -1) {
    nbdkit_error ("pcache-stats: %m");
    free (dir);
    return -1;
  }
  if (stat (dirname (dir), &st) == -1)
    nbdkit_error ("pcache-stats: %s: directory %s: %m", stats_path, dir);
  else if (!S_ISDIR (st.st_mode))
    nbdkit_error ("pcache-stats: %s: %s is not a directory", stats_path, dir);
  else if (stat (stats_path, &st) == 0 && S_ISDIR (st.st_mode))
    nbdkit_error ("pcache-stats: %s is a directory", stats_path);
  else if ((fd = create_tmp (tmp)) == -1)
    nbdkit_error ("pcache-stats: %s: cannot write in %s: %m", stats_path,
                  dir);
  else {
    close (fd);
    unlink (tmp);
    r = 0;
  }
  free (dir);
  free (tmp);
  return r;
}

int
pcache_stats_start (pc_cache *c)
{
  int e;

  cache = c;
  stopping = 0;
  if (!stats_path)
    return 0;
  e = pthread_create (&stats_thread, NULL, stats_main, NULL);
  if (e) {
    nbdkit_error ("pcache-stats: pthread_create: %s", strerror (e));
    return -1;
  }
  stats_running = 1;
  return 0;
}

void
pcache_stats_stop (void)
{
  pthread_mutex_lock (&lock);
  stopping = 1;
  pthread_cond_broadcast (&cond);
  pthread_mutex_unlock (&lock);
  if (stats_running) {
    pthread_join (stats_thread, NULL);
    stats_running = 0;
  }
}

void
pcache_stats_final (void)
{
  if (stats_path && cache)
    write_stats_file ();
}

void
pcache_stats_free (void)
{
  free (stats_path);
  stats_path = NULL;
}
