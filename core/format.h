/* SPDX-License-Identifier: BSD-3-Clause */
/* The on-media format: the contract shared by the engine, pcachectl and
 * the tests.  What is on the media, and every rule that says whether a
 * piece of it is valid, is declared here and written once (format.c);
 * none of it needs an open cache, so a tool or a test reading a raw
 * mapping applies exactly the rules the engine does.
 *
 * Little-endian; a big-endian host refuses the file.
 *
 *   0       superblock, copy A            (4 KiB)
 *   4 KiB   superblock, copy B            (4 KiB)
 *   8 KiB   control record, slot 0        (4 KiB)
 *   12 KiB  control record, slot 1        (4 KiB)
 *   16 KiB  segment table: nsegs entries of two generation slots
 *   nstab_off (4 KiB aligned)     namespace table: max_exports entries
 *                                 of PC_NS_ENTRY bytes
 *   seg_area_off (4 KiB aligned)  segment 0, 1, ... nsegs-1
 *
 * Every record begins with a CRC32C of the rest of the record.  Records
 * that change (control, generations) have two slots with a sequence
 * number; the newest valid slot wins.  A control update goes to the
 * slot that does not hold the newest valid copy, so a torn update
 * leaves the previous one.  A generation update writes that slot, then
 * the other, so a complete update survives one damaged slot.
 *
 * A segment is either a log segment (a chain of ksets) or a data
 * segment (payload).  Its role lives only in RAM and is rebuilt by replay.
 *
 * Namespaces (version 2): each backing export the cache serves has an
 * entry in the namespace table, written once when the export is first
 * seen (its name, size and backing identity), and its own dirty cursor
 * in the control record.  A key's off carries its namespace in the bits
 * from PC_NS_SHIFT up, so one log, one index and one pool of segments
 * serve every export.  A torn entry fails its CRC and is a free slot: no
 * key can name it, since keys are written only after it is durable.
 */
#ifndef PC_FORMAT_H
#define PC_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define PC_FORMAT_VERSION   2u
#define PC_SB_MAGIC         0x31454843414350ULL   /* "PCACHE1" */
#define PC_CTRL_MAGIC       0x4c525443u           /* "CTRL" */
#define PC_KSET_MAGIC       0x5445534bu           /* "KSET" */
#define PC_NS_MAGIC         0x5350534eu           /* "NSPS" */
#define PC_GROUP_MAGIC      0x52474257u           /* "WBGR" */

#define PC_SB_OFF           0u
#define PC_SB_SLOT          4096u
#define PC_CTRL_OFF         8192u
#define PC_CTRL_SLOT        4096u
#define PC_SEGTAB_OFF       16384u

/* Feature flags, fixed at format time. */
#define PC_FEAT_DATA_CRC    (1u << 0)
#define PC_FEAT_KNOWN       (PC_FEAT_DATA_CRC)

#define PC_BACKING_ID_LEN   64

/* Namespaces: a key's namespace is off >> PC_NS_SHIFT, so one export
 * may be up to 4 PiB; the control record has room for PC_NS_MAX dirty
 * cursors.
 */
#define PC_NS_SHIFT         52
#define PC_NS_OFF_MASK      ((UINT64_C (1) << PC_NS_SHIFT) - 1)
#define PC_NS_MAX           240u
#define PC_NS_ENTRY         8192u
#define PC_NS_NAME_MAX      4096u       /* the NBD limit on export names */

struct pc_sb {
  uint32_t crc;                 /* of bytes [4, sizeof) */
  uint32_t version;
  uint64_t magic;
  uint32_t features;
  uint32_t seg_shift;
  uint32_t nsegs;
  uint32_t max_exports;         /* entries of the namespace table */
  uint64_t file_size;
  uint64_t nstab_off;           /* the namespace table */
  uint64_t seg_area_off;
  uint8_t uuid[16];
  char backing_id[PC_BACKING_ID_LEN];
};

/* A position in the key log. */
struct pc_pos {
  uint32_t seg;
  uint32_t off;
  uint64_t seq;                 /* sequence number of the kset there */
};

struct pc_ctrl {
  uint32_t crc;                 /* of bytes [4, sizeof) */
  uint32_t magic;
  uint64_t seq;                 /* newer slot wins */
  struct pc_pos key_tail;       /* first kset not reclaimed */
  struct pc_pos dirty_tail;     /* first kset not written back: the
                                   oldest of the namespaces' cursors */
  uint32_t gc_percent;
  uint32_t flags;
  /* Per namespace, the first kset that may hold a key of it not yet
   * written back (a cursor before key_tail counts as key_tail).
   */
  struct pc_pos ns_tail[PC_NS_MAX];
};

