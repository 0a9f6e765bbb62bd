/* SPDX-License-Identifier: BSD-3-Clause */
/* ctrl.c: the persisted cursors of the key log. */
#ifndef PC_CTRL_H
#define PC_CTRL_H

#include "format.h"

struct pc_cache;

/* The first kset not yet written back. */
struct pc_pos pc_dirty_tail (struct pc_cache *c);
/* Both cursors at once. */
void pc_ctrl_tails (struct pc_cache *c, struct pc_pos *key_tail,
                    struct pc_pos *dirty_tail);
/* Move key_tail and/or dirty_tail (NULL: unchanged) and store the
 * control record (with the current gc percent) on pmem.  Takes
 * ctrl_lock, a leaf lock.
 */
void pc_ctrl_update (struct pc_cache *c, const struct pc_pos *key_tail,
                     const struct pc_pos *dirty_tail);

/* The dirty cursor of namespace ns: the first kset that may hold a key
 * of it not yet written back.
 */
struct pc_pos pc_ctrl_ns_tail (struct pc_cache *c, uint32_t ns);
/* Move it (and dirty_tail, the oldest of them) and store the record. */
void pc_ctrl_set_ns_tail (struct pc_cache *c, uint32_t ns,
                          const struct pc_pos *tail);

#endif /* PC_CTRL_H */
