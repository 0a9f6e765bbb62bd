/* SPDX-License-Identifier: BSD-3-Clause */
/* Statistics file and control socket of the pcache filter. */
#ifndef PCACHE_CONTROL_H
#define PCACHE_CONTROL_H

#include "pcache.h"

/* From .config: any argument may be NULL/0 to leave it unchanged. */
int pcache_control_config (const char *stats, unsigned interval,
                           const char *sock);
/* From .after_fork, once the cache runs. */
int pcache_control_start (pc_cache *c);
/* At .cleanup, before pc_cache_stop: stops the stats thread and the
 * socket; a client still inside a cache call (a drain) is left to end
 * when pc_cache_stop makes that call return.
 */
void pcache_control_stop (void);
/* After pc_cache_stop: joins the remaining clients, writes the stats
 * file a last time.
 */
void pcache_control_final (void);
void pcache_control_free (void);

#endif /* PCACHE_CONTROL_H */
