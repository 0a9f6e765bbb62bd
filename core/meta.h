/* SPDX-License-Identifier: BSD-3-Clause */
/* Encoding, validation and dual-slot update of the fixed records:
 * superblock, control record and segment generations.
 */
#ifndef PC_META_H
#define PC_META_H

#include <stdint.h>

#include "format.h"
#include "pmem.h"

/* Pick a valid superblock from the two copies at base.  Returns 0, or -1
 * with *why set to a static reason (not a pcache file, corrupt, version).
 */
int pc_sb_load (const uint8_t *base, uint64_t size, struct pc_sb *out,
                const char **why);
void pc_sb_seal (struct pc_sb *sb);
void pc_sb_store (struct pc_pmem *pm, uint8_t *base, const struct pc_sb *sb);

/* Newest valid control record: returns its slot (0/1), or -1. */
int pc_ctrl_load (const uint8_t *base, struct pc_ctrl *out);
/* Write c (seq bumped) to the slot other than *slot; *slot becomes it. */
void pc_ctrl_store (struct pc_pmem *pm, uint8_t *base, struct pc_ctrl *c,
                    int *slot);

/* Segment generation record of one segment (entry = its two slots).
 * Load returns the slot of the newest valid copy, or -1 if neither is
 * valid.  Store writes gen (seq bumped) to both slots, the one other
 * than *slot first; *slot becomes that one.
 */
int pc_gen_load (const uint8_t *entry, uint64_t *gen, uint32_t *seq);
void pc_gen_store (struct pc_pmem *pm, uint8_t *entry, uint64_t gen,
                   uint32_t *seq, int *slot);
/* Do both slots hold the same valid record? */
int pc_gen_agree (const uint8_t *entry);

/* Newer of two wrapping sequence numbers. */
static inline int
pc_seq32_newer (uint32_t a, uint32_t b)
{
  return (int32_t) (a - b) > 0;
}

#endif /* PC_META_H */
