/* pattern: glob matching of event types and the endpoint prefix rule.
 * Pure functions over NUL-terminated strings; no allocation. */
#ifndef S3O_PATTERN_H
#define S3O_PATTERN_H

#include <stdbool.h>

/* Glob with '*' (any run, also empty) and '?' (exactly one character). */
bool pattern_match(const char *glob, const char *s);

/* True when event_type is a data event (begins with "s3:"). */
bool pattern_is_data_event(const char *event_type);

/* The prefix rule: an empty prefix passes everything; otherwise data events
 * pass only when subject starts with prefix (a NULL subject does not pass),
 * and operational events always pass. */
bool pattern_prefix_passes(const char *prefix, const char *event_type, const char *subject);

#endif
