/* SPDX-License-Identifier: BSD-3-Clause */
/* The filter's parameters (see params.h). */
#include <config.h>

#include <inttypes.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "params.h"
#include "control.h"

struct pcache_params params;

/* The plugin was given dir= or directory= (the file plugin then serves
 * one export per file), or dynamic-export=true (the nbd plugin then
 * passes the client's export name on): such a plugin cannot be opened
 * without an export name.
 */
static int plugin_dir_param;
static int plugin_dynamic_export;

void
pcache_params_init (void)
{
  pc_config_init (&params.cfg);
}

void
pcache_params_free (void)
{
  free (params.dev_path);
  free (params.backing_id);
  params.dev_path = params.backing_id = NULL;
}

static int
parse_bool_param (const char *key, const char *value, int *out)
{
  int r = nbdkit_parse_bool (value);

  if (r == -1) {
    nbdkit_error ("%s: '%s' is not a boolean", key, value);
    return -1;
  }
  *out = r;
  return 0;
}

static int
parse_size_param (const char *key, const char *value, int64_t *out)
{
  int64_t r = nbdkit_parse_size (value);

  if (r == -1) {
    nbdkit_error ("%s: '%s' is not a size", key, value);
    return -1;
  }
  *out = r;
  return 0;
}

/* The cache file: where, how large, how it is formatted.
 * Returns 0 or -1, or 1 if key is not one of them.
 */
static int
config_file (const char *key, const char *value)
{
  if (strcmp (key, "pcache-dev") == 0) {
    free (params.dev_path);
    params.dev_path = nbdkit_absolute_path (value);
    return params.dev_path ? 0 : -1;
  }
  else if (strcmp (key, "pcache-size") == 0) {
    int64_t r;
    if (parse_size_param (key, value, &r) == -1)
      return -1;
    if (r == 0) {
      nbdkit_error ("pcache-size: must be greater than 0");
      return -1;
    }
    params.cfg.size = r;
    return 0;
  }
  else if (strcmp (key, "pcache-segment-size") == 0) {
    int64_t r;
    if (parse_size_param (key, value, &r) == -1)
      return -1;
    if (r < PC_MIN_SEG_SIZE || r > PC_MAX_SEG_SIZE || (r & (r - 1))) {
      nbdkit_error ("pcache-segment-size: %s is not a power of two between "
                    "1M and 1G", value);
      return -1;
    }
    params.cfg.seg_size = r;
    return 0;
  }
  else if (strcmp (key, "pcache-format") == 0) {
    if (strcmp (value, "auto") == 0)
      params.cfg.format = PC_FORMAT_AUTO;
    else if (strcmp (value, "force") == 0)
      params.cfg.format = PC_FORMAT_FORCE;
    else {
      nbdkit_error ("pcache-format: '%s' must be auto or force", value);
      return -1;
    }
    return 0;
  }
  else if (strcmp (key, "pcache-max-exports") == 0) {
    unsigned v;
    if (nbdkit_parse_unsigned (key, value, &v) == -1)
      return -1;
    if (v == 0 || v > PC_MAX_EXPORTS) {
      nbdkit_error ("pcache-max-exports: %u is out of range 1..%d", v,
                    PC_MAX_EXPORTS);
      return -1;
    }
    params.cfg.max_exports = v;
    return 0;
  }
  else if (strcmp (key, "pcache-data-crc") == 0)
    return parse_bool_param (key, value, &params.cfg.data_crc);
  else if (strcmp (key, "pcache-backing-id") == 0) {
    if (strlen (value) >= 64) {
      nbdkit_error ("pcache-backing-id: longer than 63 bytes");
      return -1;
    }
    free (params.backing_id);
    params.backing_id = strdup (value);
    return params.backing_id ? 0 : -1;
  }
  return 1;
}

/* What is cached and how the log is replayed.
 * Returns 0 or -1, or 1 if key is not one of them.
 */
static int
config_policy (const char *key, const char *value)
{
  if (strcmp (key, "pcache-mode") == 0) {
    if (pc_mode_parse (value, &params.cfg.mode) == -1) {
      nbdkit_error ("pcache-mode: unknown mode '%s' (writeback, "
                    "writethrough, writearound)", value);
      return -1;
    }
    return 0;
  }
  else if (strcmp (key, "pcache-replay") == 0) {
    if (strcmp (value, "strict") == 0)
      params.cfg.lenient_replay = 0;
    else if (strcmp (value, "lenient") == 0)
      params.cfg.lenient_replay = 1;
    else {
      nbdkit_error ("pcache-replay: '%s' must be strict or lenient", value);
      return -1;
    }
    return 0;
  }
  return 1;
}

