/* SPDX-License-Identifier: BSD-3-Clause */
/* gc.c: garbage collection of segments. */
#ifndef PC_GC_H
#define PC_GC_H

struct pc_cache;

/* If space is short (or force), retire ksets that are written back,
 * moving key_tail, and free the segments they held the last references
 * to.  One collector at a time (gc_lock).  Returns the rounds done, or
 * -1 if its scratch space cannot be allocated.
 */
int pc_gc_run (struct pc_cache *c, int force);

#endif /* PC_GC_H */
