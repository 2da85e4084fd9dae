#include "receiver.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#include "clock.h"
#include "sign.h"

#define RECEIVER_MAX_BODY (16 * 1024 * 1024)
#define RECEIVER_SEEN	  1024 /* ids remembered to mark repeats */
#define RECEIVER_ID_MAX	  64

struct seen_id {
	char id[RECEIVER_ID_MAX];
	unsigned long times;
};

struct receiver {
	struct event_base *base;
	struct evhttp *http;
	char *name;
	char *secret;
	int status;
	unsigned long count, received;
	FILE *out;
	uint16_t port;
	struct seen_id seen[RECEIVER_SEEN];
	size_t seen_next;
};

bool receiver_parse_address(const char *addr, char *host, size_t hostlen, uint16_t *port)
{
	const char *p;
	size_t hn;
	const char *h;
	if (addr[0] == '[') {
		const char *close = strchr(addr, ']');
		if (!close || close[1] != ':')
			return false;
		h = addr + 1;
		hn = (size_t)(close - h);
		p = close + 2;
	} else {
		const char *colon = strrchr(addr, ':');
		if (colon && strchr(addr, ':') != colon)
			return false; /* a bare IPv6 address needs brackets */
		h = colon ? addr : "127.0.0.1";
		hn = colon ? (size_t)(colon - addr) : strlen(h);
		p = colon ? colon + 1 : addr;
	}
	if (hn == 0 || hn >= hostlen || *p == '\0' || strlen(p) > 5)
		return false;
	unsigned long v = 0;
	for (const char *c = p; *c; c++) {
		if (!isdigit((unsigned char)*c))
			return false;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v > 65535)
		return false;
	memcpy(host, h, hn);
	host[hn] = '\0';
	*port = (uint16_t)v;
	return true;
}

/* n digits at s into *out. */
static bool digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

bool receiver_parse_time(const char *s, int64_t *unix_us)
{
	int y, mo, d, h, mi, sec;
	if (strlen(s) < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) ||
	    s[7] != '-' || !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
	    !digits(s + 17, 2, &sec))
		return false;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
		return false;
	const char *p = s + 19;
	int64_t frac = 0;
	if (*p == '.') {
		int64_t scale = 100000;
		p++;
		if (!isdigit((unsigned char)*p))
			return false;
		for (; isdigit((unsigned char)*p); p++) {
			frac += (*p - '0') * scale;
			scale /= 10;
		}
	}
	int64_t offset = 0;
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int oh, om;
		if (!digits(p + 1, 2, &oh) || p[3] != ':' || !digits(p + 4, 2, &om))
			return false;
		offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
		p += 6;
	} else {
		return false;
	}
	if (*p != '\0')
		return false;
	struct tm tm = {0};
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec;
	time_t t = timegm(&tm);
	*unix_us = ((int64_t)t - offset) * 1000000 + frac;
	return true;
}

/* How many times id has arrived, this time included. */
static unsigned long seen_count(struct receiver *r, const char *id)
{
	if (strlen(id) >= RECEIVER_ID_MAX)
		return 1;
	for (size_t i = 0; i < RECEIVER_SEEN; i++) {
		if (r->seen[i].times && strcmp(r->seen[i].id, id) == 0)
			return ++r->seen[i].times;
	}
	struct seen_id *s = &r->seen[r->seen_next];
	r->seen_next = (r->seen_next + 1) % RECEIVER_SEEN;
	snprintf(s->id, sizeof(s->id), "%s", id);
	s->times = 1;
	return 1;
}

static const char *reason(int status)
{
	switch (status) {
	case 200:
		return "OK";
	case 201:
		return "Created";
	case 202:
		return "Accepted";
	case 204:
		return "No Content";
	case 400:
		return "Bad Request";
	case 401:
		return "Unauthorized";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 429:
		return "Too Many Requests";
	case 500:
		return "Internal Server Error";
	case 502:
		return "Bad Gateway";
	case 503:
		return "Service Unavailable";
	default:
		return "Status";
	}
}

static void complete_cb(struct evhttp_request *req, void *arg)
{
	(void)req;
	struct receiver *r = arg;
	if (r->count && r->received >= r->count)
		event_base_loopexit(r->base, NULL);
}

/* A JSON string member, or NULL. */
static const char *member(const cJSON *root, const char *name)
{
	const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, name);
	return cJSON_IsString(v) ? v->valuestring : NULL;
}

