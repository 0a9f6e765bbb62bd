/* SPDX-License-Identifier: BSD-3-Clause */
/* hold.c: durable epochs, the age of dirty data, and the writeback
 * hold (pc_cache_hold, pc_cache_release in pcache.h).
 */
#ifndef PC_HOLD_H
#define PC_HOLD_H

#include <stdint.h>

struct pc_cache;

/* Before the workers start: the epoch writeback stands in. */
void pc_hold_init (struct pc_cache *c);
/* The last epoch a flush ended, and the last wholly on the backend. */
uint64_t pc_client_epoch (struct pc_cache *c);
uint64_t pc_backing_epoch (struct pc_cache *c);
/* Milliseconds since the oldest dirty kset was committed; 0 if none. */
uint64_t pc_dirty_age_ms (struct pc_cache *c);
/* Is flushed data older than pcache-writeback-max-age allows to wait? */
int pc_dirty_too_old (struct pc_cache *c);
/* May writeback start a batch whose last epoch is epoch?  Not while a
 * hold is past it.  A batch let through is noted as begun, under the
 * lock a hold takes to choose its boundary.  Ends a hold whose time is
 * up.
 */
int pc_hold_admit (struct pc_cache *c, uint64_t epoch);
/* The last epoch wholly on the backend of namespace ns. */
struct pc_ns;
uint64_t pc_ns_backing_epoch (struct pc_cache *c, struct pc_ns *ns);

#endif /* PC_HOLD_H */
