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
#include <time.h>

#include <libnbd.h>

#include "pcachectl.h"

/* Largest request sent when the server states no maximum. */
#define NBD_MAX_REQUEST (32u << 20)

/* Longest single poll of a handle: a request queued meanwhile by
 * another thread may need the socket polled for output, which a poll
 * begun before it does not watch.
 */
#define POLL_SLICE_MS 20

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
  /* Write-back's threads each have a request in flight on the one
   * connection.  One of them at a time polls the handle for them all
   * (polling); the others wait for it to make progress.
   */
  pthread_mutex_t lock;
  pthread_cond_t progress;      /* the poller returned */
  int polling;
  int hung;                     /* a request went unanswered: given up */
};

/* Poll the handle until done (h, arg) says so or answer_timeout_s passes.
 * Returns 1 when done, 0 on the time limit, -1 if the connection
 * failed (libnbd's error set).
 */
static int
wait_until (struct nbd_handle *h, int (*done) (struct nbd_handle *, void *),
            void *arg)
{
  uint64_t deadline = answer_timeout_s
    ? now_ms () + (uint64_t) answer_timeout_s * 1000 : 0;
  int r;

  while ((r = done (h, arg)) == 0) {
    int wait = -1;

    if (deadline) {
      uint64_t t = now_ms ();

      if (t >= deadline)
        return 0;
      wait = deadline - t > INT_MAX ? INT_MAX : (int) (deadline - t);
    }
    if (nbd_poll (h, wait) == -1)
      return -1;
  }
  return r == 1 ? 1 : -1;
}

/* Wait on n->progress for at most ms milliseconds. */
static void
wait_progress (struct nbd_backend *n, int ms)
{
  struct timespec ts;

  clock_gettime (CLOCK_MONOTONIC, &ts);
  ts.tv_sec += ms / 1000;
  ts.tv_nsec += (long) (ms % 1000) * 1000000;
  if (ts.tv_nsec >= 1000000000) {
    ts.tv_sec++;
    ts.tv_nsec -= 1000000000;
  }
  pthread_cond_timedwait (&n->progress, &n->lock, &ts);
}

/* With n->lock held, wait for the command cookie, within deadline (a
 * now_ms () time; 0: none).  Returns 1 when it succeeded, 0 on the time
 * limit or once another request has hung the connection, -1 if it or
 * the connection failed (libnbd's error set).
 */
