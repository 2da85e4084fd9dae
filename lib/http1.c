#include "http1.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <curl/curl.h>
#include <event2/event_struct.h>

#include "clock.h"
#include "http_response.h"
#include "log.h"

/* As libcurl's CURLOPT_MAXAGE_CONN: an idle connection older than this is
 * closed rather than reused (the peer may have dropped it silently). */
#define HTTP1_MAX_IDLE_AGE_US (118 * 1000000ULL)

struct conn;

/* Where a URL's connections go. */
struct dest {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	long port;
	char host[INET6_ADDRSTRLEN + 2]; /* as in the URL, for error messages */
};

struct http1_target {
	char *url;
	struct dest dest;
	/* "POST <path> HTTP/1.1\r\nHost: <host>\r\nAccept: * / *\r\n", then the
	 * fixed header lines: what every request starts with. */
	char *head;
	size_t head_len;
};

/* The connections kept for one URL, whichever targets were made for it. */
struct pool {
	struct pool *next;
	char *url;
	struct dest dest;
	struct conn *idle; /* most recently used first */
};

enum conn_state { C_IDLE, C_CONNECTING, C_SENDING, C_WAITING };

struct conn {
	struct conn *prev, *next; /* every connection of the client */
	struct conn *idle_next;	  /* in its pool's idle list */
	struct http1 *c;
	struct pool *p;
	int fd;
	enum conn_state state;
	struct event rev, wev, timer;
	struct http_response *resp;
	uint64_t used_us; /* end of the last request, for the idle age */

	/* The request: set while one is running. */
	http_done_cb cb;
	void *arg;
	bool (*may_send)(void *arg);
	const char *body;
	size_t len;
	char *head;
	size_t head_len, head_cap, sent;
	uint64_t start_us, timeout_ms;
	bool reused;  /* sent on a connection that served a request before */
	bool retried; /* already moved to a fresh connection once */
	/* A result found outside the loop (no callback from http1_post()) or
	 * found while closing, reported when the timer event runs. */
	bool early, early_abort;
	char error[192];
};

struct http1 {
	struct event_base *base;
	struct pool *pools;
	struct conn *conns;
	unsigned idle, max_idle;
	char buf[16384]; /* responses are read into this and discarded */
};

struct http1 *http1_new(struct event_base *base, unsigned max_idle)
{
	struct http1 *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	c->base = base;
	c->max_idle = max_idle;
	return c;
}

/* Close the socket; the connection can no longer carry a request. */
static void conn_close(struct conn *k)
{
	if (k->fd < 0)
		return;
	event_del(&k->rev);
	event_del(&k->wev);
	close(k->fd);
	k->fd = -1;
}

static void idle_remove(struct conn *k)
{
	for (struct conn **p = &k->p->idle; *p; p = &(*p)->idle_next) {
		if (*p == k) {
			*p = k->idle_next;
			k->c->idle--;
			return;
		}
	}
}

static void conn_free(struct conn *k)
{
	if (k->state == C_IDLE)
		idle_remove(k);
	conn_close(k);
	event_del(&k->timer);
	if (k->prev)
		k->prev->next = k->next;
	else
		k->c->conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	http_response_free(k->resp);
	free(k->head);
	free(k);
}

void http1_free(struct http1 *c)
{
	if (!c)
		return;
	while (c->conns)
		conn_free(c->conns);
	while (c->pools) {
		struct pool *p = c->pools;
		c->pools = p->next;
		free(p->url);
		free(p);
	}
	free(c);
}

/* ---- targets ---- */

static char *url_part(CURLU *u, CURLUPart part, unsigned flags)
{
	char *v = NULL;
	if (curl_url_get(u, part, &v, flags) != CURLUE_OK)
		return NULL;
	return v;
}

/* The destination of url and the start of its request line ("POST
 * <path>[?<query>] HTTP/1.1\r\nHost: <host>\r\nAccept: * / *\r\n", in *head,
 * malloc'ed); false when this client does not take url (or out of memory). */
