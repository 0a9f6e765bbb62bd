/* SPDX-License-Identifier: BSD-3-Clause */
/* The plugin's block size constraints (nbdkit's .block_size), applied
 * to client requests.
 *
 * A plugin that advertises a minimum block size refuses requests not
 * aligned to it, and one with a maximum refuses larger reads and
 * writes (NBD says EINVAL for both).  pcache advertises the plugin's
 * constraints unchanged and refuses what the plugin would, before the
 * cache takes it: a write acknowledged from the cache must be one that
 * write-back can send to the plugin as it came, or it would be retried
 * for ever and never reach the backing store.
 * nbdkit-blocksize-filter(1) below pcache takes what does not fit.
 */
#include <config.h>

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

#include "blocksize.h"

int
pcache_bs_get (nbdkit_next *next, struct pcache_bs *bs)
{
  uint32_t min, pref, max;

  if (next->block_size (next, &min, &pref, &max) == -1)
    return -1;
  bs->min = min > 1 ? min : 0;
  bs->max = min > 0 && max > 0 ? max : UINT32_MAX;
  return 0;
}

#define REJECTED "pcache: client %s request rejected: "
#define SEE " (see \"Block sizes\" in nbdkit-pcache-filter(1))"

int
pcache_bs_check (const struct pcache_bs *bs, const char *what, int data,
                 uint32_t count, uint64_t offset, int *err)
{
  if (data && count > bs->max) {
    nbdkit_error (REJECTED "count %" PRIu32 " is larger than the plugin's "
                  "maximum block size %" PRIu32 SEE, what, count, bs->max);
    goto bad;
  }
  if (bs->min == 0)
    return 0;
  if (count % bs->min) {
    nbdkit_error (REJECTED "count %" PRIu32 " is not a multiple of the "
                  "plugin's minimum block size %" PRIu32 SEE,
                  what, count, bs->min);
    goto bad;
  }
  if (offset % bs->min) {
    nbdkit_error (REJECTED "offset %" PRIu64 " is not a multiple of the "
                  "plugin's minimum block size %" PRIu32 SEE,
                  what, offset, bs->min);
    goto bad;
  }
  return 0;

 bad:
  *err = EINVAL;
  return -1;
}
