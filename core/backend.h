/* SPDX-License-Identifier: BSD-3-Clause */
/* backend.c: backend requests the engine builds itself. */
#ifndef PC_BACKEND_H
#define PC_BACKEND_H

#include "format.h"
#include "pcache.h"

struct pc_cache;
struct pc_ns;

/* Send a zero or trim record to bg, the backend of its namespace.
 * Returns 0, or -1 with *err set.
 */
int pc_backend_zero (const struct pc_backend *bg, const struct pc_key_rec *r,
                     int *err);
/* Write len bytes at cache address off to bg, the backend of its
 * namespace.
 */
int pc_backend_pwrite (const struct pc_backend *bg, const void *buf,
                       uint32_t len, uint64_t off, int *err);
/* The same, durable when it returns: bg->ops->pwrite_fua must be set. */
int pc_backend_pwrite_fua (const struct pc_backend *bg, const void *buf,
                           uint32_t len, uint64_t off, int *err);
/* Pin the backend of the namespace of cache address off (pc_ns_pin):
 * 0, or -1 with *err = EIO and the reason logged if it has none.
 */
int pc_backend_pin (struct pc_cache *c, uint64_t off, struct pc_backend *bg,
                    struct pc_ns **ns, int *err);
/* Flush every namespace's backend that can flush.  Returns 0, or -1
 * with *err set (the others are flushed all the same).
 */
int pc_backend_flush_all (struct pc_cache *c, int *err);
/* Do all attached backends lack a flush? */
int pc_backend_none_flush (struct pc_cache *c);

#endif /* PC_BACKEND_H */
