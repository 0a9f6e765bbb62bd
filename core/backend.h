/* SPDX-License-Identifier: BSD-3-Clause */
/* backend.c: backend requests the engine builds itself. */
#ifndef PC_BACKEND_H
#define PC_BACKEND_H

#include "format.h"

struct pc_cache;

/* Send a zero or trim record to the background backend (c->bg).
 * Returns 0, or -1 with *err set.
 */
int pc_backend_zero (struct pc_cache *c, const struct pc_key_rec *r,
                     int *err);

#endif /* PC_BACKEND_H */
