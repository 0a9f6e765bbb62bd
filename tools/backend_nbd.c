/* SPDX-License-Identifier: BSD-3-Clause */
/* drain backend: an NBD server, reached by URI with libnbd. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <libnbd.h>

#include "pcachectl.h"
#include "util.h"

/* Largest request sent when the server states no maximum. */
#define NBD_MAX_REQUEST (32u << 20)

/* Longest single poll of a handle: a request queued meanwhile by
 * another thread may need the socket polled for output, which a poll
 * begun before it does not watch.
 */
#define POLL_SLICE_MS 20

/* A message of a failed connection, for the caller to show. */
#define CONNECT_MSG 512

/* How long a request or a connection may go unanswered; 0: forever. */
static unsigned answer_timeout_s;

void
backend_nbd_set_timeout (unsigned seconds)
{
  answer_timeout_s = seconds;
}

struct nbd_backend {
  struct backend b;
  struct nbd_handle *nbd;
  uint32_t max_request;
  char *label;                  /* b.name, if made here */
  char *uri, *export;           /* to connect again; export may be NULL */
  /* Write-back's threads each have a request in flight on the one
   * connection.  One of them at a time polls the handle for them all
   * (polling); the others wait for it to make progress.
   */
  pthread_mutex_t lock;
  pthread_cond_t progress;      /* the poller returned */
  int polling;
  int hung;                     /* a request went unanswered: given up */
  unsigned conn;                /* connections made since the first */
};

static struct nbd_handle *handle_connect (const char *uri,
                                          const char *export, char *msg);
static void backend_free (struct nbd_backend *n);

/* When what begins now is given up (a pc_now_ms time): after
 * answer_timeout_s, or 0 for never.
 */
static uint64_t
answer_deadline (void)
{
  return answer_timeout_s
    ? pc_now_ms () + (uint64_t) answer_timeout_s * 1000 : 0;
}

/* Milliseconds a wait may last: until deadline (0: none), at most max
 * (-1: no limit).  0 once deadline has passed.
 */
static int
time_left (uint64_t deadline, int max)
{
  uint64_t t, left;

  if (!deadline)
    return max;
  t = pc_now_ms ();
  if (t >= deadline)
    return 0;
  left = deadline - t;
  if (max >= 0 && left > (uint64_t) max)
    return max;
  return left > INT_MAX ? INT_MAX : (int) left;
}

/* Poll the handle until done (h, arg) says so or answer_timeout_s passes.
 * Returns 1 when done, 0 on the time limit, -1 if the connection
 * failed (libnbd's error set).
 */
static int
wait_until (struct nbd_handle *h, int (*done) (struct nbd_handle *, void *),
            void *arg)
{
  uint64_t deadline = answer_deadline ();
  int r;

  while ((r = done (h, arg)) == 0) {
    int wait = time_left (deadline, -1);

    if (wait == 0)
      return 0;
    if (nbd_poll (h, wait) == -1)
      return -1;
  }
  return r == 1 ? 1 : -1;
}

/* Wait on n->progress for at most ms milliseconds. */
static void
wait_progress (struct nbd_backend *n, int ms)
{
  pc_cond_wait_ms (&n->progress, &n->lock, ms);
}

/* With n->lock held, until no thread polls the handle. */
static void
wait_no_poller (struct nbd_backend *n)
{
  while (n->polling)
    wait_progress (n, POLL_SLICE_MS);
}

/* With n->lock held, wait for the command cookie of connection conn,
 * within deadline (a pc_now_ms time; 0: none).  Returns 1 when it
 * succeeded, 0 on the time limit or once another request has hung the
 * connection, -1 if it or the connection failed (libnbd's error set,
 * or *gone if the connection was replaced meanwhile).
 */
static int
wait_command (struct nbd_backend *n, unsigned conn, int64_t cookie,
              uint64_t deadline, int *gone)
{
  for (;;) {
    int r, wait;

    /* A new connection numbers its commands afresh: this cookie may
     * be another request's there.
     */
    if (n->conn != conn) {
      *gone = 1;
      return -1;
    }
    r = nbd_aio_command_completed (n->nbd, cookie);
    if (r != 0)
      return r == 1 ? 1 : -1;
    wait = time_left (deadline, POLL_SLICE_MS);
    if (n->hung || wait == 0)
      return 0;
    if (n->polling) {
      wait_progress (n, wait);
      continue;
    }
    n->polling = 1;
    pthread_mutex_unlock (&n->lock);
    r = nbd_poll (n->nbd, wait);
    pthread_mutex_lock (&n->lock);
    n->polling = 0;
    pthread_cond_broadcast (&n->progress);
    if (r == -1)
      return -1;
  }
}

