/* SPDX-License-Identifier: BSD-3-Clause */
/* drain backend: an NBD server, reached by URI with libnbd. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libnbd.h>

#include "pcachectl.h"

/* Largest request sent when the server states no maximum. */
#define NBD_MAX_REQUEST (32u << 20)

struct nbd_backend {
  struct backend b;
  struct nbd_handle *nbd;
  uint32_t max_request;
  char *label;                  /* b.name, if made here */
};

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

static int
nbd_be_pread (void *ctx, void *buf, uint32_t len, uint64_t off, int *err)
{
  struct nbd_backend *n = ctx;
  uint32_t done = 0;

  while (done < len) {
    uint32_t c = len - done < n->max_request ? len - done : n->max_request;

    if (nbd_pread (n->nbd, (char *) buf + done, c, off + done, 0) == -1)
      return fail (n, "read", off, len, err);
    done += c;
  }
  return 0;
}

static int
nbd_be_pwrite (void *ctx, const void *buf, uint32_t len, uint64_t off,
               int *err)
{
  struct nbd_backend *n = ctx;
  uint32_t done = 0;

  while (done < len) {
    uint32_t c = len - done < n->max_request ? len - done : n->max_request;

    if (nbd_pwrite (n->nbd, (const char *) buf + done, c, off + done, 0) == -1)
      return fail (n, "write", off, len, err);
    done += c;
  }
  return 0;
}

static int
nbd_be_zero (void *ctx, uint32_t len, uint64_t off, int may_trim, int *err)
{
  struct nbd_backend *n = ctx;

  if (nbd_zero (n->nbd, len, off, may_trim ? 0 : LIBNBD_CMD_FLAG_NO_HOLE)
      == -1)
    return fail (n, "zero", off, len, err);
  return 0;
}

static int
nbd_be_trim (void *ctx, uint32_t len, uint64_t off, int *err)
{
  struct nbd_backend *n = ctx;

  if (nbd_trim (n->nbd, len, off, 0) == -1)
    return fail (n, "trim", off, len, err);
  return 0;
}

static int
nbd_be_flush (void *ctx, int *err)
{
  struct nbd_backend *n = ctx;

  if (nbd_flush (n->nbd, 0) == -1)
    return fail (n, "flush", 0, 0, err);
  return 0;
}

static void
nbd_be_close (struct backend *b)
{
  struct nbd_backend *n = (struct nbd_backend *) b;

  /* A clean disconnect, so the server sees the end of the session. */
  nbd_shutdown (n->nbd, 0);
  nbd_close (n->nbd);
  free (n->label);
  free (n);
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

  if (nbd_set_opt_mode (n->nbd, true) == -1 ||
      nbd_connect_uri (n->nbd, uri) == -1) {
    errmsg ("%s: %s", uri, nbd_get_error ());
    return -1;
  }
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
  n->nbd = nbd_create ();
  if (!n->nbd) {
    errmsg ("%s", nbd_get_error ());
    free (n->label);
    free (n);
    return NULL;
  }
  if (export) {
    if (go_to_export (n, uri, export) == -1)
      goto fail;
  }
  else if (nbd_connect_uri (n->nbd, uri) == -1) {
    errmsg ("%s: %s", uri, nbd_get_error ());
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