/* A time in whole seconds, 0 (no bound) to a day. */
static int
parse_seconds (const char *key, const char *value, int *out)
{
  unsigned v;

  if (nbdkit_parse_unsigned (key, value, &v) == -1)
    return -1;
  if (v > PC_MAX_TIMEOUT_S) {
    nbdkit_error ("%s: %u is out of range 0..%d", key, v, PC_MAX_TIMEOUT_S);
    return -1;
  }
  *out = (int) v;
  return 0;
}

/* The background workers: GC, write-back and the commit timer.
 * Returns 0 or -1, or 1 if key is not one of them.
 */
static int
config_workers (const char *key, const char *value)
{
  if (strcmp (key, "pcache-commit-ms") == 0) {
    unsigned v;
    if (nbdkit_parse_unsigned ("pcache-commit-ms", value, &v) == -1)
      return -1;
    if (v == 0 || v > 60000) {
      nbdkit_error ("pcache-commit-ms: %u is out of range 1..60000", v);
      return -1;
    }
    params.cfg.commit_ms = v;
    return 0;
  }
  else if (strcmp (key, "pcache-hold-timeout") == 0)
    return parse_seconds (key, value, &params.cfg.hold_timeout_s);
  return 1;
}

/* A tunable (pcache-gc-percent, pcache-seq-cutoff...): parsed as the
 * other parameters are, checked against the engine's range for it, which
 * the control socket's set checks against too.
 * Returns 0 or -1, or 1 if key is not one of them.
 */
static int
config_tunable (const char *key, const char *value)
{
  const struct pc_tunable_info *in;
  enum pc_tunable t;
  int64_t v;
  int b;

  if (strncmp (key, "pcache-", 7) != 0 ||
      pc_tunable_lookup (key + 7, &t) == -1)
    return 1;
  in = pc_tunable_info (t);
  if (in->zero_word && strcmp (value, in->zero_word) == 0)
    return pc_config_set_tunable (&params.cfg, t, 0);
  switch (in->kind) {
  case PC_TUNABLE_BOOL:
    if (parse_bool_param (key, value, &b) == -1)
      return -1;
    v = b;
    break;
  case PC_TUNABLE_SIZE:
    if (parse_size_param (key, value, &v) == -1)
      return -1;
    break;
  default:
    if (nbdkit_parse_int64_t (key, value, &v) == -1)
      return -1;
  }
  if (v < 0 || (uint64_t) v < in->min || (uint64_t) v > in->max) {
    nbdkit_error ("%s: %s is out of range %s%s%" PRIu64 "..%" PRIu64, key,
                  value, in->zero_word ? in->zero_word : "",
                  in->zero_word ? " or " : "", in->min, in->max);
    return -1;
  }
  return pc_config_set_tunable (&params.cfg, t, v);
}

/* The filter itself: statistics, control socket, exit and sharing.
 * Returns 0 or -1, or 1 if key is not one of them.
 */
static int
config_filter (const char *key, const char *value)
{
  if (strcmp (key, "pcache-stats") == 0)
    return pcache_control_config (value, 0, NULL);
  else if (strcmp (key, "pcache-stats-interval") == 0) {
    unsigned v;
    if (nbdkit_parse_unsigned ("pcache-stats-interval", value, &v) == -1)
      return -1;
    if (v == 0 || v > 3600) {
      nbdkit_error ("pcache-stats-interval: %u is out of range 1..3600", v);
      return -1;
    }
    return pcache_control_config (NULL, v, NULL);
  }
  else if (strcmp (key, "pcache-control") == 0)
    return pcache_control_config (NULL, 0, value);
  else if (strcmp (key, "pcache-control-mode") == 0)
    return pcache_control_config_mode (value);
  else if (strcmp (key, "pcache-drain") == 0)
    return parse_bool_param (key, value, &params.drain_on_exit);
  else if (strcmp (key, "pcache-assume-shared") == 0)
    return parse_bool_param (key, value, &params.assume_shared);
  return 1;
}

/* Names a user may guess for pcache-dev. */
static int
names_cache_file (const char *key)
{
  static const char *const guesses[] = {
    "pcache-file", "pcache-path", "pcache-device", "pcache-cache",
    "pcache-pmem",
  };

  for (size_t i = 0; i < sizeof guesses / sizeof guesses[0]; i++)
    if (strcmp (key, guesses[i]) == 0)
      return 1;
  return 0;
}

int
pcache_params_config (const char *key, const char *value)
{
  if (strncmp (key, "pcache-", 7) == 0) {
    int r = config_file (key, value);

    if (r == 1)
      r = config_policy (key, value);
    if (r == 1)
      r = config_workers (key, value);
    if (r == 1)
      r = config_tunable (key, value);
    if (r == 1)
      r = config_filter (key, value);
    if (r == 1) {
      nbdkit_error ("%s: unknown pcache parameter (%s'nbdkit "
                    "--filter=pcache null --help' lists them)", key,
                    names_cache_file (key) ? "pcache-dev names the cache "
                    "file; " : "");
      return -1;
    }
    return r;
  }
  if (strcmp (key, "dir") == 0 || strcmp (key, "directory") == 0)
    plugin_dir_param = 1;
  else if (strcmp (key, "dynamic-export") == 0)
    plugin_dynamic_export = nbdkit_parse_bool (value) == 1;
  return 1;
}