static int
fail (struct nbd_backend *n, const char *what, uint64_t off, uint32_t len,
      int *err)
{
  int e = nbd_get_errno ();

  backend_set_error (&n->b, "%s: %s of %" PRIu32 " bytes at offset %" PRIu64
                     ": %s", n->b.name, what, len, off, nbd_get_error ());
  *err = e > 0 ? e : EIO;
  return -1;
}

/* A request went unanswered for answer_timeout_s: its answer may
 * still come, so the connection is of no more use and every later
 * request fails at once, until write-back reopens the backend.  The
 * engine keeps the data dirty, and may reuse the request's buffer as
 * soon as this returns: a poll that another thread has begun could
 * still send from it, so wait for that poll to end; none begins after.
 */
static int
hang (struct nbd_backend *n, const char *what, uint64_t off, uint32_t len,
      int *err)
{
  n->hung = 1;
  wait_no_poller (n);
  backend_set_error (&n->b, "%s: no answer to a %s of %" PRIu32 " bytes at "
                     "offset %" PRIu64 " for %u s: the server is not "
                     "answering", n->b.name, what, len, off,
                     answer_timeout_s);
  *err = ETIMEDOUT;
  return -1;
}

enum req { REQ_READ, REQ_WRITE, REQ_ZERO, REQ_TRIM, REQ_FLUSH };
static const char *const req_name[] = {
  "read", "write", "zero", "trim", "flush"
};

/* Send one request and wait for its answer, within answer_timeout_s.
 * Other threads' requests go out and are answered meanwhile.
 */
static int
request (struct nbd_backend *n, enum req what, void *buf, uint32_t len,
         uint64_t off, uint32_t flags, int *err)
{
  nbd_completion_callback none = NBD_NULL_COMPLETION;
  uint64_t deadline = answer_deadline ();
  int64_t cookie = -1;
  unsigned conn;
  int r = -1, gone = 0;

  pthread_mutex_lock (&n->lock);
  if (n->hung) {
    *err = ETIMEDOUT;
    goto out;
  }
  conn = n->conn;
  switch (what) {
  case REQ_READ:
    cookie = nbd_aio_pread (n->nbd, buf, len, off, none, flags);
    break;
  case REQ_WRITE:
    cookie = nbd_aio_pwrite (n->nbd, buf, len, off, none, flags);
    break;
  case REQ_ZERO:
    cookie = nbd_aio_zero (n->nbd, len, off, none, flags);
    break;
  case REQ_TRIM:
    cookie = nbd_aio_trim (n->nbd, len, off, none, flags);
    break;
  case REQ_FLUSH:
    cookie = nbd_aio_flush (n->nbd, none, flags);
    break;
  }
  if (cookie == -1) {
    fail (n, req_name[what], off, len, err);
    goto out;
  }
  switch (wait_command (n, conn, cookie, deadline, &gone)) {
  case 1:
    r = 0;
    break;
  case 0:
    hang (n, req_name[what], off, len, err);
    break;
  default:
    if (gone) {
      backend_set_error (&n->b, "%s: the connection was replaced while a "
                         "%s of %" PRIu32 " bytes at offset %" PRIu64
                         " was in flight", n->b.name, req_name[what], len,
                         off);
      *err = ENOTCONN;
    }
    else
      fail (n, req_name[what], off, len, err);
    break;
  }
 out:
  pthread_mutex_unlock (&n->lock);
  return r;
}

/* A read or a write, in requests the server takes (max_request). */
static int
data_request (struct nbd_backend *n, enum req what, char *buf, uint32_t len,
              uint64_t off, int *err)
{
  uint32_t done = 0;

  while (done < len) {
    uint32_t c = len - done < n->max_request ? len - done : n->max_request;

    if (request (n, what, buf + done, c, off + done, 0, err) == -1)
      return -1;
    done += c;
  }
  return 0;
}

static int
nbd_be_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  return data_request (ctx, REQ_READ, buf, len, off, err);
}

static int
nbd_be_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
               int *err)
{
  /* libnbd reads the buffer of a write, never writes it. */
  return data_request (ctx, REQ_WRITE, (char *) buf, len, off, err);
}

static int
nbd_be_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  return request (ctx, REQ_ZERO, NULL, len, off,
                  may_trim ? 0 : LIBNBD_CMD_FLAG_NO_HOLE, err);
}

static int
nbd_be_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  return request (ctx, REQ_TRIM, NULL, len, off, 0, err);
}

static int
nbd_be_flush (void *ctx, int *err)
{
  return request (ctx, REQ_FLUSH, NULL, 0, 0, 0, err);
}

static void
sync_init (struct nbd_backend *n)
{
  pthread_mutex_init (&n->lock, NULL);
  pthread_cond_init (&n->progress, NULL);
}

