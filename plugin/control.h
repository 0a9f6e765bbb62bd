/* Statistics file and control socket of the pcache filter. */
#ifndef PCACHE_CONTROL_H
#define PCACHE_CONTROL_H

#include "pcache.h"

/* From .config: any argument may be NULL/0 to leave it unchanged. */
int pcache_control_config (const char *stats, unsigned interval,
                           const char *sock);
/* From .after_fork, once the cache runs. */
int pcache_control_start (pc_cache *c);
void pcache_control_stop (void);
void pcache_control_final (void);
void pcache_control_free (void);

#endif /* PCACHE_CONTROL_H */
