/* log: one line per event on stderr, as text or JSON.
 * Process-wide state set once by log_setup(); every call is synchronous and
 * allocation-free for filtered-out levels (the level is tested first).
 * Callers must never pass secrets. The daemon names endpoints and database
 * connections by name, never by URL; any URL or connection string that is
 * printed goes through log_redact_url() first. */
#ifndef S3O_LOG_H
#define S3O_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOGL_DEBUG, LOGL_INFO, LOGL_WARN, LOGL_ERROR };
enum log_format { LOG_TEXT, LOG_JSON };

/* A structured field; raw values (numbers, booleans) are written unquoted in JSON. */
struct log_field {
	const char *key;
	const char *value;
	bool raw;
};

void log_setup(enum log_level level, enum log_format format);
bool log_enabled(enum log_level level);
/* Parse "debug|info|warn|error" / "json|text"; return false on anything else. */
bool log_level_parse(const char *s, enum log_level *out) __attribute__((warn_unused_result));
bool log_format_parse(const char *s, enum log_format *out) __attribute__((warn_unused_result));

void log_fields(enum log_level level, const struct log_field *fields, size_t nfields,
		const char *fmt, ...) __attribute__((format(printf, 4, 5)));

#define log_debug(...) log_fields(LOGL_DEBUG, NULL, 0, __VA_ARGS__)
#define log_info(...)  log_fields(LOGL_INFO, NULL, 0, __VA_ARGS__)
#define log_warn(...)  log_fields(LOGL_WARN, NULL, 0, __VA_ARGS__)
#define log_error(...) log_fields(LOGL_ERROR, NULL, 0, __VA_ARGS__)

/* Copy url into buf (size n, always NUL-terminated, cut when too long) with
 * its secrets replaced by ***: in a URI ("scheme://...") the userinfo and
 * every query value, in a key=value connection string the values of password
 * and sslpassword. A token in a URI's path is not recognised. */
void log_redact_url(const char *url, char *buf, size_t n);

#endif
