/* SPDX-License-Identifier: BSD-3-Clause */
#ifdef HAVE_CONFIG_H
#include <config.h>
#endif

#include <string.h>

#include "crc.h"
#include "meta.h"

int
pc_sb_load (const uint8_t *base, uint64_t size, struct pc_sb *out,
            const char **why)
{
  struct pc_sb a, b;
  const struct pc_sb *pick = NULL;

  if (size < PC_SEGTAB_OFF) {
    *why = "too small to be a pcache cache file";
    return -1;
  }
  memcpy (&a, base + PC_SB_OFF, sizeof a);
  memcpy (&b, base + PC_SB_OFF + PC_SB_SLOT, sizeof b);
  /* Both copies are written at format and never again, so either valid
   * one is the superblock.
   */
  if (pc_fmt_sb_valid (&a))
    pick = &a;
  else if (pc_fmt_sb_valid (&b))
    pick = &b;
  if (!pick) {
    if (a.magic != PC_SB_MAGIC && b.magic != PC_SB_MAGIC)
      *why = "not a pcache cache file (no superblock)";
    else
      *why = "superblock is corrupt (checksum mismatch in both copies)";
    return -1;
  }
  if (pick->version != PC_FORMAT_VERSION) {
    *why = "unsupported format version";
    *out = *pick;
    return -1;
  }
  if (pick->features & ~PC_FEAT_KNOWN) {
    *why = "uses features this version does not know";
    return -1;
  }
  *out = *pick;
  return 0;
}

void
pc_sb_seal (struct pc_sb *sb)
{
  sb->crc = pc_rec_crc (sb, sizeof *sb);
}

void
pc_sb_store (struct pc_pmem *pm, uint8_t *base, const struct pc_sb *sb)
{
  pc_pmem_copy (pm, base + PC_SB_OFF, sb, sizeof *sb);
  pc_pmem_copy (pm, base + PC_SB_OFF + PC_SB_SLOT, sb, sizeof *sb);
}

static int
ctrl_valid (const struct pc_ctrl *c)
{
  return c->magic == PC_CTRL_MAGIC && c->crc == pc_rec_crc (c, sizeof *c);
}

int
pc_ctrl_load (const uint8_t *base, struct pc_ctrl *out)
{
  struct pc_ctrl s[2];
  int ok[2], i;

  for (i = 0; i < 2; i++) {
    memcpy (&s[i], base + PC_CTRL_OFF + i * PC_CTRL_SLOT, sizeof s[i]);
    ok[i] = ctrl_valid (&s[i]);
  }
  if (ok[0] && ok[1])
    i = s[1].seq > s[0].seq ? 1 : 0;
  else if (ok[0] || ok[1])
    i = ok[0] ? 0 : 1;
  else
    return -1;
  *out = s[i];
  return i;
}

void
pc_ctrl_store (struct pc_pmem *pm, uint8_t *base, struct pc_ctrl *c,
               int *slot)
{
  int to = *slot ^ 1;

  c->magic = PC_CTRL_MAGIC;
  c->seq++;
  c->crc = pc_rec_crc (c, sizeof *c);
  pc_pmem_copy (pm, base + PC_CTRL_OFF + to * PC_CTRL_SLOT, c, sizeof *c);
  *slot = to;
}

/* Both slots carry the newest generation once an update is complete
 * (see pc_gen_store), so one damaged slot leaves the other, with the
 * same value.  Two valid slots that differ mean an update was cut off
 * after its first copy was durable: that copy is the newer one.
 */
int
pc_gen_load (const uint8_t *entry, uint64_t *gen, uint32_t *seq)
{
  struct pc_gen_slot s[2];
  int ok[2], i;

  memcpy (s, entry, sizeof s);
  for (i = 0; i < 2; i++)
    ok[i] = s[i].crc == pc_rec_crc (&s[i], sizeof s[i]);
  if (ok[0] && ok[1])
    i = pc_seq32_newer (s[1].seq, s[0].seq) ? 1 : 0;
  else if (ok[0] || ok[1])
    i = ok[0] ? 0 : 1;
  else
    return -1;
  *gen = s[i].gen;
  *seq = s[i].seq;
  return i;
}

int
pc_gen_agree (const uint8_t *entry)
{
  struct pc_gen_slot s[2];

  memcpy (s, entry, sizeof s);
  return s[0].crc == pc_rec_crc (&s[0], sizeof s[0]) &&
    memcmp (&s[0], &s[1], sizeof s[0]) == 0;
}

/* Write the new record to both slots, one after the other: first to the
 * slot other than *slot (the newest copy loaded or written last), so a
 * torn first store leaves the previous generation in *slot, as if the
 * update had not begun (the segment is handed out again only after
 * this returns); a torn second store leaves the new one in the first.
 * A single slot per update (as once written) made one flipped bit in
 * the newest slot fall back to the older generation, which makes stale
 * keys of the segment's previous use look live, or, at generation 0
 * with the other slot never written, lose the segment.
 *
 * The format version stays 1: the slot layout, the CRC and the rule
 * "newest valid slot wins" are unchanged, so a cache written one slot
 * at a time opens as before (pc_cache_bind then fills in its second
 * slots), and code that writes one slot reads both slots written here
 * as its newest record.
 */
void
pc_gen_store (struct pc_pmem *pm, uint8_t *entry, uint64_t gen,
              uint32_t *seq, int *slot)
{
  struct pc_gen_slot s = { .seq = *seq + 1, .gen = gen };
  int first = *slot ^ 1;

  s.crc = pc_rec_crc (&s, sizeof s);
  pc_pmem_copy (pm, entry + first * sizeof s, &s, sizeof s);
  pc_pmem_copy (pm, entry + (first ^ 1) * sizeof s, &s, sizeof s);
  *seq = s.seq;
  *slot = first;
}
