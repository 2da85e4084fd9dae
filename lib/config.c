/* config: the INI file (docs/operating.md, "Configuration reference") parsed
 * with inih and validated.
 *
 * inih does the "key = value" splitting, whitespace stripping and inline ";" comments.
 * It is fed through our own reader (ini_parse_stream) over the file read into memory,
 * which gives us what inih does not: the line number of every key (Debian's libinih is
 * built without INI_HANDLER_LINENO), every section header even when it has no keys, and
 * a clear error for a NUL byte or a line longer than inih's buffer (inih would silently
 * truncate the value and parse the rest of the line as a new line).
 *
 * Values: "${NAME}" anywhere in a value expands to the environment variable NAME
 * (letters, digits, "_"); an unset NAME is an error, so a missing secret never becomes
 * an empty one. A literal "${" is written "$${"; any other "$" is literal. The result
 * is not expanded again. An unterminated "${" is an error.
 *
 * Durations are an integer and a unit: 250ms, 5s, 2m, 1h (at most 168h). Lists are
 * separated by commas and/or spaces. Unknown sections and keys, duplicate keys and
 * sections, and bad values are errors reported as "FILE:LINE: message"; an error that
 * belongs to no line reads "FILE: [section]: message". */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <ini.h>
#include <libpq-fe.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define CONFIG_MAX_FILE	       (1024 * 1024)
#define CONFIG_MAX_SECRET      (64 * 1024)
#define CONFIG_MAX_DURATION_MS (168ULL * 3600 * 1000)
#define CONFIG_MAX_NAME	       64
#define CONFIG_MAX_KEYS	       10

enum section {
	SEC_NONE,
	SEC_DATABASE,
	SEC_DISPATCHER,
	SEC_ADMIN,
	SEC_LOG,
	SEC_ENDPOINT,
	SEC_COUNT
};

enum key_type {
	KT_STRING,	/* any string */
	KT_NONEMPTY,	/* a non-empty string */
	KT_CONNINFO,	/* "" or a libpq URI / key=value string */
	KT_HTTP_URL,	/* http:// or https:// with a host */
	KT_ADDRESS,	/* "" or HOST:PORT */
	KT_DURATION,	/* uint64_t ms >= min */
	KT_UINT,	/* unsigned in min..max */
	KT_EVENTS,	/* the endpoint's non-empty pattern list */
	KT_LEVEL,	/* enum log_level */
	KT_FORMAT,	/* enum log_format */
	KT_SECRET,	/* the endpoint's secret, inline */
	KT_SECRET_FILE, /* the endpoint's secret, read from a file */
	KT_FILE,	/* "" or a readable file */
};

struct key_spec {
	const char *name;
	enum key_type type;
	size_t offset; /* into struct config or struct endpoint_config */
	uint64_t min, max;
};

#define CFG(f) offsetof(struct config, f)
#define EP(f)  offsetof(struct endpoint_config, f)

static const struct key_spec database_keys[] = {
    {"url", KT_CONNINFO, CFG(database_url), 0, 0},
    {"listen_url", KT_CONNINFO, CFG(listen_url), 0, 0},
    {NULL, KT_STRING, 0, 0, 0},
};

enum { DISPATCHER_LEASE = 2 };
static const struct key_spec dispatcher_keys[] = {
    {"source", KT_NONEMPTY, CFG(source), 0, 0},
    {"sweep_interval", KT_DURATION, CFG(sweep_interval_ms), 1, 0},
    [DISPATCHER_LEASE] = {"lease", KT_DURATION, CFG(lease_ms), 1, 0},
    {"batch_size", KT_UINT, CFG(batch_size), 1, 10000},
    {"max_in_flight", KT_UINT, CFG(max_in_flight), 1, 10000},
    {"max_event_bytes", KT_UINT, CFG(max_event_bytes), 1024, 256u << 20},
    {"shutdown_timeout", KT_DURATION, CFG(shutdown_timeout_ms), 0, 0},
    {NULL, KT_STRING, 0, 0, 0},
};

static const struct key_spec admin_keys[] = {
    {"listen", KT_ADDRESS, CFG(admin_listen), 0, 0},
    {NULL, KT_STRING, 0, 0, 0},
};

static const struct key_spec log_keys[] = {
    {"level", KT_LEVEL, CFG(log_level), 0, 0},
    {"format", KT_FORMAT, CFG(log_format), 0, 0},
    {NULL, KT_STRING, 0, 0, 0},
};