static bool url_parse(const char *url, struct dest *d, char **head)
{
	bool ok = false;
	char *scheme = NULL, *user = NULL, *pass = NULL, *zone = NULL, *host = NULL, *port = NULL,
	     *path = NULL, *query = NULL;
	*head = NULL;
	memset(d, 0, sizeof(*d));
	CURLU *u = curl_url();
	if (!u || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
		goto out;
	scheme = url_part(u, CURLUPART_SCHEME, 0);
	user = url_part(u, CURLUPART_USER, 0);
	pass = url_part(u, CURLUPART_PASSWORD, 0);
	zone = url_part(u, CURLUPART_ZONEID, 0);
	host = url_part(u, CURLUPART_HOST, 0);
	port = url_part(u, CURLUPART_PORT, CURLU_DEFAULT_PORT);
	path = url_part(u, CURLUPART_PATH, 0);
	query = url_part(u, CURLUPART_QUERY, 0);
	if (!scheme || strcmp(scheme, "http") != 0 || user || pass || zone || !host || !port ||
	    !path)
		goto out;
	char *end;
	errno = 0;
	d->port = strtol(port, &end, 10);
	if (errno || *end || d->port < 1 || d->port > 65535)
		goto out;

	size_t hl = strlen(host);
	struct sockaddr_in *a4 = (struct sockaddr_in *)&d->addr;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&d->addr;
	if (hl > 2 && host[0] == '[' && host[hl - 1] == ']') {
		char v6[INET6_ADDRSTRLEN];
		if (hl - 2 >= sizeof(v6))
			goto out;
		memcpy(v6, host + 1, hl - 2);
		v6[hl - 2] = '\0';
		if (inet_pton(AF_INET6, v6, &a6->sin6_addr) != 1)
			goto out;
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons((uint16_t)d->port);
		d->addr_len = sizeof(*a6);
	} else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons((uint16_t)d->port);
		d->addr_len = sizeof(*a4);
	} else {
		goto out; /* a name: resolving it is libcurl's job */
	}
	memcpy(d->host, host, hl + 1); /* an address: it fits */

	char hostport[128];
	if (d->port == 80)
		snprintf(hostport, sizeof(hostport), "%s", host);
	else
		snprintf(hostport, sizeof(hostport), "%s:%ld", host, d->port);
	size_t n = strlen(path) + (query ? strlen(query) + 1 : 0) + strlen(hostport) + 64;
	*head = malloc(n);
	if (!*head)
		goto out;
	int w = snprintf(*head, n, "POST %s%s%s HTTP/1.1\r\nHost: %s\r\nAccept: */*\r\n", path,
			 query ? "?" : "", query ? query : "", hostport);
	if (w < 0 || (size_t)w >= n)
		goto out;
	ok = true;
out:
	if (!ok) {
		free(*head);
		*head = NULL;
	}
	curl_free(scheme);
	curl_free(user);
	curl_free(pass);
	curl_free(zone);
	curl_free(host);
	curl_free(port);
	curl_free(path);
	curl_free(query);
	curl_url_cleanup(u);
	return ok;
}

static bool env_set(const char *name)
{
	const char *v = getenv(name);
	return v && v[0];
}

/* libcurl's rule for http:// URLs: lowercase http_proxy, or all_proxy. */
static bool proxied(void)
{
	return env_set("http_proxy") || env_set("all_proxy") || env_set("ALL_PROXY");
}

struct http1_target *http1_target_new(const char *url, const char *const *header_lines, size_t n)
{
	if (proxied())
		return NULL;
	struct http1_target *t = calloc(1, sizeof(*t));
	if (!t)
		return NULL;
	if (!url_parse(url, &t->dest, &t->head) || !(t->url = strdup(url)))
		goto fail;
	size_t len = strlen(t->head), need = len + 1;
	for (size_t i = 0; i < n; i++)
		need += strlen(header_lines[i]) + 2;
	char *p = realloc(t->head, need);
	if (!p)
		goto fail;
	for (size_t i = 0; i < n; i++) {
		size_t l = strlen(header_lines[i]);
		memcpy(p + len, header_lines[i], l);
		memcpy(p + len + l, "\r\n", 2);
		len += l + 2;
	}
	p[len] = '\0';
	t->head = p;
	t->head_len = len;
	return t;
fail:
	http1_target_free(t);
	return NULL;
}

