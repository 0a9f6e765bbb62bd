/* SPDX-License-Identifier: BSD-3-Clause */
/* The format rules of format.h: each on-media validity rule, written
 * once, for the engine, pcachectl and the tests alike.
 */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif
#include "format.h"
#include "crc.h"
#include "pcache.h"

int
pc_fmt_sb_valid (const struct pc_sb *sb)
{
  return sb->magic == PC_SB_MAGIC && sb->crc == pc_rec_crc (sb, sizeof *sb);
}

void
pc_fmt_geom (struct pc_geom *g, const uint8_t *base, const struct pc_sb *sb)
{
  g->base = base;
  g->seg_area_off = sb->seg_area_off;
  g->nsegs = sb->nsegs;
  g->seg_shift = sb->seg_shift;
  g->seed = pc_fmt_seed (sb->uuid);
}

uint32_t
pc_fmt_seed (const uint8_t uuid[16])
{
  return pc_crc32c (uuid, 16);
}

uint32_t
pc_kset_crc (uint32_t seed, const struct pc_kset_hdr *h)
{
  return pc_crc32c_cont (seed, (const uint8_t *) h + 4,
                         PC_KSET_BYTES (h->nkeys) - 4);
}

int
pc_fmt_pos_ok (const struct pc_geom *g, const struct pc_pos *pos)
{
  return pos->seg < g->nsegs && pos->off % PC_KSET_ALIGN == 0 &&
    (uint64_t) pos->off + sizeof (struct pc_kset_hdr) <= pc_fmt_seg_size (g);
}

const struct pc_kset_hdr *
pc_fmt_kset_shape (const struct pc_geom *g, const struct pc_pos *pos,
                   const char **why)
{
  const struct pc_kset_hdr *h;

  if (!pc_fmt_pos_ok (g, pos)) {
    *why = "log position out of range";
    return NULL;
  }
  h = (const struct pc_kset_hdr *) pc_fmt_seg_addr (g, pos->seg, pos->off);
  if (h->magic != PC_KSET_MAGIC) {
    *why = "no kset magic";
    return NULL;
  }
  /* A kset from an earlier pass over the segment has an older number. */
  if (h->seq != pos->seq) {
    *why = "kset sequence mismatch";
    return NULL;
  }
  if (h->nkeys > PC_KSET_MAX_KEYS ||
      pos->off + PC_KSET_BYTES (h->nkeys) > pc_fmt_seg_size (g)) {
    *why = "kset key count out of range";
    return NULL;
  }
  if ((h->flags & PC_KSET_LAST) &&
      (h->nkeys != 0 || h->next_seg >= g->nsegs)) {
    *why = "bad LAST kset";
    return NULL;
  }
  return h;
}

const struct pc_kset_hdr *
pc_fmt_kset_at (const struct pc_geom *g, const struct pc_pos *pos,
                const char **why)
{
  const struct pc_kset_hdr *h = pc_fmt_kset_shape (g, pos, why);

  /* A torn commit fails here: the CRC is what ends the log. */
  if (h && h->crc != pc_kset_crc (g->seed, h)) {
    *why = "kset checksum mismatch";
    return NULL;
  }
  return h;
}

void
pc_fmt_kset_next (const struct pc_kset_hdr *h, struct pc_pos *pos)
{
  if (h->flags & PC_KSET_LAST) {
    pos->seg = h->next_seg;
    pos->off = 0;
  }
  else
    pos->off += pc_kset_span (h->nkeys);
  pos->seq++;
}

int
pc_fmt_key_range_ok (const struct pc_key_rec *r, uint64_t ns_size)
{
  uint64_t off = r->off & PC_NS_OFF_MASK;

  return r->len != 0 && off < ns_size && r->len <= ns_size - off &&
    !(r->flags & ~PC_KF_MEDIA);
}

#define ALIGN_4K(x) (((x) + 4095) & ~(uint64_t) 4095)

int
pc_fmt_layout (uint64_t size, unsigned shift, uint32_t max_exports,
               uint32_t *nsegs, uint64_t *nstab_off, uint64_t *area_off)
{
  uint64_t seg = 1ULL << shift, n, tab;

  if (max_exports == 0 || max_exports > PC_NS_MAX)
    return -1;
  tab = (uint64_t) max_exports * PC_NS_ENTRY;
  if (size < PC_SEGTAB_OFF + tab + seg)
    return -1;
  n = (size - PC_SEGTAB_OFF - tab) / (seg + PC_SEGTAB_ENTRY);
  while (n > 0 &&
         ALIGN_4K (PC_SEGTAB_OFF + n * PC_SEGTAB_ENTRY) + tab + n * seg > size)
    n--;
  if (n < PC_MIN_SEGMENTS || n > UINT32_MAX)
    return -1;
  *nsegs = n;
  *nstab_off = ALIGN_4K (PC_SEGTAB_OFF + n * PC_SEGTAB_ENTRY);
  *area_off = *nstab_off + tab;
  return 0;
}

uint64_t
pc_fmt_min_size (unsigned shift, uint32_t max_exports)
{
  return ALIGN_4K (PC_SEGTAB_OFF + PC_MIN_SEGMENTS * PC_SEGTAB_ENTRY) +
    (uint64_t) max_exports * PC_NS_ENTRY +
    ((uint64_t) PC_MIN_SEGMENTS << shift);
}

const struct pc_ns_rec *
pc_fmt_ns_at (const uint8_t *base, const struct pc_sb *sb, uint32_t id)
{
  const struct pc_ns_rec *rec;

  if (id >= sb->max_exports)
    return NULL;
  rec = (const struct pc_ns_rec *) (base + sb->nstab_off +
                                    (uint64_t) id * PC_NS_ENTRY);
  if (rec->magic != PC_NS_MAGIC || rec->id != id ||
      rec->name_len > PC_NS_NAME_MAX || rec->size > PC_NS_OFF_MASK + 1 ||
      rec->crc != pc_rec_crc (rec, sizeof *rec))
    return NULL;
  return rec;
}

void
pc_fmt_ns_seal (struct pc_ns_rec *rec)
{
  rec->crc = pc_rec_crc (rec, sizeof *rec);
}

const struct pc_ns_group *
pc_fmt_group_at (const uint8_t *base, const struct pc_sb *sb, uint32_t seed,
                 uint32_t id)
{
  const struct pc_ns_group *g;

  if (id >= sb->max_exports)
    return NULL;
  g = (const struct pc_ns_group *) (base + sb->nstab_off +
                                    (uint64_t) id * PC_NS_ENTRY +
                                    PC_NS_GROUP_OFF);
  if (g->magic != PC_GROUP_MAGIC || g->end_seq <= g->start_seq ||
      g->crc != pc_crc32c_cont (seed, (const uint8_t *) g + 4,
                                sizeof *g - 4))
    return NULL;
  return g;
}

void
pc_fmt_group_seal (uint32_t seed, struct pc_ns_group *g)
{
  g->crc = pc_crc32c_cont (seed, (const uint8_t *) g + 4, sizeof *g - 4);
}

int
pc_fmt_key_payload_ok (const struct pc_geom *g, const struct pc_key_rec *r)
{
  uint64_t seg_size = pc_fmt_seg_size (g);

  return r->seg < g->nsegs && r->seg_off <= seg_size &&
    r->len <= seg_size - r->seg_off;
}
