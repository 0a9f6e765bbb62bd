/* SPDX-License-Identifier: BSD-3-Clause */
/* Namespaces: one per backing export.  The table on pmem (format.h)
 * says which exist; RAM keeps each one's backend, which the server
 * attaches and detaches as its connections come and go.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cache_internal.h"
#include "ctrl.h"
#include "kset.h"
#include "namespace.h"
#include "util.h"
#include "workers.h"

static struct pc_ns *
ns_new (const struct pc_ns_rec *rec)
{
  /* Aligned for its counters' lines. */
  struct pc_ns *ns = aligned_alloc (_Alignof (struct pc_ns), sizeof *ns);

  if (!ns)
    return NULL;
  memset (ns, 0, sizeof *ns);
  ns->name = malloc (rec->name_len + 1);
  if (!ns->name) {
    free (ns);
    return NULL;
  }
  memcpy (ns->name, rec->name, rec->name_len);
  ns->name[rec->name_len] = '\0';
  ns->id = rec->id;
  ns->size = rec->size;
  ns->created = rec->created;
  memcpy (ns->backing_id, rec->backing_id, PC_BACKING_ID_LEN);
  ns->backing_id[PC_BACKING_ID_LEN - 1] = '\0';
  pthread_mutex_init (&ns->lock, NULL);
  pthread_cond_init (&ns->unpinned, NULL);
  pthread_cond_init (&ns->quota_cv, NULL);
  return ns;
}

int
pc_ns_load (struct pc_cache *c)
{
  uint32_t i;

  for (i = 0; i < c->max_exports; i++) {
    const struct pc_ns_rec *rec = pc_fmt_ns_at (c->base, &c->sb, i);
    struct pc_ns *ns;

    if (!rec)
      continue;
    if (memchr (rec->name, '\0', rec->name_len))
      return pc_fail (EINVAL, "%s: namespace %u has a name with a NUL byte",
                      c->path, i);
    ns = ns_new (rec);
    if (!ns)
      return pc_fail (ENOMEM, "%s: out of memory", c->path);
    atomic_store (&c->ns[i], ns);
  }
  return 0;
}

void
pc_ns_free_all (struct pc_cache *c)
{
  uint32_t i;

  for (i = 0; i < PC_NS_MAX; i++) {
    struct pc_ns *ns = atomic_load (&c->ns[i]);

    if (!ns)
      continue;
    free (ns->wb);
    free (ns->name);
    pthread_mutex_destroy (&ns->lock);
    pthread_cond_destroy (&ns->unpinned);
    pthread_cond_destroy (&ns->quota_cv);
    free (ns);
    c->ns[i] = NULL;
  }
}

struct pc_ns *
pc_ns_get (struct pc_cache *c, uint64_t off)
{
  uint32_t id = pc_fmt_ns_of (off);

  return id < PC_NS_MAX ? atomic_load_explicit (&c->ns[id],
                                                memory_order_acquire) : NULL;
}

int
pc_ns_in_range (struct pc_cache *c, uint64_t off, uint64_t len)
{
  struct pc_ns *ns = pc_ns_get (c, off);
  uint64_t o = off & PC_NS_OFF_MASK;

  return ns && o <= ns->size && len <= ns->size - o;
}

uint32_t
pc_ns_slots (pc_cache *c)
{
  return c->max_exports;
}

static struct pc_ns *
find (struct pc_cache *c, const char *name, size_t len)
{
  uint32_t i;

  for (i = 0; i < c->max_exports; i++) {
    struct pc_ns *ns = atomic_load (&c->ns[i]);

    if (ns && strlen (ns->name) == len && memcmp (ns->name, name, len) == 0)
      return ns;
  }
  return NULL;
}

/* Write entry id durably, then give it a cursor at the log head: none
 * of the log before it can hold its keys.  A crash between the two
 * leaves a cursor that replay reads as key_tail, which is as safe.
 */
static struct pc_ns *
create (struct pc_cache *c, uint32_t id, const char *name, size_t len,
        uint64_t size)
{
  struct pc_ns_rec *rec = calloc (1, sizeof *rec);
  uint8_t *slot = c->base + c->sb.nstab_off + (uint64_t) id * PC_NS_ENTRY;
  struct pc_ns *ns = NULL;
  struct pc_pos head;

  if (!rec) {
    errno = ENOMEM;
    return NULL;
  }
  rec->magic = PC_NS_MAGIC;
  rec->id = id;
  rec->name_len = len;
  rec->size = size;
  rec->created = time (NULL);
  if (c->backing_id)
    strncpy (rec->backing_id, c->backing_id, PC_BACKING_ID_LEN - 1);
  memcpy (rec->name, name, len);
  pc_fmt_ns_seal (rec);
  ns = ns_new (rec);
  if (ns) {
    pc_pmem_copy (c->pm, slot, rec, sizeof *rec);
    pc_log_head (c, &head);
    pc_ctrl_set_ns_tail (c, id, &head);
  }
  free (rec);
  return ns;
}