void http1_target_free(struct http1_target *t)
{
	if (!t)
		return;
	free(t->url);
	free(t->head);
	free(t);
}

/* The pool of t's URL, made on its first POST; NULL when out of memory. */
static struct pool *pool_get(struct http1 *c, const struct http1_target *t)
{
	for (struct pool *p = c->pools; p; p = p->next)
		if (strcmp(p->url, t->url) == 0)
			return p;
	struct pool *p = calloc(1, sizeof(*p));
	if (!p || !(p->url = strdup(t->url))) {
		free(p);
		return NULL;
	}
	p->dest = t->dest;
	p->next = c->pools;
	c->pools = p;
	return p;
}

/* ---- one request ---- */

static void complete(struct conn *k, const char *error, bool aborted)
{
	struct http_result r = {0};
	char err[sizeof(k->error)], ra[64];
	r.seconds = (double)(clock_mono_us() - k->start_us) / 1e6;
	r.aborted = aborted;
	bool keep = false;
	if (error) {
		snprintf(err, sizeof(err), "%s", error);
		r.error = err;
		keep = aborted && k->fd >= 0;
	} else {
		r.status = http_response_status(k->resp);
		const char *v = http_response_retry_after(k->resp);
		if (v) {
			snprintf(ra, sizeof(ra), "%s", v);
			r.retry_after = ra;
		}
		keep = k->fd >= 0 && k->state == C_WAITING && http_response_keep_alive(k->resp);
	}
	http_done_cb cb = k->cb;
	void *arg = k->arg;
	k->cb = NULL;
	k->early = k->early_abort = false;
	event_del(&k->timer);
	struct http1 *c = k->c;
	if (keep && c->idle < c->max_idle) {
		k->state = C_IDLE;
		k->used_us = clock_mono_us();
		k->idle_next = k->p->idle;
		k->p->idle = k;
		c->idle++;
	} else {
		conn_free(k);
	}
	cb(&r, arg);
}

/* Report from the loop, on the next turn: k->error holds the message. */
static void complete_later(struct conn *k, bool aborted)
{
	if (!aborted)
		conn_close(k);
	k->early = true;
	k->early_abort = aborted;
	event_active(&k->timer, EV_TIMEOUT, 0);
}

static void conn_open(struct conn *k);

/* A reused connection the peer closed (err 0: an EOF) before any byte of an
 * answer: once, the request goes again on a fresh one (as libcurl does). The
 * log says whether any of it had been written: once it was, the peer may have
 * read it, and the receiver can see it twice. */
static bool retry_fresh(struct conn *k, int err)
{
	if (!k->reused || k->retried || http_response_started(k->resp) ||
	    (err != 0 && err != ECONNRESET && err != EPIPE))
		return false;
	const char *how = err ? strerror(err) : "end of stream";
	size_t total = k->head_len + k->len;
	if (k->sent == 0)
		log_debug("POST to %s port %ld: the connection was closed (%s) before the request"
			  " was written; sending it on a fresh connection",
			  k->p->dest.host, k->p->dest.port, how);
	else if (k->sent < total)
		log_debug(
		    "POST to %s port %ld: %zu of the request's %zu bytes were written (the peer"
		    " may have read them) and the connection closed (%s) without an answer;"
		    " sending it again on a fresh connection",
		    k->p->dest.host, k->p->dest.port, k->sent, total, how);
	else
		log_debug("POST to %s port %ld: the request was written (the peer may have read it)"
			  " and the connection closed (%s) without an answer; sending it again on a"
			  " fresh connection",
			  k->p->dest.host, k->p->dest.port, how);
	conn_close(k);
	k->retried = true;
	k->reused = false;
	conn_open(k);
	return true;
}

