/* SPDX-License-Identifier: BSD-3-Clause */
/* replay.c: rebuilding the index from the key log. */
#ifndef PC_REPLAY_H
#define PC_REPLAY_H

struct pc_cache;

/* Walk the log from key_tail, validate each kset and insert its keys.
 * Returns 0, or -1 with errno and an error logged.
 */
int pc_replay (struct pc_cache *c);

#endif /* PC_REPLAY_H */
