/* SPDX-License-Identifier: BSD-3-Clause */
/* payload.c: carving payload space out of data segments. */
#ifndef PC_PAYLOAD_H
#define PC_PAYLOAD_H

#include <stdint.h>

struct pc_cache;

/* Up to want bytes of payload space at (*seg, *seg_off), *got bytes,
 * in a segment of generation *gen, holding one reference to the
 * segment for the key record.  With wait, blocks until space is free;
 * without, fails with ENOSPC.  Returns 0, or -1 with errno.
 */
int pc_alloc_payload (struct pc_cache *c, uint32_t want, int wait,
                      uint32_t *seg, uint32_t *seg_off, uint32_t *got,
                      uint32_t *gen);

#endif /* PC_PAYLOAD_H */