static void connect_failed(struct conn *k, int err)
{
	snprintf(k->error, sizeof(k->error), "Failed to connect to %s port %ld: %s",
		 k->p->dest.host, k->p->dest.port, strerror(err));
}

static void send_more(struct conn *k)
{
	while (k->sent < k->head_len + k->len) {
		struct iovec iov[2];
		int n = 0;
		if (k->sent < k->head_len)
			iov[n++] = (struct iovec){k->head + k->sent, k->head_len - k->sent};
		size_t b = k->sent > k->head_len ? k->sent - k->head_len : 0;
		if (b < k->len)
			iov[n++] = (struct iovec){(char *)k->body + b, k->len - b};
		struct msghdr m = {.msg_iov = iov, .msg_iovlen = (size_t)n};
		ssize_t w = sendmsg(k->fd, &m, MSG_NOSIGNAL);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				event_add(&k->wev, NULL);
				return;
			}
			int err = errno;
			if (!retry_fresh(k, err)) {
				snprintf(k->error, sizeof(k->error), "Send failure: %s",
					 strerror(err));
				complete_later(k, false);
			}
			return;
		}
		k->sent += (size_t)w;
	}
	k->state = C_WAITING;
}

/* Connected: ask may_send, then write the request. */
static void send_request(struct conn *k)
{
	if (k->may_send && !k->may_send(k->arg)) {
		snprintf(k->error, sizeof(k->error), "cancelled before sending");
		complete_later(k, true);
		return;
	}
	k->state = C_SENDING;
	k->sent = 0;
	http_response_reset(k->resp);
	send_more(k);
}

static void connected(struct conn *k)
{
	event_add(&k->rev, NULL);
	send_request(k);
}

static void read_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct conn *k = arg;
	struct http1 *c = k->c;
	for (;;) {
		ssize_t n = recv(fd, c->buf, sizeof(c->buf), 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			return;
		if (k->state == C_IDLE) { /* closed by the peer, or bytes nobody asked for */
			conn_free(k);
			return;
		}
		if (k->early || k->state == C_CONNECTING) { /* a result is already on its way */
			conn_close(k);
			return;
		}
		if (n < 0) {
			int err = errno;
			if (!retry_fresh(k, err)) {
				snprintf(k->error, sizeof(k->error), "Recv failure: %s",
					 strerror(err));
				complete(k, k->error, false);
			}
			return;
		}
		if (n == 0) {
			if (retry_fresh(k, 0))
				return;
			http_response_eof(k->resp);
			conn_close(k);
		} else {
			size_t used = http_response_feed(k->resp, c->buf, (size_t)n);
			if (used < (size_t)n)
				conn_close(k); /* bytes after the response: not reusable */
		}
		switch (http_response_state(k->resp)) {
		case HTTP_RESPONSE_DONE:
			complete(k, NULL, false);
			return;
		case HTTP_RESPONSE_ERROR:
			complete(k, http_response_error(k->resp), false);
			return;
		case HTTP_RESPONSE_MORE:
			if ((size_t)n < sizeof(c->buf))
				return; /* a short read: nothing more for now, spare the recv() */
			break;
		}
	}
}

static void write_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)what;
	struct conn *k = arg;
	if (k->state == C_CONNECTING) {
		int err = 0;
		socklen_t len = sizeof(err);
		if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
			err = errno;
		if (err) {
			conn_close(k);
			connect_failed(k, err);
			complete(k, k->error, false);
			return;
		}
		connected(k);
	} else if (k->state == C_SENDING) {
		send_more(k);
	}
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	struct conn *k = arg;
	if (k->early) {
		complete(k, k->error, k->early_abort);
		return;
	}
	conn_close(k);
	snprintf(k->error, sizeof(k->error), "Operation timed out after %llu milliseconds",
		 (unsigned long long)k->timeout_ms);
	complete(k, k->error, false);
}

