/* SPDX-License-Identifier: BSD-3-Clause */
/* clean.c: clean keys logged only once a backend flush covers them. */
#ifndef PC_CLEAN_H
#define PC_CLEAN_H

#include "format.h"

struct pc_cache;

void pc_clean_init (struct pc_cache *c);
void pc_clean_destroy (struct pc_cache *c);
/* Log a clean key's record, or keep it waiting (RAM only) until the
 * backend has flushed what the key's data was read after.  Caller
 * holds the key's tree write lock.  Returns 0 if queued (the record
 * owns a payload reference), 1 if deferred and -1 on error (the caller
 * gives the reference back).
 */
int pc_clean_log (struct pc_cache *c, const struct pc_key_rec *r);
/* A write-through or write-around change reached the backend. */
void pc_clean_wt_ended (struct pc_cache *c, const struct pc_backend *bg);
/* Flush the backend, then log the clean keys that waited for it.
 * Returns 0, or -1 with *err set.
 */
int pc_backend_flush (struct pc_cache *c, int *err);

#endif /* PC_CLEAN_H */