/* The filter API of nbdkit 1.32 does not name the plugin, but nbdkit
 * loads exactly one, as a shared object named nbdkit-NAME-plugin.so
 * when the plugin is given by name.  Sets *opaque to a copy of NAME.
 */
static int
match_plugin_so (struct dl_phdr_info *info, size_t size, void *opaque)
{
  static const char prefix[] = "nbdkit-", suffix[] = "-plugin.so";
  const size_t plen = sizeof prefix - 1, slen = sizeof suffix - 1;
  const char *base = strrchr (info->dlpi_name, '/');
  char **name = opaque;
  size_t len;

  (void) size;
  base = base ? base + 1 : info->dlpi_name;
  len = strlen (base);
  if (len <= plen + slen || strncmp (base, prefix, plen) != 0 ||
      strcmp (base + len - slen, suffix) != 0)
    return 0;
  *name = strndup (base + plen, len - plen - slen);
  return 1;
}

/* Plugins known to give connections different disks are refused
 * (pcache-assume-shared cannot override this).  Plugins that cannot be
 * opened without an export name, as a shared write-back context is
 * (nbdkit 1.32 gives a plugin no export name there: file dir= and nbd
 * dynamic-export=true crash, ondemand fails), are served in
 * multi-export mode.  A plugin loaded from a path of another name is
 * not known.
 */
static int
refuse_known_plugin (void)
{
  char *name = NULL;
  int r = -1;

  dl_iterate_phdr (match_plugin_so, &name);
  if (!name)
    return 0;
  if (strcmp (name, "tmpdisk") == 0)
    nbdkit_error ("pcache: the tmpdisk plugin gives every connection a "
                  "private disk of its own; one cache in front of it would "
                  "let a client read another's data, so pcache cannot be "
                  "used with tmpdisk");
  else if (strcmp (name, "ondemand") == 0 ||
           (strcmp (name, "file") == 0 && plugin_dir_param) ||
           (strcmp (name, "nbd") == 0 && plugin_dynamic_export)) {
    /* A plugin that cannot be opened without an export name: each
     * export gets a namespace, written back through its clients.
     */
    params.multi_export = 1;
    /* ondemand does not advertise multi-conn, but lets one client at a
     * time open an export (a lock on its file): there is never another
     * connection to that export to see another disk.
     */
    params.plugin_known_shared = strcmp (name, "ondemand") == 0;
    r = 0;
  }
  else {
    /* Remote images every connection reads alike, whose plugins leave
     * multi-conn off only because they hold no cache of their own.
     */
    params.plugin_known_shared = strcmp (name, "curl") == 0 ||
      strcmp (name, "ssh") == 0 || strcmp (name, "vddk") == 0;
    r = 0;
  }
  free (name);
  return r;
}

/* A cache about to be made too small for its segments: said in terms
 * of the parameters that fix the minimum (the core names only the file).
 */
static int
check_new_size (void)
{
  uint64_t min, seg = params.cfg.seg_size ? params.cfg.seg_size : PC_DEFAULT_SEG_SIZE;

  if (!params.cfg.size ||
      (params.cfg.format != PC_FORMAT_FORCE && !pc_cache_path_is_new (params.dev_path)))
    return 0;
  min = pc_cache_min_size (params.cfg.seg_size, params.cfg.max_exports);
  if (min && params.cfg.size < min) {
    nbdkit_error ("pcache-size: %s: %" PRIu64 " bytes is too small: with "
                  "pcache-segment-size=%" PRIu64 "M and pcache-max-exports=%u "
                  "a cache needs at least %" PRIu64 "M (%d segments and the "
                  "export table); give a larger pcache-size or a smaller "
                  "pcache-segment-size", params.dev_path, params.cfg.size, seg >> 20,
                  params.cfg.max_exports ? params.cfg.max_exports : PC_DEFAULT_MAX_EXPORTS,
                  (min + (1 << 20) - 1) >> 20, PC_MIN_SEGMENTS);
    return -1;
  }
  return 0;
}

int
pcache_params_complete (void)
{
  if (!params.dev_path) {
    nbdkit_error ("pcache-dev: parameter is required");
    return -1;
  }
  if (check_new_size () == -1)
    return -1;
  if (refuse_known_plugin () == -1)
    return -1;
  params.cfg.path = params.dev_path;
  params.cfg.backing_id = params.backing_id;
  return 0;
}
