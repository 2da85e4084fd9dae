#include "cli.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "log.h"

const char *cli_config_path(const char *opt)
{
	if (opt)
		return opt;
	const char *env = getenv(CLI_CONFIG_ENV);
	if (env && *env)
		return env;
	return CLI_DEFAULT_CONFIG;
}

/* libpq messages end in a newline and may span lines: make them one line. */
static void one_line(char *s)
{
	size_t len = strlen(s);
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == ' '))
		s[--len] = '\0';
	for (char *p = s; *p; p++) {
		if (*p == '\n' || *p == '\t')
			*p = ' ';
	}
}

PGconn *cli_db_connect(const struct config *cfg, char *err, size_t n)
{
	/* Keywords are processed in order: the url (dbname, expanded when it is
	 * a URI or key=value string) overrides the connect_timeout before it. */
	const char *keys[4], *values[4];
	int k = 0;
	if (!getenv("PGCONNECT_TIMEOUT")) {
		keys[k] = "connect_timeout";
		values[k++] = "10";
	}
	keys[k] = "dbname";
	values[k++] = cfg->database_url;
	keys[k] = "fallback_application_name";
	values[k++] = "s3o-notify";
	keys[k] = NULL;
	values[k] = NULL;
	PGconn *conn = PQconnectdbParams(keys, values, 1);
	if (conn && PQstatus(conn) == CONNECTION_OK)
		return conn;
	char why[512];
	snprintf(why, sizeof(why), "%s", conn ? PQerrorMessage(conn) : "out of memory");
	one_line(why);
	snprintf(err, n, "cannot connect to the database (%s): check [database] url in %s%s", why,
		 cfg->path, *cfg->database_url ? "" : " (empty: the PG* environment variables)");
	PQfinish(conn);
	return NULL;
}

void cli_pg_error(const PGresult *res, const PGconn *conn, char *buf, size_t n)
{
	const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
	const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
	const char *hint = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL;
	const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
	if (!primary) {
		snprintf(buf, n, "%s", conn ? PQerrorMessage(conn) : "unknown error");
		one_line(buf);
		return;
	}
	const char *fix = NULL;
	/* A check violation's detail is the whole failing row: noise. */
	if (state && strcmp(state, "23514") == 0)
		detail = NULL;
	if (state && strcmp(state, "42P01") == 0)
		fix = "apply the migrations in sql/ in order with psql -v ON_ERROR_STOP=1 -f";
	else if (state && strcmp(state, "42501") == 0)
		fix = "grant this role the privileges listed in the headers of the sql/ files";
	size_t len = (size_t)snprintf(buf, n, "%s", primary);
	if (detail && len < n)
		len += (size_t)snprintf(buf + len, n - len, " (%s)", detail);
	if (hint && len < n)
		len += (size_t)snprintf(buf + len, n - len, "; hint: %s", hint);
	if (fix && len < n)
		snprintf(buf + len, n - len, ": %s", fix);
	one_line(buf);
}

int cli_read_fd(int fd, size_t max, char **out, size_t *len)
{
	size_t cap = 4096, used = 0;
	char *buf = malloc(cap);
	if (!buf)
		return -1;
	for (;;) {
		if (cap - used < 2) {
			if (cap > max + 1) {
				free(buf);
				errno = EFBIG;
				return -1;
			}
			char *nbuf = realloc(buf, cap * 2);
			if (!nbuf) {
				free(buf);
				errno = ENOMEM;
				return -1;
			}
			buf = nbuf;
			cap *= 2;
		}
		ssize_t r = read(fd, buf + used, cap - used - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(buf);
			errno = e;
			return -1;
		}
		if (r == 0)
			break;
		used += (size_t)r;
		if (used > max) {
			free(buf);
			errno = EFBIG;
			return -1;
		}
	}
	buf[used] = '\0';
	*out = buf;
	*len = used;
	return 0;
}

bool cli_confirm(FILE *in, FILE *out, const char *question)
{
	char line[64];
	fprintf(out, "%s [y/N] ", question);
	fflush(out);
	if (!fgets(line, sizeof(line), in))
		return false;
	line[strcspn(line, "\r\n")] = '\0';
	return strcasecmp(line, "y") == 0 || strcasecmp(line, "yes") == 0;
}

bool cli_uuid_valid(const char *s)
{
	static const int groups[] = {8, 4, 4, 4, 12};
	for (size_t g = 0; g < 5; g++) {
		for (int i = 0; i < groups[g]; i++, s++) {
			if (!isxdigit((unsigned char)*s))
				return false;
		}
		if (*s != (g < 4 ? '-' : '\0'))
			return false;
		s++;
	}
	return true;
}

void cli_format_age(double seconds, char *buf, size_t n)
{
	if (seconds < 0)
		seconds = 0;
	unsigned long long s = (unsigned long long)seconds;
	if (seconds < 1)
		snprintf(buf, n, "%dms", (int)(seconds * 1000));
	else if (seconds < 60)
		snprintf(buf, n, "%.1fs", seconds);
	else if (s < 3600)
		snprintf(buf, n, "%llum%02llus", s / 60, s % 60);
	else if (s < 86400)
		snprintf(buf, n, "%lluh%02llum", s / 3600, s / 60 % 60);
	else
		snprintf(buf, n, "%llud%02lluh", s / 86400, s / 3600 % 24);
}

static size_t discard_cb(char *ptr, size_t size, size_t nmemb, void *arg)
{
	(void)ptr;
	(void)arg;
	return size * nmemb;
}

int cli_healthcheck(const char *url, long timeout_ms, char *err, size_t n)
{
	CURL *h = curl_easy_init();
	if (!h) {
		snprintf(err, n, "cannot initialise libcurl");
		return -1;
	}
	char cerr[CURL_ERROR_SIZE] = "";
	curl_easy_setopt(h, CURLOPT_URL, url);
	curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
	curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
	curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
	CURLcode rc = curl_easy_perform(h);
	long status = 0;
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	curl_easy_cleanup(h);
	char shown[512];
	log_redact_url(url, shown, sizeof(shown));
	if (rc != CURLE_OK) {
		snprintf(err, n, "%s: %s", shown, *cerr ? cerr : curl_easy_strerror(rc));
		return -1;
	}
	if (status < 200 || status > 299) {
		snprintf(err, n, "%s: HTTP %ld", shown, status);
		return -1;
	}
	return 0;
}
