/* SPDX-License-Identifier: BSD-3-Clause */
/* A remote store, for benchmarks and tests: every request that reaches
 * the plugin (pread, pwrite, zero, trim, flush and cache) first waits
 * one round trip, rtt=TIME ("10ms", "0.5s", or seconds).  Unlike
 * nbdkit's delay filter (1.32), a flush costs a round trip too.  A
 * write with FUA costs one round trip, as on a store with native FUA:
 * the plugin's can_fua is passed on unchanged.  Requests in flight
 * wait side by side, as on a network with a window of many requests.
 *
 *   nbdkit --filter=tests/.libs/nbdkit-rtt-filter.so file IMG rtt=10ms
 */

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

static unsigned rtt_sec, rtt_nsec;

/* "N", "Ns" or "Nms", N a decimal number. */
static int
rtt_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
            const char *key, const char *value)
{
  char *end;
  double v, ns;

  if (strcmp (key, "rtt") != 0)
    return next (nxdata, key, value);
  errno = 0;
  v = strtod (value, &end);
  if (errno || end == value || v < 0 ||
      (strcmp (end, "") != 0 && strcmp (end, "s") != 0 &&
       strcmp (end, "ms") != 0)) {
    nbdkit_error ("rtt: '%s' is not a time (such as 10ms or 0.5s)", value);
    return -1;
  }
  ns = strcmp (end, "ms") == 0 ? v * 1e6 : v * 1e9;
  if (ns > 3600e9) {
    nbdkit_error ("rtt: '%s' is over an hour", value);
    return -1;
  }
  rtt_sec = (unsigned) (ns / 1e9);
  rtt_nsec = (unsigned) (ns - rtt_sec * 1e9);
  return 0;
}

/* Wait one round trip; a client that goes away ends the wait. */
static int
rtt_wait (int *err)
{
  if ((rtt_sec || rtt_nsec) && nbdkit_nanosleep (rtt_sec, rtt_nsec) == -1) {
    *err = errno ? errno : ESHUTDOWN;
    return -1;
  }
  return 0;
}

static int
rtt_pread (nbdkit_next *next, void *handle, void *buf, uint32_t count,
           uint64_t offset, uint32_t flags, int *err)
{
  if (rtt_wait (err) == -1)
    return -1;
  return next->pread (next, buf, count, offset, flags, err);
}

static int
rtt_pwrite (nbdkit_next *next, void *handle, const void *buf,
            uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  if (rtt_wait (err) == -1)
    return -1;
  return next->pwrite (next, buf, count, offset, flags, err);
}

static int
rtt_zero (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
          uint32_t flags, int *err)
{
  if (rtt_wait (err) == -1)
    return -1;
  return next->zero (next, count, offset, flags, err);
}

static int
rtt_trim (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
          uint32_t flags, int *err)
{
  if (rtt_wait (err) == -1)
    return -1;
  return next->trim (next, count, offset, flags, err);
}

static int
rtt_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  if (rtt_wait (err) == -1)
    return -1;
  return next->flush (next, flags, err);
}

static int
rtt_cache (nbdkit_next *next, void *handle, uint32_t count, uint64_t offset,
           uint32_t flags, int *err)
{
  if (rtt_wait (err) == -1)
    return -1;
  return next->cache (next, count, offset, flags, err);
}

static struct nbdkit_filter filter = {
  .name = "rtt",
  .longname = "pcache test filter: a round trip before every request",
  .config = rtt_config,
  .config_help = "rtt=TIME   Wait TIME (10ms, 0.5s) before every request.",
  .pread = rtt_pread,
  .pwrite = rtt_pwrite,
  .zero = rtt_zero,
  .trim = rtt_trim,
  .flush = rtt_flush,
  .cache = rtt_cache,
};

NBDKIT_REGISTER_FILTER (filter)