/* The order matters: KEY_URL and KEY_EVENTS are required, KEY_TIMEOUT is in the lease check. */
enum { KEY_URL, KEY_EVENTS, KEY_PREFIX, KEY_SECRET, KEY_SECRET_FILE, KEY_CA_FILE, KEY_TIMEOUT };
static const struct key_spec endpoint_keys[] = {
    [KEY_URL] = {"url", KT_HTTP_URL, EP(url), 0, 0},
    [KEY_EVENTS] = {"events", KT_EVENTS, EP(events), 0, 0},
    [KEY_PREFIX] = {"prefix", KT_STRING, EP(prefix), 0, 0},
    [KEY_SECRET] = {"secret", KT_SECRET, EP(secret), 0, 0},
    [KEY_SECRET_FILE] = {"secret_file", KT_SECRET_FILE, EP(secret), 0, 0},
    [KEY_CA_FILE] = {"ca_file", KT_FILE, EP(ca_file), 0, 0},
    [KEY_TIMEOUT] = {"timeout", KT_DURATION, EP(timeout_ms), 1, 0},
    {"max_retries", KT_UINT, EP(max_retries), 0, 100},
    {"backoff_max", KT_DURATION, EP(backoff_max_ms), 1, 0},
    {NULL, KT_STRING, 0, 0, 0},
};
_Static_assert(sizeof(endpoint_keys) / sizeof(endpoint_keys[0]) <= CONFIG_MAX_KEYS + 1,
	       "CONFIG_MAX_KEYS too small");

static const struct {
	const char *name;
	const struct key_spec *keys;
} sections[SEC_COUNT] = {
    [SEC_NONE] = {"", NULL},
    [SEC_DATABASE] = {"database", database_keys},
    [SEC_DISPATCHER] = {"dispatcher", dispatcher_keys},
    [SEC_ADMIN] = {"admin", admin_keys},
    [SEC_LOG] = {"log", log_keys},
    [SEC_ENDPOINT] = {"endpoint", endpoint_keys},
};

/* Per-endpoint parse state, parallel to cfg->endpoints. */
struct endpoint_state {
	int line;		   /* of the [endpoint "NAME"] header */
	int seen[CONFIG_MAX_KEYS]; /* line of each key, 0 = not set */
};

struct parser {
	const char *path;
	char *err;
	size_t errlen;
	bool failed;
	struct config *cfg;

	/* The reader: the file in memory and the line inih is working on. */
	const char *buf;
	size_t len, pos;
	int lineno;
	const char *line; /* current line, without its terminator */
	size_t line_len;

	/* The current section and what has been seen. */
	enum section sec;
	char where[CONFIG_MAX_NAME + 16]; /* "[database]" or "[endpoint \"NAME\"]" */
	int sec_line[SEC_COUNT];
	int seen[SEC_COUNT][CONFIG_MAX_KEYS];
	struct endpoint_state *eps;
};

static void fail(struct parser *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Record the first error as "FILE:LINE: message" (or "FILE: message" when line is 0). */
static void fail(struct parser *p, int line, const char *fmt, ...)
{
	if (p->failed)
		return;
	p->failed = true;
	if (p->errlen == 0)
		return;
	int n = line > 0 ? snprintf(p->err, p->errlen, "%s:%d: ", p->path, line)
			 : snprintf(p->err, p->errlen, "%s: ", p->path);
	if (n < 0 || (size_t)n >= p->errlen)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(p->err + n, p->errlen - (size_t)n, fmt, ap);
	va_end(ap);
}

static void free_secret(char *s)
{
	if (s) {
		explicit_bzero(s, strlen(s));
		free(s);
	}
}

/* Read fd to EOF into a NUL-terminated buffer; -1 with errno (EFBIG over max bytes). */
static int read_all(int fd, size_t max, char **out, size_t *outlen)
{
	size_t cap = 4096, len = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -1;
	for (;;) {
		if (cap - len < 2) {
			char *nbuf = malloc(cap * 2);
			if (!nbuf)
				goto fail;
			memcpy(nbuf, buf, len);
			explicit_bzero(buf, len);
			free(buf);
			buf = nbuf;
			cap *= 2;
		}
		ssize_t n = read(fd, buf + len, cap - len - 1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto fail;
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			errno = EFBIG;
			goto fail;
		}
	}
	buf[len] = '\0';
	*out = buf;
	*outlen = len;
	return 0;
fail:;
	int e = errno;
	explicit_bzero(buf, len);
	free(buf);
	errno = e;
	return -1;
}

/* Read a whole file; -1 with errno. */
static int read_file(const char *path, size_t max, char **out, size_t *outlen)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	int rc = read_all(fd, max, out, outlen);
	int e = errno;
	close(fd);
	errno = e;
	return rc;
}

