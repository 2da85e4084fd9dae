#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

static enum log_level min_level = LOGL_INFO;
static enum log_format out_format = LOG_TEXT;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_level level, enum log_format format)
{
	min_level = level;
	out_format = format;
}

bool log_enabled(enum log_level level)
{
	return level >= min_level;
}

bool log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcmp(s, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	return false;
}

bool log_format_parse(const char *s, enum log_format *out)
{
	if (strcmp(s, "json") == 0)
		*out = LOG_JSON;
	else if (strcmp(s, "text") == 0)
		*out = LOG_TEXT;
	else
		return false;
	return true;
}

/* Append s to buf as JSON string content (without quotes). */
static size_t json_escape(char *buf, size_t pos, size_t cap, const char *s)
{
	for (; *s && pos + 7 < cap; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == '"' || c == '\\') {
			buf[pos++] = '\\';
			buf[pos++] = (char)c;
		} else if (c == '\n') {
			buf[pos++] = '\\';
			buf[pos++] = 'n';
		} else if (c < 0x20) {
			pos += (size_t)snprintf(buf + pos, cap - pos, "\\u%04x", c);
		} else {
			buf[pos++] = (char)c;
		}
	}
	return pos;
}

/* Text values with spaces or quotes are quoted so key=value stays parseable. */
static size_t text_value(char *buf, size_t pos, size_t cap, const char *s)
{
	bool quote = *s == '\0' || strpbrk(s, " \"=\t") != NULL;
	if (!quote) {
		for (; *s && pos + 1 < cap; s++)
			buf[pos++] = *s == '\n' ? ' ' : *s;
		return pos;
	}
	if (pos + 1 < cap)
		buf[pos++] = '"';
	pos = json_escape(buf, pos, cap, s);
	if (pos + 1 < cap)
		buf[pos++] = '"';
	return pos;
}

void log_fields(enum log_level level, const struct log_field *fields, size_t nfields,
		const char *fmt, ...)
{
	if (level < min_level)
		return;

	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	struct timeval tv;
	gettimeofday(&tv, NULL);
	struct tm tm;
	gmtime_r(&tv.tv_sec, &tm);
	char ts[40];
	size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(tv.tv_usec / 1000));

	char line[8192];
	size_t cap = sizeof(line) - 2, pos;
	if (out_format == LOG_JSON) {
		pos =
		    (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"level\":\"%s\",\"message\":\"",
				     ts, level_names[level]);
		pos = json_escape(line, pos, cap, msg);
		pos += (size_t)snprintf(line + pos, cap - pos, "\"");
		for (size_t i = 0; i < nfields && pos < cap; i++) {
			const char *q = fields[i].raw ? "" : "\"";
			pos +=
			    (size_t)snprintf(line + pos, cap - pos, ",\"%s\":%s", fields[i].key, q);
			if (pos < cap)
				pos = json_escape(line, pos, cap, fields[i].value);
			if (pos < cap)
				pos += (size_t)snprintf(line + pos, cap - pos, "%s", q);
		}
		if (pos < cap)
			line[pos++] = '}';
	} else {
		pos = (size_t)snprintf(line, cap, "%s %-5s %s", ts, level_names[level], msg);
		for (size_t i = 0; i < nfields && pos + 2 < cap; i++) {
			pos += (size_t)snprintf(line + pos, cap - pos, " %s=", fields[i].key);
			if (pos < cap)
				pos = text_value(line, pos, cap, fields[i].value);
		}
	}
	if (pos > cap)
		pos = cap;
	line[pos++] = '\n';
	fwrite(line, 1, pos, stderr);
}

void log_redact_url(const char *url, char *buf, size_t n)
{
	const char *scheme = strstr(url, "://");
	const char *at = scheme ? strchr(scheme + 3, '@') : NULL;
	const char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
	if (!at || (slash && slash < at)) {
		snprintf(buf, n, "%s", url);
		return;
	}
	snprintf(buf, n, "%.*s***%s", (int)(scheme + 3 - url), url, at);
}
