/* SPDX-License-Identifier: BSD-3-Clause */
/* placeholder.c: index keys that hold a range during a backend call. */
#ifndef PC_PLACEHOLDER_H
#define PC_PLACEHOLDER_H

#include <stdint.h>

struct pc_cache;
struct pc_tree;
struct pc_key;

/* Complete a read placeholder: its data becomes clean keys unless a
 * write overtook it.  Frees ph.  Takes t's write lock.
 */
void pc_fill_placeholder (struct pc_cache *c, struct pc_tree *t,
                          struct pc_key *ph, const uint8_t *data);
/* Abandon a placeholder (frees it).  Takes t's write lock. */
void pc_drop_placeholder (struct pc_tree *t, struct pc_key *ph);

#endif /* PC_PLACEHOLDER_H */