/* Write ms as the largest unit that divides it exactly: 30000 -> "30s". */
static const char *fmt_duration(uint64_t ms, char *buf, size_t n)
{
	if (ms != 0 && ms % 3600000 == 0)
		snprintf(buf, n, "%lluh", (unsigned long long)(ms / 3600000));
	else if (ms != 0 && ms % 60000 == 0)
		snprintf(buf, n, "%llum", (unsigned long long)(ms / 60000));
	else if (ms % 1000 == 0)
		snprintf(buf, n, "%llus", (unsigned long long)(ms / 1000));
	else
		snprintf(buf, n, "%llums", (unsigned long long)ms);
	return buf;
}

/* ---- values ---------------------------------------------------------------------------- */

struct strbuf {
	char *s;
	size_t len, cap;
};

static bool sb_append(struct strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *ns = malloc(cap);
		if (!ns)
			return false;
		if (b->s) {
			memcpy(ns, b->s, b->len);
			explicit_bzero(b->s, b->len);
			free(b->s);
		}
		b->s = ns;
		b->cap = cap;
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
	return true;
}

/* Expand ${NAME} in value (see the comment at the top). Returns a new string or NULL
 * after fail(). */
static char *expand(struct parser *p, const char *key, const char *value)
{
	struct strbuf b = {NULL, 0, 0};
	const char *s = value;
	bool ok = sb_append(&b, "", 0);
	while (ok && *s) {
		if (s[0] == '$' && s[1] == '$' && s[2] == '{') {
			ok = sb_append(&b, "${", 2);
			s += 3;
			continue;
		}
		if (s[0] != '$' || s[1] != '{') {
			size_t n = strcspn(s + 1, "$") + 1;
			ok = sb_append(&b, s, n);
			s += n;
			continue;
		}
		const char *name = s + 2, *end = strchr(name, '}');
		if (!end) {
			fail(p, p->lineno,
			     "%s %s: unterminated \"${\" (write \"$${\" for a literal \"${\")",
			     p->where, key);
			goto fail;
		}
		size_t n = (size_t)(end - name);
		bool valid = n > 0 && !isdigit((unsigned char)name[0]);
		for (size_t i = 0; i < n; i++)
			valid = valid && (isalnum((unsigned char)name[i]) || name[i] == '_');
		if (!valid) {
			fail(p, p->lineno,
			     "%s %s: bad variable name \"${%.*s}\" (letters, digits and _; "
			     "write \"$${\" for a literal \"${\")",
			     p->where, key, (int)n, name);
			goto fail;
		}
		char vname[256];
		if (n >= sizeof(vname)) {
			fail(p, p->lineno, "%s %s: variable name too long", p->where, key);
			goto fail;
		}
		memcpy(vname, name, n);
		vname[n] = '\0';
		const char *env = getenv(vname);
		if (!env) {
			fail(p, p->lineno, "%s %s: environment variable %s is not set", p->where,
			     key, vname);
			goto fail;
		}
		ok = sb_append(&b, env, strlen(env));
		s = end + 1;
	}
	if (ok)
		return b.s;
	fail(p, 0, "out of memory");
fail:
	free_secret(b.s);
	return NULL;
}

/* Parse "<digits><unit>" into milliseconds. Returns NULL or the reason it is bad. */
static const char *parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ms;
	} units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000}};
	if (!isdigit((unsigned char)s[0]))
		return "bad";
	errno = 0;
	char *end;
	unsigned long long n = strtoull(s, &end, 10);
	bool overflow = errno == ERANGE;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit) != 0)
			continue;
		if (overflow || n > CONFIG_MAX_DURATION_MS / units[i].ms)
			return "too large";
		*out = (uint64_t)n * units[i].ms;
		return NULL;
	}
	return "bad";
}

/* Parse a decimal unsigned integer in min..max. Returns NULL or the reason it is bad. */
static const char *parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out)
{
	if (s[0] == '-')
		return "negative numbers are not allowed";
	if (!isdigit((unsigned char)s[0]))
		return "not a number";
	errno = 0;
	char *end;
	unsigned long long n = strtoull(s, &end, 10);
	if (*end != '\0')
		return "not a number";
	if (errno == ERANGE || n < min || n > max)
		return "out of range";
	*out = n;
	return NULL;
}

/* Check a port "1".."65535" of length n. */
static bool valid_port(const char *s, size_t n)
{
	if (n == 0 || n > 5)
		return false;
	unsigned long port = 0;
	for (size_t i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		port = port * 10 + (unsigned long)(s[i] - '0');
	}
	return port >= 1 && port <= 65535;
}