/* A namespace table entry; the rest of its PC_NS_ENTRY bytes is zero
 * but for the group record at PC_NS_GROUP_OFF.
 */
struct pc_ns_rec {
  uint32_t crc;                 /* of bytes [4, sizeof) */
  uint32_t magic;
  uint32_t id;                  /* its index in the table */
  uint32_t name_len;
  uint64_t size;                /* the export's size */
  uint64_t created;             /* Unix time */
  char backing_id[PC_BACKING_ID_LEN];
  char name[PC_NS_NAME_MAX];    /* name_len bytes, not terminated */
};

/* Write-back's group in flight for a namespace (write-back groups): the
 * ksets [start_seq, end_seq) of its log, several client epochs written
 * as one.  It is made durable before the group's first write goes down,
 * so that a restart finishes the same group: gathered again with other
 * bounds, a later group could lay its data over a part of this one's,
 * and the backend would match no group boundary.  It binds while the
 * namespace's dirty cursor is at start_seq (sequence numbers are never
 * reused), and lapses by itself once the cursor moves.  Its CRC is
 * salted like a kset's, so a record of an earlier format never binds.
 */
struct pc_ns_group {
  uint32_t crc;                 /* salted, of bytes [4, sizeof) */
  uint32_t magic;
  uint64_t start_seq;
  uint64_t end_seq;
  uint64_t epoch;               /* the group's last client epoch */
};

#define PC_NS_GROUP_OFF     (PC_NS_ENTRY - 64u)

struct pc_gen_slot {
  uint32_t crc;                 /* of bytes [4, sizeof) */
  uint32_t seq;                 /* newer slot wins (wrapping compare) */
  uint64_t gen;
};

#define PC_SEGTAB_ENTRY     32u   /* two pc_gen_slot */

/* Ksets: a header then nkeys keys, 64-byte aligned in a log segment.
 * seq increases by one from kset to kset along the log, so a stale kset
 * from an earlier use of a segment is never taken for a live one.  A
 * LAST kset has no keys and sends the log on to next_seg, offset 0.
 */
#define PC_KSET_LAST        (1u << 0)
#define PC_KSET_MAX_KEYS    128u
#define PC_KSET_ALIGN       64u

struct pc_kset_hdr {
  uint32_t crc;                 /* of bytes [4, 32 + nkeys * 32) */
  uint32_t magic;
  uint64_t seq;
  uint64_t epoch;               /* client flush epoch */
  uint16_t nkeys;
  uint16_t flags;
  uint32_t next_seg;            /* LAST only */
};

/* Key flags. */
#define PC_KF_DIRTY         (1u << 0)   /* not yet on the backend */
#define PC_KF_ZERO          (1u << 1)   /* no payload: reads as zeroes */
#define PC_KF_TRIM          (1u << 2)   /* with ZERO: a trim */
#define PC_KF_MAY_TRIM      (1u << 3)   /* zero may punch holes */
#define PC_KF_INVAL         (1u << 4)   /* with ZERO: range no longer cached */
#define PC_KF_MEDIA         (PC_KF_DIRTY | PC_KF_ZERO | PC_KF_TRIM | \
                             PC_KF_MAY_TRIM | PC_KF_INVAL)

struct pc_key_rec {
  uint64_t off;                 /* backing offset */
  uint32_t len;
  uint32_t seg;                 /* payload position (not for ZERO) */
  uint32_t seg_off;
  uint32_t gen;                 /* segment generation at allocation */
  uint32_t flags;
  uint32_t data_crc;            /* CRC32C of payload if DATA_CRC */
};

#define PC_KSET_BYTES(n)    (sizeof (struct pc_kset_hdr) + (n) * sizeof (struct pc_key_rec))

_Static_assert (sizeof (struct pc_sb) == 136, "superblock size");
_Static_assert (sizeof (struct pc_ctrl) == 56 + 16 * PC_NS_MAX, "ctrl size");
_Static_assert (sizeof (struct pc_ctrl) <= 4096, "ctrl fits its slot");
_Static_assert (sizeof (struct pc_ns_rec) <= PC_NS_GROUP_OFF,
                "ns entry size");
_Static_assert (sizeof (struct pc_ns_group) == 32, "group record size");
_Static_assert (sizeof (struct pc_gen_slot) == 16, "gen slot size");
_Static_assert (sizeof (struct pc_kset_hdr) == 32, "kset header size");
_Static_assert (sizeof (struct pc_key_rec) == 32, "key size");

/* ------------------------------------------------------------------ */
/* Format rules.  Pure functions: no cache handle, no locks, no state. */

