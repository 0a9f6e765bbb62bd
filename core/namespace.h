/* SPDX-License-Identifier: BSD-3-Clause */
/* namespace.c: the namespace table, and each namespace's backend. */
#ifndef PC_NAMESPACE_H
#define PC_NAMESPACE_H

#include <stdint.h>

#include "pcache.h"

struct pc_cache;
struct pc_ns;

/* Load every valid entry of the table (at open). */
int pc_ns_load (struct pc_cache *c);
void pc_ns_free_all (struct pc_cache *c);

/* Can an export called name of size bytes have a namespace?  0, or -1
 * with EINVAL and the reason given.
 */
int pc_ns_size_ok (struct pc_cache *c, const char *name, uint64_t size);

/* Namespace id, or NULL if that slot of the table is unused. */
struct pc_ns *pc_ns_by_id (struct pc_cache *c, uint32_t id);
/* The namespace of cache address off, or NULL if there is none. */
struct pc_ns *pc_ns_get (struct pc_cache *c, uint64_t off);

/* Is [off, off+len) inside one namespace (nothing logged)? */
int pc_ns_in_range (struct pc_cache *c, uint64_t off, uint64_t len);
/* Use the backend of ns: 0 with *bg its copy, pinned until pc_ns_unpin,
 * or -1 if it has none now.
 */
int pc_ns_pin (struct pc_ns *ns, struct pc_backend *bg);
void pc_ns_unpin (struct pc_ns *ns);

/* Call fn for every namespace in use, in id order; stops at a nonzero
 * return, which it returns.
 */
int pc_ns_each (struct pc_cache *c, int (*fn) (struct pc_ns *, void *),
                void *opaque);

#endif /* PC_NAMESPACE_H */