/* Check "HOST:PORT" or "[V6]:PORT" of length n. */
static bool valid_hostport(const char *s, size_t n, bool port_required)
{
	const char *end = s + n, *colon;
	if (n > 0 && s[0] == '[') {
		const char *close = memchr(s, ']', n);
		if (!close || close == s + 1)
			return false;
		if (close + 1 == end)
			return !port_required;
		if (close[1] != ':')
			return false;
		colon = close + 1;
	} else {
		colon = memchr(s, ':', n);
		if (colon == s || n == 0)
			return false;
		if (!colon)
			return !port_required;
		if (memchr(colon + 1, ':', (size_t)(end - colon - 1)))
			return false;
	}
	return valid_port(colon + 1, (size_t)(end - colon - 1));
}

/* Returns NULL or why url is not an http(s) URL with a host. */
static const char *check_http_url(const char *url)
{
	size_t skip;
	if (strncasecmp(url, "http://", 7) == 0)
		skip = 7;
	else if (strncasecmp(url, "https://", 8) == 0)
		skip = 8;
	else
		return "must start with http:// or https://";
	for (const char *c = url; *c; c++) {
		if ((unsigned char)*c <= ' ' || *c == 0x7f)
			return "must not contain spaces or control characters";
	}
	const char *host = url + skip;
	size_t n = strcspn(host, "/?#");
	for (const char *at = memchr(host, '@', n); at; at = memchr(host, '@', n)) {
		n -= (size_t)(at + 1 - host);
		host = at + 1;
	}
	if (n == 0 || host[0] == ':')
		return "has no host";
	if (!valid_hostport(host, n, false))
		return "has a bad host or port";
	return NULL;
}

/* ---- keys ------------------------------------------------------------------------------ */

static bool set_string(char **field, char *value)
{
	free_secret(*field);
	*field = value;
	return true;
}

static bool set_events(struct parser *p, const char *key, struct endpoint_config *ep, char *value)
{
	static const char seps[] = ", \t";
	size_t n = 0;
	for (const char *s = value + strspn(value, seps); *s; s += strspn(s, seps)) {
		n++;
		s += strcspn(s, seps);
	}
	if (n == 0) {
		fail(p, p->lineno, "%s %s: empty list (at least one event pattern is required)",
		     p->where, key);
		free(value);
		return false;
	}
	ep->events = calloc(n, sizeof(*ep->events));
	if (!ep->events) {
		free(value);
		fail(p, 0, "out of memory");
		return false;
	}
	for (const char *s = value + strspn(value, seps); *s; s += strspn(s, seps)) {
		size_t len = strcspn(s, seps);
		ep->events[ep->nevents] = strndup(s, len);
		if (!ep->events[ep->nevents]) {
			free(value);
			fail(p, 0, "out of memory");
			return false;
		}
		ep->nevents++;
		s += len;
	}
	free(value);
	return true;
}

static bool set_secret_file(struct parser *p, const char *key, char **field, char *path)
{
	if (*path == '\0') {
		fail(p, p->lineno, "%s %s: empty path", p->where, key);
		free(path);
		return false;
	}
	char *buf;
	size_t len;
	if (read_file(path, CONFIG_MAX_SECRET, &buf, &len) < 0) {
		fail(p, p->lineno, "%s %s: cannot read \"%s\": %s", p->where, key, path,
		     strerror(errno));
		free(path);
		return false;
	}
	free(path);
	if (memchr(buf, '\0', len)) {
		fail(p, p->lineno, "%s %s: the file contains a NUL byte", p->where, key);
		goto fail;
	}
	/* Strip one trailing newline, "\n" or "\r\n". */
	if (len > 0 && buf[len - 1] == '\n') {
		buf[--len] = '\0';
		if (len > 0 && buf[len - 1] == '\r')
			buf[--len] = '\0';
	}
	if (len == 0) {
		fail(p, p->lineno, "%s %s: the file is empty", p->where, key);
		goto fail;
	}
	return set_string(field, buf);
fail:
	explicit_bzero(buf, len);
	free(buf);
	return false;
}

