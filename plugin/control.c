/* Side channels of the pcache filter: a statistics file rewritten
 * periodically and at exit, and a control socket that answers one
 * request line with one reply line.
 *
 * The statistics file is written to FILE.tmp, created exclusively (a
 * name already there is removed, never followed), and renamed over
 * FILE.
 *
 * The control socket has an acceptor thread that hands each connection
 * to a thread of its own, at most MAX_CLIENTS at a time, so a silent,
 * slow or long-running client (a drain) never holds up another.  A
 * client has REQUEST_MS from its connection to send its line.
 * pcache_control_stop ends the acceptor and wakes every client waiting
 * for input; a client inside a cache call (a drain, a mode switch) ends
 * once pc_cache_stop makes that call return, and pcache_control_final
 * joins it.
 */
#include <config.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
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

#define MAX_LINE 255            /* longest request, without its newline */
#define MAX_CLIENTS 16          /* control connections served at once */
#define REQUEST_MS 5000         /* to send the request line, from connecting */
#define REPLY_MS 5000           /* to take the reply */
#define DISCARD_MAX (1 << 20)   /* of an over-long line, read after the reply */
#define USAGE "stats, gc-percent N, mode MODE or drain"

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_DONE };

struct client {
  pthread_t thread;
  int fd;
  enum slot_state state;        /* under lock */
};

/* What reading a request line came to. */
enum req_status { REQ_LINE, REQ_TOO_LONG, REQ_TIMEOUT, REQ_STOP, REQ_CLOSED };

static pc_cache *cache;
static char *stats_path;
static unsigned stats_interval;
static int stats_failing;       /* the last write failed: report once */
static char *sock_path;
static dev_t sock_dev;          /* the socket we made, to unlink only it */
static ino_t sock_ino;
static int listen_fd = -1;
static int stop_pipe[2] = { -1, -1 };
static pthread_t stats_thread, sock_thread;
static int stats_running, sock_running;
static struct client clients[MAX_CLIENTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int stopping;
/* Serialises gc-percent changes from concurrent clients. */
static pthread_mutex_t gc_lock = PTHREAD_MUTEX_INITIALIZER;

static int
stats_line (char *buf, size_t len)
{
  struct pc_stats st;

  pc_cache_get_stats (cache, &st);
  return pc_stats_json (&st, buf, len);
}

/* ---------------------------------------------------------------------
 * The statistics file.
 */

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
  char buf[2048], *tmp;
  int n = stats_line (buf, sizeof buf - 1), fd;

  if (n < 0 || asprintf (&tmp, "%s.tmp", stats_path) == -1)
    return;
  buf[n++] = '\n';
  fd = create_tmp (tmp);
  if (fd == -1) {
    stats_error (tmp);
    free (tmp);
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

/* ---------------------------------------------------------------------
 * Requests.
 */

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
req_gc_percent (char **args, int nargs, char *reply, size_t len)
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
  else
    snprintf (reply, len, "error: %s: %s", req, strerror (err));
}

static void
req_mode (char **args, int nargs, char *reply, size_t len)
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
req_stats (char **args, int nargs, char *reply, size_t len)
{
  if (nargs != 0)
    snprintf (reply, len, "error: stats takes no argument");
  else if (stats_line (reply, len) < 0)
    snprintf (reply, len, "error: stats do not fit");
}

static void
req_drain (char **args, int nargs, char *reply, size_t len)
{
  int err = 0;

  if (nargs != 0)
    snprintf (reply, len, "error: drain takes no argument");
  else if (pc_cache_drain (cache, &err) == -1)
    cache_error (reply, len, "drain", err);
  else
    snprintf (reply, len, "ok");
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

/* LINE holds LEN bytes (no newline) and room for one more. */
static void
handle (char *line, size_t len, char *reply, size_t rlen)
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
    req_stats (w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "gc-percent") == 0)
    req_gc_percent (w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "mode") == 0)
    req_mode (w + 1, n - 1, reply, rlen);
  else if (strcmp (w[0], "drain") == 0)
    req_drain (w + 1, n - 1, reply, rlen);
  else
    snprintf (reply, rlen, "error: unknown request '%s' (expected "
              USAGE ")", w[0]);
}

/* ---------------------------------------------------------------------
 * One client connection.
 */

static int64_t
now_ms (void)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for EVENTS on FD until DEADLINE: 1 ready, 0 timed out, -1 the
 * filter is stopping or poll failed.
 */
static int
wait_fd (int fd, short events, int64_t deadline)
{
  for (;;) {
    struct pollfd p[2] = {
      { .fd = fd, .events = events },
      { .fd = stop_pipe[0], .events = POLLIN },
    };
    int64_t left = deadline - now_ms ();
    int r = poll (p, 2, left > 0 ? (int) left : 0);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 || p[1].revents)
      return -1;
    return r > 0;
  }
}

/* Read one line into BUF (MAX_LINE + 1 bytes); a client that closes
 * its side ends its line too.
 */
