/* SPDX-License-Identifier: BSD-3-Clause */
/* Side channels of the pcache filter: the statistics file (stats.c)
 * and a control socket that answers one request line (request.c) with
 * one reply line.
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

#include <errno.h>
#include <libgen.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdatomic.h>
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
#include "request.h"
#include "stats.h"

#define MAX_LINE 255            /* longest request, without its newline */
#define MAX_CLIENTS 16          /* control connections served at once */
#define REQUEST_MS 5000         /* to send the request line, from connecting */
#define REPLY_MS 5000           /* to take the reply */
#define DISCARD_MAX (1 << 20)   /* of an over-long line, read after the reply */

enum slot_state { SLOT_FREE, SLOT_BUSY, SLOT_DONE };

struct client {
  pthread_t thread;
  int fd;
  enum slot_state state;        /* under lock */
};

/* What reading a request line came to. */
enum req_status { REQ_LINE, REQ_TOO_LONG, REQ_TIMEOUT, REQ_STOP, REQ_CLOSED };

/* NULL while the socket answers before the cache has started. */
static pc_cache *_Atomic cache;
static char *sock_path;
static mode_t sock_mode = 0600; /* pcache-control-mode */
static int sock_mode_set;
static dev_t sock_dev;          /* the socket we made, to unlink only it */
static ino_t sock_ino;
static int listen_fd = -1;
static int stop_pipe[2] = { -1, -1 };
static pthread_t sock_thread;
static int sock_running;
static struct client clients[MAX_CLIENTS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

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
  char req[MAX_LINE + 1], *reply;
  int64_t deadline = now_ms () + REQUEST_MS;
  size_t len = 0;
  enum req_status st = read_request (fd, req, &len, deadline);
  pc_cache *c = atomic_load (&cache);
  /* Room for the statistics of every export the cache can hold (only
   * what is written is touched), and the newline.
   */
  size_t rlen = c ? pcache_stats_max (c) : 0;

  if (rlen < 2048)
    rlen = 2048;
  if (st == REQ_CLOSED)
    return;
  reply = malloc (rlen + 1);
  if (!reply) {
    send_reply (fd, "error: out of memory\n");
    return;
  }
  switch (st) {
  case REQ_LINE:
    if (c)
      pcache_request (c, req, len, reply, rlen);
    else
      snprintf (reply, rlen, "error: the cache has not started: the "
                "plugin could not be opened yet (see nbdkit's log); the "
                "first client connection that can open it starts the cache");
    break;
  case REQ_TOO_LONG:
    snprintf (reply, rlen, "error: request longer than %d bytes", MAX_LINE);
    break;
  case REQ_TIMEOUT:
    snprintf (reply, rlen, "error: no complete request line within %d s",
              REQUEST_MS / 1000);
    break;
  case REQ_STOP:
  default:
    snprintf (reply, rlen, "error: nbdkit is shutting down");
    break;
  }
  strcat (reply, "\n");
  send_reply (fd, reply);
  free (reply);
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

/* The directory the socket goes in must exist and be writable: said
 * before the cache file is made, not as a bind error after it.
 */
static int
check_sock_dir (void)
{
  char *copy = strdup (sock_path);
  struct stat st;
  int r = 0;

  if (!copy) {
    nbdkit_error ("pcache-control: strdup: %m");
    return -1;
  }
  if (stat (dirname (copy), &st) == -1) {
    nbdkit_error ("pcache-control: %s: directory %s: %m", sock_path, copy);
    r = -1;
  }
  else if (!S_ISDIR (st.st_mode)) {
    nbdkit_error ("pcache-control: %s: %s is not a directory", sock_path,
                  copy);
    r = -1;
  }
  else if (access (copy, W_OK | X_OK) == -1) {
    nbdkit_error ("pcache-control: %s: cannot make a socket in %s: %m",
                  sock_path, copy);
    r = -1;
  }
  free (copy);
  return r;
}

static int
socket_address (struct sockaddr_un *addr)
{
  if (strlen (sock_path) >= sizeof addr->sun_path) {
    nbdkit_error ("pcache-control: %s: path too long for a Unix socket "
                  "(at most %zu bytes)", sock_path,
                  sizeof addr->sun_path - 1);
    return -1;
  }
  strcpy (addr->sun_path, sock_path);
  return 0;
}

/* Bind with exactly SOCK_MODE: the umask decides a socket's mode at
 * bind, so there is no moment at which a wider mode could let someone
 * in.  Nothing else of pcache runs yet (get_ready).
 */
static int
bind_with_mode (int fd, const struct sockaddr_un *addr)
{
  mode_t old = umask (~sock_mode & 0777);
  int r = bind (fd, (const struct sockaddr *) addr, sizeof *addr);
  int e = errno;

  umask (old);
  errno = e;
  return r;
}

static int
open_socket (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };
  struct stat st;

  if (socket_address (&addr) == -1)
    return -1;
  /* Checked again: the cache was opened since pcache_control_check. */
  if (remove_stale_socket (&addr) == -1)
    return -1;
  listen_fd = socket (AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd == -1 ||
      bind_with_mode (listen_fd, &addr) == -1 ||
      lstat (sock_path, &st) == -1) {
    nbdkit_error ("pcache-control: %s: %m", sock_path);
    if (listen_fd >= 0)
      close (listen_fd);
    listen_fd = -1;
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
  if (pcache_stats_config (stats, interval) == -1)
    return -1;
  if (sock) {
    free (sock_path);
    sock_path = nbdkit_absolute_path (sock);
    if (!sock_path)
      return -1;
  }
  return 0;
}

/* An octal mode, at most 0777, that lets the owner (nbdkit's user)
 * read and write: without that even pcachectl run by that user could
 * not connect.
 */
int
pcache_control_config_mode (const char *value)
{
  char *end;
  unsigned long m;

  errno = 0;
  m = strtoul (value, &end, 8);
  if (!*value || *end || errno || value[0] == '-' || value[0] == '+' ||
      m > 0777) {
    nbdkit_error ("pcache-control-mode: '%s' is not an octal mode between "
                  "0600 and 0777", value);
    return -1;
  }
  if ((m & 0600) != 0600) {
    nbdkit_error ("pcache-control-mode: %s: the owner needs read and write "
                  "permission (0600)", value);
    return -1;
  }
  sock_mode = m;
  sock_mode_set = 1;
  return 0;
}

int
pcache_control_check (void)
{
  struct sockaddr_un addr = { .sun_family = AF_UNIX };

  if (pcache_stats_check () == -1)
    return -1;
  if (!sock_path) {
    if (sock_mode_set) {
      nbdkit_error ("pcache-control-mode: given without pcache-control");
      return -1;
    }
    return 0;
  }
  if (socket_address (&addr) == -1 || check_sock_dir () == -1)
    return -1;
  return remove_stale_socket (&addr);
}

int
pcache_control_listen (void)
{
  if (!sock_path)
    return 0;
  return open_socket ();
}

static int
start_socket (void)
{
  int e;

  e = pthread_create (&sock_thread, NULL, sock_main, NULL);
  if (e) {
    nbdkit_error ("pcache-control: pthread_create: %s", strerror (e));
    return -1;
  }
  sock_running = 1;
  return 0;
}

int
pcache_control_start_waiting (void)
{
  if (listen_fd >= 0 && start_socket () == -1) {
    pcache_control_stop ();
    return -1;
  }
  return 0;
}

int
pcache_control_start (pc_cache *c)
{
  if (pcache_stats_start (c) == -1)
    return -1;
  atomic_store (&cache, c);
  /* The acceptor may already answer, waiting for the cache. */
  return sock_running ? 0 : pcache_control_start_waiting ();
}

/* Stop the stats thread and the acceptor, and wake every client that
 * waits for input or output; clients inside a cache call are joined by
 * pcache_control_final, after pc_cache_stop ended that call.
 */
void
pcache_control_stop (void)
{
  pcache_stats_stop ();
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
  pcache_stats_final ();
}

void
pcache_control_free (void)
{
  close_socket ();              /* if after_fork never ran */
  end_clients ();
  pcache_stats_free ();
  free (sock_path);
  sock_path = NULL;
}
