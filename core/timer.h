/* SPDX-License-Identifier: BSD-3-Clause */
/* timer.c: the commit timer thread. */
#ifndef PC_TIMER_H
#define PC_TIMER_H

/* Started and stopped by pc_cache_start/pc_cache_stop. */
void *pc_timer_thread (void *arg);

#endif /* PC_TIMER_H */
