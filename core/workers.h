/* SPDX-License-Identifier: BSD-3-Clause */
/* workers.c: waking the background workers. */
#ifndef PC_WORKERS_H
#define PC_WORKERS_H

struct pc_cache;

/* Wake writeback (and GC): space or a drain is waited for, or the
 * settings changed.  Takes bg_lock.
 */
void pc_kick_workers (struct pc_cache *c);

#endif /* PC_WORKERS_H */