/* Check and store one expanded value (value is owned and consumed). */
static bool set_value(struct parser *p, const struct key_spec *k, void *base, const char *raw,
		      char *value)
{
	char *field = (char *)base + k->offset;
	const char *why;
	uint64_t n;
	char a[32], b[32];

	switch (k->type) {
	case KT_STRING:
		return set_string((char **)field, value);
	case KT_NONEMPTY:
		if (*value == '\0') {
			fail(p, p->lineno, "%s %s: must not be empty", p->where, k->name);
			break;
		}
		return set_string((char **)field, value);
	case KT_CONNINFO:
		if (*value != '\0') {
			char *errmsg = NULL;
			PQconninfoOption *opts = PQconninfoParse(value, &errmsg);
			PQfreemem(errmsg);
			if (!opts) {
				/* libpq's message may quote a password: not shown. */
				fail(p, p->lineno,
				     "%s %s: not a valid libpq connection URI or key=value string",
				     p->where, k->name);
				break;
			}
			PQconninfoFree(opts);
		}
		return set_string((char **)field, value);
	case KT_HTTP_URL:
		why = *value == '\0' ? "must not be empty" : check_http_url(value);
		if (why) {
			/* The URL is not shown: webhook URLs often carry a token. */
			fail(p, p->lineno, "%s %s: %s", p->where, k->name, why);
			break;
		}
		return set_string((char **)field, value);
	case KT_ADDRESS:
		if (*value != '\0' && !valid_hostport(value, strlen(value), true)) {
			fail(p, p->lineno,
			     "%s %s: bad address \"%s\" (use HOST:PORT such as 127.0.0.1:9464, or "
			     "empty for off)",
			     p->where, k->name, value);
			break;
		}
		return set_string((char **)field, value);
	case KT_DURATION:
		why = parse_duration(value, &n);
		if (why && strcmp(why, "bad") == 0) {
			fail(p, p->lineno, "%s %s: bad duration \"%s\" (use 250ms, 5s, 2m or 1h)",
			     p->where, k->name, value);
		} else if (why) {
			fail(p, p->lineno, "%s %s: duration \"%s\" is too large (at most %s)",
			     p->where, k->name, value,
			     fmt_duration(CONFIG_MAX_DURATION_MS, a, sizeof(a)));
		} else if (n < k->min) {
			fail(p, p->lineno, "%s %s: must be greater than 0", p->where, k->name);
		} else {
			*(uint64_t *)(void *)field = n;
		}
		break;
	case KT_UINT:
		why = parse_uint(value, k->min, k->max, &n);
		if (why) {
			snprintf(a, sizeof(a), "%llu", (unsigned long long)k->min);
			snprintf(b, sizeof(b), "%llu", (unsigned long long)k->max);
			fail(p, p->lineno, "%s %s: \"%s\": %s (%s..%s)", p->where, k->name, value,
			     why, a, b);
		} else {
			*(unsigned *)(void *)field = (unsigned)n;
		}
		break;
	case KT_EVENTS:
		return set_events(p, k->name, base, value);
	case KT_LEVEL:
		if (!log_level_parse(value, (enum log_level *)(void *)field))
			fail(p, p->lineno,
			     "%s %s: bad level \"%s\" (use debug, info, warn or error)", p->where,
			     k->name, value);
		break;
	case KT_FORMAT:
		if (!log_format_parse(value, (enum log_format *)(void *)field))
			fail(p, p->lineno, "%s %s: bad format \"%s\" (use json or text)", p->where,
			     k->name, value);
		break;
	case KT_SECRET:
		if (*raw != '\0' && *value == '\0') {
			fail(p, p->lineno,
			     "%s %s: expands to an empty string (leave secret out for unsigned "
			     "deliveries)",
			     p->where, k->name);
			break;
		}
		return set_string((char **)field, value);
	case KT_SECRET_FILE:
		return set_secret_file(p, k->name, (char **)field, value);
	case KT_FILE:
		if (*value != '\0' && access(value, R_OK) != 0) {
			fail(p, p->lineno, "%s %s: cannot read \"%s\": %s", p->where, k->name,
			     value, strerror(errno));
			break;
		}
		return set_string((char **)field, value);
	}
	free_secret(value);
	return !p->failed;
}

/* Is the separator on the current line "=" (inih also takes "key: value")? */
static bool line_uses_equals(const struct parser *p)
{
	for (size_t i = 0; i < p->line_len; i++) {
		if (p->line[i] == '=')
			return true;
		if (p->line[i] == ':')
			return false;
	}
	return false;
}

