/* SPDX-License-Identifier: BSD-3-Clause */
/* The plugin's block size constraints, applied to client requests. */
#ifndef PCACHE_BLOCKSIZE_H
#define PCACHE_BLOCKSIZE_H

#include <stdint.h>

#include <nbdkit-filter.h>

/* What a request to the plugin must meet: offset and length multiples
 * of min, and at most max bytes of data.  0 and UINT32_MAX: none.
 */
struct pcache_bs {
  uint32_t min, max;
};

/* Ask next for its constraints.  0, or -1 with the error logged. */
int pcache_bs_get (nbdkit_next *next, struct pcache_bs *bs);

/* Is a client request that the plugin would refuse?  what names it
 * (pread, pwrite, zero, trim, extents); data says it carries data, which only
 * then must fit max.  0, or -1 with *err = EINVAL and the reason logged.
 */
int pcache_bs_check (const struct pcache_bs *bs, const char *what, int data,
                     uint32_t count, uint64_t offset, int *err);

#endif /* PCACHE_BLOCKSIZE_H */