static int
wait_command (struct nbd_backend *n, int64_t cookie, uint64_t deadline)
{
  for (;;) {
    int r = nbd_aio_command_completed (n->nbd, cookie), wait = POLL_SLICE_MS;

    if (r != 0)
      return r == 1 ? 1 : -1;
    if (n->hung)
      return 0;
    if (deadline) {
      uint64_t t = now_ms ();

      if (t >= deadline)
        return 0;
      if (deadline - t < (uint64_t) wait)
        wait = (int) (deadline - t);
    }
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
  dbgmsg ("%s", n->b.last_error);
  *err = e > 0 ? e : EIO;
  return -1;
}

/* A request went unanswered for answer_timeout_s: its answer may
 * still come, so the connection is of no more use and every later
 * request fails at once.  The engine keeps the data dirty.
 */
static int
hang (struct nbd_backend *n, const char *what, uint64_t off, uint32_t len,
      int *err)
{
  n->hung = 1;
  backend_set_error (&n->b, "%s: no answer to a %s of %" PRIu32 " bytes at "
                     "offset %" PRIu64 " for %u s: the server is not "
                     "answering", n->b.name, what, len, off,
                     answer_timeout_s);
  dbgmsg ("%s", n->b.last_error);
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
  uint64_t deadline = answer_timeout_s
    ? now_ms () + (uint64_t) answer_timeout_s * 1000 : 0;
  int64_t cookie = -1;
  int r = -1;

  pthread_mutex_lock (&n->lock);
  if (n->hung) {
    *err = ETIMEDOUT;
    goto out;
  }
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
  switch (wait_command (n, cookie, deadline)) {
  case 1:
    r = 0;
    break;
  case 0:
    hang (n, req_name[what], off, len, err);
    break;
  default:
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
  pthread_condattr_t a;

  pthread_mutex_init (&n->lock, NULL);
  pthread_condattr_init (&a);
  pthread_condattr_setclock (&a, CLOCK_MONOTONIC);
  pthread_cond_init (&n->progress, &a);
  pthread_condattr_destroy (&a);
}

static void
sync_destroy (struct nbd_backend *n)
{
  pthread_cond_destroy (&n->progress);
  pthread_mutex_destroy (&n->lock);
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
  nbd_close (n->nbd);
  sync_destroy (n);
  free (n->label);
  free (n);
}

static int
still_connecting (struct nbd_handle *h, void *arg)
{
  (void) arg;
  return nbd_aio_is_connecting (h) ? 0 : 1;
}

/* nbd_connect_uri, within answer_timeout_s: a server that accepts the
 * connection and never speaks would hold the drain up for good.
 * Returns 0, or -1 after a message.
 */
static int
connect_uri (struct nbd_handle *h, const char *uri)
{
  int r;

  if (nbd_aio_connect_uri (h, uri) == -1) {
    errmsg ("%s: %s", uri, nbd_get_error ());
    return -1;
  }
  r = wait_until (h, still_connecting, NULL);
  if (r == 0) {
    errmsg ("%s: the server did not complete the NBD handshake in %u s "
            "(--timeout)", uri, answer_timeout_s);
    return -1;
  }
  if (r == -1 || nbd_aio_is_dead (h) || nbd_aio_is_closed (h)) {
    errmsg ("%s: %s", uri, nbd_get_error () ? nbd_get_error ()
            : "the connection closed during the NBD handshake");
    return -1;
  }
  return 0;
}

/* Connect in option mode, and go to the export called export instead
 * of the one the URI names (which must be none or that one).  Returns
 * 0, or -1 after a message.
 */
static int
go_to_export (struct nbd_backend *n, const char *uri, const char *export)
{
  char q[128], q2[128];
  char *given;
  int r = 0;

  if (nbd_set_opt_mode (n->nbd, true) == -1) {
    errmsg ("%s: %s", uri, nbd_get_error ());
    return -1;
  }
  if (connect_uri (n->nbd, uri) == -1)
    return -1;
  given = nbd_get_export_name (n->nbd);
  if (!given) {
    errmsg ("%s: %s", uri, nbd_get_error ());
    return -1;
  }
  if (given[0] && strcmp (given, export) != 0) {
    errmsg ("%s: the URI names export %s, but export %s of the cache goes "
            "to the server's export of the same name: give the URI without "
            "an export name, or pick one export with --export", uri,
            quote_name (given, q, sizeof q),
            quote_name (export, q2, sizeof q2));
    r = -1;
  }
  free (given);
  if (r == -1)
    return -1;
  if (nbd_set_export_name (n->nbd, export) == -1 ||
      nbd_opt_go (n->nbd) == -1) {
    errmsg ("%s: export %s: %s", uri, quote_name (export, q, sizeof q),
            nbd_get_error ());
    return -1;
  }
  return 0;
}

static struct backend *
nbd_open (const char *uri, const char *export)
{
  struct nbd_backend *n;
  int64_t size, max;
  char q[128];

  n = calloc (1, sizeof *n);
  if (!n) {
    errmsg ("out of memory");
    return NULL;
  }
  n->b.name = uri;
  if (export) {
    if (asprintf (&n->label, "%s (export %s)", uri,
                  quote_name (export, q, sizeof q)) == -1) {
      errmsg ("out of memory");
      free (n);
      return NULL;
    }
    n->b.name = n->label;
  }
  sync_init (n);
  n->nbd = nbd_create ();
  if (!n->nbd) {
    sync_destroy (n);
    errmsg ("%s", nbd_get_error ());
    free (n->label);
    free (n);
    return NULL;
  }
  if (export) {
    if (go_to_export (n, uri, export) == -1)
      goto fail;
  }
  else if (connect_uri (n->nbd, uri) == -1)
    goto fail;
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
  nbd_close (n->nbd);
  sync_destroy (n);
  free (n->label);
  free (n);
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