static int handler_cb(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;
	(void)section; /* p->sec, from our own reading of the header, is authoritative */
	if (p->failed)
		return 0;
	if (!value || !line_uses_equals(p)) {
		fail(p, p->lineno, "expected \"key = value\", a [section] header or a comment");
		return 0;
	}
	if (*name == '\0') {
		fail(p, p->lineno, "missing key name before \"=\"");
		return 0;
	}
	if (p->sec == SEC_NONE) {
		fail(p, p->lineno,
		     "key \"%s\" outside a section (put it under [database], [dispatcher], "
		     "[admin], [log] or [endpoint \"NAME\"])",
		     name);
		return 0;
	}
	const struct key_spec *keys = sections[p->sec].keys;
	size_t i = 0;
	while (keys[i].name && strcmp(keys[i].name, name) != 0)
		i++;
	if (!keys[i].name) {
		fail(p, p->lineno, "%s unknown key \"%s\"", p->where, name);
		return 0;
	}
	void *base = p->cfg;
	int *seen = p->seen[p->sec];
	if (p->sec == SEC_ENDPOINT) {
		base = &p->cfg->endpoints[p->cfg->nendpoints - 1];
		seen = p->eps[p->cfg->nendpoints - 1].seen;
	}
	if (seen[i]) {
		fail(p, p->lineno, "%s %s: duplicate key (first set at line %d)", p->where, name,
		     seen[i]);
		return 0;
	}
	if (p->sec == SEC_ENDPOINT && (i == KEY_SECRET || i == KEY_SECRET_FILE)) {
		size_t other = i == KEY_SECRET ? KEY_SECRET_FILE : KEY_SECRET;
		if (seen[other]) {
			fail(p, p->lineno,
			     "%s %s: secret and secret_file are mutually exclusive (%s set at line "
			     "%d)",
			     p->where, name, endpoint_keys[other].name, seen[other]);
			return 0;
		}
	}
	seen[i] = p->lineno;
	char *expanded = expand(p, name, value);
	if (!expanded)
		return 0;
	return set_value(p, &keys[i], base, value, expanded) ? 1 : 0;
}

/* ---- sections -------------------------------------------------------------------------- */

static bool is_space(char c)
{
	return isspace((unsigned char)c) != 0;
}

static bool add_endpoint(struct parser *p, const char *name, size_t n)
{
	struct config *cfg = p->cfg;
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		if (strlen(cfg->endpoints[i].name) == n &&
		    memcmp(cfg->endpoints[i].name, name, n) == 0) {
			fail(p, p->lineno, "duplicate endpoint \"%.*s\" (first at line %d)", (int)n,
			     name, p->eps[i].line);
			return false;
		}
	}
	struct endpoint_config *eps = realloc(cfg->endpoints, (cfg->nendpoints + 1) * sizeof(*eps));
	if (!eps)
		goto oom;
	cfg->endpoints = eps;
	struct endpoint_state *st = realloc(p->eps, (cfg->nendpoints + 1) * sizeof(*st));
	if (!st)
		goto oom;
	p->eps = st;
	memset(&st[cfg->nendpoints], 0, sizeof(*st));
	st[cfg->nendpoints].line = p->lineno;
	struct endpoint_config *ep = &eps[cfg->nendpoints++];
	memset(ep, 0, sizeof(*ep));
	ep->timeout_ms = 5000;
	ep->max_retries = 5;
	ep->backoff_max_ms = 300000;
	ep->name = strndup(name, n);
	ep->prefix = strdup("");
	ep->secret = strdup("");
	ep->ca_file = strdup("");
	if (!ep->name || !ep->prefix || !ep->secret || !ep->ca_file)
		goto oom;
	snprintf(p->where, sizeof(p->where), "[endpoint \"%s\"]", ep->name);
	p->sec = SEC_ENDPOINT;
	return true;
oom:
	fail(p, 0, "out of memory");
	return false;
}

/* [endpoint "NAME"]: s..end is what follows the word "endpoint", trimmed. */
static bool endpoint_header(struct parser *p, const char *s, const char *end)
{
	size_t n = (size_t)(end - s);
	if (n == 0) {
		fail(p, p->lineno, "endpoint without a name (write [endpoint \"NAME\"])");
		return false;
	}
	if (n < 2 || s[0] != '"' || end[-1] != '"' || memchr(s + 1, '"', n - 2)) {
		fail(p, p->lineno, "endpoint name must be in double quotes: [endpoint \"NAME\"]");
		return false;
	}
	s++;
	n -= 2;
	if (n == 0) {
		fail(p, p->lineno, "empty endpoint name (write [endpoint \"NAME\"])");
		return false;
	}
	for (size_t i = 0; i < n; i++) {
		if (!isalnum((unsigned char)s[i]) && !strchr("_.-", s[i])) {
			fail(p, p->lineno,
			     "bad endpoint name \"%.*s\" (letters, digits, \"_\", \".\" and \"-\")",
			     (int)n, s);
			return false;
		}
	}
	if (n > CONFIG_MAX_NAME) {
		fail(p, p->lineno, "endpoint name longer than %d characters", CONFIG_MAX_NAME);
		return false;
	}
	return add_endpoint(p, s, n);
}

