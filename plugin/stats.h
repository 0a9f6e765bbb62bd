/* SPDX-License-Identifier: BSD-3-Clause */
/* The statistics file of the pcache filter (pcache-stats). */
#ifndef PCACHE_STATS_H
#define PCACHE_STATS_H

#include <stddef.h>

#include "pcache.h"

/* From .config: PATH may be NULL and INTERVAL 0 to leave them as they
 * are.
 */
int pcache_stats_config (const char *path, unsigned interval);
/* At start: the file can be written; the error names pcache-stats. */
int pcache_stats_check (void);
/* Start rewriting the file, if one was configured. */
int pcache_stats_start (pc_cache *c);
/* Stop the thread that rewrites it. */
void pcache_stats_stop (void);
/* Write it a last time, after the engine stopped. */
void pcache_stats_final (void);
void pcache_stats_free (void);

/* The statistics of C, the totals and each export's, as one line of
 * JSON in BUF; its length, or -1.  pcache_stats_max (c) bytes are
 * always enough, whatever the exports and their names.
 */
int pcache_stats_line (pc_cache *c, char *buf, size_t len);
size_t pcache_stats_max (pc_cache *c);

#endif /* PCACHE_STATS_H */
