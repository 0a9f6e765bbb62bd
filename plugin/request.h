/* SPDX-License-Identifier: BSD-3-Clause */
/* Requests of the pcache filter's control socket. */
#ifndef PCACHE_REQUEST_H
#define PCACHE_REQUEST_H

#include <stddef.h>

#include "pcache.h"

/* Answer one request.  LINE holds LEN bytes (no newline) and room for
 * one more; REPLY receives one line (no newline), "ok", the statistics
 * or "error: ..." naming what was wrong.  A drain or a mode switch may
 * take long: the caller's thread waits for it.
 */
void pcache_request (pc_cache *cache, char *line, size_t len, char *reply,
                     size_t rlen);

#endif /* PCACHE_REQUEST_H */
