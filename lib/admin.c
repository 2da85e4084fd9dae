#include "admin.h"

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

#define ADMIN_BACKLOG	       128
#define ADMIN_TIMEOUT_S	       30 /* idle or slow client */
#define ADMIN_MAX_HEADERS_SIZE 8192
#define ADMIN_MAX_BODY_SIZE    4096
#define ADMIN_TEXT	       "text/plain; charset=utf-8"
#define ADMIN_ALLOW	       "GET, HEAD"
#define ADMIN_WHY_MAX	       512

struct admin {
	struct evhttp *http; /* NULL when the server is off */
	struct admin_callbacks cbs;
	void *arg;
	int port;
	struct metrics_buf *buf; /* reused by every /metrics request */
};

enum route { ROUTE_NONE, ROUTE_METRICS, ROUTE_HEALTHZ, ROUTE_READYZ };

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	if (!err || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* ---- requests -------------------------------------------------------------------------- */

static enum route route_of(const char *path)
{
	if (!path)
		return ROUTE_NONE;
	if (strcmp(path, "/metrics") == 0)
		return ROUTE_METRICS;
	if (strcmp(path, "/healthz") == 0)
		return ROUTE_HEALTHZ;
	if (strcmp(path, "/readyz") == 0)
		return ROUTE_READYZ;
	return ROUTE_NONE;
}

/* Send code with body; a HEAD request gets the same headers and no body. */
static void reply(struct evhttp_request *req, int code, const char *type, const char *body,
		  size_t len)
{
	struct evkeyvalq *h = evhttp_request_get_output_headers(req);
	evhttp_add_header(h, "Content-Type", type);
	evhttp_add_header(h, "Cache-Control", "no-store");
	/* Always, so that HTTP/1.0 clients and HEAD get it too. */
	char n[32];
	snprintf(n, sizeof(n), "%zu", len);
	evhttp_add_header(h, "Content-Length", n);
	if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
		evhttp_send_reply(req, code, NULL, NULL);
		return;
	}
	struct evbuffer *out = evbuffer_new();
	if (!out || evbuffer_add(out, body, len) != 0) {
		evbuffer_free(out);
		evhttp_send_error(req, HTTP_INTERNAL, NULL);
		return;
	}
	evhttp_send_reply(req, code, NULL, out);
	evbuffer_free(out);
}

static void reply_text(struct evhttp_request *req, int code, const char *body)
{
	reply(req, code, ADMIN_TEXT, body, strlen(body));
}

static void serve_metrics(struct admin *a, struct evhttp_request *req)
{
	metrics_buf_reset(a->buf);
	if (a->cbs.metrics)
		a->cbs.metrics(a->buf, a->arg);
	if (metrics_buf_failed(a->buf)) {
		metrics_buf_reset(a->buf);
		reply_text(req, HTTP_INTERNAL, "out of memory\n");
		return;
	}
	reply(req, HTTP_OK, METRICS_CONTENT_TYPE, metrics_buf_data(a->buf),
	      metrics_buf_len(a->buf));
}

static void serve_readyz(struct admin *a, struct evhttp_request *req)
{
	const char *why = NULL;
	if (!a->cbs.ready || a->cbs.ready(&why, a->arg)) {
		reply_text(req, HTTP_OK, "ready\n");
		return;
	}
	char body[ADMIN_WHY_MAX];
	snprintf(body, sizeof(body) - 1, "not ready: %s", why && *why ? why : "unknown reason");
	for (char *c = body; *c; c++) {
		if (*c == '\n' || *c == '\r')
			*c = ' ';
	}
	strcat(body, "\n"); /* sizeof(body) - 1 above keeps room for it */
	reply_text(req, HTTP_SERVUNAVAIL, body);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
	struct admin *a = arg;
	const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
	enum route r = route_of(uri ? evhttp_uri_get_path(uri) : NULL);
	enum evhttp_cmd_type cmd = evhttp_request_get_command(req);

	if (r == ROUTE_NONE) {
		reply_text(req, HTTP_NOTFOUND, "not found\n");
		return;
	}
	if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
		evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", ADMIN_ALLOW);
		reply_text(req, HTTP_BADMETHOD, "method not allowed (use GET or HEAD)\n");
		return;
	}
	switch (r) {
	case ROUTE_METRICS:
		serve_metrics(a, req);
		break;
	case ROUTE_HEALTHZ:
		reply_text(req, HTTP_OK, "ok\n"); /* answering at all means the loop runs */
		break;
	case ROUTE_READYZ:
		serve_readyz(a, req);
		break;
	case ROUTE_NONE:
		break;
	}
}

/* ---- listening ------------------------------------------------------------------------- */

