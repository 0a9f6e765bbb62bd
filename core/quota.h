/* SPDX-License-Identifier: BSD-3-Clause */
/* quota.c: pcache-export-quota, one export's share of dirty data. */
#ifndef PC_QUOTA_H
#define PC_QUOTA_H

#include <stdint.h>

struct pc_cache;
struct pc_ns;

/* Before a write of len bytes to ns in write-back mode: wait while its
 * dirty data would pass the quota, then add len to it (before its keys
 * can be committed: see wb_skip_clean).  Returns 0, or -1 with
 * *err = EIO after pcache-full-timeout without its write-back making
 * room (nothing added).
 */
int pc_quota_take (struct pc_cache *c, struct pc_ns *ns, uint64_t len,
                   int *err);
/* Write-back lowered ns's dirty data: wake its waiting writes. */
void pc_quota_freed (struct pc_cache *c, struct pc_ns *ns);

#endif /* PC_QUOTA_H */
