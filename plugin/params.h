/* SPDX-License-Identifier: BSD-3-Clause */
/* The filter's parameters: parsed in .config, checked together in
 * .config_complete, read by the rest of the filter afterwards.
 */
#ifndef PCACHE_PARAMS_H
#define PCACHE_PARAMS_H

#include "pcache.h"

struct pcache_params {
  struct pc_config cfg;         /* the engine's configuration */
  char *dev_path;               /* pcache-dev, made absolute */
  char *backing_id;             /* pcache-backing-id, or NULL */
  int drain_on_exit;            /* pcache-drain */
  /* pcache-assume-shared: the user vouches that every connection to
   * the plugin sees one and the same disk.
   */
  int assume_shared;
  /* The plugin is one known to show every connection the same remote
   * image although it does not advertise multi-conn.
   */
  int plugin_known_shared;
  /* Multi-export mode: the plugin serves one disk per export name
   * (file dir=, ondemand, nbd dynamic-export=true).  Each export has a
   * namespace of its own in the cache, written back through the
   * connections of its clients (nbdkit 1.32 gives a plugin no export
   * name outside a client connection, so there is no shared context).
   */
  int multi_export;
};

extern struct pcache_params params;

/* From .load and .unload. */
void pcache_params_init (void);
void pcache_params_free (void);

/* From .config: 0, or -1 with an error naming the parameter, for a
 * pcache-* key; 1 for a key of the plugin's, which the caller passes
 * on (after noting the ones that change how the plugin is served).
 */
int pcache_params_config (const char *key, const char *value);

/* From .config_complete: what the parameters say together, and which
 * plugins cannot be cached or are served per export.  0 or -1.
 */
int pcache_params_complete (void);

#define pcache_config_help \
  "pcache-dev=FILE        (required) Cache file or DAX device.\n" \
  "pcache-size=SIZE       Size of a cache file to create.\n" \
  "pcache-format=auto|force  Reformat an existing cache (force).\n" \
  "pcache-mode=MODE       writeback (default), writethrough, writearound.\n" \
  "pcache-seq-cutoff=SIZE Sequential reads past SIZE are not cached.\n" \
  "pcache-stats=FILE      Write statistics as JSON to FILE.\n" \
  "pcache-stats-interval=SECS  How often (default 5).\n" \
  "pcache-control=SOCKET  Control socket (stats, set, mode, drain, pause...).\n" \
  "pcache-control-mode=OCTAL  Permissions of the control socket (default 0600).\n" \
  "pcache-data-crc=BOOL   Checksum cached data (fixed at format).\n" \
  "pcache-gc-percent=N    Usage that starts reclaim (0-90, default 70).\n" \
  "pcache-segment-size=SIZE  Segment size (fixed at format, default 16M).\n" \
  "pcache-backing-id=ID   Identity of the backing store (fixed at format).\n" \
  "pcache-max-exports=N   Exports the cache has room for (fixed at format).\n" \
  "pcache-export-quota=PERCENT  Share of the cache one export may dirty.\n" \
  "pcache-cache-on-read=BOOL  Cache data read from the plugin (default true).\n" \
  "pcache-commit-ms=N     Longest wait before a write's key is committed.\n" \
  "pcache-full-timeout=SECS  Longest wait for cache space (default 60, 0 = none).\n" \
  "pcache-writeback-max-age=SECS  Longest flushed data stays dirty (default 30).\n" \
  "pcache-hold-timeout=SECS  Longest write-back hold (default 300, 0 = none).\n" \
  "pcache-drain=BOOL      At exit write everything back and empty the cache.\n" \
  "pcache-assume-shared=BOOL  Trust that all plugin connections share one disk.\n" \
  "pcache-writeback-threads=N  Concurrent writeback writes (default 16).\n" \
  "pcache-writeback-percent=N  Dirty share that starts writeback during a burst.\n" \
  "pcache-replay=strict|lenient  Refuse a damaged log, or end it there."

#endif /* PCACHE_PARAMS_H */