static enum req_status
read_request (int fd, char *buf, size_t *len, int64_t deadline)
{
  size_t got = 0;

  for (;;) {
    int w = wait_fd (fd, POLLIN, deadline);
    ssize_t r;
    char *nl;

    if (w <= 0)
      return w == 0 ? REQ_TIMEOUT : REQ_STOP;
    r = read (fd, buf + got, MAX_LINE + 1 - got);
    if (r == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r == -1 || (r == 0 && got == 0))
      return REQ_CLOSED;
    if (r == 0) {
      *len = got;
      return REQ_LINE;
    }
    nl = memchr (buf + got, '\n', r);
    got += r;
    if (nl) {
      *len = nl - buf;
      return REQ_LINE;
    }
    if (got > MAX_LINE)
      return REQ_TOO_LONG;
  }
}

static void
send_reply (int fd, const char *reply)
{
  int64_t deadline = now_ms () + REPLY_MS;
  size_t len = strlen (reply), done = 0;

  while (done < len) {
    ssize_t r = send (fd, reply + done, len - done, MSG_NOSIGNAL);

    if (r == -1 && errno == EINTR)
      continue;
    if (r == -1 && errno == EAGAIN && wait_fd (fd, POLLOUT, deadline) == 1)
      continue;
    if (r == -1) {
      nbdkit_debug ("pcache-control: reply: %m");
      return;
    }
    done += r;
  }
}

/* After answering an over-long line, read the rest of it, so that the
 * client, still sending, gets no error before it reads the reply.
 */
static void
discard_line (int fd, int64_t deadline)
{
  char buf[4096];
  size_t total = 0;

  while (total < DISCARD_MAX && wait_fd (fd, POLLIN, deadline) == 1) {
    ssize_t r = read (fd, buf, sizeof buf);

    if (r == -1 && (errno == EINTR || errno == EAGAIN))
      continue;
    if (r <= 0 || memchr (buf, '\n', r))
      return;
    total += r;
  }
}

static void
serve (int fd)
{
  char req[MAX_LINE + 1], reply[2048];
  int64_t deadline = now_ms () + REQUEST_MS;
  size_t len = 0;
  enum req_status st = read_request (fd, req, &len, deadline);

  switch (st) {
  case REQ_LINE:
    handle (req, len, reply, sizeof reply - 1);
    break;
  case REQ_TOO_LONG:
    snprintf (reply, sizeof reply - 1, "error: request longer than %d "
              "bytes", MAX_LINE);
    break;
  case REQ_TIMEOUT:
    snprintf (reply, sizeof reply - 1, "error: no complete request line "
              "within %d s", REQUEST_MS / 1000);
    break;
  case REQ_STOP:
    snprintf (reply, sizeof reply - 1, "error: nbdkit is shutting down");
    break;
  case REQ_CLOSED:
    return;
  }
  strcat (reply, "\n");
  send_reply (fd, reply);
  if (st == REQ_TOO_LONG)
    discard_line (fd, deadline);
}

static void *
client_main (void *arg)
{
  struct client *cl = arg;

  serve (cl->fd);
  close (cl->fd);
  pthread_mutex_lock (&lock);
  cl->state = SLOT_DONE;
  pthread_mutex_unlock (&lock);
  return NULL;
}

/* ---------------------------------------------------------------------
 * Client slots.  Only the acceptor claims slots; a finished client is
 * joined when its slot is needed again, or at the end.
 */

static struct client *
claim_slot (void)
{
  struct client *found = NULL;

  pthread_mutex_lock (&lock);
  for (int i = 0; i < MAX_CLIENTS && !found; i++) {
    if (clients[i].state == SLOT_FREE)
      found = &clients[i];
    else if (clients[i].state == SLOT_DONE) {
      pthread_join (clients[i].thread, NULL);
      found = &clients[i];
    }
  }
  if (found)
    found->state = SLOT_BUSY;
  pthread_mutex_unlock (&lock);
  return found;
}

static void
release_slot (struct client *cl)
{
  pthread_mutex_lock (&lock);
  cl->state = SLOT_FREE;
  pthread_mutex_unlock (&lock);
}

/* Join every client thread.  Called once no acceptor runs.  The lock
 * is not held across the join: a client takes it to say it is done.
 */
static void
join_clients (void)
{
  for (int i = 0; i < MAX_CLIENTS; i++) {
    int used;

    pthread_mutex_lock (&lock);
    used = clients[i].state != SLOT_FREE;
    pthread_mutex_unlock (&lock);
    if (used) {
      pthread_join (clients[i].thread, NULL);
      release_slot (&clients[i]);
    }
  }
}

static void
refuse (int fd, const char *why)
{
  char reply[128];

  snprintf (reply, sizeof reply, "error: %s\n", why);
  send_reply (fd, reply);
  close (fd);
}

