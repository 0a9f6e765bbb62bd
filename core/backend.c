/* SPDX-License-Identifier: BSD-3-Clause */
/* Backend requests the engine builds itself, for the client path
 * (write-through zero and trim) and for writeback alike.  Cache
 * addresses carry their namespace in their high bits: a backend sees
 * only the offset within its export.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <stdatomic.h>

#include "cache_internal.h"
#include "backend.h"
#include "namespace.h"
#include "util.h"

int
pc_backend_zero (const struct pc_backend *bg, const struct pc_key_rec *r,
                 int *err)
{
  const struct pc_backend_ops *ops = bg->ops;
  static const uint8_t zeroes[65536];
  uint64_t off = r->off & PC_NS_OFF_MASK, done = 0;

  if (r->flags & PC_KF_TRIM) {
    /* Trimmed data reads back as anything; only a backend that can
     * discard is told.
     */
    return ops->trim ? ops->trim (bg->ctx, r->len, off, err) : 0;
  }
  if (ops->zero)
    return ops->zero (bg->ctx, r->len, off, !!(r->flags & PC_KF_MAY_TRIM),
                      err);
  while (done < r->len) {
    uint32_t n = PC_MIN (r->len - done, sizeof zeroes);
    if (ops->pwrite (bg->ctx, zeroes, n, off + done, err) == -1)
      return -1;
    done += n;
  }
  return 0;
}

int
pc_backend_pwrite (const struct pc_backend *bg, const void *buf, uint32_t len,
                   uint64_t off, int *err)
{
  return bg->ops->pwrite (bg->ctx, buf, len, off & PC_NS_OFF_MASK, err);
}

int
pc_backend_pwrite_fua (const struct pc_backend *bg, const void *buf,
                       uint32_t len, uint64_t off, int *err)
{
  return bg->ops->pwrite_fua (bg->ctx, buf, len, off & PC_NS_OFF_MASK, err);
}

int
pc_backend_pin (struct pc_cache *c, uint64_t off, struct pc_backend *bg,
                struct pc_ns **nsp, int *err)
{
  struct pc_ns *ns = pc_ns_get (c, off);

  if (ns && pc_ns_pin (ns, bg) == 0) {
    *nsp = ns;
    return 0;
  }
  pc_error ("%s: no backend to write through to for export '%s'", c->path,
            ns ? ns->name : "?");
  *err = EIO;
  return -1;
}

struct flush_all {
  int err;
  int any;                    /* some backend can flush */
};

static int
flush_one (struct pc_ns *ns, void *opaque)
{
  struct flush_all *f = opaque;
  struct pc_backend bg;
  int err = 0;

  if (pc_ns_pin (ns, &bg) == -1)
    return 0;
  if (bg.ops->flush) {
    f->any = 1;
    if (bg.ops->flush (bg.ctx, &err) == -1 && !f->err)
      f->err = err ? err : EIO;
  }
  pc_ns_unpin (ns);
  return 0;
}

int
pc_backend_flush_all (struct pc_cache *c, int *err)
{
  struct flush_all f = { 0, 0 };

  pc_ns_each (c, flush_one, &f);
  if (f.err) {
    *err = f.err;
    return -1;
  }
  return 0;
}

static int
can_flush (struct pc_ns *ns, void *opaque)
{
  struct pc_backend bg;
  int r = 0;

  (void) opaque;
  if (pc_ns_pin (ns, &bg) == 0) {
    r = bg.ops->flush != NULL;
    pc_ns_unpin (ns);
  }
  return r;
}

int
pc_backend_none_flush (struct pc_cache *c)
{
  return pc_ns_each (c, can_flush, NULL) == 0;
}