static void
sync_destroy (struct nbd_backend *n)
{
  pthread_cond_destroy (&n->progress);
  pthread_mutex_destroy (&n->lock);
}

/* Write-back's reopen: a new connection in place of one that broke (a
 * server that went away or restarted) or hung.  Requests wait for it;
 * those in flight on the old one fail.  The export must still be of the
 * size the cache was made for, and writable.
 */
static int
nbd_be_reopen (void *ctx, int *err)
{
  struct nbd_backend *n = ctx;
  char msg[CONNECT_MSG];
  struct nbd_handle *h;
  int r = -1;

  pthread_mutex_lock (&n->lock);
  wait_no_poller (n);
  h = handle_connect (n->uri, n->export, msg);
  if (h && nbd_get_size (h) != (int64_t) n->b.size)
    snprintf (msg, sizeof msg, "the export is not of %" PRIu64
              " bytes any more", n->b.size);
  else if (h && nbd_is_read_only (h) == 1)
    snprintf (msg, sizeof msg, "the export is read-only now");
  else if (h) {
    nbd_close (n->nbd);
    n->nbd = h;
    n->conn++;
    n->hung = 0;
    h = NULL;
    r = 0;
    warnmsg ("%s: connected again", n->b.name);
  }
  if (h)
    nbd_close (h);
  if (r == -1) {
    backend_set_error (&n->b, "%s: cannot connect again: %s", n->b.name,
                       msg);
    *err = ENOTCONN;
  }
  pthread_mutex_unlock (&n->lock);
  return r;
}

static void
nbd_be_close (struct backend *b)
{
  struct nbd_backend *n = (struct nbd_backend *) b;

  /* A clean disconnect, so the server sees the end of the session;
   * but a server that does not answer would hold that up too.
   */
  if (!n->hung)
    nbd_shutdown (n->nbd, 0);
  backend_free (n);
}

static int
still_connecting (struct nbd_handle *h, void *arg)
{
  (void) arg;
  return nbd_aio_is_connecting (h) ? 0 : 1;
}

/* nbd_connect_uri, within answer_timeout_s: a server that accepts the
 * connection and never speaks would hold the drain up for good.
 * Returns 0, or -1 with a message in msg.
 */
static int
connect_uri (struct nbd_handle *h, const char *uri, char *msg)
{
  int r;

  if (nbd_aio_connect_uri (h, uri) == -1) {
    snprintf (msg, CONNECT_MSG, "%s: %s", uri, nbd_get_error ());
    return -1;
  }
  r = wait_until (h, still_connecting, NULL);
  if (r == 0) {
    snprintf (msg, CONNECT_MSG, "%s: the server did not complete the NBD "
              "handshake in %u s (--timeout)", uri, answer_timeout_s);
    return -1;
  }
  if (r == -1 || nbd_aio_is_dead (h) || nbd_aio_is_closed (h)) {
    snprintf (msg, CONNECT_MSG, "%s: %s", uri, nbd_get_error ()
              ? nbd_get_error ()
              : "the connection closed during the NBD handshake");
    return -1;
  }
  return 0;
}

/* The answer to NBD_OPT_GO.  libnbd holds a pointer to it until the
 * server answers or the handle is closed, so it lives in the frame
 * that closes the handle when the wait fails.
 */
struct go_answer {
  int answered;
  int err;
};

static int
go_answered (void *user_data, int *error)
{
  struct go_answer *g = user_data;

  g->answered = 1;
  g->err = *error;
  return 1;
}

static int
go_over (struct nbd_handle *h, void *arg)
{
  const struct go_answer *g = arg;

  return g->answered || nbd_aio_is_dead (h) || nbd_aio_is_closed (h);
}

/* Connect in option mode, and go to the export called export instead
 * of the one the URI names (which must be none or that one), within
 * answer_timeout_s: a server may take its time to open an export (or
 * never answer).  Returns 0, or -1 with a message in msg.
 */
static int
go_to_export (struct nbd_handle *h, const char *uri, const char *export,
              struct go_answer *g, char *msg)
{
  char q[128], q2[128];
  char *given;
  int r = 0;

