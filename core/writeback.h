/* SPDX-License-Identifier: BSD-3-Clause */
/* writeback.c: ordered writeback. */
#ifndef PC_WRITEBACK_H
#define PC_WRITEBACK_H

#include <stdint.h>

struct pc_cache;

/* The writeback thread (started by pc_cache_start). */
void *pc_writeback_thread (void *arg);
/* How many writers writeback may use now (0: held back). */
unsigned pc_wb_width (struct pc_cache *c);
/* The pace writeback keeps now, in bytes a second (0: none). */
uint64_t pc_wb_pace (struct pc_cache *c);
/* For deterministic tests without worker threads (after
 * pc_cache_set_backend): write back one batch now (1 done, 0 idle, -1
 * error).  The _width form uses the pool of the writeback thread
 * (pcache-writeback-threads writers) with at most width at work.
 */
int pc_writeback_step (struct pc_cache *c);
/* Drop the batches left loaded (after the thread stopped). */
void pc_writeback_forget (struct pc_cache *c);
int pc_writeback_step_width (struct pc_cache *c, unsigned width);

#endif /* PC_WRITEBACK_H */
