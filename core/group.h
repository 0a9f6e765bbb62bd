/* SPDX-License-Identifier: BSD-3-Clause */
/* group.c: write-back groups, several client epochs written back as
 * one: their size (pcache-writeback-group, auto's sizing) and the
 * durable record of the group in flight.
 */
#ifndef PC_GROUP_H
#define PC_GROUP_H

#include <stdint.h>

struct pc_cache;
struct pc_ns;
struct pc_ns_group;

/* Client epochs the next group of ns may take (1: strict order). */
unsigned pc_group_limit (struct pc_cache *c, struct pc_ns *ns);
/* After a group of used epochs was gathered with limit in force: lag
 * says that ended epochs were left for the next one.  Auto grows while
 * write-back lags and shrinks back once it keeps up.
 */
void pc_group_adapt (struct pc_cache *c, struct pc_ns *ns, unsigned limit,
                     unsigned used, int lag);
/* Write-back of ns has nothing to do: auto starts again from 1. */
void pc_group_idle (struct pc_cache *c, struct pc_ns *ns);
/* The durable group of ns that begins at kset seq, or NULL. */
const struct pc_ns_group *pc_group_bound (struct pc_cache *c,
                                          struct pc_ns *ns, uint64_t seq);
/* Make durable that ns's ksets [start, end) go down as one group whose
 * last client epoch is epoch.
 */
void pc_group_record (struct pc_cache *c, struct pc_ns *ns, uint64_t start,
                      uint64_t end, uint64_t epoch);
/* The last epoch of any group found in flight at open (0 if none). */
uint64_t pc_group_inflight_epoch (struct pc_cache *c);

#endif /* PC_GROUP_H */
