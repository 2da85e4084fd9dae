/* backoff: the delay before the next attempt of a failed delivery.
 * Pure functions; randomness comes from the caller so tests are exact. */
#ifndef S3O_BACKOFF_H
#define S3O_BACKOFF_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

/* Delay before retry n (n >= 1): 1 s * 2^(n-1), capped at max_ms, then
 * jittered by +-20 % using rnd (uniform over 0..UINT32_MAX); never above max_ms. */
uint64_t backoff_delay_ms(unsigned n, uint64_t max_ms, uint32_t rnd);

/* Parse a Retry-After value: delta-seconds or an HTTP date (relative to now).
 * A date in the past gives 0. Returns false when the value is neither. */
bool backoff_parse_retry_after(const char *value, time_t now, uint64_t *out_ms)
    __attribute__((warn_unused_result));

/* max(backoff_delay_ms(n), min(retry_after_ms, max_ms)); retry_after_ms 0 = none. */
uint64_t backoff_next_ms(unsigned n, uint64_t max_ms, uint64_t retry_after_ms, uint32_t rnd);

#endif
