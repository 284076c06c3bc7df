/* Clocks: wall time for what is stored and shown, monotonic time for
 * measuring and for deadlines that must not jump with the wall clock. */
#ifndef STRATA_CLOCK_H
#define STRATA_CLOCK_H

#include <stdint.h>
#include <time.h>

int64_t clock_wall_ms(void);
uint64_t clock_mono_ms(void);
uint64_t clock_mono_ns(void);
/* The wall-clock instant ms from now, for pthread_cond_timedwait. */
struct timespec clock_deadline_ms(uint64_t ms);

#endif