static void
start_client (int fd)
{
  struct client *cl = claim_slot ();
  int e;

  if (!cl) {
    char why[64];

    snprintf (why, sizeof why, "too many control connections (at most %d "
              "at a time)", MAX_CLIENTS);
    refuse (fd, why);
    return;
  }
  cl->fd = fd;
  e = pthread_create (&cl->thread, NULL, client_main, cl);
  if (e) {
    nbdkit_debug ("pcache-control: pthread_create: %s", strerror (e));
    release_slot (cl);
    refuse (fd, "cannot start a thread for this connection");
  }
}

static void *
sock_main (void *arg)
{
  (void) arg;
  for (;;) {
    struct pollfd p[2] = {
      { .fd = listen_fd, .events = POLLIN },
      { .fd = stop_pipe[0], .events = POLLIN },
    };
    int fd;

    if (poll (p, 2, -1) == -1) {
      if (errno == EINTR)
        continue;
      nbdkit_error ("pcache-control: poll: %m");
      break;
    }
    if (p[1].revents)
      break;
    fd = accept4 (listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd >= 0)
      start_client (fd);
    else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
             errno == ENOMEM) {
      /* The connection stays queued: do not spin on it. */
      nbdkit_debug ("pcache-control: accept: %m");
      poll (&p[1], 1, 100);
    }
  }
  return NULL;
}

/* ---------------------------------------------------------------------
 * The socket file.
 */

/* SOCK_PATH may hold a socket left by an earlier run, which is removed.
 * Anything else there (a file, a symlink, a directory) is left alone
 * and refused, and so is a socket that something still listens on.
 */
static int
remove_stale_socket (const struct sockaddr_un *addr)
{
  struct stat st;
  int fd, r;

  if (lstat (sock_path, &st) == -1) {
    if (errno == ENOENT)
      return 0;
    nbdkit_error ("pcache-control: %s: %m", sock_path);
    return -1;
  }
  if (!S_ISSOCK (st.st_mode)) {
    nbdkit_error ("pcache-control: %s exists and is not a socket; "
                  "not replacing it", sock_path);
    return -1;
  }
  fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd == -1) {
    nbdkit_error ("pcache-control: socket: %m");
    return -1;
  }
  r = connect (fd, (const struct sockaddr *) addr, sizeof *addr);
  if (r == -1 && errno == ECONNREFUSED) {
    close (fd);
    unlink (sock_path);
    return 0;
  }
  if (r == 0 || errno == EAGAIN)
    nbdkit_error ("pcache-control: %s: another process listens on this "
                  "socket", sock_path);
  else
    nbdkit_error ("pcache-control: %s: cannot tell whether this socket is "
                  "in use: %m", sock_path);
  close (fd);
  return -1;
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
  if (remove_stale_socket (&addr) == -1)
    return -1;
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd == -1 ||
      bind (listen_fd, (struct sockaddr *) &addr, sizeof addr) == -1 ||
      lstat (sock_path, &st) == -1) {
    nbdkit_error ("pcache-control: %s: %m", sock_path);
    return -1;
  }
  sock_dev = st.st_dev;
  sock_ino = st.st_ino;
  if (listen (listen_fd, MAX_CLIENTS) == -1 ||
      pipe2 (stop_pipe, O_CLOEXEC) == -1) {
    nbdkit_error ("pcache-control: %s: %m", sock_path);
    return -1;
  }
  return 0;
}

/* Remove the socket at exit, unless something else has taken its name. */
static void
close_socket (void)
{
  struct stat st;

  if (listen_fd < 0)
    return;
  close (listen_fd);
  listen_fd = -1;
  if (lstat (sock_path, &st) == 0 && S_ISSOCK (st.st_mode) &&
      st.st_dev == sock_dev && st.st_ino == sock_ino)
    unlink (sock_path);
  else
    nbdkit_debug ("pcache-control: %s was replaced; not removing it",
                  sock_path);
}

/* ---------------------------------------------------------------------
 * Life cycle.
 */

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

static int
start_socket (void)
{
  int e;

  if (open_socket () == -1)
    return -1;
  e = pthread_create (&sock_thread, NULL, sock_main, NULL);
  if (e) {
    nbdkit_error ("pcache-control: pthread_create: %s", strerror (e));
    return -1;
  }
  sock_running = 1;
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
  if (sock_path && start_socket () == -1) {
    pcache_control_stop ();
    return -1;
  }
  return 0;
}

/* Stop the stats thread and the acceptor, and wake every client that
 * waits for input or output; clients inside a cache call are joined by
 * pcache_control_final, after pc_cache_stop ended that call.
 */
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
  if (stop_pipe[1] >= 0 && write (stop_pipe[1], "x", 1) == -1)
    nbdkit_debug ("pcache-control: stop: %m");
  if (sock_running) {
    pthread_join (sock_thread, NULL);
    sock_running = 0;
  }
  close_socket ();
}

/* Join the clients; then nothing polls the stop pipe any more. */
static void
end_clients (void)
{
  join_clients ();
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
  end_clients ();
  if (stats_path && cache)
    write_stats_file ();
}

void
pcache_control_free (void)
{
  end_clients ();
  free (stats_path);
  free (sock_path);
  stats_path = sock_path = NULL;
}
