/* SPDX-License-Identifier: BSD-3-Clause */
/* payload.c: carving payload space out of data segments. */
#ifndef PC_PAYLOAD_H
#define PC_PAYLOAD_H

#include <stdint.h>

struct pc_cache;

/* Up to want bytes of payload space at (*seg, *seg_off), *got bytes,
 * in a segment of generation *gen, holding one reference to the
 * segment for the key record.  With wait, blocks until space is free;
 * without, fails with ENOSPC.  Returns 0, or -1 with errno.
 */
int pc_alloc_payload (struct pc_cache *c, uint32_t want, int wait,
                      uint32_t *seg, uint32_t *seg_off, uint32_t *got,
                      uint32_t *gen);

/* pcache-full-timeout, for any wait for a free segment (payload or
 * log).  Call before each wait with *since 0 at first: returns 1 once
 * the wait has lasted too long, with errno EIO.  The first to give up
 * says so; until a segment is freed (pc_space_freed), the waiters that
 * follow give up at once instead of each waiting the whole time, so a
 * client sees errors, not a hang, while reads and hits go on.
 */
int pc_space_wait_over (struct pc_cache *c, uint64_t *since);
void pc_space_freed (struct pc_cache *c);

#endif /* PC_PAYLOAD_H */
