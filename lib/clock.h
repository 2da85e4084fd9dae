/* clock: the monotonic and the wall clock in the units the daemon counts in,
 * and a millisecond count as the struct timeval that libevent timers take.
 * No state and nothing to free; safe to call from anywhere. Measure intervals
 * and deadlines on the monotonic clock: the wall clock can jump. */
#ifndef S3O_CLOCK_H
#define S3O_CLOCK_H

#include <stdint.h>
#include <sys/time.h>

/* CLOCK_MONOTONIC since an arbitrary start, in microseconds or milliseconds. */
uint64_t clock_mono_us(void);
uint64_t clock_mono_ms(void);

/* CLOCK_REALTIME in microseconds since the Unix epoch. */
int64_t clock_realtime_us(void);

/* ms milliseconds as a struct timeval (tv_usec below 1000000). */
struct timeval clock_tv_ms(uint64_t ms);

#endif
