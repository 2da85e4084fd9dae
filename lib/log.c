#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "clock.h"

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

	int64_t now_us = clock_realtime_us();
	time_t now = (time_t)(now_us / 1000000);
	struct tm tm;
	gmtime_r(&now, &tm);
	char ts[40];
	size_t tl = strftime(ts, sizeof(ts), "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(ts + tl, sizeof(ts) - tl, ".%03dZ", (int)(now_us % 1000000 / 1000));

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

/* A bounded writer for log_redact_url: what does not fit is cut, and buf is
 * always NUL-terminated. */
struct redact_out {
	char *buf;
	size_t n, pos;
};

static void put(struct redact_out *o, const char *s, size_t len)
{
	for (size_t i = 0; i < len && o->pos + 1 < o->n; i++)
		o->buf[o->pos++] = s[i];
	if (o->n)
		o->buf[o->pos] = '\0';
}

/* A URI: the userinfo and every query value become ***. */
static void redact_uri(struct redact_out *o, const char *url, const char *authority)
{
	size_t alen = strcspn(authority, "/?#");
	const char *at = NULL;
	for (const char *c = authority; c < authority + alen; c++) {
		if (*c == '@')
			at = c;
	}
	if (at) {
		put(o, url, (size_t)(authority - url));
		put(o, "***", 3);
		url = at;
	}
	const char *q = authority + alen + strcspn(authority + alen, "?#");
	put(o, url, (size_t)(q - url));
	if (*q != '?') {
		put(o, q, strlen(q));
		return;
	}
	put(o, "?", 1);
	for (const char *p = q + 1;;) {
		size_t plen = strcspn(p, "&#");
		const char *eq = memchr(p, '=', plen);
		put(o, p, eq ? (size_t)(eq - p) : plen);
		if (eq)
			put(o, "=***", 4);
		p += plen;
		if (*p != '&') {
			put(o, p, strlen(p));
			return;
		}
		put(o, "&", 1);
		p++;
	}
}

/* A key=value connection string (libpq's syntax): the values of password
 * and sslpassword become ***; anything it cannot read is cut off as ***. */
static void redact_conninfo(struct redact_out *o, const char *s)
{
	static const char space[] = " \t\n\r\f\v";
	for (;;) {
		size_t n = strspn(s, space);
		put(o, s, n);
		s += n;
		if (*s == '\0')
			return;
		size_t klen = strcspn(s, "= \t\n\r\f\v");
		bool secret = (klen == 8 && strncmp(s, "password", 8) == 0) ||
			      (klen == 11 && strncmp(s, "sslpassword", 11) == 0);
		const char *v = s + klen + strspn(s + klen, space);
		if (klen == 0 || *v != '=') {
			put(o, "***", 3);
			return;
		}
		v++;
		v += strspn(v, space);
		put(o, s, (size_t)(v - s));
		const char *end = v;
		if (*end == '\'') {
			for (end++; *end && *end != '\''; end++) {
				if (*end == '\\' && end[1])
					end++;
			}
			if (*end != '\'') {
				put(o, "***", 3);
				return;
			}
			end++;
		} else {
			while (*end && !strchr(space, *end)) {
				if (*end == '\\' && end[1])
					end++;
				end++;
			}
		}
		if (secret)
			put(o, "***", 3);
		else
			put(o, v, (size_t)(end - v));
		s = end;
	}
}

void log_redact_url(const char *url, char *buf, size_t n)
{
	struct redact_out o = {buf, n, 0};
	put(&o, "", 0);
	size_t slen =
	    strspn(url, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+.-");
	if (slen > 0 && strncmp(url + slen, "://", 3) == 0)
		redact_uri(&o, url, url + slen + 3);
	else
		redact_conninfo(&o, url);
}
