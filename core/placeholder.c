/* SPDX-License-Identifier: BSD-3-Clause */
/* Placeholders: keys that hold a range of the index while its data is
 * read from the backend (a read miss) or written to it (write-through,
 * write-around), so that a write racing with them always wins.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include <string.h>

#include "cache_internal.h"
#include "clean.h"
#include "crc.h"
#include "payload.h"
#include "placeholder.h"

/* Caller holds t's write lock.  Take ph out of the tree, or, if a newer
 * key already did, account for it: an overtaken writer's backend write
 * has now ended.  Returns whether ph was still live.
 */
static int
ph_release (struct pc_tree *t, struct pc_key *ph)
{
  pc_assert_wrheld (&t->lock);
  if (!(ph->flags & PC_KEY_DEAD)) {
    pc_tree_unlink (t, ph);
    return 1;
  }
  if (ph->flags & PC_KEY_WRITER)
    t->orphans--;
  return 0;
}

/* Put data for a placeholder into the cache as clean keys, unless a
 * write has overtaken it; the placeholder is freed either way.
 */
void
pc_fill_placeholder (struct pc_cache *c, struct pc_tree *t, struct pc_key *ph,
                     const uint8_t *data)
{
  struct pc_key_rec recs[8];
  unsigned n = 0, i;
  uint32_t done = 0;

  while (done < ph->len && n < 8) {
    struct pc_key_rec *r = &recs[n];

    memset (r, 0, sizeof *r);
    r->off = ph->off + done;
    if (pc_alloc_payload (c, ph->len - done, 0, &r->seg, &r->seg_off, &r->len,
                          &r->gen) == -1)
      break;
    pc_pmem_copy (c->pm, pc_seg_addr (c, r->seg, r->seg_off), data + done,
                  r->len);
    if (c->data_crc)
      r->data_crc = pc_crc32c (data + done, r->len);
    done += r->len;
    n++;
  }

  pc_wrlock (&t->lock);
  if (ph_release (t, ph) && done == ph->len) {
    for (i = 0; i < n; i++) {
      struct pc_key *k = pc_key_for_rec (c, &recs[i]);
      int queued = 0;

      if (k) {
        if (pc_tree_insert (t, k) == -1)
          pc_key_free (k);
        else
          queued = pc_clean_log (c, &recs[i]) == 0;
      }
      /* A record that is not logged gives its reference back; a key
       * indexed without one just turns stale when the space is reused.
       */
      if (!queued)
        pc_seg_put (&c->segs, recs[i].seg);
    }
    n = 0;
  }
  pthread_rwlock_unlock (&t->lock);
  for (i = 0; i < n; i++)
    pc_seg_put (&c->segs, recs[i].seg);
  pc_key_free (ph);
}

void
pc_drop_placeholder (struct pc_tree *t, struct pc_key *ph)
{
  pc_wrlock (&t->lock);
  ph_release (t, ph);
  pthread_rwlock_unlock (&t->lock);
  pc_key_free (ph);
}