/* A "[...]" line: s points at "[", end at the end of the line. */
static bool section_header(struct parser *p, const char *s, const char *end)
{
	const char *close = s + 1;
	bool quoted = false;
	while (close < end && (quoted || *close != ']')) {
		quoted = *close == '"' ? !quoted : quoted;
		close++;
	}
	if (close == end) {
		fail(p, p->lineno, "unterminated section header (missing \"]\")");
		return false;
	}
	const char *rest = close + 1;
	while (rest < end && is_space(*rest))
		rest++;
	if (rest < end && *rest != ';' && *rest != '#') {
		fail(p, p->lineno, "unexpected text after the section header");
		return false;
	}
	const char *in = s + 1, *in_end = close;
	while (in < in_end && is_space(*in))
		in++;
	while (in_end > in && is_space(in_end[-1]))
		in_end--;
	size_t n = (size_t)(in_end - in);
	if (n >= 8 && memcmp(in, "endpoint", 8) == 0 &&
	    (n == 8 || is_space(in[8]) || in[8] == '"')) {
		in += 8;
		while (in < in_end && is_space(*in))
			in++;
		return endpoint_header(p, in, in_end);
	}
	for (int sec = SEC_DATABASE; sec < SEC_ENDPOINT; sec++) {
		if (strlen(sections[sec].name) != n || memcmp(sections[sec].name, in, n) != 0)
			continue;
		if (p->sec_line[sec]) {
			fail(p, p->lineno, "duplicate section [%s] (first at line %d)",
			     sections[sec].name, p->sec_line[sec]);
			return false;
		}
		p->sec_line[sec] = p->lineno;
		p->sec = (enum section)sec;
		snprintf(p->where, sizeof(p->where), "[%s]", sections[sec].name);
		return true;
	}
	fail(p, p->lineno,
	     "unknown section [%.*s] (use [database], [dispatcher], [admin], [log] or "
	     "[endpoint \"NAME\"])",
	     (int)n, in);
	return false;
}

/* Our own look at each line before inih's: section headers (inih reports only those
 * that have keys), NUL bytes and overlong lines (which inih silently truncates). */
static char *reader_cb(char *str, int num, void *stream)
{
	struct parser *p = stream;
	if (p->failed || p->pos >= p->len)
		return NULL;
	const char *start = p->buf + p->pos;
	const char *nl = memchr(start, '\n', p->len - p->pos);
	size_t n = nl ? (size_t)(nl - start) + 1 : p->len - p->pos;
	size_t content = n;
	if (content > 0 && start[content - 1] == '\n')
		content--;
	if (content > 0 && start[content - 1] == '\r')
		content--;
	p->pos += n;
	p->lineno++;
	p->line = start;
	p->line_len = content;
	if (p->lineno == 1 && content >= 3 && memcmp(start, "\xef\xbb\xbf", 3) == 0) {
		p->line += 3;
		p->line_len -= 3;
	}
	if (memchr(start, '\0', n)) {
		fail(p, p->lineno, "NUL byte in the file (not a text file?)");
		return NULL;
	}
	if (num < 4 || content > (size_t)num - 3) {
		fail(p, p->lineno, "line too long (%zu characters; inih reads at most %d)", content,
		     num < 4 ? 0 : num - 3);
		return NULL;
	}
	memcpy(str, start, n);
	str[n] = '\0';

	const char *s = p->line, *end = p->line + p->line_len;
	while (s < end && is_space(*s))
		s++;
	if (s < end && *s == '[' && !section_header(p, s, end))
		return NULL;
	return str;
}

/* ---- load ------------------------------------------------------------------------------ */

static struct config *config_new(const char *path)
{
	struct config *cfg = calloc(1, sizeof(*cfg));
	if (!cfg)
		return NULL;
	cfg->path = strdup(path);
	cfg->database_url = strdup("");
	cfg->listen_url = strdup("");
	cfg->source = strdup("/s3-orchestrator");
	cfg->admin_listen = strdup("127.0.0.1:9464");
	cfg->sweep_interval_ms = 5000;
	cfg->lease_ms = 30000;
	cfg->shutdown_timeout_ms = 10000;
	cfg->batch_size = 200;
	cfg->max_in_flight = 256;
	cfg->max_event_bytes = 4u << 20;
	cfg->log_level = LOGL_INFO;
	cfg->log_format = LOG_JSON;
	if (!cfg->path || !cfg->database_url || !cfg->listen_url || !cfg->source ||
	    !cfg->admin_listen) {
		config_free(cfg);
		return NULL;
	}
	return cfg;
}