/* A fresh socket and a non-blocking connect for k's request. */
static void conn_open(struct conn *k)
{
	k->fd = socket(k->p->dest.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (k->fd < 0) {
		snprintf(k->error, sizeof(k->error), "Could not open a socket: %s",
			 strerror(errno));
		complete_later(k, false);
		return;
	}
	int one = 1;
	(void)setsockopt(k->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	(void)setsockopt(k->fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	event_assign(&k->rev, k->c->base, k->fd, EV_READ | EV_PERSIST, read_cb, k);
	event_assign(&k->wev, k->c->base, k->fd, EV_WRITE, write_cb, k);
	if (connect(k->fd, (struct sockaddr *)&k->p->dest.addr, k->p->dest.addr_len) == 0) {
		connected(k);
	} else if (errno == EINPROGRESS) {
		k->state = C_CONNECTING;
		event_add(&k->wev, NULL);
	} else {
		connect_failed(k, errno);
		complete_later(k, false);
	}
}

static struct conn *conn_new(struct http1 *c, struct pool *p)
{
	struct conn *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	k->resp = http_response_new();
	if (!k->resp) {
		free(k);
		return NULL;
	}
	k->c = c;
	k->p = p;
	k->fd = -1;
	k->state = C_CONNECTING;
	evtimer_assign(&k->timer, c->base, timer_cb, k);
	k->next = c->conns;
	if (k->next)
		k->next->prev = k;
	c->conns = k;
	return k;
}

/* The most recently used idle connection still young enough, or NULL. */
static struct conn *take_idle(struct pool *p)
{
	uint64_t now = clock_mono_us();
	while (p->idle) {
		struct conn *k = p->idle;
		p->idle = k->idle_next;
		k->c->idle--;
		k->state = C_SENDING;
		if (now - k->used_us <= HTTP1_MAX_IDLE_AGE_US)
			return k;
		conn_free(k);
	}
	return NULL;
}

/* t's head, the request's own header, then the Content-Length. */
static int build_head(struct conn *k, const struct http1_target *t, const struct http_request *req)
{
	char len[40];
	int ln = snprintf(len, sizeof(len), "Content-Length: %zu\r\n\r\n", req->len);
	size_t extra = req->extra_header ? strlen(req->extra_header) : 0;
	size_t need = t->head_len + (extra ? extra + 2 : 0) + (size_t)ln + 1;
	if (need > k->head_cap) {
		char *p = realloc(k->head, need);
		if (!p)
			return -1;
		k->head = p;
		k->head_cap = need;
	}
	char *p = k->head;
	memcpy(p, t->head, t->head_len);
	p += t->head_len;
	if (extra) {
		memcpy(p, req->extra_header, extra);
		memcpy(p + extra, "\r\n", 2);
		p += extra + 2;
	}
	memcpy(p, len, (size_t)ln);
	k->head_len = (size_t)(p - k->head) + (size_t)ln;
	return 0;
}

int http1_post(struct http1 *c, const struct http1_target *t, const struct http_request *req,
	       http_done_cb cb, void *arg)
{
	struct pool *p = pool_get(c, t);
	if (!p)
		return -1;
	struct conn *k = take_idle(p);
	bool reused = k != NULL;
	if (!k && !(k = conn_new(c, p)))
		return -1;
	if (build_head(k, t, req) != 0) {
		conn_free(k);
		return -1;
	}
	k->cb = cb;
	k->arg = arg;
	k->may_send = req->may_send;
	k->body = req->body;
	k->len = req->len;
	k->start_us = clock_mono_us();
	k->timeout_ms = req->timeout_ms;
	k->reused = reused;
	k->retried = false;
	k->early = k->early_abort = false;
	struct timeval tv = clock_tv_ms(req->timeout_ms);
	evtimer_add(&k->timer, &tv);
	if (reused)
		send_request(k);
	else
		conn_open(k);
	return 0;
}
