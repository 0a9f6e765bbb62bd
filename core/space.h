/* SPDX-License-Identifier: BSD-3-Clause */
/* space.c: how long a wait for a free segment may last. */
#ifndef PC_SPACE_H
#define PC_SPACE_H

#include <stdint.h>

struct pc_cache;

/* pcache-full-timeout, for any wait for a free segment (payload or
 * log).  Call before each wait with *since 0 at first: returns 1 once
 * the wait has lasted too long, with errno EIO.  The first to give up
 * says so; until a segment is freed (pc_space_freed), the waiters that
 * follow give up at once instead of each waiting the whole time, so a
 * client sees errors, not a hang, while reads and hits go on.
 */
int pc_space_wait_over (struct pc_cache *c, uint64_t *since);
void pc_space_freed (struct pc_cache *c);

#endif /* PC_SPACE_H */