int
pc_ns_size_ok (struct pc_cache *c, const char *name, uint64_t size)
{
  if (size > PC_NS_OFF_MASK + 1)
    return pc_fail (EINVAL, "%s: export '%s' is %" PRIu64 " bytes; a "
                    "namespace holds at most 4 PiB", c->path, name, size);
  return 0;
}

int
pc_ns_open (pc_cache *c, const char *name, uint64_t size, uint32_t *id)
{
  size_t len = strnlen (name, PC_NS_NAME_MAX + 1);
  struct pc_ns *ns;
  uint32_t i;
  int r = 0;

  if (len > PC_NS_NAME_MAX)
    return pc_fail (EINVAL, "%s: export name '%.64s...' is longer than %u "
                    "bytes", c->path, name, PC_NS_NAME_MAX);
  if (pc_ns_size_ok (c, name, size) == -1)
    return -1;
  if (c->cfg.live)
    return pc_fail (EPERM, "%s: opened live, for inspection only", c->path);
  pthread_mutex_lock (&c->ns_lock);
  ns = find (c, name, len);
  if (ns) {
    if (ns->size != size)
      r = pc_fail (EINVAL, "%s: export '%s' is %" PRIu64 " bytes but the "
                   "cache holds it as %" PRIu64 " bytes: it is not the store "
                   "the cache was made for, or it was resized behind the "
                   "cache", c->path, name, size, ns->size);
    goto out;
  }
  for (i = 0; i < c->max_exports && atomic_load (&c->ns[i]); i++)
    ;
  if (i == c->max_exports) {
    r = pc_fail (ENOSPC, "%s: export '%s' refused: the cache already holds "
                 "%u export%s, as many as it was formatted for "
                 "(pcache-max-exports)", c->path, name, c->max_exports,
                 c->max_exports == 1 ? "" : "s");
    goto out;
  }
  ns = create (c, i, name, len, size);
  if (!ns) {
    r = pc_fail (ENOMEM, "%s: out of memory", c->path);
    goto out;
  }
  atomic_store_explicit (&c->ns[i], ns, memory_order_release);
  pc_debug ("%s: namespace %u is export '%s' (%" PRIu64 " bytes)", c->path,
            i, name, size);
 out:
  if (r == 0)
    *id = ns->id;
  pthread_mutex_unlock (&c->ns_lock);
  return r;
}

struct pc_ns *
pc_ns_by_id (struct pc_cache *c, uint32_t id)
{
  return id < c->max_exports ? atomic_load (&c->ns[id]) : NULL;
}

int
pc_ns_attach (pc_cache *c, uint32_t id, const struct pc_backend *bg)
{
  struct pc_ns *ns = pc_ns_by_id (c, id);

  if (!ns)
    return pc_fail (ENOENT, "%s: no namespace %u", c->path, id);
  pthread_mutex_lock (&ns->lock);
  while (ns->pins > 0)
    pthread_cond_wait (&ns->unpinned, &ns->lock);
  ns->bg = *bg;
  ns->has_bg = 1;
  ns->retry_ms = 0;
  pthread_mutex_unlock (&ns->lock);
  /* Its dirty data can go down now. */
  pc_kick_workers (c);
  return 0;
}

void
pc_ns_detach (pc_cache *c, uint32_t id)
{
  struct pc_ns *ns = pc_ns_by_id (c, id);

  if (!ns)
    return;
  pthread_mutex_lock (&ns->lock);
  ns->has_bg = 0;
  while (ns->pins > 0)
    pthread_cond_wait (&ns->unpinned, &ns->lock);
  memset (&ns->bg, 0, sizeof ns->bg);
  pthread_mutex_unlock (&ns->lock);
}

int
pc_ns_pin (struct pc_ns *ns, struct pc_backend *bg)
{
  int r = -1;

  pthread_mutex_lock (&ns->lock);
  if (ns->has_bg) {
    ns->pins++;
    *bg = ns->bg;
    r = 0;
  }
  pthread_mutex_unlock (&ns->lock);
  return r;
}

void
pc_ns_unpin (struct pc_ns *ns)
{
  pthread_mutex_lock (&ns->lock);
  if (--ns->pins == 0)
    pthread_cond_broadcast (&ns->unpinned);
  pthread_mutex_unlock (&ns->lock);
}

int
pc_ns_each (struct pc_cache *c, int (*fn) (struct pc_ns *, void *),
            void *opaque)
{
  uint32_t i;
  int r;

  for (i = 0; i < c->max_exports; i++) {
    struct pc_ns *ns = atomic_load (&c->ns[i]);

    if (ns && (r = fn (ns, opaque)) != 0)
      return r;
  }
  return 0;
}