static void print_line(struct receiver *r, const char *what, const char *sig, int status)
{
	int64_t now_us = clock_realtime_us();
	time_t now = (time_t)(now_us / 1000000);
	struct tm tm;
	localtime_r(&now, &tm);
	char clock[16];
	strftime(clock, sizeof(clock), "%H:%M:%S", &tm);
	fprintf(r->out, "%s%s%s%s.%03d %s sig=%s status=%d\n", r->name ? "[" : "",
		r->name ? r->name : "", r->name ? "] " : "", clock, (int)(now_us % 1000000 / 1000),
		what, sig, status);
	fflush(r->out);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct receiver *r = arg;
	if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "POST");
		evhttp_send_reply(req, 405, reason(405), NULL);
		return;
	}
	struct evbuffer *in = evhttp_request_get_input_buffer(req);
	size_t len = evbuffer_get_length(in);
	const char *body = len ? (const char *)evbuffer_pullup(in, -1) : "";
	const char *header =
	    evhttp_find_header(evhttp_request_get_input_headers(req), "X-Signature-256");

	const char *sig;
	int status = r->status;
	if (r->secret) {
		sig = sign_verify(r->secret, body, len, header) ? "ok"
		      : header					? "BAD"
								: "BAD(missing)";
		if (strcmp(sig, "ok") != 0)
			status = 401;
	} else {
		sig = header ? "unchecked" : "unsigned";
	}

	char what[1024];
	const char *end = NULL;
	cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
	while (root && end < body + len && isspace((unsigned char)*end))
		end++;
	if (root && end != body + len) {
		cJSON_Delete(root); /* trailing garbage */
		root = NULL;
	}
	const char *type = root ? member(root, "type") : NULL;
	const char *id = root ? member(root, "id") : NULL;
	if (!type || !id) {
		snprintf(what, sizeof(what), "(not a CloudEvent: %s, %zu bytes)",
			 root ? "no type or id" : "invalid JSON", len);
		if (status >= 200 && status < 300)
			status = 400;
	} else {
		const char *subject = member(root, "subject");
		const char *when = member(root, "time");
		char latency[32] = "?";
		int64_t t;
		if (when && receiver_parse_time(when, &t)) {
			snprintf(latency, sizeof(latency), "%" PRId64 "ms",
				 (clock_realtime_us() - t) / 1000);
		}
		unsigned long times = seen_count(r, id);
		char repeat[48] = "";
		if (times > 1)
			snprintf(repeat, sizeof(repeat), " repeat=%lu", times);
		snprintf(what, sizeof(what), "%s subject=%s id=%s latency=%s%s", type,
			 subject && *subject ? subject : "-", id, latency, repeat);
	}
	cJSON_Delete(root);

	r->received++;
	print_line(r, what, sig, status);
	evhttp_request_set_on_complete_cb(req, complete_cb, r);
	evhttp_send_reply(req, status, reason(status), NULL);
}

struct receiver *receiver_new(struct event_base *base, const char *host, uint16_t port,
			      const struct receiver_options *opts, char *err, size_t n)
{
	struct receiver *r = calloc(1, sizeof(*r));
	if (!r) {
		snprintf(err, n, "out of memory");
		return NULL;
	}
	r->base = base;
	r->status = opts->status;
	r->count = opts->count;
	r->out = opts->out;
	r->name = opts->name ? strdup(opts->name) : NULL;
	r->secret = opts->secret ? strdup(opts->secret) : NULL;
	r->http = evhttp_new(base);
	if (!r->http || (opts->name && !r->name) || (opts->secret && !r->secret)) {
		snprintf(err, n, "out of memory");
		goto fail;
	}
	evhttp_set_allowed_methods(r->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
						EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
	evhttp_set_max_body_size(r->http, RECEIVER_MAX_BODY);
	evhttp_set_gencb(r->http, request_cb, r);
	errno = 0;
	struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(r->http, host, port);
	if (!bound) {
		snprintf(err, n, "cannot listen on %s port %u: %s", host, port,
			 errno ? strerror(errno) : "bad address");
		goto fail;
	}
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	r->port = port;
	if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			r->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
		else if (ss.ss_family == AF_INET6)
			r->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	}
	return r;
fail:
	receiver_free(r);
	return NULL;
}

void receiver_free(struct receiver *r)
{
	if (!r)
		return;
	if (r->http)
		evhttp_free(r->http);
	free(r->name);
	if (r->secret) {
		explicit_bzero(r->secret, strlen(r->secret));
		free(r->secret);
	}
	free(r);
}

uint16_t receiver_port(const struct receiver *r)
{
	return r->port;
}