  if (nbd_set_opt_mode (h, true) == -1) {
    snprintf (msg, CONNECT_MSG, "%s: %s", uri, nbd_get_error ());
    return -1;
  }
  if (connect_uri (h, uri, msg) == -1)
    return -1;
  given = nbd_get_export_name (h);
  if (!given) {
    snprintf (msg, CONNECT_MSG, "%s: %s", uri, nbd_get_error ());
    return -1;
  }
  if (given[0] && strcmp (given, export) != 0) {
    snprintf (msg, CONNECT_MSG, "%s: the URI names export %s, but export %s "
              "of the cache goes to the server's export of the same name: "
              "give the URI without an export name, or pick one export "
              "with --export", uri, quote_name (given, q, sizeof q),
              quote_name (export, q2, sizeof q2));
    r = -1;
  }
  free (given);
  if (r == -1)
    return -1;
  if (nbd_set_export_name (h, export) == -1 ||
      nbd_aio_opt_go (h, (nbd_completion_callback) {
          .callback = go_answered, .user_data = g }) == -1 ||
      (r = wait_until (h, go_over, g)) == -1) {
    snprintf (msg, CONNECT_MSG, "%s: export %s: %s", uri,
              quote_name (export, q, sizeof q), nbd_get_error ());
    return -1;
  }
  if (r == 0) {
    snprintf (msg, CONNECT_MSG, "%s: export %s: the server did not answer "
              "the request to open it in %u s (--timeout)", uri,
              quote_name (export, q, sizeof q), answer_timeout_s);
    return -1;
  }
  if (g->err || !nbd_aio_is_ready (h)) {
    snprintf (msg, CONNECT_MSG, "%s: export %s: the server refused it (%s)",
              uri, quote_name (export, q, sizeof q),
              g->err ? strerror (g->err) : "the connection closed");
    return -1;
  }
  return 0;
}

/* A new handle connected to uri (and export, if not NULL), or NULL
 * with a message in msg.
 */
static struct nbd_handle *
handle_connect (const char *uri, const char *export, char *msg)
{
  struct nbd_handle *h = nbd_create ();
  struct go_answer g = { 0, 0 };

  if (!h) {
    snprintf (msg, CONNECT_MSG, "%s", nbd_get_error ());
    return NULL;
  }
  if ((export ? go_to_export (h, uri, export, &g, msg)
       : connect_uri (h, uri, msg)) == -1) {
    nbd_close (h);
    return NULL;
  }
  return h;
}

static void
backend_free (struct nbd_backend *n)
{
  if (n->nbd)
    nbd_close (n->nbd);
  sync_destroy (n);
  free (n->label);
  free (n->uri);
  free (n->export);
  free (n);
}

static struct backend *
nbd_open (const char *uri, const char *export)
{
  struct nbd_backend *n;
  int64_t size, max;
  char q[128], msg[CONNECT_MSG];

  n = calloc (1, sizeof *n);
  if (!n) {
    errmsg ("out of memory");
    return NULL;
  }
  sync_init (n);
  n->uri = strdup (uri);
  n->export = export ? strdup (export) : NULL;
  if (!n->uri || (export && !n->export) ||
      (export && asprintf (&n->label, "%s (export %s)", uri,
                           quote_name (export, q, sizeof q)) == -1)) {
    n->label = NULL;
    errmsg ("out of memory");
    backend_free (n);
    return NULL;
  }
  n->b.name = export ? n->label : n->uri;
  n->nbd = handle_connect (uri, export, msg);
  if (!n->nbd) {
    errmsg ("%s", msg);
    goto fail;
  }
  size = nbd_get_size (n->nbd);
  if (size < 0) {
    errmsg ("%s: %s", n->b.name, nbd_get_error ());
    goto fail;
  }
  n->b.size = size;
  if (nbd_is_read_only (n->nbd) == 1) {
    errmsg ("%s: the NBD export is read-only", n->b.name);
    goto fail;
  }
  max = nbd_get_block_size (n->nbd, LIBNBD_SIZE_MAXIMUM);
  n->max_request = max > 0 && max < NBD_MAX_REQUEST ? max : NBD_MAX_REQUEST;

  n->b.ops.pread = nbd_be_pread;
  n->b.ops.reopen = nbd_be_reopen;
  n->b.ops.pwrite = nbd_be_pwrite;
  /* Without zero the engine writes zeroes; without trim it skips trims
   * (a trim may leave anything behind anyway).
   */
  n->b.ops.zero = nbd_can_zero (n->nbd) == 1 ? nbd_be_zero : NULL;
  n->b.ops.trim = nbd_can_trim (n->nbd) == 1 ? nbd_be_trim : NULL;
  if (nbd_can_flush (n->nbd) == 1)
    n->b.ops.flush = nbd_be_flush;
  else
    warnmsg ("%s: the server cannot flush: the written-back data is only "
             "as durable as the server makes it", n->b.name);
  n->b.pb.ops = &n->b.ops;
  n->b.pb.ctx = n;
  n->b.close = nbd_be_close;
  return &n->b;

 fail:
  backend_free (n);
  return NULL;
}

struct backend *
backend_nbd_open (const char *uri)
{
  return nbd_open (uri, NULL);
}

struct backend *
backend_nbd_open_export (const char *uri, const char *export)
{
  return nbd_open (uri, export);
}
