/* Side channels of the pcache filter: a statistics file rewritten
 * periodically and at exit, and a control socket that answers one
 * request line with one reply line.
 */
#include <config.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <nbdkit-filter.h>

#include "control.h"

static pc_cache *cache;
static char *stats_path;
static unsigned stats_interval;
static char *sock_path;
static int listen_fd = -1;
static int stop_pipe[2] = { -1, -1 };
static pthread_t stats_thread, sock_thread;
static int stats_running, sock_running;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stopping;

static int
stats_line (char *buf, size_t len)
{
  struct pc_stats st;

  pc_cache_get_stats (cache, &st);
  return pc_stats_json (&st, buf, len);
}

/* Replace the file atomically, so readers never see half of it. */
static void
write_stats_file (void)
{
  char buf[2048], *tmp;
  int n = stats_line (buf, sizeof buf - 1);
  FILE *f;

  if (n < 0 || asprintf (&tmp, "%s.tmp", stats_path) == -1)
    return;
  buf[n++] = '\n';
  f = fopen (tmp, "we");
  if (!f || fwrite (buf, 1, n, f) != (size_t) n || fclose (f) != 0 ||
      rename (tmp, stats_path) == -1) {
    nbdkit_debug ("pcache-stats: %s: %m", stats_path);
    unlink (tmp);
  }
  free (tmp);
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

static void
handle (const char *req, char *reply, size_t len)
{
  char arg[64];
  int err = 0, v;

  if (strcmp (req, "stats") == 0) {
    if (stats_line (reply, len) < 0)
      snprintf (reply, len, "error: stats do not fit");
  }
  else if (sscanf (req, "gc-percent %d", &v) == 1) {
    if (pc_cache_set_gc_percent (cache, v) == -1)
      snprintf (reply, len, "error: gc-percent must be 0..%d",
                PC_MAX_GC_PERCENT);
    else
      snprintf (reply, len, "ok");
  }
  else if (sscanf (req, "mode %63s", arg) == 1) {
    enum pc_mode m;

    if (pc_mode_parse (arg, &m) == -1)
      snprintf (reply, len, "error: unknown mode '%s' (writeback, "
                "writethrough, writearound)", arg);
    else if (pc_cache_set_mode (cache, m, &err) == -1)
      snprintf (reply, len, "error: %s", strerror (err));
    else
      snprintf (reply, len, "ok");
  }
  else if (strcmp (req, "drain") == 0) {
    if (pc_cache_drain (cache, &err) == -1)
      snprintf (reply, len, "error: %s", strerror (err));
    else
      snprintf (reply, len, "ok");
  }
  else
    snprintf (reply, len, "error: unknown request (stats, gc-percent N, "
              "mode MODE, drain)");
}

static void
serve_one (int fd)
{
  char req[256], reply[2048];
  size_t got = 0;
  struct pollfd p = { .fd = fd, .events = POLLIN };

  /* One short line; a client that says nothing for 5 s is dropped. */
  while (got < sizeof req - 1 && poll (&p, 1, 5000) == 1) {
    ssize_t r = read (fd, req + got, sizeof req - 1 - got);
    if (r <= 0)
      break;
    got += r;
    if (memchr (req, '\n', got))
      break;
  }
  req[got] = '\0';
  req[strcspn (req, "\r\n")] = '\0';
  handle (req, reply, sizeof reply - 1);
  strcat (reply, "\n");
  if (write (fd, reply, strlen (reply)) == -1)
    nbdkit_debug ("pcache-control: reply: %m");
}

static void *
sock_main (void *arg)
{
  struct pollfd p[2] = {
    { .fd = listen_fd, .events = POLLIN },
    { .fd = stop_pipe[0], .events = POLLIN },
  };

  (void) arg;
  for (;;) {
    int fd;

    if (poll (p, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      break;
    }
    if (p[1].revents)
      break;
    fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC);
    if (fd >= 0) {
      serve_one (fd);
      close (fd);
    }
  }
  return NULL;
}

static int
open_socket (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;

  if (strlen (sock_path) >= sizeof addr.sun_path) {
    nbdkit_error ("pcache-control: %s: path too long", sock_path);
    return -1;
  }
  strcpy (addr.sun_path, sock_path);
  /* A socket left by an earlier run is stale: the cache lock proves no
   * other pcache runs on this cache.
   */
  if (lstat (sock_path, &st) == 0 && S_ISSOCK (st.st_mode))
    unlink (sock_path);
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd == -1 ||
      bind (listen_fd, (struct sockaddr *) &addr, sizeof addr) == -1 ||
      listen (listen_fd, 4) == -1 ||
      pipe2 (stop_pipe, O_CLOEXEC) == -1) {
    nbdkit_error ("pcache-control: %s: %m", sock_path);
    return -1;
  }
  return 0;
}

int
pcache_control_config (const char *stats, unsigned interval,
                       const char *sock)
{
  if (stats) {
    free (stats_path);
    stats_path = nbdkit_absolute_path (stats);
    if (!stats_path)
      return -1;
  }
  if (interval)
    stats_interval = interval;
  if (sock) {
    free (sock_path);
    sock_path = nbdkit_absolute_path (sock);
    if (!sock_path)
      return -1;
  }
  return 0;
}

int
pcache_control_start (pc_cache *c)
{
  int e;

  cache = c;
  stopping = 0;
  if (!stats_interval)
    stats_interval = 5;
  if (stats_path) {
    e = pthread_create (&stats_thread, NULL, stats_main, NULL);
    if (e) {
      nbdkit_error ("pcache-stats: pthread_create: %s", strerror (e));
      return -1;
    }
    stats_running = 1;
  }
  if (sock_path) {
    if (open_socket () == -1)
      return -1;
    e = pthread_create (&sock_thread, NULL, sock_main, NULL);
    if (e) {
      nbdkit_error ("pcache-control: pthread_create: %s", strerror (e));
      return -1;
    }
    sock_running = 1;
  }
  return 0;
}

void
pcache_control_stop (void)
{
  pthread_mutex_lock (&lock);
  stopping = 1;
  pthread_cond_broadcast (&cond);
  pthread_mutex_unlock (&lock);
  if (stats_running) {
    pthread_join (stats_thread, NULL);
    stats_running = 0;
  }
  if (sock_running) {
    if (write (stop_pipe[1], "x", 1) == -1)
      nbdkit_debug ("pcache-control: stop: %m");
    pthread_join (sock_thread, NULL);
    sock_running = 0;
  }
  if (listen_fd >= 0) {
    close (listen_fd);
    unlink (sock_path);
    listen_fd = -1;
  }
  if (stop_pipe[0] >= 0) {
    close (stop_pipe[0]);
    close (stop_pipe[1]);
    stop_pipe[0] = stop_pipe[1] = -1;
  }
}

/* The last word, after the workers stopped. */
void
pcache_control_final (void)
{
  if (stats_path && cache)
    write_stats_file ();
}

void
pcache_control_free (void)
{
  free (stats_path);
  free (sock_path);
  stats_path = sock_path = NULL;
}
