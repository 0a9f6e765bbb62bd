/* Logging and small helpers shared by the engine. */
#ifndef PC_UTIL_H
#define PC_UTIL_H

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>

#include "pcache.h"

void pc_error (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));
void pc_debug (const char *fmt, ...) __attribute__ ((format (printf, 1, 2)));

/* Log and fail with errno set to e. */
#define PC_FAIL(e, ...) \
  do { pc_error (__VA_ARGS__); errno = (e); return -1; } while (0)

#define PC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PC_MAX(a, b) ((a) > (b) ? (a) : (b))
#define PC_ALIGN_UP(x, a) (((x) + (a) - 1) & ~((uint64_t) (a) - 1))

uint64_t pc_now_ms (void);

#include <pthread.h>
/* pthread_cond_timedwait for at most ms milliseconds. */
int pc_cond_wait_ms (pthread_cond_t *cv, pthread_mutex_t *m, unsigned ms);

#endif /* PC_UTIL_H */
