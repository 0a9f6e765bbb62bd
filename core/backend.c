/* SPDX-License-Identifier: BSD-3-Clause */
/* Backend requests the engine builds itself, for the client path
 * (write-through zero and trim) and for writeback alike.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "cache_internal.h"
#include "backend.h"

int
pc_backend_zero (struct pc_cache *c, const struct pc_key_rec *r, int *err)
{
  const struct pc_backend_ops *ops = c->bg.ops;
  static const uint8_t zeroes[65536];
  uint64_t done = 0;

  if (r->flags & PC_KF_TRIM) {
    /* Trimmed data reads back as anything; only a backend that can
     * discard is told.
     */
    return ops->trim ? ops->trim (c->bg.ctx, r->len, r->off, err) : 0;
  }
  if (ops->zero)
    return ops->zero (c->bg.ctx, r->len, r->off,
                      !!(r->flags & PC_KF_MAY_TRIM), err);
  while (done < r->len) {
    uint32_t n = PC_MIN (r->len - done, sizeof zeroes);
    if (ops->pwrite (c->bg.ctx, zeroes, n, r->off + done, err) == -1)
      return -1;
    done += n;
  }
  return 0;
}
