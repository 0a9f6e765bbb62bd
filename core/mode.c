/* SPDX-License-Identifier: BSD-3-Clause */
/* Cache modes: names, and switching between them while clients run. */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <errno.h>
#include <string.h>

#include "cache_internal.h"
#include "clean.h"
#include "util.h"

static const char *const mode_names[] = {
  [PC_MODE_WRITEBACK] = "writeback",
  [PC_MODE_WRITETHROUGH] = "writethrough",
  [PC_MODE_WRITEAROUND] = "writearound",
};

const char *
pc_mode_name (enum pc_mode mode)
{
  return (unsigned) mode <= PC_MODE_WRITEAROUND ? mode_names[mode] : "?";
}

int
pc_mode_parse (const char *name, enum pc_mode *mode)
{
  unsigned i;

  for (i = 0; i <= PC_MODE_WRITEAROUND; i++)
    if (strcmp (name, mode_names[i]) == 0) {
      *mode = i;
      return 0;
    }
  errno = EINVAL;
  return -1;
}

enum pc_mode
pc_cache_get_mode (pc_cache *c)
{
  return atomic_load (&c->mode);
}

int
pc_cache_set_mode (pc_cache *c, enum pc_mode mode, int *err)
{
  int r = 0;

  if ((unsigned) mode > PC_MODE_WRITEAROUND) {
    *err = EINVAL;
    return -1;
  }
  pc_brlock_wrlock (&c->mode_lock);
  if (c->mode == PC_MODE_WRITEBACK && mode != PC_MODE_WRITEBACK)
    r = pc_cache_drain (c, err);
  /* Clean keys waiting for the backend's flush are logged now: write-back
   * mode would not flush for them.
   */
  else if (c->mode != PC_MODE_WRITEBACK && mode == PC_MODE_WRITEBACK)
    r = pc_backend_flush (c, err);
  if (r == 0) {
    c->mode = mode;
    pc_debug ("%s: mode is now %s", c->path, pc_mode_name (mode));
  }
  pc_brlock_wrunlock (&c->mode_lock);
  return r;
}