/* Split "HOST:PORT" or "[HOST]:PORT" into host and port; false if malformed. */
static bool split_listen(const char *listen_addr, char *host, size_t hostlen, char *port,
			 size_t portlen)
{
	const char *h = listen_addr, *colon;
	size_t hn;
	if (*listen_addr == '[') {
		const char *close = strchr(listen_addr, ']');
		if (!close || close[1] != ':')
			return false;
		h = listen_addr + 1;
		hn = (size_t)(close - h);
		colon = close + 1;
	} else {
		colon = strrchr(listen_addr, ':');
		if (!colon)
			return false;
		hn = (size_t)(colon - listen_addr);
		if (memchr(listen_addr, ':', hn)) /* a bare IPv6 address */
			return false;
	}
	const char *p = colon + 1;
	size_t pn = strlen(p);
	if (hn == 0 || hn >= hostlen || pn == 0 || pn > 5 || pn >= portlen)
		return false;
	unsigned long v = 0;
	for (const char *c = p; *c; c++) {
		if (*c < '0' || *c > '9')
			return false;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v > 65535)
		return false;
	memcpy(host, h, hn);
	host[hn] = '\0';
	memcpy(port, p, pn + 1);
	return true;
}

static int sockaddr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port);
	return 0;
}

static void sockaddr_set_port(struct sockaddr *sa, int port)
{
	if (sa->sa_family == AF_INET)
		((struct sockaddr_in *)(void *)sa)->sin_port = htons((uint16_t)port);
	else if (sa->sa_family == AF_INET6)
		((struct sockaddr_in6 *)(void *)sa)->sin6_port = htons((uint16_t)port);
}

/* A listening, non-blocking socket on ai, or -1 with errno set. */
static int listen_socket(const struct addrinfo *ai, bool v6only)
{
	int fd =
	    socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, ai->ai_protocol);
	if (fd < 0)
		return -1;
	int one = 1;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    (v6only && ai->ai_family == AF_INET6 &&
	     setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one)) != 0) ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, ADMIN_BACKLOG) != 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

/* Listen on every address host resolves to. An address this host cannot have
 * (EADDRNOTAVAIL, EAFNOSUPPORT) is skipped when another one works; any other failure,
 * such as a port in use, is an error. */
static int bind_all(struct admin *a, const char *listen_addr, const char *host, const char *port,
		    char *err, size_t errlen)
{
	struct addrinfo hints = {0}, *res = NULL;
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
	int rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		set_err(err, errlen, "cannot listen on %s: %s", listen_addr,
			rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
		return -1;
	}
	size_t naddr = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next)
		naddr++;

	int last_errno = 0;
	for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
		if (a->port != 0)
			sockaddr_set_port(ai->ai_addr, a->port); /* port 0: the same everywhere */
		int fd = listen_socket(ai, naddr > 1);
		if (fd < 0) {
			last_errno = errno;
			if (naddr > 1 && (errno == EADDRNOTAVAIL || errno == EAFNOSUPPORT))
				continue;
			goto fail;
		}
		if (a->port == 0) {
			struct sockaddr_storage ss;
			socklen_t sl = sizeof(ss);
			if (getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
				last_errno = errno;
				close(fd);
				goto fail;
			}
			a->port = sockaddr_port((struct sockaddr *)&ss);
		}
		/* On success the evhttp owns the socket and closes it in evhttp_free(). */
		if (!evhttp_accept_socket_with_handle(a->http, fd)) {
			last_errno = errno ? errno : ENOMEM;
			close(fd);
			goto fail;
		}
	}
	freeaddrinfo(res);
	if (a->port == 0) {
		errno = last_errno;
		goto fail_nores;
	}
	return 0;
fail:
	freeaddrinfo(res);
fail_nores:
	set_err(err, errlen, "cannot listen on %s: %s", listen_addr, strerror(last_errno));
	return -1;
}

struct admin *admin_new(struct event_base *base, const char *listen_addr,
			const struct admin_callbacks *cbs, void *arg, char *err, size_t errlen)
{
	set_err(err, errlen, "%s", "");
	struct admin *a = calloc(1, sizeof(*a));
	if (!a) {
		set_err(err, errlen, "out of memory");
		return NULL;
	}
	if (cbs)
		a->cbs = *cbs;
	a->arg = arg;
	if (!listen_addr || !*listen_addr)
		return a; /* off */

	char host[256], port[8];
	if (!split_listen(listen_addr, host, sizeof(host), port, sizeof(port))) {
		set_err(err, errlen,
			"cannot listen on %s: bad address (use HOST:PORT such as 127.0.0.1:9464, "
			"or [::1]:9464)",
			listen_addr);
		goto fail;
	}
	a->buf = metrics_buf_new();
	a->http = evhttp_new(base);
	if (!a->buf || !a->http) {
		set_err(err, errlen, "cannot listen on %s: out of memory", listen_addr);
		goto fail;
	}
	/* Every method reaches request_cb, which answers 405 rather than libevent's 501. */
	evhttp_set_allowed_methods(a->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD | EVHTTP_REQ_POST |
						EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
						EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
						EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
	evhttp_set_timeout(a->http, ADMIN_TIMEOUT_S);
	evhttp_set_max_headers_size(a->http, ADMIN_MAX_HEADERS_SIZE);
	evhttp_set_max_body_size(a->http, ADMIN_MAX_BODY_SIZE);
	evhttp_set_gencb(a->http, request_cb, a);
	if (bind_all(a, listen_addr, host, port, err, errlen) != 0)
		goto fail;
	return a;
fail:
	admin_free(a);
	return NULL;
}

void admin_free(struct admin *a)
{
	if (!a)
		return;
	if (a->http)
		evhttp_free(a->http);
	metrics_buf_free(a->buf);
	free(a);
}

int admin_port(const struct admin *a)
{
	return a && a->http ? a->port : 0;
}