/* Checks that need the whole file: required keys, at least one endpoint, the lease. */
static void validate(struct parser *p)
{
	struct config *cfg = p->cfg;
	if (cfg->nendpoints == 0) {
		fail(p, 0, "no [endpoint \"NAME\"] section (at least one is required)");
		return;
	}
	size_t longest = 0;
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		const int *seen = p->eps[i].seen;
		if (!seen[KEY_URL] || !seen[KEY_EVENTS]) {
			fail(p, 0, "[endpoint \"%s\"]: missing required key %s",
			     cfg->endpoints[i].name, !seen[KEY_URL] ? "url" : "events");
			return;
		}
		if (cfg->endpoints[i].timeout_ms > cfg->endpoints[longest].timeout_ms)
			longest = i;
	}
	const struct endpoint_config *ep = &cfg->endpoints[longest];
	if (cfg->lease_ms < 2 * ep->timeout_ms) {
		char a[32], b[32];
		int line = p->seen[SEC_DISPATCHER][DISPATCHER_LEASE];
		fmt_duration(cfg->lease_ms, a, sizeof(a));
		fmt_duration(ep->timeout_ms, b, sizeof(b));
		if (line)
			fail(p, line,
			     "[dispatcher] lease: %s is shorter than 2 x the longest endpoint "
			     "timeout (%s in [endpoint \"%s\"])",
			     a, b, ep->name);
		else
			fail(p, 0,
			     "[dispatcher]: lease %s (the default) is shorter than 2 x the longest "
			     "endpoint timeout (%s in [endpoint \"%s\"]); set lease",
			     a, b, ep->name);
	}
}

static void parse(struct parser *p)
{
	/* Debian's libinih exposes its compile-time options as globals: pin the ones the
	 * reader above relies on, and put them back (config is inih's only user). */
	bool multiline = ini_allow_multiline, inline_comments = ini_allow_inline_comments;
	bool no_value = ini_allow_no_value, stop_first = ini_stop_on_first_error;
	bool bom = ini_allow_bom;
	ini_allow_multiline = false; /* an indented line is a line, not a continuation */
	ini_allow_inline_comments = true;
	ini_allow_no_value = false;
	ini_stop_on_first_error = true;
	ini_allow_bom = true;
	int rc = ini_parse_stream(reader_cb, p, handler_cb, p);
	ini_allow_multiline = multiline;
	ini_allow_inline_comments = inline_comments;
	ini_allow_no_value = no_value;
	ini_stop_on_first_error = stop_first;
	ini_allow_bom = bom;

	if (!p->failed && rc == -2)
		fail(p, 0, "out of memory");
	else if (!p->failed && rc != 0)
		fail(p, rc, "expected \"key = value\", a [section] header or a comment");
	if (!p->failed)
		validate(p);
}

struct config *config_load(const char *path, char *err, size_t errlen)
{
	struct parser p;
	memset(&p, 0, sizeof(p));
	p.path = path;
	p.err = err;
	p.errlen = errlen;
	if (errlen > 0)
		err[0] = '\0';

	char *buf = NULL;
	size_t len = 0;
	if (read_file(path, CONFIG_MAX_FILE, &buf, &len) < 0) {
		fail(&p, 0, "cannot open: %s", strerror(errno));
		return NULL;
	}
	p.cfg = config_new(path);
	p.buf = buf;
	p.len = len;
	if (p.cfg)
		parse(&p);
	else
		fail(&p, 0, "out of memory");
	free(p.eps);
	explicit_bzero(buf, len);
	free(buf);
	if (p.failed) {
		config_free(p.cfg);
		return NULL;
	}
	return p.cfg;
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (size_t i = 0; i < cfg->nendpoints; i++) {
		struct endpoint_config *ep = &cfg->endpoints[i];
		free(ep->name);
		free(ep->url);
		for (size_t j = 0; j < ep->nevents; j++)
			free(ep->events[j]);
		free(ep->events);
		free(ep->prefix);
		free_secret(ep->secret);
		free(ep->ca_file);
	}
	free(cfg->endpoints);
	free(cfg->path);
	free(cfg->database_url);
	free(cfg->listen_url);
	free(cfg->source);
	free(cfg->admin_listen);
	free(cfg);
}
