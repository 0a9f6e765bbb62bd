/* SPDX-License-Identifier: BSD-3-Clause */
/* Statistics file and control socket of the pcache filter. */
#ifndef PCACHE_CONTROL_H
#define PCACHE_CONTROL_H

#include "pcache.h"

/* From .config: any argument may be NULL/0 to leave it unchanged. */
int pcache_control_config (const char *stats, unsigned interval,
                           const char *sock);
/* pcache-control-mode=OCTAL, from .config. */
int pcache_control_config_mode (const char *value);
/* From .get_ready, before the cache is opened: the stats file's
 * directory is writable, the socket's path can be bound and nothing
 * listens there.  Errors name the parameter.
 */
int pcache_control_check (void);
/* From .get_ready, last: bind and listen, before nbdkit forks, so that
 * a failure is nbdkit's exit status; the socket's thread starts in
 * pcache_control_start.
 */
int pcache_control_listen (void);
/* From .after_fork, once the cache runs: the stats thread and the
 * socket's acceptor.
 */
int pcache_control_start (pc_cache *c);
/* From .after_fork, when the cache cannot start yet: the socket's
 * acceptor only, answering every request with why, until
 * pcache_control_start.
 */
int pcache_control_start_waiting (void);
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