/* Where the segments of a mapped cache file are, and the salt of its
 * kset CRCs: all that the rules below need to know of a file.
 */
struct pc_geom {
  const uint8_t *base;          /* the mapping of the file */
  uint64_t seg_area_off;
  uint32_t nsegs;
  unsigned seg_shift;
  uint32_t seed;                /* pc_fmt_seed of the superblock's uuid */
};

/* Does sb carry the superblock magic and a matching CRC?  (Whether its
 * version, features and geometry are usable is for the reader to say.)
 */
int pc_fmt_sb_valid (const struct pc_sb *sb);

/* The geometry a valid superblock describes, over the mapping at base. */
void pc_fmt_geom (struct pc_geom *g, const uint8_t *base,
                  const struct pc_sb *sb);

/* Kset CRCs are salted with the cache's uuid, so that a kset left by an
 * earlier format of the same file never validates.
 */
uint32_t pc_fmt_seed (const uint8_t uuid[16]);
/* The salted CRC of the kset h, over its header and keys; the caller
 * knows that h->nkeys is in bounds.
 */
uint32_t pc_kset_crc (uint32_t seed, const struct pc_kset_hdr *h);

/* Bytes a kset of nkeys takes in the log. */
static inline uint32_t
pc_kset_span (uint32_t nkeys)
{
  return (PC_KSET_BYTES (nkeys) + PC_KSET_ALIGN - 1) & ~(PC_KSET_ALIGN - 1);
}

static inline uint64_t
pc_fmt_seg_size (const struct pc_geom *g)
{
  return 1ULL << g->seg_shift;
}

/* Address of offset off of segment seg. */
static inline const uint8_t *
pc_fmt_seg_addr (const struct pc_geom *g, uint32_t seg, uint32_t off)
{
  return g->base + g->seg_area_off + ((uint64_t) seg << g->seg_shift) + off;
}

/* Can a kset header be at pos (segment, alignment, room)? */
int pc_fmt_pos_ok (const struct pc_geom *g, const struct pc_pos *pos);
/* The kset at pos, if it is the one the log expects there (sequence
 * pos->seq) and intact.  Returns a pointer into the mapping, or NULL
 * with *why set to a static reason.  pc_fmt_kset_shape checks all but
 * the CRC, for one who means to reseal it.
 */
const struct pc_kset_hdr *pc_fmt_kset_at (const struct pc_geom *g,
                                          const struct pc_pos *pos,
                                          const char **why);
const struct pc_kset_hdr *pc_fmt_kset_shape (const struct pc_geom *g,
                                             const struct pc_pos *pos,
                                             const char **why);
/* Position after the kset h found at pos. */
void pc_fmt_kset_next (const struct pc_kset_hdr *h, struct pc_pos *pos);

/* Is the key's backing range inside its namespace, which is ns_size
 * bytes long (see pc_fmt_ns_at), not empty, and its flags known?
 */
int pc_fmt_key_range_ok (const struct pc_key_rec *r, uint64_t ns_size);

/* The namespace of a key or address, and the offset within it. */
static inline uint32_t
pc_fmt_ns_of (uint64_t off)
{
  return (uint32_t) (off >> PC_NS_SHIFT);
}

/* Where the namespace table and the segments go in a file of size
 * bytes with segments of 1 << shift: -1 if fewer than PC_MIN_SEGMENTS
 * fit.
 */
int pc_fmt_layout (uint64_t size, unsigned shift, uint32_t max_exports,
                   uint32_t *nsegs, uint64_t *nstab_off, uint64_t *area_off);
/* The smallest size pc_fmt_layout accepts. */
uint64_t pc_fmt_min_size (unsigned shift, uint32_t max_exports);
/* The valid entry id of the namespace table of the file at base, or
 * NULL if the slot is free (or torn: it was never used).
 */
const struct pc_ns_rec *pc_fmt_ns_at (const uint8_t *base,
                                      const struct pc_sb *sb, uint32_t id);
/* Seal an entry: its CRC. */
void pc_fmt_ns_seal (struct pc_ns_rec *rec);
/* The group record of namespace id, if it is valid (salted CRC), else
 * NULL; and sealing one.
 */
const struct pc_ns_group *pc_fmt_group_at (const uint8_t *base,
                                           const struct pc_sb *sb,
                                           uint32_t seed, uint32_t id);
void pc_fmt_group_seal (uint32_t seed, struct pc_ns_group *g);
/* Is the payload position of a key with payload (not ZERO) inside its
 * segment?
 */
int pc_fmt_key_payload_ok (const struct pc_geom *g,
                           const struct pc_key_rec *r);

#endif /* PC_FORMAT_H */
