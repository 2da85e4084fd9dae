/* event: the CloudEvents 1.0 structured-mode body (docs/receiving.md).
 * event_envelope() returns a malloc'd, NUL-terminated body the caller frees
 * with free(); data_json must already be valid JSON (PostgreSQL's jsonb text)
 * and is embedded as JSON, never as a string. Ill-formed UTF-8 anywhere (a
 * SQL_ASCII producer database can store it) becomes U+FFFD, so the body
 * always decodes. */
#ifndef S3O_EVENT_H
#define S3O_EVENT_H

#include <stddef.h>
#include <stdint.h>

/* RFC 3339 UTC with microseconds, "2026-11-26T18:37:51.123456Z"; buf >= 32. */
void event_format_time(int64_t unix_us, char *buf, size_t n);

/* subject NULL or "" is omitted. Returns NULL on allocation failure; *len
 * gets the body length. */
char *event_envelope(const char *id, const char *source, const char *type, const char *subject,
		     int64_t time_unix_us, const char *data_json, size_t *len)
    __attribute__((warn_unused_result));

#endif
