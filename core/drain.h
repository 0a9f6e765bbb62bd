/* SPDX-License-Identifier: BSD-3-Clause */
/* drain.c: waiting for writeback (drains, checkpoints, holds). */
#ifndef PC_DRAIN_H
#define PC_DRAIN_H

#include <stdint.h>

struct pc_cache;

/* Wait, writeback kicked, until done (c, arg) holds; done is called
 * under bg_lock.  The wait lasts as long as writeback makes progress
 * (dirty_tail moves) or has not failed; it fails, with *err set, with
 * ESHUTDOWN once the cache stops, EBUSY while writeback is paused or,
 * unless held, held, ECANCELED if held and the hold ends, and
 * writeback's error once it has failed for grace_ms (0: never) without
 * progress (logged, naming what gave up), and ENOTCONN if namespace
 * only (or any, with UINT32_MAX) has dirty data and no backend.
 */
int pc_wait_writeback (struct pc_cache *c, const char *what,
                       int (*done) (struct pc_cache *, uint64_t),
                       uint64_t arg, int held, uint32_t only,
                       uint64_t grace_ms, int *err);

#endif /* PC_DRAIN_H */
